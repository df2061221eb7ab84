// bench/bench_queue.cpp — mproc::Queue between processes, beside the other ways Linux offers to move a
// message from one process to another, each measured here between this process and forked peers:
//   BM_Queue1P1C_<system>/<bytes>   one producer peer streams messages of <bytes> bytes to this process
//       mproc_spsc, mproc_mpmc  mproc::Queue<Message> (blocking put/get)
//       pipe                    one write() per message, read() of exactly one message
//       seqpacket               an AF_UNIX SOCK_SEQPACKET socketpair, one send/recv per message
//       posix_mq                a POSIX message queue (mq_send/mq_receive); sizes above
//                               /proc/sys/fs/mqueue/msgsize_max are skipped, with the reason
//       boost                   boost::interprocess::message_queue (when Boost is found)
//       python                  multiprocessing.Queue, timed inside python3 (bench/peers/python_queue.py)
//       iceoryx                 iceoryx 2.0 publish/subscribe, zero-copy (loan, write in place, publish;
//                               take, read in place), both ends forked peers, timed in the subscriber
//                               (manual time; when iceoryx is found, skipped when no RouDi daemon runs)
//   BM_Queue2P2C_<system>/<bytes>   two producer peers, two consumers (this process and a peer): mproc_mpmc,
//                                   pipe (up to PIPE_BUF: larger writes are not atomic), seqpacket, posix_mq,
//                                   boost; items_per_second counts what both consumers got
//   BM_QueueRoundTrip_spin/<system>      a 64-byte message to a peer and back, both sides polling with
//                                        try_get (mproc_spsc, mproc_mpmc; iceoryx: take()) — beside the
//                                        cache-line ceiling
//   BM_QueueRoundTrip_blocking/<system>  the same with a get() that sleeps until the message comes (mproc_spsc,
//                                        mproc_mpmc: the adaptive spin turned off on both sides, so every
//                                        get() finds nothing and sleeps in FUTEX_WAIT; pipe: read(); iceoryx:
//                                        a WaitSet) — beside the futex ping-pong ceiling, which does the same
//                                        work: a sleep and a wake-up on each side per round trip
//   BM_QueueRoundTrip_spin_then_sleep/<system>  mproc_spsc, mproc_mpmc: the plain get(), which spins on its
//                                        adaptive budget before it sleeps and usually catches the reply
//                                        spinning: what a ping-ponging application sees, not a wake-up
//   BM_QueueLarge/<system>/<bytes>  messages of 64 KiB and 16 MiB from one producer peer, in bytes per second,
//                                   beside memcpy_ceiling (one memcpy of the message in this process, the
//                                   same run): mproc_spsc, mproc_mpmc (ByteQueue with 64-byte slots, so every
//                                   message goes through the spill arena: copied in by the producer, out by
//                                   this process, get_into() reusing its buffer), pipe (one write of the whole
//                                   message, reads of exactly it), boost (message_queue of that size)
// Every round trip reports sleeps_per_rt and peer_sleeps_per_rt (voluntary context switches per round
// trip, LatencySampler): about 1 and 1 where both sides sleep, about 0 where a spin catches the reply;
// and the preemptions and user-space CPU time of each side, by which the blocking rows are judged.
// Every message carries its sequence number in its first and last 8-byte words and every receiver checks
// them (per producer in 2P2C, where two consumers each see an increasing subsequence of each producer's
// messages). Peers are forked, and queues created, before the timed loop. The raw SPSC ring ceiling these
// streams are compared with is measured here too (BM_QueueCeiling_RawSpscRing/64, the code of
// bench_ceilings' BM_Ceiling_RawSpscRing), next to the SPSC stream.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/error.hpp"
#include "mproc/queue.hpp"

#ifdef MPROC_BENCH_HAVE_BOOST
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#endif

#ifdef MPROC_BENCH_HAVE_ICEORYX
#include <iceoryx_hoofs/log/logmanager.hpp>
#include <iceoryx_hoofs/platform/platform_settings.hpp>
#include <iceoryx_posh/popo/publisher.hpp>
#include <iceoryx_posh/popo/subscriber.hpp>
#include <iceoryx_posh/popo/wait_set.hpp>
#include <iceoryx_posh/runtime/posh_runtime.hpp>
#endif

namespace {

using namespace std::chrono_literals;
using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::SharedBlock;
using mproc::bench::Spinner;

const std::string kPythonQueueScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_queue.py";

// A queue holds at most this many bytes of messages (and at most kMaxSlots messages), so that a stream of
// 64 KiB messages does not spend its set-up faulting in a 64 MiB segment.
constexpr std::size_t kQueueBytes = std::size_t{4} << 20;
constexpr std::size_t kMaxSlots = 1024;
constexpr std::size_t queue_capacity(std::size_t bytes) {
    return std::clamp(kQueueBytes / bytes, std::size_t{2}, kMaxSlots);
}

// kBytes of 8-byte words: the producer's id in the top 8 bits of the first and last words, its sequence
// number below; the receiver looks at both ends to tell a lost, repeated or torn message.
template <std::size_t kBytes>
struct Message {
    static_assert(kBytes % sizeof(std::uint64_t) == 0);
    static constexpr std::size_t kWords = kBytes / sizeof(std::uint64_t);
    std::array<std::uint64_t, kWords> words;

    static std::uint64_t tag(std::uint64_t producer, std::uint64_t sequence) noexcept {
        return producer << 56 | sequence;
    }
    void fill(std::uint64_t producer, std::uint64_t sequence) noexcept {
        words[0] = words[kWords - 1] = tag(producer, sequence);
    }
    std::uint64_t producer() const noexcept { return words[0] >> 56; }
    std::uint64_t sequence() const noexcept { return words[0] & ((std::uint64_t{1} << 56) - 1); }
    bool whole() const noexcept { return words[0] == words[kWords - 1]; }
};

// The receiver's check: per producer, sequence numbers strictly increase (1P1C: by exactly one).
class SequenceCheck {
public:
    SequenceCheck(const char* stream, bool consecutive) : stream_(stream), consecutive_(consecutive) {}

