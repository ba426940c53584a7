// cogs-chaos: failure-injection runs that check cogs' invariants. Last line: one JSON object.
#include <CLI/CLI.hpp>

#include "test/chaos/engine_crash.h"

int main(int argc, char** argv) {
    CLI::App app{"cogs-chaos: kill, fault and check"};
    app.require_subcommand(1);
    cogs::testing::CrashOptions co;
    auto* crash = app.add_subcommand("engine-crash", "SIGKILL the engine at random moments; check the ledger");
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
    CLI11_PARSE(app, argc, argv);
    if (crash->parsed()) {
        return cogs::testing::RunEngineCrash(co);
    }
    return cogs::testing::RunEngineWorker(wo);
}
