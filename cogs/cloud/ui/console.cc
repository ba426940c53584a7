#include "cogs/cloud/ui/console.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cogs/cloud/ui/internal/assets.h"
#include "cogs/http/conditional.h"
#include "cogs/wire/answer.h"

namespace cogs::cloud::ui {
namespace {

constexpr std::string_view kPrefix = "/ui";

std::string_view ContentTypeOf(std::string_view name) {
    struct Type {
        std::string_view extension;
        std::string_view type;
    };
    static constexpr Type kTypes[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    for (const Type& t : kTypes) {
        if (name.ends_with(t.extension)) return t.type;
    }
    return "application/octet-stream";
}

void AddSecurityHeaders(http::Response& r) {
    r.headers.emplace_back("Content-Security-Policy", std::string(kContentSecurityPolicy));
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
}

http::Response Failed(Error e) {
    http::Response r = wire::ApiError(e);
    AddSecurityHeaders(r);
    return r;
}

struct Entry {
    std::string_view name;
    std::string_view content;
    std::string_view type;
    std::string tag;
};

const std::vector<Entry>& Entries() {
    static const std::vector<Entry> entries = [] {
        std::vector<Entry> out;
        for (const internal::Asset& a : internal::Assets()) {
            out.push_back({a.name, a.content, ContentTypeOf(a.name), http::EntityTag(a.content)});
        }
        return out;
    }();
    return entries;
}

const Entry* Find(std::string_view name) {
    const auto& entries = Entries();
    auto it = std::lower_bound(entries.begin(), entries.end(), name,
                               [](const Entry& e, std::string_view n) { return e.name < n; });
    return it != entries.end() && it->name == name ? &*it : nullptr;
}

}  // namespace

bool Owns(std::string_view path) { return path == kPrefix || path.starts_with("/ui/"); }

http::Response Serve(const http::Request& request) {
    const std::string path = request.Path();
    if (request.method != "GET" && request.method != "HEAD") {
        // The API's 405: its error shape and Allow.
        http::Response r = wire::ApiMethodNotAllowed(request.method, "GET, HEAD");
        AddSecurityHeaders(r);
        return r;
    }
    if (path == kPrefix) {
        http::Response r;
        r.status = 308;
        r.headers.emplace_back("Location", "/ui/");
        AddSecurityHeaders(r);
        return r;
    }
    std::string_view name = std::string_view(path).substr(kPrefix.size() + 1);
    if (name.empty()) name = "index.html";
    const Entry* e = Find(name);
    if (e == nullptr) {
        return Failed(Error(ErrorCode::kNotFound, "the console has no file " + path));
    }
    http::Response r;
    r.headers.emplace_back("ETag", e->tag);
    r.headers.emplace_back("Cache-Control", "no-cache");
    AddSecurityHeaders(r);
    if (http::NoneMatchHits(request.Header("if-none-match"), e->tag)) {
        r.status = 304;
        return r;
    }
    r.headers.emplace_back("Content-Type", std::string(e->type));
    if (request.method == "GET") r.body = std::string(e->content);
    return r;
}

}  // namespace cogs::cloud::ui
