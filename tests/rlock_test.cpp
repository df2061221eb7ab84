// tests/rlock_test.cpp — mproc::RLock and mproc::RawRLock: recursion depth, Python's ownership errors,
// exclusion across processes and threads, owner death at depth, and the shared raw layout.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/rlock.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::AcquireStatus;
using mproc::LockConsistency;
using mproc::RawRLock;
using mproc::RLock;
using Clock = std::chrono::steady_clock;

// A RawRLock and the data it guards, in a MAP_SHARED anonymous mapping seen by forked children.
struct GuardedCounter {
    alignas(RawRLock::kAlignment) unsigned char lock_bytes[RawRLock::kSize];
    RawRLock& lock = RawRLock::init(lock_bytes);
    std::uint64_t counter = 0;  // guarded by lock
    std::atomic<std::uint32_t> inside{0};
    std::atomic<std::uint64_t> violations{0};
    std::atomic<int> held{0};
    std::atomic<int> release{0};
};

void wait_until_held(const std::atomic<int>& held) {
    const auto give_up = Clock::now() + 10s;
    // acquire: pairs with a holder's release store, so a lock it took before raising `held` is visible.
    while (held.load(std::memory_order_acquire) == 0) {
        if (Clock::now() > give_up) CPPUNIT_FAIL("the holder never took the lock");
        std::this_thread::sleep_for(100us);
    }
}

class RLockUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(RLockUnitTest);
    CPPUNIT_TEST(testOwnerReacquiresAndReleasesAtEachDepth);
    CPPUNIT_TEST(testOtherProcessWaitsUntilLastRelease);
    CPPUNIT_TEST(testReleaseByAnotherThreadIsStateError);
    CPPUNIT_TEST(testReleaseOfUnownedLockIsStateError);
    CPPUNIT_TEST(testForkedChildDoesNotHoldParentsRLock);
    CPPUNIT_TEST(testTimedAcquireWaitsForItsTimeout);
    CPPUNIT_TEST(testUncontendedRecursionMakesNoSystemCall);
    CPPUNIT_TEST(testNamedRLockIsSharedByName);
    CPPUNIT_TEST(testRawRLockRejectsLockBytes);
    CPPUNIT_TEST(testMovedFromRLockErrorNamesTheOperation);
    CPPUNIT_TEST_SUITE_END();

