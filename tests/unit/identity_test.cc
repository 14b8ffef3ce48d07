// Identity extraction from certificates the test PKI made, and the broker's re-verification.
#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <ctime>

#include "broker/identity_verifier.h"
#include "common/tls/pem_files.h"
#include "common/tls/trust_store.h"
#include "common/tls/x509_identity.h"
#include "test_files.h"

namespace orthrus {
namespace {

using testing::Pki;

tls::X509Ptr LoadCert(const std::string& name) {
  auto certs = tls::LoadCertificates(Pki(name));
  EXPECT_TRUE(certs) << certs.error().detail;
  return std::move(certs->front());
}

TEST(X509Identity, ExtractsSubjectIssuerSerialAndSans) {
  auto cert = LoadCert("alice.pem");
  auto id = tls::ExtractIdentity(cert.get());
  ASSERT_TRUE(id) << id.error().detail;
  EXPECT_EQ(id->subject, "CN=alice,O=Corp");
  EXPECT_EQ(id->issuer, "CN=Orthrus Test Device CA,O=Orthrus Test");
  EXPECT_EQ(id->serial_hex, "0a1b2c");
  ASSERT_EQ(id->upn.size(), 1u);
  EXPECT_EQ(id->upn[0], "alice@corp.test");
  ASSERT_EQ(id->rfc822.size(), 1u);
  EXPECT_EQ(id->rfc822[0], "alice@corp.test");
  EXPECT_TRUE(id->dns.empty());
  EXPECT_LT(id->not_before_unix, std::time(nullptr));
  EXPECT_GT(id->not_after_unix, std::time(nullptr));
}

TEST(X509Identity, HashesMatchTheDerEncoding) {
  auto cert = LoadCert("alice.pem");
  auto id = tls::ExtractIdentity(cert.get());
  ASSERT_TRUE(id);
  auto der = tls::ToDer(cert.get());
  ASSERT_TRUE(der);
  EXPECT_EQ(id->cert_sha256, tls::Sha256(*der));
  EXPECT_EQ(id->cert_sha256.size(), 32u);
  unsigned char* spki = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &spki);
  EXPECT_EQ(id->spki_sha256, tls::Sha256(std::string_view(reinterpret_cast<char*>(spki), len)));
  OPENSSL_free(spki);
}

TEST(X509Identity, ServerCertificateSans) {
  auto cert = LoadCert("edge-server.pem");
  auto id = tls::ExtractIdentity(cert.get());
  ASSERT_TRUE(id);
  EXPECT_EQ(id->dns, (std::vector<std::string>{"edge.test", "*.edge.test", "localhost"}));
  EXPECT_EQ(id->ip, (std::vector<std::string>{"127.0.0.1"}));
}

TEST(X509Identity, CertificateWithoutSansHasNone) {
  auto cert = LoadCert("bob.pem");
  auto id = tls::ExtractIdentity(cert.get());
  ASSERT_TRUE(id);
  EXPECT_TRUE(id->upn.empty() && id->rfc822.empty() && id->dns.empty());
  EXPECT_EQ(id->serial_hex, "0b0b");
}

TEST(X509Identity, UpnThatIsNotUtf8StringIsRefused) {
  auto cert = LoadCert("bad-upn.pem");
  auto id = tls::ExtractIdentity(cert.get());
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, "certificate_malformed_upn");
}

TEST(X509Identity, GarbageDerIsRefused) {
  EXPECT_FALSE(tls::ExtractIdentityFromDer("not a certificate"));
  auto der = tls::ToDer(LoadCert("alice.pem").get());
  EXPECT_TRUE(tls::ExtractIdentityFromDer(*der));
  EXPECT_FALSE(tls::ExtractIdentityFromDer(*der + "trailing"));
  EXPECT_FALSE(tls::ExtractIdentityFromDer(der->substr(0, der->size() - 1)));
}

TEST(TrustStore, VerifiesOnlyChainsToItsAnchors) {
  auto trust = tls::TrustStore::FromPemFile(Pki("device-ca.pem"));
  ASSERT_TRUE(trust);
  auto alice = tls::ToDer(LoadCert("alice.pem").get());
  auto mallory = tls::ToDer(LoadCert("mallory.pem").get());
  auto edge = tls::ToDer(LoadCert("edge-1.pem").get());
  EXPECT_TRUE(trust->VerifyClientChain({*alice}, std::time(nullptr)));
  auto m = trust->VerifyClientChain({*mallory}, std::time(nullptr));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, "identity_untrusted");
  EXPECT_FALSE(trust->VerifyClientChain({*edge}, std::time(nullptr)));
  // Far future: expired.
  EXPECT_FALSE(trust->VerifyClientChain({*alice}, std::time(nullptr) + 3650L * 86400));
  EXPECT_FALSE(trust->VerifyClientChain({}, std::time(nullptr)));
}

