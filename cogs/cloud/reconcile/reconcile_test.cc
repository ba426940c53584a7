#include "cogs/cloud/reconcile/reconcile.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cogs::cloud::reconcile {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kGraceMs = 60'000;
constexpr int64_t t0 = 1'800'000'000'000;  // a wall time, ms

// `scans` scans of the same picture, a grace period apart (from t0), each deciding nothing.
void ExpectNothingIn(Reconciler& r, const Desired& d, const Actual& a, int scans) {
    for (int i = 0; i < scans; ++i) {
        EXPECT_THAT(r.Scan(d, a, t0 + i * kGraceMs), IsEmpty()) << "scan " << i;
    }
}

// The one action a scan at `at` decides: a failure, and a default Action, if it decides none or
// several.
Action OnlyAction(Reconciler& r, const Desired& d, const Actual& a, int64_t at) {
    const std::vector<Action> actions = r.Scan(d, a, at);
    EXPECT_EQ(actions.size(), 1u) << "the scan at t0 + " << at - t0 << " ms";
    return actions.size() == 1 ? actions[0] : Action{};
}

ReconcilerOptions Options() {
    ReconcilerOptions o;
    o.orphan_grace = Millis(kGraceMs);
    o.confirm_scans = 2;
    return o;
}

DesiredServer Server(std::string id, std::string host, std::string status = "ACTIVE") {
    DesiredServer s;
    s.id = std::move(id);
    s.project = "p1";
    s.status = std::move(status);
    s.host = host;
    s.claim_host = host;
    s.port_id = "port-" + s.id;
    return s;
}

ActualInstance Instance(std::string id, std::string host, std::string state = "ACTIVE") {
    return ActualInstance{std::move(id), std::move(host), std::move(state), ""};
}

ComputeInventory Compute(std::vector<std::string> hosts, std::vector<ActualInstance> instances,
                         int64_t read_at = t0) {
    return ComputeInventory{std::move(hosts), std::move(instances), read_at};
}

Actual OnlyCompute(ComputeInventory inv) {
    Actual a;
    a.compute.push_back(std::move(inv));
    return a;
}

// "delete_instance s1@h1" for compact comparisons.
std::vector<std::string> Brief(const std::vector<Action>& actions) {
    std::vector<std::string> v;
    for (const auto& a : actions) {
        std::string s = std::string(ToString(a.kind)) + " " + a.id;
        if (!a.host.empty()) s += "@" + a.host;
        if (!a.server_id.empty()) s += " server=" + a.server_id;
        v.push_back(s);
    }
    return v;
}

using Strings = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// Parsers

TEST(InventoryParseTest, ComputeAsTheServiceWritesIt) {
    auto inv = ParseComputeInventory(
        R"({"hosts":[{"name":"h1","availability_zone":"nova","vcpus":16,"ram_mb":65536,"disk_gb":1000,"traits":[]},
                     {"name":"h2","availability_zone":"nova","vcpus":16,"ram_mb":65536,"disk_gb":1000,"traits":["ssd"]}],
            "instances":[{"id":"s1","host":"h1","state":"FENCED","vcpus":1,"ram_mb":512,"disk_gb":1,"image":"i",
                          "port_id":"p1","mac_address":null,"ip_address":null,"project_id":null,"name":null,
                          "created_at_ms":1,"ready_at_ms":2,"crashes":0},
                         {"id":"s2","host":"h2","state":"ACTIVE","port_id":null}]})",
        t0 + 5);
    ASSERT_TRUE(inv.has_value()) << inv.error().ToString();
    EXPECT_EQ(inv->hosts, (Strings{"h1", "h2"}));
    ASSERT_EQ(inv->instances.size(), 2u);
    EXPECT_EQ(inv->instances[0].id, "s1");
    EXPECT_EQ(inv->instances[0].host, "h1");
    EXPECT_EQ(inv->instances[0].state, "FENCED");
    EXPECT_EQ(inv->instances[0].port_id, "p1");
    EXPECT_EQ(inv->instances[1].port_id, "") << "null reads as empty";
    EXPECT_EQ(inv->read_at_ms, t0 + 5);
}

TEST(InventoryParseTest, NetworkAndVolumeAsTheServicesWriteThem) {
    auto net = ParseNetworkInventory(
        R"({"networks":[{"id":"n1","name":"","project_id":""}],"subnets":[],
            "ports":[{"id":"p1","network_id":"n1","subnet_id":"sn1","mac_address":"fa:16:3e:00:00:01",
                      "fixed_ip":"10.0.0.2","device_id":"s1","name":"","project_id":"p"},
                     {"id":"p2","network_id":"n1","subnet_id":"sn1","mac_address":"fa:16:3e:00:00:02",
                      "fixed_ip":"10.0.0.3","device_id":"","name":"","project_id":"p"}],
            "addresses":[{"ip":"10.0.0.2","subnet_id":"sn1","port_id":"p1"},
                         {"ip":"10.0.0.3","subnet_id":"sn1","port_id":"p2"}]})",
        t0);
    ASSERT_TRUE(net.has_value()) << net.error().ToString();
    ASSERT_EQ(net->ports.size(), 2u);
    EXPECT_EQ(net->ports[0].device_id, "s1");
    EXPECT_EQ(net->ports[0].fixed_ip, "10.0.0.2");
    EXPECT_EQ(net->ports[1].device_id, "");

    auto vol = ParseVolumeInventory(
        R"({"volumes":[{"id":"v1","size_gb":1,"name":null,"project_id":"p","status":"in-use","server_id":"s1",
                        "device":"/dev/vdb","host":"h1"},
                       {"id":"v2","size_gb":1,"name":"x","project_id":"p","status":"available","server_id":null,
                        "device":null,"host":null,"path":"/tmp/v2.img","allocated_bytes":0}]})",
        t0);
    ASSERT_TRUE(vol.has_value()) << vol.error().ToString();
    ASSERT_EQ(vol->volumes.size(), 2u);
    EXPECT_EQ(vol->volumes[0].server_id, "s1");
    EXPECT_EQ(vol->volumes[0].host, "h1");
    EXPECT_EQ(vol->volumes[1].status, "available");
    EXPECT_EQ(vol->volumes[1].server_id, "");
}

