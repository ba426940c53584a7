#include "cogs/cloud/resources/audit.h"

#include <boost/json/parse.hpp>
#include <charconv>

#include "cogs/cloud/api/router.h"
#include "cogs/observe/log.h"
#include "cogs/wire/host_routes.h"

namespace cogs::cloud {
namespace {

// The id a create's answer carries: {"<kind>": {"id": ...}}.
std::string CreatedIdOf(const std::string& body) {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) return "";
    for (const auto& [key, inner] : v.get_object()) {
        if (inner.is_object()) return Str(inner.get_object(), "id");
    }
    return "";
}

}  // namespace

AuditLog::AuditLog(Context& ctx)
    : ctx_(ctx),
      timer_(ctx.clock.NewTimer(ctx.io)),
      pruned_(observe::CounterOf(ctx.metrics(), "cogs_pruned_total", "Records deleted by retention, by what.")
                  .With({{"what", "audit"}})) {
    auto dropped =
        observe::CounterOf(ctx.metrics(), "cogs_audit_dropped_total",
                           "Audit entries not written, by reason: unwritable (the store cannot "
                           "write), pending (too many wait for their commit), failed (the commit).");
    dropped_unwritable_ = dropped.With({{"reason", "unwritable"}});
    dropped_pending_ = dropped.With({{"reason", "pending"}});
    dropped_failed_ = dropped.With({{"reason", "failed"}});
}

AuditLog::~AuditLog() { Stop(); }

void AuditLog::Start() { Prune(); }

void AuditLog::Stop() { timer_->Cancel(); }

bool AuditLog::IsChange(std::string_view method) {
    return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

void AuditLog::Record(store::AuditRecord entry, const http::Response& answer) {
    entry.status = answer.status;
    if (entry.status < 400 && wire::IsLeaseRenewal(entry.method, entry.path)) {
        return;  // a renewal, once a second per host: not a change anyone asked for
    }
    if (entry.resource_id.empty()) {
        const auto segments = PathSegments(entry.path);
        if (segments.size() >= 3) {
            entry.resource_id = segments[2];
        } else if (entry.status >= 200 && entry.status < 300) {
            entry.resource_id = CreatedIdOf(answer.body);
        }
    }
    entry.time_ms = ctx_.clock.WallMs();
    if (!ctx_.store.Writable()) {
        dropped_unwritable_.Inc();
        return;
    }
    if (pending_->load() >= ctx_.options.audit_max_pending) {
        dropped_pending_.Inc();
        return;
    }
    ++*pending_;
    store::WriteGroup g;
    g.audit.push_back(std::move(entry));
    ctx_.store.Commit(std::move(g), [pending = pending_, failed = dropped_failed_](Status st) mutable {
        --*pending;
        if (!st) failed.Inc();
    });
}

void AuditLog::Prune() {
    const int64_t older_than =
        ctx_.clock.WallMs() -
        std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.options.audit_retention).count();
    const int64_t keep = ctx_.options.audit_max;
    ctx_.OffThread(
        [this, older_than, keep] { return ctx_.store.PruneAudit(older_than, keep); },
        [this](Result<int64_t> pruned) {
            if (!pruned) {
                observe::Log("cloud").warn("pruning the audit log failed: {}", pruned.error().ToString());
            } else if (*pruned > 0) {
                pruned_.Inc(static_cast<double>(*pruned));
                observe::Log("cloud").info("pruned {} audit entries past their retention", *pruned);
            }
            timer_->ArmAfter(ctx_.options.audit_prune_every, [this] { Prune(); });
        });
}

void AuditLog::List(Call call) {
    if (auto st = RequireAdmin(call.who); !st) return call.Fail(st.error());
    store::AuditFilter f;
    for (const auto& [k, v] : call.query) {
        if (k == "token") {
            f.token_id = v;
        } else if (k == "project") {
            const Res* p = ctx_.model.Find(kProject, v);
            if (p == nullptr) p = ctx_.model.FindByName(kProject, v);
            f.project = p != nullptr ? p->id : v;  // a deleted project's id still finds its entries
        } else if (k == "resource") {
            f.resource_id = v;
        } else if (k == "since") {
            int64_t ms = 0;
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), ms);
            if (ec == std::errc() && end == v.data() + v.size() && ms >= 0) {
                f.since_ms = ms;
            } else if (auto t = ParseRfc3339(v)) {
                f.since_ms = *t;
            } else {
                return call.Fail(FieldError("since", "must be an RFC 3339 time or wall ms since the epoch"));
            }
        } else if (k == "before") {
            auto n = IntParam("before", v, 1, INT64_MAX, "must be an audit seq >= 1");
            if (!n) return call.Fail(n.error());
            f.before_seq = *n;
        } else if (k == "limit") {
            auto n = IntParam("limit", v, 1, 1000, "must be an integer from 1 to 1000");
            if (!n) return call.Fail(n.error());
            f.limit = static_cast<int>(*n);
        } else {
            return call.Fail(FieldError(k, "unknown query parameter"));
        }
    }
    ctx_.OffThread(
        [this, f] { return ctx_.store.ListAudit(f); },
        [respond = call.respond, f](Result<std::vector<store::AuditRecord>> entries) {
            if (!entries) return respond(wire::ApiError(entries.error()));
            json::array items;
            for (const auto& a : *entries) {
                items.push_back(json::object{{"seq", a.seq},
                                             {"time_ms", a.time_ms},
                                             {"time", Rfc3339(a.time_ms)},
                                             {"token_id", a.token_id},
                                             {"project", a.project},
                                             {"role", a.role},
                                             {"method", a.method},
                                             {"path", a.path},
                                             {"resource_id", a.resource_id},
                                             {"status", a.status},
                                             {"trace_id", a.trace_id},
                                             {"peer", a.peer}});
            }
            // A full page may have more behind it; a short one is the end.
            const int64_t next =
                static_cast<int>(entries->size()) == std::clamp(f.limit, 1, 1000) ? entries->back().seq : 0;
            respond(wire::Json(200, json::object{{"audit", std::move(items)}, {"next_before", next}}));
        });
}

}  // namespace cogs::cloud
