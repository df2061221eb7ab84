// RawMpmcRing: Vyukov's bounded MPMC ring with a robust claim word per slot.
//
// Slot i (positions p with p & mask == i): `sequence` == p: free for the message at p; == p + 1: holds it.
// `claim`: 0, or the TID of the thread working on the slot (| FUTEX_WAITERS while someone sleeps on it),
// or FUTEX_OWNER_DIED (TID bits cleared by the kernel) after that thread died.
//
// put (producer)                                    get (consumer)
//   A  p = enqueue position (acquire)                 A' p = dequeue position (acquire)
//   B  s = slot.sequence (acquire)                    B' s = slot.sequence (acquire)
//      s == p: go on; s < p: full; else retry            s == p + 1: go on; s < p + 1: empty; else retry
//   K  claim: pending = node; CAS claim 0 -> TID      K' the same
//      (acquire); OWNER_DIED found: repair, retry
//   V  s == p again, under the claim, else retry      V' s == p + 1 again, else retry
//   M  enqueue position = p + 1                       M' dequeue position = p + 1
//   W  write payload and length (the writer: a copy,   W' skipped: sequence = p + capacity, retry;
//      or the caller's put_in_place callback)            else hand the checked length and payload to
//                                                        the reader (a copy, or get_in_place's callback)
//   D  sequence = p + 1 (release)                     D' sequence = p + capacity (release)
//   R  claim = 0 (exchange, release); pending = 0;    R' the same; notify(not_full)
//      wake claim sleepers if WAITERS; notify(not_empty)
// Orders: K's acquire pairs with R's release, so a claimer sees everything the previous claimer wrote
// (sequence, length, payload). D pairs with B/B' of the other side, so that a thread that sees the new
// sequence at B goes on to claim; V/V' re-read it under the claim, where it cannot change.
// Why the position moves only under the claim (M after K and V): a sequence == p seen under the claim
// means nobody advanced the position past p but the claimer itself, so M can be a plain store (nobody
// else writes the position meanwhile: the claimer of slot p + 1 first reads p + 1 from it), and a repairer
// knows from the position alone whether the dead claimer had done M: position > p means it had.
// Repair of a slot whose claimer died (repair_slot_of_dead_claimer), holding the claim:
//   s free for position s and enqueue position > s: a producer died between M and D: flag the slot skipped,
//     sequence = s + 1 (publish it empty); the consumer at s steps over it. The message is lost.
//   s holds position s - 1 and dequeue position > s - 1: a consumer died between M' and D': sequence =
//     s - 1 + capacity (free it). The message it was taking is lost.
//   otherwise the claimer had not moved a position (or had finished D/D'): nothing to undo.
// Death is observed only through the kernel: list_op_pending points at the slot's "node" (claim + 32)
// from before K until after R, so a thread that dies holding the claim leaves FUTEX_OWNER_DIED in it and
// the kernel wakes one sleeper on the word (which sets FUTEX_WAITERS before it sleeps). A thread that dies
// after R or before K leaves a word that is not its TID: the kernel does not touch it. The dead thread's
// stores before its death are visible to the repairer: the kernel's exit path is a full barrier, and the
// repairer's K acquires the word the kernel wrote after it.
// Sleepers on a claim word also wake every 50 ms to look again: the one sleeper the kernel wakes at a
// death could itself be killed before passing the wake-up on.
#include "mproc/mpmc_ring.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <optional>
#include <string>

#include <linux/futex.h>

#include "deadline.hpp"
#include "eventcount.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "ring_common.hpp"
#include "robust_list.hpp"

