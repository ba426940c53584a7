#include "cogs/services/compute/compute.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <map>

#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/compute/agent.h"
#include "cogs/services/kit/internal/test_observe.h"
#include "cogs/services/kit/service.h"

namespace cogs::services::compute {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

using Records = std::map<std::pair<std::string, std::string>, std::string>;
using kit::test_observe::PromtoolProblems;
using kit::test_observe::SampleOf;

constexpr int64_t kStartUs = 1'800'000'000'000'000;  // a fixed wall time (µs)

class ComputeTest : public ::testing::Test {
protected:
    void SetUp() override { Make(200ms); }

    std::unique_ptr<kit::Domain> NewDomain(Millis boot) {
        ComputeOptions options;
        options.hosts = {HostSpec{"h1", "nova", 16, 65536, 1000, {"CUSTOM_SSD"}},
                         HostSpec{"h2", "az2", 8, 32768, 500, {}}};
        options.now_us = [this] { return now_us_; };
        auto driver = MakeComputeDriver("sim", ComputeDriverOptions{boot});
        EXPECT_TRUE(driver);
        auto domain = MakeComputeDomain(std::move(options), std::move(*driver));
        EXPECT_TRUE(domain) << domain.error().ToString();
        return std::move(*domain);
    }

    void Make(Millis boot) { domain_ = NewDomain(boot); }

    Result<kit::Done> Do(std::string_view action, std::string_view input) {
        kit::Tx tx;
        auto done = domain_->Perform(action, input, tx);
        if (done) {
            for (const auto& w : tx.writes()) {
                if (w.erase) {
                    records_.erase({w.table, w.id});
                } else {
                    records_[{w.table, w.id}] = w.json;
                }
            }
        }
        return done;
    }

    kit::Done Ok(std::string_view action, std::string_view input) {
        auto done = Do(action, input);
        EXPECT_TRUE(done) << action << " " << input << ": " << done.error().ToString();
        return done ? *done : kit::Done{};
    }

    Error Fails(std::string_view action, std::string_view input) {
        auto done = Do(action, input);
        EXPECT_FALSE(done) << action << " " << input << " answered " << done->output;
        return done ? Error() : done.error();
    }

    json::object Instance(const std::string& id) const {
        const json::value inventory = json::parse(domain_->Inventory());
        for (const auto& i : inventory.at("instances").as_array()) {
            if (i.at("id") == id.c_str()) {
                return i.as_object();
            }
        }
        ADD_FAILURE() << "no instance " << id;
        return {};
    }
    std::string State(const std::string& id) const {
        return std::string(Instance(id).at("state").as_string());
    }
    size_t InstanceCount() const {
        return json::parse(domain_->Inventory()).at("instances").as_array().size();
    }

    static std::string CreateInput(const std::string& id, const std::string& host) {
        return R"({"id":")" + id + R"(","host":")" + host +
               R"(","vcpus":2,"ram_mb":4096,"disk_gb":20,"image":"cirros","port_id":"p1","ip_address":"10.0.0.5"})";
    }

    int64_t now_us_ = kStartUs;
    std::unique_ptr<kit::Domain> domain_;
    Records records_;
};

TEST_F(ComputeTest, NameActionsAndUnknownAction) {
    EXPECT_EQ(domain_->name(), "compute");
    EXPECT_EQ(domain_->actions(),
              (std::vector<std::string>{"create_instance", "delete_instance", "start_instance",
                                        "stop_instance", "reboot_instance"}));
    EXPECT_EQ(Fails("boot", "{}").code, ErrorCode::kNotFound);
}

