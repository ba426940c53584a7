// Hosts, as the API shows and changes them (admin only, but what a host token may do for its own
// host: register and heartbeat, core/access.h HostMay): an agent registers its host (PUT
// /v1/hosts/{name}: URL, capacity, zone, traits — which also renews its lease) and renews the lease
// with every heartbeat (POST .../heartbeat, carrying its instance reports); an operator lists,
// enables, disables and drains hosts. Leases themselves live in health/host_monitor.h, moving
// servers off a host in heal/healer.h.
//
// A heartbeat's body carries the agent's instance counts by state and the instance reports it has
// not had acknowledged (crashed, restarted, gave_up: server events; gave_up puts the server in
// ERROR); its answer, once the reports' events are durable, gives the lease TTL and the highest
// report seq taken. FENCED instances on a host that is up make the reconcilers look at it now.
//
// Enrollment (POST /v1/hosts/{name}/enroll, admin; docs/api.md "Hosts and their credentials"):
// makes the host's credentials — a host token (role host, bound to the name; its record is a token
// of the enrolling admin's project, listed and revocable under /v1/tokens like any token) and the
// agent token cogsd will present to that host's agent (core/credentials.h) — and revokes the host
// tokens enrolled before. The host need not be registered yet. 201 {"enrollment": {"host",
// "token_id", "host_token", "agent_token", "revoked_token_ids", "enrolled_at"}}; the secrets are in
// this answer only (an Idempotency-Key's replay answers the same without them). 422
// failed_precondition when cogsd has no agent key.
#pragma once

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

namespace health {
class HostMonitor;
}
namespace heal {
class Healer;
}
namespace reconcile {
class ReconcileLoop;
}

class Catalog;

class Hosts {
public:
    Hosts(Context& ctx, Catalog& catalog, health::HostMonitor& monitor, heal::Healer& healer,
          reconcile::ReconcileLoop& reconcile);

    void List(Call call);
    void Show(Call call);
    void Register(Call call);
    // POST /v1/hosts/{name}/heartbeat: one host's renewal (above). 200 {"lease_ttl_ms",
    // "renew_interval_ms", "lease_epoch", "acked_seq"}.
    void Heartbeat(Call call);
    // POST /v1/heartbeats {"hosts": [{"name", "token"?, "instances"?, "reports"?}, ...]}: many hosts'
    // renewals in one request (an agent serving many hosts; docs/api.md "Hosts"), at most
    // kMaxBatchRenewals. Each entry is one heartbeat's body plus its host's name and, optionally,
    // its host's own token (else the request's token must be allowed to renew that host). A
    // malformed batch is 400 naming the entry, nothing renewed; otherwise 200 {"lease_ttl_ms",
    // "renew_interval_ms", "hosts": [{"name", "lease_epoch", "acked_seq", "lease_ttl_ms"} or {"name",
    // "error": {"code", "message", "status"}}]} in the request's order, once the reports are durable:
    // one entry's refusal (an unknown host 404, another host's token 403, a bad token 401) does not
    // stop the others.
    void Heartbeats(Call call);
    static constexpr size_t kMaxBatchRenewals = 1000;
    // POST /v1/hosts/{name}/enroll (see above).
    void Enroll(Call call);
    // POST /v1/hosts/{name}/enable and /disable {"reason"?}.
    void Enable(Call call, bool enable);
    // POST /v1/hosts/{name}/drain {"reason"?}: disabled, draining until no server is left.
    void Drain(Call call);
    // DELETE /v1/hosts/{name}: a host taken out of the cloud for good. 409 while a server is on it
    // or a claim names it (a build or a move in flight): drain it first. Its record, lease and place
    // in placement go, and so do its host tokens (revoked: its agent can no longer register or
    // renew it, until an operator enrolls the name again); a "deleted" event. 204.
    void Delete(Call call);

    // The placement view of a host record.
    static scheduler::HostInfo InfoOf(const Res& r);

private:
    json::object View(const Res& r) const;
    // The host named by the call (admin only), or the error.
    Result<Res*> Find(const Call& call);
    // Persists a host record and its events and answers it as it is once durable.
    void SaveAndAnswer(const Res& h, const Call& call, std::vector<store::EventRecord> events);
    Result<json::object> Renew(const std::string& name, const Principal& who, const std::string& peer_name,
                               const json::object& in, Duration& ttl,
                               std::vector<store::ResourceWrite>& writes,
                               std::vector<store::EventRecord>& events);
    void InstanceReport(const std::string& host, const json::object& report,
                        std::vector<store::ResourceWrite>& writes, std::vector<store::EventRecord>& events);
    // Revokes every host token of `host` (their records go): their ids.
    std::vector<std::string> RevokeHostTokens(const std::string& host,
                                              std::vector<store::ResourceWrite>& writes);

    Context& ctx_;
    Catalog& catalog_;
    health::HostMonitor& monitor_;
    heal::Healer& healer_;
    reconcile::ReconcileLoop& reconcile_;
    observe::Counter restarts_;
};

}  // namespace cogs::cloud
