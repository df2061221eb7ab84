// bench/bench_pipe.cpp — mproc::Pipe (shared-memory Connections) between two processes, beside the other ways
// to send a message of 8 B to 1 MiB from one process to another, each measured here between this process
// and a forked peer, at the same sizes, with the same placement (MPROC_BENCH_PIN applies to every peer):
//   BM_PipeStream_<system>/<bytes>           the peer streams messages of <bytes> bytes to this process;
//                                            items_per_second (messages) and bytes_per_second
//   BM_PipeRoundTrip_blocking_<size>/<system>  a message to the peer and one of the same size back, both
//                                            sides sleeping in their receive until it comes (mproc: the
//                                            adaptive spin turned off on both sides, NoSpinBeforeSleep);
//                                            p50/p99/p99.9 per round trip
//   BM_PipeRoundTrip_spin_then_sleep_<size>/mproc  the same with mproc's plain recv_bytes_into, which spins
//                                            on its adaptive budget before it sleeps and usually catches
//                                            the reply spinning (what a ping-ponging application sees)
//   BM_PipeRoundTrip_spin_<size>/mproc       the same with mproc's spinning receive: poll() (zero timeout:
//                                            a few loads, no system call) until it says ready, then receive
//   BM_PipeCeiling/cache_line_ping_pong, BM_PipeCeiling/futex_ping_pong   the ceilings the spinning and the
//                                            blocking round trips are read against, measured in this run
// Every round trip reports sleeps_per_rt and peer_sleeps_per_rt (voluntary context switches per round
// trip, LatencySampler): about 1 and 1 where both sides sleep, about 0 where a spin catches the reply;
// and the preemptions and user-space CPU time of each side, by which the blocking rows are judged.
// Systems:
//   mproc       mproc::Pipe(): one-way for streams, duplex for round trips; the child adopt()s its end, as
//               pipe.hpp's fork idiom says, before its first message, and this process closes its copy of
//               that end once the first message arrived (so the child's death ends the stream at once)
//   pipe        pipe2, one write() per message; the reader reads up to 64 KiB at a time and takes messages of
//               the fixed size out of its buffer in place (messages of 64 KiB and more straight into place)
//   socketpair  AF_UNIX SOCK_STREAM socketpair, written and read as the pipe (SOCK_SEQPACKET, which keeps
//               message boundaries but cannot carry 1 MiB by default, is measured in bench_queue)
//   zmq         ZeroMQ PAIR sockets over ipc:// in a per-run temporary directory, zmq_send/zmq_recv, one
//               context per process, created after the fork (when built with libzmq)
//   python      multiprocessing.Pipe() with send_bytes/recv_bytes, timed inside python3
//               (bench/peers/python_pipe.py; there both processes are Python's, the benchmark process waits)
// Every message carries its sequence number in its first and last 8-byte words and in the word at each
// 1 KiB boundary (so a lost, repeated or torn chunk of a long message shows); the receiver checks them all
// and the size, and a wrong one fails the run. Before each timed loop the peer's first message (sequence 0)
// is received, so connecting, adopting and the peer's first scheduling stay outside the measurement.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/error.hpp"
#include "mproc/pipe.hpp"

#ifdef MPROC_BENCH_HAVE_ZMQ
#include "bench_zmq.hpp"
#endif

