#pragma once
// The device-facing TLS context: TLS 1.2/1.3 only; a client certificate must chain to the configured
// CA bundle, and is required unless a publishing rule for the requested server name accepts
// passwords alone (then it is asked for but optional).
#include <boost/asio/ssl/context.hpp>

#include <memory>

#include "common/result.h"
#include "edge/edge_config.h"
#include "edge/publishing_rules.h"

namespace orthrus::edge {

// `rules` must outlive the context.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeDeviceTlsContext(
    const EdgeSettings& s, const PublishingRules& rules);

}  // namespace orthrus::edge
