// src/wait.cpp — mproc::wait(): one sleep on the futex words and file descriptors of a set of objects.
//
// Each round: check every object (ready → collect); if none is ready, *arm* each futex object (announce a
// sleeper the way its own blocking call does, and take the value to sleep on), check again (an object that
// became ready between the first check and the arming is seen here — the arming's read of the word comes
// first), then sleep until any word differs from its armed value, any fd polls readable, or the deadline.
// Arming per kind:
// - Pipe end: key = prepare_wait(ring.not_empty) and the value of each live peer holder word (pipe.cpp's
//   protocol: a chunk moves the epoch; a close or death changes or wakes a holder word; a revocation moves
//   the epoch).
// - Queue: key = prepare_wait(ring.not_empty) (a put or close() moves the epoch, eventcount.hpp).
// - Event: the word with kEventWaiters set by CAS (set() wakes all when it sees the bit, event.cpp).
// The eventcounts' barrier (E2 of eventcount.hpp, one membarrier) is issued once after every flag is raised,
// before the re-check: it orders all of them at once.
// The facilities tried are capped by force_wait_backend() (wait_backend.hpp), the seam through which tests
// run each fallback on a kernel that has the better paths.
#include "mproc/wait.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include <liburing.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "deadline.hpp"
#include "eventcount.hpp"
#include "futex.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "uring.hpp"
#include "wait_backend.hpp"

