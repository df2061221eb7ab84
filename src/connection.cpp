#include "mproc/connection.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <optional>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <new>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "deadline.hpp"
#include "framing.hpp"
#include "scm_rights.hpp"
#include "uring.hpp"

namespace mproc {

void Connection::send_bytes(std::span<const std::byte> buffer, std::size_t offset, std::optional<std::size_t> size) {
    if (offset > buffer.size())
        throw ValueError(describe() + ": send_bytes: offset " + std::to_string(offset) + " is past the buffer's " +
                         std::to_string(buffer.size()) + " bytes");
    const std::size_t available = buffer.size() - offset;
    const std::size_t count = size.value_or(available);
    if (count > available)
        throw ValueError(describe() + ": send_bytes: offset " + std::to_string(offset) + " + size " +
                         std::to_string(count) + " is past the buffer's " + std::to_string(buffer.size()) + " bytes");
    send_bytes(buffer.subspan(offset, count));
}

void Connection::send_many(std::span<const std::span<const std::byte>> messages) {
    for (const auto& message : messages) send_bytes(message);
}

void Connection::throw_wrong_size(const char* operation, std::size_t received, std::size_t expected) const {
    throw ValueError(describe() + ": " + operation + ": received a message of " + std::to_string(received) +
                     " bytes, expected " + std::to_string(expected) + " (the message was consumed)");
}

namespace detail {

namespace {

constexpr std::size_t kReadAheadSize = 64 * 1024;
constexpr std::size_t kStagingSize = 64 * 1024;
// Frames up to this size are copied into the staging buffer; larger bodies are written from where they are.
constexpr std::size_t kStagedFrameLimit = 4096;
constexpr unsigned kWriteBatch = 64;  // SQEs per io_uring_enter on the sending side
constexpr unsigned kReadEntries = 4;
constexpr std::uint64_t kCurrentPosition = ~std::uint64_t{0};  // io_uring offset -1: pipes and sockets

struct FreeDeleter {
    void operator()(std::byte* bytes) const noexcept { std::free(bytes); }
};
using PageBuffer = std::unique_ptr<std::byte, FreeDeleter>;

PageBuffer allocate_pages(std::size_t size) {
    auto* bytes = static_cast<std::byte*>(std::aligned_alloc(4096, size));
    if (bytes == nullptr) throw std::bad_alloc();
    return PageBuffer(bytes);
}

// Waits until fd is ready for `events` (an fd inherited in O_NONBLOCK mode answers EAGAIN instead of blocking).
void wait_ready(int fd, short events) {
    pollfd entry{fd, events, 0};
    while (::poll(&entry, 1, -1) < 0 && errno == EINTR) {
    }
}

bool is_broken_pipe(int error_number) { return error_number == EPIPE || error_number == ECONNRESET; }

}  // namespace

// An io_uring ring that belongs to the process that created it: after fork() the child makes its own on first
// use (dropping its copy of the parent's), so two processes never submit into one ring.
class ProcessRing {
public:
    Uring& get(unsigned entries, std::byte* fixed_buffer, std::size_t fixed_size) {
        const pid_t self = ::getpid();
        if (ring_ == nullptr || owner_ != self) {
            ring_.reset();
            ring_ = std::make_unique<Uring>(entries);
            owner_ = self;
            const iovec fixed{fixed_buffer, fixed_size};
            ring_->register_buffers({&fixed, 1});
        }
        return *ring_;
    }
    const Uring* current() const noexcept { return ring_ != nullptr && owner_ == ::getpid() ? ring_.get() : nullptr; }

private:
    std::unique_ptr<Uring> ring_;
    pid_t owner_ = -1;
};

// Descriptors that arrived with the stream byte at `position` (counted from the connection's first byte): a
// handle, sent by send_handle() or Python's reduction.send_handle() as one byte outside the framing.
struct PendingDescriptors {
    std::uint64_t position = 0;
    std::vector<UniqueFd> fds;
};

struct ConnectionReader {
    ConnectionReader(bool io_uring, bool unix_stream)
        : use_io_uring(io_uring), descriptor_socket(unix_stream), read_ahead(allocate_pages(kReadAheadSize)) {}

