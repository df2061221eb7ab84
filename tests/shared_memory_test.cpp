// tests/shared_memory_test.cpp — SharedMemory and the object header: sharing across fork and by name, the
// creation handshake, validation of every kind of broken segment, and creators that die mid-creation.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"
#include "mproc/error.hpp"
#include "mproc/object_header.hpp"
#include "mproc/shared_memory.hpp"

namespace {

using mproc::InvalidObject;
using mproc::ObjectHeader;
using mproc::ObjectKind;
using mproc::SharedMemory;
using mproc::StateError;
using mproc::SystemError;
using mproc::ValueError;
using mproc::test::ForkedChild;
using namespace std::chrono_literals;

constexpr std::uint32_t kSharedMemoryVersion = mproc::current_layout_version(ObjectKind::shared_memory);

// Runs operation, which must throw exactly Expected (not a subclass, not a sibling) with a message that
// contains fragment; returns the message.
template <class Expected>
std::string expect_error(const std::function<void()>& operation, const char* expected_name, const std::string& fragment,
                         const CppUnit::SourceLine& line) {
    try {
        operation();
    } catch (const mproc::Error& error) {
        const std::string message = error.what();
        CppUnit::Asserter::failIf(typeid(error) != typeid(Expected),
                                  std::string("expected ") + expected_name + ", got another mproc::Error: " + message,
                                  line);
        CppUnit::Asserter::failIf(message.find(fragment) == std::string::npos,
                                  "message '" + message + "' lacks '" + fragment + "'", line);
        return message;
    }
    CppUnit::Asserter::fail(std::string("expected ") + expected_name + " containing '" + fragment +
                                "', nothing was thrown",
                            line);
    return {};
}

#define EXPECT_ERROR(Type, fragment, ...) \
    expect_error<Type>([&] { __VA_ARGS__; }, #Type, fragment, CPPUNIT_SOURCELINE())

// The same for SystemError, which must also carry error_number in code().
void expect_system_error(const std::function<void()>& operation, int error_number, const std::string& fragment,
                         const CppUnit::SourceLine& line) {
    try {
        operation();
    } catch (const SystemError& error) {
        const std::string message = error.what();
        CppUnit::Asserter::failIf(error.error_number() != error_number,
                                  "errno " + std::to_string(error.error_number()) + ", expected " + std::to_string(error_number) +
                                      ": " + message,
                                  line);
        CppUnit::Asserter::failIf(message.find(fragment) == std::string::npos,
                                  "message '" + message + "' lacks '" + fragment + "'", line);
        return;
    }
    CppUnit::Asserter::fail("expected SystemError containing '" + fragment + "', nothing was thrown", line);
}

#define EXPECT_SYSTEM_ERROR(error_number, fragment, ...) \
    expect_system_error([&] { __VA_ARGS__; }, error_number, fragment, CPPUNIT_SOURCELINE())

// Unlinks a test's name whatever the outcome, so a failed test leaves nothing in /dev/shm.
struct UnlinkAtEnd {
    std::string name;
    ~UnlinkAtEnd() { ::shm_unlink(name.c_str()); }
};

std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

// Writes `bytes` at `offset` of the file behind a named segment, as a corrupting or hostile peer would.
void overwrite_segment(const std::string& name, std::size_t offset, const void* bytes, std::size_t size) {
    const int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
    CPPUNIT_ASSERT_MESSAGE("shm_open " + name, fd >= 0);
    const ssize_t written = ::pwrite(fd, bytes, size, static_cast<off_t>(offset));
    ::close(fd);
    CPPUNIT_ASSERT_EQUAL(static_cast<ssize_t>(size), written);
}

template <class Field>
void overwrite_field(const std::string& name, std::size_t offset, Field value) {
    overwrite_segment(name, offset, &value, sizeof value);
}

// A named file with exactly these bytes, made without the library (a creator that is not mproc, or one
// that died halfway).
void create_raw_file(const std::string& name, const std::vector<std::byte>& bytes) {
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    CPPUNIT_ASSERT_MESSAGE("shm_open O_CREAT " + name, fd >= 0);
    const ssize_t written = bytes.empty() ? 0 : ::write(fd, bytes.data(), bytes.size());
    ::close(fd);
    CPPUNIT_ASSERT_EQUAL(static_cast<ssize_t>(bytes.size()), written);
}

// The bytes of a segment whose header was placed but never published: what a creator that died during its
// initialiser leaves behind.
std::vector<std::byte> unpublished_segment_bytes(std::uint64_t payload_size) {
    alignas(ObjectHeader) std::array<std::byte, 4096> memory{};
    mproc::place_object_header(memory, ObjectKind::shared_memory, kSharedMemoryVersion, payload_size);
    return {memory.begin(), memory.begin() + static_cast<std::ptrdiff_t>(mproc::kObjectHeaderSize + payload_size)};
}

// One byte through a pipe: "the child has reached this point".
class Signal {
public:
    Signal() { CPPUNIT_ASSERT_EQUAL(0, ::pipe2(fds_, O_CLOEXEC)); }
    ~Signal() {
        ::close(fds_[0]);
        ::close(fds_[1]);
    }
    void raise() const {
        const char byte = 1;
        CPPUNIT_ASSERT_EQUAL(ssize_t(1), ::write(fds_[1], &byte, 1));
    }
    void await(int timeout_ms = 10000) const {
        pollfd ready{fds_[0], POLLIN, 0};
        CPPUNIT_ASSERT_EQUAL_MESSAGE("the child never signalled", 1, ::poll(&ready, 1, timeout_ms));
        char byte = 0;
        CPPUNIT_ASSERT_EQUAL(ssize_t(1), ::read(fds_[0], &byte, 1));
    }

private:
    int fds_[2] = {-1, -1};
};

void fill_pattern(std::span<std::byte> bytes, unsigned seed) {
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
}

bool has_pattern(std::span<const std::byte> bytes, unsigned seed) {
    for (std::size_t i = 0; i < bytes.size(); ++i)
        if (bytes[i] != static_cast<std::byte>((i * 31 + seed) & 0xff)) return false;
    return true;
}

void assert_exited_cleanly(int status) {
    CPPUNIT_ASSERT_MESSAGE("child status " + std::to_string(status), WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace

class SharedMemoryTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SharedMemoryTest);
    CPPUNIT_TEST(testAnonymousSegmentWrittenByForkedChildIsSeenByParent);
    CPPUNIT_TEST(testAnonymousSegmentTravelsAsSealedFd);
    CPPUNIT_TEST(testCreateOpenUnlinkRoundTripAcrossProcesses);
    CPPUNIT_TEST(testCreateOnExistingNameFailsWithEEXIST);
    CPPUNIT_TEST(testOpenOfMissingNameFailsWithENOENT);
    CPPUNIT_TEST(testInvalidNamesAreRejected);
    CPPUNIT_TEST(testNameWithoutSlashAndLongestNameAreAccepted);
    CPPUNIT_TEST(testZeroSizeIsRejectedAndCreatesNothing);
    CPPUNIT_TEST(testNegativePublishTimeoutIsRejected);
    CPPUNIT_TEST(testWrongMagicIsRejected);
    CPPUNIT_TEST(testOtherLayoutVersionIsRejected);
    CPPUNIT_TEST(testOtherKindIsRejected);
    CPPUNIT_TEST(testTruncatedFileIsRejectedAtOnce);
    CPPUNIT_TEST(testHeaderClaimingMoreThanTheFileIsRejected);
    CPPUNIT_TEST(testSizesThatDisagreeAreRejected);
    CPPUNIT_TEST(testUnknownStateWordIsRejected);
    CPPUNIT_TEST(testEmptyFileTimesOutWithInvalidObject);
    CPPUNIT_TEST(testNeverPublishedSegmentTimesOutWithInvalidObject);
    CPPUNIT_TEST(testOpenersStartedBeforePublicationWaitAndSeeTheInitialisedPayload);
    CPPUNIT_TEST(testInitialiserThatThrowsUnlinksTheNameAndPropagates);
    CPPUNIT_TEST(testWaitingOpenerFailsAtOnceWhenTheInitialiserThrows);
    CPPUNIT_TEST(testOpenedSizeIgnoresLaterHeaderWrites);
    CPPUNIT_TEST(testUnlinkTwiceFailsWithENOENTAndAnonymousHasNoName);
    CPPUNIT_TEST(testMovedFromHandleIsSafe);
    CPPUNIT_TEST(testRawLayerPlacesPublishesAndValidatesInCallerMemory);
    CPPUNIT_TEST(testValidatorReportsSpanShorterThanHeader);
    CPPUNIT_TEST_SUITE_END();

public:
    void testAnonymousSegmentWrittenByForkedChildIsSeenByParent() {
        SharedMemory segment = SharedMemory::anonymous(4096);
        CPPUNIT_ASSERT_EQUAL(std::size_t(4096), segment.size());
        CPPUNIT_ASSERT_EQUAL(std::size_t(4096), segment.bytes().size());
        CPPUNIT_ASSERT(segment.name().empty());
        CPPUNIT_ASSERT(segment.fd() >= 0);
        CPPUNIT_ASSERT(segment.kind() == ObjectKind::shared_memory);
        CPPUNIT_ASSERT_EQUAL(std::uintptr_t(0), reinterpret_cast<std::uintptr_t>(segment.bytes().data()) % 128);
        CPPUNIT_ASSERT(std::all_of(segment.bytes().begin(), segment.bytes().end(), [](std::byte b) { return b == std::byte{0}; }));

        ForkedChild child([&] { fill_pattern(segment.bytes(), 7); });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT(has_pattern(segment.bytes(), 7));
    }

    void testAnonymousSegmentTravelsAsSealedFd() {
        SharedMemory segment = SharedMemory::anonymous(300);
        fill_pattern(segment.bytes(), 3);
        const int fd = segment.fd();
        ForkedChild child([fd] {
            // A new mapping made from the fd alone, as a process that received it over a socket would.
            SharedMemory attached = SharedMemory::attach(fd);
            CPPUNIT_ASSERT_EQUAL(std::size_t(300), attached.size());
            CPPUNIT_ASSERT(attached.name().empty());
            CPPUNIT_ASSERT(attached.fd() >= 0 && attached.fd() != fd);
            CPPUNIT_ASSERT(has_pattern(attached.bytes(), 3));
            fill_pattern(attached.bytes(), 11);
        });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT(has_pattern(segment.bytes(), 11));
        // Sealed: nobody holding the fd can shrink the file under the mappings.
        CPPUNIT_ASSERT_EQUAL(-1, ::ftruncate(segment.fd(), 0));
        CPPUNIT_ASSERT_EQUAL(EPERM, errno);
        EXPECT_ERROR(InvalidObject, "object kind 'shared memory' (1), expected 'queue' (10)",
                     SharedMemory::attach_object(segment.fd(), ObjectKind::queue, 1));
        EXPECT_SYSTEM_ERROR(EBADF, "shared memory (fd -1): attach", SharedMemory::attach(-1));
    }

    void testCreateOpenUnlinkRoundTripAcrossProcesses() {
        const std::string name = mproc::test::unique_name("round-trip");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 1000);
        CPPUNIT_ASSERT_EQUAL(name, created.name());
        CPPUNIT_ASSERT_EQUAL(std::size_t(1000), created.size());
        CPPUNIT_ASSERT_EQUAL(-1, created.fd());
        fill_pattern(created.bytes(), 5);

        ForkedChild child([&] {
            SharedMemory opened = SharedMemory::open(name);
            CPPUNIT_ASSERT_EQUAL(name, opened.name());
            CPPUNIT_ASSERT_EQUAL(std::size_t(1000), opened.size());
            CPPUNIT_ASSERT(has_pattern(opened.bytes(), 5));
            fill_pattern(opened.bytes(), 9);
        });
        assert_exited_cleanly(child.wait());
        CPPUNIT_ASSERT(has_pattern(created.bytes(), 9));

        created.unlink();
        EXPECT_SYSTEM_ERROR(ENOENT, "shared memory '" + name + "': open", SharedMemory::open(name));
        // Unlinking removes the name, not the memory: the mapping stays usable.
        fill_pattern(created.bytes(), 13);
        CPPUNIT_ASSERT(has_pattern(created.bytes(), 13));
    }

    void testCreateOnExistingNameFailsWithEEXIST() {
        const std::string name = mproc::test::unique_name("exists");
        UnlinkAtEnd cleanup{name};
        SharedMemory first = SharedMemory::create(name, 64);
        fill_pattern(first.bytes(), 1);
        EXPECT_SYSTEM_ERROR(EEXIST, "shared memory '" + name + "': create", SharedMemory::create(name, 64));
        EXPECT_SYSTEM_ERROR(EEXIST, "lock '" + name + "': create",
                            SharedMemory::create_object(name, ObjectKind::lock, 1, 64, 0600, {}));
        // The failed creations neither resized nor reinitialised the existing segment.
        SharedMemory opened = SharedMemory::open(name);
        CPPUNIT_ASSERT_EQUAL(std::size_t(64), opened.size());
        CPPUNIT_ASSERT(has_pattern(opened.bytes(), 1));
    }

    void testOpenOfMissingNameFailsWithENOENT() {
        const std::string name = mproc::test::unique_name("missing");
        EXPECT_SYSTEM_ERROR(ENOENT, "shared memory '" + name + "': open: shm_open", SharedMemory::open(name));
        EXPECT_SYSTEM_ERROR(ENOENT, "queue '" + name + "': open",
                            SharedMemory::open_object(name, ObjectKind::queue, 1));
    }

    void testInvalidNamesAreRejected() {
        const std::string too_long = "/" + std::string(NAME_MAX + 1, 'x');
        const std::vector<std::pair<std::string, std::string>> cases = {
            {"", "invalid name: empty"},
            {"/", "invalid name: empty"},
            {"a/b", "invalid name: a '/' after the leading one"},
            {"/a/b", "invalid name: a '/' after the leading one"},
            {"//a", "invalid name: a '/' after the leading one"},
            {"/a/", "invalid name: a '/' after the leading one"},
            {std::string("/a\0b", 4), "shared memory '/a\\x00b': invalid name: a NUL character"},
            {"/.", "invalid name: '.' and '..' name directories"},
            {"..", "invalid name: '.' and '..' name directories"},
            {too_long, "invalid name: 256 characters, more than NAME_MAX (255)"},
        };
        for (const auto& invalid : cases) {
            const std::string& name = invalid.first;
            const std::string& fragment = invalid.second;
            EXPECT_ERROR(ValueError, fragment, SharedMemory::create(name, 64));
            EXPECT_ERROR(ValueError, fragment, SharedMemory::open(name));
            EXPECT_ERROR(ValueError, "queue '", SharedMemory::open_object(name, ObjectKind::queue, 1));
        }
    }

    void testNameWithoutSlashAndLongestNameAreAccepted() {
        const std::string name = mproc::test::unique_name("no-slash");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name.substr(1), 16);
        CPPUNIT_ASSERT_EQUAL(name, created.name());
        CPPUNIT_ASSERT_EQUAL(name, SharedMemory::open(name).name());

        std::string longest = mproc::test::unique_name("longest");
        longest.resize(NAME_MAX + 1, 'x');  // the slash and NAME_MAX characters
        UnlinkAtEnd cleanup_longest{longest};
        SharedMemory long_named = SharedMemory::create(longest, 16);
        CPPUNIT_ASSERT_EQUAL(std::size_t(16), SharedMemory::open(longest).size());
        long_named.unlink();
    }

