// Delegator on MIT GSS-API: broker login from its keytab, S4U2Self via
// gss_acquire_cred_impersonate_name, S4U2Proxy inside gss_init_sec_context (SPNEGO).
//
// Credentials are cached, contexts never are: every token comes from a new security context, while
// the per-user credential keeps the S4U2Self evidence ticket and the S4U2Proxy service tickets in
// its private MEMORY ccache, so a warm user/SPN pair costs no KDC exchange at all.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/base64.h"
#include "broker/kerberos/delegator.h"
#include "broker/kerberos/gss_errors.h"
#include "broker/kerberos/gss_handles.h"
#include "common/log.h"

namespace orthrus::broker {
namespace {

using Clock = std::chrono::steady_clock;
using kerberos::FailureContext;
using kerberos::GssBuffer;
using kerberos::GssContext;
using kerberos::GssCred;
using kerberos::GssName;
using kerberos::Krb5Context;
using kerberos::ScopeExit;
using kerberos::Stage;

std::atomic<uint64_t> g_ccache_sequence{0};

bool IsAes(krb5_enctype enctype) {
  return enctype == ENCTYPE_AES128_CTS_HMAC_SHA1_96 || enctype == ENCTYPE_AES256_CTS_HMAC_SHA1_96 ||
         enctype == ENCTYPE_AES128_CTS_HMAC_SHA256_128 ||
         enctype == ENCTYPE_AES256_CTS_HMAC_SHA384_192;
}

std::string EnctypeName(krb5_enctype enctype) {
  char name[64] = {};
  if (krb5_enctype_to_name(enctype, TRUE, name, sizeof(name)) != 0) {
    return "enctype " + std::to_string(enctype);
  }
  return name;
}

// A path never reaches krb5_kt_resolve bare: "C:\x" or "WRFILE:x" would be read as a type prefix.
std::string KeytabName(const std::string& path) { return "FILE:" + path; }

std::string RealmOf(const std::string& principal) {
  const size_t at = principal.rfind('@');
  return at == std::string::npos ? std::string() : principal.substr(at + 1);
}

Result<GssName> ImportName(const std::string& text, gss_OID type, const std::string& what) {
  gss_buffer_desc buffer = {text.size(), const_cast<char*>(text.data())};
  GssName name;
  OM_uint32 minor = 0;
  const OM_uint32 major = gss_import_name(&minor, &buffer, type, name.out());
  if (GSS_ERROR(major)) {
    return Fail("kerberos_error", "cannot parse " + what + " \"" + text +
                                      "\": " + kerberos::DisplayGssStatus(major, minor));
  }
  return name;
}

// Collects the enctypes the keytab holds for `principal`; refuses a keytab without AES keys.
Result<std::vector<krb5_enctype>> CheckKeytab(const DelegationSettings& settings) {
  if (access(settings.keytab_file.c_str(), R_OK) != 0) {
    return Fail("kerberos_error", "keytab " + settings.keytab_file + " is not readable");
  }
  Krb5Context k;
  if (krb5_error_code code = k.Init(); code != 0) {
    return Fail("kerberos_error",
                "krb5_init_context failed (krb5 code " + std::to_string(code) + ")");
  }
  krb5_principal principal = nullptr;
  if (krb5_error_code code = krb5_parse_name(k.get(), settings.principal.c_str(), &principal)) {
    return Fail("kerberos_error",
                "bad broker principal \"" + settings.principal + "\": " + k.Message(code));
  }
  ScopeExit free_principal([&] { krb5_free_principal(k.get(), principal); });
  krb5_keytab keytab = nullptr;
  if (krb5_error_code code =
          krb5_kt_resolve(k.get(), KeytabName(settings.keytab_file).c_str(), &keytab)) {
    return Fail("kerberos_error", "keytab " + settings.keytab_file + ": " + k.Message(code));
  }
  ScopeExit close_keytab([&] { krb5_kt_close(k.get(), keytab); });

  krb5_kt_cursor cursor;
  if (krb5_error_code code = krb5_kt_start_seq_get(k.get(), keytab, &cursor)) {
    return Fail("kerberos_error", "keytab " + settings.keytab_file + ": " + k.Message(code));
  }
  std::set<krb5_enctype> enctypes;
  krb5_keytab_entry entry;
  while (krb5_kt_next_entry(k.get(), keytab, &entry, &cursor) == 0) {
    if (krb5_principal_compare(k.get(), entry.principal, principal)) {
      enctypes.insert(entry.key.enctype);
    }
    krb5_free_keytab_entry_contents(k.get(), &entry);
  }
  krb5_kt_end_seq_get(k.get(), keytab, &cursor);

  if (enctypes.empty()) {
    return Fail("kerberos_error",
                "keytab " + settings.keytab_file + " holds no key for " + settings.principal);
  }
  std::vector<krb5_enctype> aes;
  std::string found;
  for (krb5_enctype enctype : enctypes) {
    if (IsAes(enctype)) aes.push_back(enctype);
    found += (found.empty() ? "" : ", ") + EnctypeName(enctype);
  }
  if (aes.empty()) {
    return Fail("kerberos_weak_crypto",
                "keytab " + settings.keytab_file + " holds only weak keys for " +
                    settings.principal + " (" + found +
                    "); RC4/DES are refused: set msDS-SupportedEncryptionTypes to AES (24) on the "
                    "account, change its password and export the keytab again");
  }
  // Newest (strongest) first, as krb5 expects a preference order.
  std::sort(aes.rbegin(), aes.rend());
  return aes;
}

// The broker's own TGT, as a GSS credential over a private MEMORY ccache.
struct BrokerCred {
  GssCred cred;
  std::string ccache_name;
  Clock::time_point refresh_at;
  Clock::time_point expires_at;

