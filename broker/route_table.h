#pragma once
// Picks the publishing rule for a request target: the longest matching path prefix wins, matched on
// whole path segments ("/owa" matches "/owa" and "/owa/x", not "/owanage").
#include <string_view>
#include <vector>

#include "broker/broker_config.h"

namespace orthrus::broker {

class RouteTable {
 public:
  explicit RouteTable(const std::vector<RuleSettings>& rules) : rules_(rules) {}
  const RuleSettings* Match(std::string_view target) const;

 private:
  const std::vector<RuleSettings>& rules_;
};

bool PathPrefixMatches(std::string_view path, std::string_view prefix);

}  // namespace orthrus::broker
