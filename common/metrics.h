#pragma once
// Process-wide counters: requests and every reason code. Lock-free; rendered in Prometheus text form.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/reason.h"

namespace orthrus::metrics {

void CountReason(Reason reason);
uint64_t ReasonCount(Reason reason);
// "orthrus_<component>_outcomes_total{reason="..."} N" lines for every reason seen at least once.
std::string RenderText(std::string_view component);

}  // namespace orthrus::metrics
