// tests/semaphore_test.cpp — mproc::Semaphore, BoundedSemaphore and their raw forms: exact counts and at
// most k holders across processes and threads, the Python and std interfaces, the bound, timeouts and
// signals, no lost wake-up in long ping-pongs, named and raw placement with clear errors, and waiters
// SIGKILLed asleep or just after being woken.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::BoundedSemaphore;
using mproc::RawBoundedSemaphore;
using mproc::RawSemaphore;
using mproc::Semaphore;
using Clock = std::chrono::steady_clock;

// What the children of a test report back.
struct Board {
    alignas(RawSemaphore::kAlignment) unsigned char raw_bytes[RawSemaphore::kSize];
    std::atomic<int> inside{0};        // holders between acquire and release; never above the value
    std::atomic<int> most_inside{0};
    std::atomic<std::uint64_t> pairs{0};
    std::atomic<int> ready{0};
    std::atomic<int> results[8]{};     // per child: 1 acquired, 2 timed out
};

void note_inside(Board& board) {
    // relaxed (all): the semaphore's acquire/release orders these RMWs; one location keeps its count exact.
    const int now = board.inside.fetch_add(1, std::memory_order_relaxed) + 1;
    int most = board.most_inside.load(std::memory_order_relaxed);
    while (now > most && !board.most_inside.compare_exchange_weak(most, now, std::memory_order_relaxed)) {
    }
}

template <class S>
void hold_and_count(S& semaphore, Board& board, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        CPPUNIT_ASSERT(semaphore.acquire(true, 20s));
        note_inside(board);
        if (round % 64 == 0) std::this_thread::yield();
        // relaxed (both): `inside` is ordered by the semaphore as above; `pairs` is read after join/waitpid.
        board.pairs.fetch_add(1, std::memory_order_relaxed);
        board.inside.fetch_sub(1, std::memory_order_relaxed);
        semaphore.release();
    }
}

// acquire() for a ping-pong round (see succeeded_promptly).
template <class S>
bool acquired_promptly(S& semaphore) {
    return succeeded_promptly([&](auto timeout) { return semaphore.try_acquire_for(timeout); });
}

// ---------------------------------------------------------------------------------------------------------

class SemaphoreUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SemaphoreUnitTest);
    CPPUNIT_TEST(testUncontendedAcquireAndReleaseMakeNoSystemCall);
    CPPUNIT_TEST(testCountFollowsAcquireAndRelease);
    CPPUNIT_TEST(testInvalidValuesAreValueErrors);
    CPPUNIT_TEST(testBoundedReleaseAboveInitialValueIsValueErrorAndKeepsCount);
    CPPUNIT_TEST(testBoundedOverReleaseInAnotherProcessIsValueError);
    CPPUNIT_TEST(testTimedAcquireWaitsForItsTimeout);
    CPPUNIT_TEST(testZeroOrNegativeTimeoutDoesNotBlock);
    CPPUNIT_TEST(testSignalsDoNotShortenTheTimeout);
    CPPUNIT_TEST(testSleepingWaiterInAnotherProcessIsWokenByRelease);
    CPPUNIT_TEST(testReleaseOfNWakesNSleepers);
    CPPUNIT_TEST(testPythonAcquireRejectsTimeoutWithoutBlocking);
    CPPUNIT_TEST(testNamedSemaphoreIsSharedByName);
    CPPUNIT_TEST(testNamedOpenErrorsAreClear);
    CPPUNIT_TEST(testRawSemaphoreInCallerMemoryWorksAcrossFork);
    CPPUNIT_TEST(testRawSemaphoreValidatesItsBytes);
    CPPUNIT_TEST(testMovedFromHandleIsStateError);
    CPPUNIT_TEST(testMovedFromHandleErrorNamesTheOperation);
    CPPUNIT_TEST_SUITE_END();

