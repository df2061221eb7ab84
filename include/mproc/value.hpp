// mproc/value.hpp — Python's multiprocessing.Value (and RawValue) for C++: one trivially copyable T in
// shared memory, with an optional robust Lock beside it and lock-free atomic access where T allows it.
//
// Defines: Locking (with_lock / none), SharedTypeId<T> (the type tag recorded in the object), RawValue<T>
// (a view over the structure placed in memory the caller owns), Value<T> (a handle owning the shared memory
// the structure lives in: anonymous, or named with ObjectKind::value), UnlockedValue<T> (Python's
// RawValue: Value<T, Locking::none>), and the non-template core in detail:: that Array<T> shares.
// Names: in mproc, "Raw" names the layer placed in caller memory (RawLock, RawSemaphore); Python's
// RawValue — a Value without a lock — is UnlockedValue<T> here.
//
// Layout (payload of the object, or the caller's memory; 128-byte aligned):
//   [0, 64)     a RawLock (Locking::with_lock), zero bytes otherwise
//   [64, 128)   the descriptor: magic, layout version, flags (has lock), element size and alignment,
//               count (1 for a Value), type id, data offset; written once by init, before sharing
//   [128, ...)  the value: 128 bytes from the lock word, so a thread spinning on the lock does not bounce
//               the value's cache line, and 128-byte aligned (alignof(T) may be at most 128).
//
// Type checking: opening or attaching checks element size, element alignment, count and the type id
// SharedTypeId<T>::value. Built-in arithmetic types have fixed ids (class and size: int32 and uint32
// differ, long and long long of the same size agree, float and int32 differ); any other T has id 0
// ("untagged"), which matches only id 0 of the same size and alignment: specialise SharedTypeId for your
// type to tell two same-sized structures apart. A mismatch is InvalidObject naming both types.
//
// Guarantees
// - The value is shared: every process that maps the object sees the same bytes; get_obj() is a reference
//   into shared memory. Nothing orders plain accesses: hold get_lock() around them, or use the atomics.
// - get_lock() (Locking::with_lock only; an UnlockedValue has no get_lock member, so asking is a compile
//   error) is a RawLock: robust, non-recursive, Lockable (std::lock_guard, std::unique_lock). Unlike
//   Python, value()/set_value() do not take it for you: Python's lock is recursive, this one is not, so
//   `lock(); set_value(value() + 1)` would deadlock (StateError) if they did. Lock around them yourself.
// - value()/set_value(): a copy out and in. For a lock-free T it is one relaxed atomic access (never torn,
//   orders nothing); otherwise a plain copy, which must not race with a writer (hold the lock).
// - Atomics (only when std::atomic_ref<T> is always lock-free and alignof(T) is at least its
//   required_alignment — give a small struct alignas(sizeof) — otherwise the members do not exist, a
//   compile error): load, store, exchange, compare_exchange_weak/strong, and
//   for integral T fetch_add, fetch_sub, fetch_and, fetch_or, fetch_xor. Each takes an explicit
//   std::memory_order defaulting to seq_cst, as std::atomic does: pass relaxed/acquire/release when you
//   know what pairs with what. Lock-free means address-free: the operations work across processes.
//
// Costs: the atomics are single instructions, no system call. value()/set_value(): a copy. A handle's
// operations check once that it is not moved-from. get_lock(): see lock.hpp (uncontended: no system call).
// Creating/opening: see shared_memory.hpp, plus a 128-byte validation.
//
// Participant death
// - The lock is robust: a holder SIGKILLed anywhere makes the next acquirer get OwnerDied (or
//   AcquireStatus::owner_died) while holding the lock; see lock.hpp.
// - The data has no transactional guarantee. A process killed in the middle of writing a T that is not
//   written by one atomic instruction leaves it torn: some bytes new, some old. OwnerDied is the signal
//   that the value may be torn: the acquirer repairs it (recompute, or reset to a known state), calls
//   get_lock().make_consistent(), then unlocks. Atomic operations are never torn: a process killed around
//   one has either done it entirely or not at all.
//
// Trust: every process that maps the object may corrupt it. Validation (open, RawValue::attach) reads only
// inside the bytes given and copies the descriptor once; sizes used afterwards come from that copy.
// Misuse: T must be trivially copyable, not a pointer (meaningless in another address space), with
// alignof(T) <= 128 (compile errors). Handles are move-only; a moved-from handle throws StateError.
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
#include <type_traits>
#include <utility>

