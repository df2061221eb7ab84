// Kill points (include/mproc/kill_point.hpp): the names always, the counters and the arming in test builds.
#include "mproc/kill_point.hpp"

#if MPROC_KILL_POINTS_ENABLED
#include <atomic>
#include <csignal>
#include <cstdlib>

#include <unistd.h>
#endif

namespace mproc::detail {

const char* kill_op_name(KillOp op) noexcept {
    switch (op) {
    case KillOp::lock_acquire: return "lock acquire";
    case KillOp::lock_release: return "lock release";
    case KillOp::robust_link: return "robust list link";
    case KillOp::robust_unlink: return "robust list unlink";
    case KillOp::spsc_put: return "spsc put";
    case KillOp::spsc_get: return "spsc get";
    case KillOp::spsc_repair: return "spsc repair";
    case KillOp::mpmc_claim: return "mpmc claim";
    case KillOp::mpmc_put: return "mpmc put";
    case KillOp::mpmc_get: return "mpmc get";
    case KillOp::mpmc_repair: return "mpmc repair";
    case KillOp::pipe_send: return "pipe send";
    case KillOp::pipe_recv: return "pipe recv";
    case KillOp::segment_create: return "segment create";
    case KillOp::barrier_wait: return "barrier wait";
    case KillOp::spill_put: return "spill put";
    case KillOp::spill_get: return "spill get";
    case KillOp::spill_reclaim: return "spill reclaim";
    case KillOp::count_: break;
    }
    return "?";
}

#if MPROC_KILL_POINTS_ENABLED

std::atomic<bool> kill_points_active{false};

namespace {

// Not armed: an operation index no point has.
constexpr std::uint32_t kDisarmed = kKillOpCount;

// Process-local: a fork child starts with a copy, which is how a test arms the child it forks.
std::atomic<std::uint32_t> armed_op{kDisarmed};
std::atomic<std::uint32_t> armed_point{0};
std::atomic<std::uint32_t> passes_to_skip{0};
std::atomic<int> signal_to_raise{SIGKILL};
std::atomic<std::uint64_t> hits[kKillOpCount][kMaxKillPoints];

}  // namespace

void kill_point_reached(KillOp op, std::uint32_t point) noexcept {
    const auto index = static_cast<std::uint32_t>(op);
    // relaxed: a statistic, read by the same process after the operation.
    hits[index][point].fetch_add(1, std::memory_order_relaxed);
    // relaxed (all three): set by this process's own arm_kill_point() before the operation ran.
    if (armed_op.load(std::memory_order_relaxed) != index || armed_point.load(std::memory_order_relaxed) != point)
        return;
    // relaxed: as above; the decrement is this thread's own bookkeeping.
    if (passes_to_skip.load(std::memory_order_relaxed) != 0) {
        passes_to_skip.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    // relaxed: as above.
    const int signal_number = signal_to_raise.load(std::memory_order_relaxed);
    if (signal_number != SIGKILL) {
        // Frozen here (SIGSTOP) until continued, then on as if unarmed.
        disarm_kill_point();
        ::kill(::getpid(), signal_number);
        return;
    }
    // SIGKILL to this thread's whole process, here: nothing after this point runs.
    ::kill(::getpid(), SIGKILL);
    std::abort();  // unreachable: SIGKILL cannot be blocked or caught
}

void arm_kill_point(KillOp op, std::uint32_t point, std::uint32_t occurrence, int signal_number) noexcept {
    // relaxed (all): read only by this process's own later passes (or by a fork child's, after fork()).
    armed_op.store(kDisarmed, std::memory_order_relaxed);
    signal_to_raise.store(signal_number, std::memory_order_relaxed);
    kill_points_active.store(true, std::memory_order_relaxed);
    armed_point.store(point, std::memory_order_relaxed);
    passes_to_skip.store(occurrence, std::memory_order_relaxed);
    armed_op.store(static_cast<std::uint32_t>(op), std::memory_order_relaxed);
}

void disarm_kill_point() noexcept {
    // relaxed: as in arm_kill_point().
    armed_op.store(kDisarmed, std::memory_order_relaxed);
}

std::uint64_t kill_point_hits(KillOp op, std::uint32_t point) noexcept {
    if (op >= KillOp::count_ || point >= kMaxKillPoints) return 0;
    // relaxed: a statistic.
    return hits[static_cast<std::uint32_t>(op)][point].load(std::memory_order_relaxed);
}

void reset_kill_point_counts() noexcept {
    for (auto& operation : hits)
        // relaxed: a statistic.
        for (auto& counter : operation) counter.store(0, std::memory_order_relaxed);
    // relaxed: read by this process's own later passes.
    kill_points_active.store(true, std::memory_order_relaxed);
}

#endif

}  // namespace mproc::detail
