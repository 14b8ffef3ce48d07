#include "common/tls/x509_identity.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/sha.h>

#include <ctime>

#include "common/tls/openssl_handles.h"

namespace orthrus::tls {
namespace {

Result<std::string> NameToString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // RFC 2253 order with UTF-8 output: escapes special characters, so a crafted RDN cannot forge
  // another component.
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return Fail("certificate_malformed", "cannot print distinguished name");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    if (c < 0x80) {
      extra = 0;
    } else if ((c >> 5) == 0x6) {
      extra = 1;
    } else if ((c >> 4) == 0xe) {
      extra = 2;
    } else if ((c >> 3) == 0x1e) {
      extra = 3;
    } else {
      return false;
    }
    if (s.size() - i - 1 < extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += extra + 1;
  }
  return true;
}

Result<std::string> Asn1StringText(const ASN1_STRING* str, std::string_view what) {
  std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(str)),
                   static_cast<size_t>(ASN1_STRING_length(str)));
  if (text.find('\0') != std::string::npos) {
    return Fail("certificate_malformed_name", std::string(what) + " contains a NUL byte");
  }
  if (!ValidUtf8(text)) {
    return Fail("certificate_malformed_name", std::string(what) + " is not valid UTF-8");
  }
  return text;
}

Status ExtractSans(X509* cert, CertIdentity& out) {
  int crit = 0;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr)));
  if (!names) {
    // crit == -1: absent; -2: present more than once; otherwise unparseable.
    if (crit == -1) return {};
    return Fail("certificate_malformed_san", "subjectAltName extension is malformed or duplicated");
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    switch (gn->type) {
      case GEN_DNS: {
        ORTHRUS_ASSIGN_OR_RETURN(auto v, Asn1StringText(gn->d.dNSName, "DNS SAN"));
        out.dns.push_back(std::move(v));
        break;
      }
      case GEN_EMAIL: {
        ORTHRUS_ASSIGN_OR_RETURN(auto v, Asn1StringText(gn->d.rfc822Name, "RFC822 SAN"));
        out.rfc822.push_back(std::move(v));
        break;
      }
      case GEN_URI: {
        ORTHRUS_ASSIGN_OR_RETURN(auto v, Asn1StringText(gn->d.uniformResourceIdentifier, "URI SAN"));
        out.uri.push_back(std::move(v));
        break;
      }
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
        char buf[INET6_ADDRSTRLEN] = {};
        int len = ASN1_STRING_length(ip);
        const unsigned char* bytes = ASN1_STRING_get0_data(ip);
        if ((len == 4 && inet_ntop(AF_INET, bytes, buf, sizeof buf)) ||
            (len == 16 && inet_ntop(AF_INET6, bytes, buf, sizeof buf))) {
          out.ip.emplace_back(buf);
        } else {
          return Fail("certificate_malformed_san", "IP SAN has a length other than 4 or 16");
        }
        break;
      }
      case GEN_OTHERNAME: {
        const OTHERNAME* other = gn->d.otherName;
        char oid[64] = {};
        OBJ_obj2txt(oid, sizeof oid, other->type_id, /*no_name=*/1);
        if (std::string_view(oid) != kUpnOid) break;  // other otherNames carry nothing we map
        if (other->value == nullptr || other->value->type != V_ASN1_UTF8STRING) {
          return Fail("certificate_malformed_upn", "UPN otherName is not a UTF8String");
        }
        ORTHRUS_ASSIGN_OR_RETURN(auto v, Asn1StringText(other->value->value.utf8string, "UPN SAN"));
        if (v.empty()) return Fail("certificate_malformed_upn", "UPN otherName is empty");
        out.upn.push_back(std::move(v));
        break;
      }
      default:
        break;  // directoryName, registeredID, x400: not used for mapping
    }
  }
  return {};
}

Result<int64_t> AsnTimeToUnix(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return Fail("certificate_malformed", "validity time is malformed");
  }
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

std::string Sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

std::string HexLower(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

Result<std::string> ToDer(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) return Fail("certificate_malformed", "cannot DER-encode certificate");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

Result<CertIdentity> ExtractIdentity(X509* cert) {
  CertIdentity out;
  ORTHRUS_ASSIGN_OR_RETURN(out.subject, NameToString(X509_get_subject_name(cert)));
  ORTHRUS_ASSIGN_OR_RETURN(out.issuer, NameToString(X509_get_issuer_name(cert)));

  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  std::unique_ptr<BIGNUM, Deleter<BN_free>> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return Fail("certificate_malformed", "serial number is malformed");
  std::string serial_bytes(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(serial_bytes.data()));
  out.serial_hex = serial_bytes.empty() ? "00" : HexLower(serial_bytes);
  if (BN_is_negative(bn.get())) out.serial_hex = "-" + out.serial_hex;

  ORTHRUS_TRY(ExtractSans(cert, out));

  ORTHRUS_ASSIGN_OR_RETURN(std::string der, ToDer(cert));
  out.cert_sha256 = Sha256(der);

  unsigned char* spki = nullptr;
  int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
  if (spki_len <= 0) return Fail("certificate_malformed", "public key is malformed");
  out.spki_sha256 = Sha256(std::string_view(reinterpret_cast<char*>(spki), static_cast<size_t>(spki_len)));
  OPENSSL_free(spki);

  ORTHRUS_ASSIGN_OR_RETURN(out.not_before_unix, AsnTimeToUnix(X509_get0_notBefore(cert)));
  ORTHRUS_ASSIGN_OR_RETURN(out.not_after_unix, AsnTimeToUnix(X509_get0_notAfter(cert)));
  return out;
}

Result<CertIdentity> ExtractIdentityFromDer(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return Fail("certificate_malformed", "not a single DER certificate");
  }
  return ExtractIdentity(cert.get());
}

}  // namespace orthrus::tls
