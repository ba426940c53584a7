// What every resource module shares: presenting a record, a create's admission, and answering once
// what is answered is durable (with the Idempotency-Key's record of the answer: idempotency.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cogs/cloud/api/call.h"
#include "cogs/cloud/core/context.h"

namespace cogs::cloud {

// The API's view of a record (no internal keys; a project without its quotas).
json::object Present(const Res& r);
// {"<kind>": view} with `status`.
http::Response Presented(int status, const Res& r);

// A create that passed admission: the caller may write, and its Idempotency-Key (if any) is new.
struct Creation {
    Call call;
    const Principal& who() const { return call.who; }
};

// Admits a create: answers (and returns nullopt) for a reader. (The Idempotency-Key was admitted
// before, as for every POST.)
std::optional<Creation> AdmitCreate(Call call);

// The project a new resource belongs to: the caller's, or (admins only) the body's project_id.
Result<std::string> OwnerOf(const Context& ctx, const Principal& who, const wire::Input& body);

// The resource {id} of the call for a change: the caller may write (else 403) and see it (else 404),
// and (with `idle`) no workflow is working on it (else 409 "KIND ID is STATUS").
Result<Res*> FindToChange(Context& ctx, const Call& call, std::string_view kind, bool idle = true);

// Puts a new resource in the model in its transitional status and starts `type` on it with `input`;
// if the engine refuses, the resource leaves the model and gives back the quota it holds
// (Model::HeldBy: the handler reserved it and set "_quota"). Answers 202 (with the
// Idempotency-Key's record of `c`) or the refusal.
void StartCreate(Context& ctx, const Creation& c, Res made, std::string type, json::object input);

// A query parameter that must be an integer in [min, max]; else 400 naming it with `rule`.
Result<int64_t> IntParam(std::string_view name, const std::string& value, int64_t min, int64_t max,
                         std::string_view rule);

// Saves catalog records (no workflow) with the Idempotency-Key's record, then answers `status`
// with the first of them once durable.
void SaveAndAnswer(Context& ctx, const Creation& c, std::vector<Res> made, int status);

// Starts `launch` and answers 202 with the resource it works on as the workflow starts (with its
// workflow_id), or the engine's refusal (429 when overloaded). The call's Idempotency-Key record of
// that answer commits with the workflow.
void StartAndAnswer(Context& ctx, Launch launch, const Call& call);

// The batch form (a bulk create; the caller admitted the count, Context::AdmitWorkflows): starts
// every launch in ONE transaction with the Idempotency-Key's record of the answer, `present()`,
// made once the resources carry their workflows' ids (Context::StartWorkflows). Answers it, or the
// engine's refusal after every launch's undo ran.
void StartManyAndAnswer(Context& ctx, std::vector<Launch> launches, std::function<http::Response()> present,
                        const Call& call);

}  // namespace cogs::cloud