TEST_F(ComputeTest, CreateIsALongActionUntilBooted) {
    kit::Done done = Ok("create_instance", CreateInput("i1", "h1"));
    EXPECT_EQ(done.ready_at_us, kStartUs + 200'000);
    EXPECT_EQ(json::parse(done.output), json::parse(R"({"id":"i1","host":"h1","state":"ACTIVE"})"));
    auto i = Instance("i1");
    EXPECT_EQ(i.at("state"), "BUILD");
    EXPECT_EQ(i.at("host"), "h1");
    EXPECT_EQ(i.at("vcpus"), 2);
    EXPECT_EQ(i.at("ram_mb"), 4096);
    EXPECT_EQ(i.at("disk_gb"), 20);
    EXPECT_EQ(i.at("image"), "cirros");
    EXPECT_EQ(i.at("port_id"), "p1");
    EXPECT_EQ(i.at("ip_address"), "10.0.0.5");
    EXPECT_TRUE(i.at("mac_address").is_null());
    EXPECT_EQ(i.at("created_at_ms"), kStartUs / 1000);

    now_us_ += 199'999;
    EXPECT_EQ(State("i1"), "BUILD");
    now_us_ += 1;
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(records_.size(), 1u);
}

TEST_F(ComputeTest, ZeroBootTimeIsActiveAtOnce) {
    Make(0ms);
    kit::Done done = Ok("create_instance", CreateInput("i1", "h1"));
    EXPECT_EQ(done.ready_at_us, 0);
    EXPECT_EQ(State("i1"), "ACTIVE");
}

TEST_F(ComputeTest, CreateIsIdempotentById) {
    kit::Done first = Ok("create_instance", CreateInput("i1", "h1"));
    now_us_ += 50'000;
    kit::Done again = Ok("create_instance", CreateInput("i1", "h1"));
    EXPECT_EQ(again.output, first.output);
    EXPECT_EQ(again.ready_at_us, first.ready_at_us);  // the same boot, not a second one
    EXPECT_EQ(InstanceCount(), 1u);
    now_us_ += 200'000;
    EXPECT_EQ(Ok("create_instance", CreateInput("i1", "h1")).ready_at_us, 0);  // booted: done at once

    Error e = Fails("create_instance", R"({"id":"i1","host":"h1","vcpus":4,"ram_mb":4096,"disk_gb":20,
                                          "image":"cirros","port_id":"p1","ip_address":"10.0.0.5"})");
    EXPECT_EQ(e.code, ErrorCode::kAlreadyExists);
    e = Fails("create_instance", CreateInput("i1", "h2"));
    EXPECT_EQ(e.code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(e.message.find("h1"), std::string::npos);
    EXPECT_EQ(Instance("i1").at("host"), "h1");
    EXPECT_EQ(InstanceCount(), 1u);
}

TEST_F(ComputeTest, ValidationNamesTheField) {
    struct Case {
        const char* action;
        const char* input;
        const char* field;
    };
    const Case cases[] = {
        {"create_instance", R"({"host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x"})", "'id'"},
        {"create_instance", R"({"id":"i1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x"})", "'host'"},
        {"create_instance", R"({"id":"i1","host":"h1","ram_mb":1,"disk_gb":1,"image":"x"})", "'vcpus'"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":0,"ram_mb":1,"disk_gb":1,"image":"x"})",
         "vcpus"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":"2","ram_mb":1,"disk_gb":1,"image":"x"})",
         "vcpus"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":0,"disk_gb":1,"image":"x"})",
         "ram_mb"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":-1,"image":"x"})",
         "disk_gb"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1})", "'image'"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":3})", "image"},
        {"create_instance",
         R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x","port_id":1})", "port_id"},
        {"create_instance",
         R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x","flavor":"m1"})", "'flavor'"},
        {"create_instance", R"({"id":"a/b","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x"})", "id"},
        {"delete_instance", R"({"id":"i1"})", "'host'"},
        {"delete_instance", R"({"host":"h1"})", "'id'"},
        {"start_instance", R"({"id":"i1","host":7})", "host"},
        {"stop_instance", R"({"id":"i1","host":"h1","force":true})", "'force'"},
        {"reboot_instance", R"({"id":["i1"],"host":"h1"})", "id"},
    };
    for (const Case& c : cases) {
        Error e = Fails(c.action, c.input);
        EXPECT_EQ(e.code, ErrorCode::kInvalidArgument) << c.input;
        EXPECT_NE(e.message.find(c.field), std::string::npos) << c.input << " -> " << e.message;
    }
    EXPECT_EQ(InstanceCount(), 0u);
    EXPECT_TRUE(records_.empty());
    // Optional fields may be null (a template's missing value).
    Ok("create_instance",
       R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":0,"image":"x","port_id":null})");
}

