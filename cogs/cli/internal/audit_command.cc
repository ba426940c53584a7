#include "cogs/cli/internal/audit_command.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/json.hpp>
#include <memory>
#include <string>

#include "cogs/base/time.h"
#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/invocation.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"

namespace cogs::cli {
namespace {

struct AuditOptions {
    std::string token, project, resource, since;
    int limit = 100;
};

int RunAudit(Invocation& inv, const AuditOptions& o) {
    if (o.limit < 1) {
        return inv.Usage("--limit must be at least 1");
    }
    std::string query;
    auto add = [&query](const std::string& k, const std::string& v) {
        if (!v.empty()) query += fmt::format("{}={}&", k, http::UrlEncode(v));
    };
    add("token", o.token);
    add("project", o.project);
    add("resource", o.resource);
    if (!o.since.empty()) {
        if (auto back = ParseDuration(o.since)) {
            add("since",
                std::to_string(WallNowMs() -
                               std::chrono::duration_cast<std::chrono::milliseconds>(*back).count()));
        } else if (ParseRfc3339(o.since)) {
            add("since", o.since);
        } else {
            return inv.Usage(
                fmt::format("--since: '{}' is neither a duration (30m, 2h) nor an RFC 3339 time", o.since));
        }
    }
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    json::array entries;
    int64_t before = 0;
    while (static_cast<int>(entries.size()) < o.limit) {
        const int page = std::min(1000, o.limit - static_cast<int>(entries.size()));
        auto reply = api->Get(fmt::format("/v1/audit?{}{}limit={}", query,
                                          before > 0 ? fmt::format("before={}&", before) : "", page));
        if (!reply) {
            return inv.Fail(reply.error());
        }
        const json::value* items = reply->is_object() ? reply->as_object().if_contains("audit") : nullptr;
        if (items == nullptr || !items->is_array()) {
            return inv.Fail(ApiFailure{200, "internal", "an audit answer without \"audit\"", {}});
        }
        for (const auto& e : items->as_array()) {
            entries.push_back(e);
        }
        const json::value* next = reply->as_object().if_contains("next_before");
        const int64_t n = next != nullptr && next->is_int64() ? next->as_int64() : 0;
        if (n <= 0 || (before > 0 && n >= before) || items->as_array().empty()) {
            break;
        }
        before = n;
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(json::object{{"audit", std::move(entries)}});
        return 0;
    }
    Table t({"TIME", "STATUS", "METHOD", "PATH", "RESOURCE", "TOKEN", "ROLE", "PROJECT", "PEER", "TRACE"});
    for (const auto& e : entries) {
        if (!e.is_object()) continue;
        const json::object& a = e.as_object();
        t.AddRow({Cell(a, "time"), Cell(a, "status"), Cell(a, "method"), Cell(a, "path"),
                  Cell(a, "resource_id"), Cell(a, "token_id"), Cell(a, "role"), Cell(a, "project"),
                  Cell(a, "peer"), Cell(a, "trace_id")});
    }
    inv.out() << t.Render();
    return 0;
}

}  // namespace

void AddAuditCommand(Invocation& inv, CLI::App& app) {
    auto o = std::make_shared<AuditOptions>();
    CLI::App* c =
        inv.Leaf(&app, "audit", "the audit log: every change asked of the API, newest first (admin)",
                 [&inv, o] { return RunAudit(inv, *o); });
    c->add_option("--token", o->token, "only the requests of this token (its id)");
    c->add_option("--project", o->project, "only the requests of tokens of this project (name or id)");
    c->add_option("--resource", o->resource, "only the requests on this resource (its id; a host's name)");
    c->add_option("--since", o->since,
                  "only entries since: a duration back from now (30m, 2h) or an RFC 3339 time");
    c->add_option("--limit", o->limit, "at most this many (default 100)");
}

}  // namespace cogs::cli
