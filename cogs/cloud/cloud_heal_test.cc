// Leases, healing and restarts, in one process (the fixture: cloud_test_fixture.h). The cloud's
// time is the fake clock: a host's lease lapses when the test moves time on without its heartbeat,
// to the millisecond, however slow the machine.
#include "cogs/cloud/cloud_test_fixture.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>

#include "cogs/http/server.h"

namespace cogs::cloud::testing {
namespace {

class CloudHealTest : public CloudTest {
protected:
    // `hosts` hosts and an ACTIVE network of the admin's project.
    void SetUpCloud(int hosts) {
        ASSERT_NO_FATAL_FAILURE(Seed(hosts));
        for (int i = 1; i <= hosts; ++i)
            hosts_.push_back("h" + std::to_string(i));
        net_ = ActiveNetwork(admin_);
    }

    std::vector<std::string> HostsBut(const std::vector<std::string>& lapsing) const {
        std::vector<std::string> out;
        for (const auto& h : hosts_) {
            if (std::find(lapsing.begin(), lapsing.end(), h) == lapsing.end()) out.push_back(h);
        }
        return out;
    }
    // The hosts of `lapsing` stop renewing; the others renew; time moves on a lease TTL and a
    // fencing window: those hosts are down.
    void Lapse(const std::vector<std::string>& lapsing) {
        AdvanceRenewing(options_.lease_ttl + options_.fence_window, HostsBut(lapsing));
        for (const auto& h : lapsing)
            EXPECT_EQ(HostState(h), "down") << h;
    }

    std::string HostOf(const std::string& server) { return Server(server).Field("server", "host"); }
    // Waits until `server` is `status` on a host other than `from`; returns its host.
    std::string WaitMovedOff(const std::string& server, const std::string& from,
                             const std::string& status = "ACTIVE") {
        Reply s;
        RunUntil([&] {
            s = Server(server);
            return s.Field("server", "status") == status && !s.Field("server", "host").empty() &&
                   s.Field("server", "host") != from;
        });
        EXPECT_EQ(s.Field("server", "status"), status) << s.raw.body;
        return s.Field("server", "host");
    }

    // A server created with `extra` (ServerBody's) whose build waits at its boot (create_instance
    // held); the create's answer.
    Reply BootHeld(const std::string& extra = "") {
        gates_["compute"]->Hold("create_instance");
        Reply r = Call(admin_, "POST", "/v1/servers", ServerBody(net_, extra));
        EXPECT_EQ(r.status, 202) << r.raw.body;
        RunUntil([&] { return gates_["compute"]->held() == 1; });
        return r;
    }

    // The host the held boot (BootHeld) was sent to dies: its lease lapses. Returns it.
    std::string LapseTheBootsHost() {
        const std::string host = StrOf(gates_["compute"]->HeldInput(), "host");
        EXPECT_FALSE(host.empty());
        Lapse({host});
        return host;
    }

    // A server with a volume whose build was in flight when cogsd died, and ended (the engine
    // finished it) before cogsd started again; cogsd is up again. Returns {server, volume}.
    std::pair<std::string, std::string> BuildEndedWhileTheCloudWasDown() {
        SetUpCloud(2);
        const std::string vol = ActiveVolume(admin_);
        Reply r = BootHeld(VolumeIds({vol}));
        const std::string workflow = r.Field("server", "workflow_id");
        RunEngineAlone([&](const std::set<std::string>& finished) { return finished.contains(workflow); });
        Open();
        return {r.Field("server", "id"), vol};
    }

    std::vector<std::string> hosts_;
    std::string net_;
};

TEST_F(CloudHealTest, ALapsedLeaseMakesTheHostSuspectThenDownAndItsServersMoveAway) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string vol = ActiveVolume(admin_);
    const std::string id = ActiveServer(admin_, net_, VolumeIds({vol}));
    const Reply was = Server(id);
    const std::string host = was.Field("server", "host");
    const std::string other = HostsBut({host}).at(0);
    Renew(other);
    clock_.Advance(2999ms);
    EXPECT_EQ(HostState(host), "up") << "not a millisecond before the TTL";
    Renew(other);
    clock_.Advance(1ms);
    EXPECT_EQ(HostState(host), "suspect");
    EXPECT_EQ(Server(id).Field("server", "status"), "ACTIVE") << "a suspect host is not evacuated";
    clock_.Advance(999ms);
    EXPECT_EQ(HostState(host), "suspect") << "the fencing window is not over";
    Renew(other);
    clock_.Advance(1ms);
    EXPECT_EQ(HostState(host), "down");

