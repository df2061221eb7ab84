// tests/queue_test.cpp — mproc::Queue<T> over the SPSC and MPMC rings, ByteQueue, SimpleQueue,
// JoinableQueue and the raw rings: exactly-once FIFO delivery across processes and threads, per-producer
// FIFO with many producers and consumers, timeouts, close(), named/anonymous/placed queues with clear
// errors, batch and zero-copy calls, and participants SIGKILLed at random moments (crash suite).
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/joinable_queue.hpp"
#include "mproc/lock.hpp"
#include "mproc/mpmc_ring.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/simple_queue.hpp"
#include "mproc/spsc_ring.hpp"
#include "adaptive_spin.hpp"
#include "robust_list.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::ByteQueue;
using mproc::JoinableQueue;
using mproc::Queue;
using mproc::QueueKind;
using mproc::RawMpmcRing;
using mproc::RawSpscRing;
using mproc::RingStatus;
using mproc::SimpleQueue;
using Clock = std::chrono::steady_clock;

// `size` bytes of shared memory that end exactly where a PROT_NONE page begins, so that an access one byte
// past them faults. size must be a multiple of 128 (the rings' alignment) for the end to be flush.
struct BytesBeforeGuardPage {
    explicit BytesBeforeGuardPage(std::size_t size)
        : page(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))), pages((size + page - 1) / page),
          mapping((pages + 1) * page) {
        CPPUNIT_ASSERT_EQUAL_MESSAGE("a size that ends flush with the guard page", std::size_t{0}, size % 128);
        auto* base = static_cast<std::byte*>(mapping.memory);
        guard = base + pages * page;
        CPPUNIT_ASSERT_EQUAL(0, ::mprotect(guard, page, PROT_NONE));
        memory = guard - size;
    }
    std::size_t page;
    std::size_t pages;
    SharedBytes mapping;
    std::byte* guard = nullptr;
    std::byte* memory = nullptr;
};

// What a hostile peer writes over a ring's constants in the tests below: a capacity that would send a slot
// index past the ring, and a stride (with a slot size to match) that would put slot 1 inside the guard page
// after a ring whose slots take `slot_bytes`.
void rewrite_ring_constants(mproc::detail::RingControl& control, std::size_t slot_bytes) {
    mproc::detail::RingConstants& shared = control.constants;
    shared.capacity = std::uint64_t{1} << 40;
    shared.slot_stride = static_cast<std::uint32_t>(slot_bytes + 128);
    shared.slot_size = shared.slot_stride;
}

// A 64-byte message naming its producer and its place in that producer's sequence.
struct Message {
    std::uint32_t producer;
    std::uint32_t check;  // ~sequence: a torn or stale copy is caught
    std::uint64_t sequence;
    std::uint8_t filler[48];
};
static_assert(sizeof(Message) == 64);

Message make_message(std::uint32_t producer, std::uint64_t sequence) {
    Message message{};
    message.producer = producer;
    message.sequence = sequence;
    message.check = ~static_cast<std::uint32_t>(sequence);
    std::memset(message.filler, static_cast<int>(sequence & 0xff), sizeof message.filler);
    return message;
}

bool intact(const Message& message) {
    if (message.check != ~static_cast<std::uint32_t>(message.sequence)) return false;
    for (std::uint8_t byte : message.filler)
        if (byte != static_cast<std::uint8_t>(message.sequence & 0xff)) return false;
    return true;
}

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// Many producers and consumers on one queue across processes (or threads): each producer puts `per_producer`
// messages; consumers get until the queue is closed and drained; every message arrives once, in its
// producer's order.
constexpr int kMaxParticipants = 8;

struct Tally {
    std::atomic<std::uint64_t> got[kMaxParticipants]{};
    std::atomic<std::uint64_t> sum[kMaxParticipants]{};
    std::atomic<int> order_violations{0};
    std::atomic<int> torn{0};
    std::atomic<int> producers_done{0};
};

void produce(Queue<Message>& queue, int producer, std::uint64_t count) {
    for (std::uint64_t sequence = 0; sequence < count; ++sequence)
        queue.put(make_message(static_cast<std::uint32_t>(producer), sequence));
}

