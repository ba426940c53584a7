// What is admitted before a handler acts, in one process (the fixture: cloud_test_fixture.h): the
// Idempotency-Key on every POST (a resent action answers the first answer and does nothing twice;
// a key reused for another request is 409; keys are per project, expire, and are bounded), who may
// cancel which workflow, and the bearer scheme.
#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

class AdmissionTest : public CloudTest {
protected:
    // A member of a new project "t" with an ACTIVE network, on hosts h1 and h2.
    void SetUp() override {
        options_.idempotency_ttl = 20s;
        options_.idempotency_prune_every = 5s;
        options_.idempotency_max_per_project = 4;
        CloudTest::SetUp();
        ASSERT_NO_FATAL_FAILURE(Seed());
        project_ = NewProject("t");
        member_ = NewToken(project_, "member");
        net_ = ActiveNetwork(member_);
    }

    Reply Keyed(const std::string& token, const std::string& target, const std::string& body,
                const std::string& key) {
        return Call(token, "POST", target, body, {{"idempotency-key", key}});
    }
    std::string Attach(const std::string& server) { return R"({"server_id":")" + server + R"("})"; }

    // The Idempotency-Key records in the store (of `project`, or all).
    size_t StoredKeys(const std::string& project = "") {
        store_->Flush();
        auto all = store_->LoadResources();
        EXPECT_TRUE(all) << all.error().ToString();
        size_t n = 0;
        for (const auto& r : all ? *all : std::vector<store::ResourceRecord>{}) {
            n += r.kind == "idempotency" && (project.empty() || r.project == project);
        }
        return n;
    }
    size_t CountOf(const std::vector<std::string>& types, std::string_view type) {
        return static_cast<size_t>(std::count(types.begin(), types.end(), type));
    }

    std::string project_, member_, net_;
};

TEST_F(AdmissionTest, AResentActionAnswersTheFirstAnswerAndDoesNothingTwice) {
    const std::string id = ActiveServer(member_, net_);
    const std::string path = "/v1/servers/" + id;
    Reply stop = Keyed(member_, path + "/stop", "{}", "k-stop");
    ASSERT_EQ(stop.status, 202) << stop.raw.body;
    WaitFor(path, "server", "SHUTOFF");
    // The answer was lost; the client sends the same request again.
    Reply again = Keyed(member_, path + "/stop", "{}", "k-stop");
    EXPECT_EQ(again.status, 202) << again.raw.body;
    EXPECT_EQ(again.raw.body, stop.raw.body) << "the first answer, the same workflow";
    EXPECT_EQ(again.Field("server", "status"), "STOPPING");

    ASSERT_EQ(Call(member_, "POST", path + "/start", "{}").status, 202);
    WaitFor(path, "server", "ACTIVE");
    Reply reboot = Keyed(member_, path + "/reboot", "{}", "k-reboot");
    ASSERT_EQ(reboot.status, 202) << reboot.raw.body;
    WaitForEvent(path, "rebooted");
    again = Keyed(member_, path + "/reboot", "{}", "k-reboot");
    EXPECT_EQ(again.status, 202) << again.raw.body;
    EXPECT_EQ(again.Field("server", "workflow_id"), reboot.Field("server", "workflow_id"));
    EXPECT_EQ(Server(id).Field("server", "status"), "ACTIVE") << "no second reboot";

    const std::string vol = ActiveVolume(member_);
    const std::string vpath = "/v1/volumes/" + vol;
    Reply attach = Keyed(member_, vpath + "/attach", Attach(id), "k-attach");
    ASSERT_EQ(attach.status, 202) << attach.raw.body;
    WaitFor(vpath, "volume", "in-use");
    again = Keyed(member_, vpath + "/attach", Attach(id), "k-attach");
    EXPECT_EQ(again.status, 202) << "not 409: " << again.raw.body;
    EXPECT_EQ(again.raw.body, attach.raw.body);
    Reply detach = Keyed(member_, vpath + "/detach", "{}", "k-detach");
    ASSERT_EQ(detach.status, 202) << detach.raw.body;
    WaitFor(vpath, "volume", "available");
    again = Keyed(member_, vpath + "/detach", "{}", "k-detach");
    EXPECT_EQ(again.status, 202) << "not 409: " << again.raw.body;
    EXPECT_EQ(again.raw.body, detach.raw.body);
    EXPECT_EQ(Call(member_, "GET", vpath).Field("volume", "status"), "available") << "no second attach";

    const auto types = EventTypes(path);
    EXPECT_EQ(CountOf(types, "stop_requested"), 1u) << Join(types);
    EXPECT_EQ(CountOf(types, "reboot_requested"), 1u) << Join(types);
    const auto vtypes = EventTypes(vpath);
    EXPECT_EQ(CountOf(vtypes, "attach_requested"), 1u) << Join(vtypes);
    EXPECT_EQ(CountOf(vtypes, "detach_requested"), 1u) << Join(vtypes);
}

