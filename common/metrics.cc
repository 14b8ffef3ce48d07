#include "common/metrics.h"

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>

namespace orthrus::metrics {
namespace {

std::array<std::atomic<uint64_t>, static_cast<size_t>(Reason::kCount_)> g_reasons{};
// Few and rarely set (once a second at most): a mutex is simpler than lock-free slots.
std::mutex g_gauges_mutex;
std::map<std::string, int64_t, std::less<>> g_gauges;

}  // namespace

void CountReason(Reason reason) {
  g_reasons[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
}

uint64_t ReasonCount(Reason reason) {
  return g_reasons[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
}

void SetGauge(std::string_view name, int64_t value) {
  std::lock_guard lock(g_gauges_mutex);
  g_gauges.insert_or_assign(std::string(name), value);
}

int64_t Gauge(std::string_view name) {
  std::lock_guard lock(g_gauges_mutex);
  auto it = g_gauges.find(name);
  return it == g_gauges.end() ? 0 : it->second;
}

std::string RenderText(std::string_view component) {
  std::string out;
  for (size_t i = 0; i < g_reasons.size(); ++i) {
    uint64_t n = g_reasons[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    out += "orthrus_";
    out += component;
    out += "_outcomes_total{reason=\"";
    out += ReasonName(static_cast<Reason>(i));
    out += "\"} " + std::to_string(n) + "\n";
  }
  std::lock_guard lock(g_gauges_mutex);
  for (const auto& [name, value] : g_gauges) {
    out += "orthrus_" + std::string(component) + "_" + name + " " + std::to_string(value) + "\n";
  }
  return out;
}

}  // namespace orthrus::metrics
