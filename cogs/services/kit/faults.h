// Fault injection for cogs micro-services: the settings (PUT /v1/faults, the --error-rate... flags)
// and the one draw that decides which fault, if any, strikes a call with a new idempotency key.
// The simulated service (cogs/services/sim) and every kit::DomainService share both.
//
// Threading: plain values; a FaultRoller belongs to its service's io thread.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/observe/metrics.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::kit {

struct FaultConfig {
    double error_rate = 0;                    // kUnavailable, nothing applied
    double permanent_rate = 0;                // kFailedPrecondition, nothing applied, remembered for the key
    double hang_rate = 0;                     // no answer, nothing applied
    double lost_reply_rate = 0;               // applied and recorded, no answer
    Duration latency{0};                      // every answer waits this long (a timer, never a sleep)
    std::vector<std::string> fail_actions{};  // these actions always fail permanently (do calls)
    std::vector<std::string> long_actions{};  // these actions answer "accepted" and finish later
    Duration accept_duration = std::chrono::milliseconds(100);  // how long a long action runs
    bool hang_all = false;                                      // every call hangs (to park many workflows)
};

// FaultConfig as JSON, the body of PUT /v1/faults (see docs/service-protocol.md): rates as numbers,
// durations as "latency_ms" / "accept_duration_ms". Every field is optional (absent: the default);
// an unknown field or a wrong type is kInvalidArgument naming the field.
Result<FaultConfig> ParseFaultConfig(std::string_view json);
std::string ToJson(const FaultConfig& faults);

// Whether `action` is listed in fail_actions / long_actions.
bool IsFailAction(const FaultConfig& faults, std::string_view action);
bool IsLongAction(const FaultConfig& faults, std::string_view action);

enum class Fault {
    kNone,
    kError,      // answer kUnavailable (503), apply nothing
    kHang,       // never answer, apply nothing
    kPermanent,  // refuse for good (422) and record the refusal for the key (do calls only)
    kLostReply,  // apply and record, but never answer
};

enum class CallKind { kDo, kUndo };
std::string_view ToString(CallKind kind);  // "do" | "undo"

// Decides the fault of a call with a new key from ONE uniform draw u in [0,1), in this order:
//   u < error_rate                      kError
//   ... + hang_rate                     kHang
//   action in fail_actions (do only)    kPermanent (whatever u)
//   ... + permanent_rate (do only)      kPermanent
//   ... + lost_reply_rate               kLostReply
// The rates add up; past 1 the later ones never strike. An undo never gets kPermanent. hang_all is
// not rolled: the services check it first, for every call. The same seed and sequence of calls give
// the same faults.
class FaultRoller {
public:
    explicit FaultRoller(uint64_t seed) : rng_(seed) {}
    Fault Roll(const FaultConfig& faults, std::string_view action, CallKind kind);

private:
    std::mt19937_64 rng_;
};

// What a call struck by a fault is answered, the same by every service: kError's retryable
// kUnavailable "injected error: try again", and kPermanent's refusal of `action` (recorded for the
// key): "<action> always fails (fail_actions)" or "<action> failed permanently (injected)".
Error InjectedError();
std::string PermanentRefusal(const FaultConfig& faults, std::string_view action);

// What a fault is called in cogs_service_faults_injected_total{kind}: "error", "hang", "permanent",
// "lost_reply" ("" for kNone).
std::string_view ToString(Fault fault);

// cogs_service_faults_injected_total{service,kind} (docs/metrics.md): one count per fault that struck
// a call, and kind "latency" per answer held back by FaultConfig.latency. The handles are looked up
// once, here; with a null registry every method is a no-op (the in-process benchmarks).
class FaultCounter {
public:
    FaultCounter() = default;
    FaultCounter(observe::Metrics* metrics, std::string_view service);

    void Count(Fault fault) const;  // kNone counts nothing
    void CountLatency() const;

private:
    observe::Counter error_, hang_, permanent_, lost_reply_, latency_;
};

// Runs `answer` on `io`, never inline: posted, or after faults.latency on a (machine-time) timer,
// counted in `counter` as kind "latency". Every answer of a service leaves through here.
void AfterLatency(boost::asio::io_context& io, const FaultConfig& faults, const FaultCounter& counter,
                  std::function<void()> answer);

}  // namespace cogs::services::kit
