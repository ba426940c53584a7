// The services' inventories as cogsd reads them (cogs/cloud/reconcile/reconcile.h): the first byte
// picks the service (compute, network, volume), the rest is the JSON text of its GET /v1/inventory.
// A text that parses goes through two scans of a Reconciler against a small desired state (a server,
// its port and a volume, on hosts h1 and h2), the second after the orphan grace, so that every rule
// judges what the fuzzer wrote.
//
// What must hold: a refusal names the service; actions come sorted as the header promises and are
// about the service whose inventory was read.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "cogs/base/check.h"
#include "cogs/cloud/reconcile/reconcile.h"

namespace {

using namespace cogs::cloud::reconcile;

Desired SmallCloud() {
    Desired d;
    d.servers.push_back(DesiredServer{.id = "s1",
                                      .project = "p",
                                      .status = "ACTIVE",
                                      .host = "h1",
                                      .port_id = "p1",
                                      .volume_ids = {"v1"},
                                      .changed_ms = 1});
    d.servers.push_back(DesiredServer{
        .id = "s2", .project = "p", .status = "BUILD", .claim_host = "h2", .busy = true, .changed_ms = 1});
    d.ports.push_back(DesiredPort{.id = "p1",
                                  .network_id = "n1",
                                  .device_id = "s1",
                                  .fixed_ip = "10.0.0.5",
                                  .status = "ACTIVE",
                                  .changed_ms = 1});
    d.volumes.push_back(DesiredVolume{.id = "v1", .status = "in-use", .server_id = "s1", .changed_ms = 1});
    d.volumes.push_back(DesiredVolume{.id = "v2", .status = "available", .changed_ms = 1});
    return d;
}

auto Order(const Action& a) { return std::tie(a.service, a.id, a.host, a.kind); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::string_view services[] = {"compute", "network", "volume"};
    const std::string_view service = services[data[0] % 3];
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    constexpr int64_t kReadAt = 1000;

    Actual actual;
    cogs::Status parsed = cogs::Ok();
    auto take = [&parsed](auto inv, auto& into) {
        if (inv) {
            into = std::move(*inv);
        } else {
            parsed = cogs::MakeError(inv.error());
        }
    };
    if (service == "compute") {
        take(ParseComputeInventory(text, kReadAt), actual.compute.emplace_back());
    } else if (service == "network") {
        take(ParseNetworkInventory(text, kReadAt), actual.network.emplace());
    } else {
        take(ParseVolumeInventory(text, kReadAt), actual.volume.emplace());
    }
    if (!parsed) {
        COGS_CHECK(parsed.error().message.starts_with(std::string(service) + " inventory"));
        return 0;
    }

    Reconciler reconciler(ReconcilerOptions{.orphan_grace = std::chrono::seconds(60), .confirm_scans = 2});
    const Desired desired = SmallCloud();
    for (int64_t now : {kReadAt, kReadAt + 61'000}) {
        const std::vector<Action> actions = reconciler.Scan(desired, actual, now);
        COGS_CHECK(std::is_sorted(actions.begin(), actions.end(),
                                  [](const Action& a, const Action& b) { return Order(a) < Order(b); }));
        for (const Action& a : actions) {
            COGS_CHECK(a.service == service);
            COGS_CHECK(!a.id.empty() && !a.reason.empty());
        }
    }
    return 0;
}
