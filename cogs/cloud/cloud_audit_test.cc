// Secrets hygiene in one process (the fixture: cloud_test_fixture.h, time on its FakeClock): token
// rotation (the new secret once, the old one 401 at once or after its grace, an Idempotency-Key
// replay that neither shows nor mints a secret), admin tokens that expire by default, the bootstrap
// token renewed across restarts, and the audit log (every change, refused or not, recorded once with
// who, what and the result; admins only; retention by age and by count).
#include "cogs/cloud/cloud_test_fixture.h"

namespace cogs::cloud::testing {
namespace {

class TrustTest : public CloudTest {
protected:
    void SetUp() override {
        options_.audit_prune_every = 10s;
        CloudTest::SetUp();
        project_ = NewProject("t");
    }

    // A new token of `role` in project t: {id, secret}.
    std::pair<std::string, std::string> Token(const std::string& role, const std::string& body_extra = "") {
        Reply r = Call(admin_, "POST", "/v1/tokens",
                       R"({"project_id":")" + project_ + R"(","role":")" + role + "\"" + body_extra + "}");
        EXPECT_EQ(r.status, 201) << r.raw.body;
        return {r.Field("token", "id"), r.Field("token", "secret")};
    }

    int Whoami(const std::string& token) { return Call(token, "GET", "/v1/whoami").status; }

    // The audit log as an admin reads it (every entry committed first), newest first.
    json::array Audit(const std::string& query = "") {
        store_->Flush();
        Reply r = Call(admin_, "GET", "/v1/audit" + query);
        EXPECT_EQ(r.status, 200) << r.raw.body;
        return r.Items("audit");
    }

    std::string project_;
};

TEST_F(TrustTest, ARotatedTokensOldSecretIs401AtOnceAndTheNewOneWorks) {
    auto [id, secret] = Token("member");
    ASSERT_EQ(Whoami(secret), 200);
    Reply r = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    const std::string fresh = r.Field("token", "secret");
    EXPECT_TRUE(fresh.starts_with("cogs_")) << r.raw.body;
    EXPECT_NE(fresh, secret);
    EXPECT_EQ(r.Field("token", "id"), id);
    EXPECT_FALSE(r.Field("token", "rotated_at").empty());
    EXPECT_EQ(r.Obj("token").if_contains("_hash"), nullptr);
    Reply old = Call(secret, "GET", "/v1/whoami");
    EXPECT_EQ(old.status, 401);
    EXPECT_EQ(Whoami(fresh), 200);
    // The token's views never show a secret.
    Reply shown = Call(admin_, "GET", "/v1/tokens/" + id);
    EXPECT_EQ(shown.Obj("token").if_contains("secret"), nullptr) << shown.raw.body;

    // After a restart: the old secret is still refused, the new one still works.
    Close();
    Open();
    EXPECT_EQ(Whoami(secret), 401);
    EXPECT_EQ(Whoami(fresh), 200);
}

TEST_F(TrustTest, TheOldSecretWorksForTheGraceAndNotAfter) {
    auto [id, secret] = Token("reader");
    Reply r = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", R"({"grace_s":60})");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    const std::string fresh = r.Field("token", "secret");
    EXPECT_EQ(Whoami(secret), 200);
    EXPECT_EQ(Whoami(fresh), 200);
    clock_.Advance(59s);
    EXPECT_EQ(Whoami(secret), 200);
    // Through a restart, the grace keeps running on the same clock.
    Close();
    Open();
    EXPECT_EQ(Whoami(secret), 200);
    clock_.Advance(2s);
    Reply late = Call(secret, "GET", "/v1/whoami");
    EXPECT_EQ(late.status, 401);
    EXPECT_NE(late.raw.body.find("rotated"), std::string::npos) << late.raw.body;
    EXPECT_EQ(Whoami(fresh), 200);

    // A second rotation ends the first one's grace at once: at most one old secret works.
    Reply again = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", R"({"grace_s":60})");
    ASSERT_EQ(again.status, 200);
    Reply third = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", R"({"grace_s":60})");
    ASSERT_EQ(third.status, 200);
    EXPECT_EQ(Whoami(fresh), 401);
    EXPECT_EQ(Whoami(again.Field("token", "secret")), 200);
    EXPECT_EQ(Whoami(third.Field("token", "secret")), 200);
}

TEST_F(TrustTest, AReplayedRotationShowsNoSecretAndMintsNone) {
    auto [id, secret] = Token("member");
    const Headers key{{"idempotency-key", "rotate-1"}};
    Reply first = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", "", key);
    ASSERT_EQ(first.status, 200) << first.raw.body;
    const std::string fresh = first.Field("token", "secret");
    ASSERT_FALSE(fresh.empty());
    Reply replay = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", "", key);
    EXPECT_EQ(replay.status, 200) << replay.raw.body;
    EXPECT_EQ(replay.Field("token", "id"), id);
    EXPECT_EQ(replay.Obj("token").if_contains("secret"), nullptr) << replay.raw.body;
    // Nothing was minted: the first answer's secret still works.
    EXPECT_EQ(Whoami(fresh), 200);
    EXPECT_EQ(Whoami(secret), 401);
}

TEST_F(TrustTest, AnAdminRotatesItsOwnToken) {
    const std::string own = Call(admin_, "GET", "/v1/whoami").Str("token_id");
    ASSERT_FALSE(own.empty());
    Reply r = Call(admin_, "POST", "/v1/tokens/" + own + "/rotate");
    ASSERT_EQ(r.status, 200) << r.raw.body;
    const std::string old = admin_;
    admin_ = r.Field("token", "secret");
    EXPECT_EQ(Whoami(old), 401);
    EXPECT_EQ(Whoami(admin_), 200);
}

TEST_F(TrustTest, OnlyAnAdminRotatesAndBadRequestsChangeNothing) {
    auto [id, secret] = Token("member");
    EXPECT_EQ(Call(secret, "POST", "/v1/tokens/" + id + "/rotate").status, 403);
    EXPECT_EQ(Call(admin_, "POST", "/v1/tokens/no-such-token/rotate").status, 404);
    Reply bad = Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", R"({"grace_s":-1})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "grace_s");
    EXPECT_EQ(Call(admin_, "POST", "/v1/tokens/" + id + "/rotate", R"({"ttl":1})").status, 400);
    EXPECT_EQ(Whoami(secret), 200);  // none of them rotated it
}

