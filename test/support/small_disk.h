// A small file system a test can fill: a tmpfs of a few MiB mounted on a fresh directory, for the
// tests of a full disk. Header-only.
//
// Mounting needs root (CI runs as root): Mount() says why it cannot, and the test skips with that
// message. The mount never outlives the test process: it is made in a mount namespace of the
// process's own when the kernel allows it (unshare, only while the process has one thread), so it
// goes with the process however that ends, even a crash; otherwise the destructor unmounts (lazily:
// a file still open does not keep it), and an exit or a fatal signal before it does too (the
// cleanup is registered with atexit and as the handler of SIGABRT, SIGSEGV, SIGTERM, SIGINT).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test/support/temp_dir.h"

namespace cogs::testing {

class SmallDisk {
public:
    SmallDisk() = default;
    SmallDisk(const SmallDisk&) = delete;
    SmallDisk& operator=(const SmallDisk&) = delete;
    ~SmallDisk() { Unmount(); }

    // Mounts a tmpfs of `mib` MiB on path(); an empty string, or why not (the test skips with it).
    std::string Mount(int mib = 8) {
        if (::geteuid() != 0) {
            return "needs root to mount a tmpfs (CI runs as root): skipped";
        }
        // A namespace of our own: the mount is gone with the process, whatever ends it. The rest
        // of the system does not see it. unshare refuses once the process has threads.
        if (::unshare(CLONE_NEWNS) == 0) {
            (void)::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
        }
        const std::string opts = "size=" + std::to_string(mib) + "m";
        if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, opts.c_str()) != 0) {
            return std::string("mount -t tmpfs -o ") + opts + " " + dir_.path() + ": " +
                   std::strerror(errno) + ": skipped";
        }
        mounted_ = true;
        Mounted() = dir_.path();
        std::atexit(UnmountAtExit);
        for (int sig : {SIGABRT, SIGSEGV, SIGTERM, SIGINT}) {
            std::signal(sig, UnmountOnSignal);
        }
        return "";
    }

    const std::string& path() const { return dir_.path(); }
    std::string operator/(std::string_view name) const { return dir_ / name; }

    // Writes a filler file until the file system is full (ENOSPC); its size in bytes.
    int64_t Fill() {
        const int fd = ::open((dir_ / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
            return -1;
        }
        std::vector<char> block(4096, 'x');
        for (size_t chunk : {size_t{1} << 20, size_t{4096}, size_t{512}, size_t{1}}) {
            block.resize(chunk, 'x');
            while (::write(fd, block.data(), chunk) == static_cast<ssize_t>(chunk)) {
                filled_ += static_cast<int64_t>(chunk);
            }
        }
        ::close(fd);
        return filled_;
    }
    // Deletes the filler: the space is back.
    void Free() {
        ::unlink((dir_ / "filler").c_str());
        filled_ = 0;
    }

private:
    static std::string& Mounted() {
        static std::string path;
        return path;
    }
    static void UnmountAtExit() {
        if (!Mounted().empty()) {
            ::umount2(Mounted().c_str(), MNT_DETACH);
        }
    }
    static void UnmountOnSignal(int sig) {
        UnmountAtExit();
        std::signal(sig, SIG_DFL);
        std::raise(sig);
    }
    void Unmount() {
        if (mounted_) {
            ::umount2(dir_.path().c_str(), MNT_DETACH);
            Mounted().clear();
            mounted_ = false;
        }
    }

    const TempDir dir_{"cogs-small-disk"};  // removed after the unmount (members go in reverse order)
    bool mounted_ = false;
    int64_t filled_ = 0;
};

}  // namespace cogs::testing
