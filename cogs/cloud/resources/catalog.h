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
    // GET / PUT /v1/projects/{id}/quotas.
    void GetQuotas(Call call);
    void SetQuotas(Call call);

    // A project record and a token record with its secret (also for the bootstrap token).
    Res NewProject(const std::string& name, const std::string& description) const;
    std::pair<Res, std::string> NewToken(const std::string& project, Role role, const std::string& name,
                                         int64_t expires_in_s) const;

private:
    json::object QuotaView(const std::string& project) const;
    Context& ctx_;
};

}  // namespace cogs::cloud
