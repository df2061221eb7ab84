// mproc/lock.hpp — Python's multiprocessing.Lock for C++: a futex mutex shared between processes that
// survives the death of its owner (a robust mutex).
//
// Defines: AcquireStatus, LockConsistency, RawLock (the 64-byte structure, placed in memory the caller
// owns), Lock (a handle owning the shared memory the RawLock lives in: anonymous or named), and
// detail::RobustMutexLayout (the layout RawLock and RawRLock share).
//
// Guarantees
// - Mutual exclusion between threads of any processes that map the lock, including after owner deaths.
// - Lockable and TimedLockable: std::lock_guard, std::unique_lock, std::scoped_lock, try_lock_for/until
//   work. Python's acquire(block, timeout) -> bool and release() are offered too.
// - Owner death: when the thread holding the lock dies (SIGKILL at any instruction, inside lock() and
//   unlock() included, or a thread that exits holding it), the kernel marks the lock (FUTEX_OWNER_DIED)
//   and wakes one waiter at once, not after a timeout. The next acquirer gets the lock *and* is told:
//   lock(), try_lock(), try_lock_for/until() and acquire() throw OwnerDied while holding the lock;
//   acquire_status() returns AcquireStatus::owner_died. That acquirer repairs the protected data, calls
//   make_consistent(), then unlock(). Exactly one acquirer is told per death. A lock released without
//   make_consistent() becomes unrecoverable: every later acquire, in any process, throws NotRecoverable
//   (and waiters then asleep are woken to be told). This is the contract of robust pthread mutexes
//   (EOWNERDEAD, pthread_mutex_consistent, ENOTRECOVERABLE).
//   std::lock_guard cannot express "acquired, but the owner died": an OwnerDied thrown from its
//   constructor leaves the lock held by the catcher, who must make_consistent() and unlock() by hand.
//   Code that must survive owner death uses acquire_status() or catches OwnerDied around lock().
// - Waking "at once" needs Linux 5.5 for a holder killed between releasing the word and waking a waiter,
//   and Linux 6.2 (6.1.2 stable) for a woken waiter killed before it takes the lock; older kernels
//   recover those two cases only through a waiter's timeout.
// - Timeouts are measured on CLOCK_MONOTONIC from the call; a signal (EINTR) resumes the wait with the
//   time that remains. A timeout of zero or less makes one attempt without blocking.
// - Not fair: a thread that arrives as the lock is released may take it before a woken waiter.
//
// Costs
// - Uncontended lock()+unlock(): no system call; two atomic read-modify-writes and a few stores to the
//   thread's robust list (glibc's). The first lock operation of a thread makes two system calls once.
// - Contended: a spin of about 600 pauses (x86: ~14 µs on the reference guest; a timed acquire stops it at
//   its deadline) that re-reads the word with exponential backoff (1 to 64 pauses between looks, so the
//   owner keeps its cache line), then FUTEX_WAIT (shared futex) per sleep. unlock()
//   calls FUTEX_WAKE only while some thread is asleep or about to sleep (a count beside the word), so
//   once contention ends, lock()+unlock() make no system call again. A waiter killed while asleep
//   leaves that count one too high for the life of the lock: every later unlock() then makes one
//   FUTEX_WAKE (correct, about a microsecond slower).
//
// Ownership (a deliberate difference from Python): Python lets any process release a Lock. A robust
// lock's node sits in its owner thread's robust list, which only that thread can edit, so unlock() /
// release() by any other thread or process throws StateError, as does releasing an unlocked lock.
// Locking a Lock this thread already holds throws StateError instead of deadlocking. A child forked
// while its parent held the lock does not hold it: the child's unlock() throws StateError, and the
// parent still holds and releases it.
//
// Trust: every process that maps a lock may corrupt it; one that writes its bytes other than through
// this API can break mutual exclusion or the owner's robust list, as with a pthread mutex in shared
// memory. Attaching (RawLock::attach) to bytes of unknown origin is safe to try: validation reads only
// inside the bytes, and try_lock()/acquire_status(0)/unlock() never block whatever the word holds.
// The lock must not be unmapped or re-initialised while a thread holds it or waits on it.
// Every operation needs a Linux kernel with robust futexes and glibc (futex_offset -32); otherwise the
// first one throws Error.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/segment_handle.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

enum class AcquireStatus {
    acquired,    // the caller holds the lock
    owner_died,  // the caller holds the lock; the previous owner died holding it (repair, make_consistent)
    timed_out,   // the caller does not hold the lock
};

enum class LockConsistency : std::uint32_t {
    consistent = 0,
    inconsistent = 1,     // acquired after an owner death, make_consistent() not yet called
    not_recoverable = 2,  // released while inconsistent: can never be acquired again
};

