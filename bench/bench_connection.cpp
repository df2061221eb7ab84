// bench/bench_connection.cpp — mproc::FdConnection (Python's Connection framing over a pipe or a socketpair,
// I/O through io_uring or plain read/write) between this process and a forked peer, beside a bare pipe and
// Python's multiprocessing.Pipe:
//   BM_ConnectionStream64/<system>     the peer streams 64-byte messages to this process, which receives one
//                                      per iteration; items_per_second (messages) and bytes_per_second
//       io_uring_send_many_pipe        fd_pipe(false), send_many of kBatch messages (one io_uring_enter per
//                                      batch: the frames are packed into the registered staging buffer)
//       io_uring_send_many_socketpair  the same over fd_pipe(true), an AF_UNIX SOCK_STREAM socketpair
//       read_write_send_many_pipe      the same as the first with the read/write backend, forced by
//                                      MPROC_DISABLE_IO_URING=1 while the connections are made
//       io_uring_send_bytes_pipe       one send_bytes per message (io_uring)
//       read_write_send_bytes_pipe     one send_bytes per message (read/write)
//       pipe_write                     a bare pipe, one write() per message; the reader reads up to 64 KiB
//                                      at a time and takes the messages out of its buffer in place
//       python                         multiprocessing.Pipe() send_bytes/recv_bytes, timed inside python3
//                                      (bench/peers/python_pipe.py)
//   BM_ConnectionRoundTrip64/<system>  a 64-byte message to the peer and one back, both sides blocking in
//                                      their receive: io_uring_socketpair, read_write_socketpair,
//                                      io_uring_pipe (two one-way fd_pipes), pipe (two bare pipes), and the
//                                      futex ping-pong ceiling measured in this run (futex_ceiling)
// Every FdConnection benchmark's label names the backend each side used ("sender io_uring, receiver
// io_uring"), so the report shows whether io_uring was in use; when it was not although asked for, the label
// carries backend_fallback_reason(). FdConnection receives read ahead into 64 KiB on either backend.
// Every message carries its sequence number in its first and last 8-byte words, checked with its size on
// receipt; a wrong one fails the run. The peer's first message (sequence 0) is received before the timed
// loop, so the peer's first scheduling and each process's lazy io_uring set-up stay outside it.
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::SharedBlock;
using mproc::FdConnection;

const std::string kPythonPipeScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_pipe.py";

constexpr std::size_t kMessageBytes = 64;
constexpr std::size_t kBatch = 64;  // messages per send_many: one io_uring_enter, 4 KiB of frames

// A message: kMessageBytes bytes, the sequence number in the first and last words.
struct Message {
    static constexpr std::size_t kWords = kMessageBytes / sizeof(std::uint64_t);
    std::uint64_t words[kWords];

    void stamp(std::uint64_t sequence) noexcept { words[0] = words[kWords - 1] = sequence; }
    std::span<const std::byte> bytes() const noexcept { return std::as_bytes(std::span(words)); }
};
static_assert(sizeof(Message) == kMessageBytes);

void check_message(const char* system, const Message& message, std::size_t received, std::uint64_t expected) {
    if (received != kMessageBytes)
        throw BenchFailure(std::string(system) + ": a message of " + std::to_string(received) + " bytes, expected " +
                           std::to_string(kMessageBytes));
    if (message.words[0] != expected || message.words[Message::kWords - 1] != expected)
        throw BenchFailure(std::string(system) + ": expected message " + std::to_string(expected) + ", received " +
                           std::to_string(message.words[0]) + "/" + std::to_string(message.words[Message::kWords - 1]));
}

struct StopFlag {
    alignas(128) std::atomic<std::uint32_t> stop;  // set once by the benchmark process
};

// relaxed (both): the flag only asks a peer to end soon; no data is published with it.
bool stop_requested(const StopFlag& flag) noexcept { return flag.stop.load(std::memory_order_relaxed) != 0; }
void request_stop(StopFlag& flag) noexcept { flag.stop.store(1, std::memory_order_relaxed); }

enum class Backend { io_uring, read_write };

// Sets MPROC_DISABLE_IO_URING=1 for its lifetime when the read/write backend is wanted (FdConnection reads it
// when a connection is made), and restores the variable's previous state.
class BackendChoice {
public:
    explicit BackendChoice(Backend backend) {
        if (backend != Backend::read_write) return;
        if (const char* previous = std::getenv(kVariable)) previous_ = previous;
        forced_ = true;
        if (::setenv(kVariable, "1", 1) != 0) throw mproc::SystemError("setenv MPROC_DISABLE_IO_URING", errno);
    }
    BackendChoice(const BackendChoice&) = delete;
    BackendChoice& operator=(const BackendChoice&) = delete;
    ~BackendChoice() {
        if (!forced_) return;
        if (previous_) ::setenv(kVariable, previous_->c_str(), 1);
        else ::unsetenv(kVariable);
    }

private:
    static constexpr const char* kVariable = "MPROC_DISABLE_IO_URING";
    bool forced_ = false;
    std::optional<std::string> previous_;
};

