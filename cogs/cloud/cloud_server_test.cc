// Resources through their lives, in one process (the fixture: cloud_test_fixture.h): a server with
// its volumes from create to delete, power actions, attach and detach, what a status allows, the
// deletes that must wait, each resource's history, placement, and a failed, retried, cancelled or
// refused (429) build.
#include <tuple>

#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

// What the API and the cloud wrote on a resource, in order (without the engine's step events).
std::vector<std::string> Outcomes(const std::vector<std::string>& types) {
    std::vector<std::string> out;
    for (const auto& t : types) {
        if (!t.starts_with("step_") && !t.starts_with("workflow_")) out.push_back(t);
    }
    return out;
}

class CloudServerTest : public CloudTest {
protected:
    // A member of a new project "t" with an ACTIVE network, on hosts h1 and h2.
    void SetUp() override {
        CloudTest::SetUp();
        ASSERT_NO_FATAL_FAILURE(Seed());
        project_ = NewProject("t");
        member_ = NewToken(project_, "member");
        net_ = ActiveNetwork(member_);
    }

    Reply Act(const std::string& server, const std::string& action) {
        return Call(member_, "POST", "/v1/servers/" + server + "/" + action, "{}");
    }

    std::string project_, member_, net_;
};

TEST_F(CloudServerTest, AServerBuiltWithVolumesHoldsThemInUse) {
    const std::string a = ActiveVolume(member_, "a");
    const std::string b = ActiveVolume(member_, "b");
    // The build waits at its instance, so the volumes are seen while it runs (not after it ended).
    gates_["compute"]->Hold("create_instance");
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_, VolumeIds({a, b})));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    EXPECT_EQ(r.Field("server", "status"), "BUILD");
    EXPECT_FALSE(r.Field("server", "workflow_id").empty());
    const std::string id = r.Field("server", "id");
    EXPECT_EQ(Call(member_, "GET", "/v1/volumes/" + a).Field("volume", "status"), "attaching")
        << "a volume is the build's from its start";
    gates_["compute"]->Release();

    Reply active = WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_FALSE(active.Field("server", "host").empty());
    EXPECT_EQ(active.Field("server", "availability_zone"), "nova") << "the zone of its host";
    EXPECT_EQ(VolumeIdsOf(id), (std::vector<std::string>{a, b}));
    for (const auto& v : {a, b}) {
        Reply vol = WaitFor("/v1/volumes/" + v, "volume", "in-use");
        EXPECT_EQ(vol.Field("volume", "server_id"), id);
    }
    Reply port = Call(member_, "GET", "/v1/ports/" + active.Field("server", "port_id"));
    EXPECT_EQ(port.Field("port", "status"), "ACTIVE");
    EXPECT_EQ(port.Field("port", "device_id"), id);
    EXPECT_EQ(InUse(project_, "servers"), 1);
    EXPECT_EQ(InUse(project_, "vcpus"), 2);
    EXPECT_EQ(InUse(project_, "ram_mb"), 2048);
    EXPECT_EQ(InUse(project_, "ports"), 1);
    EXPECT_EQ(InUse(project_, "volumes"), 2);
    Reply host = Call(admin_, "GET", "/v1/hosts/" + active.Field("server", "host"));
    EXPECT_EQ(host.Obj("host").at("servers").as_int64(), 1);
    EXPECT_EQ(host.Obj("host").at("used").at("vcpus").as_int64(), 2);
}

