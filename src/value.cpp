// Value and Array: the non-template core both templates are thin over — layout, placement, validation,
// and the segment a handle owns. Array-only pieces live in array.cpp.
//
// The structure: [RawLock or zero bytes (64) | descriptor (64) | data], 128-byte aligned. The descriptor is
// written once, before the structure is shared (init in caller memory, or the SharedMemory initialiser,
// which runs before publication); afterwards it is only read. Validation copies it out once and checks
// the copy, so a participant scribbling over it after validation cannot change the sizes a handle uses.
#include "mproc/value.hpp"

#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "mproc/error.hpp"

namespace mproc::detail {
namespace {

std::string describe(std::string_view label, const char* operation, const std::string& cause) {
    return std::string(label) + ": " + operation + ": " + cause;
}

std::string hex(std::uint64_t value) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
    return text;
}

// "int32", "float64", "untagged", "type id 0x12345".
std::string type_name(std::uint64_t type_id) {
    if (type_id == 0) return "untagged";
    const std::uint64_t type_class = type_id >> 8;
    const std::uint64_t bits = (type_id & 0xff) * 8;
    if (type_id <= 0xffff) {
        switch (type_class) {
        case kTypeClassSigned: return "int" + std::to_string(bits);
        case kTypeClassUnsigned: return "uint" + std::to_string(bits);
        case kTypeClassFloating: return "float" + std::to_string(bits);
        case kTypeClassBool: return "bool";
        case kTypeClassChar: return "char";
        case kTypeClassUnicode: return "char" + std::to_string(bits) + "_t";
        case kTypeClassWide: return "wchar_t";
        default: break;
        }
    }
    return "type id " + hex(type_id);
}

std::string describe_type(std::uint64_t size, std::uint64_t alignment, std::uint64_t type_id) {
    return type_name(type_id) + " (" + std::to_string(size) + " bytes, aligned to " + std::to_string(alignment) +
           ")";
}

std::uint32_t magic_of(ObjectKind kind) {
    return kind == ObjectKind::array ? kSharedArrayMagic : kSharedValueMagic;
}

const char* kind_phrase(std::uint32_t magic) { return magic == kSharedArrayMagic ? "an Array" : "a Value"; }

const char* locking_phrase(Locking locking) {
    return locking == Locking::with_lock ? "with a lock" : "without a lock (unlocked)";
}

void check_kind(ObjectKind kind) {
    if (kind != ObjectKind::value && kind != ObjectKind::array)
        throw ValueError("shared data: kind must be value or array, got " + std::string(object_kind_name(kind)));
}

void check_element_type(ElementType type, std::string_view label, const char* operation) {
    if (type.size == 0 || type.alignment == 0 || !std::has_single_bit(type.alignment) ||
        type.alignment > kSharedDataAlignment || type.size % type.alignment != 0)
        throw ValueError(describe(label, operation,
                                  "element of " + std::to_string(type.size) + " bytes aligned to " +
                                      std::to_string(type.alignment) +
                                      ": the size must be a non-zero multiple of a power-of-two alignment of at "
                                      "most " +
                                      std::to_string(kSharedDataAlignment)));
}

// Bytes for count elements, or nullopt when it overflows.
std::optional<std::uint64_t> bytes_for(std::uint64_t element_size, std::uint64_t count) {
    std::uint64_t data_bytes = 0;
    if (__builtin_mul_overflow(element_size, count, &data_bytes)) return std::nullopt;
    std::uint64_t total = 0;
    if (__builtin_add_overflow(data_bytes, std::uint64_t{kSharedDataOffset}, &total)) return std::nullopt;
    if (total > std::numeric_limits<std::size_t>::max()) return std::nullopt;
    return total;
}

void check_memory(void* memory, std::string_view label, const char* operation) {
    if (memory == nullptr) throw ValueError(describe(label, operation, "null memory"));
    if (reinterpret_cast<std::uintptr_t>(memory) % kSharedDataAlignment != 0)
        throw ValueError(describe(label, operation,
                                  "memory must be " + std::to_string(kSharedDataAlignment) + "-byte aligned"));
}

[[noreturn]] void throw_invalid(std::string_view label, const std::string& cause) {
    throw InvalidObject(std::string(label) + ": " + cause);
}

std::string handle_label(ObjectKind kind, const SharedMemory& segment) {
    if (segment.name().empty()) return "anonymous " + std::string(object_kind_name(kind));
    return object_label(kind, segment.name());
}

}  // namespace

