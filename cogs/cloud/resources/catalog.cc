#include "cogs/cloud/resources/catalog.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "cogs/base/password.h"
#include "cogs/base/secret.h"
#include "cogs/cloud/resources/idempotency.h"
#include "cogs/wire/base64.h"

namespace cogs::cloud {

using wire::Input;
using wire::Text;

Catalog::Catalog(Context& ctx) : ctx_(ctx), hashing_(std::make_unique<boost::asio::thread_pool>(1)) {}

Catalog::~Catalog() {
    life_.reset();  // what the hashing thread finishes now is dropped
    hashing_->join();
}

bool Catalog::Hashing(std::function<void()> work, std::function<void()> then) {
    if (hashing_inflight_ >= kMaxPasswordWork) return false;
    ++hashing_inflight_;
    boost::asio::post(*hashing_, [this, &io = ctx_.io, life = std::weak_ptr<void>(life_),
                                  work = std::move(work), then = std::move(then)]() mutable {
        work();
        boost::asio::post(io, [this, life, then = std::move(then)]() mutable {
            if (!life.lock()) return;
            --hashing_inflight_;
            then();
        });
    });
    return true;
}

namespace {
Error PasswordWorkFull() {
    return Error(ErrorCode::kResourceExhausted, "too many password checks in flight (" +
                                                    std::to_string(Catalog::kMaxPasswordWork) + "): retry");
}
}  // namespace

namespace {

// A user's password, in bytes (docs/api.md "Users").
constexpr size_t kMinPasswordBytes = 8;
constexpr size_t kMaxPasswordBytes = 1024;

}  // namespace

Res Catalog::NewProject(const std::string& name, const std::string& description) const {
    Res p = ctx_.NewRes(kProject, "");
    p.project = p.id;  // a project owns itself (listing by project finds it)
    p.body["name"] = name;
    p.body["description"] = description;
    return p;
}

std::pair<Res, std::string> Catalog::NewToken(const std::string& project, Role role, const std::string& name,
                                              int64_t expires_in_s) const {
    Res t = ctx_.NewRes(kToken, project);
    std::string secret = "cogs_" + RandomHex(24);
    t.body["role"] = RoleName(role);
    t.body["name"] = name;
    t.body["_hash"] = Sha256Hex(secret);
    if (expires_in_s <= 0 && role == Role::kAdmin) {
        expires_in_s = std::chrono::duration_cast<std::chrono::seconds>(ctx_.options.admin_token_ttl).count();
    }
    if (expires_in_s > 0) {
        t.body["_ttl_s"] = expires_in_s;  // a rotation renews the expiry by as much
        SetExpiry(t, ctx_.clock.WallMs() + expires_in_s * 1000);
    }
    return {std::move(t), std::move(secret)};
}

void Catalog::SetExpiry(Res& token, int64_t at_ms) {
    token.body["_expires_ms"] = at_ms;
    token.body["expires_at"] = Rfc3339(at_ms);
}

void Catalog::Rotate(Call call) {
    const std::string id = call.Param("id");
    struct Rotated {
        Res* token;
        std::string secret;
    };
    auto rotated = [&]() -> Result<Rotated> {
        COGS_TRY(RequireAdmin(call.who));
        Res* t = ctx_.model.Find(kToken, id);
        if (t == nullptr) return MakeError(NotFound(kToken, id));
        int64_t grace_s = 0;
        if (!call.body.empty()) {
            COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(call.body, {"grace_s"}));
            COGS_ASSIGN_OR_RETURN(auto grace, in.OptionalInt("grace_s", 0, 7 * 24 * 3600));
            grace_s = grace.value_or(0);
        }
        const int64_t now = ctx_.clock.WallMs();
        // A second rotation ends the first one's grace: at most one old secret works.
        if (const std::string old = Str(t->body, "_old_hash"); !old.empty()) {
            ctx_.model.token_by_hash.erase(old);
            t->body.erase("_old_hash");
            t->body.erase("_old_expires_ms");
        }
        const std::string old_hash = Str(t->body, "_hash");
        if (grace_s > 0) {
            t->body["_old_hash"] = old_hash;
            t->body["_old_expires_ms"] = now + grace_s * 1000;
        } else {
            ctx_.model.token_by_hash.erase(old_hash);
        }
        std::string secret = "cogs_" + RandomHex(24);
        t->body["_hash"] = Sha256Hex(secret);
        ctx_.model.token_by_hash[Str(t->body, "_hash")] = t->id;
        // A token that expires lives as long again from now (an admin token without a lifetime of
        // its own, made before admin tokens expired: admin_token_ttl).
        int64_t ttl_s = Int(t->body, "_ttl_s");
        if (ttl_s <= 0 && Str(t->body, "role") == RoleName(Role::kAdmin)) {
            ttl_s = std::chrono::duration_cast<std::chrono::seconds>(ctx_.options.admin_token_ttl).count();
        }
        if (ttl_s > 0) {
            SetExpiry(*t, now + ttl_s * 1000);
        }
        t->body["rotated_at"] = Rfc3339(now);
        ctx_.Touch(*t);
        return Rotated{t, std::move(secret)};
    }();
    if (!rotated) return call.Fail(rotated.error());
    const Res& token = *rotated->token;
    json::object view = Present(token);
    view["secret"] = rotated->secret;  // in this answer only
    std::vector<store::ResourceWrite> writes{Model::Write(token)};
    // A replay shows the token without a secret, and mints none.
    Remember(ctx_, call, Presented(200, token), writes);
    ctx_.Persist(std::move(writes), {}, [respond = call.respond, view = std::move(view)](Status st) mutable {
        respond(st ? wire::Wrapped(200, "token", std::move(view)) : wire::ApiError(st.error()));
    });
}

