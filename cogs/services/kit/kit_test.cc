#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "cogs/base/secret.h"
#include "cogs/http/client.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/clock.h"
#include "cogs/runtime/files.h"
#include "cogs/services/kit/domain.h"
#include "cogs/services/kit/faults.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/http_client.h"
#include "cogs/services/kit/internal/test_observe.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/kit/service.h"
#include "cogs/wire/input.h"
#include "test/support/temp_dir.h"

namespace cogs::services::kit {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
using test_observe::LogLines;
using test_observe::PromtoolProblems;
using test_observe::SampleOf;
using test_observe::StderrCapture;
using test_service::RunUntil;
using workflow::ActionCall;
using workflow::ActionReply;

// ---- a tiny domain: a store of items ----

// What the test watches; shared because the service owns the domain.
struct Probe {
    std::map<std::string, int> performed;  // action -> successful Perform calls
    std::vector<std::string> loaded;       // "table/id=json", in Load order
    bool flaky_fails = true;               // "flaky" fails retryably while set
    bool reject_load = false;
    runtime::Clock* clock = &runtime::SystemClock();  // the service's: "boot" ends 60 ms after it
};

// put {"id","value"} -> items/id; delete {"id"} -> erased (absent is fine); fail -> refused for good;
// flaky -> retryable error while probe.flaky_fails; boot -> a long action (60 ms).
class ItemsDomain final : public Domain {
public:
    explicit ItemsDomain(std::shared_ptr<Probe> probe) : probe_(std::move(probe)) {}

    std::string_view name() const override { return "items"; }