    template <std::size_t kBytes>
    void check(const Message<kBytes>& message) {
        const std::uint64_t producer = message.producer();
        if (!message.whole() || producer >= next_.size())
            throw BenchFailure(std::string(stream_) + ": a torn or foreign message (first word " +
                               std::to_string(message.words[0]) + ", last " +
                               std::to_string(message.words[Message<kBytes>::kWords - 1]) + ")");
        const std::uint64_t sequence = message.sequence();
        if (consecutive_ ? sequence != next_[producer] : sequence < next_[producer])
            throw BenchFailure(std::string(stream_) + ": from producer " + std::to_string(producer) + " expected " +
                               (consecutive_ ? "" : "at least ") + "message " + std::to_string(next_[producer]) +
                               ", received " + std::to_string(sequence));
        next_[producer] = sequence + 1;
    }

private:
    const char* stream_;
    bool consecutive_;
    std::array<std::uint64_t, 2> next_{};
};

struct StopFlag {
    alignas(128) std::atomic<std::uint32_t> stop;  // set once by the benchmark process
};

// relaxed (both): the flag only asks a peer to end soon; no data is published with it.
bool stop_requested(const StopFlag& flag) noexcept { return flag.stop.load(std::memory_order_relaxed) != 0; }
void request_stop(StopFlag& flag) noexcept { flag.stop.store(1, std::memory_order_relaxed); }

// A peer that fails closes the mproc queues it uses on its way out, so that the benchmark process, blocked
// in get() (which has no stall limit, unlike the Spinner), wakes with Closed and reports the peer's reason.
template <class Queue>
class CloseOnFailure {
public:
    explicit CloseOnFailure(Queue& queue) noexcept : queue_(queue), exceptions_(std::uncaught_exceptions()) {}
    CloseOnFailure(const CloseOnFailure&) = delete;
    CloseOnFailure& operator=(const CloseOnFailure&) = delete;
    ~CloseOnFailure() {
        if (std::uncaught_exceptions() > exceptions_) queue_.close();
    }

private:
    Queue& queue_;
    int exceptions_;
};

// Closes `queue` as soon as one of `peers` ends, from a thread asleep in poll() on their pidfds. A peer that
// fails by an exception closes the queue itself (CloseOnFailure); one killed by a signal closes nothing, and
// the benchmark process's untimed get() would wait for it for ever. Closed, that get() throws Closed and
// get_from_peer() reports the peer's reason. The measured calls stay the untimed get() their rows name.
// Declared after the queue and the peers, so that it stops (destructor: an eventfd write) before they go.
template <class M>
class CloseWhenAPeerEnds {
public:
    CloseWhenAPeerEnds(mproc::Queue<M>& queue, std::initializer_list<const Peer*> peers)
        : stop_(::eventfd(0, EFD_CLOEXEC)) {
        if (stop_ < 0) throw mproc::SystemError("CloseWhenAPeerEnds: eventfd", errno);
        std::vector<pollfd> watched{{stop_, POLLIN, 0}};
        for (const Peer* peer : peers) watched.push_back({peer->sentinel(), POLLIN, 0});
        try {
            watcher_ = std::thread([&queue, watched]() mutable {
                int ready;
                while ((ready = ::poll(watched.data(), watched.size(), -1)) < 0 && errno == EINTR) {
                }
                // A failed poll() stops the watch without closing: a false failure would hide the real run.
                if (ready > 0 && watched[0].revents == 0) queue.close();  // a peer ended, not the stop request
            });
        } catch (...) {
            ::close(stop_);
            throw;
        }
    }
    CloseWhenAPeerEnds(const CloseWhenAPeerEnds&) = delete;
    CloseWhenAPeerEnds& operator=(const CloseWhenAPeerEnds&) = delete;
    ~CloseWhenAPeerEnds() {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t written = ::write(stop_, &one, sizeof one);
        watcher_.join();
        ::close(stop_);
    }

private:
    int stop_;
    std::thread watcher_;
};

// get() in the benchmark process: a queue closed while the benchmark still runs means a peer failed (or
// ended: see CloseWhenAPeerEnds).
template <class M>
M get_from_peer(mproc::Queue<M>& queue, Peer& peer, const char* stream) {
    try {
        return queue.get();
    } catch (const mproc::Closed&) {
        peer.join();  // throws with the peer's reason
        throw BenchFailure(std::string(stream) + ": the queue was closed while the benchmark ran");
    }
}

void count_stream(benchmark::State& state, std::int64_t items, std::size_t bytes) {
    state.SetItemsProcessed(items);
    state.SetBytesProcessed(items * static_cast<std::int64_t>(bytes));
}

timespec deadline_after(std::chrono::nanoseconds wait) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);  // mq_timedsend and mq_timedreceive take CLOCK_REALTIME
    const std::int64_t total = now.tv_nsec + wait.count();
    now.tv_sec += static_cast<time_t>(total / 1'000'000'000);
    now.tv_nsec = static_cast<long>(total % 1'000'000'000);
    return now;
}

// ---------------------------------------------------------------------------------------------------------
// mproc::Queue, one producer peer. Closing the queue after the loop ends the producer (its put throws
// Closed); the messages left in the queue are simply dropped with it.

template <std::size_t kBytes>
void mproc_stream(benchmark::State& state, mproc::QueueKind kind) {
    using M = Message<kBytes>;
    mproc::Queue<M> queue(std::bit_ceil(queue_capacity(kBytes)), kind);
    Peer producer("mproc queue producer", [&] {
        const CloseOnFailure close_on_failure(queue);
        M message{};
        for (std::uint64_t sequence = 0;; ++sequence) {
            message.fill(0, sequence);
            try {
                queue.put(message);
            } catch (const mproc::Closed&) {
                return;
            }
        }
    });
    const CloseWhenAPeerEnds<M> close_when_the_producer_ends(queue, {&producer});
    SequenceCheck check("mproc queue stream", true);
    for (auto _ : state) check.check(get_from_peer(queue, producer, "mproc queue stream"));
    queue.close();
    producer.join();
    count_stream(state, state.iterations(), kBytes);
}

// ---------------------------------------------------------------------------------------------------------
// A pipe: the producer writes each message with one write() (above PIPE_BUF a write may be split, which
// only one writer makes harmless); the consumer reads exactly one message. After the loop the consumer
// asks the producer to stop and reads until end of file, so a producer blocked on a full pipe returns.

void read_exactly(int fd, void* bytes, std::size_t size, const char* what, Peer& peer) {
    auto* target = static_cast<std::byte*>(bytes);
    for (std::size_t done = 0; done < size;) {
        const std::size_t got = mproc::bench::read_some(fd, target + done, size - done, what);
        if (got == 0) {
            peer.join();  // throws with the producer's reason when it failed
            throw BenchFailure(std::string(what) + ": the producer closed its end");
        }
        done += got;
    }
}

template <std::size_t kBytes>
void pipe_stream(benchmark::State& state) {
    using M = Message<kBytes>;
    SharedBlock<StopFlag> control;
    mproc::bench::Pipe pipe = mproc::bench::make_pipe("pipe stream");
    Peer producer("pipe producer", [&] {
        pipe.read_end.close();
        auto message = std::make_unique<M>();
        for (std::uint64_t sequence = 0; !stop_requested(*control); ++sequence) {
            message->fill(0, sequence);
            mproc::bench::write_all(pipe.write_end.get(), message.get(), kBytes, "pipe producer");
        }
    });
    pipe.write_end.close();
    auto message = std::make_unique<M>();
    SequenceCheck check("pipe stream", true);
    for (auto _ : state) {
        read_exactly(pipe.read_end.get(), message.get(), kBytes, "pipe stream", producer);
        check.check(*message);
    }
    request_stop(*control);
    std::vector<std::byte> drain(64 * 1024);
    while (mproc::bench::read_some(pipe.read_end.get(), drain.data(), drain.size(), "pipe drain") != 0) {
    }
    producer.join();
    count_stream(state, state.iterations(), kBytes);
}

// ---------------------------------------------------------------------------------------------------------
// An AF_UNIX SOCK_SEQPACKET socketpair: message boundaries kept by the kernel, one send() and one recv()
// per message. Stopped as the pipe.

struct SeqpacketPair {
    mproc::bench::UniqueFd consumer_end;
    mproc::bench::UniqueFd producer_end;
};

SeqpacketPair make_seqpacket_pair(const char* what) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0)
        throw mproc::SystemError(std::string(what) + ": socketpair", errno);
    SeqpacketPair pair{mproc::bench::UniqueFd(ends[0]), mproc::bench::UniqueFd(ends[1])};
    // The default send buffer (about 208 KiB) holds three 64 KiB messages; let it hold a few more.
    const int buffer_bytes = 1 << 20;
    ::setsockopt(pair.producer_end.get(), SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
    return pair;
}

template <std::size_t kBytes>
void seqpacket_stream(benchmark::State& state) {
    using M = Message<kBytes>;
    SeqpacketPair pair = make_seqpacket_pair("seqpacket stream");
    mproc::bench::UniqueFd& consumer_end = pair.consumer_end;
    mproc::bench::UniqueFd& producer_end = pair.producer_end;
    SharedBlock<StopFlag> control;
    Peer producer("seqpacket producer", [&] {
        consumer_end.close();
        auto message = std::make_unique<M>();
        for (std::uint64_t sequence = 0; !stop_requested(*control); ++sequence) {
            message->fill(0, sequence);
            ssize_t sent;
            do sent = ::send(producer_end.get(), message.get(), kBytes, MSG_NOSIGNAL);
            while (sent < 0 && errno == EINTR);
            if (sent != static_cast<ssize_t>(kBytes)) throw mproc::SystemError("seqpacket producer: send", errno);
        }
    });
    producer_end.close();
    auto message = std::make_unique<M>();
    SequenceCheck check("seqpacket stream", true);
    const auto receive = [&] {
        ssize_t got;
        do got = ::recv(consumer_end.get(), message.get(), kBytes, 0);
        while (got < 0 && errno == EINTR);
        if (got < 0) throw mproc::SystemError("seqpacket stream: recv", errno);
        return static_cast<std::size_t>(got);
    };
    for (auto _ : state) {
        const std::size_t got = receive();
        if (got != kBytes) {
            if (got == 0) producer.join();
            throw BenchFailure("seqpacket stream: a message of " + std::to_string(got) + " bytes, expected " +
                               std::to_string(kBytes));
        }
        check.check(*message);
    }
    request_stop(*control);
    while (receive() != 0) {
    }
    producer.join();
    count_stream(state, state.iterations(), kBytes);
}

// ---------------------------------------------------------------------------------------------------------
// A POSIX message queue, opened and unlinked before the fork (the descriptor is inherited). The producer
// sends with a 10 ms deadline so that it notices the stop flag while the queue is full.

std::optional<long> read_proc_number(const char* path) {
    std::ifstream file(path);
    long value = 0;
    if (!(file >> value)) return std::nullopt;
    return value;
}

// A POSIX message queue of kBytes messages, open (and already unlinked) in this process; nullopt, with the
// benchmark skipped and the reason given, when the system's limits or mq_open refuse it.
class PosixMq {
public:
    explicit PosixMq(mqd_t queue) noexcept : queue_(queue) {}
    PosixMq(PosixMq&& other) noexcept : queue_(std::exchange(other.queue_, static_cast<mqd_t>(-1))) {}
    PosixMq(const PosixMq&) = delete;
    PosixMq& operator=(const PosixMq&) = delete;
    ~PosixMq() {
        if (queue_ != static_cast<mqd_t>(-1)) ::mq_close(queue_);
    }
    mqd_t get() const noexcept { return queue_; }

private:
    mqd_t queue_;
};

