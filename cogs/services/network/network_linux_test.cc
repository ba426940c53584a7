// cogs-network's linux driver on the real machine (root; each test skips otherwise, CI runs as root):
// the domain in a kit DomainService, bridges made and removed by its actions and by its sweep.
//
// Every test names its objects under a prefix of its own ("z" + 4 random hex digits); TearDown
// removes every link and namespace under it with plain `ip`, also after a failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <optional>
#include <set>

#include "cogs/base/secret.h"
#include "cogs/linuxnet/host.h"
#include "cogs/linuxnet/internal/ip.h"
#include "cogs/runtime/process.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/service.h"
#include "cogs/services/network/internal/bridges.h"
#include "cogs/services/network/network.h"
#include "test/support/temp_dir.h"

namespace cogs::services::network {
namespace {

namespace json = boost::json;
namespace ts = kit::test_service;
using namespace std::chrono_literals;

constexpr const char* kIp = "/usr/sbin/ip";

SteadyTime Deadline() { return SteadyClock::now() + 60s; }

// `ip ARGS` that must succeed; its stdout (a listing that other tests' changes interrupted is taken
// again, as the service's own are).
std::string Ip(const std::vector<std::string>& args) {
    auto out = linuxnet::internal::Ip(kIp).RunListing(args, Deadline());
    EXPECT_TRUE(out) << out.error().ToString();
    return out.value_or("");
}

// The machine's links: name -> alias ("" for none).
std::map<std::string, std::string> Links() {
    std::map<std::string, std::string> links;
    const json::value v = json::parse(Ip({"-json", "link", "show"}));
    for (const auto& l : v.as_array()) {
        const auto& o = l.as_object();
        const auto* alias = o.if_contains("ifalias");
        links[std::string(o.at("ifname").as_string())] = alias ? std::string(alias->as_string()) : "";
    }
    return links;
}

class NetworkLinuxTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "the linux network driver makes bridges: run as root";
        }
        if (!std::filesystem::exists(kIp)) {
            GTEST_SKIP() << kIp << " is missing: apt-get install iproute2";
        }
        prefix_ = "z" + RandomHex(2);
        auto host = linuxnet::Host::Make({.prefix = prefix_});
        ASSERT_TRUE(host) << host.error().ToString();
        host_ = std::make_unique<linuxnet::Host>(std::move(*host));
    }

    void TearDown() override {
        service_.reset();
        io_.restart();
        io_.poll();
        if (prefix_.empty()) {
            return;
        }
        for (const auto& [name, alias] : Links()) {
            if (name.starts_with(prefix_ + "-")) {
                (void)runtime::RunCommand({kIp, "link", "delete", "dev", name}, Deadline());
            }
        }
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
            if (e.path().filename().string().starts_with(prefix_ + "-")) {
                (void)runtime::RunCommand({kIp, "netns", "delete", e.path().filename().string()}, Deadline());
            }
        }
    }

    void Start(Duration sweep_interval) {
        auto domain = MakeNetworkDomain(
            NetworkOptions{.driver = "linux", .prefix = prefix_, .sweep_interval = sweep_interval});
        ASSERT_TRUE(domain) << domain.error().ToString();
        kit::ServiceOptions options;
        options.state_path = dir_ / "network.db";
        auto service = kit::DomainService::Create(io_, std::move(*domain), options);
        ASSERT_TRUE(service) << service.error().ToString();
        service_ = std::move(*service);
    }

    // Performs `action` and waits for its end (a long action: until its status is no longer 202).
    Result<std::string> Do(std::string action, std::string input) {
        const std::string key = "t/" + action + "/" + std::to_string(++keys_);
        COGS_ASSIGN_OR_RETURN(auto reply, ts::Call(io_, *service_, action, key, input));
        while (reply.accepted) {
            ts::RunFor(io_, 10ms);
            COGS_ASSIGN_OR_RETURN(reply, ts::StatusOf(io_, *service_, key));
        }
        return reply.output;
    }

    bool HasLink(const std::string& name) { return Links().contains(name); }
    // Runs the service until `name` exists (or not); whether it came to that.
    bool AwaitLink(const std::string& name, bool present) {
        return ts::RunUntil(
            io_, [&] { return HasLink(name) == present; }, 60s);
    }

    const cogs::testing::TempDir dir_{"cogs-network-linux-test"};
    std::string prefix_;
    std::unique_ptr<linuxnet::Host> host_;
    boost::asio::io_context io_;
    std::unique_ptr<kit::DomainService> service_;
    int keys_ = 0;
};

