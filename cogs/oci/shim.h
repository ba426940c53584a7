// The per-container supervisor (cf. conmon, containerd-shim): the logic of apps/cogs-oci-shim.
//
// Containers::Start runs `cogs-oci-shim --id ID --dir DIR --root R ...` with stdout and stderr on
// DIR/shim.log. That process (the launcher) forks the shim proper and exits once the shim runs runc
// (status 0) or failed before (1, the reason in shim.log). The shim:
//
//   1. detaches: setsid (no terminal, its own session: the agent's Ctrl-C, its process group and its
//      death do not reach it), chdir /, every inherited descriptor above 2 closed (an agent's
//      listening socket must not outlive the agent in a shim);
//   2. becomes a child subreaper (PR_SET_CHILD_SUBREAPER): if runc dies before the container, the
//      container's first process becomes the shim's child, so its exit status is still known;
//   3. writes DIR/shim.pid and holds an exclusive flock on it for its whole life (the liveness
//      test Containers uses: no pid-reuse or zombie confusion); refuses to start if a live shim
//      holds it;
//   4. runs `runc --root R run --bundle DIR/bundle --pid-file DIR/container.pid ID` in the
//      foreground as its child, in a process group of its own, stdin /dev/null, stdout and stderr
//      on one pipe (no terminal);
//   5. copies that pipe into DIR/console.log, bounded (internal/console_log.h: console.log up to
//      console_max_bytes, then console.log.1; never more than twice that in all);
//   6. reaps every child (signalfd for SIGCHLD; waitpid(-1) until none is left);
//   7. ignores SIGTERM, SIGINT and SIGHUP (logged): stopping a container is `runc kill`'s business,
//      so a restart of the agent or a stray signal never takes a guest down;
//   8. with a lease file (ShimOptions::lease_file, lease_file.h), is the host's watchdog for this
//      container: reads the file before it starts runc (a lease that has ended, or no lease: runc is
//      not started, the launcher fails) and every lease_check while runc runs; once the end written
//      there has passed, SIGKILLs the container's first process (PID 1 of its pid namespace: the
//      kernel kills the rest of the namespace with it) straight away, through a pidfd, without a
//      runc process in the way, and logs it once (a process that is not runc's child, nor the shim's
//      once runc has died, is never signalled: `runc kill --all ID KILL` is used instead). The exit is
//      recorded as any other (137). The rule: the container runs only while the file holds an end in the
//      future of this boot; a missing file, a garbled one or one from an earlier boot is a lease that has
//      ended; a read that fails otherwise (EIO, EMFILE) keeps the end read last (a failure never extends a
//      lease);
//   9. when runc has exited (and, if runc was killed, the container's first process too) and the
//      pipe is drained, writes the status to DIR/exit atomically ("3\n"; 128 + N for a signal N,
//      as a shell reports it) and exits 0.
//
// The exit status is runc's, which is the container's first process's when runc ran normally; if
// runc failed to create the container it is runc's own (1) and DIR/container.pid was never
// written (Containers tells the two apart so).
//
// If the shim itself is SIGKILLed, the container runs on under runc (which `runc state` still sees;
// Containers adopts it), but nobody reads its console any more: its next write to stdout or stderr
// gets SIGPIPE (as under conmon), and its end leaves no exit file (Containers reports status -1).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cogs/base/time.h"

namespace cogs::oci {

struct ShimOptions {
    std::string id;   // the container id (ContainerSpec::id)
    std::string dir;  // the container's directory (absolute), holding bundle/config.json
    std::string runc_binary = "/usr/sbin/runc";
    std::string runc_root;                // runc --root
    int64_t console_max_bytes = 1 << 20;  // per console file (two of them at most)
    // The host's lease file (absolute; lease_file.h), "" for none: the container runs only while it
    // holds an end in the future (step 8). Checked every lease_check: the container is killed at
    // most lease_check (plus a scheduling delay) after the end.
    std::string lease_file;
    Duration lease_check = std::chrono::milliseconds(100);
};

// lease_check's bounds: often enough to kill well inside a fence window of a second, rarely enough
// that a host's shims reading one small file cost nothing.
inline constexpr Duration kMinLeaseCheck = std::chrono::milliseconds(10);
inline constexpr Duration kMaxLeaseCheck = std::chrono::milliseconds(500);

inline constexpr int64_t kMinConsoleBytes = 1024;

// The shim's command line (argv[0] = `shim_binary`), as apps/cogs-oci-shim parses it.
std::vector<std::string> ShimArgv(const std::string& shim_binary, const ShimOptions& options);

// The launcher's main: forks the shim and returns the launcher's exit status (0: the shim runs runc;
// 1: it failed, the reason on stderr; 2: bad options). The shim's own process never returns from
// here: it exits when its container has ended.
int RunShim(const ShimOptions& options);

}  // namespace cogs::oci
