#include "cogs/observe/log.h"

#include <time.h>

#include <memory>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace cogs::observe {
namespace {

thread_local LogContext t_context;

void AppendJsonString(std::string& out, std::string_view s) {
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    static constexpr char kHex[] = "0123456789abcdef";
                    out += "\\u00";
                    out.push_back(kHex[c >> 4]);
                    out.push_back(kHex[c & 0xf]);
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
    out.push_back('"');
}

// "2026-11-27T03:01:02.123456Z"
void AppendTime(std::string& out, spdlog::log_clock::time_point tp) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(tp.time_since_epoch()).count();
    const time_t secs = static_cast<time_t>(us / 1000000);
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char buf[40];
    const size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    out.append(buf, n);
    char frac[16];
    snprintf(frac, sizeof frac, ".%06ldZ", static_cast<long>(us % 1000000));
    out += frac;
}

std::string_view LevelName(spdlog::level::level_enum l) {
    switch (l) {
        case spdlog::level::trace: return "trace";
        case spdlog::level::debug: return "debug";
        case spdlog::level::info: return "info";
        case spdlog::level::warn: return "warn";
        case spdlog::level::err: return "error";
        case spdlog::level::critical: return "critical";
        default: return "off";
    }
}

// Formats a line on the logging thread, so the thread's LogContext is the one that applies.
class LineFormatter final : public spdlog::formatter {
public:
    LineFormatter(std::string process, LogFormat format) : process_(std::move(process)), format_(format) {}

    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        std::string line;
        line.reserve(160 + msg.payload.size());
        const std::string_view component(msg.logger_name.data(), msg.logger_name.size());
        const std::string_view text(msg.payload.data(), msg.payload.size());
        const LogContext& ctx = t_context;
        if (format_ == LogFormat::kJson) {
            line += "{\"ts\":\"";
            AppendTime(line, msg.time);
            line += "\",\"level\":\"";
            line += LevelName(msg.level);
            line += "\",\"process\":";
            AppendJsonString(line, process_);
            line += ",\"component\":";
            AppendJsonString(line, component.empty() ? std::string_view(process_) : component);
            line += ",\"msg\":";
            AppendJsonString(line, text);
            auto field = [&](const char* name, const std::string& v) {
                if (!v.empty()) {
                    line += ",\"";
                    line += name;
                    line += "\":";
                    AppendJsonString(line, v);
                }
            };
            field("trace_id", ctx.trace_id);
            field("workflow_id", ctx.workflow_id);
            field("resource_id", ctx.resource_id);
            line += "}\n";
        } else {
            AppendTime(line, msg.time);
            line += ' ';
            line += LevelName(msg.level);
            line += ' ';
            line += component.empty() ? std::string_view(process_) : component;
            line += ": ";
            line += text;
            auto field = [&](const char* name, const std::string& v) {
                if (!v.empty()) {
                    line += ' ';
                    line += name;
                    line += '=';
                    line += v;
                }
            };
            field("trace", ctx.trace_id);
            field("workflow", ctx.workflow_id);
            field("resource", ctx.resource_id);
            line += '\n';
        }
        dest.append(line.data(), line.data() + line.size());
    }

    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<LineFormatter>(process_, format_);
    }

private:
    std::string process_;
    LogFormat format_;
};

struct State {
    std::mutex mu;
    std::shared_ptr<spdlog::sinks::sink> sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    spdlog::level::level_enum default_level = spdlog::level::info;
    std::string process = "cogs";
    std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;  // by component
};

State& S() {
    static State* s = new State();  // never destroyed: loggers may be used during static destruction
    return *s;
}

Result<spdlog::level::level_enum> ParseLevel(std::string_view s) {
    const auto l = spdlog::level::from_str(std::string(s));
    if (l == spdlog::level::off && s != "off") {
        return MakeError(Error(ErrorCode::kInvalidArgument,
                               "log level must be trace, debug, info, warn, error, critical or off, got '" +
                                   std::string(s) + "'"));
    }
    return l;
}

}  // namespace

Result<LogFormat> ParseLogFormat(std::string_view s) {
    if (s == "json") {
        return LogFormat::kJson;
    }
    if (s == "text") {
        return LogFormat::kText;
    }
    return MakeError(
        Error(ErrorCode::kInvalidArgument, "log format must be json or text, got '" + std::string(s) + "'"));
}

Status SetupLogging(const LogOptions& options) {
    auto level = ParseLevel(options.level);
    if (!level) {
        return MakeError(level.error());
    }
    State& s = S();
    std::lock_guard lock(s.mu);
    s.process = options.process.empty() ? "cogs" : options.process;
    s.default_level = *level;
    s.sink->set_formatter(std::make_unique<LineFormatter>(s.process, options.format));
    // The default logger (spdlog::info(...)) is the process's own component.
    auto def = std::make_shared<spdlog::logger>(s.process, s.sink);
    def->set_level(*level);
    def->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(def);
    s.loggers[s.process] = def;
    for (auto& [name, logger] : s.loggers) {
        logger->set_level(*level);
    }
    return {};
}

spdlog::logger& Log(std::string_view component) {
    State& s = S();
    std::lock_guard lock(s.mu);
    auto it = s.loggers.find(component);
    if (it != s.loggers.end()) {
        return *it->second;
    }
    auto logger = std::make_shared<spdlog::logger>(std::string(component), s.sink);
    logger->set_level(s.default_level);
    logger->flush_on(spdlog::level::warn);
    return *s.loggers.emplace(std::string(component), std::move(logger)).first->second;
}

Status SetLevel(std::string_view component, std::string_view level) {
    auto l = ParseLevel(level);
    if (!l) {
        return MakeError(l.error());
    }
    if (component.empty()) {
        return MakeError(Error(ErrorCode::kInvalidArgument, "log component must not be empty"));
    }
    State& s = S();
    if (component == "*") {
        std::lock_guard lock(s.mu);
        s.default_level = *l;
        for (auto& [name, logger] : s.loggers) {
            logger->set_level(*l);
        }
        return {};
    }
    Log(component).set_level(*l);
    return {};
}

Status CheckLevel(std::string_view level) {
    auto l = ParseLevel(level);
    if (!l) {
        return MakeError(l.error());
    }
    return {};
}

std::map<std::string, std::string> Levels() {
    State& s = S();
    std::lock_guard lock(s.mu);
    std::map<std::string, std::string> out;
    out["*"] = std::string(LevelName(s.default_level));
    for (const auto& [name, logger] : s.loggers) {
        out[name] = std::string(LevelName(logger->level()));
    }
    return out;
}

LogScope::LogScope(LogContext context) : saved_(t_context) {
    if (context.trace_id.empty()) {
        context.trace_id = saved_.trace_id;
    }
    if (context.workflow_id.empty()) {
        context.workflow_id = saved_.workflow_id;
    }
    if (context.resource_id.empty()) {
        context.resource_id = saved_.resource_id;
    }
    t_context = std::move(context);
}

LogScope::~LogScope() { t_context = std::move(saved_); }

const LogContext& CurrentLogContext() { return t_context; }

}  // namespace cogs::observe
