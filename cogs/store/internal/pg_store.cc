// The PostgreSQL backend's connections, and what its writer thread (WriteQueue, write_queue.h)
// does with a batch of groups and with a database that cannot be reached.
//
// A batch of groups is one transaction. The fast path sends BEGIN, every group's statements and
// the batch's commit mark as one pipeline (one round trip), checks each statement's answer (a
// fenced update changed no row, a create found its id taken), and sends COMMIT: two round trips
// per batch whatever its size. When a group is refused (rare: a stale owner, a duplicate id, bad
// bytes) the fast path rolls back and the batch is run again on the exact path, one group at a
// time inside a savepoint, so that the refused group is undone alone and the others commit.
//
// In doubt. If the connection breaks while a batch is in flight (its COMMIT sent or not), the
// store cannot know from the socket whether the batch committed. Each batch upserts its mark
// (this store's writer name, the batch's number) in commit_marks inside its own transaction; after
// reconnecting, the mark says it: equal to the batch's number, the batch committed (its callbacks
// get the verdicts computed before the COMMIT); anything else, nothing of it was applied (its
// groups are then refused or held, as any group of the episode). A group is therefore never
// applied twice and never acknowledged without being committed.
#include <unistd.h>

#include <random>

#include "cogs/base/check.h"
#include "cogs/store/internal/pg_store_impl.h"

namespace cogs::store {
namespace internal {
namespace {

std::string NewWriterName() {
    std::random_device rd;
    std::uniform_int_distribution<uint64_t> d;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%d-%016llx", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(d(rd)));
    return buf;
}

bool RefusesTheGroup(const pg::Reply& r) {
    // Integrity (a duplicate) and data (a NUL byte, bad UTF-8) errors belong to one group's
    // values; anything else is the transaction's.
    return r.sqlstate.starts_with("22") || r.sqlstate.starts_with("23");
}

}  // namespace

std::string PgName(PgSql s) { return "s" + std::to_string(static_cast<int>(s)); }

Result<std::unique_ptr<pg::Conn>> PgConnect(const PgOptions& options, bool reader) {
    COGS_ASSIGN_OR_RETURN(auto db, pg::Conn::Connect(options.conninfo, options.statement_timeout));
    const SteadyTime deadline = SteadyClock::now() + options.statement_timeout;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(options.statement_timeout).count();
    // The server gives up on what the client gave up on: a statement past the deadline, a
    // transaction left open by a client that stopped (paused, partitioned), which would keep its
    // locks. Readers plan each execution: the listings' optional filters pick their index per
    // call. The writer's statements keep their generic plans (planning each would cost more than
    // running them).
    const auto idle_ms =
        options.idle_in_transaction_timeout.count() > 0
            ? std::chrono::duration_cast<std::chrono::milliseconds>(options.idle_in_transaction_timeout)
                  .count()
            : 2 * ms;
    COGS_TRY(db->Exec("SET statement_timeout = " + std::to_string(ms) +
                          "; SET idle_in_transaction_session_timeout = " + std::to_string(idle_ms) +
                          "; SET synchronous_commit = on" +
                          (reader ? "; SET plan_cache_mode = force_custom_plan" : ""),
                      deadline));
    if (!reader) {
        // The writer's backend runs tens of thousands of small statements a second. Each one's
        // executor memory (~150 KB for a step's upsert) is malloc'd at the top of the heap and freed
        // at its end, and glibc gives a free top above its trim threshold (128 KB by default) back
        // to the kernel (brk): every statement then shrank and regrew the heap, and on a VM each
        // shrink is a TLB shootdown across the vCPUs. Profiled on the 2-core VM: ~55 % of the
        // backend's CPU, 4x its CPU per workflow. glibc raises the trim threshold to twice the size
        // of the largest mmap'd block freed so far (up to 32 MB), so one 8 MB value built and freed
        // here keeps the heap (up to 16 MB free at its top) for the connection's life. Harmless
        // where the server's allocator is another one.
        COGS_TRY(db->Exec("SELECT length(repeat('x', 8 * 1024 * 1024))", deadline));
    }
    for (int i = 0; i < kPgNumSql; ++i) {
        const auto s = static_cast<PgSql>(i);
        COGS_TRY(db->Prepare(PgName(s), PgSqlText(s), deadline));
    }
    return db;
}

Status PgMigrate(pg::Conn& db, const PgOptions& options) {
    const SteadyTime deadline = SteadyClock::now() + options.statement_timeout;
    // One transaction: PostgreSQL's DDL is transactional, so a crash leaves the old schema whole.
    COGS_TRY(
        db.Exec("BEGIN; SELECT pg_advisory_xact_lock(7300133); "
                "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
                deadline));
    Status st = [&]() -> Status {
        COGS_ASSIGN_OR_RETURN(
            pg::Rows v, db.Query({"", {}, "SELECT COALESCE(max(version), 0) FROM schema_version"}, deadline));
        const int64_t version = v.Int(0, 0);
        const int newest = kPgMigrations[kPgMigrationCount - 1].version;
        if (version > newest) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "store " + db.name() + " has schema version " + std::to_string(version) +
                                 ", newer than this program's " + std::to_string(newest) +
                                 ": run a newer cogsd");
        }
        for (size_t i = 0; i < kPgMigrationCount; ++i) {
            COGS_CHECK(kPgMigrations[i].version == static_cast<int>(i) + 1);
            if (kPgMigrations[i].version <= version) {
                continue;
            }
            COGS_TRY(db.Exec(kPgMigrations[i].sql, deadline));
            COGS_TRY(db.Exec("INSERT INTO schema_version(version) VALUES(" +
                                 std::to_string(kPgMigrations[i].version) + ")",
                             deadline));
        }
        return db.Exec("COMMIT", deadline);
    }();
    if (!st && !db.Broken()) {
        (void)db.Exec("ROLLBACK", deadline);
    }
    return st;
}

