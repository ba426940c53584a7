// The server side of docs/service-protocol.md, for any ActionTarget (protocol.h).
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <memory>
#include <unordered_map>

#include "cogs/base/secret.h"
#include "cogs/observe/http_observe.h"
#include "cogs/observe/log.h"
#include "cogs/observe/trace.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/wire/answer.h"

namespace cogs::services::kit {
namespace {

using wire::ServiceError;
using wire::ServiceMethodNotAllowed;
using workflow::ActionReply;

constexpr std::string_view kActionsPrefix = "/v1/actions/";
constexpr std::string_view kBearer = "Bearer ";
constexpr auto kDefaultBudget = std::chrono::seconds(30);  // when a caller sends no X-Cogs-Deadline-Ms

http::Response JsonResponse(int status, std::string body) {
    http::Response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

// 200 {"output": ...}, 202 {"accepted": true}, or the error.
http::Response ReplyResponse(const Result<ActionReply>& reply) {
    if (!reply) {
        return ServiceError(reply.error());
    }
    if (reply->accepted) {
        return JsonResponse(202, R"({"accepted":true})");
    }
    // The output is JSON text made by the service: embed it as it is.
    return JsonResponse(200,
                        "{\"output\":" + (reply->output.empty() ? std::string("null") : reply->output) + "}");
}

// Parses the remaining budget in milliseconds; nullopt if malformed.
std::optional<SteadyTime> DeadlineFrom(const std::string& header, SteadyTime now) {
    if (header.empty()) {
        return now + kDefaultBudget;
    }
    int64_t ms = 0;
    auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), ms);
    if (ec != std::errc() || end != header.data() + header.size() || ms < 0) {
        return std::nullopt;
    }
    return now + std::chrono::milliseconds(ms);
}

ActionTarget::Callback Responder(http::Respond respond) {
    return [respond = std::move(respond)](Result<ActionReply> reply) { respond(ReplyResponse(reply)); };
}

// ---- observing action calls: the service-side series and the log line (protocol.h) ----

enum class Outcome { kOk, kAccepted, kReplayed, kError, kRefused };
constexpr std::array<std::string_view, 5> kOutcomeNames = {"ok", "accepted", "replayed", "error", "refused"};
constexpr size_t kMaxActionLabels = 64;

Outcome OutcomeOf(const Result<ActionReply>& reply) {
    if (!reply) {
        return reply.error().retryable ? Outcome::kError : Outcome::kRefused;
    }
    return reply->accepted ? Outcome::kAccepted : Outcome::kOk;
}

// The handles of one service's action series, looked up once per action name. Lives as long as the
// handler or the last call still held by the target; used on the handler's (single) io thread only.
class ActionSeries {
public:
    struct Handles {
        std::array<observe::Counter, kOutcomeNames.size()> calls;
        observe::Histogram duration;
    };

    ActionSeries(std::string service, observe::Metrics* metrics)
        : service_(std::move(service)),
          calls_(observe::CounterOf(metrics, "cogs_service_actions_total",
                                    "Action calls answered by the service, by action and outcome.")),
          duration_(observe::HistogramOf(metrics, "cogs_service_action_duration_seconds",
                                         "Action calls on the service's side: request received to answer.")) {
    }

    const std::string& service() const { return service_; }

    // Node-based map: the reference stays valid as more actions are added.
    const Handles& For(const std::string& action) {
        if (auto it = by_action_.find(action); it != by_action_.end()) {
            return it->second;
        }
        // Only unknown actions can make the set grow past what the service performs: cap them.
        const std::string label = by_action_.size() < kMaxActionLabels ? action : std::string("other");
        if (auto it = by_action_.find(label); it != by_action_.end()) {
            return it->second;
        }
        Handles h;
        for (size_t i = 0; i < kOutcomeNames.size(); ++i) {
            h.calls[i] = calls_.With(
                {{"service", service_}, {"action", label}, {"outcome", std::string(kOutcomeNames[i])}});
        }
        h.duration = duration_.With({{"service", service_}, {"action", label}});
        return by_action_.emplace(label, std::move(h)).first->second;
    }

private:
    std::string service_;
    observe::CounterFamily calls_;
    observe::HistogramFamily duration_;
    std::unordered_map<std::string, Handles> by_action_;
};

// One action call from receipt to answer. The log line is written when the answer goes out, or,
// for a call the target never answers (a hang, a lost reply), when the target lets go of it.
class ObservedCall {
public:
    ObservedCall(std::shared_ptr<ActionSeries> series, const http::Request& req, std::string action,
                 std::string key)
        : series_(std::move(series)),
          handles_(&series_->For(action)),
          action_(std::move(action)),
          key_(std::move(key)),
          trace_id_(observe::TraceIdOf(req.Header("traceparent"))),
          start_(SteadyClock::now()) {}

