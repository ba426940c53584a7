// WalSyncer: the store's WAL made durable on its own thread (see sqlite_store_impl.h).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cogs/base/result.h"

namespace cogs::store::internal {

// Makes the WAL durable on its own thread, so that the fsync of one batch overlaps the work of
// the next. The writer connection runs with synchronous=NORMAL (SQLite writes the WAL at COMMIT
// without syncing it); a batch is acknowledged only once a sync that started after its COMMIT has
// finished. That is the sync synchronous=FULL would have done inside COMMIT, moved off the path.
//
// A failed fdatasync is fatal (a check): the kernel may have dropped the dirty pages, so what is on
// disk is unknown and nothing may be acknowledged. The process restarts and recovers from the disk.
class WalSyncer {
public:
    explicit WalSyncer(int fd);
    WalSyncer(const WalSyncer&) = delete;
    WalSyncer& operator=(const WalSyncer&) = delete;
    ~WalSyncer();

    // Opens the WAL of `db_path` (it exists once the database has been written) and makes its
    // directory entry durable, which a data sync of the file alone would not.
    static Result<std::unique_ptr<WalSyncer>> Open(const std::string& db_path);

    // Asks for a sync of everything written so far; returns the ticket to wait for.
    uint64_t Request();
    // Blocks until the sync of `ticket` (or a later one) is done.
    void Wait(uint64_t ticket);

private:
    void Loop();

    const int fd_;
    std::mutex mu_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    uint64_t requested_ = 0;
    uint64_t done_ = 0;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace cogs::store::internal
