#pragma once
// One device request in flight to a broker: the client side of Tunnel.Forward, driven by the HTTP
// session coroutine on its strand.
#include <boost/asio/any_io_executor.hpp>
#include <grpcpp/grpcpp.h>

#include <memory>

#include "common/grpc_strand_stream.h"
#include "orthrus/tunnel/v1/tunnel.grpc.pb.h"

namespace orthrus::edge {

using tunnel::v1::BrokerFrame;
using tunnel::v1::EdgeFrame;

class BrokerCall final
    : public StrandStream<grpc::ClientBidiReactor<EdgeFrame, BrokerFrame>, BrokerFrame, EdgeFrame> {
 public:
  explicit BrokerCall(boost::asio::any_io_executor strand) : StrandStream(strand) {}

  static std::shared_ptr<BrokerCall> Start(tunnel::v1::Tunnel::Stub& stub,
                                           boost::asio::any_io_executor strand);

  // Thread-safe; the broker sees the stream cancelled and aborts its backend request.
  void Cancel() { context_.TryCancel(); }
  // End of request body. Strand only, with no write in flight.
  void CloseSend() { StartWritesDone(); }
  // Valid once finished().
  const grpc::Status& status() const { return status_; }

 private:
  void OnDone(const grpc::Status& status) override {
    OnStrand([this, status] { status_ = status; });
    MarkDoneFromGrpc();
  }

  grpc::ClientContext context_;
  grpc::Status status_;
};

}  // namespace orthrus::edge
