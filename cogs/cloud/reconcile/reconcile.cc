#include "cogs/cloud/reconcile/reconcile.h"

#include <algorithm>
#include <tuple>

#include <boost/json/parse.hpp>
#include <set>

#include "cogs/wire/input.h"

namespace cogs::cloud::reconcile {

namespace json = boost::json;

std::string_view ToString(ActionKind kind) {
    switch (kind) {
        case ActionKind::kDeleteInstance: return "delete_instance";
        case ActionKind::kStartInstance: return "start_instance";
        case ActionKind::kRepairServer: return "repair_server";
        case ActionKind::kDeletePort: return "delete_port";
        case ActionKind::kRepairPort: return "repair_port";
        case ActionKind::kSetPortDevice: return "set_port_device";
        case ActionKind::kDeleteVolume: return "delete_volume";
        case ActionKind::kDetachVolume: return "detach_volume";
        case ActionKind::kDeleteNetwork: return "delete_network";
        case ActionKind::kRepairNetwork: return "repair_network";
        case ActionKind::kDeleteSubnet: return "delete_subnet";
        case ActionKind::kRepairSubnet: return "repair_subnet";
        case ActionKind::kAttachVolume: return "attach_volume";
        case ActionKind::kRepairVolume: return "repair_volume";
    }
    return "unknown";
}

// ---- parsers ----

namespace {

using wire::Input;

// Reads one inventory text with wire::Input (which names each field by its path,
// "instances[2].host"); every error is prefixed with the service: "compute inventory: ...".
class InventoryReader {
public:
    explicit InventoryReader(std::string_view service) : prefix_(std::string(service) + " inventory: ") {}

    Error Bad(std::string_view what) const {
        return Error(ErrorCode::kInvalidArgument, prefix_ + std::string(what));
    }
    Error Bad(const Error& e) const { return Bad(e.message); }

    Result<Input> Root(std::string_view text) const {
        boost::system::error_code ec;
        json::value v = json::parse(text, ec);
        if (ec) return MakeError(Bad("not JSON: " + ec.message()));
        if (!v.is_object()) return MakeError(Bad("must be a JSON object"));
        return Input(std::move(v.get_object()));
    }

    // The objects of array `field`; absent (or null) is an error unless `optional`.
    Result<std::vector<Input>> Objects(const Input& in, std::string_view field, bool optional = false) const {
        const json::value* v = in.Find(field);
        if (v == nullptr && !optional) return MakeError(Bad(std::string(field) + ": required"));
        if (v != nullptr && !v->is_array()) return MakeError(Bad(std::string(field) + ": must be an array"));
        auto items = in.Objects(field, {}, SIZE_MAX);
        if (!items) return MakeError(Bad(items.error()));
        return std::move(*items);
    }

