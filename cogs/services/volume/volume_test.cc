#include "cogs/services/volume/volume.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <map>

#include "cogs/runtime/files.h"
#include "cogs/runtime/process.h"
#include "cogs/services/kit/internal/test_service.h"
#include "cogs/services/kit/service.h"
#include "test/support/temp_dir.h"

namespace cogs::services::volume {
namespace {

namespace json = boost::json;
using Domain = kit::test_service::DomainUnderTest<kit::Domain>;
using kit::test_service::Records;

class VolumeTest : public ::testing::Test {
protected:
    // Performs the action, applies its Tx to records_ on success; answers the output as JSON.
    Result<json::object> Do(std::string_view action, std::string_view input) {
        COGS_ASSIGN_OR_RETURN(const kit::Done done, domain_.Perform(action, input, records_));
        EXPECT_EQ(done.ready_at_us, 0);
        return json::parse(done.output).as_object();
    }

    json::object Ok(std::string_view action, std::string_view input) {
        auto out = Do(action, input);
        EXPECT_TRUE(out.has_value()) << action << " " << input << ": " << out.error().ToString();
        return out ? *out : json::object();
    }

    Error Fails(std::string_view action, std::string_view input) {
        auto out = Do(action, input);
        EXPECT_FALSE(out.has_value()) << action << " " << input << " answered " << json::serialize(*out);
        return out ? Error() : out.error();
    }

    json::array Inventory() const { return json::parse(domain_->Inventory()).at("volumes").as_array(); }

    json::object Volume(const std::string& id) const {
        for (const auto& v : Inventory()) {
            if (v.at("id") == id.c_str()) {
                return v.as_object();
            }
        }
        ADD_FAILURE() << "no volume " << id << " in the inventory";
        return {};
    }

