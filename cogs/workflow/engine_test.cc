// Engine behaviour against a scripted service (a fake of one class, as unit tests may use) and a
// real SQLite store in a temporary directory, on a fake clock: time moves only when every commit
// and answer that is ready has been handled, straight to the next timer, so "not before the
// backoff" and "nothing within open_for" are exact and no test depends on the machine's speed. The
// randomized test against the simulated service and its ledger is in engine_random_test.cc.
#include "cogs/workflow/engine.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/observe/trace.h"
#include "cogs/runtime/clock.h"
#include "cogs/store/store_metrics.h"
#include "test/support/temp_dir.h"

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
    ScriptedService(asio::io_context& io, runtime::Clock& clock) : io_(io), clock_(clock) {}

    // (action, key, nth call with this key starting at 1) -> answer
    std::function<Answer(const ActionCall&, int)> script = [](const ActionCall& c, int) {
        return Answer{Answer::kOk, ErrorCode::kUnavailable, R"({"id":")" + c.idempotency_key + R"("})"};
    };
    // Every call of `action` hangs (never answered); every other call succeeds with "{}".
    void HangOn(std::string action) {
        script = [action = std::move(action)](const ActionCall& c, int) {
            return c.action == action ? Answer{Answer::kHang} : Answer{};
        };
    }
    // Status polls: how many more "accepted" answers before done.
    int polls_before_done = 2;
    // While set, polls answer kUnavailable (the endpoint is down).
    bool status_down = false;
    int status_calls = 0;
    // The endpoint of a call (ServiceClient::Endpoint): "" by default.
    std::function<std::string(const ActionCall&)> endpoint = [](const ActionCall&) { return std::string(); };

    std::vector<ActionCall> calls;
    std::vector<SteadyTime> call_times;  // when each of `calls` came
    std::map<std::string, int> per_key;
    int in_flight = 0;
    int max_in_flight = 0;
    // While set, answers wait in `held` until the test releases them (makes concurrency exact).
    bool hold = false;
    std::vector<std::function<void()>> held;

    void Invoke(ActionCall call, Callback done) override {
        calls.push_back(call);
        call_times.push_back(clock_.Now());
        const int n = ++per_key[call.idempotency_key];
        const Answer a = script(call, n);
        ++in_flight;
        max_in_flight = std::max(max_in_flight, in_flight);
        if (a.kind == Answer::kHang) {
            auto& timer = hangs_.emplace_back(clock_.NewTimer(io_));
            timer->Arm(call.deadline, [this, done] {
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

    std::string Endpoint(const ActionCall& call) const override { return endpoint(call); }

    void Status(ActionCall call, Callback done) override {
        ++status_calls;
        if (status_down) {
            asio::post(io_, [done] { done(MakeError(ErrorCode::kUnavailable, "scripted: down")); });
            return;
        }
        const bool finished = polls_[call.idempotency_key]++ >= polls_before_done;
        asio::post(io_, [done, finished] {
            done(ActionReply{!finished, finished ? R"({"done":true})" : ""});
        });
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
    runtime::Clock& clock_;
    std::map<std::string, int> polls_;
    std::vector<std::unique_ptr<runtime::Timer>> hangs_;  // a hanging call's deadline
};

class EngineTest : public ::testing::Test {
protected:
    void SetUp() override { OpenAll(); }
    void TearDown() override { CloseAll(); }

    void OpenAll(EngineOptions opts = {}) {
        store::SqliteOptions so;
        so.path = dir_ / "cogs.db";
        so.on_commit = store::CommitMetrics(opts.metrics);  // the store's metrics beside the engine's
        auto st = store::OpenSqliteStore(so);
        ASSERT_TRUE(st) << st.error().ToString();
        store_ = std::move(*st);
        io_ = std::make_unique<asio::io_context>();
        service_ = std::make_shared<ScriptedService>(*io_, clock_);
        catalog_ = ServiceCatalog();
        catalog_.Add("svc", service_);
        registry_ = std::make_unique<Registry>(store_.get());
        ASSERT_TRUE(registry_->LoadFromStore());
        opts.lease_ttl_ms = 60000;
        opts.clock = &clock_;
        engine_ = std::make_unique<Engine>(*io_, *store_, *registry_, catalog_, opts);
        engine_->OnFinished([this](const FinishedEvent& ev) { finished_[ev.id] = ev; });
    }

    // Closes everything and opens it again with `o`: the same directory, the same clock.
    void Reopen(EngineOptions o) {
        CloseAll();
        OpenAll(std::move(o));
    }

    // Options whose breakers open after `threshold` failed answers, for `open_for` (doubled after a
    // failed probe, up to `max_open_for`).
    static EngineOptions Breakers(int threshold, Duration open_for = 1s, Duration max_open_for = 30s) {
        EngineOptions o;
        o.breaker.failure_threshold = threshold;
        o.breaker.open_for = open_for;
        o.breaker.max_open_for = max_open_for;
        return o;
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

    // Handles everything that is ready — the io_context's handlers, the commits they queue and the
    // answers and calls those release — until nothing more happens without time moving.
    void Settle() {
        for (;;) {
            io_->restart();
            size_t ran = io_->poll();
            store_->Flush();  // every group queued so far is durable and its result posted to io_
            io_->restart();
            ran += io_->poll();
            if (ran == 0) {
                return;
            }
        }
    }

    // Settles, then moves the clock to the next timer and settles again, until `cond` holds. Fails
    // if no timer is left, or the next one is further than `limit` away: the engine is stuck.
    void RunUntil(const std::function<bool()>& cond, Duration limit = 1h) {
        const SteadyTime end = clock_.Now() + limit;
        for (;;) {
            Settle();
            if (cond()) {
                return;
            }
            const auto next = clock_.NextDeadline();
            ASSERT_TRUE(next.has_value() && *next <= end) << "not reached: no timer before the limit";
            clock_.Advance(*next - clock_.Now());
        }
    }

    // Moves the clock by `d`, timer by timer, settling at each (to show what does NOT happen in `d`).
    void RunFor(Duration d) {
        const SteadyTime end = clock_.Now() + d;
        for (;;) {
            Settle();
            const auto next = clock_.NextDeadline();
            if (!next.has_value() || *next > end) {
                break;
            }
            clock_.Advance(*next - clock_.Now());
        }
        clock_.Advance(end - clock_.Now());
        Settle();
    }

    // Waits for the engine's blocking pool (Retry's store calls), running the io_context on this
    // thread; the clock does not move. A hang is ctest's timeout.
    void WaitFor(const std::function<bool()>& cond) {
        auto work = asio::make_work_guard(*io_);
        while (!cond()) {
            io_->restart();
            io_->run_one_for(10ms);
        }
    }

    // Lets every held answer go (in the order the calls came) and stops holding.
    void ReleaseHeld() {
        service_->hold = false;
        auto held = std::move(service_->held);
        service_->held.clear();
        for (auto& answer : held) {
            answer();
        }
    }

    // Answers the held calls one at a time, oldest first, settling between, until `finished`
    // workflows have ended.
    void ReleaseOneByOneUntil(size_t finished) {
        for (Settle(); finished_.size() < finished; Settle()) {
            ASSERT_FALSE(service_->held.empty()) << "no answer left to release";
            auto next = std::move(service_->held.front());
            service_->held.erase(service_->held.begin());
            next();
        }
    }

    // The service refuses `action` for good (kFailedPrecondition) and answers every other call.
    void RefuseForGood(const std::string& action) {
        service_->script = [action](const ActionCall& c, int) {
            return c.action == action ? Answer{Answer::kError, ErrorCode::kFailedPrecondition} : Answer{};
        };
    }

    void RunToEnd(const std::string& id) {
        RunUntil([&] { return finished_.count(id) != 0; });
    }

    // Starts w0 .. w<n-1> of `type`, without waiting for any of them.
    void StartMany(const std::string& type, int n) {
        for (int i = 0; i < n; ++i) {
            StartRequest r;
            r.type = type;
            r.id = "w" + std::to_string(i);
            engine_->Start(r, [](Result<std::string> res) { ASSERT_TRUE(res); });
        }
    }

    // Cancels `id` (the cancel is accepted) and runs until the workflow has rolled back.
    void CancelToEnd(const std::string& id) {
        bool cancelled = false;
        engine_->Cancel(id, [&](Status s) {
            EXPECT_TRUE(s);
            cancelled = true;
        });
        RunToEnd(id);
        EXPECT_TRUE(cancelled);
        EXPECT_EQ(finished_[id].state, WorkflowState::kRolledBack);
        EXPECT_EQ(finished_[id].reason, "cancelled");
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
            .Step("a", "svc.a")
            .Compensate("svc.undo_a")
            .Step("b", "svc.b")
            .After("a")
            .Timeout(1s)
            .Input(R"({"from_a":"${steps.a.output.id}","x":"${input.x}"})")
            .Compensate("svc.undo_b")
            .Step("c", "svc.c")
            .After("b")
            .Compensate("svc.undo_c")
            .Build();
    }

    runtime::FakeClock clock_;  // declared first, destroyed last: it outlives every timer on it
    const cogs::testing::TempDir dir_{"cogs-engine-test"};
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

// A bulk request's workflows: one transaction for all their creates; each then runs on its own.
TEST_F(EngineTest, StartManyCommitsAllOrNoneThenEachRunsAlone) {
    Register(Chain());
    Recover();
    auto request = [](const std::string& id) {
        StartRequest r;
        r.type = "chain";
        r.id = id;
        r.input = R"({"x":"bulk"})";
        r.resources.push_back(store::ResourceWrite{"server", "s-" + id, "p1", "{}", false});
        return r;
    };
    std::optional<Result<std::vector<std::string>>> got;
    engine_->StartMany({request("m1"), request("m2"), request("m3")},
                       [&](Result<std::vector<std::string>> r) { got = std::move(r); });
    RunUntil([&] { return got.has_value() && finished_.size() == 3; });
    ASSERT_TRUE(*got) << got->error().ToString();
    EXPECT_EQ(**got, (std::vector<std::string>{"m1", "m2", "m3"}));
    for (const char* id : {"m1", "m2", "m3"}) {
        EXPECT_EQ(finished_[id].state, WorkflowState::kSucceeded) << id;
    }
    EXPECT_EQ(engine_->Stats().started, 3u);

    // m1 exists (ended, so only the store knows it): the group is refused whole, m4 and its
    // server are not written and m4 never runs.
    got.reset();
    engine_->StartMany({request("m4"), request("m1")},
                       [&](Result<std::vector<std::string>> r) { got = std::move(r); });
    RunUntil([&] { return got.has_value(); });
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, ErrorCode::kAlreadyExists);
    store_->Flush();
    EXPECT_FALSE(store_->GetWorkflow("m4"));
    auto resources = store_->LoadResources();
    ASSERT_TRUE(resources);
    EXPECT_EQ(resources->size(), 3u);
    RunFor(10s);
    EXPECT_EQ(finished_.count("m4"), 0u);
    EXPECT_EQ(engine_->Stats().inflight, 0u);

    // An id asked twice is refused before anything is held.
    got.reset();
    engine_->StartMany({request("m5"), request("m5")},
                       [&](Result<std::vector<std::string>> r) { got = std::move(r); });
    RunUntil([&] { return got.has_value(); });
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, ErrorCode::kAlreadyExists);
    EXPECT_FALSE(store_->GetWorkflow("m5"));
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

TEST_F(EngineTest, ARetryGoesAtItsBackoffNotBefore) {
    Register(DefinitionBuilder("r").Step("a", "svc.a").Retry({3, 100ms, 1s, 2.0, {}}).Build());
    Recover();
    service_->script = [](const ActionCall&, int n) {
        return n == 1 ? Answer{Answer::kError, ErrorCode::kUnavailable} : Answer{};
    };
    Start("r", "w1");
    const auto rec = Load("w1");
    ASSERT_EQ(rec.steps[0].state, StepState::kWaitingRetry);
    const Duration backoff = Millis(rec.steps[0].next_at_ms - clock_.WallMs());
    ASSERT_GT(backoff, 0ms);
    ASSERT_LE(backoff, 100ms) << "full jitter up to initial_backoff";
    RunFor(backoff - 1ms);
    EXPECT_EQ(service_->calls.size(), 1u) << "not before its backoff";
    RunFor(1ms);
    EXPECT_EQ(service_->calls.size(), 2u) << "at its backoff";
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
}

TEST_F(EngineTest, PermanentFailureCompensatesCompletedStepsInReverseOrder) {
    Register(Chain());
    Recover();
    RefuseForGood("c");
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
                   .Step("a", "svc.a")
                   .Compensate("svc.undo_a")
                   .Step("b", "svc.b")
                   .After("a")
                   .Timeout(30ms)
                   .Retry({2, 1ms, 2ms, 2.0, {}})
                   .Compensate("svc.undo_b")
                   .Build();
    Register(def);
    Recover();
    service_->HangOn("b");
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
    WaitFor([&] { return answered; });
    ASSERT_TRUE(retried) << retried.error().ToString();
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_EQ(Load("w1").steps[0].state, StepState::kCompensated);
}

TEST_F(EngineTest, CancelStopsNewStepsAndCompensates) {
    Register(Chain());
    Recover();
    service_->HangOn("b");
    Start("chain", "w1");
    RunUntil([&] { return service_->per_key.count("w1/b/do") != 0; });
    CancelToEnd("w1");
    EXPECT_EQ(service_->per_key.count("w1/c/do"), 0u) << "no new step after a cancel";
    EXPECT_EQ(service_->per_key["w1/a/undo"], 1);
    auto rec = Load("w1");
    EXPECT_TRUE(rec.cancel_requested);
    EXPECT_EQ(rec.steps[2].state, StepState::kSkipped);
}

TEST_F(EngineTest, WorkflowDeadlineCompensates) {
    Register(Chain());
    Recover();
    service_->HangOn("b");
    const SteadyTime t0 = clock_.Now();
    Start("chain", "w1", "{}", 300ms);
    RunToEnd("w1");
    ASSERT_EQ(service_->calls.size(), 4u);  // a, b, then b and a undone
    EXPECT_EQ(service_->calls[1].deadline, t0 + 300ms) << "b's 1 s attempt is cut at the deadline";
    EXPECT_EQ(clock_.Now() - t0, 300ms) << "rolled back at the deadline";
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_NE(finished_["w1"].reason.find("deadline"), std::string::npos) << finished_["w1"].reason;
}

TEST_F(EngineTest, CrashResumeResendsInFlightStepWithSameKey) {
    Register(Chain());
    Recover();
    service_->HangOn("b");
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

// The ids of workflows the engine names itself come from the OS, not from a generator seeded the
// same at every start: a restarted engine (cogsd after a crash, a reconciler's repairs) never draws
// an id an earlier run already used.
TEST_F(EngineTest, AnEngineRestartedOnTheSameStoreKeepsNamingNewWorkflows) {
    Register(Chain());
    std::set<std::string> ids;
    for (int run = 0; run < 4; ++run) {
        if (run > 0) {
            Reopen({});
            ASSERT_NO_FATAL_FAILURE(Register(Chain()));
        }
        Recover();
        for (int i = 0; i < 3; ++i) {
            const std::string id = Start("chain", "");  // fails on a refused id
            ASSERT_FALSE(id.empty());
            RunToEnd(id);
            EXPECT_EQ(finished_[id].state, WorkflowState::kSucceeded) << id;
            EXPECT_TRUE(ids.insert(id).second) << id << " named twice";
        }
    }
    EXPECT_EQ(ids.size(), 12u);
}

// Engines without a seed (every cogsd) jitter their retries differently; a seed replays a run.
TEST_F(EngineTest, RetryJitterDiffersBetweenEnginesUnlessSeeded) {
    const auto backoff_of = [&](EngineOptions o, const std::string& id) {
        Reopen(std::move(o));
        Register(DefinitionBuilder("r").Step("a", "svc.a").Retry({3, 1h, 1h, 2.0, {}}).Build());
        Recover();
        service_->script = [](const ActionCall&, int n) {
            return n == 1 ? Answer{Answer::kError, ErrorCode::kUnavailable} : Answer{};
        };
        Start("r", id);
        return Load(id).steps[0].next_at_ms - clock_.WallMs();
    };
    EngineOptions seeded;
    seeded.seed = 7;
    EXPECT_EQ(backoff_of(seeded, "s1"), backoff_of(seeded, "s2"));
    std::set<int64_t> unseeded;
    for (int i = 0; i < 3; ++i) {
        unseeded.insert(backoff_of({}, "u" + std::to_string(i)));
    }
    EXPECT_EQ(unseeded.size(), 3u) << "three engines drew the same jitter";
}

TEST_F(EngineTest, BulkheadBoundsCallsPerService) {
    EngineOptions o;
    o.bulkheads["svc"] = 3;
    Reopen(o);
    Register(DefinitionBuilder("one").Step("a", "svc.a").Build());
    Recover();
    service_->script = [this](const ActionCall&, int) {
        EXPECT_LE(service_->in_flight, 3);
        return Answer{};
    };
    service_->hold = true;
    StartMany("one", 30);
    // Every workflow is durable and waiting; exactly three calls are out, and stay so.
    RunUntil([&] { return service_->in_flight == 3 && engine_->Stats().started == 30; });
    RunFor(100ms);
    EXPECT_EQ(service_->calls.size(), 3u);
    // Released one by one, each answer lets exactly one waiting call out.
    ASSERT_NO_FATAL_FAILURE(ReleaseOneByOneUntil(30));
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
    RunUntil([&] {
        return engine_->ReportCompletion("w1/boot/do", ActionReply{false, R"({"booted":1})"}).has_value();
    });
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
    service_->HangOn("old");
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

// ---- circuit breakers

// One step that retries quickly and often: the breaker, not the retry policy, decides when it goes.
Result<Definition> Patient(const std::string& type = "patient") {
    return DefinitionBuilder(type).Step("a", "svc.a").Retry({50, 1ms, 2ms, 2.0, {}}).Build();
}

TEST_F(EngineTest, BreakerOpensAfterConsecutiveFailuresAndHoldsStepsBack) {
    Reopen(Breakers(3, 300ms));
    Register(Patient());
    Recover();
    bool down = true;
    service_->script = [&](const ActionCall&, int) {
        return down ? Answer{Answer::kError, ErrorCode::kUnavailable} : Answer{};
    };
    Start("patient", "w1");
    // Three failed attempts open the breaker; w1's next attempt then waits instead of going.
    RunUntil([&] { return engine_->Stats().circuit_waiting == 1; });
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kOpen);
    EXPECT_EQ(engine_->Stats().circuit_opens, 1u);
    EXPECT_EQ(service_->calls.size(), 3u);
    Start("patient", "w2");
    Start("patient", "w3");
    RunUntil([&] { return engine_->Stats().circuit_waiting == 3; });
    // The third failed answer opened it (answers come at once on this clock): up to the last
    // moment of open_for, nothing is sent.
    RunFor(service_->call_times[2] + 300ms - 1ms - clock_.Now());
    EXPECT_EQ(service_->calls.size(), 3u) << "nothing is sent while the breaker is open";
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kOpen);
    // The waiting steps are recorded as they were: no attempt is used by waiting.
    auto w1 = Load("w1");
    EXPECT_EQ(w1.steps[0].state, StepState::kWaitingRetry);
    EXPECT_EQ(w1.steps[0].attempts, 3);
    auto w2 = Load("w2");
    EXPECT_EQ(w2.steps[0].state, StepState::kPending);
    EXPECT_EQ(w2.steps[0].attempts, 0);

    // After open_for a single probe goes, the first waiter's call; its answer is held.
    down = false;
    service_->hold = true;
    RunUntil([&] { return service_->calls.size() == 4; });
    EXPECT_EQ(service_->calls[3].idempotency_key, "w1/a/do");
    EXPECT_EQ(service_->call_times[3] - service_->call_times[2], 300ms) << "open for open_for, exactly";
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kHalfOpen);
    RunFor(50ms);
    EXPECT_EQ(service_->calls.size(), 4u) << "one probe at a time";
    EXPECT_EQ(engine_->Stats().circuit_waiting, 2u);

    // Its success closes the breaker and releases the others in the order they came.
    ReleaseHeld();
    for (const char* id : {"w1", "w2", "w3"}) {
        RunToEnd(id);
        EXPECT_EQ(finished_[id].state, WorkflowState::kSucceeded) << id;
    }
    EXPECT_EQ(service_->Keys(),
              (std::vector<std::string>{"w1/a/do", "w1/a/do", "w1/a/do", "w1/a/do", "w2/a/do", "w3/a/do"}));
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kClosed);
    EXPECT_EQ(engine_->Stats().circuit_waiting, 0u);
    EXPECT_EQ(engine_->Stats().circuit_waits, 3u);
    EXPECT_EQ(Load("w1").steps[0].attempts, 4);
    EXPECT_EQ(Load("w2").steps[0].attempts, 1);
    EXPECT_EQ(Load("w3").steps[0].attempts, 1);
}

TEST_F(EngineTest, AFailedProbeReopensTheBreakerForLonger) {
    Reopen(Breakers(2, 50ms, 1s));
    Register(Patient());
    Recover();
    // Two failures open it, the first probe fails too, the second succeeds.
    service_->script = [](const ActionCall&, int n) {
        return n <= 3 ? Answer{Answer::kError, ErrorCode::kUnavailable} : Answer{};
    };
    Start("patient", "w1");
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    ASSERT_EQ(service_->calls.size(), 4u);
    EXPECT_EQ(Load("w1").steps[0].attempts, 4);
    EXPECT_EQ(engine_->Stats().circuit_opens, 2u);
    EXPECT_EQ(service_->call_times[2] - service_->call_times[1], 50ms) << "the first probe after open_for";
    EXPECT_EQ(service_->call_times[3] - service_->call_times[2], 100ms) << "the second after twice as long";
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kClosed);
}

TEST_F(EngineTest, EachEndpointHasItsOwnBreaker) {
    Reopen(Breakers(2, 60s));
    Register(DefinitionBuilder("h")
                 .Step("a", "svc.a")
                 .Input(R"({"host":"${input.host}"})")
                 .Retry({50, 1ms, 2ms, 2.0, {}})
                 .Build());
    Recover();
    service_->endpoint = [](const ActionCall& c) {
        const auto at = c.input.find("host-");
        return at == std::string::npos ? std::string() : c.input.substr(at, 6);
    };
    service_->script = [](const ActionCall& c, int) {
        return c.input.find("host-1") != std::string::npos ? Answer{Answer::kError, ErrorCode::kUnavailable}
                                                           : Answer{};
    };
    Start("h", "w1", R"({"host":"host-1"})");
    RunUntil([&] { return engine_->Stats().circuit_waiting == 1; });
    EXPECT_EQ(engine_->BreakerState("svc", "host-1"), CircuitState::kOpen);
    // host-1's open breaker does not stop host-2.
    Start("h", "w2", R"({"host":"host-2"})");
    RunToEnd("w2");
    EXPECT_EQ(finished_["w2"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(engine_->BreakerState("svc", "host-2"), CircuitState::kClosed);
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kClosed);
    EXPECT_EQ(service_->per_key["w1/a/do"], 2);
    // A cancel reaches a waiting step: the workflow ends without sending it.
    CancelToEnd("w1");
    EXPECT_EQ(service_->per_key["w1/a/do"], 2);
    EXPECT_EQ(engine_->Stats().circuit_waiting, 0u);
}

TEST_F(EngineTest, WorkflowDeadlineReachesAStepWaitingOnABreaker) {
    Reopen(Breakers(1, 60s));
    Register(Patient());
    Recover();
    service_->script = [](const ActionCall&, int) { return Answer{Answer::kError, ErrorCode::kUnavailable}; };
    const SteadyTime t0 = clock_.Now();
    Start("patient", "w1", "{}", 300ms);
    RunToEnd("w1");
    EXPECT_EQ(clock_.Now() - t0, 300ms) << "ended at the workflow's deadline, not after the breaker's 60 s";
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kRolledBack);
    EXPECT_NE(finished_["w1"].reason.find("deadline"), std::string::npos) << finished_["w1"].reason;
    EXPECT_EQ(service_->calls.size(), 1u);
    EXPECT_EQ(engine_->Stats().circuit_waiting, 0u);
}

TEST_F(EngineTest, DefinitiveRefusalsDoNotOpenTheBreaker) {
    Reopen(Breakers(2));
    Register(Patient());
    Recover();
    service_->script = [](const ActionCall&, int) {
        return Answer{Answer::kError, ErrorCode::kFailedPrecondition};
    };
    for (const char* id : {"w1", "w2", "w3", "w4"}) {
        Start("patient", id);
        RunToEnd(id);
        EXPECT_EQ(finished_[id].state, WorkflowState::kRolledBack);
    }
    EXPECT_EQ(service_->calls.size(), 4u) << "every refusal was an answer: every call was sent";
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kClosed);
    EXPECT_EQ(engine_->Stats().circuit_opens, 0u);
}

TEST_F(EngineTest, PollsWaitOnAnOpenBreakerToo) {
    Reopen(Breakers(3, 300ms));
    Register(DefinitionBuilder("long").Step("boot", "svc.boot").StepDeadline(60s).Build());
    Recover();
    service_->script = [](const ActionCall&, int) { return Answer{Answer::kAccept}; };
    service_->status_down = true;
    Start("long", "w1");
    // Three failed polls open the breaker; the next poll waits.
    RunUntil([&] { return engine_->Stats().circuit_waiting == 1; });
    EXPECT_EQ(service_->status_calls, 3);
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kOpen);
    RunFor(50ms);
    EXPECT_EQ(service_->status_calls, 3) << "no poll while the breaker is open";
    EXPECT_EQ(Load("w1").steps[0].state, StepState::kPolling);
    // The probe is the waiting poll; it finds the action done.
    service_->status_down = false;
    service_->polls_before_done = 0;
    RunToEnd("w1");
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(service_->status_calls, 4);
    EXPECT_EQ(service_->per_key["w1/boot/do"], 1);
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kClosed);
}

