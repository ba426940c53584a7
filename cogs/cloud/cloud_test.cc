// The control plane in one process: a store in a temp dir, the real engine with the shipped
// workflows, the simulated services in process (network, volume, compute), and the API driven
// through Cloud::Handler() as an HTTP server would. The cloud's time is a FakeClock: leases and
// their deadlines move only when a test says so.
//
// What a user would check: the HTTP status and the error body's field, the resources as the API
// lists them afterwards (nothing written by a refused request), the quota in use, the events.
#include "cogs/cloud/cloud.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include "cogs/base/paths.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/store/store.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/engine.h"
#include "cogs/workflow/registry.h"

namespace cogs::cloud {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

struct Reply {
    int status = 0;
    json::object body;
    http::Response raw;
    std::string Str(std::string_view key) const {
        const json::value* v = body.if_contains(key);
        return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
    }
    // {"<kind>": {...}}[field]
    std::string Field(std::string_view kind, std::string_view field) const {
        const json::value* o = body.if_contains(kind);
        if (o == nullptr || !o->is_object()) return "";
        const json::value* v = o->get_object().if_contains(field);
        return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
    }
    std::string ErrorField() const {
        const json::value* d = body.if_contains("details");
        if (d == nullptr || !d->is_object()) return "";
        const json::value* f = d->get_object().if_contains("field");
        return f != nullptr && f->is_string() ? std::string(f->get_string()) : "";
    }
};

class CloudTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("cogs_cloud_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        Open();
    }

    void TearDown() override {
        Close();
        std::filesystem::remove_all(dir_);
    }

    // Builds the whole control plane on the store in dir_ (again after Close: a restart).
    void Open() {
        io_ = std::make_unique<boost::asio::io_context>(1);
        store::SqliteOptions so;
        so.path = (dir_ / "cogsd.db").string();
        auto st = store::OpenSqliteStore(so);
        ASSERT_TRUE(st) << st.error().ToString();
        store_ = std::move(*st);
        registry_ = std::make_unique<workflow::Registry>(store_.get());
        ASSERT_TRUE(registry_->LoadFromStore());
        auto defs = workflow::LoadDefinitionsFromDirectory(base::FindProjectPath("workflows/cloud"));
        ASSERT_TRUE(defs) << defs.error().ToString();
        ASSERT_TRUE(registry_->RegisterAll(std::move(*defs)));
        for (const char* name : {"network", "volume", "compute"}) {
            sims_[name] = std::make_unique<services::sim::SimService>(*io_, services::sim::SimOptions{});
            catalog_.Add(name, services::sim::MakeSimClient(*sims_[name], name));
        }
        workflow::EngineOptions eo;
        eo.owner = "cloud_test";
        engine_ = std::make_unique<workflow::Engine>(*io_, *store_, *registry_, catalog_, eo);
        CloudOptions co;
        co.clock = &clock_;
        co.lease_ttl = 3s;
        co.fence_window = 1s;
        co.restart_grace = 0s;
        co.reconcile_every = std::chrono::hours(1);  // no periodic pass unless a test asks
        cloud_ = std::make_unique<Cloud>(*io_, *store_, *engine_, *registry_, co);
        catalog_.Add("scheduler", cloud_->SchedulerService());
        ASSERT_TRUE(engine_->Recover());
        ASSERT_TRUE(cloud_->Load());
        auto secret = cloud_->Bootstrap();
        ASSERT_TRUE(secret);
        if (!secret->empty()) admin_ = *secret;
        cloud_->Start();
        handler_ = cloud_->Handler();
    }

    void Close() {
        if (!cloud_) return;
        cloud_->Stop();
        engine_->Shutdown();
        io_->run_for(20ms);
        cloud_.reset();
        engine_.reset();
        sims_.clear();
        catalog_ = workflow::ServiceCatalog();
        store_->Flush();
        store_.reset();
        io_.reset();
    }