namespace mproc {
namespace {

using detail::Deadline;
using detail::DeadlineOnDemand;
using detail::MpmcSlotHeader;
using detail::RingControl;
using detail::RingGeometry;
using detail::ThisThreadRobustList;
using detail::position_of;

constexpr const char* kLabel = "mpmc ring";
constexpr std::uint32_t kTidMask = FUTEX_TID_MASK;
constexpr std::uint32_t kClaimWaiters = FUTEX_WAITERS;
constexpr std::uint32_t kClaimOwnerDied = FUTEX_OWNER_DIED;
constexpr std::chrono::milliseconds kClaimRecheckPeriod{50};
// Re-reads of a claim word before sleeping on it: a live claimer holds a claim for a few stores.
constexpr int kClaimSpinLimit = 200;

std::size_t mpmc_stride(std::size_t slot_size) noexcept {
    return detail::round_up(sizeof(MpmcSlotHeader) + slot_size, detail::kMpmcStrideAlignment);
}

struct Slot {
    MpmcSlotHeader* header;
    std::byte* payload;
};

Slot slot_at(const RingGeometry& ring, std::uint64_t position) noexcept {
    std::byte* base = ring.slot_at(position);
    return {reinterpret_cast<MpmcSlotHeader*>(base), base + sizeof(MpmcSlotHeader)};
}

std::atomic_ref<std::uint64_t> sequence_of(const Slot& slot) noexcept { return std::atomic_ref(slot.header->sequence); }
std::atomic_ref<std::uint32_t> claim_of(const Slot& slot) noexcept { return std::atomic_ref(slot.header->claim); }
std::atomic_ref<std::uint32_t> length_of(const Slot& slot) noexcept { return std::atomic_ref(slot.header->length); }

// The address whose futex word (node + futex_offset) is the claim word; never dereferenced.
void* robust_node_of(const Slot& slot) noexcept {
    return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(&slot.header->claim) - detail::kRobustFutexOffset);
}

std::int64_t distance(std::uint64_t from, std::uint64_t to) noexcept { return static_cast<std::int64_t>(to - from); }

enum class ClaimResult { taken, taken_from_dead, busy };

// K: takes the slot's claim for this thread. On success list_op_pending stays set (cleared by R).
ClaimResult take_claim(const Slot& slot, ThisThreadRobustList& self, std::uint32_t& seen) noexcept {
    self.set_pending(robust_node_of(slot));
    MPROC_KILL_POINT(mpmc_claim, 0);  // pending names a claim word this thread does not hold
    // relaxed: a first guess for the CAS, which checks it.
    std::uint32_t value = claim_of(slot).load(std::memory_order_relaxed);
    for (;;) {
        if ((value & kTidMask) != 0) {
            self.clear_pending();
            seen = value;
            return ClaimResult::busy;
        }
        // acquire: K, pairs with R's release (or follows the kernel's write at a death): the previous
        // claimer's sequence, length and payload are visible. WAITERS is kept for the sleepers.
        if (claim_of(slot).compare_exchange_weak(value, self.tid() | (value & kClaimWaiters), std::memory_order_acquire,
                                                 std::memory_order_relaxed)) {
            MPROC_KILL_POINT(mpmc_claim, 1);  // claimed (a dead claimer's OWNER_DIED now lost), nothing done
            return (value & kClaimOwnerDied) != 0 ? ClaimResult::taken_from_dead : ClaimResult::taken;
        }
    }
}

// R: releases a claim this thread holds and wakes the sleepers on it.
void drop_claim(const Slot& slot, ThisThreadRobustList& self) noexcept {
    // release: R, pairs with K's acquire in the next claimer.
    const std::uint32_t previous = claim_of(slot).exchange(0, std::memory_order_release);
    MPROC_KILL_POINT(mpmc_claim, 2);  // released, pending still names the slot
    self.clear_pending();
    MPROC_KILL_POINT(mpmc_claim, 3);  // released, its sleepers not woken (they look again by themselves)
    if ((previous & kClaimWaiters) != 0) detail::futex_wake(&slot.header->claim, detail::kFutexWakeAll);
}

// Waits while the claim word still holds `seen` (a live claimer): spins, then sleeps with FUTEX_WAITERS
// set so that the claimer's release or death wakes us. Returns false when the deadline passed.
bool wait_for_claim(const Slot& slot, std::uint32_t seen, const Deadline* deadline) noexcept {
    for (int spin = 0; spin < kClaimSpinLimit; ++spin) {
        // relaxed: only a hint to stop spinning; the caller starts over with acquire loads.
        if (claim_of(slot).load(std::memory_order_relaxed) != seen) return true;
        detail::cpu_relax();
    }
    std::uint32_t value = seen;
    if ((value & kClaimWaiters) == 0) {
        // relaxed: only sets the bit the kernel and R read; no data is published by it.
        if (!claim_of(slot).compare_exchange_strong(value, value | kClaimWaiters, std::memory_order_relaxed))
            return true;
        value |= kClaimWaiters;
    }
    // Bounded by kClaimRecheckPeriod: a claimer killed between R and its wake-up leaves no other wake-up.
    // A test build may switch that off (recheck_disabled(), eventcount.hpp): only R's wake-up then ends it.
    std::optional<std::chrono::nanoseconds> bound;
    if (!detail::recheck_disabled()) bound = kClaimRecheckPeriod;
    if (deadline != nullptr) {
        if (deadline->passed()) return false;
        bound = bound ? std::min<std::chrono::nanoseconds>(*bound, deadline->remaining()) : deadline->remaining();
    }
    timespec relative{};
    if (bound) relative = Deadline::to_timespec(*bound);
    detail::futex_wait(&slot.header->claim, value, bound ? &relative : nullptr);
    return deadline == nullptr || !deadline->passed();
}

// The repair described at the top, holding the claim of a slot whose previous claimer died; then R.
void repair_slot_of_dead_claimer(const RingGeometry& ring, const Slot& slot, std::uint64_t slot_index,
                                 ThisThreadRobustList& self) noexcept {
    RingControl& control = *ring.control;
    const std::uint64_t capacity = ring.capacity;
    const std::uint64_t mask = capacity - 1;
    // relaxed: under the claim, after K's acquire.
    const std::uint64_t sequence = sequence_of(slot).load(std::memory_order_relaxed);
    MPROC_KILL_POINT(mpmc_repair, 0);  // the repairer holds the claim and has changed nothing
    bool published_skip = false;
    bool freed = false;
    if ((sequence & mask) == slot_index) {
        // acquire: the dead producer's M is visible (it happened before its death, before K).
        const std::uint64_t enqueued = position_of(control.producer).load(std::memory_order_acquire);
        if (distance(sequence, enqueued) > 0) {
            // relaxed: published by the release store of the sequence below.
            length_of(slot).store(detail::kMpmcSlotSkipped, std::memory_order_relaxed);
            MPROC_KILL_POINT(mpmc_repair, 1);  // flagged skipped, not yet published
            // release: pairs with B' in get(): the consumer sees the skip flag with the sequence.
            sequence_of(slot).store(sequence + 1, std::memory_order_release);
            MPROC_KILL_POINT(mpmc_repair, 2);  // published empty, still claimed
            published_skip = true;
        }
    } else if ((sequence & mask) == ((slot_index + 1) & mask)) {
        // acquire: as above, for the dead consumer's M'.
        const std::uint64_t dequeued = position_of(control.consumer).load(std::memory_order_acquire);
        if (distance(sequence - 1, dequeued) > 0) {
            // release: pairs with B in put(): the slot is free for the next lap.
            sequence_of(slot).store(sequence - 1 + capacity, std::memory_order_release);
            MPROC_KILL_POINT(mpmc_repair, 3);  // freed for the next lap, still claimed
            freed = true;
        }
    }
    if (published_skip || freed)
        // relaxed: a statistic; nothing is published through it.
        std::atomic_ref(control.constants.repaired_slots).fetch_add(1, std::memory_order_relaxed);
    MPROC_KILL_POINT(mpmc_repair, 4);  // repaired and counted, still claimed
    drop_claim(slot, self);
    if (published_skip) detail::notify(control.not_empty.event);
    if (freed) detail::notify(control.not_full.event);
}

// no_slot: nothing to take or no room now; claim_busy: a non-blocking attempt gave up on a live claimer
// (the slot may hold a message: not "drained"); timed_out: a blocking attempt's deadline passed.
enum class Attempt { done, no_slot, claim_busy, timed_out };

// Publishes a slot this thread claimed and advanced the position for, but has no message for (the
// writer threw): flagged skipped, as the repair of a dead producer would, so that the ring moves on.
void publish_skipped_slot(const RingGeometry& ring, const Slot& slot, std::uint64_t position,
                          ThisThreadRobustList& self) noexcept {
    // relaxed: published by the release store below.
    length_of(slot).store(detail::kMpmcSlotSkipped, std::memory_order_relaxed);
    MPROC_KILL_POINT(mpmc_put, 5);  // flagged skipped, not published: the repair publishes it skipped
    // release: D for an empty slot, pairs with B'.
    sequence_of(slot).store(position + 1, std::memory_order_release);
    MPROC_KILL_POINT(mpmc_put, 6);  // published empty, still claimed: the repair only drops the claim
    drop_claim(slot, self);
    detail::notify(ring.control->not_empty.event);
}

// A thread that holds a reserved slot or a peeked message must finish it first: its claim is covered by
// list_op_pending, which the next claim would take over (a death would then leave the held slot claimed
// for good).
void require_no_slot_hold(const ThisThreadRobustList& self, const char* operation) {
    if (self.slot_holds() != 0)
        throw StateError(std::string(kLabel) + ": " + operation +
                         ": this thread holds a reserved slot or a peeked message (commit or release it first)");
}

// D, R: publishes a slot this thread claimed, advanced the position for and wrote `written` bytes into.
void finish_put(const RingGeometry& ring, const Slot& slot, std::uint64_t position, std::size_t written,
                ThisThreadRobustList& self, bool notify) noexcept {
    // relaxed: W; published by D.
    length_of(slot).store(static_cast<std::uint32_t>(written), std::memory_order_relaxed);
    MPROC_KILL_POINT(mpmc_put, 2);  // written, not published: the repair publishes the slot skipped
    // release: D, pairs with B' so that a consumer that sees p + 1 sees length and payload.
    sequence_of(slot).store(position + 1, std::memory_order_release);
    MPROC_KILL_POINT(mpmc_put, 3);  // published, still claimed: the repair only drops the claim
    drop_claim(slot, self);
    MPROC_KILL_POINT(mpmc_put, 4);  // published and released, a sleeping consumer not woken
    if (notify) detail::notify(ring.control->not_empty.event);
}

// D', R': frees a slot whose message this thread claimed, advanced the position past and read.
void finish_get(const RingGeometry& ring, const Slot& slot, std::uint64_t position, ThisThreadRobustList& self,
                bool notify) noexcept {
    // release: D', pairs with B in put(): the slot was read before it is handed to a producer.
    sequence_of(slot).store(position + ring.capacity, std::memory_order_release);
    MPROC_KILL_POINT(mpmc_get, 2);  // freed, still claimed: the repair only drops the claim
    drop_claim(slot, self);
    if (notify) detail::notify(ring.control->not_full.event);
}

// How long a non-blocking call waits for another thread's claim on the slot it needs before it reports
// no_slot: a live claimer holds a claim for a few stores (longer only when it is preempted), while a claim
// word that names a thread which never releases it (a hostile or corrupted segment) must not hang a call
// that promised not to block.
constexpr std::chrono::milliseconds kNonBlockingClaimWait{1};

// The bound wait_for_claim() gets: the caller's deadline when blocking, a short one made on first use when not.
const Deadline* claim_wait_bound(bool blocking, DeadlineOnDemand* deadline, std::optional<Deadline>& nonblocking) {
    if (blocking) return detail::deadline_of(deadline);
    if (!nonblocking) nonblocking = Deadline::after(kNonBlockingClaimWait);
    return &*nonblocking;
}

// A slot whose sequence is a lap ahead of a position that, re-read after the sequence, has not moved: in a
// correct ring the position is advanced (M) before the slot is published (D), and the re-read happens after
// the acquire load that saw D, so it must see M. Only corrupted bytes get here; spinning would never end.
[[noreturn]] void throw_sequence_ahead(const char* side, std::uint64_t position, std::uint64_t sequence) {
    throw InvalidObject(std::string(kLabel) + ": " + side + " position " + std::to_string(position) +
                        " meets a slot whose sequence " + std::to_string(sequence) +
                        " is ahead of it: the ring's bytes are corrupted");
}

// One put: A..R. `deadline` bounds waits on a live claimer (nullptr: none); it is made only if one waits.
// With `hold`, the slot is claimed and the position advanced, then handed to the caller (reserve()) instead
// of written and published here: finish_put() or publish_skipped_slot() completes it later.
Attempt attempt_put(const RingGeometry& ring, const detail::SlotWriter& writer, DeadlineOnDemand* deadline,
                    bool notify, bool blocking, detail::MpmcHeldSlot* hold = nullptr) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_no_slot_hold(self, "put");
    RingControl& control = *ring.control;
    const std::uint64_t mask = ring.capacity - 1;
    std::optional<Deadline> nonblocking_bound;
    for (;;) {
        // acquire: A; pairs with M of the previous producer (its slot claim came before).
        const std::uint64_t position = position_of(control.producer).load(std::memory_order_acquire);
        const Slot slot = slot_at(ring, position);
        // acquire: B; pairs with D' of the consumer that freed the slot.
        const std::uint64_t sequence = sequence_of(slot).load(std::memory_order_acquire);
        const std::int64_t lag = distance(position, sequence);
        std::uint32_t seen = 0;
        if (lag == 0) {
            const ClaimResult claim = take_claim(slot, self, seen);
            if (claim == ClaimResult::busy) {
                // relaxed: only decides whether to wait; A is repeated.
                if (position_of(control.producer).load(std::memory_order_relaxed) != position) continue;
                if (!wait_for_claim(slot, seen, claim_wait_bound(blocking, deadline, nonblocking_bound)))
                    return blocking ? Attempt::timed_out : Attempt::no_slot;
                continue;
            }
            if (claim == ClaimResult::taken_from_dead) {
                repair_slot_of_dead_claimer(ring, slot, position & mask, self);
                continue;
            }
            // relaxed: V, under the claim.
            if (sequence_of(slot).load(std::memory_order_relaxed) != position) {
                drop_claim(slot, self);
                continue;
            }
            // relaxed: a tripwire, not a synchronisation: in correct use the position is still `position`
            // here (see M); a thread that breaks the rules (a TID shared across PID namespaces, a signal
            // handler re-entering put) or a peer rewriting the segment is caught here as often as by the
            // CAS this replaced, and the attempt starts over.
            if (position_of(control.producer).load(std::memory_order_relaxed) != position) {
                drop_claim(slot, self);
                continue;
            }
            // relaxed: M; the position carries no data (the slot is published by D). A store, not a CAS:
            // under the claim, with V passed, nobody else can move the position from `position` (the
            // queue model asserts it).
            MPROC_KILL_POINT(mpmc_put, 0);  // claimed, position not moved: the repair drops the claim
            position_of(control.producer).store(position + 1, std::memory_order_relaxed);
            MPROC_KILL_POINT(mpmc_put, 1);  // position moved, slot unwritten: the repair skips it
            const std::size_t slot_size = ring.slot_size;
            if (hold != nullptr) {
                *hold = {ring, slot.header, slot.payload, position, static_cast<std::uint32_t>(slot_size),
                         self.tid()};
                return Attempt::done;  // claim and list_op_pending stay set until the hold is finished
            }
            std::size_t written = 0;
            try {
                written = writer.write(writer.context, {slot.payload, slot_size});  // W
            } catch (...) {
                publish_skipped_slot(ring, slot, position, self);
                throw;
            }
            if (written > slot_size) {
                publish_skipped_slot(ring, slot, position, self);
                throw ValueError(std::string(kLabel) + ": put_in_place: the writer reported " + std::to_string(written) +
                                 " bytes, a slot holds " + std::to_string(slot_size));
            }
            finish_put(ring, slot, position, written, self, notify);
            return Attempt::done;
        }
        if (lag < 0) {
            // The slot still holds the message of the previous lap (or waits for a repair).
            // relaxed: a look at the claimer; acting on it goes through take_claim's CAS.
            const std::uint32_t claimer = claim_of(slot).load(std::memory_order_relaxed);
            if (claimer != 0 && (claimer & kTidMask) == 0) {
                if (take_claim(slot, self, seen) == ClaimResult::taken_from_dead)
                    repair_slot_of_dead_claimer(ring, slot, position & mask, self);
                else if (seen == 0)
                    drop_claim(slot, self);
                continue;
            }
            if (claimer != 0 && blocking) {
                // A live consumer is taking the message: the slot frees soon.
                if (!wait_for_claim(slot, claimer, detail::deadline_of(deadline))) return Attempt::timed_out;
                continue;
            }
            // relaxed: confirms `position` was not stale.
            if (position_of(control.producer).load(std::memory_order_relaxed) != position) continue;
            return Attempt::no_slot;
        }
        // lag > 0: `position` is stale, or the bytes are corrupted.
        // relaxed: after B's acquire, which saw D and so orders M before this load (see throw_sequence_ahead).
        if (position_of(control.producer).load(std::memory_order_relaxed) != position) continue;
        throw_sequence_ahead("enqueue", position, sequence);
    }
}

