#include "cogs/services/kit/serve.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cogs/base/secret.h"
#include "cogs/http/server.h"
#include "cogs/observe/log.h"
#include "cogs/observe/metrics.h"
#include "cogs/runtime/files.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/wire/answer.h"

namespace cogs::services::kit {

Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& listen) {
    const auto bad = [&] {
        return MakeError(ErrorCode::kInvalidArgument, "--listen must be HOST:PORT, got '" + listen + "'");
    };
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
        return bad();
    }
    std::string host = listen.substr(0, colon);
    const std::string port_text = listen.substr(colon + 1);
    if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos) {
        return bad();
    }
    const unsigned long port = std::stoul(port_text);
    if (port > 65535) {
        return bad();
    }
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    return std::pair{std::move(host), static_cast<uint16_t>(port)};
}

namespace {

// What the start-up line says of TLS.
std::string TlsSummary(const TlsOptions& o) {
    if (!o.serves_tls()) return "; plain http";
    if (o.client_ca_file.empty()) return "; tls";
    std::string names;
    for (const std::string& n : o.allowed_clients)
        names += (names.empty() ? "" : ",") + n;
    return "; mutual tls, actions for " + (names.empty() ? std::string("any client of the CA") : names);
}

}  // namespace

Status WritePortFile(const std::string& path, uint16_t port) {
    return runtime::WriteFileAtomic(path, std::to_string(port) + "\n");
}

bool SetupProcessLogging(const ServeOptions& options, const std::string& process) {
    auto format = observe::ParseLogFormat(options.log_format);
    if (!format) {
        spdlog::critical("{}: --log-format: {}", process, format.error().message);
        return false;
    }
    if (auto s = observe::SetupLogging(observe::LogOptions{process, *format, options.log_level}); !s) {
        spdlog::critical("{}: --log-level: {}", process, s.error().message);
        return false;
    }
    return true;
}

int ServeTarget(const ServeOptions& options, std::string_view component, OpenTarget open,
                std::function<void(boost::asio::io_context&, uint16_t port)> on_listening) {
    const std::string name = "cogs-" + std::string(component);
    if (!SetupProcessLogging(options, name)) {
        return 2;
    }
    spdlog::logger& log = observe::Log(component);

    auto listen = ParseListen(options.listen);
    if (!listen) {
        log.critical("{}", listen.error().message);
        return 2;
    }
    HandlerAccess access;
    access.test_routes = options.test_routes;
    for (const std::string& file : options.token_files) {
        auto token = runtime::ReadTokenFile(file);
        if (!token) {
            log.critical("--token-file: {}", token.error().message);
            return 2;
        }
        access.token_sha256.push_back(Sha256Hex(*token));
    }
    if (access.token_sha256.empty()) {
        if (!options.insecure) {
            log.critical(
                "no credential: give --token-file FILE (the token the control plane presents), or --insecure "
                "to serve every caller without one (development only)");
            return 2;
        }
        log.warn(
            "--insecure: no token file, every caller is served without authentication (development only)");
    }

    // Declared first, destroyed last: the target's samplers and every cached handle point into it.
    observe::Metrics metrics;
    // Then the io_context: everything below holds handlers or timers on it.
    boost::asio::io_context io(1);
    auto target = open(io, metrics);
    if (!target) {
        log.critical("{}", target.error().ToString());
        return 1;
    }
    http::ServerOptions server_options;
    server_options.host = listen->first;
    server_options.port = listen->second;
    server_options.max_body_bytes = options.max_body_bytes;
    server_options.error_answer = wire::ServiceError;
    auto server_tls = MakeServerTlsFrom(options.tls);
    if (!server_tls) {
        log.critical("tls: {}", server_tls.error().message);
        return 2;
    }
    server_options.tls = *server_tls;
    http::Handler handler = MakeActionHttpHandler(**target, access, &metrics);
    if (!options.tls.client_ca_file.empty()) {
        handler = AllowClients(std::move(handler), options.tls.allowed_clients);
    }
    auto server = http::StartServer(io, server_options, std::move(handler));
    if (!server) {
        log.critical("cannot listen on {}: {}", options.listen, server.error().ToString());
        return 1;
    }
    const uint16_t port = (*server)->port();
    if (!options.port_file.empty()) {
        if (auto s = WritePortFile(options.port_file, port); !s) {
            log.critical("{}", s.error().message);
            return 1;
        }
    }
    log.info("{} listening on {}:{} (auth: {}{}; test routes: {}; faults: {})", name, server_options.host,
             port, access.token_sha256.empty() ? "none" : "bearer token", TlsSummary(options.tls),
             access.test_routes ? "on" : "off", ToJson((*target)->faults()));
    auto reloader = StartTlsReloader(io, {{"server", server_options.tls}, {"client", options.client_tls}});

    // Destroyed before `io`: what the hook keeps in its captures may own timers and clients on it.
    auto hook = std::move(on_listening);
    if (hook) {
        hook(io, port);
    }

    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) {
            return;
        }
        log.info("signal {}, stopping", signo);
        (*server)->Stop();
        // After the handlers Stop() and the last group commit posted, so both run before the loop ends.
        boost::asio::post(io, [&io] { io.stop(); });
    });
    io.run();
    log.info("stopped: {}", (*target)->StatsJson());
    return 0;
}

int Serve(const ServeOptions& options, std::unique_ptr<Domain> domain,
          std::function<void(boost::asio::io_context&, uint16_t port)> on_listening) {
    if (!domain) {
        spdlog::critical("no domain to serve");
        return 1;
    }
    const std::string component(domain->name());
    auto open = [&](boost::asio::io_context& io,
                    observe::Metrics& metrics) -> Result<std::unique_ptr<ActionTarget>> {
        const std::string state =
            options.service.state_path.empty() ? "in memory" : options.service.state_path;
        ServiceOptions service_options = options.service;
        service_options.metrics = &metrics;
        auto service = DomainService::Create(io, std::move(domain), std::move(service_options));
        if (!service) {
            Error e = std::move(service).error();
            e.message = "cannot open state " + state + ": " + e.message;
            return MakeError(std::move(e));
        }
        observe::Log(component).info("state: {}, {} ledger entries", state, (*service)->ledger_size());
        return std::unique_ptr<ActionTarget>(std::move(*service));
    };
    return ServeTarget(options, component, std::move(open), std::move(on_listening));
}

}  // namespace cogs::services::kit
