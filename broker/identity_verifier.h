#pragma once
// The broker's own check of the device identity the edge asserts: the forwarded chain must verify
// against the broker's device CA set, and every asserted field must equal what the broker derives
// from the chain itself. A compromised edge can therefore not invent a user.
#include <ctime>
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
  Result<tls::CertIdentity> Verify(const tunnel::v1::ClientIdentity& asserted, std::time_t now) const;

 private:
  IdentityVerifier(tls::TrustStore trust, long skew) : trust_(std::move(trust)), skew_(skew) {}
  tls::TrustStore trust_;
  long skew_ = 0;
};

}  // namespace orthrus::broker
