#include "cogs/services/kit/ledger.h"

#include <algorithm>
#include <boost/json.hpp>

#include "cogs/services/kit/internal/ledger_table.h"
#include "cogs/sqlite/db.h"

namespace cogs::services::kit {
namespace {

namespace json = boost::json;

// A ledger-only file. Version 1 is the simulated service's table as it was first released (no
// refusal codes; also what a file written before there were versions holds, hence IF NOT EXISTS);
// version 2 gives it the shared layout of internal/ledger_table.h. Never edit a released step.
constexpr sqlite::Migration kLedgerFileSteps[] = {
    {1, "\n" COGS_KIT_LEDGER_CREATE_HEAD R"sql(    kind       TEXT NOT NULL,     -- do | undo
    outcome    TEXT NOT NULL,     -- applied | rejected | compensated | tombstone
    output     TEXT NOT NULL,     -- the answered JSON, or the refusal message
    at_us      INTEGER NOT NULL,  -- wall clock, microseconds since the epoch
    done_at_us INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
)sql"},
    {2, "ALTER TABLE ledger ADD COLUMN code TEXT NOT NULL DEFAULT '';"},
};

constexpr sqlite::Schema kLedgerFile{"ledger", kLedgerFileSteps, "schema_version"};

}  // namespace

std::string_view ToString(Outcome outcome) {
    switch (outcome) {
        case Outcome::kApplied: return "applied";
        case Outcome::kRejected: return "rejected";
        case Outcome::kCompensated: return "compensated";
        case Outcome::kTombstone: return "tombstone";
    }
    return "applied";
}

LedgerPruner::LedgerPruner(LedgerRetention retention, observe::Metrics* metrics, std::string_view service)
    : retention_(retention),
      pruned_(observe::CounterOf(metrics, "cogs_pruned_total", "Records deleted by retention, by what.")
                  .With({{"service", std::string(service)}, {"what", "ledger"}})) {}

void LedgerPruner::Add(std::string key, int64_t at_us, int64_t done_at_us) {
    queue_.push_back(Item{std::max(at_us, done_at_us), std::move(key)});
}

void LedgerPruner::DropNewest(size_t n) { queue_.resize(queue_.size() - std::min(n, queue_.size())); }

std::vector<std::string> LedgerPruner::Take(int64_t now_us, size_t size, size_t limit) {
    const auto us = [](Duration d) {
        return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    };
    const int64_t old_before = now_us - us(retention_.keep_for);
    const int64_t safe_before = now_us - us(std::max(retention_.min_age, Duration::zero()));
    std::vector<std::string> out;
    // The front is the oldest (a long action still running there holds back the ones behind it
    // until it ends: a short, bounded delay).
    while (!queue_.empty() && out.size() < limit) {
        const Item& front = queue_.front();
        const bool over = size > out.size() + retention_.keep_at_most;
        if (front.since_us >= safe_before || (front.since_us >= old_before && !over)) {
            break;
        }
        out.push_back(std::move(queue_.front().key));
        queue_.pop_front();
    }
    if (!out.empty()) {
        pruned_.Inc(static_cast<double>(out.size()));
    }
    return out;
}

std::string LedgerToJson(const std::vector<LedgerEntry>& entries) {
    json::array a;
    a.reserve(entries.size());
    for (const auto& e : entries) {
        json::object o;
        o["seq"] = e.seq;
        o["key"] = e.key;
        o["action"] = e.action;
        o["kind"] = ToString(e.kind);
        o["outcome"] = ToString(e.outcome);
        if (e.outcome == Outcome::kRejected) {
            o["error"] = e.output;
            if (e.code) {
                o["code"] = ToString(*e.code);
            }
        } else {
            boost::system::error_code ec;
            o["output"] = json::parse(e.output, ec);
        }
        o["at_us"] = e.at_us;
        if (e.done_at_us != 0) {
            o["done_at_us"] = e.done_at_us;
        }
        a.push_back(std::move(o));
    }
    return json::serialize(a);
}

LedgerFile::LedgerFile(std::unique_ptr<sqlite::Db> db, std::unique_ptr<internal::LedgerTable> table)
    : db_(std::move(db)), table_(std::move(table)) {}

LedgerFile::~LedgerFile() = default;

Result<std::unique_ptr<LedgerFile>> LedgerFile::Open(const std::string& path) {
    sqlite::Options options;
    options.wal = true;
    options.synchronous = sqlite::Synchronous::kNormal;
    options.busy_timeout_ms = 5000;
    COGS_ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(path, options));
    COGS_TRY(sqlite::Migrate(*db, kLedgerFile));
    COGS_ASSIGN_OR_RETURN(auto table,
                          internal::LedgerTable::Prepare(*db, internal::LedgerTable::OnConflict::kRefuse));
    return std::unique_ptr<LedgerFile>(new LedgerFile(std::move(db), std::move(table)));
}

Result<std::vector<LedgerEntry>> LedgerFile::LoadAll() { return table_->LoadAll(); }

Status LedgerFile::Append(const std::vector<LedgerEntry>& entries, const std::vector<std::string>& pruned) {
    if (entries.empty() && pruned.empty()) {
        return Ok();
    }
    return db_->Transact([&]() -> Status {
        for (const LedgerEntry& e : entries) {
            COGS_TRY(table_->Insert(e));
        }
        for (const std::string& key : pruned) {
            COGS_TRY(table_->Erase(key));
        }
        return Ok();
    });
}

}  // namespace cogs::services::kit
