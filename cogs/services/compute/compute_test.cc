#include "cogs/services/compute/compute.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <map>

#include "cogs/base/secret.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/compute/agent.h"
#include "cogs/services/kit/internal/test_observe.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/kit/service.h"

namespace cogs::services::compute {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

using Domain = kit::test_service::DomainUnderTest<ComputeDomain>;
using kit::test_service::Records;
using kit::test_observe::PromtoolProblems;
using kit::test_observe::SampleOf;

constexpr int64_t kStartUs = 1'800'000'000'000'000;  // a fixed wall time (µs)

// The kit's side of Domain::Bind for unit tests: writes land in `records`, callbacks run at poll().
class FakeContext final : public kit::DomainContext {
public:
    explicit FakeContext(Records& records) : records_(records) {}
    boost::asio::io_context& io() override { return io_; }
    void Write(kit::Tx tx, std::function<void()> committed) override {
        for (const auto& w : tx.writes()) {
            if (w.erase) {
                records_.erase({w.table, w.id});
            } else {
                records_[{w.table, w.id}] = w.json;
            }
        }
        if (committed) {
            boost::asio::post(io_, std::move(committed));
        }
    }
    void Poll() {
        io_.restart();
        io_.poll();
    }
    void RunFor(Duration d) {
        io_.restart();
        io_.run_for(d);
    }

private:
    Records& records_;
    boost::asio::io_context io_;
};

class ComputeTest : public ::testing::Test {
protected:
    Domain NewDomain(Millis boot) {
        ComputeOptions options;
        options.hosts = {HostSpec{"h1", "nova", 16, 65536, 1000, {"CUSTOM_SSD"}},
                         HostSpec{"h2", "az2", 8, 32768, 500, {}}};
        options.now_us = [this] { return now_us_; };
        options.leased = leased_;
        options.supervisor = supervisor_;
        auto driver = MakeComputeDriver("sim", ComputeDriverOptions{boot});
        EXPECT_TRUE(driver);
        auto domain = MakeComputeDomain(std::move(options), std::move(*driver));
        EXPECT_TRUE(domain) << domain.error().ToString();
        return Domain(std::move(*domain));
    }

    void Make(Millis boot) { domain_ = NewDomain(boot); }

    Result<kit::Done> Do(std::string_view action, std::string_view input) {
        return domain_.Perform(action, input, records_);
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

    // POST /v1/instances/{id}/crash, answered once its write is "committed".
    http::Response Crash(const std::string& id) {
        http::Request req;
        req.method = "POST";
        req.target = "/v1/instances/" + id + "/crash";
        std::optional<http::Response> got;
        EXPECT_TRUE(domain_->Post(req, [&](http::Response r) { got = std::move(r); }));
        context_.Poll();
        EXPECT_TRUE(got) << "no answer";
        return got.value_or(http::Response{});
    }

    json::object Beat(const std::string& host) const {
        return json::parse(domain_->HeartbeatBody(host)).as_object();
    }

    int64_t now_us_ = kStartUs;
    bool leased_ = false;
    SupervisorOptions supervisor_{};
    Records records_;
    FakeContext context_{records_};  // before domain_: its io_context outlives the domain's timer
    Domain domain_ = NewDomain(200ms);
};

TEST_F(ComputeTest, NameActionsAndUnknownAction) {
    EXPECT_EQ(domain_->name(), "compute");
    EXPECT_EQ(domain_.actions().names(),
              (std::vector<std::string>{"create_instance", "delete_instance", "start_instance",
                                        "stop_instance", "reboot_instance"}));
    const Error e = Fails("boot", "{}");
    EXPECT_EQ(e.code, ErrorCode::kNotFound);
    EXPECT_EQ(e.message, "compute has no action 'boot'");
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
        {"create_instance", R"({"host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x"})", "id"},
        {"create_instance", R"({"id":"i1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x"})", "host"},
        {"create_instance", R"({"id":"i1","host":"h1","ram_mb":1,"disk_gb":1,"image":"x"})", "vcpus"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":0,"ram_mb":1,"disk_gb":1,"image":"x"})",
         "vcpus"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":"2","ram_mb":1,"disk_gb":1,"image":"x"})",
         "vcpus"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":0,"disk_gb":1,"image":"x"})",
         "ram_mb"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":-1,"image":"x"})",
         "disk_gb"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1})", "image"},
        {"create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":3})", "image"},
        {"create_instance",
         R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x","port_id":1})", "port_id"},
        {"create_instance",
         R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x","flavor":"m1"})", "flavor"},
        {"create_instance", R"({"id":"a/b","host":"h1","vcpus":1,"ram_mb":1,"disk_gb":1,"image":"x"})", "id"},
        {"delete_instance", R"({"id":"i1"})", "host"},
        {"delete_instance", R"({"host":"h1"})", "id"},
        {"start_instance", R"({"id":"i1","host":7})", "host"},
        {"stop_instance", R"({"id":"i1","host":"h1","force":true})", "force"},
        {"reboot_instance", R"({"id":["i1"],"host":"h1"})", "id"},
    };
    for (const Case& c : cases) {
        Error e = Fails(c.action, c.input);
        EXPECT_EQ(e.code, ErrorCode::kInvalidArgument) << c.input;
        EXPECT_EQ(e.field(), c.field) << c.input;
        EXPECT_TRUE(e.message.starts_with(std::string(c.field) + ": ")) << c.input << " -> " << e.message;
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
        EXPECT_EQ(e.message, "host: this process does not serve host 'h9'");
        EXPECT_EQ(e.field(), "host");
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
              R"("traits":["CUSTOM_SSD"],"fenced":false})");
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

