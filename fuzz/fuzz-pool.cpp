// fuzz/fuzz-pool.cpp — what a Pool's parent reads from a worker: the result-frame decoder
// (detail::parse_result_frame, src/pool_frames.hpp) on arbitrary bytes, as a worker whose memory a task
// corrupted could send them.
//
// Properties: the decoder either throws DecodeError or returns a view whose every span lies inside the
// input and whose records, re-encoded with the same helpers the worker uses, give the input back byte for
// byte (so nothing is skipped or read twice), in both the record and the uniform form; it never reads
// outside the input (ASan) and never allocates more than one view entry per 5 input bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "mproc/error.hpp"
#include "pool_frames.hpp"

namespace {

void require(bool property) {
    if (!property) std::abort();
}

bool inside(std::span<const std::byte> input, const void* data, std::size_t size) {
    const auto* begin = reinterpret_cast<const std::byte*>(data);
    return size == 0 || (begin >= input.data() && begin + size <= input.data() + input.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace mproc::detail;
    const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
    ResultFrameView view;
    try {
        view = parse_result_frame(input);
    } catch (const mproc::DecodeError&) {
        return 0;
    }
    require(size >= sizeof(ResultFrameHeader));
    require(view.outcomes.size() <= (size - sizeof(ResultFrameHeader)) / kMinResultRecord);
    ResultFrameHeader header;
    std::memcpy(&header, data, sizeof header);
    // Re-encode what the view says, piece by piece, and compare each piece with the input where it must be.
    std::size_t at = sizeof header;
    const auto expect = [&](std::span<const std::byte> piece) {
        require(piece.size() <= size - at && std::memcmp(data + at, piece.data(), piece.size()) == 0);
        at += piece.size();
    };
    if (view.uniform) {
        require(view.outcomes.empty() && view.count == header.count);
        require(inside(input, view.uniform_results.data(), view.uniform_results.size()));
        require(view.uniform_results.size() == view.stride * view.count);
        const auto stride = static_cast<std::uint32_t>(view.stride);
        expect(std::as_bytes(std::span(&stride, 1)));
        // A stride of 0 (results that encode to nothing) says any count in no bytes: the parent checks the
        // count against the chunk it sent before it looks at a result; here one look is enough.
        const std::size_t looked_at = view.stride == 0 ? std::min<std::size_t>(view.count, 1) : view.count;
        for (std::size_t i = 0; i < looked_at; ++i) expect(view.result_of(i));
        require(at == size);
        return 0;
    }
    std::vector<std::byte> record;
    for (const TaskOutcomeView& outcome : view.outcomes) {
        record.clear();
        if (outcome.status == TaskStatus::ok) {
            require(inside(input, outcome.result.data(), outcome.result.size()));
            record.push_back(std::byte{0});
            append_length_prefixed(record, outcome.result);
        } else {
            require(inside(input, outcome.error_type.data(), outcome.error_type.size()));
            require(inside(input, outcome.error_text.data(), outcome.error_text.size()));
            // The worker cuts type and text before sending; a frame may carry longer ones, which re-encode
            // shorter: compare only frames within the worker's bounds.
            if (outcome.error_type.size() > kMaxErrorTypeBytes || outcome.error_text.size() > kMaxErrorTextBytes)
                return 0;
            append_error_record(record, outcome.error_type, outcome.error_text);
        }
        expect(record);
    }
    require(at == size);
    return 0;
}
