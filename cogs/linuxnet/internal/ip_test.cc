#include "cogs/linuxnet/internal/ip.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"

namespace cogs::linuxnet::internal {
namespace {

// What iproute2 6.1 printed on a test machine (trimmed of fields cogs does not read).
constexpr std::string_view kLinks = R"([
  {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback",
   "address":"00:00:00:00:00:00"},
  {"ifindex":8,"ifname":"cg-b17d5a8f04ff","flags":["BROADCAST","MULTICAST","NOARP","UP","LOWER_UP"],
   "mtu":1400,"address":"06:22:0c:2d:04:fa","linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}},
   "inet6_addr_gen_mode":"none","ifalias":"net-1"},
  {"ifindex":9,"link_index":2,"ifname":"cg-p4c0bd24e7f0","flags":["BROADCAST","MULTICAST","NOARP","UP"],
   "mtu":1400,"master":"cg-b17d5a8f04ff","address":"06:22:0c:2d:04:fb","link_netnsid":0,
   "linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"},"inet6_addr_gen_mode":"none","ifalias":"port-1"},
  {"ifindex":10,"link_index":2,"ifname":"cg-p0000000000a","flags":["BROADCAST","MULTICAST"],"mtu":1500,
   "address":"06:22:0c:2d:04:fc","link_netnsid":1,"linkinfo":{"info_kind":"veth"}},
  {"ifindex":11,"ifname":"cg-bffffffffff0","flags":["BROADCAST"],"mtu":1500,"address":"06:22:0c:2d:04:fd",
   "linkinfo":{"info_kind":"bridge"},"ifalias":"someone else's"},
  {"ifindex":12,"ifname":"cgt-b17d5a8f04f","flags":["BROADCAST"],"mtu":1500,"linkinfo":{"info_kind":"bridge"},
   "ifalias":"net-1"},
  {"ifindex":13,"ifname":"docker0","flags":["BROADCAST","UP"],"mtu":1500,"linkinfo":{"info_kind":"bridge"}},
  {"ifindex":14,"ifname":"cg-x17d5a8f04ff","flags":["BROADCAST"],"mtu":1500,"linkinfo":{"info_kind":"dummy"}}
])";

constexpr std::string_view kNetns = R"([{"name":"cgt-i9","id":1},{"name":"cg-inst-1","id":0},{"name":"other"},
{"name":"cg-inst-2"}])";

TEST(LinuxnetIpTest, ParsesLinks) {
    auto links = ParseLinks(kLinks);
    ASSERT_TRUE(links) << links.error().ToString();
    ASSERT_EQ(links->size(), 8u);
    const Link& br = (*links)[1];
    EXPECT_EQ(br.ifindex, 8);
    EXPECT_EQ(br.name, "cg-b17d5a8f04ff");
    EXPECT_EQ(br.kind, "bridge");
    EXPECT_EQ(br.alias, "net-1");
    EXPECT_EQ(br.mtu, 1400);
    EXPECT_TRUE(br.up);
    EXPECT_TRUE(br.noarp);
    EXPECT_EQ(br.addrgenmode, "none");
    EXPECT_EQ(br.link_netnsid, std::nullopt);
    const Link& port = (*links)[2];
    EXPECT_EQ(port.kind, "veth");
    EXPECT_EQ(port.master, "cg-b17d5a8f04ff");
    EXPECT_EQ(port.mac, "06:22:0c:2d:04:fb");
    EXPECT_EQ(port.link_index, 2);
    EXPECT_EQ(port.link_netnsid, 0);
    EXPECT_EQ((*links)[0].kind, "");
    EXPECT_FALSE((*links)[3].up);
}

