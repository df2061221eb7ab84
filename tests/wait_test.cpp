// tests/wait_test.cpp — mproc::wait() over a shared-memory Pipe end, an FdConnection, an Event, a Queue,
// a Process and a raw fd: exact ready subsets, timeouts (zero, bounded, none), wake-ups from another
// process and from another thread through each kind in mixed, futex-only and fd-only sets, a peer's SIGKILL
// waking a wait on a Pipe end, and the mechanism each kind of set sleeps with.
// Every test runs once per sleeping backend (wait_backend.hpp): io_uring FUTEX_WAIT + POLL_ADD with
// futex_waitv, futex_waitv with the ppoll re-check for mixed sets, and the FUTEX_WAIT / ppoll re-check
// fallbacks alone; a backend the kernel lacks is skipped with the reason.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <functional>
#include <utility>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/wait.hpp"
#include "wait_backend.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::test::ForkedChild;
using Clock = std::chrono::steady_clock;
using Indices = std::vector<std::size_t>;
using mproc::WaitMechanism;
using mproc::detail::WaitBackend;

std::vector<std::byte> bytes(std::size_t size) { return std::vector<std::byte>(size, std::byte{0x5a}); }

struct RawPipe {
    int read_end = -1;
    int write_end = -1;
    RawPipe() {
        int fds[2];
        CPPUNIT_ASSERT_EQUAL(0, ::pipe2(fds, O_CLOEXEC));
        read_end = fds[0];
        write_end = fds[1];
    }
    ~RawPipe() {
        ::close(read_end);
        ::close(write_end);
    }
    void put_byte() const { CPPUNIT_ASSERT_EQUAL(ssize_t(1), ::write(write_end, "x", 1)); }
};

std::string text(const Indices& indices) {
    std::string out = "{";
    for (std::size_t index : indices) out += std::to_string(index) + ",";
    return out + "}";
}

// All six kinds, indexed: 0 pipe end, 1 fd connection, 2 event, 3 queue, 4 process, 5 raw fd.
struct Everything {
    std::pair<mproc::PipeConnection, mproc::PipeConnection> pipe = mproc::Pipe();
    std::pair<mproc::FdConnection, mproc::FdConnection> fd_connection = mproc::fd_pipe();
    mproc::Event event;
    mproc::Queue<int> queue{16};
    // daemon: dies with the test process even when a sanitizer ends it before the destructor runs.
    mproc::Process process{mproc::ProcessOptions{"", true}, [] { ::pause(); }};
    RawPipe raw;

    Everything() { process.start(); }
    ~Everything() {
        if (process.is_alive()) process.kill();
        process.join();
    }
    std::vector<mproc::Waitable> objects() {
        return {pipe.first, fd_connection.first, event, queue, process, mproc::ReadableFd{raw.read_end}};
    }
    void make_ready(std::size_t index) {
        switch (index) {
        case 0: pipe.second.send_bytes(bytes(3)); break;
        case 1: fd_connection.second.send_bytes(bytes(3)); break;
        case 2: event.set(); break;
        case 3: queue.put(7); break;
        case 4: process.kill(); break;
        case 5: raw.put_byte(); break;
        default: CPPUNIT_FAIL("no such object");
        }
    }
    // The same from a forked child, where the inherited Process handle refuses kill(): by its pid.
    void make_ready_from_another_process(std::size_t index) {
        if (index == 4) CPPUNIT_ASSERT_EQUAL(0, ::kill(process.pid(), SIGKILL));
        else make_ready(index);
    }
};

constexpr std::size_t kPipeEnd = 0, kFdConnection = 1, kEvent = 2, kQueue = 3, kProcess = 4, kRawFd = 5;
const Indices kAllKinds = {kPipeEnd, kFdConnection, kEvent, kQueue, kProcess, kRawFd};
const Indices kFutexKinds = {kPipeEnd, kEvent, kQueue};
const Indices kFdKinds = {kFdConnection, kProcess, kRawFd};

std::string name_of(WaitMechanism mechanism) { return std::string(mproc::wait_mechanism_name(mechanism)); }

