// Bridges: cogs-network's `linux` driver — the Linux bridge of every network on this machine
// (cogs/linuxnet), and the sweep that collects what no network or port owns.
//
// Every `ip` call runs on one worker thread of its own, in the order it was asked for, so the calls
// about one network (ensure, remove, a sweep) never overlap, as linuxnet::Host requires; results
// are posted back to the domain's io thread. The domain never waits for them: create_network is a
// long action (kit::Done::wait_for) that ends when Ensure answers.
//
// The sweep (at Bind, then every `sweep_interval`) lists the machine's objects of this prefix
// (linuxnet::Host::List) and, given the networks and ports the domain holds when the sweep was
// asked for:
//   * makes the bridge of every network that lacks one (after a reboot of the machine);
//   * removes a bridge whose network the domain does not hold, a port's host end (veth) whose port it
//     does not hold, and a stray link (a create interrupted before its alias): only when the same
//     object was found so in the previous sweep too, so that a create or delete under way elsewhere
//     (the compute agent plugging a port made a moment ago) is never raced.
// It answers what it did (SweepReport), for logs and tests.
//
// Threading: made and called on the io thread (the worker thread is its own); destroyed there too:
// the call under way ends (bounded by its deadline), queued ones are dropped, and no result is
// posted afterwards.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cogs/base/result.h"
#include "cogs/base/time.h"

namespace boost::asio {
class io_context;
}

namespace cogs::services::network::internal {

struct BridgesOptions {
    std::string prefix = "cg";  // linuxnet's prefix: bridge cg-b<hash(network id)>, veth cg-p<...>
    std::string ip = "/usr/sbin/ip";
    int mtu = 1500;
    Duration deadline = std::chrono::seconds(30);  // for the `ip` commands of one call
};

// What one sweep did (names of the links), sorted.
struct SweepReport {
    std::vector<std::string> ensured;  // bridges made for networks that had none
    std::vector<std::string> removed;  // bridges, veths and strays removed
    std::vector<std::string> errors;   // what failed (tried again at the next sweep)
};

class Bridges {
public:
    // Checks that this process is root (kPermissionDenied) and that `ip` lists the machine
    // (kUnavailable); kInvalidArgument naming "prefix". Blocks for one `ip` listing: call it at start.
    static Result<std::unique_ptr<Bridges>> Make(BridgesOptions options);
    ~Bridges();

    // Where results are posted; before any other call.
    void Bind(boost::asio::io_context& io);
    // A sweep now and then every `interval` (0: only now), against what `owners` answers (on the io thread,
    // when the sweep is queued): {network ids, port ids}. Until destruction.
    using Owners = std::function<std::pair<std::set<std::string>, std::set<std::string>>()>;
    void StartSweeps(Duration interval, Owners owners);

    // The network's bridge (linuxnet::Host::EnsureBridge); `done` runs on the io thread.
    void Ensure(std::string network_id, std::function<void(Status)> done);
    // Removes the network's bridge; a failure is logged (the next sweep removes it).
    void Remove(std::string network_id);
    // One sweep against what the domain holds now; `done` (optional) runs on the io thread.
    void Sweep(std::set<std::string> networks, std::set<std::string> ports,
               std::function<void(SweepReport)> done = {});

private:
    struct Impl;
    explicit Bridges(std::unique_ptr<Impl> impl);
    static void SweepOn(Impl& impl, std::set<std::string> networks, std::set<std::string> ports,
                        std::function<void(SweepReport)> done);
    std::unique_ptr<Impl> impl_;
};

}  // namespace cogs::services::network::internal
