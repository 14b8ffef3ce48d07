#pragma once
// RevocationFeed on the broker's edge listener (same mutual TLS and allow list as Tunnel):
//   Watch  one grpc::ServerWriteReactor per edge: a snapshot or delta from what the edge holds, then
//          a delta after every change (coalesced: a burst of versions becomes one delta), and a
//          heartbeat whenever nothing else was written for heartbeat_interval.
//   Ack    RevocationState::RecordAck with the edge name from the certificate.
//
// Threads. gRPC's reactions are re-posted onto a per-watch Asio strand of the broker's event loop;
// the strand builds updates with RevocationState::UpdatesFor (in memory, no SQLite) and writes one
// message at a time. State listeners only post a wake-up to that strand. OnDone (gRPC's last call)
// drops the subscription and the watch record directly, so nothing outlives the service.
#include <boost/asio/any_io_executor.hpp>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "broker/revocation/revocation_service.h"
#include "orthrus/revocation/v1/revocation.grpc.pb.h"

namespace orthrus::broker {

class RevocationFeedService final : public revocation::v1::RevocationFeed::CallbackService {
 public:
  RevocationFeedService(boost::asio::any_io_executor executor, revocation::RevocationState& state,
                        std::vector<std::string> allowed_edges,
                        std::chrono::milliseconds heartbeat_interval);
  ~RevocationFeedService() override;

  grpc::ServerWriteReactor<revocation::v1::RevocationUpdate>* Watch(
      grpc::CallbackServerContext* context, const revocation::v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* context,
                                const revocation::v1::AckRequest* request,
                                revocation::v1::AckResponse* response) override;

  // Broker shutdown: ends every watch with UNAVAILABLE (edges move to another broker at once) and
  // refuses new ones. Returns at once; the watches finish on their strands.
  void EndAllWatches();
  size_t watch_count() const;

 private:
  class WatchReactor;
  friend class WatchReactor;
  void Forget(WatchReactor* watch);

  boost::asio::any_io_executor executor_;
  revocation::RevocationState& state_;
  const std::vector<std::string> allowed_edges_;
  const std::chrono::milliseconds heartbeat_interval_;

  mutable std::mutex mutex_;
  bool shutting_down_ = false;
  // Owns each watch from Watch() until gRPC's OnDone.
  std::map<WatchReactor*, std::shared_ptr<WatchReactor>> watches_;
};

}  // namespace orthrus::broker
