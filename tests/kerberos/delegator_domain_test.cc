// Delegator against the real test domain (Samba AD KDC + Apache/mod_auth_gssapi backend).
// Runs inside the domain's netns; paths come from $ROOT/env.sh (TD_* variables).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/base64.h"
#include "broker/kerberos/delegator.h"

namespace orthrus::broker {
namespace {

using Clock = std::chrono::steady_clock;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  result.status = pclose(pipe);
  return result;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "as_req=1 tgs_req=2 s4u2self=1 ..." -> map.
std::map<std::string, int> KdcCountsSince(const std::string& mark) {
  // Samba writes its log asynchronously to us; give it a moment.
  usleep(300 * 1000);
  CommandResult r = RunCommand(Env("TD_TOOLS") + "/kdc-requests.sh " + Env("TD_ROOT") + " " + mark);
  std::map<std::string, int> counts;
  std::istringstream words(r.output);
  std::string word;
  while (words >> word) {
    const size_t eq = word.find('=');
    if (eq != std::string::npos) counts[word.substr(0, eq)] = std::atoi(word.c_str() + eq + 1);
  }
  return counts;
}

std::string KdcMark() {
  std::string mark =
      RunCommand(Env("TD_TOOLS") + "/kdc-requests.sh " + Env("TD_ROOT") + " mark").output;
  while (!mark.empty() && (mark.back() == '\n' || mark.back() == ' ')) mark.pop_back();
  return mark;
}

struct BackendAnswer {
  int http_status = 0;
  std::string body;
  std::string negotiate_token;  // from WWW-Authenticate: Negotiate <token>
};

// Sends the token to the real backend; the token goes through a header file, not argv.
BackendAnswer CallBackend(const std::string& token) {
  char dir_template[] = "/tmp/orthrus-krb-test-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string request_headers = dir + "/req", response_headers = dir + "/resp";
  {
    std::ofstream out(request_headers);
    out << "Authorization: Negotiate " << token << "\n";
  }
  CommandResult r = RunCommand(
      "curl -sS --max-time 20 --cacert '" + Env("TD_CA") + "' -H @" + request_headers + " -D " +
      response_headers + " -w '\\nHTTP=%{http_code}' '" + Env("TD_BACKEND_EAS_URL") + "?Cmd=Sync'");
  BackendAnswer answer;
  const size_t http = r.output.rfind("\nHTTP=");
  if (http != std::string::npos) {
    answer.http_status = std::atoi(r.output.c_str() + http + 6);
    answer.body = r.output.substr(0, http);
  }
  std::istringstream headers(ReadFile(response_headers));
  std::string line;
  const std::string prefix = "www-authenticate: negotiate ";
  while (std::getline(headers, line)) {
    std::string lower = line;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.starts_with(prefix)) {
      answer.negotiate_token = line.substr(prefix.size());
      while (!answer.negotiate_token.empty() &&
             (answer.negotiate_token.back() == '\r' || answer.negotiate_token.back() == ' ')) {
        answer.negotiate_token.pop_back();
      }
    }
  }
  RunCommand("rm -rf '" + dir + "'");
  return answer;
}

class DelegatorDomainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Env("TD_ROOT").empty() || Env("TD_BROKER_KEYTAB").empty()) {
      GTEST_SKIP() << "test domain not up: source $ROOT/env.sh and run inside its netns";
    }
  }

  static DelegationSettings BrokerSettings() {
    DelegationSettings settings;
    settings.keytab_file = Env("TD_BROKER_KEYTAB");
    settings.principal = Env("TD_BROKER_PRINCIPAL");
    return settings;
  }

  static std::unique_ptr<Delegator> MakeBroker() {
    Result<std::unique_ptr<Delegator>> delegator = MakeGssDelegator(BrokerSettings());
    EXPECT_TRUE(delegator.has_value())
        << delegator.error().code << ": " << delegator.error().detail;
    return delegator ? std::move(*delegator) : nullptr;
  }

  static std::string Spn() { return Env("TD_BACKEND_SPN"); }
};

