// Clock: the seam between cogs and time (LevelDB's Env, RocksDB's SystemClock).
//
// Everything that decides by time — the engine's retry backoffs and leases, host liveness, the
// compute agent's heartbeats and self-fencing, the instance supervisor — reads the time and arms its
// timers through a Clock it is given, never through std::chrono or asio directly. Production passes
// SystemClock(); a test passes a FakeClock and moves time itself, so that "nothing happens within
// the TTL" is proven by advancing exactly to the TTL instead of by sleeping, and no test passes or
// fails on the machine's speed.
//
// Two readings, as in cogs/base/time.h: Now() (steady: deadlines and timeouts inside a process) and
// WallMs()/WallUs() (the Unix epoch: anything persisted or compared across processes).
//
// Timers. NewTimer(io) makes a one-shot timer whose callback runs on `io` (never inline from Arm,
// Cancel or FakeClock::Advance). Arm(at, fn) replaces what was armed; Cancel() and the timer's
// destruction guarantee the callback does not run afterwards, even if its moment has passed and it
// was already queued. A Timer belongs to the thread that runs its io_context.
//
// Threading: SystemClock() is stateless and safe everywhere. A FakeClock may be read from any
// thread, but Advance() runs the due callbacks on the calling thread (it polls their io_contexts):
// call it from the thread that runs them, as a test does with its io_context.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "cogs/base/time.h"

namespace boost::asio {
class io_context;
}

namespace cogs::runtime {

namespace internal {
struct FakeClockState;
}

class Timer {
public:
    virtual ~Timer() = default;
    // Runs `fn` on the timer's io_context at `at` (at once, posted, if `at` has passed).
    virtual void Arm(SteadyTime at, std::function<void()> fn) = 0;
    void ArmAfter(Duration d, std::function<void()> fn);
    // The armed callback will not run.
    virtual void Cancel() = 0;
    // Whether a callback is armed and has not run yet.
    virtual bool armed() const = 0;

protected:
    virtual SteadyTime now() const = 0;
};

class Clock {
public:
    virtual ~Clock() = default;
    virtual SteadyTime Now() const = 0;
    virtual int64_t WallMs() const = 0;
    virtual int64_t WallUs() const = 0;
    virtual std::unique_ptr<Timer> NewTimer(boost::asio::io_context& io) = 0;
};

// The machine's clocks and asio's steady_timer.
Clock& SystemClock();

// A clock that moves only when told. Starts at an arbitrary steady time and at `wall_ms` (default:
// 2026-01-01T00:00:00Z), and both readings move together.
class FakeClock final : public Clock {
public:
    explicit FakeClock(int64_t wall_ms = 1767225600000);
    ~FakeClock() override;

    SteadyTime Now() const override;
    int64_t WallMs() const override;
    int64_t WallUs() const override;
    std::unique_ptr<Timer> NewTimer(boost::asio::io_context& io) override;

    // Moves time forward by `d`. Due timers fire in deadline order, each with Now() at its own
    // deadline: its callback is posted and its io_context polled (running it and whatever it posted
    // in turn) before the next one. Timers armed by those callbacks fire too if they fall due within
    // `d`. Finally Now() is the old time + `d` and every io_context of this clock's timers is polled.
    void Advance(Duration d);
    // Steps the wall clock alone by `d` (an NTP step or settimeofday): Now() and timers stay.
    void StepWall(Duration d);
    // The earliest armed deadline, if any.
    std::optional<SteadyTime> NextDeadline() const;
    // How many timers are armed.
    size_t armed() const;

private:
    std::shared_ptr<internal::FakeClockState> state_;
};

}  // namespace cogs::runtime
