#pragma once
// The applied revocation set: everything one feed (one broker database) says is revoked at one
// version, immutable, queried by the edge at every handshake and every request, and by the broker
// as its own materialized view. A new version is a new set built from the previous one; unchanged
// CRLs and entries are shared, not copied, so applying a one-entry delta to a set holding a
// 100 000-entry CRL costs microseconds.
//
// Thread safety: a RevocationSet is immutable; share it as std::shared_ptr<const RevocationSet> and
// swap the pointer (like edge::RevocationStore::Replace). Builder is a plain single-threaded value.
//
// Lookups
//   FindIssuerSerial/FindCertSha256/FindAccount/FindDeviceId  instant entries, O(1) average
//   FindCrl(issuer_der)                                        O(log #CAs), then SerialSet O(1)
//   CheckChain / CheckCertificate / CheckAccounts / CheckDevice   the per-handshake/per-request
//                                                                 checks, returning a Verdict
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/revocation/keys.h"
#include "common/revocation/serial_set.h"
#include "orthrus/revocation/v1/revocation.pb.h"

namespace orthrus::revocation {

// One CA's CRL as the broker verified it.
struct CrlData {
  std::string issuer_der;
  std::string issuer;       // RFC 2253
  std::string digest;       // SHA-256 of the verified CRL DER: identifies the content
  std::string crl_number;   // big-endian cRLNumber, may be empty
  int64_t this_update = 0;  // unix seconds
  int64_t next_update = 0;  // unix seconds; 0: the CRL states none
  SerialSet serials;
};
using CrlPtr = std::shared_ptr<const CrlData>;

// Complete CrlSet (one piece) <-> CrlData.
void CrlToProto(const CrlData& crl, v1::CrlSet* out);
Result<CrlPtr> CrlFromProto(v1::CrlSet piece);
// The diff that turns `from` into `to` (same issuer).
v1::CrlDiff MakeCrlDiff(const CrlData& from, const CrlData& to);
// Applies a diff; the base's digest must equal diff.base_digest.
Result<CrlPtr> ApplyCrlDiff(const CrlData& base, const v1::CrlDiff& diff);

// What a check found. The names are the reason codes to log (account_revoked, device_revoked are
// proposed additions to common/reason.h).
enum class Finding : uint8_t {
  kNone = 0,
  kCertificateRevoked,  // instant entry: issuer+serial or certificate SHA-256
  kRevokedByCrl,        // the serial is on its issuer's CRL
  kAccountRevoked,
  kDeviceRevoked,
  kCrlStale,            // the issuer's CRL is past nextUpdate + grace
  kCrlMissing,          // require_crl and no CRL for the issuer
  kMalformed,           // a chain element is not DER (cannot be checked, so refused)
};
// "ok", "client_certificate_revoked" (both certificate findings), "account_revoked",
// "device_revoked", "crl_stale", "crl_missing", "client_certificate_malformed".
std::string_view FindingReasonName(Finding finding);

struct Verdict {
  Finding finding = Finding::kNone;
  std::string detail;  // for logs and the operator: what matched; who revoked it, when and why
  bool ok() const { return finding == Finding::kNone; }
};

struct CheckOptions {
  // A CRL this long past its nextUpdate still counts; beyond it every certificate of that CA is
  // refused with kCrlStale (fail closed).
  std::chrono::seconds crl_stale_grace{0};
  // An issuer with no CRL in this set is kCrlMissing. False: such issuers are checked against
  // instant entries only (e.g. when the edge also holds its own CRL files).
  bool require_crl = false;
};

class RevocationSet {
 public:
  class Builder;
  using EntryMap = std::unordered_map<std::string, std::shared_ptr<const v1::Entry>>;
  using CrlMap = std::map<std::string, CrlPtr, std::less<>>;  // by issuer_der

  // Version 0, no feed, nothing revoked.
  static std::shared_ptr<const RevocationSet> Empty();

  const std::string& feed_id() const { return feed_id_; }
  uint64_t version() const { return version_; }
  const EntryMap& entries() const { return entries_; }
  const CrlMap& crls() const { return crls_; }
  uint64_t crl_serial_count() const;