// ---- fencing, crashes and the supervisor's bookkeeping (fake clock; the timed tests are below) ----

TEST_F(ComputeTest, AFencedHostStopsWhatRunsAndRefusesWorkUntilStarted) {
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Ok("create_instance", CreateInput("i3", "h2"));
    Ok("create_instance", CreateInput("i4", "h1"));
    now_us_ += 300'000;
    Ok("stop_instance", R"({"id":"i2","host":"h1"})");
    Ok("reboot_instance", R"({"id":"i4","host":"h1"})");  // booting: fenced too

    EXPECT_EQ(domain_->SetFenced("h1", true), 2u);
    EXPECT_EQ(domain_->SetFenced("h1", true), 0u) << "fenced already: nothing more";
    EXPECT_EQ(State("i1"), "FENCED");
    EXPECT_EQ(State("i4"), "FENCED");
    EXPECT_EQ(State("i2"), "SHUTOFF");
    EXPECT_EQ(State("i3"), "ACTIVE") << "another host holds its own lease";
    EXPECT_NE(records_.at({"instances", "i1"}).find(R"("power":"fenced")"), std::string::npos) << "recorded";
    const json::value inv = json::parse(domain_->Inventory());
    EXPECT_EQ(inv.at("hosts").at(0).at("fenced"), true);
    EXPECT_EQ(inv.at("hosts").at(1).at("fenced"), false);
    observe::Metrics metrics;
    domain_->Collect(metrics);
    std::string text = metrics.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h1"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h2"}}), 0);
    EXPECT_EQ(SampleOf(text, "cogs_compute_fences_total", {}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "FENCED"}}), 2);

    for (const auto& [action, input] : std::vector<std::pair<std::string, std::string>>{
             {"create_instance", CreateInput("i5", "h1")},
             {"create_instance", CreateInput("i1", "h1")},
             {"start_instance", R"({"id":"i1","host":"h1"})"},
             {"start_instance", R"({"id":"i2","host":"h1"})"},
             {"reboot_instance", R"({"id":"i1","host":"h1"})"}}) {
        Error e = Fails(action, input);
        EXPECT_EQ(e.code, ErrorCode::kUnavailable) << action;
        EXPECT_TRUE(e.retryable) << action;
        EXPECT_EQ(e.message, "host h1 is fenced: it holds no lease from the control plane");
    }
    EXPECT_EQ(State("i1"), "FENCED");
    Ok("create_instance", CreateInput("i5", "h2"));  // h2 takes work
    EXPECT_EQ(json::parse(Ok("stop_instance", R"({"id":"i4","host":"h1"})").output).at("state"), "SHUTOFF");
    EXPECT_EQ(json::parse(Ok("delete_instance", R"({"id":"i2","host":"h1"})").output).at("deleted"), true);

    EXPECT_EQ(domain_->SetFenced("h1", false), 0u);
    EXPECT_EQ(State("i1"), "FENCED") << "unfencing starts nothing: the control plane decides";
    kit::Done start = Ok("start_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(start.ready_at_us, now_us_ + 200'000);
    EXPECT_EQ(State("i1"), "BUILD");
    now_us_ += 200'000;
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(domain_->SetFenced("h9", true), 0u) << "not a host of this process";
    domain_->Collect(metrics);
    text = metrics.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h1"}}), 0);
    EXPECT_EQ(SampleOf(text, "cogs_compute_fences_total", {}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "FENCED"}}), 0);
    EXPECT_EQ(PromtoolProblems(text), "");
}

