// The container driver: blocking runc and file work on a WorkerPool, one instance's calls in order,
// results posted back to the io thread, where every piece of the driver's own state lives.
#include "cogs/services/compute/internal/container_driver.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "cogs/linuxnet/host.h"
#include "cogs/observe/log.h"
#include "cogs/oci/container.h"
#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "cogs/services/compute/internal/container_instance.h"
#include "cogs/services/compute/internal/container_volumes.h"
#include "cogs/services/compute/internal/image_cache.h"
#include "cogs/services/compute/internal/worker_pool.h"

namespace cogs::services::compute::internal {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr Duration kNetDeadline = 30s;  // for the few `ip` commands of one namespace

// A hostname runc takes (1-64 of [A-Za-z0-9._-]) from the server's name, else from its id.
std::string Hostname(const InstanceSpec& s) {
    std::string out;
    for (char c : s.name.empty() ? s.id : s.name) {
        const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
        out.push_back(ok ? c : '-');
    }
    out.resize(std::min<size_t>(out.size(), 64));
    return out.empty() ? "instance" : out;
}

std::string HtmlEscape(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out.push_back(c);
        }
    }
    return out;
}

std::string IndexHtml(const InstanceSpec& s) {
    return fmt::format("<html><body><h1>{}</h1><p>server {} ({})</p></body></html>\n", HtmlEscape(s.name),
                       HtmlEscape(s.name), HtmlEscape(s.id));
}

class ContainerDriver final : public ComputeDriver {
public:
    ContainerDriver(ComputeDriverOptions options, oci::ContainersOptions containers, linuxnet::Host net,
                    std::vector<std::string> applets)
        : options_(std::move(options)),
          containers_(std::move(containers)),
          net_(std::move(net)),
          applets_(std::move(applets)),
          images_(MakeImageCache(options_)),
          pool_(std::make_unique<WorkerPool>(options_.workers, options_.max_queued)) {}

    ~ContainerDriver() override {
        timer_.reset();
        pool_.reset();  // waits for the calls under way; their results are dropped (alive_ goes next)
    }

    std::string_view name() const override { return "container"; }
    bool adopts() const override { return true; }

    void Bind(boost::asio::io_context& io, DriverEvents& events) override {
        io_ = &io;
        events_ = &events;
        timer_ = std::make_unique<boost::asio::steady_timer>(io);
        ArmMonitor();
    }

    Result<Millis> Boot(const InstanceSpec& instance) override {
        const uint64_t gen = ++next_gen_;
        COGS_TRY(pool_->Run(instance.id, [this, instance, gen] {
            auto started = BootBlocking(instance);
            Post([this, id = instance.id, gen, started = std::move(started)]() mutable {
                OnBooted(id, gen, std::move(started));
            });
        }));
        watched_[instance.id] = Watch{.gen = gen};
        return kUntilReported;
    }

    Status Stop(const InstanceSpec& instance) override {
        COGS_TRY(pool_->Run(instance.id, [this, id = instance.id] {
            if (auto r = containers_.Stop(id, options_.stop_grace);
                !r && r.error().code != ErrorCode::kNotFound) {
                observe::Log("compute").warn("stopping instance {} failed: {}", id, r.error().ToString());
            }
        }));
        watched_.erase(instance.id);
        return Ok();
    }

    // Fencing: SIGKILL at once (Containers::Stop without a grace). The shim's watchdog kills it at
    // the lease's end anyway; this is the agent's own, recorded, power-off.
    Status PowerOff(const InstanceSpec& instance) override {
        COGS_TRY(pool_->Run(instance.id, [this, id = instance.id] {
            if (auto r = containers_.Stop(id, Duration::zero());
                !r && r.error().code != ErrorCode::kNotFound) {
                observe::Log("compute").warn("powering off instance {} failed: {}", id, r.error().ToString());
            }
        }));
        watched_.erase(instance.id);
        return Ok();
    }

    Status Delete(const InstanceSpec& instance) override {
        COGS_TRY(pool_->Run(
            instance.id, [this, id = instance.id, ns = NamespaceIdOf(instance)] { DeleteBlocking(id, ns); }));
        watched_.erase(instance.id);
        return Ok();
    }

    void Adopt(const InstanceSpec& instance) override {
        const uint64_t gen = ++next_gen_;
        watched_[instance.id] = Watch{.gen = gen, .adopting = true};
        Check(instance.id, watched_[instance.id]);
    }

