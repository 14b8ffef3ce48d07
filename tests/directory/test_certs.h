#pragma once
// Certificates for the directory tests: loaded from PEM, or made on the fly with the openssl CLI.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"

namespace orthrus::broker::testing {

// The identity the broker re-derives from a forwarded chain: names plus the leaf DER.
inline Result<tls::CertIdentity> IdentityFromPem(const std::string& path) {
  ORTHRUS_ASSIGN_OR_RETURN(auto certs, tls::LoadCertificates(path));
  ORTHRUS_ASSIGN_OR_RETURN(tls::CertIdentity identity, tls::ExtractIdentity(certs.front().get()));
  ORTHRUS_ASSIGN_OR_RETURN(std::string der, tls::ToDer(certs.front().get()));
  identity.chain_der.push_back(std::move(der));
  return identity;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "orthrus-dir-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Self-signed EC certificate with serial `serial` ("0x..") and the extension section `extensions`
// (openssl config syntax, section [ext] plus any sections it references). Returns the PEM path,
// or "" if openssl failed.
inline std::string MakeCertificate(const TempDir& dir, const std::string& name, const std::string& serial,
                                   const std::string& extensions) {
  std::string config = dir.path() + "/" + name + ".cnf";
  std::ofstream(config) << "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=" << name
                        << "\n[ext]\nbasicConstraints=CA:FALSE\n"
                        << extensions << "\n";
  std::string pem = dir.path() + "/" + name + ".pem";
  std::string command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -keyout '" +
                        dir.path() + "/" + name + ".key' -out '" + pem + "' -set_serial " + serial +
                        " -config '" + config + "' -extensions ext 2>'" + dir.path() + "/" + name + ".err'";
  return std::system(command.c_str()) == 0 ? pem : "";
}

// The SID security extension as AD CS writes it: GeneralNames { otherName 1.3.6.1.4.1.311.25.2.1
// [0] EXPLICIT OCTET STRING "S-1-..." }.
inline std::string SidExtensionConfig(const std::string& sid) {
  return "1.3.6.1.4.1.311.25.2=ASN1:SEQUENCE:sid_names\n"
         "[sid_names]\nname=IMPLICIT:0C,SEQUENCE:sid_other\n"
         "[sid_other]\ntype=OID:1.3.6.1.4.1.311.25.2.1\nvalue=EXPLICIT:0C,OCTETSTRING:" + sid + "\n";
}

}  // namespace orthrus::broker::testing
