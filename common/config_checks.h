#pragma once
// Field checks shared by the edge and broker config loaders. Each records a message that names the
// file, line and key, and returns what it could load so later checks can continue.
#include <optional>
#include <string>

#include "common/config_file.h"
#include "common/net_address.h"

namespace orthrus::config {

bool RequireNonEmpty(const Scope& scope, Errors& errors, std::string_view field,
                     const std::string& value);
// The file must hold at least one PEM certificate and nothing malformed.
void CheckCertificateFile(const Scope& scope, Errors& errors, std::string_view field,
                          const std::string& path);
// Both files load, the key is private (mode 0600-like) and matches the first certificate.
void CheckCertificateKeyPair(const Scope& scope, Errors& errors, std::string_view cert_field,
                             const std::string& cert_path, std::string_view key_field,
                             const std::string& key_path);
std::optional<HostPort> CheckListenAddress(const Scope& scope, Errors& errors,
                                           std::string_view field, const std::string& value);
std::optional<HostPort> CheckHostPort(const Scope& scope, Errors& errors, std::string_view field,
                                      const std::string& value, int index = -1);
// Reads a file that was already checked; empty on failure (the check has reported it).
std::string ReadCheckedFile(const std::string& path);
void CheckLogging(const Scope& scope, Errors& errors, const std::string& level);

}  // namespace orthrus::config
