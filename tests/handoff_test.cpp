// tests/handoff_test.cpp — descriptors between processes: every handle kind's from_fd()/fd() (the same object
// through a duplicated descriptor; another kind's memfd, a truncated or unsealed memfd and a pipe refused),
// FdConnection::send_handle/recv_handle (framed messages and handles interleaved in any order while the
// read-ahead holds several; each out of order → a clear error; a handle inside a message; the peer closing;
// pipes and TCP refused; nothing leaks: /proc/self/fd counted), Python's multiprocessing.reduction in both
// directions with the real python3, and send_object/recv_object to an exec'd, unrelated process that uses
// the Queue and Lock it received and dies holding the Lock (crash suite: the parent sees OwnerDied).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/handoff.hpp"
#include "mproc/pipe.hpp"
#include "mproc/listener.hpp"
#include "scm_rights.hpp"

namespace {

using namespace std::chrono_literals;

// Connection pairs are taken as `ends` and named by reference, not by a structured binding: lambdas
// capture them, and clang 14 refuses to capture structured bindings.
using mproc::FdConnection;
using mproc::InvalidObject;
using mproc::UniqueFd;
using mproc::test::assert_contains;
using mproc::test::ForkedChild;
using mproc::test::message_of;

// ---- helpers ----

std::size_t open_descriptors() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
    return count;  // includes the directory iterator's own descriptor, the same every time
}

// Runs body; fails unless the process holds as many descriptors afterwards as before.
template <class Body>
void assert_no_descriptor_leak(Body body) {
    const std::size_t before = open_descriptors();
    body();
    CPPUNIT_ASSERT_EQUAL(before, open_descriptors());
}

std::span<const std::byte> bytes_of(std::string_view text) { return std::as_bytes(std::span(text.data(), text.size())); }

