// WriteQueue: the queue of writes and the writer thread that both backends of Store share. What
// store.h promises about group commit, Flush, Stats and a store that cannot write (Writable,
// ResumeWrites) is kept here once; a backend (WriteQueue::Backend) says only how a batch is
// committed and how its database is made writable again. QueuedStore, below, is the base of both
// backends: it owns their queue and answers those Store methods with it.
//
// One FIFO of items: a group and its callback (Commit), or a task (RunOnWriter: every other write
// of the store, and Flush), which runs alone, in its turn, on the writer thread. The writer thread
// takes either one task, or every group queued up to the next task (at most max_batch_groups) as
// one batch, which the backend commits as one transaction: batches grow with load.
//
// Acknowledgement. The backend hands each batch it committed (or whose transaction failed: then
// every group's result is that failure) to Acknowledge, which counts it (Stats), reports it
// (on_commit) and runs its callbacks in the groups' order. A committed batch may wait for its
// durability (a ticket, which Backend::WaitDurable waits for: SQLite's WAL sync, done on another
// thread) while the next batch is written. It is then pending, and it is acknowledged before
// anything that follows it: the next batch, a task, a refusal, the end of writes, or an empty
// queue. So callbacks run in queue order, and a task sees every earlier group acknowledged.
//
// Episodes (store.h, Store::Writable). StopWrites(why) ends writes until ResumeWrites: each batch
// taken meanwhile is turned away, a create refused (Backend::RefuseCreate) and any other group
// held, in order; the most held is max_held_groups, and one more ends the process. ResumeWrites,
// once Backend::Reopen succeeds, writes the held groups as one batch, ahead of anything queued.
//
// Threading. Commit, RunOnWriter, Flush, Writable and Stats: any thread. Everything else, and every
// Backend method, runs on the writer thread only (StopWrites also before Start), never under the
// queue's lock: a backend calls back into the queue freely, and callbacks and tasks may call the
// store (they run between transactions), except Flush, which would wait for itself.
//
// Lifetimes. The backend owns the queue and must outlive its thread: Start() once the backend is
// ready (the end of its constructor), Stop() first thing in its destructor. Stop drains: whatever
// was queued before it is committed or turned away and acknowledged; groups still held go
// unwritten and uncalled (the process is stopping; their callers may be gone).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/store/records.h"
#include "cogs/store/store.h"

namespace cogs::store::internal {

class WriteQueue {
public:
    // A queued write: a group and its callback, or (if `task` is set) an operation run alone.
    struct Item {
        WriteGroup group;
        Store::CommitCallback done;
        std::function<void()> task;
    };

    // The bounds and hooks of SqliteOptions and PgOptions (store.h), as the backend passes them.
    struct Options {
        size_t max_batch_groups = 4096;
        size_t max_held_groups = 100'000;  // 0: no bound
        std::function<void(const CommitReport&)> on_commit{};
        std::function<void(bool writable, const Error& why)> on_writable{};
        // The fatal check's words when one more group would be held than max_held_groups.
        const char* held_bound_message = "max_held_groups writes waited: exiting";
    };

    // What differs between backends. Every method is called on the writer thread only.
    class Backend {
    public:
        // Commits `batch` as one transaction, then hands it to Acknowledge. If writes must stop
        // (nothing of the batch was applied: a full disk, a database gone), it calls StopWrites and
        // TurnAway instead (or keeps the batch until it knows whether it committed).
        virtual void CommitBatch(std::vector<Item>& batch) = 0;
        // ResumeWrites' first part: makes the database writable again (space, a probe, a new
        // connection, a batch in doubt settled). Ok, or why not (the episode goes on).
        virtual Status Reopen() = 0;
        // What a create turned away during the episode `episode` (Episode()) is refused with.
        virtual Error RefuseCreate(const Error& episode) const = 0;
        // Writes are stopping for `why` (once per episode, before Writable() turns false): the
        // backend's own bookkeeping, and the error the episode answers with (Episode()).
        virtual Error WritesStopping(const Error& why) { return why; }
        // Blocks until the durability ticket given to Acknowledge is done.
        virtual void WaitDurable(uint64_t ticket) { (void)ticket; }

    protected:
        ~Backend() = default;
    };

    WriteQueue(Options options, Backend& backend);
    ~WriteQueue();  // Stop(): a safety net only; the backend must have stopped it (see Lifetimes)
    WriteQueue(const WriteQueue&) = delete;
    WriteQueue& operator=(const WriteQueue&) = delete;