TEST_F(ComputeTest, CrashAnswersTheCrashedInstanceAndRecordsIt) {
    supervisor_.restart_backoff = 100ms;  // not within this test's polls
    Make(200ms);
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Ok("stop_instance", R"({"id":"i2","host":"h1"})");

    http::Response r = Crash("i1");  // BUILD is running too
    EXPECT_EQ(r.status, 200);
    const json::value body = json::parse(r.body);
    EXPECT_EQ(body.at("instance").at("state"), "CRASHED");
    EXPECT_EQ(body.at("instance").at("crashes"), 1);
    EXPECT_EQ(State("i1"), "CRASHED");
    EXPECT_NE(records_.at({"instances", "i1"}).find(R"("power":"crashed")"), std::string::npos);

    EXPECT_EQ(Crash("i1").status, 409) << "CRASHED is not running";
    EXPECT_EQ(json::parse(Crash("i2").body).at("code"), "conflict");
    EXPECT_EQ(Crash("nope").status, 404);
    http::Request other;
    other.method = "POST";
    other.target = "/v1/instances/i1/reboot";
    EXPECT_FALSE(domain_->Post(other, [](http::Response) {})) << "not a route of the domain";

    // The control plane starts it: a fresh start, its crash history cleared, no restart pending.
    Ok("start_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(State("i1"), "BUILD");
    EXPECT_EQ(Instance("i1").at("crashes"), 0);
    // A fenced host's CRASHED instance is FENCED, and its pending restart never happens.
    Crash("i1");
    EXPECT_EQ(domain_->SetFenced("h1", true), 1u);
    EXPECT_EQ(State("i1"), "FENCED");
    EXPECT_EQ(domain_->SetFenced("h1", false), 0u);
    now_us_ += 1'000'000;
    context_.RunFor(150ms);
    EXPECT_EQ(State("i1"), "FENCED");
    Ok("start_instance", R"({"id":"i1","host":"h1"})");
    // A stop cancels a pending restart as well.
    Crash("i1");
    EXPECT_EQ(json::parse(Ok("stop_instance", R"({"id":"i1","host":"h1"})").output).at("state"), "SHUTOFF");
    EXPECT_EQ(Instance("i1").at("crashes"), 1) << "a stop keeps the history; a start clears it";
}

TEST_F(ComputeTest, TooManyCrashesInTheWindowGiveUpAndReportsWaitForTheirAck) {
    supervisor_.restart_max = 3;
    supervisor_.restart_window = 10s;
    supervisor_.restart_backoff = 0ms;  // restarted at the next poll of the io_context
    Make(0ms);
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Ok("stop_instance", R"({"id":"i2","host":"h1"})");
    const auto restarted = [&] {
        for (int k = 0; k < 100 && State("i1") != "ACTIVE"; ++k) {
            context_.Poll();
        }
        return State("i1") == "ACTIVE";
    };
    Crash("i1");
    ASSERT_TRUE(restarted());
    now_us_ += 1'000'000;
    Crash("i1");
    ASSERT_TRUE(restarted());
    EXPECT_EQ(Instance("i1").at("crashes"), 2);
    now_us_ += 1'000'000;
    EXPECT_EQ(json::parse(Crash("i1").body).at("instance").at("state"), "ERROR");
    context_.Poll();
    EXPECT_EQ(State("i1"), "ERROR") << "never restarted again";
    EXPECT_EQ(Instance("i1").at("crashes"), 3);
    EXPECT_NE(records_.at({"instances", "i1"}).find(R"("power":"error")"), std::string::npos);

    json::object beat = Beat("h1");
    EXPECT_EQ(beat.at("instances"), json::parse(R"({"ERROR":1,"SHUTOFF":1})"));
    const json::array& reports = beat.at("reports").as_array();
    std::vector<std::string> types;
    for (const auto& rep : reports) {
        types.emplace_back(rep.at("type").as_string());
        EXPECT_EQ(rep.at("instance"), "i1");
        EXPECT_FALSE(rep.at("message").as_string().empty());
    }
    EXPECT_EQ(types, (std::vector<std::string>{"crashed", "restarted", "crashed", "restarted", "crashed",
                                               "gave_up"}));
    for (size_t k = 1; k < reports.size(); ++k) {
        EXPECT_GT(reports[k].at("seq").to_number<uint64_t>(), reports[k - 1].at("seq").to_number<uint64_t>());
    }
    EXPECT_GE(reports[0].at("seq").to_number<uint64_t>(), static_cast<uint64_t>(kStartUs))
        << "above the wall clock in µs";
    EXPECT_EQ(reports[4].at("at_ms"), (kStartUs + 2'000'000) / 1000);
    EXPECT_EQ(Beat("h2").at("reports").as_array().size(), 0u);
    EXPECT_EQ(Beat("h2").at("instances"), json::object());

    observe::Metrics metrics;
    domain_->Collect(metrics);
    std::string text = metrics.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "restarted"}}), 2);
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "gave_up"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "ERROR"}}), 1);

    // Acknowledged up to the second: the rest is sent again, until acknowledged as well.
    domain_->Acknowledged("h1", reports[1].at("seq").to_number<uint64_t>());
    EXPECT_EQ(Beat("h1").at("reports").as_array().size(), 4u);
    EXPECT_EQ(Beat("h1").at("reports").at(0).at("seq"), reports[2].at("seq"));
    domain_->Acknowledged("h1", reports[5].at("seq").to_number<uint64_t>());
    EXPECT_EQ(Beat("h1").at("reports").as_array().size(), 0u);

    // The control plane starts it again: a fresh history; crashes out of the window are forgotten.
    Ok("start_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Instance("i1").at("crashes"), 0);
    Crash("i1");
    ASSERT_TRUE(restarted());
    Crash("i1");
    ASSERT_TRUE(restarted());
    now_us_ += 11'000'000;
    EXPECT_EQ(Instance("i1").at("crashes"), 0);
    Crash("i1");
    ASSERT_TRUE(restarted()) << "the crashes before the window do not count";
    EXPECT_EQ(Instance("i1").at("crashes"), 1);
    domain_->Collect(metrics);
    text = metrics.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "restarted"}}), 5);
    EXPECT_EQ(PromtoolProblems(text), "");
}

