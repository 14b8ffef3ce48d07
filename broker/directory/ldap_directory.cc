// LDAP-backed Directory: one connection behind a mutex, a result cache in front of it.
#include <lber.h>
#include <ldap.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>

#include "broker/directory/broker_credential.h"
#include "broker/directory/directory.h"
#include "broker/directory/mapping.h"
#include "common/log.h"
#include "common/tls/pem_files.h"

namespace orthrus::broker {
namespace {

using directory_internal::BrokerCredential;
using directory_internal::LeafFacts;
using directory_internal::ScopedThreadCcache;

constexpr uint32_t kUfAccountDisable = 0x2;
constexpr uint32_t kUfLockout = 0x10;
constexpr uint32_t kUfNotDelegated = 0x100000;
// Cyrus SASL's ssf for a sealed (encrypted) GSSAPI layer is 56 or more.
constexpr const char* kSaslSecProps = "minssf=56";
constexpr size_t kMaxCacheEntries = 100000;

// libsasl2-dev is not a build dependency; this mirrors Cyrus SASL's sasl_interact_t, whose
// layout has been part of its stable ABI since 2.0.
struct SaslInteract {
  unsigned long id;
  const char* challenge;
  const char* prompt;
  const char* defresult;
  const void* result;
  unsigned len;
};
constexpr unsigned long kSaslCbListEnd = 0;

// GSSAPI needs no secrets from us; an empty answer to every prompt (the authorization id) means
// "act as the authenticated principal itself".
int SaslInteractEmpty(LDAP*, unsigned, void*, void* prompts) {
  for (auto* in = static_cast<SaslInteract*>(prompts); in->id != kSaslCbListEnd; ++in) {
    in->result = "";
    in->len = 0;
  }
  return LDAP_SUCCESS;
}

struct LdapUnbind {
  void operator()(LDAP* ld) const { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
using LdapPtr = std::unique_ptr<LDAP, LdapUnbind>;
struct LdapMsgFree {
  void operator()(LDAPMessage* msg) const { ldap_msgfree(msg); }
};
using LdapMessagePtr = std::unique_ptr<LDAPMessage, LdapMsgFree>;
struct LdapValuesFree {
  void operator()(berval** values) const { ldap_value_free_len(values); }
};
using LdapValuesPtr = std::unique_ptr<berval*, LdapValuesFree>;
struct LdapMemFree {
  void operator()(char* p) const { ldap_memfree(p); }
};
using LdapStringPtr = std::unique_ptr<char, LdapMemFree>;

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string LdapErrorText(LDAP* ld, int rc) {
  std::string text = ldap_err2string(rc);
  char* diagnostic = nullptr;
  if (ld != nullptr && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diagnostic) == LDAP_OPT_SUCCESS &&
      diagnostic != nullptr) {
    if (*diagnostic != '\0') text += std::string(" (") + diagnostic + ")";
    ldap_memfree(diagnostic);
  }
  return text + " [" + std::to_string(rc) + "]";
}

std::optional<std::string> FirstValue(LDAP* ld, LDAPMessage* entry, const char* attribute) {
  LdapValuesPtr values(ldap_get_values_len(ld, entry, attribute));
  if (!values || values.get()[0] == nullptr) return std::nullopt;
  return std::string(values.get()[0]->bv_val, values.get()[0]->bv_len);
}

std::optional<int64_t> ParseInt(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size()) return std::nullopt;
  return value;
}

bool IsLdaps(const std::string& uri) {
  return uri.size() >= 8 && (uri.compare(0, 8, "ldaps://") == 0 || uri.compare(0, 8, "LDAPS://") == 0);
}

class LdapDirectory final : public Directory {
 public:
  LdapDirectory(DirectorySettings settings, std::unique_ptr<BrokerCredential> credential)
      : settings_(std::move(settings)), credential_(std::move(credential)) {}

  Result<Account> MapCertificate(const tls::CertIdentity& certificate) override;

  DirectoryStats Stats() const override {
    DirectoryStats stats;
    stats.searches = searches_.load();
    stats.cache_hits = cache_hits_.load();
    stats.negative_cache_hits = negative_cache_hits_.load();
    return stats;
  }

 private:
  struct CacheEntry {
    Result<Account> result;
    std::chrono::steady_clock::time_point expires;
  };
  struct SearchOutcome {
    int entries = 0;  // capped at 2: more than one is all we need to know
    std::optional<Account> account;
  };

