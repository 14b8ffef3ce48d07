#include "common/revocation/serial_set.h"

#include <cstring>
#include <functional>
#include <limits>

#include "common/revocation/errors.h"
#include "common/revocation/keys.h"

namespace orthrus::revocation {
namespace {

size_t Hash(std::string_view serial) { return std::hash<std::string_view>{}(serial); }

}  // namespace

Result<SerialSet> SerialSet::FromPacked(std::string packed) {
  if (packed.size() >= std::numeric_limits<uint32_t>::max()) {
    return Fail(errc::kProtocol, "packed serial list larger than 4 GiB");
  }
  SerialSet set;
  set.packed_ = std::move(packed);
  // One validating pass to count, so the table is sized once.
  ORTHRUS_ASSIGN_OR_RETURN(uint64_t count, CountPacked(set.packed_));
  size_t slots = 16;
  while (slots < count * 2) slots *= 2;
  set.table_.assign(slots, 0);
  set.mask_ = static_cast<uint32_t>(slots - 1);
  set.offsets_.reserve(count);
  bool duplicates = false;
  for (uint32_t off = 0; off < set.packed_.size();) {
    uint32_t len = static_cast<unsigned char>(set.packed_[off]);
    if (!set.Insert(off)) duplicates = true;
    off += 1 + len;
  }
  if (duplicates) {  // rare: rewrite without them so packed() and size() agree
    std::string compact;
    compact.reserve(set.packed_.size());
    for (uint32_t& off : set.offsets_) {
      uint32_t len = static_cast<unsigned char>(set.packed_[off]);
      uint32_t new_off = static_cast<uint32_t>(compact.size());
      compact.append(set.packed_, off, 1 + len);
      off = new_off;
    }
    set.packed_ = std::move(compact);
  }
  return set;
}

bool SerialSet::Insert(uint32_t offset) {
  std::string_view serial = At(offset);
  size_t slot = Hash(serial) & mask_;
  while (uint32_t idx = table_[slot]) {
    if (At(offsets_[idx - 1]) == serial) return false;
    slot = (slot + 1) & mask_;
  }
  offsets_.push_back(offset);
  table_[slot] = static_cast<uint32_t>(offsets_.size());
  return true;
}

bool SerialSet::Contains(std::string_view serial) const {
  if (offsets_.empty()) return false;
  size_t slot = Hash(serial) & mask_;
  while (uint32_t idx = table_[slot]) {
    if (At(offsets_[idx - 1]) == serial) return true;
    slot = (slot + 1) & mask_;
  }
  return false;
}

size_t SerialSet::MemoryBytes() const {
  return packed_.capacity() + offsets_.capacity() * sizeof(uint32_t) +
         table_.capacity() * sizeof(uint32_t);
}

}  // namespace orthrus::revocation
