#include "cogs/services/network/network.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <boost/json.hpp>
#include <map>
#include <random>
#include <set>
#include <unordered_set>

#include "cogs/netaddr/ipv4.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/network/internal/address_pool.h"

namespace cogs::services::network {
namespace {

namespace json = boost::json;
using internal::AddressPool;
using internal::AddressRange;
using netaddr::FormatIpv4;
using netaddr::ParseIpv4;
using ::testing::HasSubstr;
using Domain = kit::test_service::DomainUnderTest<kit::Domain>;

uint32_t Ip(std::string_view text) {
    auto ip = ParseIpv4(text);
    EXPECT_TRUE(ip.has_value()) << text;
    return ip.value_or(0);
}

std::string Str(const json::value& v, std::string_view key) {
    return std::string(v.as_object().at(key).as_string());
}

// "fa:16:3e:xx:xx:xx" with lower-case hex digits.
bool IsPortMac(std::string_view mac) {
    if (mac.size() != 17 || !mac.starts_with("fa:16:3e")) {
        return false;
    }
    for (size_t i = 8; i < mac.size(); ++i) {
        const char c = mac[i];
        const bool ok = (i - 8) % 3 == 0 ? c == ':' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

// ---- AddressPool ----

TEST(AddressPool, TakesNextFitAndWrapsAround) {
    AddressPool pool({{10, 14}});
    EXPECT_EQ(pool.size(), 5u);
    EXPECT_EQ(pool.TakeNext(), 10u);
    EXPECT_EQ(pool.TakeNext(), 11u);
    EXPECT_TRUE(pool.Release(10));
    // Next-fit: the address released a moment ago comes back only after the rest.
    EXPECT_EQ(pool.TakeNext(), 12u);
    EXPECT_EQ(pool.TakeNext(), 13u);
    EXPECT_EQ(pool.TakeNext(), 14u);
    EXPECT_EQ(pool.TakeNext(), 10u);  // wrapped
    EXPECT_EQ(pool.TakeNext(), std::nullopt);
    EXPECT_EQ(pool.free_count(), 0u);
}

TEST(AddressPool, TakeAndReleaseKeepFreeRangesMergedAndRefuseWhatIsNotTheirs) {
    AddressPool pool({{20, 29}, {5, 9}, {10, 12}});  // unsorted, two adjacent pools
    EXPECT_EQ(pool.FreeRanges(), (std::vector<AddressRange>{{5, 12}, {20, 29}}));
    EXPECT_TRUE(pool.InPools(12));
    EXPECT_FALSE(pool.InPools(13));
    EXPECT_TRUE(pool.Take(7));
    EXPECT_FALSE(pool.Take(7));   // taken
    EXPECT_FALSE(pool.Take(15));  // outside
    EXPECT_EQ(pool.FreeRanges(), (std::vector<AddressRange>{{5, 6}, {8, 12}, {20, 29}}));
    EXPECT_FALSE(pool.Release(8));   // free already
    EXPECT_FALSE(pool.Release(15));  // outside
    EXPECT_TRUE(pool.Release(7));
    EXPECT_EQ(pool.FreeRanges(), (std::vector<AddressRange>{{5, 12}, {20, 29}}));
    EXPECT_EQ(pool.free_count(), 18u);
}

TEST(AddressPool, SequentialAllocationOfALargePoolKeepsOneFreeRange) {
    // The cost of a take is O(log r) for r free ranges: sequential allocation must not fragment.
    AddressPool pool({{Ip("10.0.0.2"), Ip("10.0.255.254")}});
    for (int i = 0; i < 60000; ++i) {
        ASSERT_TRUE(pool.TakeNext());
    }
    EXPECT_EQ(pool.FreeRanges().size(), 1u);
    EXPECT_EQ(pool.free_count(), pool.size() - 60000);
}

// ---- the domain ----

using Store = std::map<std::pair<std::string, std::string>, std::string>;  // (table, id) -> record

class NetworkDomainTest : public ::testing::Test {
protected:
    // Performs an action; on success applies its Tx to store_ (as the kit commits it) and returns the
    // output; on error checks that nothing changed (the domain's contract) and returns the error.
    Result<json::value> Do(std::string_view action, std::string_view input) {
        const std::string before = check_unchanged_on_error_ ? domain_->Inventory() : "";
        kit::Tx tx;
        auto done = domain_.Perform(action, input, tx);
        if (!done) {
            if (check_unchanged_on_error_) {
                EXPECT_EQ(domain_->Inventory(), before)
                    << action << " " << input << " failed but changed state";
            }
            return MakeError(done.error());
        }
        EXPECT_EQ(done->ready_at_us, 0);
        for (const auto& w : tx.writes()) {
            if (w.erase) {
                store_.erase({w.table, w.id});
            } else {
                EXPECT_NO_THROW(json::parse(w.json)) << w.json;
                store_[{w.table, w.id}] = w.json;
            }
        }
        last_writes_ = tx.writes();
        return json::parse(done->output);
    }

    json::value Ok(std::string_view action, std::string_view input) {
        auto r = Do(action, input);
        EXPECT_TRUE(r.has_value()) << action << " " << input << ": " << (r ? "" : r.error().ToString());
        return r ? *r : json::value();
    }

    Error Fails(std::string_view action, std::string_view input, ErrorCode code) {
        auto r = Do(action, input);
        EXPECT_FALSE(r.has_value()) << action << " " << input
                                    << " succeeded: " << (r ? json::serialize(*r) : "");
        if (r) {
            return Error();
        }
        EXPECT_EQ(r.error().code, code) << action << " " << input << ": " << r.error().ToString();
        EXPECT_FALSE(r.error().retryable) << r.error().ToString();
        return r.error();
    }

    // A fresh domain loaded from store_, table by table in id order (the kit's order), tables in the
    // order given: Load must not depend on it.
    static Domain LoadFrom(const Store& store, std::vector<std::string> tables) {
        Domain d(MakeNetworkDomain());
        for (const auto& table : tables) {
            for (const auto& [key, record] : store) {
                if (key.first == table) {
                    auto s = d->Load(key.first, key.second, record);
                    EXPECT_TRUE(s.has_value())
                        << key.first << "/" << key.second << ": " << s.error().ToString();
                }
            }
        }
        return d;
    }

    void Reload(std::vector<std::string> tables = {"networks", "ports", "subnets"}) {
        auto fresh = LoadFrom(store_, std::move(tables));
        EXPECT_EQ(fresh->Inventory(), domain_->Inventory());
        domain_ = std::move(fresh);
    }

    json::value Inventory() const { return json::parse(domain_->Inventory()); }

    std::set<std::string> HeldAddresses() const {
        std::set<std::string> out;
        const json::value inventory = Inventory();
        for (const auto& a : inventory.at("addresses").as_array()) {
            EXPECT_TRUE(out.insert(Str(a, "ip") + "@" + Str(a, "subnet_id")).second) << "held twice: " << a;
        }
        return out;
    }

    void MakeNet(std::string_view id = "n1") {
        Ok("create_network", R"({"id":")" + std::string(id) + R"("})");
    }
    void MakeSubnet(std::string_view id, std::string_view net, std::string_view cidr,
                    std::string_view extra = "") {
        Ok("create_subnet", R"({"id":")" + std::string(id) + R"(","network_id":")" + std::string(net) +
                                R"(","cidr":")" + std::string(cidr) + "\"" + std::string(extra) + "}");
    }
    json::value MakePort(std::string_view id, std::string_view net = "n1", std::string_view extra = "") {
        return Ok("create_port", R"({"id":")" + std::string(id) + R"(","network_id":")" + std::string(net) +
                                     "\"" + std::string(extra) + "}");
    }

    Domain domain_{MakeNetworkDomain()};
    Store store_;
    std::vector<kit::Tx::Write> last_writes_;
    bool check_unchanged_on_error_ = true;
};

TEST_F(NetworkDomainTest, NameAndActions) {
    EXPECT_EQ(domain_->name(), "network");
    EXPECT_THAT(domain_.actions().names(),
                ::testing::ElementsAre("create_network", "delete_network", "create_subnet", "delete_subnet",
                                       "create_port", "update_port", "delete_port"));
    EXPECT_EQ(domain_.actions().names(), std::vector<std::string>(kActions.begin(), kActions.end()));
    EXPECT_EQ(Fails("boot", "{}", ErrorCode::kNotFound).message, "network has no action 'boot'");
}

TEST_F(NetworkDomainTest, CreateNetworkIsIdempotentById) {
    auto out = Ok("create_network", R"({"id":"n1","name":"web","project_id":"p1"})");
    EXPECT_EQ(out, json::parse(R"({"id":"n1","name":"web","project_id":"p1"})"));
    ASSERT_EQ(last_writes_.size(), 1u);
    EXPECT_EQ(last_writes_[0].table, "networks");
    EXPECT_EQ(last_writes_[0].id, "n1");

    // The same id and content again: the same answer, nothing written.
    EXPECT_EQ(Ok("create_network", R"({"project_id":"p1","id":"n1","name":"web"})"), out);
    EXPECT_TRUE(last_writes_.empty());
    // The same id with other content.
    auto e =
        Fails("create_network", R"({"id":"n1","name":"db","project_id":"p1"})", ErrorCode::kAlreadyExists);
    EXPECT_THAT(e.message, HasSubstr("n1"));
    Fails("create_network", R"({"id":"n1","name":"web"})", ErrorCode::kAlreadyExists);

    // Optional fields default to "" (null counts as absent).
    EXPECT_EQ(Ok("create_network", R"({"id":"n2","name":null})"),
              json::parse(R"({"id":"n2","name":"","project_id":""})"));
}

TEST_F(NetworkDomainTest, DeleteNetworkRefusesWhileSubnetsOrPortsRemain) {
    EXPECT_EQ(Ok("delete_network", R"({"id":"nope"})"), json::parse(R"({"id":"nope","deleted":false})"));
    EXPECT_TRUE(last_writes_.empty());
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    MakePort("p1");
    auto e = Fails("delete_network", R"({"id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.message, HasSubstr("1 subnet(s) and 1 port(s)"));
    Ok("delete_port", R"({"id":"p1"})");
    Fails("delete_network", R"({"id":"n1"})", ErrorCode::kFailedPrecondition);
    Ok("delete_subnet", R"({"id":"s1"})");
    EXPECT_EQ(Ok("delete_network", R"({"id":"n1"})"), json::parse(R"({"id":"n1","deleted":true})"));
    ASSERT_EQ(last_writes_.size(), 1u);
    EXPECT_TRUE(last_writes_[0].erase);
    EXPECT_EQ(Ok("delete_network", R"({"id":"n1"})"), json::parse(R"({"id":"n1","deleted":false})"));
    EXPECT_TRUE(store_.empty());
    EXPECT_EQ(Inventory(), json::parse(R"({"networks":[],"subnets":[],"ports":[],"addresses":[]})"));
}

TEST_F(NetworkDomainTest, CreateSubnetFillsInTheGatewayAndPool) {
    MakeNet();
    auto out = Ok("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24","name":"a"})");
    EXPECT_EQ(out, json::parse(R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24","gateway_ip":"10.0.0.1",
        "allocation_pools":[{"start":"10.0.0.2","end":"10.0.0.254"}],"name":"a","project_id":""})"));
    ASSERT_EQ(last_writes_.size(), 1u);
    EXPECT_EQ(last_writes_[0].table, "subnets");

