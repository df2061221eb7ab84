// src/eventcount.hpp (private) — an eventcount in shared memory: how queue operations block on a condition
// they test themselves ("the ring has a message", "the ring has room", "no task is unfinished") without a
// system call, and without a fence, when nobody sleeps.
//
// The layout (detail::EventCountLayout, public because rings embed it): `epoch`, the futex word, counts
// notifications; `waiters` is non-zero while a thread may be in, or about to enter, FUTEX_WAIT on it.
//   waiter:   key = prepare_wait()    E3 key = epoch (acquire), E1 exchange(waiters, 1) (acq_rel),
//                                     E2 membarrier(GLOBAL_EXPEDITED): a full barrier in every thread of
//                                        every registered process
//             test the condition again; if it holds: done
//             wait(key, deadline)     E4 FUTEX_WAIT(epoch, key) — returns at once if epoch moved on;
//                                     never longer than the re-test period, then test again
//   notifier: N1 make the condition true (a release store of a ring index)
//             notify()                N2 load(waiters) with no hardware fence (registered process), or
//                                        exchange(waiters, 0) (acq_rel) (a process that is not registered);
//                                     if it was non-zero: N2' exchange(waiters, 0), N3 epoch += 1 (release),
//                                     N4 FUTEX_WAKE all
//
// Why no fence in N2 (the asymmetric Dekker of sys_membarrier): the producer's release store N1 and its
// load N2 may be reordered by the CPU (store buffering), which alone loses a wake-up: N2 reads 0 while N1
// is still buffered, the waiter's E1 and re-test run, the re-test misses N1, the waiter sleeps, nobody
// wakes it. E2 closes that window from the waiter's side: membarrier() returns only after every running
// thread of every process registered with MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED has executed a full
// barrier at some point X (threads not running pass one in the context switch). If the notifier's N2
// executed after X, it reads E1's 1 and takes the slow path; if before X, N1 (before N2 in program order)
// was before X too and is globally visible when E2 returns, so the re-test sees it. The price moves to the
// side that is about to sleep anyway: one membarrier() (about half a microsecond) per prepare_wait, against
// a locked instruction per notify() that would wait for the publishing store's cache line — the line the
// consumer keeps reading (then the producer's index, now the slot's sequence word) — on every message
// (measured: 85 % of a producer's put() time in that stall).
// A process registers once, when it first initialises or attaches a ring (register_for_fence_free_notify);
// the registration is inherited by fork() and dropped by exec(), as is this library's record of it. A
// process that is not registered (membarrier missing or forbidden, or MPROC_NOTIFY_FENCE=1 in its
// environment: a real-time process that must not take the barrier's interrupts) notifies with the
// exchange, as before. A waiter whose membarrier() fails cannot close the window for a registered
// notifier: it re-tests its condition every kUnfencedRecheckPeriod instead.
//
// No lost wake-up on the exchange path, with read-modify-writes instead of fences (which ThreadSanitizer
// does not model): E1 and N2 are RMWs of one word, so one of them reads the other's write. If E1 reads N2's
// 0, E1's acquire synchronises with N2's release, and the waiter's re-test sees the store the notifier made
// before N2. If N2 reads E1's 1, E1 (and E3 before it) happen before N2 and so before N3: the key is older
// than N3's epoch, and E4 either finds the epoch moved on or is asleep when N4 wakes it. The key is read
// *before* the flag is set (E3 before E1): read after it, a late notify for an earlier condition could take
// this wait's flag and bump the epoch before the key was read, and the notify that mattered would then find
// the flag clear — the lost wake-up verify/queue-eventcount found in the first version
// (bug_key_after_flag). Every waiter whose E1 came before N2 is woken (all are); one whose E1 comes after
// leaves the flag set for the next notifier. A woken waiter that must sleep again sets the flag again.
// Why a flag and not a count of sleepers: a count stays non-zero until the woken thread runs and
// decrements it, and meanwhile every operation of the other side pays a FUTEX_WAKE; with the flag only
// the first notify after a waiter parks makes the system call (on a loaded machine where producer and
// consumer share a core this is the difference between one wake per time slice and one per message).
// Cost: notify() with nobody parked is one plain load of a line only sleepers write (registered process),
// or one locked exchange; a waiter costs an exchange, one membarrier() and one FUTEX_WAIT.
// Death: a waiter killed asleep leaves the flag set: the next notify() makes one FUTEX_WAKE that finds
// nobody and clears it. A notifier killed between N2' and N4 has cleared the flag without waking, so later
// notifies skip the wake too: sleepers therefore re-test their condition every kNotificationRecheckPeriod
// (the model's bug_unbounded_sleep_* variants strand a sleeper for ever without it). Wake-ups go to every
// sleeper: one handed to a chosen sleeper could die with it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "adaptive_spin.hpp"
#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/spsc_ring.hpp"