  BrokerCred() = default;
  BrokerCred(const BrokerCred&) = delete;
  BrokerCred& operator=(const BrokerCred&) = delete;
  ~BrokerCred() {
    cred.Reset();
    // MEMORY ccaches live until destroyed, and this one holds the broker's TGT.
    if (ccache_name.empty()) return;
    Krb5Context k;
    krb5_ccache cc = nullptr;
    if (k.Init() == 0 && krb5_cc_resolve(k.get(), ccache_name.c_str(), &cc) == 0) {
      krb5_cc_destroy(k.get(), cc);
    }
  }
};

// An impersonated (S4U2Self) credential for one user. Its ccache also caches the S4U2Proxy tickets.
struct UserCred {
  GssCred cred;
  Clock::time_point refresh_at;
  std::optional<bool> evidence_forwardable;
  // Serialises the first token per SPN, so concurrent cold requests cause one S4U2Proxy.
  std::mutex proxy_mu;
  std::mutex spns_mu;
  std::set<std::string> spns_with_ticket;  // guarded by spns_mu

  bool HasTicketFor(const std::string& spn) {
    std::lock_guard lock(spns_mu);
    return spns_with_ticket.contains(spn);
  }
  void MarkTicketFor(const std::string& spn) {
    std::lock_guard lock(spns_mu);
    spns_with_ticket.insert(spn);
  }
};

// Per-user slot: acquire_mu makes concurrent cold requests for one user wait for a single S4U2Self.
struct UserSlot {
  std::mutex acquire_mu;
  // The fields below are guarded by GssDelegator::mu_.
  std::shared_ptr<UserCred> cred;
  uint64_t attempts = 0;
  std::optional<Error> last_failure;
};

class GssNegotiateExchange final : public NegotiateExchange {
 public:
  GssNegotiateExchange(std::shared_ptr<UserCred> cred, GssName target, GssContext context,
                       std::string token, std::string spn, bool established)
      : cred_(std::move(cred)),
        target_(std::move(target)),
        context_(std::move(context)),
        token_(std::move(token)),
        spn_(std::move(spn)),
        established_(established) {}

  const std::string& token() const override { return token_; }

