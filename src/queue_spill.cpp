// SpillArena: the blocks of messages longer than a queue's slot (the protocol is in queue_spill.hpp).
#include "queue_spill.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>

#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "ring_common.hpp"

namespace mproc::detail {
namespace {

struct SpillShape {
    std::uint32_t block_size;
    std::uint32_t block_count;
};

std::size_t entries_bytes(std::uint32_t block_count) noexcept {
    return round_up(std::size_t{block_count} * sizeof(SpillBlockEntry), kSpillAlignment);
}

std::size_t spill_total_size(SpillShape shape) noexcept {
    return round_up(sizeof(SpillControl), kSpillAlignment) + entries_bytes(shape.block_count) +
           std::size_t{shape.block_count} * shape.block_size;
}

// Blocks of at least 4 KiB, and about kSpillTargetBlocks of them for a large budget.
SpillShape shape_for(std::uint64_t budget) noexcept {
    const std::uint64_t per_block = (budget + kSpillTargetBlocks - 1) / kSpillTargetBlocks;
    const std::uint64_t block_size = std::max<std::uint64_t>(kMinSpillBlockSize, std::bit_ceil(per_block));
    return {static_cast<std::uint32_t>(block_size), static_cast<std::uint32_t>((budget + block_size - 1) / block_size)};
}

}  // namespace

std::size_t SpillArena::required_size(std::uint64_t budget, const std::string& label) {
    if (budget == 0) return 0;
    if (budget > kMaxSpillBudget)
        throw ValueError(label + ": a spill budget of " + std::to_string(budget) + " bytes, at most " +
                         std::to_string(kMaxSpillBudget));
    return spill_total_size(shape_for(budget));
}

SpillArena SpillArena::init(void* memory, std::size_t size, std::uint64_t budget, const std::string& label) {
    const std::size_t required = required_size(budget, label);
    if (required == 0) return {};
    if (reinterpret_cast<std::uintptr_t>(memory) % alignof(SpillControl) != 0 || size < required)
        throw ValueError(label + ": the spill arena needs " + std::to_string(required) + " aligned bytes, " +
                         std::to_string(size) + " given");
    const SpillShape shape = shape_for(budget);
    SpillControl control{};
    control.constants.magic = kSpillMagic;
    control.constants.layout_version = kSpillLayoutVersion;
    control.constants.block_size = shape.block_size;
    control.constants.block_count = shape.block_count;
    control.constants.total_size = required;
    std::memcpy(memory, &control, sizeof control);
    // Entries start free (0): the memory of a new segment is zero, placed memory may not be.
    std::memset(static_cast<std::byte*>(memory) + round_up(sizeof(SpillControl), kSpillAlignment), 0,
                entries_bytes(shape.block_count));
    return attach(memory, size, label);
}

bool SpillArena::present(const void* memory, std::size_t size) noexcept {
    if (size < sizeof(SpillControl)) return false;
    std::uint32_t magic;
    std::memcpy(&magic, memory, sizeof magic);
    return magic == kSpillMagic;
}

SpillArena SpillArena::attach(void* memory, std::size_t size, const std::string& label) {
    if (size < sizeof(SpillControl) || reinterpret_cast<std::uintptr_t>(memory) % alignof(SpillControl) != 0)
        throw InvalidObject(label + ": " + std::to_string(size) + " bytes after the ring cannot hold a spill arena");
    SpillConstants constants;
    std::memcpy(&constants, memory, sizeof constants);  // read once: the handle keeps this copy
    if (constants.magic != kSpillMagic || constants.layout_version != kSpillLayoutVersion)
        throw InvalidObject(label + ": spill arena magic " + std::to_string(constants.magic) + " version " +
                            std::to_string(constants.layout_version) + ", expected " + std::to_string(kSpillMagic) +
                            " version " + std::to_string(kSpillLayoutVersion));
    if (!std::has_single_bit(constants.block_size) || constants.block_size < kMinSpillBlockSize ||
        constants.block_size > kMaxSpillBlockSize || constants.block_count == 0 ||
        constants.block_count > kMaxSpillBlocks)
        throw InvalidObject(label + ": spill arena of " + std::to_string(constants.block_count) + " blocks of " +
                            std::to_string(constants.block_size) + " bytes: not a shape this library makes");
    const SpillShape shape{constants.block_size, constants.block_count};
    const std::size_t total = spill_total_size(shape);
    if (constants.total_size != total || total > size)
        throw InvalidObject(label + ": the spill arena occupies " + std::to_string(total) + " bytes (header says " +
                            std::to_string(constants.total_size) + "), " + std::to_string(size) + " available");
    SpillArena arena;
    auto* base = static_cast<std::byte*>(memory);
    arena.control_ = std::launder(reinterpret_cast<SpillControl*>(base));
    arena.entries_ = reinterpret_cast<SpillBlockEntry*>(base + round_up(sizeof(SpillControl), kSpillAlignment));
    arena.data_ = base + round_up(sizeof(SpillControl), kSpillAlignment) + entries_bytes(shape.block_count);
    arena.block_size_ = shape.block_size;
    arena.block_count_ = shape.block_count;
    return arena;
}

bool SpillArena::allocate(std::uint64_t tag, std::uint32_t count, std::vector<std::uint32_t>& blocks) noexcept {
    blocks.clear();
    if (count > block_count_) return false;
    // relaxed: only where the scan starts; any value is correct (taken modulo the validated count).
    const std::uint32_t start = std::atomic_ref(control_->hint.next_block).load(std::memory_order_relaxed) % block_count_;
    for (std::uint32_t scanned = 0; scanned < block_count_ && blocks.size() < count; ++scanned) {
        const std::uint32_t block = (start + scanned) % block_count_;
        std::uint64_t expected = 0;
        // acquire: pairs with the release CAS that freed the block (a consumer's, after its copy out, or a
        // reclaimer's after the ring's release), so the old reads are done before this producer writes.
        if (tag_of(block).compare_exchange_strong(expected, tag, std::memory_order_acquire, std::memory_order_relaxed)) {
            blocks.push_back(block);
            MPROC_KILL_POINT(spill_put, 0);  // some blocks tagged, nothing published: reclaimed as garbage
        }
    }
    if (blocks.size() < count) {
        free(blocks, tag);
        blocks.clear();
        return false;
    }
    // relaxed: a hint for the next scan.
    std::atomic_ref(control_->hint.next_block).store((blocks.back() + 1) % block_count_, std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < count; ++i) {
        // relaxed (both): published to the consumer by the ring's release that publishes the descriptor.
        std::atomic_ref(entries_[blocks[i]].chunk).store(i, std::memory_order_relaxed);
        std::atomic_ref(entries_[blocks[i]].next).store(i + 1 < count ? blocks[i + 1] : blocks[i], std::memory_order_relaxed);
    }
    return true;
}

void SpillArena::write(std::span<const std::uint32_t> blocks, std::span<const std::byte> message) noexcept {
    std::size_t done = 0;
    for (const std::uint32_t block : blocks) {
        const std::size_t chunk = std::min<std::size_t>(block_size_, message.size() - done);
        std::memcpy(block_at(block), message.data() + done, chunk);
        done += chunk;
        MPROC_KILL_POINT(spill_put, 1);  // part of the message copied in, nothing published
    }
}

void SpillArena::free(std::span<const std::uint32_t> blocks, std::uint64_t tag) noexcept {
    bool any = false;
    for (const std::uint32_t block : blocks) {
        std::uint64_t expected = tag;
        // release: pairs with the next allocation's acquire CAS: this thread's reads of the block are done.
        any |= tag_of(block).compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed);
        MPROC_KILL_POINT(spill_get, 2);  // some blocks freed: the rest are garbage once the ring is done
    }
    if (any) notify(control_->wait.freed);
}

