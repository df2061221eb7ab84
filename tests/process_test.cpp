// tests/process_test.cpp — mproc::Process: exit codes, errors, join timeouts under signals, sentinel, names,
// current_process, fork hygiene (atexit, stdio), misuse, moves, nesting ("unit"); what the death of a parent
// does to daemon and non-daemon children, and what destroying a running Process does ("crash").
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/process.hpp"

namespace {

using namespace std::chrono_literals;
using namespace mproc::test;
using mproc::Process;
using mproc::ProcessOptions;
using mproc::StateError;
using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC on Linux, the clock join(timeout) measures on

std::string errno_text(const char* call) { return std::string(call) + ": " + std::strerror(errno); }

ProcessOptions daemon_options() {
    ProcessOptions options;
    options.daemon = true;
    return options;
}

// A pipe both ends of which close with the object.
struct Pipe {
    int read_fd = -1;
    int write_fd = -1;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) CPPUNIT_FAIL(errno_text("pipe2"));
        read_fd = fds[0];
        write_fd = fds[1];
    }
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() {
        close_read();
        close_write();
    }
    void close_read() {
        if (read_fd >= 0) ::close(read_fd);
        read_fd = -1;
    }
    void close_write() {
        if (write_fd >= 0) ::close(write_fd);
        write_fd = -1;
    }
};

// Holds a child in fn until the test lets it go: pass() in the child blocks until open() in the test.
struct Gate {
    Pipe pipe;
    void pass() const {
        char byte;
        while (::read(pipe.read_fd, &byte, 1) < 0 && errno == EINTR) {
        }
    }
    void open() const {
        while (::write(pipe.write_fd, "g", 1) < 0 && errno == EINTR) {
        }
    }
};

template <std::size_t N>
void copy_text(char (&destination)[N], const std::string& text) {
    std::size_t length = std::min(text.size(), N - 1);
    std::memcpy(destination, text.data(), length);
    destination[length] = '\0';
}

[[noreturn]] void wait_forever() {
    for (;;) ::pause();
}

int exit_code_of(Process& process) {
    std::optional<int> code = process.exitcode();
    CPPUNIT_ASSERT_MESSAGE("process '" + process.name() + "' has no exit code yet", code.has_value());
    return *code;
}

void assert_exited_cleanly(Process& process) {
    CPPUNIT_ASSERT_EQUAL_MESSAGE("child error text: " + process.error(), 0, exit_code_of(process));
}

// True when every write end of the pipe closed (EOF) before the deadline; data read on the way is appended
// to received when given.
bool wait_for_eof(int read_fd, std::chrono::milliseconds deadline, std::string* received = nullptr) {
    const Clock::time_point give_up_at = Clock::now() + deadline;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up_at - Clock::now());
        if (left.count() <= 0) return false;
        pollfd fd{read_fd, POLLIN, 0};
        int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) CPPUNIT_FAIL(errno_text("poll"));
        if (ready <= 0) continue;
        char buffer[64];
        ssize_t got = ::read(read_fd, buffer, sizeof buffer);
        if (got == 0) return true;
        if (got > 0 && received) received->append(buffer, static_cast<std::size_t>(got));
        if (got < 0 && errno != EINTR) CPPUNIT_FAIL(errno_text("read"));
    }
}

// Reads exactly sizeof(T) bytes, failing the test past the deadline.
template <class T>
T read_value(int read_fd, std::chrono::milliseconds deadline) {
    T value{};
    auto* bytes = reinterpret_cast<char*>(&value);
    std::size_t have = 0;
    const Clock::time_point give_up_at = Clock::now() + deadline;
    while (have < sizeof(T)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up_at - Clock::now());
        CPPUNIT_ASSERT_MESSAGE("no value arrived on the pipe within the deadline", left.count() > 0);
        pollfd fd{read_fd, POLLIN, 0};
        if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
        ssize_t got = ::read(read_fd, bytes + have, sizeof(T) - have);
        CPPUNIT_ASSERT_MESSAGE("the pipe closed before the value arrived", got != 0);
        if (got > 0) have += static_cast<std::size_t>(got);
    }
    return value;
}

bool was_reaped(pid_t pid) {
    int status;
    return ::waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD;
}

// What the atexit handler and the static destructor below write to, while a test sets it.
int exit_witness_fd = -1;