TEST_F(NetworkLinuxTest, CreateNetworkAnswersOnceItsBridgeIsUpAndDeleteNetworkRemovesIt) {
    Start(Duration::zero());
    const std::string bridge = host_->names().Bridge("net-a");
    ASSERT_FALSE(HasLink(bridge));
    auto created = Do("create_network", R"({"id":"net-a","name":"a"})");
    ASSERT_TRUE(created) << created.error().ToString();
    EXPECT_EQ(json::parse(*created), json::parse(R"({"id":"net-a","name":"a","project_id":""})"));
    // Already there when the action answered, carrying the network's id as its alias.
    const auto links = Links();
    ASSERT_TRUE(links.contains(bridge)) << bridge;
    EXPECT_EQ(links.at(bridge), "net-a");
    EXPECT_NE(Ip({"-d", "link", "show", "dev", bridge}).find("bridge"), std::string::npos);
    // No address on it: the host takes no part in the network (cogs/linuxnet README).
    EXPECT_EQ(Ip({"-4", "-o", "addr", "show", "dev", bridge}), "");

    auto deleted = Do("delete_network", R"({"id":"net-a"})");
    ASSERT_TRUE(deleted) << deleted.error().ToString();
    EXPECT_TRUE(AwaitLink(bridge, false)) << bridge << " is still there";
}

// A bridge that cannot be made (its name is taken by a link that is not this network's) fails the
// action for good, and the workflow's compensation (delete_network) removes the record.
TEST_F(NetworkLinuxTest, ABridgeThatCannotBeMadeFailsCreateNetwork) {
    Start(Duration::zero());
    const std::string bridge = host_->names().Bridge("net-x");
    Ip({"link", "add", bridge, "type", "bridge"});
    Ip({"link", "set", "dev", bridge, "alias", "someone-else"});
    auto created = Do("create_network", R"({"id":"net-x"})");
    ASSERT_FALSE(created);
    EXPECT_FALSE(created.error().retryable);
    EXPECT_NE(created.error().message.find(bridge), std::string::npos) << created.error().ToString();
    EXPECT_EQ(Links().at(bridge), "someone-else") << "left as it was";
    auto undone = Do("delete_network", R"({"id":"net-x"})");
    ASSERT_TRUE(undone) << undone.error().ToString();
    EXPECT_EQ(json::parse(*undone).at("deleted"), true);
    // Its bridge's removal ran before the next create's bridge (one worker, in order): the link that
    // is someone else's is still there.
    ASSERT_TRUE(Do("create_network", R"({"id":"net-y"})"));
    EXPECT_EQ(Links().at(bridge), "someone-else");
}

TEST_F(NetworkLinuxTest, CreatePortAnswersTheSubnetsCidrAndGateway) {
    Start(Duration::zero());
    ASSERT_TRUE(Do("create_network", R"({"id":"n1"})"));
    ASSERT_TRUE(Do("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.9.0.0/24"})"));
    auto port = Do("create_port", R"({"id":"p1","network_id":"n1"})");
    ASSERT_TRUE(port) << port.error().ToString();
    const json::object o = json::parse(*port).as_object();
    EXPECT_EQ(o.at("cidr"), "10.9.0.0/24");
    EXPECT_EQ(o.at("gateway_ip"), "10.9.0.1");
    EXPECT_EQ(o.at("fixed_ip"), "10.9.0.2");
}

