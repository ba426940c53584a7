#include <algorithm>
#include <cmath>

#include "cogs/workflow/definition.h"

namespace cogs::workflow {

bool RetryPolicy::ShouldRetry(const Error& e, int attempts_so_far) const {
    if (attempts_so_far >= max_attempts) {
        return false;
    }
    if (retry_on.empty()) {
        return e.retryable;
    }
    return std::find(retry_on.begin(), retry_on.end(), e.code) != retry_on.end();
}

Duration RetryPolicy::BackoffCap(int next_attempt) const {
    if (next_attempt < 2) {
        return Duration(0);  // nothing to wait for before the first attempt
    }
    // In double nanoseconds, so a large exponent saturates instead of overflowing; a policy
    // that never went through Validate (negative or NaN values) still yields a wait in
    // [0, max_backoff].
    const double ceiling = std::max(0.0, static_cast<double>(max_backoff.count()));
    const double initial = std::max(0.0, static_cast<double>(initial_backoff.count()));
    const double growth = std::pow(multiplier >= 1.0 ? multiplier : 1.0, next_attempt - 2);
    const double cap = initial * growth;
    if (!(cap < ceiling)) {  // also when cap is inf or NaN
        return max_backoff.count() > 0 ? max_backoff : Duration(0);
    }
    return Duration(static_cast<Duration::rep>(cap));  // cap < ceiling <= 2^63: representable
}

Duration RetryPolicy::Backoff(int next_attempt, double unit) const {
    const Duration cap = BackoffCap(next_attempt);
    if (!(unit > 0.0)) {  // also NaN
        return Duration(0);
    }
    if (unit >= 1.0) {
        return cap;
    }
    // Rounding a huge cap * unit may land on cap itself (or on 2^63); never go above cap.
    const double limit = static_cast<double>(cap.count());
    const double wait = limit * unit;
    if (!(wait < limit)) {
        return cap;
    }
    return Duration(static_cast<Duration::rep>(wait));
}

}  // namespace cogs::workflow
