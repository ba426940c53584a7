#include "bench/create_storm_phase.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include "bench/create_storm_util.h"
#include "cogs/http/server.h"

namespace cogs::bench::storm {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr Duration kRequestTimeout =
    120s;  // from the hand-over to the client: covers the wait for a connection
constexpr Duration kPollTimeout = 30s;
constexpr int kMaxTransportRetries = 5;

std::pair<std::string, uint16_t> HostPort(const std::string& url) {
    std::string s = url.starts_with("http://")    ? url.substr(7)
                    : url.starts_with("https://") ? url.substr(8)
                                                  : url;
    auto colon = s.rfind(':');
    return {s.substr(0, colon), static_cast<uint16_t>(std::stoi(s.substr(colon + 1)))};
}

// Retry-After in seconds (integer or decimal); 1 s when absent or unreadable.
Duration RetryAfter(const http::Response& r) {
    const std::string v = r.Header("retry-after");
    char* end = nullptr;
    const double s = std::strtod(v.c_str(), &end);
    if (v.empty() || end == v.c_str() || s < 0) {
        return 1s;
    }
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(std::min(s, 30.0)));
}

}  // namespace

Phase::Phase(Options o, std::vector<Tracked>& items, std::function<http::Request(size_t)> make)
    : o_(std::move(o)), items_(items), make_(std::move(make)) {
    const int n = static_cast<int>(o_.urls.size());
    for (int k = 0; k < n; ++k) {
        auto [host, port] = HostPort(o_.urls[k]);
        // The connections split evenly; the first urls take the remainder.
        const int share = std::max(1, o_.connections / n + (k < o_.connections % n ? 1 : 0));
        const auto tls = o_.urls[k].starts_with("https://") ? o_.tls : nullptr;
        storm_.push_back(
            http::MakeClient(io_, http::ClientOptions{host, port, static_cast<size_t>(share), tls}));
    }
    auto [host, port] = HostPort(o_.urls.front());
    poller_ = http::MakeClient(
        io_, http::ClientOptions{host, port, 2, o_.urls.front().starts_with("https://") ? o_.tls : nullptr});
}

void Phase::Run(Watch watch) {
    watch_ = watch;
    start_ = SteadyClock::now();
    last_progress_ = start_;
    for (auto& t : items_) {
        t.sent = start_;
    }
    const size_t per = std::max<size_t>(1, o_.per_request);
    for (size_t j = 0; j * per < items_.size(); ++j) {
        Send(j);
    }
    asio::post(io_, [this] { StartRound(); });
    io_.run();
    mean_round_ms = poll_rounds > 0 ? Ms(start_, SteadyClock::now()) / poll_rounds : 0;
    // The clients go before the io_context: nothing of theirs may outlive it.
    storm_.clear();
    poller_.reset();
}

void Phase::Send(size_t i) {
    http::Request req = make_(i);
    req.headers.emplace_back("authorization", "Bearer " + o_.token);
    storm_[i % storm_.size()]->Send(std::move(req), SteadyClock::now() + kRequestTimeout,
                                    [this, i](Result<http::Response> r) { OnAnswer(i, std::move(r)); });
}

void Phase::Later(Duration d, std::function<void()> f) {
    auto timer = std::make_shared<asio::steady_timer>(io_, d);
    timer->async_wait([timer, f = std::move(f)](const boost::system::error_code& ec) {
        if (!ec) {
            f();
        }
    });
}

size_t Phase::Covered(size_t j) const {
    const size_t per = std::max<size_t>(1, o_.per_request);
    return std::min(per, items_.size() - std::min(items_.size(), j * per));
}

void Phase::Refuse(size_t j, std::string why) {
    const size_t per = std::max<size_t>(1, o_.per_request);
    for (size_t k = 0; k < Covered(j); ++k) {
        items_[j * per + k].refused = true;
        items_[j * per + k].answered = SteadyClock::now();
    }
    if (refusals.size() < 5) {
        refusals.push_back(std::move(why));
    }
}

