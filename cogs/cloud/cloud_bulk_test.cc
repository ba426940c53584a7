// Bulk create (docs/api.md "Bulk create"): POST /v1/servers with min_count / max_count makes as
// many servers as the project's quota and workflows in flight allow between the two, each with its
// own port and server.create workflow, all committed in one transaction with the Idempotency-Key's
// record of the answer — or nothing at all.
#include <set>

#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

// The store, with the transactions of several workflow creates (a bulk request's) failing while
// `refuse` is set: the transaction is lost as when the database goes away mid-commit, nothing of it
// applied (kUnavailable, as the store reports it).
class RefusingBulkStore final : public ForwardingStore {
public:
    using ForwardingStore::ForwardingStore;
    void Commit(store::WriteGroup g, CommitCallback done) override {
        if (refuse && g.creates.size() > 1) {
            return done(MakeError(ErrorCode::kUnavailable, "the database went away mid-commit"));
        }
        ForwardingStore::Commit(std::move(g), std::move(done));
    }
    std::atomic<bool> refuse = false;
};

class BulkTest : public CloudTest {
protected:
    // A member of a new project "t" with an ACTIVE network, on three hosts (12 small servers).
    void SetUp() override {
        wrap_store_ = [this](std::unique_ptr<store::Store> s) -> std::unique_ptr<store::Store> {
            auto wrapped = std::make_unique<RefusingBulkStore>(std::move(s));
            refusing_ = wrapped.get();
            return wrapped;
        };
        CloudTest::SetUp();
        ASSERT_NO_FATAL_FAILURE(Seed(3));
        project_ = NewProject("t");
        member_ = NewToken(project_, "member");
        net_ = ActiveNetwork(member_);
    }

    // A bulk create's body: ServerBody with `counts` (",\"min_count\":5" ...) and the name "web".
    std::string Bulk(const std::string& counts) { return ServerBody(net_, counts, "web"); }

    // The records of `kind` in the store (what a restart would load).
    size_t Stored(std::string_view kind) {
        store_->Flush();
        auto all = store_->LoadResources();
        EXPECT_TRUE(all) << all.error().ToString();
        size_t n = 0;
        for (const auto& r : all ? *all : std::vector<store::ResourceRecord>{}) {
            n += r.kind == kind;
        }
        return n;
    }
    // The server.create workflows in the store.
    size_t StoredCreates() {
        store_->Flush();
        store::ListFilter f;
        f.type = "server.create";
        f.limit = 1000;
        auto list = store_->ListWorkflows(f);
        EXPECT_TRUE(list) << list.error().ToString();
        return list ? list->size() : 0;
    }

    // Nothing of a refused request: no server, port, workflow or quota.
    void ExpectNothingWritten() {
        EXPECT_EQ(Count(admin_, "servers"), 0u);
        EXPECT_EQ(Count(admin_, "ports"), 0u);
        EXPECT_EQ(Stored("server"), 0u);
        EXPECT_EQ(Stored("port"), 0u);
        EXPECT_EQ(StoredCreates(), 0u);
        EXPECT_EQ(InUse(project_, "servers"), 0);
        EXPECT_EQ(InUse(project_, "ports"), 0);
    }

    std::string project_, member_, net_;
    RefusingBulkStore* refusing_ = nullptr;
};