    void testZeroSizeIsRejectedAndCreatesNothing() {
        const std::string name = mproc::test::unique_name("zero");
        UnlinkAtEnd cleanup{name};
        EXPECT_ERROR(ValueError, "shared memory '" + name + "': size 0", SharedMemory::create(name, 0));
        EXPECT_SYSTEM_ERROR(ENOENT, "open", SharedMemory::open(name));
        EXPECT_ERROR(ValueError, "anonymous shared memory: size 0", SharedMemory::anonymous(0));
        EXPECT_ERROR(ValueError, "is larger than a file can be", SharedMemory::create(name, SIZE_MAX - 64));
        EXPECT_SYSTEM_ERROR(ENOENT, "open", SharedMemory::open(name));
    }

    void testNegativePublishTimeoutIsRejected() {
        const std::string name = mproc::test::unique_name("negative");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 8);
        EXPECT_ERROR(ValueError, "negative publish timeout (-1 ms)", SharedMemory::open(name, -1ms));
    }

    void testWrongMagicIsRejected() {
        const std::string name = mproc::test::unique_name("magic");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 64);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, magic), 0x0102030405060708ULL);
        EXPECT_ERROR(InvalidObject,
                     "shared memory '" + name + "': wrong magic 0x102030405060708, expected 0x31424f434f52504d",
                     SharedMemory::open(name));
    }

    void testOtherLayoutVersionIsRejected() {
        const std::string name = mproc::test::unique_name("version");
        UnlinkAtEnd cleanup{name};
        SharedMemory created =
            SharedMemory::create_object(name, ObjectKind::shared_memory, kSharedMemoryVersion + 1, 64, 0600, {});
        CPPUNIT_ASSERT_EQUAL(kSharedMemoryVersion + 1, created.layout_version());
        EXPECT_ERROR(InvalidObject, "shared memory '" + name + "': layout version 2, expected 1", SharedMemory::open(name));
        CPPUNIT_ASSERT_EQUAL(std::size_t(64),
                             SharedMemory::open_object(name, ObjectKind::shared_memory, kSharedMemoryVersion + 1).size());
    }

    void testOtherKindIsRejected() {
        const std::string name = mproc::test::unique_name("kind");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create_object(name, ObjectKind::queue, 1, 256, 0600, {});
        EXPECT_ERROR(InvalidObject, "shared memory '" + name + "': object kind 'queue' (10), expected 'shared memory' (1)",
                     SharedMemory::open(name));
        EXPECT_ERROR(InvalidObject, "lock '" + name + "': object kind 'queue' (10), expected 'lock' (2)",
                     SharedMemory::open_object(name, ObjectKind::lock, 1));
        SharedMemory opened = SharedMemory::open_object(name, ObjectKind::queue, 1);
        CPPUNIT_ASSERT(opened.kind() == ObjectKind::queue);
        CPPUNIT_ASSERT_EQUAL(std::size_t(256), opened.size());
    }

    void testTruncatedFileIsRejectedAtOnce() {
        const std::string name = mproc::test::unique_name("truncated");
        UnlinkAtEnd cleanup{name};
        create_raw_file(name, std::vector<std::byte>(64, std::byte{0x4d}));
        const auto started = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject,
                     "shared memory '" + name + "': truncated: the file holds 64 bytes, less than the 128-byte object header",
                     SharedMemory::open(name, 5000ms));
        CPPUNIT_ASSERT_MESSAGE("a truncated file is not waited for", elapsed_ms(started) < 2000);
    }

    void testHeaderClaimingMoreThanTheFileIsRejected() {
        const std::string name = mproc::test::unique_name("claims");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 64);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, payload_size), 1 << 20);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, total_size), 128 + (1 << 20));
        EXPECT_ERROR(InvalidObject, "shared memory '" + name + "': header claims 1048704 bytes, the mapping holds 192",
                     SharedMemory::open(name));
    }

    void testSizesThatDisagreeAreRejected() {
        const std::string name = mproc::test::unique_name("disagree");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 64);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, total_size), 100);
        EXPECT_ERROR(InvalidObject, "sizes disagree: total 100 bytes, but header 128 + payload 64", SharedMemory::open(name));
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, payload_size), UINT64_MAX);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, total_size), 127);
        EXPECT_ERROR(InvalidObject, "sizes disagree: total 127 bytes, but header 128 + payload 18446744073709551615",
                     SharedMemory::open(name));
    }

    void testUnknownStateWordIsRejected() {
        const std::string name = mproc::test::unique_name("state");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 64);
        overwrite_field<std::uint32_t>(name, offsetof(ObjectHeader, state), 0xdeadbeef);
        const auto started = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject, "shared memory '" + name + "': state word 0xdeadbeef is none of", SharedMemory::open(name));
        CPPUNIT_ASSERT(elapsed_ms(started) < 1000);
    }

    void testEmptyFileTimesOutWithInvalidObject() {
        const std::string name = mproc::test::unique_name("empty");
        UnlinkAtEnd cleanup{name};
        create_raw_file(name, {});
        const auto started = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject, "shared memory '" + name + "': not published within 100 ms: the file is still empty",
                     SharedMemory::open(name, 100ms));
        const std::int64_t waited = elapsed_ms(started);
        CPPUNIT_ASSERT_MESSAGE("waited " + std::to_string(waited) + " ms", waited >= 100 && waited < 2000);
    }

    void testNeverPublishedSegmentTimesOutWithInvalidObject() {
        const std::string name = mproc::test::unique_name("unpublished");
        UnlinkAtEnd cleanup{name};
        create_raw_file(name, unpublished_segment_bytes(64));
        const auto started = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject,
                     "shared memory '" + name +
                         "': not published within 150 ms (its creator died during initialisation, or is still initialising)",
                     SharedMemory::open(name, 150ms));
        const std::int64_t waited = elapsed_ms(started);
        CPPUNIT_ASSERT_MESSAGE("waited " + std::to_string(waited) + " ms", waited >= 150 && waited < 2000);
        // A zero timeout looks once and does not sleep.
        const auto looked = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject, "not published within 0 ms", SharedMemory::open(name, 0ms));
        CPPUNIT_ASSERT(elapsed_ms(looked) < 100);
    }

    void testOpenersStartedBeforePublicationWaitAndSeeTheInitialisedPayload() {
        const std::string name = mproc::test::unique_name("slow-init");
        UnlinkAtEnd cleanup{name};
        Signal initialising;
        ForkedChild creator([&] {
            SharedMemory::create_object(name, ObjectKind::shared_memory, kSharedMemoryVersion, 4096, 0600,
                                        [&](std::span<std::byte> payload) {
                                            initialising.raise();
                                            ::usleep(400'000);
                                            fill_pattern(payload, 21);
                                        });
        });
        initialising.await();
        // The name exists and the file is sized, but the header is not published: each opener must wait.
        mproc::test::run_in_processes(3, [&](int) {
            const auto started = std::chrono::steady_clock::now();
            SharedMemory opened = SharedMemory::open(name, 10'000ms);
            const std::int64_t waited = elapsed_ms(started);
            CPPUNIT_ASSERT_MESSAGE("open returned before publication", waited >= 100);
            // Woken by the publication, not by its own deadline: no wake-up was lost.
            CPPUNIT_ASSERT_MESSAGE("waited " + std::to_string(waited) + " ms", waited < 5000);
            CPPUNIT_ASSERT_EQUAL(std::size_t(4096), opened.size());
            CPPUNIT_ASSERT(has_pattern(opened.bytes(), 21));
        });
        assert_exited_cleanly(creator.wait());
    }

    void testInitialiserThatThrowsUnlinksTheNameAndPropagates() {
        const std::string name = mproc::test::unique_name("init-throws");
        UnlinkAtEnd cleanup{name};
        try {
            SharedMemory::create_object(name, ObjectKind::shared_memory, kSharedMemoryVersion, 64, 0600,
                                        [](std::span<std::byte>) { throw std::range_error("initialiser failed"); });
            CPPUNIT_FAIL("create_object did not propagate the initialiser's exception");
        } catch (const std::range_error& error) {
            CPPUNIT_ASSERT_EQUAL(std::string("initialiser failed"), std::string(error.what()));
        }
        EXPECT_SYSTEM_ERROR(ENOENT, "open", SharedMemory::open(name));
        // The name is free again.
        SharedMemory::create(name, 64).unlink();
    }

    void testWaitingOpenerFailsAtOnceWhenTheInitialiserThrows() {
        const std::string name = mproc::test::unique_name("abandoned");
        UnlinkAtEnd cleanup{name};
        Signal initialising;
        ForkedChild creator([&] {
            try {
                SharedMemory::create_object(name, ObjectKind::shared_memory, kSharedMemoryVersion, 64, 0600,
                                            [&](std::span<std::byte>) {
                                                initialising.raise();
                                                ::usleep(500'000);
                                                throw std::runtime_error("initialiser failed");
                                            });
            } catch (const std::runtime_error&) {
            }
        });
        initialising.await();
        const auto started = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject, "shared memory '" + name + "': abandoned: its creator's initialisation failed",
                     SharedMemory::open(name, 10'000ms));
        CPPUNIT_ASSERT_MESSAGE("the opener waited for its deadline", elapsed_ms(started) < 5000);
        assert_exited_cleanly(creator.wait());
    }

    void testOpenedSizeIgnoresLaterHeaderWrites() {
        const std::string name = mproc::test::unique_name("later-writes");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 64);
        SharedMemory opened = SharedMemory::open(name);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, payload_size), 1 << 30);
        overwrite_field<std::uint64_t>(name, offsetof(ObjectHeader, total_size), 128 + (1 << 30));
        CPPUNIT_ASSERT_EQUAL(std::size_t(64), opened.size());
        CPPUNIT_ASSERT_EQUAL(std::size_t(64), opened.bytes().size());
        CPPUNIT_ASSERT_EQUAL(std::size_t(64), created.size());
    }

    void testUnlinkTwiceFailsWithENOENTAndAnonymousHasNoName() {
        const std::string name = mproc::test::unique_name("unlink");
        UnlinkAtEnd cleanup{name};
        SharedMemory created = SharedMemory::create(name, 64);
        created.unlink();
        EXPECT_SYSTEM_ERROR(ENOENT, "shared memory '" + name + "': unlink", created.unlink());
        SharedMemory anonymous = SharedMemory::anonymous(64);
        EXPECT_ERROR(StateError, "shared memory: unlink: the segment has no name", anonymous.unlink());
    }

    void testMovedFromHandleIsSafe() {
        const std::string name = mproc::test::unique_name("moved");
        UnlinkAtEnd cleanup{name};
        SharedMemory original = SharedMemory::create(name, 128);
        fill_pattern(original.bytes(), 17);

        SharedMemory moved(std::move(original));
        CPPUNIT_ASSERT_EQUAL(std::size_t(0), original.size());
        CPPUNIT_ASSERT(original.bytes().empty());
        CPPUNIT_ASSERT(original.name().empty());
        CPPUNIT_ASSERT_EQUAL(-1, original.fd());
        EXPECT_ERROR(StateError, "unlink on a moved-from handle", original.unlink());
        CPPUNIT_ASSERT(has_pattern(moved.bytes(), 17));
        CPPUNIT_ASSERT_EQUAL(name, moved.name());

        // Move-assignment releases what the target held and leaves the source empty.
        SharedMemory target = SharedMemory::anonymous(32);
        target = std::move(moved);
        CPPUNIT_ASSERT(has_pattern(target.bytes(), 17));
        CPPUNIT_ASSERT(moved.bytes().empty());
        original = std::move(moved);  // empty into empty
        CPPUNIT_ASSERT(original.bytes().empty());
        SharedMemory& self = target;
        target = std::move(self);
        CPPUNIT_ASSERT(has_pattern(target.bytes(), 17));

        SharedMemory anonymous = SharedMemory::anonymous(64);
        const int fd = anonymous.fd();
        SharedMemory taken(std::move(anonymous));
        CPPUNIT_ASSERT_EQUAL(fd, taken.fd());
        CPPUNIT_ASSERT_EQUAL(-1, anonymous.fd());
        target.unlink();
    }

    void testRawLayerPlacesPublishesAndValidatesInCallerMemory() {
        alignas(ObjectHeader) std::array<std::byte, 128 + 64> memory{};
        const std::span<std::byte> whole(memory);
        mproc::place_object_header(whole, ObjectKind::event, 1, 64);
        EXPECT_ERROR(InvalidObject, "event 'raw': not published (state word 0x0)",
                     mproc::validate_object_header(whole, "event 'raw'", ObjectKind::event, 1));
        EXPECT_ERROR(InvalidObject, "event 'raw': not published within 0 ms",
                     mproc::await_object_header(whole, "event 'raw'", ObjectKind::event, 1, 0ms));

        mproc::publish_object_header(whole);
        const mproc::ObjectHeaderFields fields = mproc::validate_object_header(whole, "event 'raw'", ObjectKind::event, 1);
        CPPUNIT_ASSERT(fields.kind == ObjectKind::event);
        CPPUNIT_ASSERT_EQUAL(std::uint32_t(1), fields.layout_version);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(128), fields.payload_offset);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(64), fields.payload_size);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(192), fields.total_size);
        CPPUNIT_ASSERT_EQUAL(::getpid(), fields.creator_pid);
        CPPUNIT_ASSERT_EQUAL(std::uint64_t(64), mproc::await_object_header(whole, "e", ObjectKind::event, 1, 0ms).payload_size);
        EXPECT_ERROR(StateError, "publish_object_header: the header is in state 1", mproc::publish_object_header(whole));
        EXPECT_ERROR(StateError, "abandon_object_header: the header is in state 1", mproc::abandon_object_header(whole));

        EXPECT_ERROR(ValueError, "is not 128-byte aligned",
                     mproc::place_object_header(whole.subspan(4), ObjectKind::event, 1, 32));
        EXPECT_ERROR(ValueError, "192 bytes cannot hold 193",
                     mproc::place_object_header(whole, ObjectKind::event, 1, 65));
        EXPECT_ERROR(ValueError, "a payload of 0 bytes", mproc::place_object_header(whole, ObjectKind::event, 1, 0));
        EXPECT_ERROR(ValueError, "overflows 64 bits", mproc::object_total_size(UINT64_MAX - 127));

        // Abandoning wakes no one here, but turns the header into a permanent refusal.
        mproc::place_object_header(whole, ObjectKind::event, 1, 64);
        mproc::abandon_object_header(whole);
        EXPECT_ERROR(InvalidObject, "abandoned", mproc::await_object_header(whole, "e", ObjectKind::event, 1, 1000ms));
    }

    void testValidatorReportsSpanShorterThanHeader() {
        alignas(ObjectHeader) std::array<std::byte, 128 + 64> memory{};
        mproc::place_object_header(memory, ObjectKind::shared_memory, 1, 64);
        mproc::publish_object_header(memory);
        EXPECT_ERROR(InvalidObject, "segment: truncated: 100 bytes, less than the 128-byte object header",
                     mproc::validate_object_header(std::span(memory).first(100), "segment", ObjectKind::shared_memory, 1));
        EXPECT_ERROR(InvalidObject, "segment: header claims 192 bytes, the mapping holds 191",
                     mproc::validate_object_header(std::span(memory).first(191), "segment", ObjectKind::shared_memory, 1));
        EXPECT_ERROR(InvalidObject, "truncated: 0 bytes",
                     mproc::await_object_header(std::span(memory).first(0), "segment", ObjectKind::shared_memory, 1, 0ms));
    }
};

