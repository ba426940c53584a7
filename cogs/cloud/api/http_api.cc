#include "cogs/cloud/api/http_api.h"

#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cctype>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/http/conditional.h"
#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"
#include "cogs/wire/host_routes.h"

namespace cogs::cloud {
namespace {

// The resource id a path names, for the log context: /v1/<collection>/<id>[/...].
std::string ResourceIdOf(const std::vector<std::string>& path) {
    return path.size() >= 3 && path[1] != "workflows" && path[1] != "projects" ? path[2] : "";
}

// Answers with the request's traceparent, and logs the outcome (changes at info, reads at debug).
http::Respond Traced(http::Respond respond, std::string traceparent, std::string method, std::string path,
                     std::string resource_id) {
    return [respond = std::move(respond), traceparent = std::move(traceparent), method = std::move(method),
            path = std::move(path), resource_id = std::move(resource_id)](http::Response r) {
        observe::LogScope scope({observe::TraceIdOf(traceparent), "", resource_id});
        auto& log = observe::Log("api");
        // Reads and heartbeats (several a second per host) at debug: info is for changes. So are
        // refusals for overload (429): a flood must not become a flood of log lines; they are counted.
        const bool quiet =
            method == "GET" || method == "HEAD" || wire::IsLeaseRenewal(method, path) || r.status == 429;
        // 507 (a full disk) is said once by the store, not per refused change.
        const auto level = r.status >= 500 && r.status != 507 ? spdlog::level::warn
                           : quiet                            ? spdlog::level::debug
                                                              : spdlog::level::info;
        log.log(level, "{} {} -> {}", method, path, r.status);
        r.headers.emplace_back("traceparent", traceparent);
        respond(std::move(r));
    };
}

}  // namespace

std::string_view BearerToken(std::string_view authorization) {
    // RFC 9110 §11.1: credentials = auth-scheme 1*SP token68; the scheme is case-insensitive.
    constexpr std::string_view kScheme = "bearer";
    const size_t space = authorization.find(' ');
    if (space != kScheme.size()) return {};
    for (size_t i = 0; i < space; ++i) {
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return {};
    }
    std::string_view token = authorization.substr(space);
    token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
    return token;
}

struct HttpApi::State {
    State(boost::asio::io_context& i, const Router& r, Authenticator a, AdmissionOptions options,
          runtime::Clock& clock, observe::Metrics* m, HttpApi::Refusal w)
        : io(i), router(r), authenticate(std::move(a)), admission(options, clock), refusal(std::move(w)) {
        auto rejected =
            observe::CounterOf(m, "cogs_api_rejected_total",
                               "Requests refused before routing, by reason: overload, system_overload, "
                               "rate_limited, project_overload, unauthenticated (and "
                               "project_workflows, refused by the route).");
        for (std::string_view reason : {"overload", "system_overload", "rate_limited", "project_overload"}) {
            rejected_by[std::string(reason)] = rejected.With({{"reason", std::string(reason)}});
        }
        rejected_unauthenticated = rejected.With({{"reason", "unauthenticated"}});
    }
    // A refusal, counted and answered.
    void Refuse(const cloud::Refusal& r, const http::Respond& respond) {
        if (auto it = rejected_by.find(std::string(r.reason)); it != rejected_by.end()) it->second.Inc();
        respond(RefusalAnswer(r));
    }
    boost::asio::io_context& io;
    const Router& router;
    Authenticator authenticate;
    Admission admission;
    HttpApi::Refusal refusal;
    std::map<std::string, observe::Counter> rejected_by;
    HttpApi::Auditor auditor;
    HttpApi::Face face;
    HttpApi::Static statics;
    observe::Counter rejected_unauthenticated;
};

HttpApi::HttpApi(boost::asio::io_context& io, const Router& router, Authenticator authenticate,
                 AdmissionOptions admission, runtime::Clock& clock, observe::Metrics* metrics,
                 Refusal writable)
    : state_(std::make_shared<State>(io, router, std::move(authenticate), admission, clock, metrics,
                                     std::move(writable))) {
    if (metrics != nullptr) {
        // Sampled at a scrape, which cogsd renders on the io thread, where the counts live.
        auto inflight = observe::GaugeOf(metrics, "cogs_api_inflight", "API requests being served, by lane.");
        metrics->OnCollect([weak = std::weak_ptr<State>(state_), system = inflight.With({{"lane", "system"}}),
                            tenant = inflight.With({{"lane", "tenant"}})]() mutable {
            auto state = weak.lock();
            if (!state) return;
            system.Set(static_cast<double>(state->admission.inflight(Lane::kSystem)));
            tenant.Set(static_cast<double>(state->admission.inflight(Lane::kTenant)));
        });
    }
}

void HttpApi::SetAuditor(Auditor auditor) { state_->auditor = std::move(auditor); }

void HttpApi::SetFace(Face face) { state_->face = std::move(face); }

void HttpApi::SetStatic(Static files) { state_->statics = std::move(files); }

http::Handler HttpApi::Handler() {
    return [state = state_](http::Request req, http::Respond respond) {
        const std::string path = req.Path();
        // The API's span: a child of the caller's, or the root of a new trace.
        const auto parent = observe::ParseTraceparent(req.Header("traceparent"));
        const std::string traceparent =
            (parent ? parent->Child() : observe::TraceContext::New()).ToTraceparent();
        const std::string resource_id = ResourceIdOf(PathSegments(path));
        observe::LogScope scope({observe::TraceIdOf(traceparent), "", resource_id});
        respond = Traced(std::move(respond), traceparent, req.method, path, resource_id);
        if (state->statics.owns && state->statics.owns(path)) {
            // Anonymous files: admitted under the client's address, answered at once.
            if (auto full = state->admission.CheckLane(Lane::kTenant)) {
                return state->Refuse(*full, respond);
            }
            auto admitted = state->admission.AdmitTenant("anonymous " + req.peer_address, "", false);
            if (!admitted) {
                return state->Refuse(admitted.error(), respond);
            }
            return respond(state->statics.serve(req));
        }
        const bool face = state->face.owns && state->face.owns(path);
        if (face) {
            respond = [state, path, respond = std::move(respond)](http::Response r) {
                respond(r.status >= 400 ? state->face.reshape(path, std::move(r)) : std::move(r));
            };
        }
        if (req.method == "GET" && path.starts_with("/v1/")) {
            // Conditional reads (docs/api.md "Polling"): every 200 carries the entity tag of its body,
            // and a poll that names it is answered 304, empty: a console polling an unchanged list of
            // a thousand servers gets no body to parse. (A file download streams: no tag.)
            respond = [if_none_match = req.Header("if-none-match"),
                       respond = std::move(respond)](http::Response r) {
                if (r.status == 200 && !r.body_file) {
                    std::string tag = http::EntityTag(r.body);
                    if (!if_none_match.empty() && http::NoneMatchHits(if_none_match, tag)) {
                        r.status = 304;
                        r.body.clear();
                    }
                    r.headers.emplace_back("etag", std::move(tag));
                    r.headers.emplace_back("cache-control", "private, no-cache");
                }
                respond(std::move(r));
            };
        }
        // The audit entry of a change: who asked is filled in once the token is known.
        std::shared_ptr<store::AuditRecord> audit;
        if (state->auditor && (path.starts_with("/v1/") || face) &&
            (req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
             req.method == "DELETE")) {
            audit = std::make_shared<store::AuditRecord>();
            audit->method = req.method;
            audit->path = path;
            audit->trace_id = observe::TraceIdOf(traceparent);
            audit->peer = req.peer_address;
            respond = [state, audit, respond = std::move(respond)](http::Response r) {
                state->auditor(std::move(*audit), r);
                respond(std::move(r));
            };
        }
        const std::optional<Error> refusal = state->refusal ? state->refusal() : std::nullopt;
        if (path == "/healthz") {
            http::Response r;
            r.body = !refusal ? R"({"status":"ok"})"
                     : refusal->code == ErrorCode::kNoSpace
                         ? R"({"status":"degraded","store":"read-only: disk full"})"
                         : R"({"status":"degraded","store":"read-only: database unreachable"})";
            return respond(std::move(r));
        }
        if (!face && !path.starts_with("/v1/") && path != "/v1") {
            return respond(
                wire::ApiError(Error(ErrorCode::kNotFound, "no route " + req.method + " " + path)));
        }
        const Lane lane = LaneOf(req.method, path);
        if (auto full = state->admission.CheckLane(lane)) {
            return state->Refuse(*full, respond);
        }
        const bool anonymous = face && state->face.anonymous(req.method, path);
        const std::string auth = face ? state->face.token(req) : req.Header("authorization");
        Principal nobody;  // an anonymous request, admitted under the client's address
        nobody.token_id = "anonymous " + req.peer_address;
        auto who = anonymous ? Result<Principal>(std::move(nobody))
                             : state->authenticate(face ? std::string_view(auth) : BearerToken(auth));
        if (!who) {
            state->rejected_unauthenticated.Inc();
            http::Response r = wire::ApiError(Error(ErrorCode::kUnauthenticated, who.error().message));
            r.headers.emplace_back("www-authenticate", "Bearer");
            return respond(std::move(r));
        }
        if (audit && !anonymous) {
            audit->token_id = who->token_id;
            audit->project = who->project_id;
            audit->role = std::string(RoleName(who->role));
        }
        Admission::Ticket ticket;
        if (lane == Lane::kSystem) {
            ticket = state->admission.AdmitSystem();
        } else {
            auto admitted = state->admission.AdmitTenant(who->token_id, who->project_id, who->admin());
            if (!admitted) {
                return state->Refuse(admitted.error(), respond);
            }
            ticket = std::move(*admitted);
        }
        if (path == "/v1/log-levels") {
            // Operators only: a level change affects every tenant's requests.
            if (!who->admin()) {
                return respond(wire::ApiError(
                    Error(ErrorCode::kPermissionDenied, "only an admin may read or change log levels")));
            }
            http::Response r = observe::HandleLogLevels(req);
            if (req.method == "PUT" && r.status == 200) {
                observe::Log("api").info("log levels changed: {}", req.body);
            }
            return respond(std::move(r));
        }
        // A full disk: refuse a change before it touches anything (docs/api.md "A full disk").
        // Heartbeats renew leases in memory: they go on (their reports wait for the agent's resend).
        if (refusal && req.method != "GET" && req.method != "HEAD" &&
            !wire::IsLeaseRenewal(req.method, path)) {
            return respond(wire::ApiError(*refusal));
        }
        Call call;
        call.who = std::move(*who);
        // A replica's certificate vouches for the one its forwarded client showed; nobody else's does.
        call.peer_name = req.peer_name == "cogsd" ? req.Header("x-cogs-peer-name") : req.peer_name;
        call.method = req.method;
        call.path = path;
        for (auto& [k, v] : req.QueryParams()) {
            call.query[k] = v;
        }
        call.body = std::move(req.body);
        call.body_file = std::move(req.body_file);
        call.idempotency_key = req.Header("idempotency-key");
        call.traceparent = traceparent;
        if (face) call.headers = std::move(req.headers);
        // The places are given back when the answer goes out (or when every copy of `respond` is
        // dropped unanswered). Never inline: the handler may be mid-parse when the route answers at once.
        call.respond = [state, respond = std::move(respond),
                        ticket = std::make_shared<Admission::Ticket>(std::move(ticket))](
                           http::Response r) mutable {
            boost::asio::post(state->io, [respond = std::move(respond), ticket, r = std::move(r)]() mutable {
                ticket->Release();
                respond(std::move(r));
            });
        };
        if (face) return state->face.dispatch(std::move(call));
        state->router.Dispatch(std::move(call));
    };
}

}  // namespace cogs::cloud
