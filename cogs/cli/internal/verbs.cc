#include "cogs/cli/internal/verbs.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "cogs/cli/internal/invocation.h"
#include "cogs/cli/internal/observe_commands.h"
#include "cogs/cli/internal/output.h"
#include "cogs/http/server.h"
#include "cogs/runtime/files.h"
#include "cogs/wire/base64.h"

namespace cogs::cli {
namespace {

// What the user gave for one Flag (the member of its type).
struct FlagValue {
    const CLI::Option* option = nullptr;  // whether it was given
    std::string text;
    int64_t number = 0;
    std::vector<std::string> texts;
    bool on = false;
};

// The options of one generic command. CLI11 keeps the addresses of the values: `values` has one
// element per flag from the start and never grows.
struct VerbOptions {
    explicit VerbOptions(size_t flags) : values(flags) {}
    std::string ref;
    std::vector<FlagValue> values;
    int limit = 0;
    bool wait = false;
    EventsOptions events;
};

void AddFlags(CLI::App* c, const std::vector<Flag>& flags, std::vector<FlagValue>& values) {
    for (size_t i = 0; i < flags.size(); ++i) {
        const Flag& f = flags[i];
        FlagValue& v = values[i];
        // Each type binds its own member: CLI11 names the value's type in --help (TEXT, INT, TEXT ...).
        CLI::Option* o = f.type == Flag::Type::kText    ? c->add_option(f.name, v.text, f.help)
                         : f.type == Flag::Type::kInt   ? c->add_option(f.name, v.number, f.help)
                         : f.type == Flag::Type::kTexts ? c->add_option(f.name, v.texts, f.help)
                                                        : c->add_flag(f.name, v.on, f.help);
        v.option = o;
        if (f.required) {
            o->required();
        }
        if (f.positive) {
            o->check(CLI::PositiveNumber);
        }
        if (!f.one_of.empty()) {
            o->check(CLI::IsMember(f.one_of));
        }
    }
}

// The first line of the file `given` names ("-": standard input), without its line end, into `line`.
// Returns 0, or the exit code of the failure it printed (which names the file, never what it holds).
int ReadFirstLine(Invocation& inv, const Flag& f, const std::string& given, std::string& line) {
    // Bounded: the API refuses what is longer anyway, naming the field.
    constexpr size_t kMaxLineBytes = 64 << 10;
    std::ifstream file;
    std::istream* in = &inv.in();
    if (given != "-") {
        file.open(given, std::ios::binary);
        if (!file) {
            return inv.Usage(fmt::format("{} '{}': {}", f.name, given, std::strerror(errno)));
        }
        in = &file;
    }
    line.clear();
    char c = 0;
    while (line.size() <= kMaxLineBytes && in->get(c) && c != '\n') {
        line.push_back(c);
    }
    if (line.size() > kMaxLineBytes) {
        return inv.Usage(
            fmt::format("{} '{}': its first line is longer than {} bytes", f.name, given, kMaxLineBytes));
    }
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    if (line.empty()) {
        return inv.Usage(fmt::format("{} '{}': its first line is empty", f.name, given));
    }
    return 0;
}

// One value given for `f` as the request wants it: as typed, the id it names, or {start, end}.
// Returns 0, or the exit code of the failure it printed.
int Convert(Invocation& inv, const Flag& f, const std::string& given, json::value& out) {
    if (f.ranges) {
        const auto dash = given.find('-');
        if (dash == std::string::npos) {
            return inv.Usage(fmt::format("{} '{}' must be START-END", f.name, given));
        }
        out = json::object{{"start", given.substr(0, dash)}, {"end", given.substr(dash + 1)}};
    } else if (f.file_base64) {
        // Read whole, but bounded: the API refuses what is over its own limit, naming the field.
        constexpr uintmax_t kMaxFileBytes = 1 << 20;
        std::error_code ec;
        const uintmax_t size = std::filesystem::file_size(given, ec);
        if (ec) {
            return inv.Usage(fmt::format("{} '{}': {}", f.name, given, ec.message()));
        }
        if (size > kMaxFileBytes) {
            return inv.Usage(
                fmt::format("{} '{}': {} bytes, more than {}", f.name, given, size, kMaxFileBytes));
        }
        auto bytes = runtime::ReadFile(given);
        if (!bytes) {
            return inv.Usage(fmt::format("{} '{}': {}", f.name, given, bytes.error().message));
        }
        out = wire::EncodeBase64(*bytes);
    } else if (f.file_line) {
        std::string line;
        if (const int rc = ReadFirstLine(inv, f, given, line); rc != 0) {
            return rc;
        }
        out = std::move(line);
    } else if (!f.ids_of.empty()) {
        auto id = inv.Api()->Resolve(f.ids_of, given);
        if (!id) {
            return inv.Fail(id.error());
        }
        out = *id;
    } else {
        out = given;
    }
    return 0;
}

// The request's fields from the flags given, in the flags' order (an optional text left empty is
// left out). Returns 0, or the exit code of the failure it printed.
int Fill(Invocation& inv, const std::vector<Flag>& flags, const std::vector<FlagValue>& values,
         json::object& into) {
    for (size_t i = 0; i < flags.size(); ++i) {
        const Flag& f = flags[i];
        const FlagValue& v = values[i];
        int rc = 0;
        if (f.type == Flag::Type::kText && (f.required || !v.text.empty())) {
            rc = Convert(inv, f, v.text, into[f.key]);
        } else if (f.type == Flag::Type::kTexts && !v.texts.empty()) {
            json::array& items = into[f.key].emplace_array();
            for (size_t j = 0; j < v.texts.size() && rc == 0; ++j) {
                rc = Convert(inv, f, v.texts[j], items.emplace_back(nullptr));
            }
        } else if (f.type == Flag::Type::kInt && (f.required || !f.positive || v.option->count() > 0)) {
            into[f.key] = v.number;
        } else if (f.type == Flag::Type::kSwitch && v.on) {
            into[f.key] = true;
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

// "?k=v&k2=v2" of the fields (values URL-encoded), "" if none.
std::string Query(const json::object& fields) {
    std::string q;
    for (const auto& [k, v] : fields) {
        q += fmt::format("{}{}={}", q.empty() ? '?' : '&', std::string_view(k),
                         http::UrlEncode(v.is_string() ? std::string(v.as_string()) : Cell(&v)));
    }
    return q;
}

// A generic verb's request, once its flags are read and its REF resolved.
struct Request {
    ApiClient& api;
    json::object fields;  // from the flags: the body (create, actions) or the query (list, delete)
    std::string id;       // the REF's id, for the verbs that take one
};

// A bulk create's answer ({"reservation_id", "<collection>": [{id, name, status, workflow_id}]}):
// with `wait` each resource is followed in turn to its end; then the reservation and a table of
// them. Fails (after the table) with the first that did not end as expected.
int FinishBulk(Invocation& inv, const Resource& r, const json::object& reply, bool wait,
               const std::string& expect) {
    const json::value* listed = reply.if_contains(r.ListKey());
    json::array made = listed != nullptr && listed->is_array() ? listed->as_array() : json::array();
    std::optional<ApiFailure> failed;
    for (size_t i = 0; wait && i < made.size(); ++i) {
        if (!made[i].is_object()) {
            continue;
        }
        const json::object& item = made[i].as_object();
        WaitTarget target;
        target.what = fmt::format("{} {}", r.noun, Cell(item, "name"));
        target.path = r.Path(Cell(item, "id"));
        target.workflow_id = Cell(item, "workflow_id");
        target.expect = expect;
        auto done = inv.Follow(target);
        if (!done) {
            if (!failed) failed = done.error();
            continue;
        }
        made[i] = Unwrap(*done);
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(
            json::object{{"reservation_id", Cell(reply, "reservation_id")}, {r.ListKey(), made}});
    } else {
        inv.out() << fmt::format("reservation {}: {} {}\n", Cell(reply, "reservation_id"), made.size(),
                                 made.size() == 1 ? r.noun : r.collection);
        std::vector<std::string> headers;
        for (const auto& c : r.columns) {
            headers.push_back(c.header);
        }
        Table t(headers);
        for (const auto& item : made) {
            std::vector<std::string> row;
            for (const auto& c : r.columns) {
                row.push_back(item.is_object() ? c.cell(item.as_object()) : "");
            }
            t.AddRow(std::move(row));
        }
        inv.out() << t.Render();
    }
    return failed ? inv.Fail(*failed) : 0;
}

int RunCreate(Invocation& inv, const Resource& r, const Verb& verb, const VerbOptions& o, Request& req) {
    const json::value body = req.fields;
    auto reply = req.api.Call("POST", "/v1/" + r.collection, &body);
    if (!reply) {
        return inv.Fail(reply.error());
    }
    if (reply->is_object() && reply->as_object().contains("reservation_id")) {
        return FinishBulk(inv, r, reply->as_object(), o.wait, verb.expect);
    }
    const int rc = FinishAccepted(inv, r, *reply, o.wait, verb.expect, Cell(req.fields, "name"));
    if (rc == 0 && !verb.note.empty() && !inv.Json()) {
        inv.err() << verb.note << "\n";
    }
    return rc;
}

int RunList(Invocation& inv, const Resource& r, const VerbOptions& o, Request& req) {
    auto items = req.api.List("/v1/" + r.collection + Query(req.fields), o.limit);
    if (!items) {
        return inv.Fail(items.error());
    }
    if (inv.Json()) {
        inv.out() << PrettyJson(json::object{{r.ListKey(), std::move(*items)}});
        return 0;
    }
    std::vector<std::string> headers;
    for (const auto& c : r.columns) {
        headers.push_back(c.header);
    }
    Table t(headers);
    for (const auto& item : *items) {
        if (!item.is_object()) {
            continue;
        }
        std::vector<std::string> row;
        for (const auto& c : r.columns) {
            row.push_back(c.cell(item.as_object()));
        }
        t.AddRow(std::move(row));
    }
    inv.out() << t.Render();
    return 0;
}

int RunShow(Invocation& inv, const Resource& r, Request& req) {
    auto reply = req.api.Get(r.Path(req.id));
    if (!reply) {
        return inv.Fail(reply.error());
    }
    inv.PrintObject(*reply);
    return 0;
}

int RunDelete(Invocation& inv, const Resource& r, const VerbOptions& o, Request& req) {
    auto reply = req.api.Call("DELETE", r.Path(req.id) + Query(req.fields));
    if (!reply) {
        return inv.Fail(reply.error());
    }
    const std::string what = fmt::format("{} {}", r.noun, o.ref);
    if (o.wait && !reply->is_null()) {
        WaitTarget target;
        target.what = what;
        target.path = r.Path(req.id);
        target.workflow_id = Cell(Unwrap(*reply), "workflow_id");
        target.gone = true;
        if (auto done = inv.Follow(target); !done) {
            return inv.Fail(done.error());
        }
        if (!inv.Json()) {
            inv.out() << what << " deleted\n";
        }
        return 0;
    }
    if (inv.Json()) {
        if (!reply->is_null()) {
            inv.out() << PrettyJson(*reply);
        }
    } else if (reply->is_null()) {
        inv.out() << what << " deleted\n";
    } else {
        const json::object& d = Unwrap(*reply);
        inv.out() << fmt::format(
            "{}: {}{}\n", what, Cell(d, "status"),
            d.contains("workflow_id") ? " (workflow " + Cell(d, "workflow_id") + ")" : "");
    }
    return 0;
}

int RunAction(Invocation& inv, const Resource& r, const Verb& verb, const VerbOptions& o, Request& req) {
    const json::value body = req.fields;
    auto reply = req.api.Call("POST", r.Path(req.id) + "/" + verb.name, &body);
    if (!reply) {
        return inv.Fail(reply.error());
    }
    if (reply->is_null() || Unwrap(*reply).empty()) {
        // An action answered without the resource: read it to have something to follow and print.
        reply = req.api.Get(r.Path(req.id));
        if (!reply) {
            return inv.Fail(reply.error());
        }
    }
    const int rc = FinishAccepted(inv, r, *reply, o.wait, verb.expect, o.ref);
    if (rc == 0 && !verb.note.empty() && !inv.Json()) {
        inv.err() << verb.note << "\n";
    }
    return rc;
}

// The settings, the flags (their names resolved first), the REF; then the verb's request.
int RunVerb(Invocation& inv, const Resource& r, const Verb& verb, const VerbOptions& o) {
    ApiClient* api = inv.Api();
    if (!api) {
        return inv.FailSettings();
    }
    Request req{*api, {}, {}};
    if (const int rc = Fill(inv, verb.flags, o.values, req.fields); rc != 0) {
        return rc;
    }
    if (verb.kind != Verb::Kind::kCreate && verb.kind != Verb::Kind::kList) {
        auto id = ResolveRef(inv, r, o.ref);
        if (!id) {
            return inv.Fail(id.error());
        }
        req.id = std::move(*id);
    }
    switch (verb.kind) {
        case Verb::Kind::kCreate: return RunCreate(inv, r, verb, o, req);
        case Verb::Kind::kList: return RunList(inv, r, o, req);
        case Verb::Kind::kShow: return RunShow(inv, r, req);
        case Verb::Kind::kDelete: return RunDelete(inv, r, o, req);
        case Verb::Kind::kAction: return RunAction(inv, r, verb, o, req);
        case Verb::Kind::kEvents: return RunEvents(inv, r.Path(req.id) + "/events", {}, o.events, true);
        case Verb::Kind::kSpecial: break;  // registered by its own function, which gives it its action
    }
    return 2;
}

void AddVerb(Invocation& inv, const Resource& r, const Verb& verb, CLI::App* group) {
    if (verb.kind == Verb::Kind::kSpecial) {
        verb.special(inv, r, verb, group);
        return;
    }
    const bool events = verb.kind == Verb::Kind::kEvents;
    auto o = std::make_shared<VerbOptions>(verb.flags.size());
    CLI::App* c = inv.Leaf(group, verb.name, events ? "the " + r.noun + "'s event history" : verb.help,
                           [&inv, &r, &verb, o] { return RunVerb(inv, r, verb, *o); });
    if (events) {
        // A history outlives its resource: once deleted, only the id finds it.
        c->add_option(
             "ref", o->ref,
             r.naming == Naming::kAsIs ? r.noun + " name" : r.noun + " name or id (an id once it is deleted)")
            ->required();
        AddEventsOptions(c, o->events);
        return;
    }
    if (verb.kind != Verb::Kind::kCreate && verb.kind != Verb::Kind::kList) {
        c->add_option("ref", o->ref, r.ref_help)->required();
    }
    AddFlags(c, verb.flags, o->values);
    if (verb.limit) {
        c->add_option("--limit", o->limit, "at most this many");
    }
    if (verb.wait) {
        c->add_flag("--wait", o->wait, "follow the operation to its end");
    }
}

}  // namespace

ApiResult<std::string> ResolveRef(Invocation& inv, const Resource& resource, const std::string& ref) {
    if (resource.naming == Naming::kAsIs) {
        return ref;
    }
    auto id = inv.Api()->Resolve(resource.collection, ref);
    if (!id && resource.naming == Naming::kByNameOrAsIs && id.error().status == 404) {
        return ref;
    }
    return id;
}

int FinishAccepted(Invocation& inv, const Resource& resource, const json::value& reply, bool wait,
                   const std::string& expect, const std::string& label) {
    const json::object& r = Unwrap(reply);
    const std::string id = Cell(r, "id");
    if (!wait || id.empty()) {
        inv.PrintObject(reply);
        return 0;
    }
    WaitTarget target;
    target.what = fmt::format("{} {}", resource.noun, label.empty() ? id : label);
    target.path = resource.Path(id);
    target.workflow_id = Cell(r, "workflow_id");
    target.expect = expect;
    auto done = inv.Follow(target);
    if (!done) {
        return inv.Fail(done.error());
    }
    inv.PrintObject(*done);
    return 0;
}

void AddResourceCommands(Invocation& inv, CLI::App& app, const Resource& resource) {
    CLI::App* group = app.add_subcommand(resource.Command(), resource.help);
    group->require_subcommand(1);
    for (const Verb& verb : resource.verbs) {
        AddVerb(inv, resource, verb, group);
    }
}

}  // namespace cogs::cli
