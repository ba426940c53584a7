// The network domain of cogs-network: networks, IPv4 subnets with allocation pools, and ports that
// each hold one address of a subnet and one MAC address. It is a kit::Domain (domain.h): the kit
// serves it over the micro-service protocol (docs/service-protocol.md) with the idempotency ledger,
// tombstones, faults and durable state; this library decides what an action means.
//
// Actions (input and output are JSON objects; the full contract with every error is in README.md):
//
//   create_network {id, name?, project_id?}                      -> {id, name, project_id}
//   delete_network {id}                                          -> {id, deleted}
//   create_subnet  {id, network_id, cidr, gateway_ip?, allocation_pools?, name?, project_id?}
//                                                                -> {id, network_id, cidr, gateway_ip,
//                                                                    allocation_pools, name, project_id}
//   delete_subnet  {id}                                          -> {id, deleted}
//   create_port    {id, network_id, subnet_id?, fixed_ip?, device_id?, name?, project_id?}
//                                                                -> {id, network_id, subnet_id, mac_address,
//                                                                    fixed_ip, device_id, name, project_id}
//   create_port    {id, network_id, device_id, existing: true}   -> the port made beforehand, bound to
//                                                                   device_id (kConflict if another
//                                                                   device holds it)
//   update_port    {id, device_id}                               -> the port
//   delete_port    {id}                                          -> {id, deleted}
//   delete_port    {id, device_id, keep: true}                   -> {id, deleted: false, unbound}: the
//                                                                   port stays, unbound if device_id
//                                                                   held it
//
// Creates are idempotent by id (a repeat answers what exists; a repeat that contradicts it is
// kAlreadyExists) and deletes of what is absent succeed with "deleted": false, so a workflow may
// re-send any of them and use a delete as the compensation of a create.
//
// Invariants: an address is held by at most one port, also across deletes and reloads; a deleted
// port's address returns to its pool; allocation is next-fit (a just-released address is reused only
// after the rest of the pool) and costs O(log n); MAC addresses (fa:16:3e:xx:xx:xx) are unique.
//
// Durable records (Tx / Load), JSON text, in tables kNetworksTable, kSubnetsTable, kPortsTable keyed
// by id; Load accepts them in any table order.
//
// Read routes (Get): GET /v1/networks/{id}, /v1/subnets/{id}, /v1/ports/{id} -> 200 {"network"|
// "subnet"|"port": {...}} or 404 {"code":"not_found","message","retryable":false}.
// Inventory: {"networks", "subnets", "ports" (each sorted by id), "addresses": [{"ip","subnet_id",
// "port_id"}] sorted by address (numerically), then subnet id}.
//
// Threading: like every Domain, it lives on its service's io thread; no method may be called
// concurrently.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/services/kit/domain.h"

namespace cogs::services::network {

inline constexpr std::string_view kDomainName = "network";
// Its actions, as workflows name them after "network." (cogsd's catalog refuses any other).
inline constexpr std::array<std::string_view, 7> kActions = {
    "create_network", "delete_network", "create_subnet", "delete_subnet",
    "create_port",    "update_port",    "delete_port"};
inline constexpr std::string_view kNetworksTable = "networks";
inline constexpr std::string_view kSubnetsTable = "subnets";
inline constexpr std::string_view kPortsTable = "ports";

// A new, empty network domain that keeps records only (driver "none").
std::unique_ptr<kit::Domain> MakeNetworkDomain();

// What carries the networks on the machine (README.md, "Drivers").
struct NetworkOptions {
    // "none": records only. "linux" (as root): a Linux bridge per network on this machine
    // (cogs/linuxnet), made before create_network answers (a long action that fails, and is
    // compensated, if the bridge cannot be made) and removed after delete_network; a sweep at start
    // and every `sweep_interval` makes missing bridges and removes the bridges, port veths and stray
    // links of `prefix` that no network or port owns (found so by two sweeps in a row).
    std::string driver = "none";
    std::string prefix = "cg";  // linuxnet's prefix; the compute agents' --netns-prefix
    std::string ip = "/usr/sbin/ip";
    Duration sweep_interval = std::chrono::seconds(60);  // 0: one sweep, at start
};

// Errors: kInvalidArgument naming "driver", "sweep interval" or "prefix"; for "linux",
// kPermissionDenied unless root, kUnavailable if `ip` cannot list the machine.
Result<std::unique_ptr<kit::Domain>> MakeNetworkDomain(NetworkOptions options);

}  // namespace cogs::services::network
