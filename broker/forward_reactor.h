#pragma once
// The broker side of one Tunnel.Forward stream: re-check the device identity, pick the publishing
// rule, relay the request to the backend and the response back, all streamed.
#include <boost/asio/any_io_executor.hpp>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "broker/backend.h"
#include "broker/broker_config.h"
#include "broker/directory/directory.h"
#include "broker/identity_verifier.h"
#include "broker/kerberos/delegator.h"
#include "broker/kerberos/password_checker.h"
#include "broker/route_table.h"
#include "common/grpc_strand_stream.h"
#include "common/reason.h"
#include "common/worker_pool.h"
#include "orthrus/tunnel/v1/tunnel.grpc.pb.h"

namespace orthrus::broker {

using tunnel::v1::BrokerFrame;
using tunnel::v1::EdgeFrame;

struct BrokerDeps {
  const BrokerSettings& settings;
  const IdentityVerifier& identity;
  const RouteTable& routes;
  BackendPool& backends;
  WorkerPool& workers;
  Directory* directory;   // null when no rule needs certificate -> account mapping
  Delegator* delegator;   // null when no rule delegates
  PasswordChecker* passwords;  // null when no rule accepts passwords
};

class ForwardReactor final
    : public StrandStream<grpc::ServerBidiReactor<EdgeFrame, BrokerFrame>, EdgeFrame, BrokerFrame> {
 public:
  ForwardReactor(boost::asio::any_io_executor strand, const BrokerDeps& deps, std::string edge);

  // Starts reading and the relay coroutine; gRPC owns the reactor from here until OnDone.
  void Begin();

 private:
  void OnCancel() override;
  void OnDone() override { MarkDoneFromGrpc(); }

  boost::asio::awaitable<void> Run();
  // The rule's authentication, enforced on what the edge forwarded: sets user_ (the account's
  // principal) when a certificate was mapped or a password checked. On failure: the reason, and
  // whether it came from a password (the device then gets 401, never an account state).
  struct AuthFailure {
    Error error;
    bool from_password = false;
  };
  boost::asio::awaitable<std::optional<AuthFailure>> Authenticate(
      const RuleSettings& rule, const tls::CertIdentity* identity);
  boost::asio::awaitable<Result<Account>> MapCertificate(const tls::CertIdentity& identity);
  boost::asio::awaitable<Result<std::string>> CheckPassword();
  boost::asio::awaitable<Result<std::unique_ptr<NegotiateExchange>>> Delegate(const RuleSettings& rule);
  boost::asio::awaitable<void> Refuse(Reason reason, std::string detail, unsigned status = 0);
  void End(Reason reason, std::string detail);
  void Log(Reason reason, const std::string& detail);

  const BrokerDeps& deps_;
  std::string edge_;
  tunnel::v1::RequestHead head_;
  std::string rule_name_;
  std::string subject_;
  std::string user_;  // the Kerberos principal the backend sees, when the rule delegates
  unsigned status_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  bool cancelled_ = false;
  std::unique_ptr<BackendExchange> exchange_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Identity headers for backends that take the gateway's word (rules with identity_headers): the
// certificate's fields when one was used, the account when one was authenticated.
HeaderList IdentityHeaders(const tls::CertIdentity* id, const std::string& user,
                           const tunnel::v1::ConnectionFacts& facts);

}  // namespace orthrus::broker