TEST_F(EngineTest, BreakersCanBeTurnedOffPerService) {
    EngineOptions o = Breakers(1);
    o.breakers["svc"].enabled = false;
    Reopen(o);
    Register(DefinitionBuilder("p").Step("a", "svc.a").Retry({4, 1ms, 2ms, 2.0, {}}).Build());
    Recover();
    service_->script = [](const ActionCall&, int) { return Answer{Answer::kError, ErrorCode::kUnavailable}; };
    Start("p", "w1");
    RunToEnd("w1");
    EXPECT_EQ(service_->calls.size(), 4u) << "every attempt went";
    EXPECT_EQ(engine_->Stats().circuit_opens, 0u);
    EXPECT_EQ(engine_->BreakerState("svc", ""), CircuitState::kClosed);
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

// ---------------------------------------------------------------------------------------------
// Observability: metrics, events, traces, logs.

namespace cogs::workflow {
namespace {

// The value of one series in a Prometheus text rendering, written the way prometheus-cpp writes it
// (labels in alphabetical order), or nullopt if the series is not there.
std::optional<double> SeriesValue(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
            line[series.size()] == ' ') {
            return std::stod(line.substr(series.size() + 1));
        }
    }
    return std::nullopt;
}

class EngineObserveTest : public EngineTest {
protected:
    void SetUp() override {
        EngineTest::SetUp();
        EngineOptions o;
        o.metrics = &metrics_;
        o.bulkheads["svc"] = 64;
        Reopen(o);
    }

    // The series' value in a fresh rendering; -1 (and a test failure) if it is missing.
    double Metric(const std::string& series) {
        const std::string text = metrics_.Render();
        auto v = SeriesValue(text, series);
        EXPECT_TRUE(v.has_value()) << series << " is not in\n" << text;
        return v.value_or(-1);
    }

    // a -> b -> c; b has a short timeout and quick retries.
    static Result<Definition> Observed() {
        return DefinitionBuilder("m")
            .Step("a", "svc.a")
            .Compensate("svc.undo_a")
            .Step("b", "svc.b")
            .After("a")
            .Timeout(30ms)
            .Retry({3, 1ms, 2ms, 2.0, {}})
            .Compensate("svc.undo_b")
            .Step("c", "svc.c")
            .After("b")
            .Compensate("svc.undo_c")
            .Build();
    }

    std::string StartWith(StartRequest r) {
        std::string got;
        engine_->Start(std::move(r), [&](Result<std::string> res) {
            ASSERT_TRUE(res) << res.error().ToString();
            got = *res;
        });
        RunUntil([&] { return !got.empty(); });
        return got;
    }

    observe::Metrics metrics_;
};

TEST_F(EngineObserveTest, MetricsFollowAScriptedRun) {
    Register(Observed());
    Recover();
    // w-ok: every call answers. w-retry: b's first attempt is unavailable. w-undo: b's first
    // attempt times out, c is refused for good, so b then a are compensated.
    service_->script = [](const ActionCall& c, int n) {
        const std::string wf = c.idempotency_key.substr(0, c.idempotency_key.find('/'));
        if (wf == "w-retry" && c.action == "b" && n == 1) {
            return Answer{Answer::kError, ErrorCode::kUnavailable};
        }
        if (wf == "w-undo" && c.action == "b" && n == 1) {
            return Answer{Answer::kHang};
        }
        if (wf == "w-undo" && c.action == "c") {
            return Answer{Answer::kError, ErrorCode::kFailedPrecondition};
        }
        return Answer{};
    };
    for (const char* id : {"w-ok", "w-retry", "w-undo"}) {
        Start("m", id);
    }
    EXPECT_EQ(Metric("cogs_workflows_started_total{type=\"m\"}"), 3);
    for (const char* id : {"w-ok", "w-retry", "w-undo"}) {
        RunToEnd(id);
    }
    EXPECT_EQ(finished_["w-undo"].state, WorkflowState::kRolledBack);

    EXPECT_EQ(Metric("cogs_workflows_finished_total{outcome=\"succeeded\",type=\"m\"}"), 2);
    EXPECT_EQ(Metric("cogs_workflows_finished_total{outcome=\"rolled_back\",type=\"m\"}"), 1);
    EXPECT_EQ(Metric("cogs_workflows_finished_total{outcome=\"failed\",type=\"m\"}"), 0);
    EXPECT_EQ(Metric("cogs_workflow_duration_seconds_count{outcome=\"succeeded\",type=\"m\"}"), 2);
    EXPECT_GE(Metric("cogs_workflow_duration_seconds_sum{outcome=\"rolled_back\",type=\"m\"}"), 0.03)
        << "it waited for b's 30 ms timeout";
    EXPECT_EQ(Metric("cogs_workflows_in_flight"), 0);

    auto calls = [&](const char* action, const char* outcome) {
        return Metric(std::string("cogs_service_calls_total{action=\"") + action + "\",outcome=\"" + outcome +
                      "\",service=\"svc\"}");
    };
    EXPECT_EQ(calls("a", "ok"), 3);
    EXPECT_EQ(calls("b", "ok"), 3);  // w-undo's too: its second attempt answered, then c failed
    EXPECT_EQ(calls("b", "retryable"), 1);
    EXPECT_EQ(calls("b", "timeout"), 1);
    EXPECT_EQ(calls("b", "permanent"), 0);
    EXPECT_EQ(calls("c", "ok"), 2);
    EXPECT_EQ(calls("c", "permanent"), 1);
    EXPECT_EQ(calls("undo_b", "ok"), 1);
    EXPECT_EQ(calls("undo_a", "ok"), 1);
    EXPECT_EQ(Metric("cogs_step_retries_total{action=\"b\",service=\"svc\"}"), 2);
    EXPECT_EQ(Metric("cogs_step_retries_total{action=\"a\",service=\"svc\"}"), 0);
    EXPECT_EQ(Metric("cogs_step_timeouts_total{action=\"b\",service=\"svc\"}"), 1);
    EXPECT_EQ(Metric("cogs_compensations_total{action=\"undo_b\",service=\"svc\"}"), 1);
    EXPECT_EQ(Metric("cogs_compensations_total{action=\"undo_a\",service=\"svc\"}"), 1);
    EXPECT_EQ(Metric("cogs_compensations_total{action=\"undo_c\",service=\"svc\"}"), 0)
        << "c was never applied";

    auto steps = [&](const char* action, const char* outcome) {
        return Metric(std::string("cogs_step_duration_seconds_count{action=\"") + action + "\",outcome=\"" +
                      outcome + "\",service=\"svc\"}");
    };
    EXPECT_EQ(steps("a", "succeeded"), 3);
    EXPECT_EQ(steps("b", "succeeded"), 3);  // one observation per step, however many attempts
    EXPECT_EQ(steps("b", "failed"), 0);
    EXPECT_EQ(steps("c", "succeeded"), 2);
    EXPECT_EQ(steps("c", "failed"), 1);
    EXPECT_EQ(steps("undo_b", "compensated"), 1);
    EXPECT_EQ(steps("undo_a", "compensated"), 1);
    EXPECT_EQ(steps("undo_a", "compensation_failed"), 0);
    EXPECT_GE(Metric("cogs_step_duration_seconds_sum{action=\"b\",outcome=\"succeeded\",service=\"svc\"}"),
              0.03)
        << "w-undo's b spans its timed-out first attempt";
    // Every dispatch: 3 + 4 + 6 (a, b, b again, c, undo_b, undo_a).
    EXPECT_EQ(Metric("cogs_step_schedule_to_start_seconds_count{service=\"svc\"}"), 13);

    EXPECT_EQ(Metric("cogs_bulkhead_limit{service=\"svc\"}"), 64);
    EXPECT_EQ(Metric("cogs_bulkhead_in_use{service=\"svc\"}"), 0);
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 0);

    // The store's, through the same registry: one observation of each histogram per transaction.
    store_->Flush();
    const double commits = Metric("cogs_store_commits_total");
    EXPECT_GT(commits, 0);
    EXPECT_EQ(Metric("cogs_store_commit_groups_count"), commits);
    EXPECT_EQ(Metric("cogs_store_commit_duration_seconds_count"), commits);
    EXPECT_GE(Metric("cogs_store_commit_groups_sum"), commits);
    EXPECT_EQ(Metric("cogs_store_fenced_total"), 0);
}