// The label of a benchmark: which backend each side uses, and why io_uring was not used when it was wanted.
void label_backends(benchmark::State& state, Backend wanted, const FdConnection& sender,
                    const FdConnection& receiver) {
    std::string label = "sender " + std::string(sender.backend()) + ", receiver " + std::string(receiver.backend());
    if (wanted == Backend::io_uring && !sender.backend_fallback_reason().empty())
        label += " (io_uring unavailable: " + sender.backend_fallback_reason() + ")";
    state.SetLabel(label);
}

// A receive in this process: end of stream means the peer ended (with its reason when it failed).
std::size_t receive_from_peer(FdConnection& connection, Message& message, Peer& peer, const char* what) {
    try {
        return connection.recv_bytes_into(std::as_writable_bytes(std::span(message.words)));
    } catch (const mproc::Closed&) {
        peer.join();
        throw BenchFailure(std::string(what) + ": the peer closed its end while the benchmark ran");
    }
}

void count_stream(benchmark::State& state) {
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kMessageBytes));
}

// ---------------------------------------------------------------------------------------------------------
// Streams through an FdConnection: the peer sends until told to stop; afterwards this process receives until
// end of stream, so that a peer blocked on a full pipe returns, sees stop and exits.

void connection_stream(benchmark::State& state, bool duplex, Backend backend, bool batched) {
    const char* what = "connection stream";
    std::pair<FdConnection, FdConnection> ends = [&] {
        const BackendChoice choice(backend);
        return mproc::fd_pipe(duplex);
    }();
    FdConnection& receiver = ends.first;
    FdConnection& sender = ends.second;
    label_backends(state, backend, sender, receiver);
    SharedBlock<StopFlag> control;
    Peer producer("connection stream producer", [&] {
        receiver.close();
        std::vector<Message> batch(batched ? kBatch : 1);
        std::vector<std::span<const std::byte>> spans;
        for (const Message& message : batch) spans.push_back(message.bytes());
        for (std::uint64_t sequence = 0; !stop_requested(*control);) {
            for (Message& message : batch) message.stamp(sequence++);
            if (batched) sender.send_many(spans);
            else sender.send_bytes(spans[0]);
        }
    });
    sender.close();  // the child's copy is the only writer now: its exit ends the stream
    Message message{};
    check_message(what, message, receive_from_peer(receiver, message, producer, what), 0);
    std::uint64_t expected = 1;
    for (auto _ : state) check_message(what, message, receive_from_peer(receiver, message, producer, what), expected++);
    request_stop(*control);
    for (;;) {
        try {
            receiver.recv_bytes_into(std::as_writable_bytes(std::span(message.words)));
        } catch (const mproc::Closed&) {
            break;
        }
    }
    producer.join();
    count_stream(state);
}

// ---------------------------------------------------------------------------------------------------------
// A bare pipe, one write() per message: the baseline the issue sets batched io_uring sends against.

void pipe_write_stream(benchmark::State& state) {
    constexpr std::size_t kReadAhead = 64 * 1024;
    SharedBlock<StopFlag> control;
    mproc::bench::Pipe pipe = mproc::bench::make_pipe("pipe stream");
    Peer producer("pipe stream producer", [&] {
        pipe.read_end.close();
        Message message{};
        for (std::uint64_t sequence = 0; !stop_requested(*control); ++sequence) {
            message.stamp(sequence);
            mproc::bench::write_all(pipe.write_end.get(), &message, sizeof message, "pipe stream producer");
        }
    });
    pipe.write_end.close();
    std::vector<std::byte> buffer(kReadAhead);
    std::size_t begin = 0;  // first byte not yet consumed
    std::size_t end = 0;    // one past the last byte read
    // The next message, in place in the buffer (a read normally ends on a message boundary; a partial
    // message is kept for the next read).
    const auto next = [&]() -> const std::byte* {
        if (end - begin < kMessageBytes) {
            std::memmove(buffer.data(), buffer.data() + begin, end - begin);
            end -= begin;
            begin = 0;
            while (end < kMessageBytes) {
                const std::size_t got =
                    mproc::bench::read_some(pipe.read_end.get(), buffer.data() + end, buffer.size() - end, "pipe stream");
                if (got == 0) {
                    producer.join();
                    throw BenchFailure("pipe stream: the producer closed its end while the benchmark ran");
                }
                end += got;
            }
        }
        const std::byte* message = buffer.data() + begin;
        begin += kMessageBytes;
        return message;
    };
    const auto check = [&](std::uint64_t expected) {
        Message message;
        std::memcpy(&message, next(), sizeof message);  // 64 bytes: the words, aligned
        check_message("pipe stream", message, sizeof message, expected);
    };
    check(0);
    std::uint64_t expected = 1;
    for (auto _ : state) check(expected++);
    request_stop(*control);
    while (mproc::bench::read_some(pipe.read_end.get(), buffer.data(), buffer.size(), "pipe stream drain") != 0) {
    }
    producer.join();
    count_stream(state);
}

