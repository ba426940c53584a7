// The PostgreSQL backend's statements: what a group sends, the blocking writes (leases, claims,
// revivals, definitions, pruning), each its own transaction on the writer thread, and the reads,
// each one pipeline on a pooled reader connection.
#include <algorithm>
#include <string>
#include <vector>

#include "cogs/store/internal/pg_store_impl.h"

namespace cogs::store::internal {
namespace {

// A text[] parameter: {"a","b"} with quotes and backslashes escaped.
std::string PgArray(const std::vector<std::string>& items) {
    std::string out = "{";
    for (size_t i = 0; i < items.size(); ++i) {
        out += i == 0 ? "\"" : ",\"";
        for (char c : items[i]) {
            if (c == '"' || c == '\\') {
                out += '\\';
            }
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

int64_t Db(uint64_t fence) { return static_cast<int64_t>(fence); }

// state .. error, the mutable columns of a step, in the order of COGS_STEP_COLUMNS after idx.
pg::Params& StepValues(pg::Params& p, const StepRecord& s) {
    p.Int(static_cast<int>(s.state)).Int(s.attempts).Int(s.comp_attempts).Bool(s.applied);
    p.Int(s.next_at_ms).Int(s.started_ms).Int(s.finished_ms).Text(s.output).Text(s.error);
    return p;
}

// The statements that load one workflow; the replies go to ParseWorkflow.
void LoadCalls(const std::string& id, bool with_logs, std::vector<pg::Call>& calls) {
    pg::Call wf = PgCall(kPgSelectWorkflow);
    wf.params.Text(id);
    pg::Call steps = PgCall(with_logs ? kPgSelectStepsWithLog : kPgSelectSteps);
    steps.params.Text(id);
    calls.push_back(std::move(wf));
    calls.push_back(std::move(steps));
}

Result<WorkflowRecord> ParseWorkflow(const std::string& id, const pg::Reply& wf, const pg::Reply& steps) {
    for (const pg::Reply* r : {&wf, &steps}) {
        if (r->outcome != pg::Outcome::kOk) {
            return MakeError(r->error);
        }
    }
    const pg::Rows& q = wf.rows;
    if (q.empty()) {
        return MakeError(ErrorCode::kNotFound, "no workflow '" + id + "'");
    }
    WorkflowRecord r;
    r.id = q.Text(0, 0);
    r.type = q.Text(0, 1);
    r.version = static_cast<int>(q.Int(0, 2));
    r.input = q.Text(0, 3);
    r.state = static_cast<WorkflowState>(q.Int(0, 4));
    r.reason = q.Text(0, 5);
    r.cancel_requested = q.Int(0, 6) != 0;
    r.created_ms = q.Int(0, 7);
    r.updated_ms = q.Int(0, 8);
    r.deadline_ms = q.Int(0, 9);
    r.finished_ms = q.Int(0, 10);
    r.trace = q.Text(0, 11);
    r.fence = static_cast<uint64_t>(q.Int(0, 12));
    r.steps.resize(static_cast<size_t>(q.Int(0, 13)));
    r.project = q.Text(0, 14);
    r.resource_kind = q.Text(0, 15);
    r.resource_id = q.Text(0, 16);
    for (size_t i = 0; i < r.steps.size(); ++i) {
        r.steps[i].index = static_cast<int>(i);  // pending unless a row says otherwise
    }
    const pg::Rows& s = steps.rows;
    for (int row = 0; row < s.size(); ++row) {
        const auto index = static_cast<size_t>(s.Int(row, 0));
        if (index >= r.steps.size()) {
            return MakeError(ErrorCode::kInternal, "workflow '" + id + "' has a row for step " +
                                                       std::to_string(index) + " beyond its step count");
        }
        StepRecord& st = r.steps[index];
        st.state = static_cast<StepState>(s.Int(row, 1));
        st.attempts = static_cast<int>(s.Int(row, 2));
        st.comp_attempts = static_cast<int>(s.Int(row, 3));
        st.applied = s.Int(row, 4) != 0;
        st.next_at_ms = s.Int(row, 5);
        st.started_ms = s.Int(row, 6);
        st.finished_ms = s.Int(row, 7);
        st.output = s.Text(row, 8);
        st.error = s.Text(row, 9);
        st.log = s.Text(row, 10);
    }
    return r;
}

Result<std::vector<WorkflowRecord>> LoadMany(pg::Conn& db, const std::vector<std::string>& ids,
                                             bool with_logs, SteadyTime deadline) {
    std::vector<pg::Call> calls;
    for (const std::string& id : ids) {
        LoadCalls(id, with_logs, calls);
    }
    std::vector<WorkflowRecord> out;
    if (calls.empty()) {
        return out;
    }
    COGS_ASSIGN_OR_RETURN(std::vector<pg::Reply> replies, db.Run(calls, deadline));
    for (size_t i = 0; i < ids.size(); ++i) {
        COGS_ASSIGN_OR_RETURN(WorkflowRecord r, ParseWorkflow(ids[i], replies[2 * i], replies[2 * i + 1]));
        out.push_back(std::move(r));
    }
    return out;
}

Status CheckLeaseIsCurrent(pg::Conn& db, const Lease& lease, SteadyTime deadline) {
    pg::Call q = PgCall(kPgLeaseTokenOf);
    q.params.Text(lease.owner);
    COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(q, deadline));
    if (rows.empty() || static_cast<uint64_t>(rows.Int(0, 0)) != lease.token) {
        return MakeError(ErrorCode::kFenced, "lease of '" + lease.owner + "' with token " +
                                                 std::to_string(lease.token) + " is not current");
    }
    return Ok();
}

}  // namespace

// ---- which step rows exist (a hint for the fast path)

PgStepRows::Guess PgStepRows::Row(const std::string& workflow_id, int step) const {
    if (step < 0 || step >= 64) {
        return kUnknown;
    }
    const uint64_t bit = uint64_t{1} << step;
    if (auto b = batch_.find(workflow_id); b != batch_.end()) {
        return !b->second.tracked ? kUnknown : (b->second.rows & bit) != 0 ? kHasRow : kNoRow;
    }
    auto c = committed_.find(workflow_id);
    return c == committed_.end() ? kUnknown : (c->second & bit) != 0 ? kHasRow : kNoRow;
}

PgStepRows::Entry& PgStepRows::Batch(const std::string& workflow_id) {
    auto [it, fresh] = batch_.try_emplace(workflow_id);
    if (fresh) {
        if (auto c = committed_.find(workflow_id); c != committed_.end()) {
            it->second.rows = c->second;
            it->second.tracked = true;
        }
    }
    return it->second;
}

void PgStepRows::Created(const WorkflowRecord& w) {
    Entry& e = Batch(w.id);
    // A duplicate id is refused, which sends the batch to the exact path: this entry is then dropped.
    e = Entry{};
    e.tracked = w.steps.size() <= 64;
    for (const StepRecord& s : w.steps) {
        if (e.tracked && !(s.state == StepState::kPending && s.attempts == 0 && s.log.empty())) {
            e.rows |= uint64_t{1} << s.index;  // CheckSteps vouched for the index
        }
    }
}

void PgStepRows::Wrote(const std::string& workflow_id, int step) {
    Entry& e = Batch(workflow_id);
    if (step >= 0 && step < 64) {
        e.rows |= uint64_t{1} << step;
    }
}

void PgStepRows::Ended(const std::string& workflow_id) { Batch(workflow_id).ended = true; }

void PgStepRows::Commit() {
    for (auto& [id, e] : batch_) {
        if (e.ended) {
            // An ended workflow gets no more step changes (a revived one is claimed anew), and its
            // rows may be pruned: stop tracking it.
            committed_.erase(id);
        } else if (e.tracked) {
            committed_[id] = e.rows;
        }
    }
    batch_.clear();
    if (committed_.size() > kMaxTracked) {
        committed_.clear();
    }
}

void PgStepRows::Discard() {
    for (const auto& [id, e] : batch_) {
        committed_.erase(id);
    }
    batch_.clear();
}

void PgStepRows::Clear() {
    committed_.clear();
    batch_.clear();
}

// ---- a group's statements

Status PgStore::CheckSteps(const WriteGroup& g) {
    for (const WorkflowRecord& w : g.creates) {
        std::vector<bool> seen(w.steps.size(), false);
        for (const StepRecord& s : w.steps) {
            if (s.index < 0 || static_cast<size_t>(s.index) >= w.steps.size() || seen[s.index]) {
                return MakeError(ErrorCode::kInvalidArgument, "workflow '" + w.id + "' has step index " +
                                                                  std::to_string(s.index) +
                                                                  " twice or out of range");
            }
            seen[s.index] = true;
        }
    }
    return Ok();
}

void PgStore::AddGroup(size_t index, const WriteGroup& g, std::vector<pg::Call>& calls,
                       std::vector<Check>& checks, PgStepRows* rows) {
    auto add = [&](pg::Call call, Check::Kind kind, const std::string* id = nullptr, int step = 0) {
        calls.push_back(std::move(call));
        checks.push_back(Check{index, kind, id, step});
    };
    for (const WorkflowRecord& w : g.creates) {
        pg::Call c = PgCall(kPgInsertWorkflow);
        c.params.Text(w.id).Text(w.type).Int(w.version).Text(w.input).Int(static_cast<int>(w.state));
        c.params.Text(w.reason).Bool(w.cancel_requested).Int(w.created_ms).Int(w.updated_ms);
        c.params.Int(w.deadline_ms).Int(w.finished_ms).Text(w.trace).Int(Db(g.fence));
        c.params.Int(static_cast<int64_t>(w.steps.size()))
            .Text(w.project)
            .Text(w.resource_kind)
            .Text(w.resource_id);
        add(std::move(c), Check::kCreated, &w.id);
        for (const StepRecord& s : w.steps) {
            if (s.state == StepState::kPending && s.attempts == 0 && s.log.empty()) {
                continue;  // implied by step_count
            }
            pg::Call st = PgCall(kPgInsertStep);
            st.params.Text(w.id).Int(s.index);
            StepValues(st.params, s).Text(s.log).Int(Db(g.fence));
            add(std::move(st), Check::kNone);
        }
        if (rows != nullptr) {
            rows->Created(w);
        }
    }
    for (const WorkflowUpdate& u : g.workflows) {
        pg::Call c = PgCall(kPgUpdateWorkflow);
        c.params.Int(static_cast<int>(u.state)).Text(u.reason).Bool(u.cancel_requested);
        c.params.Int(u.updated_ms).Int(u.finished_ms).Text(u.id).Int(Db(g.fence));
        add(std::move(c), Check::kWorkflowFenced, &u.id);
        if (rows != nullptr && u.state >= WorkflowState::kSucceeded) {
            rows->Ended(u.id);
        }
    }
    for (const StepUpdate& u : g.steps) {
        const bool append = !u.log_append.empty();
        PgSql sql = append ? kPgUpsertStep : kPgUpsertStepKeepLog;
        if (rows != nullptr) {
            switch (rows->Row(u.workflow_id, u.step.index)) {
                case PgStepRows::kHasRow: sql = append ? kPgUpdateStep : kPgUpdateStepKeepLog; break;
                case PgStepRows::kNoRow:
                    sql = append ? kPgInsertStepFenced : kPgInsertStepFencedKeepLog;
                    break;
                case PgStepRows::kUnknown: break;
            }
            rows->Wrote(u.workflow_id, u.step.index);  // if its group stands, the row exists
        }
        pg::Call c = PgCall(sql);
        StepValues(c.params, u.step).Text(u.workflow_id).Int(u.step.index).Int(Db(g.fence));
        if (append) {
            c.params.Text(u.log_append);
        }
        add(std::move(c), Check::kStepFenced, &u.workflow_id, u.step.index);
    }
    for (const ResourceWrite& r : g.resources) {
        pg::Call c = PgCall(r.erase ? kPgDeleteResource : kPgUpsertResource);
        c.params.Text(r.kind).Text(r.id);
        if (!r.erase) {
            c.params.Text(r.project).Text(r.body);
        }
        add(std::move(c), Check::kNone);
    }
    for (const EventRecord& e : g.events) {
        pg::Call c = PgCall(kPgInsertEvent);
        c.params.Int(e.time_ms).Text(e.project).Text(e.resource_kind).Text(e.resource_id).Text(e.workflow_id);
        c.params.Text(e.type).Text(e.message).Text(e.trace_id);
        add(std::move(c), Check::kNone);
    }
    for (const AuditRecord& a : g.audit) {
        pg::Call c = PgCall(kPgInsertAudit);
        c.params.Int(a.time_ms).Text(a.token_id).Text(a.project).Text(a.role).Text(a.method).Text(a.path);
        c.params.Text(a.resource_id).Int(a.status).Text(a.trace_id).Text(a.peer);
        add(std::move(c), Check::kNone);
    }
}

size_t PgStore::FirstRefused(const std::vector<pg::Reply>& replies, const std::vector<Check>& checks) {
    for (size_t i = 0; i < checks.size(); ++i) {
        const pg::Reply& r = replies[i];
        if (r.outcome != pg::Outcome::kOk) {
            continue;
        }
        switch (checks[i].kind) {
            case Check::kNone: break;
            case Check::kCreated:
            case Check::kWorkflowFenced:
                if (r.rows.Changed() == 0) {
                    return i;
                }
                break;
            case Check::kStepFenced:
                if (r.rows.empty() || r.rows.Int(0, 0) == 0) {
                    return i;
                }
                break;
        }
    }
    return kNoRefusal;
}

Error PgStore::Refusal(const Check& check, uint64_t fence, SteadyTime deadline) {
    const std::string& id = *check.id;
    if (check.kind == Check::kCreated) {
        return Error(ErrorCode::kAlreadyExists, "workflow '" + id + "' already exists");
    }
    bool on_step = check.kind == Check::kStepFenced;
    std::string what = "workflow '" + id + "'";
    pg::Call q = PgCall(kPgWorkflowFence);
    q.params.Text(id);
    if (on_step) {
        what += " step " + std::to_string(check.step);
        pg::Call s = PgCall(kPgStepFence);
        s.params.Text(id).Int(check.step);
        auto rows = writer_->Query(s, deadline);
        if (rows && !rows->empty()) {  // a pending step has no row: its workflow's token counts
            q = std::move(s);
        }
    }
    auto rows = writer_->Query(q, deadline);
    if (!rows) {
        return rows.error();
    }
    if (rows->empty()) {
        return Error(ErrorCode::kFenced, what + " does not exist");
    }
    return Error(ErrorCode::kFenced, what + ": token " + std::to_string(fence) + " is stale (current " +
                                         std::to_string(rows->Int(0, 0)) + ")");
}

// ---- leases and claims

Result<Lease> PgStore::AcquireLease(const std::string& owner, int64_t ttl_ms) {
    if (owner.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "lease owner is empty");
    }
    return Write<Lease>([&](pg::Conn& db, SteadyTime deadline) -> Result<Lease> {
        COGS_ASSIGN_OR_RETURN(pg::Rows token, db.Query(PgCall(kPgNextToken), deadline));
        if (token.empty()) {
            return MakeError(ErrorCode::kInternal, "the lease_token counter is missing");
        }
        Lease lease{owner, static_cast<uint64_t>(token.Int(0, 0)), 0};
        pg::Call c = PgCall(kPgUpsertLease);
        c.params.Text(owner).Int(Db(lease.token)).Int(ttl_ms);
        COGS_ASSIGN_OR_RETURN(pg::Rows expires, db.Query(c, deadline));
        lease.expires_ms = expires.Int(0, 0);
        return lease;
    });
}

Status PgStore::RenewLease(Lease& lease, int64_t ttl_ms) {
    auto renewed = Write<int64_t>([&](pg::Conn& db, SteadyTime deadline) -> Result<int64_t> {
        pg::Call c = PgCall(kPgRenewLease);
        c.params.Int(ttl_ms).Text(lease.owner).Int(Db(lease.token));
        COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(c, deadline));
        if (rows.empty()) {
            return MakeError(ErrorCode::kFenced, "lease of '" + lease.owner + "' with token " +
                                                     std::to_string(lease.token) + " was superseded");
        }
        return rows.Int(0, 0);
    });
    if (!renewed) {
        return MakeError(renewed.error());
    }
    lease.expires_ms = *renewed;
    return Ok();
}

Result<std::vector<WorkflowRecord>> PgStore::ClaimOrphaned(const Lease& lease, int limit) {
    using Records = std::vector<WorkflowRecord>;
    if (limit < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "claim limit must be at least 1");
    }
    return Write<Records>([&](pg::Conn& db, SteadyTime deadline) -> Result<Records> {
        COGS_TRY(CheckLeaseIsCurrent(db, lease, deadline));
        pg::Call claim = PgCall(kPgClaimOrphans);
        claim.params.Int(Db(lease.token)).Text(lease.owner).Int(limit);
        COGS_ASSIGN_OR_RETURN(pg::Rows claimed, db.Query(claim, deadline));
        std::vector<std::string> ids;
        for (int i = 0; i < claimed.size(); ++i) {
            ids.push_back(claimed.Text(i, 0));
        }
        if (ids.empty()) {
            return Records{};
        }
        pg::Call steps = PgCall(kPgClaimSteps);
        steps.params.Int(Db(lease.token)).Text(PgArray(ids));
        COGS_TRY(db.Query(steps, deadline));
        return LoadMany(db, ids, /*with_logs=*/false, deadline);
    });
}