  Status Complete(const std::string& response_token_base64) override {
    if (established_) {
      return Fail("backend_auth_failed",
                  "Negotiate exchange with " + spn_ + " is already complete");
    }
    std::optional<std::vector<unsigned char>> bytes = Base64Decode(response_token_base64);
    if (!bytes || bytes->empty()) {
      return Fail("backend_auth_failed",
                  "backend " + spn_ + " sent a Negotiate answer that is not base64");
    }
    gss_buffer_desc input = {bytes->size(), bytes->data()};
    GssBuffer output;
    OM_uint32 minor = 0;
    OM_uint32 flags = 0;
    const OM_uint32 major = gss_init_sec_context(
        &minor, cred_->cred.get(), context_.inout(), target_.get(), kerberos::SpnegoOid(),
        GSS_C_MUTUAL_FLAG, GSS_C_INDEFINITE, GSS_C_NO_CHANNEL_BINDINGS, &input, nullptr,
        output.get(), &flags, nullptr);
    if (GSS_ERROR(major)) {
      FailureContext where{.stage = Stage::kMutualAuth, .spn = spn_};
      return std::unexpected(
          kerberos::ClassifyFailure(where, kerberos::DisplayGssStatus(major, minor)));
    }
    if (major != GSS_S_COMPLETE || (flags & GSS_C_MUTUAL_FLAG) == 0) {
      return Fail("backend_auth_failed",
                  "backend " + spn_ + " did not complete mutual authentication");
    }
    established_ = true;
    return {};
  }

 private:
  std::shared_ptr<UserCred> cred_;  // outlives the context that was built on it
  GssName target_;
  GssContext context_;
  std::string token_;
  std::string spn_;
  bool established_;
};

class GssDelegator final : public Delegator {
 public:
  GssDelegator(DelegationSettings settings, std::vector<krb5_enctype> aes_enctypes)
      : settings_(std::move(settings)),
        aes_enctypes_(std::move(aes_enctypes)),
        realm_(RealmOf(settings_.principal)),
        instance_(g_ccache_sequence.fetch_add(1)) {}

  // Startup check: the KDC must hand the broker a forwardable TGT.
  // A wrong keytab or principal is a configuration error and stops the broker; a KDC that is only
  // away (or a clock that is off) must not: the broker starts, requests get 504/502 with the reason,
  // and the login is retried by the first request after the KDC is back.
  Status Start() {
    Result<std::shared_ptr<BrokerCred>> broker = BrokerCredential();
    if (broker) return {};
    const std::string& code = broker.error().code;
    if (code == "kdc_unreachable" || code == "clock_skew") {
      log::Warn("kerberos_broker_login_deferred",
                {{"reason", code}, {"detail", broker.error().detail},
                 {"hint", "starting anyway; the login is retried at the next request"}});
      return {};
    }
    return std::unexpected(broker.error());
  }

  Result<std::unique_ptr<NegotiateExchange>> Begin(const std::string& user_principal,
                                                   const std::string& spn) override {
    if (user_principal.empty() || spn.empty()) {
      return Fail("kerberos_error", "delegation needs a user principal and an SPN");
    }
    bool cold_user = false;
    Result<std::shared_ptr<UserCred>> cred = UserCredential(user_principal, &cold_user);
    if (!cred) return std::unexpected(cred.error());
    Result<GssName> target = ImportSpn(spn);
    if (!target) return std::unexpected(target.error());

    UserCred& user = **cred;
    // Without a cached service ticket, this context's init does S4U2Proxy; do it once per SPN.
    std::unique_lock proxy_lock(user.proxy_mu, std::defer_lock);
    bool first_for_spn = !user.HasTicketFor(spn);
    if (first_for_spn) {
      proxy_lock.lock();
      first_for_spn = !user.HasTicketFor(spn);
      if (!first_for_spn) proxy_lock.unlock();
    }
    if (first_for_spn) s4u2proxy_.fetch_add(1);

    GssContext context;
    GssBuffer output;
    OM_uint32 minor = 0;
    OM_uint32 flags = 0;
    const auto started = Clock::now();
    const OM_uint32 major = gss_init_sec_context(
        &minor, user.cred.get(), context.out(), target->get(), kerberos::SpnegoOid(),
        GSS_C_MUTUAL_FLAG, GSS_C_INDEFINITE, GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, nullptr,
        output.get(), &flags, nullptr);
    if (GSS_ERROR(major) || output.size() == 0) {
      FailureContext where{.stage = Stage::kS4U2Proxy,
                           .broker_principal = settings_.principal,
                           .user = user_principal,
                           .spn = spn,
                           .evidence_forwardable = user.evidence_forwardable};
      Error error = kerberos::ClassifyFailure(where, kerberos::DisplayGssStatus(major, minor));
      log::Warn("kerberos_s4u2proxy_failed", {{"user", user_principal},
                                              {"spn", spn},
                                              {"reason", error.code},
                                              {"detail", error.detail}});
      return std::unexpected(std::move(error));
    }
    if (first_for_spn) {
      user.MarkTicketFor(spn);
      log::Info("kerberos_s4u2proxy",
                {{"user", user_principal}, {"spn", spn}, {"ms", MillisecondsSince(started)}});
    }
    tokens_.fetch_add(1);
    if (!cold_user && !first_for_spn) cache_hits_.fetch_add(1);
    std::string token = Base64Encode({output.data(), output.size()});
    return std::make_unique<GssNegotiateExchange>(*cred, std::move(*target), std::move(context),
                                                  std::move(token), spn, major == GSS_S_COMPLETE);
  }