std::string SpillArena::check_chain(const SpillDescriptor& descriptor, std::uint64_t expected_tag,
                                    std::vector<std::uint32_t>& blocks) const {
    blocks.clear();
    if (descriptor.tag != expected_tag)
        return "a spilled message tagged " + std::to_string(descriptor.tag) + " in the slot of tag " +
               std::to_string(expected_tag);
    if (descriptor.length > budget())
        return "a spilled message of " + std::to_string(descriptor.length) + " bytes, the budget is " +
               std::to_string(budget());
    const std::uint32_t count = blocks_for(descriptor.length);
    if (descriptor.block_count != count)
        return "a spilled message of " + std::to_string(descriptor.length) + " bytes in " +
               std::to_string(descriptor.block_count) + " blocks, expected " + std::to_string(count);
    std::uint32_t block = descriptor.head;
    for (std::uint32_t i = 0; i < count; ++i) {
        if (block >= block_count_)
            return "block " + std::to_string(i) + " of a spilled message is index " + std::to_string(block) +
                   ", the arena has " + std::to_string(block_count_);
        // acquire: pairs with the allocation CAS; the entry's chunk and next come with the publishing release.
        const std::uint64_t tag = tag_of(block).load(std::memory_order_acquire);
        // relaxed (both): plain fields another process wrote before the ring's release.
        const std::uint32_t chunk = std::atomic_ref(entries_[block].chunk).load(std::memory_order_relaxed);
        const std::uint32_t next = std::atomic_ref(entries_[block].next).load(std::memory_order_relaxed);
        if (tag != expected_tag || chunk != i)
            return "block " + std::to_string(block) + " of a spilled message is tagged " + std::to_string(tag) +
                   " chunk " + std::to_string(chunk) + ", expected " + std::to_string(expected_tag) + " chunk " +
                   std::to_string(i);
        blocks.push_back(block);
        block = next;
    }
    return {};
}

bool SpillArena::read(std::span<const std::uint32_t> blocks, std::uint64_t tag, std::span<std::byte> out) const noexcept {
    std::size_t done = 0;
    for (const std::uint32_t block : blocks) {
        const std::size_t chunk = std::min<std::size_t>(block_size_, out.size() - done);
        std::memcpy(out.data() + done, block_at(block), chunk);
        done += chunk;
        MPROC_KILL_POINT(spill_get, 0);  // part of the message copied out, the slot still held
    }
    // A block freed and retagged meanwhile (only a peer that breaks the protocol can) would have torn the copy.
    std::atomic_thread_fence(std::memory_order_acquire);  // the copies above are ordered before the re-check
    for (const std::uint32_t block : blocks)
        // relaxed: after the fence above.
        if (tag_of(block).load(std::memory_order_relaxed) != tag) return false;
    return true;
}

std::uint32_t SpillArena::free_blocks() const noexcept {
    std::uint32_t free = 0;
    for (std::uint32_t i = 0; i < block_count_; ++i)
        // relaxed: a snapshot for a wait predicate; allocate() is what takes a block.
        free += tag_of(i).load(std::memory_order_relaxed) == 0 ? 1 : 0;
    return free;
}

}  // namespace mproc::detail
