#include "cogs/services/kit/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <limits>
#include <map>
#include <unordered_map>

#include "cogs/base/check.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/kit/dispatch.h"
#include "cogs/services/kit/internal/state_db.h"
#include "cogs/services/kit/ledger.h"
#include "cogs/wire/answer.h"

namespace cogs::services::kit {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using workflow::ActionReply;

// "<base>/do" and a bare "<base>" share the base; see service.h.
std::string_view BaseOfDo(std::string_view key) {
    return key.ends_with(kDoSuffix) ? key.substr(0, key.size() - kDoSuffix.size()) : key;
}

// The client decides retries from the HTTP status alone, so the status must agree with what the
// service knows: a refusal kept for the key must not look retryable (a 429 for "subnet exhausted"
// would be retried forever), and an error not kept must not look definitive.
bool StatusRetryable(ErrorCode code) {
    const int status = HttpStatus(code);
    return status >= 500 || status == 429 || status == 408;
}

Error Definitive(Error e) {
    if (StatusRetryable(e.code)) {
        return Error(ErrorCode::kFailedPrecondition, std::string(ToString(e.code)) + ": " + e.message, false);
    }
    e.retryable = false;
    return e;
}

Error Retryable(Error e) {
    if (!StatusRetryable(e.code)) {
        return Error(ErrorCode::kUnavailable, std::string(ToString(e.code)) + ": " + e.message, true);
    }
    e.retryable = true;
    return e;
}

using Entry = LedgerEntry;  // ledger.h

// done_at_us of a long action the domain has not finished yet (Done::wait_for): later than any
// clock, so Recorded answers "accepted" until DomainContext::Finish. Its output meanwhile is
// {"waiting_for": name}, which is how a restarted service knows what it waits for.
constexpr int64_t kPendingUs = std::numeric_limits<int64_t>::max();

// What the pruner counts an entry's age from: a pending entry's from when it was made (no caller
// polls it past the longest workflow deadline, which the minimum age covers).
int64_t PruneSince(const Entry& e) { return e.done_at_us == kPendingUs ? 0 : e.done_at_us; }

std::string WaitingOutput(const std::string& wait_for) {
    return json::serialize(json::object{{"waiting_for", wait_for}});
}

// The name a pending entry waits for, from its output ("" if it holds none).
std::string WaitingFor(const Entry& e) {
    boost::system::error_code ec;
    const json::value v = json::parse(e.output, ec);
    if (ec || !v.is_object()) {
        return "";
    }
    const json::value* name = v.as_object().if_contains("waiting_for");
    return name != nullptr && name->is_string() ? std::string(name->as_string()) : "";
}

}  // namespace

