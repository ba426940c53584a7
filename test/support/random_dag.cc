#include "test/support/random_dag.h"

#include <fmt/format.h>

#include "cogs/base/check.h"

namespace cogs::testing {

workflow::Definition RandomDefinition(std::mt19937_64& rng, const std::string& type,
                                      const RandomDagOptions& o) {
    using namespace std::chrono_literals;
    const int n = std::uniform_int_distribution<int>(1, o.max_steps)(rng);
    workflow::DefinitionBuilder b(type);
    for (int i = 0; i < n; ++i) {
        const std::string name = fmt::format("s{}", i);
        b.Step(name, fmt::format("{}.act{}", o.service, i));
        std::string input = R"({"n":"${workflow.id}")";
        for (int j = 0; j < i; ++j) {
            if (std::bernoulli_distribution(0.3)(rng)) {
                b.After(fmt::format("s{}", j));
                input += fmt::format(R"(,"from_s{0}":"${{steps.s{0}.output.id}}")", j);
            }
        }
        input += "}";
        b.Input(input);
        b.Timeout(o.timeout);
        workflow::RetryPolicy r;
        r.max_attempts = o.max_attempts;
        r.initial_backoff = 5ms;
        r.max_backoff = 100ms;
        b.Retry(r);
        if (std::bernoulli_distribution(o.compensation_rate)(rng)) {
            b.Compensate(fmt::format("{}.undo{}", o.service, i));
            workflow::RetryPolicy cr;
            cr.max_attempts = o.comp_max_attempts;
            cr.initial_backoff = 5ms;
            cr.max_backoff = 50ms;
            b.CompensationRetry(cr);
        }
    }
    auto def = b.Build();
    COGS_CHECK(def.has_value());
    for (auto& s : def->steps) {
        if (s.compensation) {
            s.compensation->timeout = o.timeout;
        }
    }
    return std::move(*def);
}

}  // namespace cogs::testing
