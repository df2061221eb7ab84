// bench/bench_listener.cpp — connections made by mproc::Listener/Client (authkey handshake done, then an
// ordinary FdConnection) between this process and a forked peer, beside plain sockets in the same run:
//   BM_ListenerRoundTrip64/<system>  a 64-byte message to the peer and one back, both sides blocking
//       mproc_unix, mproc_tcp        Listener here, Client in the peer (abstract AF_UNIX name; 127.0.0.1)
//       socket_unix, socket_tcp      the same sockets made by hand, one write()/read() loop per message:
//                                    the ceiling the 1.2x goal is measured against
//   BM_ListenerStream64/<system>     the peer streams 64-byte messages, this process receives one per
//                                    iteration: mproc_* send_many batches of 64 (one system call per
//                                    batch), socket_* one write() per message
//   BM_ListenerConnect/<system>      one connection per iteration: connect, the handshake (mproc_*: both
//                                    halves, HMAC-SHA256 challenges), and a 1-byte "ready" from the peer,
//                                    so the peer's side of the handshake is inside; socket_tcp: connect,
//                                    accept and the same byte
//   .../python_unix, .../python_tcp  Python's Listener/Client doing the same (round trip, connect), timed
//                                    inside python3 (bench/peers/python_listener.py)
//   .../zmq_ipc, .../zmq_tcp         ZeroMQ PAIR sockets (bench_zmq.hpp) over ipc:// (a socket file in a
//                                    temporary directory) and tcp://127.0.0.1, round trip and stream (one
//                                    zmq_send per message; ZeroMQ batches on its own I/O thread); built
//                                    with libzmq only (MPROC_BENCH_HAVE_ZMQ)
// Not here yet: a Python stream, and ZeroMQ's connect (no handshake to compare with).
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/listener.hpp"

#ifdef MPROC_BENCH_HAVE_ZMQ
#include "bench_zmq.hpp"
#endif

