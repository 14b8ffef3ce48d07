// Config validation: every error names the file, the line and the key.
#include <gtest/gtest.h>

#include "broker/broker_config.h"
#include "common/tls/pem_files.h"
#include "edge/edge_config.h"
#include "test_files.h"

namespace orthrus {
namespace {

using testing::Pki;
using testing::TempDir;

std::string EdgeConfigText(const std::string& extra_listen = "", const std::string& broker_addr = "127.0.0.1:7443",
                           const std::string& client_ca = Pki("device-ca.pem")) {
  return "edge_id: \"e1\"\n"                                                  // line 1
         "listen {\n"                                                         // 2
         "  address: \"127.0.0.1:8443\"\n"                                    // 3
         "  certificate_chain_file: \"" + Pki("edge-server.pem") + "\"\n"     // 4
         "  private_key_file: \"" + Pki("edge-server.key") + "\"\n"           // 5
         "  client_ca_file: \"" + client_ca + "\"\n"                          // 6
         + extra_listen +
         "}\n"
         "broker { address: \"" + broker_addr + "\" server_name: \"broker.test\" }\n"
         "broker_tls {\n"
         "  certificate_chain_file: \"" + Pki("edge-1.pem") + "\"\n"
         "  private_key_file: \"" + Pki("edge-1.key") + "\"\n"
         "  ca_file: \"" + Pki("internal-ca.pem") + "\"\n"
         "}\n";
}

TEST(EdgeConfig, ValidConfigLoadsWithDefaults) {
  TempDir dir;
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", EdgeConfigText()));
  ASSERT_TRUE(cfg) << cfg.error().detail;
  EXPECT_EQ(cfg->edge_id, "e1");
  EXPECT_EQ(cfg->listen.port, 8443);
  ASSERT_EQ(cfg->brokers.size(), 1u);
  EXPECT_EQ(cfg->brokers[0].server_name, "broker.test");
  // ActiveSync Ping holds a request for up to 59 minutes: the default must outlast it.
  EXPECT_GE(cfg->limits.response_timeout.count(), 3540);
  EXPECT_FALSE(cfg->broker_private_key_pem.empty());
}

TEST(EdgeConfig, MissingFileIsReported) {
  auto cfg = edge::LoadEdgeConfig("/nonexistent/edge.conf");
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().code, "config_missing_file");
  EXPECT_NE(cfg.error().detail.find("/nonexistent/edge.conf"), std::string::npos);
}

TEST(EdgeConfig, UnknownKeyNamesKeyAndLine) {
  TempDir dir;
  std::string path = dir.Write("edge.conf", EdgeConfigText("  listn_address: \"x\"\n"));
  auto cfg = edge::LoadEdgeConfig(path);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().code, "config_syntax");
  EXPECT_NE(cfg.error().detail.find(path + ":7:"), std::string::npos) << cfg.error().detail;
  EXPECT_NE(cfg.error().detail.find("unknown key 'listn_address'"), std::string::npos)
      << cfg.error().detail;
}

TEST(EdgeConfig, BadPemNamesKeyAndLine) {
  TempDir dir;
  std::string garbage = dir.Write("ca.pem", "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n");
  std::string path = dir.Write("edge.conf", EdgeConfigText("", "127.0.0.1:7443", garbage));
  auto cfg = edge::LoadEdgeConfig(path);
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find(path + ":6: listen.client_ca_file: "), std::string::npos)
      << cfg.error().detail;
  EXPECT_NE(cfg.error().detail.find("not valid PEM"), std::string::npos) << cfg.error().detail;
}

TEST(EdgeConfig, EmptyPemFileIsRefused) {
  TempDir dir;
  std::string empty = dir.Write("ca.pem", "just text\n");
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", EdgeConfigText("", "127.0.0.1:7443", empty)));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("contains no PEM certificate"), std::string::npos);
}

TEST(EdgeConfig, BadAddressNamesKeyAndLine) {
  TempDir dir;
  std::string path = dir.Write("edge.conf", EdgeConfigText("", "127.0.0.1:99999"));
  auto cfg = edge::LoadEdgeConfig(path);
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find(path + ":8: broker[0].address: "), std::string::npos)
      << cfg.error().detail;
  EXPECT_NE(cfg.error().detail.find("port must be a number"), std::string::npos);
}

TEST(EdgeConfig, ListenAddressMustBeAnIp) {
  TempDir dir;
  std::string text = EdgeConfigText();
  text.replace(text.find("127.0.0.1:8443"), 14, "edge.example:8443");
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", text));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find(":3: listen.address: "), std::string::npos) << cfg.error().detail;
}