Result<WorkflowRecord> PgStore::ReviveFailed(const Lease& lease, const std::string& id) {
    return Write<WorkflowRecord>([&](pg::Conn& db, SteadyTime deadline) -> Result<WorkflowRecord> {
        COGS_TRY(CheckLeaseIsCurrent(db, lease, deadline));
        pg::Call state = PgCall(kPgWorkflowState);
        state.params.Text(id);
        COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(state, deadline));
        if (rows.empty()) {
            return MakeError(ErrorCode::kNotFound, "no workflow '" + id + "'");
        }
        auto s = static_cast<WorkflowState>(rows.Int(0, 0));
        if (s != WorkflowState::kFailed) {
            return MakeError(ErrorCode::kConflict, "workflow '" + id + "' is " + std::string(ToString(s)) +
                                                       "; only a failed workflow can be revived");
        }
        pg::Call wf = PgCall(kPgReviveWorkflow);
        wf.params.Int(Db(lease.token)).Text(lease.owner).Int(WallNowMs()).Text(id);
        pg::Call steps = PgCall(kPgReviveSteps);
        steps.params.Int(Db(lease.token)).Text(id);
        COGS_TRY(db.Query(wf, deadline));
        COGS_TRY(db.Query(steps, deadline));
        COGS_ASSIGN_OR_RETURN(std::vector<WorkflowRecord> loaded,
                              LoadMany(db, {id}, /*with_logs=*/false, deadline));
        return std::move(loaded[0]);
    });
}

