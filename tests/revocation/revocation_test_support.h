#pragma once
// Helpers for the revocation unit tests: the PKI made by make_revocation_pki.sh, temp dirs, and a
// canonical, order-independent rendering of a RevocationSet for equality checks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/revocation/keys.h"
#include "common/revocation/revocation_set.h"
#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation::testing {

inline std::string Pki(const std::string& name) { return std::string(ORTHRUS_REVOCATION_PKI_DIR) + "/" + name; }

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/orthrus-revocation-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// DER of a PEM certificate from the test PKI.
inline std::string CertDer(const std::string& name) {
  auto certs = tls::LoadCertificates(Pki(name));
  EXPECT_TRUE(certs) << (certs ? "" : certs.error().detail);
  auto der = tls::ToDer(certs->front().get());
  return *der;
}

inline CertKeys Keys(const std::string& name) {
  auto keys = KeysFromDer(CertDer(name));
  EXPECT_TRUE(keys);
  return *keys;
}

// Order-independent description: equal iff the two sets revoke exactly the same things with the
// same metadata (entries with who/when/why, CRLs with their headers and serial sets).
inline std::string Canonical(const RevocationSet& set) {
  std::vector<std::string> lines;
  for (const auto& [key, entry] : set.entries()) {
    lines.push_back("E " + tls::HexLower(key) + " " + tls::HexLower(entry->SerializeAsString()));
  }
  for (const auto& [issuer, crl] : set.crls()) {
    std::vector<std::string> serials;
    crl->serials.ForEach([&](std::string_view s) { serials.push_back(tls::HexLower(s)); });
    std::sort(serials.begin(), serials.end());
    std::string line = "C " + tls::HexLower(issuer) + " " + crl->issuer + " " + tls::HexLower(crl->digest) +
                       " " + std::to_string(crl->this_update) + " " + std::to_string(crl->next_update) +
                       " " + tls::HexLower(crl->crl_number) + " n=" + std::to_string(serials.size());
    for (const auto& s : serials) line += " " + s;
    lines.push_back(std::move(line));
  }
  std::sort(lines.begin(), lines.end());
  std::string out = "feed=" + set.feed_id() + " version=" + std::to_string(set.version()) + "\n";
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace orthrus::revocation::testing
