// Networks and subnets: their actions, the subnet spec (shared by create_subnet and the stored
// record) and loading them.
#include <algorithm>
#include <boost/json/serialize.hpp>

#include "cogs/services/network/internal/network_domain.h"
#include "cogs/services/network/network.h"

namespace cogs::services::network::internal {
namespace {

namespace json = wire::json;

// The subnet `in` describes (create_subnet's input, or a stored record), checked, defaults filled
// in. `names` reads name and project: the records written before control characters were refused
// must still load.
Result<SubnetSpec> ReadSubnetSpec(const wire::Input& in, wire::Text names = {.allow_empty = true}) {
    SubnetSpec s;
    COGS_ASSIGN_OR_RETURN(s.id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(s.network_id, in.String("network_id", kIdText));
    COGS_ASSIGN_OR_RETURN(s.layout, netaddr::ReadSubnetLayout(in));
    COGS_ASSIGN_OR_RETURN(const auto name, in.OptionalString("name", names));
    COGS_ASSIGN_OR_RETURN(const auto project, in.OptionalString("project_id", names));
    s.name = name.value_or("");
    s.project_id = project.value_or("");
    return s;
}

SubnetSpec SpecOf(const Subnet& s) {
    return SubnetSpec{s.id, s.network_id, {s.cidr, s.gateway, s.pool.pools()}, s.name, s.project_id};
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
        return Ensured(old);
    }
    tx.Put(kNetworksTable, n.id, json::serialize(NetworkJson(n)));
    auto [it, inserted] = networks_.emplace(n.id, std::move(n));
    return Ensured(it->second);
}

Result<kit::Done> NetworkDomain::DeleteNetwork(const wire::Input& in, kit::Tx& tx) {
    auto done = DeleteById(in, tx, networks_, kNetworksTable, [this](const Network& n) -> Status {
        const size_t subnets = CountOf(subnets_by_network_, n.id);
        const size_t ports = CountOf(ports_by_network_, n.id);
        if (subnets > 0 || ports > 0) {
            return MakeError(ErrorCode::kFailedPrecondition, "network " + n.id + " still has " +
                                                                 std::to_string(subnets) + " subnet(s) and " +
                                                                 std::to_string(ports) + " port(s)");
        }
        return Ok();
    });
    if (done && bridges_) {
        // Also when there was no record: a create that failed and is compensated may have made it.
        bridges_->Remove(*in.String("id", kIdText));
    }
    return done;
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
            COGS_TRY(netaddr::CheckNoOverlap(in, spec.layout.cidr, spec.network_id,
                                             {other.id, other.cidr, other.pool.pools()}));
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
    COGS_ASSIGN_OR_RETURN(n.name, in.String("name", kRecordText));
    COGS_ASSIGN_OR_RETURN(n.project_id, in.String("project_id", kRecordText));
    if (n.id != id || networks_.contains(n.id)) {
        return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
    }
    networks_.emplace(n.id, std::move(n));
    return Ok();
}

Status NetworkDomain::LoadSubnet(std::string_view id, std::string_view text) {
    COGS_ASSIGN_OR_RETURN(const wire::Input in, wire::Input::ParseAny(text, "record"));
    COGS_ASSIGN_OR_RETURN(SubnetSpec spec, ReadSubnetSpec(in, kRecordText));
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
