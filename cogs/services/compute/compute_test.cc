#include "cogs/services/compute/compute.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "cogs/base/secret.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"
#include "cogs/oci/lease_file.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/agent.h"
#include "cogs/services/compute/internal/worker_pool.h"
#include "cogs/services/kit/internal/test_observe.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/kit/service.h"
#include "test/support/temp_dir.h"

namespace cogs::services::compute {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

using Domain = kit::test_service::DomainUnderTest<ComputeDomain>;
using kit::test_observe::PromtoolProblems;
using kit::test_observe::SampleOf;
using kit::test_service::Records;

constexpr int64_t kStartUs = 1'800'000'000'000'000;  // a fixed wall time (µs)

// The kit's side of Domain::Bind for unit tests: writes land in `records`, callbacks run at poll().
class FakeContext final : public kit::DomainContext {
public:
    explicit FakeContext(Records& records) : records_(records) {}
    boost::asio::io_context& io() override { return io_; }
    void Write(kit::Tx tx, std::function<void()> committed) override {
        kit::test_service::Apply(tx, records_);
        if (committed) {
            boost::asio::post(io_, std::move(committed));
        }
    }
    void Finish(std::string_view wait_for, Result<std::string> output) override {
        finished_.emplace_back(std::string(wait_for), std::move(output));
    }
    void Poll() {
        io_.restart();
        io_.poll();
    }

    // What the domain finished (DomainContext::Finish), in order.
    std::vector<std::pair<std::string, Result<std::string>>> finished_;

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
        options.clock = &clock_;
        options.leased = leased_;
        options.test_routes = true;  // the crash route
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

    // Moves time: states follow it, and the supervisor's timer fires when due (on context_'s io).
    void Advance(Duration d) { clock_.Advance(d); }

    runtime::FakeClock clock_{kStartUs / 1000};  // before the domain, which reads it
    bool leased_ = false;
    SupervisorOptions supervisor_{};
    Records records_;
    FakeContext context_{records_};  // before domain_: its io_context outlives the domain's timer
    Domain domain_ = NewDomain(200ms);
};

TEST_F(ComputeTest, NameActionsAndUnknownAction) {
    EXPECT_EQ(domain_->name(), "compute");
    EXPECT_EQ(
        domain_.actions().names(),
        (std::vector<std::string>{"create_instance", "delete_instance", "start_instance", "stop_instance",
                                  "reboot_instance", "attach_volumes", "detach_volumes"}));
    EXPECT_EQ(domain_.actions().names(), std::vector<std::string>(kActions.begin(), kActions.end()));
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

    Advance(199'999us);
    EXPECT_EQ(State("i1"), "BUILD");
    Advance(1us);
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
    Advance(50ms);
    kit::Done again = Ok("create_instance", CreateInput("i1", "h1"));
    EXPECT_EQ(again.output, first.output);
    EXPECT_EQ(again.ready_at_us, first.ready_at_us);  // the same boot, not a second one
    EXPECT_EQ(InstanceCount(), 1u);
    Advance(200ms);
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
    Advance(300ms);
    ASSERT_EQ(State("i1"), "ACTIVE");

    kit::Done stop = Ok("stop_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(stop.ready_at_us, 0);
    EXPECT_EQ(json::parse(stop.output), json::parse(R"({"id":"i1","host":"h1","state":"SHUTOFF"})"));
    EXPECT_EQ(State("i1"), "SHUTOFF");
    EXPECT_EQ(Ok("stop_instance", R"({"id":"i1","host":"h1"})").ready_at_us, 0);  // again: fine

    kit::Done start = Ok("start_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(start.ready_at_us, clock_.WallUs() + 200'000);
    EXPECT_EQ(json::parse(start.output).at("state"), "ACTIVE");
    EXPECT_EQ(State("i1"), "BUILD");
    Advance(200ms);
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Ok("start_instance", R"({"id":"i1","host":"h1"})").ready_at_us, 0);  // running: at once

    kit::Done reboot = Ok("reboot_instance", R"({"id":"i1","host":"h1"})");
    EXPECT_EQ(reboot.ready_at_us, clock_.WallUs() + 200'000);
    EXPECT_EQ(State("i1"), "REBOOT");
    Advance(200ms);
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

    Advance(300ms);  // booted
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
    ASSERT_TRUE(kit::test_service::LoadAll(*reloaded, records_));
    EXPECT_EQ(reloaded->Inventory(), inventory);
    domain_ = std::move(reloaded);
    EXPECT_EQ(State("i1"), "REBOOT");
    EXPECT_EQ(State("i2"), "SHUTOFF");
    Advance(200ms);
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Fails("create_instance", CreateInput("i1", "h2")).code, ErrorCode::kFailedPrecondition);

    auto d = NewDomain(0ms);
    EXPECT_FALSE(d->Load("instances", "x", "{"));
    EXPECT_FALSE(d->Load("instances", "x", records_.begin()->second));  // the record holds another id
    EXPECT_FALSE(d->Load("volumes", "i1", records_.begin()->second));
}

// The port's network, subnet and gateway, the user_data and the public keys are part of the
// instance: recorded (a reloaded domain holds them, so a restart boots it plugged, with its script
// and its keys), and compared on a re-sent create.
TEST_F(ComputeTest, ThePortsNetworkAndTheUserDataAreRecordedAndCompared) {
    const std::string plugged = R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":64,"disk_gb":0,"image":"busybox",
        "port_id":"p1","mac_address":"fa:16:3e:00:00:01","ip_address":"10.0.0.5","network_id":"n1",
        "cidr":"10.0.0.0/24","gateway_ip":"10.0.0.1","user_data":"ZWNobyBoaQo=",
        "public_keys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me@there"]})";
    const kit::Done first = Ok("create_instance", plugged);
    auto reloaded = NewDomain(200ms);
    ASSERT_TRUE(kit::test_service::LoadAll(*reloaded, records_));
    domain_ = std::move(reloaded);
    EXPECT_EQ(Ok("create_instance", plugged).output, first.output) << "the same instance";
    std::string other = plugged;
    other.replace(other.find("ZWNobyBoaQo="), 12, "ZWNobyBobwo=");  // another script
    EXPECT_EQ(Fails("create_instance", other).code, ErrorCode::kAlreadyExists);
    other = plugged;
    other.replace(other.find("10.0.0.1\""), 9, "10.0.0.9\"");  // another gateway
    EXPECT_EQ(Fails("create_instance", other).code, ErrorCode::kAlreadyExists);
    other = plugged;
    other.replace(other.find("me@there"), 8, "me@elsewhere");  // another key
    EXPECT_EQ(Fails("create_instance", other).code, ErrorCode::kAlreadyExists);
    EXPECT_EQ(json::parse(records_.at({"instances", "i1"})).at("public_keys"),
              json::parse(R"(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me@there"])"));
    // A key is one line of text.
    other = plugged;
    other.replace(other.find(" me@there"), 9, "\\nme@there");
    EXPECT_EQ(Fails("create_instance", other).code, ErrorCode::kInvalidArgument);
    // Absent, null and "" are the same: no port to plug, no script.
    const kit::Done bare = Ok("create_instance", R"({"id":"i2","host":"h1","vcpus":1,"ram_mb":64,"disk_gb":0,
        "image":"busybox","network_id":null,"cidr":"","gateway_ip":null,"user_data":null,"public_keys":null})");
    EXPECT_EQ(Ok("create_instance",
                 R"({"id":"i2","host":"h1","vcpus":1,"ram_mb":64,"disk_gb":0,"image":"busybox"})")
                  .output,
              bare.output);
}

TEST_F(ComputeTest, GetAnswersTheInstanceOr404) {
    Ok("create_instance", CreateInput("i1", "h1"));
    EXPECT_EQ(kit::test_service::GetJson(*domain_, "/v1/instances/i1").at("instance"), Instance("i1"));
    EXPECT_EQ(kit::test_service::GetJson(*domain_, "/v1/instances/i9", 404),
              json::parse(R"({"code":"not_found","message":"no instance 'i9'","retryable":false})"));
    EXPECT_FALSE(kit::test_service::Get(*domain_, "/v1/volumes/i1"));
    EXPECT_FALSE(kit::test_service::Get(*domain_, "/v1/instances/i1/crash")) << "a POST route";
}

TEST(ComputeTestRoutes, TheCrashRouteExistsOnlyWithTestRoutes) {
    for (const bool on : {false, true}) {
        ComputeOptions options;
        options.hosts = {HostSpec{.name = "h1"}};
        options.test_routes = on;
        auto domain = MakeComputeDomain(options, *MakeComputeDriver("sim", {}));
        ASSERT_TRUE(domain);
        http::Request req;
        req.method = "POST";
        req.target = "/v1/instances/i1/crash";
        EXPECT_EQ((*domain)->Post(req, [](http::Response) {}), on) << "test routes " << on;
    }
}

// ---- fencing, crashes and the supervisor's bookkeeping (fake clock; the timed tests are below) ----

// A create, start or reboot sent under an older lease epoch than the control plane's latest for the
// host was sent before the host went down and was taken in again: it may have been given up and
// undone without the agent meanwhile (the chaos run saw a thawed agent boot such a create while its
// server ran elsewhere). Refused, retryable; the same call under the current epoch, or without
// one, is done.
TEST_F(ComputeTest, ACallSentUnderAnOlderLeaseEpochIsRefused) {
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Advance(300ms);
    Ok("stop_instance", R"({"id":"i1","host":"h1"})");
    domain_->SetLeaseEpoch("h1", 2000);
    domain_->SetLeaseEpoch("h1", 1500);  // an older answer, late: epochs only grow
    const auto with_epoch = [](std::string input, int64_t epoch) {
        input.pop_back();
        return input + R"(,"lease_epoch":)" + std::to_string(epoch) + "}";
    };
    for (const auto& [action, input] : std::vector<std::pair<std::string, std::string>>{
             {"create_instance", with_epoch(CreateInput("i2", "h1"), 1999)},
             {"start_instance", with_epoch(R"({"id":"i1","host":"h1"})", 1999)},
             {"reboot_instance", with_epoch(R"({"id":"i1","host":"h1"})", 1000)}}) {
        Error e = Fails(action, input);
        EXPECT_EQ(e.code, ErrorCode::kUnavailable) << action;
        EXPECT_TRUE(e.retryable) << action << ": the engine's own retry carries the new epoch";
        EXPECT_NE(e.message.find("stale call: sent under lease epoch"), std::string::npos) << e.message;
    }
    EXPECT_EQ(records_.count({"instances", "i2"}), 0u) << "nothing of the stale create";
    EXPECT_EQ(State("i1"), "SHUTOFF");
    Ok("create_instance", with_epoch(CreateInput("i2", "h1"), 2000));
    Ok("start_instance", with_epoch(R"({"id":"i1","host":"h1"})", 2001));
    Ok("create_instance", CreateInput("i3", "h1"));                 // no epoch: not checked
    Ok("create_instance", with_epoch(CreateInput("i4", "h2"), 5));  // h2 has no epoch yet
    Advance(300ms);
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(State("i2"), "ACTIVE");
}

