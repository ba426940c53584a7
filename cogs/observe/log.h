// Logs: one JSON object per line on stderr (or human-readable text), through spdlog.
//
//   {"ts":"2026-11-27T03:01:02.123456Z","level":"warn","process":"cogsd","component":"engine",
//    "msg":"...","trace_id":"...","workflow_id":"...","resource_id":"..."}
//
// A component logs through its own named logger, Log("engine").warn(...), so its level can be
// changed at run time (SetLevel, or PUT /v1/log-levels on every process). The ids come from the
// LogScope active on the logging thread: set one where a request or a workflow's work begins, for
// the synchronous code that follows (never across a co_await or a posted callback).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "cogs/base/result.h"

namespace cogs::observe {

enum class LogFormat { kJson, kText };

struct LogOptions {
    std::string process;  // "cogsd", "cogs-network", ...
    LogFormat format = LogFormat::kJson;
    std::string level = "info";  // trace, debug, info, warn, error, critical, off
};

// Makes every logger (the default one, which spdlog::info(...) uses, and every Log(component))
// write to stderr in `format` at `level`. kInvalidArgument names a bad level. Call once at start-up.
Status SetupLogging(const LogOptions& options);

// Parses "json" or "text".
Result<LogFormat> ParseLogFormat(std::string_view s);

// The logger of a component, created on first use with the process's sink, format and default
// level. The default logger is the process's own component.
spdlog::logger& Log(std::string_view component);

// Sets the level of one component, or of every component and the default for new ones when
// `component` is "*". kInvalidArgument names a bad level.
Status SetLevel(std::string_view component, std::string_view level);
// Ok if `level` names a level; kInvalidArgument naming the choices otherwise.
Status CheckLevel(std::string_view level);
// Every component's level, and "*": the default.
std::map<std::string, std::string> Levels();

// The ids that apply to the code running on this thread. Nested scopes inherit the outer scope's
// ids unless they set their own; the destructor restores the outer scope.
struct LogContext {
    std::string trace_id;
    std::string workflow_id;
    std::string resource_id;
};

class LogScope {
public:
    explicit LogScope(LogContext context);
    ~LogScope();
    LogScope(const LogScope&) = delete;
    LogScope& operator=(const LogScope&) = delete;

private:
    LogContext saved_;
};

// The context active on this thread (empty fields outside every scope).
const LogContext& CurrentLogContext();

}  // namespace cogs::observe
