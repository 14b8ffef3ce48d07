#include "edge/request_head.h"

#include <openssl/crypto.h>

#include "common/base64.h"
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

BasicCredentials ParseBasicCredentials(std::string_view value) {
  BasicCredentials out;
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (value.size() < 6 || !http_headers::EqualsIgnoreCase(value.substr(0, 5), "Basic") ||
      value[5] != ' ') {
    return out;
  }
  out.is_basic = true;
  auto decoded = Base64Decode(value.substr(6));
  if (!decoded) {
    out.problem = "credentials are not base64";
    return out;
  }
  std::string_view text(reinterpret_cast<const char*>(decoded->data()), decoded->size());
  auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    out.problem = "credentials are not user:password";
    return out;
  }
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out.problem = "credentials contain control characters";
      return out;
    }
  }
  tunnel::v1::PasswordCredentials creds;
  creds.set_username(std::string(text.substr(0, colon)));
  creds.set_password(std::string(text.substr(colon + 1)));
  out.credentials = std::move(creds);
  OPENSSL_cleanse(decoded->data(), decoded->size());
  return out;
}

}  // namespace orthrus::edge
