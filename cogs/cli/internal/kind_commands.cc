#include "cogs/cli/internal/kind_commands.h"

#include <yaml-cpp/yaml.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <CLI/CLI.hpp>
#include <charconv>

#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/wait.h"
#include "cogs/runtime/files.h"

namespace cogs::cli {
namespace {

Result<json::value> ToJson(const YAML::Node& n, const std::string& source, int depth) {
    if (depth > 32) return MakeError(ErrorCode::kInvalidArgument, source + ": nested too deep");
    if (n.IsNull()) return json::value(nullptr);
    if (n.IsScalar()) {
        const std::string& s = n.Scalar();
        if (n.Tag() == "?") {
            if (s == "true" || s == "false") return json::value(s == "true");
            int64_t v = 0;
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return json::value(v);
        }
        return json::value(s);
    }
    if (n.IsSequence()) {
        json::array a;
        for (const YAML::Node& item : n) {
            COGS_ASSIGN_OR_RETURN(auto v, ToJson(item, source, depth + 1));
            a.push_back(std::move(v));
        }
        return json::value(std::move(a));
    }
    json::object o;
    for (const auto& kv : n) {
        COGS_ASSIGN_OR_RETURN(auto v, ToJson(kv.second, source, depth + 1));
        o[kv.first.Scalar()] = std::move(v);
    }
    return json::value(std::move(o));
}

// The singular key of an answer {"<kind>": {...}}: its one object member.
const json::object* Inner(const json::value& v) {
    if (!v.is_object() || v.as_object().size() != 1) return nullptr;
    const json::value& inner = v.as_object().begin()->value();
    return inner.is_object() ? &inner.as_object() : nullptr;
}

std::string Path(const std::string& collection, const std::string& id = "") {
    return "/v1/" + collection + (id.empty() ? "" : "/" + id);
}

}  // namespace

Result<std::string> YamlBodyToJson(const std::string& text, const std::string& source) {
    try {
        const YAML::Node doc = YAML::Load(text);
        if (!doc.IsMap()) {
            return MakeError(ErrorCode::kInvalidArgument,
                             source + ": the body must be a mapping of the resource's fields");
        }
        COGS_ASSIGN_OR_RETURN(auto v, ToJson(doc, source, 0));
        return json::serialize(v);
    } catch (const YAML::Exception& e) {
        return MakeError(
            ErrorCode::kInvalidArgument,
            source + (e.mark.line >= 0 ? ":" + std::to_string(e.mark.line + 1) : "") + ": " + e.msg);
    }
}

void AddKindCommands(Invocation& inv, CLI::App& app) {
    struct Args {
        std::string collection, id, file;
        bool wait = false;
    };
    auto args = std::make_shared<Args>();

    CLI::App* get = inv.Leaf(
        &app, "get", "list a collection of the API, or show one of its resources (any kind)", [&inv, args] {
            ApiClient* api = inv.Api();
            if (!api) return inv.FailSettings();
            if (!args->id.empty()) {
                auto r = api->Get(Path(args->collection, args->id));
                if (!r) return inv.Fail(r.error());
                const json::object* o = Inner(*r);
                inv.out() << (inv.Json() || o == nullptr ? PrettyJson(*r) : KeyValueTable(*o));
                return 0;
            }
            auto items = api->List(Path(args->collection));
            if (!items) return inv.Fail(items.error());
            if (inv.Json()) {
                inv.out() << PrettyJson(json::object{{args->collection, *items}});
                return 0;
            }
            Table table({"ID", "NAME", "STATUS", "PROJECT"});
            for (const json::value& item : *items) {
                if (!item.is_object()) continue;
                const json::object& o = item.as_object();
                table.AddRow({Cell(o, "id"), Cell(o, "name"), Cell(o, "status"), Cell(o, "project_id")});
            }
            inv.out() << table.Render();
            return 0;
        });
    get->add_option("collection", args->collection, "the collection: servers, dns_zones, ...")->required();
    get->add_option("id", args->id, "one resource's id");

    CLI::App* create =
        inv.Leaf(&app, "create", "create a resource of any kind from a YAML or JSON file", [&inv, args] {
            ApiClient* api = inv.Api();
            if (!api) return inv.FailSettings();
            auto text = runtime::ReadFile(args->file);
            if (!text) return inv.Usage("-f " + args->file + ": " + text.error().message);
            auto body = YamlBodyToJson(*text, args->file);
            if (!body) return inv.Usage(body.error().message);
            const json::value parsed = json::parse(*body);
            auto r = api->Call("POST", Path(args->collection), &parsed);
            if (!r) return inv.Fail(r.error());
            const json::object* o = Inner(*r);
            if (args->wait && o != nullptr) {
                const std::string id = Cell(*o, "id");
                WaitTarget target{args->collection + " " + id, Path(args->collection, id),
                                  Cell(*o, "workflow_id"), "ACTIVE"};
                auto done = inv.Follow(target);
                if (!done) return inv.Fail(done.error());
                r = std::move(done);
                o = Inner(*r);
            }
            inv.out() << (inv.Json() || o == nullptr ? PrettyJson(*r) : KeyValueTable(*o));
            return 0;
        });
    create->add_option("collection", args->collection, "the collection: dns_zones, ...")->required();
    create->add_option("-f,--file", args->file, "the resource's fields, a YAML (or JSON) mapping")
        ->required();
    create->add_flag("--wait", args->wait, "follow the create until the resource is ACTIVE (or fails)");

    CLI::App* del = inv.Leaf(&app, "delete", "delete a resource of any kind", [&inv, args] {
        ApiClient* api = inv.Api();
        if (!api) return inv.FailSettings();
        auto r = api->Call("DELETE", Path(args->collection, args->id));
        if (!r) return inv.Fail(r.error());
        if (args->wait) {
            const json::object* o = Inner(*r);
            WaitTarget target{args->collection + " " + args->id, Path(args->collection, args->id),
                              o == nullptr ? "" : Cell(*o, "workflow_id"), "", true};
            auto done = inv.Follow(target);
            if (!done) return inv.Fail(done.error());
        }
        inv.out() << "deleted " << args->collection << " " << args->id << (args->wait ? "" : " (in progress)")
                  << "\n";
        return 0;
    });
    del->add_option("collection", args->collection, "the collection: dns_zones, ...")->required();
    del->add_option("id", args->id, "the resource's id")->required();
    del->add_flag("--wait", args->wait, "wait until it is gone");
}

}  // namespace cogs::cli
