// fuzz/fuzz-queue-segment.cpp — arbitrary bytes as a queue segment written by a corrupted or hostile peer.
//
// The bytes are copied into a heap buffer of exactly their size (128-byte aligned), so AddressSanitizer
// reports any access past them. They are attached as a placed queue (QueueCore::attach, which picks the
// SPSC or MPMC ring from the magic) and read as a whole named object [ObjectHeader | payload] of kind
// queue (validate_object_header, then attach to the payload). Every attach either throws InvalidObject or
// returns a queue, on which a program of non-blocking operations runs (try_put, try_get, put/get with
// block=false or a zero timeout, put_many, get_many, qsize, close; reserve/commit and peek/release on an
// SPSC ring, put_in_place/get_in_place on an MPMC ring, and a rewrite of the ring's constants while all
// of that is attached, as a peer could do at any time). With a spill arena after the ring (the seeds
// spill-*), the program also puts and gets messages longer than a slot (QueueCore::put_message,
// get_message, non-blocking) and rewrites the arena's control block, block entries and a slot's descriptor
// while attached. The program is taken from bytes 64..127 of the input, inside the padding of the ring's
// constants line, which the ring never reads.
// Properties: each call returns a result within the ring's bounds (a length at most the slot size, counts at
// most what was asked, qsize() at most the capacity, reserved and peeked slots inside the buffer, a message
// got at most the larger of the slot and the spill budget the handle validated) or throws
// an mproc::Error; and each call returns at once. A claim word, a position or a sequence, whatever it
// holds, must not make a non-blocking call wait: a watchdog aborts with a message naming the
// operation when one input runs longer than kWatchdogSeconds. The watchdog is a CLOCK_MONOTONIC POSIX timer
// signalling SIGRTMIN, so that it leaves alone the ITIMER_REAL/SIGALRM that libFuzzer's -timeout uses.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include <time.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "mproc/mpmc_ring.hpp"
#include "mproc/object_header.hpp"
#include "mproc/queue.hpp"
#include "mproc/spsc_ring.hpp"

namespace {

using namespace std::chrono_literals;

constexpr unsigned kWatchdogSeconds = 3;
constexpr std::size_t kProgramOffset = 64;
constexpr std::size_t kProgramEnd = 128;

// The operation running now, for the watchdog's message (written before each call, read by the handler).
volatile std::sig_atomic_t current_operation = 0;

constexpr const char* kOperationNames[] = {
    "try_put",         "try_get",       "put(block=false)", "get(block=false)", "put(timeout=0)",
    "get(timeout=0)",  "put_many",      "get_many",         "qsize",            "close",
    "reserve/commit",  "peek/release",  "put_in_place",     "get_in_place",     "rewrite constants",
    "put_message",     "get_message",   "rewrite spill",
    "attach",
};
constexpr int kOperationCount = sizeof kOperationNames / sizeof kOperationNames[0];
// Operations a program can name (all but "attach", which is not one of its steps).
constexpr int kProgramOperations = kOperationCount - 1;

extern "C" void report_stuck_operation(int) {
    const char* name = kOperationNames[current_operation];
    static constexpr char kPrefix[] = "fuzz-queue-segment: a non-blocking ";
    static constexpr char kSuffix[] = " did not return: a hostile segment made it wait\n";
    (void)!::write(STDERR_FILENO, kPrefix, sizeof kPrefix - 1);
    (void)!::write(STDERR_FILENO, name, std::strlen(name));
    (void)!::write(STDERR_FILENO, kSuffix, sizeof kSuffix - 1);
    std::abort();
}

timer_t watchdog{};
bool watchdog_ready = false;

// Arms the watchdog for `seconds` from now (0: disarms it).
void arm_watchdog(unsigned seconds) {
    if (!watchdog_ready) return;  // LLVMFuzzerInitialize not run: a driver of its own
    itimerspec expiry{};
    expiry.it_value.tv_sec = seconds;
    timer_settime(watchdog, 0, &expiry, nullptr);
}

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property) {
    if (!property) std::abort();
}

bool inside(const std::byte* begin, std::size_t size, const std::byte* first, std::size_t length) {
    return first >= begin && length <= size && static_cast<std::size_t>(first - begin) <= size - length;
}

class Exercise {
public:
    Exercise(mproc::detail::QueueCore& queue, std::byte* memory, std::size_t size)
        : queue_(queue), memory_(memory), size_(size), slot_size_(queue.slot_size()), capacity_(queue.capacity()) {
        // Validation accepted the sizes: every slot fits the memory.
        require(slot_size_ >= 1 && capacity_ >= 2 && slot_size_ <= size && capacity_ <= size);
        buffer_.resize(slot_size_ * kMaxBatch);
        // Raw handles attached once, like the queue's, so that a later rewrite of the constants meets them.
        if (queue.kind() == mproc::QueueKind::spsc)
            spsc_.emplace(mproc::RawSpscRing::attach(memory, size));
        else
            mpmc_.emplace(mproc::RawMpmcRing::attach(memory, size));
    }

