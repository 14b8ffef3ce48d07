#include "edge/http_session.h"

#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <ctime>
#include <limits>
#include <memory>
#include <optional>

#include "common/http_headers.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reason.h"
#include "common/tls/x509_identity.h"
#include "edge/broker_call.h"
#include "edge/connection_identity.h"
#include "edge/request_head.h"
#include "edge/revocation_feed.h"

namespace orthrus::edge {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;
using Stream = beast::ssl_stream<beast::tcp_stream>;
using Clock = std::chrono::steady_clock;

// Body bytes per tunnel frame: large enough to amortise per-frame costs, small enough that the
// bounded in-flight window keeps a 1 GiB transfer in constant memory.
constexpr size_t kChunkBytes = 64 * 1024;

std::string NewRequestId() {
  unsigned char bytes[8];
  RAND_bytes(bytes, sizeof bytes);
  return tls::HexLower(std::string_view(reinterpret_cast<char*>(bytes), sizeof bytes));
}

bool IsClientGone(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::operation_aborted;
}

// While the broker works on a request (an ActiveSync Ping can take 59 minutes) nobody reads the
// device socket, so a device that hangs up would go unnoticed. This watches for the FIN and cancels
// the broker call, which aborts the backend request.
struct DisconnectWatch {
  explicit DisconnectWatch(asio::any_io_executor ex) : timer(ex) {}
  bool active = true;
  bool client_gone = false;
  asio::steady_timer timer;
};

asio::awaitable<void> WatchForDisconnect(tcp::socket& socket, std::shared_ptr<DisconnectWatch> w,
                                         std::shared_ptr<BrokerCall> call) {
  beast::error_code ec;
  co_await socket.async_wait(tcp::socket::wait_read, redirect_error(use_awaitable, ec));
  // Readable: either the peer closed, or it sent bytes (a pipelined request, a TLS alert). Only a
  // half-close means "gone"; keep checking since close_notify usually precedes the FIN.
  while (w->active) {
    pollfd p{socket.native_handle(), POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
      w->client_gone = true;
      call->Cancel();
      co_return;
    }
    w->timer.expires_after(std::chrono::seconds(1));
    co_await w->timer.async_wait(redirect_error(use_awaitable, ec));
  }
}

void StopWatch(DisconnectWatch& w, tcp::socket& socket) {
  w.active = false;
  beast::error_code ignored;
  socket.cancel(ignored);
  w.timer.cancel();
}

// Reads the next broker frame, cancelling the call if none arrives within `limit`.
asio::awaitable<std::optional<BrokerFrame>> ReadFrameWithin(std::shared_ptr<BrokerCall> call,
                                                            Clock::duration limit,
                                                            bool& timed_out) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto fired = std::make_shared<bool>(false);
  timer.expires_after(limit);
  timer.async_wait([call, fired](const beast::error_code& ec) {
    if (!ec) {
      *fired = true;
      call->Cancel();
    }
  });
  auto frame = co_await call->Read();
  timer.cancel();
  timed_out = timed_out || *fired;
  co_return frame;
}

// Maps how a broker stream ended (without a response head) to a reason.
Reason ReasonForBrokerStatus(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return Reason::kBrokerUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Reason::kBrokerTimeout;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return Reason::kBrokerRefusedEdge;
    case grpc::StatusCode::OK:
      return Reason::kBrokerProtocolError;
    default: {
      // The broker ends refused streams with the reason code as the status message.
      Reason r = ReasonFromName(status.error_message());
      return r == Reason::kInternalError && status.error_message() != "internal_error"
                 ? Reason::kBrokerProtocolError
                 : r;
    }
  }
}

// Gives up a broker call however a request ends: cancels it unless it completed, and releases the
// hold so gRPC can finish it.
struct CallGuard {
  std::shared_ptr<BrokerCall> call;
  ~CallGuard() {
    if (call && !call->released()) {
      call->Cancel();
      call->Release();
    }
  }
};

struct RequestRecord {
  std::string id;
  std::string method;
  std::string target;
  unsigned status = 0;
  Reason reason = Reason::kOk;
  std::string detail;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string broker;
  std::string rule;
  std::string user;  // Basic user name, when the request carried a password
  Clock::time_point start = Clock::now();
};

// How the request's publishing rule admitted it, or why it did not.
struct Admission {
  Reason reason = Reason::kOk;
  unsigned status = 0;
  std::string detail;
  const EdgeRuleSettings* rule = nullptr;
  bool send_identity = false;
  std::optional<tunnel::v1::PasswordCredentials> password;
  std::vector<std::pair<std::string, std::string>> headers;  // on refusal: challenge, Retry-After
};

