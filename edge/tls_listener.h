#pragma once
// The device-facing TLS context: TLS 1.2/1.3 only, a client certificate is required and must chain
// to the configured CA bundle.
#include <boost/asio/ssl/context.hpp>

#include <memory>

#include "common/result.h"
#include "edge/edge_config.h"

namespace orthrus::edge {

Result<std::unique_ptr<boost::asio::ssl::context>> MakeDeviceTlsContext(const EdgeSettings& s);

}  // namespace orthrus::edge
