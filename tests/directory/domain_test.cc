// Directory against the Samba AD test domain. Runs inside the domain's netns with env.sh sourced
// (see CMakeLists.txt); needs root for the nftables rule of the LDAP-down test.
#include <gssapi/gssapi.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "broker/directory/directory.h"
#include "test_certs.h"

namespace orthrus::broker {
namespace {

using Clock = std::chrono::steady_clock;
using testing::IdentityFromPem;
using testing::MakeCertificate;
using testing::SidExtensionConfig;
using testing::TempDir;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

const std::vector<MappingKind> kStrongRules = {MappingKind::kAltSecIssuerSerial, MappingKind::kAltSecSki,
                                               MappingKind::kAltSecSha1PublicKey, MappingKind::kSidExtension};

DirectorySettings Settings(std::vector<MappingKind> rules) {
  DirectorySettings s;
  s.uri = Env("TD_LDAP_URI");
  s.base_dn = Env("TD_BASE_DN");
  s.keytab_file = Env("TD_BROKER_KEYTAB");
  s.principal = Env("TD_BROKER_PRINCIPAL");
  s.realm = Env("TD_REALM");
  s.rules = std::move(rules);
  s.timeout = std::chrono::milliseconds(1500);
  return s;
}

tls::CertIdentity Cert(const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto id = IdentityFromPem(Env(("TD_CERT_" + upper).c_str()));
  EXPECT_TRUE(id) << name << ": " << (id ? "" : id.error().detail);
  return id ? *id : tls::CertIdentity{};
}

std::unique_ptr<Directory> Make(std::vector<MappingKind> rules) {
  auto dir = MakeLdapDirectory(Settings(std::move(rules)));
  EXPECT_TRUE(dir) << (dir ? "" : dir.error().detail);
  return dir ? std::move(*dir) : nullptr;
}

void ExpectError(const Result<Account>& result, const std::string& code) {
  ASSERT_FALSE(result) << "mapped to " << result->sam_account_name << ", expected " << code;
  EXPECT_EQ(result.error().code, code) << result.error().detail;
}

class DirectoryDomain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_FALSE(Env("TD_LDAP_URI").empty()) << "source the test domain's env.sh first";
    // An empty default ccache: nothing may authenticate "by default" as the broker.
    setenv("KRB5CCNAME", "MEMORY:orthrus-directory-test-default", 1);
  }
};

TEST_F(DirectoryDomain, AliceByUpn) {
  auto dir = Make({MappingKind::kUpn});
  auto start = Clock::now();
  auto account = dir->MapCertificate(Cert("alice"));
  double cold = Ms(Clock::now() - start);
  ASSERT_TRUE(account) << account.error().code << ": " << account.error().detail;
  EXPECT_EQ(account->sam_account_name, "alice");
  EXPECT_EQ(account->kerberos_principal, "alice@CORP.TEST");
  EXPECT_EQ(account->user_principal_name, "alice@corp.test");
  EXPECT_EQ(account->matched_by, MappingKind::kUpn);
  EXPECT_EQ(account->dn, "CN=alice,CN=Users,DC=corp,DC=test");
  EXPECT_TRUE(account->object_sid.starts_with("S-1-5-21-")) << account->object_sid;
  std::printf("timing: cold mapping (TGT + connect + GSSAPI bind + search) %.1f ms\n", cold);
  RecordProperty("cold_ms", std::to_string(cold));

  // Second, uncached certificate over the established connection.
  start = Clock::now();
  auto dave = dir->MapCertificate(Cert("dave"));
  std::printf("timing: warm mapping (connection up, one search) %.1f ms\n", Ms(Clock::now() - start));
  ExpectError(dave, "account_not_delegable");
}

TEST_F(DirectoryDomain, CarolOnlyByStrongAltSecurityIdentities) {
  auto carol = Cert("carol");
  auto by_serial = Make({MappingKind::kAltSecIssuerSerial})->MapCertificate(carol);
  ASSERT_TRUE(by_serial) << by_serial.error().detail;
  EXPECT_EQ(by_serial->sam_account_name, "carol");
  EXPECT_EQ(by_serial->kerberos_principal, "carol@CORP.TEST");
  EXPECT_EQ(by_serial->matched_by, MappingKind::kAltSecIssuerSerial);
  EXPECT_EQ(AltSecIssuerSerial(carol), Env("TD_CAROL_ALTSECID_ISSUER_SERIAL"));

  ExpectError(Make({MappingKind::kUpn})->MapCertificate(carol), "account_not_found");

  auto by_ski = Make({MappingKind::kAltSecSki})->MapCertificate(carol);
  ASSERT_TRUE(by_ski) << by_ski.error().detail;
  EXPECT_EQ(by_ski->sam_account_name, "carol");
  EXPECT_EQ(by_ski->matched_by, MappingKind::kAltSecSki);

  // Default strong rules: the first that matches decides.
  auto strong = Make(kStrongRules)->MapCertificate(carol);
  ASSERT_TRUE(strong);
  EXPECT_EQ(strong->matched_by, MappingKind::kAltSecIssuerSerial);
}

