// src/adaptive_spin.hpp (private) — how long a waiter spins before it sleeps, learnt per thread.
//
// A spin pays only when the awaited store comes sooner than a sleep and wake-up would (tens of
// microseconds on the reference guest); it costs the CPU the other side may need — on a 2-CPU machine
// where the other side shares the waiter's CPU, every pause delays the very store being waited for (a fixed
// 200-pause spin put blocking round trips at 2-3.5x the futex ceiling when the other CPU was busy).
// So the budget follows what spinning achieved for this thread lately:
//   - a wait that the spin satisfied after n pauses raises the budget to at least 2n + kSpinHeadroom
//     (up to kMaxSpins): the other side answers within a spin, keep answering in user space;
//   - a wait that had to sleep halves it (down to kMinSpins): the other side is slower than a spin, and
//     spinning only delays it;
//   - at the floor, every kProbePeriod-th wait spins kMaxSpins / 2 anyway: a probe, without which a thread
//     whose peer became fast again would never find out (its short spins always end before the reply).
// Per thread, not per object: a thread usually waits on one kind of peer at a time, and the shared objects
// stay free of a word every waiter would write. The budget is a performance hint only: any value is
// correct, since every waiter re-tests its condition before it sleeps.
// Benchmarks that measure the sleeping path itself (bench/: the "blocking" round trips) turn the spin off
// for their threads with set_spinning(false), so that get() sleeps and is woken instead of catching the
// reply in user space; the library itself never turns it off.
#pragma once

#include <algorithm>

namespace mproc::detail {

class AdaptiveSpinBudget {
public:
    static constexpr int kMinSpins = 8;
    static constexpr int kMaxSpins = 400;
    static constexpr int kSpinHeadroom = 16;
    static constexpr int kProbePeriod = 16;

    // The pauses the next wait may spin.
    int budget() noexcept {
        if (!spinning_) return 0;
        if (budget_ > kMinSpins) return budget_;
        if (++waits_at_floor_ < kProbePeriod) return budget_;
        waits_at_floor_ = 0;
        return kMaxSpins / 2;
    }
    // The spin found the condition true after `pauses` pauses.
    void spin_succeeded(int pauses) noexcept {
        budget_ = std::clamp(2 * pauses + kSpinHeadroom, budget_, kMaxSpins);
        waits_at_floor_ = 0;  // the probe period counts consecutive waits at the floor
    }
    // The spin ran out and the waiter went to sleep.
    void spin_failed() noexcept { budget_ = std::max(kMinSpins, budget_ / 2); }
    // false: every later wait of this thread sleeps at once (budget() is 0) until set_spinning(true).
    void set_spinning(bool enabled) noexcept { spinning_ = enabled; }

private:
    int budget_ = kMaxSpins / 2;
    int waits_at_floor_ = 0;
    bool spinning_ = true;
};

// The calling thread's budget.
inline AdaptiveSpinBudget& this_thread_spin_budget() noexcept {
    thread_local AdaptiveSpinBudget budget;
    return budget;
}

}  // namespace mproc::detail
