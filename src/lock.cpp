// Lock and RLock: one robust futex protocol (this file), two ownership rules.
//
// The futex word: owner TID | FUTEX_WAITERS | FUTEX_OWNER_DIED. The lock is free when its TID bits are 0.
// Beside it, `sleepers` counts the threads that are in, or about to enter, FUTEX_WAIT on it.
//   acquire:  list_op_pending = node; seen = word; if seen is free without OWNER_DIED, CAS seen ->
//             tid | (seen & WAITERS) (acquire); else acquire_contended(): take any free word the same
//             way; OWNER_DIED in it means the last owner died holding it: record "inconsistent", report
//             owner_died. While owned by another: spin, then sleepers += 1, CAS WAITERS into the word,
//             FUTEX_WAIT on the value with WAITERS, sleepers -= 1, look again.
//             On success link the node first in the thread's robust list (glibc's order); then clear
//             list_op_pending.
//   release:  list_op_pending = node; unlink; fetch_and(word, WAITERS) (the word is free, WAITERS kept);
//             if sleepers > 0: FUTEX_WAKE 1. Clear list_op_pending. Released while inconsistent: the
//             word becomes kNotRecoverableWord instead, and every sleeper is woken to be told.
// Two signals, two readers. FUTEX_WAITERS is for the kernel: at an owner's death it wakes a waiter only
// when the bit is set, so once set it stays set (sticky) and every owner takes the word with it. The
// count is for user space: a release wakes only while somebody sleeps, so uncontended rounds make no
// system call even with the bit set. No lost wake-up: a sleeper increments `sleepers` (seq_cst) before
// the kernel compares the word, and a release reads it (seq_cst) after its read-modify-write of the
// word; of two such store-then-load pairs at least one sees the other's store, so either the kernel's
// compare sees the released word (no sleep) or the release sees the sleeper (wake).
// Why not clear WAITERS when a wake finds nobody (the usual trick): between that wake and the clearing
// CAS another thread can take and release the word, leaving the same value while new sleepers wait:
// the CAS then strips the bit from under them (verify/lock/lock.pml, check bug_stale_waiters_clear).
// Owner death paths: a holder killed anywhere is found by the kernel through the list or
// list_op_pending (OWNER_DIED, wake one: WAITERS is set whenever anyone sleeps); a releaser killed
// between freeing the word and waking, or a woken waiter killed before taking it, leaves a free word
// and a pending entry, for which the kernel wakes another waiter (Linux 6.2, see robust_list.hpp); a
// thread that barged in meanwhile holds the word and will wake on release, as `sleepers` still counts
// the sleepers.
// verify/lock/lock.pml models these functions step by step, with a crash injected at every step.
#include "mproc/lock.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include <linux/futex.h>

#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "mproc/object_header.hpp"
#include "mproc/rlock.hpp"
#include "robust_list.hpp"

