// fuzz/fuzz-event.cpp — arbitrary bytes as an Event.
//
// Path 1 (the one AddressSanitizer can police): the bytes are copied into a 64-byte-aligned heap buffer of
// exactly their size and attached with RawEvent::attach().
// Path 2: the bytes become a memfd, attached as a whole object of kind event with
// SharedMemory::attach_object(); its payload is then attached as a RawEvent, as Event does.
// On every accepted input only non-blocking operations run (set, clear, is_set, wait with a zero or
// negative timeout), whatever the word holds, and each must leave the flag as Python's Event would.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/object_header.hpp"
#include "mproc/shared_memory.hpp"

namespace {

void require(bool property) {
    if (!property) std::abort();
}

void exercise(mproc::RawEvent& event) {
    const bool was_set = event.is_set();
    require(event.wait(std::chrono::nanoseconds(0)) == was_set);
    require(event.wait(std::chrono::nanoseconds(-1)) == was_set);
    event.set();
    require(event.is_set());
    require(event.wait(std::chrono::nanoseconds(0)));
    event.set();
    require(event.is_set());
    event.clear();
    require(!event.is_set());
    require(!event.wait(std::chrono::nanoseconds(0)));
    require(!event.wait_for(std::chrono::milliseconds(-5)));
    event.clear();
    require(!event.is_set());
    event.set();
    require(event.wait());  // set: returns at once
    event.validate("fuzzed event after use");
}

void fuzz_payload(std::byte* payload, std::size_t size) {
    try {
        exercise(mproc::RawEvent::attach(payload, size));
    } catch (const mproc::InvalidObject&) {
    }
}

void fuzz_plain_buffer(const std::uint8_t* data, std::size_t size) {
    constexpr std::align_val_t kAlignment{mproc::RawEvent::kAlignment};
    auto* buffer = static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, kAlignment));
    if (size > 0) std::memcpy(buffer, data, size);
    fuzz_payload(buffer, size);
    ::operator delete(buffer, kAlignment);
}

void fuzz_memfd(const std::uint8_t* data, std::size_t size) {
    const int fd = ::memfd_create("fuzz-event", MFD_CLOEXEC | MFD_ALLOW_SEALING);
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
            fd, mproc::ObjectKind::event, mproc::current_layout_version(mproc::ObjectKind::event),
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
