#include "cogs/services/compute/internal/worker_pool.h"

#include <algorithm>

namespace cogs::services::compute::internal {

WorkerPool::WorkerPool(int threads, size_t max_queued) : max_queued_(std::max<size_t>(max_queued, 1)) {
    for (int k = 0; k < std::max(threads, 1); ++k) {
        threads_.emplace_back([this] { Work(); });
    }
}

WorkerPool::~WorkerPool() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    ready_cv_.notify_all();
    for (std::thread& t : threads_) {
        t.join();
    }
}

Status WorkerPool::Run(const std::string& key, std::function<void()> task) {
    {
        std::lock_guard lock(mu_);
        if (queued_ >= max_queued_) {
            return MakeError(Error(ErrorCode::kUnavailable,
                                   "the driver has " + std::to_string(queued_) + " calls waiting: try again",
                                   /*retry=*/true));
        }
        auto& q = by_key_[key];
        q.push_back(std::move(task));
        ++queued_;
        if (q.size() == 1 && !busy_.contains(key)) {
            ready_.push_back(key);
        }
    }
    ready_cv_.notify_one();
    return Ok();
}

size_t WorkerPool::queued() const {
    std::lock_guard lock(mu_);
    return queued_;
}

void WorkerPool::Work() {
    std::unique_lock lock(mu_);
    while (true) {
        ready_cv_.wait(lock, [this] { return stopping_ || !ready_.empty(); });
        if (stopping_) {
            return;
        }
        const std::string key = std::move(ready_.front());
        ready_.pop_front();
        auto& q = by_key_[key];
        std::function<void()> task = std::move(q.front());
        q.pop_front();
        --queued_;
        busy_[key] = true;
        lock.unlock();
        task();
        task = nullptr;  // whatever it holds goes before the next task of its key starts
        lock.lock();
        busy_.erase(key);
        auto it = by_key_.find(key);
        if (it->second.empty()) {
            by_key_.erase(it);
        } else {
            ready_.push_back(key);
            ready_cv_.notify_one();
        }
    }
}

}  // namespace cogs::services::compute::internal
