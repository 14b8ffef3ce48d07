#pragma once
// The pure half of the directory: what a certificate offers to each mapping rule and the LDAP
// filter that looks it up. No I/O, so the unit tests cover it without a domain.
#include <optional>
#include <string>
#include <string_view>

#include "broker/directory/directory.h"
#include "common/result.h"
#include "common/tls/x509_identity.h"

namespace orthrus::broker::directory_internal {

inline constexpr std::string_view kSidExtensionOid = "1.3.6.1.4.1.311.25.2";
inline constexpr std::string_view kSidOtherNameOid = "1.3.6.1.4.1.311.25.2.1";

// What the leaf DER says beyond CertIdentity. Empty strings mean "the certificate has none".
struct LeafFacts {
  std::string issuer_x500;   // "DC=test,DC=corp,CN=Corp CA": encoding order, RFC 4514 escaping
  std::string subject_x500;
  std::string serial_reversed_hex;  // INTEGER content octets reversed (CERT_INFO.SerialNumber)
  std::string ski_hex;
  std::string sha1_pukey_hex;
  std::optional<std::string> sid;   // "S-1-5-21-..." from extension 1.3.6.1.4.1.311.25.2
};

// Parses chain_der[0]. A certificate without DER yields facts derived from the RFC 2253 strings
// only (no SKI, public key or SID). A malformed SID extension is an error, never "absent":
// a strong-mapping claim that cannot be read must not silently degrade to a weaker rule.
Result<LeafFacts> ReadLeafFacts(const tls::CertIdentity& certificate);

// The value of extension 1.3.6.1.4.1.311.25.2 (DER of a GeneralNames holding exactly one
// otherName 1.3.6.1.4.1.311.25.2.1 whose value is an OCTET STRING with the SID text).
Result<std::string> ParseSidExtension(std::string_view extension_value_der);

// "S-1-5-21-1-2-3-1104" <-> the binary SID form objectSid holds.
Result<std::string> SidTextToBinary(std::string_view sid);
Result<std::string> SidBinaryToText(std::string_view binary);

// RFC 2253 "CN=x,O=y" (last RDN first) -> "O=y,CN=x", keeping escapes and multi-valued RDNs.
std::string ReverseRdnOrder(std::string_view rfc2253);

// Big-endian serial hex (as CertIdentity has it) -> AD's reversed <SR> form, with the sign octet
// DER adds when the top bit is set.
std::string ReverseSerialHex(std::string_view serial_hex);

// Escapes with libldap's ldap_bv2escaped_filter_value.
std::string EscapeFilterValue(std::string_view raw);

// The complete search filter for `kind`, or nullopt when the certificate has nothing for that rule.
std::optional<std::string> BuildFilter(MappingKind kind, const tls::CertIdentity& certificate,
                                       const LeafFacts& facts);

}  // namespace orthrus::broker::directory_internal
