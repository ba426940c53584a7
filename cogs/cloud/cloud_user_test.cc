// Users (docs/api.md "Users"; the fixture: cloud_test_fixture.h, hashes at 1000 iterations): admins
// alone create, list, show and delete them; a bad field is 400 naming it with nothing written; a name
// is the cloud's once; no answer, list, audit entry or stored record holds the password or a fast
// hash of it; a create whose world changed while its password was hashed is refused then; a user's
// delete revokes the tokens minted for it; a project with users stays. Catalog::CheckPassword (what
// the OpenStack face's password method calls) on a catalog of the test's own over the same store.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/base/password.h"
#include "cogs/base/secret.h"
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/cloud/core/context.h"
#include "cogs/cloud/resources/catalog.h"

namespace cogs::cloud::testing {
namespace {

constexpr std::string_view kPassword = "correct horse battery staple";

class UserTest : public CloudTest {
protected:
    void SetUp() override {
        CloudTest::SetUp();
        project_ = NewProject("t");
    }

    static std::string Body(const std::string& name, const std::string& project,
                            const std::string& role = "member", std::string_view password = kPassword) {
        json::object o{{"name", name}, {"project_id", project}, {"role", role}, {"password", password}};
        return json::serialize(o);
    }

    Reply CreateUser(const std::string& name, const std::string& project = "",
                     const std::string& role = "member", std::string_view password = kPassword,
                     const Headers& headers = {}) {
        return Call(admin_, "POST", "/v1/users",
                    Body(name, project.empty() ? project_ : project, role, password), headers);
    }

    // A new token of `role` in project t: {id, secret}.
    std::pair<std::string, std::string> Token(const std::string& role) {
        const std::string secret = NewToken(project_, role);
        return {Call(secret, "GET", "/v1/whoami").Str("token_id"), secret};
    }

    int Whoami(const std::string& token) { return Call(token, "GET", "/v1/whoami").status; }

    // Every record in the store (each commit made first).
    std::vector<store::ResourceRecord> Stored() {
        store_->Flush();
        auto all = store_->LoadResources();
        EXPECT_TRUE(all) << all.error().ToString();
        return all ? std::move(*all) : std::vector<store::ResourceRecord>{};
    }

    // Sets body[field] = value on a stored record, through a restart (the model loads it): how a
    // token minted by the OpenStack face for a user comes to carry "user_id".
    void SetStoredField(const std::string& kind, const std::string& id, const std::string& field,
                        const std::string& value) {
        for (const auto& r : Stored()) {
            if (r.kind != kind || r.id != id) continue;
            json::object body = json::parse(r.body).as_object();
            body[field] = value;
            store::WriteGroup g;
            g.resources.push_back({r.kind, r.id, r.project, json::serialize(body), false});
            std::optional<Status> done;
            store_->Commit(std::move(g), [&done](Status st) { done = st; });
            store_->Flush();
            RunUntil([&] { return done.has_value(); });
            ASSERT_TRUE(*done);
            Close();
            Open();
            return;
        }
        ADD_FAILURE() << kind << " " << id << " is not stored";
    }

