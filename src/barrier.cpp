// Barrier: Python's barrier state machine under a robust internal lock, with robust per-participant slots
// that make the kernel push a participant's death to the sleepers (see include/mproc/barrier.hpp).
//
// state = (changes << 3) | phase. Phases: filling (arrivals counted), action (the last arrival runs the
// action, lock released), draining (released: participants leave), resetting (reset() while participants
// waited: they leave with BrokenBarrier), broken. Every phase change is made under the internal lock,
// bumps `changes` (so the futex value always differs from what a sleeper saw) and wakes all sleepers.
// Invariants, under the internal lock: count == number of slots with entered == 1; a slot is non-zero
// exactly while its participant is inside wait() (or dead there); draining and resetting end only when
// count reaches 0, so no participant can miss its generation's outcome.
// Death: a participant's slot word holds TID | WAITERS from before it is counted until after it is
// uncounted; a death anywhere in between makes the kernel set OWNER_DIED and wake one sleeper queued on the
// word; every sleeper is queued on every slot word (futex_waitv), so one is woken; it takes the lock,
// finds the dead slot (reap_dead_participants) and breaks the barrier. A death while holding the internal
// lock makes the next acquirer repair: break, rebuild count from the slots, make_consistent.
// verify/barrier/barrier.pml models these functions.
#include "mproc/barrier.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "mproc/object_header.hpp"
#include "robust_list.hpp"

