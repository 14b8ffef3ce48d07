#pragma once
// The broker's revocation service without its gRPC skin: the database, the CRL sources and the
// in-memory state, kept in step. The RevocationAdmin handlers map 1:1 onto Revoke / Unrevoke /
// ListRevoked / Status / RefreshCrls; the RevocationFeed.Watch reactor uses state() (Subscribe,
// UpdatesFor, MakeHeartbeat, WatchStarted/WatchEnded) and Ack uses state().RecordAck.
//
// Ordering: every write (revoke, unrevoke, CRL change) takes one mutex around "commit to SQLite,
// then apply to the state", so the state sees versions in the order the database assigned them.
//
// Blocking: every method except state() and NextRefreshDue() touches SQLite, files or the network;
// run them on a WorkerPool (common/worker_pool.h RunBlocking), never on an event loop. Revoke and
// Unrevoke may also wait up to the request's wait_for_edges_ms for acknowledgements.
//
// Sketch of the Watch handler (a grpc::ServerWriteReactor<RevocationUpdate>, one per edge):
//   start:    edge = name from the peer certificate (allow list as for Tunnel);
//             watch_id = state().WatchStarted(edge, now); pos = WatchPosition::FromRequest(req);
//             sub = state().Subscribe([weak self] { post "wake" to the reactor }); wake.
//   wake:     if no write in flight: updates = state().UpdatesFor(pos, watch_id) (pos advances;
//             empty = up to date) and write them one by one (snapshot parts in order); a wake while
//             writing sets a flag and re-runs after OnWriteDone (updates coalesce: no queue).
//   timer:    every settings.heartbeat_interval with no other write: MakeHeartbeat(...).
//   OnDone:   sub.reset(); state().WatchEnded(watch_id).
// Ack handler: state().RecordAck(req.watch_id(), edge name from the certificate, req.feed_id(),
//              req.version(), now). Errors go to the client as the reason code (Error::code) in
//              the gRPC status message, detail after it, like the tunnel's refusals.
#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "broker/revocation/crl_source.h"
#include "broker/revocation/revocation_db.h"
#include "broker/revocation/revocation_state.h"
#include "common/result.h"
#include "orthrus/config/v1/revocation.pb.h"
#include "orthrus/revocation/v1/revocation.pb.h"

namespace orthrus::revocation {

struct CrlSourceSettings {
  std::string file;  // exactly one of file and url
  std::string url;
  std::optional<std::chrono::seconds> refresh_margin;
  const std::string& name() const { return file.empty() ? url : file; }
};

struct RevocationServiceSettings {
  std::string database_file;
  std::vector<CrlSourceSettings> sources;
  std::vector<std::string> crl_ca_files;
  RefreshPolicy refresh;
  std::chrono::milliseconds http_timeout{15000};
  uint64_t http_max_bytes = 64ull << 20;
  uint32_t change_log_retention = 10000;
  std::chrono::milliseconds heartbeat_interval{2000};
  uint32_t max_wait_for_edges_ms = 30000;  // cap on RevokeRequest.wait_for_edges_ms
  RevocationState::Options state;
};

// Defaults applied; no file checks (the config loader reports those with file:line).
RevocationServiceSettings SettingsFromConfig(const config::v1::RevocationServiceConfig& config);

class RevocationService {
 public:
  // Opens (or creates) the database, re-verifies its cached CRLs against crl_ca_files (a cached
  // CRL that no longer verifies is dropped, as a new version) and builds the state. Does not fetch
  // any source: call RefreshCrls(now, true) next (and then whenever NextRefreshDue() has passed).
  static Result<std::unique_ptr<RevocationService>> Open(RevocationServiceSettings settings,
                                                         std::time_t now);

  RevocationState& state() { return state_; }
  const RevocationState& state() const { return state_; }
  const std::string& feed_id() const { return db_->feed_id(); }
  const CrlVerifier& verifier() const { return verifier_; }

  // `who`: the authenticated administrator (admin certificate subject or name). The key is
  // validated and canonicalized; an IssuerSerial given by issuer text is resolved against the CA
  // certificates. Returns after the change is committed to SQLite and applied to the state.
  Result<v1::RevokeResponse> Revoke(const v1::RevokeRequest& request, const std::string& who,
                                    int64_t now_unix_ms);
  Result<v1::UnrevokeResponse> Unrevoke(const v1::UnrevokeRequest& request, const std::string& who,
                                        int64_t now_unix_ms);
  Result<v1::ListRevokedResponse> ListRevoked(const v1::ListRevokedRequest& request) const;
  Result<v1::StatusResponse> Status(const v1::StatusRequest& request) const;

  // Fetches every source that is due at `now` (every source when `force`), verifies what it
  // returns, and stores and pushes each CRL that is new (a new version per CRL). A source that
  // fails or returns a CRL that is older than, or does not verify like, the one in force keeps
  // the previous CRL; its status says why. Returns the status of every source.
  std::vector<v1::CrlStatus> RefreshCrls(std::time_t now, bool force);
  std::vector<v1::CrlStatus> CrlStatuses() const;
  // The earliest time a source is due (0 when there are no sources).
  std::time_t NextRefreshDue() const;

 private:
  struct SourceState {
    CrlSourceSettings settings;
    std::vector<std::string> issuers;  // issuer_der of the CRLs it provided last time
    std::time_t next_refresh = 0;
    std::time_t last_success = 0;
    std::string last_error_code;
    std::string last_error;
  };

  RevocationService(RevocationServiceSettings settings, std::unique_ptr<RevocationDb> db,
                    CrlVerifier verifier);
  Result<v1::EntryKey> ResolveKey(const v1::EntryKey& key) const;
  // Stores and pushes one verified CRL if it is new; an error if it is older than the one in force.
  orthrus::Status AcceptCrl(const VerifiedCrl& crl, const std::string& source, int64_t now_unix_ms);
  std::vector<v1::CrlStatus> CrlStatusesLocked() const;

  RevocationServiceSettings settings_;
  std::unique_ptr<RevocationDb> db_;
  CrlVerifier verifier_;
  RevocationState state_;

  std::mutex write_mutex_;            // DB write + state apply, in version order
  mutable std::mutex sources_mutex_;  // sources_ (RefreshCrls runs one at a time)
  std::mutex refresh_mutex_;
  std::vector<SourceState> sources_;
};

}  // namespace orthrus::revocation
