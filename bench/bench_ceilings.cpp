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
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::describe_mismatch;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::SequencedMessage;
using mproc::bench::SharedBlock;

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
// (5) The raw SPSC ring (bench_support.cpp, so that bench_queue measures it beside its own streams too).

BENCHMARK(mproc::bench::measure_raw_spsc_ring)->Name("BM_Ceiling_RawSpscRing")->Arg(8)->Arg(64)->UseRealTime();

}  // namespace
