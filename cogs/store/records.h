// The durable records of the workflow engine: what a workflow and each of its steps look like
// when committed. The engine owns their meaning (see cogs/workflow/README.md); the store only
// persists them, fenced, in groups.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cogs::store {

enum class WorkflowState : uint8_t {
    kRunning = 0,       // steps are being run forward
    kCompensating = 1,  // a step failed for good or a cancel arrived: completed steps are undone
    kSucceeded = 2,     // terminal: every step done
    kRolledBack = 3,    // terminal: every applied step compensated
    kFailed = 4,        // terminal until an operator retries: a compensation could not finish
};

enum class StepState : uint8_t {
    kPending = 0,             // not yet started (dependencies not done, or bulkhead full)
    kRunning = 1,             // an attempt is dispatched (re-sent with the same key after a crash)
    kWaitingRetry = 2,        // the last attempt failed retryably; the next one is due at next_at_ms
    kPolling = 3,             // the service accepted a long action; its status is polled until done
    kSucceeded = 4,           // the action's effect is applied; output holds its answer
    kFailed = 5,              // failed for good; `applied` says whether the effect may exist
    kCompensating = 6,        // its compensation is dispatched or waiting for a retry
    kCompensated = 7,         // its compensation is done (or it needed none)
    kCompensationFailed = 8,  // the compensation exhausted its attempts
    kSkipped = 9,             // never started because the workflow was compensating or cancelled
};

std::string_view ToString(WorkflowState s);
std::string_view ToString(StepState s);
std::optional<WorkflowState> ParseWorkflowState(std::string_view s);
bool IsTerminal(WorkflowState s);

struct StepRecord {
    int index = 0;  // the step's position in its definition
    StepState state = StepState::kPending;
    int attempts = 0;        // attempts of the action so far
    int comp_attempts = 0;   // attempts of the compensation so far
    bool applied = false;    // the action's effect may exist (succeeded, or an attempt's outcome is unknown)
    int64_t next_at_ms = 0;  // wall ms when a waiting retry or the next poll is due; 0 if none
    int64_t started_ms = 0;
    int64_t finished_ms = 0;
    std::string output;  // JSON text of the action's answer
    std::string error;   // the last error, "code: message"
    // JSON lines, one per attempt ({"kind","attempt","start_ms","end_ms","outcome","error"}),
    // appended by the store from StepUpdate::log_append; loaded only for inspection.
    std::string log;
};

struct WorkflowRecord {
    std::string id;
    std::string type;
    int version = 0;
    std::string input;  // JSON text
    WorkflowState state = WorkflowState::kRunning;
    std::string reason;  // why it failed or rolled back
    bool cancel_requested = false;
    int64_t created_ms = 0;
    int64_t updated_ms = 0;
    int64_t deadline_ms = 0;  // 0: none
    int64_t finished_ms = 0;
    std::string trace;    // W3C traceparent the workflow was started with
    std::string project;  // the tenant the workflow works for ("" for system work)
    // The resource the workflow works on (its events go to that resource's history); "" for none.
    std::string resource_kind;
    std::string resource_id;
    uint64_t fence = 0;  // the fencing token of the lease that owns it
    std::vector<StepRecord> steps;
};

// One change of a workflow's own row. Applied only if the row's fence equals the writer's.
struct WorkflowUpdate {
    std::string id;
    WorkflowState state = WorkflowState::kRunning;
    std::string reason;
    bool cancel_requested = false;
    int64_t updated_ms = 0;
    int64_t finished_ms = 0;
};

// One change of a step's row. Every mutable column is written; log_append (if not empty) is
// appended to the row's log.
struct StepUpdate {
    std::string workflow_id;
    StepRecord step;  // step.log is ignored
    std::string log_append;
};

// One desired-state record of the control plane (a server, a network, a token, ...): `body` is its
// JSON text. Resources are not fenced: their single writer is the API process that owns them.
struct ResourceWrite {
    std::string kind;  // "server", "network", ...
    std::string id;
    std::string project;  // "" for records that belong to no project (hosts, flavors, ...)
    std::string body;     // ignored when erase
    bool erase = false;
};

