// Host leases at scale (docs/healing.md "Lease TTL and cluster size", docs/api.md "Hosts"): the TTL
// a renewal grants grows with the number of hosts so that renewals stay bounded, a lease is always
// the one last granted to its host, and one request renews many hosts (POST /v1/heartbeats), each
// entry checked on its own. Time is the fake clock.
#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

const std::string kHostBody = R"({"url":"http://127.0.0.1:7","vcpus":8,"ram_mb":16384,"disk_gb":100})";

class LeaseTest : public CloudTest {
protected:
    void Register(int from, int to) {
        for (int i = from; i <= to; ++i) {
            ASSERT_EQ(Call(admin_, "PUT", "/v1/hosts/h" + std::to_string(i), kHostBody).status, 200) << i;
        }
    }
    static int64_t IntOf(const json::object& o, std::string_view key) {
        const json::value* v = o.if_contains(key);
        return v != nullptr && v->is_int64() ? v->get_int64() : -1;
    }
    // The entry of `host` in a batch answer.
    static json::object EntryOf(const Reply& r, const std::string& host) {
        for (const auto& v : r.Items("hosts")) {
            if (v.is_object() && v.get_object().contains("name") &&
                v.get_object().at("name").as_string() == host) {
                return v.get_object();
            }
        }
        return {};
    }
    std::string LastRenewal(const std::string& host) {
        return Call(admin_, "GET", "/v1/hosts/" + host).Field("host", "last_renewal_at");
    }
};

TEST_F(LeaseTest, TheTtlGrowsWithTheNumberOfHostsSoRenewalsStayBounded) {
    options_.max_renewals_per_s = 10;  // 3 x hosts / 10 per second: 20 hosts need 6 s
    Close();
    Open();
    Register(1, 5);
    Reply r = Call(admin_, "POST", "/v1/hosts/h1/heartbeat", "{}");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(IntOf(r.body, "lease_ttl_ms"), 3000) << "5 hosts: 1.5 s needed, the 3 s floor holds";
    EXPECT_EQ(IntOf(r.body, "renew_interval_ms"), 1000);

    Register(6, 20);
    r = Call(admin_, "POST", "/v1/hosts/h1/heartbeat", "{}");
    EXPECT_EQ(IntOf(r.body, "lease_ttl_ms"), 6000) << r.raw.body;
    EXPECT_EQ(IntOf(r.body, "renew_interval_ms"), 2000);
    Reply reg = Call(admin_, "PUT", "/v1/hosts/h21", kHostBody);
    EXPECT_EQ(IntOf(reg.body, "lease_ttl_ms"), 6300) << "21 hosts: 6.3 s, in steps of 100 ms";

    // h1's lease is 6 s now: silent for 5 s it is still up; at 6.3 s it is suspect.
    std::vector<std::string> others;
    for (int i = 2; i <= 21; ++i)
        others.push_back("h" + std::to_string(i));
    AdvanceRenewing(5s, others);
    EXPECT_EQ(HostState("h1"), "up");
    AdvanceRenewing(1300ms, others);
    EXPECT_EQ(HostState("h1"), "suspect");
}

TEST_F(LeaseTest, OneRequestRenewsManyHostsEachEntryCheckedOnItsOwn) {
    Seed(0);
    Register(1, 3);
    clock_.Advance(2s);
    const std::string before = LastRenewal("h3");
    Reply r = Call(admin_, "POST", "/v1/heartbeats",
                   R"({"hosts":[{"name":"h1"},{"name":"h2","instances":{"ACTIVE":1}},{"name":"nope"}]})");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(IntOf(r.body, "lease_ttl_ms"), 3000);
    EXPECT_EQ(IntOf(r.body, "renew_interval_ms"), 1000);
    ASSERT_EQ(r.Items("hosts").size(), 3u);
    EXPECT_EQ(IntOf(EntryOf(r, "h1"), "lease_ttl_ms"), 3000);
    EXPECT_GT(IntOf(EntryOf(r, "h2"), "lease_epoch"), 0);
    const json::object nope = EntryOf(r, "nope");
    ASSERT_TRUE(nope.contains("error")) << r.raw.body;
    EXPECT_EQ(IntOf(nope.at("error").as_object(), "status"), 404);
    EXPECT_EQ(LastRenewal("h3"), before) << "a host not in the batch is not renewed";
    EXPECT_NE(LastRenewal("h1"), before);

    // h3 is silent, h1 and h2 renewed by batches only: h3 lapses alone (suspect at 3 s, down at 4 s).
    for (int i = 0; i < 3; ++i) {
        clock_.Advance(1s);
        ASSERT_EQ(Call(admin_, "POST", "/v1/heartbeats", R"({"hosts":[{"name":"h1"},{"name":"h2"}]})").status,
                  200);
    }
    EXPECT_EQ(HostState("h1"), "up");
    EXPECT_EQ(HostState("h2"), "up");
    EXPECT_EQ(HostState("h3"), "down");
}

