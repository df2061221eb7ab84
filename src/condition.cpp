// Condition: waiter slots that are robust futex words (see include/mproc/condition.hpp for the contract).
//
// Slot word states (only a thread holding the condition's lock changes a word, except the kernel):
//   0                       free
//   tid                     waiting: the waiter released the lock and sleeps while the word is `tid`
//   tid | WAITERS           notified (notify's CAS under the lock, then FUTEX_WAKE 1)
//   OWNER_DIED [| WAITERS]  the waiter died inside wait() (the kernel's robust-list walk, at its death);
//                           freed by the next wait/notify, which re-delivers the notify if WAITERS was set
// wait():   [lock held] reclaim dead slots (re-deliver their notifies) -> claim a free slot: pending,
//           word = tid, link, clear pending, ticket = next_ticket++ -> release the lock fully ->
//           while word == tid: FUTEX_WAIT(word, tid) until the deadline -> re-acquire (restoring depth) ->
//           [lock held] pending, unlink, notified = exchange(word, 0) & WAITERS, clear pending.
// notify(n): [lock held] reclaim dead slots -> mark the n oldest live un-notified slots, waking each.
// Why no lost wake-up: a slot is claimed before the lock is released, so every notifier that takes the lock
// after the waiter released it sees the slot; FUTEX_WAIT compares the word with `tid` under the kernel's
// bucket lock, so a mark made before the waiter sleeps makes the sleep return at once.
// Why the lock orders everything: slots, tickets and the high-water mark are read and written only by
// holders of the lock, whose acquire/release publish them; the word itself is atomic because the waiter
// also reads it while asleep (without the lock) and the kernel may write it at a death.
// verify/condition/condition.pml models these functions.
#include "mproc/condition.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include <linux/futex.h>

#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/object_header.hpp"
#include "robust_list.hpp"