    std::vector<Action> actions() override {
        return {
            {"put", {"id", "value"}, [this](const wire::Input& in, Tx& tx) { return Put(in, tx, 0); }},
            {"delete", {"id"}, std::bind_front(&ItemsDomain::Delete, this)},
            {"fail",
             {"id"},
             [](const wire::Input&, Tx&) -> Result<Done> {
                 return MakeError(ErrorCode::kFailedPrecondition, "refused: no room");
             }},
            {"flaky", {}, std::bind_front(&ItemsDomain::Flaky, this)},
            {"boot",
             {"id", "value"},
             [this](const wire::Input& in, Tx& tx) { return Put(in, tx, probe_->clock->WallUs() + 60'000); }},
            {"await", {"id", "value"}, [this](const wire::Input& in, Tx& tx) -> Result<Done> {
                 COGS_ASSIGN_OR_RETURN(Done done, Put(in, tx, 0));
                 COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id"));
                 done.wait_for = "item/" + id;  // ends when the test says (context()->Finish)
                 return done;
             }}};
    }

    Status Load(std::string_view table, std::string_view id, std::string_view text) override {
        probe_->loaded.push_back(std::string(table) + "/" + std::string(id) + "=" + std::string(text));
        if (probe_->reject_load) {
            return MakeError(ErrorCode::kInvalidArgument, "unreadable item");
        }
        items_[std::string(id)] = std::string(json::parse(text).as_object().at("value").as_string());
        return Ok();
    }

    std::string Inventory() const override {
        json::array a;
        for (const auto& [id, value] : items_) {
            a.push_back(json::object{{"id", id}, {"value", value}});
        }
        return json::serialize(json::object{{"items", std::move(a)}});
    }

    std::optional<http::Response> Get(const http::Request& request) const override {
        const std::string path = request.Path();
        if (!path.starts_with("/v1/items/")) {
            return std::nullopt;
        }
        http::Response r;
        auto it = items_.find(path.substr(10));
        if (it == items_.end()) {
            r.status = 404;
            r.body = R"({"code":"not_found","message":"no such item","retryable":false})";
        } else {
            r.body = json::serialize(json::object{{"id", it->first}, {"value", it->second}});
        }
        return r;
    }

    // POST /v1/items/{id}/touch: sets the item to "touched" outside any action, answered once
    // that is committed.
    bool Post(const http::Request& request, const http::Respond& respond) override {
        const std::string path = request.Path();
        if (!path.starts_with("/v1/items/") || !path.ends_with("/touch") || context_ == nullptr) {
            return false;
        }
        const std::string id = path.substr(10, path.size() - 10 - 6);
        items_[id] = "touched";
        Tx tx;
        tx.Put("items", id, json::serialize(json::object{{"value", "touched"}}));
        context_->Write(std::move(tx), [respond, id] {
            http::Response r;
            r.body = json::serialize(json::object{{"id", id}, {"value", "touched"}});
            respond(std::move(r));
        });
        return true;
    }

    void Bind(DomainContext& context) override { context_ = &context; }

    const std::map<std::string, std::string>& items() const { return items_; }
    DomainContext* context() const { return context_; }

private:
    // put and boot (ready_at_us > 0: a long action).
    Result<Done> Put(const wire::Input& in, Tx& tx, int64_t ready_at_us) {
        COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id"));
        COGS_ASSIGN_OR_RETURN(const auto value, in.OptionalString("value"));
        ++probe_->performed[ready_at_us == 0 ? "put" : "boot"];
        items_[id] = value.value_or("");
        tx.Put("items", id, json::serialize(json::object{{"value", items_[id]}}));
        return Done{json::serialize(json::object{{"id", id}, {"value", items_[id]}}), ready_at_us};
    }

    Result<Done> Delete(const wire::Input& in, Tx& tx) {
        COGS_ASSIGN_OR_RETURN(const std::string id, in.String("id"));
        ++probe_->performed["delete"];
        const bool existed = items_.erase(id) > 0;
        tx.Erase("items", id);
        return Done{json::serialize(json::object{{"id", id}, {"deleted", existed}})};
    }

    Result<Done> Flaky(const wire::Input&, Tx&) {
        if (probe_->flaky_fails) {
            return MakeError(ErrorCode::kUnavailable, "backend busy");
        }
        ++probe_->performed["flaky"];
        return Done{};
    }

    std::shared_ptr<Probe> probe_;
    std::map<std::string, std::string> items_;
    DomainContext* context_ = nullptr;
};

// ---- helpers ----

template <typename Pred>
bool RunUntilTrue(Pred done, Duration limit = 10s) {
    const auto end = SteadyClock::now() + limit;
    while (!done() && SteadyClock::now() < end) {
        std::this_thread::sleep_for(1ms);  // waiting for another thread, not for time to pass
    }
    return done();
}

json::value Parse(const std::string& s) { return json::parse(s); }

// Invokes `action` under `key` through `client` with `budget`, running `io` until it is answered.
Result<ActionReply> InvokeThrough(asio::io_context& io, workflow::ServiceClient& client, std::string action,
                                  std::string key, std::string input, Duration budget = 2s,
                                  std::string traceparent = "") {
    ActionCall c;
    c.service = "items";
    c.action = std::move(action);
    c.idempotency_key = std::move(key);
    c.input = std::move(input);
    c.deadline = SteadyClock::now() + budget;
    c.traceparent = std::move(traceparent);
    std::optional<Result<ActionReply>> got;
    client.Invoke(std::move(c), [&](Result<ActionReply> r) { got = std::move(r); });
    EXPECT_TRUE(RunUntil(io, [&] { return got.has_value(); }));
    return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
}

class KitTest : public ::testing::Test {
protected:
    // Options whose state lives in this test's directory (removed at its end).
    ServiceOptions Durable() const {
        ServiceOptions options;
        options.state_path = dir_ / "items.db";
        return options;
    }

    void Start(ServiceOptions options = {}) {
        service_.reset();
        probe_ = std::make_shared<Probe>();
        probe_->clock = &clock_;
        options.clock = &clock_;
        auto domain = std::make_unique<ItemsDomain>(probe_);
        domain_ = domain.get();
        auto s = DomainService::Create(io_, std::move(domain), std::move(options));
        ASSERT_TRUE(s) << s.error().ToString();
        service_ = std::move(*s);
    }
    void SetUp() override { Start(); }

    // Calls the service directly; nullopt when no answer came within `wait`.
    std::optional<Result<ActionReply>> Call(std::string action, std::string key, std::string input = "{}",
                                            Duration budget = 2s, Duration wait = 5s) {
        std::optional<Result<ActionReply>> got;
        int calls = 0;
        service_->Handle(std::move(action), std::move(key), std::move(input), SteadyClock::now() + budget,
                         [&](Result<ActionReply> r) {
                             ++calls;
                             got = std::move(r);
                         });
        EXPECT_EQ(calls, 0) << "never inline";
        RunUntil(
            io_, [&] { return got.has_value(); }, wait);
        io_.restart();
        io_.poll();
        EXPECT_LE(calls, 1);
        return got;
    }

    Result<ActionReply> Do(std::string action, std::string key, std::string input = "{}") {
        auto r = Call(std::move(action), std::move(key), std::move(input));
        EXPECT_TRUE(r.has_value()) << "no answer";
        return r.value_or(MakeError(ErrorCode::kInternal, "no answer"));
    }

    Result<ActionReply> StatusOf(std::string key) {
        std::optional<Result<ActionReply>> got;
        service_->Status(std::move(key), [&](Result<ActionReply> r) { got = std::move(r); });
        EXPECT_TRUE(RunUntil(io_, [&] { return got.has_value(); }));
        return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
    }

    json::array Ledger() { return Parse(service_->LedgerJson()).as_array(); }

    const cogs::testing::TempDir dir_{"cogs-kit-test"};  // outlives the service, whose state it holds
    observe::Metrics metrics_;  // outlives the service (ServiceOptions.metrics points into it)
    runtime::FakeClock clock_;  // the service's wall time: long actions end when the test says
    asio::io_context io_;
    std::shared_ptr<Probe> probe_;
    ItemsDomain* domain_ = nullptr;
    std::unique_ptr<DomainService> service_;
};

// ---- semantics ----

TEST_F(KitTest, SameKeyIsPerformedOnceAndAnsweredTheSame) {
    auto first = Do("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_FALSE(first->accepted);
    EXPECT_EQ(Parse(first->output), Parse(R"({"id":"a","value":"1"})"));
    // A re-send, even with a different body, gets the original answer and changes nothing.
    auto again = Do("put", "wf1/a/do", R"({"id":"a","value":"2"})");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->output, first->output);
    EXPECT_EQ(probe_->performed["put"], 1);
    EXPECT_EQ(domain_->items().at("a"), "1");
    EXPECT_EQ(service_->stats().duplicates_answered, 1u);
    auto ledger = Ledger();
    ASSERT_EQ(ledger.size(), 1u);
    EXPECT_EQ(ledger[0].at("key").as_string(), "wf1/a/do");
    EXPECT_EQ(ledger[0].at("kind").as_string(), "do");
    EXPECT_EQ(ledger[0].at("outcome").as_string(), "applied");
    EXPECT_EQ(ledger[0].at("output").at("value").as_string(), "1");
}

TEST_F(KitTest, KeysNeedNotEndInDo) {
    ASSERT_TRUE(Do("put", "custom-key-1", R"({"id":"a","value":"1"})"));
    ASSERT_TRUE(Do("put", "custom-key-1", R"({"id":"a","value":"1"})"));
    EXPECT_EQ(probe_->performed["put"], 1);
    // Its undo is "<key>/undo".
    auto undo = Do("delete", "custom-key-1/undo", R"({"id":"a"})");
    ASSERT_TRUE(undo);
    EXPECT_TRUE(domain_->items().empty());
    EXPECT_EQ(Ledger()[1].at("outcome").as_string(), "compensated");
}

TEST_F(KitTest, UndoAfterDoPerformsTheCompensatingAction) {
    ASSERT_TRUE(Do("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    auto undo = Do("delete", "wf1/a/undo", R"({"id":"a"})");
    ASSERT_TRUE(undo) << undo.error().ToString();
    EXPECT_EQ(Parse(undo->output), Parse(R"({"id":"a","deleted":true})"));
    EXPECT_TRUE(domain_->items().empty());
    auto again = Do("delete", "wf1/a/undo", R"({"id":"a"})");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->output, undo->output);
    EXPECT_EQ(probe_->performed["delete"], 1);
    auto ledger = Ledger();
    ASSERT_EQ(ledger.size(), 2u);
    EXPECT_EQ(ledger[1].at("kind").as_string(), "undo");
    EXPECT_EQ(ledger[1].at("outcome").as_string(), "compensated");
    EXPECT_EQ(service_->stats().compensated, 1u);
}

TEST_F(KitTest, UndoBeforeDoLeavesATombstoneThatRefusesTheLateDo) {
    auto undo = Do("delete", "wf2/a/undo", R"({"id":"a"})");
    ASSERT_TRUE(undo) << undo.error().ToString();
    EXPECT_EQ(Parse(undo->output), Parse(R"({"compensated":false})"));
    EXPECT_EQ(probe_->performed["delete"], 0) << "nothing to compensate: not performed";

    auto late = Do("put", "wf2/a/do", R"({"id":"a","value":"1"})");
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(late.error().retryable);
    EXPECT_EQ(late.error().message, "compensated before applied");
    EXPECT_EQ(probe_->performed["put"], 0);
    EXPECT_TRUE(domain_->items().empty());
    auto status = StatusOf("wf2/a/do");
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, ErrorCode::kFailedPrecondition);
    auto ledger = Ledger();
    ASSERT_EQ(ledger.size(), 1u);
    EXPECT_EQ(ledger[0].at("outcome").as_string(), "tombstone");
}

TEST_F(KitTest, UndoOfARefusedDoIsATombstone) {
    ASSERT_FALSE(Do("fail", "wf1/f/do"));
    auto undo = Do("delete", "wf1/f/undo", R"({"id":"x"})");
    ASSERT_TRUE(undo);
    EXPECT_EQ(Parse(undo->output), Parse(R"({"compensated":false})"));
    EXPECT_EQ(probe_->performed["delete"], 0);
}

TEST_F(KitTest, PermanentFaultsAreRecordedForTheKey) {
    service_->SetFaults(FaultConfig{.permanent_rate = 1.0});
    auto r = Do("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(r.error().retryable);
    service_->SetFaults({});
    auto again = Do("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_FALSE(again) << "the refusal is the key's answer for good";
    EXPECT_EQ(again.error().message, r.error().message);
    EXPECT_EQ(probe_->performed["put"], 0);
    EXPECT_EQ(Ledger()[0].at("outcome").as_string(), "rejected");

    FaultConfig f;
    f.fail_actions = {"put"};
    service_->SetFaults(f);
    auto listed = Do("put", "wf2/a/do", R"({"id":"a","value":"1"})");
    ASSERT_FALSE(listed);
    EXPECT_NE(listed.error().message.find("fail_actions"), std::string::npos);
    // An undo is never refused by a fault.
    service_->SetFaults(FaultConfig{.permanent_rate = 1.0});
    EXPECT_TRUE(Do("delete", "wf2/a/undo", R"({"id":"a"})"));
}

TEST_F(KitTest, InjectedErrorHangAndLostReply) {
    service_->SetFaults(FaultConfig{.error_rate = 1.0});
    auto err = Do("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_FALSE(err);
    EXPECT_EQ(err.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(err.error().retryable);
    EXPECT_EQ(probe_->performed["put"], 0);

    service_->SetFaults(FaultConfig{.hang_rate = 1.0});
    EXPECT_FALSE(Call("put", "wf1/a/do", R"({"id":"a","value":"1"})", 2s, 100ms).has_value());
    EXPECT_EQ(probe_->performed["put"], 0);

    service_->SetFaults(FaultConfig{.lost_reply_rate = 1.0});
    EXPECT_FALSE(Call("put", "wf1/a/do", R"({"id":"a","value":"1"})", 2s, 100ms).has_value());
    EXPECT_EQ(probe_->performed["put"], 1) << "a lost reply's action is applied";
    service_->SetFaults({});
    auto resent = Do("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(resent) << "the re-send learns the outcome";
    EXPECT_EQ(probe_->performed["put"], 1);

    service_->SetFaults(FaultConfig{.hang_all = true});
    EXPECT_FALSE(Call("put", "wf1/a/do", "{}", 2s, 100ms).has_value());
}

TEST_F(KitTest, DomainErrorsRetryableAreNotRecordedDefinitiveAre) {
    auto busy = Do("flaky", "wf1/x/do");
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(busy.error().retryable);
    EXPECT_TRUE(Ledger().empty());
    probe_->flaky_fails = false;
    auto retried = Do("flaky", "wf1/x/do");
    ASSERT_TRUE(retried) << "the same key is performed on the retry";
    EXPECT_EQ(probe_->performed["flaky"], 1);

    auto refused = Do("fail", "wf2/x/do");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_EQ(refused.error().message, "refused: no room");
    auto again = Do("fail", "wf2/x/do");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().message, "refused: no room");
    EXPECT_EQ(service_->stats().duplicates_answered, 1u);
    auto bad = Do("put", "wf3/x/do", R"({"value":"1"})");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(bad.error().message, "id: required");
    auto ledger = Ledger();
    ASSERT_EQ(ledger.size(), 3u);
    EXPECT_EQ(ledger[1].at("outcome").as_string(), "rejected");
    EXPECT_EQ(ledger[1].at("error").as_string(), "refused: no room");
    EXPECT_EQ(ledger[2].at("code").as_string(), "invalid_argument");
}

TEST_F(KitTest, LongActionIsAcceptedThenDone) {
    auto r = Do("boot", "wf1/b/do", R"({"id":"vm1","value":"on"})");
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->accepted);
    clock_.Advance(59ms);
    auto running = StatusOf("wf1/b/do");
    ASSERT_TRUE(running);
    EXPECT_TRUE(running->accepted) << "1 ms before it ends";
    clock_.Advance(1ms);
    auto done = StatusOf("wf1/b/do");
    ASSERT_TRUE(done) << done.error().ToString();
    EXPECT_FALSE(done->accepted);
    EXPECT_EQ(Parse(done->output), Parse(R"({"id":"vm1","value":"on"})"));
    auto missing = StatusOf("nope/b/do");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);

    // FaultConfig.long_actions makes any action long.
    FaultConfig f;
    f.long_actions = {"put"};
    f.accept_duration = 50ms;
    service_->SetFaults(f);
    auto put = Do("put", "wf2/p/do", R"({"id":"p","value":"1"})");
    ASSERT_TRUE(put);
    EXPECT_TRUE(put->accepted);
    clock_.Advance(49ms);
    EXPECT_TRUE(StatusOf("wf2/p/do")->accepted) << "accept_duration after it was applied";
    clock_.Advance(1ms);
    auto put_done = StatusOf("wf2/p/do");
    ASSERT_TRUE(put_done);
    EXPECT_FALSE(put_done->accepted);
}

TEST_F(KitTest, ALongActionTheDomainFinishesAnswersWhatItWasFinishedWith) {
    ServiceOptions options = Durable();
    Start(options);
    auto r = Do("await", "wf1/a/do", R"({"id":"vm1","value":"on"})");
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->accepted);
    ASSERT_TRUE(Do("await", "wf2/a/do", R"({"id":"vm1","value":"on"})")->accepted) << "two wait for one";
    ASSERT_TRUE(Do("await", "wf3/a/do", R"({"id":"vm2","value":"on"})")->accepted);
    clock_.Advance(std::chrono::minutes(30));  // within the ledger's minimum age, as a poll is
    EXPECT_TRUE(StatusOf("wf1/a/do")->accepted) << "no clock ends it";

    // A restart keeps what is pending; Finish reaches it afterwards.
    Start(options);
    EXPECT_TRUE(StatusOf("wf1/a/do")->accepted);
    EXPECT_TRUE(Do("await", "wf1/a/do", R"({"id":"vm1","value":"on"})")->accepted) << "re-sent: the same";
    domain_->context()->Finish("item/vm1", std::string(R"({"id":"vm1","state":"ACTIVE"})"));
    domain_->context()->Finish("item/nobody", std::string("{}"));  // nothing waits: nothing
    for (const char* key : {"wf1/a/do", "wf2/a/do"}) {
        auto done = StatusOf(key);
        ASSERT_TRUE(done) << done.error().ToString();
        EXPECT_FALSE(done->accepted) << key;
        EXPECT_EQ(Parse(done->output), Parse(R"({"id":"vm1","state":"ACTIVE"})")) << key;
    }
    EXPECT_TRUE(StatusOf("wf3/a/do")->accepted) << "another name";

    // A failure is definitive for the key, whatever its retryable bit, and survives a restart.
    domain_->context()->Finish("item/vm2", MakeError(ErrorCode::kUnavailable, "no room on the disk"));
    domain_->context()->Finish("item/vm2", std::string("{}"));  // finished already: nothing
    auto failed = StatusOf("wf3/a/do");
    ASSERT_FALSE(failed);
    EXPECT_FALSE(failed.error().retryable);
    EXPECT_EQ(failed.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_EQ(failed.error().message, "unavailable: no room on the disk");
    Start(options);
    EXPECT_EQ(StatusOf("wf3/a/do").error().message, "unavailable: no room on the disk");
    EXPECT_EQ(Parse(StatusOf("wf1/a/do")->output), Parse(R"({"id":"vm1","state":"ACTIVE"})"));
    // ... and what it started is still compensated by its undo.
    auto undo = Do("delete", "wf3/a/undo", R"({"id":"vm2"})");
    ASSERT_TRUE(undo) << undo.error().ToString();
    EXPECT_EQ(Parse(undo->output), Parse(R"({"id":"vm2","deleted":true})"));
    EXPECT_EQ(probe_->performed["delete"], 1);
}

TEST_F(KitTest, UnknownActionBadInputAndExpiredDeadline) {
    auto unknown = Do("explode", "wf1/x/do");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    EXPECT_FALSE(unknown.error().retryable);
    auto not_object = Do("put", "wf1/y/do", "[1,2]");
    ASSERT_FALSE(not_object);
    EXPECT_EQ(not_object.error().code, ErrorCode::kInvalidArgument);
    auto expired = Call("put", "wf1/z/do", R"({"id":"z","value":"1"})", -1ms);
    ASSERT_TRUE(expired.has_value());
    ASSERT_FALSE(*expired);
    EXPECT_EQ(expired->error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_TRUE(Ledger().empty());
    EXPECT_TRUE(probe_->performed.empty());
}

TEST_F(KitTest, LatencyDelaysTheAnswer) {
    service_->SetFaults(FaultConfig{.latency = 60ms});
    const auto start = SteadyClock::now();
    ASSERT_TRUE(Do("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    EXPECT_GE(SteadyClock::now() - start, 60ms);
}

// ---- durability ----

TEST_F(KitTest, RestartReloadsLedgerAndRecords) {
    ServiceOptions options = Durable();
    Start(options);
    ASSERT_TRUE(Do("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    ASSERT_TRUE(Do("put", "wf1/b/do", R"({"id":"b","value":"2"})"));
    ASSERT_TRUE(Do("delete", "wf1/b/undo", R"({"id":"b"})"));
    ASSERT_TRUE(Do("delete", "wf9/c/undo", R"({"id":"c"})"));  // a tombstone
    ASSERT_FALSE(Do("fail", "wf1/f/do"));
    EXPECT_FALSE(Do("flaky", "wf1/x/do"));  // retryable: not kept
    const std::string ledger_before = service_->LedgerJson();

    Start(options);  // a new process on the same file
    EXPECT_EQ(probe_->loaded, std::vector<std::string>{R"(items/a={"value":"1"})"});
    EXPECT_EQ(domain_->items().size(), 1u);
    EXPECT_EQ(service_->LedgerJson(), ledger_before);
    auto resent = Do("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(resent);
    EXPECT_EQ(Parse(resent->output), Parse(R"({"id":"a","value":"1"})"));
    EXPECT_TRUE(probe_->performed.empty()) << "answered from the ledger, not performed again";
    auto late = Do("put", "wf9/c/do", R"({"id":"c","value":"3"})");
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().message, "compensated before applied");
    auto refused = Do("fail", "wf1/f/do");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().message, "refused: no room");
    // New entries continue the sequence.
    ASSERT_TRUE(Do("put", "wf2/d/do", R"({"id":"d","value":"4"})"));
    EXPECT_EQ(Ledger().back().at("seq").to_number<int64_t>(), 6);
}

TEST_F(KitTest, OneTurnIsOneCommit) {
    ServiceOptions options = Durable();
    Start(options);
    int answered = 0;
    for (int i = 0; i < 50; ++i) {
        const std::string id = std::to_string(i);
        service_->Handle("put", "wf/" + id + "/do", R"({"id":")" + id + R"(","value":"v"})",
                         SteadyClock::now() + 5s, [&](Result<ActionReply> r) { answered += r ? 1 : 0; });
    }
    EXPECT_TRUE(RunUntil(io_, [&] { return answered == 50; }));
    EXPECT_EQ(service_->stats().commits, 1u);
    Start(options);
    EXPECT_EQ(probe_->loaded.size(), 50u);
    EXPECT_EQ(service_->ledger_size(), 50u);
}

// A long run on a fake clock: 4,000 entries made over 200 minutes, 100 per turn. The ledger (in
// memory and in its file) never holds more than keep_at_most once entries are older than min_age,
// never loses an entry younger than min_age (a re-send is still answered from it), and what expired
// while the service was down goes at the next start.
TEST_F(KitTest, TheLedgerIsPrunedByCountAndAgeWhileServingAndAtStart) {
    ServiceOptions options = Durable();
    options.metrics = &metrics_;
    options.ledger_retention.keep_for = 2h;
    options.ledger_retention.keep_at_most = 1000;
    options.ledger_retention.min_age = 30min;
    Start(options);
    const auto put = [](int i) { return R"({"id":"i)" + std::to_string(i) + R"(","value":"v"})"; };
    const auto key = [](int i) { return "wf" + std::to_string(i) + "/a/do"; };
    constexpr int kTurns = 40, kPerTurn = 100;
    size_t most = 0;
    for (int turn = 0; turn < kTurns; ++turn) {
        int answered = 0;
        for (int j = 0; j < kPerTurn; ++j) {
            const int i = turn * kPerTurn + j;
            service_->Handle("put", key(i), put(i), SteadyClock::now() + 5s,
                             [&](Result<ActionReply> r) { answered += r ? 1 : 0; });
        }
        ASSERT_TRUE(RunUntil(io_, [&] { return answered == kPerTurn; }));
        most = std::max(most, service_->ledger_size());
        clock_.Advance(5min);
    }
    EXPECT_EQ(most, 1000u) << "bounded by keep_at_most, and pruned no further than it";
    EXPECT_EQ(SampleOf(metrics_.Render(), "cogs_pruned_total", {{"service", "items"}, {"what", "ledger"}}),
              3000);

    // The newest 1,000 (50 minutes old and younger) answer re-sends; the oldest are gone, so a
    // re-send of one is a new key (no workflow can still send it: it is 200 minutes old).
    const int performed = probe_->performed["put"];
    ASSERT_TRUE(Do("put", key(kTurns * kPerTurn - 600), put(0)));
    EXPECT_EQ(probe_->performed["put"], performed) << "answered from the ledger";
    ASSERT_TRUE(Do("put", key(0), put(0)));
    EXPECT_EQ(probe_->performed["put"], performed + 1) << "pruned: performed as new";

    // The file holds what memory holds; after more than 2 hours down, everything has expired.
    Start(options);
    EXPECT_EQ(service_->ledger_size(), 1000u);
    clock_.Advance(2h + 1min);
    Start(options);
    EXPECT_EQ(service_->ledger_size(), 0u);
    EXPECT_EQ(Ledger().size(), 0u);
}

TEST_F(KitTest, ADomainsOwnWritesAreCommittedBeforeItsRouteAnswers) {
    ServiceOptions options = Durable();
    Start(options);
    http::Request req;
    req.method = "POST";
    req.target = "/v1/items/a/touch";
    std::optional<http::Response> got;
    uint64_t commits_at_answer = 0;
    ASSERT_TRUE(service_->Post(req, [&](http::Response r) {
        commits_at_answer = service_->stats().commits;
        got = std::move(r);
    }));
    EXPECT_FALSE(got) << "never inline";
    ASSERT_TRUE(RunUntil(io_, [&] { return got.has_value(); }));
    EXPECT_EQ(commits_at_answer, 1u) << "answered after the commit";
    EXPECT_EQ(Parse(got->body).at("value"), "touched");
    EXPECT_EQ(service_->ledger_size(), 0u) << "not an action";
    req.target = "/v1/other";
    EXPECT_FALSE(service_->Post(req, [](http::Response) {}));

    Start(options);
    EXPECT_EQ(probe_->loaded, std::vector<std::string>{R"(items/a={"value":"touched"})"});
}

TEST_F(KitTest, LoadErrorFailsCreate) {
    ServiceOptions options = Durable();
    Start(options);
    ASSERT_TRUE(Do("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    service_.reset();
    auto probe = std::make_shared<Probe>();
    probe->reject_load = true;
    auto s = DomainService::Create(io_, std::make_unique<ItemsDomain>(probe), options);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("items/a"), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find("unreadable item"), std::string::npos);
}

// ---- over HTTP ----

class KitHttpTest : public KitTest {
protected:
    // With `metrics`, the service counts into metrics_ and the handler serves GET /metrics.
    void Serve(std::string token_sha256 = "", std::string client_token = "", bool metrics = false) {
        if (metrics) {
            ServiceOptions options;
            options.metrics = &metrics_;
            Start(std::move(options));
        }
        HandlerAccess access{{}, test_routes_};
        if (!token_sha256.empty()) access.token_sha256 = {std::move(token_sha256), Sha256Hex("another-host")};
        auto server =
            http::StartServer(io_, http::ServerOptions{},
                              MakeActionHttpHandler(*service_, access, metrics ? &metrics_ : nullptr));
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        client_ = MakeHttpServiceClient(io_, "127.0.0.1", server_->port(), "items", 8, client_token);
        raw_ = http::MakeClient(io_, http::ClientOptions{"127.0.0.1", server_->port(), 4});
    }
    bool test_routes_ = true;  // as --test-routes

    void TearDown() override {
        client_.reset();
        raw_.reset();
        if (server_) {
            server_->Stop();
        }
        io_.restart();
        io_.poll();
    }

    http::Response Raw(std::string method, std::string target, std::string body = "",
                       std::vector<std::pair<std::string, std::string>> headers = {}) {
        return test_service::Send(io_, *raw_, std::move(method), std::move(target), std::move(body),
                                  std::move(headers));
    }

    Result<ActionReply> Invoke(std::string action, std::string key, std::string input = "{}",
                               std::string traceparent = "") {
        return InvokeThrough(io_, *client_, std::move(action), std::move(key), std::move(input), 2s,
                             std::move(traceparent));
    }

    // Sends put "z" under `key` to a service that hangs every call, and returns once the call ended
    // at its 100 ms deadline, unanswered.
    void SendUnansweredPut(const std::string& key) {
        http::Request req;
        req.method = "POST";
        req.target = "/v1/actions/put";
        req.body = R"({"id":"z","value":"1"})";
        req.headers = {{"idempotency-key", key}};
        bool answered = false;
        raw_->Send(req, SteadyClock::now() + 100ms, [&](Result<http::Response>) { answered = true; });
        ASSERT_TRUE(RunUntil(io_, [&] { return answered; }));
    }

    std::unique_ptr<http::Server> server_;
    std::shared_ptr<workflow::ServiceClient> client_;
    std::unique_ptr<http::Client> raw_;
};

TEST_F(KitHttpTest, ActionsOverHttp) {
    Serve();
    auto first = Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(first) << first.error().ToString();
    auto again = Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(again);
    EXPECT_EQ(Parse(again->output), Parse(first->output));
    EXPECT_EQ(probe_->performed["put"], 1);

    auto unknown = Raw("POST", "/v1/actions/explode", "{}", {{"idempotency-key", "wf1/x/do"}});
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(Parse(unknown.body),
              Parse(R"({"code":"not_found","message":"items has no action 'explode'","retryable":false})"));
    EXPECT_EQ(Raw("POST", "/v1/actions/put", "{not json", {{"idempotency-key", "wf1/y/do"}}).status, 400);
    auto array = Raw("POST", "/v1/actions/put", "[1]", {{"idempotency-key", "wf1/y/do"}});
    EXPECT_EQ(array.status, 400);
    EXPECT_EQ(Parse(array.body).at("message"), "body: must be a JSON object");
    EXPECT_EQ(Raw("POST", "/v1/actions/put", "{}").status, 400) << "no Idempotency-Key";

    auto late = Raw("POST", "/v1/actions/delete", R"({"id":"q"})", {{"idempotency-key", "wf2/q/undo"}});
    EXPECT_EQ(late.status, 200);
    auto refused = Invoke("put", "wf2/q/do", R"({"id":"q","value":"1"})");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(refused.error().retryable);

    auto status = Raw("GET", "/v1/actions/status?key=" + http::UrlEncode("wf1/a/do"));
    EXPECT_EQ(status.status, 200);
    EXPECT_EQ(Parse(status.body).at("output").at("id").as_string(), "a");

    auto ledger = Parse(Raw("GET", "/v1/ledger").body).as_array();
    ASSERT_EQ(ledger.size(), 2u);
    EXPECT_EQ(ledger[1].at("outcome").as_string(), "tombstone");
    auto stats = Parse(Raw("GET", "/v1/stats").body);
    EXPECT_EQ(stats.at("performed").to_number<int64_t>(), 1);
    EXPECT_EQ(stats.at("service").as_string(), "items");

    // A field the action does not declare: refused for good, naming it.
    auto typo = Raw("POST", "/v1/actions/put", R"({"id":"t","typo":1})", {{"idempotency-key", "wf1/t/do"}});
    EXPECT_EQ(typo.status, 400);
    EXPECT_EQ(Parse(typo.body).at("message"), "typo: unknown field");
}

TEST_F(KitHttpTest, InventoryAndDomainRoutes) {
    Serve();
    ASSERT_TRUE(Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    ASSERT_TRUE(Invoke("put", "wf1/b/do", R"({"id":"b","value":"2"})"));
    ASSERT_TRUE(Invoke("delete", "wf1/b/undo", R"({"id":"b"})"));
    auto inventory = Raw("GET", "/v1/inventory");
    ASSERT_EQ(inventory.status, 200);
    EXPECT_EQ(Parse(inventory.body), Parse(R"({"items":[{"id":"a","value":"1"}]})"));
    auto item = Raw("GET", "/v1/items/a");
    EXPECT_EQ(item.status, 200);
    EXPECT_EQ(Parse(item.body).at("value").as_string(), "1");
    EXPECT_EQ(Raw("GET", "/v1/items/b").status, 404);
    EXPECT_EQ(Raw("GET", "/v1/nothing").status, 404);
    EXPECT_EQ(Raw("DELETE", "/v1/inventory").status, 404);
    auto touched = Raw("POST", "/v1/items/b/touch");  // the domain's own POST route
    EXPECT_EQ(touched.status, 200);
    EXPECT_EQ(Parse(touched.body).at("value"), "touched");
    EXPECT_EQ(domain_->items().at("b"), "touched");
    EXPECT_EQ(Raw("POST", "/v1/nothing").status, 404);
}

TEST_F(KitHttpTest, AReaderGetsTheBodyOrTheErrorTheAnswerCarries) {
    const std::string token = "t0k";
    Serve(Sha256Hex(token), token);
    ASSERT_TRUE(Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    const auto read = [&](HttpReader& reader, std::string target) {
        std::optional<Result<std::string>> got;
        reader.Get(std::move(target), SteadyClock::now() + test_service::kPatience,
                   [&](Result<std::string> r) { got = std::move(r); });
        EXPECT_TRUE(RunUntil(io_, [&] { return got.has_value(); }));
        return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
    };
    auto reader = MakeHttpReader(io_, "127.0.0.1", server_->port(), "items", token);
    auto inventory = read(*reader, "/v1/inventory");
    ASSERT_TRUE(inventory) << inventory.error().ToString();
    EXPECT_EQ(Parse(*inventory), Parse(R"({"items":[{"id":"a","value":"1"}]})"));
    auto missing = read(*reader, "/v1/items/zzz");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(missing.error().message, "items: no such item");
    EXPECT_FALSE(missing.error().retryable);
    auto stranger = MakeHttpReader(io_, "127.0.0.1", server_->port(), "items", "wrong");
    auto refused = read(*stranger, "/v1/inventory");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated);
    EXPECT_TRUE(refused.error().message.starts_with("items: missing or wrong bearer token"))
        << refused.error().message;
}

TEST_F(KitHttpTest, FaultsOverHttp) {
    Serve();
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"error_rate":1})").status, 200);
    EXPECT_DOUBLE_EQ(service_->faults().error_rate, 1.0);
    auto r = Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().retryable);
    auto bad = Raw("PUT", "/v1/faults", R"({"typo":1})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(Parse(bad.body),
              Parse(R"({"code":"invalid_argument","message":"typo: unknown field","retryable":false})"));
    EXPECT_DOUBLE_EQ(service_->faults().error_rate, 1.0) << "a rejected PUT changes nothing";
    ASSERT_EQ(Raw("PUT", "/v1/faults", "{}").status, 200);
    EXPECT_EQ(Parse(Raw("GET", "/v1/faults").body).at("error_rate").to_number<double>(), 0.0);
    EXPECT_TRUE(Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
}

TEST_F(KitHttpTest, TokenRequiredEverywhereButHealthz) {
    const std::string token = RandomHex(16);
    Serve(Sha256Hex(token), token);
    auto none = Raw("GET", "/v1/inventory");
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(Parse(none.body).at("code").as_string(), "unauthenticated");
    EXPECT_EQ(Raw("GET", "/v1/inventory", "", {{"authorization", "Bearer wrong"}}).status, 401);
    EXPECT_EQ(Raw("GET", "/v1/inventory", "", {{"authorization", token}}).status, 401) << "no Bearer scheme";
    EXPECT_EQ(
        Raw("POST", "/v1/actions/put", R"({"id":"a","value":"1"})", {{"idempotency-key", "wf0/a/do"}}).status,
        401);
    EXPECT_EQ(Raw("PUT", "/v1/faults", "{}").status, 401);
    EXPECT_EQ(Raw("GET", "/v1/inventory", "", {{"authorization", "Bearer " + token}}).status, 200);
    EXPECT_EQ(Raw("GET", "/v1/inventory", "", {{"authorization", "Bearer another-host"}}).status, 200)
        << "any of the tokens given (one process serving several hosts)";
    EXPECT_EQ(Raw("GET", "/healthz").status, 200);
    EXPECT_TRUE(probe_->performed.empty());

    auto ok = Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(ok) << ok.error().ToString();
    auto wrong = MakeHttpServiceClient(io_, "127.0.0.1", server_->port(), "items", 2, "not-the-token");
    const auto got = InvokeThrough(io_, *wrong, "put", "wf2/a/do", R"({"id":"b","value":"1"})");
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, ErrorCode::kUnauthenticated);
    EXPECT_FALSE(got.error().retryable);
    EXPECT_EQ(probe_->performed["put"], 1);
}

TEST_F(KitHttpTest, TestRoutesAreAbsentWithoutTheFlag) {
    test_routes_ = false;
    const std::string token = RandomHex(16);
    Serve(Sha256Hex(token), token);
    const std::vector<std::pair<std::string, std::string>> auth = {{"authorization", "Bearer " + token}};
    for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
             {"PUT", "/v1/faults"}, {"GET", "/v1/faults"}, {"GET", "/v1/ledger"}}) {
        EXPECT_EQ(Raw(method, path, method == "PUT" ? R"({"hang_all":true})" : "", auth).status, 404)
            << method << " " << path;
        EXPECT_EQ(Raw(method, path, "", {}).status, 401) << "no token: nothing learnt, not even a 404";
    }
    // The service works on, with no fault set.
    auto ok = Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})");
    ASSERT_TRUE(ok) << ok.error().ToString();
    EXPECT_EQ(Raw("GET", "/v1/stats", "", auth).status, 200);
}

TEST_F(KitHttpTest, MetricsCountEveryOutcomeAndPassPromtool) {
    Serve("", "", /*metrics=*/true);
    const auto actions = [&](const std::string& text, const std::string& action, const std::string& outcome) {
        return SampleOf(text, "cogs_service_actions_total",
                        {{"service", "items"}, {"action", action}, {"outcome", outcome}});
    };
    ASSERT_TRUE(Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    ASSERT_TRUE(Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})"));  // a replay
    ASSERT_TRUE(Invoke("put", "wf1/b/do", R"({"id":"b","value":"2"})"));
    ASSERT_FALSE(Invoke("fail", "wf2/f/do", R"({"id":"f"})"));
    ASSERT_FALSE(Invoke("flaky", "wf3/f/do", "{}"));
    auto boot = Invoke("boot", "wf4/b/do", R"({"id":"c","value":"3"})");
    ASSERT_TRUE(boot && boot->accepted);
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"error_rate":1})").status, 200);
    ASSERT_FALSE(Invoke("put", "wf5/a/do", R"({"id":"e","value":"1"})"));
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"fail_actions":["put"]})").status, 200);
    ASSERT_FALSE(Invoke("put", "wf6/a/do", R"({"id":"g","value":"1"})"));
    ASSERT_EQ(Raw("PUT", "/v1/faults", "{}").status, 200);