TEST(TrustStore, ClockSkewForgivesOnlyTheAllowance) {
  auto trust = tls::TrustStore::FromPemFile(Pki("device-ca.pem"));
  ASSERT_TRUE(trust);
  auto cert = LoadCert("alice.pem");
  auto alice = tls::ToDer(cert.get());
  auto id = tls::ExtractIdentity(cert.get());
  ASSERT_TRUE(id);
  std::time_t after = static_cast<std::time_t>(id->not_after_unix) + 100;
  EXPECT_FALSE(trust->VerifyClientChain({*alice}, after));
  EXPECT_TRUE(trust->VerifyClientChain({*alice}, after, 300));
  EXPECT_FALSE(trust->VerifyClientChain({*alice}, after + 400, 300));
}

tunnel::v1::ClientIdentity AssertedFor(const std::string& name) {
  auto cert = LoadCert(name);
  auto id = tls::ExtractIdentity(cert.get());
  tunnel::v1::ClientIdentity out;
  out.set_subject(id->subject);
  out.set_issuer(id->issuer);
  out.set_serial_hex(id->serial_hex);
  for (auto& u : id->upn) out.mutable_san()->add_upn(u);
  for (auto& e : id->rfc822) out.mutable_san()->add_rfc822(e);
  out.set_cert_sha256(id->cert_sha256);
  out.set_spki_sha256(id->spki_sha256);
  out.add_chain_der(*tls::ToDer(cert.get()));
  return out;
}

TEST(IdentityVerifier, AcceptsAnHonestAssertion) {
  auto verifier = broker::IdentityVerifier::Create(Pki("device-ca.pem"));
  ASSERT_TRUE(verifier);
  auto id = verifier->Verify(AssertedFor("alice.pem"), std::time(nullptr));
  ASSERT_TRUE(id) << id.error().detail;
  EXPECT_EQ(id->upn[0], "alice@corp.test");
}

TEST(IdentityVerifier, RefusesAnEdgeThatLiesAboutTheUpn) {
  auto verifier = broker::IdentityVerifier::Create(Pki("device-ca.pem"));
  auto asserted = AssertedFor("bob.pem");
  asserted.mutable_san()->add_upn("administrator@corp.test");  // bob's chain, someone else's name
  auto id = verifier->Verify(asserted, std::time(nullptr));
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, "identity_mismatch");
}

TEST(IdentityVerifier, RefusesAChainFromAnotherCa) {
  auto verifier = broker::IdentityVerifier::Create(Pki("device-ca.pem"));
  auto id = verifier->Verify(AssertedFor("mallory.pem"), std::time(nullptr));
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, "identity_untrusted");
}

TEST(IdentityVerifier, ARememberedChainIsStillComparedAndStillExpires) {
  auto verifier = broker::IdentityVerifier::Create(Pki("device-ca.pem"));
  ASSERT_TRUE(verifier);
  std::time_t now = std::time(nullptr);
  auto honest = AssertedFor("bob.pem");
  ASSERT_TRUE(verifier->Verify(honest, now));
  ASSERT_TRUE(verifier->Verify(honest, now + 1));  // from memory
  // The same remembered chain with a lie in the assertion is still caught.
  auto lying = honest;
  lying.mutable_san()->add_upn("administrator@corp.test");
  auto lie = verifier->Verify(lying, now + 2);
  ASSERT_FALSE(lie);
  EXPECT_EQ(lie.error().code, "identity_mismatch");
  // Memory never outlives the certificate: ten years on, the chain is verified again and fails.
  auto expired = verifier->Verify(honest, now + 3650L * 86400);
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, "identity_untrusted");
  // A chain that never verified is not remembered as good.
  EXPECT_FALSE(verifier->Verify(AssertedFor("mallory.pem"), now));
  EXPECT_FALSE(verifier->Verify(AssertedFor("mallory.pem"), now + 1));
}

}  // namespace
}  // namespace orthrus