namespace {

using mproc::FdConnection;
using mproc::Listener;
using mproc::SocketAddress;
using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::UniqueFd;

using Message = mproc::bench::SequencedMessage<64>;
constexpr std::size_t kBatch = 64;
const std::string kKey = "bench key";
const std::string kPythonListenerScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_listener.py";

enum class Transport { unix_socket, tcp };

SocketAddress listen_address(Transport transport) {
    if (transport == Transport::tcp) return SocketAddress::tcp("127.0.0.1", 0);
    return SocketAddress::unix_socket(std::string(1, '\0') + "mproc-bench-listener-" + std::to_string(::getpid()));
}

std::span<const std::byte> bytes_of(const Message& message) { return std::as_bytes(std::span(&message, 1)); }

void receive_checked(FdConnection& connection, Message& message, std::uint64_t expected, const char* what) {
    const std::size_t got = connection.recv_bytes_into(std::as_writable_bytes(std::span(&message, 1)));
    if (got != sizeof(Message) || !message.carries(expected))
        throw BenchFailure(std::string(what) + ": expected message " + std::to_string(expected));
}

// ---- plain sockets, made by hand ----

struct PlainListener {
    UniqueFd fd;
    sockaddr_storage address{};
    socklen_t size = 0;
};

PlainListener plain_listener(Transport transport) {
    PlainListener listener;
    if (transport == Transport::tcp) {
        listener.fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        std::memcpy(&listener.address, &in, sizeof(in));
        listener.size = sizeof(in);
    } else {
        listener.fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        const std::string name = "mproc-bench-plain-" + std::to_string(::getpid());
        std::memcpy(un.sun_path + 1, name.data(), name.size());
        std::memcpy(&listener.address, &un, sizeof(un));
        listener.size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    }
    if (::bind(listener.fd.get(), reinterpret_cast<const sockaddr*>(&listener.address), listener.size) != 0 ||
        ::listen(listener.fd.get(), 16) != 0)
        mproc::throw_system_error("plain listener");
    listener.size = sizeof(listener.address);
    ::getsockname(listener.fd.get(), reinterpret_cast<sockaddr*>(&listener.address), &listener.size);
    return listener;
}

UniqueFd plain_connect(const PlainListener& listener, Transport transport) {
    UniqueFd fd(::socket(listener.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&listener.address), listener.size) != 0)
        mproc::throw_system_error("plain connect");
    if (transport == Transport::tcp) {
        const int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

bool read_whole(int fd, void* into, std::size_t size, const char* what) {
    auto* bytes = static_cast<char*>(into);
    for (std::size_t done = 0; done < size;) {
        const std::size_t got = mproc::bench::read_some(fd, bytes + done, size - done, what);
        if (got == 0) {
            if (done == 0) return false;
            throw BenchFailure(std::string(what) + ": end of stream inside a message");
        }
        done += got;
    }
    return true;
}

// ---- round trip ----

void mproc_round_trip(benchmark::State& state, Transport transport) {
    const char* what = "listener round trip";
    Listener listener(listen_address(transport), 1, kKey);
    const SocketAddress address = listener.address();
    Peer peer("listener round-trip peer", [&] {
        listener.close();
        FdConnection connection = mproc::Client(address, kKey, std::chrono::seconds(10));
        Message message{};
        for (std::uint64_t expected = 0;; ++expected) {
            try {
                receive_checked(connection, message, expected, "listener round-trip peer");
            } catch (const mproc::Closed&) {
                return;
            }
            connection.send_bytes(bytes_of(message));
        }
    });
    FdConnection connection = listener.accept();
    Message message{};
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        message.fill(round);
        connection.send_bytes(bytes_of(message));
        receive_checked(connection, message, round, what);
        ++round;
        sampler.lap();
    }
    connection.close();
    peer.join();
    sampler.report(state);
}

void socket_round_trip(benchmark::State& state, Transport transport) {
    const char* what = "socket round trip";
    PlainListener listener = plain_listener(transport);
    Peer peer("socket round-trip peer", [&] {
        UniqueFd fd = plain_connect(listener, transport);
        Message message{};
        while (read_whole(fd.get(), &message, sizeof message, "socket round-trip peer"))
            mproc::bench::write_all(fd.get(), &message, sizeof message, "socket round-trip peer");
    });
    UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (transport == Transport::tcp) {
        const int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    Message message{};
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        message.fill(round);
        mproc::bench::write_all(fd.get(), &message, sizeof message, what);
        if (!read_whole(fd.get(), &message, sizeof message, what) || !message.carries(round))
            throw BenchFailure(std::string(what) + ": wrong or missing reply");
        ++round;
        sampler.lap();
    }
    fd.close();
    peer.join();
    sampler.report(state);
}

// ---- stream ----

void mproc_stream(benchmark::State& state, Transport transport) {
    const char* what = "listener stream";
    Listener listener(listen_address(transport), 1, kKey);
    const SocketAddress address = listener.address();
    Peer peer("listener stream peer", [&] {
        listener.close();
        FdConnection connection = mproc::Client(address, kKey, std::chrono::seconds(10));
        std::vector<Message> batch(kBatch);
        std::vector<std::span<const std::byte>> spans;
        for (const Message& message : batch) spans.push_back(bytes_of(message));
        try {
            for (std::uint64_t next = 0;;) {
                for (Message& message : batch) message.fill(next++);
                connection.send_many(spans);
            }
        } catch (const mproc::BrokenPipe&) {
            // The benchmark closed its end: done.
        }
    });
    FdConnection connection = listener.accept();
    Message message{};
    std::uint64_t expected = 0;
    for (auto _ : state) receive_checked(connection, message, expected++, what);
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(sizeof(Message)));
    connection.close();
    peer.join();
}

