// Registry: every version of every workflow type this engine may run.
//
// Registering a definition whose canonical YAML equals the latest version of its type is a no-op
// that returns that version; a changed definition becomes version latest+1. Versions are saved
// in the store, so a workflow resumed after a restart runs on the version it started with even if
// the files changed meanwhile.
//
// Threading: not thread-safe; the engine's io thread owns it once the engine runs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/store/store.h"
#include "cogs/workflow/definition.h"

namespace cogs::workflow {

class Registry {
public:
    explicit Registry(store::Store* store) : store_(store) {}

    // Loads every saved version (call once, before Register).
    Status LoadFromStore();

    // Validates (already done by the loaders, done again for hand-built ones), versions and
    // saves `def`. Returns the version it runs as.
    Result<int> Register(Definition def);
    // All or nothing for a set loaded from files.
    Status RegisterAll(std::vector<Definition> defs);

    const Definition* Latest(const std::string& type) const;
    const Definition* Get(const std::string& type, int version) const;
    std::vector<std::string> Types() const;

private:
    store::Store* store_;
    // type -> version -> definition; shared_ptr keeps addresses stable for running workflows.
    std::map<std::string, std::map<int, std::shared_ptr<const Definition>>> defs_;
};

}  // namespace cogs::workflow
