#pragma once
// The edge's publishing rules: which rule serves a host + path, what it asks of the device's
// certificate, and what the TLS handshake must ask for under each server name.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/auth_mode.h"
#include "common/publishing_match.h"
#include "common/reason.h"
#include "edge/certificate_restrictions.h"

namespace orthrus::edge {

struct EdgeRuleSettings {
  std::string name;
  std::vector<std::string> hosts;          // lower case; empty: any host
  std::vector<std::string> path_prefixes;  // never empty ("/" by default)
  AuthMode authentication = AuthMode::kCertificate;
  std::string client_ca_file;              // empty: the listener's whole CA bundle
  std::vector<std::string> trusted_ca_der; // from client_ca_file; empty: any listener CA
  std::optional<CertificateRestrictions> restrictions;
  std::optional<uint32_t> max_chain_depth;
  std::string basic_realm;
};

struct RuleCertificateVerdict {
  Reason reason = Reason::kOk;
  std::string detail;  // names the rule and the failed requirement
};

class PublishingRules {
 public:
  explicit PublishingRules(std::vector<EdgeRuleSettings> rules);

  // host: normalized (NormalizeHost); target: origin-form. Null when no rule matches.
  const EdgeRuleSettings* Match(std::string_view host, std::string_view target) const;
  // Index of a rule returned by Match, for per-connection caches.
  size_t IndexOf(const EdgeRuleSettings& rule) const { return &rule - rules_.data(); }
  size_t size() const { return rules_.size(); }

  // Whether a handshake for this server name ("" when the device sent no SNI) may complete without
  // a client certificate: true when any rule that can serve the name accepts passwords alone. The
  // request is still held to its own rule's needs, so this only decides how early a device that
  // has no certificate is turned away.
  bool CertificateOptionalFor(std::string_view sni) const;

  // The rule's own trust list, chain depth and restrictions (the listener's were checked at the
  // handshake). chain_der: leaf first, up to the trust anchor.
  static RuleCertificateVerdict CheckCertificate(const EdgeRuleSettings& rule,
                                                 const std::vector<std::string>& chain_der);

 private:
  std::vector<EdgeRuleSettings> rules_;
  std::vector<RuleScope> scopes_;
};

}  // namespace orthrus::edge
