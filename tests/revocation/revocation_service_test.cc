// The broker's revocation service end to end without gRPC: CRL file sources through refresh, a
// forged CRL rejected with its reason while the previous set stays in force, rollback refused, the
// database restoring everything after a restart, admin operations and their acknowledgement counts,
// and an edge catching up through the state.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "broker/revocation/revocation_service.h"
#include "common/revocation/errors.h"
#include "common/revocation/feed_applier.h"
#include "revocation_test_support.h"

namespace orthrus::revocation {
namespace {

using testing::Canonical;
using testing::CertDer;
using testing::Keys;
using testing::Pki;
using testing::TempDir;

struct Fixture {
  TempDir dir;
  std::string crl_file = dir.File("device.crl");

  RevocationServiceSettings Settings() const {
    RevocationServiceSettings s;
    s.database_file = dir.File("revocation.db");
    s.crl_ca_files = {Pki("device-ca.pem")};
    s.sources.push_back({.file = crl_file});
    return s;
  }
  void Publish(const std::string& name) const {
    std::filesystem::copy_file(Pki(name), crl_file, std::filesystem::copy_options::overwrite_existing);
  }
  std::unique_ptr<RevocationService> Open(std::time_t now) const {
    auto svc = RevocationService::Open(Settings(), now);
    EXPECT_TRUE(svc) << svc.error().detail;
    return svc ? std::move(*svc) : nullptr;
  }
};

Verdict CheckCert(const RevocationService& svc, const std::string& cert) {
  return svc.state().current()->CheckChain({CertDer(cert), CertDer("device-ca.pem")}, std::time(nullptr),
                                           {.require_crl = true});
}

TEST(RevocationService, RefreshesCrlsKeepsThePreviousOnBadSignatureAndRefusesRollback) {
  Fixture f;
  std::time_t now = std::time(nullptr);
  f.Publish("crl-v1.pem");
  auto svc = f.Open(now);
  ASSERT_TRUE(svc);
  auto st = svc->RefreshCrls(now, true);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].last_error_code(), "") << st[0].last_error();
  EXPECT_EQ(st[0].serial_count(), 1u);
  EXPECT_GT(st[0].next_refresh_unix(), now);
  EXPECT_EQ(CheckCert(*svc, "alice.pem").finding, Finding::kRevokedByCrl);
  EXPECT_TRUE(CheckCert(*svc, "bob.pem").ok());
  uint64_t v1 = svc->state().version();
  EXPECT_EQ(v1, 1u);

  f.Publish("crl-v2.der");  // newer: bob too
  st = svc->RefreshCrls(now, true);
  EXPECT_EQ(st[0].last_error_code(), "");
  EXPECT_EQ(CheckCert(*svc, "bob.pem").finding, Finding::kRevokedByCrl);
  EXPECT_EQ(svc->state().version(), 2u);
  auto before = Canonical(*svc->state().current());

  f.Publish("crl-forged.pem");  // bad signature: rejected with its reason, v2 stays in force
  st = svc->RefreshCrls(now, true);
  EXPECT_EQ(st[0].last_error_code(), errc::kCrlBadSignature);
  EXPECT_NE(st[0].last_error().find("does not verify"), std::string::npos) << st[0].last_error();
  EXPECT_EQ(st[0].serial_count(), 2u);  // still reports the CRL in force
  EXPECT_EQ(Canonical(*svc->state().current()), before);
  EXPECT_EQ(CheckCert(*svc, "bob.pem").finding, Finding::kRevokedByCrl);
  EXPECT_EQ(st[0].next_refresh_unix(), now + 60);  // retried soon

  f.Publish("crl-v1.pem");  // older than the CRL in force: refused
  st = svc->RefreshCrls(now, true);
  EXPECT_EQ(st[0].last_error_code(), errc::kCrlRollback);
  EXPECT_EQ(Canonical(*svc->state().current()), before);

  std::filesystem::remove(f.crl_file);  // source gone: previous kept
  st = svc->RefreshCrls(now, true);
  EXPECT_EQ(st[0].last_error_code(), errc::kCrlFetchFailed);
  EXPECT_EQ(Canonical(*svc->state().current()), before);