class DomainService::Impl : public std::enable_shared_from_this<DomainService::Impl>,
                            public ActionTarget,
                            public DomainContext {
public:
    Impl(asio::io_context& io, std::unique_ptr<Domain> domain, ServiceOptions options)
        : io_(io),
          domain_(std::move(domain)),
          actions_(*domain_),
          clock_(options.clock != nullptr ? *options.clock : runtime::SystemClock()),
          desk_(io, std::move(options.faults), options.seed, options.metrics, domain_->name(), stats_),
          pruner_(options.ledger_retention, options.metrics, domain_->name()) {}

    // The records gauge and the domain's own gauges, sampled at every render of `metrics` (on the
    // io thread: see service.h). The sampler holds the service weakly: once it is gone, nothing.
    void SampleInto(observe::Metrics& metrics) {
        const observe::GaugeFamily records = RecordsGauge(metrics);
        const std::string service(domain_->name());
        const observe::Gauge ledger = records.With({{"service", service}, {"kind", "ledger"}});
        metrics.OnCollect([weak = weak_from_this(), records, service, ledger,
                           by_kind = std::map<std::string, observe::Gauge>(), m = &metrics]() mutable {
            auto self = weak.lock();
            if (!self) {
                return;
            }
            ledger.Set(static_cast<double>(self->ledger_.size()));
            for (const auto& [kind, n] : self->domain_->RecordCounts()) {
                auto it = by_kind.find(kind);
                if (it == by_kind.end()) {
                    it = by_kind.emplace(kind, records.With({{"service", service}, {"kind", kind}})).first;
                }
                it->second.Set(static_cast<double>(n));
            }
            self->domain_->Collect(*m);
        });
    }

    // ActionTarget, with the semantics of service.h.
    std::string_view name() const override { return domain_->name(); }
    bool IsRecorded(const std::string& key) const override { return ledger_.contains(key); }

    ~Impl() {
        // What was made in the last turn is kept even though its answers never leave (a re-send
        // gets them from the ledger).
        if (db_ && (!rows_.empty() || !writes_.empty() || !pruned_.empty())) {
            if (auto s = db_->Write(rows_, writes_, pruned_); !s) {
                observe::Log(domain_->name())
                    .error("last state write at shutdown failed: {}", s.error().ToString());
            }
        }
    }

    cogs::Status Open(const std::string& path) {
        if (path.empty()) {
            return Ok();
        }
        COGS_ASSIGN_OR_RETURN(db_, internal::StateDb::Open(path));
        COGS_ASSIGN_OR_RETURN(auto entries, db_->LoadLedger());
        for (auto& e : entries) {
            next_seq_ = std::max(next_seq_, e.seq + 1);
            pruner_.Add(e.key, e.at_us, PruneSince(e));
            if (e.done_at_us == kPendingUs) {
                waiting_[WaitingFor(e)].push_back(e.key);
            }
            std::string key = e.key;
            ledger_.emplace(std::move(key), std::move(e));
        }
        // What expired while the service was down goes before the first call.
        const std::vector<std::string> expired = pruner_.Take(clock_.WallUs(), ledger_.size());
        for (const std::string& key : expired) {
            ledger_.erase(key);  // a pending one stays in waiting_ until its name is finished: harmless
        }
        COGS_TRY(db_->Write({}, {}, expired));
        return db_->ForEachRecord([this](std::string_view table, std::string_view id,
                                         std::string_view text) -> cogs::Status {
            if (auto s = domain_->Load(table, id, text); !s) {
                Error e = s.error();
                e.message = "loading record " + std::string(table) + "/" + std::string(id) + ": " + e.message;
                return MakeError(std::move(e));
            }
            return Ok();
        });
    }

    void Handle(std::string action, std::string key, std::string input, SteadyTime deadline,
                Callback done) override {
        if (!desk_.Admit(deadline, done)) {
            return;
        }
        if (auto object = wire::Input::ParseAny(input, "input"); !object) {
            desk_.Answer(std::move(done), MakeError(std::move(object).error()));
            return;
        }
        if (!actions_.Has(action)) {
            ++stats_.unknown_actions;
            desk_.Answer(std::move(done), MakeError(actions_.Unknown(action)));
            return;
        }
        if (key.empty()) {
            desk_.Answer(std::move(done), MakeError(ErrorCode::kInvalidArgument, "missing idempotency key"));
            return;
        }
        if (auto it = ledger_.find(key); it != ledger_.end()) {
            ++stats_.duplicates_answered;
            desk_.Answer(std::move(done), Recorded(it->second));
            return;
        }
        if (key.ends_with(kUndoSuffix)) {
            HandleUndo(std::move(action), std::move(key), input, std::move(done));
        } else {
            HandleDo(std::move(action), std::move(key), input, std::move(done));
        }
    }

    void Status(std::string key, Callback done) override {
        if (!desk_.AdmitStatus()) {
            return;
        }
        if (auto it = ledger_.find(key); it != ledger_.end()) {
            desk_.Answer(std::move(done), Recorded(it->second));
        } else if (!key.ends_with(kUndoSuffix) && IsTombstoned(key)) {
            desk_.Answer(std::move(done), MakeError(RefusedAfterUndo()));
        } else {
            desk_.Answer(std::move(done), MakeError(NotRecorded(key)));
        }
    }

    void SetFaults(FaultConfig faults) override { desk_.SetFaults(std::move(faults)); }
    const FaultConfig& faults() const override { return desk_.faults(); }

    std::string LedgerJson() const override {
        std::vector<Entry> sorted;
        sorted.reserve(ledger_.size());
        for (const auto& [k, e] : ledger_) {
            sorted.push_back(e);
        }
        std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
        return LedgerToJson(sorted);
    }

    std::string StatsJson() const override {
        const ServiceStats& s = stats_;
        json::object o;
        o["service"] = domain_->name();
        o["ledger_entries"] = ledger_.size();
        for (const auto& [name, n] : s.Named()) {
            o[name] = n;
        }
        o["performed"] = s.performed;
        o["rejected"] = s.rejected;
        o["retryable_errors"] = s.retryable_errors;
        o["compensated"] = s.compensated;
        o["tombstones"] = s.tombstones;
        o["unknown_actions"] = s.unknown_actions;
        o["commits"] = s.commits;
        return json::serialize(o);
    }

    std::optional<http::Response> Get(const http::Request& request) override {
        if (request.Path() == "/v1/inventory") {
            http::Response r;
            r.body = domain_->Inventory();
            return r;
        }
        return domain_->Get(request);
    }

    bool Post(const http::Request& request, const http::Respond& respond) override {
        return domain_->Post(request, respond);
    }

    void Bind() { domain_->Bind(*this); }

    // DomainContext.
    asio::io_context& io() override { return io_; }
    void Write(Tx tx, std::function<void()> committed) override {
        if (!db_) {
            if (committed) {
                PostCommitted(std::move(committed));
            }
            return;
        }
        for (auto& w : tx.writes()) {
            writes_.push_back(std::move(w));
        }
        if (committed) {
            committed_.push_back(std::move(committed));
        }
        ScheduleFlush();
    }

    void Finish(std::string_view wait_for, Result<std::string> output) override {
        auto it = waiting_.find(wait_for);
        if (it == waiting_.end()) {
            return;
        }
        const std::vector<std::string> keys = std::move(it->second);
        waiting_.erase(it);
        const int64_t now = std::max<int64_t>(clock_.WallUs(), 1);
        for (const std::string& key : keys) {
            auto e = ledger_.find(key);
            if (e == ledger_.end() || e->second.done_at_us != kPendingUs) {
                continue;  // pruned, or finished already
            }
            Entry& entry = e->second;
            entry.done_at_us = now;
            if (output) {
                entry.output = output->empty() ? std::string("{}") : *output;
            } else {
                ++stats_.rejected;
                Error refusal = Definitive(output.error());
                entry.outcome = Outcome::kRejected;
                entry.output = std::move(refusal.message);
                entry.code = refusal.code;
            }
            if (db_) {
                rows_.push_back(entry);  // replaces the row made when the action was applied
                ScheduleFlush();
            }
        }
    }

    const Domain& domain() const { return *domain_; }
    const ServiceStats& stats() const { return stats_; }
    size_t ledger_size() const { return ledger_.size(); }

private:
    void HandleDo(std::string action, std::string key, const std::string& input, Callback done) {
        if (IsTombstoned(key)) {
            ++stats_.refused_after_undo;
            desk_.Answer(std::move(done), MakeError(RefusedAfterUndo()));
            return;
        }
        const std::optional<Fault> fault = desk_.Roll(action, CallKind::kDo, done);
        if (!fault) {
            return;
        }
        Result<ActionReply> reply;
        if (*fault == Fault::kPermanent) {
            ++stats_.rejected;
            reply =
                Recorded(Record(std::move(key), action, CallKind::kDo, Outcome::kRejected,
                                PermanentRefusal(desk_.faults(), action), ErrorCode::kFailedPrecondition, 0));
        } else {
            reply = Perform(std::move(action), std::move(key), CallKind::kDo, Outcome::kApplied, input);
        }
        if (*fault != Fault::kLostReply) {
            desk_.Answer(std::move(done), std::move(reply));
        }
    }

    void HandleUndo(std::string action, std::string key, const std::string& input, Callback done) {
        const std::optional<Fault> fault = desk_.Roll(action, CallKind::kUndo, done);
        if (!fault) {
            return;
        }
        Result<ActionReply> reply;
        if (DoApplied(key)) {
            reply = Perform(std::move(action), std::move(key), CallKind::kUndo, Outcome::kCompensated, input);
        } else {
            ++stats_.tombstones;
            const Entry& e = Record(std::move(key), action, CallKind::kUndo, Outcome::kTombstone,
                                    R"({"compensated":false})", ErrorCode::kFailedPrecondition, 0);
            reply = Recorded(e);
        }
        if (*fault != Fault::kLostReply) {
            desk_.Answer(std::move(done), std::move(reply));
        }
    }

    // Performs a do (outcome kApplied) or a compensating undo (kCompensated) and records what
    // came of it; returns the answer.
    Result<ActionReply> Perform(std::string action, std::string key, CallKind kind, Outcome outcome,
                                const std::string& input) {
        Tx tx;
        auto done = actions_.Perform(action, input, tx);
        if (!done) {
            if (done.error().retryable) {
                ++stats_.retryable_errors;
                return MakeError(Retryable(std::move(done.error())));
            }
            ++stats_.rejected;
            Error e = Definitive(std::move(done.error()));
            const Entry& entry =
                Record(std::move(key), action, kind, Outcome::kRejected, std::move(e.message), e.code, 0);
            return Recorded(entry);
        }
        ++stats_.performed;
        if (outcome == Outcome::kCompensated) {
            ++stats_.compensated;
        }
        int64_t done_at_us = done->ready_at_us;
        if (kind == CallKind::kDo) {
            done_at_us = std::max(done_at_us, desk_.LongActionEndUs(action, clock_.WallUs()));
        }
        std::string output = done->output.empty() ? std::string("{}") : std::move(done->output);
        if (!done->wait_for.empty()) {
            done_at_us = kPendingUs;
            output = WaitingOutput(done->wait_for);
            waiting_[done->wait_for].push_back(key);
        }
        for (auto& w : tx.writes()) {
            writes_.push_back(std::move(w));
        }
        const Entry& entry = Record(std::move(key), action, kind, outcome, std::move(output),
                                    ErrorCode::kFailedPrecondition, done_at_us);
        return Recorded(entry);
    }

    // Whether the do that undo key "<base>/undo" compensates ("<base>/do", else "<base>") was applied:
    // also a long action that the domain finished with an error (what it started may exist).
    bool DoApplied(const std::string& undo_key) const {
        const std::string_view base =
            std::string_view(undo_key).substr(0, undo_key.size() - kUndoSuffix.size());
        for (const std::string& k : {std::string(base) + std::string(kDoSuffix), std::string(base)}) {
            if (auto it = ledger_.find(k); it != ledger_.end()) {
                const Entry& e = it->second;
                return e.kind == CallKind::kDo && (e.outcome == Outcome::kApplied ||
                                                   (e.outcome == Outcome::kRejected && e.done_at_us != 0));
            }
        }
        return false;
    }

    bool IsTombstoned(const std::string& do_key) const {
        auto it = ledger_.find(std::string(BaseOfDo(do_key)) + std::string(kUndoSuffix));
        return it != ledger_.end() && it->second.outcome == Outcome::kTombstone;
    }

    // The answer a recorded key gets, now and on every re-send.
    Result<ActionReply> Recorded(const Entry& e) const {
        if (e.outcome == Outcome::kRejected) {
            return MakeError(Error(e.code.value_or(ErrorCode::kFailedPrecondition), e.output, false));
        }
        ActionReply reply;
        if (e.done_at_us != 0 && clock_.WallUs() < e.done_at_us) {
            reply.accepted = true;
            return reply;
        }
        reply.output = e.output;
        return reply;
    }

    // Makes the entry: in memory now, on disk with this turn's group commit (answers wait for it).
    const Entry& Record(std::string key, const std::string& action, CallKind kind, Outcome outcome,
                        std::string output, ErrorCode code, int64_t done_at_us) {
        Entry e;
        e.seq = next_seq_++;
        e.key = key;
        e.action = action;
        e.kind = kind;
        e.outcome = outcome;
        e.output = std::move(output);
        if (outcome == Outcome::kRejected) {
            e.code = code;
        }
        e.at_us = clock_.WallUs();
        e.done_at_us = done_at_us;
        pruner_.Add(key, e.at_us, PruneSince(e));
        auto [it, inserted] = ledger_.emplace(std::move(key), std::move(e));
        COGS_CHECK(inserted);
        // Never the entry just made (it is younger than min_age): `it` stays valid.
        for (std::string& old : pruner_.Take(it->second.at_us, ledger_.size(), LedgerPruner::kPerEntry)) {
            ledger_.erase(old);
            if (db_) {
                pruned_.push_back(std::move(old));
            }
        }
        if (db_) {
            rows_.push_back(it->second);
            ScheduleFlush();
        }
        return it->second;
    }

    void ScheduleFlush() {
        desk_.CommitThisTurn(weak_from_this(), [this] { Flush(); });
    }

    void Flush() {
        if (auto s = db_->Write(rows_, writes_, pruned_); !s) {
            // The domain changed its memory for this batch and cannot take it back; answering from
            // that memory would report what is not on disk. Die; a restart reloads what committed.
            observe::Log(domain_->name()).critical("state write failed, stopping: {}", s.error().ToString());
            COGS_CHECK(false && "state write failed");
        }
        ++stats_.commits;
        rows_.clear();
        writes_.clear();
        pruned_.clear();
        desk_.Release();
        auto committed = std::move(committed_);
        committed_.clear();
        for (auto& c : committed) {
            PostCommitted(std::move(c));
        }
    }

    // A Write's callback, on a later turn and only while the service (and its domain) is alive.
    void PostCommitted(std::function<void()> committed) {
        asio::post(io_, [weak = weak_from_this(), committed = std::move(committed)] {
            if (weak.lock()) {
                committed();
            }
        });
    }

    asio::io_context& io_;
    std::unique_ptr<Domain> domain_;
    ActionTable actions_;
    runtime::Clock& clock_;
    ServiceStats stats_;
    CallDesk desk_;  // counts in stats_; answers wait for the batch's commit
    std::unique_ptr<internal::StateDb> db_;

    std::unordered_map<std::string, Entry> ledger_;
    uint64_t next_seq_ = 1;
    LedgerPruner pruner_;  // which entries of ledger_ may go (ledger.h)

    std::vector<Entry> rows_;  // made this turn, not yet committed
    std::vector<Tx::Write> writes_;
    std::vector<std::string> pruned_;               // keys pruned this turn, deleted from the file with it
    std::vector<std::function<void()>> committed_;  // the domain's Write callbacks of the batch
    // Long actions the domain will finish: Done::wait_for -> their keys (pending entries).
    std::map<std::string, std::vector<std::string>, std::less<>> waiting_;
};

Result<std::unique_ptr<DomainService>> DomainService::Create(boost::asio::io_context& io,
                                                             std::unique_ptr<Domain> domain,
                                                             ServiceOptions options) {
    if (!domain) {
        return MakeError(ErrorCode::kInvalidArgument, "DomainService: no domain");
    }
    const std::string path = options.state_path;
    observe::Metrics* metrics = options.metrics;
    auto impl = std::make_shared<Impl>(io, std::move(domain), std::move(options));
    if (auto s = impl->Open(path); !s) {
        return MakeError(s.error());
    }
    if (metrics != nullptr) {
        impl->SampleInto(*metrics);
    }
    impl->Bind();
    return std::unique_ptr<DomainService>(new DomainService(std::move(impl)));
}

DomainService::DomainService(std::shared_ptr<Impl> impl) : ForwardingTarget(impl), impl_(*impl) {}
DomainService::~DomainService() = default;

const Domain& DomainService::domain() const { return impl_.domain(); }
const ServiceStats& DomainService::stats() const { return impl_.stats(); }
size_t DomainService::ledger_size() const { return impl_.ledger_size(); }

}  // namespace cogs::services::kit
