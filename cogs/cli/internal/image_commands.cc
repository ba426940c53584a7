// `cogs image create NAME [--os OS] [--min-disk-gb N] [--file ARCHIVE]`: the image, then (with
// --file) its root filesystem archive uploaded with its sha256, so that the control plane checks
// what it received (docs/api.md, "Image content").
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/cli/internal/invocation.h"
#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/special_commands.h"
#include "cogs/http/server.h"

namespace cogs::cli {
namespace {

using namespace std::chrono_literals;

// An upload of the largest image cogsd takes by default (512 MiB) over a slow link still fits.
constexpr Duration kUploadTimeout = 30min;

struct ImageCreateOptions {
    std::string name;
    std::string os;
    int64_t min_disk_gb = -1;
    std::string file;
};

// The sha256 of the file, read in pieces; an error message if it cannot be read.
tl::expected<std::string, std::string> FileSha256(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return tl::unexpected(fmt::format("--file {}: {}", path, std::strerror(errno)));
    }
    Sha256Hasher hasher;
    std::string buf(1 << 20, '\0');
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const std::string why = std::strerror(errno);
            ::close(fd);
            return tl::unexpected(fmt::format("--file {}: {}", path, why));
        }
        if (n == 0) break;
        hasher.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    ::close(fd);
    return hasher.HexDigest();
}

int ImageCreate(Invocation& inv, const Resource& images, const ImageCreateOptions& o) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    // The file is read before anything is created: a wrong path changes nothing.
    std::string sha256;
    if (!o.file.empty()) {
        auto sha = FileSha256(o.file);
        if (!sha) {
            return inv.Usage(sha.error());
        }
        sha256 = std::move(*sha);
    }
    json::object body{{"name", o.name}};
    if (!o.os.empty()) body["os"] = o.os;
    if (o.min_disk_gb >= 0) body["min_disk_gb"] = o.min_disk_gb;
    json::value v = std::move(body);
    auto made = api->Call("POST", "/v1/images", &v);
    if (!made) {
        return inv.Fail(made.error());
    }
    if (o.file.empty()) {
        inv.PrintObject(*made);
        return 0;
    }
    const std::string id = Cell(Unwrap(*made), "id");
    auto uploaded = api->PutFile(images.Path(id) + "/file?sha256=" + sha256, o.file, kUploadTimeout);
    if (!uploaded) {
        // An image without content is of no use: take it back, so that a refused archive changes
        // nothing (best effort; its id is in the message otherwise).
        auto erased = api->Call("DELETE", images.Path(id));
        if (!erased) {
            inv.err() << fmt::format("cogs: image {} ({}) was created but its upload failed; delete it\n",
                                     o.name, id);
        }
        return inv.Fail(uploaded.error());
    }
    inv.PrintObject(*uploaded);
    return 0;
}

}  // namespace

void AddImageCreate(Invocation& inv, const Resource& images, const Verb& verb, CLI::App* group) {
    auto o = std::make_shared<ImageCreateOptions>();
    CLI::App* c =
        inv.Leaf(group, verb.name, verb.help, [&inv, &images, o] { return ImageCreate(inv, images, *o); });
    c->add_option("name", o->name, "image name")->required();
    c->add_option("--os", o->os, "operating system");
    c->add_option("--min-disk-gb", o->min_disk_gb, "the smallest root disk it boots from, in GiB")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--file", o->file,
                  "its root filesystem, a gzip-compressed tar archive: uploaded with its sha256 "
                  "(the image is deleted again if the upload is refused)");
}

}  // namespace cogs::cli
