#include "cogs/wire/input.h"

#include <gtest/gtest.h>

namespace cogs::wire {
namespace {

Input Must(std::string_view text) {
    auto in = Input::ParseAny(text);
    EXPECT_TRUE(in) << in.error().ToString();
    return in ? std::move(*in) : Input(json::object{});
}

// The field an error names, and its message.
std::pair<std::string, std::string> Refusal(const Error& e) {
    EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
    return {std::string(e.field()), e.message};
}

TEST(InputTest, ParseRefusesWhatIsNotAnObjectAndUnknownKeys) {
    EXPECT_TRUE(Input::Parse("   ", {}).value().object().empty());
    EXPECT_EQ(Refusal(Input::Parse(R"({"force":true})", {}).error()).first, "force") << "no key is allowed";
    EXPECT_TRUE(Input::ParseAny(R"({"force":true})"));
    EXPECT_EQ(Refusal(Input::Parse("[1]", {}).error()),
              std::make_pair(std::string("body"), std::string("body: must be a JSON object")));
    EXPECT_EQ(Input::Parse("{", {}, "input").error().field(), "input");
    EXPECT_EQ(Refusal(Input::Parse(R"({"name":"a","typo":1})", {"name"}).error()),
              std::make_pair(std::string("typo"), std::string("typo: unknown field")));
}

TEST(InputTest, StringsRequiredOptionalAndLimited) {
    Input in = Must(R"({"a":"x","empty":"","n":3,"nul":null,"long":"abcdef"})");
    EXPECT_EQ(in.String("a").value(), "x");
    EXPECT_EQ(Refusal(in.String("missing").error()).second, "missing: required");
    EXPECT_EQ(Refusal(in.String("nul").error()).second, "nul: required");
    EXPECT_EQ(Refusal(in.String("empty").error()).second, "empty: required");
    EXPECT_EQ(in.String("empty", Text{.allow_empty = true}).value(), "");
    EXPECT_EQ(Refusal(in.String("n").error()).second, "n: must be a string");
    EXPECT_EQ(Refusal(in.String("long", Text{.max_len = 5}).error()).second,
              "long: longer than 5 characters");
    EXPECT_FALSE(in.OptionalString("nul").value().has_value());
    EXPECT_EQ(in.OptionalString("empty").value(), std::optional<std::string>(""));
}

TEST(InputTest, ControlCharactersAreRefusedNamingTheField) {
    // JSON escapes of NUL, newline, tab, ESC, BEL, DEL, and C1 CSI (U+009B) and NEL (U+0085).
    const std::pair<std::string, std::string> bad[] = {
        {R"("a\u0000b")", "U+0000 at byte 1"},   {R"("a\nb")", "U+000A at byte 1"},
        {R"("\tab")", "U+0009 at byte 0"},       {R"("x\u001b[2J")", "U+001B at byte 1"},
        {R"("bell\u0007")", "U+0007 at byte 4"}, {R"("del\u007f")", "U+007F at byte 3"},
        {R"("c1\u009b2J")", "U+009B at byte 2"}, {R"("nel\u0085")", "U+0085 at byte 3"},
    };
    for (const auto& [value, where] : bad) {
        Input in = Must(R"({"name":)" + value + R"(,"tags":[)" + value + "]}");
        EXPECT_EQ(
            Refusal(in.String("name").error()),
            std::make_pair(std::string("name"), "name: must not contain control characters (" + where + ")"))
            << value;
        EXPECT_EQ(Refusal(in.OptionalString("name").error()).first, "name") << value;
        EXPECT_EQ(Refusal(in.StringList("tags").error()).first, "tags") << value;
        EXPECT_TRUE(in.String("name", Text{.allow_controls = true})) << value;
    }
    // Printable text outside ASCII is fine (U+00A0 and U+00E9 start with 0xC2 and 0xC3).
    EXPECT_EQ(Must(R"({"name":"caf\u00e9\u00a0x"})").String("name").value(), "caf\xc3\xa9\xc2\xa0x");
    EXPECT_EQ(ControlAt("\x1b["), 1u);
    EXPECT_EQ(ControlAt("\xc2\x9b"), 2u);
    EXPECT_EQ(ControlAt("\xc2\xa0"), 0u);
    EXPECT_EQ(ControlAt("a"), 0u);
    EXPECT_EQ(ControlAt(""), 0u);
}

TEST(InputTest, IntegersInRangeIntegralDoublesToo) {
    Input in = Must(R"({"a":4,"b":4.0,"c":4.5,"d":"4","big":18446744073709551615})");
    EXPECT_EQ(in.Int("a", 1, 10).value(), 4);
    EXPECT_EQ(in.Int("b", 1, 10).value(), 4);
    EXPECT_EQ(Refusal(in.Int("c").error()).second, "c: must be an integer");
    EXPECT_EQ(Refusal(in.Int("d").error()).second, "d: must be an integer");
    EXPECT_EQ(Refusal(in.Int("big").error()).second, "big: must be an integer");
    EXPECT_EQ(Refusal(in.Int("a", 5, 10).error()).second, "a: must be between 5 and 10");
    EXPECT_EQ(Refusal(in.Int("a", 5).error()).second, "a: must be an integer >= 5");
    EXPECT_EQ(Refusal(in.Int("zz", 0, 1).error()).second, "zz: required");
    EXPECT_FALSE(in.OptionalInt("zz").value().has_value());
}

TEST(InputTest, ListsAndIds) {
    Input in = Must(R"({"l":["a","b"],"dup":["a","a"],"bad":["a",""],"ids":["x","y","x"],"badid":[".x"]})");
    EXPECT_EQ(in.StringList("l").value(), (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(in.StringList("absent").value().empty());
    EXPECT_EQ(Refusal(in.StringList("dup", List{.unique = true}).error()).second, "dup: lists a twice");
    EXPECT_EQ(Refusal(in.StringList("bad").error()).second, "bad: must be an array of non-empty strings");
    EXPECT_EQ(Refusal(in.StringList("l", List{.max_items = 1}).error()).second, "l: more than 1 items");
    EXPECT_EQ(in.IdList("ids").value(), (std::vector<std::string>{"x", "y"}));
    EXPECT_EQ(Refusal(in.IdList("badid").error()).first, "badid");
    EXPECT_TRUE(ValidId("port-1.a_b"));
    EXPECT_FALSE(ValidId(".hidden"));
    EXPECT_FALSE(ValidId("a/b"));
    EXPECT_FALSE(ValidId(std::string(129, 'a')));
}

TEST(InputTest, NestedObjectsNameTheirFieldsByPath) {
    Input in = Must(R"({"request":{"fixed_ip":7,"x":1},"pools":[{"start":"a"},{"end":"b"}],"notobj":3})");
    auto req = in.Object("request", {"fixed_ip", "x"});
    ASSERT_TRUE(req);
    EXPECT_EQ(
        Refusal(req->String("fixed_ip").error()),
        std::make_pair(std::string("request.fixed_ip"), std::string("request.fixed_ip: must be a string")));
    EXPECT_EQ(Refusal(in.Object("request", {"fixed_ip"}).error()).first, "request.x");
    auto pools = in.Objects("pools", {"start", "end"});
    ASSERT_TRUE(pools);
    ASSERT_EQ(pools->size(), 2u);
    EXPECT_EQ(Refusal((*pools)[1].String("start").error()).second, "pools[1].start: required");
    EXPECT_EQ(Refusal(in.Object("notobj").error()).second, "notobj: must be an object");
    EXPECT_EQ(Refusal(in.Object("absent").error()).second, "absent: required");
}

TEST(InputTest, LenientReadersNeverFail) {
    json::object o = ParseObject(R"({"s":"x","n":3,"b":true,"l":["a",1,"b"],"o":{"k":1}})");
    EXPECT_EQ(Str(o, "s"), "x");
    EXPECT_EQ(Str(o, "n"), "");
    EXPECT_EQ(Int(o, "n"), 3);
    EXPECT_EQ(Int(o, "s"), 0);
    EXPECT_TRUE(Bool(o, "b"));
    EXPECT_FALSE(Bool(o, "n"));
    EXPECT_EQ(StrList(o, "l"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(Int(Obj(o, "o"), "k"), 1);
    EXPECT_TRUE(Obj(o, "s").empty());
    EXPECT_TRUE(ParseObject("not json").empty());
}

}  // namespace
}  // namespace cogs::wire
