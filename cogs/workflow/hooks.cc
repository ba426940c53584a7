// ApplyHooks (definition.h): operators' steps woven into loaded workflows.
#include <algorithm>
#include <map>
#include <set>

#include "cogs/workflow/definition.h"
#include "cogs/workflow/internal/validate.h"

namespace cogs::workflow {
namespace {

std::string Listed(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) {
        out += (out.empty() ? "" : ", ") + n;
    }
    return out;
}

tl::unexpected<Error> Refuse(const Hook& h, const std::string& problem) {
    return MakeError(ErrorCode::kInvalidArgument,
                     h.origin + ": hook '" + h.step.name + "' of workflow '" + h.workflow + "': " + problem);
}

// Weaves the hooks of one definition in; `hooks` all name def.type.
Result<Definition> Weave(Definition def, const std::vector<const Hook*>& hooks) {
    // Placed against the workflow as loaded: hooks at one place run side by side.
    std::vector<std::string> names;
    std::map<std::string, std::vector<std::string>> loaded_deps;
    for (const StepDef& s : def.steps) {
        names.push_back(s.name);
        loaded_deps[s.name] = s.depends_on;
    }
    std::vector<std::string> origins(def.steps.size());
    std::set<std::string> taken(names.begin(), names.end());
    for (const Hook* h : hooks) {
        const std::string& anchor = h->after.empty() ? h->before : h->after;
        if (!loaded_deps.contains(anchor)) {
            return Refuse(*h, "no step '" + anchor + "' (its steps: " + Listed(names) + ")");
        }
        if (!taken.insert(h->step.name).second) {
            return Refuse(*h, "the name '" + h->step.name + "' is already a step of the workflow");
        }
        StepDef step = h->step;
        if (!h->after.empty()) {
            step.depends_on = {anchor};
            for (StepDef& s : def.steps) {
                const auto& deps = loaded_deps.find(s.name);
                if (deps != loaded_deps.end() &&
                    std::find(deps->second.begin(), deps->second.end(), anchor) != deps->second.end()) {
                    s.depends_on.push_back(step.name);
                }
            }
        } else {
            step.depends_on = loaded_deps[anchor];
            for (StepDef& s : def.steps) {
                if (s.name == anchor) s.depends_on.push_back(step.name);
            }
        }
        def.steps.push_back(std::move(step));
        origins.push_back(h->origin);
    }
    return internal::ValidateWithOrigins(std::move(def), hooks.front()->origin, origins);
}

}  // namespace

Result<std::vector<Definition>> ApplyHooks(std::vector<Definition> defs, const std::vector<Hook>& hooks) {
    std::map<std::string, std::vector<const Hook*>> by_type;
    for (const Hook& h : hooks) {
        by_type[h.workflow].push_back(&h);
    }
    for (Definition& def : defs) {
        auto it = by_type.find(def.type);
        if (it == by_type.end()) continue;
        COGS_ASSIGN_OR_RETURN(def, Weave(std::move(def), it->second));
        by_type.erase(it);
    }
    if (!by_type.empty()) {
        std::vector<std::string> types;
        for (const Definition& d : defs) {
            types.push_back(d.type);
        }
        const Hook& h = *by_type.begin()->second.front();
        return Refuse(h, "no such workflow (the workflows: " + Listed(types) + ")");
    }
    return defs;
}

}  // namespace cogs::workflow
