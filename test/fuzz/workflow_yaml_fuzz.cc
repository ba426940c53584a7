// Workflow definitions as an operator writes them (workflows/*.yaml): any text through
// LoadDefinitionsFromString. What loads must also survive definition.h's promise that the canonical
// YAML loads back to the same definition.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cogs/base/check.h"
#include "cogs/workflow/definition.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace cogs::workflow;
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto defs = LoadDefinitionsFromString(text, "fuzz.yaml");
    if (!defs) {
        return 0;
    }
    for (const Definition& def : *defs) {
        const std::string yaml = ToYaml(def);
        auto again = LoadDefinitionsFromString(yaml, "canonical.yaml");
        COGS_CHECK(again.has_value() && again->size() == 1);
        COGS_CHECK(ToYaml(again->front()) == yaml);
    }
    return 0;
}
