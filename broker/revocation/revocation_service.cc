#include "broker/revocation/revocation_service.h"

#include <algorithm>

#include "common/log.h"
#include "common/revocation/errors.h"
#include "common/revocation/keys.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation {
namespace {

// Canonical cRLNumber octets: longer is larger, then lexicographic.
bool NumberGreater(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() > b.size();
  return a > b;
}

bool Newer(const CrlData& a, const CrlData& b) {
  if (a.this_update != b.this_update) return a.this_update > b.this_update;
  return NumberGreater(a.crl_number, b.crl_number);
}

int64_t NowMs(std::time_t now) { return static_cast<int64_t>(now) * 1000; }

}  // namespace

RevocationServiceSettings SettingsFromConfig(const config::v1::RevocationServiceConfig& c) {
  RevocationServiceSettings s;
  s.database_file = c.database_file();
  for (const auto& src : c.crl_source()) {
    CrlSourceSettings one;
    if (src.source_case() == config::v1::CrlSource::kFile) one.file = src.file();
    if (src.source_case() == config::v1::CrlSource::kUrl) one.url = src.url();
    if (src.has_refresh_margin_seconds()) one.refresh_margin = std::chrono::seconds(src.refresh_margin_seconds());
    s.sources.push_back(std::move(one));
  }
  s.crl_ca_files.assign(c.crl_ca_file().begin(), c.crl_ca_file().end());
  if (c.has_refresh_margin_seconds()) s.refresh.margin = std::chrono::seconds(c.refresh_margin_seconds());
  if (c.has_min_refresh_interval_seconds()) {
    s.refresh.min_interval = std::chrono::seconds(std::max<uint32_t>(1, c.min_refresh_interval_seconds()));
  }
  if (c.has_max_refresh_interval_seconds()) {
    s.refresh.max_interval = std::chrono::seconds(c.max_refresh_interval_seconds());
  }
  if (c.has_http_timeout_ms()) s.http_timeout = std::chrono::milliseconds(c.http_timeout_ms());
  if (c.has_http_max_bytes()) s.http_max_bytes = c.http_max_bytes();
  if (c.has_change_log_retention()) s.change_log_retention = std::max<uint32_t>(1, c.change_log_retention());
  if (c.has_heartbeat_interval_ms()) {
    s.heartbeat_interval = std::chrono::milliseconds(std::max<uint32_t>(100, c.heartbeat_interval_ms()));
  }
  s.state.history_limit = s.change_log_retention;
  return s;
}

RevocationService::RevocationService(RevocationServiceSettings settings, std::unique_ptr<RevocationDb> db,
                                     CrlVerifier verifier)
    : settings_(std::move(settings)),
      db_(std::move(db)),
      verifier_(std::move(verifier)),
      state_(db_->feed_id(), settings_.state) {}

