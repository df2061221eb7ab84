// mproc/codec.hpp — values as messages: a compact binary encoding of C++ objects for Queue<T>, Pipe and
// FdConnection, with a decoder that is a pure function over untrusted bytes.
//
// Defines: Encodable / Decodable (concepts), Codec<T> (the trait a user specialises), codec_fields (the ADL
// hook for aggregates), encode(), decode(), CodecWriter / CodecReader (what a Codec<T> writes and reads
// with), kCodecMaxDepth.
//
// Built in, nested to any depth up to kCodecMaxDepth: bool; arithmetic, enum and other trivially copyable
// types (their bytes, native byte order: both ends run on one machine); std::string (and std::string_view,
// encode only); std::vector; std::array; std::map; std::unordered_map; std::set; std::optional;
// std::variant; std::pair; std::tuple; std::monostate (Python's None); bytes as std::vector<std::byte>
// (and std::span<const std::byte>, encode only: it decodes as std::vector<std::byte>). A user type gets in
// through one of two hooks, which win over the trivially-copyable rule:
//   - an ADL function `codec_fields(T&)` returning std::tie of the members to carry, most simply a hidden
//     friend: `friend auto codec_fields(T& self) { return std::tie(self.a, self.b); }`. Encoding calls it
//     on a const value through const_cast and only reads the references it returns;
//   - a specialisation `template <> struct mproc::Codec<T>` with `static void encode(CodecWriter&, const T&)`,
//     `static void decode(CodecReader&, T&)` and, optionally, `static constexpr std::size_t
//     min_encoded_size` (the fewest bytes any value takes; 0 when absent).
// A decoded type must be default constructible (values are decoded in place). Pointers are refused at
// compile time. Types are not written into the message: both ends must name the same T.
//
// Format (all lengths unsigned LEB128, the shortest form only):
//   bool: one byte 0 or 1 · std::monostate: one byte 0xC0 · trivially copyable T: sizeof(T) bytes ·
//   string, bytes: length, bytes · vector, set, map, unordered_map: count, elements (maps: key, value) ·
//   array<T, N>: N elements · optional: 0 (empty) or 1 and the value · variant: alternative index, value ·
//   pair, tuple, codec_fields: the members in order (an empty tuple: one byte 0).
//
// Decoding guarantees (any bytes; tests/codec_test.cpp, fuzz/fuzz-codec.cpp):
// - It returns a value or throws DecodeError naming the type being decoded, the byte offset where the
//   fault is, and what was expected there. Nothing else: no crash, no read outside the given bytes, no
//   undefined behaviour for the built-in types. Trivially copyable user types take whatever bytes come
//   (as Queue<T> always did): a bool or an enum *inside* such a struct is not checked.
// - Truncation, bytes left over after the value, a wrong tag (bool, monostate, optional flag, variant
//   index), a length that is not the shortest LEB128 form or exceeds 64 bits, and a repeated map key or set
//   element are each a DecodeError.
// - Memory: a length is checked against the bytes left before anything is allocated for it: a string or a
//   vector of trivially copyable elements allocates exactly the bytes it then copies from the message;
//   other containers grow as elements actually decode (each takes at least one byte of the message), so a
//   length claiming 2^60 elements costs nothing. All a decode allocates is therefore at most
//   2 x R_T x (message size) plus its error message, where R_T is the largest, over the element types E of
//   the containers in T, of E's in-memory size (sizeof(E), or a tree/hash node for map, set and
//   unordered_map) divided by E's fewest encoded bytes: R = 32 for std::vector<std::string>, 8 for
//   std::vector<std::vector<double>>, 48 for std::map<std::string, std::string> (a 96-byte node per
//   2 bytes); the factor 2 is a vector's geometric growth.
// - Recursion: every container, optional, variant, tuple and user type counts one level; more than
//   kCodecMaxDepth levels is a DecodeError (decode) or ValueError (encode), so a message nested 100,000
//   deep is refused after kCodecMaxDepth frames. Only recursive user types can reach the limit.
// Costs: encode appends to a std::vector<std::byte> (one allocation when it must grow); trivially copyable
// elements of a vector or array are copied with one memcpy. Decoding allocates what the value owns.
// Hash maps decode with std::hash: an adversary choosing keys can make insertion quadratic (as with any
// std::unordered_map fed untrusted keys).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/error.hpp"