TEST_F(ComputeTest, AFencedHostStopsWhatRunsAndRefusesWorkUntilStarted) {
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Ok("create_instance", CreateInput("i3", "h2"));
    Ok("create_instance", CreateInput("i4", "h1"));
    Advance(300ms);
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
    EXPECT_EQ(start.ready_at_us, clock_.WallUs() + 200'000);
    EXPECT_EQ(State("i1"), "BUILD");
    Advance(200ms);
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
    Advance(1s);  // past its restart time: the restart is not done
    EXPECT_EQ(State("i1"), "FENCED");
    Ok("start_instance", R"({"id":"i1","host":"h1"})");
    // A stop cancels a pending restart as well.
    Crash("i1");
    EXPECT_EQ(json::parse(Ok("stop_instance", R"({"id":"i1","host":"h1"})").output).at("state"), "SHUTOFF");
    EXPECT_EQ(Instance("i1").at("crashes"), 1) << "a stop keeps the history; a start clears it";
    Advance(1s);
    EXPECT_EQ(State("i1"), "SHUTOFF");
}

TEST_F(ComputeTest, TheSupervisorRestartsExactlyAfterItsBackoffDoublingUpToTheCap) {
    supervisor_.restart_backoff = 100ms;
    supervisor_.max_backoff = 300ms;
    supervisor_.restart_max = 10;
    Make(50ms);
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Advance(50ms);
    for (const Duration backoff : {100ms, 200ms, 300ms, 300ms}) {  // doubled per crash, then capped
        SCOPED_TRACE(std::chrono::duration_cast<Millis>(backoff).count());
        Crash("i1");
        Advance(backoff - 1ms);
        EXPECT_EQ(State("i1"), "CRASHED") << "not 1 ms before the backoff";
        Advance(1ms);
        EXPECT_EQ(State("i1"), "BUILD") << "restarted at the crash + the backoff";
        Advance(50ms);
        EXPECT_EQ(State("i1"), "ACTIVE");
    }
    EXPECT_EQ(Instance("i1").at("crashes"), 4);
}

TEST_F(ComputeTest, TooManyCrashesInTheWindowGiveUpAndReportsWaitForTheirAck) {
    supervisor_.restart_max = 3;
    supervisor_.restart_window = 10s;
    supervisor_.restart_backoff = 0ms;  // restarted at the moment it crashed
    Make(0ms);
    domain_->Bind(context_);
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Ok("stop_instance", R"({"id":"i2","host":"h1"})");
    const auto restarted = [&] {
        Advance(0ms);  // the restart is due now (boots take no time here)
        return State("i1") == "ACTIVE";
    };
    Crash("i1");
    ASSERT_TRUE(restarted());
    Advance(1s);
    Crash("i1");
    ASSERT_TRUE(restarted());
    EXPECT_EQ(Instance("i1").at("crashes"), 2);
    Advance(1s);
    EXPECT_EQ(json::parse(Crash("i1").body).at("instance").at("state"), "ERROR");
    Advance(1s);
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
    Advance(11s);
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
        Advance(0ms);  // restarted at once
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
    Advance(300ms);
    Ok("stop_instance", R"({"id":"i2","host":"h1"})");
    domain_->Bind(context_);
    Crash("i4");
    ASSERT_EQ(State("i4"), "ERROR");
    // i3 died and waits for its restart.
    std::string& i3 = records_.at({"instances", "i3"});
    i3.replace(i3.find(R"("power":"on")"), 12, R"("power":"crashed")");

    leased_ = true;
    auto reloaded = NewDomain(200ms);
    ASSERT_TRUE(kit::test_service::LoadAll(*reloaded, records_));
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

// ---- volumes: recorded by the sim driver (the container driver mounts them) ----

TEST_F(ComputeTest, VolumesAreRecordedAcrossARestartAndDetached) {
    Ok("create_instance", CreateInput("i1", "h1"));
    // The volume service's attachments go as they are (device and all).
    kit::Done done = Ok("attach_volumes", R"({"id":"i1","host":"h1","volumes":[
        {"volume_id":"v1","device":"/dev/vdb","path":"/var/lib/cogs/volumes/v1.img"},
        {"volume_id":"v2","device":"/dev/vdc","path":null}]})");
    EXPECT_EQ(done.wait_for, "") << "the sim driver only records: done at once";
    EXPECT_EQ(json::parse(done.output), json::parse(R"({"id":"i1","host":"h1","volume_ids":["v1","v2"]})"));
    const json::value volumes = json::parse(
        R"([{"volume_id":"v1","path":"/var/lib/cogs/volumes/v1.img"},{"volume_id":"v2","path":""}])");
    EXPECT_EQ(Instance("i1").at("volumes"), volumes);
    // Again (a retry, or an evacuation's attach): the same, nothing twice.
    Ok("attach_volumes", R"({"id":"i1","host":"h1","volumes":[
        {"volume_id":"v1","path":"/var/lib/cogs/volumes/v1.img"}]})");
    EXPECT_EQ(Instance("i1").at("volumes"), volumes);

    auto reloaded = NewDomain(200ms);
    ASSERT_TRUE(kit::test_service::LoadAll(*reloaded, records_));
    domain_ = std::move(reloaded);
    EXPECT_EQ(Instance("i1").at("volumes"), volumes) << "the record keeps them (a reboot mounts them again)";

    EXPECT_EQ(json::parse(Ok("detach_volumes", R"({"id":"i1","host":"h1","volume_ids":["v1","v9"]})").output),
              json::parse(R"({"id":"i1","host":"h1","volume_ids":["v1","v9"]})"));
    EXPECT_EQ(Instance("i1").at("volumes"), json::parse(R"([{"volume_id":"v2","path":""}])"));
    // An instance that is not (or no longer) here has nothing mounted: nothing to detach.
    EXPECT_EQ(json::parse(Ok("detach_volumes", R"({"id":"i9","host":"h1","volume_ids":["v2"]})").output),
              json::parse(R"({"id":"i9","host":"h1","volume_ids":["v2"]})"));
}

TEST_F(ComputeTest, BadVolumeInputIsRefusedNamingTheFieldAndChangesNothing) {
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("attach_volumes", R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v1","path":"/v/v1.img"}]})");
    const auto before = records_;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"id":"i1","host":"h1"})", "volumes: required"},
        {R"({"id":"i1","host":"h1","volumes":{}})", "volumes"},
        {R"({"id":"i1","host":"h1","volumes":[{"path":"/v/x.img"}]})", "volumes[0].volume_id: required"},
        {R"({"id":"i1","host":"h1","volumes":[{"volume_id":"../etc"}]})", "volumes[0].volume_id"},
        {R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v2","path":"v2.img"}]})", "volumes[0].path"},
        {R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v2","path":"/v/../../etc/shadow"}]})",
         "volumes[0].path"},
        {R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v2","size":1}]})",
         "volumes[0].size: unknown field"},
        {R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v2","path":"/a"},{"volume_id":"v2","path":"/b"}]})",
         "volumes[1].volume_id"},
        {R"({"id":"i1","host":"h3","volumes":[]})", "host: this process does not serve host 'h3'"},
    };
    for (const auto& [input, field] : cases) {
        const Error e = Fails("attach_volumes", input);
        EXPECT_EQ(e.code, ErrorCode::kInvalidArgument) << input;
        EXPECT_TRUE(e.message.starts_with(field)) << input << ": " << e.message;
    }
    EXPECT_EQ(Fails("attach_volumes", R"({"id":"i9","host":"h1","volumes":[]})").code, ErrorCode::kNotFound);
    // The same volume from another file: not the volume attached.
    EXPECT_EQ(Fails("attach_volumes",
                    R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v1","path":"/w/v1.img"}]})")
                  .code,
              ErrorCode::kFailedPrecondition);
    EXPECT_EQ(Fails("detach_volumes", R"({"id":"i1","host":"h1"})").message, "volume_ids: required");
    EXPECT_EQ(records_, before);
    EXPECT_EQ(Instance("i1").at("volumes"), json::parse(R"([{"volume_id":"v1","path":"/v/v1.img"}])"));
}

// ---- a driver whose instances live on their own (Boot answers kUntilReported) ----

// What the fake reporting driver was asked, and its DriverEvents to report through.
struct DriverLog {
    std::vector<std::string>
        calls;  // "boot i1", "stop i1", "poweroff i1", "delete i1", "adopt i1", "volumes i1 v1 v2"
    std::vector<uint64_t> tickets;  // of the SyncVolumes calls
    DriverEvents* events = nullptr;
};

class ReportingDriver final : public ComputeDriver {
public:
    explicit ReportingDriver(std::shared_ptr<DriverLog> log) : log_(std::move(log)) {}
    std::string_view name() const override { return "reporting"; }
    Result<Millis> Boot(const InstanceSpec& i) override {
        log_->calls.push_back("boot " + i.id + " " + i.name);
        return kUntilReported;
    }
    Status Stop(const InstanceSpec& i) override {
        log_->calls.push_back("stop " + i.id);
        return cogs::Ok();
    }
    Status PowerOff(const InstanceSpec& i) override {
        log_->calls.push_back("poweroff " + i.id);
        return cogs::Ok();
    }
    Status Delete(const InstanceSpec& i) override {
        log_->calls.push_back("delete " + i.id);
        return cogs::Ok();
    }
    bool adopts() const override { return true; }
    void Bind(boost::asio::io_context&, DriverEvents& events) override { log_->events = &events; }
    void Adopt(const InstanceSpec& i) override { log_->calls.push_back("adopt " + i.id); }
    Result<bool> SyncVolumes(const InstanceSpec& i, uint64_t ticket) override {
        std::string ids;
        for (const VolumeMount& v : i.volumes) {
            ids += " " + v.volume_id;
        }
        log_->calls.push_back("volumes " + i.id + ids);
        log_->tickets.push_back(ticket);
        return true;
    }

private:
    std::shared_ptr<DriverLog> log_;
};

