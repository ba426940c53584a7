// The web console's files through cogsd's API handler (api/http_api.h SetStatic, cogs/cloud/ui): no
// token needed, nothing under /ui reaches /v1, the answers carry the console's headers. What each
// path answers is cogs/cloud/ui/console_test.cc's.
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/cloud/ui/console.h"

namespace cogs::cloud::testing {
namespace {

using CloudUiTest = CloudTest;

TEST_F(CloudUiTest, TheConsoleNeedsNoToken) {
    Reply r = Call("", "GET", "/ui/");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.raw.Header("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(r.raw.Header("content-security-policy"), ui::kContentSecurityPolicy);
    EXPECT_FALSE(r.raw.Header("traceparent").empty());
    // A bad token does not matter either: the files hold no data.
    EXPECT_EQ(Call("cogs_not_a_token", "GET", "/ui/js/api.js").status, 200);
    // The API still wants one.
    EXPECT_EQ(Call("", "GET", "/v1/whoami").status, 401);
}

TEST_F(CloudUiTest, RedirectAndRevalidation) {
    Reply r = Call("", "GET", "/ui");
    EXPECT_EQ(r.status, 308);
    EXPECT_EQ(r.raw.Header("location"), "/ui/");
    const std::string tag = Call("", "GET", "/ui/style.css").raw.Header("etag");
    ASSERT_FALSE(tag.empty());
    EXPECT_EQ(Call("", "GET", "/ui/style.css", "", {{"if-none-match", tag}}).status, 304);
}

TEST_F(CloudUiTest, NothingUnderUiReachesTheApi) {
    for (const char* target : {"/ui/../v1/whoami", "/ui/%2e%2e/v1/whoami", "/ui/..%2fv1%2fprojects",
                               "/ui/v1/projects", "/ui/../healthz"}) {
        Reply r = Call(admin_, "GET", target);
        EXPECT_EQ(r.status, 404) << target;
        EXPECT_EQ(r.Str("code"), "not_found") << target;
    }
    Reply r = Call(admin_, "POST", "/ui/index.html", "{}");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.raw.Header("allow"), "GET, HEAD");
}

}  // namespace
}  // namespace cogs::cloud::testing
