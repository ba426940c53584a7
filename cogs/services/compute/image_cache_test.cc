// The image cache against a fake cogsd: one download per image and host, checked and extracted;
// a checksum mismatch, an unsafe archive and an unknown image refused for good.
#include "cogs/services/compute/internal/image_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cogs/base/secret.h"
#include "cogs/http/server.h"
#include "cogs/runtime/process.h"
#include "test/support/temp_dir.h"
#include "test/support/threaded_server.h"

namespace cogs::services::compute::internal {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// GET /v1/images/{ref} and /v1/images/{id}/file for the images it is given; counts the downloads.
class FakeCogsd {
public:
    struct Image {
        std::string id, sha256, archive;
    };

    std::string url() const { return server_.url(); }
    void Add(const std::string& name, Image img) {
        std::lock_guard lock(mu_);
        images_[name] = std::move(img);
    }
    int downloads() const { return downloads_; }

private:
    http::Response Handle(const http::Request& req) {
        std::lock_guard lock(mu_);
        http::Response r;
        if (req.Header("authorization") != "Bearer t0ken") {
            r.status = 401;
            return r;
        }
        const std::string path = req.Path();
        for (const auto& [name, img] : images_) {
            if (path == "/v1/images/" + name || path == "/v1/images/" + img.id) {
                r.body = R"({"image":{"id":")" + img.id + R"(","status":"active","sha256":")" + img.sha256 +
                         R"("}})";
                return r;
            }
            if (path == "/v1/images/" + img.id + "/file") {
                ++downloads_;
                r.content_type = "application/octet-stream";
                r.body = ReadAll(img.archive);
                return r;
            }
        }
        r.status = 404;
        r.body = R"({"code":"not_found"})";
        return r;
    }

    std::mutex mu_;
    std::map<std::string, Image> images_;
    std::atomic<int> downloads_{0};
    cogs::testing::ThreadedServer server_{
        [this](http::Request req, http::Respond respond) { respond(Handle(req)); }};
};

class ImageCacheTest : public ::testing::Test {
protected:
    // A gzip'd tar of `files` (name -> content), or with `args` given, tar's own arguments.
    std::string Archive(const std::string& name, const std::map<std::string, std::string>& files) {
        const std::string root = dir_ / (name + ".d");
        fs::create_directories(root);
        for (const auto& [file, content] : files) {
            fs::create_directories(fs::path(root + "/" + file).parent_path());
            std::ofstream(root + "/" + file) << content;
        }
        const std::string out = dir_ / name;
        auto made =
            runtime::RunCommand({"/usr/bin/tar", "-czf", out, "-C", root, "."}, SteadyClock::now() + 60s);
        EXPECT_TRUE(made && made->exit_status == 0);
        return out;
    }

    ImageCache Cache() {
        return ImageCache(
            ImageCacheOptions{.dir = dir_ / "images", .control_urls = {cogsd_.url()}, .token = "t0ken"});
    }

    cogs::testing::TempDir dir_{"cogs-image-cache"};
    FakeCogsd cogsd_;
};

TEST_F(ImageCacheTest, ConcurrentBootsDownloadAnImageOnceAndFindItExtracted) {
    const std::string archive =
        Archive("alpine.tar.gz", {{"etc/motd", "welcome\n"}, {"bin/tool", "#!/bin/sh\n"}});
    cogsd_.Add("alpine", {"img-1", Sha256Hex(ReadAll(archive)), archive});
    ImageCache cache = Cache();
    std::vector<Result<std::string>> got(4, MakeError(ErrorCode::kInternal, "not run"));
    std::vector<std::thread> boots;
    for (size_t i = 0; i < got.size(); ++i) {
        boots.emplace_back([&, i] { got[i] = cache.Rootfs(i % 2 == 0 ? "alpine" : "img-1"); });
    }
    for (auto& t : boots)
        t.join();
    for (const auto& r : got) {
        ASSERT_TRUE(r) << r.error().ToString();
        EXPECT_EQ(*r, dir_ / "images/img-1/rootfs");
    }
    EXPECT_EQ(ReadAll(*got[0] + "/etc/motd"), "welcome\n");
    EXPECT_EQ(cogsd_.downloads(), 1);
    EXPECT_EQ(cache.downloads(), 1u);
    EXPECT_FALSE(fs::exists(dir_ / "images/img-1/archive.tar.gz")) << "the archive goes once extracted";

    // Another cache on the same directory (the agent restarted) finds it too.
    ImageCache again = Cache();
    ASSERT_TRUE(again.Rootfs("alpine"));
    EXPECT_EQ(cogsd_.downloads(), 1);
}

