#include "cogs/cloud/core/frozen.h"

#include <boost/json/array.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>
#include <cstring>

#include "cogs/base/check.h"

namespace cogs::cloud {

namespace json = boost::json;

int64_t FrozenKeys::Intern(std::string_view key, int64_t position) {
    int64_t* hint = position >= 0 && static_cast<size_t>(position) < at_position_.size()
                        ? &at_position_[static_cast<size_t>(position)]
                        : nullptr;
    if (hint != nullptr && *hint >= 0 && names_[static_cast<size_t>(*hint)] == key) {
        return *hint;
    }
    int64_t number = -1;
    if (auto it = numbers_.find(key); it != numbers_.end()) {
        number = static_cast<int64_t>(it->second);
    } else if (names_.size() < kMaxKeys) {
        const std::string& name = names_.emplace_back(key);
        numbers_.emplace(name, names_.size() - 1);
        number = static_cast<int64_t>(names_.size() - 1);
    }
    if (hint != nullptr) *hint = number;
    return number;
}

// ---- the form ----
//
//   frozen  := varint(length of the rest) string(project) varint(fields) field*
//   field   := key value
//   key     := varint(2 * number)  |  varint(2 * length + 1) bytes     (a key the table has no room for)
//   value   := 0x00 null | 0x01 false | 0x02 true
//            | 0x03 varint(zigzag int64) | 0x04 varint(uint64) | 0x05 8 bytes (double)
//            | string
//            | 0x09 varint(n) value*                 (array)
//            | 0x0a varint(n) field*                 (object)
//   string  := 0x06 varint(length) bytes | 0x07 16 bytes (a UUID, lower-case) | 0x08 varint(zigzag ms)
//              (a time as Rfc3339 writes it) | (0x20 + length) bytes (shorter than 224)

namespace {

enum Tag : uint8_t {
    kNull = 0,
    kFalse,
    kTrue,
    kInt,
    kUint,
    kDouble,
    kString,
    kUuid,
    kTime,
    kArray,
    kObject,
    kShortString = 0x20,
};
constexpr size_t kMaxShort = 0xff - kShortString;

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}
constexpr bool IsUuidDash(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2 ? 1 : 0;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

// The date of a day since 1970-01-01 (H. Hinnant's civil_from_days).
void CivilFromDays(int64_t z, int64_t& y, int64_t& m, int64_t& d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = yoe + era * 400 + (m <= 2 ? 1 : 0);
}

constexpr std::string_view kTimeShape = "0000-00-00T00:00:00.000Z";
constexpr int64_t kDayMs = 86'400'000;

// What Rfc3339(ms) writes, for the years 0 to 9999 (the only ones AsTime takes), without its
// snprintf and gmtime_r: a thaw writes two times a server.
void FormatTime(int64_t ms, char (&out)[kTimeShape.size()]) {
    const int64_t days = ms >= 0 ? ms / kDayMs : -((-ms + kDayMs - 1) / kDayMs);
    int64_t in_day = ms - days * kDayMs;
    int64_t y = 0, m = 0, d = 0;
    CivilFromDays(days, y, m, d);
    auto put = [&out](size_t at, size_t n, int64_t v) {
        for (size_t i = at + n; i > at; --i, v /= 10)
            out[i - 1] = static_cast<char>('0' + v % 10);
    };
    std::memcpy(out, kTimeShape.data(), kTimeShape.size());
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(20, 3, in_day % 1000);
    in_day /= 1000;
    put(17, 2, in_day % 60);
    in_day /= 60;
    put(14, 2, in_day % 60);
    put(11, 2, in_day / 60);
}

// "YYYY-MM-DDTHH:MM:SS.mmmZ" exactly as Rfc3339 writes it: its milliseconds.
bool AsTime(std::string_view s, int64_t& ms) {
    if (s.size() != kTimeShape.size()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const bool digit = s[i] >= '0' && s[i] <= '9';
        if (kTimeShape[i] == '0' ? !digit : s[i] != kTimeShape[i]) return false;
    }
    auto num = [&s](size_t at, size_t n) {
        int64_t v = 0;
        for (size_t i = at; i < at + n; ++i)
            v = v * 10 + (s[i] - '0');
        return v;
    };
    ms = ((DaysFromCivil(num(0, 4), num(5, 2), num(8, 2)) * 24 + num(11, 2)) * 60 + num(14, 2)) * 60'000 +
         num(17, 2) * 1000 + num(20, 3);
    char back[kTimeShape.size()];
    FormatTime(ms, back);
    return s == std::string_view(back, sizeof back);  // a 31st of February, a 25th hour: not the same
}

class Writer {
public:
    explicit Writer(FrozenKeys& keys) : keys_(keys) {}

    void Varint(uint64_t v) {
        while (v >= 0x80) {
            out_.push_back(static_cast<char>(v | 0x80));
            v >>= 7;
        }
        out_.push_back(static_cast<char>(v));
    }
    void Byte(uint8_t b) { out_.push_back(static_cast<char>(b)); }
    void Bytes(std::string_view b) { out_.append(b); }

    void String(std::string_view s) {
        int64_t ms = 0;
        if (s.size() == 36 && Uuid(s)) return;
        if (AsTime(s, ms)) {
            Byte(kTime);
            Varint(ZigZag(ms));
        } else if (s.size() < kMaxShort) {
            Byte(static_cast<uint8_t>(kShortString + s.size()));
            Bytes(s);
        } else {
            Byte(kString);
            Varint(s.size());
            Bytes(s);
        }
    }

    // `top`: the body's own fields (not a nested object's).
    void Fields(const json::object& o, bool top = false) {
        Varint(o.size());
        int64_t position = 0;
        for (const auto& kv : o) {
            const int64_t number = keys_.Intern(kv.key(), top ? position++ : -1);
            if (number >= 0) {
                Varint(static_cast<uint64_t>(number) << 1);
            } else {
                Varint(kv.key().size() << 1 | 1);
                Bytes(kv.key());
            }
            Value(kv.value());
        }
    }

    void Value(const json::value& v) {
        switch (v.kind()) {
            case json::kind::null: return Byte(kNull);
            case json::kind::bool_: return Byte(v.get_bool() ? kTrue : kFalse);
            case json::kind::int64: Byte(kInt); return Varint(ZigZag(v.get_int64()));
            case json::kind::uint64: Byte(kUint); return Varint(v.get_uint64());
            case json::kind::double_: {
                Byte(kDouble);
                char raw[sizeof(double)];
                const double d = v.get_double();
                std::memcpy(raw, &d, sizeof raw);
                return Bytes({raw, sizeof raw});
            }
            case json::kind::string: return String(v.get_string());
            case json::kind::array:
                Byte(kArray);
                Varint(v.get_array().size());
                for (const auto& e : v.get_array())
                    Value(e);
                return;
            case json::kind::object: Byte(kObject); return Fields(v.get_object());
        }
    }

    std::string& out() { return out_; }

private:
    // A lower-case UUID (8-4-4-4-12 hex digits): its 16 bytes.
    bool Uuid(std::string_view s) {
        uint8_t raw[16];
        size_t n = 0;
        for (size_t i = 0; i < s.size(); ++i) {
            if (IsUuidDash(i)) {
                if (s[i] != '-') return false;
                continue;
            }
            const int hi = Hex(s[i]), lo = hi < 0 ? -1 : Hex(s[++i]);
            if (lo < 0 || IsUuidDash(i)) return false;
            raw[n++] = static_cast<uint8_t>(hi << 4 | lo);
        }
        Byte(kUuid);
        Bytes({reinterpret_cast<const char*>(raw), sizeof raw});
        return true;
    }

    FrozenKeys& keys_;
    std::string out_;
};

class Reader {
public:
    Reader(const uint8_t* p, const FrozenKeys& keys) : p_(p), keys_(keys) {}

    uint64_t Varint() {
        uint64_t v = 0;
        for (int shift = 0;; shift += 7) {
            const uint8_t b = *p_++;
            v |= static_cast<uint64_t>(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return v;
        }
    }
    std::string_view Bytes(size_t n) {
        std::string_view s(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return s;
    }

    // A string value whose tag has been read.
    void String(uint8_t tag, json::string& out) {
        if (tag >= kShortString) {
            out = Bytes(tag - kShortString);
        } else if (tag == kString) {
            out = Bytes(Varint());
        } else if (tag == kUuid) {
            static constexpr char kDigits[] = "0123456789abcdef";
            char text[36];
            for (size_t i = 0, b = 0; i < sizeof text; ++i) {
                if (IsUuidDash(i)) {
                    text[i] = '-';
                } else {
                    text[i] = kDigits[p_[b / 2] >> (b % 2 == 0 ? 4 : 0) & 0xf];
                    ++b;
                }
            }
            p_ += 16;
            out = std::string_view(text, sizeof text);
        } else {
            COGS_CHECK(tag == kTime && "Frozen: a string of an unknown form");
            char text[kTimeShape.size()];
            FormatTime(UnZigZag(Varint()), text);
            out = std::string_view(text, sizeof text);
        }
    }

    void Fields(json::object& o) {
        const uint64_t n = Varint();
        o.reserve(n);
        for (uint64_t i = 0; i < n; ++i) {
            const uint64_t k = Varint();
            const std::string_view key = (k & 1) != 0 ? Bytes(k >> 1) : keys_.Name(k >> 1);
            Value(o.emplace(key, nullptr).first->value());
        }
    }

    void Value(json::value& v) {
        const uint8_t tag = *p_++;
        switch (tag) {
            case kNull: v = nullptr; return;
            case kFalse:
            case kTrue: v = tag == kTrue; return;
            case kInt: v = UnZigZag(Varint()); return;
            case kUint: v = Varint(); return;
            case kDouble: {
                double d;
                std::memcpy(&d, p_, sizeof d);
                p_ += sizeof d;
                v = d;
                return;
            }
            case kArray: {
                json::array& a = v.emplace_array();
                const uint64_t n = Varint();
                a.resize(n);
                for (auto& e : a)
                    Value(e);
                return;
            }
            case kObject: Fields(v.emplace_object()); return;
            default: String(tag, v.emplace_string());
        }
    }

private:
    const uint8_t* p_;
    const FrozenKeys& keys_;
};

}  // namespace

Frozen::Frozen(const std::string& project, const json::object& body, FrozenKeys& keys) {
    Writer w(keys);
    w.String(project);
    w.Fields(body, true);
    Writer head(keys);
    head.Varint(w.out().size());
    bytes_ = std::make_unique_for_overwrite<uint8_t[]>(head.out().size() + w.out().size());
    std::memcpy(bytes_.get(), head.out().data(), head.out().size());
    std::memcpy(bytes_.get() + head.out().size(), w.out().data(), w.out().size());
}

void Frozen::Thaw(const FrozenKeys& keys, std::string& project, json::object& body) const {
    COGS_CHECK(bytes_ != nullptr);
    Reader r(bytes_.get(), keys);
    r.Varint();
    json::string p;
    r.String(static_cast<uint8_t>(r.Bytes(1)[0]), p);
    project.assign(p.data(), p.size());
    body.clear();
    r.Fields(body);
}

size_t Frozen::size() const {
    if (bytes_ == nullptr) return 0;
    uint64_t n = 0;
    size_t head = 0;
    for (int shift = 0;; shift += 7) {
        const uint8_t b = bytes_[head++];
        n |= static_cast<uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) return head + n;
    }
}

}  // namespace cogs::cloud
