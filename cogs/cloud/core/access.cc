#include "cogs/cloud/core/access.h"

namespace cogs::cloud {

namespace {
constexpr std::string_view kRoleNames[] = {"admin", "member", "reader", "host"};  // by Role
}  // namespace

std::string_view RoleName(Role r) { return kRoleNames[static_cast<int>(r)]; }

std::optional<Role> ParseRole(std::string_view s) {
    for (int i = 0; i < 4; ++i) {
        if (kRoleNames[i] == s) return static_cast<Role>(i);
    }
    return std::nullopt;
}

bool Visible(const Principal& who, const Res& r) {
    if (who.admin() || r.kind == kFlavor || r.kind == kImage) {
        return true;
    }
    if (who.role == Role::kHost) {
        return false;  // a host sees nothing of the tenants'
    }
    if (r.kind == kProject) {
        return r.id == who.project_id;
    }
    if (r.kind == kToken || r.kind == kUser) {
        return false;  // admins' alone, even a project's own
    }
    return r.project == who.project_id;
}

Status RequireWriter(const Principal& who) {
    if (who.role == Role::kHost) {
        return MakeError(ErrorCode::kPermissionDenied, "a host token cannot change anything but its host");
    }
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

Status RequireAdminOrHost(const Principal& who, std::string_view name) {
    if (who.admin() || (who.role == Role::kHost && who.host == name)) {
        return Ok();
    }
    if (who.role == Role::kHost) {
        return MakeError(ErrorCode::kPermissionDenied, "this host token is host " + who.host +
                                                           "'s: it cannot act for host " + std::string(name));
    }
    return MakeError(ErrorCode::kPermissionDenied, "only an admin may do this");
}

Status HostMay(const Principal& who, std::string_view method, std::string_view pattern,
               const std::map<std::string, std::string>& params) {
    if (who.role != Role::kHost) {
        return Ok();
    }
    // (method, pattern, whether the route's {name} must be the token's host)
    struct Allowed {
        std::string_view method;
        std::string_view pattern;
        bool own_host;
    };
    static constexpr Allowed kAllowed[] = {
        {"GET", "/v1/whoami", false},
        {"PUT", "/v1/hosts/{name}", true},
        {"POST", "/v1/hosts/{name}/heartbeat", true},
        {"POST", "/v1/heartbeats", false},  // each entry is checked against its own host (resources/hosts.h)
        {"GET", "/v1/images/{id}", false},
        {"GET", "/v1/images/{id}/file", false},
    };
    for (const Allowed& a : kAllowed) {
        if (a.method != method || a.pattern != pattern) continue;
        if (!a.own_host) return Ok();
        auto name = params.find("name");
        return RequireAdminOrHost(who,
                                  name == params.end() ? std::string_view() : std::string_view(name->second));
    }
    return MakeError(ErrorCode::kPermissionDenied,
                     "a host token may only register and renew its own host and read images, not " +
                         std::string(method) + " " + std::string(pattern));
}

Error NotFound(std::string_view what, const std::string& id) {
    return Error(ErrorCode::kNotFound, std::string(what) + " " + id + " not found");
}

}  // namespace cogs::cloud
