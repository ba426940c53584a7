#include "cogs/cli/internal/kind_commands.h"

#include <boost/json/parse.hpp>

#include <CLI/CLI.hpp>
#include <optional>

#include "cogs/cli/internal/output.h"
#include "cogs/cli/internal/wait.h"
#include "cogs/runtime/files.h"
#include "cogs/workflow/yaml_reader.h"

namespace cogs::cli {
namespace {

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
    const workflow::YamlReader reader(source);
    std::optional<std::string> body;
    COGS_TRY(reader.ForEachDocument(text, [&](const YAML::Node& doc) -> Status {
        if (doc.IsNull()) return Ok();
        if (body) return reader.Fail(doc, "one resource a file: a second document");
        if (!doc.IsMap()) return reader.Fail(doc, "the body must be a mapping of the resource's fields");
        COGS_ASSIGN_OR_RETURN(body, reader.Json(doc, "the body"));
        return Ok();
    }));
    if (!body)
        return MakeError(ErrorCode::kInvalidArgument,
                         source + ": empty: the body must be a mapping of the resource's fields");
    return *body;
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
