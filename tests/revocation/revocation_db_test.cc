// The SQLite store: revoke/unrevoke/list with who/when/why, persistent monotonic versions, the
// change log and its retention, the CRL cache, one broker per database, and durability across
// SIGKILL right after Revoke() returns.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "broker/revocation/revocation_db.h"
#include "common/revocation/errors.h"
#include "common/revocation/keys.h"
#include "revocation_test_support.h"

namespace orthrus::revocation {
namespace {

using testing::TempDir;

v1::EntryKey Account(const std::string& name) {
  v1::EntryKey k;
  k.set_account(name);
  return *CanonicalKey(k);
}

v1::EntryKey Device(const std::string& id) {
  v1::EntryKey k;
  k.set_device_id(id);
  return *CanonicalKey(k);
}

std::unique_ptr<RevocationDb> OpenDb(const std::string& path, uint32_t retention = 10000) {
  auto db = RevocationDb::Open(path, {.change_log_retention = retention});
  EXPECT_TRUE(db) << db.error().detail;
  return std::move(*db);
}

TEST(RevocationDb, RevokesUnrevokesAndListsWithWhoWhenWhy) {
  TempDir dir;
  auto db = OpenDb(dir.File("rev.db"));
  EXPECT_EQ(db->version(), 0u);
  EXPECT_EQ(db->feed_id().size(), 32u);

  auto r1 = db->Revoke(Account("alice@corp.test"), "CN=admin1", "phone lost, ticket 4711", 1000);
  ASSERT_TRUE(r1) << r1.error().detail;
  EXPECT_FALSE(r1->already_revoked);
  EXPECT_EQ(r1->version, 1u);
  EXPECT_EQ(r1->entry.revoked_by(), "CN=admin1");
  EXPECT_EQ(r1->entry.revoked_at_unix_ms(), 1000);
  EXPECT_EQ(r1->entry.reason(), "phone lost, ticket 4711");
  EXPECT_EQ(r1->entry.version(), 1u);

  auto again = db->Revoke(Account("alice@corp.test"), "CN=admin2", "again", 2000);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->already_revoked);
  EXPECT_EQ(again->version, 1u);                       // no new version
  EXPECT_EQ(again->entry.revoked_by(), "CN=admin1");  // the original entry

  ASSERT_TRUE(db->Revoke(Device("androidc123"), "CN=admin1", "stolen", 3000));
  auto list = db->ListEntries("", 0, 0);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key().account(), "alice@corp.test");
  EXPECT_EQ((*list)[1].key().device_id(), "androidc123");
  EXPECT_EQ(db->ListEntries("device_id", 0, 0)->size(), 1u);
  EXPECT_EQ(db->ListEntries("", 1, 0)->size(), 1u);  // paging by version
  EXPECT_EQ(db->ListEntries("", 0, 1)->size(), 1u);
  EXPECT_EQ(*db->CountEntries(), 2u);

  auto un = db->Unrevoke(Account("alice@corp.test"), "CN=admin2", "found it", 4000);
  ASSERT_TRUE(un) << un.error().detail;
  EXPECT_EQ(un->version, 3u);
  EXPECT_EQ(un->removed.reason(), "phone lost, ticket 4711");
  auto missing = db->Unrevoke(Account("alice@corp.test"), "CN=admin2", "again", 5000);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::kNotFound);
  EXPECT_EQ(db->version(), 3u);
}

TEST(RevocationDb, VersionsAndEntriesPersistAndTheFileIsWalFull) {
  TempDir dir;
  std::string path = dir.File("rev.db");
  std::string feed;
  {
    auto db = OpenDb(path);
    feed = db->feed_id();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(db->Revoke(Account("u" + std::to_string(i)), "a", "w", i));
    ASSERT_TRUE(db->Unrevoke(Account("u2"), "a", "w", 9));
    // One broker per database: a second open fails while this one holds it.
    auto second = RevocationDb::Open(path, {});
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, errc::kDatabase);
  }
  auto db = OpenDb(path);
  EXPECT_EQ(db->feed_id(), feed);
  EXPECT_EQ(db->version(), 6u);
  EXPECT_EQ(*db->CountEntries(), 4u);
  auto r = db->Revoke(Account("new"), "a", "w", 10);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, 7u);
  db.reset();

  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(raw);
}

