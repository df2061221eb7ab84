// tests/queue_large_test.cpp — messages of any size through ByteQueue's spill arena (src/queue_spill.hpp):
// 0 B to 64 MiB through SPSC and MPMC queues whose slots are 64 bytes, across forked processes; the budget's
// limits (ValueError naming the sizes, Full while the budget is in use); named queues; descriptors and
// block entries rewritten by a hostile peer (InvalidObject, the queue goes on); and, in the crash suite,
// producers and consumers SIGKILLed in the middle of large messages: no torn message, no duplicate, losses
// within the messages in flight, and the whole budget usable again afterwards.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "queue_spill.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::ByteQueue;
using mproc::QueueKind;
using Clock = std::chrono::steady_clock;

// 60 bytes after the 4-byte length: 64-byte slots.
constexpr std::size_t kInline = 60;

// A message whose every byte derives from (id, length, index): a torn, shifted or mixed copy fails check().
struct Header {
    std::uint32_t producer;
    std::uint32_t sequence;
    std::uint64_t length;
};

std::byte pattern_byte(std::uint64_t id, std::size_t index) {
    return static_cast<std::byte>((id * 0x9e3779b97f4a7c15ull + index * 0x2545f491ull) >> 29);
}

std::vector<std::byte> make_message(std::uint32_t producer, std::uint32_t sequence, std::size_t length) {
    std::vector<std::byte> message(length);
    const std::uint64_t id = (std::uint64_t{producer} << 32) | sequence;
    for (std::size_t i = 0; i < length; ++i) message[i] = pattern_byte(id, i);
    if (length >= sizeof(Header)) {
        const Header header{producer, sequence, length};
        std::memcpy(message.data(), &header, sizeof header);
    }
    return message;
}

// Whether message is exactly what make_message made for its header (and the header's length is its size).
bool intact(const std::vector<std::byte>& message, Header& header) {
    if (message.size() < sizeof(Header)) return false;
    std::memcpy(&header, message.data(), sizeof header);
    if (header.length != message.size()) return false;
    const std::uint64_t id = (std::uint64_t{header.producer} << 32) | header.sequence;
    for (std::size_t i = sizeof(Header); i < message.size(); ++i)
        if (message[i] != pattern_byte(id, i)) return false;
    return true;
}

// Where the spill arena's block entries start in the queue's memory (the layout of src/queue_spill.hpp).
mproc::detail::SpillBlockEntry* entries_of(ByteQueue& queue) {
    auto* base = reinterpret_cast<std::byte*>(&queue.core().control());
    const std::size_t ring = mproc::detail::QueueCore::placed_size(queue.core().kind(), queue.capacity(),
                                                                   queue.core().slot_size());
    const std::size_t arena = (ring + mproc::detail::kSpillAlignment - 1) / mproc::detail::kSpillAlignment *
                              mproc::detail::kSpillAlignment;
    return reinterpret_cast<mproc::detail::SpillBlockEntry*>(base + arena + mproc::detail::kSpillAlignment);
}

// The slot payload for the message at `position` (MPMC: after the 16-byte slot header).
std::byte* payload_at(ByteQueue& queue, std::uint64_t position) {
    const mproc::detail::RingGeometry ring = queue.core().kind() == QueueKind::mpmc
                                                 ? mproc::RawMpmcRing::attach(&queue.core().control(), 1ull << 30).geometry()
                                                 : mproc::RawSpscRing::attach(&queue.core().control(), 1ull << 30).geometry();
    return ring.slot_at(position) + (queue.core().kind() == QueueKind::mpmc ? sizeof(mproc::detail::MpmcSlotHeader) : 0);
}

std::string contains_text(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos ? part : text;
}

class QueueLargeUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(QueueLargeUnitTest);
    CPPUNIT_TEST(testMessagesFromZeroTo64MiBCrossProcessesThrough64ByteSlots);
    CPPUNIT_TEST(testMessageLongerThanTheBudgetIsValueErrorNamingTheSizes);
    CPPUNIT_TEST(testBudgetInUseIsFullUntilAGetFreesIt);
    CPPUNIT_TEST(testBlockingPutWaitsForTheBudgetAConsumerFrees);
    CPPUNIT_TEST(testNamedQueueCarriesLargeMessagesToAnOpener);
    CPPUNIT_TEST(testRewrittenDescriptorOrBlockEntryIsInvalidObjectAndTheQueueGoesOn);
    CPPUNIT_TEST(testCloseDeliversSpilledMessagesPutBeforeIt);
    CPPUNIT_TEST_SUITE_END();

public:
    void testMessagesFromZeroTo64MiBCrossProcessesThrough64ByteSlots() {
        const std::vector<std::size_t> sizes = {0,      1,          59,          60,          61,      100,
                                                4095,   4096,       4097,        65536,       65537,   1000003,
                                                16u << 20, (64u << 20) - 1, 64u << 20, 24,     3};
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            ByteQueue queue(kInline, 4, kind, 64u << 20);
            CPPUNIT_ASSERT_EQUAL(std::size_t{64}, queue.core().slot_size());
            CPPUNIT_ASSERT_EQUAL(std::uint64_t{64} << 20, queue.spill_budget());
            ForkedChild producer([&] {
                for (std::size_t i = 0; i < sizes.size(); ++i)
                    queue.put(make_message(1, static_cast<std::uint32_t>(i), sizes[i]), true, 20s);
                std::_Exit(0);
            });
            for (std::size_t i = 0; i < sizes.size(); ++i) {
                const std::vector<std::byte> got = queue.get(true, 20s);
                CPPUNIT_ASSERT_EQUAL_MESSAGE("message " + std::to_string(i), sizes[i], got.size());
                CPPUNIT_ASSERT_MESSAGE("message " + std::to_string(i) + " of " + std::to_string(sizes[i]) + " bytes",
                                       got == make_message(1, static_cast<std::uint32_t>(i), sizes[i]));
            }
            assert_exited_cleanly(producer.wait(30s));
            // Every block came back: one message of the whole budget fits again, without waiting.
            queue.put_nowait(make_message(2, 0, 64u << 20));
            CPPUNIT_ASSERT(queue.get(true, 5s) == make_message(2, 0, 64u << 20));
        }
    }

    void testMessageLongerThanTheBudgetIsValueErrorNamingTheSizes() {
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            ByteQueue queue(kInline, 4, kind, 1u << 20);
            const std::string error = message_of<mproc::ValueError>([&] { queue.put(make_message(1, 0, (1u << 20) + 1)); });
            CPPUNIT_ASSERT_EQUAL(std::string("anonymous queue: put: a message of 1048577 bytes, at most 60 fit a slot "
                                             "and the spill budget is 1048576 bytes"),
                                 error);
            ByteQueue without(kInline, 4, kind, 0);
            CPPUNIT_ASSERT_EQUAL(std::string("anonymous queue: put: a message of 61 bytes, at most 60 fit a slot and "
                                             "the spill budget is 0 bytes"),
                                 message_of<mproc::ValueError>([&] { without.put(make_message(1, 0, 61)); }));
            CPPUNIT_ASSERT(queue.empty() && without.empty());
            queue.put(make_message(1, 1, 1u << 20));  // exactly the budget fits
            CPPUNIT_ASSERT(queue.get() == make_message(1, 1, 1u << 20));
        }
    }

    void testBudgetInUseIsFullUntilAGetFreesIt() {
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            ByteQueue queue(kInline, 8, kind, 64u << 10);  // 16 blocks of 4 KiB
            queue.put_nowait(make_message(1, 0, 40000));  // 10 blocks
            const std::string error = message_of<mproc::Full>([&] { queue.put_nowait(make_message(1, 1, 30000)); });
            CPPUNIT_ASSERT_EQUAL(std::string("anonymous queue: put: the spill budget is in use: a message of 30000 "
                                             "bytes needs 8 blocks of 4096, 6 of 16 are free"),
                                 error);
            CPPUNIT_ASSERT_THROW(queue.put(make_message(1, 1, 30000), true, 20ms), mproc::Full);
            queue.put_nowait(make_message(1, 2, 20000));  // 5 blocks still fit; small messages always do
            queue.put_nowait(make_message(1, 3, 30));
            CPPUNIT_ASSERT(queue.get_nowait() == make_message(1, 0, 40000));
            queue.put_nowait(make_message(1, 4, 30000));
            CPPUNIT_ASSERT(queue.get_nowait() == make_message(1, 2, 20000));
            CPPUNIT_ASSERT(queue.get_nowait() == make_message(1, 3, 30));
            CPPUNIT_ASSERT(queue.get_nowait() == make_message(1, 4, 30000));
            CPPUNIT_ASSERT_THROW(queue.get_nowait(), mproc::Empty);
        }
    }

    void testBlockingPutWaitsForTheBudgetAConsumerFrees() {
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            ByteQueue queue(kInline, 8, kind, 1u << 20);
            queue.put(make_message(1, 0, 1u << 20));
            ForkedChild producer([&] {
                queue.put(make_message(1, 1, 1u << 20), true, 20s);  // waits for the first to be got
                std::_Exit(0);
            });
            std::this_thread::sleep_for(50ms);
            CPPUNIT_ASSERT_EQUAL(std::size_t{1}, queue.qsize());
            CPPUNIT_ASSERT(queue.get(true, 5s) == make_message(1, 0, 1u << 20));
            CPPUNIT_ASSERT(queue.get(true, 5s) == make_message(1, 1, 1u << 20));
            assert_exited_cleanly(producer.wait(10s));
        }
    }

    void testNamedQueueCarriesLargeMessagesToAnOpener() {
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            const std::string name = unique_name("large");
            ByteQueue queue = ByteQueue::create(name, kInline, 4, kind, 0600, 8u << 20);
            ForkedChild producer([&] {
                ByteQueue opened = ByteQueue::open(name);
                if (opened.spill_budget() != (8u << 20)) std::_Exit(3);
                opened.put(make_message(3, 0, 5u << 20), true, 10s);
                opened.put(make_message(3, 1, 7), true, 10s);
                std::_Exit(0);
            });
            CPPUNIT_ASSERT(queue.get(true, 10s) == make_message(3, 0, 5u << 20));
            CPPUNIT_ASSERT(queue.get(true, 10s) == make_message(3, 1, 7));
            assert_exited_cleanly(producer.wait(10s));
            queue.unlink();
        }
    }

    void testRewrittenDescriptorOrBlockEntryIsInvalidObjectAndTheQueueGoesOn() {
        using mproc::detail::SpillDescriptor;
        struct Rewrite {
            const char* what;
            void (*apply)(SpillDescriptor& descriptor, mproc::detail::SpillBlockEntry* entries);
            const char* expected;
        };
        const Rewrite rewrites[] = {
            {"head out of range", [](SpillDescriptor& d, auto*) { d.head = 0xfffffff0u; }, "is index 4294967280"},
            {"length past the budget", [](SpillDescriptor& d, auto*) { d.length = ~0ull; }, "the budget is 65536"},
            {"block count", [](SpillDescriptor& d, auto*) { d.block_count = 1000; }, "in 1000 blocks, expected 2"},
            {"tag", [](SpillDescriptor& d, auto*) { d.tag += 4; }, "in the slot of tag"},
            {"block entry retagged", [](SpillDescriptor& d, auto* e) { e[d.head].tag = d.tag + 1; }, "is tagged 2"},
            {"chain loops", [](SpillDescriptor& d, auto* e) { e[d.head].next = d.head; }, "chunk 0, expected"},
        };
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            for (const Rewrite& rewrite : rewrites) {
                ByteQueue queue(kInline, 4, kind, 64u << 10);
                queue.put(make_message(1, 0, 5000));
                SpillDescriptor descriptor;
                std::byte* slot = payload_at(queue, 0);
                std::memcpy(&descriptor, slot, sizeof descriptor);
                CPPUNIT_ASSERT_EQUAL(mproc::detail::kSpilledMarker, descriptor.marker);
                rewrite.apply(descriptor, entries_of(queue));
                std::memcpy(slot, &descriptor, sizeof descriptor);
                queue.put(make_message(1, 1, 6000));
                const std::string error = message_of<mproc::InvalidObject>([&] { queue.get_nowait(); });
                CPPUNIT_ASSERT_EQUAL_MESSAGE(rewrite.what, std::string(rewrite.expected),
                                             contains_text(error, rewrite.expected));
                CPPUNIT_ASSERT_MESSAGE(error, error.find("the message is dropped") != std::string::npos);
                CPPUNIT_ASSERT_MESSAGE(rewrite.what, queue.get_nowait() == make_message(1, 1, 6000));
                // The dropped message's blocks return (its position is done); the whole budget fits again.
                queue.put_nowait(make_message(1, 2, 64u << 10));
                CPPUNIT_ASSERT_MESSAGE(rewrite.what, queue.get_nowait() == make_message(1, 2, 64u << 10));
            }
        }
    }

    void testCloseDeliversSpilledMessagesPutBeforeIt() {
        for (const QueueKind kind : {QueueKind::spsc, QueueKind::mpmc}) {
            ByteQueue queue(kInline, 4, kind, 1u << 20);
            queue.put(make_message(1, 0, 300000));
            queue.close();
            CPPUNIT_ASSERT_THROW(queue.put(make_message(1, 1, 300000)), mproc::Closed);
            CPPUNIT_ASSERT(queue.get(true, 1s) == make_message(1, 0, 300000));
            CPPUNIT_ASSERT_THROW(queue.get(true, 1s), mproc::Closed);
        }
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(QueueLargeUnitTest, "unit");

// The crash suite: rounds of producers and consumers moving large messages while the test SIGKILLs some.
constexpr std::uint32_t kMaxProducers = 8;
constexpr std::uint32_t kRoundMessages = 12;

struct CrashBoard {
    std::atomic<std::uint32_t> started{0};
    std::atomic<std::uint32_t> stop{0};                    // consumers exit at the next empty get
    std::atomic<std::uint32_t> completed[kMaxProducers];   // puts returned, per producer
    std::atomic<std::uint8_t> received[kMaxProducers][kRoundMessages];
    std::atomic<std::uint32_t> torn{0};
    std::atomic<std::uint32_t> duplicates{0};
    std::atomic<std::uint32_t> invalid{0};
};

std::size_t crash_length(std::uint32_t producer, std::uint32_t sequence) {
    // 5 KB .. 200 KB, and every fourth message small (inline), from the ids alone.
    const std::uint64_t mix = (std::uint64_t{producer} * 7919 + sequence) * 0x9e3779b97f4a7c15ull;
    return sequence % 4 == 3 ? 40 : 5000 + static_cast<std::size_t>((mix >> 40) % 200000);
}

void consume(ByteQueue& queue, CrashBoard& board) {
    // relaxed: a start count for the kill timing.
    board.started.fetch_add(1, std::memory_order_relaxed);
    for (;;) {
        std::vector<std::byte> message;
        try {
            message = queue.get(true, 10ms);
        } catch (const mproc::Empty&) {
            // acquire: the parent's stop comes after every survivor's puts.
            if (board.stop.load(std::memory_order_acquire) != 0) std::_Exit(0);
            continue;
        } catch (const mproc::InvalidObject&) {
            board.invalid.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: a counter the parent reads after reaping
            continue;
        }
        Header header{};
        if (message.size() == 40) {
            std::memcpy(&header, message.data(), sizeof header);
            if (header.length != 40 || message != make_message(header.producer, header.sequence, 40)) {
                // seq_cst: a counter the parent reads after reaping
                board.torn.fetch_add(1, std::memory_order_seq_cst);
                continue;
            }
        } else if (!intact(message, header)) {
            board.torn.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: a counter the parent reads after reaping
            continue;
        }
        if (header.producer >= kMaxProducers || header.sequence >= kRoundMessages) {
            board.torn.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: a counter the parent reads after reaping
            continue;
        }
        // seq_cst: read by the parent after reaping every consumer.
        // seq_cst (both): counters the parent reads after reaping.
        if (board.received[header.producer][header.sequence].fetch_add(1, std::memory_order_seq_cst) != 0)
            board.duplicates.fetch_add(1, std::memory_order_seq_cst);
    }
}

void produce(ByteQueue& queue, CrashBoard& board, std::uint32_t producer) {
    board.started.fetch_add(1, std::memory_order_relaxed);  // relaxed: as in consume()
    for (std::uint32_t sequence = 0; sequence < kRoundMessages; ++sequence) {
        try {
            queue.put(make_message(producer, sequence, crash_length(producer, sequence)), true, 10s);
        } catch (const mproc::Full&) {
            std::_Exit(6);  // stuck for 10 s: space or a slot was never reclaimed
        }
        // seq_cst: read by the parent after reaping
        board.completed[producer].store(sequence + 1, std::memory_order_seq_cst);
    }
    std::_Exit(0);
}

struct RoundResult {
    int kills = 0;
    int consumer_kills = 0;
    std::uint32_t lost = 0;
};

RoundResult crash_round(QueueKind kind, std::mt19937& random) {
    RoundResult result;
    ByteQueue queue(kInline, 8, kind, 2u << 20);  // 512 blocks of 4 KiB: producers often wait for space
    Shared<CrashBoard> board;
    const std::uint32_t initial_producers = kind == QueueKind::spsc ? 1 : 3;
    const std::uint32_t initial_consumers = kind == QueueKind::spsc ? 1 : 2;
    std::uint32_t next_producer = 0;
    std::vector<std::unique_ptr<ForkedChild>> producers;
    std::vector<std::unique_ptr<ForkedChild>> consumers;
    const auto start_producer = [&] {
        const std::uint32_t id = next_producer++;
        producers.push_back(std::make_unique<ForkedChild>([&, id] { produce(queue, *board, id); }));
    };
    const auto start_consumer = [&] {
        consumers.push_back(std::make_unique<ForkedChild>([&] { consume(queue, *board); }));
    };
    for (std::uint32_t p = 0; p < initial_producers; ++p) start_producer();
    for (std::uint32_t c = 0; c < initial_consumers; ++c) start_consumer();
    const auto give_up = Clock::now() + 5s;
    // relaxed: the start count only times the kills.
    while (board->started.load(std::memory_order_relaxed) < initial_producers + initial_consumers && Clock::now() < give_up)
        std::this_thread::sleep_for(50us);

    // One to three victims at random moments of the transfer (most of which is spent inside large messages).
    const int victims = std::uniform_int_distribution<int>(1, 3)(random);
    std::vector<bool> reaped_producer(kMaxProducers, false);
    std::vector<bool> reaped_consumer(8, false);
    for (int v = 0; v < victims; ++v) {
        std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(random)));
        const bool kill_consumer = std::uniform_int_distribution<int>(0, 1)(random) == 1;
        if (kill_consumer) {
            const auto c = static_cast<std::size_t>(std::uniform_int_distribution<std::size_t>(0, consumers.size() - 1)(random));
            if (reaped_consumer[c]) continue;
            consumers[c]->kill(SIGKILL);
            const int status = consumers[c]->wait(10s);
            reaped_consumer[c] = true;
            if (!WIFSIGNALED(status)) {
                assert_exited_cleanly(status);  // it had already finished
                continue;
            }
            ++result.kills;
            ++result.consumer_kills;
            if (consumers.size() < reaped_consumer.size()) start_consumer();  // SPSC: the replacement, once known dead
        } else {
            const auto p = static_cast<std::size_t>(std::uniform_int_distribution<std::size_t>(0, producers.size() - 1)(random));
            if (reaped_producer[p]) continue;
            producers[p]->kill(SIGKILL);
            const int status = producers[p]->wait(10s);
            reaped_producer[p] = true;
            if (!WIFSIGNALED(status)) {
                assert_exited_cleanly(status);  // it had already finished
                continue;
            }
            ++result.kills;
            if (kind == QueueKind::spsc && next_producer < kMaxProducers) start_producer();  // takes over
        }
    }
    for (std::size_t p = 0; p < producers.size(); ++p)
        if (!reaped_producer[p]) assert_exited_cleanly(producers[p]->wait(30s));
    board->stop.store(1, std::memory_order_release);  // release: after every survivor's last put
    for (std::size_t c = 0; c < consumers.size(); ++c)
        if (!reaped_consumer[c]) assert_exited_cleanly(consumers[c]->wait(30s));

    // What the queue still holds (a message a killed producer published before dying, or one the consumers
    // left when their last get timed out under load) is got and recorded here, as a consumer would.
    for (;;) {
        std::vector<std::byte> got;
        try {
            got = queue.get_nowait();  // every peer is reaped: a claim left is a dead one, repaired here
        } catch (const mproc::Empty&) {
            break;
        }
        Header header{};
        CPPUNIT_ASSERT(got.size() >= sizeof header);
        std::memcpy(&header, got.data(), sizeof header);
        CPPUNIT_ASSERT(header.producer < kMaxProducers && header.sequence < kRoundMessages &&
                       got == make_message(header.producer, header.sequence, got.size()));
        // seq_cst: as the consumers' marks.
        // seq_cst (both): counters the parent reads after reaping.
        if (board->received[header.producer][header.sequence].fetch_add(1, std::memory_order_seq_cst) != 0)
            board->duplicates.fetch_add(1, std::memory_order_seq_cst);
    }
    // Every block came back: a message of the whole budget goes in without waiting (this process now the
    // only producer and consumer) and comes out whole.
    static const std::vector<std::byte> whole_budget = make_message(7, 0, queue.spill_budget());
    try {
        queue.put_nowait(whole_budget);
    } catch (const mproc::Full& full) {
        CPPUNIT_FAIL(std::string(kind == QueueKind::spsc ? "SPSC: " : "MPMC: ") + full.what());
    }
    CPPUNIT_ASSERT(queue.get(true, 5s) == whole_budget);
    // seq_cst (these loads): after every child was reaped, which orders their stores before them.
    // seq_cst (all board loads): every child was reaped before.
    CPPUNIT_ASSERT_EQUAL(0u, board->torn.load(std::memory_order_seq_cst));
    CPPUNIT_ASSERT_EQUAL(0u, board->duplicates.load(std::memory_order_seq_cst));
    CPPUNIT_ASSERT_EQUAL(0u, board->invalid.load(std::memory_order_seq_cst));
    // A message whose put returned is lost only with a consumer killed while taking it.
    for (std::uint32_t p = 0; p < next_producer; ++p)
        for (std::uint32_t s = 0; s < board->completed[p].load(std::memory_order_seq_cst); ++s)
            if (board->received[p][s].load(std::memory_order_seq_cst) == 0) ++result.lost;
    CPPUNIT_ASSERT_MESSAGE("lost " + std::to_string(result.lost) + " with " + std::to_string(result.consumer_kills) +
                               " consumers killed (" + (kind == QueueKind::spsc ? "SPSC" : "MPMC") + ")",
                           result.lost <= static_cast<std::uint32_t>(result.consumer_kills));
    return result;
}

class QueueLargeCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(QueueLargeCrashTest);
    CPPUNIT_TEST(testKilledProducersAndConsumersOfLargeMessagesLoseOnlyWhatWasInFlight);
    CPPUNIT_TEST_SUITE_END();

public:
    void testKilledProducersAndConsumersOfLargeMessagesLoseOnlyWhatWasInFlight() {
        std::mt19937 random(static_cast<std::uint32_t>(::getpid()));
        const auto until = Clock::now() + (kSanitized ? 8s : 10s);
        int rounds = 0;
        int kills = 0;
        std::uint32_t lost = 0;
        while (Clock::now() < until) {
            const RoundResult result = crash_round(rounds % 2 == 0 ? QueueKind::mpmc : QueueKind::spsc, random);
            kills += result.kills;
            lost += result.lost;
            ++rounds;
        }
        std::printf("  %d rounds, %d participants killed, %u messages lost with their consumer\n", rounds, kills, lost);
        CPPUNIT_ASSERT(kills > 0);
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(QueueLargeCrashTest, "crash");

}  // namespace
