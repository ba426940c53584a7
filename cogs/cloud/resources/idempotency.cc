#include "cogs/cloud/resources/idempotency.h"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "cogs/base/secret.h"
#include "cogs/observe/log.h"

namespace cogs::cloud {
namespace {

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// The records of `project`: their ids are "<project>/<key>", so they are adjacent in the model.
template <typename Fn>
void ForEachOf(const Context& ctx, const std::string& project, Fn fn) {
    const auto& all = ctx.model.All(kIdempotency);
    const std::string prefix = project + "/";
    for (auto it = all.lower_bound(prefix); it != all.end() && it->first.starts_with(prefix); ++it) {
        fn(it->second);
    }
}

// The body as the request's hash takes it: without the `unhashed` fields of a JSON object (a body
// that is not one is refused by its handler, and a refusal is not remembered).
std::string Hashed(const std::string& body, std::span<const std::string_view> unhashed) {
    if (unhashed.empty()) {
        return body;
    }
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) {
        return body;
    }
    for (std::string_view field : unhashed) {
        v.get_object().erase(field);
    }
    return json::serialize(v);
}

}  // namespace

IdempotencyKeys::IdempotencyKeys(Context& ctx) : ctx_(ctx), timer_(ctx.clock.NewTimer(ctx.io)) {
    kept_ = observe::GaugeOf(ctx.metrics(), "cogs_idempotency_keys",
                             "Idempotency-Key records kept (replayable), sampled at scrape.")
                .With({});
    auto forgotten = observe::CounterOf(ctx.metrics(), "cogs_idempotency_keys_forgotten_total",
                                        "Idempotency-Key records forgotten, by reason: expired, cap.");
    forgotten_expired_ = forgotten.With({{"reason", "expired"}});
    forgotten_cap_ = forgotten.With({{"reason", "cap"}});
    if (ctx.metrics() != nullptr) {
        // On the io thread at a scrape (cogsd serves /metrics there), where the model lives.
        ctx.metrics()->OnCollect(
            ctx.Guard([this] { kept_.Set(static_cast<double>(ctx_.model.All(kIdempotency).size())); }));
    }
}

IdempotencyKeys::~IdempotencyKeys() { Stop(); }

void IdempotencyKeys::Start() { Prune(); }

void IdempotencyKeys::Stop() { timer_->Cancel(); }

bool IdempotencyKeys::Expired(const Context& ctx, const Res& record, int64_t now_ms) {
    return Int(record.body, "_at_ms") + Ms(ctx.options.idempotency_ttl) < now_ms;
}

void IdempotencyKeys::Admit(Call call, const std::function<void(Call)>& handler,
                            std::span<const std::string_view> unhashed) {
    const std::string& key = call.idempotency_key;
    if (key.empty()) {
        return handler(std::move(call));
    }
    // A reader changes nothing, and must not learn another token's answers by replaying them.
    if (auto st = RequireWriter(call.who); !st) return call.Fail(st.error());
    if (key.size() > 255) {
        return call.Fail(FieldError("Idempotency-Key", "longer than 255 characters"));
    }
    const std::string id = call.who.project_id + "/" + key;
    const std::string hash = Sha256Hex(call.method + " " + call.path + "\n" + Hashed(call.body, unhashed));
    const int64_t now = ctx_.clock.WallMs();
    if (in_flight_.contains(id)) {
        return call.Fail(Error(ErrorCode::kConflict,
                               "a request with this Idempotency-Key is being answered; send it again")
                             .With("field", "Idempotency-Key"));
    }
    if (const Res* prior = ctx_.model.Find(kIdempotency, id);
        prior != nullptr && !Expired(ctx_, *prior, now)) {
        if (Str(prior->body, "_hash") != hash) {
            return call.Fail(Error(ErrorCode::kConflict,
                                   "Idempotency-Key reused with a different request (method, path "
                                   "or body): a new request needs a new key")
                                 .With("field", "Idempotency-Key"));
        }
        http::Response replay;
        replay.status = static_cast<int>(Int(prior->body, "_status"));
        replay.body = Str(prior->body, "_answer");
        return call.Answer(std::move(replay));
    }
    MakeRoom(call.who.project_id);
    in_flight_.insert(id);
    call.idempotency_record = id;
    call.idempotency_hash = hash;
    // A success the handler did not record with its change (a heartbeat, a cancel) is recorded
    // before it is answered.
    Call keyed;  // what Remember needs of the call
    keyed.who = call.who;
    keyed.idempotency_record = id;
    keyed.idempotency_hash = hash;
    call.respond =
        ctx_.Guard([this, keyed = std::move(keyed), respond = call.respond, now](http::Response r) {
            in_flight_.erase(keyed.idempotency_record);
            const Res* rec = ctx_.model.Find(kIdempotency, keyed.idempotency_record);
            const bool recorded = rec != nullptr && Str(rec->body, "_hash") == keyed.idempotency_hash &&
                                  Int(rec->body, "_at_ms") >= now;
            if (r.status / 100 != 2 || recorded) {
                return respond(std::move(r));
            }
            std::vector<store::ResourceWrite> writes;
            Remember(ctx_, keyed, r, writes);
            ctx_.Persist(std::move(writes), {}, [respond, r = std::move(r)](Status st) mutable {
                respond(st ? std::move(r) : wire::ApiError(st.error()));
            });
        });
    handler(std::move(call));
}

