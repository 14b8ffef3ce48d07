// listen.restrictions: the engine against real certificates (the build-time test PKI plus ones made
// here with the openssl CLI), and the config loader's file:line: key errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"
#include "edge/certificate_restrictions.h"
#include "edge/edge_config.h"
#include "test_files.h"

namespace orthrus {
namespace {

using edge::CertificateRestrictions;
using edge::RestrictionSettings;
using edge::RestrictionVerdict;
using testing::Pki;
using testing::TempDir;

constexpr const char* kDeviceCa = "CN=Orthrus Test Device CA,O=Orthrus Test";
constexpr const char* kSmartcardLogon = "1.3.6.1.4.1.311.20.2.2";

std::vector<std::string> ChainOf(const std::string& pem_path) {
  auto certs = tls::LoadCertificates(pem_path);
  EXPECT_TRUE(certs) << (certs ? "" : certs.error().detail);
  std::vector<std::string> chain;
  if (!certs) return chain;
  for (auto& c : *certs) chain.push_back(*tls::ToDer(c.get()));
  return chain;
}

// Certificates the build-time PKI lacks, issued by the same device CA.
class RestrictionsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // EC P-256, smartcardLogon next to clientAuth (the TLS purpose check still needs clientAuth),
    // a policy OID, a DNS SAN, 30 days of validity.
    Issue("smartcard", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/O=Corp/CN=sc-device-1", 30,
          "extendedKeyUsage=clientAuth,1.3.6.1.4.1.311.20.2.2\n"
          "certificatePolicies=1.3.6.1.4.1.99999.1.2\n"
          "subjectAltName=DNS:dev1.corp.test,email:sc@corp.test\n");
    // A second policy and no EKU extension at all.
    Issue("no-eku", "-newkey rsa:3072", "/O=Corp/CN=no-eku", 400,
          "certificatePolicies=1.3.6.1.4.1.99999.7\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static void Issue(const std::string& name, const std::string& newkey, const std::string& subject,
                    int days, const std::string& extensions) {
    std::string ext = dir_->Write(name + ".ext", "basicConstraints=CA:FALSE\n" + extensions);
    std::string base = dir_->path() + "/" + name;
    std::string cmd = "openssl req " + newkey + " -nodes -keyout " + base + ".key -out " + base +
                      ".csr -subj '" + subject + "' 2>/dev/null && openssl x509 -req -in " + base +
                      ".csr -CA " + Pki("device-ca.pem") + " -CAkey " + Pki("device-ca.key") +
                      " -set_serial 0x5c" + std::to_string(days) + " -days " +
                      std::to_string(days) + " -sha256 -extfile " + ext + " -out " + base +
                      ".pem 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static std::string Made(const std::string& name) { return dir_->path() + "/" + name + ".pem"; }

  static RestrictionVerdict Check(const RestrictionSettings& s, const std::string& pem_path) {
    auto r = CertificateRestrictions::Create(s);
    EXPECT_TRUE(r) << (r ? "" : r.error().detail);
    if (!r) return {Reason::kInternalError, "not created"};
    return r->Check(ChainOf(pem_path));
  }
  static void ExpectPass(const RestrictionSettings& s, const std::string& pem_path) {
    auto v = Check(s, pem_path);
    EXPECT_EQ(v.reason, Reason::kOk) << pem_path << ": " << v.detail;
  }
  // The refusal must name the restriction that failed, at the start of the detail.
  static void ExpectRefused(const RestrictionSettings& s, const std::string& pem_path,
                            const std::string& names) {
    auto v = Check(s, pem_path);
    EXPECT_EQ(v.reason, Reason::kClientCertificateRestricted) << pem_path;
    EXPECT_EQ(v.detail.rfind(names, 0), 0u) << "detail: " << v.detail;
  }

  static TempDir* dir_;
};
TempDir* RestrictionsTest::dir_ = nullptr;

TEST_F(RestrictionsTest, EmptyRestrictionsAcceptEverything) {
  auto r = CertificateRestrictions::Create({});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(r->Check(ChainOf(Pki("alice.pem"))).reason, Reason::kOk);
  EXPECT_EQ(r->Check(ChainOf(Made("smartcard"))).reason, Reason::kOk);
}

TEST_F(RestrictionsTest, AllowedIssuer) {
  RestrictionSettings s;
  s.allowed_issuers = {"CN=Other CA,O=Corp", kDeviceCa};
  ExpectPass(s, Pki("alice.pem"));
  s.allowed_issuers = {"CN=Other CA,O=Corp"};
  ExpectRefused(s, Pki("alice.pem"), "allowed_issuer");
  // Compared as printed, not as a substring or prefix.
  s.allowed_issuers = {"CN=Orthrus Test Device CA"};
  ExpectRefused(s, Pki("alice.pem"), "allowed_issuer");
}

TEST_F(RestrictionsTest, SubjectPatternMustMatchWholeSubject) {
  RestrictionSettings s;
  s.subject_pattern = "CN=[a-z]+,O=Corp";
  ExpectPass(s, Pki("alice.pem"));
  ExpectRefused(s, Made("smartcard"), "subject_pattern 'CN=[a-z]+,O=Corp'");
  s.subject_pattern = "CN=ali";  // a prefix is not a match
  ExpectRefused(s, Pki("alice.pem"), "subject_pattern");
}

TEST_F(RestrictionsTest, EverySanPatternNeedsOneMatchingSan) {
  RestrictionSettings s;
  s.san_patterns = {".*@corp\\.test"};
  ExpectPass(s, Pki("alice.pem"));      // UPN and e-mail
  ExpectPass(s, Made("smartcard"));     // e-mail
  s.san_patterns = {".*@corp\\.test", "[a-z0-9]+\\.corp\\.test"};
  ExpectPass(s, Made("smartcard"));     // e-mail and DNS
  ExpectRefused(s, Pki("alice.pem"), "san_pattern '[a-z0-9]+\\.corp\\.test'");
  ExpectRefused(s, Pki("bob.pem"), "san_pattern '.*@corp\\.test'");  // bob has no SANs
}

TEST_F(RestrictionsTest, RequiredEkuByNameOrOid) {
  RestrictionSettings s;
  s.required_ekus = {"clientAuth"};
  ExpectPass(s, Pki("alice.pem"));
  s.required_ekus = {"smartcardLogon"};
  ExpectPass(s, Made("smartcard"));
  ExpectRefused(s, Pki("alice.pem"), std::string("required_eku ") + kSmartcardLogon);
  ExpectRefused(s, Made("no-eku"), std::string("required_eku ") + kSmartcardLogon);
  s.required_ekus = {"clientAuth", kSmartcardLogon};
  ExpectPass(s, Made("smartcard"));
}

TEST_F(RestrictionsTest, RequiredPolicy) {
  RestrictionSettings s;
  s.required_policies = {"1.3.6.1.4.1.99999.1.2"};
  ExpectPass(s, Made("smartcard"));
  ExpectRefused(s, Made("no-eku"), "required_policy 1.3.6.1.4.1.99999.1.2");
  ExpectRefused(s, Pki("alice.pem"), "required_policy 1.3.6.1.4.1.99999.1.2");
}

TEST_F(RestrictionsTest, KeyTypeWithMinimumBits) {
  RestrictionSettings s;
  s.key_types = {"rsa:2048"};
  ExpectPass(s, Pki("alice.pem"));
  ExpectRefused(s, Made("smartcard"), "key_type [rsa:2048]");
  s.key_types = {"rsa:3072", "ec:256"};
  ExpectPass(s, Made("smartcard"));
  ExpectPass(s, Made("no-eku"));  // RSA-3072
  ExpectRefused(s, Pki("alice.pem"), "key_type [rsa:3072, ec:256]");
  s.key_types = {"ec:384"};
  ExpectRefused(s, Made("smartcard"), "key_type [ec:384]");
}

TEST_F(RestrictionsTest, MaxValidityDays) {
  RestrictionSettings s;
  s.max_validity_days = 30;
  ExpectPass(s, Made("smartcard"));
  ExpectRefused(s, Pki("alice.pem"), "max_validity_days 30");  // 825 days
  s.max_validity_days = 825;
  ExpectPass(s, Pki("alice.pem"));
}

TEST_F(RestrictionsTest, FirstFailedRestrictionIsNamedWhenSeveralApply) {
  RestrictionSettings s;
  s.allowed_issuers = {kDeviceCa};
  s.subject_pattern = "CN=.*,O=Corp";
  s.required_ekus = {"smartcardLogon"};
  s.key_types = {"ec:256"};
  ExpectPass(s, Made("smartcard"));
  ExpectRefused(s, Pki("alice.pem"), "required_eku");
}

TEST_F(RestrictionsTest, UnparsableLeafIsMalformedNotRestricted) {
  auto r = CertificateRestrictions::Create({});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->Check({"not DER"}).reason, Reason::kClientCertificateMalformed);
  EXPECT_EQ(r->Check({}).reason, Reason::kClientCertificateMalformed);
}

TEST(RestrictionSettings, InvalidValuesAreAllReported) {
  RestrictionSettings s;
  s.allowed_issuers = {""};
  s.subject_pattern = "CN=(unclosed";
  s.san_patterns = {"ok", "[z-a]"};
  s.required_ekus = {"clientAuth", "smartcardlogon", "1.2.x"};
  s.required_policies = {"1.2.3", "clientAuth", "9.1"};
  s.key_types = {"rsa:2048", "dsa:2048", "ec:big", "ed25519:256", "ed25519"};
  s.max_validity_days = 0;
  auto problems = CertificateRestrictions::Validate(s);
  std::vector<std::string> where;
  for (const auto& p : problems) where.push_back(p.field + "[" + std::to_string(p.index) + "]");
  EXPECT_EQ(where, (std::vector<std::string>{
                       "allowed_issuer[0]", "subject_pattern[-1]", "san_pattern[1]",
                       "required_eku[1]", "required_eku[2]", "required_policy[1]",
                       "required_policy[2]", "key_type[1]", "key_type[2]", "key_type[3]",
                       "max_validity_days[-1]"}));
  auto created = CertificateRestrictions::Create(s);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, "config_invalid_value");
}

