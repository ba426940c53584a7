#include "cogs/oci/internal/runc_output.h"

#include <fmt/format.h>
#include <boost/json.hpp>

namespace cogs::oci::internal {
namespace {

namespace json = boost::json;

// The output as runc wrote it: JSON values (state, list, log lines) and, from the first byte that
// does not parse as JSON on, plain text (an old runc's text logs, a Go panic).
struct Pieces {
    std::vector<json::value> values;
    std::string text;
};

Pieces Split(std::string_view output) {
    Pieces out;
    size_t pos = 0;
    for (;;) {
        pos = output.find_first_not_of(" \t\r\n", pos);
        if (pos == std::string_view::npos) {
            return out;
        }
        json::stream_parser parser;
        boost::system::error_code ec;
        const size_t used = parser.write_some(output.data() + pos, output.size() - pos, ec);
        if (!ec && !parser.done()) {
            parser.finish(ec);  // a value that ends with the text (a number, say)
        }
        if (ec || !parser.done()) {
            out.text = std::string(output.substr(pos));
            return out;
        }
        out.values.push_back(parser.release());
        pos += used;
    }
}

// A runc log line: {"level": ..., "msg": ..., "time": ...}.
const json::object* LogLine(const json::value& v) {
    const json::object* o = v.if_object();
    if (o == nullptr || !o->contains("level") || !o->contains("msg")) {
        return nullptr;
    }
    return o;
}

std::string StringField(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (v == nullptr || !v->is_string()) {
        return "";
    }
    return std::string(v->as_string());
}

Result<RuncState> StateOf(const json::value& v) {
    const json::object* o = v.if_object();
    if (o == nullptr) {
        return MakeError(ErrorCode::kUnavailable, "runc state: not an object");
    }
    RuncState state;
    state.id = StringField(*o, "id");
    if (state.id.empty()) {
        return MakeError(ErrorCode::kUnavailable, "runc state: no id");
    }
    COGS_ASSIGN_OR_RETURN(state.status, ParseRuncStatus(StringField(*o, "status")));
    if (const json::value* pid = o->if_contains("pid"); pid != nullptr && pid->is_int64()) {
        state.pid = static_cast<int>(pid->as_int64());
    }
    state.bundle = StringField(*o, "bundle");
    return state;
}

std::string Shorten(std::string s) {
    constexpr size_t kMax = 500;
    if (s.size() > kMax) {
        s.resize(kMax);
        s += "...";
    }
    return s;
}

std::string Trim(std::string s) {
    const size_t first = s.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) {
        return "";
    }
    return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

}  // namespace

std::string RuncErrorMessage(std::string_view output) {
    const Pieces pieces = Split(output);
    std::string message;
    for (const json::value& v : pieces.values) {
        const json::object* line = LogLine(v);
        if (line == nullptr) {
            continue;
        }
        const std::string level = StringField(*line, "level");
        if (level == "error" || level == "fatal" || level == "panic") {
            if (!message.empty()) {
                message += "; ";
            }
            message += StringField(*line, "msg");
        }
    }
    if (!message.empty()) {
        return Shorten(std::move(message));
    }
    return Shorten(Trim(pieces.text));
}

Result<RuncStatus> ParseRuncStatus(std::string_view status) {
    if (status == "creating") {
        return RuncStatus::kCreating;
    }
    if (status == "created") {
        return RuncStatus::kCreated;
    }
    if (status == "running") {
        return RuncStatus::kRunning;
    }
    if (status == "pausing") {
        return RuncStatus::kPausing;
    }
    if (status == "paused") {
        return RuncStatus::kPaused;
    }
    if (status == "stopped") {
        return RuncStatus::kStopped;
    }
    return MakeError(ErrorCode::kUnavailable, fmt::format("runc: unknown container status '{}'", status));
}

Result<RuncState> ParseState(std::string_view output) {
    for (const json::value& v : Split(output).values) {
        if (v.is_object() && LogLine(v) == nullptr) {
            return StateOf(v);
        }
    }
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("runc state printed no state: {}", Shorten(Trim(std::string(output)))));
}

Result<std::vector<RuncState>> ParseList(std::string_view output) {
    for (const json::value& v : Split(output).values) {
        if (v.is_null()) {
            return std::vector<RuncState>{};  // runc prints null for an empty list
        }
        if (const json::array* a = v.if_array()) {
            std::vector<RuncState> out;
            for (const json::value& item : *a) {
                COGS_ASSIGN_OR_RETURN(RuncState state, StateOf(item));
                out.push_back(std::move(state));
            }
            return out;
        }
    }
    return MakeError(ErrorCode::kUnavailable,
                     fmt::format("runc list printed no list: {}", Shorten(Trim(std::string(output)))));
}

}  // namespace cogs::oci::internal
