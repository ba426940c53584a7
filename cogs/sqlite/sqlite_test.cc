#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cogs/sqlite/db.h"
#include "test/support/temp_dir.h"

namespace cogs::sqlite {
namespace {

class SqliteTest : public ::testing::Test {
protected:
    std::string path() const { return dir_ / "test.db"; }

    std::unique_ptr<Db> Open(Options options = {}) {
        auto db = Db::Open(path(), options);
        EXPECT_TRUE(db) << db.error().ToString();
        return db ? std::move(*db) : nullptr;
    }

    const cogs::testing::TempDir dir_{"cogs-sqlite-test"};
};

std::vector<std::string> Names(Db& db) {
    std::vector<std::string> out;
    auto q = db.Prepare("SELECT name FROM people ORDER BY id");
    EXPECT_TRUE(q) << q.error().ToString();
    Status s = q->ForEachRow([&] { out.push_back(q->ColumnText(0)); });
    EXPECT_TRUE(s) << s.error().ToString();
    return out;
}

TEST_F(SqliteTest, BindsAndReadsTypedValuesByPositionNameAndOrder) {
    auto db = Open();
    ASSERT_TRUE(db->Exec("CREATE TABLE t(i INTEGER, s TEXT, n TEXT)"));
    const std::string with_nul("a\0b", 3);
    {
        auto insert = db->Prepare("INSERT INTO t(i, s, n) VALUES(?1, ?2, ?3)");
        ASSERT_TRUE(insert);
        insert->Bind(1, int64_t{-9'000'000'000}).Bind(2, with_nul).BindNull(3);
        ASSERT_TRUE(insert->Run());
        insert->Int(7).Text("").Text("x");  // in order, from 1 again after Run's reset
        ASSERT_TRUE(insert->Run());
    }
    {
        auto named = db->Prepare("INSERT INTO t(i, s, n) VALUES(:i, @s, $n)");
        ASSERT_TRUE(named);
        EXPECT_EQ(named->ParamIndex("@s"), 2);
        named->Bind(":i", 42).Bind("@s", "named").Bind("$n", "y");
        ASSERT_TRUE(named->Run());
    }
    auto q = db->Prepare("SELECT i, s, n FROM t ORDER BY rowid");
    ASSERT_TRUE(q);
    ASSERT_EQ(q->Step(), true);
    EXPECT_EQ(q->ColumnInt(0), -9'000'000'000);
    EXPECT_EQ(q->ColumnText(1), with_nul);
    EXPECT_TRUE(q->ColumnIsNull(2));
    EXPECT_EQ(q->ColumnText(2), "");
    ASSERT_EQ(q->Step(), true);
    EXPECT_EQ(q->ColumnInt(0), 7);
    EXPECT_FALSE(q->ColumnIsNull(1));  // an empty view binds '', not NULL
    EXPECT_EQ(q->ColumnView(1), "");
    EXPECT_EQ(q->ColumnView(2), "x");
    ASSERT_EQ(q->Step(), true);
    EXPECT_EQ(q->ColumnInt(0), 42);
    EXPECT_EQ(q->ColumnText(1), "named");
    EXPECT_EQ(q->Step(), false);
}

TEST_F(SqliteTest, AStatementIsReusedAcrossResets) {
    auto db = Open();
    ASSERT_TRUE(db->Exec("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL)"));
    auto insert = db->Prepare("INSERT INTO people(id, name) VALUES(?1, ?2)", Lifetime::kPersistent);
    ASSERT_TRUE(insert);
    const std::vector<std::string> names = {"ada", "brian", "carla"};
    for (size_t i = 0; i < names.size(); ++i) {
        insert->Int(static_cast<int64_t>(i) + 1).Text(names[i]);
        ASSERT_TRUE(insert->Run());
        EXPECT_EQ(db->Changes(), 1);
    }
    EXPECT_EQ(Names(*db), names);

    auto by_id = db->Prepare("SELECT name FROM people WHERE id >= ?1 ORDER BY id", Lifetime::kPersistent);
    ASSERT_TRUE(by_id);
    for (int64_t from : {2, 1, 3}) {
        Use q(*by_id);  // stepped one row only: Use resets it at the end of each round
        q->Int(from);
        ASSERT_EQ(q->Step(), true);
        EXPECT_EQ(q->ColumnText(0), names[static_cast<size_t>(from) - 1]);
    }
    // Reset keeps the bindings: the same query runs again from its first row.
    by_id->Bind(1, 2);
    ASSERT_EQ(by_id->Step(), true);
    ASSERT_EQ(by_id->Step(), true);
    EXPECT_EQ(by_id->ColumnText(0), "carla");
    by_id->Reset();
    ASSERT_EQ(by_id->Step(), true);
    EXPECT_EQ(by_id->ColumnText(0), "brian");
}

TEST_F(SqliteTest, ForEachRowStopsAtTheFirstErrorOfItsCallback) {
    auto db = Open();
    ASSERT_TRUE(
        db->Exec("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                 "INSERT INTO people VALUES(1, 'ada'), (2, 'brian'), (3, 'carla')"));
    auto q = db->Prepare("SELECT name FROM people ORDER BY id");
    ASSERT_TRUE(q);
    std::vector<std::string> seen;
    Status s = q->ForEachRow([&]() -> Status {
        seen.push_back(q->ColumnText(0));
        if (seen.size() == 2) {
            return MakeError(ErrorCode::kInvalidArgument, "enough");
        }
        return Ok();
    });
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().message, "enough");
    EXPECT_EQ(seen, (std::vector<std::string>{"ada", "brian"}));
}

TEST_F(SqliteTest, TransactKeepsAllOrNothing) {
    auto db = Open();
    ASSERT_TRUE(db->Exec("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL)"));
    Status failed = db->Transact([&]() -> Status {
        COGS_TRY(db->Exec("INSERT INTO people VALUES(1, 'ada')"));
        return MakeError(ErrorCode::kUnavailable, "the body failed");
    });
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().message, "the body failed");
    EXPECT_FALSE(db->InTransaction());
    EXPECT_TRUE(Names(*db).empty());

    ASSERT_TRUE(db->Transact([&] { return db->Exec("INSERT INTO people VALUES(1, 'ada')"); }));
    EXPECT_EQ(Names(*db), std::vector<std::string>{"ada"});
}

TEST_F(SqliteTest, MapsARealConstraintViolation) {
    auto db = Open();
    ASSERT_TRUE(db->Exec("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)"));
    ASSERT_TRUE(db->Exec("INSERT INTO people VALUES(1, 'ada')"));
    auto insert = db->Prepare("INSERT INTO people(id, name) VALUES(?1, ?2)");
    ASSERT_TRUE(insert);

    insert->Int(2).Text("ada");
    Status duplicate = insert->Run();
    ASSERT_FALSE(duplicate);
    EXPECT_EQ(duplicate.error().code, ErrorCode::kAlreadyExists);
    EXPECT_FALSE(duplicate.error().retryable);
    EXPECT_NE(duplicate.error().message.find(path()), std::string::npos) << duplicate.error().message;
    EXPECT_NE(duplicate.error().message.find("INSERT INTO people"), std::string::npos)
        << duplicate.error().message;
    EXPECT_NE(duplicate.error().message.find("UNIQUE constraint failed"), std::string::npos)
        << duplicate.error().message;

    insert->Int(1).Text("brian");
    EXPECT_EQ(insert->Run().error().code, ErrorCode::kAlreadyExists);  // the primary key

    insert->Int(3).BindNull(2);
    Status null_name = insert->Run();
    ASSERT_FALSE(null_name);
    EXPECT_EQ(null_name.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(null_name.error().message.find("NOT NULL constraint failed"), std::string::npos);

    // The statement is usable again after a failure.
    insert->Int(3).Text("carla");
    EXPECT_TRUE(insert->Run());
    EXPECT_EQ(Names(*db), (std::vector<std::string>{"ada", "carla"}));
}

TEST_F(SqliteTest, MapsARealLockedDatabaseToRetryableUnavailable) {
    Options options;
    options.wal = true;
    auto mine = Open(options);
    ASSERT_TRUE(mine->Exec("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL)"));
    auto other = Open(options);
    ASSERT_TRUE(other->Exec("BEGIN IMMEDIATE; INSERT INTO people VALUES(1, 'ada')"));

    Status busy = mine->Exec("INSERT INTO people VALUES(2, 'brian')");  // busy timeout 0: no wait
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(busy.error().retryable);
    EXPECT_NE(busy.error().message.find(path()), std::string::npos) << busy.error().message;
    EXPECT_NE(busy.error().message.find("locked"), std::string::npos) << busy.error().message;
    Status transact = mine->Transact([] { return Ok(); });
    ASSERT_FALSE(transact);
    EXPECT_EQ(transact.error().code, ErrorCode::kUnavailable);

    ASSERT_TRUE(other->Exec("COMMIT"));
    ASSERT_TRUE(mine->Exec("INSERT INTO people VALUES(2, 'brian')"));
    EXPECT_EQ(Names(*mine), (std::vector<std::string>{"ada", "brian"}));
}

TEST_F(SqliteTest, OpenFailuresAreMapped) {
    auto missing_dir = Db::Open(dir_ / "no/such/dir/x.db", {});
    ASSERT_FALSE(missing_dir);
    EXPECT_EQ(missing_dir.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(missing_dir.error().message.find("/no/such/dir/x.db: open"), std::string::npos)
        << missing_dir.error().message;

    Options no_create;
    no_create.create = false;
    EXPECT_EQ(Db::Open(path(), no_create).error().code, ErrorCode::kUnavailable);

    std::ofstream(path()) << std::string(4096, 'x');  // not a database
    Options wal;
    wal.wal = true;
    auto garbage = Db::Open(path(), wal);
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::kInternal);
    EXPECT_NE(garbage.error().message.find("not a database"), std::string::npos) << garbage.error().message;
}

TEST_F(SqliteTest, OpenSetsThePragmasItIsGiven) {
    Options options;
    options.wal = true;
    options.synchronous = Synchronous::kNormal;
    options.busy_timeout_ms = 1234;
    options.pragmas = {"cache_size = -2048"};
    auto db = Open(options);
    EXPECT_EQ(db->QueryInt("PRAGMA synchronous"), 1);
    EXPECT_EQ(db->QueryInt("PRAGMA busy_timeout"), 1234);
    EXPECT_EQ(db->QueryInt("PRAGMA cache_size"), -2048);
    auto mode = db->Prepare("PRAGMA journal_mode");
    ASSERT_TRUE(mode);
    ASSERT_EQ(mode->Step(), true);
    EXPECT_EQ(mode->ColumnText(0), "wal");

    Options reader;
    reader.create = false;
    reader.query_only = true;
    auto ro = Open(reader);
    Status write = ro->Exec("CREATE TABLE t(x)");
    ASSERT_FALSE(write);
    EXPECT_NE(write.error().message.find("readonly"), std::string::npos) << write.error().message;
}

// ---- Migrations

constexpr Migration kSteps[] = {
    {1, "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"},
    {2, "ALTER TABLE people ADD COLUMN city TEXT NOT NULL DEFAULT 'unknown';"},
};

Schema Of(std::span<const Migration> steps, std::string_view version_table = {}) {
    return Schema{"people", steps, version_table};
}

class MigrationTest : public SqliteTest, public ::testing::WithParamInterface<std::string_view> {
protected:
    Schema Steps(size_t n) const { return Of(std::span<const Migration>(kSteps).first(n), GetParam()); }
};

TEST_P(MigrationTest, BuildsANewFileFromScratch) {
    auto db = Open();
    EXPECT_EQ(SchemaVersion(*db, Steps(2)), 0);
    ASSERT_TRUE(Migrate(*db, Steps(2)));
    EXPECT_EQ(SchemaVersion(*db, Steps(2)), 2);
    ASSERT_TRUE(db->Exec("INSERT INTO people(id, name) VALUES(1, 'ada')"));
    EXPECT_EQ(db->QueryInt("SELECT count(*) FROM people WHERE city = 'unknown'"), 1);
    // Again: nothing to do.
    ASSERT_TRUE(Migrate(*db, Steps(2)));
    EXPECT_EQ(SchemaVersion(*db, Steps(2)), 2);
}

TEST_P(MigrationTest, BringsAnOlderFileUpKeepingItsRows) {
    {
        auto db = Open();
        ASSERT_TRUE(Migrate(*db, Steps(1)));
        ASSERT_TRUE(db->Exec("INSERT INTO people(id, name) VALUES(1, 'ada')"));
    }
    auto db = Open();
    EXPECT_EQ(SchemaVersion(*db, Steps(2)), 1);
    ASSERT_TRUE(Migrate(*db, Steps(2)));
    EXPECT_EQ(SchemaVersion(*db, Steps(2)), 2);
    EXPECT_EQ(Names(*db), std::vector<std::string>{"ada"});
    EXPECT_EQ(db->QueryInt("SELECT count(*) FROM people WHERE city = 'unknown'"), 1);
}

TEST_P(MigrationTest, RefusesAFileOfANewerSchemaAndLeavesItAlone) {
    {
        auto db = Open();
        ASSERT_TRUE(Migrate(*db, Steps(2)));
    }
    auto db = Open();
    Status s = Migrate(*db, Steps(1));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(
        s.error().message.find("people " + path() + " has schema version 2, newer than this program's 1"),
        std::string::npos)
        << s.error().message;
    EXPECT_EQ(SchemaVersion(*db, Steps(2)), 2);
}

TEST_P(MigrationTest, AFailedStepChangesNothing) {
    {
        auto db = Open();
        ASSERT_TRUE(Migrate(*db, Steps(1)));
    }
    const Migration broken[] = {kSteps[0],
                                {2, "CREATE TABLE cities(name TEXT); ALTER TABLE nowhere ADD COLUMN x;"}};
    auto db = Open();
    Status s = Migrate(*db, Of(broken, GetParam()));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ErrorCode::kInternal);
    EXPECT_NE(s.error().message.find("migration to schema version 2 failed"), std::string::npos)
        << s.error().message;
    EXPECT_NE(s.error().message.find("no such table: nowhere"), std::string::npos) << s.error().message;
    EXPECT_EQ(SchemaVersion(*db, Steps(1)), 1);
    EXPECT_EQ(db->QueryInt("SELECT count(*) FROM sqlite_master WHERE name = 'cities'"), 0);
    EXPECT_FALSE(db->InTransaction());
}

INSTANTIATE_TEST_SUITE_P(VersionKeptIn, MigrationTest, ::testing::Values("", "schema_version"),
                         [](const auto& info) { return info.param.empty() ? "UserVersion" : "Table"; });

TEST_F(SqliteTest, AVersionTableKeepsEveryStepAndUserVersionStaysZero) {
    auto db = Open();
    ASSERT_TRUE(Migrate(*db, Of(kSteps, "schema_version")));
    EXPECT_EQ(db->QueryInt("SELECT count(*) FROM schema_version WHERE version IN (1, 2)"), 2);
    EXPECT_EQ(db->QueryInt("PRAGMA user_version"), 0);
}

}  // namespace
}  // namespace cogs::sqlite
