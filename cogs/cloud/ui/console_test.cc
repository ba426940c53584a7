// The console's serving (console.h): what a browser gets for each path and method, checked on the
// files really embedded from web/.
#include "cogs/cloud/ui/console.h"

#include <gtest/gtest.h>

#include "cogs/cloud/ui/internal/assets.h"

namespace cogs::cloud::ui {
namespace {

http::Response Get(const std::string& target, const std::string& method = "GET",
                   const std::string& if_none_match = "") {
    http::Request req;
    req.method = method;
    req.target = target;
    if (!if_none_match.empty()) req.headers.emplace_back("if-none-match", if_none_match);
    return Serve(req);
}

void ExpectSecurityHeaders(const http::Response& r) {
    EXPECT_EQ(r.Header("content-security-policy"), kContentSecurityPolicy);
    EXPECT_EQ(r.Header("x-content-type-options"), "nosniff");
    EXPECT_EQ(r.Header("referrer-policy"), "no-referrer");
}

TEST(Console, OwnsOnlyUi) {
    EXPECT_TRUE(Owns("/ui"));
    EXPECT_TRUE(Owns("/ui/"));
    EXPECT_TRUE(Owns("/ui/js/api.js"));
    EXPECT_FALSE(Owns("/uix"));
    EXPECT_FALSE(Owns("/v1/ui"));
    EXPECT_FALSE(Owns("/"));
}

TEST(Console, EntryIsIndexHtml) {
    const http::Response r = Get("/ui/");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(r.Header("cache-control"), "no-cache");
    EXPECT_NE(r.body.find("<!doctype html>"), std::string::npos);
    EXPECT_EQ(r.body, Get("/ui/index.html").body);
    ExpectSecurityHeaders(r);
}

TEST(Console, RedirectsToTheSlash) {
    const http::Response r = Get("/ui");
    EXPECT_EQ(r.status, 308);
    EXPECT_EQ(r.Header("location"), "/ui/");
    EXPECT_EQ(Get("/ui?x=1").status, 308);
}

TEST(Console, ContentTypesByExtension) {
    EXPECT_EQ(Get("/ui/style.css").Header("content-type"), "text/css; charset=utf-8");
    const http::Response js = Get("/ui/js/api.js");
    EXPECT_EQ(js.status, 200);
    EXPECT_EQ(js.Header("content-type"), "text/javascript; charset=utf-8");
    EXPECT_EQ(js.Header("cache-control"), "no-cache");
    // Every embedded file has a type a browser accepts for it (no octet-stream module).
    for (const internal::Asset& a : internal::Assets()) {
        const http::Response r = Get("/ui/" + std::string(a.name));
        EXPECT_EQ(r.status, 200) << a.name;
        EXPECT_EQ(r.body, a.content) << a.name;
        EXPECT_NE(r.Header("content-type"), "application/octet-stream") << a.name;
    }
}

TEST(Console, EtagAnswers304) {
    const http::Response first = Get("/ui/js/api.js");
    const std::string tag = first.Header("etag");
    ASSERT_EQ(tag.size(), 18u) << tag;  // "<16 hex>"
    EXPECT_EQ(tag.front(), '"');
    const http::Response again = Get("/ui/js/api.js", "GET", tag);
    EXPECT_EQ(again.status, 304);
    EXPECT_TRUE(again.body.empty());
    EXPECT_EQ(again.Header("etag"), tag);
    ExpectSecurityHeaders(again);
    EXPECT_EQ(Get("/ui/js/api.js", "GET", "\"other\", W/" + tag).status, 304);
    EXPECT_EQ(Get("/ui/js/api.js", "GET", "*").status, 304);
    EXPECT_EQ(Get("/ui/js/api.js", "GET", "\"other\"").status, 200);
    // Another file's tag is not this one's.
    EXPECT_EQ(Get("/ui/style.css", "GET", tag).status, 200);
}

TEST(Console, HeadHasNoBody) {
    const http::Response r = Get("/ui/index.html", "HEAD");
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.body.empty());
    EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(r.Header("etag"), Get("/ui/index.html").Header("etag"));
}

TEST(Console, UnknownIs404) {
    const http::Response r = Get("/ui/nothing.js");
    EXPECT_EQ(r.status, 404);
    EXPECT_NE(r.body.find("not_found"), std::string::npos);
    ExpectSecurityHeaders(r);
    EXPECT_EQ(Get("/ui/js/").status, 404);
    EXPECT_EQ(Get("/ui/js").status, 404);
}

TEST(Console, NoPathTraversal) {
    for (const char* target : {"/ui/../v1/servers", "/ui/%2e%2e/v1/servers", "/ui/%2E%2E/%2E%2E/etc/passwd",
                               "/ui/js/../index.html", "/ui/./index.html", "/ui//index.html",
                               "/ui/js%2fapi.js", "/ui/..%2fv1%2fwhoami", "/ui/index.html%00",
                               "/ui/../../../../etc/passwd", "/ui/\\..\\index.html"}) {
        const http::Response r = Get(target);
        EXPECT_EQ(r.status, 404) << target;
        EXPECT_EQ(r.Header("content-type"), "application/json") << target;
    }
}

TEST(Console, OnlyGetAndHead) {
    for (const char* method : {"POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
        const http::Response r = Get("/ui/index.html", method);
        EXPECT_EQ(r.status, 405) << method;
        EXPECT_EQ(r.Header("allow"), "GET, HEAD") << method;
        ExpectSecurityHeaders(r);
    }
    EXPECT_EQ(Get("/ui", "POST").status, 405);
}

}  // namespace
}  // namespace cogs::cloud::ui