namespace mproc {

// Deeper nesting than this is refused by encode (ValueError) and decode (DecodeError).
inline constexpr std::size_t kCodecMaxDepth = 128;

// The user's trait: specialise it for a type (see the header comment). The primary template is empty.
template <class T>
struct Codec {};

// Appends a value's encoding to a byte vector.
class MPROC_API CodecWriter {
public:
    explicit CodecWriter(std::vector<std::byte>& out) noexcept : out_(out) {}

    void bytes(const void* data, std::size_t size) {
        if (size == 0) return;
        const std::size_t at = out_.size();
        out_.resize(at + size);
        std::memcpy(out_.data() + at, data, size);
    }
    void byte(std::uint8_t value) { out_.push_back(static_cast<std::byte>(value)); }
    void length(std::uint64_t value) {
        std::uint8_t buffer[10];
        std::size_t used = 0;
        do {
            const auto low = static_cast<std::uint8_t>(value & 0x7f);
            value >>= 7;
            buffer[used++] = static_cast<std::uint8_t>(low | (value != 0 ? 0x80 : 0));
        } while (value != 0);
        bytes(buffer, used);
    }
    // A nesting level: ValueError past kCodecMaxDepth. Pair with leave().
    void enter(std::string_view type);
    void leave() noexcept { --depth_; }

private:
    std::vector<std::byte>& out_;
    std::size_t depth_ = 0;
};

// Reads an encoding; every call checks the bytes left and throws DecodeError naming `type`.
class MPROC_API CodecReader {
public:
    explicit CodecReader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

    std::size_t offset() const noexcept { return at_; }
    std::size_t remaining() const noexcept { return bytes_.size() - at_; }

    // `size` bytes; DecodeError "expected <size> bytes (<what>), <n> left" when fewer are left.
    const std::byte* take(std::size_t size, std::string_view type, std::string_view what) {
        if (size > remaining()) fail_short(type, size, what);
        const std::byte* data = bytes_.data() + at_;
        at_ += size;
        return data;
    }
    std::uint8_t byte(std::string_view type, std::string_view what) {
        return std::to_integer<std::uint8_t>(*take(1, type, what));
    }
    // An LEB128 length, shortest form, at most 64 bits.
    std::uint64_t length(std::string_view type);
    // A length of elements each taking at least min_element_size bytes: DecodeError when more than the
    // bytes left could hold.
    std::size_t count(std::string_view type, std::size_t min_element_size);
    // A nesting level: DecodeError past kCodecMaxDepth. Pair with leave().
    void enter(std::string_view type);
    void leave() noexcept { --depth_; }

    [[noreturn]] void fail(std::string_view type, std::size_t offset, std::string expected) const;

private:
    [[noreturn]] void fail_short(std::string_view type, std::size_t size, std::string_view what) const;

