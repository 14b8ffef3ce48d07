#include "common/revocation/feed_applier.h"

#include <algorithm>

#include "common/revocation/errors.h"

namespace orthrus::revocation {

FeedApplier::FeedApplier(std::shared_ptr<const RevocationSet> held)
    : held_(held ? std::move(held) : RevocationSet::Empty()) {}

v1::WatchRequest FeedApplier::MakeWatchRequest(const RevocationSet& held) {
  v1::WatchRequest req;
  req.set_feed_id(held.feed_id());
  req.set_version(held.version());
  for (const auto& [issuer, crl] : held.crls()) {
    auto* h = req.add_held_crls();
    h->set_issuer_der(crl->issuer_der);
    h->set_digest(crl->digest);
  }
  return req;
}

bool FeedApplier::behind() const {
  return !assembling_ && broker_feed_ == held_->feed_id() && broker_version_ > held_->version();
}

Result<FeedApplier::Outcome> FeedApplier::Apply(const v1::RevocationUpdate& update) {
  if (update.feed_id().empty()) return Fail(errc::kProtocol, "update without feed_id");
  watch_id_ = update.watch_id();
  if (update.feed_id() != broker_feed_) {
    broker_feed_ = update.feed_id();
    broker_version_ = 0;
  }
  Outcome out;
  switch (update.body_case()) {
    case v1::RevocationUpdate::kHeartbeat: {
      const auto& hb = update.heartbeat();
      if (!assembling_ && update.feed_id() == held_->feed_id() && hb.version() < held_->version()) {
        return Fail(errc::kProtocol, "broker announces version " + std::to_string(hb.version()) +
                                         ", older than the version held (" +
                                         std::to_string(held_->version()) + ")");
      }
      broker_version_ = hb.version();
      out.heartbeat = true;
      out.broker_version = broker_version_;
      return out;
    }
    case v1::RevocationUpdate::kSnapshot:
      return ApplySnapshotPart(update.feed_id(), update.snapshot());
    case v1::RevocationUpdate::kDelta: {
      if (assembling_) return Fail(errc::kProtocol, "delta in the middle of a snapshot");
      if (update.feed_id() != held_->feed_id()) {
        return Fail(errc::kProtocol, "delta for feed " + update.feed_id() + " but the set held is of feed " +
                                         (held_->feed_id().empty() ? "(none)" : held_->feed_id()));
      }
      ORTHRUS_ASSIGN_OR_RETURN(auto next, held_->ApplyDelta(update.delta()));
      held_ = next;
      broker_version_ = std::max(broker_version_, next->version());
      out.applied = std::move(next);
      out.broker_version = broker_version_;
      return out;
    }
    case v1::RevocationUpdate::BODY_NOT_SET:
      break;
  }
  return Fail(errc::kProtocol, "update without body");
}

Result<FeedApplier::Outcome> FeedApplier::ApplySnapshotPart(const std::string& feed_id,
                                                            const v1::SnapshotPart& part) {
  if (part.index() == 0) {
    assembling_ = true;
    asm_feed_ = feed_id;
    asm_version_ = part.version();
    asm_next_index_ = 0;
    asm_entries_.clear();
    asm_crls_.clear();
  } else if (!assembling_ || part.index() != asm_next_index_ || feed_id != asm_feed_ ||
             part.version() != asm_version_) {
    assembling_ = false;
    asm_entries_.clear();
    asm_crls_.clear();
    return Fail(errc::kProtocol, "snapshot part " + std::to_string(part.index()) +
                                     " of version " + std::to_string(part.version()) +
                                     " out of sequence");
  }
  ++asm_next_index_;
  asm_entries_.insert(asm_entries_.end(), part.entries().begin(), part.entries().end());
  asm_crls_.insert(asm_crls_.end(), part.crls().begin(), part.crls().end());
  Outcome out;
  broker_version_ = std::max(broker_version_, part.version());
  out.broker_version = broker_version_;
  if (!part.last()) return out;

  assembling_ = false;
  auto set = RevocationSet::FromSnapshot(asm_feed_, asm_version_, asm_entries_, std::move(asm_crls_));
  asm_entries_.clear();
  asm_crls_.clear();
  if (!set) return std::unexpected(std::move(set.error()));
  held_ = *set;
  out.applied = std::move(*set);
  return out;
}

}  // namespace orthrus::revocation
