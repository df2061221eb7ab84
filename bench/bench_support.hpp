// bench/bench_support.hpp — what every mproc benchmark whose participants are separate processes builds on.
//
// - Peer: a forked peer process (an mproc::Process, daemon) started before the timed loop and stopped
//   after it, so fork, the peer's first scheduling and reaping never fall inside the measurement. It is
//   killed by PR_SET_PDEATHSIG if the benchmark process dies, and killed and reaped by ~Peer when a
//   benchmark ends early; join() reports a peer that failed (its exception text) or did not stop.
// - SharedBlock<T>: one T in a shared anonymous mapping created before the fork, for the control words
//   and rings the two processes share. Page-aligned, so alignas(128) members keep their alignment.
// - LatencySampler: per-iteration round-trip times on CLOCK_MONOTONIC, one clock read per iteration,
//   reported as the counters p50_ns, p99_ns and p99.9_ns next to items_per_second, and the sleeps per
//   round trip of each side (sleeps_per_rt, peer_sleeps_per_rt), the preemptions and the user-space CPU
//   time; require_waits_in_kernel() fails a row that says it blocks when its waits ran in user space,
//   require_sleeping_round_trips() a wake-from-sleep row in which hardly anyone slept.
// - NoSpinBeforeSleep: turns the library's adaptive spin off for the calling thread, so that the rows
//   named "blocking" measure a sleep and a wake-up, the futex ceiling's work, and not a spin.
// - Spinner: the pause of a spin-wait; it yields the CPU after tens of microseconds (the other side may
//   need this CPU) and gives up (throws BenchFailure) after kStallLimit, so a dead peer or a protocol
//   bug ends the benchmark with an error instead of hanging it.
// - fail()/skip(): end a benchmark with an error. A failure also makes main() (bench_main.cpp) exit 1,
//   so the Meson 'bench' suite catches a benchmark that stopped measuring what it claims; a skip (a
//   missing python3) does not.
// - Pinning: nothing is pinned by default (the reference machine is a noisy 2-vCPU guest where pinning
//   onto a busy CPU hurts more than it helps). MPROC_BENCH_PIN="P,Q" pins the benchmark process to CPU P
//   and every peer to CPU Q for the lifetime of the Peer.
//
// - measure_cache_line_ping_pong(), measure_futex_ping_pong(), measure_raw_spsc_ring(): the cache-line and
//   futex ping-pong ceilings and the raw SPSC ring (BM_Ceiling_CacheLinePingPong, BM_Ceiling_FutexPingPong,
//   BM_Ceiling_RawSpscRing), callable from any binary so that a primitive's hand-off, wake latency or stream
//   is set beside a ceiling measured in the same run; SequencedMessage and describe_mismatch() for streams.
// - run_python_peer(): runs a Python peer script (bench/peers/) whose loop is timed inside Python, and
//   report_python_time() turns its elapsed time into the benchmark's manual time.
//
// Register every benchmark with a peer with UseRealTime(): the benchmark process sleeps in futex_wait or
// read() while the peer works, and Google Benchmark computes rates from CPU time otherwise.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <sched.h>
#include <sys/mman.h>

#include <benchmark/benchmark.h>

#include "adaptive_spin.hpp"  // src/ (private): this_thread_spin_budget(), turned off by NoSpinBeforeSleep
#include "deadline.hpp"  // src/ (private): Deadline::monotonic_now_ns, the clock every sample is read on
#include "mproc/process.hpp"
#include "mproc/unique_fd.hpp"

