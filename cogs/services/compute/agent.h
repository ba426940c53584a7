// HostAgent: registers the hosts this process serves with the control plane (cogsd), keeps them
// alive with heartbeats, which renew each host's lease, and fences a host whose lease runs out
// (docs/api.md, "Hosts (admin)"; the lease contract of issue 5).
//
// For every host, independently:
//   1. PUT {control}/v1/hosts/{name} {"url","availability_zone","vcpus","ram_mb","disk_gb","traits"}
//      until it answers 2xx. Failures are logged and retried with a capped exponential backoff
//      (min_backoff .. max_backoff); a 4xx other than 401/403/408/429 means the control plane refuses
//      this registration as it is (a bug or a misconfiguration, not a passing state): it is logged as
//      an error and retried every slow_retry. The agent never gives up and never crashes the process.
//   2. POST {control}/v1/hosts/{name}/heartbeat every heartbeat_interval (at most a third of the
//      lease TTL the control plane answered), body link->HeartbeatBody
//      (instance counts by state, unacknowledged reports; "{}" without a link). A 404 means the
//      control plane has forgotten the host: back to 1 at once. Other failures are logged; the
//      heartbeats go on at their pace. A 200 {"lease_ttl_ms": T, "acked_seq": N} sets the lease TTL
//      and acknowledges the reports up to N (link->Acknowledged); any other 2xx (an older cogsd's 204,
//      a body without them) renews without acknowledging.
// Every request carries `Authorization: Bearer <token>` (when the token is non-empty) and a deadline
// of request_timeout.
//
// The lease (with a link only): a host holds a lease until (the send time of the last request the
// control plane answered 2xx, registration or heartbeat) + T, T being the last lease_ttl_ms answered
// or options.lease_ttl before any. A timer fires at that moment: if no later answer has moved it, the
// host fences itself (link->SetFenced(host, true): a warn line, stats().fences). The next 2xx
// answer unfences it (link->SetFenced(host, false): an info line). Every host starts fenced (no lease
// yet); its first lease unfences it without a line above debug.
//
// Threading: created, used and destroyed on the thread that runs `io` (one thread). Destroying the
// agent (or Stop) cancels its timers and requests; nothing of it runs afterwards. It may be destroyed
// while `io` is stopped but must be destroyed before `io` and before the link.
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

namespace cogs::runtime {
class Clock;
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
    // The hosts' instances (the compute domain; it must outlive the agent); null: heartbeats are
    // "{}" and there is no lease.
    HostLink* link = nullptr;
    Duration lease_ttl = std::chrono::seconds(3);  // until the control plane answers its own
    // The retry, heartbeat and lease timers and every reading of time (send times, lease ends); it
    // must outlive the agent. null: runtime::SystemClock(). The HTTP exchanges themselves, and so
    // request_timeout, run on the machine's clock (http::Client's deadlines).
    runtime::Clock* clock = nullptr;
};

// Counters, summed over hosts (for tests and logs).
struct AgentStats {
    uint64_t registrations_sent = 0;  // PUTs sent; each ends as one of the next two (unless stopped)
    uint64_t registrations = 0;       // PUTs answered 2xx
    uint64_t registration_failures = 0;
    uint64_t heartbeats_sent = 0;     // each ends as one of the next two (unless stopped)
    uint64_t heartbeats = 0;          // heartbeats answered 2xx
    uint64_t heartbeat_failures = 0;  // 404s included
    uint64_t reregistrations = 0;     // 404 answers to a heartbeat
    uint64_t fences = 0;              // hosts fenced because their lease ran out
    uint64_t unfences = 0;            // fenced hosts given a lease again (not the first lease)
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
    // Hosts fenced now (with a link: no lease yet, or it ran out).
    size_t fenced_hosts() const;

private:
    class Impl;
    explicit HostAgent(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

// Parses "http://HOST:PORT" (an optional trailing '/'); kInvalidArgument otherwise.
Result<std::pair<std::string, uint16_t>> ParseHttpUrl(const std::string& url);

}  // namespace cogs::services::compute
