// The HTTP face of cogsd's API (docs/api.md): /healthz, then for /v1/...: admission (admission.h:
// the system lane for the agents' registrations and heartbeats, the tenant lane for the rest; a
// request over a limit is answered 429 with Retry-After at once, never queued), the bearer token (the
// scheme case-insensitive; 401 with WWW-Authenticate), admin-only GET/PUT /v1/log-levels, and the
// routes of routes.cc through the Router. The paths of another face (SetFace: the OpenStack-compatible
// API, cogs/cloud/openstack) take the same steps, with that face's token header, anonymous routes and
// error shape, and go to its own dispatch. The web console's files (SetStatic, cogs/cloud/ui) are
// answered before either, without a token. Beast never shows here: it rides on cogs/http.
//
// Every request gets a trace: the caller's `traceparent` header if it is valid (the API's work is
// a child span of it), else a new trace. The answer carries `traceparent` (the API's span), the
// workflows the request starts carry it, and every log line written while the request is handled
// carries its trace id and the resource id of its path (observe::LogScope). Changes are logged at
// info, reads and heartbeats at debug, 5xx at warn (but 507: the store logs a full disk once). Answers are
// never given inline.
//
// Changes (POST, PUT, PATCH, DELETE under /v1), refused or not, go to the auditor (SetAuditor;
// resources/audit.h) with who asked (once authenticated), the trace id, the client's address and the
// answer, just before the answer leaves.
//
// Metrics: cogs_api_rejected_total{reason} (overload, system_overload, rate_limited, project_overload,
// unauthenticated), cogs_api_inflight{lane}; request counts and latencies are observe::Instrument's,
// wrapped around this handler by cogsd.
//
// Threading: the handler runs on the cloud's io thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "cogs/cloud/api/admission.h"
#include "cogs/cloud/api/router.h"
#include "cogs/observe/metrics.h"
#include "cogs/store/records.h"

namespace boost::asio {
class io_context;
}

namespace cogs::cloud {

// The token of an Authorization header "Bearer <token>" (the scheme in any case), or "".
std::string_view BearerToken(std::string_view authorization);

class HttpApi {
public:
    using Authenticator = std::function<Result<Principal>(std::string_view bearer_token)>;
    // `router` must outlive the handler. While `refusal` answers an error (the store cannot write:
    // its disk is full, 507; its database is unreachable, 503 with Retry-After), every change but a
    // heartbeat is answered with it before it is routed, and /healthz says "degraded".
    using Refusal = std::function<std::optional<Error>()>;
    // `clock` (the token buckets' time) must outlive the handler.
    HttpApi(boost::asio::io_context& io, const Router& router, Authenticator authenticate,
            AdmissionOptions admission, runtime::Clock& clock, observe::Metrics* metrics,
            Refusal refusal = {});
    // The handler to give http::StartServer; it must run on the io thread.
    http::Handler Handler();

    // Called on the io thread for every change with its audit entry (who — "" before
    // authentication —, method, path, trace id, peer) and its answer. Set before serving.
    using Auditor = std::function<void(store::AuditRecord entry, const http::Response& answer)>;
    void SetAuditor(Auditor auditor);

    // Another face of the same API on paths outside /v1 (the OpenStack-compatible one,
    // cogs/cloud/openstack): its requests pass the same admission, authentication, full-disk refusal
    // and audit log as /v1's, then go to `dispatch`. Set before serving.
    struct Face {
        std::function<bool(std::string_view path)> owns;
        // Served without a token (version documents, a login): admitted in the tenant lane under the
        // client's address, with an empty Principal.
        std::function<bool(std::string_view method, std::string_view path)> anonymous;
        // The token the request carries (the face's own header, e.g. X-Auth-Token), or "".
        std::function<std::string(const http::Request&)> token;
        // Every error answer of one of its paths (refusals before dispatch, the router's, the
        // handlers'), in cogs' shape, is passed through this to take the face's own.
        std::function<http::Response(std::string_view path, http::Response error)> reshape;
        std::function<void(Call)> dispatch;
    };
    void SetFace(Face face);

    // Static files served without a token (the web console, cogs/cloud/ui: /ui and /ui/...): for
    // paths `owns` says, after /healthz and before any face or /v1, admitted in the tenant lane under
    // the client's address (its in-flight cap and rate, like a face's anonymous routes), answered by
    // `serve` at once. Never audited: they change nothing. Set before serving.
    struct Static {
        std::function<bool(std::string_view path)> owns;
        std::function<http::Response(const http::Request&)> serve;
    };
    void SetStatic(Static files);

private:
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace cogs::cloud
