#include "cogs/cloud/resources/images.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cctype>
#include <filesystem>

#include "cogs/base/secret.h"
#include "cogs/cloud/resources/common.h"
#include "cogs/observe/log.h"
#include "cogs/runtime/process.h"

namespace cogs::cloud {
namespace {

// How long `tar -tzf` may take to list an archive: generous (a 512 MiB archive lists in seconds).
constexpr auto kListDeadline = std::chrono::minutes(5);

// A file descriptor closed on scope exit.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// Reads up to `n` bytes (fewer only at the end of the file).
Result<std::string> ReadSome(int fd, size_t n) {
    std::string buf(n, '\0');
    size_t got = 0;
    while (got < n) {
        const ssize_t r = ::read(fd, buf.data() + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return MakeError(ErrorCode::kInternal, std::string("read: ") + std::strerror(errno));
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    buf.resize(got);
    return buf;
}

Status WriteAll(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t w = ::write(fd, data.data(), data.size());
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return MakeError(ErrorCode::kInternal, std::string("write: ") + std::strerror(errno));
        data.remove_prefix(static_cast<size_t>(w));
    }
    return Ok();
}

std::string TarPath() {
    for (const char* p : {"/usr/bin/tar", "/bin/tar"}) {
        if (::access(p, X_OK) == 0) return p;
    }
    return "/usr/bin/tar";
}

std::string SpoolDir(const Context& ctx) {
    if (!ctx.options.image_spool_dir.empty()) return ctx.options.image_spool_dir;
    return std::filesystem::temp_directory_path().string();
}

Error TooLarge(uint64_t limit) {
    Error e(ErrorCode::kInvalidArgument,
            "the image is larger than the limit of " + std::to_string(limit) + " bytes (--max-image-bytes)");
    e.reason = "image_too_large";
    return e;
}

Error NotAnArchive(std::string why) {
    return FieldError("file", "the body is not a gzip-compressed tar archive: " + why);
}

// A sha256 as the API takes it: 64 hex digits (either case); "" if absent.
Result<std::string> ExpectedSha(const std::string& given) {
    if (given.empty()) return std::string();
    std::string sha;
    for (char c : given) {
        if (!std::isxdigit(static_cast<unsigned char>(c))) break;
        sha.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    if (sha.size() != 64 || given.size() != 64) {
        return MakeError(FieldError("sha256", "must be 64 hexadecimal digits"));
    }
    return sha;
}

struct Staged {
    int64_t size = 0;
    std::string sha256;
};

// The checks, then the chunks: runs on a worker thread. Nothing is kept unless it returns a value.
Result<Staged> Stage(store::Store& store, const std::string& path, const std::string& expected,
                     const std::string& blob, uint64_t max_bytes, const std::atomic<bool>& stopping) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        return MakeError(ErrorCode::kInternal,
                         "cannot open the spooled upload: " + std::string(std::strerror(errno)));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return MakeError(ErrorCode::kInternal, "cannot stat the spooled upload");
    }
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size > max_bytes) return MakeError(TooLarge(max_bytes));
    // Pass 1: the gzip magic and the sha256, before anything is written.
    Staged staged;
    staged.size = static_cast<int64_t>(size);
    Sha256Hasher hasher;
    bool first = true;
    for (;;) {
        COGS_ASSIGN_OR_RETURN(std::string chunk, ReadSome(fd.get(), ImageFiles::kChunkBytes));
        if (first && (chunk.size() < 2 || static_cast<unsigned char>(chunk[0]) != 0x1f ||
                      static_cast<unsigned char>(chunk[1]) != 0x8b)) {
            return MakeError(NotAnArchive("it does not start with the gzip magic bytes"));
        }
        first = false;
        if (chunk.empty()) break;
        hasher.Update(chunk);
        if (stopping) return MakeError(ErrorCode::kUnavailable, "cogsd is stopping");
    }
    staged.sha256 = hasher.HexDigest();
    if (!expected.empty() && expected != staged.sha256) {
        return MakeError(FieldError("sha256", "checksum mismatch: the body's sha256 is " + staged.sha256 +
                                                  ", the request said " + expected));
    }
    // tar itself says whether it is a tar archive (and reads the whole gzip stream, checking it).
    auto listed = runtime::RunCommand({TarPath(), "-tzf", path}, SteadyClock::now() + kListDeadline,
                                      runtime::RunOptions{.max_output = 2048});
    if (!listed) return MakeError(ErrorCode::kInternal, "tar: " + listed.error().message);
    // GNU tar lists what is shorter than a tar block as an empty archive: a root filesystem has at
    // least one member.
    if (listed->exit_status == 0 && listed->output.find_first_not_of(" \n") == std::string::npos) {
        return MakeError(NotAnArchive("tar lists no member in it"));
    }
    if (listed->exit_status != 0) {
        std::string said = listed->output;
        while (!said.empty() && std::isspace(static_cast<unsigned char>(said.back())))
            said.pop_back();
        return MakeError(NotAnArchive("tar says: " + said.substr(said.size() > 300 ? said.size() - 300 : 0)));
    }
    // Pass 2: the chunks, one at a time.
    if (::lseek(fd.get(), 0, SEEK_SET) != 0)
        return MakeError(ErrorCode::kInternal, "cannot rewind the upload");
    auto written = [&]() -> Status {
        for (int64_t seq = 0;; ++seq) {
            if (stopping) return MakeError(ErrorCode::kUnavailable, "cogsd is stopping");
            COGS_ASSIGN_OR_RETURN(std::string chunk, ReadSome(fd.get(), ImageFiles::kChunkBytes));
            if (chunk.empty()) return Ok();
            COGS_TRY(store.PutChunk(blob, seq, chunk));
        }
    }();
    if (!written) {
        (void)store.DeleteChunks(blob);  // best effort: the record never names this blob
        return MakeError(written.error());
    }
    return staged;
}

// The image's content into a temporary file in `dir`, checked against its size and sha256.
Result<std::shared_ptr<const http::BodyFile>> Assemble(store::Store& store, const std::string& dir,
                                                       const std::string& blob, int64_t size,
                                                       const std::string& sha256) {
    auto file = std::make_shared<http::BodyFile>(dir + "/image-" + RandomHex(8), /*temp=*/true);
    Fd fd(::open(file->path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.get() < 0) {
        return MakeError(ErrorCode::kUnavailable,
                         "cannot make a file for the image in " + dir + ": " + std::strerror(errno));
    }
    Sha256Hasher hasher;
    int64_t total = 0;
    for (int64_t seq = 0; total < size; ++seq) {
        COGS_ASSIGN_OR_RETURN(std::string chunk, store.GetChunk(blob, seq));
        hasher.Update(chunk);
        total += static_cast<int64_t>(chunk.size());
        COGS_TRY(WriteAll(fd.get(), chunk));
    }
    if (total != size || hasher.HexDigest() != sha256) {
        return MakeError(ErrorCode::kInternal,
                         "the stored content of the image does not match its size and sha256");
    }
    return std::shared_ptr<const http::BodyFile>(std::move(file));
}

}  // namespace

bool IsImageUpload(const http::Request& head) {
    if (head.method != "PUT") return false;
    const std::string path = head.Path();
    constexpr std::string_view kSuffix = "/file";
    // /v1's, and Glance's through the OpenStack face (openstack/storage.cc).
    for (std::string_view prefix : {"/v1/images/", "/image/v2/images/"}) {
        if (!path.starts_with(prefix) || !path.ends_with(kSuffix)) continue;
        const std::string_view id(path.data() + prefix.size(), path.size() - prefix.size() - kSuffix.size());
        return !id.empty() && id.find('/') == std::string_view::npos;
    }
    return false;
}

ImageFiles::ImageFiles(Context& ctx)
    : ctx_(ctx),
      stopping_(std::make_shared<std::atomic<bool>>(false)),
      pool_(std::make_unique<boost::asio::thread_pool>(2)) {}

ImageFiles::~ImageFiles() {
    *stopping_ = true;
    pool_->join();
}

void ImageFiles::Upload(Call call) {
    auto admitted = [&]() -> Result<std::pair<Res*, std::string>> {
        COGS_TRY(RequireAdmin(call.who));
        Res* img = ctx_.model.FindByIdOrName(kImage, call.Param("id"));
        if (img == nullptr) return MakeError(NotFound(kImage, call.Param("id")));
        if (uploading_.contains(img->id)) {
            return MakeError(ErrorCode::kConflict, "image " + img->id + " is being uploaded");
        }
        if (Str(img->body, "status") == "active") {
            return MakeError(ErrorCode::kConflict, "image " + img->id +
                                                       " has its content already: images are immutable "
                                                       "(delete it and create it again)");
        }
        COGS_ASSIGN_OR_RETURN(std::string expected, ExpectedSha(call.Query("sha256")));
        return std::make_pair(img, expected);
    }();
    if (!admitted) return call.Fail(admitted.error());
    // Not a structured binding: clang (the fuzz build) cannot capture one in the lambda below.
    auto* const img = admitted->first;
    const std::string expected = admitted->second;
    const std::string id = img->id;
    uploading_.insert(id);
    img->body["status"] = "saving";  // in memory only: a crash leaves the record as it was

    const std::string blob = id + "-" + RandomHex(8);
    const uint64_t max_bytes = ctx_.options.max_image_bytes;
    auto work = [this, call, id, expected, blob, max_bytes, stopping = stopping_]() mutable {
        std::shared_ptr<const http::BodyFile> body = call.body_file;
        Result<Staged> staged = [&]() -> Result<Staged> {
            if (body == nullptr) {
                // Not spooled (an in-process caller): the body in memory is the archive.
                if (call.body.size() > max_bytes) return MakeError(TooLarge(max_bytes));
                auto file =
                    std::make_shared<http::BodyFile>(SpoolDir(ctx_) + "/upload-" + RandomHex(8), true);
                Fd fd(::open(file->path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
                if (fd.get() < 0) return MakeError(ErrorCode::kUnavailable, "cannot spool the upload");
                COGS_TRY(WriteAll(fd.get(), call.body));
                body = std::move(file);
            }
            return Stage(ctx_.store, body->path, expected, blob, max_bytes, *stopping);
        }();
        body.reset();
        ctx_.Post([this, call = std::move(call), staged = std::move(staged), id, blob]() mutable {
            uploading_.erase(id);
            Res* img = ctx_.model.Find(kImage, id);
            if (!staged) {
                if (img != nullptr) img->body["status"] = "queued";
                http::Response r = wire::ApiError(staged.error());
                if (staged.error().reason == "image_too_large") r.status = 413;
                return call.Answer(std::move(r));
            }
            if (img == nullptr) {
                // Deleted meanwhile (not possible through the API while uploading; kept safe).
                auto& store = ctx_.store;
                boost::asio::post(*pool_, [&store, blob] { (void)store.DeleteChunks(blob); });
                return call.Fail(NotFound(kImage, id));
            }
            img->body["status"] = "active";
            img->body["size_bytes"] = staged->size;
            img->body["sha256"] = staged->sha256;
            img->body["_blob"] = blob;
            ctx_.Touch(*img);
            std::vector<store::EventRecord> events{ctx_.Event(
                kImage, img->id, "", "uploaded",
                "content uploaded: " + std::to_string(staged->size) + " bytes, sha256 " + staged->sha256)};
            ctx_.Persist({Model::Write(*img)}, std::move(events),
                         [respond = call.respond, view = Presented(200, *img)](Status st) mutable {
                             respond(st ? std::move(view) : wire::ApiError(st.error()));
                         });
        });
    };
    boost::asio::post(*pool_, std::move(work));
}

void ImageFiles::Download(Call call) {
    const Res* img = ctx_.model.FindByIdOrName(kImage, call.Param("id"));
    if (img == nullptr || !Visible(call.who, *img)) return call.Fail(NotFound(kImage, call.Param("id")));
    if (Str(img->body, "status") != "active") {
        return call.Fail(Error(ErrorCode::kConflict, "image " + img->id + " has no content (status " +
                                                         Str(img->body, "status") + ")"));
    }
    const std::string blob = Str(img->body, "_blob");
    const int64_t size = Int(img->body, "size_bytes");
    const std::string sha = Str(img->body, "sha256");
    const std::string dir = SpoolDir(ctx_);
    auto& store = ctx_.store;
    boost::asio::post(*pool_, [this, &store, call = std::move(call), dir, blob, size, sha]() mutable {
        auto file = Assemble(store, dir, blob, size, sha);
        ctx_.Post([call = std::move(call), file = std::move(file), size, sha]() mutable {
            if (!file) return call.Fail(file.error());
            http::Response r;
            r.status = 200;
            r.content_type = "application/octet-stream";
            r.headers.emplace_back("x-image-sha256", sha);
            r.headers.emplace_back("x-image-size", std::to_string(size));
            r.body_file = std::move(*file);
            call.Answer(std::move(r));
        });
    });
}

void ImageFiles::CollectOrphans() {
    if (!ctx_.store.Writable()) return;  // a later start collects them
    auto blobs = ctx_.store.ListBlobs();
    if (!blobs) {
        observe::Log("cloud").warn("images: cannot list stored image content: {}", blobs.error().ToString());
        return;
    }
    std::set<std::string> named;
    for (const auto& [id, img] : ctx_.model.All(kImage)) {
        named.insert(Str(img.body, "_blob"));
    }
    for (const std::string& blob : *blobs) {
        if (named.contains(blob)) continue;
        if (auto gone = ctx_.store.DeleteChunks(blob); !gone) {
            observe::Log("cloud").warn("images: cannot delete orphaned content {}: {}", blob,
                                       gone.error().ToString());
        } else {
            observe::Log("cloud").info("images: deleted {} chunks of content no image names ({})", *gone,
                                       blob);
        }
    }
}

void ImageFiles::Delete(Call call, std::function<void(Call)> erase) {
    const Res* img = ctx_.model.FindByIdOrName(kImage, call.Param("id"));
    if (img != nullptr && uploading_.contains(img->id) && call.who.admin()) {
        return call.Fail(Error(ErrorCode::kConflict, "image " + img->id + " is being uploaded"));
    }
    const std::string blob = img != nullptr ? Str(img->body, "_blob") : std::string();
    if (!blob.empty()) {
        // Once the record is gone (204), nothing names the blob: its chunks go, off the io thread.
        call.respond = [respond = std::move(call.respond), &store = ctx_.store, pool = pool_.get(),
                        blob](http::Response r) {
            if (r.status == 204) {
                boost::asio::post(*pool, [&store, blob] { (void)store.DeleteChunks(blob); });
            }
            respond(std::move(r));
        };
    }
    erase(std::move(call));
}

}  // namespace cogs::cloud
