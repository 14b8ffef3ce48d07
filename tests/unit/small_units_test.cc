// Pure helpers: addresses, header rules, path matching, reason table.
#include <gtest/gtest.h>

#include "broker/route_table.h"
#include "common/http_headers.h"
#include "common/publishing_match.h"
#include "common/net_address.h"
#include "common/reason.h"

namespace orthrus {
namespace {

TEST(HostPort, ParsesTheUsualForms) {
  auto v4 = ParseHostPort("10.0.0.5:7443");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "10.0.0.5");
  EXPECT_EQ(v4->port, 7443);
  EXPECT_TRUE(v4->host_is_ip);
  auto v6 = ParseHostPort("[::1]:443");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:443");
  auto name = ParseHostPort("broker-1.corp.test:7443");
  ASSERT_TRUE(name);
  EXPECT_FALSE(name->host_is_ip);
}

TEST(HostPort, RefusesBadInput) {
  for (const char* bad : {"", "host", "host:", ":443", "host:0", "host:65536", "host:12a", "::1:443",
                          "[::1]443", "[nothost]:443", "bad_name:443", "a..b:1"}) {
    EXPECT_FALSE(ParseHostPort(bad)) << bad;
  }
  EXPECT_TRUE(ParseListenAddress("0.0.0.0:0"));
  EXPECT_FALSE(ParseListenAddress("localhost:443"));
}

TEST(HttpHeaders, HopByHopAndReserved) {
  EXPECT_TRUE(http_headers::IsHopByHop("Connection"));
  EXPECT_TRUE(http_headers::IsHopByHop("transfer-encoding"));
  EXPECT_TRUE(http_headers::IsHopByHop("Proxy-Authorization"));
  EXPECT_FALSE(http_headers::IsHopByHop("Authorization"));
  EXPECT_FALSE(http_headers::IsHopByHop("MS-ASProtocolVersion"));
  EXPECT_TRUE(http_headers::IsReservedIdentityHeader("x-orthrus-client-upn"));
  EXPECT_FALSE(http_headers::IsReservedIdentityHeader("X-Orthrus"));
  EXPECT_TRUE(http_headers::ConnectionListsToken("keep-alive, X-Secret", "x-secret"));
  EXPECT_FALSE(http_headers::ConnectionListsToken("keep-alive", "x-secret"));
}

TEST(RouteTable, LongestSegmentPrefixWinsCaseInsensitively) {
  std::vector<broker::RuleSettings> rules(3);
  rules[0].name = "default";
  rules[0].path_prefixes = {"/"};
  rules[1].name = "eas";
  rules[1].path_prefixes = {"/Microsoft-Server-ActiveSync"};
  rules[2].name = "owa";
  rules[2].path_prefixes = {"/owa", "/ecp/"};
  broker::RouteTable table(rules);
  EXPECT_EQ(table.Match("", "/microsoft-server-activesync?Cmd=Sync")->name, "eas");
  EXPECT_EQ(table.Match("", "/Microsoft-Server-ActiveSync/x")->name, "eas");
  EXPECT_EQ(table.Match("", "/owa/auth")->name, "owa");
  EXPECT_EQ(table.Match("", "/ecp")->name, "owa");
  EXPECT_EQ(table.Match("", "/owanage")->name, "default");
  EXPECT_EQ(table.Match("", "/")->name, "default");

  std::vector<broker::RuleSettings> only_eas(rules.begin() + 1, rules.begin() + 2);
  broker::RouteTable strict(only_eas);
  EXPECT_EQ(strict.Match("", "/ews/exchange.asmx"), nullptr);
}

TEST(RouteTable, MostSpecificHostWinsBeforeTheLongestPrefix) {
  std::vector<broker::RuleSettings> rules(4);
  rules[0].name = "any-eas";
  rules[0].path_prefixes = {"/Microsoft-Server-ActiveSync"};
  rules[1].name = "mail-root";
  rules[1].hosts = {"mail.corp.example"};
  rules[1].path_prefixes = {"/"};
  rules[2].name = "wild";
  rules[2].hosts = {"*.corp.example"};
  rules[2].path_prefixes = {"/owa"};
  rules[3].name = "intranet";
  rules[3].hosts = {"intranet.corp.example", "intra.corp.example"};
  rules[3].path_prefixes = {"/"};
  broker::RouteTable table(rules);
  EXPECT_EQ(table.Match("mail.corp.example", "/Microsoft-Server-ActiveSync")->name, "mail-root");
  EXPECT_EQ(table.Match("other.example", "/Microsoft-Server-ActiveSync")->name, "any-eas");
  EXPECT_EQ(table.Match("", "/Microsoft-Server-ActiveSync")->name, "any-eas");
  EXPECT_EQ(table.Match("owa.corp.example", "/owa/")->name, "wild");
  EXPECT_EQ(table.Match("a.b.corp.example", "/owa/"), nullptr);  // '*' is one label
  EXPECT_EQ(table.Match("corp.example", "/owa/"), nullptr);
  EXPECT_EQ(table.Match("intra.corp.example", "/x")->name, "intranet");
  EXPECT_EQ(table.Match("other.example", "/x"), nullptr);
}

TEST(PublishingMatch, NormalizesHostsAndChecksPatterns) {
  EXPECT_EQ(NormalizeHost("Mail.Corp.Example:443"), "mail.corp.example");
  EXPECT_EQ(NormalizeHost("mail.corp.example."), "mail.corp.example");
  EXPECT_EQ(NormalizeHost("[::1]:8443"), "::1");
  EXPECT_EQ(NormalizeHost("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(NormalizeHost("evil.example/x"), "");
  EXPECT_EQ(NormalizeHost("a b"), "");
  EXPECT_EQ(NormalizeHost("::1"), "");  // IPv6 in Host needs brackets
  EXPECT_EQ(CheckHostPattern("mail.corp.example"), "");
  EXPECT_EQ(CheckHostPattern("*.corp.example"), "");
  EXPECT_NE(CheckHostPattern("Mail.corp.example"), "");
  EXPECT_NE(CheckHostPattern("mail.*.example"), "");
  EXPECT_NE(CheckHostPattern("*"), "");
  EXPECT_NE(CheckHostPattern(""), "");
  EXPECT_NE(CheckHostPattern("mail.corp.example:443"), "") << "ports are not part of a host";
}

TEST(Reason, NamesRoundTripAndEveryRefusalHasAStatus) {
  for (int i = 1; i < static_cast<int>(Reason::kCount_); ++i) {
    auto r = static_cast<Reason>(i);
    EXPECT_EQ(ReasonFromName(ReasonName(r)), r);
    EXPECT_FALSE(ReasonHint(r).empty()) << ReasonName(r);
  }
  EXPECT_EQ(ReasonHttpStatus(Reason::kBrokerUnavailable), 502u);
  EXPECT_EQ(ReasonHttpStatus(Reason::kBackendTimeout), 504u);
  EXPECT_EQ(ReasonFromName("no_such_reason"), Reason::kInternalError);
}

}  // namespace
}  // namespace orthrus
