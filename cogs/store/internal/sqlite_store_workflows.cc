// Workflows and steps: a group's create and updates (fenced by the group's token), the revival of
// a failed workflow, and loading one workflow with its steps.
#include <string>
#include <vector>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {
namespace {

// Binds state .. error: the mutable columns, in the order of COGS_STEP_COLUMNS after idx.
sqlite::Stmt& BindStep(sqlite::Stmt& q, const StepRecord& s) {
    q.Int(static_cast<int>(s.state)).Int(s.attempts).Int(s.comp_attempts).Int(s.applied ? 1 : 0);
    q.Int(s.next_at_ms).Int(s.started_ms).Int(s.finished_ms).Text(s.output).Text(s.error);
    return q;
}

}  // namespace

SqliteStore::Verdict SqliteStore::ApplyCreates(const WriteGroup& g, Error* error) {
    for (const WorkflowRecord& w : g.creates) {
        if (Verdict v = ApplyCreate(w, g.fence, error); v != Verdict::kOk) {
            return v;
        }
    }
    return Verdict::kOk;
}

SqliteStore::Verdict SqliteStore::ApplyCreate(const WorkflowRecord& w, uint64_t fence, Error* error) {
    {
        Query q(*writer_db_, kInsertWorkflow);
        q->Text(w.id).Text(w.type).Int(w.version).Text(w.input).Int(static_cast<int>(w.state));
        q->Text(w.reason).Int(w.cancel_requested ? 1 : 0).Int(w.created_ms).Int(w.updated_ms);
        q->Int(w.deadline_ms).Int(w.finished_ms).Text(w.trace).Int(ToDb(fence));
        q->Int(static_cast<int64_t>(w.steps.size())).Text(w.project).Text(w.resource_kind);
        q->Text(w.resource_id);
        if (Status st = q->Run(); !st) {
            if (st.error().code == ErrorCode::kAlreadyExists) {
                *error = Error(ErrorCode::kAlreadyExists, "workflow '" + w.id + "' already exists");
                return Verdict::kRefused;
            }
            return Fatal(st.error(), error);
        }
    }
    std::vector<bool> seen(w.steps.size(), false);
    for (const StepRecord& s : w.steps) {
        if (s.index < 0 || static_cast<size_t>(s.index) >= w.steps.size() || seen[s.index]) {
            *error =
                Error(ErrorCode::kInvalidArgument, "workflow '" + w.id + "' has step index " +
                                                       std::to_string(s.index) + " twice or out of range");
            return Verdict::kRefused;
        }
        seen[s.index] = true;
        if (s.state == StepState::kPending && s.attempts == 0 && s.log.empty()) {
            continue;  // implied by step_count
        }
        Query q(*writer_db_, kInsertStep);
        q->Text(w.id).Int(s.index);
        BindStep(*q, s).Text(s.log).Int(ToDb(fence));
        if (Status st = q->Run(); !st) {
            if (st.error().code == ErrorCode::kAlreadyExists) {
                *error = Error(ErrorCode::kInvalidArgument, "workflow '" + w.id + "' has step index " +
                                                                std::to_string(s.index) + " twice");
                return Verdict::kRefused;
            }
            return Fatal(st.error(), error);
        }
    }
    return Verdict::kOk;
}

SqliteStore::Verdict SqliteStore::ApplyWorkflowUpdates(const WriteGroup& g, Error* error) {
    for (const WorkflowUpdate& u : g.workflows) {
        Query q(*writer_db_, kUpdateWorkflow);
        q->Int(static_cast<int>(u.state)).Text(u.reason).Int(u.cancel_requested ? 1 : 0);
        q->Int(u.updated_ms).Int(u.finished_ms).Text(u.id).Int(ToDb(g.fence));
        if (Status st = q->Run(); !st) {
            return Fatal(st.error(), error);
        }
        if (writer_db_->db().Changes() == 0) {
            return Refuse(g.fence, u.id, std::nullopt, error);
        }
    }
    return Verdict::kOk;
}

SqliteStore::Verdict SqliteStore::ApplyStepUpdates(const WriteGroup& g, Error* error) {
    for (const StepUpdate& u : g.steps) {
        // Most transitions append nothing to the log; rewriting it with itself would cost a copy.
        bool append = !u.log_append.empty();
        Query q(*writer_db_, append ? kUpdateStep : kUpdateStepKeepLog);
        BindStep(*q, u.step);
        if (append) {
            q->Text(u.log_append);
        }
        q->Text(u.workflow_id).Int(u.step.index).Int(ToDb(g.fence));
        if (Status st = q->Run(); !st) {
            return Fatal(st.error(), error);
        }
        if (writer_db_->db().Changes() != 0) {
            continue;
        }
        // No row matched: the step's first change (it was pending), or a stale token.
        Query ins(*writer_db_, kInsertStepFenced);
        ins->Text(u.workflow_id).Int(u.step.index);
        BindStep(*ins, u.step).Text(u.log_append).Int(ToDb(g.fence));
        if (Status st = ins->Run(); !st) {
            return Fatal(st.error(), error);
        }
        if (writer_db_->db().Changes() == 0) {
            return Refuse(g.fence, u.workflow_id, u.step.index, error);
        }
    }
    return Verdict::kOk;
}

