// mproc/spsc_ring.hpp — a bounded single-producer single-consumer ring of fixed-size slots that lives
// entirely in shared memory (offsets only), with blocking, timeouts and close().
//
// Defines: RingStatus, detail::EventCountLayout and detail::RingControl (the control block every mproc
// ring starts with, shared with mpmc_ring.hpp), detail::RingGeometry (a ring's validated shape, kept
// process-locally), RingRegion, RawSpscRing (a process-local handle on a ring).
//
// Layout: [RingControl: 6 × 128 bytes | capacity slots of slot_stride bytes], each slot [payload, rounded
// up to 8 bytes | 8-byte sequence word]. The producer's index and its cached copy of the consumer's index
// share one 128-byte block, the consumer's index the next one, so the two sides never write the same cache
// line (nor its adjacent-line prefetch partner). Indices are 64-bit and only grow; a slot is index & mask,
// capacity is a power of two. A slot's sequence word says which position it holds (kSpscSlotSkipped).
//
// Contract: at most one producer thread and one consumer thread use the ring at a time; any other usage
// is invalid (messages may be duplicated or lost, nothing else: every index and length is checked before
// it is used). Producer and consumer may be in different processes.
//
// Guarantees
// - FIFO, exactly once: every message put is got once, in order.
// - put/get block (spin, then FUTEX_WAIT through an eventcount) until room/a message, the deadline, or
//   close(). A deadline of zero or less makes one attempt. close() makes later puts return
//   RingStatus::closed and gets return the remaining messages and then RingStatus::closed.
// - Batch calls (put_many/get_many) move as many slots as fit with one index store (and a sequence store
//   per slot) and one wake-up check. A producer killed inside put_many or commit(n) may have published
//   part of the batch: the consumer gets that part, and the rest is lost (skipped) as one message would be.
// - Zero-copy: reserve() gives the producer slot memory to fill in place, commit() publishes it; peek()
//   gives the consumer the next slots in place, release() frees them.
//
// Costs: an uncontended put is a copy of the message, a plain store of its index, a store-release of the
// slot's sequence word and a plain load of the eventcount's sleeper flag (a locked exchange instead in a
// process that cannot use membarrier(), see src/eventcount.hpp); it reads the consumer's index only when
// its cached copy says full. An uncontended get reads the slot's sequence word (never the producer's
// index: polling it cost every put a second cache-line transfer), copies the message out and stores its
// index with release.
// No system call unless the other side sleeps. A sleeping side costs one FUTEX_WAIT and the other side's
// next operation one FUTEX_WAKE; operations after it make none until a thread parks again.
//
// Participant death (SIGKILL at any instruction)
// - A producer killed inside put loses the message it was putting (it is never half-visible: the sequence
//   store that publishes it is the last write). Another producer may then attach and continue, once the old
//   one is known dead (waitpid, a pidfd: that is what makes the dead one's stores visible to it); if the
//   dead one had advanced its index past slots it never published, the next put publishes them as skipped
//   and the consumer steps over them.
// - A consumer killed inside get: the message it was taking is either still at the head (it had not yet
//   advanced the index: the next consumer gets it) or gone (it had). A consumer killed between peek() and
//   release() leaves the messages for the next consumer, which sees them again.
// - The single-consumer contract after a death: start (or attach) exactly one new consumer, and only once
//   the old one is known dead (waitpid, a pidfd): two consumers at a time are invalid usage.
// - A thread killed asleep leaves the eventcount's flag set: the next operation of the other side makes
//   one FUTEX_WAKE that finds nobody and clears it.
//
// Trust: attach() validates the control block (magic, version, sizes that fit the memory) and the handle
// keeps the validated capacity, slot size and stride in its own memory: a peer that rewrites the shared
// constants afterwards changes nothing this handle does. Indices and sequence words are re-checked at use
// (a consumer takes a slot only when its sequence word equals its position + 1 exactly; the producer's
// distance to the consumer is checked against the capacity; every walk is bounded by the capacity), so
// corrupted bytes give lost or repeated messages, never an access outside the ring.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

#include "mproc/kill_point.hpp"

