#include "edge/edge_server.h"

#include <netinet/tcp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/metrics.h"
#include "edge/broker_call.h"
#include "edge/tls_listener.h"

namespace orthrus::edge {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Phones on mobile networks vanish without a FIN; TCP keepalive finds them within minutes instead
// of holding their long-poll until the response timeout.
void TuneDeviceSocket(tcp::socket& socket) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  int fd = socket.native_handle();
  int idle = 300, interval = 30, count = 4;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

asio::awaitable<void> AcceptLoop(tcp::acceptor& acceptor, SessionShared& shared) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(
        asio::make_strand(acceptor.get_executor()), asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: say so, back off a little instead of spinning.
      log::Error("accept_failed", {{"error", ec.message()}});
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    TuneDeviceSocket(socket);
    StartSession(std::move(socket), shared);
  }
}

}  // namespace

EdgeServer::EdgeServer(EdgeSettings settings)
    : settings_(std::move(settings)), ioc_(static_cast<int>(settings_.threads)) {}


EdgeServer::~EdgeServer() {
  if (feed_) feed_->Stop();
}

Status EdgeServer::Start() {
  rules_ = std::make_unique<PublishingRules>(settings_.rules);
  ORTHRUS_ASSIGN_OR_RETURN(tls_, MakeDeviceTlsContext(settings_, *rules_));
  ORTHRUS_ASSIGN_OR_RETURN(brokers_, BrokerPool::Create(settings_));
  shared_ = std::make_unique<SessionShared>(settings_, *rules_, *brokers_, *tls_);
  if (settings_.revocation) {
    ORTHRUS_ASSIGN_OR_RETURN(auto snapshot, LoadCrls(*settings_.revocation, ++revocation_version_));
    log::Info("revocation_loaded", {{"version", snapshot->version},
                                    {"cas", static_cast<uint64_t>(snapshot->cas.size())}});
    shared_->revocation.Replace(std::move(snapshot));
  } else if (!settings_.revocation_feed) {
    log::Warn("revocation_disabled",
              {{"hint", "no revocation or revocation_feed section: revoked device certificates are "
                        "not refused"}});
  }
  if (settings_.revocation_feed) {
    pushed_ = std::make_unique<PushedRevocation>(*settings_.revocation_feed);
    shared_->pushed = pushed_.get();
    std::vector<RevocationFeedClient::Target> targets;
    for (auto& b : brokers_->all()) targets.push_back({b.name, b.channel});
    SessionShared* shared = shared_.get();
    auto* ioc = &ioc_;
    feed_ = std::make_unique<RevocationFeedClient>(
        *pushed_, std::move(targets), [shared, ioc](const revocation::RevocationSet&) {
          // The kill switch: every open connection checks itself against the new set.
          asio::post(*ioc, [shared] { RecheckAllSessions(*shared); });
        });
    ORTHRUS_TRY(feed_->LoadState());
    feed_->Start();
    // Devices are admitted from a current set when a broker answers in time, else from the state
    // file (its age counts toward the staleness limit).
    bool synced = feed_->WaitForFirstSync(settings_.revocation_feed->initial_sync_timeout);
    log::Info("revocation_feed", {{"synced", synced},
                                  {"version", pushed_->Current()->version()},
                                  {"age_seconds", pushed_->AgeSeconds(NowUnixMs())}});
    feed_age_timer_.emplace(ioc_);
    WatchFeedAge();
  }

  boost::system::error_code ec;
  auto address = asio::ip::make_address(settings_.listen.host, ec);
  if (ec) return Fail("listen_failed", "bad listen address " + settings_.listen.host);
  tcp::endpoint endpoint(address, settings_.listen.port);
  acceptor_.emplace(ioc_);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Fail("listen_failed", "cannot listen on " + settings_.listen.ToString() + ": " + ec.message());
  }
  auto bound = acceptor_->local_endpoint();
  std::string bound_text = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                    : bound.address().to_string()) +
                           ":" + std::to_string(bound.port());
  std::string broker_list;
  for (const auto& b : settings_.brokers) {
    broker_list += (broker_list.empty() ? "" : ",") + b.address.ToString();
  }
  log::Info("listening", {{"address", bound_text},
                          {"edge_id", settings_.edge_id},
                          {"brokers", broker_list},
                          {"threads", settings_.threads}});
  asio::co_spawn(ioc_, AcceptLoop(*acceptor_, *shared_), asio::detached);
  return {};
}

