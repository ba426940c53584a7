// The audit of a chaos run (test/chaos) or an integration test's storm once its requests have
// settled: what a user would compare between cogsd's API, every service's inventory and the
// services' ledgers, given what the run asked for. One call reads everything once and judges it; a
// run calls it again until it finds nothing or its deadline passes (the reconcilers repair drift in
// the meantime), so the outcome does not depend on how fast the machine is, only on whether the
// cloud converges.
//
// What is judged (each problem is one line of `findings`, naming the ids):
//   leaks              an instance no server owns, or on a host other than its server's; a port,
//                      address, network, subnet or volume cogsd does not have; a volume attached to
//                      a server cogsd does not have (`leaked` by kind)
//   duplicate addresses two ports or two servers with one fixed IP on a network, or one address
//                      held by two ports in the network service
//   desired state      a server whose last accepted operation made it ACTIVE (a create, a start or a
//                      reboot that went ACTIVE) that is not ACTIVE in cogsd, or whose instance is not
//                      ACTIVE on the host cogsd names
//   second resources   a resource named by one of the run's creates that is not the one its answer
//                      named (a create done twice), or that exists though its create was refused
//   actions            every power action and attach/detach (each request carries a traceparent of
//                      its own, the same in every re-send; cogsd gives the workflow it starts that
//                      trace id): an answered one started exactly the workflow its answer names, a
//                      refused one none, an unanswered one at most one (more is a request done
//                      twice); a succeeded one was applied exactly once at its service (the step's
//                      ledger entry; a stop may have none: cogsd stops on a down host without its
//                      agent)
//   attachments        for every volume: cogsd's status and server_id, that server's volume_ids and
//                      cogs-volume's inventory agree (in-use on S everywhere, or available
//                      everywhere); no volume attached, in cogsd or at cogs-volume, to a server cogsd
//                      no longer has
#pragma once

#include <map>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "test/support/cloud_api.h"

namespace cogs::testing {

// What the run asked for, as the audit needs it.
struct Requested {
    // An action (POST /v1/servers/{id}/start|stop|reboot, /v1/volumes/{id}/attach|detach): its
    // workflow type ("server.stop", "volume.attach", ...), resource, trace id, and how it was
    // answered.
    struct Action {
        enum Answer { kAccepted, kRefused, kUnanswered };
        std::string type;
        std::string resource_id;
        std::string trace_id;
        Answer answer = kAccepted;
        std::string workflow_id;  // the one a 2xx answer named
    };
    std::vector<Action> actions;
    // A create: the plural kind ("servers", "volumes"), its unique name, and the id its answer named
    // ("" when it was refused). Unanswered creates are left out (whether they were applied is unknown).
    struct Create {
        std::string kind;
        std::string name;
        std::string id;
    };
    std::vector<Create> creates;
    // Servers whose last accepted operation made them ACTIVE -> that operation.
    std::map<std::string, std::string> wants_active;
};

struct AttachmentAudit {
    int volumes = 0;  // in cogsd
    int in_use = 0;
    int available = 0;
    int other = 0;  // error, or still transitional
    int mismatched = 0;
    int on_deleted_server = 0;
};

struct ActionAudit {
    int checked = 0;
    int extra_workflows = 0;    // a request's workflow its answer did not name (or it was refused)
    int missing_workflows = 0;  // an answer named a workflow that does not exist
    int not_done_once = 0;      // a succeeded one applied 0 or 2+ times at its service
};

struct Audit {
    std::map<std::string, int> leaked;  // kind -> count
    int duplicate_addresses = 0;
    int desired_not_active = 0;
    int second_resources = 0;
    AttachmentAudit attachments;
    ActionAudit actions;
    int running_workflows = 0;  // running or compensating at the audit (informative)
    std::vector<std::string> findings;

    int leaks() const;
    // Whether the checks of the present state (leaks, addresses, desired state, attachments) passed:
    // what the reconcilers may still repair. The others judge history: waiting changes nothing.
    bool Converged() const;
    // Whether every check passed.
    bool Clean() const;
    // The names of the checks that found something ("leaks", "attachments", ...).
    std::vector<std::string> Failing() const;
};

// Reads cogsd (lists, workflows), every agent's and cogs-volume's inventory and ledger and
// cogs-network's inventory, and judges them. Errors: a read that failed (kUnavailable).
Result<Audit> AuditCloud(const CloudEndpoints& cloud, const Requested& requested);

}  // namespace cogs::testing
