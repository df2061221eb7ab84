// mproc/pickle.hpp — Python's pickle on a Connection: the data a Python process sends with
// multiprocessing's Connection.send(obj) is decoded into a PickleValue, and a PickleValue is encoded into a
// pickle that Python's Connection.recv() (pickle.loads) turns back into an equal object.
//
// Defines: PickleValue (a dynamic value of Python's data model), pickle_loads / pickle_dumps (decoder and
// encoder), PickleConvert<T> (the customization point converting C++ types to and from PickleValue, with
// built-in conversions for the standard types listed below), to_pickle / from_pickle, and send_pickle /
// recv_pickle (one pickled message on a Connection through send_bytes / recv_bytes).
//
// The data model: None, bool, int (any size: int64 inline, larger ones as two's-complement bytes), float,
// str (UTF-8), bytes, bytearray, list, tuple, dict, set, frozenset, nested. A PickleValue is immutable;
// copies share their storage (a copy costs a reference count), so a pickle that refers to one object many
// times (Python's memo) decodes into one shared object, not into copies.
//
// What is decoded: protocols 2 to 5, every opcode Python 3's pickler writes for the types above — PROTO,
// FRAME, STOP, the memo (MEMOIZE, BINPUT, LONG_BINPUT, BINGET, LONG_BINGET), MARK/POP/POP_MARK/DUP,
// NONE/NEWTRUE/NEWFALSE, BININT/BININT1/BININT2/LONG1/LONG4, BINFLOAT, SHORT_BINUNICODE/BINUNICODE/
// BINUNICODE8, SHORT_BINBYTES/BINBYTES/BINBYTES8, BYTEARRAY8, SHORT_BINSTRING/BINSTRING (ASCII only, as
// str), the list/tuple/dict/set/frozenset opcodes. Protocols 2 and 3 have no opcode for bytes (protocol 2),
// bytearray, set or frozenset; Python writes them as a call of builtins.set / frozenset / bytearray /
// bytes or _codecs.encode(str, 'latin1'). Exactly those five names, applied by REDUCE to arguments of the
// shape Python's pickler writes, are recognised as data and built by the decoder itself: nothing is looked up
// by name, imported or called.
//
// What is refused (DecodeError naming the opcode and its offset): every other name (GLOBAL, STACK_GLOBAL)
// and every opcode that instantiates or calls something — REDUCE of any other callable, BUILD, INST, OBJ,
// NEWOBJ, NEWOBJ_EX, PERSID, BINPERSID, EXT1/EXT2/EXT4 — as well as out-of-band buffers (NEXT_BUFFER,
// READONLY_BUFFER, which Connection.send never writes), the text opcodes of protocol 0 (INT, LONG, FLOAT,
// STRING, UNICODE, GET, PUT, ...), and recursive structures (a container that contains itself: a container
// is refused as the target of APPEND/SETITEM/ADDITEMS once GET or DUP has handed out a second reference to
// it, which Python's pickler only writes for a self-containing object).
//
// Decoder guarantees (pickle_loads is a pure function over hostile bytes)
// - Anything malformed — truncated input, a length beyond the bytes left (even 2^60), an unknown opcode, a
//   memo index never stored, a mark missing, a stack underflow, invalid UTF-8, a value left on the stack or
//   bytes after STOP — throws DecodeError; nothing else is thrown for bad bytes (std::bad_alloc aside).
// - Iterative: one loop over the opcodes with an explicit stack, no recursion. Values nest at most
//   kPickleMaxDepth (1000) containers deep (Python's own pickler refuses deeper values at its default
//   recursion limit); deeper input throws DecodeError, so every later recursive walk of a decoded value
//   (encoding, comparison, conversion, destruction) is bounded by 1000 frames.
// - Memory: every allocation is bounded by the input: at most kPickleBytesPerInputByte (256) bytes per input
//   byte plus 64 KiB (measured by fuzz/fuzz-pickle.cpp, which counts every allocation made during a decode).
//   A length field is checked against the bytes left before anything is allocated for it. Copies made for
//   protocol-2 calls (set(list), bytearray(bytes)) are charged to a budget of one element per input byte.
// - Time: linear in the input size (the UTF-8 check and each copy touch each byte a bounded number of times).
//
// Encoder: pickle_dumps writes protocol 4 (readable by Python 3.4 and later): the shortest integer and
// length opcodes, APPENDS/SETITEMS/ADDITEMS in batches of 1000 as Python does, bytearray as a REDUCE of
// builtins.bytearray, no frames. Storage shared by several parts of the value is written once and then
// referenced through the memo (MEMOIZE/BINGET), so the output stays proportional to the stored data; Python
// then sees one shared object there. ValueError for a value nested deeper than kPickleMaxDepth.
//
// Equality (operator==) compares data, not Python's ==: kinds must match (1, 1.0 and True differ), floats
// compare by bit pattern (NaN equals a NaN of the same bits; 0.0 and -0.0 differ), lists, tuples, dicts and
// sets compare element by element in order. Dicts and sets keep the order the pickle lists them in (Python's
// insertion or iteration order); a hostile pickle that repeats a key keeps both items (Python keeps the last).
//
// Conversions (PickleConvert<T>; specialise it for your own types with to_pickle(const T&) and
// from_pickle(const PickleValue&)): std::monostate ↔ None; bool ↔ bool; every other integral type ↔ int
// (DecodeError when the int does not fit); float and double ↔ float (an int converts to a double when it is
// exactly representable); std::string ↔ str (ValueError for a std::string that is not UTF-8); const char*
// and std::string_view → str; std::vector<std::byte> ↔ bytes (bytearray converts too); std::vector<T> ↔ list
// (a tuple converts too); std::set<T> and std::unordered_set<T> ↔ set (frozenset converts too);
// std::map<K,V> and std::unordered_map<K,V> ↔ dict (a repeated key: the last item wins, as in Python);
// std::optional<T> ↔ None or T; std::pair<A,B> and std::tuple<T...> ↔ tuple of that size; PickleValue ↔
// itself. A value of another kind throws DecodeError ("pickle value: expected int, got str"). Converting to
// a C++ container copies shared parts once per reference, so its size can exceed the pickle's.
//
// Costs: decoding allocates once per str, bytes or container and once per element vector; no system call.
// send_pickle is one send_bytes, recv_pickle one recv_bytes (see mproc/connection.hpp for their costs).
// Threads: a PickleValue may be read from several threads at once (its reference counts are atomic).
// A participant's death: a Connection whose peer dies mid-message reports Closed or a framing error
// (mproc/connection.hpp); nothing partial reaches the decoder, and a decoder fed truncated bytes throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/connection.hpp"
#include "mproc/error.hpp"

