// mproc/barrier.hpp — Python's multiprocessing.Barrier for C++: a cyclic barrier for a fixed number of
// parties, shared between processes and threads, that breaks (instead of hanging) when a participant dies
// inside wait().
//
// Defines: RawBarrier (the structure, placed in memory the caller owns), Barrier (a handle: anonymous or
// named, holding the action and the default timeout), detail::BarrierControl / detail::BarrierSlot.
//
// Algorithm (Python's, on a futex): a robust internal lock guards the arrival count and the phase
// (filling, action, draining, resetting, broken). The phase and a change counter form the futex word
// `state`; every phase change bumps the counter and wakes every sleeper. A participant inside wait()
// also owns a slot: a robust futex word holding its TID | FUTEX_WAITERS, linked into its thread's robust
// list like a Lock. Sleepers wait with futex_waitv (Linux 5.16) on `state` and on every slot word at once.
// When a participant dies inside wait(), the kernel marks its slot FUTEX_OWNER_DIED and, because
// FUTEX_WAITERS is set, wakes one sleeper queued on that word; that sleeper takes the internal lock, sees
// the dead slot and breaks the barrier, which wakes all. Death is detected by this push from the kernel,
// never by guessing from process ids.
//   wait():   [internal lock] free dead slots (breaking) -> claim a slot -> while the previous generation
//             drains (or the action runs): sleep -> index = count++ -> the last arrival runs the action
//             (lock released) then sets draining, or breaks if it threw; the others sleep until the phase
//             leaves filling/action -> leave: count--, the last to leave a draining/resetting barrier makes
//             it filling again -> free the slot.
// Because a generation drains completely before the next one starts, and its release is recorded in each
// participant's slot, every participant sees its own generation's outcome: released together or broken.
// (Python's barrier lets an abort() that lands while a released generation drains turn it into
// BrokenBarrier for the participants that had not yet woken; here they are released.)
//
// Guarantees
// - wait() returns the arrival index, 0 for the first and parties-1 for the last of a generation; each
//   index once per generation. The action, if any, runs exactly once per generation, in the last arrival,
//   before any participant of that generation returns. Participants of the next generation wait until
//   every participant of this one has left wait().
// - BrokenBarrier, for every participant then inside wait() and for every later wait() until reset():
//   abort(); a participant whose timeout expired (it breaks the barrier, as Python); the action threw (the
//   last arrival gets the action's exception, the others BrokenBarrier); reset() while participants wait;
//   a participant died inside wait() (SIGKILL at any point, while sleeping, arriving or leaving).
//   Waiters learn of a death at once (one wake-up from the kernel, then one FUTEX_WAKE of all), not at a
//   timeout. Without futex_waitv (kernel < 5.16, or refused by a seccomp filter) sleepers re-check the slots
//   every 20 ms instead.
// - A timeout that expires while the last arrival runs the action breaks the barrier like any other: the
//   waiter leaves with BrokenBarrier, and so does the action's runner when the action returns. (Python's
//   action runs under the lock the timed-out waiter needs, so there the action decides; here a stopped
//   action runner cannot hold a timed wait for ever.)
// - wait(timeout) returns by its timeout, plus at most kInternalLockGrace (10 ms) spent on the internal
//   lock, whatever the shared bytes hold. When the internal lock cannot be taken in time (its holder is
//   stopped, or its word names a thread that does not exist), wait() throws BrokenBarrier; a participant
//   that had already claimed its slot abandons it as if it had died there (it marks the slot
//   FUTEX_OWNER_DIED itself), so whoever takes the lock next breaks the barrier. Python re-takes its lock
//   without a deadline and would hang there. reset(), abort() and n_waiting() have no timeout and wait for
//   the internal lock as long as it takes.
// - A participant that dies inside wait() before its slot is claimed (holding only the internal lock) is,
//   for the others, one that never arrived: they are not woken; the next operation to take the lock
//   repairs it and breaks the barrier (tests/kill_point_test.cpp, barrier wait #0, #1).
// - A participant that dies *outside* wait() is detected by nobody: the others wait for it as long as their
//   timeouts allow (then they break the barrier) or for ever without one. A death inside reset()/abort()
//   (holding the internal lock) breaks the barrier at the next operation.
// - reset(): waiters of the current generation get BrokenBarrier; the barrier is usable again once they
//   have left. n_waiting(): participants waiting in the filling generation (0 otherwise). broken(): whether
//   the barrier is broken.
// Costs: an arrival takes the internal lock (uncontended: no system call) and claims a slot (one CAS);
// a sleeper makes one futex_waitv per sleep; the last arrival makes one FUTEX_WAKE; leaving costs the lock
// again. Each sleep queues the sleeper on 1 + slot_count futex words.
// Limits: parties 1..kMaxParties (127: futex_waitv takes at most 128 words, and each sleeper watches
// `state` and up to 127 slots). The slots number min(2 * parties, 127); a thread that finds none free
// (more threads than slots inside wait at once) waits for one. The generation change counter has 29 bits.
// Trust: as Lock, and: attach() validates the control line and the internal lock, and the handle keeps
// the parties and slot count it validated. A process that rewrites them afterwards changes nothing this
// handle reads or writes; counts and slot fields are re-checked at use, so corrupted bytes give a broken
// barrier or wrong indices, never an access outside the barrier, and a timed wait() still returns in time.
// The barrier must stay mapped while anyone is inside wait().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/lock.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

