#pragma once
// Loading and checking PEM material at startup, with errors that say which file and what is wrong.
#include <string>
#include <vector>

#include "common/result.h"
#include "common/tls/openssl_handles.h"

namespace orthrus::tls {

Result<std::string> ReadFile(const std::string& path);

// At least one certificate; every PEM block must parse; anything else is an error.
Result<std::vector<X509Ptr>> LoadCertificates(const std::string& path);

// The key must parse and must not be readable by group or others.
Result<EvpPkeyPtr> LoadPrivateKey(const std::string& path);

Status CheckKeyMatchesCertificate(EVP_PKEY* key, X509* cert, const std::string& cert_path,
                                  const std::string& key_path);

// Both checks plus the pairing, for a certificate/key pair given in a config.
Status CheckCertificateAndKey(const std::string& cert_path, const std::string& key_path);

}  // namespace orthrus::tls
