#include "cogs/services/kit/faults.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/wire/input.h"

namespace cogs::services::kit {
namespace {

namespace json = wire::json;

double ToMillis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

Duration FromMillis(double ms) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

// Whole numbers as integers: Boost.JSON writes every double in exponent form ("1E2").
json::value Number(double d) {
    if (d > -1e15 && d < 1e15 && d == static_cast<double>(static_cast<int64_t>(d))) {
        return static_cast<int64_t>(d);
    }
    return d;
}

// A number in [0, max] (wire::Input reads integers only; rates and milliseconds may be fractional).
Result<std::optional<double>> ReadNumber(const wire::Input& in, std::string_view field, double max) {
    const json::value* v = in.Find(field);
    if (v == nullptr) {
        return std::optional<double>();
    }
    if (!v->is_number()) {
        return MakeError(in.Invalid(field, "must be a number"));
    }
    const double d = v->to_number<double>();
    if (!(d >= 0 && d <= max)) {
        return MakeError(
            in.Invalid(field, "must be between 0 and " + std::to_string(static_cast<int64_t>(max))));
    }
    return std::optional<double>(d);
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

std::string_view ToString(CallKind kind) { return kind == CallKind::kDo ? "do" : "undo"; }

std::string_view ToString(Fault fault) {
    switch (fault) {
        case Fault::kNone: return "";
        case Fault::kError: return "error";
        case Fault::kHang: return "hang";
        case Fault::kPermanent: return "permanent";
        case Fault::kLostReply: return "lost_reply";
    }
    return "";
}

FaultCounter::FaultCounter(observe::Metrics* metrics, std::string_view service) {
    const observe::CounterFamily family =
        observe::CounterOf(metrics, "cogs_service_faults_injected_total",
                           "Faults injected into calls (PUT /v1/faults or the fault flags), by kind.");
    const auto of = [&](std::string_view kind) {
        return family.With({{"service", std::string(service)}, {"kind", std::string(kind)}});
    };
    error_ = of(ToString(Fault::kError));
    hang_ = of(ToString(Fault::kHang));
    permanent_ = of(ToString(Fault::kPermanent));
    lost_reply_ = of(ToString(Fault::kLostReply));
    latency_ = of("latency");
}

void FaultCounter::Count(Fault fault) const {
    switch (fault) {
        case Fault::kNone: return;
        case Fault::kError: error_.Inc(); return;
        case Fault::kHang: hang_.Inc(); return;
        case Fault::kPermanent: permanent_.Inc(); return;
        case Fault::kLostReply: lost_reply_.Inc(); return;
    }
}

void FaultCounter::CountLatency() const { latency_.Inc(); }

Error InjectedError() { return Error(ErrorCode::kUnavailable, "injected error: try again"); }

std::string PermanentRefusal(const FaultConfig& faults, std::string_view action) {
    return std::string(action) +
           (IsFailAction(faults, action) ? " always fails (fail_actions)" : " failed permanently (injected)");
}

void AfterLatency(boost::asio::io_context& io, const FaultConfig& faults, const FaultCounter& counter,
                  std::function<void()> answer) {
    if (faults.latency <= Duration::zero()) {
        boost::asio::post(io, std::move(answer));
        return;
    }
    counter.CountLatency();
    auto timer = std::make_shared<boost::asio::steady_timer>(io, faults.latency);
    timer->async_wait([timer, answer = std::move(answer)](boost::system::error_code) { answer(); });
}

bool IsFailAction(const FaultConfig& faults, std::string_view action) {
    return Contains(faults.fail_actions, action);
}

bool IsLongAction(const FaultConfig& faults, std::string_view action) {
    return Contains(faults.long_actions, action);
}

Fault FaultRoller::Roll(const FaultConfig& faults, std::string_view action, CallKind kind) {
    // Always one draw, even with no faults set, so that a seed replays the same faults whatever the
    // settings were for earlier calls.
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    double edge = faults.error_rate;
    if (u < edge) {
        return Fault::kError;
    }
    edge += faults.hang_rate;
    if (u < edge) {
        return Fault::kHang;
    }
    if (kind == CallKind::kDo) {
        if (IsFailAction(faults, action)) {
            return Fault::kPermanent;
        }
        edge += faults.permanent_rate;
        if (u < edge) {
            return Fault::kPermanent;
        }
    }
    edge += faults.lost_reply_rate;
    if (u < edge) {
        return Fault::kLostReply;
    }
    return Fault::kNone;
}

Result<FaultConfig> ParseFaultConfig(std::string_view text) {
    COGS_ASSIGN_OR_RETURN(
        const wire::Input in,
        wire::Input::Parse(text,
                           {"error_rate", "permanent_rate", "hang_rate", "lost_reply_rate", "latency_ms",
                            "accept_duration_ms", "fail_actions", "long_actions", "hang_all"},
                           "faults"));
    FaultConfig f;
    for (auto [field, rate] :
         {std::pair{"error_rate", &f.error_rate}, std::pair{"permanent_rate", &f.permanent_rate},
          std::pair{"hang_rate", &f.hang_rate}, std::pair{"lost_reply_rate", &f.lost_reply_rate}}) {
        COGS_ASSIGN_OR_RETURN(auto r, ReadNumber(in, field, 1));
        *rate = r.value_or(0);
    }
    constexpr double kDayMs = 24.0 * 3600 * 1000;
    for (auto [field, d] :
         {std::pair{"latency_ms", &f.latency}, std::pair{"accept_duration_ms", &f.accept_duration}}) {
        COGS_ASSIGN_OR_RETURN(auto ms, ReadNumber(in, field, kDayMs));
        if (ms) {
            *d = FromMillis(*ms);
        }
    }
    COGS_ASSIGN_OR_RETURN(f.fail_actions, in.StringList("fail_actions"));
    COGS_ASSIGN_OR_RETURN(f.long_actions, in.StringList("long_actions"));
    COGS_ASSIGN_OR_RETURN(f.hang_all, in.OptionalBool("hang_all", false));
    return f;
}

std::string ToJson(const FaultConfig& f) {
    json::object o;
    o["error_rate"] = Number(f.error_rate);
    o["permanent_rate"] = Number(f.permanent_rate);
    o["hang_rate"] = Number(f.hang_rate);
    o["lost_reply_rate"] = Number(f.lost_reply_rate);
    o["latency_ms"] = Number(ToMillis(f.latency));
    o["fail_actions"] = json::array(f.fail_actions.begin(), f.fail_actions.end());
    o["long_actions"] = json::array(f.long_actions.begin(), f.long_actions.end());
    o["accept_duration_ms"] = Number(ToMillis(f.accept_duration));
    o["hang_all"] = f.hang_all;
    return json::serialize(o);
}

}  // namespace cogs::services::kit