namespace mproc {
namespace {

using detail::BarrierControl;
using detail::BarrierSlot;
using detail::Deadline;
using detail::ThisThreadRobustList;

static_assert(static_cast<std::ptrdiff_t>(offsetof(BarrierSlot, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(BarrierSlot, robust_next)) ==
                  detail::kRobustFutexOffset,
              "the slot layout and the robust list agree on where the futex word is");

constexpr std::uint32_t kWaiters = FUTEX_WAITERS;
constexpr std::uint32_t kOwnerDied = FUTEX_OWNER_DIED;

enum Phase : std::uint32_t { kFilling = 0, kAction = 1, kDraining = 2, kResetting = 3, kBroken = 4 };
constexpr std::uint32_t kPhaseMask = 7;
// BarrierSlot::entered
constexpr std::uint32_t kNotCounted = 0;
constexpr std::uint32_t kCounted = 1;
constexpr std::uint32_t kReleased = 2;
constexpr std::uint32_t kChangeUnit = 8;

constexpr std::string_view kRawBarrierLabel = "raw barrier";
// Without futex_waitv, how often a sleeper looks at the slots for a death nobody woke it for.
constexpr std::chrono::milliseconds kDeathPollInterval{20};

std::uint32_t phase_of(std::uint32_t state) noexcept { return state & kPhaseMask; }

std::string describe(std::string_view label, const char* operation, const std::string& cause) {
    return std::string(label) + ": " + operation + ": " + cause;
}

using detail::FutexWaitv;
using detail::kFutex2Size32;

// What one operation works on: the shared bytes, and the parties and slot count its handle validated
// (never the shared copies, which a hostile process may rewrite at any time).
struct View {
    BarrierControl& control;
    RawLock& lock;
    BarrierSlot* slots;
    std::uint32_t parties;     // validated: 1..kMaxParties
    std::uint32_t slot_count;  // validated: slot_count_for(parties), the slots that fit the memory

    std::atomic_ref<std::uint32_t> state() const noexcept { return std::atomic_ref(control.state); }
};

View view_of(BarrierControl& control, std::uint32_t parties, std::uint32_t slot_count) noexcept {
    auto* base = reinterpret_cast<std::byte*>(&control);
    return {control, *std::launder(reinterpret_cast<RawLock*>(base + sizeof(BarrierControl))),
            std::launder(reinterpret_cast<BarrierSlot*>(base + sizeof(BarrierControl) + RawLock::kSize)), parties,
            slot_count};
}

std::atomic_ref<std::uint32_t> word_of(BarrierSlot& slot) noexcept { return std::atomic_ref(slot.word); }
void* node_of(BarrierSlot& slot) noexcept { return &slot.robust_next; }

// Under the internal lock: a new phase, with the change counter bumped, and every sleeper woken.
void set_phase(View& view, std::uint32_t phase) noexcept {
    // relaxed: the writer holds the internal lock; sleepers only learn "changed" from the word and read
    // what it means again under the lock, whose acquire orders it.
    const std::uint32_t old_state = view.state().load(std::memory_order_relaxed);
    view.state().store(((old_state & ~kPhaseMask) + kChangeUnit) | phase, std::memory_order_relaxed);
    detail::futex_wake(&view.control.state, detail::kFutexWakeAll);
}

void break_barrier(View& view) noexcept {
    // relaxed: under the internal lock.
    if (phase_of(view.state().load(std::memory_order_relaxed)) != kBroken) set_phase(view, kBroken);
}

// Under the internal lock: frees the slots of participants that died inside wait(), uncounting them;
// any such death breaks the barrier.
void reap_dead_participants(View& view) noexcept {
    bool someone_died = false;
    for (std::uint32_t index = 0; index < view.slot_count; ++index) {
        BarrierSlot& slot = view.slots[index];
        auto word = word_of(slot);
        // relaxed: the kernel marked the word before the death could be observed by anyone.
        std::uint32_t seen = word.load(std::memory_order_relaxed);
        if ((seen & kOwnerDied) == 0) continue;
        someone_died = true;
        if (slot.entered != kNotCounted) {
            slot.entered = kNotCounted;
            if (view.control.count > 0) --view.control.count;
        }
        // relaxed: a dead participant's word is written by nobody else any more.
        word.compare_exchange_strong(seen, 0, std::memory_order_relaxed, std::memory_order_relaxed);
    }
    if (someone_died) break_barrier(view);
}

// How long the internal lock may be waited for: for ever (untimed calls), or until the call's deadline
// plus kInternalLockGrace.
struct LockBound {
    bool bounded;
    const Deadline* deadline;

    std::optional<std::chrono::nanoseconds> timeout() const noexcept {
        if (!bounded) return std::nullopt;
        return std::max(deadline->remaining(), std::chrono::nanoseconds(0)) + RawBarrier::kInternalLockGrace;
    }
};
constexpr LockBound kUnbounded{false, nullptr};

// Takes the internal lock; false when the bound passed first (the caller does not hold it). When its last
// holder died there, the bookkeeping may be half-done: break the barrier, rebuild count from the slots, and
// make the lock consistent.
[[nodiscard]] bool lock_internal(View& view, LockBound bound) {
    const AcquireStatus status = view.lock.acquire_status(bound.timeout());
    if (status == AcquireStatus::timed_out) return false;
    if (status != AcquireStatus::owner_died) return true;
    reap_dead_participants(view);
    std::uint32_t counted = 0;
    for (std::uint32_t index = 0; index < view.slot_count; ++index)
        if (view.slots[index].entered != kNotCounted) ++counted;
    view.control.count = counted;
    break_barrier(view);
    view.lock.make_consistent();
    return true;
}

// For calls without a timeout: the lock is waited for as long as it takes.
void lock_internal(View& view) {
    const bool locked = lock_internal(view, kUnbounded);
    (void)locked;  // an unbounded acquire returns only once it holds the lock
}

void unlock_internal(View& view) { view.lock.unlock(); }

bool any_slot_dead(View& view) noexcept {
    for (std::uint32_t index = 0; index < view.slot_count; ++index)
        // relaxed: a hint; the lock holder re-reads.
        if ((word_of(view.slots[index]).load(std::memory_order_relaxed) & kOwnerDied) != 0) return true;
    return false;
}

// Sleeps on the state word (while it is `seen_state`) and on every slot word, until any of them is woken,
// a value differs, or the deadline passes. The caller does not hold the internal lock.
void sleep_on_state_and_slots(View& view, std::uint32_t seen_state, bool bounded, const Deadline& deadline) {
    if (detail::futex_waitv_usable()) {
        FutexWaitv waiters[1 + RawBarrier::kMaxParties];
        std::uint32_t count = 0;
        waiters[count++] = {seen_state, reinterpret_cast<std::uintptr_t>(&view.control.state), kFutex2Size32, 0};
        for (std::uint32_t index = 0; index < view.slot_count; ++index) {
            // relaxed: the value only arms the kernel's comparison; a change makes the call return.
            const std::uint32_t word = word_of(view.slots[index]).load(std::memory_order_relaxed);
            // Already dead: the kernel's one wake-up for it may have gone before we queued ourselves, and
            // sleeping on the dead value would wait for a wake that never comes. Go and reap it instead.
            if ((word & kOwnerDied) != 0) return;
            waiters[count++] = {word, reinterpret_cast<std::uintptr_t>(&view.slots[index].word), kFutex2Size32, 0};
        }
        timespec absolute{};
        if (bounded) {
            absolute = Deadline::to_timespec(
                std::chrono::nanoseconds(Deadline::monotonic_now_ns()) + deadline.remaining());
        }
        // Woken, a word changed, a signal, the deadline: look again. Refused: sleep as below.
        if (detail::futex_waitv(waiters, count, bounded ? &absolute : nullptr) != detail::FutexWaitvOutcome::unusable)
            return;
    }
    // No futex_waitv: sleep on the state word only, and look at the slots every kDeathPollInterval.
    if (any_slot_dead(view)) return;
    std::chrono::nanoseconds span = kDeathPollInterval;
    if (bounded) span = std::min(span, deadline.remaining());
    const timespec relative = Deadline::to_timespec(span);
    detail::futex_wait(&view.control.state, seen_state, &relative);
}

// Under the internal lock: releases it, sleeps once (see above), takes it again and reaps the dead.
// Returns true with the lock held; false when the lock could not be taken within `relock` (not held).
[[nodiscard]] bool wait_for_change(View& view, bool bounded, const Deadline& deadline, LockBound relock) {
    // relaxed: under the internal lock.
    const std::uint32_t seen = view.state().load(std::memory_order_relaxed);
    unlock_internal(view);
    MPROC_KILL_POINT(barrier_wait, 4);  // counted (or waiting to enter), lock released: the kernel marks the slot
    sleep_on_state_and_slots(view, seen, bounded, deadline);
    if (!lock_internal(view, relock)) return false;
    reap_dead_participants(view);
    return true;
}

// Under the internal lock: the generation is complete. Every counted participant belongs to it (nobody
// enters while the action runs or the count is full), so each is marked released before the phase moves
// on: a later abort() or death breaks the barrier for later arrivals, not for these.
void release_generation(View& view) noexcept {
    for (std::uint32_t index = 0; index < view.slot_count; ++index)
        if (view.slots[index].entered == kCounted) view.slots[index].entered = kReleased;
    MPROC_KILL_POINT(barrier_wait, 5);  // marked released, phase still filling, lock held: the repair breaks
    set_phase(view, kDraining);
}

BarrierSlot* try_claim_slot(View& view, ThisThreadRobustList& self) noexcept {
    const std::uint32_t mine = self.tid() | kWaiters;
    for (std::uint32_t index = 0; index < view.slot_count; ++index) {
        BarrierSlot& slot = view.slots[index];
        // relaxed: free slots change only under the internal lock, which the caller holds.
        if (word_of(slot).load(std::memory_order_relaxed) != 0) continue;
        self.set_pending(node_of(slot));
        MPROC_KILL_POINT(barrier_wait, 1);  // pending names a free slot: the kernel leaves it; lock repaired
        // relaxed: the internal lock publishes the claim; the kernel needs only the TID in the word.
        word_of(slot).store(mine, std::memory_order_relaxed);
        MPROC_KILL_POINT(barrier_wait, 2);  // claimed, reachable only through pending: the kernel marks it
        self.link(node_of(slot));
        self.clear_pending();
        slot.entered = kNotCounted;
        return &slot;
    }
    return nullptr;
}

// Under the internal lock: uncounts (if counted) and frees this participant's slot.
void leave(View& view, BarrierSlot& slot, ThisThreadRobustList& self) noexcept {
    if (slot.entered != kNotCounted) {
        slot.entered = kNotCounted;
        if (view.control.count > 0) --view.control.count;
    }
    MPROC_KILL_POINT(barrier_wait, 6);  // uncounted, slot still owned, lock held: reaped by the repair
    // relaxed: under the internal lock.
    const std::uint32_t phase = phase_of(view.state().load(std::memory_order_relaxed));
    if (view.control.count == 0 && (phase == kDraining || phase == kResetting)) set_phase(view, kFilling);
    self.set_pending(node_of(slot));
    self.unlink(node_of(slot));
    MPROC_KILL_POINT(barrier_wait, 7);  // unlinked, covered by pending only: the kernel still marks it
    // relaxed: under the internal lock.
    word_of(slot).store(0, std::memory_order_relaxed);
    self.clear_pending();
    if (view.control.slot_waiters > 0) set_phase(view, phase_of(view.state().load(std::memory_order_relaxed)));
}

// Without the internal lock: gives up this participant's slot as its death would, so that whoever takes the
// lock next reaps it (uncounting it if counted) and breaks the barrier. The slot's other fields belong to
// the lock holder and are left alone; only the word changes, as the kernel changes a dead thread's word.
void abandon_slot(BarrierSlot& slot, ThisThreadRobustList& self) noexcept {
    self.set_pending(node_of(slot));
    self.unlink(node_of(slot));
    // relaxed: the reaper reads it under the internal lock, as it reads a mark the kernel made; the
    // exchange (not a store) keeps FUTEX_WAITERS and stays one atomic step against a concurrent reaper.
    word_of(slot).exchange(kOwnerDied | kWaiters, std::memory_order_relaxed);
    self.clear_pending();
    // A sleeper watches every slot word: the one woken here goes for the lock and breaks the barrier.
    detail::futex_wake(&slot.word, detail::kFutexWakeAll);
}

[[noreturn]] void throw_broken(std::string_view label, const std::string& cause) {
    throw BrokenBarrier(describe(label, "wait", cause));
}

[[noreturn]] void throw_lock_timeout(std::string_view label, bool had_slot) {
    throw_broken(label, std::string("timed out waiting for the barrier's internal lock (its holder does not release "
                                    "it: stopped, or not a live thread)") +
                            (had_slot ? "; this participant left as a dead one would, which breaks the barrier"
                                      : "; the barrier could not be marked broken"));
}

std::uint32_t barrier_wait(View view, std::optional<std::chrono::nanoseconds> timeout,
                           const std::function<void()>& action, std::string_view label) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    const bool bounded = timeout.has_value();
    const Deadline deadline = Deadline::after(bounded ? *timeout : std::chrono::nanoseconds(0));
    auto timed_out = [&] { return bounded && deadline.passed(); };
    const LockBound relock{bounded, &deadline};

    if (!lock_internal(view, relock)) throw_lock_timeout(label, false);
    MPROC_KILL_POINT(barrier_wait, 0);  // holding the internal lock, nothing claimed: the next acquirer repairs
    reap_dead_participants(view);
    BarrierSlot* slot = nullptr;
    while ((slot = try_claim_slot(view, self)) == nullptr) {
        if (phase_of(view.state().load(std::memory_order_relaxed)) == kBroken) {  // relaxed: under the lock
            unlock_internal(view);
            throw_broken(label, "the barrier is broken");
        }
        if (timed_out()) {
            break_barrier(view);
            unlock_internal(view);
            throw_broken(label, "timed out waiting for a free participant slot; the barrier is now broken");
        }
        ++view.control.slot_waiters;
        // Not re-taken in time: slot_waiters stays one too high, which costs later leavers a spurious
        // wake-up each, nothing else.
        if (!wait_for_change(view, bounded, deadline, relock)) throw_lock_timeout(label, false);
        --view.control.slot_waiters;
    }
    // From here on this participant owns a slot: every way out frees it (leave) or abandons it.
    auto abandon_and_throw = [&] {
        abandon_slot(*slot, self);
        throw_lock_timeout(label, true);
    };

    // Entry: wait while the previous generation drains or is reset, or the action of a full one runs.
    const char* broken_cause = nullptr;
    for (;;) {
        // relaxed: under the internal lock.
        const std::uint32_t phase = phase_of(view.state().load(std::memory_order_relaxed));
        if (phase == kBroken) {
            broken_cause = "the barrier is broken";
            break;
        }
        if (phase == kFilling && view.control.count < view.parties) break;
        if (timed_out()) {
            break_barrier(view);
            broken_cause = "timed out before the previous generation left; the barrier is now broken";
            break;
        }
        if (!wait_for_change(view, bounded, deadline, relock)) abandon_and_throw();
    }
    if (broken_cause != nullptr) {
        leave(view, *slot, self);
        unlock_internal(view);
        throw_broken(label, broken_cause);
    }

    const std::uint32_t index = view.control.count++;
    MPROC_KILL_POINT(barrier_wait, 3);  // counted, entered not yet set: the repair rebuilds count from slots
    slot->entered = kCounted;
    slot->index = index;
    std::exception_ptr action_failure;
    if (index + 1 == view.parties) {
        if (action) {
            set_phase(view, kAction);
            unlock_internal(view);
            try {
                action();
            } catch (...) {
                action_failure = std::current_exception();
            }
            if (!lock_internal(view, relock)) {
                if (!action_failure) abandon_and_throw();
                abandon_slot(*slot, self);
                std::rethrow_exception(action_failure);  // the action's own failure is what the caller learns
            }
            reap_dead_participants(view);
        }
        // relaxed: under the internal lock.
        const std::uint32_t phase = phase_of(view.state().load(std::memory_order_relaxed));
        if (phase == kAction || phase == kFilling) {
            if (action_failure) {
                break_barrier(view);
                broken_cause = "the action threw; the barrier is now broken";
            } else {
                release_generation(view);
            }
        } else {
            broken_cause = "the barrier was broken or reset while the action ran";
        }
    } else {
        for (;;) {
            // relaxed: under the internal lock.
            const std::uint32_t phase = phase_of(view.state().load(std::memory_order_relaxed));
            // Released: decided for this participant even if an abort or a death broke the barrier since.
            if (slot->entered == kReleased) break;
            if (phase == kBroken || phase == kResetting) {
                broken_cause = phase == kBroken ? "the barrier was broken while this participant waited"
                                                : "the barrier was reset while this participant waited";
                break;
            }
            // Filling, or the last arrival runs the action: the timeout holds in both (a stopped action runner
            // must not hold a timed wait for ever), and breaks the barrier as Python's does.
            if (timed_out()) {
                break_barrier(view);
                broken_cause = phase == kAction
                                   ? "timed out while the last arrival ran the action; the barrier is now broken"
                                   : "timed out; the barrier is now broken";
                break;
            }
            if (!wait_for_change(view, bounded, deadline, relock)) abandon_and_throw();
        }
    }
    leave(view, *slot, self);
    unlock_internal(view);
    if (action_failure) std::rethrow_exception(action_failure);
    if (broken_cause != nullptr) throw_broken(label, broken_cause);
    return index;
}

void barrier_reset(View view) {
    lock_internal(view);
    reap_dead_participants(view);
    if (view.control.count > 0) {
        // relaxed: under the internal lock.
        const std::uint32_t phase = phase_of(view.state().load(std::memory_order_relaxed));
        if (phase != kDraining) set_phase(view, kResetting);
    } else {
        set_phase(view, kFilling);
    }
    unlock_internal(view);
}

void barrier_abort(View view) {
    lock_internal(view);
    break_barrier(view);
    unlock_internal(view);
}

std::uint32_t barrier_n_waiting(View view) {
    lock_internal(view);
    reap_dead_participants(view);
    // relaxed: under the internal lock.
    const std::uint32_t phase = phase_of(view.state().load(std::memory_order_relaxed));
    const std::uint32_t waiting = phase == kFilling ? view.control.count : 0;
    unlock_internal(view);
    return waiting;
}

void* check_alignment(void* memory, const char* operation) {
    if (memory == nullptr) throw ValueError(describe(kRawBarrierLabel, operation, "null memory"));
    if (reinterpret_cast<std::uintptr_t>(memory) % RawBarrier::kAlignment != 0)
        throw ValueError(describe(kRawBarrierLabel, operation,
                                  "memory must be " + std::to_string(RawBarrier::kAlignment) + "-byte aligned"));
    return memory;
}

std::uint32_t slot_count_for(std::uint32_t parties) noexcept {
    return std::min(2 * parties, RawBarrier::kMaxParties);
}

std::size_t bytes_for(std::uint32_t slot_count) noexcept {
    return sizeof(BarrierControl) + RawLock::kSize + std::size_t(slot_count) * sizeof(BarrierSlot);
}

}  // namespace

// RawBarrier ------------------------------------------------------------------------------------------------

std::size_t RawBarrier::size_for(std::uint32_t parties) {
    if (parties == 0 || parties > kMaxParties)
        throw ValueError(describe(kRawBarrierLabel, "init",
                                  "parties " + std::to_string(parties) + " is outside 1.." +
                                      std::to_string(kMaxParties)));
    return bytes_for(slot_count_for(parties));
}

RawBarrier RawBarrier::init(void* memory, std::size_t size, std::uint32_t parties) {
    check_alignment(memory, "init");
    const std::size_t needed = size_for(parties);
    if (size < needed)
        throw ValueError(describe(kRawBarrierLabel, "init",
                                  std::to_string(size) + " bytes, " + std::to_string(parties) + " parties need " +
                                      std::to_string(needed)));
    std::memset(memory, 0, needed);
    BarrierControl control{};
    control.magic = detail::kRawBarrierMagic;
    control.layout_version = detail::kBarrierLayoutVersion;
    control.parties = parties;
    control.slot_count = slot_count_for(parties);
    control.state = kFilling;
    std::memcpy(memory, &control, sizeof control);
    RawLock::init(static_cast<std::byte*>(memory) + sizeof(BarrierControl));
    return RawBarrier(std::launder(static_cast<BarrierControl*>(memory)), parties, slot_count_for(parties));
}

RawBarrier RawBarrier::attach(void* memory, std::size_t size, std::string_view label) {
    check_alignment(memory, "attach");
    if (size < sizeof(BarrierControl) + RawLock::kSize)
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, expected at least " +
                            std::to_string(sizeof(BarrierControl) + RawLock::kSize));
    const auto& control = *std::launder(static_cast<const BarrierControl*>(memory));
    // Each field is read once, into the handle: another process may be writing the bytes.
    const std::uint32_t magic = control.magic;
    if (magic != detail::kRawBarrierMagic)
        throw InvalidObject(std::string(label) + ": magic " + std::to_string(magic) + ", expected " +
                            std::to_string(detail::kRawBarrierMagic));
    const std::uint32_t version = control.layout_version;
    if (version != detail::kBarrierLayoutVersion)
        throw InvalidObject(std::string(label) + ": layout version " + std::to_string(version) + ", expected " +
                            std::to_string(detail::kBarrierLayoutVersion));
    const std::uint32_t parties = control.parties;
    if (parties == 0 || parties > kMaxParties)
        throw InvalidObject(std::string(label) + ": parties " + std::to_string(parties) + ", expected 1.." +
                            std::to_string(kMaxParties));
    const std::uint32_t slot_count = control.slot_count;
    if (slot_count != slot_count_for(parties))
        throw InvalidObject(std::string(label) + ": " + std::to_string(slot_count) + " slots, expected " +
                            std::to_string(slot_count_for(parties)) + " for " + std::to_string(parties) +
                            " parties");
    if (size < bytes_for(slot_count))
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, " +
                            std::to_string(parties) + " parties need " + std::to_string(bytes_for(slot_count)));
    const auto* lock_bytes = static_cast<const std::byte*>(memory) + sizeof(BarrierControl);
    std::launder(reinterpret_cast<const RawLock*>(lock_bytes))->validate(std::string(label) + " (internal lock)");
    return RawBarrier(std::launder(static_cast<BarrierControl*>(memory)), parties, slot_count);
}

