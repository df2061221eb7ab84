// tests/condition_test.cpp — mproc::Condition and mproc::RawCondition: Python's wait/notify semantics with
// Lock and RLock, notify(n) counts, timeouts with the lock re-held, no lost wake-up across processes, and
// waiters killed inside wait().
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "harness.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/rlock.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Condition;
using mproc::ConditionLockKind;
using mproc::RawCondition;
using mproc::RawLock;
using mproc::RawRLock;
using Clock = std::chrono::steady_clock;

struct Counters {
    std::atomic<int> waiting{0};   // waiters that entered wait() (incremented under the lock)
    std::atomic<int> woken{0};     // waits that returned true
    std::atomic<int> timed_out{0}; // waits that returned false
    std::uint64_t produced = 0;    // guarded by the condition's lock
    std::uint64_t consumed = 0;    // guarded by the condition's lock
    std::uint64_t queue = 0;       // guarded by the condition's lock: items not yet consumed
};

void wait_for_value(const std::atomic<int>& value, int expected, std::chrono::milliseconds limit = 10s) {
    const auto give_up = Clock::now() + limit;
    // relaxed (both): counts that publish nothing. `waiting` rises under the lock, so a notifier that saw n
    // and then locks gets the lock after all n released it in wait(): else this load would happen before
    // their increments, and could not have read them.
    while (value.load(std::memory_order_relaxed) != expected) {
        if (Clock::now() > give_up)
            CPPUNIT_FAIL("expected " + std::to_string(expected) + ", still " +
                         std::to_string(value.load(std::memory_order_relaxed)));
        std::this_thread::sleep_for(200us);
    }
}

// Every waiter counts itself while holding the lock, so once `waiting` reaches n and the notifier holds the
// lock, all n are inside wait() with their slots claimed.
void start_waiters(Condition& condition, Shared<Counters>& counters, int n, std::vector<ForkedChild*>& children,
                   std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    for (int i = 0; i < n; ++i) {
        children.push_back(new ForkedChild([&condition, &counters, timeout] {
            condition.acquire();
            // relaxed (both): the lock orders `waiting` (see wait_for_value); the results publish nothing.
            counters->waiting.fetch_add(1, std::memory_order_relaxed);
            const bool notified = condition.wait(timeout);
            CPPUNIT_ASSERT(condition.held_by_this_thread());
            (notified ? counters->woken : counters->timed_out).fetch_add(1, std::memory_order_relaxed);
            condition.release();
        }));
    }
    wait_for_value(counters->waiting, n);
}

class ConditionUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ConditionUnitTest);
    CPPUNIT_TEST(testNotifyWithoutLockIsStateError);
    CPPUNIT_TEST(testWaitTimeoutReturnsFalseWithLockHeld);
    CPPUNIT_TEST(testWaitReleasesAndRestoresRLockRecursion);
    CPPUNIT_TEST(testWorksWithExternalLock);
    CPPUNIT_TEST(testNotifyWakesExactlyNWaiters);
    CPPUNIT_TEST(testNotifyAllWakesEveryWaiter);
    CPPUNIT_TEST(testNotifyWakesOldestWaiterFirst);
    CPPUNIT_TEST(testWaitForReturnsPredicateValue);
    CPPUNIT_TEST(testNamedConditionIsSharedByName);
    CPPUNIT_TEST(testOpenRejectsOtherKind);
    CPPUNIT_TEST(testRawConditionInCallerMemory);
    CPPUNIT_TEST(testWaitWhenAllSlotsTakenIsStateError);
    CPPUNIT_TEST(testCapacityAndHighWaterRewrittenAfterOpenAreIgnored);
    CPPUNIT_TEST(testOpenNamesTheConditionWhenItsLockIsInvalid);
    CPPUNIT_TEST(testRLockDepthRewrittenToBillionsIsReleasedAndRestoredAtOnce);
    CPPUNIT_TEST_SUITE_END();