namespace mproc {

inline constexpr std::size_t kPickleMaxDepth = 1000;
inline constexpr std::size_t kPickleBytesPerInputByte = 256;

namespace detail {
struct PickleStorage;
struct PickleDecoder;
struct PickleEncoder;
struct PickleEqual;
struct PickleStorageAccess;
}  // namespace detail

class MPROC_API PickleValue {
public:
    enum class Kind : std::uint8_t { none, boolean, integer, floating, str, bytes, bytearray, list, tuple, dict, set, frozenset };
    using Items = std::vector<PickleValue>;
    using DictItems = std::vector<std::pair<PickleValue, PickleValue>>;

    PickleValue() noexcept = default;  // None

    static PickleValue none() noexcept { return {}; }
    static PickleValue boolean(bool value) noexcept;
    static PickleValue integer(std::int64_t value) noexcept;
    // An int of any size from its two's-complement little-endian bytes (Python's int.to_bytes(n, 'little',
    // signed=True)); no bytes is 0. Stored inline when it fits in 64 bits.
    static PickleValue integer_from_bytes(std::span<const std::byte> twos_complement_little_endian);
    static PickleValue floating(double value) noexcept;
    // ValueError when text is not UTF-8 (encoded surrogates, which Python's pickle passes through, are
    // accepted).
    static PickleValue str(std::string_view utf8);
    static PickleValue bytes(std::span<const std::byte> data);
    static PickleValue bytearray(std::span<const std::byte> data);
    static PickleValue list(Items items);
    static PickleValue tuple(Items items);
    static PickleValue dict(DictItems items);
    static PickleValue set(Items items);
    static PickleValue frozenset(Items items);

    Kind kind() const noexcept { return kind_; }
    bool is_none() const noexcept { return kind_ == Kind::none; }
    // "None", "bool", "int", ... (Python's type names).
    static const char* kind_name(Kind kind) noexcept;
    const char* kind_name() const noexcept { return kind_name(kind_); }