namespace mproc {
namespace {

using detail::Deadline;
using detail::RobustMutexLayout;
using detail::ThisThreadRobustList;

constexpr std::uint32_t kWaiters = FUTEX_WAITERS;
constexpr std::uint32_t kOwnerDied = FUTEX_OWNER_DIED;
constexpr std::uint32_t kTidMask = FUTEX_TID_MASK;
// A TID no thread can have (pid_max is at most 2^22): the kernel never touches it, and every acquirer
// recognises it.
constexpr std::uint32_t kNotRecoverableWord = FUTEX_TID_MASK;
// The spin before sleeping on an owned word: look, then pause 1, 2, 4 ... up to kMaxBackoffPauses times
// before the next look, until about kSpinPauseBudget pauses are spent (x86: about 14 µs on the reference
// guest, whose pause takes 25 ns, under the 20-40 µs a sleep and wake-up cost there; aarch64's yield is far
// shorter). Every look pulls the lock's line to the waiter and costs the owner a line transfer on its next
// lock or unlock; looking after every pause made a contended hand-off 0.5x glibc's robust mutex, whose
// waiters sleep at once, and backing off made it about 2x (docs/benchmarks.md).
constexpr int kMaxBackoffPauses = 64;
constexpr int kSpinPauseBudget = 512;

static_assert(static_cast<std::ptrdiff_t>(offsetof(RobustMutexLayout, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(RobustMutexLayout, robust_next)) ==
                  detail::kRobustFutexOffset,
              "the lock layout and the robust list agree on where the futex word is");

std::atomic_ref<std::uint32_t> word_of(RobustMutexLayout& lock) noexcept { return std::atomic_ref(lock.word); }
std::atomic_ref<std::uint32_t> word_of(const RobustMutexLayout& lock) noexcept {
    return std::atomic_ref(const_cast<std::uint32_t&>(lock.word));
}
std::atomic_ref<std::uint32_t> consistency_of(const RobustMutexLayout& lock) noexcept {
    return std::atomic_ref(const_cast<std::uint32_t&>(lock.consistency));
}
std::atomic_ref<std::uint32_t> sleepers_of(const RobustMutexLayout& lock) noexcept {
    return std::atomic_ref(const_cast<std::uint32_t&>(lock.sleepers));
}
std::atomic_ref<std::uint32_t> recursion_of(const RobustMutexLayout& lock) noexcept {
    return std::atomic_ref(const_cast<std::uint32_t&>(lock.recursion));
}
void* node_of(RobustMutexLayout& lock) noexcept { return &lock.robust_next; }
const void* node_of(const RobustMutexLayout& lock) noexcept { return &lock.robust_next; }

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

std::string describe(std::string_view label, const char* operation, const std::string& cause) {
    return std::string(label) + ": " + operation + ": " + cause;
}

[[noreturn]] void throw_not_recoverable(std::string_view label, const char* operation) {
    throw NotRecoverable(describe(label, operation,
                                  "a previous owner died and the lock was released without make_consistent(); "
                                  "it can never be acquired again"));
}

[[noreturn]] void throw_owner_died(std::string_view label, const char* operation) {
    throw OwnerDied(describe(label, operation,
                             "the previous owner died holding the lock; this thread now holds it and must "
                             "repair the data, call make_consistent(), then unlock()"));
}

// Owned by this thread: its TID in the word *and* the node in its robust list. The second test keeps a
// corrupted or hostile word that happens to hold our TID from making us unlink links we never wrote.
bool held_by(const RobustMutexLayout& lock, const ThisThreadRobustList& self) noexcept {
    // relaxed: only this thread writes its own TID into the word, so this thread's own view is exact.
    return (word_of(lock).load(std::memory_order_relaxed) & kTidMask) == self.tid() && self.contains(node_of(lock));
}

void require_held(const RobustMutexLayout& lock, const ThisThreadRobustList& self, std::string_view label,
                  const char* operation) {
    if (held_by(lock, self)) return;
    // relaxed: a snapshot for the message only.
    const std::uint32_t owner = word_of(lock).load(std::memory_order_relaxed) & kTidMask;
    if (owner == 0) throw StateError(describe(label, operation, "the lock is not held"));
    if (owner == kNotRecoverableWord) throw StateError(describe(label, operation, "the lock is not recoverable"));
    throw StateError(describe(label, operation,
                              "the lock is held by thread " + std::to_string(owner) + ", not by this thread " +
                                  std::to_string(self.tid()) +
                                  " (only the owner may release a robust lock: its node is in the owner's "
                                  "robust list)"));
}

// Takes the word for this thread once it was seen free; the caller set list_op_pending.
AcquireStatus finish_acquire(RobustMutexLayout& lock, ThisThreadRobustList& self, std::uint32_t taken_from) {
    const bool owner_died = (taken_from & kOwnerDied) != 0;
    MPROC_KILL_POINT(lock_acquire, 6);  // the word names this thread; not linked, covered by pending
    if (owner_died) {
        // relaxed: read and written only by the owner; the word's acquire/release orders owners.
        consistency_of(lock).store(static_cast<std::uint32_t>(LockConsistency::inconsistent),
                                   std::memory_order_relaxed);
        MPROC_KILL_POINT(lock_acquire, 7);  // marked inconsistent, then the word's OWNER_DIED is lost
    }
    self.link(node_of(lock));
    MPROC_KILL_POINT(lock_acquire, 8);  // linked and pending: the kernel finds the node either way
    self.clear_pending();
    return owner_died ? AcquireStatus::owner_died : AcquireStatus::acquired;
}

// The slow path: `seen` is the word the fast path's CAS found. timeout nullopt: no bound; zero or less:
// one look, no spin, no sleep.
AcquireStatus acquire_contended(RobustMutexLayout& lock, ThisThreadRobustList& self, std::uint32_t seen,
                                std::optional<std::chrono::nanoseconds> timeout, std::string_view label,
                                const char* operation) {
    auto word = word_of(lock);
    const bool may_block = !timeout || timeout->count() > 0;
    // Started when the word is first seen owned: taking a free word, even on this path, reads no clock.
    const bool bounded = timeout.has_value();
    std::optional<Deadline> deadline;
    const std::uint32_t me = self.tid();
    int backoff_pauses = 1;
    int paused = 0;
    for (;;) {
        const std::uint32_t owner = seen & kTidMask;
        if (owner == 0) {
            // acquire: pairs with the release in release_word() (or the kernel's store after an owner
            // death), so the previous owner's writes to the protected data are visible. WAITERS is kept:
            // other threads may still sleep.
            if (word.compare_exchange_weak(seen, me | (seen & kWaiters), std::memory_order_acquire,
                                           std::memory_order_relaxed))
                return finish_acquire(lock, self, seen);
            continue;  // seen now holds the current word
        }
        if (owner == kNotRecoverableWord) {
            self.clear_pending();
            throw_not_recoverable(label, operation);
        }
        if (owner == me) {
            self.clear_pending();
            throw StateError(describe(label, operation, "this thread already holds the lock (it would deadlock)"));
        }
        if (!may_block) {
            self.clear_pending();
            return AcquireStatus::timed_out;
        }
        if (bounded && !deadline) deadline = Deadline::after(*timeout);
        // A timed acquire also stops spinning at its deadline, so a timeout shorter than the spin is kept.
        if (paused < kSpinPauseBudget && !(bounded && deadline->passed())) {
            for (int pause = 0; pause < backoff_pauses; ++pause) cpu_relax();
            paused += backoff_pauses;
            backoff_pauses = std::min(2 * backoff_pauses, kMaxBackoffPauses);
            // relaxed: only a hint; the CAS above re-checks and orders.
            seen = word.load(std::memory_order_relaxed);
            continue;
        }
        timespec remaining{};
        if (bounded) {
            if (deadline->passed()) {
                self.clear_pending();
                return AcquireStatus::timed_out;
            }
            remaining = deadline->remaining_timespec();
        }
        // seq_cst: announces this sleeper before the kernel compares the word; pairs with the seq_cst
        // load in release_word() (see the top of this file).
        sleepers_of(lock).fetch_add(1, std::memory_order_seq_cst);
        MPROC_KILL_POINT(lock_acquire, 3);  // counted as a sleeper for good: releases wake in vain
        bool may_sleep = true;
        if ((seen & kWaiters) == 0) {
            // relaxed: the bit is for the kernel's owner-death wake-up and publishes no data.
            may_sleep = word.compare_exchange_strong(seen, seen | kWaiters, std::memory_order_relaxed,
                                                     std::memory_order_relaxed);
            if (may_sleep) seen |= kWaiters;
        }
        // The kernel compares the word with `seen` under its bucket lock before sleeping: a release in
        // between makes this return at once. Every outcome — woken, value changed, timed out, EINTR —
        // means look at the word again; the deadline check above ends the loop.
        MPROC_KILL_POINT(lock_acquire, 4);  // WAITERS set by a thread that will never sleep
        if (may_sleep) detail::futex_wait(&lock.word, seen, bounded ? &remaining : nullptr);
        MPROC_KILL_POINT(lock_acquire, 5);  // woken (perhaps as the one the release chose) and dead
        // relaxed: this thread's own announcement is withdrawn; nothing is published.
        sleepers_of(lock).fetch_sub(1, std::memory_order_relaxed);
        // relaxed: a hint, as above.
        seen = word.load(std::memory_order_relaxed);
    }
}

AcquireStatus acquire_word(RobustMutexLayout& lock, std::optional<std::chrono::nanoseconds> timeout,
                           std::string_view label, const char* operation) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    if (self.slot_holds() != 0) [[unlikely]]  // list_op_pending covers an MPMC slot this thread holds
        throw StateError(describe(label, operation,
                                  "this thread holds a reserved MPMC slot or a peeked message (commit or release "
                                  "it first)"));
    self.set_pending(node_of(lock));
    MPROC_KILL_POINT(lock_acquire, 0);  // pending names a lock whose word this thread never held
    auto word = word_of(lock);
    // relaxed: only chooses the value the CAS expects; the CAS orders.
    std::uint32_t seen = word.load(std::memory_order_relaxed);
    // acquire: pairs with the release in release_word(): the previous owner's writes are visible.
    if ((seen & ~kWaiters) == 0 &&
        word.compare_exchange_strong(seen, self.tid() | seen, std::memory_order_acquire, std::memory_order_relaxed)) {
        MPROC_KILL_POINT(lock_acquire, 1);  // the word names this thread; only pending covers it
        self.link(node_of(lock));
        MPROC_KILL_POINT(lock_acquire, 2);  // linked and pending
        self.clear_pending();
        return AcquireStatus::acquired;
    }
    return acquire_contended(lock, self, seen, timeout, label, operation);
}

// The caller holds the lock (require_held passed).
void release_word(RobustMutexLayout& lock, ThisThreadRobustList& self) noexcept {
    auto word = word_of(lock);
    // relaxed: owner-only field.
    const bool inconsistent = consistency_of(lock).load(std::memory_order_relaxed) ==
                              static_cast<std::uint32_t>(LockConsistency::inconsistent);
    if (inconsistent)
        consistency_of(lock).store(static_cast<std::uint32_t>(LockConsistency::not_recoverable),
                                   std::memory_order_relaxed);
    MPROC_KILL_POINT(lock_release, 0);  // held and linked (released inconsistent: marked not recoverable)
    self.set_pending(node_of(lock));
    MPROC_KILL_POINT(lock_release, 1);  // held, linked and pending
    self.unlink(node_of(lock));
    MPROC_KILL_POINT(lock_release, 2);  // held, covered by pending alone
    if (inconsistent) {
        // seq_cst: the release half pairs with the acquire loads of later acquirers (who read the state
        // above); the store-load order with the sleepers load below is the no-lost-wake-up argument.
        word.exchange(kNotRecoverableWord, std::memory_order_seq_cst);
        MPROC_KILL_POINT(lock_release, 3);  // not recoverable, sleepers not yet told
        // seq_cst: pairs with the seq_cst increment in acquire_contended() (see the top of this file).
        if (sleepers_of(lock).load(std::memory_order_seq_cst) != 0)
            detail::futex_wake(&lock.word, detail::kFutexWakeAll);
    } else {
        // seq_cst: release pairs with the next owner's acquire CAS, publishing the protected data; and
        // this store must precede the sleepers load below (see the top of this file). Clears the TID
        // (the word is free) and keeps WAITERS.
        word.fetch_and(kWaiters, std::memory_order_seq_cst);
        MPROC_KILL_POINT(lock_release, 3);  // free, sleepers not yet woken, pending still set
        // seq_cst: pairs with the seq_cst increment in acquire_contended().
        if (sleepers_of(lock).load(std::memory_order_seq_cst) != 0) detail::futex_wake(&lock.word, 1);
    }
    MPROC_KILL_POINT(lock_release, 4);  // free and woken, pending still names it
    self.clear_pending();
}

// The Lock rules on top of the protocol.
AcquireStatus lock_acquire(RobustMutexLayout& lock, std::optional<std::chrono::nanoseconds> timeout,
                           std::string_view label, const char* operation) {
    return acquire_word(lock, timeout, label, operation);
}

bool lock_acquire_or_throw(RobustMutexLayout& lock, std::optional<std::chrono::nanoseconds> timeout,
                           std::string_view label, const char* operation) {
    switch (lock_acquire(lock, timeout, label, operation)) {
    case AcquireStatus::acquired: return true;
    case AcquireStatus::owner_died: throw_owner_died(label, operation);
    case AcquireStatus::timed_out: return false;
    }
    return false;
}

void lock_release(RobustMutexLayout& lock, std::string_view label, const char* operation) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_held(lock, self, label, operation);
    release_word(lock, self);
}

// The RLock rules: the owner re-enters by counting.
AcquireStatus rlock_acquire(RobustMutexLayout& lock, std::optional<std::chrono::nanoseconds> timeout,
                            std::string_view label, const char* operation) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    // relaxed: only this thread writes its own TID into the word.
    if ((word_of(lock).load(std::memory_order_relaxed) & kTidMask) == self.tid()) {
        if (!self.contains(node_of(lock)))
            throw StateError(describe(label, operation,
                                      "the lock holds this thread's id but is not in its robust list "
                                      "(corrupted, or mapped twice in this process)"));
        // relaxed: owner-only field.
        const std::uint32_t depth = recursion_of(lock).load(std::memory_order_relaxed);
        if (depth == RawRLock::kMaxDepth)
            throw StateError(describe(label, operation, "recursion depth limit reached"));
        recursion_of(lock).store(depth == 0 ? 2 : depth + 1, std::memory_order_relaxed);
        return AcquireStatus::acquired;
    }
    const AcquireStatus status = lock_acquire(lock, timeout, label, operation);
    // relaxed: owner-only field, written after the acquire that made us the owner.
    if (status != AcquireStatus::timed_out) recursion_of(lock).store(1, std::memory_order_relaxed);
    return status;
}