// Prometheus' own linter on what the engine and the store export: the exposition format parses,
// and the names follow the conventions (units, _total on counters, ...).
TEST_F(EngineObserveTest, PromtoolAcceptsTheRendering) {
    if (std::system("command -v promtool > /dev/null 2>&1") != 0) {
        GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
    }
    Register(Observed());
    Recover();
    RefuseForGood("c");
    Start("m", "w1");
    RunToEnd("w1");
    store_->Flush();
    const fs::path file = dir_ / "metrics.txt";
    const fs::path out = dir_ / "promtool.txt";
    {
        std::ofstream f(file);
        f << metrics_.Render();
    }
    const std::string cmd = "promtool check metrics < " + file.string() + " > " + out.string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    std::ifstream in(out);
    const std::string complaints((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(rc, 0) << complaints;
    EXPECT_EQ(complaints, "");
}

TEST_F(EngineObserveTest, InFlightAndBulkheadGaugesFollowTheWork) {
    EngineOptions o;
    o.metrics = &metrics_;
    o.bulkheads["svc"] = 2;
    Reopen(o);
    Register(DefinitionBuilder("one").Step("a", "svc.a").Build());
    Recover();
    service_->hold = true;
    StartMany("one", 5);
    RunUntil([&] { return service_->held.size() == 2 && engine_->Stats().started == 5; });
    EXPECT_EQ(Metric("cogs_workflows_in_flight"), 5);
    EXPECT_EQ(Metric("cogs_bulkhead_limit{service=\"svc\"}"), 2);
    EXPECT_EQ(Metric("cogs_bulkhead_in_use{service=\"svc\"}"), 2);
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 3);
    EXPECT_EQ(Metric("cogs_step_schedule_to_start_seconds_count{service=\"svc\"}"), 2);
    // Nothing moves while the answers are held: the three waiters wait 20 ms.
    RunFor(20ms);
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 3);

    ASSERT_NO_FATAL_FAILURE(ReleaseOneByOneUntil(5));
    EXPECT_EQ(Metric("cogs_workflows_in_flight"), 0);
    EXPECT_EQ(Metric("cogs_bulkhead_in_use{service=\"svc\"}"), 0);
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 0);
    EXPECT_EQ(Metric("cogs_step_schedule_to_start_seconds_count{service=\"svc\"}"), 5);
    // The three that waited for a slot waited 20 ms each; the first two not at all.
    EXPECT_NEAR(Metric("cogs_step_schedule_to_start_seconds_sum{service=\"svc\"}"), 0.06, 1e-9);
    EXPECT_EQ(Metric("cogs_workflows_finished_total{outcome=\"succeeded\",type=\"one\"}"), 5);
}