PgStore::PgStore(PgOptions options, PgFaults faults, std::unique_ptr<pg::Conn> writer)
    : QueuedStore(WriteQueue::Options{
          options.max_batch_groups, options.max_held_groups, options.on_commit, options.on_writable,
          "the database stayed unreachable until max_held_groups writes waited: exiting"}),
      options_(std::move(options)),
      faults_(std::move(faults)),
      writer_name_(NewWriterName()),
      writer_(std::move(writer)) {
    queue_.Start();
}

PgStore::~PgStore() { queue_.Stop(); }

void PgStore::CommitBatch(std::vector<Item>& batch) {
    const SteadyTime start = SteadyClock::now();
    std::vector<Status> results(batch.size(), Ok());
    for (size_t i = 0; i < batch.size(); ++i) {
        results[i] = CheckSteps(batch[i].group);
    }
    ++batch_seq_;
    std::optional<Status> txn = FastPath(batch, results);
    if (txn && *txn) {
        step_rows_.Commit();
    } else {
        step_rows_.Discard();
    }
    if (!txn) {
        txn = ExactPath(batch, results);
    }
    if (*txn) {
        queue_.Acknowledge(batch, results, /*committed=*/true, start);
        return;
    }
    if (writer_->Broken()) {
        // Committed or not: the mark tells once the database answers again (Reopen).
        in_doubt_.swap(batch);
        in_doubt_results_ = std::move(results);
        in_doubt_seq_ = batch_seq_;
        queue_.StopWrites(txn->error());
        return;
    }
    (void)writer_->Exec("ROLLBACK", Deadline());
    if (txn->error().code == ErrorCode::kNoSpace || txn->error().retryable) {
        // Nothing of it was applied (rolled back), and trying again may work: the server's disk,
        // its own statement timeout, a serialization failure. As for a lost connection, creates
        // are refused and the rest waits for ResumeWrites.
        queue_.StopWrites(txn->error());
        queue_.TurnAway(batch);
        return;
    }
    results.assign(batch.size(), *txn);
    queue_.Acknowledge(batch, results, /*committed=*/false, start);
}