public:
    void testOwnerReacquiresAndReleasesAtEachDepth() {
        RLock lock;
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), lock.depth());
        lock.lock();
        CPPUNIT_ASSERT(lock.try_lock());
        CPPUNIT_ASSERT(lock.acquire());
        CPPUNIT_ASSERT(lock.acquire(false));
        CPPUNIT_ASSERT(lock.try_lock_for(1ms));
        {
            std::lock_guard guard(lock);
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(6), lock.depth());
        }
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(5), lock.depth());
        for (std::uint32_t depth = 5; depth > 0; --depth) {
            CPPUNIT_ASSERT(lock.held_by_this_thread());
            CPPUNIT_ASSERT_EQUAL(depth, lock.depth());
            lock.release();
        }
        CPPUNIT_ASSERT(!lock.held_by_this_thread());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), lock.depth());
        CPPUNIT_ASSERT_THROW(lock.release(), mproc::StateError);
    }

    void testOtherProcessWaitsUntilLastRelease() {
        Shared<GuardedCounter> shared;
        RawRLock& lock = shared->lock;
        lock.lock();
        lock.lock();
        lock.lock();
        ForkedChild child([&] {
            CPPUNIT_ASSERT(!lock.try_lock());
            // relaxed: raised before lock(), so it publishes nothing: it only says that we are about to block.
            shared->held.store(1, std::memory_order_relaxed);
            lock.lock();
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(1), lock.depth());
            // relaxed: a flag that publishes nothing; the parent's last check of it follows waitpid().
            shared->release.store(1, std::memory_order_relaxed);
            lock.unlock();
        });
        wait_until_held(shared->held);
        lock.unlock();
        lock.unlock();
        std::this_thread::sleep_for(50ms);
        // relaxed: one location, read only to see that the child has not got the lock yet.
        CPPUNIT_ASSERT_EQUAL(0, shared->release.load(std::memory_order_relaxed));  // still held at depth 1
        lock.unlock();
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        // relaxed: the child was reaped above, which orders its store.
        CPPUNIT_ASSERT_EQUAL(1, shared->release.load(std::memory_order_relaxed));
    }

    void testReleaseByAnotherThreadIsStateError() {
        RLock lock;
        lock.lock();
        bool refused = false;
        std::thread other([&] {
            try {
                lock.release();
            } catch (const mproc::StateError&) {
                refused = true;
            }
        });
        other.join();
        CPPUNIT_ASSERT(refused);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(1), lock.depth());
        lock.release();
    }

    void testReleaseOfUnownedLockIsStateError() {
        RLock lock;
        CPPUNIT_ASSERT_THROW(lock.release(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(lock.unlock(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(lock.make_consistent(), mproc::StateError);
    }

    void testForkedChildDoesNotHoldParentsRLock() {
        RLock lock;
        lock.lock();
        lock.lock();
        ForkedChild child([&] {
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), lock.depth());
            CPPUNIT_ASSERT_THROW(lock.release(), mproc::StateError);
            CPPUNIT_ASSERT(!lock.try_lock());
        });
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(2), lock.depth());
        lock.unlock();
        lock.unlock();
    }

    void testTimedAcquireWaitsForItsTimeout() {
        Shared<GuardedCounter> shared;
        ForkedChild child([&] {
            shared->lock.lock();
            // release: pairs with the acquire in wait_until_held(), so the parent sees the lock word we set.
            shared->held.store(1, std::memory_order_release);
            for (;;) std::this_thread::sleep_for(1s);
        });
        wait_until_held(shared->held);
        assert_times_out_after(150ms, [&] { return shared->lock.try_lock_for(150ms); });
        CPPUNIT_ASSERT(shared->lock.acquire_status(0ns) == AcquireStatus::timed_out);
    }

    // See lock_test.cpp: strict seccomp kills the child at its first system call.
    void testUncontendedRecursionMakesNoSystemCall() {
        Shared<GuardedCounter> shared;
        ForkedChild child([&] {
            RawRLock& lock = shared->lock;
            lock.lock();
            lock.unlock();
            if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) MPROC_SKIP("strict seccomp is unavailable");
            for (int round = 0; round < 1000; ++round) {
                lock.lock();
                lock.lock();
                if (!lock.try_lock()) ::syscall(SYS_exit, 3);
                lock.unlock();
                lock.unlock();
                lock.unlock();
            }
            ::syscall(SYS_exit, 0);
        });
        const int status = child.wait();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) MPROC_SKIP("strict seccomp is unavailable");
        CPPUNIT_ASSERT_MESSAGE("the uncontended loop made a system call (killed by seccomp) or failed",
                               WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    void testNamedRLockIsSharedByName() {
        const std::string name = mproc::test::unique_name("rlock");
        RLock created = RLock::create(name);
        created.lock();
        created.lock();
        ForkedChild child([&] {
            RLock opened = RLock::open(name);
            CPPUNIT_ASSERT(!opened.try_lock());
            CPPUNIT_ASSERT_THROW(mproc::Lock::open(name), mproc::InvalidObject);
        });
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        created.unlock();
        created.unlock();
        created.unlink();
    }

    void testRawRLockRejectsLockBytes() {
        alignas(64) unsigned char bytes[64];
        mproc::RawLock::init(bytes);
        try {
            RawRLock::attach(bytes, sizeof bytes);
            CPPUNIT_FAIL("a RawLock attached as a RawRLock");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("a Lock, not an RLock") != std::string::npos);
        }
        RawRLock::init(bytes);
        CPPUNIT_ASSERT_THROW(mproc::RawLock::attach(bytes, sizeof bytes), mproc::InvalidObject);
        RawRLock& lock = RawRLock::attach(bytes, sizeof bytes);
        lock.lock();
        lock.unlock();
    }

    // Moved from by construction or by assignment, the handle names itself and the operation refused.
    void testMovedFromRLockErrorNamesTheOperation() {
        assert_moved_from_handles_refuse<RLock>("rlock: depth: moved-from handle",
                                                [](RLock& lock) { CPPUNIT_ASSERT_EQUAL(0u, lock.depth()); });
    }
};

class RLockStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(RLockStressTest);
    CPPUNIT_TEST(testProcessesIncrementExactlyAtDepth);
    CPPUNIT_TEST(testIncrementExactlyAtDepthThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    static void increment(GuardedCounter& shared, int rounds) {
        for (int round = 0; round < rounds; ++round) {
            shared.lock.lock();
            shared.lock.lock();
            // relaxed (all): the lock orders `inside`, which only makes a broken exclusion observable;
            // `violations` is read only after join() or waitpid(), which order every increment.
            if (shared.inside.fetch_add(1, std::memory_order_relaxed) != 0)
                shared.violations.fetch_add(1, std::memory_order_relaxed);
            ++shared.counter;
            shared.inside.fetch_sub(1, std::memory_order_relaxed);
            shared.lock.unlock();
            shared.lock.unlock();
        }
    }

    void testProcessesIncrementExactlyAtDepth() {
        Shared<GuardedCounter> shared;
        mproc::test::run_in_processes(4, [&](int) { increment(*shared.operator->(), 50000); });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(200000), shared->counter);
        // relaxed: run_in_processes() reaped the children, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), shared->violations.load(std::memory_order_relaxed));
    }

    void testIncrementExactlyAtDepthThreads() {
        Shared<GuardedCounter> shared;
        mproc::test::run_in_threads(4, [&](int) { increment(*shared.operator->(), 20000); });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(80000), shared->counter);
        // relaxed: run_in_threads() joined the workers, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), shared->violations.load(std::memory_order_relaxed));
    }
};

class RLockCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(RLockCrashTest);
    CPPUNIT_TEST(testHolderKilledAtDepthLeavesLockAtDepthOne);
    CPPUNIT_TEST(testReleaseWithoutMakeConsistentMakesRLockUnrecoverable);
    CPPUNIT_TEST_SUITE_END();

public:
    void testHolderKilledAtDepthLeavesLockAtDepthOne() {
        RLock lock;
        Shared<GuardedCounter> shared;
        ForkedChild child([&] {
            lock.lock();
            lock.lock();
            lock.lock();
            // relaxed: the parent kills and reaps us before it touches the lock, and waitpid() orders that.
            shared->held.store(1, std::memory_order_relaxed);
            for (;;) std::this_thread::sleep_for(1s);
        });
        wait_until_held(shared->held);
        child.kill();
        child.wait();
        CPPUNIT_ASSERT_THROW(lock.lock(), mproc::OwnerDied);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(1), lock.depth());
        lock.make_consistent();
        lock.unlock();
        CPPUNIT_ASSERT(!lock.held_by_this_thread());
        CPPUNIT_ASSERT(lock.acquire_status(0ns) == AcquireStatus::acquired);
        lock.unlock();
    }

    void testReleaseWithoutMakeConsistentMakesRLockUnrecoverable() {
        RLock lock;
        Shared<GuardedCounter> shared;
        ForkedChild child([&] {
            lock.lock();
            // relaxed: the parent kills and reaps us before it touches the lock, and waitpid() orders that.
            shared->held.store(1, std::memory_order_relaxed);
            for (;;) std::this_thread::sleep_for(1s);
        });
        wait_until_held(shared->held);
        child.kill();
        child.wait();
        CPPUNIT_ASSERT(lock.acquire_status() == AcquireStatus::owner_died);
        CPPUNIT_ASSERT(lock.acquire_status() == AcquireStatus::acquired);  // recursion: still inconsistent
        lock.release();
        lock.release();
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::not_recoverable);
        CPPUNIT_ASSERT_THROW(lock.lock(), mproc::NotRecoverable);
        CPPUNIT_ASSERT_THROW(lock.try_lock(), mproc::NotRecoverable);
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(RLockUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(RLockStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(RLockCrashTest, "crash");

}  // namespace
