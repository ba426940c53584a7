// Validation with per-step origins, shared by definition.cc (which defines it) and the YAML loader.
#pragma once

#include <string>
#include <vector>

#include "cogs/workflow/definition.h"

namespace cogs::workflow::internal {

// Validate() with an origin per step ("file.yaml:14") so that the YAML loader's messages point at
// the step's line; an empty or missing entry falls back to `where`.
Result<Definition> ValidateWithOrigins(Definition def, const std::string& where,
                                       const std::vector<std::string>& step_origins);

}  // namespace cogs::workflow::internal
