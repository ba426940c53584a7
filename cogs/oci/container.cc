#include "cogs/oci/container.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/oci/internal/console_log.h"
#include "cogs/oci/internal/layout.h"
#include "cogs/oci/internal/runc_output.h"
#include "cogs/oci/shim.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"

namespace cogs::oci {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using internal::PathIn;

// The shim's log is appended to by every start of the container; past this it starts afresh.
constexpr uintmax_t kShimLogMax = 64 * 1024;

// Polls `done` until it answers or `deadline` passes, pausing 2 ms at first, then longer, up to
// 50 ms (runc calls are the expensive part of a poll, not the pause).
template <typename F>
auto PollUntil(SteadyTime deadline, F done) -> decltype(done()) {
    Duration pause = 2ms;
    for (;;) {
        auto result = done();
        if (result || SteadyClock::now() >= deadline) {
            return result;
        }
        std::this_thread::sleep_for(
            std::min<Duration>(pause, std::max<Duration>(deadline - SteadyClock::now(), 0ms)));
        pause = std::min<Duration>(pause * 2, 50ms);
    }
}

Status CheckId(const std::string& id) {
    if (!IsValidContainerId(id)) {
        return MakeError(ErrorCode::kInvalidArgument, fmt::format("'{}' is not a container id", id));
    }
    return Ok();
}

bool Exists(const std::string& path) {
    std::error_code ec;
    return fs::exists(path, ec);
}

// The cgroupsPath the container's bundle asked runc for ("" if there is no readable bundle).
std::string BundleCgroupsPath(const std::string& dir) {
    auto text = runtime::ReadFile(PathIn(dir, internal::kBundleDir) + "/config.json");
    if (!text) {
        return "";
    }
    boost::system::error_code ec;
    const boost::json::value config = boost::json::parse(*text, ec);
    if (ec) {
        return "";
    }
    const boost::json::value* path = nullptr;
    if (const auto* root = config.if_object()) {
        if (const auto* linux_section = root->if_contains("linux");
            linux_section && linux_section->is_object()) {
            path = linux_section->as_object().if_contains("cgroupsPath");
        }
    }
    return path != nullptr && path->is_string() ? std::string(path->as_string()) : "";
}

bool Tolerable(const Status& s) {
    return s || s.error().code == ErrorCode::kNotFound || s.error().code == ErrorCode::kFailedPrecondition;
}

}  // namespace

std::string_view ToString(ContainerState state) {
    switch (state) {
        case ContainerState::kAbsent: return "absent";
        case ContainerState::kCreating: return "creating";
        case ContainerState::kRunning: return "running";
        case ContainerState::kExited: return "exited";
    }
    return "unknown";
}

Containers::Containers(ContainersOptions options)
    : options_(std::move(options)),
      runc_(RuncOptions{options_.runc_binary, options_.runc_root, options_.call_timeout}) {
    if (options_.shim_binary.empty()) {
        options_.shim_binary = runtime::SiblingBinary("cogs-oci-shim");
    }
}

std::string Containers::DirOf(const std::string& id) const { return options_.dir + "/" + id; }

Result<ContainerStatus> Containers::WaitForExit(const std::string& id, SteadyTime deadline) const {
    const std::string dir = DirOf(id);
    std::optional<ContainerStatus> status = PollUntil(deadline, [&]() -> std::optional<ContainerStatus> {
        const bool shim_alive = internal::LiveShim(dir).has_value();
        // Read after the shim's liveness: a shim that is gone has written its status, if ever.
        if (auto exit = internal::ReadExitStatus(dir)) {
            return ContainerStatus{ContainerState::kExited, *exit, 0, shim_alive};
        }
        if (!shim_alive) {
            return ContainerStatus{ContainerState::kExited, -1, 0, false};
        }
        return std::nullopt;
    });
    if (!status) {
        return MakeError(
            ErrorCode::kDeadlineExceeded,
            fmt::format("container {} ended but its shim did not write its exit status in time", id));
    }
    return *status;
}

bool Containers::Ran(const std::string& id) const {
    return Exists(PathIn(DirOf(id), internal::kContainerPidFile));
}

