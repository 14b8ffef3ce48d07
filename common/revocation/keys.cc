#include "common/revocation/keys.h"

#include <openssl/asn1.h>

#include <memory>

#include "common/revocation/errors.h"
#include "common/tls/openssl_handles.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = Lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

Status CheckIdentifier(std::string_view text, std::string_view what) {
  if (text.empty()) return Fail(errc::kInvalidKey, std::string(what) + " is empty");
  if (text.size() > kMaxIdentifierBytes) {
    return Fail(errc::kInvalidKey, std::string(what) + " is longer than " +
                                       std::to_string(kMaxIdentifierBytes) + " bytes");
  }
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      return Fail(errc::kInvalidKey, std::string(what) + " contains a control character");
    }
  }
  return {};
}

std::string CanonicalMagnitude(std::string_view magnitude, bool negative) {
  size_t skip = 0;
  while (skip < magnitude.size() && magnitude[skip] == '\0') ++skip;
  magnitude.remove_prefix(skip);
  if (magnitude.empty()) return std::string(1, '\0');
  std::string out;
  out.reserve(magnitude.size() + 1);
  if (negative) out.push_back('\0');
  out.append(magnitude);
  return out;
}

}  // namespace

std::string SerialFromAsn1(const ASN1_INTEGER* serial) {
  if (serial == nullptr) return std::string(1, '\0');
  const unsigned char* data = ASN1_STRING_get0_data(serial);
  int len = ASN1_STRING_length(serial);
  std::string_view magnitude(reinterpret_cast<const char*>(data), len > 0 ? static_cast<size_t>(len) : 0);
  return CanonicalMagnitude(magnitude, ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER);
}

Result<std::string> SerialFromHex(std::string_view hex) {
  std::string_view original = hex;
  bool negative = false;
  if (!hex.empty() && hex.front() == '-') {
    negative = true;
    hex.remove_prefix(1);
  }
  if (hex.size() >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) hex.remove_prefix(2);
  std::string digits;
  for (char c : hex) {
    if (c == ':') continue;
    if (HexDigit(c) < 0) {
      return Fail(errc::kInvalidKey, "serial \"" + std::string(original) + "\" is not hexadecimal");
    }
    digits.push_back(c);
  }
  if (digits.empty()) return Fail(errc::kInvalidKey, "serial is empty");
  if (digits.size() % 2 != 0) digits.insert(digits.begin(), '0');
  std::string bytes;
  for (size_t i = 0; i < digits.size(); i += 2) {
    bytes.push_back(static_cast<char>(HexDigit(digits[i]) * 16 + HexDigit(digits[i + 1])));
  }
  std::string serial = CanonicalMagnitude(bytes, negative);
  if (serial.size() > kMaxSerialBytes) {
    return Fail(errc::kInvalidKey, "serial is longer than " + std::to_string(kMaxSerialBytes) + " octets");
  }
  return serial;
}

std::string SerialToHex(std::string_view serial) {
  if (serial.size() >= 2 && serial[0] == '\0') return "-" + tls::HexLower(serial.substr(1));
  return tls::HexLower(serial);
}

bool IsCanonicalSerial(std::string_view serial) {
  if (serial.empty() || serial.size() > kMaxSerialBytes) return false;
  if (serial.size() == 1) return true;
  if (serial[0] != '\0') return true;
  return serial[1] != '\0';  // negative: 0x00 then a minimal, non-zero magnitude
}

