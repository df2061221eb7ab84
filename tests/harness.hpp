// tests/harness.hpp — what every mproc test builds on.
//
// - Suites: a fixture registers itself in the suite it belongs to with
//   CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(Fixture, "unit" | "stress" | "crash"); one binary per primitive
//   (tests/NAME_test.cpp) is registered as a Meson test once per suite it holds, and runner.cpp runs the
//   fixtures of the suite named on its command line.
// - Skips: MPROC_SKIP("reason") ends the current test as skipped. A binary whose tests all passed or skipped,
//   with at least one skipped, exits 77 (Meson's skip) after printing each reason: a missing kernel feature
//   never fails and never passes silently.
// - run_in_processes(n, body): body(i) runs in n forked children; the calling test fails when any child
//   fails an assertion, throws, crashes, or outlives the deadline (all children are then SIGKILLed).
// - run_in_threads(n, body): the same body on n threads, so ThreadSanitizer can check the algorithm.
// - Shared<T>, wait_for, wait_until_asleep, AlarmStorm, message_of…: the small tools the primitives' tests
//   share, each with a one-line note below saying what it is for.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include <sys/mman.h>
#include <sys/types.h>

#include <cppunit/extensions/HelperMacros.h>

#include "mproc/error.hpp"

namespace mproc::test {

// Thrown by MPROC_SKIP; deliberately not a std::exception so that no catch-all in the code under test
// mistakes it for a failure.
struct Skipped {
    std::string reason;
};

#define MPROC_SKIP(reason) throw ::mproc::test::Skipped{reason}

using namespace std::chrono_literals;

void run_in_processes(int count, const std::function<void(int index)>& body,
                      std::chrono::milliseconds deadline = 60s);

void run_in_threads(int count, const std::function<void(int index)>& body);

// Runs body in a forked child in which futex_waitv fails with EPERM, as it does under the seccomp profile of
// a container runtime written before the system call existed: for the tests of every primitive that sleeps
// in futex_waitv. Fails as run_in_processes does; skips the test when the filter cannot be installed.
void run_with_futex_waitv_refused(const std::function<void()>& body);

// A forked child running body, for tests that kill participants at chosen moments.
class ForkedChild {
public:
    explicit ForkedChild(const std::function<void()>& body);
    ForkedChild(const ForkedChild&) = delete;
    ForkedChild& operator=(const ForkedChild&) = delete;
    ~ForkedChild();  // SIGKILLs and reaps a child still running

    pid_t pid() const { return pid_; }
    void kill(int signal_number = 9);
    // Waits for the child to end and returns its raw wait status; fails the test past the deadline.
    int wait(std::chrono::milliseconds deadline = 60s);

private:
    pid_t pid_ = -1;
    int pidfd_ = -1;
    bool reaped_ = false;
};

// The state letter of /proc/PID/stat ('T' once a SIGSTOP took effect, 'Z' for a zombie), or 0 when the
// process is gone.
char process_state(pid_t pid);

// A name no other test run can be using, for named segments: "/mproc-test-<pid>-<counter>-<tag>".
std::string unique_name(const std::string& tag);

// Whether the build runs under ThreadSanitizer (whose runtime makes system calls of its own), or under any
// sanitizer that makes the code several times slower (stress tests then do fewer rounds).
// GCC names the sanitizers with macros, clang with __has_feature.
#if defined(__has_feature)
#define MPROC_TEST_HAS_FEATURE(feature) __has_feature(feature)
#else
#define MPROC_TEST_HAS_FEATURE(feature) 0
#endif
#if defined(__SANITIZE_THREAD__) || MPROC_TEST_HAS_FEATURE(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#if defined(__SANITIZE_ADDRESS__) || MPROC_TEST_HAS_FEATURE(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#undef MPROC_TEST_HAS_FEATURE
inline constexpr bool kSanitized = kThreadSanitizer || kAddressSanitizer;

// A T in a MAP_SHARED anonymous mapping: the same bytes in the test process and every child it forks.
// `size` bytes of MAP_SHARED anonymous memory (page-aligned, so aligned for every ring), shared with every
// child the test forks: for structures placed in caller memory (rings, raw locks).
struct SharedBytes {
    explicit SharedBytes(std::size_t size) : size(size) {
        memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) CPPUNIT_FAIL(std::string("mmap: ") + std::strerror(errno));
    }
    ~SharedBytes() { ::munmap(memory, size); }
    SharedBytes(const SharedBytes&) = delete;
    SharedBytes& operator=(const SharedBytes&) = delete;
    void* memory;
    std::size_t size;
};

template <class T>
class Shared {
public:
    Shared() {
        void* memory = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) CPPUNIT_FAIL(std::string("mmap: ") + std::strerror(errno));
        object_ = new (memory) T();
    }
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;
    ~Shared() {
        object_->~T();
        ::munmap(object_, sizeof(T));
    }
    T* operator->() const { return object_; }
    T& operator*() const { return *object_; }

