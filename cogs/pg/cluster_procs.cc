// The private cluster's processes, as /proc and postmaster.pid show them (internal/cluster_procs.h).
#include "cogs/pg/internal/cluster_procs.h"

#include <dirent.h>
#include <signal.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cogs/runtime/files.h"

namespace cogs::pg::internal {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The process state letter from /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), '\0' if it is gone.
char ProcState(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line)) {
        return '\0';
    }
    // "pid (comm) S ppid ...": comm may hold anything, ')' too, so the state follows the last ')'.
    const auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() ? '\0' : line[close + 2];
}

}  // namespace

bool Alive(pid_t pid) {
    if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) {
        return false;
    }
    const char state = ProcState(pid);
    return state != '\0' && state != 'Z' && state != 'X';
}

std::vector<pid_t> Descendants(pid_t root) {
    std::multimap<pid_t, pid_t> children;  // ppid -> pid
    if (DIR* proc = ::opendir("/proc")) {
        while (const dirent* e = ::readdir(proc)) {
            char* end = nullptr;
            const long pid = std::strtol(e->d_name, &end, 10);
            if (pid <= 0 || *end != '\0') {
                continue;
            }
            std::ifstream in(fmt::format("/proc/{}/stat", pid));
            std::string line;
            if (!std::getline(in, line)) {
                continue;  // exited meanwhile
            }
            const auto close = line.rfind(')');
            if (close == std::string::npos) {
                continue;
            }
            std::istringstream rest(line.substr(close + 1));
            char state = 0;
            long ppid = 0;
            if (rest >> state >> ppid) {
                children.emplace(static_cast<pid_t>(ppid), static_cast<pid_t>(pid));
            }
        }
        ::closedir(proc);
    }
    std::vector<pid_t> out;
    std::vector<pid_t> todo{root};
    while (!todo.empty()) {
        const pid_t parent = todo.back();
        todo.pop_back();
        auto [first, last] = children.equal_range(parent);
        for (auto it = first; it != last; ++it) {
            out.push_back(it->second);
            todo.push_back(it->second);
        }
    }
    return out;
}

void WaitStopped(pid_t pid, SteadyTime deadline) {
    for (;;) {
        const char state = ProcState(pid);
        if (state == 'T' || state == 't' || state == '\0' || state == 'Z' || SteadyClock::now() >= deadline) {
            return;
        }
        std::this_thread::sleep_for(1ms);
    }
}

std::optional<PidFile> ReadPidFile(const std::string& data_dir) {
    auto text = runtime::ReadFile(data_dir + "/postmaster.pid");
    if (!text) {
        return std::nullopt;
    }
    std::istringstream in(*text);
    std::string line;
    PidFile f;
    for (int n = 1; std::getline(in, line); ++n) {
        std::istringstream fields(line);
        if (n == 1) {
            fields >> f.pid;
        } else if (n == 4) {
            fields >> f.port;
        } else if (n == 5) {
            f.socket_dir = line;
        } else if (n == 7) {
            long key = -1;
            if (fields >> key >> f.shm_id) {
                f.shm_key = static_cast<key_t>(key);
            }
        }
    }
    return f;
}

int Attached(const PidFile& f) {
    shmid_ds ds{};
    if (f.shm_id < 0 || ::shmctl(f.shm_id, IPC_STAT, &ds) != 0 || ds.shm_perm.__key != f.shm_key) {
        return 0;
    }
    return static_cast<int>(ds.shm_nattch);
}

bool ServerRuns(const PidFile& f, const std::string& data_dir) {
    if (!Alive(f.pid)) {
        return false;
    }
    std::error_code ec;
    const fs::path cwd = fs::read_symlink(fmt::format("/proc/{}/cwd", f.pid), ec);
    if (ec) {
        return ec != std::errc::no_such_file_or_directory;  // ENOENT: it exited meanwhile
    }
    const fs::path data = fs::weakly_canonical(data_dir, ec);
    return ec || cwd == data;
}

void RemoveSegmentOfDeadServer(const std::string& data_dir) {
    if (auto f = ReadPidFile(data_dir); f && f->shm_id >= 0 && !Alive(f->pid)) {
        shmid_ds ds{};
        if (::shmctl(f->shm_id, IPC_STAT, &ds) == 0 && ds.shm_perm.__key == f->shm_key) {
            ::shmctl(f->shm_id, IPC_RMID, nullptr);
        }
    }
}

void KillTree(pid_t pid) {
    ::kill(pid, SIGSTOP);
    WaitStopped(pid, SteadyClock::now() + kStopSettle);
    std::vector<pid_t> procs = Descendants(pid);
    ::kill(pid, SIGKILL);
    for (pid_t p : procs) {
        ::kill(p, SIGKILL);
    }
    procs.push_back(pid);
    const SteadyTime deadline = SteadyClock::now() + kStopSettle;
    for (pid_t p : procs) {
        while (Alive(p) && SteadyClock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
    }
}

}  // namespace cogs::pg::internal