    const http::Response r = Raw("GET", "/metrics");
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.Header("content-type").find("text/plain"), std::string::npos);
    const std::string& text = r.body;
    EXPECT_EQ(actions(text, "put", "ok"), 2);
    EXPECT_EQ(actions(text, "put", "replayed"), 1);
    EXPECT_EQ(actions(text, "fail", "refused"), 1);
    EXPECT_EQ(actions(text, "flaky", "error"), 1);
    EXPECT_EQ(actions(text, "boot", "accepted"), 1);
    EXPECT_EQ(actions(text, "put", "error"), 1) << "the injected error";
    EXPECT_EQ(actions(text, "put", "refused"), 1) << "the fail_actions refusal";
    EXPECT_EQ(SampleOf(text, "cogs_service_action_duration_seconds_count",
                       {{"service", "items"}, {"action", "put"}}),
              5);
    EXPECT_EQ(SampleOf(text, "cogs_service_faults_injected_total", {{"service", "items"}, {"kind", "error"}}),
              1);
    EXPECT_EQ(
        SampleOf(text, "cogs_service_faults_injected_total", {{"service", "items"}, {"kind", "permanent"}}),
        1);
    EXPECT_EQ(SampleOf(text, "cogs_service_faults_injected_total", {{"service", "items"}, {"kind", "hang"}}),
              0);
    // Ledger: a, b, f (refused), boot, the fail_actions refusal; the flaky and injected errors are not kept.
    EXPECT_EQ(SampleOf(text, "cogs_service_records", {{"service", "items"}, {"kind", "ledger"}}), 5);
    EXPECT_EQ(SampleOf(text, "cogs_http_requests_total",
                       {{"route", "/v1/actions/{id}"}, {"method", "POST"}, {"code", "200"}}),
              3);
    EXPECT_FALSE(std::isnan(SampleOf(text, "process_open_fds", {})));
    EXPECT_EQ(PromtoolProblems(text), "");

