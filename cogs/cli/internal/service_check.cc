// `cogs service check`: the suite of service_check.h. A Session (service_check_wire.h) speaks to the
// service, one request at a time, each under a deadline, and keeps every error answer for
// error_classes; the Suite runs the checks on it, each a function that returns Ok or its finding.
#include "cogs/cli/internal/service_check.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <optional>
#include <ostream>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/json.hpp>

#include "cogs/base/secret.h"
#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/service_check_wire.h"
#include "cogs/runtime/files.h"
#include "cogs/wire/answer.h"

namespace cogs::cli {
namespace {

using service_check::Answer;
using service_check::Auth;
using service_check::Call;
using service_check::Expand;
using service_check::FirstDifference;
using service_check::Seen;
using service_check::Session;

// A finding: what was seen and what the protocol requires.
tl::unexpected<Error> Finding(std::string text) {
    return MakeError(ErrorCode::kFailedPrecondition, std::move(text));
}

// Ok if `a` has `status`, else the finding "<request> answered <status> <body>; the protocol requires
// <required>".
Status Expect(const Answer& a, int status, std::string_view required) {
    if (a.status == status) {
        return Ok();
    }
    return Finding(fmt::format("{}; the protocol requires {}", Seen(a), required));
}

// The output of a done action: 200 {"output": ...}.
Result<json::value> OutputOf(const Answer& a, std::string_view required) {
    const json::object* o = a.json.if_object();
    const json::value* output = o != nullptr ? o->if_contains("output") : nullptr;
    if (a.status != 200 || output == nullptr) {
        return Finding(fmt::format("{}; the protocol requires {}", Seen(a), required));
    }
    return *output;
}

// ---- the suite ----------------------------------------------------------------------------------

// One step of a check: a fresh key and a fresh resource.
struct Step {
    std::string base;    // "check-<random>/<check>"
    std::string unique;  // what ${unique} stands for
    json::value input;   // the do's input, placeholders replaced
    std::string do_key() const { return base + "/do"; }
    std::string undo_key() const { return base + "/undo"; }
};

class Suite {
public:
    Suite(Session& s, const ServiceCheckOptions& o, json::value input, json::value undo_input)
        : s_(s), o_(o), input_(std::move(input)), undo_input_(std::move(undo_input)) {}

    std::vector<CheckOutcome> Run() {
        std::vector<CheckOutcome> out;
        std::set<std::string> failed;  // names of the checks that failed or were skipped
        for (const Check& c : Checks()) {
            CheckOutcome r{c.name, CheckResult::kSkip, ""};
            if (failed.contains("health") && unreachable_) {
                r.detail = "the service did not answer GET /healthz";
            } else if (c.needs_undo && o_.undo_action.empty()) {
                r.detail = "no --undo-action";
            } else if (c.needs_inventory && failed.contains("inventory")) {
                r.detail = "needs GET /v1/inventory (see inventory)";
            } else if (c.needs_do && failed.contains("do")) {
                r.detail = "needs a working do (see do)";
            } else {
                const Status st = c.run();
                CleanUp();
                r.result = st ? CheckResult::kPass : CheckResult::kFail;
                r.detail = st ? "" : st.error().message;
                unreachable_ = unreachable_ || (r.name == "health" && !st &&
                                                st.error().code != ErrorCode::kFailedPrecondition);
            }
            if (r.result != CheckResult::kPass) {
                failed.insert(r.name);
            }
            out.push_back(std::move(r));
        }
        return out;
    }

private:
    struct Check {
        std::string name;
        std::function<Status()> run;
        bool needs_inventory = true;  // skipped when `inventory` failed
        bool needs_do = false;        // skipped when `do` failed
        bool needs_undo = false;      // skipped without --undo-action
    };

    // The checks in order (service_check.h).
    std::vector<Check> Checks() {
        return {
            {"health", [this] { return Health(); }, false},
            {"inventory", [this] { return InventoryCheck(); }, false},
            {"auth", [this] { return AuthCheck(); }},
            {"bad_requests", [this] { return BadRequests(); }},
            {"do", [this] { return DoCheck(); }},
            {"replay", [this] { return Replay(); }, true, true},
            {"replay_other_body", [this] { return ReplayOtherBody(); }, true, true},
            {"status", [this] { return StatusCheck(); }, true, true},
            {"undo_after_do", [this] { return UndoAfterDo(); }, true, true, true},
            {"undo_before_do", [this] { return UndoBeforeDo(); }, true, false, true},
            {"deadline", [this] { return Deadline(); }},
            {"error_classes", [this] { return ErrorClasses(); }, false},
        };
    }