    std::string project_;
};

TEST_F(UserTest, AnAdminCreatesAUserAndNoViewShowsThePasswordOrItsHash) {
    Reply r = CreateUser("alice", "t", "reader");  // the project by its name
    ASSERT_EQ(r.status, 201) << r.raw.body;
    const std::string id = r.Field("user", "id");
    EXPECT_EQ(r.Field("user", "name"), "alice");
    EXPECT_EQ(r.Field("user", "role"), "reader");
    EXPECT_EQ(r.Field("user", "project_id"), project_);
    EXPECT_FALSE(r.Field("user", "created_at").empty());

    auto shows_nothing_secret = [](const Reply& reply) {
        EXPECT_EQ(reply.raw.body.find(kPassword), std::string::npos) << reply.raw.body;
        EXPECT_EQ(reply.raw.body.find("pbkdf2"), std::string::npos) << reply.raw.body;
        EXPECT_EQ(reply.raw.body.find("password"), std::string::npos) << reply.raw.body;
    };
    shows_nothing_secret(r);
    Reply shown = Call(admin_, "GET", "/v1/users/" + id);
    EXPECT_EQ(shown.status, 200);
    EXPECT_EQ(shown.Field("user", "name"), "alice");
    shows_nothing_secret(shown);
    Reply listed = Call(admin_, "GET", "/v1/users?name=alice");
    ASSERT_EQ(listed.Items("users").size(), 1u) << listed.raw.body;
    EXPECT_EQ(StrOf(listed.Items("users")[0], "id"), id);
    shows_nothing_secret(listed);
    EXPECT_TRUE(Call(admin_, "GET", "/v1/users?name=bob").Items("users").empty());
    shows_nothing_secret(Call(admin_, "GET", "/v1/users?project_id=" + project_));
    store_->Flush();
    shows_nothing_secret(Call(admin_, "GET", "/v1/audit"));

    // The store keeps the hash alone, made with the configured count, and it verifies.
    bool found = false;
    for (const auto& rec : Stored()) {
        EXPECT_EQ(rec.body.find(kPassword), std::string::npos) << rec.kind << " " << rec.id;
        if (rec.kind == "user" && rec.id == id) {
            found = true;
            const std::string hash = wire::Str(json::parse(rec.body).as_object(), "_password_hash");
            EXPECT_TRUE(hash.starts_with("pbkdf2-sha256$1000$")) << hash;
            EXPECT_TRUE(VerifyPassword(kPassword, hash));
        }
    }
    EXPECT_TRUE(found);

    // Through a restart.
    Close();
    Open();
    EXPECT_EQ(Call(admin_, "GET", "/v1/users/" + id).Field("user", "name"), "alice");
    EXPECT_EQ(CreateUser("alice").status, 409);
}

TEST_F(UserTest, MembersAndReadersAre403OnEveryUserRoute) {
    const std::string id = CreateUser("alice").Field("user", "id");
    ASSERT_FALSE(id.empty());
    for (const std::string role : {"member", "reader"}) {
        const std::string token = Token(role).second;
        for (const std::string& target : {id, std::string("00000000-0000-7000-8000-000000000000")}) {
            EXPECT_EQ(Call(token, "GET", "/v1/users/" + target).status, 403) << role;
            EXPECT_EQ(Call(token, "DELETE", "/v1/users/" + target).status, 403) << role;
            EXPECT_EQ(Call(token, "POST", "/v1/users/" + target + "/reset", "{}").status, 403) << role;
        }
        EXPECT_EQ(Call(token, "GET", "/v1/users").status, 403) << role;
        EXPECT_EQ(Call(token, "POST", "/v1/users", Body("mallory", project_)).status, 403) << role;
    }
    Reply all = Call(admin_, "GET", "/v1/users");
    ASSERT_EQ(all.Items("users").size(), 1u) << all.raw.body;
    EXPECT_EQ(StrOf(all.Items("users")[0], "name"), "alice");
    // An admin's unknown action: the user exists, the action does not.
    Reply action = Call(admin_, "POST", "/v1/users/" + id + "/reset", "{}");
    EXPECT_EQ(action.status, 404);
    EXPECT_NE(action.raw.body.find("no route"), std::string::npos) << action.raw.body;
}

TEST_F(UserTest, BadFieldsAre400NamingTheFieldWithNothingWritten) {
    const std::string long_name(65, 'n');
    const std::string short_pw = "1234567";
    const std::string long_pw(1025, 'p');
    struct Case {
        std::string body;
        std::string field;
    };
    const std::vector<Case> cases = {
        {R"({"project_id":")" + project_ + R"(","role":"member","password":"12345678"})", "name"},
        {Body("", project_), "name"},
        {Body(long_name, project_), "name"},
        {Body("al\x1b"
              "ice",
              project_),
         "name"},
        {Body("alice", "no-such-project"), "project_id"},
        {R"({"name":"alice","role":"member","password":"12345678"})", "project_id"},
        {Body("alice", project_, "host"), "role"},
        {Body("alice", project_, "root"), "role"},
        {Body("alice", project_, "member", short_pw), "password"},
        {Body("alice", project_, "member", long_pw), "password"},
        {R"({"name":"alice","project_id":")" + project_ + R"(","role":"member"})", "password"},
        {R"({"name":"alice","project_id":")" + project_ + R"(","role":"member","password":12345678})",
         "password"},
        {R"({"name":"alice","project_id":")" + project_ +
             R"(","role":"member","password":"12345678","email":"a@example.com"})",
         "email"},
    };
    for (const Case& c : cases) {
        Reply r = Call(admin_, "POST", "/v1/users", c.body);
        EXPECT_EQ(r.status, 400) << c.body << " -> " << r.raw.body;
        EXPECT_EQ(r.ErrorField(), c.field) << c.body << " -> " << r.raw.body;
        EXPECT_EQ(r.raw.body.find(short_pw), std::string::npos) << "the password is not echoed";
    }
    EXPECT_TRUE(Call(admin_, "GET", "/v1/users").Items("users").empty());
    for (const auto& rec : Stored()) {
        EXPECT_NE(rec.kind, "user");
    }
}