void EdgeServer::Run() {
  asio::signal_set signals(ioc_, SIGINT, SIGTERM);
  signals.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log::Info("stopping", {{"signal", signo}, {"open_connections", shared_->open_connections.load()}});
    hup_.reset();
    Stop();
  });
  hup_.emplace(ioc_, SIGHUP);
  WaitForHangup();
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < settings_.threads; ++i) threads.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : threads) t.join();

  // Drain: gRPC still owns calls that post into this event loop. Let them complete before anything
  // they point to is destroyed.
  BrokerCall::CancelAll();
  ioc_.restart();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (BrokerCall::LiveCount() > 0 && std::chrono::steady_clock::now() < deadline) {
    ioc_.run_for(std::chrono::milliseconds(20));
  }
  if (size_t left = BrokerCall::LiveCount(); left > 0) {
    log::Error("shutdown_incomplete", {{"broker_calls_alive", static_cast<uint64_t>(left)}});
    std::_Exit(1);  // destroying the loop under live gRPC callbacks would be undefined behaviour
  }
  std::string counters = metrics::RenderText("edge");
  log::Info("stopped", {{"metrics", counters}});
}

void EdgeServer::WaitForHangup() {
  hup_->async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    ReloadRevocation();
    WaitForHangup();
  });
}

void EdgeServer::ReloadRevocation() {
  if (!settings_.revocation) return;
  // File reads on the event loop: a SIGHUP is rare and CRL files are local.
  auto snapshot = LoadCrls(*settings_.revocation, revocation_version_ + 1);
  if (!snapshot) {
    log::Error("revocation_reload_failed",
               {{"detail", snapshot.error().detail}, {"kept_version", revocation_version_}});
    return;
  }
  ++revocation_version_;
  log::Info("revocation_loaded", {{"version", (*snapshot)->version},
                                  {"cas", static_cast<uint64_t>((*snapshot)->cas.size())}});
  shared_->revocation.Replace(std::move(*snapshot));
}

// The feed's age as a metric, a log line when it crosses the limit, and, under fail_closed, every
// open connection closed when the set goes stale (a revocation may be waiting that nobody sees).
void EdgeServer::WatchFeedAge() {
  int64_t now = NowUnixMs();
  metrics::SetGauge("revocation_feed_age_seconds", pushed_->AgeSeconds(now));
  bool stale = pushed_->AgeSeconds(now) < 0 ||
               pushed_->AgeSeconds(now) > settings_.revocation_feed->max_staleness.count();
  if (stale != feed_was_stale_) {
    feed_was_stale_ = stale;
    auto level = stale ? log::Level::kError : log::Level::kInfo;
    log::Write(level, "revocation_feed_staleness",
               {{"stale", stale},
                {"age_seconds", pushed_->AgeSeconds(now)},
                {"policy", settings_.revocation_feed->fail_closed ? "fail_closed" : "keep_serving"}});
    if (stale && settings_.revocation_feed->fail_closed) RecheckAllSessions(*shared_);
  }
  // The gauge is also printed with the other metrics at shutdown; a log line each minute makes it
  // visible while the edge runs.
  if (++feed_age_ticks_ % 60 == 0) {
    log::Info("revocation_feed_age", {{"age_seconds", pushed_->AgeSeconds(now)},
                                      {"version", pushed_->Current()->version()},
                                      {"stale", stale}});
  }
  feed_age_timer_->expires_after(std::chrono::seconds(1));
  feed_age_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) WatchFeedAge();
  });
}

void EdgeServer::Stop() {
  if (feed_age_timer_) feed_age_timer_->cancel();
  if (feed_) feed_->Stop();
  boost::system::error_code ec;
  if (acceptor_) acceptor_->close(ec);
  // Closing every device connection ends its request; the loop then runs out of work and Run()
  // drains what gRPC still holds.
  CloseAllSessions(*shared_);
  BrokerCall::CancelAll();
}

}  // namespace orthrus::edge
