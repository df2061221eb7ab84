// src/queue_spill.hpp (private) — the spill arena: where a queue keeps the bytes of a message longer than its
// slot, so that a ByteQueue (and any QueueCore user) carries messages of any size up to a byte budget.
//
// Defines: detail::SpillControl, SpillBlockEntry, SpillDescriptor (the shared layout), detail::SpillArena (a
// process-local handle holding the validated shape).
//
// Layout, after the ring in the queue's segment (at a 4096-byte boundary):
//   [SpillControl: 3 × 128 bytes | block_count entries of 16 bytes, rounded to 4096 | block_count blocks of
//    block_size bytes]
// A block's entry holds `tag`: 0 when the block is free, else 1 + the ring position of the message it
// carries; `chunk`: which block of that message it is (0, 1, ...); `next`: the index of the message's next
// block. A spilled message is a chain of blocks, all tagged with its position; the ring slot at that
// position holds a SpillDescriptor (marker, length, block count, tag, head block) instead of the bytes.
//
// The protocol ties every block to one ring position, and reclaims from the ring's state alone:
// - put: the producer obtains position p first (MPMC: reserve(), which holds slot p's robust claim until
//   commit; SPSC: its own next position), then tags free blocks with p + 1 (CAS 0 -> p + 1), copies the
//   message in, writes the descriptor into the slot and publishes it (commit / put).
// - get: the consumer takes slot p in place (MPMC: peek(), under slot p's robust claim; SPSC: peek()), checks
//   the chain against the descriptor (every index in range, every tag p + 1, chunks 0, 1, ... in order, the
//   count the length needs), copies the bytes out, re-checks the tags, then releases the slot and frees the
//   blocks (CAS p + 1 -> 0).
// - reclaim: a block tagged p + 1 is garbage once the ring is done with position p (MPMC: slot p's sequence
//   reached p + capacity, or slot p was published as skipped by the repair of a dead producer; SPSC: the
//   consumer's position passed p, or p is at or past the producer's own next position, which only a dead
//   producer can have tagged). A producer short of blocks frees garbage (CAS p + 1 -> 0), after repairing
//   (MPMC) a slot whose claimer the kernel reported dead, so a death never leaks blocks for good: its space
//   returns as soon as a producer needs it after the kernel reported the death.
// Why this is safe: a live holder's blocks are never garbage (its slot is claimed, or not yet consumed), a
// tag names a 64-bit position that is never reused, so a stale CAS never frees a later message's block, and
// a consumer copies only blocks that still carry its position after the copy.
//
// Trust: attach() validates the constants once and the handle keeps them; every index read from shared
// memory is checked against the kept block count before use, every walk is bounded by it, every length by
// the kept budget. A peer that rewrites entries or descriptors makes a get fail with InvalidObject (the
// message is dropped), never an access outside the arena.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/spsc_ring.hpp"

namespace mproc::detail {

inline constexpr std::uint32_t kSpillMagic = 0x4c505352;  // "RSPL"
inline constexpr std::uint32_t kSpillLayoutVersion = 1;
// Where an inline record's 4-byte length would be: this slot holds a SpillDescriptor.
inline constexpr std::uint32_t kSpilledMarker = 0xffffffffu;
inline constexpr std::size_t kSpillAlignment = 4096;
inline constexpr std::uint32_t kMinSpillBlockSize = 4096;
inline constexpr std::uint32_t kMaxSpillBlockSize = 1u << 26;
// Blocks per arena: the budget is cut into about this many (fewer for a small budget), so that a scan of
// the entries (allocation, reclaim) stays a few KiB.
inline constexpr std::uint32_t kSpillTargetBlocks = 1024;
inline constexpr std::uint32_t kMaxSpillBlocks = 2 * kSpillTargetBlocks;
inline constexpr std::uint64_t kMaxSpillBudget = std::uint64_t{kMaxSpillBlockSize} * kSpillTargetBlocks;

struct alignas(128) SpillConstants {
    std::uint32_t magic;          // kSpillMagic
    std::uint32_t layout_version;  // kSpillLayoutVersion
    std::uint32_t block_size;     // bytes per block, a power of two
    std::uint32_t block_count;    // blocks (and entries)
    std::uint64_t total_size;     // bytes of control, entries and blocks
    std::uint8_t padding[104];
};

// Written by producers only (where the next free-block scan starts): apart from the constants.
struct alignas(128) SpillHintLine {
    std::uint32_t next_block;
    std::uint8_t padding[124];
};

// Producers short of blocks sleep here; consumers notify after freeing blocks.
struct alignas(128) SpillWaitLine {
    EventCountLayout freed;
    std::uint8_t padding[120];
};

struct SpillControl {
    SpillConstants constants;
    SpillHintLine hint;
    SpillWaitLine wait;
};

struct alignas(16) SpillBlockEntry {
    std::uint64_t tag;    // 0: free; else 1 + the ring position of the message the block carries
    std::uint32_t chunk;  // the block's place in its message (0, 1, ...)
    std::uint32_t next;   // the message's next block (meaningless in its last)
};

// What a slot holds for a spilled message (its first word is where an inline record's length is).
struct SpillDescriptor {
    std::uint32_t marker;       // kSpilledMarker
    std::uint32_t block_count;  // blocks in the chain
    std::uint64_t length;       // bytes of the message
    std::uint64_t tag;          // 1 + the position the message was put at
    std::uint32_t head;         // the chain's first block
    std::uint32_t reserved;     // 0
};

static_assert(sizeof(SpillControl) == 3 * 128 && alignof(SpillControl) == 128,
              "constants, hint and wait line each own 128 bytes: producers' hint stores do not share a line "
              "with the constants every handle read or with the eventcount consumers write");
static_assert(sizeof(SpillBlockEntry) == 16, "entries are 16 bytes, aligned for the 64-bit tag");
static_assert(sizeof(SpillDescriptor) == 32, "a descriptor fits any ByteQueue slot (at least 32 bytes)");
static_assert(std::is_standard_layout_v<SpillControl> && std::is_trivially_copyable_v<SpillControl> &&
                  std::is_standard_layout_v<SpillBlockEntry> && std::is_standard_layout_v<SpillDescriptor>,
              "shared between processes built separately: plain bytes only");

// A process-local handle on an arena: its validated shape and the addresses derived from it.
class SpillArena {
public:
    SpillArena() = default;