    EXPECT_EQ(WaitMovedOff(id, host), other);
    const Reply now = Server(id);
    for (const char* f : {"port_id", "network_id", "flavor_id", "name"}) {
        EXPECT_EQ(now.Field("server", f), was.Field("server", f)) << f;
    }
    EXPECT_EQ(now.Obj("server").at("volume_ids"), was.Obj("server").at("volume_ids"));
    EXPECT_EQ(WaitFor("/v1/volumes/" + vol, "volume", "in-use").Field("volume", "server_id"), id);
    const auto types = WaitForEvent("/v1/servers/" + id, "evacuated");
    EXPECT_LT(IndexOf(types, "evacuate_requested"), IndexOf(types, "evacuated"));
    const auto host_events = WaitForEvent("/v1/hosts/" + host, "down");
    EXPECT_LT(IndexOf(host_events, "suspect"), IndexOf(host_events, "down"));
    Reply h = Call(admin_, "GET", "/v1/hosts/" + host);
    EXPECT_EQ(h.Obj("host").at("servers").as_int64(), 0) << "its claim moved with it";
}

// A server's user_data and network go to its boot, and again to its rebuild on another host when
// its host dies (the port's subnet too: the simulated network answers none, so it travels empty).
TEST_F(CloudHealTest, UserDataAndTheNetworkGoToEveryBootOfTheServerEvacuationsToo) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string user_data = "ZWNobyBoZWxsbwo=";  // "echo hello\n"
    Reply r = BootHeld(R"(,"user_data":")" + user_data + "\"");
    const std::string id = r.Field("server", "id");
    json::object boot = gates_["compute"]->HeldInput();
    EXPECT_EQ(StrOf(boot, "user_data"), user_data);
    EXPECT_EQ(StrOf(boot, "network_id"), net_);
    for (const char* f : {"cidr", "gateway_ip"}) {
        EXPECT_TRUE(boot.contains(f)) << f;
    }
    gates_["compute"]->Release();
    const std::string host = WaitFor("/v1/servers/" + id, "server", "ACTIVE").Field("server", "host");
    EXPECT_FALSE(Server(id).Obj("server").contains("user_data")) << "kept, never shown";

    gates_["compute"]->Hold("create_instance");
    Lapse({host});
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    ASSERT_EQ(gates_["compute"]->held(), 1u);
    json::object rebuild = gates_["compute"]->HeldInput();
    EXPECT_NE(StrOf(rebuild, "host"), host);
    EXPECT_EQ(StrOf(rebuild, "user_data"), user_data);
    EXPECT_EQ(StrOf(rebuild, "network_id"), net_);
    EXPECT_EQ(StrOf(rebuild, "ip_address"), StrOf(boot, "ip_address"));
    gates_["compute"]->Release();
    WaitMovedOff(id, host);
}

// A host's lease epoch (its renewal answers' "lease_epoch") stays as it is while the host renews,
// and grows when the host comes back from down: its agent then refuses what was sent to it before
// (services/compute/compute.h, SetLeaseEpoch).
TEST_F(CloudHealTest, AHostsLeaseEpochGrowsWhenItComesBackFromDown) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const auto epoch = [&](const std::string& host) {
        const Reply r = Call(admin_, "POST", "/v1/hosts/" + host + "/heartbeat", "{}");
        EXPECT_EQ(r.status, 200) << r.raw.body;
        const json::value* e = r.body.if_contains("lease_epoch");
        return e != nullptr && e->is_int64() ? e->as_int64() : int64_t{-1};
    };
    const int64_t first = epoch("h1");
    EXPECT_GT(first, 0);
    AdvanceRenewing(options_.lease_ttl, {"h1", "h2"});
    EXPECT_EQ(epoch("h1"), first) << "renewed all along: the same epoch";
    Lapse({"h1"});
    const int64_t again = epoch("h1");  // this renewal takes it in again
    EXPECT_GT(again, first);
    EXPECT_EQ(HostState("h1"), "up");
    EXPECT_EQ(epoch("h1"), again);
}

