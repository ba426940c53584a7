// cogs-sim: serves a SimService over HTTP (docs/service-protocol.md) until SIGTERM or SIGINT.
//
//   cogs-sim --listen 127.0.0.1:0 --port-file /tmp/sim.port --ledger /tmp/sim.db --error-rate 0.05
//
// With --port-file the bound port is written there (atomically: a rename) once the server listens,
// so a test that starts it with port 0 knows when and where to connect.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cogs/http/server.h"
#include "cogs/services/sim/sim_http.h"
#include "cogs/services/sim/sim_service.h"

namespace {

using namespace cogs;

bool WritePortFile(const std::string& path, uint16_t port) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << port << "\n";
        out.flush();
        if (!out) {
            return false;
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    return !ec;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"cogs-sim: a simulated cogs micro-service"};
    std::string listen = "127.0.0.1:0";
    std::string port_file;
    std::string log_level = "info";
    double latency_ms = 0;
    double accept_ms = 100;
    size_t max_body = 1 << 20;
    services::sim::SimOptions options;
    auto& f = options.faults;
    app.add_option("--listen", listen, "HOST:PORT to listen on (port 0: any free port)")
        ->capture_default_str();
    app.add_option("--ledger", options.ledger_path, "SQLite ledger file (default: in memory only)");
    app.add_option("--port-file", port_file, "write the bound port to this file once listening");
    app.add_option("--seed", options.seed, "seed for the fault draws")->capture_default_str();
    app.add_option("--error-rate", f.error_rate, "share of new calls answered 503 (retryable)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--permanent-rate", f.permanent_rate, "share of new do calls refused for good (422)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--hang-rate", f.hang_rate, "share of new calls never answered")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--lost-reply-rate", f.lost_reply_rate, "share of new calls applied but never answered")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--latency-ms", latency_ms, "delay before every answer")->check(CLI::NonNegativeNumber);
    app.add_option("--fail-action", f.fail_actions, "an action that always fails permanently (repeatable)");
    app.add_option("--long-action", f.long_actions, "an action answered 202 and done later (repeatable)");
    app.add_option("--accept-ms", accept_ms, "how long a long action runs")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_flag("--hang-all", f.hang_all, "never answer any call");
    app.add_option("--max-body-bytes", max_body, "largest request body accepted")->capture_default_str();
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    spdlog::set_level(spdlog::level::from_str(log_level));
    f.latency = std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(latency_ms));
    f.accept_duration =
        std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(accept_ms));

    const auto colon = listen.rfind(':');
    http::ServerOptions server_options;
    try {
        if (colon == std::string::npos) {
            throw std::invalid_argument("no port");
        }
        server_options.host = listen.substr(0, colon);
        const unsigned long port = std::stoul(listen.substr(colon + 1));
        if (port > 65535) {
            throw std::out_of_range("port");
        }
        server_options.port = static_cast<uint16_t>(port);
    } catch (const std::exception&) {
        spdlog::critical("--listen must be HOST:PORT, got '{}'", listen);
        return 2;
    }
    if (server_options.host.size() > 2 && server_options.host.front() == '[' &&
        server_options.host.back() == ']') {
        server_options.host = server_options.host.substr(1, server_options.host.size() - 2);
    }
    server_options.max_body_bytes = max_body;

    boost::asio::io_context io(1);
    auto service = services::sim::SimService::Create(io, options);
    if (!service) {
        spdlog::critical("cogs-sim: {}", service.error().ToString());
        return 1;
    }
    auto server = http::StartServer(io, server_options, services::sim::MakeSimHttpHandler(**service));
    if (!server) {
        spdlog::critical("cogs-sim: {}", server.error().ToString());
        return 1;
    }
    const uint16_t port = (*server)->port();
    if (!port_file.empty() && !WritePortFile(port_file, port)) {
        spdlog::critical("cogs-sim: cannot write port file {}", port_file);
        return 1;
    }
    spdlog::info("cogs-sim listening on {}:{} (ledger: {}, {} entries loaded; faults: {})",
                 server_options.host, port, options.ledger_path.empty() ? "in memory" : options.ledger_path,
                 (*service)->Counts().applied + (*service)->Counts().rejected +
                     (*service)->Counts().compensated + (*service)->Counts().tombstones,
                 services::sim::ToJson(f));

    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) {
            return;
        }
        spdlog::info("cogs-sim: signal {}, stopping", signo);
        (*server)->Stop();
        io.stop();
    });
    io.run();
    const auto& stats = (*service)->stats();
    spdlog::info("cogs-sim: stopped: {}", services::sim::ToJson(stats));
    return 0;
}
