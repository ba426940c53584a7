// cogs-chaos: failure-injection runs that check cogs' invariants. Last line: one JSON object.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "test/chaos/cloud_chaos.h"
#include "test/chaos/engine_crash.h"

int main(int argc, char** argv) {
    CLI::App app{"cogs-chaos: kill, fault and check"};
    app.require_subcommand(1);
    cogs::testing::CrashOptions co;
    auto* crash =
        app.add_subcommand("engine-crash", "SIGKILL the engine at random moments; check the ledger");
    crash->add_option("--seed", co.seed);
    crash->add_option("--kills", co.kills)->check(CLI::Range(0, 100000));
    crash->add_option("--workflows", co.workflows)->check(CLI::Range(1, 10000000));
    crash->add_option("--max-kill-interval-ms", co.max_kill_interval_ms)->check(CLI::Range(60, 600000));
    crash->add_option("--rate", co.rate, "workflows submitted per second")->check(CLI::Range(1.0, 1e6));
    crash->add_option("--dir", co.dir, "working directory (default: a fresh temporary one)");
    crash->add_flag("--keep", co.keep, "keep the working directory");
    cogs::testing::WorkerOptions wo;
    auto* worker = app.add_subcommand("engine-worker", "internal: the engine process engine-crash kills");
    worker->add_option("--data", wo.data_dir)->required();
    worker->add_option("--sim-port", wo.sim_port)->required();
    worker->add_option("--workflows", wo.workflows)->required();
    worker->add_option("--seed", wo.seed);
    worker->add_option("--rate", wo.rate);
    // `cloud` and `ha` take the same options; `ha` a few more.
    auto cloud_options = [](CLI::App* sub, cogs::testing::CloudChaosOptions& o) {
        sub->add_option("--seed", o.seed);
        sub->add_option("--duration", o.duration_s, "seconds of workload and injection")
            ->check(CLI::Range(10, 86400));
        sub->add_option("--hosts", o.hosts, "compute hosts (one agent process each)")
            ->check(CLI::Range(3, 100));
        sub->add_option("--rate", o.rate, "API operations started per second")
            ->check(CLI::Range(0.1, 1000.0));
        sub->add_option("--settle", o.settle_s, "seconds accepted requests may take to end after the run")
            ->check(CLI::Range(10, 3600));
        sub->add_option("--converge", o.converge_s, "seconds the audit may take to find nothing after that")
            ->check(CLI::Range(0, 3600));
        sub->add_option("--freeze-min-s", o.freeze_min_s, "shortest SIGSTOP of an agent")
            ->check(CLI::Range(1, 3600));
        sub->add_option("--freeze-max-s", o.freeze_max_s, "longest SIGSTOP of an agent")
            ->check(CLI::Range(1, 3600));
        sub->add_option("--burst", o.burst, "requests sent at once when cogsd is killed amid a burst")
            ->check(CLI::Range(1, 1000));
        sub->add_option("--reply-drop-rate", o.reply_drop_rate, "share of the workload's replies lost")
            ->check(CLI::Range(0.0, 0.9));
        sub->add_option("--echo-rate", o.echo_rate, "share of answered POSTs sent once more with their key")
            ->check(CLI::Range(0.0, 1.0));
        sub->add_option("--dir", o.dir, "working directory (default: a fresh temporary one)");
        sub->add_flag("--keep", o.keep, "keep the working directory");
    };
    cogs::testing::CloudChaosOptions cc;
    auto* cloud =
        app.add_subcommand("cloud", "a whole local cloud under kills, partitions and faults; check it");
    cloud_options(cloud, cc);
    cogs::testing::CloudChaosOptions ha;
    ha.replicas = 3;
    auto* ha_cmd = app.add_subcommand(
        "ha",
        "the cloud with cogsd's replicas on PostgreSQL: leaders killed and frozen, the database restarted");
    cloud_options(ha_cmd, ha);
    ha_cmd->add_option("--replicas", ha.replicas, "replicas of cogsd")->check(CLI::Range(2, 9));
    ha_cmd
        ->add_option("--leader-ttl-ms", ha.leader_ttl_ms,
                     "the replicas' leader lease (cogsd's default: 1000)")
        ->check(CLI::Range(200, 60000));
    ha_cmd->add_option("--leader-renew-ms", ha.leader_renew_ms, "its renewal period (at most half the TTL)")
        ->check(CLI::Range(50, 30000));
    ha_cmd->add_flag(
        "--failover-only", ha.failover_only,
        "no workload and no other fault: time --kills leader losses (SIGKILL and SIGSTOP in turn)");
    ha_cmd->add_option("--kills", ha.kills, "leader losses of --failover-only")->check(CLI::Range(1, 10000));
    cogs::testing::HostFailureOptions hf;
    auto* host_failure =
        app.add_subcommand("host-failure", "kill full hosts' agents: detection, heal, restarts");
    host_failure->add_option("--seed", hf.seed);
    host_failure->add_option("--hosts", hf.hosts)->check(CLI::Range(2, 100));
    host_failure->add_option("--servers", hf.servers, "servers on the hosts that fail, spread evenly")
        ->check(CLI::Range(1, 10000));
    host_failure->add_option("--failing", hf.failing, "hosts that fail at once")->check(CLI::Range(1, 99));
    host_failure
        ->add_option("--hosts-per-agent", hf.hosts_per_agent,
                     "hosts served by one cogs-compute process (default: --failing, one process killed)")
        ->check(CLI::Range(0, 100));
    host_failure
        ->add_option("--evacuation-parallelism", hf.evacuation_parallelism,
                     "cogsd's --evacuation-parallelism (default: cogsd's own)")
        ->check(CLI::Range(0, 10000));
    host_failure
        ->add_option(
            "--timer-slack-ms", hf.timer_slack_ms,
            "detection bound: a failed host suspect at most the lease TTL plus this after its last renewal")
        ->check(CLI::Range(0, 60000))
        ->capture_default_str();
    host_failure->add_option("--runs", hf.runs)->check(CLI::Range(1, 100));
    host_failure->add_option("--crashes", hf.crashes, "instances crashed on a healthy host per run")
        ->check(CLI::Range(0, 10000));
    host_failure->add_option("--timeout", hf.timeout_s, "seconds allowed per measurement")
        ->check(CLI::Range(10, 3600));
    host_failure->add_option("--dir", hf.dir, "working directory (default: a fresh temporary one)");
    host_failure->add_flag("--keep", hf.keep, "keep the working directory");
    CLI11_PARSE(app, argc, argv);
    if (cc.freeze_max_s < cc.freeze_min_s || ha.freeze_max_s < ha.freeze_min_s) {
        fmt::print(stderr, "--freeze-max-s must be at least --freeze-min-s\n");
        return 2;
    }
    if (ha.leader_renew_ms * 2 > ha.leader_ttl_ms) {
        fmt::print(stderr, "--leader-renew-ms must be at most half of --leader-ttl-ms\n");
        return 2;
    }
    if (crash->parsed()) {
        return cogs::testing::RunEngineCrash(co);
    }
    if (cloud->parsed()) {
        return cogs::testing::RunCloudChaos(cc);
    }
    if (ha_cmd->parsed()) {
        return ha.failover_only ? cogs::testing::RunFailoverBench(ha) : cogs::testing::RunCloudChaos(ha);
    }
    if (host_failure->parsed()) {
        return cogs::testing::RunHostFailure(hf);
    }
    return cogs::testing::RunEngineWorker(wo);
}
