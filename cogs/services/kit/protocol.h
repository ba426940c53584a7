// The server side of the micro-service protocol (docs/service-protocol.md), for any service that
// can perform idempotent actions: an ActionTarget, served over HTTP by MakeActionHttpHandler.
//
// kit::DomainService (service.h) and the simulated service (cogs/services/sim) are ActionTargets
// (what else they share is calls.h); the HTTP face is written once, here: with it the
// observability every service process shares (GET /metrics, GET|PUT /v1/log-levels, the
// per-action metrics and the per-action log line).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/kit/faults.h"
#include "cogs/workflow/service.h"

namespace cogs::services::kit {

// What a service must do to be served. Threading: every method is called on the io thread that runs
// the http::Server; callbacks are invoked at most once, never inline (always from a later handler on
// that thread), and not at all for a call that hangs or whose reply is lost (the callback is then
// destroyed uncalled, and the HTTP exchange gets no answer).
class ActionTarget {
public:
    using Callback = std::function<void(Result<workflow::ActionReply>)>;
    virtual ~ActionTarget() = default;

    // The service's name ("network", "sim", ...): the `service` label of its metrics and the
    // component its action log lines are written under.
    virtual std::string_view name() const = 0;

    // Whether a call with `key` would be answered from the ledger (a replay of a key already
    // recorded) rather than performed. Asked just before Handle() on the same thread, so the answer
    // holds for that call.
    virtual bool IsRecorded(const std::string& key) const = 0;

    // POST /v1/actions/{action}: performs `action` under idempotency `key`. `input` is a JSON
    // object's text (the handler has checked it is one; "{}" when the body was empty).
    virtual void Handle(std::string action, std::string key, std::string input, SteadyTime deadline,
                        Callback done) = 0;
    // GET /v1/actions/status?key=K.
    virtual void Status(std::string key, Callback done) = 0;

    // PUT / GET /v1/faults.
    virtual void SetFaults(FaultConfig faults) = 0;
    virtual const FaultConfig& faults() const = 0;

    // GET /v1/ledger (a JSON array) and GET /v1/stats (a JSON object).
    virtual std::string LedgerJson() const = 0;
    virtual std::string StatsJson() const = 0;

    // The service's other routes, as kit::Domain's Get and Post (domain.h) declare them; a
    // DomainService adds GET /v1/inventory. Get's nullopt and Post's false: not one of them (the
    // handler answers 404).
    virtual std::optional<http::Response> Get(const http::Request& request) = 0;
    virtual bool Post(const http::Request& request, const http::Respond& respond) = 0;
};

// Serves `target` (which must outlive the handler) with the protocol:
//   POST    /v1/actions/{action}   Idempotency-Key (required), X-Cogs-Deadline-Ms, traceparent; JSON body
//   GET     /v1/actions/status?key=K
//   GET     /v1/stats,  GET /healthz
//   GET|PUT /v1/faults,  GET /v1/ledger       test routes: with HandlerAccess::test_routes only
//   GET|PUT /v1/log-levels         observe::HandleLogLevels: every component's log level, or set some
//   GET     /metrics               with `metrics` only (observe::Instrument): the Prometheus text
//   GET     anything else: target.Get(), else 404 not_found
//   POST    anything else: target.Post(), else 404 not_found
// Answers: 200 {"output": ...}, 202 {"accepted": true}, or wire::ServiceError's {"code","message",
// "retryable"} with cogs::HttpStatus(code); 400 for a missing Idempotency-Key, a bad
// X-Cogs-Deadline-Ms or a body that is not a JSON object ("body: must be a JSON object"); 405 with
// Allow for a wrong method (wire::ServiceMethodNotAllowed).
//
// With HandlerAccess::token_sha256 (each 64 lowercase hex: cogs::Sha256Hex of a token) non-empty,
// every route but /healthz and /metrics requires "Authorization: Bearer <token>" whose SHA-256 is
// one of them (compared in constant time), else 401 {"code":"unauthenticated",...}. Empty: no
// authentication (a process started with --insecure). Several: one process serving several hosts
// (cogs-compute --hosts), each host's agent token. Without test_routes, /v1/faults and /v1/ledger
// are 404 like any route that does not exist (after authentication: a caller without the token
// learns nothing), and the target must not serve its own test routes either (cogs-compute's crash
// route: ComputeOptions::test_routes).
//
// With `metrics`, the handler is wrapped in observe::Instrument (cogs_http_* series, GET /metrics)
// and every action call is counted (docs/metrics.md, "Micro-services"):
//   cogs_service_actions_total{service,action,outcome}   outcome: ok, accepted (202), replayed (the
//       key was recorded: answered from the ledger), error (retryable), refused (definitive)
//   cogs_service_action_duration_seconds{service,action} request received -> answer handed over
// A call never answered (an injected hang or lost reply) is not counted there: the target counts it
// in cogs_service_faults_injected_total. At most 64 action names are kept as labels; later ones
// (only unknown actions can add more) count as "other". Handles are cached per action: no registry
// lookup on the hot path. The registry must outlive the handler.
//
// Every action call that is not a replay writes one info line through observe::Log(target.name()),
// inside an observe::LogScope carrying the call's trace id (its traceparent header), workflow id
// (the Idempotency-Key up to its first '/') and resource id (the input's string field "id"):
//   action=create_port outcome=ok duration_ms=0.412 key=wf-1/port/do
// A call that is never answered logs outcome=unanswered when the target lets go of it. Status polls
// are not logged. This happens with or without `metrics`.
//
// Run the http::Server on the target's io_context, with one thread (the cached handles and the
// /metrics samplers of the targets rely on it).
struct HandlerAccess {
    std::vector<std::string> token_sha256;  // the tokens accepted (their SHA-256); empty: no authentication
    bool test_routes = false;               // serve GET|PUT /v1/faults and GET /v1/ledger
};
http::Handler MakeActionHttpHandler(ActionTarget& target, HandlerAccess access,
                                    observe::Metrics* metrics = nullptr);

}  // namespace cogs::services::kit
