#include "broker/broker_config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <set>
#include <thread>

#include "broker/revocation/crl_source.h"
#include "common/config_checks.h"
#include "common/publishing_match.h"
#include "common/tls/pem_files.h"
#include "orthrus/config/v1/broker.pb.h"

namespace orthrus::broker {
namespace {

using config::Errors;
using config::Scope;

bool IsIpLiteral(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

void LoadRule(const Scope& rs, Errors& errors, const orthrus::config::v1::PublishingRule& r,
              std::set<std::string>& names, RuleSettings& out) {
  out.name = r.name();
  if (config::RequireNonEmpty(rs, errors, "name", r.name()) && !names.insert(r.name()).second) {
    errors.Add(rs.Where("name"), "duplicate rule name '" + r.name() + "'");
  }
  if (r.path_prefix_size() == 0) errors.Add(rs.Where("path_prefix"), "at least one path_prefix is required");
  for (int i = 0; i < r.path_prefix_size(); ++i) {
    if (r.path_prefix(i).empty() || r.path_prefix(i).front() != '/') {
      errors.Add(rs.Where("path_prefix", i), "must start with '/'");
    }
    out.path_prefixes.push_back(r.path_prefix(i));
  }
  if (config::RequireNonEmpty(rs, errors, "backend_url", r.backend_url())) {
    if (auto url = ParseBackendUrl(r.backend_url())) {
      out.backend_host = url->first;
      out.backend_port = url->second;
    } else {
      errors.Add(rs.Where("backend_url"), url.error().detail);
    }
  }
  if (r.has_pinned_ip()) {
    if (!IsIpLiteral(r.pinned_ip())) {
      errors.Add(rs.Where("pinned_ip"), "'" + r.pinned_ip() + "' is not an IP address");
    }
    out.pinned_ip = r.pinned_ip();
  }
  config::CheckCertificateFile(rs, errors, "backend_ca_file", r.backend_ca_file());
  out.backend_ca_file = r.backend_ca_file();
  if (r.has_bridging_certificate_file() != r.has_bridging_private_key_file()) {
    errors.Add(rs.Where(r.has_bridging_certificate_file() ? "bridging_private_key_file"
                                                          : "bridging_certificate_file"),
               "bridging needs both a certificate file and a private key file");
  } else if (r.has_bridging_certificate_file()) {
    config::CheckCertificateKeyPair(rs, errors, "bridging_certificate_file",
                                    r.bridging_certificate_file(), "bridging_private_key_file",
                                    r.bridging_private_key_file());
    out.bridging_certificate_file = r.bridging_certificate_file();
    out.bridging_private_key_file = r.bridging_private_key_file();
  }
  auto positive = [&](std::string_view field, bool has, uint32_t value, auto& target, auto unit) {
    if (!has) return;
    if (value == 0) {
      errors.Add(rs.Where(field), "must be greater than 0");
      return;
    }
    target = decltype(unit)(value);
  };
  positive("connect_timeout_ms", r.has_connect_timeout_ms(), r.connect_timeout_ms(),
           out.connect_timeout, std::chrono::milliseconds());
  positive("response_timeout_seconds", r.has_response_timeout_seconds(),
           r.response_timeout_seconds(), out.response_timeout, std::chrono::seconds());
  positive("body_timeout_seconds", r.has_body_timeout_seconds(), r.body_timeout_seconds(),
           out.body_timeout, std::chrono::seconds());
  positive("idle_connection_seconds", r.has_idle_connection_seconds(), r.idle_connection_seconds(),
           out.idle_connection_timeout, std::chrono::seconds());
  if (r.has_max_idle_connections()) out.max_idle_connections = r.max_idle_connections();
  out.identity_headers = r.identity_headers();
  if (r.has_spn()) {
    auto slash = r.spn().find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == r.spn().size() ||
        r.spn().find('@') != std::string::npos) {
      errors.Add(rs.Where("spn"), "'" + r.spn() + "' is not a service principal like HTTP/exchange.corp.test");
    }
    out.spn = r.spn();
  }
  for (int i = 0; i < r.host_size(); ++i) {
    if (std::string problem = CheckHostPattern(r.host(i)); !problem.empty()) {
      errors.Add(rs.Where("host", i), problem);
    }
    out.hosts.push_back(r.host(i));
  }
  if (r.has_authentication()) {
    if (auto mode = ParseAuthMode(r.authentication())) {
      out.authentication = *mode;
    } else {
      errors.Add(rs.Where("authentication"),
                 "must be \"certificate\", \"certificate-or-password\", "
                 "\"certificate-and-password\" or \"password\"");
    }
  }
}

constexpr std::string_view kStrongMappings[] = {"altsec-issuer-serial", "altsec-ski",
                                                "altsec-sha1-pukey", "sid-extension"};
constexpr std::string_view kWeakMappings[] = {"upn", "rfc822", "altsec-issuer-subject"};

void LoadKerberos(const Scope& ks, Errors& errors, const orthrus::config::v1::Kerberos& k,
                  KerberosSettings& out) {
  out.keytab_file = k.keytab_file();
  if (config::RequireNonEmpty(ks, errors, "keytab_file", k.keytab_file())) {
    struct stat st{};
    if (::stat(k.keytab_file().c_str(), &st) != 0) {
      errors.Add(ks.Where("keytab_file"), "cannot read " + k.keytab_file() + ": " + std::strerror(errno));
    } else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
      errors.Add(ks.Where("keytab_file"),
                 k.keytab_file() + ": keytab is accessible by group or others; run chmod 600");
    }
  }
  out.principal = k.principal();
  if (config::RequireNonEmpty(ks, errors, "principal", k.principal())) {
    auto at = k.principal().rfind('@');
    if (at == std::string::npos || at == 0 || at + 1 == k.principal().size()) {
      errors.Add(ks.Where("principal"), "must be account@REALM, e.g. svc-broker@CORP.TEST");
    } else {
      out.realm = k.principal().substr(at + 1);
    }
  }
  if (k.has_kdc_timeout_ms()) {
    if (k.kdc_timeout_ms() == 0) errors.Add(ks.Where("kdc_timeout_ms"), "must be greater than 0");
    else out.kdc_timeout = std::chrono::milliseconds(k.kdc_timeout_ms());
  }
  if (k.has_refresh_margin_seconds()) out.refresh_margin = std::chrono::seconds(k.refresh_margin_seconds());
  if (k.has_password_cache_seconds()) {
    if (k.password_cache_seconds() > 3600) {
      errors.Add(ks.Where("password_cache_seconds"), "must not exceed 3600");
    } else {
      out.password_cache = std::chrono::seconds(k.password_cache_seconds());
    }
  }
  out.password_verify_principal =
      k.has_password_verify_principal() ? k.password_verify_principal() : k.principal();
}

void LoadDirectory(const Scope& ds, Errors& errors, const orthrus::config::v1::Directory& d,
                   DirectoryConfig& out) {
  out.uri = d.uri();
  if (config::RequireNonEmpty(ds, errors, "uri", d.uri()) && !d.uri().starts_with("ldap://") &&
      !d.uri().starts_with("ldaps://")) {
    errors.Add(ds.Where("uri"), "must start with ldap:// or ldaps://");
  }
  out.base_dn = d.base_dn();
  config::RequireNonEmpty(ds, errors, "base_dn", d.base_dn());
  out.start_tls = d.start_tls();
  if (d.has_ca_file()) {
    config::CheckCertificateFile(ds, errors, "ca_file", d.ca_file());
    out.ca_file = d.ca_file();
  }
  if (d.has_bind_dn()) {
    out.bind_dn = d.bind_dn();
    out.bind_password_file = d.bind_password_file();
    if (!d.has_bind_password_file()) errors.Add(ds.Where("bind_password_file"), "required with bind_dn");
    // A password must never cross the network in clear text.
    if (!d.uri().starts_with("ldaps://") && !d.start_tls()) {
      errors.Add(ds.Where("bind_dn"), "a simple bind needs ldaps:// or start_tls: true");
    }
  }
  if (d.mapping_size() == 0) {
    for (auto m : kStrongMappings) out.mappings.emplace_back(m);
  }
  for (int i = 0; i < d.mapping_size(); ++i) {
    const std::string& m = d.mapping(i);
    bool strong = std::find(std::begin(kStrongMappings), std::end(kStrongMappings), m) != std::end(kStrongMappings);
    bool weak = std::find(std::begin(kWeakMappings), std::end(kWeakMappings), m) != std::end(kWeakMappings);
    if (!strong && !weak) {
      errors.Add(ds.Where("mapping", i), "unknown mapping '" + m +
                                             "' (altsec-issuer-serial, altsec-ski, altsec-sha1-pukey, "
                                             "sid-extension, upn, rfc822, altsec-issuer-subject)");
    } else if (weak && !d.allow_weak_mappings()) {
      errors.Add(ds.Where("mapping", i), "'" + m +
                                             "' is a weak mapping (KB5014754); set allow_weak_mappings: "
                                             "true to use it");
    }
    out.mappings.push_back(m);
  }
  if (d.has_timeout_ms() && d.timeout_ms() > 0) out.timeout = std::chrono::milliseconds(d.timeout_ms());
  if (d.has_cache_seconds()) out.cache_ttl = std::chrono::seconds(d.cache_seconds());
  if (d.has_negative_cache_seconds()) out.negative_cache_ttl = std::chrono::seconds(d.negative_cache_seconds());
}


// Directory part of a path ("." for a bare file name), for "can we create files next to it".
std::string DirectoryOf(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void LoadRevocationAdmin(const Scope& as, Errors& errors,
                         const orthrus::config::v1::RevocationAdminListener& a,
                         RevocationAdminSettings& out) {
  if (auto addr = config::CheckListenAddress(as, errors, "address", a.address())) out.listen = *addr;
  config::CheckCertificateKeyPair(as, errors, "certificate_chain_file", a.certificate_chain_file(),
                                  "private_key_file", a.private_key_file());
  config::CheckCertificateFile(as, errors, "admin_ca_file", a.admin_ca_file());
  out.cert_chain_pem = config::ReadCheckedFile(a.certificate_chain_file());
  out.private_key_pem = config::ReadCheckedFile(a.private_key_file());
  out.admin_ca_pem = config::ReadCheckedFile(a.admin_ca_file());
  if (a.allowed_admin_size() == 0) {
    errors.Add(as.Where("allowed_admin"),
               "at least one allowed_admin is required (the CN, DNS or e-mail name of each admin "
               "certificate)");
  }
  for (int i = 0; i < a.allowed_admin_size(); ++i) {
    if (a.allowed_admin(i).empty()) errors.Add(as.Where("allowed_admin", i), "must not be empty");
    out.allowed_admins.push_back(a.allowed_admin(i));
  }
}

void LoadRevocation(const Scope& rs, Errors& errors,
                    const orthrus::config::v1::RevocationServiceConfig& r,
                    BrokerRevocationSettings& out) {
  out.service = revocation::SettingsFromConfig(r);
  // The database: SQLite creates it and, in WAL mode, its -wal/-shm files next to it.
  if (config::RequireNonEmpty(rs, errors, "database_file", r.database_file())) {
    const std::string dir = DirectoryOf(r.database_file());
    struct stat st{};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      errors.Add(rs.Where("database_file"), "directory " + dir + " does not exist");
    } else if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      errors.Add(rs.Where("database_file"),
                 "directory " + dir + " is not writable: " + std::strerror(errno) +
                     " (SQLite needs to create the -wal and -shm files next to the database)");
    } else if (::stat(r.database_file().c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode)) {
        errors.Add(rs.Where("database_file"), r.database_file() + " is not a regular file");
      } else if (::access(r.database_file().c_str(), R_OK | W_OK) != 0) {
        errors.Add(rs.Where("database_file"),
                   "cannot read and write " + r.database_file() + ": " + std::strerror(errno));
      }
    }
  }
  for (int i = 0; i < r.crl_ca_file_size(); ++i) {
    if (r.crl_ca_file(i).empty()) {
      errors.Add(rs.Where("crl_ca_file", i), "required key is missing or empty");
    } else if (auto certs = tls::LoadCertificates(r.crl_ca_file(i)); !certs) {
      errors.Add(rs.Where("crl_ca_file", i), certs.error().detail);
    }
  }
  if (r.crl_source_size() > 0 && r.crl_ca_file_size() == 0) {
    errors.Add(rs.Where("crl_ca_file"),
               "required with crl_source: the CA certificates the CRLs' signatures are verified "
               "against (usually device_ca_file)");
  }
  std::set<std::string> sources;
  for (int i = 0; i < r.crl_source_size(); ++i) {
    Scope ss = rs.Child("crl_source", i);
    const auto& src = r.crl_source(i);
    switch (src.source_case()) {
      case orthrus::config::v1::CrlSource::kFile:
        if (src.file().empty()) {
          errors.Add(ss.Where("file"), "required key is missing or empty");
        } else if (::access(src.file().c_str(), R_OK) != 0) {
          errors.Add(ss.Where("file"), "cannot read " + src.file() + ": " + std::strerror(errno));
        }
        break;
      case orthrus::config::v1::CrlSource::kUrl:
        if (auto url = revocation::ParseHttpUrl(src.url()); !url) {
          errors.Add(ss.Where("url"), url.error().detail);
        }
        break;
      case orthrus::config::v1::CrlSource::SOURCE_NOT_SET:
        errors.Add(rs.Where("crl_source", i), "give a file or a url");
        break;
    }
    const std::string& name = src.source_case() == orthrus::config::v1::CrlSource::kUrl ? src.url() : src.file();
    if (!name.empty() && !sources.insert(name).second) {
      errors.Add(rs.Where("crl_source", i), "duplicate source '" + name + "'");
    }
  }
  if (r.has_min_refresh_interval_seconds() && r.min_refresh_interval_seconds() == 0) {
    errors.Add(rs.Where("min_refresh_interval_seconds"), "must be greater than 0");
  }
  if (r.has_max_refresh_interval_seconds() &&
      out.service.refresh.max_interval < out.service.refresh.min_interval) {
    errors.Add(rs.Where("max_refresh_interval_seconds"),
               "must not be less than min_refresh_interval_seconds (" +
                   std::to_string(out.service.refresh.min_interval.count()) + ")");
  }
  if (r.has_http_timeout_ms() && r.http_timeout_ms() == 0) {
    errors.Add(rs.Where("http_timeout_ms"), "must be greater than 0");
  }
  if (r.has_http_max_bytes() && r.http_max_bytes() == 0) {
    errors.Add(rs.Where("http_max_bytes"), "must be greater than 0");
  }
  if (r.has_change_log_retention() && r.change_log_retention() == 0) {
    errors.Add(rs.Where("change_log_retention"), "must be greater than 0");
  }
  if (r.has_heartbeat_interval_ms() &&
      (r.heartbeat_interval_ms() < 100 || r.heartbeat_interval_ms() > 60000)) {
    errors.Add(rs.Where("heartbeat_interval_ms"), "must be between 100 and 60000");
  }
  if (!rs.Has("admin")) {
    errors.Add(rs.Where("admin"), "required section is missing (the listener orthrusctl talks to)");
  } else {
    LoadRevocationAdmin(rs.Child("admin"), errors, r.admin(), out.admin);
  }
}

}  // namespace