TEST_F(AdmissionTest, AKeyReusedForAnotherRequestIs409AndChangesNothing) {
    const std::string id = ActiveServer(member_, net_);
    const std::string other = ActiveServer(member_, net_);
    ASSERT_EQ(Keyed(member_, "/v1/servers/" + id + "/stop", "{}", "k").status, 202);
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
    const size_t networks = Count(member_, "networks");

    const Reply reused[] = {
        Keyed(member_, "/v1/servers/" + id + "/start", "{}", "k"),     // another action
        Keyed(member_, "/v1/servers/" + other + "/stop", "{}", "k"),   // another path
        Keyed(member_, "/v1/servers/" + id + "/stop", R"({ })", "k"),  // another body
        Keyed(member_, "/v1/networks", R"({"name":"n2"})", "k"),       // a create
    };
    for (const Reply& r : reused) {
        EXPECT_EQ(r.status, 409) << r.raw.body;
        EXPECT_EQ(r.ErrorField(), "Idempotency-Key") << r.raw.body;
        EXPECT_NE(r.Str("message").find("Idempotency-Key"), std::string::npos) << r.raw.body;
    }
    EXPECT_EQ(Server(id).Field("server", "status"), "SHUTOFF");
    EXPECT_EQ(Server(other).Field("server", "status"), "ACTIVE");
    EXPECT_FALSE(Has(EventTypes("/v1/servers/" + id), "start_requested"));
    EXPECT_FALSE(Has(EventTypes("/v1/servers/" + other), "stop_requested"));
    EXPECT_EQ(Count(member_, "networks"), networks);
}

TEST_F(AdmissionTest, AResendWhileTheFirstIsBeingAnsweredIs409AndRunsOnce) {
    const std::string id = ActiveServer(member_, net_);
    std::vector<Reply> got;
    for (int i = 0; i < 2; ++i) {
        handler_(Request(member_, "POST", "/v1/servers/" + id + "/stop", "{}", {{"idempotency-key", "k"}}),
                 [&](http::Response r) { got.push_back(ReplyOf(std::move(r))); });
    }
    RunUntil([&] { return got.size() == 2; });
    std::multiset<int> statuses = {got[0].status, got[1].status};
    EXPECT_EQ(statuses, (std::multiset<int>{202, 409}));
    WaitFor("/v1/servers/" + id, "server", "SHUTOFF");
    EXPECT_EQ(CountOf(EventTypes("/v1/servers/" + id), "stop_requested"), 1u);
    EXPECT_EQ(Keyed(member_, "/v1/servers/" + id + "/stop", "{}", "k").status, 202) << "then it replays";
}

TEST_F(AdmissionTest, KeysArePerProject) {
    const std::string p2 = NewProject("t2");
    const std::string member2 = NewToken(p2, "member");
    Reply a = Keyed(member_, "/v1/volumes", R"({"name":"v","size_gb":1})", "same");
    Reply b = Keyed(member2, "/v1/volumes", R"({"name":"v","size_gb":1})", "same");
    ASSERT_EQ(a.status, 202) << a.raw.body;
    ASSERT_EQ(b.status, 202) << b.raw.body;
    EXPECT_NE(a.Field("volume", "id"), b.Field("volume", "id"));
    EXPECT_EQ(Count(member_, "volumes"), 1u);
    EXPECT_EQ(Count(member2, "volumes"), 1u);
}

TEST_F(AdmissionTest, KeysExpireAndArePrunedWhileRunning) {
    ASSERT_EQ(Keyed(member_, "/v1/volumes", R"({"name":"a","size_gb":1})", "k").status, 202);
    EXPECT_EQ(Keyed(member_, "/v1/volumes", R"({"name":"b","size_gb":1})", "k").status, 409);
    EXPECT_EQ(StoredKeys(project_), 1u);
    // Past the TTL and a pruning period: the record is gone from the store, and the key is new.
    AdvanceRenewing(options_.idempotency_ttl + options_.idempotency_prune_every, {"h1", "h2"});
    RunUntil([&] { return StoredKeys(project_) == 0; });
    Reply b = Keyed(member_, "/v1/volumes", R"({"name":"b","size_gb":1})", "k");
    EXPECT_EQ(b.status, 202) << b.raw.body;
    EXPECT_EQ(b.Field("volume", "name"), "b");
    EXPECT_EQ(StoredKeys(project_), 1u);
}

