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

std::string ActiveSyncDeviceId(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  if (query.find('=') == std::string_view::npos || query.find('&') == std::string_view::npos) {
    // Base64 form: version, command, locale (2), then the device ID's length and octets. A plain
    // query with only one parameter may also land here; it then fails to decode or is too short.
    auto decoded = Base64Decode(query);
    if (decoded && decoded->size() >= 5) {
      size_t len = (*decoded)[4];
      if (len > 0 && len <= 16 && decoded->size() >= 5 + len) {
        static constexpr char kHex[] = "0123456789abcdef";
        std::string hex;
        for (size_t i = 0; i < len; ++i) {
          hex.push_back(kHex[(*decoded)[5 + i] >> 4]);
          hex.push_back(kHex[(*decoded)[5 + i] & 15]);
        }
        return hex;
      }
    }
  }
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (eq != std::string_view::npos && http_headers::EqualsIgnoreCase(pair.substr(0, eq), "DeviceId")) {
      return std::string(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

}  // namespace orthrus::edge