  void ForgetUser(const std::string& user_principal) override {
    std::lock_guard lock(mu_);
    slots_.erase(user_principal);
  }

  DelegationStats Stats() const override {
    return DelegationStats{.s4u2self = s4u2self_.load(),
                           .s4u2proxy = s4u2proxy_.load(),
                           .tokens = tokens_.load(),
                           .cache_hits = cache_hits_.load()};
  }

 private:
  static double MillisecondsSince(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }

  // Reuse until `refresh_margin` before the end, but never for less than half the lifetime, so a
  // margin longer than the ticket lifetime does not turn into a KDC exchange per request.
  Clock::time_point RefreshPoint(Clock::time_point now, std::chrono::seconds lifetime) const {
    const std::chrono::seconds reuse = std::max(lifetime - settings_.refresh_margin, lifetime / 2);
    return now + reuse;
  }

  // "HTTP/host" becomes the principal "HTTP/host@REALM" of the broker's realm. Importing it as a
  // krb5 principal (not host-based "HTTP@host") keeps DNS canonicalisation out of the SPN, which
  // must match msDS-AllowedToDelegateTo exactly.
  Result<GssName> ImportSpn(const std::string& spn) const {
    std::string principal = spn;
    if (principal.find('@') == std::string::npos && !realm_.empty()) principal += "@" + realm_;
    return ImportName(principal, const_cast<gss_OID>(GSS_KRB5_NT_PRINCIPAL_NAME), "SPN");
  }

  Result<std::shared_ptr<BrokerCred>> BrokerCredential(bool force = false) {
    {
      std::lock_guard lock(mu_);
      if (broker_ && !force && Clock::now() < broker_->refresh_at) return broker_;
    }
    std::lock_guard refresh(broker_refresh_mu_);
    std::shared_ptr<BrokerCred> current;
    {
      std::lock_guard lock(mu_);
      current = broker_;
      if (current && !force && Clock::now() < current->refresh_at) return current;
    }
    Result<std::shared_ptr<BrokerCred>> fresh = LoginBroker();
    if (!fresh) {
      // A TGT inside its refresh margin still works; keep using it while the KDC is away.
      if (current && !force && Clock::now() < current->expires_at) {
        log::Warn("kerberos_broker_refresh_failed",
                  {{"reason", fresh.error().code}, {"detail", fresh.error().detail}});
        return current;
      }
      return fresh;
    }
    std::lock_guard lock(mu_);
    broker_ = *fresh;
    return broker_;
  }