TEST(Base64Test, RoundTripsAndRejectsGarbage) {
  for (size_t n = 0; n < 8; ++n) {
    std::vector<unsigned char> bytes;
    for (size_t i = 0; i < n; ++i) bytes.push_back(static_cast<unsigned char>(0xF0 + i));
    std::string text = Base64Encode(bytes);
    if (n == 0) continue;
    auto back = Base64Decode(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_EQ(Base64Encode(std::vector<unsigned char>{'h', 'i'}), "aGk=");
  EXPECT_FALSE(Base64Decode("a$b=").has_value());
  EXPECT_FALSE(Base64Decode("abc").has_value());
  EXPECT_FALSE(Base64Decode("").has_value());
}

TEST_F(DelegatorDomainTest, AliceTokenIsAcceptedByBackendAndBackendIsAuthenticated) {
  auto delegator = MakeBroker();
  ASSERT_NE(delegator, nullptr);
  const auto cold_start = Clock::now();
  auto exchange = delegator->Begin("alice@CORP.TEST", Spn());
  const double cold_ms = MsSince(cold_start);
  ASSERT_TRUE(exchange.has_value()) << exchange.error().code << ": " << exchange.error().detail;
  const std::string token = (*exchange)->token();
  ASSERT_FALSE(token.empty());
  ASSERT_TRUE(Base64Decode(token).has_value());

  BackendAnswer answer = CallBackend(token);
  EXPECT_EQ(answer.http_status, 200) << answer.body;
  EXPECT_NE(answer.body.find("REMOTE_USER=alice@CORP.TEST\n"), std::string::npos) << answer.body;
  EXPECT_EQ(answer.body.find("svc-broker"), std::string::npos) << answer.body;
  ASSERT_FALSE(answer.negotiate_token.empty()) << "backend sent no mutual-auth token";
  Status complete = (*exchange)->Complete(answer.negotiate_token);
  EXPECT_TRUE(complete.has_value()) << complete.error().code << ": " << complete.error().detail;
  // Completing twice is a caller bug, reported, not a crash.
  Status again = (*exchange)->Complete(answer.negotiate_token);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, "backend_auth_failed");

  // A second (warm) exchange: new token, accepted too (the backend's replay cache would refuse a
  // reused one). A forged backend answer must not authenticate the backend.
  const auto warm_start = Clock::now();
  auto second = delegator->Begin("alice@CORP.TEST", Spn());
  const double warm_ms = MsSince(warm_start);
  ASSERT_TRUE(second.has_value()) << second.error().detail;
  EXPECT_NE((*second)->token(), token);
  BackendAnswer second_answer = CallBackend((*second)->token());
  EXPECT_NE(second_answer.body.find("REMOTE_USER=alice@CORP.TEST\n"), std::string::npos);
  Status forged = (*second)->Complete(Base64Encode(std::vector<unsigned char>(40, 0x61)));
  ASSERT_FALSE(forged.has_value());
  EXPECT_EQ(forged.error().code, "backend_auth_failed");
  Status not_base64 = (*second)->Complete("!!!");
  ASSERT_FALSE(not_base64.has_value());
  EXPECT_EQ(not_base64.error().code, "backend_auth_failed");

  std::printf("[timing] cold Begin (S4U2Self+S4U2Proxy) %.2f ms, warm Begin %.3f ms\n", cold_ms,
              warm_ms);
}

TEST_F(DelegatorDomainTest, HundredBeginsCostOneS4U2SelfAndOneS4U2Proxy) {
  auto delegator = MakeBroker();
  ASSERT_NE(delegator, nullptr);
  const std::string mark = KdcMark();
  std::set<std::string> tokens;
  double cold_ms = 0, warm_total_ms = 0;
  for (int i = 0; i < 100; ++i) {
    const auto start = Clock::now();
    auto exchange = delegator->Begin("alice@CORP.TEST", Spn());
    const double ms = MsSince(start);
    ASSERT_TRUE(exchange.has_value()) << exchange.error().detail;
    if (i == 0) {
      cold_ms = ms;
    } else {
      warm_total_ms += ms;
    }
    tokens.insert((*exchange)->token());
  }
  EXPECT_EQ(tokens.size(), 100u) << "every Begin must produce a fresh token";
  DelegationStats stats = delegator->Stats();
  EXPECT_EQ(stats.s4u2self, 1u);
  EXPECT_EQ(stats.s4u2proxy, 1u);
  EXPECT_EQ(stats.tokens, 100u);
  EXPECT_EQ(stats.cache_hits, 99u);
  std::map<std::string, int> kdc = KdcCountsSince(mark);
  EXPECT_EQ(kdc["s4u2self"], 1) << "KDC saw " << kdc["s4u2self"] << " S4U2Self";
  EXPECT_EQ(kdc["s4u2proxy"], 1) << "KDC saw " << kdc["s4u2proxy"] << " S4U2Proxy";
  EXPECT_EQ(kdc["as_req"], 0) << "the broker TGT must be reused";
  EXPECT_EQ(kdc["tgs_req"], 2);
  std::printf(
      "[timing] cold Begin %.2f ms; warm Begin mean %.3f ms over 99; KDC: as_req=%d "
      "tgs_req=%d s4u2self=%d s4u2proxy=%d\n",
      cold_ms, warm_total_ms / 99, kdc["as_req"], kdc["tgs_req"], kdc["s4u2self"],
      kdc["s4u2proxy"]);

  // The last token still works at the backend (the cached service ticket is valid).
  auto last = delegator->Begin("alice@CORP.TEST", Spn());
  ASSERT_TRUE(last.has_value());
  EXPECT_NE(CallBackend((*last)->token()).body.find("REMOTE_USER=alice@CORP.TEST\n"),
            std::string::npos);

  // ForgetUser drops the credential: the next Begin impersonates again.
  delegator->ForgetUser("alice@CORP.TEST");
  auto after_forget = delegator->Begin("alice@CORP.TEST", Spn());
  ASSERT_TRUE(after_forget.has_value());
  EXPECT_EQ(delegator->Stats().s4u2self, 2u);
  EXPECT_EQ(delegator->Stats().s4u2proxy, 2u);
}

TEST_F(DelegatorDomainTest, ConcurrentColdRequestsShareOneImpersonation) {
  auto delegator = MakeBroker();
  ASSERT_NE(delegator, nullptr);
  const std::string mark = KdcMark();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto a = delegator->Begin("erin@CORP.TEST", Spn());
        auto b = delegator->Begin("frank@CORP.TEST", Spn());
        if (a && b) ok.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 60);
  DelegationStats stats = delegator->Stats();
  EXPECT_EQ(stats.s4u2self, 2u);
  EXPECT_EQ(stats.s4u2proxy, 2u);
  EXPECT_EQ(stats.tokens, 120u);
  std::map<std::string, int> kdc = KdcCountsSince(mark);
  EXPECT_EQ(kdc["s4u2self"], 2);
  EXPECT_EQ(kdc["s4u2proxy"], 2);
}

