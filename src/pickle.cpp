// src/pickle.cpp — the PickleValue type, the pickle decoder (one iterative loop over the opcodes with an
// explicit stack, its allocations bounded by the input) and the protocol-4 encoder. See mproc/pickle.hpp for
// the contract.
#include "mproc/pickle.hpp"

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace mproc {

namespace detail {

// The heap part of a PickleValue. Immutable once a value is handed out; the decoder alone mutates the
// containers it is building.
struct PickleStorage {
    std::string bytes;  // str (UTF-8), bytes, bytearray, big int (shortest two's complement, little-endian)
    PickleValue::Items items;         // list, tuple, set, frozenset
    PickleValue::DictItems dict;      // dict
    std::uint32_t depth = 0;          // containers: 1 + the deepest element's depth
    bool referenced = false;          // decoder: GET or DUP handed out a second reference (no more changes)
};

namespace {

std::string hex_byte(unsigned value) {
    char text[8];
    std::snprintf(text, sizeof text, "0x%02x", value & 0xffu);
    return text;
}

// Checks UTF-8 as Python's pickle decodes it ('utf-8', 'surrogatepass'): shortest forms only, code points up
// to U+10FFFF, encoded surrogates (U+D800..U+DFFF) accepted. Returns the offset of the first bad byte, or
// text.size() when all is well. Calls each code point's value to `emit` when given.
template <class Emit>
std::size_t check_utf8(std::string_view text, Emit emit) {
    std::size_t i = 0;
    while (i < text.size()) {
        const unsigned lead = static_cast<unsigned char>(text[i]);
        if (lead < 0x80) {
            if (!emit(lead)) return i;
            ++i;
            continue;
        }
        std::size_t length;
        std::uint32_t point;
        std::uint32_t minimum;
        if (lead >= 0xc2 && lead <= 0xdf) {
            length = 2, point = lead & 0x1fu, minimum = 0x80;
        } else if (lead >= 0xe0 && lead <= 0xef) {
            length = 3, point = lead & 0x0fu, minimum = 0x800;
        } else if (lead >= 0xf0 && lead <= 0xf4) {
            length = 4, point = lead & 0x07u, minimum = 0x10000;
        } else {
            return i;
        }
        if (text.size() - i < length) return i;
        for (std::size_t k = 1; k < length; ++k) {
            const unsigned next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xc0u) != 0x80u) return i;
            point = (point << 6) | (next & 0x3fu);
        }
        if (point < minimum || point > 0x10ffff) return i;
        if (!emit(point)) return i;
        i += length;
    }
    return text.size();
}

bool is_utf8(std::string_view text) {
    return check_utf8(text, [](std::uint32_t) { return true; }) == text.size();
}

std::uint64_t float_bits(double value) { return std::bit_cast<std::uint64_t>(value); }

// Shortest two's-complement little-endian form: drops top bytes that only repeat the sign.
void shorten_twos_complement(std::string& bytes) {
    while (!bytes.empty()) {
        const auto top = static_cast<unsigned char>(bytes.back());
        if (bytes.size() == 1) {
            if (top == 0) bytes.clear();
            break;
        }
        const auto below = static_cast<unsigned char>(bytes[bytes.size() - 2]);
        if ((top == 0x00 && (below & 0x80u) == 0) || (top == 0xff && (below & 0x80u) != 0))
            bytes.pop_back();
        else
            break;
    }
}

std::string int64_bytes(std::int64_t value) {
    std::string bytes(8, '\0');
    for (std::size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>(static_cast<std::uint64_t>(value) >> (8 * i));
    shorten_twos_complement(bytes);
    return bytes;
}

}  // namespace

void throw_pickle_conversion(const char* expected, const PickleValue& got) {
    throw DecodeError(std::string("pickle value: expected ") + expected + ", got " + got.kind_name());
}

void throw_pickle_out_of_range(const PickleValue& got, const char* target) {
    std::string shown;
    if (got.fits_int64())
        shown = std::to_string(got.as_int64());
    else
        shown = "an int of " + std::to_string(got.integer_bytes().size()) + " bytes";
    throw DecodeError("pickle value: " + shown + " does not fit in " + target);
}

void throw_pickle_tuple_size(std::size_t expected, std::size_t got) {
    throw DecodeError("pickle value: expected a tuple of " + std::to_string(expected) + " elements, got " +
                      std::to_string(got));
}

// Builds storage for the factories and the decoder.
struct PickleStorageAccess {
    static PickleValue make(PickleValue::Kind kind, std::shared_ptr<PickleStorage> storage) {
        PickleValue value;
        value.kind_ = kind;
        value.storage_ = std::move(storage);
        return value;
    }
};

}  // namespace detail

using detail::PickleStorage;
using Kind = PickleValue::Kind;

// ---------------------------------------------------------------------------------------------------------
// PickleValue

const char* PickleValue::kind_name(Kind kind) noexcept {
    switch (kind) {
        case Kind::none: return "None";
        case Kind::boolean: return "bool";
        case Kind::integer: return "int";
        case Kind::floating: return "float";
        case Kind::str: return "str";
        case Kind::bytes: return "bytes";
        case Kind::bytearray: return "bytearray";
        case Kind::list: return "list";
        case Kind::tuple: return "tuple";
        case Kind::dict: return "dict";
        case Kind::set: return "set";
        case Kind::frozenset: return "frozenset";
    }
    return "?";
}

PickleValue PickleValue::boolean(bool value) noexcept {
    PickleValue result;
    result.kind_ = Kind::boolean;
    result.integer_ = value ? 1 : 0;
    return result;
}