public:
    // Strict seccomp allows read, write, exit and sigreturn only: any other system call kills the child
    // with SIGKILL, so a child that ends normally made none in the measured loop.
    void testUncontendedAcquireAndReleaseMakeNoSystemCall() {
        if (kThreadSanitizer) MPROC_SKIP("ThreadSanitizer's runtime makes system calls of its own under seccomp");
        Semaphore semaphore(2);
        BoundedSemaphore bounded(1);
        Shared<Board> board;
        RawSemaphore& raw = RawSemaphore::init(board->raw_bytes, 1);
        ForkedChild child([&] {
            if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) MPROC_SKIP("strict seccomp is unavailable");
            for (int round = 0; round < 1000; ++round) {
                if (!semaphore.acquire()) ::syscall(SYS_exit, 3);
                if (!semaphore.try_acquire()) ::syscall(SYS_exit, 4);
                if (semaphore.get_value() != 0) ::syscall(SYS_exit, 5);
                semaphore.release(2);
                if (!semaphore.try_acquire_for(1s)) ::syscall(SYS_exit, 6);
                semaphore.release();
                if (!bounded.acquire(true, 1s)) ::syscall(SYS_exit, 7);
                bounded.release();
                if (!raw.acquire(false)) ::syscall(SYS_exit, 8);
                raw.release();
            }
            ::syscall(SYS_exit, 0);  // exit_group is not allowed in strict mode
        });
        const int status = child.wait();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) MPROC_SKIP("strict seccomp is unavailable");
        CPPUNIT_ASSERT_MESSAGE("the uncontended loop made a system call (killed by seccomp) or failed",
                               WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    void testCountFollowsAcquireAndRelease() {
        Semaphore semaphore(3);
        CPPUNIT_ASSERT_EQUAL(3u, semaphore.get_value());
        CPPUNIT_ASSERT(semaphore.acquire());
        CPPUNIT_ASSERT(semaphore.try_acquire());
        CPPUNIT_ASSERT(semaphore.try_acquire_until(std::chrono::system_clock::now() + 10ms));
        CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
        CPPUNIT_ASSERT(!semaphore.try_acquire());
        CPPUNIT_ASSERT(!semaphore.acquire(false));
        semaphore.release(5);  // a Semaphore may exceed its initial value
        CPPUNIT_ASSERT_EQUAL(5u, semaphore.get_value());
        Semaphore empty(0);
        CPPUNIT_ASSERT_EQUAL(0u, empty.get_value());
        CPPUNIT_ASSERT(!empty.try_acquire());
    }

    void testInvalidValuesAreValueErrors() {
        CPPUNIT_ASSERT_THROW(Semaphore(-1), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(Semaphore(std::int64_t(RawSemaphore::kMaxValue) + 1), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(BoundedSemaphore(-1), mproc::ValueError);
        Semaphore semaphore(RawSemaphore::kMaxValue - 1);
        CPPUNIT_ASSERT_THROW(semaphore.release(0), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(semaphore.release(-3), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(semaphore.release(2), mproc::ValueError);
        CPPUNIT_ASSERT_EQUAL(RawSemaphore::kMaxValue - 1, semaphore.get_value());
        semaphore.release();
        CPPUNIT_ASSERT_EQUAL(RawSemaphore::kMaxValue, semaphore.get_value());
        CPPUNIT_ASSERT_THROW(semaphore.release(), mproc::ValueError);
        CPPUNIT_ASSERT_EQUAL(RawSemaphore::kMaxValue, semaphore.get_value());
    }

    void testBoundedReleaseAboveInitialValueIsValueErrorAndKeepsCount() {
        BoundedSemaphore bounded(2);
        CPPUNIT_ASSERT_EQUAL(2u, bounded.bound());
        CPPUNIT_ASSERT_THROW(bounded.release(), mproc::ValueError);
        CPPUNIT_ASSERT_EQUAL(2u, bounded.get_value());
        CPPUNIT_ASSERT(bounded.acquire());
        CPPUNIT_ASSERT_THROW(bounded.release(2), mproc::ValueError);
        CPPUNIT_ASSERT_EQUAL(1u, bounded.get_value());
        bounded.release();
        CPPUNIT_ASSERT_EQUAL(2u, bounded.get_value());
        CPPUNIT_ASSERT(bounded.acquire() && bounded.acquire());
        bounded.release(2);
        CPPUNIT_ASSERT_EQUAL(2u, bounded.get_value());
        try {
            bounded.release();
            CPPUNIT_FAIL("release above the initial value did not throw");
        } catch (const mproc::ValueError& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("released too many times") !=
                                                     std::string::npos);
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("anonymous bounded semaphore") == 0);
        }
        BoundedSemaphore zero(0);
        CPPUNIT_ASSERT_THROW(zero.release(), mproc::ValueError);
        CPPUNIT_ASSERT_EQUAL(0u, zero.get_value());
    }

    void testBoundedOverReleaseInAnotherProcessIsValueError() {
        BoundedSemaphore bounded(1);
        CPPUNIT_ASSERT(bounded.acquire());
        mproc::test::run_in_processes(2, [&](int index) {
            if (index == 0) {
                bounded.release();
            } else {
                CPPUNIT_ASSERT(bounded.acquire(true, 10s));  // the permit index 0 released
                bounded.release();
            }
        });
        CPPUNIT_ASSERT_EQUAL(1u, bounded.get_value());
        ForkedChild child([&] { CPPUNIT_ASSERT_THROW(bounded.release(), mproc::ValueError); });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT_EQUAL(1u, bounded.get_value());
    }

    void testTimedAcquireWaitsForItsTimeout() {
        Semaphore semaphore(0);
        assert_times_out_after(200ms, [&] { return semaphore.try_acquire_for(200ms); });
        assert_times_out_after(100ms, [&] { return semaphore.acquire(true, 100ms); });
        BoundedSemaphore bounded(0);
        assert_times_out_after(150ms, [&] { return bounded.try_acquire_until(Clock::now() + 150ms); });
        CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
    }

    void testZeroOrNegativeTimeoutDoesNotBlock() {
        Semaphore semaphore(0);
        const auto started = Clock::now();
        CPPUNIT_ASSERT(!semaphore.try_acquire_for(0ms));
        CPPUNIT_ASSERT(!semaphore.try_acquire_for(-5ms));
        CPPUNIT_ASSERT(!semaphore.acquire(true, 0ns));
        CPPUNIT_ASSERT(!semaphore.acquire(true, -1s));
        CPPUNIT_ASSERT(!semaphore.try_acquire_until(Clock::now() - 1s));
        CPPUNIT_ASSERT(Clock::now() - started < 1s);
        semaphore.release();
        CPPUNIT_ASSERT(semaphore.acquire(true, -1s));  // one attempt, and a permit is there
    }

    // SIGALRM every 5 ms, with a handler installed without SA_RESTART: each one interrupts FUTEX_WAIT
    // with EINTR, and the wait must resume with the time that remains.
    void testSignalsDoNotShortenTheTimeout() {
        Semaphore semaphore(0);
        assert_signals_do_not_shorten(300ms, [&] { return semaphore.try_acquire_for(300ms); });
    }

    void testSleepingWaiterInAnotherProcessIsWokenByRelease() {
        Semaphore semaphore(0);
        Shared<Board> board;
        // relaxed (results, both): read after child.wait(), whose waitpid() orders the store.
        ForkedChild child(
            [&] { board->results[0].store(semaphore.acquire(true, 20s) ? 1 : 2, std::memory_order_relaxed); });
        wait_until_asleep(child.pid());
        const auto released = Clock::now();
        semaphore.release();
        assert_exited_cleanly(child.wait(10s));  // woken, not timed out (20 s)
        CPPUNIT_ASSERT_EQUAL(1, board->results[0].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(Clock::now() - released < 10s);
        CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
    }

    void testReleaseOfNWakesNSleepers() {
        constexpr int kSleepers = 4;
        Semaphore semaphore(0);
        Shared<Board> board;
        std::vector<std::unique_ptr<ForkedChild>> children;
        for (int index = 0; index < kSleepers; ++index)
            children.push_back(std::make_unique<ForkedChild>([&, index] {
                // relaxed: each result publishes nothing else; woken() only counts them.
                board->results[index].store(semaphore.acquire(true, 20s) ? 1 : 2, std::memory_order_relaxed);
            }));
        for (auto& child : children) wait_until_asleep(child->pid());
        semaphore.release(kSleepers - 1);
        const auto woken = [&] {
            // relaxed: a per-child flag that publishes nothing; one location each, so counting needs no order.
            return std::count_if(std::begin(board->results), std::end(board->results),
                                 [](const std::atomic<int>& result) {
                                     return result.load(std::memory_order_relaxed) == 1;
                                 });
        };
        wait_for([&] { return woken() == kSleepers - 1; }, "three sleepers to take the three permits");
        std::this_thread::sleep_for(50ms);
        CPPUNIT_ASSERT_EQUAL(std::ptrdiff_t(kSleepers - 1), woken());  // the fourth sleeps on: no permit
        CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
        semaphore.release();
        for (auto& child : children) assert_exited_cleanly(child->wait(10s));
        // relaxed: every child was reaped above, which orders its store.
        for (int index = 0; index < kSleepers; ++index)
            CPPUNIT_ASSERT_EQUAL(1, board->results[index].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
    }

    void testPythonAcquireRejectsTimeoutWithoutBlocking() {
        Semaphore semaphore(1);
        CPPUNIT_ASSERT_THROW(semaphore.acquire(false, 1s), mproc::ValueError);
        CPPUNIT_ASSERT_EQUAL(1u, semaphore.get_value());
        BoundedSemaphore bounded(1);
        CPPUNIT_ASSERT_THROW(bounded.acquire(false, 0s), mproc::ValueError);
        CPPUNIT_ASSERT(bounded.acquire(false));
        CPPUNIT_ASSERT(!bounded.acquire(false));
    }

    void testNamedSemaphoreIsSharedByName() {
        const std::string name = mproc::test::unique_name("semaphore");
        Semaphore created = Semaphore::create(name, 2);
        CPPUNIT_ASSERT_EQUAL(name, created.name());
        mproc::test::run_in_processes(2, [&](int) {
            Semaphore opened = Semaphore::open(name);
            CPPUNIT_ASSERT(opened.acquire(true, 10s));  // each child keeps one permit
        });
        CPPUNIT_ASSERT_EQUAL(0u, created.get_value());
        Semaphore opened = Semaphore::open(name);
        opened.release();
        CPPUNIT_ASSERT_EQUAL(1u, created.get_value());
        created.unlink();

        const std::string bounded_name = mproc::test::unique_name("bounded-semaphore");
        BoundedSemaphore bounded = BoundedSemaphore::create(bounded_name, 1);
        ForkedChild child([&] {
            BoundedSemaphore mine = BoundedSemaphore::open(bounded_name);
            CPPUNIT_ASSERT_EQUAL(1u, mine.bound());
            CPPUNIT_ASSERT(mine.try_acquire());
        });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT_EQUAL(0u, bounded.get_value());
        bounded.release();
        CPPUNIT_ASSERT_THROW(bounded.release(), mproc::ValueError);
        bounded.unlink();
    }

    void testNamedOpenErrorsAreClear() {
        const std::string name = mproc::test::unique_name("semaphore-errors");
        try {
            Semaphore::open(name, 0ms);
            CPPUNIT_FAIL("opening a missing name did not throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
        CPPUNIT_ASSERT_THROW(Semaphore::create(name, -1), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(Semaphore::open(name, 0ms), mproc::SystemError);  // the bad value left no name
        {
            Semaphore created = Semaphore::create(name, 1);
            try {
                Semaphore::create(name, 1);
                CPPUNIT_FAIL("creating an existing name did not throw");
            } catch (const mproc::SystemError& error) {
                CPPUNIT_ASSERT_EQUAL(EEXIST, error.error_number());
            }
            try {
                BoundedSemaphore::open(name, 0ms);
                CPPUNIT_FAIL("a Semaphore opened as a BoundedSemaphore");
            } catch (const mproc::InvalidObject& error) {
                CPPUNIT_ASSERT_MESSAGE(error.what(),
                                       std::string(error.what()).find("a Semaphore, not a BoundedSemaphore") !=
                                           std::string::npos);
            }
            CPPUNIT_ASSERT_THROW(mproc::Event::open(name, 0ms), mproc::InvalidObject);
            created.unlink();
        }
        const std::string event_name = mproc::test::unique_name("event-not-semaphore");
        mproc::Event event = mproc::Event::create(event_name);
        try {
            Semaphore::open(event_name, 0ms);
            CPPUNIT_FAIL("an event opened as a semaphore");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("event") != std::string::npos);
        }
        CPPUNIT_ASSERT_THROW(BoundedSemaphore::open(event_name, 0ms), mproc::InvalidObject);
        event.unlink();
    }

    void testRawSemaphoreInCallerMemoryWorksAcrossFork() {
        Shared<Board> board;
        RawSemaphore& raw = RawSemaphore::init(board->raw_bytes, 0);
        ForkedChild child([&] {
            RawSemaphore& mine = RawSemaphore::attach(board->raw_bytes, sizeof board->raw_bytes);
            CPPUNIT_ASSERT(mine.try_acquire_for(20s));
            mine.release(3);
        });
        wait_until_asleep(child.pid());
        raw.release();
        assert_exited_cleanly(child.wait(10s));  // woken, not timed out (20 s)
        CPPUNIT_ASSERT_EQUAL(3u, raw.get_value());
        RawBoundedSemaphore& bounded = RawBoundedSemaphore::init(board->raw_bytes, 2);
        CPPUNIT_ASSERT_THROW(bounded.release(), mproc::ValueError);
        CPPUNIT_ASSERT(bounded.acquire());
        bounded.release();
        CPPUNIT_ASSERT_EQUAL(2u, bounded.get_value());
    }

    void testRawSemaphoreValidatesItsBytes() {
        alignas(RawSemaphore::kAlignment) unsigned char bytes[2 * RawSemaphore::kSize] = {};
        CPPUNIT_ASSERT_THROW(RawSemaphore::attach(bytes, sizeof bytes), mproc::InvalidObject);  // zero magic
        CPPUNIT_ASSERT_THROW(RawSemaphore::init(bytes + 8), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(RawSemaphore::init(nullptr), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(RawSemaphore::init(bytes, -1), mproc::ValueError);
        RawSemaphore::init(bytes, 4);
        CPPUNIT_ASSERT_THROW(RawSemaphore::attach(bytes + 8, sizeof bytes - 8), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(RawSemaphore::attach(bytes, RawSemaphore::kSize - 1), mproc::InvalidObject);
        CPPUNIT_ASSERT_EQUAL(4u, RawSemaphore::attach(bytes, RawSemaphore::kSize).get_value());
        try {
            RawBoundedSemaphore::attach(bytes, sizeof bytes);
            CPPUNIT_FAIL("a Semaphore attached as a BoundedSemaphore");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("a Semaphore, not a BoundedSemaphore") !=
                                                     std::string::npos);
        }
        mproc::detail::SemaphoreLayout layout;
        std::memcpy(&layout, bytes, sizeof layout);
        layout.layout_version = 2;
        std::memcpy(bytes, &layout, sizeof layout);
        CPPUNIT_ASSERT_THROW(RawSemaphore::attach(bytes, sizeof bytes), mproc::InvalidObject);
        RawBoundedSemaphore::init(bytes, 3);
        std::memcpy(&layout, bytes, sizeof layout);
        layout.word = 4;  // a count above the bound
        std::memcpy(bytes, &layout, sizeof layout);
        CPPUNIT_ASSERT_THROW(RawBoundedSemaphore::attach(bytes, sizeof bytes), mproc::InvalidObject);
        layout.word = 3;
        layout.bound = RawSemaphore::kMaxValue + 1;
        std::memcpy(bytes, &layout, sizeof layout);
        CPPUNIT_ASSERT_THROW(RawBoundedSemaphore::attach(bytes, sizeof bytes), mproc::InvalidObject);
        alignas(64) unsigned char event_bytes[mproc::RawEvent::kSize];
        mproc::RawEvent::init(event_bytes);
        CPPUNIT_ASSERT_THROW(RawSemaphore::attach(event_bytes, sizeof event_bytes), mproc::InvalidObject);
    }

    void testMovedFromHandleIsStateError() {
        Semaphore first(1);
        Semaphore second(std::move(first));
        CPPUNIT_ASSERT_THROW(first.acquire(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.try_acquire(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.release(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.get_value(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.unlink(), mproc::StateError);
        CPPUNIT_ASSERT(second.try_acquire());
        BoundedSemaphore bounded(1);
        BoundedSemaphore taken = std::move(bounded);
        CPPUNIT_ASSERT_THROW(bounded.release(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(bounded.bound(), mproc::StateError);
        CPPUNIT_ASSERT_EQUAL(1u, taken.get_value());
    }

    // Moved from by construction or by assignment, the handle names its kind and the operation refused.
    void testMovedFromHandleErrorNamesTheOperation() {
        assert_moved_from_handles_refuse<Semaphore>(
            "semaphore: get_value: moved-from handle",
            [](Semaphore& semaphore) { CPPUNIT_ASSERT_EQUAL(1u, semaphore.get_value()); });
        assert_moved_from_handles_refuse<BoundedSemaphore>(
            "bounded semaphore: bound: moved-from handle",
            [](BoundedSemaphore& semaphore) { CPPUNIT_ASSERT_EQUAL(1u, semaphore.bound()); });
    }
};

// ---------------------------------------------------------------------------------------------------------

class SemaphoreStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SemaphoreStressTest);
    CPPUNIT_TEST(testProcessesNeverExceedValueAndCountExactly);
    CPPUNIT_TEST(testNeverExceedValueAndCountExactlyThreads);
    CPPUNIT_TEST(testBoundedCountsExactlyThreads);
    CPPUNIT_TEST(testPingPongLosesNoWakeUp);
    CPPUNIT_TEST(testPingPongLosesNoWakeUpThreads);
    CPPUNIT_TEST(testTimedAcquiresKeepTheCountExactThreads);
    CPPUNIT_TEST_SUITE_END();

    static constexpr int kWorkers = 4;
    static constexpr int kPairs = 3000;
    static constexpr int kValue = 2;
    static constexpr int kPingPongRounds = 10000;

public:
    void testProcessesNeverExceedValueAndCountExactly() {
        Semaphore semaphore(kValue);
        Shared<Board> board;
        mproc::test::run_in_processes(kWorkers, [&](int) { hold_and_count(semaphore, *board, kPairs); });
        // relaxed (all): run_in_processes() reaped the workers, which orders their RMWs.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(kWorkers) * kPairs, board->pairs.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(board->most_inside.load(std::memory_order_relaxed) <= kValue);
        CPPUNIT_ASSERT(board->most_inside.load(std::memory_order_relaxed) >= 1);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(kValue), semaphore.get_value());
    }

    void testNeverExceedValueAndCountExactlyThreads() {
        Semaphore semaphore(kValue);
        Board board;
        mproc::test::run_in_threads(kWorkers, [&](int) { hold_and_count(semaphore, board, kPairs); });
        // relaxed (both): run_in_threads() joined the workers, which orders their RMWs.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(kWorkers) * kPairs, board.pairs.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(board.most_inside.load(std::memory_order_relaxed) <= kValue);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(kValue), semaphore.get_value());
    }

    // Used as a mutex (value 1), the bounded semaphore's release never exceeds the bound.
    void testBoundedCountsExactlyThreads() {
        BoundedSemaphore bounded(1);
        Board board;
        std::uint64_t unguarded = 0;  // written only inside: ThreadSanitizer checks the exclusion
        mproc::test::run_in_threads(kWorkers, [&](int) {
            for (int round = 0; round < kPairs; ++round) {
                CPPUNIT_ASSERT(bounded.acquire(true, 20s));
                note_inside(board);
                ++unguarded;
                // relaxed: the semaphore orders `inside` (see note_inside()).
                board.inside.fetch_sub(1, std::memory_order_relaxed);
                bounded.release();
            }
        });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(kWorkers) * kPairs, unguarded);
        // relaxed: run_in_threads() joined the workers, which orders their RMWs.
        CPPUNIT_ASSERT_EQUAL(1, board.most_inside.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(1u, bounded.get_value());
    }

    // Two semaphores at zero pass one token back and forth: every round needs a wake-up to reach a
    // sleeping peer; a lost one stalls the round and the 10 s timeout fails the test.
    void testPingPongLosesNoWakeUp() {
        Semaphore ping(0);
        Semaphore pong(0);
        ForkedChild child([&] {
            for (int round = 0; round < kPingPongRounds; ++round) {
                CPPUNIT_ASSERT(acquired_promptly(ping));
                pong.release();
            }
        });
        for (int round = 0; round < kPingPongRounds; ++round) {
            ping.release();
            CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round), acquired_promptly(pong));
        }
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT_EQUAL(0u, ping.get_value());
        CPPUNIT_ASSERT_EQUAL(0u, pong.get_value());
    }

    void testPingPongLosesNoWakeUpThreads() {
        Semaphore ping(0);
        Semaphore pong(0);
        std::uint64_t baton = 0;  // handed over by the semaphores: ThreadSanitizer checks their ordering
        mproc::test::run_in_threads(2, [&](int index) {
            for (int round = 0; round < kPingPongRounds; ++round) {
                if (index == 0) {
                    ++baton;
                    ping.release();
                    CPPUNIT_ASSERT(acquired_promptly(pong));
                } else {
                    CPPUNIT_ASSERT(acquired_promptly(ping));
                    ++baton;
                    pong.release();
                }
            }
        });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(2) * kPingPongRounds, baton);
    }

    // Short timeouts race with releases: a timed-out acquire must never have taken a permit.
    void testTimedAcquiresKeepTheCountExactThreads() {
        Semaphore semaphore(1);
        std::atomic<std::uint64_t> taken{0};
        mproc::test::run_in_threads(kWorkers, [&](int) {
            for (int round = 0; round < kPairs; ++round) {
                if (semaphore.try_acquire_for(std::chrono::microseconds(round % 50))) {
                    // relaxed: read only after run_in_threads() joins the workers.
                    taken.fetch_add(1, std::memory_order_relaxed);
                    semaphore.release();
                }
            }
        });
        // relaxed: the join orders every increment before this load.
        CPPUNIT_ASSERT(taken.load(std::memory_order_relaxed) > 0);
        CPPUNIT_ASSERT_EQUAL(1u, semaphore.get_value());
    }
};

// ---------------------------------------------------------------------------------------------------------

class SemaphoreCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SemaphoreCrashTest);
    CPPUNIT_TEST(testKilledHolderLosesItsPermit);
    CPPUNIT_TEST(testWaiterKilledAsleepDoesNotStopLaterWakeUps);
    CPPUNIT_TEST(testWaiterKilledAsItIsWokenDoesNotStrandOthers);
    CPPUNIT_TEST_SUITE_END();

public:
    void testKilledHolderLosesItsPermit() {
        Semaphore semaphore(2);
        Shared<Board> board;
        ForkedChild holder([&] {
            CPPUNIT_ASSERT(semaphore.acquire());
            // relaxed: the parent checks the count only after reaping us, and waitpid() orders that.
            board->ready.store(1, std::memory_order_relaxed);
            for (;;) ::pause();
        });
        // relaxed: pairs with the holder's flag; the checks below follow holder.wait(), which orders them.
        wait_for([&] { return board->ready.load(std::memory_order_relaxed) == 1; }, "the holder to take a permit");
        holder.kill();
        holder.wait();
        CPPUNIT_ASSERT_EQUAL(1u, semaphore.get_value());
        CPPUNIT_ASSERT(semaphore.try_acquire());
        CPPUNIT_ASSERT(!semaphore.try_acquire());
    }

    // The victim sleeps first, so a wake of one would pick it; it dies asleep, leaving WAITERS set.
    void testWaiterKilledAsleepDoesNotStopLaterWakeUps() {
        Semaphore semaphore(0);
        Shared<Board> board;
        ForkedChild victim([&] { semaphore.acquire(); });
        wait_until_asleep(victim.pid());
        // relaxed (results, both): read after survivor.wait(), whose waitpid() orders the store.
        ForkedChild survivor(
            [&] { board->results[0].store(semaphore.acquire(true, 20s) ? 1 : 2, std::memory_order_relaxed); });
        wait_until_asleep(survivor.pid());
        victim.kill();
        victim.wait();
        semaphore.release();
        assert_exited_cleanly(survivor.wait(10s));  // woken, not timed out (20 s)
        CPPUNIT_ASSERT_EQUAL(1, board->results[0].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
        // The dead waiter's hint costs one extra wake at most; the semaphore works on.
        semaphore.release();
        CPPUNIT_ASSERT(semaphore.try_acquire_for(1s));
    }

    // The release and the SIGKILL race: the victim (asleep first, so first in the kernel's queue) is
    // woken and killed before it takes the permit, or takes it and dies holding it. Either way the
    // survivor must not sleep on while a permit is in the count.
    void testWaiterKilledAsItIsWokenDoesNotStrandOthers() {
        constexpr int kRounds = 30;
        for (int round = 0; round < kRounds; ++round) {
            Semaphore semaphore(0);
            Shared<Board> board;
            ForkedChild victim([&] { semaphore.acquire(); });
            wait_until_asleep(victim.pid());
            // relaxed (results, all): a flag that publishes nothing; the last load follows waitpid().
            ForkedChild survivor(
                [&] { board->results[0].store(semaphore.acquire() ? 1 : 2, std::memory_order_relaxed); });
            wait_until_asleep(survivor.pid());
            semaphore.release();
            victim.kill();
            victim.wait();
            // If the victim took the permit it died holding it: hand out another.
            const auto give_up = Clock::now() + 5s;
            while (board->results[0].load(std::memory_order_relaxed) == 0) {
                if (Clock::now() > give_up)
                    CPPUNIT_FAIL("round " + std::to_string(round) + ": the survivor still sleeps with " +
                                 std::to_string(semaphore.get_value()) + " permit(s) in the count");
                if (semaphore.get_value() == 0 && asleep_in_futex(survivor.pid(), survivor.pid())) {
                    std::this_thread::sleep_for(1ms);
                    if (board->results[0].load(std::memory_order_relaxed) == 0 && semaphore.get_value() == 0)
                        semaphore.release();
                }
                std::this_thread::sleep_for(1ms);
            }
            assert_exited_cleanly(survivor.wait(10s));
            CPPUNIT_ASSERT_EQUAL(1, board->results[0].load(std::memory_order_relaxed));
            CPPUNIT_ASSERT_EQUAL(0u, semaphore.get_value());
        }
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SemaphoreUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SemaphoreStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SemaphoreCrashTest, "crash");