TEST_F(CloudServerTest, AFailedBuildRollsBackToErrorWithTheReasonAndNothingHeld) {
    services::sim::FaultConfig f;
    f.fail_actions = {"create_instance"};
    sims_["compute"]->SetFaults(f);
    const std::string vol = ActiveVolume(member_);
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_, VolumeIds({vol})));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    Reply failed = WaitFor("/v1/servers/" + id, "server", "ERROR");
    EXPECT_NE(StrOf(failed.Obj("server").at("fault"), "message").find("create_instance"), std::string::npos)
        << failed.raw.body;
    EXPECT_EQ(failed.Field("server", "host"), "");
    EXPECT_EQ(InUse(project_, "servers"), 0) << "a rolled-back create holds no quota";
    EXPECT_EQ(InUse(project_, "ports"), 0);
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h1").Obj("host").at("servers").as_int64() +
                  Call(admin_, "GET", "/v1/hosts/h2").Obj("host").at("servers").as_int64(),
              0)
        << "no claim left on a host";
    EXPECT_EQ(sims_["network"]->Counts().live(), 1u)
        << "the network's port is compensated, the network stays";
    EXPECT_EQ(WaitFor("/v1/volumes/" + vol, "volume", "available").Field("volume", "server_id"), "");
    const auto types = WaitForEvent("/v1/servers/" + id, "error");
    EXPECT_EQ(types.front(), "created");
    EXPECT_EQ(types.back(), "error");
    EXPECT_LT(IndexOf(types, "step_failed"), IndexOf(types, "workflow_rolled_back")) << Join(types);
    // The ERROR server goes on delete.
    ASSERT_EQ(Call(member_, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
}

TEST_F(CloudServerTest, StopStartAndRebootTakeTheServerThroughTheirStatuses) {
    const std::string id = ActiveServer(member_, net_);
    const std::string host = Server(id).Field("server", "host");
    Reply stop = Act(id, "stop");
    ASSERT_EQ(stop.status, 202) << stop.raw.body;
    EXPECT_EQ(stop.Field("server", "status"), "STOPPING");
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
    Reply start = Act(id, "start");
    ASSERT_EQ(start.status, 202) << start.raw.body;
    EXPECT_EQ(start.Field("server", "status"), "STARTING");
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    Reply reboot = Act(id, "reboot");
    ASSERT_EQ(reboot.status, 202) << reboot.raw.body;
    EXPECT_EQ(reboot.Field("server", "status"), "REBOOT");
    Reply after = WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_EQ(after.Field("server", "host"), host) << "power actions never move a server";
    const auto types = WaitForEvent("/v1/servers/" + id, "rebooted");
    EXPECT_LT(IndexOf(types, "stop_requested"), IndexOf(types, "stopped"));
    EXPECT_LT(IndexOf(types, "stopped"), IndexOf(types, "start_requested"));
    EXPECT_LT(IndexOf(types, "start_requested"), IndexOf(types, "started"));
    EXPECT_LT(IndexOf(types, "started"), IndexOf(types, "reboot_requested"));
    EXPECT_LT(IndexOf(types, "reboot_requested"), IndexOf(types, "rebooted"));
}

TEST_F(CloudServerTest, AnActionItsStatusDoesNotAllowIs409) {
    const std::string id = ActiveServer(member_, net_);
    EXPECT_EQ(Act(id, "start").status, 409) << "an ACTIVE server is started already";
    ASSERT_EQ(Act(id, "stop").status, 202);
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
    for (const std::string action : {"stop", "reboot"}) {
        Reply r = Act(id, action);
        EXPECT_EQ(r.status, 409) << action;
        EXPECT_EQ(r.Str("code"), "conflict") << action;
    }
    EXPECT_EQ(Act(id, "resize").status, 404);
    EXPECT_EQ(Server(id).Field("server", "status"), "SHUTOFF");
    EXPECT_FALSE(Has(EventTypes("/v1/servers/" + id), "reboot_requested"));
}

TEST_F(CloudServerTest, AnActionsBodyWithAnUnknownFieldIsRefusedNamingIt) {
    // docs/api.md: unknown fields are refused, on an action's body too (nothing happens).
    const std::string id = ActiveServer(member_, net_);
    for (const std::string action : {"stop", "reboot"}) {
        Reply r = Call(member_, "POST", "/v1/servers/" + id + "/" + action, R"({"force":true})");
        EXPECT_EQ(r.status, 400) << action;
        EXPECT_EQ(r.ErrorField(), "force") << action << " -> " << r.raw.body;
    }
    EXPECT_EQ(Server(id).Field("server", "status"), "ACTIVE");
    const std::string vol = ActiveVolume(member_);
    ASSERT_EQ(
        Call(member_, "POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + id + R"("})").status,
        202);
    WaitFor("/v1/volumes/" + vol, "volume", "in-use");
    Reply detach = Call(member_, "POST", "/v1/volumes/" + vol + "/detach", R"({"force":true})");
    EXPECT_EQ(detach.status, 400);
    EXPECT_EQ(detach.ErrorField(), "force");
    EXPECT_EQ(Call(member_, "GET", "/v1/volumes/" + vol).Field("volume", "status"), "in-use");
}

TEST_F(CloudServerTest, ABusyServerRefusesEveryOtherOperation) {
    const std::string id = ActiveServer(member_, net_);
    const std::string vol = ActiveVolume(member_);
    gates_["compute"]->Hold("stop_instance");
    ASSERT_EQ(Act(id, "stop").status, 202);
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    for (const std::string action : {"start", "stop", "reboot"}) {
        EXPECT_EQ(Act(id, action).status, 409) << action;
    }
    EXPECT_EQ(Call(member_, "DELETE", "/v1/servers/" + id).status, 409);
    EXPECT_EQ(
        Call(member_, "POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + id + R"("})").status,
        409);
    EXPECT_EQ(Server(id).Field("server", "status"), "STOPPING");
    EXPECT_EQ(Call(member_, "GET", "/v1/volumes/" + vol).Field("volume", "status"), "available");
    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
}

TEST_F(CloudServerTest, AVolumeAttachesToAServerAndDetachesAgain) {
    const std::string id = ActiveServer(member_, net_);
    const std::string vol = ActiveVolume(member_);
    Reply attach =
        Call(member_, "POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + id + R"("})");
    ASSERT_EQ(attach.status, 202) << attach.raw.body;
    EXPECT_EQ(attach.Field("volume", "status"), "attaching");
    EXPECT_EQ(WaitFor("/v1/volumes/" + vol, "volume", "in-use").Field("volume", "server_id"), id);
    EXPECT_EQ(VolumeIdsOf(id), std::vector<std::string>{vol});
    EXPECT_EQ(
        Call(member_, "POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + id + R"("})").status,
        409)
        << "an in-use volume attaches nowhere else";

    Reply detach = Call(member_, "POST", "/v1/volumes/" + vol + "/detach", "{}");
    ASSERT_EQ(detach.status, 202) << detach.raw.body;
    EXPECT_EQ(detach.Field("volume", "status"), "detaching");
    EXPECT_EQ(WaitFor("/v1/volumes/" + vol, "volume", "available").Field("volume", "server_id"), "");
    EXPECT_TRUE(VolumeIdsOf(id).empty());
    EXPECT_EQ(Call(member_, "POST", "/v1/volumes/" + vol + "/detach", "{}").status, 409)
        << "detached already";
    const auto server_events = WaitForEvent("/v1/servers/" + id, "volume_detached");
    EXPECT_LT(IndexOf(server_events, "volume_attached"), IndexOf(server_events, "volume_detached"));
    const auto volume_events = WaitForEvent("/v1/volumes/" + vol, "detached");
    EXPECT_LT(IndexOf(volume_events, "attach_requested"), IndexOf(volume_events, "attached"));
    EXPECT_LT(IndexOf(volume_events, "attached"), IndexOf(volume_events, "detach_requested"));

    // Another project's server is no server of this volume's.
    const std::string other = NewToken(NewProject("other"), "member");
    const std::string theirs = ActiveServer(other, ActiveNetwork(other));
    Reply cross =
        Call(member_, "POST", "/v1/volumes/" + vol + "/attach", R"({"server_id":")" + theirs + R"("})");
    EXPECT_EQ(cross.status, 400);
    EXPECT_EQ(cross.ErrorField(), "server_id");
    EXPECT_EQ(Call(member_, "GET", "/v1/volumes/" + vol).Field("volume", "status"), "available");
}

TEST_F(CloudServerTest, DeletingAServerFreesItsVolumesUnlessAskedToDeleteThemToo) {
    const std::string kept = ActiveVolume(member_, "kept");
    const std::string gone = ActiveVolume(member_, "gone");
    const std::string first = ActiveServer(member_, net_, VolumeIds({kept}));
    const std::string second = ActiveServer(member_, net_, VolumeIds({gone}));
    Reply bad = Call(member_, "DELETE", "/v1/servers/" + first + "?delete_volumes=maybe");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "delete_volumes");
    EXPECT_EQ(Server(first).Field("server", "status"), "ACTIVE");

    Reply d = Call(member_, "DELETE", "/v1/servers/" + first);
    ASSERT_EQ(d.status, 202) << d.raw.body;
    EXPECT_EQ(d.Field("server", "status"), "DELETING");
    WaitFor("/v1/servers/" + first, "server", "");
    Reply freed = WaitFor("/v1/volumes/" + kept, "volume", "available");
    EXPECT_EQ(freed.Field("volume", "server_id"), "");

    ASSERT_EQ(Call(member_, "DELETE", "/v1/servers/" + second + "?delete_volumes=true").status, 202);
    WaitFor("/v1/servers/" + second, "server", "");
    WaitFor("/v1/volumes/" + gone, "volume", "");
    EXPECT_EQ(InUse(project_, "servers"), 0);
    EXPECT_EQ(InUse(project_, "ports"), 0);
    EXPECT_EQ(InUse(project_, "volumes"), 1);
    EXPECT_EQ(InUse(project_, "volume_gb"), 5);
    EXPECT_EQ(Count(member_, "ports"), 0u) << "a server's port goes with it";
    const auto types = WaitForEvent("/v1/volumes/" + gone, "deleted");
    EXPECT_LT(IndexOf(types, "detached"), IndexOf(types, "deleted")) << Join(types);
}

TEST_F(CloudServerTest, EachResourcesHistoryTellsItsLifeAndOutlivesIt) {
    const std::string vol = ActiveVolume(member_);
    const std::string id = ActiveServer(member_, net_, VolumeIds({vol}));
    ASSERT_EQ(Act(id, "stop").status, 202);
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
    ASSERT_EQ(Act(id, "start").status, 202);
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    ASSERT_EQ(Call(member_, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
    WaitFor("/v1/volumes/" + vol, "volume", "available");
    ASSERT_EQ(Call(member_, "DELETE", "/v1/volumes/" + vol).status, 202);
    WaitFor("/v1/volumes/" + vol, "volume", "");
    ASSERT_EQ(Call(member_, "DELETE", "/v1/networks/" + net_).status, 202);
    WaitFor("/v1/networks/" + net_, "network", "");

    EXPECT_EQ(Outcomes(WaitForEvent("/v1/servers/" + id, "deleted")),
              (std::vector<std::string>{"created", "active", "stop_requested", "stopped", "start_requested",
                                        "started", "delete_requested", "deleted"}));
    EXPECT_EQ(Outcomes(WaitForEvent("/v1/volumes/" + vol, "deleted")),
              (std::vector<std::string>{"created", "available", "attached", "detached", "delete_requested",
                                        "deleted"}));
    EXPECT_EQ(Outcomes(WaitForEvent("/v1/networks/" + net_, "deleted")),
              (std::vector<std::string>{"created", "active", "delete_requested", "deleted"}));
    // Readable by its project after the resource is gone, by nobody else.
    const std::string stranger = NewToken(NewProject("stranger"), "member");
    EXPECT_EQ(Call(member_, "GET", "/v1/servers/" + id + "/events").status, 200);
    EXPECT_EQ(Call(stranger, "GET", "/v1/servers/" + id + "/events").status, 404);
    EXPECT_TRUE(Call(stranger, "GET", "/v1/events?resource_id=" + id).Items("events").empty());
}

TEST_F(CloudServerTest, AVolumeDeletedWithItsServerIsDetachedBeforeItsDeleteIsRequested) {
    // The history reads as it happened: detached with the server's delete, then its own delete.
    const std::string vol = ActiveVolume(member_);
    const std::string id = ActiveServer(member_, net_, VolumeIds({vol}));
    ASSERT_EQ(Call(member_, "DELETE", "/v1/servers/" + id + "?delete_volumes=true").status, 202);
    WaitFor("/v1/volumes/" + vol, "volume", "");
    EXPECT_EQ(Outcomes(WaitForEvent("/v1/volumes/" + vol, "deleted")),
              (std::vector<std::string>{"created", "available", "attached", "detached", "delete_requested",
                                        "deleted"}));
}

TEST_F(CloudServerTest, DeletingWhatIsStillInUseIs409AndChangesNothing) {
    Reply subnet =
        Call(member_, "POST", "/v1/subnets", R"({"network_id":")" + net_ + R"(","cidr":"10.0.0.0/24"})");
    ASSERT_EQ(subnet.status, 202) << subnet.raw.body;
    WaitFor("/v1/subnets/" + subnet.Field("subnet", "id"), "subnet", "ACTIVE");
    const std::string bare = ActiveNetwork(member_, "bare");  // no subnet, one port
    Reply port = Call(member_, "POST", "/v1/ports", R"({"network_id":")" + bare + R"("})");
    ASSERT_EQ(port.status, 202) << port.raw.body;
    WaitFor("/v1/ports/" + port.Field("port", "id"), "port", "ACTIVE");
    Reply group = Call(member_, "POST", "/v1/server-groups", R"({"name":"g","policy":"anti-affinity"})");
    ASSERT_EQ(group.status, 201) << group.raw.body;
    const std::string group_id = group.Field("server_group", "id");
    const std::string vol = ActiveVolume(member_);
    const std::string server =
        ActiveServer(member_, net_, VolumeIds({vol}) + R"(,"server_group_id":")" + group_id + "\"");
    const std::string server_port = Server(server).Field("server", "port_id");

    const std::vector<std::pair<std::string, std::string>> refused = {
        {"/v1/networks/" + net_, "it has a subnet (and the server's port)"},
        {"/v1/networks/" + bare, "it has a port"},
        {"/v1/ports/" + server_port, "it is its server's"},
        {"/v1/volumes/" + vol, "it is in-use"},
        {"/v1/server-groups/" + group_id, "it has a member"},
        {"/v1/projects/" + project_, "it owns resources"},
    };
    std::map<std::string, std::string> before;
    for (const auto& [path, why] : refused)
        before[path] = Call(admin_, "GET", path).raw.body;
    for (const auto& [path, why] : refused) {
        Reply r = Call(path.starts_with("/v1/projects") ? admin_ : member_, "DELETE", path);
        EXPECT_EQ(r.status, 409) << path << ": " << why << " -> " << r.raw.body;
        EXPECT_EQ(r.Str("code"), "conflict") << path;
    }
    for (const auto& [path, why] : refused) {
        EXPECT_EQ(Call(admin_, "GET", path).raw.body, before[path]) << path << " changed";
    }
    for (const std::string& path :
         {"/v1/networks/" + net_, "/v1/networks/" + bare, "/v1/ports/" + server_port, "/v1/volumes/" + vol}) {
        EXPECT_FALSE(Has(EventTypes(path), "delete_requested")) << path;
    }
    // What owns nothing goes.
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/projects/" + NewProject("empty")).status, 204);
}

// The network service's ledger: the actions applied (not undone), and the compensations, in order.
std::vector<std::string> NetworkActions(const services::sim::SimService& sim) {
    std::vector<std::string> out;
    for (const auto& e : sim.Ledger()) {
        out.push_back(e.action + (e.kind == services::kit::CallKind::kDo ? "" : "/undo") + ":" +
                      std::string(ToString(e.outcome)));
    }
    return out;
}

TEST_F(CloudServerTest, AServerBootsOnAPortOfItsProjectAndItsDeleteLeavesThePortFree) {
    Reply made = Call(member_, "POST", "/v1/ports", R"({"network_id":")" + net_ + R"(","name":"mine"})");
    ASSERT_EQ(made.status, 202) << made.raw.body;
    const std::string port = made.Field("port", "id");
    WaitFor("/v1/ports/" + port, "port", "ACTIVE");
    ASSERT_EQ(InUse(project_, "ports"), 1);

    // No network_id: the port's.
    Reply r = Call(member_, "POST", "/v1/servers",
                   R"({"name":"s","flavor":"small","image":"debian","port_id":")" + port + R"("})");
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    EXPECT_EQ(r.Field("server", "port_id"), port);
    EXPECT_EQ(r.Field("server", "network_id"), net_);
    EXPECT_EQ(Call(member_, "GET", "/v1/ports/" + port).Field("port", "device_id"), id)
        << "bound at once: no other server may take it meanwhile";
    Reply second = Call(member_, "POST", "/v1/servers",
                        R"({"name":"t","flavor":"small","image":"debian","port_id":")" + port + R"("})");
    EXPECT_EQ(second.status, 409) << second.raw.body;
    EXPECT_NE(second.Str("message").find(id), std::string::npos) << second.raw.body;

    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    // One server.create for both kinds of port (its hooks run for both): told to bind, not make.
    Reply create = Call(member_, "GET", "/v1/workflows/" + r.Field("server", "workflow_id"));
    EXPECT_EQ(create.Field("workflow", "type"), "server.create");
    EXPECT_EQ(create.Obj("workflow").at("input").at("keep_port"), json::value(true));
    EXPECT_EQ(InUse(project_, "servers"), 1);
    EXPECT_EQ(InUse(project_, "ports"), 1) << "the server holds no port of its own";
    EXPECT_EQ(Count(member_, "ports"), 1u);
    Reply del_port = Call(member_, "DELETE", "/v1/ports/" + port);
    EXPECT_EQ(del_port.status, 409) << "a bound port is its server's: " << del_port.raw.body;

    Reply del = Call(member_, "DELETE", "/v1/servers/" + id);
    ASSERT_EQ(del.status, 202) << del.raw.body;
    WaitFor("/v1/servers/" + id, "server", "");
    EXPECT_EQ(Call(member_, "GET", "/v1/workflows/" + del.Field("server", "workflow_id"))
                  .Obj("workflow")
                  .at("input")
                  .at("keep_port"),
              json::value(true));
    Reply kept = Call(member_, "GET", "/v1/ports/" + port);
    ASSERT_EQ(kept.status, 200) << "the tenant's port outlives the server";
    EXPECT_EQ(kept.Field("port", "status"), "ACTIVE");
    EXPECT_EQ(kept.Field("port", "device_id"), "");
    EXPECT_EQ(InUse(project_, "servers"), 0);
    EXPECT_EQ(InUse(project_, "ports"), 1);
    EXPECT_EQ(NetworkActions(*sims_["network"]),
              (std::vector<std::string>{"create_network:applied", "create_port:applied",
                                        "create_port:applied", "delete_port:applied"}))
        << "made, bound, unbound (the keep-delete)";

    // Free again: the next server boots on it.
    const std::string next = ActiveServer(member_, net_, R"(,"port_id":")" + port + "\"");
    EXPECT_EQ(Server(next).Field("server", "port_id"), port);
}

TEST_F(CloudServerTest, ABootOnAPortRefusesWhatCannotBeBeforeWritingAnything) {
    const std::string other_project = NewProject("u");
    const std::string other = NewToken(other_project, "member");
    const std::string other_net = ActiveNetwork(other, "theirs");
    Reply theirs = Call(other, "POST", "/v1/ports", R"({"network_id":")" + other_net + R"("})");
    ASSERT_EQ(theirs.status, 202) << theirs.raw.body;
    const std::string foreign = theirs.Field("port", "id");
    WaitFor("/v1/ports/" + foreign, "port", "ACTIVE");
    Reply made = Call(member_, "POST", "/v1/ports", R"({"network_id":")" + net_ + R"("})");
    ASSERT_EQ(made.status, 202) << made.raw.body;
    const std::string port = made.Field("port", "id");
    WaitFor("/v1/ports/" + port, "port", "ACTIVE");
    const std::string net2 = ActiveNetwork(member_, "second");
    const std::string head = R"({"name":"s","flavor":"small","image":"debian")";

    const std::vector<std::tuple<std::string, int, std::string>> refused = {
        {head + R"(,"port_id":")" + foreign + "\"}", 400, "port_id"},
        {head + R"(,"port_id":"no-such-port"})", 400, "port_id"},
        {head + R"(,"port_id":")" + port + R"(","network_id":")" + net2 + "\"}", 400, "network_id"},
        {head + R"(,"port_id":")" + port + R"(","max_count":2})", 400, "port_id"},
        {head + "}", 400, "network_id"},
    };
    for (const auto& [body, status, field] : refused) {
        Reply r = Call(member_, "POST", "/v1/servers", body);
        EXPECT_EQ(r.status, status) << body << " -> " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), field) << body << " -> " << r.raw.body;
    }
    EXPECT_EQ(Count(member_, "servers"), 0u);
    EXPECT_EQ(Call(member_, "GET", "/v1/ports/" + port).Field("port", "device_id"), "");
    EXPECT_EQ(Call(other, "GET", "/v1/ports/" + foreign).Field("port", "device_id"), "");
    EXPECT_EQ(InUse(project_, "servers"), 0);
}

