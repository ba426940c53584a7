#include "cogs/cloud/api/admission.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cogs/cloud/api/router.h"
#include "cogs/wire/answer.h"
#include "cogs/wire/host_routes.h"

namespace cogs::cloud {

struct Admission::Counts {
    size_t system = 0;
    size_t tenant = 0;
    std::unordered_map<std::string, size_t> per_project;  // only projects with a request in flight
};

namespace {

Refusal Overloaded(std::string_view reason, std::string message, std::string_view limit, size_t value) {
    Refusal r{reason, Error(ErrorCode::kResourceExhausted, std::move(message)), std::chrono::seconds(1)};
    r.error.With("limit", std::string(limit)).With("value", static_cast<int64_t>(value));
    return r;
}

}  // namespace

std::string_view LaneName(Lane lane) { return lane == Lane::kSystem ? "system" : "tenant"; }

Lane LaneOf(std::string_view method, std::string_view path) {
    return wire::IsHostRegistration(method, path) || wire::IsLeaseRenewal(method, path) ? Lane::kSystem
                                                                                        : Lane::kTenant;
}

http::Response RefusalAnswer(const Refusal& r) {
    http::Response answer = wire::ApiError(r.error);
    // delay-seconds (RFC 9110 §10.2.3) are whole: rounded up, at least 1.
    const int64_t seconds =
        std::max<int64_t>(1, std::chrono::ceil<std::chrono::seconds>(r.retry_after).count());
    std::erase_if(answer.headers, [](const auto& h) { return h.first == "retry-after"; });
    answer.headers.emplace_back("retry-after", std::to_string(seconds));
    return answer;
}

Admission::Ticket::Ticket(Ticket&& other) noexcept
    : counts_(std::move(other.counts_)), lane_(other.lane_), project_(std::move(other.project_)) {}

Admission::Ticket& Admission::Ticket::operator=(Ticket&& other) noexcept {
    if (this != &other) {
        Release();
        counts_ = std::move(other.counts_);
        lane_ = other.lane_;
        project_ = std::move(other.project_);
    }
    return *this;
}

void Admission::Ticket::Release() {
    if (!counts_) {
        return;
    }
    if (lane_ == Lane::kSystem) {
        --counts_->system;
    } else {
        --counts_->tenant;
        if (auto it = counts_->per_project.find(project_);
            it != counts_->per_project.end() && --it->second == 0) {
            counts_->per_project.erase(it);
        }
    }
    counts_.reset();
}

Admission::Admission(AdmissionOptions options, runtime::Clock& clock)
    : options_(options), clock_(clock), counts_(std::make_shared<Counts>()) {}

Admission::~Admission() = default;

std::optional<Refusal> Admission::CheckLane(Lane lane) const {
    if (lane == Lane::kSystem) {
        if (options_.max_inflight_system > 0 && counts_->system >= options_.max_inflight_system) {
            return Overloaded("system_overload",
                              "too many host registrations and heartbeats in flight: retry later",
                              "max_inflight_system", options_.max_inflight_system);
        }
        return std::nullopt;
    }
    if (options_.max_inflight > 0 && counts_->tenant >= options_.max_inflight) {
        return Overloaded("overload", "too many requests in flight: retry later", "max_inflight",
                          options_.max_inflight);
    }
    return std::nullopt;
}

Admission::Ticket Admission::AdmitSystem() {
    Ticket t;
    t.counts_ = counts_;
    t.lane_ = Lane::kSystem;
    ++counts_->system;
    return t;
}

tl::expected<Admission::Ticket, Refusal> Admission::AdmitTenant(const std::string& token_id,
                                                                const std::string& project_id, bool admin) {
    const double rate = admin ? options_.admin_rate : options_.rate;
    const double burst = admin ? options_.admin_burst : options_.burst;
    if (rate > 0) {
        if (auto wait = Take(token_id, rate, std::max(burst, 1.0))) {
            Refusal r{
                "rate_limited",
                Error(ErrorCode::kResourceExhausted,
                      "this token's request rate is over its limit: retry after the time Retry-After says"),
                *wait};
            const auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(*wait).count();
            r.error.With("limit", admin ? "admin_rate_per_token" : "rate_per_token")
                .With("rate_per_s", static_cast<int64_t>(std::llround(rate)))
                .With("burst", static_cast<int64_t>(std::llround(std::max(burst, 1.0))))
                .With("retry_after_ms", static_cast<int64_t>(wait_ms));
            return tl::unexpected(std::move(r));
        }
    }
    size_t& mine = counts_->per_project[project_id];
    if (options_.max_inflight_per_project > 0 && mine >= options_.max_inflight_per_project) {
        if (mine == 0) counts_->per_project.erase(project_id);
        return tl::unexpected(Overloaded("project_overload",
                                         "too many requests of this project in flight: retry later",
                                         "max_inflight_per_project", options_.max_inflight_per_project));
    }
    ++mine;
    ++counts_->tenant;
    Ticket t;
    t.counts_ = counts_;
    t.lane_ = Lane::kTenant;
    t.project_ = project_id;
    return t;
}

size_t Admission::inflight(Lane lane) const {
    return lane == Lane::kSystem ? counts_->system : counts_->tenant;
}

size_t Admission::inflight_of_project(const std::string& project_id) const {
    auto it = counts_->per_project.find(project_id);
    return it == counts_->per_project.end() ? 0 : it->second;
}

std::optional<Duration> Admission::Take(const std::string& token, double rate, double burst) {
    const SteadyTime now = clock_.Now();
    const Duration interval(std::max<int64_t>(1, std::llround(1e9 / rate)));
    auto it = buckets_.find(token);
    if (it == buckets_.end()) {
        Prune(now);
        lru_.push_front(Bucket{token, now, interval, burst});
        it = buckets_.emplace(token, lru_.begin()).first;
    } else {
        lru_.splice(lru_.begin(), lru_, it->second);  // most recently used
    }
    Bucket& b = *it->second;
    b.interval = interval;  // the token's role may have changed: its limits from now on
    b.burst = burst;
    const SteadyTime next = std::max(b.tat, now) + interval;
    const Duration allowed(std::llround(static_cast<double>(interval.count()) * burst));
    if (next - now > allowed) {
        return next - allowed - now;
    }
    b.tat = next;
    return std::nullopt;
}

void Admission::Prune(SteadyTime now) {
    while (!lru_.empty()) {
        const Bucket& oldest = lru_.back();
        if (oldest.tat > now && buckets_.size() < std::max<size_t>(options_.max_buckets, 1)) {
            break;  // not full again, and there is room
        }
        buckets_.erase(oldest.token);
        lru_.pop_back();
    }
}

}  // namespace cogs::cloud