private:
    T* object_;
};

// Waits until predicate() holds, looking every 100 us; fails the test with `what` after `limit`.
template <class Predicate>
void wait_for(Predicate predicate, const std::string& what, std::chrono::milliseconds limit = 10s) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (!predicate()) {
        if (std::chrono::steady_clock::now() > give_up) CPPUNIT_FAIL("timed out waiting for " + what);
        std::this_thread::sleep_for(100us);
    }
}

// Whether the thread `tid` (by default the main thread) of process `pid` is blocked in futex or futex_waitv
// now, read from /proc: how a test knows a waiter is asleep before it wakes or kills it.
bool asleep_in_futex(pid_t pid, pid_t tid = 0);

// Waits (10 s at most) until asleep_in_futex(pid, tid).
void wait_until_asleep(pid_t pid, pid_t tid = 0);

// How long fn() took, in whole milliseconds of the steady clock.
template <class Fn>
std::chrono::milliseconds elapsed_of(Fn&& fn) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

// CPU time the calling thread has used: with the wall time, tells a wait that slept from one that spun.
std::chrono::milliseconds thread_cpu_time();

// How long a wait took, and the CPU time the calling thread used meanwhile.
struct WaitTiming {
    std::chrono::milliseconds waited;
    std::chrono::milliseconds cpu;
};

template <class Fn>
WaitTiming timed_wait(Fn&& fn) {
    const std::chrono::milliseconds cpu_before = thread_cpu_time();
    const std::chrono::milliseconds waited = elapsed_of(std::forward<Fn>(fn));
    return {waited, thread_cpu_time() - cpu_before};
}

// The wait slept rather than spun: its CPU time is a small part of the wall time (a wait that re-checks
// in a loop burns all of it). Asserted after any helper thread is joined.
void assert_slept(const WaitTiming& timing);

// Fails unless `status` (from ForkedChild::wait) says the child exited with status 0.
void assert_exited_cleanly(int status);

// The what() of the Exception that body() throws; fails the test when it throws none.
template <class Exception, class Body>
std::string message_of(Body body) {
    try {
        body();
    } catch (const Exception& error) {
        return error.what();
    }
    CPPUNIT_FAIL("no exception was thrown");
    return {};
}

// For a move-only handle type H (Lock, Event, ...): fails unless use(h) on a default-constructed H moved from by
// construction, and on one moved from by assignment, throws mproc::StateError with exactly `expected_message`,
// while use() on the handle that received both moves succeeds.
template <class Handle, class Use>
void assert_moved_from_handles_refuse(const std::string& expected_message, Use use) {
    Handle original;
    Handle constructed(std::move(original));
    Handle assigned;
    assigned = std::move(constructed);
    CPPUNIT_ASSERT_EQUAL(expected_message, message_of<mproc::StateError>([&] { use(original); }));
    CPPUNIT_ASSERT_EQUAL(expected_message, message_of<mproc::StateError>([&] { use(constructed); }));
    use(assigned);
}

// Fails unless `part` occurs in `text`, quoting both.
void assert_contains(const std::string& text, const std::string& part);

// SIGALRM every 5 ms to this process, caught by a counting handler installed without SA_RESTART, so that a
// call blocked meanwhile keeps being interrupted with EINTR. Destruction (or stop()) stops the timer but leaves
// the counting handler: an alarm raised just before the stop may still arrive after it (valgrind delivers
// late), and the default action would kill the test. One storm at a time per process.
class AlarmStorm {
public:
    AlarmStorm();  // resets alarms_caught() to 0; fails the test when the handler or the timer cannot be set
    AlarmStorm(const AlarmStorm&) = delete;
    AlarmStorm& operator=(const AlarmStorm&) = delete;
    ~AlarmStorm() { stop(); }

    void stop();
    // Alarms caught since the last storm began; read it after stop() for the final count.
    static int alarms_caught();
};

// For ping-pong rounds: whether timed_wait(10s) (a call given a timeout that returns whether it got what it
// waited for) succeeded well within its timeout, in less than 5 s: a lost wake-up would otherwise show only as
// a waiter that finds what it waited for when its timeout ends.
template <class TimedWait>
bool succeeded_promptly(TimedWait timed_wait) {
    const auto started = std::chrono::steady_clock::now();
    return timed_wait(10s) && std::chrono::steady_clock::now() - started < 5s;
}

// For a timed wait that cannot succeed: fails unless timed_wait() (a call that blocks up to `timeout` and returns
// whether it got what it waited for) returns false, having taken at least `timeout` and less than 2 s more.
void assert_times_out_after(std::chrono::milliseconds timeout, const std::function<bool()>& timed_wait);

// The same under an AlarmStorm, which must interrupt the wait at least 5 times: the proof that EINTR neither
// ends a timed wait early nor restarts its full timeout.
void assert_signals_do_not_shorten(std::chrono::milliseconds timeout, const std::function<bool()>& timed_wait);

}  // namespace mproc::test
