// tests/codec_test.cpp — mproc/codec.hpp and the typed channels built on it: every built-in type and nested
// mixes round-trip through the codec alone (with the documented bytes), and through Queue (SPSC and MPMC),
// SimpleQueue, JoinableQueue, Pipe and FdConnection across forked processes; hostile bytes (truncation,
// lengths claiming 2^60 elements, nesting 100,000 deep, wrong tags, overlong lengths, repeated keys, bytes
// left over) give the exact DecodeError, never anything else, and allocate no more than the bound
// docs/guarantees.md states; an encoding longer than a queue's slot is refused with ValueError.
// Mutants tried against these tests, and what caught each: the length check skipped (CodecReader::count
// believes any length) → the 2^60-length, truncation and queue/connection DecodeError tests; the depth
// check skipped → the 100,000-deep test dies of a stack overflow; a repeated map key accepted → the
// repeated-keys and single-byte-change tests; the variant index unchecked → the wrong-tags test; every
// claimed length reserved → the allocation-bound test (its nested vectors).
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "harness.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/joinable_queue.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/simple_queue.hpp"

// Counts the bytes the process asks operator new for while `counting` is set: the decoder's allocation
// bound is asserted on this sum. The replacements pair malloc with free, which GCC cannot see through once
// both are inlined into a caller.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> counted_bytes{0};
}  // namespace

// ThreadSanitizer's runtime defines operator new itself: there the count is not taken, and the two tests
// that assert on it skip (the other builds run them).
#if defined(__SANITIZE_THREAD__)
#define MPROC_CODEC_TEST_COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPROC_CODEC_TEST_COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef MPROC_CODEC_TEST_COUNTS_ALLOCATIONS
#define MPROC_CODEC_TEST_COUNTS_ALLOCATIONS 1
#endif

#if MPROC_CODEC_TEST_COUNTS_ALLOCATIONS
void* operator new(std::size_t size) {
    // relaxed: one thread reads these after its own decode; no other memory is published through them.
    if (counting.load(std::memory_order_relaxed)) counted_bytes.fetch_add(size, std::memory_order_relaxed);
    if (void* memory = std::malloc(size == 0 ? 1 : size)) return memory;
    throw std::bad_alloc();
}
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }
#endif

namespace {

using namespace std::chrono_literals;
using mproc::DecodeError;
using mproc::test::ForkedChild;

enum class Colour : std::uint8_t { red = 1, green = 2 };

struct Point {  // trivially copyable: carried as its bytes
    std::int32_t x;
    double y;
    bool operator==(const Point&) const = default;
};

// A user aggregate through the ADL hook.
struct Record {
    std::int64_t id = 0;
    double score = 0;
    std::string name;
    std::vector<double> samples;
    friend auto codec_fields(Record& self) { return std::tie(self.id, self.score, self.name, self.samples); }
    bool operator==(const Record&) const = default;
};

// A user type through the trait: carried as a string of its decimal digits.
struct Decimal {
    std::uint32_t value = 0;
    bool operator==(const Decimal&) const = default;
};

// A recursive user type: only such a type can nest without bound.
struct Tree {
    std::vector<Tree> children;
    friend auto codec_fields(Tree& self) { return std::tie(self.children); }
    bool operator==(const Tree&) const = default;
};

}  // namespace

template <>
struct mproc::Codec<Decimal> {
    static constexpr std::size_t min_encoded_size = 2;  // a length and at least one digit
    static void encode(CodecWriter& writer, const Decimal& value) {
        const std::string digits = std::to_string(value.value);
        writer.length(digits.size());
        writer.bytes(digits.data(), digits.size());
    }
    static void decode(CodecReader& reader, Decimal& out) {
        const std::size_t at = reader.offset();
        const std::size_t size = reader.count("Decimal", 1);
        const std::byte* digits = reader.take(size, "Decimal", "digits");
        if (size == 0 || size > 10) reader.fail("Decimal", at, "1 to 10 digits");
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < size; ++i) {
            const auto digit = std::to_integer<char>(digits[i]);
            if (digit < '0' || digit > '9') reader.fail("Decimal", at + 1 + i, "a digit");
            value = value * 10 + static_cast<std::uint64_t>(digit - '0');
        }
        if (value > UINT32_MAX) reader.fail("Decimal", at, "a value below 2^32");
        out.value = static_cast<std::uint32_t>(value);
    }
};

namespace {

static_assert(mproc::Encodable<std::string> && mproc::Decodable<std::string>);
static_assert(mproc::Encodable<std::span<const std::byte>> && !mproc::Decodable<std::span<const std::byte>>);
static_assert(mproc::Decodable<Record> && mproc::Decodable<Decimal> && mproc::Decodable<Tree>);
static_assert(!mproc::Encodable<int*> && !mproc::Encodable<std::vector<const char*>>);
static_assert(!mproc::Encodable<std::map<std::string, void*>>);

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
    std::vector<std::byte> bytes;
    for (const int value : values) bytes.push_back(static_cast<std::byte>(value));
    return bytes;
}

