#include "broker/revocation/crl_source.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/revocation/errors.h"
#include "common/revocation/keys.h"
#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"

namespace orthrus::revocation {
namespace {

using CrlHandle = std::unique_ptr<X509_CRL, tls::Deleter<X509_CRL_free>>;

int64_t ToUnix(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return -1;
  return static_cast<int64_t>(timegm(&tm));
}

// Lower-case, and no blanks after separators: "CN=CA, O=Corp" == "cn=ca,o=corp".
std::string LooseName(std::string_view text) {
  std::string out;
  bool after_sep = false;
  for (char c : text) {
    if (after_sep && c == ' ') continue;
    after_sep = (c == ',' || c == '+');
    out.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

bool KnownCrlExtension(int nid) {
  return nid == NID_crl_number || nid == NID_authority_key_identifier ||
         nid == NID_issuing_distribution_point || nid == NID_freshest_crl ||
         nid == NID_info_access;
}

}  // namespace

Result<CrlVerifier> CrlVerifier::FromCaFiles(const std::vector<std::string>& pem_files) {
  std::vector<tls::X509Ptr> all;
  for (const auto& file : pem_files) {
    ORTHRUS_ASSIGN_OR_RETURN(auto certs, tls::LoadCertificates(file));
    for (auto& c : certs) all.push_back(std::move(c));
  }
  return FromCertificates(std::move(all));
}

CrlVerifier CrlVerifier::FromCertificates(std::vector<tls::X509Ptr> cas) {
  CrlVerifier v;
  for (auto& c : cas) v.cas_.emplace_back(c.release(), X509_free);
  return v;
}

Result<std::string> CrlVerifier::ResolveIssuer(std::string_view text) const {
  std::string want = LooseName(text);
  std::string found;
  for (const auto& ca : cas_) {
    const X509_NAME* subject = X509_get_subject_name(ca.get());
    if (LooseName(NameText(subject)) != want) continue;
    std::string der = NameDer(subject);
    if (!found.empty() && found != der) {
      return Fail(errc::kInvalidKey, "issuer \"" + std::string(text) + "\" matches several CAs; give its DER");
    }
    found = std::move(der);
  }
  if (found.empty()) {
    return Fail(errc::kInvalidKey, "issuer \"" + std::string(text) + "\" is not a CA known to the broker");
  }
  return found;
}

Result<std::vector<VerifiedCrl>> CrlVerifier::Load(std::string_view bytes, const std::string& source) const {
  std::vector<CrlHandle> crls;
  ERR_clear_error();
  {
    tls::BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
    while (CrlHandle crl{PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)}) {
      crls.push_back(std::move(crl));
    }
    ERR_clear_error();
  }
  if (crls.empty()) {  // DER, as CAs publish them at their distribution points
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    CrlHandle crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(bytes.size())));
    if (crl && p != reinterpret_cast<const unsigned char*>(bytes.data()) + bytes.size()) crl.reset();
    ERR_clear_error();
    if (crl) crls.push_back(std::move(crl));
  }
  if (crls.empty()) return Fail(errc::kCrlInvalid, source + ": contains no PEM or DER CRL");
  std::vector<VerifiedCrl> out;
  for (auto& crl : crls) {
    ORTHRUS_ASSIGN_OR_RETURN(VerifiedCrl v, VerifyOne(crl.get(), source));
    out.push_back(std::move(v));
  }
  return out;
}