    std::size_t buffered() const noexcept { return end - begin; }
    std::span<const std::byte> buffered_bytes() const noexcept { return {read_ahead.get() + begin, buffered()}; }
    void consume(std::size_t count) noexcept {
        begin += count;
        position += count;
        if (begin == end) begin = end = 0;
    }
    // Bytes read in place (past the read-ahead buffer) were consumed as they arrived.
    void advance(std::size_t count) noexcept { position += count; }

    // The buffered bytes that belong to framed messages: up to, not including, the next handle byte.
    std::span<const std::byte> message_bytes() const noexcept {
        const std::span<const std::byte> bytes = buffered_bytes();
        if (pending.empty()) return bytes;
        return bytes.first(static_cast<std::size_t>(pending.front().position - position));
    }
    // Whether the next byte of the stream carries descriptors (it is buffered: pending entries always are).
    bool at_handle() const noexcept { return !pending.empty() && pending.front().position == position; }
    // Consumes the handle byte at_handle() found; returns its value and descriptors.
    std::pair<std::byte, PendingDescriptors> take_handle() {
        const std::byte value = buffered_bytes().front();
        PendingDescriptors taken = std::move(pending.front());
        pending.pop_front();
        consume(1);
        return {value, std::move(taken)};
    }

    // One read into destination (the read-ahead buffer when into_read_ahead); 0 is end of stream. Nothing
    // may be buffered (destination receives the stream from `position` on). On an AF_UNIX stream socket,
    // descriptors that come with the bytes are kept in `pending`, tied to the last byte read (Linux ends a
    // stream recvmsg after the segment that carried them).
    std::size_t read_once(int fd, std::span<std::byte> destination, bool into_read_ahead, const std::string& who) {
        if (descriptor_socket) return receive_once(fd, destination, who);
        for (;;) {
            long result = 0;
            if (use_io_uring) {
                Uring& uring = ring.get(kReadEntries, read_ahead.get(), kReadAheadSize);
                io_uring_sqe* sqe = uring.next_sqe();
                const auto length = static_cast<unsigned>(std::min<std::size_t>(destination.size(), INT_MAX));
                if (into_read_ahead && uring.has_registered_buffers())
                    io_uring_prep_read_fixed(sqe, fd, destination.data(), length, kCurrentPosition, 0);
                else
                    io_uring_prep_read(sqe, fd, destination.data(), length, kCurrentPosition);
                uring.submit_and_wait(1);
                io_uring_cqe* completion = uring.peek_completion();
                result = completion->res;
                uring.consume(completion);
            } else {
                ++plain_calls;
                result = ::read(fd, destination.data(), destination.size());
                if (result < 0) result = -errno;
            }
            if (result >= 0) return static_cast<std::size_t>(result);
            if (result == -EINTR) continue;
            if (result == -EAGAIN) {
                wait_ready(fd, POLLIN);
                continue;
            }
            throw_system_error(who + ": read", static_cast<int>(-result));
        }
    }

    // read_once on an AF_UNIX stream socket: recvmsg with room for descriptors (a read() would drop them).
    std::size_t receive_once(int fd, std::span<std::byte> destination, const std::string& who) {
        ++plain_calls;
        scm_rights::Received received;
        try {
            received = scm_rights::receive(fd, destination, who);
        } catch (const SystemError& error) {
            // A cut control message: its bytes were taken from the socket but are not in the buffer, so
            // the stream cannot be followed any more.
            if (error.error_number() == EPROTO) stream_lost = true;
            throw;
        }
        if (!received.fds.empty())
            pending.push_back({position + received.bytes - 1, std::move(received.fds)});
        return received.bytes;
    }

    // Reads ahead when nothing is buffered; false at end of stream.
    bool refill(int fd, const std::string& who) {
        const std::size_t count = read_once(fd, {read_ahead.get(), kReadAheadSize}, true, who);
        begin = 0;
        end = count;
        return count > 0;
    }

