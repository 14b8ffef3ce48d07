#include "common/http_headers.h"

#include <array>
#include <cctype>

namespace orthrus::http_headers {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool IsHopByHop(std::string_view name) {
  static constexpr std::array<std::string_view, 11> kHopByHop = {
      "connection", "keep-alive",        "proxy-connection", "proxy-authenticate",
      "te",         "trailer",           "transfer-encoding", "upgrade",
      "content-length", "expect",        "proxy-authorization"};
  for (auto h : kHopByHop) {
    if (EqualsIgnoreCase(name, h)) return true;
  }
  return false;
}

bool IsReservedIdentityHeader(std::string_view name) {
  static constexpr std::string_view kPrefix = "x-orthrus-";
  return name.size() >= kPrefix.size() && EqualsIgnoreCase(name.substr(0, kPrefix.size()), kPrefix);
}

bool ConnectionListsToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (EqualsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace orthrus::http_headers
