// The edge's publishing-rule policy: Basic parsing, per-rule certificate checks, which server names
// let a handshake complete without a certificate, and the failed-password limiter.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/base64.h"
#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"
#include "edge/password_limiter.h"
#include "edge/publishing_rules.h"
#include "edge/request_head.h"
#include "test_files.h"

namespace orthrus {
namespace {

using edge::EdgeRuleSettings;
using edge::PasswordLimiter;
using edge::PasswordLimitSettings;
using edge::PublishingRules;
using testing::Pki;

std::string Der(const std::string& pem_path) {
  auto certs = tls::LoadCertificates(pem_path);
  EXPECT_TRUE(certs);
  return certs ? *tls::ToDer(certs->front().get()) : std::string();
}

std::string Basic(std::string_view user_colon_password) {
  return "Basic " + Base64Encode({reinterpret_cast<const unsigned char*>(user_colon_password.data()),
                                  user_colon_password.size()});
}

TEST(BasicCredentials, ParsesUserAndPasswordWithColons) {
  auto b = edge::ParseBasicCredentials(Basic("CORP\\alice:pa:ss word"));
  ASSERT_TRUE(b.is_basic);
  ASSERT_TRUE(b.credentials);
  EXPECT_EQ(b.credentials->username(), "CORP\\alice");
  EXPECT_EQ(b.credentials->password(), "pa:ss word");
  auto lower = edge::ParseBasicCredentials("basic " + Basic("bob:x").substr(6));
  ASSERT_TRUE(lower.credentials) << "the scheme is case-insensitive";
  auto empty_password = edge::ParseBasicCredentials(Basic("bob:"));
  ASSERT_TRUE(empty_password.credentials);
  EXPECT_EQ(empty_password.credentials->password(), "");
}

TEST(BasicCredentials, RefusesEachKindOfGarbageWithItsOwnProblem) {
  EXPECT_FALSE(edge::ParseBasicCredentials("Negotiate YIIG").is_basic);
  EXPECT_FALSE(edge::ParseBasicCredentials("Bearer abc").is_basic);
  EXPECT_FALSE(edge::ParseBasicCredentials("Basic").is_basic);
  auto not_b64 = edge::ParseBasicCredentials("Basic !!!!");
  EXPECT_TRUE(not_b64.is_basic);
  EXPECT_FALSE(not_b64.credentials);
  EXPECT_EQ(not_b64.problem, "credentials are not base64");
  EXPECT_EQ(edge::ParseBasicCredentials(Basic("no-colon")).problem,
            "credentials are not user:password");
  EXPECT_EQ(edge::ParseBasicCredentials(Basic(":password")).problem,
            "credentials are not user:password");
  EXPECT_EQ(edge::ParseBasicCredentials(Basic(std::string("al\0ice:x", 8))).problem,
            "credentials contain control characters");
  EXPECT_EQ(edge::ParseBasicCredentials(Basic("alice:x\r\nInjected: 1")).problem,
            "credentials contain control characters");
}

TEST(ActiveSyncDeviceId, PlainAndBase64Queries) {
  EXPECT_EQ(edge::ActiveSyncDeviceId("/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=ABC123&DeviceType=iPhone"),
            "ABC123");
  EXPECT_EQ(edge::ActiveSyncDeviceId("/Microsoft-Server-ActiveSync?cmd=Ping&deviceid=x1"), "x1");
  EXPECT_EQ(edge::ActiveSyncDeviceId("/Microsoft-Server-ActiveSync?Cmd=Ping"), "");
  EXPECT_EQ(edge::ActiveSyncDeviceId("/owa/"), "");
  // Base64 form: version 141, command 0 (Sync), locale 0x0409, 4-octet device id, policy key...
  const unsigned char raw[] = {141, 0, 0x09, 0x04, 4, 0xde, 0xad, 0xbe, 0xef, 0};
  std::string b64 = Base64Encode({raw, sizeof raw});
  EXPECT_EQ(edge::ActiveSyncDeviceId("/Microsoft-Server-ActiveSync?" + b64), "deadbeef");
}

std::vector<EdgeRuleSettings> MixedRules() {
  std::vector<EdgeRuleSettings> rules(3);
  rules[0].name = "eas-cert";
  rules[0].hosts = {"mail.corp.example"};
  rules[0].path_prefixes = {"/Microsoft-Server-ActiveSync"};
  rules[1].name = "owa-password";
  rules[1].hosts = {"owa.corp.example"};
  rules[1].path_prefixes = {"/owa"};
  rules[1].authentication = AuthMode::kPassword;
  rules[2].name = "eas-both";
  rules[2].hosts = {"secure.corp.example"};
  rules[2].path_prefixes = {"/"};
  rules[2].authentication = AuthMode::kCertificateAndPassword;
  return rules;
}

TEST(PublishingRules, HandshakeRequiresACertificateUnlessANameAcceptsPasswordsAlone) {
  PublishingRules rules(MixedRules());
  EXPECT_FALSE(rules.CertificateOptionalFor("mail.corp.example"));
  EXPECT_FALSE(rules.CertificateOptionalFor("secure.corp.example"))
      << "certificate-and-password still needs the certificate";
  EXPECT_TRUE(rules.CertificateOptionalFor("owa.corp.example"));
  EXPECT_FALSE(rules.CertificateOptionalFor("unknown.example"));
  EXPECT_TRUE(rules.CertificateOptionalFor("")) << "no SNI: any rule may serve the request";

  auto only_cert = MixedRules();
  only_cert.erase(only_cert.begin() + 1);
  EXPECT_FALSE(PublishingRules(only_cert).CertificateOptionalFor(""));
}

TEST(PublishingRules, MatchesByHostThenPath) {
  PublishingRules rules(MixedRules());
  EXPECT_EQ(rules.Match("mail.corp.example", "/Microsoft-Server-ActiveSync?Cmd=Ping")->name,
            "eas-cert");
  EXPECT_EQ(rules.Match("mail.corp.example", "/owa"), nullptr);
  EXPECT_EQ(rules.Match("owa.corp.example", "/OWA/auth.owa")->name, "owa-password");
  EXPECT_EQ(rules.Match("secure.corp.example", "/anything")->name, "eas-both");
  EXPECT_EQ(rules.IndexOf(*rules.Match("secure.corp.example", "/")), 2u);
}

TEST(PublishingRules, CertificateChecksNameTheRuleAndTheRequirement) {
  std::vector<std::string> alice = {Der(Pki("alice.pem")), Der(Pki("device-ca.pem"))};
  EdgeRuleSettings rule;
  rule.name = "internal-only";
  rule.client_ca_file = "internal-ca.pem";
  rule.trusted_ca_der = {Der(Pki("internal-ca.pem"))};
  auto untrusted = PublishingRules::CheckCertificate(rule, alice);
  EXPECT_EQ(untrusted.reason, Reason::kUntrustedClientCertificate);
  EXPECT_NE(untrusted.detail.find("rule internal-only"), std::string::npos) << untrusted.detail;

  rule.trusted_ca_der.push_back(Der(Pki("device-ca.pem")));
  EXPECT_EQ(PublishingRules::CheckCertificate(rule, alice).reason, Reason::kOk);
  // A leaf that equals a listed CA does not make itself trusted: only the chain above it counts.
  rule.trusted_ca_der = {alice[0]};
  EXPECT_EQ(PublishingRules::CheckCertificate(rule, alice).reason,
            Reason::kUntrustedClientCertificate);

  rule.trusted_ca_der.clear();
  rule.max_chain_depth = 0;
  EXPECT_EQ(PublishingRules::CheckCertificate(rule, alice).reason, Reason::kOk)
      << "leaf + root: no intermediate";
  std::vector<std::string> deeper = {alice[0], alice[1], alice[1]};
  auto deep = PublishingRules::CheckCertificate(rule, deeper);
  EXPECT_EQ(deep.reason, Reason::kClientCertificateChainTooDeep);
  EXPECT_NE(deep.detail.find("max_chain_depth 0"), std::string::npos) << deep.detail;

  rule.max_chain_depth.reset();
  edge::RestrictionSettings r;
  r.required_ekus = {"smartcardLogon"};
  rule.restrictions = *edge::CertificateRestrictions::Create(r);
  auto restricted = PublishingRules::CheckCertificate(rule, alice);
  EXPECT_EQ(restricted.reason, Reason::kClientCertificateRestricted);
  EXPECT_NE(restricted.detail.find("rule internal-only: required_eku"), std::string::npos)
      << restricted.detail;
}

TEST(PasswordLimiter, BlocksAnAccountAfterItsFailuresWhateverTheSpelling) {
  PasswordLimitSettings s;
  s.account_failures = 3;
  s.address_failures = 100;
  s.window = std::chrono::seconds(60);
  PasswordLimiter limiter(s);
  auto t0 = PasswordLimiter::Clock::now();
  EXPECT_FALSE(limiter.Check("alice", "192.0.2.1", t0));
  limiter.RecordFailure("alice", "192.0.2.1", t0);
  limiter.RecordFailure("CORP\\Alice", "192.0.2.2", t0);
  EXPECT_FALSE(limiter.Check("alice@corp.example", "192.0.2.3", t0));
  limiter.RecordFailure("alice@corp.example", "192.0.2.3", t0);
  auto blocked = limiter.Check("ALICE", "192.0.2.9", t0 + std::chrono::seconds(1));
  ASSERT_TRUE(blocked);
  EXPECT_EQ(blocked->scope, "account");
  EXPECT_EQ(blocked->retry_after.count(), 59);
  EXPECT_FALSE(limiter.Check("bob", "192.0.2.9", t0)) << "other accounts are not affected";
  EXPECT_FALSE(limiter.Check("alice", "192.0.2.1", t0 + std::chrono::seconds(61)))
      << "the block ends with the window";
}

TEST(PasswordLimiter, BlocksAnAddressThatGuessesManyNames) {
  PasswordLimitSettings s;
  s.account_failures = 100;
  s.address_failures = 5;
  PasswordLimiter limiter(s);
  auto t0 = PasswordLimiter::Clock::now();
  for (int i = 0; i < 5; ++i) limiter.RecordFailure("user" + std::to_string(i), "198.51.100.7", t0);
  auto blocked = limiter.Check("someone-new", "198.51.100.7", t0);
  ASSERT_TRUE(blocked);
  EXPECT_EQ(blocked->scope, "address");
  EXPECT_FALSE(limiter.Check("someone-new", "198.51.100.8", t0));
}

TEST(PasswordLimiter, SuccessClearsTheAccountAndOldFailuresAgeOut) {
  PasswordLimitSettings s;
  s.account_failures = 2;
  s.window = std::chrono::seconds(60);
  PasswordLimiter limiter(s);
  auto t0 = PasswordLimiter::Clock::now();
  limiter.RecordFailure("carol", "203.0.113.1", t0);
  limiter.RecordSuccess("carol");
  limiter.RecordFailure("carol", "203.0.113.1", t0);
  EXPECT_FALSE(limiter.Check("carol", "203.0.113.1", t0)) << "the count restarted after success";
  // A failure after the window starts a new count instead of adding to the old one.
  limiter.RecordFailure("carol", "203.0.113.1", t0 + std::chrono::seconds(61));
  EXPECT_FALSE(limiter.Check("carol", "203.0.113.1", t0 + std::chrono::seconds(61)));
}

TEST(PasswordLimiter, TracksABoundedNumberOfKeys) {
  PasswordLimitSettings s;
  s.max_tracked = 100;
  s.account_failures = 1;
  s.address_failures = 1000000;
  PasswordLimiter limiter(s);
  auto t0 = PasswordLimiter::Clock::now();
  for (int i = 0; i < 1000; ++i) limiter.RecordFailure("u" + std::to_string(i), "10.0.0.1", t0);
  int still_blocked = 0;
  for (int i = 0; i < 1000; ++i) {
    if (limiter.Check("u" + std::to_string(i), "10.0.0.2", t0)) ++still_blocked;
  }
  EXPECT_LE(still_blocked, 100);
  EXPECT_GT(still_blocked, 0);
}

}  // namespace
}  // namespace orthrus
