#include "edge/connection_identity.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <string>
#include <string_view>

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

Result<std::vector<revocation::CertKeys>> ChainRevocationKeys(SSL* ssl) {
  std::vector<revocation::CertKeys> out;
  auto add = [&out](X509* cert) -> Status {
    ORTHRUS_ASSIGN_OR_RETURN(revocation::CertKeys keys, revocation::KeysFromCertificate(cert));
    out.push_back(std::move(keys));
    return {};
  };
  STACK_OF(X509)* chain = SSL_get0_verified_chain(ssl);
  if (chain != nullptr && sk_X509_num(chain) > 0) {
    // The anchor itself is not revocable by its own CRL, as in RevocationStore::Check.
    int n = sk_X509_num(chain);
    for (int i = 0; i < (n > 1 ? n - 1 : 1); ++i) ORTHRUS_TRY(add(sk_X509_value(chain, i)));
    return out;
  }
  // Resumed session: the peer's own chain, as IdentityFromHandshake uses it.
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return out;
  ORTHRUS_TRY(add(leaf));
  STACK_OF(X509)* peer_chain = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; peer_chain != nullptr && i < sk_X509_num(peer_chain); ++i) {
    ORTHRUS_TRY(add(sk_X509_value(peer_chain, i)));
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

namespace {

// Only errors from Asio's OpenSSL category carry a packed OpenSSL error code (ERR_get_error()).
// A Beast/Boost error code arrives here through std::error_code's wrapper category, which keeps
// the original category name.
bool IsOpenSslError(const std::error_code& ec) {
  return ec && std::string_view(ec.category().name()) == "asio.ssl";
}

std::string VerifyDetail(long verify) {
  return "X509 verify error " + std::to_string(verify) + ": " + X509_verify_cert_error_string(verify);
}

// The first verification error OpenSSL recorded for the peer chain, as a reason code. OpenSSL stops
// at the first error, so a certificate with several defects gets the reason of the first check.
Reason ReasonForVerifyError(long verify) {
  switch (verify) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return Reason::kClientCertificateExpired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return Reason::kClientCertificateNotYetValid;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      // The leaf itself is self-signed (and not a trust anchor).
      return Reason::kClientCertificateSelfSigned;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      // A leaf issued by a CA we do not trust, sent together with that CA's root: the leaf is
      // not self-signed, the chain just ends in a foreign anchor.
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
      return Reason::kUntrustedClientCertificate;
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
      return Reason::kClientCertificateWrongPurpose;
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
      return Reason::kClientCertificateWeakKey;
    case X509_V_ERR_CA_MD_TOO_WEAK:  // despite the name: any certificate's signature digest
      return Reason::kClientCertificateWeakSignature;
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      return Reason::kClientCertificateChainTooDeep;
    case X509_V_ERR_PERMITTED_VIOLATION:
    case X509_V_ERR_EXCLUDED_VIOLATION:
    case X509_V_ERR_SUBTREE_MINMAX:
    case X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE:
    case X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX:
    case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
      return Reason::kClientCertificateNameConstraints;
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
      return Reason::kClientCertificateUnknownCriticalExtension;
    case X509_V_ERR_CERT_REVOKED:
      return Reason::kClientCertificateRevoked;
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return Reason::kCrlStale;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return Reason::kCrlMissing;
    default:
      return Reason::kUntrustedClientCertificate;
  }
}

}  // namespace

HandshakeFailure ClassifyHandshakeFailure(SSL* ssl, const std::error_code& ec) {
  unsigned long packed = IsOpenSslError(ec) ? static_cast<unsigned long>(ec.value()) : 0;
  int ssl_reason = ERR_GET_LIB(packed) == ERR_LIB_SSL ? ERR_GET_REASON(packed) : 0;
  if (ssl_reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    return {Reason::kNoClientCertificate, "device sent no certificate"};
  }
  // A failed chain verification is the root cause even though the handshake error only says
  // "certificate verify failed".
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) return {ReasonForVerifyError(verify), VerifyDetail(verify)};
  if (ssl_reason == SSL_R_EXCESSIVE_MESSAGE_SIZE) {
    // The only handshake message a device sends that can grow this large is Certificate; its limit
    // is SSL_CTX_set_max_cert_list (set in tls_listener.cc).
    return {Reason::kClientCertificateTooLarge,
            "certificate message exceeds " + std::to_string(SSL_get_max_cert_list(ssl)) + " bytes"};
  }
  return {Reason::kTlsHandshakeFailed, ec.message()};
}

}  // namespace orthrus::edge
