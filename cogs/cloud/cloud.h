// Cloud: cogsd's control plane — the desired state of every resource a tenant or an operator asks
// for, the operations on it, and the loops that keep what exists equal to it. The map of its parts
// is README.md; this header is the facade cogsd (and the in-process test) wires.
//
// Every operation on infrastructure runs as a workflow (workflows/cloud/*.yaml) on the engine: the
// request is validated, quota is reserved, and the resource (in a transitional status) and its
// workflow are committed in ONE store transaction before the 202 answer. When the workflow ends,
// the resource takes its final status (ACTIVE, ERROR with the reason, or is erased and its quota
// released). A crash between the two is repaired at Load(): a resource whose workflow has ended
// takes the outcome then.
//
// The model lives in memory (loaded from the store at start) and is changed only on the io thread,
// so quota checks and placement claims are race-free without locks; every change is in the store
// before it is answered. One cogsd owns a store (the SQLite store takes a lock file).
//
// Life: construct; Load() (after Engine::Recover()); Bootstrap(); Start() (the host monitor, the
// healer, the reconcilers, event and Idempotency-Key retention); serve Handler(); Stop() before the
// io_context goes. Start and Stop exist so that only a leader runs the singleton loops, when replicas come.
//
// Threading: every method must be called on the io thread that runs the engine, but Load() and
// Bootstrap(), which block (start-up only).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/password.h"
#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/cloud/api/admission.h"
#include "cogs/cloud/kind_spec.h"
#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/store/leadership.h"
#include "cogs/store/store.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/retention.h"
#include "cogs/workflow/service.h"

namespace boost::asio {
class io_context;
}