TEST_F(TrustTest, AdminTokensExpireByDefaultOthersDoNot) {
    auto [admin_id, admin_secret] = Token("admin");
    auto [member_id, member_secret] = Token("member");
    auto [short_id, short_secret] = Token("admin", R"(,"expires_in_s":60)");
    const int64_t now = clock_.WallMs();
    Reply a = Call(admin_, "GET", "/v1/tokens/" + admin_id);
    EXPECT_EQ(a.Field("token", "expires_at"), Rfc3339(now + 30LL * 24 * 3600 * 1000)) << a.raw.body;
    Reply m = Call(admin_, "GET", "/v1/tokens/" + member_id);
    EXPECT_EQ(m.Obj("token").if_contains("expires_at"), nullptr) << m.raw.body;
    clock_.Advance(61s);
    Reply expired = Call(short_secret, "GET", "/v1/whoami");
    EXPECT_EQ(expired.status, 401);
    EXPECT_NE(expired.raw.body.find("token expired"), std::string::npos) << expired.raw.body;
    EXPECT_EQ(Whoami(admin_secret), 200);
    clock_.Advance(std::chrono::hours(24 * 30));
    EXPECT_EQ(Whoami(admin_secret), 401);
    EXPECT_EQ(Whoami(member_secret), 200);
}

TEST_F(TrustTest, TheBootstrapTokenIsRenewedAtAStartWhenItIsAboutToExpire) {
    const std::string first = admin_;
    // Early in its life a restart keeps it.
    clock_.Advance(std::chrono::hours(24));
    Close();
    Open();
    EXPECT_EQ(admin_, first);
    // With less than half its 30 days left, a start issues a new one (the caller rewrites the file);
    // the old one works until it expires.
    clock_.Advance(std::chrono::hours(24 * 15));
    Close();
    Open();
    ASSERT_NE(admin_, first);
    const std::string second = admin_;
    EXPECT_EQ(Whoami(first), 200);
    EXPECT_EQ(Whoami(second), 200);
    clock_.Advance(std::chrono::hours(24 * 15));
    EXPECT_EQ(Whoami(first), 401);
    EXPECT_EQ(Whoami(second), 200);
    // Long after every admin token expired (the machine was off), a start issues a new one and
    // the expired bootstrap token is gone.
    Close();
    clock_.Advance(std::chrono::hours(24 * 60));
    Open();
    ASSERT_NE(admin_, second);
    EXPECT_EQ(Whoami(second), 401);
    Reply tokens = Call(admin_, "GET", "/v1/tokens");
    int bootstrap = 0;
    for (const auto& t : tokens.Items("tokens")) {
        bootstrap += StrOf(t, "name") == "bootstrap" ? 1 : 0;
    }
    EXPECT_EQ(bootstrap, 1) << tokens.raw.body;
}