namespace mproc {

Waitable::Waitable(ByteQueue& queue) noexcept : kind_(Kind::queue), object_(&queue.core()) {}

namespace {

using detail::Deadline;

#ifndef IORING_OP_FUTEX_WAIT
constexpr std::uint8_t kOpFutexWait = 51;  // IORING_OP_FUTEX_WAIT, Linux 6.7; liburing 2.3 predates it
#else
constexpr std::uint8_t kOpFutexWait = IORING_OP_FUTEX_WAIT;
#endif
constexpr std::uint64_t kFutexMatchAny = 0xffffffffu;  // FUTEX_BITSET_MATCH_ANY

using detail::FutexWaitv;
using detail::kFutex2Size32;
using detail::kSysFutexWaitv;

// 0 unknown, 1 io_uring with FUTEX_WAIT and POLL_ADD usable, 2 not usable.
std::atomic<int> uring_futex_support{0};
// A detail::WaitBackend: the cap force_wait_backend() set.
std::atomic<std::uint32_t> forced_backend{static_cast<std::uint32_t>(detail::WaitBackend::automatic)};

detail::WaitBackend backend_cap() noexcept {
    // relaxed: a setting read on its own; no other memory is published through it.
    return static_cast<detail::WaitBackend>(forced_backend.load(std::memory_order_relaxed));
}

bool futex_waitv_allowed() noexcept { return backend_cap() != detail::WaitBackend::poll; }

bool uring_allowed() noexcept {
    const detail::WaitBackend cap = backend_cap();
    return cap == detail::WaitBackend::automatic || cap == detail::WaitBackend::io_uring;
}

thread_local WaitMechanism last_mechanism = WaitMechanism::none;

struct ArmedFutex {
    std::uint32_t* word;
    std::uint32_t expected;
};

struct Plan {
    std::vector<ArmedFutex> futexes;
    std::vector<pollfd> fds;
    std::vector<detail::PipeEnd*> pipe_peers;  // to spread a death wake-up the kernel gave to one sleeper
};

detail::QueueCore& queue_of(const Waitable& object) { return *static_cast<detail::QueueCore*>(object.object()); }

bool fd_readable_now(int fd) {
    pollfd entry{fd, POLLIN, 0};
    for (;;) {
        const int result = ::poll(&entry, 1, 0);
        if (result >= 0) return result > 0;
        if (errno != EINTR) throw_system_error("wait: poll on fd " + std::to_string(fd));
    }
}

int fd_of(const Waitable& object) {
    switch (object.kind()) {
    case Waitable::Kind::fd: return object.fd();
    case Waitable::Kind::process: return static_cast<Process*>(object.object())->sentinel();
    case Waitable::Kind::connection: return static_cast<Connection*>(object.object())->fileno();
    default: return -1;
    }
}

PipeConnection* as_pipe(const Waitable& object) noexcept {
    if (object.kind() != Waitable::Kind::connection) return nullptr;
    return dynamic_cast<PipeConnection*>(static_cast<Connection*>(object.object()));
}

bool is_ready(const Waitable& object) {
    switch (object.kind()) {
    case Waitable::Kind::connection: {
        if (PipeConnection* pipe = as_pipe(object)) return pipe->ready_to_receive();
        auto* connection = static_cast<Connection*>(object.object());
        return connection->closed() || !connection->readable() || connection->poll(std::chrono::nanoseconds(0));
    }
    case Waitable::Kind::queue: {
        detail::QueueCore& queue = queue_of(object);
        return queue.ready_to_get() || queue.closed();
    }
    case Waitable::Kind::event: return static_cast<Event*>(object.object())->is_set();
    case Waitable::Kind::process:
    case Waitable::Kind::fd: return fd_readable_now(fd_of(object));
    }
    return false;
}

std::vector<std::size_t> ready_subset(std::span<const Waitable> objects) {
    std::vector<std::size_t> ready;
    for (std::size_t index = 0; index < objects.size(); ++index)
        if (is_ready(objects[index])) ready.push_back(index);
    return ready;
}

// Announces a sleeper on every futex object and records what to sleep on.
Plan arm(std::span<const Waitable> objects) {
    Plan plan;
    bool eventcounts_armed = false;  // an eventcount flag was raised: E2 is due before the re-test
    for (const Waitable& object : objects) {
        switch (object.kind()) {
        case Waitable::Kind::connection: {
            PipeConnection* pipe = as_pipe(object);
            if (pipe == nullptr) {
                plan.fds.push_back({fd_of(object), POLLIN, 0});
                break;
            }
            RawSpscRing* ring = pipe->read_ring();
            detail::PipeEnd* peer = pipe->peer_end();
            if (ring == nullptr || peer == nullptr) break;  // ready: the check after arming says so
            detail::EventCountLayout& event = ring->control().not_empty.event;
            plan.futexes.push_back({&event.epoch, detail::prepare_wait_without_barrier(event)});
            eventcounts_armed = true;
            for (detail::PipeHolder& holder : peer->holders) {
                // relaxed: arms the kernel's comparison only; the check after arming reads with acquire.
                const std::uint32_t word = std::atomic_ref(holder.word).load(std::memory_order_relaxed);
                if ((word & FUTEX_TID_MASK) != 0) plan.futexes.push_back({&holder.word, word});
            }
            plan.pipe_peers.push_back(peer);
            break;
        }
        case Waitable::Kind::queue: {
            detail::EventCountLayout& event = queue_of(object).control().not_empty.event;
            plan.futexes.push_back({&event.epoch, detail::prepare_wait_without_barrier(event)});
            eventcounts_armed = true;
            break;
        }
        case Waitable::Kind::event: {
            // The RawEvent is its layout, whose first member is the futex word (event.hpp asserts it).
            auto* word = reinterpret_cast<std::uint32_t*>(&static_cast<Event*>(object.object())->raw());
            std::atomic_ref<std::uint32_t> atomic_word(*word);
            // relaxed: the CAS below decides; acquire on success is not needed, is_set() re-reads.
            std::uint32_t seen = atomic_word.load(std::memory_order_relaxed);
            while ((seen & detail::kEventWaiters) == 0 &&
                   !atomic_word.compare_exchange_weak(seen, seen | detail::kEventWaiters, std::memory_order_relaxed,
                                                      std::memory_order_relaxed)) {
            }
            plan.futexes.push_back({word, seen | detail::kEventWaiters});
            break;
        }
        case Waitable::Kind::process:
        case Waitable::Kind::fd: plan.fds.push_back({fd_of(object), POLLIN, 0}); break;
        }
    }
    if (plan.futexes.size() > kMaxWaitFutexes)
        throw ValueError("wait: the objects need " + std::to_string(plan.futexes.size()) +
                         " futex words, at most " + std::to_string(kMaxWaitFutexes) + " can be waited on at once");
    // E2 once for every eventcount armed above (eventcount.hpp): the caller re-tests after this returns.
    if (eventcounts_armed) detail::barrier_registered_notifiers();
    return plan;
}

// The kernel wakes one sleeper for a dead holder; every sleeper that sees one wakes the others.
void spread_death_wake_ups(const Plan& plan) noexcept {
    for (detail::PipeEnd* peer : plan.pipe_peers)
        for (detail::PipeHolder& holder : peer->holders)
            // relaxed: a hint; woken threads re-read with acquire.
            if ((std::atomic_ref(holder.word).load(std::memory_order_relaxed) & FUTEX_OWNER_DIED) != 0)
                detail::futex_wake(&holder.word, detail::kFutexWakeAll);
}

timespec absolute_deadline(const Deadline& deadline) noexcept {
    return Deadline::to_timespec(std::chrono::nanoseconds(Deadline::monotonic_now_ns()) + deadline.remaining());
}

std::chrono::nanoseconds bounded(std::chrono::nanoseconds span, const Deadline* deadline) noexcept {
    return deadline == nullptr ? span : std::min(span, deadline->remaining());
}

// Futex-only sets.
WaitMechanism sleep_on_futexes(const Plan& plan, const Deadline* deadline) {
    if (futex_waitv_allowed() && detail::futex_waitv_usable()) {
        std::vector<FutexWaitv> waiters;
        waiters.reserve(plan.futexes.size());
        for (const ArmedFutex& futex : plan.futexes)
            waiters.push_back({futex.expected, reinterpret_cast<std::uintptr_t>(futex.word), kFutex2Size32, 0});
        const timespec absolute = deadline != nullptr ? absolute_deadline(*deadline) : timespec{};
        if (detail::futex_waitv(waiters.data(), static_cast<std::uint32_t>(waiters.size()),
                                deadline != nullptr ? &absolute : nullptr) != detail::FutexWaitvOutcome::unusable)
            return WaitMechanism::futex_waitv;
    }
    const timespec relative = Deadline::to_timespec(bounded(kWaitRecheckInterval, deadline));
    detail::futex_wait(plan.futexes.front().word, plan.futexes.front().expected, &relative);
    return WaitMechanism::futex_recheck;
}

// Fd-only sets, and the mixed-set fallback (bounded by the re-check interval).
void sleep_on_fds(Plan& plan, std::optional<std::chrono::nanoseconds> span) {
    const timespec relative = span ? Deadline::to_timespec(*span) : timespec{};
    if (::ppoll(plan.fds.data(), plan.fds.size(), span ? &relative : nullptr, nullptr) < 0 && errno != EINTR)
        throw_system_error("wait: ppoll");
}

bool uring_futex_usable() {
    int known = uring_futex_support.load(std::memory_order_relaxed);  // relaxed: a cached capability
    if (known != 0) return known == 1;
    bool usable = detail::io_uring_unavailable_reason().empty();
    if (usable) {
        io_uring_probe* probe = io_uring_get_probe();
        usable = probe != nullptr && io_uring_opcode_supported(probe, kOpFutexWait) &&
                 io_uring_opcode_supported(probe, IORING_OP_POLL_ADD);
        if (probe != nullptr) io_uring_free_probe(probe);
    }
    uring_futex_support.store(usable ? 1 : 2, std::memory_order_relaxed);
    return usable;
}

// Mixed sets: one ring, one FUTEX_WAIT per word and one POLL_ADD per fd; returns after the first completion
// (or the deadline). Tearing the ring down cancels the rest.
bool sleep_on_uring(const Plan& plan, const Deadline* deadline) {
    io_uring ring{};
    const unsigned entries = static_cast<unsigned>(plan.futexes.size() + plan.fds.size());
    if (detail::set_up_ring(std::max(entries, 2u), ring, 0) < 0) return false;
    for (const ArmedFutex& futex : plan.futexes) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        if (sqe == nullptr) {  // cannot happen: the ring has an SQE per request
            detail::tear_down_ring(ring);
            return false;
        }
        std::memset(sqe, 0, sizeof *sqe);
        // The layout io_uring/futex.c's io_futex_prep reads: addr = the word, addr2 = the expected value,
        // addr3 = the wake bitset mask, fd = the futex2 flags; len and futex_flags must be zero.
        sqe->opcode = kOpFutexWait;
        sqe->fd = static_cast<std::int32_t>(kFutex2Size32);
        sqe->addr = reinterpret_cast<std::uintptr_t>(futex.word);
        sqe->addr2 = futex.expected;
        sqe->addr3 = kFutexMatchAny;
        sqe->user_data = 1;
    }
    for (const pollfd& entry : plan.fds) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        if (sqe == nullptr) {
            detail::tear_down_ring(ring);
            return false;
        }
        io_uring_prep_poll_add(sqe, entry.fd, POLLIN);
        sqe->user_data = 2;
    }
    io_uring_cqe* completion = nullptr;
    int result = 0;
    if (deadline != nullptr) {
        __kernel_timespec relative{};
        const timespec left = deadline->remaining_timespec();
        relative.tv_sec = left.tv_sec;
        relative.tv_nsec = left.tv_nsec;
        result = io_uring_submit_and_wait_timeout(&ring, &completion, 1, &relative, nullptr);
    } else {
        result = io_uring_submit_and_wait(&ring, 1);
    }
    bool usable = true;
    if (result >= 0 && io_uring_peek_cqe(&ring, &completion) == 0 && completion != nullptr &&
        completion->user_data == 1 && (completion->res == -EINVAL || completion->res == -EOPNOTSUPP)) {
        usable = false;  // the probe said yes but the kernel refused the request: do not try again
        uring_futex_support.store(2, std::memory_order_relaxed);  // relaxed: a cached capability
    }
    detail::tear_down_ring(ring);
    return usable;
}

}  // namespace

