// tests/pool_test.cpp — Pool (mproc/pool.hpp): Python's calls with ordinary, empty and single inputs; a
// task's exception, a worker's death, retries, task timeouts, initializers, maxtasksperchild, terminate
// and close; the executor face; the module functions; the result-frame decoder on hostile frames. The crash
// suite runs a map while a killer SIGKILLs random workers every few milliseconds.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "pool_frames.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::Pool;
using mproc::PoolOptions;
using mproc::test::assert_contains;
using mproc::test::message_of;

// Counters every worker of a test shares (a global, so that capture-less task functions reach it; workers
// are forked after it is set).
struct Board {
    std::atomic<int> attempts[64];
    std::atomic<int> initialized;
};
Board* g_board = nullptr;

struct BoardScope {
    BoardScope() {
        void* memory = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CPPUNIT_ASSERT(memory != MAP_FAILED);
        g_board = new (memory) Board();
    }
    ~BoardScope() {
        ::munmap(g_board, sizeof(Board));
        g_board = nullptr;
    }
};

int plus_one(int x) { return x + 1; }
std::string shout(std::string text) { return text + "!"; }
std::vector<double> scaled(std::vector<double> values, double factor) {
    for (double& value : values) value *= factor;
    return values;
}
int add(int a, int b) { return a + b; }
int pid_of_worker(int) { return static_cast<int>(::getpid()); }
int throws_on_three(int x) {
    if (x == 3) throw std::invalid_argument("three is not welcome");
    return x;
}
int dies_on_five(int x) {
    if (x == 5) ::raise(SIGKILL);
    return x * 10;
}
int dies_on_first_attempt(int x) {
    // relaxed: a counter read only by later tasks of this test and by the parent after the map.
    if (g_board->attempts[x].fetch_add(1, std::memory_order_relaxed) == 0 && x % 3 == 0) ::raise(SIGKILL);
    return x;
}
int sleeps_on_two(int x) {
    if (x == 2) std::this_thread::sleep_for(30s);
    return x;
}
// About 30 µs of work, so that workers are busy most of the time and kills land inside tasks.
int counted(int x) {
    // relaxed: as in dies_on_first_attempt.
    g_board->attempts[x % 64].fetch_add(1, std::memory_order_relaxed);
    const auto until = std::chrono::steady_clock::now() + 30us;
    while (std::chrono::steady_clock::now() < until) {
    }
    return x;
}
void mark_initialized(int value) {
    // relaxed: read by tasks of the same worker after it (program order), and by the parent after the map.
    g_board->initialized.store(value, std::memory_order_relaxed);
}
int initialized_value(int) {
    // relaxed: see mark_initialized.
    return g_board->initialized.load(std::memory_order_relaxed);
}
void initializer_that_throws() { throw std::runtime_error("no database"); }
void initializer_that_dies() { ::raise(SIGKILL); }
void nothing() {}

std::size_t open_fd_count() {
    std::size_t count = 0;
    DIR* dir = ::opendir("/proc/self/fd");
    while (const dirent* entry = ::readdir(dir))
        if (entry->d_name[0] != '.') ++count;
    ::closedir(dir);
    return count - 1;  // the directory's own descriptor
}

class PoolTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(PoolTest);
    CPPUNIT_TEST(testMapReturnsEveryResultInInputOrder);
    CPPUNIT_TEST(testEmptyAndSingleInputs);
    CPPUNIT_TEST(testObjectsTravelBothWays);
    CPPUNIT_TEST(testApplyStarmapAndVoidFunctions);
    CPPUNIT_TEST(testCallbacksRunOnceWithTheValueOrTheError);
    CPPUNIT_TEST(testTaskThatThrowsIsRemoteErrorAndItsWorkerSurvives);
    CPPUNIT_TEST(testImapKeepsOrderAndImapUnorderedYieldsEachOnce);
    CPPUNIT_TEST(testKilledWorkerFailsExactlyItsTaskAndIsReplaced);
    CPPUNIT_TEST(testRetriesRerunATaskWhoseWorkerDied);
    CPPUNIT_TEST(testTaskTimeoutKillsTheTaskAndTheOthersGoOn);
    CPPUNIT_TEST(testInitializerRunsInEveryWorker);
    CPPUNIT_TEST(testInitializerThatThrowsBreaksThePoolWithoutRespawning);
    CPPUNIT_TEST(testWorkersThatDieStartingBreakThePoolWithoutRespawning);
    CPPUNIT_TEST(testMaxTasksPerChildRecyclesWorkers);
    CPPUNIT_TEST(testTerminateFailsPendingTasksWithClosedAndLeavesNothing);
    CPPUNIT_TEST(testCloseThenJoinFinishesEverySubmittedTask);
    CPPUNIT_TEST(testCallsInTheWrongStateThrowStateError);
    CPPUNIT_TEST(testExecutorSubmitAsCompletedAndShutdown);
    CPPUNIT_TEST(testAsyncResultTimesOutWithoutLosingTheResult);
    CPPUNIT_TEST(testCpuCountHonoursTheAffinityMask);
    CPPUNIT_TEST(testParentProcessAndActiveChildren);
    CPPUNIT_TEST(testResultFrameDecoderRefusesHostileFrames);
    CPPUNIT_TEST_SUITE_END();

