#include "edge/certificate_restrictions.h"

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>
#include <utility>

#include "common/tls/openssl_handles.h"
#include "common/tls/x509_identity.h"

namespace orthrus::edge {
namespace {

// libstdc++'s regex executor recurses once per input character, so a huge value could exhaust the
// stack of an event-loop thread. Real subjects and SANs are far shorter; longer values never match.
constexpr size_t kMaxMatchedLength = 4096;

struct NamedOid {
  std::string_view name;
  std::string_view dotted;
};
constexpr std::array<NamedOid, 7> kEkuNames = {{
    {"serverAuth", "1.3.6.1.5.5.7.3.1"},
    {"clientAuth", "1.3.6.1.5.5.7.3.2"},
    {"codeSigning", "1.3.6.1.5.5.7.3.3"},
    {"emailProtection", "1.3.6.1.5.5.7.3.4"},
    {"timeStamping", "1.3.6.1.5.5.7.3.8"},
    {"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
    {"smartcardLogon", "1.3.6.1.4.1.311.20.2.2"},
}};

std::string ObjectText(const ASN1_OBJECT* obj) {
  char buf[128];
  int n = OBJ_obj2txt(buf, sizeof buf, obj, /*no_name=*/1);
  if (n <= 0) return {};
  return std::string(buf, std::min(static_cast<size_t>(n), sizeof buf - 1));
}

// A dotted OID in canonical form (what OBJ_obj2txt prints), or nothing. OBJ_txt2obj alone would
// also accept names such as "clientAuth", which must not pass as a policy OID.
std::optional<std::string> CanonicalOid(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos ||
      text.find('.') == std::string::npos || text.front() == '.' || text.back() == '.' ||
      text.find("..") != std::string::npos || text.front() > '2') {
    return std::nullopt;
  }
  ASN1_OBJECT* obj = OBJ_txt2obj(text.c_str(), /*no_name=*/1);
  if (obj == nullptr) {
    tls::DrainErrors();
    return std::nullopt;
  }
  std::string out = ObjectText(obj);
  ASN1_OBJECT_free(obj);
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<std::string> EkuOid(const std::string& text) {
  for (const auto& n : kEkuNames) {
    if (text == n.name) return std::string(n.dotted);
  }
  return CanonicalOid(text);
}

struct ParsedKeyType {
  int base_type;
  int min_bits;
};

std::optional<ParsedKeyType> ParseKeyType(const std::string& text, std::string& why) {
  std::string_view algo = text;
  std::string_view bits;
  if (auto colon = algo.find(':'); colon != std::string_view::npos) {
    bits = algo.substr(colon + 1);
    algo = algo.substr(0, colon);
  }
  int base = 0;
  if (algo == "rsa") {
    base = EVP_PKEY_RSA;
  } else if (algo == "ec") {
    base = EVP_PKEY_EC;
  } else if (algo == "ed25519") {
    base = EVP_PKEY_ED25519;
  } else if (algo == "ed448") {
    base = EVP_PKEY_ED448;
  } else {
    why = "unknown key algorithm '" + std::string(algo) +
          "'; use rsa:<bits>, ec:<bits>, ed25519 or ed448";
    return std::nullopt;
  }
  int min_bits = 0;
  if (text.find(':') != std::string::npos) {
    if (base == EVP_PKEY_ED25519 || base == EVP_PKEY_ED448) {
      why = std::string(algo) + " has a fixed size; write it without ':<bits>'";
      return std::nullopt;
    }
    auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), min_bits);
    if (ec != std::errc() || end != bits.data() + bits.size() || min_bits <= 0 ||
        min_bits > 16384) {
      why = "minimum bits '" + std::string(bits) + "' must be a number between 1 and 16384";
      return std::nullopt;
    }
  }
  return ParsedKeyType{base, min_bits};
}

std::string KeyDescription(int base, int bits) {
  switch (base) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return "rsa:" + std::to_string(bits);
    case EVP_PKEY_EC:
      return "ec:" + std::to_string(bits);
    case EVP_PKEY_ED25519:
      return "ed25519";
    case EVP_PKEY_ED448:
      return "ed448";
    default:
      return std::string(OBJ_nid2sn(base)) + ":" + std::to_string(bits);
  }
}

bool FullMatch(const std::regex& regex, const std::string& value) {
  return value.size() <= kMaxMatchedLength && std::regex_match(value, regex);
}

std::string JoinList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += items[i];
  }
  return out + "]";
}

RestrictionVerdict Refuse(std::string detail) {
  return {Reason::kClientCertificateRestricted, std::move(detail)};
}