bool rlock_acquire_or_throw(RobustMutexLayout& lock, std::optional<std::chrono::nanoseconds> timeout,
                            std::string_view label, const char* operation) {
    switch (rlock_acquire(lock, timeout, label, operation)) {
    case AcquireStatus::acquired: return true;
    case AcquireStatus::owner_died: throw_owner_died(label, operation);
    case AcquireStatus::timed_out: return false;
    }
    return false;
}

void rlock_release(RobustMutexLayout& lock, std::string_view label, const char* operation) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_held(lock, self, label, operation);
    // relaxed: owner-only field.
    const std::uint32_t depth = recursion_of(lock).load(std::memory_order_relaxed);
    if (depth > 1) {
        recursion_of(lock).store(depth - 1, std::memory_order_relaxed);
        return;
    }
    recursion_of(lock).store(0, std::memory_order_relaxed);
    release_word(lock, self);
}

void make_lock_consistent(RobustMutexLayout& lock, std::string_view label) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_held(lock, self, label, "make_consistent");
    // relaxed: owner-only field.
    if (consistency_of(lock).load(std::memory_order_relaxed) !=
        static_cast<std::uint32_t>(LockConsistency::inconsistent))
        throw StateError(describe(label, "make_consistent", "the lock is already consistent"));
    consistency_of(lock).store(static_cast<std::uint32_t>(LockConsistency::consistent), std::memory_order_relaxed);
}