    // One API call, answered: runs the io_context until the answer comes.
    Reply Call(const std::string& token, const std::string& method, const std::string& target,
               const std::string& body = "", std::string idempotency_key = "") {
        http::Request req;
        req.method = method;
        req.target = target;
        req.body = body;
        if (!token.empty()) req.headers.emplace_back("authorization", "Bearer " + token);
        if (!idempotency_key.empty()) req.headers.emplace_back("idempotency-key", idempotency_key);
        std::optional<http::Response> got;
        handler_(std::move(req), [&](http::Response r) { got = std::move(r); });
        RunUntil([&] { return got.has_value(); });
        Reply r;
        if (!got) return r;
        r.status = got->status;
        r.raw = *got;
        boost::system::error_code ec;
        json::value v = json::parse(got->body, ec);
        if (!ec && v.is_object()) r.body = std::move(v.get_object());
        return r;
    }

    // Runs the io_context until `done` (a condition, never a duration, decides; the bound only
    // stops a test that would hang).
    void RunUntil(const std::function<bool()>& done) {
        const auto give_up = SteadyClock::now() + 30s;
        while (!done() && SteadyClock::now() < give_up) {
            io_->restart();
            io_->run_for(2ms);
        }
        ASSERT_TRUE(done()) << "condition not reached";
    }

    // Waits until the resource at `path` has `status` (or is gone, for "").
    Reply WaitFor(const std::string& path, std::string_view kind, const std::string& status) {
        Reply r;
        RunUntil([&] {
            r = Call(admin_, "GET", path);
            return status.empty() ? r.status == 404 : r.Field(kind, "status") == status;
        });
        return r;
    }

    std::string NewProject(const std::string& name) {
        Reply r = Call(admin_, "POST", "/v1/projects", R"({"name":")" + name + R"("})");
        EXPECT_EQ(r.status, 201);
        return r.Field("project", "id");
    }

    std::string NewToken(const std::string& project, const std::string& role) {
        Reply r = Call(admin_, "POST", "/v1/tokens",
                       R"({"project_id":")" + project + R"(","role":")" + role + R"("})");
        EXPECT_EQ(r.status, 201);
        const json::value* t = r.body.if_contains("token");
        return t != nullptr ? std::string(t->at("secret").as_string()) : "";
    }