namespace mproc {
namespace {

using detail::ConditionControl;
using detail::ConditionWaiterSlot;
using detail::Deadline;
using detail::ThisThreadRobustList;

constexpr std::uint32_t kNotified = FUTEX_WAITERS;
constexpr std::uint32_t kWaiterDied = FUTEX_OWNER_DIED;
constexpr std::uint32_t kTidMask = FUTEX_TID_MASK;

static_assert(static_cast<std::ptrdiff_t>(offsetof(ConditionWaiterSlot, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(ConditionWaiterSlot, robust_next)) ==
                  detail::kRobustFutexOffset,
              "the slot layout and the robust list agree on where the futex word is");

constexpr std::string_view kRawConditionLabel = "raw condition";

std::atomic_ref<std::uint32_t> word_of(ConditionWaiterSlot& slot) noexcept { return std::atomic_ref(slot.word); }
void* node_of(ConditionWaiterSlot& slot) noexcept { return &slot.robust_next; }

std::string describe(std::string_view label, const char* operation, const std::string& cause) {
    return std::string(label) + ": " + operation + ": " + cause;
}

// An RLock's recursion depth, the field of its layout (RawRLock is its 64-byte layout and nothing else).
std::atomic_ref<std::uint32_t> recursion_of(RawRLock& lock) noexcept {
    static_assert(sizeof(RawRLock) == sizeof(detail::RobustMutexLayout) && std::is_standard_layout_v<RawRLock>);
    return std::atomic_ref(std::launder(reinterpret_cast<detail::RobustMutexLayout*>(&lock))->recursion);
}

// The lock a call names: a RawLock or a RawRLock, with what wait() needs of each.
class LockAccess {
public:
    explicit LockAccess(RawLock& lock) noexcept : lock_(&lock) {}
    explicit LockAccess(RawRLock& lock) noexcept : rlock_(&lock) {}

    bool held() const noexcept { return lock_ ? lock_->held_by_this_thread() : rlock_->held_by_this_thread(); }
    bool inconsistent() const noexcept {
        return (lock_ ? lock_->consistency() : rlock_->consistency()) == LockConsistency::inconsistent;
    }
    // Releases every level this thread holds; returns how many to restore. An RLock gives up all its
    // levels in one release: the depth is an owner-only field of shared memory that another process could
    // have rewritten to billions, and a release per level would then run for minutes.
    std::uint32_t release_fully() {
        if (lock_) {
            lock_->release();
            return 1;
        }
        const std::uint32_t depth = rlock_->depth();
        // relaxed: an owner-only field, written by its owner (this thread) before the release that follows.
        recursion_of(*rlock_).store(1, std::memory_order_relaxed);
        rlock_->release();
        return depth;
    }
    // Blocks until held again at `depth`; owner_died when the previous owner died (the lock is held).
    AcquireStatus reacquire(std::uint32_t depth) {
        if (lock_) return lock_->acquire_status(std::nullopt);
        const AcquireStatus status = rlock_->acquire_status(std::nullopt);
        // relaxed: the owner restores its own depth in one store, after the acquire that made it the owner.
        recursion_of(*rlock_).store(depth, std::memory_order_relaxed);
        return status;
    }

private:
    RawLock* lock_ = nullptr;
    RawRLock* rlock_ = nullptr;
};

// What one operation works on: the shared bytes, and the capacity its handle validated (never the shared
// copy, which a hostile process may rewrite at any time).
struct ConditionView {
    ConditionControl& control;
    ConditionWaiterSlot* slots;
    std::uint32_t capacity;  // validated: the slots that fit the memory

    // Slots [0, used()) may be in use; clamped so that a corrupted mark cannot reach past the slots.
    std::uint32_t used() const noexcept { return std::min(control.high_water, capacity); }
};

ConditionView view_of(ConditionControl& control, std::uint32_t capacity) noexcept {
    auto* first = reinterpret_cast<std::byte*>(&control) + sizeof(ConditionControl);
    return {control, std::launder(reinterpret_cast<ConditionWaiterSlot*>(first)), capacity};
}

// Frees the slots of waiters that died inside wait() and lowers the high-water mark to the last slot in
// use. Returns how many of the dead had been notified: notifies to re-deliver. Caller holds the lock.
std::uint32_t reclaim_dead_waiters(ConditionView& view) noexcept {
    std::uint32_t undelivered = 0;
    std::uint32_t last_in_use = 0;
    const std::uint32_t used = view.used();
    for (std::uint32_t index = 0; index < used; ++index) {
        auto word = word_of(view.slots[index]);
        // relaxed: slot words are published by the lock (acquired by the caller) or by the kernel, which
        // marks a dead waiter's word before the waiter's death is observable at all.
        std::uint32_t seen = word.load(std::memory_order_relaxed);
        if ((seen & kWaiterDied) != 0) {
            if ((seen & kNotified) != 0) ++undelivered;
            // relaxed: nobody else writes a dead waiter's word any more; the lock publishes the change.
            if (word.compare_exchange_strong(seen, 0, std::memory_order_relaxed, std::memory_order_relaxed))
                continue;
        }
        if (seen != 0) last_in_use = index + 1;
    }
    view.control.high_water = last_in_use;
    return undelivered;
}

bool waiting_unnotified(std::uint32_t word) noexcept {
    return (word & kTidMask) != 0 && (word & (kNotified | kWaiterDied)) == 0;
}

// Marks the slot notified and wakes its waiter; false when the waiter died in between (the kernel's
// mark won the CAS). Caller holds the lock.
bool notify_slot(ConditionWaiterSlot& slot, std::uint32_t seen) noexcept {
    // relaxed: the waiter reads the mark again after re-acquiring the lock, whose release/acquire orders
    // it; the kernel's value check in FUTEX_WAIT sees it regardless of ordering (a CAS is a full RMW).
    if (!word_of(slot).compare_exchange_strong(seen, seen | kNotified, std::memory_order_relaxed,
                                               std::memory_order_relaxed))
        return false;
    detail::futex_wake(&slot.word, 1);
    return true;
}

// Notifies up to n live waiters, oldest ticket first. Caller holds the lock.
void notify_oldest(ConditionView& view, std::uint32_t n) noexcept {
    const std::uint32_t used = view.used();
    std::uint32_t candidates = 0;
    for (std::uint32_t index = 0; index < used; ++index)
        // relaxed: see reclaim_dead_waiters().
        if (waiting_unnotified(word_of(view.slots[index]).load(std::memory_order_relaxed))) ++candidates;
    if (candidates == 0) return;
    if (n >= candidates) {
        for (std::uint32_t index = 0; index < used; ++index) {
            // relaxed: see reclaim_dead_waiters().
            const std::uint32_t seen = word_of(view.slots[index]).load(std::memory_order_relaxed);
            if (waiting_unnotified(seen)) notify_slot(view.slots[index], seen);
        }
        return;
    }
    // Fewer than all: select the oldest one at a time (n is small whenever this path is cheap to matter).
    for (std::uint32_t notified = 0; notified < n;) {
        std::uint32_t oldest = used;
        std::uint32_t oldest_word = 0;
        for (std::uint32_t index = 0; index < used; ++index) {
            // relaxed: see reclaim_dead_waiters().
            const std::uint32_t seen = word_of(view.slots[index]).load(std::memory_order_relaxed);
            if (!waiting_unnotified(seen)) continue;
            if (oldest == used || view.slots[index].ticket < view.slots[oldest].ticket) {
                oldest = index;
                oldest_word = seen;
            }
        }
        if (oldest == used) return;
        if (notify_slot(view.slots[oldest], oldest_word)) ++notified;
    }
}

ConditionWaiterSlot& claim_slot(ConditionView& view, ThisThreadRobustList& self, std::string_view label) {
    for (std::uint32_t index = 0; index < view.capacity; ++index) {
        ConditionWaiterSlot& slot = view.slots[index];
        // relaxed: free slots are changed only by lock holders, and the caller holds the lock.
        if (word_of(slot).load(std::memory_order_relaxed) != 0) continue;
        self.set_pending(node_of(slot));
        // relaxed: the lock's release (inside wait) publishes the claim to notifiers.
        word_of(slot).store(self.tid(), std::memory_order_relaxed);
        self.link(node_of(slot));
        self.clear_pending();
        slot.ticket = view.control.next_ticket++;
        if (index >= view.control.high_water) view.control.high_water = index + 1;
        return slot;
    }
    throw StateError(describe(label, "wait",
                              "all " + std::to_string(view.capacity) + " waiter slots are taken (max_waiters)"));
}

// Frees this thread's slot; returns whether it had been notified. Caller holds the lock (or nobody can).
bool free_slot(ConditionWaiterSlot& slot, ThisThreadRobustList& self) noexcept {
    self.set_pending(node_of(slot));
    self.unlink(node_of(slot));
    // relaxed: notifiers wrote the mark under the lock the caller now holds.
    const std::uint32_t last = word_of(slot).exchange(0, std::memory_order_relaxed);
    self.clear_pending();
    return (last & kNotified) != 0;
}

void sleep_until_notified(ConditionWaiterSlot& slot, std::uint32_t tid, bool bounded, const Deadline& deadline) {
    for (;;) {
        // relaxed: only "has the word changed?"; what the notify means is read again under the lock.
        if (word_of(slot).load(std::memory_order_relaxed) != tid) return;
        timespec remaining{};
        if (bounded) {
            if (deadline.passed()) return;
            remaining = deadline.remaining_timespec();
        }
        // Any outcome means "look at the word again"; the deadline check above ends the loop.
        detail::futex_wait(&slot.word, tid, bounded ? &remaining : nullptr);
    }
}

void require_held(const LockAccess& lock, std::string_view label, const char* operation) {
    if (!lock.held())
        throw StateError(describe(label, operation,
                                  "the condition's lock is not held by this thread (Python: cannot " +
                                      std::string(operation) + " on un-acquired lock)"));
}

bool condition_wait(ConditionView view, LockAccess lock, std::optional<std::chrono::nanoseconds> timeout,
                    std::string_view label) {
    require_held(lock, label, "wait");
    if (lock.inconsistent())
        throw StateError(describe(label, "wait",
                                  "the lock is inconsistent after an owner death: call make_consistent() before "
                                  "waiting (releasing it now would make it unrecoverable)"));
    ThisThreadRobustList& self = detail::this_thread_robust_list();
    const bool bounded = timeout.has_value();
    const Deadline deadline = Deadline::after(bounded ? *timeout : std::chrono::nanoseconds(0));
    // Before claiming our own slot: a re-delivered notify belongs to a waiter that was already waiting.
    if (const std::uint32_t undelivered = reclaim_dead_waiters(view); undelivered != 0)
        notify_oldest(view, undelivered);
    ConditionWaiterSlot& slot = claim_slot(view, self, label);
    const std::uint32_t depth = lock.release_fully();
    sleep_until_notified(slot, self.tid(), bounded, deadline);
    AcquireStatus status;
    try {
        status = lock.reacquire(depth);
    } catch (...) {
        // NotRecoverable: nobody can ever hold the lock again, so nobody else touches the slot.
        free_slot(slot, self);
        throw;
    }
    const bool notified = free_slot(slot, self);
    if (status == AcquireStatus::owner_died)
        throw OwnerDied(describe(label, "wait",
                                 "the lock's previous owner died holding it; this thread holds it again (at its "
                                 "depth before wait) and must repair the data, call make_consistent(), then "
                                 "release it"));
    return notified;
}

void condition_notify(ConditionView view, LockAccess lock, std::uint32_t n, std::string_view label,
                      const char* operation) {
    require_held(lock, label, operation);
    const std::uint32_t undelivered = reclaim_dead_waiters(view);
    const std::uint64_t wanted = std::uint64_t(n) + undelivered;
    if (wanted == 0) return;
    notify_oldest(view, wanted > std::numeric_limits<std::uint32_t>::max() ? std::numeric_limits<std::uint32_t>::max()
                                                                           : static_cast<std::uint32_t>(wanted));
}

constexpr std::uint32_t kNotifyAll = std::numeric_limits<std::uint32_t>::max();

void* check_alignment(void* memory, std::string_view label, const char* operation) {
    if (memory == nullptr) throw ValueError(describe(label, operation, "null memory"));
    if (reinterpret_cast<std::uintptr_t>(memory) % RawCondition::kAlignment != 0)
        throw ValueError(describe(label, operation,
                                  "memory must be " + std::to_string(RawCondition::kAlignment) + "-byte aligned"));
    return memory;
}

void check_capacity(std::uint32_t max_waiters, std::string_view label) {
    if (max_waiters == 0 || max_waiters > RawCondition::kMaxWaiterCapacity)
        throw ValueError(describe(label, "init",
                                  "max_waiters " + std::to_string(max_waiters) + " is outside 1.." +
                                      std::to_string(RawCondition::kMaxWaiterCapacity)));
}

}  // namespace

namespace detail {
std::int64_t condition_clock_now_ns() noexcept { return Deadline::monotonic_now_ns(); }
}  // namespace detail

// RawCondition ----------------------------------------------------------------------------------------------

std::size_t RawCondition::size_for(std::uint32_t max_waiters) {
    check_capacity(max_waiters, kRawConditionLabel);
    return sizeof(ConditionControl) + std::size_t(max_waiters) * sizeof(ConditionWaiterSlot);
}

RawCondition RawCondition::init(void* memory, std::size_t size, std::uint32_t max_waiters) {
    check_alignment(memory, kRawConditionLabel, "init");
    const std::size_t needed = size_for(max_waiters);
    if (size < needed)
        throw ValueError(describe(kRawConditionLabel, "init",
                                  std::to_string(size) + " bytes, " + std::to_string(max_waiters) +
                                      " waiters need " + std::to_string(needed)));
    std::memset(memory, 0, needed);
    ConditionControl control{};
    control.magic = detail::kRawConditionMagic;
    control.layout_version = detail::kConditionLayoutVersion;
    control.capacity = max_waiters;
    std::memcpy(memory, &control, sizeof control);
    return RawCondition(std::launder(static_cast<ConditionControl*>(memory)), max_waiters);
}

RawCondition RawCondition::attach(void* memory, std::size_t size, std::string_view label) {
    check_alignment(memory, label, "attach");
    if (size < sizeof(ConditionControl))
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, expected at least " +
                            std::to_string(sizeof(ConditionControl)));
    const auto& control = *std::launder(static_cast<const ConditionControl*>(memory));
    // Each field is read once, into the handle: another process may be writing the bytes.
    const std::uint32_t magic = control.magic;
    if (magic != detail::kRawConditionMagic)
        throw InvalidObject(std::string(label) + ": magic " + std::to_string(magic) + ", expected " +
                            std::to_string(detail::kRawConditionMagic));
    const std::uint32_t version = control.layout_version;
    if (version != detail::kConditionLayoutVersion)
        throw InvalidObject(std::string(label) + ": layout version " + std::to_string(version) + ", expected " +
                            std::to_string(detail::kConditionLayoutVersion));
    const std::uint32_t capacity = control.capacity;
    if (capacity == 0 || capacity > kMaxWaiterCapacity)
        throw InvalidObject(std::string(label) + ": capacity " + std::to_string(capacity) + ", expected 1.." +
                            std::to_string(kMaxWaiterCapacity));
    const std::size_t needed = sizeof(ConditionControl) + std::size_t(capacity) * sizeof(ConditionWaiterSlot);
    if (size < needed)
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, its " +
                            std::to_string(capacity) + " waiter slots need " + std::to_string(needed));
    return RawCondition(std::launder(static_cast<ConditionControl*>(memory)), capacity);
}

