// Plain-HTTP GET for CRL distribution points (declared in crl_source.h). Beast's async operations
// on a private io_context, run to completion on the calling thread: synchronous for the caller, but
// with one deadline covering connect, write and read (Beast's tcp_stream timeouts only apply to
// asynchronous operations).
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "broker/revocation/crl_source.h"
#include "common/revocation/errors.h"

namespace orthrus::revocation {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || url.substr(0, kScheme.size()) != kScheme) {
    return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) +
                                             "\": only http:// distribution points are supported "
                                             "(use a file source for anything else)");
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!out.target.empty() && out.target[0] == '?') out.target.insert(0, "/");
  if (authority.find('@') != std::string_view::npos) {
    return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) + "\": user info is not supported");
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) + "\": bad IPv6 literal");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) + "\": bad authority");
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) + "\": no host");
  out.host = std::string(host);
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || value > 65535) {
        return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) + "\": bad port");
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return Fail(errc::kCrlSourceInvalid, "\"" + std::string(url) + "\": bad port");
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

Result<std::string> HttpGet(std::string_view url, std::chrono::milliseconds timeout, uint64_t max_bytes) {
  ORTHRUS_ASSIGN_OR_RETURN(HttpUrl u, ParseHttpUrl(url));
  std::string where(url);
  asio::io_context ioc;
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(u.host, std::to_string(u.port), ec);
  if (ec) return Fail(errc::kCrlFetchFailed, where + ": cannot resolve " + u.host + ": " + ec.message());

  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);  // collectively for everything below
  http::request<http::empty_body> req{http::verb::get, u.target, 11};
  bool v6 = u.host.find(':') != std::string::npos;
  std::string host_header = (v6 ? "[" + u.host + "]" : u.host) + (u.port == 80 ? "" : ":" + std::to_string(u.port));
  req.set(http::field::host, host_header);
  req.set(http::field::user_agent, "orthrus-broker");
  req.set(http::field::accept, "application/pkix-crl, */*");
  req.set(http::field::connection, "close");
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_bytes);
  boost::system::error_code result;
  const char* stage = "connect";

  stream.async_connect(endpoints, [&](boost::system::error_code e, const tcp::endpoint&) {
    if (e) {
      result = e;
      return;
    }
    stage = "send the request";
    http::async_write(stream, req, [&](boost::system::error_code e2, size_t) {
      if (e2) {
        result = e2;
        return;
      }
      stage = "read the response";
      // Header first: Beast 1.74 does not enforce body_limit against a Content-Length when it
      // parses eagerly (as async_read does), so we check the announced length ourselves.
      http::async_read_header(stream, buffer, parser, [&](boost::system::error_code e3, size_t) {
        if (e3) {
          result = e3;
          return;
        }
        if (parser.content_length() && *parser.content_length() > max_bytes) {
          result = http::error::body_limit;
          return;
        }
        http::async_read(stream, buffer, parser, [&](boost::system::error_code e4, size_t) { result = e4; });
      });
    });
  });
  ioc.run();
  boost::system::error_code ignored;
  stream.socket().close(ignored);

  if (result == http::error::body_limit) {
    return Fail(errc::kCrlTooLarge, where + ": response body exceeds " + std::to_string(max_bytes) + " bytes");
  }
  if (result == beast::error::timeout) {
    return Fail(errc::kCrlFetchFailed, where + ": timed out after " + std::to_string(timeout.count()) +
                                           " ms (" + stage + ")");
  }
  if (result) return Fail(errc::kCrlFetchFailed, where + ": cannot " + stage + ": " + result.message());
  auto& res = parser.get();
  if (res.result_int() != 200) {
    return Fail(errc::kCrlFetchFailed, where + ": HTTP " + std::to_string(res.result_int()) + " " +
                                           std::string(res.reason()));
  }
  return std::move(res.body());
}

}  // namespace orthrus::revocation
