#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace orthrus::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_fd{2};
std::string g_component = "orthrus";
std::mutex g_write_mutex;

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error"};

void AppendTimestamp(std::string& out) {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  out += buf;
}

}  // namespace

Field::Field(std::string_view key, double value) : key_(key) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  text_ = buf;
}

void Field::AppendTo(std::string& out) const {
  out += ",\"";
  AppendJsonEscaped(out, key_);
  out += "\":";
  if (quoted_) {
    out += '"';
    AppendJsonEscaped(out, text_);
    out += '"';
  } else {
    out += text_;
  }
}

void AppendJsonEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        // Control bytes and DEL are escaped; bytes >= 0x80 pass through (device-supplied strings
        // that are not UTF-8 are escaped by the caller's choice of field, e.g. hex).
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

Result<Level> ParseLevel(std::string_view level) {
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (kLevelNames[i] == level) return static_cast<Level>(i);
  }
  return Fail("config_bad_value", "unknown log level '" + std::string(level) +
                                      "' (expected debug, info, warn or error)");
}

Status Configure(std::string_view component, std::string_view output, std::string_view level) {
  ORTHRUS_ASSIGN_OR_RETURN(Level parsed, ParseLevel(level.empty() ? "info" : level));
  int fd = 2;
  if (!output.empty() && output != "stderr") {
    std::string path(output);
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
      return Fail("config_bad_file", "cannot open log output " + path + ": " + std::strerror(errno));
    }
  }
  std::lock_guard lock(g_write_mutex);
  g_component = component;
  int old = g_fd.exchange(fd);
  if (old > 2) ::close(old);
  g_min_level = static_cast<int>(parsed);
  return {};
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_min_level.load(); }

void Write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (!Enabled(level)) return;
  std::string line;
  line.reserve(256);
  line += "{\"ts\":\"";
  AppendTimestamp(line);
  line += "\",\"level\":\"";
  line += kLevelNames[static_cast<int>(level)];
  line += "\",\"component\":\"";
  line += g_component;
  line += "\",\"event\":\"";
  AppendJsonEscaped(line, event);
  line += '"';
  for (const Field& f : fields) f.AppendTo(line);
  line += "}\n";
  std::lock_guard lock(g_write_mutex);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(g_fd.load(), p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // nowhere left to report a logging failure
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace orthrus::log
