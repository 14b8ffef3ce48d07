// libFuzzer target: certificate identity extraction from untrusted DER (the bytes a device presents,
// and the chain the edge forwards to the broker). Built two ways:
//   - tests/fuzz/CMakeLists.txt: standalone clang project, -fsanitize=fuzzer,address,undefined
//     (tools/test.sh runs a bounded pass over a temp copy of corpus/identity);
//   - tests/fuzz/replay.cmake: the same entry point under g++ with a replay main(), a ctest in the
//     main and ASan builds that runs every seed in corpus/identity.
// Any input must end in a value or an Error; the checks below abort on a broken invariant.
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/tls/openssl_handles.h"
#include "common/tls/x509_identity.h"

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "identity_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

bool CleanName(const std::string& s) { return s.find('\0') == std::string::npos; }

void CheckIdentity(const orthrus::tls::CertIdentity& id) {
  Require(id.cert_sha256.size() == 32, "cert_sha256 is 32 bytes");
  Require(id.spki_sha256.size() == 32, "spki_sha256 is 32 bytes");
  Require(!id.serial_hex.empty(), "serial_hex is non-empty");
  for (char c : id.serial_hex) {
    Require(c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), "serial_hex is lower-case hex");
  }
  Require(id.chain_der.empty(), "ExtractIdentity leaves chain_der empty");
  for (const auto* list : {&id.dns, &id.rfc822, &id.uri, &id.ip, &id.upn}) {
    for (const auto& v : *list) Require(CleanName(v), "SAN values carry no NUL byte");
  }
  for (const auto& v : id.upn) Require(!v.empty(), "UPN values are non-empty");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view der(reinterpret_cast<const char*>(data), size);
  auto id = orthrus::tls::ExtractIdentityFromDer(der);
  if (!id) {
    Require(!id.error().code.empty(), "an Error has a code");
    return 0;
  }
  CheckIdentity(*id);

  // Deterministic, and stable across the edge -> broker hop: the broker re-parses the DER the edge
  // re-encoded (ToDer) and must see the same identity.
  auto again = orthrus::tls::ExtractIdentityFromDer(der);
  Require(again && *again == *id, "extraction is deterministic");

  const auto* p = data;
  orthrus::tls::X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(size)));
  Require(cert != nullptr, "d2i_X509 accepts what ExtractIdentityFromDer accepted");
  auto reencoded = orthrus::tls::ToDer(cert.get());
  Require(reencoded.has_value(), "an accepted certificate re-encodes");
  auto forwarded = orthrus::tls::ExtractIdentityFromDer(*reencoded);
  Require(forwarded.has_value(), "the re-encoded certificate is accepted");
  Require(*forwarded == *id, "the re-encoded certificate has the same identity");
  return 0;
}
