// mproc/object_header.hpp — the header every object mproc places in shared memory starts with, and the
// raw layer that places, publishes and validates it in memory the caller owns.
//
// Defines: ObjectKind, current_layout_version(), ObjectHeader (the 128-byte layout), ObjectHeaderFields
// (a validated copy), place_object_header(), publish_object_header(), abandon_object_header(),
// validate_object_header(), await_object_header().
//
// Layout: [ObjectHeader: 128 bytes | payload]. The payload starts 128 bytes after the header, on its own
// 128-byte boundary when the header is 128-aligned (every mapping is page-aligned). The header holds
// fixed-width integers only, no pointers: each process maps the object at its own address.
//
// Publication protocol (the handshake SharedMemory implements, and the one the spin model checks):
//   creator: place_object_header()  (state = unpublished, then every other field)
//            initialise the payload
//            publish_object_header() (state = published, release; FUTEX_WAKE all, shared futex)
//   opener:  load state (acquire) until published, sleeping in FUTEX_WAIT on the state word while it is
//            unpublished, up to a deadline; then validate_object_header() and use only the copy it returns.
// The release store of `published` pairs with the opener's acquire load, so every header field and every
// payload byte the creator wrote before publishing is visible to an opener that saw `published`. After
// publication the header is never written again.
//
// Guarantees
// - validate_object_header() is a pure function of the bytes it is given: it reads only inside the span
//   (a span shorter than the header is reported, not read past), copies the header out once, and checks
//   the copy. Callers then use only the returned fields, never the shared bytes again, so a participant
//   that scribbles over the header after validation cannot make a validated size lie.
// - Every failure is an InvalidObject whose message names the object (the label the caller passes, such as
//   "queue '/jobs'") and what is wrong, with the value found and the value expected.
// - await_object_header() returns or throws by its deadline: a creator that died before publishing leaves
//   its openers with InvalidObject("... not published within N ms ..."), never a hang.
// Costs: validation is a 128-byte copy and a few compares. Waiting costs one FUTEX_WAIT per wake-up; a
// published object costs one acquire load. Publishing costs one FUTEX_WAKE system call.
// Misuse: placing or publishing in memory that is not 128-byte aligned or is too small throws ValueError.
// Writing into the header of a published object is undefined (openers may see it half-written; they will
// not crash, but may reject the object).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/export.hpp"

