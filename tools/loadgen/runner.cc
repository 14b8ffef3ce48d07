// The three load modes on Boost.Asio coroutines + OpenSSL. One io_context per thread; every
// connection belongs to one thread, so per-thread state needs no locks.
//
// g++ 12 note: only named locals are passed into co_await expressions (temporaries there trip a
// compiler bug), hence the many one-line locals below.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "http_response.h"
#include "loadgen.h"

namespace orthrus::loadgen {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr Clock::time_point kNever = Clock::time_point::max();

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string OpenSslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// State shared by all threads; written by the main thread before the gate opens.
struct Shared {
  const Options& opt;
  tcp::endpoint endpoint;
  ssl::context ctx{ssl::context::tls_client};
  bool name_is_ip = false;
  std::string request;
  std::atomic<int64_t> barrier_ns{0}, start_ns{0}, end_ns{0};
  std::atomic<unsigned> connected{0}, connect_failed{0}, opened{0};
  std::atomic<unsigned> next_index{0};
  std::atomic<int> active{0};
  std::mutex mu;
  std::string tls_version, tls_cipher, first_error;

  explicit Shared(const Options& o) : opt(o) {}
  static Clock::time_point At(const std::atomic<int64_t>& v) {
    return Clock::time_point(Clock::duration(v.load(std::memory_order_acquire)));
  }
  Clock::time_point barrier() const { return At(barrier_ns); }
  Clock::time_point start() const { return At(start_ns); }
  Clock::time_point end() const { return At(end_ns); }
  void NoteError(const std::string& what) {
    std::lock_guard lock(mu);
    if (first_error.empty()) first_error = what;
  }
};

struct Worker;

struct Conn {
  explicit Conn(Worker& w);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  void Close() {
    error_code ec;
    stream.lowest_layer().close(ec);
  }

  Worker& w;
  ssl::stream<tcp::socket> stream;
  std::vector<char> buf = std::vector<char>(32 * 1024);
  size_t begin = 0, end = 0;  // unread bytes in buf
  Clock::time_point deadline = kNever;
  bool open = false;
  bool timed_out = false;
};

struct Worker {
  Worker(Shared& s, unsigned index) : sh(s), id(index) {}
  Shared& sh;
  unsigned id;
  asio::io_context ioc{1};
  asio::steady_timer gate{ioc, kNever};
  bool released = false;
  bool closing = false;
  int active = 0;  // coroutines of this worker still running
  std::unordered_set<Conn*> live;
  Histogram latency, handshake;
  uint64_t completed = 0, s2xx = 0, sother = 0, errors = 0, timeouts = 0, reconnects = 0;
  uint64_t connect_failures = 0, unfinished = 0, body_bytes = 0;
  unsigned answered_early = 0, holding = 0;
  std::thread thread;

  void CloseAll() {
    closing = true;
    for (Conn* c : live) c->Close();
  }
};

Conn::Conn(Worker& worker) : w(worker), stream(worker.ioc, worker.sh.ctx) { w.live.insert(this); }
Conn::~Conn() { w.live.erase(this); }

// Keeps the worker's active count and the global one in step with a coroutine's lifetime.
struct ActiveGuard {
  explicit ActiveGuard(Worker& w) : w_(w) {
    ++w_.active;
    w_.sh.active.fetch_add(1);
  }
  ~ActiveGuard() {
    --w_.active;
    w_.sh.active.fetch_sub(1);
  }
  ActiveGuard(const ActiveGuard&) = delete;
  ActiveGuard& operator=(const ActiveGuard&) = delete;
  Worker& w_;
};

void Fail(Worker& w, Conn* c, const std::string& what, const error_code& ec) {
  if (w.closing) return;
  if (c != nullptr && c->timed_out) {
    ++w.timeouts;
    w.sh.NoteError(what + ": timed out");
    return;
  }
  ++w.errors;
  w.sh.NoteError(what + ": " + ec.message() + (ERR_peek_error() ? " (" + OpenSslErrors() + ")" : ""));
}

// TCP connect + TLS handshake with SNI and name verification.
asio::awaitable<bool> Open(Conn& c) {
  Shared& sh = c.w.sh;
  error_code ec;
  auto tok = asio::redirect_error(asio::use_awaitable, ec);
  c.deadline = Clock::now() + Seconds(sh.opt.timeout_s);
  tcp::endpoint ep = sh.endpoint;
  co_await c.stream.lowest_layer().async_connect(ep, tok);
  if (ec) {
    Fail(c.w, &c, "connect", ec);
    co_return false;
  }
  error_code ignored;
  c.stream.lowest_layer().set_option(tcp::no_delay(true), ignored);
  SSL* s = c.stream.native_handle();
  if (sh.name_is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), sh.opt.server_name.c_str());
  } else {
    SSL_set_tlsext_host_name(s, sh.opt.server_name.c_str());
    SSL_set1_host(s, sh.opt.server_name.c_str());
  }
  auto kind = ssl::stream_base::client;
  co_await c.stream.async_handshake(kind, tok);
  c.deadline = kNever;
  if (ec) {
    Fail(c.w, &c, "TLS handshake", ec);
    co_return false;
  }
  c.open = true;
  if (sh.tls_version.empty()) {
    std::lock_guard lock(sh.mu);
    if (sh.tls_version.empty()) {
      sh.tls_version = SSL_get_version(s);
      sh.tls_cipher = SSL_get_cipher_name(s);
    }
  }
  co_return true;
}