bool RawCondition::wait(RawLock& lock, std::optional<std::chrono::nanoseconds> timeout) const {
    return condition_wait(view_of(*control_, capacity_), LockAccess(lock), timeout, kRawConditionLabel);
}
bool RawCondition::wait(RawRLock& lock, std::optional<std::chrono::nanoseconds> timeout) const {
    return condition_wait(view_of(*control_, capacity_), LockAccess(lock), timeout, kRawConditionLabel);
}
void RawCondition::notify(RawLock& lock, std::uint32_t n) const {
    condition_notify(view_of(*control_, capacity_), LockAccess(lock), n, kRawConditionLabel, "notify");
}
void RawCondition::notify(RawRLock& lock, std::uint32_t n) const {
    condition_notify(view_of(*control_, capacity_), LockAccess(lock), n, kRawConditionLabel, "notify");
}
void RawCondition::notify_all(RawLock& lock) const {
    condition_notify(view_of(*control_, capacity_), LockAccess(lock), kNotifyAll, kRawConditionLabel, "notify_all");
}
void RawCondition::notify_all(RawRLock& lock) const {
    condition_notify(view_of(*control_, capacity_), LockAccess(lock), kNotifyAll, kRawConditionLabel, "notify_all");
}

// Condition -------------------------------------------------------------------------------------------------
//
// Segment payloads: with its own lock, [RawLock or RawRLock: 64 bytes | RawCondition]; over an existing
// lock (anonymous only), [RawCondition]. A named condition always has its own lock.

