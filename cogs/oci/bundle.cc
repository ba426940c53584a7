#include "cogs/oci/bundle.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/runtime/files.h"

namespace cogs::oci {
namespace {

namespace json = boost::json;

constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int64_t kMaxMemoryMib = int64_t{1} << 40;  // keeps memory_mib * 2^20 far inside int64
constexpr int kMaxVcpus = 4096;

bool NameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// An absolute path without NUL, "." or ".." segments: what runc is given must mean what it says.
Status CheckAbsolutePath(std::string_view field, std::string_view path) {
    if (path.empty() || path.front() != '/') {
        return MakeError(FieldError(field, "must be an absolute path"));
    }
    if (HasNul(path)) {
        return MakeError(FieldError(field, "must not contain NUL"));
    }
    size_t pos = 0;
    while (pos <= path.size()) {
        const size_t end = std::min(path.find('/', pos), path.size());
        const std::string_view segment = path.substr(pos, end - pos);
        if (segment == "." || segment == "..") {
            return MakeError(FieldError(field, "must not contain '.' or '..' segments"));
        }
        pos = end + 1;
    }
    return Ok();
}

json::array Strings(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) {
        a.emplace_back(s);
    }
    return a;
}

json::object Mount(std::string_view destination, std::string_view type, std::string_view source,
                   std::vector<std::string> options) {
    json::object m{{"destination", destination}, {"type", type}, {"source", source}};
    if (!options.empty()) {
        m["options"] = Strings(options);
    }
    return m;
}

}  // namespace

