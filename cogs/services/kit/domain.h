// Domain: the part of a cogs micro-service that is about its infrastructure (networks, volumes,
// instances). Everything else a micro-service needs is the kit's (cogs/services/kit/service.h):
// the action protocol of docs/service-protocol.md, the idempotency ledger with tombstones, fault
// injection, durable state, group commit, /healthz and /v1/inventory.
//
// A domain keeps its state in memory and says, for every action it performs, which records change
// (Tx). The kit commits those records and the action's ledger entry in one SQLite transaction, so
// an action is applied exactly when its ledger entry exists: a re-sent key is answered from the
// ledger and never performed twice, even across a crash. At start the kit hands every stored
// record back to Load() before the first action.
//
// Threading: a domain lives on its service's io_context thread; every method is called there.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/http/server.h"

namespace boost::asio {
class io_context;
}

namespace cogs::wire {
class Input;
}

namespace cogs::observe {
class Metrics;
}

namespace cogs::services::kit {

// The durable writes of one action: records (table, id) -> JSON text, or erased.
class Tx {
public:
    struct Write {
        std::string table;
        std::string id;
        std::string json;  // ignored when erase
        bool erase = false;
    };

    void Put(std::string_view table, std::string_view id, std::string json) {
        writes_.push_back(Write{std::string(table), std::string(id), std::move(json), false});
    }
    void Erase(std::string_view table, std::string_view id) {
        writes_.push_back(Write{std::string(table), std::string(id), {}, true});
    }
    const std::vector<Write>& writes() const { return writes_; }
    std::vector<Write>& writes() { return writes_; }

private:
    std::vector<Write> writes_;
};

// What an action answers.
struct Done {
    std::string output = "{}";  // JSON text: the answer's "output"
    // A long action (e.g. an instance booting): > 0 is the wall time (µs, WallNowUs()) at which it
    // ends; until then the action and its status answer 202 {"accepted": true}, afterwards 200
    // with `output`. 0: done now.
    int64_t ready_at_us = 0;
    // A long action whose end the domain does not know in advance but will report (a real machine
    // booting): non-empty names what it waits for ("instance/i-1"; several actions may wait for
    // one name), and ready_at_us is ignored. The action and its status answer 202 until the domain
    // calls DomainContext::Finish(wait_for, ...), then that output (200) or that error.
    std::string wait_for{};
};

// What the service offers a domain that changes its state on its own, outside an action (timers,
// its own POST routes): given once to Domain::Bind, valid as long as the domain.
class DomainContext {
public:
    virtual ~DomainContext() = default;
    // The io_context the service and the domain live on (for the domain's timers).
    virtual boost::asio::io_context& io() = 0;
    // Commits `tx`'s record writes with the service's next group commit (no ledger entry: this is
    // not an action). `committed`, if set, runs on the io thread once they are on disk (never
    // inline; without a state file, on a later turn); it is dropped if the service goes first.
    virtual void Write(Tx tx, std::function<void()> committed = {}) = 0;
    // Ends every long action still waiting for `wait_for` (Done::wait_for), with the next group
    // commit: its key and its status answer `output` (a JSON object's text) from then on, or the
    // error, as a definitive refusal whatever its retryable bit (the caller's poll fails the step and
    // compensates it: the undo of a failed long action still performs its compensating action,
    // since what the action started may exist). A domain that wants a retry retries by itself before
    // it finishes. No action waiting for `wait_for` (never, or finished already): nothing.
    virtual void Finish(std::string_view wait_for, Result<std::string> output) = 0;
};

// One action of a domain, as its table declares it (Domain::actions()).
struct Action {
    using Perform = std::function<Result<Done>(const wire::Input& input, Tx& tx)>;

    std::string name;                      // as workflows call it: "create_port"
    std::vector<std::string_view> fields;  // every field its input may hold (literals); any other is
                                           // refused before `perform`: "typo: unknown field"
    // Performs the action with its input (a JSON object of known fields; absent and null alike). On
    // success the in-memory state has changed and `tx` holds every record that changed. On error
    // nothing has changed and `tx` is ignored: a non-retryable error (bad input naming the field, a
    // refusal such as "subnet exhausted") is recorded for the key and answered again on every
    // re-send; a retryable one is not recorded.
    //
    // Compensating actions (delete_port, delete_volume, ...) are plain actions: deleting what is
    // already gone succeeds. The kit decides, from the key, whether an undo applies at all.
    Perform perform;
};

class Domain {
public:
    virtual ~Domain() = default;

    // The service's name as workflows address it ("network", "volume", "compute").
    virtual std::string_view name() const = 0;

    // Its actions, declared once: from this table the kit derives both the list (any other action
    // name is refused with kNotFound, before faults are rolled) and the dispatch (dispatch.h). Asked
    // once, by the service that owns the domain: the handlers may hold `this`.
    virtual std::vector<Action> actions() = 0;

    // One stored record, at start, before any action; records come table by table in id order.
    // An error is fatal at start-up (the kit refuses to serve).
    virtual Status Load(std::string_view table, std::string_view id, std::string_view json) = 0;

    // GET /v1/inventory: a JSON object of what the service actually holds, e.g.
    // {"ports": [...], "addresses": [...]}. Reconcilers compare it with the desired state.
    virtual std::string Inventory() const = 0;

    // Other read-only routes of the service (GET /v1/ports/ID, ...); nullopt: not one of its routes.
    virtual std::optional<http::Response> Get(const http::Request& request) const {
        (void)request;
        return std::nullopt;
    }

    // Other POST routes of the domain (cogs-compute: POST /v1/instances/{id}/crash), behind the
    // service's token like every route: false if `request` is not one of them (the kit answers 404);
    // true if the domain answers it through (a copy of) `respond`, possibly later, e.g. once what it
    // changed is committed (DomainContext::Write).
    virtual bool Post(const http::Request& request, const http::Respond& respond) {
        (void)request;
        (void)respond;
        return false;
    }

    // Called once by the service, after every stored record was loaded and before any action or
    // route: a domain that keeps timers or writes records on its own keeps `context`.
    virtual void Bind(DomainContext& context) { (void)context; }

    // Sampled every time GET /metrics is scraped (on the io thread, like every other call): how many
    // records of each kind the domain holds, e.g. {{"networks", 2}, {"ports", 40}}. The kit exports
    // them as cogs_service_records{service,kind}, beside kind "ledger" (its idempotency entries).
    // The same kinds on every call, so that no series goes stale.
    virtual std::vector<std::pair<std::string, int64_t>> RecordCounts() const { return {}; }

    // Also at every scrape, after RecordCounts: sets the domain's own gauges in `metrics` (cogs-compute:
    // cogs_compute_instances{host,state}). A label set that no longer applies must be set to 0, since
    // the registry keeps every series it was given.
    virtual void Collect(observe::Metrics& metrics) const { (void)metrics; }
};

}  // namespace cogs::services::kit
