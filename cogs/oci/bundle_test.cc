#include "cogs/oci/bundle.h"

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"

namespace cogs::oci {
namespace {

namespace json = boost::json;

ContainerSpec Spec() {
    ContainerSpec s;
    s.id = "i-1";
    s.rootfs = "/var/lib/cogs/i-1/rootfs";
    s.args = {"/bin/httpd", "-f", "-p", "80"};
    s.env = {"COGS_SERVER=web1"};
    s.cwd = "/srv";
    s.hostname = "web1";
    s.vcpus = 2;
    s.memory_mib = 512;
    s.pids_limit = 256;
    s.netns_path = "/run/netns/cogs-p1";
    s.mounts = {{"/var/lib/cogs/i-1/meta", "/run/cogs", true}, {"/mnt/vol-1", "/volumes/vol-1", false}};
    return s;
}

json::object Config(const ContainerSpec& spec) {
    auto text = BundleConfig(spec);
    EXPECT_TRUE(text) << text.error().ToString();
    return text ? json::parse(*text).as_object() : json::object{};
}

std::vector<std::string> Strings(const json::value& v) {
    std::vector<std::string> out;
    for (const auto& s : v.as_array()) {
        out.emplace_back(s.as_string());
    }
    return out;
}

const json::object* MountAt(const json::object& config, std::string_view destination) {
    for (const auto& m : config.at("mounts").as_array()) {
        if (m.at("destination").as_string() == destination) {
            return &m.as_object();
        }
    }
    return nullptr;
}

TEST(OciBundleTest, ProcessRootAndHostname) {
    const json::object c = Config(Spec());
    const json::object& p = c.at("process").as_object();
    EXPECT_EQ(p.at("terminal"), false);
    EXPECT_EQ(Strings(p.at("args")), (std::vector<std::string>{"/bin/httpd", "-f", "-p", "80"}));
    // A PATH is added in front when the spec has none.
    EXPECT_EQ(Strings(p.at("env")),
              (std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                        "COGS_SERVER=web1"}));
    EXPECT_EQ(p.at("cwd"), "/srv");
    EXPECT_EQ(p.at("user").at("uid"), 0);
    EXPECT_EQ(p.at("noNewPrivileges"), true);
    for (const char* set : {"bounding", "effective", "permitted", "ambient"}) {
        EXPECT_EQ(Strings(p.at("capabilities").at(set)),
                  (std::vector<std::string>{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}))
            << set;
    }
    EXPECT_EQ(p.at("rlimits").at(0).at("type"), "RLIMIT_NOFILE");
    EXPECT_EQ(c.at("root").at("path"), "/var/lib/cogs/i-1/rootfs");
    EXPECT_EQ(c.at("root").at("readonly"), false);
    EXPECT_EQ(c.at("hostname"), "web1");

