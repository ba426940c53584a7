// NetworkDomain: the kit::Domain behind MakeNetworkDomain (network.h has the contract). Declared
// once here, its methods spread over files by concern:
//
//   network.cc            the action table, Load, the records' JSON shapes, the state's indexes
//   network_subnets.cc    networks and subnets: create/delete, the subnet spec, loading them
//   network_ports.cc      ports: create/update/delete, address and MAC choice, loading them
//   network_inventory.cc  what it shows: the inventory and the read routes
//   network_linux.cc      the linux driver's hooks: bridges at create/delete, the periodic sweep
//
// Threading: like every Domain, on its service's io thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "cogs/netaddr/ipv4.h"
#include "cogs/netaddr/subnet.h"
#include "cogs/services/kit/domain.h"
#include "cogs/services/network/internal/address_pool.h"
#include "cogs/services/network/internal/bridges.h"
#include "cogs/wire/input.h"

namespace cogs::services::network::internal {

using netaddr::Cidr;
using netaddr::FormatIpv4;
using netaddr::ParseIpv4;
using netaddr::ReadAddress;
using netaddr::ReadOptionalAddress;

struct Network {
    std::string id;
    std::string name;
    std::string project_id;
};

// The fields of a subnet as create_subnet takes them (and as its record holds them), validated and
// with the defaults filled in (the layout's rules are netaddr's, shared with cogsd).
struct SubnetSpec {
    std::string id;
    std::string network_id;
    netaddr::SubnetLayout layout;
    std::string name;
    std::string project_id;

    bool operator==(const SubnetSpec&) const = default;
};

struct Subnet {
    std::string id;
    std::string network_id;
    Cidr cidr;
    uint32_t gateway = 0;
    std::string name;
    std::string project_id;
    AddressPool pool;  // its pools, which addresses are free, the next-fit cursor
};

struct Port {
    std::string id;
    std::string network_id;
    std::string subnet_id;
    uint32_t mac = 0;  // the low 24 bits after fa:16:3e
    uint32_t ip = 0;
    std::string device_id;
    std::string name;
    std::string project_id;
};

// Network ids: any non-empty string of at most 255 bytes (they appear in URLs and SQLite keys).
inline constexpr wire::Text kIdText{.max_len = 255};
// The free text of a stored record: it may predate the refusal of control characters.
inline constexpr wire::Text kRecordText{.allow_empty = true, .allow_controls = true};

// The records' JSON shapes: an action's output, the inventory's entries and the stored records.
wire::json::object NetworkJson(const Network& n);
wire::json::object SubnetJson(const Subnet& s);
wire::json::object PortJson(const Port& p);
// The stored subnet: SubnetJson plus its next-fit cursor "next_ip".
std::string SubnetRecord(const Subnet& s);
kit::Done Output(const wire::json::object& o);
kit::Done Deleted(const std::string& id, bool deleted);
// "fa:16:3e:xx:xx:xx" for a suffix, and back.
std::string FormatMac(uint32_t suffix);
std::optional<uint32_t> ParseMac(std::string_view s);

// The index entries of `key` in `m`: a count (a map to an integer) or a set's size; 0 if absent.
template <typename Map>
size_t CountOf(const Map& m, const std::string& key) {
    auto it = m.find(key);
    if (it == m.end()) {
        return 0;
    }
    if constexpr (std::is_integral_v<typename Map::mapped_type>) {
        return it->second;
    } else {
        return it->second.size();
    }
}

// Erases `inner` from the set or map at `key`, and the key once nothing is left under it.
template <typename Map, typename K>
void EraseFrom(Map& m, const std::string& key, const K& inner) {
    if (auto it = m.find(key); it != m.end()) {
        it->second.erase(inner);
        if (it->second.empty()) {
            m.erase(it);
        }
    }
}

// Every delete action: reads "id"; an id `records` does not hold is answered {"id", "deleted": false}
// (deleting twice is fine); else `remove(record)` refuses with an error, or drops the record's index
// entries and the record goes, from `records` and from the stored `table`: {"id", "deleted": true}.
template <typename Map, typename Remove>
Result<kit::Done> DeleteById(const wire::Input& in, kit::Tx& tx, Map& records, std::string_view table,
                             Remove remove) {
    COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id", kIdText));
    auto it = records.find(id);
    if (it == records.end()) {
        return Deleted(id, false);
    }
    COGS_TRY(remove(it->second));
    records.erase(it);
    tx.Erase(table, id);
    return Deleted(id, true);
}

class NetworkDomain final : public kit::Domain {
public:
    // `bridges`: the linux driver (null: records only); `sweep_interval`: how often it sweeps.
    explicit NetworkDomain(std::unique_ptr<Bridges> bridges = nullptr, Duration sweep_interval = {});
    ~NetworkDomain() override;

