#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <optional>

#include "cogs/http/client.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/services/kit/http_client.h"
#include "cogs/services/kit/internal/test_observe.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/sim/sim_client.h"
#include "cogs/services/sim/sim_service.h"
#include "cogs/sqlite/db.h"
#include "test/support/temp_dir.h"

namespace cogs::services::sim {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
using kit::test_observe::LogLines;
using kit::test_observe::PromtoolProblems;
using kit::test_observe::SampleOf;
using kit::test_observe::StderrCapture;
using kit::test_service::RunFor;
using kit::test_service::RunUntil;
using workflow::ActionCall;
using workflow::ActionReply;
using workflow::ServiceClient;

ActionCall Call(std::string action, std::string key, Duration timeout = 2s, std::string input = "{}") {
    ActionCall c;
    c.service = "sim";
    c.action = std::move(action);
    c.idempotency_key = std::move(key);
    c.input = std::move(input);
    c.deadline = SteadyClock::now() + timeout;
    c.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    return c;
}

json::value Parse(const std::string& s) { return json::parse(s); }

class SimTest : public ::testing::Test {
protected:
    void Start(SimOptions options = {}) {
        client_.reset();
        service_ = std::make_unique<SimService>(io_, std::move(options));
        client_ = MakeSimClient(*service_, "sim");
    }
    void SetUp() override { Start(); }

    Result<ActionReply> Invoke(ActionCall call) { return Run(call, false); }
    Result<ActionReply> Status(ActionCall call) { return Run(call, true); }

    Result<ActionReply> Run(ActionCall call, bool status) {
        std::optional<Result<ActionReply>> got;
        int calls = 0;
        auto done = [&](Result<ActionReply> r) {
            ++calls;
            got = std::move(r);
        };
        if (status) {
            client_->Status(std::move(call), done);
        } else {
            client_->Invoke(std::move(call), done);
        }
        EXPECT_EQ(calls, 0) << "never inline";
        EXPECT_TRUE(RunUntil(io_, [&] { return got.has_value(); }));
        io_.restart();
        io_.poll();
        EXPECT_EQ(calls, 1) << "exactly once";
        return got.value_or(MakeError(ErrorCode::kInternal, "no answer"));
    }

    const cogs::testing::TempDir dir_{"cogs-sim-test"};  // outlives the service, whose ledger it holds
    observe::Metrics metrics_;  // outlives the service (SimOptions.metrics may point into it)
    asio::io_context io_;
    std::unique_ptr<SimService> service_;
    std::shared_ptr<ServiceClient> client_;
};

TEST_F(SimTest, SameKeyTwiceAppliesOnceAndAnswersTheSame) {
    auto first = Invoke(Call("create_port", "wf1/port/do"));
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_FALSE(first->accepted);
    auto again = Invoke(Call("create_port", "wf1/port/do"));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->output, first->output);
    auto out = Parse(first->output).as_object();
    EXPECT_EQ(out["action"].as_string(), "create_port");
    EXPECT_EQ(out["seq"].to_number<int64_t>(), 1);
    EXPECT_TRUE(out["id"].as_string().starts_with("sim-"));

    auto ledger = service_->Ledger();
    ASSERT_EQ(ledger.size(), 1u);
    EXPECT_EQ(ledger[0].key, "wf1/port/do");
    EXPECT_EQ(ledger[0].outcome, Outcome::kApplied);
    EXPECT_EQ(ledger[0].output, first->output);
    EXPECT_EQ(service_->stats().applied, 1u);
    EXPECT_EQ(service_->stats().duplicates_answered, 1u);
}

TEST_F(SimTest, AllocateIpGivesEachKeyItsOwnAddress) {
    auto a = Invoke(Call("allocate_ip", "wf1/ip/do"));
    auto b = Invoke(Call("allocate_ip", "wf2/ip/do"));
    ASSERT_TRUE(a && b);
    const auto ip_a = Parse(a->output).as_object()["ip"].as_string();
    const auto ip_b = Parse(b->output).as_object()["ip"].as_string();
    EXPECT_TRUE(ip_a.starts_with("10."));
    EXPECT_NE(ip_a, ip_b);
    EXPECT_EQ(Parse(Invoke(Call("allocate_ip", "wf1/ip/do"))->output).as_object()["ip"].as_string(), ip_a);
}

