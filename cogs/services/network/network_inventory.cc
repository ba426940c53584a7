// What the domain shows: the inventory and the read routes.
#include <algorithm>
#include <boost/json/serialize.hpp>

#include "cogs/services/kit/dispatch.h"
#include "cogs/services/network/internal/network_domain.h"

namespace cogs::services::network::internal {
namespace {

namespace json = wire::json;

// The record `id` of `records`, shown as `shape` shows it.
template <typename Map, typename Shape>
std::optional<json::object> Find(const Map& records, const std::string& id, Shape shape) {
    auto it = records.find(id);
    return it == records.end() ? std::nullopt : std::optional<json::object>(shape(it->second));
}

}  // namespace

std::string NetworkDomain::Inventory() const {
    json::array networks;
    for (const auto& [id, n] : networks_) {
        networks.push_back(NetworkJson(n));
    }
    json::array subnets;
    for (const auto& [id, s] : subnets_) {
        subnets.push_back(SubnetJson(s));
    }
    json::array ports;
    for (const auto& [id, p] : ports_) {
        ports.push_back(PortJson(p));
    }
    // By address, then subnet (two networks may use the same addresses).
    std::vector<std::pair<uint32_t, const Port*>> held;
    held.reserve(ports_.size());
    for (const auto& [id, p] : ports_) {
        held.emplace_back(p.ip, &p);
    }
    std::sort(held.begin(), held.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first < b.first : a.second->subnet_id < b.second->subnet_id;
    });
    json::array addresses;
    addresses.reserve(held.size());
    for (const auto& [ip, p] : held) {
        addresses.push_back(
            json::object{{"ip", FormatIpv4(ip)}, {"subnet_id", p->subnet_id}, {"port_id", p->id}});
    }
    return json::serialize(json::object{{"networks", std::move(networks)},
                                        {"subnets", std::move(subnets)},
                                        {"ports", std::move(ports)},
                                        {"addresses", std::move(addresses)}});
}

std::optional<http::Response> NetworkDomain::Get(const http::Request& request) const {
    if (auto r = kit::GetRecord(request, "/v1/networks/", "network",
                                [this](const std::string& id) { return Find(networks_, id, NetworkJson); })) {
        return r;
    }
    if (auto r = kit::GetRecord(request, "/v1/subnets/", "subnet",
                                [this](const std::string& id) { return Find(subnets_, id, SubnetJson); })) {
        return r;
    }
    return kit::GetRecord(request, "/v1/ports/", "port", [this](const std::string& id) {
        return Find(ports_, id, [this](const Port& p) { return PortOutput(p); });
    });
}

}  // namespace cogs::services::network::internal
