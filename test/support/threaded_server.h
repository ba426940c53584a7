// An HTTP server on a thread of its own, on 127.0.0.1 and a port of the kernel's choosing: for a test
// that stands in for another process (a fake cogsd, a fake inventory, a fake control plane) while
// its own thread waits on something else. The handler runs on the server's thread: guard what it
// shares with the test. Declare it after everything its handler uses, so that it stops (and its
// thread is joined) before those go. Header-only, for every test target that links cogs_http.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "cogs/http/server.h"

namespace cogs::testing {

class ThreadedServer {
public:
    explicit ThreadedServer(http::Handler handler, http::ServerOptions options = {}) {
        auto server = http::StartServer(io_, std::move(options), std::move(handler));
        EXPECT_TRUE(server) << server.error().ToString();
        if (server) {
            server_ = std::move(*server);
            thread_ = std::thread([this] { io_.run(); });
        }
    }
    ~ThreadedServer() {
        if (thread_.joinable()) {
            boost::asio::post(io_, [this] { server_->Stop(); });
            work_.reset();
            io_.stop();
            thread_.join();
        }
    }
    ThreadedServer(const ThreadedServer&) = delete;
    ThreadedServer& operator=(const ThreadedServer&) = delete;

    uint16_t port() const { return server_ ? server_->port() : 0; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

private:
    boost::asio::io_context io_{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
        boost::asio::make_work_guard(io_);
    std::unique_ptr<http::Server> server_;
    std::thread thread_;
};

}  // namespace cogs::testing
