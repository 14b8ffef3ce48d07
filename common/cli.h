#pragma once
// The command line both daemons share: --config FILE [--check-config].
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

namespace orthrus {

struct CommandLine {
  std::string config_path;
  bool check_only = false;
};

// Prints usage and returns nothing on a bad command line (the caller exits 2).
inline std::optional<CommandLine> ParseCommandLine(int argc, char** argv, const char* program) {
  CommandLine out;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      out.config_path = argv[++i];
    } else if (std::strcmp(argv[i], "--check-config") == 0) {
      out.check_only = true;
    } else {
      out.config_path.clear();
      break;
    }
  }
  if (out.config_path.empty()) {
    std::fprintf(stderr,
                 "usage: %s --config FILE [--check-config]\n"
                 "  --config FILE     configuration (protobuf text format)\n"
                 "  --check-config    validate the configuration and exit (0 = valid)\n",
                 program);
    return std::nullopt;
  }
  return out;
}

}  // namespace orthrus
