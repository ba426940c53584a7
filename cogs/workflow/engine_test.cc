// Engine behaviour against a scripted service (a fake of one class, as unit tests may use) and a
// real SQLite store in a temporary directory. The randomized test against the simulated service
// and its ledger is in engine_random_test.cc.
#include "cogs/workflow/engine.h"

#include <filesystem>
#include <map>
#include <set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

namespace cogs::workflow {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using store::StepState;
using store::WorkflowState;

// What the scripted service does with one call.
struct Answer {
    enum Kind { kOk, kError, kHang, kAccept } kind = kOk;
    ErrorCode code = ErrorCode::kUnavailable;
    std::string output = "{}";
};

class ScriptedService : public ServiceClient {
public:
    explicit ScriptedService(asio::io_context& io) : io_(io) {}

    // (action, key, nth call with this key starting at 1) -> answer
    std::function<Answer(const ActionCall&, int)> script = [](const ActionCall& c, int) {
        return Answer{Answer::kOk, ErrorCode::kUnavailable, R"({"id":")" + c.idempotency_key + R"("})"};
    };
    // Status polls: how many more "accepted" answers before done.
    int polls_before_done = 2;

    std::vector<ActionCall> calls;
    std::map<std::string, int> per_key;
    int in_flight = 0;
    int max_in_flight = 0;
    // While set, answers wait in `held` until the test releases them (makes concurrency exact).
    bool hold = false;
    std::vector<std::function<void()>> held;

    void Invoke(ActionCall call, Callback done) override {
        calls.push_back(call);
        const int n = ++per_key[call.idempotency_key];
        const Answer a = script(call, n);
        ++in_flight;
        max_in_flight = std::max(max_in_flight, in_flight);
        if (a.kind == Answer::kHang) {
            auto timer = std::make_shared<asio::steady_timer>(io_, call.deadline);
            timer->async_wait([this, timer, done](auto) {
                --in_flight;
                done(MakeError(ErrorCode::kDeadlineExceeded, "no answer"));
            });
            return;
        }
        auto answer = [this, a, done] {
            --in_flight;
            if (a.kind == Answer::kError) {
                done(MakeError(a.code, "scripted"));
            } else {
                done(ActionReply{a.kind == Answer::kAccept, a.output});
            }
        };
        if (hold) {
            held.push_back(std::move(answer));
            return;
        }
        asio::post(io_, std::move(answer));
    }

    void Status(ActionCall call, Callback done) override {
        const bool finished = polls_[call.idempotency_key]++ >= polls_before_done;
        asio::post(io_, [done, finished] { done(ActionReply{!finished, finished ? R"({"done":true})" : ""}); });
    }

    std::vector<std::string> Keys() const {
        std::vector<std::string> out;
        for (const auto& c : calls) {
            out.push_back(c.idempotency_key);
        }
        return out;
    }

private:
    asio::io_context& io_;
    std::map<std::string, int> polls_;
};

class EngineTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("cogs-engine-test-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        OpenAll();
    }
    void TearDown() override {
        CloseAll();
        fs::remove_all(dir_);
    }

    void OpenAll(EngineOptions opts = {}) {
        auto st = store::OpenSqliteStore({(dir_ / "cogs.db").string()});
        ASSERT_TRUE(st) << st.error().ToString();
        store_ = std::move(*st);
        io_ = std::make_unique<asio::io_context>();
        service_ = std::make_shared<ScriptedService>(*io_);
        catalog_ = ServiceCatalog();
        catalog_.Add("svc", service_);
        registry_ = std::make_unique<Registry>(store_.get());
        ASSERT_TRUE(registry_->LoadFromStore());
        opts.lease_ttl_ms = 60000;
        engine_ = std::make_unique<Engine>(*io_, *store_, *registry_, catalog_, opts);
        engine_->OnFinished([this](const FinishedEvent& ev) { finished_[ev.id] = ev; });
    }

