// tests/event_test.cpp — mproc::Event and RawEvent: set/clear/is_set/wait across processes and threads,
// no system call without waiters, every waiter woken, a set() followed at once by clear() still ending the
// waits it overlapped, timeouts and signals, no lost wake-up in long ping-pongs, named and raw placement
// with clear errors, and a waiter SIGKILLed asleep.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
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

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Event;
using mproc::RawEvent;
using Clock = std::chrono::steady_clock;

struct Board {
    alignas(RawEvent::kAlignment) unsigned char raw_bytes[RawEvent::kSize];
    std::atomic<int> results[8]{};  // per child: 1 wait returned true, 2 false
    std::atomic<std::uint64_t> payload{0};
};

// wait() for a ping-pong round (see succeeded_promptly).
bool set_promptly(Event& event) {
    return succeeded_promptly([&](auto timeout) { return event.wait(timeout); });
}

// ---------------------------------------------------------------------------------------------------------

class EventUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(EventUnitTest);
    CPPUNIT_TEST(testSetClearAndWaitWithoutWaitersMakeNoSystemCall);
    CPPUNIT_TEST(testFlagFollowsSetAndClear);
    CPPUNIT_TEST(testTimedWaitOnClearEventWaitsForItsTimeout);
    CPPUNIT_TEST(testZeroOrNegativeTimeoutDoesNotBlock);
    CPPUNIT_TEST(testSignalsDoNotShortenTheTimeout);
    CPPUNIT_TEST(testSetInAnotherProcessWakesEveryWaiter);
    CPPUNIT_TEST(testSetFollowedAtOnceByClearStillEndsTheWaits);
    CPPUNIT_TEST(testSetPublishesWritesMadeBeforeIt);
    CPPUNIT_TEST(testNamedEventIsSharedByName);
    CPPUNIT_TEST(testNamedOpenErrorsAreClear);
    CPPUNIT_TEST(testRawEventInCallerMemoryWorksAcrossFork);
    CPPUNIT_TEST(testRawEventValidatesItsBytes);
    CPPUNIT_TEST(testMovedFromEventIsStateError);
    CPPUNIT_TEST(testMovedFromEventErrorNamesTheOperation);
    CPPUNIT_TEST_SUITE_END();