    bool use_io_uring;
    bool descriptor_socket;  // AF_UNIX SOCK_STREAM: reads are recvmsg, descriptors are kept
    bool stream_lost = false;
    PageBuffer read_ahead;
    std::size_t begin = 0;
    std::size_t end = 0;
    std::uint64_t position = 0;  // stream index of read_ahead[begin]
    std::deque<PendingDescriptors> pending;  // in stream order; each one's byte is buffered
    framing::FrameDecoder decoder;
    ProcessRing ring;
    std::uint64_t plain_calls = 0;
};

// Blocks SIGPIPE in the calling thread for its lifetime and discards a SIGPIPE that a write raised meanwhile:
// a pipe write to a pipe without readers sends SIGPIPE to the writing thread before failing with EPIPE.
// Verified on Linux 6.18: an io_uring WRITE/WRITEV/WRITE_FIXED on such a pipe, executed inline by
// io_uring_enter, signals the submitting thread the same way (the process dies without this guard), while
// io_uring's SEND/SENDMSG never signal (the kernel adds MSG_NOSIGNAL to them; we pass it too). Sockets
// therefore need no guard on either backend.
class SigpipeBlocked {
public:
    SigpipeBlocked() {
        sigemptyset(&sigpipe_);
        sigaddset(&sigpipe_, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &sigpipe_, &previous_);
        already_blocked_ = sigismember(&previous_, SIGPIPE) == 1;
    }
    SigpipeBlocked(const SigpipeBlocked&) = delete;
    SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;
    ~SigpipeBlocked() {
        if (already_blocked_) return;  // the caller blocks SIGPIPE itself: what is pending is its business
        if (raised_) {
            const timespec no_wait{};
            while (sigtimedwait(&sigpipe_, nullptr, &no_wait) == SIGPIPE) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    }
    void note_broken_pipe() noexcept { raised_ = true; }

private:
    sigset_t sigpipe_{};
    sigset_t previous_{};
    bool already_blocked_ = false;
    bool raised_ = false;
};

struct ConnectionWriter {
    // One write: a run of staged frames (one iovec into the staging buffer) or one large frame (header, body).
    struct Op {
        std::array<iovec, 2> parts{};
        int part_count = 0;
        bool staged = false;
        std::size_t total = 0;
        std::size_t done = 0;
        int error = 0;
        std::array<iovec, 2> remaining{};  // parts minus the `done` bytes already written, as submitted
        msghdr message{};
    };

    ConnectionWriter(bool io_uring, bool socket)
        : use_io_uring(io_uring), is_socket(socket), staging(allocate_pages(kStagingSize)) {
        ops.reserve(kWriteBatch);
        headers.reserve(kWriteBatch);
    }

    void send(int fd, std::span<const std::span<const std::byte>> messages, const std::string& who) {
        ops.clear();
        headers.clear();
        staged_used = 0;
        for (const auto& message : messages) {
            const framing::EncodedHeader header = framing::encode_header(message.size());
            const std::size_t frame = header.size + message.size();
            if (frame <= kStagedFrameLimit) {
                if (staged_used + frame > kStagingSize) flush(fd, who);
                const bool extends_last = !ops.empty() && ops.back().staged;
                if (!extends_last && ops.size() == kWriteBatch) flush(fd, who);
                std::byte* at = staging.get() + staged_used;
                std::memcpy(at, header.bytes.data(), header.size);
                if (!message.empty()) std::memcpy(at + header.size, message.data(), message.size());
                if (!ops.empty() && ops.back().staged) {
                    ops.back().parts[0].iov_len += frame;
                    ops.back().total += frame;
                } else {
                    Op& op = ops.emplace_back();
                    op.parts[0] = {at, frame};
                    op.part_count = 1;
                    op.staged = true;
                    op.total = frame;
                }
                staged_used += frame;
            } else {
                if (ops.size() == kWriteBatch) flush(fd, who);
                const framing::EncodedHeader& stored = headers.emplace_back(header);
                Op& op = ops.emplace_back();
                op.parts[0] = {const_cast<std::byte*>(stored.bytes.data()), stored.size};
                op.parts[1] = {const_cast<std::byte*>(message.data()), message.size()};
                op.part_count = 2;
                op.total = frame;
            }
        }
        flush(fd, who);
    }

