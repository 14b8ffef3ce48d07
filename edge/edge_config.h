#pragma once
// The edge's validated, immutable settings. Nothing here is a domain secret: the edge holds its TLS
// keys and CA bundles only.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/net_address.h"
#include "common/result.h"
#include "edge/certificate_restrictions.h"
#include "edge/password_limiter.h"
#include "edge/publishing_rules.h"
#include "edge/revocation_feed.h"
#include "edge/revocation_store.h"

namespace orthrus::edge {

struct HttpLimits {
  uint32_t request_line_bytes = 8192;
  uint32_t header_bytes = 65536;
  uint64_t body_bytes = 2ull << 30;  // 0 = unlimited
  std::chrono::seconds header_timeout{30};
  std::chrono::seconds idle_timeout{120};
  std::chrono::seconds body_timeout{300};
  // ActiveSync Ping may hold a request for up to 59 minutes (HeartbeatInterval <= 3540 s).
  std::chrono::seconds response_timeout{3660};
  std::chrono::seconds handshake_timeout{15};
};

struct BrokerTarget {
  HostPort address;
  std::string server_name;  // expected in the broker certificate
};

struct EdgeSettings {
  std::string edge_id;
  HostPort listen;
  std::string certificate_chain_file;
  std::string private_key_file;
  std::string client_ca_file;
  std::string tls12_ciphers;
  std::string tls13_ciphersuites;
  bool tls13_only = false;
  uint32_t max_chain_depth = 4;
  // listen.restrictions; absent: every certificate that verifies (and is not revoked) is accepted.
  std::optional<CertificateRestrictions> restrictions;
  // listen.clock_skew_seconds: validity is checked this loosely at the handshake.
  std::chrono::seconds clock_skew{0};
  // Never empty: without configured rules, one implicit "default" certificate rule.
  std::vector<EdgeRuleSettings> rules;
  PasswordLimitSettings password_limits;

  std::vector<BrokerTarget> brokers;
  std::string broker_cert_chain_pem;
  std::string broker_private_key_pem;
  std::string broker_ca_pem;
  std::chrono::milliseconds broker_connect_timeout{2000};

  HttpLimits limits;
  std::optional<CrlSources> revocation;  // absent: no revocation checking from CRL files
  std::optional<RevocationFeedSettings> revocation_feed;  // absent: nothing pushed is checked
  std::string log_output;
  std::string log_level;
  unsigned threads = 0;
};

inline constexpr std::string_view kDefaultTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr std::string_view kDefaultTls13Ciphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

// Loads and validates the whole file; the error lists every problem, one "file:line: key: why" each.
Result<EdgeSettings> LoadEdgeConfig(const std::string& path);

}  // namespace orthrus::edge
