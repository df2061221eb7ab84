// src/pool_frames.hpp — the frames a Pool and its workers exchange (private; fuzz/fuzz-pool.cpp decodes
// result frames through the same functions the parent uses).
//
// Parent → worker (task frame): TaskFrameHeader, then `count` records {u32 length, length bytes of encoded
// arguments}; or, with flag kUniform (every task's arguments have the same length, as for any trivially
// copyable argument type), {u32 stride} and count × stride bytes back to back. kind exit carries no
// records: the worker leaves.
// Worker → parent (result frame): ResultFrameHeader, then `count` records {u8 status, u32 length, length
// bytes}: status ok → the encoded result; status error → {u32 type length, type name, what()} of the
// exception the task threw; or, with flag kUniform (every task succeeded and every result has the same
// length), {u32 stride} and count × stride bytes. kind init_failed: one error record, the initializer's
// exception.
// The uniform forms cut per-task work on both sides to a copy: map of x -> x + 1 spends its time there.
// All integers are little-endian host order (parent and worker are the same program on the same machine).
//
// Trust: the parent trusts what it sends (its own memory) but not what a worker sends back: a task may
// have corrupted its worker's memory before the worker wrote its frame. parse_result_frame() is a pure
// function over those bytes that bounds every length by the bytes present and throws DecodeError otherwise;
// the parent then checks chunk id and count against what it sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mproc::detail {

inline constexpr std::uint32_t kTaskFrameMagic = 0x4b54504d;    // "MPTK"
inline constexpr std::uint32_t kResultFrameMagic = 0x5352504d;  // "MPRS"

enum class TaskFrameKind : std::uint32_t { run = 1, exit = 2 };
enum class ResultFrameKind : std::uint32_t { results = 1, init_failed = 2 };
enum class TaskStatus : std::uint8_t { ok = 0, error = 1 };
inline constexpr std::uint32_t kUniform = 1;

struct TaskFrameHeader {
    std::uint32_t magic;
    std::uint32_t kind;      // TaskFrameKind
    std::uint64_t chunk_id;
    std::uint64_t invoker;   // address of the TaskInvoker instantiation for the function's signature
    std::uint64_t function;  // address of the user's function
    std::uint32_t count;     // argument records that follow
    std::uint32_t flags;     // kUniform
};
static_assert(sizeof(TaskFrameHeader) == 40 && std::is_standard_layout_v<TaskFrameHeader>);

struct ResultFrameHeader {
    std::uint32_t magic;
    std::uint32_t kind;  // ResultFrameKind
    std::uint64_t chunk_id;
    std::uint32_t count;  // result records that follow
    std::uint32_t flags;  // kUniform
};
static_assert(sizeof(ResultFrameHeader) == 24 && std::is_standard_layout_v<ResultFrameHeader>);

// The smallest result record: a status byte and a length.
inline constexpr std::size_t kMinResultRecord = 5;
// An exception's type name and what() are cut to these many bytes before they are sent.
inline constexpr std::size_t kMaxErrorTypeBytes = 256;
inline constexpr std::size_t kMaxErrorTextBytes = 16384;

// One task's outcome as a worker reported it; the spans point into the frame.
struct TaskOutcomeView {
    TaskStatus status;
    std::span<const std::byte> result;  // status ok: the encoded result
    std::string_view error_type;        // status error
    std::string_view error_text;
};

struct ResultFrameView {
    ResultFrameKind kind;
    std::uint64_t chunk_id;
    std::uint32_t count = 0;
    // Uniform frames: every outcome is ok, result i is uniform_results[i * stride, (i + 1) * stride).
    bool uniform = false;
    std::size_t stride = 0;
    std::span<const std::byte> uniform_results;
    std::vector<TaskOutcomeView> outcomes;  // record frames only

    std::span<const std::byte> result_of(std::size_t i) const {
        return uniform ? uniform_results.subspan(i * stride, stride) : outcomes[i].result;
    }
    bool ok(std::size_t i) const { return uniform || outcomes[i].status == TaskStatus::ok; }
};

// Throws DecodeError for anything that is not a well-formed result frame.
ResultFrameView parse_result_frame(std::span<const std::byte> frame);

// Appends one error record (status error) to a result frame being built.
void append_error_record(std::vector<std::byte>& frame, std::string_view type, std::string_view text);
// Appends a u32 length followed by bytes.
void append_length_prefixed(std::vector<std::byte>& frame, std::span<const std::byte> bytes);

}  // namespace mproc::detail
