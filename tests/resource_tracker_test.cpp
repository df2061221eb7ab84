// The resource tracker (include/mproc/resource_tracker.hpp): named objects a process tree created and did
// not unlink are unlinked, with one warning naming them, once the whole tree has ended — also when it was
// SIGKILLed — and an object a process outside the tree still maps is left in place and named as such.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/event.hpp"
#include "mproc/resource_tracker.hpp"

namespace {

using mproc::test::ForkedChild;
using mproc::test::unique_name;
using namespace std::chrono_literals;

bool exists(const std::string& name) { return ::access(("/dev/shm" + name).c_str(), F_OK) == 0; }

// Everything written to fd until every writer closed it (or 20 s passed: then the test fails).
std::string read_until_eof(int fd) {
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        CPPUNIT_ASSERT_MESSAGE("the tracker did not finish within 20 s; so far: " + text, left.count() > 0);
        struct pollfd poll_fd {fd, POLLIN, 0};
        const int ready = ::poll(&poll_fd, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        char buffer[512];
        const ssize_t got = ::read(fd, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return text;
        text.append(buffer, static_cast<std::size_t>(got));
    }
}

// A pid slot shared with forked children.
struct SharedPid {
    SharedPid()
        : pid(static_cast<std::atomic<pid_t>*>(::mmap(nullptr, sizeof(std::atomic<pid_t>), PROT_READ | PROT_WRITE,
                                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0))) {
        CPPUNIT_ASSERT(pid != MAP_FAILED);
        new (pid) std::atomic<pid_t>(0);
    }
    ~SharedPid() { ::munmap(pid, sizeof *pid); }
    std::atomic<pid_t>* pid;
};

class ResourceTrackerTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ResourceTrackerTest);
    CPPUNIT_TEST(testUnlinksWhatAKilledTreeLeftAndWarns);
    CPPUNIT_TEST(testLeavesObjectsMappedOutsideTheTree);
    CPPUNIT_TEST(testTreeThatUnlinksEverythingGetsNoWarning);
    CPPUNIT_TEST_SUITE_END();

public:
    void testUnlinksWhatAKilledTreeLeftAndWarns() {
        const std::string by_root = unique_name("tracked-root");
        const std::string by_grandchild = unique_name("tracked-grandchild");
        const std::string unlinked = unique_name("tracked-unlinked");
        int warnings[2];
        CPPUNIT_ASSERT_EQUAL(0, ::pipe(warnings));
        mproc::Event ready;
        SharedPid grandchild;
        ForkedChild root([&] {
            ::close(warnings[0]);
            if (!mproc::start_resource_tracker(warnings[1])) std::_Exit(10);
            if (mproc::start_resource_tracker(warnings[1])) std::_Exit(11);  // once per tree
            mproc::Event mine = mproc::Event::create(by_root);
            mproc::Event gone = mproc::Event::create(unlinked);
            gone.unlink();
            const pid_t child = ::fork();
            if (child == 0) {
                mproc::Event theirs = mproc::Event::create(by_grandchild);
                ready.set();
                ::pause();
            }
            grandchild.pid->store(child, std::memory_order_relaxed);  // relaxed: only the pid itself is read
            ::pause();
        });
        ::close(warnings[1]);
        CPPUNIT_ASSERT(ready.wait_for(10s));
        CPPUNIT_ASSERT(exists(by_root) && exists(by_grandchild) && !exists(unlinked));
        pid_t grandchild_pid = 0;
        // relaxed: pairs with the root's relaxed store; the pid is the only thing read through it.
        while ((grandchild_pid = grandchild.pid->load(std::memory_order_relaxed)) == 0)
            std::this_thread::sleep_for(1ms);
        ::kill(grandchild_pid, SIGKILL);
        root.kill(SIGKILL);
        root.wait();
        const std::string warning = read_until_eof(warnings[0]);
        ::close(warnings[0]);
        std::vector<std::string> names{by_root, by_grandchild};
        std::sort(names.begin(), names.end());
        CPPUNIT_ASSERT_EQUAL("mproc resource tracker: unlinked 2 leaked objects: " + names[0] + " " + names[1] + "\n",
                             warning);
        CPPUNIT_ASSERT(!exists(by_root));
        CPPUNIT_ASSERT(!exists(by_grandchild));
    }

    void testLeavesObjectsMappedOutsideTheTree() {
        const std::string name = unique_name("tracked-in-use");
        int warnings[2];
        CPPUNIT_ASSERT_EQUAL(0, ::pipe(warnings));
        mproc::Event ready;
        ForkedChild root([&] {
            ::close(warnings[0]);
            mproc::start_resource_tracker(warnings[1]);
            mproc::Event mine = mproc::Event::create(name);
            ready.set();
            ::pause();
        });
        ::close(warnings[1]);
        CPPUNIT_ASSERT(ready.wait_for(10s));
        mproc::Event outside = mproc::Event::open(name);  // this process is not in the tracked tree
        root.kill(SIGKILL);
        root.wait();
        const std::string warning = read_until_eof(warnings[0]);
        ::close(warnings[0]);
        CPPUNIT_ASSERT_EQUAL("mproc resource tracker: left in place, still in use: " + name + "\n", warning);
        CPPUNIT_ASSERT(exists(name));
        outside.unlink();
    }

    void testTreeThatUnlinksEverythingGetsNoWarning() {
        // The tree creates and unlinks a name; then a process outside the tree creates the same name anew
        // and lets go of it (nobody maps it). The tracker must know the tree's object is gone and leave the
        // new one alone.
        const std::string name = unique_name("tracked-clean");
        int warnings[2];
        CPPUNIT_ASSERT_EQUAL(0, ::pipe(warnings));
        mproc::Event unlinked;
        mproc::Event recreated;
        ForkedChild root([&] {
            ::close(warnings[0]);
            mproc::start_resource_tracker(warnings[1]);
            mproc::Event mine = mproc::Event::create(name);
            mine.unlink();
            unlinked.set();
            if (!recreated.wait_for(10s)) std::_Exit(12);
        });
        ::close(warnings[1]);
        CPPUNIT_ASSERT(unlinked.wait_for(10s));
        {
            const mproc::Event outsiders = mproc::Event::create(name);
        }
        recreated.set();
        CPPUNIT_ASSERT_EQUAL(0, root.wait());
        CPPUNIT_ASSERT_EQUAL(std::string(), read_until_eof(warnings[0]));
        ::close(warnings[0]);
        CPPUNIT_ASSERT(exists(name));
        ::shm_unlink(name.c_str());
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ResourceTrackerTest, "unit");

}  // namespace
