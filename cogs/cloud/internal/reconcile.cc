#include "cogs/cloud/internal/reconcile.h"

#include <algorithm>
#include <tuple>

#include "cogs/cloud/internal/json_util.h"

namespace cogs::cloud::internal {

std::string_view ToString(ActionKind kind) {
    switch (kind) {
        case ActionKind::kDeleteInstance:
            return "delete_instance";
        case ActionKind::kStartInstance:
            return "start_instance";
        case ActionKind::kRepairServer:
            return "repair_server";
        case ActionKind::kDeletePort:
            return "delete_port";
        case ActionKind::kRepairPort:
            return "repair_port";
        case ActionKind::kDeleteVolume:
            return "delete_volume";
        case ActionKind::kDetachVolume:
            return "detach_volume";
    }
    return "unknown";
}

// ---- parsers ----

namespace {

// Reads one inventory text; every error names the service and the path of the field.
class InventoryReader {
public:
    explicit InventoryReader(std::string_view service) : service_(service) {}

    // "compute inventory: PATH: WHAT" (either part may be empty).
    Error Bad(const std::string& path, std::string_view what) const {
        std::string m = std::string(service_) + " inventory: " + path;
        if (!path.empty() && !what.empty()) {
            m += ": ";
        }
        m += what;
        return Error(ErrorCode::kInvalidArgument, std::move(m));
    }

    Result<json::object> Root(std::string_view text) const {
        boost::system::error_code ec;
        json::value v = json::parse(text, ec);
        if (ec) {
            return MakeError(Bad("", "not JSON: " + ec.message()));
        }
        if (!v.is_object()) {
            return MakeError(Bad("", "must be a JSON object"));
        }
        return std::move(v.get_object());
    }

    // The objects of array `field`; absent (or null) is an error unless `optional`.
    Result<std::vector<const json::object*>> Objects(const json::object& o, std::string_view field,
                                                     bool optional = false) const {
        std::vector<const json::object*> items;
        const json::value* v = o.if_contains(field);
        if (v == nullptr || v->is_null()) {
            if (optional) {
                return items;
            }
            return MakeError(Bad(std::string(field), "required"));
        }
        if (!v->is_array()) {
            return MakeError(Bad(std::string(field), "must be an array"));
        }
        const json::array& a = v->get_array();
        items.reserve(a.size());
        for (size_t i = 0; i < a.size(); ++i) {
            if (!a[i].is_object()) {
                return MakeError(Bad(Item(field, i), "must be an object"));
            }
            items.push_back(&a[i].get_object());
        }
        return items;
    }

    static std::string Item(std::string_view field, size_t i) {
        return std::string(field) + "[" + std::to_string(i) + "]";
    }

