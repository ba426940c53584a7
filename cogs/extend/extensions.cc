// The configuration directory's files (extensions.h); yaml-cpp stays in this file.
#include "cogs/extend/extensions.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cogs/runtime/files.h"

namespace cogs::extend {
namespace {

namespace fs = std::filesystem;

// A name a workflow may call a service or an action by: 1-63 of a-z, 0-9, '_', '-'.
bool ValidName(const std::string& s) {
    return !s.empty() && s.size() <= 63 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

class ServiceLoader {
public:
    ServiceLoader(std::string source, std::string base_dir)
        : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

    Result<std::vector<ServiceEntry>> Load(const std::string& text) {
        std::vector<ServiceEntry> out;
        try {
            for (const YAML::Node& doc : YAML::LoadAll(text)) {
                if (doc.IsNull()) continue;
                if (!doc.IsMap())
                    return Fail(doc, "want a mapping: 'services:' with a list, or a single service");
                if (const YAML::Node list = doc["services"]) {
                    COGS_TRY(CheckFields(doc, "the document", {"services"}));
                    if (!list.IsSequence()) return Fail(list, "'services' must be a list");
                    for (const YAML::Node& n : list) {
                        COGS_TRY(LoadService(n, out));
                    }
                } else {
                    COGS_TRY(LoadService(doc, out));
                }
            }
        } catch (const YAML::Exception& e) {
            return MakeError(ErrorCode::kInvalidArgument, At(e.mark) + ": " + e.msg);
        }
        return out;
    }

private:
    std::string At(const YAML::Mark& m) const {
        return m.line < 0 ? source_ : source_ + ":" + std::to_string(m.line + 1);
    }
    tl::unexpected<Error> Fail(const YAML::Node& n, const std::string& problem) const {
        return MakeError(ErrorCode::kInvalidArgument, At(n.Mark()) + ": " + problem);
    }

    Status CheckFields(const YAML::Node& n, const std::string& what,
                       std::initializer_list<std::string> known) {
        if (!n.IsMap()) return Fail(n, what + " must be a mapping");
        std::set<std::string> seen;
        for (const auto& kv : n) {
            const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
            if (std::find(known.begin(), known.end(), name) == known.end()) {
                std::string list;
                for (const std::string& k : known)
                    list += (list.empty() ? "" : ", ") + k;
                return Fail(kv.first, "unknown field '" + name + "' in " + what + " (known: " + list + ")");
            }
            if (!seen.insert(name).second)
                return Fail(kv.first, "field '" + name + "' given twice in " + what);
        }
        return Ok();
    }

    Result<std::string> String(const YAML::Node& n, const std::string& what) {
        if (!n.IsScalar()) return Fail(n, what + " must be a string");
        return n.Scalar();
    }

    Result<int> Int(const YAML::Node& n, const std::string& what, int min, int max) {
        int v = 0;
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
        e.origin = At(n.Mark());
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

    std::string source_;
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
    return ServiceLoader(source, base_dir).Load(text);
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
