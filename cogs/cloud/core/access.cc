#include "cogs/cloud/core/access.h"

namespace cogs::cloud {

std::string_view RoleName(Role r) {
    switch (r) {
        case Role::kAdmin: return "admin";
        case Role::kMember: return "member";
        case Role::kReader: return "reader";
    }
    return "reader";
}

std::optional<Role> ParseRole(std::string_view s) {
    if (s == "admin") return Role::kAdmin;
    if (s == "member") return Role::kMember;
    if (s == "reader") return Role::kReader;
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
