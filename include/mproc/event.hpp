// mproc/event.hpp — Python's multiprocessing.Event for C++: a flag that threads of any process can set,
// clear and wait for, on one futex word. No pthread, no condition variable.
//
// Defines: RawEvent (the 64-byte structure, placed in memory the caller owns), Event (a handle owning the
// shared memory the RawEvent lives in: anonymous, or named with ObjectKind::event), detail::EventLayout.
//
// Guarantees
// - set() makes the flag true and wakes every thread waiting; clear() makes it false; is_set() reads it.
// - wait(timeout) -> bool returns true when the flag is set at the call, or is set by a set() at any
//   moment before the wait returns — even when a clear() follows that set() before the waiter runs
//   again (every set() that turns the flag on starts a new generation, and a waiter that sees the
//   generation change returns true). It returns false only when the flag stayed clear for the whole
//   timeout. (Python's multiprocessing.Event returns the flag as it is when the wait ends, and so can
//   miss a set() followed at once by a clear(); threading.Event returns true there, as mproc does.)
//   The generation has 30 bits: a waiter that sleeps through exactly 2^30 set()/clear() pairs returns
//   false. set() happens-before the return of every wait() that returns true because of it.
// - Timeouts are measured on CLOCK_MONOTONIC from the call; a signal (EINTR) resumes the wait with the
//   time that remains. A timeout of zero or less checks the flag once without blocking. A timed-out
//   wait returns false, never throws.
//
// Costs
// - is_set(), and wait() on a set flag: one atomic load, no system call.
// - set() and clear() with nobody waiting: one compare-and-swap (none when the flag already has the
//   value), no system call. set() calls FUTEX_WAKE (of all) only when the word's WAITERS bit says a
//   thread may sleep, then clears the bit.
// - wait() on a clear flag: about 20 re-reads of the word (a microsecond), then FUTEX_WAIT (shared futex) per sleep.
//
// Participant death (SIGKILL at any instruction)
// - An event has no owner: nothing is held, so a death releases nothing and loses nothing.
// - A waiter that dies asleep: its WAITERS bit is only a hint; the next set() pays one FUTEX_WAKE that
//   finds nobody more than it would have, and every live waiter is woken, since set() wakes all.
// - A process killed inside set(), after turning the flag on and before FUTEX_WAKE: the flag is set (new
//   waiters return at once), but threads already asleep stay asleep until the next set() — which wakes
//   them even though the flag is already on, because WAITERS is still set — or until their timeout.
//
// Trust: any process that maps an event may corrupt it. Attaching (RawEvent::attach) to bytes of unknown
// origin is safe to try: validation reads only inside the bytes, and set(), clear(), is_set() and a wait
// with a timeout of zero never block whatever the word holds. The event must not be unmapped while a
// thread waits on it.
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

// The 64 bytes a RawEvent is. `word` is accessed only through std::atomic_ref; the other fields are written
// once, by init(), before the event is shared.
struct alignas(64) EventLayout {
    std::uint32_t word;            // futex word: kEventSet | kEventWaiters | generation << 2
    std::uint32_t magic;           // kRawEventMagic
    std::uint32_t layout_version;  // kEventLayoutVersion
    std::uint32_t reserved;        // zero
    std::uint8_t padding[48];      // the next object starts on another cache line
};

static_assert(sizeof(EventLayout) == 64 && alignof(EventLayout) == 64,
              "an event owns one cache line: nothing else bounces with its word");
static_assert(std::is_standard_layout_v<EventLayout> && std::is_trivially_copyable_v<EventLayout>,
              "shared between processes built separately: plain bytes only");
static_assert(offsetof(EventLayout, word) == 0, "the futex word is the first, aligned word");

inline constexpr std::uint32_t kRawEventMagic = 0x5645504d;  // "MPEV"
inline constexpr std::uint32_t kEventLayoutVersion = 1;
inline constexpr std::uint32_t kEventSet = 1u;
// Set while a thread may sleep on the word.
inline constexpr std::uint32_t kEventWaiters = 2u;
// The generation: bits 2..31, advanced by every set() that turns the flag on.
inline constexpr std::uint32_t kEventGenerationStep = 4u;

// How errors about a moved-from Event name it.
inline constexpr char kEventHandleName[] = "event";

}  // namespace detail

// The event itself, in memory the caller provides (mapped MAP_SHARED by every process that uses it).
class MPROC_API RawEvent {
public:
    static constexpr std::size_t kSize = sizeof(detail::EventLayout);
    static constexpr std::size_t kAlignment = alignof(detail::EventLayout);

    // Makes the kSize bytes at memory a clear event. memory must be kAlignment-aligned (ValueError
    // otherwise). Call once, before any other process uses the bytes.
    static RawEvent& init(void* memory);
    // An event made by init(), validated: InvalidObject when the bytes are too few or their magic or
    // layout version are wrong; ValueError when memory is misaligned.
    static RawEvent& attach(void* memory, std::size_t size);
    void validate(std::string_view label = "raw event") const;

    void set() noexcept;
    void clear() noexcept;
    bool is_set() const noexcept;
    // Python: timeout nullopt waits for ever; zero or less checks once. Returns true when the flag was set
    // (see the guarantees above), false when the timeout passed with the flag clear.
    bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
        return wait(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return wait_for(deadline - Clock::now());
    }

private:
    friend class Event;
    RawEvent() = default;

    detail::EventLayout layout_;
};

static_assert(sizeof(RawEvent) == 64 && std::is_standard_layout_v<RawEvent>, "RawEvent is its layout");

// A RawEvent in a SharedMemory segment the handle owns. Move-only; a moved-from Event throws StateError
// from every operation.
class MPROC_API Event {
public:
    // An anonymous, clear event: inherited by fork()ed children.
    Event();
    // A named event (ObjectKind::event), clear: created exclusively (SystemError EEXIST when the name
    // exists).
    static Event create(std::string_view name, mode_t mode = 0600);
    // An existing named event: SystemError(ENOENT) when missing, InvalidObject when it is another kind of
    // object, another layout, or its bytes fail validation.
    static Event open(std::string_view name,
                      std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The object behind another handle's fd() (an anonymous Event's memfd, received over SCM_RIGHTS or
    // inherited): fd is duplicated, the caller keeps its own; validated as open() validates (InvalidObject for
    // another kind, layout or bytes, a pipe or an unsealed file).
    static Event from_fd(int fd);
    // The memfd of an anonymous (or from_fd) Event, to hand to another process; -1 for a named one.
    int fd() const noexcept { return handle_.fd(); }

    Event(Event&& other) noexcept;
    Event& operator=(Event&& other) noexcept;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event();

    void set();
    void clear();
    bool is_set() const;
    bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    template <class Rep, class Period>
    bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
        return wait(std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    }
    template <class Clock, class Duration>
    bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
        return wait_for(deadline - Clock::now());
    }

    // Removes the name (see SharedMemory::unlink).
    void unlink();
    const std::string& name() const noexcept { return handle_.segment().name(); }
    RawEvent& raw() const;
    const SharedMemory& segment() const noexcept { return handle_.segment(); }

private:
    using Handle = detail::SegmentHandle<RawEvent, ObjectKind::event, detail::kEventHandleName>;

    explicit Event(SharedMemory segment);

    Handle handle_;
};

}  // namespace mproc
