#include "scm_rights.hpp"

#include <cerrno>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "mproc/error.hpp"

namespace mproc::detail::scm_rights {
namespace {

void wait_ready(int fd, short events) {
    pollfd entry{fd, events, 0};
    while (::poll(&entry, 1, -1) < 0 && errno == EINTR) {
    }
}

// Room for kMaxFdsPerMessage descriptors, aligned as a cmsghdr must be.
union ControlBuffer {
    cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
};

// Takes every descriptor in the SCM_RIGHTS messages of `message` into `out` (so none is lost if a later
// step throws).
void collect_descriptors(msghdr& message, std::vector<UniqueFd>& out) {
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t payload = header->cmsg_len - CMSG_LEN(0);
        const std::size_t count = payload / sizeof(int);
        const unsigned char* data = CMSG_DATA(header);
        for (std::size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
            out.emplace_back(fd);
        }
    }
}

}  // namespace

bool is_unix_stream_socket(int fd) noexcept {
    struct stat status {};
    if (::fstat(fd, &status) != 0 || !S_ISSOCK(status.st_mode)) return false;
    int value = 0;
    socklen_t length = sizeof(value);
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &length) != 0 || value != AF_UNIX) return false;
    length = sizeof(value);
    return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) == 0 && value == SOCK_STREAM;
}

std::size_t send(int socket, std::span<const std::byte> bytes, std::span<const int> fds, const std::string& who) {
    if (bytes.empty()) throw ValueError(who + ": descriptors must travel with at least one byte");
    if (fds.size() > kMaxFdsPerMessage)
        throw ValueError(who + ": " + std::to_string(fds.size()) + " descriptors in one message, more than the " +
                         std::to_string(kMaxFdsPerMessage) + " the kernel carries (SCM_MAX_FD)");
    ControlBuffer control{};
    iovec part{const_cast<std::byte*>(bytes.data()), bytes.size()};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    if (!fds.empty()) {
        message.msg_control = control.bytes;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        const ssize_t sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
        if (sent >= 0) return static_cast<std::size_t>(sent);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wait_ready(socket, POLLOUT);
            continue;
        }
        const int error_number = errno;
        if (error_number == EPIPE || error_number == ECONNRESET)
            throw BrokenPipe(who + ": sendmsg: the peer closed its end", error_number);
        throw_system_error(who + ": sendmsg with " + std::to_string(fds.size()) + " descriptors", error_number);
    }
}

Received receive(int socket, std::span<std::byte> into, const std::string& who) {
    ControlBuffer control{};
    for (;;) {
        iovec part{into.data(), into.size()};
        msghdr message{};
        message.msg_iov = &part;
        message.msg_iovlen = 1;
        message.msg_control = control.bytes;
        message.msg_controllen = sizeof(control.bytes);
        const ssize_t got = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_ready(socket, POLLIN);
                continue;
            }
            throw_system_error(who + ": recvmsg");
        }
        Received received;
        received.bytes = static_cast<std::size_t>(got);
        collect_descriptors(message, received.fds);  // owned from here, whatever happens next
        if ((message.msg_flags & MSG_CTRUNC) != 0) {
            const std::size_t arrived = received.fds.size();
            received.fds.clear();  // closes them
            throw SystemError(who + ": recvmsg: the descriptors sent with the data did not all fit (MSG_CTRUNC: " +
                                  std::to_string(arrived) + " arrived and were closed; more than " +
                                  std::to_string(kMaxFdsPerMessage) +
                                  " were sent, or this process reached its descriptor limit)",
                              EPROTO);
        }
        return received;
    }
}

}  // namespace mproc::detail::scm_rights
