// tests/lock_test.cpp — mproc::Lock and mproc::RawLock: exclusion across processes and threads, the std
// and Python interfaces, timeouts, ownership rules, owner death (SIGKILL at random points, exactly one
// report per death, unrecoverable after a careless release), and coexistence with glibc's robust mutexes
// in the same robust list.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/rlock.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::AcquireStatus;
using mproc::Lock;
using mproc::LockConsistency;
using mproc::RawLock;
using Clock = std::chrono::steady_clock;

// A RawLock with the data it guards, for raw-layer tests.
struct GuardedCounter {
    alignas(RawLock::kAlignment) unsigned char lock_bytes[RawLock::kSize];
    RawLock& lock = RawLock::init(lock_bytes);
    std::uint64_t counter = 0;             // guarded by lock
    std::atomic<std::uint32_t> inside{0};  // threads inside the critical section; never above 1
    std::atomic<std::uint64_t> violations{0};
    std::atomic<std::uint64_t> owner_died_reports{0};
    std::atomic<std::uint64_t> progress{0};
    std::atomic<int> flag{0};
    std::atomic<std::int64_t> timestamp_ns{0};
    std::atomic<int> status{-1};
    std::atomic<int> release{0};
};

std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// A child that takes `lock`, raises `held`, and then holds it until told (release) or killed.
template <class L>
std::unique_ptr<ForkedChild> holder(L& lock, std::atomic<int>& held, const std::atomic<int>* release_when = nullptr) {
    auto child = std::make_unique<ForkedChild>([&lock, &held, release_when] {
        lock.lock();
        // release: pairs with the acquire below, so the caller sees the lock word this child set.
        held.store(1, std::memory_order_release);
        // acquire: pairs with the caller's release store, so its checks of the held lock precede our unlock.
        while (release_when == nullptr || release_when->load(std::memory_order_acquire) == 0)
            std::this_thread::sleep_for(1ms);
        lock.unlock();
    });
    // acquire: pairs with the holder's release store, so the lock word it set is visible from here on.
    wait_for([&] { return held.load(std::memory_order_acquire) == 1; }, "the holder to take the lock");
    return child;
}

// The caller's robust list as the kernel will walk it: node addresses in order, checking every prev word
// (glibc's __prev, 8 bytes before each node) against the entry before it.
std::vector<std::uintptr_t> robust_list_entries() {
    robust_list_head* head = nullptr;
    std::size_t length = 0;
    if (::syscall(SYS_get_robust_list, 0, &head, &length) != 0) CPPUNIT_FAIL("get_robust_list failed");
    std::vector<std::uintptr_t> entries;
    const auto head_address = reinterpret_cast<std::uintptr_t>(head);
    std::uintptr_t previous = head_address;
    std::uintptr_t entry = reinterpret_cast<std::uintptr_t>(head->list.next) & ~std::uintptr_t(1);
    while (entry != head_address) {
        std::uintptr_t prev_word;
        std::memcpy(&prev_word, reinterpret_cast<const void*>(entry - 8), sizeof prev_word);
        CPPUNIT_ASSERT_EQUAL_MESSAGE("prev word of a robust list entry", previous, prev_word & ~std::uintptr_t(1));
        entries.push_back(entry);
        CPPUNIT_ASSERT_MESSAGE("robust list longer than any test makes it", entries.size() < 64);
        previous = entry;
        std::memcpy(&entry, reinterpret_cast<const void*>(entry), sizeof entry);
        entry &= ~std::uintptr_t(1);
    }
    // The head's own prev word (glibc's robust_prev) names the last entry, or the head when empty.
    std::uintptr_t head_prev;
    std::memcpy(&head_prev, reinterpret_cast<const void*>(head_address - 8), sizeof head_prev);
    CPPUNIT_ASSERT_EQUAL_MESSAGE("prev word of the list head", previous, head_prev & ~std::uintptr_t(1));
    return entries;
}

// Two glibc robust process-shared mutexes and two mproc locks, for the interleaving tests.
struct MixedLocks {
    static constexpr int kGlibc = 2;
    static constexpr int kMproc = 2;
    static constexpr int kCount = kGlibc + kMproc;
    pthread_mutex_t glibc[kGlibc];
    alignas(RawLock::kAlignment) unsigned char mproc_bytes[kMproc][RawLock::kSize];

    MixedLocks() {
        pthread_mutexattr_t attributes;
        pthread_mutexattr_init(&attributes);
        pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
        pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
        for (auto& mutex : glibc) pthread_mutex_init(&mutex, &attributes);
        pthread_mutexattr_destroy(&attributes);
        for (auto& bytes : mproc_bytes) RawLock::init(bytes);
    }
    RawLock& mproc(int index) { return RawLock::attach(mproc_bytes[index], RawLock::kSize); }
    // Objects 0..kGlibc-1 are glibc's, the rest mproc's.
    void lock(int object) {
        if (object < kGlibc) CPPUNIT_ASSERT_EQUAL(0, pthread_mutex_lock(&glibc[object]));
        else mproc(object - kGlibc).lock();
    }
    void unlock(int object) {
        if (object < kGlibc) CPPUNIT_ASSERT_EQUAL(0, pthread_mutex_unlock(&glibc[object]));
        else mproc(object - kGlibc).unlock();
    }
    std::uintptr_t node(int object) {
        if (object < kGlibc) return reinterpret_cast<std::uintptr_t>(&glibc[object].__data.__list.__next);
        return reinterpret_cast<std::uintptr_t>(mproc_bytes[object - kGlibc]) + 32;
    }
    // After the thread that held some of them died: each held one reports its owner's death exactly once,
    // each free one is acquired normally; all are released consistent again.
    void recover(const std::vector<bool>& held_by_dead) {
        for (int object = 0; object < kCount; ++object) {
            const std::string which = "object " + std::to_string(object);
            if (object < kGlibc) {
                const int result = pthread_mutex_trylock(&glibc[object]);
                CPPUNIT_ASSERT_EQUAL_MESSAGE(which, held_by_dead[object] ? EOWNERDEAD : 0, result);
                if (result == EOWNERDEAD) CPPUNIT_ASSERT_EQUAL(0, pthread_mutex_consistent(&glibc[object]));
                CPPUNIT_ASSERT_EQUAL(0, pthread_mutex_unlock(&glibc[object]));
            } else {
                RawLock& lock = mproc(object - kGlibc);
                const AcquireStatus status = lock.acquire_status(0ns);
                CPPUNIT_ASSERT_MESSAGE(which, status == (held_by_dead[object] ? AcquireStatus::owner_died
                                                                              : AcquireStatus::acquired));
                if (status == AcquireStatus::owner_died) lock.make_consistent();
                lock.unlock();
            }
        }
    }
};