// A reload of cogsd's service catalog changes a bulkhead at run time: raised, the steps waiting for
// a slot go at once; lowered, new calls wait until those in flight are under the new limit.
TEST_F(EngineObserveTest, ABulkheadChangedAtRunTimeTakesEffectAtOnce) {
    EngineOptions o;
    o.metrics = &metrics_;
    o.bulkheads["svc"] = 1;
    Reopen(o);
    Register(DefinitionBuilder("one").Step("a", "svc.a").Build());
    Recover();
    service_->hold = true;
    StartMany("one", 4);
    RunUntil([&] { return service_->held.size() == 1 && engine_->Stats().started == 4; });
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 3);

    engine_->ConfigureService("svc", 3, EngineOptions::BreakerOptions{});
    RunUntil([&] { return service_->held.size() == 3; });
    EXPECT_EQ(Metric("cogs_bulkhead_limit{service=\"svc\"}"), 3);
    EXPECT_EQ(Metric("cogs_bulkhead_in_use{service=\"svc\"}"), 3);
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 1);

    engine_->ConfigureService("svc", 1, EngineOptions::BreakerOptions{});
    RunFor(20ms);
    EXPECT_EQ(service_->held.size(), 3u) << "calls in flight are not taken back";
    EXPECT_EQ(Metric("cogs_bulkhead_waiting{service=\"svc\"}"), 1);
    ASSERT_NO_FATAL_FAILURE(ReleaseOneByOneUntil(4));
    EXPECT_EQ(Metric("cogs_workflows_finished_total{outcome=\"succeeded\",type=\"one\"}"), 4);
}