namespace mproc::bench {

using namespace std::chrono_literals;

// How long one wait (for a peer's reply, for a peer to exit) may take before the benchmark reports the
// peer as stalled. Generous: a busy 2-vCPU guest can deschedule a process for hundreds of milliseconds.
inline constexpr std::chrono::seconds kStallLimit = 10s;

// A broken protocol, a wrong value received, a peer that died or stalled.
class BenchFailure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Ends the benchmark with `what` and marks the run failed (main() exits 1). Call, then return.
void fail(benchmark::State& state, const std::string& what);
// Ends the benchmark with `reason` without failing the run: for a peer that is missing on this machine.
void skip(benchmark::State& state, const std::string& reason);
// Whether any benchmark called fail() (read by main()).
bool any_benchmark_failed() noexcept;

// Runs body(); a BenchFailure or mproc::Error it throws becomes fail(state, what). Google Benchmark does
// not catch exceptions, and SkipWithError stops the timer, so leaving the timed loop by a throw is safe.
template <class Body>
void run_guarded(benchmark::State& state, Body&& body) {
    try {
        body();
    } catch (const std::exception& error) {
        fail(state, error.what());
    }
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

inline std::int64_t monotonic_now_ns() noexcept { return mproc::detail::Deadline::monotonic_now_ns(); }

// Returns a zero-filled shared anonymous mapping of `size` bytes; throws SystemError when mmap fails.
void* map_shared_anonymous(std::size_t size);

// One T in a MAP_SHARED | MAP_ANONYMOUS mapping: the parent creates it before the peer forks, both see
// the same bytes afterwards. T must be usable by two processes at once: no pointers, lock-free atomics.
template <class T>
class SharedBlock {
    static_assert(std::is_standard_layout_v<T>, "a block two processes share must be standard layout");
    static_assert(std::is_trivially_destructible_v<T>,
                  "the block is unmapped, never destroyed: whichever process exits last must not need to");
    static_assert(alignof(T) <= 4096, "the mapping is only page aligned");

public:
    SharedBlock() : mapping_(map_shared_anonymous(sizeof(T))) { object_ = ::new (mapping_) T{}; }
    SharedBlock(const SharedBlock&) = delete;
    SharedBlock& operator=(const SharedBlock&) = delete;
    ~SharedBlock() { ::munmap(mapping_, sizeof(T)); }

    T& operator*() const noexcept { return *object_; }
    T* operator->() const noexcept { return object_; }

private:
    void* mapping_;
    T* object_;
};

// An owned file descriptor, closed on destruction (in the process that runs the destructor: a forked
// peer leaves by _exit and closes what it must close by hand): the library's own.
using UniqueFd = mproc::UniqueFd;

struct Pipe {
    UniqueFd read_end;
    UniqueFd write_end;
};

// pipe2(O_CLOEXEC); throws SystemError naming `what`.
Pipe make_pipe(const std::string& what);

// write() until all `size` bytes are written, retrying EINTR; throws SystemError naming `what`.
void write_all(int fd, const void* bytes, std::size_t size, const char* what);

// read() of up to `size` bytes, retrying EINTR; 0 at end of file; throws SystemError naming `what`.
std::size_t read_some(int fd, void* bytes, std::size_t size, const char* what);

// A peer process running body while the benchmark runs. The constructor returns once the peer runs (so
// the first timed iteration does not wait for the peer to be scheduled for the first time). Tell it to stop
// through shared memory or a pipe after the loop, then join(). When the Peer is destroyed without a
// successful join (the benchmark failed), the peer is killed and reaped.
class Peer {
public:
    Peer(std::string name, std::function<void()> body);
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;
    ~Peer();

    // Waits up to kStallLimit for the peer to exit; throws BenchFailure naming the peer when it does not,
    // or when it ended other than by returning from body (its exception text is in the message).
    void join();

    // Throws BenchFailure when the peer has ended although it was not told to stop (with its exception
    // text when it failed). One waitid() system call.
    void throw_if_ended();

    // A pollable descriptor that becomes readable when the peer ends (mproc::Process::sentinel()).
    int sentinel() const { return process_.sentinel(); }

private:
    struct PinPlan {
        int benchmark_cpu;
        int peer_cpu;
    };
    static std::optional<PinPlan> pin_plan_from_environment();
    Peer(std::string name, std::function<void()> body, std::optional<PinPlan> plan);

    std::string name_;
    std::optional<cpu_set_t> restore_affinity_;  // set when MPROC_BENCH_PIN pinned this process
    mproc::Process process_;
};

// The pause inside a spin-wait. Every 1024 pauses (tens of microseconds, far above any hand-off between
// two running CPUs) it yields the CPU — on an oversubscribed 2-vCPU guest the other side may be waiting
// for this very CPU, and spinning through a whole time slice would measure the scheduler, not the
// hand-off — and checks that the peer still runs. The clock is read once per 65536 pauses. All of it is
// off the path that matters: a wait that ends within microseconds.
class Spinner {
public:
    // peer: the process whose move is awaited, checked at every yield so that its death (and the reason
    // for it) is reported at once; nullptr in a peer waiting for the benchmark process, whose death
    // kills the peer anyway.
    explicit Spinner(const char* waiting_for, Peer* peer = nullptr) noexcept
        : waiting_for_(waiting_for), peer_(peer) {}

    void pause() {
        cpu_relax();
        if ((++spins_ & 0x3FF) == 0) yield_and_check();
    }

private:
    void yield_and_check();

    const char* waiting_for_;
    Peer* peer_;
    std::uint64_t spins_ = 0;
    std::int64_t first_check_ns_ = 0;
};

// Per-iteration latency of a round-trip benchmark. Call start() just before the timed loop and lap() once
// at the end of every iteration: a sample is the time since the previous lap (or start), which includes
// the loop's own overhead — one clock read per iteration instead of two. The sample buffer is allocated
// and touched before the loop, so no page fault lands inside a sample; past its capacity the oldest
// samples are overwritten (percentiles then describe the last kCapacity iterations).
//
// It also counts sleeps, the proof that a round trip named "blocking" blocks: voluntary context switches
// (getrusage's ru_nvcsw: the thread left the CPU because it waited — a FUTEX_WAIT or a read() that found
// nothing; a sched_yield() or a preemption is involuntary, a FUTEX_WAIT that returned at once is neither)
// per iteration, reported as two counters:
//   sleeps_per_rt       the benchmark thread's (RUSAGE_THREAD), from start() (or construction) to report();
//   peer_sleeps_per_rt  the peer processes reaped in that time (RUSAGE_CHILDREN grows by a child's whole
//                       count when it is reaped): call report() after joining the peers.
// Both include the few sleeps around the loop (a peer's start, its last wait, the join), a handful in all:
// a round trip that sleeps on both sides reads about 1 and 1, one that a spin catches about 0.
class LatencySampler {
public:
    static constexpr std::size_t kCapacity = std::size_t{1} << 22;  // 16 MiB of samples
    static constexpr std::uint32_t kSaturated = UINT32_MAX;         // ~4.3 s: longer samples read as this

    explicit LatencySampler(const benchmark::State& state);

    void start() noexcept {
        mark_sleeps();
        previous_ns_ = monotonic_now_ns();
        started_ns_ = previous_ns_;
    }

    void lap() noexcept {
        const std::int64_t now_ns = monotonic_now_ns();
        record(now_ns - previous_ns_);
        previous_ns_ = now_ns;
    }

    // Records a sample the caller measured instead (with manual time: a sample that leaves out work the
    // iteration does around what is measured). A benchmark uses either lap() or record(), not both.
    void record(std::int64_t elapsed_ns) noexcept {
        samples_[next_] = elapsed_ns <= 0 ? 0
                          : elapsed_ns < kSaturated ? static_cast<std::uint32_t>(elapsed_ns)
                                                    : kSaturated;
        if (++next_ == samples_.size()) {
            next_ = 0;
            wrapped_ = true;
        }
    }

    // Sets p50_ns, p99_ns, p99.9_ns (nearest rank), items_per_second (one item per iteration),
    // sleeps_per_rt and peer_sleeps_per_rt (voluntary context switches per iteration), preempted_per_rt and
    // peer_preempted_per_rt (involuntary ones), user_ns_per_rt and peer_user_ns_per_rt (CPU time in user
    // space). The peer's figures count once it has been reaped: call after joining it.
    void report(benchmark::State& state);

    // Wall time from start() to the last lap(), per iteration; 0 before both.
    double wall_ns_per_iteration(const benchmark::State& state) const noexcept {
        return state.iterations() > 0 ? static_cast<double>(previous_ns_ - started_ns_) /
                                             static_cast<double>(state.iterations())
                                       : 0.0;
    }

private:
    void mark_sleeps() noexcept;  // the usage figures report()'s counters start from

    struct UsageAtStart {
        std::int64_t slept = 0;
        std::int64_t preempted = 0;
        std::int64_t user_ns = 0;
    };
    UsageAtStart thread_at_start_;
    UsageAtStart children_at_start_;
    std::int64_t started_ns_ = 0;
    std::vector<std::uint32_t> samples_;  // nanoseconds
    std::size_t next_ = 0;
    bool wrapped_ = false;
    std::int64_t previous_ns_ = 0;
};

// While it lives, the calling thread does not spin before it sleeps in the library's blocking calls that
// use the adaptive spin (src/adaptive_spin.hpp: Queue get/put, Pipe recv/send), so such a call that finds
// nothing sleeps in FUTEX_WAIT at once. For the round trips named "blocking": without it the reply
// usually arrives while get() still spins, and the row would compare a spin with the futex ceiling's two
// sleeps. Construct it in the benchmark thread and in the peer, on each side of the round trip.
class NoSpinBeforeSleep {
public:
    NoSpinBeforeSleep() noexcept { mproc::detail::this_thread_spin_budget().set_spinning(false); }
    NoSpinBeforeSleep(const NoSpinBeforeSleep&) = delete;
    NoSpinBeforeSleep& operator=(const NoSpinBeforeSleep&) = delete;
    ~NoSpinBeforeSleep() { mproc::detail::this_thread_spin_budget().set_spinning(true); }
};

// For a wake-from-sleep row (the peer waits longer than a spin lasts before each wake-up), after
// LatencySampler::report(): throws BenchFailure naming `what` when the two sides together slept in fewer
// than kLeastSleepsPerRoundTrip of the round trips — a spin outlasted the pause and caught the signal. Not
// judged: runs of fewer than kLeastJudgedRoundTrips; runs in which the sides were preempted in
// kMostPreemptionsPerJudgedRoundTrip of the round trips or more (sharing a CPU, a side woken by its peer
// takes the CPU from it, and the peer finds the next request waiting when it runs again, neither sleeping
// nor spinning).
inline constexpr double kLeastSleepsPerRoundTrip = 0.1;
inline constexpr double kMostPreemptionsPerJudgedRoundTrip = 0.05;
void require_sleeping_round_trips(const benchmark::State& state, const std::string& what);

// For a round trip whose row says it blocks (the spin off on both sides), after LatencySampler::report(): throws BenchFailure naming
// `what` when the two sides together spent kMostUserTimePerRoundTrip of the round trip's wall time or more
// in user space — a spin caught the replies, and the row would set a spin beside the futex ceiling's
// sleeps. A get() with the spin off waits in the kernel: in FUTEX_WAIT, or in the membarrier() before it
// when that takes as long as the reply (on this kind of guest a membarrier costs microseconds and two
// concurrent ones queue on a kernel mutex, so such a row may sleep in as few as 1 round trip in 20 and
// still spend under a tenth of its time in user space), or preempted on a machine without an idle CPU per
// side. Counting sleeps would fail those rows; user time tells a spin from all of them. Not judged: runs of
// fewer than kLeastJudgedRoundTrips, which those first round trips would decide; rows of messages larger
// than kLargestJudgedMessage (the caller leaves them out), whose copying and checking in user space is
// most of the round trip (a 64 KiB one spent more than half of it there in a debug build).
inline constexpr double kMostUserTimePerRoundTrip = 0.5;
inline constexpr std::size_t kLargestJudgedMessage = 4096;
inline constexpr benchmark::IterationCount kLeastJudgedRoundTrips = 1000;
void require_waits_in_kernel(const benchmark::State& state, const LatencySampler& sampler,
                             const std::string& what);

// The cache-line ping-pong ceiling: the benchmark writes round k into one cache line, the peer copies it
// into another, both spinning. A round trip is two cache-line transfers: the floor under any hand-off
// between two running processes. Reports p50_ns/p99_ns/p99.9_ns and items_per_second (round trips).
// Register with UseRealTime().
void measure_cache_line_ping_pong(benchmark::State& state);

// Messages of the ceiling streams: every 8-byte word carries the sequence number, so the receiver can tell
// a lost, repeated or torn message by looking at the first and the last word.
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

// "<stream>: expected message <expected>, received one starting with <first_word>".
std::string describe_mismatch(const char* stream, std::uint64_t expected, std::uint64_t first_word);

// The raw SPSC ring ceiling (BM_Ceiling_RawSpscRing/N): N-byte messages (state.range(0): 8 or 64) through the
// smallest correct SPSC ring in shared memory, from a forked producer. Callable from any binary, so that a
// queue's stream is set beside a ring measured in the same run and the same conditions. Register with
// UseRealTime().
void measure_raw_spsc_ring(benchmark::State& state);

// The futex ping-pong ceiling: one shared word, odd values the peer's turn, even the benchmark's; each
// side sleeps in FUTEX_WAIT until the other stores its value and calls FUTEX_WAKE. A round trip is two
// wake-ups through the kernel and nothing else: the floor under the wake latency of every blocking
// primitive. Reports p50_ns/p99_ns/p99.9_ns and items_per_second (round trips). Register with UseRealTime().
void measure_futex_ping_pong(benchmark::State& state);

// Runs `python3 script arguments` (arguments are passed to the shell as written: numbers and words only)
// and returns the integers it printed on its one line of output. When python3 is not on PATH, calls
// skip() and returns nullopt. Throws BenchFailure when the script fails, or prints anything but
// expected_count integers.
std::optional<std::vector<std::int64_t>> run_python_peer(benchmark::State& state, const std::string& script,
                                                         const std::string& arguments,
                                                         std::size_t expected_count);

// For a benchmark registered with UseManualTime() whose work a Python script did, timed inside Python:
// runs the benchmark loop, giving every iteration an equal share of elapsed_ns (the script's loop of
// state.max_iterations items), and sets items_per_second.
void report_python_time(benchmark::State& state, std::int64_t elapsed_ns);
// The same for a script that printed "elapsed_ns p50_ns p99_ns p99.9_ns" of round trips timed one by one:
// also sets the three percentile counters the LatencySampler sets on the C++ side.
void report_python_round_trips(benchmark::State& state, const std::vector<std::int64_t>& figures);

}  // namespace mproc::bench
