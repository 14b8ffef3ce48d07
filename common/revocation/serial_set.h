#pragma once
// An immutable set of certificate serials (canonical form, common/revocation/keys.h) built for the
// sizes CRLs reach: 100 000 entries load in a few milliseconds and a lookup costs one hash and
// usually one comparison.
//
// Layout: the serials stay in the packed wire form (length octet + octets, as in
// CrlSet.serials_packed) in one contiguous string, so loading from the wire or the state file is a
// move plus one pass; an index of offsets and an open-addressing hash table (load factor <= 0.5) of
// indexes into it answer lookups. No per-serial allocation.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace orthrus::revocation {

class SerialSet {
 public:
  SerialSet() = default;

  // Validates `packed` (see ForEachPacked). Duplicates are dropped (the packed form is rewritten
  // without them), so size() counts distinct serials.
  static Result<SerialSet> FromPacked(std::string packed);

  bool Contains(std::string_view serial) const;
  size_t size() const { return offsets_.size(); }
  bool empty() const { return offsets_.empty(); }
  // The packed form of the distinct serials, in insertion order.
  const std::string& packed() const { return packed_; }
  size_t MemoryBytes() const;

  template <class Fn>
  void ForEach(Fn&& fn) const {
    for (uint32_t off : offsets_) fn(At(off));
  }

 private:
  std::string_view At(uint32_t offset) const {
    return std::string_view(packed_).substr(offset + 1, static_cast<unsigned char>(packed_[offset]));
  }
  // Returns false when `serial` was present already.
  bool Insert(uint32_t offset);

  std::string packed_;
  std::vector<uint32_t> offsets_;  // of each element's length octet in packed_
  std::vector<uint32_t> table_;    // 0: empty slot; otherwise index into offsets_ + 1
  uint32_t mask_ = 0;
};

}  // namespace orthrus::revocation
