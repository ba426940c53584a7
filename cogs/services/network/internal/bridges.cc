#include "cogs/services/network/internal/bridges.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "cogs/linuxnet/host.h"
#include "cogs/observe/log.h"

namespace cogs::services::network::internal {

struct Bridges::Impl {
    Impl(BridgesOptions o, linuxnet::Host h) : options(std::move(o)), host(std::move(h)) {}
    ~Impl() {
        timer.reset();
        alive.reset();
        pool.stop();  // drops the queued calls
        pool.join();  // waits for the one under way
    }

    SteadyTime Deadline() const { return SteadyClock::now() + options.deadline; }

    // Runs `f` on the io thread, unless the driver is gone by then.
    template <typename F>
    void Post(F f) {
        boost::asio::post(*io, [weak = std::weak_ptr<int>(alive), f = std::move(f)]() mutable {
            if (weak.lock()) {
                f();
            }
        });
    }

    // On the worker thread.
    SweepReport SweepBlocking(const std::set<std::string>& networks, const std::set<std::string>& ports) {
        SweepReport report;
        auto inventory = host.List(Deadline());
        if (!inventory) {
            report.errors.push_back("list: " + inventory.error().ToString());
            return report;
        }
        std::set<std::string> unowned;
        std::set<std::string> bridged;
        for (const auto& b : inventory->bridges) {
            bridged.insert(b.network_id);
            if (!networks.contains(b.network_id)) {
                unowned.insert(b.name);
            }
        }
        for (const auto& p : inventory->ports) {
            if (!ports.contains(p.port_id)) {
                unowned.insert(p.name);
            }
        }
        for (const auto& s : inventory->strays) {
            unowned.insert(s);
        }
        for (const auto& id : networks) {
            if (bridged.contains(id)) {
                continue;
            }
            if (auto s = host.EnsureBridge(id, options.mtu, Deadline()); s) {
                report.ensured.push_back(host.names().Bridge(id));
            } else {
                report.errors.push_back(s.error().ToString());
            }
        }
        // Only what the previous sweep found unowned too goes now (the header says why).
        for (const auto& b : inventory->bridges) {
            if (unowned.contains(b.name) && suspects.contains(b.name)) {
                Removed(report, b.name, host.DeleteBridge(b.network_id, Deadline()));
            }
        }
        for (const auto& p : inventory->ports) {
            if (unowned.contains(p.name) && suspects.contains(p.name)) {
                Removed(report, p.name, host.UnplugPort(p.port_id, Deadline()));
            }
        }
        for (const auto& s : inventory->strays) {
            if (suspects.contains(s)) {
                Removed(report, s, host.DeleteStray(s, Deadline()));
            }
        }
        suspects = std::move(unowned);
        std::sort(report.ensured.begin(), report.ensured.end());
        std::sort(report.removed.begin(), report.removed.end());
        return report;
    }

    static void Removed(SweepReport& report, const std::string& name, const Status& s) {
        if (s) {
            report.removed.push_back(name);
        } else {
            report.errors.push_back(s.error().ToString());
        }
    }

    void SweepAndRearm() {
        auto [networks, ports] = owners();
        Bridges::SweepOn(*this, std::move(networks), std::move(ports), {});
        if (interval <= Duration::zero()) {
            return;
        }
        timer->expires_after(interval);
        timer->async_wait([this, weak = std::weak_ptr<int>(alive)](boost::system::error_code ec) {
            if (!ec && weak.lock()) {
                SweepAndRearm();
            }
        });
    }

    const BridgesOptions options;
    linuxnet::Host host;
    boost::asio::io_context* io = nullptr;
    std::shared_ptr<int> alive = std::make_shared<int>(0);  // posted results hold it weakly
    std::set<std::string> suspects;                         // the worker's: unowned at the last sweep
    Duration interval{};
    Bridges::Owners owners;
    std::unique_ptr<boost::asio::steady_timer> timer;
    boost::asio::thread_pool pool{1};  // one thread: the calls in order
};

Result<std::unique_ptr<Bridges>> Bridges::Make(BridgesOptions options) {
    COGS_ASSIGN_OR_RETURN(linuxnet::Host host,
                          linuxnet::Host::Make({.prefix = options.prefix, .ip = options.ip}));
    // A listing needs no privilege, making a bridge does: refused at start rather than at the first
    // create_network.
    if (::geteuid() != 0) {
        return MakeError(ErrorCode::kPermissionDenied,
                         "the linux network driver makes bridges and veths: it must run as root");
    }
    COGS_TRY(host.List(SteadyClock::now() + options.deadline));
    return std::unique_ptr<Bridges>(new Bridges(std::make_unique<Impl>(std::move(options), std::move(host))));
}

Bridges::Bridges(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bridges::~Bridges() = default;

void Bridges::Bind(boost::asio::io_context& io) { impl_->io = &io; }

void Bridges::Ensure(std::string network_id, std::function<void(Status)> done) {
    boost::asio::post(impl_->pool, [impl = impl_.get(), id = std::move(network_id), done = std::move(done)] {
        Status s = impl->host.EnsureBridge(id, impl->options.mtu, impl->Deadline());
        impl->Post([done, s = std::move(s)] { done(s); });
    });
}

void Bridges::Remove(std::string network_id) {
    boost::asio::post(impl_->pool, [impl = impl_.get(), id = std::move(network_id)] {
        if (auto s = impl->host.DeleteBridge(id, impl->Deadline()); !s) {
            // Someone else's link under the bridge's name is left alone, by this and by the sweep.
            observe::Log("network").warn("network {}: its bridge was not removed ({}): {}", id,
                                         s.error().code == ErrorCode::kAlreadyExists
                                             ? "the link of that name is not this network's: left alone"
                                             : "the next sweep tries again",
                                         s.error().ToString());
        }
    });
}

void Bridges::StartSweeps(Duration interval, Owners owners) {
    impl_->interval = interval;
    impl_->owners = std::move(owners);
    impl_->timer = std::make_unique<boost::asio::steady_timer>(*impl_->io);
    impl_->SweepAndRearm();
}

void Bridges::Sweep(std::set<std::string> networks, std::set<std::string> ports,
                    std::function<void(SweepReport)> done) {
    SweepOn(*impl_, std::move(networks), std::move(ports), std::move(done));
}

void Bridges::SweepOn(Impl& on, std::set<std::string> networks, std::set<std::string> ports,
                      std::function<void(SweepReport)> done) {
    boost::asio::post(on.pool, [impl = &on, networks = std::move(networks), ports = std::move(ports),
                                done = std::move(done)] {
        SweepReport report = impl->SweepBlocking(networks, ports);
        for (const auto& name : report.ensured) {
            observe::Log("network").info("sweep: made the missing bridge {}", name);
        }
        for (const auto& name : report.removed) {
            observe::Log("network").info("sweep: removed {}, which no network or port owns", name);
        }
        for (const auto& e : report.errors) {
            observe::Log("network").warn("sweep: {}", e);
        }
        if (done) {
            impl->Post([done, report = std::move(report)]() mutable { done(std::move(report)); });
        }
    });
}

}  // namespace cogs::services::network::internal
