#include "framing.hpp"

#include <algorithm>
#include <cstring>

namespace mproc::detail::framing {

namespace {

std::uint64_t load_big_endian(const std::byte* bytes, std::size_t count) noexcept {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < count; ++i) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    return value;
}

void store_big_endian(std::uint64_t value, std::byte* bytes, std::size_t count) noexcept {
    for (std::size_t i = 0; i < count; ++i) bytes[count - 1 - i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
}

}  // namespace

EncodedHeader encode_header(std::uint64_t message_size) noexcept {
    EncodedHeader header;
    if (message_size < kLongFormThreshold) {
        store_big_endian(message_size, header.bytes.data(), kShortHeaderSize);
        header.size = kShortHeaderSize;
    } else {
        store_big_endian(0xffffffffu, header.bytes.data(), kShortHeaderSize);
        store_big_endian(message_size, header.bytes.data() + kShortHeaderSize, 8);
        header.size = kLongHeaderSize;
    }
    return header;
}

HeaderParse parse_header(std::span<const std::byte> bytes) noexcept {
    HeaderParse parsed;
    if (bytes.size() < kShortHeaderSize) return parsed;
    const auto short_length = static_cast<std::uint32_t>(load_big_endian(bytes.data(), kShortHeaderSize));
    if (short_length < kLongFormThreshold) {
        parsed.status = HeaderStatus::complete;
        parsed.message_size = short_length;
        return parsed;
    }
    if (short_length != 0xffffffffu) {
        parsed.status = HeaderStatus::malformed;
        return parsed;
    }
    parsed.header_size = kLongHeaderSize;
    if (bytes.size() < kLongHeaderSize) return parsed;
    parsed.message_size = load_big_endian(bytes.data() + kShortHeaderSize, 8);
    parsed.status = parsed.message_size > kMaxMessageSize ? HeaderStatus::malformed : HeaderStatus::complete;
    return parsed;
}

std::size_t next_body_capacity(std::size_t filled, std::uint64_t total) noexcept {
    const std::uint64_t grown = std::uint64_t{filled} + std::max<std::uint64_t>(filled, kGrowthStep);
    return static_cast<std::size_t>(std::min(grown, total));
}

void FrameDecoder::reset(std::uint64_t maxlength) noexcept {
    maxlength_ = maxlength;
    state_ = State::header;
    error_ = DecodeError::none;
    header_filled_ = 0;
    message_size_ = 0;
    body_.clear();
    body_filled_ = 0;
}

void FrameDecoder::finish_header(const HeaderParse& parsed) {
    if (parsed.status == HeaderStatus::malformed) {
        state_ = State::failed;
        error_ = DecodeError::malformed_header;
        return;
    }
    message_size_ = parsed.message_size;
    if (message_size_ > maxlength_) {
        state_ = State::failed;
        error_ = DecodeError::too_long;
        return;
    }
    state_ = message_size_ == 0 ? State::complete : State::body;
}

std::size_t FrameDecoder::feed(std::span<const std::byte> input, bool header_only) {
    std::size_t consumed = 0;
    while (consumed < input.size()) {
        if (state_ == State::header) {
            // Take only what the header still lacks: the bytes after it belong to the body or the next message.
            HeaderParse parsed = parse_header({header_.data(), header_filled_});
            const std::size_t wanted = parsed.header_size - header_filled_;
            const std::size_t taken = std::min(wanted, input.size() - consumed);
            std::memcpy(header_.data() + header_filled_, input.data() + consumed, taken);
            header_filled_ += taken;
            consumed += taken;
            parsed = parse_header({header_.data(), header_filled_});
            if (parsed.status != HeaderStatus::incomplete) finish_header(parsed);
        } else if (state_ == State::body && !header_only) {
            const std::span<std::byte> space = body_space();
            const std::size_t taken = std::min(space.size(), input.size() - consumed);
            std::memcpy(space.data(), input.data() + consumed, taken);
            commit(taken);
            consumed += taken;
        } else {
            break;
        }
    }
    return consumed;
}

std::span<std::byte> FrameDecoder::body_space() {
    if (state_ != State::body) return {};
    if (body_filled_ == body_.size()) body_.resize(next_body_capacity(body_filled_, message_size_));
    return std::span<std::byte>(body_).subspan(body_filled_);
}

void FrameDecoder::commit(std::size_t count) noexcept {
    body_filled_ += count;
    if (state_ == State::body && body_filled_ == message_size_) state_ = State::complete;
}

std::vector<std::byte> FrameDecoder::take_message() {
    std::vector<std::byte> message = std::move(body_);
    message.resize(body_filled_);
    reset(maxlength_);
    return message;
}

}  // namespace mproc::detail::framing
