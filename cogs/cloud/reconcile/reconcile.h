// The reconciler's decisions: what the micro-services actually hold (their GET /v1/inventory)
// against what cogsd wants (the model), and what to do about the difference. Pure logic: no I/O,
// no clock of its own (the caller passes the wall time of each scan), so every rule is tested
// without services or waiting. Used by the reconcile loop (reconcile_loop.h); lives on the io thread.
//
// Level-triggered: each Scan judges the whole picture it is given, and answers every action that
// is due now, again on every scan while the drift lasts (the caller skips what it already does;
// an action it starts makes the resource busy, which ends the judging of it). Scan remembers only
// what makes a decision safe across scans: when an orphan was first seen, and how many scans in a
// row confirmed a missing piece.
//
// The rules, per service (an instance's id is its server's id):
//
//   compute, per instance on a host the scan covers (S = the desired server of that id):
//     no S                                      orphan        delete_instance once unowned >= grace
//     S busy                                    -             never touched
//     on S.host, FENCED, S ACTIVE               fenced        start_instance at once
//     on S.host, SHUTOFF, S ACTIVE              stopped       start_instance after confirm_scans
//     on S.host (any other case)                owned         -
//     on S.claim_host                           owned         - (S is being placed: BUILD, host "")
//     S.host is another host (S settled)        stale         delete_instance at once (evacuated,
//                                                             migrated: the old copy)
//     S.host "" and not on S.claim_host         orphan        delete_instance once unowned >= grace
//   compute, per desired server S ACTIVE or SHUTOFF, not busy, on a host the scan covers:
//     no instance S on S.host                   missing       repair_server after confirm_scans (a
//                                                             SHUTOFF one is stopped again after)
//   network, per network / subnet / port of the inventory (N, U, P = the desired one of that id):
//     no N                                      orphan        delete_network once unowned >= grace
//                                                             and no subnet or port of the
//                                                             inventory is on it (they go first)
//     no U                                      orphan        delete_subnet, likewise (no port in it)
//     no P                                      orphan        delete_port once unowned >= grace
//   network, per desired network / subnet / port ACTIVE, not busy (a port: nor its server):
//     not in the inventory                      missing       repair_network / repair_subnet /
//                                                             repair_port after confirm_scans (a
//                                                             subnet or port whose network is missing
//                                                             too waits for the network's repair)
//     a port held for another device            wrong         set_port_device (the model's device,
//       (neither device's server busy)                        or none) after confirm_scans
//   volume, per volume of the inventory (V = the desired volume of that id):
//     no V, attached to server X                orphan        detach_volume (X) once >= grace
//     no V, not attached                        orphan        delete_volume once >= grace (an
//                                                             attached one is detached first: the
//                                                             service refuses to delete it)
//     V busy, or its server (either side) busy  -             never touched
//     V, attached to a server X cogsd lacks     orphan        detach_volume (X) once >= grace
//     V available or in-use, attached to a      wrong         detach_volume (X) after confirm_scans
//       server X cogsd has, not V's server                    (then attached below, if V is in-use)
//     V in-use with server S (ACTIVE or         unattached    attach_volume (S, S.host) after
//       SHUTOFF, placed), not attached                        confirm_scans
//   volume, per desired volume V available or in-use, not busy (nor its server):
//     not in the inventory                      missing       repair_volume after confirm_scans
//                                                             (made again, empty: its data is lost;
//                                                             an event says so; then attached above)
//
// Busy: a resource with a workflow in flight or a transitional status (the caller sets `busy`);
// a port or volume whose desired server (device_id / server_id) is busy counts as busy too (a
// server's delete detaches its volumes and deletes its port while their records stay as they
// were). Busy resources are never acted on, and what was remembered about them is forgotten. An
// orphan port or volume tied to a busy server is not acted on either (its grace keeps running).
//
// Why a grace for orphans: a resource may exist at a service a moment before cogsd's snapshot
// shows its owner, or after the snapshot dropped it (an inventory read before a delete ended). An
// orphan is acted on once it has been seen unowned, in every scan that covered it, for at least
// `orphan_grace` (measured with the `now_ms` of the scans). Something that disappears from a
// covering inventory, or becomes owned, is forgotten: its grace starts over if it comes back.
//
// Why confirmation for missing pieces: an inventory read races with workflows (a server settles
// ACTIVE just after its host's inventory was read). A missing piece is repaired once
// `confirm_scans` scans in a row saw it missing with the resource unchanged (its status, host,
// port, volumes and `changed_ms`) and not busy. A scan whose inventory was read before the
// resource's last change (`read_at_ms < changed_ms`) is no evidence: it neither counts nor clears.
// A stale instance needs no confirmation: the server is settled elsewhere, so that copy is
// garbage whatever the timing (deleting an instance that is already gone is a no-op).
//
// Partial scans: `Actual` holds only the inventories the caller could read (e.g. one compute host
// after it came back, or no network inventory because the service did not answer). Nothing outside
// them is judged, and what was remembered about it is kept as it is (neither confirmed nor
// forgotten). A compute inventory covers the hosts it names; the caller may narrow `hosts` to
// scan part of a compute process. The caller should leave out hosts that are suspect or down
// (their instances are fenced, and their answers are stale).
//
// Wrong attachments are repaired toward cogsd's desired state: the model is the truth of what
// should be attached where (the API's answers were made from it), and the volume service's
// attach refuses a volume attached elsewhere, so a wrong attachment is first detached, then the
// right one made at a later scan. A volume missing at its service is made again, empty: a server
// that should have it gets a blank disk rather than none, and the "repaired" event tells the
// tenant its data is lost.
//
// A port's device is set when it is made (a server's port names the server) and never changes
// after, so a port held for another device is set back to the model's. There is no
// release_address: the network service holds an address only as a port's (its inventory's
// `addresses` are derived from its ports), so deleting an orphan port releases its address; an
// address naming a port the inventory lacks makes the inventory malformed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace cogs::cloud::reconcile {

