#pragma once
// Turns a completed device TLS handshake into the facts the broker receives, and a failed one into a
// specific reason code.
#include <openssl/ssl.h>

#include <string>
#include <system_error>
#include <vector>

#include "common/reason.h"
#include "common/result.h"
#include "common/revocation/keys.h"
#include "orthrus/tunnel/v1/tunnel.pb.h"

namespace orthrus::edge {

// Identity of the verified peer certificate, chain included (leaf first).
Result<tunnel::v1::ClientIdentity> IdentityFromHandshake(SSL* ssl);

void FillConnectionFacts(SSL* ssl, tunnel::v1::ConnectionFacts& facts);

// What pushed revocations are looked up by, for each certificate of the peer's chain except the
// trust anchor (computed once per connection from the parsed chain: cheap per request).
Result<std::vector<revocation::CertKeys>> ChainRevocationKeys(SSL* ssl);

struct HandshakeFailure {
  Reason reason;
  std::string detail;
};
HandshakeFailure ClassifyHandshakeFailure(SSL* ssl, const std::error_code& ec);

}  // namespace orthrus::edge