LockConsistency read_consistency(const RobustMutexLayout& lock) noexcept {
    // relaxed: a snapshot; exact for the owner, who is its only writer.
    const std::uint32_t word = word_of(lock).load(std::memory_order_relaxed);
    if ((word & kTidMask) == kNotRecoverableWord) return LockConsistency::not_recoverable;
    if ((word & kTidMask) == 0) {
        if (word & kOwnerDied) return LockConsistency::inconsistent;
        return LockConsistency::consistent;
    }
    const std::uint32_t state = consistency_of(lock).load(std::memory_order_relaxed);
    return state == static_cast<std::uint32_t>(LockConsistency::inconsistent) ? LockConsistency::inconsistent
                                                                               : LockConsistency::consistent;
}

bool held_by_this_thread(const RobustMutexLayout& lock) noexcept {
    try {
        return held_by(lock, detail::this_thread_robust_list());
    } catch (const Error&) {
        return false;  // no usable robust list: this thread cannot hold any lock
    }
}

void check_python_arguments(bool block, std::optional<std::chrono::nanoseconds> timeout, std::string_view label) {
    if (!block && timeout)
        throw ValueError(describe(label, "acquire", "a timeout cannot be given for a non-blocking call"));
    if (timeout && timeout->count() < 0)
        throw ValueError(describe(label, "acquire", "the timeout must not be negative"));
}

