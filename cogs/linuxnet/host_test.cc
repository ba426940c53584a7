// Host on the real machine: bridges, namespaces and veth pairs made with `ip`, traffic between
// namespaces with busybox. As root only (each test skips otherwise; CI runs as root).
//
// Every test names its objects under a prefix of its own ("z" + 4 random hex digits), so that tests
// running at once, and the machine's own interfaces, never meet; TearDown removes everything under
// that prefix with plain `ip` commands (not with the Host under test), also after a failure, and puts
// back the forwarding sysctls a test changed.
#include "cogs/linuxnet/host.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cogs/base/secret.h"
#include "cogs/linuxnet/internal/ip.h"
#include "cogs/runtime/process.h"
#include "test/support/temp_dir.h"

namespace cogs::linuxnet {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using internal::Link;

constexpr const char* kIp = "/usr/sbin/ip";
constexpr const char* kBusybox = "/bin/busybox";

// Generous: a loaded CI machine may take long, and no test asserts on time.
SteadyTime Deadline() { return SteadyClock::now() + 60s; }

// `ip ARGS` that must succeed; its stdout (a listing that other tests' changes interrupted is taken
// again, as Host's own are).
std::string Ip(const std::vector<std::string>& args) {
    auto out = internal::Ip(kIp).RunListing(args, Deadline());
    EXPECT_TRUE(out) << out.error().ToString();
    return out.value_or("");
}

std::vector<Link> Links(const std::string& netns = "") {
    std::vector<std::string> args;
    if (!netns.empty()) {
        args = {"-n", netns};
    }
    args.insert(args.end(), {"-json", "-details", "link", "show"});
    auto links = internal::ParseLinks(Ip(args));
    EXPECT_TRUE(links) << links.error().ToString();
    return links ? *links : std::vector<Link>{};
}

std::optional<Link> FindLink(const std::string& name, const std::string& netns = "") {
    for (auto& l : Links(netns)) {
        if (l.name == name) {
            return l;
        }
    }
    return std::nullopt;
}

std::vector<std::string> NamespaceNames() {
    auto namespaces = internal::ParseNetns(Ip({"-json", "netns", "list"}));
    EXPECT_TRUE(namespaces) << namespaces.error().ToString();
    std::vector<std::string> names;
    for (const auto& ns : namespaces.value_or(std::vector<internal::NetnsEntry>{})) {
        names.push_back(ns.name);
    }
    return names;
}

// The IPv4 addresses of `dev` in namespace `netns`, as "10.0.0.5/24".
std::vector<std::string> Ipv4Addresses(const std::string& netns, const std::string& dev) {
    std::vector<std::string> args;
    if (!netns.empty()) {
        args = {"-n", netns};
    }
    args.insert(args.end(), {"-json", "addr", "show", "dev", dev});
    auto addresses = internal::ParseAddresses(Ip(args));
    EXPECT_TRUE(addresses) << addresses.error().ToString();
    std::vector<std::string> inet;
    for (const auto& a : addresses.value_or(std::vector<internal::Address>{})) {
        if (a.family == "inet") {
            inet.push_back(a.local + "/" + std::to_string(a.prefixlen));
        }
    }
    return inet;
}

// The addresses of every family on `dev` of the host's namespace.
size_t AddressCount(const std::string& dev) {
    auto addresses = internal::ParseAddresses(Ip({"-json", "addr", "show", "dev", dev}));
    EXPECT_TRUE(addresses) << addresses.error().ToString();
    return addresses ? addresses->size() : 0;
}

// The default routes of namespace `netns`.
std::vector<internal::Route> DefaultRoutes(const std::string& netns) {
    auto routes = internal::ParseRoutes(Ip({"-n", netns, "-json", "route", "show", "default"}));
    EXPECT_TRUE(routes) << routes.error().ToString();
    return routes.value_or(std::vector<internal::Route>{});
}

// Every link and namespace whose name starts with `prefix` + "-".
std::vector<std::string> Leftovers(const std::string& prefix) {
    std::vector<std::string> found;
    for (const auto& l : Links()) {
        if (l.name.starts_with(prefix + "-")) {
            found.push_back("link " + l.name);
        }
    }
    for (const auto& ns : NamespaceNames()) {
        if (ns.starts_with(prefix + "-")) {
            found.push_back("netns " + ns);
        }
    }
    return found;
}

std::string ReadSysctl(const std::string& path) {
    std::ifstream in(path);
    std::string value;
    in >> value;
    return value;
}

void WriteSysctl(const std::string& path, const std::string& value) {
    std::ofstream out(path);
    out << value << "\n";
    out.close();
    EXPECT_TRUE(out) << "cannot write " << value << " to " << path;
}

// net.ipv4.ip_forward = 1 while it lives, as on a hypervisor. Writing ip_forward sets every
// interface's forwarding flag too, so all of them are saved and put back. An exclusive lock on a file
// under /run/lock keeps two tests (of this build or another) from interleaving their save and restore.
class ScopedIpForwarding {
public:
    ScopedIpForwarding() {
        lock_fd_ = ::open("/run/lock/cogs-linuxnet-test-forwarding.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        EXPECT_GE(lock_fd_, 0);
        if (lock_fd_ >= 0) {
            EXPECT_EQ(::flock(lock_fd_, LOCK_EX), 0);
        }
        saved_ip_forward_ = ReadSysctl("/proc/sys/net/ipv4/ip_forward");
        for (const auto& dir : fs::directory_iterator("/proc/sys/net/ipv4/conf")) {
            const std::string name = dir.path().filename();
            if (name != "all") {
                saved_[name] = ReadSysctl(dir.path() / "forwarding");
            }
        }
        WriteSysctl("/proc/sys/net/ipv4/ip_forward", "1");
    }
    ~ScopedIpForwarding() {
        WriteSysctl("/proc/sys/net/ipv4/ip_forward", saved_ip_forward_);
        for (const auto& [name, value] : saved_) {
            const std::string path = "/proc/sys/net/ipv4/conf/" + name + "/forwarding";
            if (fs::exists(path) && ReadSysctl(path) != value) {
                WriteSysctl(path, value);
            }
        }
        if (lock_fd_ >= 0) {
            ::close(lock_fd_);  // releases the lock
        }
    }
    ScopedIpForwarding(const ScopedIpForwarding&) = delete;
    ScopedIpForwarding& operator=(const ScopedIpForwarding&) = delete;

private:
    int lock_fd_ = -1;
    std::string saved_ip_forward_;
    std::map<std::string, std::string> saved_;
};

class LinuxnetHostTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP()
                << "needs root (CAP_NET_ADMIN and /run/netns) to make bridges, veth pairs and network "
                   "namespaces; CI runs as root";
        }
        if (!fs::exists(kIp)) {
            GTEST_SKIP() << kIp << " is missing: apt-get install iproute2";
        }
        prefix_ = "z" + RandomHex(2);
        sweep_.push_back(prefix_);
        auto host = Host::Make({.prefix = prefix_});
        ASSERT_TRUE(host) << host.error().ToString();
        host_ = std::make_unique<Host>(std::move(*host));
    }

    void TearDown() override {
        servers_.clear();  // kills the servers, which would keep their namespaces alive
        for (const auto& prefix : sweep_) {
            for (const auto& l : Links()) {
                if (l.name.starts_with(prefix + "-")) {
                    (void)runtime::RunCommand({kIp, "link", "delete", "dev", l.name},
                                              Deadline());  // or went with its peer
                }
            }
            for (const auto& ns : NamespaceNames()) {
                if (ns.starts_with(prefix + "-")) {
                    Ip({"netns", "delete", ns});
                }
            }
        }
        forwarding_.reset();
    }

    void SkipWithoutBusybox() {
        if (!fs::exists(kBusybox)) {
            GTEST_SKIP() << kBusybox << " is missing (apt-get install busybox-static): it serves and fetches "
                         << "HTTP inside the namespaces";
        }
    }

    Host& host() { return *host_; }
    std::string Ns(const std::string& id) const { return host_->names().Namespace(id); }

    void MustEnsureBridge(const std::string& network_id, int mtu = 1500) {
        auto s = host().EnsureBridge(network_id, mtu, Deadline());
        ASSERT_TRUE(s) << s.error().ToString();
    }
    std::string MustEnsureNamespace(const std::string& id) {
        auto path = host().EnsureNamespace(id, Deadline());
        EXPECT_TRUE(path) << path.error().ToString();
        return path ? *path : "";
    }
    void MustPlug(const PortSpec& spec) {
        auto s = host().PlugPort(spec, Deadline());
        ASSERT_TRUE(s) << s.error().ToString();
    }
    Inventory MustList() {
        auto inv = host().List(Deadline());
        EXPECT_TRUE(inv) << inv.error().ToString();
        return inv ? *inv : Inventory{};
    }

    // A network, an instance namespace and a port on it, all at once.
    PortSpec Instance(const std::string& network_id, const std::string& instance_id,
                      const std::string& address, const std::string& gateway, int n) {
        PortSpec spec{.port_id = "port-" + instance_id,
                      .network_id = network_id,
                      .namespace_id = instance_id,
                      .mac = fmt::format("fa:16:3e:00:00:{:02x}", n),
                      .address = address,
                      .gateway = gateway};
        MustEnsureBridge(network_id);
        MustEnsureNamespace(instance_id);
        MustPlug(spec);
        return spec;
    }

    // busybox httpd in the namespace, serving `body` at / on port 8080.
    void Serve(const std::string& instance_id, const std::string& body) {
        auto& dir = dirs_.emplace_back(std::make_unique<cogs::testing::TempDir>("cogs-linuxnet-www"));
        dir->Write("index.html", body);
        auto child = runtime::Child::Spawn({kIp, "netns", "exec", Ns(instance_id), kBusybox, "httpd", "-f",
                                            "-p", "8080", "-h", dir->path()});
        ASSERT_TRUE(child) << child.error().ToString();
        servers_.push_back(std::move(*child));
    }

    // One HTTP GET from inside the namespace, with busybox nc (busybox 1.35's static wget crashes on
    // some machines): the body, or nullopt if nothing answered within nc's 3 s.
    std::optional<std::string> Fetch(const std::string& instance_id, const std::string& ip) {
        auto out = runtime::RunCommand(
            {kIp, "netns", "exec", Ns(instance_id), kBusybox, "sh", "-c",
             fmt::format("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {} nc -w 3 {} 8080", kBusybox, ip)},
            Deadline());
        if (!out || out->exit_status != 0) {
            return std::nullopt;
        }
        const size_t body = out->output.find("\r\n\r\n");
        if (!out->output.starts_with("HTTP/1.1 200") || body == std::string::npos) {
            return std::nullopt;
        }
        return out->output.substr(body + 4);
    }

    // Fetch until it answers (the server may still be starting), up to a generous deadline.
    std::optional<std::string> FetchWhenUp(const std::string& instance_id, const std::string& ip) {
        const SteadyTime deadline = Deadline();
        for (;;) {
            if (auto body = Fetch(instance_id, ip)) {
                return body;
            }
            if (SteadyClock::now() >= deadline) {
                return std::nullopt;
            }
            std::this_thread::sleep_for(100ms);
        }
    }

    std::string prefix_;
    std::vector<std::string> sweep_;  // prefixes TearDown clears
    std::unique_ptr<Host> host_;
    std::vector<std::unique_ptr<cogs::testing::TempDir>> dirs_;
    std::vector<runtime::Child> servers_;
    std::unique_ptr<ScopedIpForwarding> forwarding_;
};

