#include "cogs/services/sim/sim_service.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "cogs/base/check.h"
#include "cogs/base/hash.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"

namespace cogs::services::sim {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using kit::kDoSuffix;
using kit::kUndoSuffix;
using workflow::ActionReply;

constexpr std::string_view kName = "sim";

// A stable id for the thing a key creates: FNV-1a of the key without its /do or /undo, so the undo
// names the same id as its do.
std::string IdFor(std::string_view base) {
    const uint64_t h = cogs::base::Fnv1a64(base, cogs::base::kFnv1aFirstBasis);
    static const char* kHex = "0123456789abcdef";
    std::string id = "sim-";
    for (int shift = 60; shift >= 0; shift -= 4) {
        id += kHex[(h >> shift) & 15];
    }
    return id;
}

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

class SimService::Impl : public std::enable_shared_from_this<SimService::Impl>, public kit::ActionTarget {
public:
    Impl(asio::io_context& io, const SimOptions& options)
        : io_(io),
          clock_(options.clock != nullptr ? *options.clock : runtime::SystemClock()),
          desk_(io, options.faults, options.seed, options.metrics, kName, stats_),
          pruner_(options.retention, options.metrics, kName),
          only_actions_(options.actions.begin(), options.actions.end()) {}

    // The ledger's size by outcome, sampled at every render of `metrics` (on the io thread: see
    // sim_service.h). The sampler holds the service weakly: once it is gone, nothing.
    void SampleInto(observe::Metrics& metrics) {
        const observe::GaugeFamily family = kit::RecordsGauge(metrics);
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

    // kit::ActionTarget, with the semantics of sim_service.h. The sim serves no other routes.
    std::string_view name() const override { return kName; }
    bool IsRecorded(const std::string& key) const override { return records_.contains(key); }
    std::optional<http::Response> Get(const http::Request& request) override {
        if (request.Path() != "/v1/inventory") {
            return std::nullopt;
        }
        http::Response r;
        r.body = Inventory();
        return r;
    }
    bool Post(const http::Request& /*request*/, const http::Respond& /*respond*/) override { return false; }

    ~Impl() {
        // Entries made in this turn are written even though their answers will never leave.
        if (db_ && (!batch_.empty() || !pruned_.empty())) {
            (void)db_->Append(batch_, pruned_);
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
            pruner_.Add(e.key, r.at_us, r.done_at_us);
            records_.emplace(std::move(e.key), std::move(r));
        }
        // What expired while the service was down goes before the first call.
        const std::vector<std::string> expired = pruner_.Take(clock_.WallUs(), records_.size());
        for (const std::string& key : expired) {
            Erase(key);
        }
        return db_->Append({}, expired);
    }

    void Handle(std::string action, std::string key, std::string /*input*/, SteadyTime deadline,
                Callback done) override {
        if (!desk_.Admit(deadline, done)) {
            return;
        }
        if (!only_actions_.empty() && !only_actions_.contains(action)) {
            desk_.Answer(std::move(done), MakeError(ErrorCode::kNotFound, "no action '" + action + "'"));
            return;
        }
        if (key.ends_with(kDoSuffix)) {
            HandleDo(std::move(action), std::move(key), std::move(done));
        } else if (key.ends_with(kUndoSuffix)) {
            HandleUndo(std::move(action), std::move(key), std::move(done));
        } else {
            desk_.Answer(std::move(done),
                         MakeError(ErrorCode::kInvalidArgument,
                                   "idempotency key '" + key + "' must end with /do or /undo"));
        }
    }

    void Status(std::string key, Callback done) override {
        if (!desk_.AdmitStatus()) {
            return;
        }
        if (auto it = records_.find(key); it != records_.end()) {
            desk_.Answer(std::move(done), Recorded(it->first, it->second));
        } else if (key.ends_with(kDoSuffix) && IsTombstoned(key)) {
            desk_.Answer(std::move(done), MakeError(kit::RefusedAfterUndo()));
        } else {
            desk_.Answer(std::move(done), MakeError(kit::NotRecorded(key)));
        }
    }

    void SetFaults(FaultConfig faults) override { desk_.SetFaults(std::move(faults)); }
    const FaultConfig& faults() const override { return desk_.faults(); }
    std::string LedgerJson() const override { return LedgerToJson(Ledger()); }
    std::string StatsJson() const override { return ToJson(stats_); }

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

    // GET /v1/inventory: every do applied and not compensated, in key order.
    std::string Inventory() const {
        std::vector<const std::pair<const std::string, Record>*> held;
        for (const auto& entry : records_) {
            const auto& [key, r] = entry;
            if (r.kind != CallKind::kDo || r.outcome != Outcome::kApplied) {
                continue;
            }
            auto undo = records_.find(UndoKeyOf(key));
            if (undo == records_.end() || undo->second.outcome != Outcome::kCompensated) {
                held.push_back(&entry);
            }
        }
        std::sort(held.begin(), held.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
        json::array applied;
        for (const auto* entry : held) {
            applied.push_back(json::object{{"id", IdFor(BaseOf(entry->first))},
                                           {"key", entry->first},
                                           {"action", actions_[entry->second.action]}});
        }
        return json::serialize(json::object{{"applied", std::move(applied)}});
    }

    LedgerCounts counts() const { return counts_; }
    const SimStats& stats() const { return stats_; }
    asio::io_context& io() const { return io_; }

private:
    using Fault = kit::Fault;

    void HandleDo(std::string action, std::string key, Callback done) {
        if (auto it = records_.find(key); it != records_.end()) {
            ++stats_.duplicates_answered;
            desk_.Answer(std::move(done), Recorded(it->first, it->second));
            return;
        }
        if (IsTombstoned(key)) {
            ++stats_.refused_after_undo;
            desk_.Answer(std::move(done), MakeError(kit::RefusedAfterUndo()));
            return;
        }
        const std::optional<Fault> fault = desk_.Roll(action, CallKind::kDo, done);
        if (!fault) {
            return;
        }
        Record r;
        if (*fault == Fault::kPermanent) {
            r = NewRecord(action, CallKind::kDo, Outcome::kRejected);
            r.message = std::make_unique<std::string>(kit::PermanentRefusal(desk_.faults(), action));
        } else {
            ++stats_.applied;
            r = NewApplied(action);
        }
        auto& [k, rec] = Commit(std::move(key), std::move(r));
        if (*fault != Fault::kLostReply) {
            desk_.Answer(std::move(done), Recorded(k, rec));
        }
    }

    void HandleUndo(std::string action, std::string key, Callback done) {
        if (auto it = records_.find(key); it != records_.end()) {
            ++stats_.duplicates_answered;
            desk_.Answer(std::move(done), Recorded(it->first, it->second));
            return;
        }
        const std::optional<Fault> fault = desk_.Roll(action, CallKind::kUndo, done);
        if (!fault) {
            return;
        }
        auto target = records_.find(DoKeyOf(key));
        const bool applied = target != records_.end() && target->second.outcome == Outcome::kApplied;
        Record r = NewRecord(action, CallKind::kUndo, applied ? Outcome::kCompensated : Outcome::kTombstone);
        ++(applied ? stats_.compensated : stats_.tombstones);
        auto& [k, rec] = Commit(std::move(key), std::move(r));
        if (*fault != Fault::kLostReply) {
            desk_.Answer(std::move(done), Recorded(k, rec));
        }
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
        if (key.ends_with(kDoSuffix)) {
            return key.substr(0, key.size() - kDoSuffix.size());
        }
        if (key.ends_with(kUndoSuffix)) {
            return key.substr(0, key.size() - kUndoSuffix.size());
        }
        return key;
    }

    // Whether the undo of this do key was recorded without the do having been applied.
    bool IsTombstoned(const std::string& do_key) const {
        auto it = records_.find(UndoKeyOf(do_key));
        return it != records_.end() && it->second.outcome == Outcome::kTombstone;
    }

    Record NewRecord(const std::string& action, CallKind kind, Outcome outcome) {
        Record r;
        r.seq = next_seq_++;
        r.action = Intern(action);
        r.kind = kind;
        r.outcome = outcome;
        r.at_us = clock_.WallUs();
        return r;
    }

    Record NewApplied(const std::string& action) {
        Record r = NewRecord(action, CallKind::kDo, Outcome::kApplied);
        r.done_at_us = desk_.LongActionEndUs(action, r.at_us);
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
        pruner_.Add(key, r.at_us, r.done_at_us);
        auto [it, inserted] = records_.emplace(std::move(key), std::move(r));
        COGS_CHECK(inserted);
        // Never the entry just made (younger than min_age): `it` stays valid.
        for (std::string& old :
             pruner_.Take(it->second.at_us, records_.size(), kit::LedgerPruner::kPerEntry)) {
            Erase(old);
            if (db_) {
                pruned_.push_back(std::move(old));
            }
        }
        if (db_) {
            desk_.CommitThisTurn(weak_from_this(), [this] { Flush(); });
            batch_.push_back(ToEntry(it->first, it->second));
        }
        return *it;
    }

    void Flush() {
        auto written = db_->Append(batch_, pruned_);
        std::optional<Error> failed;
        if (!written) {
            // Nothing of this batch is durable: forget it, and turn every answer that waited for it
            // into a retryable error (the caller re-sends; nothing was applied). Its entries were
            // the last ones the pruner queued. The keys it pruned stay in the file until the next
            // open prunes them (they are past retention either way).
            for (const auto& e : batch_) {
                Erase(e.key);
            }
            pruner_.DropNewest(batch_.size());
            failed = Error(ErrorCode::kUnavailable, "ledger write failed: " + written.error().message);
        }
        batch_.clear();
        pruned_.clear();
        desk_.Release(std::move(failed));
    }

    void Erase(const std::string& key) {
        if (auto it = records_.find(key); it != records_.end()) {
            Uncount(it->second.outcome);
            records_.erase(it);
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
        if (r.done_at_us != 0 && clock_.WallUs() < r.done_at_us) {
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

    asio::io_context& io_;
    runtime::Clock& clock_;
    SimStats stats_;
    kit::CallDesk desk_;        // counts in stats_; answers wait for the batch's write
    kit::LedgerPruner pruner_;  // which entries of records_ may go (kit/ledger.h)
    std::unique_ptr<kit::LedgerFile> db_;

    std::unordered_map<std::string, Record> records_;
    std::unordered_set<std::string> only_actions_;  // SimOptions::actions; empty: every name
    std::vector<std::string> actions_;
    std::unordered_map<std::string, uint32_t> action_index_;
    uint64_t next_seq_ = 1;
    LedgerCounts counts_;

    std::vector<LedgerEntry> batch_;   // made this turn, not yet written
    std::vector<std::string> pruned_;  // pruned this turn, deleted from the file with batch_
};

SimService::SimService(boost::asio::io_context& io, SimOptions options)
    : SimService(std::make_shared<Impl>(io, options), options) {}

SimService::SimService(std::shared_ptr<Impl> impl, const SimOptions& options)
    : ForwardingTarget(impl), impl_(*impl) {
    if (auto s = impl->Open(options.ledger_path); !s) {
        throw std::runtime_error("sim service: " + s.error().ToString());
    }
    if (options.metrics != nullptr) {
        impl->SampleInto(*options.metrics);
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

std::vector<LedgerEntry> SimService::Ledger() const { return impl_.Ledger(); }
std::optional<LedgerEntry> SimService::Find(const std::string& key) const { return impl_.Find(key); }
LedgerCounts SimService::Counts() const { return impl_.counts(); }
const SimStats& SimService::stats() const { return impl_.stats(); }
boost::asio::io_context& SimService::io() const { return impl_.io(); }

// ---- JSON ----

std::string ToJson(const SimStats& s) {
    json::object o;
    for (const auto& [name, n] : s.Named()) {
        o[name] = n;
    }
    o["applied"] = s.applied;
    o["compensated"] = s.compensated;
    o["tombstones"] = s.tombstones;
    return json::serialize(o);
}

}  // namespace cogs::services::sim
