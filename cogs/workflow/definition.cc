#include "cogs/workflow/definition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <queue>
#include <utility>

#include "cogs/workflow/internal/template.h"
#include "cogs/workflow/internal/validate.h"

namespace cogs::workflow {
namespace {

// Bounds that keep a definition cheap to validate and store (ancestry is quadratic in steps)
// and its names usable as keys, in URLs and in logs.
constexpr std::size_t kMaxSteps = 1000;
constexpr std::size_t kMaxNameLength = 128;
constexpr int kMaxAttempts = 1000;
constexpr double kMaxMultiplier = 100.0;
constexpr std::size_t kMaxMessages = 20;

bool IsLowerDigit(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool ValidName(const std::string& s, bool allow_dot) {
    if (s.empty() || s.size() > kMaxNameLength) {
        return false;
    }
    for (char c : s) {
        if (!IsLowerDigit(c) && c != '_' && c != '-' && !(allow_dot && c == '.')) {
            return false;
        }
    }
    return true;
}

bool ValidActionPart(const std::string& s) {
    if (s.empty() || s.size() > kMaxNameLength) {
        return false;
    }
    for (char c : s) {
        if (!IsLowerDigit(c) && !(c >= 'A' && c <= 'Z') && c != '_' && c != '-') {
            return false;
        }
    }
    return true;
}

// Collects problems, each prefixed with where it comes from.
class Problems {
public:
    Problems(const Definition& def, const std::string& where, const std::vector<std::string>& origins)
        : def_(def), prefix_(where.empty() ? "workflow '" + def.type + "'" : where), origins_(origins) {}

    void Workflow(const std::string& problem) { Add(prefix_ + ": " + problem); }

    void Step(std::size_t i, const std::string& problem) {
        const std::string& origin = i < origins_.size() && !origins_[i].empty() ? origins_[i] : prefix_;
        const std::string& name = def_.steps[i].name;
        Add(origin + ": " + (name.empty() ? "step #" + std::to_string(i + 1) : "step '" + name + "'") + ": " +
            problem);
    }

    bool empty() const { return count_ == 0; }

    tl::unexpected<Error> ToError() const {
        std::string message = message_;
        if (count_ > kMaxMessages) {
            message += "; and " + std::to_string(count_ - kMaxMessages) + " more problems";
        }
        return MakeError(ErrorCode::kInvalidArgument, std::move(message));
    }

private:
    void Add(const std::string& m) {
        if (++count_ <= kMaxMessages) {
            message_ += message_.empty() ? m : "; " + m;
        }
    }

    const Definition& def_;
    std::string prefix_;
    const std::vector<std::string>& origins_;
    std::string message_;
    std::size_t count_ = 0;
};

void CheckRetry(const RetryPolicy& p, const std::string& field,
                const std::function<void(std::string)>& report) {
    if (p.max_attempts < 1 || p.max_attempts > kMaxAttempts) {
        report(field + ".max_attempts is " + std::to_string(p.max_attempts) + "; want 1.." +
               std::to_string(kMaxAttempts));
    }
    if (p.initial_backoff < Duration(0)) {
        report(field + ".initial_backoff is negative");
    }
    if (p.max_backoff < Duration(0)) {
        report(field + ".max_backoff is negative");
    }
    if (p.max_backoff < p.initial_backoff) {
        report(field + ".max_backoff is below " + field + ".initial_backoff");
    }
    if (!(p.multiplier >= 1.0 && p.multiplier <= kMaxMultiplier)) {  // also NaN
        char buf[32];
        auto end = std::to_chars(buf, buf + sizeof(buf), p.multiplier).ptr;
        report(field + ".multiplier is " + std::string(buf, end) + "; want 1..100");
    }
}

void CheckAction(const ActionRef& a, const std::string& field,
                 const std::function<void(std::string)>& report) {
    if (!ValidActionPart(a.service) || !ValidActionPart(a.action)) {
        report(field + " '" + a.FullName() + "' must read service.action (letters, digits, '_', '-')");
    }
}

// Finds a cycle among steps that Kahn's algorithm left unordered: each of them has a dependency
// that is unordered too, so following dependencies from one of them must come back to a step
// already visited. Returns the names along the cycle, the first repeated at the end.
std::string DescribeCycle(const Definition& def, const std::vector<int>& indegree) {
    std::vector<int> pos(def.steps.size(), -1);
    std::vector<int> path;
    int at = 0;
    while (indegree[at] == 0) {
        ++at;
    }
    while (pos[at] < 0) {
        pos[at] = static_cast<int>(path.size());
        path.push_back(at);
        for (int d : def.steps[at].deps) {
            if (indegree[d] > 0) {
                at = d;
                break;
            }
        }
    }
    std::string s;
    for (std::size_t i = pos[at]; i < path.size(); ++i) {
        s += def.steps[path[i]].name + " -> ";
    }
    return s + def.steps[at].name;
}

void AddError(std::string& errors, const std::string& e) { errors += errors.empty() ? e : "; " + e; }

// The step a DefinitionBuilder call applies to: the last one added.
StepDef* CurrentStep(Definition& def, std::string& errors, const char* call) {
    if (def.steps.empty()) {
        AddError(errors, std::string(call) + "() before any Step()");
        return nullptr;
    }
    return &def.steps.back();
}

}  // namespace

Result<ActionRef> ParseActionRef(const std::string& s) {
    std::size_t dot = s.find('.');
    ActionRef ref;
    if (dot != std::string::npos) {
        ref.service = s.substr(0, dot);
        ref.action = s.substr(dot + 1);
    }
    if (!ValidActionPart(ref.service) || !ValidActionPart(ref.action)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "action '" + s + "' must read service.action (letters, digits, '_', '-')");
    }
    return ref;
}

int Definition::StepIndex(const std::string& name) const {
    for (std::size_t i = 0; i < steps.size(); ++i) {
        if (steps[i].name == name) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

Result<Definition> internal::ValidateWithOrigins(Definition def, const std::string& where,
                                                 const std::vector<std::string>& step_origins) {
    Problems problems(def, where, step_origins);
    def.topo_order.clear();
    for (StepDef& step : def.steps) {
        step.deps.clear();
        step.dependents.clear();
    }

    if (!ValidName(def.type, /*allow_dot=*/true)) {
        problems.Workflow("type '" + def.type + "' must be 1-" + std::to_string(kMaxNameLength) +
                          " characters of a-z, 0-9, '.', '_', '-'");
    }
    if (def.deadline < Duration(0)) {
        problems.Workflow("deadline is negative");
    }
    if (def.steps.empty()) {
        problems.Workflow("has no steps");
    }
    if (def.steps.size() > kMaxSteps) {
        problems.Workflow("has " + std::to_string(def.steps.size()) + " steps; at most " +
                          std::to_string(kMaxSteps) + " allowed");
        return problems.ToError();
    }

    const std::size_t n = def.steps.size();
    std::map<std::string, int, std::less<>> index;  // name -> first step of that name
    // Steps named in each step's input and compensation input templates.
    std::vector<std::vector<std::string>> input_refs(n);
    std::vector<std::vector<std::string>> compensation_refs(n);

    for (std::size_t i = 0; i < n; ++i) {
        StepDef& step = def.steps[i];
        auto report = [&](std::string problem) { problems.Step(i, problem); };
        if (!ValidName(step.name, /*allow_dot=*/false)) {
            report("name must be 1-" + std::to_string(kMaxNameLength) + " characters of a-z, 0-9, '_', '-'");
        } else if (auto [it, fresh] = index.emplace(step.name, static_cast<int>(i)); !fresh) {
            report("duplicate step name (also step #" + std::to_string(it->second + 1) + ")");
        }
        CheckAction(step.action, "action", report);
        if (step.timeout <= Duration(0)) {
            report("timeout must be positive");
        }
        if (step.deadline < Duration(0)) {
            report("deadline is negative");
        }
        CheckRetry(step.retry, "retry", report);
        if (auto t = internal::CheckTemplate(step.input); !t) {
            report("input: " + t.error().message);
        } else {
            step.input = std::move(t->canonical);
            input_refs[i] = std::move(t->steps);
        }
        if (step.compensation) {
            Compensation& c = *step.compensation;
            CheckAction(c.action, "compensation.action", report);
            if (c.timeout <= Duration(0)) {
                report("compensation.timeout must be positive");
            }
            CheckRetry(c.retry, "compensation.retry", report);
            if (!c.input.empty()) {
                if (auto t = internal::CheckTemplate(c.input); !t) {
                    report("compensation.input: " + t.error().message);
                } else {
                    c.input = std::move(t->canonical);
                    compensation_refs[i] = std::move(t->steps);
                }
            }
        }
    }

    // Resolve depends_on; only a graph whose names all resolve is worth checking for cycles.
    for (std::size_t i = 0; i < n; ++i) {
        StepDef& step = def.steps[i];
        for (std::size_t k = 0; k < step.depends_on.size(); ++k) {
            const std::string& dep = step.depends_on[k];
            auto it = index.find(dep);
            if (dep == step.name) {
                problems.Step(i, "depends on itself");
            } else if (it == index.end()) {
                problems.Step(i, "depends_on names unknown step '" + dep + "'");
            } else if (std::find(step.depends_on.begin(), step.depends_on.begin() + k, dep) !=
                       step.depends_on.begin() + k) {
                problems.Step(i, "depends_on lists '" + dep + "' twice");
            } else {
                step.deps.push_back(it->second);
            }
        }
    }
    if (!problems.empty()) {
        return problems.ToError();
    }

    // Kahn's algorithm; among ready steps the earliest defined goes first, so the order is a
    // function of the definition alone.
    std::vector<int> indegree(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        indegree[i] = static_cast<int>(def.steps[i].deps.size());
        for (int d : def.steps[i].deps) {
            def.steps[d].dependents.push_back(static_cast<int>(i));
        }
    }
    std::priority_queue<int, std::vector<int>, std::greater<>> ready;
    for (std::size_t i = 0; i < n; ++i) {
        if (indegree[i] == 0) {
            ready.push(static_cast<int>(i));
        }
    }
    while (!ready.empty()) {
        int i = ready.top();
        ready.pop();
        def.topo_order.push_back(i);
        for (int d : def.steps[i].dependents) {
            if (--indegree[d] == 0) {
                ready.push(d);
            }
        }
    }
    if (def.topo_order.size() != n) {
        problems.Workflow("steps form a cycle: " + DescribeCycle(def, indegree) +
                          " (each depends on the next)");
        return problems.ToError();
    }

    // ancestors[i][j]: step j must have finished before step i starts.
    std::vector<std::vector<bool>> ancestors(n, std::vector<bool>(n, false));
    for (int i : def.topo_order) {
        for (int d : def.steps[i].deps) {
            ancestors[i][d] = true;
            for (std::size_t j = 0; j < n; ++j) {
                if (ancestors[d][j]) {
                    ancestors[i][j] = true;
                }
            }
        }
    }
    auto check_refs = [&](std::size_t i, const std::vector<std::string>& refs, const std::string& field,
                          bool self_ok) {
        for (const std::string& name : refs) {
            auto it = index.find(name);
            if (it == index.end()) {
                problems.Step(i, field + " references unknown step '" + name + "'");
            } else if (!ancestors[i][it->second] && !(self_ok && it->second == static_cast<int>(i))) {
                problems.Step(i, field + " references step '" + name +
                                     "', which does not run before it (add it to depends_on)");
            }
        }
    };
    for (std::size_t i = 0; i < n; ++i) {
        check_refs(i, input_refs[i], "input", /*self_ok=*/false);
        check_refs(i, compensation_refs[i], "compensation.input", /*self_ok=*/true);
    }
    if (!problems.empty()) {
        return problems.ToError();
    }
    return def;
}

Result<Definition> Validate(Definition def, const std::string& where) {
    return internal::ValidateWithOrigins(std::move(def), where, {});
}

DefinitionBuilder::DefinitionBuilder(std::string type) { def_.type = std::move(type); }

DefinitionBuilder& DefinitionBuilder::Deadline(Duration d) {
    def_.deadline = d;
    return *this;
}

DefinitionBuilder& DefinitionBuilder::Step(std::string name, const std::string& action) {
    StepDef& step = def_.steps.emplace_back();
    step.name = std::move(name);
    if (auto ref = ParseActionRef(action)) {
        step.action = std::move(*ref);
    } else {
        AddError(error_, "step '" + step.name + "': " + ref.error().message);
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::After(std::string dep) {
    if (StepDef* step = CurrentStep(def_, error_, "After")) {
        step->depends_on.push_back(std::move(dep));
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::Input(std::string json_template) {
    if (StepDef* step = CurrentStep(def_, error_, "Input")) {
        step->input = std::move(json_template);
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::Timeout(Duration d) {
    if (StepDef* step = CurrentStep(def_, error_, "Timeout")) {
        step->timeout = d;
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::StepDeadline(Duration d) {
    if (StepDef* step = CurrentStep(def_, error_, "StepDeadline")) {
        step->deadline = d;
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::Retry(RetryPolicy p) {
    if (StepDef* step = CurrentStep(def_, error_, "Retry")) {
        step->retry = std::move(p);
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::Compensate(const std::string& action, std::string input_template) {
    if (StepDef* step = CurrentStep(def_, error_, "Compensate")) {
        Compensation& c = step->compensation.emplace();
        c.input = std::move(input_template);
        if (auto ref = ParseActionRef(action)) {
            c.action = std::move(*ref);
        } else {
            AddError(error_, "step '" + step->name + "': compensation " + ref.error().message);
        }
    }
    return *this;
}

DefinitionBuilder& DefinitionBuilder::CompensationRetry(RetryPolicy p) {
    if (StepDef* step = CurrentStep(def_, error_, "CompensationRetry")) {
        if (step->compensation) {
            step->compensation->retry = std::move(p);
        } else {
            AddError(error_, "step '" + step->name + "': CompensationRetry() before Compensate()");
        }
    }
    return *this;
}

Result<Definition> DefinitionBuilder::Build() {
    if (!error_.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "workflow '" + def_.type + "': " + error_);
    }
    return Validate(def_);
}

namespace {

std::string Joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& name : names) {
        out += (out.empty() ? "" : ", ") + name;
    }
    return out;
}

}  // namespace

Status CheckServices(const std::vector<Definition>& defs, const ServiceCatalog& catalog) {
    for (const Definition& def : defs) {
        for (const StepDef& step : def.steps) {
            for (const ActionRef* a :
                 {&step.action, step.compensation ? &step.compensation->action : nullptr}) {
                if (a == nullptr || catalog.Has(a->service, a->action)) continue;
                const std::string where = (a->origin.empty() ? "" : a->origin + ": ") + "workflow '" +
                                          def.type + "' step '" + step.name + "'" +
                                          (a == &step.action ? "" : " compensation") + ": ";
                if (catalog.Find(a->service) == nullptr) {
                    return MakeError(ErrorCode::kInvalidArgument,
                                     where + "no service '" + a->service +
                                         "' (the services: " + Joined(catalog.Names()) + ")");
                }
                return MakeError(ErrorCode::kInvalidArgument,
                                 where + "service '" + a->service + "' has no action '" + a->action +
                                     "' (its actions: " + Joined(catalog.Actions(a->service)) + ")");
            }
        }
    }
    return Ok();
}

}  // namespace cogs::workflow