// Sends the request and reads one whole response. On success fills status/body/close.
asio::awaitable<bool> Exchange(Conn& c, int& status, uint64_t& body, bool& close) {
  Shared& sh = c.w.sh;
  error_code ec;
  auto tok = asio::redirect_error(asio::use_awaitable, ec);
  c.deadline = Clock::now() + Seconds(sh.opt.timeout_s);
  auto out = asio::buffer(sh.request);
  co_await asio::async_write(c.stream, out, tok);
  if (ec) {
    Fail(c.w, &c, "write", ec);
    c.open = false;
    co_return false;
  }
  ResponseParser p;
  for (;;) {
    if (c.begin < c.end) {
      size_t used = p.Feed(c.buf.data() + c.begin, c.end - c.begin);
      c.begin += used;
      if (c.begin == c.end) c.begin = c.end = 0;
      if (p.done() || p.error()) break;
      continue;
    }
    auto in = asio::buffer(c.buf.data(), c.buf.size());
    size_t n = co_await c.stream.async_read_some(in, tok);
    if (ec) {
      if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
        p.Eof();
        c.open = false;
        if (p.done()) break;
      }
      Fail(c.w, &c, "read", ec);
      c.open = false;
      co_return false;
    }
    c.begin = 0;
    c.end = n;
  }
  c.deadline = kNever;
  if (p.error()) {
    Fail(c.w, &c, "bad HTTP response", error_code());
    c.open = false;
    co_return false;
  }
  status = p.status();
  body = p.body_bytes();
  close = p.close();
  if (close) c.open = false;
  co_return true;
}

asio::awaitable<void> WaitGate(Worker& w) {
  if (w.released) co_return;
  error_code ec;
  auto tok = asio::redirect_error(asio::use_awaitable, ec);
  co_await w.gate.async_wait(tok);
}

// Open-loop pacing: per connection every connections/rate seconds, staggered by index/rate.
struct Schedule {
  bool open_loop = false;
  Clock::duration interval{};
  Clock::time_point next{};
};

Schedule MakeSchedule(const Shared& sh, unsigned index) {
  Schedule s;
  if (sh.opt.rate <= 0) return s;
  s.open_loop = true;
  s.interval = Seconds(static_cast<double>(sh.opt.connections) / sh.opt.rate);
  s.next = sh.barrier() + Seconds(static_cast<double>(index) / sh.opt.rate);
  return s;
}

void RecordResult(Worker& w, Clock::time_point intended, Clock::time_point done, int status, uint64_t body) {
  Clock::time_point start = w.sh.start(), end = w.sh.end();
  if (done >= start && done <= end) {
    ++w.completed;
    w.body_bytes += body;
    if (status >= 200 && status < 300) ++w.s2xx;
    else ++w.sother;
  }
  if (intended >= start && intended < end) {
    w.latency.Record(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(done - intended).count()));
  }
}

void NoteUnfinished(Worker& w, Clock::time_point intended) {
  if (intended >= w.sh.start() && intended < w.sh.end()) ++w.unfinished;
}