// A replica that leads makes its epochs from its leader token (CloudOptions::lease_epoch_base):
// a later leader's exceed an earlier one's even when its wall clock is behind.
TEST_F(CloudHealTest, ALeadersLeaseEpochsStartAtItsBase) {
    options_.lease_epoch_base = int64_t{7} << 42;
    Close();
    Open();
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(1));
    const Reply r = Call(admin_, "POST", "/v1/hosts/h1/heartbeat", "{}");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    const int64_t epoch = r.body.at("lease_epoch").as_int64();
    EXPECT_GE(epoch, (int64_t{7} << 42) + clock_.WallMs() - 60'000);
    EXPECT_LT(epoch, int64_t{8} << 42);
}

TEST_F(CloudHealTest, ASuspectHostGetsNoNewServersUntilItRenewsAgain) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    AdvanceRenewing(options_.lease_ttl, {"h2"});
    ASSERT_EQ(HostState("h1"), "suspect");
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(HostOf(ActiveServer(admin_, net_)), "h2");
    }
    Renew("h1");
    EXPECT_EQ(HostState("h1"), "up");
    const auto events = WaitForEvent("/v1/hosts/h1", "up");
    EXPECT_LT(IndexOf(events, "suspect"), IndexOf(events, "up"));
    EXPECT_EQ(HostOf(ActiveServer(admin_, net_)), "h1") << "up again, and the emptier host";
}

TEST_F(CloudHealTest, AStoppedServerIsEvacuatedAsAStoppedServer) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string id = ActiveServer(admin_, net_);
    ASSERT_EQ(Call(admin_, "POST", "/v1/servers/" + id + "/stop", "{}").status, 202);
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
    const std::string host = HostOf(id);
    Lapse({host});
    WaitMovedOff(id, host, "SHUTOFF");
    std::vector<std::string> types;
    RunUntil([&] {
        types = EventTypes("/v1/servers/" + id);
        return std::count(types.begin(), types.end(), "stopped") == 2;
    });
    EXPECT_LT(IndexOf(types, "evacuated"), types.size()) << Join(types);
    EXPECT_EQ(types.back(), "stopped") << "stopped again after the evacuation: " << Join(types);
}

TEST_F(CloudHealTest, AnAgentsCrashReportsBecomeTheServersHistory) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string id = ActiveServer(admin_, net_);
    const std::string host = HostOf(id);
    auto report = [&](int seq, const std::string& type, const std::string& message) {
        return Call(admin_, "POST", "/v1/hosts/" + host + "/heartbeat",
                    R"({"reports":[{"seq":)" + std::to_string(seq) + R"(,"instance":")" + id +
                        R"(","type":")" + type + R"(","message":")" + message + R"(","at_ms":1}]})");
    };
    Reply crashed = report(1, "crashed", "exit 139");
    ASSERT_EQ(crashed.status, 200) << crashed.raw.body;
    EXPECT_EQ(crashed.body.at("acked_seq").as_int64(), 1) << "acknowledged once its event is durable";
    ASSERT_EQ(report(2, "restarted", "running again").status, 200);
    EXPECT_EQ(Server(id).Field("server", "status"), "ACTIVE");
    ASSERT_EQ(report(3, "gave_up", "crashed 5 times in 10 min").status, 200);
    Reply s = Server(id);
    EXPECT_EQ(s.Field("server", "status"), "ERROR");
    EXPECT_EQ(StrOf(s.Obj("server").at("fault"), "message"), "crashed 5 times in 10 min");
    const auto types = WaitForEvent("/v1/servers/" + id, "restart_gave_up");
    EXPECT_LT(IndexOf(types, "crashed"), IndexOf(types, "restarted"));
    EXPECT_LT(IndexOf(types, "restarted"), IndexOf(types, "restart_gave_up"));
    EXPECT_EQ(types.back(), "error");
    // Another host's report about it changes nothing.
    const std::string other = HostsBut({host}).at(0);
    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/" + other + "/heartbeat",
                   R"({"reports":[{"seq":1,"instance":")" + id + R"(","type":"crashed","at_ms":1}]})")
                  .status,
              200);
    EXPECT_EQ(std::count(types.begin(), types.end(), "crashed"), 1);
    EXPECT_EQ(EventTypes("/v1/servers/" + id), types);
}

