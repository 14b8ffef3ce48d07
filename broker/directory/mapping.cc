#include "broker/directory/mapping.h"

#include <ldap.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/tls/openssl_handles.h"

namespace orthrus::broker {

bool IsStrong(MappingKind kind) {
  switch (kind) {
    case MappingKind::kAltSecIssuerSerial:
    case MappingKind::kAltSecSki:
    case MappingKind::kAltSecSha1PublicKey:
    case MappingKind::kSidExtension:
      return true;
    case MappingKind::kUpn:
    case MappingKind::kRfc822:
    case MappingKind::kAltSecIssuerSubject:
      return false;
  }
  return false;
}

namespace {

struct MappingNameEntry {
  MappingKind kind;
  std::string_view name;
};

constexpr std::array<MappingNameEntry, 7> kMappingNames = {{
    {MappingKind::kAltSecIssuerSerial, "altsec-issuer-serial"},
    {MappingKind::kAltSecSki, "altsec-ski"},
    {MappingKind::kAltSecSha1PublicKey, "altsec-sha1-pukey"},
    {MappingKind::kSidExtension, "sid-extension"},
    {MappingKind::kUpn, "upn"},
    {MappingKind::kRfc822, "rfc822"},
    {MappingKind::kAltSecIssuerSubject, "altsec-issuer-subject"},
}};

}  // namespace

std::string_view MappingName(MappingKind kind) {
  for (const auto& entry : kMappingNames) {
    if (entry.kind == kind) return entry.name;
  }
  return "unknown";
}

Result<MappingKind> ParseMapping(std::string_view name) {
  for (const auto& entry : kMappingNames) {
    if (entry.name == name) return entry.kind;
  }
  std::string known;
  for (const auto& entry : kMappingNames) {
    if (!known.empty()) known += ", ";
    known += entry.name;
  }
  return Fail("config_invalid_mapping",
              "unknown mapping rule \"" + std::string(name) + "\" (known: " + known + ")");
}

std::string AltSecIssuerSerial(const tls::CertIdentity& certificate) {
  auto facts = directory_internal::ReadLeafFacts(certificate);
  std::string issuer;
  std::string serial;
  if (facts) {
    issuer = facts->issuer_x500;
    serial = facts->serial_reversed_hex;
  } else {
    // Only the SID extension can make ReadLeafFacts fail; the issuer and serial are still sound.
    issuer = directory_internal::ReverseRdnOrder(certificate.issuer);
    serial = directory_internal::ReverseSerialHex(certificate.serial_hex);
  }
  return "X509:<I>" + issuer + "<SR>" + serial;
}

namespace directory_internal {
namespace {

using Asn1ObjectPtr = std::unique_ptr<ASN1_OBJECT, tls::Deleter<ASN1_OBJECT_free>>;

constexpr unsigned long kX500NameFlags = (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) & ~XN_FLAG_DN_REV;

Result<std::string> PrintName(const X509_NAME* name) {
  tls::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, kX500NameFlags) < 0) {
    return Fail("client_certificate_malformed", "cannot print distinguished name");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string Hex(const unsigned char* data, size_t len) {
  return tls::HexLower(std::string_view(reinterpret_cast<const char*>(data), len));
}

// CERT_INFO.SerialNumber, which AD's <SR> spells out, is the INTEGER's content octets in
// little-endian order, so the DER sign octet (00 before a high bit) is part of it.
Result<std::string> SerialReversedHex(const X509* cert) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  int der_len = i2d_ASN1_INTEGER(serial, nullptr);
  if (der_len <= 2) return Fail("client_certificate_malformed", "cannot encode serial number");
  std::string der(static_cast<size_t>(der_len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ASN1_INTEGER(serial, &out) != der_len) {
    return Fail("client_certificate_malformed", "cannot encode serial number");
  }
  // Skip tag and length (short or long form) to reach the content octets.
  size_t pos = 1;
  auto first_len = static_cast<unsigned char>(der[pos]);
  pos += (first_len & 0x80) ? 1 + (first_len & 0x7f) : 1;
  if (pos >= der.size()) return Fail("client_certificate_malformed", "empty serial number");
  std::string content = der.substr(pos);
  std::string reversed(content.rbegin(), content.rend());
  return tls::HexLower(reversed);
}

Result<std::optional<std::string>> ReadSid(const X509* cert) {
  Asn1ObjectPtr oid(OBJ_txt2obj(std::string(kSidExtensionOid).c_str(), 1));
  if (!oid) return Fail("internal_error", "cannot build SID extension OID");
  int index = X509_get_ext_by_OBJ(cert, oid.get(), -1);
  if (index < 0) return std::optional<std::string>();
  if (X509_get_ext_by_OBJ(cert, oid.get(), index) >= 0) {
    return Fail("client_certificate_malformed", "SID extension present more than once");
  }
  const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(X509_get_ext(cert, index));
  if (value == nullptr) return Fail("client_certificate_malformed", "SID extension has no value");
  ORTHRUS_ASSIGN_OR_RETURN(
      std::string sid,
      ParseSidExtension(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                                         static_cast<size_t>(ASN1_STRING_length(value)))));
  return std::optional<std::string>(std::move(sid));
}

bool ParseDecimal(std::string_view text, uint64_t max, uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  if (text.size() > 1 && text[0] == '0') return false;  // one spelling per SID
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && out <= max;
}

std::string OrFilter(std::string_view attribute, const std::vector<std::string>& raw_values) {
  std::string terms;
  for (const auto& value : raw_values) {
    terms += "(" + std::string(attribute) + "=" + EscapeFilterValue(value) + ")";
  }
  return raw_values.size() == 1 ? terms : "(|" + terms + ")";
}

}  // namespace

Result<std::string> ParseSidExtension(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  tls::GeneralNamesPtr names(d2i_GENERAL_NAMES(nullptr, &p, static_cast<long>(der.size())));
  if (!names || p != end) {
    return Fail("client_certificate_malformed", "SID extension is not a valid GeneralNames");
  }
  if (sk_GENERAL_NAME_num(names.get()) != 1) {
    return Fail("client_certificate_malformed", "SID extension must hold exactly one name");
  }
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), 0);
  if (name->type != GEN_OTHERNAME || name->d.otherName == nullptr) {
    return Fail("client_certificate_malformed", "SID extension does not hold an otherName");
  }
  Asn1ObjectPtr oid(OBJ_txt2obj(std::string(kSidOtherNameOid).c_str(), 1));
  if (!oid) return Fail("internal_error", "cannot build SID otherName OID");
  if (OBJ_cmp(name->d.otherName->type_id, oid.get()) != 0) {
    return Fail("client_certificate_malformed", "SID extension otherName has the wrong type");
  }
  const ASN1_TYPE* value = name->d.otherName->value;
  if (value == nullptr || value->type != V_ASN1_OCTET_STRING) {
    return Fail("client_certificate_malformed", "SID extension value is not an OCTET STRING");
  }
  std::string sid(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value->value.octet_string)),
                  static_cast<size_t>(ASN1_STRING_length(value->value.octet_string)));
  // Round-tripping through the binary form validates the syntax and keeps one canonical spelling.
  ORTHRUS_ASSIGN_OR_RETURN(std::string binary, SidTextToBinary(sid));
  ORTHRUS_ASSIGN_OR_RETURN(std::string canonical, SidBinaryToText(binary));
  if (canonical != sid) {
    return Fail("client_certificate_malformed", "SID extension value is not a canonical SID");
  }
  return sid;
}