TEST_F(AdmissionTest, AProjectKeepsAtMostItsCapOfKeysForgettingTheOldest) {
    const std::string id = ActiveServer(member_, net_);
    const std::string path = "/v1/servers/" + id;
    // Stops and starts in turn, each with a new key: a project's keys beyond the cap (4) go, oldest
    // first.
    for (int i = 0; i < 7; ++i) {
        const bool stop = i % 2 == 0;
        ASSERT_EQ(Keyed(member_, path + (stop ? "/stop" : "/start"), "{}", "k" + std::to_string(i)).status,
                  202);
        WaitFor(path, "server", stop ? "SHUTOFF" : "ACTIVE");
        EXPECT_LE(StoredKeys(project_), 4u) << i;
        clock_.Advance(1ms);
    }
    // The newest is remembered (another request with it is 409); the oldest is forgotten (its key
    // is new again).
    ASSERT_EQ(Server(id).Field("server", "status"), "SHUTOFF");
    EXPECT_EQ(Keyed(member_, path + "/start", "{}", "k6").status, 409);
    EXPECT_EQ(Keyed(member_, path + "/start", "{}", "k0").status, 202);
    WaitFor(path, "server", "ACTIVE");
}

// Every project's keys add up: the cloud keeps at most its own cap (6 here), forgetting the oldest
// whichever project they are of.
TEST_F(AdmissionTest, TheCloudKeepsAtMostItsCapOfKeysForgettingTheOldestOfAnyProject) {
    Close();
    options_.idempotency_max_per_project = 100;
    options_.idempotency_max = 6;
    ASSERT_NO_FATAL_FAILURE(Open());
    const std::string member2 = NewToken(NewProject("t2"), "member");
    auto create = [&](int i) {
        return Keyed(i % 2 == 0 ? member_ : member2, "/v1/volumes",
                     R"({"name":"v)" + std::to_string(i) + R"(","size_gb":1})", "k" + std::to_string(i));
    };
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(create(i).status, 202) << i;
        EXPECT_LE(StoredKeys(), 6u) << i;
        clock_.Advance(1ms);
    }
    EXPECT_EQ(StoredKeys(), 6u) << "k4 to k9";
    // The newest of either project is remembered (the same request answers its first answer); the
    // oldest of either is forgotten (its request makes another volume).
    const size_t before = Count(member_, "volumes") + Count(member2, "volumes");
    EXPECT_EQ(create(9).status, 202);
    EXPECT_EQ(create(4).status, 202);
    EXPECT_EQ(Count(member_, "volumes") + Count(member2, "volumes"), before);
    EXPECT_EQ(create(1).status, 202);
    EXPECT_EQ(Count(member2, "volumes"), 6u) << "k1 was forgotten: a second v1";
}

TEST_F(AdmissionTest, OnlyAnAdminCancelsAnOperatorsWorkflow) {
    const std::string id = ActiveServer(member_, net_);
    const std::string host = Server(id).Field("server", "host");
    gates_["compute"]->Hold("stop_instance");
    ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/" + host + "/drain", "{}").status, 200);
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    Reply moving = Server(id);
    ASSERT_EQ(moving.Field("server", "status"), "MIGRATING") << moving.raw.body;
    const std::string wf = moving.Field("server", "workflow_id");

    Reply refused = Call(member_, "POST", "/v1/workflows/" + wf + "/cancel");
    EXPECT_EQ(refused.status, 403) << refused.raw.body;
    EXPECT_EQ(refused.Str("code"), "permission_denied");
    Reply w = Call(admin_, "GET", "/v1/workflows/" + wf);
    EXPECT_EQ(w.Obj("workflow").at("cancel_requested"), json::value(false));
    EXPECT_EQ(w.Field("workflow", "state"), "running");
    EXPECT_EQ(Call(member_, "GET", "/v1/workflows/" + wf).status, 200) << "a member still sees it";

    gates_["compute"]->Release();
    WaitFor("/v1/servers/" + id, "server", "ACTIVE");
    EXPECT_NE(Server(id).Field("server", "host"), host) << "the migration went on";

    // A member still cancels its own project's tenant workflows.
    gates_["compute"]->Hold("create_instance");
    Reply made = Call(member_, "POST", "/v1/servers", ServerBody(net_));
    ASSERT_EQ(made.status, 202) << made.raw.body;
    RunUntil([&] { return gates_["compute"]->held() == 1; });
    Reply cancel = Call(member_, "POST", "/v1/workflows/" + made.Field("server", "workflow_id") + "/cancel");
    EXPECT_EQ(cancel.status, 202) << cancel.raw.body;
    gates_["compute"]->Release();
}

