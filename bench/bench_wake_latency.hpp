// bench/bench_wake_latency.hpp — the wake-latency round trip shared by bench_semaphore.cpp and
// bench_event.cpp: how long one side takes to wake the other from a blocking wait and be woken back.
//
// Two objects of the primitive under test, ping and pong, shared with a forked peer. Per round trip the
// benchmark writes the number 2k into a shared word, signals ping and waits on pong; the peer, asleep
// on ping, answers 2k + 1 and signals pong. The answer is checked every round: it also proves that the
// primitive ordered the plain word (a signal happens-before the return of the wait it ends). Each round
// is one sample of the LatencySampler: p50_ns/p99_ns/p99.9_ns and items_per_second (round trips).
//
// The back-to-back round trip is what an application ping-ponging through the primitive sees, but a
// primitive that spins before it sleeps may catch the signal while still spinning and never sleep at
// all. measure_wake_from_sleep() measures the wake-up itself: before each signal the signalling side
// waits kFallAsleep (busy, on the clock), long enough for the other side to be asleep in the kernel; each
// side reads the clock just before signalling and just after its wait returns, and a sample is the sum
// of the two one-way wake-ups (benchmark → peer, peer → benchmark), the waits excluded. It reports manual
// time (the mean of the samples), items_per_second over that time, the percentiles and the sleeps per
// round trip of each side, and fails when a side hardly ever slept (require_sleeping_round_trips).
//
// A Pair adapts the primitive, both objects, to four calls made the way the primitive is meant to be
// used: send() (benchmark: signal ping), await_reply() (benchmark: wait on pong until signalled and
// consume the signal), await_request() and reply() (the peer's halves). All four block or wake only
// through the primitive.
//
// Pairs every primitive's benchmark can use: FutexFlagPair (the bare-futex ceiling of the wake-from-sleep
// round trip) and EventfdPair (eventfd(2), the kernel's own wake-up object, as a peer).
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include <sys/eventfd.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"

