// fuzz/fuzz-semaphore.cpp — arbitrary bytes as a Semaphore or BoundedSemaphore.
//
// Path 1 (the one AddressSanitizer can police): the bytes are copied into a 64-byte-aligned heap buffer of
// exactly their size and attached with RawSemaphore::attach() and RawBoundedSemaphore::attach().
// Path 2: the bytes become a memfd, attached as a whole object of kind semaphore with
// SharedMemory::attach_object(); its payload is then attached as both raw forms, as the handles do.
// On every accepted input only non-blocking operations run (try_acquire, acquire with a zero or negative
// timeout, release, get_value), and each must keep the count exact: a taken permit lowers it by one, a
// refused acquire only when it was zero, a release raises it by n or throws ValueError and leaves it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "mproc/object_header.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"

namespace {

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property) {
    if (!property) std::abort();
}

template <class Raw>
void check_release(Raw& semaphore, std::ptrdiff_t n, std::uint32_t bound) {
    const std::uint32_t before = semaphore.get_value();
    bool refused = false;
    try {
        semaphore.release(n);
    } catch (const mproc::ValueError&) {
        refused = true;
    }
    const bool allowed = n >= 1 && std::uint64_t(before) + std::uint64_t(n) <= bound;
    require(refused == !allowed);
    require(semaphore.get_value() == (allowed ? before + std::uint32_t(n) : before));
}

template <class Raw>
void exercise(Raw& semaphore, std::uint32_t bound) {
    require(semaphore.get_value() <= bound);
    for (int attempt = 0; attempt < 4; ++attempt) {
        const std::uint32_t before = semaphore.get_value();
        bool taken = false;
        switch (attempt) {
        case 0: taken = semaphore.try_acquire(); break;
        case 1: taken = semaphore.acquire(false); break;
        case 2: taken = semaphore.try_acquire_for(std::chrono::nanoseconds(0)); break;
        default: taken = semaphore.acquire(true, std::chrono::nanoseconds(-1)); break;
        }
        require(taken == (before > 0));
        require(semaphore.get_value() == (taken ? before - 1 : before));
    }
    check_release(semaphore, 1, bound);
    check_release(semaphore, 0, bound);
    check_release(semaphore, -7, bound);
    check_release(semaphore, 3, bound);
    check_release(semaphore, PTRDIFF_MAX, bound);
    semaphore.validate("fuzzed semaphore after use");
}

void fuzz_payload(std::byte* payload, std::size_t size) {
    try {
        exercise(mproc::RawSemaphore::attach(payload, size), mproc::RawSemaphore::kMaxValue);
    } catch (const mproc::InvalidObject&) {
    }
    try {
        mproc::RawBoundedSemaphore& bounded = mproc::RawBoundedSemaphore::attach(payload, size);
        const std::uint32_t bound = bounded.bound();
        require(bound <= mproc::RawBoundedSemaphore::kMaxValue);
        exercise(bounded, bound);
    } catch (const mproc::InvalidObject&) {
    }
}

void fuzz_plain_buffer(const std::uint8_t* data, std::size_t size) {
    constexpr std::align_val_t kAlignment{mproc::RawSemaphore::kAlignment};
    auto* buffer = static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, kAlignment));
    if (size > 0) std::memcpy(buffer, data, size);
    fuzz_payload(buffer, size);
    ::operator delete(buffer, kAlignment);
}

void fuzz_memfd(const std::uint8_t* data, std::size_t size) {
    const int fd = ::memfd_create("fuzz-semaphore", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) std::abort();
    std::size_t written = 0;
    while (written < size) {
        const ssize_t done = ::write(fd, data + written, size - written);
        if (done <= 0) std::abort();
        written += static_cast<std::size_t>(done);
    }
    // attach_object accepts only a memfd sealed against shrinking, as every anonymous object's is.
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) std::abort();
    try {
        mproc::SharedMemory segment = mproc::SharedMemory::attach_object(
            fd, mproc::ObjectKind::semaphore, mproc::current_layout_version(mproc::ObjectKind::semaphore),
            std::chrono::milliseconds(0));
        require(segment.size() + mproc::kObjectHeaderSize <= size);
        fuzz_payload(segment.bytes().data(), segment.bytes().size());
    } catch (const mproc::InvalidObject&) {
    }
    ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_plain_buffer(data, size);
    fuzz_memfd(data, size);
    return 0;
}