    std::string_view name() const override;
    std::vector<kit::Action> actions() override;
    Status Load(std::string_view table, std::string_view id, std::string_view json) override;
    std::vector<std::pair<std::string, int64_t>> RecordCounts() const override;
    std::string Inventory() const override;
    std::optional<http::Response> Get(const http::Request& request) const override;
    void Bind(kit::DomainContext& context) override;

private:
    // ---- network_linux.cc: the linux driver's hooks (no-ops without it) ----
    // create_network's answer: at once, or once the bridge is there (a long action).
    kit::Done Ensured(const Network& n);
    // What the sweep compares the machine with: every network id and port id held now.
    std::pair<std::set<std::string>, std::set<std::string>> Owners() const;

    // ---- network_subnets.cc ----
    Result<kit::Done> CreateNetwork(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> DeleteNetwork(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> CreateSubnet(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> DeleteSubnet(const wire::Input& in, kit::Tx& tx);
    Status LoadNetwork(std::string_view id, std::string_view text);
    Status LoadSubnet(std::string_view id, std::string_view text);

    // ---- network_ports.cc ----
    Result<kit::Done> CreatePort(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> UpdatePort(const wire::Input& in, kit::Tx& tx);
    // create_port with existing: true, delete_port with keep: true (README.md).
    Result<kit::Done> BindPort(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> UnbindPort(const wire::Input& in, kit::Tx& tx);
    Result<kit::Done> DeletePort(const wire::Input& in, kit::Tx& tx);
    Status LoadPort(std::string_view id, std::string_view text);
    // The port as actions and GET /v1/ports/{id} answer it: PortJson plus its subnet's "cidr" and
    // "gateway_ip", what a host needs to plug it (the record and the inventory hold neither: they
    // are the subnet's).
    wire::json::object PortOutput(const Port& p) const;
    // The subnet a requested address goes to (netaddr::SubnetForFixedIp over the network's subnets,
    // or just `named`); refused naming `in`'s "fixed_ip".
    Result<Subnet*> SubnetForFixedIp(const wire::Input& in, const std::string& network_id, uint32_t ip,
                                     Subnet* named);
    // In subnet id order: the order survives a reload, unlike the order of creation.
    Subnet* FirstSubnetWithFreeAddress(const std::string& network_id);
    // A MAC suffix no port holds: the hash of the id, then the next free one (linear probing). The
    // caller checked that one is free.
    uint32_t FreeMac(std::string_view port_id) const;

    // ---- network.cc: the state and its indexes ----
    Subnet& AddSubnet(SubnetSpec spec);
    const Port& AddPort(Port p);

    std::map<std::string, Network> networks_;
    std::map<std::string, Subnet> subnets_;
    std::map<std::string, Port> ports_;
    // Indexes, kept independent of which record arrived first at Load.
    std::map<std::string, std::set<std::string>> subnets_by_network_;
    std::map<std::string, size_t> ports_by_network_;
    std::map<std::string, std::map<uint32_t, std::string>> addresses_by_subnet_;  // ip -> port id
    std::unordered_set<uint32_t> macs_;

    // The linux driver (network_linux.cc).
    std::unique_ptr<Bridges> bridges_;
    Duration sweep_interval_{};
    kit::DomainContext* context_ = nullptr;
};

}  // namespace cogs::services::network::internal