TEST_F(TrustTest, AnOperatorsRotationOfTheBootstrapTokenStands) {
    // The file holds a secret rotated away: the start leaves the new one (an operator's) alone.
    const std::string own = Call(admin_, "GET", "/v1/whoami").Str("token_id");
    Reply r = Call(admin_, "POST", "/v1/tokens/" + own + "/rotate");
    ASSERT_EQ(r.status, 200);
    const std::string rotated = r.Field("token", "secret");
    Close();
    Open();  // Bootstrap(the old secret, as the file still holds it)
    EXPECT_EQ(Whoami(rotated), 200);
    admin_ = rotated;
    Reply tokens = Call(admin_, "GET", "/v1/tokens");
    EXPECT_EQ(tokens.Items("tokens").size(), 1u) << tokens.raw.body;
}

TEST_F(TrustTest, EveryChangeRefusedOrNotIsRecordedOnceWithWhoWhatAndTheResult) {
    auto [member_id, member] = Token("member");
    auto [reader_id, reader] = Token("reader");
    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    Reply made = Call(member, "POST", "/v1/networks", R"({"name":"n1"})",
                      {{"traceparent", "00-" + trace + "-00f067aa0ba902b7-01"}});
    ASSERT_EQ(made.status, 202) << made.raw.body;
    const std::string net = made.Field("network", "id");
    // Reads are not changes.
    ASSERT_EQ(Call(member, "GET", "/v1/networks").status, 200);
    // Refused: a reader (403), a bad body (400), a wrong token (401), an unknown resource (404).
    ASSERT_EQ(Call(reader, "POST", "/v1/networks", R"({"name":"n2"})").status, 403);
    ASSERT_EQ(Call(member, "POST", "/v1/networks", R"({"name":""})").status, 400);
    ASSERT_EQ(Call("cogs_wrong", "DELETE", "/v1/networks/" + net).status, 401);
    ASSERT_EQ(Call(member, "DELETE", "/v1/volumes/no-such-volume").status, 404);
    // The client's address is carried (as cogs/http sets it).
    http::Request req = Request(member, "POST", "/v1/servers/no-such-server/stop");
    req.peer_address = "10.1.2.3";
    std::optional<http::Response> got;
    handler_(std::move(req), [&](http::Response r) { got = std::move(r); });
    RunUntil([&] { return got.has_value(); });
    ASSERT_EQ(got->status, 404);

    json::array mine = Audit("?token=" + member_id);
    ASSERT_EQ(mine.size(), 4u) << json::serialize(mine);  // newest first
    const json::value& created = mine[3];
    EXPECT_EQ(StrOf(created, "method"), "POST");
    EXPECT_EQ(StrOf(created, "path"), "/v1/networks");
    EXPECT_EQ(StrOf(created, "resource_id"), net);
    EXPECT_EQ(created.at("status").to_number<int>(), 202);
    EXPECT_EQ(StrOf(created, "token_id"), member_id);
    EXPECT_EQ(StrOf(created, "project"), project_);
    EXPECT_EQ(StrOf(created, "role"), "member");
    EXPECT_EQ(StrOf(created, "trace_id"), trace);
    EXPECT_EQ(created.at("time_ms").to_number<int64_t>(), clock_.WallMs());
    EXPECT_EQ(mine[2].at("status").to_number<int>(), 400);
    EXPECT_EQ(StrOf(mine[1], "method"), "DELETE");
    EXPECT_EQ(mine[1].at("status").to_number<int>(), 404);
    EXPECT_EQ(StrOf(mine[1], "resource_id"), "no-such-volume");
    EXPECT_EQ(StrOf(mine[0], "peer"), "10.1.2.3");
    EXPECT_EQ(StrOf(mine[0], "path"), "/v1/servers/no-such-server/stop");

    json::array refused = Audit("?token=" + reader_id);
    ASSERT_EQ(refused.size(), 1u) << json::serialize(refused);
    EXPECT_EQ(refused[0].at("status").to_number<int>(), 403);
    EXPECT_EQ(StrOf(refused[0], "role"), "reader");

    // The wrong token: recorded without a who, never with what it sent.
    json::array on_net = Audit("?resource=" + net);
    bool unauthenticated = false;
    for (const auto& e : on_net) {
        if (e.at("status").to_number<int>() == 401) {
            unauthenticated = true;
            EXPECT_EQ(StrOf(e, "token_id"), "");
            EXPECT_EQ(StrOf(e, "method"), "DELETE");
        }
    }
    EXPECT_TRUE(unauthenticated) << json::serialize(on_net);
    for (const auto& e : Audit("?limit=1000")) {
        EXPECT_EQ(json::serialize(e).find("cogs_wrong"), std::string::npos);
        EXPECT_EQ(json::serialize(e).find(member), std::string::npos);
    }
    // A clash (409), by the admin.
    ASSERT_EQ(Call(admin_, "POST", "/v1/projects", R"({"name":"t"})").status, 409);
    const std::string admin_id = Call(admin_, "GET", "/v1/whoami").Str("token_id");
    json::array clash = Audit("?token=" + admin_id + "&limit=1");
    ASSERT_EQ(clash.size(), 1u);
    EXPECT_EQ(clash[0].at("status").to_number<int>(), 409);
    EXPECT_EQ(StrOf(clash[0], "path"), "/v1/projects");
    EXPECT_EQ(StrOf(clash[0], "role"), "admin");
    EXPECT_EQ(StrOf(clash[0], "resource_id"), "");
    // By project (name or id): the member's and the reader's, not the admin's.
    EXPECT_EQ(Audit("?project=t").size(), 5u);
    EXPECT_EQ(Audit("?project=" + project_).size(), 5u);
}