void socket_stream(benchmark::State& state, Transport transport) {
    const char* what = "socket stream";
    PlainListener listener = plain_listener(transport);
    Peer peer("socket stream peer", [&] {
        UniqueFd fd = plain_connect(listener, transport);
        Message message{};
        for (std::uint64_t next = 0;; ++next) {
            message.fill(next);
            if (::send(fd.get(), &message, sizeof message, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof message))
                return;  // the benchmark closed its end (a short send would only come with an error)
        }
    });
    UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    // Read ahead as FdConnection does: 64 KiB at a time, messages taken out of the buffer in place.
    std::vector<char> buffer(64 * 1024);
    std::size_t begin = 0;
    std::size_t end = 0;
    std::uint64_t expected = 0;
    for (auto _ : state) {
        if (end - begin < sizeof(Message)) {
            std::memmove(buffer.data(), buffer.data() + begin, end - begin);
            end -= begin;
            begin = 0;
            while (end < sizeof(Message)) {
                const std::size_t got = mproc::bench::read_some(fd.get(), buffer.data() + end, buffer.size() - end, what);
                if (got == 0) throw BenchFailure(std::string(what) + ": the peer stopped");
                end += got;
            }
        }
        Message message;
        std::memcpy(&message, buffer.data() + begin, sizeof message);
        begin += sizeof message;
        if (!message.carries(expected++)) throw BenchFailure(std::string(what) + ": a message lost or torn");
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(sizeof(Message)));
    fd.close();
    peer.join();
}

// ---- connect + handshake ----

void mproc_connect(benchmark::State& state, Transport transport) {
    Listener listener(listen_address(transport), 64, kKey);
    const SocketAddress address = listener.address();
    const std::string ready = "r";
    Peer peer("listener accept peer", [&] {
        for (;;) {
            FdConnection connection = listener.accept();
            connection.send_bytes(std::as_bytes(std::span(ready.data(), ready.size())));
            try {
                if (!connection.recv_bytes().empty()) return;  // the benchmark's "stop"
            } catch (const mproc::Closed&) {
            }
        }
    });
    listener.close();  // the peer's copy keeps listening
    LatencySampler sampler(state);
    sampler.start();
    for (auto _ : state) {
        FdConnection connection = mproc::Client(address, kKey, std::chrono::seconds(10));
        if (connection.recv_bytes().size() != 1) throw BenchFailure("listener connect: no ready byte");
        sampler.lap();
    }
    FdConnection last = mproc::Client(address, kKey, std::chrono::seconds(10));
    last.recv_bytes();
    const std::string stop = "stop";
    last.send_bytes(std::as_bytes(std::span(stop.data(), stop.size())));
    peer.join();
    sampler.report(state);
}