// ---- definitions and retention

Status PgStore::SaveDefinition(const DefinitionRecord& def) {
    auto saved = Write<bool>([&](pg::Conn& db, SteadyTime deadline) -> Result<bool> {
        pg::Call insert = PgCall(kPgInsertDefinition);
        insert.params.Text(def.type).Int(def.version).Text(def.text);
        COGS_ASSIGN_OR_RETURN(pg::Rows inserted, db.Query(insert, deadline));
        if (inserted.Changed() > 0) {
            return true;
        }
        pg::Call q = PgCall(kPgDefinitionText);
        q.params.Text(def.type).Int(def.version);
        COGS_ASSIGN_OR_RETURN(pg::Rows text, db.Query(q, deadline));
        if (text.empty() || text.View(0, 0) != def.text) {
            return MakeError(ErrorCode::kAlreadyExists, "definition " + def.type + " version " +
                                                            std::to_string(def.version) +
                                                            " exists with a different text");
        }
        return false;
    });
    return saved ? Ok() : MakeError(saved.error());
}

Result<PruneResult> PgStore::PruneWorkflows(Ended which, int64_t finished_before_ms, int64_t keep_at_most,
                                            int batch) {
    if (keep_at_most < 0 || batch < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative, batch positive");
    }
    const bool failed = which == Ended::kFailed;
    return Write<PruneResult>([&](pg::Conn& db, SteadyTime deadline) -> Result<PruneResult> {
        COGS_ASSIGN_OR_RETURN(pg::Rows count,
                              db.Query(PgCall(failed ? kPgCountFailed : kPgCountEnded), deadline));
        const int64_t ended = count.Int(0, 0);
        const int64_t over = ended - keep_at_most;
        pg::Call oldest = PgCall(failed ? kPgOldestFailed : kPgOldestEnded);
        oldest.params.Int(batch);
        COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(oldest, deadline));
        std::vector<std::string> victims;
        for (int i = 0; i < rows.size(); ++i) {
            if (static_cast<int64_t>(victims.size()) < over || rows.Int(i, 1) < finished_before_ms) {
                victims.push_back(rows.Text(i, 0));
            }
        }
        PruneResult r;
        if (!victims.empty()) {
            pg::Call steps = PgCall(kPgDeleteSteps);
            steps.params.Text(PgArray(victims));
            pg::Call wfs = PgCall(failed ? kPgDeleteFailed : kPgDeleteEnded);
            wfs.params.Text(PgArray(victims));
            COGS_TRY(db.Query(steps, deadline));
            COGS_ASSIGN_OR_RETURN(pg::Rows deleted, db.Query(wfs, deadline));
            r.pruned = deleted.Changed();
        }
        r.kept = ended - r.pruned;
        return r;
    });
}