void write_exit_witness(char mark) {
    if (exit_witness_fd >= 0) {
        ssize_t ignored = ::write(exit_witness_fd, &mark, 1);
        (void)ignored;
    }
}

struct WritesWhenDestroyed {
    ~WritesWhenDestroyed() { write_exit_witness('d'); }
} writes_when_destroyed;

class ProcessTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ProcessTest);
    CPPUNIT_TEST(testReturningTargetGivesExitCodeZero);
    CPPUNIT_TEST(testEscapingExceptionGivesExitCodeOneAndItsText);
    CPPUNIT_TEST(testNonStandardExceptionGivesExitCodeOneAndFixedText);
    CPPUNIT_TEST(testLongErrorTextIsCutAtTheLimit);
    CPPUNIT_TEST(testExitCallInTargetGivesItsStatus);
    CPPUNIT_TEST(testTerminateGivesMinusSigterm);
    CPPUNIT_TEST(testKillGivesMinusSigkill);
    CPPUNIT_TEST(testChildKilledBySegfaultGivesMinusSigsegv);
    CPPUNIT_TEST(testExitcodeIsEmptyWhileRunning);
    CPPUNIT_TEST(testJoinWithTimeoutWaitsTheTimeoutThenSeesTheEnd);
    CPPUNIT_TEST(testJoinIsNotShortenedByInterruptingSignals);
    CPPUNIT_TEST(testZeroOrNegativeTimeoutChecksWithoutBlocking);
    CPPUNIT_TEST(testSentinelBecomesReadableExactlyWhenChildEnds);
    CPPUNIT_TEST(testDefaultNamesCountEveryCreatedProcess);
    CPPUNIT_TEST(testCurrentProcessOutsideChildrenIsMainProcess);
    CPPUNIT_TEST(testCurrentProcessInChildIsItsProcess);
    CPPUNIT_TEST(testArgumentsAreCopiedAtConstruction);
    CPPUNIT_TEST(testParentAtexitAndStaticDestructorsDoNotRunInChild);
    CPPUNIT_TEST(testBufferedStdioIsWrittenOnceByEachSide);
    CPPUNIT_TEST(testStartTwiceThrowsStateError);
    CPPUNIT_TEST(testCallsBeforeStartThrowStateError);
    CPPUNIT_TEST(testChangingNameOrDaemonAfterStartThrowsStateError);
    CPPUNIT_TEST(testEmptyTargetThrowsValueError);
    CPPUNIT_TEST(testOnlyTheCreatingProcessStartsAndJoins);
    CPPUNIT_TEST(testSignalsAfterTheEndDoNothing);
    CPPUNIT_TEST(testMovedFromProcessIsInert);
    CPPUNIT_TEST(testMoveAssignmentReleasesTheChildItHeld);
    CPPUNIT_TEST(testNestedProcessRunsInChildAndCountsFromOne);
    CPPUNIT_TEST_SUITE_END();

