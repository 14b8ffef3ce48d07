// orthrusctl: the administrator's client for a broker's RevocationAdmin service, over mutual TLS
// with an admin certificate.
//
//   orthrusctl --broker HOST:PORT --cert admin.pem --key admin.key --ca internal-ca.pem
//              [--server-name NAME] [--timeout-ms N] COMMAND [options]
//
//   revoke       KEY --reason TEXT [--wait-ms N]   returns once stored; prints edge acknowledgements
//   unrevoke     KEY --reason TEXT [--wait-ms N]
//   list-revoked [--kind issuer_serial|cert_sha256|account|device_id] [--limit N] [--after-version V]
//   status       [--version V]
//   refresh-crls
//
//   KEY is one of:  --account NAME | --device-id ID | --cert-sha256 HEX
//                   | --issuer "CN=..,O=.." --serial HEX | --device-cert FILE [--by-hash]
//
// Exit status: 0 done, 1 the broker refused or failed (reason code printed), 2 bad command line,
// 3 cannot reach the broker.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/net_address.h"
#include "common/revocation/keys.h"
#include "common/revocation/revocation_set.h"
#include "common/tls/pem_files.h"
#include "common/tls/x509_identity.h"
#include "orthrus/revocation/v1/revocation.grpc.pb.h"