    // A gateway in the middle: the pool is every other host address.
    out =
        Ok("create_subnet", R"({"id":"s2","network_id":"n1","cidr":"10.0.1.0/29","gateway_ip":"10.0.1.3"})");
    EXPECT_EQ(out.at("allocation_pools"), json::parse(R"([{"start":"10.0.1.1","end":"10.0.1.2"},
                                                          {"start":"10.0.1.4","end":"10.0.1.6"}])"));
    // Pools as given, sorted; "" gateway means the default.
    out = Ok("create_subnet", R"({"id":"s3","network_id":"n1","cidr":"10.0.2.0/24","gateway_ip":"",
        "allocation_pools":[{"start":"10.0.2.100","end":"10.0.2.110"},{"start":"10.0.2.10","end":"10.0.2.20"}]})");
    EXPECT_EQ(out.at("gateway_ip"), "10.0.2.1");
    EXPECT_EQ(out.at("allocation_pools"), json::parse(R"([{"start":"10.0.2.10","end":"10.0.2.20"},
                                                          {"start":"10.0.2.100","end":"10.0.2.110"}])"));
    // /30: one gateway, one address.
    out = Ok("create_subnet", R"({"id":"s4","network_id":"n1","cidr":"10.0.3.0/30"})");
    EXPECT_EQ(out.at("allocation_pools"), json::parse(R"([{"start":"10.0.3.2","end":"10.0.3.2"}])"));
}

