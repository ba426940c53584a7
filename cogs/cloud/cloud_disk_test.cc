// The control plane on a full disk (docs/api.md "A full disk"): the store on a tmpfs of a few MiB
// that the test fills with a file and frees again. Changes answer 507, reads go on, the metrics
// say why, and writing resumes by itself — the engine's lease timer (on the fake clock) probes the
// store — with the workflows in flight finishing exactly once; a start keeps a bootstrap token that
// still works, and audit entries are dropped and counted. Needs root to mount (CI runs as
// root); skipped otherwise.
#include <string>

#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/observe/metrics.h"
#include "cogs/store/store_metrics.h"
#include "test/support/small_disk.h"

namespace cogs::cloud::testing {
namespace {

class CloudDiskTest : public CloudTest {
protected:
    void SetUp() override {
        if (std::string why = disk_.Mount(8); !why.empty()) {
            GTEST_SKIP() << why;
        }
        store_options_.path = disk_ / "cogsd.db";
        store_options_.on_commit = store::CommitMetrics(&metrics_);
        store_options_.on_writable = store::WritableMetrics(&metrics_);
        engine_options_.clock = &clock_;  // the store's probe rides on the engine's lease timer
        engine_options_.lease_ttl_ms = 3000;
        CloudTest::SetUp();
    }

    // The value of the metric line that starts with `name` ("cogs_store_writable"), or "".
    std::string Metric(const std::string& name) {
        const std::string text = metrics_.Render();
        for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + 1)) {
            if (at == 0 || text[at - 1] == '\n') {
                const size_t space = text.find(' ', at);
                return text.substr(space + 1, text.find('\n', space) - space - 1);
            }
        }
        return "";
    }

    // How many times `action` was applied by the simulated service `service`.
    int Applied(const std::string& service, const std::string& action) {
        int n = 0;
        for (const auto& e : sims_.at(service)->Ledger()) {
            n += e.action == action && e.kind == services::kit::CallKind::kDo ? 1 : 0;
        }
        return n;
    }

    void ExpectNoSpace(const Reply& r) {
        EXPECT_EQ(r.status, 507) << r.raw.body;
        EXPECT_EQ(r.Str("code"), "no_space") << r.raw.body;
        EXPECT_NE(r.Str("message").find("disk is full"), std::string::npos) << r.raw.body;
    }

    cogs::testing::SmallDisk disk_;  // unmounted after TearDown closed the store
    observe::Metrics metrics_;
};

