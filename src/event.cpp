// Event: one futex word, SET | WAITERS | generation.
//
//   set():   if the flag is off: CAS the word to SET with the generation advanced (release), keeping
//            WAITERS. If the word it replaced — or finds, when the flag was already on — has WAITERS:
//            wake_waiters() — FUTEX_WAKE every sleeper, then CAS the exact value seen or written -> the same
//            without WAITERS. A set() on a set flag without WAITERS writes nothing.
//   clear(): if the flag is on, fetch_and it off; WAITERS and the generation stay.
//   wait():  load (acquire); SET: true. Otherwise remember the generation; spin re-reading, then CAS
//            WAITERS in and FUTEX_WAIT on that exact value (flag off, WAITERS, generation g). Return true
//            as soon as the word shows SET or a generation other than g; false at the deadline.
//
// Invariant: a thread asleep on the word went to sleep on a value with the flag off and WAITERS set, and
// WAITERS stays set until a set() that read it has woken every sleeper. The only write that clears the bit
// is the CAS in wake_waiters(), after that set()'s FUTEX_WAKE of all, and it succeeds only while the word
// holds exactly a value with the flag on — which nobody sleeps on. A thread that went to sleep after the
// wake slept on a value with the flag off, so the word left the set value; it can be set again only by
// another set(), whose CAS reads WAITERS and which therefore wakes that thread itself.
//
// Why WAITERS errs only toward an extra FUTEX_WAKE: sleepers set it; nothing clears it except after a wake
// of all. A sleeper that dies leaves it set, and the next set() pays one FUTEX_WAKE that finds nobody. No
// count of waiters is kept, so no death can make a counter say "nobody waits" while someone does.
//
// Why the generation: a set() followed at once by clear() must still end the waits it overlapped. A
// waiter woken by that set() may first run after the clear(); it sees the flag off but a new generation.
#include "mproc/event.hpp"

#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "deadline.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/object_header.hpp"

