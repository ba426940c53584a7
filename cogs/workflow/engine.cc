// Engine: the facade over Engine::Impl (internal/engine_impl.h), whose methods live in
// internal/engine_*.cc by concern (the map: README.md).
#include "cogs/workflow/engine.h"

#include <boost/asio/io_context.hpp>

#include "cogs/workflow/internal/engine_impl.h"

namespace cogs::workflow {

namespace asio = boost::asio;

namespace {

// 64 bits from the OS's entropy (std::random_device reads getrandom on Linux).
uint64_t OsSeed() {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

Engine::Impl::Impl(asio::io_context& io, store::Store& store, Registry& registry,
                   const ServiceCatalog& services, EngineOptions options)
    : io_(io),
      store_(store),
      registry_(registry),
      services_(services),
      clock_(options.clock != nullptr ? *options.clock : runtime::SystemClock()),
      options_(std::move(options)),
      timers_(clock_, io),
      renew_timer_(clock_.NewTimer(io)),
      rng_(options_.seed ? *options_.seed : OsSeed()),
      log_(&observe::Log("engine")) {
    InitMetrics();
}

Engine::Impl::~Impl() { blocking_.join(); }

const char* ToString(CircuitState s) {
    switch (s) {
        case CircuitState::kClosed: return "closed";
        case CircuitState::kOpen: return "open";
        case CircuitState::kHalfOpen: return "half_open";
    }
    return "closed";
}

Engine::Engine(asio::io_context& io, store::Store& store, Registry& registry, const ServiceCatalog& services,
               EngineOptions options)
    : impl_(std::make_unique<Impl>(io, store, registry, services, std::move(options))) {}
Engine::~Engine() = default;
Status Engine::Recover() { return impl_->Recover(); }
void Engine::Start(StartRequest r, std::function<void(Result<std::string>)> done) {
    impl_->Start(std::move(r), std::move(done));
}
void Engine::StartMany(std::vector<StartRequest> r,
                       std::function<void(Result<std::vector<std::string>>)> done) {
    impl_->StartMany(std::move(r), std::move(done));
}
void Engine::Cancel(const std::string& id, std::function<void(Status)> done) {
    impl_->Cancel(id, std::move(done));
}
void Engine::Retry(const std::string& id, std::function<void(Status)> done) {
    impl_->Retry(id, std::move(done));
}
Status Engine::ReportCompletion(const std::string& key, Result<ActionReply> r) {
    return impl_->ReportCompletion(key, std::move(r));
}
void Engine::OnFinished(std::function<void(const FinishedEvent&)> l) { impl_->OnFinished(std::move(l)); }
void Engine::SetStepOverheadObserver(std::function<void(int64_t)> o) {
    impl_->SetStepOverheadObserver(std::move(o));
}
EngineStats Engine::Stats() const { return impl_->Stats(); }
CircuitState Engine::BreakerState(const std::string& service, const std::string& endpoint) const {
    return impl_->BreakerState(service, endpoint);
}
void Engine::ConfigureService(const std::string& service, int bulkhead,
                              const EngineOptions::BreakerOptions& breaker) {
    impl_->ConfigureService(service, bulkhead, breaker);
}
const store::Lease& Engine::lease() const { return impl_->lease(); }
void Engine::Shutdown() { impl_->Shutdown(); }

FinishedEvent FinishedEventOf(const store::WorkflowRecord& w, const Definition* def) {
    FinishedEvent ev{w.id,          w.type,    w.state, w.reason,
                     w.finished_ms, w.project, w.trace, w.resource_kind,
                     w.resource_id, w.input,   {}};
    for (size_t i = 0; def != nullptr && i < w.steps.size() && i < def->steps.size(); ++i) {
        if (!w.steps[i].output.empty()) {
            ev.outputs.emplace(def->steps[i].name, w.steps[i].output);
        }
    }
    return ev;
}

}  // namespace cogs::workflow