template <class T>
void assert_round_trips(const T& value) {
    const std::vector<std::byte> bytes = mproc::encode(value);
    const T back = mproc::decode<T>(bytes);
    CPPUNIT_ASSERT(back == value);
    // The value read back encodes to as many bytes (the same bytes but for the order of an unordered_map,
    // which depends on its insertion history).
    CPPUNIT_ASSERT_EQUAL(bytes.size(), mproc::encode(back).size());
}

template <class T>
DecodeError decode_error_of(const std::vector<std::byte>& bytes) {
    try {
        (void)mproc::decode<T>(bytes);
    } catch (const DecodeError& error) {
        return error;
    }
    CPPUNIT_FAIL("no DecodeError");
    throw;  // unreachable
}

template <class T>
void assert_decode_error(const std::vector<std::byte>& bytes, const std::string& type, std::size_t offset,
                         const std::string& expected) {
    const DecodeError error = decode_error_of<T>(bytes);
    CPPUNIT_ASSERT_EQUAL(type, error.type());
    CPPUNIT_ASSERT_EQUAL(offset, error.offset());
    CPPUNIT_ASSERT_EQUAL(expected, error.expected());
    CPPUNIT_ASSERT_EQUAL("decode " + type + " at byte " + std::to_string(offset) + ": expected " + expected,
                         std::string(error.what()));
}

// An LEB128 length, as the codec writes it.
std::vector<std::byte> length_bytes(std::uint64_t value) {
    std::vector<std::byte> out;
    mproc::CodecWriter(out).length(value);
    return out;
}