std::string name_of(WaitBackend backend) {
    switch (backend) {
    case WaitBackend::automatic: return "automatic";
    case WaitBackend::io_uring: return "io_uring";
    case WaitBackend::futex_waitv: return "futex_waitv";
    case WaitBackend::poll: return "poll";
    }
    return "unknown";
}

std::vector<mproc::Waitable> objects_of(Everything& all, const Indices& kinds) {
    const std::vector<mproc::Waitable> every = all.objects();
    std::vector<mproc::Waitable> chosen;
    for (std::size_t kind : kinds) chosen.push_back(every[kind]);
    return chosen;
}

// The tests of wait(), run once per sleeping backend by the fixtures registered at the end (never alone).
class WaitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(WaitTest);
    CPPUNIT_TEST(testNothingReadyTimesOutInEverySetKind);
    CPPUNIT_TEST(testZeroTimeoutChecksOnce);
    CPPUNIT_TEST(testEachKindWakesAMixedWaitThreads);
    CPPUNIT_TEST(testEachKindWakesAMixedWaitFromAnotherProcess);
    CPPUNIT_TEST(testEachFutexKindWakesAFutexOnlyWaitThreads);
    CPPUNIT_TEST(testEachFutexKindWakesAFutexOnlyWaitFromAnotherProcess);
    CPPUNIT_TEST(testEachFdKindWakesAnFdOnlyWaitThreads);
    CPPUNIT_TEST(testReadySubsetIsExact);
    CPPUNIT_TEST(testPipeMessageFromAnotherProcessWakesFutexOnlyWait);
    CPPUNIT_TEST(testKilledPipePeerWakesFutexOnlyWaitPromptly);
    CPPUNIT_TEST(testKilledPipePeerWakesMixedWaitPromptly);
    CPPUNIT_TEST(testClosedQueueIsReady);
    CPPUNIT_TEST(testSpscSlotLeftUnpublishedIsNotReady);
    CPPUNIT_TEST_SUITE_END();