TEST_F(CloudHealTest, ADrainedHostHasItsServersMigratedAndEndsDrained) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/h2/disable", "{}").status, 200);
    const std::vector<std::string> servers = {ActiveServer(admin_, net_), ActiveServer(admin_, net_)};
    for (const auto& s : servers)
        ASSERT_EQ(HostOf(s), "h1");
    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/h2/enable", "{}").status, 200);

    Reply drain = Call(admin_, "POST", "/v1/hosts/h1/drain", R"({"reason":"maintenance"})");
    ASSERT_EQ(drain.status, 200) << drain.raw.body;
    EXPECT_EQ(drain.Obj("host").at("draining"), json::value(true));
    EXPECT_EQ(drain.Obj("host").at("enabled"), json::value(false));
    EXPECT_EQ(drain.Field("host", "disabled_reason"), "maintenance");
    for (const auto& s : servers) {
        EXPECT_EQ(WaitMovedOff(s, "h1"), "h2");
        const auto types = WaitForEvent("/v1/servers/" + s, "migrated");
        EXPECT_LT(IndexOf(types, "migrate_requested"), IndexOf(types, "migrated"));
    }
    const auto host_events = WaitForEvent("/v1/hosts/h1", "drained");
    EXPECT_LT(IndexOf(host_events, "draining"), IndexOf(host_events, "drained"));
    Reply h1 = Call(admin_, "GET", "/v1/hosts/h1");
    EXPECT_EQ(h1.Obj("host").at("draining"), json::value(false));
    EXPECT_EQ(h1.Obj("host").at("enabled"), json::value(false)) << "a drained host stays disabled";
    EXPECT_EQ(h1.Obj("host").at("servers").as_int64(), 0);
    EXPECT_EQ(h1.Field("host", "state"), "up");
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h2").Obj("host").at("servers").as_int64(), 2);
}

TEST_F(CloudHealTest, WhenMostHostsLapseAtOnceEvacuationPausesUntilTheyReturn) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(3));
    std::map<std::string, std::string> placement;  // server -> host
    for (int i = 0; i < 3; ++i) {
        const std::string id = ActiveServer(admin_, net_);
        placement[id] = HostOf(id);
    }
    std::set<std::string> used;
    for (const auto& [id, host] : placement)
        used.insert(host);
    ASSERT_EQ(used.size(), 3u) << "the servers are not spread over the three hosts";
    const std::vector<std::string> cut = {"h1", "h2"};
    Lapse(cut);
    WaitForEvent("/v1/events?resource_kind=alert&resource_id=evacuation", "evacuation_paused");
    for (const auto& h : cut)
        WaitForEvent("/v1/hosts/" + h, "down");
    // Down, paused, and time goes on: nothing moves.
    AdvanceRenewing(10s, {"h3"});
    for (const auto& [id, host] : placement) {
        const Reply s = Server(id);
        EXPECT_EQ(s.Field("server", "status"), "ACTIVE") << id;
        EXPECT_EQ(s.Field("server", "host"), host) << id;
        EXPECT_FALSE(Has(EventTypes("/v1/servers/" + id), "evacuate_requested")) << id;
    }

    for (const auto& h : cut)
        Renew(h);
    for (const auto& h : cut)
        EXPECT_EQ(HostState(h), "up") << h;
    const auto alerts =
        WaitForEvent("/v1/events?resource_kind=alert&resource_id=evacuation", "evacuation_resumed");
    EXPECT_EQ(alerts, (std::vector<std::string>{"evacuation_paused", "evacuation_resumed"}));
    AdvanceRenewing(10s, hosts_);
    for (const auto& [id, host] : placement) {
        const Reply s = Server(id);
        EXPECT_EQ(s.Field("server", "status"), "ACTIVE") << id;
        EXPECT_EQ(s.Field("server", "host"), host) << "where it was, " << id;
    }
}

