// Leases and fencing: tokens are issued from a counter that only goes up (across owners and
// restarts); a workflow belongs to the lease whose token it carries, and every update of it is
// fenced by that token. A refused update says why (stale token, or no such row).
#include <string>
#include <vector>

#include "cogs/store/internal/sqlite_store_impl.h"

namespace cogs::store::internal {

Result<Lease> SqliteStore::AcquireLease(const std::string& owner, int64_t ttl_ms) {
    if (owner.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "lease owner is empty");
    }
    return Write<Lease>([&]() -> Result<Lease> {
        Lease lease{owner, 0, WallNowMs() + ttl_ms};
        {
            Query q(*writer_db_, kNextToken);
            COGS_ASSIGN_OR_RETURN(bool row, q->Step());
            if (!row) {
                return MakeError(ErrorCode::kInternal, "the lease_token counter is missing");
            }
            lease.token = static_cast<uint64_t>(q->ColumnInt(0));
            COGS_TRY(q->Run());
        }
        Query q(*writer_db_, kUpsertLease);
        q->Text(lease.owner).Int(ToDb(lease.token)).Int(lease.expires_ms);
        COGS_TRY(q->Run());
        return lease;
    });
}

Status SqliteStore::RenewLease(Lease& lease, int64_t ttl_ms) {
    int64_t expires = WallNowMs() + ttl_ms;
    auto renewed = Write<bool>([&]() -> Result<bool> {
        Query q(*writer_db_, kRenewLease);
        q->Int(expires).Text(lease.owner).Int(ToDb(lease.token));
        COGS_TRY(q->Run());
        if (writer_db_->db().Changes() == 0) {
            return MakeError(ErrorCode::kFenced, "lease of '" + lease.owner + "' with token " +
                                                     std::to_string(lease.token) + " was superseded");
        }
        return true;
    });
    if (!renewed) {
        return MakeError(renewed.error());
    }
    lease.expires_ms = expires;
    return Ok();
}

Result<std::vector<WorkflowRecord>> SqliteStore::ClaimOrphaned(const Lease& lease, int limit) {
    using Records = std::vector<WorkflowRecord>;
    if (limit < 1) {
        return MakeError(ErrorCode::kInvalidArgument, "claim limit must be at least 1");
    }
    return Write<Records>([&]() -> Result<Records> {
        COGS_TRY(CheckLeaseIsCurrent(lease));
        std::vector<std::string> ids;
        {
            Query q(*writer_db_, kSelectOrphans);
            q->Int(ToDb(lease.token)).Int(WallNowMs()).Int(limit);
            COGS_TRY(q->ForEachRow([&] { ids.push_back(q->ColumnText(0)); }));
        }
        Records out;
        out.reserve(ids.size());
        for (const std::string& id : ids) {
            Query claim_wf(*writer_db_, kClaimWorkflow);
            claim_wf->Int(ToDb(lease.token)).Text(lease.owner).Text(id);
            Query claim_steps(*writer_db_, kClaimSteps);
            claim_steps->Int(ToDb(lease.token)).Text(id);
            COGS_TRY(claim_wf->Run());
            COGS_TRY(claim_steps->Run());
            COGS_ASSIGN_OR_RETURN(WorkflowRecord record, LoadWorkflow(*writer_db_, id, /*with_logs=*/false));
            out.push_back(std::move(record));
        }
        return out;
    });
}

Status SqliteStore::CheckLeaseIsCurrent(const Lease& lease) {
    Query q(*writer_db_, kLeaseTokenOf);
    q->Text(lease.owner);
    COGS_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row || static_cast<uint64_t>(q->ColumnInt(0)) != lease.token) {
        return MakeError(ErrorCode::kFenced, "lease of '" + lease.owner + "' with token " +
                                                 std::to_string(lease.token) + " is not current");
    }
    return Ok();
}

// An update changed no row: the token is stale or the row does not exist. Both refuse the
// group with kFenced (the contract has no per-group "not found"); the message tells which.
SqliteStore::Verdict SqliteStore::Refuse(uint64_t fence, const std::string& id, std::optional<int> step,
                                         Error* error) {
    // value_or: GCC 12 cannot see that *step is only read when set (-Wmaybe-uninitialized).
    const int index = step.value_or(0);
    bool on_step = step.has_value();
    if (on_step) {
        // A pending step has no row: its workflow's token is the one that counts.
        Query has_row(*writer_db_, kStepFence);
        has_row->Text(id).Int(index);
        if (auto found = has_row->Step(); found && !*found) {
            on_step = false;
        }
    }
    Query q(*writer_db_, on_step ? kStepFence : kWorkflowFence);
    q->Text(id);
    if (on_step) {
        q->Int(index);
    }
    std::string what = "workflow '" + id + "'";
    if (on_step) {
        what += " step " + std::to_string(index);
    }
    auto row = q->Step();
    if (!row) {
        return Fatal(row.error(), error);
    }
    if (*row) {
        *error = Error(ErrorCode::kFenced, what + ": token " + std::to_string(fence) + " is stale (current " +
                                               std::to_string(q->ColumnInt(0)) + ")");
    } else {
        *error = Error(ErrorCode::kFenced, what + " does not exist");
    }
    return Verdict::kRefused;
}

}  // namespace cogs::store::internal
