// One run of the `cogs` command: its streams, the global options, the API client (made on first use
// from the settings), how failures are printed, and the one action the parse chose. Every command
// (the table's generic verbs, the special ones, the observability ones) runs against an Invocation.
// Internal to cogs/cli.
//
// Threading: the calling thread only, like RunCli.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "cogs/base/time.h"
#include "cogs/cli/cli.h"
#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/config.h"
#include "cogs/cli/internal/wait.h"

namespace CLI {
class App;
}

namespace cogs::cli {

// "30s", "500ms", "2m", "1h", or a bare number of seconds; nullopt if not a positive duration.
std::optional<Duration> ParseDuration(const std::string& s);

class Invocation {
public:
    explicit Invocation(const CliIo& io);
    ~Invocation();
    Invocation(const Invocation&) = delete;
    Invocation& operator=(const Invocation&) = delete;

    // The global options (cli.cc binds them; they may come before or after the subcommand).
    struct Options {
        std::string url{};
        std::string token{};
        std::string config{};
        std::string ca_file{};      // --ca-file (else COGS_CACERT)
        std::string client_cert{};  // --client-cert, --client-key: mutual TLS (a service's routes)
        std::string client_key{};
        std::string output = "table";
        std::string timeout = "30s";
        std::string wait_timeout = "10m";
        bool trace = false;
    };
    Options options;

    std::ostream& out() { return out_; }
    std::ostream& err() { return err_; }
    std::istream& in() { return in_; }
    bool Json() const { return options.output == "json"; }
    // The environment variable `name` (CliIo::getenv, else the process's).
    std::optional<std::string> Env(const std::string& name) const { return getenv_(name); }
    // Whether CliIo::stop says to end a command that runs until interrupted (top, events --follow).
    bool Stopped() const { return stop_ && stop_(); }

    // The API client, made on the first call from the settings (flags > environment > file) and
    // --timeout; nullptr if they are wrong, then FailSettings() prints why.
    ApiClient* Api();
    // "error: <what is wrong with the settings>"; returns 1.
    int FailSettings();
    // "error: <message> (<code>)" with the quota numbers or the field, and a hint for 401, 403 and an
    // unreachable API; returns 1.
    int Fail(const ApiFailure& f);
    // "error: <message>"; returns 1.
    int Fail(const std::string& message);
    // "error: <message>" for a command line the API never saw; returns 2.
    int Usage(const std::string& message);

    // A resource as the API answered it: FIELD/VALUE rows, or its JSON with -o json.
    void PrintObject(const json::value& reply);
    // Follows an accepted operation (--wait), printing progress on err(), for --wait-timeout.
    ApiResult<json::value> Follow(const WaitTarget& target);

    // Registers the leaf command `name` under `parent`: `body` is the action if the parse ends there.
    CLI::App* Leaf(CLI::App* parent, const std::string& name, const std::string& help,
                   std::function<int()> body);
    // Makes `body` the action (a command group whose subcommand is optional chooses in its callback).
    void Choose(std::function<int()> body) { action_ = std::move(body); }
    // The action the parse chose (empty if it chose none); runs it and prints --trace's line.
    bool HasAction() const { return static_cast<bool>(action_); }
    int RunAction();

private:
    std::ostream& out_;
    std::ostream& err_;
    std::istream& in_;
    GetEnv getenv_;
    std::function<bool()> stop_;
    std::function<int()> action_;
    std::unique_ptr<ApiClient> api_;
    std::string api_error_;
};

}  // namespace cogs::cli
