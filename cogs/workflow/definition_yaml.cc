// The YAML adapter: yaml-cpp's nodes and exceptions stay in this file; what leaves it is a validated
// Definition or an Error reading "<source>:<line>: <problem>".
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "cogs/workflow/definition.h"
#include "cogs/workflow/internal/template.h"
#include "cogs/workflow/internal/validate.h"
#include "cogs/workflow/yaml_reader.h"

namespace cogs::workflow {
namespace {

constexpr ErrorCode kAllCodes[] = {
    ErrorCode::kInvalidArgument,
    ErrorCode::kNotFound,
    ErrorCode::kAlreadyExists,
    ErrorCode::kConflict,
    ErrorCode::kFailedPrecondition,
    ErrorCode::kPermissionDenied,
    ErrorCode::kUnauthenticated,
    ErrorCode::kResourceExhausted,
    ErrorCode::kUnavailable,
    ErrorCode::kDeadlineExceeded,
    ErrorCode::kFenced,
    ErrorCode::kCancelled,
    ErrorCode::kInternal,
};

struct Unit {
    std::string_view suffix;
    Duration size;
};
// Largest first: FormatDuration picks the first that divides exactly.
constexpr Unit kUnits[] = {
    {"h", std::chrono::hours(1)},         {"m", std::chrono::minutes(1)},
    {"s", std::chrono::seconds(1)},       {"ms", std::chrono::milliseconds(1)},
    {"us", std::chrono::microseconds(1)}, {"ns", std::chrono::nanoseconds(1)},
};

}  // namespace

// "250ms", "2s", "5m", "1h" (also "us", "ns"), or a bare integer of milliseconds.
std::optional<Duration> ParseDuration(std::string_view s) {
    std::int64_t count = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), count);
    if (ec != std::errc() || end == s.data() || count < 0 || s[0] == '-') {
        return std::nullopt;
    }
    std::string_view suffix(end, s.data() + s.size() - end);
    Duration unit = std::chrono::milliseconds(1);
    if (!suffix.empty()) {
        auto it = std::find_if(std::begin(kUnits), std::end(kUnits),
                               [&](const Unit& u) { return u.suffix == suffix; });
        if (it == std::end(kUnits)) {
            return std::nullopt;
        }
        unit = it->size;
    }
    if (count > std::numeric_limits<Duration::rep>::max() / unit.count()) {
        return std::nullopt;
    }
    return Duration(count * unit.count());
}

namespace {

std::string FormatDuration(Duration d) {
    if (d == Duration(0)) {
        return "0s";
    }
    for (const Unit& u : kUnits) {
        if (d.count() % u.size.count() == 0) {
            return std::to_string(d.count() / u.size.count()) + std::string(u.suffix);
        }
    }
    return std::to_string(d.count()) + "ns";  // not reached: ns divides everything
}

std::string FormatDouble(double v) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

// Whether `s` can be written as a plain YAML scalar and read back as the same string.
bool IsPlainSafe(std::string_view s) {
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
        return false;
    }
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return s[0] != '-' && s[0] != '.';
}

std::string YamlString(std::string_view s) {
    if (IsPlainSafe(s)) {
        return std::string(s);
    }
    std::string out;
    internal::AppendJsonQuoted(out, s);  // JSON's escapes are a subset of YAML's double-quoted ones
    return out;
}

// Canonical compact JSON as a YAML flow node: a space after each ':' and ',' outside strings.
std::string JsonAsYaml(std::string_view json) {
    std::string out;
    out.reserve(json.size() + json.size() / 4);
    bool in_string = false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        char c = json[i];
        out += c;
        if (in_string) {
            if (c == '\\') {
                out += json[++i];
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == ':' || c == ',') {
            out += ' ';
        }
    }
    return out;
}

