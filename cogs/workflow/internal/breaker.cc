#include "cogs/workflow/internal/breaker.h"

#include <algorithm>

namespace cogs::workflow::internal {

Breaker::Breaker(Config config) {
    Reconfigure(config);
    open_for_ = config_.open_for;
}

void Breaker::Reconfigure(Config config) {
    config_ = config;
    config_.failure_threshold = std::max(1, config_.failure_threshold);
    config_.half_open_probes = std::max(1, config_.half_open_probes);
    config_.open_for = std::max<Duration>(config_.open_for, std::chrono::milliseconds(1));
    config_.max_open_for = std::max(config_.max_open_for, config_.open_for);
}

bool Breaker::CanSend() const {
    switch (state_) {
        case State::kClosed: return true;
        case State::kHalfOpen: return probes_out_ < config_.half_open_probes;
        case State::kOpen: return false;
    }
    return false;
}

bool Breaker::OnSend() {
    if (state_ != State::kHalfOpen) {
        return false;
    }
    ++probes_out_;
    return true;
}

Breaker::Change Breaker::OnAnswer(bool probe, bool failed, SteadyTime now) {
    if (probe) {
        probes_out_ = std::max(0, probes_out_ - 1);
        if (state_ != State::kHalfOpen) {
            return Change::kNone;  // another probe decided already
        }
        if (failed) {
            Open(now, std::min<Duration>(open_for_ * 2, config_.max_open_for));
            return Change::kOpened;
        }
        state_ = State::kClosed;
        failures_ = 0;
        open_for_ = config_.open_for;
        return Change::kClosed;
    }
    if (state_ != State::kClosed) {
        return Change::kNone;  // sent before it opened: the breaker knows already
    }
    if (!failed) {
        failures_ = 0;
        return Change::kNone;
    }
    if (++failures_ < config_.failure_threshold) {
        return Change::kNone;
    }
    Open(now, config_.open_for);
    return Change::kOpened;
}

void Breaker::ProbeDropped() { probes_out_ = std::max(0, probes_out_ - 1); }

bool Breaker::HalfOpenIfDue(SteadyTime now) {
    if (state_ != State::kOpen || now < open_until_) {
        return false;
    }
    state_ = State::kHalfOpen;
    return true;
}

void Breaker::Open(SteadyTime now, Duration period) {
    state_ = State::kOpen;
    failures_ = 0;
    open_for_ = period;
    open_until_ = now + period;
    ++epoch_;
}

}  // namespace cogs::workflow::internal
