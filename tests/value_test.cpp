// tests/value_test.cpp — mproc::Value, UnlockedValue and RawValue: exact totals from processes and threads
// under get_lock() and with fetch_add, the std::atomic operations, named create/open across processes with
// type, kind and Locking mismatches reported clearly, placement in caller memory, the layout (value 128
// bytes from the lock word), and a lock holder SIGKILLed mid-update: the next locker is told (OwnerDied),
// finds the torn value, repairs it.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/array.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/value.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Locking;
using mproc::RawValue;
using mproc::UnlockedValue;
using mproc::Value;
using Clock = std::chrono::steady_clock;

// Two halves that a writer keeps equal: a torn update shows as halves that differ.
struct Pair {
    std::int64_t first;
    std::int64_t second;
    std::int64_t padding[6];  // 64 bytes: never one atomic instruction
};

struct alignas(8) Point {
    std::int32_t x;
    std::int32_t y;
};

struct UnderAlignedPoint {
    std::int32_t x;
    std::int32_t y;
};

struct Wide {
    std::uint8_t bytes[40];
};

}  // namespace

// A tagged user type: opening it as another 8-byte type must fail.
template <>
struct mproc::SharedTypeId<Point> {
    static constexpr std::uint64_t value = 0x504f494e54;  // "POINT"
};

namespace {

// What the type system promises, checked where it is decided: at compile time.
template <class V>
concept HasGetLock = requires(V& v) { v.get_lock(); };
template <class V>
// Unevaluated: the order is spelt out only to name one; whether the member exists does not depend on it.
concept HasLoad = requires(V& v) { v.load(std::memory_order_seq_cst); };
template <class V>
concept HasFetchAdd = requires(V& v) { v.fetch_add(1, std::memory_order_seq_cst); };

static_assert(HasGetLock<Value<std::int64_t>> && HasGetLock<RawValue<std::int64_t>>);
static_assert(!HasGetLock<UnlockedValue<std::int64_t>> && !HasGetLock<mproc::RawUnlockedValue<std::int64_t>>,
              "an unlocked Value has no get_lock member");
static_assert(HasLoad<Value<double>> && HasLoad<Value<Point>> && !HasFetchAdd<Value<double>>,
              "a lock-free double has load and store, but fetch_add only for integral types");
static_assert(!HasLoad<Value<Wide>> && !HasFetchAdd<Value<Wide>>, "a 40-byte type has no lock-free atomics");
static_assert(!HasLoad<Value<UnderAlignedPoint>>, "8 bytes aligned to 4 would need libatomic: no atomics");
static_assert(HasFetchAdd<UnlockedValue<std::uint32_t>> && !HasFetchAdd<Value<bool>>);
static_assert(mproc::SharedTypeId<std::int32_t>::value != mproc::SharedTypeId<std::uint32_t>::value &&
                  mproc::SharedTypeId<std::int32_t>::value != mproc::SharedTypeId<float>::value &&
                  mproc::SharedTypeId<long>::value == mproc::SharedTypeId<std::int64_t>::value &&
                  mproc::SharedTypeId<Wide>::value == 0,
              "built-in ids tell classes and sizes apart; other types are untagged");
static_assert(!mproc::SharedElement<int*> && !mproc::SharedElement<const int> && mproc::SharedElement<Pair>,
              "pointers mean nothing in another address space");

struct alignas(128) CallerMemory {
    unsigned char bytes[512];
};

// A read-modify-write of a plain (non-atomic) int64 under the Value's lock, with a pause inside the
// critical section so that a missing lock loses updates.
void locked_increments(const Value<std::int64_t>& counter, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        std::lock_guard guard(counter.get_lock());
        std::int64_t& value = counter.get_obj();
        const std::int64_t seen = value;
        if (round % 128 == 0) std::this_thread::yield();
        value = seen + 1;
    }
}

void atomic_increments(const UnlockedValue<std::int64_t>& counter, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        // relaxed: only the total matters; the parent reads it after joining every child.
        counter.fetch_add(1, std::memory_order_relaxed);
        if (round % 128 == 0) std::this_thread::yield();
    }
}

