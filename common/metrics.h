#pragma once
// Process-wide counters: requests and every reason code. Lock-free; rendered in Prometheus text form.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/reason.h"

namespace orthrus::metrics {

void CountReason(Reason reason);
uint64_t ReasonCount(Reason reason);
// A named value that goes up and down (e.g. revocation_feed_age_seconds); rendered as
// "orthrus_<component>_<name> N".
void SetGauge(std::string_view name, int64_t value);
int64_t Gauge(std::string_view name);
// "orthrus_<component>_outcomes_total{reason="..."} N" lines for every reason seen at least once,
// then the gauges.
std::string RenderText(std::string_view component);

}  // namespace orthrus::metrics
