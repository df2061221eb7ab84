// bench/bench_ceilings.cpp — the reference ceilings every mproc benchmark is expressed against, each measured
// between this process and a forked peer, with no mproc primitive in the timed path:
//   BM_Ceiling_CacheLinePingPong  a value handed back and forth through two cache lines, both sides spinning
//   BM_Ceiling_FutexPingPong      the same hand-off where each side sleeps in FUTEX_WAIT and is woken
//   BM_Ceiling_PipePingPong       one byte each way through two pipes
//   BM_Ceiling_PipeStream64       64-byte messages, one write() each, read 64 KiB at a time
//   BM_Ceiling_RawSpscRing/N      N-byte messages through the smallest correct SPSC ring in shared memory
// Round trips report p50_ns/p99_ns/p99.9_ns and items_per_second (round trips per second); streams report
// items_per_second (messages) and bytes_per_second. Every received value is checked: a ceiling that
// measured nothing would make every ratio against it meaningless.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::SharedBlock;
using mproc::bench::Spinner;

// 128, not 64: the adjacent-line prefetcher of many x86 cores pulls 64-byte lines in pairs, so two hot
// words 64 bytes apart can still interfere.
constexpr std::size_t kSeparation = 128;

// ---------------------------------------------------------------------------------------------------------
// (1) Cache-line ping-pong: the benchmark writes round number k into `ping`, the peer copies it into `pong`.
// Each line has a single writer, so a round trip is two line transfers and nothing else. The code is in
// bench_support.cpp, so that other binaries measure this ceiling beside their own figures.

void BM_Ceiling_CacheLinePingPong(benchmark::State& state) { mproc::bench::measure_cache_line_ping_pong(state); }
BENCHMARK(BM_Ceiling_CacheLinePingPong)->UseRealTime();

// ---------------------------------------------------------------------------------------------------------
// (2) Futex ping-pong: one shared word. The benchmark stores the odd value 2k-1 and wakes; the peer, asleep
// in FUTEX_WAIT, stores 2k and wakes; the benchmark sleeps until it sees 2k. Neither side spins, and each
// wakes unconditionally (no waiter count), so a round trip is two FUTEX_WAKE calls, two sleeps and two
// scheduler wake-ups: the kernel wake path every blocking primitive pays when it has to sleep. The code
// is in bench_support.cpp, like (1).

void BM_Ceiling_FutexPingPong(benchmark::State& state) { mproc::bench::measure_futex_ping_pong(state); }
BENCHMARK(BM_Ceiling_FutexPingPong)->UseRealTime();

// ---------------------------------------------------------------------------------------------------------
// (3) Pipe ping-pong: one byte to the peer, which answers with the byte plus one. Closing the pipe to the
// peer is its signal to stop.

void BM_Ceiling_PipePingPong(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::bench::Pipe to_peer = mproc::bench::make_pipe("pipe ping-pong: pipe to the peer");
        mproc::bench::Pipe from_peer = mproc::bench::make_pipe("pipe ping-pong: pipe from the peer");
        Peer peer("pipe ping-pong", [&] {
            // The peer keeps only its own ends, so it sees end of file once the benchmark closes its end.
            to_peer.write_end.close();
            from_peer.read_end.close();
            unsigned char byte = 0;
            while (mproc::bench::read_some(to_peer.read_end.get(), &byte, 1, "pipe peer") == 1) {
                byte = static_cast<unsigned char>(byte + 1);
                mproc::bench::write_all(from_peer.write_end.get(), &byte, 1, "pipe peer");
            }
        });
        to_peer.read_end.close();
        from_peer.write_end.close();

        LatencySampler sampler(state);
        unsigned char sent = 0;
        sampler.start();
        for (auto _ : state) {
            ++sent;
            mproc::bench::write_all(to_peer.write_end.get(), &sent, 1, "pipe ping-pong");
            unsigned char reply = 0;
            if (mproc::bench::read_some(from_peer.read_end.get(), &reply, 1, "pipe ping-pong") != 1) {
                peer.join();  // throws with the peer's reason when it failed
                throw BenchFailure("pipe ping-pong: the peer closed its pipe");
            }
            if (reply != static_cast<unsigned char>(sent + 1)) {
                throw BenchFailure("pipe ping-pong: reply " + std::to_string(reply) + " to " +
                                   std::to_string(sent));
            }
            sampler.lap();
        }
        to_peer.write_end.close();
        peer.join();
        sampler.report(state);
    });
}
BENCHMARK(BM_Ceiling_PipePingPong)->UseRealTime();