    // Writes every pending op in order; throws BrokenPipe / SystemError at the first that fails.
    void flush(int fd, const std::string& who) {
        if (ops.empty()) return;
        std::optional<SigpipeBlocked> sigpipe;
        if (!is_socket) sigpipe.emplace();
        std::size_t first = 0;
        while (first < ops.size()) {
            if (use_io_uring)
                submit_linked(fd, first);
            else
                write_plain(fd, ops[first]);
            while (first < ops.size() && ops[first].done == ops[first].total) ++first;
            if (first == ops.size()) break;
            Op& stuck = ops[first];
            const int error = stuck.error;
            stuck.error = 0;
            if (error == 0 || error == EINTR || error == ECANCELED) continue;  // short write or broken link: resume
            if (error == EAGAIN) {
                wait_ready(fd, POLLOUT);
                continue;
            }
            if (sigpipe && is_broken_pipe(error)) sigpipe->note_broken_pipe();
            ops.clear();
            headers.clear();
            staged_used = 0;
            if (is_broken_pipe(error))
                throw BrokenPipe(who + ": send: the peer closed its end", error);
            throw_system_error(who + ": send", error);
        }
        ops.clear();
        headers.clear();
        staged_used = 0;
    }

    // The op's parts minus the bytes already written.
    static int prepare_remaining(Op& op) {
        std::size_t skip = op.done;
        int count = 0;
        for (int i = 0; i < op.part_count; ++i) {
            const iovec part = op.parts[static_cast<std::size_t>(i)];
            if (skip >= part.iov_len) {
                skip -= part.iov_len;
                continue;
            }
            op.remaining[static_cast<std::size_t>(count++)] = {static_cast<std::byte*>(part.iov_base) + skip,
                                                               part.iov_len - skip};
            skip = 0;
        }
        return count;
    }

    // All ops from `first` on, linked so each starts only after the previous one wrote everything (a short
    // write breaks the chain: the rest complete with -ECANCELED and are resubmitted from where they stopped).
    void submit_linked(int fd, std::size_t first) {
        Uring& uring = ring.get(kWriteBatch, staging.get(), kStagingSize);
        const auto count = static_cast<unsigned>(ops.size() - first);
        for (std::size_t i = first; i < ops.size(); ++i) {
            Op& op = ops[i];
            const int parts = prepare_remaining(op);
            io_uring_sqe* sqe = uring.next_sqe();
            if (is_socket) {
                if (parts == 1) {
                    io_uring_prep_send(sqe, fd, op.remaining[0].iov_base, op.remaining[0].iov_len,
                                       MSG_NOSIGNAL | MSG_WAITALL);
                } else {
                    op.message = msghdr{};
                    op.message.msg_iov = op.remaining.data();
                    op.message.msg_iovlen = static_cast<std::size_t>(parts);
                    io_uring_prep_sendmsg(sqe, fd, &op.message, MSG_NOSIGNAL | MSG_WAITALL);
                }
            } else if (op.staged && uring.has_registered_buffers()) {
                io_uring_prep_write_fixed(sqe, fd, op.remaining[0].iov_base,
                                          static_cast<unsigned>(op.remaining[0].iov_len), kCurrentPosition, 0);
            } else {
                io_uring_prep_writev(sqe, fd, op.remaining.data(), static_cast<unsigned>(parts), kCurrentPosition);
            }
            io_uring_sqe_set_data64(sqe, i);
            if (i + 1 < ops.size()) sqe->flags |= IOSQE_IO_LINK;
        }
        uring.submit_and_wait(count);
        for (unsigned reaped = 0; reaped < count; ++reaped) {
            io_uring_cqe* completion = uring.peek_completion();
            Op& op = ops[static_cast<std::size_t>(io_uring_cqe_get_data64(completion))];
            if (completion->res >= 0)
                op.done += static_cast<std::size_t>(completion->res);
            else
                op.error = -completion->res;
            uring.consume(completion);
        }
    }