TEST_F(DelegatorDomainTest, RefusalsMapToReasonCodes) {
  auto delegator = MakeBroker();
  ASSERT_NE(delegator, nullptr);
  struct Case {
    std::string user, spn, code, detail_part;
  };
  const std::vector<Case> cases = {
      {"bob@CORP.TEST", Spn(), "account_disabled", "bob@CORP.TEST"},
      {"nosuchuser@CORP.TEST", Spn(), "account_not_found", "nosuchuser@CORP.TEST"},
      {"dave@CORP.TEST", Spn(), "account_not_delegable", "not forwardable"},
      {"alice@CORP.TEST", Env("TD_OTHER_SPN"), "delegation_not_allowed",
       "add HTTP/other.corp.test to msDS-AllowedToDelegateTo of svc-broker@CORP.TEST"},
      {"alice@CORP.TEST", "HTTP/nonexistent.corp.test", "spn_unknown",
       "HTTP/nonexistent.corp.test"},
  };
  for (const Case& c : cases) {
    const auto start = Clock::now();
    auto exchange = delegator->Begin(c.user, c.spn);
    ASSERT_FALSE(exchange.has_value()) << c.user << " -> " << c.spn;
    EXPECT_EQ(exchange.error().code, c.code) << exchange.error().detail;
    EXPECT_NE(exchange.error().detail.find(c.detail_part), std::string::npos)
        << exchange.error().detail;
    std::printf("[refusal] %s -> %s: %s (%.1f ms)\n  %s\n", c.user.c_str(), c.spn.c_str(),
                exchange.error().code.c_str(), MsSince(start), exchange.error().detail.c_str());
  }
  // alice itself still works after her refused delegation to another SPN.
  auto alice = delegator->Begin("alice@CORP.TEST", Spn());
  ASSERT_TRUE(alice.has_value()) << alice.error().detail;
  EXPECT_NE(CallBackend((*alice)->token()).body.find("REMOTE_USER=alice@CORP.TEST\n"),
            std::string::npos);
}

