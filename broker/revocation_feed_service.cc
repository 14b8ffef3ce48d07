#include "broker/revocation_feed_service.h"

#include <grpc/grpc_security_constants.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <deque>
#include <optional>

#include "broker/broker_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reason.h"

namespace orthrus::broker {

namespace asio = boost::asio;
namespace v1 = revocation::v1;

namespace {

int64_t FeedNowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}


// Edges that passed TLS (right CA) but are not on the allow list, and watches during shutdown.
class RefusingWriter final : public grpc::ServerWriteReactor<v1::RevocationUpdate> {
 public:
  explicit RefusingWriter(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// The name the edge is known by, or nothing (logged and counted as edge_not_allowed).
std::optional<std::string> AuthorizeEdge(grpc::CallbackServerContext* context,
                                         const std::vector<std::string>& allowed, std::string_view rpc) {
  auto auth = context->auth_context();
  auto edge = auth ? AllowedEdgeName(*auth, allowed) : std::nullopt;
  if (!edge) {
    metrics::CountReason(Reason::kEdgeNotAllowed);
    log::Warn("edge_refused", {{"reason", ReasonName(Reason::kEdgeNotAllowed)},
                               {"rpc", rpc},
                               {"peer", context->peer()},
                               {"certificate", auth ? PeerDescription(*auth) : ""},
                               {"hint", ReasonHint(Reason::kEdgeNotAllowed)}});
  }
  return edge;
}

}  // namespace

// ------------------------------------------------------------------------------------ the watch

class RevocationFeedService::WatchReactor final
    : public grpc::ServerWriteReactor<v1::RevocationUpdate>,
      public std::enable_shared_from_this<WatchReactor> {
 public:
  WatchReactor(RevocationFeedService& owner, std::string edge, std::string peer,
               const v1::WatchRequest& request)
      : owner_(owner),
        state_(owner.state_),
        strand_(asio::make_strand(owner.executor_)),
        heartbeat_(strand_),
        edge_(std::move(edge)),
        peer_(std::move(peer)),
        position_(revocation::WatchPosition::FromRequest(request)),
        interval_(owner.heartbeat_interval_) {}

  // On the gRPC thread that called Watch(), before the reactor is returned to gRPC.
  void Start() {
    const int64_t now = FeedNowUnixMs();
    watch_id_ = state_.WatchStarted(edge_, now);
    // The edge says it holds (applied and persisted) this version of this feed: as good as an ack,
    // so an up-to-date edge that reconnects counts as acknowledged without any new version.
    if (position_.feed_id == state_.feed_id() && position_.version > 0) {
      state_.RecordAck(watch_id_, edge_, position_.feed_id, position_.version, now);
    }
    log::Info("revocation_watch_started", {{"edge", edge_},
                                           {"peer", peer_},
                                           {"watch_id", watch_id_},
                                           {"edge_feed", position_.feed_id},
                                           {"edge_version", position_.version},
                                           {"version", state_.version()}});
    std::weak_ptr<WatchReactor> weak = shared_from_this();
    // Subscribe first, then read the state on the strand: no version can fall in between.
    subscription_ = state_.Subscribe([weak](uint64_t) {
      if (auto self = weak.lock()) self->Wake();
    });
    asio::post(strand_, [self = shared_from_this()] {
      self->dirty_ = true;
      self->Pump();
      // Nothing to send (the edge is up to date): a heartbeat at once tells it so.
      if (!self->writing_ && !self->finishing_) self->SendHeartbeat();
      self->ArmHeartbeat();
    });
  }

  void End(grpc::Status status) {
    asio::post(strand_, [self = shared_from_this(), status = std::move(status)]() mutable {
      self->FinishOnStrand(std::move(status));
    });
  }

 private:
  // ---- gRPC reactions: re-posted to the strand, except OnDone.
  void OnWriteDone(bool ok) override {
    asio::post(strand_, [self = shared_from_this(), ok] {
      self->writing_ = false;
      if (self->finish_after_write_) {
        grpc::Status status = std::move(*self->finish_after_write_);
        self->finish_after_write_.reset();
        self->Finish(std::move(status));
        return;
      }
      if (self->finishing_) return;
      if (!ok) {
        self->FinishOnStrand(grpc::Status(grpc::StatusCode::CANCELLED, "the edge went away"));
        return;
      }
      self->Pump();
    });
  }

  void OnCancel() override {
    asio::post(strand_, [self = shared_from_this()] {
      self->cancelled_ = true;
      self->FinishOnStrand(grpc::Status::CANCELLED);
    });
  }

  // gRPC's last call: Finish has run and no operation is outstanding. The strand may still hold
  // handlers (they see finishing_ and do nothing); the state must not call us any more.
  void OnDone() override {
    subscription_.reset();  // waits for a listener call in progress on another thread
    state_.WatchEnded(watch_id_);
    log::Info("revocation_watch_ended", {{"edge", edge_},
                                         {"watch_id", watch_id_},
                                         {"cancelled", cancelled_.load()},
                                         {"messages", messages_.load()},
                                         {"version", sent_version_.load()}});
    owner_.Forget(this);  // may drop the last reference: nothing after this line
  }

  // ---- strand side
  void Wake() {
    asio::post(strand_, [self = shared_from_this()] {
      self->dirty_ = true;
      self->Pump();
    });
  }

  // Writes the next queued update; when the queue is empty and the state moved, builds the updates
  // that bring the edge from its position to the current version (one delta, or snapshot parts).
  void Pump() {
    if (finishing_ || writing_) return;
    if (queue_.empty() && dirty_) {
      dirty_ = false;
      for (auto& u : state_.UpdatesFor(position_, watch_id_)) queue_.push_back(std::move(u));
    }
    if (queue_.empty()) return;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    if (out_.has_delta()) {
      log::Debug("revocation_delta_sent", {{"edge", edge_},
                                           {"from", out_.delta().from_version()},
                                           {"to", out_.delta().to_version()},
                                           {"bytes", static_cast<uint64_t>(out_.ByteSizeLong())}});
    } else if (out_.has_snapshot() && out_.snapshot().last()) {
      log::Info("revocation_snapshot_sent", {{"edge", edge_},
                                             {"version", out_.snapshot().version()},
                                             {"parts", out_.snapshot().index() + 1}});
    }
    Write();
  }

  void SendHeartbeat() {
    if (finishing_ || writing_ || !queue_.empty()) return;
    out_ = state_.MakeHeartbeat(watch_id_, static_cast<uint32_t>(interval_.count()), FeedNowUnixMs());
    // The version this watch has delivered, not the state's: a change applied a moment ago is on
    // its way as a delta, and a heartbeat that ran ahead of it would make the edge reconnect.
    out_.mutable_heartbeat()->set_version(position_.version);
    Write();
  }

  void Write() {
    writing_ = true;
    last_write_ = std::chrono::steady_clock::now();
    ++messages_;
    sent_version_ = position_.version;
    StartWrite(&out_);
  }

  void ArmHeartbeat() {
    if (finishing_) return;
    heartbeat_.expires_at(last_write_ + interval_);
    heartbeat_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->finishing_) return;
      if (std::chrono::steady_clock::now() >= self->last_write_ + self->interval_) self->SendHeartbeat();
      self->ArmHeartbeat();
    });
  }

  void FinishOnStrand(grpc::Status status) {
    if (finishing_) return;
    finishing_ = true;
    heartbeat_.cancel();
    queue_.clear();
    if (writing_) {
      finish_after_write_ = std::move(status);  // one op at a time; the write ends soon (or fails)
    } else {
      Finish(std::move(status));
    }
  }

  RevocationFeedService& owner_;
  revocation::RevocationState& state_;
  asio::any_io_executor strand_;
  asio::steady_timer heartbeat_;
  const std::string edge_;
  const std::string peer_;
  revocation::WatchPosition position_;
  const std::chrono::milliseconds interval_;
  uint64_t watch_id_ = 0;
  std::unique_ptr<revocation::RevocationState::Subscription> subscription_;  // Start .. OnDone

  // Strand only.
  std::deque<v1::RevocationUpdate> queue_;
  v1::RevocationUpdate out_;  // the message being written (must live until OnWriteDone)
  bool writing_ = false;
  bool dirty_ = false;
  bool finishing_ = false;
  std::optional<grpc::Status> finish_after_write_;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();

  // Read by OnDone for the log line.
  std::atomic<bool> cancelled_{false};
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> sent_version_{0};
};

