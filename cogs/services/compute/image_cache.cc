// The image cache: cogsd over a private io_context (the calls block a worker thread, never the
// agent's io thread), the archive saved to a file, hashed, listed, extracted.
#include "cogs/services/compute/internal/image_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include "cogs/base/secret.h"
#include "cogs/http/client.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"

namespace cogs::services::compute::internal {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

Error Definitive(std::string message) {
    return Error(ErrorCode::kFailedPrecondition, std::move(message), false);
}

std::string TarPath() {
    for (const char* p : {"/usr/bin/tar", "/bin/tar"}) {
        if (::access(p, X_OK) == 0) return p;
    }
    return "/usr/bin/tar";
}

Result<std::string> FileSha256(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return MakeError(ErrorCode::kUnavailable, path + ": " + std::strerror(errno));
    Sha256Hasher hasher;
    std::string buf(1 << 20, '\0');
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const bool failed = n < 0;
            ::close(fd);
            if (failed) return MakeError(ErrorCode::kUnavailable, path + ": read failed");
            break;
        }
        hasher.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    return hasher.HexDigest();
}

// A member name that would land outside the directory it is extracted in.
bool Unsafe(std::string_view name) {
    if (name.starts_with("/")) return true;
    size_t start = 0;
    while (start <= name.size()) {
        const size_t end = std::min(name.find('/', start), name.size());
        if (name.substr(start, end - start) == "..") return true;
        start = end + 1;
    }
    return false;
}

// One request to cogsd over a private io_context: the first control url that answers.
Result<http::Response> Exchange(const ImageCacheOptions& o, http::Request req, SteadyTime deadline) {
    std::optional<Error> last;
    for (const std::string& url : o.control_urls) {
        auto ep = http::ParseHttpUrl(url);
        if (!ep) return MakeError(ErrorCode::kInvalidArgument, "not a control url: " + url);
        boost::asio::io_context io;
        if (ep->tls && o.tls == nullptr) {
            return MakeError(ErrorCode::kInvalidArgument, "control url " + url + " is https: no TLS context");
        }
        auto client = http::MakeClient(
            io,
            http::ClientOptions{
                .host = ep->host, .port = ep->port, .max_connections = 1, .tls = ep->tls ? o.tls : nullptr});
        std::optional<Result<http::Response>> got;
        client->Send(req, deadline, [&](Result<http::Response> r) { got = std::move(r); });
        while (!got && io.run_one() > 0) {
        }
        client.reset();
        io.poll();
        if (got && *got && (*got)->status < 500) return std::move(**got);
        last = got && *got
                   ? Error(ErrorCode::kUnavailable, url + " answered " + std::to_string((*got)->status))
               : got ? (*got).error()
                     : Error(ErrorCode::kUnavailable, url + ": no answer");
    }
    if (!last) return MakeError(ErrorCode::kInvalidArgument, "no control url to download images from");
    return MakeError(Error(ErrorCode::kUnavailable, "cogsd: " + last->message, true));
}

http::Request Get(const ImageCacheOptions& o, std::string target) {
    http::Request req;
    req.method = "GET";
    req.target = std::move(target);
    if (!o.token.empty()) req.headers.emplace_back("authorization", "Bearer " + o.token);
    return req;
}

}  // namespace

ImageCache::ImageCache(ImageCacheOptions options) : options_(std::move(options)) {}

uint64_t ImageCache::downloads() const {
    std::lock_guard lock(mu_);
    return downloads_;
}

Result<std::string> ImageCache::Rootfs(const std::string& ref) {
    std::string out;
    COGS_TRY(Use(ref, [&out](const std::string& rootfs) {
        out = rootfs;
        return Ok();
    }));
    return out;
}

Status ImageCache::Use(const std::string& ref, const std::function<Status(const std::string& rootfs)>& use) {
    const SteadyTime deadline = SteadyClock::now() + options_.timeout;
    // What the image is now: its id and checksum (a name may be taken again by another image).
    COGS_ASSIGN_OR_RETURN(http::Response shown,
                          Exchange(options_, Get(options_, "/v1/images/" + http::UrlEncode(ref)), deadline));
    if (shown.status == 404) return MakeError(Definitive("image " + ref + " does not exist"));
    if (shown.status != 200) {
        return MakeError(Definitive("image " + ref + ": cogsd answered " + std::to_string(shown.status) +
                                    ": " + shown.body.substr(0, 200)));
    }
    boost::system::error_code ec;
    json::value v = json::parse(shown.body, ec);
    const json::object* img =
        !ec && v.is_object() && v.as_object().contains("image") && v.as_object().at("image").is_object()
            ? &v.as_object().at("image").as_object()
            : nullptr;
    auto field = [img](std::string_view k) -> std::string {
        const json::value* f = img != nullptr ? img->if_contains(k) : nullptr;
        return f != nullptr && f->is_string() ? std::string(f->as_string()) : "";
    };
    const std::string id = field("id");
    const std::string sha = field("sha256");
    if (id.empty() || id.find('/') != std::string::npos || id == "." || id == "..") {
        return MakeError(Definitive("image " + ref + ": cogsd's answer names no usable id"));
    }
    if (field("status") != "active" || sha.empty()) {
        return MakeError(Definitive("image " + ref + " has no content (status " + field("status") + ")"));
    }
    std::shared_ptr<std::mutex> lock;
    {
        std::lock_guard g(mu_);
        auto& l = per_image_[id];
        if (l == nullptr) l = std::make_shared<std::mutex>();
        lock = l;
    }
    std::lock_guard held(*lock);  // one download; and no eviction while `use` runs
    const std::string dir = options_.dir + "/" + id;
    if (auto kept = runtime::ReadFile(dir + "/sha256");
        kept && *kept == sha && fs::is_directory(dir + "/rootfs")) {
        std::error_code ec;
        fs::last_write_time(dir + "/sha256", fs::file_time_type::clock::now(), ec);  // used now
        return use(dir + "/rootfs");
    }
    COGS_ASSIGN_OR_RETURN(const std::string rootfs, Fetch(id, sha));
    Evict(id);
    return use(rootfs);
}