// `ran` must be read before `state`: runc writes its state, then starts the process, then writes the
// pid file, so a pid file seen *before* runc said "no such container" means the container ran and
// runc has cleaned up after its end; one seen after may belong to a container runc made meanwhile.
Result<ContainerStatus> Containers::StatusFrom(const std::string& id, bool ran,
                                               const Result<RuncState>& state) const {
    if (!state && state.error().code != ErrorCode::kNotFound) {
        return MakeError(state.error());
    }
    const std::string dir = DirOf(id);
    const bool shim_alive = internal::LiveShim(dir).has_value();
    if (auto exit = internal::ReadExitStatus(dir)) {
        return ContainerStatus{ContainerState::kExited, *exit, 0, shim_alive};
    }
    if (state) {
        switch (state->status) {
            case RuncStatus::kCreating:
            case RuncStatus::kCreated: return ContainerStatus{ContainerState::kCreating, -1, 0, shim_alive};
            case RuncStatus::kRunning:
            case RuncStatus::kPausing:
            case RuncStatus::kPaused:
                return ContainerStatus{ContainerState::kRunning, -1, static_cast<pid_t>(state->pid),
                                       shim_alive};
            case RuncStatus::kStopped:
                if (!shim_alive) {
                    return ContainerStatus{ContainerState::kExited, -1, 0, false};
                }
                return WaitForExit(id, SteadyClock::now() + options_.call_timeout);
        }
    }
    if (!Exists(dir)) {
        return ContainerStatus{};
    }
    if (!shim_alive) {
        return ContainerStatus{ContainerState::kExited, -1, 0, false};
    }
    // The shim runs but runc holds no state: either runc has not made it yet, or the container ran
    // and runc has already cleaned up after its end.
    if (ran) {
        return WaitForExit(id, SteadyClock::now() + options_.call_timeout);
    }
    return ContainerStatus{ContainerState::kCreating, -1, 0, true};
}

Result<ContainerStatus> Containers::Status(const std::string& id) const {
    COGS_TRY(CheckId(id));
    const std::string dir = DirOf(id);
    const bool ran = Ran(id);
    // The common case without runc (a process per call adds up over a host's containers): a process
    // that ran, a shim that watches it and no exit status yet. Lags the process's end by the moment
    // its shim takes to write the status.
    if (ran && internal::LiveShim(dir) && !internal::ReadExitStatus(dir)) {
        auto text = runtime::ReadFile(PathIn(dir, internal::kContainerPidFile));
        const pid_t pid = text ? static_cast<pid_t>(std::atoi(text->c_str())) : 0;
        if (pid > 0) {
            return ContainerStatus{ContainerState::kRunning, -1, pid, true};
        }
    }
    return StatusFrom(id, ran, runc_.State(id));
}

