// cogs-bench: end-to-end benchmarks. Each prints its figures as one JSON object on its last line.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "bench/api_rate.h"
#include "bench/create_storm.h"
#include "bench/workflow_bench.h"

int main(int argc, char** argv) {
    CLI::App app{"cogs-bench: end-to-end benchmarks"};
    app.require_subcommand(1);
    cogs::bench::WorkflowBenchOptions wo;
    auto* wf = app.add_subcommand("workflow", "bench.server_create against the in-process simulated service");
    wf->add_option("--data-dir", wo.data_dir, "scratch directory (removed afterwards)");
    wf->add_option("--workflows", wo.workflows, "workflows in the peak-rate run");
    wf->add_option("--window", wo.window, "workflows kept in flight in the peak-rate run");
    wf->add_option("--parked", wo.parked, "workflows parked for the memory figure");
    bool inline_sync = false;
    wf->add_flag("--inline-sync", inline_sync,
                 "PRAGMA synchronous=FULL with the fsync inside COMMIT (default: "
                 "the same durability with the fsync pipelined on its own thread)");
    std::string observe = "off";
    wf->add_option("--observe", observe, "metrics and tracing on or off (on: as cogsd runs)")
        ->check(CLI::IsMember({"on", "off"}))
        ->capture_default_str();
    wf->add_flag("--compare-observe", wo.compare_observe,
                 "run with observe off and on alternately --runs times; report both and the overhead");
    wf->add_option("--runs", wo.runs, "runs of each mode with --compare-observe")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    wf->add_option("--store", wo.store,
                   "sqlite, or postgres: a private PostgreSQL server (fsync on) started for the "
                   "run, a fresh database per phase")
        ->check(CLI::IsMember({"sqlite", "postgres"}))
        ->capture_default_str();
    std::vector<std::string> pg_settings;
    wf->add_option(
          "--pg-setting", pg_settings,
          "with --store postgres: a server setting NAME=VALUE (repeatable), e.g. shared_buffers=256MB")
        ->check([](const std::string& s) {
            return s.find('=') == std::string::npos || s.front() == '=' ? "expected NAME=VALUE" : "";
        });

    cogs::bench::CreateStormOptions so;
    auto* cs = app.add_subcommand(
        "create-storm",
        "N servers requested at once through the REST API of a local cloud (cogs dev, sim drivers or real "
        "containers)");
    auto* sim_hosts_option = static_cast<CLI::Option*>(nullptr);
    cs->add_option("--driver", so.driver,
                   "sim (nothing runs) or container (real instances under runc, as root: adds the boot "
                   "time of one instance and the memory per instance; no sim hosts)")
        ->check(CLI::IsMember({"sim", "container"}))
        ->capture_default_str();
    cs->add_option("--boot-samples", so.boot_samples,
                   "--driver container: single servers created one at a time for the boot time")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cs->add_option("--servers", so.servers, "servers requested at once")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cs->add_option("--bulk", so.bulk,
                   "servers per POST /v1/servers: N > 1 sends bulk creates of N (min_count N), "
                   "ceil(servers / N) requests at once; 1 one request per server")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    auto* hosts_option = cs->add_option("--hosts", so.hosts,
                                        "compute processes of cogs dev (one host each; --driver container: "
                                        "by default enough for --servers)")
                             ->check(CLI::PositiveNumber)
                             ->capture_default_str();
    sim_hosts_option = cs->add_option("--sim-hosts", so.sim_hosts,
                                      "hosts of one extra cogs-compute --hosts N process (0: none)")
                           ->check(CLI::NonNegativeNumber)
                           ->capture_default_str();
    cs->add_option("--boot-ms", so.boot_ms, "the sim driver's boot time")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cs->add_option("--connections", so.connections, "HTTP keep-alive connections carrying the storm")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cs->add_option("--poll-ms", so.poll_ms, "pause between two rounds of status polling")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cs->add_option("--deadline-s", so.deadline_s, "servers not ACTIVE or ERROR by then count as failed")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cs->add_option("--cleanup", so.cleanup, "delete every server afterwards and time it (true/false)")
        ->capture_default_str();
    cs->add_option("--store", so.store,
                   "sqlite (one cogsd), or postgres: cogs dev --store postgres, requests spread over "
                   "every replica")
        ->check(CLI::IsMember({"sqlite", "postgres"}))
        ->capture_default_str();
    cs->add_option(
          "--tls", so.tls,
          "TLS on every link, as `cogs dev` runs by default (false: cogs dev --no-tls; compare the two "
          "for the cost of TLS)")
        ->capture_default_str();
    cs->add_option(
          "--idle-s", so.idle_s,
          "before the storm, every host up: measure cogsd's CPU and the lease renewals this long (0: "
          "not at all)")
        ->check(CLI::Range(0, 3600))
        ->capture_default_str();
    cs->add_option(
          "--check", so.check,
          "exit 3 unless every server is ACTIVE and nothing is overcommitted, duplicated, missing or "
          "disagrees with the agents")
        ->capture_default_str();
    cs->add_option("--replicas", so.replicas,
                   "cogsd replicas with --store postgres (0: cogs dev's default, 3)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cogs::bench::ApiRateOptions ro;
    auto* ar = app.add_subcommand(
        "api-rate",
        "the REST API's request rate through a local cloud, kept connections and new ones per request");
    ar->add_option("--tls", ro.tls, "TLS as cogs dev runs by default (false: cogs dev --no-tls)")
        ->capture_default_str();
    ar->add_option("--connections", ro.connections, "requests in flight")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    ar->add_option("--seconds", ro.seconds, "length of each phase")
        ->check(CLI::Range(1, 3600))
        ->capture_default_str();
    ar->add_option("--target", ro.target, "what is read (GET, with the admin token)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (ar->parsed()) {
        return cogs::bench::RunApiRate(ro);
    }
    if (cs->parsed()) {
        if (so.replicas > 1 && so.store != "postgres") {
            fmt::print(stderr, "cogs-bench create-storm: --replicas needs --store postgres\n");
            return 2;
        }
        if (so.driver == "container") {
            if (sim_hosts_option->count() > 0 && so.sim_hosts > 0) {
                fmt::print(stderr, "cogs-bench create-storm: --driver container runs no sim hosts\n");
                return 2;
            }
            so.sim_hosts = 0;  // every instance real: only cogs dev's hosts
            if (hosts_option->count() == 0) {
                // A host takes 16 vCPUs x 4 (cogsd's CPU ratio) of bench.tiny (1 vCPU): 64 servers.
                so.hosts = std::max(so.hosts, (so.servers + 59) / 60);
            }
        }
        return cogs::bench::RunCreateStorm(so);
    }
    if (wf->parsed()) {
        if (inline_sync && wo.store != "sqlite") {
            fmt::print(stderr, "cogs-bench workflow: --inline-sync is SQLite's: not with --store {}\n",
                       wo.store);
            return 2;
        }
        for (const std::string& s : pg_settings) {
            wo.pg_settings.emplace_back(s.substr(0, s.find('=')), s.substr(s.find('=') + 1));
        }
        wo.pipelined_sync = !inline_sync;
        wo.observe = observe == "on";
        return cogs::bench::RunWorkflowBench(wo);
    }
    return 2;
}
