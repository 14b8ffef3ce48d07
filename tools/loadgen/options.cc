#include <arpa/inet.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>

#include "loadgen.h"

namespace orthrus::loadgen {

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kKeepAlive: return "keepalive";
    case Mode::kHandshake: return "handshake";
    case Mode::kLongPoll: return "longpoll";
  }
  return "?";
}

std::string Usage() {
  return R"(orthrus-loadgen: HTTPS load over loopback with a client certificate.

  orthrus-loadgen --target 127.0.0.1:PORT --server-name NAME --ca CA.pem --cert CERT.pem --key KEY.pem
                  [--mode keepalive|handshake|longpoll] [--path /] [--connections N] [--duration S]
                  [--rate R] [--warmup S] [--threads T] [--timeout S] [--pid NAME=PID ...] [--json]

Modes
  keepalive  N keep-alive connections send GET PATH for S seconds (after --warmup).
             Without --rate: closed loop, each connection sends its next request when the answer
             is in; latency is measured from the send. With --rate R: open loop, R requests/s in
             total on a fixed schedule (wrk2-style); latency is measured from the intended send
             time, so a stalled server is charged for the requests it delayed (no coordinated
             omission).
  handshake  N workers each open a new TCP+TLS connection per request (full handshake, no session
             resumption), send GET PATH with "Connection: close", read the answer, close.
             --rate R works here too (open loop).
  longpoll   open N connections, each sending GET PATH that the server holds; once all are open
             and --settle S passed, sample VmRSS of every --pid and report the growth per open
             connection; keep them --hold S longer, then close. --duration caps the opening time.

Options
  --target IP:PORT       IPv4 127.0.0.0/8 or [::1]; any other address is refused
  --server-name NAME     name (or IP) verified in the server certificate; sent as SNI
  --host-header NAME     Host header (default: the server name)
  --ca FILE              CA bundle the server certificate must chain to
  --cert FILE --key FILE client certificate (chain) and key, PEM
  --connections N        at most 20000 (default 16)
  --duration S           at most 600 (default 10)
  --threads T            event-loop threads, at most 16 (default 1)
  --tls-min 1.2|1.3      lowest TLS version offered (default 1.2; the highest is always 1.3)
  --open-concurrency K   long-poll: handshakes in flight while opening (default 128)
  --settle S --hold S    long-poll timing (defaults 3 and 1)
  --pid NAME=PID         sample this process: CPU (utime+stime) and VmRSS; repeatable
  --json                 print one JSON object instead of text
)";
}

bool IsLoopbackLiteral(const std::string& host) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) return buf[0] == 127;
  if (inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    static const unsigned char loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(buf, loop6, 16) == 0) return true;
    return std::memcmp(buf, mapped, 12) == 0 && buf[12] == 127;
  }
  return false;
}

namespace {

bool ParseDouble(std::string_view s, double& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(out);
}

bool ParseUnsigned(std::string_view s, unsigned& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

std::expected<Options, std::string> ParseOptions(int argc, char** argv) {
  Options o;
  bool have_target = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") return std::unexpected(std::string("help"));
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) return std::unexpected("option " + std::string(a) + " needs a value");
    std::string v = argv[++i];
    auto bad = [&](const char* what) { return std::unexpected(std::string(a) + ": " + what + ": '" + v + "'"); };
    if (a == "--target") {
      size_t colon = v.rfind(':');
      if (colon == std::string::npos) return bad("expected IP:PORT");
      std::string host = v.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      unsigned port = 0;
      if (!ParseUnsigned(std::string_view(v).substr(colon + 1), port) || port == 0 || port > 65535) {
        return bad("bad port");
      }
      if (!IsLoopbackLiteral(host)) {
        return bad("refused: only loopback IP literals (127.0.0.0/8, ::1) may be targeted");
      }
      o.host = host;
      o.port = static_cast<uint16_t>(port);
      have_target = true;
    } else if (a == "--mode") {
      if (v == "keepalive") o.mode = Mode::kKeepAlive;
      else if (v == "handshake") o.mode = Mode::kHandshake;
      else if (v == "longpoll") o.mode = Mode::kLongPoll;
      else return bad("expected keepalive, handshake or longpoll");
    } else if (a == "--server-name") {
      o.server_name = v;
    } else if (a == "--host-header") {
      o.host_header = v;
    } else if (a == "--ca") {
      o.ca_file = v;
    } else if (a == "--cert") {
      o.cert_file = v;
    } else if (a == "--key") {
      o.key_file = v;
    } else if (a == "--path") {
      if (v.empty() || v[0] != '/' || v.find_first_of(" \r\n") != std::string::npos) return bad("bad path");
      o.path = v;
    } else if (a == "--connections") {
      if (!ParseUnsigned(v, o.connections) || o.connections == 0) return bad("expected a positive number");
      if (o.connections > kMaxConnections) return bad("more than the hard cap of 20000");
    } else if (a == "--threads") {
      if (!ParseUnsigned(v, o.threads) || o.threads == 0 || o.threads > kMaxThreads) return bad("expected 1..16");
    } else if (a == "--open-concurrency") {
      if (!ParseUnsigned(v, o.open_concurrency) || o.open_concurrency == 0) return bad("expected a positive number");
    } else if (a == "--duration" || a == "--warmup" || a == "--rate" || a == "--timeout" || a == "--settle" ||
               a == "--hold") {
      double d = 0;
      if (!ParseDouble(v, d) || d < 0) return bad("expected a non-negative number");
      if (a == "--rate") {
        if (d > kMaxRate) return bad("above the cap of 1000000 requests/s");
        o.rate = d;
      } else {
        if (d > kMaxDurationSeconds) return bad("above the cap of 600 s");
        if (a == "--duration") o.duration_s = d;
        if (a == "--warmup") o.warmup_s = d;
        if (a == "--timeout") o.timeout_s = d;
        if (a == "--settle") o.settle_s = d;
        if (a == "--hold") o.hold_s = d;
      }
    } else if (a == "--tls-min") {
      if (v != "1.2" && v != "1.3") return bad("expected 1.2 or 1.3");
      o.tls_min = v;
    } else if (a == "--pid") {
      size_t eq = v.find('=');
      unsigned pid = 0;
      if (eq == std::string::npos || eq == 0 || !ParseUnsigned(std::string_view(v).substr(eq + 1), pid) || pid == 0) {
        return bad("expected NAME=PID");
      }
      o.pids.push_back({v.substr(0, eq), static_cast<int>(pid)});
    } else {
      return std::unexpected("unknown option " + std::string(a) + " (see --help)");
    }
  }
  if (!have_target) return std::unexpected(std::string("--target IP:PORT is required"));
  if (o.server_name.empty()) return std::unexpected(std::string("--server-name is required"));
  if (o.ca_file.empty()) return std::unexpected(std::string("--ca is required (the server is always verified)"));
  if (o.cert_file.empty() != o.key_file.empty()) return std::unexpected(std::string("--cert and --key go together"));
  if (o.duration_s <= 0) return std::unexpected(std::string("--duration must be positive"));
  if (o.timeout_s <= 0) return std::unexpected(std::string("--timeout must be positive"));
  if (o.mode == Mode::kLongPoll && o.rate > 0) return std::unexpected(std::string("--rate does not apply to longpoll"));
  if (o.host_header.empty()) o.host_header = o.server_name;
  if (o.threads > o.connections) o.threads = o.connections;
  return o;
}

}  // namespace orthrus::loadgen