std::string NameDer(const X509_NAME* name) {
  unsigned char* der = nullptr;
  int len = i2d_X509_NAME(const_cast<X509_NAME*>(name), &der);
  if (len <= 0) return {};
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string NameText(const X509_NAME* name) {
  tls::BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string NormalizeIdentifier(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = Lower(c);
  return out;
}

Result<v1::EntryKey> CanonicalKey(const v1::EntryKey& key) {
  v1::EntryKey out;
  switch (key.key_case()) {
    case v1::EntryKey::kIssuerSerial: {
      const auto& is = key.issuer_serial();
      if (is.issuer_der().empty()) {
        return Fail(errc::kInvalidKey, "issuer_serial needs the issuer's DER name (resolve \"" +
                                           is.issuer() + "\" against the known CAs first)");
      }
      const auto* p = reinterpret_cast<const unsigned char*>(is.issuer_der().data());
      std::unique_ptr<X509_NAME, tls::Deleter<X509_NAME_free>> name(
          d2i_X509_NAME(nullptr, &p, static_cast<long>(is.issuer_der().size())));
      if (!name || p != reinterpret_cast<const unsigned char*>(is.issuer_der().data()) +
                            is.issuer_der().size()) {
        tls::DrainErrors();
        return Fail(errc::kInvalidKey, "issuer_serial.issuer_der is not one DER Name");
      }
      if (!IsCanonicalSerial(is.serial())) {
        return Fail(errc::kInvalidKey, "issuer_serial.serial is empty, too long or has leading zeros");
      }
      auto* o = out.mutable_issuer_serial();
      o->set_issuer_der(is.issuer_der());
      o->set_issuer(is.issuer().empty() ? NameText(name.get()) : is.issuer());
      o->set_serial(is.serial());
      return out;
    }
    case v1::EntryKey::kCertSha256:
      if (key.cert_sha256().size() != 32) {
        return Fail(errc::kInvalidKey, "cert_sha256 must be 32 octets, got " +
                                           std::to_string(key.cert_sha256().size()));
      }
      out.set_cert_sha256(key.cert_sha256());
      return out;
    case v1::EntryKey::kAccount:
      ORTHRUS_TRY(CheckIdentifier(key.account(), "account"));
      out.set_account(NormalizeIdentifier(key.account()));
      return out;
    case v1::EntryKey::kDeviceId:
      ORTHRUS_TRY(CheckIdentifier(key.device_id(), "device_id"));
      out.set_device_id(NormalizeIdentifier(key.device_id()));
      return out;
    case v1::EntryKey::KEY_NOT_SET:
      break;
  }
  return Fail(errc::kInvalidKey, "the key is empty (set one of issuer_serial, cert_sha256, account, device_id)");
}

std::string IssuerSerialKeyString(std::string_view issuer_der, std::string_view serial) {
  std::string out;
  out.reserve(5 + issuer_der.size() + serial.size());
  out.push_back('I');
  uint32_t n = static_cast<uint32_t>(issuer_der.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(issuer_der);
  out.append(serial);
  return out;
}

std::string CertSha256KeyString(std::string_view sha256) { return "H" + std::string(sha256); }
std::string AccountKeyString(std::string_view account) { return "A" + NormalizeIdentifier(account); }
std::string DeviceIdKeyString(std::string_view device_id) {
  return "D" + NormalizeIdentifier(device_id);
}

std::string KeyString(const v1::EntryKey& key) {
  switch (key.key_case()) {
    case v1::EntryKey::kIssuerSerial:
      return IssuerSerialKeyString(key.issuer_serial().issuer_der(), key.issuer_serial().serial());
    case v1::EntryKey::kCertSha256:
      return CertSha256KeyString(key.cert_sha256());
    case v1::EntryKey::kAccount:
      return AccountKeyString(key.account());
    case v1::EntryKey::kDeviceId:
      return DeviceIdKeyString(key.device_id());
    case v1::EntryKey::KEY_NOT_SET:
      break;
  }
  return {};
}

std::string_view KeyKind(const v1::EntryKey& key) {
  switch (key.key_case()) {
    case v1::EntryKey::kIssuerSerial: return "issuer_serial";
    case v1::EntryKey::kCertSha256: return "cert_sha256";
    case v1::EntryKey::kAccount: return "account";
    case v1::EntryKey::kDeviceId: return "device_id";
    case v1::EntryKey::KEY_NOT_SET: break;
  }
  return "";
}

std::string DescribeKey(const v1::EntryKey& key) {
  switch (key.key_case()) {
    case v1::EntryKey::kIssuerSerial:
      return "issuer_serial " + key.issuer_serial().issuer() + " " +
             SerialToHex(key.issuer_serial().serial());
    case v1::EntryKey::kCertSha256:
      return "cert_sha256 " + tls::HexLower(key.cert_sha256());
    case v1::EntryKey::kAccount:
      return "account " + key.account();
    case v1::EntryKey::kDeviceId:
      return "device_id " + key.device_id();
    case v1::EntryKey::KEY_NOT_SET:
      break;
  }
  return "(empty key)";
}

Result<CertKeys> KeysFromCertificate(X509* cert) {
  CertKeys out;
  out.issuer_der = NameDer(X509_get_issuer_name(cert));
  if (out.issuer_der.empty()) return Fail("certificate_malformed", "issuer name cannot be encoded");
  out.serial = SerialFromAsn1(X509_get0_serialNumber(cert));
  ORTHRUS_ASSIGN_OR_RETURN(std::string der, tls::ToDer(cert));
  out.sha256 = tls::Sha256(der);
  return out;
}

Result<CertKeys> KeysFromDer(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  tls::X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    tls::DrainErrors();
    return Fail("certificate_malformed", "not a single DER certificate");
  }
  CertKeys out;
  out.issuer_der = NameDer(X509_get_issuer_name(cert.get()));
  out.serial = SerialFromAsn1(X509_get0_serialNumber(cert.get()));
  out.sha256 = tls::Sha256(der);  // the bytes we were given are the certificate's DER
  return out;
}

void AppendPacked(std::string& packed, std::string_view serial) {
  packed.push_back(static_cast<char>(serial.size()));
  packed.append(serial);
}

Status PackedError(size_t offset) {
  return Fail(errc::kProtocol, "malformed packed serial list at offset " + std::to_string(offset));
}

Result<uint64_t> CountPacked(std::string_view packed) {
  uint64_t n = 0;
  ORTHRUS_TRY(ForEachPacked(packed, [&](std::string_view) { ++n; }));
  return n;
}

}  // namespace orthrus::revocation