std::uint32_t RawBarrier::wait_labelled(std::optional<std::chrono::nanoseconds> timeout,
                                        const std::function<void()>& action, std::string_view label) const {
    return barrier_wait(view_of(*control_, parties_, slot_count_), timeout, action, label);
}
std::uint32_t RawBarrier::wait(std::optional<std::chrono::nanoseconds> timeout,
                               const std::function<void()>& action) const {
    return wait_labelled(timeout, action, kRawBarrierLabel);
}
void RawBarrier::reset() const { barrier_reset(view_of(*control_, parties_, slot_count_)); }
void RawBarrier::abort() const { barrier_abort(view_of(*control_, parties_, slot_count_)); }
std::uint32_t RawBarrier::n_waiting() const { return barrier_n_waiting(view_of(*control_, parties_, slot_count_)); }
bool RawBarrier::broken() const noexcept {
    // relaxed: a snapshot.
    return phase_of(std::atomic_ref(control_->state).load(std::memory_order_relaxed)) == kBroken;
}

// Barrier ---------------------------------------------------------------------------------------------------

namespace {

SharedMemory::Initialiser barrier_initialiser(std::uint32_t parties) {
    return [parties](std::span<std::byte> payload) { RawBarrier::init(payload.data(), payload.size(), parties); };
}

std::string barrier_label(const SharedMemory& segment) {
    if (segment.name().empty()) return "anonymous barrier";
    return object_label(ObjectKind::barrier, segment.name());
}

void check_timeout(std::optional<std::chrono::nanoseconds> timeout, const std::string& label) {
    if (timeout && timeout->count() < 0)
        throw ValueError(describe(label, "init", "the default timeout must not be negative"));
}

}  // namespace