namespace cogs::cloud {

struct CloudOptions {
    double cpu_ratio = 4.0;
    double ram_ratio = 1.0;
    double disk_ratio = 1.0;
    // Host liveness (health/liveness.h): a host whose agent has not renewed its lease (its
    // heartbeat) for `lease_ttl` is suspect (no new servers), and down `fence_window` later (its
    // agent has fenced itself by then): its servers are evacuated. No host is down within
    // `restart_grace` of the start; when more than `max_down_fraction` of the hosts are suspect or
    // down at once, evacuation pauses and an alert event says so.
    // The TTL grows with the number of hosts H so that renewals stay bounded (docs/healing.md
    // "Lease TTL and cluster size"): agents renew three times per TTL, so the TTL granted is
    // max(lease_ttl, 3 x H / max_renewals_per_s), rounded up to 100 ms; 0: always lease_ttl.
    Duration lease_ttl = std::chrono::seconds(3);
    int64_t max_renewals_per_s = 2000;
    Duration fence_window = std::chrono::seconds(1);
    Duration restart_grace = std::chrono::seconds(10);
    double max_down_fraction = 0.5;
    int evacuation_parallelism = 32;  // evacuation and migration workflows in flight at once
    // The reconcilers (docs/healing.md): every `reconcile_every`, and when a host comes back, the
    // services' inventories are compared with the desired state. What nothing owns is removed
    // after `orphan_grace`.
    Duration reconcile_every = std::chrono::seconds(10);
    // A periodic pass walks every server, port, volume, network and subnet and each inventory of
    // them: at scale the interval grows so that passes stay a bounded share of the io thread
    // (docs/healing.md "Pass interval and cloud size"): max(reconcile_every, R / this) for R such
    // records, rounded up to 100 ms; 0: always reconcile_every.
    int64_t reconcile_records_per_s = 4000;
    Duration orphan_grace = std::chrono::seconds(60);
    // The services whose inventories the reconcilers read ("network", "volume" -> http://HOST:PORT);
    // compute agents are read at the URL each host registered.
    std::map<std::string, std::string> inventory_urls;
    // What cogsd presents (Authorization: Bearer) when it reads the services' inventories: the network
    // and volume services their own tokens, each host's agent its own token, derived from
    // `agent_key` (core/credentials.h). Empty: none presented. The engine's clients of the network
    // and volume services are cogsd's (the same tokens).
    std::string network_token;
    std::string volume_token;
    // Without it, POST /v1/hosts/{name}/enroll is refused (422 failed_precondition) and agents are
    // called without a token.
    std::string agent_key;
    size_t compute_connections = 64;  // per agent URL (one pool for all the hosts it serves)
    // The API's admission (api/admission.h, docs/api.md "Admission: lanes and limits"): the lanes'
    // in-flight caps, the per-project cap, the per-token rates; beyond, 429 with Retry-After.
    AdmissionOptions admission{};
    // Workflows in flight per project (all of them, the healer's too); beyond, a request that would
    // start one (a create, an action, a delete) is answered 429 with Retry-After. 0: no limit.
    size_t max_inflight_workflows_per_project = 0;
    // The most servers one POST /v1/servers may ask for (its max_count; docs/api.md "Bulk create"):
    // each is a record, a port and a workflow of one transaction, and the answer lists them all.
    int64_t max_servers_per_request = 1000;
    // cogsd's TLS client context (its CA, its own certificate "cogsd"): null, plain HTTP; else the
    // agents are called over TLS at the https URL they registered, each required to show a
    // certificate naming its host, and the network and volume services at their URLs' hosts.
    std::shared_ptr<http::TlsContext> service_tls;
    // Whether the API is served over TLS: the scheme of the URLs the OpenStack face writes (its
    // service catalog, links), whose host is the one each request named (Host).
    bool api_tls = false;
    // Where the cloud's metrics go (docs/metrics.md, "the cloud"); null: none. It must outlive the
    // Cloud; its gauges (hosts, resources) are sampled at Render(), which must then run on the io
    // thread (cogsd serves /metrics there).
    observe::Metrics* metrics = nullptr;
    // Event history retention: events older than this go, then the oldest beyond `event_max`.
    // Pruned at start and every `event_prune_every`, on the blocking-read thread.
    Duration event_retention = std::chrono::hours(168);
    int64_t event_max = 1'000'000;
    Duration event_prune_every = std::chrono::seconds(60);
    // The audit log (resources/audit.h): entries older than `audit_retention` go, then the oldest
    // beyond `audit_max`, at Start() and every `audit_prune_every`, on the blocking-read thread.
    // At most `audit_max_pending` entries wait for their commit at once; beyond, entries are dropped
    // and counted (cogs_audit_dropped_total): a flood of refused changes cannot grow memory.
    Duration audit_retention = std::chrono::hours(24 * 90);
    int64_t audit_max = 1'000'000;
    Duration audit_prune_every = std::chrono::seconds(60);
    size_t audit_max_pending = 10'000;
    // An admin token created without `expires_in_s` (the bootstrap token too) expires this long
    // after its creation or rotation (docs/decisions.md, decision 35). 0: never.
    Duration admin_token_ttl = std::chrono::hours(24 * 30);
    // PBKDF2-HMAC-SHA256 iterations of a new user's password hash (cogs/base/password.h; ~0.3 s
    // each, off the io thread). A stored hash keeps the count it was made with. Tests lower it.
    int password_iterations = kPasswordIterations;
    // Ended workflows (with their steps and logs) older than `keep_for` go, then the oldest beyond
    // `keep_at_most` (workflow/retention.h): pruned at Start() and every `every`, on the pruner's
    // own thread, `batch` per transaction. Running and failed workflows are never pruned.
    workflow::RetentionOptions workflow_retention{};
    // Idempotency-Key records (docs/api.md "Idempotency"): replayed for `idempotency_ttl`; a
    // project keeps at most `idempotency_max_per_project`, the cloud `idempotency_max` (~1.4 KiB
    // each: 200,000 is ~280 MiB; 0: no cloud-wide cap); pruned every `idempotency_prune_every`.
    Duration idempotency_ttl = std::chrono::hours(24);
    size_t idempotency_max_per_project = 10'000;
    size_t idempotency_max = 200'000;
    Duration idempotency_prune_every = std::chrono::seconds(60);
    // Time for leases, timers, timestamps; null: runtime::SystemClock(). Must outlive the Cloud.
    runtime::Clock* clock = nullptr;
    // Replicas (cogsd on PostgreSQL, cogs/store/leadership.h): GET /v1/replicas (admin) lists what
    // this returns, called off the io thread (it reads the database). Empty: one process, which
    // lists itself alone as the leader.
    std::function<Result<std::vector<store::ReplicaInfo>>()> replicas{};
    std::string version = "dev";  // this process's version, for that list
    // Extensions from configuration (cogs/extend/host.h; docs/extending.md): GET /v1/extensions
    // (admin) answers describe(), POST /v1/extensions/reload (admin) reload(), each JSON text; a
    // refused reload is its error (400 naming the file and line; nothing changed). Called on the io
    // thread. Unset: both answer 404.
    struct ExtensionControl {
        std::function<std::string()> describe;
        std::function<Result<std::string>()> reload;
    } extensions{};
    // Added to the wall clock's ms to make the hosts' lease epochs (health/host_monitor.h), which
    // each agent only lets grow. A replica that leads passes its leader token << 42, so that a
    // later leader's epochs exceed an earlier one's whatever their clocks say (2^42 ms is 139
    // years; 2^21 leader terms fit). 0: the wall clock alone (one process).
    int64_t lease_epoch_base = 0;
    // Image content (resources/images.h): the largest archive an upload may be (beyond: 413), and
    // where downloads are assembled before they are sent (temporary files; "": the system's
    // temporary directory). cogsd's HTTP server spools uploads (IsImageUpload) with the same limit.
    uint64_t max_image_bytes = uint64_t{512} << 20;
    std::string image_spool_dir{};
};

// Whether cogs/http should spool the body of this request to a file: an image upload
// (PUT /v1/images/{id}/file, resources/images.h). For http::ServerOptions::spool_body, on every
// replica (a follower forwards the file), with CloudOptions::max_image_bytes as the limit.
bool IsImageUpload(const http::Request& head);

class Cloud {
public:
    Cloud(boost::asio::io_context& io, store::Store& store, workflow::Engine& engine,
          const workflow::Registry& registry, CloudOptions options);
    ~Cloud();
    Cloud(const Cloud&) = delete;
    Cloud& operator=(const Cloud&) = delete;

