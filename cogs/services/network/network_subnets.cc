// Networks and subnets: their actions, the subnet spec (shared by create_subnet and the stored
// record) and loading them.
#include <algorithm>
#include <boost/json/serialize.hpp>

#include "cogs/services/network/internal/network_domain.h"
#include "cogs/services/network/network.h"

namespace cogs::services::network::internal {
namespace {

namespace json = wire::json;

// The subnet `in` describes (create_subnet's input, or a stored record), checked, defaults filled in.
Result<SubnetSpec> ReadSubnetSpec(const wire::Input& in) {
    SubnetSpec s;
    COGS_ASSIGN_OR_RETURN(s.id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(s.network_id, in.String("network_id", kIdText));
    COGS_ASSIGN_OR_RETURN(const std::string cidr_text, in.String("cidr"));
    const auto cidr = ParseCidr(cidr_text);
    if (!cidr.cidr) {
        return MakeError(in.Invalid("cidr", cidr.problem + ", got '" + cidr_text + "'"));
    }
    s.cidr = *cidr.cidr;
    COGS_ASSIGN_OR_RETURN(const auto name, in.OptionalString("name"));
    COGS_ASSIGN_OR_RETURN(const auto project, in.OptionalString("project_id"));
    s.name = name.value_or("");
    s.project_id = project.value_or("");

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

SubnetSpec SpecOf(const Subnet& s) {
    return SubnetSpec{s.id, s.network_id, s.cidr, s.gateway, s.pool.pools(), s.name, s.project_id};
}

}  // namespace

Result<kit::Done> NetworkDomain::CreateNetwork(const wire::Input& in, kit::Tx& tx) {
    Network n;
    COGS_ASSIGN_OR_RETURN(n.id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(const auto name, in.OptionalString("name"));
    COGS_ASSIGN_OR_RETURN(const auto project, in.OptionalString("project_id"));
    n.name = name.value_or("");
    n.project_id = project.value_or("");

    if (auto it = networks_.find(n.id); it != networks_.end()) {
        const Network& old = it->second;
        if (old.name != n.name || old.project_id != n.project_id) {
            return MakeError(ErrorCode::kAlreadyExists, "network " + n.id + " exists with other content: " +
                                                            json::serialize(NetworkJson(old)));
        }
        return Output(NetworkJson(old));
    }
    tx.Put(kNetworksTable, n.id, json::serialize(NetworkJson(n)));
    auto [it, inserted] = networks_.emplace(n.id, std::move(n));
    return Output(NetworkJson(it->second));
}

Result<kit::Done> NetworkDomain::DeleteNetwork(const wire::Input& in, kit::Tx& tx) {
    return DeleteById(in, tx, networks_, kNetworksTable, [this](const Network& n) -> Status {
        const size_t subnets = CountOf(subnets_by_network_, n.id);
        const size_t ports = CountOf(ports_by_network_, n.id);
        if (subnets > 0 || ports > 0) {
            return MakeError(ErrorCode::kFailedPrecondition, "network " + n.id + " still has " +
                                                                 std::to_string(subnets) + " subnet(s) and " +
                                                                 std::to_string(ports) + " port(s)");
        }
        return Ok();
    });
}

Result<kit::Done> NetworkDomain::CreateSubnet(const wire::Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(SubnetSpec spec, ReadSubnetSpec(in));
    if (auto it = subnets_.find(spec.id); it != subnets_.end()) {
        if (SpecOf(it->second) != spec) {
            return MakeError(ErrorCode::kAlreadyExists, "subnet " + spec.id + " exists with other content: " +
                                                            json::serialize(SubnetJson(it->second)));
        }
        return Output(SubnetJson(it->second));
    }
    if (!networks_.contains(spec.network_id)) {
        return MakeError(ErrorCode::kNotFound, "network " + spec.network_id + " not found");
    }
    if (auto by = subnets_by_network_.find(spec.network_id); by != subnets_by_network_.end()) {
        for (const std::string& other_id : by->second) {
            const Subnet& other = subnets_.at(other_id);
            if (other.cidr.Overlaps(spec.cidr)) {
                return MakeError(ErrorCode::kConflict, "cidr " + spec.cidr.ToString() + " overlaps subnet " +
                                                           other.id + " (" + other.cidr.ToString() +
                                                           ") of network " + spec.network_id);
            }
        }
    }
    Subnet& s = AddSubnet(std::move(spec));
    tx.Put(kSubnetsTable, s.id, SubnetRecord(s));
    return Output(SubnetJson(s));
}

Result<kit::Done> NetworkDomain::DeleteSubnet(const wire::Input& in, kit::Tx& tx) {
    return DeleteById(in, tx, subnets_, kSubnetsTable, [this](const Subnet& s) -> Status {
        if (const size_t ports = CountOf(addresses_by_subnet_, s.id); ports > 0) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "subnet " + s.id + " is still used by " + std::to_string(ports) + " port(s)");
        }
        EraseFrom(subnets_by_network_, s.network_id, s.id);
        addresses_by_subnet_.erase(s.id);
        return Ok();
    });
}

Status NetworkDomain::LoadNetwork(std::string_view id, std::string_view text) {
    COGS_ASSIGN_OR_RETURN(const wire::Input in, wire::Input::ParseAny(text, "record"));
    Network n;
    COGS_ASSIGN_OR_RETURN(n.id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(n.name, in.String("name", wire::Text{.allow_empty = true}));
    COGS_ASSIGN_OR_RETURN(n.project_id, in.String("project_id", wire::Text{.allow_empty = true}));
    if (n.id != id || networks_.contains(n.id)) {
        return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
    }
    networks_.emplace(n.id, std::move(n));
    return Ok();
}

Status NetworkDomain::LoadSubnet(std::string_view id, std::string_view text) {
    COGS_ASSIGN_OR_RETURN(const wire::Input in, wire::Input::ParseAny(text, "record"));
    COGS_ASSIGN_OR_RETURN(SubnetSpec spec, ReadSubnetSpec(in));
    if (spec.id != id || subnets_.contains(spec.id)) {
        return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
    }
    COGS_ASSIGN_OR_RETURN(const auto cursor, ReadOptionalAddress(in, "next_ip"));
    Subnet& s = AddSubnet(std::move(spec));
    if (cursor) {
        s.pool.set_cursor(*cursor);
    }
    // Ports may have been loaded before their subnet (tables come in any order).
    if (auto used = addresses_by_subnet_.find(s.id); used != addresses_by_subnet_.end()) {
        for (const auto& [ip, port_id] : used->second) {
            if (!s.pool.Take(ip)) {
                return MakeError(ErrorCode::kInternal,
                                 "port " + port_id + " holds " + FormatIpv4(ip) + ", outside the pools");
            }
        }
    }
    return Ok();
}

}  // namespace cogs::services::network::internal
