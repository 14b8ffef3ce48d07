#pragma once
// Counts failed passwords per account name and per client address, at the edge, so that a flood of
// guesses never reaches the broker or the KDC: the gateway can be used neither to guess passwords
// fast nor to lock accounts out. Thread-safe.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace orthrus::edge {

struct PasswordLimitSettings {
  uint32_t account_failures = 5;
  uint32_t address_failures = 20;
  std::chrono::seconds window{300};
  size_t max_tracked = 100000;
};

class PasswordLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Blocked {
    std::string scope;  // "account" or "address"
    std::chrono::seconds retry_after;
  };

  explicit PasswordLimiter(PasswordLimitSettings settings) : settings_(settings) {}

  // Before a password is forwarded: nullopt when it may be tried.
  std::optional<Blocked> Check(std::string_view username, std::string_view address,
                               Clock::time_point now);
  void RecordFailure(std::string_view username, std::string_view address, Clock::time_point now);
  // A right password clears its account's count (as AD resets badPwdCount); the address's stays.
  void RecordSuccess(std::string_view username);

  // "CORP\\Alice", "alice@corp.example" and "ALICE" are one account: guesses cannot be multiplied
  // by spelling the name differently.
  static std::string AccountKey(std::string_view username);

 private:
  struct Counter {
    uint32_t failures = 0;
    Clock::time_point window_start;
    Clock::time_point blocked_until;
  };
  using Map = std::unordered_map<std::string, Counter>;

  static std::optional<std::chrono::seconds> BlockedFor(const Map& map, const std::string& key,
                                                        Clock::time_point now);
  void Fail(Map& map, const std::string& key, uint32_t limit, Clock::time_point now);
  void Bound(Map& map, Clock::time_point now);

  const PasswordLimitSettings settings_;
  std::mutex mutex_;
  Map accounts_;
  Map addresses_;
};

}  // namespace orthrus::edge
