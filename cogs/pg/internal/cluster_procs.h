// The private cluster's processes as the system shows them (cluster_procs.cc): /proc, a data
// directory's postmaster.pid and its System V segment. Shared by Cluster's files (cluster.cc starts
// a server; cluster_control.cc stops, kills, pauses and finds one); not part of cogs/pg's surface.
//
// Any thread; nothing here keeps state. The functions that wait poll, and are bounded by the
// deadlines their comments give.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "cogs/base/time.h"

namespace cogs::pg::internal {

// How often a wait for a server (to answer, to exit, to let go of its memory) looks again.
inline constexpr Duration kPollInterval = std::chrono::milliseconds(20);
// How long Pause and Kill wait for a SIGSTOPped process to show as stopped.
inline constexpr Duration kStopSettle = std::chrono::seconds(2);

// Whether `pid` names a live process. A zombie is not one: it holds no memory any more, and whoever
// should reap it (init, in a container perhaps never) is none of our business.
bool Alive(pid_t pid);

// Every process descended from `root` (not root itself), parents before their children. PostgreSQL's
// backends each sit in a session of their own, so this, not the process group, is "the server".
std::vector<pid_t> Descendants(pid_t root);

// Waits until `pid` is stopped (or gone), up to `deadline`.
void WaitStopped(pid_t pid, SteadyTime deadline);

// SIGKILLs `pid` and its descendants and waits (up to kStopSettle after the kill) until they are
// gone. Frozen first, so that it forks nothing between the look at its children and its death (an
// orphan would hold the shared memory and delay the next start). Does not reap `pid`.
void KillTree(pid_t pid);

// What a server's postmaster.pid says: its pid (line 1), port (4), first socket directory (5) and
// System V segment (7, "key id").
struct PidFile {
    pid_t pid = -1;
    int port = 0;
    std::string socket_dir;
    key_t shm_key = -1;
    int shm_id = -1;
};

// nullopt when the directory has no (readable) postmaster.pid.
std::optional<PidFile> ReadPidFile(const std::string& data_dir);

// How many processes are attached to the segment of `f`; 0 once it is gone (or is another one).
int Attached(const PidFile& f);

// Whether the server of `f` runs in `data_dir`: its postmaster is alive and works there (a postmaster
// chdirs to its data directory). After a crash the pid in postmaster.pid may have been given to an
// unrelated process, which must not be mistaken for the server, let alone signalled. When the working
// directory cannot be read (another user's process), the pid is trusted, as PostgreSQL itself does.
bool ServerRuns(const PidFile& f, const std::string& data_dir);

// Removes the System V segment a crashed server (whose postmaster is gone) left behind. The next
// start would remove it, but there may be none (the end of every chaos test), and the kernel allows
// only shmmni (4096) segments in all. IPC_RMID on a segment that dying processes still hold frees it
// once they let go.
void RemoveSegmentOfDeadServer(const std::string& data_dir);

}  // namespace cogs::pg::internal
