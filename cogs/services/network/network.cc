#include "cogs/services/network/network.h"

#include <boost/json/serialize.hpp>
#include <functional>

#include "cogs/services/network/internal/network_domain.h"

namespace cogs::services::network {

namespace internal {

namespace json = wire::json;

// OpenStack's prefix for the MACs it makes: tools that recognise cloud ports recognise these too.
constexpr std::string_view kMacPrefix = "fa:16:3e";

std::string FormatMac(uint32_t suffix) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s(kMacPrefix);
    for (int shift = 16; shift >= 0; shift -= 8) {
        const uint32_t byte = (suffix >> shift) & 0xff;
        s += ':';
        s += kHex[byte >> 4];
        s += kHex[byte & 0xf];
    }
    return s;
}

std::optional<uint32_t> ParseMac(std::string_view s) {
    if (s.size() != 17 || !s.starts_with(kMacPrefix)) {
        return std::nullopt;
    }
    uint32_t suffix = 0;
    for (size_t i = kMacPrefix.size(); i < s.size(); i += 3) {
        if (s[i] != ':') {
            return std::nullopt;
        }
        for (size_t j = i + 1; j < i + 3; ++j) {
            const char c = s[j];
            uint32_t nibble = 0;
            if (c >= '0' && c <= '9') {
                nibble = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                nibble = c - 'a' + 10;
            } else {
                return std::nullopt;
            }
            suffix = (suffix << 4) | nibble;
        }
    }
    return suffix;
}

json::object NetworkJson(const Network& n) {
    return {{"id", n.id}, {"name", n.name}, {"project_id", n.project_id}};
}

json::object SubnetJson(const Subnet& s) {
    return {{"id", s.id},
            {"network_id", s.network_id},
            {"cidr", s.cidr.ToString()},
            {"gateway_ip", FormatIpv4(s.gateway)},
            {"allocation_pools", netaddr::PoolsJson(s.pool.pools())},
            {"name", s.name},
            {"project_id", s.project_id}};
}

// The cursor is stored so that a restarted service goes on where it stopped instead of handing out
// an address released just before the restart.
std::string SubnetRecord(const Subnet& s) {
    json::object o = SubnetJson(s);
    o["next_ip"] = FormatIpv4(s.pool.cursor());
    return json::serialize(o);
}

json::object PortJson(const Port& p) {
    return {{"id", p.id},
            {"network_id", p.network_id},
            {"subnet_id", p.subnet_id},
            {"mac_address", FormatMac(p.mac)},
            {"fixed_ip", FormatIpv4(p.ip)},
            {"device_id", p.device_id},
            {"name", p.name},
            {"project_id", p.project_id}};
}

kit::Done Output(const json::object& o) { return kit::Done{json::serialize(o), 0}; }

kit::Done Deleted(const std::string& id, bool deleted) {
    return Output(json::object{{"id", id}, {"deleted", deleted}});
}

std::string_view NetworkDomain::name() const { return kDomainName; }

std::vector<kit::Action> NetworkDomain::actions() {
    return {
        {"create_network",
         {"id", "name", "project_id"},
         std::bind_front(&NetworkDomain::CreateNetwork, this)},
        {"delete_network", {"id"}, std::bind_front(&NetworkDomain::DeleteNetwork, this)},
        {"create_subnet",
         {"id", "network_id", "cidr", "gateway_ip", "allocation_pools", "name", "project_id"},
         std::bind_front(&NetworkDomain::CreateSubnet, this)},
        {"delete_subnet", {"id"}, std::bind_front(&NetworkDomain::DeleteSubnet, this)},
        {"create_port",
         {"id", "network_id", "subnet_id", "fixed_ip", "device_id", "name", "project_id", "existing"},
         std::bind_front(&NetworkDomain::CreatePort, this)},
        {"update_port", {"id", "device_id"}, std::bind_front(&NetworkDomain::UpdatePort, this)},
        {"delete_port", {"id", "device_id", "keep"}, std::bind_front(&NetworkDomain::DeletePort, this)},
    };
}

Status NetworkDomain::Load(std::string_view table, std::string_view id, std::string_view json) {
    Status s = table == kNetworksTable  ? LoadNetwork(id, json)
               : table == kSubnetsTable ? LoadSubnet(id, json)
               : table == kPortsTable   ? LoadPort(id, json)
                                        : Status(MakeError(ErrorCode::kInternal, "unknown table"));
    if (!s) {
        return MakeError(ErrorCode::kInternal, "network: record " + std::string(table) + "/" +
                                                   std::string(id) + ": " + s.error().message);
    }
    return Ok();
}

std::vector<std::pair<std::string, int64_t>> NetworkDomain::RecordCounts() const {
    return {{std::string(kNetworksTable), static_cast<int64_t>(networks_.size())},
            {std::string(kSubnetsTable), static_cast<int64_t>(subnets_.size())},
            {std::string(kPortsTable), static_cast<int64_t>(ports_.size())}};
}

Subnet& NetworkDomain::AddSubnet(SubnetSpec spec) {
    Subnet s{spec.id,
             spec.network_id,
             spec.layout.cidr,
             spec.layout.gateway,
             spec.name,
             spec.project_id,
             AddressPool(std::move(spec.layout.pools))};
    subnets_by_network_[s.network_id].insert(s.id);
    auto [it, inserted] = subnets_.emplace(s.id, std::move(s));
    return it->second;
}

const Port& NetworkDomain::AddPort(Port p) {
    addresses_by_subnet_[p.subnet_id].emplace(p.ip, p.id);
    ++ports_by_network_[p.network_id];
    macs_.insert(p.mac);
    auto [it, inserted] = ports_.emplace(p.id, std::move(p));
    return it->second;
}

}  // namespace internal

std::unique_ptr<kit::Domain> MakeNetworkDomain() { return std::make_unique<internal::NetworkDomain>(); }

}  // namespace cogs::services::network
