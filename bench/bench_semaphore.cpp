// bench/bench_semaphore.cpp — how fast a Semaphore wakes a process asleep in acquire(), beside the
// process-shared semaphores other libraries offer and beside the futex ping-pong ceiling, in one run:
//   BM_Semaphore_WakeLatency/mproc          mproc::Semaphore(0), acquire() / release()
//   BM_Semaphore_WakeLatency/sem_t          POSIX sem_t, sem_init(pshared = 1) in a shared mapping
//   BM_Semaphore_WakeLatency/boost          boost::interprocess::interprocess_semaphore in
//                                           anonymous_shared_memory (built when Boost is found)
//   BM_Semaphore_WakeLatency/python         multiprocessing.Semaphore, timed inside python3 by
//                                           bench/peers/python_wake.py (manual time)
//   BM_Semaphore_WakeLatency/futex_ceiling  the futex ping-pong ceiling (bench_support.hpp)
// Wake latency is a round trip through two semaphores, ping and pong, both starting at 0: the benchmark
// releases ping and acquires pong, the peer acquires ping and releases pong (bench_wake_latency.hpp).
// Every entry reports p50_ns/p99_ns/p99.9_ns per round trip and items_per_second (round trips per
// second). Target (reported, never asserted): mproc within 1.2× the ceiling.
//   BM_Semaphore_WakeFromSleep/{mproc,sem_t,boost,futex_ceiling}
//     the same round trip with each waiter surely asleep when signalled (bench_wake_latency.hpp): the
//     two one-way wake-ups summed, beside the same protocol on two bare futex words (/futex_ceiling).
#include <cerrno>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <semaphore.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "bench_wake_latency.hpp"
#include "mproc/error.hpp"
#include "mproc/semaphore.hpp"

#ifdef MPROC_BENCH_HAVE_BOOST
#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/sync/interprocess_semaphore.hpp>
#endif

#ifndef MPROC_BENCH_PEERS_DIR
#error "bench/meson.build defines MPROC_BENCH_PEERS_DIR, the directory of the peer scripts"
#endif

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::kWakeFromSleepMinTime;

// A ping/pong pair of any semaphore with acquire-like wait() and release-like post().
template <class Semaphore>
struct SemaphorePair {
    Semaphore ping;
    Semaphore pong;

    void send() { ping.post(); }
    void await_reply() { pong.wait(); }
    void await_request() { ping.wait(); }
    void reply() { pong.post(); }
};

class MprocSemaphore {
public:
    void post() { semaphore_.release(); }
    void wait() {
        if (!semaphore_.acquire()) throw BenchFailure("mproc::Semaphore: acquire() without timeout returned false");
    }

private:
    mproc::Semaphore semaphore_{0};  // anonymous: the segment is mapped before the fork, the peer inherits it
};

// sem_t as sem_init(3) prescribes for processes: pshared = 1, in memory both processes map.
class PosixSemaphore {
public:
    PosixSemaphore() {
        if (::sem_init(&block_->semaphore, 1, 0) != 0) mproc::throw_system_error("sem_t: sem_init(pshared = 1)");
    }
    PosixSemaphore(const PosixSemaphore&) = delete;
    PosixSemaphore& operator=(const PosixSemaphore&) = delete;
    ~PosixSemaphore() { ::sem_destroy(&block_->semaphore); }

    void post() {
        if (::sem_post(&block_->semaphore) != 0) mproc::throw_system_error("sem_t: sem_post");
    }
    void wait() {
        while (::sem_wait(&block_->semaphore) != 0) {
            if (errno != EINTR) mproc::throw_system_error("sem_t: sem_wait");
        }
    }

private:
    struct Slot {
        alignas(64) sem_t semaphore;  // a line of its own, as mproc's semaphore has
    };
    mproc::bench::SharedBlock<Slot> block_;
};

