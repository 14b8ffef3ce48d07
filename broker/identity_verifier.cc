#include "broker/identity_verifier.h"

#include <algorithm>


namespace orthrus::broker {
namespace {

template <class Repeated>
bool SameList(const Repeated& asserted, const std::vector<std::string>& derived) {
  if (asserted.size() != static_cast<int>(derived.size())) return false;
  for (int i = 0; i < asserted.size(); ++i) {
    if (asserted.Get(i) != derived[static_cast<size_t>(i)]) return false;
  }
  return true;
}

}  // namespace

Result<IdentityVerifier> IdentityVerifier::Create(const std::string& device_ca_file,
                                                  long clock_skew_seconds) {
  ORTHRUS_ASSIGN_OR_RETURN(tls::TrustStore trust, tls::TrustStore::FromPemFile(device_ca_file));
  return IdentityVerifier(std::move(trust), clock_skew_seconds);
}

Result<tls::CertIdentity> IdentityVerifier::VerifyChain(const std::vector<std::string>& chain,
                                                        std::time_t now) const {
  // Length-prefixed, so that moving bytes between elements changes the key.
  std::string all;
  for (const auto& der : chain) all += std::to_string(der.size()) + ":" + der;
  std::string key = tls::Sha256(all);
  {
    std::lock_guard lock(mutex_);
    auto it = verified_.find(key);
    if (it != verified_.end() && now < it->second.valid_until) return it->second.identity;
  }
  ORTHRUS_TRY(trust_.VerifyClientChain(chain, now, skew_));
  ORTHRUS_ASSIGN_OR_RETURN(tls::CertIdentity derived, tls::ExtractIdentityFromDer(chain.front()));
  std::time_t until = std::min<std::time_t>(now + kRememberSeconds,
                                            static_cast<std::time_t>(derived.not_after_unix) + skew_);
  std::lock_guard lock(mutex_);
  if (verified_.size() >= kMaxRemembered) {
    std::erase_if(verified_, [now](const auto& kv) { return kv.second.valid_until <= now; });
    if (verified_.size() >= kMaxRemembered) verified_.clear();
  }
  verified_[key] = Verified{derived, until};
  return derived;
}

Result<tls::CertIdentity> IdentityVerifier::Verify(const tunnel::v1::ClientIdentity& asserted,
                                                   std::time_t now) const {
  std::vector<std::string> chain(asserted.chain_der().begin(), asserted.chain_der().end());
  if (chain.empty()) return Fail("identity_untrusted", "no certificate chain was forwarded");
  ORTHRUS_ASSIGN_OR_RETURN(tls::CertIdentity derived, VerifyChain(chain, now));
  const auto& san = asserted.san();
  std::string_view mismatch;
  if (asserted.subject() != derived.subject) mismatch = "subject";
  else if (asserted.issuer() != derived.issuer) mismatch = "issuer";
  else if (asserted.serial_hex() != derived.serial_hex) mismatch = "serial";
  else if (asserted.cert_sha256() != derived.cert_sha256) mismatch = "cert_sha256";
  else if (asserted.spki_sha256() != derived.spki_sha256) mismatch = "spki_sha256";
  else if (!SameList(san.dns(), derived.dns) || !SameList(san.rfc822(), derived.rfc822) ||
           !SameList(san.uri(), derived.uri) || !SameList(san.ip(), derived.ip) ||
           !SameList(san.upn(), derived.upn)) {
    mismatch = "subject alternative names";
  }
  if (!mismatch.empty()) {
    return Fail("identity_mismatch",
                "edge asserted a " + std::string(mismatch) + " that the forwarded certificate does not hold");
  }
  derived.chain_der = std::move(chain);
  return derived;
}

}  // namespace orthrus::broker
