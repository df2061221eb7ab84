// Semaphore and BoundedSemaphore: one futex word, count | WAITERS.
//
// The word: the count in bits 0..30, kSemaphoreWaiters (bit 31) while a thread may sleep on it.
//   acquire:  load; while the count is above zero, CAS count -> count - 1 (acquire), keeping WAITERS.
//             At zero: spin re-reading, then CAS WAITERS in and FUTEX_WAIT on exactly kSemaphoreWaiters
//             (count 0, WAITERS), then look again. A sleeper never sleeps on a value with a count.
//   release:  CAS count -> count + n (release), keeping WAITERS; refused (ValueError, no write) above the
//             bound. If the value it replaced had WAITERS: wake_sleepers() — FUTEX_WAKE every sleeper, then
//             CAS the exact value this release wrote -> the same without WAITERS.
//
// Invariant: a thread asleep on the word went to sleep on kSemaphoreWaiters and, until a release that
// read WAITERS in its CAS has woken it, WAITERS stays set. The only write that clears WAITERS is the CAS
// in wake_sleepers(), which comes after that release's FUTEX_WAKE of all and succeeds only while the word
// still holds the value that release wrote (a count above zero, so nobody is asleep on it). A thread that
// went to sleep after that FUTEX_WAKE slept on count 0, so the word left that value; it can hold it again
// only through another release, whose CAS read WAITERS and which therefore wakes that thread itself.
//
// Why WAITERS is a hint that errs only toward an extra FUTEX_WAKE: it is set by a sleeper before it
// sleeps and never cleared on a sleeper's behalf except after a wake of all. A sleeper that dies leaves
// it set: the next release pays one FUTEX_WAKE that finds nobody, and clears it. No count of waiters is
// kept, so no death can leave a counter that says "nobody waits" while someone does.
//
// Why every sleeper is woken, not n: a wake-up handed to one sleeper is lost if that sleeper is killed
// before it takes the permit (the kernel may even count a sleeper that is dying as woken). Waking all
// means no live sleeper depends on another passing a wake-up on: each re-reads the word, the winners take
// permits, the others sleep again.
#include "mproc/semaphore.hpp"

#include <algorithm>
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
using detail::SemaphoreLayout;

constexpr std::uint32_t kWaiters = detail::kSemaphoreWaiters;
constexpr std::uint32_t kCountMask = ~kWaiters;
static_assert(RawSemaphore::kMaxValue == kCountMask, "the count is every bit but WAITERS");
// Re-reads of an empty count before sleeping: about a microsecond with PAUSE (~50 ns on
// the reference AMD guest). A spin only pays when the signal comes sooner than a wake-up would; longer spins
// add themselves to every wake that does sleep (100 re-reads measured 1.58x the futex ping-pong ceiling in
// bench_semaphore's wake round trip, 20 re-reads 1.24x, none 1.20x, in one run).
constexpr int kSpinLimit = 20;

constexpr std::string_view kRawSemaphoreLabel = "raw semaphore";
constexpr std::string_view kRawBoundedSemaphoreLabel = "raw bounded semaphore";

std::atomic_ref<std::uint32_t> word_of(SemaphoreLayout& semaphore) noexcept {
    return std::atomic_ref(semaphore.word);
}
std::atomic_ref<std::uint32_t> word_of(const SemaphoreLayout& semaphore) noexcept {
    return std::atomic_ref(const_cast<std::uint32_t&>(semaphore.word));
}

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

std::string describe(std::string_view label, const char* operation, const std::string& cause) {
    return std::string(label) + ": " + operation + ": " + cause;
}

const char* kind_phrase(std::uint32_t magic) {
    return magic == detail::kRawBoundedSemaphoreMagic ? "a BoundedSemaphore" : "a Semaphore";
}

