#include "broker/directory/broker_credential.h"

#include <gssapi/gssapi_krb5.h>

#include <algorithm>

#include "common/log.h"

namespace orthrus::broker::directory_internal {

std::string BrokerCredential::KrbMessage(krb5_error_code code) const {
  const char* message = krb5_get_error_message(context_, code);
  std::string text = message != nullptr ? message : ("krb5 error " + std::to_string(code));
  krb5_free_error_message(context_, message);
  return text;
}

Result<std::unique_ptr<BrokerCredential>> BrokerCredential::Make(const std::string& keytab_file,
                                                                  const std::string& principal) {
  std::unique_ptr<BrokerCredential> cred(new BrokerCredential());
  if (krb5_error_code code = krb5_init_context(&cred->context_); code != 0) {
    return Fail("directory_config_invalid", "krb5_init_context failed: " + std::to_string(code));
  }
  if (krb5_error_code code = krb5_parse_name(cred->context_, principal.c_str(), &cred->client_);
      code != 0) {
    return Fail("directory_config_invalid",
                "bad principal \"" + principal + "\": " + cred->KrbMessage(code));
  }
  // A "FILE:" prefix keeps a path with a colon from being read as a keytab type.
  std::string keytab_name = keytab_file.find(':') == std::string::npos || keytab_file.starts_with("/")
                                ? "FILE:" + keytab_file
                                : keytab_file;
  if (krb5_error_code code = krb5_kt_resolve(cred->context_, keytab_name.c_str(), &cred->keytab_);
      code != 0) {
    return Fail("directory_config_invalid",
                "cannot open keytab " + keytab_file + ": " + cred->KrbMessage(code));
  }
  cred->principal_text_ = principal;
  return cred;
}

BrokerCredential::~BrokerCredential() {
  if (context_ == nullptr) return;
  if (ccache_ != nullptr) krb5_cc_destroy(context_, ccache_);
  if (keytab_ != nullptr) krb5_kt_close(context_, keytab_);
  if (client_ != nullptr) krb5_free_principal(context_, client_);
  krb5_free_context(context_);
}

Result<bool> BrokerCredential::EnsureFresh() {
  std::time_t now = std::time(nullptr);
  if (ccache_ != nullptr) {
    // Renew with a quarter of the lifetime left (at most 5 minutes before expiry), so a bind
    // never starts with a ticket that dies mid-session.
    std::time_t margin = std::min<std::time_t>(300, (end_time_ - start_time_) / 4);
    if (now < end_time_ - margin) return false;
  }
  krb5_ccache fresh = nullptr;
  if (krb5_error_code code = krb5_cc_new_unique(context_, "MEMORY", nullptr, &fresh); code != 0) {
    return Fail("directory_unavailable", "cannot create MEMORY ccache: " + KrbMessage(code));
  }
  krb5_get_init_creds_opt* options = nullptr;
  if (krb5_error_code code = krb5_get_init_creds_opt_alloc(context_, &options); code != 0) {
    krb5_cc_destroy(context_, fresh);
    return Fail("directory_unavailable", "krb5_get_init_creds_opt_alloc: " + KrbMessage(code));
  }
  krb5_get_init_creds_opt_set_out_ccache(context_, options, fresh);
  krb5_creds creds{};
  krb5_error_code code =
      krb5_get_init_creds_keytab(context_, &creds, client_, keytab_, 0, nullptr, options);
  krb5_get_init_creds_opt_free(context_, options);
  if (code != 0) {
    krb5_cc_destroy(context_, fresh);
    return Fail("directory_unavailable",
                "cannot get a TGT for " + principal_text_ + " from its keytab: " + KrbMessage(code));
  }
  start_time_ = creds.times.starttime != 0 ? creds.times.starttime : creds.times.authtime;
  end_time_ = creds.times.endtime;
  krb5_free_cred_contents(context_, &creds);
  if (ccache_ != nullptr) krb5_cc_destroy(context_, ccache_);
  ccache_ = fresh;
  ccache_name_ = std::string(krb5_cc_get_type(context_, ccache_)) + ":" +
                 krb5_cc_get_name(context_, ccache_);
  log::Info("directory_tgt_acquired", {{"principal", principal_text_},
                                       {"expires_in_s", static_cast<int64_t>(end_time_ - now)}});
  return true;
}

ScopedThreadCcache::ScopedThreadCcache(const std::string& ccache_name) {
  OM_uint32 minor = 0;
  const char* previous = nullptr;
  ok_ = gss_krb5_ccache_name(&minor, ccache_name.c_str(), &previous) == GSS_S_COMPLETE;
  // The returned pointer is only valid until the next call, so keep a copy.
  if (ok_ && previous != nullptr) {
    had_previous_ = true;
    previous_ = previous;
  }
}

ScopedThreadCcache::~ScopedThreadCcache() {
  if (!ok_) return;
  OM_uint32 minor = 0;
  gss_krb5_ccache_name(&minor, had_previous_ ? previous_.c_str() : nullptr, nullptr);
}

}  // namespace orthrus::broker::directory_internal
