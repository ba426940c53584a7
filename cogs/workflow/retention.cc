#include "cogs/workflow/retention.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"

namespace cogs::workflow {

namespace asio = boost::asio;

class WorkflowPruner::Impl : public std::enable_shared_from_this<Impl> {
public:
    Impl(asio::io_context& io, store::Store& store, RetentionOptions options, runtime::Clock* clock,
         observe::Metrics* metrics)
        : io_(io),
          store_(store),
          options_(options),
          clock_(clock != nullptr ? *clock : runtime::SystemClock()),
          timer_(clock_.NewTimer(io)),
          retained_(observe::GaugeOf(metrics, "cogs_retained_workflows",
                                     "Ended workflows kept in the store after the last retention pass, by "
                                     "state: done (succeeded, rolled back) or failed.")),
          pruned_(
              observe::CounterOf(metrics, "cogs_pruned_total", "Records deleted by retention, by what.")) {}

    void Start() {
        stopped_ = false;
        Pass();
    }

    void Stop() {
        stopped_ = true;
        timer_->Cancel();
    }

    // The store calls run on blocking_; the result comes back to the io thread while the pruner
    // lives (a pass in progress at destruction is waited for, its answer dropped).
    void PruneNow(std::function<void(Result<store::PruneResult>)> done) {
        const int64_t now = clock_.WallMs();
        const auto before = [now](Duration keep_for) {
            return now - std::chrono::duration_cast<Millis>(keep_for).count();
        };
        const int64_t done_before = before(options_.keep_for),
                      failed_before = before(options_.failed_keep_for);
        asio::post(blocking_, [this, weak = weak_from_this(), done_before, failed_before,
                               done = std::move(done)]() mutable {
            Result<store::PruneResult> ended = Prune(store::Ended::kDone, done_before, options_.keep_at_most);
            Result<store::PruneResult> failed =
                Prune(store::Ended::kFailed, failed_before, options_.failed_keep_at_most);
            asio::post(io_, [weak, ended = std::move(ended), failed = std::move(failed),
                             done = std::move(done)]() mutable {
                if (auto self = weak.lock()) {
                    self->Took(ended, "done", "workflows");
                    self->Took(failed, "failed", "failed_workflows");
                    done(std::move(ended));
                }
            });
        });
    }

    void Join() { blocking_.join(); }

private:
    void Pass() {
        PruneNow([this](const Result<store::PruneResult>&) {
            if (!stopped_) {
                timer_->ArmAfter(options_.every, [this] { Pass(); });
            }
        });
    }

    // On blocking_: batch after batch until one prunes less than a batch.
    Result<store::PruneResult> Prune(store::Ended which, int64_t finished_before_ms, int64_t keep_at_most) {
        store::PruneResult total;
        for (;;) {
            auto r = store_.PruneWorkflows(which, finished_before_ms, keep_at_most, options_.batch);
            if (!r) {
                return MakeError(r.error());
            }
            total.pruned += r->pruned;
            total.kept = r->kept;
            if (r->pruned < options_.batch) {
                return total;
            }
        }
    }

    void Took(const Result<store::PruneResult>& r, const char* state, const char* what) {
        if (!r) {
            observe::Log("engine").warn("pruning {} workflows failed: {}", state, r.error().ToString());
            return;
        }
        retained_.With({{"state", state}}).Set(static_cast<double>(r->kept));
        if (r->pruned > 0) {
            pruned_.With({{"what", what}}).Inc(static_cast<double>(r->pruned));
            observe::Log("engine").info("pruned {} {} workflows past their retention; {} kept", r->pruned,
                                        state, r->kept);
        }
    }

    asio::io_context& io_;
    store::Store& store_;
    const RetentionOptions options_;
    runtime::Clock& clock_;
    std::unique_ptr<runtime::Timer> timer_;
    observe::GaugeFamily retained_;
    observe::CounterFamily pruned_;
    bool stopped_ = true;
    asio::thread_pool blocking_{1};
};

WorkflowPruner::WorkflowPruner(asio::io_context& io, store::Store& store, RetentionOptions options,
                               runtime::Clock* clock, observe::Metrics* metrics)
    : impl_(std::make_shared<Impl>(io, store, options, clock, metrics)) {}

WorkflowPruner::~WorkflowPruner() {
    impl_->Stop();
    impl_->Join();
}

void WorkflowPruner::Start() { impl_->Start(); }
void WorkflowPruner::Stop() { impl_->Stop(); }
void WorkflowPruner::PruneNow(std::function<void(Result<store::PruneResult>)> done) {
    impl_->PruneNow(std::move(done));
}

}  // namespace cogs::workflow