// One get: A'..R'. length receives the producer's byte count. `deadline` as in attempt_put.
// With `hold`, the message is claimed and the position advanced, then handed to the caller (peek()) instead
// of read and freed here: finish_get() completes it later. Skipped slots are stepped over either way.
Attempt attempt_get(const RingGeometry& ring, const detail::SlotReader& reader, DeadlineOnDemand* deadline,
                    bool notify, bool blocking, detail::MpmcHeldSlot* hold = nullptr) {
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_no_slot_hold(self, "get");
    RingControl& control = *ring.control;
    const std::uint64_t capacity = ring.capacity;
    const std::uint64_t mask = capacity - 1;
    const std::size_t slot_size = ring.slot_size;
    std::optional<Deadline> nonblocking_bound;
    for (;;) {
        // acquire: A'; pairs with M' of the previous consumer.
        const std::uint64_t position = position_of(control.consumer).load(std::memory_order_acquire);
        const Slot slot = slot_at(ring, position);
        // acquire: B'; pairs with D of the producer (or the repair's publication of a skipped slot).
        const std::uint64_t sequence = sequence_of(slot).load(std::memory_order_acquire);
        const std::int64_t lag = distance(position + 1, sequence);
        std::uint32_t seen = 0;
        if (lag == 0) {
            const ClaimResult claim = take_claim(slot, self, seen);
            if (claim == ClaimResult::busy) {
                // relaxed: only decides whether to wait; A' is repeated.
                if (position_of(control.consumer).load(std::memory_order_relaxed) != position) continue;
                if (!wait_for_claim(slot, seen, claim_wait_bound(blocking, deadline, nonblocking_bound)))
                    return blocking ? Attempt::timed_out : Attempt::claim_busy;
                continue;
            }
            if (claim == ClaimResult::taken_from_dead) {
                repair_slot_of_dead_claimer(ring, slot, position & mask, self);
                continue;
            }
            // relaxed: V', under the claim.
            if (sequence_of(slot).load(std::memory_order_relaxed) != position + 1) {
                drop_claim(slot, self);
                continue;
            }
            // relaxed (both): the tripwire and M' of attempt_put's M.
            if (position_of(control.consumer).load(std::memory_order_relaxed) != position) {
                drop_claim(slot, self);
                continue;
            }
            MPROC_KILL_POINT(mpmc_get, 0);  // claimed, position not moved: the message stays for the next
            position_of(control.consumer).store(position + 1, std::memory_order_relaxed);
            MPROC_KILL_POINT(mpmc_get, 1);  // position moved: the message is lost, the repair frees the slot
            // relaxed: under the claim, published by D before K.
            const std::uint32_t stored_length = length_of(slot).load(std::memory_order_relaxed);
            const bool skipped = (stored_length & detail::kMpmcSlotSkipped) != 0;
            if (!skipped) {
                // A length is used only once checked against the slot: a corrupted one cannot overrun.
                const std::size_t checked = std::min<std::size_t>(stored_length, slot_size);
                if (hold != nullptr) {
                    *hold = {ring, slot.header, slot.payload, position, static_cast<std::uint32_t>(checked),
                             self.tid()};
                    return Attempt::done;  // claim and list_op_pending stay set until the lease is released
                }
                try {
                    reader.read(reader.context, {slot.payload, checked});  // W'
                } catch (...) {
                    // The message was handed to the reader: it counts as got. D', R' as below.
                    // release: D', as below.
                    sequence_of(slot).store(position + capacity, std::memory_order_release);
                    drop_claim(slot, self);
                    detail::notify(control.not_full.event);
                    throw;
                }
            }
            finish_get(ring, slot, position, self, notify || skipped);
            if (skipped) continue;
            return Attempt::done;
        }
        if (lag < 0) {
            // Not yet published: a producer may be writing it, or may have died doing so.
            // relaxed: a look at the claimer; acting on it goes through take_claim's CAS.
            const std::uint32_t claimer = claim_of(slot).load(std::memory_order_relaxed);
            if (claimer != 0 && (claimer & kTidMask) == 0) {
                if (take_claim(slot, self, seen) == ClaimResult::taken_from_dead)
                    repair_slot_of_dead_claimer(ring, slot, position & mask, self);
                else if (seen == 0)
                    drop_claim(slot, self);
                continue;
            }
            if (claimer != 0 && blocking) {
                if (!wait_for_claim(slot, claimer, detail::deadline_of(deadline))) return Attempt::timed_out;
                continue;
            }
            // relaxed: confirms `position` was not stale.
            if (position_of(control.consumer).load(std::memory_order_relaxed) != position) continue;
            return Attempt::no_slot;
        }
        // lag > 0: `position` is stale, or the bytes are corrupted.
        // relaxed: after the acquire load B', which saw D' and so orders M' before this load.
        if (position_of(control.consumer).load(std::memory_order_relaxed) != position) continue;
        throw_sequence_ahead("dequeue", position, sequence);
    }
}

