#include "cogs/netaddr/subnet.h"

#include <algorithm>

namespace cogs::netaddr {
namespace {

// An error of `code` that names `field` like a FieldError does, for a clash with existing state.
Error FieldConflict(std::string name, std::string_view what) {
    Error e = FieldError(name, what);
    e.code = ErrorCode::kConflict;
    e.retryable = false;
    return e;
}

bool InRanges(std::span<const AddressRange> pools, uint32_t ip) {
    auto it = std::upper_bound(pools.begin(), pools.end(), ip,
                               [](uint32_t v, const AddressRange& r) { return v < r.first; });
    return it != pools.begin() && std::prev(it)->last >= ip;
}

}  // namespace

bool SubnetLayout::InPools(uint32_t ip) const { return InRanges(pools, ip); }

wire::json::array PoolsJson(std::span<const AddressRange> pools) {
    wire::json::array out;
    for (const auto& r : pools) {
        out.push_back(wire::json::object{{"start", FormatIpv4(r.first)}, {"end", FormatIpv4(r.last)}});
    }
    return out;
}

Result<std::optional<uint32_t>> ReadOptionalAddress(const wire::Input& in, std::string_view field) {
    COGS_ASSIGN_OR_RETURN(const auto text,
                          in.OptionalString(field, wire::Text{.max_len = 64, .allow_empty = true}));
    if (!text || text->empty()) {
        return std::optional<uint32_t>();
    }
    const auto ip = ParseIpv4(*text);
    if (!ip) {
        return MakeError(in.Invalid(field, "must be an IPv4 address a.b.c.d"));
    }
    return ip;
}

Result<uint32_t> ReadAddress(const wire::Input& in, std::string_view field) {
    COGS_ASSIGN_OR_RETURN(const auto ip, ReadOptionalAddress(in, field));
    if (!ip) {
        return MakeError(in.Invalid(field, "required"));
    }
    return *ip;
}

Result<SubnetLayout> ReadSubnetLayout(const wire::Input& in) {
    SubnetLayout s;
    COGS_ASSIGN_OR_RETURN(const std::string cidr_text, in.String("cidr", wire::Text{.max_len = 64}));
    const auto cidr = ParseCidr(cidr_text);
    if (!cidr.cidr) {
        return MakeError(in.Invalid("cidr", cidr.problem + ", got '" + cidr_text + "'"));
    }
    s.cidr = *cidr.cidr;

    COGS_ASSIGN_OR_RETURN(const auto gateway, ReadOptionalAddress(in, "gateway_ip"));
    s.gateway = gateway.value_or(s.cidr.first_host());
    if (!s.cidr.IsHost(s.gateway)) {
        return MakeError(in.Invalid(
            "gateway_ip", FormatIpv4(s.gateway) + " is not a host address of " + s.cidr.ToString()));
    }

    if (!in.Has("allocation_pools")) {
        // Every host address but the gateway.
        if (s.gateway > s.cidr.first_host()) {
            s.pools.push_back({s.cidr.first_host(), s.gateway - 1});
        }
        if (s.gateway < s.cidr.last_host()) {
            s.pools.push_back({s.gateway + 1, s.cidr.last_host()});
        }
        return s;
    }
    COGS_ASSIGN_OR_RETURN(const std::vector<wire::Input> pools,
                          in.Objects("allocation_pools", {"start", "end"}));
    if (pools.empty()) {
        return MakeError(in.Invalid("allocation_pools", "must be a non-empty array of {\"start\", \"end\"}"));
    }
    for (size_t i = 0; i < pools.size(); ++i) {
        AddressRange r;
        COGS_ASSIGN_OR_RETURN(r.first, ReadAddress(pools[i], "start"));
        COGS_ASSIGN_OR_RETURN(r.last, ReadAddress(pools[i], "end"));
        const std::string item = in.Name("allocation_pools") + "[" + std::to_string(i) + "]";
        const std::string range = FormatIpv4(r.first) + "-" + FormatIpv4(r.last);
        if (r.first > r.last) {
            return MakeError(FieldError(item, "starts after it ends: " + range));
        }
        if (!s.cidr.IsHost(r.first) || !s.cidr.IsHost(r.last)) {
            return MakeError(FieldError(item, range + " is not inside the host addresses of " +
                                                  s.cidr.ToString() + " (network and broadcast excluded)"));
        }
        if (r.first <= s.gateway && s.gateway <= r.last) {
            return MakeError(FieldError(item, range + " contains the gateway " + FormatIpv4(s.gateway)));
        }
        s.pools.push_back(r);
    }
    std::sort(s.pools.begin(), s.pools.end(),
              [](const AddressRange& x, const AddressRange& y) { return x.first < y.first; });
    for (size_t i = 1; i < s.pools.size(); ++i) {
        if (s.pools[i].first <= s.pools[i - 1].last) {
            return MakeError(
                in.Invalid("allocation_pools", "ranges overlap at " + FormatIpv4(s.pools[i].first)));
        }
    }
    return s;
}

Status CheckNoOverlap(const wire::Input& in, const Cidr& cidr, std::string_view network_id,
                      const SubnetRef& other) {
    if (!cidr.Overlaps(other.cidr)) {
        return Ok();
    }
    return MakeError(FieldConflict(in.Name("cidr"), cidr.ToString() + " overlaps subnet " +
                                                        std::string(other.id) + " (" + other.cidr.ToString() +
                                                        ") of network " + std::string(network_id)));
}

Result<size_t> SubnetForFixedIp(const wire::Input& in, std::string_view field, uint32_t ip,
                                std::string_view network_id, std::span<const SubnetRef> subnets,
                                bool subnet_named) {
    const std::string text = FormatIpv4(ip);
    size_t i = 0;
    while (i < subnets.size() && !subnets[i].cidr.Contains(ip)) {
        ++i;
    }
    if (i == subnets.size()) {
        if (subnet_named && subnets.size() == 1) {
            return MakeError(in.Invalid(field, text + " is not in subnet " + std::string(subnets[0].id) +
                                                   " (" + subnets[0].cidr.ToString() + ")"));
        }
        return MakeError(in.Invalid(field, text + " is in no subnet of network " + std::string(network_id)));
    }
    if (!InRanges(subnets[i].pools, ip)) {
        return MakeError(in.Invalid(
            field, text + " is outside the allocation pools of subnet " + std::string(subnets[i].id) +
                       " (the gateway, network and broadcast addresses never are in one)"));
    }
    return i;
}

Error AddressInUse(const wire::Input& in, std::string_view field, uint32_t ip, std::string_view holder) {
    std::string what = "address " + FormatIpv4(ip) + " in use";
    if (!holder.empty()) {
        what += " by port " + std::string(holder);
    }
    return FieldConflict(in.Name(field), what);
}

}  // namespace cogs::netaddr