PickleValue PickleValue::integer(std::int64_t value) noexcept {
    PickleValue result;
    result.kind_ = Kind::integer;
    result.integer_ = value;
    return result;
}

namespace {
// An int from its (any-length) two's-complement bytes, inline when the shortest form has at most 8 bytes.
PickleValue integer_from_string(std::string bytes) {
    detail::shorten_twos_complement(bytes);
    if (bytes.size() <= 8) {
        std::uint64_t bits = 0;
        for (std::size_t i = 0; i < bytes.size(); ++i)
            bits |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
        if (!bytes.empty() && (static_cast<unsigned char>(bytes.back()) & 0x80u) != 0 && bytes.size() < 8)
            bits |= ~std::uint64_t{0} << (8 * bytes.size());  // sign extension
        return PickleValue::integer(static_cast<std::int64_t>(bits));
    }
    auto storage = std::make_shared<PickleStorage>();
    storage->bytes = std::move(bytes);
    return detail::PickleStorageAccess::make(Kind::integer, std::move(storage));
}

std::shared_ptr<PickleStorage> storage_of_bytes(std::string_view data) {
    auto storage = std::make_shared<PickleStorage>();
    storage->bytes.assign(data.data(), data.size());
    return storage;
}

std::string_view view_of(std::span<const std::byte> data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

std::uint32_t depth_of_items(const PickleValue::Items& items) {
    std::size_t depth = 0;
    for (const PickleValue& item : items) depth = std::max(depth, item.depth());
    if (depth + 1 > kPickleMaxDepth)
        throw ValueError("pickle value: nesting deeper than " + std::to_string(kPickleMaxDepth) + " containers");
    return static_cast<std::uint32_t>(depth + 1);
}

PickleValue container_of(Kind kind, PickleValue::Items items) {
    auto storage = std::make_shared<PickleStorage>();
    storage->depth = depth_of_items(items);
    storage->items = std::move(items);
    return detail::PickleStorageAccess::make(kind, std::move(storage));
}
}  // namespace

PickleValue PickleValue::integer_from_bytes(std::span<const std::byte> twos_complement_little_endian) {
    return integer_from_string(std::string(view_of(twos_complement_little_endian)));
}

PickleValue PickleValue::floating(double value) noexcept {
    PickleValue result;
    result.kind_ = Kind::floating;
    result.floating_ = value;
    return result;
}

PickleValue PickleValue::str(std::string_view utf8) {
    if (!detail::is_utf8(utf8)) throw ValueError("pickle value: str from bytes that are not UTF-8");
    return detail::PickleStorageAccess::make(Kind::str, storage_of_bytes(utf8));
}

PickleValue PickleValue::bytes(std::span<const std::byte> data) {
    return detail::PickleStorageAccess::make(Kind::bytes, storage_of_bytes(view_of(data)));
}

PickleValue PickleValue::bytearray(std::span<const std::byte> data) {
    return detail::PickleStorageAccess::make(Kind::bytearray, storage_of_bytes(view_of(data)));
}

PickleValue PickleValue::list(Items items) { return container_of(Kind::list, std::move(items)); }
PickleValue PickleValue::tuple(Items items) { return container_of(Kind::tuple, std::move(items)); }
PickleValue PickleValue::set(Items items) { return container_of(Kind::set, std::move(items)); }
PickleValue PickleValue::frozenset(Items items) { return container_of(Kind::frozenset, std::move(items)); }

PickleValue PickleValue::dict(DictItems items) {
    std::size_t depth = 0;
    for (const auto& [key, value] : items) depth = std::max({depth, key.depth(), value.depth()});
    if (depth + 1 > kPickleMaxDepth)
        throw ValueError("pickle value: nesting deeper than " + std::to_string(kPickleMaxDepth) + " containers");
    auto storage = std::make_shared<PickleStorage>();
    storage->depth = static_cast<std::uint32_t>(depth + 1);
    storage->dict = std::move(items);
    return detail::PickleStorageAccess::make(Kind::dict, std::move(storage));
}

void PickleValue::expect(Kind kind) const {
    if (kind_ != kind) detail::throw_pickle_conversion(kind_name(kind), *this);
}

void PickleValue::expect_one_of(Kind first, Kind second) const {
    if (kind_ != first && kind_ != second)
        detail::throw_pickle_conversion((std::string(kind_name(first)) + " or " + kind_name(second)).c_str(), *this);
}

bool PickleValue::as_bool() const {
    expect(Kind::boolean);
    return integer_ != 0;
}

std::int64_t PickleValue::as_int64() const {
    expect(Kind::integer);
    if (storage_) detail::throw_pickle_out_of_range(*this, "a 64-bit integer");
    return integer_;
}

std::vector<std::byte> PickleValue::integer_bytes() const {
    expect(Kind::integer);
    const std::string bytes = storage_ ? storage_->bytes : detail::int64_bytes(integer_);
    const auto* first = reinterpret_cast<const std::byte*>(bytes.data());
    return {first, first + bytes.size()};
}

double PickleValue::as_double() const {
    if (kind_ == Kind::integer && !storage_) {
        const auto converted = static_cast<double>(integer_);
        // Exactly representable: the double converts back to the same int (2^63 itself does not fit back).
        if (converted >= -9223372036854775808.0 && converted < 9223372036854775808.0 &&
            static_cast<std::int64_t>(converted) == integer_)
            return converted;
        throw DecodeError("pickle value: int " + std::to_string(integer_) + " is not exactly a float");
    }
    expect(Kind::floating);
    return floating_;
}

const std::string& PickleValue::as_str() const {
    expect(Kind::str);
    return storage_->bytes;
}

std::span<const std::byte> PickleValue::as_bytes() const {
    expect_one_of(Kind::bytes, Kind::bytearray);
    return {reinterpret_cast<const std::byte*>(storage_->bytes.data()), storage_->bytes.size()};
}

const PickleValue::Items& PickleValue::items() const {
    if (kind_ != Kind::list && kind_ != Kind::tuple && kind_ != Kind::set && kind_ != Kind::frozenset)
        detail::throw_pickle_conversion("list, tuple, set or frozenset", *this);
    return storage_->items;
}

const PickleValue::DictItems& PickleValue::dict_items() const {
    expect(Kind::dict);
    return storage_->dict;
}

std::size_t PickleValue::depth() const noexcept { return storage_ ? storage_->depth : 0; }

namespace {

// Pairs of shared storages already found equal: a value whose parts are shared (a memo-heavy pickle) is
// compared in time proportional to its stored size, not to its expanded size.
using StoragePair = std::pair<const PickleStorage*, const PickleStorage*>;
struct StoragePairHash {
    std::size_t operator()(const StoragePair& pair) const noexcept {
        return std::hash<const void*>()(pair.first) * 31 ^ std::hash<const void*>()(pair.second);
    }
};
using EqualPairs = std::unordered_set<StoragePair, StoragePairHash>;

bool equal(const PickleValue& a, const PickleValue& b, EqualPairs& known);

bool equal_storage(Kind kind, const std::shared_ptr<PickleStorage>& a, const std::shared_ptr<PickleStorage>& b,
                   EqualPairs& known) {
    if (a == b) return true;
    if (!a || !b) return false;
    const bool shared = a.use_count() > 1 && b.use_count() > 1;
    if (shared && known.contains({a.get(), b.get()})) return true;
    bool same = false;
    switch (kind) {
        case Kind::dict:
            same = a->dict.size() == b->dict.size() &&
                   std::equal(a->dict.begin(), a->dict.end(), b->dict.begin(), [&](const auto& x, const auto& y) {
                       return equal(x.first, y.first, known) && equal(x.second, y.second, known);
                   });
            break;
        case Kind::list:
        case Kind::tuple:
        case Kind::set:
        case Kind::frozenset:
            same = a->items.size() == b->items.size() &&
                   std::equal(a->items.begin(), a->items.end(), b->items.begin(),
                              [&](const PickleValue& x, const PickleValue& y) { return equal(x, y, known); });
            break;
        default:
            same = a->bytes == b->bytes;
    }
    if (same && shared) known.insert({a.get(), b.get()});
    return same;
}

}  // namespace

namespace detail {
struct PickleEqual {
    static bool equal(const PickleValue& a, const PickleValue& b, EqualPairs& known) {
        if (a.kind_ != b.kind_) return false;
        switch (a.kind_) {
            case Kind::none: return true;
            case Kind::boolean: return a.integer_ == b.integer_;
            case Kind::floating: return float_bits(a.floating_) == float_bits(b.floating_);
            case Kind::integer:
                if (!a.storage_ && !b.storage_) return a.integer_ == b.integer_;
                break;
            default: break;
        }
        return equal_storage(a.kind_, a.storage_, b.storage_, known);
    }
};
}  // namespace detail

namespace {
bool equal(const PickleValue& a, const PickleValue& b, EqualPairs& known) { return detail::PickleEqual::equal(a, b, known); }
}  // namespace

bool operator==(const PickleValue& a, const PickleValue& b) {
    EqualPairs known;
    return equal(a, b, known);
}

// ---------------------------------------------------------------------------------------------------------
// Decoder

namespace detail {

namespace {

// Python's opcode names (pickletools), for messages; nullptr for a byte that is no opcode.
const char* opcode_name(unsigned op) {
    switch (op) {
        case '(': return "MARK";
        case '.': return "STOP";
        case '0': return "POP";
        case '1': return "POP_MARK";
        case '2': return "DUP";
        case 'F': return "FLOAT";
        case 'I': return "INT";
        case 'J': return "BININT";
        case 'K': return "BININT1";
        case 'L': return "LONG";
        case 'M': return "BININT2";
        case 'N': return "NONE";
        case 'P': return "PERSID";
        case 'Q': return "BINPERSID";
        case 'R': return "REDUCE";
        case 'S': return "STRING";
        case 'T': return "BINSTRING";
        case 'U': return "SHORT_BINSTRING";
        case 'V': return "UNICODE";
        case 'X': return "BINUNICODE";
        case 'a': return "APPEND";
        case 'b': return "BUILD";
        case 'c': return "GLOBAL";
        case 'd': return "DICT";
        case '}': return "EMPTY_DICT";
        case 'e': return "APPENDS";
        case 'g': return "GET";
        case 'h': return "BINGET";
        case 'i': return "INST";
        case 'j': return "LONG_BINGET";
        case 'l': return "LIST";
        case ']': return "EMPTY_LIST";
        case 'o': return "OBJ";
        case 'p': return "PUT";
        case 'q': return "BINPUT";
        case 'r': return "LONG_BINPUT";
        case 's': return "SETITEM";
        case 't': return "TUPLE";
        case ')': return "EMPTY_TUPLE";
        case 'u': return "SETITEMS";
        case 'G': return "BINFLOAT";
        case 'B': return "BINBYTES";
        case 'C': return "SHORT_BINBYTES";
        case 0x80: return "PROTO";
        case 0x81: return "NEWOBJ";
        case 0x82: return "EXT1";
        case 0x83: return "EXT2";
        case 0x84: return "EXT4";
        case 0x85: return "TUPLE1";
        case 0x86: return "TUPLE2";
        case 0x87: return "TUPLE3";
        case 0x88: return "NEWTRUE";
        case 0x89: return "NEWFALSE";
        case 0x8a: return "LONG1";
        case 0x8b: return "LONG4";
        case 0x8c: return "SHORT_BINUNICODE";
        case 0x8d: return "BINUNICODE8";
        case 0x8e: return "BINBYTES8";
        case 0x8f: return "EMPTY_SET";
        case 0x90: return "ADDITEMS";
        case 0x91: return "FROZENSET";
        case 0x92: return "NEWOBJ_EX";
        case 0x93: return "STACK_GLOBAL";
        case 0x94: return "MEMOIZE";
        case 0x95: return "FRAME";
        case 0x96: return "BYTEARRAY8";
        case 0x97: return "NEXT_BUFFER";
        case 0x98: return "READONLY_BUFFER";
        default: return nullptr;
    }
}

// The five callables protocol 2 and 3 pickles use for bytes, bytearray, set and frozenset: recognised by
// name and built by the decoder, never looked up.
enum class Builtin : std::uint8_t { none, set, frozenset, bytearray, bytes, codecs_encode };

Builtin builtin_named(std::string_view module, std::string_view name) {
    if (module == "builtins" || module == "__builtin__") {
        if (name == "set") return Builtin::set;
        if (name == "frozenset") return Builtin::frozenset;
        if (name == "bytearray") return Builtin::bytearray;
        if (name == "bytes") return Builtin::bytes;
    }
    if (module == "_codecs" && name == "encode") return Builtin::codecs_encode;
    return Builtin::none;
}

const char* builtin_name(Builtin builtin) {
    switch (builtin) {
        case Builtin::set: return "builtins.set";
        case Builtin::frozenset: return "builtins.frozenset";
        case Builtin::bytearray: return "builtins.bytearray";
        case Builtin::bytes: return "builtins.bytes";
        case Builtin::codecs_encode: return "_codecs.encode";
        case Builtin::none: break;
    }
    return "nothing";
}

// A stack or memo entry: a value, or one of the recognised callables (which only REDUCE may consume).
struct Entry {
    PickleValue value;
    Builtin callable = Builtin::none;
    bool stored = false;  // memo: an entry PUT or MEMOIZE wrote (the dense memo has gaps)
};

}  // namespace

struct PickleDecoder {
    explicit PickleDecoder(std::span<const std::byte> input)
        : data_(reinterpret_cast<const unsigned char*>(input.data())), size_(input.size()), copy_budget_(input.size()) {}

