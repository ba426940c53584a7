#include "cogs/store/internal/wal_syncer.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cogs/base/check.h"

namespace cogs::store::internal {

WalSyncer::WalSyncer(int fd) : fd_(fd) {
    thread_ = std::thread([this] { Loop(); });
}

WalSyncer::~WalSyncer() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    work_cv_.notify_one();
    thread_.join();
    ::close(fd_);
}

Result<std::unique_ptr<WalSyncer>> WalSyncer::Open(const std::string& db_path) {
    std::string wal = db_path + "-wal";
    int fd = ::open(wal.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return MakeError(ErrorCode::kUnavailable, "open " + wal + ": " + std::strerror(errno));
    }
    auto syncer = std::make_unique<WalSyncer>(fd);
    std::string dir = db_path.find('/') == std::string::npos
                          ? std::string(".")
                          : db_path.substr(0, std::max<size_t>(db_path.rfind('/'), 1));
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
        int err = errno;
        if (dir_fd >= 0) {
            ::close(dir_fd);
        }
        return MakeError(ErrorCode::kUnavailable, "fsync " + dir + ": " + std::strerror(err));
    }
    ::close(dir_fd);
    return syncer;
}

uint64_t WalSyncer::Request() {
    uint64_t ticket;
    {
        std::lock_guard lock(mu_);
        ticket = ++requested_;
    }
    work_cv_.notify_one();
    return ticket;
}

void WalSyncer::Wait(uint64_t ticket) {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_ >= ticket; });
}

void WalSyncer::Loop() {
    pthread_setname_np(pthread_self(), "cogs-store-sync");
    std::unique_lock lock(mu_);
    for (;;) {
        work_cv_.wait(lock, [&] { return stop_ || requested_ > done_; });
        if (requested_ == done_) {
            return;  // stopping, nothing left to sync
        }
        uint64_t target = requested_;  // one sync covers every request made before it starts
        lock.unlock();
        if (::fdatasync(fd_) != 0) {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on disk
            // is unknown, so nothing may be acknowledged. Restart and recover from the disk.
            std::fprintf(stderr, "FATAL: fdatasync of the store's WAL failed: %s\n", std::strerror(errno));
            COGS_CHECK(false && "fdatasync of the WAL failed");
        }
        lock.lock();
        done_ = target;
        done_cv_.notify_all();
    }
}

}  // namespace cogs::store::internal
