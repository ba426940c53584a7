#include "cogs/services/kit/faults.h"

#include <algorithm>
#include <boost/json.hpp>

namespace cogs::services::kit {
namespace {

namespace json = boost::json;

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

bool Contains(const std::vector<std::string>& v, std::string_view s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

std::string_view ToString(CallKind kind) { return kind == CallKind::kDo ? "do" : "undo"; }

std::string_view ToString(Fault fault) {
    switch (fault) {
        case Fault::kNone:
            return "";
        case Fault::kError:
            return "error";
        case Fault::kHang:
            return "hang";
        case Fault::kPermanent:
            return "permanent";
        case Fault::kLostReply:
            return "lost_reply";
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
        case Fault::kNone:
            return;
        case Fault::kError:
            error_.Inc();
            return;
        case Fault::kHang:
            hang_.Inc();
            return;
        case Fault::kPermanent:
            permanent_.Inc();
            return;
        case Fault::kLostReply:
            lost_reply_.Inc();
            return;
    }
}

void FaultCounter::CountLatency() const { latency_.Inc(); }

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
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) {
        return MakeError(ErrorCode::kInvalidArgument, "faults: expected a JSON object");
    }
    FaultConfig f;
    auto number = [](const json::value& x, const std::string& name, double lo, double hi) -> Result<double> {
        if (!x.is_number()) {
            return MakeError(ErrorCode::kInvalidArgument, "field '" + name + "' must be a number");
        }
        double d = x.to_number<double>();
        if (!(d >= lo && d <= hi)) {
            return MakeError(ErrorCode::kInvalidArgument, "field '" + name + "' is out of range");
        }
        return d;
    };
    auto strings = [](const json::value& x, const std::string& name) -> Result<std::vector<std::string>> {
        std::vector<std::string> out;
        if (!x.is_array()) {
            return MakeError(ErrorCode::kInvalidArgument, "field '" + name + "' must be an array of strings");
        }
        for (const auto& s : x.get_array()) {
            if (!s.is_string()) {
                return MakeError(ErrorCode::kInvalidArgument,
                                 "field '" + name + "' must be an array of strings");
            }
            out.emplace_back(s.get_string());
        }
        return out;
    };
    constexpr double kMaxMs = 24.0 * 3600 * 1000;
    for (const auto& [k, x] : v.get_object()) {
        const std::string name(k);
        Result<double> d = 0.0;
        if (name == "error_rate") {
            d = number(x, name, 0, 1);
            f.error_rate = d.value_or(0);
        } else if (name == "permanent_rate") {
            d = number(x, name, 0, 1);
            f.permanent_rate = d.value_or(0);
        } else if (name == "hang_rate") {
            d = number(x, name, 0, 1);
            f.hang_rate = d.value_or(0);
        } else if (name == "lost_reply_rate") {
            d = number(x, name, 0, 1);
            f.lost_reply_rate = d.value_or(0);
        } else if (name == "latency_ms") {
            d = number(x, name, 0, kMaxMs);
            f.latency = FromMillis(d.value_or(0));
        } else if (name == "accept_duration_ms") {
            d = number(x, name, 0, kMaxMs);
            f.accept_duration = FromMillis(d.value_or(0));
        } else if (name == "fail_actions" || name == "long_actions") {
            auto list = strings(x, name);
            if (!list) {
                return MakeError(list.error());
            }
            (name == "fail_actions" ? f.fail_actions : f.long_actions) = std::move(*list);
        } else if (name == "hang_all") {
            if (!x.is_bool()) {
                return MakeError(ErrorCode::kInvalidArgument, "field 'hang_all' must be true or false");
            }
            f.hang_all = x.get_bool();
        } else {
            return MakeError(ErrorCode::kInvalidArgument, "unknown field '" + name + "'");
        }
        if (!d) {
            return MakeError(d.error());
        }
    }
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
