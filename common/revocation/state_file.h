#pragma once
// The edge's last good revocation set on disk, so an edge restarted while no broker is reachable
// still refuses what was revoked.
//
// Format (version 1):
//   "ORTHRUS-REVOCATION-STATE-1\n"      27 octets, magic and format version
//   payload length                       8 octets, big-endian
//   payload                              v1::SavedState (protobuf)
//   SHA-256(payload)                     32 octets
// A file whose size, magic or checksum do not match is refused as a whole (kStateCorrupt): a
// truncated or half-written file can never be mistaken for a smaller set.
//
// Writing is atomic: a temp file next to `path` is written, fsynced, renamed over `path`, and the
// directory is fsynced, so after a crash the file is either the old or the new set. Mode 0600.
// Blocking I/O (a 100 000-entry set is ~2 MB): call it off the event loop.
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "common/revocation/revocation_set.h"

namespace orthrus::revocation {

Status SaveStateFile(const std::string& path, const RevocationSet& set, int64_t saved_unix_ms);

struct LoadedState {
  std::shared_ptr<const RevocationSet> set;
  int64_t saved_unix_ms = 0;  // staleness of a set loaded at start counts from here
};
// kStateMissing when the file does not exist, kStateCorrupt when it is not a complete, intact file
// of this format, file_unreadable for other I/O errors.
Result<LoadedState> LoadStateFile(const std::string& path);

}  // namespace orthrus::revocation
