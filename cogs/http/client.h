// An HTTP/1.1 client with a keep-alive connection pool to one host:port.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"

namespace cogs::http {

struct ClientOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;
    size_t max_connections = 64;  // requests beyond this wait for a free connection (FIFO)
    // Null: plain HTTP. Else TLS, the server's certificate verified against tls's CA and required to
    // name `server_name` (a DNS name or an IP address; empty: `host`). Sends SNI for a DNS name.
    std::shared_ptr<TlsContext> tls{};
    std::string server_name{};
    // TLS, for one server that answers for many names (an agent serving many hosts, its certificate
    // naming each): the handshake verifies the certificate's chain but no name (`server_name` is
    // unused, no SNI is sent), and each request goes only over a connection whose certificate names
    // its Request::peer_name; a request without one, or whose name the certificate lacks, fails
    // (kUnavailable) before a byte of it is sent. Ignored for plain HTTP.
    bool name_per_request = false;
};

class Client {
public:
    using Callback = std::function<void(Result<Response>)>;
    virtual ~Client() = default;

    // Sends `request` and calls `done` exactly once on the client's io_context: with the response
    // (any status), kUnavailable if no connection could be made or it broke before a response
    // (retryable; outcome unknown once the request was written), or kDeadlineExceeded at
    // `deadline` (the connection is then closed, never reused).
    virtual void Send(Request request, SteadyTime deadline, Callback done) = 0;
};

struct Endpoint {
    std::string host;
    uint16_t port = 0;
    bool tls = false;  // https
    bool operator==(const Endpoint&) const = default;
};

// "HOST:PORT", or "[V6ADDR]:PORT" (the brackets dropped): port 0..65535 in decimal.
std::optional<Endpoint> ParseHostPort(std::string_view s);
// "http://HOST:PORT" or "https://HOST:PORT" (Endpoint::tls), optionally followed by a path
// (ignored): port 1..65535.
std::optional<Endpoint> ParseHttpUrl(std::string_view url);

std::unique_ptr<Client> MakeClient(boost::asio::io_context& io, ClientOptions options);

}  // namespace cogs::http