std::string text_of(const std::vector<std::byte>& bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

struct PipeEnds {
    UniqueFd read;
    UniqueFd write;
};

PipeEnds make_pipe() {
    int fds[2];
    CPPUNIT_ASSERT(::pipe2(fds, O_CLOEXEC) == 0);
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Reads until end of file; fails the test (instead of hanging) when a writer stays open past 10 s, which is
// what a leaked copy of the write end looks like.
std::string read_to_end(int fd) {
    std::string text;
    char chunk[256];
    for (;;) {
        pollfd entry{fd, POLLIN, 0};
        CPPUNIT_ASSERT_MESSAGE("no end of file within 10 s: a copy of the write end is still open",
                               ::poll(&entry, 1, 10000) > 0);
        const ssize_t got = ::read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        CPPUNIT_ASSERT_MESSAGE(std::string("read: ") + std::strerror(errno), got >= 0);
        if (got == 0) return text;
        text.append(chunk, static_cast<std::size_t>(got));
    }
}

void write_text(int fd, std::string_view text) {
    CPPUNIT_ASSERT_EQUAL(static_cast<ssize_t>(text.size()), ::write(fd, text.data(), text.size()));
}

UniqueFd duplicate(int fd) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    CPPUNIT_ASSERT(copy >= 0);
    return UniqueFd(copy);
}

// A memfd of `size` bytes holding `bytes` at its start, sealed as mproc seals anonymous objects (or not).
UniqueFd memfd_holding(std::span<const std::byte> bytes, std::size_t size, bool sealed) {
    UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, "handoff-test", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
    CPPUNIT_ASSERT(fd.valid());
    CPPUNIT_ASSERT(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
    if (!bytes.empty())
        CPPUNIT_ASSERT_EQUAL(static_cast<ssize_t>(bytes.size()), ::pwrite(fd.get(), bytes.data(), bytes.size(), 0));
    if (sealed) CPPUNIT_ASSERT(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
    return fd;
}

// Both backends of the receiving side of a socketpair (MPROC_DISABLE_IO_URING picks read/write).
std::pair<FdConnection, FdConnection> socket_pair(bool io_uring) {
    if (!io_uring) ::setenv("MPROC_DISABLE_IO_URING", "1", 1);
    auto pair = mproc::fd_pipe(true);
    ::unsetenv("MPROC_DISABLE_IO_URING");
    return pair;
}

std::string script_path(const std::string& name) {
    if (const char* python_peer = std::getenv("MPROC_PYTHON_PEER"))
        return (std::filesystem::path(python_peer).parent_path() / name).string();
    return (std::filesystem::path(__FILE__).parent_path() / name).string();
}

// python3 tests/handoff_peer.py MODE with `socket` as its descriptor 3.
class PythonPeer {
public:
    PythonPeer(const std::string& mode, int socket) {
        const std::string script = script_path("handoff_peer.py");
        if (!std::filesystem::exists(script)) MPROC_SKIP("python peer script not found at " + script);
        if (::access("/usr/bin/python3", X_OK) != 0 && ::access("/usr/local/bin/python3", X_OK) != 0)
            MPROC_SKIP("python3 not installed");
        child_.emplace([&] {
            if (::dup2(socket, 3) < 0) std::_Exit(126);  // dup2 clears close-on-exec on 3
            const char* argv[] = {"python3", script.c_str(), mode.c_str(), nullptr};
            ::execvp("python3", const_cast<char* const*>(argv));
            std::_Exit(127);
        });
    }
    int exit_code() {
        const int status = child_->wait(60s);
        CPPUNIT_ASSERT_MESSAGE("python peer did not exit normally", WIFEXITED(status));
        return WEXITSTATUS(status);
    }

private:
    std::optional<ForkedChild> child_;
};

// ---- the unrelated process: this binary exec'd again with MPROC_HANDOFF_CHILD set ----

constexpr char kChildMode[] = "MPROC_HANDOFF_CHILD";
constexpr char kChildSocket[] = "MPROC_HANDOFF_SOCKET";
constexpr std::int64_t kChildItems = 100;

// What the exec'd child does: connect to the Listener, receive a Queue<int64> and a Lock, put
// 1..kChildItems, then take the Lock, say "locked" and wait to be killed (or, in "release" mode, release
// it and say "released"). Runs before main(): the test runner never starts in the child.
[[noreturn]] void run_child(const std::string& mode, const std::string& socket_path) {
    int status = 0;
    try {
        FdConnection connection = mproc::Client(mproc::SocketAddress::unix_socket(socket_path), std::nullopt, 10s);
        auto queue = mproc::recv_object<mproc::Queue<std::int64_t>>(connection);
        mproc::Lock lock = mproc::recv_object<mproc::Lock>(connection);
        for (std::int64_t i = 1; i <= kChildItems; ++i) queue.put(i);
        lock.lock();
        if (mode == "release") {
            lock.unlock();
            connection.send_bytes(bytes_of("released"));
        } else {
            connection.send_bytes(bytes_of("locked"));
            for (;;) ::pause();  // SIGKILLed here, holding the lock
        }
    } catch (const std::exception& error) {
        ::fprintf(stderr, "handoff child: %s\n", error.what());
        status = 1;
    }
    std::_Exit(status);
}

struct ChildDispatch {
    ChildDispatch() {
        const char* mode = std::getenv(kChildMode);
        const char* socket_path = std::getenv(kChildSocket);
        if (mode != nullptr && socket_path != nullptr) run_child(mode, socket_path);
    }
} child_dispatch;

// Starts this binary again (fork + exec: a new image that inherited no mapping of ours) as the child above.
class ExecedChild {
public:
    ExecedChild(const std::string& mode, const std::string& socket_path)
        : child_([&] {
              ::setenv(kChildMode, mode.c_str(), 1);
              ::setenv(kChildSocket, socket_path.c_str(), 1);
              const char* argv[] = {"handoff_test", nullptr};
              ::execv("/proc/self/exe", const_cast<char* const*>(argv));
              std::_Exit(127);
          }) {}
    ForkedChild& process() { return child_; }

private:
    ForkedChild child_;
};

std::string socket_path_for(const std::string& tag) {
    return (std::filesystem::temp_directory_path() / ("mproc-handoff-" + std::to_string(::getpid()) + "-" + tag))
        .string();
}

// The parent's half with the exec'd child: listen, start it in `mode`, hand it an anonymous Queue and Lock,
// wait for its `reply`, then read the 1..kChildItems it put into the queue.
struct UnrelatedPeer {
    UnrelatedPeer(const std::string& mode, const std::string& reply)
        : path(socket_path_for(mode)), listener(mproc::SocketAddress::unix_socket(path)), child(mode, path) {
        connection = listener.accept(30s);
        CPPUNIT_ASSERT_MESSAGE("the exec'd child never connected", connection.has_value());
        mproc::send_object(*connection, queue);
        mproc::send_object(*connection, lock);
        CPPUNIT_ASSERT_EQUAL(reply, text_of(connection->recv_bytes()));
        for (std::int64_t i = 1; i <= kChildItems; ++i) CPPUNIT_ASSERT_EQUAL(i, queue.get(true, 10s));
    }

    std::string path;
    mproc::Listener listener;
    ExecedChild child;
    std::optional<FdConnection> connection;
    mproc::Queue<std::int64_t> queue{128};
    mproc::Lock lock;
};

// ---- from_fd on every kind ----

class FromFdTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(FromFdTest);
    CPPUNIT_TEST(testEverySynchronisationKindAttachesThroughADuplicatedFd);
    CPPUNIT_TEST(testEveryDataKindAttachesThroughADuplicatedFd);
    CPPUNIT_TEST(testEveryQueueKindAttachesThroughADuplicatedFd);
    CPPUNIT_TEST(testNamedObjectsHaveNoFd);
    CPPUNIT_TEST(testAnotherKindsMemfdIsRefused);
    CPPUNIT_TEST(testTruncatedUnsealedAndNonMemfdDescriptorsAreRefused);
    CPPUNIT_TEST_SUITE_END();

public:
    void testEverySynchronisationKindAttachesThroughADuplicatedFd() {
        assert_no_descriptor_leak([&] {
            mproc::Lock lock;
            mproc::Lock other = mproc::Lock::from_fd(duplicate(lock.fd()).get());
            CPPUNIT_ASSERT(other.fd() >= 0 && other.fd() != lock.fd());
            // (One thread holds a robust lock through one mapping: its robust-list node is in that mapping.)
            lock.lock();
            CPPUNIT_ASSERT(other.locked());
            lock.unlock();
            CPPUNIT_ASSERT(!other.locked());
            other.lock();
            CPPUNIT_ASSERT(lock.locked());
            other.unlock();

            mproc::RLock rlock;
            mproc::RLock other_rlock = mproc::RLock::from_fd(duplicate(rlock.fd()).get());
            other_rlock.acquire();
            other_rlock.acquire();
            CPPUNIT_ASSERT_EQUAL(2u, other_rlock.depth());
            // Another process, through the original mapping, finds it held.
            mproc::test::run_in_processes(1, [&](int) { CPPUNIT_ASSERT(!rlock.try_lock()); });
            other_rlock.release();
            other_rlock.release();
            mproc::test::run_in_processes(1, [&](int) {
                CPPUNIT_ASSERT(rlock.try_lock());
                rlock.unlock();
            });

            mproc::Semaphore semaphore(3);
            mproc::Semaphore other_semaphore = mproc::Semaphore::from_fd(duplicate(semaphore.fd()).get());
            CPPUNIT_ASSERT(other_semaphore.acquire(false));
            CPPUNIT_ASSERT_EQUAL(2u, semaphore.get_value());

            mproc::BoundedSemaphore bounded(2);
            mproc::BoundedSemaphore other_bounded = mproc::BoundedSemaphore::from_fd(duplicate(bounded.fd()).get());
            CPPUNIT_ASSERT_EQUAL(2u, other_bounded.bound());
            CPPUNIT_ASSERT(bounded.acquire(false));
            CPPUNIT_ASSERT_EQUAL(1u, other_bounded.get_value());

            mproc::Event event;
            mproc::Event other_event = mproc::Event::from_fd(duplicate(event.fd()).get());
            event.set();
            CPPUNIT_ASSERT(other_event.is_set());

            mproc::Condition condition;
            mproc::Condition other_condition = mproc::Condition::from_fd(duplicate(condition.fd()).get());
            other_condition.acquire();
            CPPUNIT_ASSERT(other_condition.held_by_this_thread());
            CPPUNIT_ASSERT(!other_condition.wait(1ms));  // times out, re-acquires
            other_condition.release();
            CPPUNIT_ASSERT(condition.acquire(false));
            condition.release();

            mproc::Barrier barrier(1);
            mproc::Barrier other_barrier = mproc::Barrier::from_fd(duplicate(barrier.fd()).get());
            CPPUNIT_ASSERT_EQUAL(1u, other_barrier.parties());
            other_barrier.abort();
            CPPUNIT_ASSERT(barrier.broken());
        });
    }

    void testEveryDataKindAttachesThroughADuplicatedFd() {
        assert_no_descriptor_leak([&] {
            mproc::SharedMemory memory = mproc::SharedMemory::anonymous(100);
            mproc::SharedMemory other_memory = mproc::SharedMemory::attach(duplicate(memory.fd()).get());
            memory.bytes()[99] = std::byte{42};
            CPPUNIT_ASSERT_EQUAL(std::byte{42}, other_memory.bytes()[99]);

            mproc::Value<std::int64_t> value(5);
            auto other_value = mproc::Value<std::int64_t>::from_fd(duplicate(value.fd()).get());
            other_value.store(6);
            CPPUNIT_ASSERT_EQUAL(std::int64_t{6}, value.load());
            // Another T is refused as a named open refuses it.
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Value<double>::from_fd(value.fd()); }), "value");

            mproc::Array<std::int32_t> array(8);
            auto other_array = mproc::Array<std::int32_t>::from_fd(duplicate(array.fd()).get(), 8);
            array[7] = 11;
            CPPUNIT_ASSERT_EQUAL(std::int32_t{11}, other_array[7]);
            CPPUNIT_ASSERT_THROW((void)mproc::Array<std::int32_t>::from_fd(array.fd(), 9), InvalidObject);
        });
    }

    void testEveryQueueKindAttachesThroughADuplicatedFd() {
        assert_no_descriptor_leak([&] {
            mproc::Queue<std::int64_t> queue(8);
            auto other_queue = mproc::Queue<std::int64_t>::from_fd(duplicate(queue.fd()).get());
            queue.put(7);
            CPPUNIT_ASSERT_EQUAL(std::int64_t{7}, other_queue.get());
            // The slot size must match, as for a named open.
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Queue<std::int32_t>::from_fd(queue.fd()); }),
                            "queue (fd ");

            mproc::Queue<std::string> strings(8);
            auto other_strings = mproc::Queue<std::string>::from_fd(duplicate(strings.fd()).get());
            strings.put("encoded");
            CPPUNIT_ASSERT_EQUAL(std::string("encoded"), other_strings.get());

            mproc::ByteQueue bytes(64, 8);
            mproc::ByteQueue other_bytes = mproc::ByteQueue::from_fd(duplicate(bytes.fd()).get());
            bytes.put(std::string_view("raw bytes"));
            CPPUNIT_ASSERT_EQUAL(std::string("raw bytes"), text_of(other_bytes.get()));

            mproc::SimpleQueue<std::int32_t> simple(8);
            auto other_simple = mproc::SimpleQueue<std::int32_t>::from_fd(duplicate(simple.fd()).get());
            simple.put(3);
            CPPUNIT_ASSERT_EQUAL(std::int32_t{3}, other_simple.get());

            mproc::JoinableQueue<std::int32_t> joinable(8);
            auto other_joinable = mproc::JoinableQueue<std::int32_t>::from_fd(duplicate(joinable.fd()).get());
            joinable.put(4);
            CPPUNIT_ASSERT_EQUAL(std::int32_t{4}, other_joinable.get());
            other_joinable.task_done();
            CPPUNIT_ASSERT(joinable.join(0ms));
        });
    }

    void testNamedObjectsHaveNoFd() {
        const std::string name = mproc::test::unique_name("handoff-named");
        mproc::Lock lock = mproc::Lock::create(name);
        CPPUNIT_ASSERT_EQUAL(-1, lock.fd());
        lock.unlink();
        mproc::Queue<int> queue = mproc::Queue<int>::create(name, 4);
        CPPUNIT_ASSERT_EQUAL(-1, queue.fd());
        queue.unlink();
        auto ends = mproc::fd_pipe(true);
        [[maybe_unused]] mproc::FdConnection& left = ends.first;
        [[maybe_unused]] mproc::FdConnection& right = ends.second;
        assert_contains(message_of<mproc::ValueError>([&] { mproc::send_object(left, queue); }), "open it by name");
    }

    void testAnotherKindsMemfdIsRefused() {
        assert_no_descriptor_leak([&] {
            mproc::Lock lock;
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Queue<int>::from_fd(lock.fd()); }), "kind");
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Event::from_fd(lock.fd()); }), "kind");
            mproc::Semaphore semaphore(1);
            // Same ObjectKind, another structure: the payload's validation tells them apart.
            CPPUNIT_ASSERT_THROW((void)mproc::BoundedSemaphore::from_fd(semaphore.fd()), InvalidObject);
            mproc::Condition over_lock(lock);
            CPPUNIT_ASSERT_THROW((void)mproc::Condition::from_fd(over_lock.fd()), InvalidObject);
        });
    }

    void testTruncatedUnsealedAndNonMemfdDescriptorsAreRefused() {
        assert_no_descriptor_leak([&] {
            // A real lock's header and payload bytes, in a file cut short after 100 bytes (sealed).
            mproc::Lock lock;
            const std::span<const std::byte> header(
                reinterpret_cast<const std::byte*>(lock.segment().bytes().data()) - mproc::kObjectHeaderSize,
                mproc::kObjectHeaderSize + mproc::RawLock::kSize);
            const UniqueFd truncated = memfd_holding(header.first(100), 100, true);
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Lock::from_fd(truncated.get()); }), "truncated");
            // The same bytes whole but unsealed: a holder could shrink it under our mapping.
            const UniqueFd unsealed = memfd_holding(header, header.size(), false);
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Lock::from_fd(unsealed.get()); }),
                            "not sealed against shrinking");
            // Whole and sealed: accepted (the check above was the seal, not the bytes).
            const UniqueFd copy = memfd_holding(header, header.size(), true);
            CPPUNIT_ASSERT(!mproc::Lock::from_fd(copy.get()).locked());
            // Garbage: another magic.
            const std::vector<std::byte> garbage(4096, std::byte{0x5a});
            const UniqueFd hostile = memfd_holding(garbage, garbage.size(), true);
            CPPUNIT_ASSERT_THROW((void)mproc::Queue<int>::from_fd(hostile.get()), InvalidObject);
            // Not a memory file at all.
            const PipeEnds pipe = make_pipe();
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Lock::from_fd(pipe.read.get()); }),
                            "not a memory file");
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::Queue<int>::from_fd(left.fileno()); }),
                            "not a memory file");
            const auto error = [] {
                try {
                    (void)mproc::Event::from_fd(-1);
                } catch (const mproc::SystemError& caught) {
                    return caught.error_number();
                }
                return 0;
            }();
            CPPUNIT_ASSERT_EQUAL(EBADF, error);
        });
    }
};