Result<std::unique_ptr<RevocationService>> RevocationService::Open(RevocationServiceSettings settings,
                                                                   std::time_t now) {
  if (!settings.sources.empty() && settings.crl_ca_files.empty()) {
    return Fail(errc::kCrlUnknownIssuer, "CRL sources are configured but no crl_ca_file to verify them");
  }
  ORTHRUS_ASSIGN_OR_RETURN(CrlVerifier verifier, CrlVerifier::FromCaFiles(settings.crl_ca_files));
  settings.state.history_limit = settings.change_log_retention;
  ORTHRUS_ASSIGN_OR_RETURN(auto db, RevocationDb::Open(settings.database_file,
                                                       {.change_log_retention = settings.change_log_retention}));
  std::unique_ptr<RevocationService> self(
      new RevocationService(std::move(settings), std::move(db), std::move(verifier)));

  // Cached CRLs: re-verified, since the CA files may have changed since they were stored.
  RevocationSet::Builder builder;
  ORTHRUS_ASSIGN_OR_RETURN(auto stored, self->db_->StoredCrls());
  std::vector<std::pair<std::string, std::string>> cached_sources;  // issuer_der, source
  for (const auto& s : stored) {
    auto crls = self->verifier_.Load(s.der, "cached CRL of " + s.issuer);
    if (!crls || crls->size() != 1 || crls->front().data->issuer_der != s.issuer_der) {
      log::Warn("crl_cache_dropped", {{"issuer", s.issuer},
                                      {"code", crls ? std::string("crl_invalid") : crls.error().code},
                                      {"detail", crls ? std::string("cached CRL changed issuer") : crls.error().detail}});
      ORTHRUS_TRY(self->db_->RemoveCrl(s.issuer_der, NowMs(now)));
      continue;
    }
    builder.PutCrl(crls->front().data);
    cached_sources.emplace_back(s.issuer_der, s.source);
  }
  ORTHRUS_ASSIGN_OR_RETURN(auto entries, self->db_->ListEntries("", 0, 0));
  for (auto& e : entries) ORTHRUS_TRY(builder.Put(std::move(e)));
  auto set = std::move(builder).Build(self->db_->feed_id(), self->db_->version());

  uint64_t from = self->db_->oldest_delta_version();
  ORTHRUS_ASSIGN_OR_RETURN(auto changes, self->db_->ChangesSince(from));
  std::vector<InstantChange> history;
  if (changes) {
    for (auto& c : *changes) {
      if (c.op != DbChange::Op::kAdd && c.op != DbChange::Op::kRemove) continue;
      history.push_back({c.version, c.op == DbChange::Op::kAdd, std::move(c.entry)});
    }
  } else {
    from = set->version();  // no usable log: only the current version gets deltas
  }
  self->state_.Reset(std::move(set), from, std::move(history));

  for (const auto& src : self->settings_.sources) {
    SourceState st;
    st.settings = src;
    for (const auto& [issuer, source] : cached_sources) {
      if (source == src.name()) st.issuers.push_back(issuer);
    }
    self->sources_.push_back(std::move(st));
  }
  return self;
}

Result<v1::EntryKey> RevocationService::ResolveKey(const v1::EntryKey& key) const {
  if (key.has_issuer_serial() && key.issuer_serial().issuer_der().empty() &&
      !key.issuer_serial().issuer().empty()) {
    v1::EntryKey resolved = key;
    ORTHRUS_ASSIGN_OR_RETURN(*resolved.mutable_issuer_serial()->mutable_issuer_der(),
                             verifier_.ResolveIssuer(key.issuer_serial().issuer()));
    resolved.mutable_issuer_serial()->clear_issuer();  // re-derived from the DER
    return CanonicalKey(resolved);
  }
  return CanonicalKey(key);
}

Result<v1::RevokeResponse> RevocationService::Revoke(const v1::RevokeRequest& request, const std::string& who,
                                                     int64_t now_unix_ms) {
  if (request.reason().empty()) {
    return Fail(errc::kInvalidRequest, "a revocation needs a reason (who asked, ticket, why)");
  }
  if (who.empty()) return Fail(errc::kInvalidRequest, "the administrator is unknown");
  ORTHRUS_ASSIGN_OR_RETURN(v1::EntryKey key, ResolveKey(request.key()));
  RevocationDb::RevokeResult stored;
  {
    std::lock_guard lock(write_mutex_);
    ORTHRUS_ASSIGN_OR_RETURN(stored, db_->Revoke(key, who, request.reason(), now_unix_ms));
    if (!stored.already_revoked) {
      StateChange change;
      change.version = stored.version;
      change.kind = StateChange::Kind::kAdd;
      change.entry = stored.entry;
      ORTHRUS_TRY(state_.Apply(change));
    }
  }
  log::Info("revocation_revoked", {{"key", DescribeKey(stored.entry.key())},
                                   {"by", who},
                                   {"why", request.reason()},
                                   {"version", stored.entry.version()},
                                   {"already", stored.already_revoked}});
  v1::RevokeResponse response;
  uint64_t version = stored.entry.version();
  *response.mutable_entry() = std::move(stored.entry);
  response.set_already_revoked(stored.already_revoked);
  uint32_t wait = std::min(request.wait_for_edges_ms(), settings_.max_wait_for_edges_ms);
  *response.mutable_acks() = wait > 0 ? state_.WaitForAcks(version, std::chrono::milliseconds(wait))
                                      : state_.CountAcks(version);
  return response;
}