void consume_until_closed(Queue<Message>& queue, Tally& tally) {
    std::vector<std::int64_t> last(kMaxParticipants, -1);
    for (;;) {
        Message message;
        try {
            message = queue.get(true, 20s);
        } catch (const mproc::Closed&) {
            return;
        }
        if (!intact(message) || message.producer >= kMaxParticipants) {
            // relaxed (all tallies): read only by check_tally() after join() or waitpid(), which order them.
            tally.torn.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        if (static_cast<std::int64_t>(message.sequence) <= last[message.producer])
            tally.order_violations.fetch_add(1, std::memory_order_relaxed);
        last[message.producer] = static_cast<std::int64_t>(message.sequence);
        tally.got[message.producer].fetch_add(1, std::memory_order_relaxed);
        tally.sum[message.producer].fetch_add(message.sequence, std::memory_order_relaxed);
    }
}

void check_tally(Tally& tally, int producers, std::uint64_t per_producer) {
    // relaxed (all): called after run_in_threads()/run_in_processes() joined or reaped every consumer.
    CPPUNIT_ASSERT_EQUAL(0, tally.torn.load(std::memory_order_relaxed));
    CPPUNIT_ASSERT_EQUAL(0, tally.order_violations.load(std::memory_order_relaxed));
    for (int p = 0; p < producers; ++p) {
        CPPUNIT_ASSERT_EQUAL(per_producer, tally.got[p].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(per_producer * (per_producer - 1) / 2, tally.sum[p].load(std::memory_order_relaxed));
    }
}

void run_many_to_many(QueueKind kind, int producers, int consumers, std::uint64_t per_producer, bool threads,
                      std::size_t capacity = 256) {
    Queue<Message> queue(capacity, kind);
    Shared<Tally> tally;
    const auto body = [&](int index) {
        if (index < producers) {
            produce(queue, index, per_producer);
            // The last producer to finish closes the queue, so consumers end once it is drained.
            // acq_rel: each producer releases its puts; the last one acquires them all, so close() follows every put.
            if (tally->producers_done.fetch_add(1, std::memory_order_acq_rel) + 1 == producers) queue.close();
        } else {
            consume_until_closed(queue, *tally);
        }
    };
    if (threads)
        mproc::test::run_in_threads(producers + consumers, body);
    else
        mproc::test::run_in_processes(producers + consumers, body, 120s);
    check_tally(*tally, producers, per_producer);
    CPPUNIT_ASSERT_EQUAL(std::size_t{0}, queue.qsize());
}

// ---------------------------------------------------------------------------------------------------------

class QueueUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(QueueUnitTest);
    CPPUNIT_TEST(testSpscMillionMessagesAcrossProcessesArriveOnceInOrder);
    CPPUNIT_TEST(testMpmcTwoProducersTwoConsumersKeepPerProducerOrder);
    CPPUNIT_TEST(testMpmcFourProducersFourConsumersKeepPerProducerOrder);
    CPPUNIT_TEST(testMpmcManyConsumersOnATinyRingGetEachMessageOnce);
    CPPUNIT_TEST(testSpscThreadsDeliverEveryMessageInOrder);
    CPPUNIT_TEST(testMpmcThreadsDeliverEveryMessageOnce);
    CPPUNIT_TEST(testGetNowaitOnEmptyThrowsEmptyAndPutNowaitOnFullThrowsFull);
    CPPUNIT_TEST(testTimedGetAndPutWaitTheirTimeoutThenThrow);
    CPPUNIT_TEST(testBlockedConsumerInAnotherProcessIsWokenByPut);
    CPPUNIT_TEST(testBlockedProducerInAnotherProcessIsWokenByGet);
    CPPUNIT_TEST(testCloseWakesBlockedConsumerWhichGetsClosed);
    CPPUNIT_TEST(testClosedQueueDeliversWhatIsLeftThenReportsClosed);
    CPPUNIT_TEST(testQsizeIsExactAndFullAndEmptyFollowIt);
    CPPUNIT_TEST(testPutManyAndGetManyMoveBatchesInOrder);
    CPPUNIT_TEST(testSpscSlotsLeftUnpublishedByADeadProducerAreSkipped);
    CPPUNIT_TEST(testSpscBatchKilledWhilePublishingLosesOnlyItsUnpublishedRest);
    CPPUNIT_TEST(testSpscReserveCommitPeekReleaseAreZeroCopy);
    CPPUNIT_TEST(testMpmcPutInPlaceAndGetInPlaceAreZeroCopy);
    CPPUNIT_TEST(testMpmcReserveCommitPeekReleaseAreZeroCopy);
    CPPUNIT_TEST(testHeldSlotBlocksOtherClaimsOfItsThreadUntilFinished);
    CPPUNIT_TEST(testCommitOnAClosedRingDropsTheMessage);
    CPPUNIT_TEST(testForkChildDropsItsCopyOfAHoldWithoutFinishingIt);
    CPPUNIT_TEST(testNamedQueueIsSharedByNameAndKeepsItsKind);
    CPPUNIT_TEST(testNamedOpenErrorsAreClear);
    CPPUNIT_TEST(testPlacedQueueInCallerMemoryWorksAcrossFork);
    CPPUNIT_TEST(testRawRingsValidateTheirBytes);
    CPPUNIT_TEST(testRawRingsKeepTheConstantsTheyAttachedWith);
    CPPUNIT_TEST(testInvalidShapesAreValueErrors);
    CPPUNIT_TEST(testByteQueueCarriesVariableLengthMessages);
    CPPUNIT_TEST(testByteQueueRejectsOversizedAndCorruptedRecords);
    CPPUNIT_TEST(testSimpleQueueAcrossProcesses);
    CPPUNIT_TEST(testJoinableQueueJoinWaitsForEveryTaskDone);
    CPPUNIT_TEST(testTooManyTaskDoneIsValueError);
    CPPUNIT_TEST(testNotifyIsFenceFreeUnlessTheEnvironmentAsksForTheFence);
    CPPUNIT_TEST(testQueueKeepsTheConstantsItAttachedWith);
    CPPUNIT_TEST(testSpinBudgetShrinksWhenSpinningFailsAndGrowsWhenItPays);
    CPPUNIT_TEST(testMessageCopyIsExactForEverySize);
    CPPUNIT_TEST(testMessagesOfOddSizesCrossProcessesByteForByte);
    CPPUNIT_TEST_SUITE_END();

public:
    void testSpscMillionMessagesAcrossProcessesArriveOnceInOrder() {
        const std::uint64_t count = kSanitized ? 200'000 : 1'000'000;
        Queue<Message> queue(1024, QueueKind::spsc);
        Shared<std::atomic<std::uint64_t>> received;
        const auto start = Clock::now();
        mproc::test::run_in_processes(2, [&](int index) {
            if (index == 0) {
                produce(queue, 0, count);
                return;
            }
            // Checked without CppUnit's per-call string building, which would dominate the measured rate.
            std::uint64_t wrong = 0;
            for (std::uint64_t expected = 0; expected < count; ++expected) {
                const Message message = queue.get(true, 20s);
                wrong += !intact(message) || message.sequence != expected;
            }
            CPPUNIT_ASSERT_EQUAL(std::uint64_t{0}, wrong);
            // relaxed: read after run_in_processes() reaps this child, which orders the store.
            received->store(count, std::memory_order_relaxed);
        });
        const double elapsed = seconds_since(start);
        // relaxed: the consumer was reaped, which orders its store.
        CPPUNIT_ASSERT_EQUAL(count, received->load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(queue.empty());
        std::printf("\n  spsc 1P1C, 64-byte messages: %.2f M msg/s\n", static_cast<double>(count) / elapsed / 1e6);
    }

    void testMpmcTwoProducersTwoConsumersKeepPerProducerOrder() {
        run_many_to_many(QueueKind::mpmc, 2, 2, kSanitized ? 20'000 : 100'000, false);
    }

    void testMpmcFourProducersFourConsumersKeepPerProducerOrder() {
        run_many_to_many(QueueKind::mpmc, 4, 4, kSanitized ? 10'000 : 50'000, false);
    }

    // Two slots and six consumers: every slot is contended by consumers that read a position, lose the race
    // for it, and must notice under the claim that the slot moved on (a stale consumer must never copy it).
    void testMpmcManyConsumersOnATinyRingGetEachMessageOnce() {
        run_many_to_many(QueueKind::mpmc, 2, 6, kSanitized ? 10'000 : 100'000, false, 2);
    }

    void testSpscThreadsDeliverEveryMessageInOrder() {
        run_many_to_many(QueueKind::spsc, 1, 1, kSanitized ? 20'000 : 200'000, true);
    }

    void testMpmcThreadsDeliverEveryMessageOnce() {
        run_many_to_many(QueueKind::mpmc, 3, 3, kSanitized ? 5'000 : 50'000, true);
    }

    void testGetNowaitOnEmptyThrowsEmptyAndPutNowaitOnFullThrowsFull() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<int> queue(4, kind);
            CPPUNIT_ASSERT_THROW(queue.get_nowait(), mproc::Empty);
            CPPUNIT_ASSERT(!queue.try_get());
            for (int i = 0; i < 4; ++i) queue.put_nowait(i);
            CPPUNIT_ASSERT_THROW(queue.put_nowait(99), mproc::Full);
            CPPUNIT_ASSERT(!queue.try_put(99));
            CPPUNIT_ASSERT_THROW(queue.put(99, false, 1s), mproc::ValueError);
            for (int i = 0; i < 4; ++i) CPPUNIT_ASSERT_EQUAL(i, queue.get_nowait());
            CPPUNIT_ASSERT_THROW(queue.get_nowait(), mproc::Empty);
        }
    }

    void testTimedGetAndPutWaitTheirTimeoutThenThrow() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<int> queue(2, kind);
            auto start = Clock::now();
            CPPUNIT_ASSERT_THROW(queue.get(true, 50ms), mproc::Empty);
            CPPUNIT_ASSERT(Clock::now() - start >= 50ms);
            CPPUNIT_ASSERT(Clock::now() - start < 5s);
            queue.put(1);
            queue.put(2);
            start = Clock::now();
            CPPUNIT_ASSERT_THROW(queue.put(3, true, 50ms), mproc::Full);
            CPPUNIT_ASSERT(Clock::now() - start >= 50ms);
            start = Clock::now();
            CPPUNIT_ASSERT_THROW(queue.put(3, true, 0ms), mproc::Full);
            CPPUNIT_ASSERT_THROW(queue.put(3, true, -5ms), mproc::Full);
            CPPUNIT_ASSERT(Clock::now() - start < 40ms);
            CPPUNIT_ASSERT_EQUAL(1, queue.get(true, 0ms));
        }
    }

    void testBlockedConsumerInAnotherProcessIsWokenByPut() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<int> queue(8, kind);
            ForkedChild consumer([&] {
                if (queue.get(true, 20s) != 42) std::_Exit(3);
                std::_Exit(0);
            });
            std::this_thread::sleep_for(100ms);  // long enough to be asleep in FUTEX_WAIT
            queue.put(42);
            const int status = consumer.wait(10s);
            CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }

    void testBlockedProducerInAnotherProcessIsWokenByGet() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<int> queue(2, kind);
            queue.put(1);
            queue.put(2);
            ForkedChild producer([&] {
                queue.put(3, true, 20s);
                std::_Exit(0);
            });
            std::this_thread::sleep_for(100ms);
            CPPUNIT_ASSERT_EQUAL(1, queue.get());
            const int status = producer.wait(10s);
            CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            CPPUNIT_ASSERT_EQUAL(2, queue.get());
            CPPUNIT_ASSERT_EQUAL(3, queue.get());
        }
    }

    void testCloseWakesBlockedConsumerWhichGetsClosed() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<int> queue(8, kind);
            ForkedChild consumer([&] {
                try {
                    queue.get();
                } catch (const mproc::Closed&) {
                    std::_Exit(0);
                }
                std::_Exit(3);
            });
            std::this_thread::sleep_for(100ms);
            queue.close();
            const int status = consumer.wait(10s);
            CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            CPPUNIT_ASSERT(queue.closed());
        }
    }

    void testClosedQueueDeliversWhatIsLeftThenReportsClosed() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<int> queue(8, kind);
            queue.put(1);
            queue.put(2);
            queue.close();
            queue.close();  // idempotent
            CPPUNIT_ASSERT_THROW(queue.put(3), mproc::Closed);
            CPPUNIT_ASSERT_THROW(queue.try_put(3), mproc::Closed);
            CPPUNIT_ASSERT_EQUAL(1, queue.get());
            CPPUNIT_ASSERT_EQUAL(2, queue.get_nowait());
            CPPUNIT_ASSERT_THROW(queue.get(), mproc::Closed);
            CPPUNIT_ASSERT_THROW(queue.get_nowait(), mproc::Closed);
            CPPUNIT_ASSERT_THROW(queue.try_get(), mproc::Closed);
        }
    }

    void testQsizeIsExactAndFullAndEmptyFollowIt() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<std::uint64_t> queue(16, kind);
            CPPUNIT_ASSERT_EQUAL(std::size_t{16}, queue.capacity());
            CPPUNIT_ASSERT(queue.empty());
            for (std::uint64_t i = 0; i < 40; ++i) {  // wraps around the ring twice
                queue.put(i);
                CPPUNIT_ASSERT_EQUAL(std::size_t{1}, queue.qsize());
                CPPUNIT_ASSERT_EQUAL(i, queue.get());
            }
            for (std::uint64_t i = 0; i < 16; ++i) {
                CPPUNIT_ASSERT(!queue.full());
                queue.put(i);
                CPPUNIT_ASSERT_EQUAL(static_cast<std::size_t>(i + 1), queue.qsize());
            }
            CPPUNIT_ASSERT(queue.full());
            CPPUNIT_ASSERT(!queue.empty());
        }
    }

    void testPutManyAndGetManyMoveBatchesInOrder() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            Queue<std::uint64_t> queue(8, kind);
            std::vector<std::uint64_t> in(12);
            for (std::size_t i = 0; i < in.size(); ++i) in[i] = 100 + i;
            CPPUNIT_ASSERT_EQUAL(std::size_t{8}, queue.put_many(in));  // only 8 fit
            std::vector<std::uint64_t> out(5);
            CPPUNIT_ASSERT_EQUAL(std::size_t{5}, queue.get_many(out));
            for (std::size_t i = 0; i < 5; ++i) CPPUNIT_ASSERT_EQUAL(100 + i, out[i]);
            CPPUNIT_ASSERT_EQUAL(std::size_t{4}, queue.put_many(std::span(in).subspan(8)));
            std::vector<std::uint64_t> rest(10);
            CPPUNIT_ASSERT_EQUAL(std::size_t{7}, queue.get_many(rest));
            for (std::size_t i = 0; i < 7; ++i) CPPUNIT_ASSERT_EQUAL(105 + i, rest[i]);
            CPPUNIT_ASSERT_EQUAL(std::size_t{0}, queue.get_many(rest));
        }
    }

    // A producer killed after advancing its position (P5) but before publishing the slots (P6) leaves slots
    // nobody will publish. The producer that takes over publishes them as skipped: the consumer steps over
    // them (their messages, which the dead producer was putting, are lost) and gets what follows.
    void testSpscSlotsLeftUnpublishedByADeadProducerAreSkipped() {
        const std::size_t size = RawSpscRing::required_size(4, sizeof(std::uint64_t));
        SharedBytes bytes(size);
        RawSpscRing ring = RawSpscRing::init(bytes.memory, size, 4, sizeof(std::uint64_t));
        auto put = [](RawSpscRing& into, std::uint64_t value) {
            return into.put(std::as_bytes(std::span(&value, 1)), 0s);
        };
        auto get = [&](std::uint64_t& value) { return ring.get(std::as_writable_bytes(std::span(&value, 1)), 0s); };
        CPPUNIT_ASSERT(put(ring, 1) == RingStatus::ok);
        // The dead producer's steps: P4 (the message written), P5 (the position moved over it and one more,
        // as put_many of two would), and no P6.
        const std::uint64_t doomed = 2;
        std::memcpy(ring.geometry().slot_at(1), &doomed, sizeof doomed);
        std::memcpy(ring.geometry().slot_at(2), &doomed, sizeof doomed);
        std::atomic_ref(ring.control().producer.position).store(3, std::memory_order_release);
        std::uint64_t value = 0;
        CPPUNIT_ASSERT(get(value) == RingStatus::ok);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{1}, value);
        CPPUNIT_ASSERT(get(value) == RingStatus::empty);  // nothing published: the consumer waits there
        ForkedChild replacement([&] {
            RawSpscRing producer = RawSpscRing::attach(bytes.memory, size);
            std::_Exit(put(producer, 3) == RingStatus::ok && put(producer, 4) == RingStatus::ok ? 0 : 1);
        });
        assert_exited_cleanly(replacement.wait(10s));
        CPPUNIT_ASSERT(get(value) == RingStatus::ok);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{3}, value);
        CPPUNIT_ASSERT(get(value) == RingStatus::ok);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{4}, value);
        CPPUNIT_ASSERT(get(value) == RingStatus::empty);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());

        // The same through Queue<T>, whose inline put sees the unpublished slot first (P2).
        const std::size_t queue_size = Queue<std::uint64_t>::placed_size(4, QueueKind::spsc);
        SharedBytes queue_bytes(queue_size);
        auto queue = Queue<std::uint64_t>::place(queue_bytes.memory, queue_size, 4, QueueKind::spsc);
        queue.put(10, false);
        std::atomic_ref(queue.core().control().producer.position).store(2, std::memory_order_release);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{10}, queue.get(false));
        CPPUNIT_ASSERT_THROW(queue.get(false), mproc::Empty);
        queue.put(11, false);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{11}, queue.get(false));
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, queue.qsize());
    }

    // put_many publishes its slots one by one after one position store (P5, then P6 per slot): a producer
    // killed among those stores leaves a published prefix, then holes. The prefix is delivered, the holes
    // are stepped over once a new producer's first put has repaired them, and nothing else is lost.
    void testSpscBatchKilledWhilePublishingLosesOnlyItsUnpublishedRest() {
        const std::size_t size = RawSpscRing::required_size(8, sizeof(std::uint64_t));
        SharedBytes bytes(size);
        RawSpscRing ring = RawSpscRing::init(bytes.memory, size, 8, sizeof(std::uint64_t));
        const std::uint64_t first = 100;
        CPPUNIT_ASSERT(ring.put(std::as_bytes(std::span(&first, 1)), 0s) == RingStatus::ok);
        // The dead producer's put_many of positions 1..4: P4 for all four, P5 past all four, P6 for 1 and 2.
        for (std::uint64_t position = 1; position <= 4; ++position) {
            const std::uint64_t message = 100 + position;
            std::memcpy(ring.geometry().slot_at(position), &message, sizeof message);
        }
        // release: as P5 (stronger than its relaxed store; the replacement's attach follows a fork anyway).
        std::atomic_ref(ring.control().producer.position).store(5, std::memory_order_release);
        for (std::uint64_t position = 1; position <= 2; ++position)
            // release: P6, pairs with the consumer's C2 below, as publish_puts does.
            mproc::detail::spsc_sequence_of(ring.geometry().slot_at(position), ring.geometry().stride)
                .store(position + 1, std::memory_order_release);

        std::uint64_t got[8] = {};
        CPPUNIT_ASSERT_EQUAL(std::size_t{3}, ring.get_many(got, 8));  // the message before and the prefix
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{100}, got[0]);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{101}, got[1]);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{102}, got[2]);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.get_many(got, 8));  // the holes are not ready
        CPPUNIT_ASSERT(!ring.ready_to_get());

        ForkedChild replacement([&] {
            RawSpscRing producer = RawSpscRing::attach(bytes.memory, size);
            const std::uint64_t messages[2] = {200, 201};
            std::_Exit(producer.put_many(messages, 2) == 2 ? 0 : 1);
        });
        assert_exited_cleanly(replacement.wait(10s));
        CPPUNIT_ASSERT(ring.ready_to_get());
        CPPUNIT_ASSERT_EQUAL(std::size_t{2}, ring.get_many(got, 8));  // 103 and 104 were lost with the producer
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{200}, got[0]);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{201}, got[1]);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());
        // relaxed: this thread's own last store (C5 of the get_many above).
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{7},
                             std::atomic_ref(ring.control().consumer.position).load(std::memory_order_relaxed));
    }

    void testSpscReserveCommitPeekReleaseAreZeroCopy() {
        const std::size_t size = RawSpscRing::required_size(4, sizeof(std::uint64_t));
        SharedBytes bytes(size);
        RawSpscRing ring = RawSpscRing::init(bytes.memory, size, 4, sizeof(std::uint64_t));
        std::uint64_t value = 0;
        ring.put(std::as_bytes(std::span(&value, 1)));
        ring.get(std::as_writable_bytes(std::span(&value, 1)));  // positions now 1: the ring wraps below
        mproc::RingRegion region = ring.reserve(4);
        CPPUNIT_ASSERT_EQUAL(std::size_t{3}, region.count);  // slots 1..3, then the end of the ring
        for (std::size_t i = 0; i < region.count; ++i) {
            const std::uint64_t item = 10 + i;
            std::memcpy(region.slot(i), &item, sizeof item);
        }
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());  // not published before commit
        ring.commit(3);
        CPPUNIT_ASSERT_EQUAL(std::size_t{3}, ring.size());
        ForkedChild consumer([&] {
            RawSpscRing same = RawSpscRing::attach(bytes.memory, size);
            const mproc::RingRegion ready = same.peek(8);
            if (ready.count != 3) std::_Exit(3);
            for (std::size_t i = 0; i < ready.count; ++i) {
                std::uint64_t item;
                std::memcpy(&item, ready.slot(i), sizeof item);
                if (item != 10 + i) std::_Exit(4);
            }
            same.release(2);
            std::_Exit(0);
        });
        const int status = consumer.wait(10s);
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CPPUNIT_ASSERT_EQUAL(std::size_t{1}, ring.size());
        CPPUNIT_ASSERT_THROW(ring.release(2), mproc::StateError);
        CPPUNIT_ASSERT(RingStatus::ok == ring.get(std::as_writable_bytes(std::span(&value, 1))));
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{12}, value);
    }

    void testMpmcPutInPlaceAndGetInPlaceAreZeroCopy() {
        const std::size_t size = RawMpmcRing::required_size(4, 32);
        SharedBytes bytes(size);
        RawMpmcRing ring = RawMpmcRing::init(bytes.memory, size, 4, 32);
        const std::byte* slot_memory = nullptr;
        CPPUNIT_ASSERT(RingStatus::ok == ring.put_in_place([&](std::span<std::byte> slot) {
            CPPUNIT_ASSERT_EQUAL(std::size_t{32}, slot.size());
            slot_memory = slot.data();
            std::memcpy(slot.data(), "hello", 5);
            return std::size_t{5};
        }));
        // The writer wrote into the ring's own memory.
        CPPUNIT_ASSERT(slot_memory > static_cast<std::byte*>(bytes.memory));
        CPPUNIT_ASSERT(slot_memory < static_cast<std::byte*>(bytes.memory) + size);
        // A writer that throws leaves no message and does not stall the ring.
        CPPUNIT_ASSERT_THROW(ring.put_in_place([](std::span<std::byte>) -> std::size_t { throw std::runtime_error("no"); }),
                             std::runtime_error);
        CPPUNIT_ASSERT_THROW(ring.put_in_place([](std::span<std::byte>) { return std::size_t{33}; }), mproc::ValueError);
        const std::uint64_t tail = 99;
        ring.put(std::as_bytes(std::span(&tail, 1)));
        ForkedChild consumer([&] {
            RawMpmcRing same = RawMpmcRing::attach(bytes.memory, size);
            std::string first;
            if (same.get_in_place([&](std::span<const std::byte> message) {
                    first.assign(reinterpret_cast<const char*>(message.data()), message.size());
                }, 0ms) != RingStatus::ok || first != "hello")
                std::_Exit(3);
            std::size_t seen = 0;
            if (same.get_in_place([&](std::span<const std::byte> message) { seen = message.size(); }, 0ms) !=
                    RingStatus::ok || seen != sizeof tail)
                std::_Exit(4);  // the two skipped slots were stepped over
            std::_Exit(same.size() == 0 ? 0 : 5);
        });
        const int status = consumer.wait(10s);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(status), WIFEXITED(status) && WEXITSTATUS(status) == 0);
        // A reader that throws consumes its message.
        ring.put(std::as_bytes(std::span(&tail, 1)));
        CPPUNIT_ASSERT_THROW(ring.get_in_place([](std::span<const std::byte>) { throw std::runtime_error("no"); }),
                             std::runtime_error);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());
    }

    void testMpmcReserveCommitPeekReleaseAreZeroCopy() {
        const std::size_t size = RawMpmcRing::required_size(4, 32);
        SharedBytes bytes(size);
        RawMpmcRing ring = RawMpmcRing::init(bytes.memory, size, 4, 32);
        const auto inside_ring = [&](const std::byte* address) {
            return address > static_cast<std::byte*>(bytes.memory) && address < static_cast<std::byte*>(bytes.memory) + size;
        };
        {
            mproc::MpmcReservation reservation;
            CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(reservation));
            CPPUNIT_ASSERT(reservation);
            CPPUNIT_ASSERT_EQUAL(std::size_t{32}, reservation.slot().size());
            CPPUNIT_ASSERT(inside_ring(reservation.slot().data()));
            CPPUNIT_ASSERT_THROW(ring.reserve(reservation), mproc::StateError);  // still holds its slot
            std::memcpy(reservation.slot().data(), "hello", 5);
            reservation.commit(5);
            CPPUNIT_ASSERT(!reservation);
            CPPUNIT_ASSERT_THROW(reservation.commit(1), mproc::StateError);
        }
        {
            mproc::MpmcReservation abandoned;  // destroyed uncommitted: published as skipped
            CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(abandoned));
        }
        {
            mproc::MpmcReservation too_long;
            CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(too_long));
            CPPUNIT_ASSERT_THROW(too_long.commit(33), mproc::ValueError);  // and the slot is skipped
            CPPUNIT_ASSERT(!too_long);
        }
        {
            mproc::MpmcReservation other_thread;
            CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(other_thread));
            bool refused = false;
            std::thread([&] {
                try {
                    other_thread.commit(1);
                } catch (const mproc::StateError&) {
                    refused = true;
                }
            }).join();
            CPPUNIT_ASSERT(refused);
            std::memcpy(other_thread.slot().data(), "world!", 6);
            other_thread.commit(6);
        }
        // Four slots went round: the ring is full now (two hold skips), and a zero-timeout reserve says so.
        mproc::MpmcReservation none;
        CPPUNIT_ASSERT(RingStatus::full == ring.reserve(none, 0ms));
        CPPUNIT_ASSERT(!none);
        ForkedChild consumer([&] {
            RawMpmcRing same = RawMpmcRing::attach(bytes.memory, size);
            mproc::MpmcLease lease;
            if (same.peek(lease, 0ms) != RingStatus::ok || !inside_ring(lease.message().data()) ||
                std::string(reinterpret_cast<const char*>(lease.message().data()), lease.message().size()) != "hello")
                std::_Exit(3);
            lease.release();
            {
                mproc::MpmcLease second;  // the two skipped slots are stepped over
                if (same.peek(second, 0ms) != RingStatus::ok ||
                    std::string(reinterpret_cast<const char*>(second.message().data()), second.message().size()) !=
                        "world!")
                    std::_Exit(4);
            }  // released by its destructor
            if (same.peek(lease, 0ms) != RingStatus::empty || lease) std::_Exit(5);
            std::_Exit(same.size() == 0 ? 0 : 6);
        });
        const int status = consumer.wait(10s);
        CPPUNIT_ASSERT_MESSAGE(std::to_string(status), WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    // While a thread holds a reservation or a lease, its list_op_pending covers that claim: another claim,
    // put, get or Lock acquisition by the same thread is refused instead of silently uncovering it.
    void testHeldSlotBlocksOtherClaimsOfItsThreadUntilFinished() {
        const std::size_t size = RawMpmcRing::required_size(4, 8);
        SharedBytes bytes(size);
        RawMpmcRing ring = RawMpmcRing::init(bytes.memory, size, 4, 8);
        const std::uint64_t item = 7;
        std::uint64_t value = 0;
        mproc::Lock lock;
        {
            mproc::MpmcReservation reservation;
            CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(reservation));
            mproc::MpmcReservation second;
            CPPUNIT_ASSERT_THROW(ring.reserve(second), mproc::StateError);
            mproc::MpmcLease lease;
            CPPUNIT_ASSERT_THROW(ring.peek(lease), mproc::StateError);
            CPPUNIT_ASSERT_THROW(ring.put(std::as_bytes(std::span(&item, 1))), mproc::StateError);
            CPPUNIT_ASSERT_THROW(ring.try_get(std::as_writable_bytes(std::span(&value, 1))), mproc::StateError);
            CPPUNIT_ASSERT_THROW(lock.lock(), mproc::StateError);
            // Another thread is not held back.
            std::thread([&] {
                std::lock_guard guard(lock);
                CPPUNIT_ASSERT(RingStatus::ok == ring.put(std::as_bytes(std::span(&item, 1)), 0ms));
            }).join();
            std::memcpy(reservation.slot().data(), &item, sizeof item);
            reservation.commit(sizeof item);
        }
        {
            mproc::MpmcLease lease;
            CPPUNIT_ASSERT(RingStatus::ok == ring.peek(lease));  // the other thread's message, first in line
            CPPUNIT_ASSERT_THROW(ring.put(std::as_bytes(std::span(&item, 1))), mproc::StateError);
        }  // released
        lock.lock();  // free again
        lock.unlock();
        CPPUNIT_ASSERT(RingStatus::ok == ring.get(std::as_writable_bytes(std::span(&value, 1)), 0ms));
        CPPUNIT_ASSERT_EQUAL(item, value);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());
    }

    // A consumer told the ring is closed and drained must never see a message appear afterwards.
    void testCommitOnAClosedRingDropsTheMessage() {
        const std::size_t size = RawMpmcRing::required_size(4, 8);
        SharedBytes bytes(size);
        RawMpmcRing ring = RawMpmcRing::init(bytes.memory, size, 4, 8);
        mproc::MpmcReservation reservation;
        CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(reservation));
        ring.close();
        std::uint64_t value = 0;
        RingStatus before = RingStatus::ok;
        std::thread([&] { before = ring.get(std::as_writable_bytes(std::span(&value, 1)), 0ms); }).join();
        CPPUNIT_ASSERT(RingStatus::closed == before);  // a consumer elsewhere is told: closed and drained
        CPPUNIT_ASSERT_THROW(reservation.commit(sizeof value), mproc::Closed);
        CPPUNIT_ASSERT(!reservation);
        CPPUNIT_ASSERT(RingStatus::closed == ring.get(std::as_writable_bytes(std::span(&value, 1)), 0ms));
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());
    }

    // A forked child's copy of its parent's reservation names the parent's claim: dropping it in the child
    // must leave the slot to the parent, which then commits as usual.
    void testForkChildDropsItsCopyOfAHoldWithoutFinishingIt() {
        const std::size_t size = RawMpmcRing::required_size(4, 8);
        SharedBytes bytes(size);
        RawMpmcRing ring = RawMpmcRing::init(bytes.memory, size, 4, 8);
        mproc::MpmcReservation reservation;
        CPPUNIT_ASSERT(RingStatus::ok == ring.reserve(reservation));
        ForkedChild child([&] {
            reservation.cancel();  // the parent's: only dropped here
            const std::uint64_t own = 5;
            // The child holds nothing, so it may put (behind the parent's slot).
            std::_Exit(ring.put(std::as_bytes(std::span(&own, 1)), 0ms) == RingStatus::ok ? 0 : 3);
        });
        assert_exited_cleanly(child.wait());
        const std::uint64_t mine = 4;
        std::memcpy(reservation.slot().data(), &mine, sizeof mine);
        reservation.commit(sizeof mine);
        std::uint64_t value = 0;
        CPPUNIT_ASSERT(RingStatus::ok == ring.get(std::as_writable_bytes(std::span(&value, 1)), 0ms));
        CPPUNIT_ASSERT_EQUAL(mine, value);  // not skipped by the child
        CPPUNIT_ASSERT(RingStatus::ok == ring.get(std::as_writable_bytes(std::span(&value, 1)), 0ms));
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{5}, value);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t{0}, ring.repaired_slots());
    }

    void testNamedQueueIsSharedByNameAndKeepsItsKind() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            const std::string name = mproc::test::unique_name("queue");
            Queue<Message> queue = Queue<Message>::create(name, 64, kind);
            CPPUNIT_ASSERT_EQUAL(name, queue.name());
            CPPUNIT_ASSERT_THROW(Queue<Message>::create(name, 64, kind), mproc::SystemError);
            ForkedChild producer([&] {
                Queue<Message> opened = Queue<Message>::open(name);
                if (opened.kind() != kind || opened.capacity() != 64) std::_Exit(3);
                for (std::uint64_t i = 0; i < 1000; ++i) opened.put(make_message(7, i));
                std::_Exit(0);
            });
            for (std::uint64_t i = 0; i < 1000; ++i) {
                const Message message = queue.get(true, 10s);
                CPPUNIT_ASSERT(intact(message));
                CPPUNIT_ASSERT_EQUAL(i, message.sequence);
            }
            const int status = producer.wait(10s);
            CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            queue.unlink();
        }
    }

    void testNamedOpenErrorsAreClear() {
        const std::string name = mproc::test::unique_name("queue-errors");
        CPPUNIT_ASSERT_THROW(Queue<int>::open(name), mproc::SystemError);
        Queue<std::uint64_t> queue = Queue<std::uint64_t>::create(name, 8);
        try {
            Queue<std::uint32_t>::open(name);
            CPPUNIT_FAIL("a queue of 8-byte items opened as 4-byte items");
        } catch (const mproc::InvalidObject& error) {
            const std::string what = error.what();
            CPPUNIT_ASSERT_MESSAGE(what, what.find(name) != std::string::npos);
            CPPUNIT_ASSERT_MESSAGE(what, what.find("items of 8 bytes, expected 4") != std::string::npos);
        }
        queue.unlink();
        mproc::SharedMemory plain = mproc::SharedMemory::create(name, 4096);
        CPPUNIT_ASSERT_THROW(Queue<std::uint64_t>::open(name, 100ms), mproc::InvalidObject);
        plain.unlink();
    }

    void testPlacedQueueInCallerMemoryWorksAcrossFork() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            const std::size_t size = Queue<std::uint64_t>::placed_size(32, kind);
            SharedBytes bytes(size);
            Queue<std::uint64_t> queue = Queue<std::uint64_t>::place(bytes.memory, size, 32, kind);
            ForkedChild producer([&] {
                Queue<std::uint64_t> attached = Queue<std::uint64_t>::attach(bytes.memory, size);
                for (std::uint64_t i = 0; i < 5000; ++i) attached.put(i * 3);
                std::_Exit(0);
            });
            for (std::uint64_t i = 0; i < 5000; ++i) CPPUNIT_ASSERT_EQUAL(i * 3, queue.get(true, 10s));
            const int status = producer.wait(10s);
            CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            CPPUNIT_ASSERT_THROW(queue.unlink(), mproc::StateError);
        }
    }

    void testRawRingsValidateTheirBytes() {
        const std::size_t size = RawMpmcRing::required_size(8, 16);
        SharedBytes bytes(size);
        RawMpmcRing::init(bytes.memory, size, 8, 16);
        CPPUNIT_ASSERT_THROW(RawSpscRing::attach(bytes.memory, size), mproc::InvalidObject);
        CPPUNIT_ASSERT_THROW(RawMpmcRing::attach(bytes.memory, size - 1), mproc::InvalidObject);
        CPPUNIT_ASSERT_THROW(RawMpmcRing::attach(bytes.memory, 100), mproc::InvalidObject);
        CPPUNIT_ASSERT_THROW(RawMpmcRing::attach(static_cast<char*>(bytes.memory) + 8, size - 8), mproc::ValueError);
        RawMpmcRing::attach(bytes.memory, size);
        auto* constants = static_cast<mproc::detail::RingConstants*>(bytes.memory);
        constants->capacity = 12;  // not a power of two
        try {
            RawMpmcRing::attach(bytes.memory, size);
            CPPUNIT_FAIL("a corrupted capacity was accepted");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("capacity 12") != std::string::npos);
        }
        constants->capacity = 1u << 20;  // more slots than the memory holds
        CPPUNIT_ASSERT_THROW(RawMpmcRing::attach(bytes.memory, size), mproc::InvalidObject);
        constants->capacity = 8;
        constants->layout_version = 9;
        CPPUNIT_ASSERT_THROW(RawMpmcRing::attach(bytes.memory, size), mproc::InvalidObject);
        constants->layout_version = mproc::detail::kMpmcRingLayoutVersion;
        RawMpmcRing::attach(bytes.memory, size);
        // A stride that fits but is not a multiple of 16 would misalign every other slot header.
        constants->slot_size = 8;
        constants->slot_stride = 24;
        constants->total_size = sizeof(mproc::detail::RingControl) + 8 * 24;
        CPPUNIT_ASSERT_THROW(RawMpmcRing::attach(bytes.memory, size), mproc::InvalidObject);
        constants->slot_stride = 32;
        constants->total_size = sizeof(mproc::detail::RingControl) + 8 * 32;
        RawMpmcRing::attach(bytes.memory, size);
    }

    // Attach validates the shared constants; the handle keeps the checked copy. A peer that rewrites them
    // later (a hostile or broken process) must not move any slot access outside the ring, nor any copy past
    // the caller's buffer. Each ring ends flush with a PROT_NONE page, and the operations run in a child, so
    // an access that strays ends the child by a signal instead of passing unseen.
    void testRawRingsKeepTheConstantsTheyAttachedWith() {
        // Shapes whose sizes are multiples of 128, so that the guard page follows the last slot at once.
        check_ring_survives_rewritten_constants<RawSpscRing>(16, 8);
        check_ring_survives_rewritten_constants<RawMpmcRing>(4, 8);
    }

    template <class Ring>
    static void check_ring_survives_rewritten_constants(std::size_t capacity, std::size_t slot_size) {
        const std::size_t size = Ring::required_size(capacity, slot_size);
        BytesBeforeGuardPage bytes(size);
        std::byte* memory = bytes.memory;
        const Ring ring = Ring::init(memory, size, capacity, slot_size);
        const std::size_t expected_stride = ring.geometry().stride;
        ForkedChild user([&] {
            Ring attached = Ring::attach(memory, size);
            rewrite_ring_constants(attached.control(), capacity * expected_stride);
            std::uint64_t next = 0;
            // Puts and gets one at a time, around the ring twice: every slot is visited.
            for (std::size_t i = 0; i < 2 * capacity; ++i) {
                const std::uint64_t item = 1000 + next++;
                if (attached.put(std::as_bytes(std::span(&item, 1)), 0s) != RingStatus::ok) std::_Exit(10);
                std::uint64_t out[3] = {~0ull, 0, ~0ull};  // a canary either side of the 8 bytes got
                if (attached.get(std::as_writable_bytes(std::span(&out[1], 1)), 0s) != RingStatus::ok) std::_Exit(11);
                if (out[0] != ~0ull || out[2] != ~0ull) std::_Exit(12);
                if (out[1] != item) std::_Exit(13);
            }
            // Batches fill the ring and drain it.
            std::vector<std::uint64_t> batch(capacity + 4);
            for (std::size_t i = 0; i < batch.size(); ++i) batch[i] = i + 1;
            if (attached.put_many(batch.data(), batch.size()) != capacity) std::_Exit(14);
            if (attached.size() != capacity) std::_Exit(15);
            std::vector<std::uint64_t> drained(capacity + 4, ~0ull);
            if (attached.get_many(drained.data(), capacity + 3) != capacity) std::_Exit(16);
            if (drained[capacity] != ~0ull || drained[capacity - 1] != capacity) std::_Exit(17);
            if constexpr (std::is_same_v<Ring, RawSpscRing>) {
                // In place: the regions name the stride and count the handle attached with.
                const mproc::RingRegion free = attached.reserve(capacity);
                if (free.count == 0 || free.count > capacity || free.stride != expected_stride) std::_Exit(18);
                for (std::size_t i = 0; i < free.count; ++i) std::memcpy(free.slot(i), &next, sizeof next);
                attached.commit(free.count);
                const mproc::RingRegion ready = attached.peek(capacity);
                if (ready.count != free.count || ready.stride != expected_stride) std::_Exit(19);
                attached.release(ready.count);
            } else {
                // A length rewritten beyond the slot is clamped to the slot size the handle attached with.
                const std::uint64_t item = 7;
                if (attached.put(std::as_bytes(std::span(&item, 1)), 0s) != RingStatus::ok) std::_Exit(20);
                auto* header = reinterpret_cast<mproc::detail::MpmcSlotHeader*>(attached.geometry().slot_at(
                    std::atomic_ref(attached.control().consumer.position).load(std::memory_order_relaxed)));
                header->length = 1u << 20;
                std::uint64_t out[3] = {~0ull, 0, ~0ull};
                std::size_t length = 0;
                if (attached.get(std::as_writable_bytes(std::span(&out[1], 1)), 0s, &length) != RingStatus::ok)
                    std::_Exit(21);
                if (length != slot_size || out[0] != ~0ull || out[2] != ~0ull || out[1] != item) std::_Exit(22);
                mproc::MpmcReservation reservation;
                if (attached.reserve(reservation, 0s) != RingStatus::ok || reservation.slot().size() != slot_size)
                    std::_Exit(23);
                reservation.commit(slot_size);
                mproc::MpmcLease lease;
                if (attached.peek(lease, 0s) != RingStatus::ok || lease.message().size() != slot_size) std::_Exit(24);
                lease.release();
            }
            // A new handle refuses the rewritten constants outright.
            try {
                Ring::attach(memory, size);
                std::_Exit(25);
            } catch (const mproc::InvalidObject&) {
            }
            std::_Exit(0);
        });
        assert_exited_cleanly(user.wait(10s));
    }

    void testInvalidShapesAreValueErrors() {
        CPPUNIT_ASSERT_THROW(Queue<int>(0), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(Queue<int>(1), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(Queue<int>(12), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(Queue<int>(8, static_cast<QueueKind>(7)), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(RawSpscRing::required_size(8, 0), mproc::ValueError);
        SharedBytes bytes(4096);
        CPPUNIT_ASSERT_THROW(RawSpscRing::init(bytes.memory, 100, 8, 8), mproc::ValueError);
        const std::size_t size = RawSpscRing::required_size(8, 8);
        RawSpscRing ring = RawSpscRing::init(bytes.memory, size, 8, 8);
        std::array<std::byte, 16> big{};
        CPPUNIT_ASSERT_THROW(ring.put(big), mproc::ValueError);
        std::array<std::byte, 4> small{};
        CPPUNIT_ASSERT_THROW(ring.get(small), mproc::ValueError);
    }

    void testByteQueueCarriesVariableLengthMessages() {
        for (QueueKind kind : {QueueKind::mpmc, QueueKind::spsc}) {
            ByteQueue queue(100, 8, kind);
            CPPUNIT_ASSERT_EQUAL(std::size_t{100}, queue.max_message());
            ForkedChild producer([&] {
                for (int length = 0; length <= 100; ++length) queue.put(std::string(static_cast<std::size_t>(length), 'a' + length % 26));
                std::_Exit(0);
            });
            for (int length = 0; length <= 100; ++length) {
                const std::vector<std::byte> message = queue.get(true, 10s);
                CPPUNIT_ASSERT_EQUAL(static_cast<std::size_t>(length), message.size());
                for (std::byte byte : message) CPPUNIT_ASSERT_EQUAL(static_cast<int>('a' + length % 26), static_cast<int>(byte));
            }
            const int status = producer.wait(10s);
            CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }

    void testByteQueueRejectsOversizedAndCorruptedRecords() {
        const std::string name = mproc::test::unique_name("bytes");
        // No spill budget: a message longer than a slot is refused (tests/queue_large_test.cpp: with one).
        ByteQueue queue = ByteQueue::create(name, 32, 4, QueueKind::spsc, 0600, 0);
        CPPUNIT_ASSERT_THROW(queue.put(std::string(33, 'x')), mproc::ValueError);
        CPPUNIT_ASSERT(queue.empty());
        queue.put(std::string(5, 'y'));
        // Corrupt the length of the record in slot 0 through another mapping of the same object.
        mproc::SharedMemory raw = mproc::SharedMemory::open_object(name, mproc::ObjectKind::queue,
                                                                   mproc::current_layout_version(mproc::ObjectKind::queue));
        const std::uint32_t huge = 1000;
        std::memcpy(raw.bytes().data() + sizeof(mproc::detail::RingControl), &huge, sizeof huge);
        try {
            queue.get();
            CPPUNIT_FAIL("a record longer than max_message was trusted");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("claims 1000 bytes") != std::string::npos);
        }
        queue.put(std::string(3, 'z'));
        CPPUNIT_ASSERT_EQUAL(std::size_t{3}, queue.get().size());  // the queue goes on
        ByteQueue opened = ByteQueue::open(name);
        CPPUNIT_ASSERT_EQUAL(std::size_t{32}, opened.max_message());
        queue.unlink();
    }

    void testSimpleQueueAcrossProcesses() {
        SimpleQueue<std::uint64_t> queue(16);
        CPPUNIT_ASSERT(queue.empty());
        ForkedChild producer([&] {
            for (std::uint64_t i = 0; i < 10000; ++i) queue.put(i);
            queue.close();
            std::_Exit(0);
        });
        std::uint64_t expected = 0;
        try {
            for (;;) {
                const std::uint64_t item = queue.get();
                CPPUNIT_ASSERT_EQUAL(expected, item);
                ++expected;
            }
        } catch (const mproc::Closed&) {
        }
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{10000}, expected);
        const int status = producer.wait(10s);
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    void testJoinableQueueJoinWaitsForEveryTaskDone() {
        JoinableQueue<int> queue(16);
        Shared<std::atomic<int>> processed;
        for (int i = 0; i < 10; ++i) queue.put(i);
        CPPUNIT_ASSERT(!queue.join(30ms));  // nothing done yet
        ForkedChild worker([&] {
            for (int i = 0; i < 10; ++i) {
                queue.get();
                std::this_thread::sleep_for(5ms);
                // relaxed: task_done() below releases it and join() acquires, which orders it before the check.
                processed->fetch_add(1, std::memory_order_relaxed);
                queue.task_done();
            }
            std::_Exit(0);
        });
        CPPUNIT_ASSERT(queue.join(20s));
        // join returned only after the last task_done. relaxed: join()'s acquire pairs with the release of
        // each task_done(), which followed the increment.
        CPPUNIT_ASSERT_EQUAL(10, processed->load(std::memory_order_relaxed));
        const int status = worker.wait(10s);
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CPPUNIT_ASSERT(queue.join(0ms));
    }

    void testTooManyTaskDoneIsValueError() {
        JoinableQueue<int> queue(4);
        CPPUNIT_ASSERT_THROW(queue.task_done(), mproc::ValueError);
        queue.put(1);
        queue.get();
        queue.task_done();
        CPPUNIT_ASSERT_THROW(queue.task_done(), mproc::ValueError);
        CPPUNIT_ASSERT(queue.join(0ms));
        // A put refused for a full queue does not count as a task.
        for (int i = 0; i < 4; ++i) queue.put(i);
        CPPUNIT_ASSERT_THROW(queue.put_nowait(5), mproc::Full);
        for (int i = 0; i < 4; ++i) {
            queue.get();
            queue.task_done();
        }
        CPPUNIT_ASSERT(queue.join(0ms));
    }

    // A process that attached a ring is registered for membarrier(GLOBAL_EXPEDITED) and notifies without a
    // fence, unless MPROC_NOTIFY_FENCE asks otherwise (tests/meson.build runs this suite both ways).
    void testNotifyIsFenceFreeUnlessTheEnvironmentAsksForTheFence() {
        Queue<int> queue(4, QueueKind::spsc);
        const char* setting = std::getenv("MPROC_NOTIFY_FENCE");
        const bool fence_asked = setting != nullptr && setting[0] != '\0' && std::strcmp(setting, "0") != 0;
        const long commands = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        const bool membarrier_usable = commands >= 0 && (commands & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0;
        // relaxed: read in the thread that registered.
        const bool elided = mproc::detail::notify_fence_elided.load(std::memory_order_relaxed);
        if (!fence_asked && !membarrier_usable)
            MPROC_SKIP("membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) is not available here");
        CPPUNIT_ASSERT_EQUAL(!fence_asked, elided);
        // A forked child inherits the registration with the flag, and its notifies still reach a sleeper.
        ForkedChild child([&] {
            CPPUNIT_ASSERT_EQUAL(elided, mproc::detail::notify_fence_elided.load(std::memory_order_relaxed));
            for (int i = 0; i < 1000; ++i) queue.put(i);
        });
        for (int i = 0; i < 1000; ++i) CPPUNIT_ASSERT_EQUAL(i, queue.get(true, 10s));
        const int status = child.wait();
        CPPUNIT_ASSERT_MESSAGE("the child saw another notify path, or failed", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    // The waiters' spin (src/adaptive_spin.hpp): halved by each wait that had to sleep, down to a floor;
    // raised at once to twice the pauses a successful spin needed (plus headroom), up to a cap; probing now
    // and then from the floor.
    void testSpinBudgetShrinksWhenSpinningFailsAndGrowsWhenItPays() {
        using mproc::detail::AdaptiveSpinBudget;
        AdaptiveSpinBudget budget;
        CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMaxSpins / 2, budget.budget());
        for (int i = 0; i < 20; ++i) budget.spin_failed();
        CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMinSpins, budget.budget());
        budget.spin_succeeded(5);
        CPPUNIT_ASSERT_EQUAL(2 * 5 + AdaptiveSpinBudget::kSpinHeadroom, budget.budget());
        budget.spin_succeeded(1);  // a quicker success never lowers it
        CPPUNIT_ASSERT_EQUAL(2 * 5 + AdaptiveSpinBudget::kSpinHeadroom, budget.budget());
        budget.spin_succeeded(10'000);
        CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMaxSpins, budget.budget());
        budget.spin_failed();
        CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMaxSpins / 2, budget.budget());
        // At the floor, every kProbePeriod-th wait probes with a long spin; a probe that fails leaves it there.
        for (int i = 0; i < 20; ++i) budget.spin_failed();
        for (int wait = 1; wait < AdaptiveSpinBudget::kProbePeriod; ++wait)
            CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMinSpins, budget.budget());
        CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMaxSpins / 2, budget.budget());
        budget.spin_failed();
        CPPUNIT_ASSERT_EQUAL(AdaptiveSpinBudget::kMinSpins, budget.budget());
        // Turned off (the benchmarks' sleeping rows): no spin at all, probes included; turned on again, the
        // budget resumes where it was.
        budget.set_spinning(false);
        for (int wait = 0; wait <= AdaptiveSpinBudget::kProbePeriod; ++wait) CPPUNIT_ASSERT_EQUAL(0, budget.budget());
        budget.set_spinning(true);
        CPPUNIT_ASSERT(budget.budget() >= AdaptiveSpinBudget::kMinSpins);
    }

    // copy_message_in copies in words up to kWordCopyLimit and by memcpy above it: every size on both sides
    // of the limit, at every alignment of the source, copies exactly its bytes and touches nothing after.
    void testMessageCopyIsExactForEverySize() {
        constexpr std::size_t kLargest = mproc::detail::kWordCopyLimit + 20;
        std::vector<std::byte> source(kLargest + 8);
        for (std::size_t i = 0; i < source.size(); ++i) source[i] = static_cast<std::byte>(i * 7 + 1);
        for (std::size_t size = 0; size <= kLargest; ++size) {
            for (std::size_t offset = 0; offset < 8; ++offset) {
                std::vector<std::byte> slot(kLargest + 16, std::byte{0xEE});
                mproc::detail::copy_message_in(slot.data(), source.data() + offset, size);
                for (std::size_t i = 0; i < size; ++i)
                    CPPUNIT_ASSERT_EQUAL_MESSAGE("size " + std::to_string(size) + ", byte " + std::to_string(i),
                                                 static_cast<int>(source[offset + i]), static_cast<int>(slot[i]));
                for (std::size_t i = size; i < slot.size(); ++i)
                    CPPUNIT_ASSERT_EQUAL_MESSAGE("size " + std::to_string(size) + ": byte " + std::to_string(i) +
                                                     " after the message was written",
                                                 0xEE, static_cast<int>(slot[i]));
            }
        }
    }

    // Typed queues whose item sizes are not multiples of the copy's 8-byte word — 3 bytes (a tail only) and
    // 67 (eight words and a tail), through the inline SPSC path and the MPMC path — and one above the
    // word-copy limit, filled by a forked producer.
    template <std::size_t kBytes>
    static void check_odd_size_items_cross_intact(QueueKind kind) {
        using Item = std::array<std::uint8_t, kBytes>;
        constexpr int kItems = 500;
        const auto item_for = [](int sequence) {
            Item item;
            for (std::size_t i = 0; i < kBytes; ++i) item[i] = static_cast<std::uint8_t>(sequence * 31 + i * 5 + 3);
            return item;
        };
        Queue<Item> queue(16, kind);
        ForkedChild producer([&] {
            for (int sequence = 0; sequence < kItems; ++sequence) queue.put(item_for(sequence));
            std::_Exit(0);
        });
        for (int sequence = 0; sequence < kItems; ++sequence) {
            const Item got = queue.get(true, 10s);
            CPPUNIT_ASSERT_MESSAGE(std::to_string(kBytes) + "-byte item " + std::to_string(sequence) + " changed on the way",
                                   got == item_for(sequence));
        }
        const int status = producer.wait(10s);
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    void testMessagesOfOddSizesCrossProcessesByteForByte() {
        for (QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            check_odd_size_items_cross_intact<3>(kind);
            check_odd_size_items_cross_intact<67>(kind);
            check_odd_size_items_cross_intact<mproc::detail::kWordCopyLimit + 13>(kind);
        }
    }

    // The same for the Queue handle, through its inline SPSC path, its full path (blocking calls with a
    // timeout, batches) and an MPMC queue: a rewrite after attach changes nothing it does.
    void testQueueKeepsTheConstantsItAttachedWith() {
        for (QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            // 16 SPSC slots of 8 bytes, 4 MPMC slots of 32: sizes that are multiples of 128.
            const std::size_t capacity = kind == QueueKind::spsc ? 16 : 4;
            const std::size_t size = Queue<std::uint64_t>::placed_size(capacity, kind);
            BytesBeforeGuardPage bytes(size);
            std::byte* memory = bytes.memory;
            auto queue = Queue<std::uint64_t>::place(memory, size, capacity, kind);
            const std::size_t slot_bytes =
                static_cast<std::size_t>(bytes.guard - memory) - sizeof(mproc::detail::RingControl);
            ForkedChild user([&] {
                auto attached = Queue<std::uint64_t>::attach(memory, size);
                rewrite_ring_constants(attached.core().control(), slot_bytes);
                for (std::uint64_t round = 0; round < 2; ++round) {
                    for (std::uint64_t i = 0; i < capacity; ++i) attached.put(round * 100 + i, false);  // inline
                    if (attached.qsize() != capacity || !attached.full()) std::_Exit(10);
                    for (std::uint64_t i = 0; i < capacity; ++i)
                        if (attached.get(false) != round * 100 + i) std::_Exit(11);
                }
                for (std::uint64_t i = 0; i < 2 * capacity; ++i) {  // the full path, with a timeout
                    attached.put(i, true, 1s);
                    if (attached.get(true, 1s) != i) std::_Exit(12);
                }
                std::vector<std::uint64_t> batch(capacity + 2, 5);
                if (attached.put_many(batch) != capacity) std::_Exit(13);
                if (attached.get_many(batch) != capacity) std::_Exit(14);
                try {
                    Queue<std::uint64_t>::attach(memory, size);
                    std::_Exit(15);
                } catch (const mproc::InvalidObject&) {
                }
                std::_Exit(0);
            });
            assert_exited_cleanly(user.wait(10s));
        }
    }
};

// ---------------------------------------------------------------------------------------------------------
// Crash suite: participants SIGKILLed at random moments. After each round, no message was got twice, no
// message that was put (put returned) is missing except one per killed consumer, no message that was never
// put appears, each consumer saw each producer's messages in order, and the survivors finished (a slot
// held by a dead claimer was reclaimed: otherwise they would hang).

constexpr int kCrashProducers = 2;
constexpr int kCrashConsumers = 2;
constexpr std::uint64_t kCrashMessages = 3000;

// Large enough that copying it in or out (inside a claim) takes a good part of each put and get, so that
// random kills often land while a slot is claimed.
struct CrashMessage {
    std::uint32_t producer;
    std::uint32_t check;
    std::uint64_t sequence;
    std::uint8_t filler[16384];
};

CrashMessage make_crash_message(std::uint32_t producer, std::uint64_t sequence) {
    CrashMessage message;
    message.producer = producer;
    message.sequence = sequence;
    message.check = ~static_cast<std::uint32_t>(sequence);
    std::memset(message.filler, static_cast<int>(sequence & 0xff), sizeof message.filler);
    return message;
}

bool intact(const CrashMessage& message) {
    const auto expected = static_cast<std::uint8_t>(message.sequence & 0xff);
    if (message.check != ~static_cast<std::uint32_t>(message.sequence)) return false;
    for (std::size_t i = 0; i < sizeof message.filler; i += 511)
        if (message.filler[i] != expected) return false;
    return message.filler[sizeof message.filler - 1] == expected;
}

struct CrashBoard {
    std::atomic<std::uint64_t> completed[kCrashProducers]{};  // puts that returned, per producer
    std::atomic<std::uint8_t> received[kCrashProducers][kCrashMessages]{};
    std::atomic<int> order_violations{0};
    std::atomic<int> torn{0};
    std::atomic<int> unknown{0};
    std::atomic<int> started{0};
};

void record_received(CrashBoard& board, const CrashMessage& message, std::vector<std::int64_t>& last) {
    if (!intact(message) || message.producer >= kCrashProducers || message.sequence >= kCrashMessages) {
        // relaxed (all): the board is read only after the parent reaps the consumers, which orders it.
        board.unknown.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (static_cast<std::int64_t>(message.sequence) <= last[message.producer])
        board.order_violations.fetch_add(1, std::memory_order_relaxed);
    last[message.producer] = static_cast<std::int64_t>(message.sequence);
    board.received[message.producer][message.sequence].fetch_add(1, std::memory_order_relaxed);
}

// Whether process `pid` (single-threaded: its TID is its PID) holds a slot's claim in `ring` now.
bool holds_claim(const mproc::RawMpmcRing& ring, pid_t pid) {
    for (std::size_t i = 0; i < ring.capacity(); ++i) {
        auto* header = reinterpret_cast<mproc::detail::MpmcSlotHeader*>(ring.geometry().slot_at(i));
        // relaxed: the claimer is stopped, so the word cannot change under this read but by the kernel.
        if ((std::atomic_ref(header->claim).load(std::memory_order_relaxed) & FUTEX_TID_MASK) ==
            static_cast<std::uint32_t>(pid))
            return true;
    }
    return false;
}

// SIGKILLs `child` while it holds a claim in `ring`: stops it at random moments and looks, resuming it when
// it holds none, until the deadline or its end. Random kills alone land inside a claim rarely on a loaded
// machine, and the repair path must be exercised in every run. Returns whether it killed.
bool kill_inside_claim(ForkedChild& child, const mproc::RawMpmcRing& ring, std::mt19937& random,
                       Clock::time_point deadline) {
    while (Clock::now() < deadline) {
        if (::kill(child.pid(), SIGSTOP) != 0) return false;
        char state = mproc::test::process_state(child.pid());
        while (state != 'T' && state != 't' && state != 'Z' && state != 0 && Clock::now() < deadline) {
            std::this_thread::sleep_for(10us);
            state = mproc::test::process_state(child.pid());
        }
        if (state == 'Z' || state == 0) return false;  // it finished first
        if ((state == 'T' || state == 't') && holds_claim(ring, child.pid())) {
            child.kill(SIGKILL);
            return true;
        }
        ::kill(child.pid(), SIGCONT);
        std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 300)(random)));
    }
    return false;
}

