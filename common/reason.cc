#include "common/reason.h"

#include <array>

namespace orthrus {
namespace {

struct ReasonInfo {
  std::string_view name;
  unsigned http_status;
  std::string_view hint;
};

constexpr std::array<ReasonInfo, static_cast<size_t>(Reason::kCount_)> kReasons = {{
    {"ok", 200, ""},
    {"tls_handshake_failed", 0, "the device aborted the TLS handshake or spoke no TLS"},
    {"no_client_certificate", 0, "the device presented no certificate; check its certificate profile"},
    {"untrusted_client_certificate", 0,
     "the device certificate does not chain to listen.client_ca_file"},
    {"client_certificate_expired", 0, "the device certificate has expired; re-enroll the device"},
    {"client_certificate_not_yet_valid", 0, "the device certificate is not valid yet; check clocks"},
    {"client_certificate_malformed", 0,
     "the device certificate has names that cannot be read safely (NUL, bad UTF-8, bad UPN)"},
    {"client_certificate_revoked", 0,
     "the device certificate is on its CA's revocation list (or revoked in Orthrus)"},
    {"client_certificate_self_signed", 0, "the device presented a self-signed certificate"},
    {"client_certificate_wrong_purpose", 0,
     "the certificate is not for client authentication (extendedKeyUsage/keyUsage)"},
    {"client_certificate_weak_key", 0, "the certificate's key is too small (RSA < 2048 bits)"},
    {"client_certificate_weak_signature", 0, "the certificate is signed with a weak hash (SHA-1, MD5)"},
    {"client_certificate_chain_too_deep", 0, "the chain is longer than listen.max_chain_depth"},
    {"client_certificate_name_constraints", 0, "the certificate violates its CA's name constraints"},
    {"client_certificate_unknown_critical_extension", 0,
     "the certificate has a critical extension this edge does not understand"},
    {"client_certificate_too_large", 0, "the certificate chain exceeds the size the edge accepts"},
    {"client_certificate_restricted", 0,
     "the certificate does not meet listen.restrictions; the log names the restriction"},
    {"crl_stale", 0,
     "the CA's CRL is past its nextUpdate (fail closed); publish a fresh CRL or set a grace period"},
    {"crl_missing", 0, "no CRL is loaded for a CA in the chain and it is not marked no_crl"},
    {"no_publishing_rule", 404, "no edge rule matches this host and path; check rule.host/path_prefix"},
    {"misdirected_request", 421,
     "the Host header names another site than the TLS server name (SNI) the device asked for"},
    {"password_required", 401, "the rule needs Basic credentials and the device sent none"},
    {"malformed_credentials", 401, "the Authorization header is not valid Basic (base64 user:password)"},
    {"rate_limited", 429,
     "too many failed passwords for this account or from this address; see password_limits"},
    {"malformed_request", 400, "the device sent bytes that are not valid HTTP/1.1"},
    {"request_line_too_long", 414, "raise limits.request_line_bytes if legitimate"},
    {"header_too_large", 431, "raise limits.header_bytes if legitimate"},
    {"body_too_large", 413, "raise limits.body_bytes if legitimate"},
    {"header_timeout", 408, "the device did not send a complete request head in time"},
    {"body_timeout", 408, "the device stopped sending the request body"},
    {"unsupported_request", 501, "CONNECT, Upgrade and HTTP/2 prior knowledge are not proxied"},
    {"client_closed", 499, "the device went away before the response was complete"},
    {"broker_unavailable", 502, "no broker reachable; check the brokers and the edge->broker mTLS"},
    {"broker_timeout", 504, "the broker did not answer within limits.response_timeout_seconds"},
    {"broker_refused_edge", 502,
     "the broker refused this edge; add its certificate name to the broker's listen.allowed_edge"},
    {"broker_protocol_error", 502, "edge and broker disagree on the tunnel protocol; check versions"},
    {"edge_not_allowed", 403, "edge certificate name is not in listen.allowed_edge"},
    {"bad_request_head", 400, "the edge sent an incomplete or invalid request head"},
    {"identity_untrusted", 403, "the device chain does not verify against the broker's device_ca_file"},
    {"identity_mismatch", 403, "the identity the edge asserted differs from the forwarded chain"},
    {"no_route", 404, "no publishing rule matches this path"},
    {"authentication_incomplete", 403,
     "the edge forwarded less than the broker rule's authentication needs; align edge and broker "
     "rules"},
    {"password_wrong", 401, "the KDC refused the password (a failed logon counts toward AD lockout)"},
    {"password_unknown_user", 401, "the KDC knows no such user; check the user name format"},
    {"password_expired", 401, "the password is right but expired; the user must change it"},
    {"identities_differ", 403,
     "the certificate and the password belong to different accounts (certificate-and-password)"},
    {"backend_connect_failed", 502, "the broker cannot reach the backend; check backend_url/pinned_ip"},
    {"backend_tls_failed", 502,
     "backend TLS failed: check backend_ca_file, the backend certificate name and bridging"},
    {"backend_timeout", 504, "the backend did not answer in time"},
    {"backend_reset", 502, "the backend closed the connection mid-response"},
    {"backend_bad_response", 502, "the backend answered with invalid HTTP"},
    {"account_not_found", 403,
     "no AD account maps to this certificate under the enabled mapping rules; add a strong "
     "altSecurityIdentities mapping (X509:<I>..<SR>..) or enable the matching rule"},
    {"account_ambiguous", 403,
     "several AD accounts match this certificate; make the mapping attribute unique"},
    {"account_disabled", 403, "the mapped AD account is disabled"},
    {"account_locked", 403, "the mapped AD account is locked out"},
    {"account_not_delegable", 403,
     "the account is marked 'sensitive and cannot be delegated' (or is in Protected Users)"},
    {"directory_unavailable", 503, "LDAP did not answer; check the domain controller and the bind"},
    {"delegation_not_allowed", 502,
     "the KDC refused S4U2Proxy: add the rule's SPN to msDS-AllowedToDelegateTo of the broker "
     "account and enable 'use any authentication protocol'"},
    {"spn_unknown", 502, "no account holds this SPN; check the rule's spn and setspn -Q"},
    {"kdc_unreachable", 504, "the KDC did not answer within kerberos.kdc_timeout_ms"},
    {"clock_skew", 502, "broker and KDC clocks differ by more than 5 minutes; fix time sync"},
    {"kerberos_weak_crypto", 502, "RC4-only key or ticket refused; enable AES for the account"},
    {"kerberos_error", 502, "Kerberos failed; the detail has the KDC's answer"},
    {"backend_rejected_ticket", 502,
     "the backend answered 401 to a delegated ticket: check its SPN, keytab and Negotiate setup"},
    {"backend_auth_failed", 502, "the backend's Negotiate answer failed mutual authentication"},
    {"broker_overloaded", 503, "the broker's worker queue is full (KDC or LDAP slow?)"},
    {"cancelled", 499, "the request was cancelled"},
    {"internal_error", 500, "a bug: please report it with the request id"},
    {"account_revoked", 403,
     "the account is on the instant revocation list (orthrusctl list-revoked --kind account)"},
    {"device_revoked", 403,
     "the ActiveSync DeviceId is on the instant revocation list (orthrusctl list-revoked --kind "
     "device_id)"},
    {"revocation_feed_stale", 0,
     "no broker has been heard from for longer than revocation_feed.max_staleness_seconds "
     "(fail closed); check the edge->broker connection and the brokers' revocation section"},
    {"admin_not_allowed", 0,
     "the admin certificate chains to revocation.admin.admin_ca_file but its CN/DNS/e-mail name "
     "is not in revocation.admin.allowed_admin"},
}};

}  // namespace

std::string_view ReasonName(Reason reason) { return kReasons[static_cast<size_t>(reason)].name; }

unsigned ReasonHttpStatus(Reason reason) {
  return kReasons[static_cast<size_t>(reason)].http_status;
}

std::string_view ReasonHint(Reason reason) { return kReasons[static_cast<size_t>(reason)].hint; }

Reason ReasonFromName(std::string_view name) {
  for (size_t i = 0; i < kReasons.size(); ++i) {
    if (kReasons[i].name == name) return static_cast<Reason>(i);
  }
  return Reason::kInternalError;
}

}  // namespace orthrus
