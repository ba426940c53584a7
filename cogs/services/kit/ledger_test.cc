// The ledger's record in its two forms: the JSON of GET /v1/ledger and the durable rows, in a
// LedgerFile (the simulated service's, including files of its older layout) and in a DomainService's
// state file (as released).
#include "cogs/services/kit/ledger.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cogs/services/kit/internal/state_db.h"
#include "cogs/sqlite/db.h"
#include "test/support/temp_dir.h"

namespace cogs::services::kit {
namespace {

class LedgerTest : public ::testing::Test {
protected:
    std::string path() const { return dir_ / "ledger.db"; }

    // Writes `sql` into the file at path() with a bare connection, as an older program would have.
    void Write(const std::string& sql) {
        auto db = sqlite::Db::Open(path(), {});
        ASSERT_TRUE(db) << db.error().ToString();
        Status s = (*db)->Exec(sql);
        ASSERT_TRUE(s) << s.error().ToString();
    }

    const cogs::testing::TempDir dir_{"cogs-ledger-test"};
};

LedgerEntry Entry(uint64_t seq, std::string key, Outcome outcome, std::string output) {
    LedgerEntry e;
    e.seq = seq;
    e.key = std::move(key);
    e.action = "allocate_ip";
    e.kind =
        outcome == Outcome::kCompensated || outcome == Outcome::kTombstone ? CallKind::kUndo : CallKind::kDo;
    e.outcome = outcome;
    e.output = std::move(output);
    e.at_us = 1'000'000 + static_cast<int64_t>(seq);
    return e;
}

// The fields a reader of the ledger sees, in one line per entry.
std::vector<std::string> Lines(const std::vector<LedgerEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) {
        out.push_back(std::to_string(e.seq) + " " + e.key + " " + e.action + " " +
                      std::string(ToString(e.kind)) + " " + std::string(ToString(e.outcome)) + " " +
                      e.output + " code=" + (e.code ? std::string(cogs::ToString(*e.code)) : "-") + " " +
                      std::to_string(e.at_us) + " " + std::to_string(e.done_at_us));
    }
    return out;
}

std::vector<LedgerEntry> Sample() {
    std::vector<LedgerEntry> entries = {
        Entry(1, "w/a/do", Outcome::kApplied, R"({"ip":"10.0.0.1"})"),
        Entry(2, "w/b/do", Outcome::kRejected, "subnet exhausted"),
        Entry(3, "w/c/do", Outcome::kRejected, "always fails"),
        Entry(4, "w/a/undo", Outcome::kCompensated, R"({"compensated":true})"),
        Entry(5, "w/d/undo", Outcome::kTombstone, R"({"compensated":false})"),
    };
    entries[1].code = ErrorCode::kResourceExhausted;
    entries[0].done_at_us = 2'000'000;
    return entries;
}

TEST(LedgerJson, IsTheDocumentedShape) {
    EXPECT_EQ(LedgerToJson(Sample()),
              R"([{"seq":1,"key":"w/a/do","action":"allocate_ip","kind":"do","outcome":"applied",)"
              R"("output":{"ip":"10.0.0.1"},"at_us":1000001,"done_at_us":2000000},)"
              R"({"seq":2,"key":"w/b/do","action":"allocate_ip","kind":"do","outcome":"rejected",)"
              R"("error":"subnet exhausted","code":"resource_exhausted","at_us":1000002},)"
              R"({"seq":3,"key":"w/c/do","action":"allocate_ip","kind":"do","outcome":"rejected",)"
              R"("error":"always fails","at_us":1000003},)"
              R"({"seq":4,"key":"w/a/undo","action":"allocate_ip","kind":"undo","outcome":"compensated",)"
              R"("output":{"compensated":true},"at_us":1000004},)"
              R"({"seq":5,"key":"w/d/undo","action":"allocate_ip","kind":"undo","outcome":"tombstone",)"
              R"("output":{"compensated":false},"at_us":1000005}])");
    EXPECT_EQ(LedgerToJson({}), "[]");
}

// The rule of LedgerRetention: nothing younger than min_age goes, whatever the count; past it, the
// oldest beyond keep_at_most go; past keep_for, everything goes. A long action ages from its end.
TEST(LedgerPruner, TakesTheOldestByAgeAndCountNeverOneYoungerThanMinAge) {
    using namespace std::chrono_literals;
    constexpr int64_t kMin = 60'000'000;  // a minute in µs
    LedgerPruner p(LedgerRetention{10h, 3, 1h}, nullptr, "test");
    for (int i = 0; i < 6; ++i) {
        p.Add("k" + std::to_string(i), i * kMin, i == 1 ? 200 * kMin : 0);  // k1: a long action
    }
    // 30 minutes in: all are younger than min_age, though the count is over.
    EXPECT_TRUE(p.Take(30 * kMin, 6).empty());
    // 63 minutes in: k0..k3 are past min_age; the count takes k0, then k1 is still running (it
    // ends at minute 200) and holds back the ones behind it.
    EXPECT_EQ(p.Take(63 * kMin, 6), std::vector<std::string>{"k0"});
    // Minute 261 (k1 ended an hour ago): the count takes k1 and k2; three stay.
    EXPECT_EQ(p.Take(261 * kMin, 5), (std::vector<std::string>{"k1", "k2"}));
    EXPECT_TRUE(p.Take(261 * kMin, 3).empty());
    // Past keep_for, the rest go, `limit` at a time.
    EXPECT_EQ(p.Take(11 * 60 * kMin, 3, 2), (std::vector<std::string>{"k3", "k4"}));
    EXPECT_EQ(p.Take(11 * 60 * kMin, 1, 2), std::vector<std::string>{"k5"});
    // An entry whose write failed is forgotten.
    p.Add("lost", 0, 0);
    p.DropNewest(1);
    EXPECT_TRUE(p.Take(100 * 60 * kMin, 1).empty());
}

TEST_F(LedgerTest, AFileKeepsEveryFieldAcrossAReopen) {
    {
        auto file = LedgerFile::Open(path());
        ASSERT_TRUE(file) << file.error().ToString();
        auto entries = Sample();
        ASSERT_TRUE((*file)->Append({entries[0], entries[1]}));
        ASSERT_TRUE((*file)->Append({entries[2], entries[3], entries[4]}));
    }
    auto file = LedgerFile::Open(path());
    ASSERT_TRUE(file) << file.error().ToString();
    auto loaded = (*file)->LoadAll();
    ASSERT_TRUE(loaded) << loaded.error().ToString();
    EXPECT_EQ(Lines(*loaded), Lines(Sample()));
}

TEST_F(LedgerTest, AppendIsAllOrNothing) {
    auto file = LedgerFile::Open(path());
    ASSERT_TRUE(file);
    auto entries = Sample();
    ASSERT_TRUE((*file)->Append({entries[0]}));
    Status s = (*file)->Append({entries[1], entries[0]});  // the second key is there already
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kAlreadyExists);
    auto loaded = (*file)->LoadAll();
    ASSERT_TRUE(loaded);
    EXPECT_EQ(Lines(*loaded), Lines({entries[0]}));
    ASSERT_TRUE((*file)->Append({entries[1]}));
}