std::size_t shared_data_size(ObjectKind kind, ElementType type, std::size_t count, std::string_view label) {
    check_kind(kind);
    check_element_type(type, label, "size");
    if (kind == ObjectKind::value && count != 1)
        throw ValueError(describe(label, "size", "a Value holds one element, not " + std::to_string(count)));
    const std::optional<std::uint64_t> total = bytes_for(type.size, count);
    if (!total)
        throw ValueError(describe(label, "size",
                                  std::to_string(count) + " elements of " + std::to_string(type.size) +
                                      " bytes overflow the address space"));
    return static_cast<std::size_t>(*total);
}

SharedDataView place_shared_data(void* memory, std::size_t size, ObjectKind kind, ElementType type,
                                 std::size_t count, Locking locking, std::span<const std::byte> initial,
                                 std::string_view label) {
    const std::size_t needed = shared_data_size(kind, type, count, label);
    check_memory(memory, label, "init");
    if (size < needed)
        throw ValueError(describe(label, "init",
                                  std::to_string(size) + " bytes, expected at least " + std::to_string(needed)));
    const std::size_t data_bytes = needed - kSharedDataOffset;
    if (!initial.empty() && initial.size() != data_bytes)
        throw ValueError(describe(label, "init",
                                  "initial contents of " + std::to_string(initial.size()) + " bytes, expected " +
                                      std::to_string(data_bytes)));
    auto* bytes = static_cast<std::byte*>(memory);

    SharedDataLayout layout{};
    layout.descriptor.magic = magic_of(kind);
    layout.descriptor.layout_version = kSharedDataLayoutVersion;
    layout.descriptor.flags = locking == Locking::with_lock ? kSharedDataHasLock : 0;
    layout.descriptor.element_alignment = static_cast<std::uint32_t>(type.alignment);
    layout.descriptor.element_size = type.size;
    layout.descriptor.count = count;
    layout.descriptor.type_id = type.type_id;
    layout.descriptor.data_offset = kSharedDataOffset;
    std::memcpy(bytes, &layout, sizeof layout);
    RawLock* lock = locking == Locking::with_lock ? &RawLock::init(bytes) : nullptr;

    std::byte* data = bytes + kSharedDataOffset;
    if (initial.empty())
        std::memset(data, 0, data_bytes);
    else
        std::memcpy(data, initial.data(), data_bytes);
    return SharedDataView{data, count, lock};
}

SharedDataView attach_shared_data(void* memory, std::size_t size, ObjectKind kind, ElementType type,
                                  std::optional<std::size_t> expected_count, Locking locking, std::string_view label) {
    check_kind(kind);
    check_element_type(type, label, "attach");
    check_memory(memory, label, "attach");
    if (kind == ObjectKind::value) expected_count = 1;
    if (size < kSharedDataOffset)
        throw_invalid(label, std::to_string(size) + " bytes, expected at least " + std::to_string(kSharedDataOffset));
    auto* bytes = static_cast<std::byte*>(memory);

    SharedDataDescriptor found;
    std::memcpy(&found, bytes + offsetof(SharedDataLayout, descriptor), sizeof found);

    const std::uint32_t expected_magic = magic_of(kind);
    if (found.magic != expected_magic) {
        const bool other_kind = found.magic == kSharedValueMagic || found.magic == kSharedArrayMagic;
        throw_invalid(label, other_kind ? std::string(kind_phrase(found.magic)) + ", not " + kind_phrase(expected_magic)
                                        : "magic " + hex(found.magic) + ", expected " + hex(expected_magic));
    }
    if (found.layout_version != kSharedDataLayoutVersion)
        throw_invalid(label, "layout version " + std::to_string(found.layout_version) + ", expected " +
                                 std::to_string(kSharedDataLayoutVersion));
    if ((found.flags & ~kSharedDataHasLock) != 0)
        throw_invalid(label, "flags " + hex(found.flags) + ", expected only " + hex(kSharedDataHasLock));
    const Locking found_locking = (found.flags & kSharedDataHasLock) != 0 ? Locking::with_lock : Locking::none;
    if (found_locking != locking)
        throw_invalid(label, std::string("made ") + locking_phrase(found_locking) + ", opened as " +
                                 kind_phrase(expected_magic) + " " + locking_phrase(locking));
    if (found.element_size != type.size || found.element_alignment != type.alignment || found.type_id != type.type_id)
        throw_invalid(label, "holds " + describe_type(found.element_size, found.element_alignment, found.type_id) +
                                 ", expected " + describe_type(type.size, type.alignment, type.type_id));
    if (found.data_offset != kSharedDataOffset)
        throw_invalid(label, "data offset " + std::to_string(found.data_offset) + ", expected " +
                                 std::to_string(kSharedDataOffset));
    if (expected_count && found.count != *expected_count)
        throw_invalid(label, std::to_string(found.count) + (found.count == 1 ? " element" : " elements") +
                                 ", expected " + std::to_string(*expected_count));
    const std::optional<std::uint64_t> needed = bytes_for(found.element_size, found.count);
    if (!needed || *needed > size)
        throw_invalid(label, std::to_string(found.count) + " elements of " + std::to_string(found.element_size) +
                                 " bytes need " + (needed ? std::to_string(*needed) : std::string("more than 2^64")) +
                                 " bytes, only " + std::to_string(size) + " are there");

    RawLock* lock = nullptr;
    if (found_locking == Locking::with_lock) {
        // The first 64 bytes are inside the checked size and 128-byte aligned: validate them as a lock with
        // this object's label rather than RawLock::attach's generic one.
        lock = std::launder(reinterpret_cast<RawLock*>(bytes));
        lock->validate(std::string(label) + " lock");
    }
    return SharedDataView{bytes + kSharedDataOffset, static_cast<std::size_t>(found.count), lock};
}