class ComputeReportingDriverTest : public ComputeTest {
protected:
    Domain NewReporting() {
        ComputeOptions options;
        options.hosts = {HostSpec{.name = "h1"}, HostSpec{.name = "h2"}};
        options.clock = &clock_;
        options.leased = leased_;
        options.test_routes = true;  // the crash route
        options.supervisor = supervisor_;
        log_ = std::make_shared<DriverLog>();
        auto domain = MakeComputeDomain(std::move(options), std::make_unique<ReportingDriver>(log_));
        EXPECT_TRUE(domain) << domain.error().ToString();
        Domain d(std::move(*domain));
        return d;
    }
    void SetUp() override {
        supervisor_.restart_backoff = 100ms;
        domain_ = NewReporting();
        domain_->Bind(context_);
    }
    DriverEvents& Events() const { return *log_->events; }
    // The long actions the domain finished, as "name=output" or "name!error".
    std::vector<std::string> Finished() const {
        std::vector<std::string> out;
        for (const auto& [name, r] : context_.finished_) {
            out.push_back(r ? name + "=" + *r : name + "!" + r.error().ToString());
        }
        return out;
    }

    std::shared_ptr<DriverLog> log_;
};

TEST_F(ComputeReportingDriverTest, ABootEndsWhenTheDriverReportsItRunning) {
    kit::Done done = Ok("create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":64,"disk_gb":0,
                                              "image":"busybox","name":"web"})");
    EXPECT_EQ(done.wait_for, "instance/i1");
    EXPECT_EQ(done.ready_at_us, 0);
    EXPECT_EQ(log_->calls, std::vector<std::string>{"boot i1 web"}) << "the driver gets the name";
    Advance(std::chrono::hours(1));
    EXPECT_EQ(State("i1"), "BUILD") << "no clock ends it";
    EXPECT_TRUE(Instance("i1").at("ready_at_ms").is_null());
    EXPECT_EQ(Ok("create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":64,"disk_gb":0,
                                        "image":"busybox","name":"web"})")
                  .wait_for,
              "instance/i1")
        << "the same boot";
    Events().Running("i1");
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Finished(),
              std::vector<std::string>{R"(instance/i1={"id":"i1","host":"h1","state":"ACTIVE"})"});
    EXPECT_NE(records_.at({"instances", "i1"}).find(R"("power":"on")"), std::string::npos);
    Events().Running("i1");  // again (a late report): nothing
    EXPECT_EQ(Finished().size(), 1u);
    EXPECT_EQ(Ok("create_instance", R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":64,"disk_gb":0,
                                        "image":"busybox","name":"web"})")
                  .wait_for,
              "")
        << "running: answered at once";
}

TEST_F(ComputeReportingDriverTest, ABootThatFailsForGoodIsAnErrorARetryableOneACrash) {
    Ok("create_instance", CreateInput("i1", "h1"));
    Ok("create_instance", CreateInput("i2", "h1"));
    Events().BootFailed("i1", Error(ErrorCode::kFailedPrecondition, "image 'cirros' is not on this host"));
    EXPECT_EQ(State("i1"), "ERROR");
    EXPECT_EQ(Finished(), std::vector<std::string>{
                              "instance/i1!failed_precondition: instance i1 is in ERROR: it could not boot: "
                              "image 'cirros' is not on this host"});
    EXPECT_NE(domain_->HeartbeatBody("h1").find("instance could not boot"), std::string::npos);

    Events().BootFailed("i2", Error(ErrorCode::kUnavailable, "the driver is busy"));
    EXPECT_EQ(State("i2"), "CRASHED");
    EXPECT_EQ(Finished().size(), 1u) << "still booting, for the supervisor";
    Advance(100ms);
    EXPECT_EQ(State("i2"), "BUILD");
    EXPECT_EQ(log_->calls.back(), "boot i2 ");
    Events().Running("i2");
    EXPECT_EQ(State("i2"), "ACTIVE");
    EXPECT_EQ(Finished().back(), R"(instance/i2={"id":"i2","host":"h1","state":"ACTIVE"})");
}

TEST_F(ComputeReportingDriverTest, AnInstanceThatEndsOnItsOwnIsRestartedByTheSupervisor) {
    Ok("create_instance", CreateInput("i1", "h1"));
    Events().Running("i1");
    Events().Exited("i1", "its process ended, status 137");
    EXPECT_EQ(State("i1"), "CRASHED");
    Advance(99ms);
    EXPECT_EQ(State("i1"), "CRASHED");
    Advance(1ms);
    EXPECT_EQ(State("i1"), "BUILD");
    EXPECT_EQ(log_->calls, (std::vector<std::string>{"boot i1 ", "boot i1 "}));
    Events().Running("i1");
    EXPECT_EQ(State("i1"), "ACTIVE");
    EXPECT_EQ(Instance("i1").at("crashes"), 1);

    // Stopped: what the driver says about the old boot afterwards is late and changes nothing.
    Ok("stop_instance", R"({"id":"i1","host":"h1"})");
    Events().Exited("i1", "its process ended, status 143");
    Events().Running("i1");
    EXPECT_EQ(State("i1"), "SHUTOFF");
    EXPECT_EQ(Instance("i1").at("crashes"), 1);
}

TEST_F(ComputeReportingDriverTest, WhatWaitsForABootEndsWithAStopAFenceOrADelete) {
    for (const char* id : {"i1", "i2", "i3"}) {
        Ok("create_instance", CreateInput(id, id == std::string("i2") ? "h2" : "h1"));
    }
    Ok("stop_instance", R"({"id":"i1","host":"h1"})");
    domain_->SetFenced("h2", true);
    Ok("delete_instance", R"({"id":"i3","host":"h1"})");
    EXPECT_EQ(Finished(), (std::vector<std::string>{
                              R"(instance/i1={"id":"i1","host":"h1","state":"SHUTOFF"})",
                              R"(instance/i2={"id":"i2","host":"h2","state":"FENCED"})",
                              "instance/i3!failed_precondition: instance i3 was deleted before it booted"}));
}

// A fenced host's instances are powered off (no graceful stop: the control plane may rebuild them
// elsewhere a fence window after the lease's end); a stop action stops them gracefully.
TEST_F(ComputeReportingDriverTest, FencingPowersOffWhatRunsAndAStopStopsGracefully) {
    for (const char* id : {"i1", "i2", "i3"}) {
        Ok("create_instance", CreateInput(id, "h1"));
        Events().Running(id);
    }
    log_->calls.clear();
    Ok("stop_instance", R"({"id":"i3","host":"h1"})");
    EXPECT_EQ(domain_->SetFenced("h1", true), 2u);
    EXPECT_EQ(log_->calls, (std::vector<std::string>{"stop i3", "poweroff i1", "poweroff i2"}));
    EXPECT_EQ(State("i1"), "FENCED");
    EXPECT_EQ(State("i3"), "SHUTOFF");
}

TEST_F(ComputeReportingDriverTest, AtStartWhatRanIsAdoptedEvenLeasedAndWhatIsGoneIsFenced) {
    for (const char* id : {"i1", "i2", "i3", "i4"}) {
        Ok("create_instance", CreateInput(id, "h1"));
        Events().Running(id);
    }
    Ok("stop_instance", R"({"id":"i4","host":"h1"})");

    leased_ = true;  // with --control-url: the hosts start fenced
    auto reloaded = NewReporting();
    ASSERT_TRUE(kit::test_service::LoadAll(*reloaded, records_));
    domain_ = std::move(reloaded);
    domain_->Bind(context_);
    EXPECT_EQ(log_->calls, (std::vector<std::string>{"adopt i1", "adopt i2", "adopt i3"}));
    for (const char* id : {"i1", "i2", "i3"}) {
        EXPECT_EQ(State(id), "ACTIVE") << id << ": as it was until the driver says otherwise";
    }
    Events().Running("i1");
    Events().Exited("i2", "its process ended, status 137");
    Events().Gone("i3");
    EXPECT_EQ(State("i1"), "ACTIVE") << "adopted, not restarted";
    EXPECT_EQ(State("i2"), "FENCED") << "ended on a host without a lease: not restarted";
    EXPECT_EQ(State("i3"), "FENCED") << "the machine restarted";
    EXPECT_EQ(State("i4"), "SHUTOFF");
    EXPECT_EQ(log_->calls.size(), 3u) << "nothing booted";
    EXPECT_NE(records_.at({"instances", "i3"}).find(R"("power":"fenced")"), std::string::npos);

    EXPECT_EQ(Fails("start_instance", R"({"id":"i3","host":"h1"})").code, ErrorCode::kUnavailable)
        << "fenced until its first lease";
}