#include <sys/types.h>

#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

// Whether a Value or Array carries a robust Lock (Python's lock=True / lock=False).
enum class Locking : std::uint32_t {
    none = 0,
    with_lock = 1,
};

namespace detail {

// Type ids of built-in types: class << 8 | size in bytes. Part of the shared layout: never renumber.
inline constexpr std::uint64_t kTypeClassSigned = 0x01;
inline constexpr std::uint64_t kTypeClassUnsigned = 0x02;
inline constexpr std::uint64_t kTypeClassFloating = 0x03;
inline constexpr std::uint64_t kTypeClassBool = 0x04;
inline constexpr std::uint64_t kTypeClassChar = 0x05;
inline constexpr std::uint64_t kTypeClassUnicode = 0x06;  // char8_t, char16_t, char32_t
inline constexpr std::uint64_t kTypeClassWide = 0x07;     // wchar_t

template <class T>
constexpr std::uint64_t builtin_type_id() noexcept {
    constexpr std::uint64_t size = sizeof(T);
    if constexpr (std::is_same_v<T, bool>) return kTypeClassBool << 8 | size;
    else if constexpr (std::is_same_v<T, char>) return kTypeClassChar << 8 | size;
    else if constexpr (std::is_same_v<T, wchar_t>) return kTypeClassWide << 8 | size;
    else if constexpr (std::is_same_v<T, char8_t> || std::is_same_v<T, char16_t> || std::is_same_v<T, char32_t>)
        return kTypeClassUnicode << 8 | size;
    else if constexpr (std::is_integral_v<T>) return (std::is_signed_v<T> ? kTypeClassSigned : kTypeClassUnsigned) << 8 | size;
    else if constexpr (std::is_floating_point_v<T>) return kTypeClassFloating << 8 | size;
    else return 0;
}

}  // namespace detail

// The type tag recorded in a Value or Array. Specialise it (a non-zero constant of your choosing, above
// 0xffff so it cannot collide with a built-in id) for a type that must not be opened as another type of
// the same size and alignment.
template <class T>
struct SharedTypeId {
    static constexpr std::uint64_t value = detail::builtin_type_id<T>();
};

// What may live in a Value or Array.
template <class T>
concept SharedElement = std::is_trivially_copyable_v<T> && std::is_object_v<T> && !std::is_const_v<T> &&
                        !std::is_volatile_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                        !std::is_array_v<T> && alignof(T) <= 128;

