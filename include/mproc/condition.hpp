// mproc/condition.hpp — Python's multiprocessing.Condition for C++: a condition variable shared between
// processes and threads, bound to a robust Lock or RLock, that survives the death of its waiters.
//
// Defines: ConditionLockKind, RawCondition (the structure, placed in memory the caller owns: a control
// line and a fixed number of waiter slots), Condition (a handle: anonymous, named, or over an existing
// Lock or RLock), and detail::ConditionControl / detail::ConditionWaiterSlot (the shared layout).
//
// Algorithm: every waiter owns a slot while it is inside wait(). Under the lock it claims a free slot,
// stores its TID in the slot's futex word, links the slot into its thread's robust list (as a Lock links
// itself) and takes the next ticket; then it releases the lock fully and sleeps on its own word while the
// word still holds its bare TID. notify(n), under the lock, picks the n live, un-notified slots with the
// oldest tickets, sets FUTEX_WAITERS in each word ("notified") and wakes each one (FUTEX_WAKE 1). A waiter
// returns after re-acquiring the lock, reads its word under the lock, frees its slot, and returns whether
// the word was notified. Every slot change is made by a thread holding the lock, except the kernel's mark
// on a dead waiter's slot.
//
// Guarantees
// - No lost wake-up: a waiter's slot is visible to every notifier from the moment it released the lock
//   inside wait(); a notify issued after that sets its word, and the kernel's value check makes its sleep
//   return (verify/condition/condition.pml, property "no lost wake-up").
// - notify(n) notifies at most n waiters, each of them waiting (holding a slot) when notify(n) was called,
//   oldest first (FIFO by ticket); notify_all() notifies every one. The only exception is a notify
//   re-delivered after a death (below). A notified waiter's wait() returns true, even when its timeout
//   expired before it re-acquired the lock: a notify is never consumed by a waiter that reports false.
// - wait() releases the lock fully (an RLock at every recursion level) and re-acquires it, restoring the
//   depth, before it returns or throws, timeout included. wait(timeout) returns false when it timed out
//   without being notified; a timeout of zero or less releases and re-acquires without sleeping. The timeout
//   bounds the sleep, not the re-acquisition of the caller's lock: wait() must return holding it (Python's
//   rule), so a holder of that lock that never releases it (stopped) holds wait() too. A spurious
//   return is impossible: wait() returns true only for a notify.
// - wait_for(predicate, timeout) returns the predicate's last value, evaluated with the lock held, as
//   Python's: true as soon as the predicate holds, false when the timeout passed and it still does not.
// - Misuse: wait() or notify() by a thread that does not hold the lock throws StateError (Python's
//   RuntimeError); so does wait() while the lock is inconsistent after an owner death (releasing it then
//   would make it unrecoverable: make_consistent() first), and wait() when every slot is taken.
//
// Deaths
// - A waiter that dies inside wait() (SIGKILL at any point) leaves its slot word owned by a dead TID; the
//   kernel marks it FUTEX_OWNER_DIED. The next wait(), notify() or notify_all() on the condition, in any
//   process, frees that slot; if the dead waiter had been notified and had not yet returned, that notify is
//   re-delivered to the oldest live waiter then waiting (in addition to the caller's own n). So a death
//   never swallows a notify for longer than until the next operation on the condition; a notify_all()
//   always reaches every live waiter.
// - The lock: a holder of the condition's lock that dies makes the next acquirer see OwnerDied, as with
//   any Lock. When that acquirer is a waiter re-acquiring inside wait(), wait() finishes its bookkeeping,
//   restores the recursion depth and throws OwnerDied: the caller holds the lock and must repair the data,
//   make_consistent() and release it. A NotRecoverable lock makes wait() throw NotRecoverable after it
//   freed its slot (the caller then does not hold the lock).
// - A notifier that dies inside notify() dies holding the lock: the waiters it already marked are
//   notified, the others are not; the next acquirer is told OwnerDied.
//
// Costs
// - notify()/notify_all() with no waiter: no system call, no atomic read-modify-write; a scan of the slots
//   used so far (the high-water mark, a few relaxed loads). With waiters: one CAS and one FUTEX_WAKE per
//   notified waiter, and a scan of the used slots per notified waiter (oldest-first selection).
// - wait(): the lock's release and acquire, a few stores to the thread's robust list, and FUTEX_WAIT per
//   sleep. No allocation.
//
// Limits: at most max_waiters threads (default 128, at most kMaxWaiterCapacity) wait at once; tickets are
// 64-bit. The condition's memory must stay mapped while anyone waits on it. The condition must always be
// used with the same lock; with two different locks its slots are guarded by neither.
// Trust: as Lock — a process that writes the bytes other than through this API can break the guarantees;
// attach() validates the control line, and the handle keeps the capacity it validated: every slot index
// it uses, the high-water mark included, is bounded by that copy, so a process that rewrites the shared
// capacity or high-water mark afterwards cannot make it read or write outside the condition. The lock of a
// named condition is validated at open too, and its errors name the condition.
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
#include "mproc/rlock.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

