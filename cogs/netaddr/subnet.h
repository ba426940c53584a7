// The rules of a subnet's addresses, defined once for cogsd (which checks a request before it writes
// anything) and cogs-network (which checks an action before it changes anything, as the second line
// and the authority: two requests racing past cogsd are settled there).
//
// A subnet's layout is its block (cidr), its gateway and its allocation pools:
//   - cidr: "a.b.c.d/n", IPv4 only, prefix kMinPrefix..kMaxPrefix, host bits zero;
//   - gateway_ip: a host address of the block (not the network or broadcast address); default the
//     first host address;
//   - allocation_pools: [{start, end}], each start <= end, inside the block's host addresses, not
//     containing the gateway, not overlapping each other; default every host address but the
//     gateway (one or two ranges).
// Between subnets: the blocks of one network never overlap (other networks may reuse a block).
// A requested fixed address must lie in the block of a subnet of its network (the one asked for,
// if one is), inside that subnet's pools (so never the gateway, network or broadcast address), and
// be held by no port.
//
// Every refusal names the field by its full path (wire::Input's names): kInvalidArgument for the
// request itself, kConflict (with the same "field" detail) for a clash with what exists.
//
// Threading: pure functions and plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/netaddr/ipv4.h"
#include "cogs/wire/input.h"

namespace cogs::netaddr {

struct SubnetLayout {
    Cidr cidr;
    uint32_t gateway = 0;
    std::vector<AddressRange> pools;  // sorted, disjoint

    bool InPools(uint32_t ip) const;
    bool operator==(const SubnetLayout&) const = default;
};

// The fields "cidr", "gateway_ip"? and "allocation_pools"? of `in` (an API body, an action's input
// or a stored record: the same names everywhere), checked, defaults filled in, pools sorted.
Result<SubnetLayout> ReadSubnetLayout(const wire::Input& in);

// Pools as the API and the service show them (and ReadSubnetLayout reads them): [{"start","end"}].
wire::json::array PoolsJson(std::span<const AddressRange> pools);

// A required IPv4 address field "a.b.c.d"; Optional: absent, null or "" is nullopt.
Result<uint32_t> ReadAddress(const wire::Input& in, std::string_view field);
Result<std::optional<uint32_t>> ReadOptionalAddress(const wire::Input& in, std::string_view field);

// A subnet that exists, as a check sees it.
struct SubnetRef {
    std::string_view id;
    const Cidr& cidr;
    std::span<const AddressRange> pools;
};

// kConflict naming `in`'s "cidr" if `cidr` overlaps `other`, a subnet of the same network.
Status CheckNoOverlap(const wire::Input& in, const Cidr& cidr, std::string_view network_id,
                      const SubnetRef& other);

// Which subnet a requested address `ip` (the value of `in`'s `field`) goes to, among `subnets` (all
// of its network's, or just the one the request names; blocks never overlap): its index. Refused
// naming `field`: in no subnet of `network_id`, or not in the named one; outside its pools. Whether
// it is free is the caller's to check (AddressInUse).
Result<size_t> SubnetForFixedIp(const wire::Input& in, std::string_view field, uint32_t ip,
                                std::string_view network_id, std::span<const SubnetRef> subnets,
                                bool subnet_named);

// kConflict naming `in`'s `field`: `ip` is held (by port `holder`, if known).
Error AddressInUse(const wire::Input& in, std::string_view field, uint32_t ip, std::string_view holder = "");

}  // namespace cogs::netaddr
