#include "test/support/cloud_audit.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "test/support/dev_cloud.h"

namespace cogs::testing {

namespace json = boost::json;
using namespace std::chrono_literals;

int Audit::leaks() const {
    int n = 0;
    for (const auto& [kind, count] : leaked) {
        n += count;
    }
    return n;
}

std::vector<std::string> Audit::Failing() const {
    std::vector<std::string> out;
    auto add = [&](bool failing, const char* what) {
        if (failing) {
            out.emplace_back(what);
        }
    };
    add(leaks() > 0, "leaks");
    add(duplicate_addresses > 0, "duplicate_addresses");
    add(desired_not_active > 0, "desired_not_active");
    add(second_resources > 0, "second_resources");
    add(actions.extra_workflows + actions.missing_workflows + actions.not_done_once > 0, "actions");
    add(attachments.mismatched + attachments.on_deleted_server > 0, "attachments");
    return out;
}

bool Audit::Converged() const {
    return leaks() == 0 && duplicate_addresses == 0 && desired_not_active == 0 &&
           attachments.mismatched == 0 && attachments.on_deleted_server == 0;
}

bool Audit::Clean() const { return Failing().empty(); }

namespace {

Result<json::object> GetObject(ApiClient& c, const std::string& target) {
    auto r = c.Call("GET", target, "", {}, 10s);
    if (!r) {
        return MakeError(r.error());
    }
    if (r->status != 200 || !r->body.is_object()) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("GET {}: {}", target, r->status));
    }
    return r->body.as_object();
}

std::vector<std::string> Strings(const json::object& o, const std::string& key) {
    std::vector<std::string> out;
    if (const auto* a = o.if_contains(key); a != nullptr && a->is_array()) {
        for (const auto& v : a->as_array()) {
            if (v.is_string()) {
                out.emplace_back(v.as_string());
            }
        }
    }
    return out;
}

// The service action a workflow type's single step performs.
// The service and its action that a request's workflow applies once: compute's and volume's
// ledgers both hold an attach_volumes (the host mounts what the volume service attached).
std::pair<std::string, std::string> ServiceAction(const std::string& type) {
    static const std::map<std::string, std::pair<std::string, std::string>> kActions = {
        {"server.start", {"compute", "start_instance"}},
        {"server.stop", {"compute", "stop_instance"}},
        {"server.reboot", {"compute", "reboot_instance"}},
        {"volume.attach", {"volume", "attach_volumes"}},
        {"volume.detach", {"volume", "detach_volumes"}}};
    auto it = kActions.find(type);
    return it == kActions.end() ? std::pair<std::string, std::string>() : it->second;
}

class Auditor {
public:
    Auditor(const CloudEndpoints& cloud, const Requested& requested)
        : cloud_(cloud), requested_(requested), api_(cloud.api_urls, cloud.admin_token) {}

    Result<Audit> Run() {
        for (const char* kind : {"servers", "ports", "volumes", "networks", "subnets"}) {
            COGS_ASSIGN_OR_RETURN(lists_[kind], ListAll(api_, std::string("/v1/") + kind, kind));
            for (const auto& o : lists_[kind]) {
                ids_[kind].insert(Str(o, "id"));
            }
        }
        for (const auto& s : lists_["servers"]) {
            servers_[Str(s, "id")] = s;
        }
        COGS_TRY(Compute());
        COGS_TRY(Network());
        COGS_TRY(Volumes());
        DesiredState();
        SecondResources();
        COGS_TRY(Actions());
        return std::move(a_);
    }

private:
    void Find(std::string line) { a_.findings.push_back(std::move(line)); }
    void Leak(const std::string& kind, const std::string& what) {
        ++a_.leaked[kind];
        Find(fmt::format("LEAKED {}: {}", kind, what));
    }

    // Every instance belongs to a server, on the host cogsd names.
    Status Compute() {
        for (const CloudEndpoints::Agent& a : cloud_.agents) {
            ApiClient agent(a.url, a.token);
            auto inv = ComputeInventory(agent, 10s);
            if (!inv) {
                return MakeError(ErrorCode::kUnavailable,
                                 fmt::format("inventory of {}: {}", a.name, inv.error().message));
            }
            for (const auto& [id, i] : *inv) {
                instances_by_host_[i.host][id] = i;
                auto s = servers_.find(id);
                if (s == servers_.end()) {
                    Leak("instance", fmt::format("{} on {} ({}) has no server", id, i.host, i.state));
                } else if (Str(s->second, "host") != i.host) {
                    Leak("instance", fmt::format("{} on {} ({}), but cogsd places server {} on '{}'", id,
                                                 i.host, i.state, id, Str(s->second, "host")));
                }
            }
            COGS_ASSIGN_OR_RETURN(json::array ledger, ServiceLedger(agent, 10s));
            AddLedger("compute", ledger);
        }
        return {};
    }

