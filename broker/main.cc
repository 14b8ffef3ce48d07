// orthrus-broker: the LAN tier. Accepts only known edges over mutual TLS, re-verifies each device
// identity, and forwards requests to the published backends.
#include <cstdio>
#include <string>

#include "common/cli.h"
#include "broker/broker_config.h"
#include "broker/broker_server.h"
#include "common/log.h"

int main(int argc, char** argv) {
  auto cli = orthrus::ParseCommandLine(argc, argv, "orthrus-broker");
  if (!cli) return 2;
  const std::string& config_path = cli->config_path;
  const bool check_only = cli->check_only;
  auto settings = orthrus::broker::LoadBrokerConfig(config_path);
  if (!settings) {
    std::fprintf(stderr, "orthrus-broker: invalid configuration:\n%s\n",
                 settings.error().detail.c_str());
    return 1;
  }
  if (check_only) {
    std::printf("orthrus-broker: configuration %s is valid\n", config_path.c_str());
    return 0;
  }
  if (auto ok = orthrus::log::Configure("broker", settings->log_output, settings->log_level); !ok) {
    std::fprintf(stderr, "orthrus-broker: %s\n", ok.error().detail.c_str());
    return 1;
  }
  orthrus::broker::BrokerServer server(std::move(*settings));
  if (auto started = server.Start(); !started) {
    orthrus::log::Error("start_failed", {{"detail", started.error().detail}});
    std::fprintf(stderr, "orthrus-broker: %s\n", started.error().detail.c_str());
    return 1;
  }
  server.Run();
  return 0;
}