TEST_F(CloudServerTest, AFailedBootOnAPortUnbindsItAndKeepsIt) {
    Reply made = Call(member_, "POST", "/v1/ports", R"({"network_id":")" + net_ + R"("})");
    ASSERT_EQ(made.status, 202) << made.raw.body;
    const std::string port = made.Field("port", "id");
    WaitFor("/v1/ports/" + port, "port", "ACTIVE");
    services::sim::FaultConfig f;
    f.fail_actions = {"create_instance"};
    sims_["compute"]->SetFaults(f);
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_, R"(,"port_id":")" + port + "\""));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    WaitFor("/v1/servers/" + id, "server", "ERROR");
    Reply kept = Call(member_, "GET", "/v1/ports/" + port);
    EXPECT_EQ(kept.Field("port", "status"), "ACTIVE");
    EXPECT_EQ(kept.Field("port", "device_id"), "") << kept.raw.body;
    EXPECT_EQ(InUse(project_, "servers"), 0);
    EXPECT_EQ(InUse(project_, "ports"), 1) << "the port's own";
    EXPECT_EQ(NetworkActions(*sims_["network"]),
              (std::vector<std::string>{"create_network:applied", "create_port:applied",
                                        "create_port:applied", "delete_port/undo:compensated"}));

    // Another server takes the port; the failed one's delete leaves it to that one.
    sims_["compute"]->SetFaults({});
    const std::string next = ActiveServer(member_, net_, R"(,"port_id":")" + port + "\"");
    ASSERT_EQ(Call(member_, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
    EXPECT_EQ(Call(member_, "GET", "/v1/ports/" + port).Field("port", "device_id"), next);
}

TEST_F(CloudServerTest, AFailedRollbackAnAdminRetriesEndsAndItsServerTakesTheNewEnd) {
    services::sim::FaultConfig f;
    f.fail_actions = {"create_instance"};
    sims_["compute"]->SetFaults(f);
    gates_["network"]->Hold("delete_port");  // the port's compensation, refused below
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    const std::string wf = r.Field("server", "workflow_id");
    const std::string retry = "/v1/workflows/" + wf + "/retry";
    auto state = [&] { return Call(admin_, "GET", "/v1/workflows/" + wf).Field("workflow", "state"); };
    RunUntil([&] { return gates_["network"]->held() == 1; });
    EXPECT_EQ(Call(admin_, "POST", retry, "{}").status, 409) << "still running";
    gates_["network"]->Refuse(Error(ErrorCode::kFailedPrecondition, "refused by the test"));
    RunUntil([&] { return state() == "failed"; });
    ASSERT_EQ(state(), "failed");
    WaitFor("/v1/servers/" + id, "server", "ERROR");
    EXPECT_EQ(InUse(project_, "servers"), 1) << "a create whose rollback did not end keeps its quota";
    EXPECT_EQ(InUse(project_, "ports"), 1);

    Reply member = Call(member_, "POST", retry, "{}");
    EXPECT_EQ(member.status, 403) << "an operator's decision: " << member.raw.body;
    Reply retried = Call(admin_, "POST", retry, "{}");
    ASSERT_EQ(retried.status, 202) << retried.raw.body;
    RunUntil([&] { return state() == "rolled_back"; });
    ASSERT_EQ(state(), "rolled_back");
    RunUntil([&] { return InUse(project_, "servers") == 0; });
    EXPECT_EQ(InUse(project_, "servers"), 0) << "the server took the new end: its quota is back";
    EXPECT_EQ(InUse(project_, "ports"), 0);
    EXPECT_EQ(Count(admin_, "ports"), 0u);
    EXPECT_EQ(Server(id).Field("server", "status"), "ERROR");
    EXPECT_EQ(sims_["network"]->Counts().live(), 1u) << "the port undone at last; the network stays";
    const auto types = EventTypes("/v1/servers/" + id);
    EXPECT_LT(IndexOf(types, "retry_requested"), IndexOf(types, "workflow_rolled_back")) << Join(types);
    EXPECT_EQ(Call(admin_, "POST", retry, "{}").status, 409) << "rolled back: nothing to retry";
    // The server goes on delete, as any failed one.
    ASSERT_EQ(Call(member_, "DELETE", "/v1/servers/" + id).status, 202);
    WaitFor("/v1/servers/" + id, "server", "");
}

TEST_F(CloudServerTest, ARetryableServiceFailureIsRetriedAndTheServerEndsActive) {
    gates_["network"]->FailNext("create_port", 2);
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    const auto types = WaitForEvent("/v1/servers/" + id, "active");
    EXPECT_EQ(std::count(types.begin(), types.end(), "step_retried"), 2) << Join(types);
    EXPECT_LT(IndexOf(types, "step_retried"), IndexOf(types, "active"));
    Reply wf = Call(member_, "GET", "/v1/workflows/" + r.Field("server", "workflow_id"));
    const json::value& create_port = wf.Obj("workflow").at("steps").at(0);
    EXPECT_EQ(StrOf(create_port, "name"), "create_port");
    EXPECT_EQ(create_port.at("attempts").as_int64(), 3);
    EXPECT_EQ(sims_["network"]->Counts().applied, 2u)
        << "the network and one port: a retry applies nothing twice";
}

TEST_F(CloudServerTest, ACancelledCreateRollsBackAndHoldsNothing) {
    const std::string vol = ActiveVolume(member_);
    gates_["compute"]->Hold("create_instance");
    Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_, VolumeIds({vol})));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string id = r.Field("server", "id");
    const std::string wf = r.Field("server", "workflow_id");
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    EXPECT_EQ(Call(NewToken(project_, "reader"), "POST", "/v1/workflows/" + wf + "/cancel", "{}").status,
              403);
    Reply cancel = Call(member_, "POST", "/v1/workflows/" + wf + "/cancel", "{}");
    ASSERT_EQ(cancel.status, 202) << cancel.raw.body;
    gates_["compute"]->Release();  // the boot that was under way ends, then is undone

    Reply failed = WaitFor("/v1/servers/" + id, "server", "ERROR");
    EXPECT_NE(StrOf(failed.Obj("server").at("fault"), "message").find("cancelled"), std::string::npos)
        << failed.raw.body;
    Reply w = Call(member_, "GET", "/v1/workflows/" + wf);
    EXPECT_EQ(w.Field("workflow", "state"), "rolled_back");
    EXPECT_EQ(w.Obj("workflow").at("cancel_requested"), json::value(true));
    EXPECT_EQ(InUse(project_, "servers"), 0);
    EXPECT_EQ(InUse(project_, "ports"), 0);
    EXPECT_EQ(WaitFor("/v1/volumes/" + vol, "volume", "available").Field("volume", "server_id"), "");
    EXPECT_EQ(sims_["compute"]->Counts().live(), 0u) << "the instance was undone";
    EXPECT_EQ(sims_["network"]->Counts().live(), 1u) << "the port was undone, the network stays";
}