// Whether a put could make progress now: a free slot, a claim to wait on or repair, or a closed ring.
bool put_may_proceed(const RingGeometry& ring) noexcept {
    RingControl& control = *ring.control;
    if (detail::ring_closed(control)) return true;
    // acquire: as A and B in attempt_put.
    const std::uint64_t position = position_of(control.producer).load(std::memory_order_acquire);
    const Slot slot = slot_at(ring, position);
    // relaxed (claim): a hint; acquire (sequence): as B.
    return sequence_of(slot).load(std::memory_order_acquire) == position ||
           claim_of(slot).load(std::memory_order_relaxed) != 0;
}

bool get_may_proceed(const RingGeometry& ring) noexcept {
    RingControl& control = *ring.control;
    if (detail::ring_closed(control)) return true;
    // acquire: as A' and B' in attempt_get.
    const std::uint64_t position = position_of(control.consumer).load(std::memory_order_acquire);
    const Slot slot = slot_at(ring, position);
    // relaxed (claim): a hint; acquire (sequence): as B'.
    return sequence_of(slot).load(std::memory_order_acquire) == position + 1 ||
           claim_of(slot).load(std::memory_order_relaxed) != 0;
}

}  // namespace

std::size_t RawMpmcRing::required_size(std::size_t capacity, std::size_t slot_size) {
    detail::check_ring_shape(capacity, slot_size, kLabel);
    return detail::ring_total_size(capacity, mpmc_stride(slot_size));
}