void python_stream(benchmark::State& state) {
    const auto figures = mproc::bench::run_python_peer(
        state, kPythonPipeScript,
        "stream " + std::to_string(kMessageBytes) + " " + std::to_string(state.max_iterations), 1);
    if (!figures) return;
    mproc::bench::report_python_time(state, (*figures)[0]);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kMessageBytes));
}

// ---------------------------------------------------------------------------------------------------------
// Round trips: the peer opens with sequence 0; in round i this process sends 2i + 1 and the peer answers with
// the number it received plus one. Closing this process's ends is the peer's signal to stop.

// The connections of one round trip. Over a socketpair each side has one duplex connection; over pipes two
// one-way ones. `benchmark_*` are used by this process, `peer_*` by the peer; each closes the other's copies.
struct RoundTripEnds {
    std::vector<FdConnection> benchmark_side, peer_side;
    FdConnection* benchmark_send = nullptr;
    FdConnection* benchmark_receive = nullptr;
    FdConnection* peer_send = nullptr;
    FdConnection* peer_receive = nullptr;
};

RoundTripEnds make_round_trip_ends(bool duplex, Backend backend) {
    const BackendChoice choice(backend);
    RoundTripEnds ends;
    ends.benchmark_side.reserve(2);
    ends.peer_side.reserve(2);
    if (duplex) {
        auto [mine, theirs] = mproc::fd_pipe(true);
        ends.benchmark_side.push_back(std::move(mine));
        ends.peer_side.push_back(std::move(theirs));
        ends.benchmark_send = ends.benchmark_receive = &ends.benchmark_side[0];
        ends.peer_send = ends.peer_receive = &ends.peer_side[0];
        return ends;
    }
    auto [peer_reads, benchmark_writes] = mproc::fd_pipe(false);
    auto [benchmark_reads, peer_writes] = mproc::fd_pipe(false);
    ends.benchmark_side.push_back(std::move(benchmark_writes));
    ends.benchmark_side.push_back(std::move(benchmark_reads));
    ends.peer_side.push_back(std::move(peer_writes));
    ends.peer_side.push_back(std::move(peer_reads));
    ends.benchmark_send = &ends.benchmark_side[0];
    ends.benchmark_receive = &ends.benchmark_side[1];
    ends.peer_send = &ends.peer_side[0];
    ends.peer_receive = &ends.peer_side[1];
    return ends;
}

void connection_round_trip(benchmark::State& state, bool duplex, Backend backend) {
    const char* what = "connection round trip";
    RoundTripEnds ends = make_round_trip_ends(duplex, backend);
    label_backends(state, backend, *ends.benchmark_send, *ends.benchmark_receive);
    Peer peer("connection round-trip peer", [&] {
        for (FdConnection& connection : ends.benchmark_side) connection.close();
        Message message{};
        message.stamp(0);
        ends.peer_send->send_bytes(message.bytes());
        for (std::uint64_t expected = 1;; expected += 2) {
            std::size_t received = 0;
            try {
                received = ends.peer_receive->recv_bytes_into(std::as_writable_bytes(std::span(message.words)));
            } catch (const mproc::Closed&) {
                return;
            }
            check_message("connection round-trip peer", message, received, expected);
            message.stamp(expected + 1);
            ends.peer_send->send_bytes(message.bytes());
        }
    });
    for (FdConnection& connection : ends.peer_side) connection.close();
    Message message{};
    check_message(what, message, receive_from_peer(*ends.benchmark_receive, message, peer, what), 0);
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        const std::uint64_t request = 2 * round++ + 1;
        message.stamp(request);
        ends.benchmark_send->send_bytes(message.bytes());
        check_message(what, message, receive_from_peer(*ends.benchmark_receive, message, peer, what), request + 1);
        sampler.lap();
    }
    for (FdConnection& connection : ends.benchmark_side) connection.close();
    peer.join();
    sampler.report(state);
}

