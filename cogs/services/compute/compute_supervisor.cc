// The instance supervisor: crashes (the crash route) and the restarts that follow them, with their
// backoff, the give-up after too many crashes in the window, and the reports for the control plane.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/serialize.hpp>

#include "cogs/observe/log.h"
#include "cogs/services/compute/internal/compute_domain.h"
#include "cogs/wire/answer.h"

namespace cogs::services::compute::internal {
namespace {

namespace json = wire::json;

constexpr std::string_view kCrashSuffix = "/crash";
constexpr size_t kMaxReports = 1000;  // kept per host, unacknowledged

}  // namespace

bool ComputeDomainImpl::Post(const http::Request& request, const http::Respond& respond) {
    const std::string path = request.Path();
    if (!test_routes_ || !path.starts_with(kInstancesPrefix) || !path.ends_with(kCrashSuffix) ||
        path.size() <= kInstancesPrefix.size() + kCrashSuffix.size()) {
        return false;
    }
    const size_t id_size = path.size() - kInstancesPrefix.size() - kCrashSuffix.size();
    const std::string id = http::UrlDecode(std::string_view(path).substr(kInstancesPrefix.size(), id_size));
    auto it = instances_.find(id);
    if (it == instances_.end()) {
        respond(wire::ServiceError(Error(ErrorCode::kNotFound, "no instance '" + id + "'")));
        return true;
    }
    Instance& i = it->second;
    const int64_t now = clock_.WallUs();
    if (i.power != Power::kOn) {
        respond(wire::ServiceError(Error(ErrorCode::kConflict, "instance " + id + " is not running (state " +
                                                                   i.State(now) + "): nothing to crash")));
        return true;
    }
    kit::Tx tx;
    Crash(i, now, tx);
    json::object body;
    body["instance"] = Describe(i, now);
    http::Response ok;
    ok.body = json::serialize(body);
    if (context_ == nullptr) {
        respond(std::move(ok));
        return true;
    }
    context_->Write(std::move(tx), [respond, ok = std::move(ok)]() mutable { respond(std::move(ok)); });
    return true;
}

int64_t ComputeDomainImpl::BackoffUs(size_t n) const {
    using std::chrono::microseconds;
    const int64_t cap = std::chrono::duration_cast<microseconds>(supervisor_.max_backoff).count();
    int64_t wait = std::chrono::duration_cast<microseconds>(supervisor_.restart_backoff).count();
    for (size_t k = 1; k < n && wait < cap; ++k) {
        wait *= 2;
    }
    return std::min(wait, cap);
}

void ComputeDomainImpl::Crash(Instance& i, int64_t now, kit::Tx& tx) {
    const observe::LogScope scope(observe::LogContext{"", "", i.spec.id});
    const int64_t since = now - WindowUs();
    std::erase_if(i.crashes, [&](int64_t at) { return at < since; });
    i.crashes.push_back(now);
    const size_t n = i.crashes.size();
    const std::string window = std::to_string(WindowUs() / 1'000'000) + " s";
    i.rebooting = false;
    if (static_cast<int64_t>(n) >= supervisor_.restart_max) {
        i.power = Power::kError;
        i.restart_at_us = 0;
        ++counts_.gave_up;
        AddReport(i, "crashed", "instance crashed (" + std::to_string(n) + " in " + window + ")", now);
        AddReport(i, "gave_up",
                  "instance crashed " + std::to_string(n) + " times in " + window + ": not restarted again",
                  now);
        observe::Log("compute").warn("instance {} on host {} crashed {} times in {}: ERROR, not restarted",
                                     i.spec.id, i.spec.host, n, window);
        Settle(i, now, "it crashed " + std::to_string(n) + " times in " + window);
    } else {
        const int64_t wait = BackoffUs(n);
        i.power = Power::kCrashed;
        i.restart_at_us = now + wait;
        AddReport(i, "crashed",
                  "instance crashed (" + std::to_string(n) + " in " + window + "): restart in " +
                      std::to_string(wait / 1000) + " ms",
                  now);
        observe::Log("compute").info("instance {} on host {} crashed ({} in {}): restart in {} ms", i.spec.id,
                                     i.spec.host, n, window, wait / 1000);
        due_.emplace(i.restart_at_us, i.spec.id);
        ArmRestartTimer();
    }
    tx.Put(kTable, i.spec.id, Record(i));
}

void ComputeDomainImpl::ArmRestartTimer() {
    if (restart_timer_ == nullptr || due_.empty()) {
        return;
    }
    const int64_t at = due_.begin()->first;
    if (armed_for_.has_value() && *armed_for_ <= at) {
        return;
    }
    armed_for_ = at;
    // The timer is the domain's: destroyed with it, its callback never runs afterwards.
    restart_timer_->ArmAfter(std::chrono::microseconds(std::max<int64_t>(0, at - clock_.WallUs())), [this] {
        armed_for_.reset();
        RestartDue();
    });
}

void ComputeDomainImpl::RestartDue() {
    const int64_t now = clock_.WallUs();
    kit::Tx tx;
    while (!due_.empty() && due_.begin()->first <= now) {
        const auto [at, id] = *due_.begin();
        due_.erase(due_.begin());
        auto it = instances_.find(id);
        // Started, stopped, fenced, deleted or crashed again since: that restart is not due.
        if (it == instances_.end() || it->second.power != Power::kCrashed || it->second.restart_at_us != at ||
            fenced_.contains(it->second.spec.host)) {
            continue;
        }
        Restart(it->second, now, tx);
    }
    if (context_ != nullptr && !tx.writes().empty()) {
        context_->Write(std::move(tx));
    }
    ArmRestartTimer();
}

void ComputeDomainImpl::Restart(Instance& i, int64_t now, kit::Tx& tx) {
    const observe::LogScope scope(observe::LogContext{"", "", i.spec.id});
    auto ready = Boot(i, now);
    if (!ready) {
        const int64_t wait = BackoffUs(i.crashes.size());
        observe::Log("compute").warn("restarting instance {} failed: {} (again in {} ms)", i.spec.id,
                                     ready.error().ToString(), wait / 1000);
        i.restart_at_us = now + wait;
        due_.emplace(i.restart_at_us, i.spec.id);
    } else {
        i.power = Power::kOn;
        i.rebooting = false;
        i.ready_at_us = *ready;
        i.restart_at_us = 0;
        ++counts_.restarted;
        AddReport(i, "restarted", "instance restarted after crash " + std::to_string(i.crashes.size()), now);
        observe::Log("compute").info("instance {} on host {} restarted", i.spec.id, i.spec.host);
    }
    tx.Put(kTable, i.spec.id, Record(i));
}

Instance* ComputeDomainImpl::Reported(const std::string& id) {
    auto it = instances_.find(id);
    // Stopped, fenced, in ERROR or deleted since the driver was asked: a late report.
    return it == instances_.end() || it->second.power != Power::kOn ? nullptr : &it->second;
}

void ComputeDomainImpl::Settle(const Instance& i, int64_t now, std::string_view why) {
    if (context_ == nullptr || i.power == Power::kCrashed || (i.power == Power::kOn && i.ready_at_us > now)) {
        return;
    }
    if (i.power == Power::kError) {
        context_->Finish(WaitName(i.spec.id),
                         MakeError(ErrorCode::kFailedPrecondition,
                                   "instance " + i.spec.id + " is in ERROR: " + std::string(why)));
    } else {
        context_->Finish(WaitName(i.spec.id), Answer(i, now).output);
    }
}

void ComputeDomainImpl::Commit(kit::Tx tx) {
    if (context_ != nullptr && !tx.writes().empty()) {
        context_->Write(std::move(tx));
    }
}

void ComputeDomainImpl::Running(const std::string& id) {
    Instance* i = Reported(id);
    if (i == nullptr) {
        return;
    }
    const observe::LogScope scope(observe::LogContext{"", "", id});
    const int64_t now = clock_.WallUs();
    if (i->ready_at_us != kReportedUs) {
        observe::Log("compute").info("instance {} on host {} still runs: adopted", id, i->spec.host);
        return;
    }
    i->ready_at_us = now;
    kit::Tx tx;
    tx.Put(kTable, id, Record(*i));
    Commit(std::move(tx));
    Settle(*i, now);
}

void ComputeDomainImpl::BootFailed(const std::string& id, Error error) {
    Instance* i = Reported(id);
    if (i == nullptr) {
        return;
    }
    const observe::LogScope scope(observe::LogContext{"", "", id});
    const int64_t now = clock_.WallUs();
    kit::Tx tx;
    if (error.retryable) {
        observe::Log("compute").warn("instance {} on host {} failed to boot: {}", id, i->spec.host,
                                     error.ToString());
        Crash(*i, now, tx);
    } else {
        i->power = Power::kError;
        i->rebooting = false;
        i->restart_at_us = 0;
        AddReport(*i, "gave_up", "instance could not boot: " + error.message, now);
        observe::Log("compute").warn("instance {} on host {} cannot boot: {}: ERROR", id, i->spec.host,
                                     error.ToString());
        tx.Put(kTable, id, Record(*i));
        Settle(*i, now, "it could not boot: " + error.message);
    }
    Commit(std::move(tx));
}

void ComputeDomainImpl::Exited(const std::string& id, std::string why) {
    Instance* i = Reported(id);
    if (i == nullptr) {
        return;
    }
    const observe::LogScope scope(observe::LogContext{"", "", id});
    const int64_t now = clock_.WallUs();
    kit::Tx tx;
    observe::Log("compute").info("instance {} on host {} ended: {}", id, i->spec.host, why);
    if (fenced_.contains(i->spec.host)) {
        // No lease: nothing restarts here; the control plane decides (as fencing does).
        i->power = Power::kFenced;
        i->rebooting = false;
        i->restart_at_us = 0;
        tx.Put(kTable, id, Record(*i));
        Settle(*i, now);
    } else {
        Crash(*i, now, tx);
    }
    Commit(std::move(tx));
}

void ComputeDomainImpl::Gone(const std::string& id) {
    Instance* i = Reported(id);
    if (i == nullptr) {
        return;
    }
    const int64_t now = clock_.WallUs();
    observe::Log("compute").info(
        "instance {} on host {}: nothing of it is left (the machine restarted): FENCED", id, i->spec.host);
    i->power = Power::kFenced;
    i->rebooting = false;
    i->restart_at_us = 0;
    kit::Tx tx;
    tx.Put(kTable, id, Record(*i));
    Commit(std::move(tx));
    Settle(*i, now);
}

void ComputeDomainImpl::AddReport(const Instance& i, std::string_view type, std::string message,
                                  int64_t now) {
    // Above the wall clock in µs: a restarted process goes on above what the last one sent.
    last_seq_ = std::max<uint64_t>(last_seq_ + 1, static_cast<uint64_t>(std::max<int64_t>(now, 0)));
    std::deque<Report>& q = reports_[i.spec.host];
    q.push_back(Report{last_seq_, i.spec.id, type, std::move(message), now / 1000});
    if (q.size() > kMaxReports) {
        q.pop_front();
    }
}

}  // namespace cogs::services::compute::internal