public:
    void testSetClearAndWaitWithoutWaitersMakeNoSystemCall() {
        if (kThreadSanitizer) MPROC_SKIP("ThreadSanitizer's runtime makes system calls of its own under seccomp");
        Event event;
        ForkedChild child([&] {
            if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) MPROC_SKIP("strict seccomp is unavailable");
            for (int round = 0; round < 1000; ++round) {
                event.set();
                event.set();
                if (!event.is_set()) ::syscall(SYS_exit, 3);
                if (!event.wait()) ::syscall(SYS_exit, 4);
                if (!event.wait_for(1s)) ::syscall(SYS_exit, 5);
                event.clear();
                event.clear();
                if (event.is_set()) ::syscall(SYS_exit, 6);
            }
            ::syscall(SYS_exit, 0);  // exit_group is not allowed in strict mode
        });
        const int status = child.wait();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) MPROC_SKIP("strict seccomp is unavailable");
        CPPUNIT_ASSERT_MESSAGE("set/clear/wait without waiters made a system call (killed by seccomp) or failed",
                               WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    void testFlagFollowsSetAndClear() {
        Event event;
        CPPUNIT_ASSERT(!event.is_set());
        CPPUNIT_ASSERT(!event.wait(0ns));
        event.set();
        CPPUNIT_ASSERT(event.is_set());
        CPPUNIT_ASSERT(event.wait());
        CPPUNIT_ASSERT(event.wait(0ns));
        CPPUNIT_ASSERT(event.wait_until(std::chrono::system_clock::now() - 1s));
        event.clear();
        CPPUNIT_ASSERT(!event.is_set());
        CPPUNIT_ASSERT(!event.wait_for(1ms));
        ForkedChild child([&] { event.set(); });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT(event.is_set());
    }

    void testTimedWaitOnClearEventWaitsForItsTimeout() {
        Event event;
        assert_times_out_after(200ms, [&] { return event.wait(200ms); });
        assert_times_out_after(100ms, [&] { return event.wait_until(Clock::now() + 100ms); });
    }

    void testZeroOrNegativeTimeoutDoesNotBlock() {
        Event event;
        const auto started = Clock::now();
        CPPUNIT_ASSERT(!event.wait(0ns));
        CPPUNIT_ASSERT(!event.wait(-1s));
        CPPUNIT_ASSERT(!event.wait_for(-5ms));
        CPPUNIT_ASSERT(Clock::now() - started < 1s);
        event.set();
        CPPUNIT_ASSERT(event.wait(-1s));
    }

    // Each SIGALRM of the storm interrupts FUTEX_WAIT with EINTR; the wait must resume with the time that remains.
    void testSignalsDoNotShortenTheTimeout() {
        Event event;
        assert_signals_do_not_shorten(300ms, [&] { return event.wait(300ms); });
    }

    void testSetInAnotherProcessWakesEveryWaiter() {
        constexpr int kWaiters = 4;
        Event event;
        Shared<Board> board;
        std::vector<std::unique_ptr<ForkedChild>> waiters;
        for (int index = 0; index < kWaiters; ++index)
            waiters.push_back(std::make_unique<ForkedChild>([&, index] {
                // relaxed (results, both): read after the waiters are reaped, and waitpid() orders them.
                board->results[index].store(event.wait(20s) ? 1 : 2, std::memory_order_relaxed);
            }));
        for (auto& waiter : waiters) wait_until_asleep(waiter->pid());
        ForkedChild setter([&] { event.set(); });
        assert_exited_cleanly(setter.wait());
        for (auto& waiter : waiters) assert_exited_cleanly(waiter->wait(10s));
        for (int index = 0; index < kWaiters; ++index)
            CPPUNIT_ASSERT_EQUAL(1, board->results[index].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(event.is_set());
    }

    // The waiters run again only after the clear(): they see the flag off but a new generation.
    void testSetFollowedAtOnceByClearStillEndsTheWaits() {
        constexpr int kWaiters = 3;
        Event event;
        Shared<Board> board;
        std::vector<std::unique_ptr<ForkedChild>> waiters;
        for (int index = 0; index < kWaiters; ++index)
            waiters.push_back(std::make_unique<ForkedChild>([&, index] {
                // relaxed (results, both): read after the waiters are reaped, and waitpid() orders them.
                board->results[index].store(event.wait(20s) ? 1 : 2, std::memory_order_relaxed);
            }));
        for (auto& waiter : waiters) wait_until_asleep(waiter->pid());
        event.set();
        event.clear();
        for (auto& waiter : waiters) assert_exited_cleanly(waiter->wait(10s));
        for (int index = 0; index < kWaiters; ++index)
            CPPUNIT_ASSERT_EQUAL(1, board->results[index].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(!event.is_set());
    }

    void testSetPublishesWritesMadeBeforeIt() {
        Event event;
        std::uint64_t payload = 0;  // plain memory: ThreadSanitizer checks that set()/wait() order it
        mproc::test::run_in_threads(2, [&](int index) {
            if (index == 0) {
                payload = 42;
                event.set();
            } else {
                CPPUNIT_ASSERT(event.wait(10s));
                CPPUNIT_ASSERT_EQUAL(std::uint64_t(42), payload);
            }
        });
    }

    void testNamedEventIsSharedByName() {
        const std::string name = mproc::test::unique_name("event");
        Event created = Event::create(name);
        CPPUNIT_ASSERT_EQUAL(name, created.name());
        Shared<Board> board;
        // relaxed (results, both): read after waiter.wait(), whose waitpid() orders the store.
        ForkedChild waiter(
            [&] { board->results[0].store(Event::open(name).wait(20s) ? 1 : 2, std::memory_order_relaxed); });
        wait_until_asleep(waiter.pid());
        ForkedChild setter([&] { Event::open(name).set(); });
        assert_exited_cleanly(setter.wait());
        assert_exited_cleanly(waiter.wait(10s));
        CPPUNIT_ASSERT_EQUAL(1, board->results[0].load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(created.is_set());
        created.unlink();
        CPPUNIT_ASSERT_THROW(Event::open(name, 0ms), mproc::SystemError);
    }

    void testNamedOpenErrorsAreClear() {
        const std::string name = mproc::test::unique_name("event-errors");
        try {
            Event::open(name, 0ms);
            CPPUNIT_FAIL("opening a missing name did not throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
        Event created = Event::create(name);
        try {
            Event::create(name);
            CPPUNIT_FAIL("creating an existing name did not throw");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EEXIST, error.error_number());
        }
        created.unlink();
        const std::string semaphore_name = mproc::test::unique_name("semaphore-not-event");
        mproc::Semaphore semaphore = mproc::Semaphore::create(semaphore_name);
        try {
            Event::open(semaphore_name, 0ms);
            CPPUNIT_FAIL("a semaphore opened as an event");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("semaphore") != std::string::npos);
        }
        semaphore.unlink();
    }

    void testRawEventInCallerMemoryWorksAcrossFork() {
        Shared<Board> board;
        RawEvent& raw = RawEvent::init(board->raw_bytes);
        ForkedChild child([&] {
            RawEvent& mine = RawEvent::attach(board->raw_bytes, sizeof board->raw_bytes);
            // relaxed (results, payload): the result is read after waitpid(); the payload is ordered by set()'s
            // release and wait()'s acquire.
            board->results[0].store(mine.wait(20s) ? 1 : 2, std::memory_order_relaxed);
            CPPUNIT_ASSERT_EQUAL(std::uint64_t(7), board->payload.load(std::memory_order_relaxed));
        });
        wait_until_asleep(child.pid());
        // relaxed: set() below releases it, and the child's wait() acquires it.
        board->payload.store(7, std::memory_order_relaxed);
        raw.set();
        assert_exited_cleanly(child.wait(10s));  // woken, not timed out (20 s)
        // relaxed: the child was reaped above, which orders its store.
        CPPUNIT_ASSERT_EQUAL(1, board->results[0].load(std::memory_order_relaxed));
    }

    void testRawEventValidatesItsBytes() {
        alignas(RawEvent::kAlignment) unsigned char bytes[2 * RawEvent::kSize] = {};
        CPPUNIT_ASSERT_THROW(RawEvent::attach(bytes, sizeof bytes), mproc::InvalidObject);  // zero magic
        CPPUNIT_ASSERT_THROW(RawEvent::init(bytes + 4), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(RawEvent::init(nullptr), mproc::ValueError);
        RawEvent::init(bytes);
        CPPUNIT_ASSERT_THROW(RawEvent::attach(bytes + 4, sizeof bytes - 4), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(RawEvent::attach(bytes, RawEvent::kSize - 1), mproc::InvalidObject);
        CPPUNIT_ASSERT(!RawEvent::attach(bytes, RawEvent::kSize).is_set());
        mproc::detail::EventLayout layout;
        std::memcpy(&layout, bytes, sizeof layout);
        layout.layout_version = 9;
        std::memcpy(bytes, &layout, sizeof layout);
        try {
            RawEvent::attach(bytes, sizeof bytes);
            CPPUNIT_FAIL("another layout version was accepted");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("layout version 9, expected 1") !=
                                                     std::string::npos);
        }
        alignas(64) unsigned char semaphore_bytes[mproc::RawSemaphore::kSize];
        mproc::RawSemaphore::init(semaphore_bytes);
        CPPUNIT_ASSERT_THROW(RawEvent::attach(semaphore_bytes, sizeof semaphore_bytes), mproc::InvalidObject);
    }

    void testMovedFromEventIsStateError() {
        Event first;
        Event second(std::move(first));
        CPPUNIT_ASSERT_THROW(first.set(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.clear(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.is_set(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.wait(0ns), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.unlink(), mproc::StateError);
        second.set();
        CPPUNIT_ASSERT(second.is_set());
    }

    // Moved from by construction or by assignment, the handle names itself and the operation refused.
    void testMovedFromEventErrorNamesTheOperation() {
        assert_moved_from_handles_refuse<Event>("event: is_set: moved-from handle",
                                                [](Event& event) { CPPUNIT_ASSERT(!event.is_set()); });
    }
};

// ---------------------------------------------------------------------------------------------------------

class EventStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(EventStressTest);
    CPPUNIT_TEST(testPingPongLosesNoWakeUp);
    CPPUNIT_TEST(testPingPongLosesNoWakeUpThreads);
    CPPUNIT_TEST(testEveryWaiterSeesEverySetThreads);
    CPPUNIT_TEST_SUITE_END();

    static constexpr int kRounds = 10000;

    // One side of a ping-pong: wait for `mine`, clear it, set `theirs`. A lost wake-up leaves both
    // sides waiting and the 10 s timeout fails the test.
    template <class Check>
    static void play(Event& first, Event& second, bool starts, Check check) {
        for (int round = 0; round < kRounds; ++round) {
            if (starts) {
                first.set();
                check(set_promptly(second), round);
                second.clear();
            } else {
                check(set_promptly(first), round);
                first.clear();
                second.set();
            }
        }
    }

public:
    void testPingPongLosesNoWakeUp() {
        Event ping;
        Event pong;
        ForkedChild child([&] {
            play(ping, pong, false, [](bool set, int) {
                if (!set) std::_Exit(3);
            });
        });
        play(ping, pong, true, [](bool set, int round) {
            CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round), set);
        });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT(!ping.is_set() && !pong.is_set());
    }

    void testPingPongLosesNoWakeUpThreads() {
        Event ping;
        Event pong;
        std::uint64_t baton = 0;  // handed over by the events: ThreadSanitizer checks their ordering
        mproc::test::run_in_threads(2, [&](int index) {
            play(ping, pong, index == 0, [&](bool set, int round) {
                CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round), set);
                ++baton;
            });
        });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(2) * kRounds, baton);
    }

    // Rounds of: every waiter waits on `go`, the leader sets it once all have arrived, clears it after all
    // have left. Each round needs one set() to wake several sleepers.
    void testEveryWaiterSeesEverySetThreads() {
        constexpr int kWaiters = 3;
        constexpr int kSetRounds = 2000;
        Event go;
        std::atomic<int> arrived{0};
        std::atomic<int> left{0};
        mproc::test::run_in_threads(kWaiters + 1, [&](int index) {
            for (int round = 0; round < kSetRounds; ++round) {
                if (index == 0) {
                    // acquire (both): pair with the waiters' release increments, so each waiter's last look at
                    // `go` happens before the set()/clear() that follows, and cannot see that one early.
                    while (arrived.load(std::memory_order_acquire) < kWaiters * (round + 1)) std::this_thread::yield();
                    go.set();
                    while (left.load(std::memory_order_acquire) < kWaiters * (round + 1)) std::this_thread::yield();
                    go.clear();
                } else {
                    // release (both): pair with the leader's acquire loads (see there).
                    arrived.fetch_add(1, std::memory_order_release);
                    CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round), set_promptly(go));
                    left.fetch_add(1, std::memory_order_release);
                    // The next round's wait must not start before the leader cleared this round's set.
                    while (go.is_set()) std::this_thread::yield();
                }
            }
        });
    }
};