TEST_F(LinuxnetHostTest, APortHasItsMacAddressAndDefaultRouteInsideOnAPureLayer2Bridge) {
    MustEnsureBridge("net-1", 1400);
    const std::string path = MustEnsureNamespace("inst-1");
    EXPECT_EQ(path, "/run/netns/" + prefix_ + "-inst-1");
    EXPECT_TRUE(internal::IsNamespaceMount(path));
    MustPlug({.port_id = "port-1",
              .network_id = "net-1",
              .namespace_id = "inst-1",
              .mac = "FA:16:3E:0A:0B:0C",
              .address = "10.77.0.5/24",
              .gateway = "10.77.0.1",
              .mtu = 1400});

    // Inside: eth0 with the port's MAC, MTU and address, up; lo up; the default route via the gateway.
    const std::string ns = Ns("inst-1");
    auto eth0 = FindLink("eth0", ns);
    ASSERT_TRUE(eth0);
    EXPECT_EQ(eth0->mac, "fa:16:3e:0a:0b:0c");
    EXPECT_EQ(eth0->mtu, 1400);
    EXPECT_TRUE(eth0->up);
    auto lo = FindLink("lo", ns);
    ASSERT_TRUE(lo);
    EXPECT_TRUE(lo->up);
    EXPECT_EQ(Ipv4Addresses(ns, "eth0"), std::vector<std::string>{"10.77.0.5/24"});
    const auto routes = DefaultRoutes(ns);
    ASSERT_EQ(routes.size(), 1u);
    EXPECT_EQ(routes[0].gateway, "10.77.0.1");
    EXPECT_EQ(routes[0].dev, "eth0");

    // Outside: the host end on the bridge, up, with the port id; the bridge with the network id, and
    // nothing of the host's on either: no address of any family, ARP off.
    const std::string bridge = host().names().Bridge("net-1");
    const std::string host_end = host().names().Port("port-1");
    auto br = FindLink(bridge);
    ASSERT_TRUE(br);
    EXPECT_EQ(br->kind, "bridge");
    EXPECT_EQ(br->alias, "net-1");
    EXPECT_EQ(br->mtu, 1400);
    EXPECT_TRUE(br->up);
    EXPECT_TRUE(br->noarp);
    EXPECT_EQ(br->addrgenmode, "none");
    auto end = FindLink(host_end);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->kind, "veth");
    EXPECT_EQ(end->alias, "port-1");
    EXPECT_EQ(end->master, bridge);
    EXPECT_TRUE(end->up);
    EXPECT_EQ(end->addrgenmode, "none");
    EXPECT_EQ(end->link_index, eth0->ifindex);
    for (const auto& dev : {bridge, host_end}) {
        EXPECT_EQ(AddressCount(dev), 0u) << dev;
    }
}

