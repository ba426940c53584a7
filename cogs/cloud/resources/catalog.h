// The catalog: what exists without a workflow, committed and answered at once — projects and their
// quotas, tokens (only the SHA-256 of a secret is kept; the secret is in the create's answer
// alone), flavors, images and server groups. Admin only, but server groups (a member's own).
#pragma once

#include <string>
#include <utility>

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class Catalog {
public:
    explicit Catalog(Context& ctx) : ctx_(ctx) {}

    // POST /v1/projects, /v1/tokens, /v1/flavors, /v1/images, /v1/server-groups.
    void CreateProject(Creation c);
    void CreateToken(Creation c);
    void CreateFlavor(Creation c);
    void CreateImage(Creation c);
    void CreateGroup(Creation c);
    // DELETE of one of those kinds (a flavor or an image also by name): 204. A project that still
    // owns anything, or a group with members, is 409.
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

private:
    json::object QuotaView(const std::string& project) const;
    Context& ctx_;
};

}  // namespace cogs::cloud