public:
    explicit WaitTest(WaitBackend backend = WaitBackend::automatic) : backend_(backend) {}

    void setUp() override {
        const std::string reason = mproc::detail::wait_backend_unavailable_reason(backend_);
        if (!reason.empty()) MPROC_SKIP("the " + name_of(backend_) + " backend: " + reason);
        mproc::detail::force_wait_backend(backend_);
    }

    void tearDown() override { mproc::detail::force_wait_backend(WaitBackend::automatic); }

    void testNothingReadyTimesOutInEverySetKind() {
        for (const Indices& kinds : {kAllKinds, kFutexKinds, kFdKinds}) {
            Everything all;
            const std::vector<mproc::Waitable> objects = objects_of(all, kinds);
            Indices ready;
            const WaitTiming timing = timed_wait([&] { ready = mproc::wait(objects, 100ms); });
            const std::string what = "set " + text(kinds);
            assert_mechanism(mechanism_for(kinds), what);
            assert_slept(timing);
            CPPUNIT_ASSERT_MESSAGE(what + ": " + text(ready), ready.empty());
            CPPUNIT_ASSERT_MESSAGE(what + ": " + std::to_string(timing.waited.count()) + " ms",
                                   timing.waited >= 100ms && timing.waited < 1500ms);
        }
    }

    void testZeroTimeoutChecksOnce() {
        Everything all;
        std::vector<mproc::Waitable> objects = all.objects();
        CPPUNIT_ASSERT(mproc::wait(objects, 0ns).empty());
        CPPUNIT_ASSERT(mproc::wait(objects, -1s).empty());
        CPPUNIT_ASSERT(mproc::last_wait_mechanism() == WaitMechanism::none);
        all.make_ready(kEvent);
        CPPUNIT_ASSERT(mproc::wait(objects, 0ns) == Indices{kEvent});
    }

    void testEachKindWakesAMixedWaitThreads() { check_each_kind_wakes(kAllKinds, Waker::thread); }
    void testEachKindWakesAMixedWaitFromAnotherProcess() { check_each_kind_wakes(kAllKinds, Waker::process); }
    void testEachFutexKindWakesAFutexOnlyWaitThreads() { check_each_kind_wakes(kFutexKinds, Waker::thread); }
    void testEachFutexKindWakesAFutexOnlyWaitFromAnotherProcess() {
        check_each_kind_wakes(kFutexKinds, Waker::process);
    }
    void testEachFdKindWakesAnFdOnlyWaitThreads() { check_each_kind_wakes(kFdKinds, Waker::thread); }

    void testReadySubsetIsExact() {
        Everything all;
        std::vector<mproc::Waitable> objects = all.objects();
        all.make_ready(5);
        all.make_ready(0);
        all.make_ready(3);
        CPPUNIT_ASSERT(mproc::wait(objects, 1s) == (Indices{0, 3, 5}));
        all.make_ready(1);
        all.make_ready(4);
        all.process.join();
        all.make_ready(2);
        CPPUNIT_ASSERT(mproc::wait(objects, std::nullopt) == (Indices{0, 1, 2, 3, 4, 5}));
        // Taking what was ready makes it unready again (level-triggered).
        all.pipe.first.recv_bytes();
        all.queue.get();
        all.event.clear();
        CPPUNIT_ASSERT(mproc::wait(objects, 0ns) == (Indices{1, 4, 5}));
    }

    void testPipeMessageFromAnotherProcessWakesFutexOnlyWait() {
        auto ends = mproc::Pipe();  // named members: a lambda cannot capture a structured binding in C++20
        auto& parent = ends.first;
        auto& child_end = ends.second;
        mproc::Event event;
        ForkedChild child([&] {
            child_end.adopt();
            std::this_thread::sleep_for(100ms);
            child_end.send_bytes(bytes(10));
        });
        Indices ready;
        const WaitTiming timing = timed_wait([&] { ready = mproc::wait({event, parent}, 10s); });
        assert_mechanism(futex_only_mechanism(), "event and pipe end");
        assert_slept(timing);
        const auto waited = timing.waited;
        CPPUNIT_ASSERT_MESSAGE(text(ready), ready == Indices{1});
        CPPUNIT_ASSERT(waited >= 90ms && waited < 2000ms);
        CPPUNIT_ASSERT(parent.recv_bytes() == bytes(10));
        child.wait();
    }

    void testKilledPipePeerWakesFutexOnlyWaitPromptly() { check_killed_peer_wakes(false); }
    void testKilledPipePeerWakesMixedWaitPromptly() { check_killed_peer_wakes(true); }

    void testClosedQueueIsReady() {
        mproc::ByteQueue queue(16);
        mproc::Event event;
        std::thread later([&] {
            std::this_thread::sleep_for(50ms);
            queue.close();
        });
        CPPUNIT_ASSERT(mproc::wait({event, queue}, 10s) == Indices{1});
        later.join();
        assert_mechanism(futex_only_mechanism(), "event and closed queue");
    }

    // An SPSC queue whose producer died after moving its index over a slot but before publishing it has
    // qsize() 1 and nothing to get: wait() must sleep (it spun, returning the queue as ready, when
    // readiness was qsize() > 0), and wake when the next put publishes the slot as skipped and a message.
    void testSpscSlotLeftUnpublishedIsNotReady() {
        mproc::Queue<int> queue(4, mproc::QueueKind::spsc);
        queue.put(1);
        CPPUNIT_ASSERT_EQUAL(1, queue.get());
        std::atomic_ref(queue.core().control().producer.position).fetch_add(1, std::memory_order_release);  // the death
        CPPUNIT_ASSERT_EQUAL(std::size_t{1}, queue.qsize());
        Indices ready;
        const WaitTiming timing = timed_wait([&] { ready = mproc::wait({queue}, 100ms); });
        assert_slept(timing);
        CPPUNIT_ASSERT_MESSAGE(text(ready), ready.empty());
        std::thread replacement([&] {
            std::this_thread::sleep_for(50ms);
            queue.put(2);
        });
        CPPUNIT_ASSERT(mproc::wait({queue}, 10s) == Indices{0});
        replacement.join();
        CPPUNIT_ASSERT_EQUAL(2, queue.get(false));
    }

