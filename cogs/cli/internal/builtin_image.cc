#include "cogs/cli/internal/builtin_image.h"

#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/runtime/process.h"

namespace cogs::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string FindBusybox() {
    for (const char* p : {"/bin/busybox", "/usr/bin/busybox"}) {
        if (::access(p, X_OK) == 0) return p;
    }
    return "";
}

tl::expected<void, std::string> MakeBusyboxRootfs(const std::string& busybox, const std::string& work_dir,
                                                  const std::string& archive) {
    const fs::path root = fs::path(work_dir) / "busybox-rootfs";
    std::error_code ec;
    fs::remove_all(root, ec);
    fs::create_directories(root / "bin", ec);
    if (!ec) fs::create_directories(root / "etc", ec);
    if (!ec) fs::create_directories(root / "tmp", ec);
    if (!ec) fs::copy_file(busybox, root / "bin/busybox", fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::create_symlink("busybox", root / "bin/sh", ec);
    if (ec) return tl::unexpected(fmt::format("cannot lay out {}: {}", root.string(), ec.message()));
    // --owner/--group: the archive does not carry this machine's user ids.
    auto tar = runtime::RunCommand(
        {"/usr/bin/tar", "--owner=0", "--group=0", "-czf", archive, "-C", root.string(), "."},
        SteadyClock::now() + 60s);
    fs::remove_all(root, ec);
    if (!tar) return tl::unexpected("tar: " + tar.error().message);
    if (tar->exit_status != 0) return tl::unexpected("tar: " + tar->output);
    return {};
}

bool RegisterBusyboxImage(ApiClient& api, const std::string& work_dir, std::ostream& err) {
    const std::string busybox = FindBusybox();
    if (busybox.empty()) {
        err << "cogs dev: no busybox-static on this machine (apt-get install busybox-static): "
               "the built-in image busybox is not registered\n";
        return true;
    }
    auto existing = api.List("/v1/images?name=busybox");
    if (!existing) {
        err << fmt::format("cogs dev: image busybox: {} ({})\n", existing.error().message,
                           existing.error().code);
        return false;
    }
    std::string id;
    for (const auto& v : *existing) {
        if (!v.is_object() || Cell(v.as_object(), "name") != "busybox") continue;
        if (Cell(v.as_object(), "status") == "active") return true;  // registered at an earlier start
        id = Cell(v.as_object(), "id");
    }
    if (id.empty()) {
        json::value body = json::object{{"name", "busybox"}, {"os", "linux"}};
        auto made = api.Call("POST", "/v1/images", &body);
        if (!made) {
            err << fmt::format("cogs dev: image busybox: {} ({})\n", made.error().message, made.error().code);
            return false;
        }
        id = Cell(Unwrap(*made), "id");
    }
    const std::string archive = (fs::path(work_dir) / "busybox.tar.gz").string();
    if (auto made = MakeBusyboxRootfs(busybox, work_dir, archive); !made) {
        err << "cogs dev: image busybox: " << made.error() << "\n";
        return true;  // the cloud works without it
    }
    auto uploaded = api.PutFile("/v1/images/" + http::UrlEncode(id) + "/file", archive, 120s);
    std::error_code ec;
    fs::remove(archive, ec);
    if (!uploaded) {
        err << fmt::format("cogs dev: image busybox: upload: {} ({})\n", uploaded.error().message,
                           uploaded.error().code);
        return false;
    }
    const json::object& image = Unwrap(*uploaded);
    err << fmt::format("cogs dev: registered image busybox ({} bytes, sha256 {})\n",
                       Cell(image, "size_bytes"), Cell(image, "sha256"));
    return true;
}

}  // namespace cogs::cli