RawMpmcRing RawMpmcRing::init(void* memory, std::size_t size, std::size_t capacity, std::size_t slot_size) {
    detail::register_for_fence_free_notify();  // before this process can notify through the ring
    const std::size_t required = required_size(capacity, slot_size);
    detail::check_placement(memory, size, required, kLabel, "init");
    const std::size_t stride = mpmc_stride(slot_size);
    detail::place_ring_control(memory, detail::kMpmcRingMagic, capacity, slot_size, stride);
    const RingGeometry ring = detail::geometry_of(memory, capacity, stride, static_cast<std::uint32_t>(slot_size));
    for (std::uint64_t i = 0; i < capacity; ++i) {
        MpmcSlotHeader header{};
        header.sequence = i;  // free for the message at position i
        std::memcpy(ring.slots + i * stride, &header, sizeof header);
    }
    return RawMpmcRing(ring);
}

RawMpmcRing RawMpmcRing::attach(void* memory, std::size_t size) {
    detail::register_for_fence_free_notify();  // before this process can notify through the ring
    detail::check_placement(memory, size, 0, kLabel, "attach");
    const detail::RingConstants constants =
        detail::validate_ring_control(memory, size, detail::kMpmcRingMagic, sizeof(MpmcSlotHeader),
                                      detail::kMpmcStrideAlignment, kLabel);
    return RawMpmcRing(detail::geometry_of(memory, constants.capacity, constants.slot_stride, constants.slot_size));
}

