// --wait: follows an accepted infrastructure operation to its end (docs/api.md, "Mutations").
// Internal to cogs/cli; runs on the calling thread, blocking, under a deadline.
#pragma once

#include <iosfwd>
#include <string>

#include "cogs/base/time.h"
#include "cogs/cli/internal/api.h"

namespace cogs::cli {

struct WaitTarget {
    std::string what{};         // "server web-1", for progress lines and messages
    std::string path{};         // the resource, "/v1/servers/<id>"
    std::string workflow_id{};  // its workflow, for progress; may be empty
    std::string expect{};       // the status that means success ("ACTIVE"); "" = any stable status
    bool gone = false;          // a delete: success is the resource answering 404
};

struct WaitOptions {
    Duration limit = std::chrono::minutes(10);
    Duration first_poll = std::chrono::milliseconds(100);
    Duration max_poll = std::chrono::seconds(1);
};

// Polls the resource (and its workflow) until the operation ends, writing a line to `progress` for
// each change: the resource's status ("server web-1: BUILD"), each step done ("create_port done
// (2/5)"), retried, failed or undone, and a rollback. Succeeds with the last GET of the resource
// (null for a delete) once its status is stable and as expected. Fails — with the resource's
// fault.message, else the workflow's reason — if the status becomes ERROR, the workflow is
// rolled_back or failed, the resource vanishes during a create, or at the limit (deadline_exceeded).
ApiResult<json::value> Follow(ApiClient& api, const WaitTarget& target, std::ostream& progress,
                              const WaitOptions& options = {});

// Whether a status is one an operation passes through (BUILD, DELETING, attaching, ...) or an error.
bool IsTransitionalStatus(const std::string& status);
bool IsErrorStatus(const std::string& status);

}  // namespace cogs::cli