std::optional<PosixMq> open_posix_mq(benchmark::State& state, std::size_t bytes) {
    const std::optional<long> size_limit = read_proc_number("/proc/sys/fs/mqueue/msgsize_max");
    if (size_limit && static_cast<long>(bytes) > *size_limit) {
        mproc::bench::skip(state, "POSIX mq: messages of " + std::to_string(bytes) +
                                      " bytes exceed /proc/sys/fs/mqueue/msgsize_max (" +
                                      std::to_string(*size_limit) + ")");
        return std::nullopt;
    }
    mq_attr attributes{};
    attributes.mq_maxmsg = std::min<long>(read_proc_number("/proc/sys/fs/mqueue/msg_max").value_or(10), 64);
    attributes.mq_msgsize = static_cast<long>(bytes);
    const std::string name = "/mproc-bench-queue-" + std::to_string(::getpid());
    const mqd_t queue = ::mq_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &attributes);
    if (queue == static_cast<mqd_t>(-1)) {
        mproc::bench::skip(state, "POSIX mq: mq_open failed: " + std::string(std::strerror(errno)));
        return std::nullopt;
    }
    ::mq_unlink(name.c_str());
    return PosixMq(queue);
}

// The producer loop of every POSIX mq stream: sends with a 10 ms deadline until asked to stop.
template <std::size_t kBytes>
void posix_mq_produce(mqd_t queue, const StopFlag& control, std::uint64_t producer_id) {
    auto message = std::make_unique<Message<kBytes>>();
    for (std::uint64_t sequence = 0; !stop_requested(control);) {
        message->fill(producer_id, sequence);
        const timespec deadline = deadline_after(10ms);
        if (::mq_timedsend(queue, reinterpret_cast<const char*>(message.get()), kBytes, 0, &deadline) == 0)
            ++sequence;
        else if (errno != ETIMEDOUT && errno != EINTR)
            throw mproc::SystemError("POSIX mq producer: mq_timedsend", errno);
    }
}

// One receive with a deadline `wait` from now: false when none came in time.
template <std::size_t kBytes>
bool posix_mq_receive(mqd_t queue, Message<kBytes>& message, std::chrono::milliseconds wait) {
    const timespec deadline = deadline_after(wait);
    const ssize_t got = ::mq_timedreceive(queue, reinterpret_cast<char*>(&message), kBytes, nullptr, &deadline);
    if (got < 0) {
        if (errno == ETIMEDOUT || errno == EINTR) return false;
        throw mproc::SystemError("POSIX mq: mq_timedreceive", errno);
    }
    if (got != static_cast<ssize_t>(kBytes))
        throw BenchFailure("POSIX mq: a message of " + std::to_string(got) + " bytes, expected " +
                           std::to_string(kBytes));
    return true;
}

template <std::size_t kBytes>
void posix_mq_stream(benchmark::State& state) {
    using M = Message<kBytes>;
    const std::optional<PosixMq> opened = open_posix_mq(state, kBytes);
    if (!opened) return;
    const mqd_t queue = opened->get();
    SharedBlock<StopFlag> control;
    Peer producer("POSIX mq producer", [&] { posix_mq_produce<kBytes>(queue, *control, 0); });
    auto message = std::make_unique<M>();
    SequenceCheck check("POSIX mq stream", true);
    for (auto _ : state) {
        while (!posix_mq_receive(queue, *message, 1000ms)) producer.throw_if_ended();
        check.check(*message);
    }
    request_stop(*control);
    producer.join();
    count_stream(state, state.iterations(), kBytes);
}

// ---------------------------------------------------------------------------------------------------------
// boost::interprocess::message_queue (a named segment, removed at the end), created before the fork.
// Producers send and the consumer peer receives with 10 ms deadlines, to notice the stop flag.

#ifdef MPROC_BENCH_HAVE_BOOST
namespace bip = boost::interprocess;

class BoostQueue {
public:
    BoostQueue(std::size_t capacity, std::size_t bytes)
        : name_("mproc-bench-queue-boost-" + std::to_string(::getpid())),
          queue_((bip::message_queue::remove(name_.c_str()),
                  std::make_unique<bip::message_queue>(bip::create_only, name_.c_str(), capacity, bytes))) {}
    BoostQueue(const BoostQueue&) = delete;
    BoostQueue& operator=(const BoostQueue&) = delete;
    ~BoostQueue() { bip::message_queue::remove(name_.c_str()); }

    bip::message_queue& operator*() { return *queue_; }

private:
    std::string name_;
    std::unique_ptr<bip::message_queue> queue_;
};

boost::posix_time::ptime boost_deadline_after(std::chrono::milliseconds wait) {
    return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(wait.count());
}

template <std::size_t kBytes>
void boost_produce(bip::message_queue& queue, const StopFlag& control, std::uint64_t producer_id) {
    auto message = std::make_unique<Message<kBytes>>();
    for (std::uint64_t sequence = 0; !stop_requested(control);) {
        message->fill(producer_id, sequence);
        if (queue.timed_send(message.get(), kBytes, 0, boost_deadline_after(10ms))) ++sequence;
    }
}

template <std::size_t kBytes>
bool boost_receive(bip::message_queue& queue, Message<kBytes>& message, std::chrono::milliseconds wait) {
    bip::message_queue::size_type got = 0;
    unsigned int priority = 0;
    if (!queue.timed_receive(&message, kBytes, got, priority, boost_deadline_after(wait))) return false;
    if (got != kBytes)
        throw BenchFailure("Boost message_queue: a message of " + std::to_string(got) + " bytes, expected " +
                           std::to_string(kBytes));
    return true;
}

template <std::size_t kBytes>
void boost_stream(benchmark::State& state) {
    BoostQueue queue(queue_capacity(kBytes), kBytes);
    SharedBlock<StopFlag> control;
    Peer producer("Boost message_queue producer", [&] { boost_produce<kBytes>(*queue, *control, 0); });
    auto message = std::make_unique<Message<kBytes>>();
    SequenceCheck check("Boost message_queue stream", true);
    for (auto _ : state) {
        while (!boost_receive(*queue, *message, 1000ms)) producer.throw_if_ended();
        check.check(*message);
    }
    request_stop(*control);
    producer.join();
    count_stream(state, state.iterations(), kBytes);
}
#endif

// ---------------------------------------------------------------------------------------------------------
// Python's multiprocessing.Queue: one producer process and the consumer (stream), or two producer and two
// consumer processes (two_by_two, items_per_second counting both consumers), timed inside python3.

