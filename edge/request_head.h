#pragma once
// Device request head -> tunnel RequestHead: only end-to-end headers cross, and nothing a device sends
// can pose as gateway-asserted identity.
#include <boost/beast/http/fields.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "orthrus/tunnel/v1/tunnel.pb.h"

namespace orthrus::edge {

void CopyEndToEndHeaders(const boost::beast::http::fields& in, tunnel::v1::RequestHead& head);

// An Authorization value read as Basic (RFC 7617): not Basic at all, Basic but unusable (why), or
// the credentials. The password may hold any printable octets, ':' included; the user name no ':'.
struct BasicCredentials {
  bool is_basic = false;
  std::optional<tunnel::v1::PasswordCredentials> credentials;
  std::string problem;
};
BasicCredentials ParseBasicCredentials(std::string_view authorization);

// The ActiveSync DeviceId of a request target: the DeviceId query parameter (plain form), or, for
// the base64-encoded query form (MS-ASHTTP 2.2.1.1.1.1), the device ID octets in lower-case hex.
// Empty when the target carries none.
std::string ActiveSyncDeviceId(std::string_view target);

}  // namespace orthrus::edge
