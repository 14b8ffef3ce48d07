#include "common/tls/pem_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace orthrus::tls {

std::string DrainErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail("file_unreadable", "cannot read " + path + ": " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Result<std::vector<X509Ptr>> LoadCertificates(const std::string& path) {
  ORTHRUS_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    certs.push_back(std::move(cert));
  }
  unsigned long err = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  if (err != 0 && !clean_end) {
    return Fail("pem_invalid", path + ": not valid PEM certificate data (" + DrainErrors() + ")");
  }
  ERR_clear_error();
  if (certs.empty()) return Fail("pem_invalid", path + ": contains no PEM certificate");
  return certs;
}

Result<EvpPkeyPtr> LoadPrivateKey(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    return Fail("file_unreadable", "cannot read " + path + ": " + std::strerror(errno));
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Fail("key_permissions", path + ": private key is accessible by group or others (mode " +
                                       mode + "); run chmod 600");
  }
  ORTHRUS_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  ERR_clear_error();
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return Fail("pem_invalid", path + ": not a valid unencrypted PEM private key (" +
                                   DrainErrors() + ")");
  }
  return key;
}

Status CheckKeyMatchesCertificate(EVP_PKEY* key, X509* cert, const std::string& cert_path,
                                  const std::string& key_path) {
  if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    return Fail("key_mismatch", key_path + " does not match the certificate in " + cert_path);
  }
  return {};
}

Status CheckCertificateAndKey(const std::string& cert_path, const std::string& key_path) {
  ORTHRUS_ASSIGN_OR_RETURN(auto certs, LoadCertificates(cert_path));
  ORTHRUS_ASSIGN_OR_RETURN(auto key, LoadPrivateKey(key_path));
  return CheckKeyMatchesCertificate(key.get(), certs.front().get(), cert_path, key_path);
}

}  // namespace orthrus::tls