TEST_F(NetworkLinuxTest, TheSweepRemakesMissingBridgesAndCollectsWhatNoNetworkOrPortOwns) {
    // What the machine holds before the service starts: a bridge of a network it never had, a port
    // of its own network and one of a port it never had (both in a namespace, as an instance's).
    const SteadyTime d = Deadline();
    ASSERT_TRUE(host_->EnsureBridge("ghost-net", 1500, d));
    ASSERT_TRUE(host_->EnsureBridge("n1", 1500, d));
    ASSERT_TRUE(host_->EnsureNamespace("i1", d));
    linuxnet::PortSpec owned{.port_id = "p1",
                             .network_id = "n1",
                             .namespace_id = "i1",
                             .mac = "fa:16:3e:00:00:01",
                             .address = "10.9.0.2/24",
                             .gateway = "10.9.0.1"};
    ASSERT_TRUE(host_->PlugPort(owned, d));
    linuxnet::PortSpec ghost = owned;
    ghost.port_id = "ghost-port";
    ghost.mac = "fa:16:3e:00:00:02";
    ghost.address = "10.9.0.3/24";
    ghost.interface = "eth1";
    ASSERT_TRUE(host_->PlugPort(ghost, d));

    Start(Duration::zero());
    ASSERT_TRUE(Do("create_network", R"({"id":"n1"})"));
    ASSERT_TRUE(Do("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.9.0.0/24"})"));
    ASSERT_TRUE(Do("create_port", R"({"id":"p1","network_id":"n1","fixed_ip":"10.9.0.2"})"));
    ASSERT_TRUE(Do("create_network", R"({"id":"n2"})"));
    // n2's bridge goes (the machine rebooted, or someone removed it): the sweep makes it again.
    const std::string n2 = host_->names().Bridge("n2");
    ASSERT_TRUE(HasLink(n2));
    Ip({"link", "delete", "dev", n2});
    ASSERT_FALSE(HasLink(n2));

    // A stray: a link in the prefix's pattern without its alias (a create interrupted between its
    // two commands).
    const std::string stray = host_->names().Bridge("half-made");
    Ip({"link", "add", stray, "type", "bridge"});
    ASSERT_TRUE(HasLink(stray));

    service_.reset();
    Start(100ms);  // a restart with sweeps: the first at once
    EXPECT_TRUE(AwaitLink(stray, false));
    EXPECT_TRUE(AwaitLink(host_->names().Bridge("ghost-net"), false));
    EXPECT_TRUE(AwaitLink(host_->names().Port("ghost-port"), false));
    EXPECT_TRUE(AwaitLink(n2, true));
    // What is owned stays: found by the same sweeps as the ghosts.
    const auto links = Links();
    EXPECT_TRUE(links.contains(host_->names().Bridge("n1")));
    EXPECT_TRUE(links.contains(host_->names().Port("p1")));
}

// The grace of the sweep: an unowned object goes at the second sweep that finds it, never the first
// (a create under way elsewhere may have just made it); one owned again meanwhile stays.
TEST_F(NetworkLinuxTest, TheSweepRemovesOnlyWhatTwoSweepsInARowFoundUnowned) {
    auto bridges = internal::Bridges::Make({.prefix = prefix_});
    ASSERT_TRUE(bridges) << bridges.error().ToString();
    (*bridges)->Bind(io_);
    ASSERT_TRUE(host_->EnsureBridge("gone", 1500, Deadline()));
    ASSERT_TRUE(host_->EnsureBridge("late", 1500, Deadline()));
    const auto sweep = [&](std::set<std::string> networks) {
        std::optional<internal::SweepReport> report;
        (*bridges)->Sweep(std::move(networks), {}, [&](internal::SweepReport r) { report = std::move(r); });
        EXPECT_TRUE(ts::RunUntil(
            io_, [&] { return report.has_value(); }, 60s));
        return report.value_or(internal::SweepReport{});
    };
    auto first = sweep({"kept"});
    EXPECT_EQ(first.removed, std::vector<std::string>{});
    EXPECT_EQ(first.ensured, std::vector<std::string>{host_->names().Bridge("kept")});
    EXPECT_TRUE(HasLink(host_->names().Bridge("gone")));
    // "late" is a network by now (its create raced the first sweep).
    auto second = sweep({"kept", "late"});
    EXPECT_EQ(second.removed, std::vector<std::string>{host_->names().Bridge("gone")});
    EXPECT_EQ(second.errors, std::vector<std::string>{});
    EXPECT_FALSE(HasLink(host_->names().Bridge("gone")));
    EXPECT_TRUE(HasLink(host_->names().Bridge("late")));
    EXPECT_TRUE(HasLink(host_->names().Bridge("kept")));
}

}  // namespace
}  // namespace cogs::services::network
