// The host's lease file: the watchdog between a compute agent and the shims of its containers
// (issue 14 point 2; cf. sanlock's wdmd, a hardware watchdog).
//
// The agent holds a lease per host from the control plane and writes its end here at every renewal
// ("pets" the watchdog); every container of that host has its shim read the file every
// ShimOptions::lease_check and SIGKILL the container once the end has passed. So a host whose agent
// dies (SIGKILL, a crash, a freeze) while its containers run on stops them when its lease ends, by
// itself, before the control plane declares the host down and rebuilds its servers elsewhere.
//
// The file holds one line, "cogs-lease <boot id> <end>\n": the end on the kernel's CLOCK_BOOTTIME
// in nanoseconds (monotonic, and it runs through a suspend, as the control plane's time does), and
// the boot it belongs to (/proc/sys/kernel/random/boot_id): a file left from an earlier boot says
// nothing about this one's clock, and reads as a lease that has ended.
//
// Writers replace the file atomically (a temporary file, then rename): readers see the old end or
// the new one, never half a line. Nothing is synced: the file means nothing after a reboot anyway.
//
// Threading: stateless; safe from any thread. Each call is a few system calls on one small file
// (microseconds; no fsync), short enough for an io thread.
#pragma once

#include <string>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::oci {

// CLOCK_BOOTTIME now, as a duration since boot.
Duration BootTimeNow();

// Writes `path` atomically: the lease ends at `end` (CLOCK_BOOTTIME, as BootTimeNow). The directory
// must exist. Errors: kUnavailable (the message names the file).
Status WriteLeaseFile(const std::string& path, Duration end);

// The end written in `path`. Errors: kNotFound (no file), kInvalidArgument (not a lease file, or one
// of an earlier boot: for a reader both mean "no lease"), kUnavailable (it could not be read: a
// reader keeps the end it read last; a failed read never extends a lease).
Result<Duration> ReadLeaseFile(const std::string& path);

}  // namespace cogs::oci