TEST_F(LinuxnetHostTest, EverythingTwiceIsSuccessAndChangesNothing) {
    const PortSpec spec = Instance("net-1", "inst-1", "10.77.0.5/24", "10.77.0.1", 1);
    const auto before = FindLink(host().names().Port("port-inst-1"));
    ASSERT_TRUE(before);
    MustEnsureBridge("net-1");
    EXPECT_EQ(MustEnsureNamespace("inst-1"), host().names().NamespacePath("inst-1"));
    MustPlug(spec);
    const auto after = FindLink(host().names().Port("port-inst-1"));
    ASSERT_TRUE(after);
    EXPECT_EQ(after->ifindex, before->ifindex);  // the same pair, not a new one
    EXPECT_EQ(MustList().ports.size(), 1u);

    for (int i = 0; i < 2; ++i) {
        auto unplug = host().UnplugPort("port-inst-1", Deadline());
        EXPECT_TRUE(unplug) << unplug.error().ToString();
        auto ns = host().DeleteNamespace("inst-1", Deadline());
        EXPECT_TRUE(ns) << ns.error().ToString();
        auto br = host().DeleteBridge("net-1", Deadline());
        EXPECT_TRUE(br) << br.error().ToString();
    }
    EXPECT_EQ(Leftovers(prefix_), std::vector<std::string>{});
}

