// fuzz/fuzz-pipe-send.cpp — the shared-memory Pipe's send path, with a real receiver: a writer thread sends
// the messages the input describes into a small ring while this thread receives them, so that sends fill
// the ring and sleep until the receiver frees slots, long messages are cut into chunks and reassembled,
// and the stream ends by the writer closing its end or by its only holder thread ending.
//
// Input: byte 0 = the ring's slots (2, 4 or 8) and how the stream ends (bit 2: the writer thread returns
// holding its end instead of closing it: the end dies with its holder); then 3 bytes per message
// [length low, length high, how]: the length is taken modulo 3 slots' worth of payload plus one (0 to three
// chunks); `how` bits 0..1 choose the receive (recv_bytes; recv_bytes with a maxlength of the exact
// length; recv_bytes_into a buffer of exactly the length, or of half of it: BufferTooShort carrying the
// whole message), bit 2 sends through send_bytes(buffer, offset, size) from the middle of a larger buffer.
// Properties: every message arrives once, whole, in order, with its bytes (a pattern of its index and
// position); after the last one, a receive throws Closed and poll() says true; the writer saw no error.
// Deterministic whatever the threads' timing: only the moments at which sends sleep change, not what the
// receiver gets.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <span>
#include <thread>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/pipe.hpp"

namespace {

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property, const char* what) {
    if (!property) {
        std::fprintf(stderr, "fuzz-pipe-send: property failed: %s\n", what);
        std::abort();
    }
}

struct Planned {
    std::size_t length;
    std::uint8_t how;
};

std::vector<std::byte> pattern(std::size_t index, std::size_t length) {
    std::vector<std::byte> bytes(length);
    for (std::size_t i = 0; i < length; ++i) bytes[i] = static_cast<std::byte>(index * 167 + i * 31 + (i >> 8));
    return bytes;
}

constexpr std::size_t kMaxMessages = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t slots = std::size_t{2} << (data[0] % 3);
    const bool writer_dies = (data[0] & 4) != 0;
    std::vector<Planned> plan;
    for (std::size_t offset = 1; offset + 3 <= size && plan.size() < kMaxMessages; offset += 3) {
        const std::size_t announced = data[offset] | (std::size_t{data[offset + 1]} << 8);
        plan.push_back({announced % (3 * mproc::detail::kPipeChunkPayload + 1), data[offset + 2]});
    }

    auto ends = mproc::Pipe(false, slots);
    mproc::PipeConnection& reader = ends.first;
    mproc::PipeConnection& writer = ends.second;
    std::exception_ptr writer_error;
    // The writer thread must hold its end alone, so that the end dies with it when it returns holding: it
    // adopts the end, then this thread (holder of both ends since Pipe()) disowns it, then the sends start.
    std::promise<void> adopted, disowned;
    std::thread sender([&] {
        try {
            writer.adopt();
        } catch (...) {
            writer_error = std::current_exception();
        }
        adopted.set_value();
        disowned.get_future().wait();
        if (writer_error) return;
        try {
            for (std::size_t index = 0; index < plan.size(); ++index) {
                const std::vector<std::byte> message = pattern(index, plan[index].length);
                if (plan[index].how & 4) {
                    // The message from the middle of a larger buffer: send_bytes(buffer, offset, size).
                    std::vector<std::byte> padded(message.size() + 10, std::byte{0xee});
                    std::copy(message.begin(), message.end(), padded.begin() + 5);
                    writer.send_bytes(padded, 5, message.size());
                } else {
                    writer.send_bytes(message);
                }
            }
            if (!writer_dies) writer.close();
        } catch (...) {
            writer_error = std::current_exception();
        }
        // writer_dies: the thread ends holding the end; the kernel marks its holder word and wakes the reader.
    });
    adopted.get_future().wait();
    if (!writer_error) writer.disown();
    disowned.set_value();
    if (writer_error) {
        sender.join();
        require(false, "the writer thread adopts its end");
    }

    for (std::size_t index = 0; index < plan.size(); ++index) {
        const std::vector<std::byte> expected = pattern(index, plan[index].length);
        switch (plan[index].how & 3) {
        case 0: require(reader.recv_bytes() == expected, "recv_bytes returned the message sent"); break;
        case 1:
            require(reader.recv_bytes(expected.size()) == expected, "recv_bytes(maxlength = its length) returned it");
            break;
        case 2: {
            std::vector<std::byte> buffer(expected.size());
            require(reader.recv_bytes_into(buffer) == expected.size() && buffer == expected,
                    "recv_bytes_into a buffer of its size received it");
            break;
        }
        default: {
            std::vector<std::byte> buffer(expected.size() / 2);
            if (expected.size() == buffer.size()) {  // an empty message fits an empty buffer
                require(reader.recv_bytes_into(buffer) == 0, "an empty message into an empty buffer");
                break;
            }
            bool too_short = false;
            try {
                (void)reader.recv_bytes_into(buffer);
            } catch (const mproc::BufferTooShort& error) {
                too_short = true;
                const auto& whole = error.message();
                require(std::equal(whole.begin(), whole.end(), expected.begin(), expected.end()),
                        "BufferTooShort carries the whole message");
            }
            require(too_short, "a buffer of half the message is too short");
            break;
        }
        }
    }
    sender.join();
    require(!writer_error, "the writer's sends and close raised nothing");
    require(reader.poll(std::chrono::nanoseconds(0)), "poll() says true once the writer is gone");
    bool closed = false;
    try {
        (void)reader.recv_bytes();
    } catch (const mproc::Closed&) {
        closed = true;
    }
    require(closed, "after the last message the stream ends with Closed");
    return 0;
}