void throw_moved_from(ObjectKind kind, const char* operation) {
    throw StateError(std::string(object_kind_name(kind)) + ": " + operation + ": moved-from handle");
}

// SharedDataSegment ----------------------------------------------------------------------------------------

SharedDataSegment::SharedDataSegment(SharedMemory segment, ObjectKind kind, ElementType type,
                                     std::optional<std::size_t> expected_count, Locking locking)
    : segment_(std::move(segment)), kind_(kind), label_(handle_label(kind, segment_)) {
    const std::span<std::byte> payload = segment_.bytes();
    view_ = attach_shared_data(payload.data(), payload.size(), kind, type, expected_count, locking, label_);
}

SharedDataSegment SharedDataSegment::anonymous(ObjectKind kind, ElementType type, std::size_t count, Locking locking,
                                               std::span<const std::byte> initial) {
    const std::string label = "anonymous " + std::string(object_kind_name(kind));
    const std::size_t size = shared_data_size(kind, type, count, label);
    return SharedDataSegment(SharedMemory::anonymous_object(kind, current_layout_version(kind), size,
                                                            [&](std::span<std::byte> payload) {
                                                                place_shared_data(payload.data(), payload.size(),
                                                                                  kind, type, count, locking,
                                                                                  initial, label);
                                                            }),
                             kind, type, count, locking);
}

SharedDataSegment SharedDataSegment::create(std::string_view name, ObjectKind kind, ElementType type,
                                            std::size_t count, Locking locking, std::span<const std::byte> initial,
                                            mode_t mode) {
    const std::string label = object_label(kind, name);
    // Checked before the name is created, so that a bad size leaves no name behind.
    const std::size_t size = shared_data_size(kind, type, count, label);
    if (!initial.empty() && initial.size() != size - kSharedDataOffset)
        throw ValueError(describe(label, "create",
                                  "initial contents of " + std::to_string(initial.size()) + " bytes, expected " +
                                      std::to_string(size - kSharedDataOffset)));
    return SharedDataSegment(SharedMemory::create_object(name, kind, current_layout_version(kind), size, mode,
                                                         [&](std::span<std::byte> payload) {
                                                             place_shared_data(payload.data(), payload.size(), kind,
                                                                               type, count, locking, initial, label);
                                                         }),
                             kind, type, count, locking);
}

SharedDataSegment SharedDataSegment::open(std::string_view name, ObjectKind kind, ElementType type,
                                          std::optional<std::size_t> expected_count, Locking locking,
                                          std::chrono::milliseconds publish_timeout) {
    check_kind(kind);
    return SharedDataSegment(SharedMemory::open_object(name, kind, current_layout_version(kind), publish_timeout),
                             kind, type, expected_count, locking);
}

SharedDataSegment SharedDataSegment::from_fd(int fd, ObjectKind kind, ElementType type,
                                             std::optional<std::size_t> expected_count, Locking locking) {
    check_kind(kind);
    return SharedDataSegment(SharedMemory::attach_object(fd, kind, current_layout_version(kind)), kind, type,
                             expected_count, locking);
}

SharedDataSegment::SharedDataSegment(SharedDataSegment&& other) noexcept
    : segment_(std::move(other.segment_)),
      view_(std::exchange(other.view_, SharedDataView{})),
      kind_(other.kind_),
      label_(std::move(other.label_)) {}

SharedDataSegment& SharedDataSegment::operator=(SharedDataSegment&& other) noexcept {
    if (this != &other) {
        segment_ = std::move(other.segment_);
        view_ = std::exchange(other.view_, SharedDataView{});
        kind_ = other.kind_;
        label_ = std::move(other.label_);
    }
    return *this;
}

SharedDataSegment::~SharedDataSegment() = default;

void SharedDataSegment::unlink() {
    if (view_.data == nullptr) throw_moved_from(kind_, "unlink");
    segment_.unlink();
}

}  // namespace mproc::detail
