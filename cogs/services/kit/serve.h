// Serve: the whole life of a micro-service process around a Domain — open its state, listen, serve
// the protocol until SIGTERM/SIGINT, stop. The mains of cogs-network, cogs-volume and cogs-compute
// are a flag parser (flags.h) and one call to Serve; cogs-sim's is one call to ServeTarget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cogs/observe/metrics.h"
#include "cogs/services/kit/domain.h"
#include "cogs/services/kit/protocol.h"
#include "cogs/services/kit/service.h"
#include "cogs/services/kit/tls.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::kit {

struct ServeOptions {
    std::string listen = "127.0.0.1:0";  // HOST:PORT ([v6]:PORT); port 0: any free port
    std::string port_file;               // the bound port is written here (atomically) once listening
    ServiceOptions service;              // state file, faults, seed
    // Files each holding a bearer token callers may present (any of them: one process serving several
    // hosts takes each host's agent token). None: the process refuses to start, unless `insecure`.
    std::vector<std::string> token_files;
    bool insecure = false;            // start without a token: every caller is served (development only)
    bool test_routes = false;         // serve the test routes (protocol.h; cogs-compute's crash route)
    std::string log_level = "info";   // trace, debug, info, warn, error, critical, off
    std::string log_format = "json";  // json (one object per line on stderr) or text
    size_t max_body_bytes = 1 << 20;
    // TLS (tls.h): with a certificate, the service serves TLS only; with a client CA, mutual TLS and
    // only tls.allowed_clients may call its routes (not /healthz, /metrics). Rotated on SIGHUP and on
    // file change. The client side is for what on_listening starts (the agent's calls to cogsd).
    TlsOptions tls;
    // The client context the main made from tls for what on_listening starts: reloaded with the
    // server's. Null: none.
    std::shared_ptr<http::TlsContext> client_tls{};
};

// The whole life of a service process around any ActionTarget (cogs-sim's SimService; Serve below
// for a Domain). Sets up logging (observe::SetupLogging: process "cogs-<component>", log_format,
// log_level), makes the process's metrics registry (its /metrics) and io_context, has `open` make
// the target on them (it counts into the registry; it may log what it loaded), listens on `listen`
// with MakeActionHttpHandler (protocol.h: GET /metrics, GET|PUT /v1/log-levels, one log line per
// action), writes the port file, calls `on_listening(io, port)` on the io thread (e.g. to start
// registering with the control plane; it may start timers and clients on `io`), and serves until
// SIGTERM or SIGINT; then stops the server, lets the last commit finish and returns 0. On a start-up
// failure (bad --listen, unreadable token file, `open` failing, port in use) it logs a clear
// message and returns non-zero without serving. Each token file's content (surrounding whitespace
// trimmed) is a token; only its SHA-256 is kept. Without a token file it refuses to start (exit 2,
// saying so) unless `insecure`, which serves every caller and says so in a warning. Runs the
// io_context on the calling thread.
using OpenTarget = std::function<Result<std::unique_ptr<ActionTarget>>(boost::asio::io_context& io,
                                                                       observe::Metrics& metrics)>;
int ServeTarget(const ServeOptions& options, std::string_view component, OpenTarget open,
                std::function<void(boost::asio::io_context&, uint16_t port)> on_listening = {});

// ServeTarget for a DomainService of `domain` with options.service (its state file, faults, seed;
// the metrics given there are ignored: the process's registry is used). The component is the
// domain's name; a state that cannot be opened or loaded is a start-up failure.
int Serve(const ServeOptions& options, std::unique_ptr<Domain> domain,
          std::function<void(boost::asio::io_context&, uint16_t port)> on_listening = {});

// observe::SetupLogging for a service process named `process` ("cogs-volume") from --log-format and
// --log-level. ServeTarget calls it; a main that logs before (bad flags, its own set-up) calls it
// first so that those lines are JSON too. On a bad value it writes the reason on stderr and returns
// false (exit with 2).
bool SetupProcessLogging(const ServeOptions& options, const std::string& process);

// Parse "HOST:PORT" (brackets around an IPv6 host are removed); write the port file atomically
// (write a temporary, rename).
Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& listen);
Status WritePortFile(const std::string& path, uint16_t port);

}  // namespace cogs::services::kit