std::optional<std::chrono::nanoseconds> python_timeout(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    if (!block) return std::chrono::nanoseconds(0);
    return timeout;
}

void* check_alignment(void* memory, std::string_view label, const char* operation) {
    if (memory == nullptr) throw ValueError(describe(label, operation, "null memory"));
    if (reinterpret_cast<std::uintptr_t>(memory) % alignof(RobustMutexLayout) != 0)
        throw ValueError(describe(label, operation,
                                  "memory must be " + std::to_string(alignof(RobustMutexLayout)) + "-byte aligned"));
    return memory;
}

void place(void* memory, std::uint32_t magic) {
    RobustMutexLayout layout{};
    layout.magic = magic;
    layout.layout_version = detail::kRobustMutexLayoutVersion;
    std::memcpy(memory, &layout, sizeof layout);
}

// Validation reads the fields it checks once each and nothing outside the 64 bytes.
void validate_layout(const RobustMutexLayout& lock, std::uint32_t expected_magic, std::string_view label) {
    if (lock.magic != expected_magic) {
        const bool other_kind = lock.magic == detail::kRawLockMagic || lock.magic == detail::kRawRLockMagic;
        throw InvalidObject(std::string(label) + ": " +
                            (other_kind ? std::string(lock.magic == detail::kRawLockMagic ? "a Lock" : "an RLock") +
                                              ", not " +
                                              (expected_magic == detail::kRawLockMagic ? "a Lock" : "an RLock")
                                        : "magic " + std::to_string(lock.magic) + ", expected " +
                                              std::to_string(expected_magic)));
    }
    if (lock.layout_version != detail::kRobustMutexLayoutVersion)
        throw InvalidObject(std::string(label) + ": layout version " + std::to_string(lock.layout_version) +
                            ", expected " + std::to_string(detail::kRobustMutexLayoutVersion));
    // relaxed: a plain read of a word another process may be writing.
    const std::uint32_t state = consistency_of(lock).load(std::memory_order_relaxed);
    if (state > static_cast<std::uint32_t>(LockConsistency::not_recoverable))
        throw InvalidObject(std::string(label) + ": consistency state " + std::to_string(state) +
                            ", expected 0, 1 or 2");
}

