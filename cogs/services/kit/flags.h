// Command-line flags of a micro-service process, shared by cogs-network, cogs-volume, cogs-compute
// and cogs-sim so that every service is started the same way. Header-only on CLI11: only apps
// include it (link CLI11::CLI11).
//
//   --listen HOST:PORT  --port-file PATH  --state PATH  --seed N  --token-file PATH (repeatable)
//   --insecure  --test-routes
//   --log-level LEVEL   --log-format json|text   --max-body-bytes N
//   --error-rate R  --permanent-rate R  --hang-rate R  --lost-reply-rate R  --latency-ms MS
//   --fail-action A (repeatable)  --long-action A (repeatable)  --accept-ms MS  --hang-all
//   --ledger-retention-hours H  --ledger-max N  --ledger-min-age-minutes M
//   --tls-cert F --tls-key F --tls-client-ca F --tls-ca F --tls-client-cert F --tls-client-key F
//   --tls-allowed-client NAME (repeatable)                                          (tls_flags.h)
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>

#include "cogs/services/kit/faults.h"
#include "cogs/services/kit/ledger.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/kit/tls_flags.h"

namespace cogs::services::kit {

// A flag read as a number of `Period`s (std::milli, std::ratio<60>, std::ratio<3600>) into `d`;
// `default_text` is what --help shows (the value already in `d`). Not negative.
template <class Period>
CLI::Option* AddDurationFlag(CLI::App& app, const std::string& name, Duration& d, const std::string& help,
                             const std::string& default_text = "") {
    return app
        .add_option_function<double>(
            name,
            [&d](double n) {
                d = std::chrono::duration_cast<Duration>(std::chrono::duration<double, Period>(n));
            },
            help)
        ->check(CLI::NonNegativeNumber)
        ->default_str(default_text);
}

// The fault flags (the initial FaultConfig; PUT /v1/faults changes it at run time).
inline void AddFaultFlags(CLI::App& app, FaultConfig& f) {
    app.add_option("--error-rate", f.error_rate, "share of new calls answered 503 (retryable)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--permanent-rate", f.permanent_rate, "share of new do calls refused for good (422)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--hang-rate", f.hang_rate, "share of new calls never answered")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--lost-reply-rate", f.lost_reply_rate, "share of new calls applied but never answered")
        ->check(CLI::Range(0.0, 1.0));
    AddDurationFlag<std::milli>(app, "--latency-ms", f.latency, "delay before every answer");
    app.add_option("--fail-action", f.fail_actions, "an action that always fails permanently (repeatable)");
    app.add_option("--long-action", f.long_actions, "an action answered 202 and done later (repeatable)");
    AddDurationFlag<std::milli>(app, "--accept-ms", f.accept_duration, "how long a long action runs", "100");
    app.add_flag("--hang-all", f.hang_all, "never answer any call");
}

// How long the idempotency ledger keeps its entries (ledger.h: LedgerRetention and its rule).
inline void AddLedgerRetentionFlags(CLI::App& app, LedgerRetention& r) {
    AddDurationFlag<std::ratio<3600>>(app, "--ledger-retention-hours", r.keep_for,
                                      "ledger entries older than this are pruned", "24")
        ->check(CLI::PositiveNumber);
    app.add_option("--ledger-max", r.keep_at_most,
                   "beyond this many ledger entries the oldest are pruned (never one younger than the "
                   "minimum age)")
        ->capture_default_str();
    AddDurationFlag<std::ratio<60>>(
        app, "--ledger-min-age-minutes", r.min_age,
        "no ledger entry younger than this is pruned: the longest workflow deadline plus a margin", "60");
}

// Every flag of a service process but --state: for cogs-sim, whose state flag is --ledger.
inline void AddProcessFlags(CLI::App& app, ServeOptions& o) {
    app.add_option("--listen", o.listen, "HOST:PORT to listen on (port 0: any free port)")
        ->capture_default_str();
    app.add_option("--port-file", o.port_file, "write the bound port to this file once listening");
    app.add_option("--seed", o.service.seed, "seed for the fault draws")->capture_default_str();
    app.add_option("--token-file", o.token_files,
                   "file holding the bearer token callers must present (repeatable: any of them); required "
                   "unless --insecure");
    app.add_flag(
        "--insecure", o.insecure,
        "start without --token-file: every caller is served without authentication (development only)");
    app.add_flag("--test-routes", o.test_routes,
                 "serve the test routes: fault injection (GET|PUT /v1/faults), GET /v1/ledger and the "
                 "service's own (cogs-compute: POST /v1/instances/{id}/crash)");
    app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error, critical or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
        ->capture_default_str();
    app.add_option("--log-format", o.log_format, "json (one object per line) or text (for people)")
        ->check(CLI::IsMember({"json", "text"}))
        ->capture_default_str();
    app.add_option("--max-body-bytes", o.max_body_bytes, "largest request body accepted")
        ->capture_default_str();
    AddTlsFlags(app, o.tls, /*allowed_clients=*/true);
    AddFaultFlags(app, o.service.faults);
    AddLedgerRetentionFlags(app, o.service.ledger_retention);
}

// All the flags of Serve's options (serve.h).
inline void AddServeFlags(CLI::App& app, ServeOptions& o) {
    AddProcessFlags(app, o);
    app.add_option("--state", o.service.state_path, "SQLite state file (default: in memory only)");
}

}  // namespace cogs::services::kit
