// The engine's transport to any cogs micro-service: a workflow::ServiceClient speaking
// docs/service-protocol.md over HTTP/1.1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cogs/http/server.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::kit {

// A ServiceClient for the service at host:port over a keep-alive pool of at most `max_connections`.
// Callbacks run on `io`. The attempt's deadline bounds the HTTP exchange and is sent as
// X-Cogs-Deadline-Ms. With `bearer_token` non-empty every request carries
// "Authorization: Bearer <token>". With `tls` non-null the service is called over TLS, its
// certificate verified by tls's CA and required to name `server_name` (empty: `host`); tls's client
// certificate, if any, is presented (mutual TLS).
//
// Errors: a transport failure or timeout, 5xx, 429 and 408 are retryable (outcome unknown); any
// other 4xx is definitive (nothing applied). The code comes from the answer's "code" field, else
// from the status (cogs::FromHttpStatus); messages are prefixed with `service_name`.
//
// Threading: Invoke and Status may be called from `io`'s thread only.
// GET requests to a service's read endpoints (its inventory: GET /v1/inventory), for cogsd's
// reconcilers. `done` runs on `io` exactly once: the body of a 2xx answer; kUnavailable or
// kDeadlineExceeded when no answer came by `deadline`; otherwise the error the answer carries.
// Threading: Get may be called from `io`'s thread only.
class HttpReader {
public:
    virtual ~HttpReader() = default;
    virtual void Get(std::string target, SteadyTime deadline,
                     std::function<void(Result<std::string>)> done) = 0;
};
std::shared_ptr<HttpReader> MakeHttpReader(boost::asio::io_context& io, std::string host, uint16_t port,
                                           std::string service_name, std::string bearer_token = "",
                                           std::shared_ptr<http::TlsContext> tls = nullptr,
                                           std::string server_name = "");

std::shared_ptr<workflow::ServiceClient> MakeHttpServiceClient(
    boost::asio::io_context& io, std::string host, uint16_t port, std::string service_name,
    size_t max_connections, std::string bearer_token = "", std::shared_ptr<http::TlsContext> tls = nullptr,
    std::string server_name = "");

// One keep-alive pool of at most `max_connections` to the service at host:port, called on behalf of
// many principals: an agent serving many hosts at one address, each host with its own token and, over
// TLS, its own name in the agent's certificate. Calls and errors as MakeHttpServiceClient's.
class SharedHttpService {
public:
    virtual ~SharedHttpService() = default;
    // A client whose calls present `bearer_token` (empty: none) and, with TLS, go only over a
    // connection whose verified certificate names `peer_name` (else they fail, kUnavailable, before
    // anything is sent). Cheap: a token and a name over the shared pool, which lives as long as any of
    // its clients.
    virtual std::shared_ptr<workflow::ServiceClient> As(std::string bearer_token, std::string peer_name) = 0;
};
std::shared_ptr<SharedHttpService> MakeSharedHttpService(boost::asio::io_context& io, std::string host,
                                                         uint16_t port, std::string service_name,
                                                         size_t max_connections,
                                                         std::shared_ptr<http::TlsContext> tls = nullptr);

}  // namespace cogs::services::kit
