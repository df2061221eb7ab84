// mproc/connection.hpp — Python's multiprocessing.connection.Connection for C++: a message-oriented,
// bidirectional (or one-way) link between processes, wire-compatible with Python's send_bytes/recv_bytes.
//
// Defines: Connection (the interface every connection kind implements), FdConnection (a connection over a
// file descriptor — socketpair, pipe, inherited fd, accepted AF_UNIX socket — whose I/O goes through
// io_uring, or plain read/write where io_uring is unavailable; on AF_UNIX stream sockets it also carries
// descriptors: send_handle/recv_handle), fd_pipe() (Python's multiprocessing.Pipe). Handing a whole
// anonymous object (Lock, Queue, ...) to another process: mproc/handoff.hpp.
//
// Wire format: Python's (see src/framing.hpp): a 4-byte big-endian length, or FF FF FF FF and an 8-byte
// big-endian length for messages of 2^31 bytes or more (the form CPython 3.8 and later use); an empty message
// is a bare zero header. A C++ FdConnection and a Python Connection on the two ends of a pipe or socket
// exchange send_bytes/recv_bytes messages. (Python's send()/recv() pickle; C++'s send<T>/recv<T> copy the
// bytes of a trivially copyable T, and encode any other T with mproc/codec.hpp: those two pairs do not mix.)
//
// Guarantees
// - Messages arrive whole, in order, each exactly once, or an exception says why not.
// - End of stream: recv_bytes()/recv_bytes_into()/recv<T>() on a connection whose peer closed (or died)
//   after its last whole message throws Closed (Python: EOFError). poll() reports that state as true.
// - A message longer than maxlength (recv_bytes) throws SystemError(EMSGSIZE); a stream that ends inside a
//   message (a truncated frame) or holds a malformed header throws SystemError(EPROTO). After either the
//   connection is closed for reading — readable() is false, later receives throw StateError — and, if it
//   was not writable either, closed entirely (fd closed), exactly as Python's _bad_message_length does.
//   The decoder never allocates more than min(maxlength, about twice the bytes actually received).
// - recv_bytes_into() with a buffer too small for the message throws BufferTooShort carrying the whole
//   message; the connection stays usable.
// - A send to a peer that closed its end throws BrokenPipe (EPIPE/ECONNRESET); the process is never
//   killed by SIGPIPE: sockets are written with MSG_NOSIGNAL, and pipe writes run with SIGPIPE blocked
//   in the calling thread, any SIGPIPE they raise being discarded.
// - Descriptors (AF_UNIX stream sockets only: socketpair/fd_pipe(true), Listener/Client over a Unix address):
//   send_handle(fd) / recv_handle() are Python's multiprocessing.reduction.send_handle/recv_handle on Linux,
//   byte for byte — one byte holding the descriptor count (1) mod 256 with the descriptor attached
//   (SCM_RIGHTS), outside the length-prefixed framing, no acknowledgement — and mix freely with framed
//   messages in any order. The receiving side reads such sockets with recvmsg and a control buffer (a
//   plain read would silently drop descriptors), remembers which stream byte each received set belongs to
//   and hands it out in recv_handle(). Received descriptors are close-on-exec and owned from the moment
//   they arrive (UniqueFd); ones still buffered when the connection is closed, destroyed or closed for
//   reading are closed.
//   Out of order: recv_bytes() that meets a handle where a message starts → SystemError(EPROTO), the
//   handle's descriptors closed, its byte consumed, the connection still usable; a handle inside a message
//   (a hostile or broken peer) → SystemError(EPROTO) and the connection is closed for reading.
//   recv_handle() that meets a framed message → StateError, nothing consumed. On a pipe, TCP or any other
//   fd, send_handle/recv_handle throw StateError naming the connection.
// - Threads: one thread may send while another receives on the same FdConnection (the two directions share
//   no state). Two concurrent senders, two concurrent receivers, or close() concurrent with anything else,
//   are not allowed. Across fork(): a connection may be used in the child; each process lazily creates its
//   own io_uring ring, so parent and child never share one. Both processes using the same direction of the
//   same fd interleave at message granularity only for messages up to PIPE_BUF on pipes; do not.
//
// Costs (io_uring backend; the read/write backend makes one read/writev/sendmsg per io_uring SQE)
// - send_bytes(): one io_uring_enter. send_many(n messages): frames of up to 4 KiB are copied back to back
//   into a 64 KiB registered staging buffer and written by one SQE per buffer-full; larger messages get one
//   SQE each (header + body, no copy); all SQEs of a batch (up to 64) go in one io_uring_enter, linked so
//   they complete in order. Pipes add two sigprocmask calls per batch (SIGPIPE blocking), so a lone
//   send_bytes() on a pipe costs three system calls (one on a socket). io_uring completes a pipe write that
//   finds the pipe partly full with a short count; the rest of the batch is then resubmitted, one more
//   io_uring_enter each time the reader makes room (a socket send waits for all of it: MSG_WAITALL).
// - Receiving reads ahead into a 64 KiB registered buffer: a run of small messages costs one io_uring_enter
//   per 64 KiB; a large body is read straight into its destination. On AF_UNIX stream sockets the reads
//   are recvmsg calls instead (one system call per read-ahead as well, on either backend: recv_stats()
//   counts them), so that descriptors are never lost; a recvmsg ends after a handle's byte, so each handle
//   costs one more read. send_handle() is one sendmsg.
// - poll(): one ppoll when nothing is buffered, none when something is.
// - The first send/receive of each direction in a process creates its io_uring ring (a few system calls and
//   64 KiB registered as fixed buffer).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"
#include "mproc/unique_fd.hpp"

