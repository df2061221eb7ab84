// tests/array_test.cpp — mproc::Array, UnlockedArray and RawArray: element writes from children visible to
// the parent, exact sums under get_lock() and with atomic_at(), bounds-checked at() (ValueError), initial
// contents, named create/open across processes with count, type, kind and Locking mismatches reported
// clearly, placement in caller memory, and a lock holder SIGKILLed halfway through an update of every
// element: the next locker is told (OwnerDied) and repairs.
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/array.hpp"
#include "mproc/error.hpp"
#include "mproc/value.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Array;
using mproc::RawArray;
using mproc::UnlockedArray;
using Clock = std::chrono::steady_clock;

struct Wide {
    std::uint8_t bytes[24];
};

template <class A>
concept HasGetLock = requires(A& a) { a.get_lock(); };
template <class A>
concept HasAtomicAt = requires(A& a) { a.atomic_at(0); };

static_assert(HasGetLock<Array<int>> && !HasGetLock<UnlockedArray<int>> && !HasGetLock<mproc::RawUnlockedArray<int>>,
              "an unlocked Array has no get_lock member");
static_assert(HasAtomicAt<Array<std::uint16_t>> && !HasAtomicAt<Array<Wide>>,
              "atomic_at exists only where every element is lock-free");

struct alignas(128) CallerMemory {
    unsigned char bytes[1024];
};

constexpr int kWorkers = 4;
constexpr std::size_t kElements = 16;
constexpr int kRounds = 2000;

// Each round adds 1 to every element under the lock, with a pause in the middle: without the lock, the
// read-modify-writes of different workers would overlap and lose additions.
void locked_sweeps(const Array<std::int64_t>& array, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        std::lock_guard guard(array.get_lock());
        for (std::size_t i = 0; i < array.size(); ++i) {
            const std::int64_t seen = array[i];
            if (i == array.size() / 2 && round % 64 == 0) std::this_thread::yield();
            array[i] = seen + 1;
        }
    }
}

