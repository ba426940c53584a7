// What the cloud chaos runs (test/chaos) and the integration tests read and seed through the cogs
// API and the services' inventories and ledgers, and how their clients re-send a request: small
// synchronous helpers over ApiClient (dev_cloud.h). Each call blocks its thread until the answer or
// its deadline; use one ApiClient per thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "cogs/base/result.h"
#include "test/support/dev_cloud.h"

namespace cogs::testing {

// A string field of an object ("" when absent or not a string).
std::string Str(const boost::json::object& o, const std::string& key);

// Where a cloud's processes answer, for whoever reads or judges all of it (the audit, cloud_audit.h):
// every replica of cogsd (one URL for a single cogsd), each compute agent, cogs-network and
// cogs-volume, with the tokens. A DevCloud's: Endpoints below; a chaos run's: test/chaos/chaos_cloud.h.
struct CloudEndpoints {
    std::vector<std::string> api_urls;
    std::string admin_token;
    std::string network_token;  // what cogs-network checks
    std::string volume_token;   // what cogs-volume checks
    struct Agent {
        std::string name;  // for messages ("host-2", "cogs-compute-2")
        std::string url;
        std::string token;  // the agent's own (its host's enrollment)
    };
    std::vector<Agent> agents;
    std::string network_url;
    std::string volume_url;
};
// A `cogs dev`'s, as its dev.json says now (DevCloud::Reload after a restart).
CloudEndpoints Endpoints(const DevCloud& dev);

// How a client treats an answer to a request that carries an Idempotency-Key (docs/api.md), as the
// CLI does: SendAgain when there was no answer, a 5xx, a 429, or a 409 "a request with this
// Idempotency-Key is being answered" (its first attempt is still in cogsd); after Backoff: the
// answer's Retry-After (at least 1 s), else 100 ms doubling per attempt up to 2 s.
bool SendAgain(const Result<ApiReply>& r);
Duration Backoff(const Result<ApiReply>& r, int attempts);

// The control plane through any of its replicas (a single URL: one cogsd): a call goes to the
// replica that answered the last one; a transport failure or a 502, 503 or 504 sends it on to the
// next replica, each tried at most once per call, and the last answer (or failure) is returned. A
// replica that let a call run into its deadline (a frozen one accepts connections and answers
// nothing) is tried last for the next 3 s. For reads, and for writes that carry an Idempotency-Key
// (a re-sent write may have been applied).
class ControlPlaneClient {
public:
    ControlPlaneClient(const std::vector<std::string>& urls, const std::string& token);
    Result<ApiReply> Call(const std::string& method, const std::string& target, const std::string& body = "",
                          const std::vector<std::pair<std::string, std::string>>& headers = {},
                          Duration timeout = std::chrono::seconds(20));

private:
    std::vector<ApiClient> clients_;
    std::vector<SteadyTime> slow_until_;  // per replica
    size_t current_ = 0;
};

// The id of the replica that leads as `replica` answers GET /v1/replicas (a follower forwards it to
// the leader): "" when none is marked leader. Errors: no answer, or not 200.
Result<std::string> LeaderId(ApiClient& replica, Duration timeout);

// A service's ledger (GET /v1/ledger, docs/service-protocol.md): its entries in sequence order.
// kUnavailable on a status other than 200.
Result<boost::json::array> ServiceLedger(ApiClient& service, Duration timeout);

// Every item of a cogsd list (`path` like "/v1/servers", items under `key` like "servers"),
// following next_marker. kUnavailable on a transport failure or a status other than 200.
Result<std::vector<boost::json::object>> ListAll(ControlPlaneClient& api, const std::string& path,
                                                 const std::string& key);

// What a chaos workload needs in the admin token's project, made through the API: unlimited quotas,
// flavor "chaos.tiny" (1 vCPU, 256 MiB, 1 GiB), image "chaos-img", network "chaos-net" with subnet
// 10.32.0.0/16, both ACTIVE.
struct Seeded {
    std::string project_id;
    std::string flavor = "chaos.tiny";
    std::string image = "chaos-img";
    std::string network_id;
};
Result<Seeded> SeedCloud(ControlPlaneClient& admin);

// One compute agent's instances (GET /v1/inventory): id -> state, plus the hosts they are on.
struct InstanceView {
    std::string host;
    std::string state;
};
Result<std::map<std::string, InstanceView>> ComputeInventory(ApiClient& agent, Duration timeout);

// Whether an instance state means "running or about to run" (a second copy elsewhere is split brain).
bool InstanceRunning(const std::string& instance_state);
// Whether a cogsd resource status is transitional (work in progress).
bool Transitional(const std::string& status);

double Percentile(std::vector<double> values, double p);  // nearest rank; NaN when empty

// A duration in seconds, for reports.
double Seconds(Duration d);
// A figure of a JSON report: three decimals; null when absent or NaN.
std::string JsonNumber(std::optional<double> v);

}  // namespace cogs::testing