    PickleValue run();

private:
    [[noreturn]] void fail(const std::string& what) const {
        const char* name = opcode_name(op_);
        throw DecodeError("pickle: " + std::string(name ? name : "opcode") + " (" + hex_byte(op_) + ") at offset " +
                          std::to_string(at_) + ": " + what);
    }

    // The next n bytes of the opcode's argument; DecodeError when fewer are left. n is checked against the
    // bytes left before anything is allocated for it.
    const unsigned char* take(std::uint64_t n) {
        if (n > size_ - pos_)
            fail("needs " + std::to_string(n) + " bytes of argument, " + std::to_string(size_ - pos_) + " left");
        const unsigned char* at = data_ + pos_;
        pos_ += static_cast<std::size_t>(n);
        return at;
    }
    std::uint64_t take_le(std::size_t width) {
        const unsigned char* at = take(width);
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < width; ++i) value |= static_cast<std::uint64_t>(at[i]) << (8 * i);
        return value;
    }
    std::string_view take_string(std::uint64_t length) {
        return {reinterpret_cast<const char*>(take(length)), static_cast<std::size_t>(length)};
    }
    // One line of a GLOBAL argument (module or name), without its newline.
    std::string_view take_line() {
        const void* newline = std::memchr(data_ + pos_, '\n', size_ - pos_);
        if (newline == nullptr) fail("argument has no terminating newline");
        const std::size_t length = static_cast<std::size_t>(static_cast<const unsigned char*>(newline) - (data_ + pos_));
        std::string_view line(reinterpret_cast<const char*>(data_ + pos_), length);
        pos_ += length + 1;
        return line;
    }