    ObservedCall(const ObservedCall&) = delete;
    ObservedCall& operator=(const ObservedCall&) = delete;

    ~ObservedCall() {
        if (!answered_ && !replayed_) {
            Log("unanswered", SteadyClock::now() - start_);
        }
    }

    void set_resource_id(std::string id) { resource_id_ = std::move(id); }
    void set_replayed() { replayed_ = true; }
    const std::string& key() const { return key_; }

    void Answered(const Result<ActionReply>& reply) {
        answered_ = true;
        const Duration took = SteadyClock::now() - start_;
        const Outcome outcome = replayed_ ? Outcome::kReplayed : OutcomeOf(reply);
        handles_->calls[static_cast<size_t>(outcome)].Inc();
        handles_->duration.Observe(std::chrono::duration<double>(took).count());
        if (!replayed_) {
            Log(kOutcomeNames[static_cast<size_t>(outcome)], took);
        }
    }

private:
    void Log(std::string_view outcome, Duration took) const {
        spdlog::logger& log = observe::Log(series_->service());
        if (!log.should_log(spdlog::level::info)) {
            return;
        }
        const size_t slash = key_.find('/');
        observe::LogScope scope(observe::LogContext{
            trace_id_, slash == std::string::npos ? "" : key_.substr(0, slash), resource_id_});
        log.info("action={} outcome={} duration_ms={:.3f} key={}", action_, outcome,
                 std::chrono::duration<double, std::milli>(took).count(), key_);
    }