void atomic_sweeps(const UnlockedArray<std::int64_t>& array, int rounds) {
    for (int round = 0; round < rounds; ++round)
        for (std::size_t i = 0; i < array.size(); ++i)
            // relaxed: only the totals matter; the parent reads them after joining every child.
            array.atomic_at(i).fetch_add(static_cast<std::int64_t>(i), std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------------------

class ArrayUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ArrayUnitTest);
    CPPUNIT_TEST(testChildWritesAreVisibleToParent);
    CPPUNIT_TEST(testLockedSweepsFromProcessesGiveExactSums);
    CPPUNIT_TEST(testLockedSweepsGiveExactSumsThreads);
    CPPUNIT_TEST(testAtomicAtFromProcessesGivesExactSumsWithoutLock);
    CPPUNIT_TEST(testAtomicAtGivesExactSumsThreads);
    CPPUNIT_TEST(testAtChecksBoundsWithValueError);
    CPPUNIT_TEST(testInitialContentsAreCopied);
    CPPUNIT_TEST(testFirstElementSitsOneHundredTwentyEightBytesAfterTheLock);
    CPPUNIT_TEST(testNamedArrayIsSharedAcrossProcesses);
    CPPUNIT_TEST(testOpeningWithAnotherCountOrTypeIsInvalidObject);
    CPPUNIT_TEST(testOpeningAnotherKindOrLockingIsInvalidObject);
    CPPUNIT_TEST(testRawArrayInCallerMemoryWorksAcrossFork);
    CPPUNIT_TEST(testRawArrayValidatesItsBytes);
    CPPUNIT_TEST(testMovedFromHandleIsStateError);
    CPPUNIT_TEST_SUITE_END();

public:
    void testChildWritesAreVisibleToParent() {
        Array<std::int32_t> array(kElements);
        mproc::test::run_in_processes(kWorkers, [&](int index) {
            for (std::size_t i = static_cast<std::size_t>(index); i < array.size(); i += kWorkers)
                array[i] = static_cast<std::int32_t>(i * 10 + 1);
        });
        for (std::size_t i = 0; i < kElements; ++i) CPPUNIT_ASSERT_EQUAL(static_cast<std::int32_t>(i * 10 + 1), array[i]);
    }

    void testLockedSweepsFromProcessesGiveExactSums() {
        Array<std::int64_t> array(kElements);
        mproc::test::run_in_processes(kWorkers, [&](int) { locked_sweeps(array, kRounds); });
        for (const std::int64_t element : array.span()) CPPUNIT_ASSERT_EQUAL(std::int64_t{kWorkers} * kRounds, element);
    }

    void testLockedSweepsGiveExactSumsThreads() {
        Array<std::int64_t> array(kElements);
        mproc::test::run_in_threads(kWorkers, [&](int) { locked_sweeps(array, kRounds); });
        for (const std::int64_t element : array.span()) CPPUNIT_ASSERT_EQUAL(std::int64_t{kWorkers} * kRounds, element);
    }

    void testAtomicAtFromProcessesGivesExactSumsWithoutLock() {
        UnlockedArray<std::int64_t> array(kElements);
        mproc::test::run_in_processes(kWorkers, [&](int) { atomic_sweeps(array, kRounds); });
        for (std::size_t i = 0; i < kElements; ++i)
            CPPUNIT_ASSERT_EQUAL(static_cast<std::int64_t>(i) * kWorkers * kRounds,
                                 array.atomic_at(i).load(std::memory_order_acquire));
    }

    void testAtomicAtGivesExactSumsThreads() {
        UnlockedArray<std::int64_t> array(kElements);
        mproc::test::run_in_threads(kWorkers, [&](int) { atomic_sweeps(array, kRounds); });
        for (std::size_t i = 0; i < kElements; ++i)
            // relaxed: run_in_threads() joined the workers, which orders their increments.
            CPPUNIT_ASSERT_EQUAL(static_cast<std::int64_t>(i) * kWorkers * kRounds,
                                 array.atomic_at(i).load(std::memory_order_relaxed));
    }

    void testAtChecksBoundsWithValueError() {
        Array<std::int16_t> array(3);
        array.at(2) = 7;
        CPPUNIT_ASSERT_EQUAL(std::int16_t{7}, array[2]);
        assert_contains(message_of<mproc::ValueError>([&] { (void)array.at(3); }),
                        "anonymous array: at: index 3 is outside 0..2 (size 3)");
        assert_contains(message_of<mproc::ValueError>([&] { (void)array.atomic_at(1000); }),
                        "atomic_at: index 1000 is outside 0..2");
        UnlockedArray<double> empty(0);
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, empty.size());
        CPPUNIT_ASSERT(empty.span().empty());
        assert_contains(message_of<mproc::ValueError>([&] { (void)empty.at(0); }), "the array is empty");
        Shared<CallerMemory> memory;
        auto raw = RawArray<std::int16_t>::init(memory->bytes, sizeof memory->bytes, 2);
        assert_contains(message_of<mproc::ValueError>([&] { (void)raw.at(2); }), "raw array: at: index 2");
    }

    void testInitialContentsAreCopied() {
        const std::vector<double> initial{1.5, -2.0, 3.25};
        Array<double> array(initial);
        CPPUNIT_ASSERT_EQUAL(std::size_t{3}, array.size());
        CPPUNIT_ASSERT(std::equal(initial.begin(), initial.end(), array.get_obj().begin()));
        Array<Wide> zeroed(5);
        for (const Wide& element : zeroed.span())
            for (const std::uint8_t byte : element.bytes) CPPUNIT_ASSERT_EQUAL(0, int(byte));
    }

    void testFirstElementSitsOneHundredTwentyEightBytesAfterTheLock() {
        Array<std::int32_t> array(10);
        const auto* lock = reinterpret_cast<const std::byte*>(&array.get_lock());
        const auto* first = reinterpret_cast<const std::byte*>(&array[0]);
        CPPUNIT_ASSERT_EQUAL(std::ptrdiff_t{128}, first - lock);
        CPPUNIT_ASSERT_EQUAL(std::ptrdiff_t{4}, reinterpret_cast<const std::byte*>(&array[1]) - first);
        CPPUNIT_ASSERT_EQUAL(std::size_t{128 + 40}, array.segment().size());
    }

    void testNamedArrayIsSharedAcrossProcesses() {
        const std::string name = mproc::test::unique_name("array");
        const std::array<std::uint8_t, 4> initial{1, 2, 3, 4};
        Array<std::uint8_t> created = Array<std::uint8_t>::create(name, std::span<const std::uint8_t>(initial));
        mproc::test::run_in_processes(2, [&](int index) {
            Array<std::uint8_t> opened = index == 0 ? Array<std::uint8_t>::open(name, 4) : Array<std::uint8_t>::open(name);
            CPPUNIT_ASSERT_EQUAL(std::size_t{4}, opened.size());
            std::lock_guard guard(opened.get_lock());
            for (std::uint8_t& element : opened.span()) element = static_cast<std::uint8_t>(element + index + 1);
        });
        // Each element got 1 and 2 from the two children: {1, 2, 3, 4} + 3.
        for (std::size_t i = 0; i < 4; ++i) CPPUNIT_ASSERT_EQUAL(static_cast<int>(i + 4), int(created[i]));
        try {
            (void)Array<std::uint8_t>::create(name, 4);
            CPPUNIT_FAIL("a second create of the same name succeeded");
        } catch (const mproc::SystemError& error) {
            CPPUNIT_ASSERT_EQUAL(EEXIST, error.error_number());
        }
        created.unlink();
    }

    void testOpeningWithAnotherCountOrTypeIsInvalidObject() {
        const std::string name = mproc::test::unique_name("array-count");
        Array<std::int32_t> created = Array<std::int32_t>::create(name, 5);
        std::string message = message_of<mproc::InvalidObject>([&] { (void)Array<std::int32_t>::open(name, 6); });
        assert_contains(message, "array '" + name + "': 5 elements, expected 6");
        message = message_of<mproc::InvalidObject>([&] { (void)Array<std::uint32_t>::open(name, 5); });
        assert_contains(message, "holds int32 (4 bytes, aligned to 4), expected uint32 (4 bytes, aligned to 4)");
        message = message_of<mproc::InvalidObject>([&] { (void)Array<std::int16_t>::open(name); });
        assert_contains(message, "expected int16 (2 bytes, aligned to 2)");
        CPPUNIT_ASSERT_EQUAL(std::size_t{5}, Array<std::int32_t>::open(name).size());
        created.unlink();
    }

    void testOpeningAnotherKindOrLockingIsInvalidObject() {
        const std::string name = mproc::test::unique_name("array-kind");
        mproc::Value<std::int64_t> value = mproc::Value<std::int64_t>::create(name);
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)Array<std::int64_t>::open(name, 1); }), "value");
        value.unlink();
        const std::string unlocked_name = mproc::test::unique_name("array-unlocked");
        UnlockedArray<std::int64_t> unlocked = UnlockedArray<std::int64_t>::create(unlocked_name, 2);
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)Array<std::int64_t>::open(unlocked_name); }),
                        "made without a lock (unlocked), opened as an Array with a lock");
        unlocked.unlink();
    }

    void testRawArrayInCallerMemoryWorksAcrossFork() {
        Shared<CallerMemory> memory;
        const std::size_t needed = RawArray<std::int64_t>::bytes_for(8);
        CPPUNIT_ASSERT_EQUAL(std::size_t{128 + 64}, needed);
        RawArray<std::int64_t> placed = RawArray<std::int64_t>::init(memory->bytes, needed, 8);
        mproc::test::run_in_processes(kWorkers, [&](int) {
            RawArray<std::int64_t> array = RawArray<std::int64_t>::attach(memory->bytes, needed, 8);
            for (int round = 0; round < 500; ++round) {
                std::lock_guard guard(array.get_lock());
                for (std::int64_t& element : array.span()) element += 1;
            }
        });
        for (const std::int64_t element : placed.span()) CPPUNIT_ASSERT_EQUAL(std::int64_t{kWorkers * 500}, element);
        const std::array<std::uint32_t, 3> initial{7, 8, 9};
        auto unlocked = mproc::RawUnlockedArray<std::uint32_t>::init(memory->bytes, sizeof memory->bytes,
                                                                     std::span<const std::uint32_t>(initial));
        // relaxed: one thread; program order makes it visible to the plain read below.
        CPPUNIT_ASSERT_EQUAL(9u, unlocked.atomic_at(2).fetch_add(1, std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(10u, mproc::RawUnlockedArray<std::uint32_t>::attach(memory->bytes, 140)[2]);
    }

    void testRawArrayValidatesItsBytes() {
        CallerMemory memory{};
        assert_contains(message_of<mproc::ValueError>([&] { (void)RawArray<std::int32_t>::init(memory.bytes, 150, 6); }),
                        "150 bytes, expected at least 152");
        assert_contains(message_of<mproc::ValueError>([&] { (void)RawArray<std::int32_t>::bytes_for(SIZE_MAX / 2); }),
                        "overflow");
        (void)RawArray<std::int32_t>::init(memory.bytes, sizeof memory.bytes, 6);
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)RawArray<std::int32_t>::attach(memory.bytes, 151); }),
                        "6 elements of 4 bytes need 152 bytes, only 151 are there");
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)mproc::RawValue<std::int32_t>::attach(memory.bytes, 1024); }),
                        "an Array, not a Value");
        // A count so large that its byte size wraps must be refused, not wrapped into a small size.
        std::uint64_t huge = (std::uint64_t{1} << 62) + 1;
        std::memcpy(memory.bytes + 64 + offsetof(mproc::detail::SharedDataDescriptor, count), &huge, sizeof huge);
        assert_contains(message_of<mproc::InvalidObject>([&] { (void)RawArray<std::int32_t>::attach(memory.bytes, 1024); }),
                        "more than 2^64");
    }

    void testMovedFromHandleIsStateError() {
        Array<std::int64_t> first(2);
        Array<std::int64_t> second = std::move(first);
        second[1] = 5;
        CPPUNIT_ASSERT_EQUAL(std::size_t{0}, first.size());
        assert_contains(message_of<mproc::StateError>([&] { (void)first.at(0); }), "array: at: moved-from");
        CPPUNIT_ASSERT_THROW((void)first[0], mproc::StateError);
        CPPUNIT_ASSERT_THROW((void)first.get_lock(), mproc::StateError);
        CPPUNIT_ASSERT_EQUAL(std::int64_t{5}, second.at(1));
    }
};

