#include "edge/broker_call.h"

namespace orthrus::edge {

std::shared_ptr<BrokerCall> BrokerCall::Start(tunnel::v1::Tunnel::Stub& stub,
                                              boost::asio::any_io_executor strand) {
  auto call = std::make_shared<BrokerCall>(strand);
  stub.async()->Forward(&call->context_, call.get());
  call->BeginOwnership();
  call->StartCall();
  return call;
}

}  // namespace orthrus::edge
