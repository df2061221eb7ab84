// src/codec.cpp — the out-of-line parts of mproc/codec.hpp: lengths, depth limits and error messages,
// and the single place where encoded queues get their byte queue.
#include "mproc/codec.hpp"

#include <string>

#include "mproc/error.hpp"
#include "mproc/encoded_queue.hpp"
#include "mproc/queue.hpp"

namespace mproc {

void CodecWriter::enter(std::string_view type) {
    if (++depth_ > kCodecMaxDepth) {
        --depth_;
        throw ValueError("mproc::encode: " + std::string(type) + " nested deeper than " +
                         std::to_string(kCodecMaxDepth) + " levels");
    }
}

void CodecReader::enter(std::string_view type) {
    if (depth_ + 1 > kCodecMaxDepth)
        fail(type, at_, "at most " + std::to_string(kCodecMaxDepth) + " levels of nesting");
    ++depth_;
}

std::uint64_t CodecReader::length(std::string_view type) {
    const std::size_t start = at_;
    std::uint64_t value = 0;
    for (unsigned shift = 0;; shift += 7) {
        if (at_ == bytes_.size())
            fail(type, start, "a length (LEB128), the message ends after " + std::to_string(at_ - start) + " of its bytes");
        const auto byte = std::to_integer<std::uint8_t>(bytes_[at_++]);
        const std::uint64_t bits = byte & 0x7f;
        // The tenth byte may carry only the 64th bit.
        if (shift == 63 && bits > 1) fail(type, start, "a length (LEB128) of at most 64 bits");
        value |= bits << shift;
        if ((byte & 0x80) == 0) {
            // The shortest form only: a last byte of zero after others means padding.
            if (byte == 0 && shift != 0) fail(type, start, "a length (LEB128) in its shortest form");
            return value;
        }
        if (shift == 63) fail(type, start, "a length (LEB128) of at most 10 bytes");
    }
}

std::size_t CodecReader::count(std::string_view type, std::size_t min_element_size) {
    const std::size_t start = at_;
    const std::uint64_t claimed = length(type);
    const std::size_t per_element = min_element_size == 0 ? 1 : min_element_size;
    if (claimed > remaining() / per_element)
        fail(type, start, "at most " + std::to_string(remaining() / per_element) + " elements (" +
                              std::to_string(remaining()) + " bytes left, " + std::to_string(per_element) +
                              " or more each), got a length of " + std::to_string(claimed));
    return static_cast<std::size_t>(claimed);
}

void CodecReader::fail(std::string_view type, std::size_t offset, std::string expected) const {
    throw DecodeError(std::string(type), offset, std::move(expected));
}

void CodecReader::fail_short(std::string_view type, std::size_t size, std::string_view what) const {
    fail(type, at_, std::to_string(size) + " bytes (" + std::string(what) + "), " + std::to_string(remaining()) +
                        " left");
}

namespace detail {

ByteQueue encoded_byte_queue(const EncodedQueueSpec& spec) {
    switch (spec.how) {
        case EncodedQueueSpec::How::anonymous:
            return ByteQueue(spec.max_message, spec.capacity, spec.kind);
        case EncodedQueueSpec::How::create:
            return ByteQueue::create(spec.name, spec.max_message, spec.capacity, spec.kind, spec.mode);
        case EncodedQueueSpec::How::open:
            return ByteQueue::open(spec.name, spec.publish_timeout);
    }
    throw ValueError("encoded queue: unknown way to make it");
}

}  // namespace detail

namespace codec_detail {

std::vector<std::byte>& scratch_buffer() noexcept {
    thread_local std::vector<std::byte> buffer;
    return buffer;
}

}  // namespace codec_detail

}  // namespace mproc
