// Ports: their actions, the choice of a port's address (IPAM) and MAC, and loading them.
#include <boost/json/serialize.hpp>

#include "cogs/base/check.h"
#include "cogs/base/hash.h"
#include "cogs/services/network/internal/network_domain.h"
#include "cogs/services/network/network.h"

namespace cogs::services::network::internal {
namespace {

namespace json = wire::json;

constexpr uint32_t kMacSpace = 1u << 24;

// FNV-1a: the MAC of a port starts from a hash of its id, so it does not depend on the order in
// which ports were made (two services replaying the same actions agree).
uint32_t HashId(std::string_view id) {
    const uint64_t h = base::Fnv1a64(id, base::kFnv1aFirstBasis);
    return static_cast<uint32_t>(h ^ (h >> 24) ^ (h >> 48)) & (kMacSpace - 1);
}

}  // namespace

json::object NetworkDomain::PortOutput(const Port& p) const {
    json::object o = PortJson(p);
    // A port's subnet outlives it (delete_subnet refuses while it has ports).
    if (auto s = subnets_.find(p.subnet_id); s != subnets_.end()) {
        o["cidr"] = s->second.cidr.ToString();
        o["gateway_ip"] = FormatIpv4(s->second.gateway);
    }
    return o;
}

Result<kit::Done> NetworkDomain::CreatePort(const wire::Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(const bool existing, in.OptionalBool("existing", false));
    if (existing) {
        return BindPort(in, tx);
    }
    COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(const std::string network_id, in.String("network_id", kIdText));
    COGS_ASSIGN_OR_RETURN(auto subnet_id, in.OptionalString("subnet_id"));
    if (subnet_id && subnet_id->empty()) {
        subnet_id.reset();  // "" is "not given", like null
    }
    COGS_ASSIGN_OR_RETURN(const auto fixed_ip, ReadOptionalAddress(in, "fixed_ip"));
    COGS_ASSIGN_OR_RETURN(const auto device_id, in.OptionalString("device_id"));
    COGS_ASSIGN_OR_RETURN(const auto name, in.OptionalString("name"));
    COGS_ASSIGN_OR_RETURN(const auto project, in.OptionalString("project_id"));

    if (auto it = ports_.find(id); it != ports_.end()) {
        // A re-sent create: the same port, unless the request contradicts it. Name, device and
        // project are not compared: update_port may have changed the device since.
        const Port& old = it->second;
        if (old.network_id != network_id || (subnet_id && old.subnet_id != *subnet_id) ||
            (fixed_ip && old.ip != *fixed_ip)) {
            return MakeError(ErrorCode::kAlreadyExists,
                             "port " + id + " exists with other content: " + json::serialize(PortJson(old)));
        }
        return Output(PortOutput(old));
    }
    if (!networks_.contains(network_id)) {
        return MakeError(ErrorCode::kNotFound, "network " + network_id + " not found");
    }
    Subnet* subnet = nullptr;
    if (subnet_id) {
        auto it = subnets_.find(*subnet_id);
        if (it == subnets_.end()) {
            return MakeError(ErrorCode::kNotFound, "subnet " + *subnet_id + " not found");
        }
        if (it->second.network_id != network_id) {
            return MakeError(in.Invalid("subnet_id", "subnet " + *subnet_id + " is on network " +
                                                         it->second.network_id + ", not " + network_id));
        }
        subnet = &it->second;
    }
    if (macs_.size() >= kMacSpace) {
        return MakeError(ErrorCode::kFailedPrecondition, "no free MAC address");
    }

    // Choose the address; nothing changes until every check has passed.
    bool moved_cursor = false;
    uint32_t ip = 0;
    if (fixed_ip) {
        COGS_ASSIGN_OR_RETURN(subnet, SubnetForFixedIp(in, network_id, *fixed_ip, subnet));
        if (!subnet->pool.Take(*fixed_ip)) {
            std::string holder;
            if (auto held = addresses_by_subnet_.find(subnet->id); held != addresses_by_subnet_.end()) {
                if (auto h = held->second.find(*fixed_ip); h != held->second.end()) {
                    holder = h->second;
                }
            }
            return MakeError(netaddr::AddressInUse(in, "fixed_ip", *fixed_ip, holder));
        }
        ip = *fixed_ip;
    } else {
        if (subnet == nullptr) {
            subnet = FirstSubnetWithFreeAddress(network_id);
            if (subnet == nullptr) {
                return MakeError(ErrorCode::kFailedPrecondition, "no free address in network " + network_id);
            }
        }
        auto next = subnet->pool.TakeNext();
        if (!next) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "no free address in subnet " + subnet->id + " of network " + network_id);
        }
        ip = *next;
        moved_cursor = true;
    }

    Port p;
    p.id = id;
    p.network_id = network_id;
    p.subnet_id = subnet->id;
    p.mac = FreeMac(p.id);
    p.ip = ip;
    p.device_id = device_id.value_or("");
    p.name = name.value_or("");
    p.project_id = project.value_or("");
    const Port& added = AddPort(std::move(p));
    tx.Put(kPortsTable, added.id, json::serialize(PortJson(added)));
    if (moved_cursor) {
        tx.Put(kSubnetsTable, subnet->id, SubnetRecord(*subnet));
    }
    return Output(PortOutput(added));
}