void pipe_round_trip(benchmark::State& state) {
    mproc::bench::Pipe to_peer = mproc::bench::make_pipe("pipe round trip: pipe to the peer");
    mproc::bench::Pipe from_peer = mproc::bench::make_pipe("pipe round trip: pipe from the peer");
    // Reads one whole message; false at end of file before its first byte.
    const auto read_message = [](int fd, Message& message, const char* what) {
        auto* bytes = reinterpret_cast<std::byte*>(message.words);
        for (std::size_t done = 0; done < sizeof message;) {
            const std::size_t got = mproc::bench::read_some(fd, bytes + done, sizeof message - done, what);
            if (got == 0) {
                if (done == 0) return false;
                throw BenchFailure(std::string(what) + ": end of file inside a message");
            }
            done += got;
        }
        return true;
    };
    Peer peer("pipe round-trip peer", [&] {
        to_peer.write_end.close();
        from_peer.read_end.close();
        Message message{};
        message.stamp(0);
        mproc::bench::write_all(from_peer.write_end.get(), &message, sizeof message, "pipe round-trip peer");
        for (std::uint64_t expected = 1; read_message(to_peer.read_end.get(), message, "pipe round-trip peer");
             expected += 2) {
            check_message("pipe round-trip peer", message, sizeof message, expected);
            message.stamp(expected + 1);
            mproc::bench::write_all(from_peer.write_end.get(), &message, sizeof message, "pipe round-trip peer");
        }
    });
    to_peer.read_end.close();
    from_peer.write_end.close();
    Message message{};
    const auto receive = [&](std::uint64_t expected) {
        if (!read_message(from_peer.read_end.get(), message, "pipe round trip")) {
            peer.join();
            throw BenchFailure("pipe round trip: the peer closed its end while the benchmark ran");
        }
        check_message("pipe round trip", message, sizeof message, expected);
    };
    receive(0);
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        const std::uint64_t request = 2 * round++ + 1;
        message.stamp(request);
        mproc::bench::write_all(to_peer.write_end.get(), &message, sizeof message, "pipe round trip");
        receive(request + 1);
        sampler.lap();
    }
    to_peer.write_end.close();
    peer.join();
    sampler.report(state);
}

// ---------------------------------------------------------------------------------------------------------
// Registration: one family per comparison, the system as member (report.py's family()).

void stream_entry(benchmark::State& state, bool duplex, Backend backend, bool batched) {
    mproc::bench::run_guarded(state, [&] { connection_stream(state, duplex, backend, batched); });
}
BENCHMARK_CAPTURE(stream_entry, io_uring_send_many_pipe, false, Backend::io_uring, true)
    ->Name("BM_ConnectionStream64/io_uring_send_many_pipe")->UseRealTime();
BENCHMARK_CAPTURE(stream_entry, io_uring_send_many_socketpair, true, Backend::io_uring, true)
    ->Name("BM_ConnectionStream64/io_uring_send_many_socketpair")->UseRealTime();
BENCHMARK_CAPTURE(stream_entry, read_write_send_many_pipe, false, Backend::read_write, true)
    ->Name("BM_ConnectionStream64/read_write_send_many_pipe")->UseRealTime();
BENCHMARK_CAPTURE(stream_entry, io_uring_send_bytes_pipe, false, Backend::io_uring, false)
    ->Name("BM_ConnectionStream64/io_uring_send_bytes_pipe")->UseRealTime();
BENCHMARK_CAPTURE(stream_entry, read_write_send_bytes_pipe, false, Backend::read_write, false)
    ->Name("BM_ConnectionStream64/read_write_send_bytes_pipe")->UseRealTime();
void BM_ConnectionStreamPipeWrite(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { pipe_write_stream(state); });
}
BENCHMARK(BM_ConnectionStreamPipeWrite)->Name("BM_ConnectionStream64/pipe_write")->UseRealTime();
void BM_ConnectionStreamPython(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { python_stream(state); });
}
BENCHMARK(BM_ConnectionStreamPython)->Name("BM_ConnectionStream64/python")->UseManualTime();

void round_trip_entry(benchmark::State& state, bool duplex, Backend backend) {
    mproc::bench::run_guarded(state, [&] { connection_round_trip(state, duplex, backend); });
}
BENCHMARK_CAPTURE(round_trip_entry, io_uring_socketpair, true, Backend::io_uring)
    ->Name("BM_ConnectionRoundTrip64/io_uring_socketpair")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, read_write_socketpair, true, Backend::read_write)
    ->Name("BM_ConnectionRoundTrip64/read_write_socketpair")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, io_uring_pipe, false, Backend::io_uring)
    ->Name("BM_ConnectionRoundTrip64/io_uring_pipe")->UseRealTime();
void BM_ConnectionRoundTripPipe(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { pipe_round_trip(state); });
}
BENCHMARK(BM_ConnectionRoundTripPipe)->Name("BM_ConnectionRoundTrip64/pipe")->UseRealTime();
BENCHMARK(mproc::bench::measure_futex_ping_pong)->Name("BM_ConnectionRoundTrip64/futex_ceiling")->UseRealTime();

}  // namespace
