// fuzz/fuzz-listener.cpp — the authkey handshake of Listener/Client, then the frame reader of the connection
// it yields, against whatever bytes a hostile peer sends.
//
// Input: byte 0 = flags: bits 0-1 the order (0: answer_challenge alone, then frames are read; 1: a Client's,
// answer then deliver; 2 and 3: a Listener's, deliver then answer), bit 2 the legacy 3.11 challenge when we
// deliver, bits 3-4 the maxlength of the frames read after a handshake that succeeded (none, 0, 16, 256).
// The rest (at most 60,000 bytes, so it fits a socket buffer) is what the peer sent: written into a socketpair
// whose peer end is then shut for writing, so every read ends at end of stream and the run never waits.
// Properties: no crash, no allocation beyond the bounds (ASan), a handshake fails only with AuthenticationError
// (never another exception), delivering never succeeds (the peer cannot know our random challenge); after an
// answer that succeeded, the connection yields messages no longer than maxlength until Closed or a
// SystemError (EMSGSIZE, EPROTO), and nothing else.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include <sys/socket.h>
#include <unistd.h>

#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/listener.hpp"

namespace {

void require(bool property) {
    if (!property) std::abort();
}

constexpr std::size_t kMaxPeerBytes = 60000;
const std::string kKey = "fuzz key";

// Runs one half; true when it succeeded, false on AuthenticationError; aborts on anything else.
template <class Half>
bool half_succeeds(Half half) {
    try {
        half();
        return true;
    } catch (const mproc::AuthenticationError&) {
        return false;
    } catch (...) {
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size - 1 > kMaxPeerBytes) return 0;
    const std::uint8_t flags = data[0];
    const unsigned order = flags & 3u;
    mproc::HandshakeOptions options;
    options.timeout = std::chrono::seconds(5);  // never reached: the peer's end is shut
    if ((flags & 4u) != 0) options.challenge_digest = "";
    static constexpr std::optional<std::size_t> kMaxlengths[] = {std::nullopt, 0, 16, 256};
    const std::optional<std::size_t> maxlength = kMaxlengths[(flags >> 3) & 3u];

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
    const char* peer = reinterpret_cast<const char*>(data + 1);
    std::size_t left = size - 1;
    while (left > 0) {
        const ssize_t written = ::send(fds[1], peer, left, MSG_NOSIGNAL);
        if (written < 0 && errno == EINTR) continue;
        require(written > 0);
        peer += written;
        left -= static_cast<std::size_t>(written);
    }
    ::shutdown(fds[1], SHUT_WR);

    bool authenticated = false;
    if (order == 0) {
        authenticated = half_succeeds([&] { mproc::answer_challenge(fds[0], kKey, options); });
    } else if (order == 1) {
        if (half_succeeds([&] { mproc::answer_challenge(fds[0], kKey, options); }))
            require(!half_succeeds([&] { mproc::deliver_challenge(fds[0], kKey, options); }));
    } else {
        require(!half_succeeds([&] { mproc::deliver_challenge(fds[0], kKey, options); }));
    }

    if (authenticated) {
        ::setenv("MPROC_DISABLE_IO_URING", "1", 1);
        mproc::FdConnection connection = mproc::FdConnection::from_fd(fds[0]);
        fds[0] = -1;
        try {
            for (;;) {
                const std::vector<std::byte> message = connection.recv_bytes(maxlength);
                require(!maxlength || message.size() <= *maxlength);
            }
        } catch (const mproc::Closed&) {
        } catch (const mproc::SystemError& error) {
            require(error.error_number() == EMSGSIZE || error.error_number() == EPROTO);
        } catch (...) {
            std::abort();
        }
    }
    if (fds[0] >= 0) ::close(fds[0]);
    ::close(fds[1]);
    return 0;
}