Result<v1::UnrevokeResponse> RevocationService::Unrevoke(const v1::UnrevokeRequest& request,
                                                         const std::string& who, int64_t now_unix_ms) {
  if (request.reason().empty()) return Fail(errc::kInvalidRequest, "an unrevocation needs a reason");
  if (who.empty()) return Fail(errc::kInvalidRequest, "the administrator is unknown");
  ORTHRUS_ASSIGN_OR_RETURN(v1::EntryKey key, ResolveKey(request.key()));
  RevocationDb::UnrevokeResult removed;
  {
    std::lock_guard lock(write_mutex_);
    ORTHRUS_ASSIGN_OR_RETURN(removed, db_->Unrevoke(key, who, request.reason(), now_unix_ms));
    StateChange change;
    change.version = removed.version;
    change.kind = StateChange::Kind::kRemove;
    *change.entry.mutable_key() = key;
    ORTHRUS_TRY(state_.Apply(change));
  }
  log::Info("revocation_unrevoked", {{"key", DescribeKey(key)},
                                     {"by", who},
                                     {"why", request.reason()},
                                     {"version", removed.version}});
  v1::UnrevokeResponse response;
  *response.mutable_removed() = std::move(removed.removed);
  response.set_version(removed.version);
  uint32_t wait = std::min(request.wait_for_edges_ms(), settings_.max_wait_for_edges_ms);
  *response.mutable_acks() = wait > 0 ? state_.WaitForAcks(removed.version, std::chrono::milliseconds(wait))
                                      : state_.CountAcks(removed.version);
  return response;
}

Result<v1::ListRevokedResponse> RevocationService::ListRevoked(const v1::ListRevokedRequest& request) const {
  const std::string& kind = request.kind();
  if (!kind.empty() && kind != "issuer_serial" && kind != "cert_sha256" && kind != "account" &&
      kind != "device_id") {
    return Fail(errc::kInvalidRequest, "unknown kind \"" + kind +
                                           "\" (issuer_serial, cert_sha256, account, device_id)");
  }
  uint32_t limit = request.limit() == 0 ? 1000 : std::min<uint32_t>(request.limit(), 100000);
  ORTHRUS_ASSIGN_OR_RETURN(auto entries, db_->ListEntries(kind, request.after_version(), limit + 1));
  v1::ListRevokedResponse response;
  response.set_more(entries.size() > limit);
  if (entries.size() > limit) entries.resize(limit);
  for (auto& e : entries) *response.add_entries() = std::move(e);
  response.set_version(state_.version());
  for (auto& s : CrlStatuses()) *response.add_crls() = std::move(s);
  return response;
}

Result<v1::StatusResponse> RevocationService::Status(const v1::StatusRequest& request) const {
  v1::StatusResponse response;
  auto set = state_.current();
  response.set_feed_id(state_.feed_id());
  response.set_version(set->version());
  response.set_oldest_delta_version(state_.oldest_delta_version());
  response.set_instant_entries(set->entries().size());
  *response.mutable_acks() = state_.CountAcks(request.version() == 0 ? set->version() : request.version());
  for (auto& e : state_.Edges()) *response.add_edges() = std::move(e);
  for (auto& s : CrlStatuses()) *response.add_crls() = std::move(s);
  return response;
}

orthrus::Status RevocationService::AcceptCrl(const VerifiedCrl& crl, const std::string& source, int64_t now_unix_ms) {
  std::lock_guard lock(write_mutex_);
  auto set = state_.current();
  const CrlData* current = set->FindCrl(crl.data->issuer_der);
  if (current != nullptr && current->digest == crl.data->digest) return {};  // unchanged
  if (current != nullptr && !Newer(*crl.data, *current)) {
    return Fail(errc::kCrlRollback, source + ": CRL of " + crl.data->issuer + " (thisUpdate " +
                                        FormatUnixMs(crl.data->this_update * 1000) +
                                        ") is not newer than the one in force (thisUpdate " +
                                        FormatUnixMs(current->this_update * 1000) + "); keeping it");
  }
  StoredCrl stored;
  stored.issuer_der = crl.data->issuer_der;
  stored.issuer = crl.data->issuer;
  stored.source = source;
  stored.der = crl.der;
  stored.digest = crl.data->digest;
  stored.this_update = crl.data->this_update;
  stored.next_update = crl.data->next_update;
  ORTHRUS_ASSIGN_OR_RETURN(uint64_t version, db_->StoreCrl(stored, now_unix_ms));
  StateChange change;
  change.version = version;
  change.kind = StateChange::Kind::kCrlReplace;
  change.crl = crl.data;
  ORTHRUS_TRY(state_.Apply(change));
  log::Info("crl_loaded", {{"source", source},
                           {"issuer", crl.data->issuer},
                           {"serials", static_cast<uint64_t>(crl.data->serials.size())},
                           {"this_update", FormatUnixMs(crl.data->this_update * 1000)},
                           {"next_update", crl.data->next_update == 0
                                               ? std::string("none")
                                               : FormatUnixMs(crl.data->next_update * 1000)},
                           {"version", version}});
  return {};
}