    // ---- steps, calls and clean-up ----

    Step NewStep(std::string_view check) {
        Step s{fmt::format("check-{}/{}", RandomHex(6), check), "chk-" + RandomHex(6), {}};
        s.input = Expand(input_, s.unique, nullptr);
        return s;
    }

    Call DoCall(const Step& s) const { return Call{o_.action, s.do_key(), json::serialize(s.input)}; }

    // The undo of `s`'s do, given its output (null: none).
    Call UndoCall(const Step& s, const json::value& output) const {
        json::value body = undo_input_.is_null()
                               ? json::value(json::object{{"input", s.input}, {"output", output}})
                               : Expand(undo_input_, s.unique, &output);
        return Call{o_.undo_action, s.undo_key(), json::serialize(body)};
    }

    // The do of `s` to its end; its output (and it is undone after the check).
    Result<json::value> Do(const Step& s) {
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Perform(DoCall(s)));
        COGS_ASSIGN_OR_RETURN(json::value output,
                              OutputOf(a,
                                       "200 {\"output\": ...}, or 202 {\"accepted\": true} and then 200 from "
                                       "its status (is --input one the action accepts?)"));
        created_.emplace_back(s, output);
        return output;
    }

    // A call the service should have refused but performed: undone after the check like a do.
    void KeepIfApplied(const Step& s, const Answer& a) {
        if (auto output = OutputOf(a, ""); output) {
            created_.emplace_back(s, std::move(*output));
        }
    }

    // Undoes what the check created (best effort: the answers still count for error_classes).
    void CleanUp() {
        if (!o_.undo_action.empty()) {
            for (const auto& [step, output] : created_) {
                (void)s_.Perform(UndoCall(step, output));
            }
        }
        created_.clear();
    }

    Result<json::value> Inventory() {
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Inventory(Auth::kToken));
        if (a.status != 200 || !a.json.is_object()) {
            return Finding(
                fmt::format("{}; the protocol requires 200 with a JSON object of what the service holds "
                            "(the checker compares it before and after each call)",
                            Seen(a)));
        }
        return a.json;
    }

    // Ok if the inventory is still `before`; else the finding, naming `after_what`.
    Status Unchanged(const json::value& before, std::string_view after_what, std::string_view required) {
        COGS_ASSIGN_OR_RETURN(const json::value now, Inventory());
        if (now == before) {
            return Ok();
        }
        return Finding(fmt::format("GET /v1/inventory changed after {} (before vs after at {}); {}",
                                   after_what, FirstDifference(before, now, ""), required));
    }

