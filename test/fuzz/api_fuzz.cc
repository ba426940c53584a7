// API request bodies, per route, through the control plane as cogsd runs it in process (the store on
// a temporary directory, the real engine with the shipped workflows, the simulated services, the API
// through Cloud::Handler(): what cloud_test_fixture.h runs, without GoogleTest).
//
// Input: byte 0 picks the route (kRoutes), byte 1 the caller (bit 0: the admin, else a member of
// project "fuzz") and whether the request carries an Idempotency-Key (bit 1, the key "k" + the
// byte); the rest is the body, where "@net", "@vol", "@srv" and "@proj" become the ids of an ACTIVE
// network, an available volume, an ACTIVE server and the project "fuzz", so that the seeds pass
// the existence checks and reach every field's rule.
//
// The setup makes those resources with the engine running, then restarts the control plane with an
// engine that starts no workflow (max_inflight 0): every route validates its body as it always does,
// writes what needs no workflow (projects, tokens, flavors, quotas, hosts, ...) and is refused where
// a workflow would start, so that runs stay fast and no work piles up.
//
// What must hold: every answer is one of the API's, never a 5xx but the documented 503 and 507 (and
// the face's 501 for a server action cogs does not implement); an
// error answer has the documented shape {code, message, ...} — on the OpenStack face's paths, its
// service's: one key whose object has a message; every request is answered.
#include <stdlib.h>

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/check.h"
#include "cogs/base/paths.h"
#include "cogs/cloud/cloud.h"
#include "cogs/observe/log.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/store/store.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"

namespace {

using namespace cogs;
namespace json = boost::json;

struct Route {
    const char* method;
    std::string_view path;
};
constexpr Route kRoutes[] = {
    {"POST", "/v1/projects"},
    {"PUT", "/v1/projects/@proj/quotas"},
    {"POST", "/v1/tokens"},
    {"POST", "/v1/flavors"},
    {"POST", "/v1/images"},
    {"POST", "/v1/server-groups"},
    {"POST", "/v1/networks"},
    {"POST", "/v1/subnets"},
    {"POST", "/v1/ports"},
    {"POST", "/v1/volumes"},
    {"POST", "/v1/volumes/@vol/attach"},
    {"POST", "/v1/volumes/@vol/detach"},
    {"POST", "/v1/servers"},
    {"POST", "/v1/servers/@srv/start"},
    {"POST", "/v1/servers/@srv/stop"},
    {"POST", "/v1/servers/@srv/reboot"},
    {"PUT", "/v1/hosts/h1"},
    {"POST", "/v1/hosts/h1/heartbeat"},
    {"POST", "/v1/hosts/h1/drain"},
    {"POST", "/v1/hosts/h1/disable"},
    {"POST", "/v1/hosts/h1/enable"},
    // The OpenStack face (cogs/cloud/openstack): the same rules behind a translation.
    {"POST", "/compute/v2.1/servers"},                             // 21
    {"POST", "/compute/v2.1/servers/@srv/action"},                 // 22
    {"POST", "/compute/v2.1/servers/@srv/os-volume_attachments"},  // 23
    {"POST", "/compute/v2.1/os-server-groups"},                    // 24
    {"POST", "/network/v2.0/networks"},                            // 25
    {"POST", "/network/v2.0/subnets"},                             // 26
    {"POST", "/network/v2.0/ports"},                               // 27
    {"POST", "/volume/v3/@proj/volumes"},                          // 28
    {"POST", "/image/v2/images"},                                  // 29
    {"POST", "/v3/auth/tokens"},                                   // 30
};

std::string Replace(std::string s, const std::map<std::string, std::string>& names) {
    for (const auto& [from, to] : names) {
        for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
            s.replace(at, from.size(), to);
        }
    }
    return s;
}

[[noreturn]] void Fail(const char* what, const http::Request& req, const http::Response& got) {
    std::fprintf(stderr, "api fuzz: %s\n%s %s\n%s\n-> %d %s\n", what, req.method.c_str(), req.target.c_str(),
                 req.body.c_str(), got.status, got.body.c_str());
    std::abort();
}

