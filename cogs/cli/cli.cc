#include "cogs/cli/cli.h"

#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "cogs/cli/internal/api.h"
#include "cogs/cli/internal/config.h"
#include "cogs/cli/internal/dev.h"
#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/prom_text.h"
#include "cogs/cli/internal/top.h"
#include "cogs/cli/internal/wait.h"
#include "cogs/http/server.h"

namespace cogs::cli {
namespace {

using namespace std::chrono_literals;

// A column of a list table: a header and how to get its cell from one item.
struct Column {
    std::string header;
    std::function<std::string(const json::object&)> cell;
};

Column Col(std::string header, std::string field) {
    return {std::move(header), [field](const json::object& o) { return Cell(o, field); }};
}

// "used/total" for a host's capacity.
Column UsedOf(std::string header, std::string field) {
    return {std::move(header),
            [field](const json::object& o) { return Cell(o, "used." + field) + "/" + Cell(o, field); }};
}

// The flavor's name where the API gives it, else its id.
Column FlavorCol() {
    return {"FLAVOR", [](const json::object& o) {
                const std::string name = Cell(o, "flavor");
                return name.empty() ? Cell(o, "flavor_id") : name;
            }};
}

// A kind of resource: its path segment under /v1 and its list columns.
struct Kind {
    std::string noun;    // "server group"
    std::string plural;  // "server-groups": the path segment and, with '_', the list's key
    std::vector<Column> columns;
    // Names are resolved to ids through ?name= (not for hosts, which are names, nor tokens and workflows).
    bool by_name = true;
    // A name nothing lists is passed on as it is (the API takes flavor and image names in paths).
    bool lenient = false;
};

const Kind kServer{"server",
                   "servers",
                   {Col("ID", "id"), Col("NAME", "name"), Col("STATUS", "status"), FlavorCol(),
                    Col("IP", "ip_address"), Col("HOST", "host"), Col("FAULT", "fault.message")}};
const Kind kNetwork{
    "network",
    "networks",
    {Col("ID", "id"), Col("NAME", "name"), Col("STATUS", "status"), Col("PROJECT", "project_id")}};
const Kind kSubnet{"subnet",
                   "subnets",
                   {Col("ID", "id"), Col("NAME", "name"), Col("NETWORK", "network_id"), Col("CIDR", "cidr"),
                    Col("GATEWAY", "gateway_ip"), Col("STATUS", "status")}};
const Kind kPort{
    "port",
    "ports",
    {Col("ID", "id"), Col("NAME", "name"), Col("NETWORK", "network_id"), Col("FIXED_IP", "fixed_ip"),
     Col("MAC", "mac_address"), Col("DEVICE", "device_id"), Col("STATUS", "status")}};
const Kind kVolume{"volume",
                   "volumes",
                   {Col("ID", "id"), Col("NAME", "name"), Col("SIZE_GB", "size_gb"), Col("STATUS", "status"),
                    Col("SERVER", "server_id")}};
const Kind kFlavor{"flavor",
                   "flavors",
                   {Col("ID", "id"), Col("NAME", "name"), Col("VCPUS", "vcpus"), Col("RAM_MB", "ram_mb"),
                    Col("DISK_GB", "disk_gb")},
                   true,
                   true};
const Kind kImage{"image", "images", {Col("ID", "id"), Col("NAME", "name"), Col("OS", "os")}, true, true};
const Kind kHost{"host",
                 "hosts",
                 {Col("NAME", "name"), Col("STATE", "state"), Col("ENABLED", "enabled"), Col("DRAINING", "draining"),
                  Col("AZ", "availability_zone"), UsedOf("VCPUS", "vcpus"), UsedOf("RAM_MB", "ram_mb"),
                  UsedOf("DISK_GB", "disk_gb"), Col("SERVERS", "servers")},
                 false};
const Kind kProject{
    "project", "projects", {Col("ID", "id"), Col("NAME", "name"), Col("DESCRIPTION", "description")}};
const Kind kToken{"token",
                  "tokens",
                  {Col("ID", "id"), Col("PROJECT", "project_id"), Col("ROLE", "role"), Col("NAME", "name"),
                   Col("CREATED", "created_at"), Col("EXPIRES", "expires_at")},
                  false};
const Kind kServerGroup{
    "server group",
    "server-groups",
    {Col("ID", "id"), Col("NAME", "name"), Col("POLICY", "policy"), Col("MEMBERS", "members")}};
const Kind kWorkflow{"workflow",
                     "workflows",
                     {Col("ID", "id"), Col("TYPE", "type"), Col("STATE", "state"),
                      Col("CREATED", "created_at"), Col("FINISHED", "finished_at"), Col("REASON", "reason")},
                     false};

std::string ListKey(const std::string& plural) {
    std::string k = plural;
    std::replace(k.begin(), k.end(), '-', '_');
    return k;
}

// "30s", "500ms", "2m", "1h", or a bare number of seconds.
std::optional<Duration> ParseDuration(const std::string& s) {
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(s, &pos);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    const std::string unit = s.substr(pos);
    double ms;
    if (unit.empty() || unit == "s") {
        ms = v * 1000;
    } else if (unit == "ms") {
        ms = v;
    } else if (unit == "m") {
        ms = v * 60'000;
    } else if (unit == "h") {
        ms = v * 3'600'000;
    } else {
        return std::nullopt;
    }
    if (ms <= 0) {
        return std::nullopt;
    }
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

// Everything one invocation needs: the streams, the global options and, once needed, the API.
class Cli {
public:
    explicit Cli(const CliIo& io)
        : out_(io.out ? *io.out : std::cout),
          err_(io.err ? *io.err : std::cerr),
          getenv_(io.getenv ? io.getenv : [](const std::string& name) -> std::optional<std::string> {
              const char* v = std::getenv(name.c_str());
              return v ? std::optional<std::string>(v) : std::nullopt;
          }),
          stop_(io.stop) {}

    int Run(const std::vector<std::string>& args);

private:
    // --- plumbing ---------------------------------------------------------------------------------
    ApiClient* Api();
    int Fail(const ApiFailure& f);
    int Fail(const std::string& message) {
        err_ << "error: " << message << "\n";
        return 1;
    }
    bool Json() const { return output_ == "json"; }
    void PrintObject(const json::value& reply) {
        out_ << (Json() ? PrettyJson(reply) : KeyValueTable(Unwrap(reply)));
    }
    ApiResult<std::string> Resolve(const Kind& kind, const std::string& ref) {
        if (!kind.by_name) {
            return ref;
        }
        auto id = Api()->Resolve(kind.plural, ref);
        if (!id && kind.lenient && id.error().status == 404) {
            return ref;
        }
        return id;
    }
    std::string ItemPath(const Kind& kind, const std::string& id) {
        return fmt::format("/v1/{}/{}", kind.plural, http::UrlEncode(id));
    }

    // --- generic verbs ----------------------------------------------------------------------------
    int List(const Kind& kind, std::vector<std::pair<std::string, std::string>> filters, int limit);
    int Show(const Kind& kind, const std::string& ref);
    int Create(const Kind& kind, const json::object& body, bool wait, const std::string& expect = "");
    int Delete(const Kind& kind, const std::string& ref, bool wait, const std::string& query = "");
    // POST /v1/<kind>/<id>/<verb> and optionally follow it to `expect`.
    int Act(const Kind& kind, const std::string& ref, const std::string& verb, const json::object& body,
            bool wait, const std::string& expect);
    // After a 202: follow the operation (if asked) and print the resource.
    int FinishAccepted(const Kind& kind, const json::value& reply, bool wait, const std::string& expect,
                       const std::string& label);

    // --- special commands -------------------------------------------------------------------------
    int WorkflowShow(const std::string& id);
    // POST /v1/hosts/{name}/drain; with `wait`, follows it until no server is left on the host.
    int HostDrain(const std::string& name, const std::string& reason, bool wait);
    int QuotaShow(const std::string& project);
    int QuotaSet(const std::string& project, const json::object& values);

    // --- observability ----------------------------------------------------------------------------
    int Top(const std::string& interval, bool once);
    // The events at `path` (/v1/events or /v1/<kind>/<id>/events) with `filters`; `scoped`: of one
    // resource (no KIND/RESOURCE columns).
    int Events(const std::string& path, std::vector<std::pair<std::string, std::string>> filters, int limit,
               bool follow, const std::string& interval, bool scoped);
    int EventsOf(const Kind& kind, const std::string& ref, int limit, bool follow,
                 const std::string& interval);
    int LogLevels(const std::string& component, const std::string& level);
    bool Stopped() const { return stop_ && stop_(); }

    std::ostream& out_;
    std::ostream& err_;
    GetEnv getenv_;
    std::function<bool()> stop_;

    // Global options.
    std::string url_;
    std::string token_;
    std::string config_;
    std::string output_ = "table";
    std::string timeout_ = "30s";
    std::string wait_timeout_ = "10m";
    bool show_trace_ = false;

    std::unique_ptr<ApiClient> api_;
    std::string api_error_;
};

ApiClient* Cli::Api() {
    if (api_ || !api_error_.empty()) {
        return api_.get();
    }
    auto settings = ResolveSettings(url_, token_, config_, getenv_);
    if (!settings) {
        api_error_ = settings.error();
        return nullptr;
    }
    auto endpoint = ParseUrl(settings->url);
    if (!endpoint) {
        api_error_ = endpoint.error();
        return nullptr;
    }
    auto timeout = ParseDuration(timeout_);
    if (!timeout) {
        api_error_ = fmt::format("--timeout: '{}' is not a duration (e.g. 30s, 500ms, 2m)", timeout_);
        return nullptr;
    }
    api_ = std::make_unique<ApiClient>(*endpoint, settings->token, *timeout);
    return api_.get();
}

int Cli::Fail(const ApiFailure& f) {
    err_ << fmt::format("error: {} ({})\n", f.message, f.code);
    if (f.code == "quota_exceeded" && f.details.is_object() && f.details.as_object().contains("resource") &&
        f.details.as_object().contains("limit")) {
        const auto& d = f.details.as_object();
        err_ << fmt::format("quota: {} limit {}, in use {}, requested {}\n", Cell(d, "resource"),
                            Cell(d, "limit"), Cell(d, "in_use"), Cell(d, "requested"));
    } else if (f.details.is_object() && f.details.as_object().contains("field")) {
        err_ << fmt::format("field: {}\n", Cell(f.details.as_object(), "field"));
    }
    if (f.status == 401) {
        err_ << "hint: the API did not accept the token: set COGS_TOKEN (or --token, or `token:` in the "
                "config "
                "file) to a valid, unrevoked token; `cogs dev` prints the admin token\n";
    } else if (f.status == 403 && f.code != "quota_exceeded") {
        err_ << "hint: this token's role does not allow that (readers only read, members act in their own "
                "project, admins do everything); `cogs whoami` shows the role\n";
    } else if (f.status == 0 && f.code == "unavailable") {
        err_
            << "hint: is cogsd running? start a local cloud with `cogs dev`, or point COGS_URL (or --url) at "
               "the API\n";
    }
    return 1;
}

int Cli::List(const Kind& kind, std::vector<std::pair<std::string, std::string>> filters, int limit) {
    ApiClient* api = Api();
    if (!api) {
        return Fail(api_error_);
    }
    std::string path = "/v1/" + kind.plural;
    char sep = '?';
    for (const auto& [k, v] : filters) {
        if (!v.empty()) {
            path += fmt::format("{}{}={}", sep, k, http::UrlEncode(v));
            sep = '&';
        }
    }
    auto items = api->List(path, limit);
    if (!items) {
        return Fail(items.error());
    }
    if (Json()) {
        json::object o;
        o[ListKey(kind.plural)] = std::move(*items);
        out_ << PrettyJson(o);
        return 0;
    }
    std::vector<std::string> headers;
    for (const auto& c : kind.columns) {
        headers.push_back(c.header);
    }
    Table t(headers);
    for (const auto& item : *items) {
        if (!item.is_object()) {
            continue;
        }
        std::vector<std::string> row;
        for (const auto& c : kind.columns) {
            row.push_back(c.cell(item.as_object()));
        }
        t.AddRow(std::move(row));
    }
    out_ << t.Render();
    return 0;
}

int Cli::Show(const Kind& kind, const std::string& ref) {
    if (!Api()) {
        return Fail(api_error_);
    }
    auto id = Resolve(kind, ref);
    if (!id) {
        return Fail(id.error());
    }
    auto reply = api_->Get(ItemPath(kind, *id));
    if (!reply) {
        return Fail(reply.error());
    }
    PrintObject(*reply);
    return 0;
}

int Cli::FinishAccepted(const Kind& kind, const json::value& reply, bool wait, const std::string& expect,
                        const std::string& label) {
    const json::object& r = Unwrap(reply);
    const std::string id = Cell(r, "id");
    if (!wait || id.empty()) {
        PrintObject(reply);
        return 0;
    }
    WaitTarget target;
    target.what = fmt::format("{} {}", kind.noun, label.empty() ? id : label);
    target.path = ItemPath(kind, id);
    target.workflow_id = Cell(r, "workflow_id");
    target.expect = expect;
    WaitOptions options;
    options.limit = ParseDuration(wait_timeout_).value_or(10min);
    auto done = Follow(*api_, target, err_, options);
    if (!done) {
        return Fail(done.error());
    }
    PrintObject(*done);
    return 0;
}

int Cli::Create(const Kind& kind, const json::object& body, bool wait, const std::string& expect) {
    if (!Api()) {
        return Fail(api_error_);
    }
    json::value b = body;
    auto reply = api_->Call("POST", "/v1/" + kind.plural, &b);
    if (!reply) {
        return Fail(reply.error());
    }
    const std::string name = body.contains("name") ? Cell(body, "name") : "";
    return FinishAccepted(kind, *reply, wait, expect, name);
}

int Cli::Act(const Kind& kind, const std::string& ref, const std::string& verb, const json::object& body,
             bool wait, const std::string& expect) {
    if (!Api()) {
        return Fail(api_error_);
    }
    auto id = Resolve(kind, ref);
    if (!id) {
        return Fail(id.error());
    }
    json::value b = body;
    auto reply = api_->Call("POST", ItemPath(kind, *id) + "/" + verb, &b);
    if (!reply) {
        return Fail(reply.error());
    }
    if (reply->is_null() || Unwrap(*reply).empty()) {
        // An action answered without the resource: read it to have something to follow and print.
        reply = api_->Get(ItemPath(kind, *id));
        if (!reply) {
            return Fail(reply.error());
        }
    }
    return FinishAccepted(kind, *reply, wait, expect, ref);
}

int Cli::Delete(const Kind& kind, const std::string& ref, bool wait, const std::string& query) {
    if (!Api()) {
        return Fail(api_error_);
    }
    auto id = Resolve(kind, ref);
    if (!id) {
        return Fail(id.error());
    }
    auto reply = api_->Call("DELETE", ItemPath(kind, *id) + query);
    if (!reply) {
        return Fail(reply.error());
    }
    const std::string what = fmt::format("{} {}", kind.noun, ref);
    if (wait && !reply->is_null()) {
        WaitTarget target;
        target.what = what;
        target.path = ItemPath(kind, *id);
        target.workflow_id = Cell(Unwrap(*reply), "workflow_id");
        target.gone = true;
        WaitOptions options;
        options.limit = ParseDuration(wait_timeout_).value_or(10min);
        auto done = Follow(*api_, target, err_, options);
        if (!done) {
            return Fail(done.error());
        }
        if (!Json()) {
            out_ << what << " deleted\n";
        }
        return 0;
    }
    if (Json()) {
        if (!reply->is_null()) {
            out_ << PrettyJson(*reply);
        }
    } else if (reply->is_null()) {
        out_ << what << " deleted\n";
    } else {
        const json::object& r = Unwrap(*reply);
        out_ << fmt::format("{}: {}{}\n", what, Cell(r, "status"),
                            r.contains("workflow_id") ? " (workflow " + Cell(r, "workflow_id") + ")" : "");
    }
    return 0;
}

int Cli::HostDrain(const std::string& name, const std::string& reason, bool wait) {
    if (!Api()) {
        return Fail(api_error_);
    }
    json::value body = json::object{};
    if (!reason.empty()) {
        body.as_object()["reason"] = reason;
    }
    auto reply = api_->Call("POST", ItemPath(kHost, name) + "/drain", &body);
    if (!reply) {
        return Fail(reply.error());
    }
    if (!wait) {
        return FinishAccepted(kHost, *reply, false, "", name);
    }
    std::string last;
    while (!Stopped()) {
        auto servers = api_->List("/v1/servers?host=" + http::UrlEncode(name));
        if (!servers) {
            return Fail(servers.error());
        }
        std::map<std::string, int> by_status;
        for (const auto& v : *servers) {
            if (v.is_object()) ++by_status[Cell(v.as_object(), "status")];
        }
        if (servers->empty()) {
            out_ << "host " << name << " is drained: no server left; it stays disabled\n";
            return 0;
        }
        std::string line = fmt::format("host {}: {} servers left", name, servers->size());
        for (const auto& [status, n] : by_status) {
            line += fmt::format(", {} {}", n, status);
        }
        if (line != last) {
            out_ << line << "\n";
            out_.flush();
            last = line;
        }
        const int movable = by_status["ACTIVE"] + by_status["SHUTOFF"] + by_status["MIGRATING"] +
                            by_status["REBUILD"] + by_status["STOPPING"];
        if (movable == 0) {
            err_ << "cogs: host " << name << ": " << servers->size()
                 << " servers cannot be migrated (see cogs server list --host " << name << ")\n";
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    return 130;
}

int Cli::WorkflowShow(const std::string& id) {
    if (!Api()) {
        return Fail(api_error_);
    }
    auto reply = api_->Get("/v1/workflows/" + http::UrlEncode(id));
    if (!reply) {
        return Fail(reply.error());
    }
    if (Json()) {
        out_ << PrettyJson(*reply);
        return 0;
    }
    const json::object& w = Unwrap(*reply);
    const auto created = ParseRfc3339Ms(Cell(w, "created_at"));
    const auto finished = ParseRfc3339Ms(Cell(w, "finished_at"));
    out_ << fmt::format("workflow {}  {}  {}\n", Cell(w, "id"), Cell(w, "type"), Cell(w, "state"));
    if (const std::string reason = Cell(w, "reason"); !reason.empty()) {
        out_ << "reason: " << reason << "\n";
    }
    if (const std::string kind = Cell(w, "resource_kind"); !kind.empty()) {
        out_ << fmt::format("resource: {} {}\n", kind, Cell(w, "resource_id"));
    }
    if (const std::string trace = Cell(w, "trace_id"); !trace.empty()) {
        out_ << "trace: " << trace << "\n";
    }
    out_ << "created: " << Cell(w, "created_at");
    if (created && finished) {
        out_ << "  took " << FormatDurationMs(*finished - *created);
    }
    out_ << "\n\n";
    Table t({"STEP", "STATE", "ATTEMPTS", "START", "DURATION", "ERROR"});
    if (const auto* steps = w.if_contains("steps"); steps && steps->is_array()) {
        for (const auto& sv : steps->as_array()) {
            if (!sv.is_object()) {
                continue;
            }
            const auto& s = sv.as_object();
            const auto started = ParseRfc3339Ms(Cell(s, "started_at"));
            const auto ended = ParseRfc3339Ms(Cell(s, "finished_at"));
            std::string start = started && created ? "+" + FormatDurationMs(*started - *created) : "";
            std::string duration = started && ended ? FormatDurationMs(*ended - *started)
                                   : started        ? "..."
                                                    : "";
            t.AddRow(
                {Cell(s, "name"), Cell(s, "state"), Cell(s, "attempts"), start, duration, Cell(s, "error")});
        }
    }
    out_ << t.Render();
    return 0;
}

int Cli::QuotaShow(const std::string& project) {
    if (!Api()) {
        return Fail(api_error_);
    }
    auto id = Resolve(kProject, project);
    if (!id) {
        return Fail(id.error());
    }
    auto reply = api_->Get(ItemPath(kProject, *id) + "/quotas");
    if (!reply) {
        return Fail(reply.error());
    }
    if (Json()) {
        out_ << PrettyJson(*reply);
        return 0;
    }
    Table t({"RESOURCE", "LIMIT", "IN_USE"});
    for (const auto& [name, q] : Unwrap(*reply)) {
        if (!q.is_object()) {
            continue;
        }
        const std::string limit = Cell(q.as_object(), "limit");
        t.AddRow({std::string(name), limit == "-1" ? "unlimited" : limit, Cell(q.as_object(), "in_use")});
    }
    out_ << t.Render();
    return 0;
}

int Cli::QuotaSet(const std::string& project, const json::object& values) {
    if (values.empty()) {
        err_
            << "error: name at least one quota to set (--servers, --vcpus, --ram-mb, --volumes, --volume-gb, "
               "--ports)\n";
        return 2;
    }
    if (!Api()) {
        return Fail(api_error_);
    }
    auto id = Resolve(kProject, project);
    if (!id) {
        return Fail(id.error());
    }
    json::value body = values;
    auto reply = api_->Call("PUT", ItemPath(kProject, *id) + "/quotas", &body);
    if (!reply) {
        return Fail(reply.error());
    }
    return QuotaShow(*id);
}

// ---- observability ------------------------------------------------------------------------------

// One scrape of /metrics and when it was answered.
struct Scrape {
    prom::Exposition metrics;
    SteadyTime at;
};

int Cli::Top(const std::string& interval, bool once) {
    const auto every = ParseDuration(interval);
    if (!every) {
        err_ << fmt::format("error: --interval: '{}' is not a duration (e.g. 2, 500ms)\n", interval);
        return 2;
    }
    if (Json() && !once) {
        err_ << "error: -o json prints one set of figures: add --once\n";
        return 2;
    }
    if (!Api()) {
        return Fail(api_error_);
    }
    auto scrape = [&]() -> ApiResult<Scrape> {
        auto text = api_->GetText("/metrics");
        if (!text) {
            return tl::unexpected(text.error());
        }
        auto parsed = prom::ParseText(*text);
        if (!parsed) {
            return tl::unexpected(ApiFailure{
                200,
                "internal",
                fmt::format("{}/metrics is not Prometheus text: {}", api_->endpoint().url, parsed.error()),
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
                    return Fail(first.error());
                }
                out_ << "\x1b[2J\x1b[H"
                     << fmt::format("cogs top  {}  cannot scrape: {} ({}); retrying every {}\n",
                                    api_->endpoint().url, first.error().message, first.error().code,
                                    every_text);
                out_.flush();
            } else {
                before = std::move(*first);
            }
        }
        std::this_thread::sleep_for(*every);
        if (!before) {
            if (Stopped()) {
                return 0;
            }
            continue;
        }
        auto after = scrape();
        if (!after) {
            if (once) {
                return Fail(after.error());
            }
            before.reset();
            continue;  // the next round reports it
        }
        const double seconds = std::chrono::duration<double>(after->at - before->at).count();
        top::Figures f = top::Compute(before->metrics, after->metrics, seconds);
        if (auto hosts = api_->List("/v1/hosts"); hosts) {
            for (const auto& h : *hosts) {
                if (h.is_object()) {
                    const auto& o = h.as_object();
                    f.hosts.push_back({Cell(o, "name"), Cell(o, "state"), Cell(o, "enabled") != "false"});
                }
            }
        } else {
            f.hosts_note = fmt::format("no host list: {} ({})", hosts.error().message, hosts.error().code);
        }
        if (Json()) {
            out_ << PrettyJson(top::ToJson(f));
            return 0;
        }
        const std::string title =
            fmt::format("cogs top  {}  {}  every {}", api_->endpoint().url,
                        FormatRfc3339Ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count()),
                        every_text);
        out_ << (once ? "" : "\x1b[2J\x1b[H") << top::RenderFrame(f, title);
        out_.flush();
        if (once || Stopped()) {
            return 0;
        }
        before = std::move(*after);
    }
}

namespace {

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
    const std::string time = ms && ms->is_int64() ? FormatRfc3339Ms(ms->as_int64()) : Cell(e, "time_ms");
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

}  // namespace

int Cli::Events(const std::string& path, std::vector<std::pair<std::string, std::string>> filters, int limit,
                bool follow, const std::string& interval, bool scoped) {
    const auto every = ParseDuration(interval);
    if (!every) {
        err_ << fmt::format("error: --interval: '{}' is not a duration (e.g. 1, 500ms)\n", interval);
        return 2;
    }
    if (follow && limit > 0) {
        err_ << "error: --limit and --follow do not go together: --follow prints the whole history, then "
                "what comes\n";
        return 2;
    }
    if (!Api()) {
        return Fail(api_error_);
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
            auto reply = api_->Get(fmt::format("{}?{}after={}&limit={}", path, query, after, page));
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
        return Fail(r.error());
    }
    if (Json() && !follow) {
        out_ << PrettyJson(json::object{{"events", std::move(first)}});
        return 0;
    }
    auto print = [&](const json::array& events) {
        for (const auto& e : events) {
            if (Json()) {
                out_ << json::serialize(e) << "\n";  // JSON lines while following
            } else if (e.is_object()) {
                out_ << EventLine(e.as_object(), scoped);
            }
            ++printed;
        }
        out_.flush();
    };
    if (!Json()) {
        out_ << EventHeader(scoped);
    }
    print(first);
    while (follow && !Stopped()) {
        std::this_thread::sleep_for(*every);
        json::array more;
        if (auto r = fetch(more); !r) {
            return Fail(r.error());
        }
        print(more);
    }
    return 0;
}

int Cli::EventsOf(const Kind& kind, const std::string& ref, int limit, bool follow,
                  const std::string& interval) {
    if (!Api()) {
        return Fail(api_error_);
    }
    auto id = Resolve(kind, ref);
    if (!id) {
        return Fail(id.error());
    }
    return Events(ItemPath(kind, *id) + "/events", {}, limit, follow, interval, true);
}

int Cli::LogLevels(const std::string& component, const std::string& level) {
    if (!Api()) {
        return Fail(api_error_);
    }
    ApiResult<json::value> reply;
    if (component.empty()) {
        reply = api_->Get("/v1/log-levels");
    } else {
        json::value body = json::object{{component, level}};
        reply = api_->Call("PUT", "/v1/log-levels", &body);
    }
    if (!reply) {
        return Fail(reply.error());
    }
    if (Json()) {
        out_ << PrettyJson(*reply);
        return 0;
    }
    Table t({"COMPONENT", "LEVEL"});
    if (reply->is_object()) {
        for (const auto& [name, l] : reply->as_object()) {
            t.AddRow({std::string(name), Cell(&l)});
        }
    }
    out_ << t.Render();
    return 0;
}

int Cli::Run(const std::vector<std::string>& args) {
    CLI::App app{"cogs: the command-line client of the cogs cloud (it speaks the cogsd REST API)", "cogs"};
    app.fallthrough();  // inherited by every subcommand: global options may follow the subcommand
    app.require_subcommand(1);
    app.add_option("--url", url_, "API endpoint (env COGS_URL, config `url`; default http://127.0.0.1:8780)");
    app.add_option("--token", token_, "API token (env COGS_TOKEN, config `token`)");
    app.add_option("--config", config_, "config file (default $XDG_CONFIG_HOME/cogs/config.yaml)");
    app.add_option("-o,--output", output_, "output format")->check(CLI::IsMember({"table", "json"}));
    app.add_option("--timeout", timeout_, "deadline of each API request (e.g. 30s)");
    app.add_option("--wait-timeout", wait_timeout_, "how long --wait follows an operation (e.g. 10m)");
    app.add_flag("--trace", show_trace_,
                 "print on stderr the trace id this command's requests carry (grep the logs for it)");

    std::function<int()> action;
    // Registers a leaf command: `body` runs after a successful parse.
    auto leaf = [&](CLI::App* parent, const std::string& name, const std::string& help,
                    std::function<int()> body) {
        CLI::App* c = parent->add_subcommand(name, help);
        c->callback([&action, body]() { action = body; });
        return c;
    };
    auto group = [&](const std::string& name, const std::string& help) {
        CLI::App* g = app.add_subcommand(name, help);
        g->require_subcommand(1);
        return g;
    };

    // Option storage for every command; only one command runs per invocation.
    std::string ref, name, s1, s2, s3, s4, s5, s6;
    std::vector<std::string> many, pools;
    bool wait = false, flag = false;
    int limit = 0;
    int64_t n1 = 0, n2 = 0, n3 = 0;
    auto add_ref = [&](CLI::App* c, const std::string& what) { c->add_option("ref", ref, what)->required(); };
    auto add_wait = [&](CLI::App* c) { c->add_flag("--wait", wait, "follow the operation to its end"); };
    bool follow = false, once = false;
    std::string top_interval = "2", poll_interval = "1";
    auto add_follow = [&](CLI::App* c) {
        c->add_option("--limit", limit, "at most this many, oldest first (not with --follow)");
        c->add_flag("--follow", follow, "keep printing new events as they come (Ctrl-C stops)");
        c->add_option("--interval", poll_interval, "how often --follow asks (default 1s)");
    };
    // `<kind> events REF`: a resource's history (it outlives the resource: use the id once deleted).
    auto add_events = [&](CLI::App* g, const Kind& kind) {
        CLI::App* c = leaf(g, "events", "the " + kind.noun + "'s event history",
                           [&, k = &kind] { return EventsOf(*k, ref, limit, follow, poll_interval); });
        add_ref(c, kind.by_name ? kind.noun + " name or id (an id once it is deleted)" : kind.noun + " name");
        add_follow(c);
    };

    // server
    {
        CLI::App* g = group("server", "servers (virtual machines)");
        CLI::App* c = leaf(g, "create", "create a server", [&] {
            if (!Api()) {
                return Fail(api_error_);
            }
            json::object body{{"name", name}, {"flavor", s1}, {"image", s2}};
            auto net = api_->Resolve("networks", s3);
            if (!net) {
                return Fail(net.error());
            }
            body["network_id"] = *net;
            if (!many.empty()) {
                json::array vols;
                for (const auto& v : many) {
                    auto id = api_->Resolve("volumes", v);
                    if (!id) {
                        return Fail(id.error());
                    }
                    vols.emplace_back(*id);
                }
                body["volume_ids"] = std::move(vols);
            }
            if (!s4.empty()) {
                auto grp = api_->Resolve("server-groups", s4);
                if (!grp) {
                    return Fail(grp.error());
                }
                body["server_group_id"] = *grp;
            }
            if (!s5.empty()) {
                body["availability_zone"] = s5;
            }
            if (!s6.empty()) {
                body["weigher"] = s6;
            }
            return Create(kServer, body, wait, "ACTIVE");
        });
        c->add_option("name", name, "server name")->required();
        c->add_option("--flavor", s1, "flavor name or id")->required();
        c->add_option("--image", s2, "image name or id")->required();
        c->add_option("--network", s3, "network name or id")->required();
        c->add_option("--volume", many, "volume name or id to attach (repeatable)");
        c->add_option("--group", s4, "server group name or id");
        c->add_option("--az", s5, "availability zone");
        c->add_option("--weigher", s6, "placement weigher")->check(CLI::IsMember({"spread", "pack"}));
        add_wait(c);

        c = leaf(g, "list", "list servers", [&] {
            return List(kServer, {{"status", s1}, {"name", name}, {"host", s2}}, limit);
        });
        c->add_option("--status", s1, "only servers in this status");
        c->add_option("--name", name, "only servers with this name");
        c->add_option("--host", s2, "only servers on this host (admin)");
        c->add_option("--limit", limit, "at most this many");
        add_ref(leaf(g, "show", "show a server", [&] { return Show(kServer, ref); }), "server name or id");
        c = leaf(g, "delete", "delete a server",
                 [&] { return Delete(kServer, ref, wait, flag ? "?delete_volumes=true" : ""); });
        add_ref(c, "server name or id");
        c->add_flag("--delete-volumes", flag, "also delete its volumes");
        add_wait(c);
        for (auto [verb, expect] :
             {std::pair{"start", "ACTIVE"}, {"stop", "SHUTOFF"}, {"reboot", "ACTIVE"}}) {
            const std::string v = verb, e = expect;
            c = leaf(g, v, v + " a server",
                     [&, v, e] { return Act(kServer, ref, v, json::object{}, wait, e); });
            add_ref(c, "server name or id");
            add_wait(c);
        }
        add_events(g, kServer);
    }
    // network
    {
        CLI::App* g = group("network", "networks");
        CLI::App* c = leaf(g, "create", "create a network", [&] {
            return Create(kNetwork, json::object{{"name", name}}, wait, "ACTIVE");
        });
        c->add_option("name", name, "network name")->required();
        add_wait(c);
        c = leaf(g, "list", "list networks", [&] { return List(kNetwork, {{"name", name}}, limit); });
        c->add_option("--name", name, "only networks with this name");
        c->add_option("--limit", limit, "at most this many");
        add_ref(leaf(g, "show", "show a network", [&] { return Show(kNetwork, ref); }), "network name or id");
        c = leaf(g, "delete", "delete a network", [&] { return Delete(kNetwork, ref, wait); });
        add_ref(c, "network name or id");
        add_wait(c);
        add_events(g, kNetwork);
    }
    // subnet
    {
        CLI::App* g = group("subnet", "subnets of networks");
        CLI::App* c = leaf(g, "create", "create a subnet", [&] {
            if (!Api()) {
                return Fail(api_error_);
            }
            auto net = api_->Resolve("networks", s1);
            if (!net) {
                return Fail(net.error());
            }
            json::object body{{"name", name}, {"network_id", *net}, {"cidr", s2}};
            if (!s3.empty()) {
                body["gateway_ip"] = s3;
            }
            if (!pools.empty()) {
                json::array a;
                for (const auto& p : pools) {
                    const auto dash = p.find('-');
                    if (dash == std::string::npos) {
                        err_ << fmt::format("error: --pool '{}' must be START-END\n", p);
                        return 2;
                    }
                    a.push_back(json::object{{"start", p.substr(0, dash)}, {"end", p.substr(dash + 1)}});
                }
                body["allocation_pools"] = std::move(a);
            }
            return Create(kSubnet, body, wait, "");
        });
        c->add_option("name", name, "subnet name")->required();
        c->add_option("--network", s1, "network name or id")->required();
        c->add_option("--cidr", s2, "IPv4 CIDR, e.g. 10.0.0.0/24")->required();
        c->add_option("--gateway", s3, "gateway address (default: the first host address)");
        c->add_option("--pool", pools, "allocation pool START-END (repeatable)");
        add_wait(c);
        c = leaf(g, "list", "list subnets", [&] { return List(kSubnet, {{"name", name}}, limit); });
        c->add_option("--name", name, "only subnets with this name");
        c->add_option("--limit", limit, "at most this many");
        add_ref(leaf(g, "show", "show a subnet", [&] { return Show(kSubnet, ref); }), "subnet name or id");
        c = leaf(g, "delete", "delete a subnet", [&] { return Delete(kSubnet, ref, wait); });
        add_ref(c, "subnet name or id");
        add_wait(c);
        add_events(g, kSubnet);
    }
    // port
    {
        CLI::App* g = group("port", "network ports");
        CLI::App* c = leaf(g, "create", "create a port", [&] {
            if (!Api()) {
                return Fail(api_error_);
            }
            auto net = api_->Resolve("networks", s1);
            if (!net) {
                return Fail(net.error());
            }
            json::object body{{"network_id", *net}};
            if (!name.empty()) {
                body["name"] = name;
            }
            if (!s2.empty()) {
                body["fixed_ip"] = s2;
            }
            return Create(kPort, body, wait, "");
        });
        c->add_option("--network", s1, "network name or id")->required();
        c->add_option("--name", name, "port name");
        c->add_option("--fixed-ip", s2, "the address to take");
        add_wait(c);
        c = leaf(g, "list", "list ports", [&] { return List(kPort, {{"name", name}}, limit); });
        c->add_option("--name", name, "only ports with this name");
        c->add_option("--limit", limit, "at most this many");
        add_ref(leaf(g, "show", "show a port", [&] { return Show(kPort, ref); }), "port name or id");
        c = leaf(g, "delete", "delete a port", [&] { return Delete(kPort, ref, wait); });
        add_ref(c, "port name or id");
        add_wait(c);
        add_events(g, kPort);
    }
    // volume
    {
        CLI::App* g = group("volume", "block volumes");
        CLI::App* c = leaf(g, "create", "create a volume", [&] {
            return Create(kVolume, json::object{{"name", name}, {"size_gb", n1}}, wait, "available");
        });
        c->add_option("name", name, "volume name")->required();
        c->add_option("--size", n1, "size in GiB")->required()->check(CLI::PositiveNumber);
        add_wait(c);
        c = leaf(g, "list", "list volumes", [&] {
            return List(kVolume, {{"status", s1}, {"name", name}}, limit);
        });
        c->add_option("--status", s1, "only volumes in this status");
        c->add_option("--name", name, "only volumes with this name");
        c->add_option("--limit", limit, "at most this many");
        add_ref(leaf(g, "show", "show a volume", [&] { return Show(kVolume, ref); }), "volume name or id");
        c = leaf(g, "attach", "attach a volume to a server", [&] {
            if (!Api()) {
                return Fail(api_error_);
            }
            auto server = api_->Resolve("servers", s1);
            if (!server) {
                return Fail(server.error());
            }
            return Act(kVolume, ref, "attach", json::object{{"server_id", *server}}, wait, "in-use");
        });
        add_ref(c, "volume name or id");
        c->add_option("--server", s1, "server name or id")->required();
        add_wait(c);
        c = leaf(g, "detach", "detach a volume from its server",
                 [&] { return Act(kVolume, ref, "detach", json::object{}, wait, "available"); });
        add_ref(c, "volume name or id");
        add_wait(c);
        c = leaf(g, "delete", "delete a volume", [&] { return Delete(kVolume, ref, wait); });
        add_ref(c, "volume name or id");
        add_wait(c);
        add_events(g, kVolume);
    }
    // flavor
    {
        CLI::App* g = group("flavor", "flavors (server sizes)");
        CLI::App* c = leaf(g, "create", "create a flavor (admin)", [&] {
            return Create(
                kFlavor, json::object{{"name", name}, {"vcpus", n1}, {"ram_mb", n2}, {"disk_gb", n3}}, false);
        });
        c->add_option("name", name, "flavor name")->required();
        c->add_option("--vcpus", n1, "virtual CPUs")->required();
        c->add_option("--ram-mb", n2, "memory in MiB")->required();
        c->add_option("--disk-gb", n3, "root disk in GiB")->required();
        leaf(g, "list", "list flavors", [&] { return List(kFlavor, {}, 0); });
        add_ref(leaf(g, "show", "show a flavor", [&] { return Show(kFlavor, ref); }), "flavor name or id");
        add_ref(leaf(g, "delete", "delete a flavor (admin)", [&] { return Delete(kFlavor, ref, false); }),
                "flavor name or id");
    }
    // image
    {
        CLI::App* g = group("image", "images");
        CLI::App* c = leaf(g, "create", "create an image (admin)", [&] {
            json::object body{{"name", name}};
            if (!s1.empty()) {
                body["os"] = s1;
            }
            return Create(kImage, body, false);
        });
        c->add_option("name", name, "image name")->required();
        c->add_option("--os", s1, "operating system");
        leaf(g, "list", "list images", [&] { return List(kImage, {}, 0); });
        add_ref(leaf(g, "show", "show an image", [&] { return Show(kImage, ref); }), "image name or id");
        add_ref(leaf(g, "delete", "delete an image (admin)", [&] { return Delete(kImage, ref, false); }),
                "image name or id");
    }
    // host
    {
        CLI::App* g = group("host", "compute hosts (admin)");
        leaf(g, "list", "list hosts", [&] { return List(kHost, {}, 0); });
        add_ref(leaf(g, "show", "show a host", [&] { return Show(kHost, ref); }), "host name");
        add_ref(leaf(g, "enable", "let a host take new servers",
                     [&] { return Act(kHost, ref, "enable", json::object{}, false, ""); }),
                "host name");
        CLI::App* c = leaf(g, "disable", "stop placing new servers on a host", [&] {
            json::object body;
            if (!s1.empty()) {
                body["reason"] = s1;
            }
            return Act(kHost, ref, "disable", body, false, "");
        });
        add_ref(c, "host name");
        c->add_option("--reason", s1, "why (shown with the host)");
        c = leaf(g, "drain", "disable a host and cold-migrate every server off it",
                 [&] { return HostDrain(ref, s1, wait); });
        add_ref(c, "host name");
        c->add_option("--reason", s1, "why (shown with the host)");
        c->add_flag("--wait", wait, "follow until no server is left on the host");
        add_events(g, kHost);  // registered, down, up again, enabled, disabled
    }
    // project (+ quota)
    {
        CLI::App* g = group("project", "projects and their quotas (admin)");
        CLI::App* c = leaf(g, "create", "create a project", [&] {
            json::object body{{"name", name}};
            if (!s1.empty()) {
                body["description"] = s1;
            }
            return Create(kProject, body, false);
        });
        c->add_option("name", name, "project name")->required();
        c->add_option("--description", s1, "description");
        leaf(g, "list", "list projects", [&] { return List(kProject, {}, 0); });
        add_ref(leaf(g, "show", "show a project", [&] { return Show(kProject, ref); }), "project name or id");
        add_ref(leaf(g, "delete", "delete a project", [&] { return Delete(kProject, ref, false); }),
                "project name or id");
        CLI::App* q = g->add_subcommand("quota", "a project's quotas");
        q->require_subcommand(1);
        add_ref(leaf(q, "show", "show quotas and usage", [&] { return QuotaShow(ref); }),
                "project name or id");
        c = leaf(q, "set", "set quotas (-1: unlimited)", [&, q] {
            json::object values;
            for (const auto& [opt, key] :
                 std::vector<std::pair<std::string, std::string>>{{"--servers", "servers"},
                                                                  {"--vcpus", "vcpus"},
                                                                  {"--ram-mb", "ram_mb"},
                                                                  {"--volumes", "volumes"},
                                                                  {"--volume-gb", "volume_gb"},
                                                                  {"--ports", "ports"}}) {
                CLI::Option* o = q->get_subcommand("set")->get_option(opt);
                if (o->count() > 0) {
                    values[key] = o->as<int64_t>();
                }
            }
            return QuotaSet(ref, values);
        });
        add_ref(c, "project name or id");
        for (const char* opt : {"--servers", "--vcpus", "--ram-mb", "--volumes", "--volume-gb", "--ports"}) {
            c->add_option(opt)->type_name("N")->description(std::string(opt).substr(2) +
                                                            " limit (-1: unlimited)");
        }
    }
    // token
    {
        CLI::App* g = group("token", "API tokens (admin)");
        CLI::App* c = leaf(g, "create", "create a token (its secret is shown once)", [&] {
            if (!Api()) {
                return Fail(api_error_);
            }
            auto project = api_->Resolve("projects", s1);
            if (!project) {
                return Fail(project.error());
            }
            json::object body{{"project_id", *project}, {"role", s2}};
            if (!name.empty()) {
                body["name"] = name;
            }
            const int rc = Create(kToken, body, false);
            if (rc == 0 && !Json()) {
                err_ << "note: the secret is shown only this once; the API keeps only its hash\n";
            }
            return rc;
        });
        c->add_option("--project", s1, "project name or id")->required();
        c->add_option("--role", s2, "role")->required()->check(CLI::IsMember({"admin", "member", "reader"}));
        c->add_option("--name", name, "a name to recognise it by");
        c = leaf(g, "list", "list tokens (no secrets)", [&] {
            if (!s1.empty()) {
                if (!Api()) {
                    return Fail(api_error_);
                }
                auto project = api_->Resolve("projects", s1);
                if (!project) {
                    return Fail(project.error());
                }
                s1 = *project;
            }
            return List(kToken, {{"project_id", s1}}, 0);
        });
        c->add_option("--project", s1, "only this project's tokens");
        add_ref(leaf(g, "revoke", "revoke a token at once", [&] { return Delete(kToken, ref, false); }),
                "token id");
    }
    // server-group
    {
        CLI::App* g = group("server-group", "server groups (affinity rules)");
        CLI::App* c = leaf(g, "create", "create a server group", [&] {
            return Create(kServerGroup, json::object{{"name", name}, {"policy", s1}}, false);
        });
        c->add_option("name", name, "group name")->required();
        c->add_option("--policy", s1, "placement policy")
            ->required()
            ->check(CLI::IsMember({"affinity", "anti-affinity"}));
        leaf(g, "list", "list server groups", [&] { return List(kServerGroup, {}, 0); });
        add_ref(leaf(g, "show", "show a server group", [&] { return Show(kServerGroup, ref); }),
                "group name or id");
        add_ref(leaf(g, "delete", "delete a server group", [&] { return Delete(kServerGroup, ref, false); }),
                "group name or id");
    }
    // workflow
    {
        CLI::App* g = group("workflow", "the workflows that carry out operations");
        CLI::App* c = leaf(g, "list", "list workflows", [&] {
            return List(kWorkflow, {{"state", s1}, {"type", s2}}, limit);
        });
        c->add_option("--state", s1, "running, compensating, succeeded, rolled_back, failed");
        c->add_option("--type", s2, "e.g. server.create");
        c->add_option("--limit", limit, "at most this many");
        add_ref(leaf(g, "show", "show a workflow's step timeline", [&] { return WorkflowShow(ref); }),
                "workflow id");
        add_ref(leaf(g, "cancel", "cancel a workflow (it rolls back)",
                     [&] {
                         if (!Api()) {
                             return Fail(api_error_);
                         }
                         json::value body = json::object{};
                         auto r =
                             api_->Call("POST", "/v1/workflows/" + http::UrlEncode(ref) + "/cancel", &body);
                         if (!r) {
                             return Fail(r.error());
                         }
                         if (Json()) {
                             out_ << PrettyJson(*r);
                         } else {
                             out_ << "workflow " << ref << ": cancel requested; it rolls back\n";
                         }
                         return 0;
                     }),
                "workflow id");
    }
    // events, top, log-level
    {
        CLI::App* c = leaf(
            &app, "events", "the event history of resources (created, steps, retries, rollbacks, ...)", [&] {
                return Events("/v1/events", {{"resource_kind", s1}, {"resource_id", s2}, {"workflow_id", s3}},
                              limit, follow, poll_interval, false);
            });
        c->add_option("--resource-kind", s1, "only this kind: server, volume, network, subnet, port, host");
        c->add_option("--resource-id", s2, "only this resource (its id; a host's name)");
        c->add_option("--workflow", s3, "only the events of this workflow");
        add_follow(c);

        c = leaf(&app, "top", "a live view of the cloud from cogsd's /metrics (Ctrl-C stops)",
                 [&] { return Top(top_interval, once); });
        c->add_option("--interval", top_interval, "seconds between refreshes (default 2)");
        c->add_flag("--once", once, "print one frame (two scrapes --interval apart) and exit; with -o json");

        CLI::App* g = app.add_subcommand("log-level", "cogsd's log level per component, at run time (admin)");
        g->require_subcommand(0, 1);
        g->callback([&action, this, g] {
            if (g->get_subcommands().empty()) {
                action = [this] { return LogLevels("", ""); };
            }
        });
        leaf(g, "get", "show the level of every component (\"*\": the default)",
             [&] { return LogLevels("", ""); });
        c = leaf(g, "set", "set one component's level", [&] { return LogLevels(s1, s2); });
        c->add_option("component", s1, "engine, api, cloud, scheduler, store, ... or * for the default")
            ->required();
        c->add_option("level", s2, "trace, debug, info, warn, error, critical, off")->required();
    }
    leaf(&app, "whoami", "the project and role of the token in use", [&] {
        if (!Api()) {
            return Fail(api_error_);
        }
        auto r = api_->Get("/v1/whoami");
        if (!r) {
            return Fail(r.error());
        }
        out_ << (Json() ? PrettyJson(*r) : KeyValueTable(r->is_object() ? r->as_object() : json::object{}));
        return 0;
    });
    // dev
    DevOptions dev;
    {
        CLI::App* c = leaf(&app, "dev", "run a local cloud in the foreground (Ctrl-C stops it)",
                           [&] { return RunDev(dev, out_, err_); });
        c->add_option("--data-dir", dev.data_dir, "state, logs and tokens")->capture_default_str();
        c->add_option("--port", dev.port, "API port (0: any free port; see <data-dir>/dev.json)")
            ->capture_default_str();
        c->add_option("--hosts", dev.hosts, "compute hosts")->capture_default_str()->check(CLI::Range(1, 64));
        c->add_option("--boot-ms", dev.boot_ms, "simulated boot time of a server")->capture_default_str();
        c->add_option("--volume-driver", dev.volume_driver, "cogs-volume driver")->capture_default_str();
        c->add_option("--start-timeout", dev.start_timeout_s, "seconds each child may take to start")
            ->capture_default_str();
        c->add_option("--cogsd-arg", dev.cogsd_args, "passed to cogsd as is (repeatable), e.g. --cogsd-arg=--reconcile-ms=2000")
            ->allow_extra_args(false);
    }

    std::vector<std::string> rev(args.rbegin(), args.rend() - (args.empty() ? 0 : 1));
    try {
        app.parse(rev);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e, out_, err_);
        return rc == 0 ? 0 : 2;
    }
    if (!action) {
        out_ << app.help();
        return 2;
    }
    const int rc = action();
    if (show_trace_ && api_) {
        err_ << "trace: " << api_->trace_id() << "\n";
    }
    return rc;
}

}  // namespace

int RunCli(const std::vector<std::string>& args, const CliIo& io) {
    Cli cli(io);
    return cli.Run(args);
}

}  // namespace cogs::cli
