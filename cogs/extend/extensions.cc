// The configuration directory's files (extensions.h); yaml-cpp stays in this file.
#include "cogs/extend/extensions.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "cogs/runtime/files.h"
#include "cogs/workflow/yaml_reader.h"

namespace cogs::extend {
namespace {

namespace fs = std::filesystem;

// A name a workflow may call a service or an action by: 1-63 of a-z, 0-9, '_', '-'.
bool ValidName(const std::string& s) {
    return !s.empty() && s.size() <= 63 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

class Loader : private workflow::YamlReader {
public:
    Loader(std::string source, std::string base_dir)
        : YamlReader(std::move(source)), base_dir_(std::move(base_dir)) {}

    Result<std::vector<ServiceEntry>> Load(const std::string& text) {
        std::vector<ServiceEntry> out;
        COGS_TRY(ForEachItem(text, "services", "service",
                             [&](const YAML::Node& n) { return LoadService(n, out); }));
        return out;
    }

    Result<std::vector<cloud::KindSpec>> LoadKinds(const std::string& text) {
        std::vector<cloud::KindSpec> out;
        COGS_TRY(ForEachItem(text, "kinds", "kind", [&](const YAML::Node& n) { return LoadKind(n, out); }));
        return out;
    }

private:
    // An integer in [min, max]; else "<what> must be an integer from <min> to <max>".
    Result<int64_t> Int(const YAML::Node& n, const std::string& what, int64_t min = kMin,
                        int64_t max = kMax) {
        int64_t v = 0;
        const std::string s = n.IsScalar() ? n.Scalar() : "";
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < min || v > max) {
            return Fail(
                n, what + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
        }
        return v;
    }

    Result<Duration> DurationOf(const YAML::Node& n, const std::string& what) {
        auto d = n.IsScalar() ? workflow::ParseDuration(n.Scalar()) : std::nullopt;
        if (!d || *d <= Duration(0)) {
            return Fail(n, what + " must be a duration above 0 (e.g. 250ms, 2s, 5m)");
        }
        return *d;
    }

    Status LoadService(const YAML::Node& n, std::vector<ServiceEntry>& out) {
        std::string what = "service";
        if (n.IsMap() && n["service"] && n["service"].IsScalar()) what += " '" + n["service"].Scalar() + "'";
        COGS_TRY(CheckFields(n, what,
                             {"service", "url", "token_file", "insecure", "actions", "timeout",
                              "max_inflight", "max_connections", "breaker"}));
        ServiceEntry e;
        e.origin = At(n);
        if (!n["service"]) return Fail(n, what + " has no 'service' (its name)");
        COGS_ASSIGN_OR_RETURN(e.name, String(n["service"], what + ": 'service'"));
        if (!ValidName(e.name))
            return Fail(n["service"], what + ": the name must be 1-63 of a-z, 0-9, '_', '-'");
        if (!n["url"]) return Fail(n, what + " has no 'url'");
        COGS_ASSIGN_OR_RETURN(e.url, String(n["url"], what + ": 'url'"));
        auto ep = http::ParseHttpUrl(e.url);
        if (!ep) return Fail(n["url"], what + ": 'url' must be http://HOST:PORT or https://HOST:PORT");
        e.endpoint = *ep;
        if (const YAML::Node i = n["insecure"]) {
            if (!i.IsScalar() || (i.Scalar() != "true" && i.Scalar() != "false")) {
                return Fail(i, what + ": 'insecure' must be true or false");
            }
            e.insecure = i.Scalar() == "true";
        }
        if (const YAML::Node t = n["token_file"]) {
            if (e.insecure) return Fail(t, what + ": 'token_file' and 'insecure: true' exclude each other");
            COGS_ASSIGN_OR_RETURN(const std::string file, String(t, what + ": 'token_file'"));
            e.token_file = fs::path(file).is_absolute() ? file : (fs::path(base_dir_) / file).string();
            auto token = runtime::ReadTokenFile(e.token_file);
            if (!token) return Fail(t, what + ": 'token_file': " + token.error().message);
            e.token = *token;
        } else if (!e.insecure) {
            return Fail(n, what +
                               " has no 'token_file' (the credential cogsd presents; 'insecure: true' for "
                               "development only)");
        }
        const YAML::Node actions = n["actions"];
        if (!actions || !actions.IsSequence() || actions.size() == 0) {
            return Fail(actions ? actions : n, what + ": 'actions' must list the service's actions");
        }
        std::set<std::string> seen;
        for (const YAML::Node& a : actions) {
            COGS_ASSIGN_OR_RETURN(std::string name, String(a, what + ": an action"));
            if (!ValidName(name))
                return Fail(a, what + ": action '" + name + "' must be 1-63 of a-z, 0-9, '_', '-'");
            if (!seen.insert(name).second) return Fail(a, what + ": action '" + name + "' listed twice");
            e.actions.push_back(std::move(name));
        }
        if (const YAML::Node t = n["timeout"]) {
            COGS_ASSIGN_OR_RETURN(e.timeout, DurationOf(t, what + ": 'timeout'"));
        }
        if (const YAML::Node m = n["max_inflight"]) {
            COGS_ASSIGN_OR_RETURN(e.max_inflight, Int(m, what + ": 'max_inflight'", 1, 100000));
        }
        if (const YAML::Node m = n["max_connections"]) {
            COGS_ASSIGN_OR_RETURN(e.max_connections, Int(m, what + ": 'max_connections'", 1, 10000));
        }
        if (const YAML::Node b = n["breaker"]) {
            const std::string bw = what + " breaker";
            COGS_TRY(CheckFields(b, bw, {"failures", "open_for", "max_open_for"}));
            if (const YAML::Node f = b["failures"]) {
                COGS_ASSIGN_OR_RETURN(e.breaker.failure_threshold, Int(f, bw + ": 'failures'", 1, 1000000));
            }
            if (const YAML::Node d = b["open_for"]) {
                COGS_ASSIGN_OR_RETURN(e.breaker.open_for, DurationOf(d, bw + ": 'open_for'"));
            }
            if (const YAML::Node d = b["max_open_for"]) {
                COGS_ASSIGN_OR_RETURN(e.breaker.max_open_for, DurationOf(d, bw + ": 'max_open_for'"));
            }
            if (e.breaker.max_open_for < e.breaker.open_for) {
                return Fail(b, bw + ": 'max_open_for' must be at least 'open_for'");
            }
        }
        out.push_back(std::move(e));
        return Ok();
    }

    Result<cloud::FieldSpec> LoadField(const YAML::Node& key, const YAML::Node& n,
                                       const std::string& kind_what) {
        using Type = cloud::FieldSpec::Type;
        cloud::FieldSpec f;
        COGS_ASSIGN_OR_RETURN(f.name, String(key, kind_what + ": a field's name"));
        const std::string what = kind_what + " field '" + f.name + "'";
        if (!ValidName(f.name) || f.name[0] == '_' || f.name[0] == '-' || IsReservedField(f.name)) {
            return Fail(key, what +
                                 ": the name must be 1-63 of a-z, 0-9, '_', '-' and none of id, project_id, "
                                 "status, fault, workflow_id, created_at, updated_at");
        }
        COGS_TRY(CheckFields(
            n, what,
            {"type", "required", "max_length", "enum", "minimum", "maximum", "max_items", "default"}));
        if (!n["type"]) return Fail(n, what + " has no 'type' (string, integer, boolean, strings)");
        COGS_ASSIGN_OR_RETURN(const std::string type, String(n["type"], what + ": 'type'"));
        if (type == "string") {
            f.type = Type::kString;
        } else if (type == "integer") {
            f.type = Type::kInteger;
        } else if (type == "boolean") {
            f.type = Type::kBoolean;
        } else if (type == "strings") {
            f.type = Type::kStrings;
        } else {
            return Fail(n["type"],
                        what + ": unknown type '" + type + "' (string, integer, boolean, strings)");
        }
        const auto only_for = [&](const char* field, std::initializer_list<Type> types) -> Status {
            if (n[field] && std::find(types.begin(), types.end(), f.type) == types.end()) {
                return Fail(n[field], what + ": '" + field + "' does not apply to a " + type);
            }
            return Ok();
        };
        COGS_TRY(only_for("max_length", {Type::kString, Type::kStrings}));
        COGS_TRY(only_for("enum", {Type::kString}));
        COGS_TRY(only_for("minimum", {Type::kInteger}));
        COGS_TRY(only_for("maximum", {Type::kInteger}));
        COGS_TRY(only_for("max_items", {Type::kStrings}));
        if (const YAML::Node r = n["required"]) {
            if (!r.IsScalar() || (r.Scalar() != "true" && r.Scalar() != "false")) {
                return Fail(r, what + ": 'required' must be true or false");
            }
            f.required = r.Scalar() == "true";
        }
        if (const YAML::Node m = n["max_length"]) {
            COGS_ASSIGN_OR_RETURN(f.max_length, Int(m, what + ": 'max_length'", 1, 65536));
        }
        if (const YAML::Node m = n["max_items"]) {
            COGS_ASSIGN_OR_RETURN(f.max_items, Int(m, what + ": 'max_items'", 1, 1024));
        }
        if (const YAML::Node m = n["minimum"]) {
            COGS_ASSIGN_OR_RETURN(f.minimum, Int(m, what + ": 'minimum'"));
        }
        if (const YAML::Node m = n["maximum"]) {
            COGS_ASSIGN_OR_RETURN(f.maximum, Int(m, what + ": 'maximum'"));
        }
        if (f.minimum > f.maximum) return Fail(n, what + ": 'minimum' is above 'maximum'");
        if (const YAML::Node e = n["enum"]) {
            if (!e.IsSequence() || e.size() == 0)
                return Fail(e, what + ": 'enum' must list the values allowed");
            for (const YAML::Node& v : e) {
                COGS_ASSIGN_OR_RETURN(std::string value, String(v, what + ": a value of 'enum'"));
                f.one_of.push_back(std::move(value));
            }
        }
        if (const YAML::Node d = n["default"]) {
            if (f.required) return Fail(d, what + ": a required field has no default");
            COGS_ASSIGN_OR_RETURN(f.default_value, DefaultOf(d, f, what));
        }
        return f;
    }

    // A field's default, checked against its own rules.
    Result<boost::json::value> DefaultOf(const YAML::Node& d, const cloud::FieldSpec& f,
                                         const std::string& what) {
        using Type = cloud::FieldSpec::Type;
        const std::string bad = what + ": 'default' breaks the field's own rules";
        switch (f.type) {
            case Type::kString: {
                if (!d.IsScalar() || static_cast<int64_t>(d.Scalar().size()) > f.max_length)
                    return Fail(d, bad);
                if (!f.one_of.empty() &&
                    std::find(f.one_of.begin(), f.one_of.end(), d.Scalar()) == f.one_of.end()) {
                    return Fail(d, bad);
                }
                return boost::json::value(d.Scalar());
            }
            case Type::kInteger: {
                COGS_ASSIGN_OR_RETURN(const int64_t v, Int(d, what + ": 'default'"));
                if (v < f.minimum || v > f.maximum) return Fail(d, bad);
                return boost::json::value(v);
            }
            case Type::kBoolean:
                if (!d.IsScalar() || (d.Scalar() != "true" && d.Scalar() != "false")) return Fail(d, bad);
                return boost::json::value(d.Scalar() == "true");
            case Type::kStrings: {
                if (!d.IsSequence() || static_cast<int64_t>(d.size()) > f.max_items) return Fail(d, bad);
                boost::json::array a;
                for (const YAML::Node& v : d) {
                    if (!v.IsScalar() || static_cast<int64_t>(v.Scalar().size()) > f.max_length)
                        return Fail(v, bad);
                    a.emplace_back(v.Scalar());
                }
                return boost::json::value(std::move(a));
            }
        }
        return Fail(d, bad);
    }

    Status LoadKind(const YAML::Node& n, std::vector<cloud::KindSpec>& out) {
        std::string what = "kind";
        if (n.IsMap() && n["kind"] && n["kind"].IsScalar()) what += " '" + n["kind"].Scalar() + "'";
        COGS_TRY(CheckFields(n, what, {"kind", "plural", "quota", "create", "delete", "fields"}));
        cloud::KindSpec k;
        k.origin = At(n);
        for (auto [field, into] :
             {std::pair{"kind", &k.kind}, std::pair{"plural", &k.plural},
              std::pair{"create", &k.create_workflow}, std::pair{"delete", &k.delete_workflow}}) {
            if (!n[field]) return Fail(n, what + " has no '" + field + "'");
            COGS_ASSIGN_OR_RETURN(*into, String(n[field], what + ": '" + field + "'"));
        }
        for (const YAML::Node& name : {n["kind"], n["plural"]}) {
            const std::string& s = name.Scalar();
            if (!ValidName(s) || s.find('-') != std::string::npos || !(s[0] >= 'a' && s[0] <= 'z')) {
                return Fail(name,
                            what + ": '" + s + "' must be 1-63 of a-z, 0-9, '_', starting with a letter");
            }
        }
        if (k.kind == k.plural) return Fail(n["plural"], what + ": the plural must differ from the kind");
        if (const YAML::Node q = n["quota"]) {
            COGS_ASSIGN_OR_RETURN(k.quota, Int(q, what + ": 'quota'"));
        }
        const YAML::Node fields = n["fields"];
        if (!fields || !fields.IsMap() || fields.size() == 0) {
            return Fail(fields ? fields : n, what + ": 'fields' must map each field's name to its rules");
        }
        for (const auto& kv : fields) {
            COGS_ASSIGN_OR_RETURN(auto f, LoadField(kv.first, kv.second, what));
            k.fields.push_back(std::move(f));
        }
        out.push_back(std::move(k));
        return Ok();
    }

    static bool IsReservedField(const std::string& name) {
        for (const char* r :
             {"id", "project_id", "status", "fault", "workflow_id", "created_at", "updated_at"}) {
            if (name == r) return true;
        }
        return false;
    }

    static constexpr int64_t kMin = -(int64_t{1} << 52);
    static constexpr int64_t kMax = int64_t{1} << 52;

    std::string base_dir_;
};

Result<std::string> ReadText(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return MakeError(ErrorCode::kNotFound, path + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// The *.yaml / *.yml files of `dir` in name order, hidden ones skipped; none if it does not exist.
Result<std::vector<std::string>> Files(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    if (!fs::exists(dir, ec)) return out;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const std::string ext = it->path().extension().string();
        if ((ext == ".yaml" || ext == ".yml") && name[0] != '.' && it->is_regular_file(ec)) {
            out.push_back(it->path().string());
        }
    }
    if (ec) return MakeError(ErrorCode::kInternal, dir.string() + ": cannot list: " + ec.message());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

Result<std::vector<ServiceEntry>> LoadServicesFromString(const std::string& text, const std::string& source,
                                                         const std::string& base_dir) {
    return Loader(source, base_dir).Load(text);
}

Result<std::vector<cloud::KindSpec>> LoadKindsFromString(const std::string& text, const std::string& source) {
    return Loader(source, "").LoadKinds(text);
}

Result<Extensions> LoadExtensions(const std::string& dir) {
    Extensions ext;
    const fs::path root(dir);
    COGS_ASSIGN_OR_RETURN(const auto service_files, Files(root / "services.d"));
    std::map<std::string, std::string> names;  // service -> origin
    for (const std::string& path : service_files) {
        COGS_ASSIGN_OR_RETURN(const std::string text, ReadText(path));
        COGS_ASSIGN_OR_RETURN(auto entries,
                              LoadServicesFromString(text, path, fs::path(path).parent_path().string()));
        for (ServiceEntry& e : entries) {
            if (auto [it, fresh] = names.emplace(e.name, e.origin); !fresh) {
                return MakeError(
                    ErrorCode::kInvalidArgument,
                    e.origin + ": service '" + e.name + "' is defined twice (also at " + it->second + ")");
            }
            ext.services.push_back(std::move(e));
        }
    }
    COGS_ASSIGN_OR_RETURN(const auto kind_files, Files(root / "kinds.d"));
    for (const std::string& path : kind_files) {
        COGS_ASSIGN_OR_RETURN(const std::string text, ReadText(path));
        COGS_ASSIGN_OR_RETURN(auto kinds, LoadKindsFromString(text, path));
        std::move(kinds.begin(), kinds.end(), std::back_inserter(ext.kinds));
    }
    std::error_code ec;
    if (fs::exists(root / "workflows.d", ec)) {
        COGS_ASSIGN_OR_RETURN(ext.workflows,
                              workflow::LoadDefinitionsFromDirectory((root / "workflows.d").string()));
    }
    if (fs::exists(root / "hooks.d", ec)) {
        COGS_ASSIGN_OR_RETURN(ext.hooks, workflow::LoadHooksFromDirectory((root / "hooks.d").string()));
    }
    return ext;
}

}  // namespace cogs::extend