    void CollectStrays(const std::set<std::string>& known) override {
        // Found on the pool under a key no instance has (ids never start with '.'), so the calls of
        // the instances adopted or booted meanwhile go on beside it; each stray is then removed under
        // its own id, from the io thread, unless it was booted or adopted since (the list was read
        // while boots went on): queued behind the id's tasks, a removal never overlaps a boot.
        (void)pool_->Run(".strays", [this, known] {
            Post([this, strays = FindStraysBlocking(known)] {
                for (const auto& stray : strays) {
                    const std::string& id = stray.first;
                    if (watched_.contains(id)) continue;
                    observe::Log("compute").warn(
                        "instance {} has no record (deleted while this agent was down): removing it", id);
                    (void)pool_->Run(id, [this, id, namespaces = stray.second] {
                        DeleteBlocking(id, namespaces.empty() ? std::string() : namespaces.front());
                        for (size_t i = 1; i < namespaces.size(); ++i) {
                            (void)net_.DeleteNamespace(namespaces[i], SteadyClock::now() + kNetDeadline);
                        }
                    });
                }
            });
        });
    }

    Result<bool> SyncVolumes(const InstanceSpec& instance, uint64_t ticket) override {
        COGS_TRY(pool_->Run(instance.id, [this, id = instance.id, volumes = instance.volumes, ticket] {
            Status synced = SyncVolumesBlocking(id, volumes);
            Post([this, id, ticket, synced = std::move(synced)]() mutable {
                events_->VolumesSynced(id, ticket, std::move(synced));
            });
        }));
        return true;
    }

    Result<std::string> Console(const InstanceSpec& instance, int64_t max_bytes) const override {
        return containers_.Console(instance.id, max_bytes);
    }

private:
    // An instance the driver watches (booted or adopted and not stopped since), on the io thread.
    struct Watch {
        uint64_t gen = 0;               // its latest Boot or Adopt: results of earlier ones are dropped
        bool running_reported = false;  // Running was reported for this gen
        bool check_queued = false;      // a Status call for it is queued or under way
        bool adopting = false;          // Adopt, not Boot: nothing found is Gone rather than Exited
    };

    // Runs `f` on the io thread, unless the driver is gone by then.
    template <typename F>
    void Post(F f) {
        boost::asio::post(*io_, [weak = std::weak_ptr<int>(alive_), f = std::move(f)]() mutable {
            if (weak.lock()) {
                f();
            }
        });
    }

    void ArmMonitor() {
        timer_->expires_after(options_.poll_interval);
        timer_->async_wait([this, weak = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
            if (ec || !weak.lock()) {
                return;
            }
            for (auto& [id, w] : watched_) {
                Check(id, w);
            }
            ArmMonitor();
        });
    }

    // Queues a Status call for `id` (one at a time; skipped while the queue is full).
    void Check(const std::string& id, Watch& w) {
        if (w.check_queued) {
            return;
        }
        auto queued = pool_->Run(id, [this, id, gen = w.gen] {
            auto status = containers_.Status(id);
            Post([this, id, gen, status = std::move(status)]() mutable {
                OnChecked(id, gen, std::move(status));
            });
        });
        w.check_queued = queued.has_value();
    }

    Watch* Current(const std::string& id, uint64_t gen) {
        auto it = watched_.find(id);
        return it == watched_.end() || it->second.gen != gen ? nullptr : &it->second;
    }

    void OnBooted(const std::string& id, uint64_t gen, Result<oci::ContainerStatus> started) {
        Watch* w = Current(id, gen);
        if (w == nullptr) {
            return;  // stopped, deleted or booted again since
        }
        if (!started) {
            watched_.erase(id);
            events_->BootFailed(id, started.error());
            return;
        }
        if (started->state == oci::ContainerState::kRunning) {
            w->running_reported = true;
            events_->Running(id);
        } else if (started->state == oci::ContainerState::kExited) {
            watched_.erase(id);
            events_->Exited(id, fmt::format("its process exited at once, status {}", started->exit_status));
        }
    }

    void OnChecked(const std::string& id, uint64_t gen, Result<oci::ContainerStatus> status) {
        Watch* w = Current(id, gen);
        if (w == nullptr) {
            return;
        }
        w->check_queued = false;
        if (!status) {
            observe::Log("compute").warn("instance {}: cannot read its container's status: {}", id,
                                         status.error().ToString());
            return;
        }
        switch (status->state) {
            case oci::ContainerState::kCreating: break;
            case oci::ContainerState::kRunning:
                if (!w->running_reported) {
                    w->running_reported = true;
                    events_->Running(id);
                }
                break;
            case oci::ContainerState::kExited:
                watched_.erase(id);
                events_->Exited(id, fmt::format("its process ended, status {}", status->exit_status));
                break;
            case oci::ContainerState::kAbsent: {
                const bool gone = w->adopting && !w->running_reported;
                watched_.erase(id);
                if (gone) {
                    events_->Gone(id);
                } else {
                    events_->Exited(id, "its container is gone");
                }
                break;
            }
        }
    }