void EmitRetry(std::ostringstream& out, const RetryPolicy& p) {
    out << "{max_attempts: " << p.max_attempts << ", initial_backoff: " << FormatDuration(p.initial_backoff)
        << ", max_backoff: " << FormatDuration(p.max_backoff)
        << ", multiplier: " << FormatDouble(p.multiplier);
    if (!p.retry_on.empty()) {
        out << ", retry_on: [";
        for (std::size_t i = 0; i < p.retry_on.size(); ++i) {
            out << (i > 0 ? ", " : "") << ToString(p.retry_on[i]);
        }
        out << "]";
    }
    out << "}\n";
}

void EmitInput(std::ostringstream& out, const std::string& input) {
    auto t = internal::CheckTemplate(input);
    out << (t ? JsonAsYaml(t->canonical) : YamlString(input)) << "\n";
}

struct Located {
    Definition def;
    std::string origin;  // "<source>:<line>" of the workflow
};

// Remembers the type of `l` in `seen` (type -> origin); a type seen before is an error naming both.
Status CheckUnique(std::map<std::string, std::string>& seen, const Located& l) {
    if (auto [it, fresh] = seen.emplace(l.def.type, l.origin); !fresh) {
        return MakeError(ErrorCode::kInvalidArgument, l.origin + ": workflow type '" + l.def.type +
                                                          "' is defined twice (also at " + it->second + ")");
    }
    return Ok();
}

// Turns the YAML of one source into validated definitions. Stops at the first problem.
class Loader : private YamlReader {
public:
    explicit Loader(std::string source) : YamlReader(std::move(source)) {}

    Result<std::vector<Located>> Load(const std::string& text) {
        std::vector<Located> out;
        COGS_TRY(ForEachItem(text, "workflows", "workflow",
                             [&](const YAML::Node& n) { return LoadWorkflow(n, out); }));
        std::map<std::string, std::string> seen;
        for (const Located& l : out) {
            COGS_TRY(CheckUnique(seen, l));
        }
        return out;
    }

    Result<std::vector<Hook>> LoadHooks(const std::string& text) {
        std::vector<Hook> out;
        COGS_TRY(ForEachItem(text, "hooks", "hook", [&](const YAML::Node& n) { return LoadHook(n, out); }));
        return out;
    }

private:
    Result<std::string> String(const YAML::Node& n, const std::string& field, const std::string& what) {
        return YamlReader::String(n, what + ": '" + field + "'");
    }

    Result<Duration> DurationField(const YAML::Node& n, const std::string& field, const std::string& what) {
        static constexpr char kWant[] = " (want e.g. 250ms, 2s, 5m, 1h, or an integer of milliseconds)";
        if (!n.IsScalar()) {
            return Fail(n, what + ": '" + field + "' must be a duration" + kWant);
        }
        std::optional<Duration> d = ParseDuration(n.Scalar());
        if (!d) {
            return Fail(n, what + ": bad duration '" + n.Scalar() + "' for '" + field + "'" + kWant);
        }
        return *d;
    }

    Status LoadWorkflow(const YAML::Node& n, std::vector<Located>& out) {
        std::string what = "workflow";
        if (n.IsMap() && n["type"] && n["type"].IsScalar()) {
            what += " '" + n["type"].Scalar() + "'";
        }
        COGS_TRY(CheckFields(n, what, {"type", "deadline", "steps"}));
        Definition def;
        const YAML::Node type = n["type"];
        if (!type) {
            return Fail(n, what + " has no 'type'");
        }
        COGS_ASSIGN_OR_RETURN(def.type, String(type, "type", what));
        if (const YAML::Node d = n["deadline"]) {
            COGS_ASSIGN_OR_RETURN(def.deadline, DurationField(d, "deadline", what));
        }
        const YAML::Node steps = n["steps"];
        if (!steps || !steps.IsSequence()) {
            return Fail(steps ? steps : n, what + ": 'steps' must be a list of steps");
        }
        std::vector<std::string> origins;
        for (const YAML::Node& s : steps) {
            origins.push_back(At(s));
            COGS_TRY(LoadStep(s, def.steps.emplace_back()));
        }
        COGS_ASSIGN_OR_RETURN(Definition valid,
                              internal::ValidateWithOrigins(std::move(def), At(n), origins));
        out.push_back({std::move(valid), At(n)});
        return Ok();
    }

