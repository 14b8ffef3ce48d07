// The broker's RevocationFeed gRPC service over real mutual TLS on 127.0.0.1:0, driven with the
// generated stub: Watch delivers a snapshot, then a delta after a revoke, then heartbeats; Ack is
// counted (and lets a waiting Revoke return with the edge's acknowledgement); a reconnecting edge
// that is up to date gets a heartbeat at once and counts as acknowledged, one that is behind gets a
// delta; an edge certificate not on the allow list is refused; EndAllWatches ends open watches.
// Also the revocation-aware delegator: account names -> principals, credentials dropped on revoke.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "broker/revocation/revocation_service.h"
#include "broker/revocation_delegator.h"
#include "broker/revocation_feed_service.h"
#include "common/revocation/feed_applier.h"
#include "common/tls/pem_files.h"
#include "revocation_test_support.h"

namespace orthrus::broker {
namespace {

namespace asio = boost::asio;
namespace v1 = revocation::v1;
using revocation::testing::Pki;
using revocation::testing::TempDir;

std::string TestPki(const std::string& name) { return std::string(ORTHRUS_TEST_PKI_DIR) + "/" + name; }

std::string Read(const std::string& path) {
  auto text = tls::ReadFile(path);
  EXPECT_TRUE(text) << path;
  return text ? *text : std::string();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A RevocationService with one CRL (crl-v1: alice), the feed service on a TLS listener, and an
// event loop for its strands.
class FeedFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    revocation::RevocationServiceSettings s;
    s.database_file = dir_.File("revocation.db");
    s.crl_ca_files = {Pki("device-ca.pem")};
    std::filesystem::copy_file(Pki("crl-v1.pem"), dir_.File("device.crl"));
    s.sources.push_back({.file = dir_.File("device.crl")});
    auto svc = revocation::RevocationService::Open(s, std::time(nullptr));
    ASSERT_TRUE(svc) << svc.error().detail;
    service_ = std::move(*svc);
    service_->RefreshCrls(std::time(nullptr), true);
    ASSERT_EQ(service_->state().version(), 1u);

    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { ioc_.run(); });
    feed_ = std::make_unique<RevocationFeedService>(ioc_.get_executor(), service_->state(),
                                                    std::vector<std::string>{"edge-1"},
                                                    std::chrono::milliseconds(200));
    grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_root_certs = Read(TestPki("internal-ca.pem"));
    tls.pem_key_cert_pairs.push_back({Read(TestPki("broker.key")), Read(TestPki("broker.pem"))});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &port_);
    builder.RegisterService(feed_.get());
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_ && port_ != 0);
  }

  void TearDown() override {
    if (feed_) feed_->EndAllWatches();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    work_.reset();
    for (auto& t : threads_) t.join();
  }

  std::unique_ptr<v1::RevocationFeed::Stub> Stub(const std::string& edge = "edge-1") {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = Read(TestPki("internal-ca.pem"));
    tls.pem_cert_chain = Read(TestPki(edge + ".pem"));
    tls.pem_private_key = Read(TestPki(edge + ".key"));
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("broker.test");
    // A fresh channel per stub (no subchannel sharing), so each test's edge identity is its own.
    args.SetInt("orthrus_test_channel", next_channel_++);
    auto channel = grpc::CreateCustomChannel("ipv4:127.0.0.1:" + std::to_string(port_),
                                             grpc::SslCredentials(tls), args);
    return v1::RevocationFeed::NewStub(channel);
  }

  revocation::RevocationState& state() { return service_->state(); }

  v1::RevokeRequest RevokeAccount(const std::string& account, uint32_t wait_ms = 0) {
    v1::RevokeRequest req;
    req.mutable_key()->set_account(account);
    req.set_reason("test");
    req.set_wait_for_edges_ms(wait_ms);
    return req;
  }

  // Reads until a message that is not a heartbeat (or the stream ends).
  static std::optional<v1::RevocationUpdate> NextUpdate(grpc::ClientReader<v1::RevocationUpdate>& reader) {
    v1::RevocationUpdate u;
    while (reader.Read(&u)) {
      if (!u.has_heartbeat()) return u;
    }
    return std::nullopt;
  }

  TempDir dir_;
  std::unique_ptr<revocation::RevocationService> service_;
  asio::io_context ioc_{2};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ioc_);
  std::vector<std::thread> threads_;
  std::unique_ptr<RevocationFeedService> feed_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int next_channel_ = 0;
};

