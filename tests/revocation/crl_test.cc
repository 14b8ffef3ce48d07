// CRLs on the broker: parsing and signature verification against real OpenSSL-made CRLs (good,
// forged, stale, unknown issuer, CA without cRLSign), the HTTP distribution-point client, refresh
// scheduling, and the 100 000-entry CRL figures (printed, not asserted).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "broker/revocation/crl_source.h"
#include "common/revocation/errors.h"
#include "common/revocation/feed_applier.h"
#include "common/revocation/state_file.h"
#include "revocation_test_support.h"

namespace orthrus::revocation {
namespace {

using testing::CertDer;
using testing::Keys;
using testing::Pki;
using testing::ReadAll;
using Clock = std::chrono::steady_clock;

CrlVerifier Verifier() {
  auto v = CrlVerifier::FromCaFiles({Pki("device-ca.pem"), Pki("nosign-ca.pem")});
  EXPECT_TRUE(v) << v.error().detail;
  return std::move(*v);
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

TEST(CrlVerifier, LoadsPemAndDerAndExtractsSerials) {
  auto v = Verifier();
  auto pem = v.Load(ReadAll(Pki("crl-v1.pem")), "crl-v1.pem");
  ASSERT_TRUE(pem) << pem.error().detail;
  ASSERT_EQ(pem->size(), 1u);
  const CrlData& c1 = *pem->front().data;
  EXPECT_EQ(c1.issuer, "CN=Orthrus Revocation Test CA,O=Orthrus Test");
  EXPECT_EQ(c1.serials.size(), 1u);
  EXPECT_TRUE(c1.serials.Contains(Keys("alice.pem").serial));
  EXPECT_EQ(c1.crl_number, std::string("\x10"));
  EXPECT_GT(c1.next_update, std::time(nullptr));
  EXPECT_EQ(c1.digest, tls::Sha256(pem->front().der));

  auto der = v.Load(ReadAll(Pki("crl-v2.der")), "crl-v2.der");
  ASSERT_TRUE(der) << der.error().detail;
  const CrlData& c2 = *der->front().data;
  EXPECT_EQ(c2.issuer_der, c1.issuer_der);
  EXPECT_EQ(c2.serials.size(), 2u);
  EXPECT_TRUE(c2.serials.Contains(Keys("bob.pem").serial));
  EXPECT_FALSE(c2.serials.Contains(Keys("carol.pem").serial));
  EXPECT_GT(c2.this_update, c1.this_update);
  EXPECT_EQ(ReadAll(Pki("crl-v2.der")), der->front().der);  // the DER as published
}

TEST(CrlVerifier, RefusesAForgedCrlWithItsOwnReason) {
  auto v = Verifier();
  auto forged = v.Load(ReadAll(Pki("crl-forged.pem")), "crl-forged.pem");
  ASSERT_FALSE(forged);
  EXPECT_EQ(forged.error().code, errc::kCrlBadSignature);
  EXPECT_NE(forged.error().detail.find("crl-forged.pem"), std::string::npos);
  // One bit flipped in a good DER CRL's signature: same verdict.
  std::string der = ReadAll(Pki("crl-v2.der"));
  der[der.size() - 10] ^= 0x01;
  auto flipped = v.Load(der, "flipped");
  ASSERT_FALSE(flipped);
  EXPECT_EQ(flipped.error().code, errc::kCrlBadSignature);
}

TEST(CrlVerifier, RefusesUnknownIssuersNonSigningCasAndGarbage) {
  auto v = Verifier();
  EXPECT_EQ(v.Load(ReadAll(Pki("crl-other.pem")), "o").error().code, errc::kCrlUnknownIssuer);
  EXPECT_EQ(v.Load(ReadAll(Pki("crl-nosign.pem")), "n").error().code, errc::kCrlBadSignature);
  EXPECT_EQ(v.Load("not a crl", "g").error().code, errc::kCrlInvalid);
  std::string der = ReadAll(Pki("crl-v2.der"));
  EXPECT_EQ(v.Load(der.substr(0, der.size() - 5), "t").error().code, errc::kCrlInvalid);  // truncated
}

TEST(CrlVerifier, AcceptsAStaleCrlButItsCheckFailsClosed) {
  auto v = Verifier();
  auto stale = v.Load(ReadAll(Pki("crl-stale.pem")), "crl-stale.pem");
  ASSERT_TRUE(stale) << stale.error().detail;
  const CrlData& crl = *stale->front().data;
  std::time_t now = std::time(nullptr);
  EXPECT_LT(crl.next_update, now);
  RevocationSet::Builder b;
  b.PutCrl(stale->front().data);
  auto set = std::move(b).Build("f", 1);
  auto verdict = set->CheckChain({CertDer("carol.pem"), CertDer("device-ca.pem")}, now, {});
  EXPECT_EQ(verdict.finding, Finding::kCrlStale) << verdict.detail;
  EXPECT_EQ(FindingReasonName(verdict.finding), "crl_stale");
  // A stale CRL is retried soon, not at its (past) nextUpdate.
  RefreshPolicy policy;
  EXPECT_EQ(NextRefreshTime(now, &crl, false, policy), now + policy.min_interval.count());
}

TEST(CrlVerifier, ResolvesIssuerText) {
  auto v = Verifier();
  auto der = v.ResolveIssuer("cn=orthrus revocation test ca, o=Orthrus Test");
  ASSERT_TRUE(der) << der.error().detail;
  EXPECT_EQ(*der, Keys("alice.pem").issuer_der);
  EXPECT_EQ(v.ResolveIssuer("CN=Nobody").error().code, errc::kInvalidKey);
}

TEST(CrlRefresh, SchedulesBeforeNextUpdate) {
  RefreshPolicy p{std::chrono::seconds(3600), std::chrono::seconds(60), std::chrono::seconds(6 * 3600)};
  CrlData crl;
  std::time_t now = 1'700'000'000;
  crl.this_update = now - 3600;
  crl.next_update = now + 4 * 3600;
  EXPECT_EQ(NextRefreshTime(now, &crl, false, p), now + 3 * 3600);  // nextUpdate - margin
  crl.next_update = now + 600;  // short-lived CRL: margin capped at half its validity
  crl.this_update = now - 600;
  EXPECT_EQ(NextRefreshTime(now, &crl, false, p), now + 60);
  crl.this_update = now;
  crl.next_update = now + 1200;
  EXPECT_EQ(NextRefreshTime(now, &crl, false, p), now + 600);
  crl.next_update = now + 30 * 24 * 3600;  // far away: max interval
  EXPECT_EQ(NextRefreshTime(now, &crl, false, p), now + 6 * 3600);
  crl.next_update = 0;  // none stated
  EXPECT_EQ(NextRefreshTime(now, &crl, false, p), now + 6 * 3600);
  EXPECT_EQ(NextRefreshTime(now, &crl, true, p), now + 60);  // failed: retry soon
  EXPECT_EQ(NextRefreshTime(now, nullptr, false, p), now + 60);
}

// --------------------------------------------------------------------------------- HTTP client

// Serves one canned response per connection on 127.0.0.1 (or never answers, for timeouts).
class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::string response, bool hang = false)
      : response_(std::move(response)), hang_(hang) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TinyHttpServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string last_request() const { return last_request_; }

