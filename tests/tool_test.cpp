// The `mproc` tool (tools/mproc.cpp) against live objects of every named kind in known states, comparing
// `show --json` exactly; against corrupt and foreign files (no crash, exit 1 with a message); and `rm`,
// which removes an object whose creator is dead and that nobody maps, and refuses one in use or one whose
// creator lives. `rm --stale` runs with --dry-run only: other suites' objects share /dev/shm.
#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/array.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/rlock.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/value.hpp"

namespace {

using mproc::test::ForkedChild;
using mproc::test::unique_name;
using namespace std::chrono_literals;

struct ToolRun {
    int status = -1;  // the exit status, or -1 when the tool did not exit normally (a crash)
    std::string out;
    std::string err;
};

std::string slurp(const std::string& path) {
    std::ifstream file(path);
    return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

ToolRun run_tool(const std::vector<std::string>& args) {
    const char* tool = std::getenv("MPROC_TOOL");
    if (tool == nullptr) MPROC_SKIP("MPROC_TOOL is not set: run through meson test");
    const std::string out_path = "/tmp/mproc-tool-test-" + std::to_string(::getpid()) + ".out";
    const std::string err_path = "/tmp/mproc-tool-test-" + std::to_string(::getpid()) + ".err";
    const pid_t child = ::fork();
    CPPUNIT_ASSERT(child >= 0);
    if (child == 0) {
        const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) std::_Exit(120);
        std::vector<char*> argv{const_cast<char*>(tool)};
        for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
        argv.push_back(nullptr);
        ::execv(tool, argv.data());
        std::_Exit(121);
    }
    int wait_status = 0;
    while (::waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
    }
    ToolRun run;
    run.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    run.out = slurp(out_path);
    run.err = slurp(err_path);
    ::unlink(out_path.c_str());
    ::unlink(err_path.c_str());
    return run;
}

std::string users(std::vector<int> pids) {
    std::sort(pids.begin(), pids.end());
    std::string out;
    for (const int pid : pids) out += (out.empty() ? "" : ",") + std::to_string(pid);
    return out;
}

// The exact `show --json` line for an object created by this process, mapped by `mapped_by`.
std::string expected_show(const std::string& name, const std::string& kind, std::uint64_t payload_size,
                          const std::vector<int>& mapped_by, const std::string& state, bool creator_alive = true,
                          int creator = ::getpid()) {
    return "{\"schema\":1,\"name\":\"" + name + "\",\"kind\":\"" + kind +
           "\",\"valid\":true,\"reason\":null,\"size\":" +
           std::to_string(128 + payload_size) + ",\"layout_version\":1,\"payload_size\":" +
           std::to_string(payload_size) + ",\"creator_pid\":" + std::to_string(creator) +
           ",\"creator_alive\":" + (creator_alive ? "true" : "false") + ",\"users\":[" + users(mapped_by) +
           "],\"state\":{" + state + "}}\n";
}

void assert_show(const std::string& name, const std::string& expected) {
    const ToolRun run = run_tool({"show", name, "--json"});
    CPPUNIT_ASSERT_EQUAL_MESSAGE(run.err, 0, run.status);
    CPPUNIT_ASSERT_EQUAL(expected, run.out);
}

void write_file(const std::string& name, const std::string& bytes) {
    const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    CPPUNIT_ASSERT(fd >= 0);
    CPPUNIT_ASSERT_EQUAL(static_cast<ssize_t>(bytes.size()), ::write(fd, bytes.data(), bytes.size()));
    ::close(fd);
}

// A valid-looking header for `kind` with a payload of payload_size zero bytes, published.
std::string forged_object(mproc::ObjectKind kind, std::uint32_t layout_version, std::uint64_t payload_size) {
    mproc::ObjectHeader header{};
    header.magic = mproc::kObjectMagic;
    header.state = mproc::kObjectPublished;
    header.kind = static_cast<std::uint32_t>(kind);
    header.layout_version = layout_version;
    header.payload_offset = sizeof header;
    header.payload_size = payload_size;
    header.total_size = sizeof header + payload_size;
    header.creator_pid = 0;
    std::string bytes(reinterpret_cast<const char*>(&header), sizeof header);
    return bytes + std::string(payload_size, '\0');
}

class ToolTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(ToolTest);
    CPPUNIT_TEST(testShowsLockHeldByALiveProcess);
    CPPUNIT_TEST(testShowsLockWhoseHolderDied);
    CPPUNIT_TEST(testShowsRLockRecursion);
    CPPUNIT_TEST(testShowsSemaphoreValueAndEventSet);
    CPPUNIT_TEST(testShowsQueueDepthAndClosed);
    CPPUNIT_TEST(testShowsBrokenBarrier);
    CPPUNIT_TEST(testShowsConditionWithItsLock);
    CPPUNIT_TEST(testShowsValueAndArrayTypes);
    CPPUNIT_TEST(testShowsNamedPipeHoldersAndItsAwaitedOpener);
    CPPUNIT_TEST(testListsObjectsAndCorruptOnesWithTheReason);
    CPPUNIT_TEST(testShowRefusesCorruptAndForeignFiles);
    CPPUNIT_TEST(testRmRemovesOnlyObjectsNobodyUsesWithDeadCreators);
    CPPUNIT_TEST(testCreatorPidReusedByAYoungerProcessIsNotAlive);
    CPPUNIT_TEST(testUsageErrorsExitTwoAndHelpExitsZero);
    CPPUNIT_TEST_SUITE_END();

public:
    void testShowsLockHeldByALiveProcess() {
        const std::string name = unique_name("tool-lock");
        mproc::Lock lock = mproc::Lock::create(name);
        mproc::Event held;
        mproc::Event release;
        ForkedChild holder([&] {
            lock.acquire();
            held.set();
            release.wait();
            lock.release();
        });
        CPPUNIT_ASSERT(held.wait_for(10s));
        assert_show(name, expected_show(name, "lock", 64, {::getpid(), holder.pid()},
                                        "\"recursive\":false,\"owner_tid\":" + std::to_string(holder.pid()) +
                                            ",\"owner_died\":false,\"waiters\":false,\"consistency\":\"consistent\","
                                            "\"sleepers\":0,\"owner_alive\":true"));
        release.set();
        CPPUNIT_ASSERT_EQUAL(0, holder.wait());
        lock.unlink();
    }

