// cogs-bench create-storm (create_storm.h), the storm driver: a timed phase of N requests issued at
// once while the API is polled for their outcome. The storm and its polling share one io_context on
// the calling thread, on two clients: the polls must not wait in the FIFO of the storm's
// connections, or the poll interval would no longer bound the resolution of the ACTIVE times.
// Internal to the benchmark.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/client.h"

namespace cogs::bench::storm {

struct Tracked {
    SteadyTime sent{};                     // handed to the client (the first attempt)
    std::optional<SteadyTime> answered{};  // the final 202 (or other final answer)
    std::optional<SteadyTime> done{};      // first seen ACTIVE (create) or gone (delete)
    std::string id;
    bool refused = false;  // a final answer other than 202 (or no answer after the retries)
    bool error = false;    // create: seen in status ERROR
    int transport_retries = 0;
};

// One timed phase: `n` requests (of Options::per_request items each) issued at once (spread over the urls, as
// a load balancer would), 429/503 retried after Retry-After and transport failures retried with the same
// Idempotency-Key, while the API is polled until every request is settled or the deadline passes.
class Phase {
public:
    struct Options {
        std::vector<std::string> urls;  // request i goes to urls[i % size]; the polls to urls[0]
        std::string token;
        int connections = 64;  // in all, shared among the urls
        Duration poll_interval = std::chrono::milliseconds(25);
        Duration deadline = std::chrono::seconds(180);
        std::shared_ptr<http::TlsContext> tls{};  // for https urls
        // Items per request (create only): request j covers items [j*per_request, (j+1)*per_request)
        // (the last may cover fewer) and is a bulk create whose 202 lists their servers
        // ({"servers": [...]}, each item taking one; items left over are refused). 1: one
        // {"server": ...} per request.
        size_t per_request = 1;
    };
    // make(j) builds request j (without the authorization header).
    Phase(Options o, std::vector<Tracked>& items, std::function<http::Request(size_t)> make);
    // The items request j covers.
    size_t Covered(size_t j) const;

    // create: poll the BUILD and ERROR lists (what is pending, not every server made: a client
    // that listed all its servers each round would cost cogsd more with every server made); an
    // answered id absent from BUILD and not in ERROR is done. delete: poll the whole list; an
    // answered id absent from it is done.
    enum class Watch { kCreate, kDelete };

    // Sends every request and polls until all are settled or the deadline passes.
    void Run(Watch watch);

    int retries_429 = 0;
    int retries_503 = 0;
    int transport_retries = 0;
    int poll_rounds = 0;
    double mean_round_ms = 0;  // from the start of one polling round to the next, on average
    int poll_errors = 0;
    bool timed_out = false;
    std::vector<std::string> refusals;  // the first few, for the report

private:
    void Send(size_t i);
    void Later(Duration d, std::function<void()> f);
    void Refuse(size_t i, std::string why);
    void OnAnswer(size_t i, Result<http::Response> r);
    void Settle(size_t i, SteadyTime at, bool error);
    bool AllSettled() const;
    void StartRound();
    void Fetch(std::string status, std::string marker);
    void OnPage(const std::string& status, Result<http::Response> r);
    void EndRound(bool complete);

    Options o_;
    std::vector<Tracked>& items_;
    std::function<http::Request(size_t)> make_;
    boost::asio::io_context io_;
    std::vector<std::unique_ptr<http::Client>> storm_;  // one per url
    std::unique_ptr<http::Client> poller_;
    Watch watch_ = Watch::kCreate;
    SteadyTime start_{};
    SteadyTime round_start_{};
    SteadyTime last_progress_{};
    std::unordered_map<std::string, size_t> by_id_;
    std::unordered_map<std::string, std::pair<SteadyTime, bool>> early_;  // listed before its 202 was read
    std::set<std::string> present_;  // ids in the current round's listing (create: of BUILD)
    SteadyTime listed_at_{};         // when the current round's listing was whole
};

}  // namespace cogs::bench::storm