    // Entries above the innermost mark: stack operations never reach below it.
    std::size_t available() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }
    void need_entries(std::size_t n) const {
        if (available() < n)
            fail("needs " + std::to_string(n) + " stack entries above the mark, " + std::to_string(available()) +
                 " there");
    }
    std::size_t pop_mark() {
        if (marks_.empty()) fail("no MARK to pop");
        const std::size_t start = marks_.back();
        marks_.pop_back();
        return start;
    }
    // A value (not a callable) that may be stored in a container or returned.
    PickleValue& as_value(Entry& entry) const {
        if (entry.callable != Builtin::none)
            fail(std::string("uses the callable ") + builtin_name(entry.callable) +
                 " as data; it may only be called by REDUCE");
        return entry.value;
    }
    PickleValue pop_value() {
        need_entries(1);
        PickleValue value = std::move(as_value(stack_.back()));
        stack_.pop_back();
        return value;
    }
    void push(PickleValue value) { stack_.push_back(Entry{std::move(value), Builtin::none}); }

    // The container an APPEND/SETITEM/ADDITEMS modifies, at stack index `index`.
    PickleStorage& target(std::size_t index, Kind kind) {
        PickleValue& value = as_value(stack_[index]);
        if (value.kind_ != kind)
            fail(std::string("adds to a ") + value.kind_name() + ", expected a " + PickleValue::kind_name(kind));
        if (value.storage_->referenced)
            fail(std::string("modifies a ") + value.kind_name() +
                 " already referenced again through the memo or DUP (a recursive structure), not supported");
        return *value.storage_;
    }
    void grow_depth(PickleStorage& container, const PickleValue& element) const {
        const std::size_t depth = element.depth() + 1;
        if (depth > kPickleMaxDepth)
            fail("nesting deeper than " + std::to_string(kPickleMaxDepth) + " containers");
        container.depth = std::max(container.depth, static_cast<std::uint32_t>(depth));
    }
    // A new container holding stack entries [start, end), which are removed.
    PickleValue collect(Kind kind, std::size_t start) {
        auto storage = std::make_shared<PickleStorage>();
        storage->depth = 1;
        storage->items.reserve(stack_.size() - start);
        for (std::size_t i = start; i < stack_.size(); ++i) {
            PickleValue& element = as_value(stack_[i]);
            grow_depth(*storage, element);
            storage->items.push_back(std::move(element));
        }
        stack_.resize(start);
        return PickleStorageAccess::make(kind, std::move(storage));
    }
    PickleValue empty_container(Kind kind) {
        auto storage = std::make_shared<PickleStorage>();
        storage->depth = 1;
        return PickleStorageAccess::make(kind, std::move(storage));
    }
    void add_dict_items(PickleStorage& dict, std::size_t start) {
        if ((stack_.size() - start) % 2 != 0) fail("odd number of entries for a dict's keys and values");
        reserve_for(dict.dict, (stack_.size() - start) / 2);
        for (std::size_t i = start; i < stack_.size(); i += 2) {
            PickleValue& key = as_value(stack_[i]);
            PickleValue& value = as_value(stack_[i + 1]);
            grow_depth(dict, key);
            grow_depth(dict, value);
            dict.dict.emplace_back(std::move(key), std::move(value));
        }
        stack_.resize(start);
    }
    void add_items(PickleStorage& container, std::size_t start) {
        reserve_for(container.items, stack_.size() - start);
        for (std::size_t i = start; i < stack_.size(); ++i) {
            PickleValue& element = as_value(stack_[i]);
            grow_depth(container, element);
            container.items.push_back(std::move(element));
        }
        stack_.resize(start);
    }
    // Room for `extra` more elements in one allocation, growing geometrically (APPEND adds one at a time).
    template <class Vector>
    static void reserve_for(Vector& vector, std::size_t extra) {
        const std::size_t needed = vector.size() + extra;
        if (needed > vector.capacity()) vector.reserve(std::max(needed, 2 * vector.capacity()));
    }
    // Copies made by protocol-2 calls are charged here, so that a pickle calling set() on one shared list
    // many times cannot allocate more than a bound of its size.
    void charge_copy(std::size_t elements) {
        if (elements > copy_budget_)
            fail("copies more elements than the pickle has bytes (" + std::to_string(size_) + ")");
        copy_budget_ -= elements;
    }