std::optional<Status> PgStore::FastPath(std::vector<Item>& batch, std::vector<Status>& results) {
    std::vector<pg::Call> calls;
    std::vector<Check> checks;
    calls.reserve(batch.size() * 2 + 2);
    checks.reserve(batch.size() * 2 + 2);
    calls.push_back({"", {}, "BEGIN"});
    checks.push_back({});
    if (options_.leader_token != 0) {
        calls.push_back(LeaderFence());
        checks.push_back({});
    }
    for (size_t i = 0; i < batch.size(); ++i) {
        if (results[i]) {
            AddGroup(i, batch[i].group, calls, checks, &step_rows_);
        }
    }
    pg::Call mark = PgCall(kPgMarkCommit);
    mark.params.Text(writer_name_).Int(static_cast<int64_t>(batch_seq_));
    calls.push_back(std::move(mark));
    checks.push_back({});
    const SteadyTime deadline = Deadline();
    auto replies = writer_->Run(calls, deadline);
    if (!replies) {
        return MakeError(replies.error());
    }
    if (options_.leader_token != 0 && (*replies)[1].outcome == pg::Outcome::kOk &&
        (*replies)[1].rows.empty()) {
        (void)writer_->Exec("ROLLBACK", deadline);
        return Deposed();
    }
    for (const pg::Reply& r : *replies) {
        if (r.outcome == pg::Outcome::kFailed) {
            if (auto st = writer_->Exec("ROLLBACK", deadline); !st) {
                return st;
            }
            if (RefusesTheGroup(r)) {
                return std::nullopt;
            }
            return MakeError(r.error);
        }
    }
    // Every group stands, or the exact path finds out which does not.
    if (FirstRefused(*replies, checks) != kNoRefusal) {
        if (auto st = writer_->Exec("ROLLBACK", deadline); !st) {
            return st;
        }
        return std::nullopt;
    }
    return CommitBatchTransaction(deadline);
}

Status PgStore::ExactPath(std::vector<Item>& batch, std::vector<Status>& results) {
    const SteadyTime deadline = Deadline();
    COGS_TRY(writer_->Exec("BEGIN", deadline));
    COGS_TRY(CheckLeader(deadline));
    for (size_t i = 0; i < batch.size(); ++i) {
        if (!results[i]) {
            continue;
        }
        std::vector<pg::Call> calls{{"", {}, "SAVEPOINT g"}};
        std::vector<Check> checks{{}};
        AddGroup(i, batch[i].group, calls, checks, /*rows=*/nullptr);
        COGS_ASSIGN_OR_RETURN(std::vector<pg::Reply> replies, writer_->Run(calls, deadline));
        std::optional<Error> refusal;
        for (const pg::Reply& r : replies) {
            if (r.outcome == pg::Outcome::kFailed) {
                if (!RefusesTheGroup(r)) {
                    return MakeError(r.error);
                }
                refusal = r.error;
                if (r.sqlstate == "23505") {  // a create's steps: its indexes were checked before
                    refusal->code = ErrorCode::kInvalidArgument;
                }
                break;
            }
        }
        const size_t refused = refusal ? kNoRefusal : FirstRefused(replies, checks);
        if (!refusal && refused == kNoRefusal) {
            COGS_TRY(writer_->Exec("RELEASE g", deadline));
            continue;
        }
        COGS_TRY(writer_->Exec("ROLLBACK TO g; RELEASE g", deadline));
        // Why, read now that the group is undone: which row, and its token.
        results[i] = MakeError(refusal ? *refusal : Refusal(checks[refused], batch[i].group.fence, deadline));
    }
    pg::Call mark = PgCall(kPgMarkCommit);
    mark.params.Text(writer_name_).Int(static_cast<int64_t>(batch_seq_));
    COGS_TRY(writer_->Query(mark, deadline));
    return CommitBatchTransaction(deadline);
}

Status PgStore::CommitBatchTransaction(SteadyTime deadline) {
    COGS_TRY(writer_->Exec("COMMIT", deadline));
    if (faults_.lose_commit_reply && faults_.lose_commit_reply()) {
        writer_->Drop();
        return MakeError(ErrorCode::kUnavailable, "injected: the COMMIT's answer was lost");
    }
    return Ok();
}