    ContainerSpec own_path = Spec();
    own_path.env = {"PATH=/bin"};
    own_path.readonly_rootfs = true;
    const json::object c2 = Config(own_path);
    EXPECT_EQ(Strings(c2.at("process").at("env")), std::vector<std::string>{"PATH=/bin"});
    EXPECT_EQ(c2.at("root").at("readonly"), true);
}

TEST(OciBundleTest, LimitsAndCgroup) {
    ContainerSpec spec = Spec();
    json::object c = Config(spec);
    const json::object& r = c.at("linux").at("resources").as_object();
    EXPECT_EQ(r.at("cpu").at("period"), 100000);
    EXPECT_EQ(r.at("cpu").at("quota"), 200000);
    EXPECT_FALSE(r.at("cpu").as_object().contains("shares"));
    EXPECT_EQ(r.at("memory").at("limit"), 512 * 1024 * 1024);
    EXPECT_EQ(r.at("memory").at("swap"), 512 * 1024 * 1024);
    EXPECT_EQ(r.at("pids").at("limit"), 256);
    EXPECT_EQ(r.at("devices").at(0).at("allow"), false);
    EXPECT_EQ(c.at("linux").at("cgroupsPath"), "/cogs/i-1");

    spec.cpu_shares = 512;
    spec.cgroup_parent = "cogs/host-1";
    c = Config(spec);
    EXPECT_EQ(c.at("linux").at("resources").at("cpu").at("shares"), 512);
    EXPECT_EQ(c.at("linux").at("cgroupsPath"), "/cogs/host-1/i-1");
    spec.cgroup_name = "h1.i-1";  // the leaf, when another agent of the machine runs an i-1 too
    c = Config(spec);
    EXPECT_EQ(c.at("linux").at("cgroupsPath"), "/cogs/host-1/h1.i-1");
    EXPECT_EQ(CgroupsPath(spec), "/cogs/host-1/h1.i-1");
}

TEST(OciBundleTest, NamespacesJoinOrCreateTheNetwork) {
    ContainerSpec spec = Spec();
    json::object c = Config(spec);
    std::vector<std::string> types;
    for (const auto& ns : c.at("linux").at("namespaces").as_array()) {
        types.emplace_back(ns.at("type").as_string());
        if (ns.at("type") == "network") {
            EXPECT_EQ(ns.at("path"), "/run/netns/cogs-p1");
        } else {
            EXPECT_FALSE(ns.as_object().contains("path"));
        }
    }
    EXPECT_EQ(types, (std::vector<std::string>{"pid", "network", "ipc", "uts", "mount"}));

    spec.netns_path = "";
    c = Config(spec);
    for (const auto& ns : c.at("linux").at("namespaces").as_array()) {
        EXPECT_FALSE(ns.as_object().contains("path")) << ns;
    }
}

TEST(OciBundleTest, MountsDefaultsAndBinds) {
    const json::object c = Config(Spec());
    for (const char* d : {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}) {
        EXPECT_NE(MountAt(c, d), nullptr) << d;
    }
    EXPECT_EQ(MountAt(c, "/sys/fs/cgroup")->at("type"), "cgroup");
    const json::object* meta = MountAt(c, "/run/cogs");
    ASSERT_NE(meta, nullptr);
    EXPECT_EQ(meta->at("type"), "bind");
    EXPECT_EQ(meta->at("source"), "/var/lib/cogs/i-1/meta");
    EXPECT_EQ(Strings(meta->at("options")), (std::vector<std::string>{"rbind", "nosuid", "nodev", "ro"}));
    const json::object* volume = MountAt(c, "/volumes/vol-1");
    ASSERT_NE(volume, nullptr);
    EXPECT_EQ(Strings(volume->at("options")), (std::vector<std::string>{"rbind", "nosuid", "nodev", "rw"}));
    EXPECT_FALSE(c.at("linux").at("maskedPaths").as_array().empty());

    // A directory whose later host mounts appear inside (the instance's /volumes): a slave bind.
    ContainerSpec with_volumes = Spec();
    with_volumes.mounts = {
        {.source = "/var/lib/cogs/i-1/volumes", .destination = "/volumes", .receives_host_mounts = true}};
    const json::object c2 = Config(with_volumes);
    const json::object* volumes = MountAt(c2, "/volumes");
    ASSERT_NE(volumes, nullptr);
    EXPECT_EQ(Strings(volumes->at("options")),
              (std::vector<std::string>{"rbind", "nosuid", "nodev", "rw", "rslave"}));
    EXPECT_FALSE(c.at("linux").at("readonlyPaths").as_array().empty());
}

TEST(OciBundleTest, InvalidSpecsNameTheField) {
    struct Case {
        std::string field;
        void (*mutate)(ContainerSpec&);
    };
    const std::vector<Case> cases = {
        {"id", [](ContainerSpec& s) { s.id = ""; }},
        {"id", [](ContainerSpec& s) { s.id = "-rf"; }},
        {"id", [](ContainerSpec& s) { s.id = "a/b"; }},
        {"id", [](ContainerSpec& s) { s.id = std::string(129, 'a'); }},
        {"rootfs", [](ContainerSpec& s) { s.rootfs = "rootfs"; }},
        {"rootfs", [](ContainerSpec& s) { s.rootfs = "/a/../etc"; }},
        {"args", [](ContainerSpec& s) { s.args.clear(); }},
        {"args", [](ContainerSpec& s) { s.args = {""}; }},
        {"args[1]",
         [](ContainerSpec& s) {
             s.args = {"sh", std::string("a\0b", 3)};
         }},
        {"env[0]", [](ContainerSpec& s) { s.env = {"NOEQUALS"}; }},
        {"env[1]",
         [](ContainerSpec& s) {
             s.env = {"A=1", "=x"};
         }},
        {"cwd", [](ContainerSpec& s) { s.cwd = "srv"; }},
        {"hostname", [](ContainerSpec& s) { s.hostname = ""; }},
        {"hostname", [](ContainerSpec& s) { s.hostname = "web 1"; }},
        {"hostname", [](ContainerSpec& s) { s.hostname = std::string(65, 'h'); }},
        {"vcpus", [](ContainerSpec& s) { s.vcpus = 0; }},
        {"cpu_shares", [](ContainerSpec& s) { s.cpu_shares = 1; }},
        {"memory_mib", [](ContainerSpec& s) { s.memory_mib = 0; }},
        {"memory_mib", [](ContainerSpec& s) { s.memory_mib = -5; }},
        {"pids_limit", [](ContainerSpec& s) { s.pids_limit = 0; }},
        {"netns_path", [](ContainerSpec& s) { s.netns_path = "netns/x"; }},
        {"mounts[0].source", [](ContainerSpec& s) { s.mounts[0].source = "meta"; }},
        {"mounts[1].destination", [](ContainerSpec& s) { s.mounts[1].destination = "volumes/x"; }},
        {"mounts[1].destination", [](ContainerSpec& s) { s.mounts[1].destination = "/"; }},
        {"cgroup_parent", [](ContainerSpec& s) { s.cgroup_parent = ""; }},
        {"cgroup_parent", [](ContainerSpec& s) { s.cgroup_parent = "/cogs"; }},
        {"cgroup_parent", [](ContainerSpec& s) { s.cgroup_parent = "cogs/../x"; }},
        {"cgroup_name", [](ContainerSpec& s) { s.cgroup_name = ".."; }},
        {"cgroup_name", [](ContainerSpec& s) { s.cgroup_name = "h1/i-1"; }},
        {"lease_file", [](ContainerSpec& s) { s.lease_file = "leases/h1"; }},
    };
    for (const Case& c : cases) {
        ContainerSpec spec = Spec();
        c.mutate(spec);
        const Status s = ValidateSpec(spec);
        ASSERT_FALSE(s) << c.field;
        EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument) << c.field;
        EXPECT_EQ(s.error().field(), c.field) << s.error().message;
        EXPECT_TRUE(s.error().message.starts_with(c.field + ": ")) << s.error().message;
        EXPECT_FALSE(BundleConfig(spec)) << c.field;
    }
    EXPECT_TRUE(ValidateSpec(Spec()));
    EXPECT_TRUE(IsValidContainerId("0b6c.x_y-z"));
}

TEST(OciBundleTest, WriteBundleWritesConfigJson) {
    const cogs::testing::TempDir dir("cogs-oci-bundle-test");
    const std::string bundle = dir / "c1/bundle";
    ASSERT_TRUE(WriteBundle(Spec(), bundle));
    auto text = runtime::ReadFile(bundle + "/config.json");
    ASSERT_TRUE(text);
    EXPECT_EQ(json::parse(*text).at("hostname"), "web1");
    struct stat st {};
    ASSERT_EQ(::stat((bundle + "/config.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    ContainerSpec bad = Spec();
    bad.memory_mib = 0;
    const Status s = WriteBundle(bad, dir / "c2/bundle");
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().field(), "memory_mib");
}

}  // namespace
}  // namespace cogs::oci