std::vector<std::byte> operator+(std::vector<std::byte> a, const std::vector<std::byte>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// One type holding every built-in kind, for the channel tests.
using Everything = std::tuple<bool, std::int32_t, double, Colour, Point, std::string, std::vector<double>,
                              std::vector<std::string>, std::vector<bool>, std::vector<std::byte>,
                              std::array<std::string, 2>, std::map<std::string, std::int32_t>,
                              std::unordered_map<std::int32_t, std::string>, std::set<std::string>,
                              std::optional<std::string>, std::variant<std::monostate, std::int64_t, std::string>,
                              std::pair<std::int32_t, std::string>, std::monostate, Record, Decimal,
                              std::vector<std::map<std::string, std::optional<std::vector<std::int32_t>>>>>;

// Value number i: sizes and emptiness vary with i (every third container empty, every other optional none).
Everything everything(std::uint32_t i) {
    const std::string text(i % 7 * 5, static_cast<char>('a' + i % 26));
    Everything value;
    auto& [flag, number, real, colour, point, string, doubles, strings, bools, bytes, array, map, hash, set, maybe,
           choice, pair, none, record, decimal, nested] = value;
    flag = i % 2 == 0;
    number = -static_cast<std::int32_t>(i);
    real = i * 0.25;
    colour = i % 2 ? Colour::red : Colour::green;
    point = {static_cast<std::int32_t>(i), i * 1.5};
    string = "message " + std::to_string(i) + " " + text + (i % 5 == 0 ? "\xc3\xa9\xe2\x82\xac" : "");
    if (i % 3 != 0) {
        doubles.assign(i % 16, i * 0.5);
        strings = {text, "", std::to_string(i)};
        bools = {true, false, i % 4 == 0};
        bytes.assign(i % 9, static_cast<std::byte>(i));
        map = {{"a", 1}, {text + "b", static_cast<std::int32_t>(i)}};
        hash = {{1, text}, {static_cast<std::int32_t>(i + 2), "two"}};
        set = {text, "x", "y"};
        nested = {{{"k", std::nullopt}, {"v", std::vector<std::int32_t>{1, 2, static_cast<std::int32_t>(i)}}}, {}};
    }
    array = {text, std::to_string(i)};
    if (i % 2 == 1) maybe = text;
    if (i % 3 == 1) choice = static_cast<std::int64_t>(i) << 40;
    if (i % 3 == 2) choice = text;
    pair = {static_cast<std::int32_t>(i), text};
    record = {static_cast<std::int64_t>(i) * 1000, i / 3.0, "record " + text, std::vector<double>(i % 16, 0.125)};
    decimal = {i * 7919u};
    return value;
}

constexpr std::uint32_t kChannelMessages = 300;
constexpr std::size_t kEverythingMaxMessage = 2048;

class CodecUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(CodecUnitTest);
    CPPUNIT_TEST(testEveryBuiltInTypeRoundTrips);
    CPPUNIT_TEST(testUserTypesRoundTripThroughTheFieldsHookAndTheTrait);
    CPPUNIT_TEST(testEncodingIsTheDocumentedFormat);
    CPPUNIT_TEST(testSpanAndStringViewEncodeAsBytesAndString);
    CPPUNIT_TEST(testTruncatedMessagesThrowDecodeErrorAtTheMissingByte);
    CPPUNIT_TEST(testEveryPrefixOfAMessageThrowsDecodeErrorOnly);
    CPPUNIT_TEST(testLengthClaimingTwoToTheSixtyElementsIsRefusedBeforeAllocating);
    CPPUNIT_TEST(testDecodingAllocatesAtMostTheStatedMultipleOfTheMessage);
    CPPUNIT_TEST(testNestingOneHundredThousandDeepIsRefusedAtTheDepthLimit);
    CPPUNIT_TEST(testEncodingDeeperThanTheLimitThrowsValueError);
    CPPUNIT_TEST(testWrongTagsThrowDecodeErrorNamingWhatWasExpected);
    CPPUNIT_TEST(testNonCanonicalAndOversizedLengthsAreRefused);
    CPPUNIT_TEST(testRepeatedKeysAndLeftoverBytesAreRefused);
    CPPUNIT_TEST(testEverySingleByteChangeDecodesOrThrowsDecodeError);
    CPPUNIT_TEST_SUITE_END();

public:
    void testEveryBuiltInTypeRoundTrips() {
        assert_round_trips(true);
        assert_round_trips(false);
        assert_round_trips(std::int8_t{-5});
        assert_round_trips(std::uint64_t{UINT64_MAX});
        assert_round_trips(-1.5e300);
        assert_round_trips('x');
        assert_round_trips(Colour::green);
        assert_round_trips(Point{-3, 2.5});
        assert_round_trips(std::string());
        assert_round_trips(std::string(100000, 'z'));
        assert_round_trips(std::string("\0nul inside\xff", 13));
        assert_round_trips(std::vector<std::int32_t>{});
        assert_round_trips(std::vector<std::int32_t>{1, -2, 3});
        assert_round_trips(std::vector<std::string>{"", "a", std::string(300, 'b')});
        assert_round_trips(std::vector<bool>{true, false, true});
        assert_round_trips(std::vector<std::byte>{std::byte{0}, std::byte{0xff}});
        assert_round_trips(std::array<std::int16_t, 3>{1, 2, 3});
        assert_round_trips(std::array<std::string, 2>{"one", ""});
        assert_round_trips(std::map<std::string, std::int32_t>{{"a", 1}, {"b", 2}});
        assert_round_trips(std::unordered_map<std::int32_t, std::string>{{1, "one"}, {2, "two"}, {3, ""}});
        assert_round_trips(std::set<std::string>{"x", "y", ""});
        assert_round_trips(std::optional<std::string>());
        assert_round_trips(std::optional<std::string>("present"));
        assert_round_trips(std::variant<std::monostate, std::int32_t, std::string>());
        assert_round_trips(std::variant<std::monostate, std::int32_t, std::string>(7));
        assert_round_trips(std::variant<std::monostate, std::int32_t, std::string>("seven"));
        assert_round_trips(std::pair<std::string, std::int32_t>{"p", 1});
        assert_round_trips(std::tuple<std::int32_t, std::string, double>{1, "t", 0.5});
        assert_round_trips(std::tuple<>());
        assert_round_trips(std::monostate());
        assert_round_trips(std::vector<std::tuple<>>(5));
        assert_round_trips(std::vector<std::monostate>(5));
        using Deep = std::map<std::string,
                              std::vector<std::optional<std::variant<std::monostate, std::set<std::int32_t>,
                                                                     std::pair<std::string, std::vector<std::byte>>>>>>;
        assert_round_trips(Deep{{"k", {std::nullopt, std::set<std::int32_t>{1, 2}, std::monostate()}},
                                {"l", {std::pair<std::string, std::vector<std::byte>>{"b", {std::byte{1}}}}},
                                {"empty", {}}});
        for (std::uint32_t i = 0; i < 30; ++i) assert_round_trips(everything(i));
    }

    void testUserTypesRoundTripThroughTheFieldsHookAndTheTrait() {
        assert_round_trips(Record{42, 0.5, "name", {1.0, 2.0}});
        assert_round_trips(Decimal{4000000000u});
        assert_round_trips(std::vector<Decimal>{{0}, {1}, {99}});
        assert_round_trips(Tree{{Tree{}, Tree{{Tree{}}}}});
        // The trait's own bytes: the decimal digits as a string.
        CPPUNIT_ASSERT(mproc::encode(Decimal{305}) == bytes_of({3, '3', '0', '5'}));
        // The fields hook writes the members in order, nothing else.
        CPPUNIT_ASSERT(mproc::encode(Record{1, 0, "n", {}}) ==
                       mproc::encode(std::tuple<std::int64_t, double, std::string, std::vector<double>>{1, 0, "n", {}}));
        assert_decode_error<Decimal>(bytes_of({2, '1', 'x'}), "Decimal", 2, "a digit");
    }

    void testEncodingIsTheDocumentedFormat() {
        CPPUNIT_ASSERT(mproc::encode(std::string("ab")) == bytes_of({2, 'a', 'b'}));
        CPPUNIT_ASSERT(mproc::encode(std::string(300, 'c')) == bytes_of({0xAC, 0x02}) + std::vector<std::byte>(300, std::byte{'c'}));
        CPPUNIT_ASSERT(mproc::encode(std::vector<std::uint16_t>{1, 2}) == bytes_of({2, 1, 0, 2, 0}));
        CPPUNIT_ASSERT(mproc::encode(std::array<std::uint8_t, 2>{7, 8}) == bytes_of({7, 8}));
        CPPUNIT_ASSERT(mproc::encode(true) == bytes_of({1}));
        CPPUNIT_ASSERT(mproc::encode(std::monostate()) == bytes_of({0xC0}));
        CPPUNIT_ASSERT(mproc::encode(std::optional<std::uint8_t>()) == bytes_of({0}));
        CPPUNIT_ASSERT(mproc::encode(std::optional<std::uint8_t>(9)) == bytes_of({1, 9}));
        CPPUNIT_ASSERT(mproc::encode(std::variant<std::uint8_t, bool>(true)) == bytes_of({1, 1}));
        CPPUNIT_ASSERT(mproc::encode(std::map<std::string, std::uint8_t>{{"a", 1}}) == bytes_of({1, 1, 'a', 1}));
        CPPUNIT_ASSERT(mproc::encode(std::pair<std::uint8_t, bool>{3, false}) == bytes_of({3, 0}));
        CPPUNIT_ASSERT(mproc::encode(std::tuple<>()) == bytes_of({0}));
        CPPUNIT_ASSERT(mproc::encode(std::uint32_t{0x01020304}) == bytes_of({4, 3, 2, 1}));
    }

    void testSpanAndStringViewEncodeAsBytesAndString() {
        const std::vector<std::byte> payload = bytes_of({5, 6, 7});
        const std::vector<std::byte> from_span = mproc::encode(std::span<const std::byte>(payload));
        CPPUNIT_ASSERT(from_span == mproc::encode(payload));
        CPPUNIT_ASSERT(mproc::decode<std::vector<std::byte>>(from_span) == payload);
        CPPUNIT_ASSERT(mproc::encode(std::string_view("view")) == mproc::encode(std::string("view")));
    }

    void testTruncatedMessagesThrowDecodeErrorAtTheMissingByte() {
        assert_decode_error<std::string>(bytes_of({5, 'a', 'b'}), "std::string", 0,
                                         "at most 2 elements (2 bytes left, 1 or more each), got a length of 5");
        assert_decode_error<double>(bytes_of({1, 2, 3}), "double", 0, "8 bytes (raw value), 3 left");
        assert_decode_error<std::vector<std::uint32_t>>(bytes_of({2, 1, 0, 0, 0, 2}), "std::vector<std::uint32_t>", 0,
                                                        "at most 1 elements (5 bytes left, 4 or more each), got a "
                                                        "length of 2");
        assert_decode_error<std::pair<std::int32_t, bool>>(bytes_of({1, 0, 0, 0}), "bool", 4, "1 bytes (bool), 0 left");
        assert_decode_error<std::string>({}, "std::string", 0, "a length (LEB128), the message ends after 0 of its bytes");
        assert_decode_error<std::string>(bytes_of({0x80, 0x80}), "std::string", 0,
                                         "a length (LEB128), the message ends after 2 of its bytes");
        assert_decode_error<std::array<std::string, 2>>(bytes_of({1, 'a'}), "std::string", 2,
                                                        "a length (LEB128), the message ends after 0 of its bytes");
    }

    void testEveryPrefixOfAMessageThrowsDecodeErrorOnly() {
        const std::vector<std::byte> whole = mproc::encode(everything(4));
        for (std::size_t size = 0; size < whole.size(); ++size) {
            const std::vector<std::byte> prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(size));
            const DecodeError error = decode_error_of<Everything>(prefix);
            CPPUNIT_ASSERT(error.offset() <= size);
        }
        CPPUNIT_ASSERT(mproc::decode<Everything>(whole) == everything(4));
    }

    void testLengthClaimingTwoToTheSixtyElementsIsRefusedBeforeAllocating() {
        const std::uint64_t huge = std::uint64_t{1} << 60;
        const std::vector<std::byte> message = length_bytes(huge) + bytes_of({1, 'a', 0});
        if (!MPROC_CODEC_TEST_COUNTS_ALLOCATIONS) MPROC_SKIP("ThreadSanitizer replaces operator new: no allocation count");
        counted_bytes.store(0, std::memory_order_relaxed);  // relaxed: read by this thread only
        counting = true;
        std::optional<DecodeError> error;
        try {
            (void)mproc::decode<std::vector<std::string>>(message);
        } catch (const DecodeError& caught) {
            counting = false;
            error = caught;
        }
        counting = false;
        CPPUNIT_ASSERT(error.has_value());
        CPPUNIT_ASSERT_EQUAL(std::string("std::vector<std::string>"), error->type());
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, error->offset());
        CPPUNIT_ASSERT_EQUAL("at most 3 elements (3 bytes left, 1 or more each), got a length of " + std::to_string(huge),
                             error->expected());
        // Only the error's own strings were allocated.
        // relaxed: the counting thread is this one.
        CPPUNIT_ASSERT_MESSAGE(std::to_string(counted_bytes.load(std::memory_order_relaxed)),
                               counted_bytes.load(std::memory_order_relaxed) < 1024);
        assert_decode_error<std::vector<std::uint64_t>>(length_bytes(huge), "std::vector<std::uint64_t>", 0,
                                                        "at most 0 elements (0 bytes left, 8 or more each), got a "
                                                        "length of " + std::to_string(huge));
        assert_decode_error<std::map<std::string, std::string>>(
            length_bytes(huge) + bytes_of({0, 0}), "std::map<std::string, std::string>", 0,
            "at most 1 elements (2 bytes left, 2 or more each), got a length of " + std::to_string(huge));
        assert_decode_error<std::string>(length_bytes(UINT64_MAX), "std::string", 0,
                                         "at most 0 elements (0 bytes left, 1 or more each), got a length of " +
                                             std::to_string(UINT64_MAX));
    }

    void testDecodingAllocatesAtMostTheStatedMultipleOfTheMessage() {
        // A message of n one-byte empty elements is the worst case per byte: each byte is a whole object.
        if (!MPROC_CODEC_TEST_COUNTS_ALLOCATIONS) MPROC_SKIP("ThreadSanitizer replaces operator new: no allocation count");
        const std::size_t n = 4096;
        const auto check = [](const std::vector<std::byte>& message, auto decode) {
            counted_bytes.store(0, std::memory_order_relaxed);  // relaxed: read by this thread only
            counting = true;
            try {
                decode(message);
            } catch (const DecodeError&) {
            }
            counting = false;
            // docs/guarantees.md: at most 2 x R bytes per message byte, plus an error message; R <= 48 for every
            // type below (std::map<std::string, std::string>: a 96-byte node per 2 bytes).
            CPPUNIT_ASSERT_MESSAGE(std::to_string(counted_bytes.load(std::memory_order_relaxed)) + " for " +
                                       std::to_string(message.size()),
                                   counted_bytes.load(std::memory_order_relaxed) <= 2 * 48 * message.size() + 1024);
        };
        const std::vector<std::byte> empties = length_bytes(n) + std::vector<std::byte>(n, std::byte{0});
        check(empties, [](auto& m) { (void)mproc::decode<std::vector<std::string>>(m); });
        check(empties, [](auto& m) { (void)mproc::decode<std::vector<std::vector<std::vector<std::int32_t>>>>(m); });
        check(empties, [](auto& m) { (void)mproc::decode<std::set<std::string>>(m); });  // repeated "" → error
        check(empties, [](auto& m) { (void)mproc::decode<std::vector<std::optional<std::string>>>(m); });
        // Nested vectors each claiming nearly all the bytes left: memory must follow elements decoded, not
        // lengths claimed (reserving each claimed length would cost about 200 bytes per message byte here).
        using Vectors8 = std::vector<std::vector<std::vector<std::vector<
            std::vector<std::vector<std::vector<std::vector<std::string>>>>>>>>;
        std::vector<std::byte> claims;
        for (std::size_t level = 0; level < 8; ++level) claims = claims + length_bytes(n - level);
        claims = claims + std::vector<std::byte>(n, std::byte{0});
        check(claims, [](auto& m) { (void)mproc::decode<Vectors8>(m); });
        std::vector<std::byte> map_message = length_bytes(n / 2);
        for (std::size_t i = 0; i < n / 2; ++i) map_message = map_message + length_bytes(2) + bytes_of({static_cast<int>(i & 0x7f), static_cast<int>(i >> 7), 0});
        check(map_message, [](auto& m) { (void)mproc::decode<std::map<std::string, std::string>>(m); });
        using StringMap = std::map<std::string, std::string>;
        CPPUNIT_ASSERT_EQUAL(n / 2, mproc::decode<StringMap>(map_message).size());
    }

    void testNestingOneHundredThousandDeepIsRefusedAtTheDepthLimit() {
        // Tree, its vector of children, Tree, ...: each level a length of 1; levels count from 1.
        std::vector<std::byte> message(100000, std::byte{1});
        message.push_back(std::byte{0});
        const DecodeError error = decode_error_of<Tree>(message);
        CPPUNIT_ASSERT_MESSAGE(error.type(), error.type().find("Tree") != std::string::npos);
        // Level 129 is a Tree (odd levels are Trees), reached after 64 vectors' lengths.
        CPPUNIT_ASSERT_EQUAL(std::size_t{64}, error.offset());
        CPPUNIT_ASSERT_EQUAL(std::string("at most 128 levels of nesting"), error.expected());
        // The deepest tree the limit allows decodes: 64 Trees and 64 vectors.
        std::vector<std::byte> deepest(63, std::byte{1});
        deepest.push_back(std::byte{0});
        Tree tree = mproc::decode<Tree>(deepest);
        std::size_t depth = 1;
        for (const Tree* at = &tree; !at->children.empty(); at = &at->children.front()) ++depth;
        CPPUNIT_ASSERT_EQUAL(std::size_t{64}, depth);
    }

    void testEncodingDeeperThanTheLimitThrowsValueError() {
        Tree tree;
        for (int i = 0; i < 100; ++i) tree = Tree{{std::move(tree)}};
        const std::string message = mproc::test::message_of<mproc::ValueError>([&] { (void)mproc::encode(tree); });
        CPPUNIT_ASSERT_EQUAL(std::string("mproc::encode: user type nested deeper than 128 levels"), message);
        std::vector<std::byte> out = bytes_of({7});
        CPPUNIT_ASSERT_THROW(mproc::encode(tree, out), mproc::ValueError);
        CPPUNIT_ASSERT(out == bytes_of({7}));  // nothing of the refused value is left behind
        Tree allowed;
        for (int i = 0; i < 63; ++i) allowed = Tree{{std::move(allowed)}};
        assert_round_trips(allowed);
    }

    void testWrongTagsThrowDecodeErrorNamingWhatWasExpected() {
        assert_decode_error<bool>(bytes_of({2}), "bool", 0, "a bool byte 0 or 1, got 2");
        assert_decode_error<std::vector<bool>>(bytes_of({2, 1, 7}), "bool", 2, "a bool byte 0 or 1, got 7");
        assert_decode_error<std::monostate>(bytes_of({0}), "std::monostate", 0, "the None tag 0xC0, got 0");
        assert_decode_error<std::optional<std::string>>(bytes_of({2, 0}), "std::optional<std::string>", 0,
                                                        "an optional flag 0 or 1, got 2");
        assert_decode_error<std::variant<std::monostate, std::int32_t, std::string>>(
            bytes_of({3, 0}), "std::variant<std::monostate, std::int32_t, std::string>", 0,
            "an alternative index below 3, got 3");
        assert_decode_error<std::tuple<>>(bytes_of({1}), "std::tuple<>", 0, "the empty tuple's byte 0, got 1");
    }

    void testNonCanonicalAndOversizedLengthsAreRefused() {
        assert_decode_error<std::string>(bytes_of({0x81, 0x00, 'a'}), "std::string", 0,
                                         "a length (LEB128) in its shortest form");
        std::vector<std::byte> eleven(10, std::byte{0x80});
        eleven.push_back(std::byte{0});
        assert_decode_error<std::string>(eleven, "std::string", 0, "a length (LEB128) of at most 10 bytes");
        std::vector<std::byte> over(9, std::byte{0xff});
        over.push_back(std::byte{0x02});
        assert_decode_error<std::string>(over, "std::string", 0, "a length (LEB128) of at most 64 bits");
    }

    void testRepeatedKeysAndLeftoverBytesAreRefused() {
        assert_decode_error<std::map<std::string, std::uint8_t>>(bytes_of({2, 1, 'a', 1, 1, 'a', 2}),
                                                                 "std::map<std::string, std::uint8_t>", 4,
                                                                 "distinct keys, got a repeated one (entry 1)");
        assert_decode_error<std::set<std::uint8_t>>(bytes_of({2, 9, 9}), "std::set<std::uint8_t>", 2,
                                                    "distinct keys, got a repeated one (entry 1)");
        assert_decode_error<std::unordered_map<std::uint8_t, bool>>(bytes_of({2, 5, 1, 5, 0}),
                                                                    "std::unordered_map<std::uint8_t, bool>", 3,
                                                                    "distinct keys, got a repeated one (entry 1)");
        assert_decode_error<std::string>(bytes_of({1, 'a', 'b'}), "std::string", 2,
                                         "the end of the message, 1 bytes left over");
    }

    void testEverySingleByteChangeDecodesOrThrowsDecodeError() {
        const std::vector<std::byte> whole = mproc::encode(everything(5));
        std::size_t refused = 0;
        for (std::size_t at = 0; at < whole.size(); ++at) {
            for (const int value : {0x00, 0x01, 0x7f, 0x80, 0xc0, 0xff}) {
                std::vector<std::byte> changed = whole;
                changed[at] = static_cast<std::byte>(value);
                try {
                    const Everything decoded = mproc::decode<Everything>(changed);
                    // What decodes re-encodes to as many bytes (values are compared through encodings: a
                    // changed double may be a NaN; an unordered_map's order may differ).
                    CPPUNIT_ASSERT_EQUAL(changed.size(), mproc::encode(decoded).size());
                } catch (const DecodeError&) {
                    ++refused;
                }
            }
        }
        CPPUNIT_ASSERT(refused > 0);
    }
};