// ---------------------------------------------------------------------------------------------------------
// Messages of the streams: every 8-byte word carries the sequence number, so the receiver can tell a lost,
// repeated or torn message by looking at the first and the last word.

template <std::size_t kBytes>
struct SequencedMessage {
    static_assert(kBytes % sizeof(std::uint64_t) == 0);
    std::uint64_t words[kBytes / sizeof(std::uint64_t)];

    void fill(std::uint64_t sequence) noexcept {
        for (std::uint64_t& word : words) word = sequence;
    }
    bool carries(std::uint64_t sequence) const noexcept {
        return words[0] == sequence && words[kBytes / sizeof(std::uint64_t) - 1] == sequence;
    }
};
static_assert(sizeof(SequencedMessage<8>) == 8 && sizeof(SequencedMessage<64>) == 64);

std::string describe_mismatch(const char* stream, std::uint64_t expected, std::uint64_t first_word) {
    return std::string(stream) + ": expected message " + std::to_string(expected) +
           ", received one starting with " + std::to_string(first_word);
}

// ---------------------------------------------------------------------------------------------------------
// (4) Pipe stream: the peer writes 64-byte messages, one write() each, until told to stop; the benchmark
// reads up to 64 KiB per read() and consumes one message per iteration.

struct StopFlag {
    alignas(kSeparation) std::atomic<std::uint32_t> stop;  // set once by the benchmark process
};

void BM_Ceiling_PipeStream64(benchmark::State& state) {
    using Message = SequencedMessage<64>;
    constexpr std::size_t kReadSize = 64 * 1024;
    mproc::bench::run_guarded(state, [&] {
        SharedBlock<StopFlag> control;
        mproc::bench::Pipe pipe = mproc::bench::make_pipe("pipe stream");
        Peer peer("pipe stream writer", [&] {
            pipe.read_end.close();
            Message message;
            // relaxed: stop only asks the writer to end soon; no data is published with it.
            for (std::uint64_t sequence = 0; control->stop.load(std::memory_order_relaxed) == 0; ++sequence) {
                message.fill(sequence);
                mproc::bench::write_all(pipe.write_end.get(), &message, sizeof message, "pipe stream writer");
            }
        });
        pipe.write_end.close();

        std::vector<unsigned char> buffer(kReadSize);
        std::size_t begin = 0;  // first unconsumed byte
        std::size_t end = 0;    // one past the last byte read
        std::uint64_t expected = 0;
        for (auto _ : state) {
            if (end - begin < sizeof(Message)) {
                // A read normally ends on a message boundary; keep a partial message if one did not.
                std::memmove(buffer.data(), buffer.data() + begin, end - begin);
                end -= begin;
                begin = 0;
                while (end < sizeof(Message)) {
                    const std::size_t got = mproc::bench::read_some(pipe.read_end.get(), buffer.data() + end,
                                                                    buffer.size() - end, "pipe stream");
                    if (got == 0) {
                        peer.join();  // throws with the writer's reason when it failed
                        throw BenchFailure("pipe stream: the writer closed its pipe");
                    }
                    end += got;
                }
            }
            Message message;
            std::memcpy(&message, buffer.data() + begin, sizeof message);
            if (!message.carries(expected))
                throw BenchFailure(describe_mismatch("pipe stream", expected, message.words[0]));
            begin += sizeof message;
            ++expected;
        }
        // relaxed: see the writer's load.
        control->stop.store(1, std::memory_order_relaxed);
        // Drain so a writer blocked on a full pipe returns, sees stop and exits (end of file).
        const auto drain = [&] {
            return mproc::bench::read_some(pipe.read_end.get(), buffer.data(), buffer.size(), "pipe stream drain");
        };
        while (drain() != 0) {
        }
        peer.join();
        state.SetItemsProcessed(state.iterations());
        state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(sizeof(Message)));
    });
}
BENCHMARK(BM_Ceiling_PipeStream64)->UseRealTime();

// ---------------------------------------------------------------------------------------------------------
// (5) The raw SPSC ring: fixed slots, a power-of-two mask, free-running 64-bit indices, each side keeping a
// private copy of the other side's index and reloading it only when the copy says full (producer) or empty
// (consumer). No wrap-around flags, no batching, no blocking: the bound a featureful queue is measured
// against. The producer starts at fork, so up to kRingSlots messages are ready when the timed loop starts:
// a head start of kRingSlots / iterations, under 0.1 % of any run that lasts the default minimum time.

constexpr std::uint64_t kRingSlots = 4096;
static_assert((kRingSlots & (kRingSlots - 1)) == 0, "the slot index is the free-running index masked");