constexpr const char* kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr const char* kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";

TEST_F(EngineObserveTest, ResourceBoundWorkflowRecordsItsHistoryAsEvents) {
    Register(Chain());
    Recover();
    service_->script = [](const ActionCall& c, int n) {
        if (c.action == "b" && n == 1) {
            return Answer{Answer::kError, ErrorCode::kUnavailable};
        }
        if (c.action == "c") {
            return Answer{Answer::kError, ErrorCode::kFailedPrecondition};
        }
        return Answer{};
    };
    StartRequest r;
    r.type = "chain";
    r.id = "w1";
    r.traceparent = kTraceparent;
    r.project = "p1";
    r.resource_kind = "server";
    r.resource_id = "s1";
    store::EventRecord created;
    created.project = "p1";
    created.resource_kind = "server";
    created.resource_id = "s1";
    created.type = "created";
    created.message = "server s1 created";
    r.events.push_back(created);
    StartWith(r);
    RunToEnd("w1");
    // A workflow without a resource writes no events.
    service_->script = [](const ActionCall&, int) { return Answer{}; };
    Start("chain", "w-plain");
    RunToEnd("w-plain");
    store_->Flush();

    auto events = store_->ListEvents({});
    ASSERT_TRUE(events) << events.error().ToString();
    std::vector<std::string> types;
    for (const auto& e : *events) {
        types.push_back(e.type);
        EXPECT_EQ(e.project, "p1");
        EXPECT_EQ(e.resource_kind, "server");
        EXPECT_EQ(e.resource_id, "s1");
        EXPECT_EQ(e.workflow_id, "w1") << "filled in for the events given to Start";
        EXPECT_EQ(e.trace_id, kTraceId);
        EXPECT_GT(e.time_ms, 0);
    }
    EXPECT_EQ(types, (std::vector<std::string>{"created", "step_succeeded", "step_retried", "step_succeeded",
                                               "step_failed", "step_compensated", "step_compensated",
                                               "workflow_rolled_back"}));
    ASSERT_EQ(events->size(), 8u);
    EXPECT_EQ((*events)[0].message, "server s1 created");
    EXPECT_EQ((*events)[1].message, "step a (svc.a) succeeded after 1 attempt");
    EXPECT_NE((*events)[2].message.find("step b (svc.b) attempt 1 failed, retrying in"), std::string::npos)
        << (*events)[2].message;
    EXPECT_NE((*events)[2].message.find("unavailable: scripted"), std::string::npos) << (*events)[2].message;
    EXPECT_EQ((*events)[3].message, "step b (svc.b) succeeded after 2 attempts");
    EXPECT_EQ((*events)[4].message, "step c (svc.c) failed: failed_precondition: scripted");
    EXPECT_EQ((*events)[5].message, "step b compensated (svc.undo_b)");
    EXPECT_EQ((*events)[6].message, "step a compensated (svc.undo_a)");
    EXPECT_EQ((*events)[7].message,
              "workflow chain rolled back: step c failed: failed_precondition: scripted");

    // The workflow remembers its resource, and the finish event carries it with the trace.
    auto rec = Load("w1");
    EXPECT_EQ(rec.resource_kind, "server");
    EXPECT_EQ(rec.resource_id, "s1");
    EXPECT_EQ(finished_["w1"].trace, kTraceparent);
    EXPECT_EQ(finished_["w1"].resource_kind, "server");
    EXPECT_EQ(finished_["w1"].resource_id, "s1");
    EXPECT_EQ(finished_["w-plain"].resource_id, "");
    // The engine's events are counted by type (the "created" one came with the start request).
    EXPECT_EQ(Metric(R"(cogs_events_total{type="step_succeeded"})"), 2);
    EXPECT_EQ(Metric(R"(cogs_events_total{type="step_retried"})"), 1);
    EXPECT_EQ(Metric(R"(cogs_events_total{type="workflow_rolled_back"})"), 1);
}