namespace {

struct CopyIn {
    std::span<const std::byte> message;
    static std::size_t write(void* context, std::span<std::byte> payload) noexcept {
        const auto& self = *static_cast<const CopyIn*>(context);
        detail::copy_message_in(payload.data(), self.message.data(), self.message.size());
        return self.message.size();
    }
};

struct CopyOut {
    std::span<std::byte> out;
    std::size_t* length;
    static void read(void* context, std::span<const std::byte> message) noexcept {
        const auto& self = *static_cast<const CopyOut*>(context);
        std::memcpy(self.out.data(), message.data(), message.size());
        if (self.length != nullptr) *self.length = message.size();
    }
};

}  // namespace

RingStatus RawMpmcRing::put(std::span<const std::byte> message, const std::optional<std::chrono::nanoseconds>& timeout) {
    if (message.size() > slot_size())
        throw ValueError(std::string(kLabel) + ": put: a message of " + std::to_string(message.size()) +
                         " bytes does not fit a slot of " + std::to_string(slot_size()));
    CopyIn copy{message};
    return put_with({&CopyIn::write, &copy}, timeout);
}

RingStatus RawMpmcRing::put_with(const detail::SlotWriter& writer, const std::optional<std::chrono::nanoseconds>& timeout,
                                 detail::MpmcHeldSlot* hold) {
    const bool blocking = !timeout || timeout->count() > 0;
    // Only a blocking call bounds its waits with the caller's deadline, made at its first wait: a call that
    // succeeds at once never reads the clock, and a non-blocking one (try_put, try_get, a zero timeout) only
    // when it meets a claim (claim_wait_bound), so polling stays cheap.
    DeadlineOnDemand deadline(blocking && timeout.has_value(), timeout.value_or(std::chrono::nanoseconds(0)));
    for (;;) {
        if (detail::ring_closed(*ring_.control)) return RingStatus::closed;
        const Attempt attempt = attempt_put(ring_, writer, &deadline, true, blocking, hold);
        if (attempt == Attempt::done) return RingStatus::ok;
        if (attempt == Attempt::timed_out) return RingStatus::timed_out;
        if (!blocking) return RingStatus::full;
        const auto ready = [&] { return put_may_proceed(ring_); };
        if (!detail::await_condition(ring_.control->not_full.event, deadline.get(), ready) && !ready())
            return RingStatus::timed_out;
    }
}

