#pragma once
// The broker's own check of the device identity the edge asserts: the forwarded chain must verify
// against the broker's device CA set, and every asserted field must equal what the broker derives
// from the chain itself. A compromised edge can therefore not invent a user.
#include <ctime>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <string>

#include "common/result.h"
#include "common/tls/trust_store.h"
#include "common/tls/x509_identity.h"
#include "orthrus/tunnel/v1/tunnel.pb.h"

namespace orthrus::broker {

class IdentityVerifier {
 public:
  static Result<IdentityVerifier> Create(const std::string& device_ca_file, long clock_skew_seconds = 0);

  // Error codes: "identity_untrusted" (chain does not verify), "identity_mismatch" (asserted fields
  // differ from the chain), or a certificate_malformed_* code.
  // A chain that verified is remembered (by the SHA-256 of the whole chain) for up to a minute and
  // never past its leaf's notAfter: a device's keep-alive requests then cost a hash and a
  // comparison instead of chain verification and two DER parses (the largest CPU cost per request
  // in the profile, docs/performance.md). The asserted fields are compared on every request.
  Result<tls::CertIdentity> Verify(const tunnel::v1::ClientIdentity& asserted, std::time_t now) const;

  IdentityVerifier(IdentityVerifier&& other) noexcept
      : trust_(std::move(other.trust_)), skew_(other.skew_) {}

 private:
  struct Verified {
    tls::CertIdentity identity;  // without chain_der
    std::time_t valid_until = 0;
  };
  static constexpr std::time_t kRememberSeconds = 60;
  static constexpr size_t kMaxRemembered = 10000;

  IdentityVerifier(tls::TrustStore trust, long skew) : trust_(std::move(trust)), skew_(skew) {}
  Result<tls::CertIdentity> VerifyChain(const std::vector<std::string>& chain, std::time_t now) const;

  tls::TrustStore trust_;
  long skew_ = 0;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, Verified> verified_;
};

}  // namespace orthrus::broker