// ---- channels across processes ----

// The consumer's check: value number i arrived as sent.
void assert_is_value(std::uint32_t i, const Everything& got) {
    CPPUNIT_ASSERT_MESSAGE("value " + std::to_string(i), got == everything(i));
}

void assert_child_ok(ForkedChild& child) { mproc::test::assert_exited_cleanly(child.wait(60s)); }

class CodecChannelTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(CodecChannelTest);
    CPPUNIT_TEST(testEveryBuiltInTypeCrossesAnSpscQueueBetweenProcesses);
    CPPUNIT_TEST(testEveryBuiltInTypeCrossesAnMpmcQueueFromTwoProducerProcesses);
    CPPUNIT_TEST(testSimpleQueueCarriesStringsAndANoneEndMarker);
    CPPUNIT_TEST(testJoinableQueueJoinsAfterEveryEncodedItemIsDone);
    CPPUNIT_TEST(testNamedEncodedQueueOpenedInAnotherProcessDeliversRecords);
    CPPUNIT_TEST(testEncodingLongerThanTheSlotSpillsAndOneLongerThanTheBudgetThrowsValueError);
    CPPUNIT_TEST(testQueueMessageThatDoesNotDecodeThrowsDecodeErrorAndIsConsumed);
    CPPUNIT_TEST(testTrivialQueueKeepsItsSlotOfSizeofT);
    CPPUNIT_TEST(testEveryBuiltInTypeCrossesAPipeBothWays);
    CPPUNIT_TEST(testEveryBuiltInTypeCrossesAnFdConnectionBothWays);
    CPPUNIT_TEST(testConnectionMessageThatDoesNotDecodeThrowsDecodeErrorAndStaysUsable);
    CPPUNIT_TEST_SUITE_END();