    // Ok if `key` was never recorded: its status is 404.
    Status NotRecorded(const std::string& key, std::string_view why) {
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Status(key));
        return Expect(a, 404, fmt::format("404 not_found: {}", why));
    }

    // ---- the checks (service_check.h) ----

    Status Health() {
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Healthz());
        return Expect(a, 200, "200 without a token while the process serves");
    }

    Status InventoryCheck() {
        COGS_ASSIGN_OR_RETURN(const json::value first, Inventory());
        return Unchanged(first, "nothing but a second GET",
                         "an inventory that changes while nobody calls cannot show what a call did");
    }

    Status AuthCheck() {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        std::vector<std::string> findings;
        const auto note = [&findings](const Status& st) {
            if (!st) {
                findings.push_back(st.error().message);
            }
        };
        const Step none = NewStep("auth-none");
        Call c = DoCall(none);
        c.auth = Auth::kNone;
        c.note = "without Authorization";
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Post(c));
        KeepIfApplied(none, a);
        note(Expect(a, 401, "401 unauthenticated, with WWW-Authenticate: Bearer"));
        if (a.status == 401 && !a.www_authenticate.starts_with("Bearer")) {
            findings.push_back(
                fmt::format("{} with WWW-Authenticate '{}'; the protocol requires WWW-Authenticate: Bearer",
                            Seen(a), Printable(a.www_authenticate)));
        }
        const Step wrong = NewStep("auth-wrong");
        c = DoCall(wrong);
        c.auth = Auth::kWrong;
        c.note = "with a wrong token";
        COGS_ASSIGN_OR_RETURN(const Answer b, s_.Post(c));
        KeepIfApplied(wrong, b);
        note(Expect(b, 401, "401 unauthenticated"));
        COGS_ASSIGN_OR_RETURN(const Answer inv, s_.Inventory(Auth::kNone));
        note(Expect(inv, 401, "401: every route but /healthz and /metrics needs the token"));
        note(Unchanged(before, "calls without the token", "nothing may be applied without the token"));
        note(NotRecorded(none.do_key(), "a call without the token is not recorded"));
        note(NotRecorded(wrong.do_key(), "a call with a wrong token is not recorded"));
        return Join(findings);
    }

    Status BadRequests() {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        std::vector<std::string> findings;
        const auto send = [&](const Call& c, int status, std::string_view required) -> Status {
            COGS_ASSIGN_OR_RETURN(const Answer a, s_.Post(c));
            if (Status st = Expect(a, status, required); !st) {
                findings.push_back(st.error().message);
            }
            return Ok();
        };
        Call c = DoCall(NewStep("no-key"));
        c.key.clear();
        c.note = "without Idempotency-Key";
        COGS_TRY(send(c, 400, "400 invalid_argument \"missing header Idempotency-Key\" (nothing applied)"));
        c = DoCall(NewStep("not-json"));
        c.body = "{\"not json";
        c.note = "with a body that is not JSON";
        COGS_TRY(send(c, 400, "400 invalid_argument \"body: not JSON: ...\""));
        c = DoCall(NewStep("array"));
        c.body = "[" + c.body + "]";
        c.note = "with a JSON array as its body";
        COGS_TRY(send(c, 400, "400 invalid_argument \"body: must be a JSON object\""));
        const Step unknown = NewStep("unknown-action");
        c = DoCall(unknown);
        c.action = "cogs-check-no-such-action-" + RandomHex(4);
        COGS_TRY(send(c, 404, "404 not_found for an action the service does not have"));
        if (Status st = NotRecorded(unknown.do_key(), "an unknown action records nothing"); !st) {
            findings.push_back(st.error().message);
        }
        if (Status st = Unchanged(before, "bad requests", "a refused request applies nothing"); !st) {
            findings.push_back(st.error().message);
        }
        return Join(findings);
    }

    Status DoCheck() {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        const Step s = NewStep("do");
        COGS_TRY(Do(s));
        COGS_ASSIGN_OR_RETURN(const json::value after, Inventory());
        if (after == before) {
            return Finding(
                fmt::format("GET /v1/inventory is the same before and after the do (key {}); the "
                            "inventory shows what the service holds, and the checker needs an action "
                            "whose effect it shows (--action: a create)",
                            s.do_key()));
        }
        return Ok();
    }

    // The same key again (with `body`, else the do's): the original output, nothing applied. `what`:
    // "replayed ..." (how the call is named in findings).
    Status Replayed(const Step& s, const json::value& output, std::optional<std::string> body,
                    std::string_view what) {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        Call c = DoCall(s);
        if (body) {
            c.body = std::move(*body);
        }
        c.note = std::string(what);
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Perform(c));
        COGS_ASSIGN_OR_RETURN(const json::value again,
                              OutputOf(a,
                                       "the original answer, 200 with the same output (a key is answered "
                                       "the same every time)"));
        if (again != output) {
            return Finding(fmt::format("{} (first vs again at {}); the protocol requires the original output",
                                       Seen(a), FirstDifference(output, again, "output")));
        }
        return Unchanged(before, fmt::format("the do {} (key {})", what, s.do_key()),
                         "a key already recorded is answered from the ledger and applies nothing again");
    }

    Status Replay() {
        const Step s = NewStep("replay");
        COGS_ASSIGN_OR_RETURN(const json::value output, Do(s));
        return Replayed(s, output, std::nullopt, "replayed");
    }

    Status ReplayOtherBody() {
        const Step s = NewStep("replay-other-body");
        COGS_ASSIGN_OR_RETURN(const json::value output, Do(s));
        json::value other = NewStep("other").input;
        if (other == s.input && other.is_object()) {  // no ${unique} in --input
            other.as_object()["cogs_check"] = RandomHex(4);
        }
        return Replayed(s, output, json::serialize(other), "replayed with another body");
    }

    Status StatusCheck() {
        const Step s = NewStep("status");
        COGS_ASSIGN_OR_RETURN(const json::value output, Do(s));
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Status(s.do_key()));
        COGS_ASSIGN_OR_RETURN(
            const json::value status_output,
            OutputOf(a, "200 {\"output\": ...} for a done key, the output its action answered"));
        if (status_output != output) {
            return Finding(
                fmt::format("{} (action vs status at {}); the protocol requires the action's output", Seen(a),
                            FirstDifference(output, status_output, "output")));
        }
        return NotRecorded(NewStep("never-used").do_key(), "for a key never used");
    }

    Status UndoAfterDo() {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        const Step s = NewStep("undo-after-do");
        COGS_ASSIGN_OR_RETURN(const json::value output, Do(s));
        created_.clear();  // this check undoes it itself
        const Call undo = UndoCall(s, output);
        COGS_ASSIGN_OR_RETURN(const Answer first, s_.Perform(undo));
        COGS_ASSIGN_OR_RETURN(const json::value undone,
                              OutputOf(first,
                                       "200 {\"output\": ...}: the do undone (is --undo-input one the "
                                       "undo action accepts?)"));
        COGS_TRY(
            Unchanged(before, fmt::format("the do and its undo (key {})", s.undo_key()),
                      "an undo removes what its do made: the inventory is again what it was before the do"));
        COGS_ASSIGN_OR_RETURN(const Answer second, s_.Perform(undo));
        COGS_ASSIGN_OR_RETURN(const json::value again,
                              OutputOf(second, "the first undo's answer: 200, the same output"));
        if (again != undone) {
            return Finding(
                fmt::format("{} (first vs second at {}); the protocol requires a second undo to answer "
                            "as the first did",
                            Seen(second), FirstDifference(undone, again, "output")));
        }
        return Ok();
    }

    Status UndoBeforeDo() {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        const Step s = NewStep("undo-before-do");
        COGS_ASSIGN_OR_RETURN(const Answer undo, s_.Perform(UndoCall(s, json::value(nullptr))));
        COGS_TRY(OutputOf(undo, "200: the undo of a do never applied records a tombstone and succeeds"));
        Call late = DoCall(s);
        late.note = "after its undo";
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Post(late));
        COGS_TRY(
            Expect(a, 422,
                   "422 failed_precondition \"compensated before applied\": a do that comes after its undo "
                   "must never apply"));
        return Unchanged(before, fmt::format("an undo and then its do (key {})", s.do_key()),
                         "a do refused after its undo applies nothing");
    }

    Status Deadline() {
        COGS_ASSIGN_OR_RETURN(const json::value before, Inventory());
        const Step s = NewStep("deadline");
        Call c = DoCall(s);
        c.deadline_ms = 0;
        c.note = "with X-Cogs-Deadline-Ms: 0";
        COGS_ASSIGN_OR_RETURN(const Answer a, s_.Post(c));
        KeepIfApplied(s, a);
        COGS_TRY(Expect(a, 504, "504 deadline_exceeded: no work starts whose budget is spent"));
        COGS_TRY(Unchanged(before, "a call whose budget was spent", "nothing applied"));
        return NotRecorded(s.do_key(),
                           "a call refused for its deadline is not recorded (its retry is performed)");
    }

    Status ErrorClasses() {
        std::vector<std::string> findings;
        for (const Answer& a : s_.errors()) {
            if (std::string f = ErrorClassFinding(a); !f.empty()) {
                findings.push_back(std::move(f));
            }
        }
        return Join(findings);
    }

    // What is wrong with the error answer `a` ("" if nothing).
    static std::string ErrorClassFinding(const Answer& a) {
        const json::object* o = a.json.if_object();
        const json::value* code = o != nullptr ? o->if_contains("code") : nullptr;
        const json::value* message = o != nullptr ? o->if_contains("message") : nullptr;
        const std::string shape = "an error answer is {\"code\": <a cogs error code name>, \"message\": ...}";
        if (code == nullptr || !code->is_string() || message == nullptr || !message->is_string()) {
            return fmt::format("{}; {}", Seen(a), shape);
        }
        const auto named = wire::ParseErrorCode(code->as_string());
        if (!named) {
            return fmt::format("{}: '{}' is not a cogs error code name; {}", Seen(a),
                               Printable(code->as_string()), shape);
        }
        if (HttpStatus(*named) != a.status) {
            return fmt::format(
                "{}: {} is the status of {}, {} that of {}; the protocol requires the status "
                "cogs::HttpStatus(code) (the engine retries on the status alone)",
                Seen(a), a.status, ToString(FromHttpStatus(a.status)), HttpStatus(*named), ToString(*named));
        }
        return "";
    }

    static Status Join(const std::vector<std::string>& findings) {
        if (findings.empty()) {
            return Ok();
        }
        return Finding(fmt::format("{}", fmt::join(findings, "; ")));
    }

    Session& s_;
    const ServiceCheckOptions& o_;
    json::value input_;       // --input, placeholders kept
    json::value undo_input_;  // --undo-input, placeholders kept; null: the default compensation body
    std::vector<std::pair<Step, json::value>> created_;  // done by the running check, to undo after it
    bool unreachable_ = false;                           // /healthz got no answer at all
};