    // A flavor, an image and hosts h1..hN (8 vcpus, 16 GiB each).
    void Seed(int hosts = 2) {
        ASSERT_EQ(Call(admin_, "POST", "/v1/flavors", R"({"name":"small","vcpus":2,"ram_mb":2048,"disk_gb":10})").status,
                  201);
        ASSERT_EQ(Call(admin_, "POST", "/v1/images", R"({"name":"debian"})").status, 201);
        for (int i = 1; i <= hosts; ++i) {
            Reply r = Call(admin_, "PUT", "/v1/hosts/h" + std::to_string(i),
                           R"({"url":"http://127.0.0.1:1","vcpus":8,"ram_mb":16384,"disk_gb":100})");
            ASSERT_EQ(r.status, 200) << r.raw.body;
        }
    }

    std::string ActiveNetwork(const std::string& token, const std::string& name = "net") {
        Reply r = Call(token, "POST", "/v1/networks", R"({"name":")" + name + R"("})");
        EXPECT_EQ(r.status, 202) << r.raw.body;
        const std::string id = r.Field("network", "id");
        WaitFor("/v1/networks/" + id, "network", "ACTIVE");
        return id;
    }

    int64_t InUse(const std::string& project, const std::string& quota) {
        Reply r = Call(admin_, "GET", "/v1/projects/" + project + "/quotas");
        return r.body.at("quotas").at(quota).at("in_use").as_int64();
    }

    size_t Count(const std::string& token, const std::string& collection) {
        Reply r = Call(token, "GET", "/v1/" + collection);
        return r.body.at(collection).as_array().size();
    }

    std::vector<std::string> EventTypes(const std::string& path) {
        std::vector<std::string> types;
        Reply r = Call(admin_, "GET", path + "/events");
        for (const auto& e : r.body.at("events").as_array()) {
            types.emplace_back(e.at("type").as_string());
        }
        return types;
    }

    std::filesystem::path dir_;
    runtime::FakeClock clock_;
    std::unique_ptr<boost::asio::io_context> io_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<workflow::Registry> registry_;
    std::map<std::string, std::unique_ptr<services::sim::SimService>> sims_;
    workflow::ServiceCatalog catalog_;
    std::unique_ptr<workflow::Engine> engine_;
    std::unique_ptr<Cloud> cloud_;
    http::Handler handler_;
    std::string admin_;
};

TEST_F(CloudTest, BadInputIsRefusedNamingTheFieldAndWritesNothing) {
    Seed();
    const std::string net = ActiveNetwork(admin_);
    struct Case {
        std::string body, field;
    };
    const Case cases[] = {
        {R"({"flavor":"small","image":"debian","network_id":")" + net + R"("})", "name"},
        {R"({"name":"s","flavor":"nope","image":"debian","network_id":")" + net + R"("})", "flavor"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":"nope"})", "network_id"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"(","weigher":"x"})", "weigher"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"(","typo":1})", "typo"},
        {R"({"name":7,"flavor":"small","image":"debian","network_id":")" + net + R"("})", "name"},
        {R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net +
             R"(","volume_ids":["v","v"]})",
         "volume_ids"},
        {"[1]", "body"},
    };
    for (const auto& c : cases) {
        Reply r = Call(admin_, "POST", "/v1/servers", c.body);
        EXPECT_EQ(r.status, 400) << c.body;
        EXPECT_EQ(r.Str("code"), "invalid_argument") << c.body;
        EXPECT_EQ(r.ErrorField(), c.field) << c.body << " -> " << r.raw.body;
    }
    EXPECT_EQ(Count(admin_, "servers"), 0u);
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    Reply volume = Call(admin_, "POST", "/v1/volumes", R"({"name":"v","size_gb":0})");
    EXPECT_EQ(volume.status, 400);
    EXPECT_EQ(volume.ErrorField(), "size_gb");
    EXPECT_EQ(Count(admin_, "volumes"), 0u);
}

TEST_F(CloudTest, QuotaIsReservedAtTheRequestAndGivenBackWhenTheServerGoes) {
    Seed();
    const std::string p = NewProject("tenant");
    const std::string member = NewToken(p, "member");
    ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + p + "/quotas", R"({"servers":1})").status, 200);
    const std::string net = ActiveNetwork(member);
    const std::string body = R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"("})";
    Reply first = Call(member, "POST", "/v1/servers", body);
    ASSERT_EQ(first.status, 202) << first.raw.body;
    EXPECT_EQ(InUse(p, "servers"), 1);
    EXPECT_EQ(InUse(p, "vcpus"), 2);
    Reply second = Call(member, "POST", "/v1/servers", body);
    EXPECT_EQ(second.status, 403);
    EXPECT_EQ(second.Str("code"), "quota_exceeded");
    const json::object& d = second.body.at("details").as_object();
    EXPECT_EQ(d.at("resource").as_string(), "servers");
    EXPECT_EQ(d.at("limit").as_int64(), 1);
    EXPECT_EQ(d.at("in_use").as_int64(), 1);
    EXPECT_EQ(d.at("requested").as_int64(), 1);
    EXPECT_EQ(Count(member, "servers"), 1u);

    const std::string id = first.Field("server", "id");
    Reply active = WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_FALSE(active.Field("server", "host").empty());
    ASSERT_EQ(Call(member, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
    EXPECT_EQ(InUse(p, "servers"), 0);
    EXPECT_EQ(InUse(p, "vcpus"), 0);
    EXPECT_EQ(InUse(p, "ports"), 0);
    EXPECT_EQ(Count(admin_, "ports"), 0u) << "the server's port goes with it";
}

TEST_F(CloudTest, ATenantNeverSeesNorTouchesAnotherTenantsResources) {
    Seed();
    const std::string a = NewToken(NewProject("a"), "member");
    const std::string b = NewToken(NewProject("b"), "member");
    const std::string net = ActiveNetwork(a);
    EXPECT_EQ(Call(b, "GET", "/v1/networks/" + net).status, 404);
    EXPECT_EQ(Call(b, "DELETE", "/v1/networks/" + net).status, 404);
    EXPECT_EQ(Call(b, "GET", "/v1/networks/" + net + "/events").status, 404);
    EXPECT_EQ(Count(b, "networks"), 0u);
    EXPECT_EQ(Count(a, "networks"), 1u);
    Reply port = Call(b, "POST", "/v1/ports", R"({"network_id":")" + net + R"("})");
    EXPECT_EQ(port.status, 400);
    EXPECT_EQ(port.ErrorField(), "network_id");
    Reply server = Call(b, "POST", "/v1/servers",
                        R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"("})");
    EXPECT_EQ(server.status, 400);
    EXPECT_EQ(server.ErrorField(), "network_id");
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    // Events of a's network are a's: b's event list does not show them.
    Reply events = Call(b, "GET", "/v1/events");
    EXPECT_TRUE(events.body.at("events").as_array().empty());
}