TEST(InventoryParseTest, MalformedInventoriesAreErrorsNamingWhatIsWrong) {
    struct Case {
        const char* text;
        const char* message;
    };
    const Case compute[] = {
        {"", "compute inventory: not JSON"},
        {"[1]", "compute inventory: must be a JSON object"},
        {R"({"instances":[]})", "compute inventory: hosts: required"},
        {R"({"hosts":{},"instances":[]})", "compute inventory: hosts: must be an array"},
        {R"({"hosts":[7],"instances":[]})", "compute inventory: hosts[0]: must be an object"},
        {R"({"hosts":[{"name":"h1"}]})", "compute inventory: instances: required"},
        {R"({"hosts":[{"name":"h1"},{"name":"h1"}],"instances":[]})",
         "compute inventory: hosts[1].name: host 'h1' listed twice"},
        {R"({"hosts":[{"name":"h1"}],"instances":[{"id":"a","host":"h1","state":"ACTIVE"},{"id":"b","state":"ACTIVE"}]})",
         "compute inventory: instances[1].host: required"},
        {R"({"hosts":[{"name":"h1"}],"instances":[{"id":"a","host":"h1","state":3}]})",
         "compute inventory: instances[0].state: must be a string"},
        {R"({"hosts":[{"name":"h1"}],"instances":[{"id":"a","host":"h1","state":"ACTIVE","port_id":5}]})",
         "compute inventory: instances[0].port_id: must be a string"},
        {R"({"hosts":[{"name":"h1"}],"instances":[{"id":"a","host":"h1","state":"ACTIVE"},{"id":"a","host":"h1","state":"ACTIVE"}]})",
         "compute inventory: instances[1].id: instance 'a' listed twice"},
    };
    for (const auto& c : compute) {
        auto inv = ParseComputeInventory(c.text, t0);
        ASSERT_FALSE(inv.has_value()) << c.text;
        EXPECT_EQ(inv.error().code, ErrorCode::kInvalidArgument);
        EXPECT_THAT(inv.error().message, HasSubstr(c.message)) << c.text;
    }
    const Case network[] = {
        {R"({"networks":[]})", "network inventory: ports: required"},
        {R"({"ports":[{"id":"p1"}]})", "network inventory: ports[0].network_id: required"},
        {R"({"ports":[{"id":"p1","network_id":"n"},{"id":"p1","network_id":"n"}]})",
         "network inventory: ports[1].id: port 'p1' listed twice"},
        {R"({"ports":[{"id":"p1","network_id":"n","fixed_ip":"10.0.0.2"}],
             "addresses":[{"ip":"10.0.0.2","subnet_id":"s","port_id":"p1"},{"ip":"10.0.0.9","subnet_id":"s","port_id":"px"}]})",
         "network inventory: addresses[1].port_id: address 10.0.0.9 names port 'px', which is not among the "
         "inventory's ports"},
    };
    for (const auto& c : network) {
        auto inv = ParseNetworkInventory(c.text, t0);
        ASSERT_FALSE(inv.has_value()) << c.text;
        EXPECT_THAT(inv.error().message, HasSubstr(c.message)) << c.text;
    }
    const Case volume[] = {
        {R"({"volumes":[{"id":"v1"}]})", "volume inventory: volumes[0].status: required"},
        {R"({"volumes":[{"id":"v1","status":"in-use","server_id":["s"]}]})",
         "volume inventory: volumes[0].server_id: must be a string"},
    };
    for (const auto& c : volume) {
        auto inv = ParseVolumeInventory(c.text, t0);
        ASSERT_FALSE(inv.has_value()) << c.text;
        EXPECT_THAT(inv.error().message, HasSubstr(c.message)) << c.text;
    }
}

TEST(ReconcilerTest, AMalformedInventoryIsLeftOutAndNothingOfItIsJudged) {
    Reconciler r(Options());
    Desired d;  // cogsd owns nothing: every port the network holds would be an orphan
    auto net = ParseNetworkInventory(R"({"ports":[{"id":"p1","network_id":"n1","fixed_ip":"10.0.0.2"}],
                                         "addresses":[{"ip":"10.0.0.7","port_id":"gone"}]})",
                                     t0);
    ASSERT_FALSE(net.has_value());
    Actual a;  // the caller leaves the unreadable inventory out
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    EXPECT_THAT(r.Scan(d, a, t0 + 10 * kGraceMs), IsEmpty());
    EXPECT_EQ(r.tracked(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Orphans and their grace

TEST(ReconcilerTest, AnOrphanInstanceIsDeletedOnlyOnceItsGraceHasPassed) {
    Reconciler r(Options());
    Desired d;
    const Actual a = OnlyCompute(Compute({"h1"}, {Instance("ghost", "h1")}));
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty()) << "first seen";
    EXPECT_THAT(r.Scan(d, a, t0 + kGraceMs - 1), IsEmpty()) << "not before the grace";
    const Action action = OnlyAction(r, d, a, t0 + kGraceMs);
    EXPECT_EQ(action.kind, ActionKind::kDeleteInstance);
    EXPECT_EQ(action.service, "compute");
    EXPECT_EQ(action.id, "ghost");
    EXPECT_EQ(action.host, "h1");
    EXPECT_EQ(action.reason, "instance ghost on host h1 belongs to no server (unowned for 60s)");
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + kGraceMs + 10)), (Strings{"delete_instance ghost@h1"}))
        << "level-triggered: asked again while it is still there";
    EXPECT_THAT(r.Scan(d, OnlyCompute(Compute({"h1"}, {})), t0 + kGraceMs + 20), IsEmpty()) << "gone";
    EXPECT_EQ(r.tracked(), 0u);
}

