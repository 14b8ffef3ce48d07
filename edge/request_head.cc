#include "edge/request_head.h"

#include "common/http_headers.h"

namespace orthrus::edge {

void CopyEndToEndHeaders(const boost::beast::http::fields& in, tunnel::v1::RequestHead& head) {
  auto connection = in[boost::beast::http::field::connection];
  for (const auto& field : in) {
    auto name = field.name_string();
    if (http_headers::IsHopByHop(name) || http_headers::IsReservedIdentityHeader(name)) continue;
    // Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
    if (!connection.empty() && http_headers::ConnectionListsToken(connection, name)) continue;
    auto* h = head.add_headers();
    h->set_name(std::string(name));
    h->set_value(std::string(field.value()));
  }
}

}  // namespace orthrus::edge
