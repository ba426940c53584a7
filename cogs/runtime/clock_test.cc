#include "cogs/runtime/clock.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <vector>

namespace cogs::runtime {
namespace {

using namespace std::chrono_literals;

TEST(FakeClockTest, TimersFireInDeadlineOrderEachAtItsOwnTime) {
    boost::asio::io_context io;
    FakeClock clock;
    const SteadyTime t0 = clock.Now();
    auto a = clock.NewTimer(io);
    auto b = clock.NewTimer(io);
    std::vector<std::pair<char, Duration>> fired;
    a->ArmAfter(300ms, [&] { fired.emplace_back('a', clock.Now() - t0); });
    b->ArmAfter(100ms, [&] { fired.emplace_back('b', clock.Now() - t0); });
    clock.Advance(99ms);
    EXPECT_TRUE(fired.empty());
    EXPECT_TRUE(a->armed());
    clock.Advance(1ms);
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0], std::make_pair('b', Duration(100ms)));
    EXPECT_FALSE(b->armed());
    clock.Advance(1s);
    ASSERT_EQ(fired.size(), 2u);
    EXPECT_EQ(fired[1], std::make_pair('a', Duration(300ms)));
    EXPECT_EQ(clock.Now() - t0, 1100ms);
}

TEST(FakeClockTest, AStepOfTheWallClockLeavesTheSteadyClockAndItsTimers) {
    boost::asio::io_context io;
    FakeClock clock(1000);
    const SteadyTime t0 = clock.Now();
    auto timer = clock.NewTimer(io);
    bool fired = false;
    timer->ArmAfter(1s, [&] { fired = true; });
    clock.StepWall(1h);
    EXPECT_EQ(clock.WallMs(), 1000 + 3'600'000);
    EXPECT_EQ(clock.Now(), t0);
    EXPECT_FALSE(fired);
    clock.Advance(1s);
    EXPECT_TRUE(fired);
    EXPECT_EQ(clock.WallMs(), 1000 + 3'600'000 + 1000);
}

TEST(FakeClockTest, ACallbackThatRearmsFiresAgainWithinTheSameAdvance) {
    boost::asio::io_context io;
    FakeClock clock;
    auto t = clock.NewTimer(io);
    int ticks = 0;
    std::function<void()> tick = [&] {
        ++ticks;
        t->ArmAfter(100ms, tick);
    };
    t->ArmAfter(100ms, tick);
    clock.Advance(1s);
    EXPECT_EQ(ticks, 10);
    EXPECT_TRUE(t->armed());
}

TEST(FakeClockTest, CancelledReArmedAndDestroyedTimersDoNotFire) {
    boost::asio::io_context io;
    FakeClock clock;
    auto t = clock.NewTimer(io);
    int fired = 0;
    t->ArmAfter(10ms, [&] { fired += 1; });
    t->Cancel();
    EXPECT_FALSE(t->armed());
    clock.Advance(20ms);
    EXPECT_EQ(fired, 0);

    t->ArmAfter(10ms, [&] { fired += 10; });
    t->ArmAfter(30ms, [&] { fired += 100; });  // replaces the first
    clock.Advance(20ms);
    EXPECT_EQ(fired, 0);
    clock.Advance(10ms);
    EXPECT_EQ(fired, 100);

    t->ArmAfter(10ms, [&] { fired += 1000; });
    t.reset();
    clock.Advance(1s);
    EXPECT_EQ(fired, 100);
    EXPECT_EQ(clock.armed(), 0u);
}

TEST(FakeClockTest, WallTimeMovesWithSteadyTime) {
    FakeClock clock(1'000'000);
    EXPECT_EQ(clock.WallMs(), 1'000'000);
    boost::asio::io_context io;
    clock.Advance(1500ms);
    EXPECT_EQ(clock.WallMs(), 1'001'500);
    EXPECT_EQ(clock.WallUs(), 1'001'500'000);
}

TEST(SystemClockTest, ATimerFiresOnItsIoContextAndCancelWins) {
    boost::asio::io_context io;
    auto t = SystemClock().NewTimer(io);
    bool fired = false;
    t->ArmAfter(0ms, [&] { fired = true; });
    EXPECT_FALSE(fired);  // never inline
    io.run();
    EXPECT_TRUE(fired);

    // A callback already due is still dropped by Cancel, and by a new Arm.
    bool late = false;
    t->Arm(SystemClock().Now() - 1s, [&] { late = true; });
    t->Cancel();
    EXPECT_FALSE(t->armed());
    int which = 0;
    t->Arm(SystemClock().Now() - 1s, [&] { which = 1; });
    t->Arm(SystemClock().Now() - 1s, [&] { which = 2; });
    io.restart();
    io.run();
    EXPECT_FALSE(late);
    EXPECT_EQ(which, 2);
}

}  // namespace
}  // namespace cogs::runtime