    PickleValue decode_str(std::string_view text) {
        const std::size_t bad = check_utf8(text, [](std::uint32_t) { return true; });
        if (bad != text.size()) fail("str is not UTF-8 at its byte " + std::to_string(bad));
        return PickleStorageAccess::make(Kind::str, storage_of_bytes(text));
    }
    PickleValue decode_long(std::uint64_t length) { return integer_from_string(std::string(take_string(length))); }
    // The memo: indices below the input size (all Python writes: each memoized object takes at least one
    // byte) in a vector that never grows past the input size, any others in a map.
    void memo_put(std::uint64_t index) {
        need_entries(1);
        Entry entry = stack_.back();
        entry.stored = true;
        if (index < size_) {
            if (index >= memo_dense_.size())
                memo_dense_.resize(std::min<std::size_t>(size_, std::max<std::size_t>(index + 1, 2 * memo_dense_.size())));
            if (!memo_dense_[index].stored) ++memo_count_;
            memo_dense_[index] = std::move(entry);
        } else {
            if (memo_sparse_.insert_or_assign(index, std::move(entry)).second) ++memo_count_;
        }
    }
    void memo_get(std::uint64_t index) {
        const Entry* found = nullptr;
        if (index < memo_dense_.size()) {
            if (memo_dense_[index].stored) found = &memo_dense_[index];
        } else if (const auto sparse = memo_sparse_.find(index); sparse != memo_sparse_.end()) {
            found = &sparse->second;
        }
        if (found == nullptr) fail("memo entry " + std::to_string(index) + " was never stored");
        Entry entry = *found;
        entry.stored = false;
        if (entry.value.storage_) entry.value.storage_->referenced = true;
        stack_.push_back(std::move(entry));
    }
    void global(std::string_view module, std::string_view name) {
        const Builtin builtin = builtin_named(module, name);
        if (builtin == Builtin::none)
            fail("names " + std::string(module) + "." + std::string(name) +
                 ": classes and functions are never unpickled (only builtins.set, frozenset, bytearray, bytes and "
                 "_codecs.encode are understood, as data)");
        stack_.push_back(Entry{PickleValue(), builtin});
    }
    void reduce();

    const unsigned char* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    std::size_t at_ = 0;  // offset of the opcode being decoded
    unsigned op_ = 0;
    std::size_t copy_budget_;
    std::vector<Entry> stack_;
    std::vector<std::size_t> marks_;
    std::vector<Entry> memo_dense_;
    std::unordered_map<std::uint64_t, Entry> memo_sparse_;
    std::size_t memo_count_ = 0;  // len(memo) in Python's unpickler: where MEMOIZE stores
};

