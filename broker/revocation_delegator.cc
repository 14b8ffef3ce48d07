#include "broker/revocation_delegator.h"

#include <algorithm>

#include "common/log.h"
#include "common/revocation/keys.h"

namespace orthrus::broker {

namespace {

std::string LowerName(std::string_view text) { return revocation::NormalizeIdentifier(text); }

void AddUnique(std::vector<std::string>& out, std::string value) {
  if (value.empty()) return;
  if (std::find(out.begin(), out.end(), value) == out.end()) out.push_back(std::move(value));
}

}  // namespace

std::vector<std::string> PrincipalsForAccount(std::string_view account, std::string_view realm) {
  std::vector<std::string> out;
  if (account.empty()) return out;
  std::string at_realm = realm.empty() ? std::string() : "@" + std::string(realm);
  if (auto slash = account.find('\\'); slash != std::string_view::npos) {
    std::string_view user = account.substr(slash + 1);
    if (!user.empty() && !at_realm.empty()) AddUnique(out, std::string(user) + at_realm);
    return out;
  }
  if (auto at = account.rfind('@'); at != std::string_view::npos) {
    AddUnique(out, std::string(account));
    if (at > 0 && !at_realm.empty()) AddUnique(out, std::string(account.substr(0, at)) + at_realm);
    return out;
  }
  if (!at_realm.empty()) AddUnique(out, std::string(account) + at_realm);
  return out;
}

std::vector<std::string> AccountNamesForPrincipal(std::string_view principal) {
  std::vector<std::string> out;
  std::string lower = LowerName(principal);
  AddUnique(out, lower);
  auto at = lower.rfind('@');
  if (at == std::string::npos || at == 0) return out;
  std::string user = lower.substr(0, at);
  std::string realm = lower.substr(at + 1);
  AddUnique(out, user);
  std::string netbios = realm.substr(0, realm.find('.'));
  if (!netbios.empty()) AddUnique(out, netbios + "\\" + user);
  return out;
}

RevocationAwareDelegator::RevocationAwareDelegator(std::unique_ptr<Delegator> inner,
                                                   revocation::RevocationState& state,
                                                   std::string realm)
    : inner_(std::move(inner)), state_(state), realm_(std::move(realm)) {
  // Entries present at start: nothing is cached yet, Begin() refuses them.
  seen_version_ = state_.version();
  subscription_ = state_.Subscribe([this](uint64_t) { OnStateChanged(); });
}

RevocationAwareDelegator::~RevocationAwareDelegator() { subscription_.reset(); }

std::optional<std::string> RevocationAwareDelegator::Revoked(const std::string& user_principal) const {
  auto verdict = state_.current()->CheckAccounts(AccountNamesForPrincipal(user_principal));
  if (verdict.ok()) return std::nullopt;
  return verdict.detail;
}

Result<std::unique_ptr<NegotiateExchange>> RevocationAwareDelegator::Begin(
    const std::string& user_principal, const std::string& spn) {
  if (auto why = Revoked(user_principal)) {
    return Fail("account_revoked", "no delegation for " + user_principal + ": " + *why);
  }
  {
    std::lock_guard lock(mutex_);
    spellings_[LowerName(user_principal)].insert(user_principal);
  }
  auto result = inner_->Begin(user_principal, spn);
  // Revoked while the KDC exchange ran: the listener may have run before the credential was cached.
  if (auto why = Revoked(user_principal)) {
    inner_->ForgetUser(user_principal);
    return Fail("account_revoked", "no delegation for " + user_principal + ": " + *why);
  }
  return result;
}

void RevocationAwareDelegator::ForgetUser(const std::string& user_principal) {
  std::set<std::string> spellings = {user_principal};
  {
    std::lock_guard lock(mutex_);
    if (auto it = spellings_.find(LowerName(user_principal)); it != spellings_.end()) {
      spellings.insert(it->second.begin(), it->second.end());
    }
  }
  for (const auto& p : spellings) inner_->ForgetUser(p);
}

// Runs on the thread that applied the change (a worker running an admin Revoke), outside the
// state's locks. Cheap: a scan of the instant entries and a map erase per principal.
void RevocationAwareDelegator::OnStateChanged() {
  auto set = state_.current();
  uint64_t since;
  {
    std::lock_guard lock(mutex_);
    since = seen_version_;
    seen_version_ = std::max(seen_version_, set->version());
  }
  for (const auto& [key, entry] : set->entries()) {
    if (!entry->key().has_account() || entry->version() <= since) continue;
    std::vector<std::string> principals = PrincipalsForAccount(entry->key().account(), realm_);
    std::string list;
    for (const auto& p : principals) {
      ForgetUser(p);
      list += (list.empty() ? "" : " ") + p;
    }
    log::Info("kerberos_credentials_dropped", {{"account", entry->key().account()},
                                               {"principals", list},
                                               {"version", entry->version()},
                                               {"by", entry->revoked_by()}});
  }
}

}  // namespace orthrus::broker