TEST(EdgeConfig, GroupReadableKeyIsRefused) {
  TempDir dir;
  std::string key = dir.Write("k.key", *tls::ReadFile(Pki("edge-server.key")), 0640);
  std::string text = EdgeConfigText();
  text.replace(text.find(Pki("edge-server.key")), Pki("edge-server.key").size(), key);
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", text));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find(":5: listen.private_key_file: "), std::string::npos);
  EXPECT_NE(cfg.error().detail.find("chmod 600"), std::string::npos);
}

TEST(EdgeConfig, KeyNotMatchingCertificateIsRefused) {
  TempDir dir;
  std::string text = EdgeConfigText();
  text.replace(text.find(Pki("edge-server.key")), Pki("edge-server.key").size(), Pki("alice.key"));
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", text));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("does not match the certificate"), std::string::npos);
}

TEST(EdgeConfig, AllProblemsAreReportedAtOnce) {
  TempDir dir;
  std::string text = EdgeConfigText("", "nohostport");
  text.replace(text.find(Pki("device-ca.pem")), Pki("device-ca.pem").size(), "/missing/ca.pem");
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", text));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("listen.client_ca_file"), std::string::npos);
  EXPECT_NE(cfg.error().detail.find("broker[0].address"), std::string::npos);
}

TEST(EdgeConfig, MissingRepeatedSectionIsReportedNotFatal) {
  TempDir dir;
  std::string text = EdgeConfigText();
  auto from = text.find("broker {");
  text.erase(from, text.find('\n', from) - from + 1);
  auto cfg = edge::LoadEdgeConfig(dir.Write("edge.conf", text));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("broker: at least one broker is required"), std::string::npos)
      << cfg.error().detail;
}

TEST(EdgeConfig, ZeroTimeoutIsRefused) {
  TempDir dir;
  auto cfg = edge::LoadEdgeConfig(
      dir.Write("edge.conf", EdgeConfigText() + "limits {\n  header_timeout_seconds: 0\n}\n"));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("limits.header_timeout_seconds: must be greater than 0"),
            std::string::npos)
      << cfg.error().detail;
}

std::string BrokerConfigText(const std::string& rule_body) {
  return "broker_id: \"b1\"\n"
         "listen {\n"
         "  address: \"127.0.0.1:7443\"\n"
         "  certificate_chain_file: \"" + Pki("broker.pem") + "\"\n"
         "  private_key_file: \"" + Pki("broker.key") + "\"\n"
         "  edge_ca_file: \"" + Pki("internal-ca.pem") + "\"\n"
         "  allowed_edge: \"edge-1\"\n"
         "}\n"
         "device_ca_file: \"" + Pki("device-ca.pem") + "\"\n"
         "rule {\n" + rule_body + "}\n";
}

std::string GoodRule() {
  return "  name: \"eas\"\n  path_prefix: \"/Microsoft-Server-ActiveSync\"\n"
         "  backend_url: \"https://exchange.corp.test\"\n  backend_ca_file: \"" + Pki("internal-ca.pem") + "\"\n";
}

TEST(BrokerConfig, ValidConfigLoads) {
  TempDir dir;
  auto cfg = broker::LoadBrokerConfig(dir.Write("broker.conf", BrokerConfigText(GoodRule())));
  ASSERT_TRUE(cfg) << cfg.error().detail;
  ASSERT_EQ(cfg->rules.size(), 1u);
  EXPECT_EQ(cfg->rules[0].backend_host, "exchange.corp.test");
  EXPECT_EQ(cfg->rules[0].backend_port, 443);
  EXPECT_EQ(cfg->rules[0].Authority(), "exchange.corp.test");
}

TEST(BrokerConfig, PlainHttpBackendIsRefused) {
  TempDir dir;
  std::string rule = GoodRule();
  rule.replace(rule.find("https://"), 8, "http://");
  std::string path = dir.Write("broker.conf", BrokerConfigText(rule));
  auto cfg = broker::LoadBrokerConfig(path);
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find(path + ":13: rule[0].backend_url: "), std::string::npos)
      << cfg.error().detail;
}

TEST(BrokerConfig, BridgingNeedsBothFiles) {
  TempDir dir;
  auto cfg = broker::LoadBrokerConfig(dir.Write(
      "broker.conf", BrokerConfigText(GoodRule() + "  bridging_certificate_file: \"" + Pki("broker.pem") + "\"\n")));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("rule[0].bridging_private_key_file"), std::string::npos)
      << cfg.error().detail;
}

