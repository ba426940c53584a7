// cogs-sim: serves a SimService over HTTP (docs/service-protocol.md) until SIGTERM or SIGINT.
//
//   cogs-sim --listen 127.0.0.1:0 --port-file /tmp/sim.port --ledger /tmp/sim.db --error-rate 0.05
//
// The flags are those of every cogs micro-service (cogs/services/kit/flags.h), with --ledger for the
// state file. With --port-file the bound port is written there (atomically: a rename) once the
// server listens, so a test that starts it with port 0 knows when and where to connect. Like every
// service it serves GET /metrics and GET|PUT /v1/log-levels, and logs one JSON line per action on
// stderr (--log-format text for people).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include "cogs/base/secret.h"
#include "cogs/http/server.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/files.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/kit/serve.h"
#include "cogs/services/sim/sim_service.h"

int main(int argc, char** argv) {
    using namespace cogs;
    namespace kit = services::kit;

    CLI::App app{"cogs-sim: a simulated cogs micro-service"};
    kit::ServeOptions serve;
    services::sim::SimOptions options;
    kit::AddProcessFlags(app, serve);
    app.add_option("--ledger", options.ledger_path, "SQLite ledger file (default: in memory only)");
    CLI11_PARSE(app, argc, argv);
    options.faults = serve.service.faults;
    options.seed = serve.service.seed;

    if (!kit::SetupProcessLogging(serve, "cogs-sim")) {
        return 2;
    }
    spdlog::logger& log = observe::Log("sim");
    auto listen = kit::ParseListen(serve.listen);
    if (!listen) {
        log.critical("{}", listen.error().message);
        return 2;
    }
    std::string token_sha256;
    if (!serve.token_file.empty()) {
        auto token = runtime::ReadTokenFile(serve.token_file);
        if (!token) {
            log.critical("{}", token.error().message);
            return 2;
        }
        token_sha256 = Sha256Hex(*token);
    }
    http::ServerOptions server_options;
    server_options.host = listen->first;
    server_options.port = listen->second;
    server_options.max_body_bytes = serve.max_body_bytes;

    // Declared before the service, destroyed after it: its sampler and fault counters point into it.
    observe::Metrics metrics;
    options.metrics = &metrics;
    boost::asio::io_context io(1);
    auto service = services::sim::SimService::Create(io, options);
    if (!service) {
        log.critical("{}", service.error().ToString());
        return 1;
    }
    auto server =
        http::StartServer(io, server_options, kit::MakeActionHttpHandler(**service, token_sha256, &metrics));
    if (!server) {
        log.critical("{}", server.error().ToString());
        return 1;
    }
    const uint16_t port = (*server)->port();
    if (!serve.port_file.empty()) {
        if (auto s = kit::WritePortFile(serve.port_file, port); !s) {
            log.critical("{}", s.error().message);
            return 1;
        }
    }
    const auto counts = (*service)->Counts();
    log.info("cogs-sim listening on {}:{} (ledger: {}, {} entries loaded; auth: {}; faults: {})",
             server_options.host, port, options.ledger_path.empty() ? "in memory" : options.ledger_path,
             counts.applied + counts.rejected + counts.compensated + counts.tombstones,
             token_sha256.empty() ? "none" : "bearer token", kit::ToJson(options.faults));

    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) {
            return;
        }
        log.info("signal {}, stopping", signo);
        (*server)->Stop();
        boost::asio::post(io, [&io] { io.stop(); });
    });
    io.run();
    log.info("stopped: {}", (*service)->StatsJson());
    return 0;
}