namespace {

using namespace std::chrono_literals;
using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::SharedBlock;
using mproc::bench::Spinner;
using mproc::bench::UniqueFd;

const std::string kPythonPipeScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_pipe.py";

constexpr std::int64_t kStreamSizes[] = {8, 64, 512, 4096, 65536, 1 << 20};
constexpr std::int64_t kRoundTripSizes[] = {8, 64, 4096, 65536, 1 << 20};

// ---------------------------------------------------------------------------------------------------------
// Messages: a byte buffer of the benchmark's size, stamped with its sequence number.

constexpr std::size_t kWord = sizeof(std::uint64_t);
constexpr std::size_t kStampStride = 1024;  // below kPipeChunkPayload: every chunk of mproc's carries a stamp

void stamp(std::byte* message, std::size_t size, std::uint64_t sequence) noexcept {
    for (std::size_t offset = 0; offset + kWord <= size; offset += kStampStride)
        std::memcpy(message + offset, &sequence, kWord);
    std::memcpy(message + size - kWord, &sequence, kWord);
}

// Throws BenchFailure naming `system` unless the message has `size` bytes and carries `expected` in every
// stamped word.
void check_message(const char* system, const std::byte* message, std::size_t received, std::size_t size,
                   std::uint64_t expected) {
    if (received != size)
        throw BenchFailure(std::string(system) + ": a message of " + std::to_string(received) + " bytes, expected " +
                           std::to_string(size));
    const auto check_word = [&](std::size_t offset) {
        std::uint64_t word;
        std::memcpy(&word, message + offset, kWord);
        if (word == expected) return;
        throw BenchFailure(std::string(system) + ": expected message " + std::to_string(expected) + ", found " +
                           std::to_string(word) + " at byte " + std::to_string(offset) + " of " +
                           std::to_string(size));
    };
    for (std::size_t offset = 0; offset + kWord <= size; offset += kStampStride) check_word(offset);
    check_word(size - kWord);
}

// A message buffer, zero-filled (so touched) before the timed loop.
std::vector<std::byte> message_buffer(std::size_t size) { return std::vector<std::byte>(size); }

void count_stream(benchmark::State& state, std::size_t size) {
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

struct StopFlag {
    alignas(128) std::atomic<std::uint32_t> stop;  // set once by the benchmark process
};

// relaxed (both): the flag only asks a peer to end soon; no data is published with it.
bool stop_requested(const StopFlag& flag) noexcept { return flag.stop.load(std::memory_order_relaxed) != 0; }
void request_stop(StopFlag& flag) noexcept { flag.stop.store(1, std::memory_order_relaxed); }

// Round trips: the peer opens with sequence 0; in round i this process sends 2i + 1 and the peer answers
// with the number it received plus one.
std::uint64_t request_of_round(std::uint64_t round) noexcept { return 2 * round + 1; }

// ---------------------------------------------------------------------------------------------------------
// mproc::Pipe.

// recv_bytes_into in this process: a peer that went (Closed) ends the benchmark with the peer's reason.
std::size_t mproc_receive(mproc::PipeConnection& connection, std::vector<std::byte>& buffer, Peer* peer,
                          bool spin) {
    if (spin) {
        Spinner spinner("a message through the mproc pipe", peer);
        while (!connection.poll()) spinner.pause();
    }
    try {
        return connection.recv_bytes_into(buffer);
    } catch (const mproc::Closed&) {
        if (peer == nullptr) throw;  // the benchmark closed its end: the peer's signal to stop
        peer->join();                // throws with the peer's reason
        throw BenchFailure("mproc pipe: the peer closed its end while the benchmark ran");
    }
}

void mproc_stream(benchmark::State& state, std::size_t size) {
    auto ends = mproc::Pipe(false);  // (read end, write end): one ring, towards this process
    auto& reader = ends.first;
    auto& writer = ends.second;
    Peer producer("mproc pipe producer", [&] {
        writer.adopt();
        std::vector<std::byte> message = message_buffer(size);
        for (std::uint64_t sequence = 0;; ++sequence) {
            stamp(message.data(), size, sequence);
            try {
                writer.send_bytes(message);
            } catch (const mproc::BrokenPipe&) {
                return;  // the benchmark closed its end
            }
        }
    });
    std::vector<std::byte> message = message_buffer(size);
    check_message("mproc pipe stream", message.data(), mproc_receive(reader, message, &producer, false), size, 0);
    writer.close();  // the child holds the write end now; from here its death ends the stream
    std::uint64_t expected = 1;
    for (auto _ : state) {
        const std::size_t received = mproc_receive(reader, message, &producer, false);
        check_message("mproc pipe stream", message.data(), received, size, expected++);
    }
    reader.close();  // the producer's next send throws BrokenPipe
    producer.join();
    count_stream(state, size);
}

// How each side of an mproc round trip waits for the other's message.
enum class RoundTripWait { poll, spin_then_sleep, sleep };

void mproc_round_trip(benchmark::State& state, std::size_t size, RoundTripWait wait) {
    auto ends = mproc::Pipe(true);
    auto& mine = ends.first;
    auto& theirs = ends.second;
    const bool spin = wait == RoundTripWait::poll;
    Peer peer("mproc pipe round-trip peer", [&] {
        std::optional<mproc::bench::NoSpinBeforeSleep> no_spin;
        if (wait == RoundTripWait::sleep) no_spin.emplace();
        theirs.adopt();
        std::vector<std::byte> message = message_buffer(size);
        stamp(message.data(), size, 0);
        theirs.send_bytes(message);
        for (std::uint64_t expected = 1;; expected += 2) {
            std::size_t received = 0;
            try {
                received = mproc_receive(theirs, message, nullptr, spin);
            } catch (const mproc::Closed&) {
                return;
            }
            check_message("mproc pipe round-trip peer", message.data(), received, size, expected);
            stamp(message.data(), size, expected + 1);
            theirs.send_bytes(message);
        }
    });
    std::vector<std::byte> message = message_buffer(size);
    check_message("mproc pipe round trip", message.data(), mproc_receive(mine, message, &peer, spin), size, 0);
    theirs.close();
    std::optional<mproc::bench::NoSpinBeforeSleep> no_spin;
    if (wait == RoundTripWait::sleep) no_spin.emplace();
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        const std::uint64_t request = request_of_round(round++);
        stamp(message.data(), size, request);
        mine.send_bytes(message);
        const std::size_t received = mproc_receive(mine, message, &peer, spin);
        check_message("mproc pipe round trip", message.data(), received, size, request + 1);
        sampler.lap();
    }
    mine.close();
    peer.join();
    sampler.report(state);
    if (wait == RoundTripWait::sleep && size <= mproc::bench::kLargestJudgedMessage)
        mproc::bench::require_waits_in_kernel(state, sampler, "mproc pipe blocking round trip");
}

// ---------------------------------------------------------------------------------------------------------
// Byte streams: a pipe (two for round trips) or one AF_UNIX SOCK_STREAM socketpair.

enum class FdKind { pipe, socketpair };

const char* system_name(FdKind kind) { return kind == FdKind::pipe ? "pipe" : "socketpair"; }

// The four ends a round trip uses; a stream uses the peer → benchmark direction only. For a socketpair the
// two ends of each side are the same socket (the second a dup()), so closing both of one side is what
// gives the other side end of file.
struct Duplex {
    UniqueFd benchmark_reads, benchmark_writes, peer_reads, peer_writes;

