// HostAgent::Impl (agent.h), declared once; its methods by concern: agent.cc (start, stop, requests
// and their failover, registration), agent_beats.cc (heartbeats, one per host or batched, and their
// answers), agent_lease.cc (the lease: renewed, extended by no_leader, fencing, the watchdog file).
// Internal to cogs-compute.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cogs/http/client.h"
#include "cogs/runtime/clock.h"
#include "cogs/services/compute/agent.h"
#include "cogs/wire/input.h"

namespace cogs::services::compute {

class HostAgent::Impl : public std::enable_shared_from_this<Impl> {
public:
    Impl(boost::asio::io_context& io, AgentOptions options,
         std::vector<std::unique_ptr<http::Client>> clients);

    void StartAll();

    void Stop();

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
    // Failures are logged on the first of a run and then at 2, 4, 8, ... so that a thousand hosts
    // facing a control plane that is down do not flood the log, yet a long outage stays visible.
    static bool WorthLogging(uint64_t consecutive);
    // The agent's lines: component "agent" (its level set apart from the service's).
    static spdlog::logger& AgentLog();
    // Whether the failure says "try another replica": no answer at all, or a gateway's or an
    // unavailable replica's (a follower without a leader, a leader without its lease, one starting).
    static bool Failover(const Result<http::Response>& r);
    // A 503 {"code":"no_leader"}: a replica that found nobody leading (agent.h: extends a held lease).
    static bool NoLeader(const Result<http::Response>& r);
    static std::string Describe(const Result<http::Response>& r);

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
    http::Request MakeRequest(const Host& h, std::string method, std::string target, std::string body) const;

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
              void (Impl::*done)(Host&, const Result<http::Response>&, SteadyTime));

    // Round-robin over the control urls (agent.h): only a failure of the current one moves it.
    void Answered(size_t at, const Result<http::Response>& r);

    // At most half the connections carry registrations, the others are left to renewals: ten
    // thousand hosts registering at once must not queue the heartbeats of those already registered
    // behind them (their leases would lapse). The rest wait here, in order.
    void Register(Host& h);

    size_t MaxRegistering() const { return std::max<size_t>(1, options_.max_connections / 2); }

    void Registered(Host& h, const Result<http::Response>& r, SteadyTime sent);

    // The control plane's pace (renew_interval_ms), capped by heartbeat_interval if set, and at
    // least three renewals per lease TTL (a control plane with a short TTL is not left to lapse
    // between two heartbeats of a longer interval).
    Duration Interval(const Host& h) const;

    // When h's next heartbeat goes. Batching, it is rounded down to a tenth of the interval, so that
    // hosts registered at different moments fall into at most ten batches per interval.
    SteadyTime NextBeat(const Host& h) const;

    void Heartbeat(Host& h);

    void SendHeartbeat(Host& h) {
        std::string body = options_.link != nullptr ? options_.link->HeartbeatBody(h.name) : "{}";
        Send(h, MakeRequest(h, "POST", h.target + "/heartbeat", std::move(body)), &Impl::HeartbeatDone);
    }

    // When h's next heartbeat goes: its own timer, or, batching, one timer for every host (so that
    // those due together leave together, whatever order timers fire in).
    void ScheduleBeat(Host& h, SteadyTime when);

    void ArmBeat(SteadyTime when);

    // The heartbeats due now, into one flush; an entry a later ScheduleBeat replaced is skipped.
    void Beat();

    // Batched renewals (agent.h): the hosts whose heartbeat is due in this turn of io go together.
    void Enqueue(Host& h);

    void Flush();

    void SendBatch(std::vector<Host*> chunk, boost::json::array entries);

    // Each host of the batch gets its own part of the answer, as if it had been its own heartbeat's.
    void BatchDone(const std::vector<Host*>& chunk, const Result<http::Response>& r, SteadyTime sent);

    void HeartbeatDone(Host& h, const Result<http::Response>& r, SteadyTime sent);

    // The control plane answered 2xx to a request sent at `sent`: the lease holds until sent + T.
    // `body` may carry lease_ttl_ms (T from now on) and, for a heartbeat, acked_seq.
    void Renewed(Host& h, SteadyTime sent, const std::string& body, bool acks);

    // A no_leader answer to a request sent at `sent`: a lease the host holds lasts until sent + T,
    // T unchanged, for no_leader_limit after the last renewal; a fenced host stays fenced (agent.h).
    void Extended(Host& h, SteadyTime sent);

    // Moves the lease's end to sent + T; false if that holds nothing (an older request answered
    // after a newer one, or the moment is past already).
    bool Hold(Host& h, SteadyTime sent);

    // The watchdog (agent.h): the lease's end, as held now, into the host's lease file.
    void Pet(Host& h);

    void ArmLeaseTimer(Host& h) {
        h.lease_timer->Arm(h.lease_until, [self = shared_from_this(), host = &h] {
            if (!self->stopped_) {
                self->LeaseCheck(*host);
            }
        });
    }

    // The lease timer: fences the host at the end of its lease, unless a renewal moved the end.
    void LeaseCheck(Host& h);

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

}  // namespace cogs::services::compute
