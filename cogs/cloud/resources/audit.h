// The audit log (docs/api.md "Audit log"): every change asked of the API — POST, PUT, PATCH and
// DELETE under /v1, refused or not (400, 401, 403, 404, 409, 429, ...) — with who asked (the
// token's id, project and role; "" before authentication), what (method, path, the resource: the
// path's id, or the one a create made), the answer's status, the trace id, the client's address and
// the time. A heartbeat that succeeded is left out (every host sends one a second: the log would be
// nothing else); a refused one is kept. Never a secret: no bodies, a token's id and never a token.
//
// Durability: an entry is queued on the store's group commit (Store::Commit, a group of its own)
// before the answer leaves, and is durable with the next batch, a few ms later; the answer does not
// wait for it (that would add a commit's latency to every change). A crash of cogsd in that window
// may lose the entries of the last answered requests (their changes are durable). While the store
// cannot write (a full disk, an unreachable database) entries are dropped; so are entries beyond
// CloudOptions::audit_max_pending waiting for their commit: cogs_audit_dropped_total{reason}.
//
// Read: GET /v1/audit (admins only; 403 for others), newest first; filters token (id), project (id
// or name), resource (id), since (RFC 3339 or wall ms), before (a seq: the next page), limit
// (1..1000, 100). Answers {"audit": [...], "next_before": seq} (0: no more).
//
// Retention: entries older than audit_retention, then the oldest beyond audit_max, are pruned at
// Start() and every audit_prune_every on the read pool (cogs_pruned_total{what="audit"}).
//
// Threading: the io thread; the store's callbacks only touch an atomic count.
#pragma once

#include <atomic>
#include <memory>
#include <string_view>

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class AuditLog {
public:
    explicit AuditLog(Context& ctx);
    ~AuditLog();

    void Start();  // prunes now, then every audit_prune_every
    void Stop();

    // Whether a request is a change the log records (by its method).
    static bool IsChange(std::string_view method);
    // Appends `entry` (who, method, path, trace id and peer filled by the API) with the answer's
    // status, the resource (the path's id, or the id in a 2xx answer's body: a create) and the time.
    void Record(store::AuditRecord entry, const http::Response& answer);
    // GET /v1/audit.
    void List(Call call);

private:
    void Prune();
    Context& ctx_;
    std::unique_ptr<runtime::Timer> timer_;
    std::shared_ptr<std::atomic<size_t>> pending_ = std::make_shared<std::atomic<size_t>>(0);
    observe::Counter pruned_;
    observe::Counter dropped_unwritable_;
    observe::Counter dropped_pending_;
    observe::Counter dropped_failed_;
};

}  // namespace cogs::cloud