std::vector<std::size_t> wait(std::span<const Waitable> objects, std::optional<std::chrono::nanoseconds> timeout) {
    last_mechanism = WaitMechanism::none;
    std::vector<std::size_t> ready = ready_subset(objects);
    if (!ready.empty() || objects.empty() || (timeout && timeout->count() <= 0)) return ready;
    std::optional<Deadline> deadline;
    if (timeout) deadline = Deadline::after(*timeout);
    const Deadline* bound = deadline ? &*deadline : nullptr;
    for (;;) {
        Plan plan = arm(objects);
        ready = ready_subset(objects);
        if (!ready.empty()) return ready;
        if (bound != nullptr && bound->passed()) return ready;
        // A sleep on futex words lasts at most the eventcount's re-test period: a notifier killed between
        // taking an eventcount's flag and waking leaves no other wake-up (see eventcount.hpp). A test build
        // may switch that off: the sleep then lasts until a wake-up or the caller's deadline.
        std::optional<Deadline> recheck;
        if (!plan.futexes.empty() && !detail::recheck_disabled())
            recheck = Deadline::after(bound != nullptr ? std::min<std::chrono::nanoseconds>(
                                                             bound->remaining(), detail::notification_recheck_period())
                                                       : detail::notification_recheck_period());
        const Deadline* futex_bound = recheck ? &*recheck : bound;
        if (plan.fds.empty()) {
            last_mechanism = sleep_on_futexes(plan, futex_bound);
        } else if (plan.futexes.empty()) {
            sleep_on_fds(plan, bound ? std::optional(bound->remaining()) : std::nullopt);
            last_mechanism = WaitMechanism::ppoll;
        } else if (uring_allowed() && uring_futex_usable() && sleep_on_uring(plan, futex_bound)) {
            last_mechanism = WaitMechanism::io_uring;
        } else {
            sleep_on_fds(plan, bounded(std::min<std::chrono::nanoseconds>(kWaitRecheckInterval,
                                                                          detail::notification_recheck_period()),
                                       bound));
            last_mechanism = WaitMechanism::ppoll_recheck;
        }
        spread_death_wake_ups(plan);
        ready = ready_subset(objects);
        if (!ready.empty()) return ready;
        if (bound != nullptr && bound->passed()) return ready;
    }
}