namespace mproc {

// What a ring operation did.
enum class RingStatus : std::uint32_t {
    ok = 0,
    empty = 1,      // get: no message now (non-blocking call)
    full = 2,       // put: no room now (non-blocking call)
    closed = 3,     // put on a closed ring; get on a closed ring with no message left
    timed_out = 4,  // a blocking call reached its deadline
};

namespace detail {

// An eventcount's shared words (operations: src/eventcount.hpp). `epoch` is the futex word.
struct EventCountLayout {
    std::uint32_t epoch;    // notifications so far (wraps)
    std::uint32_t waiters;  // non-zero while a thread may be in, or about to enter, FUTEX_WAIT on epoch
};

// 128 bytes of one writer.
struct alignas(128) RingSide {
    std::uint64_t position;      // next index this side uses; written by its side only
    std::uint64_t cached_other;  // producer: its last-read copy of the consumer's position (a lower bound);
                                 // unused on the consumer's side (it reads the slots' sequence words)
    std::uint8_t padding[112];
};

// 128 bytes around one eventcount.
struct alignas(128) RingWaitLine {
    EventCountLayout event;
    std::uint8_t padding[120];
};

// JoinableQueue's counter of tasks put and not yet marked done, and the eventcount join() sleeps on.
struct alignas(128) RingTaskLine {
    std::uint64_t unfinished;
    EventCountLayout all_done;
    std::uint8_t padding[112];
};

struct alignas(128) RingConstants {
    std::uint32_t magic;           // kSpscRingMagic / kMpmcRingMagic
    std::uint32_t layout_version;  // kSpscRingLayoutVersion / kMpmcRingLayoutVersion
    std::uint32_t slot_size;       // bytes of payload per slot
    std::uint32_t slot_stride;     // bytes from one slot to the next
    std::uint64_t capacity;        // slots; a power of two
    std::uint64_t total_size;      // bytes of control block and slots
    std::uint32_t closed;          // 0, then 1 once close() was called; accessed through std::atomic_ref
    std::uint32_t repaired_slots;  // MPMC: slots repaired after their claimer died (statistics; wraps)
    std::uint8_t padding[88];
};

// The control block of every mproc ring.
struct RingControl {
    RingConstants constants;   // written by init(), then read-only but for `closed`
    RingSide producer;         // enqueue position
    RingSide consumer;         // dequeue position
    RingWaitLine not_empty;    // consumers sleep here
    RingWaitLine not_full;     // producers sleep here
    RingTaskLine tasks;        // JoinableQueue only
};

static_assert(sizeof(RingSide) == 128 && sizeof(RingWaitLine) == 128 && sizeof(RingTaskLine) == 128 &&
                  sizeof(RingConstants) == 128,
              "each writer owns whole 128-byte blocks: no false sharing, nor with the adjacent-line prefetcher");
static_assert(sizeof(RingControl) == 6 * 128 && alignof(RingControl) == 128, "the slots start 128-aligned");
static_assert(offsetof(RingControl, consumer) - offsetof(RingControl, producer) == 128,
              "producer and consumer indices 128 bytes apart");
static_assert(std::is_standard_layout_v<RingControl> && std::is_trivially_copyable_v<RingControl>,
              "shared between processes built separately: plain bytes only");

inline constexpr std::uint32_t kSpscRingMagic = 0x53504d52;  // "RMPS"
inline constexpr std::uint32_t kMpmcRingMagic = 0x4d504d52;  // "RMPM"
// Layout versions, per ring kind. SPSC 2: each slot ends with a sequence word (see SpscFastPath).
inline constexpr std::uint32_t kMpmcRingLayoutVersion = 1;
inline constexpr std::uint32_t kSpscRingLayoutVersion = 2;
// Slots above this size are refused (ValueError): a ring is for messages, not for bulk data.
inline constexpr std::uint32_t kMaxRingSlotSize = 1u << 24;
inline constexpr std::uint64_t kMaxRingCapacity = 1ull << 32;
// SPSC slots start at multiples of this (the word copy's 8-byte stores stay aligned).
inline constexpr std::size_t kSpscStrideAlignment = 8;
// An SPSC slot is [payload, rounded up to 8 bytes | sequence: 8 bytes]. The sequence is p + 1 once the
// slot holds the message at position p, and (p + 1) ^ kSpscSlotSkipped once a producer taking over
// published it empty (a producer that died putting it had moved its index past it): the consumer steps
// over it. Both compare exactly, so no position is mistaken for the other form. The consumer reads the
// sequence, never the producer's position: polling the position made every put pay a second cache-line
// transfer.
inline constexpr std::size_t kSpscSequenceBytes = sizeof(std::uint64_t);
inline constexpr std::uint64_t kSpscSlotSkipped = std::uint64_t{1} << 63;

// The sequence of the SPSC slot for `position` once a repair published it empty.
constexpr std::uint64_t spsc_skipped_sequence(std::uint64_t position) noexcept {
    return (position + 1) ^ kSpscSlotSkipped;
}

// Whether `sequence` says the SPSC slot for `position` was published, with a message or empty.
constexpr bool spsc_published(std::uint64_t sequence, std::uint64_t position) noexcept {
    return sequence == position + 1 || sequence == spsc_skipped_sequence(position);
}

// The sequence word of the SPSC slot at `slot` (stride bytes long).
inline std::atomic_ref<std::uint64_t> spsc_sequence_of(std::byte* slot, std::uint64_t stride) noexcept {
    return std::atomic_ref(*reinterpret_cast<std::uint64_t*>(slot + stride - kSpscSequenceBytes));
}


// The eventcount's notify() (N2..N4 of src/eventcount.hpp, which holds the algorithm and its proof), here so
// that the inline fast paths below share it. notify_fence_elided: this process is registered for
// membarrier(GLOBAL_EXPEDITED), so N2 needs no fence. wake_sleepers: N2'..N4, out of line.
extern MPROC_API std::atomic<bool> notify_fence_elided;
MPROC_API void wake_sleepers(EventCountLayout& event) noexcept;

// N2..N4: called after the release store (N1) that made the waited-for condition true.
inline void notify(EventCountLayout& event) noexcept {
    // relaxed: set once per process image, before this process could reach a ring.
    if (notify_fence_elided.load(std::memory_order_relaxed)) {
        // The compiler must not move N2 above N1; the CPU may, and the waiter's membarrier covers that.
        std::atomic_signal_fence(std::memory_order_seq_cst);
        // relaxed: N2; its order with N1 comes from the waiter's membarrier (E2), not from this load.
        if (std::atomic_ref(event.waiters).load(std::memory_order_relaxed) == 0) return;
    }
    wake_sleepers(event);
}

// Messages up to this size are copied into a slot by copy_message_in() in 8-byte words; larger ones by
// memcpy, whose wide moves pay off there and whose first and last lines are a small part of the copy.
inline constexpr std::size_t kWordCopyLimit = 256;

// Copies a caller's message into a slot (P4). The caller has usually just written the message field by
// field, and those stores may still sit in the store buffer: a load that spans more than one of them
// cannot be forwarded and waits until they reach the cache — behind the previous put's index store, which
// waits for the consumer's copy of that line to be invalidated. memcpy's 16- and 32-byte loads made every
// 64-byte put pay that round trip (docs/benchmarks.md, "Why 64-byte puts copy in words"). An 8-byte load
// is forwarded from one store that covers it, so messages written in 8-byte (or wider) fields no longer
// wait; fields of 4 bytes or less still do. The empty asm keeps the compiler from merging the words back
// into vector moves.
[[gnu::always_inline]] inline void copy_message_in(std::byte* slot, const void* message, std::size_t size) noexcept {
    const auto* from = static_cast<const std::byte*>(message);
    if (size > kWordCopyLimit) {
        std::memcpy(slot, from, size);
        return;
    }
    std::size_t done = 0;
    for (; done + sizeof(std::uint64_t) <= size; done += sizeof(std::uint64_t)) {
        std::uint64_t word;
        std::memcpy(&word, from + done, sizeof word);
        asm("" : "+r"(word));
        std::memcpy(slot + done, &word, sizeof word);
    }
    if (done != size) std::memcpy(slot + done, from + done, size - done);
}

// A ring's shape as init() made it or attach() validated it, held in process-local memory. Every slot
// address and copy length comes from here, never from the shared constants again: a peer that rewrites
// those after attach (a hostile or broken process) cannot move an access outside the ring or past a
// caller's buffer. Handles expose it only as const: it never changes once the handle is made.
struct RingGeometry {
    RingControl* control = nullptr;
    std::byte* slots = nullptr;     // the first slot: control + sizeof(RingControl)
    std::uint64_t capacity = 0;     // a power of two, 2..kMaxRingCapacity
    std::uint64_t stride = 0;       // bytes from one slot to the next
    std::uint32_t slot_size = 0;    // payload bytes per slot (<= stride)