TEST_F(LeaseTest, EachEntryNeedsItsOwnHostsCredential) {
    Seed(0);
    Register(1, 3);
    auto enroll = [&](const std::string& host) {
        Reply e = Call(admin_, "POST", "/v1/hosts/" + host + "/enroll");
        EXPECT_EQ(e.status, 201) << e.raw.body;
        return e.Field("enrollment", "host_token");
    };
    const std::string t1 = enroll("h1"), t2 = enroll("h2");
    const std::string member = NewToken(NewProject("t"), "member");

    // h1's token renews h1; h2 rides with its own token; h3 with none is h1's token's to renew: 403.
    Reply r = Call(t1, "POST", "/v1/heartbeats",
                   R"({"hosts":[{"name":"h1"},{"name":"h2","token":")" + t2 + R"("},{"name":"h3"},)" +
                       R"({"name":"h2","token":"not-a-token"},{"name":"h3","token":")" + t2 + R"("}]})");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    const json::array& items = r.Items("hosts");
    ASSERT_EQ(items.size(), 5u);
    EXPECT_FALSE(items[0].as_object().contains("error")) << r.raw.body;
    EXPECT_FALSE(items[1].as_object().contains("error")) << r.raw.body;
    EXPECT_EQ(IntOf(items[2].as_object().at("error").as_object(), "status"), 403);
    EXPECT_EQ(IntOf(items[3].as_object().at("error").as_object(), "status"), 401);
    EXPECT_EQ(IntOf(items[4].as_object().at("error").as_object(), "status"), 403) << "h2's token is not h3's";
    EXPECT_EQ(r.raw.body.find(t2), std::string::npos) << "no token in the answer";

    // A tenant's token is no host's: every entry refused. No token: 401 before anything.
    r = Call(member, "POST", "/v1/heartbeats", R"({"hosts":[{"name":"h1"}]})");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(IntOf(r.Items("hosts")[0].as_object().at("error").as_object(), "status"), 403);
    EXPECT_EQ(Call("", "POST", "/v1/heartbeats", R"({"hosts":[{"name":"h1"}]})").status, 401);

    // A client certificate that names h1 renews h1 only, whatever the tokens.
    http::Request req =
        Request(admin_, "POST", "/v1/heartbeats", R"({"hosts":[{"name":"h1"},{"name":"h2"}]})");
    req.peer_name = "h1";
    std::optional<http::Response> got;
    handler_(std::move(req), [&](http::Response answer) { got = std::move(answer); });
    RunUntil([&] { return got.has_value(); });
    r = ReplyOf(std::move(*got));
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_FALSE(EntryOf(r, "h1").contains("error")) << r.raw.body;
    ASSERT_TRUE(EntryOf(r, "h2").contains("error")) << r.raw.body;
    EXPECT_EQ(IntOf(EntryOf(r, "h2").at("error").as_object(), "status"), 403);
}

TEST_F(LeaseTest, AMalformedBatchIsRefusedWholeAndRenewsNothing) {
    Seed(0);
    Register(1, 2);
    clock_.Advance(1s);
    const std::string before = LastRenewal("h1");
    struct Case {
        std::string body, field;
    } cases[] = {
        {R"({"hosts":[{"name":"h1"},{"nom":"h2"}]})", "hosts[1].name"},
        {R"({"hosts":[{"name":"h1"},7]})", "hosts[1]"},
        {R"({"hosts":[{"name":"h1","token":5}]})", "hosts[0].token"},
        {R"({"hosts":[]})", "hosts"},
        {R"({"hosts":{"name":"h1"}})", "hosts"},
        {R"({"hosts":[{"name":"h1"}],"extra":1})", "extra"},
    };
    for (const Case& c : cases) {
        Reply r = Call(admin_, "POST", "/v1/heartbeats", c.body);
        EXPECT_EQ(r.status, 400) << c.body << " -> " << r.raw.body;
        EXPECT_NE(r.raw.body.find(c.field), std::string::npos) << c.body << " -> " << r.raw.body;
    }
    std::string many = R"({"hosts":[)";
    for (int i = 0; i < 1001; ++i)
        many += std::string(i ? "," : "") + R"({"name":"h1"})";
    many += "]}";
    EXPECT_EQ(Call(admin_, "POST", "/v1/heartbeats", many).status, 400) << "at most 1000 hosts a request";
    EXPECT_EQ(LastRenewal("h1"), before) << "nothing renewed by a refused batch";
}

