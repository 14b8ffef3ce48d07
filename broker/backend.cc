#include "broker/backend.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <deque>
#include <limits>
#include <map>
#include <mutex>

#include "common/http_headers.h"
#include "common/log.h"
#include "common/tls/pem_files.h"

namespace orthrus::broker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunkBytes = 64 * 1024;
constexpr uint32_t kResponseHeaderLimit = 64 * 1024;

struct BackendConnection {
  BackendConnection(asio::any_io_executor io, ssl::context& ctx) : stream(io, ctx) {}
  beast::ssl_stream<beast::tcp_stream> stream;
  beast::flat_buffer buffer;  // bytes read past a message belong to the connection
  Clock::time_point idle_since{};
};

// Header names are tokens and values carry no CR, LF or NUL: the edge parsed them, but the broker
// does not take a DMZ host's word for it.
bool SafeHeader(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c >= 0x7f || c == ':') return false;
  }
  for (unsigned char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool ConnectionLooksAlive(BackendConnection& conn) {
  // An idle keep-alive connection must have nothing to read: readable means the backend closed it
  // (or sent garbage), and reusing it would fail the next request.
  if (conn.buffer.size() != 0) return false;
  pollfd p{beast::get_lowest_layer(conn.stream).socket().native_handle(), POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 0;
}

Error ReadError(const beast::error_code& ec, std::string_view what) {
  if (ec == beast::error::timeout) return Error{"backend_timeout", std::string(what) + ": timed out"};
  if (ec == http::error::end_of_stream || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == ssl::error::stream_truncated ||
      ec == http::error::partial_message || ec == asio::error::operation_aborted) {
    return Error{"backend_reset", std::string(what) + ": " + ec.message()};
  }
  if (ec.category() == http::make_error_code(http::error::bad_version).category()) {
    return Error{"backend_bad_response", std::string(what) + ": " + ec.message()};
  }
  return Error{"backend_reset", std::string(what) + ": " + ec.message()};
}

class PoolImpl;

class PooledExchange final : public BackendExchange {
 public:
  PooledExchange(PoolImpl& pool, const RuleSettings& rule, std::string key,
                 std::unique_ptr<BackendConnection> conn, bool head_request)
      : pool_(pool), rule_(rule), key_(std::move(key)), conn_(std::move(conn)),
        head_request_(head_request) {}

  asio::awaitable<Status> SendHead(const tunnel::v1::RequestHead& head,
                                   const HeaderList& extra) override {
    req_.method_string(head.method());
    req_.target(head.target());
    req_.version(11);
    for (const auto& h : head.headers()) {
      if (!SafeHeader(h.name(), h.value())) {
        co_return Fail("bad_request_head", "header '" + h.name() + "' has forbidden characters");
      }
      if (http_headers::IsHopByHop(h.name()) || http_headers::IsReservedIdentityHeader(h.name()) ||
          http_headers::EqualsIgnoreCase(h.name(), "host")) {
        continue;
      }
      req_.insert(h.name(), h.value());
    }
    // Host names the backend as published, like TMG's default (the internal name, not the public).
    req_.set(http::field::host, rule_.Authority());
    for (const auto& [name, value] : extra) {
      if (!SafeHeader(name, value)) co_return Fail("bad_request_head", "identity header unsafe");
      req_.set(name, value);
    }
    if (head.has_content_length()) {
      req_.content_length(head.content_length());
    } else if (head.has_body()) {
      req_.chunked(true);
    }
    req_.keep_alive(true);
    req_.body().data = nullptr;
    req_.body().more = head.has_body();
    serializer_.emplace(req_);
    beast::get_lowest_layer(conn_->stream).expires_after(rule_.body_timeout);
    beast::error_code ec;
    co_await http::async_write_header(conn_->stream, *serializer_, redirect_error(use_awaitable, ec));
    if (ec) co_return std::unexpected(ReadError(ec, "sending request head"));
    co_return Status{};
  }

  asio::awaitable<Status> SendBodyChunk(const std::string& data) override {
    req_.body().data = const_cast<char*>(data.data());
    req_.body().size = data.size();
    req_.body().more = true;
    beast::get_lowest_layer(conn_->stream).expires_after(rule_.body_timeout);
    beast::error_code ec;
    co_await http::async_write(conn_->stream, *serializer_, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return std::unexpected(ReadError(ec, "sending request body"));
    co_return Status{};
  }

  asio::awaitable<Status> EndBody() override {
    req_.body().data = nullptr;
    req_.body().size = 0;
    req_.body().more = false;
    beast::get_lowest_layer(conn_->stream).expires_after(rule_.body_timeout);
    beast::error_code ec;
    if (!serializer_->is_done()) {
      co_await http::async_write(conn_->stream, *serializer_, redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
    }
    if (ec) co_return std::unexpected(ReadError(ec, "ending request body"));
    request_done_ = true;
    co_return Status{};
  }

  asio::awaitable<Result<BackendResponseHead>> ReadResponseHead() override {
    beast::error_code ec;
    for (;;) {
      parser_.emplace();
      parser_->header_limit(kResponseHeaderLimit);
      // Not boost::none: Boost 1.74 compares the length with the empty optional and always fails.
      parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
      if (head_request_) parser_->skip(true);
      beast::get_lowest_layer(conn_->stream).expires_after(rule_.response_timeout);
      co_await http::async_read_header(conn_->stream, conn_->buffer, *parser_,
                                       redirect_error(use_awaitable, ec));
      if (ec) co_return std::unexpected(ReadError(ec, "waiting for the response head"));
      unsigned status = parser_->get().result_int();
      if (status == 101) co_return Fail("backend_bad_response", "protocol upgrades are not proxied");
      if (status >= 200) break;
      // 1xx interim responses (100 Continue, 102, 103): the device gets only the final response.
    }
    const auto& res = parser_->get();
    BackendResponseHead out;
    out.status = res.result_int();
    out.reason = std::string(res.reason());
    auto connection = res[http::field::connection];
    for (const auto& field : res) {
      auto name = field.name_string();
      if (http_headers::IsHopByHop(name)) continue;
      if (!connection.empty() && http_headers::ConnectionListsToken(connection, name)) continue;
      out.headers.emplace_back(std::string(name), std::string(field.value()));
    }
    if (auto length = parser_->content_length()) out.content_length = *length;
    out.has_body = !parser_->is_done();
    co_return out;
  }

  asio::awaitable<Result<bool>> ReadBodyChunk(std::string& data) override {
    data.resize(kChunkBytes);
    auto& body = parser_->get().body();
    body.data = data.data();
    body.size = kChunkBytes;
    beast::get_lowest_layer(conn_->stream).expires_after(rule_.body_timeout);
    beast::error_code ec;
    co_await http::async_read(conn_->stream, conn_->buffer, *parser_, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    data.resize(kChunkBytes - body.size);
    if (ec) co_return std::unexpected(ReadError(ec, "reading the response body"));
    co_return !parser_->is_done();
  }

  void Abort() override {
    aborted_ = true;
    if (!conn_) return;
    beast::error_code ignored;
    beast::get_lowest_layer(conn_->stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(conn_->stream).close();
  }

  void Release() override;

 private:
  PoolImpl& pool_;
  const RuleSettings& rule_;
  std::string key_;
  std::unique_ptr<BackendConnection> conn_;
  bool head_request_;
  bool request_done_ = false;
  bool aborted_ = false;
  http::request<http::buffer_body> req_;
  std::optional<http::request_serializer<http::buffer_body>> serializer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
};

class PoolImpl final : public BackendPool {
 public:
  explicit PoolImpl(asio::any_io_executor io) : io_(io) {}

  Status AddRule(const RuleSettings& rule) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX* native = ctx->native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    // Backend connections held by long-polls and idle in the pool should not pin 2 x 16 KiB of
    // record buffers each (as on the edge's device listener).
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_locations(native, rule.backend_ca_file.c_str(), nullptr) != 1) {
      return Fail("tls_config", rule.backend_ca_file + ": " + tls::DrainErrors());
    }
    if (!rule.bridging_certificate_file.empty()) {
      if (SSL_CTX_use_certificate_chain_file(native, rule.bridging_certificate_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(native, rule.bridging_private_key_file.c_str(),
                                      SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(native) != 1) {
        return Fail("tls_config", "bridging certificate for rule " + rule.name + ": " + tls::DrainErrors());
      }
    }
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
    // Keep TLS sessions per rule so reconnects to the backend skip the full handshake.
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_CLIENT);
    contexts_[rule.name] = std::move(ctx);
    return {};
  }

  asio::awaitable<Result<std::unique_ptr<BackendExchange>>> Open(const RuleSettings& rule,
                                                                  std::string principal,
                                                                  bool head_request) override {
    std::string key = rule.name + '\0' + principal;
    std::unique_ptr<BackendConnection> conn = TakeIdle(key, rule);
    if (!conn) {
      auto fresh = co_await Connect(rule);
      if (!fresh) co_return std::unexpected(std::move(fresh.error()));
      conn = std::move(*fresh);
    }
    co_return std::make_unique<PooledExchange>(*this, rule, std::move(key), std::move(conn),
                                               head_request);
  }

  void Return(const std::string& key, const RuleSettings& rule,
              std::unique_ptr<BackendConnection> conn) {
    conn->idle_since = Clock::now();
    std::lock_guard lock(mutex_);
    auto& idle = idle_[key];
    if (idle.size() < rule.max_idle_connections) idle.push_back(std::move(conn));
  }

 private:
  std::unique_ptr<BackendConnection> TakeIdle(const std::string& key, const RuleSettings& rule) {
    std::lock_guard lock(mutex_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& idle = it->second;
    while (!idle.empty()) {
      std::unique_ptr<BackendConnection> conn = std::move(idle.back());
      idle.pop_back();
      if (Clock::now() - conn->idle_since < rule.idle_connection_timeout &&
          ConnectionLooksAlive(*conn)) {
        return conn;
      }
    }
    return nullptr;
  }

  asio::awaitable<Result<std::unique_ptr<BackendConnection>>> Connect(const RuleSettings& rule) {
    beast::error_code ec;
    auto conn = std::make_unique<BackendConnection>(io_, *contexts_.at(rule.name));
    auto& tcp_stream = beast::get_lowest_layer(conn->stream);
    std::vector<tcp::endpoint> endpoints;
    if (!rule.pinned_ip.empty()) {
      endpoints.emplace_back(asio::ip::make_address(rule.pinned_ip, ec), rule.backend_port);
    } else {
      tcp::resolver resolver(io_);
      auto results = co_await resolver.async_resolve(rule.backend_host,
                                                     std::to_string(rule.backend_port),
                                                     redirect_error(use_awaitable, ec));
      if (ec) {
        co_return Fail("backend_connect_failed",
                       "cannot resolve " + rule.backend_host + ": " + ec.message());
      }
      for (const auto& r : results) endpoints.push_back(r.endpoint());
    }
    tcp_stream.expires_after(rule.connect_timeout);
    co_await tcp_stream.async_connect(endpoints, redirect_error(use_awaitable, ec));
    if (ec) {
      co_return Fail("backend_connect_failed", "connect to " + rule.Authority() +
                                                   (rule.pinned_ip.empty() ? "" : " via " + rule.pinned_ip) +
                                                   ": " + ec.message());
    }
    tcp_stream.socket().set_option(tcp::no_delay(true), ec);

    // Connect to the pinned address, but verify the certificate for the published name.
    SSL* ssl_handle = conn->stream.native_handle();
    boost::system::error_code addr_ec;
    asio::ip::make_address(rule.backend_host, addr_ec);
    if (addr_ec) {
      SSL_set_tlsext_host_name(ssl_handle, rule.backend_host.c_str());
      SSL_set1_host(ssl_handle, rule.backend_host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), rule.backend_host.c_str());
    }
    tcp_stream.expires_after(rule.connect_timeout);
    co_await conn->stream.async_handshake(ssl::stream_base::client, redirect_error(use_awaitable, ec));
    if (ec) {
      long verify = SSL_get_verify_result(ssl_handle);
      std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : ec.message();
      tls::DrainErrors();
      if (ec == beast::error::timeout) {
        co_return Fail("backend_timeout", "TLS handshake with " + rule.Authority() + " timed out");
      }
      co_return Fail("backend_tls_failed", "TLS handshake with " + rule.Authority() + ": " + why);
    }
    co_return conn;
  }

  asio::any_io_executor io_;
  std::map<std::string, std::unique_ptr<ssl::context>> contexts_;
  std::mutex mutex_;
  std::map<std::string, std::deque<std::unique_ptr<BackendConnection>>> idle_;
};

void PooledExchange::Release() {
  bool reusable = !aborted_ && request_done_ && parser_ && parser_->is_done() &&
                  parser_->get().keep_alive() && conn_->buffer.size() == 0;
  if (reusable) {
    beast::get_lowest_layer(conn_->stream).expires_never();
    pool_.Return(key_, rule_, std::move(conn_));
  }
}

}  // namespace

Result<std::unique_ptr<BackendPool>> BackendPool::Create(const std::vector<RuleSettings>& rules,
                                                         asio::any_io_executor io) {
  auto pool = std::make_unique<PoolImpl>(io);
  for (const auto& rule : rules) ORTHRUS_TRY(pool->AddRule(rule));
  return pool;
}

}  // namespace orthrus::broker