TEST_F(AdmissionTest, TheBearerSchemeIsCaseInsensitive) {
    for (const std::string scheme : {"Bearer", "bearer", "BEARER", "bEaReR"}) {
        Reply r = Call("", "GET", "/v1/whoami", "", {{"authorization", scheme + " " + member_}});
        EXPECT_EQ(r.status, 200) << scheme << ": " << r.raw.body;
    }
    EXPECT_EQ(Call("", "GET", "/v1/whoami", "", {{"authorization", "Basic " + member_}}).status, 401);
    EXPECT_EQ(Call("", "GET", "/v1/whoami", "", {{"authorization", "Bearer"}}).status, 401);
}

// Priority and fairness (api/admission.h, docs/api.md "Admission: lanes and limits"): each limit
// refuses with 429 and Retry-After, writes nothing, and leaves other tokens, other projects and the
// hosts' heartbeats alone.
class FairnessTest : public CloudTest {
protected:
    void SetUp() override {
        CloudTest::SetUp();
        ASSERT_NO_FATAL_FAILURE(Seed());
        a_ = NewProject("a");
        b_ = NewProject("b");
        member_a_ = NewToken(a_, "member");
        reader_a_ = NewToken(a_, "reader");
        member_b_ = NewToken(b_, "member");
    }
    // Again on the same store with `options_` (what the limits apply to starts afresh).
    void Reopen() {
        Close();
        ASSERT_NO_FATAL_FAILURE(Open());
    }
    // Sends a request without running the io_context: it stays in flight until RunUntil.
    void Send(const std::string& token, const std::string& method, const std::string& target,
              std::optional<http::Response>* got, const std::string& body = "") {
        handler_(Request(token, method, target, body), [got](http::Response r) { *got = std::move(r); });
    }

    std::string a_, b_, member_a_, reader_a_, member_b_;
};

TEST_F(FairnessTest, ATokenOverItsRateIsRefusedWithTheBucketsRetryAfter) {
    options_.admission.rate = 2;  // one request per 500 ms
    options_.admission.burst = 3;
    ASSERT_NO_FATAL_FAILURE(Reopen());
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(Call(reader_a_, "GET", "/v1/networks").status, 200) << "request " << i << " of the burst";
    }
    Reply refused = Call(reader_a_, "GET", "/v1/networks");
    EXPECT_EQ(refused.status, 429) << refused.raw.body;
    EXPECT_EQ(refused.Str("code"), "resource_exhausted");
    EXPECT_EQ(refused.raw.Header("retry-after"), "1");
    EXPECT_EQ(refused.Obj("details").at("limit").as_string(), "rate_per_token");
    EXPECT_EQ(refused.Obj("details").at("retry_after_ms").as_int64(), 500);
    // A change refused for the rate writes nothing.
    EXPECT_EQ(Call(member_a_, "POST", "/v1/networks", R"({"name":"n1"})").status, 202);
    EXPECT_EQ(Call(member_a_, "POST", "/v1/networks", R"({"name":"n2"})").status, 202);
    EXPECT_EQ(Call(member_a_, "POST", "/v1/networks", R"({"name":"n3"})").status, 202);
    EXPECT_EQ(Call(member_a_, "POST", "/v1/networks", R"({"name":"n4"})").status, 429);
    EXPECT_EQ(Count(admin_, "networks"), 3u);
    // Another token, of the same project or another, has its own bucket; admins (admin_rate 0
    // here) are not limited.
    EXPECT_EQ(Call(member_b_, "GET", "/v1/networks").status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/networks").status, 200);
    // The bucket refills at its rate.
    clock_.Advance(499ms);
    EXPECT_EQ(Call(reader_a_, "GET", "/v1/networks").status, 429);
    clock_.Advance(1ms);
    EXPECT_EQ(Call(reader_a_, "GET", "/v1/networks").status, 200);
}