  // Not due yet: nothing fetched.
  f.Publish("crl-empty.pem");
  svc->RefreshCrls(now, false);
  EXPECT_EQ(Canonical(*svc->state().current()), before);
  EXPECT_EQ(svc->NextRefreshDue(), now + 60);
  svc->RefreshCrls(now + 61, false);
  EXPECT_TRUE(CheckCert(*svc, "bob.pem").ok());  // the empty CRL is newest
}

TEST(RevocationService, RestartRestoresEntriesCrlsAndVersionWithoutFetching) {
  Fixture f;
  std::time_t now = std::time(nullptr);
  f.Publish("crl-v2.der");
  std::string before;
  std::string feed;
  {
    auto svc = f.Open(now);
    ASSERT_TRUE(svc);
    svc->RefreshCrls(now, true);
    v1::RevokeRequest req;
    req.mutable_key()->set_account("Alice@corp.test");
    req.set_reason("left the company");
    ASSERT_TRUE(svc->Revoke(req, "CN=admin", 1000));
    before = Canonical(*svc->state().current());
    feed = svc->feed_id();
  }
  std::filesystem::remove(f.crl_file);  // the source is unreachable at restart
  auto svc = f.Open(now);
  ASSERT_TRUE(svc);
  EXPECT_EQ(svc->feed_id(), feed);
  EXPECT_EQ(Canonical(*svc->state().current()), before);
  EXPECT_EQ(CheckCert(*svc, "bob.pem").finding, Finding::kRevokedByCrl);
  EXPECT_EQ(svc->state().current()->CheckAccounts({"alice@corp.test"}).finding, Finding::kAccountRevoked);
  auto st = svc->RefreshCrls(now, true);
  EXPECT_EQ(st[0].last_error_code(), errc::kCrlFetchFailed);
  EXPECT_EQ(Canonical(*svc->state().current()), before);  // the cached CRL stays in force

  // An edge that held version 1 (CRL only) catches up with a delta from the change log.
  WatchPosition pos;
  pos.feed_id = feed;
  pos.version = 1;
  pos.crl_digests[svc->state().current()->crls().begin()->first] =
      svc->state().current()->crls().begin()->second->digest;
  auto updates = svc->state().UpdatesFor(pos, 1);
  ASSERT_EQ(updates.size(), 1u);
  ASSERT_TRUE(updates[0].has_delta());
  EXPECT_EQ(updates[0].delta().added_size(), 1);
  EXPECT_EQ(updates[0].delta().crls_replaced_size(), 0);  // unchanged CRL not resent
}

