#include "cogs/oci/runc.h"

#include <fmt/format.h>

#include "cogs/oci/bundle.h"
#include "cogs/oci/internal/runc_output.h"
#include "cogs/runtime/process.h"

namespace cogs::oci {
namespace {

constexpr std::string_view kNoContainer = "container does not exist";
constexpr std::string_view kNotRunning = "container not running";

Status CheckId(const std::string& id) {
    if (!IsValidContainerId(id)) {
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a container id", id));
    }
    return Ok();
}

}  // namespace

std::string_view ToString(RuncStatus status) {
    switch (status) {
        case RuncStatus::kCreating: return "creating";
        case RuncStatus::kCreated: return "created";
        case RuncStatus::kRunning: return "running";
        case RuncStatus::kPausing: return "pausing";
        case RuncStatus::kPaused: return "paused";
        case RuncStatus::kStopped: return "stopped";
    }
    return "unknown";
}

// Runs `runc --root R --log-format json ARGS...`; answers its output when it exits 0, else an error
// whose message is runc's ("runc kill c1: container not running"), with the code its words imply.
Result<std::string> Runc::Run(const std::vector<std::string>& args, const std::string& what) const {
    std::vector<std::string> argv{options_.binary, "--root", options_.root, "--log-format", "json"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto out = runtime::RunCommand(argv, SteadyClock::now() + options_.timeout);
    if (!out) {
        Error e = out.error();
        if (e.code == ErrorCode::kDeadlineExceeded) {
            return MakeError(ErrorCode::kDeadlineExceeded,
                             fmt::format("{}: runc did not end within {} ms", what,
                                         std::chrono::duration_cast<Millis>(options_.timeout).count()));
        }
        return MakeError(e.code, fmt::format("{}: {}", what, e.message));
    }
    if (out->exit_status == 0) {
        return std::move(out->output);
    }
    std::string message = internal::RuncErrorMessage(out->output);
    if (message.empty()) {
        message = fmt::format("runc exited with status {}", out->exit_status);
    }
    ErrorCode code = ErrorCode::kUnavailable;
    if (message.find(kNoContainer) != std::string::npos) {
        code = ErrorCode::kNotFound;
    } else if (message.find(kNotRunning) != std::string::npos) {
        code = ErrorCode::kFailedPrecondition;
    }
    return MakeError(code, fmt::format("{}: {}", what, message));
}

Result<RuncState> Runc::State(const std::string& id) const {
    COGS_TRY(CheckId(id));
    COGS_ASSIGN_OR_RETURN(const std::string out, Run({"state", id}, "runc state " + id));
    COGS_ASSIGN_OR_RETURN(RuncState state, internal::ParseState(out));
    if (state.id != id) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("runc state {}: runc answered for '{}'", id, state.id));
    }
    return state;
}

Status Runc::Kill(const std::string& id, int signal, bool all) const {
    COGS_TRY(CheckId(id));
    std::vector<std::string> args{"kill"};
    if (all) {
        args.push_back("--all");
    }
    args.push_back(id);
    args.push_back(std::to_string(signal));
    COGS_TRY(Run(args, fmt::format("runc kill {} {}", id, signal)));
    return Ok();
}

Status Runc::Delete(const std::string& id, bool force) const {
    COGS_TRY(CheckId(id));
    std::vector<std::string> args{"delete"};
    if (force) {
        args.push_back("--force");
    }
    args.push_back(id);
    auto out = Run(args, "runc delete " + id);
    if (!out && out.error().code == ErrorCode::kNotFound) {
        return Ok();
    }
    COGS_TRY(out);
    return Ok();
}

Result<std::vector<RuncState>> Runc::List() const {
    COGS_ASSIGN_OR_RETURN(const std::string out, Run({"list", "--format", "json"}, "runc list"));
    return internal::ParseList(out);
}

}  // namespace cogs::oci
