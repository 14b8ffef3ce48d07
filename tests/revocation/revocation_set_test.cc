// The edge-side pieces: canonical keys, the serial set, the applied set and its checks, the feed
// applier, and the state file. Links orthrus_revocation_common only (what the edge links).
#include <gtest/gtest.h>

#include <ctime>

#include "common/revocation/errors.h"
#include "common/revocation/feed_applier.h"
#include "common/revocation/keys.h"
#include "common/revocation/revocation_set.h"
#include "common/revocation/serial_set.h"
#include "common/revocation/state_file.h"
#include "revocation_test_support.h"

namespace orthrus::revocation {
namespace {

using testing::Canonical;
using testing::CertDer;
using testing::Keys;
using testing::TempDir;

std::string Serial(std::string_view hex) { return *SerialFromHex(hex); }

std::string Packed(std::initializer_list<std::string_view> hex) {
  std::string out;
  for (auto h : hex) AppendPacked(out, Serial(h));
  return out;
}

v1::Entry AccountEntry(const std::string& account, uint64_t version, const std::string& why = "lost") {
  v1::Entry e;
  e.mutable_key()->set_account(account);
  e.set_revoked_by("admin");
  e.set_revoked_at_unix_ms(1700000000000);
  e.set_reason(why);
  e.set_version(version);
  return e;
}

CrlPtr MakeCrl(const std::string& issuer_der, std::initializer_list<std::string_view> serials,
               const std::string& digest, int64_t next_update = 0) {
  v1::CrlSet set;
  set.set_issuer_der(issuer_der);
  set.set_issuer("CN=Test CA");
  set.set_digest(digest);
  set.set_this_update_unix(1700000000);
  set.set_next_update_unix(next_update);
  set.set_serials_packed(Packed(serials));
  set.set_serial_count(serials.size());
  return *CrlFromProto(set);
}

// ------------------------------------------------------------------------------------------ keys

TEST(RevocationKeys, SerialsMatchCertIdentityHex) {
  for (const char* name : {"alice.pem", "bob.pem", "carol.pem"}) {
    auto der = CertDer(name);
    auto id = tls::ExtractIdentityFromDer(der);
    ASSERT_TRUE(id);
    auto keys = KeysFromDer(der);
    ASSERT_TRUE(keys);
    EXPECT_EQ(SerialToHex(keys->serial), id->serial_hex) << name;
    EXPECT_EQ(keys->sha256, id->cert_sha256);
    EXPECT_EQ(*SerialFromHex(id->serial_hex), keys->serial);
  }
  EXPECT_EQ(SerialToHex(Serial("0x00:0A:1B:2C")), "0a1b2c");
  EXPECT_EQ(SerialToHex(Serial("A1B2C")), "0a1b2c");
  EXPECT_EQ(SerialToHex(Serial("0")), "00");
  EXPECT_EQ(SerialToHex(Serial("-05")), "-05");
  EXPECT_FALSE(SerialFromHex("xyz"));
  EXPECT_FALSE(SerialFromHex(""));
  EXPECT_FALSE(SerialFromHex(std::string(200, 'f')));
  EXPECT_FALSE(IsCanonicalSerial(std::string("\0\0", 2)));     // "negative zero"
  EXPECT_FALSE(IsCanonicalSerial(std::string("\0\0\x01", 3)));
  EXPECT_TRUE(IsCanonicalSerial(std::string("\0\x01", 2)));  // -1
}

TEST(RevocationKeys, CanonicalKeysValidateAndNormalize) {
  v1::EntryKey k;
  EXPECT_EQ(CanonicalKey(k).error().code, errc::kInvalidKey);
  k.set_account("Alice@CORP.test");
  EXPECT_EQ(CanonicalKey(k)->account(), "alice@corp.test");
  k.set_account(std::string("bad\nname"));
  EXPECT_FALSE(CanonicalKey(k));
  k.set_device_id("ApplDNQXYZ12");
  EXPECT_EQ(CanonicalKey(k)->device_id(), "appldnqxyz12");
  k.set_cert_sha256("short");
  EXPECT_FALSE(CanonicalKey(k));
  auto keys = Keys("alice.pem");
  k.mutable_issuer_serial()->set_issuer_der(keys.issuer_der);
  k.mutable_issuer_serial()->set_serial(keys.serial);
  auto c = CanonicalKey(k);
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_EQ(c->issuer_serial().issuer(), "CN=Orthrus Revocation Test CA,O=Orthrus Test");
  k.mutable_issuer_serial()->set_issuer_der("not DER");
  EXPECT_FALSE(CanonicalKey(k));
  k.mutable_issuer_serial()->set_issuer_der(keys.issuer_der);
  k.mutable_issuer_serial()->set_serial(std::string("\0\x0a", 2));  // -10: canonical
  EXPECT_TRUE(CanonicalKey(k));
  k.mutable_issuer_serial()->set_serial(std::string("\0\0", 2));
  EXPECT_FALSE(CanonicalKey(k));
  EXPECT_NE(KeyString(*CanonicalKey(AccountEntry("x", 1).key())),
            DeviceIdKeyString("x"));  // kinds never collide
}

// ------------------------------------------------------------------------------------ SerialSet

TEST(SerialSet, LooksUpAndDropsDuplicates) {
  auto set = SerialSet::FromPacked(Packed({"01", "0a1b2c", "01", "ff00", "00"}));
  ASSERT_TRUE(set);
  EXPECT_EQ(set->size(), 4u);
  EXPECT_TRUE(set->Contains(Serial("01")));
  EXPECT_TRUE(set->Contains(Serial("0a1b2c")));
  EXPECT_TRUE(set->Contains(Serial("00")));
  EXPECT_FALSE(set->Contains(Serial("02")));
  EXPECT_EQ(set->packed(), Packed({"01", "0a1b2c", "ff00", "00"}));
  auto empty = SerialSet::FromPacked("");
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->Contains(Serial("01")));
}

TEST(SerialSet, RefusesMalformedPackedLists) {
  EXPECT_EQ(SerialSet::FromPacked(std::string("\x00", 1)).error().code, errc::kProtocol);  // zero length
  EXPECT_FALSE(SerialSet::FromPacked("\x05\x01\x02"));                                     // truncated
  EXPECT_FALSE(SerialSet::FromPacked(std::string("\x02\x00\x00", 3)));                     // not canonical
  EXPECT_FALSE(SerialSet::FromPacked(std::string(1, char(65)) + std::string(65, 'a')));    // > 64 octets
}

// -------------------------------------------------------------------------------- RevocationSet

TEST(RevocationSet, ChecksInstantEntriesOfEveryKind) {
  auto alice = Keys("alice.pem");
  auto bob = Keys("bob.pem");
  RevocationSet::Builder b;
  v1::Entry by_serial;
  by_serial.mutable_key()->mutable_issuer_serial()->set_issuer_der(alice.issuer_der);
  by_serial.mutable_key()->mutable_issuer_serial()->set_serial(alice.serial);
  by_serial.set_revoked_by("admin");
  by_serial.set_reason("phone lost");
  ASSERT_TRUE(b.Put(by_serial));
  v1::Entry by_hash;
  by_hash.mutable_key()->set_cert_sha256(bob.sha256);
  ASSERT_TRUE(b.Put(by_hash));
  ASSERT_TRUE(b.Put(AccountEntry("Mallory@Corp.Test", 3)));
  v1::Entry device;
  device.mutable_key()->set_device_id("ABC123");
  ASSERT_TRUE(b.Put(device));
  auto set = std::move(b).Build("feed", 4);

  CheckOptions opt;
  std::time_t now = std::time(nullptr);
  auto v = set->CheckChain({CertDer("alice.pem"), CertDer("device-ca.pem")}, now, opt);
  EXPECT_EQ(v.finding, Finding::kCertificateRevoked);
  EXPECT_NE(v.detail.find("phone lost"), std::string::npos) << v.detail;
  EXPECT_EQ(FindingReasonName(v.finding), "client_certificate_revoked");
  EXPECT_EQ(set->CheckChain({CertDer("bob.pem"), CertDer("device-ca.pem")}, now, opt).finding,
            Finding::kCertificateRevoked);
  EXPECT_TRUE(set->CheckChain({CertDer("carol.pem"), CertDer("device-ca.pem")}, now, opt).ok());
  EXPECT_EQ(set->CheckChain({"garbage", CertDer("device-ca.pem")}, now, opt).finding, Finding::kMalformed);
  EXPECT_EQ(set->CheckAccounts({"alice@corp.test", "MALLORY@corp.test"}).finding, Finding::kAccountRevoked);
  EXPECT_TRUE(set->CheckAccounts({"alice@corp.test"}).ok());
  EXPECT_EQ(set->CheckDevice("abc123").finding, Finding::kDeviceRevoked);
  EXPECT_TRUE(set->CheckDevice("").ok());
  EXPECT_TRUE(set->CheckDevice("other").ok());
  // Only carol's CA has no CRL here: with require_crl it is crl_missing.
  opt.require_crl = true;
  EXPECT_EQ(set->CheckChain({CertDer("carol.pem"), CertDer("device-ca.pem")}, now, opt).finding,
            Finding::kCrlMissing);
}

TEST(RevocationSet, ChecksCrlsWithStalenessAndGrace) {
  auto carol = Keys("carol.pem");
  auto alice = Keys("alice.pem");
  std::time_t now = std::time(nullptr);
  RevocationSet::Builder b;
  b.PutCrl(MakeCrl(carol.issuer_der, {"0c0c"}, "d1", now - 100));
  auto set = std::move(b).Build("feed", 1);
  CheckOptions opt;
  EXPECT_EQ(set->CheckCertificate(carol, now, opt).finding, Finding::kRevokedByCrl);
  EXPECT_EQ(set->CheckCertificate(alice, now, opt).finding, Finding::kCrlStale);
  opt.crl_stale_grace = std::chrono::seconds(200);
  EXPECT_TRUE(set->CheckCertificate(alice, now, opt).ok());
}

TEST(RevocationSet, SnapshotPartsReassembleAndDeltasApply) {
  auto carol = Keys("carol.pem");
  std::string big;
  for (int i = 0; i < 20000; ++i) AppendPacked(big, Serial(std::to_string(100000 + i)));
  v1::CrlSet crl;
  crl.set_issuer_der(carol.issuer_der);
  crl.set_issuer("CN=Big");
  crl.set_digest("big");
  crl.set_serials_packed(big);
  crl.set_serial_count(20000);
  RevocationSet::Builder b;
  b.PutCrl(*CrlFromProto(crl));
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(b.Put(AccountEntry("user" + std::to_string(i), i + 1)));
  auto set = std::move(b).Build("feed-a", 60);

  auto parts = set->ToSnapshotParts(16 * 1024);
  ASSERT_GT(parts.size(), 5u);
  for (const auto& p : parts) EXPECT_LT(p.ByteSizeLong(), 20u * 1024) << "part " << p.index();
  FeedApplier applier(RevocationSet::Empty());
  std::shared_ptr<const RevocationSet> got;
  for (const auto& p : parts) {
    v1::RevocationUpdate u;
    u.set_feed_id("feed-a");
    u.set_watch_id(7);
    *u.mutable_snapshot() = p;
    auto out = applier.Apply(u);
    ASSERT_TRUE(out) << out.error().detail;
    EXPECT_EQ(static_cast<bool>(out->applied), p.last());
    if (out->applied) got = out->applied;
  }
  ASSERT_TRUE(got);
  EXPECT_EQ(Canonical(*got), Canonical(*set));
  EXPECT_EQ(applier.watch_id(), 7u);

  // A delta on top: one removal, one addition, a CRL diff.
  RevocationSet::Builder b2(*set);
  ASSERT_TRUE(b2.Remove(AccountEntry("user3", 0).key()));
  ASSERT_TRUE(b2.Put(AccountEntry("late", 61)));
  std::string small;
  AppendPacked(small, Serial("100001"));
  AppendPacked(small, Serial("ffff01"));
  v1::CrlSet crl2 = crl;
  crl2.set_digest("big2");
  crl2.set_serials_packed(small);
  crl2.set_serial_count(2);
  auto next_crl = *CrlFromProto(crl2);
  b2.PutCrl(next_crl);
  auto want = std::move(b2).Build("feed-a", 61);

  v1::RevocationUpdate u;
  u.set_feed_id("feed-a");
  auto* d = u.mutable_delta();
  d->set_from_version(60);
  d->set_to_version(61);
  *d->add_removed() = AccountEntry("USER3", 0).key();
  *d->add_added() = AccountEntry("late", 61);
  *d->add_crls_changed() = MakeCrlDiff(*set->FindCrl(carol.issuer_der), *next_crl);
  auto out = applier.Apply(u);
  ASSERT_TRUE(out) << out.error().detail;
  ASSERT_TRUE(out->applied);
  EXPECT_EQ(Canonical(*out->applied), Canonical(*want));

  // The same delta again no longer applies (version 61 is held): a gap, not silently accepted.
  auto again = applier.Apply(u);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::kProtocol);
  EXPECT_EQ(applier.held()->version(), 61u);
}

