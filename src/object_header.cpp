#include "mproc/object_header.hpp"

#include <atomic>
#include <charconv>
#include <cstring>
#include <limits>

#include <unistd.h>

#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "object_header_wait.hpp"

namespace mproc {
namespace {

constexpr std::size_t kStateOffset = offsetof(ObjectHeader, state);

std::string hex(std::uint64_t value) {
    char digits[2 + 16];
    digits[0] = '0';
    digits[1] = 'x';
    auto [end, error] = std::to_chars(digits + 2, digits + sizeof digits, value, 16);
    (void)error;  // 16 hex digits always fit
    return std::string(digits, end);
}

std::string describe_kind(std::uint32_t kind) {
    return "'" + std::string(object_kind_name(static_cast<ObjectKind>(kind))) + "' (" + std::to_string(kind) + ")";
}

[[noreturn]] void throw_invalid(std::string_view object_label, const std::string& cause) {
    throw InvalidObject(std::string(object_label) + ": " + cause);
}

// The state word of a header that starts at `base`; callers have checked alignment and size.
std::atomic_ref<std::uint32_t> state_word(std::byte* base) noexcept {
    return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(base + kStateOffset));
}

// A header at the start of memory can be touched atomically: a whole header, 128-byte aligned.
void require_header_memory(std::span<std::byte> memory, const char* operation) {
    if (memory.size() < kObjectHeaderSize)
        throw ValueError(std::string(operation) + ": " + std::to_string(memory.size()) +
                         " bytes cannot hold the " + std::to_string(kObjectHeaderSize) + "-byte object header");
    if (reinterpret_cast<std::uintptr_t>(memory.data()) % alignof(ObjectHeader) != 0)
        throw ValueError(std::string(operation) + ": memory at " + hex(reinterpret_cast<std::uintptr_t>(memory.data())) +
                         " is not " + std::to_string(alignof(ObjectHeader)) + "-byte aligned");
}

// Moves a placed header from unpublished to `final_state` and wakes every opener waiting on it.
void finish_publication(std::span<std::byte> memory, std::uint32_t final_state, const char* operation) {
    require_header_memory(memory, operation);
    std::atomic_ref<std::uint32_t> state = state_word(memory.data());
    std::uint32_t expected = kObjectUnpublished;
    // release: pairs with the acquire load in await_object_header_until(), so an opener that sees
    // final_state also sees every header field and payload byte written before this store.
    // relaxed on failure: the state is only reported, nothing is read on its strength.
    if (!state.compare_exchange_strong(expected, final_state, std::memory_order_release, std::memory_order_relaxed))
        throw StateError(std::string(operation) + ": the header is in state " + std::to_string(expected) +
                         ", not unpublished (published or abandoned twice?)");
    MPROC_KILL_POINT(segment_create, 5);  // published, the openers asleep on the state word not woken
    detail::futex_wake(reinterpret_cast<const std::uint32_t*>(memory.data() + kStateOffset), detail::kFutexWakeAll);
}

}  // namespace

std::string_view object_kind_name(ObjectKind kind) noexcept {
    switch (kind) {
    case ObjectKind::shared_memory: return "shared memory";
    case ObjectKind::lock: return "lock";
    case ObjectKind::rlock: return "rlock";
    case ObjectKind::semaphore: return "semaphore";
    case ObjectKind::condition: return "condition";
    case ObjectKind::event: return "event";
    case ObjectKind::barrier: return "barrier";
    case ObjectKind::value: return "value";
    case ObjectKind::array: return "array";
    case ObjectKind::queue: return "queue";
    case ObjectKind::pipe: return "pipe";
    }
    return "unknown kind";
}

std::string object_label(ObjectKind kind, std::string_view name) {
    std::string label = std::string(object_kind_name(kind)) + " '";
    // A name comes from the caller or from another process: control characters (a NUL would cut what()
    // short) are shown as \xNN so the message stays one readable line.
    for (const char c : name) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) {
            constexpr char kDigits[] = "0123456789abcdef";
            label += "\\x";
            label += kDigits[byte >> 4];
            label += kDigits[byte & 0xf];
        } else {
            label += c;
        }
    }
    return label + "'";
}

std::uint64_t object_total_size(std::uint64_t payload_size) {
    if (payload_size > std::numeric_limits<std::uint64_t>::max() - kObjectHeaderSize)
        throw ValueError("object size: a payload of " + std::to_string(payload_size) +
                         " bytes plus the object header overflows 64 bits");
    return kObjectHeaderSize + payload_size;
}

void place_object_header(std::span<std::byte> memory, ObjectKind kind, std::uint32_t layout_version,
                         std::uint64_t payload_size) {
    require_header_memory(memory, "place_object_header");
    if (payload_size == 0) throw ValueError("place_object_header: a payload of 0 bytes");
    const std::uint64_t total_size = object_total_size(payload_size);
    if (total_size > memory.size())
        throw ValueError("place_object_header: " + std::to_string(memory.size()) + " bytes cannot hold " +
                         std::to_string(total_size) + " (header and payload)");

    // relaxed: this store publishes nothing; an opener that already maps the memory only learns from it to
    // keep waiting. Written atomically because such an opener may be loading it right now.
    state_word(memory.data()).store(kObjectUnpublished, std::memory_order_relaxed);

    ObjectHeader header{};
    header.magic = kObjectMagic;
    header.kind = static_cast<std::uint32_t>(kind);
    header.layout_version = layout_version;
    header.payload_offset = static_cast<std::uint32_t>(kObjectHeaderSize);
    header.payload_size = payload_size;
    header.total_size = total_size;
    header.creator_pid = static_cast<std::int32_t>(::getpid());
    // Every byte but the state word: openers read these only after the acquire load that sees publication.
    const auto* source = reinterpret_cast<const std::byte*>(&header);
    std::memcpy(memory.data(), source, kStateOffset);
    MPROC_KILL_POINT(segment_create, 2);  // unpublished, the header half written
    const std::size_t after_state = kStateOffset + sizeof(std::uint32_t);
    std::memcpy(memory.data() + after_state, source + after_state, kObjectHeaderSize - after_state);
}

