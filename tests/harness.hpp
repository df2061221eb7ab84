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
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <sys/types.h>

#include <cppunit/extensions/HelperMacros.h>

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

// A name no other test run can be using, for named segments: "/mproc-test-<pid>-<counter>-<tag>".
std::string unique_name(const std::string& tag);

}  // namespace mproc::test
