#pragma once
// Revocation facts the edge checks every device chain against, without any network access: the DMZ
// never fetches CRLs itself. Loaded from CRL files here; later pushed by the brokers. A snapshot is
// immutable and replaced whole, so a check never sees half an update and never takes a lock for long.
#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/reason.h"
#include "common/result.h"

namespace orthrus::edge {

struct RevocationSnapshot {
  struct CaEntry {
    std::string ca_subject;                     // RFC 2253, for logs
    bool no_crl = false;                        // explicitly accepted without a CRL
    std::unordered_set<std::string> revoked;    // serials, lower-case hex as in CertIdentity
    std::time_t this_update = 0;
    std::time_t next_update = 0;                // 0: the CRL states none
  };
  // Keyed by the DER encoding of the CA's subject name (= the issuer name of what it signs).
  std::unordered_map<std::string, CaEntry> cas;
  uint64_t version = 0;
  std::chrono::seconds stale_grace{0};
};

struct RevocationVerdict {
  Reason reason = Reason::kOk;  // kOk, kClientCertificateRevoked, kCrlStale, kCrlMissing
  std::string detail;
};

// What a chain is checked by: per certificate (anchor excluded), its issuer and serial. Computed
// once per connection, so a request costs hash lookups instead of parsing the chain again.
struct ChainRevocationKey {
  std::string issuer_der;   // DER of the issuer name (the CA's subject)
  std::string issuer_text;  // RFC 2253, for messages
  std::string serial_hex;   // as in CertIdentity
};
// chain_der: leaf first; the last element (the trust anchor) is not included.
Result<std::vector<ChainRevocationKey>> CrlLookupKeys(const std::vector<std::string>& chain_der);

class RevocationStore {
 public:
  // chain_der: leaf first; the last element (the trust anchor) is not checked.
  RevocationVerdict Check(const std::vector<std::string>& chain_der, std::time_t now) const;
  RevocationVerdict Check(const std::vector<ChainRevocationKey>& chain, std::time_t now) const;
  void Replace(std::shared_ptr<const RevocationSnapshot> snapshot);
  std::shared_ptr<const RevocationSnapshot> Current() const;

 private:
  mutable std::mutex mutex_;  // guards the pointer only; snapshots are immutable
  std::shared_ptr<const RevocationSnapshot> current_;
};

struct CrlSources {
  std::vector<std::string> crl_files;
  std::string ca_bundle_file;           // the CAs whose CRLs these are (listen.client_ca_file)
  std::vector<std::string> no_crl_cas;  // RFC 2253 subjects
  std::chrono::seconds stale_grace{0};
};

// Reads and verifies every CRL (signature by its CA from the bundle; a CRL from an unknown CA or with
// a bad signature is an error naming the file) and requires a CRL or a no_crl entry for every CA in
// the bundle. `version` is stamped on the snapshot.
Result<std::shared_ptr<const RevocationSnapshot>> LoadCrls(const CrlSources& sources,
                                                           uint64_t version);

}  // namespace orthrus::edge
