#pragma once
// Structured logging: one JSON object per line. Callers pass fields, never preformatted text, and
// never secrets: no passwords, tickets, private keys or Authorization values.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/result.h"

namespace orthrus::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

class Field {
 public:
  Field(std::string_view key, std::string_view value) : key_(key), text_(value), quoted_(true) {}
  Field(std::string_view key, const std::string& value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, const char* value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, int64_t value) : key_(key), text_(std::to_string(value)) {}
  Field(std::string_view key, uint64_t value) : key_(key), text_(std::to_string(value)) {}
  Field(std::string_view key, int value) : Field(key, static_cast<int64_t>(value)) {}
  Field(std::string_view key, unsigned value) : Field(key, static_cast<uint64_t>(value)) {}
  Field(std::string_view key, double value);
  Field(std::string_view key, bool value) : key_(key), text_(value ? "true" : "false") {}

  void AppendTo(std::string& out) const;

 private:
  std::string_view key_;
  std::string text_;
  bool quoted_ = false;
};

// `component` is "edge" or "broker"; `output` is "stderr" or a file path (opened for append).
Status Configure(std::string_view component, std::string_view output, std::string_view level);
Result<Level> ParseLevel(std::string_view level);
bool Enabled(Level level);
void Write(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void Debug(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, event, fields);
}
inline void Info(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, event, fields);
}
inline void Warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kWarn, event, fields);
}
inline void Error(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, event, fields);
}

// Appends `text` to `out` as the inside of a JSON string literal.
void AppendJsonEscaped(std::string& out, std::string_view text);

}  // namespace orthrus::log