RobustMutexLayout* attach_layout(void* memory, std::size_t size, std::uint32_t magic, std::string_view label) {
    check_alignment(memory, label, "attach");
    if (size < sizeof(RobustMutexLayout))
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, expected at least " +
                            std::to_string(sizeof(RobustMutexLayout)));
    auto* layout = std::launder(static_cast<RobustMutexLayout*>(memory));
    validate_layout(*layout, magic, label);
    return layout;
}

constexpr std::string_view kRawLockLabel = "raw lock";
constexpr std::string_view kRawRLockLabel = "raw rlock";

}  // namespace

// RawLock ---------------------------------------------------------------------------------------------------

RawLock& RawLock::init(void* memory) {
    place(check_alignment(memory, kRawLockLabel, "init"), detail::kRawLockMagic);
    return *std::launder(static_cast<RawLock*>(memory));
}

RawLock& RawLock::attach(void* memory, std::size_t size) {
    attach_layout(memory, size, detail::kRawLockMagic, kRawLockLabel);
    return *std::launder(static_cast<RawLock*>(memory));
}

void RawLock::validate(std::string_view label) const { validate_layout(layout_, detail::kRawLockMagic, label); }

void RawLock::lock() { lock_acquire_or_throw(layout_, std::nullopt, kRawLockLabel, "lock"); }
bool RawLock::try_lock() {
    return lock_acquire_or_throw(layout_, std::chrono::nanoseconds(0), kRawLockLabel, "try_lock");
}
bool RawLock::try_lock_for_ns(std::chrono::nanoseconds timeout) {
    return lock_acquire_or_throw(layout_, timeout, kRawLockLabel, "try_lock_for");
}
void RawLock::unlock() { lock_release(layout_, kRawLockLabel, "unlock"); }
bool RawLock::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check_python_arguments(block, timeout, kRawLockLabel);
    return lock_acquire_or_throw(layout_, python_timeout(block, timeout), kRawLockLabel, "acquire");
}
void RawLock::release() { lock_release(layout_, kRawLockLabel, "release"); }
AcquireStatus RawLock::acquire_status(std::optional<std::chrono::nanoseconds> timeout) {
    return lock_acquire(layout_, timeout, kRawLockLabel, "acquire_status");
}
void RawLock::make_consistent() { make_lock_consistent(layout_, kRawLockLabel); }
LockConsistency RawLock::consistency() const noexcept { return read_consistency(layout_); }
bool RawLock::locked() const noexcept {
    // relaxed: a snapshot.
    return (word_of(layout_).load(std::memory_order_relaxed) & kTidMask) != 0;
}
bool RawLock::held_by_this_thread() const noexcept { return mproc::held_by_this_thread(layout_); }

