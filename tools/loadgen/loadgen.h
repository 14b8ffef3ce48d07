// orthrus-loadgen: shared types. The Asio code is in runner.cc only.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

namespace orthrus::loadgen {

// Hard caps: the tool refuses anything larger, whatever the command line says.
constexpr unsigned kMaxConnections = 20000;
constexpr unsigned kMaxThreads = 16;
constexpr double kMaxDurationSeconds = 600;
constexpr double kMaxRate = 1'000'000;

enum class Mode { kKeepAlive, kHandshake, kLongPoll };
const char* ModeName(Mode m);

struct PidSpec {
  std::string name;
  int pid = 0;
};

struct Options {
  Mode mode = Mode::kKeepAlive;
  std::string host = "127.0.0.1";  // an IP literal, loopback only
  uint16_t port = 0;
  std::string server_name;  // verified in the server certificate; sent as SNI unless an IP literal
  std::string host_header;  // default: server_name
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string path = "/";
  unsigned connections = 16;  // keep-alive/long-poll: connections; handshake: concurrent workers
  unsigned threads = 1;
  double duration_s = 10;  // measured window (keep-alive, handshake); long-poll: max time to open all
  double warmup_s = 1;     // before the window, not recorded
  double rate = 0;         // total requests/s, open loop; 0 = closed loop (as fast as answers come)
  double timeout_s = 30;   // per connect / handshake / request
  double settle_s = 3;     // long-poll: wait after the last connection opened before sampling memory
  double hold_s = 1;       // long-poll: keep the connections open this long after sampling
  unsigned open_concurrency = 128;  // long-poll: handshakes in flight while opening
  std::string tls_min = "1.2";
  std::vector<PidSpec> pids;
  bool json = false;
};

// Returns the options or an error message; "help" means usage was requested.
std::expected<Options, std::string> ParseOptions(int argc, char** argv);
std::string Usage();
// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104; anything else (and host names) is refused.
bool IsLoopbackLiteral(const std::string& host);

// Log-linear latency histogram (nanoseconds, relative error < 0.8 %), like HdrHistogram.
class Histogram {
 public:
  void Record(uint64_t ns) {
    if (ns >= kLimit) ns = kLimit - 1;
    ++counts_[Index(ns)];
    ++count_;
    sum_ += ns;
    if (ns > max_) max_ = ns;
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    if (o.max_ > max_) max_ = o.max_;
  }
  uint64_t count() const { return count_; }
  double MaxMs() const { return static_cast<double>(max_) / 1e6; }
  double MeanMs() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) / 1e6 : 0; }
  // p in [0, 1]: the smallest recorded value at or above that rank.
  double PercentileMs(double p) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(p * static_cast<double>(count_) + 0.999999);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        uint64_t v = Value(i);
        return static_cast<double>(v < max_ ? v : max_) / 1e6;
      }
    }
    return MaxMs();
  }

 private:
  static constexpr int kSub = 128;  // sub-buckets per power of two
  static constexpr uint64_t kLimit = uint64_t{1} << 42;  // ~73 minutes
  static size_t Index(uint64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    int msb = 63 - std::countl_zero(v);
    int shift = msb - 7;
    return static_cast<size_t>(kSub * (shift + 1)) + static_cast<size_t>((v >> shift) - kSub);
  }
  static uint64_t Value(size_t i) {
    if (i < kSub) return i;
    size_t shift = i / kSub - 1;
    uint64_t sub = i % kSub;
    uint64_t lower = (kSub + sub) << shift;
    return lower + ((uint64_t{1} << shift) >> 1);
  }
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(kSub * 36);
  uint64_t count_ = 0;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

// /proc/PID/stat utime+stime (all threads) and /proc/PID/status VmRSS.
struct ProcSample {
  bool ok = false;
  uint64_t cpu_ticks = 0;
  uint64_t rss_kib = 0;
};
ProcSample SampleProcess(int pid);
double SelfCpuSeconds();
// Busy ticks (user+nice+system+irq+softirq+steal) of all CPUs together, from /proc/stat.
uint64_t MachineBusyTicks();
double ClockTicksPerSecond();

struct ProcResult {
  PidSpec spec;
  ProcSample before;       // keep-alive/handshake: window start; long-poll: before opening
  ProcSample after;        // keep-alive/handshake: window end; long-poll: all open + settle
  ProcSample after_close;  // long-poll only: a moment after closing everything
};

struct RunResult {
  // Requests whose response completed inside the measured window.
  uint64_t completed_in_window = 0;
  uint64_t status_2xx = 0;
  uint64_t status_other = 0;
  uint64_t errors = 0;          // connection/TLS/HTTP failures (not counting the forced stop)
  uint64_t timeouts = 0;        // operations that exceeded --timeout
  uint64_t reconnects = 0;      // keep-alive: connections re-opened (server closed or failed)
  uint64_t connect_failures = 0;
  uint64_t unfinished = 0;      // requests scheduled in the window still unanswered at the forced stop
  uint64_t body_bytes = 0;      // response body bytes received in the window
  double window_s = 0;
  double open_s = 0;            // keep-alive: time to open all connections; long-poll: time to open all
  Histogram latency;            // keep-alive/handshake: per request, from send (closed) or intended send (open)
  Histogram handshake;          // connect + TLS handshake, per new connection
  std::string tls_version;
  std::string tls_cipher;
  std::string first_error;
  // long-poll
  unsigned opened = 0;
  unsigned still_open = 0;      // at the memory sample
  unsigned answered_early = 0;  // got a response (or a close) before we hung up
  std::vector<ProcResult> procs;
  double self_cpu_s = 0;        // this process's CPU (user+sys) over the window
  double machine_busy_s = 0;    // CPU time all CPUs spent busy over the window (anyone's)
};

std::expected<RunResult, std::string> Run(const Options& opt);
void PrintHuman(const Options& opt, const RunResult& r);
void PrintJson(const Options& opt, const RunResult& r);

}  // namespace orthrus::loadgen
