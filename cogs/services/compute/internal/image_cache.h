// ImageCache: the images a host's container instances boot from, downloaded from the control plane
// once per host (GET /v1/images/{ref}, then GET /v1/images/{id}/file; docs/api.md "Image
// content"), checked against the image's sha256 and extracted, then kept: an image's content never
// changes (images are immutable), so its id names it for good.
//
//   <dir>/<image id>/rootfs     the extracted root filesystem (made aside and renamed: a half-made
//                               one is never taken for the image)
//   <dir>/<image id>/sha256     the sha256 it was extracted from (written last)
//
// Extraction is `tar -xzf --no-same-owner` under a deadline, after the archive's listing showed no
// absolute path and no ".." component.
//
// Bounded: at most max_images images are kept. Once a download has added one more, the images used
// least recently (the mtime of their sha256 file, touched at every use) go, except those in use
// (Use holds its image): instances copy their image at their first boot, so an image dropped
// from the cache is only downloaded again at the next first boot of one (as Nova's image cache
// manager removes unused base images).
//
// Threading: Use and Rootfs block (HTTP, hashing, tar): call them on a worker thread. They may be
// called from several threads at once: the calls for one image wait for one download. The
// directory is one process's (an agent's): two processes must not share one.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"

namespace cogs::services::compute::internal {

struct ImageCacheOptions {
    std::string dir;                              // absolute; made if missing
    std::vector<std::string> control_urls;        // cogsd, "http://HOST:PORT" each: tried in order
    std::string token;                            // bearer token for cogsd; "": none sent
    std::shared_ptr<http::TlsContext> tls{};      // for https control urls (required then)
    Duration timeout = std::chrono::minutes(10);  // one image's look-up, download and extraction
    uint64_t max_bytes = uint64_t{4} << 30;       // the largest archive downloaded
    size_t max_images = 8;                        // images kept (>= 1); the least recently used go
};

class ImageCache {
public:
    explicit ImageCache(ImageCacheOptions options);

    // The extracted root filesystem of the image `ref` (its name or id, as a server names it),
    // downloaded first if this host does not have it.
    // Errors: kFailedPrecondition, not retryable — no such image, an image without content, a
    // download whose sha256 is not the image's, an archive that is unsafe or tar cannot extract;
    // kUnavailable, retryable — cogsd cannot be reached or answers 5xx, a local file cannot be written.
    Result<std::string> Rootfs(const std::string& ref);
    // Runs `use` with that root filesystem while holding the image: it is not evicted meanwhile.
    // Rootfs's errors, or use's.
    Status Use(const std::string& ref, const std::function<Status(const std::string& rootfs)>& use);

    // Downloads done (for tests: a second boot of an image downloads nothing).
    uint64_t downloads() const;

private:
    Result<std::string> Fetch(const std::string& id, const std::string& sha256);
    // Removes the least recently used images beyond max_images, but `keep` and those in use.
    void Evict(const std::string& keep);

    const ImageCacheOptions options_;
    mutable std::mutex mu_;
    std::map<std::string, std::shared_ptr<std::mutex>> per_image_;  // guarded by mu_
    uint64_t downloads_ = 0;                                        // guarded by mu_
};

}  // namespace cogs::services::compute::internal