// Lock ------------------------------------------------------------------------------------------------------

namespace {

void init_lock_payload(std::span<std::byte> payload) { RawLock::init(payload.data()); }

template <ObjectKind kKind>
std::string lock_label(const SharedMemory& segment) {
    if (segment.name().empty()) return "anonymous " + std::string(object_kind_name(kKind));
    return object_label(kKind, segment.name());
}

template <std::uint32_t kMagic>
void validate_lock_payload(std::span<std::byte> payload, std::string_view label) {
    attach_layout(payload.data(), payload.size(), kMagic, label);
}

}  // namespace

Lock::Lock() : Lock(Handle::new_anonymous_segment(init_lock_payload)) {}

Lock::Lock(SharedMemory segment)
    : handle_(std::move(segment), lock_label<ObjectKind::lock>, validate_lock_payload<detail::kRawLockMagic>) {}

Lock Lock::create(std::string_view name, mode_t mode) {
    return Lock(Handle::new_named_segment(name, mode, init_lock_payload));
}

Lock Lock::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return Lock(Handle::existing_segment(name, publish_timeout));
}

Lock Lock::from_fd(int fd) { return Lock(Handle::attached_segment(fd)); }

Lock::Lock(Lock&& other) noexcept = default;
Lock& Lock::operator=(Lock&& other) noexcept = default;
Lock::~Lock() = default;

void Lock::lock() { lock_acquire_or_throw(handle_.checked("lock").layout_, std::nullopt, handle_.label(), "lock"); }
bool Lock::try_lock() {
    return lock_acquire_or_throw(handle_.checked("try_lock").layout_, std::chrono::nanoseconds(0), handle_.label(),
                                 "try_lock");
}
bool Lock::try_lock_for_ns(std::chrono::nanoseconds timeout) {
    return lock_acquire_or_throw(handle_.checked("try_lock_for").layout_, timeout, handle_.label(), "try_lock_for");
}
void Lock::unlock() { lock_release(handle_.checked("unlock").layout_, handle_.label(), "unlock"); }
bool Lock::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    RawLock& raw = handle_.checked("acquire");
    check_python_arguments(block, timeout, handle_.label());
    return lock_acquire_or_throw(raw.layout_, python_timeout(block, timeout), handle_.label(), "acquire");
}
void Lock::release() { lock_release(handle_.checked("release").layout_, handle_.label(), "release"); }
AcquireStatus Lock::acquire_status(std::optional<std::chrono::nanoseconds> timeout) {
    return lock_acquire(handle_.checked("acquire_status").layout_, timeout, handle_.label(), "acquire_status");
}
void Lock::make_consistent() { make_lock_consistent(handle_.checked("make_consistent").layout_, handle_.label()); }
LockConsistency Lock::consistency() const { return handle_.checked("consistency").consistency(); }
bool Lock::locked() const { return handle_.checked("locked").locked(); }
bool Lock::held_by_this_thread() const { return handle_.checked("held_by_this_thread").held_by_this_thread(); }
void Lock::unlink() { handle_.unlink(); }
RawLock& Lock::raw() const { return handle_.checked("raw"); }

// RawRLock --------------------------------------------------------------------------------------------------

RawRLock& RawRLock::init(void* memory) {
    place(check_alignment(memory, kRawRLockLabel, "init"), detail::kRawRLockMagic);
    return *std::launder(static_cast<RawRLock*>(memory));
}

RawRLock& RawRLock::attach(void* memory, std::size_t size) {
    attach_layout(memory, size, detail::kRawRLockMagic, kRawRLockLabel);
    return *std::launder(static_cast<RawRLock*>(memory));
}

void RawRLock::validate(std::string_view label) const { validate_layout(layout_, detail::kRawRLockMagic, label); }

