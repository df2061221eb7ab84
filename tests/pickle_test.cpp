// tests/pickle_test.cpp — mproc::PickleValue, pickle_loads/pickle_dumps and the C++ conversions, against
// the real python3 (tests/pickle_peer.py over a socketpair, fd inherited across exec): every supported type,
// nested mixes, big ints, NaN, ±inf, -0.0, empty containers, non-ASCII str and 10 MiB bytes sent by Python
// with protocols 2, 3, 4 and 5, decoded and echoed back by C++ and checked by Python; exact decoding of known
// values; C++ values read back equal by Python. Then hostile bytes with exact expectations: every prefix of a
// pickle, lengths of 2^60, nesting 100,000 deep, memo references never stored, every opcode that names or
// calls something, recursive structures, invalid UTF-8, leftovers after STOP, conversions that do not fit.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/pickle.hpp"

namespace {

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using namespace std::string_literals;
using mproc::DecodeError;
using mproc::FdConnection;
using mproc::PickleValue;
using mproc::test::ForkedChild;
using Items = PickleValue::Items;
using Kind = PickleValue::Kind;

// The same bytes tests/pickle_peer.py calls pattern(size).
std::vector<std::byte> pattern_bytes(std::size_t size) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i * 7 + size) & 0xff);
    return bytes;
}

std::vector<std::byte> bytes_of(std::string_view text) {
    const auto* first = reinterpret_cast<const std::byte*>(text.data());
    return {first, first + text.size()};
}

PickleValue loads(std::string_view pickle) { return mproc::pickle_loads(bytes_of(pickle)); }

// The what() of the DecodeError that decoding `pickle` throws; fails when it decodes.
std::string refusal_of(std::string_view pickle) {
    return mproc::test::message_of<DecodeError>([&] { loads(pickle); });
}

PickleValue str(std::string_view text) { return PickleValue::str(text); }
PickleValue integer(std::int64_t value) { return PickleValue::integer(value); }

// 2^power as a Python int (shortest two's complement, little-endian).
PickleValue power_of_two(unsigned power, bool negative) {
    std::vector<std::byte> bytes(power / 8 + 1, std::byte{0});
    bytes[power / 8] = static_cast<std::byte>(1u << (power % 8));
    if (negative) {  // two's complement of the magnitude: invert and add one
        for (auto& byte : bytes) byte = ~byte;
        for (auto& byte : bytes) {
            byte = static_cast<std::byte>(std::to_integer<unsigned>(byte) + 1);
            if (byte != std::byte{0}) break;
        }
    }
    return PickleValue::integer_from_bytes(bytes);
}

PickleValue nested_lists(std::size_t depth) {
    PickleValue value = PickleValue::list({});
    for (std::size_t i = 1; i < depth; ++i) value = PickleValue::list({value});
    return value;
}

std::string python_peer_path() {
    if (const char* configured = std::getenv("MPROC_PICKLE_PEER")) return configured;
    // Meson gives the connection tests' peer (tests/python_peer.py); this one lives beside it.
    if (const char* sibling = std::getenv("MPROC_PYTHON_PEER"))
        return (std::filesystem::path(sibling).parent_path() / "pickle_peer.py").string();
    return (std::filesystem::path(__FILE__).parent_path() / "pickle_peer.py").string();
}

class PickleTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(PickleTest);
    CPPUNIT_TEST(testPythonValuesEchoBackEqualProtocol2);
    CPPUNIT_TEST(testPythonValuesEchoBackEqualProtocol3);
    CPPUNIT_TEST(testPythonValuesEchoBackEqualProtocol4);
    CPPUNIT_TEST(testPythonValuesEchoBackEqualProtocol5);
    CPPUNIT_TEST(testPythonValuesDecodeExactlyInEveryProtocol);
    CPPUNIT_TEST(testCppValuesArriveEqualInPython);
    CPPUNIT_TEST(testEncoderWritesPythonsShortestOpcodes);
    CPPUNIT_TEST(testRoundTripKeepsEveryKindAndBitPattern);
    CPPUNIT_TEST(testSharedPartsAreWrittenOnceAndDecodedShared);
    CPPUNIT_TEST(testEveryPrefixOfAPickleIsRefused);
    CPPUNIT_TEST(testHugeLengthsAreRefusedBeforeAllocating);
    CPPUNIT_TEST(testProtocol2CopiesStayWithinTheInputsSize);
    CPPUNIT_TEST(testNestingIsBoundedAtOneThousand);
    CPPUNIT_TEST(testMemoReferencesNeverStoredAreRefused);
    CPPUNIT_TEST(testOpcodesThatNameOrCallAreRefusedByNameAndOffset);
    CPPUNIT_TEST(testRecursiveStructuresAreRefused);
    CPPUNIT_TEST(testMalformedStacksAndTextsAreRefused);
    CPPUNIT_TEST(testConversionsToCppTypesCheckKindAndRange);
    CPPUNIT_TEST_SUITE_END();

