#include "broker/kerberos/password_checker.h"

#include <krb5.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <atomic>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace orthrus::broker {
namespace {

using Clock = std::chrono::steady_clock;

std::string Krb5Message(krb5_context ctx, krb5_error_code code) {
  const char* msg = krb5_get_error_message(ctx, code);
  std::string out = msg ? msg : "krb5 error " + std::to_string(code);
  krb5_free_error_message(ctx, msg);
  return out;
}

Error ClassifyAsFailure(krb5_context ctx, krb5_error_code code, const std::string& who) {
  std::string text = who + ": " + Krb5Message(ctx, code);
  switch (code) {
    case KRB5KDC_ERR_PREAUTH_FAILED:
    case KRB5KRB_AP_ERR_BAD_INTEGRITY:
      return {"password_wrong", text};
    case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
      return {"password_unknown_user", text};
    case KRB5KDC_ERR_KEY_EXP:
      return {"password_expired", text};
    case KRB5KDC_ERR_CLIENT_REVOKED:
      // AD answers this for disabled, locked-out and expired accounts alike; the NTSTATUS that
      // tells them apart is in e-data that MIT's API does not return.
      return {"account_disabled", text + " (the account is disabled, locked out or expired)"};
    case KRB5_KDC_UNREACH:
    case KRB5_REALM_UNKNOWN:
    case KRB5_REALM_CANT_RESOLVE:
      return {"kdc_unreachable", text};
    case KRB5KRB_AP_ERR_SKEW:
    case KRB5_KDCREP_SKEW:
      return {"clock_skew", text};
    case KRB5KDC_ERR_ETYPE_NOSUPP:
      return {"kerberos_weak_crypto", text};
    default:
      return {"kerberos_error", text};
  }
}

struct Krb5Context {
  krb5_context ctx = nullptr;
  ~Krb5Context() {
    if (ctx) krb5_free_context(ctx);
  }
};

class KdcPasswordChecker final : public PasswordChecker {
 public:
  explicit KdcPasswordChecker(PasswordCheckSettings s) : s_(std::move(s)) {
    RAND_bytes(cache_key_.data(), static_cast<int>(cache_key_.size()));
  }

  Result<std::string> Check(const std::string& username, const std::string& password) override {
    if (auto hit = FromCache(username, password)) {
      cache_hits_.fetch_add(1);
      return *hit;
    }
    kdc_checks_.fetch_add(1);
    auto checked = AskKdc(username, password);
    if (!checked) {
      failures_.fetch_add(1);
      Forget(username);  // a changed password must not keep working from the cache
      return checked;
    }
    Remember(username, password, *checked);
    return checked;
  }

  PasswordCheckStats Stats() const override {
    return {kdc_checks_.load(), cache_hits_.load(), failures_.load()};
  }

 private:
  struct Entry {
    std::array<unsigned char, 16> salt;
    std::array<unsigned char, 32> mac;
    std::string principal;
    Clock::time_point expires;
  };