TEST(BrokerConfig, PinnedIpMustBeAnIp) {
  TempDir dir;
  auto cfg = broker::LoadBrokerConfig(
      dir.Write("broker.conf", BrokerConfigText(GoodRule() + "  pinned_ip: \"exchange\"\n")));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("rule[0].pinned_ip: 'exchange' is not an IP address"),
            std::string::npos);
}

TEST(BrokerConfig, DelegatingRuleNeedsKerberosAndDirectory) {
  TempDir dir;
  auto cfg = broker::LoadBrokerConfig(
      dir.Write("broker.conf", BrokerConfigText(GoodRule() + "  spn: \"HTTP/exchange.corp.test\"\n")));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("kerberos: required: a rule has an spn"), std::string::npos)
      << cfg.error().detail;
  EXPECT_NE(cfg.error().detail.find("directory: required"), std::string::npos);
}

std::string KerberosSections(const std::string& keytab, const std::string& directory_extra) {
  return "kerberos {\n  keytab_file: \"" + keytab + "\"\n  principal: \"svc-broker@CORP.TEST\"\n}\n"
         "directory {\n  uri: \"ldap://dc1.corp.test\"\n  base_dn: \"DC=corp,DC=test\"\n" +
         directory_extra + "}\n";
}

TEST(BrokerConfig, KerberosAndDirectoryLoadWithStrongDefaults) {
  TempDir dir;
  std::string keytab = dir.Write("broker.keytab", "not parsed by the config loader", 0600);
  auto cfg = broker::LoadBrokerConfig(dir.Write(
      "broker.conf", BrokerConfigText(GoodRule() + "  spn: \"HTTP/exchange.corp.test\"\n") +
                         KerberosSections(keytab, "")));
  ASSERT_TRUE(cfg) << cfg.error().detail;
  EXPECT_EQ(cfg->kerberos->realm, "CORP.TEST");
  EXPECT_EQ(cfg->directory->mappings,
            (std::vector<std::string>{"altsec-issuer-serial", "altsec-ski", "altsec-sha1-pukey",
                                      "sid-extension"}));
  EXPECT_TRUE(cfg->rules[0].delegates());
}

TEST(BrokerConfig, WeakMappingNeedsExplicitOptIn) {
  TempDir dir;
  std::string keytab = dir.Write("broker.keytab", "x", 0600);
  auto cfg = broker::LoadBrokerConfig(dir.Write(
      "broker.conf", BrokerConfigText(GoodRule()) + KerberosSections(keytab, "  mapping: \"upn\"\n")));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("directory.mapping[0]: 'upn' is a weak mapping"), std::string::npos)
      << cfg.error().detail;
  auto ok = broker::LoadBrokerConfig(dir.Write(
      "broker2.conf", BrokerConfigText(GoodRule()) +
                          KerberosSections(keytab, "  mapping: \"upn\"\n  allow_weak_mappings: true\n")));
  EXPECT_TRUE(ok) << ok.error().detail;
}

TEST(BrokerConfig, GroupReadableKeytabAndCleartextBindAreRefused) {
  TempDir dir;
  std::string keytab = dir.Write("broker.keytab", "x", 0644);
  auto cfg = broker::LoadBrokerConfig(dir.Write(
      "broker.conf", BrokerConfigText(GoodRule()) +
                         KerberosSections(keytab, "  bind_dn: \"CN=svc\"\n  bind_password_file: \"/p\"\n")));
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().detail.find("kerberos.keytab_file: "), std::string::npos) << cfg.error().detail;
  EXPECT_NE(cfg.error().detail.find("a simple bind needs ldaps:// or start_tls"), std::string::npos);
}

TEST(BrokerConfig, BackendUrlForms) {
  EXPECT_EQ(broker::ParseBackendUrl("https://mail.corp.test:8443/").value(),
            std::make_pair(std::string("mail.corp.test"), uint16_t{8443}));
  EXPECT_EQ(broker::ParseBackendUrl("https://[::1]:444").value(),
            std::make_pair(std::string("::1"), uint16_t{444}));
  EXPECT_FALSE(broker::ParseBackendUrl("https://mail/owa"));
  EXPECT_FALSE(broker::ParseBackendUrl("https://user@mail"));
  EXPECT_FALSE(broker::ParseBackendUrl("ftp://mail"));
}

}  // namespace
}  // namespace orthrus
