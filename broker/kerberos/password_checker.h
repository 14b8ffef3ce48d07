#pragma once
// Checks a Basic password against the KDC: an AS exchange with the password (so the domain's own
// account state applies: disabled, locked, expired), then the ticket is verified against the broker's
// keytab so that a spoofed KDC reply cannot make a wrong password pass. The password is never stored;
// a success may be remembered for a short time as a keyed, salted hash so that ActiveSync's
// Basic-on-every-request does not cost a KDC exchange each time.
//
// Check() blocks on the KDC: run it on the worker pool, never on an event loop. Thread-safe.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace orthrus::broker {

struct PasswordCheckSettings {
  std::string realm;            // "CORP.TEST": for "alice" and "CORP\alice"
  std::string keytab_file;      // the broker's keytab, to verify the user's ticket
  std::string verify_principal; // a principal in that keytab: "svc-broker@CORP.TEST"
  std::chrono::seconds cache_ttl{120};  // 0: every check goes to the KDC
  size_t cache_entries = 10000;
};

struct PasswordCheckStats {
  uint64_t kdc_checks = 0;  // AS exchanges
  uint64_t cache_hits = 0;
  uint64_t failures = 0;
};

class PasswordChecker {
 public:
  virtual ~PasswordChecker() = default;
  // The account's canonical principal ("alice@CORP.TEST") when the KDC accepts the password.
  // User names: "alice", "CORP\alice" (the NetBIOS domain is not checked: the realm is the
  // broker's) or a UPN "alice@corp.example" (an enterprise name, resolved by the KDC).
  // Error codes: password_wrong, password_unknown_user, password_expired, account_disabled,
  // account_locked, kdc_unreachable, clock_skew, kerberos_weak_crypto, kerberos_error.
  virtual Result<std::string> Check(const std::string& username, const std::string& password) = 0;
  virtual PasswordCheckStats Stats() const = 0;
};

Result<std::unique_ptr<PasswordChecker>> MakeKdcPasswordChecker(const PasswordCheckSettings& s);

}  // namespace orthrus::broker
