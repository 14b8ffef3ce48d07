#include "edge/tls_listener.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <string>

#include "common/publishing_match.h"

#include "common/tls/pem_files.h"
#include "common/tls/validity_skew.h"
#include "common/tls/x509_identity.h"

namespace orthrus::edge {

namespace ssl = boost::asio::ssl;

namespace {

// What the per-connection callbacks need; owned by the SSL_CTX (freed with it).
struct DeviceTlsPolicy {
  const PublishingRules* rules;
  long clock_skew_seconds;
};

void FreePolicy(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<DeviceTlsPolicy*>(ptr);
}

int PolicyIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreePolicy);
  return index;
}

const DeviceTlsPolicy* PolicyOf(SSL* ssl) {
  return static_cast<const DeviceTlsPolicy*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), PolicyIndex()));
}

// Validity with a clock-skew allowance; everything else is OpenSSL's verdict unchanged.
int VerifyWithSkew(int ok, X509_STORE_CTX* store) {
  if (ok) return ok;
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const DeviceTlsPolicy* policy = ssl ? PolicyOf(ssl) : nullptr;
  return policy != nullptr && tls::ForgiveWithinSkew(store, policy->clock_skew_seconds) ? 1 : 0;
}

constexpr int kRequireCertificate = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;

// Decides, per server name, whether the certificate the handshake asks for is required (the
// CertificateRequest is sent after this callback, so the mode set here is the one that applies).
int ChooseVerifyMode(SSL* ssl, int*, void*) {
  const DeviceTlsPolicy* policy = PolicyOf(ssl);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  std::string sni = name ? NormalizeHost(name) : std::string();
  bool optional = policy != nullptr && policy->rules->CertificateOptionalFor(sni);
  SSL_set_verify(ssl, optional ? SSL_VERIFY_PEER : kRequireCertificate, VerifyWithSkew);
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

Result<std::unique_ptr<ssl::context>> MakeDeviceTlsContext(const EdgeSettings& s,
                                                           const PublishingRules& rules) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, s.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle keep-alive and long-poll connections should not pin 2 x 16 KiB of record buffers each.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);

  if (SSL_CTX_set_cipher_list(native, s.tls12_ciphers.c_str()) != 1 ||
      SSL_CTX_set_ciphersuites(native, s.tls13_ciphersuites.c_str()) != 1) {
    return Fail("tls_config", "cipher configuration rejected: " + tls::DrainErrors());
  }
  if (SSL_CTX_use_certificate_chain_file(native, s.certificate_chain_file.c_str()) != 1) {
    return Fail("tls_config", s.certificate_chain_file + ": " + tls::DrainErrors());
  }
  if (SSL_CTX_use_PrivateKey_file(native, s.private_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(native) != 1) {
    return Fail("tls_config", s.private_key_file + ": " + tls::DrainErrors());
  }
  if (SSL_CTX_load_verify_locations(native, s.client_ca_file.c_str(), nullptr) != 1) {
    return Fail("tls_config", s.client_ca_file + ": " + tls::DrainErrors());
  }
  // Tell devices which CAs we accept, so a phone holding several certificates picks the right one.
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.client_ca_file.c_str());
  if (names != nullptr) SSL_CTX_set_client_CA_list(native, names);

  // Security level 2 as a floor (an operator's "@SECLEVEL=3" in tls12_ciphers still raises it):
  // OpenSSL then refuses device chains with keys under 112 bits of strength (RSA < 2048) and
  // signatures with weak digests (SHA-1, MD5) during verification (X509_V_ERR_EE_KEY_TOO_SMALL,
  // X509_V_ERR_CA_MD_TOO_WEAK), which ClassifyHandshakeFailure turns into reason codes.
  if (SSL_CTX_get_security_level(native) < 2) SSL_CTX_set_security_level(native, 2);
  // The device's whole Certificate message (chain included) may not exceed 100 KiB (OpenSSL's
  // default, made explicit): larger ones end the handshake with SSL_R_EXCESSIVE_MESSAGE_SIZE.
  SSL_CTX_set_max_cert_list(native, 100 * 1024);

  // OpenSSL's own chain checks decide (the callback only widens validity by the clock-skew
  // allowance); a failure is classified afterwards from SSL_get_verify_result.
  SSL_CTX_set_ex_data(native, PolicyIndex(),
                      new DeviceTlsPolicy{&rules, static_cast<long>(s.clock_skew.count())});
  SSL_CTX_set_verify(native, kRequireCertificate, VerifyWithSkew);
  SSL_CTX_set_tlsext_servername_callback(native, ChooseVerifyMode);
  SSL_CTX_set_verify_depth(native, static_cast<int>(s.max_chain_depth));
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(native);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_CLIENT);

  // Resumed sessions must belong to this exact trust configuration: bind the session id context to
  // the CA bundle, so changing the bundle invalidates every earlier session.
  auto ca_text = tls::ReadFile(s.client_ca_file);
  std::string sid = tls::Sha256(s.edge_id + "\n" + (ca_text ? *ca_text : std::string()));
  SSL_CTX_set_session_id_context(native, reinterpret_cast<const unsigned char*>(sid.data()),
                                 SSL_MAX_SID_CTX_LENGTH < sid.size() ? SSL_MAX_SID_CTX_LENGTH
                                                                      : static_cast<unsigned>(sid.size()));
  return ctx;
}

}  // namespace orthrus::edge
