// A workflow type: a DAG of named steps, each a call to `service.action`.
//
// The same model is built in C++ (DefinitionBuilder) and loaded from YAML (LoadDefinitions*).
// Either way it goes through Validate(), which resolves names to indices and rejects cycles,
// unknown steps, missing actions, nonsense retry values and placeholders that reference a step
// that is not an ancestor. A rejected definition registers nothing.
//
// YAML form (one document may hold a list under `workflows:` or be a single workflow):
//
//   workflows:
//     - type: bench.server_create
//       deadline: 5m                     # optional; the whole workflow, then it compensates
//       steps:
//         - name: allocate_ip
//           action: network.allocate_ip
//           input: {network: "${input.network_id}", port_id: "${ids.port}"}
//           timeout: 2s                  # per attempt
//           deadline: 10m                # optional; a long (accepted) action's whole life
//           retry: {max_attempts: 5, initial_backoff: 50ms, max_backoff: 2s, multiplier: 2,
//                   retry_on: [unavailable, deadline_exceeded]}
//           compensation:
//             action: network.release_ip
//             input: {ip: "${steps.allocate_ip.output.ip}"}   # optional
//             retry: {max_attempts: 20}
//         - name: create_port
//           action: network.create_port
//           depends_on: [allocate_ip]
//
// Placeholders inside input strings: ${input.PATH}, ${steps.STEP.output.PATH}, ${ids.NAME} (an
// id derived from the workflow id: stable across retries and restarts, chosen before the first
// call), ${workflow.id}. A string that is exactly one placeholder takes the referenced JSON value
// with its type; otherwise the values are interpolated as text.
// A compensation without `input` receives {"input": <the action's input>, "output": <its output>}.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"
#include "cogs/workflow/service.h"

namespace cogs::workflow {

// Retry policy: exponential backoff with full jitter (AWS's "full jitter": a uniform draw from
// [0, min(max_backoff, initial_backoff * multiplier^(attempt-1))]).
struct RetryPolicy {
    int max_attempts = 5;  // >= 1; attempts in total, not retries
    Duration initial_backoff = std::chrono::milliseconds(50);
    Duration max_backoff = std::chrono::seconds(5);
    double multiplier = 2.0;  // >= 1
    // Error codes worth retrying. Empty: follow Error::retryable.
    std::vector<ErrorCode> retry_on;

    bool ShouldRetry(const Error& e, int attempts_so_far) const;
    // The upper bound of the wait before attempt number `next_attempt` (2 for the first retry).
    Duration BackoffCap(int next_attempt) const;
    // The jittered wait: `unit` is a uniform draw from [0, 1).
    Duration Backoff(int next_attempt, double unit) const;
};

struct ActionRef {
    std::string service;
    std::string action;
    std::string origin;  // "<file>:<line>" of the YAML that named it, when loaded from one
    std::string FullName() const { return service + "." + action; }
};

struct Compensation {
    ActionRef action;
    std::string input;  // JSON template text; empty: {"input": ..., "output": ...}
    RetryPolicy retry;
    Duration timeout = std::chrono::seconds(10);
};

struct StepDef {
    std::string name;
    ActionRef action;
    std::vector<std::string> depends_on;
    std::string input = "{}";  // JSON template text
    RetryPolicy retry;
    Duration timeout = std::chrono::seconds(10);  // per attempt
    Duration deadline{0};  // 0: none. Bounds a long (accepted) action's polling, from the first attempt.
    std::optional<Compensation> compensation;

    // Filled by Validate(): indices into Definition::steps.
    std::vector<int> deps;
    std::vector<int> dependents;
};

struct Definition {
    std::string type;
    int version = 0;       // assigned by the Registry
    Duration deadline{0};  // 0: none
    std::vector<StepDef> steps;