    void write_plain(int fd, Op& op) {
        const int parts = prepare_remaining(op);
        ++plain_calls;
        ssize_t result = 0;
        if (is_socket) {
            msghdr message{};
            message.msg_iov = op.remaining.data();
            message.msg_iovlen = static_cast<std::size_t>(parts);
            result = ::sendmsg(fd, &message, MSG_NOSIGNAL);
        } else {
            result = ::writev(fd, op.remaining.data(), parts);
        }
        if (result >= 0)
            op.done += static_cast<std::size_t>(result);
        else
            op.error = errno;
    }

    bool use_io_uring;
    bool is_socket;
    PageBuffer staging;
    std::size_t staged_used = 0;
    std::vector<Op> ops;
    std::vector<framing::EncodedHeader> headers;  // reserved: ops point into it while a batch is in flight
    ProcessRing ring;
    std::uint64_t plain_calls = 0;
};

}  // namespace detail

FdConnection::FdConnection(int fd, bool readable, bool writable, std::string fallback_reason)
    : fd_(fd), readable_(readable), writable_(writable), use_io_uring_(fallback_reason.empty()),
      fallback_reason_(std::move(fallback_reason)) {
    struct stat status {};
    const bool socket = ::fstat(fd, &status) == 0 && S_ISSOCK(status.st_mode);
    unix_stream_ = socket && detail::scm_rights::is_unix_stream_socket(fd);
    if (readable_) reader_ = std::make_unique<detail::ConnectionReader>(use_io_uring_, unix_stream_);
    if (writable_) writer_ = std::make_unique<detail::ConnectionWriter>(use_io_uring_, socket);
}

FdConnection FdConnection::from_fd(int fd, bool readable, bool writable) {
    if (fd < 0) throw ValueError("connection: from_fd: invalid file descriptor " + std::to_string(fd));
    if (!readable && !writable) throw ValueError("connection: from_fd: at least one of readable or writable must be true");
    if (::fcntl(fd, F_GETFD) < 0) throw_system_error("connection: from_fd(" + std::to_string(fd) + ")");
    return FdConnection(fd, readable, writable, detail::io_uring_unavailable_reason());
}

FdConnection::FdConnection(FdConnection&& other) noexcept
    : Connection(std::move(other)), fd_(std::exchange(other.fd_, -1)), readable_(other.readable_),
      writable_(other.writable_), use_io_uring_(other.use_io_uring_), unix_stream_(other.unix_stream_),
      fallback_reason_(std::move(other.fallback_reason_)), reader_(std::move(other.reader_)),
      writer_(std::move(other.writer_)) {}

FdConnection& FdConnection::operator=(FdConnection&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        readable_ = other.readable_;
        writable_ = other.writable_;
        use_io_uring_ = other.use_io_uring_;
        unix_stream_ = other.unix_stream_;
        fallback_reason_ = std::move(other.fallback_reason_);
        reader_ = std::move(other.reader_);
        writer_ = std::move(other.writer_);
    }
    return *this;
}

FdConnection::~FdConnection() { close(); }

std::string FdConnection::describe() const {
    return fd_ < 0 ? std::string("connection (closed)") : "connection fd " + std::to_string(fd_);
}

void FdConnection::require_open(const char* operation) const {
    if (fd_ < 0) throw StateError(std::string("connection: ") + operation + ": the connection is closed");
}

std::string_view FdConnection::backend() const noexcept { return use_io_uring_ ? "io_uring" : "read/write"; }

int FdConnection::fileno() const {
    require_open("fileno");
    return fd_;
}

void FdConnection::close() noexcept {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    reader_.reset();
    writer_.reset();
}

void FdConnection::close_for_reading() {
    readable_ = false;
    reader_.reset();
    if (!writable_) close();
}

FdConnection::Stats FdConnection::send_stats() const noexcept {
    Stats stats;
    if (writer_ == nullptr) return stats;
    stats.system_calls = writer_->plain_calls;
    if (const detail::Uring* uring = writer_->ring.current()) {
        stats.system_calls += uring->enter_calls();
        stats.sqes = uring->sqes_submitted();
    }
    return stats;
}

FdConnection::Stats FdConnection::recv_stats() const noexcept {
    Stats stats;
    if (reader_ == nullptr) return stats;
    stats.system_calls = reader_->plain_calls;
    if (const detail::Uring* uring = reader_->ring.current()) {
        stats.system_calls += uring->enter_calls();
        stats.sqes = uring->sqes_submitted();
    }
    return stats;
}

void FdConnection::send_bytes(std::span<const std::byte> message) {
    const std::span<const std::byte> one[] = {message};
    send_many(one);
}

void FdConnection::send_many(std::span<const std::span<const std::byte>> messages) {
    require_open("send_bytes");
    if (!writable_) throw StateError(describe() + ": send_bytes: the connection is read-only");
    writer_->send(fd_, messages, describe());
}

std::vector<std::byte> FdConnection::recv_bytes(std::optional<std::size_t> maxlength) {
    std::vector<std::byte> message;
    recv_message("recv_bytes", maxlength, {}, &message);
    return message;
}

std::size_t FdConnection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
    require_open("recv_bytes_into");
    if (offset > buffer.size())
        throw ValueError(describe() + ": recv_bytes_into: offset " + std::to_string(offset) +
                         " is past the buffer's " + std::to_string(buffer.size()) + " bytes");
    return recv_message("recv_bytes_into", std::nullopt, buffer.subspan(offset), nullptr);
}