TEST_F(NetworkDomainTest, CreateSubnetIsIdempotentByIdAndChecksNetworkAndOverlap) {
    auto e =
        Fails("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24"})", ErrorCode::kNotFound);
    EXPECT_THAT(e.message, HasSubstr("network n1"));
    MakeNet();
    MakeNet("n2");
    auto first = Ok("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24"})");
    // Same content, spelled out in full: the same subnet, nothing written.
    EXPECT_EQ(
        Ok("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24","gateway_ip":"10.0.0.1",
                  "allocation_pools":[{"start":"10.0.0.2","end":"10.0.0.254"}],"name":""})"),
        first);
    EXPECT_TRUE(last_writes_.empty());
    Fails("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.1.0/24"})",
          ErrorCode::kAlreadyExists);
    Fails("create_subnet", R"({"id":"s1","network_id":"n2","cidr":"10.0.0.0/24"})",
          ErrorCode::kAlreadyExists);
    Fails("create_subnet", R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24","name":"x"})",
          ErrorCode::kAlreadyExists);

    // Overlaps within one network conflict, in either direction; across networks they are fine.
    e = Fails("create_subnet", R"({"id":"s2","network_id":"n1","cidr":"10.0.0.128/25"})",
              ErrorCode::kConflict);
    EXPECT_THAT(e.message, HasSubstr("s1"));
    Fails("create_subnet", R"({"id":"s2","network_id":"n1","cidr":"10.0.0.0/16"})", ErrorCode::kConflict);
    Ok("create_subnet", R"({"id":"s2","network_id":"n1","cidr":"10.0.1.0/24"})");
    Ok("create_subnet", R"({"id":"s3","network_id":"n2","cidr":"10.0.0.0/24"})");
}

TEST_F(NetworkDomainTest, EveryValidationErrorNamesItsField) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    MakePort("p1");
    struct Case {
        std::string action;
        std::string input;
        std::string field;
    };
    const std::vector<Case> cases = {
        {"create_network", R"([])", "input"},
        {"create_network", R"(3)", "input"},
        {"create_network", R"({})", "id"},
        {"create_network", R"({"id":""})", "id"},
        {"create_network", R"({"id":5})", "id"},
        {"create_network", R"({"id":")" + std::string(300, 'x') + "\"}", "id"},
        {"create_network", R"({"id":"n9","typo":1})", "typo"},
        {"create_network", R"({"id":"n9","name":3})", "name"},
        {"create_network", R"({"id":"n9","project_id":[]})", "project_id"},
        {"delete_network", R"({})", "id"},
        {"delete_network", R"({"id":"n1","force":true})", "force"},
        {"create_subnet", R"({"network_id":"n1","cidr":"10.9.0.0/24"})", "id"},
        {"create_subnet", R"({"id":"s9","cidr":"10.9.0.0/24"})", "network_id"},
        {"create_subnet", R"({"id":"s9","network_id":"n1"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":7})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.1/24"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/31"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.0.0.0/7"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"300.9.0.0/24"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"fd00::/64"})", "cidr"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","mtu":1500})", "mtu"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","gateway_ip":"x"})",
         "gateway_ip"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","gateway_ip":1})",
         "gateway_ip"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","gateway_ip":"10.9.1.1"})",
         "gateway_ip"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","gateway_ip":"10.9.0.0"})",
         "gateway_ip"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","gateway_ip":"10.9.0.255"})",
         "gateway_ip"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":"x"})",
         "allocation_pools"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[]})",
         "allocation_pools"},
        {"create_subnet", R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[1]})",
         "allocation_pools[0]"},
        {"create_subnet",
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.2"}]})",
         "allocation_pools[0].end"},
        {"create_subnet",
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.2","end":"10.9.0.9"},
            {"start":"10.9.0.20","end":"10.9.0.30","step":2}]})",
         "allocation_pools[1].step"},
        {"create_subnet",
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"x","end":"10.9.0.9"}]})",
         "allocation_pools[0].start"},
        {"create_subnet",
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.9","end":"10.9.0.2"}]})",
         "allocation_pools[0]"},
        {"create_subnet",  // contains the gateway
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.1","end":"10.9.0.9"}]})",
         "allocation_pools[0]"},
        {"create_subnet",  // outside the block
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.2","end":"10.9.1.9"}]})",
         "allocation_pools[0]"},
        {"create_subnet",  // the broadcast address is never allocatable
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.2","end":"10.9.0.255"}]})",
         "allocation_pools[0]"},
        {"create_subnet",  // the network address neither
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","gateway_ip":"10.9.0.254",
             "allocation_pools":[{"start":"10.9.0.0","end":"10.9.0.9"}]})",
         "allocation_pools[0]"},
        {"create_subnet",
         R"({"id":"s9","network_id":"n1","cidr":"10.9.0.0/24","allocation_pools":[{"start":"10.9.0.2","end":"10.9.0.9"},
            {"start":"10.9.0.9","end":"10.9.0.20"}]})",
         "allocation_pools"},
        {"delete_subnet", R"({"id":""})", "id"},
        {"create_port", R"({"network_id":"n1"})", "id"},
        {"create_port", R"({"id":"p9"})", "network_id"},
        {"create_port", R"({"id":"p9","network_id":"n1","fixed_ip":"10.0.0.300"})", "fixed_ip"},
        {"create_port", R"({"id":"p9","network_id":"n1","fixed_ip":5})", "fixed_ip"},
        {"create_port", R"({"id":"p9","network_id":"n1","subnet_id":7})", "subnet_id"},
        {"create_port", R"({"id":"p9","network_id":"n1","device_id":1})", "device_id"},
        {"create_port", R"({"id":"p9","network_id":"n1","name":{}})", "name"},
        {"create_port", R"({"id":"p9","network_id":"n1","project_id":true})", "project_id"},
        {"create_port", R"({"id":"p9","network_id":"n1","ip":"10.0.0.9"})", "ip"},
        // Outside every subnet, in the subnet but outside its pools (the gateway), or not in the
        // subnet asked for: invalid, not "in use".
        {"create_port", R"({"id":"p9","network_id":"n1","fixed_ip":"10.7.0.9"})", "fixed_ip"},
        {"create_port", R"({"id":"p9","network_id":"n1","fixed_ip":"10.0.0.1"})", "fixed_ip"},
        {"create_port", R"({"id":"p9","network_id":"n1","fixed_ip":"10.0.0.255"})", "fixed_ip"},
        {"create_port", R"({"id":"p9","network_id":"n1","subnet_id":"s1","fixed_ip":"10.7.0.9"})",
         "fixed_ip"},
        {"update_port", R"({"id":"p1"})", "device_id"},
        {"update_port", R"({"id":"p1","device_id":null})", "device_id"},
        {"update_port", R"({"device_id":"vm"})", "id"},
        {"update_port", R"({"id":"p1","device_id":"vm","name":"x"})", "name"},
        {"delete_port", R"({})", "id"},
        {"delete_port", R"({"id":1})", "id"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.action + " " + c.input);
        auto e = Fails(c.action, c.input, ErrorCode::kInvalidArgument);
        EXPECT_EQ(e.field(), c.field);
        EXPECT_THAT(e.message, ::testing::StartsWith(c.field + ": "));
    }
}