TEST_F(CloudServerTest, ACreateBeyondTheWorkflowLimitIsRefusedWith429AndLeavesNothing) {
    engine_options_.max_inflight = 2;
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    const std::string vol = ActiveVolume(member_);
    gates_["compute"]->Hold("create_instance");  // two builds stay in flight
    std::vector<std::string> accepted;
    for (int i = 0; i < 2; ++i) {
        Reply r = Call(member_, "POST", "/v1/servers", ServerBody(net_));
        ASSERT_EQ(r.status, 202) << r.raw.body;
        accepted.push_back(r.Field("server", "id"));
    }
    Reply refused =
        Call(member_, "POST", "/v1/servers", ServerBody(net_, VolumeIds({vol})), {{"idempotency-key", "k"}});
    EXPECT_EQ(refused.status, 429) << refused.raw.body;
    EXPECT_EQ(refused.Str("code"), "resource_exhausted");
    EXPECT_EQ(refused.raw.Header("retry-after"), "1");
    EXPECT_EQ(Count(member_, "servers"), 2u) << "nothing of the refused create remains";
    EXPECT_EQ(Count(member_, "ports"), 2u);
    EXPECT_EQ(InUse(project_, "servers"), 2);
    EXPECT_EQ(InUse(project_, "ports"), 2);
    EXPECT_EQ(Call(member_, "GET", "/v1/volumes/" + vol).Field("volume", "status"), "available");

    gates_["compute"]->Release();
    for (const auto& id : accepted)
        WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    Reply again =
        Call(member_, "POST", "/v1/servers", ServerBody(net_, VolumeIds({vol})), {{"idempotency-key", "k"}});
    EXPECT_EQ(again.status, 202) << "the key of a refused request is free: " << again.raw.body;
}

