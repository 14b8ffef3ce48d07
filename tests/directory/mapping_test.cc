// Pure parts of the directory: rule names, AD string formats, SID extension, filters.
#include <gtest/gtest.h>

#include "broker/directory/directory.h"
#include "broker/directory/mapping.h"
#include "test_certs.h"

namespace orthrus::broker {
namespace {

using directory_internal::BuildFilter;
using directory_internal::EscapeFilterValue;
using directory_internal::LeafFacts;
using directory_internal::ReadLeafFacts;
using directory_internal::ReverseRdnOrder;
using directory_internal::ReverseSerialHex;
using directory_internal::SidBinaryToText;
using directory_internal::SidTextToBinary;
using testing::IdentityFromPem;
using testing::MakeCertificate;
using testing::SidExtensionConfig;
using testing::TempDir;

std::string Pki(const std::string& name) { return std::string(ORTHRUS_TEST_PKI_DIR) + "/" + name; }

TEST(MappingNames, RoundTripAndStrength) {
  for (MappingKind kind : {MappingKind::kAltSecIssuerSerial, MappingKind::kAltSecSki,
                           MappingKind::kAltSecSha1PublicKey, MappingKind::kSidExtension,
                           MappingKind::kUpn, MappingKind::kRfc822, MappingKind::kAltSecIssuerSubject}) {
    auto parsed = ParseMapping(MappingName(kind));
    ASSERT_TRUE(parsed) << MappingName(kind);
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(MappingName(MappingKind::kAltSecIssuerSerial), "altsec-issuer-serial");
  EXPECT_EQ(MappingName(MappingKind::kUpn), "upn");
  EXPECT_TRUE(IsStrong(MappingKind::kAltSecIssuerSerial));
  EXPECT_TRUE(IsStrong(MappingKind::kAltSecSki));
  EXPECT_TRUE(IsStrong(MappingKind::kAltSecSha1PublicKey));
  EXPECT_TRUE(IsStrong(MappingKind::kSidExtension));
  EXPECT_FALSE(IsStrong(MappingKind::kUpn));
  EXPECT_FALSE(IsStrong(MappingKind::kRfc822));
  EXPECT_FALSE(IsStrong(MappingKind::kAltSecIssuerSubject));
  auto bad = ParseMapping("UPN");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().detail.find("altsec-issuer-serial"), std::string::npos);
  EXPECT_FALSE(ParseMapping(""));
}

TEST(AltSecIssuerSerial, IssuerInEncodingOrderAndSerialReversed) {
  auto alice = IdentityFromPem(Pki("alice.pem"));
  ASSERT_TRUE(alice) << alice.error().detail;
  EXPECT_EQ(alice->issuer, "CN=Orthrus Test Device CA,O=Orthrus Test");
  EXPECT_EQ(AltSecIssuerSerial(*alice), "X509:<I>O=Orthrus Test,CN=Orthrus Test Device CA<SR>2c1b0a");
  // Without the DER (identity as the edge asserted it) the strings give the same answer.
  alice->chain_der.clear();
  EXPECT_EQ(AltSecIssuerSerial(*alice), "X509:<I>O=Orthrus Test,CN=Orthrus Test Device CA<SR>2c1b0a");
}

TEST(AltSecIssuerSerial, SignOctetIsPartOfTheReversedSerial) {
  EXPECT_EQ(ReverseSerialHex("0a1b2c"), "2c1b0a");
  EXPECT_EQ(ReverseSerialHex("0a1b2c3d4e"), "4e3d2c1b0a");
  EXPECT_EQ(ReverseSerialHex("8a0001"), "01008a00");
  EXPECT_EQ(ReverseSerialHex("1"), "01");
  TempDir dir;
  std::string pem = MakeCertificate(dir, "highbit", "0x8a0001", "");
  ASSERT_FALSE(pem.empty());
  auto id = IdentityFromPem(pem);
  ASSERT_TRUE(id);
  EXPECT_EQ(AltSecIssuerSerial(*id), "X509:<I>CN=highbit<SR>01008a00");
}

TEST(ReverseRdnOrder, KeepsEscapesAndMultiValuedRdns) {
  EXPECT_EQ(ReverseRdnOrder("CN=Corp CA,DC=corp,DC=test"), "DC=test,DC=corp,CN=Corp CA");
  EXPECT_EQ(ReverseRdnOrder("CN=a\\,b,O=x+OU=y"), "O=x+OU=y,CN=a\\,b");
  EXPECT_EQ(ReverseRdnOrder("CN=single"), "CN=single");
}

TEST(LeafFacts, SkiAndSha1PublicKey) {
  TempDir dir;
  std::string pem = MakeCertificate(dir, "ski", "0x01", "subjectKeyIdentifier=hash\n");
  ASSERT_FALSE(pem.empty());
  auto id = IdentityFromPem(pem);
  ASSERT_TRUE(id);
  auto facts = ReadLeafFacts(*id);
  ASSERT_TRUE(facts) << facts.error().detail;
  // openssl's "hash" SKI is RFC 5280 method 1: SHA-1 of the subjectPublicKey bits, the same
  // bytes SHA1-PUKEY hashes.
  EXPECT_EQ(facts->ski_hex.size(), 40u);
  EXPECT_EQ(facts->ski_hex, facts->sha1_pukey_hex);
  std::string expected_ski;
  std::string command = "openssl x509 -in '" + pem + "' -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :\\n' | tr A-F a-f > '" +
                        dir.path() + "/ski.txt'";
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::ifstream(dir.path() + "/ski.txt") >> expected_ski;
  EXPECT_EQ(facts->ski_hex, expected_ski);
  EXPECT_FALSE(facts->sid.has_value());
  EXPECT_EQ(facts->subject_x500, "CN=ski");
  EXPECT_EQ(*BuildFilter(MappingKind::kAltSecSki, *id, *facts),
            "(&(objectCategory=person)(objectClass=user)(altSecurityIdentities=X509:<SKI>" + expected_ski + "))");
}

TEST(SidExtension, ParsesTheAdCsForm) {
  TempDir dir;
  std::string pem = MakeCertificate(dir, "sid", "0x02", SidExtensionConfig("S-1-5-21-1-2-3-1104"));
  ASSERT_FALSE(pem.empty());
  auto id = IdentityFromPem(pem);
  ASSERT_TRUE(id);
  auto facts = ReadLeafFacts(*id);
  ASSERT_TRUE(facts) << facts.error().detail;
  ASSERT_TRUE(facts->sid.has_value());
  EXPECT_EQ(*facts->sid, "S-1-5-21-1-2-3-1104");
  // Binary SID: libldap escapes every non-printable byte as \xx.
  auto filter = BuildFilter(MappingKind::kSidExtension, *id, *facts);
  ASSERT_TRUE(filter);
  EXPECT_EQ(*filter,
            "(&(objectCategory=person)(objectClass=user)(objectSid="
            "\\01\\05\\00\\00\\00\\00\\00\\05\\15\\00\\00\\00\\01\\00\\00\\00"
            "\\02\\00\\00\\00\\03\\00\\00\\00P\\04\\00\\00))");
}

TEST(SidExtension, RefusesMalformed) {
  TempDir dir;
  struct Case {
    std::string name;
    std::string extension;
  };
  std::vector<Case> cases = {
      {"wrong-oid", "1.3.6.1.4.1.311.25.2=ASN1:SEQUENCE:n\n[n]\nname=IMPLICIT:0C,SEQUENCE:o\n"
                    "[o]\ntype=OID:1.3.6.1.4.1.311.20.2.3\nvalue=EXPLICIT:0C,OCTETSTRING:S-1-5-21-1-2-3-4\n"},
      {"utf8-value", "1.3.6.1.4.1.311.25.2=ASN1:SEQUENCE:n\n[n]\nname=IMPLICIT:0C,SEQUENCE:o\n"
                     "[o]\ntype=OID:1.3.6.1.4.1.311.25.2.1\nvalue=EXPLICIT:0C,UTF8:S-1-5-21-1-2-3-4\n"},
      {"bad-text", SidExtensionConfig("S-1-5-21-1-2-x-4")},
      {"leading-zero", SidExtensionConfig("S-1-5-21-01-2-3-4")},
      {"sub-overflow", SidExtensionConfig("S-1-5-21-4294967296")},
      {"trailing-dash", SidExtensionConfig("S-1-5-21-")},
      {"not-general-names", "1.3.6.1.4.1.311.25.2=ASN1:OCTETSTRING:S-1-5-21-1-2-3-4\n"},
      {"two-names", "1.3.6.1.4.1.311.25.2=ASN1:SEQUENCE:n\n[n]\na=IMPLICIT:0C,SEQUENCE:o\nb=IMPLICIT:0C,SEQUENCE:o\n"
                    "[o]\ntype=OID:1.3.6.1.4.1.311.25.2.1\nvalue=EXPLICIT:0C,OCTETSTRING:S-1-5-21-1-2-3-4\n"},
      {"dns-name", "1.3.6.1.4.1.311.25.2=ASN1:SEQUENCE:n\n[n]\nname=IMPLICIT:2,IA5:S-1-5-21-1-2-3-4\n"},
  };
  for (const auto& c : cases) {
    std::string pem = MakeCertificate(dir, c.name, "0x03", c.extension);
    ASSERT_FALSE(pem.empty()) << c.name;
    auto id = IdentityFromPem(pem);
    ASSERT_TRUE(id) << c.name;
    auto facts = ReadLeafFacts(*id);
    ASSERT_FALSE(facts) << c.name << " parsed as " << facts->sid.value_or("<none>");
    EXPECT_EQ(facts.error().code, "client_certificate_malformed") << c.name;
  }
}

TEST(Sid, TextBinaryRoundTrip) {
  // bob's objectSid from the test domain (base64 AQUAAAAAAAUVAAAAHGOKKXmZ5G/ev1eeTwQAAA==).
  const std::string bob("\x01\x05\x00\x00\x00\x00\x00\x05\x15\x00\x00\x00\x1c\x63\x8a\x29\x79\x99\xe4\x6f"
                        "\xde\xbf\x57\x9e\x4f\x04\x00\x00",
                        28);
  auto text = SidBinaryToText(bob);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "S-1-5-21-696935196-1877252473-2656550878-1103");
  auto binary = SidTextToBinary(*text);
  ASSERT_TRUE(binary);
  EXPECT_EQ(*binary, bob);
  EXPECT_FALSE(SidTextToBinary("S-1-5"));
  EXPECT_FALSE(SidTextToBinary("S-2-5-21"));
  EXPECT_FALSE(SidTextToBinary("S-1-281474976710656-1"));
  EXPECT_FALSE(SidTextToBinary("S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16"));
  EXPECT_FALSE(SidBinaryToText(bob.substr(0, 27)));
}

TEST(Filters, ValuesAreEscapedAndRulesWithoutDataAreSkipped) {
  EXPECT_EQ(EscapeFilterValue("a*(b)\\"), "a\\2A\\28b\\29\\5C");
  tls::CertIdentity id;
  id.issuer = "CN=Corp CA,DC=corp,DC=test";
  id.subject = "CN=x";
  id.serial_hex = "0a1b2c";
  id.upn = {"evil*)(userPrincipalName=*"};
  LeafFacts facts;
  auto read = ReadLeafFacts(id);
  ASSERT_TRUE(read);
  facts = *read;
  EXPECT_EQ(*BuildFilter(MappingKind::kUpn, id, facts),
            "(&(objectCategory=person)(objectClass=user)(userPrincipalName=evil\\2A\\29\\28userPrincipalName=\\2A))");
  EXPECT_EQ(*BuildFilter(MappingKind::kAltSecIssuerSerial, id, facts),
            "(&(objectCategory=person)(objectClass=user)"
            "(altSecurityIdentities=X509:<I>DC=test,DC=corp,CN=Corp CA<SR>2c1b0a))");
  EXPECT_EQ(*BuildFilter(MappingKind::kAltSecIssuerSubject, id, facts),
            "(&(objectCategory=person)(objectClass=user)"
            "(altSecurityIdentities=X509:<I>DC=test,DC=corp,CN=Corp CA<S>CN=x))");
  // No e-mail SAN, no DER (so no SKI, public key or SID): those rules are skipped.
  EXPECT_FALSE(BuildFilter(MappingKind::kRfc822, id, facts));
  EXPECT_FALSE(BuildFilter(MappingKind::kAltSecSki, id, facts));
  EXPECT_FALSE(BuildFilter(MappingKind::kAltSecSha1PublicKey, id, facts));
  EXPECT_FALSE(BuildFilter(MappingKind::kSidExtension, id, facts));
  id.rfc822 = {"a@corp.test", "b@corp.test"};
  EXPECT_EQ(*BuildFilter(MappingKind::kRfc822, id, facts),
            "(&(objectCategory=person)(objectClass=user)(|(mail=a@corp.test)(mail=b@corp.test)))");
}

TEST(MakeLdapDirectory, RefusesUnsafeSettings) {
  DirectorySettings s;
  s.uri = "ldap://dc1.corp.test";
  s.base_dn = "DC=corp,DC=test";
  s.realm = "CORP.TEST";
  s.rules = {MappingKind::kUpn};
  s.bind_dn = "CN=svc,DC=corp,DC=test";
  s.bind_password_file = "/dev/null";
  auto plain = MakeLdapDirectory(s);
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code, "directory_config_invalid");
  s.start_tls = true;
  EXPECT_TRUE(MakeLdapDirectory(s));
  s.bind_dn.clear();
  s.keytab_file = "/nonexistent/broker.keytab";
  s.principal = "svc-broker@CORP.TEST";
  EXPECT_FALSE(MakeLdapDirectory(s));
  s.rules.clear();
  EXPECT_FALSE(MakeLdapDirectory(s));
}

}  // namespace
}  // namespace orthrus::broker