// ---- send_handle / recv_handle ----

class HandleTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(HandleTest);
    CPPUNIT_TEST(testHandleArrivesAsANewCloseOnExecDescriptor);
    CPPUNIT_TEST(testMessagesAndHandlesInterleaveWithReadAheadOnBothBackends);
    CPPUNIT_TEST(testHandleWhereMessageExpectedIsRefusedAndClosed);
    CPPUNIT_TEST(testMessageWhereHandleExpectedIsLeftInPlace);
    CPPUNIT_TEST(testHandleInsideAMessageClosesTheConnectionForReading);
    CPPUNIT_TEST(testPeerClosingMidWayEndsWithClosed);
    CPPUNIT_TEST(testDescriptorsThatCannotBeInstalledAreAClearError);
    CPPUNIT_TEST(testUnreadHandlesAreClosedWithTheConnection);
    CPPUNIT_TEST(testPipesAndTcpRefuseHandles);
    CPPUNIT_TEST(testPythonReceivesAHandle);
    CPPUNIT_TEST(testPythonSendsAHandle);
    CPPUNIT_TEST_SUITE_END();

public:
    void testHandleArrivesAsANewCloseOnExecDescriptor() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            PipeEnds pipe = make_pipe();
            left.send_handle(pipe.write.get());
            UniqueFd received = right.recv_handle();
            CPPUNIT_ASSERT(received.get() != pipe.write.get());
            CPPUNIT_ASSERT((::fcntl(received.get(), F_GETFD) & FD_CLOEXEC) != 0);
            write_text(received.get(), "through the passed end");
            received.reset();
            pipe.write.reset();
            CPPUNIT_ASSERT_EQUAL(std::string("through the passed end"), read_to_end(pipe.read.get()));
        });
    }

    // The sender writes everything before the receiver reads, so each read-ahead holds many items.
    void testMessagesAndHandlesInterleaveWithReadAheadOnBothBackends() {
        for (const bool io_uring : {true, false}) {
            assert_no_descriptor_leak([&] {
                auto ends = socket_pair(io_uring);
                [[maybe_unused]] mproc::FdConnection& left = ends.first;
                [[maybe_unused]] mproc::FdConnection& right = ends.second;
                mproc::Event event;  // its memfd is the descriptor passed around
                std::mt19937 random(io_uring ? 17 : 18);
                std::vector<int> order;  // 0: a message, 1: a handle, 2: a large message (past the read-ahead)
                for (int i = 0; i < 300; ++i) order.push_back(static_cast<int>(random() % 7 == 0 ? 2 : random() % 2));
                order.insert(order.end(), {1, 1, 1, 0, 0, 0, 1, 2, 1});  // runs of each in a row
                std::exception_ptr sender_failure;
                std::thread sender([&] {
                    try {
                    for (std::size_t i = 0; i < order.size(); ++i) {
                        if (order[i] == 1) {
                            left.send_handle(event.fd());
                        } else {
                            const std::string message = "message " + std::to_string(i);
                            std::string body = order[i] == 2 ? std::string(100000, 'x') + message : message;
                            left.send_bytes(bytes_of(body));
                        }
                    }
                    } catch (...) {
                        sender_failure = std::current_exception();
                    }
                });
                // A failed assertion below must not leave the sender blocked and its thread joinable.
                struct StopSender {
                    std::thread& thread;
                    FdConnection& receiver;
                    ~StopSender() {
                        if (!thread.joinable()) return;
                        if (!receiver.closed()) ::shutdown(receiver.fileno(), SHUT_RDWR);
                        thread.join();
                    }
                } stop_sender{sender, right};
                std::this_thread::sleep_for(20ms);  // let the socket fill before the first read
                for (std::size_t i = 0; i < order.size(); ++i) {
                    if (order[i] == 1) {
                        const UniqueFd fd = right.recv_handle();
                        CPPUNIT_ASSERT(mproc::Event::from_fd(fd.get()).fd() >= 0);
                    } else {
                        const std::string message = "message " + std::to_string(i);
                        const std::string expected = order[i] == 2 ? std::string(100000, 'x') + message : message;
                        if (i % 3 == 0 && order[i] == 0) {
                            char buffer[64];
                            const std::size_t size = right.recv_bytes_into(std::as_writable_bytes(std::span(buffer)));
                            CPPUNIT_ASSERT_EQUAL(expected, std::string(buffer, size));
                        } else {
                            CPPUNIT_ASSERT_EQUAL(expected, text_of(right.recv_bytes()));
                        }
                    }
                }
                sender.join();
                if (sender_failure) std::rethrow_exception(sender_failure);
                CPPUNIT_ASSERT(!right.poll());
            });
        }
    }

    void testHandleWhereMessageExpectedIsRefusedAndClosed() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            PipeEnds pipe = make_pipe();
            left.send_handle(pipe.write.get());
            left.send_bytes(bytes_of("next"));
            left.close();  // a receiver that misreads the stream meets its end instead of waiting for ever
            const std::string message = [&] {
                try {
                    (void)right.recv_bytes();
                } catch (const mproc::SystemError& error) {
                    CPPUNIT_ASSERT_EQUAL(EPROTO, error.error_number());
                    return std::string(error.what());
                }
                CPPUNIT_FAIL("recv_bytes accepted a handle");
                return std::string();
            }();
            assert_contains(message, "connection fd ");
            assert_contains(message, "a handle (1 descriptors sent with send_handle) where a framed message was expected");
            // The handle's descriptor was closed: the pipe's only writer left is ours.
            pipe.write.reset();
            CPPUNIT_ASSERT_EQUAL(std::string(), read_to_end(pipe.read.get()));
            // The stream goes on after the refused handle.
            CPPUNIT_ASSERT(right.readable());
            CPPUNIT_ASSERT_EQUAL(std::string("next"), text_of(right.recv_bytes()));
        });
    }

    void testMessageWhereHandleExpectedIsLeftInPlace() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            mproc::Event event;
            left.send_bytes(bytes_of("a message"));
            left.send_handle(event.fd());
            assert_contains(message_of<mproc::StateError>([&] { (void)right.recv_handle(); }),
                            "the next item is a framed message, not a handle");
            CPPUNIT_ASSERT_EQUAL(std::string("a message"), text_of(right.recv_bytes()));
            CPPUNIT_ASSERT(right.recv_handle().valid());
        });
    }

    // A hostile peer: a header announcing 10 bytes, then a byte with a descriptor, then the rest.
    void testHandleInsideAMessageClosesTheConnectionForReading() {
        assert_no_descriptor_leak([&] {
            int fds[2];
            CPPUNIT_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
            UniqueFd raw(fds[0]);
            FdConnection right = FdConnection::from_fd(fds[1]);
            PipeEnds pipe = make_pipe();
            const unsigned char header[] = {0, 0, 0, 10};
            CPPUNIT_ASSERT_EQUAL(ssize_t{4}, ::send(raw.get(), header, 4, MSG_NOSIGNAL));
            const std::byte one{1};
            const int passed[] = {pipe.write.get()};
            mproc::detail::scm_rights::send(raw.get(), {&one, 1}, passed, "test");
            CPPUNIT_ASSERT_EQUAL(ssize_t{9}, ::send(raw.get(), "123456789", 9, MSG_NOSIGNAL));
            const std::string message = message_of<mproc::SystemError>([&] { (void)right.recv_bytes(); });
            assert_contains(message, "inside a message: the descriptors were closed");
            CPPUNIT_ASSERT(!right.readable());
            pipe.write.reset();
            CPPUNIT_ASSERT_EQUAL(std::string(), read_to_end(pipe.read.get()));  // no copy of the writer is left
        });
        // The same inside a body long enough to be read in place, past the read-ahead (both receive paths).
        for (const bool into_buffer : {false, true}) {
            assert_no_descriptor_leak([&] {
                int fds[2];
                CPPUNIT_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
                UniqueFd raw(fds[0]);
                FdConnection right = FdConnection::from_fd(fds[1]);
                PipeEnds pipe = make_pipe();
                constexpr std::size_t kBody = 300000;
                std::thread hostile([&] {
                    const unsigned char header[] = {0, 0x04, 0x93, 0xe0};  // 300000
                    const std::string half(kBody / 2, 'b');
                    const std::byte one{1};
                    const int passed[] = {pipe.write.get()};
                    try {
                        (void)::send(raw.get(), header, 4, MSG_NOSIGNAL);
                        (void)::send(raw.get(), half.data(), half.size(), MSG_NOSIGNAL);
                        mproc::detail::scm_rights::send(raw.get(), {&one, 1}, passed, "test");
                        (void)::send(raw.get(), half.data(), half.size() - 1, MSG_NOSIGNAL);
                    } catch (const mproc::Error&) {
                        // the receiver closed first: fine
                    }
                });
                struct JoinHostile {  // a failed assertion below must not leave the thread joinable
                    std::thread& thread;
                    int socket;
                    ~JoinHostile() {
                        if (!thread.joinable()) return;
                        ::shutdown(socket, SHUT_RDWR);
                        thread.join();
                    }
                } join_hostile{hostile, raw.get()};
                std::vector<std::byte> buffer(kBody);
                const std::string message = message_of<mproc::SystemError>([&] {
                    if (into_buffer) (void)right.recv_bytes_into(buffer);
                    else (void)right.recv_bytes();
                });
                assert_contains(message, "inside a message: the descriptors were closed");
                CPPUNIT_ASSERT(!right.readable());
                right.close();
                hostile.join();
                pipe.write.reset();
                CPPUNIT_ASSERT_EQUAL(std::string(), read_to_end(pipe.read.get()));
            });
        }
    }

    void testPeerClosingMidWayEndsWithClosed() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            mproc::Event event;
            left.send_bytes(bytes_of("first"));
            left.send_handle(event.fd());
            left.close();
            CPPUNIT_ASSERT_EQUAL(std::string("first"), text_of(right.recv_bytes()));
            CPPUNIT_ASSERT(right.recv_handle().valid());
            CPPUNIT_ASSERT_THROW((void)right.recv_handle(), mproc::Closed);
            CPPUNIT_ASSERT_THROW((void)right.recv_bytes(), mproc::Closed);
        });
        {
            // A peer process that dies after sending a handle: the receiver still gets it, then Closed.
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            ForkedChild child([&] {
                mproc::Event event;
                event.set();
                left.send_handle(event.fd());
                ::kill(::getpid(), SIGKILL);
            });
            left.close();
            CPPUNIT_ASSERT(mproc::Event::from_fd(right.recv_handle().get()).is_set());
            CPPUNIT_ASSERT_THROW((void)right.recv_bytes(), mproc::Closed);
            child.wait();
        }
    }

    // A receiver at its descriptor limit: the kernel installs none and reports MSG_CTRUNC.
    void testDescriptorsThatCannotBeInstalledAreAClearError() {
        auto ends = mproc::fd_pipe(true);
        [[maybe_unused]] mproc::FdConnection& left = ends.first;
        [[maybe_unused]] mproc::FdConnection& right = ends.second;
        mproc::Event event;
        left.send_bytes(bytes_of("first"));
        left.send_handle(event.fd());
        mproc::test::run_in_processes(1, [&](int) {
            const std::size_t before = open_descriptors();
            rlimit saved{};
            CPPUNIT_ASSERT(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
            const int lowest_free = ::dup(0);  // every number below it is in use
            CPPUNIT_ASSERT(lowest_free >= 0);
            ::close(lowest_free);
            rlimit tight = saved;
            tight.rlim_cur = static_cast<rlim_t>(lowest_free);
            CPPUNIT_ASSERT(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
            std::string message;
            try {
                CPPUNIT_ASSERT_EQUAL(std::string("first"), text_of(right.recv_bytes()));
                (void)right.recv_handle();
            } catch (const mproc::SystemError& error) {
                message = error.what();
            }
            CPPUNIT_ASSERT(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
            assert_contains(message, "MSG_CTRUNC");
            CPPUNIT_ASSERT(!right.readable());  // the handle's byte was taken: the stream cannot be followed
            CPPUNIT_ASSERT_EQUAL(before, open_descriptors());
        });
    }

    void testUnreadHandlesAreClosedWithTheConnection() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            PipeEnds pipe = make_pipe();
            for (int i = 0; i < 5; ++i) {
                left.send_handle(pipe.write.get());
                left.send_bytes(bytes_of("between"));
            }
            CPPUNIT_ASSERT(right.recv_handle().valid());
            CPPUNIT_ASSERT_EQUAL(std::string("between"), text_of(right.recv_bytes()));
            CPPUNIT_ASSERT(right.poll(1s));
            right.close();  // four handles unread, some in the read-ahead, some still in the socket
            pipe.write.reset();
            CPPUNIT_ASSERT_EQUAL(std::string(), read_to_end(pipe.read.get()));
        });
        assert_no_descriptor_leak([&] {
            // A moved connection carries its buffered handles; the destructor closes them.
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            mproc::Event event;
            left.send_bytes(bytes_of("x"));
            left.send_handle(event.fd());
            CPPUNIT_ASSERT_EQUAL(std::string("x"), text_of(right.recv_bytes()));
            FdConnection moved = std::move(right);
            CPPUNIT_ASSERT(moved.recv_handle().valid());
        });
    }

    void testPipesAndTcpRefuseHandles() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(false);
            mproc::FdConnection& reading = ends.first;
            mproc::FdConnection& writing = ends.second;
            mproc::Event event;
            assert_contains(message_of<mproc::StateError>([&] { writing.send_handle(event.fd()); }),
                            "send_handle: descriptors travel only over AF_UNIX stream sockets (SCM_RIGHTS); this "
                            "connection is a pipe");
            assert_contains(message_of<mproc::StateError>([&] { (void)reading.recv_handle(); }), "is a pipe");
            mproc::Listener listener(mproc::SocketAddress::tcp("127.0.0.1", 0));
            FdConnection client = mproc::Client(listener.address(), std::nullopt, 10s);
            FdConnection server = *listener.accept(10s);
            assert_contains(message_of<mproc::StateError>([&] { client.send_handle(event.fd()); }),
                            "socket of another family or type");
            assert_contains(message_of<mproc::StateError>([&] { (void)server.recv_handle(); }),
                            "socket of another family or type");
            // The TCP path is unchanged: messages still flow.
            client.send_bytes(bytes_of("tcp"));
            CPPUNIT_ASSERT_EQUAL(std::string("tcp"), text_of(server.recv_bytes()));
            auto socket_ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = socket_ends.first;
            [[maybe_unused]] mproc::FdConnection& right = socket_ends.second;
            assert_contains(message_of<mproc::ValueError>([&] { left.send_handle(-1); }), "invalid file descriptor");
        });
    }

    void testPythonReceivesAHandle() {
        auto ends = mproc::fd_pipe(true);
        [[maybe_unused]] mproc::FdConnection& left = ends.first;
        [[maybe_unused]] mproc::FdConnection& right = ends.second;
        PythonPeer peer("receive", right.fileno());
        right.close();
        PipeEnds pipe = make_pipe();
        left.send_bytes(bytes_of("before"));
        left.send_handle(pipe.write.get());
        left.send_bytes(bytes_of("after"));
        pipe.write.reset();
        CPPUNIT_ASSERT_EQUAL(std::string("python wrote"), read_to_end(pipe.read.get()));
        CPPUNIT_ASSERT_EQUAL(std::string("ok"), text_of(left.recv_bytes()));
        CPPUNIT_ASSERT_EQUAL(0, peer.exit_code());
    }

    void testPythonSendsAHandle() {
        for (const bool io_uring : {true, false}) {
            assert_no_descriptor_leak([&] {
                auto ends = socket_pair(io_uring);
                [[maybe_unused]] mproc::FdConnection& left = ends.first;
                [[maybe_unused]] mproc::FdConnection& right = ends.second;
                PythonPeer peer("send", right.fileno());
                right.close();
                CPPUNIT_ASSERT_EQUAL(std::string("before"), text_of(left.recv_bytes()));
                {
                    const UniqueFd fd = left.recv_handle();
                    write_text(fd.get(), io_uring ? "c++ wrote (io_uring)" : "c++ wrote (read/write)");
                }
                CPPUNIT_ASSERT_EQUAL(std::string("after"), text_of(left.recv_bytes()));
                CPPUNIT_ASSERT_EQUAL(std::string(io_uring ? "c++ wrote (io_uring)" : "c++ wrote (read/write)"),
                                     text_of(left.recv_bytes()));
                CPPUNIT_ASSERT_EQUAL(0, peer.exit_code());
            });
        }
    }
};

