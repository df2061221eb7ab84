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
#include "mproc/object_header.hpp"
#include "ring_common.hpp"

namespace mproc::detail {
namespace {

std::uint32_t queue_layout_version() { return current_layout_version(ObjectKind::queue); }

std::size_t ring_size_for(QueueKind kind, std::size_t capacity, std::size_t slot_size) {
    return kind == QueueKind::spsc ? RawSpscRing::required_size(capacity, slot_size)
                                   : RawMpmcRing::required_size(capacity, slot_size);
}

void init_ring(void* memory, std::size_t size, QueueKind kind, std::size_t capacity, std::size_t slot_size) {
    if (kind == QueueKind::spsc)
        RawSpscRing::init(memory, size, capacity, slot_size);
    else
        RawMpmcRing::init(memory, size, capacity, slot_size);
}

void check_kind(QueueKind kind) {
    if (kind != QueueKind::mpmc && kind != QueueKind::spsc)
        throw ValueError("queue: kind " + std::to_string(static_cast<std::uint32_t>(kind)) + " is neither mpmc nor spsc");
}

std::atomic_ref<std::uint64_t> unfinished_of(RingControl& control) noexcept {
    return std::atomic_ref(control.tasks.unfinished);
}

}  // namespace

QueueCore QueueCore::anonymous(QueueKind kind, std::size_t capacity, std::size_t slot_size) {
    check_kind(kind);
    const std::size_t size = ring_size_for(kind, capacity, slot_size);
    QueueCore core;
    core.segment_.emplace(SharedMemory::anonymous_object(
        ObjectKind::queue, queue_layout_version(), size,
        [&](std::span<std::byte> payload) { init_ring(payload.data(), payload.size(), kind, capacity, slot_size); }));
    core.label_ = "anonymous queue";
    core.adopt(core.segment_->bytes().data(), core.segment_->size(), slot_size);
    return core;
}

QueueCore QueueCore::create(std::string_view name, QueueKind kind, std::size_t capacity, std::size_t slot_size,
                            mode_t mode) {
    check_kind(kind);
    const std::size_t size = ring_size_for(kind, capacity, slot_size);  // checked before the name exists
    QueueCore core;
    core.segment_.emplace(SharedMemory::create_object(
        name, ObjectKind::queue, queue_layout_version(), size, mode,
        [&](std::span<std::byte> payload) { init_ring(payload.data(), payload.size(), kind, capacity, slot_size); }));
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

std::size_t QueueCore::placed_size(QueueKind kind, std::size_t capacity, std::size_t slot_size) {
    check_kind(kind);
    return ring_size_for(kind, capacity, slot_size);
}

QueueCore QueueCore::place(void* memory, std::size_t size, QueueKind kind, std::size_t capacity,
                           std::size_t slot_size) {
    check_kind(kind);
    init_ring(memory, size, kind, capacity, slot_size);
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
    } catch (...) {
        spsc_.reset();
        mpmc_.reset();
        spsc_fast_ = SpscFastPath();
        throw;
    }
    if (expected_slot_size != 0 && slot_size() != expected_slot_size) {
        const std::size_t found = slot_size();
        spsc_.reset();
        mpmc_.reset();
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

}  // namespace mproc::detail

namespace mproc {

ByteQueue::ByteQueue(std::size_t max_message, std::size_t capacity, QueueKind kind)
    : core_(detail::QueueCore::anonymous(kind, capacity, max_message + kLengthBytes)) {}

ByteQueue ByteQueue::create(std::string_view name, std::size_t max_message, std::size_t capacity, QueueKind kind,
                            mode_t mode) {
    return ByteQueue(detail::QueueCore::create(name, kind, capacity, max_message + kLengthBytes, mode));
}

ByteQueue ByteQueue::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    detail::QueueCore core = detail::QueueCore::open(name, 0, publish_timeout);
    if (core.slot_size() < kLengthBytes)
        throw InvalidObject(core.label() + ": slots of " + std::to_string(core.slot_size()) +
                            " bytes cannot hold a byte message");
    return ByteQueue(std::move(core));
}

std::span<const std::byte> ByteQueue::frame(std::span<const std::byte> message) {
    if (message.size() > max_message())
        throw ValueError(core_.label() + ": put: a message of " + std::to_string(message.size()) +
                         " bytes, at most " + std::to_string(max_message()) + " fit");
    thread_local std::vector<std::byte> record;
    if (record.size() < kLengthBytes + message.size()) record.resize(kLengthBytes + message.size());
    const auto length = static_cast<std::uint32_t>(message.size());
    std::memcpy(record.data(), &length, kLengthBytes);
    if (!message.empty()) std::memcpy(record.data() + kLengthBytes, message.data(), message.size());
    return {record.data(), kLengthBytes + message.size()};
}

void ByteQueue::put(std::span<const std::byte> message, bool block, std::optional<std::chrono::nanoseconds> timeout) {
    core_.put(frame(message), block, timeout);
}

std::vector<std::byte> ByteQueue::get(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    std::vector<std::byte> record(core_.slot_size());
    core_.get(record, block, timeout);
    std::uint32_t length;
    std::memcpy(&length, record.data(), kLengthBytes);
    // The length is another process's word: used only once checked against what a slot can hold.
    if (length > max_message())
        throw InvalidObject(core_.label() + ": get: a record claims " + std::to_string(length) +
                            " bytes, at most " + std::to_string(max_message()) +
                            " fit: the queue's memory was corrupted (the record is dropped)");
    record.erase(record.begin(), record.begin() + kLengthBytes);
    record.resize(length);
    return record;
}

}  // namespace mproc
