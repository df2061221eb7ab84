// src/wait_backend.hpp (private) — which kernel facilities mproc::wait() may sleep with, so that tests run
// every fallback of wait.hpp's "How it sleeps" on a kernel that has the better paths.
//
// wait() normally takes the best the kernel offers: io_uring FUTEX_WAIT + POLL_ADD for mixed sets (Linux
// 6.7), futex_waitv for futex-only sets (Linux 5.16), and falls back, per facility, when the kernel refuses
// it. force_wait_backend() caps that choice for the whole process (fork()ed children inherit the cap):
//
//   backend       mixed sets                    futex-only sets                    fd-only sets
//   automatic     io_uring, else ppoll_recheck  futex_waitv, else futex_recheck    ppoll
//   io_uring      io_uring, else ppoll_recheck  futex_waitv, else futex_recheck    ppoll
//   futex_waitv   ppoll_recheck                 futex_waitv, else futex_recheck    ppoll
//   poll          ppoll_recheck                 futex_recheck                      ppoll
//
// A forced backend the kernel lacks falls back as if it were not forced; wait_backend_unavailable_reason()
// tells a test so, to skip rather than test the fallback under the wrong name. Not part of the public API:
// a program has no reason to sleep worse than it can.
#pragma once

#include <cstdint>
#include <string>

namespace mproc::detail {

enum class WaitBackend : std::uint32_t {
    automatic = 0,
    io_uring = 1,
    futex_waitv = 2,
    poll = 3,
};

// Caps the facilities every later wait() of this process may use (see the table above).
void force_wait_backend(WaitBackend backend) noexcept;

// Why this kernel (or process) cannot give `backend` its own mechanisms, or "" when it can.
std::string wait_backend_unavailable_reason(WaitBackend backend);

}  // namespace mproc::detail
