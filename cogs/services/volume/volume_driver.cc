#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "cogs/observe/log.h"
#include "cogs/runtime/process.h"
#include "cogs/services/volume/volume.h"

namespace cogs::services::volume {
namespace {

using namespace std::chrono_literals;

// mkfs.ext4 of a sparse file takes tens of milliseconds; a stuck one must not hold the io thread.
constexpr Duration kMkfsDeadline = 20s;

class SimDriver final : public VolumeDriver {
public:
    std::string_view name() const override { return "sim"; }
    Result<std::string> Create(std::string_view, int64_t) override { return std::string(); }
    Status Delete(std::string_view) override { return Ok(); }
};

Error FromErrno(int err, const std::string& what) {
    std::string message = what + ": " + std::strerror(err);
    switch (err) {
        case ENOSPC:
        case EDQUOT: return Error(ErrorCode::kResourceExhausted, std::move(message));
        case EFBIG:
        case EINVAL: return Error(ErrorCode::kInvalidArgument, "size_gb: " + message);
        case EACCES:
        case EPERM:
        case EROFS: return Error(ErrorCode::kFailedPrecondition, std::move(message));
        default: return Error(ErrorCode::kUnavailable, std::move(message));
    }
}

class FileDriver final : public VolumeDriver {
public:
    FileDriver(std::string dir, std::string mkfs) : dir_(std::move(dir)), mkfs_(std::move(mkfs)) {}

    std::string_view name() const override { return "file"; }

    Result<std::string> Create(std::string_view id, int64_t size_gb) override {
        const std::string path = PathOf(id);
        const off_t size = static_cast<off_t>(size_gb) << 30;
        if (size_gb <= 0 || (size >> 30) != size_gb) {
            return MakeError(FieldError("size_gb", "out of range"));
        }
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            return MakeError(FromErrno(errno, "open " + path));
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            return MakeError(FromErrno(err, "stat " + path));
        }
        const bool fresh = st.st_size == 0;
        if (!fresh) {
            // A file without a record (the domain checks records first): a leftover of a create
            // whose record was never committed. Start it over empty, so that no stale bytes of the
            // earlier attempt show through, and format it again (the attempt may have ended before).
            observe::Log("volume").warn("volume {}: replacing leftover file {} of {} bytes", id, path,
                                        st.st_size);
        }
        if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, size) != 0) {
            const int err = errno;
            ::close(fd);
            if (fresh) {
                ::unlink(path.c_str());
            }
            return MakeError(FromErrno(err, "ftruncate " + path));
        }
        if (auto formatted = Format(path); !formatted) {
            ::close(fd);
            if (fresh) {
                ::unlink(path.c_str());
            }
            return MakeError(formatted.error());
        }
        // The file (its size and its directory entry) must survive a crash once the record that
        // the kit commits after this call says it exists.
        if (::fsync(fd) != 0) {
            const int err = errno;
            ::close(fd);
            return MakeError(FromErrno(err, "fsync " + path));
        }
        ::close(fd);
        if (fresh) {
            if (auto synced = SyncDir(); !synced) {
                return MakeError(synced.error());
            }
        }
        return path;
    }

    Status Delete(std::string_view id) override {
        const std::string path = PathOf(id);
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            return MakeError(FromErrno(errno, "unlink " + path));
        }
        return Ok();
    }

    std::optional<int64_t> AllocatedBytes(std::string_view id) const override {
        struct stat st {};
        if (::stat(PathOf(id).c_str(), &st) != 0) {
            return std::nullopt;
        }
        return static_cast<int64_t>(st.st_blocks) * 512;
    }

private:
    // An ext4 file system on the whole file, ready to mount (mount -o loop). Only metadata is
    // written: the inode tables and the journal are left to be zeroed lazily (by the kernel, after
    // the first mount), so a new volume's file stays sparse (~16 MiB allocated for 1 TiB). No reserved
    // blocks: a data volume, not a root file system.
    Status Format(const std::string& path) const {
        auto out = runtime::RunCommand({mkfs_, "-q", "-F", "-t", "ext4", "-m", "0", "-E",
                                        "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path},
                                       SteadyClock::now() + kMkfsDeadline);
        if (!out) {
            return MakeError(ErrorCode::kUnavailable, "mkfs.ext4 " + path + ": " + out.error().message);
        }
        if (out->exit_status != 0) {
            return MakeError(ErrorCode::kUnavailable, "mkfs.ext4 " + path + " failed (status " +
                                                          std::to_string(out->exit_status) +
                                                          "): " + out->output);
        }
        return Ok();
    }

    Status SyncDir() const {
        const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            return MakeError(FromErrno(errno, "open " + dir_));
        }
        const int rc = ::fsync(dfd);
        const int err = errno;
        ::close(dfd);
        if (rc != 0) {
            return MakeError(FromErrno(err, "fsync " + dir_));
        }
        return Ok();
    }

    std::string PathOf(std::string_view id) const { return dir_ + "/" + std::string(id) + ".img"; }

    std::string dir_;
    std::string mkfs_;  // mkfs.ext4's path
};

}  // namespace

Result<std::unique_ptr<VolumeDriver>> MakeVolumeDriver(std::string name, std::string dir) {
    if (name == "sim") {
        return std::unique_ptr<VolumeDriver>(std::make_unique<SimDriver>());
    }
    if (name == "file") {
        if (dir.empty()) {
            return MakeError(ErrorCode::kInvalidArgument, "volume dir: required by the file driver");
        }
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec || !std::filesystem::is_directory(dir)) {
            return MakeError(ErrorCode::kInvalidArgument, "volume dir " + dir + ": cannot create: " +
                                                              (ec ? ec.message() : "not a directory"));
        }
        while (dir.size() > 1 && dir.back() == '/') {
            dir.pop_back();
        }
        std::string mkfs;
        for (const char* candidate : {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}) {
            if (::access(candidate, X_OK) == 0) {
                mkfs = candidate;
                break;
            }
        }
        if (mkfs.empty()) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "the file driver formats volumes with mkfs.ext4, which is missing "
                             "(scripts/install-deps installs e2fsprogs)");
        }
        return std::unique_ptr<VolumeDriver>(std::make_unique<FileDriver>(std::move(dir), std::move(mkfs)));
    }
    return MakeError(ErrorCode::kInvalidArgument, "driver: unknown volume driver '" + name + "' (sim, file)");
}

}  // namespace cogs::services::volume
