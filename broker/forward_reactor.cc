#include "broker/forward_reactor.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <cctype>
#include <ctime>
#include <functional>

#include "broker/revocation_delegator.h"
#include "common/http_headers.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/publishing_match.h"
#include "common/tls/x509_identity.h"

namespace orthrus::broker {

namespace asio = boost::asio;

namespace {

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Principals compare case-insensitively: AD names are, and a UPN logon may come back canonicalized
// in a different case than the directory holds.
bool EqualsPrincipal(const std::string& a, const std::string& b) {
  return http_headers::EqualsIgnoreCase(a, b);
}

Reason ReasonOf(const Error& error) {
  if (error.code.starts_with("certificate_malformed")) return Reason::kIdentityUntrusted;
  return ReasonFromName(error.code);
}

}  // namespace

HeaderList IdentityHeaders(const tls::CertIdentity* id, const std::string& user,
                           const tunnel::v1::ConnectionFacts& facts) {
  HeaderList out = {{"X-Orthrus-Edge", facts.edge_id()}};
  if (id != nullptr) {
    out.emplace_back("X-Orthrus-Client-Subject", id->subject);
    out.emplace_back("X-Orthrus-Client-Issuer", id->issuer);
    out.emplace_back("X-Orthrus-Client-Serial", id->serial_hex);
    out.emplace_back("X-Orthrus-Client-Cert-Sha256", tls::HexLower(id->cert_sha256));
    if (!id->upn.empty()) out.emplace_back("X-Orthrus-Client-UPN", Join(id->upn));
    if (!id->rfc822.empty()) out.emplace_back("X-Orthrus-Client-Email", Join(id->rfc822));
  }
  if (!user.empty()) out.emplace_back("X-Orthrus-User", user);
  auto colon = facts.client_address().rfind(':');
  std::string ip = facts.client_address().substr(0, colon);
  if (ip.size() > 1 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
  if (!ip.empty()) out.emplace_back("X-Forwarded-For", ip);
  return out;
}

ForwardReactor::ForwardReactor(asio::any_io_executor strand, const BrokerDeps& deps, std::string edge)
    : StrandStream(strand), deps_(deps), edge_(std::move(edge)) {}

void ForwardReactor::Begin() {
  BeginOwnership();
  auto self = std::static_pointer_cast<ForwardReactor>(shared_from_this());
  asio::co_spawn(strand_, [self]() -> asio::awaitable<void> { co_await self->Run(); },
                 asio::detached);
}

void ForwardReactor::OnCancel() {
  // The edge cancelled (device gone, edge timeout, shutdown): abort the backend I/O now rather than
  // letting a 59-minute long-poll run on for nobody.
  OnStrand([this] {
    cancelled_ = true;
    if (exchange_) exchange_->Abort();
    waker_.Wake();
  });
}

asio::awaitable<void> ForwardReactor::Run() {
  auto first = co_await Read();
  if (!first || !first->has_head()) {
    co_await Refuse(cancelled_ ? Reason::kCancelled : Reason::kBadRequestHead,
                    "stream did not start with a request head");
    co_return;
  }
  head_ = std::move(*first->mutable_head());
  if (head_.method().empty() || head_.target().empty() || head_.target().front() != '/') {
    co_await Refuse(Reason::kBadRequestHead, "request head lacks a method or an origin-form target");
    co_return;
  }

  // A forwarded certificate is never taken on the edge's word: re-verified, every field re-derived.
  std::optional<tls::CertIdentity> identity;
  if (head_.has_identity()) {
    auto verified = deps_.identity.Verify(head_.identity(), std::time(nullptr));
    if (!verified) {
      co_await Refuse(ReasonOf(verified.error()), verified.error().detail);
      co_return;
    }
    identity = std::move(*verified);
    subject_ = identity->subject;
  }

  std::string host;
  for (const auto& h : head_.headers()) {
    if (http_headers::EqualsIgnoreCase(h.name(), "Host")) host = NormalizeHost(h.value());
  }
  const RuleSettings* rule = deps_.routes.Match(host, head_.target());
  if (rule == nullptr) {
    std::string detail = "no publishing rule has a host and path_prefix for '" + host + "' and this target";
    co_await Refuse(Reason::kNoRoute, std::move(detail));
    co_return;
  }
  rule_name_ = rule->name;

  auto failure = co_await Authenticate(*rule, identity ? &*identity : nullptr);
  if (cancelled_) {
    End(Reason::kCancelled, "edge cancelled during authentication");
    co_return;
  }
  if (failure) {
    // After a password, every refusal is a 401: a device must not learn that the password was
    // right but the account is disabled or expired.
    Reason reason = ReasonOf(failure->error);
    unsigned status = failure->from_password && ReasonHttpStatus(reason) == 403 ? 401 : 0;
    co_await Refuse(reason, failure->error.detail, status);
    co_return;
  }
  std::unique_ptr<NegotiateExchange> negotiate;
  if (rule->delegates()) {
    auto token = co_await Delegate(*rule);
    if (cancelled_) {
      End(Reason::kCancelled, "edge cancelled during authentication");
      co_return;
    }
    if (!token) {
      co_await Refuse(ReasonOf(token.error()), token.error().detail);
      co_return;
    }
    negotiate = std::move(*token);
  }

  // The pool key carries the user: a connection authenticated for one user never serves another.
  auto opened = co_await deps_.backends.Open(*rule, user_, head_.method() == "HEAD");
  if (cancelled_) {
    End(Reason::kCancelled, "edge cancelled while connecting to the backend");
    co_return;
  }
  if (!opened) {
    co_await Refuse(ReasonOf(opened.error()), opened.error().detail);
    co_return;
  }
  exchange_ = std::move(*opened);

  HeaderList extra;
  if (rule->identity_headers) {
    extra = IdentityHeaders(identity ? &*identity : nullptr, user_, head_.connection());
  }
  // Replaces whatever Authorization the device sent: the backend sees only the delegated user.
  if (negotiate) extra.emplace_back("Authorization", "Negotiate " + negotiate->token());
  if (auto sent = co_await exchange_->SendHead(head_, extra); !sent) {
    co_await Refuse(ReasonOf(sent.error()), sent.error().detail);
    co_return;
  }

  while (head_.has_body()) {
    auto frame = co_await Read();
    if (!frame) break;  // the edge half-closed: end of body (or it cancelled; checked below)
    if (!frame->has_body()) {
      exchange_->Abort();
      co_await Refuse(Reason::kBadRequestHead, "unexpected frame inside the request body");
      co_return;
    }
    bytes_in_ += frame->body().data().size();
    if (head_.has_content_length() && bytes_in_ > head_.content_length()) {
      exchange_->Abort();
      co_await Refuse(Reason::kBadRequestHead, "request body longer than its Content-Length");
      co_return;
    }
    if (auto sent = co_await exchange_->SendBodyChunk(frame->body().data()); !sent) {
      co_await Refuse(cancelled_ ? Reason::kCancelled : ReasonOf(sent.error()), sent.error().detail);
      co_return;
    }
  }
  if (cancelled_ || (head_.has_content_length() && bytes_in_ != head_.content_length())) {
    exchange_->Abort();
    End(Reason::kCancelled, "request body ended early");
    co_return;
  }
  if (auto ended = co_await exchange_->EndBody(); !ended) {
    co_await Refuse(cancelled_ ? Reason::kCancelled : ReasonOf(ended.error()), ended.error().detail);
    co_return;
  }

  auto response = co_await exchange_->ReadResponseHead();
  if (!response) {
    co_await Refuse(cancelled_ ? Reason::kCancelled : ReasonOf(response.error()),
                    response.error().detail);
    co_return;
  }
  status_ = response->status;
  if (negotiate) {
    if (response->status == 401) {
      exchange_->Abort();
      std::string detail = "backend " + rule->Authority() + " answered 401 to a ticket for " +
                           user_ + " to " + rule->spn;
      co_await Refuse(Reason::kBackendRejectedTicket, std::move(detail));
      co_return;
    }
    // Mutual authentication: a backend that proves itself sends a final Negotiate token. It is
    // meant for the broker, not for the device.
    for (auto it = response->headers.begin(); it != response->headers.end();) {
      if (http_headers::EqualsIgnoreCase(it->first, "WWW-Authenticate") &&
          it->second.size() > 10 && http_headers::EqualsIgnoreCase(it->second.substr(0, 10), "Negotiate ")) {
        if (auto done = negotiate->Complete(it->second.substr(10)); !done) {
          exchange_->Abort();
          co_await Refuse(Reason::kBackendAuthFailed, done.error().detail);
          co_return;
        }
        it = response->headers.erase(it);
      } else {
        ++it;
      }
    }
  }
  BrokerFrame head_frame;
  auto* rh = head_frame.mutable_head();
  rh->set_status(response->status);
  rh->set_reason(response->reason);
  for (auto& [name, value] : response->headers) {
    auto* h = rh->add_headers();
    h->set_name(name);
    h->set_value(value);
  }
  if (response->content_length) rh->set_content_length(*response->content_length);
  rh->set_has_body(response->has_body);
  if (!co_await Write(std::move(head_frame))) {
    exchange_->Abort();
    End(Reason::kCancelled, "edge went away before the response head");
    co_return;
  }

  bool more = response->has_body;
  while (more) {
    std::string data;
    auto chunk = co_await exchange_->ReadBodyChunk(data);
    if (!chunk) {
      End(cancelled_ ? Reason::kCancelled : ReasonOf(chunk.error()), chunk.error().detail);
      co_return;
    }
    more = *chunk;
    if (data.empty()) continue;
    bytes_out_ += data.size();
    BrokerFrame frame;
    frame.mutable_body()->set_data(std::move(data));
    if (!co_await Write(std::move(frame))) {
      // The device or the edge went away mid-response: stop reading the backend.
      exchange_->Abort();
      End(Reason::kCancelled, "edge went away mid-response");
      co_return;
    }
  }
  exchange_->Release();
  End(Reason::kOk, "");
}

// Arguments are built as named locals: g++ 12 destroys some temporaries of a co_await expression
// twice (seen as a double free here), so nothing but names goes into these co_awaits.
asio::awaitable<std::optional<ForwardReactor::AuthFailure>> ForwardReactor::Authenticate(
    const RuleSettings& rule, const tls::CertIdentity* identity) {
  const AuthMode mode = rule.authentication;
  const bool has_password = head_.has_password() && !head_.password().username().empty();
  // Only refusals need this text; built on demand, off the success path.
  auto needs = [&rule, mode] {
    return "rule " + rule.name + " (" + std::string(AuthModeName(mode)) + ")";
  };
  // What the rule takes from this request. "certificate-or-password" prefers the certificate.
  bool use_certificate = identity != nullptr && mode != AuthMode::kPassword;
  bool use_password = has_password && (mode == AuthMode::kPassword ||
                                        mode == AuthMode::kCertificateAndPassword ||
                                        (mode == AuthMode::kCertificateOrPassword && !use_certificate));
  bool complete = mode == AuthMode::kCertificate               ? use_certificate
                  : mode == AuthMode::kCertificateOrPassword   ? use_certificate || use_password
                  : mode == AuthMode::kCertificateAndPassword  ? use_certificate && use_password
                                                               : use_password;
  if (!complete) {
    co_return AuthFailure{{"authentication_incomplete",
                           needs() + ": the edge forwarded " +
                               (identity ? "a certificate" : "no certificate") + " and " +
                               (has_password ? "a password" : "no password") + " (edge rule '" +
                               head_.rule() + "', " + head_.authentication() + ")"}};
  }
  if (use_password) {
    if (deps_.passwords == nullptr) {
      co_return AuthFailure{{"internal_error", needs() + " but no password checker is configured"}};
    }
    std::string username = head_.password().username();
    Result<std::string> principal = co_await CheckPassword();
    if (!principal) {
      const std::string& code = principal.error().code;
      if (deps_.delegator && (code == "account_disabled" || code == "password_expired")) {
        // The KDC just said this account may not log on: nothing cached for it may be used either.
        std::string account = username;
        for (char& c : account) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (const auto& p : PrincipalsForAccount(account, deps_.settings.kerberos->realm)) {
          deps_.delegator->ForgetUser(p);
        }
      }
      co_return AuthFailure{std::move(principal.error()), true};
    }
    user_ = std::move(*principal);
  }
  // The account behind the certificate matters when a ticket is made for it, or when it must be
  // the password's account.
  bool map = use_certificate && (rule.delegates() || use_password);
  if (map) {
    if (deps_.directory == nullptr) {
      co_return AuthFailure{{"internal_error", needs() + " but no directory is configured"}};
    }
    Result<Account> account = co_await MapCertificate(*identity);
    if (!account) co_return AuthFailure{std::move(account.error()), false};
    if (use_password && !EqualsPrincipal(account->kerberos_principal, user_)) {
      co_return AuthFailure{{"identities_differ", "the certificate maps to " +
                                                      account->kerberos_principal +
                                                      ", the password is " + user_ + "'s"}};
    }
    user_ = account->kerberos_principal;
  }
  co_return std::nullopt;
}

asio::awaitable<Result<Account>> ForwardReactor::MapCertificate(const tls::CertIdentity& identity) {
  const auto& directory = *deps_.settings.directory;
  Directory* dir = deps_.directory;
  std::function<Result<Account>()> map_job = [dir, identity] { return dir->MapCertificate(identity); };
  Error map_timeout{"directory_unavailable", "LDAP did not answer within directory.timeout_ms"};
  Error map_overload{"broker_overloaded", "worker queue full while mapping the certificate"};
  auto map_limit = directory.timeout + std::chrono::milliseconds(500);
  Result<Account> account = co_await RunBlocking<Account>(deps_.workers, std::move(map_job), map_limit,
                                                          std::move(map_timeout), std::move(map_overload));
  co_return account;
}

asio::awaitable<Result<std::string>> ForwardReactor::CheckPassword() {
  const auto& kerberos = *deps_.settings.kerberos;
  PasswordChecker* checker = deps_.passwords;
  // The job owns its copy; the head's copy goes now, so one fewer buffer holds the password.
  std::string username = head_.password().username();
  std::string password = std::move(*head_.mutable_password()->mutable_password());
  head_.clear_password();
  std::function<Result<std::string>()> job = [checker, username, password] {
    return checker->Check(username, password);
  };
  Error timeout{"kdc_unreachable", "no answer to the password check of " + username +
                                       " within kerberos.kdc_timeout_ms"};
  Error overload{"broker_overloaded", "worker queue full while checking a password"};
  Result<std::string> principal = co_await RunBlocking<std::string>(
      deps_.workers, std::move(job), kerberos.kdc_timeout, std::move(timeout), std::move(overload));
  co_return principal;
}

asio::awaitable<Result<std::unique_ptr<NegotiateExchange>>> ForwardReactor::Delegate(
    const RuleSettings& rule) {
  const auto& kerberos = *deps_.settings.kerberos;
  Delegator* delegator = deps_.delegator;
  std::string user = user_;
  std::string spn = rule.spn;
  std::function<Result<std::unique_ptr<NegotiateExchange>>()> token_job = [delegator, user, spn] {
    return delegator->Begin(user, spn);
  };
  Error kdc_timeout{"kdc_unreachable",
                    "no ticket for " + user + " to " + spn + " within kerberos.kdc_timeout_ms"};
  Error token_overload{"broker_overloaded", "worker queue full while obtaining a ticket"};
  Result<std::unique_ptr<NegotiateExchange>> token =
      co_await RunBlocking<std::unique_ptr<NegotiateExchange>>(
          deps_.workers, std::move(token_job), kerberos.kdc_timeout, std::move(kdc_timeout),
          std::move(token_overload));
  co_return token;
}

asio::awaitable<void> ForwardReactor::Refuse(Reason reason, std::string detail, unsigned status) {
  if (status == 0) status = ReasonHttpStatus(reason);
  if (!cancelled_) {
    BrokerFrame frame;
    auto* refusal = frame.mutable_refusal();
    refusal->set_reason(std::string(ReasonName(reason)));
    refusal->set_http_status(status);
    refusal->set_detail(detail);
    status_ = status;
    co_await Write(std::move(frame));
  }
  End(reason, std::move(detail));
}

void ForwardReactor::End(Reason reason, std::string detail) {
  Log(reason, detail);
  MarkClosing();
  if (reason == Reason::kOk) {
    Finish(grpc::Status::OK);
  } else {
    // The status message is the reason code: the edge maps it without parsing prose.
    Finish(grpc::Status(reason == Reason::kCancelled ? grpc::StatusCode::CANCELLED
                                                     : grpc::StatusCode::ABORTED,
                        std::string(ReasonName(reason))));
  }
}

void ForwardReactor::Log(Reason reason, const std::string& detail) {
  metrics::CountReason(reason);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start_);
  auto level = reason == Reason::kOk ? log::Level::kInfo : log::Level::kWarn;
  log::Write(level, "request",
             {{"req", head_.request_id()},
              {"edge", edge_},
              {"client", head_.connection().client_address()},
              {"subject", subject_},
              {"method", head_.method()},
              {"target", head_.target()},
              {"rule", rule_name_},
              {"user", user_},
              {"status", status_},
              {"reason", ReasonName(reason)},
              {"hint", reason == Reason::kOk ? std::string_view() : ReasonHint(reason)},
              {"detail", detail},
              {"bytes_in", bytes_in_},
              {"bytes_out", bytes_out_},
              {"ms", static_cast<int64_t>(ms.count())}});
}

}  // namespace orthrus::broker