void Catalog::CreateProject(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_TRY(RequireAdmin(c.who()));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "description"}));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto desc,
                              in.OptionalString("description", Text{.max_len = 1024, .allow_empty = true}));
        if (ctx_.model.FindByName(kProject, name) != nullptr) {
            return MakeError(ErrorCode::kAlreadyExists, "a project named " + name + " exists");
        }
        return NewProject(name, desc.value_or(""));
    }();
    if (!made) return c.call.Fail(made.error());
    SaveAndAnswer(ctx_, c, {std::move(*made)}, 201);
}

void Catalog::CreateToken(Creation c) {
    struct Made {
        Res token;
        std::string secret;
    };
    auto made = [&]() -> Result<Made> {
        COGS_TRY(RequireAdmin(c.who()));
        COGS_ASSIGN_OR_RETURN(auto in,
                              Input::Parse(c.call.body, {"project_id", "role", "name", "expires_in_s"}));
        COGS_ASSIGN_OR_RETURN(auto project, in.String("project_id"));
        const Res* p = ctx_.model.Find(kProject, project);
        if (p == nullptr) p = ctx_.model.FindByName(kProject, project);
        if (p == nullptr) return MakeError(FieldError("project_id", "no project " + project));
        COGS_ASSIGN_OR_RETURN(auto role_name, in.String("role"));
        auto role = ParseRole(role_name);
        // A host's token comes from its enrollment alone (bound to its name; hosts.h).
        if (!role || *role == Role::kHost) {
            return MakeError(FieldError("role",
                                        "must be admin, member or reader (a host's token comes from "
                                        "POST /v1/hosts/{name}/enroll)"));
        }
        COGS_ASSIGN_OR_RETURN(auto name, in.OptionalString("name"));
        COGS_ASSIGN_OR_RETURN(auto ttl, in.OptionalInt("expires_in_s", 1, 10LL * 365 * 24 * 3600));
        auto [token, secret] = NewToken(p->id, *role, name.value_or(""), ttl.value_or(0));
        return Made{std::move(token), std::move(secret)};
    }();
    if (!made) return c.call.Fail(made.error());
    Res& token = made->token;
    ctx_.model.token_by_hash[Str(token.body, "_hash")] = token.id;
    // The secret is in this answer only.
    json::object view = Present(token);
    view["secret"] = made->secret;
    std::vector<store::ResourceWrite> writes{Model::Write(token)};
    // A replay cannot show the secret again: it is not stored.
    Remember(ctx_, c.call, Presented(201, token), writes);
    ctx_.model.Put(std::move(token));
    ctx_.Persist(std::move(writes), {},
                 [respond = c.call.respond, view = std::move(view)](Status st) mutable {
                     respond(st ? wire::Wrapped(201, "token", std::move(view)) : wire::ApiError(st.error()));
                 });
}