TEST_F(NetworkDomainTest, CreatePortAllocatesAnAddressAndAMac) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    auto p = Ok("create_port",
                R"({"id":"p1","network_id":"n1","name":"eth0","device_id":"vm1","project_id":"t"})");
    EXPECT_EQ(Str(p, "id"), "p1");
    EXPECT_EQ(Str(p, "network_id"), "n1");
    EXPECT_EQ(Str(p, "subnet_id"), "s1");
    EXPECT_EQ(Str(p, "fixed_ip"), "10.0.0.2");
    EXPECT_EQ(Str(p, "device_id"), "vm1");
    EXPECT_EQ(Str(p, "name"), "eth0");
    EXPECT_EQ(Str(p, "project_id"), "t");
    EXPECT_TRUE(IsPortMac(Str(p, "mac_address"))) << p;
    // The port record, and the subnet's record with its moved cursor.
    std::set<std::string> written;
    for (const auto& w : last_writes_) {
        written.insert(w.table + "/" + w.id);
    }
    EXPECT_EQ(written, (std::set<std::string>{"ports/p1", "subnets/s1"}));

    // Defaults: unbound, no name.
    auto p2 = MakePort("p2");
    EXPECT_EQ(Str(p2, "fixed_ip"), "10.0.0.3");
    EXPECT_EQ(Str(p2, "device_id"), "");
    EXPECT_NE(Str(p2, "mac_address"), Str(p, "mac_address"));
    // null and "" for subnet_id / fixed_ip mean "choose".
    EXPECT_EQ(Str(MakePort("p3", "n1", R"(,"subnet_id":null,"fixed_ip":"")"), "fixed_ip"), "10.0.0.4");
}

TEST_F(NetworkDomainTest, CreatePortTakesARequestedAddressOnce) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    MakeSubnet("s2", "n1", "10.0.1.0/24");
    auto p = MakePort("p1", "n1", R"(,"fixed_ip":"10.0.1.5")");
    EXPECT_EQ(Str(p, "subnet_id"), "s2");  // found by the address
    EXPECT_EQ(Str(p, "fixed_ip"), "10.0.1.5");
    ASSERT_EQ(last_writes_.size(), 1u);  // a requested address does not move the cursor
    auto e =
        Fails("create_port", R"({"id":"p2","network_id":"n1","fixed_ip":"10.0.1.5"})", ErrorCode::kConflict);
    EXPECT_EQ(e.message, "fixed_ip: address 10.0.1.5 in use by port p1");
    EXPECT_EQ(e.field(), "fixed_ip");
    Fails("create_port", R"({"id":"p2","network_id":"n1","subnet_id":"s1","fixed_ip":"10.0.1.6"})",
          ErrorCode::kInvalidArgument);
    EXPECT_EQ(Str(MakePort("p2", "n1", R"(,"subnet_id":"s2","fixed_ip":"10.0.1.6")"), "fixed_ip"),
              "10.0.1.6");
    // Automatic allocation in s2 skips what was requested.
    Ok("create_port", R"({"id":"a","network_id":"n1","subnet_id":"s2"})");
    Ok("create_port", R"({"id":"b","network_id":"n1","subnet_id":"s2"})");
    EXPECT_EQ(Str(Ok("create_port", R"({"id":"c","network_id":"n1","subnet_id":"s2"})"), "fixed_ip"),
              "10.0.1.4");
    EXPECT_EQ(Str(Ok("create_port", R"({"id":"d","network_id":"n1","subnet_id":"s2"})"), "fixed_ip"),
              "10.0.1.7");
    HeldAddresses();
}

TEST_F(NetworkDomainTest, CreatePortChecksNetworkAndSubnet) {
    auto e = Fails("create_port", R"({"id":"p1","network_id":"n1"})", ErrorCode::kNotFound);
    EXPECT_THAT(e.message, HasSubstr("network n1"));
    MakeNet();
    e = Fails("create_port", R"({"id":"p1","network_id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.message, HasSubstr("no free address in network n1"));
    MakeNet("n2");
    MakeSubnet("s2", "n2", "10.0.0.0/24");
    e = Fails("create_port", R"({"id":"p1","network_id":"n1","subnet_id":"s9"})", ErrorCode::kNotFound);
    EXPECT_THAT(e.message, HasSubstr("subnet s9"));
    e = Fails("create_port", R"({"id":"p1","network_id":"n1","subnet_id":"s2"})",
              ErrorCode::kInvalidArgument);
    EXPECT_EQ(e.field(), "subnet_id");
}

