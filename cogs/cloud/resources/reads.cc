#include "cogs/cloud/resources/reads.h"

#include <algorithm>
#include <set>

namespace cogs::cloud {

void Reads::Whoami(Call call) const {
    json::object who{{"project_id", call.who.project_id},
                     {"project_name", call.who.project_name},
                     {"role", RoleName(call.who.role)},
                     {"token_id", call.who.token_id}};
    if (call.who.role == Role::kHost) who["host"] = call.who.host;
    call.Answer(wire::Json(200, std::move(who)));
}

void Reads::Show(Call call, std::string_view kind) const {
    const std::string& id = call.Param("id");
    if (kind == kToken || kind == kUser) {
        // Admin-only whether it exists or not: 403, like every admin-only route.
        if (auto st = RequireAdmin(call.who); !st) return call.Fail(st.error());
    }
    const Res* r = ctx_.model.Find(kind, id);
    if (r == nullptr && (kind == kFlavor || kind == kImage)) {
        r = ctx_.model.FindByName(kind, id);
    } else if (r == nullptr && kind == kKeypair) {
        r = ctx_.model.FindByName(kind, id, call.who.project_id);  // names are unique in a project
    }
    if (r == nullptr || !Visible(call.who, *r)) {
        return call.Fail(NotFound(kind, id));
    }
    call.Answer(Presented(200, *r));
}

void Reads::List(Call call, std::string_view collection, std::string_view kind) const {
    if (kind == kToken || kind == kUser) {
        if (auto st = RequireAdmin(call.who); !st) return call.Fail(st.error());
    }
    int64_t limit = 100;
    if (auto q = call.query.find("limit"); q != call.query.end()) {
        auto n = IntParam("limit", q->second, 1, 1000, "must be an integer from 1 to 1000");
        if (!n) return call.Fail(n.error());
        limit = *n;
    }
    static const std::set<std::string> kFilters = {"limit",      "marker",    "name",
                                                   "status",     "host",      "project_id",
                                                   "network_id", "server_id", "reservation_id"};
    for (const auto& [k, v] : call.query) {
        if (!kFilters.contains(k)) {
            return call.Fail(FieldError(k, "unknown query parameter"));
        }
    }
    const std::string marker = call.Query("marker"), name = call.Query("name"), status = call.Query("status"),
                      host = call.Query("host"), project = call.Query("project_id"),
                      network = call.Query("network_id"), server = call.Query("server_id"),
                      reservation = call.Query("reservation_id");
    json::array items;
    std::string next;
    // false once the page is full.
    auto take = [&](const Res& r) {
        if (!Visible(call.who, r)) return true;
        if (!name.empty() && Str(r.body, "name") != name) return true;
        if (!status.empty() && Str(r.body, "status") != status) return true;
        if (!host.empty() && Str(r.body, "host") != host) return true;
        if (!project.empty() && r.project != project && !(kind == kProject && r.id == project)) return true;
        if (!network.empty() && Str(r.body, "network_id") != network) return true;
        if (!reservation.empty() && Str(r.body, "reservation_id") != reservation) return true;
        if (!server.empty() && Str(r.body, "server_id") != server && Str(r.body, "device_id") != server) {
            return true;
        }
        if (static_cast<int64_t>(items.size()) == limit) {
            next = items.back().as_object().at("id").as_string().c_str();
            return false;
        }
        items.push_back(Present(r));
        return true;
    };
    if (const Model::Ids* ids =
            Candidates(call.who, kind, project,
                       {{"network_id", network}, {"host", host}, {"status", status}, {"name", name}})) {
        for (auto it = marker.empty() ? ids->begin() : ids->upper_bound(marker);
             it != ids->end() && take(**it); ++it) {
        }
    } else {
        const auto& all = ctx_.model.All(kind);
        for (auto it = marker.empty() ? all.begin() : all.upper_bound(marker);
             it != all.end() && take(it->second); ++it) {
        }
    }
    std::string key(collection);
    std::replace(key.begin(), key.end(), '-', '_');
    json::object o;
    o[key] = std::move(items);
    if (!next.empty()) {
        o["next_marker"] = next;
    }
    call.Answer(wire::Json(200, o));
}

// The smallest index that holds every record the list may show: the caller's project (a tenant
// sees no other; flavors and images are everyone's), the project named (a project is its own), or
// the records a filter names by an indexed field. nullptr: none applies, the whole kind.
const Model::Ids* Reads::Candidates(const Principal& who, std::string_view kind, std::string_view project,
                                    std::initializer_list<Filter> filters) const {
    const Model::Ids* best = nullptr;
    auto consider = [&best](const Model::Ids& ids) {
        if (best == nullptr || ids.size() < best->size()) best = &ids;
    };
    if (!who.admin() && kind != kFlavor && kind != kImage) {
        consider(ctx_.model.OfProject(kind, who.project_id));
    }
    if (!project.empty()) consider(ctx_.model.OfProject(kind, project));
    for (const auto& [field, value] : filters) {
        if (!value.empty() && Model::Indexed(kind, field)) consider(ctx_.model.Having(kind, field, value));
    }
    return best;
}

}  // namespace cogs::cloud