pg::Call PgStore::LeaderFence() const {
    pg::Call c = PgCall(kPgLeaderFence);
    c.params.Int(static_cast<int64_t>(options_.leader_token));
    return c;
}

Status PgStore::CheckLeader(SteadyTime deadline) {
    if (options_.leader_token == 0) {
        return Ok();
    }
    COGS_ASSIGN_OR_RETURN(pg::Rows rows, writer_->Query(LeaderFence(), deadline));
    return rows.empty() ? Deposed() : Ok();
}

Status PgStore::Deposed() {
    Error why(ErrorCode::kFenced, "this replica's leader token " + std::to_string(options_.leader_token) +
                                      " was superseded: another replica leads");
    if (!deposed_) {
        deposed_ = true;
        if (options_.on_deposed) {
            options_.on_deposed(why);
        }
    }
    return MakeError(std::move(why));
}

Error PgStore::WritesStopping(const Error& why) {
    Error down = why;
    down.retryable = true;
    step_rows_.Clear();  // whatever happens to the database meanwhile, nothing is guessed after
    down_for_space_.store(why.code == ErrorCode::kNoSpace, std::memory_order_release);
    return down;
}

// As the SQLite backend's full disk: a create is refused (its caller can say "try again"), any
// other group continues something durable and waits, in order (WriteQueue::TurnAway).
Error PgStore::RefuseCreate(const Error& episode) const {
    const bool full = episode.code == ErrorCode::kNoSpace;
    return Error(full ? ErrorCode::kNoSpace : ErrorCode::kUnavailable,
                 full ? "the database's disk is full: nothing was written; writes resume once space is freed"
                      : "the database cannot be reached: nothing was written; writes resume once it is back");
}

Error PgStore::WhyNotWritable() {
    if (down_for_space_.load(std::memory_order_acquire)) {
        return Error(ErrorCode::kNoSpace,
                     "the control plane's database is out of disk space: changes are refused until space is "
                     "freed; reads go on");
    }
    return Error(
        ErrorCode::kUnavailable,
        "the control plane cannot reach its database: changes are refused until it is back; reads go on");
}

Status PgStore::Reconnect() {
    if (!writer_->Broken()) {
        return Ok();
    }
    COGS_ASSIGN_OR_RETURN(auto db, PgConnect(options_, /*reader=*/false));
    writer_ = std::move(db);
    return Ok();
}

Status PgStore::Reopen() {
    COGS_TRY(Reconnect());
    if (in_doubt_.empty()) {
        return Ok();
    }
    pg::Call q = PgCall(kPgCommitMark);
    q.params.Text(writer_name_);
    COGS_ASSIGN_OR_RETURN(pg::Rows mark, writer_->Query(q, Deadline()));
    const bool committed = !mark.empty() && static_cast<uint64_t>(mark.Int(0, 0)) == in_doubt_seq_;
    std::vector<Item> batch;
    batch.swap(in_doubt_);
    if (committed) {
        queue_.Acknowledge(batch, in_doubt_results_, /*committed=*/true, SteadyClock::now());
    } else {
        // Nothing of it was applied: its groups wait (creates are refused) ahead of the rest.
        queue_.TurnAwayFirst(batch);
    }
    return Ok();
}

}  // namespace internal

Result<std::unique_ptr<Store>> OpenPgStore(const PgOptions& options) {
    return internal::OpenPgStoreWithFaults(options, {});
}

Result<std::unique_ptr<Store>> internal::OpenPgStoreWithFaults(const PgOptions& options, PgFaults faults) {
    if (options.conninfo.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "the PostgreSQL connection string is empty");
    }
    {
        COGS_ASSIGN_OR_RETURN(auto db, pg::Conn::Connect(options.conninfo, options.statement_timeout));
        COGS_TRY(internal::PgMigrate(*db, options));
    }
    COGS_ASSIGN_OR_RETURN(auto writer, internal::PgConnect(options, /*reader=*/false));
    return std::unique_ptr<Store>(new internal::PgStore(options, std::move(faults), std::move(writer)));
}

}  // namespace cogs::store