// ---- the command --------------------------------------------------------------------------------

const char* ResultName(CheckResult r) {
    switch (r) {
        case CheckResult::kPass: return "pass";
        case CheckResult::kFail: return "fail";
        case CheckResult::kSkip: return "skip";
    }
    return "fail";
}

void Print(const Session& s, const std::vector<CheckOutcome>& checks, bool as_json, std::ostream& out) {
    int counts[3] = {0, 0, 0};
    json::array items;
    for (const CheckOutcome& c : checks) {
        ++counts[static_cast<int>(c.result)];
        items.push_back(
            json::object{{"name", c.name}, {"result", ResultName(c.result)}, {"detail", c.detail}});
        if (!as_json) {
            std::string upper = ResultName(c.result);
            std::transform(upper.begin(), upper.end(), upper.begin(),
                           [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
            out << upper << " " << c.name << (c.detail.empty() ? "" : ": " + Printable(c.detail)) << "\n";
        }
    }
    if (as_json) {
        out << PrettyJson(json::object{{"url", s.url()},
                                       {"trace_id", s.trace_id()},
                                       {"checks", std::move(items)},
                                       {"passed", counts[0]},
                                       {"failed", counts[1]},
                                       {"skipped", counts[2]}});
        return;
    }
    out << fmt::format("{}: {} passed, {} failed, {} skipped (trace id {})\n", s.url(), counts[0], counts[1],
                       counts[2], s.trace_id());
}

// --input / --undo-input: a JSON object.
Result<json::value> ParseTemplate(const std::string& flag, const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) {
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("{}: must be a JSON object", flag));
    }
    return v;
}

}  // namespace

