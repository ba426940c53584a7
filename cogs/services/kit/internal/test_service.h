// Test helpers for the kit's, the sim's and the domains' tests: running an io_context until
// something holds, calling an ActionTarget in process or over HTTP until it answers, and a domain
// with its dispatch, as a DomainService holds them. Header-only; never linked into a service.
//
// Every wait is "until the condition holds", bounded by a generous real-time limit that only a
// broken test reaches: none of them passes or fails on the machine's speed.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/client.h"
#include "cogs/http/server.h"
#include "cogs/services/kit/dispatch.h"
#include "cogs/services/kit/domain.h"
#include "cogs/services/kit/protocol.h"

namespace cogs::services::kit::test_service {

inline constexpr Duration kPatience = std::chrono::seconds(20);

// Runs `io` on this thread until `done()` holds or `limit` has passed; whether it holds.
template <typename Pred>
bool RunUntil(boost::asio::io_context& io, Pred done, Duration limit = kPatience) {
    const auto end = SteadyClock::now() + limit;
    while (!done() && SteadyClock::now() < end) {
        if (io.stopped()) {
            io.restart();  // it ran out of work earlier; new work may have come since
        }
        io.run_one_for(std::chrono::milliseconds(5));
    }
    return done();
}

// Runs `io` for `d` of real time, even if it has nothing else to do (for real timers: latency
// faults, long actions).
inline void RunFor(boost::asio::io_context& io, Duration d) {
    boost::asio::steady_timer timer(io, d);
    bool fired = false;
    timer.async_wait([&](boost::system::error_code) { fired = true; });
    RunUntil(
        io, [&] { return fired; }, d + kPatience);
}

// `start(callback)` begins a call of `target`'s; runs `io` until the callback has the answer.
template <typename Start>
Result<workflow::ActionReply> Await(boost::asio::io_context& io, Start start) {
    std::optional<Result<workflow::ActionReply>> got;
    start([&](Result<workflow::ActionReply> r) { got = std::move(r); });
    EXPECT_TRUE(RunUntil(io, [&] { return got.has_value(); })) << "no answer";
    return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
}

// target.Handle(action, key, input) with a deadline far enough not to matter, until it answers.
inline Result<workflow::ActionReply> Call(boost::asio::io_context& io, ActionTarget& target,
                                          std::string action, std::string key, std::string input) {
    return Await(io, [&](ActionTarget::Callback done) {
        target.Handle(std::move(action), std::move(key), std::move(input), SteadyClock::now() + kPatience,
                      std::move(done));
    });
}

// target.Status(key), until it answers.
inline Result<workflow::ActionReply> StatusOf(boost::asio::io_context& io, ActionTarget& target,
                                              std::string key) {
    return Await(io, [&](ActionTarget::Callback done) { target.Status(std::move(key), std::move(done)); });
}

// target.Get(`method` `path`): a Domain's or an ActionTarget's read routes.
template <typename Target>
std::optional<http::Response> Get(Target& target, std::string path, std::string method = "GET") {
    http::Request req;
    req.method = std::move(method);
    req.target = std::move(path);
    return target.Get(req);
}

// The JSON body of target.Get(GET `path`), which must answer `status`: a test failure (and null) if
// `path` is not a route, and one if the status differs or the body is not JSON.
template <typename Target>
boost::json::value GetJson(Target& target, std::string path, int status = 200) {
    auto r = Get(target, path);
    if (!r) {
        ADD_FAILURE() << path << " is not a route";
        return nullptr;
    }
    EXPECT_EQ(r->status, status) << path << ": " << r->body;
    boost::system::error_code ec;
    boost::json::value body = boost::json::parse(r->body, ec);
    EXPECT_FALSE(ec) << path << ": " << r->body;
    return body;
}

// The body of target.Get(GET `path`) ("" if it is not a route).
inline std::string GetBody(ActionTarget& target, std::string path) {
    auto r = Get(target, path);
    EXPECT_TRUE(r) << path;
    return r ? r->body : "";
}

// One HTTP exchange through `client`, running `io` until it is answered.
inline http::Response Send(boost::asio::io_context& io, http::Client& client, std::string method,
                           std::string target, std::string body = "",
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::Request req;
    req.method = std::move(method);
    req.target = std::move(target);
    req.body = std::move(body);
    req.headers = std::move(headers);
    std::optional<Result<http::Response>> got;
    client.Send(req, SteadyClock::now() + kPatience, [&](Result<http::Response> r) { got = std::move(r); });
    EXPECT_TRUE(RunUntil(io, [&] { return got.has_value(); }));
    EXPECT_TRUE(got && *got) << req.method << " " << req.target;
    return got && *got ? **got : http::Response{};
}

// The records a kit would have committed: (table, id) -> JSON text.
using Records = std::map<std::pair<std::string, std::string>, std::string>;

inline void Apply(const Tx& tx, Records& records) {
    for (const auto& w : tx.writes()) {
        if (w.erase) {
            records.erase({w.table, w.id});
        } else {
            records[{w.table, w.id}] = w.json;
        }
    }
}

// Hands every record to domain.Load as the kit does at start (table by table, in id order: the
// order of Records); the first refusal, if any.
inline ::testing::AssertionResult LoadAll(Domain& domain, const Records& records) {
    for (const auto& [key, text] : records) {
        if (auto s = domain.Load(key.first, key.second, text); !s) {
            return ::testing::AssertionFailure()
                   << key.first << "/" << key.second << ": " << s.error().ToString();
        }
    }
    return ::testing::AssertionSuccess();
}

// A domain and the dispatch the kit derives from its table (dispatch.h), as a DomainService holds
// them: its actions performed by name, its other methods through ->.
template <typename D>
class DomainUnderTest {
public:
    explicit DomainUnderTest(std::unique_ptr<D> domain) : domain_(std::move(domain)), actions_(*domain_) {}

    D* operator->() const { return domain_.get(); }
    D& operator*() const { return *domain_; }
    const ActionTable& actions() const { return actions_; }

    Result<Done> Perform(std::string_view action, std::string_view input, Tx& tx) const {
        return actions_.Perform(action, input, tx);
    }
    // Performs `action`; on success applies its writes to `records` (on error the kit ignores them).
    Result<Done> Perform(std::string_view action, std::string_view input, Records& records) const {
        Tx tx;
        auto done = actions_.Perform(action, input, tx);
        if (done) {
            Apply(tx, records);
        }
        return done;
    }

private:
    std::unique_ptr<D> domain_;
    ActionTable actions_;
};

}  // namespace cogs::services::kit::test_service
