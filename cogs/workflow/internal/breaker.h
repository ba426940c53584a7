// The circuit breaker of one service endpoint, as a pure state machine (no clock, no engine): the
// engine feeds it the calls it sends, their answers and the time, and acts on what it says.
//
//   closed --(failure_threshold consecutive failed answers)--> open
//   open --(open_for elapsed: HalfOpenIfDue)--> half-open
//   half-open: up to half_open_probes calls go (probes); the first probe answer decides:
//       success -> closed (open_for back to its configured value)
//       failure -> open again, for twice the last period, at most max_open_for
//
// A "failure" is an answer that says the endpoint did not answer (a retryable error,
// unavailable, a timeout); the caller decides that and passes a bool. Answers of calls sent before
// the breaker opened (non-probes) count only while it is closed; answers that arrive while it is
// open or half-open say nothing new and are ignored, except a probe's while half-open.
//
// Threading: none; the engine uses it on its io thread.
#pragma once

#include <chrono>
#include <cstdint>

#include "cogs/base/time.h"

namespace cogs::workflow::internal {

class Breaker {
public:
    enum class State : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
    // What an answer did.
    enum class Change : uint8_t { kNone, kOpened, kClosed };

    // Values below their minimum are raised to it: failure_threshold and half_open_probes to 1,
    // open_for to 1 ms, max_open_for to open_for.
    struct Config {
        int failure_threshold = 5;
        Duration open_for = std::chrono::seconds(1);
        Duration max_open_for = std::chrono::seconds(30);
        int half_open_probes = 1;
    };

    explicit Breaker(Config config);
    // New settings, from the next answer on (an open period runs out as it was).
    void Reconfigure(Config config);

    State state() const { return state_; }
    // While open: when it goes half-open.
    SteadyTime open_until() const { return open_until_; }
    // The length of the current (or last) open period.
    Duration open_for() const { return open_for_; }
    // Bumped at each opening: a timer armed for one open period recognizes a later one.
    uint64_t epoch() const { return epoch_; }
    int consecutive_failures() const { return failures_; }
    int probes_out() const { return probes_out_; }

    // A call may be sent now: closed, or half-open with a probe place free.
    bool CanSend() const;

    // A call is sent (CanSend() was true). Returns true if it is a probe: its answer (or
    // ProbeDropped) must be reported with probe=true.
    bool OnSend();

    // A sent call's answer. `probe` as OnSend returned; `failed`: the endpoint did not answer.
    Change OnAnswer(bool probe, bool failed, SteadyTime now);

    // A probe was never sent, or its answer says nothing about the endpoint: its place is free.
    void ProbeDropped();

    // Open and open_until reached: goes half-open and returns true.
    bool HalfOpenIfDue(SteadyTime now);

private:
    void Open(SteadyTime now, Duration period);

    Config config_;
    State state_ = State::kClosed;
    int failures_ = 0;    // consecutive failed answers while closed
    int probes_out_ = 0;  // probes sent and not answered (any period)
    Duration open_for_;
    SteadyTime open_until_{};
    uint64_t epoch_ = 0;
};

}  // namespace cogs::workflow::internal
