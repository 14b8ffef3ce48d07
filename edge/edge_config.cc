#include "edge/edge_config.h"

#include <openssl/ssl.h>

#include <thread>

#include "common/config_checks.h"
#include "common/tls/openssl_handles.h"
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

void LoadRestrictions(const Scope& scope, Errors& errors, EdgeSettings& out,
                      const orthrus::config::v1::CertificateRestrictions& r) {
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
  if (!problems.empty()) return;
  auto created = CertificateRestrictions::Create(settings);
  if (!created) {
    errors.Add(scope.Where("allowed_issuer"), created.error().detail);  // unreachable: validated
    return;
  }
  out.restrictions = std::move(*created);
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
      LoadRestrictions(ls.Child("restrictions"), errors, out, listen.restrictions());
    }
  }

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
      uint32_t n = 0;
      Positive(lim, errors, field, has, v, n);
      if (n) target = std::chrono::seconds(n);
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