    Domain domain_{MakeVolumeDomain(*MakeVolumeDriver("sim", ""))};
    Records records_;
};

TEST_F(VolumeTest, NameAndActions) {
    EXPECT_EQ(domain_->name(), "volume");
    EXPECT_EQ(domain_.actions().names(), (std::vector<std::string>{"create_volume", "delete_volume",
                                                                   "attach_volumes", "detach_volumes"}));
    EXPECT_EQ(domain_.actions().names(), std::vector<std::string>(kActions.begin(), kActions.end()));
    auto e = Fails("boot", "{}");
    EXPECT_EQ(e.code, ErrorCode::kNotFound);
    EXPECT_EQ(e.message, "volume has no action 'boot'");
}

TEST_F(VolumeTest, CreateAnswersAvailableAndShowsInInventory) {
    auto out = Ok("create_volume", R"({"id":"v1","size_gb":10,"name":"data","project_id":"p1"})");
    EXPECT_EQ(out.at("id"), "v1");
    EXPECT_EQ(out.at("size_gb"), 10);
    EXPECT_EQ(out.at("name"), "data");
    EXPECT_EQ(out.at("project_id"), "p1");
    EXPECT_EQ(out.at("status"), "available");
    EXPECT_FALSE(out.contains("path"));  // the sim driver has nothing on disk
    auto v = Volume("v1");
    EXPECT_EQ(v.at("status"), "available");
    EXPECT_EQ(v.at("size_gb"), 10);
    EXPECT_TRUE(v.at("server_id").is_null());
    EXPECT_TRUE(v.at("device").is_null());
    EXPECT_EQ(records_.size(), 1u);
    EXPECT_TRUE(records_.count({"volumes", "v1"}));
}

TEST_F(VolumeTest, CreateIsIdempotentById) {
    auto first = Ok("create_volume", R"({"id":"v1","size_gb":10})");
    auto again = Ok("create_volume", R"({"id":"v1","size_gb":10})");
    EXPECT_EQ(first, again);
    EXPECT_EQ(Inventory().size(), 1u);
    EXPECT_EQ(Fails("create_volume", R"({"id":"v1","size_gb":20})").code, ErrorCode::kAlreadyExists);
    EXPECT_EQ(Fails("create_volume", R"({"id":"v1","size_gb":10,"name":"x"})").code,
              ErrorCode::kAlreadyExists);
    EXPECT_EQ(Volume("v1").at("size_gb"), 10);
}

TEST_F(VolumeTest, ValidationNamesTheField) {
    struct Case {
        const char* action;
        const char* input;
        const char* field;
        const char* what;  // the message is "FIELD: WHAT..."
    };
    const char* id_rule = "must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'";
    const Case cases[] = {
        {"create_volume", R"({"size_gb":1})", "id", "required"},
        {"create_volume", R"({"id":"v1"})", "size_gb", "required"},
        {"create_volume", R"({"id":"v1","size_gb":0})", "size_gb", "must be an integer >= 1"},
        {"create_volume", R"({"id":"v1","size_gb":"10"})", "size_gb", "must be an integer"},
        {"create_volume", R"({"id":"v1","size_gb":1.5})", "size_gb", "must be an integer"},
        {"create_volume", R"({"id":"v1","size_gb":1,"typo":1})", "typo", "unknown field"},
        {"create_volume", R"({"id":"v1","size_gb":1,"name":7})", "name", "must be a string"},
        {"create_volume", R"({"id":"v1","size_gb":1,"project_id":[]})", "project_id", "must be a string"},
        {"create_volume", R"({"id":"../etc","size_gb":1})", "id", id_rule},
        {"create_volume", R"({"id":"","size_gb":1})", "id", "required"},
        {"create_volume", R"([1])", "input", "must be a JSON object"},
        {"create_volume", R"({"id":)", "input", "not JSON: "},
        {"delete_volume", R"({})", "id", "required"},
        {"delete_volume", R"({"id":5})", "id", "must be a string"},
        {"attach_volumes", R"({"volume_ids":[]})", "server_id", "required"},
        {"attach_volumes", R"({"server_id":"s1"})", "volume_ids", "required"},
        {"attach_volumes", R"({"server_id":"s1","volume_ids":"v1"})", "volume_ids",
         "must be an array of ids"},
        {"attach_volumes", R"({"server_id":"s1","volume_ids":[1]})", "volume_ids",
         "every element must be 1-128"},
        {"attach_volumes", R"({"server_id":"s1","volume_ids":[],"host":1})", "host", "must be a string"},
        {"detach_volumes", R"({"server_id":"s1"})", "volume_ids", "required"},
        {"detach_volumes", R"({"server_id":"s1","volume_ids":[],"host":"h"})", "host", "unknown field"},
    };
    for (const Case& c : cases) {
        Error e = Fails(c.action, c.input);
        EXPECT_EQ(e.code, ErrorCode::kInvalidArgument) << c.input;
        EXPECT_FALSE(e.retryable);
        EXPECT_EQ(e.field(), c.field) << c.input;
        EXPECT_TRUE(e.message.starts_with(std::string(c.field) + ": " + c.what))
            << c.input << " -> " << e.message;
    }
    EXPECT_TRUE(Inventory().empty());
    EXPECT_TRUE(records_.empty());
    // A whole-number double is an integer; null is an absent optional field.
    Ok("create_volume", R"({"id":"v1","size_gb":2.0,"name":null})");
    EXPECT_EQ(Volume("v1").at("size_gb"), 2);
}

TEST_F(VolumeTest, DeleteRemovesAndAbsentSucceeds) {
    Ok("create_volume", R"({"id":"v1","size_gb":1})");
    auto out = Ok("delete_volume", R"({"id":"v1"})");
    EXPECT_EQ(out.at("id"), "v1");
    EXPECT_EQ(out.at("deleted"), true);
    EXPECT_TRUE(Inventory().empty());
    EXPECT_TRUE(records_.empty());
    out = Ok("delete_volume", R"({"id":"v1"})");
    EXPECT_EQ(out.at("deleted"), false);
    // Deleted ids may be created again.
    Ok("create_volume", R"({"id":"v1","size_gb":3})");
    EXPECT_EQ(Volume("v1").at("size_gb"), 3);
}

TEST_F(VolumeTest, DeleteRefusedWhileAttached) {
    Ok("create_volume", R"({"id":"v1","size_gb":1})");
    Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v1"]})");
    Error e = Fails("delete_volume", R"({"id":"v1"})");
    EXPECT_EQ(e.code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(e.message.find("s1"), std::string::npos);
    EXPECT_EQ(Volume("v1").at("status"), "in-use");
    Ok("detach_volumes", R"({"server_id":"s1","volume_ids":["v1"]})");
    EXPECT_EQ(Ok("delete_volume", R"({"id":"v1"})").at("deleted"), true);
}

TEST_F(VolumeTest, AttachNamesDevicesPerServerAndIsIdempotent) {
    for (const char* id : {"v1", "v2", "v3"}) {
        Ok("create_volume", std::string(R"({"size_gb":1,"id":")") + id + "\"}");
    }
    auto out = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v1","v2"],"host":"h1"})");
    EXPECT_EQ(json::serialize(out),
              R"({"server_id":"s1","attachments":[{"volume_id":"v1","device":"/dev/vdb"},)"
              R"({"volume_id":"v2","device":"/dev/vdc"}]})");
    // Again, and with one more: the attached ones keep their devices.
    out = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v2","v1"]})");
    EXPECT_EQ(out.at("attachments").as_array()[0].at("device"), "/dev/vdc");
    EXPECT_EQ(out.at("attachments").as_array()[1].at("device"), "/dev/vdb");
    auto v1 = Volume("v1");
    EXPECT_EQ(v1.at("status"), "in-use");
    EXPECT_EQ(v1.at("server_id"), "s1");
    EXPECT_EQ(v1.at("device"), "/dev/vdb");
    EXPECT_EQ(v1.at("host"), "h1");
    // Another server starts at vdb.
    out = Ok("attach_volumes", R"({"server_id":"s2","volume_ids":["v3"]})");
    EXPECT_EQ(out.at("attachments").as_array()[0].at("device"), "/dev/vdb");
    // A detached device is reused first.
    Ok("detach_volumes", R"({"server_id":"s1","volume_ids":["v1"]})");
    Ok("create_volume", R"({"id":"v4","size_gb":1})");
    out = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v4","v1"]})");
    EXPECT_EQ(out.at("attachments").as_array()[0].at("device"), "/dev/vdb");
    EXPECT_EQ(out.at("attachments").as_array()[1].at("device"), "/dev/vdd");
}

