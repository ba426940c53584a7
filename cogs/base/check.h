// Three strengths of assertion (after Envoy):
//   COGS_CHECK(cond)   always on; a broken invariant kills the process, which restarts and recovers.
//   COGS_DCHECK(cond)  debug builds only; for checks too costly for a hot path.
//   COGS_EXPECT(cond)  "should never happen" in release: logs and counts, keeps running.
#pragma once

#include <atomic>
#include <cstdint>

namespace cogs::base {

[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);
void ExpectFailed(const char* expr, const char* file, int line);

// How many COGS_EXPECT checks have failed in this process (exported as a metric later).
uint64_t ExpectFailures();

}  // namespace cogs::base

#define COGS_CHECK(cond)                                          \
    do {                                                          \
        if (!(cond)) [[unlikely]] {                               \
            ::cogs::base::CheckFailed(#cond, __FILE__, __LINE__); \
        }                                                         \
    } while (0)

#ifdef NDEBUG
#define COGS_DCHECK(cond) \
    do {                  \
    } while (0)
#else
#define COGS_DCHECK(cond) COGS_CHECK(cond)
#endif

#define COGS_EXPECT(cond)                                          \
    do {                                                           \
        if (!(cond)) [[unlikely]] {                                \
            ::cogs::base::ExpectFailed(#cond, __FILE__, __LINE__); \
        }                                                          \
    } while (0)
