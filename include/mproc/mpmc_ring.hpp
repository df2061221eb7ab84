// mproc/mpmc_ring.hpp — a bounded multi-producer multi-consumer ring of fixed-size slots in shared memory
// (offsets only) that survives the death of any producer or consumer at any instruction.
//
// Defines: detail::MpmcSlotHeader (the 16 bytes before each slot's payload), RawMpmcRing (a process-local
// handle on a ring).
//
// Algorithm (Vyukov's bounded MPMC queue with per-slot sequence numbers, plus a robust claim per slot):
// slot i carries `sequence`: == p when it is free for the message at position p (p & mask == i), == p + 1
// when it holds that message. A producer or consumer first *claims* the slot: it writes its TID into the
// slot's `claim` word, covered by its robust-futex list (glibc's head, list_op_pending, as mproc's Lock
// does while it takes a lock), then checks the sequence, advances the shared position, copies, stores the next sequence
// and releases the claim. If the claimer dies, the kernel sets FUTEX_OWNER_DIED in the claim word and wakes
// a sleeper on it; whoever claims such a slot next repairs it from the sequence and the positions alone:
// - a dead producer that had advanced the enqueue position: the slot is marked skipped and published, so
//   consumers step over it (the message it was putting is lost);
// - a dead consumer that had advanced the dequeue position: the slot is freed for the next lap (the message
//   it was getting is lost);
// - a claimer that had not advanced a position: the claim is simply dropped (nothing is lost).
// No message is duplicated: a message is handed out only by the consumer that advanced the dequeue
// position past it under the claim.
//
// Guarantees
// - Each message put is got at most once; it is got exactly once unless its producer or consumer died
//   inside put/get. Messages of one producer are got in the order it put them (per-producer FIFO); across
//   producers, the order of the enqueue positions they took.
// - put/get block (spin, then FUTEX_WAIT) until room/a message, the deadline, or close(); a deadline of
//   zero or less makes one attempt. A claimer's death wakes the threads waiting on that slot at once (the
//   kernel's robust-futex walk); none waits on a guess from a PID.
// - close(): as RawSpscRing.
// Progress: not lock-free in the strict sense: a thread that claimed a slot and is preempted (not dead)
// delays the others at that slot until it runs again, as in Vyukov's queue. A dead claimer delays nobody.
// A non-blocking call (try_*, a zero timeout) waits at most 1 ms for another thread's claim on the slot it
// needs, then reports no slot (Full / Empty): so a claimer preempted for longer can make a put on a queue
// that is not full report Full, and a claim word naming a thread that never releases it (a hostile or
// corrupted segment) cannot hang it. A slot sequence ahead of a position that has not moved can only come
// from corrupted bytes and is reported as InvalidObject rather than spun on.
//
// Zero-copy: put_in_place/get_in_place run a callable on the slot while this thread holds its claim;
// reserve()/peek() hand the claimed slot to the caller (MpmcReservation, MpmcLease) until commit/release.
//
// Costs: uncontended put or get: a CAS on the claim word, a store of the position, a copy, a store of the
// sequence, an exchange releasing the claim, a plain load of the eventcount's sleeper flag
// (src/eventcount.hpp), and two plain stores to the thread's list_op_pending; no system call unless
// someone sleeps. Each slot carries 16 bytes of header; the stride is rounded to 16 bytes. Producers (and
// consumers) contending for the same position serialise on that slot's claim word; put_many/get_many are
// a loop of single claims with one wake-up check.
// Not async-signal-safe: a signal handler that takes a robust lock while put/get holds a claim replaces
// list_op_pending, and a death in that window then goes unnoticed (the slot stays claimed).
// Limits: Linux with glibc (its robust-list layout: futex_offset -32), a TID fits 30 bits. Threads of
// processes in different PID namespaces must not share a ring (TIDs could collide).
// Trust: as RawSpscRing: attach() validates the constants once and the handle keeps them, so a peer that
// rewrites them later moves no access outside the ring; a stored length is clamped to the slot size.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "mproc/spsc_ring.hpp"

