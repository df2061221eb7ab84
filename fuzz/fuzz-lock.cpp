// fuzz/fuzz-lock.cpp — arbitrary bytes as a lock found in a corrupted or hostile segment.
//
// The bytes are copied into a heap buffer of exactly their size (128-byte aligned), so AddressSanitizer
// reports any read past them. They are attached as a RawLock and as a RawRLock (raw layer), and read as a
// whole named object [ObjectHeader | payload] of kind lock / rlock (validate_object_header, then attach to
// the payload). Every attach either throws InvalidObject or returns a lock, on which only bounded,
// non-blocking operations run: try_lock, acquire_status(0), consistency(), locked(), make_consistent()
// and unlock() attempts. The futex word may hold any TID, our own included, any WAITERS / OWNER_DIED bits
// and the not-recoverable value; whatever it holds, these operations return at once, with a result or an
// mproc::Error, and the calling thread ends each input holding nothing (a lock left held would leave a
// node of the freed buffer in this thread's robust list).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>

#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/rlock.hpp"

namespace {

using namespace std::chrono_literals;

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property) {
    if (!property) std::abort();
}

// Runs the bounded operations on an attached lock; `choices` steers which ones (first bytes of the input).
template <class Raw>
void exercise(Raw& lock, std::uint8_t choices) {
    (void)lock.consistency();
    int held = 0;
    for (int attempt = 0; attempt < 1 + (choices & 3); ++attempt) {
        try {
            const mproc::AcquireStatus status = (choices & 4) ? lock.acquire_status(0ns)
                                                              : (lock.try_lock() ? mproc::AcquireStatus::acquired
                                                                                 : mproc::AcquireStatus::timed_out);
            if (status != mproc::AcquireStatus::timed_out) ++held;
        } catch (const mproc::OwnerDied&) {
            ++held;  // acquired, the previous owner died
        } catch (const mproc::Error&) {
            // NotRecoverable, or StateError (the word holds this thread's id: taking it would deadlock)
        }
    }
    require(held == 0 || lock.held_by_this_thread());
    if (held > 0 && lock.consistency() == mproc::LockConsistency::inconsistent && (choices & 8)) {
        lock.make_consistent();
        require(lock.consistency() == mproc::LockConsistency::consistent);
    }
    for (int release = 0; release < held; ++release) lock.unlock();
    require(!lock.held_by_this_thread());
    // Releasing what this thread does not hold is refused, whatever the word says.
    try {
        lock.unlock();
        std::abort();
    } catch (const mproc::StateError&) {
    }
}

template <class Raw>
void attach_and_exercise(std::byte* memory, std::size_t size, std::uint8_t choices) {
    try {
        Raw& lock = Raw::attach(memory, size);
        exercise(lock, choices);
    } catch (const mproc::InvalidObject&) {
    }
}

template <class Raw>
void as_named_object(std::byte* buffer, std::size_t size, mproc::ObjectKind kind, std::uint8_t choices) {
    mproc::ObjectHeaderFields fields{};
    try {
        fields = mproc::validate_object_header(std::span<const std::byte>(buffer, size), "fuzzed lock", kind,
                                               mproc::current_layout_version(kind));
    } catch (const mproc::InvalidObject&) {
        return;
    }
    require(fields.total_size <= size);
    attach_and_exercise<Raw>(buffer + fields.payload_offset, fields.payload_size, choices);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::align_val_t kAlignment{128};
    auto* buffer = static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, kAlignment));
    if (size > 0) std::memcpy(buffer, data, size);
    const std::uint8_t choices = size > 63 ? data[63] : 0;  // a padding byte: free for steering

    attach_and_exercise<mproc::RawLock>(buffer, size, choices);
    if (size > 0) std::memcpy(buffer, data, size);
    attach_and_exercise<mproc::RawRLock>(buffer, size, choices);
    if (size > 0) std::memcpy(buffer, data, size);
    as_named_object<mproc::RawLock>(buffer, size, mproc::ObjectKind::lock, choices);
    if (size > 0) std::memcpy(buffer, data, size);
    as_named_object<mproc::RawRLock>(buffer, size, mproc::ObjectKind::rlock, choices);

    ::operator delete(buffer, kAlignment);
    return 0;
}