// mode: "stream" (1P1C) or "two_by_two" (2P2C), as bench/peers/python_queue.py takes them.
void python_queue(benchmark::State& state, const char* mode, std::size_t bytes) {
    const auto figures = mproc::bench::run_python_peer(
        state, kPythonQueueScript,
        std::string(mode) + " " + std::to_string(bytes) + " " + std::to_string(state.max_iterations), 1);
    if (!figures) return;
    mproc::bench::report_python_time(state, (*figures)[0]);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

// ---------------------------------------------------------------------------------------------------------
// 2P2C: two producer peers, the benchmark process and a consumer peer as consumers. The consumer peer
// counts what it got in `consumed`; the benchmark reads the count before and after its loop.

struct TwoConsumers {
    alignas(128) std::atomic<std::uint64_t> consumed;  // written by the consumer peer only
};

// relaxed: a count read for the report; the messages themselves travel through the queue.
std::uint64_t consumed_by_peer(const TwoConsumers& shared) { return shared.consumed.load(std::memory_order_relaxed); }

// What one receive of the consumer peer found.
enum class PeerReceive { message, nothing_yet, end };

// two_by_two()'s default watch: the system's receive notices a dead peer by itself (a timeout, end of file).
struct NoWatch {
    int operator()(const Peer&, const Peer&, const Peer&) const noexcept { return 0; }
};

// The frame every 2P2C system shares. produce(id) runs in each producer peer until the run ends;
// peer_receive(message) is the consumer peer's receive; receive(message, producer0) is this process's,
// which returns only with a message (or throws); end_run() ends the run so that every peer returns. A peer
// that fails ends the run too, so that this process leaves its receive and reports the peer's reason.
// watch(producer0, producer1, consumer), called once the peers run, returns what keeps an eye on them for
// the rest of the run (CloseWhenAPeerEnds for a receive that would otherwise wait for a killed peer).
// items_per_second counts what both consumers got.
template <std::size_t kBytes, class Produce, class PeerReceiveFn, class Receive, class EndRun, class Watch = NoWatch>
void two_by_two(benchmark::State& state, const std::string& system, Produce&& produce,
                PeerReceiveFn&& peer_receive, Receive&& receive, EndRun&& end_run, Watch&& watch = Watch{}) {
    using M = Message<kBytes>;
    SharedBlock<TwoConsumers> shared;
    // end_run() on a failure path must not replace the failure's own reason with one of its own.
    const auto end_run_quietly = [&]() noexcept {
        try {
            end_run();
        } catch (...) {
        }
    };
    const auto ending_run_on_failure = [&](auto&& body) {
        try {
            body();
        } catch (...) {
            end_run_quietly();
            throw;
        }
    };
    Peer producer0(system + " 2P2C producer 0", [&] { ending_run_on_failure([&] { produce(0); }); });
    Peer producer1(system + " 2P2C producer 1", [&] { ending_run_on_failure([&] { produce(1); }); });
    Peer consumer(system + " 2P2C consumer", [&] {
        ending_run_on_failure([&] {
            auto message = std::make_unique<M>();
            const std::string label = system + " 2P2C consumer peer";
            SequenceCheck check(label.c_str(), false);  // keeps the pointer: label outlives it
            for (PeerReceive got; (got = peer_receive(*message)) != PeerReceive::end;) {
                if (got == PeerReceive::nothing_yet) continue;
                check.check(*message);
                // relaxed: see consumed_by_peer().
                shared->consumed.fetch_add(1, std::memory_order_relaxed);
            }
        });
    });
    [[maybe_unused]] const auto watching = watch(producer0, producer1, consumer);
    auto message = std::make_unique<M>();
    const std::string stream = system + " 2P2C stream";
    SequenceCheck check(stream.c_str(), false);  // keeps the pointer: stream outlives it
    const std::uint64_t peer_before = consumed_by_peer(*shared);
    try {
        for (auto _ : state) {
            receive(*message, producer0);
            check.check(*message);
        }
    } catch (...) {
        end_run_quietly();
        consumer.join();  // each join throws the peer's reason when it failed
        producer1.join();
        producer0.join();
        throw;
    }
    const std::uint64_t peer_after = consumed_by_peer(*shared);
    end_run();
    producer0.join();
    producer1.join();
    consumer.join();
    count_stream(state, state.iterations() + static_cast<std::int64_t>(peer_after - peer_before), kBytes);
}

// mproc: blocking put and get; close() ends the run (puts and gets then throw Closed).
template <std::size_t kBytes>
void mproc_two_by_two(benchmark::State& state) {
    using M = Message<kBytes>;
    mproc::Queue<M> queue(std::bit_ceil(queue_capacity(kBytes)), mproc::QueueKind::mpmc);
    two_by_two<kBytes>(
        state, "mproc",
        [&](std::uint64_t producer_id) {
            const CloseOnFailure close_on_failure(queue);
            M message{};
            for (std::uint64_t sequence = 0;; ++sequence) {
                message.fill(producer_id, sequence);
                try {
                    queue.put(message);
                } catch (const mproc::Closed&) {
                    return;
                }
            }
        },
        [&](M& message) {
            const CloseOnFailure close_on_failure(queue);
            try {
                message = queue.get();
                return PeerReceive::message;
            } catch (const mproc::Closed&) {
                return PeerReceive::end;
            }
        },
        [&](M& message, Peer& producer) { message = get_from_peer(queue, producer, "mproc 2P2C stream"); },
        [&] { queue.close(); },
        [&](const Peer& producer0, const Peer& producer1, const Peer& consumer) {
            return CloseWhenAPeerEnds<M>(queue, {&producer0, &producer1, &consumer});
        });
}

#ifdef MPROC_BENCH_HAVE_BOOST
// Boost: 10 ms deadlines in the peers, which watch the stop flag.
template <std::size_t kBytes>
void boost_two_by_two(benchmark::State& state) {
    BoostQueue queue(queue_capacity(kBytes), kBytes);
    SharedBlock<StopFlag> control;
    two_by_two<kBytes>(
        state, "Boost", [&](std::uint64_t producer_id) { boost_produce<kBytes>(*queue, *control, producer_id); },
        [&](Message<kBytes>& message) {
            if (stop_requested(*control)) return PeerReceive::end;
            return boost_receive(*queue, message, 10ms) ? PeerReceive::message : PeerReceive::nothing_yet;
        },
        [&](Message<kBytes>& message, Peer& producer) {
            while (!boost_receive(*queue, message, 1000ms)) producer.throw_if_ended();
        },
        [&] { request_stop(*control); });
}
#endif

// The kernel transports with several writers and readers on one object.

// POSIX mq: as Boost.
template <std::size_t kBytes>
void posix_mq_two_by_two(benchmark::State& state) {
    const std::optional<PosixMq> opened = open_posix_mq(state, kBytes);
    if (!opened) return;
    const mqd_t queue = opened->get();
    SharedBlock<StopFlag> control;
    two_by_two<kBytes>(
        state, "POSIX mq", [&](std::uint64_t producer_id) { posix_mq_produce<kBytes>(queue, *control, producer_id); },
        [&](Message<kBytes>& message) {
            if (stop_requested(*control)) return PeerReceive::end;
            return posix_mq_receive(queue, message, 10ms) ? PeerReceive::message : PeerReceive::nothing_yet;
        },
        [&](Message<kBytes>& message, Peer& producer) {
            while (!posix_mq_receive(queue, message, 1000ms)) producer.throw_if_ended();
        },
        [&] { request_stop(*control); });
}

// An AF_UNIX SOCK_SEQPACKET socketpair whose ends the forked peers share: the producers send on one, the
// consumers receive on the other. shutdown(SHUT_RDWR) of the receiving socket ends the run: blocked
// receives return 0 and blocked sends fail with EPIPE, in every process at once.
template <std::size_t kBytes>
void seqpacket_two_by_two(benchmark::State& state) {
    using M = Message<kBytes>;
    const SeqpacketPair pair = make_seqpacket_pair("seqpacket 2P2C");
    const mproc::bench::UniqueFd& consumer_end = pair.consumer_end;
    const mproc::bench::UniqueFd& producer_end = pair.producer_end;
    // Receives give up after a second, so that producers killed by a signal (which end nothing: every
    // process still holds producer_end) are noticed rather than waited for.
    const timeval receive_timeout{1, 0};
    ::setsockopt(consumer_end.get(), SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, sizeof receive_timeout);
    const auto receive = [&](M& message) {
        ssize_t got;
        do got = ::recv(consumer_end.get(), &message, kBytes, 0);
        while (got < 0 && errno == EINTR);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return PeerReceive::nothing_yet;
        if (got < 0) throw mproc::SystemError("seqpacket 2P2C: recv", errno);
        if (got != 0 && got != static_cast<ssize_t>(kBytes))
            throw BenchFailure("seqpacket 2P2C: a message of " + std::to_string(got) + " bytes, expected " +
                               std::to_string(kBytes));
        return got != 0 ? PeerReceive::message : PeerReceive::end;
    };
    two_by_two<kBytes>(
        state, "seqpacket",
        [&](std::uint64_t producer_id) {
            auto message = std::make_unique<M>();
            for (std::uint64_t sequence = 0;; ++sequence) {
                message->fill(producer_id, sequence);
                ssize_t sent;
                do sent = ::send(producer_end.get(), message.get(), kBytes, MSG_NOSIGNAL);
                while (sent < 0 && errno == EINTR);
                if (sent < 0 && errno == EPIPE) return;  // the consumers' socket was shut down: the run is over
                if (sent != static_cast<ssize_t>(kBytes))
                    throw mproc::SystemError("seqpacket 2P2C producer: send", errno);
            }
        },
        receive,
        [&](M& message, Peer& producer) {
            for (;;) {
                switch (receive(message)) {
                case PeerReceive::message: return;
                case PeerReceive::nothing_yet: producer.throw_if_ended(); continue;
                case PeerReceive::end:
                    producer.join();  // throws with the producer's reason when it failed
                    throw BenchFailure("seqpacket 2P2C: end of stream while the benchmark ran");
                }
            }
        },
        [&] { ::shutdown(consumer_end.get(), SHUT_RDWR); });
}

// A pipe with two writers and two readers keeps messages whole only while each write is atomic, that is up
// to PIPE_BUF bytes; larger messages are skipped. A read of kBytes then takes exactly one whole message. The
// producers write until asked to stop and exit (closing their ends); the consumers read to end of stream.
template <std::size_t kBytes>
void pipe_two_by_two(benchmark::State& state) {
    using M = Message<kBytes>;
    if (kBytes > PIPE_BUF) {
        mproc::bench::skip(state, "pipe 2P2C: writes of " + std::to_string(kBytes) + " bytes exceed PIPE_BUF (" +
                                      std::to_string(PIPE_BUF) + "), so two writers' messages could interleave");
        return;
    }
    SharedBlock<StopFlag> control;
    mproc::bench::Pipe pipe = mproc::bench::make_pipe("pipe 2P2C");
    // false at the end of the stream. Each consumer first drops its copy of the write end, so that the end
    // comes once the producers exit.
    bool write_end_dropped = false;
    const auto receive = [&](M& message) {
        if (!write_end_dropped) {
            pipe.write_end.close();
            write_end_dropped = true;
        }
        const std::size_t got = mproc::bench::read_some(pipe.read_end.get(), &message, kBytes, "pipe 2P2C");
        if (got != 0 && got != kBytes)
            throw BenchFailure("pipe 2P2C: a read of " + std::to_string(got) + " bytes, expected " +
                               std::to_string(kBytes));
        return got != 0;
    };
    two_by_two<kBytes>(
        state, "pipe",
        [&](std::uint64_t producer_id) {
            pipe.read_end.close();
            auto message = std::make_unique<M>();
            for (std::uint64_t sequence = 0; !stop_requested(*control); ++sequence) {
                message->fill(producer_id, sequence);
                mproc::bench::write_all(pipe.write_end.get(), message.get(), kBytes, "pipe 2P2C producer");
            }
        },
        [&](M& message) { return receive(message) ? PeerReceive::message : PeerReceive::end; },
        [&](M& message, Peer& producer) {
            if (receive(message)) return;
            producer.join();  // throws with the producer's reason when it failed
            throw BenchFailure("pipe 2P2C: end of stream while the benchmark ran");
        },
        [&] {
            request_stop(*control);
            if (pipe.read_end.get() < 0) return;  // a producer's end_run: the consumers drain
            auto drained = std::make_unique<M>();
            while (receive(*drained)) {
            }
        });
}

// ---------------------------------------------------------------------------------------------------------
// Round trips of a 64-byte message: the benchmark puts sequence k on one queue, the peer answers k + 1 on
// another. poll: both sides poll try_get (with the Spinner's occasional yield); spin_then_sleep: get(), as
// an application calls it; sleep: get() with the adaptive spin off on both sides (NoSpinBeforeSleep).

constexpr std::size_t kRoundTripBytes = 64;
using RoundTripMessage = Message<kRoundTripBytes>;

enum class RoundTripWait { poll, spin_then_sleep, sleep };

void mproc_round_trip(benchmark::State& state, mproc::QueueKind kind, RoundTripWait wait) {
    mproc::Queue<RoundTripMessage> to_peer(16, kind);
    mproc::Queue<RoundTripMessage> from_peer(16, kind);
    const bool spin = wait == RoundTripWait::poll;
    const auto receive = [spin](mproc::Queue<RoundTripMessage>& queue, Peer* peer) {
        if (!spin) return peer == nullptr ? queue.get() : get_from_peer(queue, *peer, "mproc queue round trip");
        Spinner spinner("a round-trip message", peer);
        for (;;) {
            try {
                if (const std::optional<RoundTripMessage> message = queue.try_get()) return *message;
            } catch (const mproc::Closed&) {
                if (peer == nullptr) throw;  // the benchmark's close(): the peer's signal to stop
                peer->join();
                throw BenchFailure("mproc queue round trip: the queue was closed while the benchmark ran");
            }
            spinner.pause();
        }
    };
    Peer peer("mproc queue round-trip peer", [&] {
        const CloseOnFailure close_on_failure(from_peer);
        std::optional<mproc::bench::NoSpinBeforeSleep> no_spin;
        if (wait == RoundTripWait::sleep) no_spin.emplace();
        for (;;) {
            RoundTripMessage message;
            try {
                message = receive(to_peer, nullptr);
            } catch (const mproc::Closed&) {
                return;
            }
            message.fill(0, message.sequence() + 1);
            from_peer.put(message);
        }
    });
    const CloseWhenAPeerEnds<RoundTripMessage> close_when_the_peer_ends(from_peer, {&peer});
    std::optional<mproc::bench::NoSpinBeforeSleep> no_spin;
    if (wait == RoundTripWait::sleep) no_spin.emplace();
    LatencySampler sampler(state);
    RoundTripMessage message{};
    std::uint64_t sequence = 0;
    sampler.start();
    for (auto _ : state) {
        message.fill(0, sequence);
        to_peer.put(message);
        const RoundTripMessage reply = receive(from_peer, &peer);
        if (!reply.whole() || reply.sequence() != sequence + 1)
            throw BenchFailure("mproc queue round trip: reply " + std::to_string(reply.sequence()) + " to " +
                               std::to_string(sequence));
        sequence += 2;
        sampler.lap();
    }
    to_peer.close();
    peer.join();
    sampler.report(state);
    if (wait == RoundTripWait::sleep) mproc::bench::require_waits_in_kernel(state, sampler, "mproc queue blocking round trip");
}

void pipe_round_trip(benchmark::State& state) {
    mproc::bench::Pipe to_peer = mproc::bench::make_pipe("pipe round trip: to the peer");
    mproc::bench::Pipe from_peer = mproc::bench::make_pipe("pipe round trip: from the peer");
    Peer peer("pipe round-trip peer", [&] {
        to_peer.write_end.close();
        from_peer.read_end.close();
        RoundTripMessage message;
        for (;;) {
            std::size_t done = 0;
            while (done < kRoundTripBytes) {
                const std::size_t got =
                    mproc::bench::read_some(to_peer.read_end.get(), reinterpret_cast<std::byte*>(&message) + done,
                                            kRoundTripBytes - done, "pipe round-trip peer");
                if (got == 0) return;
                done += got;
            }
            message.fill(0, message.sequence() + 1);
            mproc::bench::write_all(from_peer.write_end.get(), &message, kRoundTripBytes, "pipe round-trip peer");
        }
    });
    to_peer.read_end.close();
    from_peer.write_end.close();
    LatencySampler sampler(state);
    RoundTripMessage message{};
    std::uint64_t sequence = 0;
    sampler.start();
    for (auto _ : state) {
        message.fill(0, sequence);
        mproc::bench::write_all(to_peer.write_end.get(), &message, kRoundTripBytes, "pipe round trip");
        read_exactly(from_peer.read_end.get(), &message, kRoundTripBytes, "pipe round trip", peer);
        if (!message.whole() || message.sequence() != sequence + 1)
            throw BenchFailure("pipe round trip: reply " + std::to_string(message.sequence()) + " to " +
                               std::to_string(sequence));
        sequence += 2;
        sampler.lap();
    }
    to_peer.write_end.close();
    peer.join();
    sampler.report(state);
}

// ---------------------------------------------------------------------------------------------------------
// iceoryx 2.0 publish/subscribe, used zero-copy as its documentation recommends: the publisher loan()s a
// typed sample in RouDi's shared memory pools, writes the message in place and publish()es it; the
// subscriber take()s the sample, reads it in place and releases it. Lossless like a queue: the publisher
// waits while the subscriber's queue is full (WAIT_FOR_CONSUMER / BLOCK_PRODUCER).
//
// An iceoryx runtime is registered with RouDi once per process and cannot be dropped, and a forked child
// would inherit its parent's registration, so the benchmark process never starts one: each run forks
// both ends as peers, each registers under its own name, and the consumer (the requester in a round
// trip) times its loop, as the Python peers do: manual time, reported through report_python_time().
// Each run uses services of its own, so that ports a dead peer left behind (RouDi reclaims them about
// 1.5 s after the process is gone) never connect to the next run's. Without a RouDi daemon (bench/run
// starts one) every iceoryx entry is skipped with the reason.
#ifdef MPROC_BENCH_HAVE_ICEORYX

// RouDi's IPC channel is a datagram socket at this path; connect() to it succeeds only while a RouDi
// process has it bound, so the probe neither waits nor starts anything (initRuntime would wait 60 s).
bool roudi_is_running() {
    const std::string path =
        std::string(iox::platform::IOX_UDS_SOCKET_PATH_PREFIX) + iox::roudi::IPC_CHANNEL_ROUDI_NAME;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) return false;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const mproc::bench::UniqueFd probe(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (probe.get() < 0) throw mproc::SystemError("iceoryx: socket() for the RouDi probe", errno);
    return ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

bool skip_without_roudi(benchmark::State& state) {
    if (roudi_is_running()) return false;
    mproc::bench::skip(state, "iceoryx: no RouDi daemon runs (bench/run starts iox-roudi)");
    return true;
}

// In a peer, before any publisher or subscriber: registers this process with RouDi. iceoryx's own log
// says only what goes wrong (the Debian build logs every registration at debug level).
void register_with_roudi(const char* role) {
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                          iox::log::LogLevelOutput::kHideLogLevel);
    const std::string name = std::string("mproc-bench-") + role + "-" + std::to_string(::getpid());
    iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
}

// Called in the benchmark process before the fork: both peers of a run name the same, fresh services.
struct IceoryxServices {
    std::string instance;

    IceoryxServices() {
        static std::uint64_t runs = 0;
        instance = "run-" + std::to_string(::getpid()) + "-" + std::to_string(runs++);
    }
    iox::capro::ServiceDescription event(const char* name) const {
        return {"mproc-bench-queue", iox::capro::IdString_t(iox::cxx::TruncateToCapacity, instance.c_str()),
                iox::capro::IdString_t(iox::cxx::TruncateToCapacity, name)};
    }
};

// The payload type of a typed publisher. loan() constructs it in the chunk; this constructor leaves the
// bytes alone, so the producer writes exactly what it writes into an mproc::Queue message (the two tag
// words), in place, and nothing is copied on either side.
template <std::size_t kBytes>
struct LoanedMessage {
    LoanedMessage() noexcept {}  // `message` stays unwritten until the producer fills it in place
    Message<kBytes> message;
};

template <std::size_t kBytes>
iox::popo::Publisher<LoanedMessage<kBytes>> make_publisher(const iox::capro::ServiceDescription& service) {
    iox::popo::PublisherOptions options;
    options.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    return iox::popo::Publisher<LoanedMessage<kBytes>>(service, options);
}

template <std::size_t kBytes>
iox::popo::Subscriber<LoanedMessage<kBytes>> make_subscriber(const iox::capro::ServiceDescription& service,
                                                           std::size_t queue_capacity) {
    iox::popo::SubscriberOptions options;
    options.queueCapacity = std::min<std::uint64_t>(queue_capacity, iox::MAX_SUBSCRIBER_QUEUE_CAPACITY);
    options.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
    return iox::popo::Subscriber<LoanedMessage<kBytes>>(service, options);
}

// Connections are made by RouDi's discovery loop (every 100 ms): poll for them asleep, not spinning.
template <class Condition>
void wait_for_roudi(const char* what, Condition&& condition) {
    const auto give_up = std::chrono::steady_clock::now() + mproc::bench::kStallLimit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > give_up)
            throw BenchFailure(std::string("iceoryx: ") + what + " did not happen within " +
                               std::to_string(mproc::bench::kStallLimit.count()) + " s");
        ::usleep(1000);
    }
}