std::size_t FdConnection::recv_message(const char* operation, std::optional<std::size_t> maxlength,
                                       std::span<std::byte> into, std::vector<std::byte>* whole) {
    require_open(operation);
    if (!readable_)
        throw StateError(describe() + ": " + operation +
                         (writer_ != nullptr ? ": the connection is closed for reading" : ": the connection is write-only"));
    const std::string who = describe() + ": " + operation;
    try {
        return read_message(who, maxlength, into, whole);
    } catch (...) {
        if (reader_ != nullptr && reader_->stream_lost) close_for_reading();
        throw;
    }
}

void FdConnection::reject_handle_in_message(const std::string& who, bool at_boundary) {
    detail::ConnectionReader& reader = *reader_;
    const std::size_t count = reader.pending.front().fds.size();
    const std::string what = who + ": a handle (" + std::to_string(count) +
                             " descriptors sent with send_handle) where a framed message was expected";
    if (at_boundary) {
        // The stream is still framed: drop the handle byte, close its descriptors, carry on after it.
        reader.take_handle();
        throw SystemError(what + ": the descriptors were closed (receive handles with recv_handle())", EPROTO);
    }
    close_for_reading();
    throw SystemError(what + ", inside a message: the descriptors were closed; the connection is now closed for reading",
                      EPROTO);
}