    void keep_peer_ends_only() noexcept {
        benchmark_reads.close();
        benchmark_writes.close();
    }
    void keep_benchmark_ends_only() noexcept {
        peer_reads.close();
        peer_writes.close();
    }
};

UniqueFd duplicate(int fd, const char* what) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) throw mproc::SystemError(std::string(what) + ": dup", errno);
    return UniqueFd(copy);
}

Duplex make_duplex(FdKind kind, const char* what) {
    Duplex duplex;
    if (kind == FdKind::pipe) {
        mproc::bench::Pipe to_peer = mproc::bench::make_pipe(std::string(what) + ": pipe to the peer");
        mproc::bench::Pipe from_peer = mproc::bench::make_pipe(std::string(what) + ": pipe from the peer");
        duplex.peer_reads = std::move(to_peer.read_end);
        duplex.benchmark_writes = std::move(to_peer.write_end);
        duplex.benchmark_reads = std::move(from_peer.read_end);
        duplex.peer_writes = std::move(from_peer.write_end);
        return duplex;
    }
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
        throw mproc::SystemError(std::string(what) + ": socketpair", errno);
    duplex.benchmark_reads = UniqueFd(ends[0]);
    duplex.peer_reads = UniqueFd(ends[1]);
    duplex.benchmark_writes = duplicate(ends[0], what);
    duplex.peer_writes = duplicate(ends[1], what);
    return duplex;
}

// Fixed-size framing on a byte stream: reads up to kReadAhead bytes per read() and hands out each message
// in place; a message of kReadAhead bytes or more is read straight into a buffer of its own.
class FixedSizeReader {
public:
    static constexpr std::size_t kReadAhead = 64 * 1024;

    FixedSizeReader(int fd, std::size_t message_size, const char* what)
        : fd_(fd), size_(message_size), what_(what), buffer_(std::max(kReadAhead, message_size)) {}

