// fuzz/fuzz-framing.cpp — the multiprocessing.connection framing decoder fed by a hostile peer.
//
// Input: byte 0 = flags (bit 0: no maxlength; bit 1: also run the bytes through a real FdConnection),
// bytes 1-2 = maxlength (little-endian), byte 3 = chunking seed, the rest = the stream the peer sent.
// Path 1: FrameDecoder is fed the stream in chunks of pseudo-random sizes, alternating feed() with the
// body_space()/commit() path a Connection uses for large bodies; the messages it yields, and where and why
// it fails, must equal those of a one-shot reference parse of the whole stream: chunking never changes the
// result. The body buffer never exceeds the announced length, maxlength, or 2 × received + kGrowthStep.
// Path 2 (bit 1, stream up to 60000 bytes so it fits a pipe): the stream is written into a pipe, the writer
// closed, and an FdConnection (read/write backend) receives with recv_bytes / recv_bytes_into until it
// reports Closed, EMSGSIZE or EPROTO; messages and outcome must match the reference. Never a crash.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "framing.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"

namespace {

namespace framing = mproc::detail::framing;

void require(bool property) {
    if (!property) std::abort();
}

enum class End { clean, truncated, malformed, too_long };

struct Reference {
    std::vector<std::vector<std::byte>> messages;
    End end = End::clean;
};

// The whole stream at once, straight from the format's definition.
Reference parse_reference(std::span<const std::byte> stream, std::uint64_t maxlength) {
    Reference reference;
    std::size_t at = 0;
    for (;;) {
        if (at == stream.size()) return reference;
        const framing::HeaderParse header = framing::parse_header(stream.subspan(at));
        if (header.status == framing::HeaderStatus::malformed) {
            reference.end = End::malformed;
            return reference;
        }
        if (header.status == framing::HeaderStatus::incomplete) {
            reference.end = End::truncated;
            return reference;
        }
        if (header.message_size > maxlength) {
            reference.end = End::too_long;
            return reference;
        }
        at += header.header_size;
        if (header.message_size > stream.size() - at) {
            reference.end = End::truncated;
            return reference;
        }
        const auto body = stream.subspan(at, static_cast<std::size_t>(header.message_size));
        reference.messages.emplace_back(body.begin(), body.end());
        at += body.size();
    }
}

void check_decoder(std::span<const std::byte> stream, std::uint64_t maxlength, std::uint8_t seed,
                   const Reference& reference) {
    framing::FrameDecoder decoder(maxlength);
    std::vector<std::vector<std::byte>> messages;
    std::size_t at = 0;
    std::uint32_t state = seed * 2654435761u + 1;
    bool failed = false;
    while (at < stream.size() && !failed) {
        state = state * 1103515245u + 12345u;
        const std::size_t chunk = std::min<std::size_t>(1 + (state >> 16) % 97, stream.size() - at);
        std::size_t offset = 0;
        while (offset < chunk) {
            const auto input = stream.subspan(at + offset, chunk - offset);
            std::size_t used = 0;
            if (decoder.state() == framing::FrameDecoder::State::body && (state & 0x100) != 0) {
                const std::span<std::byte> space = decoder.body_space();
                used = std::min(space.size(), input.size());
                std::memcpy(space.data(), input.data(), used);
                decoder.commit(used);
            } else {
                used = decoder.feed(input);
            }
            offset += used;
            const std::uint64_t announced = decoder.message_size();
            require(decoder.body_capacity() <= announced);
            require(decoder.body_capacity() <= maxlength);
            require(decoder.body_capacity() <= 2 * decoder.body_bytes_seen() + framing::kGrowthStep);
            if (decoder.state() == framing::FrameDecoder::State::complete) {
                messages.push_back(decoder.take_message());
                require(messages.back().size() == announced);
            } else if (decoder.state() == framing::FrameDecoder::State::failed) {
                failed = true;
                break;
            } else {
                require(used > 0 || offset == chunk);
            }
        }
        at += chunk;
    }
    require(messages == reference.messages);
    End end = End::clean;
    if (failed)
        end = decoder.error() == framing::DecodeError::too_long ? End::too_long : End::malformed;
    else if (decoder.state() != framing::FrameDecoder::State::header || decoder.header_bytes_seen() != 0)
        end = End::truncated;
    require(end == reference.end);
}

void check_connection(std::span<const std::byte> stream, std::optional<std::size_t> maxlength, std::uint8_t seed,
                      const Reference& reference) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    std::size_t written = 0;
    while (written < stream.size()) {
        const ssize_t result = ::write(fds[1], stream.data() + written, stream.size() - written);
        require(result > 0);
        written += static_cast<std::size_t>(result);
    }
    ::close(fds[1]);
    ::setenv("MPROC_DISABLE_IO_URING", "1", 1);
    mproc::FdConnection connection = mproc::FdConnection::from_fd(fds[0], true, false);
    std::vector<std::vector<std::byte>> messages;
    std::vector<std::byte> buffer(seed);  // recv_bytes_into with a buffer of `seed` bytes when seed is odd
    End end = End::clean;
    for (;;) {
        try {
            if ((seed & 1) != 0 && !maxlength) {
                try {
                    const std::size_t size = connection.recv_bytes_into(buffer);
                    messages.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(size));
                } catch (const mproc::BufferTooShort& error) {
                    require(error.message().size() > buffer.size());
                    messages.push_back(error.message());
                }
            } else {
                messages.push_back(connection.recv_bytes(maxlength));
            }
        } catch (const mproc::Closed&) {
            break;
        } catch (const mproc::SystemError& error) {
            require(error.error_number() == EMSGSIZE || error.error_number() == EPROTO);
            require(connection.closed());  // read-only: closed after a bad message, as Python does
            end = error.error_number() == EMSGSIZE ? End::too_long : End::malformed;
            break;
        }
    }
    require(messages == reference.messages);
    // EPROTO covers both a malformed header and a stream cut inside a message.
    const End expected = reference.end == End::truncated ? End::malformed : reference.end;
    require(end == expected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const bool unlimited = (data[0] & 1) != 0;
    const bool through_connection = (data[0] & 2) != 0;
    const std::uint64_t maxlength = unlimited ? framing::kNoMaxLength : std::uint64_t{data[1]} | (std::uint64_t{data[2]} << 8);
    const std::uint8_t seed = data[3];
    const std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 4), size - 4);

    const Reference reference = parse_reference(stream, maxlength);
    check_decoder(stream, maxlength, seed, reference);
    if (through_connection && stream.size() <= 60000)
        check_connection(stream, unlimited ? std::nullopt : std::optional<std::size_t>(maxlength), seed, reference);
    return 0;
}
