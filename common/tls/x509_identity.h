#pragma once
// What a verified device certificate says about its holder, extracted once per TLS connection on the
// edge and re-derived from the forwarded chain on the broker.
#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace orthrus::tls {

inline constexpr std::string_view kUpnOid = "1.3.6.1.4.1.311.20.2.3";

struct CertIdentity {
  std::string subject;     // RFC 2253, e.g. "CN=alice,O=Corp"
  std::string issuer;
  std::string serial_hex;  // lower-case, big-endian, no leading zero octets
  std::vector<std::string> dns;
  std::vector<std::string> rfc822;
  std::vector<std::string> uri;
  std::vector<std::string> ip;
  std::vector<std::string> upn;
  std::string cert_sha256;  // 32 raw bytes
  std::string spki_sha256;  // 32 raw bytes
  int64_t not_before_unix = 0;
  int64_t not_after_unix = 0;
  std::vector<std::string> chain_der;  // leaf first

  bool operator==(const CertIdentity&) const = default;
};

// Extracts everything but chain_der. Refuses names that cannot be represented safely (embedded NUL,
// invalid UTF-8 in a UPN, an otherName UPN that is not a UTF8String): such a certificate is refused,
// never half-read.
Result<CertIdentity> ExtractIdentity(X509* cert);

// Parses one DER certificate (untrusted bytes) and extracts its identity.
Result<CertIdentity> ExtractIdentityFromDer(std::string_view der);

Result<std::string> ToDer(X509* cert);
std::string Sha256(std::string_view data);
std::string HexLower(std::string_view bytes);

}  // namespace orthrus::tls