    // ---- on the pool's threads ----

    Result<oci::ContainerStatus> BootBlocking(const InstanceSpec& s) const {
        // The instance's disk: a copy of its image made at its first boot and kept (later boots,
        // here or after an agent restart, need no image: it may have left the cache since).
        const std::string rootfs = containers_.DirOf(s.id) + "/rootfs";
        std::error_code ec;
        if (s.image == kBusyboxImage) {
            COGS_TRY(MakeBuiltinRootfs(rootfs, s));
        } else if (!fs::exists(rootfs + "/run/cogs", ec)) {
            if (images_ == nullptr) {
                return MakeError(
                    Error(ErrorCode::kFailedPrecondition,
                          "image '" + s.image +
                              "' is not on this host (without --control-url the container driver "
                              "knows only the built-in image 'busybox')",
                          /*retry=*/false));
            }
            COGS_TRY(images_->Use(
                s.image, [&](const std::string& image_root) { return CopyImage(image_root, rootfs, s); }));
        }
        COGS_ASSIGN_OR_RETURN(const oci::ContainerStatus now, containers_.Status(s.id));
        if (now.state == oci::ContainerState::kRunning || now.state == oci::ContainerState::kCreating) {
            // A reboot: the old process goes first.
            if (auto stopped = containers_.Stop(s.id, options_.stop_grace); !stopped) {
                return MakeError(stopped.error());
            }
        }
        COGS_TRY(WriteBootFiles(rootfs, s));
        COGS_ASSIGN_OR_RETURN(std::string netns,
                              net_.EnsureNamespace(NamespaceIdOf(s), SteadyClock::now() + kNetDeadline));
        COGS_TRY(PlugInstancePort(net_, s, SteadyClock::now() + kNetDeadline));
        oci::ContainerSpec c;
        c.id = s.id;
        c.rootfs = rootfs;
        c.args = InitArgs(s);
        c.hostname = Hostname(s);
        c.vcpus = static_cast<int>(std::clamp<int64_t>(s.vcpus, 1, 1024));
        c.memory_mib = s.ram_mb;
        c.netns_path = std::move(netns);
        c.cgroup_name = NamespaceIdOf(s);  // "<host>.<id>": another host's copy on this machine differs
        if (!options_.lease_dir.empty()) {
            c.lease_file = options_.lease_dir + "/" + s.host;  // the host's watchdog
        }
        // The instance's volumes at /volumes (container_volumes.h). One that cannot be mounted does
        // not fail the boot (a machine boots without a missing disk); the attach that asks for it
        // again says why.
        COGS_ASSIGN_OR_RETURN(std::string volumes, EnsureVolumesDir(containers_.DirOf(s.id)));
        if (auto synced = SyncHostVolumes(volumes, s.volumes); !synced) {
            observe::Log("compute").warn("instance {}: boots without some of its volumes: {}", s.id,
                                         synced.error().ToString());
        }
        c.mounts.push_back(
            {.source = std::move(volumes), .destination = "/volumes", .receives_host_mounts = true});
        return containers_.Start(c);
    }

    // The built-in image's copy (made once per instance, kept across its boots, as a VM's disk is).
    Status MakeBuiltinRootfs(const std::string& rootfs, const InstanceSpec& s) const {
        std::error_code ec;
        if (!fs::exists(rootfs + "/bin/busybox", ec)) {
            // Made aside and renamed: a half-made copy is never taken for the image.
            const std::string tmp = rootfs + ".new";
            fs::remove_all(tmp, ec);
            for (const char* d : {"bin", "proc", "sys", "dev", "tmp", "etc", "root", "www", "run/cogs"}) {
                fs::create_directories(tmp + "/" + d, ec);
                if (ec) {
                    return MakeError(ErrorCode::kUnavailable, "instance " + s.id + ": cannot make " + tmp +
                                                                  "/" + d + ": " + ec.message());
                }
            }
            fs::copy_file(options_.busybox, tmp + "/bin/busybox", ec);
            for (const std::string& applet : applets_) {
                if (!ec) {
                    fs::create_symlink("busybox", tmp + "/bin/" + applet, ec);
                }
            }
            if (!ec) {
                fs::remove_all(rootfs, ec);
                fs::rename(tmp, rootfs, ec);
            }
            if (ec) {
                return MakeError(ErrorCode::kUnavailable,
                                 "instance " + s.id + ": cannot copy the image: " + ec.message());
            }
        }
        return Ok();
    }