namespace mproc {

// The interface shared by every connection kind (this fd-backed one; a shared-memory one).
class MPROC_API Connection {
public:
    virtual ~Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Sends one message. Throws BrokenPipe when the peer is gone, StateError when closed or read-only.
    virtual void send_bytes(std::span<const std::byte> message) = 0;
    // Python's send_bytes(buf, offset, size): the size bytes of buffer from offset (all the rest when
    // size is empty). ValueError when the range is outside buffer.
    void send_bytes(std::span<const std::byte> buffer, std::size_t offset, std::optional<std::size_t> size = {});
    // Sends the messages in order, as a batch where the connection kind can (one system call for many).
    virtual void send_many(std::span<const std::span<const std::byte>> messages);

    // Receives one message, blocking until it arrives. maxlength: see the guarantees above.
    virtual std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt) = 0;
    // Receives one message into buffer[offset...) and returns its size; BufferTooShort (holding the message,
    // which is consumed) when it does not fit. ValueError when offset > buffer.size().
    virtual std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0) = 0;

    // True when a receive would not block: a message (or part of one) or end of stream is ready. Waits at
    // most timeout; a timeout of zero or less does not wait; std::nullopt waits without bound (Python's
    // poll(None)).
    virtual bool poll(std::optional<std::chrono::nanoseconds> timeout = std::chrono::nanoseconds::zero()) = 0;

    // Releases the connection; idempotent. Receives and sends afterwards throw StateError.
    virtual void close() noexcept = 0;
    virtual bool closed() const noexcept = 0;
    virtual bool readable() const noexcept = 0;
    virtual bool writable() const noexcept = 0;
    // A file descriptor that polls readable when poll() would return true; StateError when closed.
    virtual int fileno() const = 0;
    // How I/O is done, for diagnostics: "io_uring", "read/write", ...
    virtual std::string_view backend() const noexcept = 0;

    // One value as one message: a trivially copyable T as its bytes (as always), any other Encodable T
    // (std::string, containers, user types: mproc/codec.hpp) encoded. std::span<const std::byte> and
    // std::string_view send what they view (a message recv<std::vector<std::byte>> / recv<std::string>
    // takes). ValueError when the value nests deeper than the codec allows.
    template <class T>
    void send(const T& value) {
        if constexpr (sent_as_bytes<T>) {
            send_bytes(std::as_bytes(std::span<const T, 1>(&value, 1)));
        } else {
            static_assert(Encodable<T>, "send<T>: T must be trivially copyable or Encodable (mproc/codec.hpp)");
            send_bytes(codec_detail::encode_to_scratch(value));
        }
    }

    // One message as a T. Trivially copyable T: the message must be exactly sizeof(T) bytes (ValueError
    // otherwise; the message is consumed). Any other T: the message is decoded; DecodeError (consumed
    // too) when it is not a T's encoding.
    template <class T>
    T recv() {
        if constexpr (sent_as_bytes<T>) {
            static_assert(std::is_default_constructible_v<T>,
                          "recv<T> copies bytes into a T: T must be default constructible");
            T value{};
            std::byte bytes[sizeof(T)];
            std::size_t received = 0;
            try {
                received = recv_bytes_into(bytes);
            } catch (const BufferTooShort& error) {
                throw_wrong_size("recv<T>", error.message().size(), sizeof(T));
            }
            if (received != sizeof(T)) throw_wrong_size("recv<T>", received, sizeof(T));
            std::memcpy(&value, bytes, sizeof(T));
            return value;
        } else {
            static_assert(Decodable<T>, "recv<T>: T must be trivially copyable or Decodable (mproc/codec.hpp)");
            const std::vector<std::byte> message = recv_bytes();
            return decode<T>(message);
        }
    }