Barrier::Barrier(std::uint32_t parties, Action action, std::optional<std::chrono::nanoseconds> timeout)
    : Barrier(SharedMemory::anonymous_object(ObjectKind::barrier, current_layout_version(ObjectKind::barrier),
                                             RawBarrier::size_for(parties), barrier_initialiser(parties)),
              std::move(action), timeout) {}

Barrier::Barrier(SharedMemory segment, Action action, std::optional<std::chrono::nanoseconds> timeout)
    : segment_(std::move(segment)), action_(std::move(action)), timeout_(timeout) {
    label_ = barrier_label(segment_);
    check_timeout(timeout_, label_);
    const std::span<std::byte> payload = segment_.bytes();
    raw_ = RawBarrier::attach(payload.data(), payload.size(), label_);
}

Barrier Barrier::create(std::string_view name, std::uint32_t parties, Action action,
                        std::optional<std::chrono::nanoseconds> timeout, mode_t mode) {
    return Barrier(SharedMemory::create_object(name, ObjectKind::barrier, current_layout_version(ObjectKind::barrier),
                                               RawBarrier::size_for(parties), mode, barrier_initialiser(parties)),
                   std::move(action), timeout);
}

Barrier Barrier::open(std::string_view name, Action action, std::optional<std::chrono::nanoseconds> timeout,
                      std::chrono::milliseconds publish_timeout) {
    return Barrier(SharedMemory::open_object(name, ObjectKind::barrier, current_layout_version(ObjectKind::barrier),
                                             publish_timeout),
                   std::move(action), timeout);
}