RingStatus RawMpmcRing::get(std::span<std::byte> out, const std::optional<std::chrono::nanoseconds>& timeout,
                            std::size_t* length) {
    if (out.size() < slot_size())
        throw ValueError(std::string(kLabel) + ": get: a buffer of " + std::to_string(out.size()) +
                         " bytes cannot hold a slot of " + std::to_string(slot_size()));
    CopyOut copy{out, length};
    return get_with({&CopyOut::read, &copy}, timeout);
}

RingStatus RawMpmcRing::get_with(const detail::SlotReader& reader, const std::optional<std::chrono::nanoseconds>& timeout,
                                 detail::MpmcHeldSlot* hold) {
    const bool blocking = !timeout || timeout->count() > 0;
    // Only a blocking call bounds its waits with the caller's deadline, made at its first wait: a call that
    // succeeds at once never reads the clock, and a non-blocking one (try_put, try_get, a zero timeout) only
    // when it meets a claim (claim_wait_bound), so polling stays cheap.
    DeadlineOnDemand deadline(blocking && timeout.has_value(), timeout.value_or(std::chrono::nanoseconds(0)));
    for (;;) {
        const Attempt attempt = attempt_get(ring_, reader, &deadline, true, blocking, hold);
        if (attempt == Attempt::done) return RingStatus::ok;
        if (attempt == Attempt::timed_out) return RingStatus::timed_out;
        if (detail::ring_closed(*ring_.control)) {
            // A message put before close() is still delivered; only a drained ring reports closed. The last
            // attempt waits on a live consumer's claim as the call itself would (a blocking call until its
            // deadline): giving up on it would report the ring drained while that claim may still hide a
            // message, lost for good if its claimer dies (verify/queue: drain_waits_for_claimed_slot).
            const Attempt drain = attempt_get(ring_, reader, &deadline, true, blocking, hold);
            if (drain == Attempt::done) return RingStatus::ok;
            if (drain == Attempt::timed_out) return RingStatus::timed_out;
            if (drain == Attempt::claim_busy) return RingStatus::empty;  // non-blocking: not known drained
            return RingStatus::closed;
        }
        if (!blocking) return RingStatus::empty;
        const auto ready = [&] { return get_may_proceed(ring_); };
        if (!detail::await_condition(ring_.control->not_empty.event, deadline.get(), ready) && !ready())
            return RingStatus::timed_out;
    }
}

namespace {

// Never called: reserve() and peek() hand the slot over before a writer or reader would run.
std::size_t write_nothing(void*, std::span<std::byte>) noexcept { return 0; }
void read_nothing(void*, std::span<const std::byte>) noexcept {}

Slot slot_of(const detail::MpmcHeldSlot& held) noexcept { return {held.header, held.payload}; }

// The thread finishing a hold must be the one whose TID is in the claim word (and whose list_op_pending
// covers it).
bool held_by_this_thread(const detail::MpmcHeldSlot& held, const ThisThreadRobustList& self) noexcept {
    // relaxed: only the claimer writes its own TID there; this thread's own view of it is exact.
    return held.claimer == self.tid() &&
           (claim_of(slot_of(held)).load(std::memory_order_relaxed) & kTidMask) == self.tid();
}

}  // namespace

RingStatus RawMpmcRing::reserve(MpmcReservation& reservation, std::optional<std::chrono::nanoseconds> timeout) {
    if (reservation)
        throw StateError(std::string(kLabel) + ": reserve: the reservation already holds a slot (commit it first)");
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_no_slot_hold(self, "reserve");
    detail::MpmcHeldSlot held;
    const RingStatus status = put_with({&write_nothing, nullptr}, timeout, &held);
    if (status == RingStatus::ok) {
        reservation.held_ = held;
        self.add_slot_hold();
    }
    return status;
}

RingStatus RawMpmcRing::peek(MpmcLease& lease, std::optional<std::chrono::nanoseconds> timeout) {
    if (lease) throw StateError(std::string(kLabel) + ": peek: the lease already holds a message (release it first)");
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_no_slot_hold(self, "peek");
    detail::MpmcHeldSlot held;
    const RingStatus status = get_with({&read_nothing, nullptr}, timeout, &held);
    if (status == RingStatus::ok) {
        lease.held_ = held;
        self.add_slot_hold();
    }
    return status;
}

MpmcReservation& MpmcReservation::operator=(MpmcReservation&& other) noexcept {
    if (this != &other) {
        cancel();
        held_ = std::exchange(other.held_, {});
    }
    return *this;
}

