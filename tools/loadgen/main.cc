// orthrus-loadgen: see Usage() in options.cc and docs/performance.md.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <string>

#include "loadgen.h"

namespace {

// Every connection is a descriptor: raise RLIMIT_NOFILE to fit (the hard limit too when root).
bool RaiseFileLimit(rlim_t needed, std::string& error) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    error = "getrlimit failed";
    return false;
  }
  if (lim.rlim_cur >= needed) return true;
  rlimit want = lim;
  want.rlim_cur = needed;
  if (want.rlim_max != RLIM_INFINITY && want.rlim_max < needed) want.rlim_max = needed;
  if (setrlimit(RLIMIT_NOFILE, &want) == 0) return true;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < needed) {
    error = "RLIMIT_NOFILE hard limit " + std::to_string(lim.rlim_max) + " is below the " +
            std::to_string(needed) + " descriptors needed (run as root or raise ulimit -Hn)";
    return false;
  }
  error = "setrlimit(RLIMIT_NOFILE) failed";
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace orthrus::loadgen;
  auto opt = ParseOptions(argc, argv);
  if (!opt) {
    if (opt.error() == "help") {
      std::fputs(Usage().c_str(), stdout);
      return 0;
    }
    std::fprintf(stderr, "orthrus-loadgen: %s\n", opt.error().c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  std::string error;
  if (!RaiseFileLimit(static_cast<rlim_t>(opt->connections) + 256, error)) {
    std::fprintf(stderr, "orthrus-loadgen: %s\n", error.c_str());
    return 2;
  }
  auto result = Run(*opt);
  if (!result) {
    std::fprintf(stderr, "orthrus-loadgen: %s\n", result.error().c_str());
    return 2;
  }
  if (opt->json) PrintJson(*opt, *result);
  else PrintHuman(*opt, *result);
  std::fflush(stdout);
  // Exit 1 when nothing useful was measured.
  if (opt->mode == Mode::kLongPoll) return result->opened == 0 ? 1 : 0;
  return result->completed_in_window == 0 ? 1 : 0;
}
