// Who may see and change what: tokens carry a project and a role (reader < member < admin).
//
//   reader   sees its project's resources (and the shared catalog: flavors, images), changes nothing;
//   member   also creates, changes and deletes its project's resources;
//   admin    sees and changes everything, in every project; alone manages projects, tokens,
//            flavors, images, quotas and hosts.
//
// A resource a caller may not see is answered as not found (404), never as forbidden: its
// existence is not the caller's business.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/cloud/core/model.h"

namespace cogs::cloud {

enum class Role { kAdmin, kMember, kReader };
std::string_view RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

// Who is calling: the token's project and role.
struct Principal {
    std::string token_id;
    std::string project_id;
    std::string project_name;
    Role role = Role::kReader;
    bool admin() const { return role == Role::kAdmin; }
};

// Whether `who` may see `r` at all (else it is answered as not found).
bool Visible(const Principal& who, const Res& r);
// kPermissionDenied for a reader.
Status RequireWriter(const Principal& who);
// kPermissionDenied for anyone but an admin.
Status RequireAdmin(const Principal& who);
// kNotFound "<what> <id> not found".
Error NotFound(std::string_view what, const std::string& id);

}  // namespace cogs::cloud