    // The files cogs puts in the instance at every boot: who it is, its page, its user_data, its keys.
    Status WriteBootFiles(const std::string& rootfs, const InstanceSpec& s) const {
        COGS_TRY(runtime::WriteFileAtomic(rootfs + "/run/cogs/meta.json", MetaJson(s)));
        COGS_TRY(runtime::WriteFileAtomic(rootfs + "/www/index.html", IndexHtml(s)));
        if (!s.user_data.empty()) {
            COGS_TRY(runtime::WriteFileAtomic(rootfs + kUserDataPath, s.user_data));
        }
        if (!s.public_keys.empty()) {
            COGS_TRY(runtime::WriteFileAtomic(rootfs + kAuthorizedKeysPath, AuthorizedKeys(s)));
        }
        return Ok();
    }

    // Mounts exactly `volumes` for instance `id` (its directory made if it never booted).
    Status SyncVolumesBlocking(const std::string& id, const std::vector<VolumeMount>& volumes) const {
        COGS_ASSIGN_OR_RETURN(const std::string dir, EnsureVolumesDir(containers_.DirOf(id)));
        return SyncHostVolumes(dir, volumes);
    }

    // Every container without a record (CollectStrays), each with the namespaces named for it on any
    // host (<prefix>-<host>.<id>).
    std::vector<std::pair<std::string, std::vector<std::string>>> FindStraysBlocking(
        const std::set<std::string>& known) const {
        std::vector<std::pair<std::string, std::vector<std::string>>> strays;
        auto found = containers_.List();
        if (!found) {
            observe::Log("compute").warn("collecting strays: {}", found.error().ToString());
            return strays;
        }
        auto inventory = net_.List(SteadyClock::now() + kNetDeadline);
        for (const oci::ContainerInfo& c : *found) {
            if (known.contains(c.id)) {
                continue;
            }
            std::vector<std::string> namespaces;
            for (const linuxnet::NamespaceInfo& ns :
                 inventory ? inventory->namespaces : std::vector<linuxnet::NamespaceInfo>{}) {
                if (ns.id.ends_with("." + c.id)) {
                    namespaces.push_back(ns.id);
                }
            }
            strays.emplace_back(c.id, std::move(namespaces));
        }
        return strays;
    }

    // An instance's copy of a downloaded image (made once, aside and renamed, as the built-in's), with
    // the directories cogs needs in it. The instance runs the same first
    // process as the built-in's (its /bin/sh running the init script).
    Status CopyImage(const std::string& image_root, const std::string& rootfs, const InstanceSpec& s) const {
        std::error_code ec;
        if (!fs::exists(rootfs + "/run/cogs", ec)) {
            const std::string tmp = rootfs + ".new";
            fs::remove_all(tmp, ec);
            fs::create_directories(tmp, ec);
            auto copied =
                runtime::RunCommand({"/bin/cp", "-a", image_root + "/.", tmp}, SteadyClock::now() + 5min);
            if (!copied || copied->exit_status != 0) {
                return MakeError(ErrorCode::kUnavailable,
                                 "instance " + s.id + ": cannot copy image " + s.image + ": " +
                                     (copied ? copied->output : copied.error().message));
            }
            for (const char* d : {"proc", "sys", "dev", "tmp", "etc", "root", "www", "run/cogs"}) {
                fs::create_directories(tmp + "/" + d, ec);
            }
            fs::remove_all(rootfs, ec);
            fs::rename(tmp, rootfs, ec);
            if (ec) {
                return MakeError(ErrorCode::kUnavailable,
                                 "instance " + s.id + ": cannot copy the image: " + ec.message());
            }
        }
        return Ok();
    }

    static std::unique_ptr<ImageCache> MakeImageCache(const ComputeDriverOptions& o) {
        if (o.control_urls.empty()) return nullptr;
        return std::make_unique<ImageCache>(ImageCacheOptions{
            .dir = o.images_dir.empty() ? o.instances_dir + "/.images" : o.images_dir,  // no instance id
            .control_urls = o.control_urls,
            .token = o.control_token,
            .tls = o.control_tls,
            .max_images = o.max_cached_images});
    }

