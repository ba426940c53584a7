// The `cogs` command line: every subcommand of the CLI (it speaks only the cogsd REST API,
// docs/api.md) and `cogs dev`, the one-command local cloud. apps/cogs/main.cc is RunCli(argv).
//
// The observability commands: `top` (a live view computed from cogsd's /metrics), `events` (the
// event history of resources), `log-level` (cogsd's log levels at run time).
//
// Exit codes: 0 success; 1 the API refused (printed as `error: <message> (<code>)`), could not be
// reached, or an operation followed with --wait ended in ERROR / was rolled back; 2 bad usage.
//
// Threading: RunCli runs on the calling thread and returns when the command is done (`cogs dev`:
// when it is stopped by SIGINT/SIGTERM). It may be called repeatedly (tests do) but not concurrently.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace cogs::cli {

struct CliIo {
    std::ostream* out = nullptr;  // results (tables, JSON); std::cout if null
    std::ostream* err = nullptr;  // errors, hints and --wait progress; std::cerr if null
    // Environment lookup (COGS_URL, COGS_TOKEN, XDG_CONFIG_HOME, HOME); the process environment if unset.
    std::function<std::optional<std::string>(const std::string&)> getenv{};
    // Asked after each refresh of `cogs top` and each poll of `cogs events --follow`: once it answers
    // true they end with exit 0. Null: they run until the process is interrupted (Ctrl-C).
    std::function<bool()> stop{};
    std::istream* in = nullptr;  // what `--password-file -` reads; std::cin if null
};

// Runs the command in `args` (args[0] is the program name, as in argv).
int RunCli(const std::vector<std::string>& args, const CliIo& io = {});

}  // namespace cogs::cli