void Remember(Context& ctx, const Call& call, const http::Response& answer,
              std::vector<store::ResourceWrite>& writes) {
    if (call.idempotency_record.empty()) {
        return;
    }
    Res rec{std::string(kIdempotency), call.idempotency_record, call.who.project_id, {}};
    rec.body["_hash"] = call.idempotency_hash;
    rec.body["_at_ms"] = ctx.clock.WallMs();
    rec.body["_status"] = answer.status;
    rec.body["_answer"] = answer.body;
    writes.push_back(Model::Write(rec));
    ctx.model.Put(std::move(rec));
}

void IdempotencyKeys::MakeRoom(const std::string& project) {
    const size_t cap = ctx_.options.idempotency_max_per_project;
    size_t& n = counts_[project];
    if (++n > cap) {
        std::vector<std::pair<int64_t, std::string>> held;  // (when, id)
        ForEachOf(ctx_, project, [&held](const Res& r) { held.emplace_back(Int(r.body, "_at_ms"), r.id); });
        n = held.size() + 1;
        n -= ForgetOldest(std::move(held), cap);
    }
    // The cloud's cap: what every project may keep adds up past any memory (a record is ~1.4 KiB).
    const size_t cloud_cap = ctx_.options.idempotency_max;
    if (cloud_cap > 0 && ctx_.model.All(kIdempotency).size() >= cloud_cap) {
        std::vector<std::pair<int64_t, std::string>> held;
        for (const auto& [id, r] : ctx_.model.All(kIdempotency)) {
            held.emplace_back(Int(r.body, "_at_ms"), id);
        }
        ForgetOldest(std::move(held), cloud_cap);
    }
}

// Of `held` records, at a cap of `cap` with one more to come: the oldest beyond it and a tenth of
// the cap more at once, so that counting happens once per tenth of the cap. How many went.
size_t IdempotencyKeys::ForgetOldest(std::vector<std::pair<int64_t, std::string>> held, size_t cap) {
    if (held.size() < std::max<size_t>(cap, 1)) {
        return 0;
    }
    const size_t drop = std::min(held.size(), held.size() - cap + 1 + cap / 10);
    std::nth_element(held.begin(), held.begin() + static_cast<ptrdiff_t>(drop - 1), held.end());
    std::vector<std::string> ids;
    for (size_t i = 0; i < drop; ++i) {
        ids.push_back(std::move(held[i].second));
    }
    forgotten_cap_.Inc(static_cast<double>(ids.size()));
    Forget(std::move(ids));
    return drop;
}

// Walks every record, on purpose: once every idempotency_prune_every (and recounts each project's,
// which MakeRoom then keeps up to date between passes).
void IdempotencyKeys::Prune() {
    const int64_t now = ctx_.clock.WallMs();
    std::vector<std::string> expired;
    counts_.clear();
    for (const auto& [id, r] : ctx_.model.All(kIdempotency)) {
        if (Expired(ctx_, r, now)) {
            expired.push_back(id);
        } else {
            ++counts_[r.project];
        }
    }
    if (!expired.empty()) {
        forgotten_expired_.Inc(static_cast<double>(expired.size()));
        observe::Log("cloud").info("pruned {} Idempotency-Key records past their {} s", expired.size(),
                                   Ms(ctx_.options.idempotency_ttl) / 1000);
    }
    Forget(std::move(expired));
    timer_->ArmAfter(ctx_.options.idempotency_prune_every, [this] { Prune(); });
}

void IdempotencyKeys::Forget(std::vector<std::string> ids) {
    if (ids.empty()) {
        return;
    }
    std::vector<store::ResourceWrite> writes;
    for (const auto& id : ids) {
        ctx_.model.Erase(kIdempotency, id);
        writes.push_back(Model::EraseWrite(kIdempotency, id));
    }
    ctx_.Persist(std::move(writes));
}

}  // namespace cogs::cloud