    Status LoadStep(const YAML::Node& n, StepDef& step) {
        const std::string what = Named("step", n, "name");
        COGS_TRY(CheckFields(
            n, what,
            {"name", "action", "depends_on", "input", "timeout", "deadline", "retry", "compensation"}));
        if (const YAML::Node deps = n["depends_on"]) {
            if (!deps.IsSequence()) {
                return Fail(deps, what + ": 'depends_on' must be a list of step names");
            }
            for (const YAML::Node& d : deps) {
                COGS_ASSIGN_OR_RETURN(std::string dep, String(d, "depends_on", what));
                step.depends_on.push_back(std::move(dep));
            }
        }
        return LoadStepFields(n, what, step);
    }

    // "<kind> '<n[field]>'", or `kind` alone when n has no such string.
    static std::string Named(const std::string& kind, const YAML::Node& n, const char* field) {
        return n.IsMap() && n[field] && n[field].IsScalar() ? kind + " '" + n[field].Scalar() + "'" : kind;
    }

    // A step's fields but depends_on (checked by the caller).
    Status LoadStepFields(const YAML::Node& n, const std::string& what, StepDef& step) {
        const YAML::Node name = n["name"];
        if (!name) {
            return Fail(n, what + " has no 'name'");
        }
        COGS_ASSIGN_OR_RETURN(step.name, String(name, "name", what));
        COGS_ASSIGN_OR_RETURN(step.action, ActionField(n, "action", what));
        COGS_TRY(LoadCall(n, what, step.input, step.timeout, &step.deadline, step.retry));
        if (const YAML::Node c = n["compensation"]) {
            COGS_TRY(LoadCompensation(c, what + " compensation", step.compensation.emplace()));
        }
        return Ok();
    }

    Status LoadHook(const YAML::Node& n, std::vector<Hook>& out) {
        const std::string what = Named("hook", n, "name");
        COGS_TRY(CheckFields(n, what,
                             {"workflow", "after", "before", "name", "action", "input", "timeout", "deadline",
                              "retry", "compensation"}));
        Hook hook;
        hook.origin = At(n);
        const YAML::Node workflow = n["workflow"];
        if (!workflow) {
            return Fail(n, what + " has no 'workflow' (the type of the workflow it joins)");
        }
        COGS_ASSIGN_OR_RETURN(hook.workflow, String(workflow, "workflow", what));
        const YAML::Node after = n["after"];
        const YAML::Node before = n["before"];
        if (!after == !before) {
            return Fail(n, what + " needs exactly one of 'after' and 'before' (the step it is placed by)");
        }
        COGS_ASSIGN_OR_RETURN((after ? hook.after : hook.before),
                              String(after ? after : before, after ? "after" : "before", what));
        COGS_TRY(LoadStepFields(n, what, hook.step));
        out.push_back(std::move(hook));
        return Ok();
    }

    // The fields a step and its compensation share, in this order: input, timeout, deadline (a
    // step's only: null for a compensation) and retry.
    Status LoadCall(const YAML::Node& n, const std::string& what, std::string& input, Duration& timeout,
                    Duration* deadline, RetryPolicy& retry) {
        if (const YAML::Node in = n["input"]) {
            COGS_ASSIGN_OR_RETURN(input, Json(in, what + ": input"));
        }
        if (const YAML::Node d = n["timeout"]) {
            COGS_ASSIGN_OR_RETURN(timeout, DurationField(d, "timeout", what));
        }
        if (const YAML::Node d = n["deadline"]; d && deadline != nullptr) {
            COGS_ASSIGN_OR_RETURN(*deadline, DurationField(d, "deadline", what));
        }
        if (const YAML::Node r = n["retry"]) {
            COGS_TRY(LoadRetry(r, what + " retry", retry));
        }
        return Ok();
    }

