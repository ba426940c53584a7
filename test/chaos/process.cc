#include "test/chaos/process.h"

namespace cogs::testing {

Child Child::Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
    Child c;
    auto spawned = runtime::Child::Spawn(argv, {.log_path = log_path, .new_process_group = false});
    if (spawned) {
        c.child_ = std::move(*spawned);
    } else {
        c.spawn_failed_ = true;  // as a fork whose exec failed: the child "exited" with 127
    }
    return c;
}

int Child::Wait(int timeout_ms) {
    if (spawn_failed_) {
        return 127;
    }
    if (timeout_ms < 0) {
        return child_.Wait();
    }
    return child_.Wait(std::chrono::milliseconds(timeout_ms)).value_or(-1);
}

}  // namespace cogs::testing