    std::byte* slot_at(std::uint64_t position) const noexcept {
        return slots + (position & (capacity - 1)) * stride;
    }
};

// The uncontended put and get of an SPSC ring, inline, on the ring's RingGeometry. One attempt each: false
// means "take the full path" (full, empty, closed, a size that is not the slot size, or no ring).
class MPROC_API SpscFastPath {
public:
    SpscFastPath() = default;
    explicit SpscFastPath(const RingGeometry& ring) noexcept
        : control_(ring.control), slots_(ring.slots), mask_(ring.capacity - 1), stride_(ring.stride),
          slot_size_(ring.slot_size) {}

    // P1..P7 of src/spsc_ring.cpp.
    // Always inlined (as are QueueCore's put_fast/get_fast): the caller's constant size then reaches the
    // copies, which become a few moves instead of a call to memcpy.
    [[gnu::always_inline]] bool try_put(const void* message, std::size_t size) noexcept {
        if (control_ == nullptr || size > slot_size_) return false;
        RingControl& control = *control_;
        // acquire: pairs with the seq_cst store of close(); a closed ring takes the full path (Closed).
        if (std::atomic_ref(control.constants.closed).load(std::memory_order_acquire) != 0) return false;
        // relaxed: P1; this producer's own last store, or a dead producer's, which is visible once its death
        // is known (the contract: a producer takes over only then). No data comes with the position.
        const std::uint64_t position = std::atomic_ref(control.producer.position).load(std::memory_order_relaxed);
        // relaxed: P2, as P1. A previous slot not published means a producer died between P5 and P6: the
        // full path repairs it.
        const std::uint64_t previous = spsc_sequence_of(slot_at(position - 1), stride_).load(std::memory_order_relaxed);
        if (!spsc_published(previous, position - 1)) return false;
        // acquire: pairs with the release store below by whichever producer refreshed the cache (one that
        // took over from a dead producer included), so the consumer's finished reads come with the value.
        std::uint64_t consumer = std::atomic_ref(control.producer.cached_other).load(std::memory_order_acquire);
        if (position - consumer > mask_) {
            // acquire: P3, pairs with C5's release so that the consumer's reads of the freed slot are done.
            consumer = std::atomic_ref(control.consumer.position).load(std::memory_order_acquire);
            // release: pairs with the acquire load of the cache above.
            std::atomic_ref(control.producer.cached_other).store(consumer, std::memory_order_release);
            if (position - consumer > mask_) return false;  // full (or a corrupted distance)
        }
        std::byte* slot = slot_at(position);
        copy_message_in(slot, message, size);  // P4
        MPROC_KILL_POINT(spsc_put, 0);  // copied, nothing visible: the message is lost
        // relaxed: P5; the position carries no data (the consumer reads the sequence): it is where a
        // producer taking over starts, and what size() counts.
        std::atomic_ref(control.producer.position).store(position + 1, std::memory_order_relaxed);
        MPROC_KILL_POINT(spsc_put, 1);  // position past an unpublished slot: the next put repairs it
        // release: P6, pairs with C2; the slot's bytes are written before the sequence that publishes them.
        spsc_sequence_of(slot, stride_).store(position + 1, std::memory_order_release);
        MPROC_KILL_POINT(spsc_put, 2);  // published, a sleeping consumer not woken
        notify(control.not_empty.event);  // P7
        return true;
    }

