#include "common/revocation/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "common/revocation/errors.h"
#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation {
namespace {

constexpr std::string_view kMagic = "ORTHRUS-REVOCATION-STATE-1\n";
constexpr size_t kLengthBytes = 8;
constexpr size_t kDigestBytes = 32;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(errc::kStateWriteFailed, Errno("cannot write " + path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

Status SaveStateFile(const std::string& path, const RevocationSet& set, int64_t saved_unix_ms) {
  v1::SavedState state = set.ToSavedState();
  state.set_saved_unix_ms(saved_unix_ms);
  std::string payload;
  if (!state.SerializeToString(&payload)) {
    return Fail(errc::kStateWriteFailed, "cannot serialize the revocation set");
  }
  std::string file;
  file.reserve(kMagic.size() + kLengthBytes + payload.size() + kDigestBytes);
  file.append(kMagic);
  uint64_t len = payload.size();
  for (int shift = 56; shift >= 0; shift -= 8) file.push_back(static_cast<char>((len >> shift) & 0xff));
  file.append(payload);
  file.append(tls::Sha256(payload));

  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Fail(errc::kStateWriteFailed, Errno("cannot create " + tmp));
  Status st = WriteAll(fd, file, tmp);
  if (st && ::fsync(fd) != 0) st = Fail(errc::kStateWriteFailed, Errno("cannot fsync " + tmp));
  if (::close(fd) != 0 && st) st = Fail(errc::kStateWriteFailed, Errno("cannot close " + tmp));
  if (!st) {
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status err = Fail(errc::kStateWriteFailed, Errno("cannot rename " + tmp + " to " + path));
    ::unlink(tmp.c_str());
    return err;
  }
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

Result<LoadedState> LoadStateFile(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return Fail(errc::kStateMissing, path + " does not exist (no revocation set saved yet)");
  }
  ORTHRUS_ASSIGN_OR_RETURN(std::string file, tls::ReadFile(path));
  auto corrupt = [&](const std::string& why) {
    return Fail(errc::kStateCorrupt, path + ": " + why + "; refusing the whole file");
  };
  if (file.size() < kMagic.size() + kLengthBytes + kDigestBytes) return corrupt("file too short");
  if (std::string_view(file).substr(0, kMagic.size()) != kMagic) {
    return corrupt("not an Orthrus revocation state file (bad magic)");
  }
  uint64_t len = 0;
  for (size_t i = 0; i < kLengthBytes; ++i) {
    len = (len << 8) | static_cast<unsigned char>(file[kMagic.size() + i]);
  }
  size_t header = kMagic.size() + kLengthBytes;
  if (len != file.size() - header - kDigestBytes) {
    return corrupt("size " + std::to_string(file.size()) + " does not match the recorded payload length " +
                   std::to_string(len) + " (truncated?)");
  }
  std::string_view payload = std::string_view(file).substr(header, len);
  if (tls::Sha256(payload) != std::string_view(file).substr(header + len)) {
    return corrupt("checksum mismatch");
  }
  v1::SavedState state;
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return corrupt("payload does not parse");
  }
  auto set = RevocationSet::FromSavedState(state);
  if (!set) return corrupt(set.error().detail);
  return LoadedState{std::move(*set), state.saved_unix_ms()};
}

}  // namespace orthrus::revocation