    // The arena's bytes for a budget of `budget` bytes (0: no arena); ValueError above kMaxSpillBudget.
    static std::size_t required_size(std::uint64_t budget, const std::string& label);
    // Places an arena for `budget` bytes in [memory, memory + size).
    static SpillArena init(void* memory, std::size_t size, std::uint64_t budget, const std::string& label);
    // Validates the arena at memory (InvalidObject when its constants are wrong or do not fit `size`).
    static SpillArena attach(void* memory, std::size_t size, const std::string& label);
    // Whether `size` bytes at memory start with an arena's magic (an arena is optional in a queue).
    static bool present(const void* memory, std::size_t size) noexcept;

    explicit operator bool() const noexcept { return control_ != nullptr; }
    std::uint64_t budget() const noexcept { return std::uint64_t{block_size_} * block_count_; }
    std::uint32_t block_size() const noexcept { return block_size_; }
    std::uint32_t block_count() const noexcept { return block_count_; }
    std::uint32_t blocks_for(std::uint64_t length) const noexcept {
        return static_cast<std::uint32_t>((length + block_size_ - 1) / block_size_);
    }

    // Tags `count` free blocks with `tag` into `blocks` (in chain order) and links them; false (nothing
    // kept) when fewer are free.
    bool allocate(std::uint64_t tag, std::uint32_t count, std::vector<std::uint32_t>& blocks) noexcept;
    // Copies message into blocks this thread allocated (from its own list, never from the shared links).
    void write(std::span<const std::uint32_t> blocks, std::span<const std::byte> message) noexcept;
    // Frees blocks tagged `tag` (a CAS each: a block already freed or retagged is left alone) and wakes
    // producers waiting for space.
    void free(std::span<const std::uint32_t> blocks, std::uint64_t tag) noexcept;
    // Checks the chain a descriptor names (expected_tag: 1 + the slot's position) into `blocks`; a
    // message describing the problem, or empty when the chain is sound.
    std::string check_chain(const SpillDescriptor& descriptor, std::uint64_t expected_tag,
                            std::vector<std::uint32_t>& blocks) const;
    // Copies a checked chain's bytes out; false when a block lost its tag meanwhile (a peer freed it).
    bool read(std::span<const std::uint32_t> blocks, std::uint64_t tag, std::span<std::byte> out) const noexcept;

    // Frees every block whose tag names a position garbage(position) says the ring is done with; returns
    // how many. Wakes producers waiting for space when it freed any.
    template <class Garbage>
    std::uint32_t reclaim(Garbage&& garbage) noexcept {
        std::uint32_t freed = 0;
        for (std::uint32_t i = 0; i < block_count_; ++i) {
            // acquire: pairs with the allocation CAS, so garbage() judges a tag at least as new as this.
            std::uint64_t tag = tag_of(i).load(std::memory_order_acquire);
            if (tag == 0 || !garbage(tag - 1)) continue;
            MPROC_KILL_POINT(spill_reclaim, 0);  // judged garbage, not yet freed: the next reclaim frees it
            // release: pairs with the acquire of the allocation CAS (nothing was read from the block here;
            // the ring's release that made the position garbage is ordered before it through the acquire above).
            if (tag_of(i).compare_exchange_strong(tag, 0, std::memory_order_release, std::memory_order_relaxed))
                ++freed;
        }
        if (freed != 0) notify(control_->wait.freed);
        return freed;
    }
    // Free blocks now (a snapshot).
    std::uint32_t free_blocks() const noexcept;
    EventCountLayout& freed_event() const noexcept { return control_->wait.freed; }

private:
    std::atomic_ref<std::uint64_t> tag_of(std::uint32_t block) const noexcept {
        return std::atomic_ref(entries_[block].tag);
    }
    std::byte* block_at(std::uint32_t block) const noexcept {
        return data_ + std::size_t{block} * block_size_;
    }

    SpillControl* control_ = nullptr;
    SpillBlockEntry* entries_ = nullptr;
    std::byte* data_ = nullptr;
    std::uint32_t block_size_ = 0;
    std::uint32_t block_count_ = 0;
};

}  // namespace mproc::detail