  std::optional<Result<Account>> CacheLookup(const std::string& key);
  void CacheStore(const std::string& key, const Result<Account>& result);
  Result<Account> Resolve(const tls::CertIdentity& certificate, const LeafFacts& facts);
  Status EnsureConnected();
  Status Connect();
  Status BindGssapi(LDAP* ld);
  Status BindSimple(LDAP* ld);
  Result<SearchOutcome> Search(const std::string& filter, MappingKind kind);
  Result<SearchOutcome> SearchOnce(const std::string& filter, MappingKind kind);
  Result<Account> ReadAccount(LDAP* ld, LDAPMessage* entry, MappingKind kind);

  const DirectorySettings settings_;

  std::mutex cache_mutex_;
  std::map<std::string, CacheEntry> cache_;
  std::atomic<uint64_t> searches_{0};
  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> negative_cache_hits_{0};

  // One connection, one operation at a time: libldap handles are not safe for concurrent
  // synchronous calls, and a single DC session keeps the TGT/bind logic simple.
  std::timed_mutex connection_mutex_;
  std::unique_ptr<BrokerCredential> credential_;  // null for simple bind
  LdapPtr ld_;
  bool connection_used_ = false;  // a failure on a reused connection earns one reconnect
  int last_rc_ = LDAP_SUCCESS;
};

std::optional<Result<Account>> LdapDirectory::CacheLookup(const std::string& key) {
  std::lock_guard lock(cache_mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  if (std::chrono::steady_clock::now() >= it->second.expires) {
    cache_.erase(it);
    return std::nullopt;
  }
  (it->second.result ? cache_hits_ : negative_cache_hits_).fetch_add(1);
  return it->second.result;
}

void LdapDirectory::CacheStore(const std::string& key, const Result<Account>& result) {
  std::chrono::seconds ttl = settings_.cache_ttl;
  if (!result) {
    // An unavailable directory says nothing about the account; a malformed certificate stays
    // malformed but is cheap to re-check.
    const std::string& code = result.error().code;
    if (code == "directory_unavailable" || code == "client_certificate_malformed") return;
    // Disabled/locked/not-delegable are account states an admin fixes; they share the short TTL.
    ttl = settings_.negative_cache_ttl;
  }
  if (ttl.count() <= 0) return;
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) {
    std::erase_if(cache_, [&](const auto& item) { return now >= item.second.expires; });
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();  // bounded memory beats hit rate
  }
  cache_.insert_or_assign(key, CacheEntry{result, now + ttl});
}

Result<Account> LdapDirectory::MapCertificate(const tls::CertIdentity& certificate) {
  if (certificate.cert_sha256.empty()) {
    return Fail("client_certificate_malformed", "certificate identity has no fingerprint");
  }
  if (auto cached = CacheLookup(certificate.cert_sha256)) return *cached;

  ORTHRUS_ASSIGN_OR_RETURN(LeafFacts facts, directory_internal::ReadLeafFacts(certificate));
  Result<Account> result = [&]() -> Result<Account> {
    // Waiting longer than one operation's timeout for the connection would let a slow DC stack
    // up the whole worker pool behind it.
    std::unique_lock lock(connection_mutex_, std::defer_lock);
    if (!lock.try_lock_for(settings_.timeout)) {
      return Fail("directory_unavailable", "LDAP connection busy for longer than the timeout");
    }
    return Resolve(certificate, facts);
  }();

  std::string fingerprint = tls::HexLower(certificate.cert_sha256).substr(0, 16);
  if (result) {
    log::Info("directory_mapped", {{"subject", certificate.subject},
                                   {"cert_sha256", fingerprint},
                                   {"account", result->sam_account_name},
                                   {"rule", MappingName(result->matched_by)}});
  } else {
    log::Warn("directory_refused", {{"subject", certificate.subject},
                                    {"cert_sha256", fingerprint},
                                    {"reason", result.error().code},
                                    {"detail", result.error().detail}});
  }
  CacheStore(certificate.cert_sha256, result);
  return result;
}

Result<Account> LdapDirectory::Resolve(const tls::CertIdentity& certificate, const LeafFacts& facts) {
  std::string tried;
  for (MappingKind kind : settings_.rules) {
    std::optional<std::string> filter = directory_internal::BuildFilter(kind, certificate, facts);
    if (!filter) continue;  // nothing in this certificate for this rule
    if (!tried.empty()) tried += ",";
    tried += MappingName(kind);
    ORTHRUS_ASSIGN_OR_RETURN(SearchOutcome outcome, Search(*filter, kind));
    if (outcome.entries == 0) continue;
    if (outcome.entries > 1) {
      return Fail("account_ambiguous",
                  "several accounts match rule " + std::string(MappingName(kind)));
    }
    Account& account = *outcome.account;
    if (kind == MappingKind::kSidExtension && account.object_sid != *facts.sid) {
      // The server matched on objectSid; this guards against a filter or decoding mistake.
      return Fail("account_not_found", "objectSid of " + account.dn + " differs from the SID extension");
    }
    const uint32_t unusable = kUfAccountDisable | kUfLockout | kUfNotDelegated;
    if ((account.user_account_control & unusable) && settings_.on_unusable_account) {
      settings_.on_unusable_account(account.kerberos_principal);
    }
    if (account.user_account_control & kUfAccountDisable) {
      return Fail("account_disabled", account.dn + " is disabled");
    }
    if (account.user_account_control & kUfLockout) {
      return Fail("account_locked", account.dn + " is locked out");
    }
    if (account.user_account_control & kUfNotDelegated) {
      return Fail("account_not_delegable", account.dn + " is marked sensitive (NOT_DELEGATED)");
    }
    return std::move(account);
  }
  return Fail("account_not_found",
              tried.empty() ? "the certificate offers nothing for the enabled mapping rules"
                            : "no account matches (rules tried: " + tried + ")");
}

Status LdapDirectory::EnsureConnected() {
  if (credential_) {
    ORTHRUS_ASSIGN_OR_RETURN(bool renewed, credential_->EnsureFresh());
    if (renewed && ld_) {
      log::Info("directory_rebind", {{"why", "tgt_renewed"}});
      ld_.reset();
    }
  }
  if (ld_) return {};
  return Connect();
}

Status LdapDirectory::Connect() {
  LDAP* raw = nullptr;
  int rc = ldap_initialize(&raw, settings_.uri.c_str());
  LdapPtr ld(raw);
  if (rc != LDAP_SUCCESS || !ld) {
    return Fail("directory_unavailable", "ldap_initialize(" + settings_.uri + "): " + ldap_err2string(rc));
  }
  int version = LDAP_VERSION3;
  timeval timeout = ToTimeval(settings_.timeout);
  int tcp_user_timeout_ms = static_cast<int>(settings_.timeout.count());
  bool ok = ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &version) == LDAP_OPT_SUCCESS &&
            // AD returns referrals for the configuration and DNS partitions; chasing them would
            // bind elsewhere with our credentials.
            ldap_set_option(ld.get(), LDAP_OPT_REFERRALS, LDAP_OPT_OFF) == LDAP_OPT_SUCCESS &&
            ldap_set_option(ld.get(), LDAP_OPT_NETWORK_TIMEOUT, &timeout) == LDAP_OPT_SUCCESS &&
            ldap_set_option(ld.get(), LDAP_OPT_TIMEOUT, &timeout) == LDAP_OPT_SUCCESS &&
            // Without it a lost peer is noticed only by TCP's retransmission limit (minutes).
            ldap_set_option(ld.get(), LDAP_OPT_TCP_USER_TIMEOUT, &tcp_user_timeout_ms) == LDAP_OPT_SUCCESS &&
            // The SPN must come from the configured name, not from reverse DNS.
            ldap_set_option(ld.get(), LDAP_OPT_X_SASL_NOCANON, LDAP_OPT_ON) == LDAP_OPT_SUCCESS;
  if (!ok) return Fail("directory_unavailable", "cannot set LDAP options");

