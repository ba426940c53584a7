// WorkerPool: a few threads for blocking calls (runc, file copies) so that the io thread never waits
// for them. The queue is bounded: a caller told kUnavailable tries again later (an action answers
// it, retryable). The tasks of one key (an instance id) run one at a time, in the order they were
// given, since the calls about one container must not overlap (cogs/oci/container.h); tasks of
// different keys run side by side.
//
// Threading: Run may be called from any thread; tasks run on the pool's threads and hand their
// results back themselves (the container driver posts them to its io thread).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::services::compute::internal {

class WorkerPool {
public:
    WorkerPool(int threads, size_t max_queued);
    // Drops the tasks still queued and waits for those running to end.
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // Queues `task` after every task of `key` given before. kUnavailable (retryable) if max_queued
    // tasks are waiting already.
    Status Run(const std::string& key, std::function<void()> task);

    // Tasks queued and not started (for tests and logs).
    size_t queued() const;

private:
    void Work();

    const size_t max_queued_;
    mutable std::mutex mu_;
    std::condition_variable ready_cv_;
    bool stopping_ = false;
    size_t queued_ = 0;
    std::map<std::string, std::deque<std::function<void()>>> by_key_;  // queued, per key
    std::deque<std::string> ready_;     // keys with a queued task and none running, in order
    std::map<std::string, bool> busy_;  // keys with a task running
    std::vector<std::thread> threads_;
};

}  // namespace cogs::services::compute::internal
