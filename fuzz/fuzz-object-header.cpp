// fuzz/fuzz-object-header.cpp — arbitrary bytes as the mapping of a shared-memory object.
//
// Path 1 (the one AddressSanitizer can police): the bytes are copied into a 128-byte-aligned heap buffer of
// exactly their size and handed to validate_object_header() for every kind, and to await_object_header()
// with a zero timeout. A read one byte past the buffer is a heap-buffer-overflow.
// Path 2: the bytes become a memfd, opened with SharedMemory::attach_object() as the kind the bytes claim;
// this drives the file-size checks, the mapping and the handle. (Reads past the file's end but inside its
// last page are invisible to ASan here; path 1 covers them.)
// Properties checked on every accepted input: the returned fields agree with each other and with the
// mapping, the whole payload is readable, and a layout version one higher is refused.
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
#include "mproc/shared_memory.hpp"

namespace {

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property) {
    if (!property) std::abort();
}

void check_accepted(const mproc::ObjectHeaderFields& fields, std::span<const std::byte> mapping, mproc::ObjectKind kind,
                    std::uint32_t layout_version) {
    // Touch the first and last payload byte before anything else: if the validator let a size through that
    // the mapping does not hold, ASan reports the read here, with the input that caused it.
    volatile std::byte first = mapping.data()[fields.payload_offset];
    volatile std::byte last = mapping.data()[fields.total_size - 1];
    (void)first;
    (void)last;
    require(fields.kind == kind);
    require(fields.layout_version == layout_version);
    require(fields.payload_offset == mproc::kObjectHeaderSize);
    require(fields.payload_size > 0);
    require(fields.total_size == fields.payload_offset + fields.payload_size);
    require(fields.total_size <= mapping.size());
    require(fields.creator_pid > 0);
}

void fuzz_plain_buffer(const std::uint8_t* data, std::size_t size) {
    constexpr std::align_val_t kAlignment{alignof(mproc::ObjectHeader)};
    auto* buffer = static_cast<std::byte*>(::operator new(size, kAlignment));
    if (size > 0) std::memcpy(buffer, data, size);
    const std::span<std::byte> mapping(buffer, size);

    for (const mproc::ObjectKind kind : mproc::kAllObjectKinds) {
        const std::uint32_t version = mproc::current_layout_version(kind);
        try {
            check_accepted(mproc::validate_object_header(mapping, "fuzzed object", kind, version), mapping, kind,
                           version);
            bool refused_other_version = false;
            try {
                mproc::validate_object_header(mapping, "fuzzed object", kind, version + 1);
            } catch (const mproc::InvalidObject&) {
                refused_other_version = true;
            }
            require(refused_other_version);
        } catch (const mproc::InvalidObject&) {
        }
        try {
            check_accepted(mproc::await_object_header(mapping, "fuzzed object", kind, version, std::chrono::nanoseconds(0)),
                           mapping, kind, version);
        } catch (const mproc::InvalidObject&) {
        }
    }
    ::operator delete(buffer, kAlignment);
}

void fuzz_memfd(const std::uint8_t* data, std::size_t size) {
    const int fd = ::memfd_create("fuzz-object-header", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) std::abort();
    std::size_t written = 0;
    while (written < size) {
        const ssize_t done = ::write(fd, data + written, size - written);
        if (done <= 0) std::abort();
        written += static_cast<std::size_t>(done);
    }
    // attach_object accepts only a memfd sealed against shrinking, as every anonymous object's is.
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) std::abort();
    // The kind the bytes claim, so that valid inputs of every kind get past the kind check.
    std::uint32_t claimed_kind = 0;
    if (size >= offsetof(mproc::ObjectHeader, kind) + sizeof claimed_kind)
        std::memcpy(&claimed_kind, data + offsetof(mproc::ObjectHeader, kind), sizeof claimed_kind);
    const auto kind = static_cast<mproc::ObjectKind>(claimed_kind);
    const std::uint32_t version = mproc::current_layout_version(kind);
    try {
        mproc::SharedMemory segment =
            mproc::SharedMemory::attach_object(fd, kind, version, std::chrono::milliseconds(0));
        require(segment.kind() == kind);
        require(segment.size() > 0 && segment.size() + mproc::kObjectHeaderSize <= size);
        require(segment.bytes().size() == segment.size());
        volatile std::byte last = segment.bytes().back();
        (void)last;
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