// Loans a sample, lets fill() write the message in place, publishes it. A pool momentarily out of chunks
// (a dead peer's chunks not yet reclaimed) is waited out; any other loan error fails the benchmark.
template <std::size_t kBytes, class Fill>
void publish_in_place(iox::popo::Publisher<LoanedMessage<kBytes>>& publisher, Fill&& fill) {
    Spinner spinner("a free chunk in RouDi's memory pool");
    for (;;) {
        auto loaned = publisher.loan();
        if (!loaned.has_error()) {
            auto& sample = loaned.value();
            fill(sample->message);
            sample.publish();
            return;
        }
        if (loaned.get_error() != iox::popo::AllocationError::RUNNING_OUT_OF_CHUNKS)
            throw BenchFailure(std::string("iceoryx publisher: loan() failed: ") +
                               iox::popo::asStringLiteral(loaned.get_error()));
        spinner.pause();
    }
}

// How a subscriber waits for its next sample: polling take() (with the Spinner's yields), or asleep in a
// WaitSet attached to the subscriber's HAS_DATA state, the blocking wait iceoryx's documentation shows.
template <std::size_t kBytes>
class SampleWaiter {
public:
    SampleWaiter(iox::popo::Subscriber<LoanedMessage<kBytes>>& subscriber, bool spin, const char* what)
        : subscriber_(subscriber), what_(what) {
        if (spin) return;
        wait_set_.emplace();
        if (wait_set_->attachState(subscriber_, iox::popo::SubscriberState::HAS_DATA).has_error())
            throw BenchFailure(std::string("iceoryx: ") + what + ": attaching the subscriber to a WaitSet failed");
    }
    SampleWaiter(const SampleWaiter&) = delete;
    SampleWaiter& operator=(const SampleWaiter&) = delete;
    // The WaitSet detaches the subscriber as it is destroyed, which is before the subscriber: construct the
    // SampleWaiter after the subscriber it waits on.