TEST_F(CloudHealTest, ACreateWhoseHostFailsDuringTheBuildIsBuiltAgainElsewhere) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    Gate& compute = *gates_["compute"];
    Reply r = BootHeld();
    const std::string id = r.Field("server", "id");
    const std::string first_workflow = r.Field("server", "workflow_id");
    // Its host dies while it boots there: the boot is refused (the agent has fenced itself).
    const std::string host = LapseTheBootsHost();
    compute.Refuse(Error(ErrorCode::kFailedPrecondition, "host " + host + " is fenced"));

    const std::string now_on = WaitMovedOff(id, host);
    EXPECT_EQ(now_on, HostsBut({host}).at(0));
    const Reply s = Server(id);
    EXPECT_EQ(s.Field("server", "port_id"), r.Field("server", "port_id")) << "the same server, with its port";
    EXPECT_NE(s.Field("server", "workflow_id"), first_workflow) << "built by a second server.create";
    const auto types = WaitForEvent("/v1/servers/" + id, "active");
    EXPECT_EQ(std::count(types.begin(), types.end(), "rescheduled"), 1) << Join(types);
    EXPECT_LT(IndexOf(types, "rescheduled"), IndexOf(types, "active"));
    EXPECT_FALSE(Has(types, "error")) << Join(types);
    EXPECT_EQ(InUse(Call(admin_, "GET", "/v1/whoami").Str("project_id"), "servers"), 1);
    EXPECT_EQ(Count(admin_, "servers"), 1u);
    EXPECT_EQ(Count(admin_, "ports"), 1u);
}

// The store, with the look-ups of one workflow held: the stuck-work check reads a workflow on the
// cloud's read thread (Context::OffThread, one thread), so a look-up held here holds those queued
// behind it too — a slow read thread, until the moment the test chooses. Everything else is the
// store's.
class HeldReadsStore final : public ForwardingStore {
public:
    using ForwardingStore::ForwardingStore;

    // Reads of `workflow_id` are counted, and wait until Release().
    void Hold(std::string workflow_id) {
        std::lock_guard lock(mu_);
        workflow_ = std::move(workflow_id);
        holding_ = true;
    }
    void Release() {
        {
            std::lock_guard lock(mu_);
            holding_ = false;
        }
        changed_.notify_all();
    }
    // Waits until `n` reads of the workflow have begun (the bound only stops a test that would hang).
    bool WaitForReads(int n) {
        std::unique_lock lock(mu_);
        return changed_.wait_for(lock, 30s, [&] { return reads_ >= n; });
    }

    Result<store::WorkflowRecord> GetWorkflow(const std::string& id) override {
        {
            std::unique_lock lock(mu_);
            if (id == workflow_) {
                ++reads_;
                changed_.notify_all();
                changed_.wait(lock, [&] { return !holding_; });
            }
        }
        return ForwardingStore::GetWorkflow(id);
    }

private:
    std::mutex mu_;
    std::condition_variable changed_;
    std::string workflow_;
    bool holding_ = false;
    int reads_ = 0;
};

// One workflow's end settled several times at once: reported by the engine while the stuck-work
// check's look-ups of it (one per reconcile pass, on the read thread) answer. The order is the
// test's: the look-ups are held (HeldReadsStore), and the engine's report, heard before the cloud's
// (before_cloud_), lets them answer and waits until they have: their settles are queued on the io
// thread ahead of anything the cloud's own settle starts.
class CloudSettleRaceTest : public CloudHealTest {
protected:
    void SetUp() override {
        CloudHealTest::SetUp();
        Close();
        options_.reconcile_every = 10s;
        wrap_store_ = [this](std::unique_ptr<store::Store> s) {
            auto held = std::make_unique<HeldReadsStore>(std::move(s));
            reads_ = held.get();
            return held;
        };
        before_cloud_ = [this] {
            engine_->OnFinished([this](const workflow::FinishedEvent& ev) {
                if (on_end_) on_end_(ev);
            });
        };
        ASSERT_NO_FATAL_FAILURE(Open());
    }
    void TearDown() override {
        if (reads_ != nullptr) reads_->Release();
        CloudHealTest::TearDown();
    }