TEST_F(CloudDiskTest, ChangesAnswer507ReadsGoOnAndWritingResumesByItself) {
    Seed(1);
    const std::string net = ActiveNetwork(admin_);
    // A build in flight across the episode: its create_instance waits at the gate.
    gates_["compute"]->Hold("create_instance");
    Reply made = Call(admin_, "POST", "/v1/servers", ServerBody(net));
    ASSERT_EQ(made.status, 202) << made.raw.body;
    const std::string server = made.Field("server", "id");
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    EXPECT_EQ(Metric("cogs_store_writable"), "1");

    ASSERT_GT(disk_.Fill(), 0);
    // The first change finds the disk full as it commits; the next ones are refused up front.
    ExpectNoSpace(Call(admin_, "POST", "/v1/networks", R"({"name":"first"})"));
    ExpectNoSpace(Call(admin_, "POST", "/v1/networks", R"({"name":"second"})"));
    ExpectNoSpace(Call(admin_, "POST", "/v1/servers/" + server + "/stop"));
    ExpectNoSpace(Call(admin_, "DELETE", "/v1/networks/" + net));
    EXPECT_EQ(Count(admin_, "networks"), 1u) << "nothing half-written";
    EXPECT_EQ(Call(admin_, "GET", "/v1/networks/" + net).status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/" + server).Field("server", "status"), "BUILD");
    Reply health = Call("", "GET", "/healthz");
    EXPECT_EQ(health.status, 200);
    EXPECT_EQ(health.Str("status"), "degraded");
    EXPECT_EQ(Metric("cogs_store_writable"), "0");
    EXPECT_EQ(Metric("cogs_store_disk_full_total"), "1");
    EXPECT_NE(Metric("cogs_store_no_space_total"), "0");
    // Agents keep their leases.
    EXPECT_EQ(Call(admin_, "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200);

    // The build goes on: its instance is made, the step's result waits for space.
    gates_["compute"]->Release();
    RunUntil([&] { return Applied("compute", "create_instance") == 1; });
    Renew("h1");
    clock_.Advance(2s);  // probes: still full
    EXPECT_EQ(Call(admin_, "GET", "/v1/servers/" + server).Field("server", "status"), "BUILD");
    EXPECT_EQ(Metric("cogs_store_writable"), "0");

    disk_.Free();
    RunUntil([&] {
        Renew("h1");
        clock_.Advance(1s);
        return Metric("cogs_store_writable") == "1";
    });
    WaitFor("/v1/servers/" + server, "server", "ACTIVE");
    EXPECT_EQ(Call("", "GET", "/healthz").Str("status"), "ok");
    EXPECT_EQ(Applied("compute", "create_instance"), 1) << "each action once";
    EXPECT_EQ(Applied("network", "create_port"), 1);
    EXPECT_EQ(Applied("network", "create_network"), 1) << "the refused network was never sent";
    Reply later = Call(admin_, "POST", "/v1/networks", R"({"name":"later"})");
    EXPECT_EQ(later.status, 202) << later.raw.body;
    WaitFor("/v1/networks/" + later.Field("network", "id"), "network", "ACTIVE");
}

// cogsd restarted on a full disk: it serves reads and refuses changes instead of failing at every
// start, and becomes writable once space returns, without a restart.
TEST_F(CloudDiskTest, StartsReadOnlyOnAFullDiskAndBecomesWritable) {
    Seed(1);
    const std::string net = ActiveNetwork(admin_);
    Close();
    ASSERT_GT(disk_.Fill(), 0);
    ASSERT_NO_FATAL_FAILURE(Open());
    EXPECT_EQ(Metric("cogs_store_writable"), "0");
    EXPECT_EQ(Call(admin_, "GET", "/v1/networks/" + net).Field("network", "status"), "ACTIVE");
    EXPECT_EQ(Call("", "GET", "/healthz").Str("status"), "degraded");
    ExpectNoSpace(Call(admin_, "POST", "/v1/networks", R"({"name":"refused"})"));

    disk_.Free();
    RunUntil([&] {
        Renew("h1");
        clock_.Advance(1s);
        return Metric("cogs_store_writable") == "1";
    });
    Reply r;
    RunUntil([&] { return (r = Call(admin_, "POST", "/v1/networks", R"({"name":"after"})")).status != 507; });
    ASSERT_EQ(r.status, 202) << r.raw.body;
    WaitFor("/v1/networks/" + r.Field("network", "id"), "network", "ACTIVE");
}

// A start on a full disk keeps a bootstrap token that nears its expiry but still works (the renewal
// waits for a later start), and the audit entries of refused changes are dropped and counted.
// (A short admin TTL: every second the fake clock moves, the engine renews its lease in the store.)
class CloudDiskTtlTest : public CloudDiskTest {
protected:
    void SetUp() override {
        options_.admin_token_ttl = 60s;
        options_.metrics = &metrics_;
        CloudDiskTest::SetUp();
    }
};

TEST_F(CloudDiskTtlTest, AFullDiskKeepsTheBootstrapTokenAndDropsAuditEntries) {
    const std::string bootstrap = admin_;
    clock_.Advance(31s);  // less than half of its 60 s left
    Close();
    ASSERT_GT(disk_.Fill(), 0);
    ASSERT_NO_FATAL_FAILURE(Open());
    EXPECT_EQ(admin_, bootstrap);
    EXPECT_EQ(Call(admin_, "GET", "/v1/whoami").status, 200);
    ExpectNoSpace(Call(admin_, "POST", "/v1/networks", R"({"name":"refused"})"));
    EXPECT_EQ(Metric("cogs_audit_dropped_total{reason=\"unwritable\"}"), "1");
    disk_.Free();
}

}  // namespace
}  // namespace cogs::cloud::testing