public:
    void testReturningTargetGivesExitCodeZero() {
        Process process([] {});
        process.start();
        process.join();
        CPPUNIT_ASSERT_EQUAL(0, exit_code_of(process));
        CPPUNIT_ASSERT_EQUAL(std::string(), process.error());
        CPPUNIT_ASSERT(!process.is_alive());
    }

    void testEscapingExceptionGivesExitCodeOneAndItsText() {
        Process process([] { throw std::runtime_error("queue 'jobs': put: disk full"); });
        process.start();
        process.join();
        CPPUNIT_ASSERT_EQUAL(1, exit_code_of(process));
        CPPUNIT_ASSERT_EQUAL(std::string("queue 'jobs': put: disk full"), process.error());
    }

    void testNonStandardExceptionGivesExitCodeOneAndFixedText() {
        Process process([] { throw 42; });
        process.start();
        process.join();
        CPPUNIT_ASSERT_EQUAL(1, exit_code_of(process));
        CPPUNIT_ASSERT_EQUAL(std::string(Process::kNonStandardExceptionText), process.error());
    }

    void testLongErrorTextIsCutAtTheLimit() {
        std::string text;
        for (int i = 0; text.size() < 100000; ++i) text += std::to_string(i) + ",";
        // A daemon, so that a child stuck in its write is killed, not joined, when the assertion fails.
        Process process(daemon_options(), [text] { throw std::runtime_error(text); });
        process.start();
        CPPUNIT_ASSERT_MESSAGE("the child blocked writing its error text", process.join(20s));
        CPPUNIT_ASSERT_EQUAL(1, exit_code_of(process));
        CPPUNIT_ASSERT_EQUAL(text.substr(0, Process::kErrorTextLimit), process.error());
    }

    void testExitCallInTargetGivesItsStatus() {
        Process process([] { ::_exit(3); });
        process.start();
        process.join();
        CPPUNIT_ASSERT_EQUAL(3, exit_code_of(process));
        CPPUNIT_ASSERT_EQUAL(std::string(), process.error());
    }

    void testTerminateGivesMinusSigterm() {
        Process process(daemon_options(), wait_forever);
        process.start();
        process.terminate();
        CPPUNIT_ASSERT(process.join(20s));
        CPPUNIT_ASSERT_EQUAL(-SIGTERM, exit_code_of(process));
    }

    void testKillGivesMinusSigkill() {
        Process process(daemon_options(), wait_forever);
        process.start();
        process.kill();
        CPPUNIT_ASSERT(process.join(20s));
        CPPUNIT_ASSERT_EQUAL(-SIGKILL, exit_code_of(process));
    }

    void testChildKilledBySegfaultGivesMinusSigsegv() {
        Process process([] {
            // No core file, and the default action even where a sanitizer catches SIGSEGV.
            rlimit no_core{0, 0};
            ::setrlimit(RLIMIT_CORE, &no_core);
            ::signal(SIGSEGV, SIG_DFL);
            ::raise(SIGSEGV);
        });
        process.start();
        CPPUNIT_ASSERT(process.join(20s));
        CPPUNIT_ASSERT_EQUAL(-SIGSEGV, exit_code_of(process));
    }

    void testExitcodeIsEmptyWhileRunning() {
        Gate gate;
        Process process(daemon_options(), [&gate] { gate.pass(); });
        CPPUNIT_ASSERT(!process.exitcode().has_value());
        CPPUNIT_ASSERT(!process.is_alive());
        process.start();
        CPPUNIT_ASSERT(!process.exitcode().has_value());
        CPPUNIT_ASSERT(process.is_alive());
        CPPUNIT_ASSERT_EQUAL(std::string(), process.error());
        gate.open();
        process.join();
        CPPUNIT_ASSERT(!process.is_alive());
        assert_exited_cleanly(process);
    }

    void testJoinWithTimeoutWaitsTheTimeoutThenSeesTheEnd() {
        Gate gate;
        Process process(daemon_options(), [&gate] { gate.pass(); });
        process.start();
        Clock::time_point before = Clock::now();
        CPPUNIT_ASSERT(!process.join(150ms));
        CPPUNIT_ASSERT(Clock::now() - before >= 150ms);
        CPPUNIT_ASSERT(!process.exitcode().has_value());
        gate.open();
        CPPUNIT_ASSERT(process.join(20s));
        assert_exited_cleanly(process);
        CPPUNIT_ASSERT(process.join(0ns));
    }

    void testJoinIsNotShortenedByInterruptingSignals() {
        Gate gate;
        Process process(daemon_options(), [&gate] { gate.pass(); });
        process.start();
        bool ended_early;
        Clock::duration waited;
        {
            AlarmStorm storm;
            Clock::time_point before = Clock::now();
            ended_early = process.join(300ms);
            waited = Clock::now() - before;
            gate.open();
            process.join();  // must neither throw EINTR nor return before the child ended
            CPPUNIT_ASSERT(process.exitcode().has_value());
        }
        CPPUNIT_ASSERT_MESSAGE("no SIGALRM arrived during join: the test proves nothing",
                               AlarmStorm::alarms_caught() >= 5);
        CPPUNIT_ASSERT(!ended_early);
        CPPUNIT_ASSERT(waited >= 300ms);
        assert_exited_cleanly(process);
    }

    void testZeroOrNegativeTimeoutChecksWithoutBlocking() {
        Gate gate;
        Process process(daemon_options(), [&gate] { gate.pass(); });
        process.start();
        Clock::time_point before = Clock::now();
        CPPUNIT_ASSERT(!process.join(0ns));
        CPPUNIT_ASSERT(!process.join(-5s));
        CPPUNIT_ASSERT(Clock::now() - before < 1s);
        gate.open();
        process.join();
        CPPUNIT_ASSERT(process.join(-5s));
        assert_exited_cleanly(process);
    }

    void testSentinelBecomesReadableExactlyWhenChildEnds() {
        Gate gate;
        Process process(daemon_options(), [&gate] { gate.pass(); });
        process.start();
        pollfd sentinel{process.sentinel(), POLLIN, 0};
        CPPUNIT_ASSERT_EQUAL(0, ::poll(&sentinel, 1, 0));
        CPPUNIT_ASSERT_EQUAL(0, ::poll(&sentinel, 1, 100));
        gate.open();
        CPPUNIT_ASSERT_EQUAL(1, ::poll(&sentinel, 1, 20000));
        CPPUNIT_ASSERT(sentinel.revents & POLLIN);
        // Readable means ended: the exit code is there without join().
        CPPUNIT_ASSERT(process.exitcode().has_value());
        assert_exited_cleanly(process);
        // Still valid, still readable after the reap.
        sentinel.revents = 0;
        CPPUNIT_ASSERT_EQUAL(1, ::poll(&sentinel, 1, 0));
    }

    void testDefaultNamesCountEveryCreatedProcess() {
        Process first([] {});
        Process named(ProcessOptions{"worker", false}, [] {});
        Process third([] {});
        const std::string prefix = "Process-";
        CPPUNIT_ASSERT_EQUAL(prefix, first.name().substr(0, prefix.size()));
        unsigned long number = std::stoul(first.name().substr(prefix.size()));
        CPPUNIT_ASSERT(number >= 1);
        CPPUNIT_ASSERT_EQUAL(std::string("worker"), named.name());
        CPPUNIT_ASSERT_EQUAL(prefix + std::to_string(number + 2), third.name());
    }

    void testCurrentProcessOutsideChildrenIsMainProcess() {
        mproc::CurrentProcess current = mproc::current_process();
        CPPUNIT_ASSERT_EQUAL(std::string("MainProcess"), current.name);
        CPPUNIT_ASSERT_EQUAL(::getpid(), current.pid);
    }

    void testCurrentProcessInChildIsItsProcess() {
        struct Report {
            char name[64];
            pid_t pid;
        };
        Shared<Report> report;
        Process process(ProcessOptions{"reporter", false}, [report = &*report] {
            mproc::CurrentProcess current = mproc::current_process();
            copy_text(report->name, current.name);
            report->pid = current.pid;
        });
        process.start();
        process.join();
        assert_exited_cleanly(process);
        CPPUNIT_ASSERT_EQUAL(std::string("reporter"), std::string(report->name));
        CPPUNIT_ASSERT_EQUAL(process.pid(), report->pid);
        CPPUNIT_ASSERT_EQUAL(std::string("MainProcess"), mproc::current_process().name);
    }

    void testArgumentsAreCopiedAtConstruction() {
        struct Report {
            char text[64];
            int number;
            char modified_text[64];
        };
        Shared<Report> report;
        std::string text = "at construction";
        int number = 7;
        Process process(
            [report = &*report](std::string& received_text, int received_number) {
                copy_text(report->text, received_text);
                report->number = received_number;
                received_text += " and changed in the child";
                copy_text(report->modified_text, received_text);
            },
            text, number);
        text = "changed after construction";
        number = 8;
        process.start();
        process.join();
        assert_exited_cleanly(process);
        CPPUNIT_ASSERT_EQUAL(std::string("at construction"), std::string(report->text));
        CPPUNIT_ASSERT_EQUAL(7, report->number);
        CPPUNIT_ASSERT_EQUAL(std::string("at construction and changed in the child"),
                             std::string(report->modified_text));
        CPPUNIT_ASSERT_EQUAL(std::string("changed after construction"), text);
    }

    void testParentAtexitAndStaticDestructorsDoNotRunInChild() {
        static const bool registered = std::atexit([] { write_exit_witness('a'); }) == 0;
        CPPUNIT_ASSERT(registered);
        Pipe witness;
        exit_witness_fd = witness.write_fd;
        Process returns([] {});
        Process throws([] { throw std::runtime_error("leaving by exception"); });
        returns.start();
        throws.start();
        returns.join();
        throws.join();
        exit_witness_fd = -1;
        witness.close_write();
        char marks[8];
        ssize_t got = ::read(witness.read_fd, marks, sizeof marks);
        const std::string written(marks, static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
        CPPUNIT_ASSERT_EQUAL_MESSAGE("a child ran the parent's atexit handler (a) or static destructor (d): " +
                                         written,
                                     ssize_t(0), got);
        assert_exited_cleanly(returns);
        CPPUNIT_ASSERT_EQUAL(1, exit_code_of(throws));
    }

    void testBufferedStdioIsWrittenOnceByEachSide() {
        std::FILE* file = std::tmpfile();
        CPPUNIT_ASSERT(file != nullptr);
        std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(file, std::fclose);
        CPPUNIT_ASSERT(std::setvbuf(file, nullptr, _IOFBF, 4096) == 0);
        std::fputs("parent-", file);  // stays in the parent's buffer until someone flushes
        Process process([file] { std::fputs("child", file); });  // left for the child's exit to flush
        process.start();
        process.join();
        assert_exited_cleanly(process);
        std::fflush(file);
        std::rewind(file);
        char contents[64] = {};
        std::size_t got = std::fread(contents, 1, sizeof contents - 1, file);
        CPPUNIT_ASSERT_EQUAL(std::string("parent-child"), std::string(contents, got));
    }

    void testStartTwiceThrowsStateError() {
        Process process([] {});
        process.start();
        CPPUNIT_ASSERT_THROW(process.start(), StateError);
        process.join();
        CPPUNIT_ASSERT_THROW(process.start(), StateError);
        assert_exited_cleanly(process);
    }

    void testCallsBeforeStartThrowStateError() {
        Process process([] {});
        CPPUNIT_ASSERT_THROW(process.join(), StateError);
        CPPUNIT_ASSERT_THROW(process.join(1s), StateError);
        CPPUNIT_ASSERT_THROW(process.terminate(), StateError);
        CPPUNIT_ASSERT_THROW(process.kill(), StateError);
        CPPUNIT_ASSERT_THROW(process.sentinel(), StateError);
        CPPUNIT_ASSERT_EQUAL(pid_t(0), process.pid());
        CPPUNIT_ASSERT(!process.exitcode().has_value());
    }

    void testChangingNameOrDaemonAfterStartThrowsStateError() {
        Process process([] {});
        process.set_name("renamed before start");
        process.set_daemon(true);
        process.set_daemon(false);
        process.start();
        CPPUNIT_ASSERT_THROW(process.set_daemon(true), StateError);
        CPPUNIT_ASSERT_THROW(process.set_name("renamed after start"), StateError);
        process.join();
        CPPUNIT_ASSERT_THROW(process.set_daemon(true), StateError);
        CPPUNIT_ASSERT_EQUAL(std::string("renamed before start"), process.name());
        CPPUNIT_ASSERT(!process.daemon());
        assert_exited_cleanly(process);
    }

    void testEmptyTargetThrowsValueError() {
        CPPUNIT_ASSERT_THROW(Process(ProcessOptions{}, std::function<void()>()), mproc::ValueError);
    }

    void testOnlyTheCreatingProcessStartsAndJoins() {
        Gate gate;
        Process started(daemon_options(), [&gate] { gate.pass(); });
        Process unstarted([] {});
        started.start();
        mproc::test::run_in_processes(1, [&](int) {
            // A copy inherited through fork: the child is not ours to reap, the object not ours to start.
            CPPUNIT_ASSERT_THROW(started.join(), StateError);
            CPPUNIT_ASSERT_THROW(started.join(10ms), StateError);
            CPPUNIT_ASSERT_THROW(started.is_alive(), StateError);
            CPPUNIT_ASSERT_THROW(unstarted.start(), StateError);
        });
        CPPUNIT_ASSERT(started.is_alive());
        gate.open();
        started.join();
        assert_exited_cleanly(started);
    }

    void testSignalsAfterTheEndDoNothing() {
        Process process([] {});
        process.start();
        process.join();
        process.terminate();
        process.kill();
        assert_exited_cleanly(process);
    }

    void testMovedFromProcessIsInert() {
        Gate gate;
        auto original = std::make_unique<Process>(daemon_options(), [&gate] { gate.pass(); });
        original->start();
        const pid_t child = original->pid();
        Process moved(std::move(*original));
        CPPUNIT_ASSERT_EQUAL(pid_t(0), original->pid());
        CPPUNIT_ASSERT(!original->is_alive());
        CPPUNIT_ASSERT(!original->exitcode().has_value());
        CPPUNIT_ASSERT_THROW(original->start(), StateError);
        CPPUNIT_ASSERT_THROW(original->join(), StateError);
        original.reset();  // a daemon's destructor would kill the child: a moved-from one must not
        CPPUNIT_ASSERT_EQUAL(child, moved.pid());
        CPPUNIT_ASSERT(moved.is_alive());
        CPPUNIT_ASSERT(moved.daemon());
        gate.open();
        CPPUNIT_ASSERT(moved.join(20s));
        assert_exited_cleanly(moved);
    }

    void testMoveAssignmentReleasesTheChildItHeld() {
        Gate gate;
        Process kept(daemon_options(), [&gate] { gate.pass(); });
        Process replaced(daemon_options(), wait_forever);
        kept.start();
        replaced.start();
        const pid_t kept_child = kept.pid();
        const pid_t replaced_child = replaced.pid();
        replaced = std::move(kept);  // the running daemon it held is killed and reaped, as by the destructor
        CPPUNIT_ASSERT(was_reaped(replaced_child));
        CPPUNIT_ASSERT_EQUAL(kept_child, replaced.pid());
        gate.open();
        CPPUNIT_ASSERT(replaced.join(20s));
        assert_exited_cleanly(replaced);
    }

    void testNestedProcessRunsInChildAndCountsFromOne() {
        struct Report {
            char outer_name[64];
            char inner_name[64];
            char inner_default_name[64];
            pid_t inner_parent;
            pid_t inner_pid;
            int inner_exitcode;
        };
        Shared<Report> report;
        Process outer([report = &*report] {
            Process inner([report] {
                copy_text(report->inner_name, mproc::current_process().name);
                report->inner_parent = ::getppid();
            });
            copy_text(report->inner_default_name, inner.name());
            inner.start();
            inner.join();
            report->inner_pid = inner.pid();
            report->inner_exitcode = inner.exitcode().value_or(-1000);
            copy_text(report->outer_name, mproc::current_process().name);
        });
        outer.start();
        CPPUNIT_ASSERT(outer.join(20s));
        assert_exited_cleanly(outer);
        CPPUNIT_ASSERT_EQUAL(outer.name(), std::string(report->outer_name));
        CPPUNIT_ASSERT_EQUAL(std::string("Process-1"), std::string(report->inner_default_name));
        CPPUNIT_ASSERT_EQUAL(std::string("Process-1"), std::string(report->inner_name));
        CPPUNIT_ASSERT_EQUAL(outer.pid(), report->inner_parent);
        CPPUNIT_ASSERT(report->inner_pid > 0);
        CPPUNIT_ASSERT_EQUAL(0, report->inner_exitcode);
    }
};