public:
    void testEveryBuiltInTypeCrossesAnSpscQueueBetweenProcesses() {
        mproc::Queue<Everything> queue(64, mproc::QueueKind::spsc, kEverythingMaxMessage);
        CPPUNIT_ASSERT(queue.kind() == mproc::QueueKind::spsc);
        ForkedChild producer([&] {
            for (std::uint32_t i = 0; i < kChannelMessages; ++i) queue.put(everything(i));
        });
        for (std::uint32_t i = 0; i < kChannelMessages; ++i) assert_is_value(i, queue.get(true, 30s));
        assert_child_ok(producer);
        CPPUNIT_ASSERT(queue.empty());
    }

    void testEveryBuiltInTypeCrossesAnMpmcQueueFromTwoProducerProcesses() {
        using Tagged = std::pair<std::uint32_t, Everything>;  // producer, value
        mproc::Queue<Tagged> queue(32, mproc::QueueKind::mpmc, kEverythingMaxMessage);
        std::vector<std::unique_ptr<ForkedChild>> producers;
        for (std::uint32_t p = 0; p < 2; ++p)
            producers.push_back(std::make_unique<ForkedChild>([&queue, p] {
                for (std::uint32_t i = p; i < kChannelMessages; i += 2) queue.put({p, everything(i)});
            }));
        std::array<std::uint32_t, 2> next{0, 1};
        for (std::uint32_t n = 0; n < kChannelMessages; ++n) {
            const Tagged got = queue.get(true, 30s);
            CPPUNIT_ASSERT(got.first < 2);
            assert_is_value(next[got.first], got.second);  // each producer's values in its order
            next[got.first] += 2;
        }
        for (auto& producer : producers) assert_child_ok(*producer);
        CPPUNIT_ASSERT(queue.try_get() == std::nullopt);
    }

    void testSimpleQueueCarriesStringsAndANoneEndMarker() {
        mproc::SimpleQueue<std::optional<std::string>> queue(16);
        ForkedChild producer([&] {
            for (int i = 0; i < 100; ++i) queue.put("Hello from the sender process! " + std::to_string(i));
            queue.put(std::nullopt);
        });
        int received = 0;
        while (std::optional<std::string> message = queue.get()) {
            CPPUNIT_ASSERT_EQUAL("Hello from the sender process! " + std::to_string(received), *message);
            ++received;
        }
        CPPUNIT_ASSERT_EQUAL(100, received);
        assert_child_ok(producer);
        mproc::SimpleQueue<std::string> roomy(4, 100000);
        roomy.put(std::string(90000, 'r'));
        CPPUNIT_ASSERT_EQUAL(std::string(90000, 'r'), roomy.get());
    }

    void testJoinableQueueJoinsAfterEveryEncodedItemIsDone() {
        mproc::JoinableQueue<std::vector<std::string>> queue(16, mproc::QueueKind::mpmc, 4096);
        mproc::test::Shared<std::atomic<int>> done;
        ForkedChild consumer([&] {
            for (int i = 0; i < 50; ++i) {
                const std::vector<std::string> item = queue.get();
                CPPUNIT_ASSERT_EQUAL(static_cast<std::size_t>(i % 5), item.size());
                for (const std::string& word : item) CPPUNIT_ASSERT_EQUAL(std::to_string(i), word);
                // relaxed: the parent reads it after join(), whose acquire pairs with task_done's release.
                done->fetch_add(1, std::memory_order_relaxed);
                queue.task_done();
            }
        });
        for (int i = 0; i < 50; ++i) queue.put(std::vector<std::string>(static_cast<std::size_t>(i % 5), std::to_string(i)));
        CPPUNIT_ASSERT(queue.join(30s));
        // relaxed: ordered by join() above.
        CPPUNIT_ASSERT_EQUAL(50, done->load(std::memory_order_relaxed));
        assert_child_ok(consumer);
    }

    void testNamedEncodedQueueOpenedInAnotherProcessDeliversRecords() {
        const std::string name = mproc::test::unique_name("codec-queue");
        auto queue = mproc::Queue<Record>::create(name, 8, mproc::QueueKind::mpmc, 0600, 512);
        ForkedChild producer([&] {
            auto opened = mproc::Queue<Record>::open(name);
            CPPUNIT_ASSERT_EQUAL(std::size_t{512}, opened.max_message());
            for (int i = 0; i < 40; ++i) opened.put(Record{i, i * 0.5, "r" + std::to_string(i), std::vector<double>(i % 4, 1.0)});
        });
        for (int i = 0; i < 40; ++i)
            CPPUNIT_ASSERT(queue.get(true, 30s) == (Record{i, i * 0.5, "r" + std::to_string(i), std::vector<double>(i % 4, 1.0)}));
        assert_child_ok(producer);
        queue.unlink();
    }

    void testEncodingLongerThanTheSlotSpillsAndOneLongerThanTheBudgetThrowsValueError() {
        mproc::Queue<std::string> queue(4);
        CPPUNIT_ASSERT_EQUAL(std::size_t{1020}, queue.max_message());
        queue.put(std::string(1018, 'f'));     // a 2-byte length and 1018 bytes: exactly a slot
        queue.put(std::string(1019, 'g'));     // one byte more: through the spill arena
        queue.put(std::string(3 << 20, 'h'));  // 3 MiB
        const std::size_t budget = queue.byte_queue().spill_budget();
        const std::string message =
            mproc::test::message_of<mproc::ValueError>([&] { queue.put(std::string(budget + 1, 'i')); });
        CPPUNIT_ASSERT_MESSAGE(message, message.find("at most 1020 fit a slot and the spill budget is " +
                                                     std::to_string(budget) + " bytes") != std::string::npos);
        CPPUNIT_ASSERT_EQUAL(std::size_t{3}, queue.qsize());
        CPPUNIT_ASSERT_EQUAL(std::string(1018, 'f'), queue.get());
        CPPUNIT_ASSERT_EQUAL(std::string(1019, 'g'), queue.get());
        CPPUNIT_ASSERT_EQUAL(std::string(3 << 20, 'h'), queue.get());
        CPPUNIT_ASSERT_EQUAL(std::string(), mproc::Queue<std::string>(4).try_get().value_or(""));
    }

    void testQueueMessageThatDoesNotDecodeThrowsDecodeErrorAndIsConsumed() {
        mproc::Queue<std::string> queue(4);
        const std::vector<std::byte> garbage = bytes_of({9, 'x'});
        queue.byte_queue().put(std::span<const std::byte>(garbage));
        queue.put("after");
        const std::string message = mproc::test::message_of<DecodeError>([&] { (void)queue.get(); });
        CPPUNIT_ASSERT_EQUAL(std::string("decode std::string at byte 0: expected at most 1 elements (1 bytes left, 1 or more "
                                         "each), got a length of 9"),
                             message);
        CPPUNIT_ASSERT_EQUAL(std::string("after"), queue.get());
    }

    void testTrivialQueueKeepsItsSlotOfSizeofT() {
        // A trivially copyable T is not encoded: its slot is sizeof(T), its items their bytes.
        mproc::Queue<Point> queue(4);
        CPPUNIT_ASSERT_EQUAL(sizeof(Point), queue.core().slot_size());
        queue.put(Point{1, 2});
        CPPUNIT_ASSERT(queue.get() == (Point{1, 2}));
        mproc::Queue<std::string> encoded(4);
        CPPUNIT_ASSERT_EQUAL(std::size_t{1024}, encoded.core().slot_size());
    }

    template <class Connection>
    static void exchange_every_type(Connection& parent_end, Connection& child_end, const std::function<void()>& adopt) {
        ForkedChild child([&] {
            adopt();
            for (std::uint32_t i = 0; i < kChannelMessages; ++i) {
                const Everything got = child_end.template recv<Everything>();
                assert_is_value(i, got);
                child_end.send(std::get<std::string>(got));  // echo one member back
            }
            child_end.send(std::monostate());
        });
        for (std::uint32_t i = 0; i < kChannelMessages; ++i) {
            parent_end.send(everything(i));
            CPPUNIT_ASSERT_EQUAL(std::get<std::string>(everything(i)), parent_end.template recv<std::string>());
        }
        (void)parent_end.template recv<std::monostate>();
        assert_child_ok(child);
    }

    void testEveryBuiltInTypeCrossesAPipeBothWays() {
        auto ends = mproc::Pipe();
        mproc::PipeConnection& child_end = ends.second;
        exchange_every_type(ends.first, child_end, [&] { child_end.adopt(); });
    }

    void testEveryBuiltInTypeCrossesAnFdConnectionBothWays() {
        auto ends = mproc::fd_pipe();
        exchange_every_type(ends.first, ends.second, [] {});
    }

    void testConnectionMessageThatDoesNotDecodeThrowsDecodeErrorAndStaysUsable() {
        auto ends = mproc::fd_pipe();
        const std::vector<std::byte> garbage = bytes_of({1, 5});  // optional flag 1, then a string of 5 bytes: none
        ends.first.send_bytes(garbage);
        ends.first.send(std::optional<std::string>("fine"));
        const DecodeError error = [&] {
            try {
                (void)ends.second.recv<std::optional<std::string>>();
            } catch (const DecodeError& caught) {
                return caught;
            }
            CPPUNIT_FAIL("no DecodeError");
            throw;
        }();
        CPPUNIT_ASSERT_EQUAL(std::string("std::string"), error.type());
        CPPUNIT_ASSERT_EQUAL(std::size_t{1}, error.offset());
        CPPUNIT_ASSERT_EQUAL(std::string("at most 0 elements (0 bytes left, 1 or more each), got a length of 5"),
                             error.expected());
        CPPUNIT_ASSERT(ends.second.recv<std::optional<std::string>>() == std::optional<std::string>("fine"));
        // A trivially copyable T keeps its raw bytes: sizeof(T) exactly.
        ends.first.send(std::int64_t{-7});
        CPPUNIT_ASSERT_EQUAL(std::size_t{8}, ends.second.recv_bytes().size());
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(CodecUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(CodecChannelTest, "unit");

}  // namespace