TEST_F(ComputeTest, UnknownHostIsRefusedForEveryAction) {
    Ok("create_instance", CreateInput("i1", "h1"));
    const std::string id_and_host = R"({"id":"i1","host":"h9"})";
    for (const char* action : {"delete_instance", "start_instance", "stop_instance", "reboot_instance"}) {
        Error e = Fails(action, id_and_host);
        EXPECT_EQ(e.code, ErrorCode::kInvalidArgument) << action;
        EXPECT_NE(e.message.find("host"), std::string::npos);
        EXPECT_NE(e.message.find("h9"), std::string::npos);
    }
    Error e = Fails("create_instance", CreateInput("i2", "h9"));
    EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(e.message.find("h9"), std::string::npos);
    EXPECT_EQ(InstanceCount(), 1u);
}

TEST_F(ComputeTest, MultiHostRoutingAndInventory) {
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h2"));
    auto inv = json::parse(domain_->Inventory()).as_object();
    const auto& hosts = inv.at("hosts").as_array();
    ASSERT_EQ(hosts.size(), 2u);
    EXPECT_EQ(json::serialize(hosts[0]),
              R"({"name":"h1","availability_zone":"nova","vcpus":16,"ram_mb":65536,"disk_gb":1000,)"
              R"("traits":["CUSTOM_SSD"]})");
    EXPECT_EQ(hosts[1].at("availability_zone"), "az2");
    EXPECT_EQ(Instance("i1").at("host"), "h1");
    EXPECT_EQ(Instance("i2").at("host"), "h2");
    // Deleting i2 "on h1" finds nothing there and leaves i2 alone (a compensation of a create refused
    // because the id lives on another host must not remove that one).
    auto out = json::parse(Ok("delete_instance", R"({"id":"i2","host":"h1"})").output);
    EXPECT_EQ(out.at("deleted"), false);
    EXPECT_EQ(InstanceCount(), 2u);
    EXPECT_EQ(Fails("stop_instance", R"({"id":"i2","host":"h1"})").code, ErrorCode::kNotFound);
    out = json::parse(Ok("delete_instance", R"({"id":"i2","host":"h2"})").output);
    EXPECT_EQ(out, json::parse(R"({"id":"i2","deleted":true})"));
    EXPECT_EQ(InstanceCount(), 1u);
    EXPECT_EQ(json::parse(Ok("delete_instance", R"({"id":"i2","host":"h2"})").output).at("deleted"), false);
    EXPECT_EQ(records_.size(), 1u);
}