    // Loads the desired state from the store and settles resources whose workflow ended while
    // cogsd was down. Blocking; call once, after Engine::Recover(), before Start().
    Status Load();

    // The bootstrap admin token. `current` is the secret the bootstrap file holds now ("" if none).
    // A new admin token (in project "admin", created if missing) is made, and its secret returned
    // for the caller to write to that file, when
    //   - no admin token is valid (none, or every one expired): the first start, or a control plane
    //     whose every admin token ran out (its disk is the root of trust), or
    //   - `current` is a bootstrap token that has expired or has less than half of
    //     admin_token_ttl left (a `cogs dev` restarted days later): the old one keeps working until
    //     it expires; every expired bootstrap token is erased then.
    // Else returns "" (the file stays as it is), as it does on a full disk (!Store::Writable) while
    // the file's token still works. Blocking (start-up only).
    Result<std::string> Bootstrap(std::string_view current = {});

    // Starts and stops the loops: host leases, healing, reconcilers, retention of events, of ended
    // workflows and of Idempotency-Keys.
    void Start();
    void Stop();

    // The resource kinds declared in configuration (kind_spec.h, resources/kinds.h): checked, and
    // with `apply` served from then on. All or nothing; refused naming the spec's file and line.
    // On the io thread (cogs/extend's reload).
    Status SetKinds(const std::vector<KindSpec>& kinds, bool apply);

    // The in-process services, for the engine's catalog: "scheduler" and "compute".
    std::shared_ptr<workflow::ServiceClient> SchedulerService();
    std::shared_ptr<workflow::ServiceClient> ComputeService();

    // The API (docs/api.md) for http::StartServer: /healthz and /v1/..., on the io thread.
    http::Handler Handler();

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cogs::cloud
