#pragma once
// CRLs on the broker: reading them (files, plain-HTTP distribution points), verifying them with
// OpenSSL against configured CA certificates, extracting the revoked serials, and deciding when to
// fetch the next one.
//
// Everything here blocks (file and network I/O, a 100 000-entry CRL parses in tens of ms): call it
// from a WorkerPool. CrlVerifier is immutable after construction and safe to share between threads.
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/revocation/revocation_set.h"
#include "common/tls/openssl_handles.h"

namespace orthrus::revocation {

struct VerifiedCrl {
  std::string der;  // exactly what was verified (its SHA-256 is data->digest)
  CrlPtr data;      // issuer, thisUpdate/nextUpdate, cRLNumber, revoked serials
};

class CrlVerifier {
 public:
  // Every certificate in the PEM bundles is a candidate signer (matched by subject name).
  static Result<CrlVerifier> FromCaFiles(const std::vector<std::string>& pem_files);
  static CrlVerifier FromCertificates(std::vector<tls::X509Ptr> cas);

  // Parses `bytes` as one or more PEM CRLs, or else as one DER CRL, and verifies every one:
  //   - its issuer is the subject of a configured CA (else errc::kCrlUnknownIssuer) whose keyUsage,
  //     if present, allows cRLSign;
  //   - its signature verifies with that CA's key (else errc::kCrlBadSignature);
  //   - it is a complete, direct CRL: delta CRLs, indirect CRLs, CRLs limited to some reasons and
  //     CRLs or entries with unknown critical extensions are refused (errc::kCrlUnsupported);
  //   - thisUpdate is present and readable; serials are at most 64 octets (errc::kCrlInvalid).
  // A CRL past its nextUpdate is *not* refused here (it is still the newest word of its CA);
  // callers see next_update and the edges apply their staleness rule. Errors name `source`.
  Result<std::vector<VerifiedCrl>> Load(std::string_view bytes, const std::string& source) const;

  // RFC 2253 text of a CA subject -> its DER, among the configured CAs (case-insensitive, ignoring
  // spaces after commas). errc::kInvalidKey when no CA or several different names match.
  Result<std::string> ResolveIssuer(std::string_view text) const;

  size_t ca_count() const { return cas_.size(); }

 private:
  Result<VerifiedCrl> VerifyOne(X509_CRL* crl, const std::string& source) const;

  std::vector<std::shared_ptr<X509>> cas_;
};

// Reads a CRL file, refusing files larger than max_bytes (errc::kCrlTooLarge).
Result<std::string> ReadCrlFile(const std::string& path, uint64_t max_bytes);

// Plain-HTTP GET of a CRL distribution point ("http://host[:port]/path"). https:// is refused
// (errc::kCrlSourceInvalid): CDPs are plain HTTP by design (RFC 5280), the CRL is signed, and an
// https fetch would need its own trust configuration. The whole exchange (connect, request,
// response) must finish within `timeout` (name resolution of a host name is not covered: use IP
// addresses or a resolver that answers); a body over max_bytes is errc::kCrlTooLarge; anything but
// a 200 response, a timeout or a connection error is errc::kCrlFetchFailed. Redirects are not
// followed.
struct HttpUrl {
  std::string host;    // without brackets
  uint16_t port = 80;
  std::string target;  // "/path?query"
};
Result<HttpUrl> ParseHttpUrl(std::string_view url);
Result<std::string> HttpGet(std::string_view url, std::chrono::milliseconds timeout, uint64_t max_bytes);

struct RefreshPolicy {
  std::chrono::seconds margin{3600};        // fetch this long before nextUpdate
  std::chrono::seconds min_interval{60};    // never sooner (also the retry delay after a failure)
  std::chrono::seconds max_interval{3600};  // never later
};
// When to fetch a source again. `crl` is the CRL in force from it (null if none); `failed` when the
// last attempt failed. The margin is capped at half the CRL's validity period, so a CRL valid for
// 10 minutes is fetched after 5, not hammered every min_interval.
std::time_t NextRefreshTime(std::time_t now, const CrlData* crl, bool failed, const RefreshPolicy& policy);

}  // namespace orthrus::revocation
