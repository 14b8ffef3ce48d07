#pragma once
// Certificate validity with a clock-skew allowance, for OpenSSL verify callbacks: the edge's device
// handshake and the broker's re-verification forgive the same thing, and only that.
#include <openssl/x509_vfy.h>

namespace orthrus::tls {

// Inside a verify callback that got ok == 0: true (and the store's error cleared) when the failure
// is "not yet valid" or "expired" for the current certificate by at most skew_seconds. Other
// certificates in the chain are judged on their own.
bool ForgiveWithinSkew(X509_STORE_CTX* store, long skew_seconds);

}  // namespace orthrus::tls
