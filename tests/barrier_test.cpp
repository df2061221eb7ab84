// tests/barrier_test.cpp — mproc::Barrier and mproc::RawBarrier: arrival indices, the action, timeouts,
// abort/reset, many generations across processes and threads, and participants killed inside wait().
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/barrier.hpp"
#include "mproc/error.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Barrier;
using mproc::RawBarrier;
using Clock = std::chrono::steady_clock;

constexpr int kMaxGenerations = 2000;
constexpr int kMaxParties = 8;

struct Record {
    // seen[g][i]: how many participants got arrival index i in generation g.
    std::atomic<int> seen[kMaxGenerations][kMaxParties];
    std::atomic<int> actions[kMaxGenerations];
    std::atomic<int> generation{0};  // advanced by the action
    std::atomic<int> broken{0};
    std::atomic<int> entered{0};
};

void require_futex_waitv() {
    // futex_waitv with no waiters: EINVAL when the system call exists, ENOSYS when not.
    if (::syscall(449, nullptr, 0, 0, nullptr, 0) != 0 && errno == ENOSYS)
        MPROC_SKIP("futex_waitv (Linux 5.16) is missing: deaths are detected by 20 ms polling instead");
}

void wait_for_value(const std::atomic<int>& value, int expected, std::chrono::milliseconds limit = 10s) {
    const auto give_up = Clock::now() + limit;
    // relaxed (both): a count that publishes nothing; the caller only waits for it to rise.
    while (value.load(std::memory_order_relaxed) < expected) {
        if (Clock::now() > give_up)
            CPPUNIT_FAIL("expected " + std::to_string(expected) + ", still " +
                         std::to_string(value.load(std::memory_order_relaxed)));
        std::this_thread::sleep_for(200us);
    }
}

// parties participants run `generations` rounds; each round's action advances the generation number, which
// every participant reads after wait() returns (the action ran before anyone was released).
void run_generations(Barrier& barrier, Record& record, int parties, int generations, bool threads) {
    const auto body = [&](int) {
        for (int g = 0; g < generations; ++g) {
            const std::uint32_t index = barrier.wait(30s);
            CPPUNIT_ASSERT(index < std::uint32_t(parties));
            // relaxed (both): wait() returns after the barrier's lock ordered the action before it; `seen`
            // is read after join() or waitpid(), which order it.
            CPPUNIT_ASSERT_EQUAL(g + 1, record.generation.load(std::memory_order_relaxed));
            record.seen[g][index].fetch_add(1, std::memory_order_relaxed);
        }
    };
    if (threads)
        mproc::test::run_in_threads(parties, body);
    else
        mproc::test::run_in_processes(parties, body, 120s);
}

void check_generations(Record& record, int parties, int generations) {
    for (int g = 0; g < generations; ++g) {
        // relaxed (all): called after join() or waitpid(), which order every participant's and action's RMW.
        CPPUNIT_ASSERT_EQUAL(1, record.actions[g].load(std::memory_order_relaxed));
        for (int i = 0; i < parties; ++i) CPPUNIT_ASSERT_EQUAL(1, record.seen[g][i].load(std::memory_order_relaxed));
    }
}

// The barrier's internal RawLock: the 64 bytes after its control line.
mproc::RawLock& internal_lock_of(const Barrier& barrier) {
    auto* control = reinterpret_cast<std::byte*>(&barrier.raw().control());
    return *std::launder(reinterpret_cast<mproc::RawLock*>(control + 64));
}

// A word no thread can own: above the kernel's PID_MAX_LIMIT (4194304), within FUTEX_TID_MASK.
constexpr std::uint32_t kTidOfNoThread = 0x3ffffff0;

// Whether process `pid` is stopped (state T in /proc/PID/stat).
bool process_stopped(pid_t pid) {
    std::FILE* file = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
    if (file == nullptr) return false;
    char line[512] = {};
    const bool read = std::fgets(line, sizeof line, file) != nullptr;
    std::fclose(file);
    const char* after_name = read ? std::strrchr(line, ')') : nullptr;
    return after_name != nullptr && after_name[1] == ' ' && after_name[2] == 'T';
}