  // AS exchange from the keytab, done with krb5 directly so the TGT is forwardable whatever
  // krb5.conf says (S4U2Proxy needs it) and the KDC's error code arrives unmangled.
  Result<std::shared_ptr<BrokerCred>> LoginBroker() {
    const FailureContext where{.stage = Stage::kBrokerLogin,
                               .broker_principal = settings_.principal};
    auto broker = std::make_shared<BrokerCred>();
    broker->ccache_name = "MEMORY:orthrus-broker-" + std::to_string(getpid()) + "-" +
                          std::to_string(instance_) + "-" +
                          std::to_string(broker_generation_.fetch_add(1));
    const auto started = Clock::now();
    {
      Krb5Context k;
      if (krb5_error_code code = k.Init()) {
        return Fail("kerberos_error",
                    "krb5_init_context failed (krb5 code " + std::to_string(code) + ")");
      }
      krb5_principal principal = nullptr;
      if (krb5_error_code code =
              krb5_parse_name(k.get(), settings_.principal.c_str(), &principal)) {
        return std::unexpected(kerberos::ClassifyFailure(where, k.Message(code), code));
      }
      ScopeExit free_principal([&] { krb5_free_principal(k.get(), principal); });
      krb5_keytab keytab = nullptr;
      if (krb5_error_code code =
              krb5_kt_resolve(k.get(), KeytabName(settings_.keytab_file).c_str(), &keytab)) {
        return std::unexpected(kerberos::ClassifyFailure(where, k.Message(code), code));
      }
      ScopeExit close_keytab([&] { krb5_kt_close(k.get(), keytab); });
      krb5_ccache ccache = nullptr;
      if (krb5_error_code code = krb5_cc_resolve(k.get(), broker->ccache_name.c_str(), &ccache)) {
        return std::unexpected(kerberos::ClassifyFailure(where, k.Message(code), code));
      }
      ScopeExit close_ccache([&] { krb5_cc_close(k.get(), ccache); });
      krb5_get_init_creds_opt* options = nullptr;
      if (krb5_error_code code = krb5_get_init_creds_opt_alloc(k.get(), &options)) {
        return std::unexpected(kerberos::ClassifyFailure(where, k.Message(code), code));
      }
      ScopeExit free_options([&] { krb5_get_init_creds_opt_free(k.get(), options); });
      krb5_get_init_creds_opt_set_forwardable(options, 1);
      // MIT takes a non-const list but only reads it.
      krb5_get_init_creds_opt_set_etype_list(options,
                                             const_cast<krb5_enctype*>(aes_enctypes_.data()),
                                             static_cast<int>(aes_enctypes_.size()));
      if (krb5_error_code code = krb5_get_init_creds_opt_set_out_ccache(k.get(), options, ccache)) {
        return std::unexpected(kerberos::ClassifyFailure(where, k.Message(code), code));
      }
      krb5_creds creds = {};
      if (krb5_error_code code =
              krb5_get_init_creds_keytab(k.get(), &creds, principal, keytab, 0, nullptr, options)) {
        Error error = kerberos::ClassifyFailure(where, k.Message(code), code);
        log::Error("kerberos_broker_login_failed", {{"principal", settings_.principal},
                                                    {"reason", error.code},
                                                    {"detail", error.detail},
                                                    {"ms", MillisecondsSince(started)}});
        return std::unexpected(std::move(error));
      }
      const bool forwardable = (creds.ticket_flags & TKT_FLG_FORWARDABLE) != 0;
      const auto lifetime = std::chrono::seconds(
          std::max<int64_t>(0, static_cast<int64_t>(creds.times.endtime) - time(nullptr)));
      krb5_free_cred_contents(k.get(), &creds);
      if (!forwardable) {
        return Fail("kerberos_error",
                    "the KDC issued a non-forwardable TGT to " + settings_.principal +
                        ", so S4U2Proxy cannot work: check the account is not marked \"sensitive "
                        "and cannot be delegated\"");
      }
      const auto now = Clock::now();
      broker->expires_at = now + lifetime;
      broker->refresh_at = RefreshPoint(now, lifetime);
    }

    // The GSS credential reads the TGT from that ccache; the keytab is named too so that MIT can
    // renew it by itself should the broker ever miss its refresh point.
    Result<GssName> name = ImportName(
        settings_.principal, const_cast<gss_OID>(GSS_KRB5_NT_PRINCIPAL_NAME), "broker principal");
    if (!name) return std::unexpected(name.error());
    const std::string keytab = KeytabName(settings_.keytab_file);
    gss_key_value_element_desc elements[] = {{"client_keytab", keytab.c_str()},
                                             {"ccache", broker->ccache_name.c_str()}};
    gss_key_value_set_desc store = {2, elements};
    OM_uint32 minor = 0;
    const OM_uint32 major =
        gss_acquire_cred_from(&minor, name->get(), GSS_C_INDEFINITE, kerberos::SpnegoOnly(),
                              GSS_C_INITIATE, &store, broker->cred.out(), nullptr, nullptr);
    if (GSS_ERROR(major)) {
      return std::unexpected(
          kerberos::ClassifyFailure(where, kerberos::DisplayGssStatus(major, minor)));
    }
    log::Info("kerberos_broker_login",
              {{"principal", settings_.principal}, {"ms", MillisecondsSince(started)}});
    return broker;
  }

