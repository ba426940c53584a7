// The address rules cogsd and cogs-network share: parsing, the subnet layout with its defaults and
// refusals (each naming its field), overlap between subnets, where a fixed address may go.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cogs/netaddr/ipv4.h"
#include "cogs/netaddr/subnet.h"

namespace cogs::netaddr {
namespace {

using ::testing::HasSubstr;

uint32_t Ip(std::string_view text) {
    auto ip = ParseIpv4(text);
    EXPECT_TRUE(ip.has_value()) << text;
    return ip.value_or(0);
}

Cidr Block(std::string_view text) {
    auto c = ParseCidr(text);
    EXPECT_TRUE(c.cidr) << text << ": " << c.problem;
    return c.cidr.value_or(Cidr{});
}

wire::Input In(std::string_view json) {
    auto in = wire::Input::ParseAny(json);
    EXPECT_TRUE(in) << json;
    return in ? std::move(*in) : wire::Input(wire::json::object{});
}

Result<SubnetLayout> Layout(std::string_view json) { return ReadSubnetLayout(In(json)); }

TEST(Ipv4, ParsesAndFormatsStrictDottedQuads) {
    EXPECT_EQ(ParseIpv4("10.0.0.5"), 0x0a000005u);
    EXPECT_EQ(ParseIpv4("255.255.255.255"), 0xffffffffu);
    EXPECT_EQ(ParseIpv4("0.0.0.0"), 0u);
    EXPECT_EQ(FormatIpv4(0xc0a80101u), "192.168.1.1");
    for (std::string_view bad : {"", "10.0.0", "10.0.0.5.", "10.0.0.256", "010.0.0.1", "10.0.0.-1", "10..0.1",
                                 "a.b.c.d", "10.0.0.1 ", " 10.0.0.1", "1000.0.0.1", "300.1.1.1", "::1"}) {
        EXPECT_FALSE(ParseIpv4(bad).has_value()) << bad;
    }
}

TEST(Ipv4, ParsesCidrsWithPrefix8To30AndZeroHostBits) {
    Cidr c = Block("10.1.0.0/16");
    EXPECT_EQ(c.first_host(), Ip("10.1.0.1"));
    EXPECT_EQ(c.last_host(), Ip("10.1.255.254"));
    EXPECT_EQ(c.broadcast(), Ip("10.1.255.255"));
    EXPECT_TRUE(c.Contains(Ip("10.1.7.7")));
    EXPECT_FALSE(c.Contains(Ip("10.2.0.1")));
    EXPECT_TRUE(c.IsHost(Ip("10.1.0.1")));
    EXPECT_FALSE(c.IsHost(Ip("10.1.0.0")));
    EXPECT_FALSE(c.IsHost(Ip("10.1.255.255")));
    EXPECT_EQ(c.ToString(), "10.1.0.0/16");
    EXPECT_TRUE(ParseCidr("10.0.0.0/8").cidr);
    EXPECT_TRUE(ParseCidr("10.0.0.4/30").cidr);
    for (std::string_view bad : {"10.0.0.0", "10.0.0.0/7", "10.0.0.0/31", "10.0.0.0/32", "10.0.0.0/33",
                                 "10.0.0.1/24", "10.0.0.0/024", "10.0.0.0/", "x/24", "10.0.0.0/24/1",
                                 "300.1.1.1/24", "::/0", "fd00::/64", "garbage", ""}) {
        auto r = ParseCidr(bad);
        EXPECT_FALSE(r.cidr) << bad;
        EXPECT_FALSE(r.problem.empty()) << bad;
    }
    EXPECT_EQ(ParseCidr("10.0.0.0/33").problem, "prefix length must be 8..30, got /33");
    EXPECT_EQ(ParseCidr("10.0.0.0/31").problem, "prefix length must be 8..30, got /31");
    EXPECT_THAT(ParseCidr("::/0").problem, HasSubstr("IPv6 is not supported"));
    EXPECT_THAT(ParseCidr("10.0.0.1/24").problem, HasSubstr("10.0.0.0/24"));
}

TEST(Ipv4, OverlapIsContainmentEitherWay) {
    EXPECT_TRUE(Block("10.1.0.0/16").Overlaps(Block("10.1.4.0/24")));
    EXPECT_TRUE(Block("10.1.4.0/24").Overlaps(Block("10.1.0.0/16")));
    EXPECT_TRUE(Block("10.1.4.0/24").Overlaps(Block("10.1.4.0/24")));
    EXPECT_FALSE(Block("10.1.0.0/16").Overlaps(Block("10.2.0.0/16")));
    EXPECT_FALSE(Block("10.0.0.0/25").Overlaps(Block("10.0.0.128/25")));
}

TEST(SubnetLayout, DefaultsAreTheFirstHostAsGatewayAndTheRestAsThePool) {
    auto s = Layout(R"({"cidr":"10.0.0.0/24"})");
    ASSERT_TRUE(s) << s.error().ToString();
    EXPECT_EQ(s->gateway, Ip("10.0.0.1"));
    EXPECT_EQ(s->pools, (std::vector<AddressRange>{{Ip("10.0.0.2"), Ip("10.0.0.254")}}));
    // A gateway in the middle splits the pool; "" is "not given".
    s = Layout(R"({"cidr":"10.0.0.0/24","gateway_ip":"10.0.0.100"})");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->pools, (std::vector<AddressRange>{{Ip("10.0.0.1"), Ip("10.0.0.99")},
                                                   {Ip("10.0.0.101"), Ip("10.0.0.254")}}));
    EXPECT_EQ(Layout(R"({"cidr":"10.0.0.0/24","gateway_ip":""})")->gateway, Ip("10.0.0.1"));
    // Given pools come back sorted.
    s = Layout(R"({"cidr":"10.0.0.0/24","allocation_pools":[{"start":"10.0.0.50","end":"10.0.0.60"},
                                                          {"start":"10.0.0.5","end":"10.0.0.9"}]})");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->pools, (std::vector<AddressRange>{{Ip("10.0.0.5"), Ip("10.0.0.9")},
                                                   {Ip("10.0.0.50"), Ip("10.0.0.60")}}));
    EXPECT_TRUE(s->InPools(Ip("10.0.0.5")));
    EXPECT_TRUE(s->InPools(Ip("10.0.0.60")));
    EXPECT_FALSE(s->InPools(Ip("10.0.0.10")));
    EXPECT_FALSE(s->InPools(Ip("10.0.0.61")));
    // A /30 has two host addresses: the gateway and one for a port.
    s = Layout(R"({"cidr":"10.0.0.4/30"})");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->pools, (std::vector<AddressRange>{{Ip("10.0.0.6"), Ip("10.0.0.6")}}));
}