  // ---- lookups (instant entries); nullptr when not revoked
  const v1::Entry* FindIssuerSerial(std::string_view issuer_der, std::string_view serial) const;
  const v1::Entry* FindCertSha256(std::string_view sha256) const;
  const v1::Entry* FindAccount(std::string_view account) const;      // case-insensitive
  const v1::Entry* FindDeviceId(std::string_view device_id) const;   // case-insensitive
  const v1::Entry* Find(const v1::EntryKey& canonical_key) const;
  const CrlData* FindCrl(std::string_view issuer_der) const;

  // ---- checks
  // One certificate: instant issuer+serial, instant SHA-256, then its issuer's CRL.
  Verdict CheckCertificate(const CertKeys& keys, std::time_t now, const CheckOptions& options) const;
  // chain_der: leaf first; the last element (the trust anchor) is not checked, as in
  // edge::RevocationStore::Check. A one-element chain checks that element.
  // Parses every element: OpenSSL 3's public-key decoding makes that ~80 us per certificate, so
  // prefer the X509 overload where the chain is already parsed (the TLS handshake).
  Verdict CheckChain(const std::vector<std::string>& chain_der, std::time_t now,
                     const CheckOptions& options) const;
  // The verified chain as OpenSSL holds it (SSL_get0_verified_chain: leaf first, anchor last).
  Verdict CheckChain(const STACK_OF(X509)* chain, std::time_t now, const CheckOptions& options) const;
  // Account names of the holder: the leaf's UPN SANs on the edge; on the broker also the mapped
  // account's userPrincipalName, sAMAccountName and DOMAIN\sAMAccountName.
  Verdict CheckAccounts(const std::vector<std::string>& accounts) const;
  Verdict CheckDevice(std::string_view device_id) const;  // empty id: ok

  // ---- wire and file forms
  v1::SavedState ToSavedState() const;
  // A full snapshot split so that each part stays near max_part_bytes (large CRLs are cut at serial
  // boundaries into several CrlSet pieces). At least one part; the last has last = true.
  std::vector<v1::SnapshotPart> ToSnapshotParts(size_t max_part_bytes) const;
  static Result<std::shared_ptr<const RevocationSet>> FromSavedState(const v1::SavedState& state);
  // `crl_pieces` in stream order; pieces of one CA are concatenated (see CrlSet.serials_packed).
  static Result<std::shared_ptr<const RevocationSet>> FromSnapshot(
      std::string feed_id, uint64_t version, const std::vector<v1::Entry>& entries,
      std::vector<v1::CrlSet> crl_pieces);
  // Requires delta.from_version == version() < delta.to_version; the result keeps this feed_id.
  Result<std::shared_ptr<const RevocationSet>> ApplyDelta(const v1::Delta& delta) const;

 private:
  const v1::Entry* FindKeyString(const std::string& key) const;

  std::string feed_id_;
  uint64_t version_ = 0;
  EntryMap entries_;
  CrlMap crls_;
};

// Makes the next set from a base: copies the maps (sharing entries and CRLs), applies changes.
class RevocationSet::Builder {
 public:
  Builder() = default;
  explicit Builder(const RevocationSet& base) : entries_(base.entries_), crls_(base.crls_) {}

  // Canonicalizes the entry's key (an invalid key is an error); replaces an entry with that key.
  Status Put(v1::Entry entry);
  // Canonicalizes; removing an absent key is a no-op. Error only for an invalid key.
  Status Remove(const v1::EntryKey& key);
  void PutCrl(CrlPtr crl);
  void RemoveCrl(std::string_view issuer_der);
  const CrlData* FindCrl(std::string_view issuer_der) const;

  std::shared_ptr<const RevocationSet> Build(std::string feed_id, uint64_t version) &&;

 private:
  EntryMap entries_;
  CrlMap crls_;
};

// "2024-05-01T12:00:00Z" for messages.
std::string FormatUnixMs(int64_t unix_ms);

}  // namespace orthrus::revocation
