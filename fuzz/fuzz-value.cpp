// fuzz/fuzz-value.cpp — arbitrary bytes as a Value or Array found in a corrupted or hostile segment.
//
// Path 1 (the one AddressSanitizer polices exactly): the bytes are copied into a 128-byte-aligned heap
// buffer of exactly their size and attached with RawValue / RawArray of several element types, with and
// without a lock, with and without an expected count (the input's last byte).
// Path 2: the bytes become a memfd, attached as a whole object of kind value and of kind array with
// SharedMemory::attach_object(), whose payload is then attached as the handles do.
// Every attach either throws InvalidObject or returns a view whose elements all lie inside the bytes: each
// is read and written back, a lock is tried without blocking and released, and the view's span must end
// at or before the end of the buffer. Nothing may crash, hang or read outside.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <span>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mproc/array.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"

namespace {

using namespace std::chrono_literals;

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property) {
    if (!property) std::abort();
}

struct Triple {
    std::uint8_t bytes[3];
};

// Takes and releases the lock without blocking, whatever its word holds; this thread ends holding nothing
// (a lock left held would leave a node of the freed buffer in its robust list).
void exercise_lock(mproc::RawLock& lock) {
    bool held = false;
    try {
        const mproc::AcquireStatus status = lock.acquire_status(0ns);
        held = status != mproc::AcquireStatus::timed_out;
        if (status == mproc::AcquireStatus::owner_died) lock.make_consistent();
    } catch (const mproc::Error&) {
        // NotRecoverable, or StateError (the word holds this thread's id)
    }
    if (held) lock.unlock();
    require(!lock.held_by_this_thread());
}

bool inside(const void* first, std::size_t bytes, const std::byte* begin, std::size_t size) {
    const auto* start = static_cast<const std::byte*>(first);
    return start >= begin && bytes <= size && start - begin <= static_cast<std::ptrdiff_t>(size - bytes);
}

template <class T, mproc::Locking L>
void try_value(std::byte* memory, std::size_t size) {
    try {
        const mproc::RawValue<T, L> value = mproc::RawValue<T, L>::attach(memory, size);
        require(inside(&value.get_obj(), sizeof(T), memory, size));
        value.set_value(value.value());
        if constexpr (L == mproc::Locking::with_lock) exercise_lock(value.get_lock());
    } catch (const mproc::InvalidObject&) {
    }
}

template <class T, mproc::Locking L>
void try_array(std::byte* memory, std::size_t size, std::optional<std::size_t> expected_count) {
    try {
        const mproc::RawArray<T, L> array = mproc::RawArray<T, L>::attach(memory, size, expected_count);
        require(!expected_count || array.size() == *expected_count);
        const std::span<T> elements = array.span();
        require(inside(elements.data(), elements.size_bytes(), memory, size));
        for (T& element : elements) {
            T copy;
            std::memcpy(&copy, &element, sizeof(T));
            std::memcpy(&element, &copy, sizeof(T));
        }
        try {
            (void)array.at(array.size());
            std::abort();  // one past the end must be refused
        } catch (const mproc::ValueError&) {
        }
        if constexpr (L == mproc::Locking::with_lock) exercise_lock(array.get_lock());
    } catch (const mproc::InvalidObject&) {
    }
}

// kind: which structures to try, as a handle of that kind would (an array payload is never read as a Value);
// nullopt: both, as the raw layer may be handed any bytes.
void fuzz_payload(std::byte* memory, std::size_t size, std::uint8_t choice, std::optional<mproc::ObjectKind> kind) {
    if (!kind || *kind == mproc::ObjectKind::value) {
        try_value<std::int32_t, mproc::Locking::with_lock>(memory, size);
        try_value<double, mproc::Locking::none>(memory, size);
        try_value<Triple, mproc::Locking::with_lock>(memory, size);
    }
    if (!kind || *kind == mproc::ObjectKind::array) {
        try_array<std::uint8_t, mproc::Locking::with_lock>(memory, size, std::nullopt);
        try_array<std::int64_t, mproc::Locking::none>(memory, size, std::nullopt);
        try_array<std::int32_t, mproc::Locking::with_lock>(memory, size, std::nullopt);
        try_array<std::int32_t, mproc::Locking::with_lock>(memory, size, std::size_t{choice});
        try_array<Triple, mproc::Locking::none>(memory, size, std::nullopt);
    }
}

void fuzz_plain_buffer(const std::uint8_t* data, std::size_t size) {
    constexpr std::align_val_t kAlignment{mproc::detail::kSharedDataAlignment};
    auto* buffer = static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, kAlignment));
    if (size > 0) std::memcpy(buffer, data, size);
    fuzz_payload(buffer, size, size > 0 ? data[size - 1] : 0, std::nullopt);
    ::operator delete(buffer, kAlignment);
}

void fuzz_memfd(const std::uint8_t* data, std::size_t size) {
    const int fd = ::memfd_create("fuzz-value", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) std::abort();
    std::size_t written = 0;
    while (written < size) {
        const ssize_t done = ::write(fd, data + written, size - written);
        if (done <= 0) std::abort();
        written += static_cast<std::size_t>(done);
    }
    // attach_object accepts only a memfd sealed against shrinking, as every anonymous object's is.
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) std::abort();
    for (const mproc::ObjectKind kind : {mproc::ObjectKind::value, mproc::ObjectKind::array}) {
        try {
            mproc::SharedMemory segment =
                mproc::SharedMemory::attach_object(fd, kind, mproc::current_layout_version(kind), 0ms);
            require(segment.size() + mproc::kObjectHeaderSize <= size);
            fuzz_payload(segment.bytes().data(), segment.bytes().size(), size > 0 ? data[size - 1] : 0, kind);
        } catch (const mproc::InvalidObject&) {
        }
    }
    ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_plain_buffer(data, size);
    fuzz_memfd(data, size);
    return 0;
}