TEST(ReconcilerTest, AnOrphanThatDisappearsOrBecomesOwnedStartsItsGraceOver) {
    Reconciler r(Options());
    Desired none;
    const Actual with = OnlyCompute(Compute({"h1"}, {Instance("s1", "h1")}));
    const Actual without = OnlyCompute(Compute({"h1"}, {}));
    EXPECT_THAT(r.Scan(none, with, t0), IsEmpty());
    EXPECT_THAT(r.Scan(none, without, t0 + 30'000), IsEmpty());
    EXPECT_THAT(r.Scan(none, with, t0 + 40'000), IsEmpty()) << "back: its grace starts at t0+40s";
    EXPECT_THAT(r.Scan(none, with, t0 + kGraceMs), IsEmpty()) << "not t0 + grace: it was forgotten";

    Desired owned;
    owned.servers.push_back(Server("s1", "h1"));
    EXPECT_THAT(r.Scan(owned, with, t0 + 50'000), IsEmpty()) << "owned now";
    EXPECT_EQ(r.tracked(), 0u);
    EXPECT_THAT(r.Scan(none, with, t0 + 60'000), IsEmpty()) << "unowned again: a new grace";
    EXPECT_THAT(r.Scan(none, with, t0 + 60'000 + kGraceMs - 1), IsEmpty());
    EXPECT_EQ(Brief(r.Scan(none, with, t0 + 60'000 + kGraceMs)), (Strings{"delete_instance s1@h1"}));
}

TEST(ReconcilerTest, AnInstanceBeingCreatedIsOwnedThroughTheClaimHost) {
    Reconciler r(Options());
    const Actual a = OnlyCompute(Compute({"h1"}, {Instance("s1", "h1", "BUILD")}));
    // The service may answer the instance in a snapshot taken before cogsd recorded the server:
    // it is an orphan for a moment...
    EXPECT_THAT(r.Scan(Desired{}, a, t0), IsEmpty());
    // ...then the server is there, BUILD, placed on h1 by its claim but with no host yet.
    Desired d;
    DesiredServer s = Server("s1", "", "BUILD");
    s.claim_host = "h1";
    s.busy = true;
    d.servers.push_back(s);
    EXPECT_THAT(r.Scan(d, a, t0 + kGraceMs), IsEmpty());
    EXPECT_EQ(r.tracked(), 0u) << "owned: forgotten";
    // Even not busy (say its create failed and left the claim), the claim host owns it.
    d.servers[0].busy = false;
    d.servers[0].status = "ERROR";
    EXPECT_THAT(r.Scan(d, a, t0 + 3 * kGraceMs), IsEmpty());
    EXPECT_THAT(r.Scan(d, a, t0 + 5 * kGraceMs), IsEmpty());
}

TEST(ReconcilerTest, AnInstanceOfAServerPlacedNowhereIsAnOrphan) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "", "ERROR"));  // its create failed: no host, no claim
    const Actual a = OnlyCompute(Compute({"h1"}, {Instance("s1", "h1")}));
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    auto actions = r.Scan(d, a, t0 + kGraceMs);
    ASSERT_EQ(Brief(actions), (Strings{"delete_instance s1@h1"}));
    EXPECT_THAT(actions[0].reason, HasSubstr("belongs to no placement of server s1"));
}

// ---------------------------------------------------------------------------------------------
// Fenced and stale instances

TEST(ReconcilerTest, AFencedInstanceIsStartedOnlyWhenItsServerIsDesiredActiveOnThatHost) {
    Reconciler r(Options());
    const Actual a = OnlyCompute(Compute({"h1"}, {Instance("s1", "h1", "FENCED")}));
    Desired d;
    d.servers.push_back(Server("s1", "h1", "ACTIVE"));
    auto actions = r.Scan(d, a, t0);
    ASSERT_EQ(actions.size(), 1u) << "at once: no confirmation";
    EXPECT_EQ(actions[0], (Action{ActionKind::kStartInstance, "compute", "s1", "h1", "",
                                  "instance s1 on host h1 is FENCED while server s1 is ACTIVE there"}));

    d.servers[0].status = "SHUTOFF";
    EXPECT_THAT(r.Scan(d, a, t0 + 1), IsEmpty()) << "a stopped server stays stopped";
    d.servers[0].status = "ERROR";
    EXPECT_THAT(r.Scan(d, a, t0 + 2), IsEmpty());
    d.servers[0].status = "REBUILD";
    d.servers[0].busy = true;
    EXPECT_THAT(r.Scan(d, a, t0 + 3), IsEmpty()) << "being evacuated: not touched";

    // Running instances on their host need nothing.
    d.servers[0] = Server("s1", "h1", "ACTIVE");
    for (const char* state : {"ACTIVE", "BUILD", "CRASHED", "ERROR", "SHUTOFF", "REBOOT"}) {
        EXPECT_THAT(r.Scan(d, OnlyCompute(Compute({"h1"}, {Instance("s1", "h1", state)})), t0 + 4), IsEmpty())
            << state;
    }
}

TEST(ReconcilerTest, AfterAnEvacuationTheOldCopyIsDeletedAtOnceAndNotStarted) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h2"));  // evacuated from h1 to h2, settled
    // h1 came back: its copy is FENCED; h2 runs the new one.
    Actual a;
    a.compute.push_back(Compute({"h1"}, {Instance("s1", "h1", "FENCED")}));
    a.compute.push_back(Compute({"h2"}, {Instance("s1", "h2", "ACTIVE")}));
    EXPECT_EQ(OnlyAction(r, d, a, t0),
              (Action{ActionKind::kDeleteInstance, "compute", "s1", "h1", "",
                      "instance s1 on host h1 is stale: server s1 lives on host h2"}));
    // Only h1 read (the scan of a host that came back) decides the same.
    EXPECT_EQ(Brief(r.Scan(d, OnlyCompute(Compute({"h1"}, {Instance("s1", "h1", "FENCED")})), t0 + 1)),
              (Strings{"delete_instance s1@h1"}));
    // While the evacuation is in flight nothing is touched.
    d.servers[0].status = "REBUILD";
    d.servers[0].busy = true;
    EXPECT_THAT(r.Scan(d, a, t0 + 2), IsEmpty());
}

TEST(ReconcilerTest, AnInstanceOnTheHostAServerIsBeingMovedToIsNotStale) {
    Reconciler r(Options());
    Desired d;
    DesiredServer s = Server("s1", "h1");
    s.claim_host = "h2";  // a claim on h2 while it still lives on h1
    d.servers.push_back(s);
    Actual a;
    a.compute.push_back(Compute({"h1", "h2"}, {Instance("s1", "h1"), Instance("s2", "h9")}));
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    a.compute[0].instances = {Instance("s1", "h2")};
    EXPECT_THAT(r.Scan(d, a, t0 + 1), IsEmpty()) << "owned through the claim (the h1 copy being missing is "
                                                    "counted, not yet repaired)";
}

// ---------------------------------------------------------------------------------------------
// Missing pieces and their confirmation

TEST(ReconcilerTest, AMissingInstanceIsRepairedAfterConfirmScansInARow) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    const Actual empty = OnlyCompute(Compute({"h1"}, {}));
    EXPECT_THAT(r.Scan(d, empty, t0), IsEmpty()) << "one scan is not enough: it may have raced a workflow";
    EXPECT_EQ(OnlyAction(r, d, empty, t0 + 10'000),
              (Action{ActionKind::kRepairServer, "compute", "s1", "h1", "",
                      "server s1 is ACTIVE on host h1 but the host has no instance s1 (2 scans)"}));
    EXPECT_EQ(Brief(r.Scan(d, empty, t0 + 20'000)), (Strings{"repair_server s1@h1"})) << "still missing";
}

TEST(ReconcilerTest, AMissingInstanceSeenAgainOrAChangedServerStartsTheCountOver) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    const Actual empty = OnlyCompute(Compute({"h1"}, {}));
    const Actual there = OnlyCompute(Compute({"h1"}, {Instance("s1", "h1")}));
    EXPECT_THAT(r.Scan(d, empty, t0), IsEmpty());
    EXPECT_THAT(r.Scan(d, there, t0 + 1), IsEmpty());
    EXPECT_THAT(r.Scan(d, empty, t0 + 2), IsEmpty()) << "not consecutive";

    d.servers[0].volume_ids = {"v1"};  // the server changed (a volume attached) between the scans
    EXPECT_THAT(r.Scan(d, empty, t0 + 3), IsEmpty()) << "changed: this scan is the first again";
    EXPECT_EQ(Brief(r.Scan(d, empty, t0 + 4)), (Strings{"repair_server s1@h1"}));

    d.servers[0].busy = true;  // a workflow started on it
    EXPECT_THAT(r.Scan(d, empty, t0 + 5), IsEmpty());
    d.servers[0].busy = false;
    EXPECT_THAT(r.Scan(d, empty, t0 + 6), IsEmpty()) << "busy in between: counted from scratch";
    EXPECT_EQ(Brief(r.Scan(d, empty, t0 + 7)), (Strings{"repair_server s1@h1"}));
}

TEST(ReconcilerTest, AnInventoryReadBeforeTheServerSettledIsNoEvidence) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers[0].changed_ms = t0 + 500;  // settled ACTIVE on h1 after the inventories below were read
    EXPECT_THAT(r.Scan(d, OnlyCompute(Compute({"h1"}, {}, t0)), t0 + 1'000), IsEmpty());
    EXPECT_THAT(r.Scan(d, OnlyCompute(Compute({"h1"}, {}, t0 + 400)), t0 + 2'000), IsEmpty());
    EXPECT_THAT(r.Scan(d, OnlyCompute(Compute({"h1"}, {}, t0 + 1'500)), t0 + 3'000), IsEmpty())
        << "the first fresh read counts once";
    EXPECT_EQ(Brief(r.Scan(d, OnlyCompute(Compute({"h1"}, {}, t0 + 2'500)), t0 + 4'000)),
              (Strings{"repair_server s1@h1"}));
}

TEST(ReconcilerTest, AShutoffServerWithoutItsInstanceIsRepairedAfterConfirmation) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("off", "h1", "SHUTOFF"));
    const Actual empty = OnlyCompute(Compute({"h1"}, {}));
    EXPECT_THAT(r.Scan(d, empty, t0), IsEmpty());
    const auto actions = r.Scan(d, empty, t0 + 1);
    ASSERT_EQ(actions.size(), 1u);
    EXPECT_EQ(actions[0],
              (Action{ActionKind::kRepairServer, "compute", "off", "h1", "",
                      "server off is SHUTOFF on host h1 but the host has no instance off (2 scans)"}));
}

TEST(ReconcilerTest, AStoppedInstanceOfAnActiveServerIsStartedAfterConfirmation) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers.push_back(Server("off", "h1", "SHUTOFF"));
    d.servers[0].changed_ms = t0 + 500;  // started after the first read below
    const Actual stopped =
        OnlyCompute(Compute({"h1"}, {Instance("s1", "h1", "SHUTOFF"), Instance("off", "h1", "SHUTOFF")}, t0));
    EXPECT_THAT(r.Scan(d, stopped, t0 + 1'000), IsEmpty()) << "read before the start settled: no evidence";
    Actual fresh = stopped;
    fresh.compute[0].read_at_ms = t0 + 1'000;
    EXPECT_THAT(r.Scan(d, fresh, t0 + 1'000), IsEmpty());
    const auto actions = r.Scan(d, fresh, t0 + 2'000);
    ASSERT_EQ(actions.size(), 1u) << "a SHUTOFF server's stopped instance is as it should be";
    EXPECT_EQ(actions[0],
              (Action{ActionKind::kStartInstance, "compute", "s1", "h1", "",
                      "instance s1 on host h1 is SHUTOFF while server s1 is ACTIVE there (2 scans)"}));
    // Started meanwhile: forgotten.
    EXPECT_THAT(r.Scan(d,
                       OnlyCompute(Compute({"h1"}, {Instance("s1", "h1"), Instance("off", "h1", "SHUTOFF")},
                                           t0 + 3'000)),
                       t0 + 3'000),
                IsEmpty());
    EXPECT_EQ(r.tracked(), 0u);
}

TEST(ReconcilerTest, OnlySettledServersAreRepaired) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("err", "h1", "ERROR"));
    DesiredServer build = Server("new", "", "BUILD");
    build.claim_host = "h1";
    build.busy = true;
    d.servers.push_back(build);
    DesiredServer deleting = Server("del", "h1", "DELETING");
    deleting.busy = true;
    d.servers.push_back(deleting);
    DesiredServer attaching = Server("att", "h1");
    attaching.busy = true;  // a volume of it is being attached
    d.servers.push_back(attaching);
    const Actual empty = OnlyCompute(Compute({"h1"}, {}));
    for (int i = 0; i < 5; ++i) {
        EXPECT_THAT(r.Scan(d, empty, t0 + i), IsEmpty());
    }
    EXPECT_EQ(r.tracked(), 0u);
}

TEST(ReconcilerTest, ConfirmScansOfOneRepairsAtTheFirstScan) {
    ReconcilerOptions o = Options();
    o.confirm_scans = 1;
    Reconciler r(o);
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    EXPECT_EQ(Brief(r.Scan(d, OnlyCompute(Compute({"h1"}, {})), t0)), (Strings{"repair_server s1@h1"}));
    o.confirm_scans = 0;
    EXPECT_EQ(Reconciler(o).options().confirm_scans, 1) << "0 would repair without looking";
}

// ---------------------------------------------------------------------------------------------
// Partial inventories

TEST(ReconcilerTest, NothingOutsideTheScannedHostsIsJudgedOrForgotten) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers.push_back(Server("s2", "h2"));
    // Full scan: an orphan on h2, s1 missing on h1, s2 missing on h2.
    Actual full;
    full.compute.push_back(Compute({"h1", "h2"}, {Instance("ghost", "h2")}));
    EXPECT_THAT(r.Scan(d, full, t0), IsEmpty());
    EXPECT_EQ(r.tracked(), 3u);
    // A scan of h1 alone (narrowed: h2's instances in the text are not judged).
    Actual h1 = full;
    h1.compute[0].hosts = {"h1"};
    EXPECT_EQ(Brief(r.Scan(d, h1, t0 + kGraceMs)), (Strings{"repair_server s1@h1"}))
        << "the ghost's grace has passed and s2 was seen missing once, but h2 is not in this scan";
    EXPECT_EQ(r.tracked(), 3u) << "h2's drifts are kept as they were";
    // h2 again: its drifts go on where they were.
    EXPECT_EQ(Brief(r.Scan(d, full, t0 + kGraceMs + 1)),
              (Strings{"delete_instance ghost@h2", "repair_server s1@h1", "repair_server s2@h2"}));
}

TEST(ReconcilerTest, ServicesLeftOutOfAScanAreNotJudged) {
    Reconciler r(Options());
    Desired d;
    DesiredPort p{"p-missing", "n1", "", "10.0.0.9", "ACTIVE"};
    d.ports.push_back(p);
    Actual a;
    a.network = NetworkInventory{{ActualPort{"p-orphan", "n1", "", "10.0.0.5"}}, t0};
    a.volume = VolumeInventory{{ActualVolume{"v-orphan", "available", "", ""}}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    EXPECT_EQ(r.tracked(), 3u);
    Actual none;  // neither service answered
    for (int i = 1; i <= 3; ++i) {
        EXPECT_THAT(r.Scan(d, none, t0 + i * kGraceMs), IsEmpty());
    }
    EXPECT_EQ(r.tracked(), 3u);
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + 4 * kGraceMs)),
              (Strings{"repair_port p-missing", "delete_port p-orphan", "delete_volume v-orphan"}));
}

TEST(ReconcilerTest, AHostNamedByTwoInventoriesIsJudgedFromTheFirst) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    Actual a;
    a.compute.push_back(Compute({"h1"}, {Instance("s1", "h1")}));
    a.compute.push_back(Compute({"h1"}, {Instance("other", "h1")}));
    ExpectNothingIn(r, d, a, 3);
}

// ---------------------------------------------------------------------------------------------
// Ports

TEST(ReconcilerTest, OrphanPortsAreDeletedAfterTheGraceAndMissingPortsRepairedAfterConfirmation) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.ports.push_back(DesiredPort{"port-s1", "n1", "s1", "10.0.0.2", "ACTIVE"});
    d.ports.push_back(DesiredPort{"p-new", "n1", "", "", "BUILD", true});  // being created
    d.ports.push_back(DesiredPort{"p-err", "n1", "", "", "ERROR"});        // its create failed
    Actual a;
    a.network = NetworkInventory{{ActualPort{"p-orphan", "n1", "", "10.0.0.5"}}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    auto actions = r.Scan(d, a, t0 + kGraceMs);
    ASSERT_EQ(actions.size(), 2u);
    EXPECT_EQ(actions[0], (Action{ActionKind::kDeletePort, "network", "p-orphan", "", "",
                                  "port p-orphan (10.0.0.5) belongs to no port of cogsd (unowned for 60s)"}));
    EXPECT_EQ(actions[1],
              (Action{ActionKind::kRepairPort, "network", "port-s1", "", "s1",
                      "port port-s1 of network n1 (server s1) is missing from the network service "
                      "(2 scans)"}));
}

TEST(ReconcilerTest, PortsOfABusyServerAreNeverTouched) {
    Reconciler r(Options());
    Desired d;
    DesiredServer s = Server("s1", "h1", "DELETING");
    s.busy = true;  // its delete removed the port; the port's record stays until the delete ends
    d.servers.push_back(s);
    d.ports.push_back(DesiredPort{"port-s1", "n1", "s1", "10.0.0.2", "ACTIVE"});
    Actual a;
    // And a port the network holds for it that cogsd has no record of.
    a.network = NetworkInventory{{ActualPort{"p-extra", "n1", "s1", "10.0.0.3"}}, t0};
    ExpectNothingIn(r, d, a, 4);
    d.servers[0].busy = false;
    d.servers[0].status = "ERROR";
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + 4 * kGraceMs)), (Strings{"delete_port p-extra"}))
        << "its grace ran while the server was busy";
}

TEST(ReconcilerTest, APortHeldForAnotherDeviceIsSetBackAfterConfirmation) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers.push_back(Server("s2", "h1"));
    d.ports.push_back(DesiredPort{"port-s1", "n1", "s1", "10.0.0.2", "ACTIVE"});
    d.ports.push_back(DesiredPort{"port-s2", "n1", "s2", "10.0.0.3", "ACTIVE"});
    d.ports.push_back(DesiredPort{"p-free", "n1", "", "10.0.0.4", "ACTIVE"});
    Actual a;
    a.network = NetworkInventory{
        {ActualPort{"port-s1", "n1", "s9", "10.0.0.2"}, ActualPort{"port-s2", "n1", "", "10.0.0.3"},
         ActualPort{"p-free", "n1", "s1", "10.0.0.4"}},
        t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty()) << "one scan is no confirmation";
    const auto actions = r.Scan(d, a, t0 + 1);
    ASSERT_EQ(actions.size(), 3u);
    EXPECT_EQ(
        actions[1],
        (Action{ActionKind::kSetPortDevice, "network", "port-s1", "", "s1",
                "port port-s1 is held for device 's9' by the network service, for 's1' by cogsd (2 scans)"}));
    EXPECT_EQ(Brief(actions), (Strings{"set_port_device p-free", "set_port_device port-s1 server=s1",
                                       "set_port_device port-s2 server=s2"}))
        << "a free port is set back to no device";

    // Not while either device's server is busy (a delete, an evacuation acts on the port).
    Reconciler quiet(Options());
    d.servers[0].busy = true;
    d.ports.resize(1);
    a.network->ports.resize(1);
    ExpectNothingIn(quiet, d, a, 4);
}

// ---------------------------------------------------------------------------------------------
// Volumes

TEST(ReconcilerTest, AnOrphanVolumeIsDetachedThenDeleted) {
    Reconciler r(Options());
    Desired d;
    Actual a;
    a.volume = VolumeInventory{{ActualVolume{"v1", "in-use", "gone-server", "h1"}}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    const Action detach = OnlyAction(r, d, a, t0 + kGraceMs);
    EXPECT_EQ(detach.kind, ActionKind::kDetachVolume) << "the service refuses to delete an attached volume";
    EXPECT_EQ(detach.server_id, "gone-server");
    // Detached: now it goes, without a second grace.
    a.volume->volumes[0] = ActualVolume{"v1", "available", "", ""};
    EXPECT_EQ(OnlyAction(r, d, a, t0 + kGraceMs + 1),
              (Action{ActionKind::kDeleteVolume, "volume", "v1", "", "",
                      "volume v1 belongs to no volume of cogsd (unowned for 60s)"}));
}

TEST(ReconcilerTest, AVolumeAttachedToAServerThatDoesNotExistIsDetachedAfterTheGrace) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.volumes.push_back(DesiredVolume{"v1", "available", ""});
    d.volumes.push_back(DesiredVolume{"v2", "in-use", "s1"});
    Actual a;
    a.volume = VolumeInventory{
        {ActualVolume{"v1", "in-use", "s-gone", "h1"}, ActualVolume{"v2", "in-use", "s1", "h1"}}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    EXPECT_THAT(r.Scan(d, a, t0 + kGraceMs - 1), IsEmpty());
    EXPECT_EQ(OnlyAction(r, d, a, t0 + kGraceMs),
              (Action{ActionKind::kDetachVolume, "volume", "v1", "", "s-gone",
                      "volume v1 is attached to server s-gone, which does not exist (for 60s)"}));
}

TEST(ReconcilerTest, BusyVolumesAndVolumesOfBusyServersAreNeverTouched) {
    Reconciler r(Options());
    Desired d;
    DesiredServer s = Server("s1", "h1", "DELETING");
    s.busy = true;
    d.servers.push_back(s);
    d.volumes.push_back(DesiredVolume{"v-detaching", "detaching", "", true});
    d.volumes.push_back(DesiredVolume{"v-of-busy", "in-use", "s1"});
    Actual a;
    a.volume = VolumeInventory{{ActualVolume{"v-detaching", "in-use", "s-gone", "h1"},
                                ActualVolume{"v-of-busy", "in-use", "s-gone", "h1"},
                                ActualVolume{"v-orphan-on-busy", "in-use", "s1", "h1"}},
                               t0};
    ExpectNothingIn(r, d, a, 4);
}

// ---------------------------------------------------------------------------------------------
// Networks and subnets

NetworkInventory Net(std::vector<ActualNetwork> networks, std::vector<ActualSubnet> subnets,
                     std::vector<ActualPort> ports = {}, int64_t read_at = t0) {
    return NetworkInventory{std::move(ports), read_at, std::move(networks), std::move(subnets)};
}

TEST(ReconcilerTest, MissingNetworksAndSubnetsAreRepairedTheNetworkFirst) {
    Reconciler r(Options());
    Desired d;
    d.networks.push_back(DesiredNetwork{"n1", "ACTIVE"});
    d.networks.push_back(DesiredNetwork{"n2", "ACTIVE"});
    d.networks.push_back(DesiredNetwork{"n-new", "BUILD", true});
    d.networks.push_back(DesiredNetwork{"n-err", "ERROR"});
    d.subnets.push_back(DesiredSubnet{"sn1", "n1", "ACTIVE"});
    d.subnets.push_back(DesiredSubnet{"sn2", "n2", "ACTIVE"});
    d.ports.push_back(DesiredPort{"p1", "n1", "", "10.0.0.2", "ACTIVE"});
    Actual a;
    a.network = Net({ActualNetwork{"n2"}}, {});  // n1 is gone with all it held; sn2 alone is gone
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + 1)), (Strings{"repair_network n1", "repair_subnet sn2"}))
        << "sn1 and p1 wait for their network";
    a.network = Net({ActualNetwork{"n1"}, ActualNetwork{"n2"}}, {ActualSubnet{"sn2", "n2"}}, {}, t0 + 2);
    EXPECT_THAT(r.Scan(d, a, t0 + 2), IsEmpty());
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + 3)), (Strings{"repair_port p1", "repair_subnet sn1"}));
}

TEST(ReconcilerTest, OrphanNetworksAndSubnetsAreDeletedOnceNothingIsLeftOnThem) {
    Reconciler r(Options());
    Desired d;
    Actual a;
    a.network = Net({ActualNetwork{"n-orphan"}}, {ActualSubnet{"sn-orphan", "n-orphan"}},
                    {ActualPort{"p-orphan", "n-orphan", "", "10.0.0.5", "sn-orphan"}});
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + kGraceMs)), (Strings{"delete_port p-orphan"}))
        << "the service refuses to delete a subnet with a port, a network with a subnet";
    a.network = Net({ActualNetwork{"n-orphan"}}, {ActualSubnet{"sn-orphan", "n-orphan"}});
    const auto actions = r.Scan(d, a, t0 + kGraceMs + 1);
    ASSERT_EQ(actions.size(), 1u);
    EXPECT_EQ(
        actions[0],
        (Action{ActionKind::kDeleteSubnet, "network", "sn-orphan", "", "",
                "subnet sn-orphan of network n-orphan belongs to no subnet of cogsd (unowned for 60s)"}));
    a.network = Net({ActualNetwork{"n-orphan"}}, {});
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + kGraceMs + 2)), (Strings{"delete_network n-orphan"}));
}

// ---------------------------------------------------------------------------------------------
// Attachments and missing volumes

TEST(ReconcilerTest, AWrongAttachmentIsDetachedThenTheRightOneMade) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers.push_back(Server("s2", "h2"));
    d.volumes.push_back(DesiredVolume{"v1", "in-use", "s1"});
    Actual a;
    a.volume = VolumeInventory{{ActualVolume{"v1", "in-use", "s2", "h2"}}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    auto actions = r.Scan(d, a, t0 + 1);
    ASSERT_EQ(actions.size(), 1u);
    EXPECT_EQ(actions[0], (Action{ActionKind::kDetachVolume, "volume", "v1", "", "s2",
                                  "volume v1 is attached to server s2 at the volume service, attached to "
                                  "server s1 in cogsd (2 scans)"}));
    a.volume = VolumeInventory{{ActualVolume{"v1", "available", "", ""}}, t0 + 2};
    EXPECT_THAT(r.Scan(d, a, t0 + 2), IsEmpty()) << "a changed picture starts the count over";
    actions = r.Scan(d, a, t0 + 3);
    ASSERT_EQ(actions.size(), 1u);
    EXPECT_EQ(actions[0], (Action{ActionKind::kAttachVolume, "volume", "v1", "h1", "s1",
                                  "volume v1 is attached to no server at the volume service, attached to "
                                  "server s1 in cogsd (2 scans)"}));
}

TEST(ReconcilerTest, AnAvailableVolumeAttachedToAnExistingServerIsDetached) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.volumes.push_back(DesiredVolume{"v1", "available", ""});
    Actual a;
    a.volume = VolumeInventory{{ActualVolume{"v1", "in-use", "s1", "h1"}}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + 1)), (Strings{"detach_volume v1 server=s1"}));
}

