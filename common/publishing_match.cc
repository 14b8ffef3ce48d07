#include "common/publishing_match.h"

#include <cctype>

#include "common/http_headers.h"

namespace orthrus {

bool PathPrefixMatches(std::string_view path, std::string_view prefix) {
  if (prefix == "/") return true;
  if (prefix.back() == '/') prefix.remove_suffix(1);
  if (path.size() < prefix.size() ||
      !http_headers::EqualsIgnoreCase(path.substr(0, prefix.size()), prefix)) {
    return false;
  }
  return path.size() == prefix.size() || path[prefix.size()] == '/' || path[prefix.size()] == '?';
}

int HostMatchStrength(const std::vector<std::string>& patterns, std::string_view host) {
  if (patterns.empty()) return 0;
  int best = -1;
  for (const auto& pattern : patterns) {
    if (pattern == host) return 2;
    if (pattern.starts_with("*.")) {
      std::string_view suffix = std::string_view(pattern).substr(1);  // ".corp.example"
      // Exactly one label in place of the '*', as in certificate wildcards.
      if (host.size() > suffix.size() && host.ends_with(suffix) &&
          host.substr(0, host.size() - suffix.size()).find('.') == std::string_view::npos) {
        best = 1;
      }
    }
  }
  return best;
}

int BestRule(std::span<const RuleScope> rules, std::string_view host, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  int best = -1;
  int best_host = -1;
  size_t best_len = 0;
  for (size_t i = 0; i < rules.size(); ++i) {
    int strength = HostMatchStrength(*rules[i].hosts, host);
    if (strength < 0) continue;
    for (const auto& prefix : *rules[i].path_prefixes) {
      if (!PathPrefixMatches(path, prefix)) continue;
      if (best < 0 || strength > best_host || (strength == best_host && prefix.size() > best_len)) {
        best = static_cast<int>(i);
        best_host = strength;
        best_len = prefix.size();
      }
    }
  }
  return best;
}

std::string NormalizeHost(std::string_view host) {
  std::string_view name = host;
  if (!name.empty() && name.front() == '[') {
    auto close = name.find(']');
    if (close == std::string_view::npos) return {};
    name = name.substr(1, close - 1);
  } else if (auto colon = name.rfind(':'); colon != std::string_view::npos) {
    if (name.find(':') != colon) return {};  // bare IPv6 without brackets: not a Host value
    name = name.substr(0, colon);
  }
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == ':')) return {};
    out.push_back(static_cast<char>(std::tolower(u)));
  }
  return out;
}

std::string CheckHostPattern(std::string_view pattern) {
  std::string_view name = pattern.starts_with("*.") ? pattern.substr(2) : pattern;
  if (name.empty()) return "empty host name";
  if (name.find('*') != std::string_view::npos) {
    return "only a leading \"*.\" wildcard is supported";
  }
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isupper(u)) return "write host names in lower case";
    if (!(std::isalnum(u) || c == '-' || c == '.')) {
      return std::string("character '") + c + "' is not allowed in a host name";
    }
  }
  if (name.front() == '.' || name.back() == '.') return "host name must not start or end with '.'";
  if (name.find("..") != std::string_view::npos) return "host name has an empty label ('..')";
  return {};
}

}  // namespace orthrus