void socket_connect(benchmark::State& state) {
    PlainListener listener = plain_listener(Transport::tcp);
    Peer peer("socket accept peer", [&] {
        for (;;) {
            UniqueFd fd(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
            char byte = 'r';
            mproc::bench::write_all(fd.get(), &byte, 1, "socket accept peer");
            if (mproc::bench::read_some(fd.get(), &byte, 1, "socket accept peer") == 1) return;  // "stop"
        }
    });
    listener.fd.close();
    LatencySampler sampler(state);
    sampler.start();
    for (auto _ : state) {
        UniqueFd fd = plain_connect(listener, Transport::tcp);
        char byte = 0;
        if (mproc::bench::read_some(fd.get(), &byte, 1, "socket connect") != 1)
            throw BenchFailure("socket connect: no ready byte");
        sampler.lap();
    }
    UniqueFd last = plain_connect(listener, Transport::tcp);
    char byte = 0;
    mproc::bench::read_some(last.get(), &byte, 1, "socket connect");
    mproc::bench::write_all(last.get(), "s", 1, "socket connect");
    peer.join();
    sampler.report(state);
}

// ---- ZeroMQ PAIR over ipc:// and tcp:// ----

#ifdef MPROC_BENCH_HAVE_ZMQ

using mproc::bench::ZmqPair;

// The endpoint of one benchmark: ipc:// in a directory removed afterwards, or tcp:// on a free port.
class ZmqEndpoint {
public:
    explicit ZmqEndpoint(Transport transport) {
        if (transport == Transport::tcp) endpoint_ = mproc::bench::free_tcp_endpoint();
        else endpoint_ = directory_.emplace().endpoint();
    }
    const std::string& get() const { return endpoint_; }

private:
    std::optional<mproc::bench::EndpointDirectory> directory_;
    std::string endpoint_;
};

std::span<std::byte> writable_bytes_of(Message& message) { return std::as_writable_bytes(std::span(&message, 1)); }

void zmq_receive_checked(ZmqPair& socket, Message& message, std::uint64_t expected, Peer& peer, const char* what) {
    const std::size_t got = mproc::bench::zmq_receive_from_peer(socket, writable_bytes_of(message), peer, what);
    if (got != sizeof(Message) || !message.carries(expected))
        throw BenchFailure(std::string(what) + ": expected message " + std::to_string(expected));
}

void zmq_round_trip(benchmark::State& state, Transport transport) {
    const char* what = "zmq round trip";
    const ZmqEndpoint endpoint(transport);
    Peer peer("zmq round-trip peer", [&] {
        ZmqPair socket(endpoint.get(), false, 4, -1, -1);
        Message message{};
        for (std::uint64_t expected = 0;; ++expected) {
            const std::size_t got = socket.receive(reinterpret_cast<std::byte*>(&message), sizeof message,
                                                   "zmq round-trip peer").value_or(0);
            if (got == 0) return;  // the benchmark's empty message: stop
            if (got != sizeof message || !message.carries(expected))
                throw BenchFailure("zmq round-trip peer: expected message " + std::to_string(expected));
            socket.send(reinterpret_cast<const std::byte*>(&message), sizeof message, "zmq round-trip peer");
        }
    });
    ZmqPair socket(endpoint.get(), true, 4, -1, mproc::bench::kZmqWaitSliceMs);
    Message message{};
    LatencySampler sampler(state);
    std::uint64_t round = 0;
    sampler.start();
    for (auto _ : state) {
        message.fill(round);
        socket.send(reinterpret_cast<const std::byte*>(&message), sizeof message, what);
        zmq_receive_checked(socket, message, round, peer, what);
        ++round;
        sampler.lap();
    }
    socket.send(reinterpret_cast<const std::byte*>(&message), 0, "zmq round trip: stop");
    peer.join();
    sampler.report(state);
}

void zmq_stream(benchmark::State& state, Transport transport) {
    const char* what = "zmq stream";
    const ZmqEndpoint endpoint(transport);
    const int high_water_mark = mproc::bench::zmq_high_water_mark(sizeof(Message));
    mproc::bench::SharedBlock<std::atomic<std::uint32_t>> stop;  // set once by this process
    Peer producer("zmq stream peer", [&] {
        // A send that waits longer than a slice returns, so that the producer notices stop.
        ZmqPair socket(endpoint.get(), false, high_water_mark, mproc::bench::kZmqWaitSliceMs, -1);
        Message message{};
        // relaxed: the flag only asks the peer to end soon; nothing is published with it.
        for (std::uint64_t next = 0; stop->load(std::memory_order_relaxed) == 0;) {
            message.fill(next);
            if (socket.send(reinterpret_cast<const std::byte*>(&message), sizeof message, "zmq stream peer")) ++next;
        }
    });
    ZmqPair socket(endpoint.get(), true, high_water_mark, -1, mproc::bench::kZmqWaitSliceMs);
    Message message{};
    std::uint64_t expected = 0;
    for (auto _ : state) zmq_receive_checked(socket, message, expected++, producer, what);
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(sizeof(Message)));
    stop->store(1, std::memory_order_relaxed);  // relaxed: see the peer's load
    producer.join();
}

void zmq_round_trip_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { zmq_round_trip(state, transport); });
}
void zmq_stream_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { zmq_stream(state, transport); });
}

BENCHMARK_CAPTURE(zmq_round_trip_entry, ipc, Transport::unix_socket)->Name("BM_ListenerRoundTrip64/zmq_ipc")->UseRealTime();
BENCHMARK_CAPTURE(zmq_round_trip_entry, tcp, Transport::tcp)->Name("BM_ListenerRoundTrip64/zmq_tcp")->UseRealTime();
BENCHMARK_CAPTURE(zmq_stream_entry, ipc, Transport::unix_socket)->Name("BM_ListenerStream64/zmq_ipc")->UseRealTime();
BENCHMARK_CAPTURE(zmq_stream_entry, tcp, Transport::tcp)->Name("BM_ListenerStream64/zmq_tcp")->UseRealTime();

