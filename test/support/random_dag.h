// Random workflow definitions for randomized and chaos tests: DAGs of 1..max_steps steps, each
// depending on a random subset of earlier ones, most with a compensation, all on one service.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "cogs/workflow/definition.h"

namespace cogs::testing {

struct RandomDagOptions {
    std::string service = "sim";
    int max_steps = 8;
    double compensation_rate = 0.85;
    std::chrono::milliseconds timeout{200};
    int max_attempts = 6;
    int comp_max_attempts = 50;
};

workflow::Definition RandomDefinition(std::mt19937_64& rng, const std::string& type,
                                      const RandomDagOptions& o);

}  // namespace cogs::testing
