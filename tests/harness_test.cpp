// The test harness itself: a test that runs its body in forked children must fail when a child fails,
// crashes or hangs, and must skip when a child skips — otherwise every cross-process test could pass
// without proving anything.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"

namespace {

using mproc::test::ForkedChild;
using mproc::test::run_in_processes;
using mproc::test::run_in_threads;
using mproc::test::Skipped;
using namespace std::chrono_literals;

// The message of the CppUnit failure that fn raised; fails the test when fn raised none.
template <class Fn>
std::string failure_message_of(Fn&& fn) {
    try {
        fn();
    } catch (const CppUnit::Exception& failure) {
        return failure.what();
    }
    CPPUNIT_FAIL("the harness reported success for a body that should have failed");
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class HarnessTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(HarnessTest);
    CPPUNIT_TEST(testEveryChildRunsOnceWithItsOwnIndex);
    CPPUNIT_TEST(testChildAssertionFailureFailsTheTestAndNamesTheChild);
    CPPUNIT_TEST(testChildCrashFailsTheTestWithTheSignal);
    CPPUNIT_TEST(testChildUncaughtExceptionFailsTheTest);
    CPPUNIT_TEST(testChildPastItsDeadlineIsKilledAndFailsTheTest);
    CPPUNIT_TEST(testChildSkipSkipsTheTest);
    CPPUNIT_TEST(testThreadFailureIsRethrownInTheCaller);
    CPPUNIT_TEST(testForkedChildReportsItsExitStatusAndSignal);
    CPPUNIT_TEST(testUniqueNamesDiffer);
    CPPUNIT_TEST(testRunnerExitsSkipOnlyWhenNothingFailed);
    CPPUNIT_TEST(testRunnerFailsASuiteThatRunsNothing);
    CPPUNIT_TEST_SUITE_END();

public:
    void testEveryChildRunsOnceWithItsOwnIndex() {
        constexpr int kChildren = 5;
        void* shared = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CPPUNIT_ASSERT(shared != MAP_FAILED);
        auto* runs = static_cast<std::atomic<int>*>(shared);
        run_in_processes(kChildren, [&](int index) {
            // relaxed: the parent reads after every child was reaped, which orders these increments.
            runs[index].fetch_add(1, std::memory_order_relaxed);
        });
        for (int index = 0; index < kChildren; ++index)
            CPPUNIT_ASSERT_EQUAL(1, runs[index].load(std::memory_order_relaxed));  // relaxed: children reaped
        ::munmap(shared, 4096);
    }

    void testChildAssertionFailureFailsTheTestAndNamesTheChild() {
        const std::string message = failure_message_of([] {
            run_in_processes(3, [](int index) { CPPUNIT_ASSERT_EQUAL_MESSAGE("planted", 0, index % 2); });
        });
        CPPUNIT_ASSERT_MESSAGE(message, contains(message, "child 1 exited with status 1"));
        CPPUNIT_ASSERT_MESSAGE(message, contains(message, "planted"));
        CPPUNIT_ASSERT_MESSAGE(message, !contains(message, "child 0") && !contains(message, "child 2"));
    }

    void testChildCrashFailsTheTestWithTheSignal() {
        const std::string message = failure_message_of([] {
            // SIGKILL, not SIGSEGV: AddressSanitizer turns a SIGSEGV into an exit with status 1.
            run_in_processes(2, [](int index) {
                if (index == 0) ::raise(SIGKILL);
            });
        });
        CPPUNIT_ASSERT_MESSAGE(message, contains(message, "child 0 killed by signal 9"));
    }

    void testChildUncaughtExceptionFailsTheTest() {
        const std::string message =
            failure_message_of([] { run_in_processes(1, [](int) { throw std::runtime_error("escaped"); }); });
        CPPUNIT_ASSERT_MESSAGE(message, contains(message, "uncaught exception: escaped"));
    }

    void testChildPastItsDeadlineIsKilledAndFailsTheTest() {
        const auto started = std::chrono::steady_clock::now();
        const std::string message = failure_message_of([] {
            run_in_processes(2, [](int index) {
                if (index == 1) ::sleep(30);
            }, 300ms);
        });
        const auto took = std::chrono::steady_clock::now() - started;
        CPPUNIT_ASSERT_MESSAGE(message, contains(message, "child 1 did not finish within 300 ms"));
        CPPUNIT_ASSERT_MESSAGE("the hung child was waited for far past its deadline", took < 10s);
    }

    void testChildSkipSkipsTheTest() {
        std::string reason;
        try {
            run_in_processes(2, [](int index) {
                if (index == 1) MPROC_SKIP("planted skip");
            });
        } catch (const Skipped& skipped) {
            reason = skipped.reason;
        }
        CPPUNIT_ASSERT_EQUAL(std::string("planted skip"), reason);
    }

    void testThreadFailureIsRethrownInTheCaller() {
        const std::string message =
            failure_message_of([] { run_in_threads(4, [](int index) { CPPUNIT_ASSERT_MESSAGE("thread 2", index != 2); }); });
        CPPUNIT_ASSERT_MESSAGE(message, contains(message, "thread 2"));
    }

    void testForkedChildReportsItsExitStatusAndSignal() {
        ForkedChild exits([] { ::_exit(7); });
        const int exit_status = exits.wait();
        CPPUNIT_ASSERT(WIFEXITED(exit_status));
        CPPUNIT_ASSERT_EQUAL(7, WEXITSTATUS(exit_status));

        ForkedChild sleeps([] { ::sleep(30); });
        sleeps.kill(SIGKILL);
        const int killed_status = sleeps.wait();
        CPPUNIT_ASSERT(WIFSIGNALED(killed_status));
        CPPUNIT_ASSERT_EQUAL(SIGKILL, WTERMSIG(killed_status));
    }

    void testUniqueNamesDiffer() {
        const std::string first = mproc::test::unique_name("x");
        const std::string second = mproc::test::unique_name("x");
        CPPUNIT_ASSERT(first != second);
        CPPUNIT_ASSERT_EQUAL('/', first[0]);
        CPPUNIT_ASSERT(first.find('/', 1) == std::string::npos);
    }

    void testRunnerExitsSkipOnlyWhenNothingFailed() {
        CPPUNIT_ASSERT_EQUAL(77, exit_status_of_runner({"selftest-skip"}));
        CPPUNIT_ASSERT_EQUAL(1, exit_status_of_runner({"selftest-skip-and-fail"}));
        CPPUNIT_ASSERT_EQUAL(0, exit_status_of_runner({"selftest-skip", "testPasses"}));
    }

    void testRunnerFailsASuiteThatRunsNothing() {
        CPPUNIT_ASSERT_EQUAL(1, exit_status_of_runner({"no-such-suite"}));
        CPPUNIT_ASSERT_EQUAL(1, exit_status_of_runner({"selftest-skip", "noTestHasThisName"}));
    }

private:
    // Runs this very binary with the given runner arguments, its output discarded, and returns its exit code.
    static int exit_status_of_runner(std::initializer_list<const char*> arguments) {
        ForkedChild runner([&] {
            std::vector<const char*> argv{"harness_test"};
            argv.insert(argv.end(), arguments.begin(), arguments.end());
            argv.push_back(nullptr);
            const int null_fd = ::open("/dev/null", O_WRONLY);
            ::dup2(null_fd, STDOUT_FILENO);
            ::dup2(null_fd, STDERR_FILENO);
            ::execv("/proc/self/exe", const_cast<char* const*>(argv.data()));
            ::_exit(127);
        });
        const int status = runner.wait();
        CPPUNIT_ASSERT_MESSAGE("the runner was killed by a signal", WIFEXITED(status));
        return WEXITSTATUS(status);
    }
};

// Fixtures the runner test above starts in a fresh process; registered outside the unit/stress/crash
// suites, so no Meson test runs them directly.
class SkippingFixture : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SkippingFixture);
    CPPUNIT_TEST(testPasses);
    CPPUNIT_TEST(testSkips);
    CPPUNIT_TEST_SUITE_END();

public:
    // Passes by doing nothing: what the runner test checks is the exit code of a suite that mixes it with a skip.
    void testPasses() {}
    void testSkips() { MPROC_SKIP("this kernel lacks nothing; the skip is planted"); }
};

class SkippingAndFailingFixture : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SkippingAndFailingFixture);
    CPPUNIT_TEST(testSkips);
    CPPUNIT_TEST(testFails);
    CPPUNIT_TEST_SUITE_END();

public:
    void testSkips() { MPROC_SKIP("planted skip"); }
    void testFails() { CPPUNIT_FAIL("planted failure"); }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(HarnessTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SkippingFixture, "selftest-skip");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SkippingAndFailingFixture, "selftest-skip-and-fail");

}  // namespace