private:
    enum class Waker { thread, process };

    WaitMechanism futex_only_mechanism() const {
        return backend_ == WaitBackend::poll ? WaitMechanism::futex_recheck : WaitMechanism::futex_waitv;
    }
    WaitMechanism mixed_mechanism() const {
        return backend_ == WaitBackend::io_uring ? WaitMechanism::io_uring : WaitMechanism::ppoll_recheck;
    }
    WaitMechanism mechanism_for(const Indices& kinds) const {
        if (kinds == kFutexKinds) return futex_only_mechanism();
        if (kinds == kFdKinds) return WaitMechanism::ppoll;
        return mixed_mechanism();
    }
    void assert_mechanism(WaitMechanism expected, const std::string& what) const {
        const WaitMechanism used = mproc::last_wait_mechanism();
        CPPUNIT_ASSERT_MESSAGE(what + ": the " + name_of(backend_) + " backend slept with " + name_of(used) +
                                   ", expected " + name_of(expected),
                               used == expected);
    }

    // For each kind in the set: only that object is made ready, 50 ms into the wait, by another thread or a
    // forked child; the wait returns exactly that object, promptly, having slept with the backend's mechanism.
    void check_each_kind_wakes(const Indices& kinds, Waker waker) {
        for (std::size_t position = 0; position < kinds.size(); ++position) {
            const std::size_t kind = kinds[position];
            Everything all;
            const std::vector<mproc::Waitable> objects = objects_of(all, kinds);
            // When the waker made the object ready (steady_clock is CLOCK_MONOTONIC, one clock for every
            // process): wait() must return after it. Timing the wait from here instead would start late
            // whenever the parent runs after the waker's 50 ms sleep began.
            Shared<std::atomic<std::int64_t>> made_ready_at;
            auto stamp = [&] {
                // release: pairs with the acquire below; the stamp is written before the object is made ready.
                made_ready_at->store(Clock::now().time_since_epoch().count(), std::memory_order_release);
            };
            std::optional<std::thread> thread;
            std::optional<ForkedChild> child;
            if (waker == Waker::thread) {
                thread.emplace([&] {
                    std::this_thread::sleep_for(50ms);
                    stamp();
                    all.make_ready(kind);
                });
            } else {
                child.emplace([&] {
                    std::this_thread::sleep_for(50ms);
                    stamp();
                    all.make_ready_from_another_process(kind);
                });
            }
            Indices ready;
            const WaitTiming timing = timed_wait([&] { ready = mproc::wait(objects, 10s); });
            const std::int64_t returned_at = Clock::now().time_since_epoch().count();
            // acquire: pairs with stamp(); 0 means wait() returned before the waker made anything ready.
            const std::int64_t ready_at = made_ready_at->load(std::memory_order_acquire);
            if (thread) thread->join();
            if (child) {
                const int status = child->wait(10s);
                CPPUNIT_ASSERT_MESSAGE("waker status " + std::to_string(status), status == 0);
            }
            const std::string what = "object " + std::to_string(kind) + " in set " + text(kinds);
            assert_mechanism(mechanism_for(kinds), what);
            assert_slept(timing);
            CPPUNIT_ASSERT_MESSAGE(what + ": " + text(ready), ready == Indices{position});
            CPPUNIT_ASSERT_MESSAGE(what + ": wait() returned before the object was made ready",
                                   ready_at != 0 && returned_at >= ready_at);
            CPPUNIT_ASSERT_MESSAGE(what + " woke after " + std::to_string(timing.waited.count()) + " ms",
                                   timing.waited < 2000ms);
        }
    }

    void check_killed_peer_wakes(bool mixed) {
        auto ends = mproc::Pipe();
        auto& parent = ends.first;
        auto& child_end = ends.second;
        mproc::Event event;
        RawPipe raw;
        ForkedChild child([&] {
            child_end.adopt();
            child_end.send_bytes(bytes(1));
            ::pause();
        });
        CPPUNIT_ASSERT(parent.recv_bytes() == bytes(1));
        child_end.close();
        std::thread killer([&] {
            std::this_thread::sleep_for(100ms);
            child.kill(SIGKILL);
        });
        const std::vector<mproc::Waitable> objects =
            mixed ? std::vector<mproc::Waitable>{event, mproc::ReadableFd{raw.read_end}, parent}
                  : std::vector<mproc::Waitable>{event, parent};
        const std::size_t pipe_index = objects.size() - 1;
        Indices ready;
        const WaitTiming timing = timed_wait([&] { ready = mproc::wait(objects, 10s); });
        killer.join();
        assert_mechanism(mixed ? mixed_mechanism() : futex_only_mechanism(), mixed ? "mixed set" : "futex-only set");
        assert_slept(timing);
        CPPUNIT_ASSERT_MESSAGE(text(ready), ready == Indices{pipe_index});
        CPPUNIT_ASSERT_MESSAGE(std::to_string(timing.waited.count()) + " ms",
                               timing.waited >= 90ms && timing.waited < 2000ms);
        // The peer is dead: the same set is ready at once.
        CPPUNIT_ASSERT(mproc::wait(objects, 10s) == Indices{pipe_index});
        CPPUNIT_ASSERT_THROW(parent.recv_bytes(), mproc::Closed);
        child.wait();
    }

    WaitBackend backend_;
};