void publish_object_header(std::span<std::byte> memory) {
    finish_publication(memory, kObjectPublished, "publish_object_header");
}

void abandon_object_header(std::span<std::byte> memory) {
    finish_publication(memory, kObjectAbandoned, "abandon_object_header");
}

ObjectHeaderFields validate_object_header(std::span<const std::byte> mapping, std::string_view object_label,
                                          ObjectKind expected_kind, std::uint32_t expected_layout_version) {
    if (mapping.size() < kObjectHeaderSize)
        throw_invalid(object_label, "truncated: " + std::to_string(mapping.size()) + " bytes, less than the " +
                                        std::to_string(kObjectHeaderSize) + "-byte object header");
    // One copy; every check and every returned field comes from it, never from the shared bytes again.
    ObjectHeader header;
    std::memcpy(&header, mapping.data(), kObjectHeaderSize);

    if (header.magic != kObjectMagic)
        throw_invalid(object_label, "wrong magic " + hex(header.magic) + ", expected " + hex(kObjectMagic) +
                                        " (not an mproc object)");
    if (header.state == kObjectAbandoned)
        throw_invalid(object_label, "abandoned: its creator's initialisation failed");
    if (header.state != kObjectPublished)
        throw_invalid(object_label, "not published (state word " + hex(header.state) + ")");
    if (header.payload_offset != kObjectHeaderSize)
        throw_invalid(object_label, "header size " + std::to_string(header.payload_offset) + ", expected " +
                                        std::to_string(kObjectHeaderSize) + " (another header format)");
    if (header.kind != static_cast<std::uint32_t>(expected_kind))
        throw_invalid(object_label, "object kind " + describe_kind(header.kind) + ", expected " +
                                        describe_kind(static_cast<std::uint32_t>(expected_kind)));
    if (header.layout_version != expected_layout_version)
        throw_invalid(object_label, "layout version " + std::to_string(header.layout_version) + ", expected " +
                                        std::to_string(expected_layout_version));
    if (header.payload_size == 0) throw_invalid(object_label, "payload size 0");
    if (header.payload_size > std::numeric_limits<std::uint64_t>::max() - header.payload_offset ||
        header.total_size != header.payload_offset + header.payload_size)
        throw_invalid(object_label, "sizes disagree: total " + std::to_string(header.total_size) +
                                        " bytes, but header " + std::to_string(header.payload_offset) +
                                        " + payload " + std::to_string(header.payload_size));
    if (header.total_size > mapping.size())
        throw_invalid(object_label, "header claims " + std::to_string(header.total_size) + " bytes, the mapping holds " +
                                        std::to_string(mapping.size()));
    if (header.creator_pid <= 0)
        throw_invalid(object_label, "creator pid " + std::to_string(header.creator_pid) + " is not a process id");

    return ObjectHeaderFields{
        .kind = static_cast<ObjectKind>(header.kind),
        .layout_version = header.layout_version,
        .payload_offset = header.payload_offset,
        .payload_size = header.payload_size,
        .total_size = header.total_size,
        .creator_pid = static_cast<pid_t>(header.creator_pid),
    };
}

ObjectHeaderFields detail::await_object_header_until(std::span<std::byte> mapping, std::string_view object_label,
                                                     ObjectKind expected_kind, std::uint32_t expected_layout_version,
                                                     const Deadline& deadline) {
    // Too short to hold a state word: the pure validation reports it without touching anything.
    if (mapping.size() < kObjectHeaderSize)
        return validate_object_header(mapping, object_label, expected_kind, expected_layout_version);
    require_header_memory(mapping, "await_object_header");
    std::atomic_ref<std::uint32_t> state = state_word(mapping.data());
    const auto* futex_word = reinterpret_cast<const std::uint32_t*>(mapping.data() + kStateOffset);
    for (;;) {
        // acquire: pairs with the release in publish_object_header() (and abandon_object_header()), so the
        // fields validated below and the payload the caller reads next are the ones the creator wrote.
        const std::uint32_t observed = state.load(std::memory_order_acquire);
        if (observed == kObjectPublished || observed == kObjectAbandoned)
            return validate_object_header(mapping, object_label, expected_kind, expected_layout_version);
        if (observed != kObjectUnpublished)
            throw_invalid(object_label, "state word " + hex(observed) +
                                            " is none of unpublished, published, abandoned (not an mproc object?)");
        if (deadline.passed())
            throw_invalid(object_label,
                          "not published within " +
                              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(deadline.timeout()).count()) +
                              " ms (its creator died during initialisation, or is still initialising)");
        // The kernel re-checks the word against kObjectUnpublished before sleeping: a publication between
        // the load above and this call makes it return at once instead of being lost.
        const timespec left = deadline.remaining_timespec();
        detail::futex_wait(futex_word, kObjectUnpublished, &left);
    }
}

ObjectHeaderFields await_object_header(std::span<std::byte> mapping, std::string_view object_label,
                                       ObjectKind expected_kind, std::uint32_t expected_layout_version,
                                       std::chrono::nanoseconds publish_timeout) {
    return detail::await_object_header_until(mapping, object_label, expected_kind, expected_layout_version,
                                             detail::Deadline::after(publish_timeout));
}

}  // namespace mproc
