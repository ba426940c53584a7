#include "cogs/services/network/network.h"

#include <boost/json.hpp>
#include <map>
#include <set>
#include <unordered_set>

#include "cogs/base/check.h"
#include "cogs/services/network/internal/address_pool.h"
#include "cogs/services/network/internal/fields.h"
#include "cogs/services/network/internal/ipv4.h"

namespace cogs::services::network {
namespace {

namespace json = boost::json;
using internal::AddressPool;
using internal::AddressRange;
using internal::Cidr;
using internal::Fields;
using internal::FormatIpv4;
using internal::ParseIpv4;
using kit::Done;

struct Network {
    std::string id;
    std::string name;
    std::string project_id;
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

// OpenStack's prefix for the MACs it makes: tools that recognise cloud ports recognise these too.
constexpr std::string_view kMacPrefix = "fa:16:3e";
constexpr uint32_t kMacSpace = 1u << 24;

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

// FNV-1a: the MAC of a port starts from a hash of its id, so it does not depend on the order in
// which ports were made (two services replaying the same actions agree).
uint32_t HashId(std::string_view id) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : id) {
        h = (h ^ c) * 1099511628211ull;
    }
    return static_cast<uint32_t>(h ^ (h >> 24) ^ (h >> 48)) & (kMacSpace - 1);
}

Error NotFound(std::string message) { return Error(ErrorCode::kNotFound, std::move(message)); }
Error Precondition(std::string message) { return Error(ErrorCode::kFailedPrecondition, std::move(message)); }
Error AlreadyExists(std::string message) { return Error(ErrorCode::kAlreadyExists, std::move(message)); }

json::object NetworkJson(const Network& n) {
    return {{"id", n.id}, {"name", n.name}, {"project_id", n.project_id}};
}

json::array PoolsJson(const std::vector<AddressRange>& pools) {
    json::array a;
    for (const auto& r : pools) {
        a.push_back(json::object{{"start", FormatIpv4(r.first)}, {"end", FormatIpv4(r.last)}});
    }
    return a;
}

json::object SubnetJson(const Subnet& s) {
    return {{"id", s.id},
            {"network_id", s.network_id},
            {"cidr", s.cidr.ToString()},
            {"gateway_ip", FormatIpv4(s.gateway)},
            {"allocation_pools", PoolsJson(s.pool.pools())},
            {"name", s.name},
            {"project_id", s.project_id}};
}

// The stored record: the subnet plus its next-fit cursor, so that a restarted service goes on
// where it stopped instead of handing out an address released just before the restart.
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

Done Output(const json::object& o) { return Done{json::serialize(o), 0}; }

Done Deleted(const std::string& id, bool deleted) {
    return Output(json::object{{"id", id}, {"deleted", deleted}});
}

// Reads an IPv4 address field.
Result<uint32_t> AddressField(const Fields& f, std::string_view name, const json::value& v) {
    std::optional<uint32_t> ip;
    if (v.is_string()) {
        ip = ParseIpv4(v.get_string());
    }
    if (!ip) {
        return MakeError(f.Invalid(name, "must be an IPv4 address a.b.c.d"));
    }
    return *ip;
}

// The fields of a subnet as create_subnet takes them (and as its record holds them), validated
// and with the defaults filled in; pools sorted.
struct SubnetSpec {
    std::string id;
    std::string network_id;
    Cidr cidr;
    uint32_t gateway = 0;
    std::vector<AddressRange> pools;
    std::string name;
    std::string project_id;

