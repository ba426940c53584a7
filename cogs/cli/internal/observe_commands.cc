#include "cogs/cli/internal/observe_commands.h"
#include "cogs/base/time.h"

#include <memory>
#include <thread>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "cogs/cli/internal/invocation.h"
#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/prom_text.h"
#include "cogs/cli/internal/top.h"
#include "cogs/http/server.h"

namespace cogs::cli {
namespace {

// ---- top ----------------------------------------------------------------------------------------

// One scrape of /metrics and when it was answered.
struct Scrape {
    prom::Exposition metrics;
    SteadyTime at;
};

int RunTop(Invocation& inv, const std::string& interval, bool once) {
    const auto every = ParseDuration(interval);
    if (!every) {
        return inv.Usage(fmt::format("--interval: '{}' is not a duration (e.g. 2, 500ms)", interval));
    }
    if (inv.Json() && !once) {
        return inv.Usage("-o json prints one set of figures: add --once");
    }
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    std::ostream& out = inv.out();
    auto scrape = [&]() -> ApiResult<Scrape> {
        auto text = api->GetText("/metrics");
        if (!text) {
            return tl::unexpected(text.error());
        }
        auto parsed = prom::ParseText(*text);
        if (!parsed) {
            return tl::unexpected(ApiFailure{
                200,
                "internal",
                fmt::format("{}/metrics is not Prometheus text: {}", api->endpoint().url, parsed.error()),
                {}});
        }
        return Scrape{std::move(*parsed), SteadyClock::now()};
    };
    const auto every_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*every).count();
    const std::string every_text =
        every_ms % 1000 == 0 ? fmt::format("{}s", every_ms / 1000) : FormatDurationMs(every_ms);
    std::optional<Scrape> before;
    for (;;) {
        if (!before) {
            auto first = scrape();
            if (!first) {
                if (once) {
                    return inv.Fail(first.error());
                }
                out << "\x1b[2J\x1b[H"
                    << fmt::format("cogs top  {}  cannot scrape: {} ({}); retrying every {}\n",
                                   api->endpoint().url, first.error().message, first.error().code,
                                   every_text);
                out.flush();
            } else {
                before = std::move(*first);
            }
        }
        std::this_thread::sleep_for(*every);
        if (!before) {
            if (inv.Stopped()) {
                return 0;
            }
            continue;
        }
        auto after = scrape();
        if (!after) {
            if (once) {
                return inv.Fail(after.error());
            }
            before.reset();
            continue;  // the next round reports it
        }
        const double seconds = std::chrono::duration<double>(after->at - before->at).count();
        top::Figures f = top::Compute(before->metrics, after->metrics, seconds);
        if (auto hosts = api->List("/v1/hosts"); hosts) {
            for (const auto& h : *hosts) {
                if (h.is_object()) {
                    const auto& o = h.as_object();
                    f.hosts.push_back({Cell(o, "name"), Cell(o, "state"), Cell(o, "enabled") != "false"});
                }
            }
        } else {
            f.hosts_note = fmt::format("no host list: {} ({})", hosts.error().message, hosts.error().code);
        }
        if (inv.Json()) {
            out << PrettyJson(top::ToJson(f));
            return 0;
        }
        const std::string title = fmt::format("cogs top  {}  {}  every {}", api->endpoint().url,
                                              Rfc3339(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          std::chrono::system_clock::now().time_since_epoch())
                                                          .count()),
                                              every_text);
        out << (once ? "" : "\x1b[2J\x1b[H") << top::RenderFrame(f, title);
        out.flush();
        if (once || inv.Stopped()) {
            return 0;
        }
        before = std::move(*after);
    }
}

// ---- events -------------------------------------------------------------------------------------

// Fixed widths for event rows, so that rows printed by later polls of --follow line up.
std::string EventRow(const std::vector<std::pair<std::string, size_t>>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
        line += cells[i].first;
        if (i + 1 < cells.size()) {
            line.append(cells[i].second > cells[i].first.size() ? cells[i].second - cells[i].first.size() : 0,
                        ' ');
            line += "  ";
        }
    }
    while (!line.empty() && line.back() == ' ') {
        line.pop_back();
    }
    return line + "\n";
}