// A grandchild that sends its pid through the pipe and then waits forever, holding the write end: the test
// sees EOF exactly when it is gone.
struct Lineage {
    Pipe alive;  // only the grandchild keeps the write end once it is running
    pid_t grandchild = 0;
};

class ProcessCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ProcessCrashTest);
    CPPUNIT_TEST(testDaemonChildDiesWhenItsParentIsKilled);
    CPPUNIT_TEST(testNonDaemonChildOutlivesItsKilledParent);
    CPPUNIT_TEST(testDaemonChildOfParentThatExitsAtOnceIsGone);
    CPPUNIT_TEST(testDaemonStartedByAThreadDiesWhenThatThreadEnds);
    CPPUNIT_TEST(testDestroyingRunningDaemonKillsAndReapsIt);
    CPPUNIT_TEST(testDestroyingRunningNonDaemonJoinsIt);
    CPPUNIT_TEST_SUITE_END();

    // Starts a middle process that starts a grandchild (daemon or not), returns once the grandchild runs.
    static std::unique_ptr<mproc::test::ForkedChild> start_middle(Lineage& lineage, bool daemon) {
        const int write_fd = lineage.alive.write_fd;
        auto middle = std::make_unique<mproc::test::ForkedChild>([write_fd, daemon] {
            ProcessOptions options;
            options.daemon = daemon;
            Process grandchild(options, [write_fd] {
                const pid_t self = ::getpid();
                ssize_t ignored = ::write(write_fd, &self, sizeof self);
                (void)ignored;
                wait_forever();
            });
            grandchild.start();
            ::close(write_fd);
            wait_forever();  // killed by the test; never reaches the destructor
        });
        lineage.alive.close_write();
        lineage.grandchild = read_value<pid_t>(lineage.alive.read_fd, 20s);
        return middle;
    }

