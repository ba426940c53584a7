// Cloud: the control plane's desired state — projects, tokens, quotas, flavors, images, hosts,
// networks, subnets, ports, volumes, servers, server groups — and the operations on it.
//
// Every operation on infrastructure runs as a workflow (workflows/cloud/*.yaml) on the engine:
// the request is validated, quota is reserved, and the resource (in a transitional status) and
// its workflow are committed in ONE store transaction before the 202 answer. When the workflow
// ends, the resource takes its final status (ACTIVE, ERROR with the reason, or is erased and its
// quota released). A crash between the two is repaired at Load(): a resource whose workflow has
// ended takes the outcome then.
//
// The model lives in memory (loaded from the store at start) and is changed only on the io
// thread, so quota checks and placement claims are race-free without locks; every change is in
// the store before it is answered. One cogsd owns a store (the SQLite store takes a lock file);
// several replicas on PostgreSQL will need the checks moved into the database.
//
// Two services run in process: "scheduler" (claim / release host capacity, cogs/scheduler) and
// the "compute" router, which sends each compute action to the agent of the host the action
// names (hosts register their URL with PUT /v1/hosts/{name}).
//
// Every resource has an event history (GET /v1/events, GET /v1/<collection>/{id}/events): the
// cloud writes what the API asked ("created", "delete_requested", ...) with the workflow's create,
// and what came of it ("active", "error", "deleted", ...) with the resource's settled record; the
// engine writes the steps in between. Hosts have events too (registered, down, up, enabled,
// disabled). The history survives the resource's deletion and is pruned by age and count.
//
// Threading: every method must be called on the io thread that runs the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/observe/metrics.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::cloud {

enum class Role { kAdmin, kMember, kReader };

// Who is calling: the token's project and role.
struct Principal {
    std::string token_id;
    std::string project_id;
    std::string project_name;
    Role role = Role::kReader;
    bool admin() const { return role == Role::kAdmin; }
};

// A parsed API call: /v1/<path[0]>/<path[1]>/...
struct ApiRequest {
    std::string method;
    std::vector<std::string> path;  // decoded segments after /v1
    std::map<std::string, std::string> query;
    std::string body;
    std::string idempotency_key;
    std::string traceparent;
};

struct ApiAnswer {
    int status = 200;
    std::string body;  // JSON text; empty for 204
    std::vector<std::pair<std::string, std::string>> headers;
};

struct CloudOptions {
    double cpu_ratio = 4.0;
    double ram_ratio = 1.0;
    double disk_ratio = 1.0;
    // Host liveness (internal/liveness.h): a host whose agent has not renewed its lease (its
    // heartbeat) for `lease_ttl` is suspect (no new servers), and down `fence_window` later (its
    // agent has fenced itself by then): its servers are evacuated. No host is down within
    // `restart_grace` of the start; when more than `max_down_fraction` of the hosts are suspect or
    // down at once, evacuation pauses and an alert event says so.
    Duration lease_ttl = std::chrono::seconds(3);
    Duration fence_window = std::chrono::seconds(1);
    Duration restart_grace = std::chrono::seconds(10);
    double max_down_fraction = 0.5;
    int evacuation_parallelism = 32;  // evacuation and migration workflows in flight at once
    // The reconcilers (docs/healing.md): every `reconcile_every`, and when a host comes back, the
    // services' inventories are compared with the desired state. What nothing owns is removed
    // after `orphan_grace`.
    Duration reconcile_every = std::chrono::seconds(10);
    Duration orphan_grace = std::chrono::seconds(60);
    // The services whose inventories the reconcilers read ("network", "volume" -> http://HOST:PORT);
    // compute agents are read at the URL each host registered.
    std::map<std::string, std::string> inventory_urls;
    std::string service_token;  // presented to the compute agents (Authorization: Bearer)
    size_t compute_connections = 64;  // per host
    // Where the cloud's metrics go (docs/metrics.md, "the cloud"); null: none. It must outlive the
    // Cloud; its gauges (hosts, resources) are sampled at Render(), which must then run on the io
    // thread (cogsd serves /metrics there).
    observe::Metrics* metrics = nullptr;
    // Event history retention: events older than this go, then the oldest beyond `event_max`.
    // Pruned at start and every `event_prune_every`, on the blocking-read thread.
    Duration event_retention = std::chrono::hours(168);
    int64_t event_max = 1'000'000;
    Duration event_prune_every = std::chrono::seconds(60);
};

class Cloud {
public:
    Cloud(boost::asio::io_context& io, store::Store& store, workflow::Engine& engine,
          const workflow::Registry& registry, CloudOptions options);
    ~Cloud();
    Cloud(const Cloud&) = delete;
    Cloud& operator=(const Cloud&) = delete;

    // Loads the desired state from the store and settles resources whose workflow ended while
    // cogsd was down. Blocking; call once, after Engine::Recover(), before serving.
    Status Load();

    // If no admin token exists: creates project "admin" (if missing) and an admin token, and
    // returns its secret; else returns "". Blocking (start-up only).
    Result<std::string> Bootstrap();

    // The in-process services, for the engine's catalog: "scheduler" and "compute".
    std::shared_ptr<workflow::ServiceClient> SchedulerService();
    std::shared_ptr<workflow::ServiceClient> ComputeService();

    // The token's principal: kUnauthenticated for a missing, unknown, revoked or expired token.
    Result<Principal> Authenticate(std::string_view bearer_token) const;

    // Serves one API call (docs/api.md). `done` is called exactly once, on the io thread, never
    // inline. Errors are answered as {code, message, details} with their status.
    void Handle(const Principal& who, ApiRequest request, std::function<void(ApiAnswer)> done);

    struct Stats {
        uint64_t servers = 0;
        uint64_t hosts = 0;
        uint64_t hosts_up = 0;
    };
    Stats stats() const;

private:
    class Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace cogs::cloud
