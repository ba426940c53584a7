// A record as the model keeps it between turns: its project and body in a compact binary form,
// thawed into a json::object only while a handler reads or changes it (core/model.h).
//
// Why: a body as a json::object holds a 40-byte slot per field, each key in an allocation of its
// own and every string over 14 characters in another, ~3.4 times its JSON text: 2.6 KiB for a server
// whose text is 0.8 KiB. Frozen, a key is a number in the model's table of keys, an id (a UUID) is
// its 16 bytes, a time as cogs writes it (base/time.h Rfc3339) is its milliseconds, and the rest
// is written out with its length: ~0.3 KiB for the same server.
//
// Thaw(Freeze(b)) == b for every JSON object, the order of its fields included (the store's text
// is the body serialized, so the order shows). A string is taken as an id or a time only when
// writing it back gives exactly the same text.
#pragma once

#include <array>
#include <boost/json/object.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cogs::cloud {

// Object keys by number. A model's bodies share a few dozen keys; keys a tenant chooses (metadata)
// could be any number, so the table stops growing at kMaxKeys and a key it has no room for is
// written out in the frozen form itself.
class FrozenKeys {
public:
    static constexpr size_t kMaxKeys = 4096;

    FrozenKeys() { at_position_.fill(-1); }

    // The number of `key`, given one if there is room; -1 if not. `position`: where the key is in
    // its body, if at the top (else -1): bodies of a kind list their keys in the same order, so the
    // key last seen there is tried before the table is.
    int64_t Intern(std::string_view key, int64_t position = -1);
    std::string_view Name(uint64_t number) const { return names_.at(number); }
    size_t size() const { return names_.size(); }

private:
    std::deque<std::string> names_;  // a deque: the views in numbers_ stay valid as it grows
    std::unordered_map<std::string_view, uint64_t> numbers_;
    std::array<int64_t, 64> at_position_;  // the number of the key last seen there (-1: none)
};

// The frozen form: one allocation, its length first.
class Frozen {
public:
    Frozen() = default;
    Frozen(const std::string& project, const boost::json::object& body, FrozenKeys& keys);

    bool empty() const { return bytes_ == nullptr; }
    // The record's project and body as they were frozen.
    void Thaw(const FrozenKeys& keys, std::string& project, boost::json::object& body) const;
    // Bytes held (the allocation's request), for the memory figures.
    size_t size() const;

private:
    std::unique_ptr<uint8_t[]> bytes_;
};

}  // namespace cogs::cloud