public:
    // ---- against python3 ----

    // python3 pickle_peer.py FD MODE [PROTOCOL] on the child end of a socketpair.
    ForkedChild start_peer(FdConnection& parent_end, FdConnection& child_end, const char* mode,
                           const char* protocol = nullptr) {
        const std::string script = python_peer_path();
        if (!std::filesystem::exists(script)) MPROC_SKIP("pickle peer script not found at " + script);
        if (::access("/usr/bin/python3", X_OK) != 0 && ::access("/usr/local/bin/python3", X_OK) != 0)
            MPROC_SKIP("python3 not installed: the pickle interop tests need the real Python");
        const std::string fd = std::to_string(child_end.fileno());
        return ForkedChild([&, mode, protocol] {
            parent_end.close();
            ::fcntl(child_end.fileno(), F_SETFD, 0);  // inherited across exec
            ::execlp("python3", "python3", script.c_str(), fd.c_str(), mode, protocol, static_cast<char*>(nullptr));
            std::_Exit(127);
        });
    }

    static void assert_peer_exited_zero(ForkedChild& peer, const std::string& what) {
        const int status = peer.wait(120s);
        CPPUNIT_ASSERT_MESSAGE(what + ": python peer wait status " + std::to_string(status) + " (its stderr says why)",
                               WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    // Python sends each case; C++ decodes it, re-encodes it with pickle_dumps and sends it back; Python
    // checks type and value throughout. Counts the echoes, so that a peer that sends nothing cannot pass.
    void echo(const char* protocol) {
        auto [parent_end, child_end] = mproc::fd_pipe(true);
        ForkedChild peer = start_peer(parent_end, child_end, "echo", protocol);
        child_end.close();
        std::size_t echoed = 0;
        for (;;) {
            std::vector<std::byte> message;
            try {
                message = parent_end.recv_bytes();
            } catch (const mproc::Closed&) {
                break;
            }
            const PickleValue value = mproc::pickle_loads(message);
            CPPUNIT_ASSERT_MESSAGE("decode(encode(v)) == v for case " + std::to_string(echoed),
                                   mproc::pickle_loads(mproc::pickle_dumps(value)) == value);
            mproc::send_pickle(parent_end, value);
            ++echoed;
        }
        assert_peer_exited_zero(peer, std::string("echo, protocol ") + protocol);
        CPPUNIT_ASSERT_EQUAL(std::size_t{60}, echoed);  // len(CASES) in pickle_peer.py
    }
    void testPythonValuesEchoBackEqualProtocol2() { echo("2"); }
    void testPythonValuesEchoBackEqualProtocol3() { echo("3"); }
    void testPythonValuesEchoBackEqualProtocol4() { echo("4"); }
    void testPythonValuesEchoBackEqualProtocol5() { echo("5"); }

    // KNOWN of pickle_peer.py, as C++ values.
    static std::vector<PickleValue> known_values() {
        return {
            PickleValue::none(),
            PickleValue::boolean(true),
            power_of_two(200, false),
            power_of_two(64, true),
            integer(-1),
            PickleValue::floating(std::bit_cast<double>(std::uint64_t{0x7ff8000000000000})),  // Python's nan
            PickleValue::floating(-0.0),
            PickleValue::floating(-HUGE_VAL),
            str("\xe2\x82\xac\xf0\x9d\x84\x9e"),
            PickleValue::bytes(bytes_of(std::string_view("\x00\xff", 2))),
            PickleValue::bytearray(bytes_of("ba")),
            PickleValue::list({integer(1), PickleValue::tuple({integer(2), PickleValue::floating(3.5)})}),
            PickleValue::dict({{str("a"), integer(1)}, {str("b"), PickleValue::list({PickleValue::none()})}}),
            PickleValue::set({integer(7)}),
            PickleValue::frozenset({str("f")}),
            PickleValue::bytes(pattern_bytes(10 << 20)),
        };
    }

    void testPythonValuesDecodeExactlyInEveryProtocol() {
        auto [parent_end, child_end] = mproc::fd_pipe(true);
        ForkedChild peer = start_peer(parent_end, child_end, "known");
        child_end.close();
        const std::vector<PickleValue> expected = known_values();
        for (const int protocol : {2, 3, 4, 5}) {
            for (std::size_t i = 0; i < expected.size(); ++i) {
                const PickleValue received = mproc::recv_pickle(parent_end);
                CPPUNIT_ASSERT_MESSAGE("protocol " + std::to_string(protocol) + ", value " + std::to_string(i) +
                                           ": got a " + received.kind_name(),
                                       received == expected[i]);
            }
        }
        assert_peer_exited_zero(peer, "known values");
        // The checks above compare by bits; say in numbers what some of them mean.
        CPPUNIT_ASSERT(std::isnan(expected[5].as_double()));
        CPPUNIT_ASSERT(std::signbit(expected[6].as_double()));
        CPPUNIT_ASSERT_EQUAL(std::size_t{26}, expected[2].integer_bytes().size());  // 2^200: 201 bits + sign
    }

    void testCppValuesArriveEqualInPython() {
        auto [parent_end, child_end] = mproc::fd_pipe(true);
        ForkedChild peer = start_peer(parent_end, child_end, "expect");
        child_end.close();
        // EXPECTED of pickle_peer.py, built from C++ types.
        mproc::send_pickle(parent_end, std::monostate{});
        mproc::send_pickle(parent_end, true);
        mproc::send_pickle(parent_end, std::int16_t{-42});
        mproc::send_pickle(parent_end, std::uint64_t{18446744073709551615u});
        mproc::send_pickle(parent_end, 0.25f);
        mproc::send_pickle(parent_end, std::string("\xc3\xa9t\xc3\xa9"));
        mproc::send_pickle(parent_end, std::vector<std::byte>{std::byte{1}, std::byte{2}});
        mproc::send_pickle(parent_end, PickleValue::bytearray(bytes_of("ba")));
        mproc::send_pickle(parent_end, std::vector<int>{1, 2, 3});
        mproc::send_pickle(parent_end, std::map<std::string, std::vector<long>>{{"one", {1}}, {"two", {2, 2}}});
        mproc::send_pickle(parent_end, std::set<unsigned>{3, 1, 2});
        mproc::send_pickle(parent_end, std::pair<int, std::string>{7, "seven"});
        mproc::send_pickle(parent_end, std::tuple<int, double, const char*, std::optional<int>>{1, 2.5, "three", {}});
        mproc::send_pickle(parent_end, std::vector<std::optional<int>>{std::nullopt, 5});
        mproc::send_pickle(parent_end, power_of_two(200, false));
        const PickleValue shared = PickleValue::list({integer(1), integer(2)});
        mproc::send_pickle(parent_end, PickleValue::list({shared, shared}));
        mproc::send_pickle(parent_end, nested_lists(mproc::kPickleMaxDepth));
        assert_peer_exited_zero(peer, "C++ values");
    }

    // ---- the encoder and round trips ----

    void testEncoderWritesPythonsShortestOpcodes() {
        // What pickle.dumps(v, protocol=4) writes for these, minus the FRAME Python adds around larger ones.
        const auto dumps = [](const PickleValue& value) {
            const auto bytes = mproc::pickle_dumps(value);
            return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        };
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04N.", 4), dumps(PickleValue::none()));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04K\x05.", 5), dumps(integer(5)));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04M\x00\x01.", 6), dumps(integer(256)));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04J\xff\xff\xff\xff.", 8), dumps(integer(-1)));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04\x8a\x05\x00\x00\x00\x00\x01.", 10), dumps(integer(1ll << 32)));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14),
                             dumps(power_of_two(64, false)));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04G\x3f\xf8\x00\x00\x00\x00\x00\x00.", 12), dumps(PickleValue::floating(1.5)));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04\x8c\x02\xc3\xa9.", 7), dumps(str("\xc3\xa9")));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04(K\x01K\x02\x91.", 9), dumps(PickleValue::frozenset({integer(1), integer(2)})));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04}(K\x01K\x02K\x03K\x04u.", 14),
                             dumps(PickleValue::dict({{integer(1), integer(2)}, {integer(3), integer(4)}})));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04]K\x01" "a.", 7), dumps(PickleValue::list({integer(1)})));
        CPPUNIT_ASSERT_EQUAL(std::string("\x80\x04K\x01K\x02\x86.", 8), dumps(PickleValue::tuple({integer(1), integer(2)})));
    }

    void testRoundTripKeepsEveryKindAndBitPattern() {
        const PickleValue value = PickleValue::dict({
            {str("kinds"), PickleValue::list({PickleValue::none(), PickleValue::boolean(false), integer(INT64_MIN),
                                              integer(INT64_MAX), power_of_two(300, true), PickleValue::floating(-0.0),
                                              PickleValue::floating(std::bit_cast<double>(std::uint64_t{0x7ff0000000000123})),
                                              PickleValue::bytes(pattern_bytes(70000)), PickleValue::bytearray({}),
                                              PickleValue::set({}), PickleValue::frozenset({integer(1)}),
                                              PickleValue::tuple({integer(1), integer(2), integer(3), integer(4)})})},
            {PickleValue::tuple({}), str(std::string(300, 'x'))},
            {integer(1), nested_lists(mproc::kPickleMaxDepth - 1)},
        });
        const PickleValue back = mproc::pickle_loads(mproc::pickle_dumps(value));
        CPPUNIT_ASSERT(back == value);
        // Equality sees a single differing bit: the NaN's payload, the zero's sign.
        CPPUNIT_ASSERT(PickleValue::floating(0.0) != PickleValue::floating(-0.0));
        CPPUNIT_ASSERT(PickleValue::integer(1) != PickleValue::boolean(true));
        CPPUNIT_ASSERT(PickleValue::bytes({}) != PickleValue::bytearray({}));
        CPPUNIT_ASSERT(back.dict_items()[0].second.items()[6] != PickleValue::floating(std::nan("")));
        CPPUNIT_ASSERT(back.dict_items()[0].second.items()[6] == value.dict_items()[0].second.items()[6]);
    }

    // A value whose parts are shared 2^40 times over is written once per part, and decodes and compares in
    // time proportional to its stored size.
    void testSharedPartsAreWrittenOnceAndDecodedShared() {
        PickleValue value = PickleValue::list({str("leaf")});
        for (int level = 0; level < 40; ++level) value = PickleValue::list({value, value});
        const std::vector<std::byte> pickle = mproc::pickle_dumps(value);
        CPPUNIT_ASSERT_MESSAGE("size " + std::to_string(pickle.size()), pickle.size() < 40 * 16 + 32);
        const PickleValue back = mproc::pickle_loads(pickle);
        CPPUNIT_ASSERT(back == value);
        CPPUNIT_ASSERT_EQUAL(std::size_t{41}, back.depth());
    }

    // ---- hostile bytes ----

    void testEveryPrefixOfAPickleIsRefused() {
        const PickleValue value = PickleValue::dict({{str("a"), PickleValue::list({integer(1), power_of_two(70, true),
                                                                                   PickleValue::floating(2.5)})},
                                                     {str("b"), PickleValue::set({str("s")})},
                                                     {str("c"), PickleValue::bytearray(bytes_of("xyz"))}});
        const std::vector<std::byte> pickle = mproc::pickle_dumps(value);
        for (std::size_t length = 0; length < pickle.size(); ++length)
            CPPUNIT_ASSERT_THROW_MESSAGE("prefix of " + std::to_string(length) + " bytes",
                                         mproc::pickle_loads(std::span(pickle.data(), length)), DecodeError);
        CPPUNIT_ASSERT(mproc::pickle_loads(pickle) == value);
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: truncated: no STOP opcode in 0 bytes"), refusal_of(""));
    }

    void testHugeLengthsAreRefusedBeforeAllocating() {
        CPPUNIT_ASSERT_EQUAL(
            std::string("pickle: BINBYTES8 (0x8e) at offset 2: needs 1152921504606846976 bytes of argument, 1 left"),
            refusal_of(std::string_view("\x80\x05\x8e\x00\x00\x00\x00\x00\x00\x00\x10.", 12)));
        CPPUNIT_ASSERT_EQUAL(
            std::string("pickle: BINUNICODE8 (0x8d) at offset 0: needs 18446744073709551615 bytes of argument, 0 left"),
            refusal_of(std::string_view("\x8d\xff\xff\xff\xff\xff\xff\xff\xff", 9)));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: FRAME (0x95) at offset 2: frame of 1152921504606846976 bytes, 2 left"),
                             refusal_of(std::string_view("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x10N.", 13)));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: LONG4 (0x8b) at offset 0: negative length -1"),
                             refusal_of(std::string_view("\x8b\xff\xff\xff\xff.", 6)));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: BYTEARRAY8 (0x96) at offset 0: needs 4294967296 bytes of argument, 1 left"),
                             refusal_of(std::string_view("\x96\x00\x00\x00\x00\x01\x00\x00\x00.", 10)));
    }

    // Protocol 2 writes a set as set(list): the copy the decoder makes is charged to a budget of one element
    // per input byte, so calling set() on one shared 1000-element list again and again cannot turn a few
    // bytes per call into a thousand elements per call.
    void testProtocol2CopiesStayWithinTheInputsSize() {
        std::string list = "]\x94(";  // memo 1: the list
        for (int i = 0; i < 1000; ++i) list += "K\x01";
        list += "e\x85\x94" "0";  // memo 2: (list,), dropped from the stack
        const std::string call = "h\x00h\x02R0"s;  // set(list), dropped
        const std::string global = "cbuiltins\nset\n\x94" "0";  // memo 0: the callable, dropped from the stack
        // One call copies 1000 elements out of 2000-odd bytes: fine; of ten calls, the third is refused.
        CPPUNIT_ASSERT_EQUAL(std::size_t{1000}, loads(global + list + "h\x00h\x02R."s).items().size());
        std::string ten_calls = global + list;
        for (int i = 0; i < 10; ++i) ten_calls += call;
        mproc::test::assert_contains(refusal_of(ten_calls + "N."), "REDUCE (0x52) at offset 2039: copies more elements "
                                                                  "than the pickle has bytes (2085)");
    }

    void testNestingIsBoundedAtOneThousand() {
        const std::string refused = "nesting deeper than 1000 containers";
        // 100,000 empty lists, each appended into the one below.
        mproc::test::assert_contains(refusal_of(std::string(100000, ']') + std::string(99999, 'a') + "."), refused);
        // 100,000 one-element tuples around None.
        mproc::test::assert_contains(refusal_of("N" + std::string(100000, '\x85') + "."), refused);
        // 100,000 marks each closed by LIST.
        mproc::test::assert_contains(refusal_of(std::string(100000, '(') + std::string(100000, 'l') + "."), refused);
        // 100,000 dicts, each the value of the one below.
        std::string dicts = "}";
        for (int i = 1; i < 100000; ++i) dicts += "K\x01}";
        dicts += std::string(99999, 's');
        mproc::test::assert_contains(refusal_of(dicts + "."), refused);
        // Exactly 1000 is decoded; 1001 is not: the bound is where it is documented.
        CPPUNIT_ASSERT_EQUAL(std::size_t{1000}, loads(std::string(1000, ']') + std::string(999, 'a') + ".").depth());
        CPPUNIT_ASSERT_EQUAL("pickle: APPEND (0x61) at offset 2000: " + refused,
                             refusal_of(std::string(1001, ']') + std::string(1000, 'a') + "."));
        CPPUNIT_ASSERT_THROW(nested_lists(1001), mproc::ValueError);
    }

    void testMemoReferencesNeverStoredAreRefused() {
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: BINGET (0x68) at offset 2: memo entry 5 was never stored"),
                             refusal_of("\x80\x04h\x05."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: LONG_BINGET (0x6a) at offset 3: memo entry 4294967295 was never stored"),
                             refusal_of("N\x94" "0j\xff\xff\xff\xff."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: MEMOIZE (0x94) at offset 0: needs 1 stack entries above the mark, 0 there"),
                             refusal_of("\x94N."));
        // Stored and fetched: fine, and MEMOIZE numbers from the memo's size as Python's does.
        CPPUNIT_ASSERT(loads("K\x07\x94K\x08\x94\x86h\x01h\x00\x86\x86."sv) ==
                       PickleValue::tuple({PickleValue::tuple({integer(7), integer(8)}),
                                           PickleValue::tuple({integer(8), integer(7)})}));
    }

    void testOpcodesThatNameOrCallAreRefusedByNameAndOffset() {
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: GLOBAL (0x63) at offset 2: names os.system: classes and functions are "
                                         "never unpickled (only builtins.set, frozenset, bytearray, bytes and "
                                         "_codecs.encode are understood, as data)"),
                             refusal_of("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00ls\x85R."sv));
        mproc::test::assert_contains(refusal_of("\x80\x04\x8c\x02os\x8c\x06system\x93."),
                                     "pickle: STACK_GLOBAL (0x93) at offset 14: names os.system");
        mproc::test::assert_contains(refusal_of("\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93."), "names builtins.eval");
        const std::string never = "instantiates or calls an object by name; nothing is ever executed or instantiated";
        const std::pair<std::string_view, std::string> refused[] = {
            {std::string_view("N}b.", 4), "pickle: BUILD (0x62) at offset 2: "},
            {std::string_view("(imod\ncls\n.", 11), "pickle: INST (0x69) at offset 1: "},
            {std::string_view("(N)o.", 5), "pickle: OBJ (0x6f) at offset 3: "},
            {std::string_view("N)\x81.", 4), "pickle: NEWOBJ (0x81) at offset 2: "},
            {std::string_view("N)}\x92.", 5), "pickle: NEWOBJ_EX (0x92) at offset 3: "},
            {std::string_view("Pid\n.", 5), "pickle: PERSID (0x50) at offset 0: "},
            {std::string_view("NQ.", 3), "pickle: BINPERSID (0x51) at offset 1: "},
            {std::string_view("\x82\x01.", 3), "pickle: EXT1 (0x82) at offset 0: "},
            {std::string_view("\x83\x01\x00.", 4), "pickle: EXT2 (0x83) at offset 0: "},
            {std::string_view("\x84\x01\x00\x00\x00.", 6), "pickle: EXT4 (0x84) at offset 0: "},
        };
        for (const auto& [pickle, prefix] : refused) CPPUNIT_ASSERT_EQUAL(prefix + never, refusal_of(pickle));
        // REDUCE of anything but a recognised callable, and a recognised callable given other arguments.
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: REDUCE (0x52) at offset 2: calls a None: nothing is ever called"),
                             refusal_of("N)R."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: REDUCE (0x52) at offset 19: builtins.set called with 1 arguments of "
                                         "the wrong kinds, expected () or (list,)"),
                             refusal_of("\x8c\x08" "builtins\x8c\x03" "set\x93K\x01\x85R."));
        // A recognised callable used as data is refused too: nothing but REDUCE may touch it.
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: STOP (0x2e) at offset 14: uses the callable builtins.set as data; it may "
                                         "only be called by REDUCE"),
                             refusal_of("cbuiltins\nset\n."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: NEXT_BUFFER (0x97) at offset 2: out-of-band buffers are not supported "
                                         "(Connection.send never writes them)"),
                             refusal_of("\x80\x05\x97."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: INT (0x49) at offset 0: text opcode of protocol 0, not supported "
                                         "(protocols 2 to 5 are)"),
                             refusal_of("I1\n."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: opcode (0xff) at offset 1: unknown opcode"), refusal_of("N\xff."));
    }

    void testRecursiveStructuresAreRefused() {
        // l = []; l.append(l), as Python's pickler writes it.
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: APPEND (0x61) at offset 6: modifies a list already referenced again "
                                         "through the memo or DUP (a recursive structure), not supported"),
                             refusal_of("\x80\x04]\x94h\x00" "a."sv));
        mproc::test::assert_contains(refusal_of("}2K\x01s."), "SETITEM (0x73) at offset 4: modifies a dict already");
        mproc::test::assert_contains(refusal_of("\x8f\x94(h\x00\x90."sv), "ADDITEMS (0x90) at offset 5: modifies a set");
    }

    void testMalformedStacksAndTextsAreRefused() {
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: STOP (0x2e) at offset 0: needs 1 stack entries above the mark, 0 there"),
                             refusal_of("."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: STOP (0x2e) at offset 2: 1 stack entries and 0 marks left over"),
                             refusal_of("NN."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: STOP (0x2e) at offset 1: 3 bytes after STOP"), refusal_of("N.NN."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: TUPLE (0x74) at offset 1: no MARK to pop"), refusal_of("Nt."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: TUPLE2 (0x86) at offset 2: needs 2 stack entries above the mark, 0 there"),
                             refusal_of("N(\x86."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: APPENDS (0x65) at offset 3: no container below the mark"),
                             refusal_of("(NNe."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: APPEND (0x61) at offset 2: adds to a tuple, expected a list"),
                             refusal_of(")Na."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: SETITEMS (0x75) at offset 5: odd number of entries for a dict's keys and values"),
                             refusal_of("}(NNNu."));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle: PROTO (0x80) at offset 0: protocol 6 is newer than 5"), refusal_of("\x80\x06N."));
        // Overlong '/' in two, three and four bytes, a lone continuation byte, a code point past U+10FFFF, a
        // truncated sequence.
        for (const std::string_view bad : {std::string_view("\xc0\xaf"), std::string_view("\xe0\x80\xaf"),
                                           std::string_view("\xf0\x80\x80\xaf"), std::string_view("\x80"),
                                           std::string_view("\xf4\x90\x80\x80"), std::string_view("a\xe2\x82")}) {
            std::string pickle = "\x8c";
            pickle += static_cast<char>(bad.size());
            pickle += bad;
            pickle += ".";
            mproc::test::assert_contains(refusal_of(pickle), "SHORT_BINUNICODE (0x8c) at offset 0: str is not UTF-8");
        }
        // An encoded surrogate passes, as with Python's 'surrogatepass'.
        CPPUNIT_ASSERT_EQUAL(std::string("\xed\xa0\x80"), loads("\x8c\x03\xed\xa0\x80.").as_str());
        CPPUNIT_ASSERT_THROW(PickleValue::str("\xff"), mproc::ValueError);
        // _codecs.encode of a character beyond latin-1 (Python would raise UnicodeEncodeError).
        mproc::test::assert_contains(refusal_of("c_codecs\nencode\n\x8c\x02\xc4\x80\x8c\x06latin1\x86R."),
                                     "_codecs.encode of a str with a character beyond latin-1");
    }

    void testConversionsToCppTypesCheckKindAndRange() {
        using mproc::from_pickle;
        using mproc::to_pickle;
        CPPUNIT_ASSERT_EQUAL(std::string("pickle value: expected str, got int"),
                             mproc::test::message_of<DecodeError>([] { from_pickle<std::string>(integer(1)); }));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle value: 300 does not fit in the integer type asked for"),
                             mproc::test::message_of<DecodeError>([] { from_pickle<std::int8_t>(integer(300)); }));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle value: -1 does not fit in the unsigned integer type asked for"),
                             mproc::test::message_of<DecodeError>([] { from_pickle<unsigned>(integer(-1)); }));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle value: an int of 9 bytes does not fit in a 64-bit integer"),
                             mproc::test::message_of<DecodeError>([] { from_pickle<std::int64_t>(power_of_two(64, false)); }));
        CPPUNIT_ASSERT_EQUAL(std::string("pickle value: expected a tuple of 2 elements, got 3"),
                             mproc::test::message_of<DecodeError>([] {
                                 from_pickle<std::pair<int, int>>(PickleValue::tuple({integer(1), integer(2), integer(3)}));
                             }));
        CPPUNIT_ASSERT_EQUAL(std::numeric_limits<std::uint64_t>::max(),
                             from_pickle<std::uint64_t>(to_pickle(std::numeric_limits<std::uint64_t>::max())));
        CPPUNIT_ASSERT_THROW(from_pickle<std::uint64_t>(power_of_two(64, false)), DecodeError);
        CPPUNIT_ASSERT_THROW(from_pickle<std::uint64_t>(power_of_two(64, true)), DecodeError);
        CPPUNIT_ASSERT_EQUAL(2.0, from_pickle<double>(integer(2)));
        CPPUNIT_ASSERT_THROW(from_pickle<double>(integer((1ll << 53) + 1)), DecodeError);
        // Dicts with a repeated key keep the last value, as Python's dict does.
        const auto map = from_pickle<std::unordered_map<std::string, int>>(loads("}(\x8c\x01kK\x01\x8c\x01kK\x02u."));
        CPPUNIT_ASSERT_EQUAL(std::size_t{1}, map.size());
        CPPUNIT_ASSERT_EQUAL(2, map.at("k"));
        // Round trips through the C++ types.
        using Nested = std::map<std::string, std::vector<std::tuple<int, std::optional<std::string>, std::set<long>>>>;
        const Nested nested{{"a", {{1, "x", {1, 2}}, {2, std::nullopt, {}}}}, {"b", {}}};
        CPPUNIT_ASSERT(nested == from_pickle<Nested>(mproc::pickle_loads(mproc::pickle_dumps(to_pickle(nested)))));
        CPPUNIT_ASSERT_THROW(to_pickle(std::string("\xff")), mproc::ValueError);
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PickleTest, "unit");

}  // namespace
