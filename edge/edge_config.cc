#include "edge/edge_config.h"

#include <openssl/ssl.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "common/config_checks.h"
#include "common/tls/openssl_handles.h"
#include "common/tls/pem_files.h"
#include "orthrus/config/v1/edge.pb.h"

namespace orthrus::edge {
namespace {

using config::Errors;
using config::Scope;

void CheckCiphers(const Scope& scope, Errors& errors, EdgeSettings& out,
                  const orthrus::config::v1::DeviceListener& listen) {
  out.tls12_ciphers =
      listen.has_tls12_ciphers() ? listen.tls12_ciphers() : std::string(kDefaultTls12Ciphers);
  out.tls13_ciphersuites = listen.has_tls13_ciphersuites() ? listen.tls13_ciphersuites()
                                                           : std::string(kDefaultTls13Ciphersuites);
  tls::SslCtxPtr probe(SSL_CTX_new(TLS_server_method()));
  if (SSL_CTX_set_cipher_list(probe.get(), out.tls12_ciphers.c_str()) != 1) {
    errors.Add(scope.Where("tls12_ciphers"), "no usable cipher in '" + out.tls12_ciphers + "'");
  }
  if (SSL_CTX_set_ciphersuites(probe.get(), out.tls13_ciphersuites.c_str()) != 1) {
    errors.Add(scope.Where("tls13_ciphersuites"),
               "no usable TLS 1.3 ciphersuite in '" + out.tls13_ciphersuites + "'");
  }
  tls::DrainErrors();
}

template <class T>
void Positive(const Scope& scope, Errors& errors, std::string_view field, bool present, T value,
              T& target) {
  if (!present) return;
  if (value == 0) {
    errors.Add(scope.Where(field), "must be greater than 0");
    return;
  }
  target = value;
}

// A positive seconds field; absent keeps the default in `target`.
void PositiveSeconds(const Scope& scope, Errors& errors, std::string_view field, bool present,
                     uint32_t value, std::chrono::seconds& target) {
  uint32_t n = 0;
  Positive(scope, errors, field, present, value, n);
  if (n) target = std::chrono::seconds(n);
}

std::optional<CertificateRestrictions> LoadRestrictions(
    const Scope& scope, Errors& errors, const orthrus::config::v1::CertificateRestrictions& r) {
  RestrictionSettings settings;
  settings.allowed_issuers.assign(r.allowed_issuer().begin(), r.allowed_issuer().end());
  if (r.has_subject_pattern()) settings.subject_pattern = r.subject_pattern();
  settings.san_patterns.assign(r.san_pattern().begin(), r.san_pattern().end());
  settings.required_ekus.assign(r.required_eku().begin(), r.required_eku().end());
  settings.required_policies.assign(r.required_policy().begin(), r.required_policy().end());
  settings.key_types.assign(r.key_type().begin(), r.key_type().end());
  if (r.has_max_validity_days()) settings.max_validity_days = r.max_validity_days();
  auto problems = CertificateRestrictions::Validate(settings);
  for (const auto& p : problems) errors.Add(scope.Where(p.field, p.index), p.message);
  if (!problems.empty()) return std::nullopt;
  auto created = CertificateRestrictions::Create(settings);
  if (!created) {
    errors.Add(scope.Where("allowed_issuer"), created.error().detail);  // unreachable: validated
    return std::nullopt;
  }
  return std::move(*created);
}

std::vector<std::string> CertificatesDer(const std::string& path) {
  std::vector<std::string> out;
  auto certs = tls::LoadCertificates(path);
  if (!certs) return out;
  for (const auto& cert : *certs) {
    unsigned char* der = nullptr;
    int n = i2d_X509(cert.get(), &der);
    if (n > 0) out.emplace_back(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
  }
  return out;
}

void LoadRules(const Scope& root, Errors& errors, EdgeSettings& out,
               const orthrus::config::v1::EdgeConfig& cfg) {
  const std::vector<std::string> listener_cas = CertificatesDer(out.client_ca_file);
  for (int i = 0; i < cfg.rule_size(); ++i) {
    Scope rs = root.Child("rule", i);
    const auto& r = cfg.rule(i);
    EdgeRuleSettings rule;
    rule.name = r.name();
    if (config::RequireNonEmpty(rs, errors, "name", rule.name)) {
      for (const auto& earlier : out.rules) {
        if (earlier.name == rule.name) errors.Add(rs.Where("name"), "duplicate rule name");
      }
    }
    for (int h = 0; h < r.host_size(); ++h) {
      if (std::string problem = CheckHostPattern(r.host(h)); !problem.empty()) {
        errors.Add(rs.Where("host", h), problem);
      }
      rule.hosts.push_back(r.host(h));
    }
    for (int p = 0; p < r.path_prefix_size(); ++p) {
      if (r.path_prefix(p).empty() || r.path_prefix(p).front() != '/') {
        errors.Add(rs.Where("path_prefix", p), "must start with '/'");
      }
      rule.path_prefixes.push_back(r.path_prefix(p));
    }
    if (rule.path_prefixes.empty()) rule.path_prefixes.push_back("/");
    if (r.has_authentication()) {
      if (auto mode = ParseAuthMode(r.authentication())) {
        rule.authentication = *mode;
      } else {
        errors.Add(rs.Where("authentication"),
                   "must be \"certificate\", \"certificate-or-password\", "
                   "\"certificate-and-password\" or \"password\"");
      }
    }
    if (r.has_client_ca_file()) {
      rule.client_ca_file = r.client_ca_file();
      config::CheckCertificateFile(rs, errors, "client_ca_file", rule.client_ca_file);
      rule.trusted_ca_der = CertificatesDer(rule.client_ca_file);
      for (const auto& der : rule.trusted_ca_der) {
        if (std::find(listener_cas.begin(), listener_cas.end(), der) == listener_cas.end()) {
          errors.Add(rs.Where("client_ca_file"),
                     "holds a CA that is not in listen.client_ca_file; the handshake would never "
                     "accept its certificates");
          break;
        }
      }
    }
    if (rs.Has("restrictions")) {
      rule.restrictions = LoadRestrictions(rs.Child("restrictions"), errors, r.restrictions());
    }
    if (r.has_max_chain_depth()) {
      if (r.max_chain_depth() > 10) {
        errors.Add(rs.Where("max_chain_depth"), "must be between 0 and 10");
      }
      rule.max_chain_depth = r.max_chain_depth();
    }
    rule.basic_realm = r.has_basic_realm() ? r.basic_realm() : rule.name;
    for (char c : rule.basic_realm) {
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
        errors.Add(rs.Where("basic_realm"), "must not contain quotes, backslashes or controls");
        break;
      }
    }
    // Same hosts and same prefix as an earlier rule: this one could never be chosen.
    for (const auto& earlier : out.rules) {
      auto a = earlier.hosts, b = rule.hosts;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      if (a != b) continue;
      for (const auto& prefix : rule.path_prefixes) {
        for (const auto& other : earlier.path_prefixes) {
          if (PathPrefixMatches(prefix, other) && PathPrefixMatches(other, prefix)) {
            errors.Add(rs.Where("path_prefix"),
                       "\"" + prefix + "\" on the same hosts as rule " + earlier.name +
                           ", which always wins");
          }
        }
      }
    }
    out.rules.push_back(std::move(rule));
  }
  if (out.rules.empty()) {
    EdgeRuleSettings implicit;
    implicit.name = "default";
    implicit.path_prefixes = {"/"};
    out.rules.push_back(std::move(implicit));
  }
}

void LoadPasswordLimits(const Scope& root, Errors& errors, EdgeSettings& out,
                        const orthrus::config::v1::PasswordLimits& p) {
  Scope ps = root.Child("password_limits");
  PasswordLimitSettings& o = out.password_limits;
  Positive(ps, errors, "account_failures", p.has_account_failures(), p.account_failures(),
           o.account_failures);
  Positive(ps, errors, "address_failures", p.has_address_failures(), p.address_failures(),
           o.address_failures);
  uint32_t window = 0;
  Positive(ps, errors, "window_seconds", p.has_window_seconds(), p.window_seconds(), window);
  if (window) o.window = std::chrono::seconds(window);
  uint32_t tracked = 0;
  Positive(ps, errors, "max_tracked", p.has_max_tracked(), p.max_tracked(), tracked);
  if (tracked) o.max_tracked = tracked;
}

}  // namespace

Result<EdgeSettings> LoadEdgeConfig(const std::string& path) {
  ORTHRUS_ASSIGN_OR_RETURN(
      auto file,
      config::ParsedFile::Load(path, std::make_unique<orthrus::config::v1::EdgeConfig>()));
  const auto& cfg = static_cast<const orthrus::config::v1::EdgeConfig&>(file->message());
  Scope root = file->Root();
  Errors errors;
  EdgeSettings out;

  out.edge_id = cfg.edge_id();
  config::RequireNonEmpty(root, errors, "edge_id", out.edge_id);

  // Device-facing listener.
  if (!root.Has("listen")) {
    errors.Add(root.Where("listen"), "required section is missing");
  } else {
    Scope ls = root.Child("listen");
    const auto& listen = cfg.listen();
    if (auto addr = config::CheckListenAddress(ls, errors, "address", listen.address())) {
      out.listen = *addr;
    }
    config::CheckCertificateKeyPair(ls, errors, "certificate_chain_file",
                                    listen.certificate_chain_file(), "private_key_file",
                                    listen.private_key_file());
    config::CheckCertificateFile(ls, errors, "client_ca_file", listen.client_ca_file());
    out.certificate_chain_file = listen.certificate_chain_file();
    out.private_key_file = listen.private_key_file();
    out.client_ca_file = listen.client_ca_file();
    CheckCiphers(ls, errors, out, listen);
    if (listen.has_min_tls_version()) {
      if (listen.min_tls_version() == "1.3") {
        out.tls13_only = true;
      } else if (listen.min_tls_version() != "1.2") {
        errors.Add(ls.Where("min_tls_version"), "must be \"1.2\" or \"1.3\"");
      }
    }
    if (listen.has_max_chain_depth()) {
      if (listen.max_chain_depth() < 1 || listen.max_chain_depth() > 10) {
        errors.Add(ls.Where("max_chain_depth"), "must be between 1 and 10");
      } else {
        out.max_chain_depth = listen.max_chain_depth();
      }
    }
    if (ls.Has("restrictions")) {
      out.restrictions = LoadRestrictions(ls.Child("restrictions"), errors, listen.restrictions());
    }
    if (listen.has_clock_skew_seconds()) {
      if (listen.clock_skew_seconds() > 86400) {
        errors.Add(ls.Where("clock_skew_seconds"), "must not exceed 86400 (one day)");
      } else {
        out.clock_skew = std::chrono::seconds(listen.clock_skew_seconds());
      }
    }
  }

  LoadRules(root, errors, out, cfg);
  LoadPasswordLimits(root, errors, out, cfg.password_limits());

  // Brokers and the mutual-TLS channel to them.
  if (cfg.broker_size() == 0) errors.Add(root.Where("broker"), "at least one broker is required");
  for (int i = 0; i < cfg.broker_size(); ++i) {
    Scope bs = root.Child("broker", i);
    const auto& b = cfg.broker(i);
    if (auto addr = config::CheckHostPort(bs, errors, "address", b.address())) {
      out.brokers.push_back({*addr, b.has_server_name() ? b.server_name() : addr->host});
    }
  }
  if (!root.Has("broker_tls")) {
    errors.Add(root.Where("broker_tls"), "required section is missing");
  } else {
    Scope ts = root.Child("broker_tls");
    const auto& t = cfg.broker_tls();
    config::CheckCertificateKeyPair(ts, errors, "certificate_chain_file",
                                    t.certificate_chain_file(), "private_key_file",
                                    t.private_key_file());
    config::CheckCertificateFile(ts, errors, "ca_file", t.ca_file());
    out.broker_cert_chain_pem = config::ReadCheckedFile(t.certificate_chain_file());
    out.broker_private_key_pem = config::ReadCheckedFile(t.private_key_file());
    out.broker_ca_pem = config::ReadCheckedFile(t.ca_file());
    uint32_t ms = 0;
    Positive(ts, errors, "connect_timeout_ms", t.has_connect_timeout_ms(), t.connect_timeout_ms(),
             ms);
    if (ms) out.broker_connect_timeout = std::chrono::milliseconds(ms);
  }

  // HTTP limits.
  if (root.Has("limits")) {
    Scope lim = root.Child("limits");
    const auto& l = cfg.limits();
    HttpLimits& o = out.limits;
    Positive(lim, errors, "request_line_bytes", l.has_request_line_bytes(),
             l.request_line_bytes(), o.request_line_bytes);
    Positive(lim, errors, "header_bytes", l.has_header_bytes(), l.header_bytes(), o.header_bytes);
    if (l.has_body_bytes()) o.body_bytes = l.body_bytes();
    auto secs = [&](std::string_view field, bool has, uint32_t v, std::chrono::seconds& target) {
      PositiveSeconds(lim, errors, field, has, v, target);
    };
    secs("header_timeout_seconds", l.has_header_timeout_seconds(), l.header_timeout_seconds(),
         o.header_timeout);
    secs("idle_timeout_seconds", l.has_idle_timeout_seconds(), l.idle_timeout_seconds(),
         o.idle_timeout);
    secs("body_timeout_seconds", l.has_body_timeout_seconds(), l.body_timeout_seconds(),
         o.body_timeout);
    secs("response_timeout_seconds", l.has_response_timeout_seconds(),
         l.response_timeout_seconds(), o.response_timeout);
    secs("handshake_timeout_seconds", l.has_handshake_timeout_seconds(),
         l.handshake_timeout_seconds(), o.handshake_timeout);
    if (o.request_line_bytes > o.header_bytes) {
      errors.Add(lim.Where("request_line_bytes"), "must not exceed header_bytes");
    }
  }

  if (root.Has("revocation")) {
    Scope rs = root.Child("revocation");
    const auto& r = cfg.revocation();
    CrlSources sources;
    sources.ca_bundle_file = out.client_ca_file;
    for (const auto& f : r.crl_file()) sources.crl_files.push_back(f);
    for (const auto& c : r.no_crl_ca()) sources.no_crl_cas.push_back(c);
    sources.stale_grace = std::chrono::seconds(r.stale_grace_seconds());
    // Load once now so that --check-config catches a bad signature, an unknown issuer or a CA
    // without a CRL; the server loads them again when it starts (and on SIGHUP).
    if (!out.client_ca_file.empty()) {
      if (auto loaded = LoadCrls(sources, 0); !loaded) {
        errors.Add(rs.Where(loaded.error().code == "crl_missing" ? "no_crl_ca" : "crl_file"),
                   loaded.error().detail);
      }
    }
    out.revocation = std::move(sources);
  }

  if (root.Has("revocation_feed")) {
    Scope fs = root.Child("revocation_feed");
    const auto& f = cfg.revocation_feed();
    RevocationFeedSettings feed;
    feed.state_file = f.state_file();
    if (config::RequireNonEmpty(fs, errors, "state_file", f.state_file())) {
      std::string dir = f.state_file().substr(0, f.state_file().find_last_of('/') + 1);
      if (dir.empty()) dir = ".";
      if (::access(dir.c_str(), W_OK | X_OK) != 0) {
        errors.Add(fs.Where("state_file"), "directory " + dir + " is not writable: " +
                                               std::strerror(errno));
      }
    }
    auto secs = [&](std::string_view field, bool has, uint32_t v, std::chrono::seconds& target) {
      PositiveSeconds(fs, errors, field, has, v, target);
    };
    secs("max_staleness_seconds", f.has_max_staleness_seconds(), f.max_staleness_seconds(),
         feed.max_staleness);
    secs("initial_sync_timeout_seconds", f.has_initial_sync_timeout_seconds(),
         f.initial_sync_timeout_seconds(), feed.initial_sync_timeout);
    uint32_t ms = 0;
    Positive(fs, errors, "reconnect_min_ms", f.has_reconnect_min_ms(), f.reconnect_min_ms(), ms);
    if (ms) feed.reconnect_min = std::chrono::milliseconds(ms);
    ms = 0;
    Positive(fs, errors, "reconnect_max_ms", f.has_reconnect_max_ms(), f.reconnect_max_ms(), ms);
    if (ms) feed.reconnect_max = std::chrono::milliseconds(ms);
    if (feed.reconnect_max < feed.reconnect_min) {
      errors.Add(fs.Where("reconnect_max_ms"), "must not be less than reconnect_min_ms");
    }
    feed.crl_stale_grace = std::chrono::seconds(f.crl_stale_grace_seconds());
    feed.fail_closed =
        f.staleness_policy() == orthrus::config::v1::StalenessPolicy::FAIL_CLOSED;
    out.revocation_feed = std::move(feed);
  }

  out.log_output = cfg.log().output();
  out.log_level = cfg.log().level();
  config::CheckLogging(root, errors, out.log_level);
  out.threads = cfg.has_threads() ? cfg.threads() : std::max(1u, std::thread::hardware_concurrency());
  if (out.threads == 0 || out.threads > 256) {
    errors.Add(root.Where("threads"), "must be between 1 and 256");
  }

  if (!errors.empty()) return std::unexpected(errors.ToError());
  return out;
}

}  // namespace orthrus::edge
