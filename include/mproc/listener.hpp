// mproc/listener.hpp — Python's multiprocessing.connection.Listener and Client for C++: connections between
// processes that did not fork each other, on one machine (AF_UNIX) or across machines (TCP), with Python's
// authkey handshake, so a C++ process can serve or join Python processes as they are.
//
// Defines: SocketAddress (a filesystem AF_UNIX path, a Linux abstract name, or a TCP host and port over IPv4
// or IPv6), HandshakeOptions, Listener (bind, listen, accept → FdConnection), Client() (connect → FdConnection),
// deliver_challenge()/answer_challenge() (the two halves of the handshake, on a connected socket).
//
// The handshake, byte for byte as CPython's multiprocessing/connection.py (3.11 and 3.12), every message in
// Python's framing (src/framing.hpp):
// - deliver (the Listener does it first, the Client second): send "#CHALLENGE#" + challenge, where challenge
//   is "{sha256}" + 40 random bytes (CPython 3.12's form; getrandom()), or 20 bare random bytes (3.11's form,
//   HandshakeOptions::challenge_digest empty). Receive the response (at most max_message_size bytes). A
//   response of 16 or 20 bytes is a legacy bare HMAC-MD5; otherwise it must be "{name}" + MAC with name one
//   of md5, sha256, sha384, sha3_256, sha3_384. The MAC must equal HMAC(authkey, challenge) with that digest,
//   compared in constant time (CRYPTO_memcmp). Then send "#WELCOME#", or "#FAILURE#" and fail.
// - answer (the Client first, the Listener second): receive "#CHALLENGE#" + challenge (at most
//   max_message_size bytes; a challenge below 20 bytes is refused). A challenge of 16 or 20 bytes gets a bare
//   HMAC-MD5 response (3.11's protocol); otherwise its "{name}" prefix picks the digest and the response is
//   "{name}" + HMAC(authkey, challenge) (the MAC covers the prefix too, so a peer cannot downgrade it). Then
//   receive "#WELCOME#", anything else fails.
// So a C++ side talks to Python 3.11 (which answers the 3.12 challenge with a bare MD5, accepted as 3.12
// accepts it) and to Python 3.12 and later in both roles.
//
// Guarantees
// - A Listener or Client given an authkey returns a connection only after both halves succeeded. A wrong key
//   → AuthenticationError on both sides (the side that verifies sends "#FAILURE#" first), and the connection
//   is closed. Before success nothing but handshake frames is read or written: the reader takes exactly each
//   frame's header and body from the socket (no read-ahead), so the first message after the handshake stays
//   in the socket for the FdConnection.
// - Bounded: a handshake frame longer than HandshakeOptions::max_message_size (default 256, Python's bound)
//   is refused from its header, before any body byte is stored, so a peer announcing 2^62 bytes costs
//   nothing; the handshake allocates at most max_message_size bytes per frame. Garbage, a malformed header,
//   a frame that is not the expected one, end of stream at any byte → AuthenticationError naming the cause.
// - A handshake that has not finished within HandshakeOptions::timeout (default 10 s; Python 3.11 has none)
//   fails with AuthenticationError: a silent or slow peer cannot hold accept() for ever.
// - accept() that fails for one client (AuthenticationError, or that client's socket error) leaves the
//   Listener as it was: the next accept() serves the next client.
// - Authkeys as Python's: Listener handshakes only with a non-empty authkey (Python: `if self._authkey:`);
//   Client handshakes whenever an authkey is given, even an empty one (Python: `if authkey is not None:`).
//   Python's Listener and Client default to no authkey at all (Python's Process.authkey is used only by
//   managers); so do these.
// - Sockets are close-on-exec. TCP connections get TCP_NODELAY (Python's do not; latency is why), listening
//   sockets SO_REUSEADDR (as Python's). A Listener on a filesystem path removes that path when closed (as
//   Python's); one on an abstract name leaves nothing behind.
// - The authkey authenticates; it does not encrypt. Bytes after the handshake cross the network in clear and
//   can be altered by anyone on the path: use a private network or a tunnel (docs/crossing-machines.md).
//
// Costs
// - Listener(): socket, setsockopt, bind, listen, getsockname. accept(): a ppoll, accept4, and the handshake's
//   four frames (each frame: one write; reads of exactly the header and the body, one ppoll whenever the
//   socket has nothing yet), two HMACs, one getrandom.
// - After the handshake the connection is an ordinary FdConnection (connection.hpp): no per-message cost here.
//
// Threads: one thread at a time may call accept() on a Listener; Client() is free-threaded. Across fork(),
// a child may accept on an inherited Listener (several processes accepting on one socket is fine: each
// client goes to one of them); only the process that bound a filesystem path removes it (a forked child's
// close() or exit leaves it, as Python's Finalize does).
//
// Misuse: accept() after close() → StateError. An address outside what the family allows (an AF_UNIX name
// longer than sun_path, an empty path, a host that does not resolve, port 0 for Client) → ValueError.
//
// Death of a participant: a client killed mid-handshake is end of stream to the Listener (AuthenticationError
// for that accept(), the Listener serves on); a client killed before it was accepted is dropped by the
// kernel or ends the same way. A Listener killed is end of stream to its clients (Closed on the connection,
// AuthenticationError during a handshake). A killed Listener's filesystem path stays (as Python's does); the
// next Listener on that path fails with EADDRINUSE until it is removed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mproc/connection.hpp"
#include "mproc/error.hpp"