    // Starts the writer thread (once); Stop drains the queue and joins it (idempotent).
    void Start();
    void Stop();

    // ---- any thread
    // Store::Commit: queues the group; its callback runs on the writer thread once acknowledged.
    void Commit(WriteGroup group, Store::CommitCallback done);
    // Runs `fn` on the writer thread after everything queued before it (and the acknowledgement of
    // every earlier group), and returns its value. On the writer thread (a callback, a task) it
    // runs inline.
    template <typename T>
    T RunOnWriter(const std::function<T()>& fn) {
        if (OnWriterThread()) {
            return fn();
        }
        std::promise<T> promise;
        std::future<T> future = promise.get_future();
        {
            std::lock_guard lock(mu_);
            queue_.push_back(Item{{}, nullptr, [&] { promise.set_value(fn()); }});
        }
        cv_.notify_one();
        return future.get();
    }
    // Store::Flush. Not on the writer thread (a fatal check): it would wait for itself.
    void Flush();
    bool OnWriterThread() const {
        return writer_id_.load(std::memory_order_acquire) == std::this_thread::get_id();
    }
    bool Writable() const { return writable_.load(std::memory_order_acquire); }
    StoreStats Stats();
    // Store::ResumeWrites, as a task: Ok at once if writable; else Backend::Reopen, then writes
    // resume (on_writable) and the held groups are written. Ok if still writable after them, else
    // the episode's error.
    Status ResumeWrites();

    // ---- the writer thread
    // A batch's transaction is over: `committed`, each group's result in `results` (if not, every
    // result is the transaction's error); `start`: its BEGIN. With a `ticket` the batch waits for
    // it (pending) while the writer goes on; without, it is durable now. Either way the previous
    // pending batch is acknowledged first.
    void Acknowledge(std::vector<Item>& batch, std::vector<Status>& results, bool committed, SteadyTime start,
                     uint64_t ticket = 0);
    // Starts an episode (nothing if one is on): Backend::WritesStopping, Writable() false,
    // on_writable(false, why). The pending batch is acknowledged first.
    void StopWrites(const Error& why);
    // During an episode: refuses the batch's creates and holds its other groups, after those held
    // already (TurnAwayFirst: before them). The pending batch is acknowledged first.
    void TurnAway(std::vector<Item>& batch);
    void TurnAwayFirst(std::vector<Item>& batch);
    // The episode's error (Backend::WritesStopping's), for writes refused during it.
    const Error& Episode() const { return episode_; }

private:
    void Loop();
    void FinishPending();
    void Report(CommitReport& report, SteadyTime start);
    static void CallBack(std::vector<Item>& batch, std::vector<Status>& results);

    const Options options_;
    Backend& backend_;

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;

    std::mutex stats_mu_;
    StoreStats stats_;

    // The episode. writable_ is written by the writer thread only (or before Start); the rest is
    // the writer's.
    std::atomic<bool> writable_{true};
    Error episode_;
    std::vector<Item> held_;  // groups waiting for writes to resume, in queue order

    // The writer's: the last committed batch, waiting for its durability ticket.
    std::vector<Item> pending_;
    std::vector<Status> pending_results_;
    uint64_t pending_ticket_ = 0;
    CommitReport pending_report_;
    SteadyTime pending_start_{};

    std::atomic<std::thread::id> writer_id_{};
    std::thread thread_;
};

// A Store whose writes go through a WriteQueue (both backends): the Store methods that the queue
// answers, once. The backend implements Backend, calls queue_.Start() at the end of its
// constructor (every member of its own exists by then) and queue_.Stop() first thing in its
// destructor (before its members go).
class QueuedStore : public Store, protected WriteQueue::Backend {
public:
    void Commit(WriteGroup group, CommitCallback done) final {
        queue_.Commit(std::move(group), std::move(done));
    }
    void Flush() final { queue_.Flush(); }
    StoreStats Stats() final { return queue_.Stats(); }
    bool Writable() final { return queue_.Writable(); }
    Status ResumeWrites() final { return queue_.ResumeWrites(); }

protected:
    explicit QueuedStore(WriteQueue::Options options) : queue_(std::move(options), *this) {}

    WriteQueue queue_;
};

}  // namespace cogs::store::internal
