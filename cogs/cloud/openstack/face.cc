#include "cogs/cloud/openstack/face.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/cloud/openstack/internal.h"
#include "cogs/cloud/resources/common.h"
#include "cogs/observe/log.h"

namespace cogs::cloud {

using wire::Str;

namespace {
bool Under(std::string_view path, std::string_view prefix) {
    return path == prefix || (path.starts_with(prefix) && path[prefix.size()] == '/');
}
}  // namespace

Result<size_t> ListLimit(const Query& query) {
    auto l = query.find("limit");
    if (l == query.end()) return kListAll;
    COGS_ASSIGN_OR_RETURN(int64_t n, IntParam("limit", l->second, 1, 1000, "an integer from 1 to 1000"));
    return static_cast<size_t>(n);
}

http::Response RenameField(http::Response answer, FieldNames names) {
    if (answer.status < 400) return answer;
    json::object o = wire::ParseObject(answer.body);
    const std::string message = Str(o, "message");
    for (const auto& [from, to] : names) {
        const bool named =
            message.starts_with(from) && message.size() > from.size() &&
            (message[from.size()] == ':' || message[from.size()] == '[' || message[from.size()] == '.');
        if (!named) continue;
        o["message"] = std::string(to) + message.substr(from.size());
        if (auto* details = o.if_contains("details"); details != nullptr && details->is_object()) {
            const std::string field = Str(details->as_object(), "field");
            if (field.starts_with(from))
                details->as_object()["field"] = std::string(to) + field.substr(from.size());
        }
        answer.body = json::serialize(o);
        break;
    }
    return answer;
}

http::Response NoBody(int status) {
    http::Response r;
    r.status = status;
    return r;
}

bool AnonymousRoute(std::string_view method, std::string_view path) {
    if (method == "POST") return path == "/v3/auth/tokens";
    if (method != "GET" && method != "HEAD") return false;
    // The version documents: the roots of the services and of their versions.
    for (std::string_view root : {"/", "/v3", "/compute", "/compute/v2.1", "/network", "/network/v2.0",
                                  "/volume", "/volume/v3", "/image", "/image/v2"}) {
        if (path == root ||
            (path.size() == root.size() + 1 && path.starts_with(root) && path.back() == '/')) {
            return true;
        }
    }
    return false;
}

void OpenStackFace::Impl::V1(const Call& outer, std::string method, std::string path, std::string body,
                             Query query, std::function<void(http::Response)> done,
                             std::shared_ptr<const http::BodyFile> body_file) {
    Call c;
    c.who = outer.who;
    c.peer_name = outer.peer_name;
    c.method = std::move(method);
    c.path = std::move(path);
    c.query = std::move(query);
    c.body = std::move(body);
    c.body_file = std::move(body_file);
    c.traceparent = outer.traceparent;
    c.respond = [weak = weak_from_this(), &io = ctx.io, done = std::move(done)](http::Response r) mutable {
        boost::asio::post(io, [weak, done = std::move(done), r = std::move(r)]() mutable {
            if (weak.lock()) done(std::move(r));
        });
    };
    v1.Dispatch(std::move(c));
}

void OpenStackFace::Impl::V1All(const Call& outer, std::string collection, Query query, size_t max,
                                std::function<void(Result<json::array>, http::Response)> done) {
    struct Walk {
        json::array items;
        std::function<void(Result<json::array>, http::Response)> done;
    };
    auto walk = std::make_shared<Walk>();
    walk->done = std::move(done);
    query["limit"] = "1000";
    auto page = std::make_shared<std::function<void(Query)>>();
    // The page callback holds the walk; the walk ends when a page has no next_marker.
    *page = [this, outer, collection, max, walk, weak_page = std::weak_ptr(page)](Query q) {
        V1(outer, "GET", "/v1/" + collection, "", q,
           [walk, q, max, collection, page = weak_page.lock()](http::Response r) mutable {
               if (r.status != 200) return walk->done(MakeError(ErrorCode::kInternal, "list"), std::move(r));
               json::object o = Body(r);
               std::string key = collection;
               std::replace(key.begin(), key.end(), '-', '_');
               if (auto* items = o.if_contains(key); items != nullptr && items->is_array()) {
                   for (auto& item : items->as_array())
                       walk->items.push_back(std::move(item));
               }
               const std::string next = Str(o, "next_marker");
               if (next.empty() || walk->items.size() >= max) {
                   return walk->done(std::move(walk->items), http::Response{});
               }
               q["marker"] = next;
               (*page)(std::move(q));
           });
    };
    (*page)(std::move(query));
}

void OpenStackFace::Impl::WaitSettled(const Call& outer, std::string collection, std::string id, bool gone,
                                      std::function<void(json::object)> done) {
    struct Wait {
        boost::asio::steady_timer timer;
        SteadyTime until;
        std::function<void(json::object)> done;
        std::function<void()> look;
    };
    auto wait = std::make_shared<Wait>(
        Wait{boost::asio::steady_timer(ctx.io), SteadyClock::now() + kNeutronWait, std::move(done), {}});
    std::string kind = collection.substr(0, collection.size() - 1);  // networks -> network
    // Each look holds the wait (the look itself holds it weakly: no cycle) until it answers.
    wait->look = [this, outer, path = "/v1/" + collection + "/" + id, kind, gone,
                  weak = std::weak_ptr(wait)] {
        V1(outer, "GET", path, "", {}, [this, kind, gone, w = weak.lock()](http::Response r) {
            json::object view;
            if (r.status == 200) view = wire::Obj(Body(r), kind);
            const bool settled = gone ? r.status == 404 : !Transitional(kind, Str(view, "status"));
            if (settled || r.status != 200 || SteadyClock::now() >= w->until) {
                return w->done(std::move(view));
            }
            w->timer.expires_after(kNeutronPoll);
            w->timer.async_wait([w](const boost::system::error_code& ec) {
                if (!ec && w->look) w->look();
            });
        });
    };
    wait->look();
}

std::string OpenStackFace::Impl::Base(const Call& c) const {
    std::string host = c.Header("host");
    if (host.empty()) host = "localhost";
    return (ctx.options.api_tls ? "https://" : "http://") + host;
}

json::object OpenStackFace::Impl::Body(const http::Response& r) { return wire::ParseObject(r.body); }

http::Response OpenStackFace::Impl::NotImplemented(const std::string& what) {
    return wire::Json(501,
                      json::object{{"code", "not_implemented"},
                                   {"message", what + " is not implemented by cogs (docs/openstack.md)"}});
}

http::Response OpenStackFace::Impl::NotAcceptable(const Error& refusal) {
    http::Response r = wire::ApiError(refusal);
    r.status = 406;
    return r;
}

std::string OpenStackFace::Impl::NetworkName(const std::string& id) const {
    const Res* n = ctx.model.Find(kNetwork, id);
    return n == nullptr ? std::string() : Str(n->body, "name");
}

Result<json::object> Envelope(const std::string& body, std::string_view key) {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) return MakeError(FieldError(key, "the body must be a JSON object"));
    json::object& o = v.as_object();
    auto* inner = o.if_contains(key);
    if (inner == nullptr || !inner->is_object()) {
        return MakeError(FieldError(key, "the body must be {\"" + std::string(key) + "\": {...}}"));
    }
    return std::move(inner->as_object());
}