void PickleDecoder::reduce() {
    need_entries(2);
    PickleValue arguments = pop_value();
    Entry callable = std::move(stack_.back());
    stack_.pop_back();
    if (callable.callable == Builtin::none)
        fail(std::string("calls a ") + callable.value.kind_name() + ": nothing is ever called");
    if (arguments.kind_ != Kind::tuple)
        fail(std::string(builtin_name(callable.callable)) + " with arguments in a " + arguments.kind_name() +
             ", expected a tuple");
    const PickleValue::Items& args = arguments.storage_->items;
    const auto shape_error = [&](const char* expected) {
        fail(std::string(builtin_name(callable.callable)) + " called with " + std::to_string(args.size()) +
             " arguments of the wrong kinds, expected " + expected);
    };
    switch (callable.callable) {
        case Builtin::set:
        case Builtin::frozenset: {
            const Kind kind = callable.callable == Builtin::set ? Kind::set : Kind::frozenset;
            if (args.empty()) {
                push(empty_container(kind));
                return;
            }
            if (args.size() != 1 || (args[0].kind_ != Kind::list && args[0].kind_ != Kind::tuple))
                shape_error("() or (list,)");
            const PickleValue::Items& source = args[0].storage_->items;
            charge_copy(source.size());
            auto storage = std::make_shared<PickleStorage>();
            storage->depth = args[0].storage_->depth;
            storage->items = source;
            push(PickleStorageAccess::make(kind, std::move(storage)));
            return;
        }
        case Builtin::bytearray:
        case Builtin::bytes: {
            const Kind kind = callable.callable == Builtin::bytes ? Kind::bytes : Kind::bytearray;
            if (args.empty()) {
                push(PickleStorageAccess::make(kind, std::make_shared<PickleStorage>()));
                return;
            }
            if (args.size() != 1 || args[0].kind_ != Kind::bytes) shape_error("() or (bytes,)");
            charge_copy(args[0].storage_->bytes.size());
            push(PickleStorageAccess::make(kind, storage_of_bytes(args[0].storage_->bytes)));
            return;
        }
        case Builtin::codecs_encode: {
            if (args.size() != 2 || args[0].kind_ != Kind::str || args[1].kind_ != Kind::str ||
                (args[1].storage_->bytes != "latin1" && args[1].storage_->bytes != "latin-1"))
                shape_error("(str, 'latin1')");
            const std::string& text = args[0].storage_->bytes;
            charge_copy(text.size());
            auto storage = std::make_shared<PickleStorage>();
            storage->bytes.reserve(text.size());
            const std::size_t bad = check_utf8(text, [&](std::uint32_t point) {
                if (point > 0xff) return false;
                storage->bytes.push_back(static_cast<char>(point));
                return true;
            });
            if (bad != text.size()) fail("_codecs.encode of a str with a character beyond latin-1");
            push(PickleStorageAccess::make(Kind::bytes, std::move(storage)));
            return;
        }
        case Builtin::none: break;
    }
}