TEST_F(DelegatorDomainTest, Rc4OnlyKeytabIsRefusedAtStartup) {
  // rc4.keytab: HTTP/rc4.corp.test has only an arcfour-hmac key (svc-rc4 also has AES keys there,
  // because Samba exports every key of the account).
  DelegationSettings settings;
  settings.keytab_file = Env("TD_RC4_KEYTAB");
  settings.principal = "HTTP/rc4.corp.test@CORP.TEST";
  auto delegator = MakeGssDelegator(settings);
  ASSERT_FALSE(delegator.has_value());
  EXPECT_EQ(delegator.error().code, "kerberos_weak_crypto");
  EXPECT_NE(delegator.error().detail.find(settings.keytab_file), std::string::npos)
      << delegator.error().detail;
  std::printf("[rc4] %s\n", delegator.error().detail.c_str());

  // The broker's own principal with nothing but an RC4 key (made with ktutil): refused before any
  // KDC exchange.
  char dir_template[] = "/tmp/orthrus-krb-rc4-XXXXXX";
  const std::string keytab = std::string(mkdtemp(dir_template)) + "/rc4-broker.keytab";
  CommandResult made = RunCommand(
      "printf 'addent -password -p svc-broker@CORP.TEST -k 2 -e arcfour-hmac\\n"
      "BrokerPass1!\\nwkt " +
      keytab + "\\nq\\n' | ktutil >/dev/null 2>&1");
  ASSERT_EQ(made.status, 0);
  settings.keytab_file = keytab;
  settings.principal = Env("TD_BROKER_PRINCIPAL");
  auto broker = MakeGssDelegator(settings);
  RunCommand("rm -rf \"$(dirname '" + keytab + "')\"");
  ASSERT_FALSE(broker.has_value());
  EXPECT_EQ(broker.error().code, "kerberos_weak_crypto");
  EXPECT_NE(broker.error().detail.find(keytab), std::string::npos) << broker.error().detail;
}

TEST_F(DelegatorDomainTest, BadKeytabOrPrincipalIsRefusedAtStartup) {
  DelegationSettings settings = BrokerSettings();
  settings.keytab_file = "/nonexistent/broker.keytab";
  auto missing = MakeGssDelegator(settings);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, "kerberos_error");
  EXPECT_NE(missing.error().detail.find("/nonexistent/broker.keytab"), std::string::npos);

  settings = BrokerSettings();
  settings.principal = "svc-other@CORP.TEST";  // not in broker.keytab
  auto wrong = MakeGssDelegator(settings);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code, "kerberos_error");
  EXPECT_NE(wrong.error().detail.find("no key for svc-other@CORP.TEST"), std::string::npos)
      << wrong.error().detail;
}

class KdcBlocked {
 public:
  explicit KdcBlocked(const std::string& mode) { Control(mode); }
  ~KdcBlocked() { Control("unblock"); }
  static void Control(const std::string& mode) {
    CommandResult r =
        RunCommand(Env("TD_TOOLS") + "/kdc-control.sh " + Env("TD_ROOT") + " " + mode);
    EXPECT_EQ(r.status, 0) << "kdc-control.sh " << mode << ": " << r.output;
  }
};

TEST_F(DelegatorDomainTest, KdcUnreachable) {
  auto delegator = MakeBroker();
  ASSERT_NE(delegator, nullptr);
  // Warm alice first: her tickets are cached, so she keeps working while the KDC is away.
  ASSERT_TRUE(delegator->Begin("alice@CORP.TEST", Spn()).has_value());
  {
    KdcBlocked blocked("block");
    auto warm = delegator->Begin("alice@CORP.TEST", Spn());
    EXPECT_TRUE(warm.has_value()) << warm.error().detail;

    const auto start = Clock::now();
    auto cold = delegator->Begin("erin@CORP.TEST", Spn());
    const double blocked_ms = MsSince(start);
    ASSERT_FALSE(cold.has_value());
    EXPECT_EQ(cold.error().code, "kdc_unreachable") << cold.error().detail;
    std::printf("[kdc blocked] S4U2Self failed after %.0f ms: %s\n", blocked_ms,
                cold.error().detail.c_str());
  }
  {
    KdcBlocked rejected("reject");
    const auto start = Clock::now();
    auto cold = delegator->Begin("frank@CORP.TEST", Spn());
    ASSERT_FALSE(cold.has_value());
    EXPECT_EQ(cold.error().code, "kdc_unreachable") << cold.error().detail;
    std::printf("[kdc rejecting] S4U2Self failed after %.0f ms\n", MsSince(start));

    // A broker started while the KDC is away still starts (its login is deferred) and says why
    // per request instead.
    auto fresh = MakeGssDelegator(BrokerSettings());
    ASSERT_TRUE(fresh.has_value()) << fresh.error().detail;
    auto deferred = (*fresh)->Begin("alice@CORP.TEST", Spn());
    ASSERT_FALSE(deferred.has_value());
    EXPECT_EQ(deferred.error().code, "kdc_unreachable") << deferred.error().detail;
  }
  // Back to normal: the same delegator recovers without a restart.
  auto recovered = delegator->Begin("erin@CORP.TEST", Spn());
  EXPECT_TRUE(recovered.has_value()) << recovered.error().detail;
}

}  // namespace
}  // namespace orthrus::broker