TEST(FeedApplier, RefusesOutOfStepMessages) {
  RevocationSet::Builder b;
  ASSERT_TRUE(b.Put(AccountEntry("a", 1)));
  auto held = std::move(b).Build("feed-a", 5);
  FeedApplier applier(held);
  auto req = applier.MakeWatchRequest();
  EXPECT_EQ(req.feed_id(), "feed-a");
  EXPECT_EQ(req.version(), 5u);

  v1::RevocationUpdate delta;
  delta.set_feed_id("feed-b");
  delta.mutable_delta()->set_from_version(5);
  delta.mutable_delta()->set_to_version(6);
  EXPECT_FALSE(applier.Apply(delta));  // another feed
  delta.set_feed_id("feed-a");
  delta.mutable_delta()->set_from_version(4);
  EXPECT_FALSE(applier.Apply(delta));  // gap
  v1::RevocationUpdate part;
  part.set_feed_id("feed-a");
  part.mutable_snapshot()->set_version(9);
  part.mutable_snapshot()->set_index(1);
  EXPECT_FALSE(applier.Apply(part));  // part 1 without part 0
  v1::RevocationUpdate diff_without_base;
  diff_without_base.set_feed_id("feed-a");
  diff_without_base.mutable_delta()->set_from_version(5);
  diff_without_base.mutable_delta()->set_to_version(6);
  diff_without_base.mutable_delta()->add_crls_changed()->set_issuer_der("x");
  EXPECT_FALSE(applier.Apply(diff_without_base));
  EXPECT_EQ(applier.held(), held);  // nothing changed

  v1::RevocationUpdate hb;
  hb.set_feed_id("feed-a");
  hb.mutable_heartbeat()->set_version(7);
  auto out = applier.Apply(hb);
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->heartbeat);
  EXPECT_TRUE(applier.behind());
  hb.mutable_heartbeat()->set_version(3);  // broker went backwards with the same feed id
  EXPECT_FALSE(applier.Apply(hb));
}

