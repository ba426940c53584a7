// HostAgent: registers the hosts this process serves with the control plane (cogsd) and keeps them
// alive with heartbeats (docs/api.md, "Hosts (admin)").
//
// For every host, independently:
//   1. PUT {control}/v1/hosts/{name} {"url","availability_zone","vcpus","ram_mb","disk_gb","traits"}
//      until it answers 2xx. Failures are logged and retried with a capped exponential backoff
//      (min_backoff .. max_backoff); a 4xx other than 401/403/408/429 means the control plane refuses
//      this registration as it is (a bug or a misconfiguration, not a passing state): it is logged as
//      an error and retried every slow_retry. The agent never gives up and never crashes the process.
//   2. POST {control}/v1/hosts/{name}/heartbeat {} every heartbeat_interval. A 404 means the control
//      plane has forgotten the host: back to 1 at once. Other failures are logged; the heartbeats go
//      on at their pace.
// Every request carries `Authorization: Bearer <token>` (when the token is non-empty) and a deadline
// of request_timeout.
//
// Threading: created, used and destroyed on the thread that runs `io` (one thread). Destroying the
// agent (or Stop) cancels its timers and requests; nothing of it runs afterwards. It may be destroyed
// while `io` is stopped but must be destroyed before `io`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/services/compute/compute.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::compute {

struct AgentOptions {
    std::string control_url;    // "http://HOST:PORT" of cogsd (no path; https is not supported)
    std::string token;          // bearer token for the control plane; empty: none sent
    std::string advertise_url;  // where the control plane reaches this process ("url" of every host)
    std::vector<HostSpec> hosts;
    Duration heartbeat_interval = std::chrono::seconds(1);
    Duration request_timeout = std::chrono::seconds(2);
    Duration min_backoff = std::chrono::milliseconds(100);
    Duration max_backoff = std::chrono::seconds(2);
    Duration slow_retry = std::chrono::seconds(5);  // after a definitive refusal of a registration
    size_t max_connections = 8;                     // to the control plane, shared by every host
};

// Counters, summed over hosts (for tests and logs).
struct AgentStats {
    uint64_t registrations = 0;  // PUTs answered 2xx
    uint64_t registration_failures = 0;
    uint64_t heartbeats = 0;          // heartbeats answered 2xx
    uint64_t heartbeat_failures = 0;  // 404s included
    uint64_t reregistrations = 0;     // 404 answers to a heartbeat
};

class HostAgent {
public:
    // Starts registering every host at once (the first requests leave on io's next turn).
    // kInvalidArgument for a control_url that is not http://HOST:PORT or no hosts.
    static Result<std::unique_ptr<HostAgent>> Start(boost::asio::io_context& io, AgentOptions options);

    ~HostAgent();
    HostAgent(const HostAgent&) = delete;
    HostAgent& operator=(const HostAgent&) = delete;

    // Stops every timer and request; idempotent.
    void Stop();

    AgentStats stats() const;
    // Hosts registered and not since forgotten by the control plane.
    size_t registered_hosts() const;

private:
    class Impl;
    explicit HostAgent(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

// Parses "http://HOST:PORT" (an optional trailing '/'); kInvalidArgument otherwise.
Result<std::pair<std::string, uint16_t>> ParseHttpUrl(const std::string& url);

}  // namespace cogs::services::compute
