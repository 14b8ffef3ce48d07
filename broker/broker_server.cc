#include "broker/broker_server.h"

#include <algorithm>
#include <ctime>

#include <grpc/grpc_security_constants.h>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <thread>
#include <vector>

#include "broker/revocation_admin_service.h"
#include "broker/revocation_delegator.h"
#include "broker/revocation_feed_service.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reason.h"

namespace orthrus::broker {

namespace asio = boost::asio;

namespace {

// A reactor that only refuses: for edges that passed TLS (right CA) but are not on the allow list.
class RefusingReactor final : public grpc::ServerBidiReactor<EdgeFrame, BrokerFrame> {
 public:
  explicit RefusingReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

std::string PeerDescription(const grpc::AuthContext& auth) {
  std::string names;
  for (const auto& value : auth.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
    names += "CN=" + std::string(value.data(), value.size());
  }
  for (const auto& value : auth.FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    names += (names.empty() ? "" : " ") + std::string("SAN=") + std::string(value.data(), value.size());
  }
  return names;
}

std::optional<std::string> AllowedEdgeName(const grpc::AuthContext& auth,
                                           const std::vector<std::string>& allowed) {
  std::vector<std::string> names;
  for (const auto& v : auth.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) names.emplace_back(v.data(), v.size());
  for (const auto& v : auth.FindPropertyValues(GRPC_PEER_DNS_PROPERTY_NAME)) names.emplace_back(v.data(), v.size());
  for (const auto& name : names) {
    for (const auto& entry : allowed) {
      if (name == entry) return name;
    }
  }
  return std::nullopt;
}

class BrokerServer::TunnelService final : public tunnel::v1::Tunnel::CallbackService {
 public:
  TunnelService(asio::io_context& ioc, const BrokerDeps& deps) : ioc_(ioc), deps_(deps) {}

  grpc::ServerBidiReactor<EdgeFrame, BrokerFrame>* Forward(
      grpc::CallbackServerContext* context) override {
    auto auth = context->auth_context();
    auto edge = auth ? AllowedEdgeName(*auth, deps_.settings.allowed_edges) : std::nullopt;
    if (!edge) {
      // Right CA, wrong identity: a stolen or mis-issued edge certificate must not reach backends.
      metrics::CountReason(Reason::kEdgeNotAllowed);
      log::Warn("edge_refused", {{"reason", ReasonName(Reason::kEdgeNotAllowed)},
                                 {"peer", context->peer()},
                                 {"certificate", auth ? PeerDescription(*auth) : ""},
                                 {"hint", ReasonHint(Reason::kEdgeNotAllowed)}});
      return new RefusingReactor(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                              std::string(ReasonName(Reason::kEdgeNotAllowed))));
    }
    auto reactor = std::make_shared<ForwardReactor>(asio::make_strand(ioc_), deps_, *edge);
    reactor->Begin();
    return reactor.get();
  }

 private:
  asio::io_context& ioc_;
  const BrokerDeps& deps_;
};

BrokerServer::BrokerServer(BrokerSettings settings)
    : settings_(std::move(settings)),
      ioc_(static_cast<int>(settings_.threads)),
      work_(asio::make_work_guard(ioc_)) {}

BrokerServer::~BrokerServer() = default;

Status BrokerServer::StartRevocation() {
  const auto& r = *settings_.revocation;
  std::time_t now = std::time(nullptr);
  // Blocking (SQLite, CRL files and distribution points), but nothing else runs yet.
  auto opened = revocation::RevocationService::Open(r.service, now);
  if (!opened) {
    return Fail(opened.error().code, "revocation.database_file " + r.service.database_file + ": " +
                                         opened.error().detail);
  }
  revocation_ = std::move(*opened);
  auto crls = revocation_->RefreshCrls(now, true);
  uint64_t failed = 0;
  for (const auto& c : crls) failed += c.last_error_code().empty() ? 0 : 1;
  log::Info("revocation_started", {{"feed", revocation_->feed_id()},
                                   {"version", revocation_->state().version()},
                                   {"instant_entries", static_cast<uint64_t>(
                                                           revocation_->state().current()->entries().size())},
                                   {"crls", static_cast<uint64_t>(
                                                revocation_->state().current()->crls().size())},
                                   {"crl_sources", static_cast<uint64_t>(r.service.sources.size())},
                                   {"crl_sources_failed", failed}});
  return {};
}

void BrokerServer::ScheduleCrlRefresh() {
  std::time_t due = revocation_->NextRefreshDue();
  if (due == 0) return;  // no CRL sources
  long wait = static_cast<long>(due - std::time(nullptr));
  crl_refresh_timer_->expires_after(std::chrono::seconds(std::clamp(wait, 1L, 30L)));
  crl_refresh_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    if (std::time(nullptr) < revocation_->NextRefreshDue()) {
      ScheduleCrlRefresh();
      return;
    }
    bool queued = workers_->TrySubmit([this] {
      revocation_->RefreshCrls(std::time(nullptr), false);  // logs each failure itself
      asio::post(ioc_, [this] { ScheduleCrlRefresh(); });
    });
    if (!queued) {
      log::Warn("crl_refresh_deferred", {{"reason", ReasonName(Reason::kBrokerOverloaded)}});
      ScheduleCrlRefresh();  // due already: retried in a second
    }
  });
}

