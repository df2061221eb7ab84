// src/futex.hpp (private) — the two futex operations every mproc primitive blocks and wakes with.
//
// Always the shared (non-FUTEX_PRIVATE_FLAG) variants: the word lives in a MAP_SHARED mapping that other
// processes map at other addresses, and the kernel keys a shared futex on the backing file and offset, not on
// the virtual address. The kernel compares *word with `expected` under its own lock before it sleeps, so a
// waker that changes the word and then wakes cannot slip between the caller's check and its sleep (no lost
// wake-up). Callers loop: every result below, including `woken`, only means "look at the word again".
// Cost: one system call each; futex_wake with no waiter is still a system call, so callers that can know
// nobody waits should skip it.
#pragma once

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace mproc::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "a futex word must be a plain, lock-free 32-bit word that another process can map");

enum class FutexWaitResult {
    woken,           // a wake-up arrived (possibly spurious)
    value_differed,  // *word != expected when the kernel checked: no sleep happened
    timed_out,
    interrupted,     // a signal handler ran
};

// Sleeps while *word == expected, at most `relative_timeout` (nullptr: no bound).
inline FutexWaitResult futex_wait(const std::uint32_t* word, std::uint32_t expected,
                                  const timespec* relative_timeout) noexcept {
    const long result = ::syscall(SYS_futex, word, FUTEX_WAIT, expected, relative_timeout, nullptr, 0);
    if (result == 0) return FutexWaitResult::woken;
    switch (errno) {
    case EAGAIN: return FutexWaitResult::value_differed;
    case ETIMEDOUT: return FutexWaitResult::timed_out;
    case EINTR: return FutexWaitResult::interrupted;
    default:
        // EFAULT/EINVAL mean a word outside any mapping or misaligned: a bug in the caller, and returning
        // `woken` makes it re-check its word rather than sleep on garbage.
        return FutexWaitResult::woken;
    }
}

inline FutexWaitResult futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                                  const timespec* relative_timeout) noexcept {
    return futex_wait(reinterpret_cast<const std::uint32_t*>(&word), expected, relative_timeout);
}

inline constexpr int kFutexWakeAll = INT_MAX;

// Wakes up to `count` waiters on word; returns how many were woken.
inline int futex_wake(const std::uint32_t* word, int count) noexcept {
    const long result = ::syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
    return result < 0 ? 0 : static_cast<int>(result);
}

inline int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
    return futex_wake(reinterpret_cast<const std::uint32_t*>(&word), count);
}

// futex_waitv(2), Linux 5.16: sleep until any of several futex words differs from its expected value.
// Defined here because the kernel headers of Debian 12 predate it; callers fall back when it is refused.
struct FutexWaitv {
    std::uint64_t val;
    std::uint64_t uaddr;
    std::uint32_t flags;
    std::uint32_t reserved;
};
static_assert(sizeof(FutexWaitv) == 24, "struct futex_waitv of the kernel ABI");
inline constexpr long kSysFutexWaitv = 449;
inline constexpr std::uint32_t kFutex2Size32 = 2;  // FUTEX2_SIZE_U32; shared: no FUTEX2_PRIVATE

// What one futex_waitv() did.
enum class FutexWaitvOutcome {
    woken,     // a wake-up on one of the words
    returned,  // a word no longer held its expected value (EAGAIN), a signal (EINTR), the deadline (ETIMEDOUT)
    unusable,  // this process cannot sleep in futex_waitv: the caller must sleep another way
};

// Set by the first futex_waitv the kernel refuses, for the whole process: later calls fall back at once.
inline std::atomic<bool> futex_waitv_refused{false};

// relaxed: a cached capability; any value is safe (a call made anyway is refused again).
inline bool futex_waitv_usable() noexcept { return !futex_waitv_refused.load(std::memory_order_relaxed); }

// Sleeps until a word differs from its expected value, a wake-up, or `absolute` (CLOCK_MONOTONIC; nullptr:
// no limit). Any answer but the three of `returned` is `unusable`: the caller must sleep another way this
// time, since treating the answer as a wake-up would make its loop spin. EFAULT (a word in a truncated
// mapping), EINVAL and ENOMEM concern this call; anything else (ENOSYS before Linux 5.16, EPERM or EACCES
// from a seccomp filter that predates the call, whatever else a filter answers) is remembered.
inline FutexWaitvOutcome futex_waitv(FutexWaitv* waiters, std::uint32_t count, const timespec* absolute) noexcept {
    const long result = ::syscall(kSysFutexWaitv, waiters, count, 0u, absolute, CLOCK_MONOTONIC);
    if (result >= 0) return FutexWaitvOutcome::woken;
    const int error_number = errno;
    if (error_number == EAGAIN || error_number == EINTR || error_number == ETIMEDOUT) return FutexWaitvOutcome::returned;
    if (error_number != EFAULT && error_number != EINVAL && error_number != ENOMEM)
        futex_waitv_refused.store(true, std::memory_order_relaxed);  // relaxed: see futex_waitv_usable()
    return FutexWaitvOutcome::unusable;
}

}  // namespace mproc::detail