    Result<ActionRef> ActionField(const YAML::Node& parent, const char* field, const std::string& what) {
        const YAML::Node a = parent[field];
        if (!a) {
            return Fail(parent, what + " has no '" + field + "'");
        }
        COGS_ASSIGN_OR_RETURN(const std::string s, String(a, field, what));
        auto ref = ParseActionRef(s);
        if (!ref) {
            return Fail(a, what + ": " + ref.error().message);
        }
        ref->origin = At(a);
        return ref;
    }

    Status LoadCompensation(const YAML::Node& n, const std::string& what, Compensation& c) {
        COGS_TRY(CheckFields(n, what, {"action", "input", "retry", "timeout"}));
        COGS_ASSIGN_OR_RETURN(c.action, ActionField(n, "action", what));
        return LoadCall(n, what, c.input, c.timeout, nullptr, c.retry);
    }

    Status LoadRetry(const YAML::Node& n, const std::string& what, RetryPolicy& p) {
        COGS_TRY(CheckFields(n, what,
                             {"max_attempts", "initial_backoff", "max_backoff", "multiplier", "retry_on"}));
        if (const YAML::Node m = n["max_attempts"]) {
            int v = 0;
            const std::string& s = m.IsScalar() ? m.Scalar() : std::string();
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
                return Fail(m, what + ": 'max_attempts' must be an integer");
            }
            p.max_attempts = v;
        }
        if (const YAML::Node d = n["initial_backoff"]) {
            COGS_ASSIGN_OR_RETURN(p.initial_backoff, DurationField(d, "initial_backoff", what));
        }
        if (const YAML::Node d = n["max_backoff"]) {
            COGS_ASSIGN_OR_RETURN(p.max_backoff, DurationField(d, "max_backoff", what));
        }
        if (const YAML::Node m = n["multiplier"]) {
            double v = 0;
            const std::string& s = m.IsScalar() ? m.Scalar() : std::string();
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
                return Fail(m, what + ": 'multiplier' must be a number");
            }
            p.multiplier = v;
        }
        if (const YAML::Node codes = n["retry_on"]) {
            if (!codes.IsSequence()) {
                return Fail(codes, what + ": 'retry_on' must be a list of error codes");
            }
            for (const YAML::Node& c : codes) {
                const ErrorCode* code = nullptr;
                for (const ErrorCode& k : kAllCodes) {
                    if (c.IsScalar() && c.Scalar() == ToString(k)) {
                        code = &k;
                    }
                }
                if (code == nullptr) {
                    std::string list;
                    for (ErrorCode k : kAllCodes) {
                        list += (list.empty() ? "" : ", ") + std::string(ToString(k));
                    }
                    return Fail(c, what + ": unknown error code '" + (c.IsScalar() ? c.Scalar() : "") +
                                       "' in retry_on (known: " + list + ")");
                }
                p.retry_on.push_back(*code);
            }
        }
        return Ok();
    }
};

Result<std::vector<Located>> LoadLocated(const std::string& text, const std::string& source) {
    return Loader(source).Load(text);
}

Result<std::string> ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return MakeError(ErrorCode::kNotFound,
                         path + ": cannot open: " + std::generic_category().message(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        return MakeError(ErrorCode::kInternal, path + ": read failed");
    }
    return text.str();
}

std::vector<Definition> Strip(std::vector<Located> located) {
    std::vector<Definition> defs;
    defs.reserve(located.size());
    for (Located& l : located) {
        defs.push_back(std::move(l.def));
    }
    return defs;
}

