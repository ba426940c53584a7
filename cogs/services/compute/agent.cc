#include "cogs/services/compute/agent.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>

#include "cogs/http/client.h"
#include "cogs/observe/log.h"
#include "cogs/oci/lease_file.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/internal/compute_domain.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute {
namespace {

namespace json = wire::json;

// Failures are logged on the first of a run and then at 2, 4, 8, ... so that a thousand hosts
// facing a control plane that is down do not flood the log, yet a long outage stays visible.
bool WorthLogging(uint64_t consecutive) { return (consecutive & (consecutive - 1)) == 0; }

// The agent's lines: component "agent" (its level set apart from the service's), the host as the
// resource they are about.
spdlog::logger& AgentLog() { return observe::Log("agent"); }

// Whether the failure says "try another replica": no answer at all, or a gateway's or an unavailable
// replica's (a follower without a leader, a leader without its lease, a replica starting up).
bool Failover(const Result<http::Response>& r) {
    return !r || r->status == 502 || r->status == 503 || r->status == 504;
}

// A 503 {"code":"no_leader"}: a replica that found nobody leading (agent.h: extends a held lease).
bool NoLeader(const Result<http::Response>& r) {
    if (!r || r->status != 503) {
        return false;
    }
    const json::object body = wire::ParseObject(r->body);
    const json::value* code = body.if_contains("code");
    return code != nullptr && code->is_string() && code->as_string() == "no_leader";
}

std::string Describe(const Result<http::Response>& r) {
    if (!r) {
        return r.error().ToString();
    }
    std::string body = r->body.substr(0, 200);
    return "HTTP " + std::to_string(r->status) + (body.empty() ? "" : ": " + body);
}

}  // namespace

Result<std::pair<std::string, uint16_t>> ParseHttpUrl(const std::string& url) {
    auto bad = [&] {
        return MakeError(ErrorCode::kInvalidArgument,
                         "control url: must be http://HOST:PORT or https://HOST:PORT, got '" + url + "'");
    };
    const size_t scheme = url.starts_with("http://") ? 7 : url.starts_with("https://") ? 8 : 0;
    if (scheme == 0) {
        return bad();
    }
    std::string rest = url.substr(scheme);
    if (!rest.empty() && rest.back() == '/') {
        rest.pop_back();
    }
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos) {
        return bad();
    }
    std::string host = rest.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
        return bad();
    }
    const unsigned long p = std::stoul(port);
    if (p == 0 || p > 65535) {
        return bad();
    }
    return std::make_pair(host, static_cast<uint16_t>(p));
}

class HostAgent::Impl : public std::enable_shared_from_this<Impl> {
public:
    Impl(boost::asio::io_context& io, AgentOptions options,
         std::vector<std::unique_ptr<http::Client>> clients)
        : io_(io),
          options_(std::move(options)),
          clock_(options_.clock != nullptr ? *options_.clock : runtime::SystemClock()),
          clients_(std::move(clients)) {
        batching_ = options_.batch_renewals;
        beat_timer_ = clock_.NewTimer(io_);
        pace_ = options_.heartbeat_interval > Duration::zero()
                    ? options_.heartbeat_interval
                    : std::chrono::duration_cast<Duration>(options_.lease_ttl / 3);
        for (const HostSpec& spec : options_.hosts) {
            auto h = std::make_unique<Host>(clock_, io_);
            h->name = spec.name;
            json::object body;
            body["url"] = options_.advertise_url;
            internal::AddHostFields(spec, body);
            h->body = json::serialize(body);
            h->target = "/v1/hosts/" + http::UrlEncode(spec.name);
            h->backoff = options_.min_backoff;
            h->ttl = options_.lease_ttl;
            h->fenced = options_.link != nullptr;  // no lease yet
            if (!options_.lease_dir.empty()) {
                h->lease_file = options_.lease_dir + "/" + spec.name;
            }
            hosts_.push_back(std::move(h));
        }
    }

