#pragma once
// The broker's validated, immutable settings.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "broker/revocation/revocation_service.h"
#include "common/auth_mode.h"
#include "common/net_address.h"
#include "common/result.h"

namespace orthrus::broker {

struct RuleSettings {
  std::string name;
  std::vector<std::string> path_prefixes;
  std::string backend_host;  // from backend_url; also the name verified in the backend certificate
  uint16_t backend_port = 443;
  std::string pinned_ip;     // empty: resolve backend_host
  std::string backend_ca_file;
  std::string bridging_certificate_file;  // empty: no client certificate towards the backend
  std::string bridging_private_key_file;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::seconds response_timeout{3660};
  std::chrono::seconds body_timeout{300};
  uint32_t max_idle_connections = 4;
  std::chrono::seconds idle_connection_timeout{60};
  bool identity_headers = false;
  std::string spn;  // non-empty: Kerberos constrained delegation to this SPN
  std::vector<std::string> hosts;  // lower case; empty: any host
  AuthMode authentication = AuthMode::kCertificate;

  bool delegates() const { return !spn.empty(); }

  // Value for the Host header and logs: "host" or "host:port".
  std::string Authority() const;
};

struct KerberosSettings {
  std::string keytab_file;
  std::string principal;  // "svc-broker@CORP.TEST"
  std::string realm;      // "CORP.TEST"
  std::chrono::milliseconds kdc_timeout{5000};
  std::chrono::seconds refresh_margin{300};
  std::chrono::seconds password_cache{120};
  std::string password_verify_principal;  // default: principal
};

struct DirectoryConfig {
  std::string uri;
  std::string base_dn;
  bool start_tls = false;
  std::string ca_file;
  std::string bind_dn;
  std::string bind_password_file;
  std::vector<std::string> mappings;  // validated names, in order
  std::chrono::milliseconds timeout{5000};
  std::chrono::seconds cache_ttl{300};
  std::chrono::seconds negative_cache_ttl{60};
};

// The admin listener orthrusctl talks to: mutual TLS against admin_ca_pem, then the allow list.
struct RevocationAdminSettings {
  HostPort listen;
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::string admin_ca_pem;
  std::vector<std::string> allowed_admins;  // CN, DNS SAN or e-mail SAN of the admin certificate
};

// Pushed revocation (the `revocation` section); absent: the feature is off.
struct BrokerRevocationSettings {
  revocation::RevocationServiceSettings service;
  RevocationAdminSettings admin;
};

struct BrokerSettings {
  std::string broker_id;
  HostPort listen;
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::string edge_ca_pem;
  std::vector<std::string> allowed_edges;
  std::string device_ca_file;
  long device_clock_skew_seconds = 0;
  std::vector<RuleSettings> rules;
  std::string log_output;
  std::string log_level;
  unsigned threads = 0;
  unsigned worker_threads = 8;
  std::optional<KerberosSettings> kerberos;   // present when any rule delegates
  std::optional<DirectoryConfig> directory;
  std::optional<BrokerRevocationSettings> revocation;
};

Result<BrokerSettings> LoadBrokerConfig(const std::string& path);

// "https://host[:port][/]" -> host, port. Anything else (http, paths, userinfo) is refused.
Result<std::pair<std::string, uint16_t>> ParseBackendUrl(std::string_view url);

}  // namespace orthrus::broker