constexpr int kWorkers = 4;
constexpr int kRounds = 5000;

// ---------------------------------------------------------------------------------------------------------

class ValueUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ValueUnitTest);
    CPPUNIT_TEST(testLockedIncrementsFromProcessesGiveExactTotal);
    CPPUNIT_TEST(testLockedIncrementsGiveExactTotalThreads);
    CPPUNIT_TEST(testFetchAddFromProcessesGivesExactTotalWithoutLock);
    CPPUNIT_TEST(testFetchAddGivesExactTotalThreads);
    CPPUNIT_TEST(testAtomicOperationsFollowStdAtomic);
    CPPUNIT_TEST(testValueAndSetValueCopyWholeValues);
    CPPUNIT_TEST(testValueSitsOneHundredTwentyEightBytesAfterTheLock);
    CPPUNIT_TEST(testNamedValueIsSharedAcrossProcesses);
    CPPUNIT_TEST(testOpeningAsAnotherTypeIsInvalidObject);
    CPPUNIT_TEST(testOpeningAnotherKindIsInvalidObject);
    CPPUNIT_TEST(testOpeningWithOtherLockingIsInvalidObject);
    CPPUNIT_TEST(testRawValueInCallerMemoryWorksAcrossFork);
    CPPUNIT_TEST(testRawValueValidatesItsBytes);
    CPPUNIT_TEST(testMovedFromHandleIsStateError);
    CPPUNIT_TEST_SUITE_END();