namespace mproc {
namespace {

using detail::Deadline;
using detail::EventLayout;

constexpr std::uint32_t kSet = detail::kEventSet;
constexpr std::uint32_t kWaiters = detail::kEventWaiters;
constexpr std::uint32_t kGenerationMask = ~(kSet | kWaiters);
// Re-reads of a clear flag before sleeping: about a microsecond with PAUSE (~50 ns on
// the reference AMD guest). A spin only pays when the signal comes sooner than a wake-up would; longer spins
// add themselves to every wake that does sleep (100 re-reads measured 1.58x the futex ping-pong ceiling in
// bench_semaphore's wake round trip, 20 re-reads 1.24x, none 1.20x, in one run).
constexpr int kSpinLimit = 20;

constexpr std::string_view kRawEventLabel = "raw event";

std::atomic_ref<std::uint32_t> word_of(EventLayout& event) noexcept { return std::atomic_ref(event.word); }
std::atomic_ref<std::uint32_t> word_of(const EventLayout& event) noexcept {
    return std::atomic_ref(const_cast<std::uint32_t&>(event.word));
}

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// After a set() that saw WAITERS in `seen_or_written`, the word's value when it last looked (its own
// write, or the already-set value it found): wake every sleeper, then drop the hint if the word still holds
// that value (see the invariant at the top of this file).
void wake_waiters(EventLayout& event, std::uint32_t seen_or_written) noexcept {
    detail::futex_wake(&event.word, detail::kFutexWakeAll);
    std::uint32_t expected = seen_or_written;
    // relaxed: the bit carries no data; as a read-modify-write this continues the release sequence of the
    // set() CAS, so a waiter's acquire load that reads the result still synchronises with that set().
    word_of(event).compare_exchange_strong(expected, seen_or_written & ~kWaiters, std::memory_order_relaxed,
                                           std::memory_order_relaxed);
}

void set_flag(EventLayout& event) noexcept {
    auto word = word_of(event);
    // relaxed: a guess; the CAS checks it.
    std::uint32_t seen = word.load(std::memory_order_relaxed);
    for (;;) {
        if ((seen & kSet) != 0) {
            // Already on. WAITERS here means a set() died between its CAS and its wake, or a sleeper died:
            // wake now so that no sleeper waits for a set() that already happened.
            if ((seen & kWaiters) != 0) wake_waiters(event, seen);
            return;
        }
        const std::uint32_t written = (seen | kSet) + detail::kEventGenerationStep;  // the generation wraps
        // release: pairs with the acquire loads in wait_flag(), so what the setter wrote before set() is
        // visible to every waiter that returns true because of it.
        if (word.compare_exchange_weak(seen, written, std::memory_order_release, std::memory_order_relaxed)) {
            if ((seen & kWaiters) != 0) wake_waiters(event, written);
            return;
        }
    }
}

void clear_flag(EventLayout& event) noexcept {
    auto word = word_of(event);
    // relaxed: clearing publishes nothing; a waiter that reads the cleared flag only goes to sleep.
    if ((word.load(std::memory_order_relaxed) & kSet) != 0) word.fetch_and(~kSet, std::memory_order_relaxed);
}

bool flag_is_set(const EventLayout& event) noexcept {
    // acquire: pairs with the release CAS in set_flag(), as a true wait() does.
    return (word_of(event).load(std::memory_order_acquire) & kSet) != 0;
}

// The slow path: `seen` is the word the fast path found with the flag off.
bool wait_contended(EventLayout& event, std::uint32_t seen, std::optional<std::chrono::nanoseconds> timeout) {
    auto word = word_of(event);
    const std::uint32_t generation = seen & kGenerationMask;
    const bool may_block = !timeout || timeout->count() > 0;
    const bool bounded = timeout.has_value();
    const Deadline deadline = Deadline::after(bounded ? *timeout : std::chrono::nanoseconds(0));
    int spins = 0;
    for (;;) {
        if ((seen & kSet) != 0 || (seen & kGenerationMask) != generation) return true;
        if (!may_block) return false;
        if (spins < kSpinLimit) {
            ++spins;
            cpu_relax();
            // acquire: a true return from this value must see the setter's writes (pairs with set_flag()).
            seen = word.load(std::memory_order_acquire);
            continue;
        }
        if ((seen & kWaiters) == 0) {
            // acquire on failure: the value found may end the wait (pairs with set_flag()). Announcing a
            // sleeper publishes nothing; success takes acquire only because no order may be weaker than
            // the failure order (set_flag() reads the bit with its CAS, which sees this write or a later one).
            if (!word.compare_exchange_weak(seen, seen | kWaiters, std::memory_order_acquire,
                                            std::memory_order_acquire))
                continue;
            seen |= kWaiters;
        }
        timespec remaining{};
        if (bounded) {
            if (deadline.passed()) return false;
            remaining = deadline.remaining_timespec();
        }
        // The kernel compares the word with `seen` (flag off, WAITERS, generation) under its bucket lock
        // before sleeping: a set() in between makes this return at once. Every outcome means look again;
        // the deadline check above ends the loop with the time that remains.
        detail::futex_wait(&event.word, seen, bounded ? &remaining : nullptr);
        // acquire: as in the spin above.
        seen = word.load(std::memory_order_acquire);
    }
}

bool wait_flag(EventLayout& event, std::optional<std::chrono::nanoseconds> timeout) {
    // acquire: pairs with the release CAS in set_flag(): the setter's writes are visible after a true wait.
    const std::uint32_t seen = word_of(event).load(std::memory_order_acquire);
    if ((seen & kSet) != 0) return true;
    return wait_contended(event, seen, timeout);
}

void* check_alignment(void* memory, std::string_view label, const char* operation) {
    if (memory == nullptr) throw ValueError(std::string(label) + ": " + operation + ": null memory");
    if (reinterpret_cast<std::uintptr_t>(memory) % alignof(EventLayout) != 0)
        throw ValueError(std::string(label) + ": " + operation + ": memory must be " +
                         std::to_string(alignof(EventLayout)) + "-byte aligned");
    return memory;
}

// Reads each checked field once and nothing outside the 64 bytes. Every word value is a valid state.
void validate_layout(const EventLayout& event, std::string_view label) {
    const std::uint32_t magic = event.magic;
    if (magic != detail::kRawEventMagic)
        throw InvalidObject(std::string(label) + ": magic " + std::to_string(magic) + ", expected " +
                            std::to_string(detail::kRawEventMagic));
    const std::uint32_t version = event.layout_version;
    if (version != detail::kEventLayoutVersion)
        throw InvalidObject(std::string(label) + ": layout version " + std::to_string(version) + ", expected " +
                            std::to_string(detail::kEventLayoutVersion));
}

EventLayout* attach_layout(void* memory, std::size_t size, std::string_view label) {
    check_alignment(memory, label, "attach");
    if (size < sizeof(EventLayout))
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, expected at least " +
                            std::to_string(sizeof(EventLayout)));
    auto* layout = std::launder(static_cast<EventLayout*>(memory));
    validate_layout(*layout, label);
    return layout;
}

void init_event_payload(std::span<std::byte> payload) { RawEvent::init(payload.data()); }

std::string handle_label(const SharedMemory& segment) {
    if (segment.name().empty()) return "anonymous event";
    return object_label(ObjectKind::event, segment.name());
}

void validate_event_payload(std::span<std::byte> payload, std::string_view label) {
    attach_layout(payload.data(), payload.size(), label);
}

}  // namespace