TEST(ReconcilerTest, AnAttachmentSeenBeforeTheVolumeOrItsServerChangedIsNoEvidence) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers[0].changed_ms = t0 + 500;  // evacuated: it settled after the read below
    d.volumes.push_back(DesiredVolume{"v1", "in-use", "s1"});
    Actual a;
    a.volume = VolumeInventory{{ActualVolume{"v1", "available", "", ""}}, t0};  // read mid-evacuation
    for (int i = 0; i < 4; ++i) {
        EXPECT_THAT(r.Scan(d, a, t0 + 1'000 + i), IsEmpty());
    }
    // Nowhere to attach it: a server that is not placed, or is not ACTIVE or SHUTOFF.
    d.servers[0].changed_ms = 0;
    d.servers[0].status = "ERROR";
    ExpectNothingIn(r, d, a, 3);
}

TEST(ReconcilerTest, AVolumeMissingAtItsServiceIsMadeAgainAfterConfirmation) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.volumes.push_back(DesiredVolume{"v1", "in-use", "s1"});
    d.volumes.push_back(DesiredVolume{"v2", "available", ""});
    d.volumes.push_back(DesiredVolume{"v-new", "creating", "", true});
    d.volumes.push_back(DesiredVolume{"v-err", "error", ""});
    Actual a;
    a.volume = VolumeInventory{{}, t0};
    EXPECT_THAT(r.Scan(d, a, t0), IsEmpty());
    const auto actions = r.Scan(d, a, t0 + 1);
    ASSERT_EQ(actions.size(), 2u);
    EXPECT_EQ(actions[0], (Action{ActionKind::kRepairVolume, "volume", "v1", "", "",
                                  "volume v1 is missing from the volume service (2 scans): made again empty, "
                                  "its data is lost"}));
    EXPECT_EQ(actions[1].id, "v2");
    // Made again, not attached yet: attached to its server after confirmation.
    a.volume = VolumeInventory{
        {ActualVolume{"v1", "available", "", ""}, ActualVolume{"v2", "available", "", ""}}, t0 + 2};
    EXPECT_THAT(r.Scan(d, a, t0 + 2), IsEmpty());
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + 3)), (Strings{"attach_volume v1@h1 server=s1"}));
}

