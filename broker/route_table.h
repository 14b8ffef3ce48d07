#pragma once
// Picks the publishing rule for a request: most specific host, then the longest matching path prefix
// on whole segments (common/publishing_match.h, the same choice the edge makes).
#include <string_view>
#include <vector>

#include "broker/broker_config.h"
#include "common/publishing_match.h"

namespace orthrus::broker {

class RouteTable {
 public:
  explicit RouteTable(const std::vector<RuleSettings>& rules);
  // host: normalized (NormalizeHost), "" when unknown.
  const RuleSettings* Match(std::string_view host, std::string_view target) const;

 private:
  const std::vector<RuleSettings>& rules_;
  std::vector<RuleScope> scopes_;
};

}  // namespace orthrus::broker