    void StartAll() {
        for (auto& h : hosts_) {
            boost::asio::post(io_, [self = shared_from_this(), host = h.get()] {
                if (!self->stopped_) {
                    self->Register(*host);
                }
            });
        }
    }

    void Stop() {
        if (stopped_) {
            return;
        }
        stopped_ = true;
        beat_timer_->Cancel();
        for (auto& h : hosts_) {
            h->timer->Cancel();
            h->lease_timer->Cancel();
        }
        // Outstanding requests complete with kCancelled on io's next turn; they find stopped_ set.
        clients_.clear();
    }

    const AgentStats& stats() const { return stats_; }
    size_t registered() const {
        size_t n = 0;
        for (const auto& h : hosts_) {
            n += h->registered ? 1 : 0;
        }
        return n;
    }
    size_t fenced() const {
        size_t n = 0;
        for (const auto& h : hosts_) {
            n += h->fenced ? 1 : 0;
        }
        return n;
    }
    const std::string& current_url() const { return options_.control_urls[current_]; }
    bool batching() const { return batching_; }

private:
    struct Host {
        Host(runtime::Clock& clock, boost::asio::io_context& io)
            : timer(clock.NewTimer(io)), lease_timer(clock.NewTimer(io)) {}
        std::string name;
        std::string body;                       // the registration
        std::string target;                     // /v1/hosts/{name}
        std::unique_ptr<runtime::Timer> timer;  // the next registration attempt or heartbeat
        bool registered = false;
        Duration backoff{};        // of the next registration attempt, or of a failed heartbeat's retry
        uint64_t failures = 0;     // consecutive, of the current phase
        uint64_t unavailable = 0;  // consecutive heartbeats that failed over (several urls)
        SteadyTime next_heartbeat{};
        // The lease (with a link): held until lease_until; ttl is the control plane's last word.
        std::unique_ptr<runtime::Timer> lease_timer;
        SteadyTime last_acked_send{};
        SteadyTime last_renewal{};     // the send time of the last request answered 2xx
        bool no_leader_spent = false;  // no_leader_limit passed (logged once)
        SteadyTime lease_until{};
        Duration ttl{};
        Duration interval{};  // the pace the control plane asks for (renew_interval_ms); 0: none yet
        bool fenced = false;
        bool ever_leased = false;
        bool beat_armed = false;  // batching: its next heartbeat is in beats_ at beat_at
        SteadyTime beat_at{};
        SteadyTime fenced_since{};
        std::string lease_file;      // the watchdog's ("" none)
        bool lease_failing = false;  // the last write failed (logged once)
    };

    // A request for host `h`, with its own token (AgentOptions::host_tokens), else the shared one.
    http::Request MakeRequest(const Host& h, std::string method, std::string target, std::string body) const {
        http::Request r;
        r.method = std::move(method);
        r.target = std::move(target);
        r.body = std::move(body);
        r.headers.emplace_back("content-type", "application/json");
        auto own = options_.host_tokens.find(h.name);
        const std::string& token = own != options_.host_tokens.end() ? own->second : options_.token;
        if (!token.empty()) {
            r.headers.emplace_back("authorization", "Bearer " + token);
        }
        return r;
    }

    template <typename F>
    void After(Host& h, SteadyTime when, F next) {
        h.timer->Arm(when, [self = shared_from_this(), host = &h, next] {
            if (!self->stopped_) {
                (self.get()->*next)(*host);
            }
        });
    }

    // The exchange's deadline is the machine's: http::Client times out on real time, whatever clock
    // the agent's timers run on.
    // With several control planes, one that hangs (a frozen replica) must not use up the lease
    // before the next is tried: half a heartbeat at most, then the next url.
    SteadyTime RequestDeadline() const {
        Duration timeout = options_.request_timeout;
        if (options_.control_urls.size() > 1) {
            timeout = std::min<Duration>(timeout, pace_ / 2);
        }
        return SteadyClock::now() + timeout;
    }