Status OnlyKnown(const json::object& o, std::initializer_list<std::string_view> known,
                 std::string_view prefix) {
    for (const auto& kv : o) {
        if (std::find(known.begin(), known.end(), kv.key()) == known.end()) {
            const std::string field = std::string(prefix) + "." + std::string(kv.key());
            return MakeError(FieldError(field, "not supported by cogs (docs/openstack.md)"));
        }
    }
    return {};
}

Status NotSet(const json::object& o, std::initializer_list<std::string_view> unsupported,
              std::string_view prefix) {
    for (std::string_view key : unsupported) {
        const json::value* v = o.if_contains(key);
        if (v == nullptr || v->is_null() || (v->is_bool() && !v->as_bool()) ||
            (v->is_string() && v->as_string().empty()) || (v->is_object() && v->as_object().empty()) ||
            (v->is_array() && v->as_array().empty())) {
            continue;
        }
        const std::string field = std::string(prefix) + "." + std::string(key);
        return MakeError(FieldError(field, "not supported by cogs (docs/openstack.md)"));
    }
    return {};
}

OpenStackFace::OpenStackFace(Context& ctx, const Router& v1, Catalog& catalog)
    : impl_(std::make_shared<Impl>(ctx, v1, catalog)) {}

OpenStackFace::~OpenStackFace() = default;

HttpApi::Face OpenStackFace::Face() {
    std::vector<Route> routes;
    AddIdentityRoutes(*impl_, routes);
    AddComputeRoutes(*impl_, routes);
    AddNetworkRoutes(*impl_, routes);
    AddStorageRoutes(*impl_, routes);
    auto router = std::make_shared<Router>(std::move(routes));
    HttpApi::Face face;
    face.owns = [](std::string_view path) {
        return path == "/" || Under(path, "/v3") || Under(path, "/compute") || Under(path, "/network") ||
               Under(path, "/volume") || Under(path, "/image");
    };
    face.anonymous = AnonymousRoute;
    face.token = [](const http::Request& req) {
        std::string token = req.Header("x-auth-token");
        return token.empty() ? std::string(BearerToken(req.Header("authorization"))) : token;
    };
    face.reshape = [](std::string_view path, http::Response error) {
        return openstack::Reshape(openstack::ServiceOf(path), std::move(error));
    };
    face.dispatch = [router, impl = impl_](Call call) { router->Dispatch(std::move(call)); };
    return face;
}

}  // namespace cogs::cloud
