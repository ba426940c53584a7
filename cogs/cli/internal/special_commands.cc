#include "cogs/cli/internal/special_commands.h"
#include "cogs/base/time.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "cogs/cli/internal/invocation.h"
#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/verbs.h"
#include "cogs/http/server.h"
#include "cogs/runtime/files.h"

namespace cogs::cli {
namespace {

struct RefOptions {
    std::string ref;
};

// A leaf whose only argument is the resource's REF, running `run(inv, resource, ref)`.
void AddRefCommand(Invocation& inv, const Resource& r, CLI::App* parent, const std::string& name,
                   const std::string& help, int (*run)(Invocation&, const Resource&, const std::string&)) {
    auto o = std::make_shared<RefOptions>();
    CLI::App* c = inv.Leaf(parent, name, help, [&inv, &r, o, run] { return run(inv, r, o->ref); });
    c->add_option("ref", o->ref, r.ref_help)->required();
}

// ---- host enroll --------------------------------------------------------------------------------

int HostEnroll(Invocation& inv, const Resource& hosts, const std::string& name, const std::string& out_dir) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    json::value body = json::object{};
    auto reply = api->Call("POST", hosts.Path(name) + "/enroll", &body);
    if (!reply) {
        return inv.Fail(reply.error());
    }
    const json::value* enrollment =
        reply->is_object() ? reply->as_object().if_contains("enrollment") : nullptr;
    const json::object* e = enrollment != nullptr ? enrollment->if_object() : nullptr;
    const std::string host_token = e ? Cell(*e, "host_token") : "";
    const std::string agent_token = e ? Cell(*e, "agent_token") : "";
    if (host_token.empty() || agent_token.empty()) {
        // A retried request answered from its Idempotency-Key: the secrets are not stored.
        return inv.Fail("host " + name +
                        " was enrolled but the answer carrying its credentials was lost: enroll "
                        "it again (that revokes this enrollment)");
    }
    std::string revoked;
    if (const json::value* ids = e->if_contains("revoked_token_ids"); ids && ids->is_array()) {
        for (const auto& id : ids->as_array()) {
            if (id.is_string()) revoked += (revoked.empty() ? "" : ", ") + std::string(id.as_string());
        }
    }
    if (out_dir.empty()) {
        if (inv.Json()) {
            inv.out() << PrettyJson(*reply);
            return 0;
        }
        inv.out() << fmt::format(
            "host {} enrolled (token {}){}\n"
            "  host token (the agent presents it to cogsd: --control-token-file): {}\n"
            "  agent token (cogsd presents it to the agent: --token-file):        {}\n"
            "They are shown once: keep them in files of mode 0600 on that host only.\n",
            name, Cell(*e, "token_id"), revoked.empty() ? "" : "; revoked: " + revoked, host_token,
            agent_token);
        return 0;
    }
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) {
        return inv.Fail("--out " + out_dir + ": " + ec.message());
    }
    ::chmod(out_dir.c_str(), 0700);
    const std::string host_file = (std::filesystem::path(out_dir) / "host.token").string();
    const std::string agent_file = (std::filesystem::path(out_dir) / "agent.token").string();
    for (const auto& [file, secret] :
         {std::pair{host_file, host_token}, std::pair{agent_file, agent_token}}) {
        if (auto st = runtime::WriteFileAtomic(file, secret + "\n", 0600); !st) {
            return inv.Fail(st.error().message);
        }
    }
    json::object view = *e;
    view.erase("host_token");
    view.erase("agent_token");
    view["host_token_file"] = host_file;
    view["agent_token_file"] = agent_file;
    if (inv.Json()) {
        inv.out() << PrettyJson(json::object{{"enrollment", std::move(view)}});
        return 0;
    }
    inv.out() << fmt::format(
        "host {} enrolled (token {}){}\n"
        "  {}  the host token: the agent presents it to cogsd\n"
        "  {}  the agent token: cogsd presents it to the agent\n"
        "Start the host's agent with:\n"
        "  cogs-compute --host {} --control-token-file {} --token-file {} --control-url ...\n",
        name, Cell(*e, "token_id"), revoked.empty() ? "" : "; revoked: " + revoked, host_file, agent_file,
        name, host_file, agent_file);
    return 0;
}

// ---- host drain ---------------------------------------------------------------------------------