TEST(ComputeWorkerPoolTest, OneKeysTasksRunInOrderOneAtATimeAndTheQueueIsBounded) {
    std::mutex mu;
    std::vector<std::string> log;
    std::map<std::string, int> running;
    bool overlap = false;
    {
        internal::WorkerPool pool(3, 100);
        for (int k = 0; k < 5; ++k) {
            for (const char* key : {"a", "b", "c"}) {
                EXPECT_TRUE(pool.Run(key, [&, key, k] {
                    {
                        std::lock_guard lock(mu);
                        overlap = overlap || running[key]++ > 0;
                    }
                    std::this_thread::sleep_for(1ms);  // widens any overlap; no result depends on it
                    std::lock_guard lock(mu);
                    --running[key];
                    log.push_back(std::string(key) + std::to_string(k));
                }));
            }
        }
        while (pool.queued() > 0) {
            std::this_thread::sleep_for(1ms);  // waiting for the workers, not for time to pass
        }
    }  // the destructor waits for what runs
    EXPECT_FALSE(overlap) << "one key's tasks one at a time";
    std::map<char, std::string> order;
    for (const std::string& e : log) {
        order[e[0]] += e.substr(1);
    }
    EXPECT_EQ(order, (std::map<char, std::string>{{'a', "01234"}, {'b', "01234"}, {'c', "01234"}}));

    std::atomic<bool> go{false};  // before the pool, whose worker reads it until the pool is gone
    internal::WorkerPool small(1, 2);
    EXPECT_TRUE(small.Run("x", [&] {
        while (!go) {
            std::this_thread::sleep_for(1ms);
        }
    }));
    for (int spins = 0; small.queued() > 0 && spins < 60'000; ++spins) {
        std::this_thread::sleep_for(1ms);  // until the worker took it
    }
    EXPECT_TRUE(small.Run("y", [] {}));
    EXPECT_TRUE(small.Run("z", [] {}));
    auto refused = small.Run("w", [] {});
    go = true;  // before any assertion may return
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(refused.error().retryable);
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
    void TearDown() override {
        service_.reset();
        io_.restart();
        io_.poll();
    }

    void StartService() {
        service_.reset();
        ComputeOptions options;
        options.hosts = {HostSpec{"sim-1", "nova", 4, 8192, 100, {}},
                         HostSpec{"sim-2", "nova", 4, 8192, 100, {}}};
        options.clock = &clock_;
        auto domain = MakeComputeDomain(options, *MakeComputeDriver("sim", ComputeDriverOptions{Millis(40)}));
        ASSERT_TRUE(domain);
        kit::ServiceOptions service_options;
        service_options.state_path = dir_ / "state.db";
        service_options.metrics = &metrics_;
        service_options.clock = &clock_;
        auto s = kit::DomainService::Create(io_, std::move(*domain), service_options);
        ASSERT_TRUE(s) << s.error().ToString();
        service_ = std::move(*s);
    }

    Result<workflow::ActionReply> Call(std::string action, std::string key, std::string input) {
        return kit::test_service::Call(io_, *service_, std::move(action), std::move(key), std::move(input));
    }
    Result<workflow::ActionReply> StatusOf(std::string key) {
        return kit::test_service::StatusOf(io_, *service_, std::move(key));
    }
    std::string ServedInventory() { return kit::test_service::GetBody(*service_, "/v1/inventory"); }

    const cogs::testing::TempDir dir_{"cogs-compute-test"};
    observe::Metrics metrics_;  // outlives the service, which counts into it
    runtime::FakeClock clock_;  // the domain's and the service's: a boot ends when the test says
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
    // The status, as the engine polls it: accepted until the boot has ended (40 ms), then the output.
    clock_.Advance(39ms);
    Result<workflow::ActionReply> status = StatusOf("wf1/boot/do");
    ASSERT_TRUE(status) << status.error().ToString();
    EXPECT_TRUE(status->accepted);
    EXPECT_NE(ServedInventory().find(R"("state":"BUILD")"), std::string::npos);
    clock_.Advance(1ms);
    status = StatusOf("wf1/boot/do");
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

// ---- the agent and the lease, against a fake control plane ----
//
// The control plane is a real HTTP server on loopback, so the exchanges take real time and the tests
// wait for them by condition. The agent's timers (retries, heartbeats, the lease) and the
// supervisor's run on a FakeClock that only the test moves, and it stands still while a request is
// on the wire: every assertion about time is exact, and none depends on the machine's speed.

// One request the control plane got, at the fake time it came: its send time.
struct Seen {
    std::string method;
    std::string path;
    std::string host;  // of /v1/hosts/{host}[/heartbeat]
    std::string authorization;
    std::string body;
    SteadyTime at;
    int status = 0;  // what it was answered
    int plane = 0;   // which control plane got it: 0 control_, 1 control2_
};

class ControlPlaneTest : public ::testing::Test {
protected:
    static constexpr std::string_view kHostsPrefix = "/v1/hosts/";
    static constexpr std::string_view kHeartbeat = "/heartbeat";

    void SetUp() override {
        auto server = StartControlPlane(0);
        ASSERT_TRUE(server) << server.error().ToString();
        control_ = std::move(*server);
    }

    // A second control plane (a second replica): the agent is given both urls, control_'s first.
    void AddSecondControlPlane() {
        auto server = StartControlPlane(1);
        ASSERT_TRUE(server) << server.error().ToString();
        control2_ = std::move(*server);
    }

    Result<std::unique_ptr<http::Server>> StartControlPlane(int plane) {
        return http::StartServer(
            io_, http::ServerOptions{}, [this, plane](http::Request req, http::Respond respond) {
                Seen seen{req.method, req.Path(), "", req.Header("authorization"), req.body, clock_.Now()};
                seen.plane = plane;
                seen.host = seen.path.substr(kHostsPrefix.size());
                if (seen.host.ends_with(kHeartbeat)) {
                    seen.host.resize(seen.host.size() - kHeartbeat.size());
                }
                seen.status = status_ ? status_(seen) : 200;
                http::Response r;
                r.status = seen.status;
                if (r.status >= 300) {
                    r.body = R"({"code":")" + error_code_ + R"(","message":"no"})";
                } else if (batches_ && seen.path == "/v1/heartbeats") {
                    // As cogsd answers a batch: each entry its own lease, or its own error.
                    json::array parts;
                    const json::value batch = json::parse(req.body);
                    for (const auto& e : batch.at("hosts").as_array()) {
                        const std::string name(e.at("name").as_string());
                        json::object part{{"name", name}};
                        if (auto err = batch_errors_.find(name); err != batch_errors_.end()) {
                            part["error"] =
                                json::object{{"code", "x"}, {"message", "no"}, {"status", err->second}};
                        } else {
                            part["lease_ttl_ms"] = lease_ttl_ms_;
                            part["lease_epoch"] = lease_epoch_;
                            part["acked_seq"] = acked_seq_;
                        }
                        parts.push_back(std::move(part));
                    }
                    r.body = json::serialize(json::object{{"lease_ttl_ms", lease_ttl_ms_},
                                                          {"renew_interval_ms", lease_ttl_ms_ / 3},
                                                          {"hosts", std::move(parts)}});
                } else if (r.status != 204) {
                    // A heartbeat's answer renews the lease for lease_ttl_ms and acknowledges reports.
                    r.body = req.method != "POST"
                                 ? "{}"
                                 : json::serialize(json::object{{"lease_ttl_ms", lease_ttl_ms_},
                                                                {"lease_epoch", lease_epoch_},
                                                                {"acked_seq", acked_seq_}});
                }
                seen_.push_back(std::move(seen));
                respond(std::move(r));
            });
    }

    void TearDown() override {
        agent_.reset();
        control_->Stop();
        if (control2_ != nullptr) {
            control2_->Stop();
        }
        io_.restart();
        io_.poll();
    }

    std::string UrlOf(const http::Server& s) const { return "http://127.0.0.1:" + std::to_string(s.port()); }

    // Starts an agent with `options` on the fake clock, against this control plane (and the second).
    void StartAgent(AgentOptions options) {
        options.control_urls = {UrlOf(*control_)};
        if (control2_ != nullptr) {
            options.control_urls.push_back(UrlOf(*control2_));
        }
        options.clock = &clock_;
        options.request_timeout = kit::test_service::kPatience;  // no exchange times out on a slow machine
        auto agent = HostAgent::Start(io_, std::move(options));
        ASSERT_TRUE(agent) << agent.error().ToString();
        agent_ = std::move(*agent);
    }

    bool RunUntil(const std::function<bool()>& done) { return kit::test_service::RunUntil(io_, done); }

    // Runs io until every request the agent sent has been answered and handled.
    void Settle() {
        io_.restart();
        io_.poll();  // what was posted (the first registrations) runs and sends
        if (agent_ == nullptr) {
            return;
        }
        ASSERT_TRUE(RunUntil([&] {
            const AgentStats s = agent_->stats();
            return s.registrations + s.registration_failures == s.registrations_sent &&
                   s.heartbeats + s.heartbeat_failures == s.heartbeats_sent;
        })) << "the agent's requests were not all answered";
    }

    // Moves the fake clock to `t` as over an instant network: to each timer's moment in turn, letting
    // the exchanges it started finish before the clock moves on.
    void AdvanceTo(SteadyTime t) {
        for (auto next = clock_.NextDeadline(); next && *next <= t; next = clock_.NextDeadline()) {
            clock_.Advance(std::max(Duration::zero(), *next - clock_.Now()));
            Settle();
        }
        clock_.Advance(std::max(Duration::zero(), t - clock_.Now()));
        Settle();
    }
    void AdvanceBy(Duration d) { AdvanceTo(clock_.Now() + d); }

    // The requests of `method` to `path`.
    std::vector<Seen> Of(const std::string& method, const std::string& path) const {
        std::vector<Seen> out;
        std::copy_if(seen_.begin(), seen_.end(), std::back_inserter(out),
                     [&](const Seen& s) { return s.method == method && s.path == path; });
        return out;
    }

    runtime::FakeClock clock_;
    boost::asio::io_context io_;
    std::unique_ptr<http::Server> control_;
    std::unique_ptr<http::Server> control2_;  // null unless AddSecondControlPlane
    std::function<int(const Seen&)> status_;  // what to answer; empty: 200
    std::string error_code_ = "x";            // the "code" of an answer >= 300
    int64_t lease_ttl_ms_ = 3000;
    bool batches_ = false;                     // answer POST /v1/heartbeats as cogsd does (else as any POST)
    std::map<std::string, int> batch_errors_;  // hosts whose batch entry is this error status
    int64_t lease_epoch_ = 0;                  // 0: as an older control plane, none
    uint64_t acked_seq_ = 0;
    std::vector<Seen> seen_;
    std::unique_ptr<HostAgent> agent_;
};

class AgentTest : public ControlPlaneTest {
protected:
    void SetUp() override {
        ControlPlaneTest::SetUp();
        options_.token = "s3cret";
        options_.advertise_url = "http://127.0.0.1:7000";
        options_.hosts = {HostSpec{"h1", "nova", 16, 65536, 1000, {"CUSTOM_A", "CUSTOM_B"}}};
        options_.heartbeat_interval = 20ms;
        options_.min_backoff = 10ms;
        options_.max_backoff = 40ms;
        options_.slow_retry = 60ms;
    }

    void StartAgent() {
        ControlPlaneTest::StartAgent(options_);
        Settle();
    }

    std::vector<Seen> Puts() const { return Of("PUT", "/v1/hosts/h1"); }
    std::vector<Seen> Beats() const { return Of("POST", "/v1/hosts/h1/heartbeat"); }

    AgentOptions options_;
};

TEST(ParseHttpUrlTest, AcceptsHostPortOnly) {
    EXPECT_EQ(*ParseHttpUrl("http://127.0.0.1:8080"),
              std::make_pair(std::string("127.0.0.1"), uint16_t{8080}));
    EXPECT_EQ(*ParseHttpUrl("http://localhost:1/"), std::make_pair(std::string("localhost"), uint16_t{1}));
    EXPECT_EQ(ParseHttpUrl("http://[::1]:9")->first, "::1");
    EXPECT_EQ(*ParseHttpUrl("https://cogsd.example:8443"),
              std::make_pair(std::string("cogsd.example"), uint16_t{8443}));
    for (const char* bad : {"ftp://a:1", "https://a", "http://a", "http://a:0", "http://a:70000",
                            "http://a:1/v1", "a:1", "http://:1"}) {
        EXPECT_FALSE(ParseHttpUrl(bad)) << bad;
    }
}

TEST_F(AgentTest, RegistersEveryHostWithItsSpec) {
    options_.hosts.push_back(HostSpec{"h2", "az2", 4, 1024, 10, {}});
    StartAgent();
    EXPECT_EQ(agent_->registered_hosts(), 2u);
    auto h1 = Puts();
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

// Batched renewals (agent.h, 2.): the hosts of one process renew in one request, each with its own
// token, each reading its own part of the answer; the pace is the control plane's.
TEST_F(AgentTest, BatchedRenewalsGoInOneRequestAtTheControlPlanesPace) {
    batches_ = true;
    lease_ttl_ms_ = 600;         // renew_interval_ms 200
    options_.lease_ttl = 600ms;  // before the first answer too
    options_.token.clear();
    options_.heartbeat_interval = Duration::zero();
    options_.batch_renewals = true;
    options_.hosts.push_back(HostSpec{"h2", "nova", 4, 1024, 10, {}});
    options_.hosts.push_back(HostSpec{"h3", "nova", 4, 1024, 10, {}});
    options_.host_tokens = {{"h1", "t1"}, {"h2", "t2"}, {"h3", "t3"}};
    StartAgent();
    ASSERT_EQ(agent_->registered_hosts(), 3u);
    AdvanceBy(1s);
    const auto batches = Of("POST", "/v1/heartbeats");
    ASSERT_GE(batches.size(), 4u) << "a renewal every 200 ms";
    EXPECT_LE(batches.size(), 6u) << "not faster than the control plane asks";
    EXPECT_TRUE(Beats().empty()) << "no per-host heartbeat";
    const Seen& last = batches.back();
    const json::array hosts = json::parse(last.body).at("hosts").as_array();
    ASSERT_EQ(hosts.size(), 3u) << "the three hosts fall into one batch: " << last.body;
    EXPECT_EQ(last.authorization, "Bearer t1") << "the first host's token is the request's";
    EXPECT_FALSE(hosts[0].as_object().contains("token"));
    EXPECT_EQ(hosts[1].at("token"), "t2");
    EXPECT_EQ(hosts[2].at("token"), "t3");
    EXPECT_EQ(agent_->stats().heartbeats, agent_->stats().heartbeats_sent);
    EXPECT_LT(agent_->stats().batches_sent, agent_->stats().heartbeats_sent);

    // The control plane forgot h2 (its entry 404): h2 alone registers again.
    batch_errors_ = {{"h2", 404}};
    const size_t puts1 = Puts().size(), puts2 = Of("PUT", "/v1/hosts/h2").size();
    AdvanceBy(250ms);
    EXPECT_EQ(Of("PUT", "/v1/hosts/h2").size(), puts2 + 1);
    EXPECT_EQ(Puts().size(), puts1) << "h1 renewed by the same answer";
    EXPECT_EQ(agent_->stats().reregistrations, 1u);
}

TEST_F(AgentTest, BatchedRenewalsFallBackToOneHeartbeatPerHostOnAnOlderControlPlane) {
    status_ = [](const Seen& s) { return s.path == "/v1/heartbeats" ? 404 : 200; };
    options_.batch_renewals = true;
    options_.hosts.push_back(HostSpec{"h2", "nova", 4, 1024, 10, {}});
    StartAgent();
    AdvanceBy(100ms);
    EXPECT_EQ(Of("POST", "/v1/heartbeats").size(), 1u) << "tried once";
    EXPECT_GE(Beats().size(), 4u) << "then h1's own heartbeats, at once and every 20 ms";
    EXPECT_GE(Of("POST", "/v1/hosts/h2/heartbeat").size(), 4u);
    EXPECT_EQ(agent_->stats().reregistrations, 0u) << "the route's 404 is no host's";
    EXPECT_EQ(agent_->fenced_hosts(), 0u);
}

TEST_F(AgentTest, RetriesRegistrationWithGrowingBackoff) {
    int puts = 0;
    status_ = [&](const Seen& s) { return s.method == "PUT" && ++puts <= 4 ? 503 : 200; };
    StartAgent();
    // Waits of 10, 20, 40 and 40 ms: doubling from min_backoff, capped at max_backoff.
    for (const Duration wait : {10ms, 20ms, 40ms, 40ms}) {
        const size_t tries = Puts().size();
        AdvanceBy(wait - 1ms);
        EXPECT_EQ(Puts().size(), tries) << "not 1 ms early";
        AdvanceBy(1ms);
        ASSERT_EQ(Puts().size(), tries + 1);
    }
    auto tries = Puts();
    EXPECT_EQ(tries[1].at - tries[0].at, 10ms);
    EXPECT_EQ(tries[2].at - tries[1].at, 20ms);
    EXPECT_EQ(tries[3].at - tries[2].at, 40ms);
    EXPECT_EQ(tries[4].at - tries[3].at, 40ms);
    EXPECT_EQ(agent_->stats().registration_failures, 4u);
    EXPECT_EQ(agent_->stats().registrations, 1u);
    EXPECT_EQ(agent_->registered_hosts(), 1u);
}

TEST_F(AgentTest, ARefusedRegistrationIsRetriedSlowly) {
    int puts = 0;
    status_ = [&](const Seen& s) { return s.method == "PUT" && ++puts == 1 ? 400 : 200; };
    StartAgent();
    AdvanceBy(59ms);
    EXPECT_EQ(Puts().size(), 1u) << "slow_retry, not min_backoff";
    AdvanceBy(1ms);
    ASSERT_EQ(Puts().size(), 2u);
    EXPECT_EQ(agent_->registered_hosts(), 1u);
}

TEST_F(AgentTest, HeartbeatsAtItsCadence) {
    status_ = [](const Seen& s) { return s.method == "POST" ? 204 : 200; };
    StartAgent();
    for (size_t k = 1; k <= 5; ++k) {
        AdvanceBy(19ms);
        EXPECT_EQ(Beats().size(), k - 1) << "not 1 ms early";
        AdvanceBy(1ms);
        ASSERT_EQ(Beats().size(), k);
    }
    // Sent an interval apart, from the registration on.
    auto beats = Beats();
    const SteadyTime registered = Puts().at(0).at;
    for (size_t i = 0; i < beats.size(); ++i) {
        EXPECT_EQ(beats[i].at - registered, Millis(20 * static_cast<int64_t>(i + 1))) << i;
    }
    EXPECT_EQ(beats[0].body, "{}");
    EXPECT_EQ(beats[0].authorization, "Bearer s3cret");
    EXPECT_EQ(agent_->stats().heartbeats, 5u);
    EXPECT_EQ(agent_->stats().heartbeat_failures, 0u);
}

TEST_F(AgentTest, RegistersAgainAtOnceWhenTheControlPlaneForgetsTheHost) {
    int beats = 0;
    status_ = [&](const Seen& s) { return s.method == "POST" && ++beats == 2 ? 404 : 200; };
    StartAgent();
    AdvanceBy(60ms);  // three heartbeats
    auto puts = Puts();
    auto hb = Beats();
    ASSERT_EQ(puts.size(), 2u);
    ASSERT_EQ(hb.size(), 3u);
    EXPECT_EQ(puts[1].at, hb[1].at) << "registered again at the 404";
    EXPECT_EQ(hb[2].at - puts[1].at, 20ms) << "and heartbeats again from there";
    EXPECT_EQ(agent_->stats().reregistrations, 1u);
    EXPECT_EQ(agent_->stats().registrations, 2u);
}

TEST_F(AgentTest, HeartbeatFailuresDoNotStopTheHeartbeats) {
    int beats = 0;
    status_ = [&](const Seen& s) { return s.method == "POST" && ++beats <= 2 ? 503 : 204; };
    StartAgent();
    AdvanceBy(60ms);
    auto hb = Beats();
    ASSERT_EQ(hb.size(), 3u);
    EXPECT_EQ(hb[1].at - hb[0].at, 20ms) << "at their pace";
    EXPECT_EQ(hb[2].at - hb[1].at, 20ms);
    EXPECT_EQ(agent_->stats().heartbeat_failures, 2u);
    EXPECT_EQ(agent_->stats().heartbeats, 1u);
    EXPECT_EQ(Puts().size(), 1u);  // a 503 is not a forgotten host
}

TEST_F(AgentTest, AnUnreachableControlPlaneIsRetriedAndStopEndsEverything) {
    // A port nobody listens on any more.
    control_->Stop();
    io_.restart();
    io_.poll();
    StartAgent();
    AdvanceBy(70ms);  // tries at 0, 10, 30 and 70 ms
    EXPECT_EQ(agent_->stats().registration_failures, 4u);
    EXPECT_EQ(agent_->registered_hosts(), 0u);
    agent_->Stop();
    io_.restart();
    io_.poll();
    EXPECT_EQ(clock_.armed(), 0u) << "no timer left";
    clock_.Advance(1h);
    io_.restart();
    io_.poll();
    EXPECT_EQ(agent_->stats().registrations_sent, 4u) << "nothing runs after Stop";
}

TEST_F(AgentTest, DestroyedWhileRequestsAreInFlight) {
    options_.hosts.clear();
    for (int i = 0; i < 50; ++i) {
        options_.hosts.push_back(HostSpec{"sim-" + std::to_string(i), "nova", 1, 1, 1, {}});
    }
    ControlPlaneTest::StartAgent(options_);
    ASSERT_TRUE(RunUntil([&] { return !seen_.empty(); }));
    agent_.reset();  // requests of the other hosts still in flight: their callbacks must find nothing
    kit::test_service::RunFor(io_, 50ms);
    EXPECT_GE(seen_.size(), 1u);
}

// Two replicas of the control plane: the agent sends to the first until it fails (no answer, or
// 502/503/504), then to the second, and back. A heartbeat that failed so is sent again at once to the
// next one, and after a whole round of failures after min_backoff (capped at half the interval)
// instead of at the next beat. Other answers (500, 4xx) keep it where it is, at its pace.
TEST_F(AgentTest, FailsOverBetweenControlPlanes) {
    AddSecondControlPlane();
    std::map<int, int> answer = {{0, 200}, {1, 200}};  // by plane
    status_ = [&](const Seen& s) { return answer[s.plane]; };
    StartAgent();
    ASSERT_EQ(Puts().size(), 1u);
    EXPECT_EQ(Puts()[0].plane, 0) << "the first url first";
    AdvanceBy(20ms);
    ASSERT_EQ(Beats().size(), 1u);
    EXPECT_EQ(Beats()[0].plane, 0);

    answer[0] = 503;  // the first replica is unavailable
    AdvanceBy(20ms);
    auto beats = Beats();
    ASSERT_EQ(beats.size(), 3u);
    EXPECT_EQ(beats[1].plane, 0);
    EXPECT_EQ(beats[2].plane, 1) << "sent again to the second";
    EXPECT_EQ(beats[2].at, beats[1].at) << "at once";
    EXPECT_EQ(beats[2].status, 200);
    EXPECT_EQ(agent_->current_control_url(), UrlOf(*control2_));
    AdvanceBy(60ms);
    beats = Beats();
    ASSERT_EQ(beats.size(), 6u);
    for (size_t i = 3; i < beats.size(); ++i) {
        EXPECT_EQ(beats[i].plane, 1) << i;
        EXPECT_EQ(beats[i].at - beats[i - 1].at, 20ms) << "back at its pace: " << i;
    }

    // Both unavailable: a round (both urls at once), then a round every min_backoff (10 ms, which is
    // also half the interval) rather than every beat.
    answer[1] = 503;
    size_t from = Beats().size();
    AdvanceBy(40ms);
    beats = Beats();
    ASSERT_EQ(beats.size(), from + 6);
    const SteadyTime round = beats[from].at;
    for (size_t k = 0; k < 6; ++k) {
        EXPECT_EQ(beats[from + k].plane, k % 2 == 0 ? 1 : 0) << k;
        EXPECT_EQ(beats[from + k].at - round, Millis(10 * static_cast<int64_t>(k / 2))) << k;
    }

    answer[0] = 200;
    answer[1] = 200;
    AdvanceBy(20ms);
    const int plane = Beats().back().plane;
    EXPECT_EQ(Beats().back().status, 200);
    answer[plane] = 500;  // an error, not an unavailable replica: no move, no hurry
    from = Beats().size();
    AdvanceBy(40ms);
    beats = Beats();
    ASSERT_EQ(beats.size(), from + 2);
    EXPECT_EQ(beats[from].plane, plane);
    EXPECT_EQ(beats[from + 1].plane, plane);
    EXPECT_EQ(beats[from + 1].at - beats[from].at, 20ms);
    answer[plane] = 200;
    AdvanceBy(20ms);
    EXPECT_EQ(Beats().back().plane, plane) << "still there";

    // The replica in use dies: its connections close, new ones are refused; the beat goes to the other.
    (plane == 1 ? control2_ : control_)->Stop();
    io_.restart();
    io_.poll();
    from = Beats().size();
    const uint64_t failures = agent_->stats().heartbeat_failures;
    AdvanceBy(20ms);
    beats = Beats();
    ASSERT_EQ(beats.size(), from + 1) << "the failed beat never reached a server";
    EXPECT_EQ(beats.back().plane, 1 - plane);
    EXPECT_EQ(beats.back().status, 200);
    EXPECT_EQ(agent_->stats().heartbeat_failures, failures + 1);
    EXPECT_EQ(agent_->current_control_url(), UrlOf(plane == 1 ? *control_ : *control2_));
    EXPECT_EQ(agent_->stats().registrations, 1u) << "a failover is not a new registration";
    EXPECT_EQ(Puts().size(), 1u);
}

// A 502 or 504 moves to the next url too; a registration that fails moves it as well.
TEST_F(AgentTest, RegistersThroughTheNextControlPlaneWhenTheFirstIsAGatewayError) {
    AddSecondControlPlane();
    status_ = [](const Seen& s) { return s.plane == 0 ? 502 : 200; };
    StartAgent();
    AdvanceBy(10ms);  // min_backoff
    auto puts = Puts();
    ASSERT_EQ(puts.size(), 2u);
    EXPECT_EQ(puts[0].plane, 0);
    EXPECT_EQ(puts[1].plane, 1);
    EXPECT_EQ(agent_->registered_hosts(), 1u);
    status_ = [](const Seen& s) { return s.plane == 1 ? 504 : 200; };
    AdvanceBy(20ms);
    EXPECT_EQ(agent_->current_control_url(), UrlOf(*control_));
}

TEST(AgentStartTest, RefusesBadOptions) {
    boost::asio::io_context io;
    AgentOptions o;
    o.hosts = {HostSpec{"h1", "nova", 1, 1, 1, {}}};
    EXPECT_FALSE(HostAgent::Start(io, o)) << "no control url";
    o.control_urls = {"ftp://x:1"};
    EXPECT_FALSE(HostAgent::Start(io, o));
    o.control_urls = {"http://127.0.0.1:1", "http://a"};
    EXPECT_FALSE(HostAgent::Start(io, o)) << "every url is checked";
    o.control_urls = {"https://127.0.0.1:1"};
    EXPECT_FALSE(HostAgent::Start(io, o)) << "https without a TLS context";
    o.control_urls = {"http://127.0.0.1:1"};
    o.hosts.clear();
    EXPECT_FALSE(HostAgent::Start(io, o));
}

// ---- the lease, fencing and the supervisor, end to end: the service over HTTP, its agent, and the
// fake control plane, which answers 503 to everything while told not to answer ----

class LeaseTest : public ControlPlaneTest {
protected:
    static constexpr int64_t kTtlMs = 200;  // what the control plane answers
    static constexpr auto kBeat = 25ms;     // the agent's heartbeat interval
    static constexpr auto kBoot = 30ms;
    static constexpr auto kBackoff = 40ms;

    void SetUp() override {
        ControlPlaneTest::SetUp();
        lease_ttl_ms_ = kTtlMs;
        status_ = [this](const Seen&) { return answering_ ? 200 : 503; };
    }

    void TearDown() override {
        Stop();
        ControlPlaneTest::TearDown();
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

    // The compute process: its state in dir_, served over HTTP with a token, and (leased) its agent,
    // whose first registrations are answered (or refused) before this returns.
    void Start(bool leased, int restart_max = 3) {
        Stop();
        ComputeOptions options;
        options.hosts = {HostSpec{"h1", "nova", 4, 8192, 100, {}}, HostSpec{"h2", "nova", 4, 8192, 100, {}}};
        options.clock = &clock_;
        options.leased = leased;
        options.test_routes = true;  // the crash route
        options.supervisor.restart_backoff = kBackoff;
        options.supervisor.restart_max = restart_max;
        options.supervisor.restart_window = 60s;
        auto domain = MakeComputeDomain(options, *MakeComputeDriver("sim", ComputeDriverOptions{kBoot}));
        ASSERT_TRUE(domain);
        HostLink* link = domain->get();
        kit::ServiceOptions service_options;
        service_options.state_path = dir_ / "state.db";
        service_options.metrics = &metrics_;
        service_options.clock = &clock_;
        auto service = kit::DomainService::Create(io_, std::move(*domain), service_options);
        ASSERT_TRUE(service) << service.error().ToString();
        service_ = std::move(*service);
        auto server =
            http::StartServer(io_, http::ServerOptions{},
                              kit::MakeActionHttpHandler(*service_, {{Sha256Hex("tok")}, true}, &metrics_));
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        client_ = http::MakeClient(io_, http::ClientOptions{"127.0.0.1", server_->port(), 4});
        if (leased) {
            AgentOptions agent;
            agent.advertise_url = "http://127.0.0.1:" + std::to_string(server_->port());
            agent.hosts = options.hosts;
            agent.heartbeat_interval = kBeat;
            agent.lease_ttl = 5s;  // until the first heartbeat's answer says 200 ms
            agent.link = link;
            agent.no_leader_limit = no_leader_limit_;
            agent.lease_dir = lease_dir_;
            StartAgent(agent);
            Settle();
        }
    }

    Result<workflow::ActionReply> Call(const std::string& action, const std::string& input) {
        return kit::test_service::Call(io_, *service_, action, "k" + std::to_string(++keys_) + "/do", input);
    }

    http::Response Crash(const std::string& id, const std::string& token = "tok") {
        return kit::test_service::Send(io_, *client_, "POST", "/v1/instances/" + id + "/crash", "",
                                       {{"authorization", "Bearer " + token}});
    }

    json::value Inventory() { return json::parse(kit::test_service::GetBody(*service_, "/v1/inventory")); }
    json::value InstanceOf(const std::string& id) {
        const json::value inv = Inventory();
        for (const auto& i : inv.at("instances").as_array()) {
            if (i.at("id") == id.c_str()) {
                return i;
            }
        }
        return json::object{{"state", "absent"}, {"crashes", -1}};
    }
    std::string StateOf(const std::string& id) { return std::string(InstanceOf(id).at("state").as_string()); }
    int64_t CrashesOf(const std::string& id) { return InstanceOf(id).at("crashes").as_int64(); }
    bool Fenced(const std::string& host) {
        const json::value inv = Inventory();
        for (const auto& h : inv.at("hosts").as_array()) {
            if (h.at("name") == host.c_str()) {
                return h.at("fenced").as_bool();
            }
        }
        return false;
    }

    // Creates `id` on `host` and lets it boot.
    void Create(const std::string& id, const std::string& host) {
        auto r = Call("create_instance", R"({"id":")" + id + R"(","host":")" + host +
                                             R"(","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"cirros"})");
        ASSERT_TRUE(r) << r.error().ToString();
        AdvanceBy(kBoot);
        ASSERT_EQ(StateOf(id), "ACTIVE");
    }

    // The heartbeats of `host` from index `from` of seen_ on: their bodies, and the send time of the
    // last one answered 2xx.
    std::vector<json::object> BeatsOf(const std::string& host, size_t from = 0) const {
        std::vector<json::object> out;
        for (size_t k = from; k < seen_.size(); ++k) {
            if (seen_[k].host == host && seen_[k].path.ends_with(kHeartbeat)) {
                out.push_back(json::parse(seen_[k].body).as_object());
            }
        }
        return out;
    }
    std::vector<json::object> ReportsSeen(const std::string& host, size_t from = 0) const {
        std::vector<json::object> out;
        for (const auto& beat : BeatsOf(host, from)) {
            for (const auto& r : beat.at("reports").as_array()) {
                out.push_back(r.as_object());
            }
        }
        return out;
    }
    SteadyTime LastRenewal(const std::string& host) const {
        for (size_t k = seen_.size(); k-- > 0;) {
            if (seen_[k].host == host && seen_[k].path.ends_with(kHeartbeat) && seen_[k].status == 200) {
                return seen_[k].at;
            }
        }
        ADD_FAILURE() << "no renewal of " << host;
        return {};
    }

    const cogs::testing::TempDir dir_{"cogs-compute-lease"};
    observe::Metrics metrics_;  // outlives the service, which counts into it
    bool answering_ = true;
    Duration no_leader_limit_ = 5s;
    std::string lease_dir_;  // the agent's (the watchdog); "": none
    std::unique_ptr<kit::DomainService> service_;
    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Client> client_;
    int keys_ = 0;
};

// The watchdog (agent.h): every renewal writes the lease's end into the host's lease file, on the
// kernel's boot clock; nothing extends it but a renewal, and a restarted agent leaves it as it was.
TEST_F(LeaseTest, TheLeaseFileHoldsTheEndOfTheLeaseAndOnlyARenewalMovesIt) {
    lease_dir_ = dir_ / "leases";
    const std::string file = lease_dir_ + "/h1";
    Start(/*leased=*/true);
    AdvanceBy(kBeat);  // a heartbeat answered: T = kTtlMs from now on

    // The end written is the lease's: the send of the last renewal + T, mapped onto the boot clock
    // between the two readings around the renewal (the fake clock stands still meanwhile).
    const Duration boot_before = oci::BootTimeNow();
    AdvanceBy(kBeat);
    const Duration boot_after = oci::BootTimeNow();
    const Duration left = LastRenewal("h1") + Millis(kTtlMs) - clock_.Now();
    auto end = oci::ReadLeaseFile(file);
    ASSERT_TRUE(end) << end.error().ToString();
    EXPECT_GE(*end, boot_before + left);
    EXPECT_LE(*end, boot_after + left) << "never later than the lease";
    ASSERT_TRUE(oci::ReadLeaseFile(lease_dir_ + "/h2")) << "every host has its own";
    const uint64_t writes = agent_->stats().lease_writes;
    EXPECT_GE(writes, 4u) << "two hosts, renewed twice at least";

    // No more renewals: the host fences, the file keeps the last end.
    answering_ = false;
    AdvanceTo(LastRenewal("h1") + Millis(kTtlMs));
    ASSERT_TRUE(Fenced("h1"));
    EXPECT_EQ(oci::ReadLeaseFile(file).value_or(Duration::zero()), *end);
    EXPECT_EQ(agent_->stats().lease_writes, writes);

    // A new agent (the process restarted) leaves it as it is until its first renewal.
    Start(/*leased=*/true);
    EXPECT_EQ(oci::ReadLeaseFile(file).value_or(Duration::zero()), *end);
    answering_ = true;
    AdvanceBy(2s);  // the registration's retry (its backoff is at most 2 s), then heartbeats
    ASSERT_FALSE(Fenced("h1"));
    EXPECT_GT(oci::ReadLeaseFile(file).value_or(Duration::zero()), *end);
}

TEST_F(LeaseTest, AHostFencesExactlyWhenItsLeaseRunsOutAndTakesWorkAgainWhenRenewed) {
    Start(/*leased=*/true);
    ASSERT_FALSE(Fenced("h1")) << "the first lease unfences";
    ASSERT_FALSE(Fenced("h2"));
    Create("i1", "h1");
    Create("i2", "h1");
    Create("i3", "h2");
    ASSERT_TRUE(Call("stop_instance", R"({"id":"i2","host":"h1"})"));
    AdvanceBy(kBeat);
    EXPECT_EQ(BeatsOf("h1").back().at("instances"), json::parse(R"({"ACTIVE":1,"SHUTOFF":1})"))
        << "the heartbeat says what the host holds";

    answering_ = false;
    // The lease ends kTtlMs after the send of the last renewal the control plane answered.
    const SteadyTime lease_end = LastRenewal("h1") + Millis(kTtlMs);
    AdvanceTo(lease_end - 1ms);
    EXPECT_FALSE(Fenced("h1")) << "1 ms before the end of its lease";
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    AdvanceTo(lease_end);
    EXPECT_TRUE(Fenced("h1")) << "at the end of its lease";
    EXPECT_TRUE(Fenced("h2")) << "renewed at the same moments";
    EXPECT_EQ(StateOf("i1"), "FENCED");
    EXPECT_EQ(StateOf("i2"), "SHUTOFF");
    EXPECT_EQ(StateOf("i3"), "FENCED");
    EXPECT_EQ(agent_->fenced_hosts(), 2u);
    EXPECT_EQ(agent_->stats().fences, 2u);

    auto refused =
        Call("create_instance", R"({"id":"i4","host":"h1","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"x"})");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(refused.error().retryable);
    EXPECT_EQ(refused.error().message, "host h1 is fenced: it holds no lease from the control plane");
    EXPECT_FALSE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    auto deleted = Call("delete_instance", R"({"id":"i3","host":"h2"})");
    ASSERT_TRUE(deleted) << deleted.error().ToString();
    EXPECT_EQ(json::parse(deleted->output).at("deleted"), true);
    AdvanceBy(10 * kBeat);
    EXPECT_EQ(StateOf("i1"), "FENCED") << "refused heartbeats lift nothing";
    std::string text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h1"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_fences_total", {}), 2);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "FENCED"}}), 1);

    answering_ = true;
    AdvanceBy(kBeat);
    EXPECT_FALSE(Fenced("h1")) << "the next answer unfences";
    EXPECT_FALSE(Fenced("h2"));
    EXPECT_EQ(agent_->stats().unfences, 2u);
    EXPECT_EQ(StateOf("i1"), "FENCED") << "until the control plane starts it";
    auto started = Call("start_instance", R"({"id":"i1","host":"h1"})");
    ASSERT_TRUE(started) << started.error().ToString();
    AdvanceBy(kBoot);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_host_fenced", {{"host", "h1"}}), 0);
    EXPECT_EQ(PromtoolProblems(text), "");
}