TEST_F(BulkTest, TenServersInOneRequestEachWithItsOwnPortAndWorkflow) {
    Reply r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":10)"));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    const std::string reservation = r.Str("reservation_id");
    EXPECT_TRUE(reservation.starts_with("r-")) << r.raw.body;
    const json::array servers = r.Items("servers");
    ASSERT_EQ(servers.size(), 10u) << r.raw.body;
    std::set<std::string> ids, workflows, ports, names;
    for (const auto& s : servers) {
        ids.insert(StrOf(s, "id"));
        workflows.insert(StrOf(s, "workflow_id"));
        names.insert(StrOf(s, "name"));
        EXPECT_EQ(StrOf(s, "status"), "BUILD");
    }
    EXPECT_EQ(ids.size(), 10u);
    EXPECT_EQ(workflows.size(), 10u) << "each server its own workflow";
    for (int i = 1; i <= 10; ++i) {
        EXPECT_TRUE(names.contains("web-" + std::to_string(i))) << "web-" << i;
    }
    // Answered once durable: every record and workflow is in the store.
    EXPECT_EQ(Stored("server"), 10u);
    EXPECT_EQ(Stored("port"), 10u);
    EXPECT_EQ(StoredCreates(), 10u);

    std::set<std::string> hosts;
    for (const auto& id : ids) {
        Reply s = WaitFor("/v1/servers/" + id, "server", "ACTIVE");
        EXPECT_EQ(s.Field("server", "reservation_id"), reservation);
        EXPECT_TRUE(workflows.contains(s.Field("server", "workflow_id")));
        ports.insert(s.Field("server", "port_id"));
        hosts.insert(s.Field("server", "host"));
        const std::string port = s.Field("server", "port_id");
        EXPECT_EQ(Call(member_, "GET", "/v1/ports/" + port).Field("port", "status"), "ACTIVE");
    }
    EXPECT_EQ(ports.size(), 10u) << "each server its own port";
    EXPECT_EQ(hosts.size(), 3u) << "spread: each placed by its own workflow";
    EXPECT_EQ(InUse(project_, "servers"), 10);
    EXPECT_EQ(InUse(project_, "ports"), 10);
    EXPECT_EQ(InUse(project_, "vcpus"), 20);

    // The reservation lists them; another reservation lists only its own.
    EXPECT_EQ(Call(member_, "GET", "/v1/servers?reservation_id=" + reservation).Items("servers").size(), 10u);
    const std::string single = ActiveServer(member_, net_);
    const std::string other = Server(single).Field("server", "reservation_id");
    EXPECT_TRUE(other.starts_with("r-") && other != reservation) << other;
    const json::array listed = Call(member_, "GET", "/v1/servers?reservation_id=" + other).Items("servers");
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(StrOf(listed[0], "id"), single);
}

// Each server is placed by its own workflow: an anti-affinity group's members of one request land
// on distinct hosts, and the one that finds no host left fails alone.
TEST_F(BulkTest, EachServerIsPlacedAloneAndFailsAlone) {
    Reply g = Call(member_, "POST", "/v1/server-groups", R"({"name":"apart","policy":"anti-affinity"})");
    ASSERT_EQ(g.status, 201) << g.raw.body;
    const std::string group = R"(,"server_group_id":")" + g.Field("server_group", "id") + "\"";
    Reply r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":4)" + group));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    ASSERT_EQ(r.Items("servers").size(), 4u);
    std::set<std::string> hosts;
    int active = 0, error = 0;
    for (const auto& s : r.Items("servers")) {
        const std::string path = "/v1/servers/" + StrOf(s, "id");
        Reply got;
        RunUntil([&] {
            got = Call(admin_, "GET", path);
            const std::string status = got.Field("server", "status");
            return status == "ACTIVE" || status == "ERROR";
        });
        if (got.Field("server", "status") == "ACTIVE") {
            ++active;
            hosts.insert(got.Field("server", "host"));
        } else {
            ++error;
            const std::string why = StrOf(got.Obj("server").at("fault"), "message");
            EXPECT_NE(why.find("anti-affinity"), std::string::npos) << why;
        }
    }
    EXPECT_EQ(active, 3);
    EXPECT_EQ(hosts.size(), 3u) << "one member per host";
    EXPECT_EQ(error, 1) << "the fourth found no host; the others stand";
}