    // The next message, or nullptr at end of file between two messages; BenchFailure at end of file
    // inside one.
    const std::byte* next() {
        if (size_ >= kReadAhead) return fill(0) ? buffer_.data() : nullptr;
        if (end_ - begin_ < size_) {
            // A read normally ends on a message boundary; keep the partial message when one did not.
            std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
            if (!fill(end_)) return nullptr;
        }
        const std::byte* message = buffer_.data() + begin_;
        begin_ += size_;
        return message;
    }

private:
    // Reads until at least one whole message lies in the buffer from its start; false at end of file
    // before any byte of it.
    bool fill(std::size_t have) {
        end_ = have;
        const std::size_t limit = size_ >= kReadAhead ? size_ : buffer_.size();
        while (end_ < size_) {
            const std::size_t got = mproc::bench::read_some(fd_, buffer_.data() + end_, limit - end_, what_);
            if (got == 0) {
                if (end_ == 0) return false;
                throw BenchFailure(std::string(what_) + ": end of file inside a message (" + std::to_string(end_) +
                                   " of " + std::to_string(size_) + " bytes)");
            }
            end_ += got;
        }
        if (size_ >= kReadAhead) end_ = 0;
        return true;
    }

    int fd_;
    std::size_t size_;
    const char* what_;
    std::vector<std::byte> buffer_;
    std::size_t begin_ = 0;  // first byte not yet handed out
    std::size_t end_ = 0;    // one past the last byte read
};

// next() in this process: end of file means the peer ended (with the peer's reason when it failed).
const std::byte* next_from_peer(FixedSizeReader& reader, Peer& peer, const char* what) {
    if (const std::byte* message = reader.next()) return message;
    peer.join();
    throw BenchFailure(std::string(what) + ": the peer closed its end while the benchmark ran");
}

void fd_stream(benchmark::State& state, FdKind kind, std::size_t size) {
    const std::string what = std::string(system_name(kind)) + " stream";
    Duplex duplex = make_duplex(kind, what.c_str());
    SharedBlock<StopFlag> control;
    Peer producer(what + " producer", [&] {
        duplex.keep_peer_ends_only();
        duplex.peer_reads.close();
        std::vector<std::byte> message = message_buffer(size);
        for (std::uint64_t sequence = 0; !stop_requested(*control); ++sequence) {
            stamp(message.data(), size, sequence);
            mproc::bench::write_all(duplex.peer_writes.get(), message.data(), size, "stream producer");
        }
    });
    duplex.keep_benchmark_ends_only();
    duplex.benchmark_writes.close();
    FixedSizeReader reader(duplex.benchmark_reads.get(), size, what.c_str());
    check_message(what.c_str(), next_from_peer(reader, producer, what.c_str()), size, size, 0);
    std::uint64_t expected = 1;
    for (auto _ : state) check_message(what.c_str(), next_from_peer(reader, producer, what.c_str()), size, size, expected++);
    request_stop(*control);
    // Drain, so that a producer blocked on a full pipe or socket returns, sees stop and exits (end of file).
    std::vector<std::byte> drain(64 * 1024);
    while (mproc::bench::read_some(duplex.benchmark_reads.get(), drain.data(), drain.size(), "stream drain") != 0) {
    }
    producer.join();
    count_stream(state, size);
}

void fd_round_trip(benchmark::State& state, FdKind kind, std::size_t size) {
    const std::string what = std::string(system_name(kind)) + " round trip";
    Duplex duplex = make_duplex(kind, what.c_str());
    Peer peer(what + " peer", [&] {
        duplex.keep_peer_ends_only();
        std::vector<std::byte> reply = message_buffer(size);
        stamp(reply.data(), size, 0);
        mproc::bench::write_all(duplex.peer_writes.get(), reply.data(), size, "round-trip peer");
        FixedSizeReader reader(duplex.peer_reads.get(), size, "round-trip peer");
        for (std::uint64_t expected = 1;; expected += 2) {
            const std::byte* request = reader.next();
            if (request == nullptr) return;  // the benchmark closed its ends
            check_message("round-trip peer", request, size, size, expected);
            stamp(reply.data(), size, expected + 1);
            mproc::bench::write_all(duplex.peer_writes.get(), reply.data(), size, "round-trip peer");
        }
    });
    duplex.keep_benchmark_ends_only();
    FixedSizeReader reader(duplex.benchmark_reads.get(), size, what.c_str());
    check_message(what.c_str(), next_from_peer(reader, peer, what.c_str()), size, size, 0);
    std::vector<std::byte> message = message_buffer(size);
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        const std::uint64_t request = request_of_round(round++);
        stamp(message.data(), size, request);
        mproc::bench::write_all(duplex.benchmark_writes.get(), message.data(), size, what.c_str());
        check_message(what.c_str(), next_from_peer(reader, peer, what.c_str()), size, size, request + 1);
        sampler.lap();
    }
    duplex.benchmark_writes.close();
    duplex.benchmark_reads.close();
    peer.join();
    sampler.report(state);
}