    // The records gauge follows the ledger at the next scrape.
    ASSERT_TRUE(Invoke("put", "wf7/a/do", R"({"id":"h","value":"1"})"));
    EXPECT_EQ(SampleOf(Raw("GET", "/metrics").body, "cogs_service_records",
                       {{"service", "items"}, {"kind", "ledger"}}),
              6);
}

TEST_F(KitHttpTest, HangsLatencyAndUnknownActionsAreCountedAndBounded) {
    Serve("", "", /*metrics=*/true);
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"latency_ms":1})").status, 200);
    ASSERT_TRUE(Invoke("put", "wf1/a/do", R"({"id":"a","value":"1"})"));
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"hang_all":true})").status, 200);
    SendUnansweredPut("wf2/z/do");
    ASSERT_EQ(Raw("PUT", "/v1/faults", "{}").status, 200);
    for (int i = 0; i < 80; ++i) {
        EXPECT_EQ(Raw("POST", "/v1/actions/nope" + std::to_string(i), "{}",
                      {{"idempotency-key", "wf3/" + std::to_string(i) + "/do"}})
                      .status,
                  404);
    }
    const std::string text = Raw("GET", "/metrics").body;
    EXPECT_EQ(SampleOf(text, "cogs_service_faults_injected_total", {{"service", "items"}, {"kind", "hang"}}),
              1);
    EXPECT_GE(
        SampleOf(text, "cogs_service_faults_injected_total", {{"service", "items"}, {"kind", "latency"}}), 1);
    EXPECT_EQ(SampleOf(text, "cogs_service_actions_total",
                       {{"service", "items"}, {"action", "put"}, {"outcome", "ok"}}),
              1)
        << "the hung call was never answered, so not counted as an answer";
    // At most 64 action labels: the unknown actions past that count under "other".
    const double other = SampleOf(text, "cogs_service_actions_total",
                                  {{"service", "items"}, {"action", "other"}, {"outcome", "refused"}});
    EXPECT_EQ(other, 80 - (64 - 1)) << "64 labels: put and 63 unknown ones";
    EXPECT_EQ(PromtoolProblems(text), "");
}