// Every order of 2*kCount events in which each object is locked once and then unlocked once.
void for_each_interleaving(const std::function<void(const std::vector<int>&)>& visit) {
    std::vector<int> events;  // object + 1 for a lock, -(object + 1) for an unlock
    std::vector<int> state(MixedLocks::kCount, 0);  // 0 untouched, 1 locked, 2 unlocked
    std::function<void()> extend = [&] {
        if (events.size() == 2 * MixedLocks::kCount) {
            visit(events);
            return;
        }
        for (int object = 0; object < MixedLocks::kCount; ++object) {
            if (state[object] == 2) continue;
            events.push_back(state[object] == 0 ? object + 1 : -(object + 1));
            ++state[object];
            extend();
            --state[object];
            events.pop_back();
        }
    };
    extend();
}

void apply(MixedLocks& locks, int event) {
    if (event > 0) locks.lock(event - 1);
    else locks.unlock(-event - 1);
}

// ---------------------------------------------------------------------------------------------------------

class LockUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(LockUnitTest);
    CPPUNIT_TEST(testUncontendedLockAndUnlockMakeNoSystemCall);
    CPPUNIT_TEST(testStdGuardsLockAndUnlock);
    CPPUNIT_TEST(testTryLockFailsWhileAnotherProcessHolds);
    CPPUNIT_TEST(testTimedAcquireWaitsForItsTimeout);
    CPPUNIT_TEST(testZeroTimeoutDoesNotBlock);
    CPPUNIT_TEST(testSignalsDoNotShortenTheTimeout);
    CPPUNIT_TEST(testWaiterAcquiresWhenHolderReleases);
    CPPUNIT_TEST(testPythonAcquireRejectsInvalidArguments);
    CPPUNIT_TEST(testReleaseByAnotherThreadIsStateError);
    CPPUNIT_TEST(testReleaseOfUnlockedLockIsStateError);
    CPPUNIT_TEST(testLockingTwiceInOneThreadIsStateError);
    CPPUNIT_TEST(testForkedChildDoesNotHoldParentsLock);
    CPPUNIT_TEST(testNamedLockIsSharedByName);
    CPPUNIT_TEST(testNamedLockOpenErrorsAreClear);
    CPPUNIT_TEST(testRawLockValidatesItsBytes);
    CPPUNIT_TEST(testMakeConsistentOnConsistentLockIsStateError);
    CPPUNIT_TEST(testWordForgedWithOurThreadIdNeverBlocksOrUnlinks);
    CPPUNIT_TEST(testMovedFromLockIsStateError);
    CPPUNIT_TEST(testMovedFromLockErrorNamesTheOperation);
    CPPUNIT_TEST(testRobustListStaysIntactWithGlibcMutexesInEveryOrder);
    CPPUNIT_TEST(testHandleDestroyedWhileHeldGivesTheLockUpAsAtDeath);
    CPPUNIT_TEST(testExceptionUnwindingPastHeldLocksLeavesTheThreadUsable);
    CPPUNIT_TEST_SUITE_END();