// The control plane in process, as cloud_test_fixture.h opens it.
class ControlPlane {
public:
    explicit ControlPlane(const std::string& dir, size_t max_inflight) {
        io_ = std::make_unique<boost::asio::io_context>(1);
        store::SqliteOptions so;
        so.path = dir + "/cogsd.db";
        so.synchronous_full = false;  // a fuzzer's store needs no power-cut safety
        store_ = Must(store::OpenSqliteStore(so));
        registry_ = std::make_unique<workflow::Registry>(store_.get());
        COGS_CHECK(registry_->LoadFromStore().has_value());
        auto defs = Must(workflow::LoadDefinitionsFromDirectory(base::FindProjectPath("workflows/cloud")));
        COGS_CHECK(registry_->RegisterAll(std::move(defs)).has_value());
        for (const char* name : {"network", "volume", "compute"}) {
            sims_[name] = std::make_unique<services::sim::SimService>(*io_, services::sim::SimOptions{});
            catalog_.Add(name, services::sim::MakeSimClient(*sims_[name], name));
        }
        workflow::EngineOptions eo;
        eo.owner = "fuzz";
        eo.max_inflight = max_inflight;
        engine_ = std::make_unique<workflow::Engine>(*io_, *store_, *registry_, catalog_, eo);
        cloud::CloudOptions co;
        co.clock = &clock_;
        co.restart_grace = std::chrono::seconds(0);
        co.reconcile_every = std::chrono::hours(1000);
        cloud_ = std::make_unique<cloud::Cloud>(*io_, *store_, *engine_, *registry_, co);
        catalog_.Add("scheduler", cloud_->SchedulerService());
        COGS_CHECK(engine_->Recover().has_value());
        COGS_CHECK(cloud_->Load().has_value());
        admin_ = Must(cloud_->Bootstrap());
        cloud_->Start();
        handler_ = cloud_->Handler();
    }
    ~ControlPlane() {
        cloud_->Stop();
        engine_->Shutdown();
        store_->Flush();
    }

    // The first start's admin token ("" at a restart).
    const std::string& admin() const { return admin_; }

    http::Response Call(const http::Request& req) {
        std::optional<http::Response> got;
        handler_(req, [&got](http::Response r) { got = std::move(r); });
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!got && std::chrono::steady_clock::now() < give_up) {
            io_->restart();
            io_->run_one_for(std::chrono::milliseconds(50));
        }
        if (!got) Fail("no answer", req, http::Response{});
        return *got;
    }
    // Lets the engine and the services work for `d` of real time (setup only).
    void Idle(std::chrono::milliseconds d) {
        io_->restart();
        io_->run_for(d);
    }

private:
    template <typename T>
    static T Must(Result<T> r) {
        if (!r) {
            std::fprintf(stderr, "api fuzz setup: %s\n", r.error().ToString().c_str());
            std::abort();
        }
        return std::move(*r);
    }

    runtime::FakeClock clock_;
    std::unique_ptr<boost::asio::io_context> io_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<workflow::Registry> registry_;
    std::map<std::string, std::unique_ptr<services::sim::SimService>> sims_;
    workflow::ServiceCatalog catalog_;
    std::unique_ptr<workflow::Engine> engine_;
    std::unique_ptr<cloud::Cloud> cloud_;
    http::Handler handler_;
    std::string admin_;
};

http::Request Request(const std::string& token, const std::string& method, const std::string& target,
                      const std::string& body) {
    http::Request req;
    req.method = method;
    req.target = target;
    req.body = body;
    req.headers.emplace_back("authorization", "Bearer " + token);
    return req;
}

struct World {
    std::string dir;
    std::unique_ptr<ControlPlane> plane;
    std::string admin, member;
    std::map<std::string, std::string> names;  // "@net" -> the network's id, ...
};

// A setup call that must answer `status`; the field `field` of its `kind`.
std::string Setup(ControlPlane& plane, const std::string& token, const std::string& method,
                  const std::string& target, const std::string& body, int status, const std::string& kind,
                  const std::string& field = "id") {
    const http::Request req = Request(token, method, target, body);
    const http::Response got = plane.Call(req);
    if (got.status != status) Fail("setup call refused", req, got);
    boost::system::error_code ec;
    json::value v = json::parse(got.body, ec);
    const json::value* f = nullptr;
    if (!ec && v.is_object() && v.as_object().contains(kind) && v.as_object().at(kind).is_object()) {
        f = v.as_object().at(kind).as_object().if_contains(field);
    }
    return f != nullptr && f->is_string() ? std::string(f->as_string()) : "";
}

// Polls `target` until its `kind` has `status` (the engine runs the workflow meanwhile).
void AwaitStatus(ControlPlane& plane, const std::string& token, const std::string& target,
                 const std::string& kind, const std::string& status) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < give_up) {
        if (Setup(plane, token, "GET", target, "", 200, kind, "status") == status) return;
        plane.Idle(std::chrono::milliseconds(5));
    }
    Fail("setup: never reached its status", Request(token, "GET", target, ""), http::Response{});
}

