#include "edge/broker_pool.h"

namespace orthrus::edge {

Result<std::unique_ptr<BrokerPool>> BrokerPool::Create(const EdgeSettings& settings) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = settings.broker_ca_pem;
  tls.pem_private_key = settings.broker_private_key_pem;
  tls.pem_cert_chain = settings.broker_cert_chain_pem;
  auto creds = grpc::SslCredentials(tls);

  auto pool = std::make_unique<BrokerPool>();
  for (const auto& target : settings.brokers) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(target.server_name);
    // Notice a dead broker within seconds even when no request is in flight, and come back quickly.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Every edge->broker stream is one device request; long-polls keep thousands open at once.
    args.SetInt(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1 << 20);
    args.SetMaxReceiveMessageSize(16 << 20);
    std::string address = "ipv4:" + target.address.ToString();
    if (target.address.host.find(':') != std::string::npos) address = "ipv6:" + target.address.ToString();
    if (!target.address.host_is_ip) address = "dns:///" + target.address.ToString();
    Broker b;
    b.name = target.address.ToString();
    b.channel = grpc::CreateCustomChannel(address, creds, args);
    b.stub = orthrus::tunnel::v1::Tunnel::NewStub(b.channel);
    b.channel->GetState(/*try_to_connect=*/true);  // connect now, not at the first device request
    pool->brokers_.push_back(std::move(b));
  }
  return pool;
}

BrokerPool::Broker& BrokerPool::Pick() {
  size_t start = next_.fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < brokers_.size(); ++i) {
    Broker& b = brokers_[(start + i) % brokers_.size()];
    if (b.channel->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_TRANSIENT_FAILURE) return b;
  }
  return brokers_[start % brokers_.size()];
}

bool BrokerPool::IsReady(const Broker& broker) {
  return broker.channel->GetState(false) == GRPC_CHANNEL_READY;
}

}  // namespace orthrus::edge
