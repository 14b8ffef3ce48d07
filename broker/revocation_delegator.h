#pragma once
// Instant revocation by account, on the broker's side of Kerberos constrained delegation.
//
// RevocationAwareDelegator wraps the broker's Delegator:
//   - When an account entry is added to the revocation state (an admin's Revoke, whatever thread
//     applies it), the account's cached delegated credentials are dropped (Delegator::ForgetUser)
//     at once, not when their tickets expire.
//   - Begin() for a principal whose account is revoked is refused with "account_revoked" (403), and
//     a credential obtained by a Begin that raced with the revocation is dropped again. The edges
//     refuse such devices already; this keeps a lagging or stale edge from getting a ticket minted.
//
// Account names. Entries name accounts as a UPN ("alice@corp.test"), a sAMAccountName ("alice") or
// NetBIOS-qualified ("corp\alice"), lower-cased. The delegator caches credentials by the principal it
// was asked for: sAMAccountName@REALM from the directory mapping (case as stored in AD), or the
// principal a password check returned. The mapping used (PrincipalsForAccount):
//   "corp\alice"        -> alice@REALM
//   "alice"             -> alice@REALM
//   "alice@corp.test"   -> alice@corp.test (itself) and alice@REALM (UPN prefix = sAMAccountName,
//                          the usual AD convention; a UPN whose prefix differs from the
//                          sAMAccountName is not found here: revoke that account by sAMAccountName)
// and principals compare case-insensitively against every spelling Begin() has seen. The reverse
// (AccountNamesForPrincipal, for the Begin() check): the principal itself, its user part, and
// "<first label of the realm>\<user>" (the NetBIOS domain name is usually that label).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "broker/kerberos/delegator.h"
#include "broker/revocation/revocation_state.h"

namespace orthrus::broker {

// Principals under which credentials of a revoked `account` may be cached (see above).
std::vector<std::string> PrincipalsForAccount(std::string_view account, std::string_view realm);
// Account names (lower case) a principal may be revoked under (see above).
std::vector<std::string> AccountNamesForPrincipal(std::string_view principal);

class RevocationAwareDelegator final : public Delegator {
 public:
  // `state` must outlive this object. `realm`: the broker's Kerberos realm ("CORP.TEST").
  RevocationAwareDelegator(std::unique_ptr<Delegator> inner, revocation::RevocationState& state,
                           std::string realm);
  ~RevocationAwareDelegator() override;

  Result<std::unique_ptr<NegotiateExchange>> Begin(const std::string& user_principal,
                                                   const std::string& spn) override;
  // Drops the credentials of every spelling of this principal that Begin() has seen.
  void ForgetUser(const std::string& user_principal) override;
  DelegationStats Stats() const override { return inner_->Stats(); }

 private:
  void OnStateChanged();
  std::optional<std::string> Revoked(const std::string& user_principal) const;

  std::unique_ptr<Delegator> inner_;
  revocation::RevocationState& state_;
  const std::string realm_;

  std::mutex mutex_;
  std::map<std::string, std::set<std::string>> spellings_;  // lower-case principal -> as asked for
  uint64_t seen_version_ = 0;  // account entries up to this version have been handled

  // Last: destroyed first, so no listener runs while the members above go away.
  std::unique_ptr<revocation::RevocationState::Subscription> subscription_;
};

}  // namespace orthrus::broker