// A child that takes the barrier's internal lock and stops itself (SIGSTOP): a holder that is alive and
// never releases it. Returns once the child is stopped.
ForkedChild* stopped_internal_lock_holder(const Barrier& barrier) {
    auto* holder = new ForkedChild([&barrier] {
        internal_lock_of(barrier).lock();
        ::raise(SIGSTOP);
        for (;;) ::pause();
    });
    wait_for([&] { return process_stopped(holder->pid()); }, "the lock holder to stop");
    return holder;
}

Barrier::Action advancing_action(Record& record) {
    return [&record] {
        // relaxed (both): the action runs alone, and the barrier orders it before the next wait() returns.
        const int g = record.generation.fetch_add(1, std::memory_order_relaxed);
        record.actions[g].fetch_add(1, std::memory_order_relaxed);
    };
}

class BarrierUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(BarrierUnitTest);
    CPPUNIT_TEST(testIndicesAndActionAcrossProcesses);
    CPPUNIT_TEST(testSinglePartyReturnsAtOnce);
    CPPUNIT_TEST(testTimeoutBreaksBarrier);
    CPPUNIT_TEST(testWaitSleepsWhenASeccompFilterRefusesFutexWaitv);
    CPPUNIT_TEST(testAbortBreaksWaitersAndLaterCalls);
    CPPUNIT_TEST(testResetWakesWaitersWithBrokenAndRestores);
    CPPUNIT_TEST(testThrowingActionBreaksBarrier);
    CPPUNIT_TEST(testNWaitingCountsFillingParticipants);
    CPPUNIT_TEST(testNamedBarrierIsSharedByName);
    CPPUNIT_TEST(testRawBarrierRejectsBadBytes);
    CPPUNIT_TEST(testTimedWaitReturnsWhenTheInternalLockNamesNoThread);
    CPPUNIT_TEST(testPartiesAndSlotCountRewrittenAfterOpenAreIgnored);
    CPPUNIT_TEST(testTimeoutWhileTheActionRunsBreaksTheBarrier);
    CPPUNIT_TEST_SUITE_END();

