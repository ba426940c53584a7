// Image content (docs/api.md, "Image content"): the root filesystem archive of an image, uploaded
// once, kept in the store in chunks so that every replica can serve it, and downloaded by the
// compute agents (which cache it per host by id and check its sha256).
//
//   PUT  /v1/images/{id}/file[?sha256=HEX]  admin; the body is a gzip-compressed tar archive
//   GET  /v1/images/{id}/file               anyone who sees the image; the archive as uploaded
//   DELETE /v1/images/{id}                  the catalog's delete, then the content goes
//
// An image's status: "queued" (created, no content) → "saving" (an upload in flight; in memory
// only, so a crash mid-upload leaves it "queued") → "active" (size_bytes and sha256 set; the
// content is immutable: a second upload is 409). The upload is checked before anything of it is
// kept: over CloudOptions::max_image_bytes 413, not gzip (its magic) or not a tar archive
// (`tar -tzf` lists it, within a deadline) 400, a sha256 given that differs 400. Then it is
// written to the store chunk by chunk (kChunkBytes each, under a blob id of its own), and the
// record, naming the blob, is committed once every chunk is durable: an upload that fails or is
// cut off leaves the record as it was (its chunks are deleted; what a crash leaves behind is
// collected at the next start, CollectOrphans).
//
// The body arrives as a file spooled by cogs/http (cloud.h's IsImageUpload says which requests), so neither
// the upload nor the download ever holds more than a chunk in memory; both run on a worker thread
// of this module, never on the io thread.
//
// Threading: the handlers run on the io thread; the work on the module's own two threads.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>

#include "cogs/cloud/api/call.h"
#include "cogs/cloud/core/context.h"

namespace boost::asio {
class thread_pool;
}

namespace cogs::cloud {

class ImageFiles {
public:
    static constexpr size_t kChunkBytes = size_t{1} << 20;

    explicit ImageFiles(Context& ctx);
    // Stops the uploads in flight (at their next chunk) and waits for the worker threads.
    ~ImageFiles();
    ImageFiles(const ImageFiles&) = delete;
    ImageFiles& operator=(const ImageFiles&) = delete;

    void Upload(Call call);    // PUT /v1/images/{id}/file
    void Download(Call call);  // GET /v1/images/{id}/file
    // DELETE /v1/images/{id}: 409 while an upload is in flight; else the catalog's delete (`erase`),
    // and once it answered 204, the image's chunks are deleted.
    void Delete(Call call, std::function<void(Call)> erase);
    // At start-up (Cloud::Load, with the model loaded and no upload in flight): deletes the chunks
    // of every blob no image names — an upload cut short by a crash. Blocking; failures are logged
    // (the next start tries again).
    void CollectOrphans();

private:
    Context& ctx_;
    std::set<std::string> uploading_;  // image ids with an upload in flight (io thread)
    std::shared_ptr<std::atomic<bool>> stopping_;
    std::unique_ptr<boost::asio::thread_pool> pool_;
};

}  // namespace cogs::cloud