TEST_F(DirectoryDomain, RefusedAccounts) {
  auto dir = Make({MappingKind::kUpn, MappingKind::kRfc822});
  ExpectError(dir->MapCertificate(Cert("bob")), "account_disabled");
  ExpectError(dir->MapCertificate(Cert("dave")), "account_not_delegable");
  ExpectError(dir->MapCertificate(Cert("nobody")), "account_not_found");
  ExpectError(Make({MappingKind::kRfc822})->MapCertificate(Cert("shared")), "account_ambiguous");
}

TEST_F(DirectoryDomain, DefaultStrongRulesRefuseWeaklyMappedAlice) {
  ExpectError(Make(kStrongRules)->MapCertificate(Cert("alice")), "account_not_found");
}

TEST_F(DirectoryDomain, SidExtensionMatchesObjectSid) {
  auto alice = Make({MappingKind::kUpn})->MapCertificate(Cert("alice"));
  ASSERT_TRUE(alice);
  TempDir tmp;
  auto dir = Make({MappingKind::kSidExtension});
  std::string pem = MakeCertificate(tmp, "alice-sid", "0x5101", SidExtensionConfig(alice->object_sid));
  ASSERT_FALSE(pem.empty());
  auto with_sid = IdentityFromPem(pem);
  ASSERT_TRUE(with_sid);
  auto mapped = dir->MapCertificate(*with_sid);
  ASSERT_TRUE(mapped) << mapped.error().detail;
  EXPECT_EQ(mapped->sam_account_name, "alice");
  EXPECT_EQ(mapped->matched_by, MappingKind::kSidExtension);

  std::string other = MakeCertificate(tmp, "other-sid", "0x5102", SidExtensionConfig(alice->object_sid + "9"));
  auto other_id = IdentityFromPem(other);
  ASSERT_TRUE(other_id);
  ExpectError(dir->MapCertificate(*other_id), "account_not_found");
}

TEST_F(DirectoryDomain, CachePositiveAndNegative) {
  auto dir = Make({MappingKind::kUpn});
  auto alice = Cert("alice");
  ASSERT_TRUE(dir->MapCertificate(alice));
  uint64_t searches = dir->Stats().searches;
  EXPECT_EQ(searches, 1u);
  auto start = Clock::now();
  auto again = dir->MapCertificate(alice);
  double cached = Ms(Clock::now() - start);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->sam_account_name, "alice");
  EXPECT_EQ(dir->Stats().searches, searches);
  EXPECT_EQ(dir->Stats().cache_hits, 1u);
  std::printf("timing: cached mapping %.3f ms\n", cached);

  auto nobody = Cert("nobody");
  ExpectError(dir->MapCertificate(nobody), "account_not_found");
  searches = dir->Stats().searches;
  ExpectError(dir->MapCertificate(nobody), "account_not_found");
  EXPECT_EQ(dir->Stats().searches, searches);
  EXPECT_EQ(dir->Stats().negative_cache_hits, 1u);
}

TEST_F(DirectoryDomain, ZeroTtlDisablesCache) {
  auto settings = Settings({MappingKind::kUpn});
  settings.cache_ttl = std::chrono::seconds(0);
  settings.negative_cache_ttl = std::chrono::seconds(0);
  auto dir = MakeLdapDirectory(settings);
  ASSERT_TRUE(dir);
  auto alice = Cert("alice");
  ASSERT_TRUE((*dir)->MapCertificate(alice));
  ASSERT_TRUE((*dir)->MapCertificate(alice));
  EXPECT_EQ((*dir)->Stats().searches, 2u);
}

TEST_F(DirectoryDomain, ConcurrentCallers) {
  auto dir = Make({MappingKind::kUpn, MappingKind::kRfc822});
  std::vector<std::pair<std::string, std::string>> expected = {
      {"alice", "alice"}, {"bob", "account_disabled"}, {"dave", "account_not_delegable"},
      {"nobody", "account_not_found"}, {"shared", "account_ambiguous"}};
  std::vector<tls::CertIdentity> certs;
  for (const auto& [name, _] : expected) certs.push_back(Cert(name));
  std::vector<std::string> got(expected.size() * 4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      auto r = dir->MapCertificate(certs[t % certs.size()]);
      got[t] = r ? r->sam_account_name : r.error().code;
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < got.size(); ++t) EXPECT_EQ(got[t], expected[t % expected.size()].second) << t;
}

