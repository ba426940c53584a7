#include "cogs/store/records.h"

namespace cogs::store {

std::string_view ToString(WorkflowState s) {
    switch (s) {
        case WorkflowState::kRunning: return "running";
        case WorkflowState::kCompensating: return "compensating";
        case WorkflowState::kSucceeded: return "succeeded";
        case WorkflowState::kRolledBack: return "rolled_back";
        case WorkflowState::kFailed: return "failed";
    }
    return "unknown";
}

std::string_view ToString(StepState s) {
    switch (s) {
        case StepState::kPending: return "pending";
        case StepState::kRunning: return "running";
        case StepState::kWaitingRetry: return "waiting_retry";
        case StepState::kPolling: return "polling";
        case StepState::kSucceeded: return "succeeded";
        case StepState::kFailed: return "failed";
        case StepState::kCompensating: return "compensating";
        case StepState::kCompensated: return "compensated";
        case StepState::kCompensationFailed: return "compensation_failed";
        case StepState::kSkipped: return "skipped";
    }
    return "unknown";
}

std::optional<WorkflowState> ParseWorkflowState(std::string_view s) {
    for (auto state : {WorkflowState::kRunning, WorkflowState::kCompensating, WorkflowState::kSucceeded,
                       WorkflowState::kRolledBack, WorkflowState::kFailed}) {
        if (ToString(state) == s) {
            return state;
        }
    }
    return std::nullopt;
}

bool IsTerminal(WorkflowState s) {
    return s == WorkflowState::kSucceeded || s == WorkflowState::kRolledBack || s == WorkflowState::kFailed;
}

}  // namespace cogs::store