    // Sends `request` for host h to the current control url; `done(h, answer, send time)` on io
    // unless stopped by then. A failure that calls for another replica moves to the next url.
    void Send(Host& h, http::Request request,
              void (Impl::*done)(Host&, const Result<http::Response>&, SteadyTime)) {
        const SteadyTime sent = clock_.Now();
        const size_t at = current_;
        clients_[at]->Send(std::move(request), RequestDeadline(),
                           [self = shared_from_this(), host = &h, sent, at, done](Result<http::Response> r) {
                               if (self->stopped_) {
                                   return;
                               }
                               self->Answered(at, r);
                               (self.get()->*done)(*host, r, sent);
                           });
    }

    // Round-robin over the control urls (agent.h): only a failure of the current one moves it.
    void Answered(size_t at, const Result<http::Response>& r) {
        if (!Failover(r)) {
            if (at == current_) {
                failovers_in_a_row_ = 0;
            }
            return;
        }
        if (clients_.size() < 2 || at != current_) {
            return;
        }
        current_ = (current_ + 1) % clients_.size();
        ++stats_.failovers;
        ++failovers_in_a_row_;
        if (WorthLogging(failovers_in_a_row_)) {
            AgentLog().warn("compute agent: control plane {} failed ({}): trying {} ({} moves in a row)",
                            options_.control_urls[at], Describe(r), options_.control_urls[current_],
                            failovers_in_a_row_);
        }
    }

    // At most half the connections carry registrations, the others are left to renewals: ten
    // thousand hosts registering at once must not queue the heartbeats of those already registered
    // behind them (their leases would lapse). The rest wait here, in order.
    void Register(Host& h) {
        if (registering_ >= MaxRegistering()) {
            register_queue_.push_back(&h);
            return;
        }
        ++registering_;
        ++stats_.registrations_sent;
        Send(h, MakeRequest(h, "PUT", h.target, h.body), &Impl::Registered);
    }

    size_t MaxRegistering() const { return std::max<size_t>(1, options_.max_connections / 2); }

    void Registered(Host& h, const Result<http::Response>& r, SteadyTime sent) {
        --registering_;
        if (!register_queue_.empty()) {
            Host* next = register_queue_.front();
            register_queue_.pop_front();
            Register(*next);
        }
        const observe::LogScope scope(observe::LogContext{"", "", h.name});
        if (r && r->status >= 200 && r->status < 300) {
            ++stats_.registrations;
            Renewed(h, sent, r->body, /*acks=*/false);
            if (h.failures > 0) {
                AgentLog().info("compute agent: host {} registered after {} failed attempts", h.name,
                                h.failures);
            } else {
                AgentLog().debug("compute agent: host {} registered", h.name);
            }
            h.registered = true;
            h.failures = 0;
            h.unavailable = 0;
            h.backoff = options_.min_backoff;
            h.next_heartbeat = NextBeat(h);
            ScheduleBeat(h, h.next_heartbeat);
            return;
        }
        ++stats_.registration_failures;
        ++h.failures;
        if (NoLeader(r)) {
            ++stats_.no_leader;
            Extended(h, sent);
        }
        const int status = r ? r->status : 0;
        const bool definitive =
            status >= 400 && status < 500 && status != 401 && status != 403 && status != 408 && status != 429;
        Duration wait;
        if (definitive) {
            AgentLog().error("compute agent: control plane refuses host {}: {} (retrying every {} ms)",
                             h.name, Describe(r),
                             std::chrono::duration_cast<Millis>(options_.slow_retry).count());
            wait = options_.slow_retry;
        } else {
            if (WorthLogging(h.failures)) {
                AgentLog().warn("compute agent: registering host {} failed ({} in a row): {}", h.name,
                                h.failures, Describe(r));
            }
            wait = h.backoff;
            h.backoff = std::min<Duration>(h.backoff * 2, options_.max_backoff);
        }
        After(h, clock_.Now() + wait, &Impl::Register);
    }