// The extendedKeyUsage OIDs, dotted; `present` tells an absent extension (reported as such in the
// refusal detail) from one that lacks the usage.
std::vector<std::string> ExtendedKeyUsages(X509* cert, bool& present) {
  std::vector<std::string> out;
  int crit = 0;
  auto* eku = static_cast<EXTENDED_KEY_USAGE*>(
      X509_get_ext_d2i(cert, NID_ext_key_usage, &crit, nullptr));
  present = eku != nullptr;
  if (eku == nullptr) return out;
  for (int i = 0; i < sk_ASN1_OBJECT_num(eku); ++i) {
    out.push_back(ObjectText(sk_ASN1_OBJECT_value(eku, i)));
  }
  EXTENDED_KEY_USAGE_free(eku);
  return out;
}

// The certificatePolicies OIDs, dotted; `present` as above.
std::vector<std::string> CertificatePolicies(X509* cert, bool& present) {
  std::vector<std::string> out;
  int crit = 0;
  auto* policies = static_cast<CERTIFICATEPOLICIES*>(
      X509_get_ext_d2i(cert, NID_certificate_policies, &crit, nullptr));
  present = policies != nullptr;
  if (policies == nullptr) return out;
  for (int i = 0; i < sk_POLICYINFO_num(policies); ++i) {
    out.push_back(ObjectText(sk_POLICYINFO_value(policies, i)->policyid));
  }
  CERTIFICATEPOLICIES_free(policies);
  return out;
}

}  // namespace