    std::shared_ptr<ActionSeries> series_;
    const ActionSeries::Handles* handles_;
    std::string action_;
    std::string key_;
    std::string trace_id_;
    std::string resource_id_;
    SteadyTime start_;
    bool replayed_ = false;
    bool answered_ = false;
};

// Answers `reply`, counted and logged as the end of `call`.
void Finish(const std::shared_ptr<ObservedCall>& call, const http::Respond& respond,
            const Result<ActionReply>& reply) {
    call->Answered(reply);
    respond(ReplyResponse(reply));
}

void HandleAction(ActionTarget& target, const std::shared_ptr<ActionSeries>& series, http::Request req,
                  http::Respond respond) {
    std::string action = req.Path().substr(kActionsPrefix.size());
    if (action.empty() || action.find('/') != std::string::npos) {
        respond(ServiceError(Error(ErrorCode::kNotFound, "no route " + req.method + " " + req.Path())));
        return;
    }
    if (req.method != "POST") {
        respond(ServiceMethodNotAllowed(req.method, "POST"));
        return;
    }
    auto call = std::make_shared<ObservedCall>(series, req, action, req.Header("idempotency-key"));
    if (call->key().empty()) {
        Finish(call, respond, MakeError(ErrorCode::kInvalidArgument, "missing header Idempotency-Key"));
        return;
    }
    auto deadline = DeadlineFrom(req.Header("x-cogs-deadline-ms"), SteadyClock::now());
    if (!deadline) {
        Finish(call, respond,
               MakeError(ErrorCode::kInvalidArgument,
                         "header X-Cogs-Deadline-Ms must be a non-negative integer (milliseconds)"));
        return;
    }
    if (req.body.empty()) {
        req.body = "{}";
    }
    auto input = wire::Input::ParseAny(req.body, "body");
    if (!input) {
        Finish(call, respond, MakeError(std::move(input).error()));
        return;
    }
    call->set_resource_id(wire::Str(input->object(), "id"));
    if (target.IsRecorded(call->key())) {
        call->set_replayed();
    }
    std::string key = call->key();
    target.Handle(std::move(action), std::move(key), std::move(req.body), *deadline,
                  [call = std::move(call), respond = std::move(respond)](Result<ActionReply> reply) {
                      Finish(call, respond, reply);
                  });
}

void HandleStatus(ActionTarget& target, const http::Request& req, http::Respond respond) {
    if (req.method != "GET") {
        respond(ServiceMethodNotAllowed(req.method, "GET"));
        return;
    }
    std::string key = req.Query("key");
    if (key.empty()) {
        respond(ServiceError(Error(ErrorCode::kInvalidArgument, "missing query parameter key")));
        return;
    }
    target.Status(std::move(key), Responder(std::move(respond)));
}

// Only the token's hash is held, so a memory dump does not give the token away; comparing hashes in
// constant time leaks nothing about how much of a guess was right.
bool Authorized(const http::Request& req, const std::vector<std::string>& token_sha256) {
    const std::string header = req.Header("authorization");
    if (header.size() <= kBearer.size() || std::string_view(header).substr(0, kBearer.size()) != kBearer) {
        return false;
    }
    const std::string hash = Sha256Hex(std::string_view(header).substr(kBearer.size()));
    bool match = false;
    for (const std::string& want : token_sha256) {
        match = ConstantTimeEquals(hash, want) || match;  // every one compared: no early exit
    }
    return match;
}

void Route(ActionTarget& target, const HandlerAccess& access, const std::shared_ptr<ActionSeries>& series,
           http::Request req, http::Respond respond) {
    const std::string path = req.Path();
    if (path == "/healthz") {
        if (req.method != "GET") {
            respond(ServiceMethodNotAllowed(req.method, "GET"));
            return;
        }
        respond(JsonResponse(200, R"({"status":"ok"})"));
        return;
    }
    if (!access.token_sha256.empty() && !Authorized(req, access.token_sha256)) {
        http::Response r =
            ServiceError(Error(ErrorCode::kUnauthenticated,
                               "missing or wrong bearer token (header Authorization: Bearer <token>)"));
        r.headers.emplace_back("www-authenticate", "Bearer");
        respond(std::move(r));
        return;
    }
    if (path == "/v1/actions/status") {
        HandleStatus(target, req, std::move(respond));
    } else if (path.starts_with(kActionsPrefix)) {
        HandleAction(target, series, std::move(req), std::move(respond));
    } else if (path == "/v1/log-levels") {
        respond(observe::HandleLogLevels(req));
    } else if (!access.test_routes && (path == "/v1/faults" || path == "/v1/ledger")) {
        // Test routes exist only in a process started with --test-routes.
        respond(ServiceError(Error(ErrorCode::kNotFound, "no route " + req.method + " " + path)));
    } else if (path == "/v1/faults") {
        if (req.method == "PUT") {
            auto faults = ParseFaultConfig(req.body);
            if (!faults) {
                respond(ServiceError(faults.error()));
                return;
            }
            target.SetFaults(std::move(*faults));
            respond(JsonResponse(200, ToJson(target.faults())));
        } else if (req.method == "GET") {
            respond(JsonResponse(200, ToJson(target.faults())));
        } else {
            respond(ServiceMethodNotAllowed(req.method, "GET, PUT"));
        }
    } else if (path == "/v1/ledger" && req.method == "GET") {
        respond(JsonResponse(200, target.LedgerJson()));
    } else if (path == "/v1/stats" && req.method == "GET") {
        respond(JsonResponse(200, target.StatsJson()));
    } else if (req.method == "GET") {
        if (auto r = target.Get(req)) {
            respond(std::move(*r));
        } else {
            respond(ServiceError(Error(ErrorCode::kNotFound, "no route GET " + path)));
        }
    } else if (req.method != "POST" || !target.Post(req, respond)) {
        respond(ServiceError(Error(ErrorCode::kNotFound, "no route " + req.method + " " + path)));
    }
}

}  // namespace

http::Handler MakeActionHttpHandler(ActionTarget& target, HandlerAccess access, observe::Metrics* metrics) {
    auto series = std::make_shared<ActionSeries>(std::string(target.name()), metrics);
    http::Handler handler = [&target, access = std::move(access), series = std::move(series)](
                                http::Request req, http::Respond respond) {
        Route(target, access, series, std::move(req), std::move(respond));
    };
    if (metrics == nullptr) {
        return handler;
    }
    return observe::Instrument(std::move(handler), metrics);
}

}  // namespace cogs::services::kit