    // C1..C6: copies a whole slot (size must be the slot size).
    [[gnu::always_inline]] bool try_get(void* out, std::size_t size) noexcept {
        if (control_ == nullptr || size != slot_size_) return false;
        RingControl& control = *control_;
        // acquire: C1; a consumer taking over from a dead one sees the last position it released.
        const std::uint64_t position = std::atomic_ref(control.consumer.position).load(std::memory_order_acquire);
        std::byte* slot = slot_at(position);
        // acquire: C2, pairs with P6 so that the slot's bytes written in P4 are visible. Anything but
        // position + 1 (nothing yet, a skipped slot, corrupted bytes) takes the full path.
        if (spsc_sequence_of(slot, stride_).load(std::memory_order_acquire) != position + 1) return false;
        std::memcpy(out, slot, size);  // C4
        MPROC_KILL_POINT(spsc_get, 0);  // read, not taken: the next consumer gets the message
        // release: C5, pairs with P3; the slot is read before it is handed back.
        std::atomic_ref(control.consumer.position).store(position + 1, std::memory_order_release);
        MPROC_KILL_POINT(spsc_get, 1);  // taken (and lost with this consumer), a sleeping producer not woken
        notify(control.not_full.event);  // C6
        return true;
    }

private:
    RingControl* control_ = nullptr;
    std::byte* slots_ = nullptr;
    std::uint64_t mask_ = 0;
    std::uint64_t stride_ = 0;
    std::uint64_t slot_size_ = 0;

