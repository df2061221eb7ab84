// tests/pipe_test.cpp — mproc::Pipe (shared-memory connections): messages of 0 B to 16 MiB (far beyond the
// 256 KiB ring) across fork() and across threads, end of stream after the peer closes, a SIGKILLed peer
// or an ended holder thread seen promptly as end of stream (recv) and BrokenPipe (send), a peer dying
// inside a message, BufferTooShort handing over the message, maxlength, poll timeouts, one-way pipes,
// send<T>/recv<T>, and holder bookkeeping (adopt, disown, the fork idiom). Named pipes (Pipe::create/open)
// between this process and an exec'd one that inherited nothing of it: messages both ways, a SIGKILLed
// opener or creator seen as end of stream, a creator dead before anyone opened, the one-opener rule,
// names that are missing or not pipes, hostile segments before and after open; PipeConnection::from_fd in
// this process and across exec.
// Stress suite: streams of random-sized messages (many longer than the ring) both ways at once, across
// processes and across threads. Crash suite: the sender or the receiver SIGKILLed at a random moment of
// such a stream; the survivor gets every whole message in order, intact, once, then exactly the end the
// contract names (Closed, SystemError(EPROTO) for a message cut short, or BrokenPipe), in bounded time;
// the same for a named pipe whose exec'd opener is SIGKILLed while it sends or receives.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/pipe.hpp"
#include "mproc/shared_memory.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
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
    CPPUNIT_TEST(testPollLooksPastASkippedSlotWithoutMovingTheReader);
    CPPUNIT_TEST(testPollSleepsWhenASeccompFilterRefusesFutexWaitv);
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
            CPPUNIT_ASSERT_EQUAL(EPIPE, error.error_number());
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
            CPPUNIT_ASSERT_EQUAL(EPROTO, error.error_number());
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
            // release: pairs with the acquire below; the holder word adopt() wrote is visible before disown().
            adopted.store(true, std::memory_order_release);
            sender.send_bytes(bytes_of(pattern(7)));
        });
        while (!adopted.load(std::memory_order_acquire)) std::this_thread::yield();  // acquire: see the store
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
            CPPUNIT_ASSERT_EQUAL(EMSGSIZE, error.error_number());
        }
        CPPUNIT_ASSERT(!left.readable());
        CPPUNIT_ASSERT_THROW(left.recv_bytes(), mproc::StateError);
        left.send_bytes(bytes_of(pattern(2)));
        CPPUNIT_ASSERT(right.recv_bytes() == pattern(2));
    }

    // The fallback sleep (the eventcount alone, the holders re-checked) must sleep, not spin on the refusal.
    void testPollSleepsWhenASeccompFilterRefusesFutexWaitv() {
        run_with_futex_waitv_refused([] {
            auto ends = mproc::Pipe();
            auto& left = ends.first;
            auto& right = ends.second;
            const WaitTiming timing = timed_wait([&] { CPPUNIT_ASSERT(!left.poll(300ms)); });
            CPPUNIT_ASSERT_MESSAGE(std::to_string(timing.waited.count()) + " ms",
                                   timing.waited >= 300ms && timing.waited < 2000ms);
            assert_slept(timing);
            std::thread later([&] {
                std::this_thread::sleep_for(50ms);
                right.send_bytes(bytes_of(pattern(4)));
            });
            const auto woken = elapsed_of([&] { CPPUNIT_ASSERT(left.poll(10s)); });
            later.join();
            CPPUNIT_ASSERT_MESSAGE(std::to_string(woken.count()) + " ms", woken < 5000ms);
            CPPUNIT_ASSERT(left.recv_bytes() == pattern(4));
        });
    }

    // poll() (and wait()) only read the ring: a slot published as skipped at the head (a repair after a sender
    // died between moving its index and publishing) is looked past, and stepping over it is left to the
    // receive, so that a poll beside a receive in another thread cannot move the reader's position.
    void testPollLooksPastASkippedSlotWithoutMovingTheReader() {
        auto [reader, writer] = mproc::Pipe(false, 8);
        writer.send_bytes(bytes_of(pattern(4)));
        CPPUNIT_ASSERT(reader.recv_bytes() == pattern(4));
        mproc::detail::RingControl& ring = reader.read_ring()->control();
        const mproc::detail::RingGeometry& geometry = reader.read_ring()->geometry();
        // What a sender killed after moving its index to 2, then a repair, leave behind.
        std::atomic_ref(ring.producer.position).store(2, std::memory_order_relaxed);
        mproc::detail::spsc_sequence_of(geometry.slot_at(1), geometry.stride)
            .store(mproc::detail::spsc_skipped_sequence(1), std::memory_order_release);
        CPPUNIT_ASSERT(!reader.poll(0ns));  // nothing after the skipped slot yet
        writer.send_bytes(bytes_of(pattern(5)));
        CPPUNIT_ASSERT(reader.poll(0ns));
        // relaxed (both): this thread is the only one using the ring now.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{1}, std::atomic_ref(ring.consumer.position).load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(reader.recv_bytes() == pattern(5));
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{3}, std::atomic_ref(ring.consumer.position).load(std::memory_order_relaxed));
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


// ---------------------------------------------------------------------------------------------------------
// Streams for the stress and crash suites. Message `sequence` of the stream `seed` has a size and bytes
// that both sides derive from (seed, sequence), so the receiver knows exactly what must come next. A message
// of at least 24 bytes starts with its sequence number, its size and a checksum of the bytes after them.

struct StreamHead {
    std::uint64_t sequence;
    std::uint64_t size;
    std::uint64_t checksum;  // FNV-1a of the bytes after the head
};

std::uint64_t mix64(std::uint64_t value) {  // splitmix64's finaliser
    value += 0x9e3779b97f4a7c15ull;
    value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9ull;
    value = (value ^ (value >> 27)) * 0x94d049bb133111ebull;
    return value ^ (value >> 31);
}

std::uint64_t fnv1a(std::span<const std::byte> bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (std::byte byte : bytes) hash = (hash ^ static_cast<std::uint64_t>(byte)) * 0x100000001b3ull;
    return hash;
}

// Sizes: a tenth shorter than the head (0 included), the rest up to three times the ring's payload, a
// quarter of them longer than the ring itself, so that they stream through it.
std::size_t stream_message_size(std::uint64_t seed, std::uint64_t sequence, std::size_t ring_slots) {
    const std::uint64_t draw = mix64(seed * 0x100000001b3ull + sequence);
    const std::size_t ring_payload = ring_slots * mproc::detail::kPipeChunkPayload;
    const std::uint64_t pick = draw % 100;
    const std::uint64_t spread = draw >> 8;
    if (pick < 10) return spread % sizeof(StreamHead);
    if (pick < 45) return sizeof(StreamHead) + spread % 400;
    if (pick < 75) return sizeof(StreamHead) + spread % (2 * mproc::detail::kPipeChunkPayload + 100);
    return ring_payload + 1 + spread % (2 * ring_payload);
}