// ------------------------------------------------------------------------------------ state file

TEST(StateFile, RoundTripsAndRefusesDamage) {
  TempDir dir;
  std::string path = dir.File("revocation.state");
  EXPECT_EQ(LoadStateFile(path).error().code, errc::kStateMissing);

  auto carol = Keys("carol.pem");
  RevocationSet::Builder b;
  b.PutCrl(MakeCrl(carol.issuer_der, {"0c0c", "01", "02"}, "digest", 1900000000));
  ASSERT_TRUE(b.Put(AccountEntry("alice@corp.test", 2)));
  auto set = std::move(b).Build("feed-x", 42);
  ASSERT_TRUE(SaveStateFile(path, *set, 1700000000123));
  auto loaded = LoadStateFile(path);
  ASSERT_TRUE(loaded) << loaded.error().detail;
  EXPECT_EQ(loaded->saved_unix_ms, 1700000000123);
  EXPECT_EQ(Canonical(*loaded->set), Canonical(*set));
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  std::string good = testing::ReadAll(path);
  auto expect_corrupt = [&](const std::string& bytes, const char* what) {
    testing::WriteAll(path, bytes);
    auto r = LoadStateFile(path);
    ASSERT_FALSE(r) << what;
    EXPECT_EQ(r.error().code, errc::kStateCorrupt) << what;
  };
  expect_corrupt(good.substr(0, good.size() - 1), "truncated by one byte");
  expect_corrupt(good.substr(0, good.size() / 2), "truncated by half");
  expect_corrupt("", "empty");
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x01;
  expect_corrupt(flipped, "one bit flipped in the payload");
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  expect_corrupt(bad_magic, "bad magic");
  expect_corrupt(good + "x", "trailing byte");

  // A good save replaces a corrupt file.
  ASSERT_TRUE(SaveStateFile(path, *set, 1));
  EXPECT_TRUE(LoadStateFile(path));
}

}  // namespace
}  // namespace orthrus::revocation
