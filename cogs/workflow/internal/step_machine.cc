#include "cogs/workflow/internal/step_machine.h"

#include <algorithm>

#include <fmt/format.h>

#include "cogs/workflow/internal/template.h"

namespace cogs::workflow::internal {

using store::StepRecord;
using store::StepState;

namespace {

int64_t ToMs(Duration d) { return std::chrono::duration_cast<Millis>(d).count(); }

Next Succeed(StepRecord& rec, const std::string& output, int64_t now_ms) {
    rec.state = StepState::kSucceeded;
    rec.output = output;
    rec.error.clear();
    rec.finished_ms = now_ms;
    rec.next_at_ms = 0;
    return Next::kSucceeded;
}

Next Fail(StepRecord& rec, int64_t now_ms) {
    rec.state = StepState::kFailed;
    rec.finished_ms = now_ms;
    rec.next_at_ms = 0;
    return Next::kFailed;
}

}  // namespace

void MarkDispatched(StepRecord& rec, int64_t now_ms, bool compensation) {
    if (compensation) {
        rec.state = StepState::kCompensating;
        ++rec.comp_attempts;
    } else {
        rec.state = StepState::kRunning;
        ++rec.attempts;
        rec.applied = true;  // from now on the effect may exist
        if (rec.started_ms == 0) {
            rec.started_ms = now_ms;
        }
    }
    rec.next_at_ms = 0;
}

Next ApplyActionResult(const StepDef& def, StepRecord& rec, const Result<ActionReply>& result, int64_t now_ms,
                       double jitter_unit, int64_t stop_at_ms, bool may_retry) {
    if (result) {
        if (result->accepted) {
            rec.state = StepState::kPolling;
            rec.next_at_ms = now_ms + ToMs(std::chrono::milliseconds(20));
            return Next::kPoll;
        }
        return Succeed(rec, result->output, now_ms);
    }
    const Error& e = result.error();
    rec.error = e.ToString();
    // A definitive refusal proves the key was never applied; an unknown outcome keeps `applied`.
    if (!e.retryable) {
        rec.applied = false;
    }
    if (may_retry && def.retry.ShouldRetry(e, rec.attempts)) {
        const int64_t wait = ToMs(def.retry.Backoff(rec.attempts + 1, jitter_unit));
        if (stop_at_ms == 0 || now_ms + wait < stop_at_ms) {
            rec.state = StepState::kWaitingRetry;
            rec.next_at_ms = now_ms + wait;
            return Next::kRetry;
        }
        rec.error += " (no time left for another attempt)";
    } else if (e.retryable && may_retry) {
        rec.error += fmt::format(" (gave up after {} attempts)", rec.attempts);
    }
    return Fail(rec, now_ms);
}

Next ApplyPollResult(const StepDef& /*def*/, StepRecord& rec, const Result<ActionReply>& result,
                     int64_t now_ms, Duration poll_initial, Duration poll_max, int64_t stop_at_ms) {
    if (result && !result->accepted) {
        return Succeed(rec, result->output, now_ms);
    }
    if (!result && !result.error().retryable) {
        // The long action failed at the service. Its partial effect is undone by compensation.
        rec.error = result.error().ToString();
        return Fail(rec, now_ms);
    }
    // Still running (or the poll itself failed retryably): poll again with a growing interval.
    const int64_t since = std::max<int64_t>(1, now_ms - rec.started_ms);
    const int64_t wait = std::clamp<int64_t>(since / 4, ToMs(poll_initial), ToMs(poll_max));
    if (stop_at_ms != 0 && now_ms + wait >= stop_at_ms) {
        rec.error = "deadline_exceeded: the accepted action did not finish before the step's deadline";
        return Fail(rec, now_ms);
    }
    rec.state = StepState::kPolling;
    rec.next_at_ms = now_ms + wait;
    return Next::kPoll;
}

Next ApplyCompensationResult(const Compensation& comp, StepRecord& rec, const Result<ActionReply>& result,
                             int64_t now_ms, double jitter_unit) {
    if (result && !result->accepted) {
        rec.state = StepState::kCompensated;
        rec.next_at_ms = 0;
        rec.finished_ms = now_ms;
        return Next::kSucceeded;
    }
    if (!result) {
        rec.error = "compensation: " + result.error().ToString();
    } else {
        rec.error = "compensation: answered 'accepted'; compensations must finish synchronously";
    }
    const bool retryable = result ? true : result.error().retryable;
    if (retryable &&
        comp.retry.ShouldRetry(result ? Error(ErrorCode::kUnavailable, "accepted") : result.error(),
                               rec.comp_attempts)) {
        rec.state = StepState::kCompensating;
        rec.next_at_ms = now_ms + ToMs(comp.retry.Backoff(rec.comp_attempts + 1, jitter_unit));
        return Next::kRetry;
    }
    rec.state = StepState::kCompensationFailed;
    rec.next_at_ms = 0;
    return Next::kFailed;
}

void StopForward(StepRecord& rec, int64_t now_ms) {
    switch (rec.state) {
        case StepState::kPending: rec.state = StepState::kSkipped; break;
        case StepState::kRunning:
        case StepState::kWaitingRetry:
        case StepState::kPolling:
            rec.state = StepState::kFailed;
            rec.finished_ms = now_ms;
            rec.next_at_ms = 0;
            if (rec.error.empty()) {
                rec.error = "stopped: the workflow is compensating";
            }
            break;
        default: break;
    }
}

bool NeedsCompensation(const StepDef& def, const StepRecord& rec) {
    if (!def.compensation || !rec.applied) {
        return false;
    }
    return rec.state == StepState::kSucceeded || rec.state == StepState::kFailed ||
           rec.state == StepState::kCompensating;
}

bool CompensationReady(const Definition& def, const std::vector<StepRecord>& steps,
                       const std::vector<uint8_t>& busy, int index) {
    for (int d : def.steps[index].dependents) {
        if (busy[d] != 0 || NeedsCompensation(def.steps[d], steps[d]) ||
            steps[d].state == StepState::kCompensationFailed) {
            return false;
        }
        // A dependent still going forward (not yet stopped) must settle first.
        const StepState s = steps[d].state;
        if (s == StepState::kRunning || s == StepState::kWaitingRetry || s == StepState::kPolling) {
            return false;
        }
    }
    return true;
}

bool DependenciesDone(const Definition& def, const std::vector<StepRecord>& steps, int index) {
    for (int d : def.steps[index].deps) {
        if (steps[d].state != StepState::kSucceeded) {
            return false;
        }
    }
    return true;
}

std::string LogLine(const char* kind, int attempt, int64_t start_ms, int64_t end_ms, const char* outcome,
                    const std::string& error) {
    std::string line =
        fmt::format(R"({{"kind":"{}","attempt":{},"start_ms":{},"end_ms":{},"outcome":"{}","error":)", kind,
                    attempt, start_ms, end_ms, outcome);
    AppendJsonQuoted(line, error);
    line += "}\n";
    return line;
}

}  // namespace cogs::workflow::internal