Result<kit::Done> NetworkDomain::UpdatePort(const wire::Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(std::string device_id, in.String("device_id", wire::Text{.allow_empty = true}));
    auto it = ports_.find(id);
    if (it == ports_.end()) {
        return MakeError(ErrorCode::kNotFound, "port " + id + " not found");
    }
    Port& p = it->second;
    if (p.device_id != device_id) {
        p.device_id = std::move(device_id);
        tx.Put(kPortsTable, p.id, json::serialize(PortJson(p)));
    }
    return Output(PortOutput(p));
}

Result<kit::Done> NetworkDomain::BindPort(const wire::Input& in, kit::Tx& tx) {
    // A port someone made beforehand: bound to the device, never taken from another one.
    COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(const std::string network_id, in.String("network_id", kIdText));
    COGS_ASSIGN_OR_RETURN(std::string device_id, in.String("device_id", kIdText));
    auto it = ports_.find(id);
    if (it == ports_.end()) {
        return MakeError(ErrorCode::kNotFound, "port " + id + " not found");
    }
    Port& p = it->second;
    if (p.network_id != network_id) {
        return MakeError(in.Invalid("network_id", "port " + id + " is on network " + p.network_id));
    }
    if (p.device_id == device_id) {
        return Output(PortOutput(p));  // a re-sent take
    }
    if (!p.device_id.empty()) {
        return MakeError(ErrorCode::kConflict, "port " + id + " is bound to device " + p.device_id);
    }
    p.device_id = std::move(device_id);
    tx.Put(kPortsTable, p.id, json::serialize(PortJson(p)));
    return Output(PortOutput(p));
}

Result<kit::Done> NetworkDomain::UnbindPort(const wire::Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id", kIdText));
    COGS_ASSIGN_OR_RETURN(const std::string device_id, in.String("device_id", kIdText));
    auto it = ports_.find(id);
    if (it == ports_.end() || it->second.device_id != device_id) {
        // Gone, free, or bound to another device since: nothing of this device's to undo.
        return Output(json::object{{"id", id}, {"deleted", false}, {"unbound", false}});
    }
    it->second.device_id.clear();
    tx.Put(kPortsTable, id, json::serialize(PortJson(it->second)));
    return Output(json::object{{"id", id}, {"deleted", false}, {"unbound", true}});
}

Result<kit::Done> NetworkDomain::DeletePort(const wire::Input& in, kit::Tx& tx) {
    COGS_ASSIGN_OR_RETURN(const bool keep, in.OptionalBool("keep", false));
    if (keep) {
        return UnbindPort(in, tx);
    }
    return DeleteById(in, tx, ports_, kPortsTable, [this](const Port& p) -> Status {
        auto subnet = subnets_.find(p.subnet_id);
        COGS_EXPECT(subnet != subnets_.end());
        if (subnet != subnets_.end()) {
            const bool released = subnet->second.pool.Release(p.ip);
            COGS_EXPECT(released);
        }
        EraseFrom(addresses_by_subnet_, p.subnet_id, p.ip);
        if (auto n = ports_by_network_.find(p.network_id); n != ports_by_network_.end() && --n->second == 0) {
            ports_by_network_.erase(n);
        }
        macs_.erase(p.mac);
        return Ok();
    });
}

