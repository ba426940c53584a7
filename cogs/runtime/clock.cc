#include "cogs/runtime/clock.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <set>

namespace cogs::runtime {

namespace asio = boost::asio;

void Timer::ArmAfter(Duration d, std::function<void()> fn) { Arm(now() + d, std::move(fn)); }

namespace {

// asio's steady_timer, with a generation so that a callback already queued when Cancel() or a new
// Arm() comes is dropped rather than run.
class SystemTimer final : public Timer {
public:
    explicit SystemTimer(asio::io_context& io) : state_(std::make_shared<State>(io)) {}
    ~SystemTimer() override { Cancel(); }

    void Arm(SteadyTime at, std::function<void()> fn) override {
        const uint64_t gen = ++state_->generation;
        state_->armed = true;
        state_->timer.expires_at(at);
        state_->timer.async_wait(
            [weak = std::weak_ptr<State>(state_), gen, fn = std::move(fn)](boost::system::error_code ec) {
                auto state = weak.lock();
                if (!state || ec || state->generation != gen) {
                    return;
                }
                state->armed = false;
                fn();
            });
    }

    void Cancel() override {
        ++state_->generation;
        state_->armed = false;
        state_->timer.cancel();
    }

    bool armed() const override { return state_->armed; }

protected:
    SteadyTime now() const override { return SteadyClock::now(); }

private:
    struct State {
        explicit State(asio::io_context& io) : timer(io) {}
        asio::steady_timer timer;
        uint64_t generation = 0;
        bool armed = false;
    };
    std::shared_ptr<State> state_;
};

class RealClock final : public Clock {
public:
    SteadyTime Now() const override { return SteadyClock::now(); }
    int64_t WallMs() const override { return WallNowMs(); }
    int64_t WallUs() const override { return WallNowUs(); }
    std::unique_ptr<Timer> NewTimer(asio::io_context& io) override {
        return std::make_unique<SystemTimer>(io);
    }
};

}  // namespace

Clock& SystemClock() {
    static RealClock clock;
    return clock;
}

// ---- FakeClock ----

namespace internal {

struct FakeClockState {
    mutable std::mutex mu;
    SteadyTime start = SteadyTime{} + std::chrono::hours(24);
    SteadyTime now = start;
    int64_t wall_us_at_start = 0;
    uint64_t next_seq = 0;
    struct Key {
        SteadyTime at;
        uint64_t seq;  // arming order breaks ties
        bool operator<(const Key& o) const { return at != o.at ? at < o.at : seq < o.seq; }
    };
    struct Armed {
        asio::io_context* io;
        std::function<void()> fn;  // checks its timer's generation, then runs the callback
    };
    std::map<Key, Armed> armed;
    std::multiset<asio::io_context*> ios;  // one entry per live timer

    SteadyTime Now() const {
        std::lock_guard lock(mu);
        return now;
    }
};

}  // namespace internal

namespace {

using internal::FakeClockState;

class FakeTimer final : public Timer {
public:
    FakeTimer(std::shared_ptr<FakeClockState> clock, asio::io_context& io)
        : clock_(std::move(clock)), io_(io), gen_(std::make_shared<uint64_t>(0)) {
        std::lock_guard lock(clock_->mu);
        clock_->ios.insert(&io_);
    }
    ~FakeTimer() override {
        Cancel();
        std::lock_guard lock(clock_->mu);
        clock_->ios.erase(clock_->ios.find(&io_));
    }

    void Arm(SteadyTime at, std::function<void()> fn) override {
        Cancel();
        const uint64_t gen = ++*gen_;
        std::lock_guard lock(clock_->mu);
        key_ = FakeClockState::Key{at, ++clock_->next_seq};
        clock_->armed.emplace(*key_, FakeClockState::Armed{&io_, [weak = std::weak_ptr<uint64_t>(gen_), gen,
                                                                  fn = std::move(fn)] {
                                                               auto g = weak.lock();
                                                               if (g && *g == gen) {
                                                                   ++*g;  // fired: armed() is false from here
                                                                   fn();
                                                               }
                                                           }});
    }

    void Cancel() override {
        ++*gen_;
        if (key_) {
            std::lock_guard lock(clock_->mu);
            clock_->armed.erase(*key_);
            key_.reset();
        }
    }

    bool armed() const override {
        if (!key_) return false;
        std::lock_guard lock(clock_->mu);
        return clock_->armed.contains(*key_);  // taken off when it falls due
    }

protected:
    SteadyTime now() const override { return clock_->Now(); }

private:
    std::shared_ptr<FakeClockState> clock_;
    asio::io_context& io_;
    std::shared_ptr<uint64_t> gen_;  // bumped by Cancel, Arm and firing; a stale callback is dropped
    std::optional<FakeClockState::Key> key_;
};

}  // namespace

FakeClock::FakeClock(int64_t wall_ms) : state_(std::make_shared<FakeClockState>()) {
    state_->wall_us_at_start = wall_ms * 1000;
}

FakeClock::~FakeClock() = default;

SteadyTime FakeClock::Now() const { return state_->Now(); }

int64_t FakeClock::WallUs() const {
    std::lock_guard lock(state_->mu);
    return state_->wall_us_at_start +
           std::chrono::duration_cast<std::chrono::microseconds>(state_->now - state_->start).count();
}

int64_t FakeClock::WallMs() const { return WallUs() / 1000; }

std::unique_ptr<Timer> FakeClock::NewTimer(asio::io_context& io) {
    return std::make_unique<FakeTimer>(state_, io);
}

void FakeClock::Advance(Duration d) {
    const SteadyTime target = Now() + d;
    for (;;) {
        asio::io_context* io = nullptr;
        {
            std::lock_guard lock(state_->mu);
            auto it = state_->armed.begin();
            if (it == state_->armed.end() || target < it->first.at) {
                break;
            }
            state_->now = std::max(state_->now, it->first.at);
            io = it->second.io;
            asio::post(*io, std::move(it->second.fn));
            state_->armed.erase(it);
        }
        io->restart();
        io->poll();
    }
    std::set<asio::io_context*> ios;
    {
        std::lock_guard lock(state_->mu);
        state_->now = std::max(state_->now, target);
        ios.insert(state_->ios.begin(), state_->ios.end());
    }
    for (auto* io : ios) {
        io->restart();
        io->poll();
    }
}

void FakeClock::StepWall(Duration d) {
    std::lock_guard lock(state_->mu);
    state_->wall_us_at_start += std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

std::optional<SteadyTime> FakeClock::NextDeadline() const {
    std::lock_guard lock(state_->mu);
    if (state_->armed.empty()) return std::nullopt;
    return state_->armed.begin()->first.at;
}

size_t FakeClock::armed() const {
    std::lock_guard lock(state_->mu);
    return state_->armed.size();
}

}  // namespace cogs::runtime