Result<int64_t> PgStore::PruneEvents(int64_t older_than_ms, int64_t keep_at_most) {
    if (keep_at_most < 0) {
        return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative");
    }
    constexpr int64_t kBatch = 5000;  // one short transaction each: group commits go on between
    int64_t deleted = 0;
    for (PgSql sql : {kPgPruneEventsByAge, kPgPruneEventsByCount}) {
        for (;;) {
            COGS_ASSIGN_OR_RETURN(int64_t n,
                                  Write<int64_t>([&](pg::Conn& db, SteadyTime deadline) -> Result<int64_t> {
                                      pg::Call c = PgCall(sql);
                                      c.params.Int(sql == kPgPruneEventsByAge ? older_than_ms : keep_at_most);
                                      c.params.Int(kBatch);
                                      COGS_ASSIGN_OR_RETURN(pg::Rows rows, db.Query(c, deadline));
                                      return rows.Changed();
                                  }));
            deleted += n;
            if (n < kBatch) {
                break;
            }
        }
    }
    return deleted;
}

// ---- reads

Result<WorkflowRecord> PgLoadWorkflow(pg::Conn& db, const std::string& id, bool with_logs,
                                      SteadyTime deadline) {
    // One snapshot for the workflow and its steps, in one round trip.
    std::vector<pg::Call> calls{{"", {}, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}};
    LoadCalls(id, with_logs, calls);
    calls.push_back({"", {}, "COMMIT"});
    COGS_ASSIGN_OR_RETURN(std::vector<pg::Reply> replies, db.Run(calls, deadline));
    if (replies[0].outcome != pg::Outcome::kOk || replies[3].outcome != pg::Outcome::kOk) {
        (void)db.Exec("ROLLBACK", deadline);
    }
    return ParseWorkflow(id, replies[1], replies[2]);
}

