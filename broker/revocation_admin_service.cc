#include "broker/revocation_admin_service.h"

#include <grpc/grpc_security_constants.h>

#include <chrono>
#include <ctime>

#include "common/log.h"
#include "common/metrics.h"
#include "common/reason.h"
#include "common/revocation/errors.h"

namespace orthrus::broker {

namespace v1 = revocation::v1;

namespace {

int64_t AdminNowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> AdminCertificateNames(const grpc::AuthContext& auth) {
  std::vector<std::string> names;
  for (const char* property :
       {GRPC_X509_CN_PROPERTY_NAME, GRPC_PEER_DNS_PROPERTY_NAME, GRPC_PEER_EMAIL_PROPERTY_NAME}) {
    for (const auto& v : auth.FindPropertyValues(property)) names.emplace_back(v.data(), v.size());
  }
  return names;
}

grpc::StatusCode AdminStatusCodeFor(const std::string& code) {
  using namespace revocation::errc;
  if (code == kInvalidKey || code == kInvalidRequest) return grpc::StatusCode::INVALID_ARGUMENT;
  if (code == kNotFound) return grpc::StatusCode::NOT_FOUND;
  if (code == "broker_overloaded") return grpc::StatusCode::RESOURCE_EXHAUSTED;
  if (code == "admin_not_allowed") return grpc::StatusCode::PERMISSION_DENIED;
  return grpc::StatusCode::INTERNAL;  // database and other failures: not "unreachable" (exit 3)
}

}  // namespace

std::optional<std::string> AllowedAdminName(const grpc::AuthContext& auth,
                                            const std::vector<std::string>& allowed) {
  for (const auto& name : AdminCertificateNames(auth)) {
    for (const auto& entry : allowed) {
      if (name == entry) return name;
    }
  }
  return std::nullopt;
}

grpc::Status AdminErrorStatus(const Error& error) {
  return grpc::Status(AdminStatusCodeFor(error.code), error.code + ": " + error.detail);
}

RevocationAdminService::RevocationAdminService(revocation::RevocationService& service,
                                               WorkerPool& workers,
                                               std::vector<std::string> allowed_admins)
    : service_(service), workers_(workers), allowed_admins_(std::move(allowed_admins)) {}

grpc::ServerUnaryReactor* RevocationAdminService::Run(
    grpc::CallbackServerContext* context, std::string_view rpc,
    std::function<grpc::Status(const std::string& who)> job) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto auth = context->auth_context();
  auto who = auth ? AllowedAdminName(*auth, allowed_admins_) : std::nullopt;
  if (!who) {
    std::string names;
    if (auth) {
      for (const auto& n : AdminCertificateNames(*auth)) names += (names.empty() ? "" : ", ") + n;
    }
    metrics::CountReason(Reason::kAdminNotAllowed);
    log::Warn("admin_refused", {{"reason", ReasonName(Reason::kAdminNotAllowed)},
                                {"rpc", rpc},
                                {"peer", context->peer()},
                                {"certificate", names},
                                {"hint", ReasonHint(Reason::kAdminNotAllowed)}});
    reactor->Finish(AdminErrorStatus(
        {std::string(ReasonName(Reason::kAdminNotAllowed)),
         "certificate names [" + names + "] are not in revocation.admin.allowed_admin"}));
    return reactor;
  }
  std::string peer = context->peer();
  bool queued = workers_.TrySubmit([reactor, job = std::move(job), who = *who, peer,
                                    rpc = std::string(rpc)] {
    grpc::Status status = job(who);
    if (!status.ok()) {
      log::Warn("revocation_admin_failed", {{"rpc", rpc},
                                            {"admin", who},
                                            {"peer", peer},
                                            {"detail", status.error_message()}});
    } else {
      log::Debug("revocation_admin", {{"rpc", rpc}, {"admin", who}, {"peer", peer}});
    }
    reactor->Finish(status);
  });
  if (!queued) {
    metrics::CountReason(Reason::kBrokerOverloaded);
    reactor->Finish(AdminErrorStatus({"broker_overloaded", "the broker's worker queue is full; retry"}));
  }
  return reactor;
}

grpc::ServerUnaryReactor* RevocationAdminService::Revoke(grpc::CallbackServerContext* context,
                                                         const v1::RevokeRequest* request,
                                                         v1::RevokeResponse* response) {
  return Run(context, "Revoke", [this, request, response](const std::string& who) {
    auto result = service_.Revoke(*request, who, AdminNowUnixMs());
    if (!result) return AdminErrorStatus(result.error());
    *response = std::move(*result);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* RevocationAdminService::Unrevoke(grpc::CallbackServerContext* context,
                                                           const v1::UnrevokeRequest* request,
                                                           v1::UnrevokeResponse* response) {
  return Run(context, "Unrevoke", [this, request, response](const std::string& who) {
    auto result = service_.Unrevoke(*request, who, AdminNowUnixMs());
    if (!result) return AdminErrorStatus(result.error());
    *response = std::move(*result);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* RevocationAdminService::ListRevoked(grpc::CallbackServerContext* context,
                                                              const v1::ListRevokedRequest* request,
                                                              v1::ListRevokedResponse* response) {
  return Run(context, "ListRevoked", [this, request, response](const std::string&) {
    auto result = service_.ListRevoked(*request);
    if (!result) return AdminErrorStatus(result.error());
    *response = std::move(*result);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* RevocationAdminService::Status(grpc::CallbackServerContext* context,
                                                         const v1::StatusRequest* request,
                                                         v1::StatusResponse* response) {
  return Run(context, "Status", [this, request, response](const std::string&) {
    auto result = service_.Status(*request);
    if (!result) return AdminErrorStatus(result.error());
    *response = std::move(*result);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* RevocationAdminService::RefreshCrls(grpc::CallbackServerContext* context,
                                                              const v1::RefreshCrlsRequest*,
                                                              v1::RefreshCrlsResponse* response) {
  return Run(context, "RefreshCrls", [this, response](const std::string& who) {
    log::Info("crl_refresh_requested", {{"admin", who}});
    for (auto& s : service_.RefreshCrls(std::time(nullptr), true)) *response->add_crls() = std::move(s);
    response->set_version(service_.state().version());
    return grpc::Status::OK;
  });
}

}  // namespace orthrus::broker
