#pragma once
// Edge side of RevocationFeed.Watch, without any gRPC: turns the messages of one watch stream into
// complete, applied versions. The caller (the edge's feed client) owns the stream; per message it
//   1. calls Apply(update);
//   2. on an error: keeps serving the held set, cancels the stream and reconnects (the broker then
//      sends a snapshot or a delta from what is held) — the error's detail says what was wrong;
//   3. when Outcome::applied is set: swaps it into the store the handshake/request checks read,
//      persists it (SaveStateFile), then calls RevocationFeed.Ack(feed_id, watch_id, version);
//   4. records "last contact" for staleness on every successfully applied message, heartbeats
//      included.
// Not thread-safe: one FeedApplier per stream, used from that stream's callbacks only. Create a new
// one (from the currently held set) for every new stream.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/revocation/revocation_set.h"
#include "orthrus/revocation/v1/revocation.pb.h"

namespace orthrus::revocation {

class FeedApplier {
 public:
  // `held`: what the edge holds now (the state file's set, the previous stream's result, or
  // RevocationSet::Empty()). Never null.
  explicit FeedApplier(std::shared_ptr<const RevocationSet> held);

  // The request that opens Watch: feed id and version of `held`, and the digests of its CRLs.
  static v1::WatchRequest MakeWatchRequest(const RevocationSet& held);
  v1::WatchRequest MakeWatchRequest() const { return MakeWatchRequest(*held_); }

  struct Outcome {
    // Set when this message completed a version (last snapshot part, or a delta): the new set.
    std::shared_ptr<const RevocationSet> applied;
    bool heartbeat = false;
    // The broker's current version as last announced (heartbeat, snapshot or delta).
    uint64_t broker_version = 0;
  };
  Result<Outcome> Apply(const v1::RevocationUpdate& update);

  const std::shared_ptr<const RevocationSet>& held() const { return held_; }
  uint64_t watch_id() const { return watch_id_; }
  // True when a heartbeat announced a version newer than the one held while no snapshot is being
  // assembled: an update went missing; reconnect.
  bool behind() const;
  bool assembling() const { return assembling_; }

 private:
  Result<Outcome> ApplySnapshotPart(const std::string& feed_id, const v1::SnapshotPart& part);

  std::shared_ptr<const RevocationSet> held_;
  uint64_t watch_id_ = 0;
  uint64_t broker_version_ = 0;
  std::string broker_feed_;

  // Snapshot being assembled.
  bool assembling_ = false;
  std::string asm_feed_;
  uint64_t asm_version_ = 0;
  uint32_t asm_next_index_ = 0;
  std::vector<v1::Entry> asm_entries_;
  std::vector<v1::CrlSet> asm_crls_;
};

}  // namespace orthrus::revocation