int HostDrain(Invocation& inv, const Resource& hosts, const std::string& name, const std::string& reason,
              bool wait) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    json::value body = json::object{};
    if (!reason.empty()) {
        body.as_object()["reason"] = reason;
    }
    auto reply = api->Call("POST", hosts.Path(name) + "/drain", &body);
    if (!reply) {
        return inv.Fail(reply.error());
    }
    if (!wait) {
        return FinishAccepted(inv, hosts, *reply, false, "", name);
    }
    std::string last;
    while (!inv.Stopped()) {
        auto servers = api->List("/v1/servers?host=" + http::UrlEncode(name));
        if (!servers) {
            return inv.Fail(servers.error());
        }
        std::map<std::string, int> by_status;
        for (const auto& v : *servers) {
            if (v.is_object()) ++by_status[Cell(v.as_object(), "status")];
        }
        if (servers->empty()) {
            inv.out() << "host " << name << " is drained: no server left; it stays disabled\n";
            return 0;
        }
        std::string line = fmt::format("host {}: {} servers left", name, servers->size());
        for (const auto& [status, n] : by_status) {
            line += fmt::format(", {} {}", n, status);
        }
        if (line != last) {
            inv.out() << line << "\n";
            inv.out().flush();
            last = line;
        }
        const int movable = by_status["ACTIVE"] + by_status["SHUTOFF"] + by_status["MIGRATING"] +
                            by_status["REBUILD"] + by_status["STOPPING"];
        if (movable == 0) {
            inv.err() << "cogs: host " << name << ": " << servers->size()
                      << " servers cannot be migrated (see cogs server list --host " << name << ")\n";
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    return 130;
}

// ---- server console -----------------------------------------------------------------------------

// The console's text for a terminal: lines and tabs kept, every other control character escaped
// (Printable), so that a guest cannot drive the operator's terminal.
std::string ConsoleText(std::string_view text) {
    std::string out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find_first_of("\n\t", start);
        if (end == std::string_view::npos) {
            out += Printable(text.substr(start));
            break;
        }
        out += Printable(text.substr(start, end - start));
        out.push_back(text[end]);
        start = end + 1;
    }
    return out;
}

// `length`: nullopt for all of it; any other value is the API's to check (400 naming it).
int ServerConsole(Invocation& inv, const Resource& servers, const std::string& ref,
                  std::optional<int64_t> length) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    auto id = ResolveRef(inv, servers, ref);
    if (!id) {
        return inv.Fail(id.error());
    }
    std::string path = servers.Path(*id) + "/console";
    if (length) {
        path += "?length=" + std::to_string(*length);
    }
    auto reply = api->Get(path);
    if (!reply) {
        return inv.Fail(reply.error());
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(*reply);
        return 0;
    }
    const json::value* console = reply->is_object() ? reply->as_object().if_contains("console") : nullptr;
    const json::value* output =
        console != nullptr && console->is_object() ? console->as_object().if_contains("output") : nullptr;
    const std::string text = output != nullptr && output->is_string() ? std::string(output->as_string()) : "";
    inv.out() << ConsoleText(text);
    if (!text.empty() && text.back() != '\n') {
        inv.out() << "\n";
    }
    return 0;
}

// ---- project quotas -----------------------------------------------------------------------------

// The flags of `quota set` and the quotas they set.
constexpr std::pair<const char*, const char*> kQuotas[] = {
    {"--servers", "servers"},   {"--vcpus", "vcpus"},         {"--ram-mb", "ram_mb"},
    {"--volumes", "volumes"},   {"--volume-gb", "volume_gb"}, {"--ports", "ports"},
    {"--networks", "networks"}, {"--subnets", "subnets"},     {"--server-groups", "server_groups"}};

// Prints a project's quotas after setting those in `set`, if any (PUT, then GET).
int Quotas(Invocation& inv, const Resource& projects, const std::string& project, const json::object* set) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    auto id = ResolveRef(inv, projects, project);
    if (!id) {
        return inv.Fail(id.error());
    }
    const std::string path = projects.Path(*id) + "/quotas";
    if (set != nullptr) {
        const json::value body = *set;
        if (auto put = api->Call("PUT", path, &body); !put) {
            return inv.Fail(put.error());
        }
    }
    auto reply = api->Get(path);
    if (!reply) {
        return inv.Fail(reply.error());
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(*reply);
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
    inv.out() << t.Render();
    return 0;
}

int QuotaShow(Invocation& inv, const Resource& projects, const std::string& project) {
    return Quotas(inv, projects, project, nullptr);
}

// `set` reads its flags from the parsed command itself: only the quotas given are sent.
int QuotaSet(Invocation& inv, const Resource& projects, const std::string& project, const CLI::App& set) {
    json::object values;
    std::string names;
    for (const auto& [flag, key] : kQuotas) {
        if (const CLI::Option* o = set.get_option(flag); o->count() > 0) {
            values[key] = o->as<int64_t>();
        }
        names += (names.empty() ? "" : ", ") + std::string(flag);
    }
    if (values.empty()) {
        return inv.Usage(fmt::format("name at least one quota to set ({})", names));
    }
    return Quotas(inv, projects, project, &values);
}

