#include "edge/publishing_rules.h"

#include <algorithm>

namespace orthrus::edge {

PublishingRules::PublishingRules(std::vector<EdgeRuleSettings> rules) : rules_(std::move(rules)) {
  scopes_.reserve(rules_.size());
  for (const auto& rule : rules_) scopes_.push_back({&rule.hosts, &rule.path_prefixes});
}

const EdgeRuleSettings* PublishingRules::Match(std::string_view host,
                                               std::string_view target) const {
  int index = BestRule(scopes_, host, target);
  return index < 0 ? nullptr : &rules_[static_cast<size_t>(index)];
}

bool PublishingRules::CertificateOptionalFor(std::string_view sni) const {
  return std::any_of(rules_.begin(), rules_.end(), [sni](const EdgeRuleSettings& rule) {
    // Without SNI the Host header is still unknown, so every rule is a candidate.
    bool candidate = sni.empty() || HostMatchStrength(rule.hosts, sni) >= 0;
    return candidate && CertificateOptional(rule.authentication);
  });
}

RuleCertificateVerdict PublishingRules::CheckCertificate(const EdgeRuleSettings& rule,
                                                         const std::vector<std::string>& chain) {
  if (!rule.trusted_ca_der.empty()) {
    bool trusted = std::any_of(chain.begin() + (chain.empty() ? 0 : 1), chain.end(),
                               [&rule](const std::string& der) {
                                 return std::find(rule.trusted_ca_der.begin(),
                                                  rule.trusted_ca_der.end(),
                                                  der) != rule.trusted_ca_der.end();
                               });
    if (!trusted) {
      return {Reason::kUntrustedClientCertificate,
              "rule " + rule.name + ": the chain runs through no CA of its client_ca_file " +
                  rule.client_ca_file};
    }
  }
  if (rule.max_chain_depth) {
    // Intermediates between the device certificate and the trust anchor.
    size_t intermediates = chain.size() >= 2 ? chain.size() - 2 : 0;
    if (intermediates > *rule.max_chain_depth) {
      return {Reason::kClientCertificateChainTooDeep,
              "rule " + rule.name + ": max_chain_depth " + std::to_string(*rule.max_chain_depth) +
                  ", the chain has " + std::to_string(intermediates) + " intermediate CAs"};
    }
  }
  if (rule.restrictions) {
    RestrictionVerdict v = rule.restrictions->Check(chain);
    if (v.reason != Reason::kOk) return {v.reason, "rule " + rule.name + ": " + v.detail};
  }
  return {};
}

}  // namespace orthrus::edge
