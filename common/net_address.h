#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace orthrus {

struct HostPort {
  std::string host;  // IP literal without brackets, or a DNS name
  uint16_t port = 0;
  bool host_is_ip = false;

  // "host:port" with IPv6 literals in brackets, suitable for gRPC targets and logs.
  std::string ToString() const;
};

// Accepts "1.2.3.4:443", "[::1]:443", "name.example:443". Port 0 only when allow_port_zero.
Result<HostPort> ParseHostPort(std::string_view text, bool allow_port_zero = false);
// Same, but the host must be an IP literal (listeners bind to addresses, not names).
Result<HostPort> ParseListenAddress(std::string_view text);

}  // namespace orthrus