TEST_F(ComputeTest, AHeartbeatCarriesAtMost100ReportsAndAHostKeeps1000) {
    supervisor_.restart_max = 100000;
    supervisor_.restart_backoff = 0ms;
    Make(0ms);
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    for (int k = 0; k < 600; ++k) {  // 1200 reports
        Crash("i1");
        for (int n = 0; n < 100 && State("i1") != "ACTIVE"; ++n) {
            context_.Poll();
        }
        ASSERT_EQ(State("i1"), "ACTIVE") << k;
    }
    const json::array reports = Beat("h1").at("reports").as_array();
    ASSERT_EQ(reports.size(), 100u);
    // The oldest 200 were dropped: the first kept is the 201st (seq grows by one within a µs).
    domain_->Acknowledged("h1", reports[99].at("seq").to_number<uint64_t>());
    size_t left = 0;
    for (int k = 0; k < 20; ++k) {
        const json::array more = Beat("h1").at("reports").as_array();
        left += more.size();
        if (more.empty()) {
            break;
        }
        domain_->Acknowledged("h1", more.back().at("seq").to_number<uint64_t>());
    }
    EXPECT_EQ(left + 100, 1000u);
}

TEST_F(ComputeTest, ALeasedDomainLoadsWhatRanAsFencedAndItsHostsFenced) {
    supervisor_.restart_max = 1;  // the first crash is an ERROR
    Make(200ms);
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Ok("create_instance", CreateInput("i3", "h2"));
    Ok("create_instance", CreateInput("i4", "h2"));
    now_us_ += 300'000;
    Ok("stop_instance", R"({"id":"i2","host":"h1"})");
    domain_->Bind(context_);
    Crash("i4");
    ASSERT_EQ(State("i4"), "ERROR");
    // i3 died and waits for its restart.
    std::string& i3 = records_.at({"instances", "i3"});
    i3.replace(i3.find(R"("power":"on")"), 12, R"("power":"crashed")");

    leased_ = true;
    auto reloaded = NewDomain(200ms);
    for (const auto& [key, text] : records_) {
        ASSERT_TRUE(reloaded->Load(key.first, key.second, text)) << text;
    }
    domain_ = std::move(reloaded);
    domain_->Bind(context_);
    EXPECT_EQ(State("i1"), "FENCED");
    EXPECT_EQ(State("i2"), "SHUTOFF");
    EXPECT_EQ(State("i3"), "FENCED");
    EXPECT_EQ(State("i4"), "ERROR");
    EXPECT_NE(records_.at({"instances", "i1"}).find(R"("power":"fenced")"), std::string::npos)
        << "recorded at Bind";
    EXPECT_NE(records_.at({"instances", "i3"}).find(R"("power":"fenced")"), std::string::npos);
    const json::value inventory = json::parse(domain_->Inventory());
    for (const auto& h : inventory.at("hosts").as_array()) {
        EXPECT_EQ(h.at("fenced"), true) << "no lease yet";
    }
    EXPECT_EQ(Fails("start_instance", R"({"id":"i1","host":"h1"})").code, ErrorCode::kUnavailable);
    EXPECT_EQ(domain_->SetFenced("h1", false), 0u);
    EXPECT_EQ(State("i1"), "FENCED");
    Ok("start_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(State("i1"), "BUILD");
    Ok("create_instance", CreateInput("i5", "h1"));
    EXPECT_EQ(Fails("create_instance", CreateInput("i6", "h2")).code, ErrorCode::kUnavailable);
    observe::Metrics metrics;
    domain_->Collect(metrics);
    EXPECT_EQ(SampleOf(metrics.Render(), "cogs_compute_fences_total", {}), 0) << "no lease ran out";
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
    ComputeOptions bad;
    bad.hosts = {HostSpec{"h1", "nova", 1, 1, 1, {}}};
    bad.supervisor.restart_max = 0;
    d = MakeComputeDomain(bad, *MakeComputeDriver("sim", {}));
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("restart max"), std::string::npos);
    bad.supervisor = {};
    bad.supervisor.restart_window = Duration::zero();
    EXPECT_FALSE(MakeComputeDomain(bad, *MakeComputeDriver("sim", {})));
    bad.supervisor = {};
    bad.supervisor.restart_backoff = Millis(-1);
    EXPECT_FALSE(MakeComputeDomain(bad, *MakeComputeDriver("sim", {})));
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


// ---- the lease, fencing and the supervisor, end to end: the service over HTTP, its agent, and a
// fake control plane that answers heartbeats until it is told to stop answering ----

class LeaseTest : public ::testing::Test {
protected:
    static constexpr int64_t kTtlMs = 200;  // what the control plane answers
    static constexpr auto kBoot = 30ms;
    static constexpr auto kBackoff = 40ms;

    struct Beat {
        std::string host;
        json::object body;
        SteadyTime at;
        bool answered;
    };

    void SetUp() override {
        char tmpl[] = "/tmp/cogs-compute-lease-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        auto control = http::StartServer(io_, http::ServerOptions{}, [this](http::Request req,
                                                                            http::Respond respond) {
            const std::string path = req.Path();
            if (req.method == "PUT") {
                respond(http::Response{});  // registered; an empty answer
                return;
            }
            constexpr std::string_view kSuffix = "/heartbeat";
            if (req.method != "POST" || !path.ends_with(kSuffix)) {
                http::Response r;
                r.status = 404;
                respond(std::move(r));
                return;
            }
            constexpr std::string_view kPrefix = "/v1/hosts/";
            const size_t host_size = path.size() - kPrefix.size() - kSuffix.size();
            const std::string host = path.substr(kPrefix.size(), host_size);
            beats_.push_back(Beat{host, json::parse(req.body).as_object(), SteadyClock::now(), answering_});
            if (!answering_) {
                return;  // no answer: the agent's request deadline ends the exchange
            }
            last_answer_[host] = SteadyClock::now();
            json::object o;
            o["lease_ttl_ms"] = kTtlMs;
            o["acked_seq"] = acked_seq_;
            http::Response r;
            r.body = json::serialize(o);
            respond(std::move(r));
        });
        ASSERT_TRUE(control) << control.error().ToString();
        control_ = std::move(*control);
    }

    void TearDown() override {
        Stop();
        control_->Stop();
        io_.restart();
        io_.poll();
        std::filesystem::remove_all(dir_);
    }

    void Stop() {
        agent_.reset();
        client_.reset();
        if (server_) {
            server_->Stop();
            server_.reset();
        }
        service_.reset();
        io_.restart();
        io_.poll();
    }

    // The compute process: its state in dir_, served over HTTP with a token, and (leased) its agent.
    void Start(bool leased, int restart_max = 3) {
        Stop();
        ComputeOptions options;
        options.hosts = {HostSpec{"h1", "nova", 4, 8192, 100, {}}, HostSpec{"h2", "nova", 4, 8192, 100, {}}};
        options.leased = leased;
        options.supervisor.restart_backoff = kBackoff;
        options.supervisor.restart_max = restart_max;
        options.supervisor.restart_window = 60s;
        auto domain = MakeComputeDomain(options, *MakeComputeDriver("sim", ComputeDriverOptions{kBoot}));
        ASSERT_TRUE(domain);
        HostLink* link = domain->get();
        kit::ServiceOptions service_options;
        service_options.state_path = dir_ + "/state.db";
        service_options.metrics = &metrics_;
        auto service = kit::DomainService::Create(io_, std::move(*domain), service_options);
        ASSERT_TRUE(service) << service.error().ToString();
        service_ = std::move(*service);
        auto server = http::StartServer(io_, http::ServerOptions{},
                                        kit::MakeActionHttpHandler(*service_, Sha256Hex("tok"), &metrics_));
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        client_ = http::MakeClient(io_, http::ClientOptions{"127.0.0.1", server_->port(), 4});
        if (leased) {
            AgentOptions agent;
            agent.control_url = "http://127.0.0.1:" + std::to_string(control_->port());
            agent.advertise_url = "http://127.0.0.1:" + std::to_string(server_->port());
            agent.hosts = options.hosts;
            agent.heartbeat_interval = 25ms;
            agent.request_timeout = 80ms;
            agent.lease_ttl = 5s;  // until the first answer says 200 ms
            agent.link = link;
            auto started = HostAgent::Start(io_, agent);
            ASSERT_TRUE(started) << started.error().ToString();
            agent_ = std::move(*started);
        }
    }

    bool RunUntil(const std::function<bool()>& done, Duration timeout = 5s) {
        const SteadyTime deadline = SteadyClock::now() + timeout;
        while (!done()) {
            if (SteadyClock::now() >= deadline) {
                return false;
            }
            io_.restart();
            io_.run_one_for(2ms);
        }
        return true;
    }
    // Runs io for `d` (for "nothing happens meanwhile" checks only).
    void RunFor(Duration d) {
        io_.restart();
        io_.run_for(d);
    }

    Result<workflow::ActionReply> Call(const std::string& action, const std::string& input) {
        std::optional<Result<workflow::ActionReply>> got;
        service_->Handle(action, "k" + std::to_string(++keys_) + "/do", input, SteadyClock::now() + 5s,
                         [&](Result<workflow::ActionReply> r) { got = std::move(r); });
        EXPECT_TRUE(RunUntil([&] { return got.has_value(); })) << "no answer to " << action;
        return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
    }

    http::Response Crash(const std::string& id, const std::string& token = "tok") {
        http::Request req;
        req.method = "POST";
        req.target = "/v1/instances/" + id + "/crash";
        req.headers.emplace_back("authorization", "Bearer " + token);
        std::optional<Result<http::Response>> got;
        client_->Send(req, SteadyClock::now() + 2s, [&](Result<http::Response> r) { got = std::move(r); });
        EXPECT_TRUE(RunUntil([&] { return got.has_value(); }));
        EXPECT_TRUE(got && *got) << "crash " << id;
        return got && *got ? **got : http::Response{};
    }

    json::value Inventory() {
        http::Request req;
        req.method = "GET";
        req.target = "/v1/inventory";
        auto r = service_->Get(req);
        EXPECT_TRUE(r);
        return json::parse(r ? r->body : "{}");
    }
    std::string StateOf(const std::string& id) {
        const json::value inv = Inventory();
        for (const auto& i : inv.at("instances").as_array()) {
            if (i.at("id") == id.c_str()) {
                return std::string(i.at("state").as_string());
            }
        }
        return "absent";
    }
    int64_t CrashesOf(const std::string& id) {
        const json::value inv = Inventory();
        for (const auto& i : inv.at("instances").as_array()) {
            if (i.at("id") == id.c_str()) {
                return i.at("crashes").as_int64();
            }
        }
        return -1;
    }
    bool Fenced(const std::string& host) {
        const json::value inv = Inventory();
        for (const auto& h : inv.at("hosts").as_array()) {
            if (h.at("name") == host.c_str()) {
                return h.at("fenced").as_bool();
            }
        }
        return false;
    }

    // Creates `id` on `host` and waits until it is ACTIVE.
    void Create(const std::string& id, const std::string& host) {
        auto r = Call("create_instance", R"({"id":")" + id + R"(","host":")" + host +
                                             R"(","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"cirros"})");
        ASSERT_TRUE(r) << r.error().ToString();
        ASSERT_TRUE(RunUntil([&] { return StateOf(id) == "ACTIVE"; })) << id << " is " << StateOf(id);
    }

    // The reports of `host`'s heartbeats from index `from` of beats_ on.
    std::vector<json::object> ReportsSeen(const std::string& host, size_t from = 0) const {
        std::vector<json::object> out;
        for (size_t k = from; k < beats_.size(); ++k) {
            if (beats_[k].host == host) {
                for (const auto& r : beats_[k].body.at("reports").as_array()) {
                    out.push_back(r.as_object());
                }
            }
        }
        return out;
    }

    std::string dir_;
    observe::Metrics metrics_;
    boost::asio::io_context io_;
    std::unique_ptr<http::Server> control_;
    bool answering_ = true;
    uint64_t acked_seq_ = 0;
    std::vector<Beat> beats_;
    std::map<std::string, SteadyTime> last_answer_;
    std::unique_ptr<kit::DomainService> service_;
    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Client> client_;
    std::unique_ptr<HostAgent> agent_;
    int keys_ = 0;
};