// ---- what cogsd wants (built by the caller from the model) ----

struct DesiredServer {
    std::string id;
    std::string project;
    std::string status;      // ACTIVE, SHUTOFF, ERROR, BUILD, ...
    std::string host;        // where it lives once placed; "" before
    std::string claim_host;  // the host of its placement claim ("" if none): owns an instance there
    std::string port_id;
    std::vector<std::string> volume_ids;
    bool busy = false;       // a workflow in flight on it, or a transitional status
    int64_t changed_ms = 0;  // wall time of its last change (0: unknown)
};

struct DesiredPort {
    std::string id;
    std::string network_id;
    std::string device_id;  // the server it belongs to, or ""
    std::string fixed_ip;
    std::string status;
    bool busy = false;
    int64_t changed_ms = 0;
};

struct DesiredVolume {
    std::string id;
    std::string status;
    std::string server_id;  // the server it is attached to (or being attached to), or ""
    bool busy = false;
    int64_t changed_ms = 0;
};

struct DesiredNetwork {
    std::string id;
    std::string status;
    bool busy = false;
    int64_t changed_ms = 0;
};

struct DesiredSubnet {
    std::string id;
    std::string network_id;
    std::string status;
    bool busy = false;
    int64_t changed_ms = 0;
};

struct Desired {
    std::vector<DesiredServer> servers;
    std::vector<DesiredPort> ports;
    std::vector<DesiredVolume> volumes;
    std::vector<DesiredNetwork> networks;
    std::vector<DesiredSubnet> subnets;
};

// ---- what the services hold (parsed from their GET /v1/inventory) ----

struct ActualInstance {
    std::string id;
    std::string host;
    std::string state;    // BUILD, REBOOT, ACTIVE, SHUTOFF, CRASHED, FENCED, ERROR (protocol.md)
    std::string port_id;  // "" for null
};

// One compute process's inventory. It covers the hosts of `hosts`; instances on other hosts are
// ignored.
struct ComputeInventory {
    std::vector<std::string> hosts;
    std::vector<ActualInstance> instances;
    int64_t read_at_ms = 0;  // wall time the inventory was read (its request was sent)
};

struct ActualPort {
    std::string id;
    std::string network_id;
    std::string device_id;
    std::string fixed_ip;
    std::string subnet_id = "";
};

struct ActualNetwork {
    std::string id;
};

struct ActualSubnet {
    std::string id;
    std::string network_id;
};

struct NetworkInventory {
    std::vector<ActualPort> ports;
    int64_t read_at_ms = 0;
    std::vector<ActualNetwork> networks = {};
    std::vector<ActualSubnet> subnets = {};
};