TEST_F(ComputeTest, StopStartReboot) {
    Ok("create_instance", CreateInput("i1", "h1"));
    now_us_ += 300'000;
    ASSERT_EQ(State("i1"), "ACTIVE");

    kit::Done stop = Ok("stop_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(stop.ready_at_us, 0);
    EXPECT_EQ(json::parse(stop.output), json::parse(R"({"id":"i1","host":"h1","state":"SHUTOFF"})"));
    EXPECT_EQ(State("i1"), "SHUTOFF");
    EXPECT_EQ(Ok("stop_instance", R"({"id":"i1","host":"h1"})").ready_at_us, 0);  // again: fine

    kit::Done start = Ok("start_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(start.ready_at_us, now_us_ + 200'000);
    EXPECT_EQ(json::parse(start.output).at("state"), "ACTIVE");
    EXPECT_EQ(State("i1"), "BUILD");
    now_us_ += 200'000;
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Ok("start_instance", R"({"id":"i1","host":"h1"})").ready_at_us, 0);  // running: at once

    kit::Done reboot = Ok("reboot_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(reboot.ready_at_us, now_us_ + 200'000);
    EXPECT_EQ(State("i1"), "REBOOT");
    now_us_ += 200'000;
    EXPECT_EQ(State("i1"), "ACTIVE");

    for (const char* action : {"start_instance", "stop_instance", "reboot_instance"}) {
        Error e = Fails(action, R"({"id":"nope","host":"h1"})");
        EXPECT_EQ(e.code, ErrorCode::kNotFound) << action;
        EXPECT_FALSE(e.retryable);
    }
}

TEST_F(ComputeTest, InstancesByHostAndStateFollowTheClockAndDropToZero) {
    observe::Metrics metrics;
    const auto instances = [&](const std::string& text, const std::string& host, const std::string& state) {
        return SampleOf(text, "cogs_compute_instances", {{"host", host}, {"state", state}});
    };
    const auto scrape = [&] {
        domain_->Collect(metrics);
        return metrics.Render();
    };
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h2"));
    Ok("create_instance", CreateInput("i3", "h2"));
    std::string text = scrape();
    EXPECT_EQ(instances(text, "h1", "BUILD"), 1);
    EXPECT_EQ(instances(text, "h2", "BUILD"), 2);
    EXPECT_TRUE(std::isnan(instances(text, "h1", "ACTIVE"))) << "no series for what never was";

    now_us_ += 300'000;  // booted
    Ok("stop_instance", R"({"id":"i3","host":"h2"})");
    text = scrape();
    EXPECT_EQ(instances(text, "h1", "ACTIVE"), 1);
    EXPECT_EQ(instances(text, "h2", "ACTIVE"), 1);
    EXPECT_EQ(instances(text, "h2", "SHUTOFF"), 1);
    EXPECT_EQ(instances(text, "h2", "BUILD"), 0) << "a state left empty reads 0, not its last value";

    Ok("delete_instance", R"({"id":"i1","host":"h1"})");
    text = scrape();
    EXPECT_EQ(instances(text, "h1", "ACTIVE"), 0);
    EXPECT_EQ(domain_->RecordCounts(), (std::vector<std::pair<std::string, int64_t>>{{"instances", 2}}));
    EXPECT_EQ(PromtoolProblems(text), "");
}

TEST_F(ComputeTest, LoadRebuildsFromRecords) {
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h2"));
    Ok("create_instance", CreateInput("i3", "h2"));
    Ok("stop_instance", R"({"id":"i2","host":"h2"})");
    Ok("reboot_instance", R"({"id":"i1","host":"h1"})");
    Ok("delete_instance", R"({"id":"i3","host":"h2"})");
    const std::string inventory = domain_->Inventory();

    auto reloaded = NewDomain(200ms);
    for (const auto& [key, text] : records_) {
        ASSERT_TRUE(reloaded->Load(key.first, key.second, text)) << text;
    }
    EXPECT_EQ(reloaded->Inventory(), inventory);
    domain_ = std::move(reloaded);
    EXPECT_EQ(State("i1"), "REBOOT");
    EXPECT_EQ(State("i2"), "SHUTOFF");
    now_us_ += 200'000;
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Fails("create_instance", CreateInput("i1", "h2")).code, ErrorCode::kFailedPrecondition);

    auto d = NewDomain(0ms);
    EXPECT_FALSE(d->Load("instances", "x", "{"));
    EXPECT_FALSE(d->Load("instances", "x", records_.begin()->second));  // the record holds another id
    EXPECT_FALSE(d->Load("volumes", "i1", records_.begin()->second));
}

TEST_F(ComputeTest, GetAnswersTheInstanceOr404) {
    Ok("create_instance", CreateInput("i1", "h1"));
    http::Request req;
    req.method = "GET";
    req.target = "/v1/instances/i1";
    auto r = domain_->Get(req);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body).at("instance").at("state"), "BUILD");
    req.target = "/v1/instances/i9";
    r = domain_->Get(req);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(json::parse(r->body).at("code"), "not_found");
    req.target = "/v1/volumes/i1";
    EXPECT_FALSE(domain_->Get(req));
}