// io_uring FUTEX_WAIT + POLL_ADD for mixed sets, futex_waitv for futex-only sets: the best paths.
class WaitOverIoUringTest : public WaitTest {
    CPPUNIT_TEST_SUB_SUITE(WaitOverIoUringTest, WaitTest);
    CPPUNIT_TEST_SUITE_END();

public:
    WaitOverIoUringTest() : WaitTest(WaitBackend::io_uring) {}
};

// Without io_uring: mixed sets in ppoll with the futex objects re-checked every kWaitRecheckInterval.
class WaitOverFutexWaitvTest : public WaitTest {
    CPPUNIT_TEST_SUB_SUITE(WaitOverFutexWaitvTest, WaitTest);
    CPPUNIT_TEST_SUITE_END();

public:
    WaitOverFutexWaitvTest() : WaitTest(WaitBackend::futex_waitv) {}
};

// Neither: futex-only sets in FUTEX_WAIT on their first word, re-checking all of them, as on kernels
// before 5.16.
class WaitOverPollTest : public WaitTest {
    CPPUNIT_TEST_SUB_SUITE(WaitOverPollTest, WaitTest);
    CPPUNIT_TEST_SUITE_END();

public:
    WaitOverPollTest() : WaitTest(WaitBackend::poll) {}
};

// wait() where futex_waitv exists but a seccomp filter refuses it: it must sleep another way, not loop.
class WaitUnderSeccompTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(WaitUnderSeccompTest);
    CPPUNIT_TEST(testFutexWaitvRefusedByASeccompFilterFallsBackToSleeping);
    CPPUNIT_TEST_SUITE_END();

public:
    void testFutexWaitvRefusedByASeccompFilterFallsBackToSleeping() {
        const std::string reason = mproc::detail::wait_backend_unavailable_reason(WaitBackend::futex_waitv);
        if (!reason.empty()) MPROC_SKIP("futex_waitv: " + reason + "; nothing for a filter to refuse");
        run_with_futex_waitv_refused([&] {
            const std::string refused = mproc::detail::wait_backend_unavailable_reason(WaitBackend::futex_waitv);
            CPPUNIT_ASSERT_MESSAGE("reason given: '" + refused + "'",
                                   refused.find("refused") != std::string::npos &&
                                       refused.find(std::strerror(EPERM)) != std::string::npos);

            mproc::Event event;
            const std::vector<mproc::Waitable> objects = {event};
            Indices ready;
            const WaitTiming timing = timed_wait([&] { ready = mproc::wait(objects, 300ms); });
            CPPUNIT_ASSERT_MESSAGE(text(ready), ready.empty());
            assert_slept(timing);
            CPPUNIT_ASSERT_EQUAL(name_of(WaitMechanism::futex_recheck), name_of(mproc::last_wait_mechanism()));
            CPPUNIT_ASSERT_MESSAGE(std::to_string(timing.waited.count()) + " ms", timing.waited >= 300ms);

            std::thread setter([&] {
                std::this_thread::sleep_for(50ms);
                event.set();
            });
            const std::chrono::milliseconds waited = elapsed_of([&] { ready = mproc::wait(objects, 10s); });
            setter.join();
            CPPUNIT_ASSERT_EQUAL(text({0}), text(ready));
            CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited < 5s);
        });
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(WaitUnderSeccompTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(WaitOverIoUringTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(WaitOverFutexWaitvTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(WaitOverPollTest, "unit");