Barrier Barrier::from_fd(int fd, Action action, std::optional<std::chrono::nanoseconds> timeout) {
    return Barrier(SharedMemory::attach_object(fd, ObjectKind::barrier, current_layout_version(ObjectKind::barrier)),
                   std::move(action), timeout);
}

Barrier::Barrier(Barrier&& other) noexcept
    : segment_(std::move(other.segment_)),
      raw_(std::exchange(other.raw_, RawBarrier())),
      action_(std::move(other.action_)),
      timeout_(other.timeout_),
      label_(std::move(other.label_)) {}

Barrier& Barrier::operator=(Barrier&& other) noexcept {
    if (this != &other) {
        segment_ = std::move(other.segment_);
        raw_ = std::exchange(other.raw_, RawBarrier());
        action_ = std::move(other.action_);
        timeout_ = other.timeout_;
        label_ = std::move(other.label_);
    }
    return *this;
}

Barrier::~Barrier() = default;

const RawBarrier& Barrier::checked(const char* operation) const {
    if (raw_.control_ == nullptr) throw StateError(std::string("barrier: ") + operation + ": moved-from handle");
    return raw_;
}

std::uint32_t Barrier::wait(std::optional<std::chrono::nanoseconds> timeout) {
    return checked("wait").wait_labelled(timeout ? timeout : timeout_, action_, label_);
}
void Barrier::reset() { checked("reset").reset(); }
void Barrier::abort() { checked("abort").abort(); }
std::uint32_t Barrier::parties() const { return checked("parties").parties(); }
std::uint32_t Barrier::n_waiting() const { return checked("n_waiting").n_waiting(); }
bool Barrier::broken() const { return checked("broken").broken(); }
void Barrier::unlink() {
    checked("unlink");
    segment_.unlink();
}
const RawBarrier& Barrier::raw() const { return checked("raw"); }

}  // namespace mproc