#ifdef MPROC_BENCH_HAVE_BOOST
// interprocess_semaphore constructed in anonymous_shared_memory, Boost.Interprocess's shared memory for
// processes related by fork.
class BoostSemaphore {
public:
    using Semaphore = boost::interprocess::interprocess_semaphore;

    BoostSemaphore()
        : region_(boost::interprocess::anonymous_shared_memory(sizeof(Semaphore))),
          semaphore_(::new (region_.get_address()) Semaphore(0)) {}
    BoostSemaphore(const BoostSemaphore&) = delete;
    BoostSemaphore& operator=(const BoostSemaphore&) = delete;
    ~BoostSemaphore() { semaphore_->~Semaphore(); }

    void post() { semaphore_->post(); }
    void wait() { semaphore_->wait(); }

private:
    boost::interprocess::mapped_region region_;
    Semaphore* semaphore_;
};
#endif

template <class Semaphore>
void BM_Semaphore_WakeLatency(benchmark::State& state, std::type_identity<Semaphore>, const char* label) {
    mproc::bench::run_guarded(state, [&] {
        SemaphorePair<Semaphore> pair;
        mproc::bench::measure_wake_latency(state, pair, label);
    });
}

template <class Semaphore>
void BM_Semaphore_WakeFromSleep(benchmark::State& state, std::type_identity<Semaphore>, const char* label) {
    mproc::bench::run_guarded(state, [&] {
        SemaphorePair<Semaphore> pair;
        mproc::bench::measure_wake_from_sleep(state, pair, label);
    });
}

void BM_Semaphore_WakeFromSleepCeiling(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::bench::FutexFlagPair pair;
        mproc::bench::measure_wake_from_sleep(state, pair, "bare futex");
    });
}

void BM_Semaphore_WakeLatencyPython(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const std::optional<std::vector<std::int64_t>> figures = mproc::bench::run_python_peer(
            state, std::string(MPROC_BENCH_PEERS_DIR) + "/python_wake.py",
            "semaphore " + std::to_string(state.max_iterations), 4);
        if (!figures) return;
        mproc::bench::report_python_round_trips(state, *figures);
    });
}

BENCHMARK_CAPTURE(BM_Semaphore_WakeLatency, mproc, std::type_identity<MprocSemaphore>{}, "mproc::Semaphore")
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Semaphore_WakeLatency, sem_t, std::type_identity<PosixSemaphore>{}, "sem_t")->UseRealTime();
#ifdef MPROC_BENCH_HAVE_BOOST
BENCHMARK_CAPTURE(BM_Semaphore_WakeLatency, boost, std::type_identity<BoostSemaphore>{}, "interprocess_semaphore")
    ->UseRealTime();
#endif
BENCHMARK(BM_Semaphore_WakeLatencyPython)->Name("BM_Semaphore_WakeLatency/python")->UseManualTime();
BENCHMARK(mproc::bench::measure_futex_ping_pong)->Name("BM_Semaphore_WakeLatency/futex_ceiling")->UseRealTime();

BENCHMARK_CAPTURE(BM_Semaphore_WakeFromSleep, mproc, std::type_identity<MprocSemaphore>{}, "mproc::Semaphore")
    ->UseManualTime()->MinTime(kWakeFromSleepMinTime);
BENCHMARK_CAPTURE(BM_Semaphore_WakeFromSleep, sem_t, std::type_identity<PosixSemaphore>{}, "sem_t")
    ->UseManualTime()->MinTime(kWakeFromSleepMinTime);
#ifdef MPROC_BENCH_HAVE_BOOST
BENCHMARK_CAPTURE(BM_Semaphore_WakeFromSleep, boost, std::type_identity<BoostSemaphore>{}, "interprocess_semaphore")
    ->UseManualTime()->MinTime(kWakeFromSleepMinTime);
#endif
BENCHMARK(BM_Semaphore_WakeFromSleepCeiling)
    ->Name("BM_Semaphore_WakeFromSleep/futex_ceiling")
    ->UseManualTime()
    ->MinTime(kWakeFromSleepMinTime);

}  // namespace