Result<const Res*> Catalog::UserProject(const std::string& project) const {
    const Res* p = ctx_.model.Find(kProject, project);
    if (p == nullptr) p = ctx_.model.FindByName(kProject, project);
    if (p == nullptr) return MakeError(FieldError("project_id", "no project " + project));
    return p;
}

Status Catalog::UserNameFree(const std::string& name) const {
    if (ctx_.model.FindByName(kUser, name) != nullptr) {
        return MakeError(ErrorCode::kAlreadyExists, "a user named " + name + " exists");
    }
    return Ok();
}

void Catalog::CreateUser(Creation c) {
    struct Asked {
        std::string project, name, role, password;
    };
    auto asked = [&]() -> Result<Asked> {
        COGS_TRY(RequireAdmin(c.who()));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "project_id", "role", "password"}));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto project, in.String("project_id"));
        COGS_ASSIGN_OR_RETURN(const Res* p, UserProject(project));
        COGS_ASSIGN_OR_RETURN(auto role_name, in.String("role"));
        auto role = ParseRole(role_name);
        if (!role || *role == Role::kHost) {
            return MakeError(FieldError("role", "must be admin, member or reader"));
        }
        // Errors name the field and the rule, never the value.
        COGS_ASSIGN_OR_RETURN(auto password, in.String("password", Text{.max_len = kMaxPasswordBytes}));
        if (password.size() < kMinPasswordBytes) {
            return MakeError(
                FieldError("password", "shorter than " + std::to_string(kMinPasswordBytes) + " bytes"));
        }
        COGS_TRY(UserNameFree(name));
        return Asked{p->id, std::move(name), std::string(RoleName(*role)), std::move(password)};
    }();
    if (!asked) return c.call.Fail(asked.error());
    std::string password = std::exchange(asked->password, {});
    // ~0.3 s of hashing: off the io thread, which serves every other request meanwhile.
    auto hash = std::make_shared<std::string>();
    const bool started = Hashing(
        [hash, password = std::move(password), iterations = ctx_.options.password_iterations] {
            *hash = HashPassword(password, iterations);
        },
        [this, c, hash, asked = std::move(*asked)] {
            auto made = [&]() -> Result<Res> {
                // Again: meanwhile the project may have gone, or another create taken the name.
                COGS_ASSIGN_OR_RETURN(const Res* p, UserProject(asked.project));
                COGS_TRY(UserNameFree(asked.name));
                Res u = ctx_.NewRes(kUser, p->id);
                u.body["name"] = asked.name;
                u.body["role"] = asked.role;
                u.body["_password_hash"] = std::move(*hash);
                return u;
            }();
            if (!made) return c.call.Fail(made.error());
            // The answer and the Idempotency-Key's record of it are the presented view: no hash.
            SaveAndAnswer(ctx_, c, {std::move(*made)}, 201);
        });
    if (!started) c.call.Fail(PasswordWorkFull());
}