    void testShowsLockWhoseHolderDied() {
        const std::string name = unique_name("tool-dead-lock");
        mproc::Lock lock = mproc::Lock::create(name);
        mproc::Event held;
        ForkedChild holder([&] {
            lock.acquire();
            held.set();
            ::pause();
        });
        CPPUNIT_ASSERT(held.wait_for(10s));
        holder.kill(SIGKILL);
        holder.wait();
        // The kernel cleared the TID and set FUTEX_OWNER_DIED when the holder died: nobody acquired it since.
        assert_show(name, expected_show(name, "lock", 64, {::getpid()},
                                        "\"recursive\":false,\"owner_tid\":null,\"owner_died\":true,"
                                        "\"waiters\":false,\"consistency\":\"consistent\",\"sleepers\":0"));
        lock.unlink();
    }

    void testShowsRLockRecursion() {
        const std::string name = unique_name("tool-rlock");
        mproc::RLock lock = mproc::RLock::create(name);
        lock.acquire();
        lock.acquire();
        assert_show(name, expected_show(name, "rlock", 64, {::getpid()},
                                        "\"recursive\":true,\"owner_tid\":" + std::to_string(::getpid()) +
                                            ",\"owner_died\":false,\"waiters\":false,\"consistency\":\"consistent\","
                                            "\"sleepers\":0,\"recursion\":2,\"owner_alive\":true"));
        lock.release();
        lock.release();
        lock.unlink();
    }

