#pragma once
// Loading of the protobuf-text-format config files. Every error names the file, the line and the key,
// e.g. "edge.conf:12: listen.private_key_file: cannot read /etc/orthrus/edge.key: No such file".
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace orthrus::config {

// Where a key sits in the file; used to build messages that point at a line.
class Scope {
 public:
  Scope(std::shared_ptr<const std::string> file,
        const google::protobuf::TextFormat::ParseInfoTree* tree,
        const google::protobuf::Message* message, std::string key_prefix);

  // The nested message in `field` (element `index` of a repeated field).
  Scope Child(std::string_view field, int index = -1) const;
  // "file:line: prefix.field" (or "file: prefix.field" when the key is not in the file).
  std::string Where(std::string_view field, int index = -1) const;
  bool Has(std::string_view field) const;

 private:
  const google::protobuf::FieldDescriptor* Field(std::string_view name) const;

  std::shared_ptr<const std::string> file_;
  const google::protobuf::TextFormat::ParseInfoTree* tree_;  // may be null (absent sub-message)
  const google::protobuf::Message* message_;
  std::string key_prefix_;
};

// Collects every problem in a file so an administrator fixes them all in one round.
class Errors {
 public:
  void Add(std::string where, std::string_view message);
  bool empty() const { return lines_.empty(); }
  Error ToError() const;

 private:
  std::vector<std::string> lines_;
};

// A parsed file: the message plus the positions of its keys.
class ParsedFile {
 public:
  // Fails for a missing/unreadable file and for syntax errors or unknown keys (with line:column).
  static Result<std::unique_ptr<ParsedFile>> Load(const std::string& path,
                                                  std::unique_ptr<google::protobuf::Message> message);
  const google::protobuf::Message& message() const { return *message_; }
  Scope Root() const;

 private:
  ParsedFile() = default;
  std::shared_ptr<const std::string> path_;
  std::unique_ptr<google::protobuf::Message> message_;
  google::protobuf::TextFormat::ParseInfoTree tree_;
};

}  // namespace orthrus::config