namespace detail {

// The 64 bytes after the lock: what the object holds, written once by init before the object is shared.
struct alignas(64) SharedDataDescriptor {
    std::uint32_t magic;              // kSharedValueMagic / kSharedArrayMagic
    std::uint32_t layout_version;     // kSharedDataLayoutVersion
    std::uint32_t flags;              // kSharedDataHasLock, nothing else
    std::uint32_t element_alignment;  // alignof(T), a power of two <= 128
    std::uint64_t element_size;       // sizeof(T)
    std::uint64_t count;              // elements; 1 for a Value
    std::uint64_t type_id;            // SharedTypeId<T>::value
    std::uint64_t data_offset;        // kSharedDataOffset
    std::uint8_t reserved[16];        // zero
};

struct alignas(128) SharedDataLayout {
    RobustMutexLayout lock;  // a RawLock when flags has kSharedDataHasLock; zero bytes otherwise
    SharedDataDescriptor descriptor;
};

static_assert(sizeof(SharedDataDescriptor) == 64, "the descriptor owns the second cache line");
static_assert(sizeof(SharedDataLayout) == 128 && alignof(SharedDataLayout) == 128,
              "the data starts 128 bytes after the lock word, on its own 128-byte boundary");
static_assert(offsetof(SharedDataLayout, lock) == 0 && offsetof(SharedDataLayout, descriptor) == 64,
              "the lock comes first, right after the object header");
static_assert(std::is_standard_layout_v<SharedDataLayout> && std::is_trivially_copyable_v<SharedDataLayout>,
              "shared between processes built separately: plain bytes only");

inline constexpr std::uint32_t kSharedValueMagic = 0x4c41564d;  // "MVAL"
inline constexpr std::uint32_t kSharedArrayMagic = 0x5241414d;  // "MAAR"
inline constexpr std::uint32_t kSharedDataLayoutVersion = 1;
inline constexpr std::uint32_t kSharedDataHasLock = 1;
inline constexpr std::size_t kSharedDataOffset = sizeof(SharedDataLayout);
inline constexpr std::size_t kSharedDataAlignment = alignof(SharedDataLayout);

// What the caller's T is, as recorded and checked.
struct ElementType {
    std::size_t size;
    std::size_t alignment;
    std::uint64_t type_id;
};

template <class T>
constexpr ElementType element_type_of() noexcept {
    return {sizeof(T), alignof(T), SharedTypeId<T>::value};
}

// The validated facts about a placed Value or Array; pointers into the caller's mapping.
struct SharedDataView {
    std::byte* data = nullptr;
    std::size_t count = 0;
    RawLock* lock = nullptr;  // null without a lock
};

// Bytes the structure occupies for `count` elements: ValueError when that overflows. kind: value or array.
MPROC_API std::size_t shared_data_size(ObjectKind kind, ElementType type, std::size_t count, std::string_view label);

// Places the structure at memory (kSharedDataAlignment-aligned, at least shared_data_size bytes: ValueError
// otherwise): the lock when asked, the descriptor, then the data — a copy of `initial` (count elements'
// bytes) or zero bytes when initial is empty.
MPROC_API
SharedDataView place_shared_data(void* memory, std::size_t size, ObjectKind kind, ElementType type,
                                 std::size_t count, Locking locking, std::span<const std::byte> initial,
                                 std::string_view label);

// Validates a structure placed by place_shared_data: InvalidObject (naming label, what was found and what
// was expected) for too few bytes, another magic (a Value is not an Array), layout version, lock presence,
// element size, alignment, type id, count (when expected_count is given; a Value's is always 1), data
// offset, or a lock that fails RawLock validation; ValueError for misaligned memory. Reads only inside
// [memory, memory + size).
MPROC_API
SharedDataView attach_shared_data(void* memory, std::size_t size, ObjectKind kind, ElementType type,
                                  std::optional<std::size_t> expected_count, Locking locking, std::string_view label);

[[noreturn]] MPROC_API void throw_moved_from(ObjectKind kind, const char* operation);
[[noreturn]] MPROC_API void throw_index_out_of_range(std::string_view label, const char* operation,
                                                    std::size_t index, std::size_t count);

// The segment behind a Value or Array handle: the SharedMemory, the validated view and the label.
class MPROC_API SharedDataSegment {
public:
    static SharedDataSegment anonymous(ObjectKind kind, ElementType type, std::size_t count, Locking locking,
                                       std::span<const std::byte> initial);
    static SharedDataSegment create(std::string_view name, ObjectKind kind, ElementType type, std::size_t count,
                                    Locking locking, std::span<const std::byte> initial, mode_t mode);
    static SharedDataSegment open(std::string_view name, ObjectKind kind, ElementType type,
                                  std::optional<std::size_t> expected_count, Locking locking,
                                  std::chrono::milliseconds publish_timeout);
    // The segment behind another handle's fd() (duplicated), validated as open() validates.
    static SharedDataSegment from_fd(int fd, ObjectKind kind, ElementType type,
                                     std::optional<std::size_t> expected_count, Locking locking);

