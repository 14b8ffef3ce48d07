#pragma once
// The broker's in-memory, versioned revocation state: what every edge should hold, how to bring a
// watching edge from what it holds to the current version, and which edges acknowledged what.
//
//   current()       immutable RevocationSet (instant entries + CRL sets) at version()
//   Apply(change)   the next version (callers serialize writes; RevocationService does)
//   Subscribe(fn)   fn(version) after every Apply, outside the state's locks: a Watch reactor posts
//                   itself a wake-up, then calls UpdatesFor(position) on its own strand
//   UpdatesFor(pos) Delta if the in-memory history reaches back to pos.version and the delta is
//                   small, else a SnapshotPart sequence; advances pos. Empty when up to date.
//   WatchStarted / WatchEnded / RecordAck / CountAcks / WaitForAcks   per-edge acknowledgements
//
// Thread safety: every method may be called from any thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/revocation/revocation_set.h"
#include "orthrus/revocation/v1/revocation.pb.h"

namespace orthrus::revocation {

// One instant change, as kept for deltas.
struct InstantChange {
  uint64_t version = 0;
  bool added = true;  // false: removed (entry.key is the key)
  v1::Entry entry;
};

struct StateChange {
  enum class Kind : uint8_t { kAdd, kRemove, kCrlReplace, kCrlRemove };
  uint64_t version = 0;  // must be greater than the state's current version
  Kind kind = Kind::kAdd;
  v1::Entry entry;              // kAdd: the entry; kRemove: entry.key
  CrlPtr crl;                   // kCrlReplace
  std::string crl_issuer_der;   // kCrlRemove
};

// What a watching edge holds: taken from its WatchRequest, then advanced by UpdatesFor.
struct WatchPosition {
  std::string feed_id;
  uint64_t version = 0;
  std::map<std::string, std::string> crl_digests;  // issuer_der -> digest

  static WatchPosition FromRequest(const v1::WatchRequest& request);
};

class RevocationState {
 public:
  struct Options {
    size_t history_limit = 10000;          // instant changes kept for deltas
    size_t max_delta_bytes = 1u << 20;     // a larger delta is sent as a snapshot instead
    size_t snapshot_part_bytes = 1u << 20; // well below gRPC's default 4 MiB message limit
  };

  RevocationState(std::string feed_id, Options options);

  // Initial content (the database at start): `set` (its version is the state's version) and the
  // instant changes of the change log with version > history_from, ascending.
  void Reset(std::shared_ptr<const RevocationSet> set, uint64_t history_from,
             std::vector<InstantChange> history);

  const std::string& feed_id() const { return feed_id_; }
  uint64_t version() const;
  std::shared_ptr<const RevocationSet> current() const;
  // Deltas can be built from any version >= this.
  uint64_t oldest_delta_version() const;

  // Applies one change as the next version, then notifies subscribers.
  Status Apply(const StateChange& change);

  // ---- watchers
  class Subscription {
   public:
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

   private:
    friend class RevocationState;
    struct Slot;
    Subscription(RevocationState* state, std::shared_ptr<Slot> slot);
    RevocationState* state_;
    std::shared_ptr<Slot> slot_;
  };
  // `listener(version)` runs on the thread that called Apply, after the state's locks are released;
  // it must not block. It may destroy its own Subscription. Destroying a Subscription waits for a
  // running invocation on another thread, after which the listener is never called again.
  [[nodiscard]] std::unique_ptr<Subscription> Subscribe(std::function<void(uint64_t)> listener);

  std::vector<v1::RevocationUpdate> UpdatesFor(WatchPosition& position, uint64_t watch_id) const;
  v1::RevocationUpdate MakeHeartbeat(uint64_t watch_id, uint32_t interval_ms, int64_t now_unix_ms) const;

  // ---- acknowledgements
  // A Watch from the edge named `edge_name` (from its mutual-TLS certificate). Returns its watch_id.
  uint64_t WatchStarted(const std::string& edge_name, int64_t now_unix_ms);
  void WatchEnded(uint64_t watch_id);
  // Ignored (false) unless watch_id is a live watch of `edge_name` on this feed and version is not
  // beyond the current one. An edge's acknowledged version only moves forward.
  bool RecordAck(uint64_t watch_id, const std::string& edge_name, const std::string& feed_id,
                 uint64_t version, int64_t now_unix_ms);
  // Among the edges with a live watch: how many acknowledged `version` or later.
  v1::EdgeAckCount CountAcks(uint64_t version) const;
  // Blocks until every connected edge acknowledged `version` (or none is connected) or `timeout`.
  v1::EdgeAckCount WaitForAcks(uint64_t version, std::chrono::milliseconds timeout) const;
  std::vector<v1::EdgeStatus> Edges() const;

 private:
  std::vector<v1::RevocationUpdate> Snapshot(const std::shared_ptr<const RevocationSet>& set,
                                             uint64_t watch_id) const;
  v1::EdgeAckCount CountAcksLocked(uint64_t version) const;
  void Unsubscribe(const std::shared_ptr<Subscription::Slot>& slot);

  const std::string feed_id_;
  const Options options_;

  mutable std::mutex mutex_;  // guards the state below
  std::shared_ptr<const RevocationSet> current_;
  std::deque<InstantChange> history_;
  uint64_t history_from_ = 0;
  std::map<std::string, CrlPtr, std::less<>> previous_crl_;  // issuer -> CRL before the current one

  std::mutex listeners_mutex_;
  std::vector<std::shared_ptr<Subscription::Slot>> listeners_;

  struct EdgeRecord {
    std::set<uint64_t> watches;
    uint64_t acked_version = 0;
    int64_t last_ack_ms = 0;
    int64_t connected_since_ms = 0;
  };
  mutable std::mutex acks_mutex_;
  mutable std::condition_variable acks_changed_;
  std::map<std::string, EdgeRecord> edges_;
  std::map<uint64_t, std::string> watches_;  // watch_id -> edge name
  uint64_t next_watch_id_ = 1;
};

}  // namespace orthrus::revocation
