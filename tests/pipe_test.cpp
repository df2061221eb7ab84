// tests/pipe_test.cpp — mproc::Pipe (shared-memory connections): messages of 0 B to 16 MiB (far beyond the
// 256 KiB ring) across fork() and across threads, end of stream after the peer closes, a SIGKILLed peer
// or an ended holder thread seen promptly as end of stream (recv) and BrokenPipe (send), a peer dying
// inside a message, BufferTooShort handing over the message, maxlength, poll timeouts, one-way pipes,
// send<T>/recv<T>, and holder bookkeeping (adopt, disown, the fork idiom).
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/pipe.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::PipeConnection;
using mproc::test::ForkedChild;
using Clock = std::chrono::steady_clock;

std::vector<std::byte> pattern(std::size_t size, std::size_t seed = 0) {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i * 7 + size + seed) & 0xff);
    return bytes;
}

std::span<const std::byte> bytes_of(const std::vector<std::byte>& bytes) { return {bytes.data(), bytes.size()}; }

const std::vector<std::size_t> kSizes = {0,    1,     2031,   2032,          2033,          4064, 4065,
                                         65536, 262144, 262145, 1u << 20,    (16u << 20) + 3};

void assert_exited_zero(ForkedChild& child) {
    const int status = child.wait(120s);
    CPPUNIT_ASSERT_MESSAGE("child status " + std::to_string(status), WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

template <class Fn>
std::chrono::milliseconds elapsed_of(Fn&& fn) {
    const auto start = Clock::now();
    fn();
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

class PipeUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(PipeUnitTest);
    CPPUNIT_TEST(testMessagesOfEverySizeArriveWholeAcrossProcesses);
    CPPUNIT_TEST(testMessagesOfEverySizeArriveWholeAcrossThreads);
    CPPUNIT_TEST(testEchoBothWaysAcrossProcesses);
    CPPUNIT_TEST(testCloseGivesEndOfStreamAfterTheLastMessageThreads);
    CPPUNIT_TEST(testKilledPeerGivesEndOfStreamAndBrokenPipePromptly);
    CPPUNIT_TEST(testBlockedSenderLearnsOfKilledReaderPromptly);
    CPPUNIT_TEST(testPeerKilledInsideAMessageIsAProtocolError);
    CPPUNIT_TEST(testEndedHolderThreadEndsTheStreamThreads);
    CPPUNIT_TEST(testShortBufferHandsOverTheMessage);
    CPPUNIT_TEST(testMaxlengthRefusesLongerMessage);
    CPPUNIT_TEST(testPollTimesOutAndSeesMessages);
    CPPUNIT_TEST(testOneWayPipeHasAReadEndAndAWriteEnd);
    CPPUNIT_TEST(testTypedValuesRoundTrip);
    CPPUNIT_TEST(testClosedHandleRefusesOperations);
    CPPUNIT_TEST(testAdoptAfterTheEndIsGoneIsRefused);
    CPPUNIT_TEST(testRevokedHoldKeepsThisThreadsRobustListSound);
    CPPUNIT_TEST(testCloseInTheParentKeepsTheChildsHold);
    CPPUNIT_TEST(testConcurrentSendAndReceiveThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    void testMessagesOfEverySizeArriveWholeAcrossProcesses() {
        auto ends = mproc::Pipe();  // named members: a lambda cannot capture a structured binding in C++20
        auto& parent = ends.first;
        auto& child_end = ends.second;
        ForkedChild child([&] {
            child_end.adopt();
            for (std::size_t size : kSizes) child_end.send_bytes(bytes_of(pattern(size)));
            child_end.close();
        });
        for (std::size_t size : kSizes) {
            const std::vector<std::byte> message = parent.recv_bytes();
            CPPUNIT_ASSERT_EQUAL(size, message.size());
            CPPUNIT_ASSERT(message == pattern(size));
        }
        assert_exited_zero(child);
        child_end.close();  // the child adopted and then closed; this drops the parent's own hold
        CPPUNIT_ASSERT_THROW(parent.recv_bytes(), mproc::Closed);
    }

    void testMessagesOfEverySizeArriveWholeAcrossThreads() {
        auto ends = mproc::Pipe();
        auto& receiver = ends.first;
        auto& sender = ends.second;
        std::thread producer([&] {
            for (std::size_t size : kSizes) sender.send_bytes(bytes_of(pattern(size)));
        });
        for (std::size_t size : kSizes) CPPUNIT_ASSERT(receiver.recv_bytes() == pattern(size));
        producer.join();
    }

    void testEchoBothWaysAcrossProcesses() {
        auto ends = mproc::Pipe(true, 4);
        auto& parent = ends.first;
        auto& child_end = ends.second;
        ForkedChild child([&] {
            child_end.adopt();
            for (;;) {
                std::vector<std::byte> message;
                try {
                    message = child_end.recv_bytes();
                } catch (const mproc::Closed&) {
                    return;
                }
                child_end.send_bytes(bytes_of(message));
            }
        });
        for (std::size_t size : {std::size_t(0), std::size_t(5), std::size_t(9000), std::size_t(100000)}) {
            parent.send_bytes(bytes_of(pattern(size, 1)));
            CPPUNIT_ASSERT(parent.recv_bytes() == pattern(size, 1));
        }
        parent.close();
        assert_exited_zero(child);
    }

    void testCloseGivesEndOfStreamAfterTheLastMessageThreads() {
        auto ends = mproc::Pipe();
        auto& receiver = ends.first;
        auto& sender = ends.second;
        std::thread producer([&] {
            sender.adopt();
            sender.send_bytes(bytes_of(pattern(10)));
            sender.send_bytes(bytes_of(pattern(5000)));
            sender.close();
        });
        producer.join();
        // The worker's close() released its hold and revoked the main thread's (this process's) one.
        CPPUNIT_ASSERT(receiver.peer_gone());
        CPPUNIT_ASSERT(sender.closed());
        CPPUNIT_ASSERT(receiver.poll());
        CPPUNIT_ASSERT(receiver.recv_bytes() == pattern(10));
        CPPUNIT_ASSERT(receiver.recv_bytes() == pattern(5000));
        CPPUNIT_ASSERT_THROW(receiver.recv_bytes(), mproc::Closed);
        CPPUNIT_ASSERT_THROW(receiver.recv_bytes(), mproc::Closed);
        CPPUNIT_ASSERT(receiver.poll());
        CPPUNIT_ASSERT_THROW(receiver.send_bytes(bytes_of(pattern(1))), mproc::BrokenPipe);
    }

    void testKilledPeerGivesEndOfStreamAndBrokenPipePromptly() {
        auto ends = mproc::Pipe();
        auto& parent = ends.first;
        auto& child_end = ends.second;
        ForkedChild child([&] {
            child_end.adopt();
            child_end.send_bytes(bytes_of(pattern(3)));
            ::pause();
        });
        CPPUNIT_ASSERT(parent.recv_bytes() == pattern(3));  // the child holds its end now
        child_end.close();                                   // only the child holds it
        CPPUNIT_ASSERT(!parent.peer_gone());
        std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            child.kill(SIGKILL);
        });
        const auto blocked = elapsed_of([&] { CPPUNIT_ASSERT_THROW(parent.recv_bytes(), mproc::Closed); });
        killer.join();
        CPPUNIT_ASSERT_MESSAGE("woken " + std::to_string(blocked.count()) + " ms after the call",
                               blocked >= 90ms && blocked < 2000ms);
        CPPUNIT_ASSERT(parent.peer_gone());
        try {
            parent.send_bytes(bytes_of(pattern(1)));
            CPPUNIT_FAIL("a send to a dead peer must throw");
        } catch (const mproc::BrokenPipe& error) {
            CPPUNIT_ASSERT_EQUAL(EPIPE, error.code());
        }
        child.wait();
    }

    void testBlockedSenderLearnsOfKilledReaderPromptly() {
        auto ends = mproc::Pipe(true, 2);
        auto& parent = ends.first;
        auto& child_end = ends.second;
        ForkedChild child([&] {
            child_end.adopt();
            child_end.send_bytes(bytes_of(pattern(1)));
            ::pause();
        });
        CPPUNIT_ASSERT(parent.recv_bytes() == pattern(1));
        child_end.close();
        std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            child.kill(SIGKILL);
        });
        // 1 MiB never fits 2 slots: the sender sleeps on a full ring until the reader dies.
        const auto blocked = elapsed_of(
            [&] { CPPUNIT_ASSERT_THROW(parent.send_bytes(bytes_of(pattern(1u << 20))), mproc::BrokenPipe); });
        killer.join();
        CPPUNIT_ASSERT_MESSAGE("woken after " + std::to_string(blocked.count()) + " ms",
                               blocked >= 90ms && blocked < 2000ms);
        child.wait();
    }

    void testPeerKilledInsideAMessageIsAProtocolError() {
        auto ends = mproc::Pipe(true, 2);
        auto& parent = ends.first;
        auto& child_end = ends.second;
        ForkedChild child([&] {
            child_end.adopt();
            child_end.send_bytes(bytes_of(pattern(1)));
            child_end.send_bytes(bytes_of(pattern(100000)));  // blocks: the parent reads only part of it
        });
        CPPUNIT_ASSERT(parent.recv_bytes() == pattern(1));
        child_end.close();
        while (!parent.poll(10ms)) {
        }
        std::this_thread::sleep_for(50ms);  // the child fills both slots and sleeps
        child.kill(SIGKILL);
        try {
            parent.recv_bytes();
            CPPUNIT_FAIL("a message cut by the sender's death must not be delivered");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EPROTO, error.code());
        }
        CPPUNIT_ASSERT(!parent.readable());
        CPPUNIT_ASSERT(parent.writable());
        child.wait();
    }

    void testEndedHolderThreadEndsTheStreamThreads() {
        auto ends = mproc::Pipe();
        auto& receiver = ends.first;
        auto& sender = ends.second;
        std::atomic<bool> adopted{false};
        std::thread holder([&] {
            sender.adopt();
            adopted.store(true);  // seq_cst: test handshake only
            sender.send_bytes(bytes_of(pattern(7)));
        });
        while (!adopted.load()) std::this_thread::yield();
        sender.disown();  // the worker is now the only holder; its end goes with it
        CPPUNIT_ASSERT(receiver.recv_bytes() == pattern(7));
        holder.join();
        const auto waited = elapsed_of([&] { CPPUNIT_ASSERT_THROW(receiver.recv_bytes(), mproc::Closed); });
        CPPUNIT_ASSERT(waited < 1000ms);
        CPPUNIT_ASSERT_THROW(sender.adopt(), mproc::StateError);
    }

    void testShortBufferHandsOverTheMessage() {
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        right.send_bytes(bytes_of(pattern(5000)));
        right.send_bytes(bytes_of(pattern(3)));
        std::vector<std::byte> small(100);
        try {
            left.recv_bytes_into(small);
            CPPUNIT_FAIL("BufferTooShort expected");
        } catch (const mproc::BufferTooShort& error) {
            CPPUNIT_ASSERT(error.message() == pattern(5000));
        }
        CPPUNIT_ASSERT_EQUAL(std::size_t(3), left.recv_bytes_into(small, 97));
        CPPUNIT_ASSERT(std::vector<std::byte>(small.begin() + 97, small.end()) == pattern(3));
        CPPUNIT_ASSERT_THROW(left.recv_bytes_into(small, 101), mproc::ValueError);
    }

    void testMaxlengthRefusesLongerMessage() {
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        right.send_bytes(bytes_of(pattern(10)));
        right.send_bytes(bytes_of(pattern(11)));
        CPPUNIT_ASSERT(left.recv_bytes(10) == pattern(10));
        try {
            left.recv_bytes(10);
            CPPUNIT_FAIL("EMSGSIZE expected");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EMSGSIZE, error.code());
        }
        CPPUNIT_ASSERT(!left.readable());
        CPPUNIT_ASSERT_THROW(left.recv_bytes(), mproc::StateError);
        left.send_bytes(bytes_of(pattern(2)));
        CPPUNIT_ASSERT(right.recv_bytes() == pattern(2));
    }

    void testPollTimesOutAndSeesMessages() {
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        CPPUNIT_ASSERT(!left.poll());
        const auto waited = elapsed_of([&] { CPPUNIT_ASSERT(!left.poll(80ms)); });
        CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited >= 80ms && waited < 1000ms);
        std::thread later([&] {
            std::this_thread::sleep_for(50ms);
            right.send_bytes(bytes_of(pattern(4)));
        });
        const auto woken = elapsed_of([&] { CPPUNIT_ASSERT(left.poll(std::nullopt)); });
        later.join();
        CPPUNIT_ASSERT(woken < 1000ms);
        CPPUNIT_ASSERT(left.poll(-5ms));
        CPPUNIT_ASSERT(left.recv_bytes() == pattern(4));
        CPPUNIT_ASSERT(!left.poll(0ns));
    }

    void testOneWayPipeHasAReadEndAndAWriteEnd() {
        auto ends = mproc::Pipe(false);
        auto& reader = ends.first;
        auto& writer = ends.second;
        CPPUNIT_ASSERT(reader.readable() && !reader.writable());
        CPPUNIT_ASSERT(!writer.readable() && writer.writable());
        writer.send_bytes(bytes_of(pattern(200000)));  // fits the 128-slot ring: no reader needed yet
        CPPUNIT_ASSERT_THROW(reader.send_bytes(bytes_of(pattern(1))), mproc::StateError);
        CPPUNIT_ASSERT_THROW(writer.recv_bytes(), mproc::StateError);
        CPPUNIT_ASSERT(reader.recv_bytes() == pattern(200000));
    }

    void testTypedValuesRoundTrip() {
        struct Point {
            std::int32_t x;
            double y;
        };
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        left.send(Point{3, 2.5});
        const Point point = right.recv<Point>();
        CPPUNIT_ASSERT_EQUAL(3, point.x);
        CPPUNIT_ASSERT_EQUAL(2.5, point.y);
        left.send(std::int64_t{1});
        CPPUNIT_ASSERT_THROW(right.recv<Point>(), mproc::ValueError);
        const std::vector<std::byte> buffer = pattern(20);
        left.send_bytes(bytes_of(buffer), 5, 10);
        CPPUNIT_ASSERT(right.recv_bytes() == std::vector<std::byte>(buffer.begin() + 5, buffer.begin() + 15));
        CPPUNIT_ASSERT_THROW(left.send_bytes(bytes_of(buffer), 15, 10), mproc::ValueError);
    }

    void testClosedHandleRefusesOperations() {
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        left.close();
        left.close();
        CPPUNIT_ASSERT(left.closed());
        CPPUNIT_ASSERT_THROW(left.send_bytes(bytes_of(pattern(1))), mproc::StateError);
        CPPUNIT_ASSERT_THROW(left.recv_bytes(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(left.poll(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(left.fileno(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(right.fileno(), mproc::StateError);
        CPPUNIT_ASSERT_EQUAL(std::string("shared memory"), std::string(right.backend()));
        CPPUNIT_ASSERT(right.peer_gone());
    }

    void testAdoptAfterTheEndIsGoneIsRefused() {
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        right.disown();
        CPPUNIT_ASSERT(left.peer_gone());
        CPPUNIT_ASSERT_THROW(right.adopt(), mproc::StateError);
        left.adopt();  // already held by this thread: no-op
        CPPUNIT_ASSERT(!right.peer_gone());
    }

    void testRevokedHoldKeepsThisThreadsRobustListSound() {
        for (int round = 0; round < 50; ++round) {
            auto ends = mproc::Pipe(true, 2);
            auto& left = ends.first;
            auto& right = ends.second;
            std::thread closer([&right] { right.close(); });  // revokes this thread's hold of right
            closer.join();
            CPPUNIT_ASSERT(left.peer_gone());
            CPPUNIT_ASSERT_THROW(left.recv_bytes(), mproc::Closed);
        }
        // Every revoked node is still linked in this thread's list; new holds link and unlink beside them.
        auto ends = mproc::Pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        right.send_bytes(bytes_of(pattern(9)));
        CPPUNIT_ASSERT(left.recv_bytes() == pattern(9));
        right.adopt();  // renews nothing: this thread holds it
        right.close();
        CPPUNIT_ASSERT(left.peer_gone());
    }

    void testCloseInTheParentKeepsTheChildsHold() {
        auto ends = mproc::Pipe();
        auto& parent = ends.first;
        auto& child_end = ends.second;
        ForkedChild child([&] {
            child_end.adopt();
            child_end.send_bytes(bytes_of(pattern(1)));
            CPPUNIT_ASSERT(child_end.recv_bytes() == pattern(2));
            child_end.send_bytes(bytes_of(pattern(3)));
        });
        CPPUNIT_ASSERT(parent.recv_bytes() == pattern(1));
        child_end.close();  // revokes the parent's hold only
        CPPUNIT_ASSERT(!parent.peer_gone());
        parent.send_bytes(bytes_of(pattern(2)));
        CPPUNIT_ASSERT(parent.recv_bytes() == pattern(3));
        assert_exited_zero(child);
        CPPUNIT_ASSERT(parent.peer_gone());
        CPPUNIT_ASSERT_THROW(parent.recv_bytes(), mproc::Closed);
    }

    void testConcurrentSendAndReceiveThreads() {
        auto ends = mproc::Pipe(true, 8);
        auto& left = ends.first;
        auto& right = ends.second;
        constexpr int kMessages = 2000;
        std::thread echo([&] {
            for (int i = 0; i < kMessages; ++i) right.send_bytes(bytes_of(right.recv_bytes()));
        });
        std::thread sender([&] {
            for (int i = 0; i < kMessages; ++i)
                left.send_bytes(bytes_of(pattern(static_cast<std::size_t>(i % 3000), 2)));
        });
        for (int i = 0; i < kMessages; ++i)
            CPPUNIT_ASSERT(left.recv_bytes() == pattern(static_cast<std::size_t>(i % 3000), 2));
        sender.join();
        echo.join();
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PipeUnitTest, "unit");