TEST_F(FairnessTest, HeartbeatsPassWhenTheTenantLaneIsFullAndAreNeverRateLimited) {
    options_.admission.max_inflight = 1;
    options_.admission.admin_rate = 1;  // the fixture's agents renew with the admin token
    options_.admission.admin_burst = 1;
    ASSERT_NO_FATAL_FAILURE(Reopen());
    // One tenant request in flight fills the tenant lane.
    std::optional<http::Response> held, heartbeat, registration, tenant;
    Send(member_b_, "GET", "/v1/servers", &held);
    Send(admin_, "POST", "/v1/hosts/h1/heartbeat", &heartbeat, "{}");
    Send(admin_, "PUT", "/v1/hosts/h2", &registration,
         R"({"url":"http://127.0.0.1:1","vcpus":8,"ram_mb":16384,"disk_gb":100})");
    Send(member_a_, "GET", "/v1/servers", &tenant);
    RunUntil([&] { return held && heartbeat && registration && tenant; });
    EXPECT_EQ(held->status, 200);
    EXPECT_EQ(heartbeat->status, 200) << heartbeat->body;
    EXPECT_EQ(registration->status, 200) << registration->body;
    const Reply refused = ReplyOf(*tenant);
    EXPECT_EQ(refused.status, 429);
    EXPECT_EQ(refused.Obj("details").at("limit").as_string(), "max_inflight");
    // The admin token's bucket (one request) is spent by one read; its heartbeats go on.
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts").status, 200);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts").status, 429);
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(Call(admin_, "POST", "/v1/hosts/h1/heartbeat", "{}").status, 200) << i;
    }
}

TEST_F(FairnessTest, AProjectHoldsAtMostItsShareOfRequestsInFlight) {
    options_.admission.max_inflight_per_project = 1;
    ASSERT_NO_FATAL_FAILURE(Reopen());
    std::optional<http::Response> first, second, other;
    Send(member_a_, "GET", "/v1/servers", &first);
    Send(reader_a_, "GET", "/v1/servers", &second);  // another token, the same project
    Send(member_b_, "GET", "/v1/servers", &other);
    RunUntil([&] { return first && second && other; });
    EXPECT_EQ(first->status, 200);
    const Reply refused = ReplyOf(*second);
    EXPECT_EQ(refused.status, 429);
    EXPECT_EQ(refused.raw.Header("retry-after"), "1");
    EXPECT_EQ(refused.Obj("details").at("limit").as_string(), "max_inflight_per_project");
    EXPECT_EQ(other->status, 200) << "another project is not affected";
    EXPECT_EQ(Call(reader_a_, "GET", "/v1/servers").status, 200) << "the place is back once answered";
}

TEST_F(FairnessTest, AProjectsWorkflowsInFlightAreCapped) {
    options_.max_inflight_workflows_per_project = 1;
    ASSERT_NO_FATAL_FAILURE(Reopen());
    gates_["network"]->Hold("create_network");
    Reply first = Call(member_a_, "POST", "/v1/networks", R"({"name":"n1"})");
    ASSERT_EQ(first.status, 202) << first.raw.body;
    Reply refused = Call(member_a_, "POST", "/v1/networks", R"({"name":"n2"})", {{"idempotency-key", "k2"}});
    EXPECT_EQ(refused.status, 429) << refused.raw.body;
    EXPECT_EQ(refused.Str("code"), "resource_exhausted");
    EXPECT_EQ(refused.raw.Header("retry-after"), "1");
    EXPECT_EQ(refused.Obj("details").at("limit").as_string(), "max_inflight_workflows_per_project");
    EXPECT_EQ(Count(admin_, "networks"), 1u) << "a refused create writes nothing";
    // Another project has its own.
    Reply other = Call(member_b_, "POST", "/v1/networks", R"({"name":"nb"})");
    EXPECT_EQ(other.status, 202) << other.raw.body;
    // An action on an existing resource is refused alike, and its status put back.
    gates_["network"]->Release();
    WaitFor("/v1/networks/" + first.Field("network", "id"), "network", "ACTIVE");
    gates_["network"]->Hold("create_network");
    Reply second = Call(member_a_, "POST", "/v1/networks", R"({"name":"n3"})");
    ASSERT_EQ(second.status, 202) << second.raw.body;
    Reply del = Call(member_a_, "DELETE", "/v1/networks/" + first.Field("network", "id"));
    EXPECT_EQ(del.status, 429) << del.raw.body;
    EXPECT_EQ(Call(admin_, "GET", "/v1/networks/" + first.Field("network", "id")).Field("network", "status"),
              "ACTIVE");
    gates_["network"]->Release();
    WaitFor("/v1/networks/" + second.Field("network", "id"), "network", "ACTIVE");
    // Once the workflows have ended the refused request goes through, its key not remembered.
    Reply again = Call(member_a_, "POST", "/v1/networks", R"({"name":"n2"})", {{"idempotency-key", "k2"}});
    EXPECT_EQ(again.status, 202) << again.raw.body;
}

}  // namespace
}  // namespace cogs::cloud::testing