    // A required string, or one where "" stands for absent or null; errors name the field's path.
    Result<std::string> Required(const Input& item, std::string_view field) const {
        auto s = item.String(field);
        if (!s) return MakeError(Bad(s.error()));
        return s;
    }
    Result<std::string> Optional(const Input& item, std::string_view field) const {
        auto s = item.OptionalString(field, wire::Text{.max_len = SIZE_MAX, .allow_empty = true});
        if (!s) return MakeError(Bad(s.error()));
        return s->value_or("");
    }

private:
    std::string prefix_;
};

}  // namespace

namespace {

// Reads each object of array `field` with `read` (a Result<T>); the key `key` of each (its id, or a
// host's name) must not be listed twice: "hosts[1].name: host 'h1' listed twice".
template <typename T, typename Read>
Result<std::vector<T>> ReadEach(const InventoryReader& r, const Input& root, std::string_view field,
                                std::string_view key, std::string_view what, Read read) {
    COGS_ASSIGN_OR_RETURN(auto items, r.Objects(root, field));
    std::vector<T> out;
    std::set<std::string> seen;
    for (const Input& item : items) {
        COGS_ASSIGN_OR_RETURN(std::string k, r.Required(item, key));
        if (!seen.insert(k).second) {
            return MakeError(r.Bad(item.Name(key) + ": " + std::string(what) + " '" + k + "' listed twice"));
        }
        COGS_ASSIGN_OR_RETURN(T value, read(item, std::move(k)));
        out.push_back(std::move(value));
    }
    return out;
}

}  // namespace

Result<ComputeInventory> ParseComputeInventory(std::string_view text, int64_t read_at_ms) {
    const InventoryReader r("compute");
    COGS_ASSIGN_OR_RETURN(auto root, r.Root(text));
    ComputeInventory inv;
    inv.read_at_ms = read_at_ms;
    COGS_ASSIGN_OR_RETURN(
        inv.hosts,
        ReadEach<std::string>(r, root, "hosts", "name", "host",
                              [](const Input&, std::string name) -> Result<std::string> { return name; }));
    COGS_ASSIGN_OR_RETURN(
        inv.instances,
        ReadEach<ActualInstance>(
            r, root, "instances", "id", "instance",
            [&r](const Input& o, std::string id) -> Result<ActualInstance> {
                COGS_ASSIGN_OR_RETURN(auto host, r.Required(o, "host"));
                COGS_ASSIGN_OR_RETURN(auto state, r.Required(o, "state"));
                COGS_ASSIGN_OR_RETURN(auto port, r.Optional(o, "port_id"));
                return ActualInstance{std::move(id), std::move(host), std::move(state), std::move(port)};
            }));
    return inv;
}

Result<NetworkInventory> ParseNetworkInventory(std::string_view text, int64_t read_at_ms) {
    const InventoryReader r("network");
    COGS_ASSIGN_OR_RETURN(auto root, r.Root(text));
    NetworkInventory inv;
    inv.read_at_ms = read_at_ms;
    COGS_ASSIGN_OR_RETURN(
        inv.ports, ReadEach<ActualPort>(r, root, "ports", "id", "port",
                                        [&r](const Input& o, std::string id) -> Result<ActualPort> {
                                            COGS_ASSIGN_OR_RETURN(auto net, r.Required(o, "network_id"));
                                            COGS_ASSIGN_OR_RETURN(auto dev, r.Optional(o, "device_id"));
                                            COGS_ASSIGN_OR_RETURN(auto ip, r.Optional(o, "fixed_ip"));
                                            COGS_ASSIGN_OR_RETURN(auto subnet, r.Optional(o, "subnet_id"));
                                            return ActualPort{std::move(id), std::move(net), std::move(dev),
                                                              std::move(ip), std::move(subnet)};
                                        }));
    // Every address is a port's (the service derives the list from its ports): one that names no
    // port means the inventory is not what the service's README says, and none of it is trusted.
    std::set<std::string> ports;
    for (const auto& p : inv.ports) {
        ports.insert(p.id);
    }
    COGS_ASSIGN_OR_RETURN(auto addresses, r.Objects(root, "addresses", /*optional=*/true));
    for (const Input& a : addresses) {
        COGS_ASSIGN_OR_RETURN(auto ip, r.Required(a, "ip"));
        COGS_ASSIGN_OR_RETURN(auto port, r.Required(a, "port_id"));
        if (!ports.contains(port)) {
            return MakeError(r.Bad(a.Name("port_id") + ": address " + ip + " names port '" + port +
                                   "', which is not among the inventory's ports"));
        }
    }
    COGS_ASSIGN_OR_RETURN(inv.networks,
                          ReadEach<ActualNetwork>(r, root, "networks", "id", "network",
                                                  [](const Input&, std::string id) -> Result<ActualNetwork> {
                                                      return ActualNetwork{std::move(id)};
                                                  }));
    COGS_ASSIGN_OR_RETURN(
        inv.subnets, ReadEach<ActualSubnet>(r, root, "subnets", "id", "subnet",
                                            [&r](const Input& o, std::string id) -> Result<ActualSubnet> {
                                                COGS_ASSIGN_OR_RETURN(auto net, r.Required(o, "network_id"));
                                                return ActualSubnet{std::move(id), std::move(net)};
                                            }));
    return inv;
}

Result<VolumeInventory> ParseVolumeInventory(std::string_view text, int64_t read_at_ms) {
    const InventoryReader r("volume");
    COGS_ASSIGN_OR_RETURN(auto root, r.Root(text));
    VolumeInventory inv;
    inv.read_at_ms = read_at_ms;
    COGS_ASSIGN_OR_RETURN(
        inv.volumes,
        ReadEach<ActualVolume>(
            r, root, "volumes", "id", "volume", [&r](const Input& o, std::string id) -> Result<ActualVolume> {
                COGS_ASSIGN_OR_RETURN(auto status, r.Required(o, "status"));
                COGS_ASSIGN_OR_RETURN(auto server, r.Optional(o, "server_id"));
                COGS_ASSIGN_OR_RETURN(auto host, r.Optional(o, "host"));
                return ActualVolume{std::move(id), std::move(status), std::move(server), std::move(host)};
            }));
    return inv;
}

// ---- decisions ----

Reconciler::Reconciler(ReconcilerOptions options) : options_(options) {
    options_.confirm_scans = std::max(options_.confirm_scans, 1);
}

namespace {

template <typename T>
std::map<std::string_view, const T*> ById(const std::vector<T>& items) {
    std::map<std::string_view, const T*> m;
    for (const T& item : items) {
        m.try_emplace(item.id, &item);  // a duplicate id: the first one
    }
    return m;
}

template <typename M>
auto Find(const M& m, std::string_view id) -> typename M::mapped_type {
    auto it = m.find(id);
    return it == m.end() ? nullptr : it->second;
}

std::string Fingerprint(const DesiredServer& s) {
    std::string f =
        s.status + '|' + s.host + '|' + s.claim_host + '|' + s.port_id + '|' + std::to_string(s.changed_ms);
    for (const auto& v : s.volume_ids) {
        f += '|' + v;
    }
    return f;
}

std::string Fingerprint(const DesiredNetwork& n) { return n.status + '|' + std::to_string(n.changed_ms); }

std::string Fingerprint(const DesiredSubnet& u) {
    return u.status + '|' + u.network_id + '|' + std::to_string(u.changed_ms);
}

std::string Fingerprint(const DesiredPort& p) {
    return p.status + '|' + p.network_id + '|' + p.device_id + '|' + p.fixed_ip + '|' +
           std::to_string(p.changed_ms);
}

}  // namespace

std::vector<Action> Reconciler::Scan(const Desired& desired, const Actual& actual, int64_t now_ms) {
    const auto servers = ById(desired.servers);
    const auto ports = ById(desired.ports);
    const auto volumes = ById(desired.volumes);
    const auto networks = ById(desired.networks);
    const auto subnets = ById(desired.subnets);
    auto server_busy = [&](std::string_view id) {
        const DesiredServer* s = id.empty() ? nullptr : Find(servers, id);
        return s != nullptr && s->busy;
    };

    std::vector<Action> out;
    std::set<std::string> covered;  // scopes this scan judges
    std::set<std::string> seen;     // remembered drifts this scan observed again

    // An orphan: true once it has been unowned for the grace.
    auto orphan_due = [&](const std::string& key, const std::string& scope, int64_t* unowned_ms) {
        seen.insert(key);
        auto it = tracked_.try_emplace(key, Tracked{now_ms, 0, "", scope}).first;
        *unowned_ms = now_ms - it->second.first_seen_ms;
        return *unowned_ms >= options_.orphan_grace.count();
    };
    // A missing piece: true once confirm_scans scans in a row saw it with the same fingerprint.
    // `evidence`: this scan's inventory was read after the resource's last change.
    auto missing_due = [&](const std::string& key, const std::string& scope, const std::string& fingerprint,
                           bool evidence, int* scans) {
        seen.insert(key);
        Tracked& t = tracked_.try_emplace(key, Tracked{now_ms, 0, fingerprint, scope}).first->second;
        if (t.fingerprint != fingerprint) {
            t.fingerprint = fingerprint;
            t.scans = 0;
        }
        if (evidence) {
            ++t.scans;
        }
        *scans = t.scans;
        return t.scans >= options_.confirm_scans;
    };
    auto secs = [](int64_t ms) { return std::to_string(ms / 1000) + "s"; };

    // ---- compute ----
    // Each host is judged from the first inventory that names it.
    std::map<std::string_view, const ComputeInventory*> host_inventory;
    for (const ComputeInventory& inv : actual.compute) {
        for (const auto& h : inv.hosts) {
            host_inventory.try_emplace(h, &inv);
        }
    }
    std::set<std::pair<std::string_view, std::string_view>> present;  // (host, instance id)
    for (const ComputeInventory& inv : actual.compute) {
        for (const ActualInstance& in : inv.instances) {
            if (Find(host_inventory, in.host) != &inv) {
                continue;  // a host this inventory does not cover (or another one does)
            }
            present.emplace(in.host, in.id);
            const std::string scope = "compute:" + in.host;
            const std::string orphan_key = "orphan:" + scope + ":" + in.id;
            const DesiredServer* s = Find(servers, in.id);
            auto remove = [&](std::string reason) {
                out.push_back(
                    Action{ActionKind::kDeleteInstance, "compute", in.id, in.host, "", std::move(reason)});
            };
            if (s == nullptr || (!s->busy && s->host.empty() && s->claim_host != in.host)) {
                int64_t unowned = 0;
                if (orphan_due(orphan_key, scope, &unowned)) {
                    remove("instance " + in.id + " on host " + in.host +
                           (s == nullptr ? " belongs to no server"
                                         : " belongs to no placement of server " + in.id) +
                           " (unowned for " + secs(unowned) + ")");
                }
                continue;
            }
            if (s->busy) {
                continue;
            }
            if (in.host == s->host) {
                if (in.state == "FENCED" && s->status == "ACTIVE") {
                    out.push_back(Action{ActionKind::kStartInstance, "compute", in.id, in.host, "",
                                         "instance " + in.id + " on host " + in.host +
                                             " is FENCED while server " + s->id + " is ACTIVE there"});
                } else if (in.state == "SHUTOFF" && s->status == "ACTIVE") {
                    // A stop that settled a moment after the read looks the same: confirmed first.
                    int scans = 0;
                    if (missing_due("stopped:" + scope + ":" + in.id, scope, Fingerprint(*s),
                                    inv.read_at_ms >= s->changed_ms, &scans)) {
                        out.push_back(Action{ActionKind::kStartInstance, "compute", in.id, in.host, "",
                                             "instance " + in.id + " on host " + in.host +
                                                 " is SHUTOFF while server " + s->id + " is ACTIVE there (" +
                                                 std::to_string(scans) + " scans)"});
                    }
                }
                continue;
            }
            if (in.host == s->claim_host) {
                continue;
            }
            remove("instance " + in.id + " on host " + in.host + " is stale: server " + s->id +
                   " lives on host " + s->host);
        }
    }
    for (const auto& [host, inv] : host_inventory) {
        covered.insert("compute:" + std::string(host));
    }
    for (const DesiredServer& s : desired.servers) {
        const ComputeInventory* inv = s.host.empty() ? nullptr : Find(host_inventory, s.host);
        if (inv == nullptr || s.busy || (s.status != "ACTIVE" && s.status != "SHUTOFF") ||
            present.contains({s.host, s.id})) {
            continue;
        }
        const std::string scope = "compute:" + s.host;
        int scans = 0;
        if (missing_due("missing:" + scope + ":" + s.id, scope, Fingerprint(s),
                        inv->read_at_ms >= s.changed_ms, &scans)) {
            out.push_back(Action{ActionKind::kRepairServer, "compute", s.id, s.host, "",
                                 "server " + s.id + " is " + s.status + " on host " + s.host +
                                     " but the host has no instance " + s.id + " (" + std::to_string(scans) +
                                     " scans)"});
        }
    }

    // ---- network ----
    if (actual.network) {
        const NetworkInventory& inv = *actual.network;
        covered.insert("network");
        // What the inventory holds on each network and subnet: an orphan network or subnet is
        // deleted only once nothing of the inventory is on it (the service refuses before).
        std::set<std::string_view> held, held_networks, held_subnets, networks_in_use, subnets_in_use;
        for (const ActualSubnet& u : inv.subnets) {
            held_subnets.insert(u.id);
            networks_in_use.insert(u.network_id);
        }
        for (const ActualPort& p : inv.ports) {
            networks_in_use.insert(p.network_id);
            subnets_in_use.insert(p.subnet_id);
        }
        for (const ActualNetwork& n : inv.networks) {
            held_networks.insert(n.id);
            int64_t unowned = 0;
            if (Find(networks, n.id) == nullptr && orphan_due("orphan:net:" + n.id, "network", &unowned) &&
                !networks_in_use.contains(n.id)) {
                out.push_back(Action{ActionKind::kDeleteNetwork, "network", n.id, "", "",
                                     "network " + n.id + " belongs to no network of cogsd (unowned for " +
                                         secs(unowned) + ")"});
            }
        }
        for (const ActualSubnet& u : inv.subnets) {
            int64_t unowned = 0;
            if (Find(subnets, u.id) == nullptr && orphan_due("orphan:subnet:" + u.id, "network", &unowned) &&
                !subnets_in_use.contains(u.id)) {
                out.push_back(Action{ActionKind::kDeleteSubnet, "network", u.id, "", "",
                                     "subnet " + u.id + " of network " + u.network_id +
                                         " belongs to no subnet of cogsd (unowned for " + secs(unowned) +
                                         ")"});
            }
        }
        for (const ActualPort& p : inv.ports) {
            held.insert(p.id);
            if (const DesiredPort* d = Find(ports, p.id); d != nullptr) {
                // Held for another device than cogsd's record says (a port's device is set when it
                // is made, or when a server boots on it or is deleted from it, and only while that
                // server is busy): set back, once confirmed.
                int scans = 0;
                if (p.device_id != d->device_id && !d->busy && d->status == "ACTIVE" &&
                    !server_busy(d->device_id) && !server_busy(p.device_id) &&
                    missing_due("device:network:" + p.id, "network", Fingerprint(*d) + '|' + p.device_id,
                                inv.read_at_ms >= d->changed_ms, &scans)) {
                    out.push_back(Action{ActionKind::kSetPortDevice, "network", p.id, "", d->device_id,
                                         "port " + p.id + " is held for device '" + p.device_id +
                                             "' by the network service, for '" + d->device_id +
                                             "' by cogsd (" + std::to_string(scans) + " scans)"});
                }
                continue;
            }
            int64_t unowned = 0;
            if (orphan_due("orphan:network:" + p.id, "network", &unowned) && !server_busy(p.device_id)) {
                out.push_back(
                    Action{ActionKind::kDeletePort, "network", p.id, "", "",
                           "port " + p.id + " (" + (p.fixed_ip.empty() ? "no address" : p.fixed_ip) +
                               ") belongs to no port of cogsd (unowned for " + secs(unowned) + ")"});
            }
        }
        // A desired network the inventory lacks: repaired first; its subnets and ports wait.
        std::set<std::string_view> missing_networks;
        for (const DesiredNetwork& n : desired.networks) {
            if (n.busy || n.status != "ACTIVE" || held_networks.contains(n.id)) {
                continue;
            }
            missing_networks.insert(n.id);
            int scans = 0;
            if (missing_due("missing:net:" + n.id, "network", Fingerprint(n), inv.read_at_ms >= n.changed_ms,
                            &scans)) {
                out.push_back(Action{ActionKind::kRepairNetwork, "network", n.id, "", "",
                                     "network " + n.id + " is missing from the network service (" +
                                         std::to_string(scans) + " scans)"});
            }
        }
        for (const DesiredSubnet& u : desired.subnets) {
            if (u.busy || u.status != "ACTIVE" || held_subnets.contains(u.id) ||
                missing_networks.contains(u.network_id)) {
                continue;
            }
            int scans = 0;
            if (missing_due("missing:subnet:" + u.id, "network", Fingerprint(u),
                            inv.read_at_ms >= u.changed_ms, &scans)) {
                out.push_back(Action{ActionKind::kRepairSubnet, "network", u.id, "", "",
                                     "subnet " + u.id + " of network " + u.network_id +
                                         " is missing from the network service (" + std::to_string(scans) +
                                         " scans)"});
            }
        }
        for (const DesiredPort& p : desired.ports) {
            if (p.busy || server_busy(p.device_id) || p.status != "ACTIVE" || held.contains(p.id) ||
                missing_networks.contains(p.network_id)) {
                continue;
            }
            int scans = 0;
            if (missing_due("missing:network:" + p.id, "network", Fingerprint(p),
                            inv.read_at_ms >= p.changed_ms, &scans)) {
                out.push_back(Action{ActionKind::kRepairPort, "network", p.id, "", p.device_id,
                                     "port " + p.id + " of network " + p.network_id +
                                         (p.device_id.empty() ? "" : " (server " + p.device_id + ")") +
                                         " is missing from the network service (" + std::to_string(scans) +
                                         " scans)"});
            }
        }
    }

    // ---- volume ----
    if (actual.volume) {
        const VolumeInventory& inv = *actual.volume;
        covered.insert("volume");
        std::set<std::string_view> held;
        for (const ActualVolume& v : inv.volumes) {
            held.insert(v.id);
            const DesiredVolume* d = Find(volumes, v.id);
            int64_t unowned = 0;
            if (d == nullptr) {
                if (!orphan_due("orphan:volume:" + v.id, "volume", &unowned) || server_busy(v.server_id)) {
                    continue;
                }
                if (v.server_id.empty()) {
                    out.push_back(Action{ActionKind::kDeleteVolume, "volume", v.id, "", "",
                                         "volume " + v.id + " belongs to no volume of cogsd (unowned for " +
                                             secs(unowned) + ")"});
                } else {
                    out.push_back(Action{ActionKind::kDetachVolume, "volume", v.id, "", v.server_id,
                                         "volume " + v.id + " belongs to no volume of cogsd (unowned for " +
                                             secs(unowned) + "): detach it from server " + v.server_id +
                                             " before deleting it"});
                }
                continue;
            }
            if (d->busy || server_busy(d->server_id) || server_busy(v.server_id)) {
                continue;
            }
            const DesiredServer* holder = v.server_id.empty() ? nullptr : Find(servers, v.server_id);
            if (!v.server_id.empty() && holder == nullptr) {
                if (orphan_due("attachment:volume:" + v.id + ":" + v.server_id, "volume", &unowned)) {
                    out.push_back(Action{ActionKind::kDetachVolume, "volume", v.id, "", v.server_id,
                                         "volume " + v.id + " is attached to server " + v.server_id +
                                             ", which does not exist (for " + secs(unowned) + ")"});
                }
                continue;
            }
            // Both ends exist: the attachment must be the model's (an available volume: none).
            if (d->status != "available" && d->status != "in-use") {
                continue;
            }
            const std::string want = d->status == "in-use" ? d->server_id : "";
            if (v.server_id == want) {
                continue;
            }
            const DesiredServer* target = want.empty() ? nullptr : Find(servers, want);
            if (v.server_id.empty() && (target == nullptr || target->host.empty() ||
                                        (target->status != "ACTIVE" && target->status != "SHUTOFF"))) {
                continue;  // nowhere to attach it now
            }
            // An inventory read before the volume or either server last changed is no evidence.
            int64_t changed = d->changed_ms;
            for (const DesiredServer* s : {holder, target}) {
                if (s != nullptr) changed = std::max(changed, s->changed_ms);
            }
            const std::string fingerprint = d->status + '|' + want + '|' + v.server_id;
            const std::string cogsd = want.empty() ? "available" : "attached to server " + want;
            int scans = 0;
            if (!missing_due("attachment:" + v.id, "volume", fingerprint + '|' + std::to_string(changed),
                             inv.read_at_ms >= changed, &scans)) {
                continue;
            }
            if (!v.server_id.empty()) {
                out.push_back(Action{ActionKind::kDetachVolume, "volume", v.id, "", v.server_id,
                                     "volume " + v.id + " is attached to server " + v.server_id +
                                         " at the volume service, " + cogsd + " in cogsd (" +
                                         std::to_string(scans) + " scans)"});
            } else {
                out.push_back(Action{ActionKind::kAttachVolume, "volume", v.id, target->host, want,
                                     "volume " + v.id + " is attached to no server at the volume service, " +
                                         cogsd + " in cogsd (" + std::to_string(scans) + " scans)"});
            }
        }
        for (const DesiredVolume& d : desired.volumes) {
            if (d.busy || server_busy(d.server_id) || (d.status != "available" && d.status != "in-use") ||
                held.contains(d.id)) {
                continue;
            }
            int scans = 0;
            if (missing_due("missing:volume:" + d.id, "volume",
                            d.status + '|' + d.server_id + '|' + std::to_string(d.changed_ms),
                            inv.read_at_ms >= d.changed_ms, &scans)) {
                out.push_back(Action{ActionKind::kRepairVolume, "volume", d.id, "", "",
                                     "volume " + d.id + " is missing from the volume service (" +
                                         std::to_string(scans) +
                                         " scans): made again empty, its data is lost"});
            }
        }
    }

    // Forget what a covering inventory no longer shows as a drift; keep what this scan did not
    // cover.
    std::erase_if(tracked_, [&](const auto& kv) {
        return covered.contains(kv.second.scope) && !seen.contains(kv.first);
    });

    std::sort(out.begin(), out.end(), [](const Action& a, const Action& b) {
        return std::tie(a.service, a.id, a.host, a.kind) < std::tie(b.service, b.id, b.host, b.kind);
    });
    return out;
}

}  // namespace cogs::cloud::reconcile