void Catalog::CheckPassword(std::string name, std::string password,
                            std::function<void(Result<const Res*>)> done) {
    // An unknown name (or a password no user can have) is verified against a hash that matches
    // nothing, at the same cost: the time taken does not tell which names exist.
    std::string id;
    std::string stored = UnmatchablePasswordHash(ctx_.options.password_iterations);
    if (const Res* u = ctx_.model.FindByName(kUser, name);
        u != nullptr && password.size() <= kMaxPasswordBytes) {
        id = u->id;
        stored = Str(u->body, "_password_hash");
    }
    auto verified = std::make_shared<bool>(false);
    auto refused = done;  // kept for a refusal: `done` moves into the hashing callback
    const bool started = Hashing(
        [verified, password = std::move(password), stored] { *verified = VerifyPassword(password, stored); },
        [this, id = std::move(id), stored, verified, done = std::move(done)] {
            // Found again by id: deleted meanwhile, or its password changed, is a refusal.
            const Res* u = *verified && !id.empty() ? ctx_.model.Find(kUser, id) : nullptr;
            if (u == nullptr || Str(u->body, "_password_hash") != stored) {
                return done(MakeError(ErrorCode::kUnauthenticated, "invalid user name or password"));
            }
            done(u);
        });
    if (!started) {
        // Later, on the io thread, as the contract says.
        ctx_.Post([refused = std::move(refused)] { refused(MakeError(PasswordWorkFull())); });
    }
}

std::vector<std::string> Catalog::RevokeTokens(std::string_view field, const std::string& value,
                                               std::vector<store::ResourceWrite>& writes) {
    std::vector<std::string> revoked;
    for (const Res* t : ctx_.model.Having(kToken, field, value)) {
        revoked.push_back(t->id);
    }
    for (const std::string& id : revoked) {
        if (const Res* t = ctx_.model.Find(kToken, id)) {
            ctx_.model.token_by_hash.erase(Str(t->body, "_hash"));
            ctx_.model.token_by_hash.erase(Str(t->body, "_old_hash"));
        }
        ctx_.model.Erase(kToken, id);
        writes.push_back(Model::EraseWrite(kToken, id));
    }
    return revoked;
}

void Catalog::CreateFlavor(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_TRY(RequireAdmin(c.who()));
        COGS_ASSIGN_OR_RETURN(auto in,
                              Input::Parse(c.call.body, {"name", "vcpus", "ram_mb", "disk_gb", "traits"}));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto vcpus, in.Int("vcpus", 1, 1024));
        COGS_ASSIGN_OR_RETURN(auto ram, in.Int("ram_mb", 1, 16 * 1024 * 1024));
        COGS_ASSIGN_OR_RETURN(auto disk, in.Int("disk_gb", 0, 1024 * 1024));
        COGS_ASSIGN_OR_RETURN(auto traits, in.StringList("traits"));
        if (ctx_.model.FindByName(kFlavor, name) != nullptr) {
            return MakeError(ErrorCode::kAlreadyExists, "a flavor named " + name + " exists");
        }
        Res f = ctx_.NewRes(kFlavor, "");
        f.body["name"] = name;
        f.body["vcpus"] = vcpus;
        f.body["ram_mb"] = ram;
        f.body["disk_gb"] = disk;
        f.body["traits"] = ToArray(traits);
        return f;
    }();
    if (!made) return c.call.Fail(made.error());
    SaveAndAnswer(ctx_, c, {std::move(*made)}, 201);
}

void Catalog::CreateImage(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_TRY(RequireAdmin(c.who()));
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "os", "min_disk_gb"}));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto os, in.OptionalString("os", Text{.max_len = 64, .allow_empty = true}));
        COGS_ASSIGN_OR_RETURN(auto min_disk, in.OptionalInt("min_disk_gb", 0, 1024 * 1024));
        if (ctx_.model.FindByName(kImage, name) != nullptr) {
            return MakeError(ErrorCode::kAlreadyExists, "an image named " + name + " exists");
        }
        Res i = ctx_.NewRes(kImage, "");
        i.body["name"] = name;
        i.body["os"] = os.value_or("linux");
        i.body["min_disk_gb"] = min_disk.value_or(0);
        i.body["status"] = "queued";  // no content yet (images.h)
        return i;
    }();
    if (!made) return c.call.Fail(made.error());
    SaveAndAnswer(ctx_, c, {std::move(*made)}, 201);
}