namespace {

// Both listeners demand a client certificate from their CA; who may do what is checked per call.
std::shared_ptr<grpc::ServerCredentials> MutualTlsCredentials(const std::string& client_ca_pem,
                                                              const std::string& key_pem,
                                                              const std::string& cert_chain_pem) {
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = client_ca_pem;
  tls.pem_key_cert_pairs.push_back({key_pem, cert_chain_pem});
  return grpc::SslServerCredentials(tls);
}

}  // namespace

Status BrokerServer::StartAdminListener() {
  const auto& a = settings_.revocation->admin;
  admin_service_ = std::make_unique<RevocationAdminService>(*revocation_, *workers_, a.allowed_admins);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(a.listen.ToString(),
                           MutualTlsCredentials(a.admin_ca_pem, a.private_key_pem, a.cert_chain_pem),
                           &bound_port);
  builder.RegisterService(admin_service_.get());
  admin_server_ = builder.BuildAndStart();
  if (!admin_server_ || bound_port == 0) {
    return Fail("listen_failed", "cannot listen on revocation.admin.address " + a.listen.ToString());
  }
  HostPort bound = a.listen;
  bound.port = static_cast<uint16_t>(bound_port);
  log::Info("admin_listening", {{"address", bound.ToString()},
                                {"allowed_admins", static_cast<uint64_t>(a.allowed_admins.size())}});
  return {};
}

