// Idempotency-Key (docs/api.md "Idempotency"): every POST of /v1 — creates and actions alike — may
// carry one, and a client that lost an answer sends the same request again with the same key.
//
// Within a project, the same key with the same request (method, path and body) answers the first
// answer again, exactly: the same status and body, hence the same resource and the same workflow;
// nothing is done twice. The same key with another request is 409 naming the header; a key whose
// first request is still being answered is 409 too (send it again). Only successes (2xx) are
// remembered: a refused request may be sent again with its key and is judged again.
//
// A key's record (kind "idempotency", id "<project>/<key>") holds the request's hash and the answer.
// Where the answer reports a change it commits with that change (Remember: a workflow's start in
// StartAndAnswer, a create's records in SaveAndAnswer, a host's), so that a crash cannot keep the
// one without the other; any other success is recorded once answered, before the answer leaves.
//
// Bounds: a record is replayed for `CloudOptions::idempotency_ttl` (24 h); a project keeps at most
// `idempotency_max_per_project` records and the cloud `idempotency_max` (the oldest tenth is
// forgotten when a new key would pass a cap). Expired records are pruned at Start() and every
// `idempotency_prune_every`, and at Load.
//
// Metrics (docs/metrics.md): cogs_idempotency_keys (kept), cogs_idempotency_keys_forgotten_total
// {reason: expired, cap}.
//
// Threading: the io thread (the records live in the model).
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cogs/cloud/resources/common.h"

namespace cogs::cloud {

class IdempotencyKeys {
public:
    explicit IdempotencyKeys(Context& ctx);
    ~IdempotencyKeys();

    void Start();  // prunes now, then every idempotency_prune_every
    void Stop();

    // The admission of a POST. Without a key: `handler(call)`. With one: 403 for a reader, 400 for
    // a key over 255 characters, 409 for a key reused or in flight, the first answer for a
    // replay; else `handler` runs on the call with its key admitted (Call::idempotency_record).
    //
    // `unhashed`: top-level fields of the body left out of the request's hash, which the key's
    // record keeps for a day — a password (POST /v1/users): a fast hash of a body that holds it
    // would undo its slow one. So a resent create that differs only there replays the first answer.
    void Admit(Call call, const std::function<void(Call)>& handler,
               std::span<const std::string_view> unhashed = {});

    // Whether a stored record has outlived the TTL at `now_ms` (Load drops those).
    static bool Expired(const Context& ctx, const Res& record, int64_t now_ms);

private:
    // Room for one more record of `project`: beyond its cap its oldest records go, and beyond the
    // cloud's the oldest of all.
    void MakeRoom(const std::string& project);
    size_t ForgetOldest(std::vector<std::pair<int64_t, std::string>> held, size_t cap);
    // Drops expired records, and each project's oldest beyond the cap.
    void Prune();
    void Forget(std::vector<std::string> ids);

    Context& ctx_;
    std::unique_ptr<runtime::Timer> timer_;
    std::set<std::string> in_flight_;                 // record ids whose first request is being answered
    std::unordered_map<std::string, size_t> counts_;  // per project: at least what it holds
    observe::Gauge kept_;
    observe::Counter forgotten_expired_;
    observe::Counter forgotten_cap_;
};

// The record of `answer` to `call` (whose key was admitted) goes into the model and `writes`, to
// commit with what it answers. No-op for a call without a key.
void Remember(Context& ctx, const Call& call, const http::Response& answer,
              std::vector<store::ResourceWrite>& writes);

}  // namespace cogs::cloud
