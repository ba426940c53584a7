// An HTTP/1.1 client with a keep-alive connection pool to one host:port.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/http/server.h"

namespace cogs::http {

struct ClientOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;
    size_t max_connections = 64;  // requests beyond this wait for a free connection (FIFO)
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

std::unique_ptr<Client> MakeClient(boost::asio::io_context& io, ClientOptions options);

}  // namespace cogs::http