std::vector<std::byte> stream_message(std::uint64_t seed, std::uint64_t sequence, std::size_t ring_slots) {
    const std::size_t size = stream_message_size(seed, sequence, ring_slots);
    std::vector<std::byte> bytes(size);
    const std::size_t body = size >= sizeof(StreamHead) ? sizeof(StreamHead) : 0;
    std::uint64_t state = mix64(seed ^ (sequence << 20));
    for (std::size_t offset = body; offset < size; offset += 8) {
        state = mix64(state);
        std::memcpy(bytes.data() + offset, &state, std::min<std::size_t>(8, size - offset));
    }
    if (body != 0) {
        const StreamHead head{sequence, size, fnv1a(std::span(bytes).subspan(body))};
        std::memcpy(bytes.data(), &head, sizeof head);
    }
    return bytes;
}

// "" when `got` is message `sequence` of the stream, else what is wrong with it.
std::string stream_message_error(std::uint64_t seed, std::uint64_t sequence, std::size_t ring_slots,
                                 const std::vector<std::byte>& got) {
    const std::vector<std::byte> expected = stream_message(seed, sequence, ring_slots);
    if (got == expected) return "";
    std::string error = "message " + std::to_string(sequence) + " (" + std::to_string(expected.size()) +
                        " bytes) arrived as " + std::to_string(got.size()) + " bytes";
    if (got.size() >= sizeof(StreamHead)) {
        StreamHead head;
        std::memcpy(&head, got.data(), sizeof head);
        const bool checksum_holds = head.checksum == fnv1a(std::span(got).subspan(sizeof head));
        error += " headed as message " + std::to_string(head.sequence) + " of " + std::to_string(head.size) +
                 " bytes, checksum " + (checksum_holds ? "holding" : "broken");
    }
    return error;
}

// Sends `count` messages of stream `seed`; "" when every send returned, else why one threw.
std::string send_stream(PipeConnection& end, std::uint64_t seed, std::uint64_t count, std::size_t ring_slots) {
    try {
        for (std::uint64_t sequence = 0; sequence < count; ++sequence)
            end.send_bytes(bytes_of(stream_message(seed, sequence, ring_slots)));
    } catch (const std::exception& error) {
        return std::string("send: ") + error.what();
    }
    return "";
}

// Receives `count` messages of stream `seed`; "" when each was the expected one, else the first error. A
// wrong message does not stop it (the sender must not be left blocked on a full ring); a throwing receive
// does.
std::string receive_stream(PipeConnection& end, std::uint64_t seed, std::uint64_t count, std::size_t ring_slots) {
    std::string first_error;
    try {
        for (std::uint64_t sequence = 0; sequence < count; ++sequence) {
            const std::string error = stream_message_error(seed, sequence, ring_slots, end.recv_bytes());
            if (first_error.empty()) first_error = error;
        }
    } catch (const std::exception& error) {
        if (first_error.empty()) first_error = std::string("receive: ") + error.what();
    }
    return first_error;
}

// One side of a duplex stream: sends stream `send_seed` on a thread of its own while it receives stream
// `receive_seed`.
void stream_both_ways(PipeConnection& end, std::uint64_t send_seed, std::uint64_t receive_seed, std::uint64_t count,
                      std::size_t ring_slots) {
    std::string send_error;
    std::thread sender([&] { send_error = send_stream(end, send_seed, count, ring_slots); });
    const std::string receive_error = receive_stream(end, receive_seed, count, ring_slots);
    sender.join();
    const std::string where = "end " + std::to_string(end.end_index()) + ", ring of " + std::to_string(ring_slots) +
                              " slots";
    CPPUNIT_ASSERT_EQUAL_MESSAGE(where, std::string(), send_error);
    CPPUNIT_ASSERT_EQUAL_MESSAGE(where, std::string(), receive_error);
}

constexpr std::uint64_t kStressMessages = kSanitized ? 600 : 4000;
constexpr std::size_t kStressRingSlots[] = {2, 16};
constexpr auto kStressDeadline = 120s;  // a hang in either direction fails the test instead of stalling it

class PipeStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(PipeStressTest);
    CPPUNIT_TEST(testDuplexStreamsBothWaysAtOnceAcrossProcesses);
    CPPUNIT_TEST(testDuplexStreamsBothWaysAtOnceThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    // Two processes each send on one thread while they receive on another: both rings full and both sides
    // asleep on them at once, over and over.
    void testDuplexStreamsBothWaysAtOnceAcrossProcesses() {
        for (std::size_t ring_slots : kStressRingSlots) {
            auto ends = mproc::Pipe(true, ring_slots);
            mproc::test::run_in_processes(
                2,
                [&](int side) {
                    PipeConnection& end = side == 0 ? ends.first : ends.second;
                    end.adopt();
                    stream_both_ways(end, 10 + side, 11 - side, kStressMessages, ring_slots);
                },
                kStressDeadline);
            // Nothing more than the streams was delivered: both rings are empty now.
            CPPUNIT_ASSERT(!ends.first.poll(0ns));
            CPPUNIT_ASSERT(!ends.second.poll(0ns));
        }
    }

    // The same with two threads per end in one process (ThreadSanitizer checks the rings and the wake-ups),
    // inside a child so that a hang ends at the deadline.
    void testDuplexStreamsBothWaysAtOnceThreads() {
        for (std::size_t ring_slots : kStressRingSlots) {
            auto ends = mproc::Pipe(true, ring_slots);
            mproc::test::run_in_processes(
                1,
                [&](int) {
                    mproc::test::run_in_threads(2, [&](int side) {
                        PipeConnection& end = side == 0 ? ends.first : ends.second;
                        stream_both_ways(end, 20 + side, 21 - side, kStressMessages, ring_slots);
                    });
                    CPPUNIT_ASSERT(!ends.first.poll(0ns));
                    CPPUNIT_ASSERT(!ends.second.poll(0ns));
                },
                kStressDeadline);
        }
    }
};

// ---------------------------------------------------------------------------------------------------------
// Exec'd peers. A test that needs a process which did not fork from its own (no inherited mapping, handle,
// robust list or memory) runs this very binary again with MPROC_PIPE_TEST_PEER=ROLE in its environment;
// the role runs before main() and ends the process: exit 0 when it did its part, 3 after an unexpected
// exception (printed on stderr). Parameters come in MPROC_PIPE_TEST_NAME / _FD / _SEED / _SLOTS.

std::string peer_parameter(const char* key) {
    const char* value = std::getenv(key);
    return value == nullptr ? std::string() : std::string(value);
}

// Echoes every message until end of stream.
void echo_until_closed(PipeConnection& end) {
    for (;;) {
        std::vector<std::byte> message;
        try {
            message = end.recv_bytes();
        } catch (const mproc::Closed&) {
            return;
        }
        end.send_bytes(bytes_of(message));
    }
}

std::vector<std::byte> text_bytes(const std::string& text) {
    std::vector<std::byte> bytes(text.size());
    std::memcpy(bytes.data(), text.data(), text.size());
    return bytes;
}