TEST_F(KitHttpTest, LogLevelsNeedTheTokenAndChangeALevel) {
    const std::string token = RandomHex(16);
    Serve(Sha256Hex(token), token, /*metrics=*/true);
    EXPECT_EQ(Raw("GET", "/v1/log-levels").status, 401);
    EXPECT_EQ(Raw("PUT", "/v1/log-levels", R"({"items":"debug"})").status, 401);
    EXPECT_EQ(Raw("GET", "/metrics").status, 200) << "Prometheus scrapes without a token";
    const std::vector<std::pair<std::string, std::string>> auth = {{"authorization", "Bearer " + token}};
    ASSERT_TRUE(observe::SetLevel("items", "info"));
    auto got = Raw("GET", "/v1/log-levels", "", auth);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_EQ(Parse(got.body).at("items").as_string(), "info");
    auto put = Raw("PUT", "/v1/log-levels", R"({"items":"debug"})", auth);
    ASSERT_EQ(put.status, 200) << put.body;
    EXPECT_EQ(Parse(put.body).at("items").as_string(), "debug");
    EXPECT_EQ(observe::Levels()["items"], "debug");
    EXPECT_TRUE(observe::Log("items").should_log(spdlog::level::debug));
    EXPECT_EQ(Raw("PUT", "/v1/log-levels", R"({"items":"loud"})", auth).status, 400);
    EXPECT_EQ(observe::Levels()["items"], "debug") << "a refused PUT changes nothing";
    ASSERT_TRUE(observe::SetLevel("items", "info"));
}