Result<std::string> SidTextToBinary(std::string_view sid) {
  auto bad = [&] {
    return Fail("client_certificate_malformed", "not a SID: \"" + std::string(sid.substr(0, 80)) + "\"");
  };
  if (!sid.starts_with("S-1-")) return bad();
  std::vector<std::string_view> parts;
  std::string_view rest = sid.substr(4);
  while (true) {
    size_t dash = rest.find('-');
    parts.push_back(rest.substr(0, dash));
    if (dash == std::string_view::npos) break;
    rest = rest.substr(dash + 1);
  }
  // authority + 1..15 sub-authorities
  if (parts.size() < 2 || parts.size() > 16) return bad();
  uint64_t authority = 0;
  if (!ParseDecimal(parts[0], (uint64_t{1} << 48) - 1, authority)) return bad();
  std::string out;
  out.push_back(1);  // revision
  out.push_back(static_cast<char>(parts.size() - 1));
  for (int shift = 40; shift >= 0; shift -= 8) out.push_back(static_cast<char>((authority >> shift) & 0xff));
  for (size_t i = 1; i < parts.size(); ++i) {
    uint64_t sub = 0;
    if (!ParseDecimal(parts[i], 0xffffffffu, sub)) return bad();
    for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((sub >> shift) & 0xff));
  }
  return out;
}