namespace mproc::detail {

inline std::atomic_ref<std::uint32_t> epoch_of(EventCountLayout& event) noexcept { return std::atomic_ref(event.epoch); }
inline std::atomic_ref<std::uint32_t> waiters_of(EventCountLayout& event) noexcept {
    return std::atomic_ref(event.waiters);
}

// notify_fence_elided (declared in mproc/spsc_ring.hpp): whether this process is registered for
// MEMBARRIER_CMD_GLOBAL_EXPEDITED barriers, so that its notify() may read the flag without a fence (the
// top of this file). Written once per process image.
// Registers the calling process (once; later calls cost one relaxed load). Called by every ring's init and
// attach, before the ring can be used. Never fails: without membarrier the process notifies with a fence.
void register_for_fence_free_notify() noexcept;
// E2: the barrier a waiter issues after raising the flag. Returns false (and remembers it) when
// membarrier() is unavailable to this process.
bool barrier_registered_notifiers() noexcept;
// Set once a waiter's barrier failed in this process: its sleeps are then bounded by kUnfencedRecheckPeriod.
extern std::atomic<bool> waiter_barrier_unavailable;

// E3, E1: returns the epoch to sleep on, after marking that a thread may sleep. The caller must issue E2
// (barrier_registered_notifiers) before it re-tests its condition: one E2 after several of these serves
// them all (wait() arms many objects, then sleeps once).
inline std::uint32_t prepare_wait_without_barrier(EventCountLayout& event) noexcept {
    // acquire: E3, pairs with N3's release so that a newer epoch brings the store that caused it; read
    // before E1 (see the top of this file).
    const std::uint32_t key = epoch_of(event).load(std::memory_order_acquire);
    // acq_rel: E1; an RMW, so either it reads N2's 0 (and acquires the notifier's store) or N2 reads its 1.
    waiters_of(event).exchange(1, std::memory_order_acq_rel);
    return key;
}

// E3, E1, E2: returns the epoch to sleep on, after marking that a thread may sleep.
inline std::uint32_t prepare_wait(EventCountLayout& event) noexcept {
    const std::uint32_t key = prepare_wait_without_barrier(event);
    barrier_registered_notifiers();  // E2
    return key;
}

// The longest a waiter sleeps before it tests its condition again, whatever the deadline: the only way
// past a notifier that died between taking the flag (N2') and waking (N4).
inline constexpr std::chrono::milliseconds kNotificationRecheckPeriod{50};
// The same for a waiter whose membarrier() failed (E2 could not order a registered notifier's N1 and N2):
// a wake-up lost that way is made up within this period.
inline constexpr std::chrono::milliseconds kUnfencedRecheckPeriod{1};

inline std::chrono::nanoseconds notification_recheck_period() noexcept {
    // relaxed: a sticky capability flag; reading it stale costs one longer sleep before the first re-test.
    return waiter_barrier_unavailable.load(std::memory_order_relaxed)
               ? std::chrono::nanoseconds(kUnfencedRecheckPeriod)
               : std::chrono::nanoseconds(kNotificationRecheckPeriod);
}

// Whether the re-test periods above are switched off, so that a sleeper wakes only when notified (or at
// its caller's deadline): a wake-up that the code forgets to send then strands the sleeper for good, which
// tests/wakeup_test.cpp detects, instead of costing 50 ms that no test notices. Only test builds
// (meson -Dtest_hooks=true, never a release build) can switch it, with MPROC_TEST_NO_RECHECK=1 in the
// environment, read once per process image; in every other build this is a constant false and the
// sleeps below compile as if it did not exist. Both periods go: in a test the processes are forks of one,
// so either every notifier is registered for fence-free notify and every waiter's barrier works, or none
// is and every notifier takes the exchange, which needs no re-test. The MPMC ring's sleep on a slot's claim
// word (kClaimRecheckPeriod, the net under a claimer killed between releasing and waking) obeys it too.
// What it does not switch off: the sleeps that poll for a *death* because the kernel cannot report one
// without futex_waitv (Pipe's kPipeDeathPollInterval, Barrier's kDeathPollInterval) and wait()'s fallbacks
// that cannot sleep on every word at once (kWaitRecheckInterval): those re-checks are the mechanism there,
// not a safety net.
#if MPROC_TEST_HOOKS
bool recheck_disabled() noexcept;
#else
constexpr bool recheck_disabled() noexcept { return false; }
#endif

// How long an eventcount sleeper may sleep before it tests its condition again: the re-test period, cut
// to the deadline (nullptr: none). nullopt: no bound at all (no deadline, and the re-test switched off).
inline std::optional<std::chrono::nanoseconds> notification_sleep_bound(const Deadline* deadline) noexcept {
    if (recheck_disabled()) {
        if (deadline == nullptr) return std::nullopt;
        return deadline->remaining();
    }
    const std::chrono::nanoseconds period = notification_recheck_period();
    return deadline == nullptr ? period : std::min<std::chrono::nanoseconds>(period, deadline->remaining());
}

// E4: sleeps while the epoch is still `key`, until the deadline (none: forever). Returns false when the
// deadline passed; true means "test the condition again" (a notification, a signal or a spurious wake).
inline bool wait_for_notification(EventCountLayout& event, std::uint32_t key, const Deadline* deadline) noexcept {
    if (deadline != nullptr && deadline->passed()) return false;
    const std::optional<std::chrono::nanoseconds> bound = notification_sleep_bound(deadline);
    timespec relative{};
    if (bound) relative = Deadline::to_timespec(*bound);
    futex_wait(&event.epoch, key, bound ? &relative : nullptr);
    return deadline == nullptr || !deadline->passed();
}

// N2..N4: detail::notify() in mproc/spsc_ring.hpp (inline, for the rings' fast paths); its slow half,
// wake_sleepers() (N2'..N4), is in eventcount.cpp.

// N3, N4 whatever the flag says: for rare events (close) that must reach every waiter even if a notifier
// died between taking the flag and waking.
inline void notify_always(EventCountLayout& event) noexcept {
    // seq_cst: orders the caller's store before the epoch change, as N1 does.
    epoch_of(event).fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&event.epoch, kFutexWakeAll);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Re-tests ready() for the calling thread's adaptive spin budget (adaptive_spin.hpp), pausing between
// tests, and tells the budget how it went. true: ready() held.
template <class Ready>
bool spin_until(Ready&& ready) {
    AdaptiveSpinBudget& spin_budget = this_thread_spin_budget();
    const int spins = spin_budget.budget();
    for (int spin = 0; spin < spins; ++spin) {
        if (ready()) {
            spin_budget.spin_succeeded(spin);
            return true;
        }
        cpu_relax();
    }
    spin_budget.spin_failed();
    return false;
}

// Spins (the thread's adaptive budget), then parks on `event`, until ready() or the deadline. Returns
// ready()'s last answer.
template <class Ready>
bool await_condition(EventCountLayout& event, const Deadline* deadline, Ready&& ready) {
    if (spin_until(ready)) return true;
    for (;;) {
        const std::uint32_t key = prepare_wait(event);
        if (ready()) return true;
        const bool in_time = wait_for_notification(event, key, deadline);
        if (ready()) return true;
        if (!in_time) return false;
    }
}

}  // namespace mproc::detail