    // `wf` is running and stays so: the stuck-work check sees it at a reconcile pass, then looks it
    // up at each of n + 1 more (the hosts of `lapsed` silent meanwhile); the first look-up waits on
    // the read thread, the others behind it. When `wf` ends, the engine's report lets them go and
    // waits until n have answered: n settles of its end are queued before the cloud settles it.
    void LookUpSlowly(const std::string& wf, int n, const std::vector<std::string>& lapsed = {}) {
        reads_->Hold(wf);
        for (int pass = 0; pass < n + 2; ++pass)
            AdvanceRenewing(options_.reconcile_every, HostsBut(lapsed));
        ASSERT_TRUE(reads_->WaitForReads(1)) << "the stuck-work check never looked " << wf << " up";
        on_end_ = [this, wf, n](const workflow::FinishedEvent& ev) {
            if (ev.id != wf) return;
            reads_->Release();
            EXPECT_TRUE(reads_->WaitForReads(n + 1))
                << "fewer look-ups of " << wf << " than reconcile passes";
        };
    }

    // What was queued on the io thread until now has run, and what it wrote is durable.
    void Settled() {
        bool ran = false;
        boost::asio::post(*io_, [&ran] { ran = true; });
        RunUntil([&] { return ran; });
        store_->Flush();
    }

    HeldReadsStore* reads_ = nullptr;
    std::function<void(const workflow::FinishedEvent&)> on_end_;
};

// The end of a create whose host failed during the build, settled three times at once (the engine
// and two slow stuck-work look-ups; make test under ASan once): the first settle reschedules it,
// and the others must see that. They did not (the server named the ended build until the rebuild
// started, a turn later): a second rescheduled it again (two builds of one server at once), a third
// found both reschedules spent and failed it: ERROR "host ... is down", its port and quota gone,
// while its rebuild was starting.
TEST_F(CloudSettleRaceTest, ARescheduleIsDecidedOnceWhenTheSameEndIsSettledAgainAtOnce) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const Reply r = BootHeld();
    const std::string host = LapseTheBootsHost();
    ASSERT_NO_FATAL_FAILURE(LookUpSlowly(r.Field("server", "workflow_id"), 2, {host}));
    gates_["compute"]->Refuse(Error(ErrorCode::kFailedPrecondition, "compute: host " + host + " is down"));

    const std::string id = r.Field("server", "id");
    Reply s;
    RunUntil([&] {
        s = Server(id);
        return s.Field("server", "status") != "BUILD";
    });
    EXPECT_EQ(s.Field("server", "status"), "ACTIVE") << s.raw.body;
    EXPECT_EQ(s.Field("server", "host"), HostsBut({host}).at(0)) << s.raw.body;
    EXPECT_EQ(s.Field("server", "port_id"), r.Field("server", "port_id"));
    EXPECT_NE(s.Field("server", "workflow_id"), r.Field("server", "workflow_id"));
    Settled();
    const auto types = EventTypes("/v1/servers/" + id);
    EXPECT_EQ(std::count(types.begin(), types.end(), "rescheduled"), 1) << Join(types);
    EXPECT_EQ(std::count(types.begin(), types.end(), "created"), 2) << "one rebuild: " << Join(types);
    EXPECT_FALSE(Has(types, "error")) << Join(types);
    EXPECT_EQ(InUse(Call(admin_, "GET", "/v1/whoami").Str("project_id"), "servers"), 1);
    EXPECT_EQ(Count(admin_, "ports"), 1u);
}

// The same race for any outcome: a build's end settled by the engine and by a slow stuck-work
// look-up is applied once (its server and volume were written, and their events told, twice).
TEST_F(CloudSettleRaceTest, AnEndSettledTwiceAtOnceIsAppliedOnce) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string vol = ActiveVolume(admin_);
    Reply r = BootHeld(VolumeIds({vol}));
    const std::string id = r.Field("server", "id");
    ASSERT_NO_FATAL_FAILURE(LookUpSlowly(r.Field("server", "workflow_id"), 1));
    gates_["compute"]->Release();

    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    Settled();
    const auto server = EventTypes("/v1/servers/" + id);
    EXPECT_EQ(std::count(server.begin(), server.end(), "active"), 1) << Join(server);
    const auto volume = EventTypes("/v1/volumes/" + vol);
    EXPECT_EQ(std::count(volume.begin(), volume.end(), "attached"), 1) << Join(volume);
}