TEST_F(UserTest, ANameIsTheCloudsOnceEvenWhenTwoCreatesRace) {
    ASSERT_EQ(CreateUser("alice").status, 201);
    const std::string other = NewProject("u");
    Reply again = CreateUser("alice", other);
    EXPECT_EQ(again.status, 409) << again.raw.body;
    EXPECT_EQ(again.Str("code"), "already_exists") << again.raw.body;

    // Two creates of one name, both past the first check before either hash is done: the second to
    // finish its hash finds the name taken.
    std::vector<http::Response> answers;
    for (const std::string& project : {project_, other}) {
        handler_(Request(admin_, "POST", "/v1/users", Body("bob", project)),
                 [&answers](http::Response r) { answers.push_back(std::move(r)); });
    }
    RunUntil([&] { return answers.size() == 2; });
    std::multiset<int> statuses{answers[0].status, answers[1].status};
    EXPECT_EQ(statuses, (std::multiset<int>{201, 409})) << answers[0].body << " / " << answers[1].body;
    EXPECT_EQ(Call(admin_, "GET", "/v1/users?name=bob").Items("users").size(), 1u);
}

TEST_F(UserTest, AProjectDeletedWhileThePasswordIsHashedRefusesTheCreate) {
    const std::string doomed = NewProject("doomed");
    std::optional<http::Response> created, deleted;
    handler_(Request(admin_, "POST", "/v1/users", Body("carol", doomed)),
             [&](http::Response r) { created = std::move(r); });
    // The user is not in the model until its hash is made: the project has nothing yet.
    handler_(Request(admin_, "DELETE", "/v1/projects/" + doomed),
             [&](http::Response r) { deleted = std::move(r); });
    RunUntil([&] { return created && deleted; });
    EXPECT_EQ(deleted->status, 204) << deleted->body;
    Reply r = ReplyOf(std::move(*created));
    EXPECT_EQ(r.status, 400) << r.raw.body;
    EXPECT_EQ(r.ErrorField(), "project_id");
    EXPECT_TRUE(Call(admin_, "GET", "/v1/users").Items("users").empty());
}

TEST_F(UserTest, AnIdempotencyKeyReplaysTheCreateAndItsRecordHoldsNoPasswordOrFastHashOfIt) {
    const Headers key{{"idempotency-key", "user-1"}};
    Reply first = CreateUser("alice", "", "member", kPassword, key);
    ASSERT_EQ(first.status, 201) << first.raw.body;
    Reply replay = CreateUser("alice", "", "member", kPassword, key);
    EXPECT_EQ(replay.status, 201) << replay.raw.body;
    EXPECT_EQ(replay.Field("user", "id"), first.Field("user", "id"));
    Reply other = CreateUser("alicia", "", "member", kPassword, key);
    EXPECT_EQ(other.status, 409) << other.raw.body;
    EXPECT_EQ(other.ErrorField(), "Idempotency-Key");
    // The password is not part of the request's hash: the same create with another is the first.
    Reply another_password = CreateUser("alice", "", "member", "another password", key);
    EXPECT_EQ(another_password.status, 201) << another_password.raw.body;
    EXPECT_EQ(another_password.Field("user", "id"), first.Field("user", "id"));
    EXPECT_EQ(Call(admin_, "GET", "/v1/users").Items("users").size(), 1u);

    // Nothing stored is the password or a SHA-256 of a body that holds it.
    const std::string body = Body("alice", project_);
    const std::string fast = Sha256Hex("POST /v1/users\n" + body);
    size_t keys = 0;
    for (const auto& rec : Stored()) {
        keys += rec.kind == "idempotency" ? 1 : 0;
        EXPECT_EQ(rec.body.find(kPassword), std::string::npos) << rec.kind << " " << rec.id;
        EXPECT_EQ(rec.body.find(fast), std::string::npos) << rec.kind << " " << rec.id;
        EXPECT_EQ(rec.body.find(Sha256Hex(body)), std::string::npos) << rec.kind << " " << rec.id;
    }
    EXPECT_EQ(keys, 1u);
}

TEST_F(UserTest, DeletingAUserRevokesItsTokensInTheSameCommit) {
    const std::string user = CreateUser("alice").Field("user", "id");
    ASSERT_FALSE(user.empty());
    auto [minted, secret] = Token("member");   // as the OpenStack face mints one for alice
    auto [own, own_secret] = Token("member");  // a token of the project, no user's
    ASSERT_NO_FATAL_FAILURE(SetStoredField("token", minted, "user_id", user));
    ASSERT_EQ(Whoami(secret), 200);

    EXPECT_EQ(Call(admin_, "DELETE", "/v1/users/" + user).status, 204);
    Reply refused = Call(secret, "GET", "/v1/whoami");
    EXPECT_EQ(refused.status, 401) << refused.raw.body;
    EXPECT_EQ(Call(admin_, "GET", "/v1/tokens/" + minted).status, 404);
    EXPECT_EQ(Call(admin_, "GET", "/v1/users/" + user).status, 404);
    EXPECT_EQ(Whoami(own_secret), 200);

    // Gone from the store too.
    Close();
    Open();
    EXPECT_EQ(Whoami(secret), 401);
    EXPECT_EQ(Whoami(own_secret), 200);
    for (const auto& rec : Stored()) {
        EXPECT_NE(rec.id, minted);
        EXPECT_NE(rec.id, user);
    }
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/users/" + user).status, 404);
}

