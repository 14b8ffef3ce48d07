#pragma once
// A set of trust anchors and the verification of a presented chain against it. Used by the broker to
// re-verify the device chain the edge forwards: the broker never takes the edge's word for it.
#include <ctime>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/tls/openssl_handles.h"

namespace orthrus::tls {

class TrustStore {
 public:
  static Result<TrustStore> FromPemFile(const std::string& path);

  // chain_der: leaf first, then intermediates (extra certificates are allowed and ignored if unused).
  // Verifies signatures, validity at `now` and the client-authentication purpose. A chain that is
  // not valid yet, or no longer, by at most `skew_seconds` is accepted (the edge's
  // listen.clock_skew_seconds, applied again here).
  Status VerifyClientChain(const std::vector<std::string>& chain_der, std::time_t now,
                           long skew_seconds = 0) const;

 private:
  std::shared_ptr<X509_STORE> store_;
};

}  // namespace orthrus::tls