// ------------------------------------------------------------------------------------ the service

RevocationFeedService::RevocationFeedService(asio::any_io_executor executor,
                                             revocation::RevocationState& state,
                                             std::vector<std::string> allowed_edges,
                                             std::chrono::milliseconds heartbeat_interval)
    : executor_(std::move(executor)),
      state_(state),
      allowed_edges_(std::move(allowed_edges)),
      heartbeat_interval_(heartbeat_interval) {}

RevocationFeedService::~RevocationFeedService() {
  std::lock_guard lock(mutex_);
  watches_.clear();
}

grpc::ServerWriteReactor<v1::RevocationUpdate>* RevocationFeedService::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  auto edge = AuthorizeEdge(context, allowed_edges_, "RevocationFeed.Watch");
  if (!edge) {
    return new RefusingWriter(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                           std::string(ReasonName(Reason::kEdgeNotAllowed))));
  }
  auto watch = std::make_shared<WatchReactor>(*this, *edge, context->peer(), *request);
  {
    std::lock_guard lock(mutex_);
    if (shutting_down_) {
      return new RefusingWriter(grpc::Status(grpc::StatusCode::UNAVAILABLE, "broker_shutting_down"));
    }
    watches_.emplace(watch.get(), watch);
    metrics::SetGauge("revocation_watches", static_cast<int64_t>(watches_.size()));
  }
  watch->Start();
  return watch.get();
}