Result<std::string> SidBinaryToText(std::string_view binary) {
  if (binary.size() < 8 || static_cast<unsigned char>(binary[0]) != 1) {
    return Fail("directory_unavailable", "objectSid is not a revision-1 SID");
  }
  size_t count = static_cast<unsigned char>(binary[1]);
  if (count < 1 || count > 15 || binary.size() != 8 + 4 * count) {
    return Fail("directory_unavailable", "objectSid has an inconsistent length");
  }
  uint64_t authority = 0;
  for (size_t i = 2; i < 8; ++i) authority = (authority << 8) | static_cast<unsigned char>(binary[i]);
  std::string text = "S-1-" + std::to_string(authority);
  for (size_t i = 0; i < count; ++i) {
    uint32_t sub = 0;
    for (int b = 3; b >= 0; --b) {
      sub = (sub << 8) | static_cast<unsigned char>(binary[8 + 4 * i + static_cast<size_t>(b)]);
    }
    text += "-" + std::to_string(sub);
  }
  return text;
}

std::string ReverseRdnOrder(std::string_view rfc2253) {
  std::vector<std::string_view> rdns;
  size_t start = 0;
  for (size_t i = 0; i < rfc2253.size(); ++i) {
    if (rfc2253[i] == '\\') {
      ++i;  // the escaped character (or first hex digit) never separates
    } else if (rfc2253[i] == ',') {
      rdns.push_back(rfc2253.substr(start, i - start));
      start = i + 1;
    }
  }
  rdns.push_back(rfc2253.substr(start));
  std::string out;
  for (auto it = rdns.rbegin(); it != rdns.rend(); ++it) {
    if (!out.empty()) out += ',';
    out += *it;
  }
  return out;
}

std::string ReverseSerialHex(std::string_view serial_hex) {
  std::string hex(serial_hex);
  if (hex.size() % 2 != 0) hex.insert(hex.begin(), '0');
  if (hex.empty()) hex = "00";
  // DER's sign octet: CERT_INFO.SerialNumber keeps it.
  auto top = hex[0];
  if ((top >= '8' && top <= '9') || (top >= 'a' && top <= 'f') || (top >= 'A' && top <= 'F')) {
    hex.insert(0, "00");
  }
  std::string out;
  for (size_t i = hex.size(); i >= 2; i -= 2) {
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(hex[i - 2])));
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(hex[i - 1])));
  }
  return out;
}

std::string EscapeFilterValue(std::string_view raw) {
  berval in{static_cast<ber_len_t>(raw.size()), const_cast<char*>(raw.data())};
  berval out{0, nullptr};
  if (ldap_bv2escaped_filter_value(&in, &out) != 0 || out.bv_val == nullptr) {
    // Only allocation can fail; a filter that matches nothing is the safe answer.
    return "\\00invalid";
  }
  std::string escaped(out.bv_val, out.bv_len);
  ber_memfree(out.bv_val);
  return escaped;
}