// ---------------------------------------------------------------------------------------------------------

class ArrayStressTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ArrayStressTest);
    CPPUNIT_TEST(testManyProcessesGiveExactSums);
    CPPUNIT_TEST(testManyThreadsGiveExactSumsThreads);
    CPPUNIT_TEST_SUITE_END();

public:
    void testManyProcessesGiveExactSums() {
        Array<std::int64_t> locked(64);
        UnlockedArray<std::int64_t> atomic(64);
        mproc::test::run_in_processes(8, [&](int index) {
            if (index % 2 == 0)
                locked_sweeps(locked, 10000);
            else
                atomic_sweeps(atomic, 10000);
        });
        for (std::size_t i = 0; i < 64; ++i) {
            CPPUNIT_ASSERT_EQUAL(std::int64_t{4} * 10000, locked[i]);
            // relaxed: run_in_processes() reaped the workers, which orders their increments.
            CPPUNIT_ASSERT_EQUAL(static_cast<std::int64_t>(i) * 4 * 10000,
                                 atomic.atomic_at(i).load(std::memory_order_relaxed));
        }
    }

    void testManyThreadsGiveExactSumsThreads() {
        Array<std::int64_t> locked(64);
        mproc::test::run_in_threads(8, [&](int) { locked_sweeps(locked, 5000); });
        for (const std::int64_t element : locked.span()) CPPUNIT_ASSERT_EQUAL(std::int64_t{8} * 5000, element);
    }
};