namespace {

constexpr std::size_t kOwnLockBytes = sizeof(detail::RobustMutexLayout);

std::size_t own_lock_payload_size(std::uint32_t max_waiters) {
    return kOwnLockBytes + RawCondition::size_for(max_waiters);
}

SharedMemory::Initialiser own_lock_initialiser(ConditionLockKind kind, std::uint32_t max_waiters) {
    return [kind, max_waiters](std::span<std::byte> payload) {
        if (kind == ConditionLockKind::lock)
            RawLock::init(payload.data());
        else
            RawRLock::init(payload.data());
        RawCondition::init(payload.data() + kOwnLockBytes, payload.size() - kOwnLockBytes, max_waiters);
    };
}

void check_lock_kind(ConditionLockKind kind) {
    if (kind != ConditionLockKind::lock && kind != ConditionLockKind::rlock)
        throw ValueError("condition: unknown lock kind " + std::to_string(static_cast<std::uint32_t>(kind)));
}

std::string condition_label(const SharedMemory& segment) {
    if (segment.name().empty()) return "anonymous condition";
    return object_label(ObjectKind::condition, segment.name());
}

}  // namespace

Condition::Condition() : Condition(ConditionLockKind::rlock) {}

Condition::Condition(ConditionLockKind own_lock, std::uint32_t max_waiters)
    : Condition(with_own_lock([&] {
          check_lock_kind(own_lock);
          return SharedMemory::anonymous_object(ObjectKind::condition,
                                                current_layout_version(ObjectKind::condition),
                                                own_lock_payload_size(max_waiters),
                                                own_lock_initialiser(own_lock, max_waiters));
      }())) {}