namespace mproc {

namespace detail {

// The 16 bytes before each slot's payload. The claim is covered by the claimer's robust list through
// list_op_pending alone (src/robust_list.hpp): its "node" is the address 32 bytes after the claim word,
// which the kernel only subtracts futex_offset from and never reads, so the slot needs no link words.
struct alignas(16) MpmcSlotHeader {
    std::uint64_t sequence;  // position this slot is free for (p) or holds (p + 1)
    std::uint32_t claim;     // futex word: claimer TID | FUTEX_WAITERS | FUTEX_OWNER_DIED; 0 when free
    std::uint32_t length;    // bytes the producer put, | kMpmcSlotSkipped for a slot repaired empty
};

static_assert(sizeof(MpmcSlotHeader) == 16, "the payload follows the 16-byte slot header");
static_assert(std::is_standard_layout_v<MpmcSlotHeader> && std::is_trivially_copyable_v<MpmcSlotHeader>,
              "shared between processes built separately: plain bytes only");

inline constexpr std::uint32_t kMpmcSlotSkipped = 0x80000000u;
// MPMC slots start at multiples of this: each begins with an MpmcSlotHeader, which must be aligned.
inline constexpr std::size_t kMpmcStrideAlignment = alignof(MpmcSlotHeader);

// What put/get do inside the claim, as a plain function and its context (no allocation, no std::function).
struct SlotWriter {
    std::size_t (*write)(void* context, std::span<std::byte> payload);  // returns the bytes written
    void* context;
};
struct SlotReader {
    void (*read)(void* context, std::span<const std::byte> message);
    void* context;
};

// What reserve()/peek() hand over between claiming a slot and finishing with it.
struct MpmcHeldSlot {
    RingGeometry ring;
    MpmcSlotHeader* header = nullptr;
    std::byte* payload = nullptr;
    std::uint64_t position = 0;
    std::uint32_t length = 0;     // peek: the message's checked length; reserve: the slot size
    std::uint32_t claimer = 0;    // the TID in the claim word: the thread that must finish it
};

}  // namespace detail

// A slot reserve() claimed for this thread to fill in place: slot() is the payload (slot_size() bytes),
// commit(length) publishes the first `length` bytes as the message. Destroyed (or cancel()ed) without a
// commit, the slot is published as skipped: consumers step over it and nothing is lost. commit() on a ring
// closed meanwhile publishes the slot as skipped and throws Closed (consumers may already have been told
// the ring is drained). Move-only.
// A hold belongs to the thread that took it: its claim is covered against that thread's death by the
// thread's list_op_pending alone. So, while a thread holds a reservation or a lease:
// - it cannot take another, nor put or get on an MPMC ring, nor acquire an mproc Lock/RLock (StateError);
//   it must not unlock an mproc lock, use a Pipe, Condition or Barrier, or lock a robust pthread mutex
//   either (those cannot be checked: a death in that window would leave the slot claimed for good);
// - commit() from another thread throws StateError; cancel(), release() or a destructor in another thread
//   or in a fork child only drop the handle (the slot is repaired when the reserving thread ends);
// - consumers that reach the held slot wait at it (blocking gets) or report empty (non-blocking ones),
//   even though qsize() counts it.
// The thread's death while it holds the reservation is the death of a producer inside put (mpmc_ring
// above): a survivor repairs the slot.
class MPROC_API MpmcReservation {
public:
    MpmcReservation() = default;
    MpmcReservation(MpmcReservation&& other) noexcept : held_(std::exchange(other.held_, {})) {}
    MpmcReservation& operator=(MpmcReservation&& other) noexcept;
    MpmcReservation(const MpmcReservation&) = delete;
    MpmcReservation& operator=(const MpmcReservation&) = delete;
    ~MpmcReservation() { cancel(); }

    explicit operator bool() const noexcept { return held_.header != nullptr; }
    std::span<std::byte> slot() const noexcept { return {held_.payload, held_.length}; }
    // The ring position the reserved slot is for (the queue's spill arena tags its blocks with it).
    std::uint64_t position() const noexcept { return held_.position; }
    // ValueError for length > slot().size() and Closed for a ring closed meanwhile (the slot is then
    // published as skipped); StateError when empty or called by another thread than the one that reserved.
    void commit(std::size_t length);
    void cancel() noexcept;

private:
    friend class RawMpmcRing;
    detail::MpmcHeldSlot held_;
};

// A message peek() claimed for this thread to read in place: message() is its bytes. release() (or the
// destructor) consumes it and frees the slot. Same thread rules as MpmcReservation (producers reaching the
// slot wait at it or report full). The thread's death while it holds the lease is a consumer's death
// inside get: the message is lost, the slot is freed.
class MPROC_API MpmcLease {
public:
    MpmcLease() = default;
    MpmcLease(MpmcLease&& other) noexcept : held_(std::exchange(other.held_, {})) {}
    MpmcLease& operator=(MpmcLease&& other) noexcept;
    MpmcLease(const MpmcLease&) = delete;
    MpmcLease& operator=(const MpmcLease&) = delete;
    ~MpmcLease() { release(); }

    explicit operator bool() const noexcept { return held_.header != nullptr; }
    std::span<const std::byte> message() const noexcept { return {held_.payload, held_.length}; }
    std::uint64_t position() const noexcept { return held_.position; }
    void release() noexcept;

private:
    friend class RawMpmcRing;
    detail::MpmcHeldSlot held_;
};

// A process-local handle on an MPMC ring in shared memory, as RawSpscRing: small, copyable, and holding
// the ring's validated RingGeometry, so no operation trusts the shared constants after init()/attach().
// The memory must outlive every handle on it and every MpmcReservation or MpmcLease taken from one.
class MPROC_API RawMpmcRing {
public:
    static constexpr std::size_t kAlignment = 128;

    // As RawSpscRing: capacity a power of two, at least 2; slot_size 1..kMaxRingSlotSize.
    static std::size_t required_size(std::size_t capacity, std::size_t slot_size);
    static RawMpmcRing init(void* memory, std::size_t size, std::size_t capacity, std::size_t slot_size);
    // InvalidObject for an SPSC ring, wrong magic or version, sizes that disagree or exceed `size`.
    static RawMpmcRing attach(void* memory, std::size_t size);