  bool tls = IsLdaps(settings_.uri) || settings_.start_tls;
  if (tls) {
    int demand = LDAP_OPT_X_TLS_DEMAND;
    int is_server = 0;
    if ((!settings_.ca_file.empty() &&
         ldap_set_option(ld.get(), LDAP_OPT_X_TLS_CACERTFILE, settings_.ca_file.c_str()) != LDAP_OPT_SUCCESS) ||
        ldap_set_option(ld.get(), LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS ||
        ldap_set_option(ld.get(), LDAP_OPT_X_TLS_NEWCTX, &is_server) != LDAP_OPT_SUCCESS) {
      return Fail("directory_unavailable", "cannot set up LDAP TLS with CA " + settings_.ca_file);
    }
    if (settings_.start_tls && !IsLdaps(settings_.uri)) {
      rc = ldap_start_tls_s(ld.get(), nullptr, nullptr);
      if (rc != LDAP_SUCCESS) {
        return Fail("directory_unavailable", "StartTLS to " + settings_.uri + ": " + LdapErrorText(ld.get(), rc));
      }
    }
  }
  if (credential_) {
    ORTHRUS_TRY(BindGssapi(ld.get()));
  } else {
    ORTHRUS_TRY(BindSimple(ld.get()));
  }
  ld_ = std::move(ld);
  connection_used_ = false;
  log::Info("directory_connected", {{"uri", settings_.uri},
                                    {"bind", credential_ ? "sasl-gssapi" : "simple-tls"}});
  return {};
}

Status LdapDirectory::BindGssapi(LDAP* ld) {
  if (ldap_set_option(ld, LDAP_OPT_X_SASL_SECPROPS, kSaslSecProps) != LDAP_OPT_SUCCESS) {
    return Fail("directory_unavailable", "cannot require a sealed SASL layer");
  }
  ScopedThreadCcache ccache(credential_->ccache_name());
  if (!ccache.ok()) return Fail("directory_unavailable", "cannot select the broker's ccache");
  int rc = ldap_sasl_interactive_bind_s(ld, nullptr, "GSSAPI", nullptr, nullptr, LDAP_SASL_QUIET,
                                        SaslInteractEmpty, nullptr);
  if (rc != LDAP_SUCCESS) {
    return Fail("directory_unavailable",
                "SASL/GSSAPI bind to " + settings_.uri + ": " + LdapErrorText(ld, rc));
  }
  ber_len_t ssf = 0;
  if (ldap_get_option(ld, LDAP_OPT_X_SASL_SSF, &ssf) != LDAP_OPT_SUCCESS || ssf < 56) {
    return Fail("directory_unavailable", "SASL/GSSAPI bind is not sealed (ssf " + std::to_string(ssf) + ")");
  }
  return {};
}

Status LdapDirectory::BindSimple(LDAP* ld) {
  auto password = tls::ReadFile(settings_.bind_password_file);
  if (!password) return Fail("directory_unavailable", password.error().detail);
  while (!password->empty() && (password->back() == '\n' || password->back() == '\r')) password->pop_back();
  berval credential{static_cast<ber_len_t>(password->size()), password->data()};
  int rc = ldap_sasl_bind_s(ld, settings_.bind_dn.c_str(), LDAP_SASL_SIMPLE, &credential, nullptr,
                            nullptr, nullptr);
  OPENSSL_cleanse(password->data(), password->size());
  if (rc != LDAP_SUCCESS) {
    return Fail("directory_unavailable",
                "simple bind as " + settings_.bind_dn + " to " + settings_.uri + ": " + LdapErrorText(ld, rc));
  }
  return {};
}

Result<LdapDirectory::SearchOutcome> LdapDirectory::Search(const std::string& filter, MappingKind kind) {
  for (int attempt = 0;; ++attempt) {
    ORTHRUS_TRY(EnsureConnected());
    bool reused = connection_used_;
    last_rc_ = LDAP_SUCCESS;
    auto started = std::chrono::steady_clock::now();
    auto outcome = SearchOnce(filter, kind);
    bool quick = std::chrono::steady_clock::now() - started < settings_.timeout / 2;
    if (outcome || outcome.error().code != "directory_unavailable") {
      connection_used_ = true;
      return outcome;
    }
    // The connection is suspect whatever went wrong; the next call starts clean.
    ld_.reset();
    // A DC drops idle connections (MaxConnIdleTime), which shows as an immediate failure on a
    // reused connection: one fresh attempt covers that. A slow failure already spent the budget.
    if (attempt > 0 || !reused || !quick || last_rc_ == LDAP_TIMEOUT) {
      return outcome;
    }
    log::Info("directory_reconnect", {{"why", outcome.error().detail}});
  }
}

Result<LdapDirectory::SearchOutcome> LdapDirectory::SearchOnce(const std::string& filter,
                                                               MappingKind kind) {
  static const char* kAttributes[] = {"sAMAccountName", "userPrincipalName", "objectSid",
                                      "userAccountControl", "msDS-User-Account-Control-Computed",
                                      "lockoutTime", nullptr};
  // libldap copies tv_sec into the request as the server-side time limit, and Samba checks it at
  // one-second granularity: a 1 s limit fails spuriously ("Time limit exceeded") within
  // milliseconds. Round up and add a second; the broker's own deadline still bounds the request.
  timeval timeout{};
  timeout.tv_sec = static_cast<time_t>(
      std::chrono::ceil<std::chrono::seconds>(settings_.timeout).count() + 1);
  LDAPMessage* raw = nullptr;
  searches_.fetch_add(1);
  int rc = ldap_search_ext_s(ld_.get(), settings_.base_dn.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(),
                             const_cast<char**>(kAttributes), 0, nullptr, nullptr, &timeout,
                             /*sizelimit=*/2, &raw);
  LdapMessagePtr result(raw);
  last_rc_ = rc;
  // A size limit hit means "more than two": ambiguous, which the entries already show.
  if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
    return Fail("directory_unavailable", "search (" + std::string(MappingName(kind)) + ") under " +
                                             settings_.base_dn + ": " + LdapErrorText(ld_.get(), rc));
  }
  SearchOutcome outcome;
  for (LDAPMessage* entry = ldap_first_entry(ld_.get(), result.get()); entry != nullptr;
       entry = ldap_next_entry(ld_.get(), entry)) {
    ++outcome.entries;
    if (outcome.entries == 1) {
      ORTHRUS_ASSIGN_OR_RETURN(Account account, ReadAccount(ld_.get(), entry, kind));
      outcome.account = std::move(account);
    }
  }
  return outcome;
}

Result<Account> LdapDirectory::ReadAccount(LDAP* ld, LDAPMessage* entry, MappingKind kind) {
  Account account;
  account.matched_by = kind;
  LdapStringPtr dn(ldap_get_dn(ld, entry));
  if (dn) account.dn = dn.get();
  auto sam = FirstValue(ld, entry, "sAMAccountName");
  auto sid = FirstValue(ld, entry, "objectSid");
  auto uac = ParseInt(FirstValue(ld, entry, "userAccountControl"));
  // Missing attributes mean our account cannot read them (ACLs): never guess about state.
  if (!sam || sam->empty() || !sid || !uac) {
    return Fail("directory_unavailable",
                "entry " + account.dn + " lacks sAMAccountName/objectSid/userAccountControl (read access?)");
  }
  account.sam_account_name = *sam;
  account.user_principal_name = FirstValue(ld, entry, "userPrincipalName").value_or("");
  account.kerberos_principal = *sam + "@" + settings_.realm;
  ORTHRUS_ASSIGN_OR_RETURN(account.object_sid, directory_internal::SidBinaryToText(*sid));
  account.user_account_control = static_cast<uint32_t>(*uac);
  // userAccountControl's own lockout bit is never set by AD; the computed attribute carries it.
  // Without it, a non-zero lockoutTime is the conservative stand-in (it may be a stale lockout).
  if (auto computed = ParseInt(FirstValue(ld, entry, "msDS-User-Account-Control-Computed"))) {
    account.user_account_control |= static_cast<uint32_t>(*computed) & kUfLockout;
  } else if (auto lockout = ParseInt(FirstValue(ld, entry, "lockoutTime")); lockout && *lockout > 0) {
    account.user_account_control |= kUfLockout;
  }
  return account;
}

}  // namespace