Result<LeafFacts> ReadLeafFacts(const tls::CertIdentity& certificate) {
  LeafFacts facts;
  if (certificate.chain_der.empty()) {
    facts.issuer_x500 = ReverseRdnOrder(certificate.issuer);
    facts.subject_x500 = ReverseRdnOrder(certificate.subject);
    facts.serial_reversed_hex = ReverseSerialHex(certificate.serial_hex);
    return facts;
  }
  const std::string& der = certificate.chain_der.front();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  tls::X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return Fail("client_certificate_malformed", "leaf certificate DER does not parse");
  }
  ORTHRUS_ASSIGN_OR_RETURN(facts.issuer_x500, PrintName(X509_get_issuer_name(cert.get())));
  ORTHRUS_ASSIGN_OR_RETURN(facts.subject_x500, PrintName(X509_get_subject_name(cert.get())));
  ORTHRUS_ASSIGN_OR_RETURN(facts.serial_reversed_hex, SerialReversedHex(cert.get()));
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(cert.get()); ski != nullptr) {
    facts.ski_hex = Hex(ASN1_STRING_get0_data(ski), static_cast<size_t>(ASN1_STRING_length(ski)));
  }
  // SHA1-PUKEY: SHA-1 over the subjectPublicKey BIT STRING contents (the same bytes RFC 5280's
  // key identifier method 1 hashes), not over the whole SubjectPublicKeyInfo.
  if (const ASN1_BIT_STRING* key = X509_get0_pubkey_bitstr(cert.get()); key != nullptr) {
    std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
    SHA1(ASN1_STRING_get0_data(key), static_cast<size_t>(ASN1_STRING_length(key)), digest.data());
    facts.sha1_pukey_hex = Hex(digest.data(), digest.size());
  }
  ORTHRUS_ASSIGN_OR_RETURN(facts.sid, ReadSid(cert.get()));
  return facts;
}

std::optional<std::string> BuildFilter(MappingKind kind, const tls::CertIdentity& certificate,
                                       const LeafFacts& facts) {
  std::string term;
  switch (kind) {
    case MappingKind::kAltSecIssuerSerial:
      if (facts.issuer_x500.empty() || facts.serial_reversed_hex.empty()) return std::nullopt;
      term = OrFilter("altSecurityIdentities",
                      {"X509:<I>" + facts.issuer_x500 + "<SR>" + facts.serial_reversed_hex});
      break;
    case MappingKind::kAltSecSki:
      if (facts.ski_hex.empty()) return std::nullopt;
      term = OrFilter("altSecurityIdentities", {"X509:<SKI>" + facts.ski_hex});
      break;
    case MappingKind::kAltSecSha1PublicKey:
      if (facts.sha1_pukey_hex.empty()) return std::nullopt;
      term = OrFilter("altSecurityIdentities", {"X509:<SHA1-PUKEY>" + facts.sha1_pukey_hex});
      break;
    case MappingKind::kSidExtension: {
      if (!facts.sid) return std::nullopt;
      auto binary = SidTextToBinary(*facts.sid);
      if (!binary) return std::nullopt;
      term = OrFilter("objectSid", {*binary});
      break;
    }
    case MappingKind::kUpn:
      if (certificate.upn.empty()) return std::nullopt;
      term = OrFilter("userPrincipalName", certificate.upn);
      break;
    case MappingKind::kRfc822:
      if (certificate.rfc822.empty()) return std::nullopt;
      term = OrFilter("mail", certificate.rfc822);
      break;
    case MappingKind::kAltSecIssuerSubject:
      if (facts.issuer_x500.empty() || facts.subject_x500.empty()) return std::nullopt;
      term = OrFilter("altSecurityIdentities",
                      {"X509:<I>" + facts.issuer_x500 + "<S>" + facts.subject_x500});
      break;
  }
  // Users only: a computer or gMSA object must never become a mailbox identity.
  return "(&(objectCategory=person)(objectClass=user)" + term + ")";
}

}  // namespace directory_internal
}  // namespace orthrus::broker