Result<WorkflowRecord> PgStore::GetWorkflow(const std::string& id) {
    return Read<WorkflowRecord>([&](pg::Conn& db, SteadyTime deadline) {
        return PgLoadWorkflow(db, id, /*with_logs=*/true, deadline);
    });
}

Result<std::vector<WorkflowSummary>> PgStore::ListWorkflows(const ListFilter& f) {
    using Summaries = std::vector<WorkflowSummary>;
    return Read<Summaries>([&](pg::Conn& db, SteadyTime deadline) -> Result<Summaries> {
        pg::Call c = PgCall(kPgList);
        c.params.Text(f.project).Int(f.state ? static_cast<int>(*f.state) : -1).Text(f.type);
        c.params.Text(f.after_id).Int(std::clamp(f.limit, 1, 1000));
        COGS_ASSIGN_OR_RETURN(pg::Rows q, db.Query(c, deadline));
        Summaries out;
        for (int i = 0; i < q.size(); ++i) {
            WorkflowSummary& s = out.emplace_back();
            s.id = q.Text(i, 0);
            s.type = q.Text(i, 1);
            s.version = static_cast<int>(q.Int(i, 2));
            s.state = static_cast<WorkflowState>(q.Int(i, 3));
            s.reason = q.Text(i, 4);
            s.created_ms = q.Int(i, 5);
            s.finished_ms = q.Int(i, 6);
            s.project = q.Text(i, 7);
            s.trace = q.Text(i, 8);
            s.resource_kind = q.Text(i, 9);
            s.resource_id = q.Text(i, 10);
        }
        return out;
    });
}