    // Ports, addresses, networks and subnets cogsd owns; no address held twice.
    Status Network() {
        ApiClient network(cloud_.network_url, cloud_.network_token);
        COGS_ASSIGN_OR_RETURN(json::object net, GetObject(network, "/v1/inventory"));
        for (const auto& [inv_key, kind] : std::map<std::string, std::string>{
                 {"ports", "ports"}, {"networks", "networks"}, {"subnets", "subnets"}}) {
            for (const auto& p : net.at(inv_key).as_array()) {
                if (ids_[kind].count(Str(p.as_object(), "id")) == 0) {
                    Leak(inv_key.substr(0, inv_key.size() - 1), json::serialize(p));
                }
            }
        }
        std::map<std::pair<std::string, std::string>, std::set<std::string>> held;  // (subnet, ip) -> ports
        for (const auto& a : net.at("addresses").as_array()) {
            const auto& o = a.as_object();
            if (ids_["ports"].count(Str(o, "port_id")) == 0) {
                Leak("address", json::serialize(a));
            }
            held[{Str(o, "subnet_id"), Str(o, "ip")}].insert(Str(o, "port_id"));
        }
        std::map<std::pair<std::string, std::string>, std::set<std::string>> by_ip;
        for (const auto& p : lists_["ports"]) {
            if (!Str(p, "fixed_ip").empty()) {
                by_ip[{Str(p, "network_id"), Str(p, "fixed_ip")}].insert("port " + Str(p, "id"));
            }
        }
        for (const auto& s : lists_["servers"]) {
            if (!Str(s, "ip_address").empty()) {
                by_ip[{Str(s, "network_id"), Str(s, "ip_address")}].insert("server " + Str(s, "id"));
            }
        }
        for (const auto& [k, holders] : by_ip) {
            std::set<std::string> ports, srv;
            for (const auto& h : holders) {
                (h.starts_with("port ") ? ports : srv).insert(h);
            }
            if (ports.size() > 1 || srv.size() > 1) {
                a_.duplicate_addresses += static_cast<int>(std::max(ports.size(), srv.size()) - 1);
                Find(fmt::format("DUPLICATE ADDRESS {} on network {}: {}", k.second, k.first,
                                 fmt::join(holders, ", ")));
            }
        }
        for (const auto& [k, ports] : held) {
            if (ports.size() > 1) {
                a_.duplicate_addresses += static_cast<int>(ports.size() - 1);
                Find(fmt::format("DUPLICATE ADDRESS {} in subnet {} (network service): {}", k.second, k.first,
                                 fmt::join(ports, ", ")));
            }
        }
        return {};
    }