namespace detail {

// count and slot_waiters are read and written only under the internal lock; state is written only under
// it and read by sleepers without it.
struct alignas(64) BarrierControl {
    std::uint32_t magic;           // kRawBarrierMagic
    std::uint32_t layout_version;  // kBarrierLayoutVersion
    std::uint32_t parties;         // 1..kMaxParties
    std::uint32_t slot_count;      // min(2 * parties, kMaxParties)
    std::uint32_t state;           // futex word: (changes << 3) | phase; only through std::atomic_ref
    std::uint32_t count;           // participants counted in the current generation, not yet left
    std::uint32_t slot_waiters;    // threads waiting for a free slot
    std::uint32_t reserved;        // zero
    std::uint8_t padding[32];
};

// A participant's slot: 0 when free; its TID | FUTEX_WAITERS while it is inside wait(); FUTEX_OWNER_DIED
// | FUTEX_WAITERS after the kernel saw it die there.
struct alignas(64) BarrierSlot {
    std::uint32_t word;         // only through std::atomic_ref
    std::uint32_t entered;      // 0 not counted, 1 counted in `count`, 2 counted and released; under the lock
    std::uint32_t index;        // its arrival index; under the internal lock
    std::uint32_t reserved;     // zero
    std::uint64_t reserved2;    // zero
    std::uint64_t robust_prev;  // glibc's list: the prev word, at node - 8
    std::uint64_t robust_next;  // the node linked into the participant thread's robust list
    std::uint8_t padding[24];
};

static_assert(sizeof(BarrierControl) == 64 && sizeof(BarrierSlot) == 64 && alignof(BarrierSlot) == 64,
              "control, internal lock and every slot each own a cache line");
static_assert(std::is_standard_layout_v<BarrierControl> && std::is_trivially_copyable_v<BarrierControl> &&
                  std::is_standard_layout_v<BarrierSlot> && std::is_trivially_copyable_v<BarrierSlot>,
              "shared between processes built separately: plain bytes only");
static_assert(static_cast<std::ptrdiff_t>(offsetof(BarrierSlot, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(BarrierSlot, robust_next)) == -32,
              "the kernel finds the futex word at node - 32, glibc's futex_offset");
static_assert(offsetof(BarrierSlot, robust_next) - offsetof(BarrierSlot, robust_prev) == 8,
              "glibc writes a neighbour's prev word 8 bytes before its node");

inline constexpr std::uint32_t kRawBarrierMagic = 0x5242504d;  // "MPBR"
inline constexpr std::uint32_t kBarrierLayoutVersion = 1;

}  // namespace detail

// [BarrierControl 64 | internal RawLock 64 | slot_count BarrierSlots], in memory the caller provides.
// RawBarrier is a process-local handle on those bytes: small, copyable, and holding the parties and slot
// count it validated at init()/attach(), so no operation trusts the shared copies of them afterwards.
// Handles on the same memory, in one process or several, operate on the same barrier. The memory must
// outlive every handle on it.
class MPROC_API RawBarrier {
public:
    static constexpr std::size_t kAlignment = 64;
    static constexpr std::uint32_t kMaxParties = 127;
    // How long past its deadline a timed wait() may still try to take the internal lock: a healthy holder
    // keeps it for microseconds, and without this grace a wait() whose generation was released just before
    // its deadline would break the barrier over ordinary contention.
    static constexpr std::chrono::milliseconds kInternalLockGrace{10};

