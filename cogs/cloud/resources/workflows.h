// Workflows as the API shows them: GET /v1/workflows (filters state, type, project_id for admins;
// pages by marker and limit), GET /v1/workflows/{id} (its steps with attempts, outputs and the
// per-attempt log, and its trace) and POST /v1/workflows/{id}/cancel (a writer's; compensation
// follows; an operator's workflow — server.evacuate, server.migrate, server.repair, heal.* — an
// admin's only: 403), POST /v1/workflows/{id}/retry (an admin's: a `failed` workflow's compensation
// runs again, and its resource takes the new end). A member sees its project's workflows only. Reads
// run on the read pool.
#pragma once

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class Workflows {
public:
    explicit Workflows(Context& ctx) : ctx_(ctx) {}

    void List(Call call);
    void Show(Call call);
    void Cancel(Call call);
    void Retry(Call call);

private:
    // Answers the workflow {id} (visible to the caller) to `then`, or the error to the call.
    void Load(Call call, std::function<void(Call, store::WorkflowRecord)> then);
    json::object View(const store::WorkflowRecord& w) const;
    Context& ctx_;
};

}  // namespace cogs::cloud