// The slow path: `seen` is the word the fast path found with a count of zero, or lost its CAS on.
// timeout nullopt: no bound; zero or less: no spin, no sleep, only CAS retries while a count is there.
bool acquire_contended(SemaphoreLayout& semaphore, std::uint32_t seen,
                       std::optional<std::chrono::nanoseconds> timeout) {
    auto word = word_of(semaphore);
    const bool may_block = !timeout || timeout->count() > 0;
    // Started here, not in the fast path: an acquire that finds a permit reads no clock.
    const bool bounded = timeout.has_value();
    const Deadline deadline = Deadline::after(bounded ? *timeout : std::chrono::nanoseconds(0));
    int spins = 0;
    for (;;) {
        if ((seen & kCountMask) != 0) {
            // acquire: pairs with the release CAS in release_permits(), so what the releaser wrote before
            // releasing is visible to the thread that takes its permit. WAITERS is kept: others may sleep.
            if (word.compare_exchange_weak(seen, seen - 1, std::memory_order_acquire, std::memory_order_relaxed))
                return true;
            continue;  // seen now holds the current word
        }
        if (!may_block) return false;
        if (spins < kSpinLimit) {
            ++spins;
            cpu_relax();
            // relaxed: only a hint; the CAS above re-checks and orders.
            seen = word.load(std::memory_order_relaxed);
            continue;
        }
        if ((seen & kWaiters) == 0) {
            // relaxed: announcing a sleeper publishes no data; release_permits() reads the bit with its
            // CAS, a read-modify-write that sees this write or a later value of the word.
            if (!word.compare_exchange_weak(seen, seen | kWaiters, std::memory_order_relaxed,
                                            std::memory_order_relaxed))
                continue;
            seen |= kWaiters;
        }
        timespec remaining{};
        if (bounded) {
            if (deadline.passed()) return false;
            remaining = deadline.remaining_timespec();
        }
        // The kernel compares the word with kSemaphoreWaiters under its bucket lock before sleeping: a
        // release that added a permit in between makes this return at once (no lost wake-up). Every
        // outcome — woken, value changed, timed out, EINTR — means look at the word again; the deadline
        // check above ends the loop with the time that remains.
        detail::futex_wait(&semaphore.word, seen, bounded ? &remaining : nullptr);
        // relaxed: a hint, as above.
        seen = word.load(std::memory_order_relaxed);
    }
}

