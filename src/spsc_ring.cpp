// RawSpscRing: Lamport's ring with a cached consumer index and a sequence word per slot, an eventcount per
// direction.
//
// Producer (one thread at a time)                   Consumer (one thread at a time)
//   P1 pos = producer.position                        C1 pos = consumer.position
//   P2 the slot before pos published (its sequence    C2 slot pos's sequence (acquire): pos + 1: ready;
//      is pos), else repair_unpublished_slots()          (pos + 1) | skipped: step over it (C5 for it);
//   P3 free = capacity - (pos - cached_consumer);        else nothing to get
//      if 0: cached_consumer = consumer.position      C3 batches: the following slots likewise
//      (acquire)
//   P4 copy the message into slot pos & mask          C4 copy slot pos & mask out
//   P5 producer.position = pos + n (relaxed)          C5 consumer.position = pos + n (release)
//   P6 each slot's sequence = its position + 1        C6 notify(not_full)
//      (release)
//   P7 notify(not_empty)
// P6 pairs with C2: a consumer that sees a slot's sequence sees the bytes written in P4. C5 pairs with P3:
// a producer that sees a slot freed overwrites it only after C4 finished reading it. The consumer never
// reads the producer's position: each put then moves one cache line to the consumer (the slot's), where
// polling the position moved two.
// The producer's position carries no data; it tells a producer taking over from a dead one where to start
// (and size() what to count). A producer killed between P5 and P6 leaves slots the position passed but
// nobody published: the consumer would wait at the first for ever. The next put finds the slot before its
// position unpublished (P2) and publishes such slots as skipped: their messages, which the dead producer
// was putting, are lost, nothing else. The initial sequences (init()) let the first put pass P2 and match no
// position of their slot, so a consumer started at any position finds nothing before the first put.
// The cached consumer position lives in the producer's 128-byte block; it is a lower bound of the
// consumer's position (positions only grow), so a stale cache can only make the producer look again, never
// use a slot it does not own. Distances are clamped to the capacity and sequences compared exactly, so a
// corrupted position or sequence gives lost or repeated messages, never a copy outside the ring.
// Blocking: a side that finds no slot spins, then sleeps on the other side's eventcount (eventcount.hpp),
// re-testing "slot available or ring closed". P7/C6 make a system call only while somebody sleeps.
#include "mproc/spsc_ring.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "deadline.hpp"
#include "eventcount.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "ring_common.hpp"

