#include "cogs/cli/internal/wait.h"

#include <algorithm>
#include <map>
#include <ostream>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"

namespace cogs::cli {
namespace {

std::string Upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

std::string Str(const json::object& o, std::string_view field) { return Cell(Field(o, field)); }

// Prints the changes of a workflow since the last poll.
class ProgressPrinter {
public:
    explicit ProgressPrinter(std::ostream& out) : out_(out) {}

    void Workflow(const json::object& wf) {
        const std::string state = Str(wf, "state");
        if (state != state_ && (state == "compensating" || state == "rolled_back" || state == "failed")) {
            const std::string reason = Str(wf, "reason");
            out_ << fmt::format("workflow {}{}\n", state == "compensating" ? "rolling back" : state,
                                reason.empty() ? "" : ": " + reason);
        }
        state_ = state;
        const auto* steps = wf.if_contains("steps");
        if (steps == nullptr || !steps->is_array()) {
            return;
        }
        const size_t total = steps->as_array().size();
        for (const auto& sv : steps->as_array()) {
            if (!sv.is_object()) {
                continue;
            }
            const auto& s = sv.as_object();
            const std::string name = Str(s, "name");
            const std::string st = Str(s, "state");
            const std::string attempts = Str(s, "attempts");
            auto& seen = seen_[name];
            if (seen.first == st && seen.second == attempts) {
                continue;
            }
            const std::string error = Str(s, "error");
            if (st == "succeeded" && seen.first != st) {
                // Counted as announced, so that steps seen done in one poll still read 1/n, 2/n, ...
                out_ << fmt::format("{} done ({}/{})\n", name, ++done_, total);
            } else if (st == "waiting_retry") {
                out_ << fmt::format("{} retrying after attempt {}{}\n", name, attempts,
                                    error.empty() ? "" : ": " + error);
            } else if (st == "failed" && seen.first != st) {
                out_ << fmt::format("{} failed{}\n", name, error.empty() ? "" : ": " + error);
            } else if (st == "compensated" && seen.first != st && seen.first != "") {
                out_ << fmt::format("{} undone\n", name);
            } else if (st == "compensation_failed" && seen.first != st) {
                out_ << fmt::format("{} could not be undone{}\n", name, error.empty() ? "" : ": " + error);
            }
            seen = {st, attempts};
        }
    }

    void Status(const std::string& what, const std::string& status) {
        if (status != status_) {
            out_ << fmt::format("{}: {}\n", what, status);
            status_ = status;
        }
    }

private:
    std::ostream& out_;
    std::string state_;
    std::string status_;
    size_t done_ = 0;
    std::map<std::string, std::pair<std::string, std::string>> seen_;  // step -> (state, attempts)
};

}  // namespace

bool IsTransitionalStatus(const std::string& status) {
    static const char* kTransitional[] = {"BUILD",   "DELETING",  "STARTING",  "STOPPING",
                                          "REBOOT",  "CREATING",  "ATTACHING", "DETACHING",
                                          "PENDING", "REBOOTING", "EXTENDING", "RESIZING"};
    const std::string u = Upper(status);
    return std::any_of(std::begin(kTransitional), std::end(kTransitional),
                       [&](const char* t) { return u == t; });
}

bool IsErrorStatus(const std::string& status) { return Upper(status).rfind("ERROR", 0) == 0; }

ApiResult<json::value> Follow(ApiClient& api, const WaitTarget& target, std::ostream& progress,
                              const WaitOptions& options) {
    const SteadyTime deadline = SteadyClock::now() + options.limit;
    ProgressPrinter printer(progress);
    Duration pause = options.first_poll;
    std::string status;
    std::string wf_state;
    std::string wf_reason;
    auto fail = [&](std::string code, std::string message) {
        return tl::unexpected(ApiFailure{0, std::move(code), std::move(message), {}});
    };
    for (;;) {
        if (!target.workflow_id.empty()) {
            // Progress only: a workflow we cannot read (a reader token, an old API) does not stop the wait.
            if (auto wf = api.Get("/v1/workflows/" + http::UrlEncode(target.workflow_id)); wf) {
                const json::object& w = Unwrap(*wf);
                printer.Workflow(w);
                wf_state = Str(w, "state");
                wf_reason = Str(w, "reason");
            }
        }
        auto res = api.Get(target.path);
        if (!res) {
            if (res.error().status == 404) {
                if (target.gone) {
                    progress << fmt::format("{}: deleted\n", target.what);
                    return json::value(nullptr);
                }
                return fail("not_found", fmt::format("{} disappeared{}", target.what,
                                                     wf_reason.empty() ? "" : ": " + wf_reason));
            }
            if (res.error().status != 0 && res.error().status != 429 && res.error().status < 500) {
                return tl::unexpected(res.error());
            }
            // Unreachable or overloaded for a moment: keep following until the limit.
        } else {
            const json::object& r = Unwrap(*res);
            status = Str(r, "status");
            printer.Status(target.what, status);
            const std::string fault = Str(r, "fault.message");
            if (IsErrorStatus(status)) {
                return fail(wf_state.empty() ? "error" : wf_state,
                            fmt::format("{} is {}: {}", target.what, status,
                                        !fault.empty()       ? fault
                                        : !wf_reason.empty() ? wf_reason
                                                             : "no reason given"));
            }
            if (wf_state == "rolled_back" || wf_state == "failed") {
                return fail(wf_state, fmt::format("{} {}: {}", target.what,
                                                  wf_state == "failed" ? "failed" : "was rolled back",
                                                  !fault.empty() ? fault : wf_reason));
            }
            if (!target.gone && !IsTransitionalStatus(status)) {
                if (target.expect.empty() || Upper(status) == Upper(target.expect)) {
                    return std::move(*res);
                }
                if (wf_state == "succeeded") {
                    return fail("conflict",
                                fmt::format("{} ended {}, expected {}", target.what, status, target.expect));
                }
            }
        }
        const SteadyTime now = SteadyClock::now();
        if (now >= deadline) {
            return fail("deadline_exceeded",
                        fmt::format("{} still {} after {}s", target.what, status.empty() ? "unknown" : status,
                                    std::chrono::duration_cast<std::chrono::seconds>(options.limit).count()));
        }
        std::this_thread::sleep_for(std::min<Duration>(pause, deadline - now));
        pause = std::min<Duration>(pause * 3 / 2, options.max_poll);
    }
}

}  // namespace cogs::cli
