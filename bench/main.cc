// cogs-bench: end-to-end benchmarks. Each prints its figures as one JSON object on its last line.
#include <CLI/CLI.hpp>

#include "bench/workflow_bench.h"

int main(int argc, char** argv) {
    CLI::App app{"cogs-bench: end-to-end benchmarks"};
    app.require_subcommand(1);
    cogs::bench::WorkflowBenchOptions wo;
    auto* wf = app.add_subcommand("workflow", "server.create against the in-process simulated service");
    wf->add_option("--data-dir", wo.data_dir, "scratch directory (removed afterwards)");
    wf->add_option("--workflows", wo.workflows, "workflows in the peak-rate run");
    wf->add_option("--window", wo.window, "workflows kept in flight in the peak-rate run");
    wf->add_option("--parked", wo.parked, "workflows parked for the memory figure");
    bool inline_sync = false;
    wf->add_flag("--inline-sync", inline_sync, "PRAGMA synchronous=FULL with the fsync inside COMMIT (default: "
                                               "the same durability with the fsync pipelined on its own thread)");
    CLI11_PARSE(app, argc, argv);
    if (wf->parsed()) {
        wo.pipelined_sync = !inline_sync;
        return cogs::bench::RunWorkflowBench(wo);
    }
    return 2;
}