  // Keyed with a per-process secret and salted per entry: a memory dump yields no offline-guessable
  // hash of a password without also the key, and equal passwords give different entries.
  std::array<unsigned char, 32> Mac(const std::array<unsigned char, 16>& salt,
                                    const std::string& username, const std::string& password) const {
    std::string data(reinterpret_cast<const char*>(salt.data()), salt.size());
    data += username;
    data.push_back('\0');
    data += password;
    std::array<unsigned char, 32> out{};
    unsigned len = 0;
    HMAC(EVP_sha256(), cache_key_.data(), static_cast<int>(cache_key_.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
    OPENSSL_cleanse(data.data(), data.size());
    return out;
  }

  std::optional<std::string> FromCache(const std::string& username, const std::string& password) {
    if (s_.cache_ttl.count() == 0) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto it = cache_.find(username);
    if (it == cache_.end()) return std::nullopt;
    if (it->second.expires <= Clock::now()) {
      cache_.erase(it);
      return std::nullopt;
    }
    auto mac = Mac(it->second.salt, username, password);
    if (CRYPTO_memcmp(mac.data(), it->second.mac.data(), mac.size()) != 0) return std::nullopt;
    return it->second.principal;
  }

  void Remember(const std::string& username, const std::string& password,
                const std::string& principal) {
    if (s_.cache_ttl.count() == 0) return;
    Entry e;
    RAND_bytes(e.salt.data(), static_cast<int>(e.salt.size()));
    e.mac = Mac(e.salt, username, password);
    e.principal = principal;
    e.expires = Clock::now() + s_.cache_ttl;
    std::lock_guard lock(mutex_);
    if (cache_.size() >= s_.cache_entries) {
      auto now = Clock::now();
      std::erase_if(cache_, [now](const auto& kv) { return kv.second.expires <= now; });
      if (cache_.size() >= s_.cache_entries) cache_.erase(cache_.begin());
    }
    cache_[username] = std::move(e);
  }

  void Forget(const std::string& username) {
    std::lock_guard lock(mutex_);
    cache_.erase(username);
  }

  Result<krb5_principal> ParseUser(krb5_context ctx, const std::string& username) const {
    std::string name = username;
    int flags = 0;
    if (auto slash = name.find('\\'); slash != std::string::npos) {
      name = name.substr(slash + 1) + "@" + s_.realm;  // DOMAIN\user
    } else if (name.find('@') != std::string::npos) {
      flags = KRB5_PRINCIPAL_PARSE_ENTERPRISE;  // a UPN; its suffix need not be the realm
    } else {
      name += "@" + s_.realm;
    }
    if (name.find('/') != std::string::npos) {
      // "krbtgt/..." or "HTTP/host" are service names, not people.
      return Fail("password_unknown_user", "'" + username + "' is not a user name");
    }
    krb5_principal principal = nullptr;
    if (krb5_error_code code = krb5_parse_name_flags(ctx, name.c_str(), flags, &principal)) {
      return Fail("password_unknown_user", "'" + username + "': " + Krb5Message(ctx, code));
    }
    if (flags == KRB5_PRINCIPAL_PARSE_ENTERPRISE) {
      // Enterprise names are sent in the broker's realm; the KDC refers or resolves them.
      krb5_set_principal_realm(ctx, principal, s_.realm.c_str());
    }
    return principal;
  }

  Result<std::string> AskKdc(const std::string& username, const std::string& password) const {
    Krb5Context k;
    if (krb5_error_code code = krb5_init_context(&k.ctx)) {
      return Fail("kerberos_error", "krb5_init_context failed: " + std::to_string(code));
    }
    ORTHRUS_ASSIGN_OR_RETURN(krb5_principal client, ParseUser(k.ctx, username));
    krb5_get_init_creds_opt* opt = nullptr;
    krb5_get_init_creds_opt_alloc(k.ctx, &opt);
    krb5_get_init_creds_opt_set_canonicalize(opt, 1);
    krb5_get_init_creds_opt_set_forwardable(opt, 0);
    krb5_get_init_creds_opt_set_proxiable(opt, 0);
    krb5_get_init_creds_opt_set_tkt_life(opt, 600);  // only verified, never used for anything
    krb5_creds creds{};
    krb5_error_code code = krb5_get_init_creds_password(k.ctx, &creds, client, password.c_str(),
                                                        nullptr, nullptr, 0, nullptr, opt);
    krb5_get_init_creds_opt_free(k.ctx, opt);
    krb5_free_principal(k.ctx, client);
    if (code) return std::unexpected(ClassifyAsFailure(k.ctx, code, username));

    Result<std::string> out = Verify(k.ctx, creds, username);
    krb5_free_cred_contents(k.ctx, &creds);
    return out;
  }

  // A reply that decrypts with the password proves nothing if the "KDC" was an attacker who chose
  // the password: make the user's TGT buy a ticket to the broker itself and decrypt it with the
  // keytab (krb5_verify_init_creds, as pam_krb5 does).
  Result<std::string> Verify(krb5_context ctx, krb5_creds& creds, const std::string& username) const {
    krb5_keytab keytab = nullptr;
    std::string kt = "FILE:" + s_.keytab_file;
    if (krb5_error_code code = krb5_kt_resolve(ctx, kt.c_str(), &keytab)) {
      return Fail("kerberos_error", "keytab " + s_.keytab_file + ": " + Krb5Message(ctx, code));
    }
    krb5_principal server = nullptr;
    krb5_error_code code = krb5_parse_name(ctx, s_.verify_principal.c_str(), &server);
    if (code == 0) {
      krb5_verify_init_creds_opt vopt;
      krb5_verify_init_creds_opt_init(&vopt);
      krb5_verify_init_creds_opt_set_ap_req_nofail(&vopt, 1);
      code = krb5_verify_init_creds(ctx, &creds, server, keytab, nullptr, &vopt);
    }
    krb5_kt_close(ctx, keytab);
    if (server) krb5_free_principal(ctx, server);
    if (code) {
      Error e = ClassifyAsFailure(ctx, code, username);
      if (e.code == "kerberos_error" || e.code == "password_wrong") {
        e = {"kerberos_error", "the KDC's answer for " + username + " could not be verified with " +
                                   s_.verify_principal + " from " + s_.keytab_file + ": " +
                                   Krb5Message(ctx, code)};
      }
      return std::unexpected(std::move(e));
    }
    char* name = nullptr;
    if (krb5_unparse_name(ctx, creds.client, &name) != 0) {
      return Fail("kerberos_error", "cannot print the principal of " + username);
    }
    std::string principal = name;
    krb5_free_unparsed_name(ctx, name);
    return principal;
  }

  const PasswordCheckSettings s_;
  std::array<unsigned char, 32> cache_key_{};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> cache_;
  std::atomic<uint64_t> kdc_checks_{0}, cache_hits_{0}, failures_{0};
};

}  // namespace

Result<std::unique_ptr<PasswordChecker>> MakeKdcPasswordChecker(const PasswordCheckSettings& s) {
  if (s.realm.empty() || s.keytab_file.empty() || s.verify_principal.empty()) {
    return Fail("config_invalid_value", "password checks need a realm, a keytab and a principal");
  }
  return std::unique_ptr<PasswordChecker>(new KdcPasswordChecker(s));
}

}  // namespace orthrus::broker
