// HostAgent::Impl (internal/agent_impl.h): heartbeats, one request per host or batched (POST
// /v1/heartbeats, one timer for every host due), and their answers.
#include "cogs/services/compute/internal/agent_impl.h"

#include <boost/json/serialize.hpp>
#include <filesystem>

#include "cogs/observe/log.h"
#include "cogs/oci/lease_file.h"
#include "cogs/services/compute/internal/compute_domain.h"

namespace cogs::services::compute {

namespace json = wire::json;

Duration HostAgent::Impl::Interval(const Host& h) const {
    const auto third = std::chrono::duration_cast<Duration>(h.ttl / 3);
    Duration want = h.interval > Duration::zero() ? std::min(h.interval, third) : third;
    if (options_.heartbeat_interval > Duration::zero()) {
        want = std::min(want, options_.heartbeat_interval);
    }
    return std::max<Duration>(want, std::chrono::milliseconds(1));
}

SteadyTime HostAgent::Impl::NextBeat(const Host& h) const {
    const Duration interval = Interval(h);
    const SteadyTime at = clock_.Now() + interval;
    if (!batching_) {
        return at;
    }
    const Duration grid = std::max<Duration>(interval / 10, std::chrono::milliseconds(1));
    return SteadyTime((at.time_since_epoch() / grid) * grid);
}

void HostAgent::Impl::Heartbeat(Host& h) {
    ++stats_.heartbeats_sent;
    h.next_heartbeat = NextBeat(h);
    if (batching_) {
        return Enqueue(h);
    }
    SendHeartbeat(h);
}

void HostAgent::Impl::ScheduleBeat(Host& h, SteadyTime when) {
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

void HostAgent::Impl::ArmBeat(SteadyTime when) {
    beat_armed_at_ = when;
    beat_timer_->Arm(when, [self = shared_from_this()] {
        if (!self->stopped_) {
            self->Beat();
        }
    });
}

void HostAgent::Impl::Beat() {
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

void HostAgent::Impl::Enqueue(Host& h) {
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

void HostAgent::Impl::Flush() {
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

void HostAgent::Impl::SendBatch(std::vector<Host*> chunk, json::array entries) {
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

void HostAgent::Impl::BatchDone(const std::vector<Host*>& chunk, const Result<http::Response>& r,
                                SteadyTime sent) {
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

void HostAgent::Impl::HeartbeatDone(Host& h, const Result<http::Response>& r, SteadyTime sent) {
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
            AgentLog().info("compute agent: heartbeats of host {} answered again after {} failures", h.name,
                            h.failures);
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

}  // namespace cogs::services::compute
