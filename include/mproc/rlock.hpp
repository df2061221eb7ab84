// mproc/rlock.hpp — Python's multiprocessing.RLock for C++: a recursive, robust futex mutex shared
// between processes.
//
// Defines: RawRLock (the 64-byte structure, placed in memory the caller owns) and RLock (a handle owning
// the shared memory the RawRLock lives in: anonymous or named).
//
// Guarantees: those of Lock (mproc/lock.hpp) — mutual exclusion across processes, owner death reported
// once to the next acquirer (OwnerDied / AcquireStatus::owner_died, then make_consistent() or the lock
// becomes NotRecoverable), CLOCK_MONOTONIC timeouts resumed after EINTR, Lockable and TimedLockable — plus
// recursion: the owning thread may acquire again, and the lock is released when release() has been called
// as many times as acquire() succeeded. After an owner death the new owner holds it at depth 1, whatever
// depth the dead owner had reached.
// Ownership (as Python): release() or unlock() by a thread that does not hold the lock, or of a lock that
// nobody holds, throws StateError (Python's RuntimeError). A forked child does not hold a lock its parent
// held at the fork.
// Costs: as Lock. A recursive acquire or a release above depth 1 touches only the owner's fields: no
// atomic read-modify-write, no system call.
// Trust and lifetime: as Lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/lock.hpp"
#include "mproc/segment_handle.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

namespace detail {
// How errors about a moved-from RLock name it.
inline constexpr char kRLockHandleName[] = "rlock";
}  // namespace detail

class MPROC_API RawRLock {
public:
    static constexpr std::size_t kSize = sizeof(detail::RobustMutexLayout);
    static constexpr std::size_t kAlignment = alignof(detail::RobustMutexLayout);
    // Acquiring more than this many times without releasing throws StateError.
    static constexpr std::uint32_t kMaxDepth = 0xffffffffu;

    // As RawLock::init / attach / validate, for a recursive lock (another magic: a RawLock's bytes are
    // not accepted here, nor the reverse).
    static RawRLock& init(void* memory);
    static RawRLock& attach(void* memory, std::size_t size);
    void validate(std::string_view label = "raw rlock") const;

    void lock();
    bool try_lock();
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return try_lock_for_ns(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return try_lock_for(deadline - Clock::now());
    }
    void unlock();
    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void release();
    AcquireStatus acquire_status(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void make_consistent();
    LockConsistency consistency() const noexcept;
    bool held_by_this_thread() const noexcept;
    // How many times the calling thread holds it (0 when it does not).
    std::uint32_t depth() const noexcept;

private:
    friend class RLock;
    RawRLock() = default;
    bool try_lock_for_ns(std::chrono::nanoseconds timeout);

    detail::RobustMutexLayout layout_;
};

static_assert(sizeof(RawRLock) == 64 && std::is_standard_layout_v<RawRLock>, "RawRLock is its layout");

// A RawRLock in a SharedMemory segment the handle owns (ObjectKind::rlock). Move-only; a moved-from RLock
// throws StateError.
class MPROC_API RLock {
public:
    RLock();
    static RLock create(std::string_view name, mode_t mode = 0600);
    static RLock open(std::string_view name,
                      std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The object behind another handle's fd() (an anonymous RLock's memfd, received over SCM_RIGHTS or
    // inherited): fd is duplicated, the caller keeps its own; validated as open() validates (InvalidObject for
    // another kind, layout or bytes, a pipe or an unsealed file).
    static RLock from_fd(int fd);
    // The memfd of an anonymous (or from_fd) RLock, to hand to another process; -1 for a named one.
    int fd() const noexcept { return handle_.fd(); }

    RLock(RLock&& other) noexcept;
    RLock& operator=(RLock&& other) noexcept;
    RLock(const RLock&) = delete;
    RLock& operator=(const RLock&) = delete;
    ~RLock();

    void lock();
    bool try_lock();
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return try_lock_for_ns(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return try_lock_for(deadline - Clock::now());
    }
    void unlock();
    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void release();
    AcquireStatus acquire_status(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void make_consistent();
    LockConsistency consistency() const;
    bool held_by_this_thread() const;
    std::uint32_t depth() const;

    void unlink();
    const std::string& name() const noexcept { return handle_.segment().name(); }
    RawRLock& raw() const;
    const SharedMemory& segment() const noexcept { return handle_.segment(); }

private:
    using Handle = detail::SegmentHandle<RawRLock, ObjectKind::rlock, detail::kRLockHandleName>;

    explicit RLock(SharedMemory segment);
    bool try_lock_for_ns(std::chrono::nanoseconds timeout);

    Handle handle_;
};

}  // namespace mproc