TEST(LinuxnetIpTest, ParsesNamespacesAddressesAndRoutes) {
    auto ns = ParseNetns(kNetns);
    ASSERT_TRUE(ns) << ns.error().ToString();
    ASSERT_EQ(ns->size(), 4u);
    EXPECT_EQ((*ns)[1].name, "cg-inst-1");
    EXPECT_EQ((*ns)[1].id, 0);
    EXPECT_EQ((*ns)[2].id, std::nullopt);
    // With no /run/netns, `ip -json netns list` prints nothing at all.
    EXPECT_TRUE(ParseNetns("")->empty());
    EXPECT_TRUE(ParseNetns("[]\n")->empty());

    auto addresses = ParseAddresses(R"([{"ifindex":2,"ifname":"eth0","addr_info":[
        {"family":"inet","local":"10.20.0.5","prefixlen":24,"broadcast":"10.20.0.255","scope":"global"},
        {"family":"inet6","local":"fe80::f816:3eff:fe00:1","prefixlen":64,"scope":"link"}]}])");
    ASSERT_TRUE(addresses) << addresses.error().ToString();
    ASSERT_EQ(addresses->size(), 2u);
    EXPECT_EQ((*addresses)[0].family, "inet");
    EXPECT_EQ((*addresses)[0].local, "10.20.0.5");
    EXPECT_EQ((*addresses)[0].prefixlen, 24);
    EXPECT_EQ((*addresses)[1].family, "inet6");

    auto routes = ParseRoutes(R"([{"dst":"default","gateway":"10.20.0.1","dev":"eth0","flags":[]}])");
    ASSERT_TRUE(routes) << routes.error().ToString();
    ASSERT_EQ(routes->size(), 1u);
    EXPECT_EQ((*routes)[0].dst, "default");
    EXPECT_EQ((*routes)[0].gateway, "10.20.0.1");
    EXPECT_EQ((*routes)[0].dev, "eth0");
}

TEST(LinuxnetIpTest, OutputThatIsNotIpsJsonIsUnavailable) {
    for (std::string_view bad : {"{", "{}", "[1]", R"([{"mtu":1}])", "Device \"x\" does not exist."}) {
        auto links = ParseLinks(bad);
        ASSERT_FALSE(links) << bad;
        EXPECT_EQ(links.error().code, ErrorCode::kUnavailable);
    }
    EXPECT_FALSE(ParseNetns(R"([{"id":1}])"));
}

// A stand-in for `ip` that prints a listing on stdout and, for its first `interrupted` runs, iproute2's
// warning of an interrupted dump on stderr (exit 0, as iproute2 6.1 does); it counts its runs.
class FakeIp {
public:
    explicit FakeIp(int interrupted) {
        const std::string script = fmt::format(
            "#!/bin/sh\n"
            "n=$(cat '{0}/runs' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{0}/runs'\n"
            "if [ $n -le {1} ]; then echo '[{{\"ifindex\":1,\"ifname\":\"half\"' ; "
            "echo 'Dump was interrupted and may be inconsistent.' >&2; exit 0; fi\n"
            "echo 'a warning of no consequence' >&2\n"
            "echo '[{{\"ifindex\":1,\"ifname\":\"lo\",\"mtu\":65536,\"flags\":[\"UP\"]}}]'\n",
            dir_.path(), interrupted);
        EXPECT_TRUE(runtime::WriteFileAtomic(path(), script, 0755));
    }
    std::string path() const { return dir_ / "ip"; }
    int runs() const { return std::stoi(runtime::ReadFile(dir_ / "runs").value_or("0")); }

private:
    const cogs::testing::TempDir dir_{"cogs-fake-ip"};
};