TEST_F(SimTest, KeysMustEndWithDoOrUndo) {
    auto r = Invoke(Call("boot", "wf1/boot"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_TRUE(service_->Ledger().empty());
}

TEST_F(SimTest, UndoAfterDoCompensates) {
    auto done = Invoke(Call("allocate_ip", "wf1/ip/do"));
    ASSERT_TRUE(done);
    auto undo = Invoke(Call("release_ip", "wf1/ip/undo"));
    ASSERT_TRUE(undo) << undo.error().ToString();
    auto out = Parse(undo->output).as_object();
    EXPECT_TRUE(out["compensated"].as_bool());
    EXPECT_EQ(out["id"], Parse(done->output).as_object()["id"]) << "the undo names what the do created";
    EXPECT_EQ(Invoke(Call("release_ip", "wf1/ip/undo"))->output, undo->output);
    auto counts = service_->Counts();
    EXPECT_EQ(counts.applied, 1u);
    EXPECT_EQ(counts.compensated, 1u);
    EXPECT_EQ(counts.live(), 0u);
    // The do, re-sent after its undo, still answers what it answered (the engine never does this,
    // but the answer must not change).
    EXPECT_EQ(Invoke(Call("allocate_ip", "wf1/ip/do"))->output, done->output);
}

TEST_F(SimTest, UndoBeforeDoLeavesATombstoneThatRefusesTheDo) {
    auto undo = Invoke(Call("release_ip", "wf1/ip/undo"));
    ASSERT_TRUE(undo) << undo.error().ToString();
    EXPECT_FALSE(Parse(undo->output).as_object()["compensated"].as_bool());
    auto late = Invoke(Call("allocate_ip", "wf1/ip/do"));
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(late.error().retryable);
    EXPECT_EQ(late.error().message, "compensated before applied");
    EXPECT_EQ(Invoke(Call("release_ip", "wf1/ip/undo"))->output, undo->output)
        << "a second undo answers the same";
    auto ledger = service_->Ledger();
    ASSERT_EQ(ledger.size(), 1u);
    EXPECT_EQ(ledger[0].outcome, Outcome::kTombstone);
    EXPECT_EQ(service_->Counts().applied, 0u);
    EXPECT_EQ(service_->stats().refused_after_undo, 1u);
}

TEST_F(SimTest, PermanentFailureIsRememberedForTheKey) {
    service_->SetFaults(FaultConfig{.permanent_rate = 1.0});
    auto r = Invoke(Call("create_volume", "wf1/vol/do"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(r.error().retryable);
    service_->SetFaults({});
    auto again = Invoke(Call("create_volume", "wf1/vol/do"));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().message, r.error().message);
    EXPECT_TRUE(Invoke(Call("create_volume", "wf2/vol/do"))) << "other keys are fine";
    EXPECT_EQ(service_->Counts().rejected, 1u);
    EXPECT_EQ(service_->Counts().applied, 1u);
    // Undo calls never fail permanently; the undo of a refused do finds nothing to undo.
    service_->SetFaults(FaultConfig{.permanent_rate = 1.0});
    auto undo = Invoke(Call("delete_volume", "wf1/vol/undo"));
    ASSERT_TRUE(undo);
    EXPECT_EQ(service_->Find("wf1/vol/undo")->outcome, Outcome::kTombstone);
}

TEST_F(SimTest, FailActionsAlwaysFail) {
    FaultConfig f;
    f.fail_actions = {"boot"};
    service_->SetFaults(f);
    for (int i = 0; i < 5; ++i) {
        auto r = Invoke(Call("boot", "wf" + std::to_string(i) + "/boot/do"));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
    }
    EXPECT_TRUE(Invoke(Call("create_port", "wf1/port/do")));
    EXPECT_EQ(service_->stats().permanent_injected, 5u);
}

TEST_F(SimTest, ErrorIsRetryableAndAppliesNothing) {
    service_->SetFaults(FaultConfig{.error_rate = 1.0});
    auto r = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(r.error().retryable);
    EXPECT_TRUE(service_->Ledger().empty());
    service_->SetFaults({});
    EXPECT_TRUE(Invoke(Call("boot", "wf1/boot/do"))) << "the retry applies";
    EXPECT_EQ(service_->Counts().applied, 1u);
}

TEST_F(SimTest, LostReplyAppliesButTheCallerTimesOut) {
    service_->SetFaults(FaultConfig{.lost_reply_rate = 1.0});
    const auto start = SteadyClock::now();
    auto r = Invoke(Call("boot", "wf1/boot/do", 100ms));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_TRUE(r.error().retryable);
    EXPECT_GE(SteadyClock::now() - start, 100ms);
    ASSERT_TRUE(service_->Find("wf1/boot/do"));
    EXPECT_EQ(service_->Find("wf1/boot/do")->outcome, Outcome::kApplied);
    // The retry, with the same key, gets the original outcome.
    auto retry = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(retry);
    EXPECT_EQ(retry->output, service_->Find("wf1/boot/do")->output);
    EXPECT_EQ(service_->Counts().applied, 1u);
}

TEST_F(SimTest, HangTimesOutAndAppliesNothing) {
    service_->SetFaults(FaultConfig{.hang_rate = 1.0});
    const auto start = SteadyClock::now();
    auto r = Invoke(Call("boot", "wf1/boot/do", 100ms));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_GE(SteadyClock::now() - start, 100ms);
    EXPECT_LT(SteadyClock::now() - start, 1s);
    EXPECT_TRUE(service_->Ledger().empty());
    EXPECT_EQ(service_->stats().hangs_injected, 1u);
}

TEST_F(SimTest, HangAllParksManyCallsUntilTheirDeadlines) {
    FaultConfig f;
    f.hang_all = true;
    service_->SetFaults(f);
    constexpr int kCalls = 10000;
    int timed_out = 0;
    int answered = 0;
    for (int i = 0; i < kCalls; ++i) {
        client_->Invoke(Call("boot", "wf" + std::to_string(i) + "/boot/do", 200ms),
                        [&](Result<ActionReply> r) {
                            ++answered;
                            timed_out += !r && r.error().code == ErrorCode::kDeadlineExceeded;
                        });
    }
    ASSERT_TRUE(RunUntil(io_, [&] { return answered == kCalls; }));
    EXPECT_EQ(timed_out, kCalls);
    EXPECT_TRUE(service_->Ledger().empty());
}

TEST_F(SimTest, LatencyDelaysTheAnswerByATimer) {
    service_->SetFaults(FaultConfig{.latency = 100ms});
    const auto start = SteadyClock::now();
    auto r = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(r);
    EXPECT_GE(SteadyClock::now() - start, 100ms);
    // Beyond the deadline: the caller times out, the action was applied anyway.
    auto slow = Invoke(Call("boot", "wf2/boot/do", 30ms));
    ASSERT_FALSE(slow);
    EXPECT_EQ(slow.error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_TRUE(service_->Find("wf2/boot/do"));
    RunFor(io_, 150ms);  // the late answer arrives and is dropped
}

TEST_F(SimTest, ExpiredOnArrivalIsNotStarted) {
    std::optional<Result<ActionReply>> got;
    service_->Handle("boot", "wf1/boot/do", "{}", SteadyClock::now() - 1ms,
                     [&](Result<ActionReply> r) { got = r; });
    ASSERT_TRUE(RunUntil(io_, [&] { return got.has_value(); }));
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_TRUE(service_->Ledger().empty());
}

TEST_F(SimTest, LongActionIsAcceptedThenDone) {
    FaultConfig f;
    f.long_actions = {"boot"};
    f.accept_duration = 100ms;
    service_->SetFaults(f);
    auto r = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->accepted);
    ASSERT_TRUE(service_->Find("wf1/boot/do")) << "recorded at acceptance";
    auto running = Status(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(running);
    EXPECT_TRUE(running->accepted);
    RunFor(io_, 120ms);
    auto done = Status(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(done);
    EXPECT_FALSE(done->accepted);
    EXPECT_EQ(Parse(done->output).as_object()["action"].as_string(), "boot");
    EXPECT_EQ(Invoke(Call("boot", "wf1/boot/do"))->output, done->output) << "a re-send after completion";
    auto unknown = Status(Call("boot", "nope/boot/do"));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_F(SimTest, ManyCallsAreAllAnsweredOnce) {
    constexpr int kCalls = 50000;
    int ok = 0;
    int answered = 0;
    for (int i = 0; i < kCalls; ++i) {
        client_->Invoke(Call("create_port", "wf" + std::to_string(i % 40000) + "/port/do"),
                        [&](Result<ActionReply> r) {
                            ++answered;
                            ok += r.has_value();
                        });
    }
    ASSERT_TRUE(RunUntil(
        io_, [&] { return answered == kCalls; }, 60s));
    io_.restart();
    io_.poll();
    EXPECT_EQ(answered, kCalls);
    EXPECT_EQ(ok, kCalls);
    EXPECT_EQ(service_->Counts().applied, 40000u);
    EXPECT_EQ(service_->stats().duplicates_answered, 10000u);
}

TEST_F(SimTest, LedgerSurvivesARestart) {
    const std::string path = dir_ / "ledger.db";
    SimOptions options;
    options.ledger_path = path;
    Start(options);
    auto ip = Invoke(Call("allocate_ip", "wf1/ip/do"));
    ASSERT_TRUE(ip);
    ASSERT_TRUE(Invoke(Call("release_ip", "wf1/ip/undo")));
    ASSERT_TRUE(Invoke(Call("release_ip", "wf2/ip/undo")));  // a tombstone
    service_->SetFaults(FaultConfig{.permanent_rate = 1.0});
    auto refused = Invoke(Call("create_volume", "wf3/vol/do"));
    ASSERT_FALSE(refused);
    service_->SetFaults(FaultConfig{.lost_reply_rate = 1.0});
    ASSERT_FALSE(Invoke(Call("boot", "wf4/boot/do", 50ms)));
    const auto before = service_->Ledger();
    ASSERT_EQ(before.size(), 5u);

    Start(options);  // a new process, as far as the ledger knows
    const auto after = service_->Ledger();
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < after.size(); ++i) {
        EXPECT_EQ(after[i].key, before[i].key);
        EXPECT_EQ(after[i].seq, before[i].seq);
        EXPECT_EQ(after[i].outcome, before[i].outcome);
        EXPECT_EQ(after[i].output, before[i].output);
    }
    EXPECT_EQ(Invoke(Call("allocate_ip", "wf1/ip/do"))->output, ip->output);
    EXPECT_EQ(Invoke(Call("allocate_ip", "wf2/ip/do")).error().message, "compensated before applied");
    EXPECT_EQ(Invoke(Call("create_volume", "wf3/vol/do")).error().message, refused.error().message);
    EXPECT_TRUE(Invoke(Call("boot", "wf4/boot/do"))) << "the lost reply's outcome";
    auto fresh = Invoke(Call("boot", "wf5/boot/do"));
    ASSERT_TRUE(fresh);
    EXPECT_EQ(Parse(fresh->output).as_object()["seq"].to_number<int64_t>(), 6) << "sequence continues";
    EXPECT_EQ(service_->stats().applied, 1u);
}

// A ledger written by the sim before its record was shared with the kit (no code column, no
// schema version): a service restarted on it answers every key from it.
TEST_F(SimTest, ALedgerOfTheOlderLayoutIsLoaded) {
    const std::string path = dir_ / "ledger.db";
    {
        auto db = sqlite::Db::Open(path, {});
        ASSERT_TRUE(db) << db.error().ToString();
        // Written a moment ago: entries older than the ledger's retention would be pruned at start.
        const std::string at = std::to_string(WallNowUs());
        ASSERT_TRUE((*db)->Exec(R"sql(
            PRAGMA journal_mode = WAL;
            CREATE TABLE ledger (key TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, action TEXT NOT NULL,
                kind TEXT NOT NULL, outcome TEXT NOT NULL, output TEXT NOT NULL, at_us INTEGER NOT NULL,
                done_at_us INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
            INSERT INTO ledger VALUES('wf1/ip/do', 1, 'allocate_ip', 'do', 'applied',
                '{"id":"sim-1","action":"allocate_ip","seq":1,"ip":"10.0.0.1"}', )sql" +
                                at + R"sql(, 0);
            INSERT INTO ledger VALUES('wf2/ip/undo', 2, 'release_ip', 'undo', 'tombstone', '{}', )sql" +
                                at + R"sql(, 0);
            INSERT INTO ledger VALUES('wf3/vol/do', 3, 'create_volume', 'do', 'rejected', 'no room', )sql" +
                                at + R"sql(, 0);
        )sql"));
    }
    SimOptions options;
    options.ledger_path = path;
    Start(options);
    EXPECT_EQ(service_->Ledger().size(), 3u);
    EXPECT_EQ(service_->Counts().applied, 1u);
    EXPECT_EQ(Invoke(Call("allocate_ip", "wf2/ip/do")).error().message, "compensated before applied");
    auto refused = Invoke(Call("create_volume", "wf3/vol/do"));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_EQ(refused.error().message, "no room");
    ASSERT_TRUE(Invoke(Call("allocate_ip", "wf1/ip/do")));
    auto fresh = Invoke(Call("boot", "wf4/boot/do"));
    ASSERT_TRUE(fresh);
    EXPECT_EQ(Parse(fresh->output).as_object()["seq"].to_number<int64_t>(), 4) << "sequence continues";

    Start(options);  // and again, now on the shared layout
    EXPECT_EQ(service_->Ledger().size(), 4u);
    EXPECT_EQ(service_->stats().applied, 0u);
}

// ---- over HTTP ----

class SimHttpTest : public SimTest {
protected:
    // Served as cogs-sim serves it: with its metrics and GET /metrics.
    void SetUp() override {
        SimOptions options;
        options.metrics = &metrics_;
        Start(std::move(options));
        auto server = http::StartServer(io_, http::ServerOptions{},
                                        kit::MakeActionHttpHandler(*service_, {{}, true}, &metrics_));
        ASSERT_TRUE(server) << server.error().ToString();
        server_ = std::move(*server);
        client_ = kit::MakeHttpServiceClient(io_, "127.0.0.1", server_->port(), "sim", 8);
        raw_ = http::MakeClient(io_, http::ClientOptions{"127.0.0.1", server_->port(), 4});
    }
    void TearDown() override {
        client_.reset();
        raw_.reset();
        server_->Stop();
        io_.restart();
        io_.poll();
    }

    http::Response Raw(std::string method, std::string target, std::string body = "",
                       std::vector<std::pair<std::string, std::string>> headers = {}) {
        return kit::test_service::Send(io_, *raw_, std::move(method), std::move(target), std::move(body),
                                       std::move(headers));
    }

    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Client> raw_;
};

TEST_F(SimHttpTest, InvokeOverHttpIsIdempotent) {
    auto first = Invoke(Call("allocate_ip", "wf1/ip/do", 2s, R"({"network":"n1"})"));
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_TRUE(Parse(first->output).as_object()["ip"].is_string());
    auto again = Invoke(Call("allocate_ip", "wf1/ip/do"));
    ASSERT_TRUE(again);
    EXPECT_EQ(Parse(again->output), Parse(first->output));
    EXPECT_EQ(service_->Ledger().size(), 1u);
    auto undo = Invoke(Call("release_ip", "wf1/ip/undo"));
    ASSERT_TRUE(undo);
    EXPECT_EQ(service_->Counts().live(), 0u);
}

TEST_F(SimHttpTest, InventoryIsEveryDoAppliedAndNotCompensated) {
    ASSERT_TRUE(Invoke(Call("create_port", "wf2/port/do")));
    ASSERT_TRUE(Invoke(Call("create_port", "wf1/port/do")));
    ASSERT_TRUE(Invoke(Call("create_port", "wf3/port/do")));
    ASSERT_TRUE(Invoke(Call("delete_port", "wf3/port/undo")));  // compensated
    ASSERT_TRUE(Invoke(Call("delete_port", "wf4/port/undo")));  // a tombstone
    ASSERT_FALSE(Invoke(Call("create_port", "wf4/port/do")));   // refused after it
    const http::Response res = Raw("GET", "/v1/inventory");
    ASSERT_EQ(res.status, 200) << res.body;
    const json::array applied = Parse(res.body).as_object()["applied"].as_array();
    ASSERT_EQ(applied.size(), 2u) << res.body;
    EXPECT_EQ(applied[0].as_object().at("key").as_string(), "wf1/port/do");
    EXPECT_EQ(applied[0].as_object().at("action").as_string(), "create_port");
    EXPECT_EQ(applied[1].as_object().at("key").as_string(), "wf2/port/do");
    EXPECT_EQ(applied[1].as_object().at("id"),
              Parse(Invoke(Call("create_port", "wf2/port/do"))->output).at("id"))
        << "the id its do answered";
}

TEST_F(SimTest, WithItsActionsNamedAnyOtherIsNotFoundAndNotRecorded) {
    SimOptions options;
    options.actions = {"create_thing", "delete_thing"};
    Start(std::move(options));
    ASSERT_TRUE(Invoke(Call("create_thing", "wf1/t/do")));
    ASSERT_TRUE(Invoke(Call("delete_thing", "wf1/t/undo")));
    auto other = Invoke(Call("create_thign", "wf2/t/do"));
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
    EXPECT_FALSE(service_->Find("wf2/t/do"));
    EXPECT_EQ(service_->Ledger().size(), 2u);
}

TEST_F(SimHttpTest, MissingIdempotencyKeyIs400NamingIt) {
    auto res = Raw("POST", "/v1/actions/boot", "{}");
    EXPECT_EQ(res.status, 400);
    auto body = Parse(res.body).as_object();
    EXPECT_EQ(body["code"].as_string(), "invalid_argument");
    EXPECT_FALSE(body["retryable"].as_bool());
    EXPECT_NE(std::string(body["message"].as_string()).find("Idempotency-Key"), std::string::npos);
    EXPECT_EQ(Raw("POST", "/v1/actions/boot", "{not json", {{"Idempotency-Key", "w/s/do"}}).status, 400);
    EXPECT_EQ(Raw("GET", "/v1/actions/boot").status, 405);
    EXPECT_EQ(Raw("GET", "/v1/nothing").status, 404);
    EXPECT_EQ(Raw("GET", "/healthz").status, 200);
    EXPECT_TRUE(service_->Ledger().empty());
}

TEST_F(SimHttpTest, FaultsSetOverHttp) {
    auto res = Raw("PUT", "/v1/faults", R"({"error_rate":1})");
    ASSERT_EQ(res.status, 200) << res.body;
    EXPECT_DOUBLE_EQ(service_->faults().error_rate, 1.0);
    auto r = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(r.error().retryable);

    auto bad = Raw("PUT", "/v1/faults", R"({"error_rate":0,"typo":1})");
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(Parse(bad.body).at("message"), "typo: unknown field");
    EXPECT_DOUBLE_EQ(service_->faults().error_rate, 1.0) << "a rejected PUT changes nothing";

    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"permanent_rate":1})").status, 200);
    auto refused = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_FALSE(refused.error().retryable);

    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"hang_rate":1})").status, 200);
    const auto start = SteadyClock::now();
    auto hung = Invoke(Call("boot", "wf2/boot/do", 150ms));
    ASSERT_FALSE(hung);
    EXPECT_EQ(hung.error().code, ErrorCode::kDeadlineExceeded);
    EXPECT_GE(SteadyClock::now() - start, 150ms);
    EXPECT_FALSE(service_->Find("wf2/boot/do"));
    // The server lets go of the abandoned request once the caller has closed its connection.
    EXPECT_TRUE(RunUntil(io_, [&] { return server_->connections_open() <= 2; }));

    ASSERT_EQ(Raw("PUT", "/v1/faults", "{}").status, 200);
    EXPECT_TRUE(Invoke(Call("boot", "wf2/boot/do")));
    auto ledger = Parse(Raw("GET", "/v1/ledger").body).as_array();
    ASSERT_EQ(ledger.size(), 2u);
    EXPECT_EQ(ledger[0].as_object().at("outcome").as_string(), "rejected");
    EXPECT_EQ(ledger[1].as_object().at("key").as_string(), "wf2/boot/do");
    EXPECT_EQ(ledger[1].as_object().at("output").as_object().at("action").as_string(), "boot");
}

TEST_F(SimHttpTest, LongActionOverHttp) {
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"long_actions":["boot"],"accept_duration_ms":50})").status, 200);
    auto r = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->accepted);
    RunFor(io_, 70ms);
    auto done = Status(Call("boot", "wf1/boot/do"));
    ASSERT_TRUE(done) << done.error().ToString();
    EXPECT_FALSE(done->accepted);
    EXPECT_EQ(Parse(done->output).as_object()["action"].as_string(), "boot");
    auto missing = Status(Call("boot", "nope/boot/do"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    EXPECT_FALSE(missing.error().retryable);
}

TEST_F(SimHttpTest, MetricsCountActionsFaultsAndTheLedger) {
    const auto actions = [](const std::string& text, const std::string& action, const std::string& outcome) {
        return SampleOf(text, "cogs_service_actions_total",
                        {{"service", "sim"}, {"action", action}, {"outcome", outcome}});
    };
    const auto faults = [](const std::string& text, const std::string& kind) {
        return SampleOf(text, "cogs_service_faults_injected_total", {{"service", "sim"}, {"kind", kind}});
    };
    const auto records = [](const std::string& text, const std::string& kind) {
        return SampleOf(text, "cogs_service_records", {{"service", "sim"}, {"kind", kind}});
    };
    ASSERT_TRUE(Invoke(Call("allocate_ip", "wf1/ip/do")));
    ASSERT_TRUE(Invoke(Call("allocate_ip", "wf1/ip/do")));  // a replay
    ASSERT_TRUE(Invoke(Call("release_ip", "wf1/ip/undo")));
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"error_rate":1})").status, 200);
    ASSERT_FALSE(Invoke(Call("boot", "wf2/boot/do")));
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"permanent_rate":1})").status, 200);
    ASSERT_FALSE(Invoke(Call("boot", "wf2/boot/do")));
    ASSERT_FALSE(Invoke(Call("boot", "wf2/boot/do")));  // the refusal again, from the ledger
    ASSERT_EQ(Raw("PUT", "/v1/faults", R"({"lost_reply_rate":1})").status, 200);
    ASSERT_FALSE(Invoke(Call("boot", "wf3/boot/do", 100ms)));
    ASSERT_EQ(Raw("PUT", "/v1/faults", "{}").status, 200);

    const http::Response r = Raw("GET", "/metrics");
    ASSERT_EQ(r.status, 200);
    const std::string& text = r.body;
    EXPECT_EQ(actions(text, "allocate_ip", "ok"), 1);
    EXPECT_EQ(actions(text, "allocate_ip", "replayed"), 1);
    EXPECT_EQ(actions(text, "release_ip", "ok"), 1);
    EXPECT_EQ(actions(text, "boot", "error"), 1);
    EXPECT_EQ(actions(text, "boot", "refused"), 1);
    EXPECT_EQ(actions(text, "boot", "replayed"), 1);
    EXPECT_EQ(actions(text, "boot", "ok"), 0) << "the lost reply was never answered";
    EXPECT_EQ(faults(text, "error"), 1);
    EXPECT_EQ(faults(text, "permanent"), 1);
    EXPECT_EQ(faults(text, "lost_reply"), 1);
    EXPECT_EQ(faults(text, "hang"), 0);
    EXPECT_EQ(records(text, "ledger"), 4);
    EXPECT_EQ(records(text, "applied"), 2) << "allocate_ip and the lost reply's boot";
    EXPECT_EQ(records(text, "compensated"), 1);
    EXPECT_EQ(records(text, "rejected"), 1);
    EXPECT_EQ(records(text, "tombstone"), 0);
    EXPECT_EQ(PromtoolProblems(text), "");
}

