// TCP relays for partition tests: each relay listens on 127.0.0.1 (an ephemeral port) and forwards
// every connection to a target port on 127.0.0.1, byte for byte, until it is partitioned.
//
// A partitioned relay drops its live connections and black-holes new ones: it accepts them, reads
// and discards whatever arrives and never forwards or answers, as a network that lost its route
// would look to both ends (the caller sees its deadline pass, not a refusal). Healing restores
// forwarding for new connections and closes the black-holed ones, so callers reconnect at once.
// A relay whose target is not known yet (port 0) closes every connection it accepts.
//
// A relay may also lose replies: with a drop rate set, each time the target starts answering a
// request (its first bytes after the caller's), the relay closes both ends instead of forwarding
// them, with that probability. The target has received and handled the request (cogsd answers only
// after its change is durable); the caller sees its connection reset, as after a network failure,
// and does not know whether the request was applied.
//
// Threading: a RelayHub runs its own io thread (Boost.Asio stays inside relay.cc); its methods may be
// called from any thread and take effect before they return.
#pragma once

#include <cstdint>
#include <memory>

namespace cogs::testing {

class RelayHub {
public:
    RelayHub();
    ~RelayHub();  // closes every relay and joins the io thread
    RelayHub(const RelayHub&) = delete;
    RelayHub& operator=(const RelayHub&) = delete;

    // Opens a relay on 127.0.0.1:0 towards `target_port` (0: not known yet); returns its handle.
    // Fails (a fatal check) only if no port can be bound.
    int Open(uint16_t target_port);
    // The port the relay listens on.
    uint16_t ListenPort(int relay);
    void SetTarget(int relay, uint16_t target_port);
    // Partition (true) or heal (false); see the top of this file.
    void SetPartitioned(int relay, bool partitioned);
    // Loses each reply with probability `rate` (0: never), drawn from a generator seeded by `seed`.
    void SetReplyDropRate(int relay, double rate, uint64_t seed);

    struct Stats {
        uint64_t forwarded = 0;     // connections forwarded
        uint64_t blackholed = 0;    // connections accepted while partitioned
        uint64_t dropped = 0;       // live connections closed by a partition
        uint64_t replies_lost = 0;  // replies the relay did not forward (SetReplyDropRate)
    };
    Stats stats(int relay);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cogs::testing
