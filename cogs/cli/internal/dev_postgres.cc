// `cogs dev --store postgres`: the private PostgreSQL cluster in D/postgres, started before the
// replicas, restarted by the supervision loop if it dies, stopped after every replica.
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "cogs/cli/internal/dev_supervisor.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/runtime/files.h"

namespace cogs::cli::devsup {

bool Dev::StartPostgres() {
    pg::ClusterOptions co;
    co.dir = D("postgres");
    co.fsync = o_.postgres_fsync;
    co.log_path = D("logs/postgres.log");
    err_ << fmt::format("cogs dev: starting PostgreSQL in {}\n", co.dir);
    auto cluster = pg::Cluster::Start(co, std::chrono::seconds(o_.start_timeout_s));
    if (!cluster) {
        err_ << fmt::format("cogs dev: PostgreSQL did not start: {}\n", cluster.error().message);
        return false;
    }
    pg_ = std::move(*cluster);
    err_ << fmt::format("cogs dev: PostgreSQL listening on 127.0.0.1:{} (pid {}, log {})\n", pg_->port(),
                        pg_->pid(), pg_->log_path());
    if (auto s = runtime::WriteFileAtomic(D("run/postgres.port"), fmt::format("{}\n", pg_->port())); !s) {
        err_ << fmt::format("cogs dev: {}\n", s.error().message);
    }
    return true;
}

bool Dev::SupervisePostgres() {
    if (pg_ == nullptr || pg_->Running()) {
        return false;
    }
    if (!pg_restart_at_) {
        err_ << fmt::format("cogs dev: PostgreSQL exited; restarting it in {}\n",
                            FormatDurationMs(std::chrono::duration_cast<Millis>(pg_backoff_).count()));
        err_ << fmt::format("---- last lines of {} ----\n{}----\n", pg_->log_path(),
                            runtime::TailFile(pg_->log_path(), 10));
        pg_restart_at_ = SteadyClock::now() + pg_backoff_;
        pg_backoff_ = std::min(pg_backoff_ * 2, kMaxBackoff);
        return false;
    }
    if (SteadyClock::now() < *pg_restart_at_) {
        return false;
    }
    // Same port and directory: the replicas' connection strings stay valid.
    if (auto s = pg_->Restart(std::chrono::seconds(o_.start_timeout_s)); !s) {
        err_ << fmt::format("cogs dev: PostgreSQL did not restart: {}\n", s.error().message);
        pg_restart_at_ = SteadyClock::now() + pg_backoff_;
        pg_backoff_ = std::min(pg_backoff_ * 2, kMaxBackoff);
        return false;
    }
    err_ << fmt::format("cogs dev: restarted PostgreSQL (pid {})\n", pg_->pid());
    pg_restart_at_.reset();
    pg_backoff_ = kFirstBackoff;
    return true;
}

void Dev::StopPostgres() {
    if (pg_ == nullptr) {
        return;
    }
    const Status st = pg_->Stop(kPgStopGrace);
    err_ << fmt::format("cogs dev: stopped PostgreSQL{}\n", st ? "" : " (" + st.error().message + ")");
    pg_.reset();
}

}  // namespace cogs::cli::devsup
