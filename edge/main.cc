// orthrus-edge: the DMZ tier. Terminates device TLS, verifies client certificates, forwards each
// request to a broker over mutual TLS. Holds no domain secret.
#include <cstdio>
#include <string>

#include "common/cli.h"
#include "common/log.h"
#include "edge/edge_config.h"
#include "edge/edge_server.h"

int main(int argc, char** argv) {
  auto cli = orthrus::ParseCommandLine(argc, argv, "orthrus-edge");
  if (!cli) return 2;
  const std::string& config_path = cli->config_path;
  const bool check_only = cli->check_only;
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