TEST_F(EngineObserveTest, EveryCallCarriesAChildSpanOfTheWorkflowsTrace) {
    Register(Chain());
    Recover();
    StartRequest r;
    r.type = "chain";
    r.id = "w-traced";
    r.traceparent = kTraceparent;
    StartWith(r);
    RunToEnd("w-traced");
    Start("chain", "w-untraced");
    RunToEnd("w-untraced");
    std::set<std::string> spans;
    for (const ActionCall& c : service_->calls) {
        if (c.idempotency_key.rfind("w-traced/", 0) == 0) {
            auto t = observe::ParseTraceparent(c.traceparent);
            ASSERT_TRUE(t.has_value()) << c.traceparent;
            EXPECT_EQ(t->trace_id, kTraceId);
            EXPECT_NE(t->span_id, "00f067aa0ba902b7") << "a child span, not the caller's";
            EXPECT_EQ(t->flags, 1);
            spans.insert(t->span_id);
        } else {
            EXPECT_EQ(c.traceparent, "") << "no trace, none sent";
        }
    }
    EXPECT_EQ(spans.size(), 3u) << "one span per call";
    auto listed = store_->ListWorkflows({});
    ASSERT_TRUE(listed);
    for (const auto& w : *listed) {
        EXPECT_EQ(w.trace, w.id == "w-traced" ? kTraceparent : "");
    }
}