void Catalog::CreateGroup(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "policy", "project_id"}));
        COGS_ASSIGN_OR_RETURN(auto project, OwnerOf(ctx_, c.who(), in));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_ASSIGN_OR_RETURN(auto policy, in.String("policy"));
        if (policy != "affinity" && policy != "anti-affinity") {
            return MakeError(FieldError("policy", "must be affinity or anti-affinity"));
        }
        COGS_TRY(ctx_.model.Reserve(project, Amount{.server_groups = 1}));
        Res g = ctx_.NewRes(kGroup, project);
        g.body["name"] = name;
        g.body["policy"] = policy;
        g.body["_quota"] = true;
        return g;
    }();
    if (!made) return c.call.Fail(made.error());
    SaveAndAnswer(ctx_, c, {std::move(*made)}, 201);
}

namespace {

// An OpenSSH public key, as a key pair's create takes it (docs/api.md "Key pairs").
struct SshPublicKey {
    std::string text;         // "<type> <base64>[ <comment>]", trimmed
    std::string fingerprint;  // Nova's: the MD5 of the key's blob, "aa:bb:..."
};

constexpr size_t kMaxPublicKeyBytes = 16 * 1024;
constexpr std::string_view kSshKeyTypes[] = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256",
                                             "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"};

// `public_key` of `in`: one line (the trailing newline of a .pub file is dropped), a type of
// kSshKeyTypes, then the key's blob in base64, whose first field (length-prefixed) is the same type,
// then an optional comment. Else 400 naming public_key. Nothing more of the key is checked: cogs
// only hands it to the instance.
Result<SshPublicKey> ReadSshPublicKey(const Input& in) {
    auto bad = [&in](const std::string& what) { return MakeError(in.Invalid("public_key", what)); };
    const json::value* v = in.Find("public_key");
    if (v == nullptr) return bad("required (cogs does not generate keys: give your public key)");
    if (!v->is_string()) return bad("must be a string");
    std::string_view text = v->get_string();
    if (text.size() > kMaxPublicKeyBytes) return bad("must be at most 16384 bytes");
    constexpr std::string_view kSpace = " \r\n";
    text.remove_prefix(std::min(text.size(), text.find_first_not_of(kSpace)));
    text.remove_suffix(text.size() - (text.find_last_not_of(kSpace) + 1));
    for (size_t i = 0; i < text.size(); ++i) {
        if (wire::ControlAt(text.substr(i)) != 0) {
            return bad("must be one line of an OpenSSH public key (\"ssh-ed25519 AAAA... comment\")");
        }
    }
    const size_t sp = text.find(' ');
    const std::string_view type = text.substr(0, sp);
    if (std::find(std::begin(kSshKeyTypes), std::end(kSshKeyTypes), type) == std::end(kSshKeyTypes)) {
        return bad(
            "must be an OpenSSH public key of type ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256, "
            "-nistp384 or -nistp521 (\"<type> <base64> [comment]\")");
    }
    std::string_view rest = sp == std::string_view::npos ? "" : text.substr(sp);
    rest.remove_prefix(std::min(rest.size(), rest.find_first_not_of(' ')));
    const std::string_view b64 = rest.substr(0, rest.find(' '));
    const std::optional<std::string> blob = wire::DecodeBase64(b64);
    if (!blob || blob->size() < 4 + type.size()) {
        return bad("the key after " + std::string(type) + " must be base64 (as ssh-keygen writes it)");
    }
    const auto* b = reinterpret_cast<const unsigned char*>(blob->data());
    const uint32_t len = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    if (len != type.size() || std::string_view(*blob).substr(4, len) != type) {
        return bad("the key's blob is not a " + std::string(type) + " key");
    }
    const std::string md5 = Md5Hex(*blob);
    std::string fingerprint;
    for (size_t i = 0; i < md5.size(); i += 2) {
        fingerprint += (i == 0 ? "" : ":") + md5.substr(i, 2);
    }
    return SshPublicKey{std::string(text), std::move(fingerprint)};
}