TEST(SubnetLayout, EveryRefusalNamesItsField) {
    struct Case {
        std::string json, field, what;
    };
    const Case cases[] = {
        {R"({})", "cidr", "required"},
        {R"({"cidr":7})", "cidr", "must be a string"},
        {R"({"cidr":"10.0.0.0/33"})", "cidr", "prefix length must be 8..30"},
        {R"({"cidr":"10.0.0.0/31"})", "cidr", "prefix length must be 8..30"},
        {R"({"cidr":"300.1.1.1/24"})", "cidr", "IPv4 address"},
        {R"({"cidr":"::/0"})", "cidr", "IPv6"},
        {R"({"cidr":"garbage"})", "cidr", "a.b.c.d/n"},
        {R"({"cidr":"10.0.0.0/24","gateway_ip":"x"})", "gateway_ip", "IPv4 address"},
        {R"({"cidr":"10.0.0.0/24","gateway_ip":"10.0.1.1"})", "gateway_ip", "not a host address"},
        {R"({"cidr":"10.0.0.0/24","gateway_ip":"10.0.0.255"})", "gateway_ip", "not a host address"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":[]})", "allocation_pools", "non-empty"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":{}})", "allocation_pools", "array"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":[{"start":"10.0.0.2"}]})", "allocation_pools[0].end",
         "required"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":[{"start":"10.0.0.9","end":"10.0.0.2"}]})",
         "allocation_pools[0]", "starts after it ends"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":[{"start":"10.0.0.2","end":"10.0.1.9"}]})",
         "allocation_pools[0]", "not inside"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":[{"start":"10.0.0.1","end":"10.0.0.9"}]})",
         "allocation_pools[0]", "contains the gateway"},
        {R"({"cidr":"10.0.0.0/24","allocation_pools":[{"start":"10.0.0.2","end":"10.0.0.9"},
                                                      {"start":"10.0.0.9","end":"10.0.0.20"}]})",
         "allocation_pools", "ranges overlap at 10.0.0.9"},
    };
    for (const auto& c : cases) {
        auto s = Layout(c.json);
        ASSERT_FALSE(s) << c.json;
        EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument) << c.json;
        EXPECT_EQ(s.error().field(), c.field) << c.json << " -> " << s.error().message;
        EXPECT_THAT(s.error().message, HasSubstr(c.what)) << c.json;
    }
    // Inside a nested input the field is named by its full path.
    auto nested = ReadSubnetLayout(wire::Input(wire::json::object{{"cidr", "x"}}, "request"));
    ASSERT_FALSE(nested);
    EXPECT_EQ(nested.error().field(), "request.cidr");
}