asio::awaitable<void> KeepAliveLoop(Worker& w, unsigned index) {
  ActiveGuard guard(w);
  Shared& sh = w.sh;
  auto c = std::make_unique<Conn>(w);
  Clock::time_point t0 = Clock::now();
  bool ok = co_await Open(*c);
  if (ok) {
    w.handshake.Record(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    sh.connected.fetch_add(1);
  } else {
    ++w.connect_failures;
    sh.connect_failed.fetch_add(1);
  }
  co_await WaitGate(w);
  Schedule sched = MakeSchedule(sh, index);
  asio::steady_timer pacer(w.ioc);
  const Clock::time_point end = sh.end();
  while (!w.closing) {
    Clock::time_point intended;
    if (sched.open_loop) {
      intended = sched.next;
      sched.next += sched.interval;
      if (intended >= end) break;
      if (Clock::now() < intended) {
        error_code ec;
        auto tok = asio::redirect_error(asio::use_awaitable, ec);
        pacer.expires_at(intended);
        co_await pacer.async_wait(tok);
        if (w.closing) break;
      }
    } else {
      intended = Clock::now();
      if (intended >= end) break;
    }
    if (!c->open) {
      c = std::make_unique<Conn>(w);
      ++w.reconnects;
      bool reopened = co_await Open(*c);
      if (!reopened) {
        if (w.closing) {
          NoteUnfinished(w, intended);
          break;
        }
        // Do not spin on a refusing server: back off briefly.
        error_code ec;
        auto tok = asio::redirect_error(asio::use_awaitable, ec);
        pacer.expires_after(std::chrono::milliseconds(50));
        co_await pacer.async_wait(tok);
        continue;
      }
    }
    if (!sched.open_loop) intended = Clock::now();
    int status = 0;
    uint64_t body = 0;
    bool close = false;
    bool done_ok = co_await Exchange(*c, status, body, close);
    Clock::time_point done = Clock::now();
    if (!done_ok) {
      if (w.closing) NoteUnfinished(w, intended);
      continue;
    }
    RecordResult(w, intended, done, status, body);
  }
}

asio::awaitable<void> HandshakeLoop(Worker& w, unsigned index) {
  ActiveGuard guard(w);
  Shared& sh = w.sh;
  co_await WaitGate(w);
  Schedule sched = MakeSchedule(sh, index);
  asio::steady_timer pacer(w.ioc);
  const Clock::time_point end = sh.end();
  while (!w.closing) {
    Clock::time_point intended;
    if (sched.open_loop) {
      intended = sched.next;
      sched.next += sched.interval;
      if (intended >= end) break;
      if (Clock::now() < intended) {
        error_code ec;
        auto tok = asio::redirect_error(asio::use_awaitable, ec);
        pacer.expires_at(intended);
        co_await pacer.async_wait(tok);
        if (w.closing) break;
      }
    } else {
      intended = Clock::now();
      if (intended >= end) break;
    }
    auto c = std::make_unique<Conn>(w);
    Clock::time_point t0 = Clock::now();
    bool opened = co_await Open(*c);
    if (!opened) {
      if (w.closing) NoteUnfinished(w, intended);
      else ++w.connect_failures;
      continue;
    }
    Clock::time_point t1 = Clock::now();
    if (intended >= sh.start() && intended < end) {
      w.handshake.Record(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
    int status = 0;
    uint64_t body = 0;
    bool close = false;
    bool done_ok = co_await Exchange(*c, status, body, close);
    Clock::time_point done = Clock::now();
    c->Close();
    if (!done_ok) {
      if (w.closing) NoteUnfinished(w, intended);
      continue;
    }
    RecordResult(w, intended, done, status, body);
  }
}

// Long-poll: a held connection waits for anything from the server until we close it.
asio::awaitable<void> Hold(Worker& w, std::unique_ptr<Conn> c) {
  ActiveGuard guard(w);
  ++w.holding;
  error_code ec;
  auto tok = asio::redirect_error(asio::use_awaitable, ec);
  auto in = asio::buffer(c->buf.data(), c->buf.size());
  co_await c->stream.async_read_some(in, tok);
  --w.holding;
  if (!w.closing) {
    ++w.answered_early;
    Fail(w, c.get(), "long-poll answered or closed before the end", ec);
  }
}

asio::awaitable<void> Opener(Worker& w) {
  ActiveGuard guard(w);
  Shared& sh = w.sh;
  co_await WaitGate(w);
  // Each opener takes the next connection of this worker's share until it is used up.
  while (!w.closing) {
    unsigned i = sh.next_index.fetch_add(1);
    if (i >= sh.opt.connections) break;
    auto c = std::make_unique<Conn>(w);
    Clock::time_point t0 = Clock::now();
    bool ok = co_await Open(*c);
    if (ok) {
      w.handshake.Record(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
      error_code ec;
      auto tok = asio::redirect_error(asio::use_awaitable, ec);
      c->deadline = Clock::now() + Seconds(sh.opt.timeout_s);
      auto out = asio::buffer(sh.request);
      co_await asio::async_write(c->stream, out, tok);
      c->deadline = kNever;
      if (ec) {
        Fail(w, c.get(), "write", ec);
        ok = false;
      }
    } else {
      ++w.connect_failures;
    }
    if (ok) {
      sh.opened.fetch_add(1);
      asio::co_spawn(w.ioc, Hold(w, std::move(c)), asio::detached);
    } else {
      sh.connect_failed.fetch_add(1);
    }
  }
}

// Closes connections whose connect/handshake/request exceeded --timeout; ends with the worker.
asio::awaitable<void> Sweeper(Worker& w) {
  asio::steady_timer t(w.ioc);
  for (;;) {
    error_code ec;
    auto tok = asio::redirect_error(asio::use_awaitable, ec);
    t.expires_after(std::chrono::milliseconds(100));
    co_await t.async_wait(tok);
    if (w.active == 0 && w.released) co_return;
    Clock::time_point now = Clock::now();
    for (Conn* c : w.live) {
      if (c->deadline != kNever && now > c->deadline && !c->timed_out) {
        c->timed_out = true;
        c->Close();
      }
    }
  }
}

void Post(Worker& w, std::function<void()> f) { asio::post(w.ioc, std::move(f)); }

std::vector<ProcResult> InitProcs(const Options& opt) {
  std::vector<ProcResult> out;
  for (const auto& p : opt.pids) out.push_back({p, {}, {}, {}});
  return out;
}

void SampleAll(std::vector<ProcResult>& procs, ProcSample ProcResult::*field) {
  for (auto& p : procs) p.*field = SampleProcess(p.spec.pid);
}

void SleepUntil(Clock::time_point t) { std::this_thread::sleep_until(t); }

int64_t Ns(Clock::time_point t) { return t.time_since_epoch().count(); }

}  // namespace

std::expected<RunResult, std::string> Run(const Options& opt) {
  Shared sh(opt);
  error_code ec;
  auto addr = asio::ip::make_address(opt.host, ec);
  if (ec) return std::unexpected("bad target address " + opt.host);
  sh.endpoint = tcp::endpoint(addr, opt.port);
  {
    error_code ip_ec;
    asio::ip::make_address(opt.server_name, ip_ec);
    sh.name_is_ip = !ip_ec;
  }
  SSL_CTX* native = sh.ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, opt.tls_min == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
  // Every connection makes a full handshake: nothing is cached or resumed.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
  // Held long-polls should not pin 2 x 16 KiB of record buffers each here either.
  if (opt.mode == Mode::kLongPoll) SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_load_verify_locations(native, opt.ca_file.c_str(), nullptr) != 1) {
    return std::unexpected(opt.ca_file + ": " + OpenSslErrors());
  }
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
  if (!opt.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(native, opt.cert_file.c_str()) != 1) {
      return std::unexpected(opt.cert_file + ": " + OpenSslErrors());
    }
    if (SSL_CTX_use_PrivateKey_file(native, opt.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(native) != 1) {
      return std::unexpected(opt.key_file + ": " + OpenSslErrors());
    }
  }
  sh.request = "GET " + opt.path + " HTTP/1.1\r\nHost: " + opt.host_header +
               "\r\nUser-Agent: orthrus-loadgen\r\nAccept: */*\r\n";
  if (opt.mode == Mode::kHandshake) sh.request += "Connection: close\r\n";
  sh.request += "\r\n";

  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < opt.threads; ++t) workers.push_back(std::make_unique<Worker>(sh, t));
  for (unsigned i = 0; i < opt.connections; ++i) {
    Worker& w = *workers[i % opt.threads];
    if (opt.mode == Mode::kKeepAlive) asio::co_spawn(w.ioc, KeepAliveLoop(w, i), asio::detached);
    if (opt.mode == Mode::kHandshake) asio::co_spawn(w.ioc, HandshakeLoop(w, i), asio::detached);
  }
  if (opt.mode == Mode::kLongPoll) {
    unsigned openers = std::min(opt.open_concurrency, opt.connections);
    for (unsigned i = 0; i < openers; ++i) {
      Worker& w = *workers[i % opt.threads];
      asio::co_spawn(w.ioc, Opener(w), asio::detached);
    }
  }
  for (auto& w : workers) {
    asio::co_spawn(w->ioc, Sweeper(*w), asio::detached);
    w->thread = std::thread([wp = w.get()] { wp->ioc.run(); });
  }

  RunResult r;
  r.procs = InitProcs(opt);
  auto release = [&](Clock::time_point barrier, Clock::time_point start, Clock::time_point end) {
    sh.barrier_ns.store(Ns(barrier), std::memory_order_release);
    sh.start_ns.store(Ns(start), std::memory_order_release);
    sh.end_ns.store(Ns(end), std::memory_order_release);
    for (auto& w : workers) {
      Post(*w, [wp = w.get()] {
        wp->released = true;
        wp->gate.cancel();
      });
    }
  };
  auto close_all = [&] {
    for (auto& w : workers) Post(*w, [wp = w.get()] { wp->CloseAll(); });
  };
  auto join_all = [&] {
    for (auto& w : workers) w->thread.join();
  };

  const Clock::time_point t_begin = Clock::now();
  if (opt.mode == Mode::kKeepAlive || opt.mode == Mode::kHandshake) {
    if (opt.mode == Mode::kKeepAlive) {
      // Open every connection first (not measured), then start the clock for all at once.
      Clock::time_point give_up = t_begin + Seconds(opt.timeout_s + 5);
      while (sh.connected.load() + sh.connect_failed.load() < opt.connections && Clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      r.open_s = std::chrono::duration<double>(Clock::now() - t_begin).count();
    }
    Clock::time_point barrier = Clock::now();
    Clock::time_point start = barrier + Seconds(opt.warmup_s);
    Clock::time_point end = start + Seconds(opt.duration_s);
    release(barrier, start, end);
    SleepUntil(start);
    SampleAll(r.procs, &ProcResult::before);
    double self_before = SelfCpuSeconds();
    uint64_t busy_before = MachineBusyTicks();
    SleepUntil(end);
    SampleAll(r.procs, &ProcResult::after);
    r.self_cpu_s = SelfCpuSeconds() - self_before;
    r.machine_busy_s = static_cast<double>(MachineBusyTicks() - busy_before) / ClockTicksPerSecond();
    // Let requests in flight finish (they count for latency), then stop whatever is left.
    Clock::time_point grace = end + Seconds(std::min(opt.timeout_s, 5.0));
    while (sh.active.load() > 0 && Clock::now() < grace) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    close_all();
    join_all();
    r.window_s = opt.duration_s;
  } else {
    SampleAll(r.procs, &ProcResult::before);
    Clock::time_point barrier = Clock::now();
    release(barrier, barrier, barrier + Seconds(opt.duration_s));
    Clock::time_point give_up = barrier + Seconds(opt.duration_s);
    while (sh.opened.load() + sh.connect_failed.load() < opt.connections && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    r.open_s = std::chrono::duration<double>(Clock::now() - barrier).count();
    std::this_thread::sleep_for(Seconds(opt.settle_s));
    SampleAll(r.procs, &ProcResult::after);
    // Count what is still held at the sample (asked on each worker's own thread).
    std::atomic<unsigned> held{0}, counted{0};
    for (auto& w : workers) {
      Post(*w, [wp = w.get(), &held, &counted] {
        held.fetch_add(wp->holding);
        counted.fetch_add(1);
      });
    }
    while (counted.load() < workers.size()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    r.still_open = held.load();
    std::this_thread::sleep_for(Seconds(opt.hold_s));
    close_all();
    join_all();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    SampleAll(r.procs, &ProcResult::after_close);
    r.opened = sh.opened.load();
  }

  for (auto& w : workers) {
    r.latency.Merge(w->latency);
    r.handshake.Merge(w->handshake);
    r.completed_in_window += w->completed;
    r.status_2xx += w->s2xx;
    r.status_other += w->sother;
    r.errors += w->errors;
    r.timeouts += w->timeouts;
    r.reconnects += w->reconnects;
    r.connect_failures += w->connect_failures;
    r.unfinished += w->unfinished;
    r.body_bytes += w->body_bytes;
    r.answered_early += w->answered_early;
  }
  r.tls_version = sh.tls_version;
  r.tls_cipher = sh.tls_cipher;
  r.first_error = sh.first_error;
  return r;
}

}  // namespace orthrus::loadgen