TEST(ComputeFactoryTest, RefusesBadHostsAndDrivers) {
    EXPECT_FALSE(MakeComputeDriver("libvirt", {}));
    EXPECT_FALSE(MakeComputeDriver("sim", ComputeDriverOptions{Millis(-1)}));
    EXPECT_FALSE(MakeComputeDomain(ComputeOptions{}, *MakeComputeDriver("sim", {})));
    ComputeOptions twice;
    twice.hosts = {HostSpec{"h1", "nova", 1, 1, 1, {}}, HostSpec{"h1", "nova", 1, 1, 1, {}}};
    auto d = MakeComputeDomain(twice, *MakeComputeDriver("sim", {}));
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("h1"), std::string::npos);
}

// ---- served by the kit: 202 until booted, then the output; state survives a restart ----

class ComputeServiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/cogs-compute-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        service_.reset();
        io_.restart();
        io_.poll();
        std::filesystem::remove_all(dir_);
    }

    void StartService() {
        service_.reset();
        ComputeOptions options;
        options.hosts = {HostSpec{"sim-1", "nova", 4, 8192, 100, {}},
                         HostSpec{"sim-2", "nova", 4, 8192, 100, {}}};
        auto domain = MakeComputeDomain(options, *MakeComputeDriver("sim", ComputeDriverOptions{Millis(40)}));
        ASSERT_TRUE(domain);
        kit::ServiceOptions service_options;
        service_options.state_path = dir_ + "/state.db";
        service_options.metrics = &metrics_;
        auto s = kit::DomainService::Create(io_, std::move(*domain), service_options);
        ASSERT_TRUE(s) << s.error().ToString();
        service_ = std::move(*s);
    }

    template <typename Start>
    Result<workflow::ActionReply> Await(Start start) {
        std::optional<Result<workflow::ActionReply>> got;
        start([&](Result<workflow::ActionReply> r) { got = std::move(r); });
        const SteadyTime deadline = SteadyClock::now() + 5s;
        while (!got && SteadyClock::now() < deadline) {
            io_.restart();
            io_.run_one_for(5ms);
        }
        EXPECT_TRUE(got) << "no answer";
        return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
    }
    Result<workflow::ActionReply> Call(std::string action, std::string key, std::string input) {
        return Await([&](kit::ActionTarget::Callback cb) {
            service_->Handle(action, key, input, SteadyClock::now() + 5s, std::move(cb));
        });
    }
    Result<workflow::ActionReply> StatusOf(std::string key) {
        return Await([&](kit::ActionTarget::Callback cb) { service_->Status(key, std::move(cb)); });
    }
    std::string ServedInventory() {
        http::Request req;
        req.method = "GET";
        req.target = "/v1/inventory";
        auto r = service_->Get(req);
        EXPECT_TRUE(r);
        return r ? r->body : "";
    }

    std::string dir_;
    observe::Metrics metrics_;  // outlives the service, which counts into it
    boost::asio::io_context io_;
    std::unique_ptr<kit::DomainService> service_;
};