void Phase::OnAnswer(size_t i, Result<http::Response> r) {
    // Request i; with per_request > 1 its first item keeps the request's own record (retries).
    const size_t per = std::max<size_t>(1, o_.per_request);
    Tracked& t = items_[i * per];
    if (!r) {
        // No answer: the outcome is unknown; the same Idempotency-Key makes a resend safe.
        if (r.error().retryable && t.transport_retries < kMaxTransportRetries) {
            ++t.transport_retries;
            ++transport_retries;
            Later(100ms, [this, i] { Send(i); });
            return;
        }
        Refuse(i, r.error().ToString());
        return;
    }
    if (r->status == 429 || r->status == 503) {
        ++(r->status == 429 ? retries_429 : retries_503);
        Later(RetryAfter(*r), [this, i] { Send(i); });
        return;
    }
    const bool ok = r->status == 202 || (watch_ == Watch::kDelete && r->status == 404);
    if (!ok) {
        Refuse(i, fmt::format("{} {}", r->status, r->body));
        return;
    }
    t.answered = SteadyClock::now();
    if (watch_ == Watch::kCreate) {
        boost::system::error_code ec;
        json::value body = json::parse(r->body, ec);
        std::vector<std::string> ids;
        if (per == 1) {
            ids.push_back(S(At(body, "server"), "id"));
        } else {
            for (const auto& s : Arr(body, "servers")) {
                ids.push_back(S(s, "id"));
            }
        }
        if (ids.empty() || ids.front().empty()) {
            Refuse(i, "202 without a server id: " + r->body);
            return;
        }
        for (size_t k = 0; k < Covered(i); ++k) {
            const size_t item = i * per + k;
            Tracked& u = items_[item];
            u.answered = t.answered;
            if (k >= ids.size()) {  // fewer made than asked (the quota): those are refused
                u.refused = true;
                continue;
            }
            u.id = ids[k];
            by_id_[u.id] = item;
            // The server may have been listed before its 202 was read off the socket.
            if (auto e = early_.find(u.id); e != early_.end()) {
                Settle(item, e->second.first, e->second.second);
                early_.erase(e);
            }
        }
    } else if (r->status == 404) {
        t.done = *t.answered;
    }
}

void Phase::Settle(size_t i, SteadyTime at, bool error) {
    Tracked& t = items_[i];
    if (t.done || t.error) {
        return;
    }
    if (error) {
        t.error = true;
    } else {
        t.done = at;
    }
}

bool Phase::AllSettled() const {
    return std::all_of(items_.begin(), items_.end(),
                       [](const Tracked& t) { return t.refused || (t.answered && (t.done || t.error)); });
}

void Phase::StartRound() {
    round_start_ = SteadyClock::now();
    present_.clear();
    Fetch(watch_ == Watch::kCreate ? "BUILD" : "", "");
}

void Phase::Fetch(std::string status, std::string marker) {
    http::Request req;
    req.method = "GET";
    req.target = "/v1/servers?limit=1000";
    if (!status.empty()) {
        req.target += "&status=" + status;
    }
    if (!marker.empty()) {
        req.target += "&marker=" + http::UrlEncode(marker);
    }
    req.headers.emplace_back("authorization", "Bearer " + o_.token);
    poller_->Send(std::move(req), SteadyClock::now() + kPollTimeout,
                  [this, status](Result<http::Response> r) { OnPage(status, std::move(r)); });
}

void Phase::OnPage(const std::string& status, Result<http::Response> r) {
    const SteadyTime now = SteadyClock::now();
    if (!r || r->status != 200) {
        ++poll_errors;
        if (poll_errors <= 3) {
            Progress("poll: {}", r ? fmt::format("{} {}", r->status, r->body) : r.error().ToString());
        }
        EndRound(false);
        return;
    }
    boost::system::error_code ec;
    json::value body = json::parse(r->body, ec);
    for (const auto& s : Arr(body, "servers")) {
        const std::string id = S(s, "id");
        if (status != "ERROR") {
            present_.insert(id);
            continue;
        }
        auto known = by_id_.find(id);
        if (known != by_id_.end()) {
            Settle(known->second, now, /*error=*/true);
        } else {
            early_.emplace(id, std::make_pair(now, true));
        }
    }
    if (const std::string next = S(body, "next_marker"); !next.empty()) {
        Fetch(status, next);
        return;
    }
    if (status != "ERROR") {
        listed_at_ = now;  // the listing that decides what is done is whole
    }
    if (status == "BUILD") {
        Fetch("ERROR", "");
        return;
    }
    EndRound(true);
}

void Phase::EndRound(bool complete) {
    const SteadyTime now = SteadyClock::now();
    ++poll_rounds;
    if (complete) {
        // Answered before this round began (its record was there for the whole listing) and absent
        // from it: gone (delete), or out of BUILD and not in ERROR (create: ACTIVE, which the
        // storm's end checks for every server).
        for (auto& t : items_) {
            if (!t.done && !t.error && !t.refused && t.answered && *t.answered < round_start_ &&
                !present_.contains(t.id)) {
                t.done = listed_at_;
            }
        }
    }
    if (AllSettled()) {
        io_.stop();
        return;
    }
    if (now - start_ >= o_.deadline) {
        timed_out = true;
        io_.stop();
        return;
    }
    if (now - last_progress_ >= 2s) {
        last_progress_ = now;
        const auto settled = std::count_if(items_.begin(), items_.end(), [](const Tracked& t) {
            return t.refused || (t.answered && (t.done || t.error));
        });
        const auto answered = std::count_if(items_.begin(), items_.end(),
                                            [](const Tracked& t) { return t.answered.has_value(); });
        Progress("{:.1f} s: {} answered, {} of {} settled", Seconds(start_, now), answered, settled,
                 items_.size());
    }
    Later(o_.poll_interval, [this] { StartRound(); });
}

}  // namespace cogs::bench::storm
