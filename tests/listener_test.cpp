// tests/listener_test.cpp — mproc::Listener and mproc::Client: every pairing with the real python3 (its
// Listener/Client, CPython 3.11 here) over a filesystem socket, an abstract socket, 127.0.0.1 and ::1 with the
// right key, a wrong key and none; pickled objects both ways after the handshake (Connection.send/recv on
// the Python side, pickle.hpp here); CPython 3.12's {digest} handshake against tests/listener_peer.py in both
// roles and both negotiation directions; hostile peers (a 2^62-byte frame, garbage, half a handshake, a close
// at every byte offset in both directions); a listener that serves on after bad, stalled and SIGKILLed
// clients; many clients connecting and disconnecting while another streams (stress).
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/listener.hpp"
#include "mproc/pickle.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::AuthenticationError;
using mproc::Client;
using mproc::FdConnection;
using mproc::HandshakeOptions;
using mproc::Listener;
using mproc::SocketAddress;
using mproc::test::assert_contains;
using mproc::test::ForkedChild;
using mproc::test::message_of;

const std::string kKey = "the shared secret";
const std::string kOtherKey = "not the shared secret";

enum class Family { unix_path, abstract, tcp4, tcp6 };

const char* family_argument(Family family) {
    switch (family) {
        case Family::unix_path: return "unix";
        case Family::abstract: return "abstract";
        case Family::tcp4: return "tcp4";
        case Family::tcp6: return "tcp6";
    }
    return "?";
}

bool ipv6_loopback_available() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
    ::close(fd);
    return bound;
}

// The host (path, abstract name, numeric address) tests of `family` use; port 0 for TCP.
std::string host_for(Family family) {
    switch (family) {
        case Family::unix_path: return "/tmp" + mproc::test::unique_name("listener.sock");
        case Family::abstract: return mproc::test::unique_name("listener").substr(1);
        case Family::tcp4: return "127.0.0.1";
        case Family::tcp6:
            if (!ipv6_loopback_available()) MPROC_SKIP("no IPv6 loopback (::1) on this machine");
            return "::1";
    }
    return {};
}

SocketAddress address_for(Family family, const std::string& host, std::uint16_t port = 0) {
    switch (family) {
        case Family::unix_path: return SocketAddress::unix_socket(host);
        case Family::abstract: return SocketAddress::unix_socket(std::string(1, '\0') + host);
        default: return SocketAddress::tcp(host, port);
    }
}

std::string hex(const std::string& bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    for (const char c : bytes) {
        text += kHex[static_cast<unsigned char>(c) >> 4];
        text += kHex[static_cast<unsigned char>(c) & 0xf];
    }
    return text;
}

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

std::string text_of(const std::vector<std::byte>& bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// python3 tests/listener_peer.py ..., stdout and stderr on pipes.
class PythonPeer {
public:
    PythonPeer(const std::string& role, Family family, const std::string& host, std::uint16_t port,
               std::optional<std::string> key, const std::string& protocol, const std::string& digest = "sha256")
        : PythonPeer("listener_peer.py", {role, family_argument(family), host, std::to_string(port),
                                          !key ? "-" : key->empty() ? "empty" : hex(*key), protocol, digest}) {}

    // python3 tests/SCRIPT ARGUMENTS...
    PythonPeer(const std::string& script_name, const std::vector<std::string>& arguments) {
        const std::string script = script_path(script_name);
        if (!std::filesystem::exists(script)) MPROC_SKIP("python peer script not found at " + script);
        if (::access("/usr/bin/python3", X_OK) != 0 && ::access("/usr/local/bin/python3", X_OK) != 0)
            MPROC_SKIP("python3 not installed");
        int out[2];
        int err[2];
        CPPUNIT_ASSERT(::pipe2(out, O_CLOEXEC) == 0);
        CPPUNIT_ASSERT(::pipe2(err, O_CLOEXEC) == 0);
        std::vector<const char*> argv = {"python3", script.c_str()};
        for (const std::string& argument : arguments) argv.push_back(argument.c_str());
        argv.push_back(nullptr);
        child_.emplace([&] {
            ::dup2(out[1], 1);
            ::dup2(err[1], 2);
            ::execvp("python3", const_cast<char* const*>(argv.data()));
            std::_Exit(127);
        });
        ::close(out[1]);
        ::close(err[1]);
        stdout_ = out[0];
        stderr_ = err[0];
    }
    PythonPeer(const PythonPeer&) = delete;
    PythonPeer& operator=(const PythonPeer&) = delete;
    ~PythonPeer() {
        ::close(stdout_);
        ::close(stderr_);
    }

    // Waits for "READY <port>" (a listening peer) and returns the port.
    std::uint16_t wait_ready() {
        std::string line;
        const auto give_up = std::chrono::steady_clock::now() + 20s;
        while (line.find('\n') == std::string::npos) {
            pollfd entry{stdout_, POLLIN, 0};
            CPPUNIT_ASSERT_MESSAGE("python listener never said READY; stderr: " + drain_stderr(),
                                   std::chrono::steady_clock::now() < give_up);
            if (::poll(&entry, 1, 100) <= 0) continue;
            char chunk[64];
            const ssize_t got = ::read(stdout_, chunk, sizeof(chunk));
            CPPUNIT_ASSERT_MESSAGE("python listener ended before READY; stderr: " + drain_stderr(), got > 0);
            line.append(chunk, static_cast<std::size_t>(got));
        }
        CPPUNIT_ASSERT_MESSAGE("unexpected line from python: " + line, line.rfind("READY ", 0) == 0);
        return static_cast<std::uint16_t>(std::stoi(line.substr(6)));
    }

    // Waits for the peer to end and returns its exit status (3: it refused the handshake).
    int exit_code() {
        const int status = child_->wait(30s);
        CPPUNIT_ASSERT_MESSAGE("python peer did not exit normally", WIFEXITED(status));
        return WEXITSTATUS(status);
    }

    // Everything the peer wrote on stderr so far (all of it once it ended).
    std::string drain_stderr() {
        std::string& text = stderr_text_;
        char chunk[512];
        for (;;) {
            pollfd entry{stderr_, POLLIN, 0};
            if (::poll(&entry, 1, 0) <= 0) break;
            const ssize_t got = ::read(stderr_, chunk, sizeof(chunk));
            if (got <= 0) break;
            text.append(chunk, static_cast<std::size_t>(got));
        }
        return text;
    }

    void assert_exited(int expected, const std::string& what) {
        const int code = exit_code();
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what + "; python stderr: " + drain_stderr(), expected, code);
    }

private:
    // Beside tests/python_peer.py, which the Meson tests name in MPROC_PYTHON_PEER.
    static std::string script_path(const std::string& name) {
        if (const char* python_peer = std::getenv("MPROC_PYTHON_PEER"))
            return (std::filesystem::path(python_peer).parent_path() / name).string();
        return (std::filesystem::path(__FILE__).parent_path() / name).string();
    }

    std::optional<ForkedChild> child_;
    std::string stderr_text_;
    int stdout_ = -1;
    int stderr_ = -1;
};

// After a handshake: messages cross both ways (the Python peer answers each with "py:" + message), one of
// them longer than a socket buffer, then our close ends the peer's loop.
void assert_bytes_flow_both_ways(FdConnection& connection) {
    for (const std::string& message : {std::string("hello"), std::string(), std::string(300000, 'x')}) {
        connection.send_bytes(bytes_of(message));
        CPPUNIT_ASSERT(text_of(connection.recv_bytes()) == "py:" + message);
    }
    connection.close();
}

