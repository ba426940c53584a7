#include "test/support/cloud_api.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

namespace cogs::testing {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string Str(const json::object& o, const std::string& key) {
    auto* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

CloudEndpoints Endpoints(const DevCloud& dev) {
    CloudEndpoints e;
    for (const DevProcess& r : dev.replicas()) {
        e.api_urls.push_back(r.url);
    }
    e.admin_token = dev.admin_token();
    e.network_token = dev.ServiceToken("cogs-network");
    e.volume_token = dev.ServiceToken("cogs-volume");
    for (const DevProcess& p : dev.processes()) {
        if (p.name.starts_with("cogs-compute")) {
            e.agents.push_back({p.name, p.url, dev.ServiceToken(p.name)});
        }
    }
    e.network_url = dev.ServiceUrl("cogs-network");
    e.volume_url = dev.ServiceUrl("cogs-volume");
    return e;
}

bool SendAgain(const Result<ApiReply>& r) {
    return !r || r->status == 429 || r->status >= 500 ||
           (r->status == 409 && r->text.find("is being answered") != std::string::npos);
}

Duration Backoff(const Result<ApiReply>& r, int attempts) {
    if (r && !r->header_retry_after.empty()) {
        return std::chrono::seconds(std::max(1, std::atoi(r->header_retry_after.c_str())));
    }
    return std::min<Duration>(100ms * (1 << std::min(attempts - 1, 5)), 2s);
}

Result<std::string> LeaderId(ApiClient& replica, Duration timeout) {
    auto r = replica.Call("GET", "/v1/replicas", "", {}, timeout);
    if (!r) {
        return MakeError(r.error());
    }
    if (r->status != 200 || !r->body.is_object()) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("GET /v1/replicas: {} {}", r->status, r->text));
    }
    const auto* list = r->body.as_object().if_contains("replicas");
    if (list == nullptr || !list->is_array()) {
        return MakeError(ErrorCode::kUnavailable, "GET /v1/replicas: no list");
    }
    for (const auto& v : list->as_array()) {
        if (v.is_object() && Str(v.as_object(), "role") == "leader") {
            return Str(v.as_object(), "id");
        }
    }
    return std::string();
}

Result<json::array> ServiceLedger(ApiClient& service, Duration timeout) {
    auto r = service.Call("GET", "/v1/ledger", "", {}, timeout);
    if (!r) {
        return MakeError(r.error());
    }
    if (r->status != 200 || !r->body.is_array()) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("GET /v1/ledger: {}", r->status));
    }
    return r->body.as_array();
}

ControlPlaneClient::ControlPlaneClient(const std::vector<std::string>& urls, const std::string& token) {
    for (const std::string& url : urls) {
        clients_.emplace_back(url, token);
    }
    slow_until_.assign(clients_.size(), SteadyTime{});
}

Result<ApiReply> ControlPlaneClient::Call(const std::string& method, const std::string& target,
                                          const std::string& body,
                                          const std::vector<std::pair<std::string, std::string>>& headers,
                                          Duration timeout) {
    Result<ApiReply> r = MakeError(ErrorCode::kUnavailable, "no control-plane URL");
    const size_t n = clients_.size();
    // This call's order: from the current replica on, the slow ones last.
    std::vector<size_t> order;
    const SteadyTime now = SteadyClock::now();
    for (bool slow : {false, true}) {
        for (size_t i = 0; i < n; ++i) {
            const size_t c = (current_ + i) % n;
            if ((now < slow_until_[c]) == slow) {
                order.push_back(c);
            }
        }
    }
    for (size_t c : order) {
        current_ = c;
        r = clients_[c].Call(method, target, body, headers, timeout);
        if (r && r->status != 502 && r->status != 503 && r->status != 504) {
            return r;
        }
        if (!r && r.error().code == ErrorCode::kDeadlineExceeded) {
            slow_until_[c] = SteadyClock::now() + 3s;
        }
        current_ = (c + 1) % n;
    }
    return r;
}

Result<std::vector<json::object>> ListAll(ControlPlaneClient& api, const std::string& path,
                                          const std::string& key) {
    std::vector<json::object> out;
    std::string marker;
    for (;;) {
        std::string target = path + (path.find('?') == std::string::npos ? "?" : "&") + "limit=1000";
        if (!marker.empty()) {
            target += "&marker=" + marker;
        }
        auto r = api.Call("GET", target, "", {}, 5s);
        if (!r) {
            return MakeError(ErrorCode::kUnavailable, fmt::format("GET {}: {}", target, r.error().message));
        }
        if (r->status != 200 || !r->body.is_object() || !r->body.as_object().contains(key)) {
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("GET {}: {} {}", target, r->status, r->text));
        }
        for (const auto& item : r->body.as_object().at(key).as_array()) {
            if (item.is_object()) {
                out.push_back(item.as_object());
            }
        }
        marker = Str(r->body.as_object(), "next_marker");
        if (marker.empty()) {
            return out;
        }
    }
}