namespace mproc {

// Where a Listener listens or a Client connects, as Python writes it: a str (AF_UNIX; a leading NUL makes
// it a Linux abstract name) or a (host, port) tuple (TCP; the host is a name or a numeric IPv4/IPv6 address).
class MPROC_API SocketAddress {
public:
    enum class Family {
        unix_path,      // a filesystem AF_UNIX socket
        unix_abstract,  // a Linux abstract AF_UNIX name: name() holds the bytes after the leading NUL
        tcp,            // TCP over IPv4 or IPv6, as the host resolves
    };

    // A Python AF_UNIX address string: "\0name" is abstract, anything else a filesystem path.
    static SocketAddress unix_socket(std::string_view address);
    static SocketAddress tcp(std::string host, std::uint16_t port);

    Family family() const noexcept { return family_; }
    // The path, the abstract name without its NUL, or the host.
    const std::string& name() const noexcept { return name_; }
    std::uint16_t port() const noexcept { return port_; }
    // For messages: "/tmp/x", "@name" (abstract), "127.0.0.1:5000", "[::1]:5000".
    std::string to_string() const;

    friend bool operator==(const SocketAddress&, const SocketAddress&) = default;

private:
    SocketAddress(Family family, std::string name, std::uint16_t port)
        : family_(family), name_(std::move(name)), port_(port) {}

    Family family_ = Family::unix_path;
    std::string name_;
    std::uint16_t port_ = 0;
};

struct HandshakeOptions {
    // The whole handshake (both halves) must finish within this; AuthenticationError otherwise.
    std::chrono::nanoseconds timeout = std::chrono::seconds(10);
    // Longest handshake frame accepted, header excluded (Python: recv_bytes(256)). At least 64.
    std::size_t max_message_size = 256;
    // The digest the challenge we deliver asks for: "sha256" (CPython 3.12's default), any of md5, sha256,
    // sha384, sha3_256, sha3_384, or "" for CPython 3.11's legacy bare 20-byte challenge.
    std::string challenge_digest = "sha256";
};

// The two halves of the handshake on a connected stream socket, each within options.timeout of its start:
// for a custom accept loop, or sockets made elsewhere (Listener and Client run both halves within one
// timeout). The socket may be blocking or not; nothing but the half's frames is read or written; the fd is
// left open (the caller closes it after AuthenticationError). Not a socket → SystemError(ENOTSOCK).
MPROC_API void deliver_challenge(int fd, std::string_view authkey, const HandshakeOptions& options = {});
MPROC_API void answer_challenge(int fd, std::string_view authkey, const HandshakeOptions& options = {});

class MPROC_API Listener {
public:
    // Binds and listens. TCP port 0 picks a free port (address() reports it). backlog as listen(2).
    explicit Listener(const SocketAddress& address, int backlog = 1, std::optional<std::string> authkey = std::nullopt,
                      HandshakeOptions options = {});
    Listener(Listener&& other) noexcept;
    Listener& operator=(Listener&& other) noexcept;
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;
    ~Listener();  // close()

    // Waits for a client without bound and returns its connection once the handshake (if any) succeeded.
    // AuthenticationError: that client failed the handshake (its socket is closed; call accept() again).
    FdConnection accept();
    // The same, waiting at most `timeout` for a client to connect (zero or less: only one already waiting);
    // std::nullopt when none came. The handshake then has its own HandshakeOptions::timeout.
    std::optional<FdConnection> accept(std::chrono::nanoseconds timeout);

    // Stops listening and removes a filesystem path this Listener bound; idempotent.
    void close() noexcept;
    bool closed() const noexcept { return fd_ < 0; }
    // The address bound: the port the kernel picked for port 0; the numeric host.
    const SocketAddress& address() const noexcept { return address_; }
    // The listening socket (readable when a client waits), for wait()/poll; StateError when closed.
    int fileno() const;

private:
    std::optional<FdConnection> accept_within(std::optional<std::chrono::nanoseconds> timeout);

    int fd_ = -1;
    SocketAddress address_ = SocketAddress::unix_socket("-");
    std::optional<std::string> authkey_;
    HandshakeOptions options_;
    bool remove_path_ = false;
    int bound_by_pid_ = 0;  // the process that bound the path: the only one that removes it
};

// Python's multiprocessing.connection.Client: connects to a Listener (C++ or Python) and runs the handshake
// when authkey is given. `timeout` bounds connecting (every address the host resolves to, in order) and
// the handshake together; std::nullopt: connecting waits as connect(2) does, the handshake options.timeout.
// SystemError when no address accepts (ECONNREFUSED, ENOENT, ETIMEDOUT), AuthenticationError as above.
MPROC_API FdConnection Client(const SocketAddress& address, std::optional<std::string> authkey = std::nullopt,
                    std::optional<std::chrono::nanoseconds> timeout = std::nullopt, HandshakeOptions options = {});

}  // namespace mproc