bool acquire_permit(SemaphoreLayout& semaphore, std::optional<std::chrono::nanoseconds> timeout) {
    auto word = word_of(semaphore);
    // relaxed: a guess at the count; the CAS checks it and carries the ordering.
    std::uint32_t seen = word.load(std::memory_order_relaxed);
    // acquire: pairs with the release CAS in release_permits() (see acquire_contended()).
    if ((seen & kCountMask) != 0 &&
        word.compare_exchange_strong(seen, seen - 1, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    return acquire_contended(semaphore, seen, timeout);
}

// After a release whose CAS read WAITERS and wrote `written`: wake every sleeper, then drop the hint if the
// word is still exactly what that release wrote (see the invariant at the top of this file).
void wake_sleepers(SemaphoreLayout& semaphore, std::uint32_t written) noexcept {
    detail::futex_wake(&semaphore.word, detail::kFutexWakeAll);
    std::uint32_t expected = written;
    // relaxed: a read-modify-write continues the release sequence of the CAS that wrote `written`; the bit
    // carries no data.
    word_of(semaphore).compare_exchange_strong(expected, written & kCountMask, std::memory_order_relaxed,
                                               std::memory_order_relaxed);
}

void release_permits(SemaphoreLayout& semaphore, std::ptrdiff_t n, std::string_view label) {
    if (n < 1) throw ValueError(describe(label, "release", "n must be one or more, got " + std::to_string(n)));
    // Written once by init() before the semaphore was shared; clamped so that a scribbled bound can never
    // let the count spill into the WAITERS bit.
    const std::uint32_t bound = std::min(semaphore.bound, RawSemaphore::kMaxValue);
    const bool bounded_kind = semaphore.magic == detail::kRawBoundedSemaphoreMagic;
    auto word = word_of(semaphore);
    // relaxed: a guess; the CAS checks it.
    std::uint32_t seen = word.load(std::memory_order_relaxed);
    std::uint32_t written = 0;
    for (;;) {
        const std::uint32_t count = seen & kCountMask;
        if (static_cast<std::uint64_t>(count) + static_cast<std::uint64_t>(n) > bound) {
            if (bounded_kind)
                throw ValueError(describe(label, "release",
                                          "released too many times: the count is " + std::to_string(count) +
                                              ", releasing " + std::to_string(n) + " would exceed the initial value " +
                                              std::to_string(bound)));
            throw ValueError(describe(label, "release",
                                      "the count is " + std::to_string(count) + ", releasing " + std::to_string(n) +
                                          " would exceed the maximum " + std::to_string(bound)));
        }
        written = seen + static_cast<std::uint32_t>(n);  // keeps WAITERS; cannot carry into it (checked above)
        // release: pairs with the acquire CAS of whoever takes these permits, publishing what this thread
        // wrote before releasing.
        if (word.compare_exchange_weak(seen, written, std::memory_order_release, std::memory_order_relaxed)) break;
    }
    if ((seen & kWaiters) != 0) wake_sleepers(semaphore, written);
}

std::uint32_t read_value(const SemaphoreLayout& semaphore) noexcept {
    // relaxed: a snapshot, as Python's get_value().
    return word_of(semaphore).load(std::memory_order_relaxed) & kCountMask;
}

void check_python_arguments(bool block, std::optional<std::chrono::nanoseconds> timeout, std::string_view label) {
    if (!block && timeout)
        throw ValueError(describe(label, "acquire", "a timeout cannot be given for a non-blocking call"));
}

std::optional<std::chrono::nanoseconds> python_timeout(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    if (!block) return std::chrono::nanoseconds(0);
    return timeout;
}

void* check_alignment(void* memory, std::string_view label, const char* operation) {
    if (memory == nullptr) throw ValueError(describe(label, operation, "null memory"));
    if (reinterpret_cast<std::uintptr_t>(memory) % alignof(SemaphoreLayout) != 0)
        throw ValueError(describe(label, operation,
                                  "memory must be " + std::to_string(alignof(SemaphoreLayout)) + "-byte aligned"));
    return memory;
}

std::uint32_t check_initial_value(std::int64_t value, std::string_view label) {
    if (value < 0 || value > RawSemaphore::kMaxValue)
        throw ValueError(describe(label, "init",
                                  "initial value " + std::to_string(value) + " is outside 0.." +
                                      std::to_string(RawSemaphore::kMaxValue)));
    return static_cast<std::uint32_t>(value);
}

void place(void* memory, std::uint32_t magic, std::uint32_t value, std::uint32_t bound) {
    SemaphoreLayout layout{};
    layout.word = value;
    layout.magic = magic;
    layout.layout_version = detail::kSemaphoreLayoutVersion;
    layout.bound = bound;
    std::memcpy(memory, &layout, sizeof layout);
}

// Reads each checked field once and nothing outside the 64 bytes.
void validate_layout(const SemaphoreLayout& semaphore, std::uint32_t expected_magic, std::string_view label) {
    const std::uint32_t magic = semaphore.magic;
    if (magic != expected_magic) {
        const bool other_kind = magic == detail::kRawSemaphoreMagic || magic == detail::kRawBoundedSemaphoreMagic;
        throw InvalidObject(std::string(label) + ": " +
                            (other_kind ? std::string(kind_phrase(magic)) + ", not " + kind_phrase(expected_magic)
                                        : "magic " + std::to_string(magic) + ", expected " +
                                              std::to_string(expected_magic)));
    }
    const std::uint32_t version = semaphore.layout_version;
    if (version != detail::kSemaphoreLayoutVersion)
        throw InvalidObject(std::string(label) + ": layout version " + std::to_string(version) + ", expected " +
                            std::to_string(detail::kSemaphoreLayoutVersion));
    const std::uint32_t bound = semaphore.bound;
    if (expected_magic == detail::kRawSemaphoreMagic ? bound != RawSemaphore::kMaxValue
                                                     : bound > RawSemaphore::kMaxValue)
        throw InvalidObject(std::string(label) + ": bound " + std::to_string(bound) + ", expected " +
                            (expected_magic == detail::kRawSemaphoreMagic
                                 ? std::to_string(RawSemaphore::kMaxValue)
                                 : "at most " + std::to_string(RawSemaphore::kMaxValue)));
    const std::uint32_t count = read_value(semaphore);
    if (count > bound)
        throw InvalidObject(std::string(label) + ": count " + std::to_string(count) + " exceeds its bound " +
                            std::to_string(bound));
}

SemaphoreLayout* attach_layout(void* memory, std::size_t size, std::uint32_t magic, std::string_view label) {
    check_alignment(memory, label, "attach");
    if (size < sizeof(SemaphoreLayout))
        throw InvalidObject(std::string(label) + ": " + std::to_string(size) + " bytes, expected at least " +
                            std::to_string(sizeof(SemaphoreLayout)));
    auto* layout = std::launder(static_cast<SemaphoreLayout*>(memory));
    validate_layout(*layout, magic, label);
    return layout;
}

// "anonymous semaphore", "bounded semaphore 'jobs'": the handle's name (kSemaphoreHandleName, ...) and the
// segment's name.
template <const char* kHandleName>
std::string handle_label(const SharedMemory& segment) {
    if (segment.name().empty()) return std::string("anonymous ") + kHandleName;
    return std::string(kHandleName) + " '" + segment.name() + "'";
}

template <std::uint32_t kMagic>
void validate_semaphore_payload(std::span<std::byte> payload, std::string_view label) {
    attach_layout(payload.data(), payload.size(), kMagic, label);
}

}  // namespace

// RawSemaphore ----------------------------------------------------------------------------------------------

RawSemaphore& RawSemaphore::init(void* memory, std::int64_t value) {
    const std::uint32_t count = check_initial_value(value, kRawSemaphoreLabel);
    place(check_alignment(memory, kRawSemaphoreLabel, "init"), detail::kRawSemaphoreMagic, count, kMaxValue);
    return *std::launder(static_cast<RawSemaphore*>(memory));
}

RawSemaphore& RawSemaphore::attach(void* memory, std::size_t size) {
    attach_layout(memory, size, detail::kRawSemaphoreMagic, kRawSemaphoreLabel);
    return *std::launder(static_cast<RawSemaphore*>(memory));
}

void RawSemaphore::validate(std::string_view label) const {
    validate_layout(layout_, detail::kRawSemaphoreMagic, label);
}

bool RawSemaphore::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check_python_arguments(block, timeout, kRawSemaphoreLabel);
    return acquire_permit(layout_, python_timeout(block, timeout));
}
bool RawSemaphore::try_acquire() { return acquire_permit(layout_, std::chrono::nanoseconds(0)); }
bool RawSemaphore::acquire_within(std::chrono::nanoseconds timeout) { return acquire_permit(layout_, timeout); }
void RawSemaphore::release(std::ptrdiff_t n) { release_permits(layout_, n, kRawSemaphoreLabel); }
std::uint32_t RawSemaphore::get_value() const noexcept { return read_value(layout_); }

