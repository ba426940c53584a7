// cogs-oci-shim: the supervisor of one container (cogs/oci/shim.h has what it does and why).
//
//   cogs-oci-shim --id i-1 --dir /var/lib/cogs/host-1/containers/i-1 --root /run/cogs/host-1/runc
//       [--runc /usr/sbin/runc] [--console-max-bytes 1048576]
//       [--lease-file /var/lib/cogs/instances/.leases/host-1 [--lease-check-ms 100]]
//
// Started by oci::Containers::Start with stdout and stderr on <dir>/shim.log; it returns once the
// detached shim runs runc (0), or with 1 (the reason in the log) or 2 (bad flags). Not for people to
// run by hand, though it does no harm: it runs the bundle in <dir>/bundle like the agent would.
#include <CLI/CLI.hpp>

#include "cogs/oci/shim.h"

int main(int argc, char** argv) {
    cogs::oci::ShimOptions options;
    CLI::App app{"cogs-oci-shim: runs one container under runc and keeps its console and exit status"};
    app.add_option("--id", options.id, "the container id")->required();
    app.add_option("--dir", options.dir, "the container's directory (holds bundle/config.json)")->required();
    app.add_option("--root", options.runc_root, "runc's state root (runc --root)")->required();
    app.add_option("--runc", options.runc_binary, "the runc binary")->capture_default_str();
    app.add_option("--console-max-bytes", options.console_max_bytes,
                   "bytes per console file (console.log, then console.log.1)")
        ->check(CLI::Range(cogs::oci::kMinConsoleBytes, int64_t{1} << 40))
        ->capture_default_str();
    app.add_option("--lease-file", options.lease_file,
                   "the host's lease file: the container is killed once the end written there has passed "
                   "(cogs/oci/lease_file.h)");
    int64_t lease_check_ms = std::chrono::duration_cast<cogs::Millis>(options.lease_check).count();
    app.add_option("--lease-check-ms", lease_check_ms, "how often the lease file is read")
        ->check(CLI::Range(std::chrono::duration_cast<cogs::Millis>(cogs::oci::kMinLeaseCheck).count(),
                           std::chrono::duration_cast<cogs::Millis>(cogs::oci::kMaxLeaseCheck).count()))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    options.lease_check = cogs::Millis(lease_check_ms);
    return cogs::oci::RunShim(options);
}
