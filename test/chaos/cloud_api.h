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

// Every item of a cogsd list (`path` like "/v1/servers", items under `key` like "servers"),
// following next_marker. kUnavailable on a transport failure or a status other than 200.
Result<std::vector<boost::json::object>> ListAll(ApiClient& api, const std::string& path,
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
Result<Seeded> SeedCloud(ApiClient& admin);

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
