#include "test/chaos/ha_checks.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <regex>

#include <fmt/format.h>
#include <boost/json.hpp>

namespace cogs::testing {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string LoadAverage() {
    std::ifstream in("/proc/loadavg");
    double one = 0, five = 0, fifteen = 0;
    in >> one >> five >> fifteen;
    return fmt::format("[{:.2f},{:.2f},{:.2f}]", one, five, fifteen);
}

std::optional<bool> ClaimsToLead(ApiClient& replica, Duration timeout) {
    auto r = replica.Call("GET", "/metrics", "", {}, timeout);
    if (!r || r->status != 200) {
        return std::nullopt;
    }
    // An unlabelled gauge: "cogs_leader 1" on a line of its own.
    const std::string key = "\ncogs_leader ";
    const auto at = r->text.find(key);
    if (at == std::string::npos) {
        return std::nullopt;
    }
    return r->text.compare(at + key.size(), 1, "1") == 0;
}

std::vector<uint64_t> ElectedTokensInLog(const std::string& log_path) {
    static const std::regex kElected(R"(elected leader \(token ([0-9]+)\))");
    std::vector<uint64_t> out;
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line)) {
        std::smatch m;
        if (line.find("elected leader") != std::string::npos && std::regex_search(line, m, kElected)) {
            out.push_back(std::stoull(m[1].str()));
        }
    }
    return out;
}

Result<std::vector<Election>> ReadElections(ControlPlaneClient& api) {
    static const std::regex kToken(R"(leads with token ([0-9]+))");
    std::vector<Election> out;
    int64_t after = 0;
    for (;;) {
        auto r = api.Call("GET", fmt::format("/v1/events?resource_kind=replica&limit=1000&after={}", after),
                          "", {}, 10s);
        if (!r || r->status != 200 || !r->body.is_object()) {
            return MakeError(ErrorCode::kUnavailable,
                             "GET /v1/events?resource_kind=replica: " + (r ? r->text : r.error().message));
        }
        const auto& o = r->body.as_object();
        const auto* events = o.if_contains("events");
        if (events == nullptr || !events->is_array() || events->as_array().empty()) {
            return out;
        }
        for (const auto& e : events->as_array()) {
            const auto& eo = e.as_object();
            std::smatch m;
            const std::string message = Str(eo, "message");
            if (Str(eo, "type") == "leader_elected" && std::regex_search(message, m, kToken)) {
                const auto* t = eo.if_contains("time_ms");
                out.push_back({Str(eo, "resource_id"), std::stoull(m[1].str()),
                               t != nullptr && t->is_number() ? t->to_number<int64_t>() : 0});
            }
        }
        const auto* next = o.if_contains("next_after");
        if (next == nullptr || !next->is_number() || next->to_number<int64_t>() <= after) {
            return out;
        }
        after = next->to_number<int64_t>();
    }
}

TokenAudit AuditTokens(const std::vector<Election>& events,
                       const std::map<std::string, std::vector<uint64_t>>& logged) {
    std::map<uint64_t, std::set<std::string>> holders;
    for (const auto& e : events) {
        holders[e.token].insert(e.replica);
    }
    for (const auto& [replica, tokens] : logged) {
        for (uint64_t t : tokens) {
            holders[t].insert(replica);
        }
    }
    TokenAudit a;
    a.elections = static_cast<int>(holders.size());
    for (const auto& [token, replicas] : holders) {
        if (replicas.size() > 1) {
            ++a.split_tokens;
            a.findings.push_back(
                fmt::format("SPLIT BRAIN: token {} was given to {}", token, fmt::join(replicas, " and ")));
        }
    }
    return a;
}

namespace {

// Every event of one resource kind after `since_ms` (all pages).
Result<std::vector<json::object>> EventsOf(ControlPlaneClient& api, const std::string& kind,
                                           int64_t since_ms) {
    std::vector<json::object> out;
    int64_t after = 0;
    for (;;) {
        auto r = api.Call("GET", fmt::format("/v1/events?resource_kind={}&limit=1000&after={}", kind, after),
                          "", {}, 10s);
        if (!r || r->status != 200 || !r->body.is_object()) {
            return MakeError(ErrorCode::kUnavailable, fmt::format("GET /v1/events?resource_kind={}: {}", kind,
                                                                  r ? r->text : r.error().message));
        }
        const auto& o = r->body.as_object();
        const auto* events = o.if_contains("events");
        if (events == nullptr || !events->is_array() || events->as_array().empty()) {
            return out;
        }
        for (const auto& e : events->as_array()) {
            const auto* t = e.as_object().if_contains("time_ms");
            if (t != nullptr && t->is_number() && t->to_number<int64_t>() >= since_ms) {
                out.push_back(e.as_object());
            }
        }
        const auto* next = o.if_contains("next_after");
        if (next == nullptr || !next->is_number() || next->to_number<int64_t>() <= after) {
            return out;
        }
        after = next->to_number<int64_t>();
    }
}

}  // namespace

