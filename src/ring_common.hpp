// src/ring_common.hpp (private) — what the SPSC and MPMC rings share: sizing, placing and validating the
// control block, the closed flag, and how a position becomes a slot address.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "eventcount.hpp"
#include "mproc/error.hpp"
#include "mproc/spsc_ring.hpp"

namespace mproc::detail {

inline std::atomic_ref<std::uint64_t> position_of(RingSide& side) noexcept { return std::atomic_ref(side.position); }
inline std::atomic_ref<std::uint64_t> cached_of(RingSide& side) noexcept { return std::atomic_ref(side.cached_other); }
inline std::atomic_ref<std::uint32_t> closed_of(RingControl& control) noexcept {
    return std::atomic_ref(control.constants.closed);
}

inline std::size_t round_up(std::size_t value, std::size_t multiple) noexcept {
    return (value + multiple - 1) / multiple * multiple;
}

inline void check_ring_shape(std::size_t capacity, std::size_t slot_size, const char* label) {
    if (capacity < 2 || !std::has_single_bit(capacity) || capacity > kMaxRingCapacity)
        throw ValueError(std::string(label) + ": capacity " + std::to_string(capacity) +
                         ", expected a power of two in 2.." + std::to_string(kMaxRingCapacity));
    if (slot_size == 0 || slot_size > kMaxRingSlotSize)
        throw ValueError(std::string(label) + ": slot size " + std::to_string(slot_size) + ", expected 1.." +
                         std::to_string(kMaxRingSlotSize));
}

// total = control block + capacity * stride; every factor is bounded above, so no overflow on 64-bit.
inline std::size_t ring_total_size(std::size_t capacity, std::size_t stride) noexcept {
    return sizeof(RingControl) + capacity * stride;
}

inline void check_placement(void* memory, std::size_t size, std::size_t required, const char* label,
                            const char* operation) {
    if (memory == nullptr) throw ValueError(std::string(label) + ": " + operation + ": null memory");
    if (reinterpret_cast<std::uintptr_t>(memory) % alignof(RingControl) != 0)
        throw ValueError(std::string(label) + ": " + operation + ": memory must be " +
                         std::to_string(alignof(RingControl)) + "-byte aligned");
    if (size < required)
        throw ValueError(std::string(label) + ": " + operation + ": " + std::to_string(size) +
                         " bytes, the ring needs " + std::to_string(required));
}

inline std::uint32_t ring_layout_version(std::uint32_t magic) noexcept {
    return magic == kSpscRingMagic ? kSpscRingLayoutVersion : kMpmcRingLayoutVersion;
}

inline void place_ring_control(void* memory, std::uint32_t magic, std::size_t capacity, std::size_t slot_size,
                               std::size_t stride) {
    RingControl control{};
    control.constants.magic = magic;
    control.constants.layout_version = ring_layout_version(magic);
    control.constants.slot_size = static_cast<std::uint32_t>(slot_size);
    control.constants.slot_stride = static_cast<std::uint32_t>(stride);
    control.constants.capacity = capacity;
    control.constants.total_size = ring_total_size(capacity, stride);
    std::memcpy(memory, &control, sizeof control);
}

// Checks a control block found in `size` bytes at memory; reads nothing outside them. Copies the
// constants once, checks the copy and returns it: the caller builds its RingGeometry from this copy, never
// from a second read of the shared bytes.
inline RingConstants validate_ring_control(const void* memory, std::size_t size, std::uint32_t expected_magic,
                                  std::size_t minimum_stride_overhead, std::size_t stride_alignment,
                                  std::string_view label) {
    const std::string name(label);
    if (size < sizeof(RingControl))
        throw InvalidObject(name + ": " + std::to_string(size) + " bytes, a ring needs at least " +
                            std::to_string(sizeof(RingControl)));
    RingConstants constants;
    std::memcpy(&constants, memory, sizeof constants);
    if (constants.magic != expected_magic) {
        const bool other = constants.magic == kSpscRingMagic || constants.magic == kMpmcRingMagic;
        throw InvalidObject(name + ": " +
                            (other ? std::string(constants.magic == kSpscRingMagic ? "an SPSC ring" : "an MPMC ring") +
                                         ", not " + (expected_magic == kSpscRingMagic ? "an SPSC ring" : "an MPMC ring")
                                   : "magic " + std::to_string(constants.magic) + ", expected " +
                                         std::to_string(expected_magic)));
    }
    if (constants.layout_version != ring_layout_version(expected_magic))
        throw InvalidObject(name + ": ring layout version " + std::to_string(constants.layout_version) +
                            ", expected " + std::to_string(ring_layout_version(expected_magic)));
    const std::uint64_t capacity = constants.capacity;
    if (capacity < 2 || !std::has_single_bit(capacity) || capacity > kMaxRingCapacity)
        throw InvalidObject(name + ": capacity " + std::to_string(capacity) + " is not a power of two in 2.." +
                            std::to_string(kMaxRingCapacity));
    if (constants.slot_size == 0 || constants.slot_size > kMaxRingSlotSize ||
        constants.slot_stride < constants.slot_size + minimum_stride_overhead || constants.slot_stride % stride_alignment != 0 ||
        constants.slot_stride > kMaxRingSlotSize + 128)
        throw InvalidObject(name + ": slot size " + std::to_string(constants.slot_size) + " and stride " +
                            std::to_string(constants.slot_stride) + " disagree");
    const std::uint64_t total = ring_total_size(capacity, constants.slot_stride);
    if (constants.total_size != total || total > size)
        throw InvalidObject(name + ": the ring occupies " + std::to_string(total) + " bytes (header says " +
                            std::to_string(constants.total_size) + "), " + std::to_string(size) + " available");
    return constants;
}

inline std::byte* slot_area(RingControl& control) noexcept {
    return reinterpret_cast<std::byte*>(&control) + sizeof(RingControl);
}

// The geometry of the ring at memory, from constants that init() chose or validate_ring_control() checked.
inline RingGeometry geometry_of(void* memory, std::uint64_t capacity, std::uint64_t stride, std::uint32_t slot_size) noexcept {
    RingControl& control = *std::launder(static_cast<RingControl*>(memory));
    return {&control, slot_area(control), capacity, stride, slot_size};
}

inline bool ring_closed(RingControl& control) noexcept {
    // acquire: pairs with the seq_cst store in close_ring(); a closed ring stays closed.
    return closed_of(control).load(std::memory_order_acquire) != 0;
}

inline void close_ring(RingControl& control) noexcept {
    // seq_cst: ordered before the epoch changes below, which every sleeper compares in FUTEX_WAIT.
    closed_of(control).store(1, std::memory_order_seq_cst);
    notify_always(control.not_empty.event);
    notify_always(control.not_full.event);
}

// Messages between the two positions, read so that the answer is a value the ring had: the consumer's
// position is read before and after the producer's, and the pair is retried until both reads agree.
inline std::size_t ring_size(const RingGeometry& ring) noexcept {
    RingControl& control = *ring.control;
    const std::uint64_t capacity = ring.capacity;
    for (;;) {
        // acquire (both): a snapshot consistent with the slots' contents; the retry makes it a pair.
        const std::uint64_t dequeued = position_of(control.consumer).load(std::memory_order_acquire);
        const std::uint64_t enqueued = position_of(control.producer).load(std::memory_order_acquire);
        if (position_of(control.consumer).load(std::memory_order_acquire) != dequeued) continue;
        const std::uint64_t size = enqueued - dequeued;
        return static_cast<std::size_t>(size > capacity ? (enqueued < dequeued ? 0 : capacity) : size);
    }
}

}  // namespace mproc::detail
