// mproc/kill_point.hpp — numbered kill points for crash tests (test builds only).
//
// Defines: detail::KillOp (the operations that carry kill points), detail::kill_point_count(),
// MPROC_KILL_POINT(op, n), and, in test builds, the calls a crash test arms and reads them with.
//
// A kill point marks one step of a protocol on shared memory: the place between two of its stores, CASes
// or futex calls where a participant's death leaves a state that the survivors must handle. In a build
// without MPROC_TEST_HOOKS (every normal and every release build: meson refuses test_hooks there) the macro
// is nothing at all: no load, no call, no code. In a test build (meson -Dtest_hooks=true) each point counts
// its passes in process-local memory, and a process armed for (operation, point, occurrence) raises SIGKILL
// on itself when it reaches that point for the occurrence-th time (0: the first time) — exactly there,
// with everything before it done and nothing after it.
//
// How a crash test uses it (tests/kill_point_test.cpp): fork; in the child arm_kill_point(op, k) and run
// the operation; in the parent, a child killed by SIGKILL reached point k, a child that exited normally
// did not (its scenario never passes there); then check what the survivors see. Enumerating k from 0 to
// kill_point_count(op) - 1 over the scenarios that reach the operation proves each point is reachable and
// crashes there safely.
//
// Adding points to an operation: add an enumerator below (or use an existing one), raise its count in
// kill_point_count(), and write MPROC_KILL_POINT(op, n) with n = 0, 1, ... between the steps, each with a
// comment naming the state a death there leaves. A point number out of range is a compile error.
// Points are numbered per operation, not per call site: the same step on two paths (the fast and the full
// path of a put) may share a number, and the test then counts it hit when either path reaches it.
#pragma once

#include <cstdint>

#include "mproc/export.hpp"

#if defined(MPROC_TEST_HOOKS) && MPROC_TEST_HOOKS
#include <atomic>
#include <csignal>  // SIGKILL, the default of arm_kill_point()
#endif

namespace mproc::detail {

// The operations that carry kill points. The order is the table order of the crash test.
enum class KillOp : std::uint32_t {
    lock_acquire,        // src/lock.cpp: acquire_word, acquire_contended, finish_acquire
    lock_release,        // src/lock.cpp: release_word
    robust_link,         // src/robust_list.hpp: ThisThreadRobustList::link (a lock's node into the list)
    robust_unlink,       // src/robust_list.hpp: ThisThreadRobustList::unlink
    spsc_put,            // SPSC producer: SpscFastPath::try_put, free_slots, publish_puts (put, put_many, commit)
    spsc_get,            // SPSC consumer: SpscFastPath::try_get, ready_slots, release_gets (get, get_many, release)
    spsc_repair,         // src/spsc_ring.cpp: repair_unpublished_slots (a new producer after a dead one)
    mpmc_claim,          // src/mpmc_ring.cpp: take_claim (K), drop_claim (R), wait_for_claim
    mpmc_put,            // src/mpmc_ring.cpp: attempt_put (M), finish_put (W, D), publish_skipped_slot (#5, #6)
    mpmc_get,            // src/mpmc_ring.cpp: attempt_get (M'), finish_get (D')
    mpmc_repair,         // src/mpmc_ring.cpp: repair_slot_of_dead_claimer
    pipe_send,           // src/pipe.cpp: a message written into the pipe's ring
    pipe_recv,           // src/pipe.cpp: a message read out of the pipe's ring
    segment_create,      // src/shared_memory.cpp, src/object_header.cpp: a named object made and published
    barrier_wait,        // src/barrier.cpp: barrier_wait, try_claim_slot, wait_for_change, release_generation, leave
    spill_put,           // src/queue_spill.cpp, src/queue.cpp: a message longer than a slot put through the spill arena
    spill_get,           // src/queue_spill.cpp, src/queue.cpp: a spilled message got
    spill_reclaim,       // src/queue_spill.hpp: SpillArena::reclaim (blocks of a position the ring is done with)
    count_
};

inline constexpr std::uint32_t kKillOpCount = static_cast<std::uint32_t>(KillOp::count_);
// The most points one operation may carry (the size of the per-point counters).
inline constexpr std::uint32_t kMaxKillPoints = 16;

// How many points each operation carries: the numbers 0 .. count - 1 are all in use.
constexpr std::uint32_t kill_point_count(KillOp op) noexcept {
    switch (op) {
    case KillOp::lock_acquire: return 9;
    case KillOp::lock_release: return 5;
    case KillOp::robust_link: return 4;
    case KillOp::robust_unlink: return 4;
    case KillOp::spsc_put: return 4;
    case KillOp::spsc_get: return 3;
    case KillOp::spsc_repair: return 2;
    case KillOp::mpmc_claim: return 4;
    case KillOp::mpmc_put: return 7;
    case KillOp::mpmc_get: return 3;
    case KillOp::mpmc_repair: return 5;
    case KillOp::pipe_send: return 2;
    case KillOp::pipe_recv: return 2;
    case KillOp::segment_create: return 7;
    case KillOp::barrier_wait: return 8;
    case KillOp::spill_put: return 4;
    case KillOp::spill_get: return 3;
    case KillOp::spill_reclaim: return 1;
    case KillOp::count_: return 0;
    }
    return 0;
}

const char* kill_op_name(KillOp op) noexcept;

#if defined(MPROC_TEST_HOOKS) && MPROC_TEST_HOOKS

// Whether this process was ever armed or asked to count: until then a point costs one load and a branch,
// so that a test build's other programs (its benchmarks included) run at nearly their normal speed.
extern MPROC_API std::atomic<bool> kill_points_active;

// Counts the pass and, when this process is armed for it, raises SIGKILL on itself. Async-signal-safe.
MPROC_API void kill_point_reached(KillOp op, std::uint32_t point) noexcept;

// Arms this process: the occurrence-th pass (0: the first) through point `point` of `op` kills it. One
// arming at a time; arming again replaces it. Inherited by fork() children, as all process memory is.
// With signal_number SIGSTOP (any signal but SIGKILL) the process sends itself that signal instead, is
// disarmed, and goes on where it stopped once continued: a participant frozen at that exact step.
MPROC_API
void arm_kill_point(KillOp op, std::uint32_t point, std::uint32_t occurrence = 0, int signal_number = SIGKILL) noexcept;
MPROC_API void disarm_kill_point() noexcept;
// Passes through (op, point) in this process since the last reset_kill_point_counts(), which also starts
// the counting (points are not counted before it, nor before an arm_kill_point()).
MPROC_API std::uint64_t kill_point_hits(KillOp op, std::uint32_t point) noexcept;
MPROC_API void reset_kill_point_counts() noexcept;

template <KillOp kOp, std::uint32_t kPoint>
inline void kill_point() noexcept {
    static_assert(kPoint < kill_point_count(kOp), "a kill point numbered past its operation's count "
                                                  "(raise the count in kill_point_count())");
    static_assert(kill_point_count(kOp) <= kMaxKillPoints, "too many points for the counters");
    // relaxed: set by this process (or the parent it was forked from) before the operation ran.
    if (kill_points_active.load(std::memory_order_relaxed)) [[unlikely]]
        kill_point_reached(kOp, kPoint);
}

#define MPROC_KILL_POINT(op, n) ::mproc::detail::kill_point<::mproc::detail::KillOp::op, (n)>()
#define MPROC_KILL_POINTS_ENABLED 1

#else

#define MPROC_KILL_POINT(op, n) static_cast<void>(0)
#define MPROC_KILL_POINTS_ENABLED 0

#endif

}  // namespace mproc::detail