namespace {
SharedMemory external_lock_segment(std::uint32_t max_waiters) {
    return SharedMemory::anonymous_object(ObjectKind::condition, current_layout_version(ObjectKind::condition),
                                          RawCondition::size_for(max_waiters),
                                          [max_waiters](std::span<std::byte> payload) {
                                              RawCondition::init(payload.data(), payload.size(), max_waiters);
                                          });
}
}  // namespace

Condition::Condition(Lock& lock, std::uint32_t max_waiters)
    : Condition(external_lock_segment(max_waiters), &lock.raw(), nullptr, false) {}

Condition::Condition(RLock& lock, std::uint32_t max_waiters)
    : Condition(external_lock_segment(max_waiters), nullptr, &lock.raw(), false) {}

Condition::Condition(SharedMemory segment, RawLock* lock, RawRLock* rlock, bool own_lock)
    : segment_(std::move(segment)), lock_(lock), rlock_(rlock) {
    label_ = condition_label(segment_);
    const std::span<std::byte> payload = segment_.bytes();
    const std::size_t offset = own_lock ? kOwnLockBytes : 0;
    if (payload.size() < offset)
        throw InvalidObject(label_ + ": " + std::to_string(payload.size()) + " payload bytes, too few for a lock");
    std::byte* condition_bytes = payload.data() + offset;
    if (reinterpret_cast<std::uintptr_t>(condition_bytes) % RawCondition::kAlignment != 0)
        throw InvalidObject(label_ + ": the condition is not " + std::to_string(RawCondition::kAlignment) +
                            "-byte aligned in its segment");
    raw_ = RawCondition::attach(condition_bytes, payload.size() - offset, label_);
}