TEST_F(CloudHealTest, NoHostIsDeclaredDownWithinTheRestartGrace) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(3));
    const std::string id = ActiveServer(admin_, net_);
    const std::string victim = HostOf(id);
    const auto others = HostsBut({victim});
    options_.restart_grace = 10s;  // longer than a lease and a fencing window
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    AdvanceRenewing(options_.lease_ttl, others);
    EXPECT_EQ(HostState(victim), "suspect");
    AdvanceRenewing(options_.restart_grace - options_.lease_ttl - 1ms, others);
    EXPECT_EQ(HostState(victim), "suspect") << "the grace is not over";
    EXPECT_EQ(Server(id).Field("server", "host"), victim);
    EXPECT_EQ(Server(id).Field("server", "status"), "ACTIVE");
    clock_.Advance(1ms);
    EXPECT_EQ(HostState(victim), "down");
    WaitMovedOff(id, victim);
    const auto events = WaitForEvent("/v1/hosts/" + victim, "down");
    EXPECT_EQ(std::count(events.begin(), events.end(), "down"), 1) << Join(events);
}

// cogsd restarted several times in a row keeps starting the reconciler's repairs: the ids of the
// workflows the engine names itself are new at every start (issue 12: they repeated, and every
// repair after a restart was refused as "already exists" until healing stalled).
TEST_F(CloudHealTest, RepairsKeepStartingAcrossRestarts) {
    FakeInventory inventory;
    observe::Metrics metrics;  // outlives every cloud of the test (closed at its end)
    options_.metrics = &metrics;
    options_.inventory_urls = {{"network", inventory.url()}};
    // Repairs started so far: a refused one is started again at the next scan with a new id, so
    // the orphan goes either way, but each refusal counts one more.
    const auto started = [&] {
        const std::string text = metrics.Render();
        const std::string series = R"(cogs_heal_repairs_total{kind="delete_port"} )";
        const size_t at = text.find(series);
        return at == std::string::npos ? -1 : std::stoi(text.substr(at + series.size()));
    };
    for (int run = 0; run < 4; ++run) {
        Close();
        ASSERT_NO_FATAL_FAILURE(Open());
        const std::string orphan = "orphan-port-" + std::to_string(run);
        inventory.Orphan(orphan);
        // Scans come with the reconcile period (moved on here); the orphan goes after its grace.
        // Once its delete reaches the network service, the inventory no longer shows it and time
        // stands still: no later scan can start a repair of its own (only a refused one is
        // started again, by a scan before the delete).
        Gate& network = *gates_["network"];
        network.Hold("delete_port");
        bool deleting = false;
        int tick = 0;
        RunUntil([&] {
            if (network.held() > 0) {
                deleting = true;
                inventory.Serve({}, "");
                network.Release();
            }
            if (!deleting && ++tick % 25 == 0) clock_.Advance(options_.reconcile_every);
            return Has(EventTypes("/v1/events?resource_kind=port&resource_id=" + orphan), "orphan_removed");
        });
        EXPECT_EQ(started(), run + 1) << "a repair was refused after restart " << run;
    }
    Close();
}

TEST_F(CloudHealTest, WhatWasAnsweredSurvivesARestart) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string p = NewProject("t");
    const std::string member = NewToken(p, "member");
    const std::string net = ActiveNetwork(member);
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    EXPECT_EQ(Call(member, "GET", "/v1/networks/" + net).Field("network", "status"), "ACTIVE");
    EXPECT_EQ(Count(admin_, "hosts"), 2u);
    EXPECT_EQ(Call(member, "GET", "/v1/whoami").Str("project_id"), p);
}

TEST_F(CloudHealTest, ABuildInFlightAtARestartFinishesAfterIt) {
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    Reply r = BootHeld();
    const std::string id = r.Field("server", "id");
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    Reply active = WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_EQ(active.Field("server", "workflow_id"), r.Field("server", "workflow_id"))
        << "resumed, not started again";
    EXPECT_FALSE(active.Field("server", "host").empty());
    const auto types = WaitForEvent("/v1/servers/" + id, "active");
    EXPECT_EQ(std::count(types.begin(), types.end(), "active"), 1) << Join(types);
}