std::size_t FdConnection::read_message(const std::string& who, std::optional<std::size_t> maxlength,
                                       std::span<std::byte> into, std::vector<std::byte>* whole) {
    using detail::framing::FrameDecoder;
    detail::ConnectionReader& reader = *reader_;
    FrameDecoder& decoder = reader.decoder;
    decoder.reset(maxlength ? *maxlength : detail::framing::kNoMaxLength);

    const auto truncated = [&](const std::string& where) {
        close_for_reading();
        throw SystemError(who + ": the peer closed the stream in the middle of a message (" + where +
                              "): truncated frame; the connection is now closed for reading",
                          EPROTO);
    };
    // After a read straight into the message: descriptors that came with it sit inside the message.
    const auto read_in_place = [&](std::span<std::byte> destination) {
        const std::size_t count = reader.read_once(fd_, destination, false, who);
        reader.advance(count);
        if (!reader.pending.empty()) reject_handle_in_message(who, false);
        return count;
    };

    while (decoder.state() == FrameDecoder::State::header) {
        const std::span<const std::byte> bytes = reader.message_bytes();
        if (!bytes.empty()) {
            reader.consume(decoder.feed_header(bytes));
            continue;
        }
        if (reader.at_handle()) reject_handle_in_message(who, decoder.header_bytes_seen() == 0);
        if (!reader.refill(fd_, who)) {
            if (decoder.header_bytes_seen() == 0) throw Closed(who + ": end of stream: the peer closed its end");
            truncated(std::to_string(decoder.header_bytes_seen()) + " header bytes received");
        }
    }
    if (decoder.state() == FrameDecoder::State::failed) {
        const bool too_long = decoder.error() == detail::framing::DecodeError::too_long;
        const std::uint64_t size = decoder.message_size();
        close_for_reading();
        if (too_long)
            throw SystemError(who + ": bad message length: the message has " + std::to_string(size) +
                                  " bytes, more than maxlength " + std::to_string(*maxlength) +
                                  "; the connection is now closed for reading",
                              EMSGSIZE);
        throw SystemError(who + ": malformed message header; the connection is now closed for reading", EPROTO);
    }

    const std::uint64_t size = decoder.message_size();
    if (whole == nullptr && size <= into.size()) {
        // The body goes straight into the caller's buffer: buffered bytes first, then reads of the rest.
        std::size_t filled = 0;
        while (filled < size) {
            const std::span<const std::byte> bytes = reader.message_bytes();
            if (!bytes.empty()) {
                const std::size_t taken = std::min<std::size_t>(bytes.size(), size - filled);
                std::memcpy(into.data() + filled, bytes.data(), taken);
                reader.consume(taken);
                filled += taken;
                continue;
            }
            if (reader.at_handle()) reject_handle_in_message(who, false);
            // A remainder of at least a read-ahead buffer is read in place (no copy); a smaller one reads
            // ahead, so the next messages come with it.
            const std::size_t left = size - filled;
            const bool in_place = left >= detail::kReadAheadSize;
            const std::size_t count = in_place ? read_in_place(into.subspan(filled, left))
                                               : (reader.refill(fd_, who) ? reader.buffered() : 0);
            if (count == 0) truncated(std::to_string(filled) + " of " + std::to_string(size) + " body bytes received");
            if (in_place) filled += count;
        }
        decoder.reset(detail::framing::kNoMaxLength);
        return static_cast<std::size_t>(size);
    }

    while (decoder.state() == FrameDecoder::State::body) {
        const std::span<const std::byte> bytes = reader.message_bytes();
        if (!bytes.empty()) {
            reader.consume(decoder.feed(bytes));
            continue;
        }
        if (reader.at_handle()) reject_handle_in_message(who, false);
        const std::uint64_t left = size - decoder.body_bytes_seen();
        std::size_t count = 0;
        if (left >= detail::kReadAheadSize) {
            const std::span<std::byte> space = decoder.body_space();
            count = read_in_place(space);
            decoder.commit(count);
        } else {
            count = reader.refill(fd_, who) ? reader.buffered() : 0;
        }
        if (count == 0)
            truncated(std::to_string(decoder.body_bytes_seen()) + " of " + std::to_string(size) + " body bytes received");
    }
    std::vector<std::byte> message = decoder.take_message();
    if (whole != nullptr) {
        *whole = std::move(message);
        return whole->size();
    }
    const std::size_t length = message.size();
    throw BufferTooShort(who + ": the message has " + std::to_string(length) + " bytes, the buffer only " +
                             std::to_string(into.size()) + " (the message is in BufferTooShort::message())",
                         std::move(message));
}

void FdConnection::require_descriptor_socket(const char* operation) const {
    if (unix_stream_) return;
    struct stat status {};
    const char* kind = ::fstat(fd_, &status) != 0 ? "descriptor"
                       : S_ISSOCK(status.st_mode) ? "socket of another family or type"
                       : S_ISFIFO(status.st_mode) ? "pipe"
                                                   : "file that is not a socket";
    throw StateError(describe() + ": " + operation +
                     ": descriptors travel only over AF_UNIX stream sockets (SCM_RIGHTS); this connection is a " + kind);
}

