// Call: one API request as the control plane's handlers see it — who asks, what the route's
// pattern captured, the query, the body, and how to answer. The HTTP face (http_api.h) makes it;
// the router (router.h) fills `params` and picks the handler from the table in routes.cc.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/cloud/core/access.h"
#include "cogs/http/server.h"
#include "cogs/wire/answer.h"

namespace cogs::cloud {

struct Call {
    Principal who;
    // The name the client's TLS certificate carries, verified against cogsd's client CA (an agent's
    // names its host); "" without one. A request another replica forwarded (its certificate names
    // "cogsd") carries the name its client's certificate had (x-cogs-peer-name, set by that replica).
    std::string peer_name;
    std::string method;
    std::string path;                           // as asked, for messages
    std::map<std::string, std::string> params;  // the pattern's {name}s, decoded
    std::map<std::string, std::string> query;
    std::string body;
    // An image upload's body, spooled to a file by cogs/http (then `body` is empty).
    std::shared_ptr<const http::BodyFile> body_file;
    std::string idempotency_key;
    // Once a POST's key is admitted (resources/idempotency.h): its record's id ("<project>/<key>")
    // and the request's hash, for Remember; empty without a key.
    std::string idempotency_record;
    std::string idempotency_hash;
    std::string traceparent;  // the API's span: workflows started here carry it
    // The request's headers (names lower-case): for a face's calls only (HttpApi::Face), which
    // read their own (Host, X-Subject-Token, microversions); empty for /v1's.
    std::vector<std::pair<std::string, std::string>> headers;
    // Exactly once, on the io thread, never inline (the HTTP face posts it).
    std::function<void(http::Response)> respond;

    const std::string& Param(std::string_view name) const {
        static const std::string kNone;
        auto it = params.find(std::string(name));
        return it == params.end() ? kNone : it->second;
    }
    // The query parameter, or "".
    std::string Query(std::string_view name) const {
        auto it = query.find(std::string(name));
        return it == query.end() ? std::string() : it->second;
    }
    std::string Header(std::string_view name) const {
        for (const auto& [k, v] : headers) {
            if (k == name) return v;
        }
        return {};
    }
    void Answer(http::Response r) const { respond(std::move(r)); }
    void Fail(const Error& e) const { respond(wire::ApiError(e)); }
};

}  // namespace cogs::cloud