// A key pair's name: it is in URLs (/v1/keypairs/{name}, Nova's os-keypairs/{name}).
Status CheckKeypairName(const std::string& name) {
    for (char ch : name) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                        ch == '-' || ch == '_' || ch == '.' || ch == ' ' || ch == '@';
        if (!ok) {
            return MakeError(FieldError("name", "may hold letters, digits, spaces and . _ - @ only"));
        }
    }
    return Ok();
}

}  // namespace

void Catalog::CreateKeypair(Creation c) {
    auto made = [&]() -> Result<Res> {
        COGS_ASSIGN_OR_RETURN(auto in, Input::Parse(c.call.body, {"name", "public_key", "project_id"}));
        COGS_ASSIGN_OR_RETURN(auto project, OwnerOf(ctx_, c.who(), in));
        COGS_ASSIGN_OR_RETURN(auto name, in.String("name", Text{.max_len = 64}));
        COGS_TRY(CheckKeypairName(name));
        COGS_ASSIGN_OR_RETURN(auto key, ReadSshPublicKey(in));
        if (ctx_.model.FindByName(kKeypair, name, project) != nullptr) {
            return MakeError(ErrorCode::kAlreadyExists,
                             "a key pair named " + name + " exists in the project");
        }
        Res k = ctx_.NewRes(kKeypair, project);
        k.body["name"] = name;
        k.body["type"] = "ssh";
        k.body["public_key"] = key.text;
        k.body["fingerprint"] = key.fingerprint;
        return k;
    }();
    if (!made) return c.call.Fail(made.error());
    SaveAndAnswer(ctx_, c, {std::move(*made)}, 201);
}

void Catalog::Delete(Call call, std::string_view kind) {
    const std::string& id = call.Param("id");
    std::vector<store::ResourceWrite> writes;
    auto erased = [&]() -> Result<std::string> {
        COGS_TRY(RequireWriter(call.who));
        if (kind == kToken || kind == kUser) {
            COGS_TRY(RequireAdmin(call.who));  // whether it exists or not, like every admin-only route
        }
        Res* r = ctx_.model.FindByIdOrName(kind, id, call.who.project_id);
        if (r == nullptr || !Visible(call.who, *r)) {
            return MakeError(NotFound(kind, id));
        }
        if (kind != kGroup && kind != kKeypair) {  // a member's own
            COGS_TRY(RequireAdmin(call.who));
        }
        if (kind == kProject) {
            for (auto k : {kToken, kUser, kGroup, kKeypair, kNetwork, kSubnet, kPort, kVolume, kServer}) {
                if (const auto& owned = ctx_.model.OfProject(k, r->id); !owned.empty()) {
                    return MakeError(ErrorCode::kConflict, "project " + r->id + " still owns " +
                                                               std::string(k) + " " + (*owned.begin())->id);
                }
            }
        }
        if (kind == kGroup) {
            if (const auto& members = ctx_.model.Having(kServer, "server_group_id", r->id);
                !members.empty()) {
                return MakeError(ErrorCode::kConflict, "server group has member " + (*members.begin())->id);
            }
        }
        if (kind == kToken) {
            ctx_.model.token_by_hash.erase(Str(r->body, "_hash"));
            ctx_.model.token_by_hash.erase(Str(r->body, "_old_hash"));
        }
        std::string rid = r->id;
        ctx_.model.Release(r->project, Model::HeldBy(*r));
        if (kind == kUser) {
            RevokeTokens("user_id", rid, writes);  // its logins end with it, in the same transaction
        }
        ctx_.model.Erase(kind, rid);
        writes.push_back(Model::EraseWrite(kind, rid));
        return rid;
    }();
    if (!erased) return call.Fail(erased.error());
    ctx_.Persist(std::move(writes), {}, [respond = call.respond](Status st) {
        respond(st ? http::Response{204, {}, "", "application/json", false} : wire::ApiError(st.error()));
    });
}