TEST_F(VolumeTest, AttachIsAllOrNothing) {
    Ok("create_volume", R"({"id":"v1","size_gb":1})");
    Ok("create_volume", R"({"id":"v2","size_gb":1})");
    Ok("attach_volumes", R"({"server_id":"other","volume_ids":["v2"]})");
    const Records before = records_;

    Error e = Fails("attach_volumes", R"({"server_id":"s1","volume_ids":["v1","missing"]})");
    EXPECT_EQ(e.code, ErrorCode::kNotFound);
    EXPECT_NE(e.message.find("missing"), std::string::npos);
    EXPECT_EQ(Volume("v1").at("status"), "available");

    e = Fails("attach_volumes", R"({"server_id":"s1","volume_ids":["v1","v2"]})");
    EXPECT_EQ(e.code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(e.message.find("other"), std::string::npos);
    EXPECT_EQ(Volume("v1").at("status"), "available");
    EXPECT_EQ(Volume("v2").at("server_id"), "other");
    EXPECT_EQ(records_, before);

    auto out = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":[]})");
    EXPECT_TRUE(out.at("attachments").as_array().empty());
}

TEST_F(VolumeTest, DevicesPastVdz) {
    std::string ids;
    for (int i = 0; i < 27; ++i) {
        const std::string id = "v" + std::to_string(i);
        Ok("create_volume", R"({"size_gb":1,"id":")" + id + "\"}");
        ids += (i ? ",\"" : "\"") + id + "\"";
    }
    auto out = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":[)" + ids + "]}");
    const auto& a = out.at("attachments").as_array();
    ASSERT_EQ(a.size(), 27u);
    EXPECT_EQ(a[0].at("device"), "/dev/vdb");
    EXPECT_EQ(a[24].at("device"), "/dev/vdz");
    EXPECT_EQ(a[25].at("device"), "/dev/vdaa");
    EXPECT_EQ(a[26].at("device"), "/dev/vdab");
}

