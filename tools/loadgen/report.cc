#include <cstdio>
#include <string>

#include "loadgen.h"

namespace orthrus::loadgen {
namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string Num(double v, int decimals = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

double CpuSeconds(const ProcResult& p) {
  if (!p.before.ok || !p.after.ok || p.after.cpu_ticks < p.before.cpu_ticks) return 0;
  return static_cast<double>(p.after.cpu_ticks - p.before.cpu_ticks) / ClockTicksPerSecond();
}

double RequestRate(const RunResult& r) {
  return r.window_s > 0 ? static_cast<double>(r.completed_in_window) / r.window_s : 0;
}

std::string LatencyJson(const Histogram& h) {
  return "{\"count\":" + std::to_string(h.count()) + ",\"p50\":" + Num(h.PercentileMs(0.5)) +
         ",\"p90\":" + Num(h.PercentileMs(0.9)) + ",\"p99\":" + Num(h.PercentileMs(0.99)) +
         ",\"p999\":" + Num(h.PercentileMs(0.999)) + ",\"max\":" + Num(h.MaxMs()) + ",\"mean\":" + Num(h.MeanMs()) + "}";
}

void PrintLatency(const char* label, const Histogram& h) {
  if (h.count() == 0) return;
  std::printf("%s: p50=%.3fms p90=%.3fms p99=%.3fms p99.9=%.3fms max=%.3fms mean=%.3fms (n=%llu)\n", label,
              h.PercentileMs(0.5), h.PercentileMs(0.9), h.PercentileMs(0.99), h.PercentileMs(0.999), h.MaxMs(),
              h.MeanMs(), static_cast<unsigned long long>(h.count()));
}

}  // namespace

void PrintHuman(const Options& opt, const RunResult& r) {
  const bool open_loop = opt.rate > 0;
  std::printf("orthrus-loadgen %s%s: %s:%u name=%s path=%s connections=%u threads=%u\n", ModeName(opt.mode),
              opt.mode == Mode::kLongPoll ? "" : (open_loop ? " open-loop" : " closed-loop"), opt.host.c_str(),
              opt.port, opt.server_name.c_str(), opt.path.c_str(), opt.connections, opt.threads);
  std::printf("tls: %s %s\n", r.tls_version.empty() ? "-" : r.tls_version.c_str(),
              r.tls_cipher.empty() ? "-" : r.tls_cipher.c_str());
  if (opt.mode != Mode::kLongPoll) {
    std::printf("window: %.1fs after %.1fs warm-up%s\n", r.window_s, opt.warmup_s,
                open_loop ? ("; target rate " + Num(opt.rate, 0) + " req/s").c_str() : "");
    std::printf("requests: %llu in window (2xx %llu, other %llu)  errors %llu  timeouts %llu  reconnects %llu  "
                "unfinished %llu\n",
                static_cast<unsigned long long>(r.completed_in_window), static_cast<unsigned long long>(r.status_2xx),
                static_cast<unsigned long long>(r.status_other), static_cast<unsigned long long>(r.errors),
                static_cast<unsigned long long>(r.timeouts), static_cast<unsigned long long>(r.reconnects),
                static_cast<unsigned long long>(r.unfinished));
    std::printf("throughput: %.1f %s/s  body %.2f MiB/s\n", RequestRate(r),
                opt.mode == Mode::kHandshake ? "handshakes+requests" : "requests",
                static_cast<double>(r.body_bytes) / r.window_s / 1048576.0);
    PrintLatency(open_loop ? "latency (from intended send)" : "latency (from send)", r.latency);
    PrintLatency("connect+handshake", r.handshake);
    std::printf("load generator: cpu %.2fs (%.0f%% of a core); whole machine busy %.2f CPUs\n", r.self_cpu_s,
                100.0 * r.self_cpu_s / r.window_s, r.machine_busy_s / r.window_s);
    for (const auto& p : r.procs) {
      double cpu = CpuSeconds(p);
      std::printf("process %s pid=%d: cpu %.2fs (%.0f%% of a core)  %.1f us/request  rss %.1f -> %.1f MiB\n",
                  p.spec.name.c_str(), p.spec.pid, cpu, 100.0 * cpu / r.window_s,
                  r.completed_in_window ? cpu * 1e6 / static_cast<double>(r.completed_in_window) : 0.0,
                  static_cast<double>(p.before.rss_kib) / 1024.0, static_cast<double>(p.after.rss_kib) / 1024.0);
    }
  } else {
    std::printf("opened %u of %u in %.1fs (connect failures %llu); held at the sample %u; answered early %u\n",
                r.opened, opt.connections, r.open_s, static_cast<unsigned long long>(r.connect_failures),
                r.still_open, r.answered_early);
    PrintLatency("connect+handshake", r.handshake);
    for (const auto& p : r.procs) {
      double delta = static_cast<double>(p.after.rss_kib) - static_cast<double>(p.before.rss_kib);
      std::printf("process %s pid=%d: rss %.1f -> %.1f MiB (closed: %.1f)  %.1f KiB per open connection\n",
                  p.spec.name.c_str(), p.spec.pid, static_cast<double>(p.before.rss_kib) / 1024.0,
                  static_cast<double>(p.after.rss_kib) / 1024.0, static_cast<double>(p.after_close.rss_kib) / 1024.0,
                  r.still_open ? delta / r.still_open : 0.0);
    }
  }
  if (!r.first_error.empty()) std::printf("first error: %s\n", r.first_error.c_str());
}

void PrintJson(const Options& opt, const RunResult& r) {
  const bool open_loop = opt.rate > 0;
  std::string j = "{";
  j += "\"mode\":" + JsonString(ModeName(opt.mode));
  j += ",\"loop\":" + JsonString(opt.mode == Mode::kLongPoll ? "none" : open_loop ? "open" : "closed");
  j += ",\"target\":" + JsonString(opt.host + ":" + std::to_string(opt.port));
  j += ",\"server_name\":" + JsonString(opt.server_name);
  j += ",\"path\":" + JsonString(opt.path);
  j += ",\"connections\":" + std::to_string(opt.connections);
  j += ",\"threads\":" + std::to_string(opt.threads);
  j += ",\"tls_version\":" + JsonString(r.tls_version);
  j += ",\"tls_cipher\":" + JsonString(r.tls_cipher);
  j += ",\"errors\":" + std::to_string(r.errors);
  j += ",\"timeouts\":" + std::to_string(r.timeouts);
  j += ",\"connect_failures\":" + std::to_string(r.connect_failures);
  j += ",\"first_error\":" + JsonString(r.first_error);
  j += ",\"handshake_ms\":" + LatencyJson(r.handshake);
  if (opt.mode != Mode::kLongPoll) {
    j += ",\"target_rate\":" + Num(opt.rate, 1);
    j += ",\"window_s\":" + Num(r.window_s);
    j += ",\"warmup_s\":" + Num(opt.warmup_s);
    j += ",\"requests\":" + std::to_string(r.completed_in_window);
    j += ",\"status_2xx\":" + std::to_string(r.status_2xx);
    j += ",\"status_other\":" + std::to_string(r.status_other);
    j += ",\"reconnects\":" + std::to_string(r.reconnects);
    j += ",\"unfinished\":" + std::to_string(r.unfinished);
    j += ",\"body_bytes\":" + std::to_string(r.body_bytes);
    j += ",\"rate\":" + Num(RequestRate(r), 1);
    j += ",\"latency_from\":" + JsonString(open_loop ? "intended_send" : "send");
    j += ",\"latency_ms\":" + LatencyJson(r.latency);
    j += ",\"loadgen_core_share\":" + Num(r.window_s > 0 ? r.self_cpu_s / r.window_s : 0);
    j += ",\"machine_busy_cpus\":" + Num(r.window_s > 0 ? r.machine_busy_s / r.window_s : 0);
  } else {
    j += ",\"opened\":" + std::to_string(r.opened);
    j += ",\"open_s\":" + Num(r.open_s);
    j += ",\"still_open\":" + std::to_string(r.still_open);
    j += ",\"answered_early\":" + std::to_string(r.answered_early);
  }
  j += ",\"processes\":[";
  for (size_t i = 0; i < r.procs.size(); ++i) {
    const auto& p = r.procs[i];
    if (i) j += ",";
    j += "{\"name\":" + JsonString(p.spec.name) + ",\"pid\":" + std::to_string(p.spec.pid);
    j += ",\"sampled\":" + std::string(p.before.ok && p.after.ok ? "true" : "false");
    j += ",\"rss_kib_before\":" + std::to_string(p.before.rss_kib);
    j += ",\"rss_kib_after\":" + std::to_string(p.after.rss_kib);
    if (opt.mode != Mode::kLongPoll) {
      double cpu = CpuSeconds(p);
      j += ",\"cpu_s\":" + Num(cpu);
      j += ",\"core_share\":" + Num(r.window_s > 0 ? cpu / r.window_s : 0);
      j += ",\"cpu_us_per_request\":" +
           Num(r.completed_in_window ? cpu * 1e6 / static_cast<double>(r.completed_in_window) : 0, 2);
    } else {
      double delta = static_cast<double>(p.after.rss_kib) - static_cast<double>(p.before.rss_kib);
      j += ",\"rss_kib_after_close\":" + std::to_string(p.after_close.rss_kib);
      j += ",\"kib_per_connection\":" + Num(r.still_open ? delta / r.still_open : 0, 2);
    }
    j += "}";
  }
  j += "]}";
  std::printf("%s\n", j.c_str());
}

}  // namespace orthrus::loadgen
