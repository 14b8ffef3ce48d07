#pragma once
// Operator-defined requirements on a device certificate beyond "chains to a trusted CA": issuer,
// subject and SAN patterns, extended key usages, certificate policies, key type and size, validity
// span. Used for listen.restrictions now and meant to be reused for per-publishing-rule trust lists,
// so it knows nothing about config files or sessions: settings in, verdict out.
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "common/reason.h"
#include "common/result.h"

namespace orthrus::edge {

// As written by the operator; validated by CertificateRestrictions::Validate/Create.
struct RestrictionSettings {
  std::vector<std::string> allowed_issuers;  // RFC 2253 subjects of issuing CAs
  std::optional<std::string> subject_pattern;
  std::vector<std::string> san_patterns;
  std::vector<std::string> required_ekus;    // dotted OIDs or known names ("smartcardLogon")
  std::vector<std::string> required_policies;  // dotted OIDs
  std::vector<std::string> key_types;        // "rsa:2048", "ec:256", "ed25519", "ed448"
  std::optional<uint32_t> max_validity_days;
};

// One invalid setting: which field (and element of a repeated field, -1 otherwise) and why. The
// config loader turns it into "file:line: listen.restrictions.field: message".
struct RestrictionProblem {
  std::string field;
  int index = -1;
  std::string message;
};

struct RestrictionVerdict {
  Reason reason = Reason::kOk;  // kOk or kClientCertificateRestricted (kClientCertificateMalformed
                                // when the leaf cannot be parsed at all)
  // On refusal: the failed restriction first, e.g. "required_eku 1.3.6.1.4.1.311.20.2.2", then what
  // the certificate has instead.
  std::string detail;
};

class CertificateRestrictions {
 public:
  // Every problem in `settings`, so an administrator fixes them all in one round. Empty: valid.
  static std::vector<RestrictionProblem> Validate(const RestrictionSettings& settings);
  // Compiles the settings; fails (code "config_invalid_value") on the first problem Validate finds.
  static Result<CertificateRestrictions> Create(const RestrictionSettings& settings);

  // chain_der: leaf first. Only the leaf is examined; the chain was verified during the handshake.
  // Never throws; safe to call concurrently.
  RestrictionVerdict Check(const std::vector<std::string>& chain_der) const;

  bool empty() const;

 private:
  struct Pattern {
    std::string text;  // as configured, for the refusal detail
    std::regex regex;
  };
  struct Oid {
    std::string configured;  // as configured ("smartcardLogon")
    std::string dotted;      // "1.3.6.1.4.1.311.20.2.2"
  };
  struct KeyType {
    int base_type = 0;  // EVP_PKEY_RSA, EVP_PKEY_EC, ...
    int min_bits = 0;
    std::string text;
  };

  CertificateRestrictions() = default;

  std::vector<std::string> allowed_issuers_;
  std::optional<Pattern> subject_pattern_;
  std::vector<Pattern> san_patterns_;
  std::vector<Oid> required_ekus_;
  std::vector<Oid> required_policies_;
  std::vector<KeyType> key_types_;
  std::optional<uint32_t> max_validity_days_;
};

}  // namespace orthrus::edge