std::vector<RestrictionProblem> CertificateRestrictions::Validate(const RestrictionSettings& s) {
  std::vector<RestrictionProblem> problems;
  auto check_regex = [&](const std::string& field, int index, const std::string& text) {
    if (text.empty()) {
      problems.push_back({field, index, "must not be empty"});
      return;
    }
    // The only place a regex_error can arise: construction. Matching a compiled pattern does not
    // throw, so the request path stays exception-free.
    try {
      std::regex compiled(text, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      problems.push_back({field, index, "invalid regular expression '" + text + "': " + e.what()});
    }
  };
  for (size_t i = 0; i < s.allowed_issuers.size(); ++i) {
    if (s.allowed_issuers[i].empty()) {
      problems.push_back({"allowed_issuer", static_cast<int>(i), "must not be empty"});
    }
  }
  if (s.subject_pattern) check_regex("subject_pattern", -1, *s.subject_pattern);
  for (size_t i = 0; i < s.san_patterns.size(); ++i) {
    check_regex("san_pattern", static_cast<int>(i), s.san_patterns[i]);
  }
  for (size_t i = 0; i < s.required_ekus.size(); ++i) {
    if (!EkuOid(s.required_ekus[i])) {
      problems.push_back({"required_eku", static_cast<int>(i),
                          "'" + s.required_ekus[i] +
                              "' is neither a dotted OID nor one of serverAuth, clientAuth, "
                              "codeSigning, emailProtection, timeStamping, OCSPSigning, "
                              "smartcardLogon"});
    }
  }
  for (size_t i = 0; i < s.required_policies.size(); ++i) {
    if (!CanonicalOid(s.required_policies[i])) {
      problems.push_back({"required_policy", static_cast<int>(i),
                          "'" + s.required_policies[i] + "' is not a dotted OID"});
    }
  }
  for (size_t i = 0; i < s.key_types.size(); ++i) {
    std::string why;
    if (!ParseKeyType(s.key_types[i], why)) {
      problems.push_back({"key_type", static_cast<int>(i), why});
    }
  }
  if (s.max_validity_days && *s.max_validity_days == 0) {
    problems.push_back({"max_validity_days", -1, "must be greater than 0"});
  }
  return problems;
}

Result<CertificateRestrictions> CertificateRestrictions::Create(const RestrictionSettings& s) {
  if (auto problems = Validate(s); !problems.empty()) {
    const auto& p = problems.front();
    std::string where = p.field + (p.index >= 0 ? "[" + std::to_string(p.index) + "]" : "");
    return Fail("config_invalid_value", where + ": " + p.message);
  }
  CertificateRestrictions r;
  r.allowed_issuers_ = s.allowed_issuers;
  // Validate compiled every pattern once already, so these constructions cannot throw.
  if (s.subject_pattern) {
    r.subject_pattern_ = Pattern{*s.subject_pattern, std::regex(*s.subject_pattern)};
  }
  for (const auto& p : s.san_patterns) r.san_patterns_.push_back({p, std::regex(p)});
  for (const auto& e : s.required_ekus) r.required_ekus_.push_back({e, *EkuOid(e)});
  for (const auto& p : s.required_policies) r.required_policies_.push_back({p, *CanonicalOid(p)});
  for (const auto& k : s.key_types) {
    std::string why;
    auto parsed = ParseKeyType(k, why);
    r.key_types_.push_back({parsed->base_type, parsed->min_bits, k});
  }
  r.max_validity_days_ = s.max_validity_days;
  return r;
}

bool CertificateRestrictions::empty() const {
  return allowed_issuers_.empty() && !subject_pattern_ && san_patterns_.empty() &&
         required_ekus_.empty() && required_policies_.empty() && key_types_.empty() &&
         !max_validity_days_;
}

RestrictionVerdict CertificateRestrictions::Check(const std::vector<std::string>& chain_der) const {
  if (chain_der.empty()) return {Reason::kClientCertificateMalformed, "no certificate to check"};
  const std::string& der = chain_der.front();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  tls::X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    tls::DrainErrors();
    return {Reason::kClientCertificateMalformed, "leaf is not a single DER certificate"};
  }
  auto id = tls::ExtractIdentity(cert.get());
  if (!id) return {Reason::kClientCertificateMalformed, id.error().detail};

  if (!allowed_issuers_.empty() &&
      std::find(allowed_issuers_.begin(), allowed_issuers_.end(), id->issuer) ==
          allowed_issuers_.end()) {
    return Refuse("allowed_issuer: issuer '" + id->issuer + "' is not listed");
  }
  if (subject_pattern_ && !FullMatch(subject_pattern_->regex, id->subject)) {
    return Refuse("subject_pattern '" + subject_pattern_->text + "': subject '" + id->subject +
                  "' does not match");
  }
  if (!san_patterns_.empty()) {
    std::vector<std::string> sans;
    for (const auto* list : {&id->upn, &id->rfc822, &id->dns, &id->uri}) {
      sans.insert(sans.end(), list->begin(), list->end());
    }
    for (const auto& pattern : san_patterns_) {
      bool matched = std::any_of(sans.begin(), sans.end(), [&](const std::string& san) {
        return FullMatch(pattern.regex, san);
      });
      if (!matched) {
        return Refuse("san_pattern '" + pattern.text + "': no SAN matches; SANs " +
                      JoinList(sans));
      }
    }
  }
  if (!required_ekus_.empty()) {
    bool present = false;
    auto ekus = ExtendedKeyUsages(cert.get(), present);
    for (const auto& need : required_ekus_) {
      if (std::find(ekus.begin(), ekus.end(), need.dotted) == ekus.end()) {
        std::string name = need.configured != need.dotted ? " (" + need.configured + ")" : "";
        return Refuse("required_eku " + need.dotted + name + ": " +
                      (present ? "extendedKeyUsage is " + JoinList(ekus)
                               : std::string("no extendedKeyUsage extension")));
      }
    }
  }
  if (!required_policies_.empty()) {
    bool present = false;
    auto policies = CertificatePolicies(cert.get(), present);
    for (const auto& need : required_policies_) {
      // anyPolicy in the leaf does not stand in for a specific policy: the operator asked for one.
      if (std::find(policies.begin(), policies.end(), need.dotted) == policies.end()) {
        return Refuse("required_policy " + need.dotted + ": " +
                      (present ? "certificatePolicies is " + JoinList(policies)
                               : std::string("no certificatePolicies extension")));
      }
    }
  }
  if (!key_types_.empty()) {
    EVP_PKEY* key = X509_get0_pubkey(cert.get());
    if (key == nullptr) {
      tls::DrainErrors();
      return Refuse("key_type: the public key cannot be read");
    }
    int base = EVP_PKEY_get_base_id(key);
    int bits = EVP_PKEY_get_bits(key);
    bool allowed = std::any_of(key_types_.begin(), key_types_.end(), [&](const KeyType& k) {
      bool same = k.base_type == base || (k.base_type == EVP_PKEY_RSA && base == EVP_PKEY_RSA_PSS);
      return same && bits >= k.min_bits;
    });
    if (!allowed) {
      std::vector<std::string> listed;
      for (const auto& k : key_types_) listed.push_back(k.text);
      return Refuse("key_type " + JoinList(listed) + ": key is " + KeyDescription(base, bits));
    }
  }
  if (max_validity_days_) {
    int days = 0;
    int secs = 0;
    if (ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert.get()),
                       X509_get0_notAfter(cert.get())) != 1) {
      tls::DrainErrors();
      return Refuse("max_validity_days: validity period cannot be read");
    }
    if (days > static_cast<int64_t>(*max_validity_days_) ||
        (days == static_cast<int64_t>(*max_validity_days_) && secs > 0)) {
      return Refuse("max_validity_days " + std::to_string(*max_validity_days_) +
                    ": certificate is valid for " + std::to_string(days) + " days");
    }
  }
  return {};
}

}  // namespace orthrus::edge