TEST_F(EngineObserveTest, EngineLogLinesCarryTheWorkflowsIds) {
    ASSERT_TRUE(observe::SetupLogging({"engine_test", observe::LogFormat::kJson, "info"}));
    ASSERT_TRUE(observe::SetLevel("engine", "debug"));  // a step's failure is a debug line
    Register(Chain());
    Recover();
    RefuseForGood("c");
    StartRequest r;
    r.type = "chain";
    r.id = "w-logged";
    r.traceparent = kTraceparent;
    r.resource_kind = "server";
    r.resource_id = "s9";
    ::testing::internal::CaptureStderr();
    StartWith(r);
    RunToEnd("w-logged");
    const std::string err = ::testing::internal::GetCapturedStderr();
    std::string line;
    std::istringstream in(err);
    int found = 0;
    while (std::getline(in, line)) {
        if (line.find("rolled back") == std::string::npos &&
            line.find("step c (svc.c) failed") == std::string::npos) {
            continue;
        }
        ++found;
        EXPECT_NE(line.find(R"("component":"engine")"), std::string::npos) << line;
        EXPECT_NE(line.find(std::string(R"("trace_id":")") + kTraceId + "\""), std::string::npos) << line;
        EXPECT_NE(line.find(R"("workflow_id":"w-logged")"), std::string::npos) << line;
        EXPECT_NE(line.find(R"("resource_id":"s9")"), std::string::npos) << line;
    }
    EXPECT_EQ(found, 2) << err;
    ASSERT_TRUE(observe::SetLevel("engine", "info"));
}

