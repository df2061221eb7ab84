// src/framing.hpp (private) — Python's multiprocessing.connection framing, as pure functions over bytes.
//
// Wire format (CPython Lib/multiprocessing/connection.py, Connection._send_bytes / _recv_bytes):
// - a message of n < 2^31 bytes: a 4-byte big-endian signed length n, then the n bytes; an empty message is
//   the bare header 00 00 00 00.
// - a message of n >= 2^31 bytes: the 4 bytes FF FF FF FF (-1 as a signed 32-bit length), then an 8-byte
//   big-endian unsigned length n, then the n bytes. CPython writes this form since 3.8 (3.8 to 3.13 all
//   send `struct.pack("!i", -1)` + `struct.pack("!Q", n)` when n > 0x7fffffff, and read it back); 3.7 and
//   older neither send nor accept it, so a peer on those versions can exchange only messages below 2 GiB.
//   CPython's reader accepts the long form for any n, small ones too, and so does this decoder.
// - Any other negative 32-bit length is malformed (CPython silently reads it as an empty message; a
//   hostile or corrupt stream is reported here instead), as is a long-form length above kMaxMessageSize.
//
// The decoder never allocates for a length the peer merely announced: a body buffer grows as body bytes
// arrive (at most doubling what already arrived, or kGrowthStep), and a length above the caller's
// maxlength is refused before a single body byte is stored. So the memory a hostile peer can make it
// allocate is bounded by min(maxlength, 2 × bytes actually sent + kGrowthStep).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace mproc::detail::framing {

inline constexpr std::size_t kShortHeaderSize = 4;
inline constexpr std::size_t kLongHeaderSize = 12;  // FF FF FF FF + 8-byte length
inline constexpr std::uint64_t kLongFormThreshold = std::uint64_t{1} << 31;
// Largest length accepted: what a std::vector<std::byte> / ptrdiff_t can index.
inline constexpr std::uint64_t kMaxMessageSize = static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max());
inline constexpr std::uint64_t kNoMaxLength = std::numeric_limits<std::uint64_t>::max();
// Body buffers grow by at least this much, so a body arriving in small reads is not reallocated per read.
inline constexpr std::size_t kGrowthStep = 64 * 1024;

struct EncodedHeader {
    std::array<std::byte, kLongHeaderSize> bytes{};
    std::size_t size = 0;  // 4 or 12

    std::span<const std::byte> view() const noexcept { return {bytes.data(), size}; }
};

// The header that precedes a message of message_size bytes (the form CPython >= 3.8 writes).
EncodedHeader encode_header(std::uint64_t message_size) noexcept;

enum class HeaderStatus {
    incomplete,  // more bytes are needed: `header_size` says how many in all (4, or 12 once FF FF FF FF is seen)
    complete,    // `header_size` bytes form the header of a message of `message_size` bytes
    malformed,   // a negative length other than -1, or a long-form length above kMaxMessageSize
};

struct HeaderParse {
    HeaderStatus status = HeaderStatus::incomplete;
    std::size_t header_size = kShortHeaderSize;
    std::uint64_t message_size = 0;
};

// Parses the header at the start of `bytes` (which may hold less than a header, or a header and more).
HeaderParse parse_header(std::span<const std::byte> bytes) noexcept;

// The capacity a body buffer should have once `filled` of `total` bytes arrived and it is full: grows by
// max(filled, kGrowthStep), never past total.
std::size_t next_body_capacity(std::size_t filled, std::uint64_t total) noexcept;

enum class DecodeError {
    none,
    malformed_header,
    too_long,  // the announced length exceeds maxlength
};

// Incremental decoder of one message at a time, fed by arbitrary chunks.
// States: header → body → complete (take_message() returns to header), or failed (reset() to reuse).
class FrameDecoder {
public:
    enum class State { header, body, complete, failed };

    explicit FrameDecoder(std::uint64_t maxlength = kNoMaxLength) noexcept : maxlength_(maxlength) {}

    // Starts over on a new message boundary with this maxlength, dropping any partial message.
    void reset(std::uint64_t maxlength) noexcept;

    // Consumes bytes of the current message from `input` (header, then body) and returns how many: stops at
    // the end of the message, on a failure, or when input runs out. Never consumes bytes of the next message.
    std::size_t feed(std::span<const std::byte> input) { return feed(input, false); }
    // The same, but stops once the header is complete: the caller may then place the body itself.
    std::size_t feed_header(std::span<const std::byte> input) { return feed(input, true); }

    // In the body state: writable space for the next body bytes, so a caller can read() straight into it
    // (allocates by next_body_capacity()); then commit() what was written.
    std::span<std::byte> body_space();
    void commit(std::size_t count) noexcept;

    State state() const noexcept { return state_; }
    DecodeError error() const noexcept { return error_; }
    // Header bytes seen so far (for "truncated after 2 of 4 header bytes").
    std::size_t header_bytes_seen() const noexcept { return header_filled_; }
    // Valid from the body state on (and in failed with too_long): the announced length.
    std::uint64_t message_size() const noexcept { return message_size_; }
    std::uint64_t body_bytes_seen() const noexcept { return body_filled_; }
    std::size_t body_capacity() const noexcept { return body_.size(); }

    // In the complete state: the message; the decoder is back in the header state.
    std::vector<std::byte> take_message();

private:
    std::size_t feed(std::span<const std::byte> input, bool header_only);
    void finish_header(const HeaderParse& parsed);

    std::uint64_t maxlength_;
    State state_ = State::header;
    DecodeError error_ = DecodeError::none;
    std::array<std::byte, kLongHeaderSize> header_{};
    std::size_t header_filled_ = 0;
    std::uint64_t message_size_ = 0;
    std::vector<std::byte> body_;  // size() is the capacity allocated so far; body_filled_ of it are data
    std::size_t body_filled_ = 0;
};

}  // namespace mproc::detail::framing