Status BrokerServer::Start() {
  if (settings_.revocation) ORTHRUS_TRY(StartRevocation());
  ORTHRUS_ASSIGN_OR_RETURN(auto identity, IdentityVerifier::Create(settings_.device_ca_file, settings_.device_clock_skew_seconds));
  identity_.emplace(std::move(identity));
  routes_ = std::make_unique<RouteTable>(settings_.rules);
  ORTHRUS_ASSIGN_OR_RETURN(backends_, BackendPool::Create(settings_.rules, ioc_.get_executor()));
  workers_ = std::make_unique<WorkerPool>(settings_.worker_threads, settings_.worker_threads * 8);
  if (settings_.kerberos) {
    const auto& k = *settings_.kerberos;
    ORTHRUS_ASSIGN_OR_RETURN(delegator_, MakeGssDelegator(DelegationSettings{
                                             k.keytab_file, k.principal, k.refresh_margin}));
    if (revocation_) {
      // An account revoked here loses its cached delegated credentials at once (and gets no new
      // ticket); docs/revocation-push.md.
      delegator_ = std::make_unique<RevocationAwareDelegator>(std::move(delegator_),
                                                              revocation_->state(), k.realm);
    }
  }
  bool any_password = std::any_of(settings_.rules.begin(), settings_.rules.end(),
                                  [](const RuleSettings& r) { return AcceptsPassword(r.authentication); });
  if (any_password) {
    const auto& k = *settings_.kerberos;
    ORTHRUS_ASSIGN_OR_RETURN(passwords_, MakeKdcPasswordChecker(PasswordCheckSettings{
                                             k.realm, k.keytab_file, k.password_verify_principal,
                                             k.password_cache}));
  }
  if (settings_.directory) {
    const auto& d = *settings_.directory;
    DirectorySettings ds;
    ds.uri = d.uri;
    ds.base_dn = d.base_dn;
    ds.start_tls = d.start_tls;
    ds.ca_file = d.ca_file;
    ds.bind_dn = d.bind_dn;
    ds.bind_password_file = d.bind_password_file;
    if (settings_.kerberos) {
      ds.keytab_file = settings_.kerberos->keytab_file;
      ds.principal = settings_.kerberos->principal;
      ds.realm = settings_.kerberos->realm;
    }
    for (const auto& name : d.mappings) {
      ORTHRUS_ASSIGN_OR_RETURN(MappingKind kind, ParseMapping(name));
      ds.rules.push_back(kind);
    }
    ds.timeout = d.timeout;
    ds.cache_ttl = d.cache_ttl;
    ds.negative_cache_ttl = d.negative_cache_ttl;
    // An account found disabled (or locked, or no longer delegable) loses its cached delegated
    // credentials at once, not when their tickets expire.
    Delegator* delegator = delegator_.get();
    ds.on_unusable_account = [delegator](const std::string& principal) {
      if (delegator) delegator->ForgetUser(principal);
    };
    ORTHRUS_ASSIGN_OR_RETURN(directory_, MakeLdapDirectory(ds));
  }
  deps_ = std::make_unique<BrokerDeps>(BrokerDeps{settings_, *identity_, *routes_, *backends_,
                                                  *workers_, directory_.get(), delegator_.get(),
                                                  passwords_.get()});
  service_ = std::make_unique<TunnelService>(ioc_, *deps_);
  // Before the edge listener: a failure here must not leave watches open on a loop that never runs.
  if (revocation_) ORTHRUS_TRY(StartAdminListener());

  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(settings_.listen.ToString(),
                           MutualTlsCredentials(settings_.edge_ca_pem, settings_.private_key_pem,
                                                settings_.cert_chain_pem),
                           &bound_port);
  builder.RegisterService(service_.get());
  if (revocation_) {
    // Same listener, same mutual TLS and allow list as Tunnel. Without the revocation section the
    // service is not registered and edges that watch get UNIMPLEMENTED.
    feed_service_ = std::make_unique<RevocationFeedService>(
        ioc_.get_executor(), revocation_->state(), settings_.allowed_edges,
        settings_.revocation->service.heartbeat_interval);
    builder.RegisterService(feed_service_.get());
  }
  // Edges ping every 10 s to notice a dead broker; allow it even between requests.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1 << 20);
  builder.SetMaxReceiveMessageSize(16 << 20);
  server_ = builder.BuildAndStart();
  if (!server_ || bound_port == 0) {
    return Fail("listen_failed", "cannot listen on " + settings_.listen.ToString());
  }
  if (revocation_) {
    crl_refresh_timer_.emplace(ioc_);
    ScheduleCrlRefresh();
  }
  HostPort bound = settings_.listen;
  bound.port = static_cast<uint16_t>(bound_port);
  log::Info("listening", {{"address", bound.ToString()},
                          {"broker_id", settings_.broker_id},
                          {"rules", static_cast<uint64_t>(settings_.rules.size())},
                          {"threads", settings_.threads}});
  return {};
}

void BrokerServer::Run() {
  asio::signal_set signals(ioc_, SIGINT, SIGTERM);
  std::thread stopper;
  signals.async_wait([this, &stopper](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log::Info("stopping", {{"signal", signo}});
    // Shutdown blocks until every stream is done, and streams need the event loop to finish.
    stopper = std::thread([this] {
      auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
      // Watches never end by themselves: end them now so edges fail over at once and Shutdown
      // does not wait for its deadline.
      if (feed_service_) feed_service_->EndAllWatches();
      if (admin_server_) admin_server_->Shutdown(deadline);
      server_->Shutdown(deadline);
      work_.reset();
      ioc_.stop();
    });
  });
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < settings_.threads; ++i) threads.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : threads) t.join();
  if (stopper.joinable()) stopper.join();
  if (delegator_) {
    auto st = delegator_->Stats();
    log::Info("kerberos_stats", {{"s4u2self", st.s4u2self},
                                 {"s4u2proxy", st.s4u2proxy},
                                 {"tokens", st.tokens},
                                 {"cache_hits", st.cache_hits}});
  }
  if (passwords_) {
    auto st = passwords_->Stats();
    log::Info("password_stats", {{"kdc_checks", st.kdc_checks},
                                 {"cache_hits", st.cache_hits},
                                 {"failures", st.failures}});
  }
  if (directory_) {
    auto st = directory_->Stats();
    log::Info("directory_stats", {{"searches", st.searches},
                                  {"cache_hits", st.cache_hits},
                                  {"negative_cache_hits", st.negative_cache_hits}});
  }
  log::Info("stopped", {{"metrics", metrics::RenderText("broker")}});
}

}  // namespace orthrus::broker