// ---------------------------------------------------------------------------------------------------------
// ZeroMQ: PAIR sockets over ipc:// (bench_zmq.hpp). This process binds, the peer connects.

#ifdef MPROC_BENCH_HAVE_ZMQ

using mproc::bench::EndpointDirectory;
using mproc::bench::kZmqWaitSliceMs;
using mproc::bench::ZmqPair;
using mproc::bench::zmq_high_water_mark;
using mproc::bench::zmq_receive_from_peer;

void zmq_stream(benchmark::State& state, std::size_t size) {
    const EndpointDirectory directory;
    const std::string endpoint = directory.endpoint();
    const int high_water_mark = zmq_high_water_mark(size);
    SharedBlock<StopFlag> control;
    Peer producer("zmq producer", [&] {
        // A send that waits longer than a slice returns, so that the producer notices stop.
        ZmqPair socket(endpoint, false, high_water_mark, kZmqWaitSliceMs, -1);
        std::vector<std::byte> message = message_buffer(size);
        for (std::uint64_t sequence = 0; !stop_requested(*control);) {
            stamp(message.data(), size, sequence);
            if (socket.send(message.data(), size, "zmq producer")) ++sequence;
        }
    });
    ZmqPair socket(endpoint, true, high_water_mark, -1, kZmqWaitSliceMs);
    std::vector<std::byte> message = message_buffer(size);
    check_message("zmq stream", message.data(), zmq_receive_from_peer(socket, message, producer, "zmq stream"), size, 0);
    std::uint64_t expected = 1;
    for (auto _ : state) {
        const std::size_t received = zmq_receive_from_peer(socket, message, producer, "zmq stream");
        check_message("zmq stream", message.data(), received, size, expected++);
    }
    request_stop(*control);
    producer.join();
    count_stream(state, size);
}

void zmq_round_trip(benchmark::State& state, std::size_t size) {
    const EndpointDirectory directory;
    const std::string endpoint = directory.endpoint();
    Peer peer("zmq round-trip peer", [&] {
        ZmqPair socket(endpoint, false, 4, -1, -1);
        std::vector<std::byte> message = message_buffer(size);
        stamp(message.data(), size, 0);
        socket.send(message.data(), size, "zmq round-trip peer");
        for (std::uint64_t expected = 1;; expected += 2) {
            const std::size_t received = socket.receive(message.data(), size, "zmq round-trip peer").value_or(0);
            if (received == 0) return;  // the benchmark's empty message: stop
            check_message("zmq round-trip peer", message.data(), received, size, expected);
            stamp(message.data(), size, expected + 1);
            socket.send(message.data(), size, "zmq round-trip peer");
        }
    });
    ZmqPair socket(endpoint, true, 4, -1, kZmqWaitSliceMs);
    std::vector<std::byte> message = message_buffer(size);
    check_message("zmq round trip", message.data(), zmq_receive_from_peer(socket, message, peer, "zmq round trip"),
                  size, 0);
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        const std::uint64_t request = request_of_round(round++);
        stamp(message.data(), size, request);
        socket.send(message.data(), size, "zmq round trip");
        const std::size_t received = zmq_receive_from_peer(socket, message, peer, "zmq round trip");
        check_message("zmq round trip", message.data(), received, size, request + 1);
        sampler.lap();
    }
    socket.send(message.data(), 0, "zmq round trip: stop");
    peer.join();
    sampler.report(state);
}

#endif  // MPROC_BENCH_HAVE_ZMQ

// ---------------------------------------------------------------------------------------------------------
// Python's multiprocessing.Pipe, timed inside python3.