TEST_F(CloudServerTest, ServerGroupsPlaceTheirMembersByTheirPolicy) {
    auto group = [&](const std::string& policy) {
        Reply g = Call(member_, "POST", "/v1/server-groups",
                       R"({"name":")" + policy + R"(","policy":")" + policy + R"("})");
        EXPECT_EQ(g.status, 201) << g.raw.body;
        return R"(,"server_group_id":")" + g.Field("server_group", "id") + "\"";
    };
    const std::string apart = group("anti-affinity");
    std::set<std::string> hosts;
    for (int i = 0; i < 2; ++i)
        hosts.insert(Server(ActiveServer(member_, net_, apart)).Field("server", "host"));
    EXPECT_EQ(hosts.size(), 2u) << "one member per host";
    Reply third = Call(member_, "POST", "/v1/servers", ServerBody(net_, apart));
    ASSERT_EQ(third.status, 202) << third.raw.body;
    Reply failed = WaitFor("/v1/servers/" + third.Field("server", "id"), "server", "ERROR");
    const std::string why = StrOf(failed.Obj("server").at("fault"), "message");
    EXPECT_NE(why.find("no valid host"), std::string::npos) << why;
    EXPECT_NE(why.find("anti-affinity: 2 eliminated"), std::string::npos) << why;

    const std::string together = group("affinity");
    std::set<std::string> affinity_hosts;
    for (int i = 0; i < 3; ++i) {
        affinity_hosts.insert(Server(ActiveServer(member_, net_, together)).Field("server", "host"));
    }
    EXPECT_EQ(affinity_hosts.size(), 1u) << "every member on the first member's host";
}