    void run(std::uint8_t operation, std::uint8_t argument) {
        current_operation = operation % kProgramOperations;
        try {
            step(operation % kProgramOperations, argument);
        } catch (const mproc::Error&) {
            // Full, Empty, Closed, InvalidObject, StateError: a clear error is an acceptable answer.
        }
        require(queue_.qsize() <= capacity_);
    }

private:
    static constexpr std::size_t kMaxBatch = 4;

    std::span<const std::byte> message(std::uint8_t argument) const {
        return {buffer_.data(), std::min<std::size_t>(argument, slot_size_)};
    }

    void step(int operation, std::uint8_t argument) {
        switch (operation) {
        case 0: (void)queue_.try_put(message(argument)); break;
        case 1:
            if (const auto length = queue_.try_get(buffer_)) require(*length <= slot_size_);
            break;
        case 2: queue_.put(message(argument), false, std::nullopt); break;
        case 3: require(queue_.get(buffer_, false, std::nullopt) <= slot_size_); break;
        case 4: queue_.put(message(argument), true, 0ns); break;
        case 5: require(queue_.get(buffer_, true, 0ns) <= slot_size_); break;
        case 6: {
            const std::size_t count = argument % (kMaxBatch + 1);
            require(queue_.put_many(buffer_.data(), count) <= count);
            break;
        }
        case 7: {
            const std::size_t count = argument % (kMaxBatch + 1);
            require(queue_.get_many(buffer_.data(), count) <= count);
            break;
        }
        case 8: (void)queue_.qsize(); break;
        case 9:
            if (argument % 8 == 0) queue_.close();
            break;
        case 10: if (queue_.kind() == mproc::QueueKind::spsc) reserve_commit(argument); break;
        case 11: if (queue_.kind() == mproc::QueueKind::spsc) peek_release(argument); break;
        case 12: if (queue_.kind() == mproc::QueueKind::mpmc) put_in_place(argument); break;
        case 13: if (queue_.kind() == mproc::QueueKind::mpmc) get_in_place(); break;
        case 14: rewrite_constants(argument); break;
        case 15: {
            // Longer than a slot for most arguments: through the spill arena when there is one.
            std::vector<std::byte> message(std::size_t{argument} * 131 + 1, std::byte{0x3c});
            queue_.put_message(message, false, std::nullopt);
            break;
        }
        case 16: {
            const std::vector<std::byte> got = queue_.get_message(false, std::nullopt);
            require(got.size() <= std::max<std::uint64_t>(queue_.max_inline(), queue_.spill_budget()));
            break;
        }
        case 17: rewrite_spill(argument); break;
        default: break;
        }
    }

    // Slots handed out in place must lie inside the segment, and be writable/readable there.
    void check_region(const mproc::RingRegion& region, std::size_t asked) {
        require(region.count <= asked);
        if (region.count == 0) return;
        require(region.stride >= slot_size_);
        for (std::size_t i = 0; i < region.count; ++i) require(inside(memory_, size_, region.slot(i), slot_size_));
    }

    // A peer rewriting the ring's constants while the handles are attached: they must go on using the
    // constants they validated (each property above is checked against those).
    void rewrite_constants(std::uint8_t argument) {
        mproc::detail::RingConstants constants;
        std::memcpy(&constants, memory_, sizeof constants);
        constants.capacity = std::uint64_t{1} << (argument % 64);
        constants.slot_stride = (argument * 4099u) << (argument % 16);
        constants.slot_size = constants.slot_stride + (argument & 1);
        constants.total_size = ~std::uint64_t{0} >> (argument % 8);
        std::memcpy(memory_, &constants, offsetof(mproc::detail::RingConstants, closed));
    }

    // A peer rewriting the spill arena while attached: a word of its control block or block entries, or
    // the descriptor fields of the slot of the next get.
    void rewrite_spill(std::uint8_t argument) {
        const std::size_t ring = mproc::detail::QueueCore::placed_size(queue_.kind(), capacity_, slot_size_);
        const std::size_t arena = (ring + 4095) / 4096 * 4096;
        const std::uint64_t value = (argument & 1) ? ~std::uint64_t{0} >> (argument % 61) : argument * 0x10001ull;
        if (arena + 8192 <= size_) {
            // Control (4096 bytes, padded) and the first 4096 bytes of entries.
            const std::size_t offset = arena + (std::size_t{argument} * 40) % 8192 / 8 * 8;
            std::memcpy(memory_ + offset, &value, sizeof value);
        }
        // The descriptor's fields of the slot at the consumer's position (for both kinds, the payload's
        // bytes 4..31 of some slot: each slot's first 32 bytes after the MPMC header).
        const std::size_t header = queue_.kind() == mproc::QueueKind::mpmc ? sizeof(mproc::detail::MpmcSlotHeader) : 0;
        const std::size_t stride_guess = (ring - sizeof(mproc::detail::RingControl)) / capacity_;
        const std::size_t slot = sizeof(mproc::detail::RingControl) + (argument % capacity_) * stride_guess + header +
                                 4 + (argument / 16 % 4) * 8;
        if (slot + sizeof value <= size_ && slot + sizeof value <= ring) std::memcpy(memory_ + slot, &value, sizeof value);
    }

