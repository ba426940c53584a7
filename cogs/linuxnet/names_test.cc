#include "cogs/linuxnet/names.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cogs/linuxnet/host.h"

namespace cogs::linuxnet {
namespace {

using namespace std::chrono_literals;

Names MustMake(std::string_view prefix) {
    auto n = Names::Make(prefix);
    EXPECT_TRUE(n) << n.error().ToString();
    return n ? *n : Names();
}

TEST(LinuxnetNamesTest, LinkNamesAreThePrefixTheKindAndTheIdsSha256) {
    const Names cg;
    EXPECT_EQ(cg.prefix(), "cg");
    // printf %s net-1 | sha256sum: 17d5a8f04ffcb40e...
    EXPECT_EQ(cg.Bridge("net-1"), "cg-b17d5a8f04ff");
    EXPECT_EQ(cg.Port("net-1"), "cg-p17d5a8f04ff");
    EXPECT_EQ(cg.Bridge("net-1"), cg.Link(LinkKind::kBridge, "net-1"));
    EXPECT_EQ(cg.Bridge("net-1").size(), kMaxInterfaceName);
    EXPECT_NE(cg.Bridge("net-1"), cg.Bridge("net-2"));

    // The longest prefix still leaves 8 hex digits; every name is exactly 15 characters.
    const Names longest = MustMake("abcde");
    EXPECT_EQ(longest.Port("1e543fbb-5ebb-4445-a1f1-fee1cb64a85d"), "abcde-p9be14a4b");
    for (const Names& n : {cg, MustMake("a"), longest}) {
        for (const std::string& id : std::vector<std::string>{"x", std::string(kMaxId, 'y'),
                                                              "1e543fbb-5ebb-4445-a1f1-fee1cb64a85d"}) {
            EXPECT_EQ(n.Bridge(id).size(), kMaxInterfaceName) << n.prefix() << " " << id;
            EXPECT_TRUE(ValidateInterfaceName("name", n.Port(id)));
        }
    }
}

TEST(LinuxnetNamesTest, PrefixesAreShortLowercaseAndStartWithALetter) {
    for (const char* good : {"cg", "a", "t1f3a", "z0000"}) {
        EXPECT_TRUE(Names::Make(good)) << good;
    }
    for (const char* bad : {"", "Cg", "1cg", "cg-x", "abcdef", "c_g", "c g"}) {
        auto n = Names::Make(bad);
        ASSERT_FALSE(n) << bad;
        EXPECT_EQ(n.error().code, ErrorCode::kInvalidArgument);
        EXPECT_EQ(n.error().field(), "prefix");
    }
}

TEST(LinuxnetNamesTest, ParseLinkTakesOnlyThisPrefixsPattern) {
    const Names cg;
    EXPECT_EQ(cg.ParseLink(cg.Bridge("n")), LinkKind::kBridge);
    EXPECT_EQ(cg.ParseLink(cg.Port("p")), LinkKind::kPort);
    EXPECT_EQ(cg.ParseLink("cg-x17d5a8f04ff"), std::nullopt);  // no such kind
    EXPECT_EQ(cg.ParseLink("cg-b17d5a8f04f"), std::nullopt);   // too short
    EXPECT_EQ(cg.ParseLink("cg-b17D5a8f04ff"), std::nullopt);  // not lowercase hex
    EXPECT_EQ(cg.ParseLink("cgb17d5a8f04ffa"), std::nullopt);
    EXPECT_EQ(cg.ParseLink("eth0"), std::nullopt);
    EXPECT_EQ(cg.ParseLink("docker0"), std::nullopt);

    // A prefix that begins another one: neither parses the other's names, whatever their hex.
    const Names cgt = MustMake("cgt");
    EXPECT_EQ(cg.ParseLink(cgt.Bridge("n")), std::nullopt);
    EXPECT_EQ(cgt.ParseLink(cg.Bridge("n")), std::nullopt);
    EXPECT_EQ(cg.ParseLink("cgt-b0123456789"), std::nullopt);
}

TEST(LinuxnetNamesTest, OwnsWhenTheAliasIsTheIdTheNameWasMadeFrom) {
    const Names cg;
    const std::string id = "1e543fbb-5ebb-4445-a1f1-fee1cb64a85d";
    EXPECT_TRUE(cg.Owns(cg.Port(id), id));
    EXPECT_TRUE(cg.Owns(cg.Bridge(std::string(kMaxId, 'n')), std::string(kMaxId, 'n')));
    EXPECT_FALSE(cg.Owns(cg.Port(id), ""));  // a create interrupted before its alias
    EXPECT_FALSE(cg.Owns(cg.Port(id), "another id"));
    EXPECT_FALSE(cg.Owns(cg.Port(id), id + "x"));
    EXPECT_FALSE(cg.Owns(MustMake("cgt").Port(id), id));
    EXPECT_FALSE(cg.Owns("eth0", id));
}

TEST(LinuxnetNamesTest, NamespacesHoldTheWholeId) {
    const Names cg;
    const std::string id = "1e543fbb-5ebb-4445-a1f1-fee1cb64a85d";
    EXPECT_EQ(cg.Namespace(id), "cg-" + id);
    EXPECT_EQ(cg.NamespacePath(id), "/run/netns/cg-" + id);
    EXPECT_EQ(cg.ParseNamespace("cg-" + id), id);
    EXPECT_EQ(cg.ParseNamespace("cg-"), std::nullopt);
    EXPECT_EQ(cg.ParseNamespace("cgt-" + id), std::nullopt);
    EXPECT_EQ(MustMake("cgt").ParseNamespace("cg-" + id), std::nullopt);
    EXPECT_EQ(cg.ParseNamespace("netns1"), std::nullopt);

    const std::string longest(kMaxId - 3, 'i');  // "cg-" + id is a 255-byte file name
    EXPECT_TRUE(cg.ValidateNamespaceId("id", longest));
    EXPECT_EQ(cg.ParseNamespace(cg.Namespace(longest)), longest);
    EXPECT_FALSE(cg.ValidateNamespaceId("id", longest + "i"));
    auto slash = cg.ValidateNamespaceId("namespace_id", "a/b");
    ASSERT_FALSE(slash);
    EXPECT_EQ(slash.error().field(), "namespace_id");
}

TEST(LinuxnetNamesTest, IdsArePrintableAsciiUpTo255Bytes) {
    EXPECT_TRUE(ValidateId("id", "x"));
    EXPECT_TRUE(ValidateId("id", std::string(kMaxId, 'x')));
    EXPECT_TRUE(ValidateId("id", "a/b:c~!"));
    for (const std::string& bad :
         std::vector<std::string>{"", std::string(kMaxId + 1, 'x'), "a b", "a\nb", "caf\xc3\xa9", "a\x7f"}) {
        auto s = ValidateId("port_id", bad);
        ASSERT_FALSE(s) << bad;
        EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
        EXPECT_EQ(s.error().field(), "port_id");
    }
    EXPECT_TRUE(ValidateInterfaceName("interface", "eth0"));
    for (const char* bad : {"", "0123456789abcdef", "a/b", "a:b", "a b", ".", ".."}) {
        EXPECT_FALSE(ValidateInterfaceName("interface", bad)) << bad;
    }
}

// Host checks its arguments before it runs anything: these need no root and touch nothing.
class LinuxnetHostArgumentsTest : public ::testing::Test {
protected:
    // A tool that would fail loudly if anything ran it.
    Host host_ = *Host::Make({.prefix = "zq", .ip = "/nonexistent/ip"});
    SteadyTime deadline_ = SteadyClock::now() + 60s;

