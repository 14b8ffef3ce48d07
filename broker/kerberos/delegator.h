#pragma once
// Kerberos constrained delegation with protocol transition: the broker's own credential (from its
// keytab) impersonates a mapped user (S4U2Self) and obtains a ticket for that user to a backend SPN
// (S4U2Proxy), yielding a SPNEGO token for "Authorization: Negotiate <token>".
//
// Every call may block on the KDC: run it on the worker pool, never on an event loop.
// GSSAPI types stay inside the implementation.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace orthrus::broker {

struct DelegationSettings {
  std::string keytab_file;  // the broker service account's keytab (AES keys)
  std::string principal;    // e.g. "svc-broker@CORP.TEST"
  // A delegated credential is reused until this long before its ticket expires.
  std::chrono::seconds refresh_margin{300};
};

struct DelegationStats {
  uint64_t s4u2self = 0;    // impersonations that went to the KDC
  uint64_t s4u2proxy = 0;   // service tickets obtained from the KDC
  uint64_t tokens = 0;      // SPNEGO tokens produced
  uint64_t cache_hits = 0;  // tokens produced with no KDC exchange
};

// One Negotiate authentication of one request: the token to send, then (optionally) the backend's
// answer token to verify the backend (mutual authentication).
class NegotiateExchange {
 public:
  virtual ~NegotiateExchange() = default;
  // Base64 SPNEGO token for "Authorization: Negotiate <token>". Fresh per request (backends reject
  // replays).
  virtual const std::string& token() const = 0;
  // Feeds the base64 token of the backend's "WWW-Authenticate: Negotiate <token>"; fails with
  // backend_auth_failed if it does not prove the backend holds the SPN's key. No KDC exchange.
  virtual Status Complete(const std::string& response_token_base64) = 0;
};

class Delegator {
 public:
  virtual ~Delegator() = default;

  // Authenticates `user_principal` ("alice@CORP.TEST", sAMAccountName@REALM) to `spn`
  // ("HTTP/exchange.corp.test"). Never as the broker itself. Error codes (reason names):
  // account_disabled, account_not_found, account_not_delegable, delegation_not_allowed,
  // spn_unknown, kdc_unreachable, clock_skew, kerberos_weak_crypto, kerberos_error. The error
  // detail is operator-facing and names the fix (e.g. "add HTTP/x to msDS-AllowedToDelegateTo of
  // svc-broker").
  virtual Result<std::unique_ptr<NegotiateExchange>> Begin(const std::string& user_principal,
                                                           const std::string& spn) = 0;

  // Drops cached delegated credentials of a user (account disabled or revoked).
  virtual void ForgetUser(const std::string& user_principal) = 0;

  virtual DelegationStats Stats() const = 0;
};

// Loads the keytab, refuses RC4-only keys, and checks that a TGT can be obtained (startup error
// otherwise, with the KDC's answer).
Result<std::unique_ptr<Delegator>> MakeGssDelegator(const DelegationSettings& settings);

}  // namespace orthrus::broker
