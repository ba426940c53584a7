// The engine's transport to any cogs micro-service: a workflow::ServiceClient speaking
// docs/service-protocol.md over HTTP/1.1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::kit {

// A ServiceClient for the service at host:port over a keep-alive pool of at most `max_connections`.
// Callbacks run on `io`. The attempt's deadline bounds the HTTP exchange and is sent as
// X-Cogs-Deadline-Ms. With `bearer_token` non-empty every request carries
// "Authorization: Bearer <token>".
//
// Errors: a transport failure or timeout, 5xx, 429 and 408 are retryable (outcome unknown); any
// other 4xx is definitive (nothing applied). The code comes from the answer's "code" field, else
// from the status (cogs::FromHttpStatus); messages are prefixed with `service_name`.
//
// Threading: Invoke and Status may be called from `io`'s thread only.
std::shared_ptr<workflow::ServiceClient> MakeHttpServiceClient(boost::asio::io_context& io, std::string host,
                                                               uint16_t port, std::string service_name,
                                                               size_t max_connections,
                                                               std::string bearer_token = "");

}  // namespace cogs::services::kit
