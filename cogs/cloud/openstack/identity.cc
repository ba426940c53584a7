// Keystone v3 (face.h): version documents, POST /v3/auth/tokens with the password or the token
// method, GET/HEAD (validation) and DELETE (revocation) of /v3/auth/tokens.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/base/secret.h"
#include "cogs/base/time.h"
#include "cogs/cloud/openstack/internal.h"
#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

using wire::Int;
using wire::Obj;
using wire::Str;

namespace {

// A token that never expires is shown with this expiry (keystoneauth needs one).
constexpr std::string_view kNever = "2099-12-31T23:59:59.000000Z";

// Keystone writes microseconds: "2026-12-06T20:00:00.000000Z".
std::string KeystoneTime(int64_t wall_ms) {
    std::string t = Rfc3339(wall_ms);  // "...T20:00:00Z" or with milliseconds
    if (t.ends_with("Z")) t.pop_back();
    if (auto dot = t.find('.'); dot != std::string::npos) t.resize(dot);
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%03d000Z", static_cast<int>(((wall_ms % 1000) + 1000) % 1000));
    return t + frac;
}

Error Unauthorized(std::string message) { return Error(ErrorCode::kUnauthenticated, std::move(message)); }

// The default domain is the only one: a domain named otherwise is no domain of cogs'.
Status CheckDomain(const json::object& owner, std::string_view what) {
    const json::object d = Obj(owner, "domain");
    const std::string id = Str(d, "id");
    const std::string name = Str(d, "name");
    if ((!id.empty() && id != "default") || (!name.empty() && name != "Default")) {
        return MakeError(Unauthorized(std::string(what) + ": cogs has one domain, Default (id default)"));
    }
    return {};
}

struct Identity {
    OpenStackFace::Impl& os;

    // The token record and its principal's names, as the token body shows them.
    struct Subject {
        std::string token_id;
        std::string user_id;
        std::string user_name;
        std::string project_id;
        std::string project_name;
        std::string role;
        std::string issued_at;
        std::string expires_at;
    };

    Subject SubjectOf(const Principal& who) const {
        Subject s;
        s.token_id = who.token_id;
        s.project_id = who.project_id;
        s.project_name = who.project_name;
        s.role = std::string(RoleName(who.role));
        s.expires_at = std::string(kNever);
        if (const Res* t = os.ctx.model.Find(kToken, who.token_id)) {
            s.issued_at = KeystoneTime(ParseRfc3339(Str(t->body, "created_at")).value_or(0));
            if (const int64_t exp = Int(t->body, "_expires_ms"); exp > 0) s.expires_at = KeystoneTime(exp);
            s.user_id = Str(t->body, "user_id");
            if (const Res* u = s.user_id.empty() ? nullptr : os.ctx.model.Find(kUser, s.user_id)) {
                s.user_name = Str(u->body, "name");
            }
            if (s.user_id.empty()) {
                // A cogs token: its own identity stands for the user.
                s.user_id = t->id;
                s.user_name = Str(t->body, "name").empty() ? "token-" + t->id : Str(t->body, "name");
            }
        }
        return s;
    }

    http::Response TokenAnswer(const Call& c, int status, const Subject& s, const std::string& secret,
                               const std::string& method) const {
        const bool catalog = c.query.find("nocatalog") == c.query.end();
        http::Response r = wire::Json(
            status, openstack::KeystoneToken(os.Base(c), s.user_id, s.user_name, s.project_id, s.project_name,
                                             s.role, method, s.issued_at, s.expires_at, catalog));
        r.headers.emplace_back("x-subject-token", secret);
        return r;
    }

    // Whether `scope` ({"project": {"id"} or {"name", "domain"}}) names `project`; no scope does.
    Status CheckScope(const json::object& auth, const std::string& project_id) const {
        const json::object scope = Obj(auth, "scope");
        if (scope.empty()) return {};
        const json::object p = Obj(scope, "project");
        if (p.empty()) {
            return MakeError(
                Unauthorized("scope: cogs scopes tokens to a project only (no domain or system scope)"));
        }
        COGS_TRY(CheckDomain(p, "scope.project.domain"));
        const Res* project = os.ctx.model.Find(kProject, project_id);
        const std::string id = Str(p, "id");
        const std::string name = Str(p, "name");
        if ((!id.empty() && id != project_id) ||
            (!name.empty() && (project == nullptr || Str(project->body, "name") != name))) {
            return MakeError(Unauthorized("the user has no role on the project asked for"));
        }
        return {};
    }