std::string EventLine(const json::object& e, bool scoped) {
    const auto ms = Field(e, "time_ms");
    const std::string time = ms && ms->is_int64() ? Rfc3339(ms->as_int64()) : Cell(e, "time_ms");
    if (scoped) {
        return EventRow(
            {{time, 24}, {Cell(e, "type"), 20}, {Cell(e, "trace_id"), 32}, {Cell(e, "message"), 0}});
    }
    return EventRow({{time, 24},
                     {Cell(e, "resource_kind"), 7},
                     {Cell(e, "resource_id"), 36},
                     {Cell(e, "type"), 20},
                     {Cell(e, "trace_id"), 32},
                     {Cell(e, "message"), 0}});
}

std::string EventHeader(bool scoped) {
    if (scoped) {
        return EventRow({{"TIME", 24}, {"TYPE", 20}, {"TRACE", 32}, {"MESSAGE", 0}});
    }
    return EventRow(
        {{"TIME", 24}, {"KIND", 7}, {"RESOURCE", 36}, {"TYPE", 20}, {"TRACE", 32}, {"MESSAGE", 0}});
}

int64_t SeqOf(const json::value& v) {
    const json::value* seq = v.is_object() ? v.as_object().if_contains("seq") : nullptr;
    return seq && seq->is_int64() ? seq->as_int64() : 0;
}

// ---- log levels ---------------------------------------------------------------------------------

// GET /v1/log-levels, or with a component PUT {component: level}; prints the map answered.
int RunLogLevels(Invocation& inv, const std::string& component, const std::string& level) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    ApiResult<json::value> reply;
    if (component.empty()) {
        reply = api->Get("/v1/log-levels");
    } else {
        const json::value body = json::object{{component, level}};
        reply = api->Call("PUT", "/v1/log-levels", &body);
    }
    if (!reply) {
        return inv.Fail(reply.error());
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(*reply);
        return 0;
    }
    Table t({"COMPONENT", "LEVEL"});
    if (reply->is_object()) {
        for (const auto& [name, l] : reply->as_object()) {
            t.AddRow({std::string(name), Cell(&l)});
        }
    }
    inv.out() << t.Render();
    return 0;
}

}  // namespace

void AddEventsOptions(CLI::App* c, EventsOptions& options) {
    c->add_option("--limit", options.limit, "at most this many, oldest first (not with --follow)");
    c->add_flag("--follow", options.follow, "keep printing new events as they come (Ctrl-C stops)");
    c->add_option("--interval", options.interval, "how often --follow asks (default 1s)");
}