void ImageCache::Evict(const std::string& keep) {
    struct Kept {
        fs::file_time_type used;
        std::string id;
    };
    std::vector<Kept> kept;
    std::error_code ec;
    for (fs::directory_iterator it(options_.dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code ec2;
        const fs::file_time_type used = fs::last_write_time(it->path() / "sha256", ec2);
        kept.push_back({ec2 ? fs::file_time_type::min() : used, it->path().filename().string()});
    }
    const size_t max_images = std::max<size_t>(options_.max_images, 1);
    if (kept.size() <= max_images) return;
    std::sort(kept.begin(), kept.end(), [](const Kept& a, const Kept& b) { return a.used < b.used; });
    size_t over = kept.size() - max_images;
    std::lock_guard g(mu_);
    for (const Kept& k : kept) {
        if (over == 0) break;
        if (k.id == keep) continue;
        auto& l = per_image_[k.id];
        if (l == nullptr) l = std::make_shared<std::mutex>();
        std::unique_lock victim(*l, std::try_to_lock);
        if (!victim.owns_lock()) continue;  // in use (or being downloaded): kept for now
        fs::remove_all(options_.dir + "/" + k.id, ec);
        victim.unlock();
        if (l.use_count() == 1) per_image_.erase(k.id);  // nobody waits for it
        --over;
    }
}

Result<std::string> ImageCache::Fetch(const std::string& id, const std::string& sha256) {
    const SteadyTime deadline = SteadyClock::now() + options_.timeout;
    const std::string dir = options_.dir + "/" + id;
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    if (ec) return MakeError(ErrorCode::kUnavailable, "cannot make " + dir + ": " + ec.message());
    const std::string archive = dir + "/archive.tar.gz";
    auto cleanup = [&] { fs::remove(archive, ec); };

    http::Request req = Get(options_, "/v1/images/" + http::UrlEncode(id) + "/file");
    req.response_file = archive;
    req.response_file_max_bytes = options_.max_bytes;
    auto got = Exchange(options_, std::move(req), deadline);
    if (!got) {
        cleanup();
        if (got.error().code == ErrorCode::kInvalidArgument) {
            return MakeError(Definitive("image " + id + ": " + got.error().message));
        }
        return MakeError(got.error());
    }
    {
        std::lock_guard g(mu_);
        ++downloads_;
    }
    if (got->status != 200) {
        std::string said = runtime::ReadFile(archive).value_or("");
        cleanup();
        return MakeError(Definitive("image " + id + ": its download was answered " +
                                    std::to_string(got->status) + ": " + said.substr(0, 200)));
    }
    COGS_ASSIGN_OR_RETURN(std::string downloaded, FileSha256(archive));
    if (downloaded != sha256) {
        cleanup();
        return MakeError(Definitive("image " + id + ": checksum mismatch: the download's sha256 is " +
                                    downloaded + ", the image's " + sha256));
    }
    auto listed = runtime::RunCommand({TarPath(), "-tzf", archive}, deadline,
                                      runtime::RunOptions{.max_output = 16 << 20});
    if (!listed || listed->exit_status != 0) {
        cleanup();
        return MakeError(Definitive("image " + id + ": tar cannot list it: " +
                                    (listed ? listed->output.substr(0, 300) : listed.error().message)));
    }
    std::istringstream names(listed->output);
    for (std::string name; std::getline(names, name);) {
        if (Unsafe(name)) {
            cleanup();
            return MakeError(
                Definitive("image " + id + ": unsafe member '" + name + "' (an absolute path or ..)"));
        }
    }
    const std::string fresh = dir + "/rootfs.new";
    fs::create_directories(fresh, ec);
    auto extracted =
        runtime::RunCommand({TarPath(), "-xzf", archive, "--no-same-owner", "-C", fresh}, deadline);
    cleanup();
    if (!extracted || extracted->exit_status != 0) {
        fs::remove_all(fresh, ec);
        return MakeError(
            Definitive("image " + id + ": tar cannot extract it: " +
                       (extracted ? extracted->output.substr(0, 300) : extracted.error().message)));
    }
    fs::rename(fresh, dir + "/rootfs", ec);
    if (ec) return MakeError(ErrorCode::kUnavailable, "cannot keep image " + id + ": " + ec.message());
    COGS_TRY(runtime::WriteFileAtomic(dir + "/sha256", sha256));
    return dir + "/rootfs";
}

}  // namespace cogs::services::compute::internal
