#pragma once
// The broker's own Kerberos identity for the LDAP bind, kept in a private MEMORY ccache. Nothing
// goes into the process environment: a default credential (KRB5_CLIENT_KTNAME, KRB5CCNAME) would
// let any other GSSAPI caller in the process, e.g. SPNEGO to a backend, authenticate as the broker.
#include <krb5.h>

#include <ctime>
#include <memory>
#include <string>

#include "common/result.h"

namespace orthrus::broker::directory_internal {

// Not thread-safe: the directory uses it under its connection mutex.
class BrokerCredential {
 public:
  static Result<std::unique_ptr<BrokerCredential>> Make(const std::string& keytab_file,
                                                        const std::string& principal);
  ~BrokerCredential();
  BrokerCredential(const BrokerCredential&) = delete;
  BrokerCredential& operator=(const BrokerCredential&) = delete;

  // Gets a TGT when there is none or the current one is close to expiry. Returns true when it got a
  // new one: the caller then rebinds, because AD ends LDAP sessions whose ticket has expired.
  Result<bool> EnsureFresh();
  // "MEMORY:..." of the current TGT; valid after EnsureFresh succeeded.
  const std::string& ccache_name() const { return ccache_name_; }
  std::time_t expires() const { return end_time_; }

 private:
  BrokerCredential() = default;
  std::string KrbMessage(krb5_error_code code) const;

  krb5_context context_ = nullptr;
  krb5_principal client_ = nullptr;
  krb5_keytab keytab_ = nullptr;
  krb5_ccache ccache_ = nullptr;
  std::string ccache_name_;
  std::string principal_text_;
  std::time_t start_time_ = 0;
  std::time_t end_time_ = 0;
};

// Points the calling thread's default GSSAPI ccache (what Cyrus SASL's GSSAPI plugin uses) at
// `ccache_name` for the guard's lifetime, then restores the previous thread setting.
class ScopedThreadCcache {
 public:
  explicit ScopedThreadCcache(const std::string& ccache_name);
  ~ScopedThreadCcache();
  ScopedThreadCcache(const ScopedThreadCcache&) = delete;
  ScopedThreadCcache& operator=(const ScopedThreadCcache&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
  bool had_previous_ = false;
  std::string previous_;
};

}  // namespace orthrus::broker::directory_internal