class SharedMemoryCrashTest : public CppUnit::TestFixture {
    CPPUNIT_TEST_SUITE(SharedMemoryCrashTest);
    CPPUNIT_TEST(testCreatorKilledInsideInitialiserLeavesOpenersWithInvalidObject);
    CPPUNIT_TEST_SUITE_END();

public:
    void testCreatorKilledInsideInitialiserLeavesOpenersWithInvalidObject() {
        const std::string name = mproc::test::unique_name("killed-creator");
        UnlinkAtEnd cleanup{name};
        Signal initialising;
        ForkedChild creator([&] {
            SharedMemory::create_object(name, ObjectKind::shared_memory, kSharedMemoryVersion, 4096, 0600,
                                        [&](std::span<std::byte>) {
                                            initialising.raise();
                                            for (;;) ::pause();
                                        });
        });
        initialising.await();

        // One opener is already waiting when the creator dies; it gives up at its own deadline.
        ForkedChild waiting_opener([&] {
            const auto started = std::chrono::steady_clock::now();
            EXPECT_ERROR(InvalidObject, "not published within 1000 ms", SharedMemory::open(name, 1000ms));
            CPPUNIT_ASSERT(elapsed_ms(started) >= 1000);
        });
        ::usleep(100'000);
        creator.kill(SIGKILL);
        const int status = creator.wait();
        CPPUNIT_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_exited_cleanly(waiting_opener.wait());

        // Openers that come after the death get the same answer within their bound.
        const auto started = std::chrono::steady_clock::now();
        EXPECT_ERROR(InvalidObject,
                     "shared memory '" + name +
                         "': not published within 300 ms (its creator died during initialisation, or is still initialising)",
                     SharedMemory::open(name, 300ms));
        const std::int64_t waited = elapsed_ms(started);
        CPPUNIT_ASSERT_MESSAGE("waited " + std::to_string(waited) + " ms", waited >= 300 && waited < 3000);
        // The dead creator's name stays until someone unlinks it, and then it can be created again.
        CPPUNIT_ASSERT_EQUAL(0, ::shm_unlink(name.c_str()));
        SharedMemory::create(name, 64).unlink();
    }
};

CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SharedMemoryTest, "unit");
CPPUNIT_TEST_SUITE_NAMED_REGISTRATION(SharedMemoryCrashTest, "crash");