void RawRLock::lock() { rlock_acquire_or_throw(layout_, std::nullopt, kRawRLockLabel, "lock"); }
bool RawRLock::try_lock() {
    return rlock_acquire_or_throw(layout_, std::chrono::nanoseconds(0), kRawRLockLabel, "try_lock");
}
bool RawRLock::try_lock_for_ns(std::chrono::nanoseconds timeout) {
    return rlock_acquire_or_throw(layout_, timeout, kRawRLockLabel, "try_lock_for");
}
void RawRLock::unlock() { rlock_release(layout_, kRawRLockLabel, "unlock"); }
bool RawRLock::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check_python_arguments(block, timeout, kRawRLockLabel);
    return rlock_acquire_or_throw(layout_, python_timeout(block, timeout), kRawRLockLabel, "acquire");
}
void RawRLock::release() { rlock_release(layout_, kRawRLockLabel, "release"); }
AcquireStatus RawRLock::acquire_status(std::optional<std::chrono::nanoseconds> timeout) {
    return rlock_acquire(layout_, timeout, kRawRLockLabel, "acquire_status");
}
void RawRLock::make_consistent() { make_lock_consistent(layout_, kRawRLockLabel); }
LockConsistency RawRLock::consistency() const noexcept { return read_consistency(layout_); }
bool RawRLock::held_by_this_thread() const noexcept { return mproc::held_by_this_thread(layout_); }
std::uint32_t RawRLock::depth() const noexcept {
    if (!held_by_this_thread()) return 0;
    // relaxed: owner-only field, read by the owner.
    const std::uint32_t depth = recursion_of(layout_).load(std::memory_order_relaxed);
    return depth == 0 ? 1 : depth;
}

// RLock -----------------------------------------------------------------------------------------------------

namespace {
void init_rlock_payload(std::span<std::byte> payload) { RawRLock::init(payload.data()); }
}  // namespace

RLock::RLock() : RLock(Handle::new_anonymous_segment(init_rlock_payload)) {}

RLock::RLock(SharedMemory segment)
    : handle_(std::move(segment), lock_label<ObjectKind::rlock>, validate_lock_payload<detail::kRawRLockMagic>) {}

RLock RLock::create(std::string_view name, mode_t mode) {
    return RLock(Handle::new_named_segment(name, mode, init_rlock_payload));
}

RLock RLock::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return RLock(Handle::existing_segment(name, publish_timeout));
}

RLock RLock::from_fd(int fd) { return RLock(Handle::attached_segment(fd)); }

RLock::RLock(RLock&& other) noexcept = default;
RLock& RLock::operator=(RLock&& other) noexcept = default;
RLock::~RLock() = default;

void RLock::lock() { rlock_acquire_or_throw(handle_.checked("lock").layout_, std::nullopt, handle_.label(), "lock"); }
bool RLock::try_lock() {
    return rlock_acquire_or_throw(handle_.checked("try_lock").layout_, std::chrono::nanoseconds(0), handle_.label(),
                                  "try_lock");
}
bool RLock::try_lock_for_ns(std::chrono::nanoseconds timeout) {
    return rlock_acquire_or_throw(handle_.checked("try_lock_for").layout_, timeout, handle_.label(), "try_lock_for");
}
void RLock::unlock() { rlock_release(handle_.checked("unlock").layout_, handle_.label(), "unlock"); }
bool RLock::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    RawRLock& raw = handle_.checked("acquire");
    check_python_arguments(block, timeout, handle_.label());
    return rlock_acquire_or_throw(raw.layout_, python_timeout(block, timeout), handle_.label(), "acquire");
}
void RLock::release() { rlock_release(handle_.checked("release").layout_, handle_.label(), "release"); }
AcquireStatus RLock::acquire_status(std::optional<std::chrono::nanoseconds> timeout) {
    return rlock_acquire(handle_.checked("acquire_status").layout_, timeout, handle_.label(), "acquire_status");
}
void RLock::make_consistent() { make_lock_consistent(handle_.checked("make_consistent").layout_, handle_.label()); }
LockConsistency RLock::consistency() const { return handle_.checked("consistency").consistency(); }
bool RLock::held_by_this_thread() const { return handle_.checked("held_by_this_thread").held_by_this_thread(); }
std::uint32_t RLock::depth() const { return handle_.checked("depth").depth(); }
void RLock::unlink() { handle_.unlink(); }
RawRLock& RLock::raw() const { return handle_.checked("raw"); }

}  // namespace mproc
