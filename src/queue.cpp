// Queue handles: which ring, who owns its memory, and RingStatus turned into Python's exceptions.
// JoinableQueue's task count lives here too (RingTaskLine in the ring's control block):
//   put:        unfinished += 1 (relaxed) before the ring put, so that a consumer's task_done() for the
//               message can never find the count at zero; a put that fails takes its 1 back.
//   task_done:  CAS unfinished -> unfinished - 1 (release), refused at zero (ValueError, as in Python);
//               reaching zero notifies all_done.
//   join:       waits on all_done until unfinished == 0 (acquire: pairs with task_done's release, so
//               the work the tasks did is visible to the joiner).
#include "mproc/queue.hpp"

#include <atomic>
#include <cstring>
#include <new>
#include <utility>

#include "deadline.hpp"
#include "eventcount.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "mproc/object_header.hpp"
#include "queue_spill.hpp"
#include "ring_common.hpp"

namespace mproc::detail {
namespace {

std::uint32_t queue_layout_version() { return current_layout_version(ObjectKind::queue); }

std::size_t ring_size_for(QueueKind kind, std::size_t capacity, std::size_t slot_size) {
    return kind == QueueKind::spsc ? RawSpscRing::required_size(capacity, slot_size)
                                   : RawMpmcRing::required_size(capacity, slot_size);
}

// The spill arena starts at the first 4096-byte boundary after the ring.
std::size_t spill_offset(std::size_t ring_size) noexcept { return round_up(ring_size, kSpillAlignment); }

std::size_t queue_size_for(QueueKind kind, std::size_t capacity, std::size_t slot_size, std::uint64_t spill_budget,
                           const std::string& label) {
    const std::size_t ring = ring_size_for(kind, capacity, slot_size);
    const std::size_t spill = SpillArena::required_size(spill_budget, label);
    return spill == 0 ? ring : spill_offset(ring) + spill;
}

void init_ring(void* memory, std::size_t size, QueueKind kind, std::size_t capacity, std::size_t slot_size,
               std::uint64_t spill_budget, const std::string& label) {
    if (kind == QueueKind::spsc)
        RawSpscRing::init(memory, size, capacity, slot_size);
    else
        RawMpmcRing::init(memory, size, capacity, slot_size);
    if (spill_budget == 0) return;
    const std::size_t offset = spill_offset(ring_size_for(kind, capacity, slot_size));
    if (size < offset) throw ValueError(label + ": no room for the spill arena");
    SpillArena::init(static_cast<std::byte*>(memory) + offset, size - offset, spill_budget, label);
}

void check_kind(QueueKind kind) {
    if (kind != QueueKind::mpmc && kind != QueueKind::spsc)
        throw ValueError("queue: kind " + std::to_string(static_cast<std::uint32_t>(kind)) + " is neither mpmc nor spsc");
}

std::atomic_ref<std::uint64_t> unfinished_of(RingControl& control) noexcept {
    return std::atomic_ref(control.tasks.unfinished);
}

}  // namespace

QueueCore QueueCore::anonymous(QueueKind kind, std::size_t capacity, std::size_t slot_size,
                               std::uint64_t spill_budget) {
    check_kind(kind);
    QueueCore core;
    core.label_ = "anonymous queue";
    const std::size_t size = queue_size_for(kind, capacity, slot_size, spill_budget, core.label_);
    core.segment_.emplace(SharedMemory::anonymous_object(
        ObjectKind::queue, queue_layout_version(), size, [&](std::span<std::byte> payload) {
            init_ring(payload.data(), payload.size(), kind, capacity, slot_size, spill_budget, core.label_);
        }));
    core.adopt(core.segment_->bytes().data(), core.segment_->size(), slot_size);
    return core;
}

QueueCore QueueCore::create(std::string_view name, QueueKind kind, std::size_t capacity, std::size_t slot_size,
                            mode_t mode, std::uint64_t spill_budget) {
    check_kind(kind);
    const std::string label = object_label(ObjectKind::queue, std::string(name));
    // checked before the name exists
    const std::size_t size = queue_size_for(kind, capacity, slot_size, spill_budget, label);
    QueueCore core;
    core.segment_.emplace(SharedMemory::create_object(
        name, ObjectKind::queue, queue_layout_version(), size, mode, [&](std::span<std::byte> payload) {
            init_ring(payload.data(), payload.size(), kind, capacity, slot_size, spill_budget, label);
        }));
    core.label_ = object_label(ObjectKind::queue, core.segment_->name());
    core.adopt(core.segment_->bytes().data(), core.segment_->size(), slot_size);
    return core;
}

QueueCore QueueCore::open(std::string_view name, std::size_t slot_size, std::chrono::milliseconds publish_timeout) {
    QueueCore core;
    core.segment_.emplace(SharedMemory::open_object(name, ObjectKind::queue, queue_layout_version(), publish_timeout));
    core.label_ = object_label(ObjectKind::queue, core.segment_->name());
    core.adopt(core.segment_->bytes().data(), core.segment_->size(), slot_size);
    return core;
}

QueueCore QueueCore::from_fd(int fd, std::size_t slot_size) {
    QueueCore core;
    core.segment_.emplace(SharedMemory::attach_object(fd, ObjectKind::queue, queue_layout_version()));
    core.label_ = "queue (fd " + std::to_string(fd) + ")";
    core.adopt(core.segment_->bytes().data(), core.segment_->size(), slot_size);
    return core;
}

int QueueCore::fd() const noexcept { return segment_ ? segment_->fd() : -1; }

std::size_t QueueCore::placed_size(QueueKind kind, std::size_t capacity, std::size_t slot_size,
                                   std::uint64_t spill_budget) {
    check_kind(kind);
    return queue_size_for(kind, capacity, slot_size, spill_budget, "placed queue");
}

QueueCore QueueCore::place(void* memory, std::size_t size, QueueKind kind, std::size_t capacity,
                           std::size_t slot_size, std::uint64_t spill_budget) {
    check_kind(kind);
    init_ring(memory, size, kind, capacity, slot_size, spill_budget, "placed queue");
    QueueCore core;
    core.label_ = "placed queue";
    core.adopt(memory, size, slot_size);
    return core;
}

QueueCore QueueCore::attach(void* memory, std::size_t size, std::size_t slot_size) {
    QueueCore core;
    core.label_ = "placed queue";
    core.adopt(memory, size, slot_size);
    return core;
}

// Decides the ring from its magic, validates it, and checks the slot size the caller's type needs
// (expected_slot_size 0: any).
void QueueCore::adopt(void* memory, std::size_t size, std::size_t expected_slot_size) {
    if (memory == nullptr || reinterpret_cast<std::uintptr_t>(memory) % alignof(RingControl) != 0)
        throw ValueError(label_ + ": memory must be " + std::to_string(alignof(RingControl)) + "-byte aligned");
    if (size < sizeof(std::uint32_t))
        throw InvalidObject(label_ + ": " + std::to_string(size) + " bytes cannot hold a ring");
    std::uint32_t magic;
    std::memcpy(&magic, memory, sizeof magic);
    try {
        if (magic == kSpscRingMagic) {
            validate_ring_control(memory, size, kSpscRingMagic, kSpscSequenceBytes, kSpscStrideAlignment, label_);
            spsc_ = RawSpscRing::attach(memory, size);
            spsc_fast_ = SpscFastPath(spsc_->geometry());
        } else {
            validate_ring_control(memory, size, kMpmcRingMagic, sizeof(MpmcSlotHeader), kMpmcStrideAlignment,
                                  label_);
            mpmc_ = RawMpmcRing::attach(memory, size);
        }
        // An arena after the ring (optional: queues of fixed-size items have none). Its constants are read
        // once here, and the handle keeps them.
        const RingGeometry& ring = spsc_ ? spsc_->geometry() : mpmc_->geometry();
        const std::size_t offset = spill_offset(ring_total_size(ring.capacity, ring.stride));
        auto* arena = static_cast<std::byte*>(memory) + offset;
        if (offset < size && SpillArena::present(arena, size - offset))
            spill_ = std::make_unique<SpillArena>(SpillArena::attach(arena, size - offset, label_));
    } catch (...) {
        spsc_.reset();
        mpmc_.reset();
        spill_.reset();
        spsc_fast_ = SpscFastPath();
        throw;
    }
    if (expected_slot_size != 0 && slot_size() != expected_slot_size) {
        const std::size_t found = slot_size();
        spsc_.reset();
        mpmc_.reset();
        spill_.reset();
        spsc_fast_ = SpscFastPath();
        throw InvalidObject(label_ + ": items of " + std::to_string(found) + " bytes, expected " +
                            std::to_string(expected_slot_size));
    }
}

QueueCore::QueueCore(QueueCore&& other) noexcept
    : segment_(std::move(other.segment_)),
      spsc_(std::exchange(other.spsc_, std::nullopt)),
      mpmc_(std::exchange(other.mpmc_, std::nullopt)),
      spsc_fast_(std::exchange(other.spsc_fast_, SpscFastPath())),
      spill_(std::move(other.spill_)),
      label_(std::move(other.label_)) {
    other.segment_.reset();
}

QueueCore& QueueCore::operator=(QueueCore&& other) noexcept {
    if (this != &other) {
        segment_ = std::move(other.segment_);
        other.segment_.reset();
        spsc_ = std::exchange(other.spsc_, std::nullopt);
        mpmc_ = std::exchange(other.mpmc_, std::nullopt);
        spsc_fast_ = std::exchange(other.spsc_fast_, SpscFastPath());
        spill_ = std::move(other.spill_);
        label_ = std::move(other.label_);
    }
    return *this;
}

QueueCore::~QueueCore() = default;

void QueueCore::check(const char* operation) const {
    if (!spsc_ && !mpmc_) throw StateError(std::string("queue: ") + operation + ": moved-from handle");
}

RingControl& QueueCore::control() const {
    check("control");
    return spsc_ ? spsc_->control() : mpmc_->control();
}

void QueueCore::put(std::span<const std::byte> message, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check("put");
    if (!block && timeout) throw ValueError(label_ + ": put: a timeout cannot be given for a non-blocking call");
    // The rings take the optional by reference: passed by value, it went through the stack as a word and a
    // byte and was read back as two words, a load the store buffer cannot forward (perf showed half of an
    // MPMC get's own time on it).
    const std::optional<std::chrono::nanoseconds> zero = std::chrono::nanoseconds(0);
    const std::optional<std::chrono::nanoseconds>& bound = block ? timeout : zero;
    const RingStatus status = spsc_ ? spsc_->put(message, bound) : mpmc_->put(message, bound);
    switch (status) {
    case RingStatus::ok: return;
    case RingStatus::closed: throw Closed(label_ + ": put: the queue is closed");
    case RingStatus::timed_out: throw Full(label_ + ": put: still full when the timeout expired");
    default: throw Full(label_ + ": put: the queue is full");
    }
}

bool QueueCore::try_put(std::span<const std::byte> message) {
    check("try_put");
    const std::optional<std::chrono::nanoseconds> bound = std::chrono::nanoseconds(0);
    const RingStatus status = spsc_ ? spsc_->put(message, bound) : mpmc_->put(message, bound);
    if (status == RingStatus::closed) throw Closed(label_ + ": try_put: the queue is closed");
    return status == RingStatus::ok;
}

std::size_t QueueCore::get(std::span<std::byte> out, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check("get");
    if (!block && timeout) throw ValueError(label_ + ": get: a timeout cannot be given for a non-blocking call");
    std::size_t length = slot_size();
    const std::optional<std::chrono::nanoseconds> zero = std::chrono::nanoseconds(0);
    const std::optional<std::chrono::nanoseconds>& bound = block ? timeout : zero;  // by reference: see put()
    const RingStatus status = spsc_ ? spsc_->get(out, bound) : mpmc_->get(out, bound, &length);
    switch (status) {
    case RingStatus::ok: return length;
    case RingStatus::closed: throw Closed(label_ + ": get: the queue is closed and drained");
    case RingStatus::timed_out: throw Empty(label_ + ": get: still empty when the timeout expired");
    default: throw Empty(label_ + ": get: the queue is empty");
    }
}

std::optional<std::size_t> QueueCore::try_get(std::span<std::byte> out) {
    check("try_get");
    const std::optional<std::chrono::nanoseconds> bound = std::chrono::nanoseconds(0);
    std::size_t length = slot_size();
    const RingStatus status = spsc_ ? spsc_->get(out, bound) : mpmc_->get(out, bound, &length);
    if (status == RingStatus::closed) throw Closed(label_ + ": try_get: the queue is closed and drained");
    if (status != RingStatus::ok) return std::nullopt;
    return length;
}

std::size_t QueueCore::put_many(const void* messages, std::size_t count) {
    check("put_many");
    return spsc_ ? spsc_->put_many(messages, count) : mpmc_->put_many(messages, count);
}

std::size_t QueueCore::get_many(void* out, std::size_t count) {
    check("get_many");
    return spsc_ ? spsc_->get_many(out, count) : mpmc_->get_many(out, count);
}

std::size_t QueueCore::qsize() const {
    check("qsize");
    return spsc_ ? spsc_->size() : mpmc_->size();
}

bool QueueCore::ready_to_get() const {
    check("ready_to_get");
    return spsc_ ? spsc_->ready_to_get() : mpmc_->size() > 0;
}

void QueueCore::close() {
    check("close");
    spsc_ ? spsc_->close() : mpmc_->close();
}

bool QueueCore::closed() const {
    check("closed");
    return spsc_ ? spsc_->closed() : mpmc_->closed();
}

std::uint32_t QueueCore::repaired_slots() const {
    check("repaired_slots");
    return spsc_ ? 0 : mpmc_->repaired_slots();
}

std::size_t QueueCore::capacity() const {
    check("capacity");
    return spsc_ ? spsc_->capacity() : mpmc_->capacity();
}

std::size_t QueueCore::slot_size() const {
    check("slot_size");
    return spsc_ ? spsc_->slot_size() : mpmc_->slot_size();
}

QueueKind QueueCore::kind() const {
    check("kind");
    return spsc_ ? QueueKind::spsc : QueueKind::mpmc;
}

const std::string& QueueCore::name() const noexcept {
    static const std::string none;
    return segment_ ? segment_->name() : none;
}

void QueueCore::unlink() {
    check("unlink");
    if (!segment_) throw StateError(label_ + ": unlink: a placed queue has no name");
    segment_->unlink();
}

void QueueCore::add_unfinished_task() {
    // relaxed: a count; the put that follows publishes the message (release) after it.
    unfinished_of(control()).fetch_add(1, std::memory_order_relaxed);
}

void QueueCore::remove_unfinished_task_after_failed_put() {
    RingControl& ring = control();
    // acq_rel: as task_done.
    if (unfinished_of(ring).fetch_sub(1, std::memory_order_acq_rel) == 1) notify(ring.tasks.all_done);
}

void QueueCore::task_done() {
    RingControl& ring = control();
    // relaxed: a first guess for the CAS.
    std::uint64_t count = unfinished_of(ring).load(std::memory_order_relaxed);
    do {
        if (count == 0) throw ValueError(label_ + ": task_done: called more times than there were items put");
        // release: pairs with join()'s acquire, so the work done for the task is visible to the joiner.
    } while (!unfinished_of(ring).compare_exchange_weak(count, count - 1, std::memory_order_release,
                                                         std::memory_order_relaxed));
    if (count == 1) notify(ring.tasks.all_done);
}

bool QueueCore::join(std::optional<std::chrono::nanoseconds> timeout) {
    RingControl& ring = control();
    const std::optional<Deadline> deadline = timeout ? std::optional(Deadline::after(*timeout)) : std::nullopt;
    return await_condition(ring.tasks.all_done, deadline ? &*deadline : nullptr, [&] {
        // acquire: pairs with task_done's release.
        return unfinished_of(ring).load(std::memory_order_acquire) == 0;
    });
}


namespace {

constexpr std::size_t kRecordLengthBytes = 4;

// An inline record [4-byte length | bytes] in a per-thread buffer.
std::span<const std::byte> inline_record(std::span<const std::byte> message) {
    thread_local std::vector<std::byte> record;
    if (record.size() < kRecordLengthBytes + message.size()) record.resize(kRecordLengthBytes + message.size());
    const auto length = static_cast<std::uint32_t>(message.size());
    std::memcpy(record.data(), &length, kRecordLengthBytes);
    if (!message.empty()) std::memcpy(record.data() + kRecordLengthBytes, message.data(), message.size());
    return {record.data(), kRecordLengthBytes + message.size()};
}

std::string corrupted(const std::string& label, const std::string& what) {
    return label + ": get: " + what + ": the queue's memory was corrupted (the message is dropped)";
}

}  // namespace

std::size_t QueueCore::max_inline() const { return slot_size() - kRecordLengthBytes; }

std::uint64_t QueueCore::spill_budget() const noexcept { return spill_ ? spill_->budget() : 0; }

void QueueCore::put_message(std::span<const std::byte> message, bool block,
                            std::optional<std::chrono::nanoseconds> timeout) {
    check("put");
    if (message.size() <= max_inline()) {
        put(inline_record(message), block, timeout);
        return;
    }
    put_spilled(message, block, timeout);
}

std::uint32_t QueueCore::reclaim_spill() {
    check("reclaim_spill");
    if (!spill_) return 0;
    if (mpmc_) {
        RawMpmcRing& ring = *mpmc_;
        return spill_->reclaim([&](std::uint64_t position) noexcept {
            if (ring.position_finished(position)) return true;
            try {
                ring.repair_if_claimer_died(position);  // its claimer reported dead: repair, then judge again
            } catch (...) {
                return false;  // this thread holds a slot (or has no robust list): judged again later
            }
            return ring.position_finished(position);
        });
    }
    // SPSC: run by the producer (the only one that reclaims). A position the consumer passed is done; a
    // position at or past this producer's next one was tagged by a producer that died before publishing it.
    RingControl& ring = spsc_->control();
    // relaxed: this producer's own position (or a dead one's, visible once its death is known).
    const std::uint64_t produced = position_of(ring.producer).load(std::memory_order_relaxed);
    // acquire: pairs with the consumer's release of its position (C5): its reads of the blocks are done.
    const std::uint64_t consumed = position_of(ring.consumer).load(std::memory_order_acquire);
    return spill_->reclaim([&](std::uint64_t position) noexcept {
        return static_cast<std::int64_t>(consumed - position) > 0 || static_cast<std::int64_t>(position - produced) >= 0;
    });
}

// Whether `blocks` blocks are free (reclaiming garbage first), waiting for them when blocking: on the
// arena's eventcount, which consumers notify after freeing; its periodic re-check also catches space that
// a death made reclaimable (nobody notifies for that).
bool QueueCore::wait_for_spill_space(std::uint32_t blocks, bool block, const void* deadline_pointer) {
    const auto* deadline = static_cast<const Deadline*>(deadline_pointer);
    const auto enough = [&] {
        if (spill_->free_blocks() >= blocks) return true;
        reclaim_spill();
        return spill_->free_blocks() >= blocks;
    };
    if (enough()) return true;
    if (!block) return false;
    EventCountLayout& event = spill_->freed_event();
    for (;;) {
        const std::uint32_t key = prepare_wait(event);
        if (closed() || enough()) return true;
        const bool in_time = wait_for_notification(event, key, deadline);
        if (closed() || enough()) return true;
        if (!in_time) return false;
    }
}

void QueueCore::put_spilled(std::span<const std::byte> message, bool block,
                            std::optional<std::chrono::nanoseconds> timeout) {
    if (!block && timeout) throw ValueError(label_ + ": put: a timeout cannot be given for a non-blocking call");
    if (!spill_ || message.size() > spill_->budget())
        throw ValueError(label_ + ": put: a message of " + std::to_string(message.size()) + " bytes, at most " +
                         std::to_string(max_inline()) + " fit a slot and the spill budget is " +
                         std::to_string(spill_budget()) + " bytes");
    const std::uint32_t needed = spill_->blocks_for(message.size());
    const std::optional<Deadline> deadline =
        block && timeout ? std::optional(Deadline::after(*timeout)) : std::nullopt;
    const auto budget_in_use = [&] {
        return Full(label_ + ": put: the spill budget is in use: a message of " + std::to_string(message.size()) +
                    " bytes needs " + std::to_string(needed) + " blocks of " + std::to_string(spill_->block_size()) +
                    ", " + std::to_string(spill_->free_blocks()) + " of " + std::to_string(spill_->block_count()) +
                    " are free" + (block ? " at the timeout" : ""));
    };
    const auto ring_bound = [&]() -> std::optional<std::chrono::nanoseconds> {
        if (!block) return std::chrono::nanoseconds(0);
        if (!deadline) return std::nullopt;
        return std::max(deadline->remaining(), std::chrono::nanoseconds(1));  // 0 would mean "one attempt"
    };
    thread_local std::vector<std::uint32_t> blocks;
    for (;;) {
        if (closed()) throw Closed(label_ + ": put: the queue is closed");
        if (!wait_for_spill_space(needed, block, deadline ? &*deadline : nullptr)) throw budget_in_use();
        if (closed()) throw Closed(label_ + ": put: the queue is closed");
        SpillDescriptor descriptor{kSpilledMarker, needed, message.size(), 0, 0, 0};
        if (mpmc_) {
            // The slot is claimed first: the blocks are tagged with its position, under its robust claim.
            MpmcReservation reservation;
            const RingStatus status = mpmc_->reserve(reservation, ring_bound());
            if (status == RingStatus::closed) throw Closed(label_ + ": put: the queue is closed");
            if (status != RingStatus::ok) throw Full(label_ + ": put: the queue is full");
            descriptor.tag = reservation.position() + 1;
            if (!spill_->allocate(descriptor.tag, needed, blocks)) {
                reservation.cancel();  // published empty: consumers step over it, nothing is lost
                if (!block) throw budget_in_use();
                continue;  // another producer took the space first
            }
            spill_->write(blocks, message);
            descriptor.head = blocks.front();
            std::memcpy(reservation.slot().data(), &descriptor, sizeof descriptor);
            MPROC_KILL_POINT(spill_put, 2);  // copied, descriptor written, not published: the repair skips it
            try {
                reservation.commit(sizeof descriptor);
            } catch (...) {
                spill_->free(blocks, descriptor.tag);  // closed meanwhile: published empty
                throw;
            }
            MPROC_KILL_POINT(spill_put, 3);  // published: the message is the consumer's
            return;
        }
        // SPSC: this producer's next position is where the descriptor goes (nobody else puts).
        // relaxed: this producer's own position.
        descriptor.tag = position_of(spsc_->control().producer).load(std::memory_order_relaxed) + 1;
        if (!spill_->allocate(descriptor.tag, needed, blocks)) {
            if (!block) throw budget_in_use();
            continue;
        }
        spill_->write(blocks, message);
        descriptor.head = blocks.front();
        MPROC_KILL_POINT(spill_put, 2);  // copied, not published: garbage for the next producer
        const RingStatus status = spsc_->put(std::as_bytes(std::span(&descriptor, 1)), ring_bound());
        if (status != RingStatus::ok) {
            spill_->free(blocks, descriptor.tag);
            if (status == RingStatus::closed) throw Closed(label_ + ": put: the queue is closed");
            if (status == RingStatus::timed_out) throw Full(label_ + ": put: still full when the timeout expired");
            throw Full(label_ + ": put: the queue is full");
        }
        MPROC_KILL_POINT(spill_put, 3);  // published: the message is the consumer's
        return;
    }
}

namespace {

// What a record in a slot turned out to be.
struct RecordView {
    bool spilled = false;
    std::uint32_t inline_length = 0;
    SpillDescriptor descriptor{};
};

RecordView view_record(std::span<const std::byte> record, std::size_t max_inline, bool has_spill,
                       const std::string& label) {
    RecordView view;
    if (record.size() < kRecordLengthBytes)
        throw InvalidObject(corrupted(label, "a record of " + std::to_string(record.size()) + " bytes"));
    std::memcpy(&view.inline_length, record.data(), kRecordLengthBytes);
    if (view.inline_length != kSpilledMarker) {
        // The length is another process's word: used only once checked against what a slot can hold.
        if (view.inline_length > max_inline || view.inline_length > record.size() - kRecordLengthBytes)
            throw InvalidObject(corrupted(label, "a record claims " + std::to_string(view.inline_length) +
                                                     " bytes, at most " + std::to_string(max_inline) + " fit"));
        return view;
    }
    if (!has_spill || record.size() < sizeof(SpillDescriptor))
        throw InvalidObject(corrupted(label, "a spilled-message descriptor in a queue without a spill arena"));
    view.spilled = true;
    std::memcpy(&view.descriptor, record.data(), sizeof view.descriptor);
    return view;
}

}  // namespace

std::vector<std::byte> QueueCore::get_message(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    std::vector<std::byte> message;
    get_message(message, block, timeout);
    return message;
}

void QueueCore::get_message(std::vector<std::byte>& out, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check("get");
    if (!block && timeout) throw ValueError(label_ + ": get: a timeout cannot be given for a non-blocking call");
    thread_local std::vector<std::uint32_t> blocks;
    const bool has_spill = spill_ != nullptr;
    // Reads the record at `position` while the slot is still held; release() gives the slot back.
    const auto take = [&](std::span<const std::byte> record, std::uint64_t position, auto&& release) {
        const RecordView view = view_record(record, max_inline(), has_spill, label_);
        if (!view.spilled) {
            out.assign(record.begin() + kRecordLengthBytes, record.begin() + kRecordLengthBytes + view.inline_length);
            release();
            return;
        }
        const std::uint64_t tag = position + 1;
        const std::string problem = spill_->check_chain(view.descriptor, tag, blocks);
        if (!problem.empty()) {
            release();
            throw InvalidObject(corrupted(label_, problem));
        }
        out.resize(view.descriptor.length);  // at most the budget (checked)
        const bool intact = spill_->read(blocks, tag, out);
        MPROC_KILL_POINT(spill_get, 1);  // copied out, the slot still held: nothing lost yet for the ring
        release();
        if (!intact) throw InvalidObject(corrupted(label_, "a spilled message's blocks were freed while it was read"));
        spill_->free(blocks, tag);
    };
    const std::optional<std::chrono::nanoseconds> zero = std::chrono::nanoseconds(0);
    const std::optional<std::chrono::nanoseconds>& bound = block ? timeout : zero;
    if (mpmc_) {
        MpmcLease lease;
        const RingStatus status = mpmc_->peek(lease, bound);
        switch (status) {
        case RingStatus::ok: break;
        case RingStatus::closed: throw Closed(label_ + ": get: the queue is closed and drained");
        case RingStatus::timed_out: throw Empty(label_ + ": get: still empty when the timeout expired");
        default: throw Empty(label_ + ": get: the queue is empty");
        }
        // A record that throws is consumed by the lease's destructor (the message is dropped).
        take(lease.message(), lease.position(), [&] { lease.release(); });
        return;
    }
    const std::optional<Deadline> deadline = block && timeout ? std::optional(Deadline::after(*timeout)) : std::nullopt;
    RawSpscRing& ring = *spsc_;
    for (;;) {
        RingRegion region = ring.peek(1);
        if (region.count == 0 && ring.closed()) {
            region = ring.peek(1);  // a message put before close() is still delivered
            if (region.count == 0) throw Closed(label_ + ": get: the queue is closed and drained");
        }
        if (region.count != 0) {
            // relaxed: this consumer's own position, where peek() found the slot.
            const std::uint64_t position = position_of(ring.control().consumer).load(std::memory_order_relaxed);
            bool released = false;
            const auto release = [&] {
                if (!released) ring.release(1);
                released = true;
            };
            try {
                take({region.data, ring.slot_size()}, position, release);
                return;
            } catch (...) {
                release();  // a corrupted record is dropped, as the MPMC lease drops it
                throw;
            }
        }
        if (!block) throw Empty(label_ + ": get: the queue is empty");
        if (!await_condition(control().not_empty.event, deadline ? &*deadline : nullptr,
                             [&] { return ring.ready_to_get() || ring.closed(); }))
            throw Empty(label_ + ": get: still empty when the timeout expired");
    }
}

}  // namespace mproc::detail