struct ActualVolume {
    std::string id;
    std::string status;     // available, in-use
    std::string server_id;  // "" for null
    std::string host;       // "" for null
};

struct VolumeInventory {
    std::vector<ActualVolume> volumes;
    int64_t read_at_ms = 0;
};

// What one scan covers: an absent inventory is not judged.
struct Actual {
    std::optional<NetworkInventory> network;
    std::optional<VolumeInventory> volume;
    std::vector<ComputeInventory> compute;  // one per compute process read; a host named by two: the first
};

// Parsers of the JSON text each service answers at GET /v1/inventory (the services' READMEs).
// A malformed text is kInvalidArgument naming the service and the field, e.g.
// "compute inventory: instances[2].host: required" — the caller then leaves that inventory out
// of the scan (nothing of it is judged). Unknown fields are ignored (services may add some).
Result<ComputeInventory> ParseComputeInventory(std::string_view text, int64_t read_at_ms);
Result<NetworkInventory> ParseNetworkInventory(std::string_view text, int64_t read_at_ms);
Result<VolumeInventory> ParseVolumeInventory(std::string_view text, int64_t read_at_ms);

// ---- what to do ----

enum class ActionKind {
    kDeleteInstance,  // compute.delete_instance {id, host}: orphan or stale
    kStartInstance,   // compute.start_instance {id, host}: FENCED or SHUTOFF while its server is ACTIVE
    kRepairServer,    // rebuild server `id` on `host` (its instance is missing there)
    kDeletePort,      // network.delete_port {id}: orphan
    kRepairPort,      // recreate port `id` as the model has it (`server_id`: its device, or "")
    kSetPortDevice,   // network.update_port {id, device_id: `server_id`}: held for another device
    kDeleteVolume,    // volume.delete_volume {id}: orphan, not attached
    kDetachVolume,    // volume.detach_volumes {server_id, [id]}: attached to a server it should not be
    kDeleteNetwork,   // network.delete_network {id}: orphan
    kRepairNetwork,   // recreate network `id` as the model has it
    kDeleteSubnet,    // network.delete_subnet {id}: orphan
    kRepairSubnet,    // recreate subnet `id` as the model has it (same cidr, gateway, pools)
    kAttachVolume,    // volume.attach_volumes {server_id, [id], host}: in-use in cogsd, not attached
    kRepairVolume,    // recreate volume `id` (empty) as the model has it
};
std::string_view ToString(ActionKind kind);

struct Action {
    ActionKind kind;
    std::string service;    // "compute", "network" or "volume": where the drift was seen
    std::string id;         // the instance (= server), port or volume acted on
    std::string host;       // compute actions and kAttachVolume: the host; else ""
    std::string server_id;  // kDetachVolume: the server to detach from; kAttachVolume: to attach to;
                            // kRepairPort, kSetPortDevice: the device
    std::string reason;     // one human line, e.g. "instance s1 on h1: server s1 lives on h2"

    bool operator==(const Action&) const = default;
};

struct ReconcilerOptions {
    Millis orphan_grace = std::chrono::seconds(60);
    int confirm_scans = 2;  // >= 1
};

class Reconciler {
public:
    explicit Reconciler(ReconcilerOptions options);

    // What to do now, given the desired state and the inventories of one scan at wall time
    // `now_ms` (the caller's clock; scans come in non-decreasing `now_ms`). Actions come sorted
    // by service, id, host and kind. Remembers what the rules above need for the next scan.
    std::vector<Action> Scan(const Desired& desired, const Actual& actual, int64_t now_ms);

    // How many drifts are being remembered (orphans in their grace, missing pieces being
    // confirmed).
    size_t tracked() const { return tracked_.size(); }
    const ReconcilerOptions& options() const { return options_; }

private:
    struct Tracked {
        int64_t first_seen_ms = 0;
        int scans = 0;            // consecutive confirming scans (missing pieces)
        std::string fingerprint;  // of the resource, when counted (missing pieces)
        std::string scope;        // "compute:<host>", "network" or "volume"
    };
    ReconcilerOptions options_;
    std::map<std::string, Tracked, std::less<>> tracked_;
};

}  // namespace cogs::cloud::reconcile
