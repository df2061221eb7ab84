// tests/connection_test.cpp — mproc::FdConnection and fd_pipe: Python's framing byte for byte, messages of
// 0 B to 16 MiB across fork() both ways on both backends (io_uring and read/write), a python3
// multiprocessing.connection peer, end of stream and peer death as Closed, a dead reader as BrokenPipe
// without SIGPIPE, maxlength, truncated and malformed frames, BufferTooShort, poll timeouts, batched
// submission counted in io_uring_enter calls, and concurrent send/receive threads.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "framing.hpp"
#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::FdConnection;
using mproc::test::ForkedChild;
namespace framing = mproc::detail::framing;

enum class Backend { io_uring, read_write };

// Creates a pair with the backend chosen by MPROC_DISABLE_IO_URING; io_uring unavailable → skip (77).
std::pair<FdConnection, FdConnection> make_pair(Backend backend, bool duplex) {
    if (backend == Backend::read_write)
        ::setenv("MPROC_DISABLE_IO_URING", "1", 1);
    else
        ::unsetenv("MPROC_DISABLE_IO_URING");
    auto pair = mproc::fd_pipe(duplex);
    ::unsetenv("MPROC_DISABLE_IO_URING");
    if (backend == Backend::io_uring && pair.first.backend() != "io_uring")
        MPROC_SKIP("io_uring unavailable: " + pair.first.backend_fallback_reason());
    CPPUNIT_ASSERT_EQUAL(std::string(backend == Backend::io_uring ? "io_uring" : "read/write"),
                         std::string(pair.first.backend()));
    CPPUNIT_ASSERT_EQUAL(std::string(pair.first.backend()), std::string(pair.second.backend()));
    return pair;
}

// The same bytes tests/python_peer.py calls pattern(size).
std::vector<std::byte> pattern(std::size_t size) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i * 7 + size) & 0xff);
    return bytes;
}

std::span<const std::byte> bytes_of(const std::vector<std::byte>& bytes) { return {bytes.data(), bytes.size()}; }

void write_raw(int fd, const void* data, std::size_t size) {
    const auto* at = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t written = ::write(fd, at, size);
        if (written < 0 && errno == EINTR) continue;
        CPPUNIT_ASSERT_MESSAGE(std::string("raw write: ") + std::strerror(errno), written > 0);
        at += written;
        size -= static_cast<std::size_t>(written);
    }
}