    // Volumes cogsd owns, and the attachment audit: cogsd's volume, its server's volume_ids and
    // cogs-volume's record agree.
    Status Volumes() {
        ApiClient volume(cloud_.volume_url, cloud_.volume_token);
        COGS_ASSIGN_OR_RETURN(json::object vol, GetObject(volume, "/v1/inventory"));
        COGS_ASSIGN_OR_RETURN(json::array ledger, ServiceLedger(volume, 10s));
        AddLedger("volume", ledger);
        std::map<std::string, json::object> held;  // cogs-volume's volumes by id
        for (const auto& v : vol.at("volumes").as_array()) {
            const auto& o = v.as_object();
            held[Str(o, "id")] = o;
            const std::string server = Str(o, "server_id");
            if (ids_["volumes"].count(Str(o, "id")) == 0) {
                Leak("volume", json::serialize(v));
            } else if (!server.empty() && servers_.count(server) == 0) {
                Leak("attachment", json::serialize(v));  // a volume attached to a deleted server
                ++a_.attachments.on_deleted_server;
            }
        }
        AttachmentAudit& at = a_.attachments;
        auto mismatch = [&](const std::string& what) {
            ++at.mismatched;
            Find("ATTACHMENT: " + what);
        };
        std::map<std::string, std::string> volume_server;  // cogsd: volume -> server_id
        for (const auto& v : lists_["volumes"]) {
            const std::string id = Str(v, "id");
            const std::string status = Str(v, "status");
            const std::string server = Str(v, "server_id");
            volume_server[id] = server;
            ++at.volumes;
            auto h = held.find(id);
            const std::string held_by = h == held.end() ? "" : Str(h->second, "server_id");
            const std::string at_service = h == held.end() ? "missing at cogs-volume"
                                                           : fmt::format("cogs-volume holds it {} on '{}'",
                                                                         Str(h->second, "status"), held_by);
            if (status == "in-use") {
                ++at.in_use;
                auto s = servers_.find(server);
                if (server.empty()) {
                    mismatch(fmt::format("volume {} is in-use on no server", id));
                } else if (s == servers_.end()) {
                    ++at.on_deleted_server;
                    Find(
                        fmt::format("ATTACHMENT: volume {} is in-use on server {}, which cogsd no longer has",
                                    id, server));
                } else if (auto listed = Strings(s->second, "volume_ids");
                           std::find(listed.begin(), listed.end(), id) == listed.end()) {
                    mismatch(fmt::format("volume {} is in-use on server {}, whose volume_ids are [{}]", id,
                                         server, fmt::join(listed, ", ")));
                } else if (held_by != server) {
                    mismatch(
                        fmt::format("volume {} is in-use on server {} in cogsd; {}", id, server, at_service));
                }
            } else if (status == "available") {
                ++at.available;
                if (!server.empty()) {
                    mismatch(fmt::format("volume {} is available with server_id {}", id, server));
                }
                if (h == held.end() || !held_by.empty()) {
                    mismatch(fmt::format("volume {} is available in cogsd; {}", id, at_service));
                }
            } else {
                ++at.other;
                if (Transitional(status)) {
                    mismatch(fmt::format("volume {} is still {} (server '{}')", id, status, server));
                } else if (!held_by.empty() && held_by != server) {
                    mismatch(fmt::format("volume {} is {} on server '{}' in cogsd; {}", id, status, server,
                                         at_service));
                }
            }
        }
        for (const auto& [sid, s] : servers_) {
            for (const auto& vid : Strings(s, "volume_ids")) {
                auto v = volume_server.find(vid);
                if (v == volume_server.end() || v->second != sid) {
                    mismatch(fmt::format("server {} lists volume {}, which {}", sid, vid,
                                         v == volume_server.end() ? "cogsd does not have"
                                                                  : "names server '" + v->second + "'"));
                }
            }
        }
        return {};
    }

    // Servers last created (successfully), started or rebooted are ACTIVE, in cogsd and on the host
    // cogsd names.
    void DesiredState() {
        for (const auto& [id, last_op] : requested_.wants_active) {
            auto s = servers_.find(id);
            std::string why;
            if (s == servers_.end()) {
                why = "gone from cogsd";
            } else if (Str(s->second, "status") != "ACTIVE") {
                why = fmt::format(
                    "status {} (fault: {})", Str(s->second, "status"),
                    s->second.contains("fault") ? json::serialize(s->second.at("fault")) : "none");
            } else {
                const std::string host = Str(s->second, "host");
                auto inv = instances_by_host_[host].find(id);
                if (inv == instances_by_host_[host].end()) {
                    why = "no instance on " + host;
                } else if (inv->second.state != "ACTIVE") {
                    why = fmt::format("instance on {} is {}", host, inv->second.state);
                }
            }
            if (!why.empty()) {
                ++a_.desired_not_active;
                Find(fmt::format("DESIRED ACTIVE, is not: server {} (last operation {}): {}", id, last_op,
                                 why));
            }
        }
    }

    // One resource per create: the one its answer named, none for a refused one.
    void SecondResources() {
        std::map<std::pair<std::string, std::string>, std::vector<std::string>>
            by_name;  // (kind, name) -> ids
        for (const char* kind : {"servers", "volumes"}) {
            for (const auto& o : lists_[kind]) {
                by_name[{kind, Str(o, "name")}].push_back(Str(o, "id"));
            }
        }
        for (const auto& c : requested_.creates) {
            for (const auto& id : by_name[{c.kind, c.name}]) {
                if (id != c.id) {
                    ++a_.second_resources;
                    Find(fmt::format("SECOND RESOURCE: {} {} is named {}, whose create {}", c.kind, id,
                                     c.name, c.id.empty() ? "was refused" : "was answered with " + c.id));
                }
            }
        }
    }

