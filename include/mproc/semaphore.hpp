// mproc/semaphore.hpp — Python's multiprocessing.Semaphore and BoundedSemaphore for C++: a counting
// semaphore on one futex word, shared between processes and between threads. No pthread, no sem_t.
//
// Defines: RawSemaphore and RawBoundedSemaphore (the 64-byte structure, placed in memory the caller owns),
// Semaphore and BoundedSemaphore (handles owning the shared memory the structure lives in: anonymous, or
// named with ObjectKind::semaphore), and detail::SemaphoreLayout.
//
// Guarantees
// - The count never goes below zero, and acquire returns true only with a permit taken: at most k
//   acquirers are between acquire() and release() of a semaphore that holds k permits, whatever the
//   interleaving, and no waiter is ever woken with a false success.
// - Python's interface: acquire(block, timeout) -> bool, release(n), get_value(). C++'s, as
//   std::counting_semaphore: try_acquire(), try_acquire_for(), try_acquire_until().
// - BoundedSemaphore: a release() that would raise the count above the initial value throws ValueError
//   and leaves the count unchanged (Python raises ValueError too). A Semaphore's count is bounded by
//   kMaxValue the same way.
// - Timeouts are measured on CLOCK_MONOTONIC from the call; a signal (EINTR) resumes the wait with the
//   time that remains. A timeout of zero or less makes one attempt without blocking. A timed-out
//   acquire returns false, never throws.
// - Not fair: a thread that arrives as a permit is released may take it before a woken sleeper.
//
// Costs
// - acquire() while the count is above zero: one load and one compare-and-swap, no system call, no clock
//   read.
// - release(): one compare-and-swap; FUTEX_WAKE only when the word's WAITERS bit says a thread may sleep.
//   A release that wakes and finds every sleeper already gone clears the bit again, so uncontended use
//   returns to making no system call.
// - Contended acquire: about 20 re-reads of the word (a microsecond), then FUTEX_WAIT (shared futex) per sleep.
// - A release() while threads sleep wakes every sleeper (FUTEX_WAKE of all), not n of them: those that
//   find no permit go back to sleep. That is O(sleepers) wake-ups per contended release, the price of the
//   death guarantee below (a wake-up handed to one chosen sleeper dies with it).
//
// Participant death (SIGKILL at any instruction)
// - A semaphore has no owner, as in Python and POSIX: a process that dies holding permits loses them.
//   The count stays lower by the permits it held, for good. Use a Lock where a death must be noticed.
// - A waiter that dies asleep or after being woken: never makes a live waiter sleep forever and never
//   makes a release() lose a wake-up. Every release() that finds WAITERS wakes every sleeper, so no
//   live sleeper depends on the dead one passing a wake-up on; the dead waiter's WAITERS bit is only a
//   hint that costs one extra FUTEX_WAKE, which finds nobody and clears it. A waiter killed inside
//   acquire() either took its permit (then it died holding it: lost, as above) or did not (the count is
//   untouched): the compare-and-swap is the only write acquire() makes to the count.
// - A process killed inside release(), after adding its permits and before FUTEX_WAKE: the permits are
//   in the count, and any acquirer takes them without sleeping, but threads already asleep stay asleep
//   until a later release() (WAITERS is still set, so it wakes them) or until their timeout.
//
// Trust: every process that maps a semaphore may corrupt it; one that writes its bytes other than
// through this API can break the count. Attaching (RawSemaphore::attach) to bytes of unknown origin is
// safe to try: validation reads only inside the bytes, and try_acquire(), release() and get_value()
// never block whatever the word holds. The semaphore must not be unmapped while a thread waits on it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/segment_handle.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