TEST_F(ComputeServiceTest, CreateIsAcceptedUntilBootedAndSurvivesARestart) {
    StartService();
    const std::string input =
        R"({"id":"i1","host":"sim-2","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"cirros"})";
    auto r = Call("create_instance", "wf1/boot/do", input);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->accepted);
    EXPECT_NE(ServedInventory().find(R"("state":"BUILD")"), std::string::npos);
    // Poll the status as the engine does, until the boot has ended (40 ms).
    const SteadyTime deadline = SteadyClock::now() + 5s;
    Result<workflow::ActionReply> status = StatusOf("wf1/boot/do");
    while (status && status->accepted && SteadyClock::now() < deadline) {
        io_.restart();
        io_.run_for(5ms);
        status = StatusOf("wf1/boot/do");
    }
    ASSERT_TRUE(status) << status.error().ToString();
    ASSERT_FALSE(status->accepted);
    EXPECT_EQ(json::parse(status->output), json::parse(R"({"id":"i1","host":"sim-2","state":"ACTIVE"})"));
    EXPECT_NE(ServedInventory().find(R"("state":"ACTIVE")"), std::string::npos);
    ASSERT_TRUE(Call("stop_instance", "wf2/stop/do", R"({"id":"i1","host":"sim-2"})"));
    const std::string before = ServedInventory();
    const std::string scraped = metrics_.Render();  // what GET /metrics would show now
    EXPECT_EQ(SampleOf(scraped, "cogs_compute_instances", {{"host", "sim-2"}, {"state", "SHUTOFF"}}), 1);
    EXPECT_EQ(SampleOf(scraped, "cogs_service_records", {{"service", "compute"}, {"kind", "instances"}}), 1);
    EXPECT_EQ(SampleOf(scraped, "cogs_service_records", {{"service", "compute"}, {"kind", "ledger"}}), 2);

    StartService();
    EXPECT_EQ(ServedInventory(), before);
    EXPECT_NE(before.find(R"("state":"SHUTOFF")"), std::string::npos);
    auto again = Call("create_instance", "wf1/boot/do", input);  // answered from the ledger
    ASSERT_TRUE(again);
    EXPECT_FALSE(again->accepted);
    EXPECT_EQ(json::parse(again->output).at("state"), "ACTIVE");
    auto undo = Call("delete_instance", "wf1/boot/undo", R"({"id":"i1","host":"sim-2"})");
    ASSERT_TRUE(undo) << undo.error().ToString();
    EXPECT_EQ(json::parse(undo->output).at("deleted"), true);
    EXPECT_EQ(json::parse(ServedInventory()).at("instances").as_array().size(), 0u);

    // The restarted service samples its reloaded ledger (the first one's sampler is gone with it).
    const std::string text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_service_records", {{"service", "compute"}, {"kind", "ledger"}}), 3);
    EXPECT_EQ(SampleOf(text, "cogs_service_records", {{"service", "compute"}, {"kind", "instances"}}), 0);
}

// ---- the agent, against a fake control plane ----

struct Seen {
    std::string method;
    std::string path;
    std::string authorization;
    std::string body;
    SteadyTime at;
};

class AgentTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto server =
            http::StartServer(io_, http::ServerOptions{}, [this](http::Request req, http::Respond respond) {
                seen_.push_back(
                    Seen{req.method, req.Path(), req.Header("authorization"), req.body, SteadyClock::now()});
                http::Response r;
                r.status = answer_ ? answer_(seen_.back()) : 200;
                if (r.status == 204) {
                    r.body.clear();
                } else {
                    r.body = r.status < 300 ? "{}" : R"({"code":"x","message":"no"})";
                }
                respond(std::move(r));
            });
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        options_.control_url = "http://127.0.0.1:" + std::to_string(server_->port());
        options_.token = "s3cret";
        options_.advertise_url = "http://127.0.0.1:7000";
        options_.hosts = {HostSpec{"h1", "nova", 16, 65536, 1000, {"CUSTOM_A", "CUSTOM_B"}}};
        options_.heartbeat_interval = 20ms;
        options_.min_backoff = 10ms;
        options_.max_backoff = 40ms;
        options_.slow_retry = 60ms;
    }

    void TearDown() override {
        agent_.reset();
        server_->Stop();
        io_.poll();
    }

    void StartAgent() {
        auto agent = HostAgent::Start(io_, options_);
        ASSERT_TRUE(agent) << agent.error().ToString();
        agent_ = std::move(*agent);
    }

    // Runs the io_context until `done` holds; false after `timeout`.
    bool RunUntil(const std::function<bool()>& done, Duration timeout = 5s) {
        const SteadyTime deadline = SteadyClock::now() + timeout;
        while (!done()) {
            if (SteadyClock::now() >= deadline) {
                return false;
            }
            if (io_.stopped()) {
                io_.restart();  // a poll() or a moment without work stops it
            }
            io_.run_one_for(5ms);
        }
        return true;
    }

    size_t Count(const std::string& method, const std::string& path) const {
        return std::count_if(seen_.begin(), seen_.end(),
                             [&](const Seen& s) { return s.method == method && s.path == path; });
    }
    std::vector<Seen> Of(const std::string& method, const std::string& path) const {
        std::vector<Seen> out;
        std::copy_if(seen_.begin(), seen_.end(), std::back_inserter(out),
                     [&](const Seen& s) { return s.method == method && s.path == path; });
        return out;
    }

    boost::asio::io_context io_;
    std::unique_ptr<http::Server> server_;
    std::function<int(const Seen&)> answer_;
    std::vector<Seen> seen_;
    AgentOptions options_;
    std::unique_ptr<HostAgent> agent_;
};

