#include "cogs/oci/internal/console_log.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "cogs/runtime/files.h"
#include "test/support/temp_dir.h"

namespace cogs::oci::internal {
namespace {

namespace fs = std::filesystem;

int64_t SizeOf(const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    return ec ? 0 : static_cast<int64_t>(size);
}

TEST(OciConsoleLogTest, RotatesAtTheBoundAndKeepsTwoFiles) {
    const cogs::testing::TempDir dir("cogs-oci-console-test");
    const std::string path = dir / "console.log";
    auto log = ConsoleLog::Open(path, 10);
    ASSERT_TRUE(log) << log.error().ToString();
    log->Write("0123456");
    EXPECT_EQ(*runtime::ReadFile(path), "0123456");
    log->Write("789abc");  // 13 bytes: the first 10 fill the file, the rest start the next one
    EXPECT_EQ(*runtime::ReadFile(path + ".1"), "0123456789");
    EXPECT_EQ(*runtime::ReadFile(path), "abc");
    EXPECT_EQ(ReadConsole(path, 100), "0123456789abc");
    EXPECT_EQ(ReadConsole(path, 5), "89abc");
    EXPECT_EQ(ReadConsole(path, 4), "9abc");
}

TEST(OciConsoleLogTest, NeverMoreThanTwiceTheBound) {
    const cogs::testing::TempDir dir("cogs-oci-console-test");
    const std::string path = dir / "console.log";
    constexpr int64_t kMax = 4096;
    auto log = ConsoleLog::Open(path, kMax);
    ASSERT_TRUE(log);
    std::string chunk;
    for (int i = 0; i <= 20000; ++i) {
        chunk =
            std::to_string(i) + (i % 7 == 0 ? std::string(9000, 'x') : "\n");  // some larger than the bound
        log->Write(chunk);
        ASSERT_LE(SizeOf(path), kMax);
        ASSERT_LE(SizeOf(path + ".1"), kMax);
    }
    EXPECT_EQ(log->dropped_bytes(), 0);
    // The newest output is kept: the text ends with the last chunk.
    EXPECT_TRUE(ReadConsole(path, -1).ends_with("20000\n"));
}

TEST(OciConsoleLogTest, ReopenAppendsAndRotatesAFileOverASmallerBound) {
    const cogs::testing::TempDir dir("cogs-oci-console-test");
    const std::string path = dir / "console.log";
    {
        auto log = ConsoleLog::Open(path, 100);
        ASSERT_TRUE(log);
        log->Write("first run\n");
    }
    {
        auto log = ConsoleLog::Open(path, 100);
        ASSERT_TRUE(log);
        EXPECT_EQ(log->size(), 10);
        log->Write("second run\n");
    }
    EXPECT_EQ(*runtime::ReadFile(path), "first run\nsecond run\n");
    auto smaller = ConsoleLog::Open(path, 8);
    ASSERT_TRUE(smaller);
    EXPECT_EQ(smaller->size(), 0);
    EXPECT_EQ(*runtime::ReadFile(path + ".1"), "first run\nsecond run\n");
    EXPECT_FALSE(ConsoleLog::Open(path, 0));
    EXPECT_FALSE(ConsoleLog::Open(dir / "no/such/dir/console.log", 10));
}

}  // namespace
}  // namespace cogs::oci::internal