    std::byte* slot_at(std::uint64_t position) const noexcept { return slots_ + (position & mask_) * stride_; }
};

}  // namespace detail

// Slots to fill (reserve) or read (peek) in place: `count` slots of `stride` bytes from `data`, each
// holding slot_size() bytes of payload. Write only those: an SPSC slot's last 8 bytes are its sequence
// word. Empty when count == 0.
struct RingRegion {
    std::byte* data = nullptr;
    std::size_t count = 0;
    std::size_t stride = 0;
    std::byte* slot(std::size_t index) const noexcept { return data + index * stride; }
};

// A process-local handle on an SPSC ring in shared memory: small, copyable, and holding the ring's
// RingGeometry (see there), so its operations never trust the shared constants after init()/attach().
// Handles on the same memory, in one process or several, operate on the same ring. The memory must outlive
// every handle on it and every RingRegion taken from one.
class MPROC_API RawSpscRing {
public:
    static constexpr std::size_t kAlignment = 128;

    // Bytes a ring of `capacity` slots (a power of two, at least 2) of `slot_size` (1..kMaxRingSlotSize)
    // bytes occupies. ValueError otherwise.
    static std::size_t required_size(std::size_t capacity, std::size_t slot_size);
    // Makes the required_size() bytes at memory an empty ring. memory must be kAlignment-aligned and hold
    // `size` >= required_size() bytes (ValueError otherwise). Call once, before any other thread uses them.
    static RawSpscRing init(void* memory, std::size_t size, std::size_t capacity, std::size_t slot_size);
    // A ring made by init(), validated (InvalidObject: too few bytes, wrong magic or version, an MPMC ring,
    // sizes that disagree; ValueError: misaligned). The constants are read once, checked, and kept.
    static RawSpscRing attach(void* memory, std::size_t size);

    std::size_t capacity() const noexcept { return static_cast<std::size_t>(ring_.capacity); }
    std::size_t slot_size() const noexcept { return ring_.slot_size; }

    // Producer. `message` holds at most slot_size() bytes (ValueError otherwise); the rest of the slot is
    // left as it was. timeout nullopt: wait forever; zero or less: one attempt (full instead of timed_out).
    RingStatus put(std::span<const std::byte> message,
                   const std::optional<std::chrono::nanoseconds>& timeout = std::nullopt);
    RingStatus try_put(std::span<const std::byte> message) { return put(message, std::chrono::nanoseconds(0)); }
    // Copies up to `count` slot_size()-byte messages from `messages` (count * slot_size() bytes) without
    // blocking; returns how many went in (one index store for all, then a sequence store per slot).
    std::size_t put_many(const void* messages, std::size_t count);
    // Up to `count` free slots in a row (fewer at the end of the ring, none when full) to fill in place.
    RingRegion reserve(std::size_t count = 1);
    // Publishes the first `count` slots of the last reserve() (count <= its count).
    void commit(std::size_t count = 1);

    // Consumer. Copies the next message's slot_size() bytes into out (out.size() >= slot_size(),
    // ValueError otherwise).
    RingStatus get(std::span<std::byte> out, const std::optional<std::chrono::nanoseconds>& timeout = std::nullopt);
    RingStatus try_get(std::span<std::byte> out) { return get(out, std::chrono::nanoseconds(0)); }
    // Copies up to `count` messages into out (count * slot_size() bytes); returns how many.
    std::size_t get_many(void* out, std::size_t count);
    // Up to `count` messages in a row, in place; none when empty.
    RingRegion peek(std::size_t count = 1);
    // Frees the first `count` slots of the last peek().
    void release(std::size_t count = 1);

    // Messages in the ring now: exact while nobody puts or gets, else a value it had during the call. A
    // slot that a producer killed inside put left unpublished counts until the next put has published it as
    // skipped and a get has stepped over it.
    std::size_t size() const noexcept;
    // Whether the slot at the consumer's head is published (a message, or a slot to step over): what a get
    // looks at first. Unlike size() > 0, false for a slot a dead producer left unpublished.
    bool ready_to_get() const noexcept;
    bool closed() const noexcept;
    // Marks the ring closed and wakes every sleeper on both sides. Idempotent.
    void close() noexcept;

    // The shared control block (its constants are not what the handle uses; see RingGeometry).
    detail::RingControl& control() const noexcept { return *ring_.control; }
    const detail::RingGeometry& geometry() const noexcept { return ring_; }

private:
    explicit RawSpscRing(const detail::RingGeometry& ring) noexcept : ring_(ring) {}
    detail::RingGeometry ring_;
};

}  // namespace mproc