    // Takes the next sample, hands its message to read() and releases the sample. With stop_waiting,
    // returns false instead once stop_waiting() says so while no sample is there.
    template <class Read, class StopWaiting>
    bool take(Read&& read, StopWaiting&& stop_waiting) {
        Spinner spinner(what_);  // one per wait: its stall limit counts from the start of this wait
        std::int64_t waited_since_ns = 0;
        for (;;) {
            auto taken = subscriber_.take();
            if (!taken.has_error()) {
                read(taken.value()->message);
                return true;
            }
            if (taken.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE)
                throw BenchFailure(std::string("iceoryx: ") + what_ + ": take() failed: " +
                                   iox::popo::asStringLiteral(taken.get_error()));
            if (stop_waiting()) return false;
            if (!wait_set_) {
                spinner.pause();
                continue;
            }
            const std::int64_t now_ns = mproc::bench::monotonic_now_ns();
            if (waited_since_ns == 0) waited_since_ns = now_ns;
            if (now_ns - waited_since_ns > std::chrono::nanoseconds(mproc::bench::kStallLimit).count())
                throw BenchFailure(std::string("iceoryx: ") + what_ + ": no sample for " +
                                   std::to_string(mproc::bench::kStallLimit.count()) + " s");
            wait_set_->timedWait(iox::units::Duration::fromMilliseconds(100));
        }
    }
    template <class Read>
    void take(Read&& read) {
        take(std::forward<Read>(read), [] { return false; });
    }

private:
    iox::popo::Subscriber<LoanedMessage<kBytes>>& subscriber_;
    std::optional<iox::popo::WaitSet<>> wait_set_;
    const char* what_;
};

struct IceoryxStreamShared {
    // Every word is written by one peer and read by the other or, once its writer has exited, by the
    // benchmark process; none publishes data (the messages travel through iceoryx).
    alignas(128) std::atomic<std::uint32_t> stop;           // set by the consumer after its timed loop
    alignas(128) std::atomic<std::uint32_t> producer_done;  // set by the producer as it leaves
    alignas(128) std::atomic<std::int64_t> elapsed_ns;      // the consumer's timed loop
};

// The consumer peer takes one untimed message (both ends are connected and running then), times the
// next max_iterations, then asks the producer to stop and drains until it has, so that a producer
// waiting for room in the subscriber's queue always gets out.
template <std::size_t kBytes>
void iceoryx_stream(benchmark::State& state) {
    if (skip_without_roudi(state)) return;
    const IceoryxServices services;
    SharedBlock<IceoryxStreamShared> shared;
    const std::int64_t messages = state.max_iterations;
    Peer consumer("iceoryx subscriber", [&] {
        register_with_roudi("subscriber");
        auto subscriber = make_subscriber<kBytes>(services.event("stream"), queue_capacity(kBytes));
        SampleWaiter<kBytes> waiter(subscriber, false, "stream subscriber");
        SequenceCheck check("iceoryx stream", true);
        const auto read = [&](const Message<kBytes>& message) { check.check(message); };
        waiter.take(read);
        const std::int64_t start_ns = mproc::bench::monotonic_now_ns();
        for (std::int64_t received = 0; received < messages; ++received) waiter.take(read);
        // relaxed: read by the benchmark process after join(), which waits for this process to exit.
        shared->elapsed_ns.store(mproc::bench::monotonic_now_ns() - start_ns, std::memory_order_relaxed);
        // relaxed (both): the flags only say when to leave; no data is published with them.
        shared->stop.store(1, std::memory_order_relaxed);
        const auto producer_left = [&] { return shared->producer_done.load(std::memory_order_relaxed) != 0; };
        while (waiter.take(read, producer_left)) {
        }
    });
    Peer producer("iceoryx publisher", [&] {
        register_with_roudi("publisher");
        auto publisher = make_publisher<kBytes>(services.event("stream"));
        wait_for_roudi("the subscriber's connection to the stream", [&] { return publisher.hasSubscribers(); });
        // relaxed (both): see the consumer.
        for (std::uint64_t sequence = 0; shared->stop.load(std::memory_order_relaxed) == 0; ++sequence)
            publish_in_place(publisher, [&](Message<kBytes>& message) { message.fill(0, sequence); });
        shared->producer_done.store(1, std::memory_order_relaxed);
    });
    consumer.join();
    producer.join();
    // relaxed: the consumer has exited (join() reaped it), its store is final.
    mproc::bench::report_python_time(state, shared->elapsed_ns.load(std::memory_order_relaxed));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kBytes));
}

struct IceoryxRoundTripShared {
    // elapsed_ns, p50_ns, p99_ns, p99.9_ns of the timed round trips: written by the requester peer, read
    // by the benchmark process after join().
    std::array<std::atomic<std::int64_t>, 4> figures;
};