PickleValue PickleDecoder::run() {
    for (;;) {
        if (pos_ == size_) {
            at_ = pos_;
            throw DecodeError("pickle: truncated: no STOP opcode in " + std::to_string(size_) + " bytes");
        }
        at_ = pos_;
        op_ = data_[pos_++];
        switch (op_) {
            case 0x80: {  // PROTO
                const unsigned protocol = *take(1);
                if (protocol > 5) fail("protocol " + std::to_string(protocol) + " is newer than 5");
                break;
            }
            case 0x95: {  // FRAME: a length hint for buffered readers; the whole pickle is in memory already
                const std::uint64_t length = take_le(8);
                if (length > size_ - pos_)
                    fail("frame of " + std::to_string(length) + " bytes, " + std::to_string(size_ - pos_) + " left");
                break;
            }
            case '.': {  // STOP
                PickleValue result = pop_value();
                if (!stack_.empty() || !marks_.empty())
                    fail(std::to_string(stack_.size()) + " stack entries and " + std::to_string(marks_.size()) +
                         " marks left over");
                if (pos_ != size_) fail(std::to_string(size_ - pos_) + " bytes after STOP");
                return result;
            }
            case 'N': push(PickleValue()); break;
            case 0x88: push(PickleValue::boolean(true)); break;
            case 0x89: push(PickleValue::boolean(false)); break;
            case 'J': push(PickleValue::integer(static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4))))); break;
            case 'K': push(PickleValue::integer(static_cast<std::int64_t>(take_le(1)))); break;
            case 'M': push(PickleValue::integer(static_cast<std::int64_t>(take_le(2)))); break;
            case 0x8a: push(decode_long(take_le(1))); break;  // LONG1
            case 0x8b: {  // LONG4
                const auto length = static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4)));
                if (length < 0) fail("negative length " + std::to_string(length));
                push(decode_long(static_cast<std::uint64_t>(length)));
                break;
            }
            case 'G': {  // BINFLOAT: big-endian IEEE 754 double
                const unsigned char* at = take(8);
                std::uint64_t bits = 0;
                for (std::size_t i = 0; i < 8; ++i) bits = (bits << 8) | at[i];
                push(PickleValue::floating(std::bit_cast<double>(bits)));
                break;
            }
            case 0x8c: push(decode_str(take_string(take_le(1)))); break;  // SHORT_BINUNICODE
            case 'X': push(decode_str(take_string(take_le(4)))); break;   // BINUNICODE
            case 0x8d: push(decode_str(take_string(take_le(8)))); break;  // BINUNICODE8
            case 'U':                                                     // SHORT_BINSTRING
            case 'T': {                                                   // BINSTRING (Python 2 str, ASCII)
                std::string_view text;
                if (op_ == 'U') {
                    text = take_string(take_le(1));
                } else {
                    const auto length = static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4)));
                    if (length < 0) fail("negative length " + std::to_string(length));
                    text = take_string(static_cast<std::uint64_t>(length));
                }
                if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
                    fail("Python 2 str with bytes beyond ASCII");
                push(PickleStorageAccess::make(Kind::str, storage_of_bytes(text)));
                break;
            }
            case 'C': push(PickleStorageAccess::make(Kind::bytes, storage_of_bytes(take_string(take_le(1))))); break;
            case 'B': push(PickleStorageAccess::make(Kind::bytes, storage_of_bytes(take_string(take_le(4))))); break;
            case 0x8e: push(PickleStorageAccess::make(Kind::bytes, storage_of_bytes(take_string(take_le(8))))); break;
            case 0x96:
                push(PickleStorageAccess::make(Kind::bytearray, storage_of_bytes(take_string(take_le(8)))));
                break;
            case ')': push(empty_container(Kind::tuple)); break;
            case 0x85:
            case 0x86:
            case 0x87: {  // TUPLE1..3
                const std::size_t count = op_ - 0x84u;
                need_entries(count);
                push(collect(Kind::tuple, stack_.size() - count));
                break;
            }
            case 't': push(collect(Kind::tuple, pop_mark())); break;
            case ']': push(empty_container(Kind::list)); break;
            case 'l': push(collect(Kind::list, pop_mark())); break;
            case '}': push(empty_container(Kind::dict)); break;
            case 'd': {
                const std::size_t start = pop_mark();
                PickleValue dict = empty_container(Kind::dict);
                add_dict_items(*dict.storage_, start);
                push(std::move(dict));
                break;
            }
            case 0x8f: push(empty_container(Kind::set)); break;
            case 0x91: push(collect(Kind::frozenset, pop_mark())); break;
            case 'a': {  // APPEND
                need_entries(2);
                add_items(target(stack_.size() - 2, Kind::list), stack_.size() - 1);
                break;
            }
            case 'e':     // APPENDS
            case 'u':     // SETITEMS
            case 0x90: {  // ADDITEMS
                const std::size_t start = pop_mark();
                const std::size_t fence = marks_.empty() ? 0 : marks_.back();
                if (start == 0 || start - 1 < fence) fail("no container below the mark");
                PickleStorage& container =
                    target(start - 1, op_ == 'e' ? Kind::list : op_ == 'u' ? Kind::dict : Kind::set);
                if (op_ == 'u')
                    add_dict_items(container, start);
                else
                    add_items(container, start);
                break;
            }
            case 's': {  // SETITEM
                need_entries(3);
                add_dict_items(target(stack_.size() - 3, Kind::dict), stack_.size() - 2);
                break;
            }
            case '(': marks_.push_back(stack_.size()); break;
            case '0':  // POP: the top entry, or the innermost mark when nothing is above it (as Python does)
                if (available() > 0)
                    stack_.pop_back();
                else if (!marks_.empty())
                    marks_.pop_back();
                else
                    fail("stack is empty");
                break;
            case '1': stack_.resize(pop_mark()); break;  // POP_MARK
            case '2': {                                   // DUP
                need_entries(1);
                Entry copy = stack_.back();
                if (copy.value.storage_) copy.value.storage_->referenced = true;
                stack_.push_back(std::move(copy));
                break;
            }
            case 0x94: memo_put(memo_count_); break;  // MEMOIZE
            case 'q': memo_put(take_le(1)); break;      // BINPUT
            case 'r': memo_put(take_le(4)); break;      // LONG_BINPUT
            case 'h': memo_get(take_le(1)); break;      // BINGET
            case 'j': memo_get(take_le(4)); break;      // LONG_BINGET
            case 'c': {                                 // GLOBAL "module\nname\n"
                const std::string_view module = take_line();
                const std::string_view name = take_line();
                global(module, name);
                break;
            }
            case 0x93: {  // STACK_GLOBAL
                need_entries(2);
                const PickleValue name = pop_value();
                const PickleValue module = pop_value();
                if (module.kind_ != Kind::str || name.kind_ != Kind::str) fail("module and name must be str");
                global(module.storage_->bytes, name.storage_->bytes);
                break;
            }
            case 'R': reduce(); break;
            case 'b':
            case 'i':
            case 'o':
            case 0x81:
            case 0x92:
            case 'P':
            case 'Q':
            case 0x82:
            case 0x83:
            case 0x84: fail("instantiates or calls an object by name; nothing is ever executed or instantiated"); break;
            case 0x97:
            case 0x98: fail("out-of-band buffers are not supported (Connection.send never writes them)"); break;
            case 'I':
            case 'L':
            case 'F':
            case 'S':
            case 'V':
            case 'g':
            case 'p': fail("text opcode of protocol 0, not supported (protocols 2 to 5 are)"); break;
            default: fail("unknown opcode");
        }
    }
}

}  // namespace detail

PickleValue pickle_loads(std::span<const std::byte> pickle) { return detail::PickleDecoder(pickle).run(); }

// ---------------------------------------------------------------------------------------------------------
// Encoder

namespace detail {

struct PickleEncoder {
    std::vector<std::byte> out;
    // Storage shared by several parts of the value → its memo index, once written.
    std::unordered_map<const PickleStorage*, std::uint32_t> memo;

