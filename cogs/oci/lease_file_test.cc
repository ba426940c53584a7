// The lease file's format (no root needed): what a writer puts there is what a reader gets back,
// and everything else reads as no lease.
#include "cogs/oci/lease_file.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "cogs/runtime/files.h"

namespace cogs::oci {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class OciLeaseFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "cogs-lease-test-XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/host-1";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string dir_;
    std::string path_;
};

TEST_F(OciLeaseFileTest, WhatIsWrittenIsReadBackAndReplacedWhole) {
    const Duration end = BootTimeNow() + 3s;
    ASSERT_TRUE(WriteLeaseFile(path_, end));
    auto read = ReadLeaseFile(path_);
    ASSERT_TRUE(read) << read.error().ToString();
    EXPECT_EQ(*read, end);
    ASSERT_TRUE(WriteLeaseFile(path_, end + 1s));
    EXPECT_EQ(ReadLeaseFile(path_).value_or(Duration::zero()), end + 1s);
    // Written under a temporary name, renamed: nothing else is left in the directory.
    size_t files = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_)) {
        ++files;
    }
    EXPECT_EQ(files, 1u);
}

TEST_F(OciLeaseFileTest, AnythingElseIsNoLease) {
    auto missing = ReadLeaseFile(path_);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    auto boot_id = runtime::ReadFile("/proc/sys/kernel/random/boot_id");
    ASSERT_TRUE(boot_id);
    boot_id->pop_back();  // its newline
    for (const std::string text :
         {std::string(""), std::string("12345\n"), "cogs-lease " + *boot_id + "\n",
          "cogs-lease " + *boot_id + " 12x\n", "cogs-lease " + *boot_id + " 123",
          "cogs-lease " + *boot_id + " 123 456\n",
          // Another boot's end says nothing about this boot's clock.
          std::string("cogs-lease 00000000-0000-0000-0000-000000000000 999999999999999999\n")}) {
        ASSERT_TRUE(runtime::WriteFileAtomic(path_, text));
        auto read = ReadLeaseFile(path_);
        ASSERT_FALSE(read) << "'" << text << "' read as " << read->count();
        EXPECT_EQ(read.error().code, ErrorCode::kInvalidArgument) << text;
    }
    ASSERT_TRUE(runtime::WriteFileAtomic(path_, "cogs-lease " + *boot_id + " 123\n"));
    EXPECT_EQ(ReadLeaseFile(path_).value_or(Duration::zero()), Duration(123));
    EXPECT_FALSE(WriteLeaseFile(dir_ + "/no/such/dir", 1s)) << "the directory must exist";
}

}  // namespace
}  // namespace cogs::oci
