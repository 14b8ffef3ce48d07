#include "broker/revocation/revocation_db.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>

#include "common/revocation/errors.h"
#include "common/revocation/keys.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation {
namespace {

constexpr int kSchemaVersion = 1;

// A prepared statement; binds by position (1-based), steps, reads columns.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, uint64_t v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Text(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Blob(int i, std::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Bytes(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
-- Instant revocations in force. `key` is the canonical key (common/revocation/keys.h KeyString);
-- `display`, `revoked_by`, `revoked_at_ms`, `reason` are for people using sqlite3; `entry` is the
-- orthrus.revocation.v1.Entry as pushed.
CREATE TABLE IF NOT EXISTS entries (
  key           BLOB PRIMARY KEY,
  kind          TEXT NOT NULL,
  display       TEXT NOT NULL,
  revoked_by    TEXT NOT NULL,
  revoked_at_ms INTEGER NOT NULL,
  reason        TEXT NOT NULL,
  version       INTEGER NOT NULL,
  entry         BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_version ON entries(version);
-- Change log, one row per version: add/remove carry an Entry, crl/crl_removed the issuer DER.
CREATE TABLE IF NOT EXISTS changes (
  version INTEGER PRIMARY KEY,
  op      TEXT NOT NULL,
  display TEXT NOT NULL,
  actor   TEXT NOT NULL,
  at_ms   INTEGER NOT NULL,
  reason  TEXT NOT NULL,
  payload BLOB NOT NULL
);
-- Last good verified CRL per issuer.
CREATE TABLE IF NOT EXISTS crls (
  issuer_der   BLOB PRIMARY KEY,
  issuer       TEXT NOT NULL,
  source       TEXT NOT NULL,
  der          BLOB NOT NULL,
  digest       BLOB NOT NULL,
  this_update  INTEGER NOT NULL,
  next_update  INTEGER NOT NULL,
  stored_at_ms INTEGER NOT NULL,
  version      INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

std::string_view OpName(DbChange::Op op) {
  switch (op) {
    case DbChange::Op::kAdd: return "add";
    case DbChange::Op::kRemove: return "remove";
    case DbChange::Op::kCrl: return "crl";
    case DbChange::Op::kCrlRemoved: return "crl_removed";
  }
  return "?";
}

std::optional<DbChange::Op> OpFromName(std::string_view name) {
  for (auto op : {DbChange::Op::kAdd, DbChange::Op::kRemove, DbChange::Op::kCrl,
                  DbChange::Op::kCrlRemoved}) {
    if (OpName(op) == name) return op;
  }
  return std::nullopt;
}

}  // namespace

// BEGIN IMMEDIATE ... COMMIT, rolled back unless committed.
class RevocationDb::Txn {
 public:
  explicit Txn(const RevocationDb& db) : db_(db) {
    begun_ = sqlite3_exec(db_.db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Txn() {
    if (begun_ && !done_) sqlite3_exec(db_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status Begun() const { return begun_ ? Status{} : Status(db_.DbError("cannot begin a transaction")); }
  Status Commit() {
    if (sqlite3_exec(db_.db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return db_.DbError("commit failed");
    }
    done_ = true;
    return {};
  }

 private:
  const RevocationDb& db_;
  bool begun_ = false;
  bool done_ = false;
};

std::unexpected<Error> RevocationDb::DbError(const std::string& what) const {
  return Fail(errc::kDatabase, path_ + ": " + what + ": " + sqlite3_errmsg(db_));
}

Status RevocationDb::Exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return Fail(errc::kDatabase, path_ + ": " + msg);
  }
  return {};
}

RevocationDb::~RevocationDb() { sqlite3_close_v2(db_); }

Result<std::unique_ptr<RevocationDb>> RevocationDb::Open(const std::string& path, Options options) {
  std::unique_ptr<RevocationDb> self(new RevocationDb());
  self->path_ = path;
  self->options_ = options;
  if (self->options_.change_log_retention == 0) self->options_.change_log_retention = 1;
  struct stat st{};
  bool existed = ::stat(path.c_str(), &st) == 0;
  int rc = sqlite3_open_v2(path.c_str(), &self->db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = self->db_ != nullptr ? sqlite3_errmsg(self->db_) : sqlite3_errstr(rc);
    return Fail(errc::kDatabase, "cannot open " + path + ": " + msg);
  }
  if (!existed) ::chmod(path.c_str(), 0600);  // -wal and -shm files inherit this mode
  sqlite3_extended_result_codes(self->db_, 1);
  sqlite3_busy_timeout(self->db_, 2000);

  // Exclusive: one broker per database. WAL: readers never block the writer and commits are one
  // sequential append. synchronous=FULL: the WAL is fsynced at every commit (durable revocations).
  ORTHRUS_TRY(self->Exec("PRAGMA locking_mode=EXCLUSIVE"));
  {
    Stmt wal(self->db_, "PRAGMA journal_mode=WAL");
    if (!wal.ok() || wal.Step() != SQLITE_ROW) return self->DbError("cannot enable WAL");
    if (wal.Bytes(0) != "wal") {
      return Fail(errc::kDatabase, path + ": the file system does not support WAL mode (journal_mode is " +
                                       wal.Bytes(0) + ")");
    }
  }
  ORTHRUS_TRY(self->Exec("PRAGMA synchronous=FULL"));
  if (sqlite3_exec(self->db_, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return self->DbError("cannot lock the database (is another broker using it?)");
  }
  Status schema = self->Exec(kSchema);
  if (!schema) {
    sqlite3_exec(self->db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return std::unexpected(schema.error());
  }
  auto read_meta = [&](const char* name) -> std::optional<std::string> {
    Stmt q(self->db_, "SELECT value FROM meta WHERE name = ?");
    q.Text(1, name);
    if (q.Step() != SQLITE_ROW) return std::nullopt;
    return q.Bytes(0);
  };
  auto write_meta = [&](const char* name, std::string_view value) -> Status {
    Stmt q(self->db_, "INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)");
    q.Text(1, name).Text(2, value);
    if (q.Step() != SQLITE_DONE) return self->DbError("cannot write meta");
    return {};
  };
  auto schema_version = read_meta("schema");
  Status init;
  if (!schema_version) {
    unsigned char id[16];
    RAND_bytes(id, sizeof id);
    self->feed_id_ = tls::HexLower(std::string_view(reinterpret_cast<char*>(id), sizeof id));
    init = write_meta("schema", std::to_string(kSchemaVersion));
    if (init) init = write_meta("feed_id", self->feed_id_);
    if (init) init = write_meta("version", "0");
    if (init) init = write_meta("pruned_through", "0");
  } else if (*schema_version != std::to_string(kSchemaVersion)) {
    init = Fail(errc::kDatabase, path + ": schema version " + *schema_version +
                                     " is not supported by this broker (expects " +
                                     std::to_string(kSchemaVersion) + ")");
  } else {
    auto feed = read_meta("feed_id");
    auto version = read_meta("version");
    auto pruned = read_meta("pruned_through");
    if (!feed || !version || !pruned) {
      init = Fail(errc::kDatabase, path + ": meta table is incomplete");
    } else {
      self->feed_id_ = *feed;
      self->version_ = std::stoull(*version);
      self->pruned_through_ = std::stoull(*pruned);
    }
  }
  if (!init) {
    sqlite3_exec(self->db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return std::unexpected(init.error());
  }
  ORTHRUS_TRY(self->Exec("COMMIT"));
  return self;
}

uint64_t RevocationDb::version() const {
  std::lock_guard lock(mutex_);
  return version_;
}

uint64_t RevocationDb::oldest_delta_version() const {
  std::lock_guard lock(mutex_);
  return pruned_through_;
}

Result<uint64_t> RevocationDb::NextVersion() {
  Stmt q(db_, "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'version' "
              "RETURNING CAST(value AS INTEGER)");
  if (!q.ok() || q.Step() != SQLITE_ROW) return DbError("cannot advance the version");
  return static_cast<uint64_t>(q.Int(0));
}

Status RevocationDb::LogChange(uint64_t version, std::string_view op, std::string_view display,
                               std::string_view actor, int64_t at_ms, std::string_view reason,
                               std::string_view payload) {
  Stmt q(db_, "INSERT INTO changes(version, op, display, actor, at_ms, reason, payload) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)");
  q.Bind(1, version).Text(2, op).Text(3, display).Text(4, actor).Bind(5, at_ms).Text(6, reason).Blob(7, payload);
  if (q.Step() != SQLITE_DONE) return DbError("cannot write the change log");
  return {};
}

void RevocationDb::Committed(uint64_t version) {
  version_ = version;
  if (version > options_.change_log_retention) {
    pruned_through_ = std::max(pruned_through_, version - options_.change_log_retention);
  }
}

Status RevocationDb::Prune(uint64_t version) {
  if (version <= options_.change_log_retention) return {};
  uint64_t through = version - options_.change_log_retention;
  if (through <= pruned_through_) return {};
  Stmt del(db_, "DELETE FROM changes WHERE version <= ?");
  del.Bind(1, through);
  if (del.Step() != SQLITE_DONE) return DbError("cannot prune the change log");
  Stmt meta(db_, "UPDATE meta SET value = ? WHERE name = 'pruned_through'");
  meta.Text(1, std::to_string(through));
  if (meta.Step() != SQLITE_DONE) return DbError("cannot write meta");
  return {};
}

Result<std::optional<v1::Entry>> RevocationDb::FindEntry(const std::string& key_string) const {
  Stmt q(db_, "SELECT entry FROM entries WHERE key = ?");
  q.Blob(1, key_string);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<v1::Entry>();
  if (rc != SQLITE_ROW) return DbError("cannot read entries");
  v1::Entry e;
  if (!e.ParseFromString(q.Bytes(0))) {
    return Fail(errc::kDatabase, path_ + ": entries row does not parse");
  }
  return std::optional<v1::Entry>(std::move(e));
}

Result<RevocationDb::RevokeResult> RevocationDb::Revoke(const v1::EntryKey& key, std::string_view who,
                                                        std::string_view why, int64_t now_unix_ms) {
  std::lock_guard lock(mutex_);
  std::string ks = KeyString(key);
  if (ks.empty()) return Fail(errc::kInvalidKey, "empty key");
  Txn txn(*this);
  ORTHRUS_TRY(txn.Begun());
  ORTHRUS_ASSIGN_OR_RETURN(auto existing, FindEntry(ks));
  if (existing) return RevokeResult{std::move(*existing), true, version_};

  ORTHRUS_ASSIGN_OR_RETURN(uint64_t version, NextVersion());
  v1::Entry entry;
  *entry.mutable_key() = key;
  entry.set_revoked_by(std::string(who));
  entry.set_revoked_at_unix_ms(now_unix_ms);
  entry.set_reason(std::string(why));
  entry.set_version(version);
  std::string blob = entry.SerializeAsString();
  std::string display = DescribeKey(key);
  Stmt ins(db_, "INSERT INTO entries(key, kind, display, revoked_by, revoked_at_ms, reason, version, entry) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  ins.Blob(1, ks).Text(2, KeyKind(key)).Text(3, display).Text(4, who).Bind(5, now_unix_ms)
      .Text(6, why).Bind(7, version).Blob(8, blob);
  if (ins.Step() != SQLITE_DONE) return DbError("cannot store the revocation");
  ORTHRUS_TRY(LogChange(version, OpName(DbChange::Op::kAdd), display, who, now_unix_ms, why, blob));
  ORTHRUS_TRY(Prune(version));
  ORTHRUS_TRY(txn.Commit());  // durable from here (WAL fsynced)
  Committed(version);
  return RevokeResult{std::move(entry), false, version};
}

Result<RevocationDb::UnrevokeResult> RevocationDb::Unrevoke(const v1::EntryKey& key, std::string_view who,
                                                            std::string_view why, int64_t now_unix_ms) {
  std::lock_guard lock(mutex_);
  std::string ks = KeyString(key);
  if (ks.empty()) return Fail(errc::kInvalidKey, "empty key");
  Txn txn(*this);
  ORTHRUS_TRY(txn.Begun());
  ORTHRUS_ASSIGN_OR_RETURN(auto existing, FindEntry(ks));
  if (!existing) return Fail(errc::kNotFound, DescribeKey(key) + " is not revoked");

  ORTHRUS_ASSIGN_OR_RETURN(uint64_t version, NextVersion());
  Stmt del(db_, "DELETE FROM entries WHERE key = ?");
  del.Blob(1, ks);
  if (del.Step() != SQLITE_DONE) return DbError("cannot remove the revocation");
  v1::Entry change;
  *change.mutable_key() = key;
  change.set_revoked_by(std::string(who));
  change.set_revoked_at_unix_ms(now_unix_ms);
  change.set_reason(std::string(why));
  change.set_version(version);
  ORTHRUS_TRY(LogChange(version, OpName(DbChange::Op::kRemove), DescribeKey(key), who, now_unix_ms, why,
                        change.SerializeAsString()));
  ORTHRUS_TRY(Prune(version));
  ORTHRUS_TRY(txn.Commit());
  Committed(version);
  return UnrevokeResult{std::move(*existing), version};
}

Result<std::vector<v1::Entry>> RevocationDb::ListEntries(std::string_view kind, uint64_t after_version,
                                                         uint32_t limit) const {
  std::lock_guard lock(mutex_);
  Stmt q(db_, "SELECT entry FROM entries WHERE (?1 = '' OR kind = ?1) AND version > ?2 "
              "ORDER BY version LIMIT ?3");
  q.Text(1, kind).Bind(2, after_version).Bind(3, limit == 0 ? int64_t{-1} : int64_t{limit});
  std::vector<v1::Entry> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    v1::Entry e;
    if (!e.ParseFromString(q.Bytes(0))) return Fail(errc::kDatabase, path_ + ": entries row does not parse");
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return DbError("cannot list entries");
  return out;
}

Result<uint64_t> RevocationDb::CountEntries() const {
  std::lock_guard lock(mutex_);
  Stmt q(db_, "SELECT COUNT(*) FROM entries");
  if (q.Step() != SQLITE_ROW) return DbError("cannot count entries");
  return static_cast<uint64_t>(q.Int(0));
}

Result<std::optional<std::vector<DbChange>>> RevocationDb::ChangesSince(uint64_t since) const {
  std::lock_guard lock(mutex_);
  if (since < pruned_through_ || since > version_) return std::optional<std::vector<DbChange>>();
  Stmt q(db_, "SELECT version, op, payload FROM changes WHERE version > ? ORDER BY version");
  q.Bind(1, since);
  std::vector<DbChange> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    DbChange c;
    c.version = static_cast<uint64_t>(q.Int(0));
    auto op = OpFromName(q.Bytes(1));
    if (!op) return Fail(errc::kDatabase, path_ + ": unknown change op " + q.Bytes(1));
    c.op = *op;
    if (c.op == DbChange::Op::kAdd || c.op == DbChange::Op::kRemove) {
      if (!c.entry.ParseFromString(q.Bytes(2))) {
        return Fail(errc::kDatabase, path_ + ": change row does not parse");
      }
    } else {
      c.crl_issuer_der = q.Bytes(2);
    }
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return DbError("cannot read the change log");
  return std::optional<std::vector<DbChange>>(std::move(out));
}

Result<uint64_t> RevocationDb::StoreCrl(const StoredCrl& crl, int64_t now_unix_ms) {
  std::lock_guard lock(mutex_);
  Txn txn(*this);
  ORTHRUS_TRY(txn.Begun());
  Stmt find(db_, "SELECT digest FROM crls WHERE issuer_der = ?");
  find.Blob(1, crl.issuer_der);
  bool same = find.Step() == SQLITE_ROW && find.Bytes(0) == crl.digest;
  uint64_t version = version_;
  if (same) {
    Stmt upd(db_, "UPDATE crls SET source = ?, stored_at_ms = ? WHERE issuer_der = ?");
    upd.Text(1, crl.source).Bind(2, now_unix_ms).Blob(3, crl.issuer_der);
    if (upd.Step() != SQLITE_DONE) return DbError("cannot update the CRL cache");
  } else {
    ORTHRUS_ASSIGN_OR_RETURN(version, NextVersion());
    Stmt ins(db_, "INSERT OR REPLACE INTO crls(issuer_der, issuer, source, der, digest, this_update, "
                  "next_update, stored_at_ms, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    ins.Blob(1, crl.issuer_der).Text(2, crl.issuer).Text(3, crl.source).Blob(4, crl.der)
        .Blob(5, crl.digest).Bind(6, crl.this_update).Bind(7, crl.next_update).Bind(8, now_unix_ms)
        .Bind(9, version);
    if (ins.Step() != SQLITE_DONE) return DbError("cannot store the CRL");
    ORTHRUS_TRY(LogChange(version, OpName(DbChange::Op::kCrl), "crl " + crl.issuer, crl.source,
                          now_unix_ms, "", crl.issuer_der));
    ORTHRUS_TRY(Prune(version));
  }
  ORTHRUS_TRY(txn.Commit());
  Committed(version);
  return version;
}

Result<uint64_t> RevocationDb::RemoveCrl(std::string_view issuer_der, int64_t now_unix_ms) {
  std::lock_guard lock(mutex_);
  Txn txn(*this);
  ORTHRUS_TRY(txn.Begun());
  Stmt find(db_, "SELECT issuer FROM crls WHERE issuer_der = ?");
  find.Blob(1, issuer_der);
  if (find.Step() != SQLITE_ROW) return version_;
  std::string issuer = find.Bytes(0);
  ORTHRUS_ASSIGN_OR_RETURN(uint64_t version, NextVersion());
  Stmt del(db_, "DELETE FROM crls WHERE issuer_der = ?");
  del.Blob(1, issuer_der);
  if (del.Step() != SQLITE_DONE) return DbError("cannot remove the CRL");
  ORTHRUS_TRY(LogChange(version, OpName(DbChange::Op::kCrlRemoved), "crl " + issuer, "", now_unix_ms,
                        "", issuer_der));
  ORTHRUS_TRY(Prune(version));
  ORTHRUS_TRY(txn.Commit());
  Committed(version);
  return version;
}

Result<std::vector<StoredCrl>> RevocationDb::StoredCrls() const {
  std::lock_guard lock(mutex_);
  Stmt q(db_, "SELECT issuer_der, issuer, source, der, digest, this_update, next_update, stored_at_ms, "
              "version FROM crls ORDER BY issuer_der");
  std::vector<StoredCrl> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    StoredCrl c;
    c.issuer_der = q.Bytes(0);
    c.issuer = q.Bytes(1);
    c.source = q.Bytes(2);
    c.der = q.Bytes(3);
    c.digest = q.Bytes(4);
    c.this_update = q.Int(5);
    c.next_update = q.Int(6);
    c.stored_unix_ms = q.Int(7);
    c.version = static_cast<uint64_t>(q.Int(8));
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return DbError("cannot read the CRL cache");
  return out;
}

}  // namespace orthrus::revocation