TEST(RevocationService, AdminOperationsReportWhoWhyAndAcknowledgements) {
  Fixture f;
  std::time_t now = std::time(nullptr);
  f.Publish("crl-empty.pem");
  auto svc = f.Open(now);
  ASSERT_TRUE(svc);
  svc->RefreshCrls(now, true);

  v1::RevokeRequest req;
  req.mutable_key()->mutable_issuer_serial()->set_issuer("CN=Orthrus Revocation Test CA, O=Orthrus Test");
  req.mutable_key()->mutable_issuer_serial()->set_serial(Keys("carol.pem").serial);
  EXPECT_EQ(svc->Revoke(req, "CN=admin", 1).error().code, errc::kInvalidRequest);  // no reason
  req.set_reason("device stolen");
  EXPECT_EQ(svc->Revoke(req, "", 1).error().code, errc::kInvalidRequest);  // no admin

  // An edge watching and acknowledging from another thread, as the Watch/Ack handlers would.
  uint64_t watch = svc->state().WatchStarted("edge-1", 1);
  std::atomic<bool> stop{false};
  std::shared_ptr<const RevocationSet> edge_set = RevocationSet::Empty();
  std::mutex edge_mutex;
  std::thread edge([&] {
    WatchPosition pos;
    auto held = RevocationSet::Empty();
    while (!stop) {
      auto updates = svc->state().UpdatesFor(pos, watch);
      if (!updates.empty()) {
        FeedApplier applier(held);
        for (const auto& u : updates) {
          auto out = applier.Apply(u);
          ASSERT_TRUE(out) << out.error().detail;
        }
        held = applier.held();
        {
          std::lock_guard lock(edge_mutex);
          edge_set = held;
        }
        svc->state().RecordAck(watch, "edge-1", svc->feed_id(), held->version(), 2);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });

  req.set_wait_for_edges_ms(5000);
  auto r = svc->Revoke(req, "CN=admin", 1234);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_FALSE(r->already_revoked());
  EXPECT_EQ(r->entry().revoked_by(), "CN=admin");
  EXPECT_EQ(r->entry().reason(), "device stolen");
  EXPECT_EQ(r->entry().key().issuer_serial().issuer(), "CN=Orthrus Revocation Test CA,O=Orthrus Test");
  EXPECT_EQ(r->acks().edges_connected(), 1u);
  EXPECT_EQ(r->acks().edges_acknowledged(), 1u);
  {
    std::lock_guard lock(edge_mutex);
    EXPECT_EQ(edge_set->CheckChain({CertDer("carol.pem"), CertDer("device-ca.pem")}, now, {}).finding,
              Finding::kCertificateRevoked);
  }
  auto again = svc->Revoke(req, "CN=other", 5678);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->already_revoked());
  EXPECT_EQ(again->entry().revoked_by(), "CN=admin");

  v1::RevokeRequest dev;
  dev.mutable_key()->set_device_id("ApplF17XYZ");
  dev.set_reason("lost");
  ASSERT_TRUE(svc->Revoke(dev, "CN=admin", 2000));

  v1::ListRevokedRequest list;
  auto listed = svc->ListRevoked(list);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->entries_size(), 2);
  EXPECT_EQ(listed->crls_size(), 1);
  list.set_kind("device_id");
  EXPECT_EQ(svc->ListRevoked(list)->entries_size(), 1);
  list.set_kind("bogus");
  EXPECT_EQ(svc->ListRevoked(list).error().code, errc::kInvalidRequest);
  list.set_kind("");
  list.set_limit(1);
  EXPECT_TRUE(svc->ListRevoked(list)->more());

  v1::UnrevokeRequest un;
  *un.mutable_key() = dev.key();
  un.set_reason("found");
  un.set_wait_for_edges_ms(5000);
  auto u = svc->Unrevoke(un, "CN=admin", 3000);
  ASSERT_TRUE(u) << u.error().detail;
  EXPECT_EQ(u->removed().reason(), "lost");
  EXPECT_EQ(u->acks().edges_acknowledged(), 1u);
  EXPECT_EQ(svc->Unrevoke(un, "CN=admin", 3001).error().code, errc::kNotFound);

  auto status = svc->Status({});
  ASSERT_TRUE(status);
  EXPECT_EQ(status->version(), svc->state().version());
  EXPECT_EQ(status->instant_entries(), 1u);
  EXPECT_EQ(status->acks().edges_connected(), 1u);
  ASSERT_EQ(status->edges_size(), 1);
  EXPECT_EQ(status->edges(0).name(), "edge-1");
  EXPECT_EQ(status->crls_size(), 1);

  stop = true;
  edge.join();
  {
    std::lock_guard lock(edge_mutex);
    EXPECT_EQ(Canonical(*edge_set), Canonical(*svc->state().current()));
  }
  svc->state().WatchEnded(watch);
  EXPECT_EQ(svc->Status({})->acks().edges_connected(), 0u);
}

TEST(RevocationService, ConfigDefaults) {
  config::v1::RevocationServiceConfig c;
  c.set_database_file("/var/lib/orthrus/revocation.db");
  c.add_crl_source()->set_url("http://pki.corp.test/device.crl");
  auto* file = c.add_crl_source();
  file->set_file("/etc/orthrus/device.crl");
  file->set_refresh_margin_seconds(120);
  auto s = SettingsFromConfig(c);
  EXPECT_EQ(s.database_file, "/var/lib/orthrus/revocation.db");
  ASSERT_EQ(s.sources.size(), 2u);
  EXPECT_EQ(s.sources[0].name(), "http://pki.corp.test/device.crl");
  EXPECT_FALSE(s.sources[0].refresh_margin);
  EXPECT_EQ(*s.sources[1].refresh_margin, std::chrono::seconds(120));
  EXPECT_EQ(s.refresh.margin, std::chrono::seconds(3600));
  EXPECT_EQ(s.http_max_bytes, 64u << 20);
  EXPECT_EQ(s.heartbeat_interval, std::chrono::milliseconds(2000));
  // Sources without CAs to verify them with cannot work.
  TempDir dir;
  s.database_file = dir.File("x.db");
  EXPECT_EQ(RevocationService::Open(s, 0).error().code, errc::kCrlUnknownIssuer);
}

}  // namespace
}  // namespace orthrus::revocation