grpc::ServerUnaryReactor* RevocationFeedService::Ack(grpc::CallbackServerContext* context,
                                                     const v1::AckRequest* request, v1::AckResponse*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto edge = AuthorizeEdge(context, allowed_edges_, "RevocationFeed.Ack");
  if (!edge) {
    reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                 std::string(ReasonName(Reason::kEdgeNotAllowed))));
    return reactor;
  }
  // In memory (a mutex and a condition variable): fine on a gRPC thread.
  bool recorded = state_.RecordAck(request->watch_id(), *edge, request->feed_id(), request->version(),
                                   FeedNowUnixMs());
  log::Debug(recorded ? "revocation_ack" : "revocation_ack_ignored",
             {{"edge", *edge}, {"watch_id", request->watch_id()}, {"version", request->version()}});
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void RevocationFeedService::EndAllWatches() {
  std::vector<std::shared_ptr<WatchReactor>> watches;
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
    for (const auto& [ptr, watch] : watches_) watches.push_back(watch);
  }
  for (auto& w : watches) {
    w->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "broker_shutting_down"));
  }
}

size_t RevocationFeedService::watch_count() const {
  std::lock_guard lock(mutex_);
  return watches_.size();
}

void RevocationFeedService::Forget(WatchReactor* watch) {
  std::shared_ptr<WatchReactor> last;  // released outside the lock
  std::lock_guard lock(mutex_);
  auto it = watches_.find(watch);
  if (it == watches_.end()) return;
  last = std::move(it->second);
  watches_.erase(it);
  metrics::SetGauge("revocation_watches", static_cast<int64_t>(watches_.size()));
}

}  // namespace orthrus::broker
