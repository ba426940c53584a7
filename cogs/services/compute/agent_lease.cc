// HostAgent::Impl (internal/agent_impl.h): the lease each renewal grants, held through no_leader
// answers; fencing when it runs out, the watchdog file.
#include "cogs/services/compute/internal/agent_impl.h"

#include <boost/json/serialize.hpp>
#include <filesystem>

#include "cogs/observe/log.h"
#include "cogs/oci/lease_file.h"
#include "cogs/services/compute/internal/compute_domain.h"

namespace cogs::services::compute {

namespace json = wire::json;

void HostAgent::Impl::Renewed(Host& h, SteadyTime sent, const std::string& body, bool acks) {
    if (options_.link == nullptr) {
        return;
    }
    // cogsd's own answer: read leniently (an older cogsd's 204 has no body).
    const json::object answer = wire::ParseObject(body);
    if (const int64_t ttl = wire::Int(answer, "lease_ttl_ms"); ttl > 0) {
        h.ttl = Millis(ttl);
    }
    if (const int64_t pace = wire::Int(answer, "renew_interval_ms"); pace > 0) {
        h.interval = Millis(pace);
        pace_ = Interval(h);
    }
    // Before it may unfence below: a call sent before this epoch is refused from now on.
    if (const int64_t epoch = wire::Int(answer, "lease_epoch"); epoch > 0) {
        options_.link->SetLeaseEpoch(h.name, epoch);
    }
    if (const int64_t seq = wire::Int(answer, "acked_seq");
        acks && answer.contains("acked_seq") && seq >= 0) {
        options_.link->Acknowledged(h.name, static_cast<uint64_t>(seq));
    }
    h.last_renewal = std::max(h.last_renewal, sent);
    if (!Hold(h, sent)) {
        return;
    }
    Pet(h);  // before the host is unfenced: what boots there from now on finds its lease
    const SteadyTime now = clock_.Now();
    if (h.fenced) {
        h.fenced = false;
        options_.link->SetFenced(h.name, false);
        if (h.ever_leased) {
            ++stats_.unfences;
            AgentLog().info(
                "compute agent: host {} holds a lease again after {} ms fenced: accepting work (its "
                "FENCED instances stay stopped until started or deleted)",
                h.name, std::chrono::duration_cast<Millis>(now - h.fenced_since).count());
        } else {
            AgentLog().debug("compute agent: host {} holds its first lease", h.name);
        }
        h.ever_leased = true;
    }
    ArmLeaseTimer(h);
}

void HostAgent::Impl::Extended(Host& h, SteadyTime sent) {
    if (options_.link == nullptr || h.fenced) {
        return;
    }
    if (sent - h.last_renewal > options_.no_leader_limit) {
        if (!h.no_leader_spent) {
            h.no_leader_spent = true;
            AgentLog().warn(
                "compute agent: host {} has had no renewal from a leader for {} ms: no_leader answers "
                "no longer extend its lease",
                h.name, std::chrono::duration_cast<Millis>(sent - h.last_renewal).count());
        }
        return;
    }
    h.no_leader_spent = false;
    if (Hold(h, sent)) {
        Pet(h);
        ArmLeaseTimer(h);
    }
}

bool HostAgent::Impl::Hold(Host& h, SteadyTime sent) {
    if (sent < h.last_acked_send) {
        return false;  // an older request answered late: the newer answer already set the lease
    }
    h.last_acked_send = sent;
    h.lease_until = sent + h.ttl;  // with T as last answered (it may shorten the lease)
    // Answered too late to hold anything: the lease is over already.
    return clock_.Now() < h.lease_until;
}

void HostAgent::Impl::Pet(Host& h) {
    if (h.lease_file.empty()) {
        return;
    }
    // The kernel's clock first: the end written is never later than the lease's.
    const Duration boot_now = oci::BootTimeNow();
    const Duration left = h.lease_until - clock_.Now();
    if (left <= Duration::zero()) {
        return;
    }
    if (auto written = oci::WriteLeaseFile(h.lease_file, boot_now + left); !written) {
        ++stats_.lease_write_failures;
        if (!h.lease_failing) {
            h.lease_failing = true;
            AgentLog().error(
                "compute agent: host {}: cannot write its lease ({}): its containers will be killed "
                "when the last lease written ends",
                h.name, written.error().message);
        }
        return;
    }
    ++stats_.lease_writes;
    if (h.lease_failing) {
        h.lease_failing = false;
        AgentLog().info("compute agent: host {}: its lease file is written again", h.name);
    }
}

void HostAgent::Impl::LeaseCheck(Host& h) {
    if (h.fenced || clock_.Now() < h.lease_until) {
        return;  // re-armed by a renewal meanwhile
    }
    const observe::LogScope scope(observe::LogContext{"", "", h.name});
    h.fenced = true;
    h.fenced_since = clock_.Now();
    ++stats_.fences;
    const size_t stopped = options_.link->SetFenced(h.name, true);
    AgentLog().warn(
        "compute agent: host {} fenced: no renewal of its lease answered within {} ms; {} instance(s) "
        "stopped (FENCED), create/start/reboot refused until the control plane answers",
        h.name, std::chrono::duration_cast<Millis>(h.ttl).count(), stopped);
}

}  // namespace cogs::services::compute