public:
    void testNotifyWithoutLockIsStateError() {
        Condition condition;
        CPPUNIT_ASSERT_THROW(condition.notify(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(condition.notify_all(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(condition.wait(0ns), mproc::StateError);
        condition.acquire();
        condition.notify();  // no waiter: nothing happens
        condition.release();
    }

    void testWaitTimeoutReturnsFalseWithLockHeld() {
        Condition condition(ConditionLockKind::lock);
        condition.acquire();
        const auto started = Clock::now();
        CPPUNIT_ASSERT(!condition.wait(100ms));
        const auto waited = Clock::now() - started;
        CPPUNIT_ASSERT(waited >= 100ms && waited < 2s);
        CPPUNIT_ASSERT(condition.held_by_this_thread());
        CPPUNIT_ASSERT(!condition.wait(0ns));
        CPPUNIT_ASSERT(!condition.wait(-5ms));
        CPPUNIT_ASSERT(condition.held_by_this_thread());
        condition.release();
        CPPUNIT_ASSERT(!condition.held_by_this_thread());
    }

    void testWaitReleasesAndRestoresRLockRecursion() {
        Condition condition;  // its own RLock
        Shared<Counters> counters;
        condition.acquire();
        condition.acquire();
        condition.acquire();
        ForkedChild child([&] {
            // Only possible if wait() released every level.
            condition.acquire();
            // relaxed: stored under the lock, whose release the parent's re-acquire in wait() pairs with.
            counters->woken.store(1, std::memory_order_relaxed);
            condition.notify();
            condition.release();
        });
        CPPUNIT_ASSERT(condition.wait(10s));
        // relaxed: wait() returned holding the lock, which orders the child's store before this load.
        CPPUNIT_ASSERT_EQUAL(1, counters->woken.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(3), depth_of(condition));
        condition.release();
        condition.release();
        condition.release();
        CPPUNIT_ASSERT_THROW(condition.release(), mproc::StateError);
    }

    void testWorksWithExternalLock() {
        mproc::Lock lock;
        Condition condition(lock);
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 1, children);
        lock.lock();
        condition.notify();
        lock.unlock();
        CPPUNIT_ASSERT_EQUAL(0, children[0]->wait());
        delete children[0];
        // relaxed: the waiter was reaped above, which orders its increment.
        CPPUNIT_ASSERT_EQUAL(1, counters->woken.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT(condition.lock_kind() == ConditionLockKind::lock);
    }

    void testNotifyWakesExactlyNWaiters() {
        Condition condition;
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 5, children, 3s);
        condition.acquire();
        condition.notify(2);
        condition.release();
        wait_for_value(counters->woken, 2);
        std::this_thread::sleep_for(100ms);
        // relaxed: one counter, read only for its value; it publishes nothing.
        CPPUNIT_ASSERT_EQUAL(2, counters->woken.load(std::memory_order_relaxed));  // no third one
        condition.acquire();
        condition.notify(2);
        condition.release();
        wait_for_value(counters->woken, 4);
        for (ForkedChild* child : children) {
            CPPUNIT_ASSERT_EQUAL(0, child->wait());
            delete child;
        }
        // relaxed (both): every waiter was reaped above, which orders its increment.
        CPPUNIT_ASSERT_EQUAL(4, counters->woken.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(1, counters->timed_out.load(std::memory_order_relaxed));
    }

    void testNotifyAllWakesEveryWaiter() {
        Condition condition;
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 6, children);
        condition.acquire();
        condition.notify_all();
        condition.release();
        for (ForkedChild* child : children) {
            CPPUNIT_ASSERT_EQUAL(0, child->wait());
            delete child;
        }
        // relaxed: every waiter was reaped above, which orders its increment.
        CPPUNIT_ASSERT_EQUAL(6, counters->woken.load(std::memory_order_relaxed));
    }

    void testNotifyWakesOldestWaiterFirst() {
        Condition condition;
        Shared<Counters> counters;
        Shared<std::atomic<int>> order;
        std::vector<ForkedChild*> children;
        for (int i = 0; i < 3; ++i) {
            children.push_back(new ForkedChild([&, i] {
                condition.acquire();
                // relaxed (both): under the lock, which orders them; their order of modification is the wake order.
                counters->waiting.fetch_add(1, std::memory_order_relaxed);
                CPPUNIT_ASSERT(condition.wait(10s));
                // Woken one at a time below: each must be the oldest still waiting.
                CPPUNIT_ASSERT_EQUAL(i, order->fetch_add(1, std::memory_order_relaxed));
                condition.release();
            }));
            wait_for_value(counters->waiting, i + 1);
        }
        for (int i = 0; i < 3; ++i) {
            condition.acquire();
            condition.notify();
            condition.release();
            wait_for_value(*order, i + 1);
        }
        for (ForkedChild* child : children) {
            CPPUNIT_ASSERT_EQUAL(0, child->wait());
            delete child;
        }
    }

    void testWaitForReturnsPredicateValue() {
        Condition condition;
        Shared<Counters> counters;
        condition.acquire();
        const auto started = Clock::now();
        CPPUNIT_ASSERT(!condition.wait_for([&] { return counters->produced > 0; }, 80ms));
        CPPUNIT_ASSERT(Clock::now() - started >= 80ms);
        CPPUNIT_ASSERT(condition.held_by_this_thread());
        ForkedChild child([&] {
            for (int i = 0; i < 3; ++i) {
                std::this_thread::sleep_for(10ms);
                condition.acquire();
                ++counters->produced;
                condition.notify();
                condition.release();
            }
        });
        CPPUNIT_ASSERT(condition.wait_for([&] { return counters->produced == 3; }, 10s));
        CPPUNIT_ASSERT(condition.wait_for([&] { return true; }, 0ns));
        condition.release();
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
    }

    void testNamedConditionIsSharedByName() {
        const std::string name = mproc::test::unique_name("condition");
        Condition creator = Condition::create(name, ConditionLockKind::lock, 4);
        Shared<Counters> counters;
        ForkedChild child([&] {
            Condition opened = Condition::open(name);
            CPPUNIT_ASSERT(opened.lock_kind() == ConditionLockKind::lock);
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(4), opened.raw().capacity());
            opened.acquire();
            // relaxed: stored under the lock; see wait_for_value() for why the notifier needs no more.
            counters->waiting.store(1, std::memory_order_relaxed);
            CPPUNIT_ASSERT(opened.wait(10s));
            opened.release();
        });
        wait_for_value(counters->waiting, 1);
        creator.acquire();
        creator.notify();
        creator.release();
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
        creator.unlink();
    }

    void testOpenRejectsOtherKind() {
        const std::string name = mproc::test::unique_name("notcondition");
        mproc::Lock lock = mproc::Lock::create(name);
        CPPUNIT_ASSERT_THROW(Condition::open(name), mproc::InvalidObject);
        lock.unlink();
        CPPUNIT_ASSERT_THROW(Condition::create(name, ConditionLockKind::rlock, 0), mproc::ValueError);
    }

    void testRawConditionInCallerMemory() {
        struct Area {
            alignas(64) unsigned char lock[RawRLock::kSize];
            alignas(64) unsigned char condition[64 + 2 * 64];
            std::atomic<int> waiting{0};
        };
        Shared<Area> area;
        RawRLock& lock = RawRLock::init(area->lock);
        CPPUNIT_ASSERT_EQUAL(sizeof(area->condition), RawCondition::size_for(2));
        RawCondition::init(area->condition, sizeof(area->condition), 2);
        const RawCondition condition = RawCondition::attach(area->condition, sizeof(area->condition));
        CPPUNIT_ASSERT_THROW(RawCondition::attach(area->condition, 64 + 64), mproc::InvalidObject);
        ForkedChild child([&] {
            lock.lock();
            // relaxed: stored under the lock; see wait_for_value() for why the notifier needs no more.
            area->waiting.store(1, std::memory_order_relaxed);
            CPPUNIT_ASSERT(condition.wait(lock, 10s));
            lock.unlock();
        });
        wait_for_value(area->waiting, 1);
        lock.lock();
        condition.notify(lock);
        lock.unlock();
        CPPUNIT_ASSERT_EQUAL(0, child.wait());
    }

    void testWaitWhenAllSlotsTakenIsStateError() {
        Condition condition(ConditionLockKind::rlock, 1);
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 1, children);
        condition.acquire();
        CPPUNIT_ASSERT_THROW(condition.wait(10ms), mproc::StateError);
        CPPUNIT_ASSERT(condition.held_by_this_thread());
        condition.notify();
        condition.release();
        CPPUNIT_ASSERT_EQUAL(0, children[0]->wait());
        delete children[0];
    }

private:
    static std::uint32_t depth_of(Condition& condition) {
        // Count the levels by releasing and re-acquiring them: the public way to observe an RLock's depth.
        std::uint32_t depth = 0;
        while (condition.held_by_this_thread()) {
            condition.release();
            ++depth;
        }
        for (std::uint32_t level = 0; level < depth; ++level) condition.acquire();
        return depth;
    }
    // A peer rewrites the shared capacity and high-water mark after this handle opened the condition: the
    // handle keeps to the 2 slots it validated (before the fix, notify() scanned 4096 slots past the end of
    // the segment, and a third waiter claimed a slot outside it).
    void testCapacityAndHighWaterRewrittenAfterOpenAreIgnored() {
        const std::string name = unique_name("condition-rewritten");
        Condition condition = Condition::create(name, ConditionLockKind::lock, 2);
        Condition peer = Condition::open(name);
        peer.unlink();
        mproc::detail::ConditionControl& shared = peer.raw().control();
        shared.capacity = RawCondition::kMaxWaiterCapacity;
        shared.high_water = RawCondition::kMaxWaiterCapacity;
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(2), condition.raw().capacity());
        run_in_processes(1, [&](int) {
            condition.acquire();
            condition.notify();
            condition.notify_all();
            CPPUNIT_ASSERT(!condition.wait(0ns));
            condition.release();
        }, 20s);
        // Two waiters fill the two slots; a third is refused instead of writing past them.
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 2, children, 10s);
        condition.acquire();
        const std::string refused = message_of<mproc::StateError>([&] { condition.wait(0ns); });
        assert_contains(refused, "all 2 waiter slots are taken");
        condition.notify_all();
        condition.release();
        for (ForkedChild* child : children) {
            CPPUNIT_ASSERT_EQUAL(0, child->wait());
            delete child;
        }
        // relaxed: the waiters were reaped above, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(2, counters->woken.load(std::memory_order_relaxed));
    }

    // Every open error names the object: a named condition whose own lock is invalid says which condition.
    void testOpenNamesTheConditionWhenItsLockIsInvalid() {
        const std::string name = unique_name("condition-bad-lock");
        Condition condition = Condition::create(name);
        auto& lock_layout = *reinterpret_cast<mproc::detail::RobustMutexLayout*>(condition.segment().bytes().data());
        lock_layout.layout_version = 9;
        const std::string message = message_of<mproc::InvalidObject>([&] { Condition::open(name); });
        assert_contains(message, "condition '" + name + "'");
        assert_contains(message, "(its lock): layout version 9");
        condition.unlink();
    }


    // The RLock's recursion depth is an owner-only field of shared memory: a process that rewrites it to
    // 0x7fffffff while this thread holds the lock must not make wait() release and re-take it level by level
    // (minutes); the whole depth is given up in one release and restored in one store.
    void testRLockDepthRewrittenToBillionsIsReleasedAndRestoredAtOnce() {
        Condition condition(ConditionLockKind::rlock);
        run_in_processes(1, [&](int) {
            condition.acquire();
            auto& layout = *reinterpret_cast<mproc::detail::RobustMutexLayout*>(condition.segment().bytes().data());
            // relaxed: the hostile write, made by this very thread.
            std::atomic_ref(layout.recursion).store(0x7fffffff, std::memory_order_relaxed);
            const auto waited = elapsed_of([&] { CPPUNIT_ASSERT(!condition.wait(1ms)); });
            CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited < 1000ms);
            CPPUNIT_ASSERT(condition.held_by_this_thread());
            // relaxed: the owner's own field, read by the owner.
            CPPUNIT_ASSERT_EQUAL(std::uint32_t(0x7fffffff),
                                 std::atomic_ref(layout.recursion).load(std::memory_order_relaxed));
        }, 20s);
    }
};

