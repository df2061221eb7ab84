// fuzz/fuzz-condition.cpp — arbitrary bytes as a RawCondition (and its own lock) in shared memory.
//
// The bytes are copied into a 64-byte-aligned heap buffer of exactly their size (AddressSanitizer polices
// every read past it) and attached: RawCondition::attach() must accept them or throw InvalidObject/ValueError.
// When accepted, the condition is driven with a fresh lock of this thread: notify(), notify_all() and
// wait(0) must return without blocking, never touch memory past the capacity it validated, and leave
// wait(0) returning false (nobody notifies). The same bytes behind a lock header are then opened the way
// Condition::open does, through the lock's own validation.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <new>

#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"
#include "mproc/rlock.hpp"

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
    std::optional<mproc::RawCondition> condition;
    try {
        condition = mproc::RawCondition::attach(buffer.bytes, size);
    } catch (const mproc::InvalidObject&) {
        return 0;
    }
    require(condition->capacity() >= 1 && condition->capacity() <= mproc::RawCondition::kMaxWaiterCapacity);
    require(mproc::RawCondition::size_for(condition->capacity()) <= size);

    alignas(64) unsigned char lock_bytes[mproc::RawLock::kSize];
    mproc::RawLock& lock = mproc::RawLock::init(lock_bytes);
    bool refused = false;
    try {
        condition->notify(lock);
    } catch (const mproc::StateError&) {
        refused = true;  // not holding the lock
    }
    require(refused);
    lock.lock();
    try {
        condition->notify(lock, 3);
        condition->notify_all(lock);
        require(!condition->wait(lock, std::chrono::nanoseconds(0)));
    } catch (const mproc::StateError&) {
        // every slot looked taken: a clear refusal
    }
    require(lock.held_by_this_thread());
    lock.unlock();
    return 0;
}