void MpmcReservation::commit(std::size_t length) {
    if (!*this) throw StateError(std::string(kLabel) + ": commit: the reservation holds no slot");
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    if (!held_by_this_thread(held_, self))
        throw StateError(std::string(kLabel) + ": commit: only the thread that reserved the slot may commit it");
    const detail::MpmcHeldSlot held = std::exchange(held_, {});
    self.remove_slot_hold();
    if (detail::ring_closed(*held.ring.control)) {
        // Consumers may already have been told the ring is drained: the message must not appear after that.
        publish_skipped_slot(held.ring, slot_of(held), held.position, self);
        throw Closed(std::string(kLabel) + ": commit: the ring was closed while the slot was reserved; the "
                                           "message was dropped");
    }
    if (length > held.length) {
        publish_skipped_slot(held.ring, slot_of(held), held.position, self);
        throw ValueError(std::string(kLabel) + ": commit: " + std::to_string(length) + " bytes, a slot holds " +
                         std::to_string(held.length));
    }
    finish_put(held.ring, slot_of(held), held.position, length, self, true);
}

void MpmcReservation::cancel() noexcept {
    if (!*this) return;
    const detail::MpmcHeldSlot held = std::exchange(held_, {});
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    // Another thread's (or, in a fork child, the parent's) hold is only dropped: its claim is covered by
    // the reserving thread's list_op_pending, and once that thread ends the slot is repaired — possibly
    // already, into a later lap, where a publish from here would corrupt it.
    if (!held_by_this_thread(held, self)) return;
    self.remove_slot_hold();
    publish_skipped_slot(held.ring, slot_of(held), held.position, self);
}

MpmcLease& MpmcLease::operator=(MpmcLease&& other) noexcept {
    if (this != &other) {
        release();
        held_ = std::exchange(other.held_, {});
    }
    return *this;
}

void MpmcLease::release() noexcept {
    if (!*this) return;
    const detail::MpmcHeldSlot held = std::exchange(held_, {});
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    if (!held_by_this_thread(held, self)) return;  // as MpmcReservation::cancel()
    self.remove_slot_hold();
    finish_get(held.ring, slot_of(held), held.position, self, true);
}

std::size_t RawMpmcRing::put_many(const void* messages, std::size_t count) {
    const auto* source = static_cast<const std::byte*>(messages);
    const std::size_t size = slot_size();
    std::size_t done = 0;
    if (detail::ring_closed(*ring_.control)) return 0;
    for (; done < count; ++done) {
        CopyIn copy{{source + done * size, size}};
        if (attempt_put(ring_, {&CopyIn::write, &copy}, nullptr, false, false) != Attempt::done) break;
    }
    if (done != 0) detail::notify(ring_.control->not_empty.event);
    return done;
}

std::size_t RawMpmcRing::get_many(void* out, std::size_t count) {
    auto* target = static_cast<std::byte*>(out);
    const std::size_t size = slot_size();
    std::size_t done = 0;
    for (; done < count; ++done) {
        CopyOut copy{{target + done * size, size}, nullptr};
        if (attempt_get(ring_, {&CopyOut::read, &copy}, nullptr, false, false) != Attempt::done) break;
    }
    if (done != 0) detail::notify(ring_.control->not_full.event);
    return done;
}

bool RawMpmcRing::position_finished(std::uint64_t position) const noexcept {
    const Slot slot = slot_at(ring_, position);
    // acquire: pairs with D' (or the repair's release), so a finished position's reads are done.
    const std::uint64_t sequence = sequence_of(slot).load(std::memory_order_acquire);
    if (distance(position + ring_.capacity, sequence) >= 0) return true;
    // relaxed: the length of position's lap, published by the release of sequence == position + 1 read above;
    // a later lap's length only comes after the sequence moved past position + capacity (finished anyway).
    return sequence == position + 1 && (length_of(slot).load(std::memory_order_relaxed) & detail::kMpmcSlotSkipped) != 0;
}

void RawMpmcRing::repair_if_claimer_died(std::uint64_t position) {
    const Slot slot = slot_at(ring_, position);
    // relaxed: a hint; take_claim's CAS acquires.
    const std::uint32_t claim = claim_of(slot).load(std::memory_order_relaxed);
    if ((claim & kClaimOwnerDied) == 0 || (claim & kTidMask) != 0) return;
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    require_no_slot_hold(self, "repair");
    std::uint32_t seen = 0;
    const ClaimResult result = take_claim(slot, self, seen);
    if (result == ClaimResult::taken_from_dead)
        repair_slot_of_dead_claimer(ring_, slot, position & (ring_.capacity - 1), self);
    else if (result == ClaimResult::taken)
        drop_claim(slot, self);
}

std::size_t RawMpmcRing::size() const noexcept { return detail::ring_size(ring_); }

bool RawMpmcRing::closed() const noexcept { return detail::ring_closed(*ring_.control); }

void RawMpmcRing::close() noexcept { detail::close_ring(*ring_.control); }

std::uint32_t RawMpmcRing::repaired_slots() const noexcept {
    // relaxed: a statistic.
    return std::atomic_ref(ring_.control->constants.repaired_slots).load(std::memory_order_relaxed);
}

}  // namespace mproc