    // json_util's readers name the field alone ("host: required"): put the item's path before it.
    Result<std::string> Required(const json::object& o, const std::string& item, std::string_view field) const {
        auto s = RequiredString(o, field);
        if (!s) {
            return MakeError(Bad(item + "." + s.error().message, ""));
        }
        return s;
    }
    // A string, or "" for absent or null.
    Result<std::string> Optional(const json::object& o, const std::string& item, std::string_view field) const {
        auto s = OptionalString(o, field);
        if (!s) {
            return MakeError(Bad(item + "." + s.error().message, ""));
        }
        return s->value_or("");
    }

private:
    std::string_view service_;
};

}  // namespace

Result<ComputeInventory> ParseComputeInventory(std::string_view text, int64_t read_at_ms) {
    const InventoryReader r("compute");
    auto root = r.Root(text);
    if (!root) return MakeError(root.error());
    ComputeInventory inv;
    inv.read_at_ms = read_at_ms;
    auto hosts = r.Objects(*root, "hosts");
    if (!hosts) return MakeError(hosts.error());
    std::set<std::string> names;
    for (size_t i = 0; i < hosts->size(); ++i) {
        const std::string item = InventoryReader::Item("hosts", i);
        auto name = r.Required(*(*hosts)[i], item, "name");
        if (!name) return MakeError(name.error());
        if (!names.insert(*name).second) {
            return MakeError(r.Bad(item + ".name", "host '" + *name + "' listed twice"));
        }
        inv.hosts.push_back(std::move(*name));
    }
    auto instances = r.Objects(*root, "instances");
    if (!instances) return MakeError(instances.error());
    std::set<std::string> ids;
    for (size_t i = 0; i < instances->size(); ++i) {
        const json::object& o = *(*instances)[i];
        const std::string item = InventoryReader::Item("instances", i);
        auto id = r.Required(o, item, "id");
        if (!id) return MakeError(id.error());
        auto host = r.Required(o, item, "host");
        if (!host) return MakeError(host.error());
        auto state = r.Required(o, item, "state");
        if (!state) return MakeError(state.error());
        auto port = r.Optional(o, item, "port_id");
        if (!port) return MakeError(port.error());
        if (!ids.insert(*id).second) {
            return MakeError(r.Bad(item + ".id", "instance '" + *id + "' listed twice"));
        }
        inv.instances.push_back(ActualInstance{std::move(*id), std::move(*host), std::move(*state), std::move(*port)});
    }
    return inv;
}

Result<NetworkInventory> ParseNetworkInventory(std::string_view text, int64_t read_at_ms) {
    const InventoryReader r("network");
    auto root = r.Root(text);
    if (!root) return MakeError(root.error());
    NetworkInventory inv;
    inv.read_at_ms = read_at_ms;
    auto ports = r.Objects(*root, "ports");
    if (!ports) return MakeError(ports.error());
    std::set<std::string> ids;
    for (size_t i = 0; i < ports->size(); ++i) {
        const json::object& o = *(*ports)[i];
        const std::string item = InventoryReader::Item("ports", i);
        auto id = r.Required(o, item, "id");
        if (!id) return MakeError(id.error());
        auto network = r.Required(o, item, "network_id");
        if (!network) return MakeError(network.error());
        auto device = r.Optional(o, item, "device_id");
        if (!device) return MakeError(device.error());
        auto ip = r.Optional(o, item, "fixed_ip");
        if (!ip) return MakeError(ip.error());
        if (!ids.insert(*id).second) {
            return MakeError(r.Bad(item + ".id", "port '" + *id + "' listed twice"));
        }
        inv.ports.push_back(ActualPort{std::move(*id), std::move(*network), std::move(*device), std::move(*ip)});
    }
    // Every address is a port's (the service derives the list from its ports): one that names no
    // port means the inventory is not what the service's README says, and none of it is trusted.
    auto addresses = r.Objects(*root, "addresses", /*optional=*/true);
    if (!addresses) return MakeError(addresses.error());
    for (size_t i = 0; i < addresses->size(); ++i) {
        const std::string item = InventoryReader::Item("addresses", i);
        auto ip = r.Required(*(*addresses)[i], item, "ip");
        if (!ip) return MakeError(ip.error());
        auto port = r.Required(*(*addresses)[i], item, "port_id");
        if (!port) return MakeError(port.error());
        if (!ids.contains(*port)) {
            return MakeError(r.Bad(item + ".port_id", "address " + *ip + " names port '" + *port +
                                                          "', which is not among the inventory's ports"));
        }
    }
    return inv;
}

Result<VolumeInventory> ParseVolumeInventory(std::string_view text, int64_t read_at_ms) {
    const InventoryReader r("volume");
    auto root = r.Root(text);
    if (!root) return MakeError(root.error());
    VolumeInventory inv;
    inv.read_at_ms = read_at_ms;
    auto volumes = r.Objects(*root, "volumes");
    if (!volumes) return MakeError(volumes.error());
    std::set<std::string> ids;
    for (size_t i = 0; i < volumes->size(); ++i) {
        const json::object& o = *(*volumes)[i];
        const std::string item = InventoryReader::Item("volumes", i);
        auto id = r.Required(o, item, "id");
        if (!id) return MakeError(id.error());
        auto status = r.Required(o, item, "status");
        if (!status) return MakeError(status.error());
        auto server = r.Optional(o, item, "server_id");
        if (!server) return MakeError(server.error());
        auto host = r.Optional(o, item, "host");
        if (!host) return MakeError(host.error());
        if (!ids.insert(*id).second) {
            return MakeError(r.Bad(item + ".id", "volume '" + *id + "' listed twice"));
        }
        inv.volumes.push_back(ActualVolume{std::move(*id), std::move(*status), std::move(*server), std::move(*host)});
    }
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
    std::string f = s.status + '|' + s.host + '|' + s.claim_host + '|' + s.port_id + '|' +
                    std::to_string(s.changed_ms);
    for (const auto& v : s.volume_ids) {
        f += '|' + v;
    }
    return f;
}

std::string Fingerprint(const DesiredPort& p) {
    return p.status + '|' + p.network_id + '|' + p.device_id + '|' + p.fixed_ip + '|' + std::to_string(p.changed_ms);
}

}  // namespace