Result<std::unique_ptr<Directory>> MakeLdapDirectory(const DirectorySettings& settings) {
  auto invalid = [](std::string detail) { return Fail("directory_config_invalid", std::move(detail)); };
  if (settings.uri.empty()) return invalid("directory uri is empty");
  if (settings.base_dn.empty()) return invalid("directory base_dn is empty");
  if (settings.realm.empty()) return invalid("directory realm is empty");
  if (settings.rules.empty()) return invalid("no mapping rules: every certificate would be refused");
  if (settings.timeout.count() <= 0) return invalid("directory timeout must be positive");
  bool tls = IsLdaps(settings.uri) || settings.start_tls;
  if ((IsLdaps(settings.uri) || settings.start_tls) && !settings.ca_file.empty()) {
    ORTHRUS_TRY(tls::LoadCertificates(settings.ca_file));
  }
  std::unique_ptr<BrokerCredential> credential;
  if (settings.bind_dn.empty()) {
    if (settings.keytab_file.empty() || settings.principal.empty()) {
      return invalid("SASL/GSSAPI bind needs keytab_file and principal (or set bind_dn)");
    }
    if (access(settings.keytab_file.c_str(), R_OK) != 0) {
      return invalid("cannot read keytab " + settings.keytab_file);
    }
    ORTHRUS_ASSIGN_OR_RETURN(credential, BrokerCredential::Make(settings.keytab_file, settings.principal));
  } else {
    // A simple bind sends the password itself: never without TLS.
    if (!tls) return invalid("simple bind (bind_dn) needs ldaps:// or start_tls");
    if (settings.bind_password_file.empty()) return invalid("bind_dn set but bind_password_file is empty");
    auto password = tls::ReadFile(settings.bind_password_file);
    if (!password) return invalid(password.error().detail);
    OPENSSL_cleanse(password->data(), password->size());
  }
  for (MappingKind kind : settings.rules) {
    if (!IsStrong(kind)) {
      log::Warn("directory_weak_mapping_enabled", {{"rule", MappingName(kind)}});
    }
  }
  return std::unique_ptr<Directory>(new LdapDirectory(settings, std::move(credential)));
}

}  // namespace orthrus::broker