    std::span<const std::byte> bytes_;
    std::size_t at_ = 0;
    std::size_t depth_ = 0;
};

namespace codec_detail {

template <class T, template <class...> class Template>
inline constexpr bool is_instance = false;
template <class... Args, template <class...> class Template>
inline constexpr bool is_instance<Template<Args...>, Template> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
concept has_codec_trait = requires(CodecWriter& writer, CodecReader& reader, const T& in, T& out) {
    Codec<T>::encode(writer, in);
    Codec<T>::decode(reader, out);
};

template <class T>
concept has_codec_fields = requires(T& value) { codec_fields(value); };

template <class T>
using fields_of = decltype(codec_fields(std::declval<T&>()));

template <class T>
concept byte_span = std::is_same_v<std::remove_cv_t<T>, std::span<const std::byte>> ||
                    std::is_same_v<std::remove_cv_t<T>, std::span<std::byte>>;

// How a type is carried; the first rule that matches wins.
enum class Rule {
    none, trait, fields, boolean, none_marker, string, string_view, bytes_view, vector, array, map, set,
    optional, variant, tuple, raw,
};

template <class T>
constexpr Rule rule_of() {
    // The fields hook is looked at after the standard types: a hidden friend template codec_fields(auto&)
    // of a user type U is found by ADL for std::vector<U> too, and must not be taken for the vector's.
    if constexpr (has_codec_trait<T>) return Rule::trait;
    else if constexpr (std::is_same_v<T, bool>) return Rule::boolean;
    else if constexpr (std::is_same_v<T, std::monostate>) return Rule::none_marker;
    else if constexpr (std::is_same_v<T, std::string>) return Rule::string;
    else if constexpr (std::is_same_v<T, std::string_view>) return Rule::string_view;
    else if constexpr (byte_span<T>) return Rule::bytes_view;
    else if constexpr (is_instance<T, std::vector>) return Rule::vector;
    else if constexpr (is_std_array<T>) return Rule::array;
    else if constexpr (is_instance<T, std::map> || is_instance<T, std::unordered_map>) return Rule::map;
    else if constexpr (is_instance<T, std::set>) return Rule::set;
    else if constexpr (is_instance<T, std::optional>) return Rule::optional;
    else if constexpr (is_instance<T, std::variant>) return Rule::variant;
    else if constexpr (is_instance<T, std::pair> || is_instance<T, std::tuple>) return Rule::tuple;
    else if constexpr (has_codec_fields<T>) return Rule::fields;
    else if constexpr (std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                       !std::is_member_pointer_v<T> && !std::is_null_pointer_v<T>)
        return Rule::raw;
    else return Rule::none;
}

template <class T>
constexpr bool encodable();
template <class T>
constexpr bool decodable();

template <class Tuple, std::size_t... I>
constexpr bool all_encodable(std::index_sequence<I...>) {
    return (encodable<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>() && ...);
}
template <class Tuple, std::size_t... I>
constexpr bool all_decodable(std::index_sequence<I...>) {
    return (decodable<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>() && ...);
}
template <class Variant, std::size_t... I>
constexpr bool alternatives_encodable(std::index_sequence<I...>) {
    return (encodable<std::variant_alternative_t<I, Variant>>() && ...);
}
template <class Variant, std::size_t... I>
constexpr bool alternatives_decodable(std::index_sequence<I...>) {
    return ((decodable<std::variant_alternative_t<I, Variant>>() &&
             std::is_default_constructible_v<std::variant_alternative_t<I, Variant>>) && ...);
}

template <class T>
constexpr bool encodable() {
    constexpr Rule rule = rule_of<T>();
    // A user hook is trusted here (a mistake in it shows when encode is instantiated): looking through it
    // would never end for a recursive type (struct Tree { std::vector<Tree> children; }).
    if constexpr (rule == Rule::none) return false;
    else if constexpr (rule == Rule::trait || rule == Rule::fields) return true;
    else if constexpr (rule == Rule::vector || rule == Rule::set || rule == Rule::optional ||
                         rule == Rule::array)
        return encodable<typename T::value_type>();
    else if constexpr (rule == Rule::map) return encodable<typename T::key_type>() && encodable<typename T::mapped_type>();
    else if constexpr (rule == Rule::variant)
        return alternatives_encodable<T>(std::make_index_sequence<std::variant_size_v<T>>());
    else if constexpr (rule == Rule::tuple) return all_encodable<T>(std::make_index_sequence<std::tuple_size_v<T>>());
    else return true;
}

template <class T>
constexpr bool decodable() {
    constexpr Rule rule = rule_of<T>();
    if constexpr (rule == Rule::none || rule == Rule::string_view || rule == Rule::bytes_view) return false;
    else if constexpr (!std::is_default_constructible_v<T>) return false;
    else if constexpr (rule == Rule::trait || rule == Rule::fields) return true;
    else if constexpr (rule == Rule::vector || rule == Rule::set || rule == Rule::optional ||
                         rule == Rule::array)
        return decodable<typename T::value_type>();
    else if constexpr (rule == Rule::map) return decodable<typename T::key_type>() && decodable<typename T::mapped_type>();
    else if constexpr (rule == Rule::variant)
        return alternatives_decodable<T>(std::make_index_sequence<std::variant_size_v<T>>());
    else if constexpr (rule == Rule::tuple) return all_decodable<T>(std::make_index_sequence<std::tuple_size_v<T>>());
    else return true;
}

}  // namespace codec_detail

// A type the codec can write (and, for Decodable, read back).
template <class T>
concept Encodable = codec_detail::encodable<std::remove_cvref_t<T>>();
template <class T>
concept Decodable = Encodable<T> && codec_detail::decodable<std::remove_cvref_t<T>>();

namespace codec_detail {

// A readable name for messages: the built-in types spelled out, user types as the compiler names them.
template <class T>
std::string type_name();

template <class T>
std::string compiler_name() {
    std::string_view pretty = __PRETTY_FUNCTION__;
    const std::size_t start = pretty.find("T = ");
    if (start == std::string_view::npos) return std::string(pretty);
    pretty.remove_prefix(start + 4);
    const std::size_t end = pretty.find_first_of(";]");
    return std::string(pretty.substr(0, end));
}

template <class Tuple, std::size_t... I>
std::string names_of(std::index_sequence<I...>) {
    std::string names;
    ((names += (I == 0 ? "" : ", ") + type_name<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>()), ...);
    return names;
}
template <class Variant, std::size_t... I>
std::string alternative_names(std::index_sequence<I...>) {
    std::string names;
    ((names += (I == 0 ? "" : ", ") + type_name<std::variant_alternative_t<I, Variant>>()), ...);
    return names;
}

template <class T>
std::string type_name() {
    constexpr Rule rule = rule_of<T>();
    if constexpr (rule == Rule::boolean) return "bool";
    else if constexpr (rule == Rule::none_marker) return "std::monostate";
    else if constexpr (rule == Rule::string) return "std::string";
    else if constexpr (rule == Rule::string_view) return "std::string_view";
    else if constexpr (rule == Rule::bytes_view) return "std::span<const std::byte>";
    else if constexpr (std::is_same_v<T, std::byte>) return "std::byte";
    else if constexpr (std::is_same_v<T, char>) return "char";
    else if constexpr (std::is_same_v<T, float>) return "float";
    else if constexpr (std::is_same_v<T, double>) return "double";
    else if constexpr (std::is_integral_v<T>)
        return std::string(std::is_signed_v<T> ? "std::int" : "std::uint") + std::to_string(8 * sizeof(T)) + "_t";
    else if constexpr (rule == Rule::vector) return "std::vector<" + type_name<typename T::value_type>() + ">";
    else if constexpr (rule == Rule::array)
        return "std::array<" + type_name<typename T::value_type>() + ", " + std::to_string(std::tuple_size_v<T>) + ">";
    else if constexpr (rule == Rule::map)
        return std::string(is_instance<T, std::map> ? "std::map<" : "std::unordered_map<") +
               type_name<typename T::key_type>() + ", " + type_name<typename T::mapped_type>() + ">";
    else if constexpr (rule == Rule::set) return "std::set<" + type_name<typename T::value_type>() + ">";
    else if constexpr (rule == Rule::optional) return "std::optional<" + type_name<typename T::value_type>() + ">";
    else if constexpr (rule == Rule::variant)
        return "std::variant<" + alternative_names<T>(std::make_index_sequence<std::variant_size_v<T>>()) + ">";
    else if constexpr (rule == Rule::tuple)
        return std::string(is_instance<T, std::pair> ? "std::pair<" : "std::tuple<") +
               names_of<T>(std::make_index_sequence<std::tuple_size_v<T>>()) + ">";
    else return compiler_name<T>();
}

// The fewest bytes any value of T encodes to (so a length of n elements needs n * this many bytes).
template <class T>
constexpr std::size_t min_encoded_size();

template <class Tuple, std::size_t... I>
constexpr std::size_t sum_of_min_sizes(std::index_sequence<I...>) {
    return (std::size_t{0} + ... + min_encoded_size<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>());
}

template <class T>
constexpr std::size_t min_encoded_size() {
    constexpr Rule rule = rule_of<T>();
    if constexpr (rule == Rule::trait) {
        if constexpr (requires { Codec<T>::min_encoded_size; }) return Codec<T>::min_encoded_size;
        else return 0;
    } else if constexpr (rule == Rule::fields) {
        using Fields = fields_of<T>;
        return sum_of_min_sizes<Fields>(std::make_index_sequence<std::tuple_size_v<Fields>>());
    } else if constexpr (rule == Rule::raw) return sizeof(T);
    else if constexpr (rule == Rule::array) return std::tuple_size_v<T> * min_encoded_size<typename T::value_type>();
    else if constexpr (rule == Rule::tuple) {
        if constexpr (std::tuple_size_v<T> == 0) return 1;
        else return sum_of_min_sizes<T>(std::make_index_sequence<std::tuple_size_v<T>>());
    } else return 1;  // a tag byte or a length
}

// Whether a container of T can be copied with one memcpy both ways (its elements are their bytes).
template <class T>
inline constexpr bool raw_elements = rule_of<T>() == Rule::raw;

inline constexpr std::uint8_t kNoneTag = 0xC0;

class DepthGuard {
public:
    DepthGuard(CodecWriter& writer, std::string_view type) : writer_(&writer) { writer.enter(type); }
    DepthGuard(CodecReader& reader, std::string_view type) : reader_(&reader) { reader.enter(type); }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    ~DepthGuard() {
        if (writer_ != nullptr) writer_->leave();
        if (reader_ != nullptr) reader_->leave();
    }

private:
    CodecWriter* writer_ = nullptr;
    CodecReader* reader_ = nullptr;
};

// Names are built only when a message needs them.
template <class T>
struct Name {
    static const std::string& get() {
        static const std::string name = type_name<T>();
        return name;
    }
};

template <class T>
void encode_value(CodecWriter& writer, const T& value);
template <class T>
void decode_value(CodecReader& reader, T& out);

template <class Tuple, std::size_t... I>
void encode_members(CodecWriter& writer, const Tuple& members, std::index_sequence<I...>) {
    (encode_value<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>(writer, std::get<I>(members)), ...);
}
template <class Tuple, std::size_t... I>
void decode_members(CodecReader& reader, Tuple&& members, std::index_sequence<I...>) {
    (decode_value<std::remove_cvref_t<std::tuple_element_t<I, std::remove_cvref_t<Tuple>>>>(reader,
                                                                                          std::get<I>(members)),
     ...);
}

template <class T>
void encode_value(CodecWriter& writer, const T& value) {
    static_assert(Encodable<T>, "mproc::encode: T is not Encodable (see mproc/codec.hpp for the hooks)");
    constexpr Rule rule = rule_of<T>();
    if constexpr (rule == Rule::trait) {
        DepthGuard level(writer, "user type");
        Codec<T>::encode(writer, value);
    } else if constexpr (rule == Rule::fields) {
        DepthGuard level(writer, "user type");
        // The hook takes a T&; the references it returns are only read here.
        const auto members = codec_fields(const_cast<T&>(value));
        encode_members(writer, members, std::make_index_sequence<std::tuple_size_v<decltype(members)>>());
    } else if constexpr (rule == Rule::boolean) {
        writer.byte(value ? 1 : 0);
    } else if constexpr (rule == Rule::none_marker) {
        writer.byte(kNoneTag);
    } else if constexpr (rule == Rule::string || rule == Rule::string_view || rule == Rule::bytes_view) {
        writer.length(value.size());
        writer.bytes(value.data(), value.size());
    } else if constexpr (rule == Rule::vector || rule == Rule::array) {
        using Element = typename T::value_type;
        if constexpr (rule == Rule::vector) writer.length(value.size());
        if constexpr (raw_elements<Element> && !std::is_same_v<Element, bool>) {
            writer.bytes(value.data(), value.size() * sizeof(Element));
        } else {
            DepthGuard level(writer, "container");
            for (const Element& element : value) encode_value<Element>(writer, element);
        }
    } else if constexpr (rule == Rule::map) {
        DepthGuard level(writer, "container");
        writer.length(value.size());
        for (const auto& [key, mapped] : value) {
            encode_value<typename T::key_type>(writer, key);
            encode_value<typename T::mapped_type>(writer, mapped);
        }
    } else if constexpr (rule == Rule::set) {
        DepthGuard level(writer, "container");
        writer.length(value.size());
        for (const auto& element : value) encode_value<typename T::value_type>(writer, element);
    } else if constexpr (rule == Rule::optional) {
        DepthGuard level(writer, "optional");
        writer.byte(value.has_value() ? 1 : 0);
        if (value) encode_value<typename T::value_type>(writer, *value);
    } else if constexpr (rule == Rule::variant) {
        DepthGuard level(writer, "variant");
        // A variant valueless by exception has nothing to send: refuse rather than invent an alternative.
        if (value.valueless_by_exception()) throw ValueError("mproc::encode: a valueless std::variant");
        writer.length(value.index());
        std::visit([&writer](const auto& alternative) {
            encode_value<std::remove_cvref_t<decltype(alternative)>>(writer, alternative);
        }, value);
    } else if constexpr (rule == Rule::tuple) {
        DepthGuard level(writer, "tuple");
        if constexpr (std::tuple_size_v<T> == 0) writer.byte(0);
        else encode_members(writer, value, std::make_index_sequence<std::tuple_size_v<T>>());
    } else {
        static_assert(rule == Rule::raw);
        writer.bytes(&value, sizeof(T));
    }
}

template <class Variant, std::size_t I = 0>
void decode_alternative(CodecReader& reader, Variant& out, std::size_t index) {
    if constexpr (I < std::variant_size_v<Variant>) {
        if (index == I) {
            using Alternative = std::variant_alternative_t<I, Variant>;
            decode_value<Alternative>(reader, out.template emplace<I>());
            return;
        }
        decode_alternative<Variant, I + 1>(reader, out, index);
    }
}

template <class T>
void decode_value(CodecReader& reader, T& out) {
    static_assert(Decodable<T>, "mproc::decode: T is not Decodable (see mproc/codec.hpp)");
    constexpr Rule rule = rule_of<T>();
    const std::string_view name = Name<T>::get();
    if constexpr (rule == Rule::trait) {
        DepthGuard level(reader, name);
        Codec<T>::decode(reader, out);
    } else if constexpr (rule == Rule::fields) {
        DepthGuard level(reader, name);
        auto members = codec_fields(out);
        decode_members(reader, members, std::make_index_sequence<std::tuple_size_v<decltype(members)>>());
    } else if constexpr (rule == Rule::boolean) {
        const std::size_t at = reader.offset();
        const std::uint8_t byte = reader.byte(name, "bool");
        if (byte > 1) reader.fail(name, at, "a bool byte 0 or 1, got " + std::to_string(byte));
        out = byte == 1;
    } else if constexpr (rule == Rule::none_marker) {
        const std::size_t at = reader.offset();
        const std::uint8_t byte = reader.byte(name, "None tag");
        if (byte != kNoneTag) reader.fail(name, at, "the None tag 0xC0, got " + std::to_string(byte));
    } else if constexpr (rule == Rule::string) {
        const std::size_t size = reader.count(name, 1);
        const std::byte* data = reader.take(size, name, "string data");
        out.assign(reinterpret_cast<const char*>(data), size);
    } else if constexpr (rule == Rule::vector) {
        using Element = typename T::value_type;
        if constexpr (raw_elements<Element> && !std::is_same_v<Element, bool>) {
            const std::size_t count = reader.count(name, sizeof(Element));
            const std::byte* data = reader.take(count * sizeof(Element), name, "elements");
            out.resize(count);
            if (count != 0) std::memcpy(out.data(), data, count * sizeof(Element));
        } else {
            DepthGuard level(reader, name);
            const std::size_t count = reader.count(name, min_encoded_size<Element>());
            out.clear();
            // Reserve only what the bytes left could pay for in memory too; beyond that, grow as elements
            // actually decode.
            if (count * sizeof(Element) <= reader.remaining()) out.reserve(count);
            for (std::size_t i = 0; i < count; ++i) {
                if constexpr (std::is_same_v<Element, bool>) {
                    bool element = false;
                    decode_value<bool>(reader, element);
                    out.push_back(element);
                } else {
                    decode_value<Element>(reader, out.emplace_back());
                }
            }
        }
    } else if constexpr (rule == Rule::array) {
        using Element = typename T::value_type;
        if constexpr (raw_elements<Element>) {
            const std::byte* data = reader.take(sizeof(T), name, "elements");
            std::memcpy(out.data(), data, sizeof(T));
        } else {
            DepthGuard level(reader, name);
            for (Element& element : out) decode_value<Element>(reader, element);
        }
    } else if constexpr (rule == Rule::map || rule == Rule::set) {
        DepthGuard level(reader, name);
        using Key = typename T::key_type;
        constexpr std::size_t pair_size = [] {
            if constexpr (rule == Rule::map) return min_encoded_size<Key>() + min_encoded_size<typename T::mapped_type>();
            else return min_encoded_size<Key>();
        }();
        const std::size_t count = reader.count(name, pair_size);
        out.clear();
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t at = reader.offset();
            Key key{};
            decode_value<Key>(reader, key);
            bool inserted = false;
            if constexpr (rule == Rule::map) {
                typename T::mapped_type mapped{};
                decode_value<typename T::mapped_type>(reader, mapped);
                inserted = out.emplace(std::move(key), std::move(mapped)).second;
            } else {
                inserted = out.insert(std::move(key)).second;
            }
            if (!inserted) reader.fail(name, at, "distinct keys, got a repeated one (entry " + std::to_string(i) + ")");
        }
    } else if constexpr (rule == Rule::optional) {
        DepthGuard level(reader, name);
        const std::size_t at = reader.offset();
        const std::uint8_t flag = reader.byte(name, "optional flag");
        if (flag > 1) reader.fail(name, at, "an optional flag 0 or 1, got " + std::to_string(flag));
        if (flag == 0) {
            out.reset();
        } else {
            decode_value<typename T::value_type>(reader, out.emplace());
        }
    } else if constexpr (rule == Rule::variant) {
        DepthGuard level(reader, name);
        const std::size_t at = reader.offset();
        const std::uint64_t index = reader.length(name);
        if (index >= std::variant_size_v<T>)
            reader.fail(name, at, "an alternative index below " + std::to_string(std::variant_size_v<T>) +
                                      ", got " + std::to_string(index));
        decode_alternative(reader, out, static_cast<std::size_t>(index));
    } else if constexpr (rule == Rule::tuple) {
        DepthGuard level(reader, name);
        if constexpr (std::tuple_size_v<T> == 0) {
            const std::size_t at = reader.offset();
            const std::uint8_t byte = reader.byte(name, "empty tuple");
            if (byte != 0) reader.fail(name, at, "the empty tuple's byte 0, got " + std::to_string(byte));
        } else {
            decode_members(reader, out, std::make_index_sequence<std::tuple_size_v<T>>());
        }
    } else {
        static_assert(rule == Rule::raw);
        const std::byte* data = reader.take(sizeof(T), name, "raw value");
        std::memcpy(static_cast<void*>(std::addressof(out)), data, sizeof(T));
    }
}

// The calling thread's buffer for encodings that are sent at once (Queue<T>::put, Connection::send<T>); it
// keeps the capacity of the largest encoding the thread sent.
MPROC_API std::vector<std::byte>& scratch_buffer() noexcept;

}  // namespace codec_detail