std::vector<Action> Reconciler::Scan(const Desired& desired, const Actual& actual, int64_t now_ms) {
    const auto servers = ById(desired.servers);
    const auto ports = ById(desired.ports);
    const auto volumes = ById(desired.volumes);
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
                out.push_back(Action{ActionKind::kDeleteInstance, "compute", in.id, in.host, "", std::move(reason)});
            };
            if (s == nullptr || (!s->busy && s->host.empty() && s->claim_host != in.host)) {
                int64_t unowned = 0;
                if (orphan_due(orphan_key, scope, &unowned)) {
                    remove("instance " + in.id + " on host " + in.host +
                           (s == nullptr ? " belongs to no server" : " belongs to no placement of server " + in.id) +
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
                                         "instance " + in.id + " on host " + in.host + " is FENCED while server " +
                                             s->id + " is ACTIVE there"});
                }
                continue;
            }
            if (in.host == s->claim_host) {
                continue;
            }
            remove("instance " + in.id + " on host " + in.host + " is stale: server " + s->id + " lives on host " +
                   s->host);
        }
    }
    for (const auto& [host, inv] : host_inventory) {
        covered.insert("compute:" + std::string(host));
    }
    for (const DesiredServer& s : desired.servers) {
        const ComputeInventory* inv = s.host.empty() ? nullptr : Find(host_inventory, s.host);
        if (inv == nullptr || s.busy || s.status != "ACTIVE" || present.contains({s.host, s.id})) {
            continue;
        }
        const std::string scope = "compute:" + s.host;
        int scans = 0;
        if (missing_due("missing:" + scope + ":" + s.id, scope, Fingerprint(s), inv->read_at_ms >= s.changed_ms,
                        &scans)) {
            out.push_back(Action{ActionKind::kRepairServer, "compute", s.id, s.host, "",
                                 "server " + s.id + " is ACTIVE on host " + s.host + " but the host has no instance " +
                                     s.id + " (" + std::to_string(scans) + " scans)"});
        }
    }

    // ---- network ----
    if (actual.network) {
        const NetworkInventory& inv = *actual.network;
        covered.insert("network");
        std::set<std::string_view> held;
        for (const ActualPort& p : inv.ports) {
            held.insert(p.id);
            if (Find(ports, p.id) != nullptr) {
                continue;
            }
            int64_t unowned = 0;
            if (orphan_due("orphan:network:" + p.id, "network", &unowned) && !server_busy(p.device_id)) {
                out.push_back(Action{ActionKind::kDeletePort, "network", p.id, "", "",
                                     "port " + p.id + " (" + (p.fixed_ip.empty() ? "no address" : p.fixed_ip) +
                                         ") belongs to no port of cogsd (unowned for " + secs(unowned) + ")"});
            }
        }
        for (const DesiredPort& p : desired.ports) {
            if (p.busy || server_busy(p.device_id) || p.status != "ACTIVE" || held.contains(p.id)) {
                continue;
            }
            int scans = 0;
            if (missing_due("missing:network:" + p.id, "network", Fingerprint(p), inv.read_at_ms >= p.changed_ms,
                            &scans)) {
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
        covered.insert("volume");
        for (const ActualVolume& v : actual.volume->volumes) {
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
            if (d->busy || server_busy(d->server_id) || v.server_id.empty() ||
                Find(servers, v.server_id) != nullptr) {
                continue;
            }
            if (orphan_due("attachment:volume:" + v.id + ":" + v.server_id, "volume", &unowned)) {
                out.push_back(Action{ActionKind::kDetachVolume, "volume", v.id, "", v.server_id,
                                     "volume " + v.id + " is attached to server " + v.server_id +
                                         ", which does not exist (for " + secs(unowned) + ")"});
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

}  // namespace cogs::cloud::internal