    // Filled by Validate().
    std::vector<int> topo_order;
    int StepIndex(const std::string& name) const;  // -1 if none
};

// Checks and resolves a definition. `where` names its origin for messages ("file.yaml:12").
Result<Definition> Validate(Definition def, const std::string& where = "");

// Parses YAML text. Errors read "<source>:<line>: <problem>".
Result<std::vector<Definition>> LoadDefinitionsFromString(const std::string& text, const std::string& source);
Result<std::vector<Definition>> LoadDefinitionsFromFile(const std::string& path);
// Every *.yaml / *.yml file in a directory, in name order; all or nothing.
Result<std::vector<Definition>> LoadDefinitionsFromDirectory(const std::string& dir);

// Every action of `defs` (steps and compensations) names a service of `catalog` and an action it
// has; else kInvalidArgument "<file>:<line>: workflow 'T' step 'S': no service 'x' (the services:
// a, b)" or "...: service 'x' has no action 'y' (its actions: p, q)".
// What a control plane checks before it registers what it loaded (nothing written if not).
Status CheckServices(const std::vector<Definition>& defs, const ServiceCatalog& catalog);

// A step an operator adds to a workflow without editing its file (cogsd's hooks.d/*.yaml, docs/extending.md):
//
//   hooks:
//     - workflow: server.create
//       after: boot                  # or `before: STEP`: exactly one of the two
//       name: dns_register           # then the fields of a step, all but depends_on
//       action: dns.register
//       input: {server_id: "${input.server_id}", address: "${steps.create_port.output.fixed_ip}"}
//       compensation: {action: dns.unregister, input: {server_id: "${input.server_id}"}}
//
// `after: S`: the hook runs once S has succeeded, and every step that depended on S in the
// workflow as loaded waits for the hook as well (so a server becomes ACTIVE only once its hook did
// its work). `before: S`: the hook runs once S's dependencies have succeeded, and S waits for it.
// Several hooks at one place run side by side. A hook is a step like any other: retries, keys,
// deadlines, compensation (in reverse order on rollback), crash resume and events.
struct Hook {
    std::string workflow;
    std::string after;  // exactly one of after and before is set
    std::string before;
    StepDef step;
    std::string origin;  // "<file>:<line>" of the hook
};

// Parses hooks from YAML text (a `hooks:` list or a single hook per document). Errors read
// "<source>:<line>: <problem>".
Result<std::vector<Hook>> LoadHooksFromString(const std::string& text, const std::string& source);
// Every *.yaml / *.yml file in a directory, in name order; all or nothing.
Result<std::vector<Hook>> LoadHooksFromDirectory(const std::string& dir);

// `defs` with `hooks` woven in, each changed definition validated again. Refused, naming the hook's
// file and line: a workflow or an anchor step that does not exist, a name already taken by a step
// of that workflow, an input naming a step that does not run before the hook.
Result<std::vector<Definition>> ApplyHooks(std::vector<Definition> defs, const std::vector<Hook>& hooks);

// The canonical YAML of one definition; LoadDefinitionsFromString(ToYaml(d)) gives back d.
std::string ToYaml(const Definition& def);

// Building in C++:
//   auto def = DefinitionBuilder("bench.server_create")
//       .Step("allocate_ip", "network.allocate_ip").Input(R"({"net":"${input.net}"})")
//           .Compensate("network.release_ip")
//       .Step("create_port", "network.create_port").After("allocate_ip")
//       .Build();   // Result<Definition>, validated
class DefinitionBuilder {
public:
    explicit DefinitionBuilder(std::string type);
    DefinitionBuilder& Deadline(Duration d);
    DefinitionBuilder& Step(std::string name, const std::string& action);
    DefinitionBuilder& After(std::string dep);
    DefinitionBuilder& Input(std::string json_template);
    DefinitionBuilder& Timeout(Duration d);
    DefinitionBuilder& StepDeadline(Duration d);
    DefinitionBuilder& Retry(RetryPolicy p);
    DefinitionBuilder& Compensate(const std::string& action, std::string input_template = "");
    DefinitionBuilder& CompensationRetry(RetryPolicy p);
    Result<Definition> Build();

private:
    Definition def_;
    std::string error_;
};

// The durations of cogs's YAML files: "250ms", "2s", "5m", "1h" (also "us", "ns"), or a bare integer
// of milliseconds; nullopt for anything else.
std::optional<Duration> ParseDuration(std::string_view s);

// Splits "service.action"; kInvalidArgument if either part is empty.
Result<ActionRef> ParseActionRef(const std::string& s);

}  // namespace cogs::workflow
