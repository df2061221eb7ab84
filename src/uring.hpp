// src/uring.hpp (private) — the io_uring ring a Connection submits through, and the run-time check of
// whether io_uring may be used at all.
//
// io_uring can be missing at run time although liburing is linked: a kernel built without it (ENOSYS), the
// kernel.io_uring_disabled sysctl (2: refused to everyone, 1: only to CAP_SYS_ADMIN or io_uring_group —
// EPERM), a seccomp filter (container runtimes commonly answer ENOSYS or EPERM), or RLIMIT_MEMLOCK on old
// kernels (ENOMEM). io_uring_unavailable_reason() turns each into a sentence; callers then use read/write.
// The kernel probe runs once per process; the MPROC_DISABLE_IO_URING=1 environment variable is read on
// every call, so a test can force the fallback for the connections it creates next.
//
// Cost: Uring::submit_and_wait is one io_uring_enter for any number of prepared SQEs (plus one more per
// EINTR); the counters let tests observe that.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include <liburing.h>
#include <sys/uio.h>

namespace mproc::detail {

// Why io_uring cannot be used by this process now, or "" when it can.
std::string io_uring_unavailable_reason();

// io_uring_queue_init / io_uring_queue_exit, as every mproc ring must be set up and torn down.
// Why not liburing's directly: liburing maps and unmaps a ring's queues with its own system calls, which
// ThreadSanitizer does not intercept, so when a new ring is mapped where an old one was unmapped it takes
// the old ring's accesses, made by another thread, for a race with the new ring's. The kernel orders the
// unmap before the mapping that reuses the address; these two say so to ThreadSanitizer (a release on one
// process-wide token at teardown, an acquire after setup). In other builds they are the plain calls.
int set_up_ring(unsigned entries, io_uring& ring, unsigned flags) noexcept;
void tear_down_ring(io_uring& ring) noexcept;

class Uring {
public:
    // A ring of `entries` SQEs; throws SystemError when io_uring_queue_init fails.
    explicit Uring(unsigned entries);
    ~Uring();
    Uring(const Uring&) = delete;
    Uring& operator=(const Uring&) = delete;

    unsigned capacity() const noexcept { return entries_; }

    // The next free SQE, cleared. Callers prepare at most capacity() SQEs between two submit_and_wait.
    io_uring_sqe* next_sqe();

    // Registers `buffers` as fixed buffers 0..n-1 for READ_FIXED / WRITE_FIXED. False (and nothing
    // registered) when the kernel refuses, e.g. over RLIMIT_MEMLOCK: callers then use the plain opcodes.
    bool register_buffers(std::span<const iovec> buffers) noexcept;
    bool has_registered_buffers() const noexcept { return registered_; }

    // Submits every prepared SQE and waits until `completions` CQEs are ready, in one io_uring_enter
    // (retried after EINTR). A signal can end the wait early once the SQEs are submitted, so callers take
    // each completion with peek_completion(), which waits for one that is not there yet. Throws SystemError
    // on any other failure of the call itself.
    void submit_and_wait(unsigned completions);

    // The CQE of the oldest unconsumed completion, waiting (one more io_uring_enter, counted) when it is
    // not there yet; consume() it after.
    io_uring_cqe* peek_completion();
    void consume(io_uring_cqe* completion) noexcept { io_uring_cqe_seen(&ring_, completion); }

    // io_uring_enter calls made and SQEs they submitted, since construction.
    std::uint64_t enter_calls() const noexcept { return enter_calls_; }
    std::uint64_t sqes_submitted() const noexcept { return sqes_submitted_; }

private:
    io_uring ring_{};
    unsigned entries_;
    bool registered_ = false;
    std::uint64_t enter_calls_ = 0;
    std::uint64_t sqes_submitted_ = 0;
};

}  // namespace mproc::detail
