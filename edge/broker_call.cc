#include "edge/broker_call.h"

#include <mutex>
#include <unordered_set>

namespace orthrus::edge {
namespace {

// Every call alive in this process, so that shutdown can cancel them and wait for gRPC to let go
// before the event loop they post into is destroyed.
struct Registry {
  std::mutex mutex;
  std::unordered_set<BrokerCall*> calls;
  bool stopping = false;
};

Registry& Calls() {
  static Registry registry;
  return registry;
}

}  // namespace

std::shared_ptr<BrokerCall> BrokerCall::Start(tunnel::v1::Tunnel::Stub& stub,
                                              boost::asio::any_io_executor strand) {
  auto call = std::make_shared<BrokerCall>(strand);
  bool stopping = false;
  {
    auto& r = Calls();
    std::lock_guard lock(r.mutex);
    r.calls.insert(call.get());
    stopping = r.stopping;
  }
  stub.async()->Forward(&call->context_, call.get());
  // Held until Release(): gRPC must not finish the call while the strand may still start reads
  // or writes on it.
  call->AddHold();
  call->BeginOwnership();
  call->StartCall();
  if (stopping) call->Cancel();
  return call;
}

BrokerCall::~BrokerCall() {
  auto& r = Calls();
  std::lock_guard lock(r.mutex);
  r.calls.erase(this);
}

void BrokerCall::CancelAll() {
  auto& r = Calls();
  std::lock_guard lock(r.mutex);
  r.stopping = true;
  for (BrokerCall* call : r.calls) call->Cancel();
}

size_t BrokerCall::LiveCount() {
  auto& r = Calls();
  std::lock_guard lock(r.mutex);
  return r.calls.size();
}

}  // namespace orthrus::edge