TEST_F(LeaseTest, AHostFencesWhenItsLeaseRunsOutAndTakesWorkAgainWhenRenewed) {
    Start(/*leased=*/true);
    ASSERT_TRUE(RunUntil([&] { return !Fenced("h1") && !Fenced("h2"); })) << "the first lease unfences";
    Create("i1", "h1");
    Create("i2", "h1");
    Create("i3", "h2");
    ASSERT_TRUE(Call("stop_instance", R"({"id":"i2","host":"h1"})"));
    // The heartbeat says what the host holds.
    ASSERT_TRUE(RunUntil([&] {
        return !beats_.empty() && beats_.back().host == "h1" &&
               beats_.back().body.at("instances") == json::parse(R"({"ACTIVE":1,"SHUTOFF":1})");
    }));

    answering_ = false;
    ASSERT_TRUE(RunUntil([&] { return Fenced("h1"); }, 3s));
    const SteadyTime fenced_at = SteadyClock::now();
    // At the end of the lease: kTtlMs after the send of the last answered heartbeat (which the
    // control plane saw a transport's moment after it was sent), not at the agent's own 5 s.
    const auto since_answer = fenced_at - last_answer_.at("h1");
    EXPECT_GE(since_answer, Millis(kTtlMs) - 5ms);
    EXPECT_LE(since_answer, Millis(kTtlMs) + 150ms);
    EXPECT_EQ(StateOf("i1"), "FENCED");
    EXPECT_EQ(StateOf("i2"), "SHUTOFF");
    ASSERT_TRUE(RunUntil([&] { return Fenced("h2"); }, 1s));
    EXPECT_EQ(StateOf("i3"), "FENCED");
    EXPECT_EQ(agent_->fenced_hosts(), 2u);
    EXPECT_EQ(agent_->stats().fences, 2u);

    auto refused =
        Call("create_instance", R"({"id":"i4","host":"h1","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"x"})");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(refused.error().retryable);
    EXPECT_NE(refused.error().message.find("host h1 is fenced"), std::string::npos)
        << refused.error().message;
    EXPECT_FALSE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    auto deleted = Call("delete_instance", R"({"id":"i3","host":"h2"})");
    ASSERT_TRUE(deleted) << deleted.error().ToString();
    EXPECT_EQ(json::parse(deleted->output).at("deleted"), true);
    std::string text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h1"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_fences_total", {}), 2);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "FENCED"}}), 1);

    answering_ = true;
    ASSERT_TRUE(RunUntil([&] { return !Fenced("h1"); }, 3s)) << "the next answer unfences";
    EXPECT_EQ(StateOf("i1"), "FENCED") << "until the control plane starts it";
    EXPECT_EQ(agent_->stats().unfences, 1u + (Fenced("h2") ? 0u : 1u));
    auto started = Call("start_instance", R"({"id":"i1","host":"h1"})");
    ASSERT_TRUE(started) << started.error().ToString();
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "ACTIVE"; }));
    text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h1"}}), 0);
    EXPECT_EQ(PromtoolProblems(text), "");
}