TEST_F(FeedFixture, WatchDeliversASnapshotThenADeltaThenHeartbeatsAndAcksAreCounted) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::WatchRequest request;  // holds nothing
  auto reader = stub->Watch(&ctx, request);
  revocation::FeedApplier applier(revocation::RevocationSet::Empty());

  // Snapshot of version 1 (the CRL), complete in one part.
  auto first = NextUpdate(*reader);
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->has_snapshot()) << first->DebugString();
  EXPECT_EQ(first->feed_id(), service_->feed_id());
  EXPECT_TRUE(first->snapshot().last());
  auto applied = applier.Apply(*first);
  ASSERT_TRUE(applied) << applied.error().detail;
  ASSERT_TRUE(applied->applied);
  EXPECT_EQ(applied->applied->version(), 1u);
  EXPECT_EQ(applied->applied->crls().size(), 1u);
  const uint64_t watch_id = first->watch_id();
  EXPECT_GT(watch_id, 0u);

  // Connected, not yet acknowledged; then the ack counts.
  EXPECT_EQ(state().CountAcks(1).edges_connected(), 1u);
  EXPECT_EQ(state().CountAcks(1).edges_acknowledged(), 0u);
  {
    grpc::ClientContext ack_ctx;
    v1::AckRequest ack;
    ack.set_feed_id(service_->feed_id());
    ack.set_watch_id(watch_id);
    ack.set_version(1);
    v1::AckResponse res;
    ASSERT_TRUE(stub->Ack(&ack_ctx, ack, &res).ok());
  }
  EXPECT_EQ(state().CountAcks(1).edges_acknowledged(), 1u);

  // A revoke that waits for the edges: returns once this edge acknowledged the delta.
  auto revoke = std::async(std::launch::async, [this] {
    return service_->Revoke(RevokeAccount("Bob@Corp.Test", 5000), "admin-1", NowMs());
  });
  auto delta = NextUpdate(*reader);
  ASSERT_TRUE(delta);
  ASSERT_TRUE(delta->has_delta()) << delta->DebugString();
  EXPECT_EQ(delta->delta().from_version(), 1u);
  EXPECT_EQ(delta->delta().to_version(), 2u);
  ASSERT_EQ(delta->delta().added_size(), 1);
  EXPECT_EQ(delta->delta().added(0).key().account(), "bob@corp.test");
  EXPECT_EQ(delta->delta().added(0).revoked_by(), "admin-1");
  applied = applier.Apply(*delta);
  ASSERT_TRUE(applied) << applied.error().detail;
  ASSERT_TRUE(applied->applied);
  EXPECT_EQ(applied->applied->CheckAccounts({"bob@corp.test"}).finding, revocation::Finding::kAccountRevoked);
  {
    grpc::ClientContext ack_ctx;
    v1::AckRequest ack;
    ack.set_feed_id(service_->feed_id());
    ack.set_watch_id(delta->watch_id());
    ack.set_version(2);
    v1::AckResponse res;
    ASSERT_TRUE(stub->Ack(&ack_ctx, ack, &res).ok());
  }
  auto revoked = revoke.get();
  ASSERT_TRUE(revoked) << revoked.error().detail;
  EXPECT_EQ(revoked->acks().version(), 2u);
  EXPECT_EQ(revoked->acks().edges_connected(), 1u);
  EXPECT_EQ(revoked->acks().edges_acknowledged(), 1u);

  // Nothing else changes: heartbeats carrying the version delivered, every ~200 ms.
  v1::RevocationUpdate hb;
  auto started = std::chrono::steady_clock::now();
  int heartbeats = 0;
  while (heartbeats < 2 && reader->Read(&hb)) {
    ASSERT_TRUE(hb.has_heartbeat()) << hb.DebugString();
    EXPECT_EQ(hb.heartbeat().version(), 2u);
    EXPECT_EQ(hb.heartbeat().interval_ms(), 200u);
    ASSERT_TRUE(applier.Apply(hb));
    EXPECT_FALSE(applier.behind());
    ++heartbeats;
  }
  EXPECT_EQ(heartbeats, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));

  // A burst of changes reaches the edge, coalesced or not, ending at the last version.
  for (const char* who : {"carol", "dave", "erin"}) {
    ASSERT_TRUE(service_->Revoke(RevokeAccount(who), "admin-1", NowMs()));
  }
  while (applier.held()->version() < 5) {
    auto u = NextUpdate(*reader);
    ASSERT_TRUE(u);
    ASSERT_TRUE(u->has_delta()) << u->DebugString();
    ASSERT_TRUE(applier.Apply(*u));
  }
  EXPECT_EQ(revocation::testing::Canonical(*applier.held()), revocation::testing::Canonical(*state().current()));

  // Cancelling the watch ends it on the broker: the edge is no longer counted.
  ctx.TryCancel();
  reader->Finish();
  for (int i = 0; i < 200 && feed_->watch_count() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(feed_->watch_count(), 0u);
  EXPECT_EQ(state().CountAcks(5).edges_connected(), 0u);
}