    void Issue(Call c) {
        boost::system::error_code ec;
        json::value v = json::parse(c.body, ec);
        const json::object auth = v.is_object() ? Obj(v.as_object(), "auth") : json::object{};
        const json::object identity = Obj(auth, "identity");
        if (ec || identity.empty()) {
            return c.Fail(FieldError("auth.identity", "the body must be {\"auth\": {\"identity\": {...}}}"));
        }
        const std::vector<std::string> methods = wire::StrList(identity, "methods");
        if (methods.size() != 1 || (methods[0] != "password" && methods[0] != "token")) {
            return c.Fail(FieldError("auth.identity.methods", "must be [\"password\"] or [\"token\"]"));
        }
        if (methods[0] == "token") return IssueFromToken(std::move(c), auth, Obj(identity, "token"));
        const json::object user = Obj(Obj(identity, "password"), "user");
        if (auto st = CheckDomain(user, "auth.identity.password.user.domain"); !st) return c.Fail(st.error());
        std::string name = Str(user, "name");
        if (const std::string id = Str(user, "id"); !id.empty()) {
            const Res* u = os.ctx.model.Find(kUser, id);
            name = u == nullptr ? id : Str(u->body, "name");  // an unknown id fails as a wrong password
        }
        const std::string password = Str(user, "password");
        if (name.empty() || password.empty()) {
            return c.Fail(Unauthorized("the password method needs a user (name or id) and a password"));
        }
        os.catalog.CheckPassword(name, password,
                                 [this, c = std::move(c), auth](Result<const Res*> u) mutable {
                                     if (!u) return c.Fail(u.error());
                                     const Res& user = **u;
                                     if (auto st = CheckScope(auth, user.project); !st)
                                         return c.Fail(st.error());
                                     Mint(std::move(c), user);
                                 });
    }

    // A login's token: an ordinary cogs token of the user's project and role, expiring, carrying
    // the user's id (revoked with the user). The user's expired tokens go, and its oldest beyond
    // kTokensPerUser.
    void Mint(Call c, const Res& user) {
        const auto role = ParseRole(Str(user.body, "role"));
        const Res* project = os.ctx.model.Find(kProject, user.project);
        if (!role || project == nullptr) return c.Fail(Unauthorized("the user's project no longer exists"));
        const int64_t now = os.ctx.clock.WallMs();
        std::vector<std::pair<int64_t, std::string>> live;  // (expiry, id)
        std::vector<store::ResourceWrite> writes;
        for (const Res* t : os.ctx.model.Having(kToken, "user_id", user.id)) {
            if (Int(t->body, "_expires_ms") <= now) {
                writes.push_back(Model::EraseWrite(kToken, t->id));
            } else {
                live.emplace_back(Int(t->body, "_expires_ms"), t->id);
            }
        }
        std::sort(live.begin(), live.end());
        for (size_t i = 0; i + OpenStackFace::kTokensPerUser <= live.size(); ++i) {
            writes.push_back(Model::EraseWrite(kToken, live[i].second));
        }
        for (const auto& w : writes) {
            if (const Res* t = os.ctx.model.Find(kToken, w.id)) {
                os.ctx.model.token_by_hash.erase(Str(t->body, "_hash"));
                os.ctx.model.Erase(kToken, w.id);
            }
        }
        auto [token, secret] = os.catalog.NewToken(user.project, *role, "login of " + Str(user.body, "name"),
                                                   OpenStackFace::kTokenTtl.count());
        token.body["user_id"] = user.id;
        Subject s;
        s.token_id = token.id;
        s.user_id = user.id;
        s.user_name = Str(user.body, "name");
        s.project_id = user.project;
        s.project_name = Str(project->body, "name");
        s.role = std::string(RoleName(*role));
        s.issued_at = KeystoneTime(now);
        s.expires_at = KeystoneTime(Int(token.body, "_expires_ms"));
        os.ctx.model.token_by_hash[Str(token.body, "_hash")] = token.id;
        writes.push_back(Model::Write(token));
        os.ctx.model.Put(std::move(token));
        http::Response answer = TokenAnswer(c, 201, s, secret, "password");
        os.ctx.Persist(std::move(writes), {}, [c, answer = std::move(answer)](Status st) mutable {
            if (!st) return c.Fail(st.error());
            c.Answer(std::move(answer));
        });
    }