// One round; adds the number of participants killed to killed_total, and those killed while they held a
// claim (MPMC only) to claim_kills.
void crash_round(QueueKind kind, std::mt19937& random, int& killed_total, std::uint64_t& repaired_total,
                 int& claim_kills) {
    Queue<CrashMessage> queue(kind == QueueKind::spsc ? 16 : 8, kind);
    Shared<CrashBoard> board;
    const int producers = kind == QueueKind::spsc ? 1 : kCrashProducers;
    const int consumers = kind == QueueKind::spsc ? 1 : kCrashConsumers;

    const auto producer_body = [&](int producer) {
        // relaxed: a start count for the kill timing; it publishes nothing.
        board->started.fetch_add(1, std::memory_order_relaxed);
        for (std::uint64_t sequence = 0; sequence < kCrashMessages; ++sequence) {
            queue.put(make_crash_message(static_cast<std::uint32_t>(producer), sequence), true, 20s);
            // relaxed: read only after the parent reaps this producer, which orders it.
            board->completed[producer].store(sequence + 1, std::memory_order_relaxed);
        }
        std::_Exit(0);
    };
    const auto consumer_body = [&] {
        // relaxed: a start count for the kill timing; it publishes nothing.
        board->started.fetch_add(1, std::memory_order_relaxed);
        std::vector<std::int64_t> last(kCrashProducers, -1);
        for (;;) {
            CrashMessage message;
            try {
                message = queue.get(true, 20s);
            } catch (const mproc::Closed&) {
                std::_Exit(0);
            } catch (const mproc::Empty&) {
                std::_Exit(5);  // stuck for 20 s: a slot was never reclaimed
            }
            record_received(*board, message, last);
        }
    };

    std::vector<std::unique_ptr<ForkedChild>> producer_children;
    std::vector<std::unique_ptr<ForkedChild>> consumer_children;
    for (int p = 0; p < producers; ++p)
        producer_children.push_back(std::make_unique<ForkedChild>([&, p] { producer_body(p); }));
    for (int c = 0; c < consumers; ++c) consumer_children.push_back(std::make_unique<ForkedChild>(consumer_body));

    // Kill one participant (sometimes two, never every consumer) at a random moment of the transfer.
    const int victims = std::uniform_int_distribution<int>(1, 2)(random);
    std::vector<bool> consumer_killed(static_cast<std::size_t>(consumers), false);
    std::vector<bool> producer_killed(static_cast<std::size_t>(producers), false);
    int consumers_killed = 0;
    const auto give_up = Clock::now() + 10s;
    // relaxed: pairs with the start counts, which publish nothing (they only time the kills).
    while (board->started.load(std::memory_order_relaxed) < producers + consumers && Clock::now() < give_up)
        std::this_thread::sleep_for(50us);
    // MPMC: every third round, the first victim is killed while it holds a slot's claim.
    std::optional<mproc::RawMpmcRing> ring;
    if (kind == QueueKind::mpmc && std::uniform_int_distribution<int>(0, 2)(random) == 0)
        ring.emplace(mproc::RawMpmcRing::attach(&queue.core().control(),
                                                Queue<CrashMessage>::placed_size(queue.capacity())));
    for (int v = 0; v < victims; ++v) {
        std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 4000)(random)));
        const int who = std::uniform_int_distribution<int>(0, producers + consumers - 1)(random);
        const bool inside_claim = v == 0 && ring.has_value();
        ForkedChild* victim = nullptr;
        if (who < producers) {
            if (producer_killed[static_cast<std::size_t>(who)]) continue;
            victim = producer_children[static_cast<std::size_t>(who)].get();
        } else {
            const auto c = static_cast<std::size_t>(who - producers);
            if (consumer_killed[c] || consumers_killed + 1 == consumers) continue;
            victim = consumer_children[c].get();
        }
        if (inside_claim) {
            if (!kill_inside_claim(*victim, *ring, random, Clock::now() + 2s)) continue;
            ++claim_kills;
        } else {
            victim->kill(SIGKILL);
        }
        if (who < producers) {
            producer_killed[static_cast<std::size_t>(who)] = true;
        } else {
            consumer_killed[static_cast<std::size_t>(who - producers)] = true;
            ++consumers_killed;
        }
        ++killed_total;
    }
    if (kind == QueueKind::spsc && consumers_killed == 0 && std::uniform_int_distribution<int>(0, 1)(random) == 1) {
        // SPSC's contract after a consumer death is exercised below: kill it, wait, start a new one.
        consumer_children[0]->kill(SIGKILL);
        consumer_killed[0] = true;
        consumers_killed = 1;
        ++killed_total;
    }
    bool first_consumer_reaped = false;
    if (kind == QueueKind::spsc && consumers_killed == 1) {
        consumer_children[0]->wait(10s);  // only once the old consumer is known dead
        first_consumer_reaped = true;
        consumer_children.push_back(std::make_unique<ForkedChild>(consumer_body));
    }

    for (auto& child : producer_children) child->wait(30s);
    queue.close();
    for (std::size_t c = first_consumer_reaped ? 1 : 0; c < consumer_children.size(); ++c) {
        const int status = consumer_children[c]->wait(30s);
        const bool killed = c < consumer_killed.size() && consumer_killed[c];
        if (!killed)
            CPPUNIT_ASSERT_MESSAGE("a surviving consumer did not finish cleanly, status " + std::to_string(status),
                                   WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    // Nothing is left to get. An SPSC producer killed between moving its index and publishing leaves a slot
    // that qsize() counts until a next put (there is none here) publishes it as skipped.
    CPPUNIT_ASSERT(!queue.core().ready_to_get());
    const std::size_t producers_killed =
        static_cast<std::size_t>(std::count(producer_killed.begin(), producer_killed.end(), true));
    CPPUNIT_ASSERT_MESSAGE("qsize " + std::to_string(queue.qsize()),
                           queue.qsize() <= (kind == QueueKind::spsc ? producers_killed : 0));
    repaired_total += queue.repaired_slots();

    // relaxed (all board loads): every producer and consumer was reaped above, which orders their stores.
    CPPUNIT_ASSERT_EQUAL(0, board->unknown.load(std::memory_order_relaxed));
    CPPUNIT_ASSERT_EQUAL(0, board->order_violations.load(std::memory_order_relaxed));
    int missing = 0;
    for (int p = 0; p < producers; ++p) {
        const std::uint64_t completed = board->completed[p].load(std::memory_order_relaxed);
        if (!producer_killed[static_cast<std::size_t>(p)]) CPPUNIT_ASSERT_EQUAL(kCrashMessages, completed);
        for (std::uint64_t s = 0; s < kCrashMessages; ++s) {
            const int copies = board->received[p][s].load(std::memory_order_relaxed);
            CPPUNIT_ASSERT_MESSAGE("message " + std::to_string(s) + " of producer " + std::to_string(p) +
                                       " was got " + std::to_string(copies) + " times",
                                   copies <= 1);
            if (s < completed && copies == 0) ++missing;
            // Beyond the one in flight when its producer died, nothing was ever put.
            if (s > completed) CPPUNIT_ASSERT_EQUAL(0, copies);
        }
    }
    CPPUNIT_ASSERT_MESSAGE(std::to_string(missing) + " messages lost with " + std::to_string(consumers_killed) +
                               " consumers killed",
                           missing <= consumers_killed);
}

class QueueCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(QueueCrashTest);
    CPPUNIT_TEST(testMpmcKilledParticipantsLoseAtMostTheirInFlightMessage);
    CPPUNIT_TEST(testSpscKilledParticipantsLoseAtMostTheirInFlightMessage);
    CPPUNIT_TEST(testProducerKilledHoldingClaimDoesNotBlockConsumers);
    CPPUNIT_TEST(testKilledHoldersOfReservationAndLeaseAreRepaired);
    CPPUNIT_TEST_SUITE_END();

public:
    void testMpmcKilledParticipantsLoseAtMostTheirInFlightMessage() {
        std::mt19937 random(static_cast<unsigned>(::getpid()));
        int killed = 0;
        int claim_kills = 0;
        std::uint64_t repaired = 0;
        const auto start = Clock::now();
        int rounds = 0;
        // The time budget ends the rounds only once the floor is reached: a loaded machine (the sanitized
        // build beside other work) is slower, never a reason to test less.
        const int least_rounds = kSanitized ? 25 : 50;
        for (; rounds < 300 && (rounds < least_rounds || Clock::now() - start < 25s); ++rounds)
            crash_round(QueueKind::mpmc, random, killed, repaired, claim_kills);
        std::printf("\n  mpmc crash: %d rounds, %d participants killed (%d holding a claim), %llu slots repaired\n",
                    rounds, killed, claim_kills, static_cast<unsigned long long>(repaired));
        CPPUNIT_ASSERT(rounds >= least_rounds);
        CPPUNIT_ASSERT_MESSAGE("no participant was killed holding a claim", claim_kills > 0);
        CPPUNIT_ASSERT_MESSAGE("no kill landed inside a claim: the repair path went untested", repaired > 0);
    }

    void testSpscKilledParticipantsLoseAtMostTheirInFlightMessage() {
        std::mt19937 random(static_cast<unsigned>(::getpid()) + 1);
        int killed = 0;
        std::uint64_t repaired = 0;
        const auto start = Clock::now();
        int rounds = 0;
        int claim_kills = 0;  // SPSC rings have no claims
        constexpr int kLeastRounds = 30;  // as in the MPMC test: the time budget applies past this floor
        for (; rounds < 200 && (rounds < kLeastRounds || Clock::now() - start < 15s); ++rounds)
            crash_round(QueueKind::spsc, random, killed, repaired, claim_kills);
        std::printf("\n  spsc crash: %d rounds, %d participants killed\n", rounds, killed);
        CPPUNIT_ASSERT(rounds >= kLeastRounds);
    }

    // Deterministic: a producer stopped (SIGSTOP) while it holds a claimed slot, then killed. The consumer,
    // asleep on that slot, is woken by the kernel's robust-futex handling and steps over the slot at once,
    // well before any timeout.
    void testProducerKilledHoldingClaimDoesNotBlockConsumers() {
        const std::size_t size = RawMpmcRing::required_size(4, 8);
        SharedBytes bytes(size);
        RawMpmcRing::init(bytes.memory, size, 4, 8);
        // The child runs put()'s steps K (claim slot 0, covered by list_op_pending) and M (enqueue position
        // 0 -> 1) through the same robust-list helper, then stops before writing: a producer frozen between
        // M and D.
        ForkedChild stuck([&] {
            auto* header = reinterpret_cast<mproc::detail::MpmcSlotHeader*>(static_cast<std::byte*>(bytes.memory) +
                                                                              sizeof(mproc::detail::RingControl));
            robust_claim_and_stop(header, &static_cast<mproc::detail::RingControl*>(bytes.memory)->producer.position);
        });
        // Wait until the child has claimed slot 0 and moved the enqueue position.
        auto* control = static_cast<mproc::detail::RingControl*>(bytes.memory);
        const auto give_up = Clock::now() + 10s;
        // acquire: pairs with the child's release store, so our ring operations below see its claim of slot 0.
        while (std::atomic_ref(control->producer.position).load(std::memory_order_acquire) != 1) {
            CPPUNIT_ASSERT(Clock::now() < give_up);
            std::this_thread::sleep_for(1ms);
        }
        RawMpmcRing same = RawMpmcRing::attach(bytes.memory, size);
        std::uint64_t value = 0;
        CPPUNIT_ASSERT(RingStatus::empty == same.try_get(std::as_writable_bytes(std::span(&value, 1))));
        std::thread killer([&] {
            std::this_thread::sleep_for(200ms);
            stuck.kill(SIGKILL);
        });
        std::thread producer([&] {
            std::this_thread::sleep_for(400ms);
            const std::uint64_t item = 77;
            same.put(std::as_bytes(std::span(&item, 1)));
        });
        const auto start = Clock::now();
        const RingStatus status = same.get(std::as_writable_bytes(std::span(&value, 1)), 20s);
        const auto waited = Clock::now() - start;
        killer.join();
        producer.join();
        CPPUNIT_ASSERT(RingStatus::ok == status);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t{77}, value);  // the dead producer's slot was stepped over
        CPPUNIT_ASSERT(waited < 5s);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, same.size());
    }

    // A producer killed while it holds a reserve()d slot, and a consumer killed while it holds a peek()ed
    // message: the survivors step over the first and free the second (its message is lost), promptly.
    void testKilledHoldersOfReservationAndLeaseAreRepaired() {
        const std::size_t size = RawMpmcRing::required_size(4, 8);
        SharedBytes bytes(size);
        RawMpmcRing ring = RawMpmcRing::init(bytes.memory, size, 4, 8);
        auto* control = static_cast<mproc::detail::RingControl*>(bytes.memory);
        const auto wait_for_position = [&](std::uint64_t& position, std::uint64_t value) {
            const auto give_up = Clock::now() + 10s;
            while (std::atomic_ref(position).load(std::memory_order_acquire) != value) {
                CPPUNIT_ASSERT(Clock::now() < give_up);
                std::this_thread::sleep_for(1ms);
            }
        };
        ForkedChild producer([&] {
            RawMpmcRing same = RawMpmcRing::attach(bytes.memory, size);
            mproc::MpmcReservation reservation;
            if (same.reserve(reservation) != RingStatus::ok) std::_Exit(3);
            for (;;) ::pause();  // killed here, holding the slot
        });
        wait_for_position(control->producer.position, 1);
        producer.kill(SIGKILL);
        producer.wait();
        const std::uint64_t first = 41;
        ring.put(std::as_bytes(std::span(&first, 1)));
        std::uint64_t value = 0;
        CPPUNIT_ASSERT(RingStatus::ok == ring.get(std::as_writable_bytes(std::span(&value, 1)), 10s));
        CPPUNIT_ASSERT_EQUAL(first, value);  // the dead producer's slot was stepped over
        CPPUNIT_ASSERT_EQUAL(std::uint32_t{1}, ring.repaired_slots());

        const std::uint64_t lost = 42;
        ring.put(std::as_bytes(std::span(&lost, 1)));
        ForkedChild consumer([&] {
            RawMpmcRing same = RawMpmcRing::attach(bytes.memory, size);
            mproc::MpmcLease lease;
            if (same.peek(lease) != RingStatus::ok) std::_Exit(3);
            for (;;) ::pause();  // killed here, holding the message
        });
        wait_for_position(control->consumer.position, 3);
        consumer.kill(SIGKILL);
        consumer.wait();
        // Fill the ring: the put that needs the dead consumer's slot repairs it.
        for (std::uint64_t item = 50; item < 54; ++item)
            CPPUNIT_ASSERT(RingStatus::ok == ring.put(std::as_bytes(std::span(&item, 1)), 10s));
        for (std::uint64_t item = 50; item < 54; ++item) {
            CPPUNIT_ASSERT(RingStatus::ok == ring.get(std::as_writable_bytes(std::span(&value, 1)), 10s));
            CPPUNIT_ASSERT_EQUAL(item, value);
        }
        CPPUNIT_ASSERT_EQUAL(std::uint32_t{2}, ring.repaired_slots());
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, ring.size());
    }

private:
    static void robust_claim_and_stop(mproc::detail::MpmcSlotHeader* header, std::uint64_t* enqueue_position);
};

void QueueCrashTest::robust_claim_and_stop(mproc::detail::MpmcSlotHeader* header, std::uint64_t* enqueue_position) {
    mproc::detail::ThisThreadRobustList& self = mproc::detail::this_thread_robust_list();
    self.set_pending(reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(&header->claim) -
                                             mproc::detail::kRobustFutexOffset));
    std::uint32_t free_word = 0;
    // relaxed: the ring was initialised before fork(), so there is no earlier claimer to acquire from.
    if (!std::atomic_ref(header->claim).compare_exchange_strong(free_word, self.tid(), std::memory_order_relaxed))
        std::_Exit(3);
    // release: pairs with the parent's acquire load, so the claim above is visible before it tests the ring.
    std::atomic_ref(*enqueue_position).store(1, std::memory_order_release);
    for (;;) ::pause();  // killed here, holding the claim
}

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(QueueUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(QueueCrashTest, "crash");

}  // namespace