int RunServiceCheck(const ServiceCheckOptions& options, std::ostream& out, std::ostream& err) {
    const auto usage = [&err](const Error& e) {
        err << "error: " << e.message << "\n";
        return 2;
    };
    if (options.timeout_s < 1) {
        return usage(Error(ErrorCode::kInvalidArgument, "--timeout-s: must be at least 1"));
    }
    auto input = ParseTemplate("--input", options.input);
    if (!input) {
        return usage(input.error());
    }
    json::value undo_input;
    if (!options.undo_input.empty()) {
        auto parsed = ParseTemplate("--undo-input", options.undo_input);
        if (!parsed) {
            return usage(parsed.error());
        }
        undo_input = std::move(*parsed);
    }
    auto token = runtime::ReadTokenFile(options.token_file);
    if (!token) {
        return usage(Error(ErrorCode::kInvalidArgument, "--token-file: " + token.error().message));
    }
    auto session = Session::Open(options.url, std::move(*token), std::chrono::seconds(options.timeout_s),
                                 options.ca_file, options.client_cert, options.client_key);
    if (!session) {
        return usage(session.error());
    }
    Suite suite(**session, options, std::move(*input), std::move(undo_input));
    const std::vector<CheckOutcome> checks = suite.Run();
    Print(**session, checks, options.json, out);
    const bool failed = std::any_of(checks.begin(), checks.end(),
                                    [](const CheckOutcome& c) { return c.result == CheckResult::kFail; });
    return failed ? 1 : 0;
}

}  // namespace cogs::cli
