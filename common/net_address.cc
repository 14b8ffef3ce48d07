#include "common/net_address.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

namespace orthrus {
namespace {

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool IsDnsName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

}  // namespace

std::string HostPort::ToString() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> ParseHostPort(std::string_view text, bool allow_port_zero) {
  auto bad = [&](std::string_view why) {
    return Fail("config_bad_address",
                "'" + std::string(text) + "' is not a valid host:port address: " + std::string(why));
  };
  HostPort out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("expected [ipv6]:port");
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    if (!IsIpLiteral(out.host) || out.host.find(':') == std::string::npos) {
      return bad("bracketed host is not an IPv6 address");
    }
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("missing ':port'");
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return bad("IPv6 addresses need brackets");
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return bad("port must be a number from 1 to 65535");
  }
  if (port == 0 && !allow_port_zero) return bad("port must be a number from 1 to 65535");
  out.port = static_cast<uint16_t>(port);
  out.host_is_ip = IsIpLiteral(out.host);
  if (!out.host_is_ip && !IsDnsName(out.host)) return bad("host is neither an IP nor a DNS name");
  return out;
}

Result<HostPort> ParseListenAddress(std::string_view text) {
  ORTHRUS_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(text, /*allow_port_zero=*/true));
  if (!hp.host_is_ip) {
    return Fail("config_bad_address",
                "'" + std::string(text) + "': a listen address must be an IP literal, not a name");
  }
  return hp;
}

}  // namespace orthrus