Condition Condition::with_own_lock(SharedMemory segment) {
    const std::span<std::byte> payload = segment.bytes();
    const std::string label = condition_label(segment);
    if (payload.size() < kOwnLockBytes)
        throw InvalidObject(label + ": " + std::to_string(payload.size()) + " payload bytes, expected at least " +
                            std::to_string(kOwnLockBytes) + " for its lock");
    std::uint32_t magic = 0;
    std::memcpy(&magic, payload.data() + offsetof(detail::RobustMutexLayout, magic), sizeof magic);
    RawLock* lock = nullptr;
    RawRLock* rlock = nullptr;
    // The payload is aligned for the lock (SharedMemory aligns every payload), so validate() alone is what
    // attach() would do, with the condition's name in its messages.
    if (magic == detail::kRawLockMagic) {
        lock = std::launder(reinterpret_cast<RawLock*>(payload.data()));
        lock->validate(label + " (its lock)");
    } else if (magic == detail::kRawRLockMagic) {
        rlock = std::launder(reinterpret_cast<RawRLock*>(payload.data()));
        rlock->validate(label + " (its lock)");
    } else {
        throw InvalidObject(label + ": its lock has magic " + std::to_string(magic) + ", expected a Lock (" +
                            std::to_string(detail::kRawLockMagic) + ") or an RLock (" +
                            std::to_string(detail::kRawRLockMagic) + ")");
    }
    return Condition(std::move(segment), lock, rlock, true);
}