    void Recover() { ASSERT_TRUE(engine_->Recover()); }

    // A crash as far as the store can tell: nothing more is written, nothing is finished.
    void CloseAll() {
        if (engine_) {
            engine_->Shutdown();
        }
        // After the flush no handler runs again, so nothing new reaches the store.
        if (store_) {
            store_->Flush();
        }
        engine_.reset();
        registry_.reset();
        service_.reset();
        catalog_ = ServiceCatalog();
        io_.reset();
        store_.reset();
    }

    std::string Start(const std::string& type, const std::string& id, const std::string& input = "{}",
                      Duration deadline = Duration{0}) {
        std::string got;
        StartRequest r;
        r.type = type;
        r.id = id;
        r.input = input;
        r.deadline = deadline;
        engine_->Start(r, [&](Result<std::string> res) {
            ASSERT_TRUE(res) << res.error().ToString();
            got = *res;
        });
        RunUntil([&] { return !got.empty(); });
        return got;
    }

    void RunUntil(const std::function<bool()>& cond, Duration limit = 20s) {
        const auto end = SteadyClock::now() + limit;
        while (!cond()) {
            ASSERT_LT(SteadyClock::now(), end) << "condition not reached in time";
            io_->restart();
            io_->run_for(5ms);
        }
    }

    void RunToEnd(const std::string& id) {
        RunUntil([&] { return finished_.count(id) != 0; });
    }

    store::WorkflowRecord Load(const std::string& id) {
        store_->Flush();
        auto r = store_->GetWorkflow(id);
        EXPECT_TRUE(r) << r.error().ToString();
        return r ? *r : store::WorkflowRecord{};
    }

    void Register(Result<Definition> def) {
        ASSERT_TRUE(def) << def.error().ToString();
        ASSERT_TRUE(registry_->Register(std::move(*def)));
    }

    static Result<Definition> Chain(const std::string& type = "chain") {
        return DefinitionBuilder(type)
            .Step("a", "svc.a").Compensate("svc.undo_a")
            .Step("b", "svc.b").After("a").Timeout(1s).Input(R"({"from_a":"${steps.a.output.id}","x":"${input.x}"})")
            .Compensate("svc.undo_b")
            .Step("c", "svc.c").After("b").Compensate("svc.undo_c")
            .Build();
    }

    fs::path dir_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<asio::io_context> io_;
    std::shared_ptr<ScriptedService> service_;
    ServiceCatalog catalog_;
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<Engine> engine_;
    std::map<std::string, FinishedEvent> finished_;
};

TEST_F(EngineTest, ChainSucceedsWithStableKeysAndRenderedInputs) {
    Register(Chain());
    Recover();
    Start("chain", "w1", R"({"x":"hello"})");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(service_->Keys(), (std::vector<std::string>{"w1/a/do", "w1/b/do", "w1/c/do"}));
    EXPECT_EQ(service_->calls[1].input, R"({"from_a":"w1/a/do","x":"hello"})");
    auto rec = Load("w1");
    EXPECT_EQ(rec.state, WorkflowState::kSucceeded);
    ASSERT_EQ(rec.steps.size(), 3u);
    for (const auto& s : rec.steps) {
        EXPECT_EQ(s.state, StepState::kSucceeded);
        EXPECT_EQ(s.attempts, 1);
        EXPECT_NE(s.log.find(R"("outcome":"succeeded")"), std::string::npos) << s.log;
    }
    EXPECT_EQ(rec.steps[2].output, R"({"id":"w1/c/do"})");
    EXPECT_GT(rec.finished_ms, 0);
}