    bool operator==(const SubnetSpec& o) const {
        return id == o.id && network_id == o.network_id && cidr.network == o.cidr.network &&
               cidr.prefix == o.cidr.prefix && gateway == o.gateway && pools == o.pools && name == o.name &&
               project_id == o.project_id;
    }
};

Result<SubnetSpec> ParseSubnetSpec(const Fields& f) {
    SubnetSpec s;
    auto id = f.Id("id");
    if (!id) {
        return MakeError(id.error());
    }
    s.id = std::move(*id);
    auto network_id = f.Id("network_id");
    if (!network_id) {
        return MakeError(network_id.error());
    }
    s.network_id = std::move(*network_id);
    auto cidr_text = f.String("cidr");
    if (!cidr_text) {
        return MakeError(cidr_text.error());
    }
    auto cidr = internal::ParseCidr(*cidr_text);
    if (!cidr.cidr) {
        return MakeError(f.Invalid("cidr", cidr.problem + ", got '" + *cidr_text + "'"));
    }
    s.cidr = *cidr.cidr;
    auto name = f.OptionalString("name");
    auto project = f.OptionalString("project_id");
    if (!name || !project) {
        return MakeError(!name ? name.error() : project.error());
    }
    s.name = name->value_or("");
    s.project_id = project->value_or("");

    s.gateway = s.cidr.first_host();
    const json::value* gw = f.Find("gateway_ip");
    if (gw != nullptr && !(gw->is_string() && gw->get_string().empty())) {
        auto ip = AddressField(f, "gateway_ip", *gw);
        if (!ip) {
            return MakeError(ip.error());
        }
        if (!s.cidr.IsHost(*ip)) {
            return MakeError(
                f.Invalid("gateway_ip", FormatIpv4(*ip) + " is not a host address of " + s.cidr.ToString()));
        }
        s.gateway = *ip;
    }

    const json::value* pools = f.Find("allocation_pools");
    if (pools == nullptr) {
        // Every host address but the gateway.
        if (s.gateway > s.cidr.first_host()) {
            s.pools.push_back({s.cidr.first_host(), s.gateway - 1});
        }
        if (s.gateway < s.cidr.last_host()) {
            s.pools.push_back({s.gateway + 1, s.cidr.last_host()});
        }
        return s;
    }
    if (!pools->is_array() || pools->get_array().empty()) {
        return MakeError(f.Invalid("allocation_pools", "must be a non-empty array of {\"start\", \"end\"}"));
    }
    const json::array& a = pools->get_array();
    for (size_t i = 0; i < a.size(); ++i) {
        const std::string item = "allocation_pools[" + std::to_string(i) + "]";
        if (!a[i].is_object()) {
            return MakeError(f.Invalid(item, "must be an object {\"start\", \"end\"}"));
        }
        if (auto known = internal::CheckKnown(a[i].get_object(), {"start", "end"}, f.Name(item) + ".");
            !known) {
            return MakeError(known.error());
        }
        Fields pf(a[i].get_object(), f.Name(item) + ".");
        AddressRange r;
        for (auto [key, out] : {std::pair{"start", &r.first}, std::pair{"end", &r.last}}) {
            const json::value* v = pf.Find(key);
            if (v == nullptr) {
                return MakeError(ErrorCode::kInvalidArgument, "missing field '" + pf.Name(key) + "'");
            }
            auto ip = AddressField(pf, key, *v);
            if (!ip) {
                return MakeError(ip.error());
            }
            *out = *ip;
        }
        const std::string range = FormatIpv4(r.first) + "-" + FormatIpv4(r.last);
        if (r.first > r.last) {
            return MakeError(f.Invalid(item, "starts after it ends: " + range));
        }
        if (!s.cidr.IsHost(r.first) || !s.cidr.IsHost(r.last)) {
            return MakeError(f.Invalid(item, range + " is not inside the host addresses of " +
                                                 s.cidr.ToString() + " (network and broadcast excluded)"));
        }
        if (r.first <= s.gateway && s.gateway <= r.last) {
            return MakeError(f.Invalid(item, range + " contains the gateway " + FormatIpv4(s.gateway)));
        }
        s.pools.push_back(r);
    }
    std::sort(s.pools.begin(), s.pools.end(),
              [](const AddressRange& x, const AddressRange& y) { return x.first < y.first; });
    for (size_t i = 1; i < s.pools.size(); ++i) {
        if (s.pools[i].first <= s.pools[i - 1].last) {
            return MakeError(
                f.Invalid("allocation_pools", "ranges overlap at " + FormatIpv4(s.pools[i].first)));
        }
    }
    return s;
}

std::string UrlDecode(std::string_view s) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    };
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

http::Response JsonResponse(int status, const json::value& body) {
    http::Response r;
    r.status = status;
    r.body = json::serialize(body);
    return r;
}

// The protocol's error object, {"code","message","retryable"}, with cogs::HttpStatus(code).
http::Response ErrorResponse(const Error& e) {
    return JsonResponse(
        HttpStatus(e.code),
        json::object{{"code", ToString(e.code)}, {"message", e.message}, {"retryable", e.retryable}});
}

class NetworkDomain final : public kit::Domain {
public:
    std::string_view name() const override { return kDomainName; }

    std::vector<std::string> actions() const override {
        return {"create_network", "delete_network", "create_subnet", "delete_subnet",
                "create_port",    "update_port",    "delete_port"};
    }