 private:
  void Serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      last_request_ = req;
      if (hang_) {
        while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      } else {
        size_t off = 0;
        while (off < response_.size()) {
          ssize_t n = ::write(c, response_.data() + off, response_.size() - off);
          if (n <= 0) break;
          off += static_cast<size_t>(n);
        }
      }
      ::close(c);
    }
  }

  std::string response_;
  bool hang_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::string last_request_;
  std::thread thread_;
};

std::string Response(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/pkix-crl\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

TEST(CrlHttp, FetchesAndVerifiesADistributionPoint) {
  std::string der = ReadAll(Pki("crl-v2.der"));
  TinyHttpServer server(Response(200, der));
  auto body = HttpGet(server.Url("/pki/device.crl"), std::chrono::milliseconds(3000), 1 << 20);
  ASSERT_TRUE(body) << body.error().detail;
  EXPECT_EQ(*body, der);
  EXPECT_EQ(server.last_request().rfind("GET /pki/device.crl HTTP/1.1\r\n", 0), 0u) << server.last_request();
  auto crls = Verifier().Load(*body, server.Url("/pki/device.crl"));
  ASSERT_TRUE(crls);
  EXPECT_EQ(crls->front().data->serials.size(), 2u);
}

TEST(CrlHttp, ReportsErrorsTimeoutsAndOversizedBodies) {
  {
    TinyHttpServer server(Response(404, "nope"));
    auto r = HttpGet(server.Url("/x.crl"), std::chrono::milliseconds(3000), 1 << 20);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::kCrlFetchFailed);
    EXPECT_NE(r.error().detail.find("HTTP 404"), std::string::npos) << r.error().detail;
  }
  {
    TinyHttpServer server(Response(200, std::string(5000, 'x')));
    auto r = HttpGet(server.Url("/x.crl"), std::chrono::milliseconds(3000), 4096);
    ASSERT_FALSE(r) << r->size() << " bytes accepted";
    EXPECT_EQ(r.error().code, errc::kCrlTooLarge);
  }
  {  // no Content-Length: the body ends at EOF and is capped while it is read
    TinyHttpServer server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(5000, 'x'));
    auto r = HttpGet(server.Url("/x.crl"), std::chrono::milliseconds(3000), 4096);
    ASSERT_FALSE(r) << r->size() << " bytes accepted";
    EXPECT_EQ(r.error().code, errc::kCrlTooLarge);
  }
  {
    TinyHttpServer server("", /*hang=*/true);
    auto start = Clock::now();
    auto r = HttpGet(server.Url("/x.crl"), std::chrono::milliseconds(300), 1 << 20);
    auto took = Clock::now() - start;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::kCrlFetchFailed);
    EXPECT_NE(r.error().detail.find("timed out"), std::string::npos) << r.error().detail;
    EXPECT_LT(took, std::chrono::seconds(5));
  }
  EXPECT_EQ(HttpGet("https://ca.corp.test/x.crl", std::chrono::milliseconds(100), 1).error().code,
            errc::kCrlSourceInvalid);
  auto refused = HttpGet("http://127.0.0.1:1/x.crl", std::chrono::milliseconds(1000), 1 << 20);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::kCrlFetchFailed);
}