// One entry of a resource's event history ("created", "step_succeeded", "step_retried",
// "rolled_back", "healed", ...). Written in the same group as the change it reports, so the history
// never shows what did not happen. Retention is bounded (Store::PruneEvents).
struct EventRecord {
    int64_t seq = 0;  // assigned by the store on commit: increasing, unique
    int64_t time_ms = 0;
    std::string project;  // tenant of the resource ("" for system resources such as hosts)
    std::string resource_kind;
    std::string resource_id;
    std::string workflow_id;  // the workflow that caused it, if any
    std::string type;
    std::string message;   // one human line
    std::string trace_id;  // the W3C trace id of the request behind it, if any
};

struct EventFilter {
    std::string project;        // empty: every project
    std::string resource_kind;  // empty: any
    std::string resource_id;    // empty: any
    std::string workflow_id;    // empty: any
    int64_t after_seq = 0;      // pagination / follow: events with a greater seq
    int limit = 100;
};

// One entry of the audit log: a change asked of the API (POST, PUT, PATCH, DELETE), refused or not
// (cogs/cloud/resources/audit.h decides what is recorded). Who, what, the answer's status, when.
// Never a secret: the token's id, never the token; no bodies. Retention is bounded
// (Store::PruneAudit).
struct AuditRecord {
    int64_t seq = 0;  // assigned by the store on commit: increasing, unique
    int64_t time_ms = 0;
    std::string token_id;  // "" when the request was not authenticated (401) or came before (429)
    std::string project;   // the token's project
    std::string role;      // the token's role
    std::string method;
    std::string path;         // without the query
    std::string resource_id;  // the path's, or the one a create made; "" if none
    int status = 0;           // the answer's HTTP status
    std::string trace_id;     // the W3C trace id of the request
    std::string peer;         // the client's address ("" if unknown)
};

// Newest first. Each field empty (or 0) is "any".
struct AuditFilter {
    std::string token_id;
    std::string project;
    std::string resource_id;
    int64_t since_ms = 0;    // entries at or after this wall time
    int64_t before_seq = 0;  // pagination: entries with a smaller seq (0: from the newest)
    int limit = 100;         // clamped to 1..1000
};

struct ResourceRecord {
    std::string kind;
    std::string id;
    std::string project;
    std::string body;
};

// A group: changes that commit together or not at all, under one fencing token. A group that
// creates workflows carries them in `creates` (each with all its steps; usually one, several for a
// bulk request whose workflows exist together or not at all); a create whose id exists already
// fails the group with kAlreadyExists.
struct WriteGroup {
    uint64_t fence = 0;
    std::vector<WorkflowRecord> creates;
    std::vector<WorkflowUpdate> workflows;
    std::vector<StepUpdate> steps;
    // Desired-state records written with the workflow changes (e.g. a server and the workflow that
    // builds it, in one transaction).
    std::vector<ResourceWrite> resources;
    // Events appended with the changes they report (seq is assigned on commit).
    std::vector<EventRecord> events;
    // Audit entries (seq is assigned on commit); usually a group of their own.
    std::vector<AuditRecord> audit;

    // State changes in the group: a create counts its workflow and each step not left pending.
    size_t Transitions() const {
        size_t n = workflows.size() + steps.size();
        for (const auto& create : creates) {
            ++n;
            for (const auto& s : create.steps) {
                n += s.state != StepState::kPending ? 1 : 0;
            }
        }
        return n;
    }
};

// A lease held by one engine instance. `token` is its fencing token: it only grows, across
// owners and restarts; every workflow the owner claims is stamped with it.
struct Lease {
    std::string owner;
    uint64_t token = 0;
    int64_t expires_ms = 0;
};

struct ListFilter {
    std::optional<WorkflowState> state;
    std::string type;      // empty: any
    std::string project;   // empty: any
    std::string after_id;  // pagination: ids greater than this
    int limit = 100;
};

struct WorkflowSummary {
    std::string id;
    std::string type;
    std::string project;
    int version = 0;
    WorkflowState state = WorkflowState::kRunning;
    std::string reason;
    std::string trace;          // the W3C traceparent it was started with
    std::string resource_kind;  // the resource it works on, if any
    std::string resource_id;
    int64_t created_ms = 0;
    int64_t finished_ms = 0;
};

struct DefinitionRecord {
    std::string type;
    int version = 0;
    std::string text;  // the canonical YAML of the definition
};

}  // namespace cogs::store
