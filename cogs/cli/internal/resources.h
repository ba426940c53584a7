// The resources the CLI knows, as one table (resources.cc), the way kubectl drives its verbs over
// resource kinds: for each resource its API collection, its singular name, how a reference to it is
// resolved, its list columns and its commands — create, list, show, delete, actions, events — each
// with its help and flags, and where each flag goes in the request. The generic verbs (verbs.h) are
// written once and read this table; a command the table cannot express (a workflow's timeline, a
// host's drain, a project's quotas) names the function that registers it (special_commands.h).
//
// `cogs <command> --help` lists the resources in the table's order and each one's commands in the
// order of its `verbs`; each command's options in the order of its flags.
//
// Internal to cogs/cli; the table is constant, built on first use.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

namespace CLI {
class App;
}

namespace cogs::cli {

namespace json = boost::json;

class Invocation;
struct Resource;
struct Verb;

// A column of a list table: its header and how its cell comes from one item.
struct Column {
    std::string header;
    std::function<std::string(const json::object&)> cell;
};

// How a REF typed by the user becomes the id in the resource's path.
enum class Naming {
    kByName,        // a UUID is an id; anything else is looked up with ?name= and must match once
    kByNameOrAsIs,  // the same, but a name nothing lists is passed on (the API takes it in the path)
    kAsIs,          // used as typed (hosts are named by their names; tokens and workflows by ids)
};

// A flag of a command and the key of the request it fills: the body's (create, actions) or the
// query's (list, delete). An optional text left empty, or an optional positive integer not given,
// is left out of the request (an optional integer that may be 0 is sent as 0).
struct Flag {
    enum class Type {
        kText,    // one string (TEXT)
        kInt,     // one integer (INT)
        kTexts,   // a repeatable string (TEXT ...): a JSON array
        kSwitch,  // a flag without a value: `true` when given
    };
    std::string name;  // "--size"; without dashes, a positional argument ("name")
    Type type = Type::kText;
    std::string key;  // "size_gb"
    std::string help;
    bool required = false;
    bool positive = false;            // an integer above 0
    std::vector<std::string> one_of;  // the values allowed, if any
    std::string ids_of;               // a collection ("networks"): each name given is resolved to an id
    bool ranges = false;              // each "START-END" becomes {"start": START, "end": END}
    bool file_base64 = false;         // the value names a file: its bytes go base64-encoded (user_data)
    // The value names a file ("-": standard input) whose first line, without its line end, is what
    // goes (a password: never on the command line, where `ps` shows it).
    bool file_line = false;

    Flag&& Required() && {
        required = true;
        return std::move(*this);
    }
    Flag&& Positive() && {
        positive = true;
        return std::move(*this);
    }
    Flag&& OneOf(std::vector<std::string> values) && {
        one_of = std::move(values);
        return std::move(*this);
    }
    Flag&& IdsOf(std::string collection) && {
        ids_of = std::move(collection);
        return std::move(*this);
    }
    Flag&& Ranges() && {
        ranges = true;
        return std::move(*this);
    }
    Flag&& FileBase64() && {
        file_base64 = true;
        return std::move(*this);
    }
    Flag&& FileLine() && {
        file_line = true;
        return std::move(*this);
    }
};

Flag Text(std::string name, std::string key, std::string help);
Flag Int(std::string name, std::string key, std::string help);
Flag Texts(std::string name, std::string key, std::string help);
Flag Switch(std::string name, std::string key, std::string help);

// Registers a command the generic verbs cannot express, under the resource's command group.
using SpecialCommand = void (*)(Invocation& inv, const Resource& resource, const Verb& verb, CLI::App* group);

// One command of a resource: `cogs <resource> <name> ...`.
struct Verb {
    enum class Kind {
        kCreate,   // POST /v1/<collection>, the body from the flags; prints the resource
        kList,     // GET /v1/<collection>?<flags> page by page; a table of the columns
        kShow,     // GET /v1/<collection>/<id>
        kDelete,   // DELETE /v1/<collection>/<id>?<flags>
        kAction,   // POST /v1/<collection>/<id>/<name>, the body from the flags
        kEvents,   // GET /v1/<collection>/<id>/events (cogs/cli/internal/observe_commands.h)
        kSpecial,  // registered by `special`
    };
    Kind kind;
    std::string name;  // the command: "create", "revoke", "start"
    std::string help;
    std::vector<Flag> flags{};
    bool limit = false;    // list: --limit N
    bool wait = false;     // --wait: follow the operation to its end
    std::string expect{};  // with --wait: the status that means success ("" = any stable status)
    std::string note{};    // printed on stderr after a success shown as a table
    SpecialCommand special = nullptr;

    Verb&& Limit() && {
        limit = true;
        return std::move(*this);
    }
    Verb&& Wait(std::string status = "") && {
        wait = true;
        expect = std::move(status);
        return std::move(*this);
    }
    Verb&& Named(std::string command) && {
        name = std::move(command);
        return std::move(*this);
    }
    Verb&& Note(std::string text) && {
        note = std::move(text);
        return std::move(*this);
    }
};

Verb Create(std::string help, std::vector<Flag> flags);
Verb List(std::string help, std::vector<Flag> filters = {});
Verb Show(std::string help);
Verb Delete(std::string help, std::vector<Flag> flags = {});
Verb Action(std::string name, std::string help, std::vector<Flag> flags = {});
// `<resource> events REF`: its history (which outlives it: an id once it is deleted).
Verb Events();
Verb Special(std::string name, std::string help, SpecialCommand registers);

struct Resource {
    std::string noun;        // "server group": in messages ("server group web deleted") and help
    std::string collection;  // "server-groups": the path under /v1; with '_' for '-', its list's key
    std::string help;        // the command group's help
    std::string ref_help;    // the help of a command's REF ("server name or id")
    Naming naming = Naming::kByName;
    std::vector<Column> columns{};
    std::vector<Verb> verbs{};  // in the order `cogs <command> --help` lists them

    // "server-group": the command group.
    std::string Command() const;
    // "server_groups": the key of the list in the API's answer and in `list -o json`.
    std::string ListKey() const;
    // "/v1/server-groups/<id>", the id URL-encoded.
    std::string Path(const std::string& id) const;
};

// Every resource the CLI knows, in the order `cogs --help` lists them.
const std::vector<Resource>& Resources();

}  // namespace cogs::cli