public:
    void testLockedIncrementsFromProcessesGiveExactTotal() {
        Value<std::int64_t> counter(7);
        mproc::test::run_in_processes(kWorkers, [&](int) { locked_increments(counter, kRounds); });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{7} + kWorkers * kRounds, counter.value());
    }

    void testLockedIncrementsGiveExactTotalThreads() {
        Value<std::int64_t> counter;
        mproc::test::run_in_threads(kWorkers, [&](int) { locked_increments(counter, kRounds); });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{kWorkers} * kRounds, counter.value());
    }

    void testFetchAddFromProcessesGivesExactTotalWithoutLock() {
        UnlockedValue<std::int64_t> counter(-3);
        mproc::test::run_in_processes(kWorkers, [&](int) { atomic_increments(counter, kRounds); });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{-3} + kWorkers * kRounds, counter.load(std::memory_order_acquire));
    }

    void testFetchAddGivesExactTotalThreads() {
        UnlockedValue<std::int64_t> counter;
        mproc::test::run_in_threads(kWorkers, [&](int) { atomic_increments(counter, kRounds); });
        // relaxed: run_in_threads() joined the workers, which orders their increments.
        CPPUNIT_ASSERT_EQUAL(std::int64_t{kWorkers} * kRounds, counter.load(std::memory_order_relaxed));
    }

    void testAtomicOperationsFollowStdAtomic() {
        // seq_cst where spelt out: those calls stand for std::atomic's default order, which these members
        // share (one thread, so no order changes a result); the others pass each kind of order through.
        Value<std::uint32_t> bits(0b1010);
        CPPUNIT_ASSERT_EQUAL(0b1010u, bits.fetch_or(0b0101, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(0b1111u, bits.fetch_and(0b0110, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(0b0110u, bits.fetch_xor(0b0011, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(0b0101u, bits.fetch_sub(5, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(0u, bits.exchange(40, std::memory_order_acq_rel));
        std::uint32_t expected = 39;
        CPPUNIT_ASSERT(!bits.compare_exchange_strong(expected, 1, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(40u, expected);  // a failed exchange reports what it found
        CPPUNIT_ASSERT(bits.compare_exchange_strong(expected, 41, std::memory_order_acq_rel, std::memory_order_acquire));
        while (!bits.compare_exchange_weak(expected, 42, std::memory_order_seq_cst)) {
        }
        CPPUNIT_ASSERT_EQUAL(42u, bits.load(std::memory_order_relaxed));
        bits.store(0xffffffffu, std::memory_order_release);
        CPPUNIT_ASSERT_EQUAL(0xffffffffu, bits.fetch_add(1, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(0u, bits.value());  // wraps as std::atomic's unsigned arithmetic does

        UnlockedValue<Point> point(Point{1, 2});  // 8 bytes: lock-free as a whole
        Point seen{1, 2};
        CPPUNIT_ASSERT(point.compare_exchange_strong(seen, Point{3, 4}, std::memory_order_seq_cst));
        CPPUNIT_ASSERT_EQUAL(3, point.load(std::memory_order_seq_cst).x);
        CPPUNIT_ASSERT_EQUAL(4, point.exchange(Point{5, 6}, std::memory_order_seq_cst).y);
        CPPUNIT_ASSERT_EQUAL(6, point.get_obj().y);
    }

    void testValueAndSetValueCopyWholeValues() {
        Value<Wide> wide;
        for (std::uint8_t byte : wide.value().bytes) CPPUNIT_ASSERT_EQUAL(0, int(byte));  // zero by default
        Wide pattern{};
        for (int i = 0; i < 40; ++i) pattern.bytes[i] = static_cast<std::uint8_t>(i * 7);
        wide.set_value(pattern);
        ForkedChild child([&] {
            const Wide seen = wide.value();
            for (int i = 0; i < 40; ++i)
                if (seen.bytes[i] != static_cast<std::uint8_t>(i * 7)) ::_exit(3);
            wide.get_obj().bytes[39] = 1;
            ::_exit(0);
        });
        const int status = child.wait();
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CPPUNIT_ASSERT_EQUAL(1, int(wide.value().bytes[39]));
        Value<double> number(2.5);
        number.set_value(-0.125);
        // relaxed: one thread; program order makes set_value()'s store visible.
        CPPUNIT_ASSERT_EQUAL(-0.125, number.load(std::memory_order_relaxed));
    }

    void testValueSitsOneHundredTwentyEightBytesAfterTheLock() {
        Value<std::int64_t> counter;
        const auto* lock = reinterpret_cast<const std::byte*>(&counter.get_lock());
        const auto* value = reinterpret_cast<const std::byte*>(&counter.get_obj());
        CPPUNIT_ASSERT_EQUAL(std::ptrdiff_t{128}, value - lock);
        CPPUNIT_ASSERT_EQUAL(std::uintptr_t{0}, reinterpret_cast<std::uintptr_t>(value) % 128);
        CPPUNIT_ASSERT_EQUAL(std::size_t{128 + 8}, counter.segment().size());
    }

    void testNamedValueIsSharedAcrossProcesses() {
        const std::string name = mproc::test::unique_name("value");
        Value<std::int64_t> created = Value<std::int64_t>::create(name, 41);
        mproc::test::run_in_processes(2, [&](int index) {
            Value<std::int64_t> opened = Value<std::int64_t>::open(name);
            CPPUNIT_ASSERT_EQUAL(name, opened.name());
            std::lock_guard guard(opened.get_lock());
            opened.get_obj() += index + 1;  // 41 + 1 + 2
        });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{44}, created.value());
        try {
            (void)Value<std::int64_t>::create(name);
            CPPUNIT_FAIL("a second create of the same name succeeded");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EEXIST, error.error_number());
        }
        created.unlink();
        try {
            (void)Value<std::int64_t>::open(name);
            CPPUNIT_FAIL("an unlinked name was opened");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(ENOENT, error.error_number());
        }
    }

    void testOpeningAsAnotherTypeIsInvalidObject() {
        const std::string name = mproc::test::unique_name("value-type");
        Value<std::int32_t> created = Value<std::int32_t>::create(name, 5);
        std::string message = message_of<mproc::InvalidObject>([&] { (void)Value<float>::open(name); });
        assert_contains(message, "value '" + name + "'");
        assert_contains(message, "holds int32 (4 bytes, aligned to 4), expected float32 (4 bytes, aligned to 4)");
        message = message_of<mproc::InvalidObject>([&] { (void)Value<std::uint32_t>::open(name); });
        assert_contains(message, "expected uint32");
        message = message_of<mproc::InvalidObject>([&] { (void)Value<double>::open(name); });
        assert_contains(message, "expected float64 (8 bytes, aligned to 8)");
        created.unlink();

        const std::string point_name = mproc::test::unique_name("value-point");
        Value<Point> point = Value<Point>::create(point_name, Point{1, 2});
        message = message_of<mproc::InvalidObject>([&] { (void)Value<std::int64_t>::open(point_name); });
        assert_contains(message, "holds type id 0x504f494e54 (8 bytes, aligned to 8), expected int64");
        CPPUNIT_ASSERT_EQUAL(2, Value<Point>::open(point_name).value().y);
        point.unlink();
    }

    void testOpeningAnotherKindIsInvalidObject() {
        const std::string name = mproc::test::unique_name("value-kind");
        mproc::Array<std::int64_t> array = mproc::Array<std::int64_t>::create(name, 1);
        std::string message = message_of<mproc::InvalidObject>([&] { (void)Value<std::int64_t>::open(name); });
        assert_contains(message, "array");
        array.unlink();
        const std::string lock_name = mproc::test::unique_name("value-lock");
        mproc::Lock lock = mproc::Lock::create(lock_name);
        message = message_of<mproc::InvalidObject>([&] { (void)Value<std::int64_t>::open(lock_name); });
        assert_contains(message, "lock");
        lock.unlink();
    }

    void testOpeningWithOtherLockingIsInvalidObject() {
        const std::string name = mproc::test::unique_name("value-locking");
        UnlockedValue<std::int64_t> unlocked = UnlockedValue<std::int64_t>::create(name, 9);
        std::string message = message_of<mproc::InvalidObject>([&] { (void)Value<std::int64_t>::open(name); });
        assert_contains(message, "made without a lock (unlocked), opened as a Value with a lock");
        // relaxed: this thread stored the value at create(); program order suffices.
        CPPUNIT_ASSERT_EQUAL(std::int64_t{9}, UnlockedValue<std::int64_t>::open(name).load(std::memory_order_relaxed));
        unlocked.unlink();
        const std::string locked_name = mproc::test::unique_name("value-locked");
        Value<std::int64_t> locked = Value<std::int64_t>::create(locked_name);
        message = message_of<mproc::InvalidObject>([&] { (void)UnlockedValue<std::int64_t>::open(locked_name); });
        assert_contains(message, "made with a lock, opened as a Value without a lock");
        locked.unlink();
    }

    void testRawValueInCallerMemoryWorksAcrossFork() {
        Shared<CallerMemory> memory;
        RawValue<std::int64_t> placed = RawValue<std::int64_t>::init(memory->bytes, sizeof memory->bytes, 100);
        mproc::test::run_in_processes(kWorkers, [&](int) {
            RawValue<std::int64_t> value = RawValue<std::int64_t>::attach(memory->bytes, sizeof memory->bytes);
            for (int round = 0; round < 1000; ++round) {
                std::lock_guard guard(value.get_lock());
                value.get_obj() += 1;
            }
        });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{100 + kWorkers * 1000}, placed.value());
        CPPUNIT_ASSERT_EQUAL(std::size_t{136}, RawValue<std::int64_t>::kSize);

        Shared<CallerMemory> unlocked_memory;
        auto unlocked = mproc::RawUnlockedValue<std::int32_t>::init(unlocked_memory->bytes, 136, 5);
        // relaxed (both): one thread; program order suffices.
        CPPUNIT_ASSERT_EQUAL(5, unlocked.fetch_add(2, std::memory_order_relaxed));
        const auto reattached = mproc::RawUnlockedValue<std::int32_t>::attach(unlocked_memory->bytes, 136);
        CPPUNIT_ASSERT_EQUAL(7, reattached.load(std::memory_order_relaxed));
    }

    void testRawValueValidatesItsBytes() {
        CallerMemory memory{};
        assert_contains(message_of<mproc::ValueError>(
                            [&] { (void)RawValue<std::int64_t>::init(memory.bytes + 64, sizeof memory.bytes - 64); }),
                        "128-byte aligned");
        assert_contains(message_of<mproc::ValueError>([&] { (void)RawValue<std::int64_t>::init(memory.bytes, 135); }),
                        "135 bytes, expected at least 136");
        assert_contains(message_of<mproc::InvalidObject>(
                            [&] { (void)RawValue<std::int64_t>::attach(memory.bytes, sizeof memory.bytes); }),
                        "raw value: magic 0x0");
        (void)RawValue<std::int64_t>::init(memory.bytes, sizeof memory.bytes, 1);
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)RawValue<std::int64_t>::attach(memory.bytes, 100); }),
                        "100 bytes, expected at least 128");
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)RawValue<std::int64_t>::attach(memory.bytes, 130); }),
                        "only 130 are there");
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)mproc::RawArray<std::int64_t>::attach(memory.bytes, 512); }),
                        "a Value, not an Array");
        // A scribbled lock is reported as the Value's lock.
        memory.bytes[16] = 0xee;  // the lock's magic
        assert_contains(message_of<mproc::InvalidObject>(
                            [&] { (void)RawValue<std::int64_t>::attach(memory.bytes, sizeof memory.bytes); }),
                        "raw value lock: magic");
        (void)RawValue<std::int64_t>::init(memory.bytes, sizeof memory.bytes, 1);
        memory.bytes[64 + 4] = 2;  // layout version
        assert_contains(message_of<mproc::InvalidObject>(
                            [&] { (void)RawValue<std::int64_t>::attach(memory.bytes, sizeof memory.bytes); }),
                        "layout version 2, expected 1");
    }

    void testMovedFromHandleIsStateError() {
        Value<std::int64_t> first(3);
        Value<std::int64_t> second = std::move(first);
        // relaxed (both): one thread; the second call throws before any atomic operation.
        CPPUNIT_ASSERT_EQUAL(std::int64_t{4}, second.fetch_add(1, std::memory_order_relaxed) + 1);
        assert_contains(message_of<mproc::StateError>([&] { (void)first.fetch_add(1, std::memory_order_relaxed); }),
                        "value: fetch_add: moved-from");
        CPPUNIT_ASSERT_THROW((void)first.get_lock(), mproc::StateError);
        CPPUNIT_ASSERT_THROW(first.unlink(), mproc::StateError);
        first = std::move(second);
        CPPUNIT_ASSERT_EQUAL(std::int64_t{4}, first.value());
    }
};