public:
    void testIndicesAndActionAcrossProcesses() {
        Shared<Record> record;
        Barrier barrier(4, advancing_action(*record));
        run_generations(barrier, *record, 4, 20, false);
        check_generations(*record, 4, 20);
    }

    void testSinglePartyReturnsAtOnce() {
        int actions = 0;
        Barrier barrier(1, [&] { ++actions; });
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), barrier.wait());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), barrier.wait());
        CPPUNIT_ASSERT_EQUAL(2, actions);
        CPPUNIT_ASSERT_THROW(Barrier(0), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(Barrier(RawBarrier::kMaxParties + 1), mproc::ValueError);
    }

    // The fallback sleep (the state word alone, the slots re-checked) must sleep, not spin on the refusal.
    void testWaitSleepsWhenASeccompFilterRefusesFutexWaitv() {
        run_with_futex_waitv_refused([] {
            Barrier barrier(2);
            const WaitTiming timing =
                timed_wait([&] { CPPUNIT_ASSERT_THROW(barrier.wait(300ms), mproc::BrokenBarrier); });
            CPPUNIT_ASSERT_MESSAGE(std::to_string(timing.waited.count()) + " ms",
                                   timing.waited >= 300ms && timing.waited < 2000ms);
            assert_slept(timing);
            barrier.reset();
            std::thread partner([&] {
                std::this_thread::sleep_for(50ms);
                barrier.wait(10s);
            });
            const auto met = elapsed_of([&] { barrier.wait(10s); });
            partner.join();
            // The partner arrives after 50 ms and the fallback sleeper is woken by its state change: 1 s leaves
            // room for a loaded 2-core machine's scheduling, not for a lost wake-up made up by a poll.
            CPPUNIT_ASSERT_MESSAGE(std::to_string(met.count()) + " ms", met >= 40ms && met < 1000ms);
        });
    }

    void testTimeoutBreaksBarrier() {
        Barrier barrier(3);
        Shared<Record> record;
        ForkedChild other([&] {
            try {
                barrier.wait(10s);
            } catch (const mproc::BrokenBarrier&) {
                // relaxed: read after the parent reaps this child, which orders it.
                record->broken.fetch_add(1, std::memory_order_relaxed);
            }
        });
        const auto started = Clock::now();
        CPPUNIT_ASSERT_THROW(barrier.wait(100ms), mproc::BrokenBarrier);
        const auto waited = Clock::now() - started;
        // Up to 900 ms late: scheduling delay on a loaded machine, not a second re-check period.
        CPPUNIT_ASSERT(waited >= 100ms && waited < 1000ms);
        CPPUNIT_ASSERT_EQUAL(0, other.wait());
        // relaxed: the child was reaped above, which orders its increment.
        CPPUNIT_ASSERT_EQUAL(1, record->broken.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(barrier.broken());
        CPPUNIT_ASSERT_THROW(barrier.wait(10s), mproc::BrokenBarrier);
    }

    void testAbortBreaksWaitersAndLaterCalls() {
        Barrier barrier(3);
        Shared<Record> record;
        std::vector<ForkedChild*> children;
        for (int i = 0; i < 2; ++i)
            children.push_back(new ForkedChild([&] {
                // relaxed: a start count that publishes nothing (n_waiting() is checked next).
                record->entered.fetch_add(1, std::memory_order_relaxed);
                CPPUNIT_ASSERT_THROW(barrier.wait(10s), mproc::BrokenBarrier);
            }));
        wait_for_value(record->entered, 2);
        while (barrier.n_waiting() < 2) std::this_thread::sleep_for(1ms);
        barrier.abort();
        for (ForkedChild* child : children) {
            CPPUNIT_ASSERT_EQUAL(0, child->wait());
            delete child;
        }
        CPPUNIT_ASSERT(barrier.broken());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), barrier.n_waiting());
        CPPUNIT_ASSERT_THROW(barrier.wait(), mproc::BrokenBarrier);
    }

    void testResetWakesWaitersWithBrokenAndRestores() {
        Barrier barrier(2);
        ForkedChild child([&] { CPPUNIT_ASSERT_THROW(barrier.wait(10s), mproc::BrokenBarrier); });
        while (barrier.n_waiting() < 1) std::this_thread::sleep_for(1ms);
        barrier.reset();
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT(!barrier.broken());
        ForkedChild partner([&] { CPPUNIT_ASSERT(barrier.wait(10s) < 2); });
        CPPUNIT_ASSERT(barrier.wait(10s) < 2);
        CPPUNIT_ASSERT_EQUAL(0, partner.wait());
        barrier.abort();
        barrier.reset();
        CPPUNIT_ASSERT(!barrier.broken());
    }

    void testThrowingActionBreaksBarrier() {
        Barrier barrier(2, [] { throw std::runtime_error("action failed"); });
        ForkedChild child([&] { CPPUNIT_ASSERT_THROW(barrier.wait(10s), mproc::BrokenBarrier); });
        while (barrier.n_waiting() < 1) std::this_thread::sleep_for(1ms);
        CPPUNIT_ASSERT_THROW(barrier.wait(10s), std::runtime_error);
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT(barrier.broken());
    }

    void testNWaitingCountsFillingParticipants() {
        Barrier barrier(3);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(3), barrier.parties());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), barrier.n_waiting());
        ForkedChild child([&] { barrier.wait(10s); });
        while (barrier.n_waiting() < 1) std::this_thread::sleep_for(1ms);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(1), barrier.n_waiting());
        ForkedChild second([&] { barrier.wait(10s); });
        while (barrier.n_waiting() < 2) std::this_thread::sleep_for(1ms);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(2), barrier.wait(10s));
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT_EQUAL(0, second.wait());
    }

    void testNamedBarrierIsSharedByName() {
        const std::string name = mproc::test::unique_name("barrier");
        Barrier creator = Barrier::create(name, 2);
        ForkedChild child([&] {
            Barrier opened = Barrier::open(name);
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(2), opened.parties());
            CPPUNIT_ASSERT(opened.wait(10s) < 2);
        });
        CPPUNIT_ASSERT(creator.wait(10s) < 2);
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        creator.unlink();
    }

    void testRawBarrierRejectsBadBytes() {
        alignas(64) unsigned char bytes[4096] = {};
        CPPUNIT_ASSERT_THROW(RawBarrier::attach(bytes, sizeof bytes), mproc::InvalidObject);
        RawBarrier::init(bytes, sizeof bytes, 3);
        const RawBarrier barrier = RawBarrier::attach(bytes, sizeof bytes);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(3), barrier.parties());
        CPPUNIT_ASSERT_THROW(RawBarrier::attach(bytes, RawBarrier::size_for(3) - 1), mproc::InvalidObject);
        CPPUNIT_ASSERT_THROW(RawBarrier::init(bytes + 1, sizeof bytes - 1, 3), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(barrier.wait(1ms), mproc::BrokenBarrier);  // nobody else arrives
    }
    // A hostile process wrote a TID that no thread can have into the internal lock's word: nobody will ever
    // release it, and a timed wait() must still return, by its timeout plus the internal lock's grace.
    void testTimedWaitReturnsWhenTheInternalLockNamesNoThread() {
        Barrier barrier(2);
        // relaxed: the hostile write; nothing is published with it.
        auto& lock_word = *reinterpret_cast<std::uint32_t*>(&internal_lock_of(barrier));
        std::atomic_ref(lock_word).store(kTidOfNoThread, std::memory_order_relaxed);
        run_in_processes(1, [&](int) {
            const auto waited = elapsed_of([&] { CPPUNIT_ASSERT_THROW(barrier.wait(20ms), mproc::BrokenBarrier); });
            // 20 ms + the 10 ms grace; the rest is room for a loaded machine's scheduling.
            CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited >= 20ms && waited < 1000ms);
            const std::string message = message_of<mproc::BrokenBarrier>([&] { barrier.wait(0ns); });
            assert_contains(message, "internal lock");
        }, 10s);
    }

    // A peer rewrites the shared parties and slot count after this handle opened the barrier: the handle
    // keeps using the 2 parties and 4 slots it validated (before the fix, parties 1 made a lone wait()
    // return at once, and 127 slots made every sleep read past the end of the segment).
    void testPartiesAndSlotCountRewrittenAfterOpenAreIgnored() {
        const std::string name = unique_name("barrier-rewritten");
        Barrier barrier = Barrier::create(name, 2);
        Barrier peer = Barrier::open(name);
        peer.unlink();
        mproc::detail::BarrierControl& shared = peer.raw().control();
        shared.parties = 1;
        shared.slot_count = RawBarrier::kMaxParties;
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(2), barrier.parties());
        run_in_processes(1, [&](int) {
            CPPUNIT_ASSERT_THROW(barrier.wait(30ms), mproc::BrokenBarrier);  // alone: the second party is missing
            barrier.reset();
            std::thread partner([&] { barrier.wait(10s); });
            CPPUNIT_ASSERT(barrier.wait(10s) < 2);
            partner.join();
        }, 20s);
        // A new open validates what is there now, and refuses it.
        CPPUNIT_ASSERT_THROW(Barrier::open(name), mproc::Error);
    }

    // The last arrival's action outlives a waiter's timeout: the timeout still holds (the waiter leaves with
    // BrokenBarrier), and the action's runner learns the barrier broke.
    void testTimeoutWhileTheActionRunsBreaksTheBarrier() {
        Shared<Record> record;
        Barrier barrier(2, [&] {
            // relaxed: tells the waiter's side that the action runs; it publishes nothing.
            record->entered.store(1, std::memory_order_relaxed);
            std::this_thread::sleep_for(500ms);
        });
        ForkedChild waiter([&] {
            const auto waited = elapsed_of([&] { CPPUNIT_ASSERT_THROW(barrier.wait(100ms), mproc::BrokenBarrier); });
            CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited < 450ms);
        });
        while (barrier.n_waiting() < 1) std::this_thread::sleep_for(1ms);
        const std::string message = message_of<mproc::BrokenBarrier>([&] { barrier.wait(10s); });
        assert_contains(message, "while the action ran");
        CPPUNIT_ASSERT_EQUAL(0, waiter.wait(10s));
        CPPUNIT_ASSERT(barrier.broken());
    }
};

class BarrierStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(BarrierStressTest);
    CPPUNIT_TEST(testManyGenerationsAcrossProcesses);
    CPPUNIT_TEST(testManyGenerationsThreads);
    CPPUNIT_TEST(testMoreThreadsThanPartiesFormFullGenerations);
    CPPUNIT_TEST_SUITE_END();

public:
    void testManyGenerationsAcrossProcesses() {
        Shared<Record> record;
        Barrier barrier(5, advancing_action(*record));
        run_generations(barrier, *record, 5, kMaxGenerations, false);
        check_generations(*record, 5, kMaxGenerations);
    }

    void testManyGenerationsThreads() {
        Shared<Record> record;
        Barrier barrier(4, advancing_action(*record));
        run_generations(barrier, *record, 4, 500, true);
        check_generations(*record, 4, 500);
    }

    // 6 processes, parties 3: participants mix across generations; every generation released exactly one
    // participant with each index 0, 1, 2. The first to see generation 300 aborts the barrier to end the run.
    void testMoreThreadsThanPartiesFormFullGenerations() {
        Shared<Record> record;
        Barrier barrier(3, advancing_action(*record));
        mproc::test::run_in_processes(6, [&](int) {
            for (;;) {
                std::uint32_t index = 0;
                try {
                    index = barrier.wait(30s);
                } catch (const mproc::BrokenBarrier&) {
                    // relaxed: the abort that broke this wait followed a load that saw >= 300, and the
                    // barrier's lock orders that abort before this load, so coherence lets it read no less.
                    CPPUNIT_ASSERT(record->generation.load(std::memory_order_relaxed) >= 300);
                    return;
                }
                CPPUNIT_ASSERT(index < 3);
                // relaxed (both): `seen` is read after waitpid(); the barrier orders the action's increments.
                record->seen[0][index].fetch_add(1, std::memory_order_relaxed);
                if (record->generation.load(std::memory_order_relaxed) >= 300) barrier.abort();
            }
        }, 120s);
        // relaxed (all): run_in_processes() reaped every participant, which orders their RMWs.
        const int generations = record->generation.load(std::memory_order_relaxed);
        CPPUNIT_ASSERT(generations >= 300);
        for (int g = 0; g < generations; ++g)
            CPPUNIT_ASSERT_EQUAL(1, record->actions[g].load(std::memory_order_relaxed));
        for (int i = 0; i < 3; ++i)
            CPPUNIT_ASSERT_EQUAL(generations, record->seen[0][i].load(std::memory_order_relaxed));
    }
};

class BarrierCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(BarrierCrashTest);
    CPPUNIT_TEST(testKilledParticipantBreaksBarrierPromptly);
    CPPUNIT_TEST(testKilledParticipantBreaksBarrierPromptlyThreads);
    CPPUNIT_TEST(testKilledActionRunnerBreaksBarrier);
    CPPUNIT_TEST(testTimedWaitReturnsWhileTheInternalLockHolderIsStopped);
    CPPUNIT_TEST(testParticipantWhoseRelockTimesOutLeavesAsADeadOneWould);
    CPPUNIT_TEST_SUITE_END();

public:
    void testKilledParticipantBreaksBarrierPromptly() {
        require_futex_waitv();
        Barrier barrier(4);
        Shared<Record> record;
        std::vector<ForkedChild*> waiters;
        for (int i = 0; i < 2; ++i)
            waiters.push_back(new ForkedChild([&] {
                const auto started = Clock::now();
                try {
                    barrier.wait(60s);
                } catch (const mproc::BrokenBarrier&) {
                    // relaxed: read after the parent reaps this waiter, which orders it.
                    if (Clock::now() - started < 30s) record->broken.fetch_add(1, std::memory_order_relaxed);
                }
            }));
        ForkedChild victim([&] { barrier.wait(60s); });
        while (barrier.n_waiting() < 3) std::this_thread::sleep_for(1ms);
        const auto killed_at = Clock::now();
        victim.kill(9);
        for (ForkedChild* waiter : waiters) {
            CPPUNIT_ASSERT_EQUAL(0, waiter->wait(60s));
            delete waiter;
        }
        CPPUNIT_ASSERT(Clock::now() - killed_at < 2s);  // far below the 60 s timeout
        // relaxed: the waiters were reaped above, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(2, record->broken.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(barrier.broken());
        barrier.reset();
        CPPUNIT_ASSERT(!barrier.broken());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), barrier.n_waiting());
    }

    // Threads of this process wait while a forked participant is killed.
    void testKilledParticipantBreaksBarrierPromptlyThreads() {
        require_futex_waitv();
        Barrier barrier(3);
        std::atomic<int> broken{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < 1; ++i)
            threads.emplace_back([&] {
                try {
                    barrier.wait(60s);
                } catch (const mproc::BrokenBarrier&) {
                    // relaxed: read after join(), which orders it.
                    broken.fetch_add(1, std::memory_order_relaxed);
                }
            });
        ForkedChild victim([&] { barrier.wait(60s); });
        while (barrier.n_waiting() < 2) std::this_thread::sleep_for(1ms);
        const auto killed_at = Clock::now();
        victim.kill(9);
        for (std::thread& thread : threads) thread.join();
        CPPUNIT_ASSERT(Clock::now() - killed_at < 2s);
        // relaxed: the threads were joined above, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(1, broken.load(std::memory_order_relaxed));
    }

    void testKilledActionRunnerBreaksBarrier() {
        require_futex_waitv();
        Shared<Record> record;
        Barrier barrier(2, [&] {
            // relaxed: only tells the parent that the action runs (when to kill); it publishes nothing.
            record->entered.store(1, std::memory_order_relaxed);
            for (;;) std::this_thread::sleep_for(1s);
        });
        ForkedChild waiter([&] { CPPUNIT_ASSERT_THROW(barrier.wait(60s), mproc::BrokenBarrier); });
        while (barrier.n_waiting() < 1) std::this_thread::sleep_for(1ms);
        ForkedChild runner([&] { barrier.wait(60s); });
        wait_for_value(record->entered, 1);
        const auto killed_at = Clock::now();
        runner.kill(9);
        CPPUNIT_ASSERT_EQUAL(0, waiter.wait(60s));
        CPPUNIT_ASSERT(Clock::now() - killed_at < 2s);
        CPPUNIT_ASSERT(barrier.broken());
    }

    // A live holder of the internal lock, stopped (SIGSTOP): it is not dead, so nothing recovers the lock,
    // and a timed wait() must still return by its timeout (plus the grace). Once the holder is killed, the
    // next operation repairs the lock and the barrier works again after reset().
    void testTimedWaitReturnsWhileTheInternalLockHolderIsStopped() {
        Barrier barrier(2);
        std::unique_ptr<ForkedChild> holder(stopped_internal_lock_holder(barrier));
        run_in_processes(1, [&](int) {
            const auto waited = elapsed_of([&] { CPPUNIT_ASSERT_THROW(barrier.wait(20ms), mproc::BrokenBarrier); });
            CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited >= 20ms && waited < 1000ms);
        }, 10s);
        CPPUNIT_ASSERT(process_stopped(holder->pid()));  // still alive: nobody treated it as dead
        holder->kill(9);
        holder->wait();
        CPPUNIT_ASSERT_THROW(barrier.wait(0ns), mproc::BrokenBarrier);  // the lock's owner died: broken
        barrier.reset();
        ForkedChild partner([&] { CPPUNIT_ASSERT(barrier.wait(10s) < 2); });
        CPPUNIT_ASSERT(barrier.wait(10s) < 2);
        CPPUNIT_ASSERT_EQUAL(0, partner.wait());
    }

    // A participant asleep inside wait() whose deadline passes while a stopped process holds the internal
    // lock: it cannot take the lock to leave, so it gives up its slot as a dead participant would and returns.
    // The next lock holder reaps that slot (uncounting it) and breaks the barrier; after reset() a full
    // generation forms again — it could not if the abandoned participant were still counted.
    void testParticipantWhoseRelockTimesOutLeavesAsADeadOneWould() {
        Barrier barrier(2);
        Shared<Record> record;
        // The participant stays alive after wait() returns: its exit would make the kernel mark a slot it
        // still owned, and hide a participant that left without giving the slot up.
        ForkedChild participant([&] {
            const auto waited = elapsed_of([&] {
                assert_contains(message_of<mproc::BrokenBarrier>([&] { barrier.wait(300ms); }), "dead one would");
            });
            CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited < 2000ms);
            // relaxed: the parent only waits for the count; the barrier's bytes are ordered by its lock.
            record->broken.fetch_add(1, std::memory_order_relaxed);
            for (;;) ::pause();
        });
        while (barrier.n_waiting() < 1) std::this_thread::sleep_for(1ms);
        wait_until_asleep(participant.pid());
        std::unique_ptr<ForkedChild> holder(stopped_internal_lock_holder(barrier));
        wait_for_value(record->broken, 1);
        holder->kill(9);
        holder->wait();
        CPPUNIT_ASSERT_THROW(barrier.wait(0ns), mproc::BrokenBarrier);
        barrier.reset();
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), barrier.n_waiting());
        ForkedChild partner([&] { CPPUNIT_ASSERT(barrier.wait(10s) < 2); });
        CPPUNIT_ASSERT(barrier.wait(10s) < 2);
        CPPUNIT_ASSERT_EQUAL(0, partner.wait());
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(BarrierUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(BarrierStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(BarrierCrashTest, "crash");

}  // namespace