TEST_F(BulkTest, AsManyAsTheQuotaAllowsBetweenMinAndMax) {
    ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + project_ + "/quotas", R"({"servers":7})").status, 200);
    Reply r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":5,"max_count":10)"));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    EXPECT_EQ(r.Items("servers").size(), 7u) << r.raw.body;
    EXPECT_EQ(InUse(project_, "servers"), 7);
    EXPECT_EQ(Count(member_, "servers"), 7u);
    EXPECT_EQ(StoredCreates(), 7u);

    // The quota is full: even one is refused, naming the resource.
    Reply more = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":1,"max_count":3)"));
    EXPECT_EQ(more.status, 403) << more.raw.body;
    EXPECT_EQ(more.Str("code"), "quota_exceeded");
    EXPECT_EQ(more.Obj("details").at("resource").as_string(), "servers");
    EXPECT_EQ(Count(member_, "servers"), 7u);
}

TEST_F(BulkTest, MinCountBeyondTheQuotaIsRefusedAndWritesNothing) {
    ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + project_ + "/quotas", R"({"vcpus":8})").status, 200);
    Reply r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":5,"max_count":10)"));
    EXPECT_EQ(r.status, 403) << r.raw.body;
    EXPECT_EQ(r.Str("code"), "quota_exceeded");
    const json::object& d = r.Obj("details");
    EXPECT_EQ(d.at("resource").as_string(), "vcpus");
    EXPECT_EQ(d.at("requested").as_int64(), 10) << "min_count's: 5 servers of 2 vcpus";
    ExpectNothingWritten();
}

TEST_F(BulkTest, BadCountsAre400NamingTheFieldAndWriteNothing) {
    const std::string vol = ActiveVolume(member_);
    const struct {
        std::string body, field;
    } cases[] = {
        {Bulk(R"(,"min_count":0)"), "min_count"},
        {Bulk(R"(,"max_count":0)"), "max_count"},
        {Bulk(R"(,"min_count":-3)"), "min_count"},
        {Bulk(R"(,"min_count":"two")"), "min_count"},
        {Bulk(R"(,"min_count":1.5)"), "min_count"},
        {Bulk(R"(,"min_count":5,"max_count":4)"), "max_count"},
        {Bulk(R"(,"max_count":1001)"), "max_count"},
        {Bulk(R"(,"min_count":1001)"), "min_count"},
        {Bulk(R"(,"max_count":2)" + VolumeIds({vol})), "volume_ids"},
        {ServerBody(net_, R"(,"max_count":10)", std::string(62, 'a')), "name"},
    };
    for (const auto& c : cases) {
        Reply r = Call(member_, "POST", "/v1/servers", c.body);
        EXPECT_EQ(r.status, 400) << c.body << " -> " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), c.field) << c.body << " -> " << r.raw.body;
    }
    ExpectNothingWritten();
    EXPECT_EQ(Call(member_, "GET", "/v1/volumes/" + vol).Field("volume", "status"), "available");
    // The longest name that fits (61 + "-10"); one made is named as asked.
    ASSERT_EQ(Call(admin_, "PUT", "/v1/projects/" + project_ + "/quotas", R"({"servers":1})").status, 200);
    Reply fits =
        Call(member_, "POST", "/v1/servers", ServerBody(net_, R"(,"max_count":10)", std::string(61, 'a')));
    ASSERT_EQ(fits.status, 202) << fits.raw.body;
    ASSERT_EQ(fits.Items("servers").size(), 1u);
    EXPECT_EQ(StrOf(fits.Items("servers")[0], "name"), std::string(61, 'a'));
}