    // Stop (with the grace), remove everything of the container, then its namespace with the veth
    // of its port (not the port's veth by name: after an evacuation on one machine, the port may be
    // plugged into the instance's new copy). Logged, not answered: the delete was accepted already
    // (an agent that starts collects a container a failure leaves; cogs-network's sweep a veth).
    void DeleteBlocking(const std::string& id, const std::string& namespace_id) const {
        auto status = containers_.Status(id);
        if (status && (status->state == oci::ContainerState::kRunning ||
                       status->state == oci::ContainerState::kCreating)) {
            (void)containers_.Stop(id, options_.stop_grace);  // Remove kills what is left
        }
        Status removed = containers_.Remove(id);
        for (int attempt = 1; !removed && attempt < 3; ++attempt) {
            removed = containers_.Remove(id);
        }
        if (!removed) {
            observe::Log("compute").error("deleting instance {}: {}", id, removed.error().ToString());
        }
        if (namespace_id.empty()) {
            return;
        }
        if (auto s = net_.DeleteNamespace(namespace_id, SteadyClock::now() + kNetDeadline); !s) {
            observe::Log("compute").error("deleting instance {}: its namespace: {}", id,
                                          s.error().ToString());
        }
    }

    const ComputeDriverOptions options_;
    const oci::Containers containers_;
    mutable linuxnet::Host net_;
    const std::vector<std::string> applets_;    // busybox's applets, symlinked in the image's /bin
    const std::unique_ptr<ImageCache> images_;  // null without a control url

    // On the io thread.
    boost::asio::io_context* io_ = nullptr;
    DriverEvents* events_ = nullptr;
    std::unique_ptr<boost::asio::steady_timer> timer_;
    std::map<std::string, Watch> watched_;
    uint64_t next_gen_ = 0;

    std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // posted results hold it weakly
    std::unique_ptr<WorkerPool> pool_;  // last: destroyed first, before what its tasks use
};

}  // namespace

Result<std::unique_ptr<ComputeDriver>> MakeContainerDriver(ComputeDriverOptions options) {
    for (auto [field, path] :
         {std::pair{"instances dir", &options.instances_dir}, std::pair{"runc root", &options.runc_root}}) {
        if (path->empty() || !fs::path(*path).is_absolute()) {
            return MakeError(ErrorCode::kInvalidArgument, std::string(field) + ": must be an absolute path");
        }
    }
    if (!options.lease_dir.empty() && !fs::path(options.lease_dir).is_absolute()) {
        return MakeError(ErrorCode::kInvalidArgument, "lease dir: must be an absolute path");
    }
    if (options.stop_grace < Duration::zero()) {
        return MakeError(ErrorCode::kInvalidArgument, "stop grace: must be >= 0");
    }
    if (options.poll_interval <= Duration::zero()) {
        return MakeError(ErrorCode::kInvalidArgument, "poll interval: must be > 0");
    }
    if (options.workers < 1 || options.workers > 64) {
        return MakeError(ErrorCode::kInvalidArgument, "workers: must be 1..64");
    }
    if (options.shim_binary.empty()) {
        options.shim_binary = runtime::SiblingBinary("cogs-oci-shim");
    }
    for (auto [what, path] : {std::pair{"runc", &options.runc_binary}, std::pair{"busybox", &options.busybox},
                              std::pair{"cogs-oci-shim", &options.shim_binary}}) {
        std::error_code ec;
        if (!fs::exists(*path, ec)) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             std::string(what) + ": " + *path +
                                 " is missing (scripts/install-deps installs runc "
                                 "and busybox-static)");
        }
    }
    COGS_ASSIGN_OR_RETURN(linuxnet::Host net, linuxnet::Host::Make({.prefix = options.netns_prefix}));
    for (const std::string* dir : {&options.instances_dir, &options.runc_root, &options.lease_dir}) {
        if (dir->empty()) {
            continue;
        }
        std::error_code ec;
        fs::create_directories(*dir, ec);
        if (ec) {
            return MakeError(ErrorCode::kFailedPrecondition, "cannot make " + *dir + ": " + ec.message());
        }
    }
    auto list = runtime::RunCommand({options.busybox, "--list"}, SteadyClock::now() + 30s);
    if (!list || list->exit_status != 0) {
        return MakeError(ErrorCode::kFailedPrecondition, options.busybox + " --list failed: " +
                                                             (list ? list->output : list.error().ToString()));
    }
    std::vector<std::string> applets;
    std::istringstream in(list->output);
    for (std::string applet; std::getline(in, applet);) {
        if (!applet.empty() && applet != "busybox" && applet.find('/') == std::string::npos) {
            applets.push_back(applet);
        }
    }
    oci::ContainersOptions containers{.dir = options.instances_dir,
                                      .runc_root = options.runc_root,
                                      .runc_binary = options.runc_binary,
                                      .shim_binary = options.shim_binary};
    return std::unique_ptr<ComputeDriver>(std::make_unique<ContainerDriver>(
        std::move(options), std::move(containers), std::move(net), std::move(applets)));
}

}  // namespace cogs::services::compute::internal
