#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "loadgen.h"

namespace orthrus::loadgen {

ProcSample SampleProcess(int pid) {
  ProcSample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!stat || !std::getline(stat, line)) return s;
  // "pid (comm) state ppid ..." - comm may hold spaces and parentheses: split after the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  // After ')': index 0 is field 3 (state); utime is field 14, stime field 15.
  uint64_t utime = 0, stime = 0;
  for (int i = 0; fields >> field; ++i) {
    if (i == 11) utime = std::stoull(field);
    if (i == 12) {
      stime = std::stoull(field);
      break;
    }
  }
  s.cpu_ticks = utime + stime;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      s.rss_kib = std::stoull(line.substr(6));
      s.ok = true;
      break;
    }
  }
  return s;
}

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

uint64_t MachineBusyTicks() {
  std::ifstream stat("/proc/stat");
  std::string label;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(stat >> label >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || label != "cpu") {
    return 0;
  }
  return user + nice + system + irq + softirq + steal;
}

double ClockTicksPerSecond() {
  long t = sysconf(_SC_CLK_TCK);
  return t > 0 ? static_cast<double>(t) : 100.0;
}

}  // namespace orthrus::loadgen
