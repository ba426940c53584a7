// The compute router: cogs-compute as a service of the engine's catalog. A compute action names
// its host ("host" in its input); the router sends it to the agent serving that host, over one
// keep-alive connection pool per agent URL, and reports the host as the call's endpoint so that each
// host gets its own circuit breaker (a dead host does not hold back calls to the others).
//
// Hosts it cannot reach on purpose:
//   no host in the input   delete_instance and detach_volumes are done (a server never placed has
//                          no instance and nothing mounted);
//                          anything else is refused (kInvalidArgument "host: required")
//   unknown host           refused for good (kFailedPrecondition "host H is not registered")
//   down host              it has fenced itself (its instances are stopped, and what is stale goes
//                          when it comes back): delete_instance, stop_instance and detach_volumes
//                          (its mounts go with the instance's delete when it comes back) are done;
//                          anything that needs it running is refused for good (the workflow rolls
//                          back, or evacuation takes over)
//
// Threading: the io thread of the engine; `lookup` is called there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "cogs/http/server.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::compute {

// Where a host's agent is: its URL ("http://HOST:PORT", as it registered), whether it is down, and
// the bearer token that agent checks (its own: docs/api.md "Hosts and their credentials").
struct HostRoute {
    std::string url;
    bool down = false;
    int64_t lease_epoch = 0;  // HostMonitor::LeaseEpoch: sent with create/start/reboot (0: none)
    std::string token;        // presented to the agent; empty: none
};
using HostLookup = std::function<std::optional<HostRoute>(const std::string& host)>;

// Each call presents its host's HostRoute::token; `connections` is the pool size per agent URL (one
// process serving many hosts keeps one pool, shared by its hosts' calls). With `tls`, an agent is
// called over TLS (mutual, with tls's certificate) and a call goes only over a connection whose
// certificate names the host it is for (an agent serving several hosts at one URL holds a
// certificate naming them all; the name is checked per call, the handshake once per connection).
std::shared_ptr<workflow::ServiceClient> MakeComputeRouter(boost::asio::io_context& io, HostLookup lookup,
                                                           size_t connections,
                                                           std::shared_ptr<http::TlsContext> tls = nullptr);

}  // namespace cogs::services::compute