TEST_F(NetworkDomainTest, CreatePortIsIdempotentById) {
    MakeNet();
    MakeNet("n2");
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    MakeSubnet("s2", "n2", "10.0.0.0/24");
    auto p = MakePort("p1", "n1", R"(,"name":"a")");
    // Re-sent: the same port (same address, same MAC), nothing allocated or written.
    EXPECT_EQ(MakePort("p1", "n1", R"(,"name":"a")"), p);
    EXPECT_TRUE(last_writes_.empty());
    EXPECT_EQ(MakePort("p1", "n1", R"(,"subnet_id":"s1","fixed_ip":"10.0.0.2")"), p);
    EXPECT_EQ(Str(MakePort("p2"), "fixed_ip"), "10.0.0.3");
    // Contradictions.
    Fails("create_port", R"({"id":"p1","network_id":"n2"})", ErrorCode::kAlreadyExists);
    Fails("create_port", R"({"id":"p1","network_id":"n1","fixed_ip":"10.0.0.9"})", ErrorCode::kAlreadyExists);
    // Ids are global: the same port id on another network is refused too.
    EXPECT_EQ(Inventory().at("ports").as_array().size(), 2u);
}

TEST_F(NetworkDomainTest, FallsBackToTheNextSubnetWithAFreeAddress) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/30");  // one address: .2
    MakeSubnet("s2", "n1", "10.0.1.0/30");
    EXPECT_EQ(Str(MakePort("p1"), "fixed_ip"), "10.0.0.2");
    auto p2 = MakePort("p2");
    EXPECT_EQ(Str(p2, "subnet_id"), "s2");
    EXPECT_EQ(Str(p2, "fixed_ip"), "10.0.1.2");
    auto e = Fails("create_port", R"({"id":"p3","network_id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_EQ(e.message, "no free address in network n1");
    e = Fails("create_port", R"({"id":"p3","network_id":"n1","subnet_id":"s1"})",
              ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.message, HasSubstr("no free address in subnet s1"));
    Ok("delete_port", R"({"id":"p1"})");
    EXPECT_EQ(Str(MakePort("p3"), "fixed_ip"), "10.0.0.2");
}

TEST_F(NetworkDomainTest, A24WithPool2To254GivesExactly253Ports) {
    MakeNet();
    MakeSubnet("s1", "n1", "192.168.7.0/24",
               R"(,"allocation_pools":[{"start":"192.168.7.2","end":"192.168.7.254"}])");
    std::set<std::string> ips;
    std::set<std::string> macs;
    for (int i = 0; i < 253; ++i) {
        auto p = MakePort("p" + std::to_string(i));
        EXPECT_TRUE(ips.insert(Str(p, "fixed_ip")).second) << p;
        EXPECT_TRUE(macs.insert(Str(p, "mac_address")).second) << p;
    }
    EXPECT_EQ(ips.size(), 253u);
    EXPECT_TRUE(ips.contains("192.168.7.2"));
    EXPECT_TRUE(ips.contains("192.168.7.254"));
    EXPECT_FALSE(ips.contains("192.168.7.1"));
    EXPECT_FALSE(ips.contains("192.168.7.0"));
    EXPECT_FALSE(ips.contains("192.168.7.255"));
    auto e = Fails("create_port", R"({"id":"one-more","network_id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_EQ(e.message, "no free address in network n1");

    // A released address goes back to the pool and is the only one to give.
    Ok("delete_port", R"({"id":"p100"})");
    EXPECT_EQ(Str(MakePort("one-more"), "fixed_ip"), "192.168.7.102");
    Fails("create_port", R"({"id":"two-more","network_id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_EQ(HeldAddresses().size(), 253u);
}

TEST_F(NetworkDomainTest, AllocationIsNextFitSoAReleasedAddressIsNotReusedAtOnce) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/29");  // pool .2 .. .6
    EXPECT_EQ(Str(MakePort("a"), "fixed_ip"), "10.0.0.2");
    EXPECT_EQ(Str(MakePort("b"), "fixed_ip"), "10.0.0.3");
    EXPECT_EQ(Str(MakePort("c"), "fixed_ip"), "10.0.0.4");
    Ok("delete_port", R"({"id":"b"})");
    EXPECT_EQ(Str(MakePort("d"), "fixed_ip"), "10.0.0.5");
    // The cursor survives a reload (it is in the subnet's record).
    Reload();
    EXPECT_EQ(Str(MakePort("e"), "fixed_ip"), "10.0.0.6");
    EXPECT_EQ(Str(MakePort("f"), "fixed_ip"), "10.0.0.3");  // wrapped around to the released one
    Fails("create_port", R"({"id":"g","network_id":"n1"})", ErrorCode::kFailedPrecondition);
}

TEST_F(NetworkDomainTest, UpdatePortBindsAndUnbinds) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    auto p = MakePort("p1");
    auto bound = Ok("update_port", R"({"id":"p1","device_id":"server-1"})");
    EXPECT_EQ(Str(bound, "device_id"), "server-1");
    EXPECT_EQ(Str(bound, "fixed_ip"), Str(p, "fixed_ip"));
    EXPECT_EQ(Str(bound, "mac_address"), Str(p, "mac_address"));
    ASSERT_EQ(last_writes_.size(), 1u);
    EXPECT_EQ(last_writes_[0].id, "p1");
    Reload();
    EXPECT_EQ(Str(Inventory().at("ports").as_array()[0], "device_id"), "server-1");
    // Re-creating a bound port by id answers the port as it is now.
    EXPECT_EQ(Str(MakePort("p1"), "device_id"), "server-1");
    EXPECT_EQ(Str(Ok("update_port", R"({"id":"p1","device_id":""})"), "device_id"), "");
    auto e = Fails("update_port", R"({"id":"p9","device_id":"x"})", ErrorCode::kNotFound);
    EXPECT_THAT(e.message, HasSubstr("p9"));
}