    // Accessors: DecodeError ("pickle value: expected int, got str") when the kind differs.
    bool as_bool() const;
    // The int when it fits in 64 bits; DecodeError for a larger one (see integer_bytes()).
    std::int64_t as_int64() const;
    bool fits_int64() const noexcept { return kind_ == Kind::integer && !storage_; }
    // Any int as its shortest two's-complement little-endian bytes (0 → no bytes).
    std::vector<std::byte> integer_bytes() const;
    double as_double() const;
    // The UTF-8 bytes of a str.
    const std::string& as_str() const;
    // The bytes of a bytes or bytearray.
    std::span<const std::byte> as_bytes() const;
    // The elements of a list, tuple, set or frozenset.
    const Items& items() const;
    // The items of a dict, in the order the pickle gave them.
    const DictItems& dict_items() const;

    friend bool operator==(const PickleValue& a, const PickleValue& b);
    friend bool operator!=(const PickleValue& a, const PickleValue& b) { return !(a == b); }

    // How many containers deep this value nests (0 for a scalar, 1 for [1], 2 for [[1]]).
    std::size_t depth() const noexcept;

private:
    friend struct detail::PickleDecoder;
    friend struct detail::PickleEncoder;
    friend struct detail::PickleEqual;
    friend struct detail::PickleStorageAccess;
    void expect(Kind kind) const;
    void expect_one_of(Kind first, Kind second) const;

    Kind kind_ = Kind::none;
    union {
        std::int64_t integer_ = 0;  // none, boolean (0/1), integer that fits
        double floating_;
    };
    // str, bytes, bytearray, big integer (two's-complement bytes), containers; empty otherwise.
    std::shared_ptr<detail::PickleStorage> storage_;
};

// Decodes one pickle (the whole span: bytes after STOP are refused). See the decoder guarantees above.
MPROC_API PickleValue pickle_loads(std::span<const std::byte> pickle);
// Encodes value as a protocol-4 pickle.
MPROC_API std::vector<std::byte> pickle_dumps(const PickleValue& value);

// The customization point: specialise for a type T with
//   static PickleValue to_pickle(const T&);
//   static T from_pickle(const PickleValue&);   // DecodeError when the value has another shape
template <class T, class Enable = void>
struct PickleConvert;

template <class T>
PickleValue to_pickle(const T& value) {
    return PickleConvert<T>::to_pickle(value);
}

template <class T>
T from_pickle(const PickleValue& value) {
    return PickleConvert<T>::from_pickle(value);
}

// One message holding the pickle of value (Python's conn.send(value)).
template <class T>
void send_pickle(Connection& connection, const T& value) {
    const std::vector<std::byte> pickle = pickle_dumps(to_pickle(value));
    connection.send_bytes(std::span<const std::byte>(pickle.data(), pickle.size()));
}

// One message decoded as a pickle and converted to T (Python's conn.recv()). DecodeError when it does not
// decode or convert; the message is consumed either way. maxlength: as recv_bytes.
template <class T = PickleValue>
T recv_pickle(Connection& connection, std::optional<std::size_t> maxlength = std::nullopt) {
    const std::vector<std::byte> message = connection.recv_bytes(maxlength);
    return from_pickle<T>(pickle_loads(std::span<const std::byte>(message.data(), message.size())));
}

namespace detail {
[[noreturn]] MPROC_API void throw_pickle_conversion(const char* expected, const PickleValue& got);
[[noreturn]] MPROC_API void throw_pickle_out_of_range(const PickleValue& got, const char* target);
[[noreturn]] MPROC_API void throw_pickle_tuple_size(std::size_t expected, std::size_t got);
}  // namespace detail

// ---- built-in conversions ----

template <>
struct PickleConvert<PickleValue> {
    static PickleValue to_pickle(const PickleValue& value) { return value; }
    static PickleValue from_pickle(const PickleValue& value) { return value; }
};

template <>
struct PickleConvert<std::monostate> {
    static PickleValue to_pickle(std::monostate) { return PickleValue::none(); }
    static std::monostate from_pickle(const PickleValue& value) {
        if (!value.is_none()) detail::throw_pickle_conversion("None", value);
        return {};
    }
};

template <>
struct PickleConvert<bool> {
    static PickleValue to_pickle(bool value) { return PickleValue::boolean(value); }
    static bool from_pickle(const PickleValue& value) { return value.as_bool(); }
};

template <class T>
struct PickleConvert<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
    static PickleValue to_pickle(T value) {
        if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
            if (value > static_cast<T>(std::numeric_limits<std::int64_t>::max())) {
                std::byte bytes[sizeof(T) + 1] = {};  // a zero top byte keeps it positive
                for (std::size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<std::byte>(value >> (8 * i));
                return PickleValue::integer_from_bytes(bytes);
            }
        }
        return PickleValue::integer(static_cast<std::int64_t>(value));
    }
    static T from_pickle(const PickleValue& value) {
        if (value.kind() != PickleValue::Kind::integer) detail::throw_pickle_conversion("int", value);
        if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
            if (!value.fits_int64()) {
                const std::vector<std::byte> bytes = value.integer_bytes();
                // Positive and at most sizeof(T) bytes of magnitude (plus a zero sign byte).
                const bool negative = (std::to_integer<unsigned>(bytes.back()) & 0x80u) != 0;
                const std::size_t magnitude = bytes.back() == std::byte{0} ? bytes.size() - 1 : bytes.size();
                if (negative || magnitude > sizeof(T)) detail::throw_pickle_out_of_range(value, "an unsigned 64-bit integer");
                T result = 0;
                for (std::size_t i = 0; i < magnitude; ++i) result |= static_cast<T>(std::to_integer<unsigned>(bytes[i])) << (8 * i);
                return result;
            }
        }
        if (!value.fits_int64()) detail::throw_pickle_out_of_range(value, "a 64-bit integer");
        const std::int64_t held = value.as_int64();
        if constexpr (std::is_signed_v<T>) {
            if (held < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
                held > static_cast<std::int64_t>(std::numeric_limits<T>::max()))
                detail::throw_pickle_out_of_range(value, "the integer type asked for");
        } else {
            if (held < 0 || static_cast<std::uint64_t>(held) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
                detail::throw_pickle_out_of_range(value, "the unsigned integer type asked for");
        }
        return static_cast<T>(held);
    }
};

