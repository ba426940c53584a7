// What the cloud chaos runs read and seed through the cogs API and the services' inventories:
// small synchronous helpers over ApiClient (test/support/dev_cloud.h). Each call blocks its thread
// until the answer or its deadline; use one ApiClient per thread.
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
