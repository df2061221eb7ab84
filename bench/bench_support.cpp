// bench/bench_support.cpp — peers, shared blocks, the latency sampler and the failure ledger of the
// benchmarks (see bench_support.hpp).
#include "bench_support.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "futex.hpp"
#include "mproc/error.hpp"

namespace mproc::bench {

namespace {

std::atomic<bool> some_benchmark_failed{false};

// pid 0: the calling process.
void pin_process(pid_t pid, int cpu, const std::string& who) {
    cpu_set_t only{};
    CPU_ZERO(&only);
    CPU_SET(cpu, &only);
    if (::sched_setaffinity(pid, sizeof only, &only) != 0) {
        throw_system_error(who + ": pin to CPU " + std::to_string(cpu) + " (MPROC_BENCH_PIN)");
    }
}

// 128, not 64: the adjacent-line prefetcher of many x86 cores pulls 64-byte lines in pairs.
constexpr std::size_t kSeparation = 128;

// The cache-line ping-pong ceiling (see measure_cache_line_ping_pong in bench_support.hpp).
struct PingPongLines {
    alignas(kSeparation) std::atomic<std::uint64_t> ping;  // written by the benchmark process only
    alignas(kSeparation) std::atomic<std::uint64_t> pong;  // written by the peer only
};
static_assert(std::is_standard_layout_v<PingPongLines>);
static_assert(offsetof(PingPongLines, pong) == kSeparation && sizeof(PingPongLines) == 2 * kSeparation,
              "ping and pong must sit on lines of their own");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the words are shared between processes");

constexpr std::uint64_t kStopPing = UINT64_MAX;

void cache_line_peer(PingPongLines& lines) {
    std::uint64_t last = 0;
    for (;;) {
        std::uint64_t ping = 0;
        Spinner spinner("the benchmark's next ping");
        // acquire: pairs with the benchmark's release store of ping. The value is all that is handed over
        // here, but a real hand-off publishes data with it, and the ceiling must pay what that costs.
        while ((ping = lines.ping.load(std::memory_order_acquire)) == last) spinner.pause();
        if (ping == kStopPing) return;
        if (ping != last + 1) {
            throw BenchFailure("cache-line peer: ping " + std::to_string(ping) + " after " + std::to_string(last));
        }
        // release: pairs with the benchmark's acquire load of pong.
        lines.pong.store(ping, std::memory_order_release);
        last = ping;
    }
}

// The futex ping-pong ceiling (see measure_futex_ping_pong in bench_support.hpp).
struct FutexTurn {
    alignas(kSeparation) std::atomic<std::uint32_t> word;  // odd: the peer's turn; even: the benchmark's
    std::atomic<std::uint32_t> stop;                       // set once, before the last odd value
};
static_assert(std::is_standard_layout_v<FutexTurn> && sizeof(FutexTurn) == kSeparation);

// Sleeps until word differs from `current` and returns the new value. The sleep is cut in slices so that
// a peer that died (`peer`: nullptr when the peer itself waits) is reported within one slice; the wait
// fails after kStallLimit.
std::uint32_t wait_for_change(std::atomic<std::uint32_t>& word, std::uint32_t current, const char* waiting_for,
                              Peer* peer) {
    constexpr std::chrono::milliseconds kSlice{100};
    const timespec slice = mproc::detail::Deadline::to_timespec(kSlice);
    for (std::int64_t slept = 0;;) {
        // acquire: pairs with the other side's release store of word.
        const std::uint32_t seen = word.load(std::memory_order_acquire);
        if (seen != current) return seen;
        if (mproc::detail::futex_wait(word, current, &slice) != mproc::detail::FutexWaitResult::timed_out)
            continue;
        if (peer != nullptr) peer->throw_if_ended();
        if (++slept * kSlice > kStallLimit) {
            throw BenchFailure(std::string("futex ping-pong: no wake-up within the stall limit waiting for ") +
                               waiting_for);
        }
    }
}

void futex_peer(FutexTurn& turn) {
    std::uint32_t mine = 0;  // the last value this side stored (0: the initial word)
    for (;;) {
        const std::uint32_t seen = wait_for_change(turn.word, mine, "the benchmark's turn", nullptr);
        // relaxed: ordered after the benchmark's store of stop by the acquire load of word above.
        if (turn.stop.load(std::memory_order_relaxed) != 0) return;
        if (seen != mine + 1) {
            throw BenchFailure("futex peer: word " + std::to_string(seen) + " after " + std::to_string(mine));
        }
        mine = seen + 1;
        // release: pairs with the benchmark's acquire load in wait_for_change.
        turn.word.store(mine, std::memory_order_release);
        mproc::detail::futex_wake(turn.word, 1);
    }
}

std::string shell_quoted(const std::string& text) {
    std::string quoted = "'";
    for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

// ---------------------------------------------------------------------------------------------------------
// The raw SPSC ring: fixed slots, a power-of-two mask, free-running 64-bit indices, each side keeping a
// private copy of the other side's index and reloading it only when the copy says full (producer) or empty
// (consumer). No wrap-around flags, no batching, no blocking: the bound a featureful queue is measured
// against. The producer starts at fork, so up to kRingSlots messages are ready when the timed loop starts:
// a head start of kRingSlots / iterations, under 0.1 % of any run that lasts the default minimum time.
// It does the work of bench_queue's SPSC stream (BM_Queue1P1C_mproc_spsc) that it is the ceiling of: the
// same depth (1024 slots, that benchmark's queue_capacity() for 8 and 64 bytes); a producer that writes
// every byte of the slot (the compiler stores the sequence into each word of it straight from a register:
// the least a producer can do, so the ceiling); a consumer that copies every byte of the slot out and
// checks the first and the last word. Without DoNotOptimize on the consumer's copy the compiler loaded
// only the two words it checks (144 M/s against the queue's 57 M/s, whose get() copies all 64 bytes).

constexpr std::uint64_t kRingSlots = 1024;
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
        // Every byte of the slot was copied out, not only the two words checked below.
        benchmark::DoNotOptimize(message);
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

}  // namespace

std::string describe_mismatch(const char* stream, std::uint64_t expected, std::uint64_t first_word) {
    return std::string(stream) + ": expected message " + std::to_string(expected) +
           ", received one starting with " + std::to_string(first_word);
}

void measure_raw_spsc_ring(benchmark::State& state) {
    run_guarded(state, [&] {
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

void measure_cache_line_ping_pong(benchmark::State& state) {
    run_guarded(state, [&] {
        SharedBlock<PingPongLines> lines;
        Peer peer("cache-line ping-pong", [&] { cache_line_peer(*lines); });
        LatencySampler sampler(state);
        std::uint64_t round = 0;
        sampler.start();
        for (auto _ : state) {
            ++round;
            // release: pairs with the peer's acquire load of ping.
            lines->ping.store(round, std::memory_order_release);
            Spinner spinner("the peer's pong", &peer);
            std::uint64_t pong = 0;
            // acquire: pairs with the peer's release store of pong.
            while ((pong = lines->pong.load(std::memory_order_acquire)) != round) {
                if (pong != round - 1) {
                    throw BenchFailure("cache-line ping-pong: pong " + std::to_string(pong) + " in round " +
                                       std::to_string(round));
                }
                spinner.pause();
            }
            sampler.lap();
        }
        // release: the peer's acquire load sees the stop value like any other ping.
        lines->ping.store(kStopPing, std::memory_order_release);
        peer.join();
        sampler.report(state);
    });
}

void measure_futex_ping_pong(benchmark::State& state) {
    run_guarded(state, [&] {
        SharedBlock<FutexTurn> turn;
        Peer peer("futex ping-pong", [&] { futex_peer(*turn); });
        LatencySampler sampler(state);
        std::uint32_t mine = 0;
        sampler.start();
        for (auto _ : state) {
            const std::uint32_t asked = mine + 1;
            // release: pairs with the peer's acquire load in wait_for_change.
            turn->word.store(asked, std::memory_order_release);
            mproc::detail::futex_wake(turn->word, 1);
            const std::uint32_t seen = wait_for_change(turn->word, asked, "the peer's reply", &peer);
            if (seen != asked + 1) {
                throw BenchFailure("futex ping-pong: reply " + std::to_string(seen) + " to " +
                                   std::to_string(asked));
            }
            mine = seen;
            sampler.lap();
        }
        // relaxed: published by the release store of word that follows.
        turn->stop.store(1, std::memory_order_relaxed);
        // release: the peer's acquire load of word then sees stop too.
        turn->word.store(mine + 1, std::memory_order_release);
        mproc::detail::futex_wake(turn->word, 1);
        peer.join();
        sampler.report(state);
    });
}


std::optional<std::vector<std::int64_t>> run_python_peer(benchmark::State& state, const std::string& script,
                                                         const std::string& arguments,
                                                         std::size_t expected_count) {
    const std::string label = script.substr(script.find_last_of('/') + 1) + " " + arguments;
    const std::string command = "exec python3 " + shell_quoted(script) + " " + arguments + " 2>&1";
    FILE* output = ::popen(command.c_str(), "r");
    if (output == nullptr) throw_system_error(label + ": popen");
    std::string text;
    char chunk[512];
    while (const std::size_t got = std::fread(chunk, 1, sizeof chunk, output)) text.append(chunk, got);
    const int status = ::pclose(output);
    if (status == -1) throw_system_error(label + ": pclose");
    text.erase(text.find_last_not_of(" \n") + 1);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        skip(state, "python3 is not on PATH, so there is no Python figure: " + text);
        return std::nullopt;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw BenchFailure(label + " failed (wait status " + std::to_string(status) + "): " + text);
    }
    std::istringstream words(text);
    std::vector<std::int64_t> numbers;
    std::int64_t number = 0;
    while (words >> number) numbers.push_back(number);
    if (!words.eof() || numbers.size() != expected_count) {
        throw BenchFailure(label + ": expected " + std::to_string(expected_count) +
                           " integers on one line, printed: " + text);
    }
    return numbers;
}

void report_python_time(benchmark::State& state, std::int64_t elapsed_ns) {
    if (elapsed_ns <= 0) {
        throw BenchFailure("python peer: elapsed time " + std::to_string(elapsed_ns) + " ns is not positive");
    }
    const double seconds_per_item =
        static_cast<double>(elapsed_ns) * 1e-9 /
        static_cast<double>(std::max<benchmark::IterationCount>(state.max_iterations, 1));
    for (auto _ : state) state.SetIterationTime(seconds_per_item);
    state.SetItemsProcessed(state.iterations());
}

void report_python_round_trips(benchmark::State& state, const std::vector<std::int64_t>& figures) {
    if (figures.size() != 4) {
        throw BenchFailure("python peer: " + std::to_string(figures.size()) +
                           " figures, expected elapsed_ns p50_ns p99_ns p99.9_ns");
    }
    report_python_time(state, figures[0]);
    state.counters["p50_ns"] = static_cast<double>(figures[1]);
    state.counters["p99_ns"] = static_cast<double>(figures[2]);
    state.counters["p99.9_ns"] = static_cast<double>(figures[3]);
}

void fail(benchmark::State& state, const std::string& what) {
    // relaxed: read by main() after every benchmark returned, on the same thread.
    some_benchmark_failed.store(true, std::memory_order_relaxed);
    state.SkipWithError(what.c_str());
}

void skip(benchmark::State& state, const std::string& reason) { state.SkipWithError(reason.c_str()); }

bool any_benchmark_failed() noexcept {
    // relaxed: see fail().
    return some_benchmark_failed.load(std::memory_order_relaxed);
}

void Spinner::yield_and_check() {
    ::sched_yield();
    if (peer_ != nullptr) peer_->throw_if_ended();
    if ((spins_ & 0xFFFF) != 0) return;
    const std::int64_t now_ns = monotonic_now_ns();
    if (first_check_ns_ == 0) {
        first_check_ns_ = now_ns;
        return;
    }
    if (now_ns - first_check_ns_ > std::chrono::nanoseconds(kStallLimit).count()) {
        throw BenchFailure(std::string("stalled for more than ") + std::to_string(kStallLimit.count()) +
                           " s waiting for " + waiting_for_);
    }
}

void* map_shared_anonymous(std::size_t size) {
    void* mapping = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED)
        throw_system_error("benchmark shared block: mmap " + std::to_string(size) + " bytes");
    return mapping;
}

Pipe make_pipe(const std::string& what) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw_system_error(what + ": pipe2");
    return Pipe{UniqueFd(ends[0]), UniqueFd(ends[1])};
}

void write_all(int fd, const void* bytes, std::size_t size, const char* what) {
    const auto* next = static_cast<const char*>(bytes);
    while (size > 0) {
        const ssize_t written = ::write(fd, next, size);
        if (written < 0) {
            if (errno == EINTR) continue;
            throw_system_error(std::string(what) + ": write");
        }
        next += written;
        size -= static_cast<std::size_t>(written);
    }
}

std::size_t read_some(int fd, void* bytes, std::size_t size, const char* what) {
    for (;;) {
        const ssize_t got = ::read(fd, bytes, size);
        if (got >= 0) return static_cast<std::size_t>(got);
        if (errno != EINTR) throw_system_error(std::string(what) + ": read");
    }
}

// MPROC_BENCH_PIN="P,Q": the benchmark process on CPU P, its peers on CPU Q. Unset: no pinning.
std::optional<Peer::PinPlan> Peer::pin_plan_from_environment() {
    const char* text = std::getenv("MPROC_BENCH_PIN");
    if (text == nullptr || *text == '\0') return std::nullopt;
    PinPlan plan{};
    char trailing = 0;
    if (std::sscanf(text, "%d,%d%c", &plan.benchmark_cpu, &plan.peer_cpu, &trailing) != 2 ||
        plan.benchmark_cpu < 0 || plan.peer_cpu < 0 || plan.benchmark_cpu >= CPU_SETSIZE ||
        plan.peer_cpu >= CPU_SETSIZE) {
        throw BenchFailure("MPROC_BENCH_PIN='" + std::string(text) +
                           "': expected two CPU numbers \"benchmark_cpu,peer_cpu\" such as \"0,1\"");
    }
    return plan;
}

Peer::Peer(std::string name, std::function<void()> body)
    : Peer(std::move(name), std::move(body), pin_plan_from_environment()) {}

Peer::Peer(std::string name, std::function<void()> body, std::optional<PinPlan> plan)
    : name_(std::move(name)), process_(ProcessOptions{.name = name_, .daemon = true}, std::move(body)) {
    // A daemon's start() returns once the child runs (it has armed its death signal), so the first timed
    // iteration never waits for the peer's first scheduling.
    process_.start();
    // Pinned from here rather than by the peer itself, so a CPU that does not exist is reported at once.
    // Last, so that nothing can throw between pinning this process and the destructor that restores it.
    if (plan) {
        pin_process(process_.pid(), plan->peer_cpu, "benchmark peer '" + name_ + "'");
        cpu_set_t previous{};
        if (::sched_getaffinity(0, sizeof previous, &previous) != 0) {
            throw_system_error("benchmark peer '" + name_ + "': read the benchmark's CPU affinity");
        }
        pin_process(0, plan->benchmark_cpu, "benchmark process");
        restore_affinity_ = previous;
    }
}

Peer::~Peer() {
    if (restore_affinity_) ::sched_setaffinity(0, sizeof *restore_affinity_, &*restore_affinity_);
    // A daemon Process that was not joined is killed and reaped by its destructor.
}

void Peer::join() {
    if (!process_.join(kStallLimit)) {
        throw BenchFailure("benchmark peer '" + name_ + "' did not exit within " +
                           std::to_string(kStallLimit.count()) + " s of being told to stop");
    }
    const std::optional<int> status = process_.exitcode();
    if (status != 0) {
        const std::string error = process_.error();
        throw BenchFailure("benchmark peer '" + name_ + "' failed (exit code " +
                           std::to_string(status.value_or(0)) + ")" +
                           (error.empty() ? std::string() : ": " + error));
    }
}

void Peer::throw_if_ended() {
    if (process_.is_alive()) return;
    join();  // throws when the peer failed
    throw BenchFailure("benchmark peer '" + name_ + "' ended before it was told to stop");
}

LatencySampler::LatencySampler(const benchmark::State& state)
    // Value-initialising touches every page now, outside the timed loop.
    : samples_(std::min<std::size_t>(
          static_cast<std::size_t>(std::max<benchmark::IterationCount>(state.max_iterations, 1)), kCapacity)) {
    mark_sleeps();  // for a benchmark that record()s its samples and never calls start()
}

namespace {

// What `who` (RUSAGE_THREAD or RUSAGE_CHILDREN) has used: ru_nvcsw counts the waits that slept, ru_nivcsw
// the times the scheduler took the CPU away, ru_utime the CPU time spent in user space (a spin's).
// All -1 when getrusage() fails (it cannot for these two).
struct Usage {
    std::int64_t slept;
    std::int64_t preempted;
    std::int64_t user_ns;
};
Usage usage_of(int who) noexcept {
    rusage usage{};
    if (::getrusage(who, &usage) != 0) return {-1, -1, -1};
    return {usage.ru_nvcsw, usage.ru_nivcsw,
            static_cast<std::int64_t>(usage.ru_utime.tv_sec) * 1'000'000'000 +
                static_cast<std::int64_t>(usage.ru_utime.tv_usec) * 1'000};
}

}  // namespace

void LatencySampler::mark_sleeps() noexcept {
    const Usage thread = usage_of(RUSAGE_THREAD);
    const Usage children = usage_of(RUSAGE_CHILDREN);
    thread_at_start_ = {thread.slept, thread.preempted, thread.user_ns};
    children_at_start_ = {children.slept, children.preempted, children.user_ns};
}

namespace {

// A counter LatencySampler::report() set; BenchFailure naming `what` when it is missing.
double counter_of(const benchmark::State& state, const std::string& what, const char* name) {
    const auto found = state.counters.find(name);
    if (found == state.counters.end())
        throw BenchFailure(what + ": no counter " + name + " (LatencySampler::report() first)");
    return found->second.value;
}

}  // namespace

void require_sleeping_round_trips(const benchmark::State& state, const std::string& what) {
    if (state.iterations() < kLeastJudgedRoundTrips) return;
    const auto counter = [&](const char* name) { return counter_of(state, what, name); };
    const double mine_sleeps = counter("sleeps_per_rt");
    const double peer_sleeps = counter("peer_sleeps_per_rt");
    // A side preempted while it had the reply to hand over finds the next request waiting when it runs
    // again, without sleeping or spinning: where the sides share a CPU, few sleeps say nothing of a spin.
    if (counter("preempted_per_rt") + counter("peer_preempted_per_rt") >= kMostPreemptionsPerJudgedRoundTrip) return;
    if (mine_sleeps + peer_sleeps < kLeastSleepsPerRoundTrip) {
        std::ostringstream text;
        text << what << ": sleeps_per_rt " << mine_sleeps << " + peer_sleeps_per_rt " << peer_sleeps << " over "
             << state.iterations() << " round trips, below " << kLeastSleepsPerRoundTrip
             << ": the waits were caught spinning, not woken from sleep";
        throw BenchFailure(text.str());
    }
}

void require_waits_in_kernel(const benchmark::State& state, const LatencySampler& sampler,
                             const std::string& what) {
    if (state.iterations() < kLeastJudgedRoundTrips) return;
    const auto counter = [&](const char* name) { return counter_of(state, what, name); };
    const double user_ns = counter("user_ns_per_rt") + counter("peer_user_ns_per_rt");
    const double wall_ns = sampler.wall_ns_per_iteration(state);
    if (user_ns >= kMostUserTimePerRoundTrip * wall_ns) {
        std::ostringstream text;
        text << what << ": the two sides ran " << user_ns << " ns in user space per round trip of " << wall_ns
             << " ns (at least " << kMostUserTimePerRoundTrip << " of it; sleeps_per_rt " << counter("sleeps_per_rt")
             << " + peer_sleeps_per_rt " << counter("peer_sleeps_per_rt") << " over " << state.iterations()
             << " round trips): the waits were caught spinning, not in the kernel";
        throw BenchFailure(text.str());
    }
}

void LatencySampler::report(benchmark::State& state) {
    const std::size_t count = wrapped_ ? samples_.size() : next_;
    state.SetItemsProcessed(state.iterations());
    if (state.iterations() > 0) {
        const auto per_round_trip = [&](std::int64_t now, std::int64_t at_start) {
            return static_cast<double>(now - at_start) / static_cast<double>(state.iterations());
        };
        const Usage thread = usage_of(RUSAGE_THREAD);
        const Usage children = usage_of(RUSAGE_CHILDREN);
        state.counters["sleeps_per_rt"] = per_round_trip(thread.slept, thread_at_start_.slept);
        state.counters["peer_sleeps_per_rt"] = per_round_trip(children.slept, children_at_start_.slept);
        state.counters["preempted_per_rt"] = per_round_trip(thread.preempted, thread_at_start_.preempted);
        state.counters["user_ns_per_rt"] = per_round_trip(thread.user_ns, thread_at_start_.user_ns);
        state.counters["peer_user_ns_per_rt"] = per_round_trip(children.user_ns, children_at_start_.user_ns);
        state.counters["peer_preempted_per_rt"] = per_round_trip(children.preempted, children_at_start_.preempted);
    }
    if (count == 0) return;
    std::vector<std::uint32_t> sorted(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(count));
    std::sort(sorted.begin(), sorted.end());
    // Nearest rank: the smallest sample with at least `fraction` of all samples at or below it.
    const auto percentile = [&](double fraction) {
        const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(count)));
        return static_cast<double>(sorted[std::clamp<std::size_t>(rank, 1, count) - 1]);
    };
    state.counters["p50_ns"] = percentile(0.50);
    state.counters["p99_ns"] = percentile(0.99);
    state.counters["p99.9_ns"] = percentile(0.999);
}

}  // namespace mproc::bench