void assert_exited_zero(ForkedChild& child, const std::string& what) {
    const int status = child.wait(120s);
    CPPUNIT_ASSERT_MESSAGE(what + ": child wait status " + std::to_string(status),
                           WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

const std::vector<std::size_t> kExchangeSizes = {0,     1,     4,     4091,  4092,    4093,     4096,
                                                 65535, 65536, 65537, 1 << 20, 16 << 20};

template <class Body>
void expect_system_error(int expected_errno, Body body, const std::string& what) {
    try {
        body();
    } catch (const mproc::SystemError& error) {
        CPPUNIT_ASSERT_EQUAL_MESSAGE(what + ": " + error.what(), expected_errno, error.error_number());
        return;
    }
    CPPUNIT_FAIL(what + ": no SystemError");
}

std::string python_peer_path() {
    if (const char* configured = std::getenv("MPROC_PYTHON_PEER")) return configured;
    std::filesystem::path beside_source = std::filesystem::path(__FILE__).parent_path() / "python_peer.py";
    return beside_source.string();
}

class ConnectionTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ConnectionTest);
    CPPUNIT_TEST(testHeadersArePythonsFraming);
    CPPUNIT_TEST(testMalformedHeadersAreRejected);
    CPPUNIT_TEST(testDuplexExchangeAcrossForkIoUring);
    CPPUNIT_TEST(testDuplexExchangeAcrossForkReadWrite);
    CPPUNIT_TEST(testOneWayPipesBothDirectionsIoUring);
    CPPUNIT_TEST(testOneWayPipesBothDirectionsReadWrite);
    CPPUNIT_TEST(testPythonPeerEchoesIoUring);
    CPPUNIT_TEST(testPythonPeerEchoesReadWrite);
    CPPUNIT_TEST(testPythonPeerPatternsBothWaysIoUring);
    CPPUNIT_TEST(testPythonPeerPatternsBothWaysReadWrite);
    CPPUNIT_TEST(testPeerCloseIsClosedIoUring);
    CPPUNIT_TEST(testPeerCloseIsClosedReadWrite);
    CPPUNIT_TEST(testPeerDeathIsClosedIoUring);
    CPPUNIT_TEST(testPeerDeathIsClosedReadWrite);
    CPPUNIT_TEST(testSendToClosedPeerIsBrokenPipeIoUring);
    CPPUNIT_TEST(testSendToClosedPeerIsBrokenPipeReadWrite);
    CPPUNIT_TEST(testMaxlengthExceededClosesForReadingIoUring);
    CPPUNIT_TEST(testMaxlengthExceededClosesForReadingReadWrite);
    CPPUNIT_TEST(testHugeAnnouncedLengthAllocatesNothingUpfront);
    CPPUNIT_TEST(testTruncatedFrameIsProtocolErrorIoUring);
    CPPUNIT_TEST(testTruncatedFrameIsProtocolErrorReadWrite);
    CPPUNIT_TEST(testRecvBytesIntoShortBufferHandsOverMessageIoUring);
    CPPUNIT_TEST(testRecvBytesIntoShortBufferHandsOverMessageReadWrite);
    CPPUNIT_TEST(testPollTimeoutsIoUring);
    CPPUNIT_TEST(testPollTimeoutsReadWrite);
    CPPUNIT_TEST(testNonBlockingInheritedFdStillDeliversWholeMessagesIoUring);
    CPPUNIT_TEST(testNonBlockingInheritedFdStillDeliversWholeMessagesReadWrite);
    CPPUNIT_TEST(testSignalsDuringBlockedReceiveAreRetriedIoUring);
    CPPUNIT_TEST(testSignalsDuringBlockedReceiveAreRetriedReadWrite);
    CPPUNIT_TEST(testSendManySubmitsBatchInOneEnter);
    CPPUNIT_TEST(testReadWriteBackendMakesOneCallPerLargeMessage);
    CPPUNIT_TEST(testTrivialValuesAndOffsets);
    CPPUNIT_TEST(testClosedAndOneWayEndsRefuse);
    CPPUNIT_TEST_SUITE_END();

public:
    void testHeadersArePythonsFraming() {
        const auto empty = framing::encode_header(0);
        CPPUNIT_ASSERT_EQUAL(std::size_t{4}, empty.size);
        CPPUNIT_ASSERT(std::all_of(empty.bytes.begin(), empty.bytes.begin() + 4, [](std::byte b) { return b == std::byte{0}; }));
        const auto small = framing::encode_header(0x01020304);
        CPPUNIT_ASSERT_EQUAL(std::size_t{4}, small.size);
        CPPUNIT_ASSERT(small.bytes[0] == std::byte{1} && small.bytes[3] == std::byte{4});
        const auto largest_short = framing::encode_header(0x7fffffff);
        CPPUNIT_ASSERT_EQUAL(std::size_t{4}, largest_short.size);
        const auto long_form = framing::encode_header(std::uint64_t{1} << 31);
        CPPUNIT_ASSERT_EQUAL(std::size_t{12}, long_form.size);
        for (int i = 0; i < 4; ++i) CPPUNIT_ASSERT(long_form.bytes[static_cast<std::size_t>(i)] == std::byte{0xff});
        CPPUNIT_ASSERT(long_form.bytes[8] == std::byte{0x80});
        const auto parsed = framing::parse_header(long_form.view());
        CPPUNIT_ASSERT(parsed.status == framing::HeaderStatus::complete);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{1} << 31, parsed.message_size);
        CPPUNIT_ASSERT_EQUAL(std::size_t{12}, parsed.header_size);
        const auto partial = framing::parse_header(long_form.view().first(7));
        CPPUNIT_ASSERT(partial.status == framing::HeaderStatus::incomplete);
        CPPUNIT_ASSERT_EQUAL(std::size_t{12}, partial.header_size);
    }

    void testMalformedHeadersAreRejected() {
        const std::byte minus_two[] = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xfe}};
        CPPUNIT_ASSERT(framing::parse_header(minus_two).status == framing::HeaderStatus::malformed);
        const std::byte huge_long[] = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                       std::byte{0x80}, std::byte{0},    std::byte{0},    std::byte{0},
                                       std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0}};
        CPPUNIT_ASSERT(framing::parse_header(huge_long).status == framing::HeaderStatus::malformed);
        framing::FrameDecoder decoder(10);
        const std::byte eleven[] = {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{11}, std::byte{1}};
        CPPUNIT_ASSERT_EQUAL(std::size_t{4}, decoder.feed(eleven));
        CPPUNIT_ASSERT(decoder.state() == framing::FrameDecoder::State::failed);
        CPPUNIT_ASSERT(decoder.error() == framing::DecodeError::too_long);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, decoder.body_capacity());
    }

    // Parent sends each size, the child echoes it; the parent checks every byte of what comes back.
    void duplex_exchange(Backend backend) {
        auto parent_end_pair = make_pair(backend, true);
        FdConnection& parent_end = parent_end_pair.first;
        FdConnection& child_end = parent_end_pair.second;
        ForkedChild child([&] {
            parent_end.close();
            for (;;) {
                std::vector<std::byte> message;
                try {
                    message = child_end.recv_bytes();
                } catch (const mproc::Closed&) {
                    std::_Exit(0);
                }
                child_end.send_bytes(bytes_of(message));
            }
        });
        child_end.close();
        for (const std::size_t size : kExchangeSizes) {
            const auto sent = pattern(size);
            parent_end.send_bytes(bytes_of(sent));
            const auto echoed = parent_end.recv_bytes();
            CPPUNIT_ASSERT_EQUAL_MESSAGE("size " + std::to_string(size), sent.size(), echoed.size());
            CPPUNIT_ASSERT_MESSAGE("size " + std::to_string(size), sent == echoed);
        }
        // A batch of every size at once, then the echoes in order.
        std::vector<std::vector<std::byte>> batch;
        for (const std::size_t size : kExchangeSizes) batch.push_back(pattern(size));
        std::vector<std::span<const std::byte>> views(batch.begin(), batch.end());
        std::jthread sender([&] { parent_end.send_many(views); });
        for (const auto& sent : batch) CPPUNIT_ASSERT(parent_end.recv_bytes() == sent);
        sender.join();
        parent_end.close();
        assert_exited_zero(child, "echo child");
    }
    void testDuplexExchangeAcrossForkIoUring() { duplex_exchange(Backend::io_uring); }
    void testDuplexExchangeAcrossForkReadWrite() { duplex_exchange(Backend::read_write); }

    // Two pipes: the parent writes sizes into one, the child checks them and writes them back in the other.
    void one_way_pipes(Backend backend) {
        auto down_read_pair = make_pair(backend, false);
        FdConnection& down_read = down_read_pair.first;
        FdConnection& down_write = down_read_pair.second;
        auto up_read_pair = make_pair(backend, false);
        FdConnection& up_read = up_read_pair.first;
        FdConnection& up_write = up_read_pair.second;
        CPPUNIT_ASSERT(down_read.readable() && !down_read.writable());
        CPPUNIT_ASSERT(!down_write.readable() && down_write.writable());
        ForkedChild child([&] {
            down_write.close();
            up_read.close();
            for (const std::size_t size : kExchangeSizes) {
                const auto message = down_read.recv_bytes();
                if (message != pattern(size)) std::_Exit(10);
                up_write.send_bytes(bytes_of(message));
            }
            try {
                down_read.recv_bytes();
                std::_Exit(11);
            } catch (const mproc::Closed&) {
            }
            std::_Exit(0);
        });
        down_read.close();
        up_write.close();
        for (const std::size_t size : kExchangeSizes) {
            down_write.send_bytes(bytes_of(pattern(size)));
            CPPUNIT_ASSERT_MESSAGE("size " + std::to_string(size), up_read.recv_bytes() == pattern(size));
        }
        down_write.close();
        assert_exited_zero(child, "pipe child");
    }
    void testOneWayPipesBothDirectionsIoUring() { one_way_pipes(Backend::io_uring); }
    void testOneWayPipesBothDirectionsReadWrite() { one_way_pipes(Backend::read_write); }

    // python3 tests/python_peer.py FD MODE on the child end of a socketpair, fd inherited across exec.
    ForkedChild start_python_peer(FdConnection& parent_end, FdConnection& child_end, const char* mode) {
        const std::string script = python_peer_path();
        if (!std::filesystem::exists(script)) MPROC_SKIP("python peer script not found at " + script);
        if (::access("/usr/bin/python3", X_OK) != 0 && ::access("/usr/local/bin/python3", X_OK) != 0)
            MPROC_SKIP("python3 not installed");
        const std::string fd = std::to_string(child_end.fileno());
        return ForkedChild([&, mode] {
            parent_end.close();
            ::fcntl(child_end.fileno(), F_SETFD, 0);  // inherited across exec
            ::execlp("python3", "python3", script.c_str(), fd.c_str(), mode, static_cast<char*>(nullptr));
            std::_Exit(127);
        });
    }

    void python_echo(Backend backend) {
        auto parent_end_pair = make_pair(backend, true);
        FdConnection& parent_end = parent_end_pair.first;
        FdConnection& child_end = parent_end_pair.second;
        ForkedChild python = start_python_peer(parent_end, child_end, "echo");
        child_end.close();
        for (const std::size_t size : {0, 1, 16384, 16385, 65536, 70000, 1 << 20}) {
            const auto sent = pattern(static_cast<std::size_t>(size));
            parent_end.send_bytes(bytes_of(sent));
            CPPUNIT_ASSERT_MESSAGE("size " + std::to_string(size), parent_end.recv_bytes() == sent);
        }
        parent_end.close();
        assert_exited_zero(python, "python echo peer");
    }
    void testPythonPeerEchoesIoUring() { python_echo(Backend::io_uring); }
    void testPythonPeerEchoesReadWrite() { python_echo(Backend::read_write); }

    void python_patterns(Backend backend) {
        static const std::size_t sizes[] = {0, 1, 7, 16384, 16385, 65536, 65537 + 4096, 1 << 20};
        auto parent_end_pair = make_pair(backend, true);
        FdConnection& parent_end = parent_end_pair.first;
        FdConnection& child_end = parent_end_pair.second;
        ForkedChild python = start_python_peer(parent_end, child_end, "patterns");
        child_end.close();
        for (const std::size_t size : sizes)
            CPPUNIT_ASSERT_MESSAGE("from python, size " + std::to_string(size), parent_end.recv_bytes() == pattern(size));
        std::vector<std::vector<std::byte>> replies;
        for (const std::size_t size : sizes) replies.push_back(pattern(size));
        std::vector<std::span<const std::byte>> views(replies.begin(), replies.end());
        parent_end.send_many(views);
        assert_exited_zero(python, "python patterns peer");
        CPPUNIT_ASSERT_THROW(parent_end.recv_bytes(), mproc::Closed);
    }
    void testPythonPeerPatternsBothWaysIoUring() { python_patterns(Backend::io_uring); }
    void testPythonPeerPatternsBothWaysReadWrite() { python_patterns(Backend::read_write); }

    void peer_close(Backend backend) {
        auto a_pair = make_pair(backend, true);
        FdConnection& a = a_pair.first;
        FdConnection& b = a_pair.second;
        b.send_bytes(bytes_of(pattern(10)));
        b.close();
        CPPUNIT_ASSERT(a.poll(0ns));
        CPPUNIT_ASSERT(a.recv_bytes() == pattern(10));  // what was sent before the close still arrives
        CPPUNIT_ASSERT(a.poll(0ns));                    // end of stream is "ready"
        CPPUNIT_ASSERT_THROW(a.recv_bytes(), mproc::Closed);
        std::byte buffer[16];
        CPPUNIT_ASSERT_THROW(a.recv_bytes_into(buffer), mproc::Closed);  // stays at end of stream
        CPPUNIT_ASSERT(a.readable() && !a.closed());
    }
    void testPeerCloseIsClosedIoUring() { peer_close(Backend::io_uring); }
    void testPeerCloseIsClosedReadWrite() { peer_close(Backend::read_write); }

    void peer_death(Backend backend) {
        auto parent_end_pair = make_pair(backend, true);
        FdConnection& parent_end = parent_end_pair.first;
        FdConnection& child_end = parent_end_pair.second;
        ForkedChild child([&] {
            parent_end.close();
            child_end.send_bytes(bytes_of(pattern(3)));
            for (;;) ::pause();
        });
        child_end.close();
        CPPUNIT_ASSERT(parent_end.recv_bytes() == pattern(3));
        CPPUNIT_ASSERT(!parent_end.poll(20ms));
        child.kill(SIGKILL);
        child.wait();
        CPPUNIT_ASSERT(parent_end.poll(5s));
        CPPUNIT_ASSERT_THROW(parent_end.recv_bytes(), mproc::Closed);
    }
    void testPeerDeathIsClosedIoUring() { peer_death(Backend::io_uring); }
    void testPeerDeathIsClosedReadWrite() { peer_death(Backend::read_write); }

    // In a child with SIGPIPE at its default action (terminate): socket and pipe, staged and large messages.
    void broken_pipe(Backend backend) {
        for (const bool duplex : {true, false}) {
            for (const std::size_t size : {std::size_t{8}, std::size_t{1} << 20}) {
                make_pair(backend, duplex);  // skips here, in the parent, when io_uring is unavailable
                ForkedChild child([&] {
                    ::signal(SIGPIPE, SIG_DFL);
                    // Made in the child: no other process holds the reading end open.
                    auto reader_pair = make_pair(backend, duplex);
                    FdConnection& reader = reader_pair.first;
                    FdConnection& writer = reader_pair.second;
                    reader.close();
                    try {
                        writer.send_bytes(bytes_of(pattern(size)));
                        std::_Exit(20);
                    } catch (const mproc::BrokenPipe& error) {
                        if (error.error_number() != EPIPE && error.error_number() != ECONNRESET) std::_Exit(21);
                    }
                    sigset_t pending;
                    sigpending(&pending);
                    if (sigismember(&pending, SIGPIPE)) std::_Exit(22);  // a SIGPIPE left to kill us later
                    sigset_t blocked;
                    pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
                    if (sigismember(&blocked, SIGPIPE)) std::_Exit(23);  // mask not restored
                    // The connection is still usable: another send fails the same way.
                    try {
                        writer.send_bytes(bytes_of(pattern(3)));
                        std::_Exit(24);
                    } catch (const mproc::BrokenPipe&) {
                    }
                    std::_Exit(0);
                });
                const int status = child.wait();
                CPPUNIT_ASSERT_MESSAGE(std::string(duplex ? "socket" : "pipe") + ", " + std::to_string(size) +
                                           " B: child wait status " + std::to_string(status) +
                                           (WIFSIGNALED(status) ? " (killed by signal " + std::to_string(WTERMSIG(status)) + ")" : ""),
                                       WIFEXITED(status) && WEXITSTATUS(status) == 0);
            }
        }
    }
    void testSendToClosedPeerIsBrokenPipeIoUring() { broken_pipe(Backend::io_uring); }
    void testSendToClosedPeerIsBrokenPipeReadWrite() { broken_pipe(Backend::read_write); }

    void maxlength_exceeded(Backend backend) {
        {
            auto a_pair = make_pair(backend, true);
            FdConnection& a = a_pair.first;
            FdConnection& b = a_pair.second;
            a.send_bytes(bytes_of(pattern(100)));
            expect_system_error(EMSGSIZE, [&] { b.recv_bytes(99); }, "duplex recv_bytes(99) of 100 bytes");
            CPPUNIT_ASSERT(!b.readable());
            CPPUNIT_ASSERT(b.writable() && !b.closed());
            CPPUNIT_ASSERT_THROW(b.recv_bytes(), mproc::StateError);
            b.send_bytes(bytes_of(pattern(5)));  // still writable, as in Python
            CPPUNIT_ASSERT(a.recv_bytes() == pattern(5));
        }
        {
            auto r_pair = make_pair(backend, false);
            FdConnection& r = r_pair.first;
            FdConnection& w = r_pair.second;
            w.send_bytes(bytes_of(pattern(100)));
            w.send_bytes(bytes_of(pattern(100)));
            CPPUNIT_ASSERT(r.recv_bytes(100) == pattern(100));  // exactly maxlength is fine
            expect_system_error(EMSGSIZE, [&] { r.recv_bytes(50); }, "read-only recv_bytes(50) of 100 bytes");
            CPPUNIT_ASSERT(r.closed());  // a read-only end has nothing left: closed, as in Python
            CPPUNIT_ASSERT_THROW(r.recv_bytes(), mproc::StateError);
        }
    }
    void testMaxlengthExceededClosesForReadingIoUring() { maxlength_exceeded(Backend::io_uring); }
    void testMaxlengthExceededClosesForReadingReadWrite() { maxlength_exceeded(Backend::read_write); }

    // A peer announcing 2^62 bytes and sending 100: no attempt to allocate 2^62 bytes (bad_alloc), a
    // truncated-frame error when it closes; with a maxlength, refused before any body byte.
    void testHugeAnnouncedLengthAllocatesNothingUpfront() {
        const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0};
        {
            auto r_pair = make_pair(Backend::read_write, false);
            FdConnection& r = r_pair.first;
            FdConnection& w = r_pair.second;
            write_raw(w.fileno(), huge, sizeof huge);
            write_raw(w.fileno(), pattern(100).data(), 100);
            w.close();
            expect_system_error(EPROTO, [&] { r.recv_bytes(); }, "2^62 announced, 100 sent");
        }
        {
            auto r_pair = make_pair(Backend::read_write, false);
            FdConnection& r = r_pair.first;
            FdConnection& w = r_pair.second;
            write_raw(w.fileno(), huge, sizeof huge);
            expect_system_error(EMSGSIZE, [&] { r.recv_bytes(1 << 20); }, "2^62 announced, maxlength 1 MiB");
        }
    }

    void truncated(Backend backend) {
        {  // inside the body
            auto r_pair = make_pair(backend, false);
            FdConnection& r = r_pair.first;
            FdConnection& w = r_pair.second;
            const unsigned char header[] = {0, 0, 0, 100};
            write_raw(w.fileno(), header, sizeof header);
            write_raw(w.fileno(), pattern(10).data(), 10);
            w.close();
            expect_system_error(EPROTO, [&] { r.recv_bytes(); }, "10 of 100 body bytes");
            CPPUNIT_ASSERT(r.closed());
        }
        {  // inside the header, duplex: closed for reading, still writable
            auto a_pair = make_pair(backend, true);
            FdConnection& a = a_pair.first;
            FdConnection& b = a_pair.second;
            const unsigned char half_header[] = {0, 0};
            write_raw(a.fileno(), half_header, sizeof half_header);
            ::shutdown(a.fileno(), SHUT_WR);
            std::byte buffer[8];
            expect_system_error(EPROTO, [&] { b.recv_bytes_into(buffer); }, "2 of 4 header bytes");
            CPPUNIT_ASSERT(!b.readable() && b.writable());
        }
        {  // a large body cut short, read straight into the caller's buffer
            auto r_pair = make_pair(backend, false);
            FdConnection& r = r_pair.first;
            FdConnection& w = r_pair.second;
            const auto header = framing::encode_header(1 << 20);
            std::jthread writer([&] {
                write_raw(w.fileno(), header.bytes.data(), header.size);
                write_raw(w.fileno(), pattern(300000).data(), 300000);
                w.close();
            });
            std::vector<std::byte> buffer(1 << 20);
            expect_system_error(EPROTO, [&] { r.recv_bytes_into(buffer); }, "300000 of 1 MiB body bytes");
            writer.join();
        }
        {  // a malformed header
            auto r_pair = make_pair(backend, false);
            FdConnection& r = r_pair.first;
            FdConnection& w = r_pair.second;
            const unsigned char minus_two[] = {0xff, 0xff, 0xff, 0xfe};
            write_raw(w.fileno(), minus_two, sizeof minus_two);
            expect_system_error(EPROTO, [&] { r.recv_bytes(); }, "header -2");
            CPPUNIT_ASSERT(r.closed());
        }
    }
    void testTruncatedFrameIsProtocolErrorIoUring() { truncated(Backend::io_uring); }
    void testTruncatedFrameIsProtocolErrorReadWrite() { truncated(Backend::read_write); }

    void short_buffer(Backend backend) {
        auto a_pair = make_pair(backend, true);
        FdConnection& a = a_pair.first;
        FdConnection& b = a_pair.second;
        a.send_bytes(bytes_of(pattern(100)));
        a.send_bytes(bytes_of(pattern(10)));
        a.send_bytes(bytes_of(pattern(200000)));
        std::vector<std::byte> buffer(64);
        try {
            b.recv_bytes_into(buffer);
            CPPUNIT_FAIL("a 100-byte message fitted a 64-byte buffer");
        } catch (const mproc::BufferTooShort& error) {
            CPPUNIT_ASSERT(error.message() == pattern(100));
        }
        CPPUNIT_ASSERT_EQUAL(std::size_t{10}, b.recv_bytes_into(buffer, 5));  // the connection is usable
        CPPUNIT_ASSERT(std::equal(buffer.begin() + 5, buffer.begin() + 15, pattern(10).begin()));
        try {
            b.recv_bytes_into(buffer, 60);
            CPPUNIT_FAIL("a 200000-byte message fitted 4 bytes");
        } catch (const mproc::BufferTooShort& error) {
            CPPUNIT_ASSERT(error.message() == pattern(200000));
        }
        CPPUNIT_ASSERT_THROW(b.recv_bytes_into(buffer, 65), mproc::ValueError);
        CPPUNIT_ASSERT(!b.poll(0ns));
    }
    void testRecvBytesIntoShortBufferHandsOverMessageIoUring() { short_buffer(Backend::io_uring); }
    void testRecvBytesIntoShortBufferHandsOverMessageReadWrite() { short_buffer(Backend::read_write); }

    void poll_timeouts(Backend backend) {
        auto a_pair = make_pair(backend, true);
        FdConnection& a = a_pair.first;
        FdConnection& b = a_pair.second;
        CPPUNIT_ASSERT(!b.poll(0ns));
        CPPUNIT_ASSERT(!b.poll(-5ms));
        const auto started = std::chrono::steady_clock::now();
        CPPUNIT_ASSERT(!b.poll(50ms));
        CPPUNIT_ASSERT(std::chrono::steady_clock::now() - started >= 50ms);
        std::jthread late_sender([&] {
            std::this_thread::sleep_for(30ms);
            a.send_bytes(bytes_of(pattern(1)));
            a.send_bytes(bytes_of(pattern(2)));
        });
        CPPUNIT_ASSERT(b.poll(std::nullopt));  // waits without bound until the message comes
        late_sender.join();
        CPPUNIT_ASSERT(b.recv_bytes() == pattern(1));
        CPPUNIT_ASSERT(b.poll(0ns));  // the second message is already in the read-ahead buffer
        CPPUNIT_ASSERT(b.recv_bytes() == pattern(2));
        CPPUNIT_ASSERT(!b.poll(10ms));
    }
    void testPollTimeoutsIoUring() { poll_timeouts(Backend::io_uring); }
    void testPollTimeoutsReadWrite() { poll_timeouts(Backend::read_write); }

    // An fd inherited in O_NONBLOCK mode (EAGAIN from read/write and from io_uring) still gives blocking,
    // whole-message semantics: 4 MiB through a 64 KiB pipe.
    void non_blocking_fd(Backend backend) {
        auto ends = make_pair(backend, false);
        FdConnection& reader = ends.first;
        FdConnection& writer = ends.second;
        for (const int fd : {reader.fileno(), writer.fileno()})
            CPPUNIT_ASSERT_EQUAL(0, ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK));
        const auto big = pattern(4 << 20);
        std::jthread sender([&] {
            writer.send_bytes(bytes_of(big));
            writer.send_bytes(bytes_of(pattern(5)));
        });
        std::this_thread::sleep_for(20ms);  // let the pipe fill: the writer meets EAGAIN
        CPPUNIT_ASSERT(reader.recv_bytes() == big);
        CPPUNIT_ASSERT(reader.recv_bytes() == pattern(5));
        sender.join();
    }
    void testNonBlockingInheritedFdStillDeliversWholeMessagesIoUring() { non_blocking_fd(Backend::io_uring); }
    void testNonBlockingInheritedFdStillDeliversWholeMessagesReadWrite() { non_blocking_fd(Backend::read_write); }

    // A handler installed without SA_RESTART interrupts the blocked receive many times (EINTR from read and
    // from io_uring_enter); the receive resumes and returns the message, once.
    void signals_during_receive(Backend backend) {
        auto ends = make_pair(backend, true);
        FdConnection& a = ends.first;
        FdConnection& b = ends.second;
        static std::atomic<int> handled{0};
        struct sigaction action {};
        action.sa_handler = [](int) { handled.fetch_add(1, std::memory_order_relaxed); };  // relaxed: a counter
        sigemptyset(&action.sa_mask);
        struct sigaction previous {};
        CPPUNIT_ASSERT_EQUAL(0, ::sigaction(SIGUSR1, &action, &previous));
        handled.store(0, std::memory_order_relaxed);  // relaxed: read only after join()
        const pthread_t receiver_thread = ::pthread_self();
        std::jthread interrupter([&] {
            for (int i = 0; i < 20; ++i) {
                std::this_thread::sleep_for(2ms);
                ::pthread_kill(receiver_thread, SIGUSR1);
            }
            std::this_thread::sleep_for(5ms);
            a.send_bytes(bytes_of(pattern(70000)));
        });
        const auto received = b.recv_bytes();
        interrupter.join();
        ::sigaction(SIGUSR1, &previous, nullptr);
        CPPUNIT_ASSERT(received == pattern(70000));
        CPPUNIT_ASSERT(handled.load(std::memory_order_relaxed) >= 1);
        CPPUNIT_ASSERT(!b.poll(0ns));
    }
    void testSignalsDuringBlockedReceiveAreRetriedIoUring() { signals_during_receive(Backend::io_uring); }
    void testSignalsDuringBlockedReceiveAreRetriedReadWrite() { signals_during_receive(Backend::read_write); }

    // 32 messages of 8 KiB (one SQE each) and 900 of 64 B (staged into one SQE) each go in one io_uring_enter.
    void testSendManySubmitsBatchInOneEnter() {
        for (const bool duplex : {true, false}) {
            auto receiver_pair = make_pair(Backend::io_uring, duplex);
            FdConnection& receiver = receiver_pair.first;
            FdConnection& sender = receiver_pair.second;
            // io_uring completes a pipe write that finds the pipe partly full with a short count (which breaks
            // the link chain and costs a resubmission): a 1 MiB pipe holds the whole batch, as a socket's
            // MSG_WAITALL send does by itself.
            if (!duplex) CPPUNIT_ASSERT(::fcntl(sender.fileno(), F_SETPIPE_SZ, 1 << 20) >= (1 << 20));
            std::vector<std::vector<std::byte>> large(32, pattern(8192));
            std::vector<std::vector<std::byte>> small(900, pattern(64));
            std::jthread reader([&] {
                for (std::size_t i = 0; i < large.size() + small.size(); ++i) receiver.recv_bytes();
            });
            const auto before = sender.send_stats();
            std::vector<std::span<const std::byte>> large_views(large.begin(), large.end());
            sender.send_many(large_views);
            const auto middle = sender.send_stats();
            std::vector<std::span<const std::byte>> small_views(small.begin(), small.end());
            sender.send_many(small_views);
            const auto after = sender.send_stats();
            reader.join();
            const std::string kind = duplex ? "socket: " : "pipe: ";
            CPPUNIT_ASSERT_EQUAL_MESSAGE(kind + "io_uring_enter calls for 32 large messages", std::uint64_t{1},
                                         middle.system_calls - before.system_calls);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(kind + "SQEs for 32 large messages", std::uint64_t{32}, middle.sqes - before.sqes);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(kind + "io_uring_enter calls for 900 small messages", std::uint64_t{1},
                                         after.system_calls - middle.system_calls);
            CPPUNIT_ASSERT_EQUAL_MESSAGE(kind + "SQEs for 900 small messages", std::uint64_t{1}, after.sqes - middle.sqes);
        }
    }

    void testReadWriteBackendMakesOneCallPerLargeMessage() {
        auto receiver_pair = make_pair(Backend::read_write, false);
        FdConnection& receiver = receiver_pair.first;
        FdConnection& sender = receiver_pair.second;
        // Room for all eight in the pipe: with the default 64 KiB a slow reader (a sanitizer build) can
        // leave the last message only partly written, which makes a ninth, legitimate, call.
        CPPUNIT_ASSERT(::fcntl(sender.fileno(), F_SETPIPE_SZ, 1 << 20) >= (1 << 20));
        std::vector<std::vector<std::byte>> large(8, pattern(8192));
        std::vector<std::span<const std::byte>> views(large.begin(), large.end());
        std::size_t intact = 0;
        std::jthread reader([&] {
            for (std::size_t i = 0; i < large.size(); ++i) intact += receiver.recv_bytes() == pattern(8192) ? 1 : 0;
        });
        const auto before = sender.send_stats();
        sender.send_many(views);
        const auto after = sender.send_stats();
        reader.join();
        CPPUNIT_ASSERT_EQUAL(large.size(), intact);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{8}, after.system_calls - before.system_calls);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{0}, after.sqes);
    }

    void testTrivialValuesAndOffsets() {
        struct Point {
            std::int32_t x;
            double y;
        };
        auto a_pair = mproc::fd_pipe();
        FdConnection& a = a_pair.first;
        FdConnection& b = a_pair.second;
        a.send(Point{7, 2.5});
        const Point got = b.recv<Point>();
        CPPUNIT_ASSERT_EQUAL(7, got.x);
        CPPUNIT_ASSERT_EQUAL(2.5, got.y);
        a.send(std::uint16_t{9});
        CPPUNIT_ASSERT_THROW(b.recv<std::uint64_t>(), mproc::ValueError);  // 2 bytes, not 8
        a.send(std::uint64_t{1});
        CPPUNIT_ASSERT_THROW(b.recv<std::uint16_t>(), mproc::ValueError);  // 8 bytes, not 2
        const auto source = pattern(10);
        a.send_bytes(bytes_of(source), 2, 3);
        const auto part = b.recv_bytes();
        CPPUNIT_ASSERT(part == std::vector<std::byte>(source.begin() + 2, source.begin() + 5));
        a.send_bytes(bytes_of(source), 4);
        CPPUNIT_ASSERT(b.recv_bytes() == std::vector<std::byte>(source.begin() + 4, source.end()));
        CPPUNIT_ASSERT_THROW(a.send_bytes(bytes_of(source), 11), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(a.send_bytes(bytes_of(source), 8, 3), mproc::ValueError);
    }

    void testClosedAndOneWayEndsRefuse() {
        auto r_pair = mproc::fd_pipe(false);
        FdConnection& r = r_pair.first;
        FdConnection& w = r_pair.second;
        CPPUNIT_ASSERT_THROW(r.send_bytes(bytes_of(pattern(1))), mproc::StateError);
        CPPUNIT_ASSERT_THROW(w.recv_bytes(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(w.poll(0ns), mproc::StateError);
        r.close();
        r.close();  // idempotent
        CPPUNIT_ASSERT(r.closed());
        CPPUNIT_ASSERT_THROW(r.fileno(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(r.recv_bytes(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(FdConnection::from_fd(-1), mproc::ValueError);
        const int spare = ::dup(w.fileno());
        ::close(spare);
        CPPUNIT_ASSERT_THROW(FdConnection::from_fd(spare), mproc::SystemError);
        // An inherited fd adopted as a connection speaks the same framing.
        int fds[2];
        CPPUNIT_ASSERT_EQUAL(0, ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
        FdConnection left = FdConnection::from_fd(fds[0]);
        FdConnection right = FdConnection::from_fd(fds[1]);
        left.send_bytes(bytes_of(pattern(33)));
        CPPUNIT_ASSERT(right.recv_bytes() == pattern(33));
        FdConnection moved = std::move(left);
        CPPUNIT_ASSERT(left.closed());
        moved.send_bytes(bytes_of(pattern(0)));
        CPPUNIT_ASSERT(right.recv_bytes().empty());
    }
};

// Concurrent use: one thread sends while another receives on the same connection, at both ends.
class ConnectionThreadsTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ConnectionThreadsTest);
    CPPUNIT_TEST(testSendAndReceiveConcurrentlyThreadsIoUring);
    CPPUNIT_TEST(testSendAndReceiveConcurrentlyThreadsReadWrite);
    CPPUNIT_TEST_SUITE_END();

public:
    void concurrent(Backend backend) {
        auto a_pair = make_pair(backend, true);
        FdConnection& a = a_pair.first;
        FdConnection& b = a_pair.second;
        constexpr int kMessages = 400;
        const auto size_of = [](int i) { return static_cast<std::size_t>((i * 977) % 70000); };
        mproc::test::run_in_threads(4, [&](int index) {
            FdConnection& end = index < 2 ? a : b;
            if (index % 2 == 0) {
                for (int i = 0; i < kMessages; i += 4) {
                    std::vector<std::vector<std::byte>> batch;
                    for (int j = i; j < i + 4; ++j) batch.push_back(pattern(size_of(j)));
                    std::vector<std::span<const std::byte>> views(batch.begin(), batch.end());
                    if (i % 8 == 0)
                        end.send_many(views);
                    else
                        for (const auto& view : views) end.send_bytes(view);
                }
            } else {
                for (int i = 0; i < kMessages; ++i)
                    CPPUNIT_ASSERT_MESSAGE("message " + std::to_string(i), end.recv_bytes() == pattern(size_of(i)));
            }
        });
    }
    void testSendAndReceiveConcurrentlyThreadsIoUring() { concurrent(Backend::io_uring); }
    void testSendAndReceiveConcurrentlyThreadsReadWrite() { concurrent(Backend::read_write); }
};

// Many rounds of random-sized batches across fork, both backends, socket and pipe.
class ConnectionStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ConnectionStressTest);
    CPPUNIT_TEST(testRandomBatchesAcrossForkIoUring);
    CPPUNIT_TEST(testRandomBatchesAcrossForkReadWrite);
    CPPUNIT_TEST_SUITE_END();

public:
    void random_batches(Backend backend) {
        for (const bool duplex : {true, false}) {
            auto receiver_pair = make_pair(backend, duplex);
            FdConnection& receiver = receiver_pair.first;
            FdConnection& sender = receiver_pair.second;
            constexpr unsigned kSeed = 12345;
            constexpr int kRounds = 300;
            const auto sizes_of_round = [](std::mt19937& random) {
                std::vector<std::size_t> sizes(1 + random() % 40);
                for (auto& size : sizes) {
                    const unsigned kind = random() % 10;
                    size = kind < 6 ? random() % 200 : kind < 9 ? random() % 20000 : random() % 600000;
                }
                return sizes;
            };
            ForkedChild child([&] {
                receiver.close();
                std::mt19937 random(kSeed);
                for (int round = 0; round < kRounds; ++round) {
                    std::vector<std::vector<std::byte>> batch;
                    for (const std::size_t size : sizes_of_round(random)) batch.push_back(pattern(size));
                    std::vector<std::span<const std::byte>> views(batch.begin(), batch.end());
                    sender.send_many(views);
                }
                std::_Exit(0);
            });
            sender.close();
            std::mt19937 random(kSeed);
            std::size_t total = 0;
            for (int round = 0; round < kRounds; ++round)
                for (const std::size_t size : sizes_of_round(random)) {
                    const auto message = receiver.recv_bytes();
                    CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round), message == pattern(size));
                    total += size;
                }
            CPPUNIT_ASSERT_THROW(receiver.recv_bytes(), mproc::Closed);
            assert_exited_zero(child, "stress sender");
            CPPUNIT_ASSERT(total > 0);
        }
    }
    void testRandomBatchesAcrossForkIoUring() { random_batches(Backend::io_uring); }
    void testRandomBatchesAcrossForkReadWrite() { random_batches(Backend::read_write); }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ConnectionTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ConnectionThreadsTest, "stress");  // the thread variants TSan runs
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ConnectionStressTest, "stress");

}  // namespace
