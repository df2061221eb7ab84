// mproc/array.hpp — Python's multiprocessing.Array (and RawArray) for C++: a fixed number of trivially
// copyable T in shared memory, with an optional robust Lock beside them.
//
// Defines: RawArray<T> (a view over the structure placed in memory the caller owns), Array<T> (a handle
// owning the shared memory it lives in: anonymous, or named with ObjectKind::array), UnlockedArray<T>
// (Python's RawArray: Array<T, Locking::none>). The layout, the type check and the Locking choice are
// those of value.hpp, with count elements instead of one: [lock (64) | descriptor (64) | T[count]], the
// first element 128 bytes after the lock word, on a 128-byte boundary, the others packed after it.
//
// Guarantees
// - operator[] returns a reference into shared memory, unchecked and unsynchronised, as Python's
//   indexing of a RawArray: the caller locks get_lock() around accesses that race (Python's Array takes
//   its lock per item access; see value.hpp for why mproc's handles do not). size(), span() and
//   get_obj() (the whole span, Python's get_obj()) never lock either.
// - at(i) checks the index: an index outside 0..size()-1 throws mproc::ValueError (not std::out_of_range:
//   every error mproc reports is an mproc::Error), naming the array, the index and the size.
// - atomic_at(i) (only when std::atomic_ref<T> is always lock-free and alignof(T) suffices, as for Value;
//   otherwise the member does not exist) returns a std::atomic_ref<T> on element i, bounds-checked as
//   at(): the caller names every memory order (std::atomic_ref's defaults are seq_cst).
// - An Array's count is fixed at creation. open() checks it when given (another count is InvalidObject),
//   or accepts any and reports it in size(). Zero elements are allowed, as in Python.
// - Opening checks the kind (a Value is not an Array), element size, alignment, type id (see
//   SharedTypeId in value.hpp), and Locking; each mismatch is an InvalidObject naming both sides.
//
// Costs: element access is a pointer offset; at() and atomic_at() add one compare. A handle's accessors
// check once that it is not moved-from. Creation zero-fills or copies the initial contents once.
//
// Participant death: as value.hpp. The lock is robust (OwnerDied to the next acquirer, who repairs the
// elements, make_consistent(), unlock()). The elements have no transactional guarantee: a process killed
// in the middle of an update under the lock leaves whatever it had written — some elements new, some
// old, an element that is not written by one atomic instruction torn. OwnerDied is the signal to repair.
//
// Trust and misuse: as value.hpp. Sizes come from the descriptor copied at validation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <sys/types.h>

#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"

namespace mproc {

namespace detail {

// Every element is aligned to alignof(T) (the first on a 128-byte boundary, sizeof(T) a multiple of
// alignof(T)): the condition is Value's (see ValueAtomic in value.hpp).
template <class T>
concept ArrayAtomic = ValueAtomic<T>;

}  // namespace detail

// A view over an Array placed in memory the caller provides (mapped MAP_SHARED by every process that uses
// it). Copies refer to the same bytes; the view owns nothing.
template <SharedElement T, Locking L = Locking::with_lock>
class RawArray {
public:
    static constexpr std::size_t kAlignment = detail::kSharedDataAlignment;
    static constexpr bool kLockFree = detail::ArrayAtomic<T>;

    // Bytes the structure needs for count elements; ValueError when that overflows.
    static std::size_t bytes_for(std::size_t count) {
        return detail::shared_data_size(ObjectKind::array, detail::element_type_of<T>(), count, kLabel);
    }
    // Places an Array of count zero elements in the size bytes at memory (kAlignment-aligned, at least
    // bytes_for(count): ValueError). Call once, before any other process uses the bytes.
    static RawArray init(void* memory, std::size_t size, std::size_t count) {
        return RawArray(detail::place_shared_data(memory, size, ObjectKind::array, detail::element_type_of<T>(), count,
                                                  L, {}, kLabel));
    }
    // The same, holding a copy of initial.
    static RawArray init(void* memory, std::size_t size, std::span<const T> initial) {
        return RawArray(detail::place_shared_data(memory, size, ObjectKind::array, detail::element_type_of<T>(),
                                                  initial.size(), L, std::as_bytes(initial), kLabel));
    }
    // An Array placed by init() with the same T and Locking, validated (see attach_shared_data in
    // value.hpp); expected_count: any when nullopt.
    static RawArray attach(void* memory, std::size_t size, std::optional<std::size_t> expected_count = std::nullopt) {
        return RawArray(detail::attach_shared_data(memory, size, ObjectKind::array, detail::element_type_of<T>(),
                                                   expected_count, L, kLabel));
    }

    std::size_t size() const noexcept { return count_; }
    std::span<T> span() const noexcept { return {data_, count_}; }
    // Python's get_obj(): the elements themselves.
    std::span<T> get_obj() const noexcept { return span(); }
    T& operator[](std::size_t index) const noexcept { return data_[index]; }
    T& at(std::size_t index) const {
        if (index >= count_) detail::throw_index_out_of_range(kLabel, "at", index, count_);
        return data_[index];
    }
    std::atomic_ref<T> atomic_at(std::size_t index) const
        requires kLockFree
    {
        if (index >= count_) detail::throw_index_out_of_range(kLabel, "atomic_at", index, count_);
        return std::atomic_ref<T>(data_[index]);
    }
    RawLock& get_lock() const noexcept
        requires(L == Locking::with_lock)
    {
        return *lock_;
    }

private:
    template <SharedElement, Locking>
    friend class Array;
    static constexpr std::string_view kLabel = L == Locking::with_lock ? "raw array" : "raw unlocked array";