TEST(LinuxnetIpTest, AListingThatAChangeInterruptedIsTakenAgainAndWarningsAreNotData) {
    FakeIp twice(2);
    auto links = Ip(twice.path()).Links("", SteadyClock::now() + std::chrono::seconds(30));
    ASSERT_TRUE(links) << links.error().ToString();
    ASSERT_EQ(links->size(), 1u);
    EXPECT_EQ((*links)[0].name, "lo");
    EXPECT_EQ(twice.runs(), 3);

    FakeIp always(1000);
    auto never = Ip(always.path()).Links("", SteadyClock::now() + std::chrono::seconds(30));
    ASSERT_FALSE(never);
    EXPECT_EQ(never.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(never.error().retryable);
    EXPECT_NE(never.error().message.find("interrupted"), std::string::npos) << never.error().ToString();
    EXPECT_EQ(always.runs(), Ip::kDumpAttempts);
}

TEST(LinuxnetIpTest, InventoryHoldsThisPrefixsObjectsMappedBackToTheirIds) {
    const Names cg;
    ASSERT_EQ(cg.Bridge("net-1"), "cg-b17d5a8f04ff");
    std::vector<Link> links = *ParseLinks(kLinks);
    // The port's real name: the sample's is a stand-in.
    links[2].name = cg.Port("port-1");
    const Inventory inv = BuildInventory(cg, links, *ParseNetns(kNetns));

    ASSERT_EQ(inv.bridges.size(), 1u);
    EXPECT_EQ(inv.bridges[0].name, "cg-b17d5a8f04ff");
    EXPECT_EQ(inv.bridges[0].network_id, "net-1");
    EXPECT_EQ(inv.bridges[0].mtu, 1400);
    EXPECT_TRUE(inv.bridges[0].up);

    ASSERT_EQ(inv.ports.size(), 1u);
    EXPECT_EQ(inv.ports[0].name, cg.Port("port-1"));
    EXPECT_EQ(inv.ports[0].port_id, "port-1");
    EXPECT_EQ(inv.ports[0].bridge, "cg-b17d5a8f04ff");
    EXPECT_EQ(inv.ports[0].network_id, "net-1");
    EXPECT_EQ(inv.ports[0].namespace_id, "inst-1");  // link_netnsid 0 is cg-inst-1

    ASSERT_EQ(inv.namespaces.size(), 2u);
    EXPECT_EQ(inv.namespaces[0].name, "cg-inst-1");
    EXPECT_EQ(inv.namespaces[0].id, "inst-1");
    EXPECT_EQ(inv.namespaces[0].path, "/run/netns/cg-inst-1");
    EXPECT_EQ(inv.namespaces[1].id, "inst-2");

    // In the pattern but with no id (no alias; an alias that is not its name's id): strays. Another
    // prefix's bridge, docker0, a name of no kind: nothing.
    EXPECT_EQ(inv.strays, (std::vector<std::string>{"cg-bffffffffff0", "cg-p0000000000a"}));

    // The other prefix, whose name begins ours, sees its own bridge of the same network and its own
    // namespace, and nothing of ours.
    const Inventory cgt = BuildInventory(*Names::Make("cgt"), links, *ParseNetns(kNetns));
    ASSERT_EQ(cgt.bridges.size(), 1u);
    EXPECT_EQ(cgt.bridges[0].name, "cgt-b17d5a8f04f");
    EXPECT_EQ(cgt.bridges[0].network_id, "net-1");
    EXPECT_TRUE(cgt.ports.empty());
    EXPECT_TRUE(cgt.strays.empty());
    ASSERT_EQ(cgt.namespaces.size(), 1u);
    EXPECT_EQ(cgt.namespaces[0].id, "i9");
}

TEST(LinuxnetIpTest, APortOnAForeignBridgeOrInAForeignNamespaceSaysSo) {
    const Names cg;
    Link port;
    port.ifindex = 5;
    port.name = cg.Port("p");
    port.kind = "veth";
    port.alias = "p";
    port.master = "docker0";
    port.link_netnsid = 7;
    const Inventory inv = BuildInventory(cg, {port}, {{"cg-i", 1}, {"foreign", 7}});
    ASSERT_EQ(inv.ports.size(), 1u);
    EXPECT_EQ(inv.ports[0].bridge, "docker0");
    EXPECT_EQ(inv.ports[0].network_id, "");
    EXPECT_EQ(inv.ports[0].namespace_id, "");
}

}  // namespace
}  // namespace cogs::linuxnet::internal
