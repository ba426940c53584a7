// The HTTP server (cogs/http/server.h) from the first byte a client sends: one server with cogsd's
// options (ServerOptions as cogsd sets them: 1 MiB bodies), serving on its own thread; each input is
// written raw to a new loopback connection, which then half-closes and reads until the server
// closes. The handler reads every part of the request (path, query parameters, headers) and answers.
//
// What must hold: the server neither crashes nor hangs (it closes every connection once the client
// has nothing more to send), and what it hands the handler has a method, a target and lower-case
// header names.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "cogs/base/check.h"
#include "cogs/http/server.h"

namespace {

using namespace cogs;

void Handle(http::Request req, http::Respond respond) {
    COGS_CHECK(!req.method.empty());
    COGS_CHECK(!req.target.empty());
    for (const auto& [name, value] : req.headers) {
        for (char c : name) {
            COGS_CHECK(!std::isupper(static_cast<unsigned char>(c)));
        }
    }
    http::Response r;
    r.body = req.method + " " + req.Path() + " " + req.Header("host") + " " + req.Query("a");
    for (const auto& [k, v] : req.QueryParams()) {
        r.body += " " + http::UrlEncode(k) + "=" + http::UrlEncode(v);
    }
    r.body += " " + std::to_string(req.body.size());
    respond(std::move(r));
}

// The server and the thread that runs it, for the whole run.
struct Served {
    Served() : work(io.get_executor()) {
        auto started = http::StartServer(io, http::ServerOptions{}, Handle);
        COGS_CHECK(started.has_value());
        server = std::move(*started);
        thread = std::thread([this] { io.run(); });
    }
    boost::asio::io_context io{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
    std::unique_ptr<http::Server> server;
    std::thread thread;
};

Served& Server() {
    static Served* served = new Served();  // lives as long as the process: libFuzzer exits with it
    return *served;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const uint16_t port = Server().server->port();
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    COGS_CHECK(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // A server that never closes would be a hang: libFuzzer's -timeout reports it; this bound only
    // keeps a blocked read from outliving it.
    timeval patience{.tv_sec = 20, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    int connected = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (connected != 0 && errno == EINTR) {
        // Interrupted, the connection goes on being made: wait until it is writable.
        pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
        while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
        int error = 0;
        socklen_t len = sizeof error;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        connected = error == 0 ? 0 : -1;
    }
    COGS_CHECK(connected == 0);
    size_t sent = 0;
    while (sent < size) {
        const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;  // libFuzzer's SIGALRM (its -timeout watch) interrupts blocking calls
        }
        if (n <= 0) {
            break;  // the server closed early (a malformed request): fine
        }
        sent += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
    char sink[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            break;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            // A timeout: the server kept a finished connection open.
            std::fprintf(stderr, "http fuzz: recv: %s\n", std::strerror(errno));
            std::abort();
        }
    }
    ::close(fd);
    return 0;
}
