#include "edge/connection_identity.h"

#include <openssl/err.h>

#include "common/tls/x509_identity.h"

namespace orthrus::edge {

Result<tunnel::v1::ClientIdentity> IdentityFromHandshake(SSL* ssl) {
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return Fail("no_client_certificate", "handshake completed without a peer certificate");
  ORTHRUS_ASSIGN_OR_RETURN(tls::CertIdentity id, tls::ExtractIdentity(leaf));

  tunnel::v1::ClientIdentity out;
  out.set_subject(id.subject);
  out.set_issuer(id.issuer);
  out.set_serial_hex(id.serial_hex);
  auto* san = out.mutable_san();
  for (auto& v : id.dns) san->add_dns(v);
  for (auto& v : id.rfc822) san->add_rfc822(v);
  for (auto& v : id.uri) san->add_uri(v);
  for (auto& v : id.ip) san->add_ip(v);
  for (auto& v : id.upn) san->add_upn(v);
  out.set_cert_sha256(id.cert_sha256);
  out.set_spki_sha256(id.spki_sha256);
  out.set_not_before_unix(id.not_before_unix);
  out.set_not_after_unix(id.not_after_unix);

  // The verified chain (leaf .. anchor) is only known for full handshakes; a resumed session keeps
  // the peer's own chain, which is what the broker re-verifies anyway.
  STACK_OF(X509)* chain = SSL_get0_verified_chain(ssl);
  if (chain != nullptr && sk_X509_num(chain) > 0) {
    for (int i = 0; i < sk_X509_num(chain); ++i) {
      ORTHRUS_ASSIGN_OR_RETURN(std::string der, tls::ToDer(sk_X509_value(chain, i)));
      out.add_chain_der(std::move(der));
    }
  } else {
    ORTHRUS_ASSIGN_OR_RETURN(std::string der, tls::ToDer(leaf));
    out.add_chain_der(std::move(der));
    STACK_OF(X509)* peer_chain = SSL_get_peer_cert_chain(ssl);  // server side: without the leaf
    for (int i = 0; peer_chain != nullptr && i < sk_X509_num(peer_chain); ++i) {
      ORTHRUS_ASSIGN_OR_RETURN(std::string extra, tls::ToDer(sk_X509_value(peer_chain, i)));
      out.add_chain_der(std::move(extra));
    }
  }
  return out;
}

void FillConnectionFacts(SSL* ssl, tunnel::v1::ConnectionFacts& facts) {
  facts.set_tls_version(SSL_get_version(ssl));
  facts.set_tls_cipher(SSL_get_cipher_name(ssl));
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  facts.set_sni(sni ? sni : "");
  facts.set_tls_session_resumed(SSL_session_reused(ssl) == 1);
}

HandshakeFailure ClassifyHandshakeFailure(SSL* ssl, const std::error_code& ec) {
  int lib_reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  if (lib_reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    return {Reason::kNoClientCertificate, "device sent no certificate"};
  }
  long verify = SSL_get_verify_result(ssl);
  switch (verify) {
    case X509_V_OK:
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return {Reason::kClientCertificateExpired, X509_verify_cert_error_string(verify)};
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return {Reason::kClientCertificateNotYetValid, X509_verify_cert_error_string(verify)};
    default:
      return {Reason::kUntrustedClientCertificate, X509_verify_cert_error_string(verify)};
  }
  return {Reason::kTlsHandshakeFailed, ec.message()};
}

}  // namespace orthrus::edge