namespace mproc {

// What an object in shared memory is. Zero is never a kind, so zero-filled memory is never mistaken for an
// object. Values are part of the shared layout: never renumber, only append.
enum class ObjectKind : std::uint32_t {
    shared_memory = 1,
    lock = 2,
    rlock = 3,
    semaphore = 4,
    condition = 5,
    event = 6,
    barrier = 7,
    value = 8,
    array = 9,
    queue = 10,
    pipe = 11,
};

inline constexpr ObjectKind kAllObjectKinds[] = {
    ObjectKind::shared_memory, ObjectKind::lock,  ObjectKind::rlock,   ObjectKind::semaphore,
    ObjectKind::condition,     ObjectKind::event, ObjectKind::barrier, ObjectKind::value,
    ObjectKind::array,         ObjectKind::queue, ObjectKind::pipe,
};

// The payload layout each kind is built with now. A primitive bumps its number whenever the layout of its
// payload changes, so that a process built against the old layout refuses the new object instead of
// misreading it. Version 1 of shared_memory: the payload is the user's bytes, nothing else.
constexpr std::uint32_t current_layout_version(ObjectKind kind) noexcept {
    switch (kind) {
    case ObjectKind::shared_memory: return 1;
    case ObjectKind::lock: return 1;
    case ObjectKind::rlock: return 1;
    case ObjectKind::semaphore: return 1;
    case ObjectKind::condition: return 1;
    case ObjectKind::event: return 1;
    case ObjectKind::barrier: return 1;
    case ObjectKind::value: return 1;
    case ObjectKind::array: return 1;
    case ObjectKind::queue: return 1;
    case ObjectKind::pipe: return 1;
    }
    return 0;
}

// "shared memory", "lock", ...; "unknown kind" for a value outside the enum.
MPROC_API std::string_view object_kind_name(ObjectKind kind) noexcept;

// How messages name an object: "queue '/jobs'"; control characters in the name appear as \xNN.
MPROC_API std::string object_label(ObjectKind kind, std::string_view name);

// "MPROCOB1" in memory order on a little-endian machine; a new header format would take a new magic.
inline constexpr std::uint64_t kObjectMagic = 0x31424f434f52504dULL;

// Values of ObjectHeader::state, the futex word openers wait on.
inline constexpr std::uint32_t kObjectUnpublished = 0;  // zero: what a freshly sized file holds
inline constexpr std::uint32_t kObjectPublished = 1;
inline constexpr std::uint32_t kObjectAbandoned = 2;  // the creator's initialiser threw; never becomes usable

struct alignas(128) ObjectHeader {
    std::uint64_t magic;           // kObjectMagic
    std::uint32_t state;           // kObject*; accessed only through std::atomic_ref (futex word)
    std::uint32_t kind;            // an ObjectKind
    std::uint32_t layout_version;  // current_layout_version(kind) of the creator
    std::uint32_t payload_offset;  // == sizeof(ObjectHeader): where the payload starts
    std::uint64_t payload_size;    // bytes of payload
    std::uint64_t total_size;      // payload_offset + payload_size: bytes the object occupies
    std::int32_t creator_pid;      // for diagnostics only: pids are reused
    std::uint32_t reserved_flags;  // zero; ignored by this format
    std::uint8_t reserved[80];     // zero; ignored by this format
};

static_assert(sizeof(ObjectHeader) == 128, "the payload must start on its own 128-byte boundary");
static_assert(alignof(ObjectHeader) == 128, "the header owns its two cache lines; nothing shares them");
static_assert(std::is_standard_layout_v<ObjectHeader> && std::is_trivially_copyable_v<ObjectHeader>,
              "the header is shared between processes built separately: plain bytes only");
static_assert(offsetof(ObjectHeader, state) % alignof(std::uint32_t) == 0, "the futex word must be aligned");

inline constexpr std::size_t kObjectHeaderSize = sizeof(ObjectHeader);

// A validated copy of a header: everything an opener may rely on.
struct ObjectHeaderFields {
    ObjectKind kind;
    std::uint32_t layout_version;
    std::uint64_t payload_offset;
    std::uint64_t payload_size;
    std::uint64_t total_size;
    pid_t creator_pid;
};

// The bytes an object with payload_size bytes of payload occupies; ValueError when that overflows.
MPROC_API std::uint64_t object_total_size(std::uint64_t payload_size);

// Writes an unpublished header for `kind` at the start of memory. memory must be 128-byte aligned and hold
// at least object_total_size(payload_size) bytes (ValueError otherwise). Other processes may already map
// memory: the state word is written atomically, the other fields are only read after publication.
MPROC_API
void place_object_header(std::span<std::byte> memory, ObjectKind kind, std::uint32_t layout_version,
                         std::uint64_t payload_size);

// Makes a placed header visible: store state = published (release) and wake every waiting opener.
MPROC_API void publish_object_header(std::span<std::byte> memory);

// Marks a placed, unpublished header as never to be published, waking every waiting opener so that it
// fails at once instead of at its deadline.
MPROC_API void abandon_object_header(std::span<std::byte> memory);

// Checks a header found in `mapping` (the whole mapping of the object, or whatever bytes are at hand):
// published, magic, payload offset, kind, layout version, sizes that agree with each other and fit in
// `mapping`. Throws InvalidObject naming `object_label`. Pure: reads nothing outside mapping, no alignment
// needed. To be called on shared memory only after an acquire load saw kObjectPublished (as
// await_object_header does).
MPROC_API
ObjectHeaderFields validate_object_header(std::span<const std::byte> mapping, std::string_view object_label,
                                          ObjectKind expected_kind, std::uint32_t expected_layout_version);

// The opener's half of the protocol over a mapping the caller holds: waits (FUTEX_WAIT, CLOCK_MONOTONIC)
// until the header is published or publish_timeout passes, then validates. A timeout of zero or less checks
// once without sleeping. mapping must be 128-byte aligned when it holds a whole header (ValueError).
MPROC_API
ObjectHeaderFields await_object_header(std::span<std::byte> mapping, std::string_view object_label,
                                       ObjectKind expected_kind, std::uint32_t expected_layout_version,
                                       std::chrono::nanoseconds publish_timeout);

}  // namespace mproc