    // The control plane's pace (renew_interval_ms), capped by heartbeat_interval if set, and at
    // least three renewals per lease TTL (a control plane with a short TTL is not left to lapse
    // between two heartbeats of a longer interval).
    Duration Interval(const Host& h) const {
        const auto third = std::chrono::duration_cast<Duration>(h.ttl / 3);
        Duration want = h.interval > Duration::zero() ? std::min(h.interval, third) : third;
        if (options_.heartbeat_interval > Duration::zero()) {
            want = std::min(want, options_.heartbeat_interval);
        }
        return std::max<Duration>(want, std::chrono::milliseconds(1));
    }

    // When h's next heartbeat goes. Batching, it is rounded down to a tenth of the interval, so that
    // hosts registered at different moments fall into at most ten batches per interval.
    SteadyTime NextBeat(const Host& h) const {
        const Duration interval = Interval(h);
        const SteadyTime at = clock_.Now() + interval;
        if (!batching_) {
            return at;
        }
        const Duration grid = std::max<Duration>(interval / 10, std::chrono::milliseconds(1));
        return SteadyTime((at.time_since_epoch() / grid) * grid);
    }

    void Heartbeat(Host& h) {
        ++stats_.heartbeats_sent;
        h.next_heartbeat = NextBeat(h);
        if (batching_) {
            return Enqueue(h);
        }
        SendHeartbeat(h);
    }

    void SendHeartbeat(Host& h) {
        std::string body = options_.link != nullptr ? options_.link->HeartbeatBody(h.name) : "{}";
        Send(h, MakeRequest(h, "POST", h.target + "/heartbeat", std::move(body)), &Impl::HeartbeatDone);
    }

    // When h's next heartbeat goes: its own timer, or, batching, one timer for every host (so that
    // those due together leave together, whatever order timers fire in).
    void ScheduleBeat(Host& h, SteadyTime when) {
        if (!batching_) {
            return After(h, when, &Impl::Heartbeat);
        }
        h.beat_armed = true;
        h.beat_at = when;
        beats_.emplace(when, &h);
        if (!beat_armed_at_ || when < *beat_armed_at_) {
            ArmBeat(when);
        }
    }

    void ArmBeat(SteadyTime when) {
        beat_armed_at_ = when;
        beat_timer_->Arm(when, [self = shared_from_this()] {
            if (!self->stopped_) {
                self->Beat();
            }
        });
    }

    // The heartbeats due now, into one flush; an entry a later ScheduleBeat replaced is skipped.
    void Beat() {
        beat_armed_at_.reset();
        const SteadyTime now = clock_.Now();
        while (!beats_.empty() && beats_.begin()->first <= now) {
            const auto [at, h] = *beats_.begin();
            beats_.erase(beats_.begin());
            if (h->beat_armed && h->beat_at == at) {
                h->beat_armed = false;
                Heartbeat(*h);
            }
        }
        if (!beats_.empty()) {
            ArmBeat(beats_.begin()->first);
        }
    }

    // Batched renewals (agent.h): the hosts whose heartbeat is due in this turn of io go together.
    void Enqueue(Host& h) {
        pending_.push_back(&h);
        if (!flush_posted_) {
            flush_posted_ = true;
            boost::asio::post(io_, [self = shared_from_this()] {
                if (!self->stopped_) {
                    self->Flush();
                }
            });
        }
    }

