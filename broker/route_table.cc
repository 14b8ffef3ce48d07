#include "broker/route_table.h"

namespace orthrus::broker {

RouteTable::RouteTable(const std::vector<RuleSettings>& rules) : rules_(rules) {
  scopes_.reserve(rules_.size());
  for (const auto& rule : rules_) scopes_.push_back({&rule.hosts, &rule.path_prefixes});
}

const RuleSettings* RouteTable::Match(std::string_view host, std::string_view target) const {
  int index = BestRule(scopes_, host, target);
  return index < 0 ? nullptr : &rules_[static_cast<size_t>(index)];
}

}  // namespace orthrus::broker