    SharedDataSegment(SharedDataSegment&& other) noexcept;
    SharedDataSegment& operator=(SharedDataSegment&& other) noexcept;
    SharedDataSegment(const SharedDataSegment&) = delete;
    SharedDataSegment& operator=(const SharedDataSegment&) = delete;
    ~SharedDataSegment();

    // Null data after a move.
    const SharedDataView& view() const noexcept { return view_; }
    ObjectKind kind() const noexcept { return kind_; }
    const std::string& label() const noexcept { return label_; }
    const SharedMemory& segment() const noexcept { return segment_; }
    // StateError for a moved-from handle; see SharedMemory::unlink.
    void unlink();

private:
    SharedDataSegment(SharedMemory segment, ObjectKind kind, ElementType type,
                      std::optional<std::size_t> expected_count, Locking locking);

    SharedMemory segment_;
    SharedDataView view_;
    ObjectKind kind_;
    std::string label_;
};

// Lock-free atomics on T in shared memory: std::atomic_ref<T> always lock-free, and T's own alignment at
// least what it requires. The second condition keeps compilers from turning an access through an
// under-aligned T (struct {int32 x, y;}: alignment 4, required 8) into a libatomic call that may take a
// process-private lock; give such a type alignas(8) to make it atomic.
template <class T>
concept ValueAtomic = std::atomic_ref<T>::is_always_lock_free && std::atomic_ref<T>::required_alignment <= alignof(T);

template <class T>
concept ValueIntegralAtomic = ValueAtomic<T> && std::is_integral_v<T> && !std::is_same_v<T, bool>;

}  // namespace detail

// A view over a Value placed in memory the caller provides (mapped MAP_SHARED by every process that uses
// it). Copies refer to the same bytes; the view owns nothing.
template <SharedElement T, Locking L = Locking::with_lock>
class RawValue {
public:
    // Bytes and alignment the structure needs.
    static constexpr std::size_t kSize = detail::kSharedDataOffset + sizeof(T);
    static constexpr std::size_t kAlignment = detail::kSharedDataAlignment;
    static constexpr bool kLockFree = detail::ValueAtomic<T>;

    // Places a Value holding `initial` in the size bytes at memory (kAlignment-aligned, at least kSize:
    // ValueError). Call once, before any other process uses the bytes.
    static RawValue init(void* memory, std::size_t size, const T& initial = T{}) {
        return RawValue(detail::place_shared_data(memory, size, ObjectKind::value, detail::element_type_of<T>(), 1, L,
                                                  std::as_bytes(std::span<const T, 1>(&initial, 1)), kLabel));
    }
    // A Value placed by init() with the same T and Locking, validated (see attach_shared_data).
    static RawValue attach(void* memory, std::size_t size) {
        return RawValue(detail::attach_shared_data(memory, size, ObjectKind::value, detail::element_type_of<T>(), 1, L,
                                                   kLabel));
    }

    // The value in shared memory (Python's get_obj()). Unsynchronised: lock around it.
    T& get_obj() const noexcept { return *data_; }
    RawLock& get_lock() const noexcept
        requires(L == Locking::with_lock)
    {
        return *lock_;
    }

    // Python's .value; see the top of this file (does not take the lock).
    T value() const noexcept {
        if constexpr (kLockFree) {
            // relaxed: a copy that is never torn; whoever needs ordering holds the lock or uses load().
            return std::atomic_ref<T>(*data_).load(std::memory_order_relaxed);
        } else {
            return *data_;
        }
    }
    void set_value(const T& value) const noexcept {
        if constexpr (kLockFree) {
            // relaxed: as in value().
            std::atomic_ref<T>(*data_).store(value, std::memory_order_relaxed);
        } else {
            *data_ = value;
        }
    }