// Nearest rank over sorted samples, as LatencySampler::report() computes it.
std::int64_t nearest_rank(const std::vector<std::uint32_t>& sorted, double fraction) {
    const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

// A 64-byte message to the echo peer on "ping" and back on "pong", as mproc_round_trip() does: the
// requester peer times max_iterations round trips after one untimed one, a sample per round trip.
void iceoryx_round_trip(benchmark::State& state, bool spin) {
    if (skip_without_roudi(state)) return;
    constexpr std::uint64_t kStopSequence = (std::uint64_t{1} << 56) - 1;
    constexpr std::size_t kQueueCapacity = 16;  // as mproc_round_trip's queues
    const IceoryxServices services;
    SharedBlock<IceoryxRoundTripShared> shared;
    const std::int64_t round_trips = state.max_iterations;
    Peer echo("iceoryx echo", [&] {
        register_with_roudi("echo");
        auto requests = make_subscriber<kRoundTripBytes>(services.event("ping"), kQueueCapacity);
        auto replies = make_publisher<kRoundTripBytes>(services.event("pong"));
        SampleWaiter<kRoundTripBytes> waiter(requests, spin, "round-trip request");
        wait_for_roudi("the requester's connection to the replies", [&] { return replies.hasSubscribers(); });
        for (;;) {
            std::uint64_t sequence = 0;
            waiter.take([&](const RoundTripMessage& request) {
                if (!request.whole()) throw BenchFailure("iceoryx round trip: a torn request");
                sequence = request.sequence();
            });
            if (sequence == kStopSequence) return;
            publish_in_place(replies, [&](RoundTripMessage& reply) { reply.fill(0, sequence + 1); });
        }
    });
    Peer requester("iceoryx requester", [&] {
        register_with_roudi("requester");
        auto requests = make_publisher<kRoundTripBytes>(services.event("ping"));
        auto replies = make_subscriber<kRoundTripBytes>(services.event("pong"), kQueueCapacity);
        SampleWaiter<kRoundTripBytes> waiter(replies, spin, "round-trip reply");
        wait_for_roudi("the echo's connection to the requests", [&] { return requests.hasSubscribers(); });
        const auto round_trip = [&](std::uint64_t sequence) {
            publish_in_place(requests, [&](RoundTripMessage& request) { request.fill(0, sequence); });
            waiter.take([&](const RoundTripMessage& reply) {
                if (!reply.whole() || reply.sequence() != sequence + 1)
                    throw BenchFailure("iceoryx round trip: reply " + std::to_string(reply.sequence()) + " to " +
                                       std::to_string(sequence));
            });
        };
        round_trip(0);
        std::vector<std::uint32_t> samples(static_cast<std::size_t>(round_trips));
        const std::int64_t start_ns = mproc::bench::monotonic_now_ns();
        std::int64_t previous_ns = start_ns;
        for (std::size_t index = 0; index < samples.size(); ++index) {
            round_trip(2 * index + 2);
            const std::int64_t now_ns = mproc::bench::monotonic_now_ns();
            samples[index] = static_cast<std::uint32_t>(
                std::min<std::int64_t>(now_ns - previous_ns, LatencySampler::kSaturated));
            previous_ns = now_ns;
        }
        std::sort(samples.begin(), samples.end());
        const std::array<std::int64_t, 4> figures = {previous_ns - start_ns, nearest_rank(samples, 0.50),
                                                     nearest_rank(samples, 0.99), nearest_rank(samples, 0.999)};
        // relaxed: read by the benchmark process after join(), which waits for this process to exit.
        for (std::size_t index = 0; index < figures.size(); ++index)
            shared->figures[index].store(figures[index], std::memory_order_relaxed);
        publish_in_place(requests, [&](RoundTripMessage& request) { request.fill(0, kStopSequence); });
    });
    requester.join();
    echo.join();
    std::vector<std::int64_t> figures;
    // relaxed: the requester has exited (join() reaped it), its stores are final.
    for (const auto& figure : shared->figures) figures.push_back(figure.load(std::memory_order_relaxed));
    mproc::bench::report_python_round_trips(state, figures);
}
#endif

// ---------------------------------------------------------------------------------------------------------
// Registration: one family per system, the message size as the argument, so that each system is one
// series in report.py's throughput-by-size chart.

constexpr std::int64_t kSizes[] = {8, 64, 512, 4096, 65536};

// Calls body.template operator()<N>() for the N that state.range(0) names.
template <class Body>
void with_size(benchmark::State& state, Body&& body) {
    mproc::bench::run_guarded(state, [&] {
        switch (state.range(0)) {
        case 8: body.template operator()<8>(); break;
        case 64: body.template operator()<64>(); break;
        case 512: body.template operator()<512>(); break;
        case 4096: body.template operator()<4096>(); break;
        case 65536: body.template operator()<65536>(); break;
        default: throw BenchFailure("queue stream: no message type of " + std::to_string(state.range(0)) + " bytes");
        }
    });
}

void BM_Queue1P1C_mproc_spsc(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { mproc_stream<N>(state, mproc::QueueKind::spsc); });
}
void BM_Queue1P1C_mproc_mpmc(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { mproc_stream<N>(state, mproc::QueueKind::mpmc); });
}
void BM_Queue1P1C_pipe(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { pipe_stream<N>(state); });
}
void BM_Queue1P1C_seqpacket(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { seqpacket_stream<N>(state); });
}
void BM_Queue1P1C_posix_mq(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { posix_mq_stream<N>(state); });
}
void BM_Queue1P1C_python(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { python_queue(state, "stream", static_cast<std::size_t>(state.range(0))); });
}
void BM_Queue2P2C_python(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { python_queue(state, "two_by_two", static_cast<std::size_t>(state.range(0))); });
}
void BM_Queue2P2C_mproc_mpmc(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { mproc_two_by_two<N>(state); });
}
void BM_Queue2P2C_pipe(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { pipe_two_by_two<N>(state); });
}
void BM_Queue2P2C_seqpacket(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { seqpacket_two_by_two<N>(state); });
}
void BM_Queue2P2C_posix_mq(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { posix_mq_two_by_two<N>(state); });
}
#ifdef MPROC_BENCH_HAVE_ICEORYX
void BM_Queue1P1C_iceoryx(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { iceoryx_stream<N>(state); });
}
#endif
#ifdef MPROC_BENCH_HAVE_BOOST
void BM_Queue1P1C_boost(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { boost_stream<N>(state); });
}
void BM_Queue2P2C_boost(benchmark::State& state) {
    with_size(state, [&]<std::size_t N>() { boost_two_by_two<N>(state); });
}
#endif

void register_sizes(benchmark::internal::Benchmark* benchmark) {
    for (const std::int64_t size : kSizes) benchmark->Arg(size);
}

// The raw ring ceiling again, registered next to the SPSC stream it bounds: on a guest whose two vCPUs
// drift between fast and slow placements, a ceiling measured minutes earlier in bench_ceilings can sit in
// the other regime.
BENCHMARK(mproc::bench::measure_raw_spsc_ring)->Name("BM_QueueCeiling_RawSpscRing")->Arg(64)->UseRealTime();
BENCHMARK(BM_Queue1P1C_mproc_spsc)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue1P1C_mproc_mpmc)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue1P1C_pipe)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue1P1C_seqpacket)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue1P1C_posix_mq)->Apply(register_sizes)->UseRealTime();
#ifdef MPROC_BENCH_HAVE_BOOST
BENCHMARK(BM_Queue1P1C_boost)->Apply(register_sizes)->UseRealTime();
#endif
#ifdef MPROC_BENCH_HAVE_ICEORYX
BENCHMARK(BM_Queue1P1C_iceoryx)->Apply(register_sizes)->UseManualTime();
#endif
BENCHMARK(BM_Queue1P1C_python)->Apply(register_sizes)->UseManualTime();
BENCHMARK(BM_Queue2P2C_mproc_mpmc)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue2P2C_pipe)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue2P2C_seqpacket)->Apply(register_sizes)->UseRealTime();
BENCHMARK(BM_Queue2P2C_posix_mq)->Apply(register_sizes)->UseRealTime();
#ifdef MPROC_BENCH_HAVE_BOOST
BENCHMARK(BM_Queue2P2C_boost)->Apply(register_sizes)->UseRealTime();
#endif
BENCHMARK(BM_Queue2P2C_python)->Apply(register_sizes)->UseManualTime();

void round_trip_entry(benchmark::State& state, mproc::QueueKind kind, RoundTripWait wait) {
    mproc::bench::run_guarded(state, [&] { mproc_round_trip(state, kind, wait); });
}
BENCHMARK_CAPTURE(round_trip_entry, spsc_spin, mproc::QueueKind::spsc, RoundTripWait::poll)
    ->Name("BM_QueueRoundTrip_spin/mproc_spsc")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, mpmc_spin, mproc::QueueKind::mpmc, RoundTripWait::poll)
    ->Name("BM_QueueRoundTrip_spin/mproc_mpmc")->UseRealTime();