TEST_F(LeaseTest, CrashedInstancesRestartWithBackoffUntilTheSupervisorGivesUp) {
    Start(/*leased=*/true);
    ASSERT_TRUE(RunUntil([&] { return !Fenced("h1"); }));
    Create("i1", "h1");
    EXPECT_EQ(Crash("i1", "wrong").status, 401);
    EXPECT_EQ(Crash("nope").status, 404);

    SteadyTime crashed_at = SteadyClock::now();  // the crash happens after this, before the answer
    http::Response r = Crash("i1");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body).at("instance").at("state"), "CRASHED");
    EXPECT_EQ(StateOf("i1"), "CRASHED");
    EXPECT_EQ(Crash("i1").status, 409);
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "BUILD"; }, 3s)) << "restarted: booting";
    EXPECT_GE(SteadyClock::now() - crashed_at, kBackoff - 2ms);
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "ACTIVE"; }, 3s));
    EXPECT_GE(SteadyClock::now() - crashed_at, kBackoff + kBoot - 2ms);

    crashed_at = SteadyClock::now();
    Crash("i1");  // the second within the window: twice the backoff
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "ACTIVE"; }, 3s));
    EXPECT_GE(SteadyClock::now() - crashed_at, 2 * kBackoff + kBoot - 2ms);
    EXPECT_EQ(CrashesOf("i1"), 2);

    const size_t beats_before = beats_.size();
    EXPECT_EQ(json::parse(Crash("i1").body).at("instance").at("state"), "ERROR");  // the third: given up
    // The next heartbeat tells the control plane.
    ASSERT_TRUE(RunUntil([&] {
        for (const auto& rep : ReportsSeen("h1", beats_before)) {
            if (rep.at("type") == "gave_up" && rep.at("instance") == "i1") {
                return true;
            }
        }
        return false;
    }));
    RunFor(4 * kBackoff);
    EXPECT_EQ(StateOf("i1"), "ERROR") << "never restarted again";
    std::string text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "restarted"}}), 2);
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "gave_up"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "ERROR"}}), 1);

    // The control plane may still start it: a fresh start.
    ASSERT_TRUE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "ACTIVE"; }));
    EXPECT_EQ(CrashesOf("i1"), 0);

}

