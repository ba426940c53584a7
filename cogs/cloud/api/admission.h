// Admission: whether the API starts a request now, or answers 429 with Retry-After at once (never an
// unbounded queue). The design and its defaults: docs/api.md "Admission: lanes and limits".
//
// Two lanes, as the Kubernetes API server's priority and fairness exempts system traffic:
//
//   system  the agents' registrations and heartbeats (LaneOf: PUT /v1/hosts/{name}, POST
//           /v1/hosts/{name}/heartbeat), chosen by route before authentication: their own in-flight
//           cap (`max_inflight_system`), no rate limit, no project's cap. A heartbeat that waits is a
//           host that fences itself and stops every instance; tenant traffic cannot fill this lane.
//   tenant  everything else under /v1: in order,
//             1. the lane's in-flight cap (`max_inflight`), before authentication (cheapest first);
//             2. the token's rate: a token bucket per token (`rate`/s, up to `burst`; admins have
//                their own, larger, `admin_rate`/`admin_burst`); Retry-After says when the bucket
//                holds a request again;
//             3. the project's in-flight cap (`max_inflight_per_project`): one tenant cannot take
//                the whole lane.
//
// A refusal says why (Refusal::reason, the label of cogs_api_rejected_total) and when to come back.
// An admitted request holds a Ticket until it is answered; Release() (or the Ticket's end) gives its
// places back.
//
// Bounded: the buckets are kept for at most `max_buckets` tokens, least recently used first out; a
// bucket idle long enough to be full again is dropped first (forgetting it changes nothing). The
// per-project counts hold only projects with a request in flight.
//
// Threading: not thread-safe; cogsd calls it on the io thread (the HTTP face, http_api.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"
#include "cogs/runtime/clock.h"

namespace cogs::cloud {

enum class Lane { kSystem, kTenant };
std::string_view LaneName(Lane lane);

// The lane of a request, from its method and path alone (before authentication).
Lane LaneOf(std::string_view method, std::string_view path);

// 0 (or 0.0) turns a limit off. The library's defaults are off but for the lanes' caps; cogsd's flags
// set the production defaults (docs/api.md).
struct AdmissionOptions {
    size_t max_inflight = 4096;         // tenant lane: requests in flight at once
    size_t max_inflight_system = 1024;  // system lane
    size_t max_inflight_per_project = 0;
    double rate = 0;  // requests per second per token (members and readers)
    double burst = 0;
    double admin_rate = 0;  // per admin token
    double admin_burst = 0;
    size_t max_buckets = 100'000;  // tokens whose bucket is kept
};

// Why a request is not admitted: the API's error (429 resource_exhausted, with details) and when to
// come back.
struct Refusal {
    std::string_view reason;  // "overload", "system_overload", "rate_limited", "project_overload"
    Error error;
    Duration retry_after{};
};

// The answer to a refusal: the API's error shape, 429, Retry-After in whole seconds (at least 1).
http::Response RefusalAnswer(const Refusal& r);

class Admission {
    struct Counts;

public:
    // A request's places in its lane (and its project's count), until Release().
    class Ticket {
    public:
        Ticket() = default;
        Ticket(Ticket&& other) noexcept;
        Ticket& operator=(Ticket&& other) noexcept;
        ~Ticket() { Release(); }
        // Gives the places back; later calls do nothing.
        void Release();
        bool held() const { return counts_ != nullptr; }

    private:
        friend class Admission;
        std::shared_ptr<Counts> counts_;
        Lane lane_ = Lane::kTenant;
        std::string project_;
    };

    // `clock` must outlive the Admission.
    Admission(AdmissionOptions options, runtime::Clock& clock);
    ~Admission();

    // Step 1, before authentication: the lane's in-flight cap.
    std::optional<Refusal> CheckLane(Lane lane) const;
    // The system lane: a place (after CheckLane).
    Ticket AdmitSystem();
    // The tenant lane, once the caller is known: its token's bucket, its project's cap, then a place
    // (after CheckLane). A request refused for its project's cap has used its token's bucket.
    tl::expected<Ticket, Refusal> AdmitTenant(const std::string& token_id, const std::string& project_id,
                                              bool admin);

    // For tests and metrics.
    size_t inflight(Lane lane) const;
    size_t inflight_of_project(const std::string& project_id) const;
    size_t buckets() const { return buckets_.size(); }

private:
    // A token bucket in its GCRA form (the same decisions, in exact integer time): a request is
    // admitted when the bucket's theoretical arrival time `tat`, pushed one `interval` (1/rate) on,
    // is at most `burst` intervals ahead of now. Full again once `tat` has passed.
    struct Bucket {
        std::string token;
        SteadyTime tat{};
        Duration interval{};
        double burst = 0;
    };
    // Takes one request from `token`'s bucket, or says how long until it holds one.
    std::optional<Duration> Take(const std::string& token, double rate, double burst);
    // Drops buckets full again by now (from the least recently used end), then the least recently
    // used while the table is at its bound.
    void Prune(SteadyTime now);

    const AdmissionOptions options_;
    runtime::Clock& clock_;
    std::shared_ptr<Counts> counts_;
    std::list<Bucket> lru_;  // most recently used first
    std::unordered_map<std::string, std::list<Bucket>::iterator> buckets_;
};

}  // namespace cogs::cloud
