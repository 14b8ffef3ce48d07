#pragma once
// Canonical forms of what a revocation can match, shared by the broker (which stores and pushes
// them) and the edge (which looks them up per handshake and per request). Both sides must derive
// exactly the same bytes from a certificate, so every conversion lives here.
//
//   issuer   DER of the issuer Name, compared byte for byte (what OpenSSL gives for a chain element)
//   serial   magnitude octets, big-endian, no leading zero octets; 0 is "\x00"; a negative serial is
//            "\x00" + magnitude. Lower-case hex of it == tls::CertIdentity::serial_hex.
//   sha256   32 raw octets of SHA-256(certificate DER)
//   account  UPN or sAMAccountName (optionally "DOMAIN\name"), ASCII lower-cased
//   device   ActiveSync DeviceId, ASCII lower-cased
#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "orthrus/revocation/v1/revocation.pb.h"

namespace orthrus::revocation {

inline constexpr size_t kMaxSerialBytes = 64;      // RFC 5280 says 20; real CAs exceed it a little
inline constexpr size_t kMaxIdentifierBytes = 256; // accounts and device ids

// ---- serials
std::string SerialFromAsn1(const ASN1_INTEGER* serial);
// "0a1b2c", "A1B2C", "0x0a1b2c", "-05", also with ':' separators as openssl prints them.
Result<std::string> SerialFromHex(std::string_view hex);
std::string SerialToHex(std::string_view serial);
bool IsCanonicalSerial(std::string_view serial);

// ---- names
std::string NameDer(const X509_NAME* name);
std::string NameText(const X509_NAME* name);  // RFC 2253, as tls::CertIdentity prints it

// ---- accounts and devices
std::string NormalizeIdentifier(std::string_view text);  // ASCII lower-case

// ---- entry keys
// Validates a key and returns it in canonical form (identifiers lower-cased). Does not resolve an
// issuer given only as text: that is the broker's job (it knows the CAs); an IssuerSerial without
// issuer_der is refused here.
Result<v1::EntryKey> CanonicalKey(const v1::EntryKey& key);
// The map key of a canonical EntryKey: one tag octet then the kind's bytes. Unique across kinds.
std::string KeyString(const v1::EntryKey& canonical);
std::string IssuerSerialKeyString(std::string_view issuer_der, std::string_view serial);
std::string CertSha256KeyString(std::string_view sha256);
std::string AccountKeyString(std::string_view account);    // normalizes
std::string DeviceIdKeyString(std::string_view device_id); // normalizes
// "issuer_serial", "cert_sha256", "account", "device_id" ("" when unset).
std::string_view KeyKind(const v1::EntryKey& key);
// For logs and orthrusctl: "account alice@corp.test", "issuer_serial CN=CA,O=Corp 0a1b2c", ...
std::string DescribeKey(const v1::EntryKey& key);

// ---- what a certificate is looked up by
struct CertKeys {
  std::string issuer_der;
  std::string serial;
  std::string sha256;
};
Result<CertKeys> KeysFromCertificate(X509* cert);
Result<CertKeys> KeysFromDer(std::string_view der);

// ---- packed serial lists (CrlSet.serials_packed): (length octet 1..64, octets)*
void AppendPacked(std::string& packed, std::string_view serial);
// Calls fn(serial) for each element; an error for a malformed list (zero/oversized length, a
// truncated element, a non-canonical serial).
template <class Fn>
Status ForEachPacked(std::string_view packed, Fn&& fn);
Result<uint64_t> CountPacked(std::string_view packed);

Status PackedError(size_t offset);  // helper for ForEachPacked

template <class Fn>
Status ForEachPacked(std::string_view packed, Fn&& fn) {
  size_t pos = 0;
  while (pos < packed.size()) {
    size_t len = static_cast<unsigned char>(packed[pos]);
    if (len == 0 || len > kMaxSerialBytes || pos + 1 + len > packed.size()) return PackedError(pos);
    std::string_view serial = packed.substr(pos + 1, len);
    if (!IsCanonicalSerial(serial)) return PackedError(pos);
    fn(serial);
    pos += 1 + len;
  }
  return {};
}

}  // namespace orthrus::revocation
