#include "common/tls/validity_skew.h"

#include <openssl/x509.h>

#include <ctime>

namespace orthrus::tls {

bool ForgiveWithinSkew(X509_STORE_CTX* store, long skew_seconds) {
  if (skew_seconds <= 0) return false;
  int error = X509_STORE_CTX_get_error(store);
  bool early = error == X509_V_ERR_CERT_NOT_YET_VALID;
  if (!early && error != X509_V_ERR_CERT_HAS_EXPIRED) return false;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (cert == nullptr) return false;
  // The verification time: the store's fixed time when one was set, else now.
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store);
  time_t when = (X509_VERIFY_PARAM_get_flags(param) & X509_V_FLAG_USE_CHECK_TIME)
                    ? X509_VERIFY_PARAM_get_time(param)
                    : time(nullptr);
  time_t shifted = early ? when + skew_seconds : when - skew_seconds;
  const ASN1_TIME* bound = early ? X509_get0_notBefore(cert) : X509_get0_notAfter(cert);
  int cmp = X509_cmp_time(bound, &shifted);  // -1: bound before shifted, 1: after, 0: error
  if (early ? cmp >= 0 : cmp <= 0) return false;
  X509_STORE_CTX_set_error(store, X509_V_OK);
  return true;
}

}  // namespace orthrus::tls