    // Bytes a barrier for `parties` (1..kMaxParties, ValueError otherwise) occupies.
    static std::size_t size_for(std::uint32_t parties);
    // Makes the bytes at memory an unbroken barrier; ValueError when misaligned or too small.
    static RawBarrier init(void* memory, std::size_t size, std::uint32_t parties);
    // A barrier made by init(), validated against `size` bytes (InvalidObject naming `label` when wrong;
    // ValueError when misaligned). The parties and slot count are read once, checked, and kept.
    static RawBarrier attach(void* memory, std::size_t size, std::string_view label = "raw barrier");

    // Python's wait(timeout): nullopt waits for ever. action (may be empty) runs in the last arrival.
    std::uint32_t wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                       const std::function<void()>& action = {}) const;
    void reset() const;
    void abort() const;
    std::uint32_t parties() const noexcept { return parties_; }
    std::uint32_t n_waiting() const;
    bool broken() const noexcept;

    // The shared control line (its parties and slot_count are not what the handle uses).
    detail::BarrierControl& control() const noexcept { return *control_; }

private:
    friend class Barrier;
    RawBarrier() = default;
    RawBarrier(detail::BarrierControl* control, std::uint32_t parties, std::uint32_t slot_count) noexcept
        : control_(control), parties_(parties), slot_count_(slot_count) {}
    std::uint32_t wait_labelled(std::optional<std::chrono::nanoseconds> timeout, const std::function<void()>& action,
                                std::string_view label) const;

    detail::BarrierControl* control_ = nullptr;  // the internal lock and the slots follow it in memory
    std::uint32_t parties_ = 0;
    std::uint32_t slot_count_ = 0;
};

// A RawBarrier in a SharedMemory segment the handle owns; the action and default timeout belong to the
// handle (each process gives its own: the action runs in whichever process arrives last).
class MPROC_API Barrier {
public:
    using Action = std::function<void()>;

    // An anonymous barrier, inherited by fork()ed children.
    explicit Barrier(std::uint32_t parties, Action action = {},
                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    // A named barrier (ObjectKind::barrier), created exclusively (SystemError EEXIST when the name exists).
    static Barrier create(std::string_view name, std::uint32_t parties, Action action = {},
                          std::optional<std::chrono::nanoseconds> timeout = std::nullopt, mode_t mode = 0600);
    // An existing named barrier: SystemError(ENOENT), or InvalidObject for another kind, layout or bytes.
    static Barrier open(std::string_view name, Action action = {},
                        std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                        std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The barrier behind another handle's fd() (duplicated; the caller keeps its own), validated as open().
    static Barrier from_fd(int fd, Action action = {}, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    // The memfd of an anonymous (or from_fd) barrier, to hand to another process; -1 for a named one.
    int fd() const noexcept { return segment_.fd(); }

    Barrier(Barrier&& other) noexcept;
    Barrier& operator=(Barrier&& other) noexcept;
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;
    ~Barrier();

    // nullopt: the handle's default timeout (itself nullopt: for ever).
    std::uint32_t wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void reset();
    void abort();
    std::uint32_t parties() const;
    std::uint32_t n_waiting() const;
    bool broken() const;

    void unlink();
    const std::string& name() const noexcept { return segment_.name(); }
    // The handle's RawBarrier, with the shape this handle validated at open.
    const RawBarrier& raw() const;
    const SharedMemory& segment() const noexcept { return segment_; }

private:
    Barrier(SharedMemory segment, Action action, std::optional<std::chrono::nanoseconds> timeout);
    const RawBarrier& checked(const char* operation) const;

    SharedMemory segment_;
    RawBarrier raw_;  // control_ is null exactly when the handle was moved from
    Action action_;
    std::optional<std::chrono::nanoseconds> timeout_;
    std::string label_;
};

}  // namespace mproc