public:
    void testMapReturnsEveryResultInInputOrder() {
        Pool pool(3);
        std::vector<int> inputs(1000);
        for (int i = 0; i < 1000; ++i) inputs[static_cast<std::size_t>(i)] = i;
        const std::vector<int> results = pool.map(plus_one, inputs);
        CPPUNIT_ASSERT_EQUAL(std::size_t(1000), results.size());
        for (int i = 0; i < 1000; ++i) CPPUNIT_ASSERT_EQUAL(i + 1, results[static_cast<std::size_t>(i)]);
        // Explicit chunk sizes, larger than the input too.
        for (const std::size_t chunksize : {std::size_t(1), std::size_t(7), std::size_t(5000)})
            CPPUNIT_ASSERT(pool.map(plus_one, inputs, chunksize) == results);
    }

    void testEmptyAndSingleInputs() {
        Pool pool(2);
        CPPUNIT_ASSERT(pool.map(plus_one, std::vector<int>{}).empty());
        CPPUNIT_ASSERT(pool.map(plus_one, std::vector<int>{41}) == std::vector<int>{42});
        auto iterator = pool.imap(plus_one, std::vector<int>{});
        CPPUNIT_ASSERT(!iterator.next(1s).has_value());
        CPPUNIT_ASSERT(pool.starmap(add, std::vector<std::tuple<int, int>>{}).empty());
    }

    void testObjectsTravelBothWays() {
        Pool pool(2);
        const std::vector<std::string> words{"", "hello", std::string(100000, 'x'), "ünïcödé"};
        const std::vector<std::string> shouted = pool.map(shout, words);
        for (std::size_t i = 0; i < words.size(); ++i) CPPUNIT_ASSERT_EQUAL(words[i] + "!", shouted[i]);
        CPPUNIT_ASSERT((pool.apply(scaled, std::vector<double>{1.5, -2.0}, 2.0) == std::vector<double>{3.0, -4.0}));
        // One chunk whose results change length after the first ones (the worker turns its uniform frame
        // into records) and whose arguments differ in length (a record task frame).
        CPPUNIT_ASSERT(pool.map(shout, words, 4) == shouted);
        const std::vector<std::string> same_length{"ab", "cd", "ef"};
        CPPUNIT_ASSERT((pool.map(shout, same_length, 3) == std::vector<std::string>{"ab!", "cd!", "ef!"}));
    }

    void testApplyStarmapAndVoidFunctions() {
        Pool pool(2);
        CPPUNIT_ASSERT_EQUAL(5, pool.apply(add, 2, 3));
        const std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
        CPPUNIT_ASSERT((pool.starmap(add, pairs) == std::vector<int>{3, 7, 11}));
        // A function returning void gives the None marker.
        CPPUNIT_ASSERT(pool.apply(nothing) == std::monostate{});
        CPPUNIT_ASSERT_EQUAL(5, pool.apply([](int a) { return a * 5; }, 1));
    }

    void testCallbacksRunOnceWithTheValueOrTheError() {
        Pool pool(2);
        std::atomic<int> values{0};
        std::atomic<int> errors{0};
        std::vector<int> seen;
        std::mutex seen_mutex;
        auto ok = pool.map_async(plus_one, std::vector<int>{1, 2, 3}, 0,
                                 {[&](const std::vector<int>& result) {
                                      std::lock_guard lock(seen_mutex);
                                      seen = result;
                                      values.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after get()
                                  },
                                  [&](const mproc::Error&) { errors.fetch_add(1, std::memory_order_relaxed); }});
        auto bad = pool.apply_async(throws_on_three, std::make_tuple(3), mproc::Callbacks<int>{
            [&](const int&) { values.fetch_add(1, std::memory_order_relaxed); },
            [&](const mproc::Error& error) {
                CPPUNIT_ASSERT(dynamic_cast<const mproc::RemoteError*>(&error) != nullptr);
                errors.fetch_add(1, std::memory_order_relaxed);
            }});
        CPPUNIT_ASSERT((ok.get(10s) == std::vector<int>{2, 3, 4}));
        CPPUNIT_ASSERT_THROW(bad.get(10s), mproc::RemoteError);
        pool.close();
        pool.join();  // callbacks ran in the pool's thread before it ended
        CPPUNIT_ASSERT_EQUAL(1, values.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT_EQUAL(1, errors.load(std::memory_order_relaxed));
        CPPUNIT_ASSERT((seen == std::vector<int>{2, 3, 4}));
    }

    void testTaskThatThrowsIsRemoteErrorAndItsWorkerSurvives() {
        Pool pool(1);
        const int worker = pool.apply(pid_of_worker, 0);
        try {
            pool.map(throws_on_three, std::vector<int>{0, 1, 2, 3, 4}, 1);
            CPPUNIT_FAIL("map did not throw");
        } catch (const mproc::RemoteError& error) {
            CPPUNIT_ASSERT_EQUAL(std::size_t(3), error.task());
            CPPUNIT_ASSERT_EQUAL(std::string("std::invalid_argument"), error.type());
            CPPUNIT_ASSERT_EQUAL(std::string("three is not welcome"), error.text());
            assert_contains(error.what(), "task 3: std::invalid_argument: three is not welcome");
        }
        CPPUNIT_ASSERT_EQUAL(worker, pool.apply(pid_of_worker, 0));
        // The same in one chunk: three results gathered back to back, then the exception, then one more.
        auto in_one_chunk = pool.imap(throws_on_three, std::vector<int>{0, 1, 2, 3, 4}, 5);
        for (int i = 0; i < 3; ++i) CPPUNIT_ASSERT_EQUAL(i, *in_one_chunk.next(10s));
        CPPUNIT_ASSERT_THROW(in_one_chunk.next(10s), mproc::RemoteError);
        CPPUNIT_ASSERT_EQUAL(4, *in_one_chunk.next(10s));
        auto result = pool.apply_async(throws_on_three, std::make_tuple(3));
        CPPUNIT_ASSERT(result.wait(10s));
        CPPUNIT_ASSERT(!result.successful());
    }

    void testImapKeepsOrderAndImapUnorderedYieldsEachOnce() {
        Pool pool(3);
        std::vector<int> inputs(200);
        for (int i = 0; i < 200; ++i) inputs[static_cast<std::size_t>(i)] = i;
        int expected = 1;
        for (const int value : pool.imap(plus_one, inputs)) CPPUNIT_ASSERT_EQUAL(expected++, value);
        CPPUNIT_ASSERT_EQUAL(201, expected);
        std::multiset<int> got;
        auto unordered = pool.imap_unordered(plus_one, inputs, 3);
        while (auto value = unordered.next(10s)) got.insert(*value);
        CPPUNIT_ASSERT_EQUAL(std::size_t(200), got.size());
        for (int i = 1; i <= 200; ++i) CPPUNIT_ASSERT_EQUAL(std::size_t(1), got.count(i));
        // A failure is thrown at its position; the iterator then goes on.
        auto failing = pool.imap(throws_on_three, std::vector<int>{2, 3, 4});
        CPPUNIT_ASSERT_EQUAL(2, *failing.next(10s));
        CPPUNIT_ASSERT_THROW(failing.next(10s), mproc::RemoteError);
        CPPUNIT_ASSERT_EQUAL(4, *failing.next(10s));
        CPPUNIT_ASSERT(!failing.next(10s).has_value());
    }

    void testKilledWorkerFailsExactlyItsTaskAndIsReplaced() {
        Pool pool(2);
        std::vector<int> inputs(10);
        for (int i = 0; i < 10; ++i) inputs[static_cast<std::size_t>(i)] = i;
        auto results = pool.imap(dies_on_five, inputs, 4);  // 5 is in the second chunk, [4, 8)
        for (int i = 0; i < 10; ++i) {
            if (i == 5) {
                try {
                    results.next(20s);
                    CPPUNIT_FAIL("task 5 did not fail");
                } catch (const mproc::WorkerDied& died) {
                    CPPUNIT_ASSERT_EQUAL(std::size_t(5), died.task());
                    CPPUNIT_ASSERT_EQUAL(-SIGKILL, died.exit_status());
                    assert_contains(died.what(), "killed by signal 9");
                }
            } else {
                CPPUNIT_ASSERT_EQUAL(i * 10, *results.next(20s));
            }
        }
        CPPUNIT_ASSERT_THROW(pool.map(dies_on_five, inputs), mproc::WorkerDied);
        // The pool still has two workers and runs tasks.
        mproc::test::wait_for([&] { return pool.worker_pids().size() == 2; }, "two workers again");
        CPPUNIT_ASSERT_EQUAL(8, pool.apply(plus_one, 7));
    }

    void testRetriesRerunATaskWhoseWorkerDied() {
        BoardScope board;
        PoolOptions options;
        options.processes = 2;
        options.retries = 1;
        Pool pool(options);
        std::vector<int> inputs(30);
        for (int i = 0; i < 30; ++i) inputs[static_cast<std::size_t>(i)] = i;
        CPPUNIT_ASSERT(pool.map(dies_on_first_attempt, inputs, 4) == inputs);
        for (int i = 0; i < 30; ++i) {
            // relaxed: the map returned, so every worker's increment happened before its result arrived.
            const int attempts = g_board->attempts[i].load(std::memory_order_relaxed);
            // Killed tasks ran twice; tasks of their chunks that had finished ran again; no task ran 3 times.
            if (i % 3 == 0) CPPUNIT_ASSERT_EQUAL(2, attempts);
            CPPUNIT_ASSERT_MESSAGE("task " + std::to_string(i) + " ran " + std::to_string(attempts) + " times",
                                   attempts >= 1 && attempts <= 2);
        }
    }

    void testTaskTimeoutKillsTheTaskAndTheOthersGoOn() {
        PoolOptions options;
        options.processes = 2;
        // Long enough for a trivial task in a sanitized build on a loaded machine (300 ms once killed task 1
        // there), far below the sleeper's 30 s.
        options.task_timeout = 3s;
        Pool pool(options);
        auto results = pool.imap(sleeps_on_two, std::vector<int>{0, 1, 2, 3, 4});
        const auto took = mproc::test::elapsed_of([&] {
            for (int i = 0; i < 5; ++i) {
                if (i == 2) {
                    try {
                        results.next(20s);
                        CPPUNIT_FAIL("task 2 did not time out");
                    } catch (const mproc::TimedOut& timed_out) {
                        CPPUNIT_ASSERT_EQUAL(std::size_t(2), timed_out.task());
                        assert_contains(timed_out.what(), "task_timeout");
                    }
                } else {
                    CPPUNIT_ASSERT_EQUAL(i, *results.next(20s));
                }
            }
        });
        CPPUNIT_ASSERT_MESSAGE(std::to_string(took.count()) + " ms", took < 20s);
        CPPUNIT_ASSERT_EQUAL(3, pool.apply(plus_one, 2));
    }

    void testInitializerRunsInEveryWorker() {
        BoardScope board;
        PoolOptions options;
        options.processes = 2;
        Pool pool(options, mark_initialized, 77);
        const std::vector<int> values = pool.map(initialized_value, std::vector<int>(20, 0), 1);
        for (const int value : values) CPPUNIT_ASSERT_EQUAL(77, value);
    }

    void testInitializerThatThrowsBreaksThePoolWithoutRespawning() {
        PoolOptions options;
        options.processes = 2;
        Pool pool(options, initializer_that_throws);
        const auto took = mproc::test::elapsed_of([&] {
            try {
                pool.map(plus_one, std::vector<int>{1, 2, 3});
                CPPUNIT_FAIL("map on a broken pool did not throw");
            } catch (const mproc::RemoteError& error) {
                CPPUNIT_ASSERT_EQUAL(std::string("std::runtime_error"), error.type());
                assert_contains(error.what(), "initializer");
                assert_contains(error.what(), "no database");
            }
        });
        CPPUNIT_ASSERT(took < 10s);
        // Broken: later calls fail the same way at once, and no worker is running or respawned.
        CPPUNIT_ASSERT_THROW(pool.apply(plus_one, 1), mproc::RemoteError);
        mproc::test::wait_for([&] { return pool.worker_pids().size() <= 2; }, "no respawn loop");
    }

    void testWorkersThatDieStartingBreakThePoolWithoutRespawning() {
        PoolOptions options;
        options.processes = 2;
        Pool pool(options, initializer_that_dies);
        const auto took = mproc::test::elapsed_of([&] {
            try {
                pool.map(plus_one, std::vector<int>{1, 2, 3});
                CPPUNIT_FAIL("map on a pool whose workers cannot start did not throw");
            } catch (const mproc::WorkerDied& died) {
                assert_contains(died.what(), "pool broken: 7 workers in a row ended before beginning a chunk");
                assert_contains(died.what(), "killed by signal 9");
            }
        });
        CPPUNIT_ASSERT(took < 20s);
        CPPUNIT_ASSERT_THROW(pool.apply(plus_one, 1), mproc::WorkerDied);
        // Broken: nothing respawns, so the workers still starting die and none replaces them.
        mproc::test::wait_for([&] { return pool.worker_pids().empty(); }, "no worker left and none respawned");
        std::this_thread::sleep_for(200ms);
        CPPUNIT_ASSERT(pool.worker_pids().empty());
    }

    void testMaxTasksPerChildRecyclesWorkers() {
        PoolOptions options;
        options.processes = 2;
        options.maxtasksperchild = 2;
        Pool pool(options);
        const std::vector<int> pids = pool.map(pid_of_worker, std::vector<int>(12, 0), 1);
        std::map<int, int> tasks_per_pid;
        for (const int pid : pids) ++tasks_per_pid[pid];
        CPPUNIT_ASSERT(tasks_per_pid.size() >= 6);
        for (const auto& [pid, tasks] : tasks_per_pid) CPPUNIT_ASSERT(tasks <= 2);
    }

    void testTerminateFailsPendingTasksWithClosedAndLeavesNothing() {
        const std::size_t fds_before = open_fd_count();
        {
            Pool pool(2);
            CPPUNIT_ASSERT_EQUAL(1, pool.apply(plus_one, 0));
            const std::vector<pid_t> workers = pool.worker_pids();
            CPPUNIT_ASSERT_EQUAL(std::size_t(2), workers.size());
            auto slow = pool.map_async(sleeps_on_two, std::vector<int>{2, 2, 2, 2}, 1);
            std::this_thread::sleep_for(100ms);
            const auto took = mproc::test::elapsed_of([&] { pool.terminate(); });
            CPPUNIT_ASSERT(took < 5s);
            CPPUNIT_ASSERT(slow.ready());
            CPPUNIT_ASSERT_THROW(slow.get(), mproc::Closed);
            for (const pid_t pid : workers) CPPUNIT_ASSERT(::kill(pid, 0) != 0);  // reaped: no zombie either
            CPPUNIT_ASSERT(mproc::active_children().empty());
        }
        CPPUNIT_ASSERT_EQUAL(fds_before, open_fd_count());
    }

    void testCloseThenJoinFinishesEverySubmittedTask() {
        Pool pool(2);
        auto first = pool.map_async(plus_one, std::vector<int>(100, 1));
        auto second = pool.apply_async(add, std::make_tuple(20, 22));
        pool.close();
        pool.join();
        CPPUNIT_ASSERT(first.ready() && second.ready());
        CPPUNIT_ASSERT((first.get() == std::vector<int>(100, 2)));
        CPPUNIT_ASSERT_EQUAL(42, second.get());
        CPPUNIT_ASSERT(mproc::active_children().empty());
    }

    void testCallsInTheWrongStateThrowStateError() {
        Pool pool(1);
        assert_contains(message_of<mproc::StateError>([&] { pool.join(); }), "still running");
        pool.close();
        assert_contains(message_of<mproc::StateError>([&] { pool.apply(plus_one, 1); }), "Pool not running");
        pool.join();
        mproc::AsyncResult<int> empty;
        CPPUNIT_ASSERT_THROW(empty.get(), mproc::StateError);
    }

    void testExecutorSubmitAsCompletedAndShutdown() {
        Pool pool(2);
        std::vector<mproc::AsyncResult<int>> futures;
        for (int i = 0; i < 10; ++i) futures.push_back(pool.submit(plus_one, i));
        const std::vector<std::size_t> order = mproc::as_completed(futures, 20s);
        CPPUNIT_ASSERT_EQUAL(std::size_t(10), order.size());
        CPPUNIT_ASSERT_EQUAL(std::size_t(10), std::set<std::size_t>(order.begin(), order.end()).size());
        for (std::size_t i = 0; i < 10; ++i) CPPUNIT_ASSERT_EQUAL(static_cast<int>(i) + 1, futures[i].get());
        auto never = pool.submit(sleeps_on_two, 2);
        pool.shutdown(true, true);
        CPPUNIT_ASSERT_THROW(never.get(), mproc::Closed);
    }

    void testAsyncResultTimesOutWithoutLosingTheResult() {
        PoolOptions options;
        options.processes = 1;
        options.task_timeout = 1s;
        Pool pool(options);
        auto result = pool.apply_async(sleeps_on_two, std::make_tuple(2));
        CPPUNIT_ASSERT_THROW(result.get(50ms), mproc::TimeoutError);
        CPPUNIT_ASSERT(!result.ready());
        CPPUNIT_ASSERT_THROW(result.get(20s), mproc::TimedOut);
    }

    void testCpuCountHonoursTheAffinityMask() {
        CPPUNIT_ASSERT(mproc::cpu_count() >= 1);
        mproc::Process child([] {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(0, &one);
            if (::sched_setaffinity(0, sizeof one, &one) != 0) ::_exit(2);
            ::_exit(mproc::cpu_count() == 1 ? 0 : 1);
        });
        child.start();
        child.join();
        CPPUNIT_ASSERT_EQUAL(0, child.exitcode().value_or(-1));
    }

    void testParentProcessAndActiveChildren() {
        CPPUNIT_ASSERT(!mproc::parent_process().has_value());
        const pid_t me = ::getpid();
        mproc::Process child([me] { ::_exit(mproc::parent_process() == me ? 0 : 1); });
        child.start();
        child.join();
        CPPUNIT_ASSERT_EQUAL(0, child.exitcode().value_or(-1));
        mproc::Process sleeper([] { std::this_thread::sleep_for(30s); });
        sleeper.start();
        CPPUNIT_ASSERT((mproc::active_children() == std::vector<pid_t>{sleeper.pid()}));
        sleeper.kill();
        sleeper.join();
        CPPUNIT_ASSERT(mproc::active_children().empty());
    }

    void testResultFrameDecoderRefusesHostileFrames() {
        using namespace mproc::detail;
        const auto frame_of = [](std::uint32_t kind, std::uint32_t count, const std::vector<std::byte>& body) {
            std::vector<std::byte> frame(sizeof(ResultFrameHeader) + body.size());
            const ResultFrameHeader header{kResultFrameMagic, kind, 9, count, 0};
            std::memcpy(frame.data(), &header, sizeof header);
            if (!body.empty()) std::memcpy(frame.data() + sizeof header, body.data(), body.size());
            return frame;
        };
        std::vector<std::byte> good_body;
        good_body.push_back(std::byte{0});
        append_length_prefixed(good_body, std::vector<std::byte>{std::byte{1}, std::byte{2}});
        append_error_record(good_body, "E", "text");
        const std::vector<std::byte> good_frame = frame_of(1, 2, good_body);  // the view points into it
        const ResultFrameView view = parse_result_frame(good_frame);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(9), view.chunk_id);
        CPPUNIT_ASSERT_EQUAL(std::size_t(2), view.outcomes.size());
        CPPUNIT_ASSERT_EQUAL(std::size_t(2), view.outcomes[0].result.size());
        CPPUNIT_ASSERT_EQUAL(std::string("E"), std::string(view.outcomes[1].error_type));
        CPPUNIT_ASSERT_EQUAL(std::string("text"), std::string(view.outcomes[1].error_text));

        const auto refused = [&](const std::vector<std::byte>& frame, const std::string& expected) {
            assert_contains(message_of<mproc::DecodeError>([&] { parse_result_frame(frame); }), expected);
        };
        refused(std::vector<std::byte>(10), "24-byte header");
        refused(frame_of(7, 0, {}), "frame kind 1 or 2, got 7");
        refused(frame_of(1, 0x7fffffff, good_body), "got a count of 2147483647");
        refused(frame_of(1, 3, good_body), "a record's status and length");
        std::vector<std::byte> long_length = good_body;
        long_length[1] = std::byte{0xff};
        long_length[4] = std::byte{0x7f};
        refused(frame_of(1, 2, long_length), "record length of at most");
        std::vector<std::byte> bad_status = good_body;
        bad_status[0] = std::byte{7};
        refused(frame_of(1, 2, bad_status), "status 0 or 1, got 7");
        std::vector<std::byte> trailing = good_body;
        trailing.push_back(std::byte{0});
        refused(frame_of(1, 2, trailing), "1 bytes left");
        refused(frame_of(2, 2, good_body), "one record in an init_failed frame");
        // Uniform frames: a stride and count × stride bytes, nothing else.
        std::vector<std::byte> uniform_body(4);
        const std::uint32_t stride = 3;
        std::memcpy(uniform_body.data(), &stride, 4);
        for (int i = 0; i < 6; ++i) uniform_body.push_back(static_cast<std::byte>(i));
        const auto uniform_frame = [&](std::uint32_t kind, std::uint32_t count, const std::vector<std::byte>& body) {
            std::vector<std::byte> frame = frame_of(kind, count, body);
            const std::uint32_t flags = kUniform;
            std::memcpy(frame.data() + offsetof(ResultFrameHeader, flags), &flags, 4);
            return frame;
        };
        const std::vector<std::byte> good_uniform_frame = uniform_frame(1, 2, uniform_body);
        const ResultFrameView uniform = parse_result_frame(good_uniform_frame);
        CPPUNIT_ASSERT(uniform.uniform && uniform.ok(1));
        CPPUNIT_ASSERT_EQUAL(std::to_integer<int>(uniform.result_of(1)[0]), 3);
        refused(uniform_frame(1, 3, uniform_body), "3 results of 3 bytes in the 6 bytes left");
        refused(uniform_frame(1, 0x55555556, uniform_body), "results of 3 bytes");
        refused(uniform_frame(2, 2, uniform_body), "no uniform init_failed frame");
        std::vector<std::byte> bad_flags = frame_of(1, 2, good_body);
        bad_flags[20] = std::byte{2};
        refused(bad_flags, "flags 0 or 1, got 2");
        std::vector<std::byte> type_too_long;
        append_error_record(type_too_long, "T", "");
        type_too_long[5] = std::byte{0x40};  // the type length
        refused(frame_of(1, 1, type_too_long), "error type length of at most");
    }
};

