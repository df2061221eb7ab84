// mproc/wait.hpp — Python's multiprocessing.connection.wait() for C++, extended to shared-memory objects:
// block until any of a set of Connections, Queues, Processes, Events and raw file descriptors is ready,
// and return which are.
//
// Defines: Waitable (one object to wait for, by reference), WaitMechanism, wait(), last_wait_mechanism().
//
// Ready means:
// - Connection (PipeConnection or FdConnection): a receive would not block — a message or part of one is
//   there, or end of stream, or the connection is closed for reading (the receive then throws at once).
// - Queue<T>, ByteQueue, detail::QueueCore: readable — QueueCore::ready_to_get() or the queue is closed (a
//   get would not block; for an MPMC queue a get may still wait the moment a producer takes to publish its
//   claimed slot). Readiness only reads the ring: it never steps over a skipped SPSC slot itself.
// - Process: it has ended (its sentinel() fd is readable).
// - Event: it is set.
// - A raw fd: poll(2) reports POLLIN (or POLLHUP/POLLERR) on it.
// Readiness is level-triggered and re-checked before returning: the result is the exact subset of the
// objects that were ready at one moment during the return, in the order given.
//
// Timeouts: std::nullopt waits without bound; zero or less checks once; measured on CLOCK_MONOTONIC. An
// empty result means the timeout passed with nothing ready.
//
// How it sleeps (last_wait_mechanism() tells the caller which one the last wait() of its thread used):
// - futex-only sets (Pipe ends, queues, events): futex_waitv (Linux 5.16) on every word at once — a
//   Pipe end's ring eventcount and its peer's holder words, so a peer's death wakes it (pipe.hpp); a
//   queue's not_empty eventcount; an event's word. Without futex_waitv (a kernel before 5.16, or a seccomp
//   filter that refuses it): FUTEX_WAIT on the first word and a re-check of all of them every
//   kWaitRecheckInterval.
// - fd-only sets (FdConnections, Processes, raw fds): one ppoll.
// - mixed sets: one io_uring with an IORING_OP_FUTEX_WAIT (Linux 6.7) per word and an IORING_OP_POLL_ADD
//   per fd, submitted together; the first completion wakes the caller. The ring is created per call and
//   torn down after it, which cancels the requests left (cost: io_uring_setup, one io_uring_enter, the
//   teardown — tens of microseconds). Without io_uring or its futex support: ppoll on the fds bounded by
//   kWaitRecheckInterval, re-checking the futex objects after each — a wake-up through a futex object is
//   then late by up to that interval. (A helper thread in futex_waitv writing an eventfd would be prompt,
//   but would make wait() create a thread per call, or keep one per process, and a thread cannot be
//   cancelled out of futex_waitv without a wake-up of its own; the bounded re-check is simpler and its
//   cost is explicit.)
// At most kMaxWaitFutexes futex words per call (a Pipe end uses 5: its eventcount and kPipeHolders
// holder words; a queue and an event 1 each): ValueError beyond.
//
// Thread safety: wait() only reads the objects (and arms their wake-up flags, as a blocked get or wait
// would); other threads may use them meanwhile. Objects must outlive the call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "mproc/export.hpp"

namespace mproc {

class Connection;
class Event;
class Process;
class ByteQueue;
template <class T>
class Queue;
namespace detail {
class QueueCore;
}

// A raw file descriptor to wait for readability.
struct ReadableFd {
    int fd;
};

class MPROC_API Waitable {
public:
    enum class Kind { connection, queue, process, event, fd };

    Waitable(Connection& connection) noexcept : kind_(Kind::connection), object_(&connection) {}
    Waitable(detail::QueueCore& queue) noexcept : kind_(Kind::queue), object_(&queue) {}
    template <class T>
    Waitable(Queue<T>& queue) noexcept : Waitable(queue.core()) {}
    Waitable(ByteQueue& queue) noexcept;
    Waitable(Process& process) noexcept : kind_(Kind::process), object_(&process) {}
    Waitable(Event& event) noexcept : kind_(Kind::event), object_(&event) {}
    Waitable(ReadableFd fd) noexcept : kind_(Kind::fd), fd_(fd.fd) {}

    Kind kind() const noexcept { return kind_; }
    void* object() const noexcept { return object_; }
    int fd() const noexcept { return fd_; }

private:
    Kind kind_;
    void* object_ = nullptr;
    int fd_ = -1;
};

enum class WaitMechanism : std::uint32_t {
    none = 0,             // nothing slept: ready at the first check, or a timeout of zero
    futex_waitv = 1,      // futex-only set
    futex_recheck = 2,    // futex-only set without futex_waitv: FUTEX_WAIT + periodic re-check
    ppoll = 3,            // fd-only set
    io_uring = 4,         // mixed set: IORING_OP_FUTEX_WAIT + IORING_OP_POLL_ADD
    ppoll_recheck = 5,    // mixed set without io_uring futex support: ppoll + periodic re-check
};

inline constexpr std::chrono::milliseconds kWaitRecheckInterval{5};
inline constexpr std::size_t kMaxWaitFutexes = 128;  // futex_waitv's limit

// Indices into `objects` of those ready, ascending; empty when the timeout passed first.
MPROC_API
std::vector<std::size_t> wait(std::span<const Waitable> objects,
                              std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
inline std::vector<std::size_t> wait(std::initializer_list<Waitable> objects,
                                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return wait(std::span<const Waitable>(objects.begin(), objects.size()), timeout);
}

// The mechanism the calling thread's last wait() slept with, and its name ("futex_waitv", ...).
MPROC_API WaitMechanism last_wait_mechanism() noexcept;
MPROC_API std::string_view wait_mechanism_name(WaitMechanism mechanism) noexcept;

}  // namespace mproc