  // Reads the S4U2Self evidence ticket's flags from the impersonated credential's ccache.
  std::optional<bool> EvidenceForwardable(gss_cred_id_t cred) const {
    Krb5Context k;
    if (k.Init() != 0) return std::nullopt;
    krb5_ccache copy = nullptr;
    if (krb5_cc_new_unique(k.get(), "MEMORY", nullptr, &copy) != 0) return std::nullopt;
    ScopeExit destroy_copy([&] { krb5_cc_destroy(k.get(), copy); });
    OM_uint32 minor = 0;
    if (GSS_ERROR(gss_krb5_copy_ccache(&minor, cred, copy))) return std::nullopt;
    krb5_principal broker = nullptr;
    if (krb5_parse_name(k.get(), settings_.principal.c_str(), &broker) != 0) return std::nullopt;
    ScopeExit free_broker([&] { krb5_free_principal(k.get(), broker); });

    std::optional<bool> forwardable;
    krb5_cc_cursor cursor;
    if (krb5_cc_start_seq_get(k.get(), copy, &cursor) != 0) return std::nullopt;
    krb5_creds creds;
    while (krb5_cc_next_cred(k.get(), copy, &cursor, &creds) == 0) {
      // The evidence ticket is the user's ticket to the broker itself.
      if (!krb5_is_config_principal(k.get(), creds.server) &&
          krb5_principal_compare(k.get(), creds.server, broker)) {
        forwardable = (creds.ticket_flags & TKT_FLG_FORWARDABLE) != 0;
      }
      krb5_free_cred_contents(k.get(), &creds);
    }
    krb5_cc_end_seq_get(k.get(), copy, &cursor);
    return forwardable;
  }

  // S4U2Self. Retried once with a fresh broker TGT if the KDC says the current one expired.
  Result<std::shared_ptr<UserCred>> Impersonate(const std::string& user_principal) {
    const FailureContext where{
        .stage = Stage::kS4U2Self, .broker_principal = settings_.principal, .user = user_principal};
    Result<GssName> name = ImportName(user_principal, GSS_C_NT_USER_NAME, "user principal");
    if (!name) return std::unexpected(name.error());
    for (int attempt = 0;; ++attempt) {
      Result<std::shared_ptr<BrokerCred>> broker = BrokerCredential(attempt > 0);
      if (!broker) return std::unexpected(broker.error());
      auto user = std::make_shared<UserCred>();
      OM_uint32 minor = 0;
      const auto started = Clock::now();
      s4u2self_.fetch_add(1);
      const OM_uint32 major = gss_acquire_cred_impersonate_name(
          &minor, (*broker)->cred.get(), name->get(), GSS_C_INDEFINITE, kerberos::SpnegoOnly(),
          GSS_C_INITIATE, user->cred.out(), nullptr, nullptr);
      if (GSS_ERROR(major)) {
        const std::string text = kerberos::DisplayGssStatus(major, minor);
        if (attempt == 0 && kerberos::Krb5CodeFromText(text) == KRB5KRB_AP_ERR_TKT_EXPIRED)
          continue;
        Error error = kerberos::ClassifyFailure(where, text);
        log::Warn("kerberos_s4u2self_failed", {{"user", user_principal},
                                               {"reason", error.code},
                                               {"detail", error.detail},
                                               {"ms", MillisecondsSince(started)}});
        return std::unexpected(std::move(error));
      }
      OM_uint32 lifetime = 0;
      if (GSS_ERROR(
              gss_inquire_cred(&minor, user->cred.get(), nullptr, &lifetime, nullptr, nullptr))) {
        lifetime = 0;
      }
      user->refresh_at = RefreshPoint(Clock::now(), std::chrono::seconds(lifetime));
      user->evidence_forwardable = EvidenceForwardable(user->cred.get());
      log::Info("kerberos_s4u2self", {{"user", user_principal},
                                      {"lifetime_s", static_cast<uint64_t>(lifetime)},
                                      {"forwardable", user->evidence_forwardable.value_or(false)},
                                      {"ms", MillisecondsSince(started)}});
      return user;
    }
  }