Result<ContainerStatus> Containers::Start(const ContainerSpec& spec) const {
    COGS_TRY(ValidateSpec(spec));
    if (options_.console_max_bytes < kMinConsoleBytes) {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("console_max_bytes must be >= {}", kMinConsoleBytes));
    }
    std::error_code ec;
    if (!fs::is_directory(spec.rootfs, ec)) {
        return MakeError(FieldError("rootfs", fmt::format("{} is not a directory", spec.rootfs)));
    }
    if (!spec.netns_path.empty() && !Exists(spec.netns_path)) {
        return MakeError(FieldError("netns_path", fmt::format("{} does not exist", spec.netns_path)));
    }
    for (size_t i = 0; i < spec.mounts.size(); ++i) {
        if (!Exists(spec.mounts[i].source)) {
            return MakeError(FieldError(fmt::format("mounts[{}].source", i),
                                        fmt::format("{} does not exist", spec.mounts[i].source)));
        }
    }
    COGS_ASSIGN_OR_RETURN(const ContainerStatus current, Status(spec.id));
    if (current.state == ContainerState::kCreating || current.state == ContainerState::kRunning) {
        return MakeError(ErrorCode::kAlreadyExists,
                         fmt::format("container {} is already {}", spec.id, ToString(current.state)));
    }
    const std::string dir = DirOf(spec.id);
    // The previous run's shim has written its exit status and is about to end; the new one would
    // refuse to start beside it.
    if (current.shim_alive && !PollUntil(SteadyClock::now() + options_.call_timeout,
                                         [&] { return !internal::LiveShim(dir).has_value(); })) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("the shim of container {}'s previous run did not end", spec.id));
    }
    // An earlier run's state, if runc kept any (its runc was killed).
    COGS_TRY(runc_.Delete(spec.id, /*force=*/true));

    fs::create_directories(dir, ec);
    if (ec) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("container directory {}: {}", dir, ec.message()));
    }
    ::chmod(dir.c_str(), 0700);  // the console may hold what the guest prints of its secrets
    COGS_TRY(WriteBundle(spec, PathIn(dir, internal::kBundleDir)));
    for (std::string_view name : {internal::kExitFile, internal::kContainerPidFile, internal::kRuncPidFile}) {
        fs::remove(PathIn(dir, name), ec);
    }
    const std::string shim_log = PathIn(dir, internal::kShimLog);
    if (fs::file_size(shim_log, ec) > kShimLogMax && !ec) {
        fs::remove(shim_log, ec);
    }

    const ShimOptions shim{.id = spec.id,
                           .dir = dir,
                           .runc_binary = options_.runc_binary,
                           .runc_root = options_.runc_root,
                           .console_max_bytes = options_.console_max_bytes,
                           .lease_file = spec.lease_file,
                           .lease_check = options_.lease_check};
    COGS_ASSIGN_OR_RETURN(runtime::Child launcher, runtime::Child::Spawn(ShimArgv(options_.shim_binary, shim),
                                                                         {.log_path = shim_log}));
    const std::optional<int> launched = launcher.Wait(options_.call_timeout);
    if (!launched) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         fmt::format("the shim of container {} did not start in time: {}", spec.id,
                                     runtime::TailFile(shim_log, 5)));
    }
    if (*launched != 0) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("the shim of container {} failed (status {}): {}", spec.id, *launched,
                                     runtime::TailFile(shim_log, 5)));
    }

    const SteadyTime deadline = SteadyClock::now() + options_.start_timeout;
    Result<ContainerStatus> status = MakeError(ErrorCode::kInternal, "not polled");
    PollUntil(deadline, [&] {
        status = Status(spec.id);
        return !status || status->state == ContainerState::kRunning ||
               status->state == ContainerState::kExited;
    });
    if (!status) {
        return status;
    }
    if (status->state == ContainerState::kExited && !Exists(PathIn(dir, internal::kContainerPidFile))) {
        // runc writes the pid file once the process runs: without it, runc failed to create the container.
        std::string why;
        if (auto log = runtime::ReadFile(PathIn(dir, "runc.log"))) {
            why = internal::RuncErrorMessage(*log);
        }
        if (why.empty()) {
            why = runtime::TailFile(PathIn(dir, internal::kConsoleLog), 5);
        }
        return MakeError(ErrorCode::kFailedPrecondition,
                         fmt::format("runc could not start container {} (status {}): {}", spec.id,
                                     status->exit_status, why));
    }
    if (status->state != ContainerState::kRunning && status->state != ContainerState::kExited) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         fmt::format("container {} did not start within {} ms (still {})", spec.id,
                                     std::chrono::duration_cast<Millis>(options_.start_timeout).count(),
                                     ToString(status->state)));
    }
    return status;
}

Result<ContainerStatus> Containers::Stop(const std::string& id, Duration grace) const {
    COGS_ASSIGN_OR_RETURN(const ContainerStatus current, Status(id));
    if (current.state == ContainerState::kAbsent) {
        return MakeError(ErrorCode::kNotFound, fmt::format("no container {}", id));
    }
    if (current.state == ContainerState::kExited) {
        return current;
    }
    // Sends `signal` (once it reaches the container: one still being made has no runc state yet, so
    // runc says it does not exist, and the signal is sent again at the next turn) and polls until the
    // container has ended or `deadline`.
    auto signal_and_wait = [&](int signal, bool all, SteadyTime deadline) {
        Result<ContainerStatus> status = current;
        bool delivered = false;
        PollUntil(deadline, [&] {
            if (!delivered) {
                auto sent = runc_.Kill(id, signal, all);
                // "not running": it has ended already, which the status says next.
                delivered = sent || sent.error().code == ErrorCode::kFailedPrecondition;
                if (!Tolerable(sent)) {
                    status = MakeError(sent.error());
                    return true;
                }
            }
            status = Status(id);
            return !status || status->state == ContainerState::kExited ||
                   status->state == ContainerState::kAbsent;
        });
        return status;
    };
    // No grace: a power-off (fencing), SIGKILL at once.
    Result<ContainerStatus> status = current;
    if (grace > Duration::zero()) {
        status = signal_and_wait(SIGTERM, false, SteadyClock::now() + grace);
    }
    if (status && (status->state == ContainerState::kCreating || status->state == ContainerState::kRunning)) {
        status = signal_and_wait(SIGKILL, true, SteadyClock::now() + options_.kill_timeout);
    }
    if (status && (status->state == ContainerState::kCreating || status->state == ContainerState::kRunning)) {
        return MakeError(ErrorCode::kDeadlineExceeded,
                         fmt::format("container {} still {} after SIGKILL", id, ToString(status->state)));
    }
    return status;
}

