// The frozen form of a record (core/frozen.h): thawing gives back exactly what was frozen — every
// JSON type, the order of the fields, the strings that look like ids or times but are not — and it
// is as small as the model's memory figures need.
#include "cogs/cloud/core/frozen.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cogs/base/secret.h"
#include "cogs/base/time.h"
#include "cogs/cloud/core/settled_server.h"

namespace cogs::cloud {
namespace {

namespace json = boost::json;

struct Thawed {
    std::string project;
    json::object body;
};

Thawed RoundTrip(const std::string& project, const json::object& body, FrozenKeys& keys) {
    const Frozen f(project, body, keys);
    Thawed t;
    t.body["stale"] = "a thaw replaces what was there";
    f.Thaw(keys, t.project, t.body);
    return t;
}

std::vector<std::string> KeysOf(const json::object& o) {
    std::vector<std::string> out;
    for (const auto& kv : o)
        out.emplace_back(kv.key());
    return out;
}

TEST(Frozen, EveryKindOfValueThawsAsItWasInTheSameOrder) {
    FrozenKeys keys;
    json::object body;
    body["zeta"] = "first";
    body["null"] = nullptr;
    body["yes"] = true;
    body["no"] = false;
    body["min"] = std::numeric_limits<int64_t>::min();
    body["max"] = std::numeric_limits<int64_t>::max();
    body["minus_one"] = -1;
    body["big"] = std::numeric_limits<uint64_t>::max();
    body["pi"] = 3.141592653589793;
    body["negative_zero"] = -0.0;
    body["tiny"] = std::numeric_limits<double>::denorm_min();
    body["empty"] = "";
    body["long"] = std::string(100'000, 'x');
    body["edge_short"] = std::string(222, 's');
    body["edge_long"] = std::string(223, 'l');
    body["unicode"] = "h\xc3\xa9llo \xe2\x9c\x93 \0 nul";
    body["list"] = json::array{1, "two", json::array{}, json::object{{"three", 3}}, nullptr};
    body["nested"] = json::object{{"b", json::object{{"c", json::array{true}}}}, {"a", 1}};
    body["empty_object"] = json::object{};
    const Thawed t = RoundTrip("project-1", body, keys);
    EXPECT_EQ(t.project, "project-1");
    EXPECT_EQ(t.body, body);
    EXPECT_EQ(KeysOf(t.body), KeysOf(body));
    EXPECT_EQ(KeysOf(t.body.at("nested").as_object()), (std::vector<std::string>{"b", "a"}));
    EXPECT_TRUE(t.body.at("big").is_uint64());
    EXPECT_TRUE(t.body.at("minus_one").is_int64());
    EXPECT_TRUE(std::signbit(t.body.at("negative_zero").as_double()));
    EXPECT_EQ(json::serialize(t.body), json::serialize(body)) << "the store's text is the same";
}

// Ids and times are kept in fewer bytes only when writing them back gives the same text.
TEST(Frozen, OnlyWhatWritesBackTheSameIsTakenAsAnIdOrATime) {
    FrozenKeys keys;
    const std::vector<std::string> strings = {
        NewUuid(),
        "01234567-89ab-cdef-0123-456789abcdef",
        "01234567-89AB-CDEF-0123-456789ABCDEF",  // upper case: written back lower, so a string
        "01234567-89ab-cdef-0123-456789abcdeg",
        "0123456789ab-cdef-0123-456789abcdef-",
        "01234567-89ab-cdef-0123-456789abcde",
        Rfc3339(0),
        Rfc3339(1'796'000'000'123),
        Rfc3339(-1),                 // 1969-12-31T23:59:59.999Z
        "2026-02-31T00:00:00.000Z",  // no such day
        "2026-12-06T25:00:00.000Z",  // no such hour
        "2026-12-06T12:00:00.000+00:00",
        "2026-12-06T12:00:00Z",
        "2026-12-06 12:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "0000-01-01T00:00:00.000Z",
    };
    json::object body;
    for (size_t i = 0; i < strings.size(); ++i) {
        body["s" + std::to_string(i)] = strings[i];
    }
    const Thawed t = RoundTrip(strings[0], body, keys);
    EXPECT_EQ(t.project, strings[0]);
    for (size_t i = 0; i < strings.size(); ++i) {
        EXPECT_EQ(t.body.at("s" + std::to_string(i)).as_string(), strings[i]) << strings[i];
    }
    for (const std::string& p : {std::string(), std::string("ab"), std::string(300, 'p')}) {
        EXPECT_EQ(RoundTrip(p, {}, keys).project, p);
    }
}

// Every time Rfc3339 writes, from year 0 to 9999, is kept as its milliseconds (a few bytes, not
// its 24 characters of text), and written back exactly.
TEST(Frozen, EveryTimeRfc3339WritesIsKeptInAFewBytes) {
    FrozenKeys keys;
    std::mt19937_64 rng(7);
    const int64_t year0 = -62'167'219'200'000, year10000 = 253'402'300'800'000;
    std::vector<int64_t> times = {year0, year10000 - 1, 0, -1, 951'782'400'000 /* 2000-02-29 */};
    for (int i = 0; i < 2000; ++i) {
        times.push_back(year0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(year10000 - year0)));
    }
    for (const int64_t ms : times) {
        const json::object body{{"t", Rfc3339(ms)}};
        const Frozen f("", body, keys);
        ASSERT_LE(f.size(), 14u) << Rfc3339(ms);
        ASSERT_EQ(RoundTrip("", body, keys).body, body);
    }
}

// Keys a tenant chooses could be any number: the table stops at kMaxKeys and the rest are written
// in the frozen form itself.
TEST(Frozen, KeysBeyondTheTablesRoomAreWrittenOut) {
    FrozenKeys keys;
    json::object body;
    for (size_t i = 0; i < FrozenKeys::kMaxKeys + 50; ++i) {
        body["key-" + std::to_string(i)] = static_cast<int64_t>(i);
    }
    const Thawed t = RoundTrip("", body, keys);
    EXPECT_EQ(keys.size(), FrozenKeys::kMaxKeys);
    EXPECT_EQ(t.body, body);
    EXPECT_EQ(KeysOf(t.body), KeysOf(body));
    json::object more{{"key-0", 1}, {"never-seen", 2}, {"", 3}};
    EXPECT_EQ(RoundTrip("", more, keys).body, more);
    EXPECT_EQ(keys.size(), FrozenKeys::kMaxKeys);
}

// Random bodies of every shape thaw as they were frozen.
TEST(Frozen, RandomBodiesThawAsTheyWere) {
    std::mt19937_64 rng(12345);
    FrozenKeys keys;
    std::function<json::value(int)> make = [&](int depth) -> json::value {
        switch (rng() % (depth > 3 ? 6 : 8)) {
            case 0: return nullptr;
            case 1: return rng() % 2 == 0;
            case 2: return static_cast<int64_t>(rng());
            case 3: return static_cast<double>(rng()) / 7.0;
            case 4:
                return rng() % 2 == 0 ? json::value(NewUuid())
                                      : json::value(Rfc3339(static_cast<int64_t>(rng() % 4'000'000'000'000)));
            case 5: return json::string(rng() % 300, static_cast<char>('a' + rng() % 26));
            case 6: {
                json::array a;
                for (size_t i = rng() % 5; i > 0; --i)
                    a.push_back(make(depth + 1));
                return a;
            }
            default: {
                json::object o;
                for (size_t i = rng() % 6; i > 0; --i)
                    o["k" + std::to_string(rng() % 40)] = make(depth + 1);
                return o;
            }
        }
    };
    for (int n = 0; n < 500; ++n) {
        json::object body;
        for (size_t i = rng() % 30; i > 0; --i)
            body["f" + std::to_string(rng() % 60)] = make(0);
        const Thawed t = RoundTrip("p", body, keys);
        ASSERT_EQ(json::serialize(t.body), json::serialize(body));
    }
}

// A server's body as cogsd keeps it after its create settles (cloud_memory_benchmark's): under half
// its JSON text (~0.3 KiB, where the json::object held 2.6: the README's "Memory").
TEST(Frozen, AServerIsAFractionOfItsText) {
    FrozenKeys keys;
    const std::string project = NewUuid();
    const json::object b = SettledServerBody(project);
    const Frozen f(project, b, keys);
    const size_t text = json::serialize(b).size();
    EXPECT_LT(f.size() * 2, text) << f.size() << " bytes frozen, " << text << " of text";
    EXPECT_GT(f.size(), 200u) << "every value is in it";
}

}  // namespace
}  // namespace cogs::cloud
