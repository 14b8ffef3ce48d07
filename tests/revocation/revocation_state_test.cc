// The broker's versioned state: delta correctness (the set at V1 plus the updates the state sends
// equals the set at V2, for every pair of versions, through the edge's FeedApplier), snapshot
// fallbacks, subscriptions and acknowledgements.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "broker/revocation/revocation_state.h"
#include "common/revocation/feed_applier.h"
#include "common/revocation/keys.h"
#include "revocation_test_support.h"

namespace orthrus::revocation {
namespace {

using testing::Canonical;

v1::Entry Entry(const std::string& account, const std::string& device = "") {
  v1::Entry e;
  if (device.empty()) {
    e.mutable_key()->set_account(account);
  } else {
    e.mutable_key()->set_device_id(device);
  }
  e.set_revoked_by("CN=admin");
  e.set_reason("test");
  return e;
}

CrlPtr Crl(const std::string& issuer, const std::vector<int>& serials, const std::string& digest) {
  v1::CrlSet set;
  set.set_issuer_der(issuer);
  set.set_issuer("CN=" + issuer);
  set.set_digest(digest);
  set.set_this_update_unix(1700000000);
  set.set_next_update_unix(1900000000);
  std::string packed;
  for (int s : serials) AppendPacked(packed, *SerialFromHex(std::to_string(s)));
  set.set_serials_packed(packed);
  set.set_serial_count(serials.size());
  auto crl = CrlFromProto(set);
  EXPECT_TRUE(crl) << crl.error().detail;
  return *crl;
}

// Applies `updates` to `held` as an edge would; returns the last applied set.
std::shared_ptr<const RevocationSet> ApplyAll(std::shared_ptr<const RevocationSet> held,
                                              const std::vector<v1::RevocationUpdate>& updates,
                                              int* deltas = nullptr, int* snapshots = nullptr,
                                              int* crl_diffs = nullptr) {
  FeedApplier applier(held);
  for (const auto& u : updates) {
    // Through the wire format, as the edge receives it.
    v1::RevocationUpdate copy;
    EXPECT_TRUE(copy.ParseFromString(u.SerializeAsString()));
    if (copy.has_delta() && deltas) ++*deltas;
    if (copy.has_snapshot() && copy.snapshot().index() == 0 && snapshots) ++*snapshots;
    if (copy.has_delta() && crl_diffs) *crl_diffs += copy.delta().crls_changed_size();
    auto out = applier.Apply(copy);
    EXPECT_TRUE(out) << out.error().detail;
    if (!out) return nullptr;
  }
  return applier.held();
}

TEST(RevocationState, SnapshotAtV1PlusDeltasEqualsSnapshotAtV2) {
  RevocationState state("feed-1", {.history_limit = 100000, .max_delta_bytes = 64u << 20});
  std::mt19937 rng(12345);
  std::map<uint64_t, std::shared_ptr<const RevocationSet>> at;  // version -> set
  at[0] = state.current();
  std::shared_ptr<const RevocationSet> live = RevocationSet::Empty();  // an edge watching throughout
  WatchPosition live_pos = WatchPosition::FromRequest(FeedApplier::MakeWatchRequest(*live));
  int digest_counter = 0;
  int deltas = 0, snapshots = 0, crl_diffs = 0;
  uint64_t version = 0;

  for (int step = 0; step < 80; ++step) {
    StateChange c;
    version += 1 + (rng() % 3 == 0 ? 1 : 0);  // versions may skip (consumed elsewhere)
    c.version = version;
    int op = static_cast<int>(rng() % 10);
    std::string name = "user" + std::to_string(rng() % 12);
    if (op < 4) {
      c.kind = StateChange::Kind::kAdd;
      c.entry = rng() % 2 ? Entry(name) : Entry("", "dev" + std::to_string(rng() % 6));
      c.entry.set_version(version);
    } else if (op < 7) {
      c.kind = StateChange::Kind::kRemove;
      c.entry = rng() % 2 ? Entry(name) : Entry("", "dev" + std::to_string(rng() % 6));
    } else if (op < 9) {
      c.kind = StateChange::Kind::kCrlReplace;
      std::vector<int> serials;
      for (int s = 1; s < 300; ++s) {
        if (rng() % 4 == 0) serials.push_back(s);
      }
      c.crl = Crl(rng() % 2 ? "ca-a" : "ca-b", serials, "d" + std::to_string(++digest_counter));
    } else {
      c.kind = StateChange::Kind::kCrlRemove;
      c.crl_issuer_der = rng() % 2 ? "ca-a" : "ca-b";
    }
    ASSERT_TRUE(state.Apply(c));
    auto now = state.current();
    ASSERT_EQ(now->version(), version);

    // Every earlier version, brought forward by what the state sends, equals the current set.
    for (const auto& [v1, set1] : at) {
      WatchPosition pos = WatchPosition::FromRequest(FeedApplier::MakeWatchRequest(*set1));
      auto updates = state.UpdatesFor(pos, 1);
      auto got = ApplyAll(set1, updates, &deltas, &snapshots, &crl_diffs);
      ASSERT_TRUE(got) << "from version " << v1 << " to " << version;
      EXPECT_EQ(Canonical(*got), Canonical(*now)) << "from version " << v1 << " to " << version;
      EXPECT_EQ(pos.version, version);
      if (v1 > 0) {
        for (const auto& u : updates) EXPECT_TRUE(u.has_delta()) << "from " << v1;
      }
    }
    // The live watcher gets one delta per change (CRL changes as diffs against what it holds).
    auto updates = state.UpdatesFor(live_pos, 2);
    live = ApplyAll(live, updates, &deltas, &snapshots, &crl_diffs);
    ASSERT_TRUE(live);
    EXPECT_EQ(Canonical(*live), Canonical(*now));
    EXPECT_TRUE(state.UpdatesFor(live_pos, 2).empty());  // up to date: nothing more
    at[version] = now;
  }
  EXPECT_GT(deltas, 1000);
  EXPECT_GT(crl_diffs, 10);
  std::printf("[delta correctness] %d deltas (%d CRL diffs) and %d snapshots checked\n", deltas, crl_diffs,
              snapshots);
}

TEST(RevocationState, FallsBackToSnapshots) {
  RevocationState state("feed-1", {.history_limit = 3, .max_delta_bytes = 1u << 20, .snapshot_part_bytes = 4096});
  for (uint64_t v = 1; v <= 6; ++v) {
    StateChange c;
    c.version = v;
    c.entry = Entry("user" + std::to_string(v));
    ASSERT_TRUE(state.Apply(c));
  }
  EXPECT_EQ(state.oldest_delta_version(), 3u);
  auto first_kind = [&](WatchPosition pos) {
    auto updates = state.UpdatesFor(pos, 1);
    return updates.empty() ? std::string("none") : updates[0].has_delta() ? "delta" : "snapshot";
  };
  WatchPosition pos;
  pos.feed_id = "feed-1";
  pos.version = 3;
  EXPECT_EQ(first_kind(pos), "delta");
  pos.version = 2;  // beyond the history
  EXPECT_EQ(first_kind(pos), "snapshot");
  pos.version = 0;  // holds nothing
  EXPECT_EQ(first_kind(pos), "snapshot");
  pos.version = 9;  // from the future (restored database?)
  EXPECT_EQ(first_kind(pos), "snapshot");
  pos.version = 4;
  pos.feed_id = "another-feed";
  EXPECT_EQ(first_kind(pos), "snapshot");
  pos.feed_id = "feed-1";
  pos.version = 6;
  EXPECT_EQ(first_kind(pos), "none");

  // A delta bigger than max_delta_bytes goes as a (multi-part) snapshot.
  RevocationState small("feed-2", {.history_limit = 100, .max_delta_bytes = 2000, .snapshot_part_bytes = 4096});
  StateChange c;
  c.version = 1;
  c.entry = Entry("first");
  ASSERT_TRUE(small.Apply(c));
  std::vector<int> serials;
  for (int i = 1; i < 3000; ++i) serials.push_back(i);
  StateChange crl;
  crl.version = 2;
  crl.kind = StateChange::Kind::kCrlReplace;
  crl.crl = Crl("ca-big", serials, "big");
  ASSERT_TRUE(small.Apply(crl));
  WatchPosition at1;
  at1.feed_id = "feed-2";
  at1.version = 1;
  auto updates = small.UpdatesFor(at1, 1);
  ASSERT_GT(updates.size(), 2u);
  EXPECT_TRUE(updates[0].has_snapshot());
  EXPECT_EQ(Canonical(*ApplyAll(RevocationSet::Empty(), updates)), Canonical(*small.current()));
}

TEST(RevocationState, NotifiesSubscribers) {
  RevocationState state("feed", {});
  std::atomic<uint64_t> seen{0};
  std::atomic<int> calls{0};
  auto sub = state.Subscribe([&](uint64_t v) {
    seen = v;
    ++calls;
  });
  std::unique_ptr<RevocationState::Subscription> self_cancelling;
  std::atomic<int> self_calls{0};
  self_cancelling = state.Subscribe([&](uint64_t) {
    ++self_calls;
    self_cancelling.reset();  // may unsubscribe from inside its own callback
  });
  StateChange c;
  c.version = 1;
  c.entry = Entry("a");
  ASSERT_TRUE(state.Apply(c));
  EXPECT_EQ(seen, 1u);
  c.version = 2;
  c.entry = Entry("b");
  ASSERT_TRUE(state.Apply(c));
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(self_calls, 1);
  sub.reset();
  c.version = 3;
  c.entry = Entry("c");
  ASSERT_TRUE(state.Apply(c));
  EXPECT_EQ(calls, 2);
  c.version = 3;  // not advancing
  EXPECT_FALSE(state.Apply(c));
}

TEST(RevocationState, CountsAcknowledgementsOfConnectedEdges) {
  RevocationState state("feed", {});
  StateChange c;
  c.version = 1;
  c.entry = Entry("a");
  ASSERT_TRUE(state.Apply(c));
  uint64_t w1 = state.WatchStarted("edge-1", 100);
  uint64_t w2 = state.WatchStarted("edge-2", 100);
  auto n = state.CountAcks(1);
  EXPECT_EQ(n.edges_connected(), 2u);
  EXPECT_EQ(n.edges_acknowledged(), 0u);
  EXPECT_EQ(n.pending_edges_size(), 2);

  EXPECT_TRUE(state.RecordAck(w1, "edge-1", "feed", 1, 200));
  EXPECT_FALSE(state.RecordAck(w2, "edge-1", "feed", 1, 200));    // not edge-1's watch
  EXPECT_FALSE(state.RecordAck(w1, "edge-1", "other", 1, 200));   // other feed
  EXPECT_FALSE(state.RecordAck(w1, "edge-1", "feed", 99, 200));   // beyond the current version
  EXPECT_FALSE(state.RecordAck(12345, "edge-1", "feed", 1, 200)); // no such watch
  n = state.CountAcks(1);
  EXPECT_EQ(n.edges_acknowledged(), 1u);
  ASSERT_EQ(n.pending_edges_size(), 1);
  EXPECT_EQ(n.pending_edges(0), "edge-2");
  EXPECT_TRUE(state.RecordAck(w1, "edge-1", "feed", 0, 300));  // never moves backwards
  EXPECT_EQ(state.CountAcks(1).edges_acknowledged(), 1u);

  // WaitForAcks returns as soon as the last connected edge acknowledges.
  std::thread acker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    state.RecordAck(w2, "edge-2", "feed", 1, 400);
  });
  auto start = std::chrono::steady_clock::now();
  n = state.WaitForAcks(1, std::chrono::seconds(10));
  acker.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(n.edges_acknowledged(), 2u);

  c.version = 2;
  c.entry = Entry("b");
  ASSERT_TRUE(state.Apply(c));
  n = state.WaitForAcks(2, std::chrono::milliseconds(50));  // nobody acks: times out with counts
  EXPECT_EQ(n.edges_connected(), 2u);
  EXPECT_EQ(n.edges_acknowledged(), 0u);
  state.WatchEnded(w2);
  state.WatchEnded(w1);
  n = state.WaitForAcks(2, std::chrono::seconds(10));  // no edge connected: nothing to wait for
  EXPECT_EQ(n.edges_connected(), 0u);
  auto edges = state.Edges();
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_FALSE(edges[0].connected());
  EXPECT_EQ(edges[0].acknowledged_version(), 1u);
  EXPECT_FALSE(state.RecordAck(w1, "edge-1", "feed", 2, 500));  // watch is gone
}

}  // namespace
}  // namespace orthrus::revocation