TEST_F(FeedFixture, ReconnectingEdgesGetAHeartbeatWhenUpToDateAndADeltaWhenBehind) {
  ASSERT_TRUE(service_->Revoke(RevokeAccount("bob"), "admin-1", NowMs()));  // version 2
  auto held = state().current();
  auto stub = Stub();
  {
    // Up to date: a heartbeat at once, and the version it holds counts as acknowledged.
    grpc::ClientContext ctx;
    auto reader = stub->Watch(&ctx, revocation::FeedApplier::MakeWatchRequest(*held));
    v1::RevocationUpdate u;
    ASSERT_TRUE(reader->Read(&u));
    ASSERT_TRUE(u.has_heartbeat()) << u.DebugString();
    EXPECT_EQ(u.heartbeat().version(), 2u);
    EXPECT_EQ(state().CountAcks(2).edges_acknowledged(), 1u);
    ctx.TryCancel();
    reader->Finish();
  }
  {
    // Behind by one version (holds version 1 of this feed, with its CRL): a delta.
    v1::WatchRequest request = revocation::FeedApplier::MakeWatchRequest(*held);
    request.set_version(1);
    grpc::ClientContext ctx;
    auto reader = stub->Watch(&ctx, request);
    auto u = NextUpdate(*reader);
    ASSERT_TRUE(u);
    ASSERT_TRUE(u->has_delta()) << u->DebugString();
    EXPECT_EQ(u->delta().from_version(), 1u);
    EXPECT_EQ(u->delta().to_version(), 2u);
    EXPECT_EQ(u->delta().crls_replaced_size(), 0);  // the CRL it holds is not sent again
    ctx.TryCancel();
    reader->Finish();
  }
}

TEST_F(FeedFixture, EdgesNotOnTheAllowListAreRefused) {
  auto stub = Stub("edge-unknown");
  grpc::ClientContext ctx;
  auto reader = stub->Watch(&ctx, v1::WatchRequest());
  v1::RevocationUpdate u;
  EXPECT_FALSE(reader->Read(&u));
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message(), "edge_not_allowed");

  grpc::ClientContext ack_ctx;
  v1::AckRequest ack;
  ack.set_feed_id(service_->feed_id());
  ack.set_watch_id(1);
  ack.set_version(1);
  v1::AckResponse res;
  st = stub->Ack(&ack_ctx, ack, &res);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(state().CountAcks(1).edges_connected(), 0u);
}

