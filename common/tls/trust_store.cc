#include "common/tls/trust_store.h"

#include <openssl/err.h>

#include "common/tls/pem_files.h"
#include "common/tls/validity_skew.h"

namespace orthrus::tls {
namespace {

X509Ptr ParseDer(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert && p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) cert.reset();
  return cert;
}

}  // namespace

Result<TrustStore> TrustStore::FromPemFile(const std::string& path) {
  ORTHRUS_ASSIGN_OR_RETURN(auto certs, LoadCertificates(path));
  std::shared_ptr<X509_STORE> store(X509_STORE_new(), X509_STORE_free);
  for (auto& cert : certs) {
    if (X509_STORE_add_cert(store.get(), cert.get()) != 1) {
      return Fail("pem_invalid", path + ": cannot add certificate to trust store: " + DrainErrors());
    }
  }
  TrustStore out;
  out.store_ = std::move(store);
  return out;
}

namespace {

int SkewIndex() {
  static const int index = X509_STORE_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

Status TrustStore::VerifyClientChain(const std::vector<std::string>& chain_der, std::time_t now,
                                     long skew_seconds) const {
  if (chain_der.empty()) return Fail("identity_untrusted", "no certificate chain was forwarded");
  X509Ptr leaf = ParseDer(chain_der.front());
  if (!leaf) return Fail("identity_untrusted", "forwarded leaf certificate is not valid DER");
  X509StackPtr untrusted(sk_X509_new_null());
  for (size_t i = 1; i < chain_der.size(); ++i) {
    X509Ptr cert = ParseDer(chain_der[i]);
    if (!cert) return Fail("identity_untrusted", "forwarded chain element is not valid DER");
    sk_X509_push(untrusted.get(), cert.release());
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), leaf.get(), untrusted.get()) != 1) {
    return Fail("internal_error", "cannot initialise chain verification: " + DrainErrors());
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, now);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (skew_seconds > 0) {
    X509_STORE_CTX_set_ex_data(ctx.get(), SkewIndex(), &skew_seconds);
    X509_STORE_CTX_set_verify_cb(ctx.get(), [](int ok, X509_STORE_CTX* store) -> int {
      if (ok) return ok;
      auto* skew = static_cast<long*>(X509_STORE_CTX_get_ex_data(store, SkewIndex()));
      return skew != nullptr && ForgiveWithinSkew(store, *skew) ? 1 : 0;
    });
  }
  int err = X509_verify_cert(ctx.get()) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (err != X509_V_OK) {
    return Fail("identity_untrusted", std::string("device chain does not verify: ") +
                                          X509_verify_cert_error_string(err));
  }
  return {};
}

}  // namespace orthrus::tls