TEST_F(TrustTest, TheAuditLogIsForAdminsAndPagesNewestFirst) {
    auto [member_id, member] = Token("member");
    EXPECT_EQ(Call(member, "GET", "/v1/audit").status, 403);
    EXPECT_EQ(Call(admin_, "GET", "/v1/audit?limit=0").status, 400);
    Reply bad = Call(admin_, "GET", "/v1/audit?since=yesterday");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.ErrorField(), "since");
    EXPECT_EQ(Call(admin_, "GET", "/v1/audit?colour=red").status, 400);
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(Call(member, "POST", "/v1/networks", R"({"name":"n)" + std::to_string(i) + R"("})").status,
                  202);
        clock_.Advance(1s);
    }
    store_->Flush();
    Reply page1 = Call(admin_, "GET", "/v1/audit?token=" + member_id + "&limit=3");
    ASSERT_EQ(page1.Items("audit").size(), 3u);
    const int64_t next = page1.body.at("next_before").to_number<int64_t>();
    Reply page2 =
        Call(admin_, "GET", "/v1/audit?token=" + member_id + "&limit=3&before=" + std::to_string(next));
    ASSERT_EQ(page2.Items("audit").size(), 2u);
    EXPECT_EQ(page2.body.at("next_before").to_number<int64_t>(), 0);
    EXPECT_GT(page1.Items("audit")[2].at("seq").to_number<int64_t>(),
              page2.Items("audit")[0].at("seq").to_number<int64_t>());
    // since: the last two seconds' entries only.
    const std::string since = std::to_string(clock_.WallMs() - 2000);
    EXPECT_EQ(Audit("?token=" + member_id + "&since=" + since).size(), 2u);
    EXPECT_EQ(Audit("?token=" + member_id + "&since=" + Rfc3339(clock_.WallMs() - 2000)).size(), 2u);
}

TEST_F(TrustTest, RetentionPrunesTheAuditLogByAgeThenByCount) {
    Close();
    options_.audit_retention = std::chrono::hours(1);
    options_.audit_max = 3;
    Open();
    auto [member_id, member] = Token("member");
    for (int i = 0; i < 6; ++i) {
        ASSERT_EQ(Call(member, "POST", "/v1/networks", R"({"name":"n)" + std::to_string(i) + R"("})").status,
                  202);
    }
    // Each pass prunes at its timer's moment (the FakeClock's), on the read pool, then arms the
    // next: time moves a pass at a time until the log is as retention wants it.
    auto pruned_to = [&](size_t n) {
        RunUntil([&] {
            clock_.Advance(options_.audit_prune_every);
            return Audit().size() == n;
        });
    };
    // Beyond the count: the newest three stay.
    pruned_to(3);
    json::array kept = Audit();
    EXPECT_EQ(StrOf(kept[0], "token_id"), member_id);
    // Past the age: every entry goes.
    clock_.Advance(std::chrono::hours(1));
    pruned_to(0);
}

}  // namespace
}  // namespace cogs::cloud::testing