TEST_F(KitHttpTest, AnActionLogsOneJsonLineWithItsTraceWorkflowAndResource) {
    ASSERT_TRUE(observe::SetupLogging(observe::LogOptions{"cogs-items", observe::LogFormat::kJson, "info"}));
    Serve("", "", /*metrics=*/true);
    const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    const std::string traceparent = "00-" + trace_id + "-00f067aa0ba902b7-01";
    StderrCapture capture;
    ASSERT_TRUE(Invoke("put", "wf-7/a/do", R"({"id":"item-1","value":"1"})", traceparent));
    ASSERT_TRUE(Invoke("put", "wf-7/a/do", R"({"id":"item-1","value":"1"})", traceparent));  // a replay
    ASSERT_FALSE(Invoke("fail", "wf-8/f/do", R"({"id":"item-2"})"));
    ASSERT_EQ(Raw("GET", "/v1/actions/status?key=" + http::UrlEncode("wf-7/a/do")).status, 200);
    const std::string logs = capture.Stop();

    const auto put = LogLines(logs, "action=put");
    ASSERT_EQ(put.size(), 1u) << "one line per action, none for the replay:\n" << logs;
    EXPECT_EQ(put[0].at("level").as_string(), "info");
    EXPECT_EQ(put[0].at("process").as_string(), "cogs-items");
    EXPECT_EQ(put[0].at("component").as_string(), "items");
    EXPECT_EQ(put[0].at("trace_id").as_string(), trace_id);
    EXPECT_EQ(put[0].at("workflow_id").as_string(), "wf-7");
    EXPECT_EQ(put[0].at("resource_id").as_string(), "item-1");
    const std::string msg(put[0].at("msg").as_string());
    EXPECT_NE(msg.find("outcome=ok"), std::string::npos) << msg;
    EXPECT_NE(msg.find("duration_ms="), std::string::npos) << msg;
    EXPECT_NE(msg.find("key=wf-7/a/do"), std::string::npos) << msg;

    const auto fail = LogLines(logs, "action=fail");
    ASSERT_EQ(fail.size(), 1u) << logs;
    EXPECT_NE(std::string(fail[0].at("msg").as_string()).find("outcome=refused"), std::string::npos);
    EXPECT_FALSE(fail[0].contains("trace_id")) << "no traceparent, no trace id";
    EXPECT_EQ(fail[0].at("workflow_id").as_string(), "wf-8");
    EXPECT_TRUE(LogLines(logs, "status").empty()) << "status polls are not logged";
}