std::string EdgeConfigText(const std::string& extra_listen) {
  return "edge_id: \"e1\"\n"                                                  // line 1
         "listen {\n"                                                         // 2
         "  address: \"127.0.0.1:8443\"\n"                                    // 3
         "  certificate_chain_file: \"" + Pki("edge-server.pem") + "\"\n"     // 4
         "  private_key_file: \"" + Pki("edge-server.key") + "\"\n"           // 5
         "  client_ca_file: \"" + Pki("device-ca.pem") + "\"\n"               // 6
         + extra_listen +                                                     // 7...
         "}\n"
         "broker { address: \"127.0.0.1:7443\" server_name: \"broker.test\" }\n"
         "broker_tls {\n"
         "  certificate_chain_file: \"" + Pki("edge-1.pem") + "\"\n"
         "  private_key_file: \"" + Pki("edge-1.key") + "\"\n"
         "  ca_file: \"" + Pki("internal-ca.pem") + "\"\n"
         "}\n";
}

TEST(RestrictionsConfig, LoadsIntoSettings) {
  TempDir dir;
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", EdgeConfigText(
      "  restrictions {\n"
      "    allowed_issuer: \"CN=Orthrus Test Device CA,O=Orthrus Test\"\n"
      "    required_eku: \"smartcardLogon\"\n"
      "    key_type: \"rsa:2048\"\n"
      "    key_type: \"ec:256\"\n"
      "  }\n")));
  ASSERT_TRUE(cfg) << cfg.error().detail;
  ASSERT_TRUE(cfg->restrictions.has_value());
  EXPECT_EQ(cfg->restrictions->Check(ChainOf(Pki("alice.pem"))).reason,
            Reason::kClientCertificateRestricted);
}

