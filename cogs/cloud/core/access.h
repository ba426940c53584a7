// Who may see and change what: tokens carry a project and a role (reader < member < admin), or
// are a host's.
//
//   reader   sees its project's resources (and the shared catalog: flavors, images), changes nothing;
//   member   also creates, changes and deletes its project's resources;
//   admin    sees and changes everything, in every project; alone manages projects, tokens,
//            flavors, images, quotas and hosts, and enrolls hosts;
//   host     a compute host's agent (docs/api.md "Hosts and their credentials"): bound to one host
//            name at enrollment; it may do what HostMay allows and nothing else — never act as a
//            tenant or an admin, never for another host.
//
// A resource a caller may not see is answered as not found (404), never as forbidden: its
// existence is not the caller's business.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/cloud/core/model.h"

namespace cogs::cloud {

enum class Role { kAdmin, kMember, kReader, kHost };
std::string_view RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

// Who is calling: the token's project and role (and, for a host token, its host).
struct Principal {
    std::string token_id;
    std::string project_id;
    std::string project_name;
    Role role = Role::kReader;
    std::string host;  // a host token's host name; "" for every other role
    bool admin() const { return role == Role::kAdmin; }
};

// The one check of what a host token may do, made by the router for every matched route (deny by
// default): `pattern` is the route's (router.h), `params` what it captured. A host token may
//   GET  /v1/whoami
//   PUT  /v1/hosts/{name}             register its own host (name == who.host)
//   POST /v1/hosts/{name}/heartbeat   renew its own host's lease, with its instance reports
//   GET  /v1/images/{id}, GET /v1/images/{id}/file
//                                     the images its agent boots (any image: the catalog is every
//                                     token's to read; docs/decisions.md, decision 33)
// and nothing else: kPermissionDenied naming what it may do; for another host's name, naming it.
// Ok for every other role (their handlers check their own rights).
Status HostMay(const Principal& who, std::string_view method, std::string_view pattern,
               const std::map<std::string, std::string>& params);

// Whether `who` may see `r` at all (else it is answered as not found).
bool Visible(const Principal& who, const Res& r);
// kPermissionDenied for a reader.
Status RequireWriter(const Principal& who);
// kPermissionDenied for anyone but an admin.
Status RequireAdmin(const Principal& who);
// An admin, or the host token of host `name`; else kPermissionDenied.
Status RequireAdminOrHost(const Principal& who, std::string_view name);
// kNotFound "<what> <id> not found".
Error NotFound(std::string_view what, const std::string& id);

}  // namespace cogs::cloud