// The *.yaml and *.yml files of `dir`, in name order. Hidden files are skipped: editors leave their
// swap and lock files there.
Result<std::vector<std::string>> YamlFilesIn(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) {
        return MakeError(ErrorCode::kNotFound, dir + ": cannot list: " + ec.message());
    }
    std::vector<fs::path> files;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        const fs::path& p = it->path();
        std::string name = p.filename().string();
        std::string ext = p.extension().string();
        if ((ext == ".yaml" || ext == ".yml") && name[0] != '.' && it->is_regular_file(ec)) {
            files.push_back(p);
        }
    }
    if (ec) {
        return MakeError(ErrorCode::kInternal, dir + ": cannot list: " + ec.message());
    }
    std::sort(files.begin(), files.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
    std::vector<std::string> paths;
    for (const fs::path& p : files) {
        paths.push_back(p.string());
    }
    return paths;
}

}  // namespace

Result<std::vector<Definition>> LoadDefinitionsFromString(const std::string& text,
                                                          const std::string& source) {
    COGS_ASSIGN_OR_RETURN(auto located, LoadLocated(text, source));
    return Strip(std::move(located));
}

Result<std::vector<Definition>> LoadDefinitionsFromFile(const std::string& path) {
    COGS_ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
    return LoadDefinitionsFromString(text, path);
}

Result<std::vector<Definition>> LoadDefinitionsFromDirectory(const std::string& dir) {
    COGS_ASSIGN_OR_RETURN(const auto files, YamlFilesIn(dir));
    std::vector<Located> all;
    std::map<std::string, std::string> seen;  // type -> origin
    for (const std::string& path : files) {
        COGS_ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
        COGS_ASSIGN_OR_RETURN(auto located, LoadLocated(text, path));
        for (Located& l : located) {
            COGS_TRY(CheckUnique(seen, l));
            all.push_back(std::move(l));
        }
    }
    return Strip(std::move(all));
}

Result<std::vector<Hook>> LoadHooksFromString(const std::string& text, const std::string& source) {
    return Loader(source).LoadHooks(text);
}

Result<std::vector<Hook>> LoadHooksFromDirectory(const std::string& dir) {
    COGS_ASSIGN_OR_RETURN(const auto files, YamlFilesIn(dir));
    std::vector<Hook> all;
    for (const std::string& path : files) {
        COGS_ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
        COGS_ASSIGN_OR_RETURN(auto hooks, LoadHooksFromString(text, path));
        std::move(hooks.begin(), hooks.end(), std::back_inserter(all));
    }
    return all;
}

std::string ToYaml(const Definition& def) {
    std::ostringstream out;
    out << "workflows:\n";
    out << "  - type: " << YamlString(def.type) << "\n";
    if (def.deadline != Duration(0)) {
        out << "    deadline: " << FormatDuration(def.deadline) << "\n";
    }
    out << "    steps:\n";
    for (const StepDef& s : def.steps) {
        out << "      - name: " << YamlString(s.name) << "\n";
        out << "        action: " << YamlString(s.action.FullName()) << "\n";
        if (!s.depends_on.empty()) {
            out << "        depends_on: [";
            for (std::size_t i = 0; i < s.depends_on.size(); ++i) {
                out << (i > 0 ? ", " : "") << YamlString(s.depends_on[i]);
            }
            out << "]\n";
        }
        if (s.input != "{}") {
            out << "        input: ";
            EmitInput(out, s.input);
        }
        out << "        timeout: " << FormatDuration(s.timeout) << "\n";
        if (s.deadline != Duration(0)) {
            out << "        deadline: " << FormatDuration(s.deadline) << "\n";
        }
        out << "        retry: ";
        EmitRetry(out, s.retry);
        if (s.compensation) {
            const Compensation& c = *s.compensation;
            out << "        compensation:\n";
            out << "          action: " << YamlString(c.action.FullName()) << "\n";
            if (!c.input.empty()) {
                out << "          input: ";
                EmitInput(out, c.input);
            }
            out << "          timeout: " << FormatDuration(c.timeout) << "\n";
            out << "          retry: ";
            EmitRetry(out, c.retry);
        }
    }
    return out.str();
}

}  // namespace cogs::workflow