    Status Load(std::string_view table, std::string_view id, std::string_view json) override {
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

    Result<Done> Perform(std::string_view action, std::string_view input, kit::Tx& tx) override {
        if (action == "create_network") {
            return CreateNetwork(input, tx);
        }
        if (action == "delete_network") {
            return DeleteNetwork(input, tx);
        }
        if (action == "create_subnet") {
            return CreateSubnet(input, tx);
        }
        if (action == "delete_subnet") {
            return DeleteSubnet(input, tx);
        }
        if (action == "create_port") {
            return CreatePort(input, tx);
        }
        if (action == "update_port") {
            return UpdatePort(input, tx);
        }
        if (action == "delete_port") {
            return DeletePort(input, tx);
        }
        return MakeError(ErrorCode::kNotFound, "network: no action '" + std::string(action) + "'");
    }

    std::vector<std::pair<std::string, int64_t>> RecordCounts() const override {
        return {{std::string(kNetworksTable), static_cast<int64_t>(networks_.size())},
                {std::string(kSubnetsTable), static_cast<int64_t>(subnets_.size())},
                {std::string(kPortsTable), static_cast<int64_t>(ports_.size())}};
    }

    std::string Inventory() const override {
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

    std::optional<http::Response> Get(const http::Request& request) const override {
        if (request.method != "GET") {
            return std::nullopt;
        }
        const std::string path = request.Path();
        for (std::string_view kind : {"network", "subnet", "port"}) {
            const std::string prefix = "/v1/" + std::string(kind) + "s/";
            if (!path.starts_with(prefix) || path.size() == prefix.size() ||
                path.find('/', prefix.size()) != std::string::npos) {
                continue;
            }
            const std::string id = UrlDecode(std::string_view(path).substr(prefix.size()));
            std::optional<json::object> found;
            if (kind == "network") {
                if (auto it = networks_.find(id); it != networks_.end()) {
                    found = NetworkJson(it->second);
                }
            } else if (kind == "subnet") {
                if (auto it = subnets_.find(id); it != subnets_.end()) {
                    found = SubnetJson(it->second);
                }
            } else if (auto it = ports_.find(id); it != ports_.end()) {
                found = PortJson(it->second);
            }
            if (!found) {
                return ErrorResponse(NotFound(std::string(kind) + " " + id + " not found"));
            }
            return JsonResponse(200, json::object{{kind, std::move(*found)}});
        }
        return std::nullopt;
    }

private:
    // ---- actions ----

    Result<Done> CreateNetwork(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(input, {"id", "name", "project_id"});
        if (!f) {
            return MakeError(f.error());
        }
        auto id = f->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto name = f->OptionalString("name");
        if (!name) {
            return MakeError(name.error());
        }
        auto project = f->OptionalString("project_id");
        if (!project) {
            return MakeError(project.error());
        }
        Network n{*id, name->value_or(""), project->value_or("")};

        if (auto it = networks_.find(n.id); it != networks_.end()) {
            const Network& old = it->second;
            if (old.name != n.name || old.project_id != n.project_id) {
                return MakeError(AlreadyExists(
                    "network " + n.id + " exists with other content: " + json::serialize(NetworkJson(old))));
            }
            return Output(NetworkJson(old));
        }
        tx.Put(kNetworksTable, n.id, json::serialize(NetworkJson(n)));
        auto [it, inserted] = networks_.emplace(n.id, std::move(n));
        return Output(NetworkJson(it->second));
    }

    Result<Done> DeleteNetwork(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(input, {"id"});
        if (!f) {
            return MakeError(f.error());
        }
        auto id = f->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto it = networks_.find(*id);
        if (it == networks_.end()) {
            return Deleted(*id, false);
        }
        const size_t subnets = CountOf(subnets_by_network_, *id);
        const size_t ports = CountOf(ports_by_network_, *id);
        if (subnets > 0 || ports > 0) {
            return MakeError(Precondition("network " + *id + " still has " + std::to_string(subnets) +
                                          " subnet(s) and " + std::to_string(ports) + " port(s)"));
        }
        networks_.erase(it);
        tx.Erase(kNetworksTable, *id);
        return Deleted(*id, true);
    }

    Result<Done> CreateSubnet(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(
            input, {"id", "network_id", "cidr", "gateway_ip", "allocation_pools", "name", "project_id"});
        if (!f) {
            return MakeError(f.error());
        }
        auto spec = ParseSubnetSpec(*f);
        if (!spec) {
            return MakeError(spec.error());
        }

        if (auto it = subnets_.find(spec->id); it != subnets_.end()) {
            if (SpecOf(it->second) != *spec) {
                return MakeError(AlreadyExists("subnet " + spec->id + " exists with other content: " +
                                               json::serialize(SubnetJson(it->second))));
            }
            return Output(SubnetJson(it->second));
        }
        if (!networks_.contains(spec->network_id)) {
            return MakeError(NotFound("network " + spec->network_id + " not found"));
        }
        if (auto by = subnets_by_network_.find(spec->network_id); by != subnets_by_network_.end()) {
            for (const std::string& other_id : by->second) {
                const Subnet& other = subnets_.at(other_id);
                if (other.cidr.Overlaps(spec->cidr)) {
                    return MakeError(ErrorCode::kConflict,
                                     "cidr " + spec->cidr.ToString() + " overlaps subnet " + other.id + " (" +
                                         other.cidr.ToString() + ") of network " + spec->network_id);
                }
            }
        }
        Subnet& s = AddSubnet(std::move(*spec));
        tx.Put(kSubnetsTable, s.id, SubnetRecord(s));
        return Output(SubnetJson(s));
    }

    Result<Done> DeleteSubnet(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(input, {"id"});
        if (!f) {
            return MakeError(f.error());
        }
        auto id = f->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto it = subnets_.find(*id);
        if (it == subnets_.end()) {
            return Deleted(*id, false);
        }
        if (const size_t ports = CountOf(addresses_by_subnet_, *id); ports > 0) {
            return MakeError(
                Precondition("subnet " + *id + " is still used by " + std::to_string(ports) + " port(s)"));
        }
        EraseFrom(subnets_by_network_, it->second.network_id, *id);
        subnets_.erase(it);
        addresses_by_subnet_.erase(*id);
        tx.Erase(kSubnetsTable, *id);
        return Deleted(*id, true);
    }

    Result<Done> CreatePort(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(
            input, {"id", "network_id", "subnet_id", "fixed_ip", "device_id", "project_id", "name"});
        if (!f) {
            return MakeError(f.error());
        }
        auto id = f->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto network_id = f->Id("network_id");
        if (!network_id) {
            return MakeError(network_id.error());
        }
        auto subnet_id = f->OptionalString("subnet_id", /*empty_is_absent=*/true);
        if (!subnet_id) {
            return MakeError(subnet_id.error());
        }
        std::optional<uint32_t> fixed_ip;
        if (const json::value* v = f->Find("fixed_ip"); v && !(v->is_string() && v->get_string().empty())) {
            auto ip = AddressField(*f, "fixed_ip", *v);
            if (!ip) {
                return MakeError(ip.error());
            }
            fixed_ip = *ip;
        }
        auto device_id = f->OptionalString("device_id");
        if (!device_id) {
            return MakeError(device_id.error());
        }
        auto name = f->OptionalString("name");
        if (!name) {
            return MakeError(name.error());
        }
        auto project = f->OptionalString("project_id");
        if (!project) {
            return MakeError(project.error());
        }

        if (auto it = ports_.find(*id); it != ports_.end()) {
            // A re-sent create: the same port, unless the request contradicts it. Name, device and
            // project are not compared: update_port may have changed the device since.
            const Port& old = it->second;
            if (old.network_id != *network_id || (*subnet_id && old.subnet_id != **subnet_id) ||
                (fixed_ip && old.ip != *fixed_ip)) {
                return MakeError(AlreadyExists(
                    "port " + *id + " exists with other content: " + json::serialize(PortJson(old))));
            }
            return Output(PortJson(old));
        }
        if (!networks_.contains(*network_id)) {
            return MakeError(NotFound("network " + *network_id + " not found"));
        }
        Subnet* subnet = nullptr;
        if (*subnet_id) {
            auto it = subnets_.find(**subnet_id);
            if (it == subnets_.end()) {
                return MakeError(NotFound("subnet " + **subnet_id + " not found"));
            }
            if (it->second.network_id != *network_id) {
                return MakeError(f->Invalid("subnet_id", "subnet " + **subnet_id + " is on network " +
                                                             it->second.network_id + ", not " + *network_id));
            }
            subnet = &it->second;
        }
        if (macs_.size() >= kMacSpace) {
            return MakeError(Precondition("no free MAC address"));
        }

        // Choose the address; nothing changes until every check has passed.
        bool moved_cursor = false;
        uint32_t ip = 0;
        if (fixed_ip) {
            const std::string text = FormatIpv4(*fixed_ip);
            if (subnet == nullptr) {
                subnet = SubnetHolding(*network_id, *fixed_ip);
                if (subnet == nullptr) {
                    return MakeError(
                        f->Invalid("fixed_ip", text + " is in no subnet of network " + *network_id));
                }
            } else if (!subnet->cidr.Contains(*fixed_ip)) {
                return MakeError(f->Invalid("fixed_ip", text + " is not in subnet " + subnet->id + " (" +
                                                            subnet->cidr.ToString() + ")"));
            }
            if (!subnet->pool.InPools(*fixed_ip)) {
                return MakeError(f->Invalid(
                    "fixed_ip", text + " is outside the allocation pools of subnet " + subnet->id));
            }
            if (!subnet->pool.Take(*fixed_ip)) {
                return MakeError(Precondition("address " + text + " in use"));
            }
            ip = *fixed_ip;
        } else {
            if (subnet == nullptr) {
                subnet = FirstSubnetWithFreeAddress(*network_id);
                if (subnet == nullptr) {
                    return MakeError(Precondition("no free address in network " + *network_id));
                }
            }
            auto next = subnet->pool.TakeNext();
            if (!next) {
                return MakeError(
                    Precondition("no free address in subnet " + subnet->id + " of network " + *network_id));
            }
            ip = *next;
            moved_cursor = true;
        }

        Port p;
        p.id = *id;
        p.network_id = *network_id;
        p.subnet_id = subnet->id;
        p.mac = FreeMac(p.id);
        p.ip = ip;
        p.device_id = device_id->value_or("");
        p.name = name->value_or("");
        p.project_id = project->value_or("");
        const Port& added = AddPort(std::move(p));
        tx.Put(kPortsTable, added.id, json::serialize(PortJson(added)));
        if (moved_cursor) {
            tx.Put(kSubnetsTable, subnet->id, SubnetRecord(*subnet));
        }
        return Output(PortJson(added));
    }

    Result<Done> UpdatePort(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(input, {"id", "device_id"});
        if (!f) {
            return MakeError(f.error());
        }
        auto id = f->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto device_id = f->String("device_id");
        if (!device_id) {
            return MakeError(device_id.error());
        }
        auto it = ports_.find(*id);
        if (it == ports_.end()) {
            return MakeError(NotFound("port " + *id + " not found"));
        }
        Port& p = it->second;
        if (p.device_id != *device_id) {
            p.device_id = std::move(*device_id);
            tx.Put(kPortsTable, p.id, json::serialize(PortJson(p)));
        }
        return Output(PortJson(p));
    }

    Result<Done> DeletePort(std::string_view input, kit::Tx& tx) {
        auto f = Fields::Parse(input, {"id"});
        if (!f) {
            return MakeError(f.error());
        }
        auto id = f->Id("id");
        if (!id) {
            return MakeError(id.error());
        }
        auto it = ports_.find(*id);
        if (it == ports_.end()) {
            return Deleted(*id, false);
        }
        const Port& p = it->second;
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
        ports_.erase(it);
        tx.Erase(kPortsTable, *id);
        return Deleted(*id, true);
    }

    // ---- loading ----

    Status LoadNetwork(std::string_view id, std::string_view text) {
        auto f = Fields::Parse(text, {});
        if (!f) {
            return MakeError(f.error());
        }
        auto rid = f->Id("id");
        auto name = f->String("name");
        auto project = f->String("project_id");
        if (!rid || !name || !project) {
            return MakeError(!rid ? rid.error() : !name ? name.error() : project.error());
        }
        if (*rid != id || networks_.contains(*rid)) {
            return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
        }
        networks_.emplace(*rid, Network{*rid, *name, *project});
        return Ok();
    }

    Status LoadSubnet(std::string_view id, std::string_view text) {
        auto f = Fields::Parse(text, {});
        if (!f) {
            return MakeError(f.error());
        }
        auto spec = ParseSubnetSpec(*f);
        if (!spec) {
            return MakeError(spec.error());
        }
        if (spec->id != id || subnets_.contains(spec->id)) {
            return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
        }
        std::optional<uint32_t> cursor;
        if (const json::value* v = f->Find("next_ip")) {
            auto ip = AddressField(*f, "next_ip", *v);
            if (!ip) {
                return MakeError(ip.error());
            }
            cursor = *ip;
        }
        Subnet& s = AddSubnet(std::move(*spec));
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

    Status LoadPort(std::string_view id, std::string_view text) {
        auto f = Fields::Parse(text, {});
        if (!f) {
            return MakeError(f.error());
        }
        Port p;
        for (auto [key, out] : {std::pair{"id", &p.id}, std::pair{"network_id", &p.network_id},
                                std::pair{"subnet_id", &p.subnet_id}}) {
            auto v = f->Id(key);
            if (!v) {
                return MakeError(v.error());
            }
            *out = std::move(*v);
        }
        for (auto [key, out] : {std::pair{"device_id", &p.device_id}, std::pair{"name", &p.name},
                                std::pair{"project_id", &p.project_id}}) {
            auto v = f->String(key);
            if (!v) {
                return MakeError(v.error());
            }
            *out = std::move(*v);
        }
        auto mac_text = f->String("mac_address");
        if (!mac_text) {
            return MakeError(mac_text.error());
        }
        auto mac = ParseMac(*mac_text);
        if (!mac) {
            return MakeError(f->Invalid("mac_address", "must be fa:16:3e:xx:xx:xx"));
        }
        p.mac = *mac;
        const json::value* ipv = f->Find("fixed_ip");
        if (ipv == nullptr) {
            return MakeError(ErrorCode::kInvalidArgument, "missing field 'fixed_ip'");
        }
        auto ip = AddressField(*f, "fixed_ip", *ipv);
        if (!ip) {
            return MakeError(ip.error());
        }
        p.ip = *ip;

        if (p.id != id || ports_.contains(p.id)) {
            return MakeError(ErrorCode::kInternal, "id mismatch or duplicate");
        }
        if (macs_.contains(p.mac)) {
            return MakeError(ErrorCode::kInternal, "MAC " + *mac_text + " held by two ports");
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

    // ---- state ----

    template <typename Map>
    static size_t CountOf(const Map& m, const std::string& key) {
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

    template <typename Map, typename K>
    static void EraseFrom(Map& m, const std::string& key, const K& inner) {
        if (auto it = m.find(key); it != m.end()) {
            it->second.erase(inner);
            if (it->second.empty()) {
                m.erase(it);
            }
        }
    }

    static SubnetSpec SpecOf(const Subnet& s) {
        return SubnetSpec{s.id, s.network_id, s.cidr, s.gateway, s.pool.pools(), s.name, s.project_id};
    }

    Subnet& AddSubnet(SubnetSpec spec) {
        Subnet s{spec.id,
                 spec.network_id,
                 spec.cidr,
                 spec.gateway,
                 spec.name,
                 spec.project_id,
                 AddressPool(std::move(spec.pools))};
        subnets_by_network_[s.network_id].insert(s.id);
        auto [it, inserted] = subnets_.emplace(s.id, std::move(s));
        return it->second;
    }

    const Port& AddPort(Port p) {
        addresses_by_subnet_[p.subnet_id].emplace(p.ip, p.id);
        ++ports_by_network_[p.network_id];
        macs_.insert(p.mac);
        auto [it, inserted] = ports_.emplace(p.id, std::move(p));
        return it->second;
    }

    // The subnet of `network_id` whose block holds `ip` (the blocks of one network never overlap).
    Subnet* SubnetHolding(const std::string& network_id, uint32_t ip) {
        auto by = subnets_by_network_.find(network_id);
        if (by == subnets_by_network_.end()) {
            return nullptr;
        }
        for (const std::string& sid : by->second) {
            Subnet& s = subnets_.at(sid);
            if (s.cidr.Contains(ip)) {
                return &s;
            }
        }
        return nullptr;
    }

    // In subnet id order: the order survives a reload, unlike the order of creation.
    Subnet* FirstSubnetWithFreeAddress(const std::string& network_id) {
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

    // A MAC suffix no port holds: the hash of the id, then the next free one (linear probing). The
    // caller checked that one is free.
    uint32_t FreeMac(std::string_view port_id) const {
        uint32_t mac = HashId(port_id);
        while (macs_.contains(mac)) {
            mac = (mac + 1) & (kMacSpace - 1);
        }
        return mac;
    }

    std::map<std::string, Network> networks_;
    std::map<std::string, Subnet> subnets_;
    std::map<std::string, Port> ports_;
    // Indexes, kept independent of which record arrived first at Load.
    std::map<std::string, std::set<std::string>> subnets_by_network_;
    std::map<std::string, size_t> ports_by_network_;
    std::map<std::string, std::map<uint32_t, std::string>> addresses_by_subnet_;  // ip -> port id
    std::unordered_set<uint32_t> macs_;
};

}  // namespace

std::unique_ptr<kit::Domain> MakeNetworkDomain() { return std::make_unique<NetworkDomain>(); }

}  // namespace cogs::services::network