// ---------------------------------------------------------------------------------------------------------

class ValueStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ValueStressTest);
    CPPUNIT_TEST(testManyProcessesMixingLockedAndAtomicUpdatesGiveExactTotal);
    CPPUNIT_TEST(testManyLockedIncrementsGiveExactTotalThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    // Half the workers add with fetch_add and no lock, half under the lock with a compare_exchange loop
    // (the lock excludes only the other lockers, so the lockers' update must be atomic too): the lock and
    // the atomics coexist on one value and the total is exact.
    void testManyProcessesMixingLockedAndAtomicUpdatesGiveExactTotal() {
        Value<std::int64_t> counter;
        constexpr int kProcesses = 8;
        constexpr int kMany = 40000;
        mproc::test::run_in_processes(kProcesses, [&](int index) {
            for (int round = 0; round < kMany; ++round) {
                if (index % 2 == 0) {
                    counter.fetch_add(1, std::memory_order_relaxed);  // relaxed: only the total is read
                } else {
                    std::lock_guard guard(counter.get_lock());
                    std::int64_t seen = counter.load(std::memory_order_relaxed);  // relaxed: the CAS checks
                    while (!counter.compare_exchange_weak(seen, seen + 1, std::memory_order_relaxed)) {
                    }
                }
            }
        });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{kProcesses} * kMany, counter.value());
    }

    void testManyLockedIncrementsGiveExactTotalThreads() {
        Value<std::int64_t> counter;
        mproc::test::run_in_threads(8, [&](int) { locked_increments(counter, 40000); });
        CPPUNIT_ASSERT_EQUAL(std::int64_t{8} * 40000, counter.value());
    }
};

