// cogs-compute: the compute micro-service's domain (a cogs::services::kit::Domain).
//
// It owns instances (virtual servers) on the hosts this process serves. One process may act as
// many hosts (scale tests run thousands of simulated hosts in one process); every action names its
// host, and the domain refuses a host it does not serve. Capacity is not checked here: placement in
// the control plane (cogsd) owns it.
//
// Actions (inputs and outputs are JSON objects; an unknown, missing or mistyped field is refused
// with kInvalidArgument naming it; ids are 1-128 characters of [A-Za-z0-9._-]):
//
//   create_instance {id, host, vcpus >= 1, ram_mb >= 1, disk_gb >= 0, image, port_id?, mac_address?,
//                    ip_address?, project_id?, name?}
//        -> long action: {id, host, state: "ACTIVE"} once booted (202 until then).
//        The same id on the same host with the same values answers the same (no second instance;
//        202 until that instance's boot ends; state "SHUTOFF" if it has been stopped since); with
//        other values kAlreadyExists; the id on another host kFailedPrecondition.
//   delete_instance {id, host} -> {id, deleted}   deleted: whether it existed on that host (an
//        instance of that id on another host is left alone).
//   start_instance  {id, host} -> long action to {id, host, state: "ACTIVE"}; a running instance is
//        answered at once (or when its current boot ends).
//   stop_instance   {id, host} -> {id, host, state: "SHUTOFF"} at once.
//   reboot_instance {id, host} -> long action: REBOOT, then {id, host, state: "ACTIVE"} (also from
//        SHUTOFF: a hard reboot starts it).
//   start/stop/reboot of an instance not on that host: kNotFound (non-retryable).
//
// State of an instance, derived from the clock (no timers): SHUTOFF once stopped; otherwise BUILD
// (after create/start) or REBOOT (after reboot) until its boot ends, then ACTIVE.
//
// Inventory: {"hosts": [{name, availability_zone, vcpus, ram_mb, disk_gb, traits}],
//             "instances": [{id, host, state, vcpus, ram_mb, disk_gb, image, port_id, mac_address,
//                            ip_address, project_id, name, created_at_ms, ready_at_ms}]} in id order.
// GET /v1/instances/{id} -> 200 {"instance": {...as in the inventory}} or 404.
//
// Threading: the domain and its driver live on the service's io_context thread (domain.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/services/kit/domain.h"

namespace cogs::services::compute {

// A host as this process offers it to the control plane.
struct HostSpec {
    std::string name{};
    std::string availability_zone = "nova";
    int64_t vcpus = 16;
    int64_t ram_mb = 65536;
    int64_t disk_gb = 1000;
    std::vector<std::string> traits{};
};

// What a driver needs to know of an instance.
struct InstanceSpec {
    std::string id{};
    std::string host{};
    int64_t vcpus = 0;
    int64_t ram_mb = 0;
    int64_t disk_gb = 0;
    std::string image{};
    std::string port_id{};
    std::string mac_address{};
    std::string ip_address{};
};

// What runs instances. Every call is idempotent and short: it starts work and says how long it
// takes, it never waits for it (the domain derives the state from the clock).
class ComputeDriver {
public:
    virtual ~ComputeDriver() = default;
    virtual std::string_view name() const = 0;

    // Starts (or restarts) `instance`; answers how long until it is ACTIVE.
    virtual Result<Millis> Boot(const InstanceSpec& instance) = 0;
    // Powers it off.
    virtual Status Stop(const InstanceSpec& instance) = 0;
    // Removes it and everything it holds; absent is success.
    virtual Status Delete(const InstanceSpec& instance) = 0;
};

struct ComputeDriverOptions {
    Millis boot_time{200};  // sim: how long an instance is BUILD (or REBOOT); 0 allowed
};

// The drivers by name: "sim" (nothing runs; a boot takes options.boot_time). kInvalidArgument for
// another name.
Result<std::unique_ptr<ComputeDriver>> MakeComputeDriver(std::string name, ComputeDriverOptions options);

struct ComputeOptions {
    std::vector<HostSpec> hosts;      // the hosts this process serves; at least one, names unique
    std::function<int64_t()> now_us;  // wall clock (µs since the epoch); empty: cogs::WallNowUs
};

// The domain: name "compute", table "instances" (one record per instance, JSON). kInvalidArgument
// for no hosts, a host without a name, or a name twice.
Result<std::unique_ptr<kit::Domain>> MakeComputeDomain(ComputeOptions options,
                                                       std::unique_ptr<ComputeDriver> driver);

}  // namespace cogs::services::compute