    explicit RawArray(const detail::SharedDataView& view) noexcept
        : data_(std::launder(reinterpret_cast<T*>(view.data))), count_(view.count), lock_(view.lock) {}

    T* data_;
    std::size_t count_;
    RawLock* lock_;
};

// An Array in a SharedMemory segment the handle owns. Move-only; a moved-from handle throws StateError
// (size() is 0).
template <SharedElement T, Locking L = Locking::with_lock>
class Array {
public:
    using Raw = RawArray<T, L>;
    static constexpr bool kLockFree = Raw::kLockFree;

    // An anonymous Array of count zero elements: inherited by fork()ed children.
    explicit Array(std::size_t count)
        : core_(detail::SharedDataSegment::anonymous(ObjectKind::array, detail::element_type_of<T>(), count, L, {})) {}
    // An anonymous Array holding a copy of initial.
    explicit Array(std::span<const T> initial)
        : core_(detail::SharedDataSegment::anonymous(ObjectKind::array, detail::element_type_of<T>(), initial.size(), L,
                                                     std::as_bytes(initial))) {}
    // A named Array (ObjectKind::array) of count zero elements, created exclusively: SystemError(EEXIST)
    // when the name exists.
    static Array create(std::string_view name, std::size_t count, mode_t mode = 0600) {
        return Array(detail::SharedDataSegment::create(name, ObjectKind::array, detail::element_type_of<T>(), count, L,
                                                       {}, mode));
    }
    static Array create(std::string_view name, std::span<const T> initial, mode_t mode = 0600) {
        return Array(detail::SharedDataSegment::create(name, ObjectKind::array, detail::element_type_of<T>(),
                                                       initial.size(), L, std::as_bytes(initial), mode));
    }
    // An existing named Array: SystemError(ENOENT) when missing; InvalidObject when it is another kind of
    // object, another T, another count (when expected_count is given), the other Locking, or fails
    // validation.
    static Array open(std::string_view name, std::optional<std::size_t> expected_count = std::nullopt,
                      std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout) {
        return Array(detail::SharedDataSegment::open(name, ObjectKind::array, detail::element_type_of<T>(),
                                                     expected_count, L, publish_timeout));
    }
    // The Array behind another handle's fd() (duplicated; the caller keeps its own), validated as open()
    // validates (the same T, Locking and, when given, count; or InvalidObject).
    static Array from_fd(int fd, std::optional<std::size_t> expected_count = std::nullopt) {
        return Array(detail::SharedDataSegment::from_fd(fd, ObjectKind::array, detail::element_type_of<T>(),
                                                        expected_count, L));
    }
    // The memfd of an anonymous (or from_fd) Array, to hand to another process; -1 for a named one.
    int fd() const noexcept { return core_.segment().fd(); }

    Array(Array&&) noexcept = default;
    Array& operator=(Array&&) noexcept = default;
    Array(const Array&) = delete;
    Array& operator=(const Array&) = delete;
    ~Array() = default;

    std::size_t size() const noexcept { return core_.view().count; }
    std::span<T> span() const { return raw("span").span(); }
    std::span<T> get_obj() const { return raw("get_obj").get_obj(); }
    // Unchecked, as std::vector's; on a moved-from handle: StateError.
    T& operator[](std::size_t index) const { return raw("operator[]")[index]; }
    T& at(std::size_t index) const {
        const Raw array = raw("at");
        if (index >= array.size()) detail::throw_index_out_of_range(core_.label(), "at", index, array.size());
        return array[index];
    }
    std::atomic_ref<T> atomic_at(std::size_t index) const
        requires kLockFree
    {
        const Raw array = raw("atomic_at");
        if (index >= array.size()) detail::throw_index_out_of_range(core_.label(), "atomic_at", index, array.size());
        return std::atomic_ref<T>(array[index]);
    }
    RawLock& get_lock() const
        requires(L == Locking::with_lock)
    {
        return raw("get_lock").get_lock();
    }

    // Removes the name (see SharedMemory::unlink).
    void unlink() { core_.unlink(); }
    const std::string& name() const noexcept { return core_.segment().name(); }
    const SharedMemory& segment() const noexcept { return core_.segment(); }
    Raw raw() const { return raw("raw"); }

private:
    explicit Array(detail::SharedDataSegment core) : core_(std::move(core)) {}
    Raw raw(const char* operation) const {
        if (core_.view().data == nullptr) detail::throw_moved_from(ObjectKind::array, operation);
        return Raw(core_.view());
    }

    detail::SharedDataSegment core_;
};

// Python's multiprocessing.RawArray: an Array without a lock.
template <SharedElement T>
using UnlockedArray = Array<T, Locking::none>;
template <SharedElement T>
using RawUnlockedArray = RawArray<T, Locking::none>;

}  // namespace mproc
