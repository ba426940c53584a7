#include "test/chaos/relay.h"

#include <fcntl.h>

#include <array>
#include <future>
#include <list>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "cogs/base/check.h"

namespace cogs::testing {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// The processes this one spawns (cogsd, the agents...) must not inherit the relay's sockets: a
// child holding a copy would keep a connection open after the relay closes it.
void CloseOnExec(int fd) { ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC); }

struct Relay;
// Whether the reply that starts now is lost (SetReplyDropRate); counts it.
bool LoseReply(Relay& relay);

// One accepted connection: forwarded to an upstream socket, or black-holed (upstream unused).
struct Conn : std::enable_shared_from_this<Conn> {
    Conn(tcp::socket s, Relay& r) : relay(r), down(std::move(s)), up(down.get_executor()) {}

    // shutdown() ends the TCP connection even if a copy of the descriptor leaked into a child
    // spawned before CloseOnExec ran; close() alone would not.
    void Close() {
        boost::system::error_code ec;
        down.shutdown(tcp::socket::shutdown_both, ec);
        up.shutdown(tcp::socket::shutdown_both, ec);
        down.close(ec);
        up.close(ec);
    }

    // Copies `from` into `to` until either side fails, then closes both.
    void Pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
        from.async_read_some(asio::buffer(buf), [self = shared_from_this(), &from, &to, &buf](
                                                    boost::system::error_code ec, size_t n) {
            if (ec) {
                return self->Close();
            }
            // The first bytes from the target after the caller's start a reply.
            if (&from == &self->down) {
                self->awaiting_reply = true;
            } else if (self->awaiting_reply) {
                self->awaiting_reply = false;
                if (LoseReply(self->relay)) {
                    return self->Close();
                }
            }
            asio::async_write(to, asio::buffer(buf.data(), n),
                              [self, &from, &to, &buf](boost::system::error_code wec, size_t) {
                                  if (wec) {
                                      return self->Close();
                                  }
                                  self->Pump(from, to, buf);
                              });
        });
    }

    void Discard() {
        down.async_read_some(asio::buffer(in),
                             [self = shared_from_this()](boost::system::error_code ec, size_t) {
                                 if (!ec) {
                                     self->Discard();
                                 }
                             });
    }

    Relay& relay;  // outlives its connections (both live until the hub's io thread ends)
    tcp::socket down;
    tcp::socket up;
    bool awaiting_reply = false;
    std::array<char, 16384> in{};
    std::array<char, 16384> out{};
};

struct Relay {
    explicit Relay(asio::io_context& io) : acceptor(io) {}
    tcp::acceptor acceptor;
    uint16_t port = 0;
    uint16_t target = 0;
    bool partitioned = false;
    double drop_rate = 0;
    std::mt19937_64 rng;
    std::list<std::weak_ptr<Conn>> live;   // forwarded connections
    std::list<std::weak_ptr<Conn>> holes;  // black-holed connections
    RelayHub::Stats stats;
};

bool LoseReply(Relay& relay) {
    if (relay.drop_rate <= 0 || std::uniform_real_distribution<double>(0, 1)(relay.rng) >= relay.drop_rate) {
        return false;
    }
    ++relay.stats.replies_lost;
    return true;
}

void CloseAll(std::list<std::weak_ptr<Conn>>& conns, uint64_t* counter) {
    for (auto& w : conns) {
        if (auto c = w.lock()) {
            c->Close();
            if (counter != nullptr) {
                ++*counter;
            }
        }
    }
    conns.clear();
}

void Prune(std::list<std::weak_ptr<Conn>>& conns) {
    conns.remove_if([](const std::weak_ptr<Conn>& w) { return w.expired(); });
}

}  // namespace

struct RelayHub::Impl {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::vector<std::unique_ptr<Relay>> relays;  // touched on the io thread only
    std::thread thread;

    // Runs `fn` on the io thread and waits for it.
    template <typename Fn>
    auto OnIo(Fn fn) -> decltype(fn()) {
        std::packaged_task<decltype(fn())()> task(std::move(fn));
        auto result = task.get_future();
        asio::post(io, [&task] { task(); });
        return result.get();
    }