TEST_F(LinuxnetHostTest, ReplugConvergesToTheLatestSpecAndMovesBetweenNamespaces) {
    PortSpec spec = Instance("net-1", "inst-1", "10.77.0.5/24", "10.77.0.1", 1);
    const std::string ns1 = Ns("inst-1");
    spec.address = "10.77.0.9/24";
    spec.mac = "fa:16:3e:00:00:99";
    spec.gateway = "";
    MustPlug(spec);
    ASSERT_TRUE(FindLink("eth0", ns1));
    EXPECT_EQ(FindLink("eth0", ns1)->mac, "fa:16:3e:00:00:99");
    EXPECT_EQ(Ipv4Addresses(ns1, "eth0"), std::vector<std::string>{"10.77.0.9/24"});
    EXPECT_TRUE(DefaultRoutes(ns1).empty());

    // The same port into another namespace (its instance moved): it leaves the first one.
    MustEnsureNamespace("inst-2");
    spec.namespace_id = "inst-2";
    MustPlug(spec);
    EXPECT_FALSE(FindLink("eth0", ns1));
    ASSERT_TRUE(FindLink("eth0", Ns("inst-2")));
    const Inventory inv = MustList();
    ASSERT_EQ(inv.ports.size(), 1u);
    EXPECT_EQ(inv.ports[0].namespace_id, "inst-2");
}