// Producer/consumer across processes: every item produced is consumed, with no consumer left asleep while
// items remain (a lost wake-up hangs the test until the harness deadline).
void produce_and_consume(Condition& condition, Counters& counters, int producers, int consumers, int items_each,
                         bool threads) {
    const auto body = [&](int index) {
        if (index < producers) {
            for (int item = 0; item < items_each; ++item) {
                condition.acquire();
                ++counters.produced;
                ++counters.queue;
                condition.notify();
                condition.release();
            }
            return;
        }
        const std::uint64_t total = std::uint64_t(producers) * items_each;
        for (;;) {
            condition.acquire();
            condition.wait_for([&] { return counters.queue > 0 || counters.consumed == total; });
            if (counters.consumed == total) {
                condition.notify_all();  // wake the other consumers to see the end
                condition.release();
                return;
            }
            --counters.queue;
            ++counters.consumed;
            if (counters.consumed == total) condition.notify_all();
            condition.release();
        }
};
    if (threads)
        mproc::test::run_in_threads(producers + consumers, body);
    else
        mproc::test::run_in_processes(producers + consumers, body, 120s);
}

class ConditionStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ConditionStressTest);
    CPPUNIT_TEST(testProducerConsumerLosesNoWakeUp);
    CPPUNIT_TEST(testProducerConsumerLosesNoWakeUpThreads);
    CPPUNIT_TEST(testNotifyRacingTimeoutsNeverLosesANotify);
    CPPUNIT_TEST_SUITE_END();