// A create sent to a host before it lost its lease and was taken in again (the control plane's
// lease epoch moved on) is refused once the agent holds the new lease, as when a frozen agent
// thaws with that create still in its socket; one sent under the new epoch is done.
TEST_F(LeaseTest, AfterARenewalUnderANewEpochACallSentUnderTheOldOneIsRefused) {
    lease_epoch_ = 100;
    Start(/*leased=*/true);
    const std::string create = R"({"id":"i1","host":"h1","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"x",)";
    AdvanceBy(kBeat);
    answering_ = false;
    AdvanceTo(LastRenewal("h1") + Millis(kTtlMs));
    ASSERT_TRUE(Fenced("h1"));
    lease_epoch_ = 200;  // the control plane declared h1 down and takes it in again
    answering_ = true;
    AdvanceBy(kBeat);
    ASSERT_FALSE(Fenced("h1"));
    auto stale = Call("create_instance", create + R"("lease_epoch":100})");
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(stale.error().retryable);
    EXPECT_EQ(StateOf("i1"), "absent") << "nothing of it";
    auto current = Call("create_instance", create + R"("lease_epoch":200})");
    ASSERT_TRUE(current) << current.error().ToString();
    AdvanceBy(kBoot);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
}

// Agents do not fence while the control plane, not the host, is cut off (agent.h): a replica's 503
// no_leader (a failover under way) extends the lease as a renewal would, for as long as it lasts; a
// 503 leader_unreachable or not_leader renews nothing, and the host fences at the end of its lease.
// A fenced host is not unfenced by no_leader: only the leader's own answer lifts a fence.
TEST_F(LeaseTest, NoLeaderKeepsTheLeaseAndOtherUnavailableAnswersDoNot) {
    Start(/*leased=*/true);
    Create("i1", "h1");
    AdvanceBy(kBeat);
    auto last_beat_of = [&](const std::string& host) {
        for (size_t k = seen_.size(); k-- > 0;) {
            if (seen_[k].host == host && seen_[k].path.ends_with(kHeartbeat)) {
                return seen_[k].at;
            }
        }
        ADD_FAILURE() << "no heartbeat of " << host;
        return SteadyTime{};
    };
    for (const std::string code : {"leader_unreachable", "not_leader"}) {
        SCOPED_TRACE(code);
        answering_ = false;
        error_code_ = "no_leader";
        const uint64_t fences = agent_->stats().fences;
        AdvanceBy(Millis(5 * kTtlMs));
        EXPECT_FALSE(Fenced("h1")) << "five lease TTLs between leaders";
        EXPECT_EQ(StateOf("i1"), "ACTIVE");
        EXPECT_EQ(agent_->stats().fences, fences);

        error_code_ = code;
        const SteadyTime lease_end = last_beat_of("h1") + Millis(kTtlMs);
        AdvanceTo(lease_end - 1ms);
        EXPECT_FALSE(Fenced("h1")) << "held until the last no_leader answer's send + T";
        AdvanceTo(lease_end);
        EXPECT_TRUE(Fenced("h1")) << "at the end of its lease";
        EXPECT_EQ(StateOf("i1"), "FENCED");
        EXPECT_EQ(agent_->stats().fences, fences + 2) << "h1 and h2";

        error_code_ = "no_leader";
        AdvanceBy(Millis(2 * kTtlMs));
        EXPECT_TRUE(Fenced("h1")) << "no_leader lifts no fence";

        answering_ = true;
        AdvanceBy(kBeat);
        EXPECT_FALSE(Fenced("h1")) << "the leader's answer does";
        ASSERT_TRUE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
        AdvanceBy(kBoot);
        ASSERT_EQ(StateOf("i1"), "ACTIVE");
    }
    EXPECT_GT(agent_->stats().no_leader, 0u);
}

