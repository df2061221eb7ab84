// fuzz/fuzz-barrier.cpp — arbitrary bytes as a RawBarrier in shared memory.
//
// The bytes are copied into a 64-byte-aligned heap buffer of exactly their size (AddressSanitizer polices
// every read past it) and attached: RawBarrier::attach() must accept them or throw InvalidObject. When
// accepted (its internal lock validated too), the barrier is driven by this one thread with a zero
// timeout: wait() must return an index below parties() (a one-party barrier) or throw BrokenBarrier, and
// broken(), n_waiting(), abort() and reset() must return, all within the validated bytes.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <new>

#include "mproc/barrier.hpp"
#include "mproc/error.hpp"

namespace {

void require(bool property) {
    if (!property) std::abort();
}

struct AlignedBuffer {
    explicit AlignedBuffer(std::size_t size)
        : bytes(static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, std::align_val_t{64}))) {}
    ~AlignedBuffer() { ::operator delete(bytes, std::align_val_t{64}); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    std::byte* bytes;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    AlignedBuffer buffer(size);
    if (size > 0) std::memcpy(buffer.bytes, data, size);
    std::optional<mproc::RawBarrier> barrier;
    try {
        barrier = mproc::RawBarrier::attach(buffer.bytes, size);
    } catch (const mproc::InvalidObject&) {
        return 0;
    }
    require(barrier->parties() >= 1 && barrier->parties() <= mproc::RawBarrier::kMaxParties);
    require(mproc::RawBarrier::size_for(barrier->parties()) <= size);
    // The internal RawLock follows the 64-byte control block. A word naming another thread as holder is,
    // for every participant, a holder that never releases it here (this driver is single-threaded): an
    // untimed call would wait for it, as the contract says, but a timed wait() must still return, by its
    // deadline plus the internal lock's grace, with BrokenBarrier.
    const auto& internal_lock = *reinterpret_cast<const mproc::RawLock*>(buffer.bytes + 64);
    if (internal_lock.locked() && !internal_lock.held_by_this_thread()) {
        try {
            require(barrier->wait(std::chrono::nanoseconds(0)) < barrier->parties());
        } catch (const mproc::BrokenBarrier&) {
            // the lock was not released in time (or the barrier is broken): the expected outcome
        } catch (const mproc::NotRecoverable&) {
            // the internal lock's bytes claim it can never be taken: a clear refusal
        }
        return 0;
    }
    try {
        (void)barrier->n_waiting();
        const std::uint32_t index = barrier->wait(std::chrono::nanoseconds(0));
        require(index < barrier->parties());
    } catch (const mproc::BrokenBarrier&) {
        require(barrier->broken());
    } catch (const mproc::NotRecoverable&) {
        // the internal lock's bytes claim it can never be taken: a clear refusal
        return 0;
    } catch (const mproc::StateError&) {
        // the internal lock's word claims this very thread holds it: refused rather than deadlocking
        return 0;
    }
    barrier->abort();
    require(barrier->broken());
    barrier->reset();
    return 0;
}