Result<std::vector<std::pair<WorkflowState, int64_t>>> PgStore::CountByState() {
    using Counts = std::vector<std::pair<WorkflowState, int64_t>>;
    return Read<Counts>([&](pg::Conn& db, SteadyTime deadline) -> Result<Counts> {
        Counts out;
        for (auto s : {WorkflowState::kRunning, WorkflowState::kCompensating, WorkflowState::kSucceeded,
                       WorkflowState::kRolledBack, WorkflowState::kFailed}) {
            out.emplace_back(s, 0);
        }
        COGS_ASSIGN_OR_RETURN(pg::Rows q, db.Query(PgCall(kPgCountByState), deadline));
        for (int i = 0; i < q.size(); ++i) {
            const int64_t state = q.Int(i, 0);
            if (state >= 0 && static_cast<size_t>(state) < out.size()) {
                out[static_cast<size_t>(state)].second = q.Int(i, 1);
            }
        }
        return out;
    });
}

Result<std::vector<ResourceRecord>> PgStore::LoadResources() {
    using Records = std::vector<ResourceRecord>;
    return Read<Records>([&](pg::Conn& db, SteadyTime deadline) -> Result<Records> {
        COGS_ASSIGN_OR_RETURN(pg::Rows q, db.Query(PgCall(kPgLoadResources), deadline));
        Records out;
        out.reserve(static_cast<size_t>(q.size()));
        for (int i = 0; i < q.size(); ++i) {
            out.push_back(ResourceRecord{q.Text(i, 0), q.Text(i, 1), q.Text(i, 2), q.Text(i, 3)});
        }
        return out;
    });
}