json::object Catalog::QuotaView(const std::string& project) const {
    Amount limits = ctx_.model.Limits(project);
    Amount used = ctx_.model.Usage(project);
    json::object q;
    for (const auto& [name, field] : kQuotas) {
        q[name] = json::object{{"limit", limits.*field}, {"in_use", used.*field}};
    }
    for (const auto& [name, limit] : limits.kinds) {
        auto in_use = used.kinds.find(name);
        q[name] = json::object{{"limit", limit}, {"in_use", in_use == used.kinds.end() ? 0 : in_use->second}};
    }
    return q;
}

void Catalog::GetQuotas(Call call) {
    const std::string& id = call.Param("id");
    const Res* p = ctx_.model.Find(kProject, id);
    if (p == nullptr || !Visible(call.who, *p)) return call.Fail(NotFound("project", id));
    call.Answer(wire::Json(200, json::object{{"quotas", QuotaView(id)}}));
}

void Catalog::SetQuotas(Call call) {
    const std::string id = call.Param("id");
    auto changed = [&]() -> Result<Res*> {
        COGS_TRY(RequireAdmin(call.who));
        Res* p = ctx_.model.Find(kProject, id);
        if (p == nullptr) return MakeError(NotFound("project", id));
        // The built-in quotas and those of the kinds declared in configuration.
        std::vector<std::string_view> known;
        for (const auto& q : kQuotas)
            known.push_back(q.name);
        for (const auto& [name, limit] : ctx_.model.kind_limits())
            known.push_back(name);
        COGS_ASSIGN_OR_RETURN(auto in, Input::ParseAny(call.body));
        COGS_TRY(in.Known(std::span<const std::string_view>(known)));
        json::object quotas = wire::Obj(p->body, "quotas");
        for (std::string_view name : known) {
            COGS_ASSIGN_OR_RETURN(auto v, in.OptionalInt(name, -1, INT64_MAX / 4));
            if (v) quotas[name] = *v;
        }
        p->body["quotas"] = std::move(quotas);
        ctx_.Touch(*p);
        return p;
    }();
    if (!changed) return call.Fail(changed.error());
    ctx_.Persist({Model::Write(**changed)}, {}, [this, respond = call.respond, id](Status st) {
        respond(st ? wire::Json(200, json::object{{"quotas", QuotaView(id)}}) : wire::ApiError(st.error()));
    });
}

Result<Principal> Catalog::Authenticate(std::string_view bearer) const {
    if (bearer.empty()) {
        return MakeError(ErrorCode::kUnauthenticated, "missing token: send Authorization: Bearer <token>");
    }
    auto it = ctx_.model.token_by_hash.find(Sha256Hex(bearer));
    const Res* t = it == ctx_.model.token_by_hash.end() ? nullptr : ctx_.model.Find(kToken, it->second);
    if (t == nullptr) {
        return MakeError(ErrorCode::kUnauthenticated, "invalid token");
    }
    if (it->first != Str(t->body, "_hash") && Int(t->body, "_old_expires_ms") <= ctx_.clock.WallMs()) {
        // The secret a rotation replaced, past its grace.
        return MakeError(ErrorCode::kUnauthenticated, "token rotated: its old secret no longer works");
    }
    const int64_t expires = Int(t->body, "_expires_ms");
    if (expires != 0 && expires < ctx_.clock.WallMs()) {
        return MakeError(ErrorCode::kUnauthenticated, "token expired");
    }
    const Res* p = ctx_.model.Find(kProject, t->project);
    if (p == nullptr) {
        return MakeError(ErrorCode::kUnauthenticated, "the token's project no longer exists");
    }
    Principal who;
    who.token_id = t->id;
    who.project_id = t->project;
    who.project_name = Str(p->body, "name");
    who.role = ParseRole(Str(t->body, "role")).value_or(Role::kReader);
    if (who.role == Role::kHost) {
        who.host = Str(t->body, "host");
        if (who.host.empty()) return MakeError(ErrorCode::kUnauthenticated, "invalid token");
    }
    return who;
}

}  // namespace cogs::cloud
