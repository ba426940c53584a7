// cogs-sim: serves a SimService over HTTP (docs/service-protocol.md) until SIGTERM or SIGINT.
//
//   cogs-sim --listen 127.0.0.1:0 --port-file /tmp/sim.port --ledger /tmp/sim.db --error-rate 0.05
//
// The flags are those of every cogs micro-service (cogs/services/kit/flags.h), with --ledger for the
// state file. With --port-file the bound port is written there (atomically: a rename) once the
// server listens, so a test that starts it with port 0 knows when and where to connect.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include "cogs/base/secret.h"
#include "cogs/http/server.h"
#include "cogs/services/kit/flags.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/runtime/files.h"
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

    const auto level = spdlog::level::from_str(serve.log_level);
    if (level == spdlog::level::off && serve.log_level != "off") {
        spdlog::critical("--log-level must be trace, debug, info, warn, error or off, got '{}'", serve.log_level);
        return 2;
    }
    spdlog::set_level(level);
    auto listen = kit::ParseListen(serve.listen);
    if (!listen) {
        spdlog::critical("cogs-sim: {}", listen.error().message);
        return 2;
    }
    std::string token_sha256;
    if (!serve.token_file.empty()) {
        auto token = runtime::ReadTokenFile(serve.token_file);
        if (!token) {
            spdlog::critical("cogs-sim: {}", token.error().message);
            return 2;
        }
        token_sha256 = Sha256Hex(*token);
    }
    http::ServerOptions server_options;
    server_options.host = listen->first;
    server_options.port = listen->second;
    server_options.max_body_bytes = serve.max_body_bytes;

    boost::asio::io_context io(1);
    auto service = services::sim::SimService::Create(io, options);
    if (!service) {
        spdlog::critical("cogs-sim: {}", service.error().ToString());
        return 1;
    }
    auto server = http::StartServer(io, server_options, kit::MakeActionHttpHandler(**service, token_sha256));
    if (!server) {
        spdlog::critical("cogs-sim: {}", server.error().ToString());
        return 1;
    }
    const uint16_t port = (*server)->port();
    if (!serve.port_file.empty()) {
        if (auto s = kit::WritePortFile(serve.port_file, port); !s) {
            spdlog::critical("cogs-sim: {}", s.error().message);
            return 1;
        }
    }
    const auto counts = (*service)->Counts();
    spdlog::info("cogs-sim listening on {}:{} (ledger: {}, {} entries loaded; faults: {})", server_options.host,
                 port, options.ledger_path.empty() ? "in memory" : options.ledger_path,
                 counts.applied + counts.rejected + counts.compensated + counts.tombstones,
                 kit::ToJson(options.faults));

    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) {
            return;
        }
        spdlog::info("cogs-sim: signal {}, stopping", signo);
        (*server)->Stop();
        boost::asio::post(io, [&io] { io.stop(); });
    });
    io.run();
    spdlog::info("cogs-sim: stopped: {}", (*service)->StatsJson());
    return 0;
}