    void Flush() {
        flush_posted_ = false;
        std::vector<Host*> due = std::move(pending_);
        pending_.clear();
        std::vector<Host*> chunk;
        json::array entries;
        size_t bytes = 0;
        for (Host* h : due) {
            json::object entry = options_.link != nullptr
                                     ? wire::ParseObject(options_.link->HeartbeatBody(h->name))
                                     : json::object{};
            entry["name"] = h->name;
            if (auto own = options_.host_tokens.find(h->name);
                own != options_.host_tokens.end() && own->second != options_.token) {
                entry["token"] = own->second;
            }
            const size_t size = json::serialize(entry).size() + 1;
            if (!chunk.empty() && (chunk.size() == kMaxBatch || bytes + size > kMaxBatchBytes)) {
                SendBatch(std::move(chunk), std::move(entries));
                chunk = {};
                entries = {};
                bytes = 0;
            }
            chunk.push_back(h);
            entries.push_back(std::move(entry));
            bytes += size;
        }
        if (!chunk.empty()) {
            SendBatch(std::move(chunk), std::move(entries));
        }
    }

    void SendBatch(std::vector<Host*> chunk, json::array entries) {
        // The request's own token: the agent's, else the first host's (its entry then needs none).
        http::Request r;
        r.method = "POST";
        r.target = std::string(kBatchTarget);
        r.headers.emplace_back("content-type", "application/json");
        std::string bearer = options_.token;
        if (bearer.empty() && entries.front().as_object().contains("token")) {
            bearer = std::string(entries.front().as_object().at("token").as_string());
            entries.front().as_object().erase("token");
        }
        if (!bearer.empty()) {
            r.headers.emplace_back("authorization", "Bearer " + bearer);
        }
        r.body = json::serialize(json::object{{"hosts", std::move(entries)}});
        ++stats_.batches_sent;
        const SteadyTime sent = clock_.Now();
        const size_t at = current_;
        clients_[at]->Send(
            std::move(r), RequestDeadline(),
            [self = shared_from_this(), chunk = std::move(chunk), sent, at](Result<http::Response> r) {
                if (self->stopped_) {
                    return;
                }
                self->Answered(at, r);
                self->BatchDone(chunk, r, sent);
            });
    }

    // Each host of the batch gets its own part of the answer, as if it had been its own heartbeat's.
    void BatchDone(const std::vector<Host*>& chunk, const Result<http::Response>& r, SteadyTime sent) {
        const bool ok = r && r->status >= 200 && r->status < 300;
        const json::object answer = ok ? wire::ParseObject(r->body) : json::object{};
        // No such route (404), or an answer that is no batch's: a control plane from before batched
        // renewals. One heartbeat per host from now on.
        if (r && (r->status == 404 || (ok && !answer.contains("hosts")))) {
            if (batching_) {
                batching_ = false;
                AgentLog().warn(
                    "compute agent: the control plane does not take batched renewals ({} answered {}): one "
                    "heartbeat per host",
                    kBatchTarget, r->status);
            }
            for (Host* h : chunk) {
                SendHeartbeat(*h);
            }
            return;
        }
        if (!ok) {
            for (Host* h : chunk) {
                HeartbeatDone(*h, r, sent);
            }
            return;
        }
        std::map<std::string, const json::object*, std::less<>> parts;
        if (const json::value* hosts = answer.if_contains("hosts"); hosts != nullptr && hosts->is_array()) {
            for (const json::value& v : hosts->get_array()) {
                if (v.is_object()) {
                    parts[wire::Str(v.get_object(), "name")] = &v.get_object();
                }
            }
        }
        for (Host* h : chunk) {
            http::Response own;
            auto part = parts.find(h->name);
            if (part == parts.end()) {
                own.status = 502;
                own.body = R"({"code":"internal","message":"the batch answer has no entry for this host"})";
            } else if (const json::value* error = part->second->if_contains("error");
                       error != nullptr && error->is_object()) {
                own.status = static_cast<int>(wire::Int(error->get_object(), "status"));
                if (own.status < 400) {
                    own.status = 500;
                }
                own.body = json::serialize(*error);
            } else {
                json::object body = *part->second;
                if (const json::value* pace = answer.if_contains("renew_interval_ms")) {
                    body["renew_interval_ms"] = *pace;
                }
                own.status = 200;
                own.body = json::serialize(body);
            }
            HeartbeatDone(*h, Result<http::Response>(std::move(own)), sent);
        }
    }