TEST_F(LinuxnetHostTest, UnplugAndDeleteLeaveNothing) {
    Instance("net-1", "inst-1", "10.77.0.5/24", "10.77.0.1", 1);
    Instance("net-1", "inst-2", "10.77.0.6/24", "10.77.0.1", 2);
    Instance("net-2", "inst-3", "10.78.0.5/24", "", 3);
    const Inventory full = MustList();
    EXPECT_EQ(full.bridges.size(), 2u);
    EXPECT_EQ(full.ports.size(), 3u);
    EXPECT_EQ(full.namespaces.size(), 3u);

    // The regular way: unplug, then the namespace.
    ASSERT_TRUE(host().UnplugPort("port-inst-1", Deadline()));
    ASSERT_TRUE(host().DeleteNamespace("inst-1", Deadline()));
    // An instance deleted without unplugging its port first: the namespace's deletion takes the
    // port's host end with it at once.
    ASSERT_TRUE(host().DeleteNamespace("inst-2", Deadline()));
    EXPECT_FALSE(FindLink(host().names().Port("port-inst-2")));
    // A bridge deleted with a port still on it: the port stays, on no bridge, until unplugged.
    ASSERT_TRUE(host().DeleteBridge("net-2", Deadline()));
    Inventory inv = MustList();
    ASSERT_EQ(inv.ports.size(), 1u);
    EXPECT_EQ(inv.ports[0].port_id, "port-inst-3");
    EXPECT_EQ(inv.ports[0].bridge, "");
    EXPECT_EQ(inv.ports[0].namespace_id, "inst-3");
    ASSERT_TRUE(host().UnplugPort("port-inst-3", Deadline()));
    ASSERT_TRUE(host().DeleteNamespace("inst-3", Deadline()));
    ASSERT_TRUE(host().DeleteBridge("net-1", Deadline()));

    inv = MustList();
    EXPECT_TRUE(inv.bridges.empty());
    EXPECT_TRUE(inv.ports.empty());
    EXPECT_TRUE(inv.namespaces.empty());
    EXPECT_TRUE(inv.strays.empty());
    EXPECT_EQ(Leftovers(prefix_), std::vector<std::string>{});
    for (const char* id : {"inst-1", "inst-2", "inst-3"}) {
        EXPECT_FALSE(fs::exists(host().names().NamespacePath(id)));
    }
}

TEST_F(LinuxnetHostTest, ListMapsEveryObjectBackToItsIdAndNothingElse) {
    // Ids as long as a link's alias and a namespace's name allow.
    const std::string long_network(kMaxId, 'n');
    const std::string long_instance(255 - prefix_.size() - 1, 'i');
    const std::string uuid = "1e543fbb-5ebb-4445-a1f1-fee1cb64a85d";
    Instance(long_network, long_instance, "10.77.0.5/24", "10.77.0.1", 1);
    Instance(uuid, uuid, "10.77.0.6/24", "10.77.0.1", 2);

    // What is not ours: a neighbour cloud whose prefix begins ours, a link and a namespace named
    // like ours but of no kind, and the machine's own interfaces.
    const std::string neighbour_prefix = prefix_.substr(0, 4);
    sweep_.push_back(neighbour_prefix);
    auto neighbour = Host::Make({.prefix = neighbour_prefix});
    ASSERT_TRUE(neighbour);
    ASSERT_TRUE(neighbour->EnsureBridge(uuid, 1500, Deadline()));
    ASSERT_TRUE(neighbour->EnsureNamespace(uuid, Deadline()));
    Ip({"link", "add", "name", prefix_ + "-x0123456", "type", "bridge"});

    const Inventory inv = MustList();
    std::map<std::string, std::string> bridges, ports, namespaces;
    for (const auto& b : inv.bridges) {
        bridges[b.network_id] = b.name;
    }
    for (const auto& p : inv.ports) {
        ports[p.port_id] = p.network_id + " " + p.namespace_id;
    }
    for (const auto& n : inv.namespaces) {
        namespaces[n.id] = n.path;
    }
    EXPECT_EQ(bridges,
              (std::map<std::string, std::string>{{long_network, host().names().Bridge(long_network)},
                                                  {uuid, host().names().Bridge(uuid)}}));
    EXPECT_EQ(ports, (std::map<std::string, std::string>{
                         {"port-" + long_instance, long_network + " " + long_instance},
                         {"port-" + uuid, uuid + " " + uuid}}));
    EXPECT_EQ(namespaces, (std::map<std::string, std::string>{
                              {long_instance, host().names().NamespacePath(long_instance)},
                              {uuid, host().names().NamespacePath(uuid)}}));
    EXPECT_TRUE(inv.strays.empty());

    // The neighbour sees only its own.
    auto theirs = neighbour->List(Deadline());
    ASSERT_TRUE(theirs);
    ASSERT_EQ(theirs->bridges.size(), 1u);
    EXPECT_EQ(theirs->bridges[0].network_id, uuid);
    EXPECT_TRUE(theirs->ports.empty());
    ASSERT_EQ(theirs->namespaces.size(), 1u);
    EXPECT_EQ(theirs->namespaces[0].id, uuid);
}