int run_peer_role(const std::string& role) {
    const std::string name = peer_parameter("MPROC_PIPE_TEST_NAME");
    try {
        if (role == "echo") {  // the opener of a named pipe, echoing
            PipeConnection end = mproc::Pipe::open(name);
            echo_until_closed(end);
        } else if (role == "hold") {  // the opener, saying so, then waiting to be killed
            PipeConnection end = mproc::Pipe::open(name);
            end.send_bytes(bytes_of(text_bytes("opened")));
            for (;;) ::pause();
        } else if (role == "create-hold") {  // a creator that sends, then waits to be killed
            PipeConnection end = mproc::Pipe::create(name);
            end.send_bytes(bytes_of(text_bytes("created")));
            for (;;) ::pause();
        } else if (role == "create-send-die") {  // a creator that sends, then is SIGKILLed before any open
            PipeConnection end = mproc::Pipe::create(name);
            end.send_bytes(bytes_of(text_bytes("left behind")));
            ::raise(SIGKILL);
        } else if (role == "fd-echo") {  // end 1 of an anonymous pipe, from an inherited descriptor
            const int fd = std::stoi(peer_parameter("MPROC_PIPE_TEST_FD"));
            PipeConnection end = PipeConnection::from_fd(fd, 1);
            ::close(fd);  // from_fd holds its own duplicate
            end.send_bytes(bytes_of(text_bytes("attached")));
            echo_until_closed(end);
        } else if (role == "stream-send" || role == "stream-recv") {  // crash suite: streams until killed
            const std::uint64_t seed = std::stoull(peer_parameter("MPROC_PIPE_TEST_SEED"));
            const std::size_t slots = std::stoul(peer_parameter("MPROC_PIPE_TEST_SLOTS"));
            PipeConnection end = mproc::Pipe::open(name);
            for (std::uint64_t sequence = 0;; ++sequence) {
                if (role == "stream-send") end.send_bytes(bytes_of(stream_message(seed, sequence, slots)));
                else (void)end.recv_bytes();
            }
        } else {
            std::fprintf(stderr, "pipe_test peer: unknown role '%s'\n", role.c_str());
            return 2;
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "pipe_test peer %s: %s\n", role.c_str(), error.what());
        return 3;
    }
    return 0;
}

// Before main(): an exec'd peer does its part and never reaches the test runner.
[[maybe_unused]] const int kPeerRoleRan = [] {
    if (const char* role = std::getenv("MPROC_PIPE_TEST_PEER")) {
        const int status = run_peer_role(role);
        std::fflush(nullptr);
        std::_Exit(status);
    }
    return 0;
}();

// Runs this binary as peer `role` with the given MPROC_PIPE_TEST_* parameters; `fd`, when not -1, is
// inherited (a copy without close-on-exec) and named in MPROC_PIPE_TEST_FD.
std::unique_ptr<ForkedChild> exec_peer(const std::string& role, const std::vector<std::pair<std::string, std::string>>& parameters,
                                       int fd = -1) {
    std::vector<std::string> environment;
    for (char** entry = environ; *entry != nullptr; ++entry) environment.emplace_back(*entry);
    environment.push_back("MPROC_PIPE_TEST_PEER=" + role);
    for (const auto& [key, value] : parameters) environment.push_back("MPROC_PIPE_TEST_" + key + "=" + value);
    const std::size_t fd_entry = environment.size();
    environment.emplace_back();  // MPROC_PIPE_TEST_FD, filled in the child
    std::vector<char*> envp;
    return std::make_unique<ForkedChild>([&] {
        if (fd >= 0) {
            const int inherited = ::dup(fd);  // dup() clears close-on-exec on the copy
            environment[fd_entry] = "MPROC_PIPE_TEST_FD=" + std::to_string(inherited);
        }
        for (std::string& entry : environment)
            if (!entry.empty()) envp.push_back(entry.data());
        envp.push_back(nullptr);
        char* argv[] = {const_cast<char*>("pipe_test"), const_cast<char*>("peer"), nullptr};
        ::execve("/proc/self/exe", argv, envp.data());
        std::_Exit(127);
    });
}

// Removes a test's names however the test ends.
struct NamesUnlinked {
    std::vector<std::string> names;
    ~NamesUnlinked() {
        for (const std::string& name : names) ::shm_unlink(name.c_str());
    }
    std::string add(const std::string& tag) { return names.emplace_back(mproc::test::unique_name(tag)); }
};

// A writable view of a named object's whole file (header and payload), as any process of the user could
// map it, to play the hostile peer.
struct HostileView {
    explicit HostileView(const std::string& name) {
        const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
        CPPUNIT_ASSERT_MESSAGE("shm_open " + name, fd >= 0);
        struct stat info {};
        CPPUNIT_ASSERT(::fstat(fd, &info) == 0);
        size = static_cast<std::size_t>(info.st_size);
        memory = static_cast<std::byte*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        ::close(fd);
        CPPUNIT_ASSERT(memory != MAP_FAILED);
    }
    ~HostileView() { ::munmap(memory, size); }
    HostileView(const HostileView&) = delete;
    HostileView& operator=(const HostileView&) = delete;
    mproc::detail::PipeHeaderLine& header() const {
        return *reinterpret_cast<mproc::detail::PipeHeaderLine*>(memory + mproc::kObjectHeaderSize);
    }
    mproc::detail::RingConstants& ring_constants(int ring) const {
        return *reinterpret_cast<mproc::detail::RingConstants*>(memory + mproc::kObjectHeaderSize +
                                                                header().ring_offset[ring]);
    }
    std::byte* memory = nullptr;
    std::size_t size = 0;
};

void assert_exit_status(ForkedChild& child, int expected) {
    const int status = child.wait(60s);
    CPPUNIT_ASSERT_MESSAGE("peer status " + std::to_string(status),
                           WIFEXITED(status) && WEXITSTATUS(status) == expected);
}

// Sizes that cross the ring of the named tests' pipes (4 slots: 8 KiB) several times.
const std::vector<std::size_t> kNamedSizes = {0, 1, 2032, 2033, 9000, 100000, 1u << 20};

class NamedPipeUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(NamedPipeUnitTest);
    CPPUNIT_TEST(testNamedPipeCarriesMessagesBothWaysBetweenUnrelatedProcesses);
    CPPUNIT_TEST(testKilledOpenerGivesTheCreatorEndOfStreamAndBrokenPipe);
    CPPUNIT_TEST(testKilledCreatorGivesTheOpenerEndOfStream);
    CPPUNIT_TEST(testCreatorDeadBeforeOpenLeavesItsMessagesThenEndOfStream);
    CPPUNIT_TEST(testCreatorWaitsForItsOpenerWithoutSeeingItGone);
    CPPUNIT_TEST(testSecondOpenerIsRefusedWhileEndOneIsHeldAndOnceItIsGone);
    CPPUNIT_TEST(testOpeningAMissingNameIsENOENTAndAnotherKindIsInvalidObject);
    CPPUNIT_TEST(testHostileSegmentIsRefusedAtOpen);
    CPPUNIT_TEST(testSizesRewrittenAfterOpenAreNotReadAgain);
    CPPUNIT_TEST(testOwnTidPlantedInAHolderWordIsNotTakenForTheOpenersHold);
    CPPUNIT_TEST(testCreateOnATakenNameIsEEXISTAndUnlinkRemovesTheName);
    CPPUNIT_TEST(testFromFdRoundTripInTheSameProcess);
    CPPUNIT_TEST(testFromFdAcrossExecMakesThePeerAHolder);
    CPPUNIT_TEST(testFromFdRefusesBadInput);
    CPPUNIT_TEST_SUITE_END();