World& TheWorld() {
    static World* world = [] {
        auto* w = new World();  // lives as long as the process: libFuzzer exits with it
        const std::filesystem::path base =
            std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
        std::string tmpl = (base / "cogs-fuzz-api-XXXXXX").string();
        COGS_CHECK(::mkdtemp(tmpl.data()) != nullptr);
        w->dir = tmpl;
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(TheWorld().dir, ec);
        });
        {
            ControlPlane setup(w->dir, 1000);
            w->admin = setup.admin();
            const std::string a = w->admin;
            Setup(setup, a, "POST", "/v1/flavors", R"({"name":"small","vcpus":2,"ram_mb":2048,"disk_gb":10})",
                  201, "flavor");
            Setup(setup, a, "POST", "/v1/images", R"({"name":"debian"})", 201, "image");
            Setup(setup, a, "PUT", "/v1/hosts/h1",
                  R"({"url":"http://127.0.0.1:1","vcpus":8,"ram_mb":16384,)"
                  R"("disk_gb":100})",
                  200, "host", "name");
            const std::string proj =
                Setup(setup, a, "POST", "/v1/projects", R"({"name":"fuzz"})", 201, "project");
            w->member = Setup(setup, a, "POST", "/v1/tokens",
                              R"({"project_id":")" + proj + R"(","role":"member"})", 201, "token", "secret");
            const std::string m = w->member;
            const std::string net =
                Setup(setup, m, "POST", "/v1/networks", R"({"name":"net"})", 202, "network");
            AwaitStatus(setup, m, "/v1/networks/" + net, "network", "ACTIVE");
            const std::string vol =
                Setup(setup, m, "POST", "/v1/volumes", R"({"name":"vol","size_gb":1})", 202, "volume");
            AwaitStatus(setup, m, "/v1/volumes/" + vol, "volume", "available");
            const std::string srv =
                Setup(setup, m, "POST", "/v1/servers",
                      R"({"name":"srv","flavor":"small","image":"debian","network_id":")" + net + R"("})",
                      202, "server");
            AwaitStatus(setup, m, "/v1/servers/" + srv, "server", "ACTIVE");
            w->names = {{"@net", net}, {"@vol", vol}, {"@srv", srv}, {"@proj", proj}};
        }
        w->plane = std::make_unique<ControlPlane>(w->dir, 0);
        return w;
    }();
    return *world;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // A refused workflow logs a line; a million of them is noise.
    (void)observe::SetLevel("*", "off");
    spdlog::set_level(spdlog::level::off);
    (void)TheWorld();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) {
        return 0;
    }
    World& w = TheWorld();
    const Route& route = kRoutes[data[0] % std::size(kRoutes)];
    const bool admin = (data[1] & 1) != 0;
    http::Request req =
        Request(admin ? w.admin : w.member, route.method, Replace(std::string(route.path), w.names),
                Replace(std::string(reinterpret_cast<const char*>(data + 2), size - 2), w.names));
    if ((data[1] & 2) != 0) {
        req.headers.emplace_back("idempotency-key", "k" + std::to_string(data[1]));
    }
    const http::Response got = w.plane->Call(req);

    // 501: the OpenStack face's documented answer to a server action cogs does not implement.
    const bool face = !route.path.starts_with("/v1/");
    if (got.status >= 500 && got.status != 503 && got.status != 507 && !(face && got.status == 501)) {
        Fail("a 5xx answer", req, got);
    }
    if (got.status < 200 || got.status > 599) Fail("not an HTTP status", req, got);
    boost::system::error_code ec;
    const json::value body = json::parse(got.body, ec);
    if (ec || !body.is_object()) Fail("not a JSON object", req, got);
    if (got.status >= 400 && face) {
        // {"itemNotFound": {"code", "message"}}, {"NeutronError": {...}}, {"error": {...}}.
        const json::object& o = body.as_object();
        const json::value* inner = o.size() == 1 ? &o.begin()->value() : nullptr;
        if (inner == nullptr || !inner->is_object() || !inner->as_object().contains("message")) {
            Fail("a face's error without its service's shape", req, got);
        }
    } else if (got.status >= 400) {
        const json::object& o = body.as_object();
        const json::value* code = o.if_contains("code");
        const json::value* message = o.if_contains("message");
        if (code == nullptr || !code->is_string() || message == nullptr || !message->is_string()) {
            Fail("an error without the documented shape", req, got);
        }
    }
    return 0;
}
