#include "cogs/base/check.h"

#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>

namespace cogs::base {
namespace {
std::atomic<uint64_t> g_expect_failures{0};
}

void CheckFailed(const char* expr, const char* file, int line) {
    std::fprintf(stderr, "FATAL: check failed: %s at %s:%d\n", expr, file, line);
    std::fflush(stderr);
    std::abort();
}

void ExpectFailed(const char* expr, const char* file, int line) {
    g_expect_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("invariant violated: {} at {}:{}", expr, file, line);
}

uint64_t ExpectFailures() { return g_expect_failures.load(std::memory_order_relaxed); }

}  // namespace cogs::base