// A ledger as the simulated service wrote it before the record was shared: no code column, no
// schema_version table.
TEST_F(LedgerTest, AFileOfTheSimsOlderLayoutOpensWithItsEntries) {
    Write(R"sql(
        PRAGMA journal_mode = WAL;
        CREATE TABLE ledger (key TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, action TEXT NOT NULL,
            kind TEXT NOT NULL, outcome TEXT NOT NULL, output TEXT NOT NULL, at_us INTEGER NOT NULL,
            done_at_us INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
        INSERT INTO ledger VALUES('w/a/do', 1, 'allocate_ip', 'do', 'applied', '{"ip":"10.0.0.1"}', 1000001, 2000000);
        INSERT INTO ledger VALUES('w/c/do', 3, 'allocate_ip', 'do', 'rejected', 'always fails', 1000003, 0);
        INSERT INTO ledger VALUES('w/d/undo', 5, 'allocate_ip', 'undo', 'tombstone', '{"compensated":false}',
            1000005, 0);
    )sql");
    auto file = LedgerFile::Open(path());
    ASSERT_TRUE(file) << file.error().ToString();
    auto loaded = (*file)->LoadAll();
    ASSERT_TRUE(loaded) << loaded.error().ToString();
    auto sample = Sample();
    EXPECT_EQ(Lines(*loaded), Lines({sample[0], sample[2], sample[4]}));

    // It takes entries of the shared layout from now on, refusal codes included.
    ASSERT_TRUE((*file)->Append({sample[1]}));
    file->reset();
    auto db = sqlite::Db::Open(path(), {});
    ASSERT_TRUE(db);
    EXPECT_EQ((*db)->QueryInt("SELECT max(version) FROM schema_version"), 2);
    EXPECT_EQ((*db)->QueryInt("SELECT count(*) FROM ledger WHERE code = 'resource_exhausted'"), 1);
}

TEST_F(LedgerTest, AFileOfANewerSchemaIsRefused) {
    ASSERT_TRUE(LedgerFile::Open(path()));
    Write("INSERT INTO schema_version(version) VALUES(3)");
    auto file = LedgerFile::Open(path());
    ASSERT_FALSE(file);
    EXPECT_EQ(file.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(file.error().message.find("schema version 3"), std::string::npos) << file.error().message;
}

// A DomainService's state file as released (schema version 1, kept in a schema_version table).
TEST_F(LedgerTest, AStateFileAsReleasedOpensWithItsLedgerAndRecords) {
    Write(R"sql(
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        CREATE TABLE ledger (key TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, action TEXT NOT NULL,
            kind TEXT NOT NULL, outcome TEXT NOT NULL, output TEXT NOT NULL, code TEXT NOT NULL DEFAULT '',
            at_us INTEGER NOT NULL, done_at_us INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
        CREATE TABLE records (tbl TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL,
            PRIMARY KEY (tbl, id)) WITHOUT ROWID;
        INSERT INTO schema_version(version) VALUES(1);
        INSERT INTO ledger VALUES('w/a/do', 1, 'allocate_ip', 'do', 'applied', '{"ip":"10.0.0.1"}', '',
            1000001, 2000000);
        INSERT INTO ledger VALUES('w/b/do', 2, 'allocate_ip', 'do', 'rejected', 'subnet exhausted',
            'resource_exhausted', 1000002, 0);
        INSERT INTO records VALUES('ports', 'p1', '{"ip":"10.0.0.1"}');
    )sql");
    auto state = internal::StateDb::Open(path());
    ASSERT_TRUE(state) << state.error().ToString();
    auto ledger = (*state)->LoadLedger();
    ASSERT_TRUE(ledger) << ledger.error().ToString();
    auto sample = Sample();
    EXPECT_EQ(Lines(*ledger), Lines({sample[0], sample[1]}));
    std::vector<std::string> records;
    ASSERT_TRUE(
        (*state)->ForEachRecord([&](std::string_view table, std::string_view id, std::string_view json) {
            records.push_back(std::string(table) + "/" + std::string(id) + "=" + std::string(json));
            return Ok();
        }));
    EXPECT_EQ(records, std::vector<std::string>{R"(ports/p1={"ip":"10.0.0.1"})"});

    // A newer version in its table is refused, as before.
    state->reset();
    Write("INSERT INTO schema_version(version) VALUES(2)");
    auto newer = internal::StateDb::Open(path());
    ASSERT_FALSE(newer);
    EXPECT_EQ(newer.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace cogs::services::kit