// ---------------------------------------------------------------------------------------------------------

class ValueCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ValueCrashTest);
    CPPUNIT_TEST(testHolderKilledMidUpdateIsReportedAndRepaired);
    CPPUNIT_TEST(testLockedCountersSurviveRandomKills);
    CPPUNIT_TEST_SUITE_END();

public:
    void testHolderKilledMidUpdateIsReportedAndRepaired() {
        Value<Pair> pair(Pair{5, 5, {}});
        Shared<std::atomic<int>> halfway;
        ForkedChild writer([&] {
            pair.get_lock().lock();
            pair.get_obj().first = 6;  // the second half is never written: the update is torn
            // relaxed: the parent reads the torn pair only after reaping this writer, which orders it.
            halfway->store(1, std::memory_order_relaxed);
            for (;;) ::pause();
        });
        // relaxed: only says when to kill; the pair is read after writer.wait(), which orders it.
        wait_for([&] { return halfway->load(std::memory_order_relaxed) == 1; },
                 "the writer to be halfway through its update");
        writer.kill();
        writer.wait();
        try {
            pair.get_lock().lock();
            CPPUNIT_FAIL("the writer's death was not reported");
        } catch (const mproc::OwnerDied&) {
        }
        CPPUNIT_ASSERT(pair.get_lock().held_by_this_thread());
        Pair& torn = pair.get_obj();
        CPPUNIT_ASSERT_EQUAL(std::int64_t{6}, torn.first);
        CPPUNIT_ASSERT_EQUAL(std::int64_t{5}, torn.second);
        torn.second = torn.first;  // the repair
        pair.get_lock().make_consistent();
        pair.get_lock().unlock();
        ForkedChild reader([&] {
            std::lock_guard guard(pair.get_lock());  // consistent again: no OwnerDied
            ::_exit(pair.get_obj().first == 6 && pair.get_obj().second == 6 ? 0 : 3);
        });
        const int status = reader.wait();
        CPPUNIT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    // Workers add 1 to both halves under the lock, slowly enough to be killed in between; each worker is
    // SIGKILLed at a moment of its own and the next one is told of a death inside the update (OwnerDied)
    // and completes the torn update. No update is lost but the torn ones, which the repairs complete: at
    // the end both halves are equal, and every worker made progress.
    void testLockedCountersSurviveRandomKills() {
        Value<Pair> pair;
        Shared<std::atomic<int>> completed;
        constexpr int kVictims = 6;
        for (int victim = 0; victim < kVictims; ++victim) {
            // relaxed: the previous worker was reaped, which orders its increments.
            const int before = completed->load(std::memory_order_relaxed);
            ForkedChild worker([&] {
                for (;;) {
                    try {
                        pair.get_lock().lock();
                    } catch (const mproc::OwnerDied&) {
                        Pair& torn = pair.get_obj();
                        torn.second = torn.first;
                        pair.get_lock().make_consistent();
                    }
                    Pair& value = pair.get_obj();
                    value.first += 1;
                    std::this_thread::sleep_for(20us);
                    value.second += 1;
                    pair.get_lock().unlock();
                    // relaxed: a progress count; the pair is guarded by the lock and read after waitpid().
                    completed->fetch_add(1, std::memory_order_relaxed);
                }
            });
            // relaxed: pairs with the worker's progress count, which publishes nothing.
            wait_for([&] { return completed->load(std::memory_order_relaxed) > before; },
                     "worker " + std::to_string(victim) + " to progress");
            std::this_thread::sleep_for(std::chrono::milliseconds(1 + victim * 3));
            worker.kill();
            worker.wait();
        }
        if (pair.get_lock().acquire_status() == mproc::AcquireStatus::owner_died) {
            pair.get_obj().second = pair.get_obj().first;
            pair.get_lock().make_consistent();
        }
        CPPUNIT_ASSERT(pair.get_obj().first >= kVictims);
        // relaxed: every worker was reaped, which orders its increments.
        CPPUNIT_ASSERT(pair.get_obj().first >= completed->load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(pair.get_obj().first, pair.get_obj().second);
        pair.get_lock().unlock();
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ValueUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ValueStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ValueCrashTest, "crash");

}  // namespace
