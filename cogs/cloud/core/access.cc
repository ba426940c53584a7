#include "cogs/cloud/core/access.h"

namespace cogs::cloud {

namespace {
constexpr std::string_view kRoleNames[] = {"admin", "member", "reader"};  // by Role
}  // namespace

std::string_view RoleName(Role r) { return kRoleNames[static_cast<int>(r)]; }

std::optional<Role> ParseRole(std::string_view s) {
    for (int i = 0; i < 3; ++i) {
        if (kRoleNames[i] == s) return static_cast<Role>(i);
    }
    return std::nullopt;
}

bool Visible(const Principal& who, const Res& r) {
    if (who.admin() || r.kind == kFlavor || r.kind == kImage) {
        return true;
    }
    if (r.kind == kProject) {
        return r.id == who.project_id;
    }
    if (r.kind == kToken) {
        return false;
    }
    return r.project == who.project_id;
}

Status RequireWriter(const Principal& who) {
    if (who.role == Role::kReader) {
        return MakeError(ErrorCode::kPermissionDenied, "a reader token cannot change anything");
    }
    return Ok();
}

Status RequireAdmin(const Principal& who) {
    if (!who.admin()) {
        return MakeError(ErrorCode::kPermissionDenied, "only an admin may do this");
    }
    return Ok();
}

Error NotFound(std::string_view what, const std::string& id) {
    return Error(ErrorCode::kNotFound, std::string(what) + " " + id + " not found");
}

}  // namespace cogs::cloud