template <class T>
struct PickleConvert<T, std::enable_if_t<std::is_floating_point_v<T>>> {
    static PickleValue to_pickle(T value) { return PickleValue::floating(static_cast<double>(value)); }
    static T from_pickle(const PickleValue& value) { return static_cast<T>(value.as_double()); }
};

template <>
struct PickleConvert<std::string> {
    static PickleValue to_pickle(const std::string& value) { return PickleValue::str(value); }
    static std::string from_pickle(const PickleValue& value) { return value.as_str(); }
};

template <>
struct PickleConvert<std::string_view> {
    static PickleValue to_pickle(std::string_view value) { return PickleValue::str(value); }
};

template <>
struct PickleConvert<const char*> {
    static PickleValue to_pickle(const char* value) { return PickleValue::str(value); }
};

template <std::size_t N>
struct PickleConvert<char[N]> {
    static PickleValue to_pickle(const char (&value)[N]) { return PickleValue::str(std::string_view(value)); }
};

template <>
struct PickleConvert<std::vector<std::byte>> {
    static PickleValue to_pickle(const std::vector<std::byte>& value) { return PickleValue::bytes(value); }
    static std::vector<std::byte> from_pickle(const PickleValue& value) {
        const std::span<const std::byte> bytes = value.as_bytes();
        return {bytes.begin(), bytes.end()};
    }
};

template <class T, class Allocator>
struct PickleConvert<std::vector<T, Allocator>, std::enable_if_t<!std::is_same_v<T, std::byte>>> {
    static PickleValue to_pickle(const std::vector<T, Allocator>& value) {
        PickleValue::Items items;
        items.reserve(value.size());
        for (const auto& element : value) items.push_back(PickleConvert<T>::to_pickle(element));
        return PickleValue::list(std::move(items));
    }
    static std::vector<T, Allocator> from_pickle(const PickleValue& value) {
        if (value.kind() != PickleValue::Kind::list && value.kind() != PickleValue::Kind::tuple)
            detail::throw_pickle_conversion("list or tuple", value);
        std::vector<T, Allocator> result;
        result.reserve(value.items().size());
        for (const PickleValue& element : value.items()) result.push_back(PickleConvert<T>::from_pickle(element));
        return result;
    }
};

