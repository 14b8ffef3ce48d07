#!/usr/bin/python3
# Creates every account of the Orthrus CORP.TEST test domain in ONE process (Samba python API, local sam.ldb,
# works with samba stopped) and exports the keytabs.
# Must run with /usr/bin/python3 (a pyenv/venv python has no 'samba' module).
#
# usage: /usr/bin/python3 accounts.py --smbconf DC/etc/smb.conf --outdir ROOT \
#            --carol-serial HEX --carol-ski HEX
#   HEX values are as printed by openssl (colons allowed, any case), e.g. 0A1B2C3D4E / 12:AB:...
#
# Fixed test passwords (throwaway domain only): see README.md.
import argparse
import os
import sys

import ldb
from samba import dsdb, enable_net_export_keytab
from samba.auth import system_session
from samba.net import Net
from samba.netcmd.common import NEVER_TIMESTAMP
from samba.param import LoadParm
from samba.samdb import SamDB

ap = argparse.ArgumentParser()
ap.add_argument("--smbconf", required=True)
ap.add_argument("--outdir", required=True)
ap.add_argument("--carol-serial", required=True, help="serial of pki/carol.pem, big-endian hex as openssl prints it")
ap.add_argument("--carol-ski", required=True, help="subjectKeyIdentifier of pki/carol.pem, hex")
args = ap.parse_args()

CA_ISSUER_AD = "DC=test,DC=corp,CN=Corp CA"   # AD (X.500, root-first) order of the issuer DN of pki/ca.pem


def clean_hex(h):
    h = h.strip().replace(":", "").replace(" ", "").lower()
    if h.startswith("serial="):
        h = h[len("serial="):]
    if h.startswith("0x"):
        h = h[2:]
    if len(h) % 2:
        h = "0" + h
    int(h, 16)  # validates
    return h


def reversed_bytes(h):
    """AD's <SR> holds the serial number's bytes in reverse order: 0a1b2c -> 2c1b0a."""
    return "".join(h[i:i + 2] for i in range(len(h) - 2, -2, -2))


carol_serial = clean_hex(args.carol_serial)
carol_ski = clean_hex(args.carol_ski)
CAROL_ISSUER_SERIAL = "X509:<I>%s<SR>%s" % (CA_ISSUER_AD, reversed_bytes(carol_serial))
CAROL_SKI = "X509:<SKI>%s" % carol_ski

lp = LoadParm()
lp.load(args.smbconf)
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
base = str(db.domain_dn())
R, A = ldb.FLAG_MOD_REPLACE, ldb.FLAG_MOD_ADD


def modify(dn, attrs):
    m = ldb.Message()
    m.dn = ldb.Dn(db, dn)
    for k, (flag, v) in attrs.items():
        m[k] = ldb.MessageElement(v, flag, k)
    db.modify(m)


def user(name, password, upn=None, mail=None, **kw):
    db.newuser(name, password, useusernameascn=True, mailaddress=mail, **kw)
    db.setexpiry("(sAMAccountName=%s)" % name, 0, no_expiry_req=True)
    dn = "CN=%s,CN=Users,%s" % (name, base)
    if upn is not None:
        modify(dn, {"userPrincipalName": (R, upn)})
    return dn


def uac(name, flag, on=True):
    db.toggle_userAccountFlags("(sAMAccountName=%s)" % name, flag, on=on)


# test-friendly password policy: no complexity, no expiry, no history, no lockout
modify(base, {"pwdProperties": (R, "0"), "maxPwdAge": (R, str(NEVER_TIMESTAMP)), "minPwdAge": (R, "0"),
              "pwdHistoryLength": (R, "0"), "minPwdLength": (R, "0"), "lockoutThreshold": (R, "0")})

# alice: the normal user. UPN == mail == the UPN/email SANs of pki/alice.pem
user("alice", "AlicePass1!", upn="alice@corp.test", mail="alice@corp.test", givenname="Alice", surname="Test")

# bob: disabled (userAccountControl 514)
user("bob", "BobPass1!", upn="bob@corp.test", mail="bob@corp.test")
db.disable_account("(sAMAccountName=bob)")

# carol: reachable ONLY through strong altSecurityIdentities mappings. Her UPN matches nothing in her
# certificate (which has no SAN at all) and she has no mail.
carol = user("carol", "CarolPass1!", upn="carol.x@corp.test")
modify(carol, {"altSecurityIdentities": (A, [CAROL_ISSUER_SERIAL, CAROL_SKI])})

# dave: "account is sensitive and cannot be delegated"
user("dave", "DavePass1!", upn="dave@corp.test", mail="dave@corp.test")
uac("dave", dsdb.UF_NOT_DELEGATED)

# erin + frank: ambiguous mail (both shared@corp.test); their UPNs are distinct
user("erin", "ErinPass1!", upn="erin@corp.test", mail="shared@corp.test")
user("frank", "FrankPass1!", upn="frank@corp.test", mail="shared@corp.test")

# svc-broker: KCD with protocol transition (T2A4D) to HTTP/exchange.corp.test ONLY; AES only
broker = user("svc-broker", "BrokerPass1!", upn="svc-broker@corp.test")
modify(broker, {"servicePrincipalName": (A, "HTTP/broker.corp.test"),
                "msDS-AllowedToDelegateTo": (A, "HTTP/exchange.corp.test"),
                "msDS-SupportedEncryptionTypes": (R, "24")})
uac("svc-broker", dsdb.UF_TRUSTED_TO_AUTHENTICATE_FOR_DELEGATION)

# backend service accounts. 24 = AES128+AES256: AES tickets and AES keys in the SPN keytabs
# (without the attribute Samba issues RC4 tickets and exports only RC4 keys for the SPN).
for acct, pw, spn, etypes in (("svc-exchange", "ExchangePass1!", "HTTP/exchange.corp.test", "24"),
                              ("svc-other", "OtherPass1!", "HTTP/other.corp.test", "24"),
                              ("svc-rc4", "Rc4Pass1!", "HTTP/rc4.corp.test", "4")):   # 4 = RC4 only
    dn = user(acct, pw)
    modify(dn, {"servicePrincipalName": (A, spn), "msDS-SupportedEncryptionTypes": (R, etypes)})

enable_net_export_keytab()
net = Net(None, lp)
for kt, princs in (("broker.keytab", ["svc-broker"]),
                   ("exchange.keytab", ["HTTP/exchange.corp.test"]),
                   ("other.keytab", ["HTTP/other.corp.test", "svc-other"]),
                   ("rc4.keytab", ["HTTP/rc4.corp.test", "svc-rc4"])):
    path = os.path.join(args.outdir, kt)
    if os.path.exists(path):
        os.unlink(path)
    for p in princs:
        net.export_keytab(keytab=path, principal=p)
    os.chmod(path, 0o600)

with open(os.path.join(args.outdir, "carol-altsecid.txt"), "w") as f:
    f.write(CAROL_ISSUER_SERIAL + "\n" + CAROL_SKI + "\n")

print("accounts: alice bob(disabled) carol(altSecurityIdentities only) dave(NOT_DELEGATED) erin+frank(shared mail)"
      " svc-broker(T2A4D->HTTP/exchange.corp.test) svc-exchange svc-other svc-rc4")
print("carol altSecurityIdentities:", CAROL_ISSUER_SERIAL, "|", CAROL_SKI)
sys.exit(0)