TEST_F(DirectoryDomain, SimpleBindOverLdapsAndStartTls) {
  TempDir tmp;
  std::string password_file = tmp.path() + "/password";
  std::ofstream(password_file) << "BrokerPass1!\n";
  for (bool start_tls : {false, true}) {
    auto s = Settings({MappingKind::kUpn});
    s.uri = start_tls ? Env("TD_LDAP_URI") : Env("TD_LDAPS_URI");
    s.start_tls = start_tls;
    s.ca_file = Env("TD_CA");
    s.bind_dn = "svc-broker@corp.test";
    s.bind_password_file = password_file;
    s.keytab_file.clear();
    auto dir = MakeLdapDirectory(s);
    ASSERT_TRUE(dir) << dir.error().detail;
    auto alice = (*dir)->MapCertificate(Cert("alice"));
    ASSERT_TRUE(alice) << start_tls << ": " << alice.error().detail;
    EXPECT_EQ(alice->sam_account_name, "alice");
  }
  // The wrong CA: the DC's certificate does not verify, so no bind and no answer.
  auto s = Settings({MappingKind::kUpn});
  s.uri = Env("TD_LDAPS_URI");
  s.ca_file = std::string(ORTHRUS_TEST_PKI_DIR) + "/device-ca.pem";
  s.bind_dn = "svc-broker@corp.test";
  s.bind_password_file = password_file;
  auto dir = MakeLdapDirectory(s);
  ASSERT_TRUE(dir);
  ExpectError((*dir)->MapCertificate(Cert("alice")), "directory_unavailable");
}

TEST_F(DirectoryDomain, NoDefaultCredentialLeaks) {
  auto dir = Make({MappingKind::kUpn});
  ASSERT_TRUE(dir->MapCertificate(Cert("alice")));
  EXPECT_EQ(std::getenv("KRB5_CLIENT_KTNAME"), nullptr);
  EXPECT_EQ(std::getenv("KRB5_KTNAME"), nullptr);
  EXPECT_EQ(Env("KRB5CCNAME"), "MEMORY:orthrus-directory-test-default");
  // The thread that did the bind has no usable default initiator credential afterwards.
  OM_uint32 minor = 0;
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  OM_uint32 major = gss_acquire_cred(&minor, GSS_C_NO_NAME, GSS_C_INDEFINITE, GSS_C_NO_OID_SET,
                                     GSS_C_INITIATE, &cred, nullptr, nullptr);
  EXPECT_NE(major, GSS_S_COMPLETE);
  if (cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &cred);
}

// Drops TCP to port 389 inside the netns while alive (LDAP only; the KDC keeps answering).
class BlockLdap {
 public:
  BlockLdap() {
    ok_ = std::system("nft add table inet orthrus_dir_test && "
                      "nft add chain inet orthrus_dir_test input '{ type filter hook input priority -10; }' && "
                      "nft add rule inet orthrus_dir_test input tcp dport 389 drop") == 0;
  }
  ~BlockLdap() { std::system("nft delete table inet orthrus_dir_test 2>/dev/null"); }
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

TEST_F(DirectoryDomain, LdapDownIsUnavailableWithinTimeout) {
  auto settings = Settings({MappingKind::kUpn});  // timeout 1500 ms
  auto established = MakeLdapDirectory(settings);
  ASSERT_TRUE(established);
  ASSERT_TRUE((*established)->MapCertificate(Cert("alice")));
  auto fresh = MakeLdapDirectory(settings);
  ASSERT_TRUE(fresh);
  {
    BlockLdap block;
    ASSERT_TRUE(block.ok());
    // Established connection: the search goes unanswered.
    auto start = Clock::now();
    auto r = (*established)->MapCertificate(Cert("dave"));
    double search_ms = Ms(Clock::now() - start);
    ExpectError(r, "directory_unavailable");
    std::printf("timing: LDAP down, established connection -> directory_unavailable in %.0f ms (%s)\n",
                search_ms, r ? "" : r.error().detail.c_str());
    EXPECT_LT(search_ms, 1500 * 1.5);
    // New connection: connect times out.
    start = Clock::now();
    r = (*fresh)->MapCertificate(Cert("alice"));
    double connect_ms = Ms(Clock::now() - start);
    ExpectError(r, "directory_unavailable");
    std::printf("timing: LDAP down, new connection -> directory_unavailable in %.0f ms (%s)\n", connect_ms,
                r ? "" : r.error().detail.c_str());
    EXPECT_LT(connect_ms, 1500 * 1.5);
    // Unavailable is never cached: the same certificate is retried.
    start = Clock::now();
    r = (*established)->MapCertificate(Cert("dave"));
    ExpectError(r, "directory_unavailable");
    std::printf("timing: LDAP down, reconnect attempt -> directory_unavailable in %.0f ms\n",
                Ms(Clock::now() - start));
  }
  // Back up: both recover by reconnecting.
  auto dave = (*established)->MapCertificate(Cert("dave"));
  ExpectError(dave, "account_not_delegable");
  auto alice = (*fresh)->MapCertificate(Cert("alice"));
  ASSERT_TRUE(alice) << alice.error().detail;
}

}  // namespace
}  // namespace orthrus::broker
