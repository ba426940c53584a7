// cogs-sim: serves a SimService over HTTP (docs/service-protocol.md) until SIGTERM or SIGINT.
//
//   cogs-sim --listen 127.0.0.1:0 --port-file /tmp/sim.port --ledger /tmp/sim.db --error-rate 0.05
//
// The flags are those of every cogs micro-service (cogs/services/kit/flags.h), with --ledger for the
// state file and --action NAME (repeatable) for the only actions it performs (default: any name). With
// --port-file the bound port is written there (atomically: a rename) once the server listens, so a test that
// starts it with port 0 knows when and where to connect. Like every service it serves GET /metrics and
// GET|PUT /v1/log-levels, and logs one JSON line per action on stderr (--log-format text for people).
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include "cogs/observe/log.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/sim/sim_service.h"

int main(int argc, char** argv) {
    using namespace cogs;
    namespace kit = services::kit;
    namespace sim = services::sim;

    CLI::App app{"cogs-sim: a simulated cogs micro-service"};
    kit::ServeOptions serve;
    std::string ledger_path;
    kit::AddProcessFlags(app, serve);
    app.add_option("--ledger", ledger_path, "SQLite ledger file (default: in memory only)");
    std::vector<std::string> actions;
    app.add_option("--action", actions,
                   "an action it performs (repeatable); then any other name is 404 not_found (default: every "
                   "name is performed)");
    CLI11_PARSE(app, argc, argv);

    auto open = [&](boost::asio::io_context& io,
                    observe::Metrics& metrics) -> Result<std::unique_ptr<kit::ActionTarget>> {
        COGS_ASSIGN_OR_RETURN(
            auto service,
            sim::SimService::Create(
                io, sim::SimOptions{ledger_path, serve.service.faults, serve.service.seed, &metrics,
                                    serve.service.ledger_retention, nullptr, actions}));
        const sim::LedgerCounts counts = service->Counts();
        observe::Log("sim").info("ledger: {}, {} entries loaded",
                                 ledger_path.empty() ? "in memory" : ledger_path,
                                 counts.applied + counts.rejected + counts.compensated + counts.tombstones);
        return std::unique_ptr<kit::ActionTarget>(std::move(service));
    };
    return kit::ServeTarget(serve, "sim", std::move(open));
}
