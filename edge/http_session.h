#pragma once
// One device connection: TLS handshake (client certificate required or optional per server name),
// then HTTP/1.1 requests (keep-alive), each admitted by its publishing rule and forwarded to a broker as one Tunnel.Forward stream, bodies streamed both ways.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "edge/broker_pool.h"
#include "edge/edge_config.h"
#include "edge/password_limiter.h"
#include "edge/publishing_rules.h"
#include "edge/revocation_store.h"

namespace orthrus::edge {

class Session;

struct SessionShared {
  SessionShared(const EdgeSettings& s, const PublishingRules& r, BrokerPool& b,
                boost::asio::ssl::context& t)
      : settings(s), rules(r), brokers(b), tls(t), password_limiter(s.password_limits) {}
  const EdgeSettings& settings;
  const PublishingRules& rules;
  BrokerPool& brokers;
  boost::asio::ssl::context& tls;
  PasswordLimiter password_limiter;
  // Checked at every handshake (resumed ones included) and before every request.
  RevocationStore revocation;
  // Revocations pushed by the brokers; null when revocation_feed is not configured.
  const PushedRevocation* pushed = nullptr;
  std::atomic<uint64_t> next_connection_id{1};
  std::atomic<int64_t> open_connections{0};
  // Live sessions by connection id, so shutdown can close them. Each entry is erased by the
  // session itself, on its strand.
  std::mutex sessions_mutex;
  std::unordered_map<uint64_t, Session*> sessions;
};

// `socket` must be bound to its own strand; the session runs there until the connection ends.
void StartSession(boost::asio::ip::tcp::socket socket, SessionShared& shared);

// Shutdown: closes every device connection (on its own strand); their requests end at once.
void CloseAllSessions(SessionShared& shared);

// After a revocation update (or when the feed went stale): every connection checks itself again on
// its own strand; one that is now refused is closed at once, its in-flight request (long-polls
// included) cancelled up to the backend.
void RecheckAllSessions(SessionShared& shared);

}  // namespace orthrus::edge