// ---- send_object / recv_object ----

class HandoffTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(HandoffTest);
    CPPUNIT_TEST(testRecvObjectGivesAValidatedHandleOnTheSameObject);
    CPPUNIT_TEST(testWrongKindIsRefusedAndItsDescriptorClosed);
    CPPUNIT_TEST(testPipeEndTravelsAndItsReceiverHoldsIt);
    CPPUNIT_TEST(testAMessageThatIsNotAHandoffIsRefused);
    CPPUNIT_TEST(testUnrelatedProcessUsesTheQueueAndLockItReceived);
    CPPUNIT_TEST_SUITE_END();

public:
    void testRecvObjectGivesAValidatedHandleOnTheSameObject() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            mproc::Queue<std::int64_t> queue(16);
            mproc::Lock lock;
            mproc::Value<double> value(1.5);
            mproc::Semaphore semaphore(4);
            mproc::SharedMemory memory = mproc::SharedMemory::anonymous(10);
            mproc::send_object(left, queue);
            mproc::send_object(left, lock);
            mproc::send_object(left, value);
            mproc::send_object(left, semaphore);
            mproc::send_object(left, memory);
            auto received_queue = mproc::recv_object<mproc::Queue<std::int64_t>>(right);
            auto received_lock = mproc::recv_object<mproc::Lock>(right);
            auto received_value = mproc::recv_object<mproc::Value<double>>(right);
            auto received_semaphore = mproc::recv_object<mproc::Semaphore>(right);
            auto received_memory = mproc::recv_object<mproc::SharedMemory>(right);
            received_queue.put(99);
            CPPUNIT_ASSERT_EQUAL(std::int64_t{99}, queue.get());
            received_lock.lock();
            CPPUNIT_ASSERT(lock.locked());
            received_lock.unlock();
            CPPUNIT_ASSERT_EQUAL(1.5, received_value.load());
            CPPUNIT_ASSERT_EQUAL(4u, received_semaphore.get_value());
            CPPUNIT_ASSERT_EQUAL(std::size_t{10}, received_memory.size());
        });
    }

    void testWrongKindIsRefusedAndItsDescriptorClosed() {
        assert_no_descriptor_leak([&] {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            mproc::Lock lock;
            mproc::Queue<int> queue(4);
            mproc::send_object(left, lock);
            mproc::send_object(left, queue);
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::recv_object<mproc::Queue<int>>(right); }),
                            "recv_object<queue>: the peer handed over a lock, expected a queue (the descriptor was closed)");
            // The stream stays aligned: the next hand-off arrives whole.
            auto received = mproc::recv_object<mproc::Queue<int>>(right);
            received.put(5);
            CPPUNIT_ASSERT_EQUAL(5, queue.get());
            // Same name, other T: from_fd's slot-size check.
            mproc::send_object(left, queue);
            CPPUNIT_ASSERT_THROW((void)mproc::recv_object<mproc::Queue<std::int64_t>>(right), InvalidObject);
        });
    }

    // The receiver of end 1 holds it: it gets what end 0 sends, and end 0 sees end 1 gone only once the
    // received handle closes too (the sender's own handle closed first). Not under assert_no_descriptor_leak:
    // received in the process that still holds the pipe's ends, the second mapping stays mapped (and its
    // descriptor open) for the life of the process, as src/pipe.cpp keeps any pipe segment that a thread of
    // the process may still hold (unmap_unless_still_listed); a receiver in another process has no such copy.
    void testPipeEndTravelsAndItsReceiverHoldsIt() {
        {
            auto ends = mproc::fd_pipe(true);
            [[maybe_unused]] mproc::FdConnection& left = ends.first;
            [[maybe_unused]] mproc::FdConnection& right = ends.second;
            auto [pipe_end0, pipe_end1] = mproc::Pipe();
            mproc::Lock lock;
            mproc::send_object(left, lock);
            mproc::send_object(left, pipe_end1);
            assert_contains(message_of<InvalidObject>([&] { (void)mproc::recv_object<mproc::PipeConnection>(right); }),
                            "recv_object<pipe end>: the peer handed over a lock, expected a pipe end 0 or 1");
            mproc::PipeConnection received = mproc::recv_object<mproc::PipeConnection>(right);
            CPPUNIT_ASSERT_EQUAL(1, received.end_index());
            pipe_end1.close();
            CPPUNIT_ASSERT(!pipe_end0.peer_gone());
            pipe_end0.send_bytes(bytes_of("to the receiver"));
            CPPUNIT_ASSERT_EQUAL(std::string("to the receiver"), text_of(received.recv_bytes()));
            received.send_bytes(bytes_of("back"));
            CPPUNIT_ASSERT_EQUAL(std::string("back"), text_of(pipe_end0.recv_bytes()));
            received.close();
            CPPUNIT_ASSERT(pipe_end0.peer_gone());
            // A pipe end where another kind is expected: refused, its descriptor closed.
            auto [other_end0, other_end1] = mproc::Pipe();
            mproc::send_object(left, other_end0);
            CPPUNIT_ASSERT_THROW((void)mproc::recv_object<mproc::Lock>(right), InvalidObject);
        }
    }

    void testAMessageThatIsNotAHandoffIsRefused() {
        auto ends = mproc::fd_pipe(true);
        [[maybe_unused]] mproc::FdConnection& left = ends.first;
        [[maybe_unused]] mproc::FdConnection& right = ends.second;
        left.send_bytes(bytes_of("hello"));
        assert_contains(message_of<InvalidObject>([&] { (void)mproc::recv_object<mproc::Lock>(right); }),
                        "not an object hand-off");
        mproc::Lock lock;
        left.send_handle(lock.fd());  // a bare handle, no hand-off message
        CPPUNIT_ASSERT_THROW((void)mproc::recv_object<mproc::Lock>(right), mproc::SystemError);
    }

    void testUnrelatedProcessUsesTheQueueAndLockItReceived() {
        UnrelatedPeer peer("release", "released");
        CPPUNIT_ASSERT(peer.lock.try_lock());
        peer.lock.unlock();
        mproc::test::assert_exited_cleanly(peer.child.process().wait());
    }
};

class HandoffCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(HandoffCrashTest);
    CPPUNIT_TEST(testUnrelatedProcessKilledHoldingTheLockItReceivedIsSeenAsOwnerDied);
    CPPUNIT_TEST_SUITE_END();

public:
    void testUnrelatedProcessKilledHoldingTheLockItReceivedIsSeenAsOwnerDied() {
        UnrelatedPeer peer("hold", "locked");
        CPPUNIT_ASSERT(peer.lock.locked());
        peer.child.process().kill(SIGKILL);
        const int status = peer.child.process().wait();
        CPPUNIT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CPPUNIT_ASSERT(peer.lock.acquire_status(10s) == mproc::AcquireStatus::owner_died);
        peer.lock.make_consistent();
        peer.lock.unlock();
        CPPUNIT_ASSERT_THROW((void)peer.connection->recv_bytes(), mproc::Closed);
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(FromFdTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(HandleTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(HandoffTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(HandoffCrashTest, "crash");

}  // namespace