    void HeartbeatDone(Host& h, const Result<http::Response>& r, SteadyTime sent) {
        const observe::LogScope scope(observe::LogContext{"", "", h.name});
        if (r && r->status == 404) {
            ++stats_.heartbeat_failures;
            ++stats_.reregistrations;
            AgentLog().warn("compute agent: control plane forgot host {}: registering again", h.name);
            h.registered = false;
            h.failures = 0;
            h.backoff = options_.min_backoff;
            Register(h);
            return;
        }
        if (r && r->status >= 200 && r->status < 300) {
            ++stats_.heartbeats;
            Renewed(h, sent, r->body, /*acks=*/true);
            if (h.failures > 0) {
                AgentLog().info("compute agent: heartbeats of host {} answered again after {} failures",
                                h.name, h.failures);
            }
            h.failures = 0;
            h.unavailable = 0;
            h.backoff = options_.min_backoff;
        } else {
            ++stats_.heartbeat_failures;
            ++h.failures;
            const bool no_leader = NoLeader(r);
            if (no_leader) {
                ++stats_.no_leader;
                Extended(h, sent);
            }
            if (WorthLogging(h.failures)) {
                if (no_leader) {
                    AgentLog().info(
                        "compute agent: heartbeat of host {} answered no_leader ({} in a row): the control "
                        "plane is between leaders; the host keeps its lease meanwhile",
                        h.name, h.failures);
                } else {
                    AgentLog().warn("compute agent: heartbeat of host {} failed ({} in a row): {}", h.name,
                                    h.failures, Describe(r));
                }
            }
            if (clients_.size() > 1 && Failover(r)) {
                // Another replica may answer: the next url at once; after a whole round of failures,
                // a short backoff (agent.h). A lease must not run out while one replica could renew it.
                if (++h.unavailable % clients_.size() != 0) {
                    Heartbeat(h);
                    return;
                }
                const SteadyTime retry = clock_.Now() + h.backoff;
                h.backoff =
                    std::min<Duration>(h.backoff * 2, std::chrono::duration_cast<Duration>(Interval(h) / 2));
                h.next_heartbeat = std::min(h.next_heartbeat, retry);
            } else {
                h.unavailable = 0;
            }
        }
        // At the pace of heartbeat_interval from the last send; at once if a slow answer used it up.
        ScheduleBeat(h, h.next_heartbeat);
    }

    // The control plane answered 2xx to a request sent at `sent`: the lease holds until sent + T.
    // `body` may carry lease_ttl_ms (T from now on) and, for a heartbeat, acked_seq.
    void Renewed(Host& h, SteadyTime sent, const std::string& body, bool acks) {
        if (options_.link == nullptr) {
            return;
        }
        // cogsd's own answer: read leniently (an older cogsd's 204 has no body).
        const json::object answer = wire::ParseObject(body);
        if (const int64_t ttl = wire::Int(answer, "lease_ttl_ms"); ttl > 0) {
            h.ttl = Millis(ttl);
        }
        if (const int64_t pace = wire::Int(answer, "renew_interval_ms"); pace > 0) {
            h.interval = Millis(pace);
            pace_ = Interval(h);
        }
        // Before it may unfence below: a call sent before this epoch is refused from now on.
        if (const int64_t epoch = wire::Int(answer, "lease_epoch"); epoch > 0) {
            options_.link->SetLeaseEpoch(h.name, epoch);
        }
        if (const int64_t seq = wire::Int(answer, "acked_seq");
            acks && answer.contains("acked_seq") && seq >= 0) {
            options_.link->Acknowledged(h.name, static_cast<uint64_t>(seq));
        }
        h.last_renewal = std::max(h.last_renewal, sent);
        if (!Hold(h, sent)) {
            return;
        }
        Pet(h);  // before the host is unfenced: what boots there from now on finds its lease
        const SteadyTime now = clock_.Now();
        if (h.fenced) {
            h.fenced = false;
            options_.link->SetFenced(h.name, false);
            if (h.ever_leased) {
                ++stats_.unfences;
                AgentLog().info(
                    "compute agent: host {} holds a lease again after {} ms fenced: accepting work (its "
                    "FENCED instances stay stopped until started or deleted)",
                    h.name, std::chrono::duration_cast<Millis>(now - h.fenced_since).count());
            } else {
                AgentLog().debug("compute agent: host {} holds its first lease", h.name);
            }
            h.ever_leased = true;
        }
        ArmLeaseTimer(h);
    }