  Result<std::shared_ptr<UserCred>> UserCredential(const std::string& user_principal, bool* cold) {
    std::shared_ptr<UserSlot> slot;
    uint64_t attempts_seen = 0;
    {
      std::lock_guard lock(mu_);
      std::shared_ptr<UserSlot>& entry = slots_[user_principal];
      if (!entry) entry = std::make_shared<UserSlot>();
      slot = entry;
      if (slot->cred && Clock::now() < slot->cred->refresh_at) return slot->cred;
      attempts_seen = slot->attempts;
    }
    // The KDC exchange runs without mu_, so other users are not held up.
    std::lock_guard acquire(slot->acquire_mu);
    {
      std::lock_guard lock(mu_);
      if (slot->cred && Clock::now() < slot->cred->refresh_at) return slot->cred;
      // Whoever held acquire_mu just failed for this user: share that answer, not another round
      // trip.
      if (slot->attempts != attempts_seen && slot->last_failure) {
        return std::unexpected(*slot->last_failure);
      }
    }
    *cold = true;
    Result<std::shared_ptr<UserCred>> fresh = Impersonate(user_principal);
    std::lock_guard lock(mu_);
    ++slot->attempts;
    if (fresh) {
      slot->cred = *fresh;
      slot->last_failure.reset();
    } else {
      slot->last_failure = fresh.error();
      // Unknown names must not pile up slots; the waiters hold their own reference.
      auto it = slots_.find(user_principal);
      if (it != slots_.end() && it->second == slot && !slot->cred) slots_.erase(it);
    }
    return fresh;
  }

  const DelegationSettings settings_;
  const std::vector<krb5_enctype> aes_enctypes_;
  const std::string realm_;
  const uint64_t instance_;
  std::atomic<uint64_t> broker_generation_{0};

  std::mutex broker_refresh_mu_;  // one broker login at a time
  mutable std::mutex mu_;         // guards broker_, slots_ and the slots' fields
  std::shared_ptr<BrokerCred> broker_;
  std::map<std::string, std::shared_ptr<UserSlot>> slots_;

  std::atomic<uint64_t> s4u2self_{0};
  std::atomic<uint64_t> s4u2proxy_{0};
  std::atomic<uint64_t> tokens_{0};
  std::atomic<uint64_t> cache_hits_{0};
};

}  // namespace

Result<std::unique_ptr<Delegator>> MakeGssDelegator(const DelegationSettings& settings) {
  if (settings.keytab_file.empty() || settings.principal.empty()) {
    return Fail("kerberos_error", "delegation needs a keytab file and a broker principal");
  }
  Result<std::vector<krb5_enctype>> aes = CheckKeytab(settings);
  if (!aes) return std::unexpected(aes.error());
  auto delegator = std::make_unique<GssDelegator>(settings, std::move(*aes));
  ORTHRUS_TRY(delegator->Start());
  return std::unique_ptr<Delegator>(std::move(delegator));
}

}  // namespace orthrus::broker