// ---------------------------------------------------------------------------------------------
// Everything at once

TEST(ReconcilerTest, AFullScanOfAHealthyCloudDoesNothingAndRemembersNothing) {
    Reconciler r(Options());
    Desired d;
    d.servers.push_back(Server("s1", "h1"));
    d.servers.push_back(Server("s2", "h2", "SHUTOFF"));
    d.ports.push_back(DesiredPort{"port-s1", "n1", "s1", "10.0.0.2", "ACTIVE"});
    d.ports.push_back(DesiredPort{"port-s2", "n1", "s2", "10.0.0.3", "ACTIVE"});
    d.volumes.push_back(DesiredVolume{"v1", "in-use", "s1"});
    d.volumes.push_back(DesiredVolume{"v2", "available", ""});
    Actual a;
    a.compute.push_back(Compute({"h1", "h2", "h3"}, {Instance("s1", "h1"), Instance("s2", "h2", "SHUTOFF")}));
    a.network = NetworkInventory{
        {ActualPort{"port-s1", "n1", "s1", "10.0.0.2"}, ActualPort{"port-s2", "n1", "s2", "10.0.0.3"}}, t0};
    a.volume = VolumeInventory{
        {ActualVolume{"v1", "in-use", "s1", "h1"}, ActualVolume{"v2", "available", "", ""}}, t0};
    ExpectNothingIn(r, d, a, 3);
    EXPECT_EQ(r.tracked(), 0u);
}

TEST(ReconcilerTest, ActionsComeSortedByServiceAndId) {
    Reconciler r(Options());
    Desired d;
    Actual a;
    a.compute.push_back(Compute({"h1", "h2"}, {Instance("b", "h2"), Instance("a", "h1")}));
    a.network = NetworkInventory{{ActualPort{"pz", "n", "", ""}, ActualPort{"pa", "n", "", ""}}, t0};
    a.volume = VolumeInventory{{ActualVolume{"v", "available", "", ""}}, t0};
    r.Scan(d, a, t0);
    EXPECT_EQ(Brief(r.Scan(d, a, t0 + kGraceMs)),
              (Strings{"delete_instance a@h1", "delete_instance b@h2", "delete_port pa", "delete_port pz",
                       "delete_volume v"}));
}

}  // namespace
}  // namespace cogs::cloud::reconcile
