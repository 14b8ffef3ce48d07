#include "common/revocation/revocation_set.h"

#include <algorithm>
#include <ctime>

#include "common/revocation/errors.h"
#include "common/tls/openssl_handles.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation {
namespace {

std::string WhoWhenWhy(const v1::Entry& e) {
  std::string out = "revoked by " + (e.revoked_by().empty() ? std::string("?") : e.revoked_by()) +
                    " at " + FormatUnixMs(e.revoked_at_unix_ms());
  if (!e.reason().empty()) out += ": " + e.reason();
  return out;
}

std::string FormatUnix(int64_t unix_s) { return FormatUnixMs(unix_s * 1000); }

// The CrlSet fields every piece of one CA carries and that must agree.
bool SameCrlHeader(const v1::CrlSet& a, const v1::CrlSet& b) {
  return a.issuer_der() == b.issuer_der() && a.digest() == b.digest() &&
         a.this_update_unix() == b.this_update_unix() &&
         a.next_update_unix() == b.next_update_unix() && a.crl_number() == b.crl_number() &&
         a.serial_count() == b.serial_count();
}

}  // namespace

std::string FormatUnixMs(int64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string_view FindingReasonName(Finding finding) {
  switch (finding) {
    case Finding::kNone: return "ok";
    case Finding::kCertificateRevoked:
    case Finding::kRevokedByCrl: return "client_certificate_revoked";
    case Finding::kAccountRevoked: return "account_revoked";
    case Finding::kDeviceRevoked: return "device_revoked";
    case Finding::kCrlStale: return "crl_stale";
    case Finding::kCrlMissing: return "crl_missing";
    case Finding::kMalformed: return "client_certificate_malformed";
  }
  return "internal_error";
}

// ---------------------------------------------------------------------------------------- CRLs

void CrlToProto(const CrlData& crl, v1::CrlSet* out) {
  out->set_issuer_der(crl.issuer_der);
  out->set_issuer(crl.issuer);
  out->set_digest(crl.digest);
  out->set_this_update_unix(crl.this_update);
  out->set_next_update_unix(crl.next_update);
  out->set_crl_number(crl.crl_number);
  out->set_serial_count(crl.serials.size());
  out->set_serials_packed(crl.serials.packed());
}

Result<CrlPtr> CrlFromProto(v1::CrlSet piece) {
  if (piece.issuer_der().empty()) return Fail(errc::kProtocol, "CRL set without issuer");
  ORTHRUS_ASSIGN_OR_RETURN(uint64_t count, CountPacked(piece.serials_packed()));
  if (count != piece.serial_count()) {
    return Fail(errc::kProtocol, "CRL set of " + piece.issuer() + " has " + std::to_string(count) +
                                     " serials, announced " + std::to_string(piece.serial_count()));
  }
  auto crl = std::make_shared<CrlData>();
  crl->issuer_der = std::move(*piece.mutable_issuer_der());
  crl->issuer = std::move(*piece.mutable_issuer());
  crl->digest = std::move(*piece.mutable_digest());
  crl->crl_number = std::move(*piece.mutable_crl_number());
  crl->this_update = piece.this_update_unix();
  crl->next_update = piece.next_update_unix();
  ORTHRUS_ASSIGN_OR_RETURN(crl->serials,
                           SerialSet::FromPacked(std::move(*piece.mutable_serials_packed())));
  return CrlPtr(std::move(crl));
}

v1::CrlDiff MakeCrlDiff(const CrlData& from, const CrlData& to) {
  v1::CrlDiff diff;
  diff.set_issuer_der(to.issuer_der);
  diff.set_issuer(to.issuer);
  diff.set_base_digest(from.digest);
  diff.set_digest(to.digest);
  diff.set_this_update_unix(to.this_update);
  diff.set_next_update_unix(to.next_update);
  diff.set_crl_number(to.crl_number);
  diff.set_serial_count(to.serials.size());
  std::string* added = diff.mutable_added_packed();
  std::string* removed = diff.mutable_removed_packed();
  to.serials.ForEach([&](std::string_view s) {
    if (!from.serials.Contains(s)) AppendPacked(*added, s);
  });
  from.serials.ForEach([&](std::string_view s) {
    if (!to.serials.Contains(s)) AppendPacked(*removed, s);
  });
  return diff;
}

Result<CrlPtr> ApplyCrlDiff(const CrlData& base, const v1::CrlDiff& diff) {
  if (diff.issuer_der() != base.issuer_der || diff.base_digest() != base.digest) {
    return Fail(errc::kProtocol, "CRL diff for " + diff.issuer() + " does not apply to the CRL held");
  }
  ORTHRUS_ASSIGN_OR_RETURN(SerialSet removed, SerialSet::FromPacked(diff.removed_packed()));
  std::string packed;
  packed.reserve(base.serials.packed().size() + diff.added_packed().size());
  base.serials.ForEach([&](std::string_view s) {
    if (!removed.Contains(s)) AppendPacked(packed, s);
  });
  ORTHRUS_TRY(ForEachPacked(diff.added_packed(), [&](std::string_view s) { AppendPacked(packed, s); }));
  auto crl = std::make_shared<CrlData>();
  crl->issuer_der = base.issuer_der;
  crl->issuer = diff.issuer().empty() ? base.issuer : diff.issuer();
  crl->digest = diff.digest();
  crl->crl_number = diff.crl_number();
  crl->this_update = diff.this_update_unix();
  crl->next_update = diff.next_update_unix();
  ORTHRUS_ASSIGN_OR_RETURN(crl->serials, SerialSet::FromPacked(std::move(packed)));
  if (crl->serials.size() != diff.serial_count()) {
    return Fail(errc::kProtocol, "CRL diff for " + crl->issuer + " gives " +
                                     std::to_string(crl->serials.size()) + " serials, announced " +
                                     std::to_string(diff.serial_count()));
  }
  return CrlPtr(std::move(crl));
}

// ------------------------------------------------------------------------------------- builder

Status RevocationSet::Builder::Put(v1::Entry entry) {
  ORTHRUS_ASSIGN_OR_RETURN(v1::EntryKey key, CanonicalKey(entry.key()));
  std::string ks = KeyString(key);
  *entry.mutable_key() = std::move(key);
  entries_[std::move(ks)] = std::make_shared<const v1::Entry>(std::move(entry));
  return {};
}

Status RevocationSet::Builder::Remove(const v1::EntryKey& key) {
  ORTHRUS_ASSIGN_OR_RETURN(v1::EntryKey canonical, CanonicalKey(key));
  entries_.erase(KeyString(canonical));
  return {};
}

void RevocationSet::Builder::PutCrl(CrlPtr crl) {
  std::string issuer = crl->issuer_der;
  crls_[std::move(issuer)] = std::move(crl);
}

void RevocationSet::Builder::RemoveCrl(std::string_view issuer_der) {
  auto it = crls_.find(issuer_der);
  if (it != crls_.end()) crls_.erase(it);
}

const CrlData* RevocationSet::Builder::FindCrl(std::string_view issuer_der) const {
  auto it = crls_.find(issuer_der);
  return it == crls_.end() ? nullptr : it->second.get();
}

std::shared_ptr<const RevocationSet> RevocationSet::Builder::Build(std::string feed_id,
                                                                   uint64_t version) && {
  auto set = std::make_shared<RevocationSet>();
  set->feed_id_ = std::move(feed_id);
  set->version_ = version;
  set->entries_ = std::move(entries_);
  set->crls_ = std::move(crls_);
  return set;
}

// ------------------------------------------------------------------------------------- lookups

std::shared_ptr<const RevocationSet> RevocationSet::Empty() {
  static const auto empty = std::make_shared<const RevocationSet>();
  return empty;
}

uint64_t RevocationSet::crl_serial_count() const {
  uint64_t n = 0;
  for (const auto& [issuer, crl] : crls_) n += crl->serials.size();
  return n;
}

const v1::Entry* RevocationSet::FindKeyString(const std::string& key) const {
  if (entries_.empty()) return nullptr;
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.get();
}

const v1::Entry* RevocationSet::FindIssuerSerial(std::string_view issuer_der,
                                                 std::string_view serial) const {
  if (entries_.empty()) return nullptr;
  return FindKeyString(IssuerSerialKeyString(issuer_der, serial));
}

const v1::Entry* RevocationSet::FindCertSha256(std::string_view sha256) const {
  if (entries_.empty()) return nullptr;
  return FindKeyString(CertSha256KeyString(sha256));
}

const v1::Entry* RevocationSet::FindAccount(std::string_view account) const {
  if (entries_.empty() || account.empty()) return nullptr;
  return FindKeyString(AccountKeyString(account));
}

const v1::Entry* RevocationSet::FindDeviceId(std::string_view device_id) const {
  if (entries_.empty() || device_id.empty()) return nullptr;
  return FindKeyString(DeviceIdKeyString(device_id));
}

const v1::Entry* RevocationSet::Find(const v1::EntryKey& canonical_key) const {
  return FindKeyString(KeyString(canonical_key));
}

const CrlData* RevocationSet::FindCrl(std::string_view issuer_der) const {
  auto it = crls_.find(issuer_der);
  return it == crls_.end() ? nullptr : it->second.get();
}

Verdict RevocationSet::CheckCertificate(const CertKeys& keys, std::time_t now,
                                        const CheckOptions& options) const {
  if (const v1::Entry* e = FindIssuerSerial(keys.issuer_der, keys.serial)) {
    return {Finding::kCertificateRevoked, "serial " + SerialToHex(keys.serial) + " of " +
                                              e->key().issuer_serial().issuer() + " " +
                                              WhoWhenWhy(*e)};
  }
  if (const v1::Entry* e = FindCertSha256(keys.sha256)) {
    return {Finding::kCertificateRevoked,
            "certificate sha256 " + tls::HexLower(keys.sha256) + " " + WhoWhenWhy(*e)};
  }
  const CrlData* crl = FindCrl(keys.issuer_der);
  if (crl == nullptr) {
    if (!options.require_crl) return {};
    const auto* p = reinterpret_cast<const unsigned char*>(keys.issuer_der.data());
    std::unique_ptr<X509_NAME, tls::Deleter<X509_NAME_free>> name(
        d2i_X509_NAME(nullptr, &p, static_cast<long>(keys.issuer_der.size())));
    return {Finding::kCrlMissing,
            "no pushed CRL for issuer " + (name ? NameText(name.get()) : std::string("?"))};
  }
  if (crl->serials.Contains(keys.serial)) {
    return {Finding::kRevokedByCrl, "serial " + SerialToHex(keys.serial) + " is on the CRL of " +
                                        crl->issuer + " (thisUpdate " +
                                        FormatUnix(crl->this_update) + ")"};
  }
  if (crl->next_update != 0 && now > crl->next_update + options.crl_stale_grace.count()) {
    return {Finding::kCrlStale, "CRL of " + crl->issuer + " expired " +
                                    std::to_string(now - crl->next_update) + " s ago (nextUpdate " +
                                    FormatUnix(crl->next_update) + ")"};
  }
  return {};
}

Verdict RevocationSet::CheckChain(const std::vector<std::string>& chain_der, std::time_t now,
                                  const CheckOptions& options) const {
  size_t checked = chain_der.size() > 1 ? chain_der.size() - 1 : chain_der.size();
  for (size_t i = 0; i < checked; ++i) {
    auto keys = KeysFromDer(chain_der[i]);
    if (!keys) return {Finding::kMalformed, "chain element " + std::to_string(i) +
                                                         " cannot be checked: " + keys.error().detail};
    Verdict v = CheckCertificate(*keys, now, options);
    if (!v.ok()) return v;
  }
  return {};
}

Verdict RevocationSet::CheckChain(const STACK_OF(X509)* chain, std::time_t now,
                                  const CheckOptions& options) const {
  int n = chain == nullptr ? 0 : sk_X509_num(chain);
  int checked = n > 1 ? n - 1 : n;
  for (int i = 0; i < checked; ++i) {
    auto keys = KeysFromCertificate(sk_X509_value(chain, i));
    if (!keys) return {Finding::kMalformed, "chain element " + std::to_string(i) +
                                                " cannot be checked: " + keys.error().detail};
    Verdict v = CheckCertificate(*keys, now, options);
    if (!v.ok()) return v;
  }
  return {};
}

Verdict RevocationSet::CheckAccounts(const std::vector<std::string>& accounts) const {
  for (const auto& account : accounts) {
    if (const v1::Entry* e = FindAccount(account)) {
      return {Finding::kAccountRevoked, "account " + e->key().account() + " " + WhoWhenWhy(*e)};
    }
  }
  return {};
}

Verdict RevocationSet::CheckDevice(std::string_view device_id) const {
  if (const v1::Entry* e = FindDeviceId(device_id)) {
    return {Finding::kDeviceRevoked, "device " + e->key().device_id() + " " + WhoWhenWhy(*e)};
  }
  return {};
}

// ------------------------------------------------------------------------------- wire and file

v1::SavedState RevocationSet::ToSavedState() const {
  v1::SavedState out;
  out.set_feed_id(feed_id_);
  out.set_version(version_);
  std::vector<const v1::Entry*> sorted;
  sorted.reserve(entries_.size());
  for (const auto& [k, e] : entries_) sorted.push_back(e.get());
  std::sort(sorted.begin(), sorted.end(),
            [](const v1::Entry* a, const v1::Entry* b) { return a->version() < b->version(); });
  for (const v1::Entry* e : sorted) *out.add_entries() = *e;
  for (const auto& [issuer, crl] : crls_) CrlToProto(*crl, out.add_crls());
  return out;
}

std::vector<v1::SnapshotPart> RevocationSet::ToSnapshotParts(size_t max_part_bytes) const {
  max_part_bytes = std::max<size_t>(max_part_bytes, 4096);
  std::vector<v1::SnapshotPart> parts(1);
  size_t used = 0;
  auto room = [&](size_t need) {
    if (used > 0 && used + need > max_part_bytes) {
      parts.emplace_back();
      used = 0;
    }
    used += need;
  };
  std::vector<const v1::Entry*> sorted;
  sorted.reserve(entries_.size());
  for (const auto& [k, e] : entries_) sorted.push_back(e.get());
  std::sort(sorted.begin(), sorted.end(),
            [](const v1::Entry* a, const v1::Entry* b) { return a->version() < b->version(); });
  for (const v1::Entry* e : sorted) {
    room(e->ByteSizeLong() + 8);
    *parts.back().add_entries() = *e;
  }
  for (const auto& [issuer, crl] : crls_) {
    const std::string& packed = crl->serials.packed();
    const size_t header = crl->issuer_der.size() + crl->issuer.size() + crl->digest.size() +
                          crl->crl_number.size() + 64;
    size_t pos = 0;
    do {
      // Start a new part unless this one has room for the header and a useful amount of serials.
      if (used > 0 && used + header + std::min<size_t>(packed.size() - pos, 1024) > max_part_bytes) {
        parts.emplace_back();
        used = 0;
      }
      size_t budget = max_part_bytes > used + header + 64 ? max_part_bytes - used - header : 64;
      size_t end = pos;  // cut at a serial boundary; at least one serial per piece
      while (end < packed.size()) {
        size_t next = end + 1 + static_cast<unsigned char>(packed[end]);
        if (next - pos > budget && end > pos) break;
        end = next;
      }
      v1::CrlSet* piece = parts.back().add_crls();
      piece->set_issuer_der(crl->issuer_der);
      piece->set_issuer(crl->issuer);
      piece->set_digest(crl->digest);
      piece->set_this_update_unix(crl->this_update);
      piece->set_next_update_unix(crl->next_update);
      piece->set_crl_number(crl->crl_number);
      piece->set_serial_count(crl->serials.size());
      piece->set_serials_packed(packed.substr(pos, end - pos));
      used += header + (end - pos);
      pos = end;
    } while (pos < packed.size());
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    parts[i].set_version(version_);
    parts[i].set_index(static_cast<uint32_t>(i));
    parts[i].set_last(i + 1 == parts.size());
  }
  return parts;
}

Result<std::shared_ptr<const RevocationSet>> RevocationSet::FromSnapshot(
    std::string feed_id, uint64_t version, const std::vector<v1::Entry>& entries,
    std::vector<v1::CrlSet> crl_pieces) {
  Builder builder;
  for (const auto& e : entries) {
    auto st = builder.Put(e);
    if (!st) return Fail(errc::kProtocol, "snapshot entry: " + st.error().detail);
  }
  // Concatenate the pieces of each CA (in stream order), checking they describe the same CRL.
  std::vector<v1::CrlSet> whole;
  std::map<std::string, size_t, std::less<>> index;
  for (auto& piece : crl_pieces) {
    auto it = index.find(piece.issuer_der());
    if (it == index.end()) {
      index.emplace(piece.issuer_der(), whole.size());
      whole.push_back(std::move(piece));
      continue;
    }
    v1::CrlSet& into = whole[it->second];
    if (!SameCrlHeader(into, piece)) {
      return Fail(errc::kProtocol, "snapshot pieces of the CRL of " + piece.issuer() + " disagree");
    }
    into.mutable_serials_packed()->append(piece.serials_packed());
  }
  for (auto& crl : whole) {
    ORTHRUS_ASSIGN_OR_RETURN(CrlPtr data, CrlFromProto(std::move(crl)));
    builder.PutCrl(std::move(data));
  }
  return std::move(builder).Build(std::move(feed_id), version);
}

Result<std::shared_ptr<const RevocationSet>> RevocationSet::FromSavedState(
    const v1::SavedState& state) {
  std::vector<v1::Entry> entries(state.entries().begin(), state.entries().end());
  std::vector<v1::CrlSet> crls(state.crls().begin(), state.crls().end());
  return FromSnapshot(state.feed_id(), state.version(), entries, std::move(crls));
}

Result<std::shared_ptr<const RevocationSet>> RevocationSet::ApplyDelta(const v1::Delta& delta) const {
  if (delta.from_version() != version_) {
    return Fail(errc::kProtocol, "delta from version " + std::to_string(delta.from_version()) +
                                     " does not apply to version " + std::to_string(version_));
  }
  if (delta.to_version() <= delta.from_version()) {
    return Fail(errc::kProtocol, "delta to version " + std::to_string(delta.to_version()) +
                                     " does not advance from " + std::to_string(delta.from_version()));
  }
  Builder builder(*this);
  for (const auto& key : delta.removed()) {
    auto st = builder.Remove(key);
    if (!st) return Fail(errc::kProtocol, "delta removal: " + st.error().detail);
  }
  for (const auto& e : delta.added()) {
    auto st = builder.Put(e);
    if (!st) return Fail(errc::kProtocol, "delta entry: " + st.error().detail);
  }
  for (const auto& issuer : delta.crls_removed()) builder.RemoveCrl(issuer);
  for (const auto& set : delta.crls_replaced()) {
    ORTHRUS_ASSIGN_OR_RETURN(CrlPtr crl, CrlFromProto(set));
    builder.PutCrl(std::move(crl));
  }
  for (const auto& diff : delta.crls_changed()) {
    const CrlData* base = builder.FindCrl(diff.issuer_der());
    if (base == nullptr) {
      return Fail(errc::kProtocol, "CRL diff for " + diff.issuer() + " but no CRL held for it");
    }
    ORTHRUS_ASSIGN_OR_RETURN(CrlPtr crl, ApplyCrlDiff(*base, diff));
    builder.PutCrl(std::move(crl));
  }
  return std::move(builder).Build(feed_id_, delta.to_version());
}

}  // namespace orthrus::revocation