// ---------------------------------------------------------------------------------------------------------
// Crash suite: a map while a killer SIGKILLs a random worker every few milliseconds.

class PoolCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(PoolCrashTest);
    CPPUNIT_TEST(testUnderAKillStormEveryTaskResolvesExactlyOnce);
    CPPUNIT_TEST(testWithRetriesAKillStormLosesNoValue);
    CPPUNIT_TEST_SUITE_END();

public:
    struct StormResult {
        int kills = 0;
        std::size_t values = 0;
        std::size_t died = 0;
    };

    StormResult storm(unsigned retries, int tasks) {
        BoardScope board;
        PoolOptions options;
        options.processes = 3;
        options.retries = retries;
        Pool pool(options);
        std::vector<int> inputs(static_cast<std::size_t>(tasks));
        for (int i = 0; i < tasks; ++i) inputs[static_cast<std::size_t>(i)] = i;
        std::atomic<bool> stop{false};
        StormResult result;
        std::thread killer([&] {
            std::mt19937 random(static_cast<unsigned>(::getpid()));
            std::vector<pid_t> seen;
            // relaxed: stop only ends the loop; nothing is published with it.
            while (!stop.load(std::memory_order_relaxed)) {
                std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(1000, 5000)(random)));
                // Only workers that were already there at the last look: one still starting dies before it
                // began a chunk, and enough of those in a row break the pool (as they must).
                const std::vector<pid_t> now = pool.worker_pids();
                std::vector<pid_t> workers;
                for (const pid_t pid : now)
                    if (std::find(seen.begin(), seen.end(), pid) != seen.end()) workers.push_back(pid);
                seen = now;
                if (workers.empty()) continue;
                const pid_t victim = workers[std::uniform_int_distribution<std::size_t>(0, workers.size() - 1)(random)];
                // Only a worker on a CPU or waiting for one ('R'): one asleep is waiting for its next chunk
                // (or already dead, 'Z'), and a kill there would exercise only the re-sending of a chunk.
                if (mproc::test::process_state(victim) != 'R') continue;
                if (::kill(victim, SIGKILL) == 0) ++result.kills;
            }
        });
        auto results = pool.imap(counted, inputs, 16);
        const auto deadline = std::chrono::steady_clock::now() + 120s;
        for (int i = 0; i < tasks; ++i) {
            try {
                CPPUNIT_ASSERT_EQUAL(i, *results.next(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            deadline - std::chrono::steady_clock::now())));
                ++result.values;
            } catch (const mproc::WorkerDied& died) {
                CPPUNIT_ASSERT_EQUAL(static_cast<std::size_t>(i), died.task());
                ++result.died;
            }
            // Keep killing until enough deaths landed, then let the rest run through.
            if (result.kills >= 60) stop.store(true, std::memory_order_relaxed);  // relaxed: see the killer
        }
        stop.store(true, std::memory_order_relaxed);  // relaxed: see the killer
        killer.join();
        CPPUNIT_ASSERT(!results.next(1s).has_value());
        pool.close();
        pool.join();
        CPPUNIT_ASSERT(mproc::active_children().empty());
        return result;
    }

    void testUnderAKillStormEveryTaskResolvesExactlyOnce() {
        const int tasks = 40000;
        const StormResult result = storm(0, tasks);
        std::printf("\n  pool storm: %d kills, %zu values, %zu WorkerDied\n", result.kills, result.values, result.died);
        CPPUNIT_ASSERT_EQUAL(static_cast<std::size_t>(tasks), result.values + result.died);
        CPPUNIT_ASSERT(result.kills >= 50);
        CPPUNIT_ASSERT(result.died >= 1);
    }

    void testWithRetriesAKillStormLosesNoValue() {
        const int tasks = 40000;
        const StormResult result = storm(1000, tasks);
        std::printf("\n  pool storm with retries: %d kills, %zu values\n", result.kills, result.values);
        CPPUNIT_ASSERT_EQUAL(static_cast<std::size_t>(tasks), result.values);
        CPPUNIT_ASSERT(result.kills >= 50);
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PoolTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(PoolCrashTest, "crash");
