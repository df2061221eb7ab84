// tests/wait_test.cpp — mproc::wait() over a shared-memory Pipe end, an FdConnection, an Event, a Queue,
// a Process and a raw fd: exact ready subsets, timeouts (zero, bounded, none), wake-ups from another
// process and from another thread through each kind, a peer's SIGKILL waking a wait on a Pipe end, and
// the mechanism each kind of set sleeps with.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <utility>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/wait.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::test::ForkedChild;
using Clock = std::chrono::steady_clock;
using Indices = std::vector<std::size_t>;

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
    mproc::Process process{[] { ::pause(); }};
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
};

template <class Fn>
std::chrono::milliseconds elapsed_of(Fn&& fn) {
    const auto start = Clock::now();
    fn();
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

std::chrono::milliseconds thread_cpu_now() {
    timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return std::chrono::milliseconds(std::int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000);
}

// How long a wait took, and the CPU time the calling thread used meanwhile.
struct WaitTiming {
    std::chrono::milliseconds waited;
    std::chrono::milliseconds cpu;
};

template <class Fn>
WaitTiming timed_wait(Fn&& fn) {
    const std::chrono::milliseconds cpu_before = thread_cpu_now();
    const std::chrono::milliseconds waited = elapsed_of(std::forward<Fn>(fn));
    return {waited, thread_cpu_now() - cpu_before};
}

// The wait slept rather than spun: its CPU time is a small part of the wall time (a wait that re-checks
// in a loop burns all of it). Asserted after any helper thread is joined.
void assert_slept(const WaitTiming& timing) {
    CPPUNIT_ASSERT_MESSAGE("the wait used " + std::to_string(timing.cpu.count()) + " ms of CPU in " +
                               std::to_string(timing.waited.count()) + " ms",
                           timing.cpu * 4 <= timing.waited + 20ms);
}

class WaitUnitTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(WaitUnitTest);
    CPPUNIT_TEST(testNothingReadyTimesOut);
    CPPUNIT_TEST(testZeroTimeoutChecksOnce);
    CPPUNIT_TEST(testEachKindAloneWakesAMixedWaitThreads);
    CPPUNIT_TEST(testReadySubsetIsExact);
    CPPUNIT_TEST(testPipeMessageFromAnotherProcessWakesFutexOnlyWait);
    CPPUNIT_TEST(testKilledPipePeerWakesWaitPromptly);
    CPPUNIT_TEST(testFdOnlySetSleepsInPpoll);
    CPPUNIT_TEST(testMixedSetReportsItsMechanism);
    CPPUNIT_TEST(testClosedQueueIsReady);
    CPPUNIT_TEST_SUITE_END();

public:
    void testNothingReadyTimesOut() {
        Everything all;
        std::vector<mproc::Waitable> objects = all.objects();
        Indices ready;
        const WaitTiming timing = timed_wait([&] { ready = mproc::wait(objects, 100ms); });
        assert_slept(timing);
        const auto waited = timing.waited;
        CPPUNIT_ASSERT_MESSAGE(text(ready), ready.empty());
        CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited >= 100ms && waited < 1500ms);
        CPPUNIT_ASSERT(mproc::wait({all.event}, 30ms).empty());  // futex-only
        CPPUNIT_ASSERT(mproc::wait({mproc::ReadableFd{all.raw.read_end}}, 30ms).empty());  // fd-only
    }

    void testZeroTimeoutChecksOnce() {
        Everything all;
        std::vector<mproc::Waitable> objects = all.objects();
        CPPUNIT_ASSERT(mproc::wait(objects, 0ns).empty());
        CPPUNIT_ASSERT(mproc::wait(objects, -1s).empty());
        CPPUNIT_ASSERT(mproc::last_wait_mechanism() == mproc::WaitMechanism::none);
        all.make_ready(2);
        CPPUNIT_ASSERT(mproc::wait(objects, 0ns) == Indices{2});
    }

    void testEachKindAloneWakesAMixedWaitThreads() {
        for (std::size_t index = 0; index < 6; ++index) {
            Everything all;
            std::vector<mproc::Waitable> objects = all.objects();
            std::thread later([&] {
                std::this_thread::sleep_for(50ms);
                all.make_ready(index);
            });
            Indices ready;
            const WaitTiming timing = timed_wait([&] { ready = mproc::wait(objects, 10s); });
            later.join();
            assert_slept(timing);
            const auto waited = timing.waited;
            CPPUNIT_ASSERT_MESSAGE("object " + std::to_string(index) + ": " + text(ready), ready == Indices{index});
            CPPUNIT_ASSERT_MESSAGE("object " + std::to_string(index) + " woke after " + std::to_string(waited.count()) +
                                       " ms",
                                   waited >= 40ms && waited < 2000ms);
        }
    }

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
        assert_slept(timing);
        const auto waited = timing.waited;
        CPPUNIT_ASSERT_MESSAGE(text(ready), ready == Indices{1});
        CPPUNIT_ASSERT(waited >= 90ms && waited < 2000ms);
        CPPUNIT_ASSERT(mproc::last_wait_mechanism() == mproc::WaitMechanism::futex_waitv ||
                       mproc::last_wait_mechanism() == mproc::WaitMechanism::futex_recheck);
        CPPUNIT_ASSERT(parent.recv_bytes() == bytes(10));
        child.wait();
    }

    void testKilledPipePeerWakesWaitPromptly() {
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
        Indices ready;
        const WaitTiming timing = timed_wait([&] { ready = mproc::wait({event, parent}, 10s); });
        killer.join();
        assert_slept(timing);
        const auto waited = timing.waited;
        CPPUNIT_ASSERT_MESSAGE(text(ready), ready == Indices{1});
        CPPUNIT_ASSERT_MESSAGE(std::to_string(waited.count()) + " ms", waited >= 90ms && waited < 2000ms);
        // The peer is dead: a mixed set holding the end is ready at once.
        CPPUNIT_ASSERT(mproc::wait({event, mproc::ReadableFd{raw.read_end}, parent}, 10s) == Indices{2});
        CPPUNIT_ASSERT_THROW(parent.recv_bytes(), mproc::Closed);
        child.wait();
    }

    void testFdOnlySetSleepsInPpoll() {
        RawPipe raw;
        auto ends = mproc::fd_pipe();
        auto& left = ends.first;
        auto& right = ends.second;
        std::thread later([&] {
            std::this_thread::sleep_for(50ms);
            right.send_bytes(bytes(2));
        });
        CPPUNIT_ASSERT(mproc::wait({mproc::ReadableFd{raw.read_end}, left}, 10s) == Indices{1});
        later.join();
        CPPUNIT_ASSERT(mproc::last_wait_mechanism() == mproc::WaitMechanism::ppoll);
    }

    void testMixedSetReportsItsMechanism() {
        RawPipe raw;
        mproc::Event event;
        std::thread later([&] {
            std::this_thread::sleep_for(50ms);
            event.set();
        });
        Indices ready;
        const WaitTiming timing =
            timed_wait([&] { ready = mproc::wait({mproc::ReadableFd{raw.read_end}, event}, 10s); });
        later.join();
        assert_slept(timing);
        const auto waited = timing.waited;
        CPPUNIT_ASSERT(ready == Indices{1});
        const mproc::WaitMechanism mechanism = mproc::last_wait_mechanism();
        CPPUNIT_ASSERT_MESSAGE(std::string(mproc::wait_mechanism_name(mechanism)),
                               mechanism == mproc::WaitMechanism::io_uring ||
                                   mechanism == mproc::WaitMechanism::ppoll_recheck);
        CPPUNIT_ASSERT(waited < 2000ms);
        if (mechanism != mproc::WaitMechanism::io_uring)
            MPROC_SKIP("io_uring FUTEX_WAIT unavailable: the mixed set used " +
                       std::string(mproc::wait_mechanism_name(mechanism)));
    }

    void testClosedQueueIsReady() {
        mproc::ByteQueue queue(16);
        mproc::Event event;
        std::thread later([&] {
            std::this_thread::sleep_for(50ms);
            queue.close();
        });
        CPPUNIT_ASSERT(mproc::wait({event, queue}, 10s) == Indices{1});
        later.join();
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(WaitUnitTest, "unit");
