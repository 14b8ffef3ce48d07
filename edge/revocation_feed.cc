#include "edge/revocation_feed.h"

#include <algorithm>

#include "common/log.h"
#include "common/revocation/errors.h"
#include "common/revocation/feed_applier.h"
#include "common/revocation/state_file.h"
#include "orthrus/revocation/v1/revocation.grpc.pb.h"

namespace orthrus::edge {

namespace v1 = orthrus::revocation::v1;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::shared_ptr<const revocation::RevocationSet> PushedRevocation::Current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

void PushedRevocation::Replace(std::shared_ptr<const revocation::RevocationSet> set) {
  std::lock_guard lock(mutex_);
  current_ = std::move(set);
}

int64_t PushedRevocation::AgeSeconds(int64_t now_unix_ms) const {
  int64_t last = last_contact_ms_.load();
  return last == 0 ? -1 : std::max<int64_t>(0, (now_unix_ms - last) / 1000);
}

std::optional<std::string> PushedRevocation::StaleRefusal(int64_t now_unix_ms) const {
  if (!settings_.fail_closed) return std::nullopt;
  int64_t age = AgeSeconds(now_unix_ms);
  if (age < 0) return "no revocation set yet: no broker has answered and there is no state file";
  if (age > settings_.max_staleness.count()) {
    return "no word from the revocation feed for " + std::to_string(age) +
           " s (revocation_feed.max_staleness_seconds " +
           std::to_string(settings_.max_staleness.count()) + ")";
  }
  return std::nullopt;
}

RevocationFeedClient::RevocationFeedClient(PushedRevocation& target, std::vector<Target> brokers,
                                           OnApplied on_applied)
    : target_(target), brokers_(std::move(brokers)), on_applied_(std::move(on_applied)) {}

RevocationFeedClient::~RevocationFeedClient() { Stop(); }

Status RevocationFeedClient::LoadState() {
  auto loaded = revocation::LoadStateFile(target_.settings().state_file);
  if (!loaded) {
    if (loaded.error().code == revocation::errc::kStateMissing) {
      log::Info("revocation_state", {{"file", target_.settings().state_file}, {"loaded", false}});
      return {};
    }
    return std::unexpected(std::move(loaded.error()));
  }
  target_.Replace(loaded->set);
  target_.Touch(loaded->saved_unix_ms);
  log::Info("revocation_state", {{"file", target_.settings().state_file},
                                 {"loaded", true},
                                 {"feed", loaded->set->feed_id()},
                                 {"version", loaded->set->version()},
                                 {"entries", static_cast<uint64_t>(loaded->set->entries().size())},
                                 {"crl_serials", loaded->set->crl_serial_count()}});
  return {};
}

void RevocationFeedClient::Start() {
  thread_ = std::thread([this] { Run(); });
}

bool RevocationFeedClient::WaitForFirstSync(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, limit, [this] { return synced_ || stopping_.load(); }) && synced_;
}

void RevocationFeedClient::Stop() {
  stopping_.store(true);
  {
    std::lock_guard lock(mutex_);
    if (active_) active_->TryCancel();
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void RevocationFeedClient::Run() {
  auto backoff = target_.settings().reconnect_min;
  size_t next = 0;
  while (!stopping_.load()) {
    const Target& broker = brokers_[next];
    bool received = WatchOnce(broker);
    if (stopping_.load()) break;
    // A broker that answered is worth another try at once; otherwise the next one, backing off.
    if (received) {
      backoff = target_.settings().reconnect_min;
    } else {
      next = (next + 1) % brokers_.size();
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, backoff, [this] { return stopping_.load(); });
      backoff = std::min(backoff * 2, target_.settings().reconnect_max);
    }
  }
}

bool RevocationFeedClient::WatchOnce(const Target& broker) {
  auto stub = v1::RevocationFeed::NewStub(broker.channel);
  revocation::FeedApplier applier(target_.Current());
  v1::WatchRequest request = applier.MakeWatchRequest();
  grpc::ClientContext context;
  {
    std::lock_guard lock(mutex_);
    if (stopping_.load()) return false;
    active_ = &context;
  }
  auto reader = stub->Watch(&context, request);
  bool received = false;
  v1::RevocationUpdate update;
  std::string failure;
  while (reader->Read(&update)) {
    received = true;
    auto outcome = applier.Apply(update);
    if (!outcome) {
      failure = outcome.error().code + ": " + outcome.error().detail;
      context.TryCancel();
      break;
    }
    int64_t now = NowUnixMs();
    if (outcome->applied) {
      const auto& set = outcome->applied;
      target_.Replace(set);
      target_.Touch(now);
      if (on_applied_) on_applied_(*set);
      // Persisted before the ack: an acknowledged version survives an edge restart.
      Status saved = revocation::SaveStateFile(target_.settings().state_file, *set, now);
      if (!saved) {
        log::Error("revocation_state_write_failed",
                   {{"file", target_.settings().state_file}, {"detail", saved.error().detail}});
      }
      log::Info("revocation_applied", {{"broker", broker.name},
                                       {"feed", set->feed_id()},
                                       {"version", set->version()},
                                       {"entries", static_cast<uint64_t>(set->entries().size())},
                                       {"crls", static_cast<uint64_t>(set->crls().size())}});
      {
        std::lock_guard lock(mutex_);
        synced_ = true;
        cv_.notify_all();
      }
      if (saved) Ack(broker, set->feed_id(), applier.watch_id(), set->version());
    } else if (!applier.assembling()) {
      // A heartbeat (or a part of a snapshot in progress does not count: the set is not whole).
      target_.Touch(now);
      if (outcome->heartbeat) {
        std::lock_guard lock(mutex_);
        if (!synced_) {
          synced_ = true;
          cv_.notify_all();
        }
      }
    }
    if (applier.behind()) {
      failure = "a heartbeat announced a newer version than the one held";
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  {
    std::lock_guard lock(mutex_);
    active_ = nullptr;
  }
  if (!stopping_.load()) {
    log::Warn("revocation_watch_ended",
              {{"broker", broker.name},
               {"received", received},
               {"grpc_status", static_cast<int>(status.error_code())},
               {"detail", failure.empty() ? status.error_message() : failure}});
  }
  return received && failure.empty();
}

void RevocationFeedClient::Ack(const Target& broker, const std::string& feed_id, uint64_t watch_id,
                               uint64_t version) {
  auto stub = v1::RevocationFeed::NewStub(broker.channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::AckRequest request;
  request.set_feed_id(feed_id);
  request.set_watch_id(watch_id);
  request.set_version(version);
  v1::AckResponse response;
  grpc::Status status = stub->Ack(&context, request, &response);
  if (!status.ok()) {
    log::Warn("revocation_ack_failed", {{"broker", broker.name},
                                        {"version", version},
                                        {"detail", status.error_message()}});
  }
}

}  // namespace orthrus::edge