// ---------------------------------------------------------------------------------------------------------

class EventCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(EventCrashTest);
    CPPUNIT_TEST(testWaiterKilledAsleepDoesNotStopLaterWakeUps);
    CPPUNIT_TEST_SUITE_END();

public:
    void testWaiterKilledAsleepDoesNotStopLaterWakeUps() {
        Event event;
        Shared<Board> board;
        ForkedChild victim([&] { event.wait(); });
        wait_until_asleep(victim.pid());
        // relaxed (results, all four): each is read after its writer is reaped, and waitpid() orders it.
        ForkedChild survivor([&] { board->results[0].store(event.wait(20s) ? 1 : 2, std::memory_order_relaxed); });
        wait_until_asleep(survivor.pid());
        victim.kill();
        victim.wait();
        event.set();
        assert_exited_cleanly(survivor.wait(10s));  // woken, not timed out (20 s)
        CPPUNIT_ASSERT_EQUAL(1, board->results[0].load(std::memory_order_relaxed));
        // The dead waiter's hint is gone after that wake; the event works on.
        event.clear();
        ForkedChild later([&] { board->results[1].store(event.wait(20s) ? 1 : 2, std::memory_order_relaxed); });
        wait_until_asleep(later.pid());
        event.set();
        assert_exited_cleanly(later.wait(10s));
        CPPUNIT_ASSERT_EQUAL(1, board->results[1].load(std::memory_order_relaxed));
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(EventUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(EventStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(EventCrashTest, "crash");
