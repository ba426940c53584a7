// The server side of the micro-service protocol (docs/service-protocol.md), for any service that
// can perform idempotent actions: an ActionTarget, served over HTTP by MakeActionHttpHandler.
//
// kit::DomainService (service.h) and the simulated service (cogs/services/sim) are ActionTargets;
// the HTTP face is written once, here.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"
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

    // POST /v1/actions/{action}: performs `action` under idempotency `key`. `input` is JSON text
    // (the handler has checked it parses; "{}" when the body was empty).
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

    // Any other GET route (e.g. /v1/inventory); nullopt: not one (the handler answers 404).
    virtual std::optional<http::Response> Get(const http::Request& request) {
        (void)request;
        return std::nullopt;
    }
};

// Serves `target` (which must outlive the handler) with the protocol:
//   POST    /v1/actions/{action}   Idempotency-Key (required), X-Cogs-Deadline-Ms, traceparent; JSON body
//   GET     /v1/actions/status?key=K
//   GET|PUT /v1/faults,  GET /v1/ledger,  GET /v1/stats,  GET /healthz
//   GET     anything else: target.Get(), else 404 not_found
// Answers: 200 {"output": ...}, 202 {"accepted": true}, or {"code","message","retryable"} with
// cogs::HttpStatus(code); 400 for a missing Idempotency-Key, a bad X-Cogs-Deadline-Ms or a body that
// is not JSON; 405 with Allow for a wrong method.
//
// With `token_sha256` (64 lowercase hex: cogs::Sha256Hex of the token) non-empty, every route but
// /healthz requires "Authorization: Bearer <token>" whose SHA-256 matches (compared in constant
// time), else 401 {"code":"unauthenticated",...}. Empty: no authentication.
//
// Run the http::Server on the target's io_context, with one thread.
http::Handler MakeActionHttpHandler(ActionTarget& target, std::string token_sha256 = "");

}  // namespace cogs::services::kit