public:
    void testNamedPipeCarriesMessagesBothWaysBetweenUnrelatedProcesses() {
        NamesUnlinked names;
        const std::string name = names.add("named-echo");
        PipeConnection creator = mproc::Pipe::create(name, true, 4);
        CPPUNIT_ASSERT_EQUAL(0, creator.end_index());
        CPPUNIT_ASSERT_EQUAL(name, creator.name());
        CPPUNIT_ASSERT_EQUAL(-1, creator.fd());
        auto peer = exec_peer("echo", {{"NAME", name}});
        for (std::size_t size : kNamedSizes) {
            creator.send_bytes(bytes_of(pattern(size, 3)));
            CPPUNIT_ASSERT(creator.recv_bytes() == pattern(size, 3));
        }
        CPPUNIT_ASSERT(!creator.peer_gone());
        creator.close();  // the peer sees end of stream and exits 0
        assert_exit_status(*peer, 0);
    }

    void testKilledOpenerGivesTheCreatorEndOfStreamAndBrokenPipe() {
        NamesUnlinked names;
        const std::string name = names.add("named-kill-opener");
        PipeConnection creator = mproc::Pipe::create(name, true, 4);
        auto peer = exec_peer("hold", {{"NAME", name}});
        CPPUNIT_ASSERT(creator.recv_bytes() == text_bytes("opened"));
        CPPUNIT_ASSERT(!creator.peer_gone());
        std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            peer->kill(SIGKILL);
        });
        // poll, bounded, first: a death that is never seen fails here instead of hanging the suite.
        bool woken = false;
        const auto blocked = elapsed_of([&] { woken = creator.poll(5s); });
        killer.join();  // before any assertion: a failure must not leave the thread joinable
        CPPUNIT_ASSERT_MESSAGE("the opener's death was not seen within 5 s", woken);
        CPPUNIT_ASSERT_MESSAGE("woken " + std::to_string(blocked.count()) + " ms after the call",
                               blocked >= 90ms && blocked < 2000ms);
        CPPUNIT_ASSERT(creator.peer_gone());
        CPPUNIT_ASSERT_THROW(creator.recv_bytes(), mproc::Closed);
        try {
            creator.send_bytes(bytes_of(pattern(1)));
            CPPUNIT_FAIL("a send to a dead opener must throw");
        } catch (const mproc::BrokenPipe& error) {
            CPPUNIT_ASSERT_EQUAL(EPIPE, error.error_number());
        }
        peer->wait();
    }

    void testKilledCreatorGivesTheOpenerEndOfStream() {
        NamesUnlinked names;
        const std::string name = names.add("named-kill-creator");
        auto peer = exec_peer("create-hold", {{"NAME", name}});
        std::optional<PipeConnection> opener;
        wait_for(
            [&] {
                try {
                    opener.emplace(mproc::Pipe::open(name));
                    return true;
                } catch (const mproc::SystemError& error) {
                    if (error.error_number() != ENOENT) throw;
                    return false;  // not created yet
                }
            },
            "the exec'd creator's name");
        CPPUNIT_ASSERT_EQUAL(1, opener->end_index());
        CPPUNIT_ASSERT(opener->recv_bytes() == text_bytes("created"));
        CPPUNIT_ASSERT(!opener->peer_gone());
        std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            peer->kill(SIGKILL);
        });
        bool woken = false;
        const auto blocked = elapsed_of([&] { woken = opener->poll(5s); });
        killer.join();  // before any assertion: a failure must not leave the thread joinable
        CPPUNIT_ASSERT_MESSAGE("the creator's death was not seen within 5 s", woken);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(blocked.count()) + " ms", blocked >= 90ms && blocked < 2000ms);
        CPPUNIT_ASSERT(opener->peer_gone());
        CPPUNIT_ASSERT_THROW(opener->recv_bytes(), mproc::Closed);
        CPPUNIT_ASSERT_THROW(opener->send_bytes(bytes_of(pattern(1))), mproc::BrokenPipe);
        peer->wait();
    }

    void testCreatorDeadBeforeOpenLeavesItsMessagesThenEndOfStream() {
        // The creator is SIGKILLed while blocked in nothing, before anyone opened; the name stays.
        NamesUnlinked names;
        const std::string name = names.add("named-dead-creator");
        auto peer = exec_peer("create-send-die", {{"NAME", name}});
        const int status = peer->wait(60s);
        CPPUNIT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        PipeConnection opener = mproc::Pipe::open(name, 0ms);  // published before the death: no wait
        CPPUNIT_ASSERT(opener.poll(0ns));
        CPPUNIT_ASSERT(opener.recv_bytes() == text_bytes("left behind"));
        const auto waited = elapsed_of([&] { CPPUNIT_ASSERT_THROW(opener.recv_bytes(), mproc::Closed); });
        CPPUNIT_ASSERT(waited < 1000ms);
        opener.unlink();
        CPPUNIT_ASSERT_THROW(mproc::Pipe::open(name, 0ms), mproc::SystemError);
    }

    void testCreatorWaitsForItsOpenerWithoutSeeingItGone() {
        NamesUnlinked names;
        const std::string name = names.add("named-await");
        PipeConnection creator = mproc::Pipe::create(name, true, 2);
        CPPUNIT_ASSERT(!creator.peer_gone());
        const auto waited = elapsed_of([&] { CPPUNIT_ASSERT(!creator.poll(100ms)); });
        CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited >= 90ms && waited < 2000ms);
        // Sends fill the ring (2 slots) before anyone opened; a third chunk waits for the opener.
        creator.send_bytes(bytes_of(pattern(2 * mproc::detail::kPipeChunkPayload, 4)));
        std::thread sleeper([&] { creator.send_bytes(bytes_of(pattern(5, 4))); });
        std::this_thread::sleep_for(50ms);
        auto peer = exec_peer("echo", {{"NAME", name}});
        sleeper.join();
        CPPUNIT_ASSERT(creator.recv_bytes() == pattern(2 * mproc::detail::kPipeChunkPayload, 4));
        CPPUNIT_ASSERT(creator.recv_bytes() == pattern(5, 4));
        creator.close();
        assert_exit_status(*peer, 0);
    }

    void testSecondOpenerIsRefusedWhileEndOneIsHeldAndOnceItIsGone() {
        NamesUnlinked names;
        const std::string name = names.add("named-second");
        PipeConnection creator = mproc::Pipe::create(name);
        auto peer = exec_peer("hold", {{"NAME", name}});
        CPPUNIT_ASSERT(creator.recv_bytes() == text_bytes("opened"));
        try {
            (void)mproc::Pipe::open(name);
            CPPUNIT_FAIL("a second opener must be refused");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EBUSY, error.error_number());
            assert_contains(error.what(), "pipe '" + name + "': open: end 1 is held");
        }
        CPPUNIT_ASSERT(!creator.peer_gone());  // the refused opener took nothing away
        peer->kill(SIGKILL);
        peer->wait();
        CPPUNIT_ASSERT(creator.poll(5s));
        CPPUNIT_ASSERT(creator.peer_gone());
        assert_contains(message_of<mproc::StateError>([&] { (void)mproc::Pipe::open(name); }),
                        "end 1 was opened and is gone");
        CPPUNIT_ASSERT_THROW(creator.recv_bytes(), mproc::Closed);
    }

    void testOpeningAMissingNameIsENOENTAndAnotherKindIsInvalidObject() {
        NamesUnlinked names;
        const std::string missing = names.add("named-missing");
        try {
            (void)mproc::Pipe::open(missing);
            CPPUNIT_FAIL("a missing name must throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
        const std::string plain = names.add("named-plain");
        mproc::SharedMemory segment = mproc::SharedMemory::create(plain, 4096);
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)mproc::Pipe::open(plain); }), "pipe '" + plain);
        CPPUNIT_ASSERT_THROW(mproc::Pipe::open("no/slash/allowed"), mproc::ValueError);
    }

    void testHostileSegmentIsRefusedAtOpen() {
        NamesUnlinked names;
        const std::string name = names.add("named-hostile");
        PipeConnection creator = mproc::Pipe::create(name, true, 2);
        HostileView view(name);
        mproc::detail::PipeHeaderLine& header = view.header();
        // Each rewrite is refused with a message naming the pipe and the cause; then restored.
        const auto refused = [&](auto rewrite, const std::string& cause) {
            const std::vector<std::byte> saved(view.memory, view.memory + view.size);
            rewrite();
            const std::string message = message_of<mproc::InvalidObject>([&] { (void)mproc::Pipe::open(name, 0ms); });
            assert_contains(message, "pipe '" + name + "'");
            assert_contains(message, cause);
            std::memcpy(view.memory, saved.data(), saved.size());
        };
        refused([&] { header.magic = 0x12345678; }, "pipe magic");
        refused([&] { header.layout_version = 99; }, "pipe layout version 99");
        refused([&] { header.ring_count = 3; }, "3 rings");
        refused([&] { header.ring_count = 0; }, "0 rings");
        refused([&] { header.ring_size = 1ull << 62; }, "do not fit");
        refused([&] { header.ring_size = header.ring_size + 1; }, "do not fit");
        refused([&] { header.total_size = 1ull << 40; }, "the pipe says");
        refused([&] { header.ring_offset[1] = 1ull << 62; }, "ring 1 at offset");
        refused([&] { view.ring_constants(1).slot_size = 64; }, "");
        refused([&] { std::memset(&view.ring_constants(0), 0xa5, sizeof(mproc::detail::RingConstants)); }, "");
        // The object header says pipe, the payload is garbage, or too short to hold a pipe.
        const std::string garbage = names.add("named-garbage");
        (void)mproc::SharedMemory::create_object(
            garbage, mproc::ObjectKind::pipe, mproc::current_layout_version(mproc::ObjectKind::pipe), 8192, 0600,
            [](std::span<std::byte> payload) {
                for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 131 + 7);
            });
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)mproc::Pipe::open(garbage); }), "pipe magic");
        const std::string tiny = names.add("named-tiny");
        (void)mproc::SharedMemory::create_object(tiny, mproc::ObjectKind::pipe,
                                                 mproc::current_layout_version(mproc::ObjectKind::pipe), 64, 0600, {});
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)mproc::Pipe::open(tiny); }), "cannot hold");
        // None of the refused opens took end 1: the real opener still can.
        PipeConnection opener = mproc::Pipe::open(name);
        opener.send_bytes(bytes_of(pattern(7)));
        CPPUNIT_ASSERT(creator.recv_bytes() == pattern(7));
    }

    void testSizesRewrittenAfterOpenAreNotReadAgain() {
        NamesUnlinked names;
        const std::string name = names.add("named-rewritten");
        PipeConnection creator = mproc::Pipe::create(name, true, 2);
        PipeConnection opener = mproc::Pipe::open(name);
        HostileView view(name);
        for (int ring : {0, 1}) {  // before the header: ring_constants() finds the rings through it
            view.ring_constants(ring).slot_size = 1u << 24;
            view.ring_constants(ring).slot_stride = 1;
            view.ring_constants(ring).capacity = 1ull << 40;
        }
        view.header().ring_count = 1;
        view.header().ring_size = 1ull << 62;
        view.header().ring_offset[0] = view.header().ring_offset[1] = 1ull << 62;
        view.header().total_size = 0;
        CPPUNIT_ASSERT(opener.writable() && opener.readable());
        for (std::size_t size : {std::size_t(0), std::size_t(3000), std::size_t(20000)}) {
            std::thread sender([&] { opener.send_bytes(bytes_of(pattern(size, 5))); });
            CPPUNIT_ASSERT(creator.recv_bytes() == pattern(size, 5));
            sender.join();
            std::thread back([&] { creator.send_bytes(bytes_of(pattern(size, 6))); });
            CPPUNIT_ASSERT(opener.recv_bytes() == pattern(size, 6));
            back.join();
        }
    }

    // A hostile peer writes the opener's own TID into a holder word of end 1 before the opener maps the pipe:
    // that word is no hold of the opener's (its node is in no list of the opener's), so close() must release
    // the word the opener claimed, and never unlink the planted one (its links are the peer's bytes).
    void testOwnTidPlantedInAHolderWordIsNotTakenForTheOpenersHold() {
        NamesUnlinked names;
        const std::string name = names.add("named-planted");
        PipeConnection creator = mproc::Pipe::create(name, true, 2);
        HostileView view(name);
        auto& end1 = reinterpret_cast<mproc::detail::PipeControl*>(view.memory + mproc::kObjectHeaderSize)->ends[1];
        const auto self = static_cast<std::uint32_t>(::gettid());
        // relaxed: this thread alone uses the words until open() below.
        std::atomic_ref(end1.holders[0].word).store(self | FUTEX_WAITERS, std::memory_order_relaxed);
        end1.holders[0].robust_prev = 0x10;  // links no list holds: following them would fault
        end1.holders[0].robust_next = 0x20;
        PipeConnection opener = mproc::Pipe::open(name);
        // relaxed (these loads): this thread wrote the words.
        CPPUNIT_ASSERT_EQUAL(self | FUTEX_WAITERS, std::atomic_ref(end1.holders[1].word).load(std::memory_order_relaxed));
        opener.send_bytes(bytes_of(pattern(3)));
        CPPUNIT_ASSERT(creator.recv_bytes() == pattern(3));
        opener.close();
        CPPUNIT_ASSERT_EQUAL(0u, std::atomic_ref(end1.holders[1].word).load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(self | FUTEX_WAITERS, std::atomic_ref(end1.holders[0].word).load(std::memory_order_relaxed));
        // This thread's robust list is still sound: a new pipe's holds link and unlink through it.
        auto fresh = mproc::Pipe();
        fresh.first.close();
        fresh.second.close();
    }

    void testCreateOnATakenNameIsEEXISTAndUnlinkRemovesTheName() {
        NamesUnlinked names;
        const std::string name = names.add("named-taken");
        PipeConnection creator = mproc::Pipe::create(name, false, 2);
        CPPUNIT_ASSERT(creator.readable() && !creator.writable());  // one-way: the creator reads
        try {
            (void)mproc::Pipe::create(name);
            CPPUNIT_FAIL("an exclusive create on a taken name must throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EEXIST, error.error_number());
        }
        CPPUNIT_ASSERT_THROW(mproc::Pipe::create(name, true, 3), mproc::ValueError);  // checked before the name
        PipeConnection opener = mproc::Pipe::open(name);
        CPPUNIT_ASSERT(!opener.readable() && opener.writable());
        opener.unlink();
        CPPUNIT_ASSERT_THROW(mproc::Pipe::open(name, 0ms), mproc::SystemError);
        try {
            creator.unlink();
            CPPUNIT_FAIL("a second unlink must throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
        opener.send_bytes(bytes_of(pattern(9)));  // the ends work on after the name is gone
        CPPUNIT_ASSERT(creator.recv_bytes() == pattern(9));
        auto anonymous = mproc::Pipe();
        CPPUNIT_ASSERT_THROW(anonymous.first.unlink(), mproc::StateError);
        CPPUNIT_ASSERT(anonymous.first.name().empty());
    }

    void testFromFdRoundTripInTheSameProcess() {
        auto ends = mproc::Pipe(true, 4);
        auto& left = ends.first;
        auto& right = ends.second;
        CPPUNIT_ASSERT(left.fd() >= 0);
        CPPUNIT_ASSERT_EQUAL(left.fd(), right.fd());
        PipeConnection again = PipeConnection::from_fd(left.fd(), 1);
        CPPUNIT_ASSERT_EQUAL(1, again.end_index());
        CPPUNIT_ASSERT(again.fd() >= 0 && again.fd() != left.fd());
        for (std::size_t size : kNamedSizes) {
            std::thread sender([&] { left.send_bytes(bytes_of(pattern(size, 7))); });
            CPPUNIT_ASSERT(again.recv_bytes() == pattern(size, 7));
            sender.join();
        }
        again.send_bytes(bytes_of(pattern(11)));
        CPPUNIT_ASSERT(left.recv_bytes() == pattern(11));
        // from_fd mapped the segment again and took a hold of its own: the handles close independently.
        right.close();
        CPPUNIT_ASSERT(!left.peer_gone());
        again.send_bytes(bytes_of(pattern(12)));
        CPPUNIT_ASSERT(left.recv_bytes() == pattern(12));
        again.close();
        CPPUNIT_ASSERT(left.peer_gone());
        CPPUNIT_ASSERT_THROW(PipeConnection::from_fd(left.fd(), 1), mproc::StateError);
        // A one-way pipe's ends keep their directions through from_fd.
        auto one_way = mproc::Pipe(false, 2);
        PipeConnection reader = PipeConnection::from_fd(one_way.second.fd(), 0);
        CPPUNIT_ASSERT(reader.readable() && !reader.writable());
        PipeConnection writer = PipeConnection::from_fd(one_way.first.fd(), 1);
        CPPUNIT_ASSERT(!writer.readable() && writer.writable());
    }

    void testFromFdAcrossExecMakesThePeerAHolder() {
        auto ends = mproc::Pipe(true, 4);
        auto& parent = ends.first;
        auto& handed = ends.second;
        auto peer = exec_peer("fd-echo", {}, parent.fd());
        CPPUNIT_ASSERT(parent.recv_bytes() == text_bytes("attached"));
        handed.close();  // end 1 now lives only in the exec'd process
        CPPUNIT_ASSERT(!parent.peer_gone());
        for (std::size_t size : kNamedSizes) {
            parent.send_bytes(bytes_of(pattern(size, 8)));
            CPPUNIT_ASSERT(parent.recv_bytes() == pattern(size, 8));
        }
        std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            peer->kill(SIGKILL);
        });
        bool woken = false;
        const auto blocked = elapsed_of([&] { woken = parent.poll(5s); });
        killer.join();  // before any assertion: a failure must not leave the thread joinable
        CPPUNIT_ASSERT_MESSAGE("the exec'd holder's death was not seen within 5 s", woken);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(blocked.count()) + " ms", blocked >= 90ms && blocked < 2000ms);
        CPPUNIT_ASSERT_THROW(parent.recv_bytes(), mproc::Closed);
        CPPUNIT_ASSERT_THROW(parent.send_bytes(bytes_of(pattern(1))), mproc::BrokenPipe);
        peer->wait();
    }

    void testFromFdRefusesBadInput() {
        auto ends = mproc::Pipe();
        CPPUNIT_ASSERT_THROW(PipeConnection::from_fd(ends.first.fd(), 2), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(PipeConnection::from_fd(ends.first.fd(), -1), mproc::ValueError);
        try {
            (void)PipeConnection::from_fd(-1, 0);
            CPPUNIT_FAIL("a bad descriptor must throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EBADF, error.error_number());
        }
        mproc::SharedMemory plain = mproc::SharedMemory::anonymous(4096);
        CPPUNIT_ASSERT_THROW(PipeConnection::from_fd(plain.fd(), 0), mproc::InvalidObject);
        // A pipe-kind memfd whose payload is not a pipe.
        mproc::SharedMemory bogus = mproc::SharedMemory::anonymous_object(
            mproc::ObjectKind::pipe, mproc::current_layout_version(mproc::ObjectKind::pipe), 4096,
            [](std::span<std::byte> payload) { std::memset(payload.data(), 0x5a, payload.size()); });
        CPPUNIT_ASSERT_THROW(PipeConnection::from_fd(bogus.fd(), 0), mproc::InvalidObject);
        ends.first.close();
        CPPUNIT_ASSERT_EQUAL(-1, ends.first.fd());
    }
};

// ---------------------------------------------------------------------------------------------------------
// Crash suite. Each round: a sender child streams to a receiver child (each adopted its end; the parent then
// closed its copies, so each end lives only in its child), and the parent SIGKILLs one of them at a random
// moment. The survivor must end on its own, within kSurvivorBound of the kill:
// - receiver survivor: every message it got was the next one of the stream, whole (none lost, duplicated,
//   reordered or corrupted); it got every message whose send_bytes returned, and nothing beyond the one in
//   flight; then Closed (again on the next receive), or SystemError(EPROTO) — the end then closed for
//   reading — exactly when the kill cut a message: nothing of the message in flight was delivered.
// - sender survivor: BrokenPipe(EPIPE) from send_bytes, no signal, no hang, having sent at least what the
//   receiver got.

enum class StreamEnd : int {
    none = 0,
    closed = 1,          // receiver: Closed
    cut_message = 2,     // receiver: SystemError(EPROTO)
    broken_pipe = 3,     // sender: BrokenPipe(EPIPE)
    wrong = 4,           // anything else: see CrashBoard::error
};

struct CrashBoard {
    std::atomic<int> adopted{0};
    std::atomic<std::uint64_t> sends_started{0};    // message n's send_bytes was called: n + 1
    std::atomic<std::uint64_t> sends_completed{0};  // message n's send_bytes returned: n + 1
    std::atomic<std::uint64_t> received{0};         // messages received, each the expected one
    std::atomic<int> end{static_cast<int>(StreamEnd::none)};
    char error[512] = {};
};

constexpr auto kSurvivorBound = 5s;

void record_wrong(CrashBoard& board, const std::string& error) {
    std::snprintf(board.error, sizeof board.error, "%s", error.c_str());
    // relaxed (all the board's counters and `end`): the parent reads them after waitpid() on both children,
    // which orders every store a child made before it ended.
    board.end.store(static_cast<int>(StreamEnd::wrong), std::memory_order_relaxed);
}

[[noreturn]] void crash_sender(PipeConnection& end, CrashBoard& board, std::uint64_t seed, std::size_t ring_slots) {
    end.adopt();
    // release: pairs with the parent's acquire load; the holder word adopt() wrote is visible before the
    // parent closes its own copy of the end.
    board.adopted.fetch_add(1, std::memory_order_release);
    try {
        for (std::uint64_t sequence = 0;; ++sequence) {
            const std::vector<std::byte> message = stream_message(seed, sequence, ring_slots);
            board.sends_started.store(sequence + 1, std::memory_order_relaxed);  // relaxed: see record_wrong()
            end.send_bytes(bytes_of(message));
            board.sends_completed.store(sequence + 1, std::memory_order_relaxed);
        }
    } catch (const mproc::BrokenPipe& error) {
        if (error.error_number() == EPIPE) board.end.store(static_cast<int>(StreamEnd::broken_pipe), std::memory_order_relaxed);
        else record_wrong(board, std::string("BrokenPipe with errno ") + std::to_string(error.error_number()));
    } catch (const std::exception& error) {
        record_wrong(board, std::string("sender: ") + error.what());
    }
    std::_Exit(0);
}

[[noreturn]] void crash_receiver(PipeConnection& end, CrashBoard& board, std::uint64_t seed, std::size_t ring_slots) {
    end.adopt();
    board.adopted.fetch_add(1, std::memory_order_release);  // release: as in crash_sender()
    try {
        for (std::uint64_t sequence = 0;; ++sequence) {
            const std::string error = stream_message_error(seed, sequence, ring_slots, end.recv_bytes());
            if (!error.empty()) {
                record_wrong(board, error);
                std::_Exit(0);
            }
            board.received.store(sequence + 1, std::memory_order_relaxed);  // relaxed: see record_wrong()
        }
    } catch (const mproc::Closed&) {
        try {
            end.recv_bytes();
            record_wrong(board, "a receive after Closed returned a message");
        } catch (const mproc::Closed&) {
            board.end.store(static_cast<int>(StreamEnd::closed), std::memory_order_relaxed);
        } catch (const std::exception& error) {
            record_wrong(board, std::string("a receive after Closed: ") + error.what());
        }
    } catch (const mproc::SystemError& error) {
        if (error.error_number() != EPROTO) record_wrong(board, std::string("receiver: ") + error.what());
        else if (end.readable()) record_wrong(board, "after EPROTO the end is still readable");
        else board.end.store(static_cast<int>(StreamEnd::cut_message), std::memory_order_relaxed);
    } catch (const std::exception& error) {
        record_wrong(board, std::string("receiver: ") + error.what());
    }
    std::_Exit(0);
}

struct CrashTally {
    int rounds = 0;
    int ends[5] = {};
    std::uint64_t messages = 0;
};

void crash_round(std::mt19937& random, CrashTally& tally) {
    const std::size_t ring_slots = std::size_t{2} << std::uniform_int_distribution<int>(0, 3)(random);
    const bool duplex = std::uniform_int_distribution<int>(0, 1)(random) == 1;
    const std::uint64_t seed = random();
    const bool kill_sender = std::uniform_int_distribution<int>(0, 1)(random) == 1;
    const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(random));
    const std::string round = "round " + std::to_string(tally.rounds) + " (ring of " + std::to_string(ring_slots) +
                              " slots, " + (duplex ? "duplex" : "one-way") + ", " +
                              (kill_sender ? "sender" : "receiver") + " killed after " +
                              std::to_string(delay.count()) + " us)";

    Shared<CrashBoard> board;
    auto ends = mproc::Pipe(duplex, ring_slots);  // end 0 reads, end 1 writes (also when duplex)
    auto& read_end = ends.first;
    auto& write_end = ends.second;
    ForkedChild receiver([&] { crash_receiver(read_end, *board, seed, ring_slots); });
    ForkedChild sender([&] { crash_sender(write_end, *board, seed, ring_slots); });
    const auto give_up = Clock::now() + 10s;
    while (board->adopted.load(std::memory_order_acquire) < 2) {  // acquire: pairs with the children's adds
        CPPUNIT_ASSERT_MESSAGE(round + ": the children did not adopt their ends", Clock::now() < give_up);
        std::this_thread::sleep_for(50us);
    }
    read_end.close();  // each end now lives only in the child that adopted it
    write_end.close();
    std::this_thread::sleep_for(delay);
    ForkedChild& victim = kill_sender ? sender : receiver;
    ForkedChild& survivor = kill_sender ? receiver : sender;
    victim.kill(SIGKILL);
    const auto killed_at = Clock::now();
    int status = 0;
    try {
        status = survivor.wait(30s);
    } catch (const CppUnit::Exception& failure) {
        CPPUNIT_FAIL(round + ": the survivor hung: " + failure.what());
    }
    const auto took = Clock::now() - killed_at;
    victim.wait(30s);

    CPPUNIT_ASSERT_MESSAGE(round + ": the survivor ended with status " + std::to_string(status),
                           WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CPPUNIT_ASSERT_MESSAGE(round + ": the survivor took " +
                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) +
                               " ms to see the death",
                           took < kSurvivorBound);
    // relaxed (these four): read after waitpid() on both children (see record_wrong()).
    const auto end = static_cast<StreamEnd>(board->end.load(std::memory_order_relaxed));
    CPPUNIT_ASSERT_MESSAGE(round + ": " + board->error, end != StreamEnd::wrong);
    const std::uint64_t started = board->sends_started.load(std::memory_order_relaxed);
    const std::uint64_t completed = board->sends_completed.load(std::memory_order_relaxed);
    const std::uint64_t received = board->received.load(std::memory_order_relaxed);
    const std::string counts = round + ": sends started " + std::to_string(started) + ", completed " +
                               std::to_string(completed) + ", received " + std::to_string(received);
    if (kill_sender) {
        CPPUNIT_ASSERT_MESSAGE(counts + ", end " + std::to_string(static_cast<int>(end)),
                               end == StreamEnd::closed || end == StreamEnd::cut_message);
        CPPUNIT_ASSERT_MESSAGE(counts + ": a completed send was lost", received >= completed);
        CPPUNIT_ASSERT_MESSAGE(counts + ": more received than sent", received <= started);
        if (end == StreamEnd::cut_message)
            CPPUNIT_ASSERT_MESSAGE(counts + ": EPROTO without a message in flight",
                                   started == completed + 1 && received == completed);
    } else {
        CPPUNIT_ASSERT_MESSAGE(counts + ", end " + std::to_string(static_cast<int>(end)),
                               end == StreamEnd::broken_pipe);
        CPPUNIT_ASSERT_MESSAGE(counts, received <= completed);
    }
    ++tally.rounds;
    ++tally.ends[static_cast<int>(end)];
    tally.messages += received;
}

// A named round: this test's child creates the pipe (end 0) and execs the opener, which streams to it or
// receives from it until it is SIGKILLed at a random moment after it opened. The creator must then end as
// an anonymous pipe's survivor does: every message whole and in order, then Closed or EPROTO (the opener
// was sending), or BrokenPipe (it was receiving), within kSurvivorBound of the kill.
struct NamedCrashBoard {
    std::atomic<int> end{static_cast<int>(StreamEnd::none)};
    std::atomic<std::uint64_t> received{0};
};

void named_crash_round(std::mt19937& random, CrashTally& tally) {
    const std::size_t ring_slots = std::size_t{2} << std::uniform_int_distribution<int>(0, 3)(random);
    const std::uint64_t seed = random() % 1000000;
    const bool kill_sender = std::uniform_int_distribution<int>(0, 1)(random) == 1;
    const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(random));
    const std::string round = "named round " + std::to_string(tally.rounds) + " (ring of " +
                              std::to_string(ring_slots) + " slots, " + (kill_sender ? "sender" : "receiver") +
                              " killed " + std::to_string(delay.count()) + " us after it opened)";
    NamesUnlinked names;
    const std::string name = names.add("named-crash");
    Shared<NamedCrashBoard> board;
    mproc::test::run_in_processes(
        1,
        [&](int) {
            PipeConnection creator = mproc::Pipe::create(name, true, ring_slots);
            auto peer = exec_peer(kill_sender ? "stream-send" : "stream-recv",
                                  {{"NAME", name}, {"SEED", std::to_string(seed)}, {"SLOTS", std::to_string(ring_slots)}});
            wait_for(
                [&] {
                    for (mproc::detail::PipeHolder& holder : creator.peer_end()->holders)
                        // relaxed: a TID in a word says the opener took its hold; nothing else is read.
                        if ((std::atomic_ref(holder.word).load(std::memory_order_relaxed) & FUTEX_TID_MASK) != 0)
                            return true;
                    return false;
                },
                round + ": the opener's hold");
            std::atomic<std::int64_t> killed_at{0};
            std::thread killer([&] {
                std::this_thread::sleep_for(delay);
                // relaxed: read after join().
                killed_at.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
                peer->kill(SIGKILL);
            });
            StreamEnd end = StreamEnd::wrong;
            std::string error;
            std::uint64_t received = 0;
            try {
                if (kill_sender) {
                    for (;; ++received) {
                        error = stream_message_error(seed, received, ring_slots, creator.recv_bytes());
                        if (!error.empty()) break;
                    }
                } else {
                    for (std::uint64_t sequence = 0;; ++sequence)
                        creator.send_bytes(bytes_of(stream_message(seed, sequence, ring_slots)));
                }
            } catch (const mproc::Closed&) {
                end = kill_sender ? StreamEnd::closed : StreamEnd::wrong;
            } catch (const mproc::BrokenPipe& broken) {
                end = !kill_sender && broken.error_number() == EPIPE ? StreamEnd::broken_pipe : StreamEnd::wrong;
            } catch (const mproc::SystemError& failure) {
                end = kill_sender && failure.error_number() == EPROTO && !creator.readable() ? StreamEnd::cut_message
                                                                                            : StreamEnd::wrong;
                error = failure.what();
            }
            const auto ended_at = Clock::now();
            killer.join();
            peer->wait();
            const auto took = ended_at - Clock::time_point(Clock::duration(killed_at.load(std::memory_order_relaxed)));
            CPPUNIT_ASSERT_MESSAGE(round + ": " + error + " after " + std::to_string(received) + " messages",
                                   end != StreamEnd::wrong);
            CPPUNIT_ASSERT_MESSAGE(round + ": the creator took " +
                                       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) +
                                       " ms to see the death",
                                   took < kSurvivorBound);
            // relaxed: the parent reads these after the child ended (waitpid).
            board->end.store(static_cast<int>(end), std::memory_order_relaxed);
            board->received.store(received, std::memory_order_relaxed);
        },
        60s);
    ++tally.rounds;
    ++tally.ends[board->end.load(std::memory_order_relaxed)];  // relaxed: after waitpid, see above
    tally.messages += board->received.load(std::memory_order_relaxed);
}

class PipeCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(PipeCrashTest);
    CPPUNIT_TEST(testKilledSenderOrReceiverLeavesTheSurvivorAWholeStreamAndItsEnd);
    CPPUNIT_TEST(testKilledNamedOpenerLeavesTheCreatorAWholeStreamAndItsEnd);
    CPPUNIT_TEST_SUITE_END();

public:
    void testKilledSenderOrReceiverLeavesTheSurvivorAWholeStreamAndItsEnd() {
        std::mt19937 random(static_cast<unsigned>(::getpid()));
        CrashTally tally;
        const auto start = Clock::now();
        while (tally.rounds < 400 && Clock::now() - start < 25s) crash_round(random, tally);
        std::printf("\n  pipe crash: %d rounds, %llu messages checked; Closed %d, EPROTO %d, BrokenPipe %d\n",
                    tally.rounds, static_cast<unsigned long long>(tally.messages),
                    tally.ends[static_cast<int>(StreamEnd::closed)],
                    tally.ends[static_cast<int>(StreamEnd::cut_message)],
                    tally.ends[static_cast<int>(StreamEnd::broken_pipe)]);
        CPPUNIT_ASSERT(tally.rounds >= 50);
        // Each end the contract names was reached at least once, or its check went untested.
        CPPUNIT_ASSERT(tally.ends[static_cast<int>(StreamEnd::closed)] > 0);
        CPPUNIT_ASSERT(tally.ends[static_cast<int>(StreamEnd::cut_message)] > 0);
        CPPUNIT_ASSERT(tally.ends[static_cast<int>(StreamEnd::broken_pipe)] > 0);
    }

    void testKilledNamedOpenerLeavesTheCreatorAWholeStreamAndItsEnd() {
        std::mt19937 random(static_cast<unsigned>(::getpid()) * 31u);
        CrashTally tally;
        const auto start = Clock::now();
        while (tally.rounds < 120 && Clock::now() - start < 15s) named_crash_round(random, tally);
        std::printf("\n  named pipe crash: %d rounds, %llu messages checked; Closed %d, EPROTO %d, BrokenPipe %d\n",
                    tally.rounds, static_cast<unsigned long long>(tally.messages),
                    tally.ends[static_cast<int>(StreamEnd::closed)],
                    tally.ends[static_cast<int>(StreamEnd::cut_message)],
                    tally.ends[static_cast<int>(StreamEnd::broken_pipe)]);
        CPPUNIT_ASSERT(tally.rounds >= 20);
        CPPUNIT_ASSERT(tally.ends[static_cast<int>(StreamEnd::closed)] + tally.ends[static_cast<int>(StreamEnd::cut_message)] > 0);
        CPPUNIT_ASSERT(tally.ends[static_cast<int>(StreamEnd::broken_pipe)] > 0);
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PipeUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(NamedPipeUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PipeStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PipeCrashTest, "crash");
