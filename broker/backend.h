#pragma once
// HTTPS to the published backend: verified TLS (backend CA, host name, optional pinned IP, optional
// bridging client certificate) and a keep-alive pool keyed by rule AND user, so a connection that was
// authenticated for one user is never handed to another.
//
// Beast's TLS templates are instantiated only in backend.cc; callers see this plain interface.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/broker_config.h"
#include "common/result.h"
#include "orthrus/tunnel/v1/tunnel.pb.h"

namespace orthrus::broker {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct BackendResponseHead {
  unsigned status = 0;
  std::string reason;
  HeaderList headers;  // end-to-end only
  std::optional<uint64_t> content_length;
  bool has_body = false;
};

// One request/response on one backend connection. Strand-confined, except that Abort() may be
// called from the strand while another operation is pending (it makes that operation fail).
// Error codes are reason names: backend_connect_failed, backend_tls_failed, backend_timeout,
// backend_reset, backend_bad_response, bad_request_head.
class BackendExchange {
 public:
  virtual ~BackendExchange() = default;
  virtual boost::asio::awaitable<Status> SendHead(const tunnel::v1::RequestHead& head,
                                                  const HeaderList& extra_headers) = 0;
  virtual boost::asio::awaitable<Status> SendBodyChunk(const std::string& data) = 0;
  virtual boost::asio::awaitable<Status> EndBody() = 0;
  virtual boost::asio::awaitable<Result<BackendResponseHead>> ReadResponseHead() = 0;
  // Fills `data` with the next body bytes; the value is false once the body is complete.
  virtual boost::asio::awaitable<Result<bool>> ReadBodyChunk(std::string& data) = 0;
  virtual void Abort() = 0;
  // After a complete exchange: keeps the connection for the same rule and user if reusable.
  virtual void Release() = 0;
};

class BackendPool {
 public:
  virtual ~BackendPool() = default;
  // Loads the TLS material of every rule (startup errors name the file).
  static Result<std::unique_ptr<BackendPool>> Create(const std::vector<RuleSettings>& rules,
                                                     boost::asio::any_io_executor io);
  // `principal` is the user the connection is (or will be) authenticated as; "" when the rule
  // does no per-user authentication.
  virtual boost::asio::awaitable<Result<std::unique_ptr<BackendExchange>>> Open(
      const RuleSettings& rule, std::string principal, bool head_request) = 0;
};

}  // namespace orthrus::broker