HandshakeOptions quick(std::chrono::milliseconds timeout) {
    HandshakeOptions options;
    options.timeout = timeout;
    return options;
}

// Writes all of bytes to fd (a test peer playing its part).
void write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t written = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return;  // the other side gave up: that is what some tests expect
        bytes.remove_prefix(static_cast<std::size_t>(written));
    }
}

std::string frame(std::string_view body) {
    const auto size = static_cast<std::uint32_t>(body.size());
    std::string framed = {static_cast<char>(size >> 24), static_cast<char>(size >> 16), static_cast<char>(size >> 8),
                          static_cast<char>(size)};
    framed.append(body);
    return framed;
}

// Forwards bytes between two sockets until both directions ended, passing at most `cap` bytes in the capped
// direction (a to b when cap_a_to_b, else b to a); at the cap it closes that direction as a peer that died there.
class CappedRelay {
public:
    CappedRelay(int a, int b, std::size_t cap, bool cap_a_to_b)
        : thread_([=] { run(a, b, cap, cap_a_to_b); }) {}
    ~CappedRelay() { thread_.join(); }

private:
    static void run(int a, int b, std::size_t cap, bool cap_a_to_b) {
        bool a_open = true;
        bool b_open = true;
        std::size_t capped_sent = 0;
        if (cap == 0) {
            ::shutdown(cap_a_to_b ? b : a, SHUT_WR);
            if (cap_a_to_b) a_open = false; else b_open = false;
        }
        while (a_open || b_open) {
            // A side that ended is left out (a negative fd), or poll would keep reporting its hang-up.
            pollfd entries[2] = {{a_open ? a : -1, POLLIN, 0}, {b_open ? b : -1, POLLIN, 0}};
            if (::poll(entries, 2, 5000) <= 0) break;
            for (int side = 0; side < 2; ++side) {
                if (entries[side].revents == 0) continue;
                const int from = side == 0 ? a : b;
                const int to = side == 0 ? b : a;
                const bool capped = (side == 0) == cap_a_to_b;
                char chunk[4096];
                std::size_t want = sizeof(chunk);
                if (capped) want = std::min(want, cap - capped_sent);
                const ssize_t got = ::recv(from, chunk, want, 0);
                if (got <= 0) {
                    ::shutdown(to, SHUT_WR);
                    (side == 0 ? a_open : b_open) = false;
                    continue;
                }
                write_all(to, std::string_view(chunk, static_cast<std::size_t>(got)));
                if (capped) {
                    capped_sent += static_cast<std::size_t>(got);
                    if (capped_sent == cap) {
                        ::shutdown(to, SHUT_WR);
                        ::shutdown(from, SHUT_RD);
                        (side == 0 ? a_open : b_open) = false;
                    }
                }
            }
        }
        ::shutdown(a, SHUT_RDWR);
        ::shutdown(b, SHUT_RDWR);
    }

    std::thread thread_;
};

struct SocketPair {
    SocketPair() { CPPUNIT_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0); }
    ~SocketPair() {
        for (const int fd : fds)
            if (fd >= 0) ::close(fd);
    }
    int fds[2] = {-1, -1};
};

// The outcome of one side's half of a test handshake.
struct Outcome {
    bool succeeded = false;
    std::string error;  // what() of the AuthenticationError, or "other: ..." for any other exception
};

template <class Body>
Outcome outcome_of(Body body) {
    Outcome outcome;
    try {
        body();
        outcome.succeeded = true;
    } catch (const AuthenticationError& error) {
        outcome.error = error.what();
    } catch (const std::exception& error) {
        outcome.error = std::string("other: ") + error.what();
    }
    return outcome;
}

// Listener's order (deliver, answer) on one fd and Client's (answer, deliver) on the other, through a relay
// capped at `cap` bytes in one direction.
std::pair<Outcome, Outcome> handshake_through_relay(std::size_t cap, bool cap_client_to_listener,
                                                     const HandshakeOptions& options = quick(5s)) {
    SocketPair listener_side;
    SocketPair client_side;
    Outcome listener_outcome;
    Outcome client_outcome;
    {
        CappedRelay relay(client_side.fds[1], listener_side.fds[1], cap, cap_client_to_listener);
        std::thread client([&] {
            client_outcome = outcome_of([&] {
                mproc::answer_challenge(client_side.fds[0], kKey, options);
                mproc::deliver_challenge(client_side.fds[0], kKey, options);
            });
            ::shutdown(client_side.fds[0], SHUT_RDWR);
        });
        listener_outcome = outcome_of([&] {
            mproc::deliver_challenge(listener_side.fds[0], kKey, options);
            mproc::answer_challenge(listener_side.fds[0], kKey, options);
        });
        ::shutdown(listener_side.fds[0], SHUT_RDWR);
        client.join();
    }
    return {listener_outcome, client_outcome};
}

// docs/crossing-machines.md's C++ worker, verbatim between the markers: it joins a Python orchestrator
// (tests/listener_orchestrator.py) and squares the numbers it is sent until told to stop.
// [worker]
int run_worker(const std::string& host, std::uint16_t port, const std::string& authkey) {
    // Connects and runs Python's authkey handshake; AuthenticationError when the keys differ.
    mproc::FdConnection orchestrator = mproc::Client(mproc::SocketAddress::tcp(host, port), authkey, 10s);
    for (;;) {
        const std::vector<std::byte> task = orchestrator.recv_bytes(/*maxlength=*/1024);
        const std::string text(reinterpret_cast<const char*>(task.data()), task.size());
        if (text == "stop") return 0;
        const long n = std::stol(text.substr(text.find(' ') + 1));  // "square N"
        const std::string answer = std::to_string(n * n);
        orchestrator.send_bytes(std::as_bytes(std::span(answer.data(), answer.size())));
    }
}
// [worker]

class ListenerTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ListenerTest);
    CPPUNIT_TEST(testCppClientJoinsPythonListenerOverFilesystemSocket);
    CPPUNIT_TEST(testCppClientJoinsPythonListenerOverAbstractSocket);
    CPPUNIT_TEST(testCppClientJoinsPythonListenerOverIpv4);
    CPPUNIT_TEST(testCppClientJoinsPythonListenerOverIpv6);
    CPPUNIT_TEST(testPythonClientJoinsCppListenerOverFilesystemSocket);
    CPPUNIT_TEST(testPythonClientJoinsCppListenerOverAbstractSocket);
    CPPUNIT_TEST(testPythonClientJoinsCppListenerOverIpv4);
    CPPUNIT_TEST(testPythonClientJoinsCppListenerOverIpv6);
    CPPUNIT_TEST(testWrongKeyFailsBothSidesAgainstPythonListener);
    CPPUNIT_TEST(testWrongKeyFailsBothSidesAgainstPythonClient);
    CPPUNIT_TEST(testCppWorkerJoinsPythonOrchestrator);
    CPPUNIT_TEST(testPickledObjectsFlowBothWaysWithPythonListener);
    CPPUNIT_TEST(testPickledObjectsFlowBothWaysWithPythonClient);
    CPPUNIT_TEST(testNoKeyOnEitherSideConnectsWithPython);
    CPPUNIT_TEST(testPythonClientWithoutKeyIsRefusedByKeyedListener);
    CPPUNIT_TEST(testKeyedClientOfKeylessPythonListenerTimesOut);
    CPPUNIT_TEST(testPython312ListenerSha256ChallengeGetsPrefixedAnswer);
    CPPUNIT_TEST(testPython312ListenerSha3ChallengeGetsSha3Answer);
    CPPUNIT_TEST(testPython312ClientAnswersOurSha256Challenge);
    CPPUNIT_TEST(testPython312ClientAnswersOurLegacyChallengeWithBareMd5);
    CPPUNIT_TEST(testWrongKeyFailsBothSidesAgainstPython312);
    CPPUNIT_TEST(testAnswersAreCPythonsByteForByte);
    CPPUNIT_TEST(testChallengesHaveCPythonsShape);
    CPPUNIT_TEST(testChallengeFrameOf2To62BytesIsRefusedFromItsHeader);
    CPPUNIT_TEST(testResponseFrameOf2To62BytesIsRefusedByListener);
    CPPUNIT_TEST(testGarbageBeforeChallengeIsProtocolError);
    CPPUNIT_TEST(testUnknownDigestPrefixIsRefused);
    CPPUNIT_TEST(testHalfHandshakeFailsAtTimeout);
    CPPUNIT_TEST(testCloseAtEveryByteOffsetFromClient);
    CPPUNIT_TEST(testCloseAtEveryByteOffsetFromListener);
    CPPUNIT_TEST(testFirstMessageAfterHandshakeIsNotConsumedByIt);
    CPPUNIT_TEST(testListenerServesOnAfterBadStalledAndGarbageClients);
    CPPUNIT_TEST(testClientKilledMidHandshakeEndsOnlyThatAccept);
    CPPUNIT_TEST(testClientKilledMidMessageIsTruncatedFrame);
    CPPUNIT_TEST(testAcceptTimesOutWithoutClient);
    CPPUNIT_TEST(testPortZeroReportsPickedPort);
    CPPUNIT_TEST(testCloseRemovesFilesystemPath);
    CPPUNIT_TEST(testEmptyKeyListenerSkipsHandshakeAsPython);
    CPPUNIT_TEST(testMisuseIsRefused);
    CPPUNIT_TEST(testClientOfMissingListenerFails);
    CPPUNIT_TEST_SUITE_END();