namespace {

namespace v1 = orthrus::revocation::v1;
using orthrus::Result;

constexpr const char* kUsage =
    "usage: orthrusctl --broker HOST:PORT --cert FILE --key FILE --ca FILE [--server-name NAME]\n"
    "                  [--timeout-ms N] COMMAND [options]\n"
    "commands:\n"
    "  revoke       KEY --reason TEXT [--wait-ms N]\n"
    "  unrevoke     KEY --reason TEXT [--wait-ms N]\n"
    "  list-revoked [--kind issuer_serial|cert_sha256|account|device_id] [--limit N] [--after-version V]\n"
    "  status       [--version V]\n"
    "  refresh-crls\n"
    "KEY: --account NAME | --device-id ID | --cert-sha256 HEX | --issuer SUBJECT --serial HEX\n"
    "     | --device-cert FILE [--by-hash]\n";

int Usage(const std::string& problem) {
  if (!problem.empty()) std::fprintf(stderr, "orthrusctl: %s\n", problem.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

// --name value pairs and bare --flags after the command.
struct Args {
  std::string command;
  std::map<std::string, std::string> opts;
  bool Has(const std::string& k) const { return opts.contains(k); }
  std::string Get(const std::string& k) const {
    auto it = opts.find(k);
    return it == opts.end() ? std::string() : it->second;
  }
};

std::optional<uint64_t> Number(const std::string& text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

Result<std::string> HexDecode(const std::string& hex) {
  std::string out;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string clean;
  for (char c : hex) {
    if (c != ':') clean.push_back(c);
  }
  if (clean.size() % 2 != 0) return orthrus::Fail("usage", "odd number of hex digits");
  for (size_t i = 0; i < clean.size(); i += 2) {
    int hi = digit(clean[i]);
    int lo = digit(clean[i + 1]);
    if (hi < 0 || lo < 0) return orthrus::Fail("usage", "not hexadecimal: " + hex);
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

Result<v1::EntryKey> KeyFromArgs(const Args& a) {
  v1::EntryKey key;
  int given = a.Has("--account") + a.Has("--device-id") + a.Has("--cert-sha256") + a.Has("--issuer") +
              a.Has("--device-cert");
  if (given != 1) {
    return orthrus::Fail("usage", "give exactly one of --account, --device-id, --cert-sha256, "
                                  "--issuer/--serial, --device-cert");
  }
  if (a.Has("--account")) {
    key.set_account(a.Get("--account"));
  } else if (a.Has("--device-id")) {
    key.set_device_id(a.Get("--device-id"));
  } else if (a.Has("--cert-sha256")) {
    ORTHRUS_ASSIGN_OR_RETURN(std::string sha, HexDecode(a.Get("--cert-sha256")));
    key.set_cert_sha256(sha);
  } else if (a.Has("--issuer")) {
    if (!a.Has("--serial")) return orthrus::Fail("usage", "--issuer needs --serial");
    ORTHRUS_ASSIGN_OR_RETURN(std::string serial, orthrus::revocation::SerialFromHex(a.Get("--serial")));
    key.mutable_issuer_serial()->set_issuer(a.Get("--issuer"));  // the broker resolves it
    key.mutable_issuer_serial()->set_serial(serial);
  } else {
    ORTHRUS_ASSIGN_OR_RETURN(auto certs, orthrus::tls::LoadCertificates(a.Get("--device-cert")));
    ORTHRUS_ASSIGN_OR_RETURN(auto keys, orthrus::revocation::KeysFromCertificate(certs.front().get()));
    if (a.Has("--by-hash")) {
      key.set_cert_sha256(keys.sha256);
    } else {
      key.mutable_issuer_serial()->set_issuer_der(keys.issuer_der);
      key.mutable_issuer_serial()->set_serial(keys.serial);
    }
  }
  return key;
}

void PrintEntry(const v1::Entry& e) {
  std::printf("%s\tversion %llu\trevoked by %s at %s\t%s\n", orthrus::revocation::DescribeKey(e.key()).c_str(),
              static_cast<unsigned long long>(e.version()), e.revoked_by().c_str(),
              orthrus::revocation::FormatUnixMs(e.revoked_at_unix_ms()).c_str(), e.reason().c_str());
}

void PrintAcks(const v1::EdgeAckCount& acks) {
  std::printf("version %llu acknowledged by %u of %u connected edges",
              static_cast<unsigned long long>(acks.version()), acks.edges_acknowledged(),
              acks.edges_connected());
  if (acks.pending_edges_size() > 0) {
    std::printf(" (pending:");
    for (const auto& e : acks.pending_edges()) std::printf(" %s", e.c_str());
    std::printf(")");
  }
  std::printf("\n");
}

void PrintCrl(const v1::CrlStatus& c) {
  std::printf("crl\t%s\t%s\tserials %llu\tnextUpdate %s\tnext refresh %s", c.source().c_str(),
              c.issuer().empty() ? "(none loaded)" : c.issuer().c_str(),
              static_cast<unsigned long long>(c.serial_count()),
              c.next_update_unix() == 0 ? "-" : orthrus::revocation::FormatUnixMs(c.next_update_unix() * 1000).c_str(),
              c.next_refresh_unix() == 0 ? "-" : orthrus::revocation::FormatUnixMs(c.next_refresh_unix() * 1000).c_str());
  if (!c.last_error_code().empty()) std::printf("\tlast error %s: %s", c.last_error_code().c_str(), c.last_error().c_str());
  std::printf("\n");
}

int Failed(const grpc::Status& status) {
  // The broker puts the reason code in the status message's first word, the detail after it.
  std::fprintf(stderr, "orthrusctl: %s\n", status.error_message().c_str());
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return 3;
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> global;
  Args args;
  const std::vector<std::string> bare_flags = {"--by-hash"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") return Usage("");
    if (a.rfind("--", 0) == 0) {
      bool bare = std::find(bare_flags.begin(), bare_flags.end(), a) != bare_flags.end();
      std::string value;
      if (!bare) {
        if (i + 1 >= argc) return Usage(a + " needs a value");
        value = argv[++i];
      }
      (args.command.empty() ? global : args.opts)[a] = value;
    } else if (args.command.empty()) {
      args.command = a;
    } else {
      return Usage("unexpected argument " + a);
    }
  }
  for (const char* required : {"--broker", "--cert", "--key", "--ca"}) {
    if (!global.contains(required)) return Usage(std::string(required) + " is required");
  }
  if (args.command.empty()) return Usage("no command");
  auto broker = orthrus::ParseHostPort(global["--broker"]);
  if (!broker) return Usage(broker.error().detail);
  uint64_t timeout_ms = 30000;
  if (global.contains("--timeout-ms")) {
    auto t = Number(global["--timeout-ms"]);
    if (!t) return Usage("--timeout-ms needs a number");
    timeout_ms = *t;
  }

  // Mutual TLS with the admin certificate; the key must not be readable by others.
  auto ca = orthrus::tls::ReadFile(global["--ca"]);
  auto cert = orthrus::tls::ReadFile(global["--cert"]);
  auto key_check = orthrus::tls::CheckCertificateAndKey(global["--cert"], global["--key"]);
  if (!ca || !cert || !key_check) {
    std::fprintf(stderr, "orthrusctl: %s\n",
                 (!ca ? ca.error() : !cert ? cert.error() : key_check.error()).detail.c_str());
    return 2;
  }
  auto key = orthrus::tls::ReadFile(global["--key"]);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *ca;
  tls.pem_cert_chain = *cert;
  tls.pem_private_key = *key;
  grpc::ChannelArguments channel_args;
  std::string server_name = global.contains("--server-name") ? global["--server-name"] : broker->host;
  channel_args.SetSslTargetNameOverride(server_name);
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  std::string target = broker->host_is_ip
                           ? (broker->host.find(':') != std::string::npos ? "ipv6:" : "ipv4:") + broker->ToString()
                           : "dns:///" + broker->ToString();
  auto channel = grpc::CreateCustomChannel(target, grpc::SslCredentials(tls), channel_args);
  auto stub = v1::RevocationAdmin::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));

  const std::string& cmd = args.command;
  if (cmd == "revoke" || cmd == "unrevoke") {
    auto entry_key = KeyFromArgs(args);
    if (!entry_key) return Usage(entry_key.error().detail);
    if (args.Get("--reason").empty()) return Usage(cmd + " needs --reason");
    uint32_t wait_ms = 5000;
    if (args.Has("--wait-ms")) {
      auto w = Number(args.Get("--wait-ms"));
      if (!w || *w > 600000) return Usage("--wait-ms needs a number of milliseconds");
      wait_ms = static_cast<uint32_t>(*w);
    }
    if (cmd == "revoke") {
      v1::RevokeRequest req;
      *req.mutable_key() = *entry_key;
      req.set_reason(args.Get("--reason"));
      req.set_wait_for_edges_ms(wait_ms);
      v1::RevokeResponse res;
      grpc::Status st = stub->Revoke(&ctx, req, &res);
      if (!st.ok()) return Failed(st);
      std::printf(res.already_revoked() ? "already revoked: " : "revoked: ");
      PrintEntry(res.entry());
      PrintAcks(res.acks());
    } else {
      v1::UnrevokeRequest req;
      *req.mutable_key() = *entry_key;
      req.set_reason(args.Get("--reason"));
      req.set_wait_for_edges_ms(wait_ms);
      v1::UnrevokeResponse res;
      grpc::Status st = stub->Unrevoke(&ctx, req, &res);
      if (!st.ok()) return Failed(st);
      std::printf("unrevoked: ");
      PrintEntry(res.removed());
      PrintAcks(res.acks());
    }
    return 0;
  }
  if (cmd == "list-revoked") {
    v1::ListRevokedRequest req;
    req.set_kind(args.Get("--kind"));
    if (args.Has("--limit")) {
      auto n = Number(args.Get("--limit"));
      if (!n || *n > 100000) return Usage("--limit needs a number");
      req.set_limit(static_cast<uint32_t>(*n));
    }
    if (args.Has("--after-version")) {
      auto n = Number(args.Get("--after-version"));
      if (!n) return Usage("--after-version needs a number");
      req.set_after_version(*n);
    }
    v1::ListRevokedResponse res;
    grpc::Status st = stub->ListRevoked(&ctx, req, &res);
    if (!st.ok()) return Failed(st);
    for (const auto& e : res.entries()) PrintEntry(e);
    for (const auto& c : res.crls()) PrintCrl(c);
    std::printf("feed version %llu%s\n", static_cast<unsigned long long>(res.version()),
                res.more() ? " (more: use --after-version with the last version listed)" : "");
    return 0;
  }
  if (cmd == "status") {
    v1::StatusRequest req;
    if (args.Has("--version")) {
      auto n = Number(args.Get("--version"));
      if (!n) return Usage("--version needs a number");
      req.set_version(*n);
    }
    v1::StatusResponse res;
    grpc::Status st = stub->Status(&ctx, req, &res);
    if (!st.ok()) return Failed(st);
    std::printf("feed %s version %llu (deltas from %llu), %llu instant revocations\n", res.feed_id().c_str(),
                static_cast<unsigned long long>(res.version()),
                static_cast<unsigned long long>(res.oldest_delta_version()),
                static_cast<unsigned long long>(res.instant_entries()));
    PrintAcks(res.acks());
    for (const auto& e : res.edges()) {
      std::printf("edge\t%s\t%s\tacknowledged %llu\n", e.name().c_str(), e.connected() ? "connected" : "disconnected",
                  static_cast<unsigned long long>(e.acknowledged_version()));
    }
    for (const auto& c : res.crls()) PrintCrl(c);
    return 0;
  }
  if (cmd == "refresh-crls") {
    v1::RefreshCrlsRequest req;
    v1::RefreshCrlsResponse res;
    grpc::Status st = stub->RefreshCrls(&ctx, req, &res);
    if (!st.ok()) return Failed(st);
    for (const auto& c : res.crls()) PrintCrl(c);
    std::printf("feed version %llu\n", static_cast<unsigned long long>(res.version()));
    return 0;
  }
  return Usage("unknown command " + cmd);
}