TEST_F(VolumeTest, DetachSkipsWhatIsNotAttachedThere) {
    Ok("create_volume", R"({"id":"v1","size_gb":1})");
    Ok("create_volume", R"({"id":"v2","size_gb":1})");
    Ok("create_volume", R"({"id":"v3","size_gb":1})");
    Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v1","v2"]})");
    Ok("attach_volumes", R"({"server_id":"s2","volume_ids":["v3"]})");
    auto out = Ok("detach_volumes", R"({"server_id":"s1","volume_ids":["v1","v3","nope","v2"]})");
    EXPECT_EQ(json::serialize(out), R"({"server_id":"s1","detached":["v1","v2"]})");
    EXPECT_EQ(Volume("v1").at("status"), "available");
    EXPECT_TRUE(Volume("v1").at("device").is_null());
    EXPECT_EQ(Volume("v3").at("server_id"), "s2");
    out = Ok("detach_volumes", R"({"server_id":"s1","volume_ids":["v1"]})");
    EXPECT_TRUE(out.at("detached").as_array().empty());
}

TEST_F(VolumeTest, LoadRebuildsFromRecords) {
    Ok("create_volume", R"({"id":"v1","size_gb":5,"name":"a","project_id":"p"})");
    Ok("create_volume", R"({"id":"v2","size_gb":6})");
    Ok("create_volume", R"({"id":"v3","size_gb":7})");
    Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v1","v2"],"host":"h"})");
    Ok("delete_volume", R"({"id":"v3"})");
    const std::string inventory = domain_->Inventory();

    auto reloaded = MakeVolumeDomain(*MakeVolumeDriver("sim", ""));
    ASSERT_TRUE(kit::test_service::LoadAll(*reloaded, records_));
    EXPECT_EQ(reloaded->Inventory(), inventory);
    // The attachments came back too: the next device of s1 is vdd, v1 cannot go elsewhere.
    domain_ = Domain(std::move(reloaded));
    Ok("create_volume", R"({"id":"v4","size_gb":1})");
    auto out = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v4"]})");
    EXPECT_EQ(out.at("attachments").as_array()[0].at("device"), "/dev/vdd");
    EXPECT_EQ(Fails("attach_volumes", R"({"server_id":"s9","volume_ids":["v1"]})").code,
              ErrorCode::kFailedPrecondition);
    EXPECT_EQ(Fails("create_volume", R"({"id":"v1","size_gb":6})").code, ErrorCode::kAlreadyExists);
}

TEST_F(VolumeTest, LoadRefusesBadRecords) {
    auto d = MakeVolumeDomain(*MakeVolumeDriver("sim", ""));
    EXPECT_FALSE(d->Load("volumes", "v1", "not json"));
    EXPECT_FALSE(d->Load("volumes", "v1", R"({"id":"v2","size_gb":1})"));
    EXPECT_FALSE(d->Load("volumes", "v1", R"({"id":"v1"})"));
    EXPECT_FALSE(d->Load("ports", "v1", R"({"id":"v1","size_gb":1})"));
    EXPECT_TRUE(d->Load("volumes", "v1", R"({"id":"v1","size_gb":1})"));
}