public:
    // ---- the real python3 (3.11): its Listener/Client ----

    void cpp_client_joins_python_listener(Family family) {
        const std::string host = host_for(family);
        PythonPeer python("listen", family, host, 0, kKey, "python");
        const std::uint16_t port = python.wait_ready();
        FdConnection connection = Client(address_for(family, host, port), kKey, 10s);
        assert_bytes_flow_both_ways(connection);
        python.assert_exited(0, "python listener after the exchange");
    }
    void testCppClientJoinsPythonListenerOverFilesystemSocket() { cpp_client_joins_python_listener(Family::unix_path); }
    void testCppClientJoinsPythonListenerOverAbstractSocket() { cpp_client_joins_python_listener(Family::abstract); }
    void testCppClientJoinsPythonListenerOverIpv4() { cpp_client_joins_python_listener(Family::tcp4); }
    void testCppClientJoinsPythonListenerOverIpv6() { cpp_client_joins_python_listener(Family::tcp6); }

    void python_client_joins_cpp_listener(Family family) {
        const std::string host = host_for(family);
        Listener listener(address_for(family, host), 1, kKey);
        PythonPeer python("connect", family, host, listener.address().port(), kKey, "python");
        std::optional<FdConnection> connection = listener.accept(20s);
        CPPUNIT_ASSERT_MESSAGE("no client within 20 s; python stderr: " + python.drain_stderr(), connection.has_value());
        assert_bytes_flow_both_ways(*connection);
        python.assert_exited(0, "python client after the exchange");
    }
    void testPythonClientJoinsCppListenerOverFilesystemSocket() { python_client_joins_cpp_listener(Family::unix_path); }
    void testPythonClientJoinsCppListenerOverAbstractSocket() { python_client_joins_cpp_listener(Family::abstract); }
    void testPythonClientJoinsCppListenerOverIpv4() { python_client_joins_cpp_listener(Family::tcp4); }
    void testPythonClientJoinsCppListenerOverIpv6() { python_client_joins_cpp_listener(Family::tcp6); }

    void testWrongKeyFailsBothSidesAgainstPythonListener() {
        for (const Family family : {Family::unix_path, Family::tcp4}) {
            const std::string host = host_for(family);
            PythonPeer python("listen", family, host, 0, kKey, "python");
            const std::uint16_t port = python.wait_ready();
            const std::string error =
                message_of<AuthenticationError>([&] { Client(address_for(family, host, port), kOtherKey, 10s); });
            assert_contains(error, "the peer rejected our response (the authkeys differ)");
            python.assert_exited(3, "python listener given a wrong digest");
            assert_contains(python.drain_stderr(), "AuthenticationError: digest received was wrong");
        }
    }

    void testWrongKeyFailsBothSidesAgainstPythonClient() {
        for (const Family family : {Family::abstract, Family::tcp4}) {
            const std::string host = host_for(family);
            Listener listener(address_for(family, host), 1, kKey);
            PythonPeer python("connect", family, host, listener.address().port(), kOtherKey, "python");
            const std::string error = message_of<AuthenticationError>([&] { listener.accept(20s); });
            assert_contains(error, "the peer's HMAC-md5 was wrong (the authkeys differ)");
            python.assert_exited(3, "python client refused by our listener");
            assert_contains(python.drain_stderr(), "AuthenticationError: digest sent was rejected");
        }
    }

    void testCppWorkerJoinsPythonOrchestrator() {
        PythonPeer orchestrator("listener_orchestrator.py", {hex(kKey)});
        const std::uint16_t port = orchestrator.wait_ready();
        CPPUNIT_ASSERT_EQUAL(0, run_worker("127.0.0.1", port, kKey));
        orchestrator.assert_exited(0, "the orchestrator checked every answer");
    }

    // ---- pickled objects after the handshake (tests/listener_peer.py, AFTER = objects) ----

    // listener_peer.py's OBJECTS as the decoder must see them, in the same order.
    static mproc::PickleValue::Items pickled_objects() {
        using mproc::PickleValue;
        const auto bytes = [](std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); };
        std::array<std::byte, 9> minus_two_to_the_70{};  // -(2**70), 9 bytes of two's complement, little-endian
        minus_two_to_the_70[8] = std::byte{0xc0};
        return {
            PickleValue::str("h\xc3\xa9llo \xe2\x98\x83"),
            PickleValue::integer(0),
            PickleValue::integer(-7),
            PickleValue::integer((std::int64_t{1} << 40) + 3),
            PickleValue::integer_from_bytes(minus_two_to_the_70),
            PickleValue::floating(3.25),
            PickleValue::floating(-0.0),
            PickleValue::none(),
            PickleValue::boolean(true),
            PickleValue::list({PickleValue::integer(1), PickleValue::str("two"), PickleValue::floating(3.0),
                               PickleValue::none(), PickleValue::list({PickleValue::bytes(bytes("four"))})}),
            PickleValue::dict({{PickleValue::str("a"), PickleValue::integer(1)},
                               {PickleValue::str("b"), PickleValue::list({PickleValue::integer(2), PickleValue::integer(3)})},
                               {PickleValue::integer(7), PickleValue::str("seven")},
                               {PickleValue::none(), PickleValue::tuple({PickleValue::integer(1), PickleValue::integer(2)})}}),
            PickleValue::bytes(bytes(std::string_view("\x00\xff" "bytes", 7))),
            PickleValue::tuple({}),
            PickleValue::tuple({PickleValue::integer(1),
                                PickleValue::tuple({PickleValue::str("nested"), PickleValue::floating(2.5)}),
                                PickleValue::bytes({})}),
            PickleValue::bytearray(bytes("ba")),
            PickleValue::set({PickleValue::integer(1), PickleValue::integer(2), PickleValue::integer(3)}),
        };
    }

    // Python sends each object (conn.send); each must decode to exactly the expected value, and goes back as
    // ("cpp", value); then one object built here from C++ types. Python checks both (exit 5 otherwise).
    static void exchange_pickled_objects(FdConnection& connection) {
        const mproc::PickleValue::Items expected = pickled_objects();
        mproc::PickleValue::Items received;
        for (std::size_t index = 0; index < expected.size(); ++index) {
            received.push_back(mproc::recv_pickle<mproc::PickleValue>(connection));
            CPPUNIT_ASSERT_MESSAGE("object " + std::to_string(index) + " decoded as a " + received.back().kind_name() +
                                       " that differs from what python sent",
                                   received.back() == expected[index]);
        }
        for (const mproc::PickleValue& value : received)
            mproc::send_pickle(connection, mproc::PickleValue::tuple({mproc::PickleValue::str("cpp"), value}));
        const mproc::PickleValue built = mproc::PickleValue::dict({
            {mproc::PickleValue::str("from"), mproc::to_pickle(std::string("c++"))},
            {mproc::PickleValue::str("ints"), mproc::to_pickle(std::vector<std::int64_t>{1, -2, INT64_MAX})},
            {mproc::PickleValue::str("pi"), mproc::to_pickle(3.5)},
            {mproc::PickleValue::str("none"), mproc::to_pickle(std::optional<int>())},
            {mproc::PickleValue::str("raw"), mproc::to_pickle(std::vector<std::byte>{std::byte{1}, std::byte{2}})},
            {mproc::PickleValue::str("pair"), mproc::to_pickle(std::pair<std::string, bool>("x", true))},
        });
        mproc::send_pickle(connection, built);
    }

    void testPickledObjectsFlowBothWaysWithPythonListener() {
        const std::string host = host_for(Family::unix_path);
        PythonPeer python("listener_peer.py",
                          {"listen", family_argument(Family::unix_path), host, "0", hex(kKey), "python", "sha256", "objects"});
        const std::uint16_t port = python.wait_ready();
        FdConnection connection = Client(address_for(Family::unix_path, host, port), kKey, 10s);
        exchange_pickled_objects(connection);
        python.assert_exited(0, "python listener checked every object");
    }

    void testPickledObjectsFlowBothWaysWithPythonClient() {
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 1, kKey);
        PythonPeer python("listener_peer.py", {"connect", family_argument(Family::tcp4), "127.0.0.1",
                                               std::to_string(listener.address().port()), hex(kKey), "python",
                                               "sha256", "objects"});
        std::optional<FdConnection> connection = listener.accept(20s);
        CPPUNIT_ASSERT_MESSAGE("no client within 20 s; python stderr: " + python.drain_stderr(), connection.has_value());
        exchange_pickled_objects(*connection);
        python.assert_exited(0, "python client checked every object");
    }

    void testNoKeyOnEitherSideConnectsWithPython() {
        const std::string host = host_for(Family::unix_path);
        {
            PythonPeer python("listen", Family::unix_path, host, 0, std::nullopt, "python");
            python.wait_ready();
            FdConnection connection = Client(address_for(Family::unix_path, host), std::nullopt, 10s);
            assert_bytes_flow_both_ways(connection);
            python.assert_exited(0, "keyless python listener");
        }
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 1, std::nullopt);
        PythonPeer python("connect", Family::tcp4, "127.0.0.1", listener.address().port(), std::nullopt, "python");
        std::optional<FdConnection> connection = listener.accept(20s);
        CPPUNIT_ASSERT(connection.has_value());
        assert_bytes_flow_both_ways(*connection);
        python.assert_exited(0, "keyless python client");
    }

    // A keyless Python client takes our challenge for a message and echoes it back as "py:#CHALLENGE#...":
    // that is no response at all, so the listener refuses it (and sends #FAILURE#, which python echoes).
    void testPythonClientWithoutKeyIsRefusedByKeyedListener() {
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 1, kKey);
        PythonPeer python("connect", Family::tcp4, "127.0.0.1", listener.address().port(), std::nullopt, "python");
        const std::string error = message_of<AuthenticationError>([&] { listener.accept(20s); });
        assert_contains(error, "has neither a legacy length nor a known {digest} prefix: 'py:#CHALLENGE#{sha256}");
        python.exit_code();  // 0 or 4 (a broken pipe): the keyless side learns nothing either way
    }

    // A keyed client of a keyless Python listener waits for a challenge that never comes: the handshake
    // timeout ends it.
    void testKeyedClientOfKeylessPythonListenerTimesOut() {
        const std::string host = host_for(Family::unix_path);
        PythonPeer python("listen", Family::unix_path, host, 0, std::nullopt, "python");
        python.wait_ready();
        std::string error;
        const auto took = mproc::test::elapsed_of([&] {
            error = message_of<AuthenticationError>(
                [&] { Client(address_for(Family::unix_path, host), kKey, std::nullopt, quick(300ms)); });
        });
        assert_contains(error, "the handshake did not finish within 300 ms (stalled receiving a challenge)");
        CPPUNIT_ASSERT(took >= 300ms && took < 5s);
        python.assert_exited(0, "keyless python listener whose client left");
    }

    // ---- CPython 3.12's handshake, scripted in tests/listener_peer.py ----

    void testPython312ListenerSha256ChallengeGetsPrefixedAnswer() {
        const std::string host = host_for(Family::unix_path);
        PythonPeer python("listen", Family::unix_path, host, 0, kKey, "3.12", "sha256");
        python.wait_ready();
        FdConnection connection = Client(address_for(Family::unix_path, host), kKey, 10s);
        assert_bytes_flow_both_ways(connection);
        python.assert_exited(0, "3.12 listener (our {sha256} answer accepted, its {sha256} answer accepted)");
    }

    void testPython312ListenerSha3ChallengeGetsSha3Answer() {
        const std::string host = host_for(Family::tcp4);
        PythonPeer python("listen", Family::tcp4, host, 0, kKey, "3.12", "sha3_384");
        const std::uint16_t port = python.wait_ready();
        FdConnection connection = Client(address_for(Family::tcp4, host, port), kKey, 10s);
        assert_bytes_flow_both_ways(connection);
        python.assert_exited(0, "3.12 listener asking for sha3_384");
    }

    void testPython312ClientAnswersOurSha256Challenge() {
        const std::string host = host_for(Family::abstract);
        Listener listener(address_for(Family::abstract, host), 1, kKey);
        PythonPeer python("connect", Family::abstract, host, 0, kKey, "3.12", "sha384");
        std::optional<FdConnection> connection = listener.accept(20s);
        CPPUNIT_ASSERT(connection.has_value());
        assert_bytes_flow_both_ways(*connection);
        python.assert_exited(0, "3.12 client");
    }

    // Our Listener set to CPython 3.11's bare 20-byte challenge: a 3.12 client must answer it with a bare
    // HMAC-MD5 (the legacy length is its signal), which we accept.
    void testPython312ClientAnswersOurLegacyChallengeWithBareMd5() {
        HandshakeOptions legacy;
        legacy.challenge_digest = "";
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 1, kKey, legacy);
        PythonPeer python("connect", Family::tcp4, "127.0.0.1", listener.address().port(), kKey, "3.12");
        std::optional<FdConnection> connection = listener.accept(20s);
        CPPUNIT_ASSERT(connection.has_value());
        assert_bytes_flow_both_ways(*connection);
        python.assert_exited(0, "3.12 client of a legacy challenge");
    }

    void testWrongKeyFailsBothSidesAgainstPython312() {
        const std::string host = host_for(Family::unix_path);
        {
            PythonPeer python("listen", Family::unix_path, host, 0, kKey, "3.12");
            python.wait_ready();
            assert_contains(message_of<AuthenticationError>(
                                [&] { Client(address_for(Family::unix_path, host), kOtherKey, 10s); }),
                            "the peer rejected our response");
            python.assert_exited(3, "3.12 listener given a wrong digest");
        }
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 1, kKey);
        PythonPeer python("connect", Family::tcp4, "127.0.0.1", listener.address().port(), kOtherKey, "3.12");
        assert_contains(message_of<AuthenticationError>([&] { listener.accept(20s); }),
                        "the peer's HMAC-sha256 was wrong");
        python.assert_exited(3, "3.12 client refused");
    }

    // ---- the bytes on the wire ----

    // What we answer to a fixed challenge, against MACs computed by python3's hmac module (key kKey,
    // 40 or 20 bytes 'c'): a prefixed challenge gets "{name}" + HMAC-name over the whole challenge (prefix
    // included), {md5} too; a bare 20-byte one a bare HMAC-MD5. Then #WELCOME# completes it.
    void testAnswersAreCPythonsByteForByte() {
        struct Case {
            std::string challenge;
            std::string response_prefix;
            std::string mac_hex;
        };
        const std::string c40(40, 'c');
        const Case cases[] = {
            {"{sha256}" + c40, "{sha256}", "7bfb46f54c98d3a4e3095563d5fcd2eebb9675b8077a44d55bc8aaf372e6c19c"},
            {std::string(20, 'c'), "", "242a3280921b18e7824ad8fb120c54e1"},
            {"{sha3_384}" + c40, "{sha3_384}",
             "4b84391351d33cdde54cd8a8dd1a8aacf195f556f4cf2235141be85fc281381a1fccf3b5288965612a9227c490b553cb"},
            {"{md5}" + c40, "{md5}", "d426ccdce325ad963a367406ec87a1e4"},
        };
        for (const Case& one : cases) {
            SocketPair pair;
            write_all(pair.fds[1], frame("#CHALLENGE#" + one.challenge) + frame("#WELCOME#"));
            mproc::answer_challenge(pair.fds[0], kKey, quick(2s));
            std::string sent(512, '\0');
            const ssize_t got = ::recv(pair.fds[1], sent.data(), sent.size(), MSG_DONTWAIT);
            CPPUNIT_ASSERT(got > 0);
            sent.resize(static_cast<std::size_t>(got));
            std::string mac;
            for (std::size_t i = 0; i < one.mac_hex.size(); i += 2)
                mac += static_cast<char>(std::stoi(one.mac_hex.substr(i, 2), nullptr, 16));
            CPPUNIT_ASSERT_EQUAL_MESSAGE(one.challenge, hex(frame(one.response_prefix + mac)), hex(sent));
        }
    }

    // The challenge we deliver: "#CHALLENGE#{sha256}" + 40 random bytes (3.12), or 20 bare random bytes
    // (3.11's form when challenge_digest is empty); two challenges differ.
    void testChallengesHaveCPythonsShape() {
        auto challenge_of = [](const std::string& digest) {
            SocketPair pair;
            HandshakeOptions options = quick(200ms);
            options.challenge_digest = digest;
            std::thread deliverer([&] {
                outcome_of([&] { mproc::deliver_challenge(pair.fds[0], kKey, options); });
                ::shutdown(pair.fds[0], SHUT_RDWR);
            });
            std::string received(512, '\0');
            std::size_t filled = 0;
            for (;;) {
                const ssize_t got = ::recv(pair.fds[1], received.data() + filled, received.size() - filled, 0);
                if (got <= 0) break;
                filled += static_cast<std::size_t>(got);
            }
            deliverer.join();
            received.resize(filled);
            return received;
        };
        const std::string modern = challenge_of("sha256");
        CPPUNIT_ASSERT_EQUAL(std::size_t{4 + 11 + 8 + 40}, modern.size());
        CPPUNIT_ASSERT_EQUAL(hex(frame("#CHALLENGE#{sha256}" + std::string(40, 'x')).substr(0, 4 + 19)),
                             hex(modern.substr(0, 4 + 19)));
        CPPUNIT_ASSERT(modern != challenge_of("sha256"));
        const std::string legacy = challenge_of("");
        CPPUNIT_ASSERT_EQUAL(std::size_t{4 + 11 + 20}, legacy.size());
        CPPUNIT_ASSERT_EQUAL(hex(frame("#CHALLENGE#" + std::string(20, 'x')).substr(0, 4 + 11)),
                             hex(legacy.substr(0, 4 + 11)));
    }

    // ---- hostile peers ----

    // FF FF FF FF + 2^62 as an 8-byte length: refused from the header, nothing allocated for it.
    void testChallengeFrameOf2To62BytesIsRefusedFromItsHeader() {
        SocketPair pair;
        const std::string huge = {'\xff', '\xff', '\xff', '\xff', '\x40', 0, 0, 0, 0, 0, 0, 0};
        write_all(pair.fds[1], huge);
        assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(2s)); }),
                        "frame of 4611686018427387904 bytes while expecting a challenge (the handshake allows 256)");
    }

    void testResponseFrameOf2To62BytesIsRefusedByListener() {
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 4, kKey, quick(5s));
        ForkedChild hostile([&] {
            const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in address{};
            address.sin_family = AF_INET;
            address.sin_port = htons(listener.address().port());
            address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) std::_Exit(1);
            write_all(fd, std::string{'\xff', '\xff', '\xff', '\xff', '\x40', 0, 0, 0, 0, 0, 0, 0});
            char drain[256];
            while (::recv(fd, drain, sizeof(drain), 0) > 0) {
            }
            std::_Exit(0);
        });
        assert_contains(message_of<AuthenticationError>([&] { listener.accept(10s); }),
                        "frame of 4611686018427387904 bytes while expecting the response to our challenge");
        mproc::test::assert_exited_cleanly(hostile.wait());
    }

    void testGarbageBeforeChallengeIsProtocolError() {
        {
            SocketPair pair;
            write_all(pair.fds[1], frame("garbage") + frame("#CHALLENGE#" + std::string(40, 'c')));
            assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(2s)); }),
                            "protocol error, expected a challenge, got 'garbage'");
        }
        {
            // Raw text where a header belongs: its first 4 bytes read as a length far above the bound.
            SocketPair pair;
            write_all(pair.fds[1], "GET / HTTP/1.1\r\n");
            assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(2s)); }),
                            "frame of 1195725856 bytes while expecting a challenge");
        }
        {
            SocketPair pair;
            write_all(pair.fds[1], frame("#CHALLENGE#short"));
            assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(2s)); }),
                            "challenge too short: 5 bytes");
        }
        {
            // A negative length other than -1 is malformed.
            SocketPair pair;
            write_all(pair.fds[1], std::string{'\x80', 0, 0, 1});
            assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(2s)); }),
                            "malformed frame header while expecting a challenge");
        }
    }

    void testUnknownDigestPrefixIsRefused() {
        SocketPair pair;
        write_all(pair.fds[1], frame("#CHALLENGE#{sha1}" + std::string(40, 'c')));
        assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(2s)); }),
                        "the challenge of 46 bytes has neither a legacy length nor a known {digest} prefix");
        // Nothing was answered: the only bytes we wrote would have been a response.
        char byte = 0;
        CPPUNIT_ASSERT_EQUAL(ssize_t{-1}, ::recv(pair.fds[1], &byte, 1, MSG_DONTWAIT));
    }

    // A challenge, then silence: the answering side gives up at its deadline, not before, not much after.
    void testHalfHandshakeFailsAtTimeout() {
        SocketPair pair;
        write_all(pair.fds[1], frame("#CHALLENGE#{sha256}" + std::string(40, 'c')));
        std::string error;
        const auto took = mproc::test::elapsed_of([&] {
            error = message_of<AuthenticationError>([&] { mproc::answer_challenge(pair.fds[0], kKey, quick(200ms)); });
        });
        assert_contains(error, "did not finish within 200 ms (stalled receiving the verdict on our response)");
        CPPUNIT_ASSERT(took >= 200ms && took < 3s);
        // Half a frame header, then silence.
        SocketPair half;
        write_all(half.fds[1], std::string{0, 0});
        assert_contains(message_of<AuthenticationError>([&] { mproc::answer_challenge(half.fds[0], kKey, quick(100ms)); }),
                        "did not finish within 100 ms (stalled receiving a challenge)");
    }

    // The client's side of the handshake is cut after every byte offset: both sides fail promptly with
    // AuthenticationError (end of stream, not the timeout); uncut, both succeed.
    void testCloseAtEveryByteOffsetFromClient() { close_at_every_offset(true); }
    void testCloseAtEveryByteOffsetFromListener() { close_at_every_offset(false); }

    // Listener → client: challenge (4 + 11 + 8 + 40), welcome (4 + 9), response (4 + 8 + 32): 120 bytes.
    // Client → listener: response (44), challenge (63), welcome (13): 120 bytes. The client's final welcome is
    // a verdict nobody acknowledges (as in Python): cut inside it, the client has succeeded and the listener
    // fails; cut exactly before it, the client may or may not have sent it before the cut.
    void close_at_every_offset(bool cap_client_to_listener) {
        constexpr std::size_t kTotal = 120;
        constexpr std::size_t kBeforeClientVerdict = 44 + 63;
        for (std::size_t cap = 0; cap < kTotal; ++cap) {
            const auto [listener, client] = handshake_through_relay(cap, cap_client_to_listener);
            const std::string where = "cut after " + std::to_string(cap) + " bytes: ";
            CPPUNIT_ASSERT_MESSAGE(where + "the listener side succeeded", !listener.succeeded);
            if (!cap_client_to_listener || cap < kBeforeClientVerdict)
                CPPUNIT_ASSERT_MESSAGE(where + "the client side succeeded", !client.succeeded);
            else if (cap > kBeforeClientVerdict)
                CPPUNIT_ASSERT_MESSAGE(where + "the client side failed: " + client.error, client.succeeded);
            for (const Outcome* side : {&listener, &client}) {
                if (side->succeeded) continue;
                CPPUNIT_ASSERT_MESSAGE(where + side->error, side->error.rfind("other:", 0) != 0);
                CPPUNIT_ASSERT_MESSAGE(where + "ended by the timeout: " + side->error,
                                       side->error.find("did not finish") == std::string::npos);
            }
        }
        const auto [listener, client] = handshake_through_relay(kTotal, cap_client_to_listener);
        CPPUNIT_ASSERT_MESSAGE("uncut listener side: " + listener.error, listener.succeeded);
        CPPUNIT_ASSERT_MESSAGE("uncut client side: " + client.error, client.succeeded);
    }

    // A message the Client sends right after the handshake is still there for the FdConnection: the
    // handshake reads exactly its own frames.
    void testFirstMessageAfterHandshakeIsNotConsumedByIt() {
        const std::string host = host_for(Family::abstract);
        Listener listener(address_for(Family::abstract, host), 1, kKey);
        ForkedChild client([&] {
            FdConnection connection = Client(address_for(Family::abstract, host), kKey, 10s);
            const std::string first = "first", second = "second";
            const std::span<const std::byte> both[] = {bytes_of(first), bytes_of(second)};
            connection.send_many(both);
            if (text_of(connection.recv_bytes()) != "done") std::_Exit(1);
            std::_Exit(0);
        });
        FdConnection connection = listener.accept();
        CPPUNIT_ASSERT_EQUAL(std::string("first"), text_of(connection.recv_bytes()));
        CPPUNIT_ASSERT_EQUAL(std::string("second"), text_of(connection.recv_bytes()));
        connection.send_bytes(bytes_of("done"));
        mproc::test::assert_exited_cleanly(client.wait());
    }

    // ---- a listener that serves on ----

    void testListenerServesOnAfterBadStalledAndGarbageClients() {
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 8, kKey, quick(300ms));
        const SocketAddress address = listener.address();
        auto raw_client = [address](std::string_view bytes) {
            return ForkedChild([address, bytes] {
                const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                sockaddr_in target{};
                target.sin_family = AF_INET;
                target.sin_port = htons(address.port());
                target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) std::_Exit(1);
                write_all(fd, bytes);
                char drain[256];
                while (::recv(fd, drain, sizeof(drain), 0) > 0) {
                }
                std::_Exit(0);
            });
        };
        {
            ForkedChild wrong_key([address] {
                try {
                    Client(address, kOtherKey, 10s);
                } catch (const AuthenticationError&) {
                    std::_Exit(0);
                }
                std::_Exit(1);
            });
            assert_contains(message_of<AuthenticationError>([&] { listener.accept(10s); }), "was wrong");
            mproc::test::assert_exited_cleanly(wrong_key.wait());
        }
        {
            ForkedChild stalled = raw_client("");
            assert_contains(message_of<AuthenticationError>([&] { listener.accept(10s); }), "did not finish within 300 ms");
            mproc::test::assert_exited_cleanly(stalled.wait());
        }
        {
            ForkedChild garbage = raw_client(std::string(64, '\x01'));
            assert_contains(message_of<AuthenticationError>([&] { listener.accept(10s); }), "bytes while expecting");
            mproc::test::assert_exited_cleanly(garbage.wait());
        }
        ForkedChild good([address] {
            FdConnection connection = Client(address, kKey, 10s);
            connection.send_bytes(bytes_of("still serving?"));
            std::_Exit(text_of(connection.recv_bytes()) == "yes" ? 0 : 1);
        });
        std::optional<FdConnection> connection = listener.accept(10s);
        CPPUNIT_ASSERT(connection.has_value());
        CPPUNIT_ASSERT_EQUAL(std::string("still serving?"), text_of(connection->recv_bytes()));
        connection->send_bytes(bytes_of("yes"));
        mproc::test::assert_exited_cleanly(good.wait());
    }

    // A client SIGKILLed after half its response: that accept() fails at once with end of stream (not at the
    // handshake timeout), and the next client is served.
    void testClientKilledMidHandshakeEndsOnlyThatAccept() {
        const std::string host = host_for(Family::unix_path);
        Listener listener(address_for(Family::unix_path, host), 4, kKey, quick(20s));
        ForkedChild victim([&] {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un target{};
            target.sun_family = AF_UNIX;
            std::memcpy(target.sun_path, host.data(), host.size());
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) std::_Exit(1);
            char challenge[4 + 11 + 8 + 40];
            std::size_t got = 0;
            while (got < sizeof(challenge)) {
                const ssize_t n = ::recv(fd, challenge + got, sizeof(challenge) - got, 0);
                if (n <= 0) std::_Exit(2);
                got += static_cast<std::size_t>(n);
            }
            write_all(fd, std::string{0, 0, 0, 44, '{', 's', 'h', 'a'});
            ::raise(SIGKILL);
        });
        std::string error;
        const auto took = mproc::test::elapsed_of([&] {
            error = message_of<AuthenticationError>([&] { listener.accept(10s); });
        });
        assert_contains(error, "the peer closed the connection while sending the response to our challenge (4 of 44 body bytes came)");
        CPPUNIT_ASSERT(took < 10s);
        const int status = victim.wait();
        CPPUNIT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ForkedChild good([&] {
            FdConnection connection = Client(address_for(Family::unix_path, host), kKey, 10s);
            connection.send_bytes(bytes_of("next"));
            std::_Exit(0);
        });
        FdConnection connection = listener.accept();
        CPPUNIT_ASSERT_EQUAL(std::string("next"), text_of(connection.recv_bytes()));
        mproc::test::assert_exited_cleanly(good.wait());
    }

    // A client SIGKILLed inside a message after the handshake: the receiver gets a truncated frame (EPROTO),
    // and the listener serves on.
    void testClientKilledMidMessageIsTruncatedFrame() {
        Listener listener(address_for(Family::tcp4, "127.0.0.1"), 4, kKey);
        const SocketAddress address = listener.address();
        ForkedChild victim([address] {
            FdConnection connection = Client(address, kKey, 10s);
            // Header for 1000 bytes, then 10 of them, written past the FdConnection's framing.
            const std::string partial = std::string{0, 0, 0x03, static_cast<char>(0xe8)} + std::string(10, 'm');
            write_all(connection.fileno(), partial);
            ::raise(SIGKILL);
        });
        FdConnection connection = listener.accept();
        const int status = victim.wait();
        CPPUNIT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        try {
            connection.recv_bytes();
            CPPUNIT_FAIL("a truncated frame was received as a message");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EPROTO, error.error_number());
        }
        ForkedChild good([address] {
            FdConnection next = Client(address, kKey, 10s);
            next.send_bytes(bytes_of("after"));
            std::_Exit(0);
        });
        FdConnection next = listener.accept();
        CPPUNIT_ASSERT_EQUAL(std::string("after"), text_of(next.recv_bytes()));
        mproc::test::assert_exited_cleanly(good.wait());
    }

    // ---- the Listener's own contract ----

    void testAcceptTimesOutWithoutClient() {
        Listener listener(address_for(Family::abstract, host_for(Family::abstract)), 1, kKey);
        const auto took = mproc::test::elapsed_of([&] { CPPUNIT_ASSERT(!listener.accept(100ms).has_value()); });
        CPPUNIT_ASSERT(took >= 100ms && took < 3s);
        CPPUNIT_ASSERT(!listener.accept(0ms).has_value());
    }

    void testPortZeroReportsPickedPort() {
        Listener first(SocketAddress::tcp("127.0.0.1", 0), 1);
        Listener second(SocketAddress::tcp("127.0.0.1", 0), 1);
        CPPUNIT_ASSERT(first.address().port() != 0);
        CPPUNIT_ASSERT(second.address().port() != first.address().port());
        CPPUNIT_ASSERT_EQUAL(std::string("127.0.0.1"), first.address().name());
        CPPUNIT_ASSERT_EQUAL("127.0.0.1:" + std::to_string(first.address().port()), first.address().to_string());
        if (ipv6_loopback_available()) {
            Listener six(SocketAddress::tcp("::1", 0), 1);
            CPPUNIT_ASSERT_EQUAL("[::1]:" + std::to_string(six.address().port()), six.address().to_string());
        }
    }

    void testCloseRemovesFilesystemPath() {
        const std::string path = host_for(Family::unix_path);
        Listener listener(SocketAddress::unix_socket(path), 1);
        CPPUNIT_ASSERT(std::filesystem::exists(path));
        CPPUNIT_ASSERT(listener.address() == SocketAddress::unix_socket(path));
        // A forked child's copy, closed (or destroyed at exit) in the child, leaves the path to the parent.
        ForkedChild child([&] {
            listener.close();
            std::_Exit(std::filesystem::exists(path) ? 0 : 1);
        });
        mproc::test::assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT(std::filesystem::exists(path));
        listener.close();
        CPPUNIT_ASSERT(!std::filesystem::exists(path));
        listener.close();
        assert_contains(message_of<mproc::StateError>([&] { listener.accept(); }), "the listener is closed");
    }

    // Python's Listener handshakes only with a non-empty key (`if self._authkey:`); its Client with any key
    // that is not None, b"" included.
    void testEmptyKeyListenerSkipsHandshakeAsPython() {
        const std::string host = host_for(Family::abstract);
        Listener listener(address_for(Family::abstract, host), 1, std::string());
        ForkedChild client([&] {
            FdConnection connection = Client(address_for(Family::abstract, host), std::nullopt, 10s);
            connection.send_bytes(bytes_of("plain"));
            std::_Exit(0);
        });
        FdConnection connection = listener.accept();
        CPPUNIT_ASSERT_EQUAL(std::string("plain"), text_of(connection.recv_bytes()));
        mproc::test::assert_exited_cleanly(client.wait());
        // Two empty keys on a pair of fds still run the whole handshake.
        const auto [listener_side, client_side] = [] {
            SocketPair pair;
            Outcome answered;
            std::thread other([&] {
                answered = outcome_of([&] {
                    mproc::answer_challenge(pair.fds[1], "", quick(5s));
                });
            });
            const Outcome delivered = outcome_of([&] { mproc::deliver_challenge(pair.fds[0], "", quick(5s)); });
            other.join();
            return std::pair{delivered, answered};
        }();
        CPPUNIT_ASSERT_MESSAGE(listener_side.error, listener_side.succeeded);
        CPPUNIT_ASSERT_MESSAGE(client_side.error, client_side.succeeded);
    }

    void testMisuseIsRefused() {
        assert_contains(message_of<mproc::ValueError>([] { Listener(SocketAddress::unix_socket(std::string(200, 'p'))); }),
                        "the AF_UNIX name is 200 bytes, at most 107 fit");
        assert_contains(message_of<mproc::ValueError>([] { Listener(SocketAddress::unix_socket("")); }),
                        "an empty AF_UNIX path");
        HandshakeOptions small;
        small.max_message_size = 10;
        assert_contains(message_of<mproc::ValueError>([&] { Listener(SocketAddress::tcp("127.0.0.1", 0), 1, kKey, small); }),
                        "max_message_size 10 is below 64");
        HandshakeOptions digest;
        digest.challenge_digest = "sha1";
        assert_contains(message_of<mproc::ValueError>([&] { Listener(SocketAddress::tcp("127.0.0.1", 0), 1, kKey, digest); }),
                        "challenge_digest 'sha1' is none of");
        assert_contains(message_of<mproc::ValueError>([] { Client(SocketAddress::tcp("127.0.0.1", 0)); }),
                        "port 0 names no listener");
        assert_contains(message_of<mproc::ValueError>([] { Client(SocketAddress::tcp("no-such-host.invalid", 1)); }),
                        "cannot resolve host 'no-such-host.invalid'");
    }

    void testClientOfMissingListenerFails() {
        try {
            Client(SocketAddress::unix_socket("/tmp" + mproc::test::unique_name("nobody")), kKey, 1s);
            CPPUNIT_FAIL("connected to nobody");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
        Listener closed_port(SocketAddress::tcp("127.0.0.1", 0), 1);
        const SocketAddress address = closed_port.address();
        closed_port.close();
        try {
            Client(address, kKey, 1s);
            CPPUNIT_FAIL("connected to a closed port");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ECONNREFUSED, error.error_number());
        }
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ListenerTest, "unit");

