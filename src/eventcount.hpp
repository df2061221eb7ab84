// src/eventcount.hpp (private) — an eventcount in shared memory: how queue operations block on a condition
// they test themselves ("the ring has a message", "the ring has room", "no task is unfinished") without a
// system call when nobody sleeps.
//
// The layout (detail::EventCountLayout, public because rings embed it): `epoch`, the futex word, counts
// notifications; `waiters` is non-zero while a thread may be in, or about to enter, FUTEX_WAIT on it.
//   waiter:   key = prepare_wait()    E3 key = epoch (acquire), E1 exchange(waiters, 1) (acq_rel)
//             test the condition again; if it holds: done
//             wait(key, deadline)     E4 FUTEX_WAIT(epoch, key) — returns at once if epoch moved on;
//                                     never longer than kNotificationRecheckPeriod, then test again
//   notifier: make the condition true (a release store of a ring index)
//             notify()                N2 exchange(waiters, 0) (acq_rel); if it was non-zero:
//                                     N3 epoch += 1 (release), N4 FUTEX_WAKE all
// No lost wake-up, with read-modify-writes instead of fences (which ThreadSanitizer does not model): E1 and
// N2 are RMWs of one word, so one of them reads the other's write. If E1 reads N2's 0, E1's acquire
// synchronises with N2's release, and the waiter's re-test sees the store the notifier made before N2. If
// N2 reads E1's 1, E1 (and E3 before it) happen before N2 and so before N3: the key is older than N3's
// epoch, and E4 either finds the epoch moved on or is asleep when N4 wakes it. The key is read *before*
// the flag is set (E3 before E1): read after it, a late notify for an earlier condition could take this
// wait's flag and bump the epoch before the key was read, and the notify that mattered would then find
// the flag clear — the lost wake-up verify/queue-eventcount found in the first version
// (bug_key_after_flag). Every waiter whose E1 came before N2 is woken (all are); one whose E1 comes after
// leaves the flag set for the next notifier. A woken waiter that must sleep again sets the flag again.
// Why a flag and not a count of sleepers: a count stays non-zero until the woken thread runs and
// decrements it, and meanwhile every operation of the other side pays a FUTEX_WAKE; with the flag only
// the first notify after a waiter parks makes the system call (on a loaded machine where producer and
// consumer share a core this is the difference between one wake per time slice and one per message).
// Cost: notify() with nobody parked is one locked exchange on a line the notifying side keeps in its own
// cache; a waiter costs an exchange and one FUTEX_WAIT.
// Death: a waiter killed asleep leaves the flag set: the next notify() makes one FUTEX_WAKE that finds
// nobody and clears it. A notifier killed between N2 and N4 has cleared the flag without waking, so later
// notifies skip the wake too: sleepers therefore re-test their condition every kNotificationRecheckPeriod
// (the model's bug_unbounded_sleep_* variants strand a sleeper for ever without it). Wake-ups go to every
// sleeper: one handed to a chosen sleeper could die with it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/spsc_ring.hpp"

namespace mproc::detail {

inline std::atomic_ref<std::uint32_t> epoch_of(EventCountLayout& event) noexcept { return std::atomic_ref(event.epoch); }
inline std::atomic_ref<std::uint32_t> waiters_of(EventCountLayout& event) noexcept {
    return std::atomic_ref(event.waiters);
}

// E3, E1: returns the epoch to sleep on, then marks that a thread may sleep.
inline std::uint32_t prepare_wait(EventCountLayout& event) noexcept {
    // acquire: E3, pairs with N3's release so that a newer epoch brings the store that caused it; read
    // before E1 (see the top of this file).
    const std::uint32_t key = epoch_of(event).load(std::memory_order_acquire);
    // acq_rel: E1; an RMW, so either it reads N2's 0 (and acquires the notifier's store) or N2 reads its 1.
    waiters_of(event).exchange(1, std::memory_order_acq_rel);
    return key;
}

// The longest a waiter sleeps before it tests its condition again, whatever the deadline: the only way
// past a notifier that died between taking the flag (N2) and waking (N4).
inline constexpr std::chrono::milliseconds kNotificationRecheckPeriod{50};

// E4: sleeps while the epoch is still `key`, until the deadline (none: forever). Returns false when the
// deadline passed; true means "test the condition again" (a notification, a signal or a spurious wake).
inline bool wait_for_notification(EventCountLayout& event, std::uint32_t key, const Deadline* deadline) noexcept {
    std::chrono::nanoseconds bound = kNotificationRecheckPeriod;
    if (deadline != nullptr) {
        if (deadline->passed()) return false;
        bound = std::min<std::chrono::nanoseconds>(bound, deadline->remaining());
    }
    const timespec relative = Deadline::to_timespec(bound);
    futex_wait(&event.epoch, key, &relative);
    return deadline == nullptr || !deadline->passed();
}

// N2..N4: to be called after the store that made the condition true.
inline void notify(EventCountLayout& event) noexcept {
    // acq_rel: N2; the release half publishes the caller's store to a waiter whose E1 reads this 0.
    if (waiters_of(event).exchange(0, std::memory_order_acq_rel) == 0) return;
    // release: N3, pairs with E3's acquire.
    epoch_of(event).fetch_add(1, std::memory_order_release);
    futex_wake(&event.epoch, kFutexWakeAll);
}

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

// Re-tests of a condition before a waiter sets the flag and sleeps: a few microseconds, against a
// wake-up through the kernel that costs tens of microseconds (reference-figures.md).
inline constexpr int kQueueSpinLimit = 200;

// Spins, then parks on `event`, until ready() or the deadline. Returns ready()'s last answer.
template <class Ready>
bool await_condition(EventCountLayout& event, const Deadline* deadline, Ready&& ready) {
    for (int spin = 0; spin < kQueueSpinLimit; ++spin) {
        if (ready()) return true;
        cpu_relax();
    }
    for (;;) {
        const std::uint32_t key = prepare_wait(event);
        if (ready()) return true;
        const bool in_time = wait_for_notification(event, key, deadline);
        if (ready()) return true;
        if (!in_time) return false;
    }
}

}  // namespace mproc::detail