cogs::Status Containers::WaitForShimEnd(const std::string& id, SteadyTime deadline) const {
    const std::string dir = DirOf(id);
    // runc delete again at every turn: a shim that was still starting may make the container after
    // the first delete; its end is what ends the shim.
    cogs::Status deleted = Ok();
    const bool gone = PollUntil(deadline, [&] {
        deleted = runc_.Delete(id, /*force=*/true);
        return !internal::LiveShim(dir).has_value();
    });
    if (gone) {
        return Ok();
    }
    if (!deleted) {
        return deleted;
    }
    return MakeError(ErrorCode::kDeadlineExceeded, fmt::format("the shim of container {} did not end", id));
}

cogs::Status Containers::Remove(const std::string& id) const {
    COGS_TRY(CheckId(id));
    const std::string dir = DirOf(id);
    const std::string cgroups_path = BundleCgroupsPath(dir);

    if (!WaitForShimEnd(id, SteadyClock::now() + options_.call_timeout)) {
        // A shim that does not end (stopped, or stuck): killed. Its runc is in a process group of its
        // own and ends with the container.
        if (auto pid = internal::LiveShim(dir); pid && *pid > 0) {
            ::kill(*pid, SIGKILL);
        }
        COGS_TRY(WaitForShimEnd(id, SteadyClock::now() + options_.call_timeout));
    }
    COGS_TRY(runc_.Delete(id, /*force=*/true));
    // A runc that outlived its shim (the shim was killed) ends once its container is deleted.
    if (auto text = runtime::ReadFile(PathIn(dir, internal::kRuncPidFile))) {
        if (auto runc = internal::ParseProcessId(*text)) {
            const bool ended = PollUntil(SteadyClock::now() + options_.call_timeout,
                                         [&] { return !internal::ProcessAlive(*runc); });
            if (!ended) {
                ::kill(runc->pid, SIGKILL);
            }
        }
    }
    auto state = runc_.State(id);
    if (state || state.error().code != ErrorCode::kNotFound) {
        return MakeError(ErrorCode::kUnavailable,
                         fmt::format("runc still holds container {}: {}", id,
                                     state ? std::string(ToString(state->status)) : state.error().message));
    }
    // runc removes the cgroups it made; one left behind (runc killed half-way) goes here.
    if (!cgroups_path.empty()) {
        for (const std::string& cgroup : internal::CgroupDirs(cgroups_path)) {
            if (::rmdir(cgroup.c_str()) != 0 && errno != ENOENT) {
                return MakeError(ErrorCode::kUnavailable, fmt::format("cgroup {} of container {}: {}", cgroup,
                                                                      id, std::strerror(errno)));
            }
        }
    }
    for (const std::string& mount : internal::MountsUnder(dir)) {
        if (::umount2(mount.c_str(), 0) != 0 && errno != EINVAL &&
            !(errno == EBUSY && ::umount2(mount.c_str(), MNT_DETACH) == 0)) {
            return MakeError(ErrorCode::kUnavailable,
                             fmt::format("unmount {} of container {}: {}", mount, id, std::strerror(errno)));
        }
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("remove {}: {}", dir, ec.message()));
    }
    return Ok();
}

Result<std::vector<ContainerInfo>> Containers::List() const {
    // The directories (and whether each container ran) before runc's list: see StatusFrom.
    std::map<std::string, ContainerInfo> by_id;
    std::set<std::string> ran;
    std::error_code ec;
    for (fs::directory_iterator it(options_.dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (it->is_directory(ec) && IsValidContainerId(name)) {
            by_id[name].has_dir = true;
            if (Ran(name)) {
                ran.insert(name);
            }
        }
    }
    COGS_ASSIGN_OR_RETURN(const std::vector<RuncState> states, runc_.List());
    std::map<std::string, RuncState> runc_by_id;
    for (const RuncState& s : states) {
        by_id[s.id].in_runc = true;
        runc_by_id[s.id] = s;
    }
    std::vector<ContainerInfo> out;
    for (auto& [id, info] : by_id) {
        info.id = id;
        Result<RuncState> state = MakeError(ErrorCode::kNotFound, "no state");
        if (auto it = runc_by_id.find(id); it != runc_by_id.end()) {
            state = it->second;
        }
        COGS_ASSIGN_OR_RETURN(info.status, StatusFrom(id, ran.contains(id), state));
        out.push_back(std::move(info));
    }
    return out;
}

Result<std::string> Containers::Console(const std::string& id, int64_t max_bytes) const {
    COGS_TRY(CheckId(id));
    return internal::ReadConsole(PathIn(DirOf(id), internal::kConsoleLog), max_bytes);
}

}  // namespace cogs::oci