using ExtraHeaders = std::vector<std::pair<std::string, std::string>>;

}  // namespace

class Session {
 public:
  Session(tcp::socket socket, SessionShared& shared)
      : stream_(beast::tcp_stream(std::move(socket)), shared.tls),
        shared_(shared),
        limits_(shared.settings.limits),
        buffer_(limits_.header_bytes + 16 * 1024),
        id_(shared.next_connection_id.fetch_add(1)),
        rule_verdicts_(shared.rules.size()) {
    beast::error_code ec;
    auto remote = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) peer_ = remote.address().to_string() + ":" + std::to_string(remote.port());
    shared_.open_connections.fetch_add(1);
    std::lock_guard lock(shared_.sessions_mutex);
    shared_.sessions[id_] = this;
  }
  ~Session() {
    shared_.open_connections.fetch_sub(1);
    std::lock_guard lock(shared_.sessions_mutex);
    shared_.sessions.erase(id_);
  }

  uint64_t id() const { return id_; }
  asio::any_io_executor executor() { return stream_.get_executor(); }
  // Strand only.
  void Abort() {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
  }

  asio::awaitable<void> Run() {
    auto& lowest = beast::get_lowest_layer(stream_);
    beast::error_code ec;
    lowest.expires_after(limits_.handshake_timeout);
    co_await stream_.async_handshake(ssl::stream_base::server, redirect_error(use_awaitable, ec));
    if (ec) {
      HandshakeFailure f = ClassifyHandshakeFailure(stream_.native_handle(), ec);
      metrics::CountReason(f.reason);
      log::Warn("tls_refused", {{"conn", id_}, {"client", peer_}, {"reason", ReasonName(f.reason)},
                                {"detail", f.detail}, {"hint", ReasonHint(f.reason)}});
      co_return;
    }
    // Without a certificate the handshake only completes where a rule accepts passwords alone;
    // each request is still held to its own rule.
    has_certificate_ = SSL_get0_peer_certificate(stream_.native_handle()) != nullptr;
    if (has_certificate_) {
      auto identity = IdentityFromHandshake(stream_.native_handle());
      if (!identity) {
        metrics::CountReason(Reason::kClientCertificateMalformed);
        log::Warn("tls_refused", {{"conn", id_},
                                  {"client", peer_},
                                  {"reason", ReasonName(Reason::kClientCertificateMalformed)},
                                  {"detail", identity.error().detail}});
        co_return;
      }
      identity_ = std::move(*identity);
      chain_.assign(identity_.chain_der().begin(), identity_.chain_der().end());
      for (const auto& upn : identity_.san().upn()) leaf_accounts_.push_back(upn);
      auto crl_keys = CrlLookupKeys(chain_);
      if (!crl_keys) {
        LogConnectionRefused(Reason::kClientCertificateMalformed, crl_keys.error().detail);
        co_return;
      }
      crl_keys_ = std::move(*crl_keys);
      if (shared_.pushed) {
        auto keys = ChainRevocationKeys(stream_.native_handle());
        if (!keys) {
          LogConnectionRefused(Reason::kClientCertificateMalformed, keys.error().detail);
          co_return;
        }
        chain_keys_ = std::move(*keys);
      }
      // Also for resumed sessions: a TLS session ticket must not outlive a revocation. A revoked
      // certificate is refused even where the rule would ignore it: the device is known lost.
      if (auto verdict = CheckRevocation(); verdict.reason != Reason::kOk) {
        LogConnectionRefused(verdict.reason, verdict.detail);
        co_return;
      }
      // Settings never change while the process runs, so one check per connection suffices.
      if (const auto& restrictions = shared_.settings.restrictions) {
        if (auto verdict = restrictions->Check(chain_); verdict.reason != Reason::kOk) {
          LogConnectionRefused(verdict.reason, verdict.detail);
          co_return;
        }
      }
    }
    FillConnectionFacts(stream_.native_handle(), facts_);
    facts_.set_client_address(peer_);
    facts_.set_edge_id(shared_.settings.edge_id);
    facts_.set_connection_id(id_);
    sni_ = NormalizeHost(facts_.sni());
    log::Info("connection", {{"conn", id_},
                             {"client", peer_},
                             {"tls", facts_.tls_version()},
                             {"cipher", facts_.tls_cipher()},
                             {"sni", facts_.sni()},
                             {"resumed", facts_.tls_session_resumed()},
                             {"certificate", has_certificate_},
                             {"subject", identity_.subject()},
                             {"cert_sha256", tls::HexLower(identity_.cert_sha256())}});

    while (co_await HandleRequest()) {
      ++requests_;
      // Idle keep-alive connections should hold as little memory as possible.
      if (buffer_.size() == 0) buffer_.shrink_to_fit();
    }

    if (lowest.socket().is_open()) {
      lowest.expires_after(std::chrono::seconds(1));
      co_await stream_.async_shutdown(redirect_error(use_awaitable, ec));
    }
  }

 private:
  // Returns whether the connection stays open for another request.
  asio::awaitable<bool> HandleRequest() {
    auto& lowest = beast::get_lowest_layer(stream_);
    beast::error_code ec;

    // Between requests the keep-alive idle limit applies; once bytes arrive, the head deadline.
    if (buffer_.size() == 0) {
      lowest.expires_after(requests_ == 0 ? limits_.header_timeout : limits_.idle_timeout);
      size_t n = co_await stream_.async_read_some(buffer_.prepare(4096),
                                                  redirect_error(use_awaitable, ec));
      buffer_.commit(n);
      if (ec) co_return false;  // closed or idle: nothing was asked, nothing to answer
    }

    http::request_parser<http::buffer_body> parser;
    parser.header_limit(limits_.header_bytes);
    // 0 means unlimited. Not boost::none: Boost 1.74 compares a Content-Length with the empty
    // optional and always reports body_limit.
    parser.body_limit(limits_.body_bytes != 0 ? limits_.body_bytes
                                              : std::numeric_limits<std::uint64_t>::max());
    RequestRecord rec;
    rec.id = NewRequestId();
    lowest.expires_after(limits_.header_timeout);
    co_await http::async_read_header(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == beast::error::timeout) {
        // Beast closed the socket on timeout: log it, nothing can be sent.
        Finish(rec, Reason::kHeaderTimeout, 0, "no complete request head in time");
        co_return false;
      }
      if (IsClientGone(ec)) {
        Finish(rec, Reason::kClientClosed, 0, "closed during the request head");
        co_return false;
      }
      Reason r = Reason::kMalformedRequest;
      if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
        r = Reason::kHeaderTooLarge;
      } else if (ec == http::error::body_limit) {
        r = Reason::kBodyTooLarge;
      }
      co_await SendError(rec, r, 11, /*keep_alive=*/false, ec.message());
      co_return false;
    }

    auto& req = parser.get();
    rec.method = std::string(req.method_string());
    rec.target = std::string(req.target());
    const unsigned version = req.version();
    if (auto refusal = CheckRequestHead(req)) {
      co_await SendError(rec, refusal->first, version == 10 ? 10 : 11, false, refusal->second);
      co_return false;
    }
    // Revocations that arrived since the handshake apply to the connection's next request; the
    // device id is per request (ActiveSync puts it in the query).
    device_id_ = ActiveSyncDeviceId(rec.target);
    if (auto verdict = CheckRevocation(); verdict.reason != Reason::kOk) {
      co_await SendError(rec, verdict.reason, version == 10 ? 10 : 11, false, verdict.detail, 403);
      co_return false;
    }
    Admission admission = Admit(req, rec);
    if (admission.reason != Reason::kOk) {
      // Refused before the body was read: the connection can serve the retry (with credentials)
      // only if nothing of this request is left on it.
      bool keep = parser.is_done() && req.keep_alive();
      co_await SendError(rec, admission.reason, version == 10 ? 10 : 11, keep, admission.detail,
                         admission.status, std::move(admission.headers));
      co_return keep;
    }
    if (http_headers::EqualsIgnoreCase(req[http::field::expect], "100-continue") &&
        !parser.is_done()) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest.expires_after(limits_.body_timeout);
      co_await asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                                 redirect_error(use_awaitable, ec));
      if (ec) {
        Finish(rec, Reason::kClientClosed, 0, ec.message());
        co_return false;
      }
    }

    EdgeFrame head_frame;
    auto* head = head_frame.mutable_head();
    head->set_request_id(rec.id);
    head->set_method(rec.method);
    head->set_target(rec.target);
    head->set_http_version(version);
    CopyEndToEndHeaders(req.base(), *head);
    if (AcceptsPassword(admission.rule->authentication)) {
      // The password goes to the broker in its own field, never to the backend in a header.
      auto* headers = head->mutable_headers();
      for (int i = headers->size() - 1; i >= 0; --i) {
        if (http_headers::EqualsIgnoreCase(headers->Get(i).name(), "Authorization") &&
            ParseBasicCredentials(headers->Get(i).value()).is_basic) {
          headers->DeleteSubrange(i, 1);
        }
      }
    }
    if (auto length = parser.content_length()) head->set_content_length(*length);
    head->set_has_body(!parser.is_done());
    if (admission.send_identity) *head->mutable_identity() = identity_;
    *head->mutable_connection() = facts_;
    head->set_rule(admission.rule->name);
    head->set_authentication(std::string(AuthModeName(admission.rule->authentication)));
    const bool sent_password = admission.password.has_value();
    if (sent_password) *head->mutable_password() = std::move(*admission.password);

    BrokerPool::Broker& broker = shared_.brokers.Pick();
    rec.broker = broker.name;
    auto executor = co_await asio::this_coro::executor;
    auto call = BrokerCall::Start(*broker.stub, executor);
    CallGuard call_guard{call};
    active_call_ = call;
    struct ActiveReset {
      std::shared_ptr<BrokerCall>& slot;
      ~ActiveReset() { slot.reset(); }
    } active_reset{active_call_};
    bool broker_ready = BrokerPool::IsReady(broker);
    bool timed_out = false;
    auto connect_timed_out = broker_ready ? std::make_shared<bool>(false)
                                          : ArmConnectWatchdog(call, broker);

    bool writable = co_await call->Write(std::move(head_frame));

    // Request body: one frame per chunk, each written before the next is read from the device, so
    // a slow broker or backend slows the device down instead of filling memory.
    while (writable && !parser.is_done()) {
      EdgeFrame frame;
      std::string* data = frame.mutable_body()->mutable_data();
      data->resize(kChunkBytes);
      req.body().data = data->data();
      req.body().size = kChunkBytes;
      lowest.expires_after(limits_.body_timeout);
      co_await http::async_read(stream_, buffer_, parser, redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      data->resize(kChunkBytes - req.body().size);
      if (ec) {
        call->Cancel();
        if (ec == beast::error::timeout) {
          Finish(rec, Reason::kBodyTimeout, 0, "request body stalled");
        } else if (IsClientGone(ec)) {
          Finish(rec, Reason::kClientClosed, 0, "closed during the request body");
        } else {
          Reason r = ec == http::error::body_limit ? Reason::kBodyTooLarge : Reason::kMalformedRequest;
          co_await SendError(rec, r, version, false, ec.message());
        }
        co_return false;
      }
      if (!data->empty()) {
        rec.bytes_in += data->size();
        writable = co_await call->Write(std::move(frame));
      }
    }
    const bool request_complete = parser.is_done();
    if (writable) call->CloseSend();

    // Response head. Meanwhile, notice a device that gives up.
    auto watch = std::make_shared<DisconnectWatch>(executor);
    asio::co_spawn(executor, WatchForDisconnect(lowest.socket(), watch, call), asio::detached);
    auto first = co_await ReadFrameWithin(call, limits_.response_timeout, timed_out);
    StopWatch(*watch, lowest.socket());

    if (!first || first->has_refusal() || !first->has_head()) {
      grpc::Status final_status = co_await call->Finish();
      if (killed_) {
        Finish(rec, kill_reason_, 0, "connection closed: " + kill_detail_);
        co_return false;
      }
      if (watch->client_gone) {
        Finish(rec, Reason::kClientClosed, 0, "device closed while waiting for the response");
        co_return false;
      }
      Reason reason;
      unsigned status;
      std::string detail;
      if (first && first->has_refusal()) {
        reason = ReasonFromName(first->refusal().reason());
        status = first->refusal().http_status();
        detail = first->refusal().detail();
      } else if (*connect_timed_out) {
        reason = Reason::kBrokerUnavailable;
        status = ReasonHttpStatus(reason);
        detail = "no connection to broker within broker_tls.connect_timeout_ms";
      } else if (timed_out) {
        reason = Reason::kBrokerTimeout;
        status = ReasonHttpStatus(reason);
        detail = "no response head within limits.response_timeout_seconds";
      } else {
        reason = first ? Reason::kBrokerProtocolError : ReasonForBrokerStatus(final_status);
        status = ReasonHttpStatus(reason);
        detail = final_status.error_message();
      }
      if (status < 400 || status > 599) status = ReasonHttpStatus(reason);
      if (sent_password) CountPasswordOutcome(rec, reason);
      bool keep = request_complete && req.keep_alive();
      ExtraHeaders challenge;
      if (status == 401) challenge = Challenge(*admission.rule);
      co_await SendError(rec, reason, version, keep, detail, status, std::move(challenge));
      co_return keep;
    }
    if (sent_password) CountPasswordOutcome(rec, Reason::kOk);

    bool keep_alive = co_await RelayResponse(rec, req, call, first->head(), request_complete);
    co_return keep_alive;
  }

  asio::awaitable<bool> RelayResponse(RequestRecord& rec, http::request<http::buffer_body>& req,
                                      std::shared_ptr<BrokerCall> call,
                                      const tunnel::v1::ResponseHead& head,
                                      bool request_complete) {
    auto& lowest = beast::get_lowest_layer(stream_);
    beast::error_code ec;
    http::response<http::buffer_body> res;
    res.version(req.version());
    res.result(head.status());
    if (!head.reason().empty()) res.reason(head.reason());
    for (const auto& h : head.headers()) {
      if (http_headers::IsHopByHop(h.name())) continue;
      res.insert(h.name(), h.value());
    }
    bool keep = request_complete && req.keep_alive();
    if (head.has_body()) {
      if (head.has_content_length()) {
        res.content_length(head.content_length());
      } else if (req.version() == 11) {
        res.chunked(true);
      } else {
        keep = false;  // HTTP/1.0 without a length: the close delimits the body
      }
    } else if (head.has_content_length()) {
      res.set(http::field::content_length, std::to_string(head.content_length()));
    }
    res.keep_alive(keep);
    res.body().data = nullptr;
    res.body().more = head.has_body();
    http::response_serializer<http::buffer_body> serializer(res);
    lowest.expires_after(limits_.body_timeout);
    co_await http::async_write_header(stream_, serializer, redirect_error(use_awaitable, ec));
    if (ec) {
      call->Cancel();
      Finish(rec, Reason::kClientClosed, head.status(), ec.message());
      co_return false;
    }

    bool timed_out = false;
    bool protocol_error = false;
    while (head.has_body()) {
      auto frame = co_await ReadFrameWithin(call, limits_.body_timeout, timed_out);
      if (!frame) break;
      if (!frame->has_body()) {
        protocol_error = true;
        call->Cancel();
        break;
      }
      const std::string& data = frame->body().data();
      res.body().data = const_cast<char*>(data.data());
      res.body().size = data.size();
      res.body().more = true;
      lowest.expires_after(limits_.body_timeout);
      co_await http::async_write(stream_, serializer, redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        // The device went away mid-response: cancelling the call aborts the backend request.
        call->Cancel();
        Finish(rec, Reason::kClientClosed, head.status(), ec.message());
        co_return false;
      }
      rec.bytes_out += data.size();
    }
    grpc::Status final_status = co_await call->Finish();
    if (killed_) {
      Finish(rec, kill_reason_, head.status(), "connection closed mid-response: " + kill_detail_);
      co_return false;
    }
    if (timed_out || protocol_error || !final_status.ok()) {
      // Mid-body failure: the status line is gone, so end the connection without completing the
      // message; the device sees a truncated body, never a silently short one.
      Reason r = timed_out        ? Reason::kBackendTimeout
                 : protocol_error ? Reason::kBrokerProtocolError
                                  : ReasonForBrokerStatus(final_status);
      Finish(rec, r, head.status(), final_status.error_message());
      beast::error_code ignored;
      lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
      lowest.close();
      co_return false;
    }
    res.body().data = nullptr;
    res.body().more = false;
    co_await http::async_write(stream_, serializer, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    Finish(rec, ec ? Reason::kClientClosed : Reason::kOk, head.status(), ec ? ec.message() : "");
    co_return keep && !ec;
  }

  static ExtraHeaders Challenge(const EdgeRuleSettings& rule) {
    if (!AcceptsPassword(rule.authentication)) return {};
    return {{"WWW-Authenticate", "Basic realm=\"" + rule.basic_realm + "\", charset=\"UTF-8\""}};
  }

  // The request's publishing rule and what it asks of this device: certificate (with the rule's
  // trust list and restrictions), password, or both. Runs before anything reaches a broker.
  Admission Admit(const http::request<http::buffer_body>& req, RequestRecord& rec) {
    Admission a;
    auto refuse = [&a](Reason reason, unsigned status, std::string detail) -> Admission& {
      a.reason = reason;
      a.status = status;
      a.detail = std::move(detail);
      return a;
    };
    const std::string& sni = sni_;
    std::string host = req.count(http::field::host) ? NormalizeHost(req[http::field::host]) : sni;
    if (req.count(http::field::host) && host.empty()) {
      return refuse(Reason::kMalformedRequest, 400, "Host header is not a host name");
    }
    // A device may not open a connection for one site and send requests for another: the
    // handshake's certificate requirement was chosen for the name it asked for.
    if (!sni.empty() && host != sni) {
      return refuse(Reason::kMisdirectedRequest, 421,
                    "Host " + host + " on a connection for server name " + sni);
    }
    a.rule = shared_.rules.Match(host, rec.target);
    if (a.rule == nullptr) {
      return refuse(Reason::kNoPublishingRule, 404, "no rule for host '" + host + "' and this path");
    }
    const EdgeRuleSettings& rule = *a.rule;
    rec.rule = rule.name;
    const AuthMode mode = rule.authentication;

    bool use_certificate = false;
    if (mode != AuthMode::kPassword) {
      if (!has_certificate_ && mode != AuthMode::kCertificateOrPassword) {
        return refuse(Reason::kNoClientCertificate, 403,
                      "rule " + rule.name + " (" + std::string(AuthModeName(mode)) +
                          ") needs a client certificate and the device presented none");
      }
      if (has_certificate_) {
        auto& verdict = rule_verdicts_[shared_.rules.IndexOf(rule)];
        if (!verdict) verdict = PublishingRules::CheckCertificate(rule, chain_);
        if (verdict->reason != Reason::kOk) return refuse(verdict->reason, 403, verdict->detail);
        use_certificate = true;
      }
    }
    a.send_identity = use_certificate;
    bool needs_password = mode == AuthMode::kPassword || mode == AuthMode::kCertificateAndPassword ||
                          (mode == AuthMode::kCertificateOrPassword && !use_certificate);
    if (!needs_password) return a;

    a.headers = Challenge(rule);
    auto authorization = req[http::field::authorization];
    if (authorization.empty()) {
      return refuse(Reason::kPasswordRequired, 401,
                    "rule " + rule.name + " (" + std::string(AuthModeName(mode)) +
                        ") needs Basic credentials");
    }
    BasicCredentials basic = ParseBasicCredentials(authorization);
    if (!basic.is_basic) {
      auto scheme = authorization.substr(0, authorization.find(' '));
      return refuse(Reason::kPasswordRequired, 401,
                    "Authorization scheme '" + std::string(scheme) + "' is not accepted, only Basic");
    }
    if (!basic.credentials) {
      // Garbage in place of credentials counts against the address like a wrong password.
      shared_.password_limiter.RecordFailure("", ClientIp(), PasswordLimiter::Clock::now());
      return refuse(Reason::kMalformedCredentials, 401, basic.problem);
    }
    rec.user = basic.credentials->username();
    password_user_ = rec.user;
    // Everything else was checked before admission; the account name is new with this request.
    if (auto verdict = CheckAccountRevoked(rec.user); verdict.reason != Reason::kOk) {
      a.headers.clear();
      return refuse(verdict.reason, 403, verdict.detail);
    }
    if (auto blocked = shared_.password_limiter.Check(rec.user, ClientIp(),
                                                      PasswordLimiter::Clock::now())) {
      a.headers = {{"Retry-After", std::to_string(blocked->retry_after.count())}};
      return refuse(Reason::kRateLimited, 429,
                    "too many failed passwords for this " + blocked->scope + "; retry in " +
                        std::to_string(blocked->retry_after.count()) + " s");
    }
    a.headers.clear();
    a.password = std::move(basic.credentials);
    return a;
  }

  // Only guesses count: a wrong password or an unknown name. A right password clears the
  // account's count.
  void CountPasswordOutcome(const RequestRecord& rec, Reason reason) {
    if (reason == Reason::kPasswordWrong || reason == Reason::kPasswordUnknownUser) {
      shared_.password_limiter.RecordFailure(rec.user, ClientIp(), PasswordLimiter::Clock::now());
    } else if (reason == Reason::kOk) {
      shared_.password_limiter.RecordSuccess(rec.user);
    }
  }

  std::string ClientIp() const {
    auto colon = peer_.rfind(':');
    return colon == std::string::npos ? peer_ : peer_.substr(0, colon);
  }

  void LogConnectionRefused(Reason reason, const std::string& detail) const {
    metrics::CountReason(reason);
    log::Warn("tls_refused", {{"conn", id_},
                              {"client", peer_},
                              {"subject", identity_.subject()},
                              {"reason", ReasonName(reason)},
                              {"detail", detail},
                              {"hint", ReasonHint(reason)}});
  }

  // CRL files (certificate connections) and the pushed set: certificates of the chain, the
  // holder's accounts (UPN SANs, the Basic user name), the ActiveSync device id, and the feed's
  // staleness. Cheap: hash lookups on keys computed at the handshake.
  RevocationVerdict CheckRevocation() const {
    const std::time_t now = std::time(nullptr);
    if (has_certificate_) {
      if (auto v = shared_.revocation.Check(crl_keys_, now); v.reason != Reason::kOk) return v;
    }
    const PushedRevocation* pushed = shared_.pushed;
    if (pushed == nullptr) return {};
    if (auto stale = pushed->StaleRefusal(NowUnixMs())) {
      return {Reason::kRevocationFeedStale, *stale};
    }
    auto set = pushed->Current();
    revocation::CheckOptions options;
    options.crl_stale_grace = pushed->settings().crl_stale_grace;
    for (const auto& keys : chain_keys_) {
      if (auto v = set->CheckCertificate(keys, now, options); !v.ok()) return FromVerdict(v);
    }
    std::vector<std::string> accounts = leaf_accounts_;
    if (!password_user_.empty()) accounts.push_back(password_user_);
    if (auto v = set->CheckAccounts(accounts); !v.ok()) return FromVerdict(v);
    if (auto v = set->CheckDevice(device_id_); !v.ok()) return FromVerdict(v);
    return {};
  }

  static RevocationVerdict FromVerdict(const revocation::Verdict& v) {
    return {ReasonFromName(revocation::FindingReasonName(v.finding)), v.detail};
  }

  RevocationVerdict CheckAccountRevoked(const std::string& user) const {
    if (shared_.pushed == nullptr) return {};
    auto v = shared_.pushed->Current()->CheckAccounts({user});
    return v.ok() ? RevocationVerdict{} : FromVerdict(v);
  }

 public:
  // On the strand. Closes the connection if it is refused now; its in-flight request ends with it.
  void Recheck() {
    if (killed_) return;
    RevocationVerdict v = CheckRevocation();
    if (v.reason == Reason::kOk) return;
    killed_ = true;
    kill_reason_ = v.reason;
    kill_detail_ = v.detail;
    metrics::CountReason(v.reason);
    log::Warn("connection_revoked", {{"conn", id_},
                                     {"client", peer_},
                                     {"subject", identity_.subject()},
                                     {"user", password_user_},
                                     {"device_id", device_id_},
                                     {"reason", ReasonName(v.reason)},
                                     {"detail", v.detail},
                                     {"in_flight", active_call_ != nullptr}});
    if (active_call_) active_call_->Cancel();
    Abort();
  }

 private:
  // Refusals that need no broker: returns the reason and detail, or nothing when the head is fine.
  std::optional<std::pair<Reason, std::string>> CheckRequestHead(
      const http::request<http::buffer_body>& req) const {
    if (req.version() != 10 && req.version() != 11) {
      return std::pair{Reason::kMalformedRequest, std::string("unsupported HTTP version")};
    }
    if (req.method_string().size() + req.target().size() + 11 > limits_.request_line_bytes) {
      return std::pair{Reason::kRequestLineTooLong, std::string("request line exceeds the limit")};
    }
    if (req.method() == http::verb::connect) {
      return std::pair{Reason::kUnsupportedRequest, std::string("CONNECT is not proxied")};
    }
    if (req.target().empty() || req.target().front() != '/') {
      return std::pair{Reason::kMalformedRequest, std::string("request target must be a path")};
    }
    // Both framings at once is the classic request-smuggling vector: refuse, don't pick one.
    if (req.count(http::field::content_length) && req.count(http::field::transfer_encoding)) {
      return std::pair{Reason::kMalformedRequest,
                       std::string("both Content-Length and Transfer-Encoding")};
    }
    if (req.version() == 11 && req.count(http::field::host) != 1) {
      return std::pair{Reason::kMalformedRequest, std::string("HTTP/1.1 needs exactly one Host")};
    }
    return std::nullopt;
  }

  // A broker that cannot be reached (e.g. dropped SYNs) must not hold a request for the whole
  // response timeout: unless the channel becomes ready within the connect timeout, give up. The
  // returned flag tells the caller that this watchdog, not the response timeout, cancelled the call.
  std::shared_ptr<bool> ArmConnectWatchdog(std::shared_ptr<BrokerCall> call,
                                           BrokerPool::Broker& broker) {
    auto fired = std::make_shared<bool>(false);
    auto timer = std::make_shared<asio::steady_timer>(call->strand_executor());
    timer->expires_after(shared_.settings.broker_connect_timeout);
    timer->async_wait([timer, call, fired, &broker](const beast::error_code& ec) {
      if (ec || call->finished() || BrokerPool::IsReady(broker)) return;
      *fired = true;
      call->Cancel();
    });
    return fired;
  }

  asio::awaitable<void> SendError(RequestRecord& rec, Reason reason, unsigned version,
                                  bool keep_alive, std::string detail, unsigned status = 0,
                                  ExtraHeaders headers = {}) {
    if (status == 0) status = ReasonHttpStatus(reason);
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    for (auto& [name, value] : headers) res.insert(name, value);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    res.set("X-Orthrus-Request-Id", rec.id);
    // The device learns the status and an id to quote to its administrator; the reason code and
    // detail stay in the logs.
    res.body() = std::to_string(status) + " " + std::string(http::obsolete_reason(res.result())) +
                 "\r\nrequest-id: " + rec.id + "\r\n";
    res.keep_alive(keep_alive);
    res.prepare_payload();
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
    beast::error_code ec;
    co_await http::async_write(stream_, res, redirect_error(use_awaitable, ec));
    Finish(rec, reason, status, std::move(detail));
  }

  void Finish(RequestRecord& rec, Reason reason, unsigned status, std::string detail) {
    rec.reason = reason;
    rec.status = status;
    metrics::CountReason(reason);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - rec.start);
    auto level = reason == Reason::kOk ? log::Level::kInfo : log::Level::kWarn;
    log::Write(level, "request",
               {{"conn", id_},
                {"req", rec.id},
                {"client", peer_},
                {"subject", identity_.subject()},
                {"method", rec.method},
                {"target", rec.target},
                {"status", status},
                {"reason", ReasonName(reason)},
                {"detail", detail},
                {"bytes_in", rec.bytes_in},
                {"bytes_out", rec.bytes_out},
                {"broker", rec.broker},
                {"rule", rec.rule},
                {"user", rec.user},
                {"ms", static_cast<int64_t>(ms.count())}});
  }

  Stream stream_;
  SessionShared& shared_;
  const HttpLimits& limits_;
  beast::flat_buffer buffer_;
  uint64_t id_;
  std::string peer_;
  uint64_t requests_ = 0;
  bool has_certificate_ = false;
  tunnel::v1::ClientIdentity identity_;
  std::vector<std::string> chain_;  // identity_'s chain, leaf first, for the checks
  std::vector<ChainRevocationKey> crl_keys_;      // for the CRL files
  std::vector<revocation::CertKeys> chain_keys_;  // for pushed revocations
  std::vector<std::string> leaf_accounts_;        // UPN SANs
  std::string password_user_;                     // Basic user name of the latest request
  std::string device_id_;                         // ActiveSync DeviceId of the latest request
  std::shared_ptr<BrokerCall> active_call_;       // the request in flight, for Recheck()
  bool killed_ = false;
  Reason kill_reason_ = Reason::kOk;
  std::string kill_detail_;
  tunnel::v1::ConnectionFacts facts_;
  std::string sni_;  // normalized server name the device asked for; "" without SNI
  // Each rule's verdict on this connection's certificate, computed on the first request it serves.
  std::vector<std::optional<RuleCertificateVerdict>> rule_verdicts_;
};