TEST_F(NetworkDomainTest, ExistingAndKeepFalseOrNullAreAPlainCreateAndDelete) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    auto made = Ok("create_port", R"({"id":"p1","network_id":"n1","device_id":"server-1","existing":false})");
    EXPECT_EQ(Str(made, "fixed_ip"), "10.0.0.2");
    EXPECT_EQ(Str(made, "device_id"), "server-1");
    // A workflow started before the fields existed renders them null.
    EXPECT_EQ(Str(Ok("create_port", R"({"id":"p2","network_id":"n1","existing":null})"), "fixed_ip"),
              "10.0.0.3");
    EXPECT_EQ(Ok("delete_port", R"({"id":"p1","device_id":"server-1","keep":null})"),
              json::parse(R"({"id":"p1","deleted":true})"));
    EXPECT_EQ(HeldAddresses(), (std::set<std::string>{"10.0.0.3@s1"}));
}

TEST_F(NetworkDomainTest, AnExistingPortIsBoundNeverTakenFromAnotherDeviceAndKeptOnDelete) {
    MakeNet();
    MakeNet("n2");
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    auto p = MakePort("p1");
    const std::string bind1 = R"({"id":"p1","network_id":"n1","device_id":"server-1","existing":true})";
    auto bound = Ok("create_port", bind1);
    EXPECT_EQ(Str(bound, "device_id"), "server-1");
    EXPECT_EQ(Str(bound, "fixed_ip"), Str(p, "fixed_ip"));
    EXPECT_EQ(Str(bound, "mac_address"), Str(p, "mac_address"));
    EXPECT_EQ(Str(bound, "cidr"), "10.0.0.0/24");
    ASSERT_EQ(last_writes_.size(), 1u);
    EXPECT_EQ(Str(Ok("create_port", bind1), "device_id"), "server-1") << "a re-sent bind";
    EXPECT_TRUE(last_writes_.empty());
    auto taken =
        Fails("create_port", R"({"id":"p1","network_id":"n1","device_id":"server-2","existing":true})",
              ErrorCode::kConflict);
    EXPECT_THAT(taken.message, HasSubstr("server-1"));
    Fails("create_port", R"({"id":"p9","network_id":"n1","device_id":"server-2","existing":true})",
          ErrorCode::kNotFound);
    auto elsewhere =
        Fails("create_port", R"({"id":"p1","network_id":"n2","device_id":"server-1","existing":true})",
              ErrorCode::kInvalidArgument);
    EXPECT_THAT(elsewhere.message, HasSubstr("network_id"));
    Fails("create_port", R"({"id":"p1","network_id":"n1","device_id":"","existing":true})",
          ErrorCode::kInvalidArgument);

    // Another device's keep-delete leaves it; its own unbinds it, durably, and never deletes it.
    const std::string unbind1 = R"({"id":"p1","device_id":"server-1","keep":true})";
    EXPECT_EQ(Ok("delete_port", R"({"id":"p1","device_id":"server-2","keep":true})"),
              json::parse(R"({"id":"p1","deleted":false,"unbound":false})"));
    EXPECT_TRUE(last_writes_.empty());
    EXPECT_EQ(Ok("delete_port", unbind1), json::parse(R"({"id":"p1","deleted":false,"unbound":true})"));
    Reload();
    ASSERT_EQ(Inventory().at("ports").as_array().size(), 1u);
    EXPECT_EQ(Str(Inventory().at("ports").as_array()[0], "device_id"), "");
    // server-2 binds it; server-1's late unbind (a compensation re-sent) does not free it.
    Ok("create_port", R"({"id":"p1","network_id":"n1","device_id":"server-2","existing":true})");
    EXPECT_EQ(Ok("delete_port", unbind1), json::parse(R"({"id":"p1","deleted":false,"unbound":false})"));
    EXPECT_EQ(Str(Inventory().at("ports").as_array()[0], "device_id"), "server-2");
    // A port that is gone: nothing to unbind.
    EXPECT_EQ(Ok("delete_port", R"({"id":"p9","device_id":"server-1","keep":true})"),
              json::parse(R"({"id":"p9","deleted":false,"unbound":false})"));
}

TEST_F(NetworkDomainTest, DeletePortReleasesItsAddress) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    MakePort("p1");
    MakePort("p2");
    EXPECT_EQ(HeldAddresses(), (std::set<std::string>{"10.0.0.2@s1", "10.0.0.3@s1"}));
    EXPECT_EQ(Ok("delete_port", R"({"id":"p1"})"), json::parse(R"({"id":"p1","deleted":true})"));
    EXPECT_EQ(HeldAddresses(), (std::set<std::string>{"10.0.0.3@s1"}));
    EXPECT_EQ(Ok("delete_port", R"({"id":"p1"})"), json::parse(R"({"id":"p1","deleted":false})"));
    // The released address can be asked for again.
    MakePort("p3", "n1", R"(,"fixed_ip":"10.0.0.2")");
    EXPECT_FALSE(store_.contains({"ports", "p1"}));
}

TEST_F(NetworkDomainTest, DeleteSubnetRefusesWhilePortsUseIt) {
    EXPECT_EQ(Ok("delete_subnet", R"({"id":"s1"})"), json::parse(R"({"id":"s1","deleted":false})"));
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    MakePort("p1");
    auto e = Fails("delete_subnet", R"({"id":"s1"})", ErrorCode::kFailedPrecondition);
    EXPECT_THAT(e.message, HasSubstr("1 port(s)"));
    Ok("delete_port", R"({"id":"p1"})");
    EXPECT_EQ(Ok("delete_subnet", R"({"id":"s1"})"), json::parse(R"({"id":"s1","deleted":true})"));
    // The block is free for a new subnet.
    MakeSubnet("s2", "n1", "10.0.0.0/16");
}

