#include "cogs/services/sim/sim_service.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <stdexcept>
#include <unordered_map>

#include "cogs/base/check.h"
#include "cogs/observe/metrics.h"

namespace cogs::services::sim {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using workflow::ActionReply;

constexpr std::string_view kName = "sim";
constexpr std::string_view kDoSuffix = "/do";
constexpr std::string_view kUndoSuffix = "/undo";

bool EndsWith(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A stable id for the thing a key creates: FNV-1a of the key without its /do or /undo, so the undo
// names the same id as its do.
std::string IdFor(std::string_view base) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : base) {
        h ^= c;
        h *= 1099511628211ull;
    }
    static const char* kHex = "0123456789abcdef";
    std::string id = "sim-";
    for (int shift = 60; shift >= 0; shift -= 4) {
        id += kHex[(h >> shift) & 15];
    }
    return id;
}

int64_t ToMicros(Duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); }

// What the ledger keeps in memory per key. The output is not kept: it is a function of the record
// (see Output()), which keeps a parked million keys cheap.
struct Record {
    uint64_t seq = 0;
    uint32_t action = 0;  // index into Impl::actions_
    CallKind kind = CallKind::kDo;
    Outcome outcome = Outcome::kApplied;
    int64_t at_us = 0;
    int64_t done_at_us = 0;
    std::unique_ptr<std::string> message;  // kRejected: the refusal
};

}  // namespace

class SimService::Impl : public std::enable_shared_from_this<SimService::Impl> {
public:
    Impl(asio::io_context& io, SimOptions options)
        : io_(io),
          faults_(std::move(options.faults)),
          roller_(options.seed),
          fault_counter_(options.metrics, kName) {}

    // The ledger's size by outcome, sampled at every render of `metrics` (on the io thread: see
    // sim_service.h). The sampler holds the service weakly: once it is gone, nothing.
    void SampleInto(observe::Metrics& metrics) {
        const observe::GaugeFamily family =
            observe::GaugeOf(&metrics, "cogs_service_records",
                             "Records the service holds, by kind (ledger: idempotency entries).");
        const auto of = [&](std::string_view kind) {
            return family.With({{"service", std::string(kName)}, {"kind", std::string(kind)}});
        };
        metrics.OnCollect(
            [weak = weak_from_this(), ledger = of("ledger"), applied = of(ToString(Outcome::kApplied)),
             rejected = of(ToString(Outcome::kRejected)), compensated = of(ToString(Outcome::kCompensated)),
             tombstone = of(ToString(Outcome::kTombstone))] {
                auto self = weak.lock();
                if (!self) {
                    return;
                }
                ledger.Set(static_cast<double>(self->records_.size()));
                applied.Set(static_cast<double>(self->counts_.applied));
                rejected.Set(static_cast<double>(self->counts_.rejected));
                compensated.Set(static_cast<double>(self->counts_.compensated));
                tombstone.Set(static_cast<double>(self->counts_.tombstones));
            });
    }

    bool IsRecorded(const std::string& key) const { return records_.contains(key); }

    ~Impl() {
        // Entries made in this turn are written even though their answers will never leave.
        if (db_ && !batch_.empty()) {
            (void)db_->Append(batch_);
        }
    }

    cogs::Status Open(const std::string& path) {
        if (path.empty()) {
            return Ok();
        }
        COGS_ASSIGN_OR_RETURN(db_, kit::LedgerFile::Open(path));
        COGS_ASSIGN_OR_RETURN(auto loaded, db_->LoadAll());
        for (auto& e : loaded) {
            Record r;
            r.seq = e.seq;
            r.action = Intern(e.action);
            r.kind = e.kind;
            r.outcome = e.outcome;
            r.at_us = e.at_us;
            r.done_at_us = e.done_at_us;
            if (e.outcome == Outcome::kRejected) {
                r.message = std::make_unique<std::string>(std::move(e.output));
            }
            next_seq_ = std::max(next_seq_, e.seq + 1);
            Count(r.outcome);
            records_.emplace(std::move(e.key), std::move(r));
        }
        return Ok();
    }

    void Handle(std::string action, std::string key, SteadyTime deadline, Callback done) {
        ++stats_.calls;
        if (faults_.hang_all) {
            ++stats_.hangs_injected;
            fault_counter_.Count(Fault::kHang);
            return;
        }
        if (SteadyClock::now() >= deadline) {
            ++stats_.expired_on_arrival;
            Answer(std::move(done),
                   MakeError(ErrorCode::kDeadlineExceeded, "the call's deadline passed before it arrived"));
            return;
        }
        if (EndsWith(key, kDoSuffix)) {
            HandleDo(std::move(action), std::move(key), std::move(done));
        } else if (EndsWith(key, kUndoSuffix)) {
            HandleUndo(std::move(action), std::move(key), std::move(done));
        } else {
            Answer(std::move(done), MakeError(ErrorCode::kInvalidArgument,
                                              "idempotency key '" + key + "' must end with /do or /undo"));
        }
    }