namespace {

// POSTs `body` and answers the created object under `kind`; an existing one of that name is reused.
Result<json::object> Ensure(ControlPlaneClient& api, const std::string& plural, const std::string& kind,
                            const json::object& body) {
    auto existing = ListAll(api, "/v1/" + plural + "?name=" + Str(body, "name"), plural);
    if (existing && !existing->empty()) {
        return existing->front();
    }
    auto r = api.Call("POST", "/v1/" + plural, json::serialize(body), {{"idempotency-key", "seed-" + plural}},
                      10s);
    if (!r) {
        return MakeError(r.error());
    }
    if (r->status / 100 != 2 || !r->body.is_object() || !r->body.as_object().contains(kind)) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("POST /v1/{}: {} {}", plural, r->status, r->text));
    }
    return r->body.as_object().at(kind).as_object();
}

Status AwaitActive(ControlPlaneClient& api, const std::string& plural, const std::string& kind,
                   const std::string& id) {
    std::string last;
    const bool ok = WaitUntil(
        [&] {
            auto r = api.Call("GET", "/v1/" + plural + "/" + id, "", {}, 5s);
            if (r && r->status == 200 && r->body.is_object()) {
                last = Str(r->body.as_object().at(kind).as_object(), "status");
            }
            return last == "ACTIVE" || last == "ERROR";
        },
        60s, 50ms);
    if (!ok || last != "ACTIVE") {
        return MakeError(ErrorCode::kUnavailable, fmt::format("{} {} is {}", kind, id, last));
    }
    return {};
}

}  // namespace

Result<Seeded> SeedCloud(ControlPlaneClient& admin) {
    Seeded s;
    auto who = admin.Call("GET", "/v1/whoami", "", {}, 10s);
    if (!who || who->status != 200 || !who->body.is_object()) {
        return MakeError(ErrorCode::kUnavailable, "GET /v1/whoami failed");
    }
    s.project_id = Str(who->body.as_object(), "project_id");
    const json::object unlimited{{"servers", -1},  {"vcpus", -1},     {"ram_mb", -1},
                                 {"volumes", -1},  {"volume_gb", -1}, {"ports", -1},
                                 {"networks", -1}, {"subnets", -1},   {"server_groups", -1}};
    auto q =
        admin.Call("PUT", "/v1/projects/" + s.project_id + "/quotas", json::serialize(unlimited), {}, 10s);
    if (!q || q->status != 200) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("PUT quotas: {}", q ? q->text : q.error().message));
    }
    if (auto f = Ensure(admin, "flavors", "flavor",
                        {{"name", s.flavor}, {"vcpus", 1}, {"ram_mb", 256}, {"disk_gb", 1}});
        !f) {
        return MakeError(f.error());
    }
    if (auto i = Ensure(admin, "images", "image", {{"name", s.image}, {"os", "linux"}}); !i) {
        return MakeError(i.error());
    }
    auto net = Ensure(admin, "networks", "network", {{"name", "chaos-net"}});
    if (!net) {
        return MakeError(net.error());
    }
    s.network_id = Str(*net, "id");
    if (auto st = AwaitActive(admin, "networks", "network", s.network_id); !st) {
        return MakeError(st.error());
    }
    auto subnet = Ensure(admin, "subnets", "subnet",
                         {{"name", "chaos-subnet"}, {"network_id", s.network_id}, {"cidr", "10.32.0.0/16"}});
    if (!subnet) {
        return MakeError(subnet.error());
    }
    if (auto st = AwaitActive(admin, "subnets", "subnet", Str(*subnet, "id")); !st) {
        return MakeError(st.error());
    }
    return s;
}

Result<std::map<std::string, InstanceView>> ComputeInventory(ApiClient& agent, Duration timeout) {
    auto r = agent.Call("GET", "/v1/inventory", "", {}, timeout);
    if (!r) {
        return MakeError(r.error());
    }
    if (r->status != 200 || !r->body.is_object()) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("GET /v1/inventory: {}", r->status));
    }
    std::map<std::string, InstanceView> out;
    for (const auto& i : r->body.as_object().at("instances").as_array()) {
        const auto& o = i.as_object();
        out[Str(o, "id")] = InstanceView{Str(o, "host"), Str(o, "state")};
    }
    return out;
}

bool InstanceRunning(const std::string& state) {
    return state == "BUILD" || state == "REBOOT" || state == "ACTIVE";
}

bool Transitional(const std::string& status) {
    static const char* kTransitional[] = {"BUILD",    "DELETING",  "STARTING",  "STOPPING",
                                          "REBOOT",   "REBUILD",   "MIGRATING", "creating",
                                          "deleting", "attaching", "detaching"};
    return std::any_of(std::begin(kTransitional), std::end(kTransitional),
                       [&](const char* s) { return status == s; });
}

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

std::string JsonNumber(std::optional<double> v) {
    return v && !std::isnan(*v) ? fmt::format("{:.3f}", *v) : "null";
}

double Percentile(std::vector<double> values, double p) {
    if (values.empty()) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    std::sort(values.begin(), values.end());
    const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
    return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

}  // namespace cogs::testing