// The lock a Condition makes for itself (anonymous and named conditions).
enum class ConditionLockKind : std::uint32_t {
    rlock = 1,  // Python's default
    lock = 2,
};

namespace detail {

// The first 64 bytes of a RawCondition. next_ticket and high_water are read and written only by threads
// that hold the condition's lock.
struct alignas(64) ConditionControl {
    std::uint32_t magic;           // kRawConditionMagic
    std::uint32_t layout_version;  // kConditionLayoutVersion
    std::uint32_t capacity;        // waiter slots that follow, 1..kMaxWaiterCapacity
    std::uint32_t high_water;      // slots [0, high_water) may be in use; never above capacity when valid
    std::uint64_t next_ticket;     // the ticket the next waiter takes
    std::uint8_t padding[40];
};

// One waiter's slot. The word is a robust futex word: 0 when free; the waiter's TID while it waits;
// | FUTEX_WAITERS once notified; FUTEX_OWNER_DIED (TID cleared) after the kernel saw the waiter die.
struct alignas(64) ConditionWaiterSlot {
    std::uint32_t word;         // accessed only through std::atomic_ref
    std::uint32_t reserved;     // zero
    std::uint64_t ticket;       // arrival order, written by the waiter under the lock
    std::uint64_t reserved2;    // zero
    std::uint64_t robust_prev;  // glibc's list: the prev word, at node - 8
    std::uint64_t robust_next;  // the node linked into the waiter thread's robust list
    std::uint8_t padding[24];
};

static_assert(sizeof(ConditionControl) == 64 && sizeof(ConditionWaiterSlot) == 64 &&
                  alignof(ConditionWaiterSlot) == 64,
              "every slot owns its cache line: a notify touches only the words it changes");
static_assert(std::is_standard_layout_v<ConditionControl> && std::is_trivially_copyable_v<ConditionControl> &&
                  std::is_standard_layout_v<ConditionWaiterSlot> &&
                  std::is_trivially_copyable_v<ConditionWaiterSlot>,
              "shared between processes built separately: plain bytes only");
static_assert(static_cast<std::ptrdiff_t>(offsetof(ConditionWaiterSlot, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(ConditionWaiterSlot, robust_next)) == -32,
              "the kernel finds the futex word at node - 32, glibc's futex_offset");
static_assert(offsetof(ConditionWaiterSlot, robust_next) - offsetof(ConditionWaiterSlot, robust_prev) == 8,
              "glibc writes a neighbour's prev word 8 bytes before its node");

inline constexpr std::uint32_t kRawConditionMagic = 0x444e434d;  // "MCND"
inline constexpr std::uint32_t kConditionLayoutVersion = 1;

}  // namespace detail

// The condition itself, in memory the caller provides (MAP_SHARED for processes). It does not contain
// its lock: every call names the lock, which must be the same one every time. RawCondition is a
// process-local handle on those bytes: small, copyable, and holding the capacity it validated at
// init()/attach(), so no operation trusts the shared copy of it (nor a high-water mark above it)
// afterwards. Handles on the same memory, in one process or several, operate on the same condition.
class MPROC_API RawCondition {
public:
    static constexpr std::size_t kAlignment = 64;
    static constexpr std::uint32_t kDefaultMaxWaiters = 128;
    static constexpr std::uint32_t kMaxWaiterCapacity = 4096;

    // Bytes a condition for max_waiters (1..kMaxWaiterCapacity, ValueError otherwise) occupies.
    static std::size_t size_for(std::uint32_t max_waiters);
    // Makes the size_for(max_waiters) bytes at memory an empty condition. memory must be kAlignment-aligned
    // and size at least size_for(max_waiters) (ValueError otherwise). Call before anyone uses the bytes.
    static RawCondition init(void* memory, std::size_t size, std::uint32_t max_waiters = kDefaultMaxWaiters);
    // A condition made by init(), validated: InvalidObject naming `label` when the bytes are too few for the
    // capacity they claim, or the magic, layout version or capacity are wrong; ValueError when misaligned.
    // The capacity is read once, checked, and kept.
    static RawCondition attach(void* memory, std::size_t size, std::string_view label = "raw condition");