namespace mproc::bench {

struct WakeBall {
    // Written by one side before it signals, read by the other after its wait returns: the primitive
    // under test is what orders it, so every access is relaxed.
    alignas(128) std::atomic<std::uint64_t> value;
};
static_assert(std::is_standard_layout_v<WakeBall> && std::atomic<std::uint64_t>::is_always_lock_free);

// Odd, like every answer, but never an answer the benchmark expects: tells the peer to leave.
inline constexpr std::uint64_t kWakeBallStop = UINT64_MAX;

template <class Pair>
void answer_wake_requests(Pair& pair, WakeBall& ball) {
    for (;;) {
        pair.await_request();
        // relaxed: ordered after the benchmark's store by the primitive (signal → wait).
        const std::uint64_t request = ball.value.load(std::memory_order_relaxed);
        if (request == kWakeBallStop) return;
        // relaxed: ordered before the benchmark's load by reply() → await_reply().
        ball.value.store(request + 1, std::memory_order_relaxed);
        pair.reply();
    }
}

// Runs the round trips of `state` through `pair` (constructed by the caller before the fork, in memory
// the peer inherits). `label` names the primitive in failure messages.
template <class Pair>
void measure_wake_latency(benchmark::State& state, Pair& pair, const std::string& label) {
    SharedBlock<WakeBall> ball;
    Peer peer(label + " wake-latency peer", [&] { answer_wake_requests(pair, *ball); });
    LatencySampler sampler(state);
    std::uint64_t request = 0;
    sampler.start();
    for (auto _ : state) {
        // relaxed: ordered before the peer's load by send() → await_request().
        ball->value.store(request, std::memory_order_relaxed);
        pair.send();
        pair.await_reply();
        // relaxed: ordered after the peer's store by reply() → await_reply().
        const std::uint64_t answer = ball->value.load(std::memory_order_relaxed);
        if (answer != request + 1) {
            throw BenchFailure(label + " wake latency: answer " + std::to_string(answer) + " to request " +
                               std::to_string(request));
        }
        request += 2;
        sampler.lap();
    }
    // relaxed: ordered before the peer's load by the send() that follows.
    ball->value.store(kWakeBallStop, std::memory_order_relaxed);
    pair.send();
    peer.join();
    sampler.report(state);
}

// How long the signalling side waits before each signal in measure_wake_from_sleep(): far above the
// spin phase of any primitive measured (mproc's Event and Semaphore re-read their word 20 times, about a
// microsecond; glibc's semaphores do not spin). The sleep counters of every row show that it held.
inline constexpr std::chrono::microseconds kFallAsleep{100};

// The MinTime of every wake-from-sleep benchmark: their manual time leaves out the kFallAsleep waits,
// so real time runs at least ten times the manual time; the 0.5 s default would take tens of seconds.
inline constexpr double kWakeFromSleepMinTime = 0.05;

struct SleepingWakeShared {
    // Every field is written by one side before it signals and read by the other after its wait
    // returns, so every access is relaxed: the primitive under test orders them.
    alignas(128) std::atomic<std::uint64_t> request;
    std::atomic<std::int64_t> request_sent_ns;  // the benchmark's clock just before send()
    alignas(128) std::atomic<std::uint64_t> answer;
    std::atomic<std::int64_t> request_woke_ns;  // the peer's clock just after await_request() returned
    std::atomic<std::int64_t> answer_sent_ns;   // the peer's clock just before reply()
};
static_assert(std::is_standard_layout_v<SleepingWakeShared> && offsetof(SleepingWakeShared, answer) == 128,
              "each side writes its own line");

// Busy-waits `duration` on the clock: the CPU stays awake (as it would under load) while the other
// side falls asleep.
inline void busy_wait(std::chrono::nanoseconds duration) noexcept {
    const std::int64_t until_ns = monotonic_now_ns() + duration.count();
    while (monotonic_now_ns() < until_ns) cpu_relax();
}

template <class Pair>
void answer_wake_requests_after_a_pause(Pair& pair, SleepingWakeShared& shared) {
    for (;;) {
        pair.await_request();
        const std::int64_t woke_ns = monotonic_now_ns();
        // relaxed: ordered after the benchmark's stores by the primitive (signal → wait), as below.
        const std::uint64_t request = shared.request.load(std::memory_order_relaxed);
        if (request == kWakeBallStop) return;
        busy_wait(kFallAsleep);
        // relaxed: ordered before the benchmark's loads by reply() → await_reply(), as below.
        shared.answer.store(request + 1, std::memory_order_relaxed);
        shared.request_woke_ns.store(woke_ns, std::memory_order_relaxed);
        shared.answer_sent_ns.store(monotonic_now_ns(), std::memory_order_relaxed);
        pair.reply();
    }
}

// The ceiling under measure_wake_from_sleep(): two bare futex words, no spinning, no waiter count —
// signal stores 1 and wakes, await sleeps in FUTEX_WAIT while the word is 0, then consumes the 1.
class FutexFlagPair {
public:
    void send() { signal(words_->ping); }
    void await_reply() { await(words_->pong); }
    void await_request() { await(words_->ping); }
    void reply() { signal(words_->pong); }

private:
    struct Words {
        alignas(128) std::atomic<std::uint32_t> ping;
        alignas(128) std::atomic<std::uint32_t> pong;
    };
    static_assert(std::is_standard_layout_v<Words>);

    static void signal(std::atomic<std::uint32_t>& word) {
        // release: pairs with the acquire load in await().
        word.store(1, std::memory_order_release);
        mproc::detail::futex_wake(word, 1);
    }
    static void await(std::atomic<std::uint32_t>& word) {
        // acquire: pairs with the release store in signal().
        while (word.load(std::memory_order_acquire) == 0) mproc::detail::futex_wait(word, 0, nullptr);
        // relaxed: the next signal() of this word comes after the answer to this one, which orders it.
        word.store(0, std::memory_order_relaxed);
    }