TEST_F(EngineTest, RetryableErrorsAreRetriedWithTheSameKey) {
    Register(Chain());
    Recover();
    service_->script = [](const ActionCall& c, int n) {
        if (c.action == "b" && n <= 2) {
            return Answer{Answer::kError, ErrorCode::kUnavailable};
        }
        return Answer{};
    };
    Start("chain", "w1");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(service_->per_key["w1/b/do"], 3);
    auto rec = Load("w1");
    EXPECT_EQ(rec.steps[1].attempts, 3);
    EXPECT_NE(rec.steps[1].log.find(R"("outcome":"retry")"), std::string::npos);
}

TEST_F(EngineTest, PermanentFailureCompensatesCompletedStepsInReverseOrder) {
    Register(Chain());
    Recover();
    service_->script = [](const ActionCall& c, int) {
        return c.action == "c" ? Answer{Answer::kError, ErrorCode::kFailedPrecondition} : Answer{};
    };
    Start("chain", "w1");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_NE(finished_["w1"].reason.find("step c failed"), std::string::npos) << finished_["w1"].reason;
    // c was refused (definitively not applied): it is not compensated; b then a are.
    EXPECT_EQ(service_->Keys(),
              (std::vector<std::string>{"w1/a/do", "w1/b/do", "w1/c/do", "w1/b/undo", "w1/a/undo"}));
    auto rec = Load("w1");
    EXPECT_EQ(rec.state, WorkflowState::kRolledBack);
    EXPECT_EQ(rec.steps[0].state, StepState::kCompensated);
    EXPECT_EQ(rec.steps[1].state, StepState::kCompensated);
    EXPECT_EQ(rec.steps[2].state, StepState::kFailed);
    EXPECT_FALSE(rec.steps[2].applied);
}

TEST_F(EngineTest, ExhaustedTimeoutsAreCompensatedBecauseTheyMayHaveApplied) {
    auto def = DefinitionBuilder("t")
                   .Step("a", "svc.a").Compensate("svc.undo_a")
                   .Step("b", "svc.b").After("a").Timeout(30ms)
                   .Retry({2, 1ms, 2ms, 2.0, {}}).Compensate("svc.undo_b")
                   .Build();
    Register(def);
    Recover();
    service_->script = [](const ActionCall& c, int) { return c.action == "b" ? Answer{Answer::kHang} : Answer{}; };
    Start("t", "w1");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_EQ(service_->per_key["w1/b/do"], 2);
    EXPECT_EQ(service_->per_key["w1/b/undo"], 1) << "an unknown outcome is compensated";
    EXPECT_EQ(service_->per_key["w1/a/undo"], 1);
    EXPECT_EQ(engine_->Stats().timeouts, 2u);
}

TEST_F(EngineTest, FailedCompensationLeavesWorkflowFailedUntilRetried) {
    Register(Chain());
    Recover();
    bool undo_broken = true;
    service_->script = [&](const ActionCall& c, int) {
        if (c.action == "c") {
            return Answer{Answer::kError, ErrorCode::kFailedPrecondition};
        }
        if (c.action == "undo_b" && undo_broken) {
            return Answer{Answer::kError, ErrorCode::kFailedPrecondition};
        }
        return Answer{};
    };
    Start("chain", "w1");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kFailed);
    auto rec = Load("w1");
    EXPECT_EQ(rec.state, WorkflowState::kFailed);
    EXPECT_EQ(rec.steps[1].state, StepState::kCompensationFailed);
    EXPECT_EQ(rec.steps[0].state, StepState::kSucceeded) << "a must not be undone before b";
    EXPECT_EQ(service_->per_key.count("w1/a/undo"), 0u);

    undo_broken = false;
    finished_.clear();
    Status retried = MakeError(ErrorCode::kInternal, "pending");
    bool answered = false;
    engine_->Retry("w1", [&](Status s) {
        retried = s;
        answered = true;
    });
    RunUntil([&] { return answered; });
    ASSERT_TRUE(retried) << retried.error().ToString();
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_EQ(Load("w1").steps[0].state, StepState::kCompensated);
}

