#include "edge/password_limiter.h"

#include <cctype>

namespace orthrus::edge {

std::string PasswordLimiter::AccountKey(std::string_view username) {
  if (auto slash = username.find('\\'); slash != std::string_view::npos) {
    username.remove_prefix(slash + 1);
  }
  if (auto at = username.find('@'); at != std::string_view::npos) username = username.substr(0, at);
  std::string key;
  key.reserve(username.size());
  for (char c : username) key.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return key;
}

std::optional<std::chrono::seconds> PasswordLimiter::BlockedFor(const Map& map,
                                                                const std::string& key,
                                                                Clock::time_point now) {
  auto it = map.find(key);
  if (it == map.end() || it->second.blocked_until <= now) return std::nullopt;
  auto left = std::chrono::ceil<std::chrono::seconds>(it->second.blocked_until - now);
  return left;
}

std::optional<PasswordLimiter::Blocked> PasswordLimiter::Check(std::string_view username,
                                                               std::string_view address,
                                                               Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (auto left = BlockedFor(addresses_, std::string(address), now)) return Blocked{"address", *left};
  if (auto left = BlockedFor(accounts_, AccountKey(username), now)) return Blocked{"account", *left};
  return std::nullopt;
}

void PasswordLimiter::Fail(Map& map, const std::string& key, uint32_t limit,
                           Clock::time_point now) {
  Counter& c = map[key];
  if (c.failures == 0 || now - c.window_start >= settings_.window) {
    c.failures = 0;
    c.window_start = now;
  }
  if (++c.failures >= limit) c.blocked_until = now + settings_.window;
  Bound(map, now);
}

void PasswordLimiter::Bound(Map& map, Clock::time_point now) {
  if (map.size() <= settings_.max_tracked) return;
  // Forget what no longer matters first; only a flood of distinct names or addresses gets further,
  // and the per-address count is what limits such a flood.
  for (auto it = map.begin(); it != map.end();) {
    bool stale = it->second.blocked_until <= now && now - it->second.window_start >= settings_.window;
    it = stale ? map.erase(it) : std::next(it);
  }
  while (map.size() > settings_.max_tracked) map.erase(map.begin());
}

void PasswordLimiter::RecordFailure(std::string_view username, std::string_view address,
                                    Clock::time_point now) {
  std::lock_guard lock(mutex_);
  // Unreadable credentials name no account; they still count against the address.
  if (std::string key = AccountKey(username); !key.empty()) {
    Fail(accounts_, key, settings_.account_failures, now);
  }
  Fail(addresses_, std::string(address), settings_.address_failures, now);
}

void PasswordLimiter::RecordSuccess(std::string_view username) {
  std::lock_guard lock(mutex_);
  auto it = accounts_.find(AccountKey(username));
  if (it != accounts_.end() && it->second.blocked_until <= Clock::now()) accounts_.erase(it);
}

}  // namespace orthrus::edge