// Handshakes of the stress tests: a sanitized build on a 2-core machine with other suites beside it once
// stalled a handshake past the default 10 s (the listener then rightly refused that client). The stress
// tests are about many clients, not about timing: they allow a minute.
const mproc::HandshakeOptions kPatientHandshake{std::chrono::seconds(60)};

// Many clients connect, handshake, exchange one message and leave while another client streams on one
// connection the whole time; a thread per connection serves them.
class ListenerStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ListenerStressTest);
    CPPUNIT_TEST(testThousandClientsComeAndGoWhileOneStreams);
    CPPUNIT_TEST(testClientsOnThreadsMeetListenerOnThreadThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    void testThousandClientsComeAndGoWhileOneStreams() {
        constexpr int kChurners = 4;
        const int per_churner = mproc::test::kSanitized ? 50 : 250;
        constexpr std::uint64_t kStreamed = 20000;
        Listener listener(SocketAddress::tcp("127.0.0.1", 0), 64, kKey, kPatientHandshake);
        const SocketAddress address = listener.address();
        // Every client process is forked before this process has a second thread: a child forked while the
        // acceptor or a server thread held an allocator lock could hang in its first allocation (clang 14's
        // ASan allocator is not locked around fork(); a streamer stuck so stalled its handshake for 60 s).
        ForkedChild streamer([address] {
            FdConnection connection = Client(address, kKey, kPatientHandshake.timeout, kPatientHandshake);
            std::thread reader([&] {
                for (std::uint64_t i = 0; i < kStreamed; ++i)
                    if (connection.recv<std::uint64_t>() != i) std::_Exit(2);
            });
            for (std::uint64_t i = 0; i < kStreamed; ++i) connection.send(i);
            reader.join();
            std::_Exit(0);
        });
        std::vector<std::unique_ptr<ForkedChild>> churners;
        for (int index = 0; index < kChurners; ++index) {
            churners.push_back(std::make_unique<ForkedChild>([address, index] {
                for (int round = 0; round < per_churner; ++round) {
                    FdConnection connection = Client(address, kKey, kPatientHandshake.timeout, kPatientHandshake);
                    const std::string message = std::to_string(index) + "/" + std::to_string(round);
                    connection.send_bytes(bytes_of(message));
                    if (text_of(connection.recv_bytes()) != message) std::_Exit(3);
                }
                std::_Exit(0);
            }));
        }
        std::atomic<int> served{0};
        std::vector<std::thread> servers;
        std::exception_ptr acceptor_failure;
        std::thread acceptor([&] {
            for (int accepted = 0; accepted < kChurners * per_churner + 1; ++accepted) {
                std::optional<FdConnection> connection;
                try {
                    connection = listener.accept(kPatientHandshake.timeout);
                } catch (...) {
                    acceptor_failure = std::current_exception();  // rethrown after the joins: a failure, not a terminate
                    return;
                }
                if (!connection) return;
                servers.emplace_back([&served, connection = std::move(*connection)]() mutable {
                    try {
                        for (;;) connection.send_bytes(connection.recv_bytes());
                    } catch (const mproc::Closed&) {
                        // relaxed: a counter read after the threads are joined.
                        served.fetch_add(1, std::memory_order_relaxed);
                    } catch (const mproc::Error&) {
                        // Not counted: the count then fails the test.
                    }
                });
            }
        });
        try {
            for (auto& churner : churners) mproc::test::assert_exited_cleanly(churner->wait(120s));
            mproc::test::assert_exited_cleanly(streamer.wait(120s));
        } catch (...) {
            // The threads end before the failure is reported (a joinable std::thread destroyed would
            // std::terminate and hide it): the acceptor's wait ends with the listener.
            listener.close();
            acceptor.join();
            for (std::thread& server : servers) server.join();
            if (acceptor_failure) std::rethrow_exception(acceptor_failure);
            throw;
        }
        acceptor.join();
        for (std::thread& server : servers) server.join();
        if (acceptor_failure) std::rethrow_exception(acceptor_failure);
        CPPUNIT_ASSERT_EQUAL(kChurners * per_churner + 1, served.load(std::memory_order_relaxed));
    }
    // The same within one process, without fork (the variant ThreadSanitizer runs): client threads connect
    // and handshake while a listener thread accepts and answers each connection's one message.
    void testClientsOnThreadsMeetListenerOnThreadThreads() {
        constexpr int kClients = 4;
        constexpr int kRounds = 25;
        Listener listener(SocketAddress::unix_socket(std::string(1, '\0') + mproc::test::unique_name("threads").substr(1)),
                          16, kKey, kPatientHandshake);
        const SocketAddress address = listener.address();
        std::atomic<int> answered{0};
        std::exception_ptr acceptor_failure;
        std::thread acceptor([&] {
            try {
                for (int accepted = 0; accepted < kClients * kRounds; ++accepted) {
                    std::optional<FdConnection> connection = listener.accept(kPatientHandshake.timeout);
                    if (!connection) return;
                    connection->send_bytes(connection->recv_bytes());
                    // relaxed: read after the join.
                    answered.fetch_add(1, std::memory_order_relaxed);
                }
            } catch (...) {
                acceptor_failure = std::current_exception();  // rethrown after the join: a failure, not a terminate
            }
        });
        mproc::test::run_in_threads(kClients, [&](int index) {
            for (int round = 0; round < kRounds; ++round) {
                FdConnection connection = Client(address, kKey, kPatientHandshake.timeout, kPatientHandshake);
                const std::string message = std::to_string(index) + "/" + std::to_string(round);
                connection.send_bytes(bytes_of(message));
                CPPUNIT_ASSERT_EQUAL(message, text_of(connection.recv_bytes()));
            }
        });
        acceptor.join();
        if (acceptor_failure) std::rethrow_exception(acceptor_failure);
        CPPUNIT_ASSERT_EQUAL(kClients * kRounds, answered.load(std::memory_order_relaxed));
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ListenerStressTest, "stress");

}  // namespace