int RunEvents(Invocation& inv, const std::string& path,
              const std::vector<std::pair<std::string, std::string>>& filters, const EventsOptions& options,
              bool scoped) {
    const auto every = ParseDuration(options.interval);
    if (!every) {
        return inv.Usage(fmt::format("--interval: '{}' is not a duration (e.g. 1, 500ms)", options.interval));
    }
    const int limit = options.limit;
    if (options.follow && limit > 0) {
        return inv.Usage(
            "--limit and --follow do not go together: --follow prints the whole history, then what comes");
    }
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    std::string query;
    for (const auto& [k, v] : filters) {
        if (!v.empty()) {
            query += fmt::format("{}={}&", k, http::UrlEncode(v));
        }
    }
    int64_t after = 0;
    int printed = 0;
    // Reads every event after `after` (up to the limit, when not following), oldest first.
    auto fetch = [&](json::array& into) -> ApiResult<bool> {
        for (;;) {
            int page = 1000;
            if (limit > 0) {
                page = std::min(page, limit - printed - static_cast<int>(into.size()));
                if (page <= 0) {
                    return true;
                }
            }
            auto reply = api->Get(fmt::format("{}?{}after={}&limit={}", path, query, after, page));
            if (!reply) {
                return tl::unexpected(reply.error());
            }
            const json::value* events =
                reply->is_object() ? reply->as_object().if_contains("events") : nullptr;
            if (!events || !events->is_array()) {
                return tl::unexpected(ApiFailure{200, "internal", "an events answer without \"events\"", {}});
            }
            if (events->as_array().empty()) {
                return true;
            }
            int64_t next = after;
            for (const auto& e : events->as_array()) {
                next = std::max(next, SeqOf(e));
                into.push_back(e);
            }
            const json::value* na = reply->as_object().if_contains("next_after");
            if (na && na->is_int64()) {
                next = std::max(next, na->as_int64());
            }
            if (next <= after) {
                return true;  // no progress: do not ask again for the same page
            }
            after = next;
        }
    };
    json::array first;
    if (auto r = fetch(first); !r) {
        return inv.Fail(r.error());
    }
    std::ostream& out = inv.out();
    if (inv.Json() && !options.follow) {
        out << PrettyJson(json::object{{"events", std::move(first)}});
        return 0;
    }
    auto print = [&](const json::array& events) {
        for (const auto& e : events) {
            if (inv.Json()) {
                out << json::serialize(e) << "\n";  // JSON lines while following
            } else if (e.is_object()) {
                out << EventLine(e.as_object(), scoped);
            }
            ++printed;
        }
        out.flush();
    };
    if (!inv.Json()) {
        out << EventHeader(scoped);
    }
    print(first);
    while (options.follow && !inv.Stopped()) {
        std::this_thread::sleep_for(*every);
        json::array more;
        if (auto r = fetch(more); !r) {
            return inv.Fail(r.error());
        }
        print(more);
    }
    return 0;
}

void AddObserveCommands(Invocation& inv, CLI::App& app) {
    struct EventsCommand {
        std::string kind, id, workflow;
        EventsOptions events;
    };
    auto ev = std::make_shared<EventsCommand>();
    CLI::App* c = inv.Leaf(
        &app, "events", "the event history of resources (created, steps, retries, rollbacks, ...)",
        [&inv, ev] {
            return RunEvents(
                inv, "/v1/events",
                {{"resource_kind", ev->kind}, {"resource_id", ev->id}, {"workflow_id", ev->workflow}},
                ev->events, false);
        });
    c->add_option("--resource-kind", ev->kind, "only this kind: server, volume, network, subnet, port, host");
    c->add_option("--resource-id", ev->id, "only this resource (its id; a host's name)");
    c->add_option("--workflow", ev->workflow, "only the events of this workflow");
    AddEventsOptions(c, ev->events);

    struct TopCommand {
        std::string interval = "2";
        bool once = false;
    };
    auto top = std::make_shared<TopCommand>();
    c = inv.Leaf(&app, "top", "a live view of the cloud from cogsd's /metrics (Ctrl-C stops)",
                 [&inv, top] { return RunTop(inv, top->interval, top->once); });
    c->add_option("--interval", top->interval, "seconds between refreshes (default 2)");
    c->add_flag("--once", top->once, "print one frame (two scrapes --interval apart) and exit; with -o json");

    // `cogs log-level` alone is `cogs log-level get`.
    struct LogLevelCommand {
        std::string component, level;
    };
    auto ll = std::make_shared<LogLevelCommand>();
    CLI::App* g = app.add_subcommand("log-level", "cogsd's log level per component, at run time (admin)");
    g->require_subcommand(0, 1);
    auto get = [&inv] { return RunLogLevels(inv, "", ""); };
    inv.Leaf(g, "get", "show the level of every component (\"*\": the default)", get);
    c = inv.Leaf(g, "set", "set one component's level",
                 [&inv, ll] { return RunLogLevels(inv, ll->component, ll->level); });
    c->add_option("component", ll->component,
                  "engine, api, cloud, scheduler, store, ... or * for the default")
        ->required();
    c->add_option("level", ll->level, "trace, debug, info, warn, error, critical, off")->required();
    g->callback([&inv, g, get] {
        if (g->get_subcommands().empty()) {
            inv.Choose(get);
        }
    });
}

}  // namespace cogs::cli
