#pragma once
// Turns GSS-API / krb5 failures into the Delegator's reason codes with operator-facing details.
#include <gssapi/gssapi.h>
#include <krb5.h>

#include <optional>
#include <string>

#include "common/result.h"

namespace orthrus::broker::kerberos {

// Where in the delegation a failure happened: the same KDC error means different things at each
// step (e.g. "principal unknown" is the user at S4U2Self but the SPN at S4U2Proxy).
enum class Stage { kBrokerLogin, kS4U2Self, kS4U2Proxy, kMutualAuth };

struct FailureContext {
  Stage stage = Stage::kBrokerLogin;
  std::string broker_principal;
  std::string user;  // empty at kBrokerLogin
  std::string spn;   // only at kS4U2Proxy / kMutualAuth
  // From the S4U2Self evidence ticket: a non-forwardable one cannot be used for S4U2Proxy.
  std::optional<bool> evidence_forwardable;
};

// "<GSS routine error>; <mechanism error>", from gss_display_status on both codes.
std::string DisplayGssStatus(OM_uint32 major, OM_uint32 minor);

// The krb5 error code a displayed message stands for, if recognisable. Under SPNEGO the minor code
// is remapped by the mechglue (e.g. 100005) and no API maps it back, so the text is all there is.
std::optional<krb5_error_code> Krb5CodeFromText(const std::string& text);

// Builds the error. `krb5_code` when the caller has it first-hand (direct krb5 calls); otherwise it
// is recognised from `text`.
Error ClassifyFailure(const FailureContext& where, const std::string& text,
                      std::optional<krb5_error_code> krb5_code = std::nullopt);

}  // namespace orthrus::broker::kerberos
