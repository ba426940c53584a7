// Shared by the server's and the client's coroutines (both are Beast translation units).
#pragma once

#include <exception>

#include <spdlog/spdlog.h>

#include "cogs/base/check.h"

namespace cogs::http::internal {

// The completion of a detached coroutine: fails the process on an escaped exception. Every I/O
// result is taken as a value (as_tuple), so only a bug or an allocation failure gets here.
inline void CheckNoException(std::exception_ptr e, const char* who) {
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
