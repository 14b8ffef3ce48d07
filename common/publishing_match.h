#pragma once
// Which publishing rule serves a request: the edge and the broker pick with the same function, so
// they cannot disagree. A rule matches when one of its host patterns matches the request's host
// (no patterns: any host) and one of its path prefixes matches the path. The most specific host wins
// (exact name, then "*.suffix" wildcard, then any host), then the longest path prefix, then the
// earlier rule.
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace orthrus {

struct RuleScope {
  const std::vector<std::string>* hosts;          // lower-case names or "*.suffix"; empty: any
  const std::vector<std::string>* path_prefixes;  // "/" matches everything
};

// Path prefixes match whole segments, case-insensitively (IIS paths are, and ActiveSync clients vary
// the case of /Microsoft-Server-ActiveSync): "/owa" matches "/owa", "/owa/x" and "/owa?x", not
// "/owanage".
bool PathPrefixMatches(std::string_view path, std::string_view prefix);

// 2: exact, 1: wildcard ("*.corp.example" matches one more label: "mail.corp.example"), 0: the rule
// names no host, -1: no match. `host` must be lower case without a port.
int HostMatchStrength(const std::vector<std::string>& patterns, std::string_view host);

// Index of the rule serving host + target, or -1.
int BestRule(std::span<const RuleScope> rules, std::string_view host, std::string_view target);

// Host header or SNI value -> lower-case host without port or trailing dot; "" when unusable.
// "[::1]:443" -> "::1".
std::string NormalizeHost(std::string_view host_header);

// A valid host pattern for config files: a DNS name or "*." + DNS name; returns a problem or "".
std::string CheckHostPattern(std::string_view pattern);

}  // namespace orthrus
