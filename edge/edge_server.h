#pragma once
// The edge process: device listener, event-loop threads, broker channels.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <optional>

#include "common/result.h"
#include "edge/broker_pool.h"
#include "edge/edge_config.h"
#include "edge/http_session.h"
#include "edge/revocation_feed.h"

namespace orthrus::edge {

class EdgeServer {
 public:
  explicit EdgeServer(EdgeSettings settings);
  ~EdgeServer();

  // Binds the listener and connects to the brokers; logs the bound address.
  Status Start();
  // Runs until SIGTERM/SIGINT or Stop().
  void Run();
  void Stop();
  // Re-reads the CRL files (SIGHUP) and swaps the new set in; keeps the old one on any error.
  void ReloadRevocation();

 private:
  void WaitForHangup();
  void WatchFeedAge();

  // Declaration order is destruction order reversed: the event loop (and any session frames still
  // in it) goes before the state those sessions point to.
  EdgeSettings settings_;
  std::unique_ptr<PublishingRules> rules_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::unique_ptr<BrokerPool> brokers_;
  std::unique_ptr<SessionShared> shared_;
  std::unique_ptr<PushedRevocation> pushed_;
  boost::asio::io_context ioc_;
  // After the loop: its callback posts into the loop, so it is stopped (joined) first.
  std::unique_ptr<RevocationFeedClient> feed_;
  std::optional<boost::asio::steady_timer> feed_age_timer_;
  bool feed_was_stale_ = false;
  uint64_t feed_age_ticks_ = 0;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  uint64_t revocation_version_ = 0;
  std::optional<boost::asio::signal_set> hup_;
};

}  // namespace orthrus::edge
