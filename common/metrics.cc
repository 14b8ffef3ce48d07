#include "common/metrics.h"

#include <array>
#include <atomic>

namespace orthrus::metrics {
namespace {

std::array<std::atomic<uint64_t>, static_cast<size_t>(Reason::kCount_)> g_reasons{};

}  // namespace

void CountReason(Reason reason) {
  g_reasons[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
}

uint64_t ReasonCount(Reason reason) {
  return g_reasons[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
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
  return out;
}

}  // namespace orthrus::metrics