// RawBoundedSemaphore ---------------------------------------------------------------------------------------

RawBoundedSemaphore& RawBoundedSemaphore::init(void* memory, std::int64_t value) {
    const std::uint32_t count = check_initial_value(value, kRawBoundedSemaphoreLabel);
    place(check_alignment(memory, kRawBoundedSemaphoreLabel, "init"), detail::kRawBoundedSemaphoreMagic, count,
          count);
    return *std::launder(static_cast<RawBoundedSemaphore*>(memory));
}

RawBoundedSemaphore& RawBoundedSemaphore::attach(void* memory, std::size_t size) {
    attach_layout(memory, size, detail::kRawBoundedSemaphoreMagic, kRawBoundedSemaphoreLabel);
    return *std::launder(static_cast<RawBoundedSemaphore*>(memory));
}

void RawBoundedSemaphore::validate(std::string_view label) const {
    validate_layout(layout_, detail::kRawBoundedSemaphoreMagic, label);
}

bool RawBoundedSemaphore::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    check_python_arguments(block, timeout, kRawBoundedSemaphoreLabel);
    return acquire_permit(layout_, python_timeout(block, timeout));
}
bool RawBoundedSemaphore::try_acquire() { return acquire_permit(layout_, std::chrono::nanoseconds(0)); }
bool RawBoundedSemaphore::acquire_within(std::chrono::nanoseconds timeout) {
    return acquire_permit(layout_, timeout);
}
void RawBoundedSemaphore::release(std::ptrdiff_t n) { release_permits(layout_, n, kRawBoundedSemaphoreLabel); }
std::uint32_t RawBoundedSemaphore::get_value() const noexcept { return read_value(layout_); }
std::uint32_t RawBoundedSemaphore::bound() const noexcept { return std::min(layout_.bound, kMaxValue); }

// Semaphore -------------------------------------------------------------------------------------------------

Semaphore::Semaphore(std::int64_t value)
    : Semaphore(Handle::new_anonymous_segment(
          [value](std::span<std::byte> payload) { RawSemaphore::init(payload.data(), value); })) {}

Semaphore::Semaphore(SharedMemory segment)
    : handle_(std::move(segment), handle_label<detail::kSemaphoreHandleName>,
              validate_semaphore_payload<detail::kRawSemaphoreMagic>) {}

