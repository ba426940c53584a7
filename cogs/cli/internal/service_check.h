// `cogs service check URL`: a conformance suite for a micro-service, run against the live service, so
// that whoever writes one (a DNS, a billing, an IPAM service) knows that cogs can orchestrate it
// safely: that a retry never applies twice, a compensation that comes first keeps a late do out, a
// refusal is definitive, and an answer's status says whether to retry. The protocol is
// docs/service-protocol.md; the kit (cogs/services/kit) is its reference implementation.
// Internal to cogs/cli.
//
//   cogs service check URL --token-file F --action NAME --input JSON
//       [--undo-action NAME] [--undo-input JSON] [--timeout-s N] [-o json]
//       [--ca-file F [--client-cert F --client-key F]]              (https: the global TLS options)
//
// What the suite needs of the service: the token it accepts, one action that changes what
// GET /v1/inventory shows (a create) with an input it accepts, and that action's compensation.
// Every check works on fresh keys "check-<random>/<check>/do" (and "/undo"), and on a fresh resource:
// in --input and --undo-input, every "${unique}" is replaced by a value made for that key
// ("chk-" and 12 hex digits: a valid id and DNS label), the same in a do's input and in its undo's.
// In --undo-input, a string "${output.FIELD}" (a dotted path) becomes the do's output at FIELD (any
// JSON value; null when there is none, as for an undo that comes before its do), and
// "${output.FIELD}" inside a longer string its text. Without --undo-input the undo is sent what
// the engine sends a compensation without an input: {"input": <the do's input>, "output": <its
// output, or null>}. Without --undo-action the two undo checks are skipped (SKIP, not a failure),
// and what the checks create stays; with it every check that created something undoes it.
//
// The checks, in order. "Nothing applied" means GET /v1/inventory (with the token) answers the same
// JSON before and after (objects compared without regard to member order, arrays in order).
//
//   health             GET /healthz without a token answers 200.
//   inventory          GET /v1/inventory with the token answers 200 with a JSON object, the same when
//                      asked again (every check below but error_classes compares it, and is skipped
//                      without it).
//   auth               an action without a token answers 401 with WWW-Authenticate: Bearer; with a
//                      wrong token 401; GET /v1/inventory without a token 401; nothing applied and
//                      neither key recorded (their status: 404).
//   bad_requests       an action without Idempotency-Key answers 400; a body that is not JSON 400;
//                      a JSON array 400; an action the service does not have 404 (and its key is not
//                      recorded: status 404); nothing applied.
//   do                 the action with a new key answers 200 {"output": ...}, or 202 {"accepted":
//                      true} and then its status (GET /v1/actions/status?key=, polled within
//                      --timeout-s) 200 {"output": ...}; the inventory changed.
//   replay             the same key and body again answer the same output (a 202 is followed to its
//                      end); the inventory is the same before and after the replay (a service that
//                      performs a replay again fails here).
//   replay_other_body  the same key with another body (a fresh ${unique}, or an extra member
//                      "cogs_check" when --input has none) answers the original output; nothing
//                      applied.
//   status             the status of the done key answers 200 with the same output; of a key never
//                      used 404.
//   undo_after_do      the undo (key K/undo) answers 200 and the inventory is again what it was before
//                      the do; a second undo answers the same.
//   undo_before_do     the undo of a key never done answers 200 (a tombstone), then the do with that
//                      key 422 (failed_precondition, "compensated before applied"); nothing applied.
//   deadline           the action with X-Cogs-Deadline-Ms: 0 answers 504; nothing applied; its key
//                      is not recorded (status 404).
//   error_classes      every error answer seen during the run (any status >= 400) has a JSON object
//                      body {"code": <a cogs error code name>, "message": <string>} whose status is
//                      cogs::HttpStatus(code): the engine retries on the status alone, so a refusal
//                      that claims "unavailable" with a 400, or a 503 that says "not_found", misleads it.
//
// A check that depends on an earlier one is skipped when that one failed (the replay, status and
// undo checks need a working do: a wrong --input shows once, under `do`); when /healthz does not
// answer at all, the rest is skipped. A check stops at its first finding, but auth, bad_requests and
// error_classes, which report every one. Every request carries a deadline of --timeout-s (default 10)
// and an action the budget X-Cogs-Deadline-Ms of the same (but the deadline check's 0): a service
// that hangs makes a check fail, never the checker hang. Every request of a run carries one
// traceparent trace id (printed in the summary): grep the service's log for it.
//
// Output: one line per check, "PASS name", "FAIL name: what was seen; what the protocol requires",
// or "SKIP name: why", then a summary line; -o json: {"url", "trace_id", "checks": [{"name",
// "result": "pass"|"fail"|"skip", "detail"}], "passed", "failed", "skipped"}. Exit 0 when no check
// failed, 1 when one did, 2 for a usage error (the URL, a file, an --input that is not a JSON
// object).
//
// The checker assumes it is the service's only caller while it runs (it compares inventories).
//
// Threading: the calling thread only; it owns an io_context it runs only inside a request.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace cogs::cli {

struct ServiceCheckOptions {
    std::string url{};          // http://HOST:PORT or https://HOST:PORT
    std::string token_file{};   // the bearer token the service accepts
    std::string action{};       // an action that changes the inventory
    std::string input{};        // its input: a JSON object, with "${unique}" placeholders
    std::string undo_action{};  // its compensation; empty: the undo checks are skipped
    std::string undo_input{};   // the compensation's input; empty: {"input": ..., "output": ...}
    int timeout_s = 10;         // each request's deadline; how long a 202 is followed
    std::string ca_file{};      // https: the CA the service's certificate must chain to
    std::string client_cert{};  // https: a certificate to present (mutual TLS), with client_key
    std::string client_key{};
    bool json = false;  // -o json
};

enum class CheckResult { kPass, kFail, kSkip };

struct CheckOutcome {
    std::string name;  // "health", "replay", ... (the order above)
    CheckResult result = CheckResult::kPass;
    std::string detail;  // FAIL: what was seen and what the protocol requires; SKIP: why; PASS: ""
};

// Runs the suite against the service and prints it on `out` (usage errors on `err`); returns the
// exit code: 0 no check failed, 1 one did, 2 usage.
int RunServiceCheck(const ServiceCheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace cogs::cli