template <class Message>
struct RawSpscRing {
    alignas(kSeparation) std::atomic<std::uint64_t> tail;  // messages pushed; written by the producer only
    alignas(kSeparation) std::atomic<std::uint64_t> head;  // messages popped; written by the consumer only
    alignas(kSeparation) std::atomic<std::uint32_t> stop;  // set once by the consumer (the benchmark)
    alignas(kSeparation) Message slots[kRingSlots];
};

template <class Message>
class RingProducer {
public:
    explicit RingProducer(RawSpscRing<Message>& ring) noexcept : ring_(ring) {}

    bool try_push(const Message& message) noexcept {
        if (tail_ - cached_head_ == kRingSlots) {
            // acquire: pairs with the consumer's release store of head, so its reads of the slot we are
            // about to overwrite are finished.
            cached_head_ = ring_.head.load(std::memory_order_acquire);
            if (tail_ - cached_head_ == kRingSlots) return false;
        }
        ring_.slots[tail_ & (kRingSlots - 1)] = message;
        // release: pairs with the consumer's acquire load of tail, so the slot's bytes are visible first.
        ring_.tail.store(++tail_, std::memory_order_release);
        return true;
    }

private:
    RawSpscRing<Message>& ring_;
    std::uint64_t tail_ = 0;         // the producer is tail's only writer: no need to load it
    std::uint64_t cached_head_ = 0;  // last head seen; head only grows, so this is a lower bound
};

template <class Message>
class RingConsumer {
public:
    explicit RingConsumer(RawSpscRing<Message>& ring) noexcept : ring_(ring) {}

    bool try_pop(Message& message) noexcept {
        if (head_ == cached_tail_) {
            // acquire: pairs with the producer's release store of tail.
            cached_tail_ = ring_.tail.load(std::memory_order_acquire);
            if (head_ == cached_tail_) return false;
        }
        message = ring_.slots[head_ & (kRingSlots - 1)];
        // release: pairs with the producer's acquire load of head; the slot is free only after our read.
        ring_.head.store(++head_, std::memory_order_release);
        return true;
    }

private:
    RawSpscRing<Message>& ring_;
    std::uint64_t head_ = 0;
    std::uint64_t cached_tail_ = 0;  // last tail seen; a lower bound on what is ready
};

template <std::size_t kBytes>
void raw_spsc_ring(benchmark::State& state) {
    using Message = SequencedMessage<kBytes>;
    using Ring = RawSpscRing<Message>;
    static_assert(std::is_standard_layout_v<Ring> && alignof(Ring) == kSeparation);
    static_assert(offsetof(Ring, head) - offsetof(Ring, tail) == kSeparation &&
                      offsetof(Ring, slots) - offsetof(Ring, stop) == kSeparation,
                  "head and tail have different writers: they must not share a line or its prefetch pair");

    SharedBlock<Ring> ring;
    Peer peer("raw SPSC ring producer", [&] {
        RingProducer<Message> producer(*ring);
        Message message;
        for (std::uint64_t sequence = 0;; ++sequence) {
            message.fill(sequence);
            if (producer.try_push(message)) continue;
            Spinner spinner("room in the ring");
            do {
                // relaxed: stop only asks the producer to end; no data is published with it.
                if (ring->stop.load(std::memory_order_relaxed) != 0) return;
                spinner.pause();
            } while (!producer.try_push(message));
        }
    });

    RingConsumer<Message> consumer(*ring);
    std::uint64_t expected = 0;
    Message message;
    for (auto _ : state) {
        if (!consumer.try_pop(message)) {
            Spinner spinner("a message from the producer", &peer);
            do spinner.pause();
            while (!consumer.try_pop(message));
        }
        if (!message.carries(expected))
            throw BenchFailure(describe_mismatch("raw SPSC ring", expected, message.words[0]));
        ++expected;
    }
    // relaxed: see the producer's load; it looks once the ring is full, which it soon is.
    ring->stop.store(1, std::memory_order_relaxed);
    peer.join();
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kBytes));
}

void BM_Ceiling_RawSpscRing(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        switch (state.range(0)) {
        case 8:
            raw_spsc_ring<8>(state);
            break;
        case 64:
            raw_spsc_ring<64>(state);
            break;
        default:
            throw BenchFailure("raw SPSC ring: no message type of " + std::to_string(state.range(0)) + " bytes");
        }
    });
}
BENCHMARK(BM_Ceiling_RawSpscRing)->Arg(8)->Arg(64)->UseRealTime();

}  // namespace
