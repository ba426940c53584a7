// Shared by the server's and the client's coroutines (both are Beast translation units): the names
// they use for Asio and Beast, and how a coroutine ends.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <exception>

#include "cogs/base/check.h"

namespace cogs::http::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// Every I/O result is taken as a value: co_await op(..., kTuple) gives (error_code, ...).
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// The completion of a detached coroutine: fails the process on an escaped exception. Every I/O
// result is taken as a value (as_tuple), so only a bug or an allocation failure gets here.
inline void FailOnEscapedException(std::exception_ptr e, const char* who) {
    if (e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::critical("{}: exception escaped a coroutine: {}", who, ex.what());
        }
        COGS_CHECK(!"exception escaped an http coroutine");
    }
}

}  // namespace cogs::http::internal
