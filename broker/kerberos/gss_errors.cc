#include "broker/kerberos/gss_errors.h"

#include <array>
#include <string_view>

#include "broker/kerberos/gss_handles.h"

namespace orthrus::broker::kerberos {
namespace {

struct KnownCode {
  krb5_error_code code;
  std::string_view name;
  // Stable pieces of MIT's extended messages, which replace the generic com_err text and name the
  // principal or realm ("Client 'x@R' not found in Kerberos database").
  std::array<std::string_view, 2> fragments;
};

constexpr KnownCode kKnownCodes[] = {
    {KRB5_KDC_UNREACH, "KRB5_KDC_UNREACH", {"Cannot contact any KDC", ""}},
    {KRB5_REALM_UNKNOWN, "KRB5_REALM_UNKNOWN", {"Cannot find KDC for", ""}},
    {KRB5KDC_ERR_POLICY, "KRB5KDC_ERR_POLICY", {"", ""}},
    {KRB5KDC_ERR_CLIENT_REVOKED, "KRB5KDC_ERR_CLIENT_REVOKED", {"", ""}},
    {KRB5KDC_ERR_KEY_EXP, "KRB5KDC_ERR_KEY_EXP", {"", ""}},
    {KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN, "KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN", {"Client '", ""}},
    {KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, "KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN", {"Server '", ""}},
    {KRB5KDC_ERR_BADOPTION, "KRB5KDC_ERR_BADOPTION", {"", ""}},
    {KRB5KDC_ERR_ETYPE_NOSUPP, "KRB5KDC_ERR_ETYPE_NOSUPP", {"", ""}},
    {KRB5KDC_ERR_PREAUTH_FAILED, "KRB5KDC_ERR_PREAUTH_FAILED", {"", ""}},
    {KRB5KRB_AP_ERR_BAD_INTEGRITY, "KRB5KRB_AP_ERR_BAD_INTEGRITY", {"", ""}},
    {KRB5KRB_AP_ERR_TKT_EXPIRED, "KRB5KRB_AP_ERR_TKT_EXPIRED", {"", ""}},
    {KRB5KRB_AP_ERR_SKEW, "KRB5KRB_AP_ERR_SKEW", {"", ""}},
    {KRB5_KDCREP_SKEW, "KRB5_KDCREP_SKEW", {"", ""}},
};

bool Contains(const std::string& text, std::string_view piece) {
  return !piece.empty() && text.find(piece) != std::string::npos;
}

const KnownCode* FindKnown(krb5_error_code code) {
  for (const KnownCode& known : kKnownCodes) {
    if (known.code == code) return &known;
  }
  return nullptr;
}

void AppendStatus(std::string& out, OM_uint32 code, int type) {
  OM_uint32 message_context = 0;
  do {
    OM_uint32 minor = 0;
    GssBuffer text;
    OM_uint32 major =
        gss_display_status(&minor, code, type, GSS_C_NO_OID, &message_context, text.get());
    if (GSS_ERROR(major)) break;
    if (!out.empty() && out.back() != ' ') out += out.ends_with(";") ? " " : "; ";
    out.append(reinterpret_cast<const char*>(text.data()), text.size());
  } while (message_context != 0);
}

std::string CodeLabel(krb5_error_code code) {
  const KnownCode* known = FindKnown(code);
  std::string label = known != nullptr ? std::string(known->name) : "krb5 error";
  return label + " (" + std::to_string(code) + ")";
}

}  // namespace

std::string DisplayGssStatus(OM_uint32 major, OM_uint32 minor) {
  std::string out;
  AppendStatus(out, major, GSS_C_GSS_CODE);
  // GSS_C_NO_OID lets the mechglue find the mechanism that produced the (remapped) minor code.
  if (minor != 0) AppendStatus(out, minor, GSS_C_MECH_CODE);
  return out;
}

std::optional<krb5_error_code> Krb5CodeFromText(const std::string& text) {
  // krb5.h declares com_err's error_message() without C linkage (Debian 12), so the generic texts
  // come from a context of our own.
  Krb5Context k;
  const bool have_context = k.Init() == 0;
  for (const KnownCode& known : kKnownCodes) {
    if (have_context && Contains(text, k.Message(known.code))) return known.code;
    for (std::string_view fragment : known.fragments) {
      if (Contains(text, fragment)) return known.code;
    }
  }
  return std::nullopt;
}

Error ClassifyFailure(const FailureContext& where, const std::string& text,
                      std::optional<krb5_error_code> krb5_code) {
  if (!krb5_code) krb5_code = Krb5CodeFromText(text);
  const std::string label = krb5_code ? CodeLabel(*krb5_code) + ": " : std::string();
  const std::string& broker = where.broker_principal;

  std::string step;
  switch (where.stage) {
    case Stage::kBrokerLogin:
      step = "broker login (AS-REQ) as " + broker;
      break;
    case Stage::kS4U2Self:
      step = "S4U2Self for " + where.user;
      break;
    case Stage::kS4U2Proxy:
      step = "S4U2Proxy for " + where.user + " to " + where.spn;
      break;
    case Stage::kMutualAuth:
      step = "mutual authentication of " + where.spn;
      break;
  }
  const std::string failed = step + " failed: " + label + text;

  if (where.stage == Stage::kMutualAuth) return Error{"backend_auth_failed", failed};
  if (!krb5_code) return Error{"kerberos_error", failed};

  switch (*krb5_code) {
    case KRB5_KDC_UNREACH:
      return Error{"kdc_unreachable", failed +
                                          " (no KDC answered: check the network path and the "
                                          "KDC's port 88)"};
    case KRB5KRB_AP_ERR_SKEW:
    case KRB5_KDCREP_SKEW:
      return Error{"clock_skew", failed + " (synchronise this host's clock with the domain)"};
    case KRB5KDC_ERR_ETYPE_NOSUPP:
      return Error{"kerberos_weak_crypto",
                   failed + " (no common AES enctype: enable AES for " + broker + ")"};
    default:
      break;
  }

  switch (where.stage) {
    case Stage::kBrokerLogin:
      if (*krb5_code == KRB5KDC_ERR_PREAUTH_FAILED || *krb5_code == KRB5KRB_AP_ERR_BAD_INTEGRITY) {
        return Error{"kerberos_error",
                     failed +
                         " (the keytab's keys are stale: re-export it after the password "
                         "change)"};
      }
      return Error{"kerberos_error", failed};
    case Stage::kS4U2Self:
      switch (*krb5_code) {
        case KRB5KDC_ERR_POLICY:
        case KRB5KDC_ERR_CLIENT_REVOKED:
          return Error{"account_disabled",
                       failed + " (the account is disabled, locked or expired)"};
        case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
          return Error{"account_not_found", failed + " (no such account in the domain)"};
        default:
          return Error{"kerberos_error", failed};
      }
    case Stage::kS4U2Proxy:
      switch (*krb5_code) {
        case KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
          return Error{"spn_unknown", failed + " (no account has the SPN " + where.spn + ")"};
        case KRB5KDC_ERR_POLICY:
        case KRB5KDC_ERR_CLIENT_REVOKED:
          return Error{"account_disabled", failed};
        case KRB5KDC_ERR_BADOPTION:
          // The KDC says only "can't fulfill"; the evidence ticket tells the two causes apart.
          if (where.evidence_forwardable.has_value() && !*where.evidence_forwardable) {
            return Error{"account_not_delegable",
                         failed + " (the S4U2Self ticket for " + where.user +
                             " is not forwardable: the user is marked \"sensitive and cannot be "
                             "delegated\", or " +
                             broker + " lacks TrustedToAuthForDelegation)"};
          }
          return Error{"delegation_not_allowed",
                       failed + " (add " + where.spn + " to msDS-AllowedToDelegateTo of " + broker +
                           ", and check the user is not marked sensitive)"};
        default:
          return Error{"kerberos_error", failed};
      }
    case Stage::kMutualAuth:
      break;
  }
  return Error{"kerberos_error", failed};
}

}  // namespace orthrus::broker::kerberos
