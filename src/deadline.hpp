// src/deadline.hpp (private) — a point in time on CLOCK_MONOTONIC, for every bounded wait in mproc.
//
// A timeout is turned into a Deadline once, at the start of the operation (or at its first wait: see
// DeadlineOnDemand); each retry (after EINTR, a spurious futex wake-up, a short sleep) asks for remaining()
// instead of waiting the full timeout again, so the total wait never exceeds the timeout the caller gave.
// CLOCK_MONOTONIC is what FUTEX_WAIT measures a relative timeout on, and it does not jump when the wall
// clock is set.
// Cost: one clock_gettime (vDSO, no system call) per passed()/remaining().
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>

#include <time.h>

namespace mproc::detail {

class Deadline {
public:
    // now + timeout; a negative timeout is treated as zero (already passed), a huge one saturates.
    static Deadline after(std::chrono::nanoseconds timeout) noexcept {
        const std::int64_t now = monotonic_now_ns();
        const std::int64_t span = timeout.count() < 0 ? 0 : timeout.count();
        const std::int64_t latest = std::numeric_limits<std::int64_t>::max();
        return Deadline(span > latest - now ? latest : now + span, std::chrono::nanoseconds(span));
    }

    // The timeout this deadline was made from, for messages ("not published within 2000 ms").
    std::chrono::nanoseconds timeout() const noexcept { return timeout_; }

    bool passed() const noexcept { return monotonic_now_ns() >= at_ns_; }

    // Time left, never negative.
    std::chrono::nanoseconds remaining() const noexcept {
        const std::int64_t left = at_ns_ - monotonic_now_ns();
        return std::chrono::nanoseconds(left > 0 ? left : 0);
    }

    // remaining() as the relative timespec FUTEX_WAIT, ppoll and nanosleep take.
    timespec remaining_timespec() const noexcept { return to_timespec(remaining()); }

    static timespec to_timespec(std::chrono::nanoseconds span) noexcept {
        const std::int64_t ns = span.count() < 0 ? 0 : span.count();
        timespec ts{};
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        return ts;
    }

    static std::int64_t monotonic_now_ns() noexcept {
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    }

private:
    Deadline(std::int64_t at_ns, std::chrono::nanoseconds timeout) noexcept : at_ns_(at_ns), timeout_(timeout) {}

    std::int64_t at_ns_;  // CLOCK_MONOTONIC nanoseconds
    std::chrono::nanoseconds timeout_;
};

// A Deadline made when a wait first needs it, so that an operation that succeeds at its first attempt
// never reads the clock. The timeout then counts from that first wait, which begins at most one attempt
// after the call did: an attempt never waits (it may repair what a dead peer left, which can cost a
// FUTEX_WAKE). Unbounded: no deadline, get() is nullptr.
// The timeout is kept as a flag and a count, not as an optional: GCC copies an optional with one 16-byte
// load, which the store buffer cannot forward from the separate stores of its value and flag.
class DeadlineOnDemand {
public:
    // bounded false: no deadline (timeout is then ignored).
    DeadlineOnDemand(bool bounded, std::chrono::nanoseconds timeout) noexcept
        : bounded_(bounded), timeout_(timeout) {}

    const Deadline* get() noexcept {
        if (!bounded_) return nullptr;
        if (!deadline_) deadline_ = Deadline::after(timeout_);
        return &*deadline_;
    }

private:
    bool bounded_;
    std::chrono::nanoseconds timeout_;
    std::optional<Deadline> deadline_;
};

// The deadline of an optional DeadlineOnDemand: nullptr (no bound) when there is none.
inline const Deadline* deadline_of(DeadlineOnDemand* deadline) noexcept {
    return deadline != nullptr ? deadline->get() : nullptr;
}

}  // namespace mproc::detail