public:
    void testProducerConsumerLosesNoWakeUp() {
        Condition condition(ConditionLockKind::lock);
        Shared<Counters> counters;
        produce_and_consume(condition, *counters, 3, 3, 4000, false);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(12000), counters->produced);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(12000), counters->consumed);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), counters->queue);
    }

    void testProducerConsumerLosesNoWakeUpThreads() {
        Condition condition;
        Counters counters;
        produce_and_consume(condition, counters, 2, 3, 3000, true);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(6000), counters.consumed);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), counters.queue);
    }

    // Waiters with tiny timeouts race notifies: a notify is either reported by a wait() that returned true
    // or never given; every notify(1) given while someone waited is counted exactly once.
    void testNotifyRacingTimeoutsNeverLosesANotify() {
        struct Tally {
            std::uint64_t notifies_given = 0;  // under the lock: notify(1) with a waiter present
            std::uint64_t waiting = 0;         // under the lock
            std::atomic<std::uint64_t> notified_returns{0};
            std::atomic<int> done{0};
        };
        Condition condition;
        Shared<Tally> tally;
        mproc::test::run_in_processes(4, [&](int index) {
            if (index == 0) {
                for (bool enough = false; !enough;) {
                    condition.acquire();
                    if (tally->waiting > 0) {
                        condition.notify();
                        ++tally->notifies_given;
                        --tally->waiting;  // notify picks one of them
                    }
                    enough = tally->notifies_given >= 3000;
                    condition.release();
                }
                // relaxed: a stop flag that publishes nothing; the tallies are under the lock or read after waitpid().
                tally->done.store(1, std::memory_order_relaxed);
                return;
            }
            // relaxed: pairs with the notifier's stop flag, which publishes nothing.
            while (tally->done.load(std::memory_order_relaxed) == 0) {
                condition.acquire();
                ++tally->waiting;
                const bool notified = condition.wait(std::chrono::microseconds(50 + index * 20));
                if (notified)
                    // relaxed: read only after run_in_processes() reaps every child.
                    tally->notified_returns.fetch_add(1, std::memory_order_relaxed);
                else
                    --tally->waiting;
                condition.release();
            }
        });
        // relaxed: the children were reaped, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(tally->notifies_given, tally->notified_returns.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(0), tally->waiting);
    }
};

class ConditionCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ConditionCrashTest);
    CPPUNIT_TEST(testKilledWaiterDoesNotSwallowNotify);
    CPPUNIT_TEST(testKilledNotifiedWaiterNotifyIsRedelivered);
    CPPUNIT_TEST(testKilledLockHolderSurfacesAsOwnerDiedInWait);
    CPPUNIT_TEST_SUITE_END();

public:
    // The oldest waiter is killed while asleep; notify(1) then reaches the live one.
    void testKilledWaiterDoesNotSwallowNotify() {
        Condition condition;
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 1, children);
        start_waiters_more(condition, counters, children);
        children[0]->kill(9);
        children[0]->wait();
        condition.acquire();
        condition.notify();
        condition.release();
        CPPUNIT_ASSERT_EQUAL(0, children[1]->wait(10s));
        // relaxed: the live waiter was reaped above, which orders its increment.
        CPPUNIT_ASSERT_EQUAL(1, counters->woken.load(std::memory_order_relaxed));
        for (ForkedChild* child : children) delete child;
    }

    // A waiter killed after its notify, before it returned: the notify goes to the next live waiter at the
    // next operation on the condition.
    void testKilledNotifiedWaiterNotifyIsRedelivered() {
        Condition condition;
        Shared<Counters> counters;
        std::vector<ForkedChild*> children;
        start_waiters(condition, counters, 1, children);
        start_waiters_more(condition, counters, children);
        condition.acquire();
        condition.notify();  // reaches children[0], which cannot return: we hold the lock
        children[0]->kill(9);
        children[0]->wait();
        condition.notify(0);  // any operation re-delivers the dead waiter's notify
        condition.release();
        CPPUNIT_ASSERT_EQUAL(0, children[1]->wait(10s));
        // relaxed: the live waiter was reaped above, which orders its increment.
        CPPUNIT_ASSERT_EQUAL(1, counters->woken.load(std::memory_order_relaxed));
        for (ForkedChild* child : children) delete child;
    }

    // A thread that dies holding the lock while another waits: the waiter's re-acquire reports OwnerDied,
    // holding the lock at its previous depth.
    void testKilledLockHolderSurfacesAsOwnerDiedInWait() {
        Condition condition;
        Shared<Counters> counters;
        ForkedChild waiter([&] {
            condition.acquire();
            condition.acquire();
            // relaxed: stored under the lock; see wait_for_value() for why the holder needs no more.
            counters->waiting.store(1, std::memory_order_relaxed);
            bool owner_died = false;
            try {
                condition.wait(10s);
            } catch (const mproc::OwnerDied&) {
                owner_died = true;
            }
            CPPUNIT_ASSERT(owner_died);
            CPPUNIT_ASSERT(condition.held_by_this_thread());
            condition.make_consistent();
            condition.release();
            CPPUNIT_ASSERT(condition.held_by_this_thread());
            condition.release();
            CPPUNIT_ASSERT(!condition.held_by_this_thread());
        });
        wait_for_value(counters->waiting, 1);
        ForkedChild holder([&] {
            condition.acquire();
            condition.notify();
            ::_exit(0);  // dies holding the lock
        });
        CPPUNIT_ASSERT_EQUAL(0, holder.wait());
        CPPUNIT_ASSERT_EQUAL(0, waiter.wait(15s));
    }

private:
    static void start_waiters_more(Condition& condition, Shared<Counters>& counters,
                                   std::vector<ForkedChild*>& children) {
        // relaxed: only this process starts waiters, and each one it started is counted already.
        const int before = counters->waiting.load(std::memory_order_relaxed);
        children.push_back(new ForkedChild([&condition, &counters] {
            condition.acquire();
            // relaxed (both): as in start_waiters().
            counters->waiting.fetch_add(1, std::memory_order_relaxed);
            const bool notified = condition.wait(std::chrono::nanoseconds(10s));
            (notified ? counters->woken : counters->timed_out).fetch_add(1, std::memory_order_relaxed);
            condition.release();
        }));
        wait_for_value(counters->waiting, before + 1);
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ConditionUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ConditionStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ConditionCrashTest, "crash");

}  // namespace