#ifdef MPROC_BENCH_HAVE_ICEORYX
void iceoryx_round_trip_entry(benchmark::State& state, bool spin) {
    mproc::bench::run_guarded(state, [&] { iceoryx_round_trip(state, spin); });
}
BENCHMARK_CAPTURE(iceoryx_round_trip_entry, spin, true)->Name("BM_QueueRoundTrip_spin/iceoryx")->UseManualTime();
#endif
BENCHMARK(mproc::bench::measure_cache_line_ping_pong)->Name("BM_QueueRoundTrip_spin/cache_line_ceiling")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, spsc_blocking, mproc::QueueKind::spsc, RoundTripWait::sleep)
    ->Name("BM_QueueRoundTrip_blocking/mproc_spsc")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, mpmc_blocking, mproc::QueueKind::mpmc, RoundTripWait::sleep)
    ->Name("BM_QueueRoundTrip_blocking/mproc_mpmc")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, spsc_spin_then_sleep, mproc::QueueKind::spsc, RoundTripWait::spin_then_sleep)
    ->Name("BM_QueueRoundTrip_spin_then_sleep/mproc_spsc")->UseRealTime();
BENCHMARK_CAPTURE(round_trip_entry, mpmc_spin_then_sleep, mproc::QueueKind::mpmc, RoundTripWait::spin_then_sleep)
    ->Name("BM_QueueRoundTrip_spin_then_sleep/mproc_mpmc")->UseRealTime();
void BM_QueueRoundTripPipe(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { pipe_round_trip(state); });
}
BENCHMARK(BM_QueueRoundTripPipe)->Name("BM_QueueRoundTrip_blocking/pipe")->UseRealTime();
#ifdef MPROC_BENCH_HAVE_ICEORYX
BENCHMARK_CAPTURE(iceoryx_round_trip_entry, blocking, false)
    ->Name("BM_QueueRoundTrip_blocking/iceoryx")->UseManualTime();
#endif
BENCHMARK(mproc::bench::measure_futex_ping_pong)->Name("BM_QueueRoundTrip_blocking/futex_ceiling")->UseRealTime();

// ---------------------------------------------------------------------------------------------------------
// Large messages. Each message's first and last 8 bytes carry its sequence number; the receiver checks both.

constexpr std::int64_t kLargeSizes[] = {std::int64_t{64} << 10, std::int64_t{16} << 20};

void stamp_large(std::vector<std::byte>& message, std::uint64_t sequence) noexcept {
    std::memcpy(message.data(), &sequence, sizeof sequence);
    std::memcpy(message.data() + message.size() - sizeof sequence, &sequence, sizeof sequence);
}

void check_large(const std::byte* message, std::size_t size, std::size_t expected_size, std::uint64_t expected,
                 const char* stream) {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    if (size == expected_size) {
        std::memcpy(&first, message, sizeof first);
        std::memcpy(&last, message + size - sizeof last, sizeof last);
    }
    if (size != expected_size || first != expected || last != expected)
        throw BenchFailure(std::string(stream) + ": message " + std::to_string(expected) + " arrived as " +
                           std::to_string(size) + " bytes, first word " + std::to_string(first) + ", last " +
                           std::to_string(last));
}

std::vector<std::byte> touched_buffer(std::size_t bytes) {
    std::vector<std::byte> buffer(bytes);
    for (std::size_t i = 0; i < bytes; i += 64) buffer[i] = static_cast<std::byte>(i >> 6);
    return buffer;
}

void large_memcpy_ceiling(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    std::vector<std::byte> source = touched_buffer(bytes);
    std::vector<std::byte> target = touched_buffer(bytes);
    for (auto _ : state) {
        std::memcpy(target.data(), source.data(), bytes);
        benchmark::DoNotOptimize(target.data());
        benchmark::ClobberMemory();
    }
    count_stream(state, state.iterations(), bytes);
}

void large_mproc(benchmark::State& state, mproc::QueueKind kind) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    mproc::ByteQueue queue(60, 8, kind, std::max<std::uint64_t>(4 * bytes, std::uint64_t{4} << 20));
    Peer producer("mproc large producer", [&] {
        try {
            std::vector<std::byte> message = touched_buffer(bytes);
            for (std::uint64_t sequence = 0;; ++sequence) {
                stamp_large(message, sequence);
                queue.put(message);
            }
        } catch (const mproc::Closed&) {
        } catch (...) {
            queue.close();
            throw;
        }
    });
    std::vector<std::byte> message = touched_buffer(bytes);
    std::uint64_t sequence = 0;
    for (auto _ : state) {
        try {
            queue.get_into(message);
        } catch (const mproc::Closed&) {
            producer.join();
            throw BenchFailure("mproc large stream: the queue was closed while the benchmark ran");
        }
        check_large(message.data(), message.size(), bytes, sequence++, "mproc large stream");
    }
    queue.close();
    producer.join();
    count_stream(state, state.iterations(), bytes);
}

void large_pipe(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    SharedBlock<StopFlag> control;
    mproc::bench::Pipe pipe = mproc::bench::make_pipe("pipe large stream");
    Peer producer("pipe large producer", [&] {
        pipe.read_end.close();
        std::vector<std::byte> message = touched_buffer(bytes);
        for (std::uint64_t sequence = 0; !stop_requested(*control); ++sequence) {
            stamp_large(message, sequence);
            mproc::bench::write_all(pipe.write_end.get(), message.data(), bytes, "pipe large producer");
        }
    });
    pipe.write_end.close();
    std::vector<std::byte> message = touched_buffer(bytes);
    std::uint64_t sequence = 0;
    for (auto _ : state) {
        read_exactly(pipe.read_end.get(), message.data(), bytes, "pipe large stream", producer);
        check_large(message.data(), bytes, bytes, sequence++, "pipe large stream");
    }
    request_stop(*control);
    std::vector<std::byte> drain(64 * 1024);
    while (mproc::bench::read_some(pipe.read_end.get(), drain.data(), drain.size(), "pipe drain") != 0) {
    }
    producer.join();
    count_stream(state, state.iterations(), bytes);
}

#ifdef MPROC_BENCH_HAVE_BOOST
void large_boost(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    BoostQueue queue(4, bytes);
    SharedBlock<StopFlag> control;
    Peer producer("Boost message_queue large producer", [&] {
        std::vector<std::byte> message = touched_buffer(bytes);
        for (std::uint64_t sequence = 0; !stop_requested(*control);) {
            stamp_large(message, sequence);
            if ((*queue).timed_send(message.data(), bytes, 0, boost_deadline_after(10ms))) ++sequence;
        }
    });
    std::vector<std::byte> message = touched_buffer(bytes);
    std::uint64_t sequence = 0;
    for (auto _ : state) {
        bip::message_queue::size_type got = 0;
        unsigned priority = 0;
        while (!(*queue).timed_receive(message.data(), bytes, got, priority, boost_deadline_after(1000ms)))
            producer.throw_if_ended();
        check_large(message.data(), got, bytes, sequence++, "Boost message_queue large stream");
    }
    request_stop(*control);
    producer.join();
    count_stream(state, state.iterations(), bytes);
}
#endif

void register_large_sizes(benchmark::internal::Benchmark* benchmark) {
    for (const std::int64_t size : kLargeSizes) benchmark->Arg(size);
}
void BM_QueueLarge_memcpy(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { large_memcpy_ceiling(state); });
}
void BM_QueueLarge_mproc_spsc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { large_mproc(state, mproc::QueueKind::spsc); });
}
void BM_QueueLarge_mproc_mpmc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { large_mproc(state, mproc::QueueKind::mpmc); });
}
void BM_QueueLarge_pipe(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { large_pipe(state); });
}
BENCHMARK(BM_QueueLarge_memcpy)->Name("BM_QueueLarge/memcpy_ceiling")->Apply(register_large_sizes)->UseRealTime();
BENCHMARK(BM_QueueLarge_mproc_spsc)->Name("BM_QueueLarge/mproc_spsc")->Apply(register_large_sizes)->UseRealTime();
BENCHMARK(BM_QueueLarge_mproc_mpmc)->Name("BM_QueueLarge/mproc_mpmc")->Apply(register_large_sizes)->UseRealTime();
BENCHMARK(BM_QueueLarge_pipe)->Name("BM_QueueLarge/pipe")->Apply(register_large_sizes)->UseRealTime();
#ifdef MPROC_BENCH_HAVE_BOOST
void BM_QueueLarge_boost(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] { large_boost(state); });
}
BENCHMARK(BM_QueueLarge_boost)->Name("BM_QueueLarge/boost")->Apply(register_large_sizes)->UseRealTime();
#endif

}  // namespace