    static PortSpec Spec() {
        return {.port_id = "p1",
                .network_id = "n1",
                .namespace_id = "i1",
                .mac = "fa:16:3e:00:00:01",
                .address = "10.20.0.5/24",
                .gateway = "10.20.0.1"};
    }
    void ExpectRefused(const PortSpec& spec, std::string_view field) {
        auto s = host_.PlugPort(spec, deadline_);
        ASSERT_FALSE(s) << field;
        EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument) << s.error().ToString();
        EXPECT_EQ(s.error().field(), field) << s.error().ToString();
    }
};

TEST_F(LinuxnetHostArgumentsTest, BadSpecsAreRefusedNamingTheField) {
    auto s = Spec();
    s.port_id = "";
    ExpectRefused(s, "port_id");
    s = Spec();
    s.network_id = "a b";
    ExpectRefused(s, "network_id");
    s = Spec();
    s.namespace_id = "a/b";
    ExpectRefused(s, "namespace_id");
    for (const char* mac : {"", "fa:16:3e:00:00", "fa-16-3e-00-00-01", "01:00:5e:00:00:01",
                            "00:00:00:00:00:00", "fa:16:3e:00:00:0g"}) {
        s = Spec();
        s.mac = mac;
        ExpectRefused(s, "mac");
    }
    for (const char* address : {"", "10.20.0.5", "10.20.0.5/33", "10.20.0.5/31", "10.20.0.0/24",
                                "10.20.0.255/24", "10.20.0.5/", "10.20.0.5/024", "::1/64"}) {
        s = Spec();
        s.address = address;
        ExpectRefused(s, "address");
    }
    for (const char* gateway : {"10.20.1.1", "10.20.0.5", "10.20.0.0", "10.20.0.255", "gw"}) {
        s = Spec();
        s.gateway = gateway;
        ExpectRefused(s, "gateway");
    }
    for (int mtu : {0, 67, 65536}) {
        s = Spec();
        s.mtu = mtu;
        ExpectRefused(s, "mtu");
    }
    s = Spec();
    s.interface = "a/b";
    ExpectRefused(s, "interface");

    auto bridge = host_.EnsureBridge("n1", 10, deadline_);
    ASSERT_FALSE(bridge);
    EXPECT_EQ(bridge.error().field(), "mtu");
    EXPECT_EQ(host_.EnsureBridge("", 1500, deadline_).error().field(), "network_id");
    EXPECT_EQ(host_.EnsureNamespace("a/b", deadline_).error().field(), "id");
    EXPECT_EQ(host_.UnplugPort("", deadline_).error().field(), "port_id");
    EXPECT_EQ(host_.DeleteStray("eth0", deadline_).error().field(), "name");
    EXPECT_EQ(Host::Make({.prefix = "cg-1"}).error().field(), "prefix");
}

TEST_F(LinuxnetHostArgumentsTest, APassedDeadlineRunsNothing) {
    const SteadyTime past = SteadyClock::now() - 1s;
    for (const Status& s : {host_.EnsureBridge("n1", 1500, past), host_.DeleteBridge("n1", past),
                            host_.PlugPort(Spec(), past), host_.UnplugPort("p1", past),
                            host_.DeleteNamespace("i1", past), Status(host_.List(past).map([](auto&&) {}))}) {
        ASSERT_FALSE(s);
        EXPECT_EQ(s.error().code, ErrorCode::kDeadlineExceeded) << s.error().ToString();
        EXPECT_TRUE(s.error().retryable);
    }
}

TEST_F(LinuxnetHostArgumentsTest, AnIpThatCannotRunIsAFailedPrecondition) {
    auto s = host_.EnsureBridge("n1", 1500, deadline_);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition) << s.error().ToString();
    EXPECT_NE(s.error().message.find("/nonexistent/ip"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace cogs::linuxnet
