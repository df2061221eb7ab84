// The exception hierarchy (include/mproc/error.hpp): every mproc error is caught as mproc::Error, as
// std::runtime_error and as std::exception; SystemError is a std::system_error whose code() keeps errno in
// the system category, so it compares equal to std::errc values; messages stay informative.
#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/shared_memory.hpp"

namespace {

using mproc::test::run_in_processes;
using mproc::test::unique_name;

// Which of the catch clauses a thrown exception reaches, one bit each, tried in separate try blocks.
template <class Fn>
unsigned catch_clauses_reached(Fn&& throw_it) {
    unsigned reached = 0;
    try { throw_it(); } catch (const mproc::Error&) { reached |= 1u; } catch (...) {}
    try { throw_it(); } catch (const std::runtime_error&) { reached |= 2u; } catch (...) {}
    try { throw_it(); } catch (const std::exception&) { reached |= 4u; } catch (...) {}
    try { throw_it(); } catch (const std::system_error&) { reached |= 8u; } catch (...) {}
    return reached;
}

class ErrorTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ErrorTest);
    CPPUNIT_TEST(testSystemErrorIsAStdSystemErrorInTheSystemCategory);
    CPPUNIT_TEST(testSystemErrorMessageNamesTheCallAndTheErrno);
    CPPUNIT_TEST(testEveryErrorIsCaughtAsErrorRuntimeErrorAndException);
    CPPUNIT_TEST(testOnlySystemErrorsAreSystemErrors);
    CPPUNIT_TEST(testFailedOpenInAChildReportsEnoentAsErrc);
    CPPUNIT_TEST_SUITE_END();

public:
    void testSystemErrorIsAStdSystemErrorInTheSystemCategory() {
        static_assert(std::is_base_of_v<std::system_error, mproc::SystemError>);
        static_assert(std::is_base_of_v<mproc::Error, mproc::SystemError>);
        static_assert(std::is_base_of_v<mproc::SystemError, mproc::BrokenPipe>);
        const mproc::SystemError error("shared memory 'x': shm_open", EACCES);
        CPPUNIT_ASSERT_EQUAL(EACCES, error.code().value());
        CPPUNIT_ASSERT(&error.code().category() == &std::system_category());
        CPPUNIT_ASSERT(error.code() == std::errc::permission_denied);
        CPPUNIT_ASSERT_EQUAL(EACCES, error.error_number());
        const mproc::BrokenPipe broken("connection: send", EPIPE);
        CPPUNIT_ASSERT(broken.code() == std::errc::broken_pipe);
    }

    void testSystemErrorMessageNamesTheCallAndTheErrno() {
        const mproc::SystemError error("lock 'jobs': shm_open", ENOENT);
        CPPUNIT_ASSERT_EQUAL(std::string("lock 'jobs': shm_open: No such file or directory"),
                             std::string(error.what()));
        // The same text through every base a catcher may hold it by.
        const mproc::Error& as_error = error;
        const std::exception& as_exception = error;
        CPPUNIT_ASSERT_EQUAL(std::string(error.what()), std::string(as_error.what()));
        CPPUNIT_ASSERT_EQUAL(std::string(error.what()), std::string(as_exception.what()));
        const mproc::StateError state("process: start() called twice");
        const mproc::Error& state_as_error = state;
        CPPUNIT_ASSERT_EQUAL(std::string("process: start() called twice"), std::string(state_as_error.what()));
    }

    void testEveryErrorIsCaughtAsErrorRuntimeErrorAndException() {
        CPPUNIT_ASSERT_EQUAL(15u, catch_clauses_reached([] { mproc::throw_system_error("x", EINVAL); }));
        CPPUNIT_ASSERT_EQUAL(15u, catch_clauses_reached([] { throw mproc::BrokenPipe("x", EPIPE); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::StateError("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::ValueError("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::InvalidObject("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::OwnerDied("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::NotRecoverable("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::BrokenBarrier("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::Empty("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::Full("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::Closed("x"); }));
        CPPUNIT_ASSERT_EQUAL(7u, catch_clauses_reached([] { throw mproc::BufferTooShort("x", {}); }));
    }

    void testOnlySystemErrorsAreSystemErrors() {
        try {
            throw mproc::ValueError("size 0");
        } catch (const mproc::SystemError&) {
            CPPUNIT_FAIL("a ValueError was caught as SystemError");
        } catch (const mproc::Error& error) {
            CPPUNIT_ASSERT_EQUAL(std::string("size 0"), std::string(error.what()));
        }
    }

    void testFailedOpenInAChildReportsEnoentAsErrc() {
        const std::string name = unique_name("error-missing");
        run_in_processes(1, [&](int) {
            try {
                mproc::SharedMemory::open(name);
                CPPUNIT_FAIL("opening a missing name succeeded");
            } catch (const std::system_error& error) {
                CPPUNIT_ASSERT(error.code() == std::errc::no_such_file_or_directory);
                CPPUNIT_ASSERT(std::string(error.what()).find(name) != std::string::npos);
            }
        });
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ErrorTest, "unit");

}  // namespace