TEST_F(BulkTest, AReplayWithTheSameKeyAnswersTheSameAndCreatesNothing) {
    const std::string body = Bulk(R"(,"min_count":3)");
    Reply first = Call(member_, "POST", "/v1/servers", body, {{"idempotency-key", "k-bulk"}});
    ASSERT_EQ(first.status, 202) << first.raw.body;
    ASSERT_EQ(first.Items("servers").size(), 3u);
    Reply again = Call(member_, "POST", "/v1/servers", body, {{"idempotency-key", "k-bulk"}});
    EXPECT_EQ(again.status, 202);
    EXPECT_EQ(again.raw.body, first.raw.body) << "the same servers, the same workflows";
    EXPECT_EQ(Count(member_, "servers"), 3u);
    EXPECT_EQ(StoredCreates(), 3u);
    EXPECT_EQ(InUse(project_, "servers"), 3);
    // Through a restart too: the key's record committed with the servers.
    Close();
    Open();
    again = Call(member_, "POST", "/v1/servers", body, {{"idempotency-key", "k-bulk"}});
    EXPECT_EQ(again.raw.body, first.raw.body);
    EXPECT_EQ(Count(member_, "servers"), 3u);
    EXPECT_EQ(StoredCreates(), 3u);
    // Another body with the key is 409.
    EXPECT_EQ(Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":4)"), {{"idempotency-key", "k-bulk"}})
                  .status,
              409);
}

TEST_F(BulkTest, TheWorkflowsInFlightCapCountsEveryServer) {
    Close();
    options_.max_inflight_workflows_per_project = 4;
    Open();
    // Fewer than min_count may start now: 429, nothing written.
    Reply r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":5,"max_count":8)"));
    EXPECT_EQ(r.status, 429) << r.raw.body;
    EXPECT_EQ(r.raw.Header("retry-after"), "1");
    EXPECT_EQ(r.Obj("details").at("limit").as_string(), "max_inflight_workflows_per_project");
    ExpectNothingWritten();
    // Between min and max: as many as may start.
    gates_["compute"]->Hold("create_instance");
    r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":2,"max_count":8)"));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    EXPECT_EQ(r.Items("servers").size(), 4u);
    EXPECT_EQ(Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":1)")).status, 429)
        << "the four are in flight";
    gates_["compute"]->Release();
    for (const auto& s : r.Items("servers")) {
        WaitFor("/v1/servers/" + StrOf(s, "id"), "server", "ACTIVE");
    }
}

TEST_F(BulkTest, ARestartMidBuildFinishesEveryServerOfTheRequest) {
    gates_["compute"]->Hold("create_instance");
    Reply r = Call(member_, "POST", "/v1/servers", Bulk(R"(,"min_count":6)"));
    ASSERT_EQ(r.status, 202) << r.raw.body;
    // cogsd stops with the six builds in flight; at the next start each resumes on its own.
    Close();
    Open();
    EXPECT_EQ(Count(member_, "servers"), 6u);
    for (const auto& s : r.Items("servers")) {
        WaitFor("/v1/servers/" + StrOf(s, "id"), "server", "ACTIVE");
    }
    EXPECT_EQ(InUse(project_, "servers"), 6);
}

// The request's one transaction fails: nothing of it exists (no server, port, workflow, quota or
// key), and the same request with the same key, sent again, makes all of them.
TEST_F(BulkTest, ATransactionThatFailsLeavesNothingAndTheKeyMayBeSentAgain) {
    const std::string body = Bulk(R"(,"min_count":4)");
    refusing_->refuse = true;
    Reply r = Call(member_, "POST", "/v1/servers", body, {{"idempotency-key", "k-lost"}});
    EXPECT_EQ(r.status, 503) << r.raw.body;
    ExpectNothingWritten();
    refusing_->refuse = false;
    r = Call(member_, "POST", "/v1/servers", body, {{"idempotency-key", "k-lost"}});
    ASSERT_EQ(r.status, 202) << r.raw.body;
    EXPECT_EQ(r.Items("servers").size(), 4u);
    Close();
    Open();
    EXPECT_EQ(Stored("server"), 4u);
    EXPECT_EQ(StoredCreates(), 4u);
    for (const auto& s : r.Items("servers")) {
        WaitFor("/v1/servers/" + StrOf(s, "id"), "server", "ACTIVE");
    }
}

}  // namespace
}  // namespace cogs::cloud::testing