public:
    void testDaemonChildDiesWhenItsParentIsKilled() {
        Lineage lineage;
        auto middle = start_middle(lineage, true);
        middle->kill(SIGKILL);
        middle->wait();
        const bool gone = wait_for_eof(lineage.alive.read_fd, 10s);
        if (!gone) ::kill(lineage.grandchild, SIGKILL);  // still running, so the pid is still its own
        CPPUNIT_ASSERT_MESSAGE("the daemon grandchild outlived its killed parent by 10 s", gone);
    }

    void testNonDaemonChildOutlivesItsKilledParent() {
        Lineage lineage;
        auto middle = start_middle(lineage, false);
        middle->kill(SIGKILL);
        middle->wait();
        const bool gone = wait_for_eof(lineage.alive.read_fd, 300ms);
        if (!gone) {
            CPPUNIT_ASSERT_EQUAL(0, ::kill(lineage.grandchild, 0));
            ::kill(lineage.grandchild, SIGKILL);
            CPPUNIT_ASSERT(wait_for_eof(lineage.alive.read_fd, 10s));
        }
        CPPUNIT_ASSERT_MESSAGE("the non-daemon grandchild died with its parent", !gone);
    }

    void testDaemonChildOfParentThatExitsAtOnceIsGone() {
        // The parent leaves the moment start() returns, without the destructor's kill: the death signal
        // must be armed by then, every time.
        for (int round = 0; round < 20; ++round) {
            Pipe alive;  // the grandchild inherits the write end; EOF says it is gone
            const int write_fd = alive.write_fd;
            mproc::test::ForkedChild middle([write_fd] {
                Process grandchild(daemon_options(), [write_fd] {
                    const pid_t self = ::getpid();  // for the clean-up of a grandchild that survived
                    ssize_t ignored = ::write(write_fd, &self, sizeof self);
                    (void)ignored;
                    wait_forever();
                });
                grandchild.start();
                ::_exit(0);  // no destructor: only the death signal or the re-check can end the grandchild
            });
            alive.close_write();
            CPPUNIT_ASSERT_EQUAL(0, middle.wait());
            std::string received;
            const bool gone = wait_for_eof(alive.read_fd, 10s, &received);
            if (!gone && received.size() >= sizeof(pid_t)) {  // still running, so the pid is still its own
                pid_t survivor;
                std::memcpy(&survivor, received.data(), sizeof survivor);
                ::kill(survivor, SIGKILL);
            }
            CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round) + ": the daemon outlived its parent", gone);
        }
    }

    void testDaemonStartedByAThreadDiesWhenThatThreadEnds() {
        // The kernel's rule, stated in the header: the death signal follows the parent thread. The thread
        // ends the moment start() returns, so the signal must be armed by then, every round.
        for (int round = 0; round < 10; ++round) {
            Process process(daemon_options(), wait_forever);
            std::thread starter([&process] { process.start(); });
            starter.join();
            const bool ended = process.join(5s);
            CPPUNIT_ASSERT_MESSAGE("round " + std::to_string(round) + ": the daemon outlived it", ended);
            CPPUNIT_ASSERT_EQUAL(-SIGKILL, exit_code_of(process));
        }
    }

    void testDestroyingRunningDaemonKillsAndReapsIt() {
        mproc::test::run_in_processes(
            1,
            [](int) {
                pid_t child;
                {
                    Process process(daemon_options(), wait_forever);
                    process.start();
                    child = process.pid();
                }
                CPPUNIT_ASSERT(was_reaped(child));
            },
            20s);
    }

    void testDestroyingRunningNonDaemonJoinsIt() {
        mproc::test::run_in_processes(
            1,
            [](int) {
                Shared<std::atomic<int>> finished;
                pid_t child;
                {
                    Process process([finished = &*finished] {
                        std::this_thread::sleep_for(200ms);
                        // release: pairs with the acquire load after the destructor (the reap in between
                        // orders it already; the pair keeps the claim local).
                        finished->store(1, std::memory_order_release);
                    });
                    process.start();
                    child = process.pid();
                }
                // acquire: pairs with the child's release store.
                CPPUNIT_ASSERT_EQUAL(1, finished->load(std::memory_order_acquire));
                CPPUNIT_ASSERT(was_reaped(child));
            },
            20s);
    }
};

}  // namespace

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ProcessTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ProcessCrashTest, "crash");
