// Image content through cogsd's HTTP face: the upload spooled by cogs/http, checked, stored in
// chunks; the download assembled from them; bad uploads refused with nothing kept.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cogs/base/secret.h"
#include "cogs/cloud/cloud_test_fixture.h"
#include "cogs/cloud/resources/images.h"
#include "cogs/http/client.h"
#include "cogs/runtime/process.h"
#include "test/support/private_pg.h"

namespace cogs::cloud::testing {
namespace {

constexpr uint64_t kLimit = 6 << 20;  // the test's --max-image-bytes

std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// `n` bytes that do not compress (so that an archive of them is as large).
std::string Random(size_t n) {
    std::string out(n, '\0');
    int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    size_t got = 0;
    while (fd >= 0 && got < n) {
        ssize_t r = ::read(fd, out.data() + got, n - got);
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    if (fd >= 0) ::close(fd);
    return out;
}

class CloudImageTest : public CloudTest {
protected:
    void SetUp() override {
        options_.max_image_bytes = kLimit;
        options_.image_spool_dir = assembled_.path();
        ASSERT_NO_FATAL_FAILURE(CloudTest::SetUp());
        http::ServerOptions so;
        so.spool_body = IsImageUpload;
        so.spool_dir = spooled_.path();
        so.max_spooled_body_bytes = kLimit;
        so.error_answer = wire::ApiError;
        auto server = http::StartServer(*io_, so, [this](http::Request req, http::Respond respond) {
            handler_(std::move(req), std::move(respond));
        });
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        client_ = http::MakeClient(*io_, http::ClientOptions{.port = server_->port()});
    }

    void TearDown() override {
        client_.reset();
        server_.reset();
        CloudTest::TearDown();
    }

    // A gzip'd tar of a directory holding `files` (name -> content); its path.
    std::string Archive(const std::string& name, const std::map<std::string, std::string>& files) {
        const std::string root = work_ / (name + ".d");
        std::filesystem::create_directories(root);
        for (const auto& [file, content] : files) {
            std::ofstream(root + "/" + file, std::ios::binary) << content;
        }
        const std::string out = work_ / name;
        auto made =
            runtime::RunCommand({"/usr/bin/tar", "-czf", out, "-C", root, "."}, SteadyClock::now() + 60s);
        EXPECT_TRUE(made && made->exit_status == 0) << (made ? made->output : made.error().ToString());
        return out;
    }

    // An API call over HTTP, its body the file at `path` (if any).
    Reply Send(const std::string& token, const std::string& method, const std::string& target,
               const std::string& path = "") {
        http::Request req = Request(token, method, target);
        if (!path.empty()) req.body_file = std::make_shared<http::BodyFile>(path, /*temp=*/false);
        std::optional<Result<http::Response>> got;
        client_->Send(std::move(req), SteadyClock::now() + 60s,
                      [&](Result<http::Response> r) { got = std::move(r); });
        RunUntil([&] { return got.has_value(); });
        if (!got || !*got) {
            ADD_FAILURE() << method << " " << target << ": " << (got ? got->error().ToString() : "no answer");
            return Reply{};
        }
        return ReplyOf(std::move(**got));
    }

    std::string NewImage(const std::string& name) {
        Reply r = Call(admin_, "POST", "/v1/images", R"({"name":")" + name + R"("})");
        EXPECT_EQ(r.status, 201) << r.raw.body;
        EXPECT_EQ(r.Field("image", "status"), "queued");
        return r.Field("image", "id");
    }

    int64_t Chunks() { return store_->CountChunks("").value_or(-1); }
    size_t FilesIn(const std::string& dir) {
        return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
    }

    cogs::testing::TempDir work_{"cogs-image"};
    cogs::testing::TempDir spooled_{"cogs-spool"};
    cogs::testing::TempDir assembled_{"cogs-assembled"};
    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Client> client_;
};

TEST_F(CloudImageTest, AnUploadLargerThanAChunkComesBackByteForByte) {
    const std::string id = NewImage("alpine");
    // Larger than a chunk (1 MiB): the content goes through the store in pieces.
    const std::string path = Archive("rootfs.tar.gz", {{"big", Random(2'500'000)}, {"hello", "hi\n"}});
    const std::string content = ReadFile(path);
    const std::string sha = Sha256Hex(content);

    Reply up = Send(admin_, "PUT", "/v1/images/" + id + "/file?sha256=" + sha, path);
    ASSERT_EQ(up.status, 200) << up.raw.body;
    EXPECT_EQ(up.Field("image", "status"), "active");
    EXPECT_EQ(up.Field("image", "sha256"), sha);
    EXPECT_EQ(up.Obj("image").at("size_bytes").as_int64(), static_cast<int64_t>(content.size()));
    EXPECT_FALSE(up.Obj("image").contains("_blob")) << "internal keys stay inside";
    EXPECT_EQ(Chunks(),
              static_cast<int64_t>((content.size() + ImageFiles::kChunkBytes - 1) / ImageFiles::kChunkBytes));
    EXPECT_EQ(FilesIn(spooled_.path()), 0u) << "the spooled upload is gone once handled";

    // By name too; the whole archive, its sha256 in a header.
    Reply down = Send(admin_, "GET", "/v1/images/alpine/file");
    ASSERT_EQ(down.status, 200) << down.raw.body.substr(0, 200);
    EXPECT_EQ(down.raw.Header("x-image-sha256"), sha);
    EXPECT_EQ(down.raw.Header("content-type"), "application/octet-stream");
    EXPECT_TRUE(down.raw.body == content)
        << "downloaded " << down.raw.body.size() << " of " << content.size();
    RunUntil([&] { return FilesIn(assembled_.path()) == 0; });  // the assembled file goes once sent

    // A tenant (reader) reads it as well, but cannot upload or delete.
    const std::string project = NewProject("tenant");
    const std::string reader = NewToken(project, "reader");
    const std::string member = NewToken(project, "member");
    Reply tenant_down = Send(reader, "GET", "/v1/images/" + id + "/file");
    EXPECT_EQ(tenant_down.status, 200);
    EXPECT_TRUE(tenant_down.raw.body == content);
    const std::string other = NewImage("other");
    EXPECT_EQ(Send(member, "PUT", "/v1/images/" + other + "/file", path).status, 403);
    EXPECT_EQ(Send(reader, "PUT", "/v1/images/" + other + "/file", path).status, 403);
    EXPECT_EQ(Call(member, "DELETE", "/v1/images/" + id).status, 403);

    // Images are immutable once active.
    Reply again = Send(admin_, "PUT", "/v1/images/" + id + "/file", path);
    EXPECT_EQ(again.status, 409) << again.raw.body;

    // The content lives in the store: it survives a restart.
    const int64_t chunks = Chunks();
    client_.reset();
    server_.reset();
    Close();
    Open();
    EXPECT_EQ(Chunks(), chunks);
    EXPECT_EQ(Call(admin_, "GET", "/v1/images/" + id).Field("image", "status"), "active");

    // What a crash mid-upload leaves (chunks no image names) is collected at the next start; the
    // image's own content stays.
    ASSERT_TRUE(store_->PutChunk("orphan-blob", 0, "half an upload"));
    Close();
    Open();
    EXPECT_EQ(store_->CountChunks("orphan-blob").value_or(-1), 0);
    EXPECT_EQ(Chunks(), chunks);

    // Deleting the image deletes its content.
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/images/" + id).status, 204);
    RunUntil([&] { return Chunks() == 0; });
}

TEST_F(CloudImageTest, WhatIsNotAGzipdTarIsRefusedAndNothingIsKept) {
    const std::string id = NewImage("junk");
    const std::string text = work_.Write("notes.txt", "just some text, not an archive\n");
    Reply r = Send(admin_, "PUT", "/v1/images/" + id + "/file", text);
    EXPECT_EQ(r.status, 400) << r.raw.body;
    EXPECT_EQ(r.ErrorField(), "file") << r.raw.body;

    // gzip, but what it holds is no tar archive.
    auto gz = runtime::RunCommand({"/usr/bin/gzip", "-k", text}, SteadyClock::now() + 30s);
    ASSERT_TRUE(gz && gz->exit_status == 0);
    r = Send(admin_, "PUT", "/v1/images/" + id + "/file", text + ".gz");
    EXPECT_EQ(r.status, 400) << r.raw.body;
    EXPECT_NE(r.Str("message").find("tar lists no member"), std::string::npos) << r.raw.body;
    // Longer: tar says it is not one.
    const std::string long_text = work_.Write("long.txt", std::string(4000, 'z'));
    ASSERT_TRUE(runtime::RunCommand({"/usr/bin/gzip", "-k", long_text}, SteadyClock::now() + 30s));
    r = Send(admin_, "PUT", "/v1/images/" + id + "/file", long_text + ".gz");
    EXPECT_EQ(r.status, 400) << r.raw.body;
    EXPECT_NE(r.Str("message").find("tar says"), std::string::npos) << r.raw.body;

    // A body cut short: a truncated archive.
    const std::string whole = ReadFile(Archive("cut.tar.gz", {{"big", Random(300'000)}}));
    r = Send(admin_, "PUT", "/v1/images/" + id + "/file",
             work_.Write("half.tar.gz", whole.substr(0, whole.size() / 2)));
    EXPECT_EQ(r.status, 400) << r.raw.body;

    EXPECT_EQ(Chunks(), 0);
    Reply img = Call(admin_, "GET", "/v1/images/" + id);
    EXPECT_EQ(img.Field("image", "status"), "queued");
    EXPECT_FALSE(img.Obj("image").contains("sha256"));
    EXPECT_EQ(Send(admin_, "GET", "/v1/images/" + id + "/file").status, 409) << "no content to download";
}

TEST_F(CloudImageTest, AnImageOverTheLimitIs413AndNothingIsKept) {
    const std::string id = NewImage("huge");
    const std::string path = Archive("huge.tar.gz", {{"big", Random(kLimit + 100'000)}});
    Reply r = Send(admin_, "PUT", "/v1/images/" + id + "/file", path);
    EXPECT_EQ(r.status, 413) << r.raw.body;
    EXPECT_EQ(Chunks(), 0);
    EXPECT_EQ(FilesIn(spooled_.path()), 0u);
    EXPECT_EQ(Call(admin_, "GET", "/v1/images/" + id).Field("image", "status"), "queued");

    // The control plane's own check, for a body that reached it in memory (not spooled).
    Reply direct = Call(admin_, "PUT", "/v1/images/" + id + "/file", std::string(kLimit + 1, 'x'));
    EXPECT_EQ(direct.status, 413) << direct.raw.body;
    EXPECT_EQ(Chunks(), 0);
}

TEST_F(CloudImageTest, AChecksumMismatchIsRefusedAndNothingIsKept) {
    const std::string id = NewImage("busybox");
    const std::string path = Archive("rootfs.tar.gz", {{"init", "#!/bin/sh\n"}});
    const std::string sha = Sha256Hex(ReadFile(path));
    const std::string wrong(64, 'a');
    Reply r = Send(admin_, "PUT", "/v1/images/" + id + "/file?sha256=" + wrong, path);
    EXPECT_EQ(r.status, 400) << r.raw.body;
    EXPECT_EQ(r.ErrorField(), "sha256");
    EXPECT_NE(r.Str("message").find(sha), std::string::npos) << "names what the body's sha256 is";
    EXPECT_EQ(Chunks(), 0);
    EXPECT_EQ(Call(admin_, "GET", "/v1/images/" + id).Field("image", "status"), "queued");

    EXPECT_EQ(Send(admin_, "PUT", "/v1/images/" + id + "/file?sha256=xyz", path).status, 400);
    // The right one (upper case is fine) goes through.
    std::string upper = sha;
    for (auto& c : upper)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    r = Send(admin_, "PUT", "/v1/images/" + id + "/file?sha256=" + upper, path);
    EXPECT_EQ(r.status, 200) << r.raw.body;
    EXPECT_EQ(r.Field("image", "sha256"), sha);
    EXPECT_EQ(Chunks(), 1);
}

// The same on PostgreSQL: the content every replica reads.
class CloudImagePgTest : public CloudImageTest {
protected:
    void SetUp() override {
        wrap_store_ = [this](std::unique_ptr<store::Store>) -> std::unique_ptr<store::Store> {
            auto pg = store::OpenPgStore(
                store::PgOptions{.conninfo = cogs::testing::PrivatePgDatabase(dir_.path())});
            EXPECT_TRUE(pg) << pg.error().ToString();
            return pg ? std::move(*pg) : nullptr;
        };
        ASSERT_NO_FATAL_FAILURE(CloudImageTest::SetUp());
    }
};

TEST_F(CloudImagePgTest, AnUploadComesBackByteForByteFromPostgres) {
    const std::string id = NewImage("alpine");
    const std::string path = Archive("rootfs.tar.gz", {{"big", Random(1'500'000)}});
    const std::string content = ReadFile(path);
    Reply up = Send(admin_, "PUT", "/v1/images/" + id + "/file?sha256=" + Sha256Hex(content), path);
    ASSERT_EQ(up.status, 200) << up.raw.body;
    EXPECT_EQ(Chunks(), 2);
    Reply down = Send(admin_, "GET", "/v1/images/" + id + "/file");
    ASSERT_EQ(down.status, 200);
    EXPECT_TRUE(down.raw.body == content)
        << "downloaded " << down.raw.body.size() << " of " << content.size();
    EXPECT_EQ(Call(admin_, "DELETE", "/v1/images/" + id).status, 204);
    RunUntil([&] { return Chunks() == 0; });
}

// Glance's create, upload, download and delete (the OpenStack face, docs/openstack.md) are /v1's:
// the upload spooled and checked the same way, the same content stored and served.
TEST_F(CloudImageTest, GlancesUploadThroughTheOpenStackFaceIsV1sUpload) {
    auto glance = [&](const std::string& method, const std::string& target, const std::string& body = "") {
        http::Request req = Request(admin_, method, target, body, {{"host", "c"}});
        std::optional<Result<http::Response>> got;
        client_->Send(std::move(req), SteadyClock::now() + 60s,
                      [&](Result<http::Response> r) { got = std::move(r); });
        RunUntil([&] { return got.has_value(); });
        return got && *got ? ReplyOf(std::move(**got)) : Reply{};
    };
    Reply made = glance("POST", "/image/v2/images",
                        R"({"name":"alpine","disk_format":"raw","container_format":"bare",)"
                        R"("owner_specified.openstack.sha256":"x"})");
    ASSERT_EQ(made.status, 201) << made.raw.body;
    EXPECT_EQ(made.Str("status"), "queued");
    const std::string id = made.Str("id");
    EXPECT_EQ(glance("GET", "/image/v2/images/" + id + "/file").status, 204) << "no content yet";

    const std::string path = Archive("rootfs.tar.gz", {{"hello", "hi\n"}});
    const std::string content = ReadFile(path);
    Reply up = Send(admin_, "PUT", "/image/v2/images/" + id + "/file", path);
    EXPECT_EQ(up.status, 204) << up.raw.body;
    EXPECT_EQ(FilesIn(spooled_.path()), 0u) << "spooled as /v1's upload is, and gone once handled";
    Reply shown = glance("GET", "/image/v2/images/" + id);
    EXPECT_EQ(shown.Str("status"), "active");
    EXPECT_EQ(shown.Str("os_hash_value"), Sha256Hex(content));
    EXPECT_EQ(Call(admin_, "GET", "/v1/images/" + id).Field("image", "sha256"), Sha256Hex(content));
    Reply down = glance("GET", "/image/v2/images/" + id + "/file");
    ASSERT_EQ(down.status, 200);
    EXPECT_TRUE(down.raw.body == content);

    // Not a gzip tar: refused as /v1 refuses it, in Glance's shape, and the image stays queued.
    Reply other = glance("POST", "/image/v2/images", R"({"name":"bad"})");
    const std::string junk = work_ / "junk";
    std::ofstream(junk) << "not an archive";
    Reply refused = Send(admin_, "PUT", "/image/v2/images/" + other.Str("id") + "/file", junk);
    EXPECT_EQ(refused.status, 400);
    EXPECT_TRUE(refused.body.contains("error")) << refused.raw.body;
    EXPECT_EQ(glance("GET", "/image/v2/images/" + other.Str("id")).Str("status"), "queued");
    // A member may not make images; and what cogs does not do is refused naming the field.
    const std::string member = NewToken(NewProject("p"), "member");
    EXPECT_EQ(Call(member, "POST", "/image/v2/images", R"({"name":"mine"})", {{"host", "c"}}).status, 403);
    Reply priv = glance("POST", "/image/v2/images", R"({"name":"p","visibility":"private"})");
    EXPECT_EQ(priv.status, 400);
    EXPECT_NE(priv.raw.body.find("image.visibility"), std::string::npos);

    EXPECT_EQ(glance("DELETE", "/image/v2/images/" + id).status, 204);
    EXPECT_EQ(glance("GET", "/image/v2/images/" + id).status, 404);
}

}  // namespace
}  // namespace cogs::cloud::testing
