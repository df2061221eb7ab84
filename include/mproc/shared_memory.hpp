// mproc/shared_memory.hpp — Python's multiprocessing.shared_memory.SharedMemory for C++, and the mechanism
// every named mproc object (Lock, Queue, ...) is created and opened through.
//
// A segment is [ObjectHeader (128 bytes) | payload] (see object_header.hpp); bytes() is the payload, which
// starts 128-byte aligned. A plain segment has kind ObjectKind::shared_memory; create_object()/open_object()
// make and find objects of any other kind the same way.
//
// Guarantees
// - create() is race-free and exclusive: shm_open(O_CREAT|O_EXCL) fails with SystemError(EEXIST) when the
//   name exists. The creator sizes the file, writes the header, runs the initialiser on the payload, and only
//   then publishes (state word stored with release, FUTEX_WAKE). An opener that finds the object before
//   publication waits (FUTEX_WAIT) and then sees the payload exactly as the initialiser left it.
// - open() returns a validated segment or throws: SystemError(ENOENT) for a missing name; InvalidObject for a
//   file that is truncated, has another magic, another kind, another layout version, sizes that disagree
//   or exceed the file, or that was not published within publish_timeout. Messages name the object and the
//   cause ("shared memory '/jobs': layout version 3, expected 1"). Nothing is read outside the mapping.
// - Sizes come from the validated copy of the header taken when opening; later writes to the header by
//   another process cannot change size() or bytes().
// - anonymous() is backed by a memfd, sealed against growing and shrinking; its mapping is inherited by
//   fork()ed children, and fd() can be passed to an unrelated process (SCM_RIGHTS) that maps it with attach().
// - Names: "/name" or "name" (normalised to "/name"); the part after the optional leading slash must be
//   1..NAME_MAX characters, contain no '/' or NUL, and not be "." or "..". Anything else: ValueError.
//
// Costs
// - create(): shm_open, ftruncate, mmap, close, one FUTEX_WAKE. open(): shm_open, fstat, mmap, close, plus
//   FUTEX_WAIT only while the object is unpublished. bytes() and size() are plain member reads.
// - A named segment keeps no file descriptor after create/open; anonymous and attached ones keep one (fd()).
//
// Participant death and misuse
// - A creator that dies (or is SIGKILLed) before publishing leaves an unpublished object: openers throw
//   InvalidObject("... not published within N ms ...") after their timeout, never hang. The name stays
//   until someone unlink()s it.
// - An initialiser that throws: the name is unlinked, waiting openers are woken and fail at once
//   ("abandoned"), and the exception propagates out of create()/create_object() unchanged.
// - The name outlives every handle, as in Python: the destructor unmaps, it does not unlink. unlink() once,
//   in one process, when the name is no longer needed; mappings stay valid after it.
// - Truncating a segment's file while others map it (not something mproc does) makes their accesses past
//   the new end fault with SIGBUS, as with any mapped file.
// - The contents of bytes() have no synchronisation of their own: use a Lock, or atomics, to share them.
// - Handles are move-only. A moved-from handle owns nothing: size() is 0, bytes() is empty, name() is
//   empty, fd() is -1, its destructor does nothing, and unlink() throws StateError.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "mproc/object_header.hpp"

namespace mproc {

namespace detail {
struct SharedMemoryAccess;  // src/shared_memory.cpp: builds handles from mappings it has validated
}

class MPROC_API SharedMemory {
public:
    // Receives the payload, zero-filled, before anyone can open the object.
    using Initialiser = std::function<void(std::span<std::byte> payload)>;

    static constexpr std::chrono::milliseconds kDefaultPublishTimeout{2000};

    // A new unnamed segment of `size` bytes, zero-filled; inherited by fork()ed children.
    static SharedMemory anonymous(std::size_t size);

    // A new named segment of `size` (> 0) bytes, zero-filled. mode is filtered by the umask, as for open(2).
    static SharedMemory create(std::string_view name, std::size_t size, mode_t mode = 0600);

    // An existing named segment; waits up to publish_timeout for its creator to publish it.
    static SharedMemory open(std::string_view name, std::chrono::milliseconds publish_timeout = kDefaultPublishTimeout);

    // Maps the segment behind fd (for instance an anonymous() segment's fd received from another process);
    // fd is duplicated (F_DUPFD_CLOEXEC), the caller keeps its own. This is SharedMemory's from_fd (the name
    // every other handle uses for the same thing). The fd must be a memfd sealed against shrinking, as
    // every anonymous segment's is (so no holder can truncate it under the mapping): a pipe, socket, plain
    // file or unsealed memfd throws InvalidObject; then the header is validated as open() does.
    static SharedMemory attach(int fd, std::chrono::milliseconds publish_timeout = kDefaultPublishTimeout);

    // The same for objects of other kinds: what Lock, Queue and the rest are built on.
    static SharedMemory create_object(std::string_view name, ObjectKind kind, std::uint32_t layout_version,
                                      std::size_t payload_size, mode_t mode, const Initialiser& initialise);
    static SharedMemory open_object(std::string_view name, ObjectKind kind, std::uint32_t layout_version,
                                    std::chrono::milliseconds publish_timeout = kDefaultPublishTimeout);
    static SharedMemory anonymous_object(ObjectKind kind, std::uint32_t layout_version, std::size_t payload_size,
                                         const Initialiser& initialise);
    static SharedMemory attach_object(int fd, ObjectKind kind, std::uint32_t layout_version,
                                      std::chrono::milliseconds publish_timeout = kDefaultPublishTimeout);

    SharedMemory(SharedMemory&& other) noexcept;
    SharedMemory& operator=(SharedMemory&& other) noexcept;
    SharedMemory(const SharedMemory&) = delete;
    SharedMemory& operator=(const SharedMemory&) = delete;
    ~SharedMemory();

    // Removes the name (shm_unlink); SystemError(ENOENT) when it is already gone, StateError for an anonymous,
    // attached or moved-from handle.
    void unlink();

    // "/name" for a named segment; empty for anonymous, attached and moved-from ones.
    const std::string& name() const noexcept { return name_; }
    // Payload bytes: the size asked for at creation, read from the validated header when opened.
    std::size_t size() const noexcept { return payload_size_; }
    std::span<std::byte> bytes() const noexcept { return {payload_, payload_size_}; }
    // The memfd of an anonymous segment or the duplicate held by an attached one; -1 for named segments.
    int fd() const noexcept { return fd_; }
    ObjectKind kind() const noexcept { return kind_; }
    std::uint32_t layout_version() const noexcept { return layout_version_; }

private:
    SharedMemory() = default;
    void release() noexcept;

    std::string name_;
    std::byte* mapping_ = nullptr;
    std::size_t mapping_size_ = 0;
    std::byte* payload_ = nullptr;
    std::size_t payload_size_ = 0;
    int fd_ = -1;
    ObjectKind kind_ = ObjectKind::shared_memory;
    std::uint32_t layout_version_ = 0;

    friend struct detail::SharedMemoryAccess;
};

}  // namespace mproc
