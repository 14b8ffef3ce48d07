#include "edge/revocation_store.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/revocation/keys.h"
#include "common/tls/openssl_handles.h"
#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"

namespace orthrus::edge {
namespace {

using tls::X509Ptr;
using CrlPtr = std::unique_ptr<X509_CRL, tls::Deleter<X509_CRL_free>>;

// Same format as CertIdentity::serial_hex, so lookups compare like with like.
std::string SerialHex(const ASN1_INTEGER* serial) {
  std::unique_ptr<BIGNUM, tls::Deleter<BN_free>> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return {};
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
  std::string hex = bytes.empty() ? "00" : tls::HexLower(bytes);
  return BN_is_negative(bn.get()) ? "-" + hex : hex;
}

std::time_t ToTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

Result<std::vector<CrlPtr>> ReadCrls(const std::string& path) {
  ORTHRUS_ASSIGN_OR_RETURN(std::string text, tls::ReadFile(path));
  std::vector<CrlPtr> out;
  tls::BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  while (CrlPtr crl{PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)}) {
    out.push_back(std::move(crl));
  }
  tls::DrainErrors();
  if (out.empty()) {  // DER, as CAs publish them at their distribution points
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(text.size())));
    tls::DrainErrors();
    if (crl) out.push_back(std::move(crl));
  }
  if (out.empty()) return Fail("crl_invalid", path + ": contains no PEM or DER CRL");
  return out;
}

}  // namespace

Result<std::vector<ChainRevocationKey>> CrlLookupKeys(const std::vector<std::string>& chain_der) {
  std::vector<ChainRevocationKey> out;
  // The anchor (last element) is trusted as configured; everything it vouches for is checked.
  size_t checked = chain_der.size() > 1 ? chain_der.size() - 1 : chain_der.size();
  for (size_t i = 0; i < checked; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(chain_der[i].data());
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(chain_der[i].size())));
    if (!cert) return Fail("client_certificate_malformed", "chain element is not DER");
    out.push_back({revocation::NameDer(X509_get_issuer_name(cert.get())),
                   revocation::NameText(X509_get_issuer_name(cert.get())),
                   SerialHex(X509_get0_serialNumber(cert.get()))});
  }
  return out;
}

RevocationVerdict RevocationStore::Check(const std::vector<std::string>& chain_der,
                                         std::time_t now) const {
  if (!Current()) return {};
  auto keys = CrlLookupKeys(chain_der);
  if (!keys) return {Reason::kClientCertificateMalformed, keys.error().detail};
  return Check(*keys, now);
}

RevocationVerdict RevocationStore::Check(const std::vector<ChainRevocationKey>& chain,
                                         std::time_t now) const {
  auto snapshot = Current();
  if (!snapshot) return {};
  for (const auto& key : chain) {
    auto it = snapshot->cas.find(key.issuer_der);
    if (it == snapshot->cas.end()) {
      return {Reason::kCrlMissing, "no CRL loaded for issuer " + key.issuer_text};
    }
    const auto& ca = it->second;
    if (ca.no_crl) continue;
    if (ca.next_update != 0 && now > ca.next_update + snapshot->stale_grace.count()) {
      return {Reason::kCrlStale, "CRL of " + ca.ca_subject + " expired " +
                                     std::to_string(now - ca.next_update) + " s ago"};
    }
    if (ca.revoked.contains(key.serial_hex)) {
      return {Reason::kClientCertificateRevoked,
              "serial " + key.serial_hex + " revoked by " + ca.ca_subject};
    }
  }
  return {};
}

void RevocationStore::Replace(std::shared_ptr<const RevocationSnapshot> snapshot) {
  std::lock_guard lock(mutex_);
  current_ = std::move(snapshot);
}

std::shared_ptr<const RevocationSnapshot> RevocationStore::Current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

Result<std::shared_ptr<const RevocationSnapshot>> LoadCrls(const CrlSources& sources,
                                                           uint64_t version) {
  ORTHRUS_ASSIGN_OR_RETURN(auto cas, tls::LoadCertificates(sources.ca_bundle_file));
  auto snapshot = std::make_shared<RevocationSnapshot>();
  snapshot->version = version;
  snapshot->stale_grace = sources.stale_grace;

  std::unordered_map<std::string, X509*> ca_by_name;
  for (auto& ca : cas) ca_by_name[revocation::NameDer(X509_get_subject_name(ca.get()))] = ca.get();

  for (const auto& path : sources.crl_files) {
    ORTHRUS_ASSIGN_OR_RETURN(auto crls, ReadCrls(path));
    for (auto& crl : crls) {
      std::string issuer = revocation::NameDer(X509_CRL_get_issuer(crl.get()));
      auto ca = ca_by_name.find(issuer);
      if (ca == ca_by_name.end()) {
        return Fail("crl_invalid", path + ": CRL issuer " + revocation::NameText(X509_CRL_get_issuer(crl.get())) +
                                       " is not a CA in " + sources.ca_bundle_file);
      }
      // A forged or corrupted CRL must not be able to un-revoke anything, nor revoke everybody.
      if (X509_CRL_verify(crl.get(), X509_get0_pubkey(ca->second)) != 1) {
        tls::DrainErrors();
        return Fail("crl_invalid", path + ": CRL signature does not verify with the key of " +
                                       revocation::NameText(X509_CRL_get_issuer(crl.get())));
      }
      auto& entry = snapshot->cas[issuer];
      std::time_t this_update = ToTime(X509_CRL_get0_lastUpdate(crl.get()));
      if (!entry.ca_subject.empty() && entry.this_update >= this_update) continue;  // keep newest
      entry = {};
      entry.ca_subject = revocation::NameText(X509_CRL_get_issuer(crl.get()));
      entry.this_update = this_update;
      entry.next_update = ToTime(X509_CRL_get0_nextUpdate(crl.get()));
      STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
      for (int i = 0; revoked != nullptr && i < sk_X509_REVOKED_num(revoked); ++i) {
        entry.revoked.insert(
            SerialHex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))));
      }
    }
  }

  for (const auto& subject : sources.no_crl_cas) {
    bool found = false;
    for (auto& [name_der, ca] : ca_by_name) {
      if (revocation::NameText(X509_get_subject_name(ca)) != subject) continue;
      found = true;
      auto& entry = snapshot->cas[name_der];
      if (!entry.ca_subject.empty() && !entry.no_crl) {
        return Fail("crl_invalid", "no_crl_ca \"" + subject + "\" also has a CRL loaded; choose one");
      }
      entry.ca_subject = subject;
      entry.no_crl = true;
    }
    if (!found) {
      return Fail("crl_invalid", "no_crl_ca \"" + subject + "\" is not the subject of a CA in " +
                                     sources.ca_bundle_file);
    }
  }
  for (auto& [name_der, ca] : ca_by_name) {
    if (!snapshot->cas.contains(name_der)) {
      return Fail("crl_missing", "no CRL for CA " + revocation::NameText(X509_get_subject_name(ca)) +
                                     ": add its CRL to revocation.crl_file or list it in "
                                     "revocation.no_crl_ca");
    }
  }
  return std::shared_ptr<const RevocationSnapshot>(std::move(snapshot));
}

}  // namespace orthrus::edge
