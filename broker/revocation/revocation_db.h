#pragma once
// The broker's durable revocation store: instant revocations (with who, when, why), the feed's
// version counter, a change log for deltas, and the last good copy of every CRL (so a broker that
// restarts while a CRL distribution point is down still pushes that CRL, never an empty one).
//
// SQLite in WAL mode with synchronous=FULL: every write is one transaction whose COMMIT fsyncs the
// WAL, so when Revoke() returns the revocation survives kill -9 and power loss. The database is
// opened with locking_mode=EXCLUSIVE: a second broker process on the same file fails to open it
// (two writers would hand out the same versions to different changes).
//
// Versions: every change (revoke, unrevoke, CRL stored or removed) increments meta.version inside
// its transaction and writes a row to `changes`. A revoke of a key already revoked and an identical
// CRL change nothing (no new version). The change log is pruned to the last `change_log_retention`
// versions; ChangesSince(v) for an older v answers nullopt (the caller sends a full snapshot).
//
// Thread safety: all methods may be called from any thread; one internal mutex serializes them
// (SQLite calls block on disk: call them from a WorkerPool, never from an event loop).
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "orthrus/revocation/v1/revocation.pb.h"

namespace orthrus::revocation {

struct DbChange {
  enum class Op : uint8_t { kAdd = 1, kRemove = 2, kCrl = 3, kCrlRemoved = 4 };
  uint64_t version = 0;
  Op op = Op::kAdd;
  // kAdd: the entry added. kRemove: the key removed, with who/when/why of the *unrevoke*.
  v1::Entry entry;
  std::string crl_issuer_der;  // kCrl, kCrlRemoved
};

struct StoredCrl {
  std::string issuer_der;
  std::string issuer;   // RFC 2253
  std::string source;   // file path or URL it came from
  std::string der;      // the verified CRL
  std::string digest;   // SHA-256 of der
  int64_t this_update = 0;
  int64_t next_update = 0;
  int64_t stored_unix_ms = 0;
  uint64_t version = 0;  // the feed version that stored it
};

class RevocationDb {
 public:
  struct Options {
    uint32_t change_log_retention = 10000;
  };

  // Creates the file (mode 0600) and schema if absent. Fails if the file is not an Orthrus
  // revocation database, if WAL cannot be enabled, or if another process holds it.
  static Result<std::unique_ptr<RevocationDb>> Open(const std::string& path, Options options);
  ~RevocationDb();
  RevocationDb(const RevocationDb&) = delete;
  RevocationDb& operator=(const RevocationDb&) = delete;

  // Random id made when the database was created (32 hex digits).
  const std::string& feed_id() const { return feed_id_; }
  uint64_t version() const;
  // Deltas can be built from any version >= this (older: snapshot).
  uint64_t oldest_delta_version() const;

  struct RevokeResult {
    v1::Entry entry;              // as stored (or the existing one when already_revoked)
    bool already_revoked = false;
    uint64_t version = 0;         // the feed version after the call
  };
  // `key` must be canonical (CanonicalKey). Returns after COMMIT.
  Result<RevokeResult> Revoke(const v1::EntryKey& key, std::string_view who, std::string_view why,
                              int64_t now_unix_ms);

  struct UnrevokeResult {
    v1::Entry removed;
    uint64_t version = 0;
  };
  // errc::kNotFound when the key is not revoked.
  Result<UnrevokeResult> Unrevoke(const v1::EntryKey& key, std::string_view who, std::string_view why,
                                  int64_t now_unix_ms);

  // Entries in version order. `kind`: "" or KeyKind(); `after_version` for paging; limit 0 = all.
  Result<std::vector<v1::Entry>> ListEntries(std::string_view kind, uint64_t after_version,
                                             uint32_t limit) const;
  Result<uint64_t> CountEntries() const;
  // Changes with version > since, ascending; nullopt when the log no longer reaches back to since.
  Result<std::optional<std::vector<DbChange>>> ChangesSince(uint64_t since) const;

  // CRL cache. StoreCrl replaces the issuer's CRL and takes a new version; if the stored digest is
  // the same it only updates source/stored time and returns the current version unchanged.
  Result<uint64_t> StoreCrl(const StoredCrl& crl, int64_t now_unix_ms);
  Result<uint64_t> RemoveCrl(std::string_view issuer_der, int64_t now_unix_ms);
  Result<std::vector<StoredCrl>> StoredCrls() const;

 private:
  RevocationDb() = default;
  class Txn;
  Result<uint64_t> NextVersion();  // within a transaction
  Status LogChange(uint64_t version, std::string_view op, std::string_view display,
                   std::string_view actor, int64_t at_ms, std::string_view reason,
                   std::string_view payload);
  Status Prune(uint64_t version);     // within a transaction
  void Committed(uint64_t version);  // after COMMIT: update the cached counters
  Result<std::optional<v1::Entry>> FindEntry(const std::string& key_string) const;
  Status Exec(const char* sql) const;
  std::unexpected<Error> DbError(const std::string& what) const;

  mutable std::mutex mutex_;
  sqlite3* db_ = nullptr;
  std::string path_;
  std::string feed_id_;
  Options options_;
  uint64_t version_ = 0;         // cached meta.version (we are the only writer)
  uint64_t pruned_through_ = 0;  // cached meta.pruned_through
};

}  // namespace orthrus::revocation