Result<EvacuationAudit> AuditEvacuations(ControlPlaneClient& api, const std::vector<HostOutage>& outages,
                                         int64_t since_ms, int64_t margin_ms) {
    EvacuationAudit a;
    std::set<std::string> cut_off;
    for (const auto& o : outages) {
        cut_off.insert(o.host);
    }
    COGS_ASSIGN_OR_RETURN(auto hosts, EventsOf(api, "host", since_ms));
    for (const auto& e : hosts) {
        if (Str(e, "type") != "down") {
            continue;
        }
        ++a.host_downs;
        const std::string host = Str(e, "resource_id");
        const int64_t at = e.at("time_ms").to_number<int64_t>();
        const bool explained = std::any_of(outages.begin(), outages.end(), [&](const HostOutage& o) {
            return o.host == host && at >= o.from_ms - margin_ms && at <= o.to_ms + margin_ms;
        });
        if (!explained) {
            ++a.false_host_downs;
            a.findings.push_back(
                fmt::format("FALSE HOST DOWN: {} declared down at {} ms ({}), outside every "
                            "outage the run caused",
                            host, at, Str(e, "message")));
        }
    }
    // "evacuated from host X to host Y: ..."; "server.evacuate failed (...); it is back on host X, ...".
    static const std::regex kFrom(R"((?:evacuated from host|back on host) ([^ ,:;]+))");
    COGS_ASSIGN_OR_RETURN(auto servers, EventsOf(api, "server", since_ms));
    for (const auto& e : servers) {
        const std::string type = Str(e, "type");
        if (type != "evacuated" && type != "evacuation_retry") {
            continue;
        }
        ++a.evacuations;
        std::smatch m;
        const std::string message = Str(e, "message");
        const std::string from = std::regex_search(message, m, kFrom) ? m[1].str() : "";
        if (cut_off.count(from) == 0) {
            ++a.false_evacuations;
            a.findings.push_back(
                fmt::format("FALSE EVACUATION: server {} ({}): {} — the run never cut off "
                            "host '{}'",
                            Str(e, "resource_id"), type, message, from));
        }
    }
    return a;
}

std::map<std::string, std::vector<uint64_t>> LoggedTokens(const ChaosCloud& cloud) {
    std::map<std::string, std::vector<uint64_t>> out;
    for (int r = 0; r < cloud.replicas(); ++r) {
        out[cloud.ReplicaId(r)] = ElectedTokensInLog(cloud.LogPath(cloud.ReplicaProc(r)));
    }
    return out;
}

Result<ControlPlaneAudit> AuditControlPlane(const ChaosCloud& cloud, const std::vector<HostOutage>& outages,
                                            int64_t since_ms, int64_t margin_ms) {
    ControlPlaneClient api(cloud.api_urls(), cloud.admin_token());
    ControlPlaneAudit a;
    COGS_ASSIGN_OR_RETURN(a.elections, ReadElections(api));
    const auto logged = LoggedTokens(cloud);
    a.token_audit = AuditTokens(a.elections, logged);
    for (const auto& e : a.elections) {
        a.tokens.insert(e.token);
    }
    for (const auto& [id, tokens] : logged) {
        a.tokens.insert(tokens.begin(), tokens.end());
    }
    COGS_ASSIGN_OR_RETURN(a.evacuations, AuditEvacuations(api, outages, since_ms, margin_ms));
    a.findings = a.token_audit.findings;
    a.findings.insert(a.findings.end(), a.evacuations.findings.begin(), a.evacuations.findings.end());
    return a;
}

size_t FailoverClock::Lost(const std::string& kind, SteadyTime at) {
    std::lock_guard lock(mu_);
    failovers_.push_back({kind, at, std::nullopt, ""});
    ++pending_;
    return failovers_.size() - 1;
}

void FailoverClock::Mutated(SteadyTime sent, SteadyTime answered, const char* by) {
    std::lock_guard lock(mu_);
    if (pending_ == 0) {
        return;
    }
    for (auto& f : failovers_) {
        if (!f.ended && f.at < sent) {
            f.ended = answered;
            f.by = by;
            --pending_;
        }
    }
}

bool FailoverClock::Pending() const {
    std::lock_guard lock(mu_);
    return pending_ > 0;
}

bool FailoverClock::AwaitIdle(Duration timeout) const {
    return WaitUntil([this] { return !Pending(); }, timeout, 20ms);
}

std::vector<FailoverClock::Failover> FailoverClock::failovers() const {
    std::lock_guard lock(mu_);
    return failovers_;
}

MutationProber::MutationProber(const std::vector<std::string>& replica_urls, const std::string& token,
                               std::vector<FailoverClock*> clocks)
    : urls_(replica_urls), token_(token), clocks_(std::move(clocks)), scheduler_([this] { Run(); }) {}

MutationProber::~MutationProber() {
    stop_ = true;
    scheduler_.join();
}

void MutationProber::Run() {
    struct Flight {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
    };
    std::vector<Flight> flights;
    SteadyTime next = SteadyClock::now();
    while (!stop_) {
        const bool pending =
            std::any_of(clocks_.begin(), clocks_.end(), [](FailoverClock* c) { return c->Pending(); });
        for (size_t i = 0; pending && i < urls_.size(); ++i) {
            auto done = std::make_shared<std::atomic<bool>>(false);
            flights.push_back({std::thread([this, url = urls_[i], done] {
                                   Probe(url);
                                   *done = true;
                               }),
                               done});
        }
        for (auto it = flights.begin(); it != flights.end();) {
            if (*it->done) {
                it->thread.join();
                it = flights.erase(it);
            } else {
                ++it;
            }
        }
        next = std::max(next + 100ms, SteadyClock::now());
        std::this_thread::sleep_until(next);
    }
    for (auto& f : flights) {
        f.thread.join();
    }
}

void MutationProber::Probe(const std::string& url) {
    ApiClient api(url, token_);
    const std::string body =
        json::serialize(json::object{{"name", fmt::format("probe-{}-{}", ::getpid(), ++seq_)},
                                     {"vcpus", 1},
                                     {"ram_mb", 1},
                                     {"disk_gb", 0}});
    ++sent_;
    const SteadyTime sent = SteadyClock::now();
    auto r = api.Call("POST", "/v1/flavors", body, {}, 2s);
    if (r && r->status / 100 == 2) {
        const SteadyTime answered = SteadyClock::now();
        for (FailoverClock* c : clocks_) {
            c->Mutated(sent, answered, "probe");
        }
    }
}

}  // namespace cogs::testing