    void AddLedger(const std::string& service, const json::array& ledger) {
        for (const auto& e : ledger) {
            if (!e.is_object()) {
                continue;
            }
            const auto& o = e.as_object();
            const std::string key = Str(o, "key");
            if (Str(o, "kind") == "do" && Str(o, "outcome") == "applied") {
                ++applied_[{key.substr(0, key.find('/')), service, Str(o, "action")}];
            }
        }
    }

    // One workflow per answered action (the one its answer names), none for a refused one, at most
    // one for an unanswered one; a succeeded one applied once at its service.
    Status Actions() {
        std::map<std::pair<std::string, std::string>, std::vector<std::string>> by_trace;  // (type, trace)
        std::map<std::string, std::string> state;  // workflow -> state
        for (const char* type :
             {"server.start", "server.stop", "server.reboot", "volume.attach", "volume.detach"}) {
            COGS_ASSIGN_OR_RETURN(auto wfs,
                                  ListAll(api_, std::string("/v1/workflows?type=") + type, "workflows"));
            for (const auto& w : wfs) {
                by_trace[{type, Str(w, "trace_id")}].push_back(Str(w, "id"));
                state[Str(w, "id")] = Str(w, "state");
            }
        }
        for (const char* s : {"running", "compensating"}) {
            COGS_ASSIGN_OR_RETURN(auto wfs,
                                  ListAll(api_, std::string("/v1/workflows?state=") + s, "workflows"));
            a_.running_workflows += static_cast<int>(wfs.size());
        }
        ActionAudit& aa = a_.actions;
        using Act = Requested::Action;
        for (const auto& act : requested_.actions) {
            ++aa.checked;
            const std::string what =
                fmt::format("{} on {} (trace {})", act.type, act.resource_id, act.trace_id);
            const std::vector<std::string>& started = by_trace[{act.type, act.trace_id}];
            if (act.answer == Act::kAccepted &&
                std::find(started.begin(), started.end(), act.workflow_id) == started.end()) {
                ++aa.missing_workflows;
                Find(fmt::format("ACTION MISSING: {} was answered with workflow {}, which does not exist",
                                 what, act.workflow_id));
            }
            std::vector<std::string> extra;
            for (const auto& id : started) {
                if (act.answer == Act::kRefused || (act.answer == Act::kAccepted && id != act.workflow_id)) {
                    extra.push_back(id);
                }
            }
            if (act.answer == Act::kUnanswered && started.size() > 1) {
                extra.assign(started.begin() + 1, started.end());
            }
            if (!extra.empty()) {
                aa.extra_workflows += static_cast<int>(extra.size());
                Find(fmt::format("ACTION DONE TWICE: {}, {}, started workflows [{}]", what,
                                 act.answer == Act::kAccepted  ? "answered with workflow " + act.workflow_id
                                 : act.answer == Act::kRefused ? std::string("refused")
                                                               : std::string("never answered"),
                                 fmt::join(started, ", ")));
            }
            if (act.answer != Act::kAccepted || state[act.workflow_id] != "succeeded") {
                continue;
            }
            const auto [service, action] = ServiceAction(act.type);
            const int n = applied_[{act.workflow_id, service, action}];
            if (n > 1 || (n == 0 && act.type != "server.stop")) {
                ++aa.not_done_once;
                Find(fmt::format(
                    "ACTION NOT DONE ONCE: {}, workflow {} succeeded: {} applied {} time(s) in the "
                    "service's ledger",
                    what, act.workflow_id, service + "." + action, n));
            }
        }
        return {};
    }

    const CloudEndpoints& cloud_;
    const Requested& requested_;
    ControlPlaneClient api_;
    Audit a_;
    std::map<std::string, std::vector<json::object>> lists_;
    std::map<std::string, std::set<std::string>> ids_;
    std::map<std::string, json::object> servers_;
    std::map<std::string, std::map<std::string, InstanceView>> instances_by_host_;
    std::map<std::tuple<std::string, std::string, std::string>, int>
        applied_;  // (workflow, service, action) -> applied dos
};

}  // namespace

Result<Audit> AuditCloud(const CloudEndpoints& cloud, const Requested& requested) {
    return Auditor(cloud, requested).Run();
}

}  // namespace cogs::testing
