#include "cogs/cloud/api/routes.h"

#include <boost/json/parse.hpp>

#include "cogs/cloud/resources/audit.h"
#include "cogs/cloud/resources/catalog.h"
#include "cogs/cloud/resources/consoles.h"
#include "cogs/cloud/resources/events.h"
#include "cogs/cloud/resources/hosts.h"
#include "cogs/cloud/resources/idempotency.h"
#include "cogs/cloud/resources/images.h"
#include "cogs/cloud/resources/kinds.h"
#include "cogs/cloud/resources/networks.h"
#include "cogs/cloud/resources/reads.h"
#include "cogs/cloud/resources/servers.h"
#include "cogs/cloud/resources/volumes.h"
#include "cogs/cloud/resources/workflows.h"

namespace cogs::cloud {
namespace {

// GET /v1/replicas (admin): every replica of the control plane, the leader marked (docs/ha.md).
void ListReplicas(Context& ctx, Call c) {
    if (auto st = RequireAdmin(c.who); !st) return c.Fail(st.error());
    auto answer = [c](const std::vector<store::ReplicaInfo>& replicas) {
        json::array list;
        for (const auto& r : replicas) {
            list.push_back(json::object{{"id", r.id},
                                        {"role", r.leader ? "leader" : "follower"},
                                        {"address", r.address},
                                        {"version", r.version},
                                        {"started_at_ms", r.started_ms},
                                        {"last_seen_ms", r.seen_ms},
                                        {"lease_age_ms", r.age_ms}});
        }
        c.Answer(wire::Json(200, json::object{{"replicas", std::move(list)}}));
    };
    if (!ctx.options.replicas) {
        const int64_t now = ctx.clock.WallMs();
        return answer({store::ReplicaInfo{"cogsd", "", ctx.options.version, true, 0, now, 0}});
    }
    ctx.OffThread([f = ctx.options.replicas] { return f(); },
                  [c, answer](Result<std::vector<store::ReplicaInfo>> r) {
                      if (!r) return c.Fail(r.error());
                      answer(*r);
                  });
}

// GET /v1/extensions and POST /v1/extensions/reload (admin): what the configuration directory adds.
void Extensions(Context& ctx, Call c, bool reload) {
    if (auto st = RequireAdmin(c.who); !st) return c.Fail(st.error());
    const auto& ext = ctx.options.extensions;
    if (!ext.describe || !ext.reload) {
        return c.Fail(Error(ErrorCode::kNotFound, "this control plane has no configuration directory"));
    }
    Result<std::string> text = reload ? ext.reload() : ext.describe();
    if (!text) return c.Fail(text.error());
    boost::system::error_code ec;
    json::value v = json::parse(*text, ec);
    if (ec) return c.Fail(Error(ErrorCode::kInternal, "extensions: not JSON: " + ec.message()));
    c.Answer(wire::Json(200, std::move(v)));
}

}  // namespace

std::vector<Route> ApiRoutes(RouteTargets t) {
    // A create: admission (role) first, then the kind's own.
    auto create = [](auto method, auto& module) {
        return [method, m = &module](Call c) {
            if (auto admitted = AdmitCreate(std::move(c))) (m->*method)(std::move(*admitted));
        };
    };
    auto list = [&t](std::string_view collection, std::string_view kind) {
        return [&reads = t.reads, collection, kind](Call c) { reads.List(std::move(c), collection, kind); };
    };
    auto show = [&t](std::string_view kind) {
        return [&reads = t.reads, kind](Call c) { reads.Show(std::move(c), kind); };
    };
    auto events = [&t](std::string_view kind) {
        return [&history = t.history, kind](Call c) { history.List(std::move(c), kind); };
    };
    // POST /v1/<collection>/{id}/<anything else>: the resource must exist for the caller, then no
    // such action (404).
    auto no_action = [&t](std::string_view kind) {
        return [&ctx = t.ctx, kind](Call c) {
            if (auto st = RequireWriter(c.who); !st) return c.Fail(st.error());
            if (kind == kToken || kind == kUser) {  // admin-only routes: 403 whether it exists or not
                if (auto st = RequireAdmin(c.who); !st) return c.Fail(st.error());
            }
            const Res* r = ctx.model.Find(kind, c.Param("id"));
            if (r == nullptr || !Visible(c.who, *r)) return c.Fail(NotFound(kind, c.Param("id")));
            c.Fail(Error(ErrorCode::kNotFound, "no route " + c.method + " " + c.path));
        };
    };
    Catalog& catalog = t.catalog;
    Networks& networks = t.networks;
    Volumes& volumes = t.volumes;
    Servers& servers = t.servers;
    Hosts& hosts = t.hosts;
    Workflows& workflows = t.workflows;
    auto catalog_delete = [&catalog](std::string_view kind) {
        return [&catalog, kind](Call c) { catalog.Delete(std::move(c), kind); };
    };
    auto net_delete = [&networks](std::string_view kind) {
        return [&networks, kind](Call c) { networks.Delete(std::move(c), kind); };
    };
    auto server_act = [&servers](std::string_view action) {
        return [&servers, action](Call c) { servers.Act(std::move(c), action); };
    };

    std::vector<Route> routes = {
        {"GET", "/v1/whoami", [&reads = t.reads](Call c) { reads.Whoami(std::move(c)); }},
        {"GET", "/v1/replicas", [&ctx = t.ctx](Call c) { ListReplicas(ctx, std::move(c)); }},
        {"GET", "/v1/extensions", [&ctx = t.ctx](Call c) { Extensions(ctx, std::move(c), false); }},
        {"POST", "/v1/extensions/reload", [&ctx = t.ctx](Call c) { Extensions(ctx, std::move(c), true); }},

        {"GET", "/v1/projects", list("projects", kProject)},
        {"POST", "/v1/projects", create(&Catalog::CreateProject, catalog)},
        {"GET", "/v1/projects/{id}", show(kProject)},
        {"DELETE", "/v1/projects/{id}", catalog_delete(kProject)},
        {"GET", "/v1/projects/{id}/quotas", [&catalog](Call c) { catalog.GetQuotas(std::move(c)); }},
        {"PUT", "/v1/projects/{id}/quotas", [&catalog](Call c) { catalog.SetQuotas(std::move(c)); }},
        {"POST", "/v1/projects/{id}/{action}", no_action(kProject)},

        {"GET", "/v1/tokens", list("tokens", kToken)},
        {"POST", "/v1/tokens", create(&Catalog::CreateToken, catalog)},
        {"GET", "/v1/tokens/{id}", show(kToken)},
        {"DELETE", "/v1/tokens/{id}", catalog_delete(kToken)},
        {"POST", "/v1/tokens/{id}/rotate", [&catalog](Call c) { catalog.Rotate(std::move(c)); }},
        {"POST", "/v1/tokens/{id}/{action}", no_action(kToken)},

        {"GET", "/v1/users", list("users", kUser)},
        {"POST", "/v1/users", create(&Catalog::CreateUser, catalog)},
        {"GET", "/v1/users/{id}", show(kUser)},
        {"DELETE", "/v1/users/{id}", catalog_delete(kUser)},
        {"POST", "/v1/users/{id}/{action}", no_action(kUser)},

        {"GET", "/v1/flavors", list("flavors", kFlavor)},
        {"POST", "/v1/flavors", create(&Catalog::CreateFlavor, catalog)},
        {"GET", "/v1/flavors/{id}", show(kFlavor)},
        {"DELETE", "/v1/flavors/{id}", catalog_delete(kFlavor)},
        {"POST", "/v1/flavors/{id}/{action}", no_action(kFlavor)},

        {"GET", "/v1/images", list("images", kImage)},
        {"POST", "/v1/images", create(&Catalog::CreateImage, catalog)},
        {"GET", "/v1/images/{id}", show(kImage)},
        {"DELETE", "/v1/images/{id}",
         [&images = t.images, erase = catalog_delete(kImage)](Call c) {
             images.Delete(std::move(c), erase);
         }},
        {"PUT", "/v1/images/{id}/file", [&images = t.images](Call c) { images.Upload(std::move(c)); }},
        {"GET", "/v1/images/{id}/file", [&images = t.images](Call c) { images.Download(std::move(c)); }},
        {"POST", "/v1/images/{id}/{action}", no_action(kImage)},

        {"GET", "/v1/server-groups", list("server-groups", kGroup)},
        {"POST", "/v1/server-groups", create(&Catalog::CreateGroup, catalog)},
        {"GET", "/v1/server-groups/{id}", show(kGroup)},
        {"DELETE", "/v1/server-groups/{id}", catalog_delete(kGroup)},
        {"POST", "/v1/server-groups/{id}/{action}", no_action(kGroup)},

        {"GET", "/v1/keypairs", list("keypairs", kKeypair)},
        {"POST", "/v1/keypairs", create(&Catalog::CreateKeypair, catalog)},
        {"GET", "/v1/keypairs/{id}", show(kKeypair)},
        {"DELETE", "/v1/keypairs/{id}", catalog_delete(kKeypair)},
        {"POST", "/v1/keypairs/{id}/{action}", no_action(kKeypair)},

        {"GET", "/v1/networks", list("networks", kNetwork)},
        {"POST", "/v1/networks", create(&Networks::CreateNetwork, networks)},
        {"GET", "/v1/networks/{id}", show(kNetwork)},
        {"DELETE", "/v1/networks/{id}", net_delete(kNetwork)},
        {"GET", "/v1/networks/{id}/events", events(kNetwork)},
        {"POST", "/v1/networks/{id}/{action}", no_action(kNetwork)},

        {"GET", "/v1/subnets", list("subnets", kSubnet)},
        {"POST", "/v1/subnets", create(&Networks::CreateSubnet, networks)},
        {"GET", "/v1/subnets/{id}", show(kSubnet)},
        {"DELETE", "/v1/subnets/{id}", net_delete(kSubnet)},
        {"GET", "/v1/subnets/{id}/events", events(kSubnet)},
        {"POST", "/v1/subnets/{id}/{action}", no_action(kSubnet)},

        {"GET", "/v1/ports", list("ports", kPort)},
        {"POST", "/v1/ports", create(&Networks::CreatePort, networks)},
        {"GET", "/v1/ports/{id}", show(kPort)},
        {"DELETE", "/v1/ports/{id}", net_delete(kPort)},
        {"GET", "/v1/ports/{id}/events", events(kPort)},
        {"POST", "/v1/ports/{id}/{action}", no_action(kPort)},

        {"GET", "/v1/volumes", list("volumes", kVolume)},
        {"POST", "/v1/volumes", create(&Volumes::Create, volumes)},
        {"GET", "/v1/volumes/{id}", show(kVolume)},
        {"DELETE", "/v1/volumes/{id}", [&volumes](Call c) { volumes.Delete(std::move(c)); }},
        {"GET", "/v1/volumes/{id}/events", events(kVolume)},
        {"POST", "/v1/volumes/{id}/attach", [&volumes](Call c) { volumes.Attach(std::move(c)); }},
        {"POST", "/v1/volumes/{id}/detach", [&volumes](Call c) { volumes.Detach(std::move(c)); }},
        {"POST", "/v1/volumes/{id}/{action}", no_action(kVolume)},

        {"GET", "/v1/servers", list("servers", kServer)},
        {"POST", "/v1/servers", create(&Servers::Create, servers)},
        {"GET", "/v1/servers/{id}", show(kServer)},
        {"DELETE", "/v1/servers/{id}", [&servers](Call c) { servers.Delete(std::move(c)); }},
        {"GET", "/v1/servers/{id}/events", events(kServer)},
        {"GET", "/v1/servers/{id}/console",
         [&consoles = t.consoles](Call c) { consoles.Show(std::move(c)); }},
        {"POST", "/v1/servers/{id}/start", server_act("start")},
        {"POST", "/v1/servers/{id}/stop", server_act("stop")},
        {"POST", "/v1/servers/{id}/reboot", server_act("reboot")},
        {"POST", "/v1/servers/{id}/{action}", no_action(kServer)},

        {"GET", "/v1/hosts", [&hosts](Call c) { hosts.List(std::move(c)); }},
        {"GET", "/v1/hosts/{name}", [&hosts](Call c) { hosts.Show(std::move(c)); }},
        {"PUT", "/v1/hosts/{name}", [&hosts](Call c) { hosts.Register(std::move(c)); }},
        {"DELETE", "/v1/hosts/{name}", [&hosts](Call c) { hosts.Delete(std::move(c)); }},
        {"GET", "/v1/hosts/{name}/events", events(kHost)},
        {"POST", "/v1/hosts/{name}/heartbeat", [&hosts](Call c) { hosts.Heartbeat(std::move(c)); }},
        {"POST", "/v1/heartbeats", [&hosts](Call c) { hosts.Heartbeats(std::move(c)); }},
        {"POST", "/v1/hosts/{name}/enroll", [&hosts](Call c) { hosts.Enroll(std::move(c)); }},
        {"POST", "/v1/hosts/{name}/drain", [&hosts](Call c) { hosts.Drain(std::move(c)); }},
        {"POST", "/v1/hosts/{name}/enable", [&hosts](Call c) { hosts.Enable(std::move(c), true); }},
        {"POST", "/v1/hosts/{name}/disable", [&hosts](Call c) { hosts.Enable(std::move(c), false); }},

        {"GET", "/v1/events", events("")},
        {"GET", "/v1/audit", [&audit = t.audit](Call c) { audit.List(std::move(c)); }},

        {"GET", "/v1/workflows", [&workflows](Call c) { workflows.List(std::move(c)); }},
        {"GET", "/v1/workflows/{id}", [&workflows](Call c) { workflows.Show(std::move(c)); }},
        {"POST", "/v1/workflows/{id}/cancel", [&workflows](Call c) { workflows.Cancel(std::move(c)); }},
        {"POST", "/v1/workflows/{id}/retry", [&workflows](Call c) { workflows.Retry(std::move(c)); }},

        // The kinds declared in configuration (resources/kinds.h): the least specific patterns, so
        // every path above wins; a collection that is no declared kind answers 404 "no route".
        {"GET", "/v1/{collection}", [&kinds = t.kinds](Call c) { kinds.List(std::move(c)); }},
        {"POST", "/v1/{collection}", [&kinds = t.kinds](Call c) { kinds.Create(std::move(c)); }},
        {"GET", "/v1/{collection}/{id}", [&kinds = t.kinds](Call c) { kinds.Show(std::move(c)); }},
        {"DELETE", "/v1/{collection}/{id}", [&kinds = t.kinds](Call c) { kinds.Delete(std::move(c)); }},
        {"GET", "/v1/{collection}/{id}/events", [&kinds = t.kinds](Call c) { kinds.Events(std::move(c)); }},
    };
    // Every POST, create or action, honours an Idempotency-Key. A user's password stays out of the
    // key's record (IdempotencyKeys::Admit).
    static constexpr std::string_view kPassword[] = {"password"};
    for (Route& r : routes) {
        if (r.method == "POST") {
            const std::span<const std::string_view> unhashed =
                r.pattern == "/v1/users" ? std::span<const std::string_view>(kPassword)
                                         : std::span<const std::string_view>();
            r.handler = [&keys = t.keys, handler = std::move(r.handler), unhashed](Call c) {
                keys.Admit(std::move(c), handler, unhashed);
            };
        }
    }
    return routes;
}

}  // namespace cogs::cloud