TEST_F(VolumeTest, GetAnswersTheVolumeOr404) {
    Ok("create_volume", R"({"id":"v1","size_gb":4})");
    EXPECT_EQ(kit::test_service::GetJson(*domain_, "/v1/volumes/v1").at("volume"), Volume("v1"));
    EXPECT_EQ(kit::test_service::GetJson(*domain_, "/v1/volumes/zzz", 404),
              json::parse(R"({"code":"not_found","message":"no volume 'zzz'","retryable":false})"));
    EXPECT_FALSE(kit::test_service::Get(*domain_, "/v1/ports/v1"));
}

TEST(VolumeDriverTest, UnknownDriverIsRefused) {
    auto d = MakeVolumeDriver("ceph", "/tmp");
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
    EXPECT_FALSE(MakeVolumeDriver("file", ""));
}

class FileDriverTest : public VolumeTest {
protected:
    void SetUp() override {
        dir_ = root_ / "volumes";  // made by the driver
        auto driver = MakeVolumeDriver("file", dir_);
        ASSERT_TRUE(driver) << driver.error().ToString();
        EXPECT_EQ((*driver)->name(), "file");
        domain_ = Domain(MakeVolumeDomain(std::move(*driver)));
    }
    const cogs::testing::TempDir root_{"cogs-volume-test"};
    std::string dir_;
};

// What blkid says the file holds ("" if it cannot tell).
std::string FileSystemOf(const std::string& path) {
    auto out = runtime::RunCommand({"/usr/sbin/blkid", "-p", "-o", "value", "-s", "TYPE", path},
                                   SteadyClock::now() + std::chrono::seconds(30));
    if (!out || out->exit_status != 0) {
        return "";
    }
    std::string type = out->output;
    while (!type.empty() && (type.back() == '\n' || type.back() == ' ')) {
        type.pop_back();
    }
    return type;
}

TEST_F(FileDriverTest, MakesASparseExt4FileOfTheRightSizeAndRemovesIt) {
    auto out = Ok("create_volume", R"({"id":"v1","size_gb":10})");
    const std::string path = dir_ + "/v1.img";
    EXPECT_EQ(out.at("path"), path.c_str());
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, int64_t{10} << 30);
    // Sparse: only the file system's metadata is written (a few MiB of 10 GiB).
    EXPECT_LT(st.st_blocks * 512, 64 << 20);
    if (::access("/usr/sbin/blkid", X_OK) == 0) {
        EXPECT_EQ(FileSystemOf(path), "ext4");
    }

    auto v = Volume("v1");
    EXPECT_EQ(v.at("path"), path.c_str());
    ASSERT_TRUE(v.contains("allocated_bytes"));
    EXPECT_LT(v.at("allocated_bytes").as_int64(), 64 << 20);

    // The attach answer says where the data is (the host mounts it from there).
    auto attached = Ok("attach_volumes", R"({"server_id":"s1","volume_ids":["v1"],"host":"h1"})");
    EXPECT_EQ(attached.at("attachments"),
              json::parse(R"([{"volume_id":"v1","device":"/dev/vdb","path":")" + path + R"("}])"));
    Ok("detach_volumes", R"({"server_id":"s1","volume_ids":["v1"]})");

    Ok("delete_volume", R"({"id":"v1"})");
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_EQ(Ok("delete_volume", R"({"id":"v1"})").at("deleted"), false);
}

