#pragma once
// RevocationAdmin on its own mutual-TLS listener (revocation.admin): orthrusctl's revoke, unrevoke,
// list-revoked, status and refresh-crls.
//
// Who: the peer certificate must chain to admin_ca_file (checked by TLS) and one of its names — CN,
// DNS SAN or e-mail SAN — must be on allowed_admin; the matched name is recorded as "who" on every
// change. Anything else is refused with PERMISSION_DENIED "admin_not_allowed: ...".
//
// Every handler touches SQLite (and Revoke/Unrevoke may wait for edge acknowledgements, RefreshCrls
// fetches CRLs), so each runs on the broker's WorkerPool and finishes the gRPC call from there; a full
// queue answers RESOURCE_EXHAUSTED "broker_overloaded: ...". Errors put the code first in the status
// message ("revocation_not_found: ..."), the detail after it.
#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "broker/revocation/revocation_service.h"
#include "common/worker_pool.h"
#include "orthrus/revocation/v1/revocation.grpc.pb.h"

namespace orthrus::broker {

// The peer's certificate names (CN, DNS SANs, e-mail SANs) against the allow list: the matched name.
std::optional<std::string> AllowedAdminName(const grpc::AuthContext& auth,
                                            const std::vector<std::string>& allowed);

// An admin error as a gRPC status: code first in the message, the detail after it.
grpc::Status AdminErrorStatus(const Error& error);

class RevocationAdminService final : public revocation::v1::RevocationAdmin::CallbackService {
 public:
  RevocationAdminService(revocation::RevocationService& service, WorkerPool& workers,
                         std::vector<std::string> allowed_admins);

  grpc::ServerUnaryReactor* Revoke(grpc::CallbackServerContext* context,
                                   const revocation::v1::RevokeRequest* request,
                                   revocation::v1::RevokeResponse* response) override;
  grpc::ServerUnaryReactor* Unrevoke(grpc::CallbackServerContext* context,
                                     const revocation::v1::UnrevokeRequest* request,
                                     revocation::v1::UnrevokeResponse* response) override;
  grpc::ServerUnaryReactor* ListRevoked(grpc::CallbackServerContext* context,
                                        const revocation::v1::ListRevokedRequest* request,
                                        revocation::v1::ListRevokedResponse* response) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const revocation::v1::StatusRequest* request,
                                   revocation::v1::StatusResponse* response) override;
  grpc::ServerUnaryReactor* RefreshCrls(grpc::CallbackServerContext* context,
                                        const revocation::v1::RefreshCrlsRequest* request,
                                        revocation::v1::RefreshCrlsResponse* response) override;

 private:
  // Authorizes the caller, then runs job(who) on the worker pool and finishes the call with its
  // status.
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, std::string_view rpc,
                                std::function<grpc::Status(const std::string& who)> job);

  revocation::RevocationService& service_;
  WorkerPool& workers_;
  const std::vector<std::string> allowed_admins_;
};

}  // namespace orthrus::broker