    // std::atomic's operations, on the shared value; the caller names the order (default seq_cst).
    T load(std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires kLockFree
    {
        return atomic().load(order);
    }
    void store(const T& desired, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires kLockFree
    {
        atomic().store(desired, order);
    }
    T exchange(const T& desired, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires kLockFree
    {
        return atomic().exchange(desired, order);
    }
    bool compare_exchange_weak(T& expected, const T& desired, std::memory_order success,
                               std::memory_order failure) const noexcept
        requires kLockFree
    {
        return atomic().compare_exchange_weak(expected, desired, success, failure);
    }
    bool compare_exchange_weak(T& expected, const T& desired,
                               std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires kLockFree
    {
        return atomic().compare_exchange_weak(expected, desired, order);
    }
    bool compare_exchange_strong(T& expected, const T& desired, std::memory_order success,
                                 std::memory_order failure) const noexcept
        requires kLockFree
    {
        return atomic().compare_exchange_strong(expected, desired, success, failure);
    }
    bool compare_exchange_strong(T& expected, const T& desired,
                                 std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires kLockFree
    {
        return atomic().compare_exchange_strong(expected, desired, order);
    }
    T fetch_add(T operand, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires detail::ValueIntegralAtomic<T>
    {
        return atomic().fetch_add(operand, order);
    }
    T fetch_sub(T operand, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires detail::ValueIntegralAtomic<T>
    {
        return atomic().fetch_sub(operand, order);
    }
    T fetch_and(T operand, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires detail::ValueIntegralAtomic<T>
    {
        return atomic().fetch_and(operand, order);
    }
    T fetch_or(T operand, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires detail::ValueIntegralAtomic<T>
    {
        return atomic().fetch_or(operand, order);
    }
    T fetch_xor(T operand, std::memory_order order = std::memory_order_seq_cst) const noexcept
        requires detail::ValueIntegralAtomic<T>
    {
        return atomic().fetch_xor(operand, order);
    }

private:
    template <SharedElement, Locking>
    friend class Value;
    static constexpr std::string_view kLabel = L == Locking::with_lock ? "raw value" : "raw unlocked value";

    explicit RawValue(const detail::SharedDataView& view) noexcept
        : data_(std::launder(reinterpret_cast<T*>(view.data))), lock_(view.lock) {}
    std::atomic_ref<T> atomic() const noexcept
        requires kLockFree
    {
        return std::atomic_ref<T>(*data_);
    }

    T* data_;
    RawLock* lock_;
};

// A Value in a SharedMemory segment the handle owns. Move-only; a moved-from handle throws StateError.
template <SharedElement T, Locking L = Locking::with_lock>
class Value {
public:
    using Raw = RawValue<T, L>;
    static constexpr bool kLockFree = Raw::kLockFree;

    // An anonymous Value holding `initial`: inherited by fork()ed children.
    explicit Value(const T& initial = T{})
        : core_(detail::SharedDataSegment::anonymous(ObjectKind::value, detail::element_type_of<T>(), 1, L,
                                                     initial_bytes(initial))) {}
    // A named Value (ObjectKind::value), created exclusively: SystemError(EEXIST) when the name exists.
    static Value create(std::string_view name, const T& initial = T{}, mode_t mode = 0600) {
        return Value(detail::SharedDataSegment::create(name, ObjectKind::value, detail::element_type_of<T>(), 1, L,
                                                       initial_bytes(initial), mode));
    }
    // An existing named Value: SystemError(ENOENT) when missing; InvalidObject when it is another kind of
    // object, another T (size, alignment or type id), was made with the other Locking, or fails validation.
    static Value open(std::string_view name,
                      std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout) {
        return Value(detail::SharedDataSegment::open(name, ObjectKind::value, detail::element_type_of<T>(), 1, L,
                                                     publish_timeout));
    }
    // The Value behind another handle's fd() (duplicated; the caller keeps its own), validated as open()
    // validates (the same T and Locking, or InvalidObject).
    static Value from_fd(int fd) {
        return Value(detail::SharedDataSegment::from_fd(fd, ObjectKind::value, detail::element_type_of<T>(), 1, L));
    }
    // The memfd of an anonymous (or from_fd) Value, to hand to another process; -1 for a named one.
    int fd() const noexcept { return core_.segment().fd(); }

    Value(Value&&) noexcept = default;
    Value& operator=(Value&&) noexcept = default;
    Value(const Value&) = delete;
    Value& operator=(const Value&) = delete;
    ~Value() = default;

    T& get_obj() const { return raw("get_obj").get_obj(); }
    RawLock& get_lock() const
        requires(L == Locking::with_lock)
    {
        return raw("get_lock").get_lock();
    }
    T value() const { return raw("value").value(); }
    void set_value(const T& value) const { raw("set_value").set_value(value); }

    T load(std::memory_order order = std::memory_order_seq_cst) const
        requires kLockFree
    {
        return raw("load").load(order);
    }
    void store(const T& desired, std::memory_order order = std::memory_order_seq_cst) const
        requires kLockFree
    {
        raw("store").store(desired, order);
    }
    T exchange(const T& desired, std::memory_order order = std::memory_order_seq_cst) const
        requires kLockFree
    {
        return raw("exchange").exchange(desired, order);
    }
    bool compare_exchange_weak(T& expected, const T& desired, std::memory_order success,
                               std::memory_order failure) const
        requires kLockFree
    {
        return raw("compare_exchange_weak").compare_exchange_weak(expected, desired, success, failure);
    }
    bool compare_exchange_weak(T& expected, const T& desired,
                               std::memory_order order = std::memory_order_seq_cst) const
        requires kLockFree
    {
        return raw("compare_exchange_weak").compare_exchange_weak(expected, desired, order);
    }
    bool compare_exchange_strong(T& expected, const T& desired, std::memory_order success,
                                 std::memory_order failure) const
        requires kLockFree
    {
        return raw("compare_exchange_strong").compare_exchange_strong(expected, desired, success, failure);
    }
    bool compare_exchange_strong(T& expected, const T& desired,
                                 std::memory_order order = std::memory_order_seq_cst) const
        requires kLockFree
    {
        return raw("compare_exchange_strong").compare_exchange_strong(expected, desired, order);
    }
    T fetch_add(T operand, std::memory_order order = std::memory_order_seq_cst) const
        requires detail::ValueIntegralAtomic<T>
    {
        return raw("fetch_add").fetch_add(operand, order);
    }
    T fetch_sub(T operand, std::memory_order order = std::memory_order_seq_cst) const
        requires detail::ValueIntegralAtomic<T>
    {
        return raw("fetch_sub").fetch_sub(operand, order);
    }
    T fetch_and(T operand, std::memory_order order = std::memory_order_seq_cst) const
        requires detail::ValueIntegralAtomic<T>
    {
        return raw("fetch_and").fetch_and(operand, order);
    }
    T fetch_or(T operand, std::memory_order order = std::memory_order_seq_cst) const
        requires detail::ValueIntegralAtomic<T>
    {
        return raw("fetch_or").fetch_or(operand, order);
    }
    T fetch_xor(T operand, std::memory_order order = std::memory_order_seq_cst) const
        requires detail::ValueIntegralAtomic<T>
    {
        return raw("fetch_xor").fetch_xor(operand, order);
    }

    // Removes the name (see SharedMemory::unlink).
    void unlink() { core_.unlink(); }
    const std::string& name() const noexcept { return core_.segment().name(); }
    const SharedMemory& segment() const noexcept { return core_.segment(); }
    // The structure in the segment, as the raw layer sees it.
    Raw raw() const { return raw("raw"); }

private:
    explicit Value(detail::SharedDataSegment core) : core_(std::move(core)) {}
    static std::span<const std::byte> initial_bytes(const T& initial) noexcept {
        return std::as_bytes(std::span<const T, 1>(&initial, 1));
    }
    Raw raw(const char* operation) const {
        if (core_.view().data == nullptr) detail::throw_moved_from(ObjectKind::value, operation);
        return Raw(core_.view());
    }

    detail::SharedDataSegment core_;
};

// Python's multiprocessing.RawValue: a Value without a lock.
template <SharedElement T>
using UnlockedValue = Value<T, Locking::none>;
template <SharedElement T>
using RawUnlockedValue = RawValue<T, Locking::none>;

}  // namespace mproc
