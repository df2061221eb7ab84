// tools/inspect.hpp — the reading path of the `mproc` tool: what a named object's bytes say, decided
// from a private copy of them (a snapshot), never from the live mapping.
//
// Guarantees: inspect_snapshot() is a pure function of the bytes it is given (the fuzz target
// fuzz/fuzz-tool.cpp feeds it arbitrary ones): it reads only inside the span, validates the object header
// with the library's validate_object_header() and each kind's payload with that kind's own attach()
// validator (which run on the copy, so nothing they might touch is shared), and reports a corrupt object as
// invalid with the validator's message instead of throwing. It never takes a lock, never sleeps, never
// writes a byte of any object. Liveness (creator, lock owner) is looked up by the caller (tools/mproc.cpp)
// and filled in afterwards.
// Cost: one copy of the object (the tool reads at most kMaxSnapshotBytes) and a few compares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mproc::tool {

// Objects larger than this are read only up to it: enough for every kind's control block; a queue or
// pipe whose rings go beyond it shows its header and is reported with the reason.
inline constexpr std::size_t kMaxSnapshotBytes = std::size_t{64} << 20;

// One field of the per-kind state: its JSON name and its value, already JSON-encoded.
struct Field {
    std::string name;
    std::string json;
};

// A thread id found in the object (a lock owner, a waiter), whose liveness the caller looks up.
struct ThreadRef {
    std::string field;  // the Field whose liveness this is ("owner_alive")
    std::uint32_t tid;
};

struct ObjectReport {
    std::string name;                   // as in /dev/shm, with the leading '/'
    std::uint64_t file_size = 0;
    bool is_mproc = false;              // starts with the mproc magic; false: not an mproc object, skipped
    bool valid = false;
    std::string reason;                 // why not valid
    std::string kind;                   // object_kind_name, or "" when unknown
    std::uint32_t layout_version = 0;
    std::uint64_t payload_size = 0;
    std::int32_t creator_pid = 0;
    std::vector<Field> state;           // per kind, in a fixed order (docs/operators.md)
    std::vector<ThreadRef> threads;     // thread ids to look up; their fields are appended by the caller
};

// What `bytes` (the first bytes of an object file of file_size bytes, at most kMaxSnapshotBytes) say.
// `bytes` must be 128-byte aligned (the validators check alignment the way a mapping has it).
ObjectReport inspect_snapshot(std::span<std::byte> bytes, std::uint64_t file_size, const std::string& name);

// JSON string literal of `text` (quotes included), with control characters and non-UTF-8 bytes escaped.
std::string json_string(std::string_view text);

}  // namespace mproc::tool