void python_stream(benchmark::State& state, std::size_t size) {
    const auto figures = mproc::bench::run_python_peer(
        state, kPythonPipeScript, "stream " + std::to_string(size) + " " + std::to_string(state.max_iterations), 1);
    if (!figures) return;
    mproc::bench::report_python_time(state, (*figures)[0]);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

void python_round_trip(benchmark::State& state, std::size_t size) {
    const auto figures = mproc::bench::run_python_peer(
        state, kPythonPipeScript, "roundtrip " + std::to_string(size) + " " + std::to_string(state.max_iterations),
        4);
    if (!figures) return;
    mproc::bench::report_python_round_trips(state, *figures);
}

// ---------------------------------------------------------------------------------------------------------
// Registration: streams as one family per system with the size as argument (one series per system in
// report.py's throughput-by-size chart); round trips as one family per size with the system as member (one
// comparison table per size), their size written out so that they stay off that chart.

std::string size_label(std::int64_t size) {
    if (size >= (1 << 20)) return std::to_string(size >> 20) + "MiB";
    if (size >= 1024) return std::to_string(size >> 10) + "KiB";
    return std::to_string(size) + "B";
}

using SizedBody = std::function<void(benchmark::State&, std::size_t)>;

void register_stream(const std::string& system, SizedBody body, bool manual_time) {
    auto* benchmark = benchmark::RegisterBenchmark(("BM_PipeStream_" + system).c_str(), [body](benchmark::State& state) {
        mproc::bench::run_guarded(state, [&] { body(state, static_cast<std::size_t>(state.range(0))); });
    });
    for (const std::int64_t size : kStreamSizes) benchmark->Arg(size);
    if (manual_time) benchmark->UseManualTime();
    else benchmark->UseRealTime();
}

void register_round_trip(const std::string& mode, const std::string& system, SizedBody body, bool manual_time) {
    for (const std::int64_t size : kRoundTripSizes) {
        const std::string name = "BM_PipeRoundTrip_" + mode + "_" + size_label(size) + "/" + system;
        auto* benchmark = benchmark::RegisterBenchmark(name.c_str(), [body, size](benchmark::State& state) {
            mproc::bench::run_guarded(state, [&] { body(state, static_cast<std::size_t>(size)); });
        });
        if (manual_time) benchmark->UseManualTime();
        else benchmark->UseRealTime();
    }
}

bool register_benchmarks() {
    register_stream("mproc", mproc_stream, false);
    register_stream("pipe", [](benchmark::State& state, std::size_t size) { fd_stream(state, FdKind::pipe, size); },
                    false);
    register_stream("socketpair",
                    [](benchmark::State& state, std::size_t size) { fd_stream(state, FdKind::socketpair, size); }, false);
#ifdef MPROC_BENCH_HAVE_ZMQ
    register_stream("zmq", zmq_stream, false);
#endif
    register_stream("python", python_stream, true);

    register_round_trip(
        "spin", "mproc",
        [](benchmark::State& state, std::size_t size) { mproc_round_trip(state, size, RoundTripWait::poll); }, false);
    register_round_trip(
        "blocking", "mproc",
        [](benchmark::State& state, std::size_t size) { mproc_round_trip(state, size, RoundTripWait::sleep); }, false);
    register_round_trip("spin_then_sleep", "mproc",
                        [](benchmark::State& state, std::size_t size) {
                            mproc_round_trip(state, size, RoundTripWait::spin_then_sleep);
                        },
                        false);
    register_round_trip("blocking", "pipe",
                        [](benchmark::State& state, std::size_t size) { fd_round_trip(state, FdKind::pipe, size); },
                        false);
    register_round_trip(
        "blocking", "socketpair",
        [](benchmark::State& state, std::size_t size) { fd_round_trip(state, FdKind::socketpair, size); }, false);
#ifdef MPROC_BENCH_HAVE_ZMQ
    register_round_trip("blocking", "zmq", zmq_round_trip, false);
#endif
    register_round_trip("blocking", "python", python_round_trip, true);

    benchmark::RegisterBenchmark("BM_PipeCeiling/cache_line_ping_pong", mproc::bench::measure_cache_line_ping_pong)
        ->UseRealTime();
    benchmark::RegisterBenchmark("BM_PipeCeiling/futex_ping_pong", mproc::bench::measure_futex_ping_pong)
        ->UseRealTime();
    return true;
}

[[maybe_unused]] const bool registered = register_benchmarks();

}  // namespace