// no_leader answers extend the lease only within no_leader_limit of the last renewal a leader
// answered: a replica that says no_leader for ever cannot keep a host unfenced.
TEST_F(LeaseTest, NoLeaderExtendsTheLeaseForABoundedTimeOnly) {
    no_leader_limit_ = 300ms;
    Start(/*leased=*/true);
    AdvanceBy(kBeat);
    answering_ = false;
    error_code_ = "no_leader";
    const SteadyTime renewed = LastRenewal("h1");
    // Heartbeats every 25 ms: the last one sent within 300 ms of the renewal, at +300 ms, holds the
    // lease until +300 + T; those after it extend nothing.
    AdvanceTo(renewed + 300ms + Millis(kTtlMs) - 1ms);
    EXPECT_FALSE(Fenced("h1"));
    AdvanceTo(renewed + 300ms + Millis(kTtlMs));
    EXPECT_TRUE(Fenced("h1")) << "no_leader_limit + T after the last renewal";
    answering_ = true;
    AdvanceBy(kBeat);
    EXPECT_FALSE(Fenced("h1"));
    answering_ = false;
    const SteadyTime again = LastRenewal("h1");
    AdvanceTo(again + 300ms + Millis(kTtlMs) - 1ms);
    EXPECT_FALSE(Fenced("h1")) << "a renewal by a leader starts the limit again";
}