namespace detail {
template <class Set, class T>
struct PickleSetConvert {
    static PickleValue to_pickle(const Set& value) {
        PickleValue::Items items;
        items.reserve(value.size());
        for (const auto& element : value) items.push_back(PickleConvert<T>::to_pickle(element));
        return PickleValue::set(std::move(items));
    }
    static Set from_pickle(const PickleValue& value) {
        if (value.kind() != PickleValue::Kind::set && value.kind() != PickleValue::Kind::frozenset)
            throw_pickle_conversion("set or frozenset", value);
        Set result;
        for (const PickleValue& element : value.items()) result.insert(PickleConvert<T>::from_pickle(element));
        return result;
    }
};

template <class Map, class K, class V>
struct PickleMapConvert {
    static PickleValue to_pickle(const Map& value) {
        PickleValue::DictItems items;
        items.reserve(value.size());
        for (const auto& [key, mapped] : value)
            items.emplace_back(PickleConvert<K>::to_pickle(key), PickleConvert<V>::to_pickle(mapped));
        return PickleValue::dict(std::move(items));
    }
    static Map from_pickle(const PickleValue& value) {
        if (value.kind() != PickleValue::Kind::dict) throw_pickle_conversion("dict", value);
        Map result;
        for (const auto& [key, mapped] : value.dict_items())
            result.insert_or_assign(PickleConvert<K>::from_pickle(key), PickleConvert<V>::from_pickle(mapped));
        return result;
    }
};
}  // namespace detail

template <class T, class Compare, class Allocator>
struct PickleConvert<std::set<T, Compare, Allocator>> : detail::PickleSetConvert<std::set<T, Compare, Allocator>, T> {};

template <class T, class Hash, class Equal, class Allocator>
struct PickleConvert<std::unordered_set<T, Hash, Equal, Allocator>>
    : detail::PickleSetConvert<std::unordered_set<T, Hash, Equal, Allocator>, T> {};

template <class K, class V, class Compare, class Allocator>
struct PickleConvert<std::map<K, V, Compare, Allocator>> : detail::PickleMapConvert<std::map<K, V, Compare, Allocator>, K, V> {};

template <class K, class V, class Hash, class Equal, class Allocator>
struct PickleConvert<std::unordered_map<K, V, Hash, Equal, Allocator>>
    : detail::PickleMapConvert<std::unordered_map<K, V, Hash, Equal, Allocator>, K, V> {};

template <class T>
struct PickleConvert<std::optional<T>> {
    static PickleValue to_pickle(const std::optional<T>& value) {
        return value ? PickleConvert<T>::to_pickle(*value) : PickleValue::none();
    }
    static std::optional<T> from_pickle(const PickleValue& value) {
        if (value.is_none()) return std::nullopt;
        return PickleConvert<T>::from_pickle(value);
    }
};

template <class... T>
struct PickleConvert<std::tuple<T...>> {
    static PickleValue to_pickle(const std::tuple<T...>& value) {
        return std::apply(
            [](const T&... element) { return PickleValue::tuple(PickleValue::Items{PickleConvert<T>::to_pickle(element)...}); },
            value);
    }
    static std::tuple<T...> from_pickle(const PickleValue& value) {
        if (value.kind() != PickleValue::Kind::tuple) detail::throw_pickle_conversion("tuple", value);
        if (value.items().size() != sizeof...(T)) detail::throw_pickle_tuple_size(sizeof...(T), value.items().size());
        return from_items(value.items(), std::index_sequence_for<T...>{});
    }

private:
    template <std::size_t... I>
    static std::tuple<T...> from_items(const PickleValue::Items& items, std::index_sequence<I...>) {
        return std::tuple<T...>(PickleConvert<T>::from_pickle(items[I])...);
    }
};

template <class A, class B>
struct PickleConvert<std::pair<A, B>> {
    static PickleValue to_pickle(const std::pair<A, B>& value) {
        return PickleValue::tuple(PickleValue::Items{PickleConvert<A>::to_pickle(value.first),
                                                     PickleConvert<B>::to_pickle(value.second)});
    }
    static std::pair<A, B> from_pickle(const PickleValue& value) {
        auto [first, second] = PickleConvert<std::tuple<A, B>>::from_pickle(value);
        return {std::move(first), std::move(second)};
    }
};

}  // namespace mproc
