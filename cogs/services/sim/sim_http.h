// The sim service over HTTP, and the engine's HTTP transport to any cogs micro-service.
// The wire protocol is docs/service-protocol.md; both sides here follow it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cogs/http/server.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::sim {

// Serves `service` (which must outlive the server) with the micro-service protocol:
//   POST /v1/actions/{action}      Idempotency-Key (required), X-Cogs-Deadline-Ms, traceparent; JSON body
//   GET  /v1/actions/status?key=K
//   PUT  /v1/faults, GET /v1/faults, GET /v1/ledger, GET /v1/stats, GET /healthz
// Run the http::Server on the service's io_context (one thread): the handler calls the service
// directly. A call that hangs or loses its reply gets no HTTP answer; the server releases the
// connection when the caller gives up and closes it.
http::Handler MakeSimHttpHandler(SimService& service);

// A workflow::ServiceClient speaking the protocol to host:port over a keep-alive pool of at most
// `max_connections`. Callbacks run on `io`. The attempt's deadline bounds the HTTP exchange and is
// sent as X-Cogs-Deadline-Ms. Errors: a transport failure or timeout, 5xx and 429 are retryable
// (outcome unknown); any other 4xx is definitive (nothing applied); the code comes from the answer's
// "code" field, else from the status (cogs::FromHttpStatus).
std::shared_ptr<workflow::ServiceClient> MakeHttpServiceClient(boost::asio::io_context& io, std::string host,
                                                               uint16_t port, std::string service_name,
                                                               size_t max_connections);

}  // namespace cogs::services::sim
