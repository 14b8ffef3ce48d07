#include "broker/route_table.h"

#include <cctype>

namespace orthrus::broker {

bool PathPrefixMatches(std::string_view path, std::string_view prefix) {
  if (prefix == "/") return true;
  if (prefix.back() == '/') prefix.remove_suffix(1);
  if (path.size() < prefix.size()) return false;
  // ActiveSync clients vary the case of /Microsoft-Server-ActiveSync; IIS paths are case-insensitive.
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(path[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return path.size() == prefix.size() || path[prefix.size()] == '/' || path[prefix.size()] == '?';
}

const RuleSettings* RouteTable::Match(std::string_view target) const {
  std::string_view path = target.substr(0, target.find('?'));
  const RuleSettings* best = nullptr;
  size_t best_len = 0;
  for (const auto& rule : rules_) {
    for (const auto& prefix : rule.path_prefixes) {
      if (PathPrefixMatches(path, prefix) && (best == nullptr || prefix.size() > best_len)) {
        best = &rule;
        best_len = prefix.size();
      }
    }
  }
  return best;
}

}  // namespace orthrus::broker