TEST(ParseHttpUrlTest, AcceptsHostPortOnly) {
    EXPECT_EQ(*ParseHttpUrl("http://127.0.0.1:8080"),
              std::make_pair(std::string("127.0.0.1"), uint16_t{8080}));
    EXPECT_EQ(*ParseHttpUrl("http://localhost:1/"), std::make_pair(std::string("localhost"), uint16_t{1}));
    EXPECT_EQ(ParseHttpUrl("http://[::1]:9")->first, "::1");
    for (const char* bad :
         {"https://a:1", "http://a", "http://a:0", "http://a:70000", "http://a:1/v1", "a:1", "http://:1"}) {
        EXPECT_FALSE(ParseHttpUrl(bad)) << bad;
    }
}

TEST_F(AgentTest, RegistersEveryHostWithItsSpec) {
    options_.hosts.push_back(HostSpec{"h2", "az2", 4, 1024, 10, {}});
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return agent_->registered_hosts() == 2; }));
    auto h1 = Of("PUT", "/v1/hosts/h1");
    ASSERT_EQ(h1.size(), 1u);
    EXPECT_EQ(h1[0].authorization, "Bearer s3cret");
    EXPECT_EQ(json::parse(h1[0].body),
              json::parse(R"({"url":"http://127.0.0.1:7000","availability_zone":"nova","vcpus":16,)"
                          R"("ram_mb":65536,"disk_gb":1000,"traits":["CUSTOM_A","CUSTOM_B"]})"));
    auto h2 = Of("PUT", "/v1/hosts/h2");
    ASSERT_EQ(h2.size(), 1u);
    EXPECT_EQ(json::parse(h2[0].body).at("availability_zone"), "az2");
    EXPECT_EQ(json::parse(h2[0].body).at("traits"), json::array());
    EXPECT_EQ(agent_->stats().registrations, 2u);
}

TEST_F(AgentTest, RetriesRegistrationWithGrowingBackoff) {
    int puts = 0;
    answer_ = [&](const Seen& s) { return s.method == "PUT" && ++puts <= 3 ? 503 : 200; };
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return agent_->registered_hosts() == 1; }));
    auto tries = Of("PUT", "/v1/hosts/h1");
    ASSERT_EQ(tries.size(), 4u);
    // Waits of at least 10, 20 and 40 ms (the backoff doubles from min_backoff, capped at max_backoff).
    EXPECT_GE(tries[1].at - tries[0].at, 10ms);
    EXPECT_GE(tries[2].at - tries[1].at, 20ms);
    EXPECT_GE(tries[3].at - tries[2].at, 40ms);
    EXPECT_EQ(agent_->stats().registration_failures, 3u);
    EXPECT_EQ(agent_->stats().registrations, 1u);
}

TEST_F(AgentTest, ARefusedRegistrationIsRetriedSlowly) {
    int puts = 0;
    answer_ = [&](const Seen& s) { return s.method == "PUT" && ++puts == 1 ? 400 : 200; };
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return agent_->registered_hosts() == 1; }));
    auto tries = Of("PUT", "/v1/hosts/h1");
    ASSERT_EQ(tries.size(), 2u);
    EXPECT_GE(tries[1].at - tries[0].at, 60ms);  // slow_retry, not min_backoff
}

