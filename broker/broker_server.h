#pragma once
// The broker process: the mutual-TLS gRPC listener for edges (Tunnel, and RevocationFeed when the
// revocation section is configured), the admin listener for orthrusctl, and the event loop for
// backend I/O.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>

#include "broker/backend.h"
#include "broker/broker_config.h"
#include "broker/forward_reactor.h"
#include "broker/identity_verifier.h"
#include "broker/revocation/revocation_service.h"
#include "broker/route_table.h"
#include "common/result.h"

namespace orthrus::broker {

class RevocationFeedService;
class RevocationAdminService;

class BrokerServer {
 public:
  explicit BrokerServer(BrokerSettings settings);
  ~BrokerServer();

  Status Start();
  void Run();  // until SIGTERM/SIGINT

 private:
  class TunnelService;

  Status StartRevocation();
  Status StartAdminListener();
  // Arms the timer that posts RevocationService::RefreshCrls to the worker pool when a CRL source
  // is due (re-checked at least every 30 s, so a forced refresh or a clock step is picked up).
  void ScheduleCrlRefresh();

  BrokerSettings settings_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  // Before everything that uses it (delegator_, workers_' jobs, the services): destroyed last.
  std::unique_ptr<revocation::RevocationService> revocation_;
  std::optional<boost::asio::steady_timer> crl_refresh_timer_;
  std::optional<IdentityVerifier> identity_;
  std::unique_ptr<RouteTable> routes_;
  std::unique_ptr<BackendPool> backends_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<Delegator> delegator_;
  std::unique_ptr<PasswordChecker> passwords_;
  // After the two above: destroyed first, so no worker still runs a job that uses them.
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<BrokerDeps> deps_;
  std::unique_ptr<TunnelService> service_;
  std::unique_ptr<RevocationFeedService> feed_service_;
  std::unique_ptr<RevocationAdminService> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> admin_server_;
};

// Whether the peer of this call is an allowed edge: its certificate's CN or one of its DNS SANs
// must be on the allow list. Returns the matched name, or nothing.
std::optional<std::string> AllowedEdgeName(const grpc::AuthContext& auth,
                                           const std::vector<std::string>& allowed);
// "CN=... SAN=..." of the peer certificate, for refusal logs.
std::string PeerDescription(const grpc::AuthContext& auth);

}  // namespace orthrus::broker