// A no_leader answer acknowledges no report: they are sent again until the leader answers.
TEST_F(LeaseTest, NoLeaderAcknowledgesNoReport) {
    Start(/*leased=*/true);
    Create("i1", "h1");
    Crash("i1");
    AdvanceBy(kBackoff + kBoot);
    const size_t from = seen_.size();
    AdvanceBy(kBeat);
    const std::vector<json::object> reports = ReportsSeen("h1", from);
    ASSERT_EQ(reports.size(), 2u);
    acked_seq_ = reports[1].at("seq").to_number<uint64_t>();  // what the leader would acknowledge
    answering_ = false;
    error_code_ = "no_leader";
    AdvanceBy(3 * kBeat);
    EXPECT_EQ(BeatsOf("h1").back().at("reports").as_array().size(), 2u) << "nothing acknowledged";
    answering_ = true;
    AdvanceBy(2 * kBeat);
    EXPECT_TRUE(BeatsOf("h1").back().at("reports").as_array().empty()) << "the leader's answer acknowledges";
}

TEST_F(LeaseTest, CrashedInstancesRestartAfterTheirBackoffUntilTheSupervisorGivesUp) {
    Start(/*leased=*/true);
    Create("i1", "h1");
    EXPECT_EQ(Crash("i1", "wrong").status, 401);
    EXPECT_EQ(Crash("nope").status, 404);

    for (const Duration backoff : {kBackoff, 2 * kBackoff}) {  // the second crash within the window: doubled
        http::Response r = Crash("i1");
        ASSERT_EQ(r.status, 200) << r.body;
        EXPECT_EQ(json::parse(r.body).at("instance").at("state"), "CRASHED");
        EXPECT_EQ(Crash("i1").status, 409) << "not running";
        AdvanceBy(backoff - 1ms);
        EXPECT_EQ(StateOf("i1"), "CRASHED") << "1 ms before its restart";
        AdvanceBy(1ms);
        EXPECT_EQ(StateOf("i1"), "BUILD") << "restarted at the crash + its backoff";
        AdvanceBy(kBoot);
        EXPECT_EQ(StateOf("i1"), "ACTIVE");
    }
    EXPECT_EQ(CrashesOf("i1"), 2);

    const size_t seen_before = seen_.size();
    EXPECT_EQ(json::parse(Crash("i1").body).at("instance").at("state"), "ERROR");  // the third: given up
    AdvanceBy(kBeat);
    std::vector<std::string> types;
    for (const auto& rep : ReportsSeen("h1", seen_before)) {
        types.emplace_back(rep.at("type").as_string());
    }
    EXPECT_EQ(types, (std::vector<std::string>{"crashed", "restarted", "crashed", "restarted", "crashed",
                                               "gave_up"}))
        << "the next heartbeat tells the control plane";
    AdvanceBy(10 * kBackoff);
    EXPECT_EQ(StateOf("i1"), "ERROR") << "never restarted again";
    std::string text = metrics_.Render();
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "restarted"}}), 2);
    EXPECT_EQ(SampleOf(text, "cogs_compute_restarts_total", {{"outcome", "gave_up"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_compute_instances", {{"host", "h1"}, {"state", "ERROR"}}), 1);

    // The control plane may still start it: a fresh start.
    ASSERT_TRUE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    AdvanceBy(kBoot);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    EXPECT_EQ(CrashesOf("i1"), 0);
}

TEST_F(LeaseTest, ReportsAreSentAgainUntilTheControlPlaneAcknowledgesThem) {
    Start(/*leased=*/true);
    Create("i1", "h1");
    Crash("i1");
    AdvanceBy(kBackoff + kBoot);
    ASSERT_EQ(StateOf("i1"), "ACTIVE");
    // Not acknowledged: every heartbeat carries both reports again.
    const size_t from = seen_.size();
    AdvanceBy(3 * kBeat);
    std::vector<json::object> seen = ReportsSeen("h1", from);
    ASSERT_EQ(seen.size(), 6u);
    EXPECT_EQ(seen[0].at("type"), "crashed");
    EXPECT_EQ(seen[1].at("type"), "restarted");
    EXPECT_EQ(seen[2].at("seq"), seen[0].at("seq"));
    EXPECT_EQ(seen[5].at("seq"), seen[1].at("seq"));
    EXPECT_TRUE(ReportsSeen("h2").empty());

    // The next answer acknowledges the crash; the heartbeat after it carries the restart only.
    acked_seq_ = seen[0].at("seq").to_number<uint64_t>();
    AdvanceBy(2 * kBeat);
    ASSERT_EQ(BeatsOf("h1").back().at("reports").as_array().size(), 1u);
    EXPECT_EQ(BeatsOf("h1").back().at("reports").at(0).at("type"), "restarted");
    acked_seq_ = seen[1].at("seq").to_number<uint64_t>();
    AdvanceBy(2 * kBeat);
    EXPECT_TRUE(BeatsOf("h1").back().at("reports").as_array().empty());
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
    EXPECT_EQ(StateOf("i3"), "CRASHED");
    AdvanceBy(kBackoff);
    EXPECT_EQ(StateOf("i3"), "BUILD") << "its pending restart too, at its time";
    AdvanceBy(kBoot);
    Crash("i3");
    EXPECT_EQ(CrashesOf("i3"), 2);

    // With a control plane: the host rebooted; whatever was not stopped comes up FENCED.
    answering_ = false;
    Start(/*leased=*/true, /*restart_max=*/5);
    EXPECT_EQ(StateOf("i1"), "FENCED");
    EXPECT_EQ(StateOf("i2"), "SHUTOFF");
    EXPECT_EQ(StateOf("i3"), "FENCED");
    EXPECT_EQ(CrashesOf("i3"), 2);
    EXPECT_TRUE(Fenced("h1")) << "no lease yet: its registration was refused";
    EXPECT_FALSE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    answering_ = true;
    AdvanceBy(100ms);  // the registration's retry (min_backoff) is answered
    EXPECT_FALSE(Fenced("h1"));
    EXPECT_EQ(StateOf("i1"), "FENCED");
    ASSERT_TRUE(Call("start_instance", R"({"id":"i1","host":"h1"})"));
    AdvanceBy(kBoot);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    // And a restart while FENCED stays FENCED (recorded), even without a control plane.
    Start(/*leased=*/false, /*restart_max=*/5);
    EXPECT_EQ(StateOf("i1"), "ACTIVE");
    EXPECT_EQ(StateOf("i3"), "FENCED");
}

TEST_F(ComputeReportingDriverTest, AVolumeAttachOrDetachEndsWhenTheDriverHasMountedOrUnmounted) {
    Ok("create_instance", CreateInput("i1", "h1"));
    Events().Running("i1");
    kit::Done attach =
        Ok("attach_volumes", R"({"id":"i1","host":"h1","volumes":[{"volume_id":"v1","path":"/v/v1.img"}]})");
    ASSERT_EQ(log_->tickets.size(), 1u);
    EXPECT_EQ(attach.wait_for, "volumes/i1/" + std::to_string(log_->tickets[0]));
    EXPECT_EQ(Ok("attach_volumes", R"({"id":"i1","host":"h1","volumes":[]})").wait_for, "")
        << "nothing to mount (a server without volumes): done at once, the driver not asked";
    EXPECT_EQ(log_->tickets.size(), 1u);
    EXPECT_EQ(log_->calls.back(), "volumes i1 v1");
    EXPECT_EQ(Finished().size(), 1u) << "only the boot";
    log_->events->VolumesSynced("i1", log_->tickets[0], cogs::Ok());
    EXPECT_EQ(Finished().back(), attach.wait_for + R"(={"id":"i1","host":"h1","volume_ids":["v1"]})");

    kit::Done detach = Ok("detach_volumes", R"({"id":"i1","host":"h1","volume_ids":["v1"]})");
    ASSERT_EQ(log_->tickets.size(), 2u);
    EXPECT_GT(log_->tickets[1], log_->tickets[0]);
    EXPECT_EQ(log_->calls.back(), "volumes i1");
    // Busy inside: the detach fails (the record no longer lists it; a detach again tries again).
    log_->events->VolumesSynced("i1", log_->tickets[1],
                                MakeError(ErrorCode::kFailedPrecondition, "volume v1 is busy"));
    EXPECT_EQ(Finished().back(), detach.wait_for + "!failed_precondition: volume v1 is busy");
    log_->events->VolumesSynced("i1", log_->tickets[1], cogs::Ok());  // late, again: nothing
    EXPECT_EQ(Finished().size(), 3u);
    Ok("detach_volumes", R"({"id":"i1","host":"h1","volume_ids":["v1"]})");
    EXPECT_EQ(log_->calls.back(), "volumes i1");
}

}  // namespace
}  // namespace cogs::services::compute
