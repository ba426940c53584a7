// Input templates: JSON text whose strings may hold ${...} placeholders (see definition.h).
//
//   ${input}              ${input.PATH}              the workflow's input
//   ${steps.NAME.output}  ${steps.NAME.output.PATH}  an earlier step's output
//   ${ids.NAME}                                      an id derived from the workflow id (DeriveId)
//   ${workflow.id}                                   the workflow id
//
// PATH is dot-separated keys; a numeric segment indexes an array. A string that is exactly one
// placeholder takes the referenced JSON value with its type (a missing path gives null); in any
// other string each placeholder is replaced by text: a string's characters, a number's or bool's
// JSON text, an object's or array's compact JSON, and "" for null or a missing path. "$${" writes
// a literal "${". Placeholders are substituted in string values only; an object key that holds one
// is rejected. A PATH cannot name a key that contains '.', '}' or whitespace.
//
// The canonical form of a template (what CheckTemplate returns and Validate stores) is compact
// JSON: no whitespace outside strings, strings escaped the one way AppendJsonQuoted does, numbers
// exactly as written (never re-formatted through a double). RenderTemplate's output is canonical
// too, except that values substituted from the input or an output are re-serialized by Boost.JSON.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"

namespace cogs::workflow::internal {

struct RenderContext {
    std::string_view workflow_id;
    std::string_view input;  // the workflow's input, JSON text; empty counts as null
    // Returns the JSON text of step `name`'s output, or nullptr if it has none. May be empty
    // (no step has an output). The pointee must stay valid for the RenderTemplate call.
    std::function<const std::string*(std::string_view name)> step_output;
};

// Renders a JSON template: every string holding ${...} placeholders is replaced as described
// above. The input and step outputs are parsed only when a placeholder refers to them, at most
// once per call. A template without "${" (and without \u escapes) is returned as it is, unchecked:
// pass templates that went through Validate(). kInvalidArgument for a malformed template or
// placeholder, or when a referenced input or output is not valid JSON.
// Thread-safe: no state outside the call.
Result<std::string> RenderTemplate(std::string_view template_json, const RenderContext& ctx);

struct CheckedTemplate {
    std::string canonical;           // the template in canonical form (see above)
    std::vector<std::string> steps;  // step names referenced, each once, in order of appearance
};

// Checks that `template_json` is valid JSON whose placeholders are well formed with a known root
// (input, steps, ids, workflow), and returns its canonical form and referenced steps.
Result<CheckedTemplate> CheckTemplate(std::string_view template_json);

// Lists the step names referenced by ${steps.NAME...} (each once, in order of appearance) and
// checks syntax and roots like CheckTemplate.
Result<std::vector<std::string>> ReferencedSteps(std::string_view template_json);

// A stable id for resource `name` of workflow `workflow_id`: a 128-bit hash of both strings
// formatted as a UUID (8-4-4-4-12 lowercase hex, version 8, RFC 9562 variant). Ids are persisted
// by the services that receive them, so the algorithm must never change.
std::string DeriveId(std::string_view workflow_id, std::string_view name);

// Appends `s` (UTF-8) to `out` as a quoted JSON string in canonical form: '"' and '\' escaped,
// \b \f \n \r \t for those controls, \u00XX for the other controls, everything else as is.
void AppendJsonQuoted(std::string& out, std::string_view s);

}  // namespace cogs::workflow::internal