WaitMechanism last_wait_mechanism() noexcept { return last_mechanism; }

void detail::force_wait_backend(WaitBackend backend) noexcept {
    // relaxed: see backend_cap().
    forced_backend.store(static_cast<std::uint32_t>(backend), std::memory_order_relaxed);
}

std::string detail::wait_backend_unavailable_reason(WaitBackend backend) {
    const bool wants_uring = backend == WaitBackend::io_uring;
    const bool wants_futex_waitv = wants_uring || backend == WaitBackend::futex_waitv;
    if (wants_futex_waitv) {
        // No futex words: a kernel with futex_waitv answers EINVAL, one without it ENOSYS, a seccomp
        // filter that refuses it EPERM or EACCES (or whatever it was told to).
        const long result = ::syscall(kSysFutexWaitv, nullptr, 0u, 0u, nullptr, CLOCK_MONOTONIC);
        const int error_number = result < 0 ? errno : EINVAL;
        if (error_number == ENOSYS) return "futex_waitv is ENOSYS (Linux 5.16 or later needed)";
        if (error_number != EINVAL)
            return std::string("futex_waitv is refused: ") + std::strerror(error_number) + " (a seccomp filter?)";
        if (!detail::futex_waitv_usable())
            return "futex_waitv was refused earlier in this process (ENOSYS, or a seccomp filter)";
    }
    if (wants_uring && !uring_futex_usable()) {
        const std::string uring_reason = io_uring_unavailable_reason();
        if (!uring_reason.empty()) return "io_uring is unavailable: " + uring_reason;
        return "the kernel's io_uring lacks IORING_OP_FUTEX_WAIT (Linux 6.7) or IORING_OP_POLL_ADD";
    }
    return "";
}

std::string_view wait_mechanism_name(WaitMechanism mechanism) noexcept {
    switch (mechanism) {
    case WaitMechanism::none: return "none";
    case WaitMechanism::futex_waitv: return "futex_waitv";
    case WaitMechanism::futex_recheck: return "futex_wait with periodic re-check";
    case WaitMechanism::ppoll: return "ppoll";
    case WaitMechanism::io_uring: return "io_uring (FUTEX_WAIT + POLL_ADD)";
    case WaitMechanism::ppoll_recheck: return "ppoll with periodic re-check";
    }
    return "unknown";
}

}  // namespace mproc