TEST_F(AgentTest, HeartbeatsAtItsCadence) {
    answer_ = [](const Seen& s) { return s.method == "POST" ? 204 : 200; };
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return Count("POST", "/v1/hosts/h1/heartbeat") >= 5; }));
    auto beats = Of("POST", "/v1/hosts/h1/heartbeat");
    auto put = Of("PUT", "/v1/hosts/h1");
    ASSERT_EQ(put.size(), 1u);
    // Sent an interval apart (send to send); seen by the server within a transport's jitter of that.
    constexpr auto kJitter = 2ms;
    EXPECT_GE(beats[0].at - put[0].at, 20ms - kJitter);
    for (size_t i = 1; i < beats.size(); ++i) {
        EXPECT_GE(beats[i].at - beats[i - 1].at, 20ms - kJitter) << i;
    }
    EXPECT_GE(beats[4].at - put[0].at, 5 * 20ms - kJitter);
    EXPECT_EQ(beats[0].body, "{}");
    EXPECT_EQ(beats[0].authorization, "Bearer s3cret");
    ASSERT_TRUE(RunUntil([&] { return agent_->stats().heartbeats >= 5; }));
    EXPECT_EQ(agent_->stats().heartbeat_failures, 0u);
}

TEST_F(AgentTest, RegistersAgainWhenTheControlPlaneForgetsTheHost) {
    int beats = 0;
    answer_ = [&](const Seen& s) { return s.method == "POST" && ++beats == 2 ? 404 : 200; };
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return Count("POST", "/v1/hosts/h1/heartbeat") >= 4; }));
    EXPECT_EQ(Count("PUT", "/v1/hosts/h1"), 2u);
    // The second registration came right after the 404, before the third heartbeat.
    auto puts = Of("PUT", "/v1/hosts/h1");
    auto hb = Of("POST", "/v1/hosts/h1/heartbeat");
    EXPECT_GT(puts[1].at, hb[1].at);
    EXPECT_LT(puts[1].at, hb[2].at);
    EXPECT_EQ(agent_->stats().reregistrations, 1u);
    EXPECT_EQ(agent_->stats().registrations, 2u);
}

TEST_F(AgentTest, HeartbeatFailuresDoNotStopTheHeartbeats) {
    int beats = 0;
    answer_ = [&](const Seen& s) { return s.method == "POST" && ++beats <= 2 ? 503 : 204; };
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return agent_->stats().heartbeats >= 2; }));
    EXPECT_EQ(agent_->stats().heartbeat_failures, 2u);
    EXPECT_EQ(Count("PUT", "/v1/hosts/h1"), 1u);  // a 503 is not a forgotten host
}

TEST_F(AgentTest, AnUnreachableControlPlaneIsRetriedAndStopEndsEverything) {
    // A port nobody listens on any more.
    const uint16_t port = server_->port();
    server_->Stop();
    io_.poll();
    options_.control_url = "http://127.0.0.1:" + std::to_string(port);
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return agent_->stats().registration_failures >= 3; }));
    EXPECT_EQ(agent_->registered_hosts(), 0u);
    agent_->Stop();
    const uint64_t failures = agent_->stats().registration_failures;
    // Nothing runs after Stop: the io_context runs out of work (no timer or request left).
    io_.restart();
    io_.run_for(200ms);
    EXPECT_EQ(agent_->stats().registration_failures, failures);
}

TEST_F(AgentTest, DestroyedWhileRequestsAreInFlight) {
    options_.hosts.clear();
    for (int i = 0; i < 50; ++i) {
        options_.hosts.push_back(HostSpec{"sim-" + std::to_string(i), "nova", 1, 1, 1, {}});
    }
    StartAgent();
    ASSERT_TRUE(RunUntil([&] { return !seen_.empty(); }));
    agent_.reset();  // requests of the other hosts still in flight: their callbacks must find nothing
    io_.run_for(50ms);
    EXPECT_GE(seen_.size(), 1u);
}

TEST(AgentStartTest, RefusesBadOptions) {
    boost::asio::io_context io;
    AgentOptions o;
    o.control_url = "ftp://x:1";
    o.hosts = {HostSpec{"h1", "nova", 1, 1, 1, {}}};
    EXPECT_FALSE(HostAgent::Start(io, o));
    o.control_url = "http://127.0.0.1:1";
    o.hosts.clear();
    EXPECT_FALSE(HostAgent::Start(io, o));
}

}  // namespace
}  // namespace cogs::services::compute