Semaphore Semaphore::create(std::string_view name, std::int64_t value, mode_t mode) {
    // Checked before the name is created, so that a bad value leaves no name behind.
    check_initial_value(value, "semaphore '" + std::string(name) + "'");
    return Semaphore(Handle::new_named_segment(
        name, mode, [value](std::span<std::byte> payload) { RawSemaphore::init(payload.data(), value); }));
}

Semaphore Semaphore::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return Semaphore(Handle::existing_segment(name, publish_timeout));
}

Semaphore Semaphore::from_fd(int fd) { return Semaphore(Handle::attached_segment(fd)); }

Semaphore::Semaphore(Semaphore&& other) noexcept = default;
Semaphore& Semaphore::operator=(Semaphore&& other) noexcept = default;
Semaphore::~Semaphore() = default;

bool Semaphore::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    RawSemaphore& raw = handle_.checked("acquire");
    check_python_arguments(block, timeout, handle_.label());
    return acquire_permit(raw.layout_, python_timeout(block, timeout));
}
bool Semaphore::try_acquire() {
    return acquire_permit(handle_.checked("try_acquire").layout_, std::chrono::nanoseconds(0));
}
bool Semaphore::acquire_within(std::chrono::nanoseconds timeout) {
    return acquire_permit(handle_.checked("try_acquire_for").layout_, timeout);
}
void Semaphore::release(std::ptrdiff_t n) {
    release_permits(handle_.checked("release").layout_, n, handle_.label());
}
std::uint32_t Semaphore::get_value() const { return read_value(handle_.checked("get_value").layout_); }
void Semaphore::unlink() { handle_.unlink(); }
RawSemaphore& Semaphore::raw() const { return handle_.checked("raw"); }

// BoundedSemaphore ------------------------------------------------------------------------------------------

BoundedSemaphore::BoundedSemaphore(std::int64_t value)
    : BoundedSemaphore(Handle::new_anonymous_segment(
          [value](std::span<std::byte> payload) { RawBoundedSemaphore::init(payload.data(), value); })) {}

BoundedSemaphore::BoundedSemaphore(SharedMemory segment)
    : handle_(std::move(segment), handle_label<detail::kBoundedSemaphoreHandleName>,
              validate_semaphore_payload<detail::kRawBoundedSemaphoreMagic>) {}

BoundedSemaphore BoundedSemaphore::create(std::string_view name, std::int64_t value, mode_t mode) {
    check_initial_value(value, "bounded semaphore '" + std::string(name) + "'");
    return BoundedSemaphore(Handle::new_named_segment(
        name, mode, [value](std::span<std::byte> payload) { RawBoundedSemaphore::init(payload.data(), value); }));
}

BoundedSemaphore BoundedSemaphore::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    return BoundedSemaphore(Handle::existing_segment(name, publish_timeout));
}

BoundedSemaphore BoundedSemaphore::from_fd(int fd) { return BoundedSemaphore(Handle::attached_segment(fd)); }

BoundedSemaphore::BoundedSemaphore(BoundedSemaphore&& other) noexcept = default;
BoundedSemaphore& BoundedSemaphore::operator=(BoundedSemaphore&& other) noexcept = default;
BoundedSemaphore::~BoundedSemaphore() = default;

bool BoundedSemaphore::acquire(bool block, std::optional<std::chrono::nanoseconds> timeout) {
    RawBoundedSemaphore& raw = handle_.checked("acquire");
    check_python_arguments(block, timeout, handle_.label());
    return acquire_permit(raw.layout_, python_timeout(block, timeout));
}
bool BoundedSemaphore::try_acquire() {
    return acquire_permit(handle_.checked("try_acquire").layout_, std::chrono::nanoseconds(0));
}
bool BoundedSemaphore::acquire_within(std::chrono::nanoseconds timeout) {
    return acquire_permit(handle_.checked("try_acquire_for").layout_, timeout);
}
void BoundedSemaphore::release(std::ptrdiff_t n) {
    release_permits(handle_.checked("release").layout_, n, handle_.label());
}
std::uint32_t BoundedSemaphore::get_value() const { return read_value(handle_.checked("get_value").layout_); }
std::uint32_t BoundedSemaphore::bound() const { return handle_.checked("bound").bound(); }
void BoundedSemaphore::unlink() { handle_.unlink(); }
RawBoundedSemaphore& BoundedSemaphore::raw() const { return handle_.checked("raw"); }

}  // namespace mproc