    // A no_leader answer to a request sent at `sent`: a lease the host holds lasts until sent + T,
    // T unchanged, for no_leader_limit after the last renewal; a fenced host stays fenced (agent.h).
    void Extended(Host& h, SteadyTime sent) {
        if (options_.link == nullptr || h.fenced) {
            return;
        }
        if (sent - h.last_renewal > options_.no_leader_limit) {
            if (!h.no_leader_spent) {
                h.no_leader_spent = true;
                AgentLog().warn(
                    "compute agent: host {} has had no renewal from a leader for {} ms: no_leader answers "
                    "no longer extend its lease",
                    h.name, std::chrono::duration_cast<Millis>(sent - h.last_renewal).count());
            }
            return;
        }
        h.no_leader_spent = false;
        if (Hold(h, sent)) {
            Pet(h);
            ArmLeaseTimer(h);
        }
    }

    // Moves the lease's end to sent + T; false if that holds nothing (an older request answered
    // after a newer one, or the moment is past already).
    bool Hold(Host& h, SteadyTime sent) {
        if (sent < h.last_acked_send) {
            return false;  // an older request answered late: the newer answer already set the lease
        }
        h.last_acked_send = sent;
        h.lease_until = sent + h.ttl;  // with T as last answered (it may shorten the lease)
        // Answered too late to hold anything: the lease is over already.
        return clock_.Now() < h.lease_until;
    }

    // The watchdog (agent.h): the lease's end, as held now, into the host's lease file.
    void Pet(Host& h) {
        if (h.lease_file.empty()) {
            return;
        }
        // The kernel's clock first: the end written is never later than the lease's.
        const Duration boot_now = oci::BootTimeNow();
        const Duration left = h.lease_until - clock_.Now();
        if (left <= Duration::zero()) {
            return;
        }
        if (auto written = oci::WriteLeaseFile(h.lease_file, boot_now + left); !written) {
            ++stats_.lease_write_failures;
            if (!h.lease_failing) {
                h.lease_failing = true;
                AgentLog().error(
                    "compute agent: host {}: cannot write its lease ({}): its containers will be killed "
                    "when the last lease written ends",
                    h.name, written.error().message);
            }
            return;
        }
        ++stats_.lease_writes;
        if (h.lease_failing) {
            h.lease_failing = false;
            AgentLog().info("compute agent: host {}: its lease file is written again", h.name);
        }
    }

    void ArmLeaseTimer(Host& h) {
        h.lease_timer->Arm(h.lease_until, [self = shared_from_this(), host = &h] {
            if (!self->stopped_) {
                self->LeaseCheck(*host);
            }
        });
    }

    // The lease timer: fences the host at the end of its lease, unless a renewal moved the end.
    void LeaseCheck(Host& h) {
        if (h.fenced || clock_.Now() < h.lease_until) {
            return;  // re-armed by a renewal meanwhile
        }
        const observe::LogScope scope(observe::LogContext{"", "", h.name});
        h.fenced = true;
        h.fenced_since = clock_.Now();
        ++stats_.fences;
        const size_t stopped = options_.link->SetFenced(h.name, true);
        AgentLog().warn(
            "compute agent: host {} fenced: no renewal of its lease answered within {} ms; {} instance(s) "
            "stopped (FENCED), create/start/reboot refused until the control plane answers",
            h.name, std::chrono::duration_cast<Millis>(h.ttl).count(), stopped);
    }