    // Python's wait(timeout): nullopt waits for ever. The caller must hold `lock`.
    bool wait(RawLock& lock, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;
    bool wait(RawRLock& lock, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;

    template <class Lockable, class Predicate>
    bool wait_for(Lockable& lock, Predicate predicate,
                  std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;

    // Python's notify(n) / notify_all(); the caller must hold `lock`.
    void notify(RawLock& lock, std::uint32_t n = 1) const;
    void notify(RawRLock& lock, std::uint32_t n = 1) const;
    void notify_all(RawLock& lock) const;
    void notify_all(RawRLock& lock) const;

    std::uint32_t capacity() const noexcept { return capacity_; }
    // The shared control line (its capacity is not what the handle uses).
    detail::ConditionControl& control() const noexcept { return *control_; }

private:
    friend class Condition;
    RawCondition() = default;
    RawCondition(detail::ConditionControl* control, std::uint32_t capacity) noexcept
        : control_(control), capacity_(capacity) {}

    detail::ConditionControl* control_ = nullptr;  // the waiter slots follow it in memory
    std::uint32_t capacity_ = 0;
};

// A Condition handle: a RawCondition in a SharedMemory segment the handle owns, with the lock it uses.
// Move-only; a moved-from handle throws StateError. The Lock or RLock given to the constructor must outlive
// the handle (and, across fork, be mapped in the child: an anonymous Lock created before the fork is).
class MPROC_API Condition {
public:
    static constexpr std::uint32_t kDefaultMaxWaiters = RawCondition::kDefaultMaxWaiters;

    // An anonymous condition with its own lock (an RLock by default, as Python) in the same segment;
    // inherited by fork()ed children.
    Condition();
    explicit Condition(ConditionLockKind own_lock, std::uint32_t max_waiters = kDefaultMaxWaiters);
    // An anonymous condition over an existing lock.
    explicit Condition(Lock& lock, std::uint32_t max_waiters = kDefaultMaxWaiters);
    explicit Condition(RLock& lock, std::uint32_t max_waiters = kDefaultMaxWaiters);
    // A named condition (ObjectKind::condition) holding its own lock in the same segment; created
    // exclusively (SystemError EEXIST when the name exists).
    static Condition create(std::string_view name, ConditionLockKind own_lock = ConditionLockKind::rlock,
                            std::uint32_t max_waiters = kDefaultMaxWaiters, mode_t mode = 0600);
    // An existing named condition: SystemError(ENOENT) when missing, InvalidObject when it is another kind
    // or layout, or its lock or condition bytes fail validation.
    static Condition open(std::string_view name,
                          std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The condition behind another handle's fd() (duplicated; the caller keeps its own), validated as open():
    // only a condition holding its own lock can be handed over this way (one made over an external Lock or
    // RLock fails validation: its lock lives elsewhere).
    static Condition from_fd(int fd);
    // The memfd of an anonymous (or from_fd) condition, to hand to another process; -1 for a named one.
    int fd() const noexcept { return segment_.fd(); }

    Condition(Condition&& other) noexcept;
    Condition& operator=(Condition&& other) noexcept;
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;
    ~Condition();

    // The lock, as Python's Condition delegates: see Lock / RLock for each call's contract.
    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void release();
    void lock();
    bool try_lock();
    void unlock();
    AcquireStatus acquire_status(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void make_consistent();
    bool held_by_this_thread() const;
    ConditionLockKind lock_kind() const;

    bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    template <class Predicate>
    bool wait_for(Predicate predicate, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void notify(std::uint32_t n = 1);
    void notify_all();

    void unlink();
    const std::string& name() const noexcept { return segment_.name(); }
    // The handle's RawCondition, with the capacity this handle validated at open.
    const RawCondition& raw() const;
    const SharedMemory& segment() const noexcept { return segment_; }

private:
    Condition(SharedMemory segment, RawLock* lock, RawRLock* rlock, bool own_lock);
    const RawCondition& checked(const char* operation) const;
    static Condition with_own_lock(SharedMemory segment);

    SharedMemory segment_;
    RawCondition raw_;  // control_ is null exactly when the handle was moved from
    RawLock* lock_ = nullptr;    // exactly one of lock_ and rlock_ is set in a live handle
    RawRLock* rlock_ = nullptr;
    std::string label_;
};

namespace detail {

// Python's Condition.wait_for loop: the predicate is evaluated with the lock held; the timeout bounds the
// whole call (nullopt: none). wait_once(remaining) is one wait().
MPROC_API std::int64_t condition_clock_now_ns() noexcept;

template <class Predicate, class WaitOnce>
bool wait_for_predicate(Predicate& predicate, std::optional<std::chrono::nanoseconds> timeout, WaitOnce wait_once) {
    bool result = predicate();
    if (result) return true;
    const std::int64_t end =
        timeout ? condition_clock_now_ns() + (timeout->count() > 0 ? timeout->count() : 0) : 0;
    while (!result) {
        std::optional<std::chrono::nanoseconds> remaining;
        if (timeout) {
            const std::int64_t left = end - condition_clock_now_ns();
            if (left <= 0) break;
            remaining = std::chrono::nanoseconds(left);
        }
        wait_once(remaining);
        result = predicate();
    }
    return result;
}

}  // namespace detail

template <class Lockable, class Predicate>
bool RawCondition::wait_for(Lockable& lock, Predicate predicate,
                            std::optional<std::chrono::nanoseconds> timeout) const {
    return detail::wait_for_predicate(predicate, timeout,
                                      [&](std::optional<std::chrono::nanoseconds> remaining) {
                                          wait(lock, remaining);
                                      });
}

template <class Predicate>
bool Condition::wait_for(Predicate predicate, std::optional<std::chrono::nanoseconds> timeout) {
    checked("wait_for");
    return detail::wait_for_predicate(predicate, timeout,
                                      [&](std::optional<std::chrono::nanoseconds> remaining) { wait(remaining); });
}

}  // namespace mproc
