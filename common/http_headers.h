#pragma once
// Header rules both tiers apply: which headers are hop-by-hop (never forwarded) and which names are
// reserved for identity the gateway itself asserts (never accepted from a device).
#include <string_view>

namespace orthrus::http_headers {

// RFC 9110 7.6.1 connection-specific fields, plus the framing fields the tunnel carries structurally.
bool IsHopByHop(std::string_view name);

// "X-Orthrus-*": set only by the broker, stripped from everything a device sends.
bool IsReservedIdentityHeader(std::string_view name);

// True when `token` appears in a comma-separated Connection header value (case-insensitive).
bool ConnectionListsToken(std::string_view connection_value, std::string_view token);

bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace orthrus::http_headers