// RawEvent --------------------------------------------------------------------------------------------------

RawEvent& RawEvent::init(void* memory) {
    check_alignment(memory, kRawEventLabel, "init");
    EventLayout layout{};
    layout.magic = detail::kRawEventMagic;
    layout.layout_version = detail::kEventLayoutVersion;
    std::memcpy(memory, &layout, sizeof layout);
    return *std::launder(static_cast<RawEvent*>(memory));
}

RawEvent& RawEvent::attach(void* memory, std::size_t size) {
    attach_layout(memory, size, kRawEventLabel);
    return *std::launder(static_cast<RawEvent*>(memory));
}

void RawEvent::validate(std::string_view label) const { validate_layout(layout_, label); }
void RawEvent::set() noexcept { set_flag(layout_); }
void RawEvent::clear() noexcept { clear_flag(layout_); }
bool RawEvent::is_set() const noexcept { return flag_is_set(layout_); }
bool RawEvent::wait(std::optional<std::chrono::nanoseconds> timeout) { return wait_flag(layout_, timeout); }

// Event -----------------------------------------------------------------------------------------------------

Event::Event() : Event(Handle::new_anonymous_segment(init_event_payload)) {}

Event::Event(SharedMemory segment) : handle_(std::move(segment), handle_label, validate_event_payload) {}

Event Event::create(std::string_view name, mode_t mode) {
    return Event(Handle::new_named_segment(name, mode, init_event_payload));
}

Event Event::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return Event(Handle::existing_segment(name, publish_timeout));
}

Event Event::from_fd(int fd) { return Event(Handle::attached_segment(fd)); }

Event::Event(Event&& other) noexcept = default;
Event& Event::operator=(Event&& other) noexcept = default;
Event::~Event() = default;

void Event::set() { set_flag(handle_.checked("set").layout_); }
void Event::clear() { clear_flag(handle_.checked("clear").layout_); }
bool Event::is_set() const { return flag_is_set(handle_.checked("is_set").layout_); }
bool Event::wait(std::optional<std::chrono::nanoseconds> timeout) {
    return wait_flag(handle_.checked("wait").layout_, timeout);
}
void Event::unlink() { handle_.unlink(); }
RawEvent& Event::raw() const { return handle_.checked("raw"); }

}  // namespace mproc