namespace detail {

// The 64 bytes a RawLock or RawRLock is. Fixed-width integers only; the word fields are accessed only
// through std::atomic_ref.
struct alignas(64) RobustMutexLayout {
    std::uint32_t word;            // futex word: owner TID | FUTEX_WAITERS | FUTEX_OWNER_DIED
    std::uint32_t consistency;     // a LockConsistency; written by the owner only
    std::uint32_t recursion;       // RawRLock: depth, written by the owner only; RawLock: 0
    std::uint32_t sleepers;        // threads in or entering FUTEX_WAIT; atomic_ref only
    std::uint32_t magic;           // kRawLockMagic / kRawRLockMagic
    std::uint32_t layout_version;  // kRobustMutexLayoutVersion
    std::uint64_t robust_prev;     // glibc's list: the prev word, at node - 8
    std::uint64_t robust_next;     // the node linked into the owner thread's robust list
    std::uint8_t padding[24];      // the next object starts on another cache line
};

static_assert(sizeof(RobustMutexLayout) == 64 && alignof(RobustMutexLayout) == 64,
              "a lock owns one cache line: nothing else bounces with its word");
static_assert(std::is_standard_layout_v<RobustMutexLayout> && std::is_trivially_copyable_v<RobustMutexLayout>,
              "shared between processes built separately: plain bytes only");
static_assert(static_cast<std::ptrdiff_t>(offsetof(RobustMutexLayout, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(RobustMutexLayout, robust_next)) == -32,
              "the kernel finds the futex word at node - 32, glibc's futex_offset");
static_assert(offsetof(RobustMutexLayout, robust_next) - offsetof(RobustMutexLayout, robust_prev) == 8,
              "glibc writes a neighbour's prev word 8 bytes before its node");

inline constexpr std::uint32_t kRawLockMagic = 0x4b4c504d;   // "MPLK"
inline constexpr std::uint32_t kRawRLockMagic = 0x4c52504d;  // "MPRL"
inline constexpr std::uint32_t kRobustMutexLayoutVersion = 1;

// How errors about a moved-from Lock name it.
inline constexpr char kLockHandleName[] = "lock";

}  // namespace detail

// The lock itself, in memory the caller provides (mapped MAP_SHARED by every process that uses it).
class MPROC_API RawLock {
public:
    static constexpr std::size_t kSize = sizeof(detail::RobustMutexLayout);
    static constexpr std::size_t kAlignment = alignof(detail::RobustMutexLayout);

    // Makes the kSize bytes at memory an unlocked, consistent lock. memory must be kAlignment-aligned
    // (ValueError otherwise). Call once, before any other process uses the bytes.
    static RawLock& init(void* memory);
    // A lock made by init(), validated: InvalidObject when the bytes are too few, or their magic, layout
    // version or consistency state are wrong; ValueError when memory is misaligned.
    static RawLock& attach(void* memory, std::size_t size);
    // The checks attach() makes; label names the lock in the message.
    void validate(std::string_view label = "raw lock") const;

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

    // Python: block=false makes one attempt; block=true waits up to timeout (nullopt: forever). Returns
    // whether the lock was acquired. A timeout with block=false, or a negative timeout: ValueError.
    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void release();

    // Acquires without turning owner death into an exception. nullopt: wait forever.
    AcquireStatus acquire_status(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

    // After an owner_died acquire, by the holder: the protected data is repaired. StateError when the
    // caller does not hold the lock or it is consistent.
    void make_consistent();
    // A snapshot; exact only for the holder.
    LockConsistency consistency() const noexcept;
    // Whether any thread holds it (a snapshot; true for an unrecoverable lock).
    bool locked() const noexcept;
    bool held_by_this_thread() const noexcept;

private:
    friend class Lock;
    RawLock() = default;
    bool try_lock_for_ns(std::chrono::nanoseconds timeout);

    detail::RobustMutexLayout layout_;
};

static_assert(sizeof(RawLock) == 64 && std::is_standard_layout_v<RawLock>, "RawLock is its layout");

// A RawLock in a SharedMemory segment the handle owns. Move-only; a moved-from Lock throws StateError.
class MPROC_API Lock {
public:
    // An anonymous lock: inherited by fork()ed children (the segment is mapped before the fork).
    Lock();
    // A named lock (ObjectKind::lock): created exclusively (SystemError EEXIST when the name exists).
    static Lock create(std::string_view name, mode_t mode = 0600);
    // An existing named lock: SystemError(ENOENT) when missing, InvalidObject when it is another kind,
    // layout, or its lock bytes fail validation.
    static Lock open(std::string_view name,
                     std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The object behind another handle's fd() (an anonymous Lock's memfd, received over SCM_RIGHTS or
    // inherited): fd is duplicated, the caller keeps its own; validated as open() validates (InvalidObject for
    // another kind, layout or bytes, a pipe or an unsealed file).
    static Lock from_fd(int fd);
    // The memfd of an anonymous (or from_fd) Lock, to hand to another process; -1 for a named one.
    int fd() const noexcept { return handle_.fd(); }

    Lock(Lock&& other) noexcept;
    Lock& operator=(Lock&& other) noexcept;
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    ~Lock();

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
    bool locked() const;
    bool held_by_this_thread() const;

    // Removes the name (see SharedMemory::unlink).
    void unlink();
    const std::string& name() const noexcept { return handle_.segment().name(); }
    RawLock& raw() const;
    const SharedMemory& segment() const noexcept { return handle_.segment(); }

private:
    using Handle = detail::SegmentHandle<RawLock, ObjectKind::lock, detail::kLockHandleName>;

    explicit Lock(SharedMemory segment);
    bool try_lock_for_ns(std::chrono::nanoseconds timeout);

    Handle handle_;
};

}  // namespace mproc