namespace detail {

// The 64 bytes a RawSemaphore or RawBoundedSemaphore is. `word` is accessed only through std::atomic_ref;
// the other fields are written once, by init(), before the semaphore is shared.
struct alignas(64) SemaphoreLayout {
    std::uint32_t word;            // futex word: count (bits 0..30) | kSemaphoreWaiters (bit 31)
    std::uint32_t magic;           // kRawSemaphoreMagic / kRawBoundedSemaphoreMagic
    std::uint32_t layout_version;  // kSemaphoreLayoutVersion
    std::uint32_t bound;           // the largest count release() may make: initial value, or kMaxValue
    std::uint8_t padding[48];      // the next object starts on another cache line
};

static_assert(sizeof(SemaphoreLayout) == 64 && alignof(SemaphoreLayout) == 64,
              "a semaphore owns one cache line: nothing else bounces with its word");
static_assert(std::is_standard_layout_v<SemaphoreLayout> && std::is_trivially_copyable_v<SemaphoreLayout>,
              "shared between processes built separately: plain bytes only");
static_assert(offsetof(SemaphoreLayout, word) == 0, "the futex word is the first, aligned word");

inline constexpr std::uint32_t kRawSemaphoreMagic = 0x4d53504d;         // "MPSM"
inline constexpr std::uint32_t kRawBoundedSemaphoreMagic = 0x5342504d;  // "MPBS"
inline constexpr std::uint32_t kSemaphoreLayoutVersion = 1;
// Set while a thread may sleep on the word; the count is the other 31 bits.
inline constexpr std::uint32_t kSemaphoreWaiters = 0x80000000u;

// How errors about a moved-from Semaphore or BoundedSemaphore name it.
inline constexpr char kSemaphoreHandleName[] = "semaphore";
inline constexpr char kBoundedSemaphoreHandleName[] = "bounded semaphore";

}  // namespace detail

// The semaphore itself, in memory the caller provides (mapped MAP_SHARED by every process that uses it).
class MPROC_API RawSemaphore {
public:
    static constexpr std::size_t kSize = sizeof(detail::SemaphoreLayout);
    static constexpr std::size_t kAlignment = alignof(detail::SemaphoreLayout);
    // The largest count a semaphore holds (31 bits: the 32nd is the WAITERS bit).
    static constexpr std::uint32_t kMaxValue = 0x7fffffffu;

    // Makes the kSize bytes at memory a semaphore holding `value` permits. memory must be
    // kAlignment-aligned; value must be in 0..kMaxValue (ValueError otherwise). Call once, before any other
    // process uses the bytes.
    static RawSemaphore& init(void* memory, std::int64_t value = 1);
    // A semaphore made by init(), validated: InvalidObject when the bytes are too few, or their magic,
    // layout version, bound or count are wrong (a BoundedSemaphore is not a Semaphore); ValueError when
    // memory is misaligned.
    static RawSemaphore& attach(void* memory, std::size_t size);
    // The checks attach() makes; label names the semaphore in the message.
    void validate(std::string_view label = "raw semaphore") const;

    // Python: block=false makes one attempt; block=true waits up to timeout (nullopt: forever; zero or
    // less: one attempt). Returns whether a permit was taken. A timeout with block=false: ValueError.
    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    bool try_acquire();
    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
        return acquire_within(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return try_acquire_for(deadline - Clock::now());
    }
    // Adds n (>= 1) permits and wakes sleepers. ValueError, with the count unchanged, when n < 1 or the
    // count would exceed kMaxValue.
    void release(std::ptrdiff_t n = 1);
    // The count now (a snapshot).
    std::uint32_t get_value() const noexcept;

private:
    friend class Semaphore;
    RawSemaphore() = default;
    bool acquire_within(std::chrono::nanoseconds timeout);

    detail::SemaphoreLayout layout_;
};

// A semaphore whose count may never exceed its initial value.
class MPROC_API RawBoundedSemaphore {
public:
    static constexpr std::size_t kSize = sizeof(detail::SemaphoreLayout);
    static constexpr std::size_t kAlignment = alignof(detail::SemaphoreLayout);
    static constexpr std::uint32_t kMaxValue = RawSemaphore::kMaxValue;

    // As RawSemaphore::init; `value` is also the bound.
    static RawBoundedSemaphore& init(void* memory, std::int64_t value = 1);
    static RawBoundedSemaphore& attach(void* memory, std::size_t size);
    void validate(std::string_view label = "raw bounded semaphore") const;

    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    bool try_acquire();
    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
        return acquire_within(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return try_acquire_for(deadline - Clock::now());
    }
    // ValueError, with the count unchanged, when n < 1 or the count would exceed the initial value
    // ("released too many times").
    void release(std::ptrdiff_t n = 1);
    std::uint32_t get_value() const noexcept;
    // The initial value: the most permits the semaphore can hold.
    std::uint32_t bound() const noexcept;

private:
    friend class BoundedSemaphore;
    RawBoundedSemaphore() = default;
    bool acquire_within(std::chrono::nanoseconds timeout);

    detail::SemaphoreLayout layout_;
};

