#pragma once
// Device request head -> tunnel RequestHead: only end-to-end headers cross, and nothing a device sends
// can pose as gateway-asserted identity.
#include <boost/beast/http/fields.hpp>

#include "orthrus/tunnel/v1/tunnel.pb.h"

namespace orthrus::edge {

void CopyEndToEndHeaders(const boost::beast::http::fields& in, tunnel::v1::RequestHead& head);

}  // namespace orthrus::edge