TEST_F(CloudServerTest, ADisabledHostGetsNoNewServers) {
    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/h1/disable", R"({"reason":"maintenance"})").status, 200);
    Reply h1 = Call(admin_, "GET", "/v1/hosts/h1");
    EXPECT_EQ(h1.Obj("host").at("enabled"), json::value(false));
    EXPECT_EQ(h1.Field("host", "disabled_reason"), "maintenance");
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(Server(ActiveServer(member_, net_)).Field("server", "host"), "h2");
    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/h1/enable", "{}").status, 200);
    EXPECT_EQ(Server(ActiveServer(member_, net_)).Field("server", "host"), "h1")
        << "enabled, and the emptier";
    const auto events = WaitForEvent("/v1/hosts/h1", "enabled");
    EXPECT_LT(IndexOf(events, "disabled"), IndexOf(events, "enabled"));
}

TEST_F(CloudServerTest, CreatesBeyondCapacityNeverOvercommitAHost) {
    // 8 vcpus x cpu_ratio 4.0 = 32 per host: two of these each; six asked for at once.
    ASSERT_EQ(
        Call(admin_, "POST", "/v1/flavors", R"({"name":"big","vcpus":16,"ram_mb":1024,"disk_gb":1})").status,
        201);
    std::vector<std::string> ids;
    for (int i = 0; i < 6; ++i) {
        Reply r = Call(member_, "POST", "/v1/servers",
                       R"({"name":"s","flavor":"big","image":"debian","network_id":")" + net_ + R"("})");
        ASSERT_EQ(r.status, 202) << r.raw.body;
        ids.push_back(r.Field("server", "id"));
    }
    int active = 0, error = 0;
    for (const auto& id : ids) {
        Reply s;
        RunUntil([&] {
            s = Server(id);
            return s.Field("server", "status") == "ACTIVE" || s.Field("server", "status") == "ERROR";
        });
        if (s.Field("server", "status") == "ACTIVE") {
            ++active;
        } else {
            ++error;
            EXPECT_NE(StrOf(s.Obj("server").at("fault"), "message").find("no valid host"), std::string::npos)
                << s.raw.body;
        }
    }
    EXPECT_EQ(active, 4);
    EXPECT_EQ(error, 2);
    for (const std::string h : {"h1", "h2"}) {
        Reply host = Call(admin_, "GET", "/v1/hosts/" + h);
        EXPECT_EQ(host.Obj("host").at("used").at("vcpus").as_int64(), 32) << h;
        EXPECT_EQ(host.Obj("host").at("servers").as_int64(), 2) << h;
    }
    EXPECT_EQ(InUse(project_, "servers"), 4) << "the failed creates hold no quota";
}

}  // namespace
}  // namespace cogs::cloud::testing