    boost::asio::io_context& io_;
    AgentOptions options_;
    runtime::Clock& clock_;
    std::vector<std::unique_ptr<http::Client>> clients_;  // one per control url, in its order
    size_t current_ = 0;                                  // where requests go now
    uint64_t failovers_in_a_row_ = 0;
    std::vector<std::unique_ptr<Host>> hosts_;
    // Batched renewals: on until the control plane says it has no such route.
    static constexpr size_t kMaxBatch = 1000;  // cogsd's limit (cloud/resources/hosts.h)
    static constexpr size_t kMaxBatchBytes = 512 * 1024;
    static constexpr std::string_view kBatchTarget = "/v1/heartbeats";
    bool batching_ = false;
    std::unique_ptr<runtime::Timer> beat_timer_;  // batching: the next due heartbeats
    std::multimap<SteadyTime, Host*> beats_;
    std::optional<SteadyTime> beat_armed_at_;
    std::vector<Host*> pending_;
    bool flush_posted_ = false;
    size_t registering_ = 0;  // registrations in flight
    std::deque<Host*> register_queue_;
    Duration pace_{};  // the last renew interval answered: a request's deadline with several urls
    bool stopped_ = false;
    AgentStats stats_;
};

Result<std::unique_ptr<HostAgent>> HostAgent::Start(boost::asio::io_context& io, AgentOptions options) {
    if (options.control_urls.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "control url: none given");
    }
    if (options.hosts.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "hosts: no host to register");
    }
    if (!options.lease_dir.empty()) {
        if (options.lease_dir.front() != '/') {
            return MakeError(ErrorCode::kInvalidArgument, "lease dir: must be an absolute path");
        }
        if (options.link == nullptr) {
            return MakeError(ErrorCode::kInvalidArgument, "lease dir: without a link there is no lease");
        }
        for (const HostSpec& h : options.hosts) {
            if (h.name.empty() || h.name == "." || h.name == ".." || h.name.find('/') != std::string::npos) {
                return MakeError(
                    ErrorCode::kInvalidArgument,
                    "hosts: '" + h.name + "' cannot name a lease file under " + options.lease_dir);
            }
        }
        std::error_code ec;
        std::filesystem::create_directories(options.lease_dir, ec);
        if (ec) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             "lease dir: cannot make " + options.lease_dir + ": " + ec.message());
        }
    }
    std::vector<std::unique_ptr<http::Client>> clients;
    for (const std::string& url : options.control_urls) {
        auto endpoint = ParseHttpUrl(url);
        if (!endpoint) {
            return MakeError(endpoint.error());
        }
        http::ClientOptions client_options;
        client_options.host = endpoint->first;
        client_options.port = endpoint->second;
        client_options.max_connections = std::max<size_t>(1, options.max_connections);
        if (url.starts_with("https://")) {
            if (options.tls == nullptr) {
                return MakeError(ErrorCode::kInvalidArgument,
                                 "control url " + url + " is https: a TLS context (--tls-ca) is needed");
            }
            client_options.tls = options.tls;
        }
        clients.push_back(http::MakeClient(io, client_options));
    }
    auto impl = std::make_shared<Impl>(io, std::move(options), std::move(clients));
    impl->StartAll();
    return std::unique_ptr<HostAgent>(new HostAgent(std::move(impl)));
}

HostAgent::HostAgent(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HostAgent::~HostAgent() { Stop(); }

void HostAgent::Stop() { impl_->Stop(); }

AgentStats HostAgent::stats() const { return impl_->stats(); }

size_t HostAgent::registered_hosts() const { return impl_->registered(); }

size_t HostAgent::fenced_hosts() const { return impl_->fenced(); }

const std::string& HostAgent::current_control_url() const { return impl_->current_url(); }

}  // namespace cogs::services::compute
