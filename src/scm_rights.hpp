// src/scm_rights.hpp (private) — descriptors sent alongside bytes over an AF_UNIX socket (SCM_RIGHTS), the
// mechanism under FdConnection::send_handle/recv_handle and Python's multiprocessing.reduction.sendfds/recvfds.
//
// Guarantees
// - Received descriptors are close-on-exec (MSG_CMSG_CLOEXEC, always) and owned by UniqueFd from the moment
//   recvmsg returns: every error path closes them.
// - A control message the kernel had to cut (MSG_CTRUNC: more descriptors than the control buffer holds,
//   or the receiver's RLIMIT_NOFILE reached) closes whatever did arrive and throws SystemError(EPROTO /
//   EMFILE): a receiver never silently loses descriptors.
// - EINTR is retried; a non-blocking socket that answers EAGAIN is waited on with poll().
// - At most kMaxFdsPerMessage (the kernel's SCM_MAX_FD, 253) descriptors per message: more is ValueError.
// Costs: one sendmsg / recvmsg per call (plus a poll per EAGAIN); the control buffer is on the stack.
// Linux stream sockets end a recvmsg after the segment that carried descriptors, so those descriptors
// belong to the last byte that recvmsg returned: receive() reports them with that byte's position implied.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "mproc/unique_fd.hpp"

namespace mproc::detail::scm_rights {

inline constexpr std::size_t kMaxFdsPerMessage = 253;  // SCM_MAX_FD in include/net/scm.h

// Whether fd is a connected-or-not AF_UNIX SOCK_STREAM socket (the only kind that carries descriptors here).
bool is_unix_stream_socket(int fd) noexcept;

// Sends bytes (at least one) with fds attached to the first byte sent, in one sendmsg(MSG_NOSIGNAL);
// returns how many bytes went (a stream socket may take fewer; the descriptors went with them).
// ValueError for no bytes or more than kMaxFdsPerMessage descriptors; BrokenPipe for EPIPE/ECONNRESET;
// SystemError otherwise. `who` starts every message ("connection fd 5: send_handle").
std::size_t send(int socket, std::span<const std::byte> bytes, std::span<const int> fds, const std::string& who);

struct Received {
    std::size_t bytes = 0;      // 0: end of stream (then fds is empty)
    std::vector<UniqueFd> fds;  // descriptors that came with the last of those bytes
};

// One recvmsg into `into` with room for kMaxFdsPerMessage descriptors.
Received receive(int socket, std::span<std::byte> into, const std::string& who);

}  // namespace mproc::detail::scm_rights
