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

  ~BrokerCall() override;

  // Thread-safe; the broker sees the stream cancelled and aborts its backend request.
  void Cancel() { context_.TryCancel(); }
  // End of request body. Strand only, with no write in flight.
  void CloseSend() {
    if (!closing()) StartWritesDone();
  }
  // Strand only, no write in flight: starts no more operations and lets the call complete, then
  // returns its final status.
  boost::asio::awaitable<grpc::Status> Finish() {
    Release();
    co_await WaitUntilDone();
    co_return status_;
  }
  // Gives up the hold without waiting (the session is going away). Idempotent, strand only.
  void Release() {
    if (released_) return;
    released_ = true;
    MarkClosing();
    RemoveHold();
  }

  bool released() const { return released_; }

  // Shutdown: cancels every call in flight and refuses new ones; returns how many are still alive.
  static void CancelAll();
  static size_t LiveCount();

 private:
  void OnDone(const grpc::Status& status) override {
    OnStrand([this, status] { status_ = status; });
    MarkDoneFromGrpc();
  }

  grpc::ClientContext context_;
  grpc::Status status_;
  bool released_ = false;
};

}  // namespace orthrus::edge