    void Accept(Relay* r) {
        r->acceptor.async_accept([this, r](boost::system::error_code ec, tcp::socket s) {
            if (ec == asio::error::operation_aborted) {
                return;
            }
            if (!ec) {
                Handle(r, std::move(s));
            }
            Accept(r);
        });
    }

    void Handle(Relay* r, tcp::socket s) {
        CloseOnExec(s.native_handle());
        auto conn = std::make_shared<Conn>(std::move(s), *r);
        if (r->partitioned) {
            ++r->stats.blackholed;
            Prune(r->holes);
            r->holes.push_back(conn);
            conn->Discard();
            return;
        }
        if (r->target == 0) {
            conn->Close();
            return;
        }
        ++r->stats.forwarded;
        Prune(r->live);
        r->live.push_back(conn);
        boost::system::error_code ec;
        conn->up.open(tcp::v4(), ec);
        if (ec) {
            return conn->Close();
        }
        CloseOnExec(conn->up.native_handle());
        conn->up.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), r->target),
                               [conn](boost::system::error_code ec) {
                                   if (ec || !conn->down.is_open()) {
                                       return conn->Close();
                                   }
                                   conn->Pump(conn->down, conn->up, conn->in);
                                   conn->Pump(conn->up, conn->down, conn->out);
                               });
    }
};

RelayHub::RelayHub() : impl_(std::make_unique<Impl>()) {
    impl_->thread = std::thread([this] { impl_->io.run(); });
}

RelayHub::~RelayHub() {
    impl_->OnIo([this] {
        for (auto& r : impl_->relays) {
            boost::system::error_code ec;
            r->acceptor.close(ec);
            CloseAll(r->live, nullptr);
            CloseAll(r->holes, nullptr);
        }
        return 0;
    });
    impl_->work.reset();
    impl_->io.stop();
    impl_->thread.join();
}

int RelayHub::Open(uint16_t target_port) {
    return impl_->OnIo([this, target_port] {
        auto r = std::make_unique<Relay>(impl_->io);
        tcp::endpoint ep(asio::ip::address_v4::loopback(), 0);
        r->acceptor.open(ep.protocol());
        CloseOnExec(r->acceptor.native_handle());
        r->acceptor.set_option(tcp::acceptor::reuse_address(true));
        r->acceptor.bind(ep);
        r->acceptor.listen();
        r->port = r->acceptor.local_endpoint().port();
        COGS_CHECK(r->port != 0);
        r->target = target_port;
        impl_->Accept(r.get());
        impl_->relays.push_back(std::move(r));
        return static_cast<int>(impl_->relays.size()) - 1;
    });
}

uint16_t RelayHub::ListenPort(int relay) {
    return impl_->OnIo([this, relay] { return impl_->relays.at(relay)->port; });
}

void RelayHub::SetTarget(int relay, uint16_t target_port) {
    impl_->OnIo([this, relay, target_port] {
        impl_->relays.at(relay)->target = target_port;
        return 0;
    });
}

void RelayHub::SetPartitioned(int relay, bool partitioned) {
    impl_->OnIo([this, relay, partitioned] {
        Relay& r = *impl_->relays.at(relay);
        if (partitioned == r.partitioned) {
            return 0;
        }
        r.partitioned = partitioned;
        if (partitioned) {
            CloseAll(r.live, &r.stats.dropped);
        } else {
            CloseAll(r.holes, nullptr);
        }
        return 0;
    });
}

void RelayHub::SetReplyDropRate(int relay, double rate, uint64_t seed) {
    impl_->OnIo([this, relay, rate, seed] {
        Relay& r = *impl_->relays.at(relay);
        r.drop_rate = rate;
        r.rng.seed(seed);
        return 0;
    });
}

RelayHub::Stats RelayHub::stats(int relay) {
    return impl_->OnIo([this, relay] { return impl_->relays.at(relay)->stats; });
}

}  // namespace cogs::testing