TEST_F(KitHttpTest, ACallNeverAnsweredIsLoggedAsUnanswered) {
    ASSERT_TRUE(observe::SetupLogging(observe::LogOptions{"cogs-items", observe::LogFormat::kJson, "info"}));
    Serve();
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"hang_all":true})").status, 200);
    StderrCapture capture;
    SendUnansweredPut("wf-9/z/do");
    const std::string logs = capture.Stop();
    const auto lines = LogLines(logs, "action=put");
    ASSERT_EQ(lines.size(), 1u) << logs;
    EXPECT_NE(std::string(lines[0].at("msg").as_string()).find("outcome=unanswered"), std::string::npos);
    EXPECT_EQ(lines[0].at("resource_id").as_string(), "z");
}

// ---- faults, flags, serve helpers ----

TEST(FaultConfigJson, RoundTripsAndNamesBadFields) {
    auto f = ParseFaultConfig(
        R"({"error_rate":0.1,"hang_rate":0.2,"latency_ms":5,"fail_actions":["boot"],"hang_all":true,"accept_duration_ms":250})");
    ASSERT_TRUE(f) << f.error().ToString();
    EXPECT_DOUBLE_EQ(f->error_rate, 0.1);
    EXPECT_EQ(f->latency, 5ms);
    EXPECT_EQ(f->accept_duration, 250ms);
    EXPECT_EQ(f->fail_actions, std::vector<std::string>{"boot"});
    EXPECT_TRUE(f->hang_all);
    auto again = ParseFaultConfig(ToJson(*f));
    ASSERT_TRUE(again);
    EXPECT_EQ(ToJson(*again), ToJson(*f));

    auto unknown = ParseFaultConfig(R"({"eror_rate":0.1})");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(unknown.error().message, "eror_rate: unknown field");
    EXPECT_EQ(unknown.error().field(), "eror_rate");
    auto bad = ParseFaultConfig(R"({"hang_rate":"lots"})");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message, "hang_rate: must be a number");
    EXPECT_EQ(ParseFaultConfig(R"({"error_rate":2})").error().message, "error_rate: must be between 0 and 1");
    EXPECT_EQ(ParseFaultConfig(R"({"latency_ms":-1})").error().message,
              "latency_ms: must be between 0 and 86400000");
    EXPECT_EQ(ParseFaultConfig(R"({"fail_actions":"boot"})").error().field(), "fail_actions");
    EXPECT_EQ(ParseFaultConfig(R"({"hang_all":1})").error().message, "hang_all: must be true or false");
    EXPECT_EQ(ParseFaultConfig("[]").error().message, "faults: must be a JSON object");
}

TEST(FaultRoller, OneDrawInTheDocumentedOrder) {
    FaultRoller roller(1);
    EXPECT_EQ(roller.Roll(FaultConfig{.error_rate = 1}, "a", CallKind::kDo), Fault::kError);
    EXPECT_EQ(roller.Roll(FaultConfig{.hang_rate = 1}, "a", CallKind::kDo), Fault::kHang);
    EXPECT_EQ(roller.Roll(FaultConfig{.permanent_rate = 1}, "a", CallKind::kDo), Fault::kPermanent);
    EXPECT_EQ(roller.Roll(FaultConfig{.permanent_rate = 1}, "a", CallKind::kUndo), Fault::kNone);
    EXPECT_EQ(roller.Roll(FaultConfig{.lost_reply_rate = 1}, "a", CallKind::kUndo), Fault::kLostReply);
    EXPECT_EQ(roller.Roll(FaultConfig{.error_rate = 1, .hang_rate = 1}, "a", CallKind::kDo), Fault::kError);
    FaultConfig f;
    f.fail_actions = {"a"};
    EXPECT_EQ(roller.Roll(f, "a", CallKind::kDo), Fault::kPermanent);
    EXPECT_EQ(roller.Roll(f, "b", CallKind::kDo), Fault::kNone);
    // The same seed replays the same faults.
    FaultRoller x(7), y(7);
    const FaultConfig half{.error_rate = 0.5};
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(x.Roll(half, "a", CallKind::kDo), y.Roll(half, "a", CallKind::kDo));
    }
}