TEST_F(LeaseTest, ReportsAreSentAgainUntilTheControlPlaneAcknowledgesThem) {
    Start(/*leased=*/true);
    ASSERT_TRUE(RunUntil([&] { return !Fenced("h1"); }));
    Create("i1", "h1");
    Crash("i1");
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "ACTIVE"; }, 3s));
    // Not acknowledged: every heartbeat carries both reports again.
    const size_t from = beats_.size();
    ASSERT_TRUE(RunUntil([&] { return ReportsSeen("h1", from).size() >= 6; }));
    std::vector<json::object> seen = ReportsSeen("h1", from);
    EXPECT_EQ(seen[0].at("type"), "crashed");
    EXPECT_EQ(seen[1].at("type"), "restarted");
    EXPECT_EQ(seen[2].at("seq"), seen[0].at("seq"));
    EXPECT_TRUE(ReportsSeen("h2").empty());

    acked_seq_ = seen[0].at("seq").to_number<uint64_t>();  // the crash is recorded
    // An answer carrying the ack reaches the agent; the heartbeat after it carries the rest only.
    size_t acked_from = 0;
    ASSERT_TRUE(RunUntil([&] {
        for (size_t k = beats_.size(); k-- > from;) {
            if (beats_[k].host == "h1" && beats_[k].body.at("reports").as_array().size() == 1) {
                acked_from = k;
                return true;
            }
        }
        return false;
    }));
    EXPECT_EQ(beats_[acked_from].body.at("reports").at(0).at("type"), "restarted");
    acked_seq_ = seen[1].at("seq").to_number<uint64_t>();
    ASSERT_TRUE(RunUntil([&] {
        return beats_.back().host == "h1" && beats_.back().body.at("reports").as_array().empty();
    }));
}