TEST(RestrictionsConfig, AbsentSectionMeansNoRestrictions) {
  TempDir dir;
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", EdgeConfigText("")));
  ASSERT_TRUE(cfg) << cfg.error().detail;
  EXPECT_FALSE(cfg->restrictions.has_value());
}

TEST(RestrictionsConfig, ErrorsNameFileLineAndKey) {
  TempDir dir;
  std::string path = dir.Write("edge.conf", EdgeConfigText(
      "  restrictions {\n"                          // 7
      "    subject_pattern: \"CN=(alice\"\n"        // 8
      "    san_pattern: \".*@corp\\\\.test\"\n"     // 9
      "    san_pattern: \"*bad\"\n"                 // 10
      "    required_eku: \"clientAuthh\"\n"         // 11
      "    required_policy: \"1.2.3.4\"\n"          // 12
      "    required_policy: \"any\"\n"              // 13
      "    key_type: \"rsa:lots\"\n"                // 14
      "  }\n"));
  auto cfg = edge::LoadEdgeConfig(path);
  ASSERT_FALSE(cfg);
  const std::string& d = cfg.error().detail;
  for (const std::string& expected : {
           path + ":8: listen.restrictions.subject_pattern: invalid regular expression",
           path + ":10: listen.restrictions.san_pattern[1]: invalid regular expression",
           path + ":11: listen.restrictions.required_eku[0]: 'clientAuthh'",
           path + ":13: listen.restrictions.required_policy[1]: 'any' is not a dotted OID",
           path + ":14: listen.restrictions.key_type[0]: minimum bits 'lots'"}) {
    EXPECT_NE(d.find(expected), std::string::npos) << "missing: " << expected << "\nin: " << d;
  }
  EXPECT_EQ(d.find(":9:"), std::string::npos) << d;
  EXPECT_EQ(d.find(":12:"), std::string::npos) << d;
}

}  // namespace
}  // namespace orthrus
