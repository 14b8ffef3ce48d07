#pragma once
// How a publishing rule authenticates a device. The edge enforces it first (and shapes the TLS
// handshake after it); the broker enforces it again, so a misconfigured or compromised edge cannot
// weaken a rule.
#include <optional>
#include <string_view>

namespace orthrus {

enum class AuthMode {
  kCertificate,             // a client certificate, nothing else
  kCertificateOrPassword,   // a certificate; Basic only when the device presents none
  kCertificateAndPassword,  // both, and they must resolve to the same account
  kPassword,                // Basic only; a presented certificate is ignored
};

inline constexpr std::string_view kAuthModeNames[] = {
    "certificate", "certificate-or-password", "certificate-and-password", "password"};

inline std::string_view AuthModeName(AuthMode mode) {
  return kAuthModeNames[static_cast<int>(mode)];
}

inline std::optional<AuthMode> ParseAuthMode(std::string_view text) {
  for (int i = 0; i < 4; ++i) {
    if (kAuthModeNames[i] == text) return static_cast<AuthMode>(i);
  }
  return std::nullopt;
}

inline bool AcceptsPassword(AuthMode mode) { return mode != AuthMode::kCertificate; }
// A device may complete the TLS handshake without a certificate for this rule.
inline bool CertificateOptional(AuthMode mode) {
  return mode == AuthMode::kCertificateOrPassword || mode == AuthMode::kPassword;
}

}  // namespace orthrus