TEST_F(EngineTest, CancelStopsNewStepsAndCompensates) {
    Register(Chain());
    Recover();
    service_->script = [](const ActionCall& c, int) {
        return c.action == "b" ? Answer{Answer::kHang} : Answer{};
    };
    Start("chain", "w1");
    RunUntil([&] { return service_->per_key.count("w1/b/do") != 0; });
    bool cancelled = false;
    engine_->Cancel("w1", [&](Status s) {
        EXPECT_TRUE(s);
        cancelled = true;
    });
    RunToEnd("w1");
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_EQ(finished_["w1"].reason, "cancelled");
    EXPECT_EQ(service_->per_key.count("w1/c/do"), 0u) << "no new step after a cancel";
    EXPECT_EQ(service_->per_key["w1/a/undo"], 1);
    auto rec = Load("w1");
    EXPECT_TRUE(rec.cancel_requested);
    EXPECT_EQ(rec.steps[2].state, StepState::kSkipped);
}

TEST_F(EngineTest, WorkflowDeadlineCompensates) {
    Register(Chain());
    Recover();
    service_->script = [](const ActionCall& c, int) {
        return c.action == "b" ? Answer{Answer::kHang} : Answer{};
    };
    const auto t0 = SteadyClock::now();
    Start("chain", "w1", "{}", 300ms);
    RunToEnd("w1");
    EXPECT_LT(SteadyClock::now() - t0, 5s) << "the attempt's deadline is capped by the workflow's";
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_NE(finished_["w1"].reason.find("deadline"), std::string::npos) << finished_["w1"].reason;
}

TEST_F(EngineTest, CrashResumeResendsInFlightStepWithSameKey) {
    Register(Chain());
    Recover();
    service_->script = [](const ActionCall& c, int) { return c.action == "b" ? Answer{Answer::kHang} : Answer{}; };
    Start("chain", "w1");
    RunUntil([&] { return service_->per_key.count("w1/b/do") != 0; });
    CloseAll();  // the process dies with b in flight

    OpenAll();
    Recover();
    EXPECT_EQ(engine_->Stats().resumed, 1u);
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    // The new process re-sent b with the same key and never re-sent a.
    EXPECT_EQ(service_->Keys(), (std::vector<std::string>{"w1/b/do", "w1/c/do"}));
    auto rec = Load("w1");
    EXPECT_EQ(rec.steps[1].attempts, 2);
    EXPECT_GT(engine_->lease().token, 1u);
}

TEST_F(EngineTest, BulkheadBoundsCallsPerService) {
    CloseAll();
    EngineOptions o;
    o.bulkheads["svc"] = 3;
    OpenAll(o);
    Register(DefinitionBuilder("one").Step("a", "svc.a").Build());
    Recover();
    service_->script = [this](const ActionCall&, int) {
        EXPECT_LE(service_->in_flight, 3);
        return Answer{};
    };
    service_->hold = true;
    for (int i = 0; i < 30; ++i) {
        StartRequest r;
        r.type = "one";
        r.id = "w" + std::to_string(i);
        engine_->Start(r, [](Result<std::string> res) { ASSERT_TRUE(res); });
    }
    // Every workflow is durable and waiting; exactly three calls are out.
    RunUntil([&] { return service_->in_flight == 3 && engine_->Stats().started == 30; });
    for (int i = 0; i < 20; ++i) {
        io_->restart();
        io_->run_for(5ms);
    }
    EXPECT_EQ(service_->calls.size(), 3u);
    // Released one by one, each answer lets exactly one waiting call out.
    const auto end = SteadyClock::now() + 20s;
    while (finished_.size() < 30) {
        ASSERT_LT(SteadyClock::now(), end) << "the workflows did not finish";
        if (!service_->held.empty()) {
            auto next = std::move(service_->held.front());
            service_->held.erase(service_->held.begin());
            next();
        }
        io_->restart();
        io_->run_for(5ms);
    }
    EXPECT_EQ(service_->max_in_flight, 3);
    EXPECT_EQ(service_->calls.size(), 30u);
}