TEST_F(LinuxnetHostTest, AnInterruptedCreateIsAStrayThatEnsureAdoptsOrTheReconcilerRemoves) {
    // A bridge made, then the process died before its alias was set.
    const std::string bridge = host().names().Bridge("net-1");
    Ip({"link", "add", "name", bridge, "type", "bridge"});
    EXPECT_EQ(MustList().strays, std::vector<std::string>{bridge});
    MustEnsureBridge("net-1");  // adopts it
    Inventory inv = MustList();
    EXPECT_TRUE(inv.strays.empty());
    ASSERT_EQ(inv.bridges.size(), 1u);
    EXPECT_EQ(inv.bridges[0].network_id, "net-1");

    // A port's pair whose alias was never set, for a port nobody plugs again: removed as a stray.
    const std::string orphan = host().names().Port("gone");
    Ip({"link", "add", "name", orphan, "type", "veth", "peer", "name", prefix_ + "-tmp"});
    EXPECT_EQ(MustList().strays, std::vector<std::string>{orphan});
    auto deleted = host().DeleteStray(orphan, Deadline());
    ASSERT_TRUE(deleted) << deleted.error().ToString();
    EXPECT_TRUE(host().DeleteStray(orphan, Deadline()));  // gone: success
    EXPECT_TRUE(MustList().strays.empty());
    // An object with its id is no stray.
    auto refused = host().DeleteStray(bridge, Deadline());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kAlreadyExists);
    EXPECT_TRUE(FindLink(bridge));

    // A namespace file that an interrupted `ip netns add` left (no namespace bound to it).
    const std::string path = host().names().NamespacePath("inst-1");
    fs::create_directories("/run/netns");
    std::ofstream(path).close();
    ASSERT_FALSE(internal::IsNamespaceMount(path));
    EXPECT_EQ(MustEnsureNamespace("inst-1"), path);
    EXPECT_TRUE(internal::IsNamespaceMount(path));
}

TEST_F(LinuxnetHostTest, RefusesToTakeOverWhatIsNotItsOwn) {
    // Someone else's interface at the name of a network's bridge: left alone.
    const std::string bridge = host().names().Bridge("net-1");
    Ip({"link", "add", "name", bridge, "type", "veth", "peer", "name", prefix_ + "-peer"});
    auto taken = host().EnsureBridge("net-1", 1500, Deadline());
    ASSERT_FALSE(taken);
    EXPECT_EQ(taken.error().code, ErrorCode::kAlreadyExists) << taken.error().ToString();
    EXPECT_NE(taken.error().message.find(bridge), std::string::npos);
    EXPECT_FALSE(host().DeleteBridge("net-1", Deadline()));
    ASSERT_TRUE(FindLink(bridge));
    EXPECT_EQ(FindLink(bridge)->kind, "veth");
    Ip({"link", "delete", "dev", bridge});

    // Plugging needs the bridge and the namespace.
    PortSpec spec{.port_id = "port-1",
                  .network_id = "net-1",
                  .namespace_id = "inst-1",
                  .mac = "fa:16:3e:00:00:01",
                  .address = "10.77.0.5/24",
                  .gateway = "10.77.0.1"};
    auto no_bridge = host().PlugPort(spec, Deadline());
    ASSERT_FALSE(no_bridge);
    EXPECT_EQ(no_bridge.error().code, ErrorCode::kFailedPrecondition) << no_bridge.error().ToString();
    MustEnsureBridge("net-1");
    auto no_namespace = host().PlugPort(spec, Deadline());
    ASSERT_FALSE(no_namespace);
    EXPECT_EQ(no_namespace.error().code, ErrorCode::kFailedPrecondition) << no_namespace.error().ToString();

    // A namespace whose eth0 is another port's: refused, and neither port changes.
    MustEnsureNamespace("inst-1");
    MustPlug(spec);
    PortSpec other = spec;
    other.port_id = "port-2";
    other.mac = "fa:16:3e:00:00:02";
    auto occupied = host().PlugPort(other, Deadline());
    ASSERT_FALSE(occupied);
    EXPECT_EQ(occupied.error().code, ErrorCode::kAlreadyExists) << occupied.error().ToString();
    ASSERT_TRUE(FindLink("eth0", Ns("inst-1")));
    EXPECT_EQ(FindLink("eth0", Ns("inst-1"))->mac, "fa:16:3e:00:00:01");
    EXPECT_FALSE(FindLink(host().names().Port("port-2")));
}