TEST(CrlHttp, ParsesUrls) {
  auto u = ParseHttpUrl("http://[::1]:8080/a/b.crl?x=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/a/b.crl?x=1");
  u = ParseHttpUrl("http://pki.corp.test");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/");
  for (const char* bad : {"ftp://x/y", "http://", "http://:80/x", "http://h:0/", "http://h:99999/",
                          "http://u@h/", "http://h:8x/"}) {
    EXPECT_FALSE(ParseHttpUrl(bad)) << bad;
  }
}

// ------------------------------------------------------------------------- 100 000-entry CRL

TEST(LargeCrl, HundredThousandEntriesLoadTimeAndLookupCost) {
  auto v = Verifier();
  auto t0 = Clock::now();
  std::string der = ReadAll(Pki("crl-100k.der"));
  auto t1 = Clock::now();
  auto crls = v.Load(der, "crl-100k.der");
  auto t2 = Clock::now();
  ASSERT_TRUE(crls) << crls.error().detail;
  const CrlPtr& crl = crls->front().data;
  ASSERT_EQ(crl->serials.size(), 100001u);

  // Broker -> edge: snapshot parts, assembled and applied by the edge.
  RevocationSet::Builder b;
  b.PutCrl(crl);
  auto set = std::move(b).Build("feed", 1);
  auto t3 = Clock::now();
  auto parts = set->ToSnapshotParts(1 << 20);
  std::vector<std::string> wire;
  for (auto& p : parts) {
    v1::RevocationUpdate u;
    u.set_feed_id("feed");
    *u.mutable_snapshot() = std::move(p);
    wire.push_back(u.SerializeAsString());
  }
  auto t4 = Clock::now();
  FeedApplier applier(RevocationSet::Empty());
  std::shared_ptr<const RevocationSet> edge_set;
  size_t wire_bytes = 0;
  for (const auto& bytes : wire) {
    v1::RevocationUpdate u;
    ASSERT_TRUE(u.ParseFromString(bytes));
    wire_bytes += bytes.size();
    auto out = applier.Apply(u);
    ASSERT_TRUE(out) << out.error().detail;
    if (out->applied) edge_set = out->applied;
  }
  auto t5 = Clock::now();
  ASSERT_TRUE(edge_set);
  ASSERT_EQ(edge_set->crl_serial_count(), 100001u);

  // Edge state file.
  testing::TempDir dir;
  ASSERT_TRUE(SaveStateFile(dir.File("state"), *edge_set, 1));
  auto t6 = Clock::now();
  auto loaded = LoadStateFile(dir.File("state"));
  auto t7 = Clock::now();
  ASSERT_TRUE(loaded) << loaded.error().detail;

  // Lookups: serial-set membership alone, then the per-handshake check with precomputed keys
  // (what the edge does with the certificate it already parsed), then the whole chain check from
  // DER (parses the leaf and hashes it).
  std::vector<std::string> probes;
  for (int i = 0; i < 1000; ++i) {
    char hex[48];
    std::snprintf(hex, sizeof hex, "5a%030x", i * 97);  // on the CRL
    probes.push_back(*SerialFromHex(hex));
    std::snprintf(hex, sizeof hex, "5b%030x", i * 97);  // not on it
    probes.push_back(*SerialFromHex(hex));
  }
  const int kRounds = 500;
  size_t hits = 0;
  auto t8 = Clock::now();
  for (int r = 0; r < kRounds; ++r) {
    for (const auto& p : probes) hits += crl->serials.Contains(p) ? 1 : 0;
  }
  auto t9 = Clock::now();
  double ns_contains = std::chrono::duration<double, std::nano>(t9 - t8).count() / (kRounds * probes.size());

  CertKeys carol = Keys("carol.pem");
  CertKeys bob = Keys("bob.pem");
  std::time_t now = std::time(nullptr);
  const int kChecks = 200000;
  size_t refused = 0;
  auto t10 = Clock::now();
  for (int i = 0; i < kChecks; ++i) {
    refused += edge_set->CheckCertificate((i & 1) ? carol : bob, now, {}).ok() ? 0 : 1;
  }
  auto t11 = Clock::now();
  double ns_check = std::chrono::duration<double, std::nano>(t11 - t10).count() / kChecks;

  // The handshake path: the verified chain is already parsed by OpenSSL.
  auto bob_certs = tls::LoadCertificates(Pki("bob.pem"));
  auto ca_certs = tls::LoadCertificates(Pki("device-ca.pem"));
  tls::X509StackPtr stack(sk_X509_new_null());
  sk_X509_push(stack.get(), bob_certs->front().get());
  sk_X509_push(stack.get(), ca_certs->front().get());
  X509_up_ref(bob_certs->front().get());
  X509_up_ref(ca_certs->front().get());
  const int kX509Chains = 200000;
  auto t12 = Clock::now();
  for (int i = 0; i < kX509Chains; ++i) refused += edge_set->CheckChain(stack.get(), now, {}).ok() ? 0 : 1;
  auto t13 = Clock::now();
  double ns_x509_chain = std::chrono::duration<double, std::nano>(t13 - t12).count() / kX509Chains;

  std::vector<std::string> chain = {CertDer("bob.pem"), CertDer("device-ca.pem")};
  const int kChains = 5000;
  auto t14 = Clock::now();
  for (int i = 0; i < kChains; ++i) refused += edge_set->CheckChain(chain, now, {}).ok() ? 0 : 1;
  auto t15 = Clock::now();
  double us_chain = std::chrono::duration<double, std::micro>(t15 - t14).count() / kChains;

  EXPECT_EQ(refused, static_cast<size_t>(kChecks / 2));  // carol is on it, bob is not (nor below)
  EXPECT_EQ(hits, kRounds * probes.size() / 2);
  EXPECT_TRUE(edge_set->CheckCertificate(carol, now, {}).finding == Finding::kRevokedByCrl);

  std::printf(
      "[large CRL] 100 001 serials, DER %zu bytes\n"
      "[large CRL] broker: read file %.1f ms, parse+verify+extract (OpenSSL) %.1f ms\n"
      "[large CRL] broker: snapshot to %zu parts (%zu bytes on the wire) %.1f ms\n"
      "[large CRL] edge:   parse + assemble + index the snapshot %.1f ms\n"
      "[large CRL] edge:   state file save %.1f ms, load (checksum + parse + index) %.1f ms\n"
      "[large CRL] edge:   memory of the serial set %.2f MiB\n"
      "[large CRL] lookup: SerialSet::Contains %.0f ns; CheckCertificate (keys known) %.0f ns;\n"
      "[large CRL] lookup: CheckChain(verified X509 chain, as at a handshake) %.0f ns;\n"
      "[large CRL] lookup: CheckChain(DER chain: OpenSSL parses the leaf) %.1f us\n",
      der.size(), Ms(t1 - t0), Ms(t2 - t1), wire.size(), wire_bytes, Ms(t4 - t3), Ms(t5 - t4),
      Ms(t6 - t5), Ms(t7 - t6), crl->serials.MemoryBytes() / 1048576.0, ns_contains, ns_check,
      ns_x509_chain, us_chain);
  RecordProperty("crl100k_parse_verify_ms", std::to_string(Ms(t2 - t1)));
  RecordProperty("crl100k_edge_apply_ms", std::to_string(Ms(t5 - t4)));
  RecordProperty("crl100k_lookup_ns", std::to_string(ns_check));
  RecordProperty("crl100k_handshake_check_ns", std::to_string(ns_x509_chain));
}

}  // namespace
}  // namespace orthrus::revocation
