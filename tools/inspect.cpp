// tools/inspect.cpp — the reading path of the `mproc` tool (see inspect.hpp). Every payload is first
// validated by the library's own attach() for its kind, on the private copy; only then are the layout's
// fields copied out (memcpy, no atomics: the copy is private) and reported.
#include "inspect.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>

#include <linux/futex.h>

#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/lock.hpp"
#include "mproc/object_header.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/rlock.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/value.hpp"

namespace mproc::tool {

namespace {

template <class T>
T copy_out(std::span<const std::byte> bytes, std::size_t offset) {
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

std::string json_bool(bool value) { return value ? "true" : "false"; }
std::string json_number(std::uint64_t value) { return std::to_string(value); }

void add(ObjectReport& report, std::string name, std::string json) {
    report.state.push_back({std::move(name), std::move(json)});
}

// A robust futex word's owner: its TID, or null when free; whether the kernel marked the owner dead.
void add_robust_word(ObjectReport& report, const std::string& prefix, std::uint32_t word) {
    const std::uint32_t tid = word & FUTEX_TID_MASK;
    add(report, prefix + "_tid", tid == 0 ? "null" : json_number(tid));
    if (tid != 0) report.threads.push_back({prefix + "_alive", tid});
    add(report, prefix + "_died", json_bool((word & FUTEX_OWNER_DIED) != 0));
    add(report, "waiters", json_bool((word & FUTEX_WAITERS) != 0));
}

std::string_view consistency_name(std::uint32_t consistency) {
    switch (static_cast<LockConsistency>(consistency)) {
    case LockConsistency::consistent: return "consistent";
    case LockConsistency::inconsistent: return "inconsistent";
    case LockConsistency::not_recoverable: return "not_recoverable";
    }
    return "unknown";
}

// A RawLock or RawRLock (by its magic) at payload[offset]; validated by the library's attach().
void add_lock(ObjectReport& report, std::span<std::byte> payload, std::size_t offset, const std::string& prefix) {
    void* memory = payload.data() + offset;
    const std::size_t size = payload.size() - offset;
    const auto layout = copy_out<detail::RobustMutexLayout>(payload, offset);
    const bool recursive = layout.magic == detail::kRawRLockMagic;
    if (recursive) RawRLock::attach(memory, size);
    else RawLock::attach(memory, size);
    add(report, prefix == "owner" ? "recursive" : prefix + "_recursive", json_bool(recursive));
    add_robust_word(report, prefix, layout.word);
    add(report, "consistency", json_string(consistency_name(layout.consistency)));
    add(report, "sleepers", json_number(layout.sleepers));
    if (recursive) add(report, "recursion", json_number(layout.recursion));
}

void inspect_semaphore(ObjectReport& report, std::span<std::byte> payload) {
    const auto layout = copy_out<detail::SemaphoreLayout>(payload, 0);
    const bool bounded = layout.magic == detail::kRawBoundedSemaphoreMagic;
    if (bounded) RawBoundedSemaphore::attach(payload.data(), payload.size());
    else RawSemaphore::attach(payload.data(), payload.size());
    add(report, "bounded", json_bool(bounded));
    add(report, "value", json_number(layout.word & ~detail::kSemaphoreWaiters));
    add(report, "bound", bounded ? json_number(layout.bound) : "null");
    add(report, "waiters", json_bool((layout.word & detail::kSemaphoreWaiters) != 0));
}

void inspect_event(ObjectReport& report, std::span<std::byte> payload) {
    RawEvent::attach(payload.data(), payload.size());
    const auto layout = copy_out<detail::EventLayout>(payload, 0);
    add(report, "set", json_bool((layout.word & detail::kEventSet) != 0));
    add(report, "waiters", json_bool((layout.word & detail::kEventWaiters) != 0));
}

// Slots of robust words (condition waiters, barrier participants): how many hold a live TID, how many the
// kernel marked dead.
struct SlotCounts {
    std::uint32_t occupied = 0;
    std::uint32_t notified = 0;
    std::uint32_t dead = 0;
};

// Reads at most the slots that fit in `bytes` after `first`, whatever `count` claims: a count is a shared
// field that the validators may not bound (a condition's high_water is checked under its lock, at use).
template <class Slot>
SlotCounts count_slots(std::span<const std::byte> bytes, std::size_t first, std::uint32_t count) {
    SlotCounts counts;
    const std::size_t fit = bytes.size() > first ? (bytes.size() - first) / sizeof(Slot) : 0;
    const std::size_t readable = std::min<std::size_t>(count, fit);
    for (std::size_t i = 0; i < readable; ++i) {
        const auto slot = copy_out<Slot>(bytes, first + i * sizeof(Slot));
        if ((slot.word & FUTEX_OWNER_DIED) != 0) ++counts.dead;
        else if ((slot.word & FUTEX_TID_MASK) != 0) {
            ++counts.occupied;
            if ((slot.word & FUTEX_WAITERS) != 0) ++counts.notified;
        }
    }
    return counts;
}

// A named condition: [its own RawLock or RawRLock: 64 bytes | RawCondition].
void inspect_condition(ObjectReport& report, std::span<std::byte> payload) {
    constexpr std::size_t kLockBytes = sizeof(detail::RobustMutexLayout);
    if (payload.size() < kLockBytes) throw InvalidObject("condition: payload shorter than its lock");
    add_lock(report, payload, 0, "lock_owner");
    const std::span<std::byte> rest = payload.subspan(kLockBytes);
    const RawCondition condition = RawCondition::attach(rest.data(), rest.size(), "condition");
    const auto control = copy_out<detail::ConditionControl>(rest, 0);
    // attach() checked that `capacity` slots fit; high_water is bounded by capacity here.
    const SlotCounts slots = count_slots<detail::ConditionWaiterSlot>(
        rest, sizeof(detail::ConditionControl), std::min(control.high_water, condition.capacity()));
    add(report, "capacity", json_number(condition.capacity()));
    add(report, "waiting", json_number(slots.occupied - slots.notified));
    add(report, "notified", json_number(slots.notified));
    add(report, "dead_waiters", json_number(slots.dead));
}

// [BarrierControl: 64 | internal RawLock: 64 | slot_count slots of 64].
void inspect_barrier(ObjectReport& report, std::span<std::byte> payload) {
    const RawBarrier barrier = RawBarrier::attach(payload.data(), payload.size(), "barrier");
    const auto control = copy_out<detail::BarrierControl>(payload, 0);
    const SlotCounts slots = count_slots<detail::BarrierSlot>(
        payload, sizeof(detail::BarrierControl) + sizeof(detail::RobustMutexLayout), control.slot_count);
    add(report, "parties", json_number(barrier.parties()));
    add(report, "waiting", json_number(slots.occupied));
    add(report, "missing", json_number(barrier.parties() > slots.occupied ? barrier.parties() - slots.occupied : 0));
    add(report, "dead_participants", json_number(slots.dead));
    add(report, "broken", json_bool(barrier.broken()));
}

// [RobustMutexLayout (zero without a lock) | SharedDataDescriptor | data].
void inspect_shared_data(ObjectReport& report, std::span<std::byte> payload, ObjectKind kind) {
    if (payload.size() < detail::kSharedDataOffset) throw InvalidObject("payload shorter than its descriptor");
    const auto descriptor = copy_out<detail::SharedDataDescriptor>(payload, sizeof(detail::RobustMutexLayout));
    const bool has_lock = (descriptor.flags & detail::kSharedDataHasLock) != 0;
    // The library's validator, told the element type the descriptor records: it checks the descriptor
    // against itself and against the payload size.
    const detail::ElementType type{static_cast<std::size_t>(descriptor.element_size),
                                   static_cast<std::size_t>(descriptor.element_alignment), descriptor.type_id};
    detail::attach_shared_data(payload.data(), payload.size(), kind, type, std::nullopt,
                               has_lock ? Locking::with_lock : Locking::none, object_kind_name(kind));
    add(report, "element_size", json_number(descriptor.element_size));
    add(report, "element_alignment", json_number(descriptor.element_alignment));
    add(report, "length", json_number(descriptor.count));
    add(report, "has_lock", json_bool(has_lock));
    if (has_lock) add_lock(report, payload, 0, "lock_owner");
}

// [RingControl | slots]: the library's QueueCore::attach validates the ring.
void inspect_queue(ObjectReport& report, std::span<std::byte> payload) {
    if (payload.size() < sizeof(detail::RingConstants)) throw InvalidObject("queue: payload shorter than its ring");
    const auto constants = copy_out<detail::RingConstants>(payload, 0);
    const detail::QueueCore core = detail::QueueCore::attach(payload.data(), payload.size(), constants.slot_size);
    const auto control = copy_out<detail::RingControl>(payload, 0);
    add(report, "queue_kind", json_string(core.kind() == QueueKind::spsc ? "spsc" : "mpmc"));
    add(report, "capacity", json_number(core.capacity()));
    add(report, "slot_size", json_number(core.slot_size()));
    add(report, "depth", json_number(core.qsize()));
    add(report, "closed", json_bool(core.closed()));
    add(report, "unfinished_tasks", json_number(control.tasks.unfinished));
    add(report, "repaired_slots", json_number(core.repaired_slots()));
}

// [PipeControl | rings]: the library's validator checks the header line; then each end's holder words. An
// end is held while one of its words names a thread (a word the kernel marked FUTEX_OWNER_DIED, or whose
// hold a close() revoked, holds nothing). The rings are not decoded: their fill says little without the
// message boundaries.
void inspect_pipe(ObjectReport& report, std::span<std::byte> payload, const std::string& label) {
    const detail::PipeLayout layout = detail::validate_pipe_layout(payload, label);
    const auto control = copy_out<detail::PipeControl>(payload, 0);
    add(report, "duplex", json_bool(layout.ring_count == 2));
    add(report, "ring_size", json_number(layout.ring_size));
    add(report, "awaiting_opener", json_bool(control.header.end1_opened == 0));
    for (std::size_t end = 0; end < 2; ++end) {
        std::uint64_t holders = 0;
        for (std::size_t slot = 0; slot < detail::kPipeHolders; ++slot) {
            const detail::PipeHolder& holder = control.ends[end].holders[slot];
            const std::uint32_t tid = holder.word & FUTEX_TID_MASK;
            if (tid == 0 || (holder.word & FUTEX_OWNER_DIED) != 0 || holder.revoked_tid == tid) continue;
            const std::string prefix = "end" + std::to_string(end) + "_holder" + std::to_string(holders++);
            add(report, prefix + "_tid", json_number(tid));
            report.threads.push_back({prefix + "_alive", tid});
        }
        add(report, "end" + std::to_string(end) + "_holders", json_number(holders));
    }
}

}  // namespace

std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte >= 0x7f) {
            // Bytes outside printable ASCII as \u00XX: valid JSON whatever the name's encoding.
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

ObjectReport inspect_snapshot(std::span<std::byte> bytes, std::uint64_t file_size, const std::string& name) {
    ObjectReport report;
    report.name = name;
    report.file_size = file_size;
    if (bytes.size() < sizeof(std::uint64_t) || copy_out<std::uint64_t>(bytes, 0) != kObjectMagic) return report;
    report.is_mproc = true;
    if (bytes.size() < kObjectHeaderSize) {
        report.reason = "truncated: " + std::to_string(file_size) + " bytes, the header alone is " +
                        std::to_string(kObjectHeaderSize);
        return report;
    }
    const auto header = copy_out<ObjectHeader>(bytes, 0);
    const auto kind = static_cast<ObjectKind>(header.kind);
    const std::string_view kind_name = object_kind_name(kind);
    report.kind = kind_name == "unknown kind" ? "" : std::string(kind_name);
    report.layout_version = header.layout_version;
    report.creator_pid = header.creator_pid;
    if (report.kind.empty()) {
        report.reason = "unknown kind " + std::to_string(header.kind);
        return report;
    }
    if (file_size > bytes.size()) {
        report.reason = "not inspected: " + std::to_string(file_size) + " bytes, more than the " +
                        std::to_string(bytes.size()) + " the tool reads";
        return report;
    }
    try {
        const ObjectHeaderFields fields =
            validate_object_header(bytes, object_label(kind, name), kind, current_layout_version(kind));
        report.payload_size = fields.payload_size;
        const std::span<std::byte> payload = bytes.subspan(fields.payload_offset, fields.payload_size);
        switch (kind) {
        case ObjectKind::shared_memory: break;  // the user's bytes: nothing to decode
        case ObjectKind::lock:
        case ObjectKind::rlock: add_lock(report, payload, 0, "owner"); break;
        case ObjectKind::semaphore: inspect_semaphore(report, payload); break;
        case ObjectKind::condition: inspect_condition(report, payload); break;
        case ObjectKind::event: inspect_event(report, payload); break;
        case ObjectKind::barrier: inspect_barrier(report, payload); break;
        case ObjectKind::value:
        case ObjectKind::array: inspect_shared_data(report, payload, kind); break;
        case ObjectKind::queue: inspect_queue(report, payload); break;
        case ObjectKind::pipe: inspect_pipe(report, payload, object_label(kind, name)); break;
        }
        report.valid = true;
    } catch (const Error& error) {
        report.state.clear();
        report.threads.clear();
        report.reason = error.what();
    } catch (const std::bad_alloc&) {
        report.state.clear();
        report.threads.clear();
        report.reason = "out of memory while reading";
    }
    return report;
}

}  // namespace mproc::tool