TEST_F(EngineTest, LongActionIsPolledUntilDone) {
    Register(DefinitionBuilder("long").Step("boot", "svc.boot").StepDeadline(10s).Build());
    Recover();
    service_->script = [](const ActionCall&, int) { return Answer{Answer::kAccept}; };
    service_->polls_before_done = 3;
    Start("long", "w1");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(service_->per_key["w1/boot/do"], 1) << "accepted once, then only polled";
    EXPECT_EQ(Load("w1").steps[0].output, R"({"done":true})");
}

TEST_F(EngineTest, CompletionReportEndsALongActionBeforeItsNextPoll) {
    Register(DefinitionBuilder("long").Step("boot", "svc.boot").StepDeadline(60s).Build());
    Recover();
    service_->script = [](const ActionCall&, int) { return Answer{Answer::kAccept}; };
    service_->polls_before_done = 1000000;  // polling alone would never finish it
    Start("long", "w1");
    RunUntil([&] { return service_->per_key.count("w1/boot/do") != 0; });
    RunUntil([&] { return engine_->ReportCompletion("w1/boot/do", ActionReply{false, R"({"booted":1})"}).has_value(); });
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(Load("w1").steps[0].output, R"({"booted":1})");
    EXPECT_EQ(engine_->ReportCompletion("w1/boot/do", ActionReply{}).error().code, ErrorCode::kNotFound)
        << "a late duplicate report changes nothing";
    EXPECT_EQ(engine_->ReportCompletion("nonsense", ActionReply{}).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(EngineTest, RunningWorkflowKeepsItsDefinitionVersion) {
    Register(DefinitionBuilder("v").Step("a", "svc.old").Build());
    Recover();
    service_->script = [](const ActionCall& c, int) { return c.action == "old" ? Answer{Answer::kHang} : Answer{}; };
    Start("v", "w1");
    RunUntil([&] { return service_->per_key.count("w1/a/do") != 0; });
    Register(DefinitionBuilder("v").Step("a", "svc.new").Build());
    EXPECT_EQ(registry_->Latest("v")->version, 2);
    Start("v", "w2");
    RunToEnd("w2");
    EXPECT_EQ(service_->calls.back().action, "new");
    CloseAll();  // and across a restart, w1 still runs version 1
    OpenAll();
    Recover();
    service_->script = [](const ActionCall&, int) { return Answer{}; };
    RunToEnd("w1");
    EXPECT_EQ(service_->calls.back().action, "old");
    EXPECT_EQ(Load("w1").version, 1);
}

TEST_F(EngineTest, RejectsBadStarts) {
    Register(Chain());
    Recover();
    Start("chain", "w1");
    auto expect_error = [&](StartRequest r, ErrorCode code, const std::string& field) {
        bool answered = false;
        engine_->Start(r, [&](Result<std::string> res) {
            answered = true;
            ASSERT_FALSE(res);
            EXPECT_EQ(res.error().code, code) << res.error().ToString();
            EXPECT_NE(res.error().message.find(field), std::string::npos) << res.error().message;
        });
        RunUntil([&] { return answered; });
    };
    expect_error({"w1", "chain", "{}", {}, ""}, ErrorCode::kAlreadyExists, "w1");
    expect_error({"w2", "nope", "{}", {}, ""}, ErrorCode::kInvalidArgument, "type");
    expect_error({"w3", "chain", "[1]", {}, ""}, ErrorCode::kInvalidArgument, "input");
    expect_error({"bad/id", "chain", "{}", {}, ""}, ErrorCode::kInvalidArgument, "id");
    RunToEnd("w1");
    // A finished id is still taken (the store refuses the duplicate).
    expect_error({"w1", "chain", "{}", {}, ""}, ErrorCode::kAlreadyExists, "");
}

}  // namespace
}  // namespace cogs::workflow
