// The step state machine and the saga's ordering rules, as pure functions over records, so that
// they can be tested without an engine, a store or a clock.
//
// Action:        pending -> running -> succeeded
//                                    -> polling -> succeeded | failed      (accepted long action)
//                                    -> waiting_retry -> running ...       (retryable error)
//                                    -> failed                              (definitive or exhausted)
// Compensation:  succeeded|failed(applied) -> compensating -> compensated | compensation_failed
//                pending -> skipped (the workflow stopped before the step started)
//
// `applied` is the saga's key fact: it is set when an attempt is dispatched (the effect may exist
// from then on) and cleared only by a definitive refusal of the service, which by the
// idempotency contract proves that the key was never applied. Every applied step with a
// compensation is compensated; nothing else is.
#pragma once

#include <cstdint>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/store/records.h"
#include "cogs/workflow/definition.h"
#include "cogs/workflow/service.h"

namespace cogs::workflow::internal {

enum class Next {
    kSucceeded,  // the step is done
    kPoll,       // accepted: poll at rec.next_at_ms
    kRetry,      // wait until rec.next_at_ms, then dispatch again
    kFailed,     // failed for good (action) / compensation_failed (compensation)
};

// An attempt of the action (compensation=false) or the compensation is about to be sent.
void MarkDispatched(store::StepRecord& rec, int64_t now_ms, bool compensation);

// The answer of an action attempt. `stop_at_ms` is the earliest of the workflow's and the step's
// deadlines (0: none): no retry is scheduled past it. `may_retry` is false while the workflow
// compensates (a failing step then fails at once).
Next ApplyActionResult(const StepDef& def, store::StepRecord& rec, const Result<ActionReply>& result,
                       int64_t now_ms, double jitter_unit, int64_t stop_at_ms, bool may_retry);

// The answer of a poll of an accepted action.
Next ApplyPollResult(const StepDef& def, store::StepRecord& rec, const Result<ActionReply>& result,
                     int64_t now_ms, Duration poll_initial, Duration poll_max, int64_t stop_at_ms);

// The answer of a compensation attempt.
Next ApplyCompensationResult(const Compensation& comp, store::StepRecord& rec,
                             const Result<ActionReply>& result, int64_t now_ms, double jitter_unit);

// The workflow stops going forward: what an idle step (no call in flight) becomes.
// pending -> skipped; waiting_retry / running / polling -> failed (applied as recorded).
void StopForward(store::StepRecord& rec, int64_t now_ms);

bool NeedsCompensation(const StepDef& def, const store::StepRecord& rec);

// The step may be compensated now: every dependent is idle and has nothing left to undo.
// `busy[i]` says step i has an operation in flight.
bool CompensationReady(const Definition& def, const std::vector<store::StepRecord>& steps,
                       const std::vector<uint8_t>& busy, int index);

// Every dependency of the step has succeeded.
bool DependenciesDone(const Definition& def, const std::vector<store::StepRecord>& steps, int index);

// One JSON line for a step's attempt log.
std::string LogLine(const char* kind, int attempt, int64_t start_ms, int64_t end_ms, const char* outcome,
                    const std::string& error);

}  // namespace cogs::workflow::internal