static_assert(sizeof(RawSemaphore) == 64 && std::is_standard_layout_v<RawSemaphore>, "RawSemaphore is its layout");
static_assert(sizeof(RawBoundedSemaphore) == 64 && std::is_standard_layout_v<RawBoundedSemaphore>,
              "RawBoundedSemaphore is its layout");

// A RawSemaphore in a SharedMemory segment the handle owns. Move-only; a moved-from handle throws
// StateError from every operation.
class MPROC_API Semaphore {
public:
    // An anonymous semaphore holding `value` permits: inherited by fork()ed children.
    explicit Semaphore(std::int64_t value = 1);
    // A named semaphore (ObjectKind::semaphore): created exclusively (SystemError EEXIST when the name
    // exists).
    static Semaphore create(std::string_view name, std::int64_t value = 1, mode_t mode = 0600);
    // An existing named semaphore: SystemError(ENOENT) when missing; InvalidObject when it is another kind
    // of object, a BoundedSemaphore, another layout, or its bytes fail validation.
    static Semaphore open(std::string_view name,
                          std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The object behind another handle's fd() (an anonymous Semaphore's memfd, received over SCM_RIGHTS or
    // inherited): fd is duplicated, the caller keeps its own; validated as open() validates (InvalidObject for
    // another kind, layout or bytes, a pipe or an unsealed file).
    static Semaphore from_fd(int fd);
    // The memfd of an anonymous (or from_fd) Semaphore, to hand to another process; -1 for a named one.
    int fd() const noexcept { return handle_.fd(); }

    Semaphore(Semaphore&& other) noexcept;
    Semaphore& operator=(Semaphore&& other) noexcept;
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    ~Semaphore();

    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    bool try_acquire();
    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
        return acquire_within(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return try_acquire_for(deadline - Clock::now());
    }
    void release(std::ptrdiff_t n = 1);
    std::uint32_t get_value() const;

    // Removes the name (see SharedMemory::unlink).
    void unlink();
    const std::string& name() const noexcept { return handle_.segment().name(); }
    RawSemaphore& raw() const;
    const SharedMemory& segment() const noexcept { return handle_.segment(); }

private:
    using Handle = detail::SegmentHandle<RawSemaphore, ObjectKind::semaphore, detail::kSemaphoreHandleName>;

    explicit Semaphore(SharedMemory segment);
    bool acquire_within(std::chrono::nanoseconds timeout);

    Handle handle_;
};

// A RawBoundedSemaphore in a SharedMemory segment the handle owns (ObjectKind::semaphore when named).
class MPROC_API BoundedSemaphore {
public:
    explicit BoundedSemaphore(std::int64_t value = 1);
    static BoundedSemaphore create(std::string_view name, std::int64_t value = 1, mode_t mode = 0600);
    // InvalidObject when the name holds a plain Semaphore or another kind of object.
    static BoundedSemaphore open(std::string_view name,
                                 std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The object behind another handle's fd() (an anonymous BoundedSemaphore's memfd, received over SCM_RIGHTS or
    // inherited): fd is duplicated, the caller keeps its own; validated as open() validates (InvalidObject for
    // another kind, layout or bytes, a pipe or an unsealed file).
    static BoundedSemaphore from_fd(int fd);
    // The memfd of an anonymous (or from_fd) BoundedSemaphore, to hand to another process; -1 for a named one.
    int fd() const noexcept { return handle_.fd(); }

    BoundedSemaphore(BoundedSemaphore&& other) noexcept;
    BoundedSemaphore& operator=(BoundedSemaphore&& other) noexcept;
    BoundedSemaphore(const BoundedSemaphore&) = delete;
    BoundedSemaphore& operator=(const BoundedSemaphore&) = delete;
    ~BoundedSemaphore();

    bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    bool try_acquire();
    template <class Rep, class Period>
    bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
        return acquire_within(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return try_acquire_for(deadline - Clock::now());
    }
    void release(std::ptrdiff_t n = 1);
    std::uint32_t get_value() const;
    std::uint32_t bound() const;

    void unlink();
    const std::string& name() const noexcept { return handle_.segment().name(); }
    RawBoundedSemaphore& raw() const;
    const SharedMemory& segment() const noexcept { return handle_.segment(); }

private:
    using Handle =
        detail::SegmentHandle<RawBoundedSemaphore, ObjectKind::semaphore, detail::kBoundedSemaphoreHandleName>;

    explicit BoundedSemaphore(SharedMemory segment);
    bool acquire_within(std::chrono::nanoseconds timeout);

    Handle handle_;
};

}  // namespace mproc