// ---------------------------------------------------------------------------------------------------------

class ArrayCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ArrayCrashTest);
    CPPUNIT_TEST(testHolderKilledMidSweepIsReportedAndRepaired);
    CPPUNIT_TEST_SUITE_END();

public:
    void testHolderKilledMidSweepIsReportedAndRepaired() {
        Array<std::int32_t> array(8);
        Shared<std::atomic<int>> halfway;
        ForkedChild writer([&] {
            array.get_lock().lock();
            for (std::size_t i = 0; i < 4; ++i) array[i] = 1;  // the other half is never written
            // relaxed: the parent reads the half-swept array only after reaping this writer, which orders it.
            halfway->store(1, std::memory_order_relaxed);
            for (;;) ::pause();
        });
        // relaxed: only says when to kill; the array is read after writer.wait(), which orders it.
        wait_for([&] { return halfway->load(std::memory_order_relaxed) == 1; },
                 "the writer to be halfway through its sweep");
        writer.kill();
        writer.wait();
        CPPUNIT_ASSERT(array.get_lock().acquire_status() == mproc::AcquireStatus::owner_died);
        const std::vector<std::int32_t> seen(array.span().begin(), array.span().end());
        CPPUNIT_ASSERT((seen == std::vector<std::int32_t>{1, 1, 1, 1, 0, 0, 0, 0}));
        for (std::int32_t& element : array.span()) element = 1;  // the repair: finish the sweep
        array.get_lock().make_consistent();
        array.get_lock().unlock();
        mproc::test::run_in_processes(1, [&](int) {
            std::lock_guard guard(array.get_lock());
            CPPUNIT_ASSERT_EQUAL(8, std::accumulate(array.span().begin(), array.span().end(), 0));
        });
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ArrayUnitTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ArrayStressTest, "stress");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ArrayCrashTest, "crash");

}  // namespace
