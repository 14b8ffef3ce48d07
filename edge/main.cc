// orthrus-edge: the DMZ tier. Terminates device TLS, verifies client certificates, forwards each
// request to a broker over mutual TLS. Holds no domain secret.
#include <cstdio>
#include <cstring>
#include <string>

#include "common/log.h"
#include "edge/edge_config.h"
#include "edge/edge_server.h"

namespace {

void Usage() {
  std::fprintf(stderr,
               "usage: orthrus-edge --config FILE [--check-config]\n"
               "  --config FILE     edge configuration (protobuf text format)\n"
               "  --check-config    validate the configuration and exit (0 = valid)\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (std::strcmp(argv[i], "--check-config") == 0) {
      check_only = true;
    } else {
      Usage();
      return 2;
    }
  }
  if (config_path.empty()) {
    Usage();
    return 2;
  }
  auto settings = orthrus::edge::LoadEdgeConfig(config_path);
  if (!settings) {
    std::fprintf(stderr, "orthrus-edge: invalid configuration:\n%s\n", settings.error().detail.c_str());
    return 1;
  }
  if (check_only) {
    std::printf("orthrus-edge: configuration %s is valid\n", config_path.c_str());
    return 0;
  }
  if (auto ok = orthrus::log::Configure("edge", settings->log_output, settings->log_level); !ok) {
    std::fprintf(stderr, "orthrus-edge: %s\n", ok.error().detail.c_str());
    return 1;
  }
  orthrus::edge::EdgeServer server(std::move(*settings));
  if (auto started = server.Start(); !started) {
    orthrus::log::Error("start_failed", {{"detail", started.error().detail}});
    std::fprintf(stderr, "orthrus-edge: %s\n", started.error().detail.c_str());
    return 1;
  }
  server.Run();
  return 0;
}