namespace mproc {
namespace {

using detail::Deadline;
using detail::RingControl;
using detail::RingGeometry;
using detail::cached_of;
using detail::position_of;

constexpr const char* kLabel = "spsc ring";

// [payload | sequence]: the sequence follows the payload, so that the line the consumer polls is the one
// the producer writes last (a sequence before the payload measured no faster than polling the position).
std::size_t spsc_stride(std::size_t slot_size) noexcept {
    return detail::round_up(slot_size, detail::kSpscStrideAlignment) + detail::kSpscSequenceBytes;
}

std::atomic_ref<std::uint64_t> sequence_at(const RingGeometry& ring, std::uint64_t position) noexcept {
    return detail::spsc_sequence_of(ring.slot_at(position), ring.stride);
}

// P2 in the full path: publishes as skipped the slots before `position` that a producer killed between P5
// and P6 left unpublished (at most the capacity, for corrupted bytes), oldest first.
void repair_unpublished_slots(const RingGeometry& ring, std::uint64_t position) noexcept {
    std::uint64_t first = position;
    // relaxed: a dead producer's stores are visible once its death is known (its exit is a full barrier, and
    // whoever learnt of it synchronised with that); a live producer reads its own.
    while (position - first < ring.capacity &&
           !detail::spsc_published(sequence_at(ring, first - 1).load(std::memory_order_relaxed), first - 1))
        --first;
    for (std::uint64_t hole = first; hole != position; ++hole) {
        // release: pairs with C2, as P6 does; the consumer steps over the slot without reading it.
        sequence_at(ring, hole).store(detail::spsc_skipped_sequence(hole), std::memory_order_release);
        MPROC_KILL_POINT(spsc_repair, 0);  // the holes up to this one skipped: the next producer does the rest
    }
    if (first != position) {
        MPROC_KILL_POINT(spsc_repair, 1);  // all skipped, a sleeping consumer not woken
        detail::notify(ring.control->not_empty.event);
    }
}

struct Window {
    std::uint64_t position;
    std::uint64_t count;
};

// P1..P3: the producer's position and how many slots after it are free (up to `wanted`, 0 when full).
Window free_slots(const RingGeometry& ring, std::uint64_t wanted) noexcept {
    RingControl& control = *ring.control;
    const std::uint64_t capacity = ring.capacity;
    // relaxed: P1, as in SpscFastPath::try_put.
    const std::uint64_t position = position_of(control.producer).load(std::memory_order_relaxed);
    repair_unpublished_slots(ring, position);  // P2
    // acquire: pairs with the release store below, made by whichever producer refreshed the cache last (a
    // producer taking over from a dead one included): the consumer's reads it had acquired come with it.
    std::uint64_t consumer = cached_of(control.producer).load(std::memory_order_acquire);
    std::uint64_t used = position - consumer;
    if (used >= capacity || capacity - used < wanted) {
        // acquire: P3, pairs with C5 so that the consumer's reads of the freed slots are finished.
        consumer = position_of(control.consumer).load(std::memory_order_acquire);
        // release: pairs with the acquire load of the cache above (see there).
        cached_of(control.producer).store(consumer, std::memory_order_release);
        used = position - consumer;
    }
    const std::uint64_t free = used >= capacity ? 0 : capacity - used;
    return {position, std::min(free, wanted)};
}

// C1..C3: the consumer's position and how many messages after it are ready (up to `wanted`). Slots
// published as skipped at the head are stepped over first (C5, C6 for them).
Window ready_slots(const RingGeometry& ring, std::uint64_t wanted) noexcept {
    RingControl& control = *ring.control;
    // acquire: C1; a consumer taking over from a dead one sees the last position it released.
    std::uint64_t position = position_of(control.consumer).load(std::memory_order_acquire);
    bool stepped = false;
    for (std::uint64_t steps = 0; steps < ring.capacity; ++steps) {
        // acquire: C2, pairs with the release that published the skip (repair_unpublished_slots).
        if (sequence_at(ring, position).load(std::memory_order_acquire) != detail::spsc_skipped_sequence(position))
            break;
        ++position;
        // release: C5 for a slot nobody reads; pairs with P3 as C5 does.
        position_of(control.consumer).store(position, std::memory_order_release);
        MPROC_KILL_POINT(spsc_get, 2);  // stepped over a skipped slot; the next consumer goes on from here
        stepped = true;
    }
    if (stepped) detail::notify(control.not_full.event);
    std::uint64_t ready = 0;
    // acquire: C2, C3, pair with P6 so that the slots' bytes written in P4 are visible.
    while (ready < wanted && ready < ring.capacity &&
           sequence_at(ring, position + ready).load(std::memory_order_acquire) == position + ready + 1)
        ++ready;
    return {position, ready};
}

// P5..P7.
void publish_puts(const RingGeometry& ring, std::uint64_t position, std::uint64_t count) noexcept {
    // relaxed: P5; no data goes with the position (see the top of this file).
    position_of(ring.control->producer).store(position + count, std::memory_order_relaxed);
    MPROC_KILL_POINT(spsc_put, 1);  // position past unpublished slots: the next put repairs them
    for (std::uint64_t i = 0; i < count; ++i) {
        // release: P6, pairs with C2; the slot's bytes are written before the sequence that publishes them.
        sequence_at(ring, position + i).store(position + i + 1, std::memory_order_release);
        MPROC_KILL_POINT(spsc_put, 3);  // the batch published up to this slot, the rest lost
    }
    MPROC_KILL_POINT(spsc_put, 2);  // published, a sleeping consumer not woken
    detail::notify(ring.control->not_empty.event);  // P7
}

// C5, C6.
void release_gets(RingControl& control, std::uint64_t position, std::uint64_t count) noexcept {
    // release: C5, pairs with P3; the slots are read before they are handed back.
    position_of(control.consumer).store(position + count, std::memory_order_release);
    MPROC_KILL_POINT(spsc_get, 1);  // taken (and lost with this consumer), a sleeping producer not woken
    detail::notify(control.not_full.event);
}

std::optional<Deadline> deadline_for(const std::optional<std::chrono::nanoseconds>& timeout) {
    if (!timeout) return std::nullopt;
    return Deadline::after(*timeout);
}

bool non_blocking(const std::optional<std::chrono::nanoseconds>& timeout) noexcept {
    return timeout && timeout->count() <= 0;
}

}  // namespace

std::size_t RawSpscRing::required_size(std::size_t capacity, std::size_t slot_size) {
    detail::check_ring_shape(capacity, slot_size, kLabel);
    return detail::ring_total_size(capacity, spsc_stride(slot_size));
}

RawSpscRing RawSpscRing::init(void* memory, std::size_t size, std::size_t capacity, std::size_t slot_size) {
    detail::register_for_fence_free_notify();  // before this process can notify through the ring
    const std::size_t required = required_size(capacity, slot_size);
    detail::check_placement(memory, size, required, kLabel, "init");
    const std::size_t stride = spsc_stride(slot_size);
    detail::place_ring_control(memory, detail::kSpscRingMagic, capacity, slot_size, stride);
    const RingGeometry ring = detail::geometry_of(memory, capacity, stride, static_cast<std::uint32_t>(slot_size));
    for (std::uint64_t i = 0; i < capacity; ++i) {
        // The last slot: published empty at position -1, which is what P2 looks for before the first put.
        // The others: i + 2, the sequence of position i + 1, which lies in another slot, so that no position
        // of slot i, however corrupted, finds it published.
        const std::uint64_t initial = i + 1 == capacity ? detail::spsc_skipped_sequence(~std::uint64_t{0}) : i + 2;
        std::memcpy(ring.slot_at(i) + stride - detail::kSpscSequenceBytes, &initial, sizeof initial);
    }
    return RawSpscRing(ring);
}

RawSpscRing RawSpscRing::attach(void* memory, std::size_t size) {
    detail::register_for_fence_free_notify();  // before this process can notify through the ring
    detail::check_placement(memory, size, 0, kLabel, "attach");
    const detail::RingConstants constants = 
        detail::validate_ring_control(memory, size, detail::kSpscRingMagic, detail::kSpscSequenceBytes,
                                      detail::kSpscStrideAlignment, kLabel);
    return RawSpscRing(detail::geometry_of(memory, constants.capacity, constants.slot_stride, constants.slot_size));
}

RingStatus RawSpscRing::put(std::span<const std::byte> message, const std::optional<std::chrono::nanoseconds>& timeout) {
    if (message.size() > slot_size())
        throw ValueError(std::string(kLabel) + ": put: a message of " + std::to_string(message.size()) +
                         " bytes does not fit a slot of " + std::to_string(slot_size()));
    if (detail::ring_closed(*ring_.control)) return RingStatus::closed;
    Window window = free_slots(ring_, 1);
    if (window.count == 0) {
        if (non_blocking(timeout)) return RingStatus::full;
        const std::optional<Deadline> deadline = deadline_for(timeout);
        const bool ready = detail::await_condition(ring_.control->not_full.event, deadline ? &*deadline : nullptr, [&] {
            window = free_slots(ring_, 1);
            return window.count != 0 || detail::ring_closed(*ring_.control);
        });
        if (detail::ring_closed(*ring_.control)) return RingStatus::closed;
        if (!ready) return RingStatus::timed_out;
    }
    detail::copy_message_in(ring_.slot_at(window.position), message.data(), message.size());  // P4
    MPROC_KILL_POINT(spsc_put, 0);  // copied, nothing visible: the message is lost
    publish_puts(ring_, window.position, 1);
    return RingStatus::ok;
}

std::size_t RawSpscRing::put_many(const void* messages, std::size_t count) {
    if (count == 0 || detail::ring_closed(*ring_.control)) return 0;
    const Window window = free_slots(ring_, count);
    const std::size_t size = slot_size();
    const auto* source = static_cast<const std::byte*>(messages);
    for (std::uint64_t i = 0; i < window.count; ++i)
        detail::copy_message_in(ring_.slot_at(window.position + i), source + i * size, size);  // P4
    if (window.count != 0) MPROC_KILL_POINT(spsc_put, 0);  // copied, nothing visible: the batch is lost
    if (window.count != 0) publish_puts(ring_, window.position, window.count);
    return static_cast<std::size_t>(window.count);
}

RingRegion RawSpscRing::reserve(std::size_t count) {
    if (count == 0 || detail::ring_closed(*ring_.control)) return {};
    const Window window = free_slots(ring_, count);
    const std::uint64_t capacity = ring_.capacity;
    const std::uint64_t to_end = capacity - (window.position & (capacity - 1));
    return {ring_.slot_at(window.position), static_cast<std::size_t>(std::min(window.count, to_end)),
            ring_.stride};
}

void RawSpscRing::commit(std::size_t count) {
    if (count == 0) return;
    const Window window = free_slots(ring_, count);
    if (window.count < count)
        throw StateError(std::string(kLabel) + ": commit: " + std::to_string(count) + " slots, only " +
                         std::to_string(window.count) + " were free to reserve");
    publish_puts(ring_, window.position, count);
}

RingStatus RawSpscRing::get(std::span<std::byte> out, const std::optional<std::chrono::nanoseconds>& timeout) {
    if (out.size() < slot_size())
        throw ValueError(std::string(kLabel) + ": get: a buffer of " + std::to_string(out.size()) +
                         " bytes cannot hold a slot of " + std::to_string(slot_size()));
    Window window = ready_slots(ring_, 1);
    if (window.count == 0) {
        if (detail::ring_closed(*ring_.control)) {
            window = ready_slots(ring_, 1);  // a message put before close() is still delivered
            if (window.count == 0) return RingStatus::closed;
        } else if (non_blocking(timeout)) {
            return RingStatus::empty;
        } else {
            const std::optional<Deadline> deadline = deadline_for(timeout);
            bool closed = false;
            const bool ready = detail::await_condition(ring_.control->not_empty.event, deadline ? &*deadline : nullptr, [&] {
                closed = detail::ring_closed(*ring_.control);
                window = ready_slots(ring_, 1);
                return window.count != 0 || closed;
            });
            if (window.count == 0) return closed ? RingStatus::closed : (ready ? RingStatus::empty : RingStatus::timed_out);
        }
    }
    std::memcpy(out.data(), ring_.slot_at(window.position), slot_size());  // C4
    MPROC_KILL_POINT(spsc_get, 0);  // read, not taken: the next consumer gets the message
    release_gets(*ring_.control, window.position, 1);
    return RingStatus::ok;
}

std::size_t RawSpscRing::get_many(void* out, std::size_t count) {
    if (count == 0) return 0;
    const Window window = ready_slots(ring_, count);
    const std::size_t size = slot_size();
    auto* target = static_cast<std::byte*>(out);
    for (std::uint64_t i = 0; i < window.count; ++i)
        std::memcpy(target + i * size, ring_.slot_at(window.position + i), size);  // C4
    if (window.count != 0) MPROC_KILL_POINT(spsc_get, 0);  // read, not taken: the next consumer gets them
    if (window.count != 0) release_gets(*ring_.control, window.position, window.count);
    return static_cast<std::size_t>(window.count);
}

RingRegion RawSpscRing::peek(std::size_t count) {
    if (count == 0) return {};
    const Window window = ready_slots(ring_, count);
    const std::uint64_t capacity = ring_.capacity;
    const std::uint64_t to_end = capacity - (window.position & (capacity - 1));
    return {ring_.slot_at(window.position), static_cast<std::size_t>(std::min(window.count, to_end)),
            ring_.stride};
}

void RawSpscRing::release(std::size_t count) {
    if (count == 0) return;
    const Window window = ready_slots(ring_, count);
    if (window.count < count)
        throw StateError(std::string(kLabel) + ": release: " + std::to_string(count) + " slots, only " +
                         std::to_string(window.count) + " were ready to peek");
    release_gets(*ring_.control, window.position, count);
}

std::size_t RawSpscRing::size() const noexcept { return detail::ring_size(ring_); }

bool RawSpscRing::ready_to_get() const noexcept {
    // acquire: C1, as ready_slots().
    std::uint64_t position = position_of(ring_.control->consumer).load(std::memory_order_acquire);
    // Skipped slots are looked past, not stepped over: this only reads (wait() may run beside a get).
    for (std::uint64_t steps = 0; steps < ring_.capacity; ++steps, ++position) {
        // acquire: C2, pairs with P6 (or the release that published a skip).
        const std::uint64_t sequence = sequence_at(ring_, position).load(std::memory_order_acquire);
        if (sequence != detail::spsc_skipped_sequence(position)) return sequence == position + 1;
    }
    return false;
}

bool RawSpscRing::closed() const noexcept { return detail::ring_closed(*ring_.control); }

void RawSpscRing::close() noexcept { detail::close_ring(*ring_.control); }

}  // namespace mproc