    SharedBlock<Words> words_;
};

// eventfd(2) as a two-process wake-up, the way its manual page describes it for event notification: a
// write() of 1 adds to the counter and wakes a reader asleep in read(); read() blocks while the counter is
// 0, then returns it and resets it (with EFD_SEMAPHORE: returns 1 and subtracts 1, a semaphore). Both
// descriptors are created before the fork, so the peer inherits them. Every wake-up is a system call on
// both sides, with no user-space fast path: a peer of Event and Semaphore built only from the kernel.
class EventfdPair {
public:
    enum class Mode { event, semaphore };

    explicit EventfdPair(Mode mode = Mode::event) : ping_(open(mode, "ping")), pong_(open(mode, "pong")) {}

    void send() { signal(ping_, "ping"); }
    void await_reply() { await(pong_, "pong"); }
    void await_request() { await(ping_, "ping"); }
    void reply() { signal(pong_, "pong"); }

private:
    static UniqueFd open(Mode mode, const char* which) {
        const int fd = ::eventfd(0, EFD_CLOEXEC | (mode == Mode::semaphore ? EFD_SEMAPHORE : 0));
        if (fd < 0) throw_system_error(std::string("eventfd '") + which + "': eventfd()");
        return UniqueFd(fd);
    }
    static void signal(const UniqueFd& fd, const char* which) {
        const std::uint64_t one = 1;
        ssize_t written;
        do written = ::write(fd.get(), &one, sizeof one);
        while (written < 0 && errno == EINTR);
        if (written != static_cast<ssize_t>(sizeof one)) throw_system_error(std::string("eventfd '") + which + "': write");
    }
    static void await(const UniqueFd& fd, const char* which) {
        std::uint64_t count = 0;
        ssize_t got;
        do got = ::read(fd.get(), &count, sizeof count);
        while (got < 0 && errno == EINTR);
        if (got != static_cast<ssize_t>(sizeof count)) throw_system_error(std::string("eventfd '") + which + "': read");
        // One signal per round: a count other than 1 means a write the protocol did not make.
        if (count != 1) {
            throw BenchFailure(std::string("eventfd '") + which + "': read a count of " + std::to_string(count) +
                               ", expected 1");
        }
    }

    UniqueFd ping_;
    UniqueFd pong_;
};

// Register with UseManualTime().
template <class Pair>
void measure_wake_from_sleep(benchmark::State& state, Pair& pair, const std::string& label) {
    SharedBlock<SleepingWakeShared> shared;
    Peer peer(label + " wake-from-sleep peer", [&] { answer_wake_requests_after_a_pause(pair, *shared); });
    LatencySampler sampler(state);
    std::uint64_t request = 0;
    for (auto _ : state) {
        busy_wait(kFallAsleep);
        // relaxed: ordered before the peer's loads by send() → await_request(), as below.
        shared->request.store(request, std::memory_order_relaxed);
        const std::int64_t sent_ns = monotonic_now_ns();
        shared->request_sent_ns.store(sent_ns, std::memory_order_relaxed);
        pair.send();
        pair.await_reply();
        const std::int64_t woke_ns = monotonic_now_ns();
        // relaxed: ordered after the peer's stores by reply() → await_reply(), as below.
        const std::uint64_t answer = shared->answer.load(std::memory_order_relaxed);
        if (answer != request + 1) {
            throw BenchFailure(label + " wake from sleep: answer " + std::to_string(answer) + " to request " +
                               std::to_string(request));
        }
        const std::int64_t there_ns = shared->request_woke_ns.load(std::memory_order_relaxed) - sent_ns;
        const std::int64_t back_ns = woke_ns - shared->answer_sent_ns.load(std::memory_order_relaxed);
        sampler.record(there_ns + back_ns);
        state.SetIterationTime(static_cast<double>(there_ns + back_ns) * 1e-9);
        request += 2;
    }
    // relaxed: ordered before the peer's load by the send() that follows.
    shared->request.store(kWakeBallStop, std::memory_order_relaxed);
    pair.send();
    peer.join();
    sampler.report(state);
    // A primitive whose spin outlasted kFallAsleep would be measured spinning here, not waking.
    require_sleeping_round_trips(state, label + " wake from sleep");
}

}  // namespace mproc::bench