TEST_F(FeedFixture, EndAllWatchesEndsOpenWatchesAndRefusesNewOnes) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  auto reader = stub->Watch(&ctx, v1::WatchRequest());
  ASSERT_TRUE(NextUpdate(*reader));  // the snapshot
  feed_->EndAllWatches();
  v1::RevocationUpdate u;
  while (reader->Read(&u)) {
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);

  grpc::ClientContext ctx2;
  auto again = stub->Watch(&ctx2, v1::WatchRequest());
  EXPECT_FALSE(again->Read(&u));
  EXPECT_EQ(again->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

// ----------------------------------------------------------------------- the delegator wrapper

class FakeDelegator final : public Delegator {
 public:
  Result<std::unique_ptr<NegotiateExchange>> Begin(const std::string& user, const std::string&) override {
    std::lock_guard lock(mutex);
    begun.push_back(user);
    return Fail("kerberos_error", "fake");
  }
  void ForgetUser(const std::string& user) override {
    std::lock_guard lock(mutex);
    forgotten.push_back(user);
  }
  DelegationStats Stats() const override { return {}; }

  std::mutex mutex;
  std::vector<std::string> begun;
  std::vector<std::string> forgotten;
};

TEST(RevocationDelegator, MapsAccountNamesToPrincipals) {
  using V = std::vector<std::string>;
  EXPECT_EQ(PrincipalsForAccount("alice@corp.test", "CORP.TEST"), (V{"alice@corp.test", "alice@CORP.TEST"}));
  EXPECT_EQ(PrincipalsForAccount("corp\\alice", "CORP.TEST"), (V{"alice@CORP.TEST"}));
  EXPECT_EQ(PrincipalsForAccount("alice", "CORP.TEST"), (V{"alice@CORP.TEST"}));
  EXPECT_EQ(PrincipalsForAccount("", "CORP.TEST"), V{});
  EXPECT_EQ(AccountNamesForPrincipal("Alice@CORP.TEST"), (V{"alice@corp.test", "alice", "corp\\alice"}));
  EXPECT_EQ(AccountNamesForPrincipal("alice"), (V{"alice"}));
}

TEST(RevocationDelegator, DropsCredentialsOfRevokedAccountsAndRefusesThem) {
  TempDir dir;
  revocation::RevocationServiceSettings s;
  s.database_file = dir.File("revocation.db");
  auto svc = revocation::RevocationService::Open(s, std::time(nullptr));
  ASSERT_TRUE(svc) << svc.error().detail;
  auto fake = std::make_unique<FakeDelegator>();
  FakeDelegator* inner = fake.get();
  RevocationAwareDelegator delegator(std::move(fake), (*svc)->state(), "CORP.TEST");

  // Alice's credentials get cached under the directory's spelling of her sAMAccountName.
  EXPECT_EQ(delegator.Begin("Alice@CORP.TEST", "HTTP/web.corp.test").error().code, "kerberos_error");
  EXPECT_EQ(delegator.Begin("bob@CORP.TEST", "HTTP/web.corp.test").error().code, "kerberos_error");

  v1::RevokeRequest req;
  req.mutable_key()->set_account("alice@corp.test");  // her UPN
  req.set_reason("left");
  ASSERT_TRUE((*svc)->Revoke(req, "admin-1", NowMs()));
  {
    std::lock_guard lock(inner->mutex);
    EXPECT_NE(std::find(inner->forgotten.begin(), inner->forgotten.end(), "Alice@CORP.TEST"),
              inner->forgotten.end());
    EXPECT_EQ(std::find(inner->forgotten.begin(), inner->forgotten.end(), "bob@CORP.TEST"),
              inner->forgotten.end());
  }
  // No new ticket for her, whatever the spelling; bob is untouched.
  auto refused = delegator.Begin("alice@CORP.TEST", "HTTP/web.corp.test");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, "account_revoked");
  EXPECT_EQ(delegator.Begin("bob@CORP.TEST", "HTTP/web.corp.test").error().code, "kerberos_error");

  // By NetBIOS name: bob.
  req.mutable_key()->set_account("CORP\\bob");
  ASSERT_TRUE((*svc)->Revoke(req, "admin-1", NowMs()));
  {
    std::lock_guard lock(inner->mutex);
    EXPECT_NE(std::find(inner->forgotten.begin(), inner->forgotten.end(), "bob@CORP.TEST"),
              inner->forgotten.end());
  }
  EXPECT_EQ(delegator.Begin("bob@CORP.TEST", "HTTP/web.corp.test").error().code, "account_revoked");
  std::lock_guard lock(inner->mutex);
  EXPECT_EQ(inner->begun.size(), 3u);  // the refused ones never reached the KDC
}

}  // namespace
}  // namespace orthrus::broker