TEST_F(UserTest, AProjectWithUsersCannotBeDeleted) {
    const std::string p = NewProject("staff");
    const std::string user = CreateUser("dave", p).Field("user", "id");
    Reply refused = Call(admin_, "DELETE", "/v1/projects/" + p);
    EXPECT_EQ(refused.status, 409) << refused.raw.body;
    EXPECT_NE(refused.raw.body.find("user " + user), std::string::npos) << refused.raw.body;
    ASSERT_EQ(Call(admin_, "DELETE", "/v1/users/" + user).status, 204);
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/projects/" + p).status, 204);
}

// Catalog::CheckPassword on a catalog of the test's own: its Context shares the fixture's io thread
// and store, its model holds the store's projects and users (as Cloud::Load loads them).
class CheckPasswordTest : public UserTest {
protected:
    struct Outcome {
        bool answered = false;
        bool ok = false;
        std::string id, name;
        ErrorCode code = ErrorCode::kInternal;
        std::string message;
    };

    void LoadOwnCatalog() {
        ctx_.reset();
        ctx_ = std::make_unique<Context>(*io_, *store_, *engine_, *registry_, options_);
        for (auto& rec : Stored()) {
            if (rec.kind == kUser || rec.kind == kProject) {
                ctx_->model.Load(Res{rec.kind, rec.id, rec.project, json::parse(rec.body).as_object()});
            }
        }
        catalog_ = std::make_unique<Catalog>(*ctx_);
    }

    void TearDown() override {
        catalog_.reset();
        ctx_.reset();
        UserTest::TearDown();
    }

    // Starts a check; `out` is filled when it answers.
    void Start(const std::string& name, std::string_view password, Outcome& out) {
        catalog_->CheckPassword(name, std::string(password), [&out](Result<const Res*> r) {
            out.answered = true;
            out.ok = r.has_value();
            if (r) {
                out.id = (*r)->id;
                out.name = Str((*r)->body, "name");
            } else {
                out.code = r.error().code;
                out.message = r.error().message;
            }
        });
    }

    Outcome Check(const std::string& name, std::string_view password) {
        Outcome out;
        Start(name, password, out);
        EXPECT_FALSE(out.answered) << "never inline";
        RunUntil([&] { return out.answered; });
        return out;
    }

    std::unique_ptr<Context> ctx_;
    std::unique_ptr<Catalog> catalog_;
};

TEST_F(CheckPasswordTest, TheRightPasswordIsTheUserAndAWrongOneOrAnUnknownNameAreTheSameRefusal) {
    const std::string id = CreateUser("alice").Field("user", "id");
    ASSERT_EQ(CreateUser("bob", "", "admin", "bob's password").status, 201);
    LoadOwnCatalog();

    Outcome right = Check("alice", kPassword);
    EXPECT_TRUE(right.ok) << right.message;
    EXPECT_EQ(right.id, id);
    EXPECT_EQ(right.name, "alice");

    Outcome wrong = Check("alice", "bob's password");
    Outcome unknown = Check("mallory", kPassword);
    Outcome empty = Check("", "");
    Outcome huge = Check("alice", std::string(1 << 20, 'x'));
    for (const Outcome* o : {&wrong, &unknown, &empty, &huge}) {
        EXPECT_FALSE(o->ok);
        EXPECT_EQ(o->code, ErrorCode::kUnauthenticated);
        EXPECT_EQ(o->message, wrong.message);
    }
    EXPECT_EQ(wrong.message.find("alice"), std::string::npos) << wrong.message;
    EXPECT_TRUE(Check("bob", "bob's password").ok);
}

TEST_F(CheckPasswordTest, AUserDeletedWhileItsPasswordIsVerifiedIsRefused) {
    const std::string id = CreateUser("alice").Field("user", "id");
    LoadOwnCatalog();
    Outcome out;
    Start("alice", kPassword, out);
    ctx_->model.Erase(kUser, id);  // before the verification comes back to the io thread
    RunUntil([&] { return out.answered; });
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.code, ErrorCode::kUnauthenticated);
}

}  // namespace
}  // namespace cogs::cloud::testing