Result<WorkflowRecord> SqliteStore::ReviveFailed(const Lease& lease, const std::string& id) {
    return Write<WorkflowRecord>([&]() -> Result<WorkflowRecord> {
        COGS_TRY(CheckLeaseIsCurrent(lease));
        {
            Query q(*writer_db_, kWorkflowState);
            q->Text(id);
            COGS_ASSIGN_OR_RETURN(bool row, q->Step());
            if (!row) {
                return MakeError(ErrorCode::kNotFound, "no workflow '" + id + "'");
            }
            auto state = static_cast<WorkflowState>(q->ColumnInt(0));
            if (state != WorkflowState::kFailed) {
                return MakeError(ErrorCode::kConflict, "workflow '" + id + "' is " +
                                                           std::string(ToString(state)) +
                                                           "; only a failed workflow can be revived");
            }
        }
        Query revive_wf(*writer_db_, kReviveWorkflow);
        revive_wf->Int(ToDb(lease.token)).Text(lease.owner).Int(WallNowMs()).Text(id);
        Query revive_steps(*writer_db_, kReviveSteps);
        revive_steps->Int(ToDb(lease.token)).Text(id);
        COGS_TRY(revive_wf->Run());
        COGS_TRY(revive_steps->Run());
        return LoadWorkflow(*writer_db_, id, /*with_logs=*/false);
    });
}

// Reads a workflow and its steps (ordered by index); the caller provides the snapshot.
Result<WorkflowRecord> LoadWorkflow(Connection& db, const std::string& id, bool with_logs) {
    WorkflowRecord r;
    {
        Query q(db, kSelectWorkflow);
        q->Text(id);
        COGS_ASSIGN_OR_RETURN(bool row, q->Step());
        if (!row) {
            return MakeError(ErrorCode::kNotFound, "no workflow '" + id + "'");
        }
        r.id = q->ColumnText(0);
        r.type = q->ColumnText(1);
        r.version = static_cast<int>(q->ColumnInt(2));
        r.input = q->ColumnText(3);
        r.state = static_cast<WorkflowState>(q->ColumnInt(4));
        r.reason = q->ColumnText(5);
        r.cancel_requested = q->ColumnInt(6) != 0;
        r.created_ms = q->ColumnInt(7);
        r.updated_ms = q->ColumnInt(8);
        r.deadline_ms = q->ColumnInt(9);
        r.finished_ms = q->ColumnInt(10);
        r.trace = q->ColumnText(11);
        r.fence = static_cast<uint64_t>(q->ColumnInt(12));
        r.steps.resize(static_cast<size_t>(q->ColumnInt(13)));
        r.project = q->ColumnText(14);
        r.resource_kind = q->ColumnText(15);
        r.resource_id = q->ColumnText(16);
        for (size_t i = 0; i < r.steps.size(); ++i) {
            r.steps[i].index = static_cast<int>(i);  // pending unless a row says otherwise
        }
    }
    Query q(db, with_logs ? kSelectStepsWithLog : kSelectSteps);
    q->Text(id);
    COGS_TRY(q->ForEachRow([&]() -> Status {
        const auto index = static_cast<size_t>(q->ColumnInt(0));
        if (index >= r.steps.size()) {
            return MakeError(ErrorCode::kInternal, "workflow '" + id + "' has a row for step " +
                                                       std::to_string(index) + " beyond its step count");
        }
        StepRecord& s = r.steps[index];
        s.index = static_cast<int>(index);
        s.state = static_cast<StepState>(q->ColumnInt(1));
        s.attempts = static_cast<int>(q->ColumnInt(2));
        s.comp_attempts = static_cast<int>(q->ColumnInt(3));
        s.applied = q->ColumnInt(4) != 0;
        s.next_at_ms = q->ColumnInt(5);
        s.started_ms = q->ColumnInt(6);
        s.finished_ms = q->ColumnInt(7);
        s.output = q->ColumnText(8);
        s.error = q->ColumnText(9);
        s.log = q->ColumnText(10);
        return Ok();
    }));
    return r;
}

// The oldest ended workflows first, through workflows_ended (workflows_failed): a prefix of them goes (those
// past the age, or beyond the count), so one walk of at most `batch` index entries finds every victim.
Result<PruneResult> SqliteStore::PruneWorkflows(Ended which, int64_t finished_before_ms, int64_t keep_at_most,
                                                int batch) {
    if (keep_at_most < 0 || batch < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "keep_at_most must not be negative, batch positive");
    }
    return Write<PruneResult>([&]() -> Result<PruneResult> {
        int64_t ended = 0;
        {
            Query q(*writer_db_, which == Ended::kFailed ? kCountFailed : kCountEnded);
            COGS_TRY(q->ForEachRow([&] { ended = q->ColumnInt(0); }));
        }
        const int64_t over = ended - keep_at_most;
        std::vector<std::string> victims;
        {
            Query q(*writer_db_, which == Ended::kFailed ? kOldestFailed : kOldestEnded);
            q->Int(batch);
            COGS_TRY(q->ForEachRow([&] {
                if (static_cast<int64_t>(victims.size()) < over || q->ColumnInt(1) < finished_before_ms) {
                    victims.push_back(q->ColumnText(0));
                }
            }));
        }
        PruneResult r;
        for (const std::string& id : victims) {
            {
                Query q(*writer_db_, kDeleteSteps);
                q->Text(id);
                COGS_TRY(q->Run());
            }
            Query q(*writer_db_, which == Ended::kFailed ? kDeleteFailed : kDeleteEnded);
            q->Text(id);
            COGS_TRY(q->Run());
            r.pruned += writer_db_->db().Changes();
        }
        r.kept = ended - r.pruned;
        return r;
    });
}

}  // namespace cogs::store::internal