protected:
    // Which values send<T>/recv<T> carry as their raw bytes: trivially copyable ones, except the views.
    template <class T>
    static constexpr bool sent_as_bytes = std::is_trivially_copyable_v<T> &&
                                          !std::is_same_v<T, std::span<const std::byte>> &&
                                          !std::is_same_v<T, std::string_view>;

    Connection() = default;
    Connection(Connection&&) noexcept = default;
    Connection& operator=(Connection&&) noexcept = default;

    [[noreturn]] void throw_wrong_size(const char* operation, std::size_t received, std::size_t expected) const;
    // "connection fd 5" / "shared-memory connection 'x'", for messages.
    virtual std::string describe() const = 0;
};

namespace detail {
struct ConnectionReader;
struct ConnectionWriter;
}  // namespace detail

class MPROC_API FdConnection final : public Connection {
public:
    struct Stats {
        std::uint64_t system_calls = 0;  // io_uring_enter, or read/writev/sendmsg, made by this process's I/O
        std::uint64_t sqes = 0;          // SQEs submitted (io_uring backend only)
    };

    // Adopts fd (closed by close() or the destructor). The backend is chosen now: io_uring unless
    // MPROC_DISABLE_IO_URING=1 is set or the kernel refuses it (backend_fallback_reason() says why).
    static FdConnection from_fd(int fd, bool readable = true, bool writable = true);

    FdConnection(FdConnection&& other) noexcept;
    FdConnection& operator=(FdConnection&& other) noexcept;
    ~FdConnection() override;

    using Connection::send_bytes;
    void send_bytes(std::span<const std::byte> message) override;
    void send_many(std::span<const std::span<const std::byte>> messages) override;
    std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt) override;
    std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0) override;
    bool poll(std::optional<std::chrono::nanoseconds> timeout = std::chrono::nanoseconds::zero()) override;
    void close() noexcept override;
    bool closed() const noexcept override { return fd_ < 0; }
    bool readable() const noexcept override { return fd_ >= 0 && readable_; }
    bool writable() const noexcept override { return fd_ >= 0 && writable_; }
    int fileno() const override;
    std::string_view backend() const noexcept override;

    // Python's multiprocessing.reduction.send_handle(conn, fd, pid) on Linux: sends a duplicate of fd (the
    // caller keeps its own) as one byte holding 1 with the descriptor attached (SCM_RIGHTS), outside the
    // length-prefixed framing, with no acknowledgement. AF_UNIX stream sockets only: StateError naming the
    // connection on a pipe, TCP or any other fd; ValueError for fd < 0; BrokenPipe when the peer is gone.
    void send_handle(int fd);
    // Python's reduction.recv_handle(conn): the descriptor the peer's next send_handle sent, as a new
    // close-on-exec descriptor the caller owns (UniqueFd closes it unless release()d). Blocks until it
    // arrives. StateError when the next item is a framed message (nothing is consumed: recv_bytes() it) or
    // the connection is not an AF_UNIX stream socket; Closed at end of stream; SystemError(EPROTO) for a
    // handle of other than one descriptor (its descriptors are closed).
    UniqueFd recv_handle();

    // Why the read/write backend was chosen ("" on io_uring).
    const std::string& backend_fallback_reason() const noexcept { return fallback_reason_; }
    // Sending-side and receiving-side system-call counters of this process.
    Stats send_stats() const noexcept;
    Stats recv_stats() const noexcept;

protected:
    std::string describe() const override;

private:
    FdConnection(int fd, bool readable, bool writable, std::string fallback_reason);
    void require_open(const char* operation) const;
    void close_for_reading();
    // recv_bytes (whole != nullptr: the message goes there) and recv_bytes_into (into) in one loop.
    std::size_t recv_message(const char* operation, std::optional<std::size_t> maxlength, std::span<std::byte> into,
                             std::vector<std::byte>* whole);
    std::size_t read_message(const std::string& who, std::optional<std::size_t> maxlength, std::span<std::byte> into,
                             std::vector<std::byte>* whole);
    [[noreturn]] void reject_handle_in_message(const std::string& who, bool at_boundary);
    void require_descriptor_socket(const char* operation) const;

    int fd_ = -1;
    bool readable_ = false;
    bool writable_ = false;
    bool use_io_uring_ = false;
    bool unix_stream_ = false;  // AF_UNIX SOCK_STREAM: handles can travel, receives use recvmsg
    std::string fallback_reason_;
    std::unique_ptr<detail::ConnectionReader> reader_;
    std::unique_ptr<detail::ConnectionWriter> writer_;
};

// Python's multiprocessing.Pipe(duplex): duplex → two ends of socketpair(AF_UNIX, SOCK_STREAM), each
// readable and writable; one-way → (read end, write end) of pipe2. Both close-on-exec.
MPROC_API std::pair<FdConnection, FdConnection> fd_pipe(bool duplex = true);

}  // namespace mproc
