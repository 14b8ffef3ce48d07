#pragma once
// The edge's mutual-TLS gRPC channels to its brokers. gRPC reconnects by itself; the pool only picks
// a channel that is not known to be failing, so one dead broker does not fail requests while another
// is healthy.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "edge/edge_config.h"
#include "orthrus/tunnel/v1/tunnel.grpc.pb.h"

namespace orthrus::edge {

class BrokerPool {
 public:
  struct Broker {
    std::string name;  // address, for logs
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<orthrus::tunnel::v1::Tunnel::Stub> stub;
  };

  static Result<std::unique_ptr<BrokerPool>> Create(const EdgeSettings& settings);

  // Round-robin over brokers whose channel is not in TRANSIENT_FAILURE; if all are failing, still
  // returns one so the request fails fast with a precise status instead of waiting.
  Broker& Pick();
  static bool IsReady(const Broker& broker);
  std::vector<Broker>& all() { return brokers_; }

 private:
  std::vector<Broker> brokers_;
  std::atomic<size_t> next_{0};
};

}  // namespace orthrus::edge
