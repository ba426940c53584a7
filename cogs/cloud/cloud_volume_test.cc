// Volume attachments against the real cogs-volume domain, in one process (the fixture:
// cloud_test_fixture.h with real_volume_): which operations may run on a server and its volumes at
// the same time, and whose volume list a workflow acts on. Each test checks both views: the API's
// (the volume's status and server, the server's volume_ids) and the volume service's inventory.
#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

class CloudVolumeTest : public CloudTest {
protected:
    // The real volume service; hosts h1 and h2; an ACTIVE network of the admin's project.
    void SetUp() override {
        real_volume_ = true;
        CloudTest::SetUp();
        ASSERT_NO_FATAL_FAILURE(Seed(2));
        net_ = ActiveNetwork(admin_);
    }

    Reply Attach(const std::string& vol, const std::string& server) {
        return Call(admin_, "POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + server + R"("})");
    }
    Reply Detach(const std::string& vol) {
        return Call(admin_, "POST", "/v1/volumes/" + vol + "/detach", "{}");
    }
    Reply Volume(const std::string& vol) { return Call(admin_, "GET", "/v1/volumes/" + vol); }
    // Both views agree that `vol` is attached to `server` ("": to none).
    void ExpectAttached(const std::string& vol, const std::string& server) {
        const Reply v = Volume(vol);
        EXPECT_EQ(v.Field("volume", "status"), server.empty() ? "available" : "in-use") << v.raw.body;
        EXPECT_EQ(v.Field("volume", "server_id"), server) << "the API";
        EXPECT_EQ(VolumeAttachments()[vol], server) << "the volume service";
    }
    // The hosts but `host` renew, time moves on a lease TTL and a fencing window: `host` is down.
    void Lapse(const std::string& host) {
        AdvanceRenewing(options_.lease_ttl + options_.fence_window, {host == "h1" ? "h2" : "h1"});
        ASSERT_EQ(HostState(host), "down");
    }

    std::string net_;
};

// Way in 1: the evacuation fixed its volume list when it started and attached the volume again
// after the detach had ended (the API said available, the service attached).
TEST_F(CloudVolumeTest, ADetachIsRefusedWhileTheServerIsEvacuated) {
    const std::string vol = ActiveVolume(admin_);
    const std::string id = ActiveServer(admin_, net_, VolumeIds({vol}));
    ExpectAttached(vol, id);
    const std::string host = Server(id).Field("server", "host");
    gates_["compute"]->Hold("create_instance");
    ASSERT_NO_FATAL_FAILURE(Lapse(host));
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    ASSERT_EQ(Server(id).Field("server", "status"), "REBUILD");

    const Reply detach = Detach(vol);
    EXPECT_EQ(detach.status, 409) << detach.raw.body;
    EXPECT_NE(detach.Str("message").find("REBUILD"), std::string::npos) << detach.raw.body;
    const Reply attach = Attach(ActiveVolume(admin_, "other"), id);
    EXPECT_EQ(attach.status, 409) << "nor an attach: " << attach.raw.body;

    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_NE(Server(id).Field("server", "host"), host);
    EXPECT_EQ(VolumeIdsOf(id), (std::vector<std::string>{vol}));
    ExpectAttached(vol, id);
}

// The mirror: the host dies while a detach runs. The evacuation waits for it, then moves the
// server without the volume.
TEST_F(CloudVolumeTest, AnEvacuationWaitsForADetachInFlight) {
    const std::string vol = ActiveVolume(admin_);
    const std::string id = ActiveServer(admin_, net_, VolumeIds({vol}));
    const std::string host = Server(id).Field("server", "host");
    gates_["volume"]->Hold("detach_volumes");
    ASSERT_EQ(Detach(vol).status, 202);
    RunUntil([&] { return gates_["volume"]->held() == 1; });
    ASSERT_NO_FATAL_FAILURE(Lapse(host));
    EXPECT_EQ(Server(id).Field("server", "status"), "ACTIVE") << "not moved while its volume detaches";

    gates_["volume"]->Release();
    WaitFor("/v1/volumes/" + vol, "volume", "available");
    const std::string other = host == "h1" ? "h2" : "h1";
    RunUntil([&] {
        AdvanceRenewing(1s, {other});  // the healer looks again at its next tick
        return Server(id).Field("server", "status") == "ACTIVE" &&
               Server(id).Field("server", "host") == other;
    });
    EXPECT_TRUE(VolumeIdsOf(id).empty());
    ExpectAttached(vol, "");
}

// Way in 2: a rolled-back create kept its volume list; its delete then "freed" a volume another
// server had taken meanwhile.
TEST_F(CloudVolumeTest, ARolledBackCreateKeepsNoVolumeAndItsDeleteFreesNoneOfAnotherServers) {
    const std::string vol = ActiveVolume(admin_);
    services::kit::FaultConfig fail;
    fail.fail_actions = {"attach_volumes"};
    volume_service_->SetFaults(fail);
    Reply a = Call(admin_, "POST", "/v1/servers", ServerBody(net_, VolumeIds({vol}), "a"));
    ASSERT_EQ(a.status, 202) << a.raw.body;
    const std::string first = a.Field("server", "id");
    WaitFor("/v1/servers/" + first, "server", "ERROR");
    volume_service_->SetFaults({});
    EXPECT_TRUE(VolumeIdsOf(first).empty()) << "a rolled-back create keeps none of its volumes";
    ExpectAttached(vol, "");

    const std::string second = ActiveServer(admin_, net_, VolumeIds({vol}));
    ExpectAttached(vol, second);
    ASSERT_EQ(Call(admin_, "DELETE", "/v1/servers/" + first).status, 202);
    WaitFor("/v1/servers/" + first, "server", "");
    EXPECT_EQ(VolumeIdsOf(second), (std::vector<std::string>{vol}));
    ExpectAttached(vol, second);
}

// Way in 3: an attach raced a delete of the same server; the delete's detach step ran before the
// attach landed.
TEST_F(CloudVolumeTest, NoDeleteWhileAnAttachRunsAndNoAttachOrDetachWhileADeleteRuns) {
    const std::string vol = ActiveVolume(admin_);
    const std::string id = ActiveServer(admin_, net_);
    gates_["volume"]->Hold("attach_volumes");
    ASSERT_EQ(Attach(vol, id).status, 202);
    EXPECT_EQ(VolumeIdsOf(id), (std::vector<std::string>{vol})) << "listed from the request on, as in Nova";
    const Reply refused = Call(admin_, "DELETE", "/v1/servers/" + id);
    EXPECT_EQ(refused.status, 409) << refused.raw.body;
    EXPECT_NE(refused.Str("message").find(vol), std::string::npos) << refused.raw.body;
    gates_["volume"]->Release();
    WaitFor("/v1/volumes/" + vol, "volume", "in-use");
    ExpectAttached(vol, id);

    gates_["compute"]->Hold("delete_instance");
    ASSERT_EQ(Call(admin_, "DELETE", "/v1/servers/" + id).status, 202);
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    const Reply detach = Detach(vol);
    EXPECT_EQ(detach.status, 409) << detach.raw.body;
    EXPECT_NE(detach.Str("message").find("DELETING"), std::string::npos) << detach.raw.body;
    const std::string other = ActiveVolume(admin_, "other");
    EXPECT_EQ(Attach(other, id).status, 409);
    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + id, "server", "");
    ExpectAttached(vol, "");
    ExpectAttached(other, "");
}

// A failed attach takes the volume off the server's list again.
TEST_F(CloudVolumeTest, ARolledBackAttachLeavesTheServerWithoutTheVolume) {
    const std::string vol = ActiveVolume(admin_);
    const std::string id = ActiveServer(admin_, net_);
    services::kit::FaultConfig fail;
    fail.fail_actions = {"attach_volumes"};
    volume_service_->SetFaults(fail);
    ASSERT_EQ(Attach(vol, id).status, 202);
    WaitForEvent("/v1/volumes/" + vol, "error");
    volume_service_->SetFaults({});
    EXPECT_TRUE(VolumeIdsOf(id).empty());
    ExpectAttached(vol, "");
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
    ExpectAttached(vol, "");
}

}  // namespace
}  // namespace cogs::cloud::testing