// ---- workflows ----------------------------------------------------------------------------------

int WorkflowShow(Invocation& inv, const Resource& workflows, const std::string& id) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    auto reply = api->Get(workflows.Path(id));
    if (!reply) {
        return inv.Fail(reply.error());
    }
    std::ostream& out = inv.out();
    if (inv.Json()) {
        out << PrettyJson(*reply);
        return 0;
    }
    const json::object& w = Unwrap(*reply);
    const auto created = ParseRfc3339(Cell(w, "created_at"));
    const auto finished = ParseRfc3339(Cell(w, "finished_at"));
    out << fmt::format("workflow {}  {}  {}\n", Cell(w, "id"), Cell(w, "type"), Cell(w, "state"));
    if (const std::string reason = Cell(w, "reason"); !reason.empty()) {
        out << "reason: " << reason << "\n";
    }
    if (const std::string kind = Cell(w, "resource_kind"); !kind.empty()) {
        out << fmt::format("resource: {} {}\n", kind, Cell(w, "resource_id"));
    }
    if (const std::string trace = Cell(w, "trace_id"); !trace.empty()) {
        out << "trace: " << trace << "\n";
    }
    out << "created: " << Cell(w, "created_at");
    if (created && finished) {
        out << "  took " << FormatDurationMs(*finished - *created);
    }
    out << "\n\n";
    Table t({"STEP", "STATE", "ATTEMPTS", "START", "DURATION", "ERROR"});
    if (const auto* steps = w.if_contains("steps"); steps && steps->is_array()) {
        for (const auto& sv : steps->as_array()) {
            if (!sv.is_object()) {
                continue;
            }
            const auto& s = sv.as_object();
            const auto started = ParseRfc3339(Cell(s, "started_at"));
            const auto ended = ParseRfc3339(Cell(s, "finished_at"));
            std::string start = started && created ? "+" + FormatDurationMs(*started - *created) : "";
            std::string duration = started && ended ? FormatDurationMs(*ended - *started)
                                   : started        ? "..."
                                                    : "";
            t.AddRow(
                {Cell(s, "name"), Cell(s, "state"), Cell(s, "attempts"), start, duration, Cell(s, "error")});
        }
    }
    out << t.Render();
    return 0;
}

// POST /v1/workflows/{id}/<what>; `says` what follows "workflow ID: " on success.
int WorkflowPost(Invocation& inv, const Resource& workflows, const std::string& id, const char* what,
                 const char* says) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    const json::value body = json::object{};
    auto r = api->Call("POST", workflows.Path(id) + "/" + what, &body);
    if (!r) {
        return inv.Fail(r.error());
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(*r);
    } else {
        inv.out() << "workflow " << id << ": " << says << "\n";
    }
    return 0;
}

int WorkflowCancel(Invocation& inv, const Resource& workflows, const std::string& id) {
    return WorkflowPost(inv, workflows, id, "cancel", "cancel requested; it rolls back");
}

int WorkflowRetry(Invocation& inv, const Resource& workflows, const std::string& id) {
    return WorkflowPost(inv, workflows, id, "retry", "retried; its compensations run again");
}

}  // namespace

