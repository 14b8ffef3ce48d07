#pragma once
// Certificate -> Active Directory account, over LDAP. The KDC never sees the device certificate
// (S4U2Self is by name), so the broker enforces Microsoft's strong-mapping rules (KB5014754) itself:
// weak rules are off unless explicitly enabled.
//
// Every call may block on LDAP: run it on the worker pool, never on an event loop.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/tls/x509_identity.h"

namespace orthrus::broker {

enum class MappingKind {
  kAltSecIssuerSerial,   // strong: altSecurityIdentities "X509:<I>issuer<SR>serial (reversed bytes)"
  kAltSecSki,            // strong: "X509:<SKI>hex of subjectKeyIdentifier"
  kAltSecSha1PublicKey,  // strong: "X509:<SHA1-PUKEY>hex of SHA-1 of the public key"
  kSidExtension,         // strong: certificate extension 1.3.6.1.4.1.311.25.2 == objectSid
  kUpn,                  // weak:   SAN otherName UPN == userPrincipalName
  kRfc822,               // weak:   SAN RFC822 == mail
  kAltSecIssuerSubject,  // weak:   "X509:<I>issuer<S>subject"
};

bool IsStrong(MappingKind kind);
std::string_view MappingName(MappingKind kind);  // "altsec-issuer-serial", "upn", ...
Result<MappingKind> ParseMapping(std::string_view name);

struct DirectorySettings {
  std::string uri;                // "ldap://dc1.corp.test" (SASL/GSSAPI, sealed) or "ldaps://..."
  std::string base_dn;            // "DC=corp,DC=test"
  bool start_tls = false;         // for ldap:// with simple bind
  std::string ca_file;            // for ldaps:// / StartTLS
  std::string bind_dn;            // simple bind over TLS only; empty = SASL/GSSAPI with the keytab
  std::string bind_password_file;
  std::string keytab_file;        // for SASL/GSSAPI: the broker's keytab
  std::string principal;          // for SASL/GSSAPI: "svc-broker@CORP.TEST"
  std::string realm;              // "CORP.TEST": Kerberos principal = sAMAccountName@realm
  std::vector<MappingKind> rules; // tried in order; first rule with a match decides
  std::chrono::milliseconds timeout{5000};
  std::chrono::seconds cache_ttl{300};
  std::chrono::seconds negative_cache_ttl{60};
  // Called (on the searching thread) with the principal of an account found disabled, locked out
  // or not delegable, so whatever is cached for it elsewhere (delegated credentials) is dropped.
  std::function<void(const std::string& principal)> on_unusable_account;
};

struct Account {
  std::string dn;
  std::string sam_account_name;
  std::string user_principal_name;
  std::string kerberos_principal;  // sAMAccountName@REALM: what S4U2Self impersonates
  std::string object_sid;          // "S-1-5-21-..."
  uint32_t user_account_control = 0;
  MappingKind matched_by = MappingKind::kAltSecIssuerSerial;
};

struct DirectoryStats {
  uint64_t searches = 0;
  uint64_t cache_hits = 0;
  uint64_t negative_cache_hits = 0;
};

class Directory {
 public:
  virtual ~Directory() = default;
  // Error codes (reason names): account_not_found, account_ambiguous, account_disabled,
  // account_locked, account_not_delegable, directory_unavailable. Never a wrong account: an LDAP
  // failure is directory_unavailable, not "not found".
  virtual Result<Account> MapCertificate(const tls::CertIdentity& certificate) = 0;
  virtual DirectoryStats Stats() const = 0;
};

Result<std::unique_ptr<Directory>> MakeLdapDirectory(const DirectorySettings& settings);

// The altSecurityIdentities value AD expects for the issuer+serial mapping of `certificate`:
// issuer DN in X.500 order ("DC=test,DC=corp,CN=Corp CA"), serial bytes reversed, hex.
std::string AltSecIssuerSerial(const tls::CertIdentity& certificate);

}  // namespace orthrus::broker