TEST(RevocationDb, ChangeLogServesDeltasWithinRetention) {
  TempDir dir;
  auto db = OpenDb(dir.File("rev.db"), /*retention=*/5);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(db->Revoke(Account("u" + std::to_string(i)), "a", "w", i));
  ASSERT_TRUE(db->Unrevoke(Account("u1"), "b", "why", 5));
  auto changes = db->ChangesSince(2);
  ASSERT_TRUE(changes);
  ASSERT_TRUE(changes->has_value());
  ASSERT_EQ((*changes)->size(), 3u);
  EXPECT_EQ((**changes)[0].version, 3u);
  EXPECT_EQ((**changes)[0].op, DbChange::Op::kAdd);
  EXPECT_EQ((**changes)[2].op, DbChange::Op::kRemove);
  EXPECT_EQ((**changes)[2].entry.key().account(), "u1");
  EXPECT_EQ((**changes)[2].entry.revoked_by(), "b");

  for (int i = 10; i < 14; ++i) ASSERT_TRUE(db->Revoke(Account("u" + std::to_string(i)), "a", "w", i));
  EXPECT_EQ(db->version(), 9u);
  EXPECT_EQ(db->oldest_delta_version(), 4u);
  EXPECT_FALSE(db->ChangesSince(3)->has_value());  // pruned: snapshot needed
  auto recent = db->ChangesSince(4);
  ASSERT_TRUE(recent->has_value());
  EXPECT_EQ((*recent)->size(), 5u);
  EXPECT_TRUE(db->ChangesSince(9)->has_value());
  EXPECT_FALSE(db->ChangesSince(10)->has_value());  // from the future
}

TEST(RevocationDb, CachesCrlsAndVersionsOnlyRealChanges) {
  TempDir dir;
  auto db = OpenDb(dir.File("rev.db"));
  StoredCrl crl;
  crl.issuer_der = "issuer-der";
  crl.issuer = "CN=CA";
  crl.source = "/etc/ca.crl";
  crl.der = std::string(100000, 'x');
  crl.digest = "d1";
  crl.this_update = 1;
  crl.next_update = 2;
  EXPECT_EQ(*db->StoreCrl(crl, 10), 1u);
  EXPECT_EQ(*db->StoreCrl(crl, 11), 1u);  // same digest: no new version
  crl.digest = "d2";
  EXPECT_EQ(*db->StoreCrl(crl, 12), 2u);
  auto stored = db->StoredCrls();
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->front().digest, "d2");
  EXPECT_EQ(stored->front().der.size(), 100000u);
  EXPECT_EQ(stored->front().version, 2u);
  auto changes = db->ChangesSince(1);
  ASSERT_TRUE(changes->has_value());
  EXPECT_EQ((**changes)[0].op, DbChange::Op::kCrl);
  EXPECT_EQ((**changes)[0].crl_issuer_der, "issuer-der");
  EXPECT_EQ(*db->RemoveCrl("issuer-der", 13), 3u);
  EXPECT_EQ(*db->RemoveCrl("issuer-der", 14), 3u);  // already gone
  EXPECT_TRUE(db->StoredCrls()->empty());
}

// A child process revokes, tells the parent each time Revoke() has returned, and keeps going; the
// parent kills it with SIGKILL right after one of those notifications. Every revocation the child
// reported as returned must be in the database the parent reopens.
TEST(RevocationDb, AcknowledgedRevocationSurvivesSigkill) {
  TempDir dir;
  std::string path = dir.File("rev.db");
  { OpenDb(path); }  // create it, so the child only writes
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto db = RevocationDb::Open(path, {});
    if (!db) ::_exit(3);
    for (uint32_t i = 0;; ++i) {
      auto r = (*db)->Revoke(Account("victim" + std::to_string(i)), "CN=admin", "kill -9 test", i);
      if (!r) ::_exit(4);
      if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(5);
    }
  }
  ::close(fds[1]);
  uint32_t last = 0;
  // Let it get going, then kill it the moment it reports the 25th returned Revoke().
  for (int n = 0; n < 25; ++n) {
    ASSERT_EQ(::read(fds[0], &last, sizeof last), static_cast<ssize_t>(sizeof last));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  // Anything still in the pipe was also acknowledged before the kill.
  uint32_t more = 0;
  while (::read(fds[0], &more, sizeof more) == static_cast<ssize_t>(sizeof more)) last = more;
  ::close(fds[0]);

  auto db = OpenDb(path);
  auto entries = db->ListEntries("account", 0, 0);
  ASSERT_TRUE(entries);
  std::set<std::string> names;
  for (const auto& e : *entries) names.insert(e.key().account());
  for (uint32_t i = 0; i <= last; ++i) {
    EXPECT_TRUE(names.contains("victim" + std::to_string(i))) << "acknowledged revocation " << i << " lost";
  }
  EXPECT_GE(db->version(), last + 1);
  std::printf("[durability] child killed after %u acknowledged revocations; %zu found after reopen\n",
              last + 1, names.size());
}

}  // namespace
}  // namespace orthrus::revocation
