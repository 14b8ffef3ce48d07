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

}  // namespace orthrus::edge
