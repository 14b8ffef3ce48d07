#include "broker/revocation/revocation_state.h"

#include <algorithm>
#include <unordered_map>

#include "common/revocation/errors.h"
#include "common/revocation/keys.h"

namespace orthrus::revocation {

struct RevocationState::Subscription::Slot {
  std::recursive_mutex mutex;  // held while the listener runs; recursive so it may unsubscribe itself
  bool active = true;
  std::function<void(uint64_t)> listener;
};

WatchPosition WatchPosition::FromRequest(const v1::WatchRequest& request) {
  WatchPosition pos;
  pos.feed_id = request.feed_id();
  pos.version = request.version();
  for (const auto& held : request.held_crls()) pos.crl_digests[held.issuer_der()] = held.digest();
  return pos;
}

RevocationState::RevocationState(std::string feed_id, Options options)
    : feed_id_(std::move(feed_id)), options_(options) {
  current_ = std::move(RevocationSet::Builder()).Build(feed_id_, 0);
}

void RevocationState::Reset(std::shared_ptr<const RevocationSet> set, uint64_t history_from,
                            std::vector<InstantChange> history) {
  std::lock_guard lock(mutex_);
  current_ = std::move(set);
  history_.assign(std::make_move_iterator(history.begin()), std::make_move_iterator(history.end()));
  history_from_ = history_from;
  while (history_.size() > options_.history_limit) {
    history_from_ = std::max(history_from_, history_.front().version);
    history_.pop_front();
  }
  previous_crl_.clear();
}

uint64_t RevocationState::version() const {
  std::lock_guard lock(mutex_);
  return current_->version();
}

std::shared_ptr<const RevocationSet> RevocationState::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

uint64_t RevocationState::oldest_delta_version() const {
  std::lock_guard lock(mutex_);
  return history_from_;
}

Status RevocationState::Apply(const StateChange& change) {
  {
    std::lock_guard lock(mutex_);
    if (change.version <= current_->version()) {
      return Fail(errc::kProtocol, "state change to version " + std::to_string(change.version) +
                                       " does not advance version " + std::to_string(current_->version()));
    }
    RevocationSet::Builder builder(*current_);
    switch (change.kind) {
      case StateChange::Kind::kAdd:
        ORTHRUS_TRY(builder.Put(change.entry));
        break;
      case StateChange::Kind::kRemove:
        ORTHRUS_TRY(builder.Remove(change.entry.key()));
        break;
      case StateChange::Kind::kCrlReplace: {
        if (!change.crl) return Fail(errc::kProtocol, "CRL change without a CRL");
        if (CrlPtr old = [&]() -> CrlPtr {
              auto it = current_->crls().find(change.crl->issuer_der);
              return it == current_->crls().end() ? nullptr : it->second;
            }()) {
          previous_crl_[old->issuer_der] = old;
        }
        builder.PutCrl(change.crl);
        break;
      }
      case StateChange::Kind::kCrlRemove:
        builder.RemoveCrl(change.crl_issuer_der);
        if (auto it = previous_crl_.find(change.crl_issuer_der); it != previous_crl_.end()) {
          previous_crl_.erase(it);
        }
        break;
    }
    current_ = std::move(builder).Build(feed_id_, change.version);
    if (change.kind == StateChange::Kind::kAdd || change.kind == StateChange::Kind::kRemove) {
      InstantChange ic;
      ic.version = change.version;
      ic.added = change.kind == StateChange::Kind::kAdd;
      ic.entry = change.entry;
      ORTHRUS_ASSIGN_OR_RETURN(*ic.entry.mutable_key(), CanonicalKey(change.entry.key()));
      history_.push_back(std::move(ic));
      while (history_.size() > options_.history_limit) {
        history_from_ = std::max(history_from_, history_.front().version);
        history_.pop_front();
      }
    }
  }
  // Notify outside the state lock: listeners typically post to a reactor that then calls back in.
  std::vector<std::shared_ptr<Subscription::Slot>> slots;
  {
    std::lock_guard lock(listeners_mutex_);
    slots = listeners_;
  }
  for (auto& slot : slots) {
    std::lock_guard lock(slot->mutex);
    if (slot->active) slot->listener(change.version);
  }
  return {};
}

// ------------------------------------------------------------------------------- subscriptions

RevocationState::Subscription::Subscription(RevocationState* state, std::shared_ptr<Slot> slot)
    : state_(state), slot_(std::move(slot)) {}

RevocationState::Subscription::~Subscription() { state_->Unsubscribe(slot_); }

std::unique_ptr<RevocationState::Subscription> RevocationState::Subscribe(
    std::function<void(uint64_t)> listener) {
  auto slot = std::make_shared<Subscription::Slot>();
  slot->listener = std::move(listener);
  {
    std::lock_guard lock(listeners_mutex_);
    listeners_.push_back(slot);
  }
  return std::unique_ptr<Subscription>(new Subscription(this, std::move(slot)));
}

void RevocationState::Unsubscribe(const std::shared_ptr<Subscription::Slot>& slot) {
  {
    std::lock_guard lock(listeners_mutex_);
    std::erase(listeners_, slot);
  }
  std::lock_guard lock(slot->mutex);  // waits for a running invocation on another thread
  slot->active = false;
}

// ----------------------------------------------------------------------------- snapshot, delta

std::vector<v1::RevocationUpdate> RevocationState::Snapshot(
    const std::shared_ptr<const RevocationSet>& set, uint64_t watch_id) const {
  std::vector<v1::RevocationUpdate> out;
  for (auto& part : set->ToSnapshotParts(options_.snapshot_part_bytes)) {
    v1::RevocationUpdate u;
    u.set_feed_id(feed_id_);
    u.set_watch_id(watch_id);
    *u.mutable_snapshot() = std::move(part);
    out.push_back(std::move(u));
  }
  return out;
}

std::vector<v1::RevocationUpdate> RevocationState::UpdatesFor(WatchPosition& position,
                                                              uint64_t watch_id) const {
  std::shared_ptr<const RevocationSet> set;
  v1::Delta delta;
  bool snapshot = false;
  {
    std::lock_guard lock(mutex_);
    set = current_;
    const uint64_t now_version = set->version();
    snapshot = position.feed_id != feed_id_ || position.version == 0 ||
               position.version > now_version || position.version < history_from_;
    if (!snapshot) {
      delta.set_from_version(position.version);
      delta.set_to_version(now_version);
      // Net effect of the instant changes after position.version, per key, in version order.
      auto first = std::upper_bound(history_.begin(), history_.end(), position.version,
                                    [](uint64_t v, const InstantChange& c) { return v < c.version; });
      std::unordered_map<std::string, const InstantChange*> net;
      std::vector<std::string> order;
      for (auto it = first; it != history_.end(); ++it) {
        std::string ks = KeyString(it->entry.key());
        auto [slot, inserted] = net.try_emplace(ks, &*it);
        if (inserted) {
          order.push_back(std::move(ks));
        } else {
          slot->second = &*it;
        }
      }
      for (const auto& ks : order) {
        const InstantChange* c = net[ks];
        if (c->added) {
          *delta.add_added() = c->entry;
        } else {
          *delta.add_removed() = c->entry.key();
        }
      }
      // CRLs: compare what the edge holds with what is current.
      for (const auto& [issuer, crl] : set->crls()) {
        auto held = position.crl_digests.find(issuer);
        if (held != position.crl_digests.end() && held->second == crl->digest) continue;
        auto prev = previous_crl_.find(issuer);
        if (held != position.crl_digests.end() && prev != previous_crl_.end() &&
            prev->second->digest == held->second) {
          *delta.add_crls_changed() = MakeCrlDiff(*prev->second, *crl);
        } else {
          CrlToProto(*crl, delta.add_crls_replaced());
        }
      }
      for (const auto& [issuer, digest] : position.crl_digests) {
        if (set->crls().find(issuer) == set->crls().end()) delta.add_crls_removed(issuer);
      }
      bool empty = delta.added_size() == 0 && delta.removed_size() == 0 &&
                   delta.crls_replaced_size() == 0 && delta.crls_changed_size() == 0 &&
                   delta.crls_removed_size() == 0;
      if (position.version == now_version) {
        // Up to date by version; a digest mismatch here means the edge holds something else.
        if (empty) return {};
        snapshot = true;
      } else if (delta.ByteSizeLong() > options_.max_delta_bytes) {
        snapshot = true;
      }
    }
  }
  std::vector<v1::RevocationUpdate> out;
  if (snapshot) {
    out = Snapshot(set, watch_id);
  } else {
    v1::RevocationUpdate u;
    u.set_feed_id(feed_id_);
    u.set_watch_id(watch_id);
    *u.mutable_delta() = std::move(delta);
    out.push_back(std::move(u));
  }
  position.feed_id = feed_id_;
  position.version = set->version();
  position.crl_digests.clear();
  for (const auto& [issuer, crl] : set->crls()) position.crl_digests[issuer] = crl->digest;
  return out;
}

v1::RevocationUpdate RevocationState::MakeHeartbeat(uint64_t watch_id, uint32_t interval_ms,
                                                    int64_t now_unix_ms) const {
  v1::RevocationUpdate u;
  u.set_feed_id(feed_id_);
  u.set_watch_id(watch_id);
  auto* hb = u.mutable_heartbeat();
  hb->set_version(version());
  hb->set_sent_unix_ms(now_unix_ms);
  hb->set_interval_ms(interval_ms);
  return u;
}

// -------------------------------------------------------------------------------------- acks

uint64_t RevocationState::WatchStarted(const std::string& edge_name, int64_t now_unix_ms) {
  std::lock_guard lock(acks_mutex_);
  uint64_t id = next_watch_id_++;
  auto& rec = edges_[edge_name];
  if (rec.watches.empty()) rec.connected_since_ms = now_unix_ms;
  rec.watches.insert(id);
  watches_[id] = edge_name;
  acks_changed_.notify_all();
  return id;
}

void RevocationState::WatchEnded(uint64_t watch_id) {
  std::lock_guard lock(acks_mutex_);
  auto it = watches_.find(watch_id);
  if (it == watches_.end()) return;
  edges_[it->second].watches.erase(watch_id);
  watches_.erase(it);
  acks_changed_.notify_all();
}

bool RevocationState::RecordAck(uint64_t watch_id, const std::string& edge_name,
                                const std::string& feed_id, uint64_t version, int64_t now_unix_ms) {
  if (feed_id != feed_id_ || version > this->version()) return false;
  std::lock_guard lock(acks_mutex_);
  auto it = watches_.find(watch_id);
  if (it == watches_.end() || it->second != edge_name) return false;
  auto& rec = edges_[edge_name];
  rec.acked_version = std::max(rec.acked_version, version);
  rec.last_ack_ms = now_unix_ms;
  acks_changed_.notify_all();
  return true;
}

v1::EdgeAckCount RevocationState::CountAcksLocked(uint64_t version) const {
  v1::EdgeAckCount out;
  out.set_version(version);
  uint32_t connected = 0;
  uint32_t acked = 0;
  for (const auto& [name, rec] : edges_) {
    if (rec.watches.empty()) continue;
    ++connected;
    if (rec.acked_version >= version) {
      ++acked;
    } else {
      out.add_pending_edges(name);
    }
  }
  out.set_edges_connected(connected);
  out.set_edges_acknowledged(acked);
  return out;
}

v1::EdgeAckCount RevocationState::CountAcks(uint64_t version) const {
  std::lock_guard lock(acks_mutex_);
  return CountAcksLocked(version);
}

v1::EdgeAckCount RevocationState::WaitForAcks(uint64_t version, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(acks_mutex_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    v1::EdgeAckCount count = CountAcksLocked(version);
    if (count.edges_acknowledged() == count.edges_connected()) return count;
    if (acks_changed_.wait_until(lock, deadline) == std::cv_status::timeout) return CountAcksLocked(version);
  }
}

std::vector<v1::EdgeStatus> RevocationState::Edges() const {
  std::lock_guard lock(acks_mutex_);
  std::vector<v1::EdgeStatus> out;
  for (const auto& [name, rec] : edges_) {
    v1::EdgeStatus s;
    s.set_name(name);
    s.set_connected(!rec.watches.empty());
    s.set_acknowledged_version(rec.acked_version);
    s.set_last_ack_unix_ms(rec.last_ack_ms);
    s.set_connected_since_unix_ms(rec.watches.empty() ? 0 : rec.connected_since_ms);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace orthrus::revocation
