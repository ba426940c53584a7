// `cogs get`, `cogs create -f`, `cogs delete`: the generic verbs over any collection of the API, for
// the kinds an operator declares in configuration (docs/extending.md: `cogs get dns_zones`,
// `cogs create dns_zones -f zone.yaml --wait`), as kubectl's over custom resources. Internal to
// cogs/cli.
//
//   get COLLECTION [ID]            GET /v1/COLLECTION (every page) or /v1/COLLECTION/ID
//   create COLLECTION -f FILE      POST /v1/COLLECTION with FILE's YAML (or JSON) object as the body;
//                                  --wait follows the create to ACTIVE (or its error)
//   delete COLLECTION ID           DELETE /v1/COLLECTION/ID; --wait until it is gone
#pragma once

#include <string>

#include "cogs/base/result.h"
#include "cogs/cli/internal/invocation.h"

namespace cogs::cli {

void AddKindCommands(Invocation& inv, CLI::App& app);

// The YAML (or JSON) text of a request body as JSON text, converted as workflow inputs are
// (workflow::YamlReader::Json: plain scalars that read as numbers, true/false or null keep that
// type, quoted ones are strings). kInvalidArgument "FILE:LINE: ..." for text that is not one YAML
// mapping.
Result<std::string> YamlBodyToJson(const std::string& text, const std::string& source);

}  // namespace cogs::cli