bool IsValidContainerId(std::string_view id) {
    if (id.empty() || id.size() > 128 || !std::all_of(id.begin(), id.end(), NameChar)) {
        return false;
    }
    const char c = id.front();
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

Status ValidateSpec(const ContainerSpec& spec) {
    if (!IsValidContainerId(spec.id)) {
        return MakeError(FieldError("id",
                                    "must be 1-128 characters of [A-Za-z0-9._-], the first a letter "
                                    "or digit"));
    }
    COGS_TRY(CheckAbsolutePath("rootfs", spec.rootfs));
    if (spec.args.empty() || spec.args.front().empty()) {
        return MakeError(FieldError("args", "must name a program"));
    }
    for (size_t i = 0; i < spec.args.size(); ++i) {
        if (HasNul(spec.args[i])) {
            return MakeError(FieldError(fmt::format("args[{}]", i), "must not contain NUL"));
        }
    }
    for (size_t i = 0; i < spec.env.size(); ++i) {
        const std::string& e = spec.env[i];
        const size_t eq = e.find('=');
        if (eq == 0 || eq == std::string::npos || HasNul(e)) {
            return MakeError(FieldError(fmt::format("env[{}]", i), "must be NAME=value"));
        }
    }
    COGS_TRY(CheckAbsolutePath("cwd", spec.cwd));
    if (spec.hostname.empty() || spec.hostname.size() > 64 ||
        !std::all_of(spec.hostname.begin(), spec.hostname.end(), NameChar)) {
        return MakeError(FieldError("hostname", "must be 1-64 characters of [A-Za-z0-9._-]"));
    }
    if (spec.vcpus < 1 || spec.vcpus > kMaxVcpus) {
        return MakeError(FieldError("vcpus", fmt::format("must be in [1, {}]", kMaxVcpus)));
    }
    if (spec.cpu_shares && (*spec.cpu_shares < 2 || *spec.cpu_shares > 262144)) {
        return MakeError(FieldError("cpu_shares", "must be in [2, 262144]"));
    }
    if (spec.memory_mib < 1 || spec.memory_mib > kMaxMemoryMib) {
        return MakeError(FieldError("memory_mib", fmt::format("must be in [1, {}]", kMaxMemoryMib)));
    }
    if (spec.pids_limit < 1) {
        return MakeError(FieldError("pids_limit", "must be >= 1"));
    }
    if (!spec.netns_path.empty()) {
        COGS_TRY(CheckAbsolutePath("netns_path", spec.netns_path));
    }
    for (size_t i = 0; i < spec.mounts.size(); ++i) {
        const BindMount& m = spec.mounts[i];
        COGS_TRY(CheckAbsolutePath(fmt::format("mounts[{}].source", i), m.source));
        COGS_TRY(CheckAbsolutePath(fmt::format("mounts[{}].destination", i), m.destination));
        if (m.destination == "/") {
            return MakeError(FieldError(fmt::format("mounts[{}].destination", i), "must not be /"));
        }
    }
    const std::string& parent = spec.cgroup_parent;
    bool parent_ok = !parent.empty() && parent.front() != '/' && parent.back() != '/';
    for (size_t pos = 0; parent_ok && pos < parent.size();) {
        const size_t end = std::min(parent.find('/', pos), parent.size());
        const std::string_view segment = std::string_view(parent).substr(pos, end - pos);
        parent_ok = !segment.empty() && segment != "." && segment != ".." &&
                    std::all_of(segment.begin(), segment.end(), NameChar);
        pos = end + 1;
    }
    if (!parent_ok) {
        return MakeError(FieldError("cgroup_parent", "must be a relative path of [A-Za-z0-9._-] segments"));
    }
    const std::string& leaf = spec.cgroup_name;
    if (!leaf.empty() && (leaf.size() > 128 || leaf == "." || leaf == ".." ||
                          !std::all_of(leaf.begin(), leaf.end(), NameChar))) {
        return MakeError(FieldError("cgroup_name", "must be 1-128 of [A-Za-z0-9._-], not . or .."));
    }
    if (!spec.lease_file.empty()) {
        COGS_TRY(CheckAbsolutePath("lease_file", spec.lease_file));
    }
    return Ok();
}

std::string CgroupsPath(const ContainerSpec& spec) {
    return "/" + spec.cgroup_parent + "/" + (spec.cgroup_name.empty() ? spec.id : spec.cgroup_name);
}

Result<std::string> BundleConfig(const ContainerSpec& spec) {
    COGS_TRY(ValidateSpec(spec));

    std::vector<std::string> env = spec.env;
    if (std::none_of(env.begin(), env.end(), [](const std::string& e) { return e.starts_with("PATH="); })) {
        env.insert(env.begin(), kDefaultPath);
    }
    const json::array caps{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
    json::object process{
        {"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", Strings(spec.args)},
        {"env", Strings(env)},
        {"cwd", spec.cwd},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
        {"rlimits", json::array{{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
        {"noNewPrivileges", true},
    };

    json::array mounts{
        Mount("/proc", "proc", "proc", {}),
        Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
        Mount("/dev/pts", "devpts", "devpts",
              {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
        Mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
        Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
        Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
        // runc mounts the container's own cgroup directories here (v1: one per controller, v2: the
        // one), so a guest reads its limits (memory.limit_in_bytes or memory.max).
        Mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}),
    };
    for (const BindMount& m : spec.mounts) {
        std::vector<std::string> options{"rbind", "nosuid", "nodev", m.read_only ? "ro" : "rw"};
        if (m.receives_host_mounts) {
            options.emplace_back("rslave");
        }
        mounts.emplace_back(Mount(m.destination, "bind", m.source, options));
    }

    const int64_t memory = spec.memory_mib * 1024 * 1024;
    json::object cpu{{"quota", int64_t{spec.vcpus} * kCpuPeriodUs}, {"period", kCpuPeriodUs}};
    if (spec.cpu_shares) {
        cpu["shares"] = *spec.cpu_shares;
    }
    json::object resources{
        {"devices", json::array{{{"allow", false}, {"access", "rwm"}}}},
        {"cpu", std::move(cpu)},
        // swap = limit: memory+swap may not exceed the memory limit, so no swap (v2: memory.swap.max 0).
        {"memory", {{"limit", memory}, {"swap", memory}}},
        {"pids", {{"limit", spec.pids_limit}}},
    };
    json::object network{{"type", "network"}};
    if (!spec.netns_path.empty()) {
        network["path"] = spec.netns_path;
    }
    json::object linux_section{
        {"cgroupsPath", CgroupsPath(spec)},
        {"resources", std::move(resources)},
        {"namespaces", json::array{{{"type", "pid"}},
                                   std::move(network),
                                   {{"type", "ipc"}},
                                   {{"type", "uts"}},
                                   {{"type", "mount"}}}},
        {"maskedPaths", json::array{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"}},
        {"readonlyPaths",
         json::array{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
    };

    json::object config{
        {"ociVersion", "1.0.2"},
        {"process", std::move(process)},
        {"root", {{"path", spec.rootfs}, {"readonly", spec.readonly_rootfs}}},
        {"hostname", spec.hostname},
        {"mounts", std::move(mounts)},
        {"linux", std::move(linux_section)},
    };
    return json::serialize(config);
}

Status WriteBundle(const ContainerSpec& spec, const std::string& bundle_dir) {
    COGS_ASSIGN_OR_RETURN(const std::string config, BundleConfig(spec));
    std::error_code ec;
    std::filesystem::create_directories(bundle_dir, ec);
    if (ec) {
        return MakeError(ErrorCode::kUnavailable, fmt::format("bundle {}: {}", bundle_dir, ec.message()));
    }
    return runtime::WriteFileAtomic(bundle_dir + "/config.json", config, 0600);
}

}  // namespace cogs::oci