// At most max_images are kept: the least recently used goes once a download adds one more, but not
// one in use; an image that went is downloaded again when asked for.
TEST_F(ImageCacheTest, TheCacheKeepsItsMostRecentlyUsedImagesAndNeverOneInUse) {
    for (const char* name : {"a", "b", "c"}) {
        const std::string archive = Archive(std::string(name) + ".tar.gz", {{"name", name}});
        cogsd_.Add(name, {std::string("img-") + name, Sha256Hex(ReadAll(archive)), archive});
    }
    ImageCache cache(ImageCacheOptions{
        .dir = dir_ / "images", .control_urls = {cogsd_.url()}, .token = "t0ken", .max_images = 2});
    const auto kept = [&] {
        std::set<std::string> ids;
        for (const auto& e : fs::directory_iterator(dir_ / "images")) {
            ids.insert(e.path().filename().string());
        }
        return ids;
    };
    ASSERT_TRUE(cache.Rootfs("a"));
    ASSERT_TRUE(cache.Rootfs("b"));
    // a used last: b is the least recently used when c comes (mtimes: set, not waited for).
    fs::last_write_time(dir_ / "images/img-b/sha256", fs::file_time_type::clock::now() - 1h);
    ASSERT_TRUE(cache.Rootfs("a"));
    ASSERT_TRUE(cache.Rootfs("c"));
    EXPECT_EQ(kept(), (std::set<std::string>{"img-a", "img-c"}));
    EXPECT_EQ(cogsd_.downloads(), 3);

    // b again, while a is in use and c is older than a: c goes, a stays although the cache is
    // over its bound meanwhile.
    fs::last_write_time(dir_ / "images/img-c/sha256", fs::file_time_type::clock::now() - 2h);
    Status used = cache.Use("a", [&](const std::string& rootfs) {
        EXPECT_EQ(ReadAll(rootfs + "/name"), "a");
        // The oldest of all now (Use marked it used at its start): only being in use keeps it.
        fs::last_write_time(dir_ / "images/img-a/sha256", fs::file_time_type::clock::now() - 3h);
        auto b = cache.Rootfs("b");  // another boot, meanwhile
        EXPECT_TRUE(b) << b.error().ToString();
        EXPECT_EQ(ReadAll(rootfs + "/name"), "a") << "the image in use is still there";
        return Ok();
    });
    ASSERT_TRUE(used) << used.error().ToString();
    EXPECT_EQ(kept(), (std::set<std::string>{"img-a", "img-b"}));
    EXPECT_EQ(cogsd_.downloads(), 4) << "b downloaded again";
}

TEST_F(ImageCacheTest, AChecksumMismatchFailsForGoodAndKeepsNothing) {
    const std::string archive = Archive("bad.tar.gz", {{"x", "y"}});
    cogsd_.Add("bad", {"img-2", std::string(64, 'a'), archive});
    ImageCache cache = Cache();
    auto r = cache.Rootfs("bad");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(r.error().retryable);
    EXPECT_NE(r.error().message.find("checksum mismatch"), std::string::npos) << r.error().message;
    EXPECT_FALSE(fs::exists(dir_ / "images/img-2/rootfs"));
    EXPECT_FALSE(fs::exists(dir_ / "images/img-2/archive.tar.gz"));
}

TEST_F(ImageCacheTest, AnArchiveReachingOutsideItsDirectoryIsRefused) {
    const std::string outside = dir_.Write("outside.txt", "escaped\n");
    const std::string archive = dir_ / "abs.tar.gz";
    auto made = runtime::RunCommand({"/usr/bin/tar", "-czPf", archive, outside}, SteadyClock::now() + 60s);
    ASSERT_TRUE(made && made->exit_status == 0);
    cogsd_.Add("abs", {"img-3", Sha256Hex(ReadAll(archive)), archive});
    ImageCache cache = Cache();
    auto r = cache.Rootfs("abs");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(r.error().message.find("unsafe member"), std::string::npos) << r.error().message;
    EXPECT_FALSE(fs::exists(dir_ / "images/img-3/rootfs"));
}

TEST_F(ImageCacheTest, AnUnknownImageFailsForGoodAndAnUnreachableCogsdIsRetryable) {
    ImageCache cache = Cache();
    auto r = cache.Rootfs("ghost");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(r.error().retryable);

    ImageCache nowhere(ImageCacheOptions{.dir = dir_ / "images", .control_urls = {"http://127.0.0.1:1"}});
    r = nowhere.Rootfs("alpine");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(r.error().retryable);
}

}  // namespace
}  // namespace cogs::services::compute::internal