Result<std::vector<DefinitionRecord>> PgStore::LoadDefinitions() {
    using Records = std::vector<DefinitionRecord>;
    return Read<Records>([&](pg::Conn& db, SteadyTime deadline) -> Result<Records> {
        COGS_ASSIGN_OR_RETURN(pg::Rows q, db.Query(PgCall(kPgLoadDefinitions), deadline));
        Records out;
        for (int i = 0; i < q.size(); ++i) {
            out.push_back(DefinitionRecord{q.Text(i, 0), static_cast<int>(q.Int(i, 1)), q.Text(i, 2)});
        }
        return out;
    });
}

Result<std::vector<EventRecord>> PgStore::ListEvents(const EventFilter& f) {
    using Events = std::vector<EventRecord>;
    const PgSql sql = !f.resource_kind.empty() && !f.resource_id.empty() ? kPgEventsByResource
                      : !f.workflow_id.empty()                           ? kPgEventsByWorkflow
                      : !f.project.empty()                               ? kPgEventsByProject
                                                                         : kPgEventsAll;
    return Read<Events>([&](pg::Conn& db, SteadyTime deadline) -> Result<Events> {
        pg::Call c = PgCall(sql);
        c.params.Text(f.project).Text(f.resource_kind).Text(f.resource_id).Text(f.workflow_id);
        c.params.Int(f.after_seq).Int(std::clamp(f.limit, 1, 1000));
        COGS_ASSIGN_OR_RETURN(pg::Rows q, db.Query(c, deadline));
        Events out;
        for (int i = 0; i < q.size(); ++i) {
            EventRecord& e = out.emplace_back();
            e.seq = q.Int(i, 0);
            e.time_ms = q.Int(i, 1);
            e.project = q.Text(i, 2);
            e.resource_kind = q.Text(i, 3);
            e.resource_id = q.Text(i, 4);
            e.workflow_id = q.Text(i, 5);
            e.type = q.Text(i, 6);
            e.message = q.Text(i, 7);
            e.trace_id = q.Text(i, 8);
        }
        return out;
    });
}

}  // namespace cogs::store::internal