TEST_F(FileDriverTest, AnExistingFileIsReused) {
    // A file left by a create whose record was never committed (a crash in between).
    auto driver = *MakeVolumeDriver("file", dir_);
    ASSERT_TRUE(driver->Create("v1", 2));
    ASSERT_TRUE(driver->Create("v1", 2));  // the right size: fine
    ASSERT_TRUE(driver->Create("v2", 1));  // the wrong size: remade
    // A leftover that is not a file system (a create that ended before mkfs) is formatted again.
    ASSERT_TRUE(runtime::WriteFileAtomic(dir_ + "/v2.img", std::string(4096, 'x')));
    Ok("create_volume", R"({"id":"v1","size_gb":2})");
    Ok("create_volume", R"({"id":"v2","size_gb":3})");
    EXPECT_EQ(std::filesystem::file_size(dir_ + "/v1.img"), uint64_t{2} << 30);
    EXPECT_EQ(std::filesystem::file_size(dir_ + "/v2.img"), uint64_t{3} << 30);
    if (::access("/usr/sbin/blkid", X_OK) == 0) {
        EXPECT_EQ(FileSystemOf(dir_ + "/v2.img"), "ext4");
    }
    EXPECT_TRUE(driver->Delete("nothing-here"));
}

// ---- served by the kit: the records it stores bring the domain back after a restart ----

class VolumeServiceTest : public FileDriverTest {
protected:
    void StartService() {
        service_.reset();
        auto driver = MakeVolumeDriver("file", dir_);
        ASSERT_TRUE(driver);
        kit::ServiceOptions options;
        options.state_path = root_ / "state.db";
        auto s = kit::DomainService::Create(io_, MakeVolumeDomain(std::move(*driver)), options);
        ASSERT_TRUE(s) << s.error().ToString();
        service_ = std::move(*s);
    }

    Result<workflow::ActionReply> Call(std::string action, std::string key, std::string input) {
        return kit::test_service::Call(io_, *service_, std::move(action), std::move(key), std::move(input));
    }
    std::string ServedInventory() { return kit::test_service::GetBody(*service_, "/v1/inventory"); }

    boost::asio::io_context io_;
    std::unique_ptr<kit::DomainService> service_;
};

TEST_F(VolumeServiceTest, StateSurvivesARestartAndKeysAreAnsweredFromTheLedger) {
    StartService();
    auto created = Call("create_volume", "wf1/volume/do", R"({"id":"v1","size_gb":3})");
    ASSERT_TRUE(created) << created.error().ToString();
    ASSERT_TRUE(Call("create_volume", "wf1/volume2/do", R"({"id":"v2","size_gb":1})"));
    ASSERT_TRUE(Call("attach_volumes", "wf1/attach/do", R"({"server_id":"s1","volume_ids":["v1","v2"]})"));
    ASSERT_TRUE(Call("detach_volumes", "wf1/attach/undo", R"({"server_id":"s1","volume_ids":["v2"]})"));
    const std::string before = ServedInventory();

    StartService();  // a new process on the same state file and volume directory
    EXPECT_EQ(ServedInventory(), before);
    auto resent = Call("create_volume", "wf1/volume/do", R"({"id":"v1","size_gb":3})");
    ASSERT_TRUE(resent);
    EXPECT_EQ(resent->output, created->output);
    // v1 is still attached to s1 (vdb), so v2 gets vdc again.
    auto attach = Call("attach_volumes", "wf2/attach/do", R"({"server_id":"s1","volume_ids":["v2"]})");
    ASSERT_TRUE(attach);
    EXPECT_EQ(json::parse(attach->output).at("attachments").as_array()[0].at("device"), "/dev/vdc");
    // The compensation of a create removes the file.
    ASSERT_TRUE(Call("detach_volumes", "wf2/attach/undo", R"({"server_id":"s1","volume_ids":["v2"]})"));
    auto deleted = Call("delete_volume", "wf1/volume2/undo", R"({"id":"v2"})");
    ASSERT_TRUE(deleted) << deleted.error().ToString();
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/v2.img"));
    EXPECT_TRUE(std::filesystem::exists(dir_ + "/v1.img"));
    service_.reset();
    io_.restart();
    io_.poll();
}

}  // namespace
}  // namespace cogs::services::volume