namespace {

asio::awaitable<void> RunSession(std::unique_ptr<Session> session) { co_await session->Run(); }

}  // namespace

void CloseAllSessions(SessionShared& shared) {
  std::lock_guard lock(shared.sessions_mutex);
  for (auto& [id, session] : shared.sessions) {
    asio::post(session->executor(), [&shared, id = id] {
      // On the session's strand: if it is still registered it is still alive.
      std::lock_guard inner(shared.sessions_mutex);
      auto it = shared.sessions.find(id);
      if (it != shared.sessions.end()) it->second->Abort();
    });
  }
}

void RecheckAllSessions(SessionShared& shared) {
  std::lock_guard lock(shared.sessions_mutex);
  for (auto& [id, session] : shared.sessions) {
    asio::post(session->executor(), [&shared, id = id] {
      std::lock_guard inner(shared.sessions_mutex);
      auto it = shared.sessions.find(id);
      if (it != shared.sessions.end()) it->second->Recheck();
    });
  }
}

void StartSession(tcp::socket socket, SessionShared& shared) {
  auto executor = socket.get_executor();
  auto session = std::make_unique<Session>(std::move(socket), shared);
  asio::co_spawn(executor, RunSession(std::move(session)), [](std::exception_ptr e) {
    // Asio/Beast are used through error_code overloads only; an exception here is a bug.
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::Error("session_exception", {{"what", ex.what()}});
      }
    }
  });
}

}  // namespace orthrus::edge