namespace mproc {

namespace {

// Slots hold max_message bytes after the length, and at least a spill descriptor.
std::size_t byte_queue_slot(std::size_t max_message, std::uint64_t spill_budget) {
    const std::size_t record = max_message + ByteQueue::kLengthBytes;
    return spill_budget == 0 ? record : std::max(record, sizeof(detail::SpillDescriptor));
}

}  // namespace

ByteQueue::ByteQueue(std::size_t max_message, std::size_t capacity, QueueKind kind, std::uint64_t spill_budget)
    : core_(detail::QueueCore::anonymous(kind, capacity, byte_queue_slot(max_message, spill_budget), spill_budget)) {}

ByteQueue ByteQueue::create(std::string_view name, std::size_t max_message, std::size_t capacity, QueueKind kind,
                            mode_t mode, std::uint64_t spill_budget) {
    return ByteQueue(detail::QueueCore::create(name, kind, capacity, byte_queue_slot(max_message, spill_budget), mode,
                                               spill_budget));
}

// A queue opened or attached as a ByteQueue: its slots must hold at least the 4-byte length.
detail::QueueCore ByteQueue::checked_byte_queue(detail::QueueCore core) {
    if (core.slot_size() < kLengthBytes)
        throw InvalidObject(core.label() + ": slots of " + std::to_string(core.slot_size()) +
                            " bytes cannot hold a byte message");
    return core;
}

ByteQueue ByteQueue::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return ByteQueue(checked_byte_queue(detail::QueueCore::open(name, 0, publish_timeout)));
}

ByteQueue ByteQueue::from_fd(int fd) { return ByteQueue(checked_byte_queue(detail::QueueCore::from_fd(fd, 0))); }

void ByteQueue::put(std::span<const std::byte> message, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    core_.put_message(message, block, timeout);
}

std::vector<std::byte> ByteQueue::get(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    return core_.get_message(block, timeout);
}

}  // namespace mproc
