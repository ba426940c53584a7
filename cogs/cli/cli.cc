// RunCli: the command tree — the global options, a command group per resource of the table
// (internal/resources.h, its verbs in internal/verbs.h), the observability commands, `whoami`,
// `cogs service check` and `cogs dev` — then the one action the command line chose.
#include "cogs/cli/cli.h"

#include <CLI/CLI.hpp>

#include "cogs/cli/internal/audit_command.h"
#include "cogs/cli/internal/dev.h"
#include "cogs/cli/internal/invocation.h"
#include "cogs/cli/internal/kind_commands.h"
#include "cogs/cli/internal/observe_commands.h"
#include "cogs/cli/internal/resources.h"
#include "cogs/cli/internal/service_check.h"
#include "cogs/cli/internal/special_commands.h"
#include "cogs/cli/internal/verbs.h"

namespace cogs::cli {
namespace {

void AddDev(Invocation& inv, CLI::App& app, DevOptions& dev) {
    CLI::App* c = inv.Leaf(&app, "dev", "run a local cloud in the foreground (Ctrl-C stops it)",
                           [&inv, &dev] { return RunDev(dev, inv.out(), inv.err()); });
    c->add_option("--data-dir", dev.data_dir, "state, logs and tokens")->capture_default_str();
    c->add_option("--port", dev.port, "API port (0: any free port; see <data-dir>/dev.json)")
        ->capture_default_str();
    c->add_option("--hosts", dev.hosts, "compute hosts")->capture_default_str()->check(CLI::Range(1, 64));
    c->add_option("--boot-ms", dev.boot_ms, "simulated boot time of a server")->capture_default_str();
    c->add_option("--volume-driver", dev.volume_driver, "cogs-volume driver")->capture_default_str();
    c->add_option("--start-timeout", dev.start_timeout_s, "seconds each child may take to start")
        ->capture_default_str();
    c->add_option("--store", dev.store,
                  "cogsd's store: sqlite (one cogsd) or postgres (replicas on a private PostgreSQL in "
                  "<data-dir>/postgres)")
        ->capture_default_str()
        ->check(CLI::IsMember({"sqlite", "postgres"}));
    c->add_option("--replicas", dev.replicas,
                  "cogsd replicas (default 1 with sqlite, which allows no more; 3 with postgres)")
        ->check(CLI::Range(1, 9));
    c->add_option("--postgres-fsync", dev.postgres_fsync,
                  "--store postgres: fsync commits (false: faster, lost only if the machine crashes)")
        ->capture_default_str();
    c->add_option("--driver", dev.driver,
                  "what runs the instances: sim (nothing runs) or container (real instances under runc; "
                  "needs root, runc, busybox-static and iproute2)")
        ->capture_default_str()
        ->check(CLI::IsMember({"sim", "container"}));
    c->add_option("--log-level", dev.log_level,
                  "every child's log level: trace, debug, info, warn, error (default: each one's own, info)")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    c->add_flag_callback(
        "--no-tls", [&dev] { dev.tls = false; },
        "plain HTTP on every link (default: TLS everywhere, with a private CA in <data-dir>/pki)");
    c->add_option("--cogsd-arg", dev.cogsd_args,
                  "passed to cogsd as is (repeatable), e.g. --cogsd-arg=--reconcile-ms=2000")
        ->allow_extra_args(false);
}

// `cogs service check URL ...` (internal/service_check.h): the protocol conformance suite. The TLS
// files and -o are the global options.
void AddService(Invocation& inv, CLI::App& app, ServiceCheckOptions& check) {
    CLI::App* g =
        app.add_subcommand("service", "micro-services that cogs orchestrates (docs/service-protocol.md)");
    g->require_subcommand(1);
    CLI::App* c =
        inv.Leaf(g, "check",
                 "check that a micro-service speaks the cogs service protocol (exit 0: every check passed)",
                 [&inv, &check] {
                     const Invocation::Options& o = inv.options;
                     check.ca_file = o.ca_file.empty() ? inv.Env("COGS_CACERT").value_or("") : o.ca_file;
                     check.client_cert = o.client_cert;
                     check.client_key = o.client_key;
                     check.json = inv.Json();
                     return RunServiceCheck(check, inv.out(), inv.err());
                 });
    c->add_option("url", check.url, "the service: http://HOST:PORT or https://HOST:PORT")->required();
    c->add_option("--token-file", check.token_file, "file holding the bearer token the service accepts")
        ->required();
    c->add_option("--action", check.action, "an action that changes the service's inventory (a create)")
        ->required();
    c->add_option("--input", check.input,
                  "its input, a JSON object; \"${unique}\" is replaced by a fresh value for every key")
        ->required();
    c->add_option("--undo-action", check.undo_action,
                  "the action's compensation (without it the undo checks are skipped)");
    c->add_option("--undo-input", check.undo_input,
                  "its input, a JSON object with \"${unique}\" (the do's) and \"${output.FIELD}\" (default: "
                  "{\"input\": <the do's input>, \"output\": <its output>})");
    c->add_option("--timeout-s", check.timeout_s, "each request's deadline, and how long a 202 is followed")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
}

}  // namespace

int RunCli(const std::vector<std::string>& args, const CliIo& io) {
    Invocation inv(io);
    Invocation::Options& o = inv.options;
    CLI::App app{"cogs: the command-line client of the cogs cloud (it speaks the cogsd REST API)", "cogs"};
    app.fallthrough();  // inherited by every subcommand: global options may follow the subcommand
    app.require_subcommand(1);
    app.add_option("--url", o.url,
                   "API endpoint (env COGS_URL, config `url`; default http://127.0.0.1:8780)");
    app.add_option("--token", o.token, "API token (env COGS_TOKEN, config `token`)");
    app.add_option("--ca-file", o.ca_file,
                   "PEM CA that an https API's certificate must chain to (env COGS_CACERT; `cogs dev` "
                   "prints it)");
    app.add_option(
        "--client-cert", o.client_cert,
        "PEM certificate to present (mutual TLS; with --client-key): a micro-service's routes take "
        "cogsd's only");
    app.add_option("--client-key", o.client_key, "PEM private key of --client-cert");
    app.add_option("--config", o.config, "config file (default $XDG_CONFIG_HOME/cogs/config.yaml)");
    app.add_option("-o,--output", o.output, "output format")->check(CLI::IsMember({"table", "json"}));
    app.add_option("--timeout", o.timeout, "deadline of each API request (e.g. 30s)");
    app.add_option("--wait-timeout", o.wait_timeout, "how long --wait follows an operation (e.g. 10m)");
    app.add_flag("--trace", o.trace,
                 "print on stderr the trace id this command's requests carry (grep the logs for it)");

    for (const Resource& resource : Resources()) {
        AddResourceCommands(inv, app, resource);
    }
    AddObserveCommands(inv, app);
    AddAuditCommand(inv, app);
    AddWhoami(inv, app);
    AddExtension(inv, app);
    AddKindCommands(inv, app);
    ServiceCheckOptions check;
    AddService(inv, app, check);
    DevOptions dev;
    AddDev(inv, app, dev);

    std::vector<std::string> rev(args.rbegin(), args.rend() - (args.empty() ? 0 : 1));
    try {
        app.parse(rev);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e, inv.out(), inv.err());
        return rc == 0 ? 0 : 2;
    }
    if (!inv.HasAction()) {
        inv.out() << app.help();
        return 2;
    }
    return inv.RunAction();
}

}  // namespace cogs::cli
