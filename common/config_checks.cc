#include "common/config_checks.h"

#include "common/log.h"
#include "common/tls/pem_files.h"

namespace orthrus::config {

bool RequireNonEmpty(const Scope& scope, Errors& errors, std::string_view field,
                     const std::string& value) {
  if (!value.empty()) return true;
  errors.Add(scope.Where(field), "required key is missing or empty");
  return false;
}

void CheckCertificateFile(const Scope& scope, Errors& errors, std::string_view field,
                          const std::string& path) {
  if (!RequireNonEmpty(scope, errors, field, path)) return;
  if (auto certs = tls::LoadCertificates(path); !certs) {
    errors.Add(scope.Where(field), certs.error().detail);
  }
}

void CheckCertificateKeyPair(const Scope& scope, Errors& errors, std::string_view cert_field,
                             const std::string& cert_path, std::string_view key_field,
                             const std::string& key_path) {
  bool have_cert = RequireNonEmpty(scope, errors, cert_field, cert_path);
  bool have_key = RequireNonEmpty(scope, errors, key_field, key_path);
  if (!have_cert || !have_key) return;
  auto certs = tls::LoadCertificates(cert_path);
  if (!certs) errors.Add(scope.Where(cert_field), certs.error().detail);
  auto key = tls::LoadPrivateKey(key_path);
  if (!key) errors.Add(scope.Where(key_field), key.error().detail);
  if (certs && key) {
    if (auto match = tls::CheckKeyMatchesCertificate(key->get(), certs->front().get(), cert_path,
                                                     key_path);
        !match) {
      errors.Add(scope.Where(key_field), match.error().detail);
    }
  }
}

std::optional<HostPort> CheckListenAddress(const Scope& scope, Errors& errors,
                                           std::string_view field, const std::string& value) {
  if (!RequireNonEmpty(scope, errors, field, value)) return std::nullopt;
  auto parsed = ParseListenAddress(value);
  if (!parsed) {
    errors.Add(scope.Where(field), parsed.error().detail);
    return std::nullopt;
  }
  return *parsed;
}

std::optional<HostPort> CheckHostPort(const Scope& scope, Errors& errors, std::string_view field,
                                      const std::string& value, int index) {
  if (value.empty()) {
    errors.Add(scope.Where(field, index), "required key is missing or empty");
    return std::nullopt;
  }
  auto parsed = ParseHostPort(value);
  if (!parsed) {
    errors.Add(scope.Where(field, index), parsed.error().detail);
    return std::nullopt;
  }
  return *parsed;
}

std::string ReadCheckedFile(const std::string& path) {
  auto text = tls::ReadFile(path);
  return text ? *text : std::string();
}

void CheckLogging(const Scope& scope, Errors& errors, const std::string& level) {
  if (level.empty()) return;
  if (auto parsed = log::ParseLevel(level); !parsed) {
    errors.Add(scope.Child("log").Where("level"), parsed.error().detail);
  }
}

}  // namespace orthrus::config
