// The catalog: what exists without a workflow, committed and answered at once — projects and their
// quotas, tokens (only the SHA-256 of a secret is kept; the secret is in the create's answer
// alone), users (only a PBKDF2 hash of a password is kept: cogs/base/password.h), flavors, images
// server groups and key pairs. Admin only, but server groups and key pairs (a member's own).
//
// Threading: the io thread. A password is hashed and verified on the catalog's own thread (~0.3 s
// each), its outcome applied back on the io thread.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cogs/cloud/resources/common.h"

namespace boost::asio {
class thread_pool;
}

namespace cogs::cloud {

class Catalog {
public:
    explicit Catalog(Context& ctx);
    ~Catalog();

    // Password hashes and checks (~0.3 s each) waiting or running at once; beyond, the create or
    // the login is refused 429 with Retry-After: a burst of logins is bounded, never queued.
    static constexpr size_t kMaxPasswordWork = 32;

    // POST /v1/projects, /v1/tokens, /v1/flavors, /v1/images, /v1/server-groups.
    void CreateProject(Creation c);
    void CreateToken(Creation c);
    // POST /v1/users (admin; docs/api.md "Users"): {"name" (1..64 bytes, unique in the cloud: 409),
    // "project_id" (id or name), "role" (admin, member or reader), "password" (8..1024 bytes)};
    // 400 naming the field, nothing written. The password is hashed off the io thread with
    // CloudOptions::password_iterations; then the name and the project are checked again (the world
    // may have changed meanwhile) and the user is committed and answered 201 without the password
    // or its hash.
    void CreateUser(Creation c);
    void CreateFlavor(Creation c);
    void CreateImage(Creation c);
    void CreateGroup(Creation c);
    // POST /v1/keypairs (docs/api.md "Key pairs"): {"name" (1..64 of letters, digits, spaces and
    // . _ - @; unique in the project: 409), "public_key", "project_id"?}. The key is an OpenSSH
    // public key (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256|384|521), one line, at most 16 KiB;
    // else 400 naming public_key and nothing is written. Kept with its fingerprint (Nova's: the MD5
    // of the key's blob, "aa:bb:...") and type "ssh". No key is ever generated: cogs holds no private
    // key. 201.
    void CreateKeypair(Creation c);
    // DELETE of one of those kinds (a flavor or an image also by name; a key pair by name in the
    // caller's project): 204. A project that still
    // owns anything (users and tokens included), or a group with members, is 409. A user's delete
    // erases every token whose body "user_id" is the user's, in the same transaction.
    void Delete(Call call, std::string_view kind);
    // POST /v1/tokens/{id}/rotate (admin; body optional {"grace_s": N}, 0..604800, default 0): a new
    // secret, answered once (200 {"token": {..., "secret"}}; a replay of its Idempotency-Key answers
    // the token without it and mints nothing). The old secret works for grace_s more seconds, then
    // is 401; a second rotation ends the first one's grace. A token that expires is renewed by its
    // lifetime from now (an admin token without one: admin_token_ttl).
    void Rotate(Call call);
    // GET / PUT /v1/projects/{id}/quotas.
    void GetQuotas(Call call);
    void SetQuotas(Call call);

    // A project record and a token record with its secret (also for the bootstrap token). An admin
    // token without `expires_in_s` expires after CloudOptions::admin_token_ttl.
    Res NewProject(const std::string& name, const std::string& description) const;
    std::pair<Res, std::string> NewToken(const std::string& project, Role role, const std::string& name,
                                         int64_t expires_in_s) const;

    // Who a bearer token is: 401 kUnauthenticated for none, an unknown one, one expired, the old
    // secret of a rotation past its grace, one whose project is gone, a host token without a host.
    Result<Principal> Authenticate(std::string_view bearer) const;

    // A token's expiry ("_expires_ms", and "expires_at" shown).
    static void SetExpiry(Res& token, int64_t at_ms);

    // Revokes every token whose body `field` is `value` — an indexed field (kIndexedFields): "host"
    // (a host's enrollment), "user_id" (a user's logins) —, in memory and in the index of token
    // hashes, with their erasures added to `writes` for the caller's transaction. Their ids.
    std::vector<std::string> RevokeTokens(std::string_view field, const std::string& value,
                                          std::vector<store::ResourceWrite>& writes);

    // The user named `name` if `password` is its password; kUnauthenticated otherwise (the same
    // message whether the name or the password is wrong). Asynchronous, as verification is slow:
    // the user is looked up here, the password verified off the io thread, then the user is looked
    // up again by id (it may have been deleted, or its password changed, meanwhile) and `done` is
    // called on the io thread, never inline. An unknown name costs the same time (a verification
    // against UnmatchablePasswordHash), so the time taken does not tell which names exist. The
    // Res* is the model's, valid in `done` only (core/model.h "Frozen records": keep its id).
    // kResourceExhausted (429) while kMaxPasswordWork hashes and checks are in flight.
    void CheckPassword(std::string name, std::string password, std::function<void(Result<const Res*>)> done);

private:
    json::object QuotaView(const std::string& project) const;
    // The rules of a user's create that depend on the model: its project (the Res, by id or name)
    // and its name's uniqueness.
    Result<const Res*> UserProject(const std::string& project) const;
    Status UserNameFree(const std::string& name) const;
    // Runs `work` on the catalog's own hashing thread (never the io thread, nor the read pool that
    // event and workflow reads share), then `then` on the io thread while the catalog lives; or
    // answers false at once when kMaxPasswordWork are in flight.
    bool Hashing(std::function<void()> work, std::function<void()> then);

    Context& ctx_;
    std::unique_ptr<boost::asio::thread_pool> hashing_;
    std::shared_ptr<void> life_ = std::make_shared<int>(0);
    size_t hashing_inflight_ = 0;
};

}  // namespace cogs::cloud