public:
    // Strict seccomp allows read, write, exit and sigreturn only: any other system call kills the child
    // with SIGKILL, so a child that ends normally made none in the measured loop.
    // The lock was contended first (the child slept in FUTEX_WAIT): once contention ends, lock and unlock
    // are syscall-free again.
    void testUncontendedLockAndUnlockMakeNoSystemCall() {
        Shared<GuardedCounter> shared;
        Lock handle;
        shared->lock.lock();
        ForkedChild child([&] {
            RawLock& raw = shared->lock;
            // relaxed: a start signal for the parent's loads below; it publishes nothing.
            shared->flag.store(1, std::memory_order_relaxed);
            raw.lock();  // sleeps until the parent unlocks; the first operation also reads the robust list
            raw.unlock();
            if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) MPROC_SKIP("strict seccomp is unavailable");
            for (int round = 0; round < 1000; ++round) {
                raw.lock();
                raw.unlock();
                if (!raw.try_lock()) ::syscall(SYS_exit, 3);
                raw.release();
                if (!handle.acquire()) ::syscall(SYS_exit, 4);
                handle.release();
                if (handle.acquire_status(1s) != AcquireStatus::acquired) ::syscall(SYS_exit, 5);
                handle.unlock();
                std::lock_guard guard(handle);
            }
            ::syscall(SYS_exit, 0);  // exit_group is not allowed in strict mode
        });
        // relaxed: pairs with the child's start signal, which publishes nothing (the sleep is only timing).
        wait_for([&] { return shared->flag.load(std::memory_order_relaxed) == 1; }, "the child to start");
        std::this_thread::sleep_for(50ms);
        shared->lock.unlock();
        const int status = child.wait();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) MPROC_SKIP("strict seccomp is unavailable");
        CPPUNIT_ASSERT_MESSAGE("the uncontended loop made a system call (killed by seccomp) or failed",
                               WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    void testStdGuardsLockAndUnlock() {
        Lock first;
        Lock second;
        {
            std::lock_guard guard(first);
            CPPUNIT_ASSERT(first.held_by_this_thread());
        }
        CPPUNIT_ASSERT(!first.locked());
        {
            std::scoped_lock both(first, second);
            CPPUNIT_ASSERT(first.held_by_this_thread() && second.held_by_this_thread());
        }
        CPPUNIT_ASSERT(!first.locked() && !second.locked());
        {
            std::unique_lock timed(first, 100ms);
            CPPUNIT_ASSERT(timed.owns_lock());
            timed.unlock();
            CPPUNIT_ASSERT(timed.try_lock_until(std::chrono::system_clock::now() + 100ms));
        }
        CPPUNIT_ASSERT(!first.locked());
        Shared<GuardedCounter> shared;
        auto child = holder(first, shared->flag);
        std::unique_lock attempt(first, std::try_to_lock);
        CPPUNIT_ASSERT(!attempt.owns_lock());
    }

    void testTryLockFailsWhileAnotherProcessHolds() {
        Lock lock;
        Shared<GuardedCounter> shared;
        std::atomic<int>& release = shared->release;
        auto child = holder(lock, shared->flag, &release);
        CPPUNIT_ASSERT(lock.locked());
        CPPUNIT_ASSERT(!lock.held_by_this_thread());
        CPPUNIT_ASSERT(!lock.try_lock());
        CPPUNIT_ASSERT(!lock.acquire(false));
        CPPUNIT_ASSERT(lock.acquire_status(0ns) == AcquireStatus::timed_out);
        // release: pairs with the holder's acquire load; the checks above must precede its unlock.
        release.store(1, std::memory_order_release);
        const int status = child->wait();
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CPPUNIT_ASSERT(!lock.locked());
        CPPUNIT_ASSERT(lock.try_lock());
        lock.unlock();
    }

    void testTimedAcquireWaitsForItsTimeout() {
        Lock lock;
        Shared<GuardedCounter> shared;
        auto child = holder(lock, shared->flag);
        assert_times_out_after(200ms, [&] { return lock.try_lock_for(200ms); });
        assert_times_out_after(100ms, [&] { return lock.acquire(true, 100ms); });
        const auto started = Clock::now();
        CPPUNIT_ASSERT(lock.acquire_status(150ms) == AcquireStatus::timed_out);
        CPPUNIT_ASSERT(Clock::now() - started >= 150ms);
    }

    void testZeroTimeoutDoesNotBlock() {
        Lock lock;
        Shared<GuardedCounter> shared;
        auto child = holder(lock, shared->flag);
        const auto started = Clock::now();
        CPPUNIT_ASSERT(!lock.try_lock_for(0ms));
        CPPUNIT_ASSERT(!lock.try_lock_for(-5ms));
        CPPUNIT_ASSERT(lock.acquire_status(-1s) == AcquireStatus::timed_out);
        CPPUNIT_ASSERT(!lock.acquire(true, 0ns));
        CPPUNIT_ASSERT(Clock::now() - started < 1s);
    }

    // SIGALRM every 5 ms, with a handler installed without SA_RESTART: each one interrupts FUTEX_WAIT
    // with EINTR, and the wait must resume with the time that remains.
    void testSignalsDoNotShortenTheTimeout() {
        Lock lock;
        Shared<GuardedCounter> shared;
        auto child = holder(lock, shared->flag);
        assert_signals_do_not_shorten(300ms, [&] { return lock.try_lock_for(300ms); });
    }

    void testWaiterAcquiresWhenHolderReleases() {
        Lock lock;
        Shared<GuardedCounter> shared;
        std::atomic<int>& release = shared->release;
        auto child = holder(lock, shared->flag, &release);
        std::thread releaser([&] {
            std::this_thread::sleep_for(100ms);
            // relaxed: this thread made nothing the holder needs to see; the flag only ends its wait.
            release.store(1, std::memory_order_relaxed);
        });
        const auto started = Clock::now();
        lock.lock();  // sleeps in FUTEX_WAIT until the holder's unlock wakes it
        const auto waited = Clock::now() - started;
        releaser.join();
        CPPUNIT_ASSERT(lock.held_by_this_thread());
        CPPUNIT_ASSERT(waited >= 90ms);
        // The unlock wakes it at ~100 ms; 1 s is room for a loaded 2-core machine, not for a missed wake-up.
        CPPUNIT_ASSERT(waited < 1s);
        lock.unlock();
        CPPUNIT_ASSERT_EQUAL(0, child->wait());
    }

    void testPythonAcquireRejectsInvalidArguments() {
        Lock lock;
        CPPUNIT_ASSERT_THROW(lock.acquire(false, 1s), mproc::ValueError);
        CPPUNIT_ASSERT_THROW(lock.acquire(true, -1ns), mproc::ValueError);
        CPPUNIT_ASSERT(!lock.locked());
        CPPUNIT_ASSERT(lock.acquire(false));
        lock.release();
    }

    void testReleaseByAnotherThreadIsStateError() {
        Lock lock;
        lock.lock();
        bool refused = false;
        std::string message;
        std::thread other([&] {
            try {
                lock.release();
            } catch (const mproc::StateError& error) {
                refused = true;
                message = error.what();
            }
        });
        other.join();
        CPPUNIT_ASSERT(refused);
        CPPUNIT_ASSERT_MESSAGE(message, message.find("not by this thread") != std::string::npos);
        CPPUNIT_ASSERT(lock.held_by_this_thread());
        lock.unlock();
    }

    void testReleaseOfUnlockedLockIsStateError() {
        Lock lock;
        CPPUNIT_ASSERT_THROW(lock.unlock(), mproc::StateError);
        lock.lock();
        lock.unlock();
        CPPUNIT_ASSERT_THROW(lock.release(), mproc::StateError);
    }

    void testLockingTwiceInOneThreadIsStateError() {
        Lock lock;
        lock.lock();
        CPPUNIT_ASSERT_THROW(lock.lock(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(lock.try_lock(), mproc::StateError);
        CPPUNIT_ASSERT(lock.held_by_this_thread());
        lock.unlock();
        CPPUNIT_ASSERT(!lock.locked());
    }

    void testForkedChildDoesNotHoldParentsLock() {
        Lock lock;
        lock.lock();
        ForkedChild child([&] {
            CPPUNIT_ASSERT(!lock.held_by_this_thread());
            CPPUNIT_ASSERT_THROW(lock.unlock(), mproc::StateError);
            CPPUNIT_ASSERT(!lock.try_lock());
            CPPUNIT_ASSERT(lock.locked());
        });
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT(lock.held_by_this_thread());
        lock.unlock();
        CPPUNIT_ASSERT(!lock.locked());
    }

    void testNamedLockIsSharedByName() {
        const std::string name = mproc::test::unique_name("lock");
        Lock created = Lock::create(name);
        Shared<GuardedCounter> shared;
        std::atomic<int>& release = shared->release;
        ForkedChild child([&] {
            Lock opened = Lock::open(name);
            CPPUNIT_ASSERT_EQUAL(name, opened.name());
            opened.lock();
            // release: pairs with the parent's acquire load, so it sees the lock word set by opened.lock().
            shared->flag.store(1, std::memory_order_release);
            // acquire: pairs with the parent's release store; its checks of the held lock precede our unlock.
            while (release.load(std::memory_order_acquire) == 0) std::this_thread::sleep_for(1ms);
            opened.unlock();
        });
        // acquire: pairs with the child's release store, so created.locked() sees its lock word.
        wait_for([&] { return shared->flag.load(std::memory_order_acquire) == 1; }, "the child to lock the named lock");
        CPPUNIT_ASSERT(created.locked());
        CPPUNIT_ASSERT(!created.try_lock());
        // release: pairs with the child's acquire load; the checks above must precede its unlock.
        release.store(1, std::memory_order_release);
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT(created.try_lock());
        created.unlock();
        created.unlink();
    }

    void testNamedLockOpenErrorsAreClear() {
        const std::string name = mproc::test::unique_name("lock-errors");
        try {
            Lock::open(name);
            CPPUNIT_FAIL("opening a missing lock succeeded");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
        Lock created = Lock::create(name);
        try {
            Lock::create(name);
            CPPUNIT_FAIL("creating an existing lock succeeded");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EEXIST, error.error_number());
        }
        try {
            mproc::RLock::open(name);
            CPPUNIT_FAIL("a Lock opened as an RLock");
        } catch (const mproc::InvalidObject& error) {
            const std::string message = error.what();
            CPPUNIT_ASSERT_MESSAGE(message, message.find(name) != std::string::npos);
        }
        created.unlink();
    }

    void testRawLockValidatesItsBytes() {
        struct alignas(64) Bytes {
            unsigned char data[128];
        };
        Bytes bytes{};
        CPPUNIT_ASSERT_THROW(RawLock::attach(bytes.data, sizeof bytes.data), mproc::InvalidObject);  // zeros
        CPPUNIT_ASSERT_THROW(RawLock::attach(bytes.data + 8, 64), mproc::ValueError);              // misaligned
        CPPUNIT_ASSERT_THROW(RawLock::init(bytes.data + 8), mproc::ValueError);
        RawLock::init(bytes.data);
        CPPUNIT_ASSERT_THROW(RawLock::attach(bytes.data, 63), mproc::InvalidObject);  // too short
        RawLock& lock = RawLock::attach(bytes.data, 64);
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::consistent);
        try {
            mproc::RawRLock::attach(bytes.data, 64);
            CPPUNIT_FAIL("a RawLock attached as a RawRLock");
        } catch (const mproc::InvalidObject& error) {
            CPPUNIT_ASSERT_MESSAGE(error.what(), std::string(error.what()).find("a Lock, not an RLock") != std::string::npos);
        }
        bytes.data[4] = 7;  // consistency state
        CPPUNIT_ASSERT_THROW(RawLock::attach(bytes.data, 64), mproc::InvalidObject);
        bytes.data[4] = 0;
        bytes.data[16] = 9;  // layout version
        CPPUNIT_ASSERT_THROW(RawLock::attach(bytes.data, 64), mproc::InvalidObject);
    }

    void testMakeConsistentOnConsistentLockIsStateError() {
        Lock lock;
        CPPUNIT_ASSERT_THROW(lock.make_consistent(), mproc::StateError);  // not held
        lock.lock();
        CPPUNIT_ASSERT_THROW(lock.make_consistent(), mproc::StateError);  // consistent
        lock.unlock();
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::consistent);
    }

    // Bytes written by a hostile or corrupted process claim that this thread holds the lock, with links
    // pointing anywhere: try operations refuse at once, and unlock never follows those links.
    void testWordForgedWithOurThreadIdNeverBlocksOrUnlinks() {
        struct alignas(64) Bytes {
            unsigned char data[64];
        };
        const auto tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
        const std::uint64_t bogus_link = 0x10;
        for (const std::uint32_t word : {tid, tid | FUTEX_WAITERS, tid | FUTEX_OWNER_DIED}) {
            Bytes bytes{};
            RawLock::init(bytes.data);
            std::memcpy(bytes.data, &word, sizeof word);
            std::memcpy(bytes.data + 24, &bogus_link, sizeof bogus_link);
            std::memcpy(bytes.data + 32, &bogus_link, sizeof bogus_link);
            RawLock& lock = RawLock::attach(bytes.data, sizeof bytes.data);
            CPPUNIT_ASSERT(!lock.held_by_this_thread());
            CPPUNIT_ASSERT_THROW(lock.try_lock(), mproc::StateError);
            CPPUNIT_ASSERT_THROW(lock.acquire_status(0ns), mproc::StateError);
            CPPUNIT_ASSERT_THROW(lock.unlock(), mproc::StateError);
            CPPUNIT_ASSERT_THROW(lock.make_consistent(), mproc::StateError);
            Bytes recursive{};
            mproc::RawRLock::init(recursive.data);
            std::memcpy(recursive.data, &word, sizeof word);
            mproc::RawRLock& rlock = mproc::RawRLock::attach(recursive.data, sizeof recursive.data);
            CPPUNIT_ASSERT_THROW(rlock.try_lock(), mproc::StateError);
            CPPUNIT_ASSERT_THROW(rlock.release(), mproc::StateError);
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), rlock.depth());
        }
        CPPUNIT_ASSERT(robust_list_entries().empty());
    }

    void testMovedFromLockIsStateError() {
        Lock original;
        Lock moved = std::move(original);
        CPPUNIT_ASSERT_THROW(original.lock(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(original.unlock(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(original.locked(), mproc::StateError);
        moved.lock();
        moved.unlock();
    }

    // Moved from by construction or by assignment, the handle names itself and the operation refused.
    void testMovedFromLockErrorNamesTheOperation() {
        assert_moved_from_handles_refuse<Lock>("lock: try_lock: moved-from handle", [](Lock& lock) {
            CPPUNIT_ASSERT(lock.try_lock());
            lock.unlock();
        });
    }

    // glibc links its robust mutexes into the same list and writes the prev/next words of whatever entry
    // neighbours the one it links or unlinks: after every step of every interleaving, the list holds
    // exactly the held objects, most recently locked first, with every prev word right.
    // A handle unmapped while its thread holds the lock: the node leaves the robust list with the mapping,
    // and the lock is given up as the kernel gives it up at a death — a waiter asleep in another process is
    // woken and told OwnerDied, as the next acquirer through any other mapping is.
    void testHandleDestroyedWhileHeldGivesTheLockUpAsAtDeath() {
        const std::string name = mproc::test::unique_name("lock-dropped");
        Lock keeper = Lock::create(name);
        Shared<GuardedCounter> shared;
        const std::vector<std::uintptr_t> before = robust_list_entries();
        std::optional<Lock> dropped(Lock::open(name));
        dropped->lock();
        CPPUNIT_ASSERT_EQUAL(before.size() + 1, robust_list_entries().size());
        ForkedChild waiter([&] {
            // relaxed: a start signal that publishes nothing.
            shared->progress.store(1, std::memory_order_relaxed);
            Lock mine = Lock::open(name);
            const AcquireStatus status = mine.acquire_status();
            // relaxed: the parent reads it after waiter.wait(), whose waitpid() orders it.
            shared->status.store(static_cast<int>(status), std::memory_order_relaxed);
            mine.make_consistent();
            mine.unlock();
        });
        // relaxed: pairs with the waiter's start signal, which publishes nothing.
        wait_for([&] { return shared->progress.load(std::memory_order_relaxed) == 1; }, "the waiter to start");
        std::this_thread::sleep_for(100ms);  // long enough to be asleep in FUTEX_WAIT
        dropped.reset();
        CPPUNIT_ASSERT(before == robust_list_entries());
        CPPUNIT_ASSERT_EQUAL(0, waiter.wait(10s));
        // relaxed: ordered by waiter.wait().
        CPPUNIT_ASSERT_EQUAL(static_cast<int>(AcquireStatus::owner_died), shared->status.load(std::memory_order_relaxed));
        // The waiter made it consistent and released it: it acquires quietly now, and this thread's list
        // (which once ran through the unmapped node) takes new entries.
        keeper.lock();
        CPPUNIT_ASSERT_EQUAL(before.size() + 1, robust_list_entries().size());
        keeper.unlock();
        keeper.unlink();
    }

    void testExceptionUnwindingPastHeldLocksLeavesTheThreadUsable() {
        const std::string lock_name = mproc::test::unique_name("lock-unwound");
        const std::string rlock_name = mproc::test::unique_name("rlock-unwound");
        Lock lock_keeper = Lock::create(lock_name);
        mproc::RLock rlock_keeper = mproc::RLock::create(rlock_name);
        const std::vector<std::uintptr_t> before = robust_list_entries();
        try {
            Lock lock = Lock::open(lock_name);
            mproc::RLock rlock = mproc::RLock::open(rlock_name);
            lock.lock();
            rlock.lock();
            rlock.lock();
            throw std::runtime_error("unwinding past three holds");
        } catch (const std::runtime_error&) {
        }
        CPPUNIT_ASSERT(before == robust_list_entries());
        try {
            lock_keeper.lock();
            CPPUNIT_FAIL("the abandoned Lock was not reported");
        } catch (const mproc::OwnerDied&) {
        }
        lock_keeper.make_consistent();
        lock_keeper.unlock();
        try {
            rlock_keeper.lock();
            CPPUNIT_FAIL("the abandoned RLock was not reported");
        } catch (const mproc::OwnerDied&) {
        }
        rlock_keeper.make_consistent();
        rlock_keeper.unlock();
        CPPUNIT_ASSERT(before == robust_list_entries());
        lock_keeper.unlink();
        rlock_keeper.unlink();
    }

    void testRobustListStaysIntactWithGlibcMutexesInEveryOrder() {
        Shared<MixedLocks> locks;
        const std::vector<std::uintptr_t> before = robust_list_entries();
        int sequences = 0;
        for_each_interleaving([&](const std::vector<int>& events) {
            std::vector<int> held;  // most recent last
            for (int event : events) {
                apply(*locks, event);
                if (event > 0) held.push_back(event - 1);
                else held.erase(std::find(held.begin(), held.end(), -event - 1));
                std::vector<std::uintptr_t> expected;
                for (auto it = held.rbegin(); it != held.rend(); ++it) expected.push_back(locks->node(*it));
                expected.insert(expected.end(), before.begin(), before.end());
                CPPUNIT_ASSERT(expected == robust_list_entries());
            }
            ++sequences;
        });
        CPPUNIT_ASSERT_EQUAL(2520, sequences);  // 8! / 2^4
    }
};

// ---------------------------------------------------------------------------------------------------------

class LockStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(LockStressTest);
    CPPUNIT_TEST(testProcessesIncrementExactly);
    CPPUNIT_TEST(testIncrementExactlyThreads);
    CPPUNIT_TEST(testTimedAcquiresCountExactlyThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    static constexpr int kWorkers = 4;

    static void increment(GuardedCounter& shared, int rounds) {
        for (int round = 0; round < rounds; ++round) {
            shared.lock.lock();
            // relaxed (all): the lock orders `inside`, which only makes a broken exclusion observable;
            // `violations` is read only after join() or waitpid(), which order every increment.
            if (shared.inside.fetch_add(1, std::memory_order_relaxed) != 0)
                shared.violations.fetch_add(1, std::memory_order_relaxed);
            ++shared.counter;
            shared.inside.fetch_sub(1, std::memory_order_relaxed);
            shared.lock.unlock();
        }
    }

    void testProcessesIncrementExactly() {
        Shared<GuardedCounter> shared;
        constexpr int kRounds = 100000;
        mproc::test::run_in_processes(kWorkers, [&](int) { increment(*shared, kRounds); });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(kWorkers) * kRounds, shared->counter);
        // relaxed: run_in_processes() reaped the children, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), shared->violations.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(!shared->lock.locked());
    }

    void testIncrementExactlyThreads() {
        Shared<GuardedCounter> shared;
        constexpr int kRounds = 20000;
        mproc::test::run_in_threads(kWorkers, [&](int) { increment(*shared, kRounds); });
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(kWorkers) * kRounds, shared->counter);
        // relaxed: run_in_threads() joined the workers, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), shared->violations.load(std::memory_order_relaxed));
    }

    // Timed acquires that give up must leave the lock usable: every success is counted exactly once.
    void testTimedAcquiresCountExactlyThreads() {
        Shared<GuardedCounter> shared;
        std::atomic<std::uint64_t> successes{0};
        mproc::test::run_in_threads(kWorkers, [&](int) {
            for (int round = 0; round < 5000; ++round) {
                if (!shared->lock.try_lock_for(std::chrono::microseconds(round % 50))) continue;
                ++shared->counter;
                if (round % 97 == 0) std::this_thread::sleep_for(100us);
                shared->lock.unlock();
                // relaxed: read only after run_in_threads() joins the workers.
                successes.fetch_add(1, std::memory_order_relaxed);
            }
        });
        // relaxed: the join in run_in_threads() orders every increment before this load.
        CPPUNIT_ASSERT_EQUAL(successes.load(std::memory_order_relaxed), shared->counter);
        CPPUNIT_ASSERT(shared->lock.try_lock());
        shared->lock.unlock();
    }
};

// ---------------------------------------------------------------------------------------------------------

class LockCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(LockCrashTest);
    CPPUNIT_TEST(testKilledHolderIsReportedToNextAcquirer);
    CPPUNIT_TEST(testBlockedWaiterIsWokenAtOnceWhenHolderIsKilled);
    CPPUNIT_TEST(testOwnerDeathIsReportedToExactlyOneWaiter);
    CPPUNIT_TEST(testReleaseWithoutMakeConsistentMakesLockUnrecoverable);
    CPPUNIT_TEST(testRandomKillsKeepMutualExclusionAndProgress);
    CPPUNIT_TEST(testKilledProcessReleasesGlibcAndMprocLocksTogether);
    CPPUNIT_TEST(testExitingThreadReleasesGlibcAndMprocLocksTogether);
    CPPUNIT_TEST_SUITE_END();

public:
    void testKilledHolderIsReportedToNextAcquirer() {
        Lock lock;
        Shared<GuardedCounter> shared;
        auto child = holder(lock, shared->flag);
        child->kill();
        child->wait();
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::inconsistent);
        try {
            lock.lock();
            CPPUNIT_FAIL("the owner's death was not reported");
        } catch (const mproc::OwnerDied&) {
        }
        CPPUNIT_ASSERT(lock.held_by_this_thread());
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::inconsistent);
        lock.make_consistent();
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::consistent);
        lock.unlock();
        lock.lock();  // reported once: a consistent lock acquires quietly
        lock.unlock();
    }

    // The waiter has no timeout: only the kernel's wake-up at the holder's death can end its wait.
    void testBlockedWaiterIsWokenAtOnceWhenHolderIsKilled() {
        Shared<GuardedCounter> shared;
        auto holding = holder(shared->lock, shared->flag);
        ForkedChild waiter([&] {
            // relaxed: a start signal that publishes nothing.
            shared->progress.store(1, std::memory_order_relaxed);
            const AcquireStatus status = shared->lock.acquire_status();
            // relaxed (both): the parent reads them after waiter.wait(), whose waitpid() orders them.
            shared->timestamp_ns.store(monotonic_ns(), std::memory_order_relaxed);
            shared->status.store(static_cast<int>(status), std::memory_order_relaxed);
            shared->lock.make_consistent();
            shared->lock.unlock();
        });
        // relaxed: pairs with the waiter's start signal, which publishes nothing.
        wait_for([&] { return shared->progress.load(std::memory_order_relaxed) == 1; }, "the waiter to start");
        std::this_thread::sleep_for(100ms);  // long enough to be asleep in FUTEX_WAIT
        // relaxed: one location, read only to see that the waiter has not returned yet.
        CPPUNIT_ASSERT_EQUAL(-1, shared->status.load(std::memory_order_relaxed));
        const std::int64_t killed_at = monotonic_ns();
        holding->kill();
        CPPUNIT_ASSERT_EQUAL(0, waiter.wait(10s));
        // relaxed (both): waiter.wait() reaped the waiter, which orders its stores before these loads.
        CPPUNIT_ASSERT_EQUAL(static_cast<int>(AcquireStatus::owner_died),
                             shared->status.load(std::memory_order_relaxed));
        const std::int64_t woken_after_ns = shared->timestamp_ns.load(std::memory_order_relaxed) - killed_at;
        CPPUNIT_ASSERT_MESSAGE("woken " + std::to_string(woken_after_ns / 1000) + " us after the kill",
                               woken_after_ns < 1'000'000'000);
    }

    void testOwnerDeathIsReportedToExactlyOneWaiter() {
        constexpr int kWaiters = 4;
        for (int repetition = 0; repetition < 10; ++repetition) {
            Shared<GuardedCounter> shared;
            auto holding = holder(shared->lock, shared->flag);
            std::vector<std::unique_ptr<ForkedChild>> waiters;
            for (int index = 0; index < kWaiters; ++index)
                waiters.push_back(std::make_unique<ForkedChild>([&] {
                    // relaxed: a start count that publishes nothing.
                    shared->progress.fetch_add(1, std::memory_order_relaxed);
                    if (shared->lock.acquire_status() == AcquireStatus::owner_died) {
                        // relaxed: read only after the parent reaps every waiter.
                        shared->owner_died_reports.fetch_add(1, std::memory_order_relaxed);
                        shared->lock.make_consistent();
                    }
                    shared->lock.unlock();
                }));
            // relaxed: pairs with the waiters' start counts, which publish nothing.
            wait_for([&] { return shared->progress.load(std::memory_order_relaxed) == kWaiters; },
                     "the waiters to start");
            std::this_thread::sleep_for(20ms);
            holding->kill();
            for (auto& waiter : waiters) CPPUNIT_ASSERT_EQUAL(0, waiter->wait(10s));
            // relaxed: every waiter was reaped above, which orders its increment.
            CPPUNIT_ASSERT_EQUAL(std::uint64_t(1), shared->owner_died_reports.load(std::memory_order_relaxed));
            CPPUNIT_ASSERT(shared->lock.acquire_status(0ns) == AcquireStatus::acquired);
            shared->lock.unlock();
        }
    }

    void testReleaseWithoutMakeConsistentMakesLockUnrecoverable() {
        Lock lock;
        Shared<GuardedCounter> shared;
        auto child = holder(lock, shared->flag);
        child->kill();
        child->wait();
        CPPUNIT_ASSERT(lock.acquire_status() == AcquireStatus::owner_died);
        ForkedChild sleeper([&] {
            // relaxed: a start signal that publishes nothing.
            shared->progress.store(1, std::memory_order_relaxed);
            CPPUNIT_ASSERT_THROW(lock.lock(), mproc::NotRecoverable);  // asleep when the lock is given up
        });
        // relaxed: pairs with the sleeper's start signal, which publishes nothing.
        wait_for([&] { return shared->progress.load(std::memory_order_relaxed) == 1; }, "the sleeper to start");
        std::this_thread::sleep_for(50ms);
        lock.unlock();  // without make_consistent
        CPPUNIT_ASSERT_EQUAL(0, sleeper.wait(10s));
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::not_recoverable);
        CPPUNIT_ASSERT_THROW(lock.lock(), mproc::NotRecoverable);
        CPPUNIT_ASSERT_THROW(lock.try_lock(), mproc::NotRecoverable);
        CPPUNIT_ASSERT_THROW(lock.acquire_status(1s), mproc::NotRecoverable);
        CPPUNIT_ASSERT_THROW(lock.acquire(), mproc::NotRecoverable);
        CPPUNIT_ASSERT_THROW(lock.unlock(), mproc::StateError);
        ForkedChild other([&] { CPPUNIT_ASSERT_THROW(lock.lock(), mproc::NotRecoverable); });
        CPPUNIT_ASSERT_EQUAL(0, other.wait());
    }

    // Two children lock/increment/unlock at full speed; the parent SIGKILLs one at a random moment (inside
    // lock() and unlock() as often as inside the critical section), checks that the other goes on, then
    // kills that one too and recovers the lock itself. 500 rounds: 1,000 kills.
    void testRandomKillsKeepMutualExclusionAndProgress() {
        Shared<GuardedCounter> shared;
        RawLock& lock = shared->lock;
        auto worker = [&] {
            for (;;) {
                if (lock.acquire_status() == AcquireStatus::owner_died) {
                    // relaxed (reports, inside): the lock orders `inside`; the report count is read after the kills.
                    shared->owner_died_reports.fetch_add(1, std::memory_order_relaxed);
                    // the repair: the dead owner may have been inside
                    shared->inside.store(0, std::memory_order_relaxed);
                    lock.make_consistent();
                }
                // relaxed (inside, violations, progress): the lock orders `inside`; the counters publish nothing.
                if (shared->inside.exchange(1, std::memory_order_relaxed) != 0)
                    shared->violations.fetch_add(1, std::memory_order_relaxed);
                ++shared->counter;
                shared->progress.fetch_add(1, std::memory_order_relaxed);
                shared->inside.store(0, std::memory_order_relaxed);
                lock.unlock();
            }
        };
        std::mt19937 random(20240601);
        std::uniform_int_distribution<int> delay_us(0, 300);
        constexpr int kRounds = 500;
        int kills = 0;
        for (int round = 0; round < kRounds; ++round) {
            // relaxed (progress, all): a count of the workers' increments, only watched to grow; it publishes nothing.
            const std::uint64_t start = shared->progress.load(std::memory_order_relaxed);
            ForkedChild first(worker);
            ForkedChild second(worker);
            wait_for([&] { return shared->progress.load(std::memory_order_relaxed) >= start + 4; },
                     "the workers to run");
            const auto until = Clock::now() + std::chrono::microseconds(delay_us(random));
            while (Clock::now() < until) {
            }
            ForkedChild& victim = round % 2 ? first : second;
            ForkedChild& survivor = round % 2 ? second : first;
            victim.kill();
            victim.wait();
            const std::uint64_t after_kill = shared->progress.load(std::memory_order_relaxed);
            wait_for([&] { return shared->progress.load(std::memory_order_relaxed) >= after_kill + 3; },
                     "the survivor to go on after round " + std::to_string(round) + "'s kill", 5s);
            survivor.kill();
            survivor.wait();
            kills += 2;
            const AcquireStatus status = lock.acquire_status(5s);
            CPPUNIT_ASSERT_MESSAGE("the lock stayed held after both workers died", status != AcquireStatus::timed_out);
            if (status == AcquireStatus::owner_died) {
                // relaxed (both): both workers are reaped and we hold the lock, which orders `inside`.
                shared->owner_died_reports.fetch_add(1, std::memory_order_relaxed);
                shared->inside.store(0, std::memory_order_relaxed);
                lock.make_consistent();
            }
            // relaxed: we hold the lock, whose acquire orders the workers' stores to `inside`.
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(0), shared->inside.load(std::memory_order_relaxed));
            lock.unlock();
        }
        // relaxed (all): every worker was reaped, which orders its increments.
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), shared->violations.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(shared->owner_died_reports.load(std::memory_order_relaxed) > 0);
        CPPUNIT_ASSERT(shared->owner_died_reports.load(std::memory_order_relaxed) <= std::uint64_t(kills));
        CPPUNIT_ASSERT(lock.consistency() == LockConsistency::consistent);
    }

    // A child takes and releases glibc robust mutexes and mproc locks in an interleaved order, is killed
    // part-way, and every object it still held reports its death (EOWNERDEAD / owner_died); the others
    // are free. Every order of every interleaving is cut at some point.
    void testKilledProcessReleasesGlibcAndMprocLocksTogether() {
        Shared<MixedLocks> locks;
        int index = 0;
        int runs = 0;
        for_each_interleaving([&](const std::vector<int>& events) {
            if (index++ % 7 != 0) return;
            const std::size_t cut = 1 + (static_cast<std::size_t>(index / 7) % events.size());
            std::vector<bool> held(MixedLocks::kCount, false);
            for (std::size_t step = 0; step < cut; ++step) held[std::abs(events[step]) - 1] = events[step] > 0;
            ForkedChild child([&] {
                for (std::size_t step = 0; step < cut; ++step) apply(*locks, events[step]);
                ::raise(SIGKILL);
            });
            const int status = child.wait();
            CPPUNIT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            locks->recover(held);
            ++runs;
        });
        CPPUNIT_ASSERT_EQUAL(360, runs);
    }

    // The kernel walks the list at a thread's exit as at a process's death: a thread that ends holding
    // a mix leaves them all marked, and the process goes on.
    void testExitingThreadReleasesGlibcAndMprocLocksTogether() {
        Shared<MixedLocks> locks;
        const std::vector<int> order = {2, 0, 3, 1};
        std::thread leaver([&] {
            for (int object : order) locks->lock(object);
            locks->unlock(0);
            locks->lock(0);
        });
        leaver.join();
        locks->recover(std::vector<bool>(MixedLocks::kCount, true));
        CPPUNIT_ASSERT(robust_list_entries().empty());
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(LockUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(LockStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(LockCrashTest, "crash");

}  // namespace
