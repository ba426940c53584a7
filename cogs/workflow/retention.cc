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
                                     "Ended workflows (succeeded, rolled back) kept in the store, after the "
                                     "last retention pass.")
                        .With({})),
          pruned_(observe::CounterOf(metrics, "cogs_pruned_total", "Records deleted by retention, by what.")
                      .With({{"what", "workflows"}})) {}

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
        const int64_t cutoff =
            clock_.WallMs() - std::chrono::duration_cast<Millis>(options_.keep_for).count();
        asio::post(blocking_, [this, weak = weak_from_this(), cutoff, done = std::move(done)]() mutable {
            Result<store::PruneResult> total = store::PruneResult{};
            for (;;) {
                auto r = store_.PruneWorkflows(cutoff, options_.keep_at_most, options_.batch);
                if (!r) {
                    total = MakeError(r.error());
                    break;
                }
                total->pruned += r->pruned;
                total->kept = r->kept;
                if (r->pruned < options_.batch) {
                    break;
                }
            }
            asio::post(io_, [weak, total = std::move(total), done = std::move(done)]() mutable {
                if (auto self = weak.lock()) {
                    self->Took(total);
                    done(std::move(total));
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

    void Took(const Result<store::PruneResult>& r) {
        if (!r) {
            observe::Log("engine").warn("pruning ended workflows failed: {}", r.error().ToString());
            return;
        }
        retained_.Set(static_cast<double>(r->kept));
        if (r->pruned > 0) {
            pruned_.Inc(static_cast<double>(r->pruned));
            observe::Log("engine").info("pruned {} ended workflows past their retention; {} kept", r->pruned,
                                        r->kept);
        }
    }

    asio::io_context& io_;
    store::Store& store_;
    const RetentionOptions options_;
    runtime::Clock& clock_;
    std::unique_ptr<runtime::Timer> timer_;
    observe::Gauge retained_;
    observe::Counter pruned_;
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