    void reserve_commit(std::uint8_t argument) {
        mproc::RawSpscRing& ring = *spsc_;
        const std::size_t asked = argument % (kMaxBatch + 1);
        const mproc::RingRegion region = ring.reserve(asked);
        check_region(region, asked);
        for (std::size_t i = 0; i < region.count; ++i) std::memset(region.slot(i), 0x5a, slot_size_);
        ring.commit((argument & 0x80) ? region.count + 1 : region.count);
    }

    void peek_release(std::uint8_t argument) {
        mproc::RawSpscRing& ring = *spsc_;
        const std::size_t asked = argument % (kMaxBatch + 1);
        const mproc::RingRegion region = ring.peek(asked);
        check_region(region, asked);
        for (std::size_t i = 0; i < region.count; ++i) std::memcpy(buffer_.data(), region.slot(i), slot_size_);
        ring.release((argument & 0x80) ? region.count + 1 : region.count);
    }

    void put_in_place(std::uint8_t argument) {
        mproc::RawMpmcRing& ring = *mpmc_;
        const std::size_t length = std::min<std::size_t>(argument, slot_size_);
        (void)ring.put_in_place(
            [&](std::span<std::byte> slot) {
                require(slot.size() == slot_size_ && inside(memory_, size_, slot.data(), slot.size()));
                std::memset(slot.data(), 0xa5, length);
                return length;
            },
            0ns);
    }

    void get_in_place() {
        mproc::RawMpmcRing& ring = *mpmc_;
        (void)ring.get_in_place(
            [&](std::span<const std::byte> message) {
                require(message.size() <= slot_size_ && inside(memory_, size_, message.data(), message.size()));
                std::memcpy(buffer_.data(), message.data(), message.size());
            },
            0ns);
    }

    mproc::detail::QueueCore& queue_;
    std::byte* memory_;
    std::size_t size_;
    std::size_t slot_size_;
    std::size_t capacity_;
    std::vector<std::byte> buffer_;
    std::optional<mproc::RawSpscRing> spsc_;
    std::optional<mproc::RawMpmcRing> mpmc_;
};

void attach_and_exercise(std::byte* memory, std::size_t size, const std::uint8_t* data, std::size_t data_size) {
    current_operation = kOperationCount - 1;
    std::optional<mproc::detail::QueueCore> queue;
    try {
        queue.emplace(mproc::detail::QueueCore::attach(memory, size, 0));
    } catch (const mproc::InvalidObject&) {
        return;
    }
    Exercise exercise(*queue, memory, size);
    for (std::size_t offset = kProgramOffset; offset + 1 < std::min(kProgramEnd, data_size); offset += 2)
        exercise.run(data[offset], data[offset + 1]);
}

void as_named_object(std::byte* buffer, std::size_t size, const std::uint8_t* data) {
    mproc::ObjectHeaderFields fields{};
    try {
        fields = mproc::validate_object_header(std::span<const std::byte>(buffer, size), "fuzzed queue",
                                               mproc::ObjectKind::queue,
                                               mproc::current_layout_version(mproc::ObjectKind::queue));
    } catch (const mproc::InvalidObject&) {
        return;
    }
    require(fields.total_size <= size && fields.payload_offset + fields.payload_size <= size);
    // The program: bytes 64..127 of the input, here inside the object header.
    attach_and_exercise(buffer + fields.payload_offset, fields.payload_size, data, size);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    struct sigaction action {};
    action.sa_handler = report_stuck_operation;
    sigemptyset(&action.sa_mask);
    sigevent event{};
    event.sigev_notify = SIGEV_SIGNAL;
    event.sigev_signo = SIGRTMIN;
    if (sigaction(SIGRTMIN, &action, nullptr) != 0 || timer_create(CLOCK_MONOTONIC, &event, &watchdog) != 0) {
        std::perror("fuzz-queue-segment: cannot set up the watchdog");
        std::abort();
    }
    watchdog_ready = true;
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::align_val_t kAlignment{128};
    auto* buffer = static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, kAlignment));
    arm_watchdog(kWatchdogSeconds);

    if (size > 0) std::memcpy(buffer, data, size);
    attach_and_exercise(buffer, size, data, size);
    if (size > 0) std::memcpy(buffer, data, size);
    as_named_object(buffer, size, data);

    arm_watchdog(0);
    ::operator delete(buffer, kAlignment);
    return 0;
}