TEST_F(NetworkDomainTest, InventoryListsEverythingSorted) {
    MakeNet("nb");
    MakeNet("na");
    MakeSubnet("s1", "nb", "10.0.0.0/24");
    MakeSubnet("s2", "na", "10.0.0.0/24");
    MakePort("p-z", "nb", R"(,"fixed_ip":"10.0.0.10")");
    MakePort("p-a", "nb", R"(,"fixed_ip":"10.0.0.9")");
    MakePort("p-m", "na", R"(,"fixed_ip":"10.0.0.9")");
    auto inv = Inventory();
    const auto& networks = inv.at("networks").as_array();
    ASSERT_EQ(networks.size(), 2u);
    EXPECT_EQ(networks[0], json::parse(R"({"id":"na","name":"","project_id":""})"));
    EXPECT_EQ(Str(networks[1], "id"), "nb");
    const auto& subnets = inv.at("subnets").as_array();
    ASSERT_EQ(subnets.size(), 2u);
    EXPECT_EQ(Str(subnets[0], "id"), "s1");
    EXPECT_EQ(Str(subnets[0], "gateway_ip"), "10.0.0.1");
    const auto& ports = inv.at("ports").as_array();
    ASSERT_EQ(ports.size(), 3u);
    EXPECT_EQ(Str(ports[0], "id"), "p-a");
    EXPECT_EQ(Str(ports[1], "id"), "p-m");
    EXPECT_EQ(Str(ports[2], "id"), "p-z");
    // By address numerically (.9 before .10), then subnet.
    EXPECT_EQ(inv.at("addresses"), json::parse(R"([
        {"ip":"10.0.0.9","subnet_id":"s1","port_id":"p-a"},
        {"ip":"10.0.0.9","subnet_id":"s2","port_id":"p-m"},
        {"ip":"10.0.0.10","subnet_id":"s1","port_id":"p-z"}])"));
}

TEST_F(NetworkDomainTest, GetServesNetworksSubnetsAndPorts) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/24");
    auto p = MakePort("p 1");
    using kit::test_service::Get;
    using kit::test_service::GetJson;
    EXPECT_EQ(GetJson(*domain_, "/v1/networks/n1"),
              json::parse(R"({"network":{"id":"n1","name":"","project_id":""}})"));
    EXPECT_EQ(Str(GetJson(*domain_, "/v1/subnets/s1?x=1").at("subnet"), "cidr"), "10.0.0.0/24");
    EXPECT_EQ(GetJson(*domain_, "/v1/ports/p%201").at("port"), p);

    EXPECT_EQ(GetJson(*domain_, "/v1/ports/nope", 404),
              json::parse(R"({"code":"not_found","message":"no port 'nope'","retryable":false})"));
    EXPECT_EQ(GetJson(*domain_, "/v1/subnets/s9", 404).at("code"), "not_found");

    EXPECT_FALSE(Get(*domain_, "/v1/networks/n1", "DELETE"));
    EXPECT_FALSE(Get(*domain_, "/v1/networks/"));
    EXPECT_FALSE(Get(*domain_, "/v1/networks/n1/extra"));
    EXPECT_FALSE(Get(*domain_, "/v1/volumes/v1"));
}

TEST_F(NetworkDomainTest, ReloadRebuildsEverythingInAnyTableOrder) {
    MakeNet();
    MakeNet("n2");
    MakeSubnet("s1", "n1", "10.0.0.0/28");
    MakeSubnet("s2", "n2", "10.0.0.0/28", R"(,"gateway_ip":"10.0.0.14","name":"b","project_id":"t")");
    for (int i = 0; i < 8; ++i) {
        MakePort("a" + std::to_string(i), "n1");
        MakePort("b" + std::to_string(i), "n2");
    }
    Ok("delete_port", R"({"id":"a3"})");
    Ok("update_port", R"({"id":"b2","device_id":"vm"})");

    for (auto order : std::vector<std::vector<std::string>>{{"networks", "subnets", "ports"},
                                                            {"ports", "subnets", "networks"},
                                                            {"subnets", "ports", "networks"}}) {
        auto fresh = LoadFrom(store_, order);
        EXPECT_EQ(fresh->Inventory(), domain_->Inventory());
        // The reloaded domain allocates exactly as the original would: same free sets, same cursors.
        kit::Tx t1;
        kit::Tx t2;
        for (int i = 0; i < 6; ++i) {
            const std::string in = R"({"id":"x)" + std::to_string(i) + R"(","network_id":"n1"})";
            auto want = domain_.Perform("create_port", in, t1);
            auto got = fresh.Perform("create_port", in, t2);
            ASSERT_EQ(want.has_value(), got.has_value()) << in;
            if (want) {
                EXPECT_EQ(got->output, want->output);
            } else {
                EXPECT_EQ(got.error().message, want.error().message);
            }
        }
        // Roll the original back to the stored state for the next order.
        domain_ = LoadFrom(store_, {"networks", "subnets", "ports"});
    }
    // Held addresses were not handed out again after the reload.
    Reload();
    for (int i = 0; i < 6; ++i) {
        MakePort("y" + std::to_string(i));
    }
    Fails("create_port", R"({"id":"y6","network_id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_EQ(HeldAddresses().size(), 13u + 8u);  // s1 full, s2 as before
}

TEST_F(NetworkDomainTest, LoadRefusesCorruptRecords) {
    auto load = [](std::vector<std::array<std::string, 3>> records) {
        auto d = MakeNetworkDomain();
        for (const auto& [table, id, json] : records) {
            auto s = d->Load(table, id, json);
            if (!s) {
                return s;
            }
        }
        return Status();
    };
    const std::string subnet =
        R"({"id":"s1","network_id":"n1","cidr":"10.0.0.0/24","gateway_ip":"10.0.0.1",)"
        R"("allocation_pools":[{"start":"10.0.0.2","end":"10.0.0.254"}],"name":"","project_id":""})";
    auto port = [](std::string id, std::string ip, std::string mac) {
        return R"({"id":")" + id + R"(","network_id":"n1","subnet_id":"s1","mac_address":")" + mac +
               R"(","fixed_ip":")" + ip + R"(","device_id":"","name":"","project_id":""})";
    };
    EXPECT_TRUE(
        load({{"subnets", "s1", subnet}, {"ports", "p1", port("p1", "10.0.0.2", "fa:16:3e:00:00:01")}}));
    EXPECT_FALSE(load({{"networks", "n1", "not json"}}));
    EXPECT_FALSE(load({{"routers", "r1", "{}"}}));
    EXPECT_FALSE(load({{"networks", "n2", R"({"id":"n1","name":"","project_id":""})"}}));
    // One address held twice, before or after the subnet is known.
    EXPECT_FALSE(load({{"subnets", "s1", subnet},
                       {"ports", "p1", port("p1", "10.0.0.2", "fa:16:3e:00:00:01")},
                       {"ports", "p2", port("p2", "10.0.0.2", "fa:16:3e:00:00:02")}}));
    EXPECT_FALSE(load({{"ports", "p1", port("p1", "10.0.0.2", "fa:16:3e:00:00:01")},
                       {"ports", "p2", port("p2", "10.0.0.2", "fa:16:3e:00:00:02")}}));
    // An address outside the pools (the gateway), found when the subnet arrives second.
    EXPECT_FALSE(
        load({{"ports", "p1", port("p1", "10.0.0.1", "fa:16:3e:00:00:01")}, {"subnets", "s1", subnet}}));
    // One MAC held twice; a malformed MAC.
    EXPECT_FALSE(load({{"ports", "p1", port("p1", "10.0.0.2", "fa:16:3e:00:00:01")},
                       {"ports", "p2", port("p2", "10.0.0.3", "fa:16:3e:00:00:01")}}));
    EXPECT_FALSE(load({{"ports", "p1", port("p1", "10.0.0.2", "00:16:3e:00:00:01")}}));
}

