// fuzz/fuzz-pipe.cpp — the shared-memory Pipe's receive path over arbitrary ring contents: whatever a
// hostile or broken peer writes into the slots and the producer index, a receive returns a message that
// matches the chunks, or throws Closed / SystemError(EPROTO, EMSGSIZE) / BufferTooShort / StateError —
// never a crash, an access outside the segment (ASan) or a hang. The same bytes taken as a whole pipe
// payload go through the open path first (validate_pipe_layout, then PipeConnection::from_fd on a memfd
// holding them, the checks Pipe::open makes): InvalidObject or StateError, or a layout whose rings lie
// inside the bytes and a handle whose non-blocking calls return.
//
// Input: byte 0 = how the reader receives (recv_bytes, with a small maxlength, or recv_bytes_into a
// small or a large buffer); byte 1 = how many slots the "producer" published (their sequence words say so,
// up to kSlots; the producer's index says all, beyond kSlots a corrupted index); bytes 2..9 = the consumer
// index to start from (wraps anywhere); the rest fills the slots' payloads, kPipeSlotSize bytes each, one
// after the other (a short input leaves the rest of a slot zero).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/object_header.hpp"
#include "mproc/pipe.hpp"
#include "mproc/shared_memory.hpp"

namespace {

constexpr std::size_t kSlots = 8;

// An invariant broke: crash so that the fuzzer (and the corpus replay) reports this input.
[[noreturn]] void fail(const char* /*why*/) { __builtin_trap(); }

// The open path over `data` as a pipe payload.
void open_as_pipe_payload(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(data), size);
    try {
        const mproc::detail::PipeLayout layout = mproc::detail::validate_pipe_layout(payload, "fuzz pipe");
        for (std::uint32_t ring = 0; ring < layout.ring_count; ++ring)
            if (layout.ring_offset[ring] < sizeof(mproc::detail::PipeControl) ||
                layout.ring_offset[ring] + layout.ring_size > size)
                fail("a validated ring lies outside the payload");
    } catch (const mproc::InvalidObject&) {
        return;  // the common case: a handle is never made
    }
    // A layout that passes: map the bytes as a pipe object and attach to an end, as a receiver would.
    mproc::SharedMemory segment = mproc::SharedMemory::anonymous_object(
        mproc::ObjectKind::pipe, mproc::current_layout_version(mproc::ObjectKind::pipe), size,
        [&](std::span<std::byte> bytes) { std::memcpy(bytes.data(), data, size); });
    try {
        mproc::PipeConnection end = mproc::PipeConnection::from_fd(segment.fd(), data[size - 1] & 1);
        (void)end.poll(std::chrono::nanoseconds(0));
        (void)end.peer_gone();
    } catch (const mproc::InvalidObject&) {
        // a ring's own constants are wrong
    } catch (const mproc::StateError&) {
        // the end is gone, or every holder word is taken
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    open_as_pipe_payload(data, size);
    if (size < 10) return 0;
    const std::uint8_t mode = data[0] % 4;
    const std::uint64_t published = (data[1] & 0x3f) % 12;  // up to 11: a producer index beyond the 8 slots
    std::uint64_t consumer = 0;
    std::memcpy(&consumer, data + 2, sizeof consumer);
    const std::uint8_t* slot_bytes = data + 10;
    const std::size_t slot_bytes_size = size - 10;

    auto [reader, writer] = mproc::Pipe(false, kSlots);
    mproc::RawSpscRing* ring = reader.read_ring();
    mproc::detail::RingControl& control = ring->control();
    std::byte* slots = reinterpret_cast<std::byte*>(&control) + sizeof(mproc::detail::RingControl);
    // Slot i's payload (kPipeSlotSize bytes) is the input's i-th piece of that size; its sequence word follows.
    const std::size_t stride = ring->geometry().stride;
    for (std::size_t i = 0; i < kSlots; ++i) {
        std::byte* payload = slots + i * stride;
        std::memset(payload, 0, mproc::detail::kPipeSlotSize);
        const std::size_t offset = i * mproc::detail::kPipeSlotSize;
        if (offset < slot_bytes_size)
            std::memcpy(payload, slot_bytes + offset, std::min(slot_bytes_size - offset, mproc::detail::kPipeSlotSize));
    }
    // The positions and sequences as a peer could have left them (a slot holds one message, so at most
    // kSlots are published, whatever the producer's position says); nobody else touches the ring.
    std::atomic_ref(control.consumer.position).store(consumer, std::memory_order_relaxed);
    // Bit 7 of byte 1 also marks the slot after the published ones as skipped (a repair's mark, or a
    // hostile one: the receiver steps over it); bit 6 writes a sequence word from the input into every slot
    // first (hostile or stale words: they are compared exactly, never used as a length or an index).
    if ((data[1] & 0x40) != 0)
        for (std::size_t i = 0; i < kSlots; ++i) {
            const std::uint64_t hostile = consumer + i * 0x9e3779b97f4a7c15ull;
            // relaxed: plain bytes of a hostile peer; this thread is the ring's only user until the receives.
            mproc::detail::spsc_sequence_of(slots + i * stride, stride).store(hostile, std::memory_order_relaxed);
        }
    const std::uint64_t end = consumer + std::min<std::uint64_t>(published, kSlots);
    for (std::uint64_t position = consumer; position != end; ++position)
        mproc::detail::spsc_sequence_of(slots + (position % kSlots) * stride, stride)
            .store(position + 1, std::memory_order_release);
    if ((data[1] & 0x80) != 0 && end - consumer < kSlots)
        mproc::detail::spsc_sequence_of(slots + (end % kSlots) * stride, stride)
            .store(mproc::detail::spsc_skipped_sequence(end), std::memory_order_release);
    std::atomic_ref(control.producer.position).store(consumer + published, std::memory_order_release);
    writer.close();  // the peer is gone: every receive ends, none blocks

    std::vector<std::byte> buffer(mode == 2 ? 16 : 1u << 16);
    std::uint64_t delivered = 0;
    for (int receive = 0; receive < 16; ++receive) {
        try {
            std::size_t got = 0;
            switch (mode) {
            case 0: got = reader.recv_bytes().size(); break;
            case 1: got = reader.recv_bytes(100).size(); break;
            default: got = reader.recv_bytes_into(buffer); break;
            }
            delivered += got;
        } catch (const mproc::BufferTooShort& error) {
            delivered += error.message().size();
        } catch (const mproc::Closed&) {
            break;
        } catch (const mproc::SystemError&) {
            break;  // EPROTO, EMSGSIZE: the end is closed for reading
        } catch (const mproc::StateError&) {
            break;
        }
        if (mode == 1 && delivered > 100u * 16) fail("maxlength not enforced");
    }
    // Every byte delivered came out of a published slot's payload.
    if (delivered > std::min<std::uint64_t>(published, kSlots) * mproc::detail::kPipeChunkPayload)
        fail("more bytes delivered than the published slots hold");
    return 0;
}