TEST_F(LinuxnetHostTest, InstancesOnOneNetworkReachEachOther) {
    SkipWithoutBusybox();
    Instance("net-1", "a", "10.77.0.2/24", "10.77.0.1", 1);
    Instance("net-1", "b", "10.77.0.3/24", "10.77.0.1", 2);
    Serve("b", "this is b\n");
    EXPECT_EQ(FetchWhenUp("a", "10.77.0.3"), "this is b\n");
}

// The isolation decision (README.md): bridges carry no address, so the host has no route into any cogs
// network and cannot carry a packet from one bridge to another even when it forwards, and ARP is off on
// them, so no instance can resolve the host to send it anything.
TEST_F(LinuxnetHostTest, NetworksAreIsolatedEvenWhenTheHostForwards) {
    SkipWithoutBusybox();
    forwarding_ = std::make_unique<ScopedIpForwarding>();
    ASSERT_EQ(ReadSysctl("/proc/sys/net/ipv4/ip_forward"), "1");

    Instance("net-1", "a", "10.77.1.2/24", "10.77.1.1", 1);
    Instance("net-1", "b", "10.77.1.3/24", "10.77.1.1", 2);
    // Another network, another subnet: through the gateway, that is through the host.
    Instance("net-2", "c", "10.77.2.2/24", "10.77.2.1", 3);
    // Another network with the same subnet (cogs allows it): on the link, where b is not.
    Instance("net-3", "d", "10.77.1.4/24", "10.77.1.1", 4);
    Serve("b", "this is b\n");
    Serve("c", "this is c\n");
    Serve("d", "this is d\n");

    // Every server is up and answers on its own network...
    EXPECT_EQ(FetchWhenUp("a", "10.77.1.3"), "this is b\n");
    for (const auto& [client, server] : {std::pair{"c", "10.77.2.2"}, std::pair{"d", "10.77.1.4"}}) {
        EXPECT_EQ(FetchWhenUp(client, server), fmt::format("this is {}\n", client)) << client;
    }
    // ...and nobody answers across networks, in either direction.
    EXPECT_EQ(Fetch("c", "10.77.1.3"), std::nullopt) << "net-2 reached net-1";
    EXPECT_EQ(Fetch("a", "10.77.2.2"), std::nullopt) << "net-1 reached net-2";
    EXPECT_EQ(Fetch("d", "10.77.1.3"), std::nullopt) << "net-3 reached net-1 (same subnet)";
    EXPECT_EQ(Fetch("a", "10.77.1.4"), std::nullopt) << "net-1 reached net-3 (same subnet)";

    // Why: the host has no address on a cogs bridge and routes no cogs subnet to one.
    std::vector<std::string> bridges;
    for (const auto& b : MustList().bridges) {
        bridges.push_back(b.name);
        EXPECT_EQ(AddressCount(b.name), 0u) << b.name;
        ASSERT_TRUE(FindLink(b.name));
        EXPECT_TRUE(FindLink(b.name)->noarp) << b.name;
    }
    ASSERT_EQ(bridges.size(), 3u);
    for (const char* ip : {"10.77.1.3", "10.77.2.2"}) {
        // `ip route get` fails (no route) or names a device that is not ours.
        auto out = runtime::RunCommand({kIp, "-json", "route", "get", ip}, Deadline());
        ASSERT_TRUE(out);
        if (out->exit_status == 0) {
            auto routes = internal::ParseRoutes(out->output);
            ASSERT_TRUE(routes) << routes.error().ToString();
            for (const auto& r : *routes) {
                EXPECT_FALSE(r.dev.starts_with(prefix_ + "-")) << ip << " routed to " << r.dev;
            }
        }
    }
}

}  // namespace
}  // namespace cogs::linuxnet