    std::size_t capacity() const noexcept { return static_cast<std::size_t>(ring_.capacity); }
    std::size_t slot_size() const noexcept { return ring_.slot_size; }

    // Copies message (at most slot_size() bytes: ValueError otherwise) into the next slot. timeout nullopt:
    // wait forever; zero or less: one attempt (full instead of timed_out).
    RingStatus put(std::span<const std::byte> message,
                   const std::optional<std::chrono::nanoseconds>& timeout = std::nullopt);
    RingStatus try_put(std::span<const std::byte> message) { return put(message, std::chrono::nanoseconds(0)); }
    // Copies the next message into out (out.size() >= slot_size(): ValueError otherwise); *length (when
    // given) receives the byte count the producer put.
    RingStatus get(std::span<std::byte> out, const std::optional<std::chrono::nanoseconds>& timeout = std::nullopt,
                   std::size_t* length = nullptr);
    RingStatus try_get(std::span<std::byte> out, std::size_t* length = nullptr) {
        return get(out, std::chrono::nanoseconds(0), length);
    }
    // Zero-copy: fill(std::span<std::byte> slot) writes the message into the slot in place and returns its
    // length (at most slot_size(); ValueError otherwise); read(std::span<const std::byte> message) sees the
    // message in place, its length checked against the slot. Both run while this thread holds the slot's
    // claim, so they must be short, must not use this ring, and must not lock or unlock an mproc Lock/RLock
    // or a robust pthread mutex (those share list_op_pending, which covers the claim; a death in that
    // window would then leave the slot claimed for good). A fill that throws publishes the slot as skipped
    // and rethrows; a read that throws consumes the message and rethrows.
    template <class Fill>
    RingStatus put_in_place(Fill&& fill, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        using F = std::remove_reference_t<Fill>;
        return put_with({[](void* context, std::span<std::byte> payload) -> std::size_t {
                             return (*static_cast<F*>(context))(payload);
                         },
                         const_cast<void*>(static_cast<const void*>(&fill))},
                        timeout);
    }
    template <class Read>
    RingStatus get_in_place(Read&& read, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        using R = std::remove_reference_t<Read>;
        return get_with({[](void* context, std::span<const std::byte> message) { (*static_cast<R*>(context))(message); },
                         const_cast<void*>(static_cast<const void*>(&read))},
                        timeout);
    }

    // The split zero-copy path: reserve() claims the next free slot for this thread (waiting as put does)
    // and hands it over in `reservation` (which must be empty: StateError otherwise); peek() claims the
    // next message (waiting as get does) and hands it over in `lease`. RingStatus as put/get; on anything
    // but ok the handle stays empty. See MpmcReservation and MpmcLease for the rules while one is held.
    RingStatus reserve(MpmcReservation& reservation, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    RingStatus peek(MpmcLease& lease, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

    // Up to count messages of slot_size() bytes each, without blocking; returns how many moved.
    std::size_t put_many(const void* messages, std::size_t count);
    std::size_t get_many(void* out, std::size_t count);

    // Messages in the ring now (slots published and not yet got, skipped slots included): exact while
    // nobody puts or gets.
    std::size_t size() const noexcept;
    bool closed() const noexcept;
    void close() noexcept;
    // Slots whose claimer died inside put/get and that a survivor repaired so far (a step over a dead
    // producer's slot, or the freeing of a dead consumer's): for monitoring; wraps at 2^32.
    std::uint32_t repaired_slots() const noexcept;

    // Whether the ring is done with `position` (a snapshot that stays true once true): its slot was freed for
    // the next lap (sequence >= position + capacity), or was published empty by the repair of a producer
    // that died putting it. Nobody holds or will hand out what was put at such a position.
    bool position_finished(std::uint64_t position) const noexcept;
    // If the slot for `position` is claimed by a thread the kernel reported dead (FUTEX_OWNER_DIED), claims
    // and repairs it as the next claimer would; otherwise nothing. StateError while this thread holds a
    // reservation or a lease (the claim would take over list_op_pending).
    void repair_if_claimer_died(std::uint64_t position);

    // The shared control block (its constants are not what the handle uses; see detail::RingGeometry).
    detail::RingControl& control() const noexcept { return *ring_.control; }
    const detail::RingGeometry& geometry() const noexcept { return ring_; }

private:
    explicit RawMpmcRing(const detail::RingGeometry& ring) noexcept : ring_(ring) {}
    RingStatus put_with(const detail::SlotWriter& writer, const std::optional<std::chrono::nanoseconds>& timeout,
                        detail::MpmcHeldSlot* hold = nullptr);
    RingStatus get_with(const detail::SlotReader& reader, const std::optional<std::chrono::nanoseconds>& timeout,
                        detail::MpmcHeldSlot* hold = nullptr);
    detail::RingGeometry ring_;
};

}  // namespace mproc