TEST_F(CloudTest, RolesLimitWhatATokenMayDo) {
    Seed();
    const std::string p = NewProject("t");
    const std::string reader = NewToken(p, "reader");
    const std::string member = NewToken(p, "member");
    EXPECT_EQ(Call(reader, "POST", "/v1/networks", R"({"name":"n"})").status, 403);
    EXPECT_EQ(Count(admin_, "networks"), 0u);
    EXPECT_EQ(Call(member, "POST", "/v1/flavors", R"({"name":"f","vcpus":1,"ram_mb":1,"disk_gb":0})").status, 403);
    EXPECT_EQ(Call(member, "GET", "/v1/hosts").status, 403);
    EXPECT_EQ(Call(member, "GET", "/v1/tokens").status, 403);
    EXPECT_EQ(Call(member, "PUT", "/v1/projects/" + p + "/quotas", R"({"servers":9})").status, 403);
    EXPECT_EQ(Call(member, "GET", "/v1/log-levels").status, 403);
    EXPECT_EQ(Call("", "GET", "/v1/servers").status, 401);
    EXPECT_EQ(Call("cogs_wrong", "GET", "/v1/servers").status, 401);
    Reply who = Call(reader, "GET", "/v1/whoami");
    EXPECT_EQ(who.Str("role"), "reader");
    EXPECT_EQ(who.Str("project_id"), p);
    EXPECT_EQ(Count(reader, "flavors"), 1u) << "the shared catalog is everyone's to read";
}

TEST_F(CloudTest, AFailedBuildRollsBackToErrorWithTheReasonAndNothingHeld) {
    Seed();
    services::sim::FaultConfig f;
    f.fail_actions = {"create_instance"};
    sims_["compute"]->SetFaults(f);
    const std::string p = NewProject("t");
    const std::string member = NewToken(p, "member");
    const std::string net = ActiveNetwork(member);
    Reply v = Call(member, "POST", "/v1/volumes", R"({"name":"v","size_gb":5})");
    ASSERT_EQ(v.status, 202);
    const std::string vol = v.Field("volume", "id");
    WaitFor("/v1/volumes/" + vol, "volume", "available");
    Reply r = Call(member, "POST", "/v1/servers",
                   R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net +
                       R"(","volume_ids":[")" + vol + R"("]})");
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    Reply failed = WaitFor("/v1/servers/" + id, "server", "ERROR");
    EXPECT_NE(failed.body.at("server").at("fault").at("message").as_string().find("create_instance"),
              std::string::npos)
        << failed.raw.body;
    EXPECT_EQ(InUse(p, "servers"), 0) << "a rolled-back create holds no quota";
    EXPECT_EQ(InUse(p, "ports"), 0);
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    EXPECT_EQ(WaitFor("/v1/volumes/" + vol, "volume", "available").Field("volume", "server_id"), "");
    const auto types = EventTypes("/v1/servers/" + id);
    ASSERT_FALSE(types.empty());
    EXPECT_EQ(types.front(), "created");
    EXPECT_EQ(types.back(), "error");
}

