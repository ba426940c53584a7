// What every resource module shares: presenting a record, admitting a create (role and
// Idempotency-Key), and answering once what is answered is durable.
//
// Idempotency-Key (docs/api.md): a create sent again with the same key and body by the same project
// within 24 h answers the first answer again (the resource as it is now, with the first status);
// the same key with another body is 409. The key's record commits with what it answers.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cogs/cloud/api/call.h"
#include "cogs/cloud/core/context.h"

namespace cogs::cloud {

// How long an Idempotency-Key is remembered.
inline constexpr int64_t kIdempotencyTtlMs = 24 * 3600 * 1000;

// The API's view of a record (no internal keys; a project without its quotas).
json::object Present(const Res& r);
// {"<kind>": view} with `status`.
http::Response Presented(int status, const Res& r);

// A create that passed admission: the caller may write, and its Idempotency-Key (if any) is new.
struct Creation {
    Call call;
    std::string idem_id;    // "<project>/<key>"; empty: no Idempotency-Key
    std::string idem_hash;  // of the kind and the body
    const Principal& who() const { return call.who; }
    // The Idempotency-Key's record for `made` answered with `status`; nullopt without a key.
    std::optional<Res> IdempotencyRecord(const Res& made, int status, int64_t now_ms) const;
};

// Admits a create of `kind`: answers (and returns nullopt) for a reader, a malformed or reused
// Idempotency-Key, or a replay (the first answer again).
std::optional<Creation> AdmitCreate(Context& ctx, Call call, std::string_view kind);

// The project a new resource belongs to: the caller's, or (admins only) the body's project_id.
Result<std::string> OwnerOf(const Context& ctx, const Principal& who, const wire::Input& body);

// The resource {id} of the call for a change: the caller may write (else 403) and see it (else 404),
// and (with `idle`) no workflow is working on it (else 409 "KIND ID is STATUS").
Result<Res*> FindToChange(Context& ctx, const Call& call, std::string_view kind, bool idle = true);

// Puts a new resource in the model in its transitional status and starts `type` on it with `input`;
// if the engine refuses, the resource leaves the model and `give_back` returns what it reserved.
// Answers 202 (with the Idempotency-Key's record of `c`) or the refusal.
void StartCreate(Context& ctx, const Creation& c, Res made, std::string type, json::object input,
                 std::function<void()> give_back = {});

// A query parameter that must be an integer in [min, max]; else 400 naming it with `rule`.
Result<int64_t> IntParam(std::string_view name, const std::string& value, int64_t min, int64_t max,
                         std::string_view rule);

// Saves catalog records (no workflow) with the Idempotency-Key's record, then answers `status`
// with the first of them once durable.
void SaveAndAnswer(Context& ctx, const Creation& c, std::vector<Res> made, int status);

// Starts `launch` (with the Idempotency-Key's record of `c`, if any) and answers 202 with the
// resource it works on as it is then, or the engine's refusal (429 when overloaded).
void StartAndAnswer(Context& ctx, Launch launch, const Call& call, const Creation* c = nullptr);

}  // namespace cogs::cloud