    void testShowsSemaphoreValueAndEventSet() {
        const std::string semaphore_name = unique_name("tool-semaphore");
        mproc::BoundedSemaphore semaphore = mproc::BoundedSemaphore::create(semaphore_name, 5);
        CPPUNIT_ASSERT(semaphore.acquire());
        CPPUNIT_ASSERT(semaphore.acquire());
        assert_show(semaphore_name, expected_show(semaphore_name, "semaphore", 64, {::getpid()},
                                                  "\"bounded\":true,\"value\":3,\"bound\":5,\"waiters\":false"));
        semaphore.unlink();

        const std::string event_name = unique_name("tool-event");
        mproc::Event event = mproc::Event::create(event_name);
        assert_show(event_name,
                    expected_show(event_name, "event", 64, {::getpid()}, "\"set\":false,\"waiters\":false"));
        event.set();
        assert_show(event_name, expected_show(event_name, "event", 64, {::getpid()}, "\"set\":true,\"waiters\":false"));
        event.unlink();
    }

    void testShowsQueueDepthAndClosed() {
        const std::string name = unique_name("tool-queue");
        mproc::Queue<int> queue = mproc::Queue<int>::create(name, 8);
        for (int item = 0; item < 3; ++item) queue.put(item);
        const ToolRun open_run = run_tool({"show", name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(open_run.err, 0, open_run.status);
        CPPUNIT_ASSERT_MESSAGE(open_run.out, open_run.out.find("\"state\":{\"queue_kind\":\"mpmc\",\"capacity\":8,"
                                                               "\"slot_size\":4,\"depth\":3,\"closed\":false,"
                                                               "\"unfinished_tasks\":0,\"repaired_slots\":0}}\n") !=
                                                 std::string::npos);
        queue.get();
        queue.close();
        const ToolRun closed_run = run_tool({"show", name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(closed_run.err, 0, closed_run.status);
        CPPUNIT_ASSERT_MESSAGE(closed_run.out,
                               closed_run.out.find("\"depth\":2,\"closed\":true,") != std::string::npos);
        queue.unlink();
    }

    void testShowsBrokenBarrier() {
        const std::string name = unique_name("tool-barrier");
        mproc::Barrier barrier = mproc::Barrier::create(name, 3);
        const std::uint64_t payload = mproc::RawBarrier::size_for(3);
        assert_show(name, expected_show(name, "barrier", payload, {::getpid()},
                                        "\"parties\":3,\"waiting\":0,\"missing\":3,\"dead_participants\":0,"
                                        "\"broken\":false"));
        barrier.abort();
        assert_show(name, expected_show(name, "barrier", payload, {::getpid()},
                                        "\"parties\":3,\"waiting\":0,\"missing\":3,\"dead_participants\":0,"
                                        "\"broken\":true"));
        barrier.unlink();
    }

    void testShowsConditionWithItsLock() {
        const std::string name = unique_name("tool-condition");
        mproc::Condition condition = mproc::Condition::create(name);
        const ToolRun run = run_tool({"show", name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(run.err, 0, run.status);
        CPPUNIT_ASSERT_MESSAGE(run.out, run.out.find("\"state\":{\"lock_owner_recursive\":true,\"lock_owner_tid\":null,"
                                                     "\"lock_owner_died\":false,\"waiters\":false,"
                                                     "\"consistency\":\"consistent\",\"sleepers\":0,\"recursion\":0,"
                                                     "\"capacity\":128,\"waiting\":0,\"notified\":0,"
                                                     "\"dead_waiters\":0}}\n") != std::string::npos);
        condition.unlink();
    }

    void testShowsValueAndArrayTypes() {
        const std::string value_name = unique_name("tool-value");
        mproc::Value<std::int64_t> value = mproc::Value<std::int64_t>::create(value_name, 7);
        const ToolRun value_run = run_tool({"show", value_name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(value_run.err, 0, value_run.status);
        CPPUNIT_ASSERT_MESSAGE(value_run.out, value_run.out.find("\"kind\":\"value\",") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(value_run.out,
                               value_run.out.find("\"state\":{\"element_size\":8,\"element_alignment\":8,\"length\":1,"
                                                  "\"has_lock\":true,\"lock_owner_recursive\":false,"
                                                  "\"lock_owner_tid\":null,") != std::string::npos);
        value.unlink();

        const std::string array_name = unique_name("tool-array");
        mproc::Array<double> array = mproc::Array<double>::create(array_name, 10);
        const ToolRun array_run = run_tool({"show", array_name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(array_run.err, 0, array_run.status);
        CPPUNIT_ASSERT_MESSAGE(array_run.out,
                               array_run.out.find("\"state\":{\"element_size\":8,\"element_alignment\":8,\"length\":10,"
                                                  "\"has_lock\":true,") != std::string::npos);
        array.unlink();
    }

    void testShowsNamedPipeHoldersAndItsAwaitedOpener() {
        const std::string name = unique_name("tool-pipe");
        mproc::PipeConnection creator = mproc::Pipe::create(name);
        const std::string tid = std::to_string(::gettid());
        const ToolRun awaiting = run_tool({"show", name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(awaiting.err, 0, awaiting.status);
        CPPUNIT_ASSERT_MESSAGE(awaiting.out, awaiting.out.find("\"kind\":\"pipe\",\"valid\":true,") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(awaiting.out,
                               awaiting.out.find("\"duplex\":true,\"ring_size\":") != std::string::npos &&
                                   awaiting.out.find(",\"awaiting_opener\":true,\"end0_holder0_tid\":" + tid +
                                                     ",\"end0_holders\":1,\"end1_holders\":0,"
                                                     "\"end0_holder0_alive\":true}}\n") != std::string::npos);

        // An opener that holds end 1 and then dies: end 1 is opened for good and held by nobody.
        mproc::Event opened;
        ForkedChild opener([&] {
            mproc::PipeConnection end = mproc::Pipe::open(name);
            opened.set();
            ::pause();
        });
        CPPUNIT_ASSERT(opened.wait_for(10s));
        const ToolRun held = run_tool({"show", name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(held.err, 0, held.status);
        CPPUNIT_ASSERT_MESSAGE(held.out, held.out.find("\"awaiting_opener\":false,\"end0_holder0_tid\":" + tid +
                                                       ",\"end0_holders\":1,\"end1_holder0_tid\":" +
                                                       std::to_string(opener.pid()) + ",\"end1_holders\":1,") !=
                                             std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(held.out, held.out.find("\"end1_holder0_alive\":true") != std::string::npos);
        opener.kill(SIGKILL);
        opener.wait();
        const ToolRun dead = run_tool({"show", name, "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(dead.err, 0, dead.status);
        CPPUNIT_ASSERT_MESSAGE(dead.out, dead.out.find("\"awaiting_opener\":false,\"end0_holder0_tid\":" + tid +
                                                       ",\"end0_holders\":1,\"end1_holders\":0,") !=
                                             std::string::npos);
        creator.unlink();
    }

    void testListsObjectsAndCorruptOnesWithTheReason() {
        const std::string good = unique_name("tool-ls-good");
        const std::string corrupt = unique_name("tool-ls-corrupt");
        const std::string foreign = unique_name("tool-ls-foreign");
        mproc::Event event = mproc::Event::create(good);
        write_file(corrupt, forged_object(mproc::ObjectKind::event, 9, 64));
        write_file(foreign, "not an mproc object at all");
        const ToolRun run = run_tool({"ls", "--json"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(run.err, 0, run.status);
        CPPUNIT_ASSERT(run.out.rfind("{\"schema\":1,\"objects\":[\n", 0) == 0);
        CPPUNIT_ASSERT_MESSAGE(run.out, run.out.find("{\"name\":\"" + good + "\",\"kind\":\"event\",\"valid\":true,"
                                                     "\"reason\":null,\"size\":192,\"layout_version\":1,"
                                                     "\"creator_pid\":" + std::to_string(::getpid()) +
                                                     ",\"creator_alive\":true,\"age_seconds\":") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(run.out, run.out.find("{\"name\":\"" + corrupt + "\",\"kind\":\"event\",\"valid\":false,"
                                                     "\"reason\":\"") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(run.out, run.out.find("layout version 9") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(run.out, run.out.find(foreign) == std::string::npos);
        const ToolRun table = run_tool({"ls"});
        CPPUNIT_ASSERT_EQUAL(0, table.status);
        CPPUNIT_ASSERT(table.out.find(good) != std::string::npos);
        CPPUNIT_ASSERT(table.out.find("invalid: ") != std::string::npos);
        event.unlink();
        ::shm_unlink(corrupt.c_str());
        ::shm_unlink(foreign.c_str());
    }

    void testShowRefusesCorruptAndForeignFiles() {
        const std::string truncated = unique_name("tool-truncated");
        const std::string version = unique_name("tool-version");
        const std::string payload = unique_name("tool-payload");
        const std::string foreign = unique_name("tool-foreign");
        write_file(truncated, forged_object(mproc::ObjectKind::lock, 1, 64).substr(0, 40));
        write_file(version, forged_object(mproc::ObjectKind::lock, 2, 64));
        write_file(payload, forged_object(mproc::ObjectKind::lock, 1, 64));  // a zero payload: no lock magic
        write_file(foreign, std::string(300, 'x'));
        for (const std::string& name : {truncated, version, payload}) {
            const ToolRun run = run_tool({"show", name, "--json"});
            CPPUNIT_ASSERT_EQUAL_MESSAGE(run.out + run.err, 1, run.status);
            CPPUNIT_ASSERT_MESSAGE(run.out, run.out.find("\"valid\":false,\"reason\":\"") != std::string::npos);
            CPPUNIT_ASSERT_MESSAGE(run.err, run.err.find("is invalid: ") != std::string::npos);
        }
        CPPUNIT_ASSERT(run_tool({"show", truncated}).err.find("truncated") != std::string::npos);
        CPPUNIT_ASSERT(run_tool({"show", version}).err.find("layout version 2") != std::string::npos);
        const ToolRun foreign_run = run_tool({"show", foreign});
        CPPUNIT_ASSERT_EQUAL(1, foreign_run.status);
        CPPUNIT_ASSERT(foreign_run.err.find("not an mproc object") != std::string::npos);
        const ToolRun missing = run_tool({"show", unique_name("tool-missing")});
        CPPUNIT_ASSERT_EQUAL(1, missing.status);
        CPPUNIT_ASSERT(missing.err.find("No such file") != std::string::npos);
        for (const std::string& name : {truncated, version, payload, foreign}) ::shm_unlink(name.c_str());
    }

    void testRmRemovesOnlyObjectsNobodyUsesWithDeadCreators() {
        const std::string stale = unique_name("tool-stale");
        const std::string in_use = unique_name("tool-in-use");
        const std::string creator_lives = unique_name("tool-creator-lives");
        // Created by children that have exited: creators dead.
        ForkedChild make_stale([&] { const mproc::Event created = mproc::Event::create(stale); });
        CPPUNIT_ASSERT_EQUAL(0, make_stale.wait());
        ForkedChild make_in_use([&] { const mproc::Event created = mproc::Event::create(in_use); });
        CPPUNIT_ASSERT_EQUAL(0, make_in_use.wait());
        {
            const mproc::Event created = mproc::Event::create(creator_lives);  // this process created it
        }                                                                      // and no longer maps it
        mproc::Event mapped_ready;
        mproc::Event done;
        ForkedChild user([&] {
            mproc::Event mapped = mproc::Event::open(in_use);
            mapped_ready.set();
            done.wait();
        });
        CPPUNIT_ASSERT(mapped_ready.wait_for(10s));

        const ToolRun dry = run_tool({"rm", "--stale", "--dry-run"});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(dry.err, 0, dry.status);
        CPPUNIT_ASSERT_MESSAGE(dry.out, dry.out.find("would remove " + stale + "\n") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(dry.out, dry.out.find(in_use) == std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(dry.out, dry.out.find(creator_lives) == std::string::npos);
        CPPUNIT_ASSERT_EQUAL(0, ::access(("/dev/shm" + stale).c_str(), F_OK));  // a dry run removes nothing

        const ToolRun rm = run_tool({"rm", stale, in_use, creator_lives});
        CPPUNIT_ASSERT_EQUAL_MESSAGE(rm.out + rm.err, 1, rm.status);
        CPPUNIT_ASSERT_EQUAL("removed " + stale + "\n", rm.out);
        const std::string refused_in_use = in_use + " not removed: in use by pid " + std::to_string(user.pid());
        CPPUNIT_ASSERT_MESSAGE(rm.err, rm.err.find(refused_in_use) != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(rm.err, rm.err.find(creator_lives + " not removed: its creator, pid " +
                                                   std::to_string(::getpid()) + ", is alive") != std::string::npos);
        CPPUNIT_ASSERT(::access(("/dev/shm" + stale).c_str(), F_OK) != 0);
        CPPUNIT_ASSERT_EQUAL(0, ::access(("/dev/shm" + in_use).c_str(), F_OK));
        CPPUNIT_ASSERT_EQUAL(0, ::access(("/dev/shm" + creator_lives).c_str(), F_OK));
        done.set();
        CPPUNIT_ASSERT_EQUAL(0, user.wait());
        ::shm_unlink(in_use.c_str());
        ::shm_unlink(creator_lives.c_str());
    }

    void testCreatorPidReusedByAYoungerProcessIsNotAlive() {
        const std::string name = unique_name("tool-reused-pid");
        write_file(name, forged_object(mproc::ObjectKind::event, 1, 64));
        // The tool allows one second between the clocks; a process started later than that is younger.
        std::this_thread::sleep_for(2200ms);
        ForkedChild younger([] { ::pause(); });
        const auto set_creator = [&](pid_t pid) {
            const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
            CPPUNIT_ASSERT(fd >= 0);
            const std::int32_t creator = pid;
            CPPUNIT_ASSERT_EQUAL(static_cast<ssize_t>(sizeof creator),
                                 ::pwrite(fd, &creator, sizeof creator, offsetof(mproc::ObjectHeader, creator_pid)));
            ::close(fd);
        };
        set_creator(younger.pid());  // alive, but not the process that created the object: a reused pid
        const ToolRun reused = run_tool({"ls", "--json"});
        CPPUNIT_ASSERT_MESSAGE(reused.out, reused.out.find("\"creator_pid\":" + std::to_string(younger.pid()) +
                                                           ",\"creator_alive\":false") != std::string::npos);
        set_creator(::getpid());  // started before the object: may be its creator
        const ToolRun older = run_tool({"ls", "--json"});
        CPPUNIT_ASSERT_MESSAGE(older.out, older.out.find("\"name\":\"" + name + "\"") != std::string::npos);
        CPPUNIT_ASSERT_MESSAGE(older.out, older.out.find("\"creator_pid\":" + std::to_string(::getpid()) +
                                                         ",\"creator_alive\":true") != std::string::npos);
        younger.kill(SIGKILL);
        younger.wait();
        ::shm_unlink(name.c_str());
    }

    void testUsageErrorsExitTwoAndHelpExitsZero() {
        CPPUNIT_ASSERT_EQUAL(2, run_tool({}).status);
        CPPUNIT_ASSERT_EQUAL(2, run_tool({"frobnicate"}).status);
        CPPUNIT_ASSERT_EQUAL(2, run_tool({"show"}).status);
        CPPUNIT_ASSERT_EQUAL(2, run_tool({"show", "a/b"}).status);
        CPPUNIT_ASSERT_EQUAL(2, run_tool({"rm"}).status);
        CPPUNIT_ASSERT_EQUAL(2, run_tool({"rm", "--dry-run", "x"}).status);
        CPPUNIT_ASSERT_EQUAL(2, run_tool({"ls", "--bogus"}).status);
        for (const char* command : {"ls", "show", "rm"}) {
            const ToolRun help = run_tool({command, "--help"});
            CPPUNIT_ASSERT_EQUAL(0, help.status);
            CPPUNIT_ASSERT(help.out.rfind(std::string("usage: mproc ") + command, 0) == 0);
        }
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(ToolTest, "unit");

}  // namespace
