#include "cogs/cloud/api/router.h"

#include <algorithm>

namespace cogs::cloud {

std::vector<std::string> PathSegments(std::string_view path) {
    std::vector<std::string> out;
    while (!path.empty()) {
        auto slash = path.find('/');
        std::string_view seg = path.substr(0, slash);
        if (!seg.empty()) {
            out.push_back(http::UrlDecode(seg));
        }
        path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    }
    return out;
}

Router::Router(std::vector<Route> routes) : routes_(std::move(routes)) {
    for (const Route& r : routes_) {
        Compiled c;
        std::string_view p = r.pattern;
        while (!p.empty()) {
            auto slash = p.find('/');
            std::string_view seg = p.substr(0, slash);
            if (!seg.empty()) {
                c.segments.emplace_back(seg);
                c.literals += seg.front() == '{' ? 0 : 1;
            }
            p = slash == std::string_view::npos ? std::string_view() : p.substr(slash + 1);
        }
        compiled_.push_back(std::move(c));
    }
}

void Router::Dispatch(Call call) const {
    const std::vector<std::string> path = PathSegments(call.path);
    int best = -1;
    std::vector<size_t> candidates;
    for (size_t i = 0; i < routes_.size(); ++i) {
        const Compiled& c = compiled_[i];
        if (c.segments.size() != path.size()) continue;
        bool match = true;
        for (size_t s = 0; s < path.size() && match; ++s) {
            match = c.segments[s].front() == '{' || c.segments[s] == path[s];
        }
        if (!match || c.literals < best) continue;
        if (c.literals > best) {
            best = c.literals;
            candidates.clear();
        }
        candidates.push_back(i);
    }
    if (candidates.empty()) {
        return call.Fail(Error(ErrorCode::kNotFound, "no route " + call.method + " " + call.path));
    }
    std::string allowed;
    for (size_t i : candidates) {
        if (routes_[i].method != call.method) {
            if (allowed.find(routes_[i].method) == std::string::npos) {
                allowed += (allowed.empty() ? "" : ", ") + routes_[i].method;
            }
            continue;
        }
        const Compiled& c = compiled_[i];
        for (size_t s = 0; s < path.size(); ++s) {
            if (c.segments[s].front() == '{') {
                call.params[c.segments[s].substr(1, c.segments[s].size() - 2)] = path[s];
            }
        }
        // A host token: the one allowlist, before any handler sees the call.
        if (auto st = HostMay(call.who, call.method, routes_[i].pattern, call.params); !st) {
            return call.Fail(st.error());
        }
        return routes_[i].handler(std::move(call));
    }
    call.Answer(wire::ApiMethodNotAllowed(call.method, allowed));
}

}  // namespace cogs::cloud