// Appends value's encoding to out. ValueError (nesting deeper than kCodecMaxDepth, a valueless variant)
// leaves out as it was.
template <Encodable T>
void encode(const T& value, std::vector<std::byte>& out) {
    const std::size_t size_before = out.size();
    CodecWriter writer(out);
    try {
        codec_detail::encode_value<std::remove_cvref_t<T>>(writer, value);
    } catch (...) {
        out.resize(size_before);
        throw;
    }
}

template <Encodable T>
std::vector<std::byte> encode(const T& value) {
    std::vector<std::byte> out;
    encode(value, out);
    return out;
}

// Decodes a whole message into out (DecodeError when bytes are left over; out then holds the value read).
template <Decodable T>
void decode(std::span<const std::byte> bytes, T& out) {
    CodecReader reader(bytes);
    codec_detail::decode_value<T>(reader, out);
    if (reader.remaining() != 0)
        reader.fail(codec_detail::Name<T>::get(), reader.offset(),
                    "the end of the message, " + std::to_string(reader.remaining()) + " bytes left over");
}

template <Decodable T>
T decode(std::span<const std::byte> bytes) {
    T value{};
    decode(bytes, value);
    return value;
}

namespace codec_detail {

// Encodes into the calling thread's scratch buffer; the span is valid until the thread's next call.
template <Encodable T>
std::span<const std::byte> encode_to_scratch(const T& value) {
    std::vector<std::byte>& buffer = scratch_buffer();
    buffer.clear();
    encode(value, buffer);
    return {buffer.data(), buffer.size()};
}

}  // namespace codec_detail

}  // namespace mproc
