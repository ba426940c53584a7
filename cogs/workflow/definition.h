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

// Every action of `defs` (steps and compensations) names a service of `catalog`; else
// kInvalidArgument "<file>:<line>: workflow 'T' step 'S': no service 'x' (the services: a, b)".
// What a control plane checks before it registers what it loaded (nothing written if not).
Status CheckServices(const std::vector<Definition>& defs, const ServiceCatalog& catalog);

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

// Splits "service.action"; kInvalidArgument if either part is empty.
Result<ActionRef> ParseActionRef(const std::string& s);

}  // namespace cogs::workflow