std::string RuleSettings::Authority() const {
  bool v6 = backend_host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + backend_host + "]" : backend_host;
  return backend_port == 443 ? host : host + ":" + std::to_string(backend_port);
}

Result<std::pair<std::string, uint16_t>> ParseBackendUrl(std::string_view url) {
  static constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Fail("config_bad_url", "'" + std::string(url) + "': only https:// backends are supported");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return Fail("config_bad_url",
                "'" + std::string(url) + "': give scheme, host and port only (no path or user)");
  }
  std::string hostport(rest);
  bool has_port = hostport.rfind(':') != std::string::npos &&
                  (hostport.front() != '[' || hostport.rfind(']') < hostport.rfind(':'));
  if (!has_port) hostport += ":443";
  auto parsed = ParseHostPort(hostport);
  if (!parsed) return Fail("config_bad_url", "'" + std::string(url) + "': " + parsed.error().detail);
  return std::pair{parsed->host, parsed->port};
}

Result<BrokerSettings> LoadBrokerConfig(const std::string& path) {
  ORTHRUS_ASSIGN_OR_RETURN(
      auto file,
      config::ParsedFile::Load(path, std::make_unique<orthrus::config::v1::BrokerConfig>()));
  const auto& cfg = static_cast<const orthrus::config::v1::BrokerConfig&>(file->message());
  Scope root = file->Root();
  Errors errors;
  BrokerSettings out;

  out.broker_id = cfg.broker_id();
  config::RequireNonEmpty(root, errors, "broker_id", out.broker_id);

  if (!root.Has("listen")) {
    errors.Add(root.Where("listen"), "required section is missing");
  } else {
    Scope ls = root.Child("listen");
    const auto& l = cfg.listen();
    if (auto addr = config::CheckListenAddress(ls, errors, "address", l.address())) out.listen = *addr;
    config::CheckCertificateKeyPair(ls, errors, "certificate_chain_file", l.certificate_chain_file(),
                                    "private_key_file", l.private_key_file());
    config::CheckCertificateFile(ls, errors, "edge_ca_file", l.edge_ca_file());
    out.cert_chain_pem = config::ReadCheckedFile(l.certificate_chain_file());
    out.private_key_pem = config::ReadCheckedFile(l.private_key_file());
    out.edge_ca_pem = config::ReadCheckedFile(l.edge_ca_file());
    if (l.allowed_edge_size() == 0) {
      errors.Add(ls.Where("allowed_edge"),
                 "at least one allowed_edge is required (the CN or DNS name of each edge certificate)");
    }
    for (const auto& e : l.allowed_edge()) out.allowed_edges.push_back(e);
  }

  config::CheckCertificateFile(root, errors, "device_ca_file", cfg.device_ca_file());
  out.device_ca_file = cfg.device_ca_file();
  if (cfg.device_clock_skew_seconds() > 86400) {
    errors.Add(root.Where("device_clock_skew_seconds"), "must not exceed 86400 (one day)");
  } else {
    out.device_clock_skew_seconds = cfg.device_clock_skew_seconds();
  }

  if (cfg.rule_size() == 0) errors.Add(root.Where("rule"), "at least one publishing rule is required");
  std::set<std::string> names;
  for (int i = 0; i < cfg.rule_size(); ++i) {
    RuleSettings rule;
    LoadRule(root.Child("rule", i), errors, cfg.rule(i), names, rule);
    out.rules.push_back(std::move(rule));
  }

  auto any_rule = [&out](auto predicate) {
    return std::any_of(out.rules.begin(), out.rules.end(), predicate);
  };
  bool any_delegation = any_rule([](const RuleSettings& r) { return r.delegates(); });
  bool any_password = any_rule([](const RuleSettings& r) { return AcceptsPassword(r.authentication); });
  bool any_both = any_rule(
      [](const RuleSettings& r) { return r.authentication == AuthMode::kCertificateAndPassword; });
  // Which certificates need an account: delegating rules, and certificate-and-password rules
  // (both must be the same account).
  bool needs_mapping = any_rule([](const RuleSettings& r) {
    return r.authentication == AuthMode::kCertificateAndPassword ||
           (r.delegates() && r.authentication != AuthMode::kPassword);
  });
  if (root.Has("kerberos")) {
    out.kerberos.emplace();
    LoadKerberos(root.Child("kerberos"), errors, cfg.kerberos(), *out.kerberos);
  } else if (any_delegation) {
    errors.Add(root.Where("kerberos"), "required: a rule has an spn (constrained delegation)");
  } else if (any_password) {
    errors.Add(root.Where("kerberos"), "required: a rule accepts passwords (checked with the KDC)");
  }
  if (root.Has("directory")) {
    out.directory.emplace();
    LoadDirectory(root.Child("directory"), errors, cfg.directory(), *out.directory);
  } else if (needs_mapping) {
    errors.Add(root.Where("directory"),
               any_both ? "required: a rule is certificate-and-password (certificate -> account "
                          "mapping)"
                        : "required: a rule has an spn (certificate -> account mapping)");
  }
  if (root.Has("revocation")) {
    out.revocation.emplace();
    Scope rs = root.Child("revocation");
    LoadRevocation(rs, errors, cfg.revocation(), *out.revocation);
    const auto& admin = out.revocation->admin.listen;
    if (admin.port != 0 && admin.port == out.listen.port &&
        (admin.host == out.listen.host || admin.host == "0.0.0.0" || out.listen.host == "0.0.0.0" ||
         admin.host == "::" || out.listen.host == "::")) {
      errors.Add(rs.Child("admin").Where("address"),
                 "must differ from listen.address (the admin channel has its own listener)");
    }
  }
  if (cfg.has_worker_threads()) {
    if (cfg.worker_threads() == 0 || cfg.worker_threads() > 256) {
      errors.Add(root.Where("worker_threads"), "must be between 1 and 256");
    } else {
      out.worker_threads = cfg.worker_threads();
    }
  }

  out.log_output = cfg.log().output();
  out.log_level = cfg.log().level();
  config::CheckLogging(root, errors, out.log_level);
  out.threads = cfg.has_threads() ? cfg.threads() : std::max(1u, std::thread::hardware_concurrency());
  if (out.threads == 0 || out.threads > 256) errors.Add(root.Where("threads"), "must be between 1 and 256");

  if (!errors.empty()) return std::unexpected(errors.ToError());
  return out;
}

}  // namespace orthrus::broker