std::vector<v1::CrlStatus> RevocationService::RefreshCrls(std::time_t now, bool force) {
  std::lock_guard refresh(refresh_mutex_);
  std::vector<size_t> due;
  {
    std::lock_guard lock(sources_mutex_);
    for (size_t i = 0; i < sources_.size(); ++i) {
      if (force || sources_[i].next_refresh <= now) due.push_back(i);
    }
  }
  for (size_t i : due) {
    CrlSourceSettings src;
    {
      std::lock_guard lock(sources_mutex_);
      src = sources_[i].settings;
    }
    const std::string& name = src.name();
    RefreshPolicy policy = settings_.refresh;
    if (src.refresh_margin) policy.margin = *src.refresh_margin;

    Error error;
    std::vector<std::string> issuers;
    auto bytes = src.file.empty() ? HttpGet(src.url, settings_.http_timeout, settings_.http_max_bytes)
                                  : ReadCrlFile(src.file, settings_.http_max_bytes);
    if (!bytes) {
      error = bytes.error();
    } else if (auto crls = verifier_.Load(*bytes, name); !crls) {
      error = crls.error();
    } else {
      for (const auto& crl : *crls) {
        issuers.push_back(crl.data->issuer_der);
        if (auto st = AcceptCrl(crl, name, NowMs(now)); !st && error.code.empty()) error = st.error();
      }
    }
    // Schedule from what is in force now (the new CRL, or the one kept).
    auto set = state_.current();
    std::time_t next = 0;
    for (const auto& issuer : issuers) {
      std::time_t t = NextRefreshTime(now, set->FindCrl(issuer), false, policy);
      next = next == 0 ? t : std::min(next, t);
    }
    if (!error.code.empty() || issuers.empty()) {
      next = NextRefreshTime(now, nullptr, true, policy);
      log::Warn("crl_refresh_failed", {{"source", name}, {"code", error.code}, {"detail", error.detail}});
    }
    std::lock_guard lock(sources_mutex_);
    SourceState& st = sources_[i];
    st.next_refresh = next;
    st.last_error_code = error.code;
    st.last_error = error.detail;
    if (!issuers.empty()) st.issuers = issuers;
    if (error.code.empty()) st.last_success = now;
  }
  return CrlStatuses();
}

std::vector<v1::CrlStatus> RevocationService::CrlStatuses() const {
  std::lock_guard lock(sources_mutex_);
  return CrlStatusesLocked();
}

std::vector<v1::CrlStatus> RevocationService::CrlStatusesLocked() const {
  auto set = state_.current();
  std::vector<v1::CrlStatus> out;
  for (const auto& src : sources_) {
    auto fill = [&](v1::CrlStatus& s) {
      s.set_source(src.settings.name());
      s.set_next_refresh_unix(src.next_refresh);
      s.set_last_success_unix(src.last_success);
      s.set_last_error_code(src.last_error_code);
      s.set_last_error(src.last_error);
    };
    if (src.issuers.empty()) {
      fill(out.emplace_back());
      continue;
    }
    for (const auto& issuer : src.issuers) {
      v1::CrlStatus& s = out.emplace_back();
      fill(s);
      if (const CrlData* crl = set->FindCrl(issuer)) {
        s.set_issuer(crl->issuer);
        s.set_digest(crl->digest);
        s.set_this_update_unix(crl->this_update);
        s.set_next_update_unix(crl->next_update);
        s.set_serial_count(crl->serials.size());
      }
    }
  }
  return out;
}

std::time_t RevocationService::NextRefreshDue() const {
  std::lock_guard lock(sources_mutex_);
  std::time_t next = 0;
  for (const auto& src : sources_) next = next == 0 ? src.next_refresh : std::min(next, src.next_refresh);
  return next;
}

}  // namespace orthrus::revocation