TEST_F(LeaseTest, ABatchCarriesEachHostsReportsAndAcknowledgesThemOnceDurable) {
    Seed(2);
    const std::string member = NewToken(NewProject("t"), "member");
    const std::string net = ActiveNetwork(member);
    const std::string id = ActiveServer(member, net);
    const std::string host = Call(admin_, "GET", "/v1/servers/" + id).Field("server", "host");
    const std::string other = host == "h1" ? "h2" : "h1";
    Reply r = Call(admin_, "POST", "/v1/heartbeats",
                   R"({"hosts":[{"name":")" + other + R"(","reports":[{"seq":4,"instance":")" + id +
                       R"(","type":"crashed","at_ms":1}]},{"name":")" + host +
                       R"(","reports":[{"seq":9,"instance":")" + id + R"(","type":"crashed","at_ms":1}]}]})");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(IntOf(EntryOf(r, host), "acked_seq"), 9);
    EXPECT_EQ(IntOf(EntryOf(r, other), "acked_seq"), 4) << "taken (and ignored: not its instance)";
    size_t crashed = 0;
    for (const auto& e : Call(admin_, "GET", "/v1/servers/" + id + "/events").Items("events")) {
        crashed += e.as_object().at("type").as_string() == "crashed" ? 1 : 0;
    }
    EXPECT_EQ(crashed, 1u) << "only the report of the host that holds the server counts";
}

// Hosts that come back together are looked at together: a thousand hosts renewed by one batch (an
// agent and its hosts cut off, then back) were a thousand scans, each reading the agent's whole
// inventory and judging the whole cloud, and a cloud of 10,000 hosts collapsed under them.
TEST_F(LeaseTest, HostsThatComeBackTogetherAreScannedTogetherWithOneReadOfTheirAgent) {
    FakeInventory agent;
    agent.ServeBody(R"({"hosts":[],"instances":[]})");
    const std::string body = R"({"url":")" + agent.url() + R"(","vcpus":8,"ram_mb":16384,"disk_gb":100})";
    std::string batch;
    for (int i = 1; i <= 40; ++i) {
        const std::string name = "h" + std::to_string(i);
        ASSERT_EQ(Call(admin_, "PUT", "/v1/hosts/" + name, body).status, 200) << i;
        batch += (batch.empty() ? "" : ",") + (R"({"name":")" + name + R"("})");
    }
    // Whatever the registrations asked for is read and over (300 ms of wall time: the reads are
    // real HTTP; a correct cloud is done long before, and a wrong one would still be reading).
    auto settle = [&] {
        const auto end = SteadyClock::now() + 300ms;
        while (SteadyClock::now() < end) {
            io_->restart();
            io_->run_for(5ms);
        }
    };
    settle();
    clock_.Advance(3500ms);  // every lease lapses
    EXPECT_EQ(HostState("h1"), "suspect");
    EXPECT_EQ(HostState("h40"), "suspect");
    const int before = agent.reads();

    Reply r = Call(admin_, "POST", "/v1/heartbeats", R"({"hosts":[)" + batch + "]}");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(HostState("h1"), "up");
    EXPECT_EQ(HostState("h40"), "up");
    RunUntil([&] { return agent.reads() > before; });
    settle();
    EXPECT_EQ(agent.reads(), before + 1) << "40 hosts back at once: one scan, one read of their agent";
}

TEST_F(LeaseTest, AHostsTimesReadTheSameInEveryAnswerUntilTheWallClockReallyJumps) {
    Register(1, 1);
    const Reply first = Call(admin_, "GET", "/v1/hosts/h1");
    ASSERT_EQ(first.status, 200) << first.raw.body;
    const std::string since = first.Field("host", "state_since");
    const std::string tag = first.raw.Header("etag");
    ASSERT_FALSE(since.empty()) << first.raw.body;

    // The two clocks read a millisecond apart (what two reads of the machine's clocks do now and
    // then): the same moment is the same text, and a poll of the host is still a 304.
    clock_.StepWall(1ms);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h1").Field("host", "state_since"), since);
    EXPECT_EQ(Call(admin_, "GET", "/v1/hosts/h1", "", {{"if-none-match", tag}}).status, 304);

    // The wall clock is stepped by an hour (NTP): the moment is shown on the new wall clock.
    clock_.StepWall(1h);
    const std::string after = Call(admin_, "GET", "/v1/hosts/h1").Field("host", "state_since");
    EXPECT_NE(after, since);
    EXPECT_EQ(after.substr(0, 11), since.substr(0, 11)) << "the same day: " << since << " -> " << after;
    EXPECT_EQ(std::stoi(after.substr(11, 2)), std::stoi(since.substr(11, 2)) + 1) << since << " -> " << after;
}

}  // namespace
}  // namespace cogs::cloud::testing