Result<VerifiedCrl> CrlVerifier::VerifyOne(X509_CRL* crl, const std::string& source) const {
  const X509_NAME* issuer = X509_CRL_get_issuer(crl);
  std::string issuer_der = NameDer(issuer);
  std::string issuer_text = NameText(issuer);
  bool known = false;
  bool may_sign = false;
  bool verified = false;
  for (const auto& ca : cas_) {
    if (NameDer(X509_get_subject_name(ca.get())) != issuer_der) continue;
    known = true;
    if (!(X509_get_key_usage(ca.get()) & KU_CRL_SIGN)) continue;  // UINT32_MAX without keyUsage
    may_sign = true;
    if (X509_CRL_verify(crl, X509_get0_pubkey(ca.get())) == 1) {
      verified = true;
      break;
    }
    ERR_clear_error();
  }
  if (!known) {
    return Fail(errc::kCrlUnknownIssuer, source + ": CRL issuer " + issuer_text +
                                             " is not a CA in revocation.crl_ca_file");
  }
  if (!may_sign) {
    return Fail(errc::kCrlBadSignature, source + ": the CA " + issuer_text +
                                            " is not allowed to sign CRLs (keyUsage lacks cRLSign)");
  }
  if (!verified) {
    // A forged or corrupted CRL must not be able to un-revoke anything, nor revoke everybody.
    return Fail(errc::kCrlBadSignature, source + ": CRL signature does not verify with the key of " +
                                            issuer_text);
  }

  // Only complete, direct CRLs: anything else would make "not on the CRL" mean "not revoked"
  // when it does not.
  for (int i = 0; i < X509_CRL_get_ext_count(crl); ++i) {
    X509_EXTENSION* ext = X509_CRL_get_ext(crl, i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    if (nid == NID_delta_crl) {
      return Fail(errc::kCrlUnsupported, source + ": delta CRLs are not supported (" + issuer_text + ")");
    }
    if (X509_EXTENSION_get_critical(ext) && !KnownCrlExtension(nid)) {
      return Fail(errc::kCrlUnsupported, source + ": CRL of " + issuer_text +
                                             " has an unknown critical extension");
    }
  }
  int crit = 0;
  std::unique_ptr<ISSUING_DIST_POINT, tls::Deleter<ISSUING_DIST_POINT_free>> idp(
      static_cast<ISSUING_DIST_POINT*>(X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &crit, nullptr)));
  if (idp && (idp->indirectCRL || idp->onlysomereasons != nullptr)) {
    return Fail(errc::kCrlUnsupported, source + ": CRL of " + issuer_text +
                                           " is indirect or limited to some reasons; not supported");
  }

  auto data = std::make_shared<CrlData>();
  data->issuer_der = std::move(issuer_der);
  data->issuer = std::move(issuer_text);
  data->this_update = ToUnix(X509_CRL_get0_lastUpdate(crl));
  if (data->this_update < 0) return Fail(errc::kCrlInvalid, source + ": CRL thisUpdate is unreadable");
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
  data->next_update = next == nullptr ? 0 : ToUnix(next);
  if (data->next_update < 0) return Fail(errc::kCrlInvalid, source + ": CRL nextUpdate is unreadable");
  std::unique_ptr<ASN1_INTEGER, tls::Deleter<ASN1_INTEGER_free>> number(
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, nullptr)));
  if (number) data->crl_number = SerialFromAsn1(number.get());
  ERR_clear_error();

  // Extraction: the serials are already decoded by d2i; we copy their content octets into one
  // packed buffer (no BIGNUM, no hex, no per-serial allocation).
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  int n = revoked == nullptr ? 0 : sk_X509_REVOKED_num(revoked);
  std::string packed;
  packed.reserve(static_cast<size_t>(n) * 21);
  for (int i = 0; i < n; ++i) {
    const X509_REVOKED* r = sk_X509_REVOKED_value(revoked, i);
    const STACK_OF(X509_EXTENSION)* exts = X509_REVOKED_get0_extensions(r);
    for (int j = 0; exts != nullptr && j < sk_X509_EXTENSION_num(exts); ++j) {
      X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, j);
      if (X509_EXTENSION_get_critical(ext)) {  // certificateIssuer (indirect) or unknown
        return Fail(errc::kCrlUnsupported, source + ": CRL of " + data->issuer +
                                               " has an entry with a critical extension");
      }
    }
    std::string serial = SerialFromAsn1(X509_REVOKED_get0_serialNumber(r));
    if (serial.size() > kMaxSerialBytes) {
      return Fail(errc::kCrlInvalid, source + ": CRL of " + data->issuer + " lists a serial longer than " +
                                         std::to_string(kMaxSerialBytes) + " octets");
    }
    AppendPacked(packed, serial);
  }
  ORTHRUS_ASSIGN_OR_RETURN(data->serials, SerialSet::FromPacked(std::move(packed)));

  VerifiedCrl out;
  unsigned char* der = nullptr;
  int len = i2d_X509_CRL(crl, &der);
  if (len <= 0) return Fail(errc::kCrlInvalid, source + ": CRL cannot be re-encoded");
  out.der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  data->digest = tls::Sha256(out.der);
  out.data = std::move(data);
  return out;
}

Result<std::string> ReadCrlFile(const std::string& path, uint64_t max_bytes) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    return Fail(errc::kCrlFetchFailed, "cannot read " + path + ": " + std::strerror(errno));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return Fail(errc::kCrlTooLarge, path + ": " + std::to_string(st.st_size) + " bytes, more than the " +
                                        std::to_string(max_bytes) + " allowed");
  }
  auto text = tls::ReadFile(path);
  if (!text) return Fail(errc::kCrlFetchFailed, text.error().detail);
  return std::move(*text);
}

std::time_t NextRefreshTime(std::time_t now, const CrlData* crl, bool failed, const RefreshPolicy& policy) {
  std::time_t earliest = now + policy.min_interval.count();
  std::time_t latest = now + std::max(policy.max_interval.count(), policy.min_interval.count());
  if (failed || crl == nullptr) return earliest;
  if (crl->next_update == 0) return latest;
  int64_t margin = policy.margin.count();
  if (crl->next_update > crl->this_update) margin = std::min<int64_t>(margin, (crl->next_update - crl->this_update) / 2);
  std::time_t t = static_cast<std::time_t>(crl->next_update - margin);
  return std::clamp(t, earliest, latest);
}

}  // namespace orthrus::revocation