// Many random creates, deletes and reloads over small pools, checked against a model: an address
// is never held twice, released addresses come back, the free count is exact.
TEST_F(NetworkDomainTest, RandomCreatesDeletesAndReloadsNeverDoubleAllocate) {
    MakeNet();
    MakeSubnet("s1", "n1", "10.0.0.0/28");                                 // pool .2 .. .14: 13
    MakeSubnet("s2", "n1", "10.0.1.0/29", R"(,"gateway_ip":"10.0.1.6")");  // pool .1 .. .5: 5
    constexpr size_t kCapacity = 18;
    std::mt19937 rng(7);
    std::map<std::string, std::string> model;  // port -> "ip@subnet"
    int next_id = 0;
    for (int step = 0; step < 3000; ++step) {
        const int dice = static_cast<int>(rng() % 100);
        if (dice < 50) {
            const std::string id = "p" + std::to_string(next_id++);
            std::string extra;
            if (dice < 10) {
                extra = R"(,"subnet_id":"s2")";
            } else if (dice < 15) {
                extra = R"(,"fixed_ip":"10.0.0.)" + std::to_string(2 + rng() % 13) + "\"";
            }
            auto r = Do("create_port", R"({"id":")" + id + R"(","network_id":"n1")" + extra + "}");
            if (r) {
                const std::string held = Str(*r, "fixed_ip") + "@" + Str(*r, "subnet_id");
                for (const auto& [other, addr] : model) {
                    ASSERT_NE(addr, held) << "address given to " << id << " is held by " << other;
                }
                model[id] = held;
            } else {
                // Full (no address left), or the requested address is taken.
                ASSERT_EQ(r.error().code, extra.find("fixed_ip") == std::string::npos
                                              ? ErrorCode::kFailedPrecondition
                                              : ErrorCode::kConflict)
                    << r.error().ToString();
                if (extra.empty()) {
                    ASSERT_EQ(model.size(), kCapacity) << r.error().ToString();
                }
            }
        } else if (dice < 95) {
            if (model.empty()) {
                continue;
            }
            auto it = std::next(model.begin(), static_cast<long>(rng() % model.size()));
            Ok("delete_port", R"({"id":")" + it->first + R"("})");
            model.erase(it);
        } else {
            Reload(dice % 2 == 0 ? std::vector<std::string>{"ports", "subnets", "networks"}
                                 : std::vector<std::string>{"networks", "subnets", "ports"});
        }
        if (step % 50 == 0) {
            std::set<std::string> want;
            for (const auto& [id, addr] : model) {
                want.insert(addr);
            }
            ASSERT_EQ(HeldAddresses(), want);
        }
    }
}

TEST_F(NetworkDomainTest, A16Gives60000DistinctAddressesThenTheRestAfterAReload) {
    check_unchanged_on_error_ = false;  // an inventory per call would be quadratic here
    MakeNet();
    MakeSubnet("s1", "n1", "10.20.0.0/16");  // pool: 65,533 addresses
    std::unordered_set<std::string> ips;
    std::unordered_set<std::string> macs;
    for (int i = 0; i < 60000; ++i) {
        auto p = MakePort("p" + std::to_string(i));
        ASSERT_TRUE(ips.insert(Str(p, "fixed_ip")).second) << p;
        ASSERT_TRUE(macs.insert(Str(p, "mac_address")).second) << p;
    }
    EXPECT_TRUE(ips.contains("10.20.0.2"));
    EXPECT_TRUE(ips.contains("10.20.234.97"));  // the 60,000th: .2 + 59,999
    Reload();
    for (int i = 60000; i < 65533; ++i) {
        auto p = MakePort("p" + std::to_string(i));
        ASSERT_TRUE(ips.insert(Str(p, "fixed_ip")).second) << p;
        ASSERT_TRUE(macs.insert(Str(p, "mac_address")).second) << p;
    }
    EXPECT_TRUE(ips.contains("10.20.255.254"));
    EXPECT_FALSE(ips.contains("10.20.255.255"));
    EXPECT_FALSE(ips.contains("10.20.0.1"));
    auto e = Fails("create_port", R"({"id":"full","network_id":"n1"})", ErrorCode::kFailedPrecondition);
    EXPECT_EQ(e.message, "no free address in network n1");
    EXPECT_EQ(Inventory().at("addresses").as_array().size(), 65533u);
}

TEST(NetworkDriverTest, AnUnknownDriverOrABadPrefixIsRefusedNamingIt) {
    auto bogus = MakeNetworkDomain(NetworkOptions{.driver = "ovs"});
    ASSERT_FALSE(bogus);
    EXPECT_EQ(bogus.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(bogus.error().message.find("driver"), std::string::npos) << bogus.error().message;
    auto prefix = MakeNetworkDomain(NetworkOptions{.driver = "linux", .prefix = "Not-A-Prefix"});
    ASSERT_FALSE(prefix);
    EXPECT_NE(prefix.error().message.find("prefix"), std::string::npos) << prefix.error().message;
    auto none = MakeNetworkDomain(NetworkOptions{});
    ASSERT_TRUE(none) << none.error().ToString();
    EXPECT_EQ((*none)->name(), kDomainName);
}

}  // namespace
}  // namespace cogs::services::network