Status NetworkDomain::LoadPort(std::string_view id, std::string_view text) {
    COGS_ASSIGN_OR_RETURN(const wire::Input in, wire::Input::ParseAny(text, "record"));
    Port p;
    for (auto [field, out] : {std::pair{"id", &p.id}, std::pair{"network_id", &p.network_id},
                              std::pair{"subnet_id", &p.subnet_id}}) {
        COGS_ASSIGN_OR_RETURN(*out, in.String(field, kIdText));
    }
    for (auto [field, out] : {std::pair{"device_id", &p.device_id}, std::pair{"name", &p.name},
                              std::pair{"project_id", &p.project_id}}) {
        COGS_ASSIGN_OR_RETURN(*out, in.String(field, kRecordText));
    }
    COGS_ASSIGN_OR_RETURN(const std::string mac_text, in.String("mac_address"));
    const auto mac = ParseMac(mac_text);
    if (!mac) {
        return MakeError(in.Invalid("mac_address", "must be fa:16:3e:xx:xx:xx"));
    }
    p.mac = *mac;
    COGS_ASSIGN_OR_RETURN(p.ip, ReadAddress(in, "fixed_ip"));

    if (p.id != id || ports_.contains(p.id)) {
        return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
    }
    if (macs_.contains(p.mac)) {
        return MakeError(ErrorCode::kInternal, "MAC " + mac_text + " held by two ports");
    }
    if (auto used = addresses_by_subnet_.find(p.subnet_id);
        used != addresses_by_subnet_.end() && used->second.contains(p.ip)) {
        return MakeError(ErrorCode::kInternal, "address " + FormatIpv4(p.ip) + " held by ports " +
                                                   used->second.at(p.ip) + " and " + p.id);
    }
    if (auto s = subnets_.find(p.subnet_id); s != subnets_.end() && !s->second.pool.Take(p.ip)) {
        return MakeError(ErrorCode::kInternal, "address " + FormatIpv4(p.ip) + " outside the pools");
    }
    AddPort(std::move(p));
    return Ok();
}

Result<Subnet*> NetworkDomain::SubnetForFixedIp(const wire::Input& in, const std::string& network_id,
                                                uint32_t ip, Subnet* named) {
    std::vector<Subnet*> candidates;
    if (named != nullptr) {
        candidates.push_back(named);
    } else if (auto by = subnets_by_network_.find(network_id); by != subnets_by_network_.end()) {
        for (const std::string& sid : by->second) {
            candidates.push_back(&subnets_.at(sid));
        }
    }
    std::vector<netaddr::SubnetRef> refs;
    for (const Subnet* s : candidates) {
        refs.push_back({s->id, s->cidr, s->pool.pools()});
    }
    COGS_ASSIGN_OR_RETURN(const size_t i,
                          netaddr::SubnetForFixedIp(in, "fixed_ip", ip, network_id, refs, named != nullptr));
    return candidates[i];
}

Subnet* NetworkDomain::FirstSubnetWithFreeAddress(const std::string& network_id) {
    auto by = subnets_by_network_.find(network_id);
    if (by == subnets_by_network_.end()) {
        return nullptr;
    }
    for (const std::string& sid : by->second) {
        Subnet& s = subnets_.at(sid);
        if (s.pool.free_count() > 0) {
            return &s;
        }
    }
    return nullptr;
}

uint32_t NetworkDomain::FreeMac(std::string_view port_id) const {
    uint32_t mac = HashId(port_id);
    while (macs_.contains(mac)) {
        mac = (mac + 1) & (kMacSpace - 1);
    }
    return mac;
}

}  // namespace cogs::services::network::internal
