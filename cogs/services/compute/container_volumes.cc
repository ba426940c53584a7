// The container driver's volumes: mounts on the host that propagate into the instance
// (internal/container_volumes.h has the model).
#include "cogs/services/compute/internal/container_volumes.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cogs/observe/log.h"
#include "cogs/runtime/process.h"

namespace cogs::services::compute::internal {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr Duration kMountDeadline = 30s;
// How long a busy volume's unmount is tried again before the detach fails (a process inside may
// be about to leave it, e.g. a shell whose command ends).
constexpr Duration kBusyPatience = 3s;

// A field of /proc/self/mountinfo with its octal escapes (\040 for a space) undone.
std::string Unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
            out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 3)), nullptr, 8)));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// The mount points of this mount namespace.
std::vector<std::string> MountPoints() {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, mount_point;
        if (fields >> id >> parent >> dev >> root >> mount_point) {
            out.push_back(Unescape(mount_point));
        }
    }
    return out;
}

std::string MountBinary() {
    for (const char* candidate : {"/usr/bin/mount", "/bin/mount"}) {
        if (::access(candidate, X_OK) == 0) {
            return candidate;
        }
    }
    return "mount";
}

Status Mount(const std::string& volumes_dir, const VolumeMount& v) {
    const std::string target = volumes_dir + "/" + v.volume_id;
    struct stat st {};
    if (::stat(v.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return MakeError(Error(ErrorCode::kFailedPrecondition,
                               "volume " + v.volume_id + ": its file " + v.path + " is not on this host",
                               /*retry=*/false));
    }
    if (::mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) {
        return MakeError(ErrorCode::kUnavailable, "mkdir " + target + ": " + std::strerror(errno));
    }
    if (IsMountPoint(target)) {
        return Ok();
    }
    // mount(8) sets up the loop device itself, with autoclear: the kernel frees it at the unmount.
    auto out = runtime::RunCommand({MountBinary(), "-t", "ext4", "-o", "loop,nosuid,nodev", v.path, target},
                                   SteadyClock::now() + kMountDeadline);
    if (!out) {
        return MakeError(ErrorCode::kUnavailable,
                         "volume " + v.volume_id + ": mount: " + out.error().message);
    }
    if (out->exit_status != 0) {
        // Also when its file system is mounted elsewhere already (mount refuses a second loop device
        // on the same file: "overlapping loop device exists").
        return MakeError(ErrorCode::kUnavailable,
                         "volume " + v.volume_id + ": mount " + v.path + " failed: " + out->output);
    }
    return Ok();
}

Status Unmount(const std::string& target) {
    const auto give_up = SteadyClock::now() + kBusyPatience;
    while (IsMountPoint(target)) {
        if (::umount2(target.c_str(), 0) == 0) {
            continue;  // a mount stacked on another: the next one
        }
        const int err = errno;
        if (err == EINVAL) {
            break;  // no longer a mount point
        }
        if (err != EBUSY) {
            return MakeError(ErrorCode::kUnavailable, "unmount " + target + ": " + std::strerror(err));
        }
        if (SteadyClock::now() >= give_up) {
            // Never lazily (MNT_DETACH): the file system would stay mounted, out of sight, while the
            // volume is attached elsewhere.
            return MakeError(Error(ErrorCode::kFailedPrecondition,
                                   "volume " + fs::path(target).filename().string() +
                                       " is busy inside the instance (a process uses it): not detached",
                                   /*retry=*/false));
        }
        std::this_thread::sleep_for(100ms);
    }
    if (::rmdir(target.c_str()) != 0 && errno != ENOENT) {
        return MakeError(ErrorCode::kUnavailable, "rmdir " + target + ": " + std::strerror(errno));
    }
    return Ok();
}

}  // namespace

bool IsMountPoint(const std::string& path) {
    const std::string normal = fs::path(path).lexically_normal().string();
    const auto points = MountPoints();
    return std::find(points.begin(), points.end(), normal) != points.end();
}

Result<std::string> EnsureVolumesDir(const std::string& instance_dir) {
    const std::string dir = instance_dir + "/volumes";
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
        return MakeError(ErrorCode::kUnavailable, "cannot make " + dir + ": " + ec.message());
    }
    if (!IsMountPoint(dir) && ::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
        return MakeError(ErrorCode::kUnavailable, "bind " + dir + ": " + std::strerror(errno));
    }
    // Shared, so that the container's slave bind of it receives what is mounted here later.
    if (::mount(nullptr, dir.c_str(), nullptr, MS_SHARED, nullptr) != 0) {
        return MakeError(ErrorCode::kUnavailable, "make " + dir + " shared: " + std::strerror(errno));
    }
    return dir;
}

Status SyncHostVolumes(const std::string& volumes_dir, const std::vector<VolumeMount>& volumes) {
    Status first = Ok();
    auto keep = [&](Status s) {
        if (!s && first) {
            first = std::move(s);
        }
    };
    // Unmount first: a volume moved between two of this host's instances is free again before it
    // is mounted for the other.
    std::vector<std::string> present;
    std::error_code ec;
    for (fs::directory_iterator it(volumes_dir, ec), end; !ec && it != end; it.increment(ec)) {
        present.push_back(it->path().filename().string());
    }
    if (ec) {
        keep(MakeError(ErrorCode::kUnavailable, "list " + volumes_dir + ": " + ec.message()));
    }
    for (const std::string& name : present) {
        const bool wanted = std::any_of(volumes.begin(), volumes.end(), [&](const VolumeMount& v) {
            return v.volume_id == name && !v.path.empty();
        });
        if (!wanted) {
            keep(Unmount(volumes_dir + "/" + name));
        }
    }
    for (const VolumeMount& v : volumes) {
        if (!v.path.empty()) {
            keep(Mount(volumes_dir, v));
        }
    }
    return first;
}

}  // namespace cogs::services::compute::internal
