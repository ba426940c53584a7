// What the OpenStack face's service files share (face.h): calls of /v1 as the caller, answers in
// the OpenStack shapes, the routes of each service. Internal to cogs/cloud/openstack.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cogs/cloud/core/context.h"
#include "cogs/cloud/openstack/face.h"
#include "cogs/cloud/openstack/views.h"
#include "cogs/cloud/resources/catalog.h"

namespace cogs::cloud {

using Query = std::map<std::string, std::string>;

struct OpenStackFace::Impl : std::enable_shared_from_this<Impl> {
    Impl(Context& c, const Router& r, Catalog& cat) : ctx(c), v1(r), catalog(cat) {}

    // ---- calls of /v1 ----

    // `method path` of /v1 as `outer`'s caller (its Principal, trace, peer), with `body` (JSON text
    // or "", or a spooled `body_file`: an image upload) and `query`; `done` gets /v1's answer,
    // later, on the io thread (never if the face is gone).
    void V1(const Call& outer, std::string method, std::string path, std::string body, Query query,
            std::function<void(http::Response)> done, std::shared_ptr<const http::BodyFile> body_file = {});
    // Every page of GET /v1/<collection> with `query` (at most `max` records); `done` gets them, or
    // /v1's error answer.
    void V1All(const Call& outer, std::string collection, Query query, size_t max,
               std::function<void(Result<json::array>, http::Response error)> done);
    // Polls GET /v1/<collection>/<id> every kNeutronPoll until the record leaves its transitional
    // status (done(view)) or, with `gone`, until it is 404 (done(empty)); at kNeutronWait, done
    // with what it is then.
    void WaitSettled(const Call& outer, std::string collection, std::string id, bool gone,
                     std::function<void(json::object view)> done);

    // ---- answers ----

    // "http(s)://<Host>" of the call: the base of the URLs the face writes.
    std::string Base(const Call& c) const;
    // The object /v1 answered (its body parsed).
    static json::object Body(const http::Response& r);
    // A 501 for what cogs does not implement (reshaped by the service's face like every error).
    static http::Response NotImplemented(const std::string& what);
    // A 406 for a microversion the service does not implement (`refusal` names the header).
    static http::Response NotAcceptable(const Error& refusal);
    // A network's name for a server's addresses ("" if unknown).
    std::string NetworkName(const std::string& id) const;

    Context& ctx;
    const Router& v1;
    Catalog& catalog;
};

// Each service's routes (their patterns begin with the service's prefix).
void AddIdentityRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes);
void AddComputeRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes);
void AddNetworkRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes);
void AddStorageRoutes(OpenStackFace::Impl& os, std::vector<Route>& routes);  // block storage, image

// The most records a list of the face answers without a `limit` (Neutron's, Cinder's and Glance's
// clients send none and expect everything: a project's records, bounded by its quotas).
inline constexpr size_t kListAll = 10'000;
// A list's `limit` query parameter (1..1000; 400 naming it otherwise), or kListAll without one.
Result<size_t> ListLimit(const Query& query);

// /v1's error answer with the field it names ("size_gb: ...", details.field) renamed as the
// OpenStack request wrote it ("volume.size"): `names` maps /v1's field to the request's; a field
// with an index or a sub-field ("allocation_pools[0].start") keeps it. Other answers pass as they are.
using FieldNames = std::initializer_list<std::pair<std::string_view, std::string_view>>;
http::Response RenameField(http::Response answer, FieldNames names);

// An answer without a body (a 202 of an action, a 204 of a delete).
http::Response NoBody(int status);

// Whether the face answers `method path` without a token (version documents, the login).
bool AnonymousRoute(std::string_view method, std::string_view path);

// The request body's object `key` ({"server": {...}}), or a 400 naming it.
Result<json::object> Envelope(const std::string& body, std::string_view key);
// A 400 naming `field` unless each key of `o` is in `known` (dotted under `prefix`).
Status OnlyKnown(const json::object& o, std::initializer_list<std::string_view> known,
                 std::string_view prefix);
// A 400 naming `prefix.key` for each key of `o` in `unsupported` whose value is set (not null,
// false, "" or empty): what cogs does not do is refused, never ignored.
Status NotSet(const json::object& o, std::initializer_list<std::string_view> unsupported,
              std::string_view prefix);

}  // namespace cogs::cloud