TEST(SubnetRules, AnOverlapIsAConflictNamingTheCidr) {
    const wire::Input in = In(R"({"cidr":"10.0.0.128/25"})");
    const Cidr other = Block("10.0.0.0/24");
    const std::vector<AddressRange> pools;
    auto st = CheckNoOverlap(in, Block("10.0.0.128/25"), "n1", {"s1", other, pools});
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::kConflict);
    EXPECT_EQ(st.error().field(), "cidr");
    EXPECT_EQ(st.error().message, "cidr: 10.0.0.128/25 overlaps subnet s1 (10.0.0.0/24) of network n1");
    EXPECT_TRUE(CheckNoOverlap(in, Block("10.0.1.0/24"), "n1", {"s1", other, pools}));
}

TEST(SubnetRules, AFixedAddressMustBeInASubnetsPools) {
    const SubnetLayout a = *Layout(R"({"cidr":"10.0.0.0/24"})");
    const SubnetLayout b =
        *Layout(R"({"cidr":"10.0.1.0/24","allocation_pools":[{"start":"10.0.1.10","end":"10.0.1.20"}]})");
    const std::vector<SubnetRef> both = {{"a", a.cidr, a.pools}, {"b", b.cidr, b.pools}};
    const wire::Input in = In("{}");
    auto at = [&](std::string_view ip, std::span<const SubnetRef> subnets, bool named) {
        return SubnetForFixedIp(in, "fixed_ip", Ip(ip), "n1", subnets, named);
    };
    EXPECT_EQ(at("10.0.0.7", both, false).value(), 0u);
    EXPECT_EQ(at("10.0.1.15", both, false).value(), 1u);
    struct Case {
        std::string ip;
        bool named;
        std::string what;
    };
    const Case cases[] = {
        {"10.0.2.7", false, "10.0.2.7 is in no subnet of network n1"},
        {"10.0.0.1", false, "outside the allocation pools of subnet a"},    // the gateway
        {"10.0.0.255", false, "outside the allocation pools of subnet a"},  // the broadcast address
        {"10.0.1.9", false, "outside the allocation pools of subnet b"},
        {"10.0.1.15", true, "10.0.1.15 is not in subnet a (10.0.0.0/24)"},
    };
    for (const auto& c : cases) {
        auto r = at(c.ip, c.named ? std::span<const SubnetRef>(both).first(1) : both, c.named);
        ASSERT_FALSE(r) << c.ip;
        EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
        EXPECT_EQ(r.error().field(), "fixed_ip");
        EXPECT_THAT(r.error().message, HasSubstr(c.what));
    }
    EXPECT_THAT(at("10.0.0.7", {}, false).error().message, HasSubstr("in no subnet of network n1"));

    const Error taken = AddressInUse(in, "fixed_ip", Ip("10.0.0.7"), "p1");
    EXPECT_EQ(taken.code, ErrorCode::kConflict);
    EXPECT_EQ(taken.field(), "fixed_ip");
    EXPECT_EQ(taken.message, "fixed_ip: address 10.0.0.7 in use by port p1");
}

}  // namespace
}  // namespace cogs::netaddr