TEST(ServeFlags, ParseIntoServeOptions) {
    CLI::App app;
    ServeOptions o;
    AddServeFlags(app, o);
    app.parse(
        "--listen 127.0.0.1:8080 --port-file /p --state /s.db --seed 9 --token-file /t --token-file /u "
        "--insecure --test-routes --error-rate 0.04 "
        "--permanent-rate 0.03 --hang-rate 0.02 --lost-reply-rate 0.01 --latency-ms 2.5 --fail-action x "
        "--fail-action y --long-action boot --accept-ms 250 --hang-all --log-level debug --log-format text "
        "--max-body-bytes 4096 --ledger-retention-hours 48 --ledger-max 5000 --ledger-min-age-minutes 90",
        false);
    EXPECT_EQ(o.listen, "127.0.0.1:8080");
    EXPECT_EQ(o.port_file, "/p");
    EXPECT_EQ(o.service.state_path, "/s.db");
    EXPECT_EQ(o.service.seed, 9u);
    EXPECT_EQ(o.token_files, (std::vector<std::string>{"/t", "/u"}));
    EXPECT_TRUE(o.insecure);
    EXPECT_TRUE(o.test_routes);
    ServeOptions defaults;
    EXPECT_FALSE(defaults.insecure) << "a credential is required unless asked otherwise";
    EXPECT_FALSE(defaults.test_routes);
    EXPECT_EQ(o.log_level, "debug");
    EXPECT_EQ(o.log_format, "text");
    EXPECT_EQ(o.max_body_bytes, 4096u);
    const FaultConfig& f = o.service.faults;
    EXPECT_DOUBLE_EQ(f.error_rate, 0.04);
    EXPECT_DOUBLE_EQ(f.permanent_rate, 0.03);
    EXPECT_DOUBLE_EQ(f.hang_rate, 0.02);
    EXPECT_DOUBLE_EQ(f.lost_reply_rate, 0.01);
    EXPECT_EQ(f.latency, 2500us);
    EXPECT_EQ(f.fail_actions, (std::vector<std::string>{"x", "y"}));
    EXPECT_EQ(f.long_actions, std::vector<std::string>{"boot"});
    EXPECT_EQ(f.accept_duration, 250ms);
    EXPECT_TRUE(f.hang_all);
    EXPECT_EQ(o.service.ledger_retention.keep_for, 48h);
    EXPECT_EQ(o.service.ledger_retention.keep_at_most, 5000u);
    EXPECT_EQ(o.service.ledger_retention.min_age, 90min);

    CLI::App bad;
    ServeOptions b;
    AddServeFlags(bad, b);
    EXPECT_THROW(bad.parse("--error-rate 2", false), CLI::ValidationError);
    EXPECT_THROW(bad.parse("--log-format xml", false), CLI::ValidationError);
    EXPECT_THROW(bad.parse("--log-level loud", false), CLI::ValidationError);
}

TEST(ServeHelpers, ListenPortFileToken) {
    auto l = ParseListen("127.0.0.1:0");
    ASSERT_TRUE(l);
    EXPECT_EQ(l->first, "127.0.0.1");
    EXPECT_EQ(l->second, 0);
    auto v6 = ParseListen("[::1]:8080");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->first, "::1");
    EXPECT_EQ(v6->second, 8080);
    EXPECT_FALSE(ParseListen("localhost"));
    EXPECT_FALSE(ParseListen("h:70000"));
    EXPECT_FALSE(ParseListen("h:-1"));
    EXPECT_FALSE(ParseListen(":80"));

    const cogs::testing::TempDir dir("cogs-kit-test");
    ASSERT_TRUE(WritePortFile(dir / "port", 4242));
    std::ifstream in(dir / "port");
    int port = 0;
    in >> port;
    EXPECT_EQ(port, 4242);
    EXPECT_FALSE(std::filesystem::exists(dir / "port.tmp"));

    std::ofstream(dir / "token") << "  s3cret\n";
    auto token = runtime::ReadTokenFile(dir / "token");
    ASSERT_TRUE(token);
    EXPECT_EQ(*token, "s3cret");
    std::ofstream(dir / "empty") << "\n";
    EXPECT_FALSE(runtime::ReadTokenFile(dir / "empty"));
    EXPECT_FALSE(runtime::ReadTokenFile(dir / "missing"));
}

TEST(Serve, ServesUntilSigtermThenKeepsItsState) {
    const cogs::testing::TempDir dir("cogs-kit-test");
    const std::string token = RandomHex(16);
    std::ofstream(dir / "token") << token << "\n";
    ServeOptions options;
    options.port_file = dir / "port";
    options.service.state_path = dir / "items.db";
    options.token_files = {dir / "token"};
    options.log_level = "warn";

    auto probe = std::make_shared<Probe>();
    std::atomic<int> listening_port{-1};
    int rc = -1;
    std::thread server([&] {
        rc = Serve(options, std::make_unique<ItemsDomain>(probe),
                   [&](asio::io_context&, uint16_t port) { listening_port = port; });
    });
    ASSERT_TRUE(RunUntilTrue([&] { return listening_port >= 0; }));
    std::ifstream in(options.port_file);
    int port = 0;
    in >> port;
    EXPECT_EQ(port, listening_port.load()) << "the port file is written before on_listening";

    asio::io_context io;
    auto client = MakeHttpServiceClient(io, "127.0.0.1", static_cast<uint16_t>(port), "items", 2, token);
    const auto got = InvokeThrough(io, *client, "put", "wf1/a/do", R"({"id":"a","value":"1"})", 5s);
    ASSERT_TRUE(got) << got.error().ToString();

    ::kill(::getpid(), SIGTERM);
    server.join();
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(probe->performed["put"], 1);

    // A second life on the same state: the item is loaded, the key answered from the ledger.
    boost::asio::io_context io2;
    auto probe2 = std::make_shared<Probe>();
    ServiceOptions so;
    so.state_path = options.service.state_path;
    auto service = DomainService::Create(io2, std::make_unique<ItemsDomain>(probe2), so);
    ASSERT_TRUE(service) << service.error().ToString();
    EXPECT_EQ(probe2->loaded, std::vector<std::string>{R"(items/a={"value":"1"})"});
    EXPECT_EQ((*service)->ledger_size(), 1u);
}

TEST(Serve, StartUpFailuresAreReportedNotServed) {
    const cogs::testing::TempDir dir("cogs-kit-test");
    ServeOptions bad_listen;
    bad_listen.listen = "nowhere";
    bad_listen.log_level = "off";
    EXPECT_NE(Serve(bad_listen, std::make_unique<ItemsDomain>(std::make_shared<Probe>())), 0);
    ServeOptions bad_token;
    bad_token.token_files = {dir / "missing"};
    bad_token.log_level = "off";
    EXPECT_NE(Serve(bad_token, std::make_unique<ItemsDomain>(std::make_shared<Probe>())), 0);
    // No credential and no --insecure: refused before anything listens or opens its state.
    ServeOptions no_token;
    no_token.port_file = dir / "no-token.port";
    no_token.service.state_path = dir / "no-token.db";
    no_token.log_level = "off";
    EXPECT_EQ(Serve(no_token, std::make_unique<ItemsDomain>(std::make_shared<Probe>())), 2);
    EXPECT_FALSE(std::filesystem::exists(no_token.port_file));
    EXPECT_FALSE(std::filesystem::exists(no_token.service.state_path));
    ServeOptions bad_state;
    bad_state.insecure = true;  // fails for its state, not for want of a token
    bad_state.service.state_path = dir / "no/such/dir/items.db";
    bad_state.log_level = "off";
    EXPECT_NE(Serve(bad_state, std::make_unique<ItemsDomain>(std::make_shared<Probe>())), 0);
}

}  // namespace
}  // namespace cogs::services::kit