    void op(unsigned char code) { out.push_back(static_cast<std::byte>(code)); }
    void le(std::uint64_t value, std::size_t width) {
        for (std::size_t i = 0; i < width; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
    }
    void raw(std::string_view bytes) {
        const auto* first = reinterpret_cast<const std::byte*>(bytes.data());
        out.insert(out.end(), first, first + bytes.size());
    }
    // A length-prefixed argument with the shortest of the three opcodes (1-, 4- or 8-byte length).
    void sized(unsigned char op1, unsigned char op4, unsigned char op8, std::string_view bytes) {
        if (bytes.size() < 256) {
            op(op1), le(bytes.size(), 1);
        } else if (bytes.size() <= 0xffffffffu) {
            op(op4), le(bytes.size(), 4);
        } else {
            op(op8), le(bytes.size(), 8);
        }
        raw(bytes);
    }
    // Shared storage already written → BINGET/LONG_BINGET and true.
    bool reference(const std::shared_ptr<PickleStorage>& storage) {
        if (!storage || storage.use_count() < 2) return false;
        const auto found = memo.find(storage.get());
        if (found == memo.end()) return false;
        if (found->second < 256) {
            op('h'), le(found->second, 1);
        } else {
            op('j'), le(found->second, 4);
        }
        return true;
    }
    void remember(const std::shared_ptr<PickleStorage>& storage) {
        if (!storage || storage.use_count() < 2) return;
        const auto index = static_cast<std::uint32_t>(memo.size());
        memo.emplace(storage.get(), index);
        op(0x94);  // MEMOIZE: Python's unpickler stores at len(memo), which is this index
    }
    void batched_items(const PickleValue::Items& items, unsigned char add_many, unsigned char add_one,
                       std::size_t depth) {
        constexpr std::size_t kBatch = 1000;  // as Python's pickler
        for (std::size_t first = 0; first < items.size(); first += kBatch) {
            const std::size_t last = std::min(items.size(), first + kBatch);
            if (last - first == 1 && add_one != 0) {
                encode(items[first], depth);
                op(add_one);
                continue;
            }
            op('(');
            for (std::size_t i = first; i < last; ++i) encode(items[i], depth);
            op(add_many);
        }
    }

    void encode(const PickleValue& value, std::size_t depth) {
        if (depth > kPickleMaxDepth)
            throw ValueError("pickle_dumps: value nested deeper than " + std::to_string(kPickleMaxDepth) + " containers");
        const auto& storage = value.storage_;
        if (reference(storage)) return;
        switch (value.kind_) {
            case Kind::none: op('N'); return;
            case Kind::boolean: op(value.integer_ ? 0x88 : 0x89); return;
            case Kind::integer: {
                if (!storage) {
                    const std::int64_t v = value.integer_;
                    if (v >= 0 && v < 256) {
                        op('K'), le(static_cast<std::uint64_t>(v), 1);
                    } else if (v >= 0 && v < 65536) {
                        op('M'), le(static_cast<std::uint64_t>(v), 2);
                    } else if (v >= INT32_MIN && v <= INT32_MAX) {
                        op('J'), le(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)), 4);
                    } else {
                        const std::string bytes = int64_bytes(v);
                        op(0x8a), le(bytes.size(), 1), raw(bytes);
                    }
                    return;
                }
                if (storage->bytes.size() < 256) {
                    op(0x8a), le(storage->bytes.size(), 1);
                } else {
                    if (storage->bytes.size() > 0x7fffffffu) throw ValueError("pickle_dumps: int longer than 2^31 bytes");
                    op(0x8b), le(storage->bytes.size(), 4);
                }
                raw(storage->bytes);
                remember(storage);
                return;
            }
            case Kind::floating: {
                op('G');
                const std::uint64_t bits = std::bit_cast<std::uint64_t>(value.floating_);
                for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<std::byte>(bits >> shift));
                return;
            }
            case Kind::str: sized(0x8c, 'X', 0x8d, storage->bytes); break;
            case Kind::bytes: sized('C', 'B', 0x8e, storage->bytes); break;
            case Kind::bytearray:
                // Protocol 4 has no BYTEARRAY8: builtins.bytearray(bytes), which Python's unpickler calls.
                op(0x8c), le(8, 1), raw("builtins");
                op(0x8c), le(9, 1), raw("bytearray");
                op(0x93);
                sized('C', 'B', 0x8e, storage->bytes);
                op(0x85), op('R');
                break;
            case Kind::tuple: {
                const auto& items = storage->items;
                if (items.empty()) {
                    op(')');
                } else if (items.size() <= 3) {
                    for (const PickleValue& item : items) encode(item, depth + 1);
                    op(static_cast<unsigned char>(0x84 + items.size()));
                } else {
                    op('(');
                    for (const PickleValue& item : items) encode(item, depth + 1);
                    op('t');
                }
                break;
            }
            case Kind::frozenset:
                op('(');
                for (const PickleValue& item : storage->items) encode(item, depth + 1);
                op(0x91);
                break;
            case Kind::list:
                op(']');
                remember(storage);
                batched_items(storage->items, 'e', 'a', depth + 1);
                return;
            case Kind::set:
                op(0x8f);
                remember(storage);
                batched_items(storage->items, 0x90, 0, depth + 1);
                return;
            case Kind::dict: {
                op('}');
                remember(storage);
                constexpr std::size_t kBatch = 1000;
                const auto& items = storage->dict;
                for (std::size_t first = 0; first < items.size(); first += kBatch) {
                    const std::size_t last = std::min(items.size(), first + kBatch);
                    if (last - first > 1) op('(');
                    for (std::size_t i = first; i < last; ++i) {
                        encode(items[i].first, depth + 1);
                        encode(items[i].second, depth + 1);
                    }
                    op(last - first > 1 ? 'u' : 's');
                }
                return;
            }
        }
        remember(storage);  // str, bytes, bytearray, tuple, frozenset: after they are built
    }
};

}  // namespace detail

std::vector<std::byte> pickle_dumps(const PickleValue& value) {
    detail::PickleEncoder encoder;
    encoder.op(0x80), encoder.le(4, 1);  // PROTO 4
    encoder.encode(value, 0);
    encoder.op('.');
    return std::move(encoder.out);
}

}  // namespace mproc