#endif  // MPROC_BENCH_HAVE_ZMQ

// ---- Python's Listener/Client ----

void python_timed(benchmark::State& state, const char* mode, Transport transport) {
    const auto figures = mproc::bench::run_python_peer(
        state, kPythonListenerScript,
        std::string(mode) + (transport == Transport::tcp ? " tcp " : " unix ") + std::to_string(state.max_iterations),
        4);
    if (!figures) return;
    mproc::bench::report_python_round_trips(state, *figures);
}

void python_round_trip_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { python_timed(state, "roundtrip", transport); });
}
void python_connect_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { python_timed(state, "connect", transport); });
}

void mproc_round_trip_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { mproc_round_trip(state, transport); });
}
void socket_round_trip_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { socket_round_trip(state, transport); });
}
void mproc_stream_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { mproc_stream(state, transport); });
}
void socket_stream_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { socket_stream(state, transport); });
}
void mproc_connect_entry(benchmark::State& state, Transport transport) {
    mproc::bench::run_guarded(state, [&] { mproc_connect(state, transport); });
}
void socket_connect_entry(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { socket_connect(state); });
}

BENCHMARK_CAPTURE(mproc_round_trip_entry, unix, Transport::unix_socket)
    ->Name("BM_ListenerRoundTrip64/mproc_unix")->UseRealTime();
BENCHMARK_CAPTURE(socket_round_trip_entry, unix, Transport::unix_socket)
    ->Name("BM_ListenerRoundTrip64/socket_unix")->UseRealTime();
BENCHMARK_CAPTURE(mproc_round_trip_entry, tcp, Transport::tcp)->Name("BM_ListenerRoundTrip64/mproc_tcp")->UseRealTime();
BENCHMARK_CAPTURE(socket_round_trip_entry, tcp, Transport::tcp)->Name("BM_ListenerRoundTrip64/socket_tcp")->UseRealTime();
BENCHMARK_CAPTURE(python_round_trip_entry, unix, Transport::unix_socket)
    ->Name("BM_ListenerRoundTrip64/python_unix")->UseManualTime();
BENCHMARK_CAPTURE(python_round_trip_entry, tcp, Transport::tcp)->Name("BM_ListenerRoundTrip64/python_tcp")->UseManualTime();
BENCHMARK_CAPTURE(mproc_stream_entry, unix, Transport::unix_socket)->Name("BM_ListenerStream64/mproc_unix")->UseRealTime();
BENCHMARK_CAPTURE(socket_stream_entry, unix, Transport::unix_socket)
    ->Name("BM_ListenerStream64/socket_unix")->UseRealTime();
BENCHMARK_CAPTURE(mproc_stream_entry, tcp, Transport::tcp)->Name("BM_ListenerStream64/mproc_tcp")->UseRealTime();
BENCHMARK_CAPTURE(socket_stream_entry, tcp, Transport::tcp)->Name("BM_ListenerStream64/socket_tcp")->UseRealTime();
BENCHMARK_CAPTURE(mproc_connect_entry, unix, Transport::unix_socket)
    ->Name("BM_ListenerConnect/mproc_unix")->UseRealTime();
BENCHMARK_CAPTURE(mproc_connect_entry, tcp, Transport::tcp)->Name("BM_ListenerConnect/mproc_tcp")->UseRealTime();
BENCHMARK(socket_connect_entry)->Name("BM_ListenerConnect/socket_tcp")->UseRealTime();
BENCHMARK_CAPTURE(python_connect_entry, unix, Transport::unix_socket)
    ->Name("BM_ListenerConnect/python_unix")->UseManualTime();
BENCHMARK_CAPTURE(python_connect_entry, tcp, Transport::tcp)->Name("BM_ListenerConnect/python_tcp")->UseManualTime();

}  // namespace
