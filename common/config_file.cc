#include "common/config_file.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace orthrus::config {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::TextFormat;

class CollectingErrors : public google::protobuf::io::ErrorCollector {
 public:
  explicit CollectingErrors(const std::string& path) : path_(path) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    Append(line, column, message);
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    Append(line, column, message);
  }
  std::vector<std::string> lines;

 private:
  void Append(int line, int column, const std::string& message) {
    // The parser reports 0-based positions; editors count from 1.
    lines.push_back(path_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) +
                    ": " + Humanize(message));
  }
  static std::string Humanize(const std::string& message) {
    // protobuf says: Message type "orthrus.config.v1.EdgeConfig" has no field named "listn".
    static constexpr std::string_view kNoField = "has no field named \"";
    auto pos = message.find(kNoField);
    if (pos != std::string::npos) {
      auto start = pos + kNoField.size();
      auto end = message.find('"', start);
      return "unknown key '" + message.substr(start, end - start) + "'";
    }
    return message;
  }
  std::string path_;
};

}  // namespace

Scope::Scope(std::shared_ptr<const std::string> file, const TextFormat::ParseInfoTree* tree,
             const Message* message, std::string key_prefix)
    : file_(std::move(file)), tree_(tree), message_(message), key_prefix_(std::move(key_prefix)) {}

const FieldDescriptor* Scope::Field(std::string_view name) const {
  return message_->GetDescriptor()->FindFieldByName(std::string(name));
}

Scope Scope::Child(std::string_view field, int index) const {
  const FieldDescriptor* fd = Field(field);
  const Message* child = nullptr;
  if (index >= 0) {
    child = &message_->GetReflection()->GetRepeatedMessage(*message_, fd, index);
  } else {
    child = &message_->GetReflection()->GetMessage(*message_, fd);
  }
  const TextFormat::ParseInfoTree* child_tree =
      tree_ ? tree_->GetTreeForNested(fd, index) : nullptr;
  std::string prefix = key_prefix_ + std::string(field);
  if (index >= 0) prefix += "[" + std::to_string(index) + "]";
  return Scope(file_, child_tree, child, prefix + ".");
}

std::string Scope::Where(std::string_view field, int index) const {
  std::string key = key_prefix_ + std::string(field);
  if (index >= 0) key += "[" + std::to_string(index) + "]";
  const FieldDescriptor* fd = Field(field);
  if (tree_ && fd) {
    // A repeated key named as a whole points at its first occurrence; protobuf aborts on index -1.
    int at = index;
    if (fd->is_repeated() && at < 0) {
      at = message_->GetReflection()->FieldSize(*message_, fd) > 0 ? 0 : -2;
    }
    if (at != -2) {
      auto loc = tree_->GetLocation(fd, at);
      if (loc.line >= 0) return *file_ + ":" + std::to_string(loc.line + 1) + ": " + key;
    }
  }
  return *file_ + ": " + key;
}

bool Scope::Has(std::string_view field) const {
  const FieldDescriptor* fd = Field(field);
  if (fd->is_repeated()) return message_->GetReflection()->FieldSize(*message_, fd) > 0;
  return message_->GetReflection()->HasField(*message_, fd);
}

void Errors::Add(std::string where, std::string_view message) {
  lines_.push_back(std::move(where) + ": " + std::string(message));
}

Error Errors::ToError() const {
  std::string joined;
  for (const auto& line : lines_) {
    if (!joined.empty()) joined += '\n';
    joined += line;
  }
  return Error{"config_invalid", joined};
}

Result<std::unique_ptr<ParsedFile>> ParsedFile::Load(const std::string& path,
                                                     std::unique_ptr<Message> message) {
  std::ifstream in(path);
  if (!in) {
    return Fail("config_missing_file", path + ": cannot open config file: " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return Fail("config_missing_file", path + ": read error");

  std::unique_ptr<ParsedFile> parsed(new ParsedFile());
  parsed->path_ = std::make_shared<const std::string>(path);
  CollectingErrors errors(path);
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&parsed->tree_);
  parser.AllowUnknownField(false);
  parser.AllowUnknownExtension(false);
  if (!parser.ParseFromString(text.str(), message.get())) {
    std::string joined;
    for (const auto& line : errors.lines) joined += (joined.empty() ? "" : "\n") + line;
    if (joined.empty()) joined = path + ": cannot parse config";
    return Fail("config_syntax", joined);
  }
  parsed->message_ = std::move(message);
  return parsed;
}

Scope ParsedFile::Root() const { return Scope(path_, &tree_, message_.get(), ""); }

}  // namespace orthrus::config