void FdConnection::send_handle(int fd) {
    require_open("send_handle");
    if (!writable_) throw StateError(describe() + ": send_handle: the connection is read-only");
    require_descriptor_socket("send_handle");
    if (fd < 0) throw ValueError(describe() + ": send_handle: invalid file descriptor " + std::to_string(fd));
    // Python's reduction.sendfds: one byte holding the descriptor count mod 256, the descriptors attached.
    const std::byte count{1};
    const int fds[] = {fd};
    detail::scm_rights::send(fd_, {&count, 1}, fds, describe() + ": send_handle");
}

UniqueFd FdConnection::recv_handle() {
    require_open("recv_handle");
    if (!readable_)
        throw StateError(describe() + ": recv_handle" +
                         (writer_ != nullptr ? ": the connection is closed for reading" : ": the connection is write-only"));
    require_descriptor_socket("recv_handle");
    const std::string who = describe() + ": recv_handle";
    detail::ConnectionReader& reader = *reader_;
    try {
        if (reader.buffered() == 0 && !reader.refill(fd_, who))
            throw Closed(who + ": end of stream: the peer closed its end");
    } catch (...) {
        if (reader_ != nullptr && reader_->stream_lost) close_for_reading();
        throw;
    }
    if (!reader.at_handle())
        throw StateError(who + ": the next item is a framed message, not a handle (receive it with recv_bytes()); "
                               "nothing was consumed");
    auto [value, handle] = reader.take_handle();
    if (handle.fds.size() != 1 || std::to_integer<unsigned>(value) != 1)
        throw SystemError(who + ": a handle of " + std::to_string(handle.fds.size()) + " descriptors whose byte says " +
                              std::to_string(std::to_integer<unsigned>(value)) +
                              ", expected exactly one: the descriptors were closed",
                          EPROTO);
    return std::move(handle.fds.front());
}

bool FdConnection::poll(std::optional<std::chrono::nanoseconds> timeout) {
    require_open("poll");
    if (!readable_) throw StateError(describe() + ": poll: the connection is not readable");
    if (reader_->buffered() > 0) return true;
    pollfd entry{fd_, POLLIN, 0};
    if (!timeout) {
        for (;;) {
            const int result = ::ppoll(&entry, 1, nullptr, nullptr);
            if (result > 0) return true;
            if (result < 0 && errno != EINTR) throw_system_error(describe() + ": poll");
        }
    }
    const detail::Deadline deadline = detail::Deadline::after(*timeout);
    for (;;) {
        const timespec left = deadline.remaining_timespec();
        const int result = ::ppoll(&entry, 1, &left, nullptr);
        if (result > 0) return true;
        if (result == 0) return false;
        if (errno != EINTR) throw_system_error(describe() + ": poll");
        if (deadline.passed()) return false;
    }
}

std::pair<FdConnection, FdConnection> fd_pipe(bool duplex) {
    int fds[2];
    if (duplex) {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
            throw_system_error("connection: fd_pipe: socketpair(AF_UNIX, SOCK_STREAM)");
        try {
            FdConnection first = FdConnection::from_fd(fds[0]);
            fds[0] = -1;
            return {std::move(first), FdConnection::from_fd(fds[1])};
        } catch (...) {
            if (fds[0] >= 0) ::close(fds[0]);
            ::close(fds[1]);
            throw;
        }
    }
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_system_error("connection: fd_pipe: pipe2");
    try {
        FdConnection reading = FdConnection::from_fd(fds[0], true, false);
        fds[0] = -1;
        return {std::move(reading), FdConnection::from_fd(fds[1], false, true)};
    } catch (...) {
        if (fds[0] >= 0) ::close(fds[0]);
        ::close(fds[1]);
        throw;
    }
}

}  // namespace mproc
