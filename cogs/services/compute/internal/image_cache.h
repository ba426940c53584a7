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
// Threading: Rootfs blocks (HTTP, hashing, tar): call it on a worker thread. It may be called from
// several threads at once: the calls for one image wait for one download.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::services::compute::internal {

struct ImageCacheOptions {
    std::string dir;                              // absolute; made if missing
    std::vector<std::string> control_urls;        // cogsd, "http://HOST:PORT" each: tried in order
    std::string token;                            // bearer token for cogsd; "": none sent
    Duration timeout = std::chrono::minutes(10);  // one image's look-up, download and extraction
    uint64_t max_bytes = uint64_t{4} << 30;       // the largest archive downloaded
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

    // Downloads done (for tests: a second boot of an image downloads nothing).
    uint64_t downloads() const;

private:
    Result<std::string> Fetch(const std::string& id, const std::string& sha256);

    const ImageCacheOptions options_;
    mutable std::mutex mu_;
    std::map<std::string, std::shared_ptr<std::mutex>> per_image_;  // guarded by mu_
    uint64_t downloads_ = 0;                                        // guarded by mu_
};

}  // namespace cogs::services::compute::internal