    // The token method: a cogs token, or one a login minted, answers itself (the same secret) scoped
    // to its own project.
    void IssueFromToken(Call c, const json::object& auth, const json::object& token) {
        const std::string secret = Str(token, "id");
        auto who = os.catalog.Authenticate(secret);
        if (!who) return c.Fail(Unauthorized(who.error().message));
        if (who->role == Role::kHost) return c.Fail(Unauthorized("a host's token has no project"));
        if (auto st = CheckScope(auth, who->project_id); !st) return c.Fail(st.error());
        c.Answer(TokenAnswer(c, 201, SubjectOf(*who), secret, "token"));
    }

    // GET/HEAD /v3/auth/tokens: X-Subject-Token's token, to an admin or to itself; 404 if invalid.
    void Validate(Call c) {
        const std::string secret = c.Header("x-subject-token");
        auto subject = os.catalog.Authenticate(secret);
        if (!subject || subject->role == Role::kHost) {
            return c.Fail(Error(ErrorCode::kNotFound, "the subject token is not valid"));
        }
        if (!c.who.admin() && subject->token_id != c.who.token_id) {
            return c.Fail(Error(ErrorCode::kPermissionDenied, "only an admin may validate another token"));
        }
        http::Response r = TokenAnswer(c, 200, SubjectOf(*subject), secret, "token");
        if (c.method == "HEAD") r.body.clear();
        c.Answer(std::move(r));
    }

    // DELETE /v3/auth/tokens: revokes X-Subject-Token's token (an admin any, anyone its own).
    void Revoke(Call c) {
        auto subject = os.catalog.Authenticate(c.Header("x-subject-token"));
        if (!subject || subject->role == Role::kHost) {
            return c.Fail(Error(ErrorCode::kNotFound, "the subject token is not valid"));
        }
        if (!c.who.admin() && subject->token_id != c.who.token_id) {
            return c.Fail(Error(ErrorCode::kPermissionDenied, "only an admin may revoke another token"));
        }
        const Res* t = os.ctx.model.Find(kToken, subject->token_id);
        os.ctx.model.token_by_hash.erase(Str(t->body, "_hash"));
        os.ctx.model.token_by_hash.erase(Str(t->body, "_old_hash"));
        os.ctx.model.Erase(kToken, subject->token_id);
        os.ctx.Persist({Model::EraseWrite(kToken, subject->token_id)}, {}, [c](Status st) {
            if (!st) return c.Fail(st.error());
            http::Response r;
            r.status = 204;
            c.Answer(std::move(r));
        });
    }
};

}  // namespace

void AddIdentityRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes) {
    auto identity = std::make_shared<Identity>(Identity{os});
    auto versions = [&os](Call c) { c.Answer(wire::Json(300, openstack::IdentityVersions(os.Base(c)))); };
    auto version = [&os](Call c) {
        c.Answer(wire::Json(200, json::object{{"version", openstack::IdentityVersion(os.Base(c))}}));
    };
    routes.push_back({"GET", "/", versions});
    routes.push_back({"GET", "/v3", version});
    routes.push_back({"POST", "/v3/auth/tokens", [identity](Call c) { identity->Issue(std::move(c)); }});
    routes.push_back({"GET", "/v3/auth/tokens", [identity](Call c) { identity->Validate(std::move(c)); }});
    routes.push_back({"HEAD", "/v3/auth/tokens", [identity](Call c) { identity->Validate(std::move(c)); }});
    routes.push_back({"DELETE", "/v3/auth/tokens", [identity](Call c) { identity->Revoke(std::move(c)); }});
}

}  // namespace cogs::cloud