Condition Condition::create(std::string_view name, ConditionLockKind own_lock, std::uint32_t max_waiters,
                            mode_t mode) {
    check_lock_kind(own_lock);
    return with_own_lock(SharedMemory::create_object(name, ObjectKind::condition,
                                                     current_layout_version(ObjectKind::condition),
                                                     own_lock_payload_size(max_waiters), mode,
                                                     own_lock_initialiser(own_lock, max_waiters)));
}

Condition Condition::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return with_own_lock(SharedMemory::open_object(name, ObjectKind::condition,
                                                   current_layout_version(ObjectKind::condition), publish_timeout));
}

Condition Condition::from_fd(int fd) {
    return with_own_lock(
        SharedMemory::attach_object(fd, ObjectKind::condition, current_layout_version(ObjectKind::condition)));
}

Condition::Condition(Condition&& other) noexcept
    : segment_(std::move(other.segment_)),
      raw_(std::exchange(other.raw_, RawCondition())),
      lock_(std::exchange(other.lock_, nullptr)),
      rlock_(std::exchange(other.rlock_, nullptr)),
      label_(std::move(other.label_)) {}

Condition& Condition::operator=(Condition&& other) noexcept {
    if (this != &other) {
        segment_ = std::move(other.segment_);
        raw_ = std::exchange(other.raw_, RawCondition());
        lock_ = std::exchange(other.lock_, nullptr);
        rlock_ = std::exchange(other.rlock_, nullptr);
        label_ = std::move(other.label_);
    }
    return *this;
}

Condition::~Condition() = default;

const RawCondition& Condition::checked(const char* operation) const {
    if (raw_.control_ == nullptr) throw StateError(std::string("condition: ") + operation + ": moved-from handle");
    return raw_;
}

bool Condition::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    checked("acquire");
    return lock_ ? lock_->acquire(block, timeout) : rlock_->acquire(block, timeout);
}
void Condition::release() {
    checked("release");
    lock_ ? lock_->release() : rlock_->release();
}
void Condition::lock() {
    checked("lock");
    lock_ ? lock_->lock() : rlock_->lock();
}
bool Condition::try_lock() {
    checked("try_lock");
    return lock_ ? lock_->try_lock() : rlock_->try_lock();
}
void Condition::unlock() {
    checked("unlock");
    lock_ ? lock_->unlock() : rlock_->unlock();
}
AcquireStatus Condition::acquire_status(std::optional<std::chrono::nanoseconds> timeout) {
    checked("acquire_status");
    return lock_ ? lock_->acquire_status(timeout) : rlock_->acquire_status(timeout);
}
void Condition::make_consistent() {
    checked("make_consistent");
    lock_ ? lock_->make_consistent() : rlock_->make_consistent();
}
bool Condition::held_by_this_thread() const {
    checked("held_by_this_thread");
    return lock_ ? lock_->held_by_this_thread() : rlock_->held_by_this_thread();
}
ConditionLockKind Condition::lock_kind() const {
    checked("lock_kind");
    return lock_ ? ConditionLockKind::lock : ConditionLockKind::rlock;
}

bool Condition::wait(std::optional<std::chrono::nanoseconds> timeout) {
    const RawCondition& raw = checked("wait");
    return condition_wait(view_of(*raw.control_, raw.capacity_), lock_ ? LockAccess(*lock_) : LockAccess(*rlock_),
                          timeout, label_);
}
void Condition::notify(std::uint32_t n) {
    const RawCondition& raw = checked("notify");
    condition_notify(view_of(*raw.control_, raw.capacity_), lock_ ? LockAccess(*lock_) : LockAccess(*rlock_), n,
                     label_, "notify");
}
void Condition::notify_all() {
    const RawCondition& raw = checked("notify_all");
    condition_notify(view_of(*raw.control_, raw.capacity_), lock_ ? LockAccess(*lock_) : LockAccess(*rlock_),
                     kNotifyAll, label_, "notify_all");
}

void Condition::unlink() {
    checked("unlink");
    segment_.unlink();
}
const RawCondition& Condition::raw() const { return checked("raw"); }

}  // namespace mproc