TEST_F(SimHttpTest, AnActionLogsItsTraceIdAndWorkflowId) {
    ASSERT_TRUE(observe::SetupLogging(observe::LogOptions{"cogs-sim", observe::LogFormat::kJson, "info"}));
    StderrCapture capture;
    ASSERT_TRUE(Invoke(Call("allocate_ip", "wf-42/ip/do", 2s, R"({"id":"port-1"})")));
    const std::string logs = capture.Stop();
    const auto lines = LogLines(logs, "action=allocate_ip");
    ASSERT_EQ(lines.size(), 1u) << logs;
    EXPECT_EQ(lines[0].at("process").as_string(), "cogs-sim");
    EXPECT_EQ(lines[0].at("component").as_string(), "sim");
    EXPECT_EQ(lines[0].at("trace_id").as_string(), "0af7651916cd43dd8448eb211c80319c")
        << "from Call()'s traceparent";
    EXPECT_EQ(lines[0].at("workflow_id").as_string(), "wf-42");
    EXPECT_EQ(lines[0].at("resource_id").as_string(), "port-1");
    EXPECT_NE(std::string(lines[0].at("msg").as_string()).find("outcome=ok"), std::string::npos);
}

TEST_F(SimHttpTest, ServerGoneIsRetryable) {
    server_->Stop();
    io_.restart();
    io_.poll();
    auto r = Invoke(Call("boot", "wf1/boot/do"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(r.error().retryable);
}

}  // namespace
}  // namespace cogs::services::sim
