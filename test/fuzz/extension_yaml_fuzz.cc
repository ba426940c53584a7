// cogsd's configuration directory as an operator writes it (cogs/extend: services.d, kinds.d, and
// workflow hooks): any text through each loader. What loads must keep the loaders' promises: a kind's
// defaults obey its own field rules, a service lists its actions, a hook is placed exactly one way.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cogs/base/check.h"
#include "cogs/extend/extensions.h"
#include "cogs/workflow/definition.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace cogs;
    const std::string text(reinterpret_cast<const char*>(data), size);
    // Token files resolve under a directory that does not exist: a service naming one is refused.
    if (auto services = extend::LoadServicesFromString(text, "fuzz.yaml", "/nonexistent-cogs-fuzz")) {
        for (const auto& s : *services) {
            COGS_CHECK(!s.actions.empty() && s.insecure && s.max_inflight >= 1);
        }
    }
    if (auto kinds = extend::LoadKindsFromString(text, "fuzz.yaml")) {
        for (const auto& k : *kinds) {
            COGS_CHECK(!k.fields.empty() && k.kind != k.plural);
            for (const auto& f : k.fields) {
                COGS_CHECK(f.minimum <= f.maximum);
                COGS_CHECK(!(f.required && f.default_value));
                if (f.default_value && f.type == cloud::FieldSpec::Type::kInteger) {
                    const int64_t d = f.default_value->as_int64();
                    COGS_CHECK(d >= f.minimum && d <= f.maximum);
                }
            }
        }
    }
    if (auto hooks = workflow::LoadHooksFromString(text, "fuzz.yaml")) {
        for (const auto& h : *hooks) {
            COGS_CHECK(h.after.empty() != h.before.empty());
        }
    }
    return 0;
}
