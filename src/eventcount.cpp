// The process-wide half of the eventcount's fence-free notify (eventcount.hpp): registration for
// MEMBARRIER_CMD_GLOBAL_EXPEDITED barriers, and the barrier a waiter issues.
#include "eventcount.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mproc::detail {

std::atomic<bool> notify_fence_elided{false};
std::atomic<bool> waiter_barrier_unavailable{false};

namespace {

long membarrier(int command) noexcept { return ::syscall(SYS_membarrier, command, 0, 0); }

bool fence_requested_by_environment() noexcept {
    const char* value = std::getenv("MPROC_NOTIFY_FENCE");
    return value != nullptr && value[0] != '\0' && std::strcmp(value, "0") != 0;
}

}  // namespace

void register_for_fence_free_notify() noexcept {
    // A once_flag is inherited by fork() in its "done" state, as the kernel's registration is; exec()
    // starts a new image with both cleared.
    static std::once_flag registered;
    std::call_once(registered, [] {
        if (fence_requested_by_environment()) return;
        const long commands = membarrier(MEMBARRIER_CMD_QUERY);
        if (commands < 0 || (commands & MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0 ||
            (commands & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0)
            return;
        if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return;
        // relaxed: the kernel's registration is complete when the system call returns; a thread that reads
        // the flag stale takes the fenced path, which is always correct.
        notify_fence_elided.store(true, std::memory_order_relaxed);
    });
}

void wake_sleepers(EventCountLayout& event) noexcept {
    // acq_rel: N2 (N2' after notify()'s load saw the flag); the release half publishes the caller's store
    // to a waiter whose E1 reads this 0.
    if (waiters_of(event).exchange(0, std::memory_order_acq_rel) == 0) return;
    // release: N3, pairs with E3's acquire.
    epoch_of(event).fetch_add(1, std::memory_order_release);
    futex_wake(&event.epoch, kFutexWakeAll);
}

#if MPROC_TEST_HOOKS
bool recheck_disabled() noexcept {
    // Read once, on the first sleep: a magic static's initialisation is thread-safe, and fork() inherits
    // the answer as it inherits the environment it came from.
    static const bool disabled = [] {
        const char* value = std::getenv("MPROC_TEST_NO_RECHECK");
        return value != nullptr && value[0] != '\0' && std::strcmp(value, "0") != 0;
    }();
    return disabled;
}
#endif

bool barrier_registered_notifiers() noexcept {
    // relaxed: a sticky capability flag.
    if (waiter_barrier_unavailable.load(std::memory_order_relaxed)) return false;
    if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0) return true;
    // ENOSYS (no membarrier), EINVAL (no GLOBAL_EXPEDITED), EPERM (seccomp): it will fail every time. Any
    // other error (ENOMEM) fails this wait only; its sleep is bounded by the caller's re-test period, which
    // is the 50 ms one, so this one wait may be late by that much.
    if (errno == ENOSYS || errno == EINVAL || errno == EPERM)
        // relaxed: see above.
        waiter_barrier_unavailable.store(true, std::memory_order_relaxed);
    return false;
}

}  // namespace mproc::detail
