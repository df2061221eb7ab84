// mproc/segment_handle.hpp — an implementation detail, not an API: installed only because Lock, RLock,
// Semaphore, BoundedSemaphore and Event hold one as their private member. Do not use it directly; it may
// change in any release.
//
// Defines: detail::SegmentHandle<Raw, kKind, kHandleName>, what every handle that owns a SharedMemory
// object segment with one Raw structure in its payload keeps (the segment, a pointer to the Raw, the label
// its messages start with) and the code they would otherwise each repeat: the four ways to get the segment (new anonymous, new named, existing named, another handle's fd),
// validation on attach, moves that leave a moved-from handle, and checked(), which turns any use of a
// moved-from handle into StateError("<handle name>: <operation>: moved-from handle").
//
// Invariant: raw_ points into segment_'s payload, or is null exactly when the handle was moved from.
#pragma once

#include <chrono>
#include <cstddef>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <sys/types.h>

#include "mproc/error.hpp"
#include "mproc/object_header.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc::detail {

// Raw: the structure in the payload (its kSize is the payload size). kKind: the segment's ObjectKind.
// kHandleName: how moved-from errors name the handle ("lock", "bounded semaphore", ...).
template <class Raw, ObjectKind kKind, const char* kHandleName>
class SegmentHandle {
public:
    // How the owning handle names a segment in its messages ("anonymous lock", "lock 'jobs'").
    using LabelOf = std::string (*)(const SharedMemory& segment);
    // Checks that the payload holds a valid Raw; throws InvalidObject naming `label` when it does not.
    using Validate = void (*)(std::span<std::byte> payload, std::string_view label);

    // The segments the handle's factories start from: a new anonymous one, a new named one (exclusive
    // create), or an existing named one.
    static SharedMemory new_anonymous_segment(const SharedMemory::Initialiser& initialise) {
        return SharedMemory::anonymous_object(kKind, current_layout_version(kKind), Raw::kSize, initialise);
    }
    static SharedMemory new_named_segment(std::string_view name, mode_t mode,
                                          const SharedMemory::Initialiser& initialise) {
        return SharedMemory::create_object(name, kKind, current_layout_version(kKind), Raw::kSize, mode, initialise);
    }
    static SharedMemory existing_segment(std::string_view name, std::chrono::milliseconds publish_timeout) {
        return SharedMemory::open_object(name, kKind, current_layout_version(kKind), publish_timeout);
    }
    // The segment behind another handle's fd() (duplicated; the caller keeps fd), validated as a named open.
    static SharedMemory attached_segment(int fd) {
        return SharedMemory::attach_object(fd, kKind, current_layout_version(kKind));
    }

    // Takes the segment, labels it, validates its payload (the exception propagates and the segment is
    // unmapped), then points at the Raw in it.
    SegmentHandle(SharedMemory segment, LabelOf label_of, Validate validate)
        : segment_(std::move(segment)), label_(label_of(segment_)) {
        const std::span<std::byte> payload = segment_.bytes();
        validate(payload, label_);
        raw_ = std::launder(reinterpret_cast<Raw*>(payload.data()));
    }

    // A moved-from handle keeps no segment and a null raw_, so that checked() reports it.
    SegmentHandle(SegmentHandle&& other) noexcept
        : segment_(std::move(other.segment_)),
          raw_(std::exchange(other.raw_, nullptr)),
          label_(std::move(other.label_)) {}
    SegmentHandle& operator=(SegmentHandle&& other) noexcept {
        if (this != &other) {
            segment_ = std::move(other.segment_);
            raw_ = std::exchange(other.raw_, nullptr);
            label_ = std::move(other.label_);
        }
        return *this;
    }
    SegmentHandle(const SegmentHandle&) = delete;
    SegmentHandle& operator=(const SegmentHandle&) = delete;
    ~SegmentHandle() = default;

    // The Raw, for `operation`; StateError when the handle was moved from.
    Raw& checked(const char* operation) const {
        if (raw_ == nullptr) throw StateError(std::string(kHandleName) + ": " + operation + ": moved-from handle");
        return *raw_;
    }

    // Removes the segment's name (SharedMemory::unlink); StateError when the handle was moved from.
    void unlink() {
        checked("unlink");
        segment_.unlink();
    }

    const SharedMemory& segment() const noexcept { return segment_; }
    // The memfd of an anonymous or attached segment; -1 for a named one or a moved-from handle.
    int fd() const noexcept { return segment_.fd(); }
    const std::string& label() const noexcept { return label_; }

private:
    SharedMemory segment_;
    Raw* raw_ = nullptr;
    std::string label_;
};

}  // namespace mproc::detail
