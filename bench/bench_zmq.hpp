// bench/bench_zmq.hpp — ZeroMQ as a peer of the benchmarks that move messages between processes
// (bench_pipe: PAIR over ipc://; bench_listener: PAIR over ipc:// and tcp://). Built only with libzmq
// (MPROC_BENCH_HAVE_ZMQ, bench/meson.build).
//
// Each process makes its own context after the fork (a context must not cross one). This process binds,
// the peer connects (ZMQ_RECONNECT_IVL 1 ms: the peer may try before the bind). Receives wait at most
// kZmqWaitSliceMs at a time, so that a peer that died is noticed and a stall ends the benchmark.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zmq.h>

#include "bench_support.hpp"
#include "mproc/error.hpp"

namespace mproc::bench {

inline constexpr int kZmqWaitSliceMs = 100;

[[noreturn]] inline void throw_zmq_error(const std::string& what) {
    throw BenchFailure(what + ": " + zmq_strerror(zmq_errno()));
}

// A temporary directory holding the ipc:// endpoint, removed with it.
class EndpointDirectory {
public:
    EndpointDirectory() {
        std::string pattern = "/tmp/mproc-bench-zmq-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw mproc::SystemError("zmq: mkdtemp " + pattern, errno);
        directory_ = pattern;
    }
    EndpointDirectory(const EndpointDirectory&) = delete;
    EndpointDirectory& operator=(const EndpointDirectory&) = delete;
    ~EndpointDirectory() {
        ::unlink(socket_path().c_str());
        ::rmdir(directory_.c_str());
    }
    std::string endpoint() const { return "ipc://" + socket_path(); }

private:
    std::string socket_path() const { return directory_ + "/pair"; }
    std::string directory_;
};

// One context and one PAIR socket of this process, closed with linger 0 and terminated on destruction.
class ZmqPair {
public:
    // high_water_mark: messages queued on each side before a send waits (ZMQ_SNDHWM/ZMQ_RCVHWM).
    ZmqPair(const std::string& endpoint, bool bind, int high_water_mark, int send_timeout_ms, int receive_timeout_ms)
        : context_(zmq_ctx_new()) {
        if (context_ == nullptr) throw_zmq_error("zmq_ctx_new");
        try {
            open(endpoint, bind, high_water_mark, send_timeout_ms, receive_timeout_ms);
        } catch (...) {
            release();
            throw;
        }
    }
    ZmqPair(const ZmqPair&) = delete;
    ZmqPair& operator=(const ZmqPair&) = delete;
    ~ZmqPair() { release(); }

    // zmq_send of the whole buffer; false when the send timed out (the peer's queue is full).
    bool send(const std::byte* bytes, std::size_t size, const char* what) {
        for (;;) {
            if (zmq_send(socket_, bytes, size, 0) >= 0) return true;
            if (zmq_errno() == EAGAIN) return false;
            if (zmq_errno() != EINTR) throw_zmq_error(std::string(what) + ": zmq_send");
        }
    }

    // zmq_recv into buffer; the message's size (zmq_recv truncates a longer one but reports its size), or
    // nullopt when the receive timed out.
    std::optional<std::size_t> receive(std::byte* buffer, std::size_t capacity, const char* what) {
        for (;;) {
            const int got = zmq_recv(socket_, buffer, capacity, 0);
            if (got >= 0) return static_cast<std::size_t>(got);
            if (zmq_errno() == EAGAIN) return std::nullopt;
            if (zmq_errno() != EINTR) throw_zmq_error(std::string(what) + ": zmq_recv");
        }
    }

private:
    void open(const std::string& endpoint, bool bind, int high_water_mark, int send_timeout_ms,
              int receive_timeout_ms) {
        socket_ = zmq_socket(context_, ZMQ_PAIR);
        if (socket_ == nullptr) throw_zmq_error("zmq_socket(ZMQ_PAIR)");
        set_option(ZMQ_LINGER, 0, "ZMQ_LINGER");  // closing drops what is queued: the benchmark is over
        set_option(ZMQ_RECONNECT_IVL, 1, "ZMQ_RECONNECT_IVL");  // the peer may connect before the bind
        set_option(ZMQ_SNDHWM, high_water_mark, "ZMQ_SNDHWM");
        set_option(ZMQ_RCVHWM, high_water_mark, "ZMQ_RCVHWM");
        set_option(ZMQ_SNDTIMEO, send_timeout_ms, "ZMQ_SNDTIMEO");
        set_option(ZMQ_RCVTIMEO, receive_timeout_ms, "ZMQ_RCVTIMEO");
        if ((bind ? zmq_bind(socket_, endpoint.c_str()) : zmq_connect(socket_, endpoint.c_str())) != 0)
            throw_zmq_error((bind ? "zmq_bind " : "zmq_connect ") + endpoint);
    }

    void release() noexcept {
        if (socket_ != nullptr) zmq_close(socket_);
        socket_ = nullptr;
        zmq_ctx_term(context_);
    }

    void set_option(int option, int value, const char* name) {
        if (zmq_setsockopt(socket_, option, &value, sizeof value) != 0)
            throw_zmq_error(std::string("zmq_setsockopt ") + name);
    }

    void* context_;
    void* socket_ = nullptr;
};

// About 4 MiB queued per side, at most ZeroMQ's default of 1000 messages.
inline int zmq_high_water_mark(std::size_t size) {
    return static_cast<int>(std::clamp<std::size_t>((std::size_t{4} << 20) / size, 4, 1000));
}

// A receive in this process: waits in slices, checking the peer between them, up to kStallLimit.
inline std::size_t zmq_receive_from_peer(ZmqPair& socket, std::span<std::byte> buffer, Peer& peer, const char* what) {
    const std::int64_t started_ns = monotonic_now_ns();
    for (;;) {
        if (const std::optional<std::size_t> got = socket.receive(buffer.data(), buffer.size(), what)) return *got;
        peer.throw_if_ended();
        if (monotonic_now_ns() - started_ns > std::chrono::nanoseconds(kStallLimit).count())
            throw BenchFailure(std::string(what) + ": no message from the peer within the stall limit");
    }
}


// A tcp:// endpoint on 127.0.0.1 with a port the kernel just called free (bound to port 0 and released):
// the fork comes between choosing the port and ZeroMQ's bind, so it cannot be zmq_bind's own "*".
inline std::string free_tcp_endpoint() {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    if (::bind(probe.get(), reinterpret_cast<const sockaddr*>(&address), size) != 0 ||
        ::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&address), &size) != 0)
        throw mproc::SystemError("zmq: choosing a free TCP port", errno);
    return "tcp://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
}

}  // namespace mproc::bench