TEST_F(CloudTest, IdempotencyKeyAnswersTheFirstAnswerAndRefusesAnotherBody) {
    const std::string a = Call(admin_, "POST", "/v1/networks", R"({"name":"n"})", "k1").Field("network", "id");
    ASSERT_FALSE(a.empty());
    Reply again = Call(admin_, "POST", "/v1/networks", R"({"name":"n"})", "k1");
    EXPECT_EQ(again.status, 202);
    EXPECT_EQ(again.Field("network", "id"), a);
    EXPECT_EQ(Call(admin_, "POST", "/v1/networks", R"({"name":"other"})", "k1").status, 409);
    EXPECT_EQ(Count(admin_, "networks"), 1u);
}

TEST_F(CloudTest, TheRouterAnswers404And405WithAllow) {
    Reply r = Call(admin_, "PUT", "/v1/servers");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.raw.Header("allow"), "GET, POST");
    r = Call(admin_, "POST", "/v1/projects/x/quotas");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.raw.Header("allow"), "GET, PUT");
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/x/start").raw.Header("allow"), "POST");
    EXPECT_EQ(Call(admin_, "GET", "/v1/nothing").status, 404);
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/a/b/c").status, 404);
    r = Call(admin_, "GET", "/v1/servers?colour=red");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.ErrorField(), "colour");
    EXPECT_EQ(Call("", "GET", "/healthz").status, 200);
}

TEST_F(CloudTest, ALapsedLeaseMakesTheHostSuspectThenDownAndItsServersMoveAway) {
    Seed(2);
    const std::string net = ActiveNetwork(admin_);
    Reply r = Call(admin_, "POST", "/v1/servers",
                   R"({"name":"s","flavor":"small","image":"debian","network_id":")" + net + R"("})");
    const std::string id = r.Field("server", "id");
    const std::string host = WaitFor("/v1/servers/" + id, "server", "ACTIVE").Field("server", "host");
    const std::string other = host == "h1" ? "h2" : "h1";
    auto state = [&](const std::string& h) { return Call(admin_, "GET", "/v1/hosts/" + h).Field("host", "state"); };
    // Only the other host renews from here on.
    auto renew = [&] { ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/" + other + "/heartbeat", "{}").status, 200); };
    renew();
    clock_.Advance(2999ms);
    EXPECT_EQ(state(host), "up") << "not a millisecond before the TTL";
    renew();
    clock_.Advance(1ms);
    EXPECT_EQ(state(host), "suspect");
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/" + id).Field("server", "status"), "ACTIVE")
        << "a suspect host is not evacuated";
    clock_.Advance(999ms);
    EXPECT_EQ(state(host), "suspect") << "the fencing window is not over";
    renew();
    clock_.Advance(1ms);
    EXPECT_EQ(state(host), "down");
    Reply moved;
    RunUntil([&] {
        moved = Call(admin_, "GET", "/v1/servers/" + id);
        return moved.Field("server", "status") == "ACTIVE" && moved.Field("server", "host") == other;
    });
    const auto types = EventTypes("/v1/servers/" + id);
    EXPECT_NE(std::find(types.begin(), types.end(), "evacuated"), types.end());
    const auto host_events = EventTypes("/v1/hosts/" + host);
    EXPECT_NE(std::find(host_events.begin(), host_events.end(), "suspect"), host_events.end());
    EXPECT_EQ(host_events.back(), "down");
}

TEST_F(CloudTest, WhatWasAnsweredSurvivesARestart) {
    Seed();
    const std::string p = NewProject("t");
    const std::string member = NewToken(p, "member");
    const std::string net = ActiveNetwork(member);
    Close();
    Open();
    EXPECT_EQ(Call(member, "GET", "/v1/networks/" + net).Field("network", "status"), "ACTIVE");
    EXPECT_EQ(Count(admin_, "hosts"), 2u);
    EXPECT_EQ(Call(member, "GET", "/v1/whoami").Str("project_id"), p);
}

}  // namespace
}  // namespace cogs::cloud
