// The OpenStack-compatible face of cogsd's API (docs/openstack.md), on the same port as /v1:
//
//   identity       Keystone v3     /  and  /v3          versions, password and token logins, validation
//   compute        Nova v2.1       /compute/v2.1        servers, actions, flavors, volume attachments,
//                                                       server groups, limits, availability zones
//   network        Neutron v2.0    /network/v2.0        networks, subnets, ports
//   block-storage  Cinder v3       /volume/v3/{project} volumes
//   image          Glance v2       /image/v2            images (create, upload, download, list, delete)
//
// A translation, never a second implementation: every request becomes calls of /v1's router
// (router.h) as the same Principal, so tenancy, roles, quotas, validation, Idempotency of the
// workflows and the workflows themselves are /v1's, and its answers are translated back (views.h).
// What is identity's own: a login checks a user's password (Catalog::CheckPassword) and mints an
// ordinary cogs token (hashed, expiring, revoked with its user) that the clients send as
// X-Auth-Token. The requests pass HttpApi's admission, authentication, full-disk refusal and audit
// log like /v1's (HttpApi::Face); every error takes the shape of the service it came from
// (`itemNotFound`, `NeutronError`, Keystone's `error`, ...). What is not supported is refused, 400
// or 501 naming it, never ignored.
//
// Neutron answers its creates and deletes once they are done (its clients go on at once: a subnet
// right after its network): the face waits for the workflow /v1 started to settle, up to
// `kNeutronWait`, polling the record. Nova's and Cinder's are asynchronous, as /v1's are (202).
//
// Threading: everything on the cloud's io thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cogs/cloud/api/http_api.h"
#include "cogs/cloud/api/router.h"

namespace cogs::cloud {

class Context;
class Catalog;

class OpenStackFace {
public:
    // `v1` and `catalog` must outlive the face.
    OpenStackFace(Context& ctx, const Router& v1, Catalog& catalog);
    ~OpenStackFace();

    // For HttpApi::SetFace.
    HttpApi::Face Face();

    // How long a Neutron create or delete waits for its workflow, and how often it looks.
    static constexpr std::chrono::seconds kNeutronWait{60};
    static constexpr std::chrono::milliseconds kNeutronPoll{50};
    // A token a password login mints lives this long (Keystone's default); a user keeps at most
    // kTokensPerUser unexpired ones (a login beyond revokes its oldest).
    static constexpr std::chrono::seconds kTokenTtl{3600};
    static constexpr int kTokensPerUser = 64;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace cogs::cloud