TEST_F(LeaseTest, ARestartedHostComesUpFencedAndCrashHistorySurvivesARestart) {
    // Without a control plane: no lease, and a restart keeps what ran running.
    Start(/*leased=*/false, /*restart_max=*/5);
    EXPECT_FALSE(Fenced("h1"));
    Create("i1", "h1");
    Create("i2", "h1");
    Create("i3", "h2");
    ASSERT_TRUE(Call("stop_instance", R"({"id":"i2","host":"h1"})"));
    Crash("i3");
    Start(/*leased=*/false, /*restart_max=*/5);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    EXPECT_EQ(CrashesOf("i3"), 1) << "the crash history is in the records";
    ASSERT_TRUE(RunUntil([&] { return StateOf("i3") == "ACTIVE"; }, 3s)) << "its pending restart too";
    Crash("i3");
    EXPECT_EQ(CrashesOf("i3"), 2);

    // With a control plane: the host rebooted; whatever was not stopped comes up FENCED.
    answering_ = false;
    Start(/*leased=*/true, /*restart_max=*/5);
    EXPECT_EQ(StateOf("i1"), "FENCED");
    EXPECT_EQ(StateOf("i2"), "SHUTOFF");
    EXPECT_EQ(StateOf("i3"), "FENCED");
    EXPECT_EQ(CrashesOf("i3"), 2);
    EXPECT_TRUE(Fenced("h1")) << "no lease yet";
    EXPECT_FALSE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    answering_ = true;
    ASSERT_TRUE(RunUntil([&] { return !Fenced("h1"); }, 3s));
    EXPECT_EQ(StateOf("i1"), "FENCED");
    ASSERT_TRUE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    ASSERT_TRUE(RunUntil([&] { return StateOf("i1") == "ACTIVE"; }));
    // And a restart while FENCED stays FENCED (recorded), even without a control plane.
    Start(/*leased=*/false, /*restart_max=*/5);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    EXPECT_EQ(StateOf("i3"), "FENCED");
}

}  // namespace
}  // namespace cogs::services::compute