    void Status(std::string key, Callback done) {
        ++stats_.status_calls;
        if (faults_.hang_all) {
            ++stats_.hangs_injected;
            fault_counter_.Count(Fault::kHang);
            return;
        }
        auto it = records_.find(key);
        if (it == records_.end()) {
            if (EndsWith(key, kDoSuffix) && IsTombstoned(key)) {
                Answer(std::move(done), RefusedAfterUndo());
                return;
            }
            Answer(std::move(done),
                   MakeError(ErrorCode::kNotFound, "no action recorded under key '" + key + "'"));
            return;
        }
        Answer(std::move(done), Recorded(it->first, it->second));
    }

    void SetFaults(FaultConfig faults) { faults_ = std::move(faults); }
    const FaultConfig& faults() const { return faults_; }

    LedgerEntry ToEntry(const std::string& key, const Record& r) const {
        LedgerEntry e;
        e.seq = r.seq;
        e.key = key;
        e.action = actions_[r.action];
        e.kind = r.kind;
        e.outcome = r.outcome;
        e.output = Output(key, r);
        e.at_us = r.at_us;
        e.done_at_us = r.done_at_us;
        return e;
    }

    std::vector<LedgerEntry> Ledger() const {
        std::vector<LedgerEntry> out;
        out.reserve(records_.size());
        for (const auto& [key, r] : records_) {
            out.push_back(ToEntry(key, r));
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
        return out;
    }

    std::optional<LedgerEntry> Find(const std::string& key) const {
        auto it = records_.find(key);
        if (it == records_.end()) {
            return std::nullopt;
        }
        return ToEntry(key, it->second);
    }

    LedgerCounts counts() const { return counts_; }
    const SimStats& stats() const { return stats_; }
    asio::io_context& io() const { return io_; }

private:
    using Fault = kit::Fault;

    Fault Roll(const std::string& action, CallKind kind) {
        const Fault fault = roller_.Roll(faults_, action, kind);
        fault_counter_.Count(fault);
        return fault;
    }

    void HandleDo(std::string action, std::string key, Callback done) {
        if (auto it = records_.find(key); it != records_.end()) {
            ++stats_.duplicates_answered;
            Answer(std::move(done), Recorded(it->first, it->second));
            return;
        }
        if (IsTombstoned(key)) {
            ++stats_.refused_after_undo;
            Answer(std::move(done), RefusedAfterUndo());
            return;
        }
        switch (Roll(action, CallKind::kDo)) {
            case Fault::kError:
                ++stats_.errors_injected;
                Answer(std::move(done), MakeError(kit::InjectedError()));
                return;
            case Fault::kHang: ++stats_.hangs_injected; return;
            case Fault::kPermanent: {
                ++stats_.permanent_injected;
                Record r = NewRecord(action, CallKind::kDo, Outcome::kRejected);
                r.message = std::make_unique<std::string>(kit::PermanentRefusal(faults_, action));
                auto& [k, rec] = Commit(std::move(key), std::move(r));
                Answer(std::move(done), Recorded(k, rec));
                return;
            }
            case Fault::kLostReply: {
                ++stats_.lost_replies_injected;
                ++stats_.applied;
                Commit(std::move(key), NewApplied(action));
                return;
            }
            case Fault::kNone: {
                ++stats_.applied;
                auto& [k, rec] = Commit(std::move(key), NewApplied(action));
                Answer(std::move(done), Recorded(k, rec));
                return;
            }
        }
    }

    void HandleUndo(std::string action, std::string key, Callback done) {
        if (auto it = records_.find(key); it != records_.end()) {
            ++stats_.duplicates_answered;
            Answer(std::move(done), Recorded(it->first, it->second));
            return;
        }
        const Fault fault = Roll(action, CallKind::kUndo);
        if (fault == Fault::kError) {
            ++stats_.errors_injected;
            Answer(std::move(done), MakeError(kit::InjectedError()));
            return;
        }
        if (fault == Fault::kHang) {
            ++stats_.hangs_injected;
            return;
        }
        auto target = records_.find(DoKeyOf(key));
        const bool applied = target != records_.end() && target->second.outcome == Outcome::kApplied;
        Record r = NewRecord(action, CallKind::kUndo, applied ? Outcome::kCompensated : Outcome::kTombstone);
        ++(applied ? stats_.compensated : stats_.tombstones);
        auto& [k, rec] = Commit(std::move(key), std::move(r));
        if (fault == Fault::kLostReply) {
            ++stats_.lost_replies_injected;
            return;
        }
        Answer(std::move(done), Recorded(k, rec));
    }

    static std::string DoKeyOf(std::string_view undo_key) {
        std::string k(undo_key.substr(0, undo_key.size() - kUndoSuffix.size()));
        k += kDoSuffix;
        return k;
    }

    static std::string UndoKeyOf(std::string_view do_key) {
        std::string k(do_key.substr(0, do_key.size() - kDoSuffix.size()));
        k += kUndoSuffix;
        return k;
    }

    static std::string_view BaseOf(std::string_view key) {
        if (EndsWith(key, kDoSuffix)) {
            return key.substr(0, key.size() - kDoSuffix.size());
        }
        if (EndsWith(key, kUndoSuffix)) {
            return key.substr(0, key.size() - kUndoSuffix.size());
        }
        return key;
    }

    // Whether the undo of this do key was recorded without the do having been applied.
    bool IsTombstoned(const std::string& do_key) const {
        auto it = records_.find(UndoKeyOf(do_key));
        return it != records_.end() && it->second.outcome == Outcome::kTombstone;
    }

    static tl::unexpected<Error> RefusedAfterUndo() {
        return MakeError(ErrorCode::kFailedPrecondition, "compensated before applied");
    }

    Record NewRecord(const std::string& action, CallKind kind, Outcome outcome) {
        Record r;
        r.seq = next_seq_++;
        r.action = Intern(action);
        r.kind = kind;
        r.outcome = outcome;
        r.at_us = WallNowUs();
        return r;
    }

    Record NewApplied(const std::string& action) {
        Record r = NewRecord(action, CallKind::kDo, Outcome::kApplied);
        if (kit::IsLongAction(faults_, action)) {
            r.done_at_us = r.at_us + std::max<int64_t>(1, ToMicros(faults_.accept_duration));
        }
        return r;
    }

    uint32_t Intern(const std::string& action) {
        auto [it, inserted] = action_index_.try_emplace(action, static_cast<uint32_t>(actions_.size()));
        if (inserted) {
            actions_.push_back(action);
        }
        return it->second;
    }

    void Count(Outcome outcome) {
        switch (outcome) {
            case Outcome::kApplied: ++counts_.applied; break;
            case Outcome::kRejected: ++counts_.rejected; break;
            case Outcome::kCompensated: ++counts_.compensated; break;
            case Outcome::kTombstone: ++counts_.tombstones; break;
        }
    }

    // Makes the entry: in memory now, on disk with the next group commit (answers wait for it).
    std::pair<const std::string, Record>& Commit(std::string key, Record r) {
        Count(r.outcome);
        auto [it, inserted] = records_.emplace(std::move(key), std::move(r));
        COGS_CHECK(inserted);
        if (db_) {
            if (batch_.empty()) {
                asio::post(io_, [weak = weak_from_this()] {
                    if (auto self = weak.lock()) {
                        self->Flush();
                    }
                });
            }
            batch_.push_back(ToEntry(it->first, it->second));
        }
        return *it;
    }

    void Flush() {
        auto written = db_->Append(batch_);
        if (!written) {
            // Nothing of this batch is durable: forget it, and turn every answer that waited for it
            // into a retryable error (the caller re-sends; nothing was applied).
            for (const auto& e : batch_) {
                auto it = records_.find(e.key);
                if (it != records_.end()) {
                    Uncount(it->second.outcome);
                    records_.erase(it);
                }
            }
            for (auto& w : waiting_) {
                w.reply =
                    MakeError(ErrorCode::kUnavailable, "ledger write failed: " + written.error().message);
            }
        }
        batch_.clear();
        auto waiting = std::move(waiting_);
        waiting_.clear();
        for (auto& w : waiting) {
            Deliver(std::move(w.done), std::move(w.reply));
        }
    }

    void Uncount(Outcome outcome) {
        switch (outcome) {
            case Outcome::kApplied: --counts_.applied; break;
            case Outcome::kRejected: --counts_.rejected; break;
            case Outcome::kCompensated: --counts_.compensated; break;
            case Outcome::kTombstone: --counts_.tombstones; break;
        }
    }

    // The answer a recorded key gets, now and on every re-send.
    Result<ActionReply> Recorded(const std::string& key, const Record& r) const {
        if (r.outcome == Outcome::kRejected) {
            return MakeError(ErrorCode::kFailedPrecondition, r.message ? *r.message : "rejected");
        }
        ActionReply reply;
        if (r.done_at_us != 0 && WallNowUs() < r.done_at_us) {
            reply.accepted = true;
            return reply;
        }
        reply.output = Output(key, r);
        return reply;
    }

    std::string Output(const std::string& key, const Record& r) const {
        if (r.outcome == Outcome::kRejected) {
            return r.message ? *r.message : "rejected";
        }
        json::object o;
        o["id"] = IdFor(BaseOf(key));
        o["action"] = actions_[r.action];
        o["seq"] = r.seq;
        if (r.kind == CallKind::kDo) {
            if (actions_[r.action] == "allocate_ip") {
                o["ip"] = "10." + std::to_string((r.seq >> 16) & 255) + "." +
                          std::to_string((r.seq >> 8) & 255) + "." + std::to_string(r.seq & 255);
            }
        } else {
            o["compensated"] = r.outcome == Outcome::kCompensated;
        }
        return json::serialize(o);
    }

    // Every answer goes through here: it waits for the pending group commit, if any, since it may
    // depend on an entry in it.
    void Answer(Callback done, Result<ActionReply> reply) {
        if (!batch_.empty()) {
            waiting_.push_back(Waiting{std::move(done), std::move(reply)});
            return;
        }
        Deliver(std::move(done), std::move(reply));
    }

    // Never inline: a posted handler, or a timer when latency is set.
    void Deliver(Callback done, Result<ActionReply> reply) {
        kit::AfterLatency(
            io_, faults_, fault_counter_,
            [done = std::move(done), reply = std::move(reply)]() mutable { done(std::move(reply)); });
    }

    struct Waiting {
        Callback done;
        Result<ActionReply> reply;
    };

    asio::io_context& io_;
    FaultConfig faults_;
    kit::FaultRoller roller_;
    kit::FaultCounter fault_counter_;
    std::unique_ptr<kit::LedgerFile> db_;

    std::unordered_map<std::string, Record> records_;
    std::vector<std::string> actions_;
    std::unordered_map<std::string, uint32_t> action_index_;
    uint64_t next_seq_ = 1;
    LedgerCounts counts_;
    SimStats stats_;

    std::vector<LedgerEntry> batch_;  // made this turn, not yet written
    std::vector<Waiting> waiting_;    // answers held until the batch is written
};

SimService::SimService(boost::asio::io_context& io, SimOptions options) {
    const std::string path = options.ledger_path;
    observe::Metrics* metrics = options.metrics;
    impl_ = std::make_shared<Impl>(io, std::move(options));
    if (auto s = impl_->Open(path); !s) {
        throw std::runtime_error("sim service: " + s.error().ToString());
    }
    if (metrics != nullptr) {
        impl_->SampleInto(*metrics);
    }
}

SimService::~SimService() = default;

Result<std::unique_ptr<SimService>> SimService::Create(boost::asio::io_context& io, SimOptions options) {
    try {
        return std::make_unique<SimService>(io, std::move(options));
    } catch (const std::runtime_error& e) {
        return MakeError(ErrorCode::kUnavailable, e.what());
    }
}

void SimService::Handle(std::string action, std::string key, std::string /*input*/, SteadyTime deadline,
                        Callback done) {
    impl_->Handle(std::move(action), std::move(key), deadline, std::move(done));
}

std::string_view SimService::name() const { return kName; }
bool SimService::IsRecorded(const std::string& key) const { return impl_->IsRecorded(key); }
void SimService::Status(std::string key, Callback done) { impl_->Status(std::move(key), std::move(done)); }
void SimService::SetFaults(FaultConfig faults) { impl_->SetFaults(std::move(faults)); }
const FaultConfig& SimService::faults() const { return impl_->faults(); }
std::vector<LedgerEntry> SimService::Ledger() const { return impl_->Ledger(); }
std::optional<LedgerEntry> SimService::Find(const std::string& key) const { return impl_->Find(key); }
LedgerCounts SimService::Counts() const { return impl_->counts(); }
const SimStats& SimService::stats() const { return impl_->stats(); }
boost::asio::io_context& SimService::io() const { return impl_->io(); }
std::string SimService::LedgerJson() const { return LedgerToJson(Ledger()); }
std::string SimService::StatsJson() const { return ToJson(stats()); }

// ---- JSON ----

std::string ToJson(const SimStats& s) {
    json::object o;
    o["calls"] = s.calls;
    o["status_calls"] = s.status_calls;
    o["applied"] = s.applied;
    o["compensated"] = s.compensated;
    o["tombstones"] = s.tombstones;
    o["duplicates_answered"] = s.duplicates_answered;
    o["refused_after_undo"] = s.refused_after_undo;
    o["expired_on_arrival"] = s.expired_on_arrival;
    o["errors_injected"] = s.errors_injected;
    o["permanent_injected"] = s.permanent_injected;
    o["hangs_injected"] = s.hangs_injected;
    o["lost_replies_injected"] = s.lost_replies_injected;
    return json::serialize(o);
}

}  // namespace cogs::services::sim