TEST_F(CloudHealTest, AWorkflowThatEndedWhileTheCloudWasDownSettlesItsResourceAtStart) {
    const auto [id, vol] = BuildEndedWhileTheCloudWasDown();
    // Load settled it before the first request.
    const Reply s = Server(id);
    EXPECT_EQ(s.Field("server", "status"), "ACTIVE") << s.raw.body;
    EXPECT_FALSE(s.Field("server", "host").empty());
    Reply v = Call(admin_, "GET", "/v1/volumes/" + vol);
    EXPECT_EQ(v.Field("volume", "status"), "in-use");
    EXPECT_EQ(v.Field("volume", "server_id"), id);
    EXPECT_EQ(Call(admin_, "GET", "/v1/ports/" + s.Field("server", "port_id")).Field("port", "status"),
              "ACTIVE");
    EXPECT_EQ(WaitForEvent("/v1/servers/" + id, "active").back(), "active");
    EXPECT_EQ(InUse(Call(admin_, "GET", "/v1/whoami").Str("project_id"), "servers"), 1);
}

TEST_F(CloudHealTest, AWorkflowSettledAtStartWritesItsOutcomeOnce) {
    // A server.create is the workflow of the server, its port and its volumes (all transitional
    // at the restart): it is settled once, not once per resource.
    const auto [id, vol] = BuildEndedWhileTheCloudWasDown();
    const auto server = WaitForEvent("/v1/servers/" + id, "active");
    EXPECT_EQ(std::count(server.begin(), server.end(), "active"), 1) << Join(server);
    const auto volume = WaitForEvent("/v1/volumes/" + vol, "attached");
    EXPECT_EQ(std::count(volume.begin(), volume.end(), "attached"), 1) << Join(volume);
}

// A port the network service holds for another device than its server (someone's update_port, a
// service's bug) is set back to its server by the reconciler, once two scans agree.
TEST_F(CloudHealTest, APortHeldForAnotherDeviceIsSetBackToItsServer) {
    FakeInventory inventory;
    options_.inventory_urls = {{"network", inventory.url()}};
    options_.reconcile_every = 5s;  // passes come as the clock moves, with the hosts renewing
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    ASSERT_NO_FATAL_FAILURE(SetUpCloud(2));
    const std::string server = ActiveServer(admin_, net_);
    const std::string port = Server(server).Field("server", "port_id");
    ASSERT_FALSE(port.empty());
    inventory.Serve({net_},
                    R"({"id":")" + port + R"(","network_id":")" + net_ + R"(","device_id":"intruder"})");
    Gate& network = *gates_["network"];
    network.Hold("update_port");
    int tick = 0;
    RunUntil([&] {
        if (++tick % 25 == 0) AdvanceRenewing(options_.reconcile_every, hosts_);
        return network.held() == 1;
    });
    EXPECT_EQ(StrOf(network.HeldInput(), "id"), port);
    EXPECT_EQ(StrOf(network.HeldInput(), "device_id"), server);
    network.Release();
    RunUntil(
        [&] { return Has(EventTypes("/v1/events?resource_kind=port&resource_id=" + port), "repaired"); });
}

// A periodic pass walks every record and every inventory: as the cloud grows, passes space out
// (max(reconcile_every, records / reconcile_records_per_s)), so that they stay a bounded share of
// the io thread (docs/healing.md "Pass interval and cloud size").
TEST_F(CloudHealTest, PeriodicPassesSpaceOutAsTheCloudGrows) {
    FakeInventory inventory;
    options_.inventory_urls = {{"network", inventory.url()}};
    options_.reconcile_every = 1s;
    options_.reconcile_records_per_s = 2;  // 6 networks: 3 s
    Close();
    ASSERT_NO_FATAL_FAILURE(Open());
    std::vector<std::string> nets;
    for (int i = 0; i < 6; ++i)
        nets.push_back(ActiveNetwork(admin_, "n" + std::to_string(i)));
    inventory.Serve(nets, "");
    // The reads are real HTTP: 300 ms of wall time lets a pass that is due read (a correct cloud
    // is done long before) and shows one that is not due does not.
    auto settle = [&] {
        const auto end = SteadyClock::now() + 300ms;
        while (SteadyClock::now() < end) {
            io_->restart();
            io_->run_for(5ms);
        }
    };
    clock_.Advance(1s);  // the first pass, armed when the cloud was empty: 1 s
    RunUntil([&] { return inventory.reads() == 1; });
    clock_.Advance(2s);
    settle();
    EXPECT_EQ(inventory.reads(), 1) << "6 records at 2 a second: the next pass is 3 s later";
    clock_.Advance(1s);
    RunUntil([&] { return inventory.reads() == 2; });
}

}  // namespace
}  // namespace cogs::cloud::testing