void AddHostDrain(Invocation& inv, const Resource& hosts, const Verb& verb, CLI::App* group) {
    struct Options {
        std::string ref, reason;
        bool wait = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* c = inv.Leaf(group, verb.name, verb.help,
                           [&inv, &hosts, o] { return HostDrain(inv, hosts, o->ref, o->reason, o->wait); });
    c->add_option("ref", o->ref, hosts.ref_help)->required();
    c->add_option("--reason", o->reason, "why (shown with the host)");
    c->add_flag("--wait", o->wait, "follow until no server is left on the host");
}

void AddHostEnroll(Invocation& inv, const Resource& hosts, const Verb& verb, CLI::App* group) {
    struct Options {
        std::string ref, out;
    };
    auto o = std::make_shared<Options>();
    CLI::App* c = inv.Leaf(group, verb.name, verb.help,
                           [&inv, &hosts, o] { return HostEnroll(inv, hosts, o->ref, o->out); });
    c->add_option("ref", o->ref, hosts.ref_help)->required();
    c->add_option("--out", o->out,
                  "write the credentials to DIR/host.token and DIR/agent.token (mode 0600) instead of "
                  "printing them");
}

void AddServerConsole(Invocation& inv, const Resource& servers, const Verb& verb, CLI::App* group) {
    struct Options {
        std::string ref;
        int64_t length = 0;
        CLI::Option* length_option = nullptr;
    };
    auto o = std::make_shared<Options>();
    CLI::App* c = inv.Leaf(group, verb.name, verb.help, [&inv, &servers, o] {
        return ServerConsole(
            inv, servers, o->ref,
            o->length_option->count() > 0 ? std::optional<int64_t>(o->length) : std::nullopt);
    });
    c->add_option("ref", o->ref, servers.ref_help)->required();
    o->length_option =
        c->add_option("--length", o->length, "only the last N lines (1-10000; default: all the API keeps)")
            ->type_name("N");
}

void AddProjectQuota(Invocation& inv, const Resource& projects, const Verb& verb, CLI::App* group) {
    CLI::App* q = group->add_subcommand(verb.name, verb.help);
    q->require_subcommand(1);
    AddRefCommand(inv, projects, q, "show", "show quotas and usage", QuotaShow);
    struct Options {
        std::string ref;
        CLI::App* command = nullptr;
    };
    auto o = std::make_shared<Options>();
    o->command = inv.Leaf(q, "set", "set quotas (-1: unlimited)",
                          [&inv, &projects, o] { return QuotaSet(inv, projects, o->ref, *o->command); });
    o->command->add_option("ref", o->ref, projects.ref_help)->required();
    for (const auto& [flag, key] : kQuotas) {
        // Checked at the parse (a usage error, exit 2), as the API would refuse it: -1 .. 2^61.
        o->command->add_option(flag)
            ->type_name("N")
            ->check(CLI::Range(int64_t{-1}, INT64_MAX / 4))
            ->description(std::string(flag).substr(2) + " limit (-1: unlimited)");
    }
}

void AddWorkflowShow(Invocation& inv, const Resource& workflows, const Verb& verb, CLI::App* group) {
    AddRefCommand(inv, workflows, group, verb.name, verb.help, WorkflowShow);
}

void AddWorkflowCancel(Invocation& inv, const Resource& workflows, const Verb& verb, CLI::App* group) {
    AddRefCommand(inv, workflows, group, verb.name, verb.help, WorkflowCancel);
}

void AddWorkflowRetry(Invocation& inv, const Resource& workflows, const Verb& verb, CLI::App* group) {
    AddRefCommand(inv, workflows, group, verb.name, verb.help, WorkflowRetry);
}

void AddWhoami(Invocation& inv, CLI::App& app) {
    inv.Leaf(&app, "whoami", "the project and role of the token in use", [&inv] {
        ApiClient* api = inv.Api();
        if (!api) {
            return inv.FailSettings();
        }
        auto r = api->Get("/v1/whoami");
        if (!r) {
            return inv.Fail(r.error());
        }
        inv.out() << (inv.Json() ? PrettyJson(*r)
                                 : KeyValueTable(r->is_object() ? r->as_object() : json::object{}));
        return 0;
    });
}

void AddExtension(Invocation& inv, CLI::App& app) {
    CLI::App* ext = app.add_subcommand(
        "extension", "what cogsd's configuration directory adds: services, workflows, hooks, kinds (admin)");
    ext->require_subcommand(1);
    const auto show = [&inv](bool reload) {
        ApiClient* api = inv.Api();
        if (!api) {
            return inv.FailSettings();
        }
        const json::value empty = json::object{};
        auto r = reload ? api->Call("POST", "/v1/extensions/reload", &empty) : api->Get("/v1/extensions");
        if (!r) {
            return inv.Fail(r.error());
        }
        if (inv.Json() || !r->is_object()) {
            inv.out() << PrettyJson(*r);
            return 0;
        }
        const json::object& o = r->as_object();
        inv.out() << "config_dir  " << Cell(o, "config_dir") << "\n";
        for (const char* list : {"services", "hooks", "kinds"}) {
            const json::value* items = o.if_contains(list);
            inv.out() << "\n" << list << ":\n";
            if (items == nullptr || !items->is_array() || items->as_array().empty()) {
                inv.out() << "  (none)\n";
                continue;
            }
            for (const json::value& item : items->as_array()) {
                inv.out() << "  " << json::serialize(item) << "\n";
            }
        }
        return 0;
    };
    inv.Leaf(ext, "list", "the configured services (never their tokens) and hooks",
             [show] { return show(false); });
    inv.Leaf(
        ext, "reload",
        "apply the configuration directory again; a refused one changes nothing and names the file and line",
        [show] { return show(true); });
}

}  // namespace cogs::cli
