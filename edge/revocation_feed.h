#pragma once
// The edge's end of the revocation push: a watch on the brokers' RevocationFeed, the set it keeps
// current (what every handshake and request is checked against), the state file it starts from when
// no broker answers, and how stale that set is.
//
// The watch runs on its own thread with gRPC's blocking API: it never touches an event loop, and
// the file writes (a 100 000-entry set is ~2 MB) stay off it too. Checks read an immutable
// snapshot through an atomic pointer swap.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/result.h"
#include "common/revocation/revocation_set.h"

namespace orthrus::edge {

struct RevocationFeedSettings {
  std::string state_file;
  std::chrono::seconds max_staleness{300};
  bool fail_closed = true;
  std::chrono::seconds initial_sync_timeout{5};
  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{5000};
  std::chrono::seconds crl_stale_grace{0};
};

// What the checks read. Thread-safe.
class PushedRevocation {
 public:
  explicit PushedRevocation(const RevocationFeedSettings& settings) : settings_(settings) {}

  std::shared_ptr<const revocation::RevocationSet> Current() const;
  void Replace(std::shared_ptr<const revocation::RevocationSet> set);
  // Any message from a broker (update or heartbeat) proves the set is current as of now.
  void Touch(int64_t unix_ms) { last_contact_ms_.store(unix_ms); }
  int64_t last_contact_unix_ms() const { return last_contact_ms_.load(); }
  // Seconds since the last contact (or since the state file was saved); -1 before either.
  int64_t AgeSeconds(int64_t now_unix_ms) const;
  // Under fail_closed: why nobody should be admitted (the set may be missing a revocation).
  std::optional<std::string> StaleRefusal(int64_t now_unix_ms) const;
  const RevocationFeedSettings& settings() const { return settings_; }

 private:
  const RevocationFeedSettings settings_;
  mutable std::mutex mutex_;  // guards the pointer only
  std::shared_ptr<const revocation::RevocationSet> current_ = revocation::RevocationSet::Empty();
  std::atomic<int64_t> last_contact_ms_{0};
};

class RevocationFeedClient {
 public:
  struct Target {
    std::string name;
    std::shared_ptr<grpc::Channel> channel;
  };
  // Called on the feed thread after each new set is in place (and persisted).
  using OnApplied = std::function<void(const revocation::RevocationSet&)>;

  RevocationFeedClient(PushedRevocation& target, std::vector<Target> brokers, OnApplied on_applied);
  ~RevocationFeedClient();

  // Loads the state file: a missing file starts empty, a corrupt one is an error (the operator
  // must look: a half-written file cannot be, so it was tampered with or the disk is failing).
  Status LoadState();
  void Start();
  // Waits until the first set from a broker is applied, at most `limit`. False on timeout.
  bool WaitForFirstSync(std::chrono::milliseconds limit);
  void Stop();

 private:
  void Run();
  // One watch on one broker until it fails or Stop(); true if anything was received.
  bool WatchOnce(const Target& broker);
  void Ack(const Target& broker, const std::string& feed_id, uint64_t watch_id, uint64_t version);

  PushedRevocation& target_;
  std::vector<Target> brokers_;
  OnApplied on_applied_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  grpc::ClientContext* active_ = nullptr;  // guarded by mutex_, for Stop() to cancel
  bool synced_ = false;                    // guarded by mutex_
};

int64_t NowUnixMs();

}  // namespace orthrus::edge