TEST_F(EngineObserveTest, BreakerMetricsEventsAndLogs) {
    EngineOptions o = Breakers(1, 100ms);
    o.metrics = &metrics_;
    Reopen(o);
    ASSERT_TRUE(observe::SetupLogging({"engine_test", observe::LogFormat::kJson, "info"}));
    Register(DefinitionBuilder("p").Step("a", "svc.a").Retry({50, 1ms, 2ms, 2.0, {}}).Build());
    Recover();
    // w-bad's first call opens the breaker; w1 waits behind w-bad. The waiters take turns to probe
    // (a failed probe's retry waits at the back): w-bad's fails, w1's fails, w-bad's succeeds and
    // closes it, and w1 goes.
    service_->script = [](const ActionCall& c, int n) {
        const bool fails =
            (c.idempotency_key == "w-bad/a/do" && n <= 2) || (c.idempotency_key == "w1/a/do" && n == 1);
        return fails ? Answer{Answer::kError, ErrorCode::kUnavailable} : Answer{};
    };
    ::testing::internal::CaptureStderr();
    Start("p", "w-bad");
    RunUntil([&] { return engine_->Stats().circuit_waiting == 1; });
    StartRequest r;
    r.type = "p";
    r.id = "w1";
    r.project = "p1";
    r.resource_kind = "server";
    r.resource_id = "s1";
    StartWith(r);
    RunUntil([&] { return engine_->Stats().circuit_waiting == 2; });
    EXPECT_EQ(Metric(R"(cogs_circuit_state{endpoint="-",service="svc"})"), 1);
    EXPECT_EQ(Metric(R"(cogs_circuit_waiting{service="svc"})"), 2);
    EXPECT_EQ(Metric(R"(cogs_circuit_transitions_total{service="svc",to="open"})"), 1);
    RunToEnd("w-bad");
    RunToEnd("w1");
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(finished_["w1"].state, WorkflowState::kSucceeded);
    EXPECT_EQ(Metric(R"(cogs_circuit_state{endpoint="-",service="svc"})"), 0);
    EXPECT_EQ(Metric(R"(cogs_circuit_waiting{service="svc"})"), 0);
    EXPECT_EQ(Metric(R"(cogs_circuit_transitions_total{service="svc",to="open"})"), 3);
    EXPECT_EQ(Metric(R"(cogs_circuit_transitions_total{service="svc",to="half_open"})"), 3);
    EXPECT_EQ(Metric(R"(cogs_circuit_transitions_total{service="svc",to="closed"})"), 1);
    EXPECT_EQ(service_->Keys(),
              (std::vector<std::string>{"w-bad/a/do", "w-bad/a/do", "w1/a/do", "w-bad/a/do", "w1/a/do"}));

    // The resource-bound workflow tells its resource once per wait that its step waits: not again
    // while it waits through w-bad's failed probe, again after its own probe failed.
    store_->Flush();
    store::EventFilter f;
    f.resource_id = "s1";
    auto events = store_->ListEvents(f);
    ASSERT_TRUE(events) << events.error().ToString();
    std::vector<std::string> types;
    for (const auto& e : *events) {
        types.push_back(e.type);
    }
    EXPECT_EQ(types, (std::vector<std::string>{"step_waiting", "step_retried", "step_waiting",
                                               "step_succeeded", "workflow_succeeded"}));
    ASSERT_EQ(events->size(), 5u);
    EXPECT_EQ((*events)[0].message, "step a (svc.a) waits: circuit of svc is open");
    EXPECT_EQ((*events)[0].workflow_id, "w1");
    EXPECT_EQ((*events)[2].message, "step a (svc.a) waits: circuit of svc is open");
    EXPECT_EQ(Metric(R"(cogs_events_total{type="step_waiting"})"), 2);

    // One info line at each opening and one at the close, from the engine.
    int opened = 0, closed = 0;
    std::istringstream in(err);
    std::string line;
    while (std::getline(in, line)) {
        const bool o_line = line.find("circuit of svc opened") != std::string::npos;
        const bool c_line = line.find("circuit of svc closed") != std::string::npos;
        if (!o_line && !c_line) {
            continue;
        }
        opened += o_line;
        closed += c_line;
        EXPECT_NE(line.find(R"("component":"engine")"), std::string::npos) << line;
        EXPECT_NE(line.find(R"("level":"info")"), std::string::npos) << line;
    }
    EXPECT_EQ(opened, 3) << err;
    EXPECT_EQ(closed, 1) << err;
}

}  // namespace
}  // namespace cogs::workflow
