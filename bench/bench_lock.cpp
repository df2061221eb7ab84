// bench/bench_lock.cpp — what mproc::Lock costs, beside the process-shared mutexes other libraries offer,
// measured in one run. Each benchmark has one entry per implementation:
//   /mproc         mproc::Lock (anonymous: its segment is mapped before the fork, the peer inherits it)
//   /mproc_raw     mproc::RawLock in a shared mapping (BM_Lock_Uncontended only): the lock without the handle
//   /glibc_robust  pthread_mutex_t with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST in a shared
//                  mapping, every lock checked for EOWNERDEAD — the robust mutex mproc::Lock replaces
//   /boost         boost::interprocess::interprocess_mutex in anonymous_shared_memory (built when Boost
//                  is found; on Linux a process-shared, not robust, pthread mutex)
//   /python        multiprocessing.Lock, timed inside python3 by bench/peers/python_lock.py (manual time)
//
//   BM_Lock_Uncontended  lock + unlock in one process, nobody else using the lock; items_per_second is
//                        lock+unlock pairs. Target (reported, never asserted): mproc no slower than
//                        glibc_robust.
//   BM_Lock_Handoff      contended hand-off: two processes each repeatedly lock, add one to a shared
//                        counter, unlock, as fast as they can. items_per_second counts the acquisitions
//                        of both processes during the timed loop (benchmark_share: the fraction that were
//                        the benchmark process's; the lock is not fair, so this shows who won). The final
//                        counter is checked against the sum of both processes' acquisitions: the
//                        increment is a separate load and store, so a lock that let both in at once
//                        would lose some. Target: mproc at least as fast as glibc_robust.
//   BM_Lock_PingPong     strict alternation: a turn number written only under the lock. Each side waits
//                        for its turn by reading the number outside the lock (a spin-wait), then takes
//                        the lock, checks the number and advances it. Ownership therefore alternates,
//                        and every lock() takes a lock the other process released last: the cost of
//                        moving the lock (its word, the robust-list bookkeeping) between processes. One
//                        iteration is one round trip, reported as p50_ns/p99_ns/p99.9_ns and
//                        items_per_second. Beside it: /cache_line_ceiling (the cache-line ping-pong
//                        ceiling: two spinning processes, no lock, the floor under this protocol) and
//                        /futex_ceiling (the same hand-off through sleep and wake-up instead of spinning).
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <pthread.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/error.hpp"
#include "mproc/lock.hpp"

#ifdef MPROC_BENCH_HAVE_BOOST
#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#endif

#ifndef MPROC_BENCH_PEERS_DIR
#error "bench/meson.build defines MPROC_BENCH_PEERS_DIR, the directory of the peer scripts"
#endif

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;
using mproc::bench::Peer;
using mproc::bench::SharedBlock;
using mproc::bench::Spinner;

// 128, not 64: the adjacent-line prefetcher of many x86 cores pulls 64-byte lines in pairs.
constexpr std::size_t kSeparation = 128;

const std::string kPythonLockScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_lock.py";

// ---------------------------------------------------------------------------------------------------------
// The peers, each a Lockable made as its documentation prescribes for processes.

// pthread_mutexattr_setpshared(PTHREAD_PROCESS_SHARED) + pthread_mutexattr_setrobust(PTHREAD_MUTEX_ROBUST),
// the mutex in memory both processes map, and every lock checked for EOWNERDEAD (pthread_mutex_lock(3)).
class GlibcRobustMutex {
public:
    GlibcRobustMutex() {
        pthread_mutexattr_t attributes;
        check(::pthread_mutexattr_init(&attributes), "pthread_mutexattr_init");
        const int shared = ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
        const int robust = ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
        const int made = shared != 0 || robust != 0 ? 0 : ::pthread_mutex_init(&block_->mutex, &attributes);
        ::pthread_mutexattr_destroy(&attributes);
        check(shared, "pthread_mutexattr_setpshared");
        check(robust, "pthread_mutexattr_setrobust");
        check(made, "pthread_mutex_init");
    }
    GlibcRobustMutex(const GlibcRobustMutex&) = delete;
    GlibcRobustMutex& operator=(const GlibcRobustMutex&) = delete;
    ~GlibcRobustMutex() { ::pthread_mutex_destroy(&block_->mutex); }

    void lock() {
        const int result = ::pthread_mutex_lock(&block_->mutex);
        if (result == 0) [[likely]]
            return;
        if (result == EOWNERDEAD) {
            // Nobody dies in these benchmarks: a death means the measurement is void.
            ::pthread_mutex_consistent(&block_->mutex);
            ::pthread_mutex_unlock(&block_->mutex);
            throw BenchFailure("glibc robust mutex: the previous owner died holding it");
        }
        check(result, "pthread_mutex_lock");
    }
    void unlock() { check(::pthread_mutex_unlock(&block_->mutex), "pthread_mutex_unlock"); }

private:
    static void check(int result, const char* operation) {
        if (result != 0) [[unlikely]] {
            errno = result;
            mproc::throw_system_error(std::string("glibc robust mutex: ") + operation);
        }
    }

    struct Slot {
        alignas(64) pthread_mutex_t mutex;  // a line of its own, as mproc's lock has
    };
    SharedBlock<Slot> block_;
};

// mproc::RawLock placed in caller memory: the lock without the handle (its segment, its checks), to show
// what the handle adds.
class MprocRawLock {
public:
    MprocRawLock() : lock_(mproc::RawLock::init(&block_->bytes)) {}

    void lock() { lock_.lock(); }
    void unlock() { lock_.unlock(); }

private:
    struct Slot {
        alignas(mproc::RawLock::kAlignment) unsigned char bytes[mproc::RawLock::kSize];
    };
    SharedBlock<Slot> block_;
    mproc::RawLock& lock_;
};

#ifdef MPROC_BENCH_HAVE_BOOST
// interprocess_mutex constructed in anonymous_shared_memory, Boost.Interprocess's shared memory for
// processes related by fork.
class BoostMutex {
public:
    using Mutex = boost::interprocess::interprocess_mutex;

    BoostMutex()
        : region_(boost::interprocess::anonymous_shared_memory(sizeof(Mutex))),
          mutex_(::new (region_.get_address()) Mutex) {}
    BoostMutex(const BoostMutex&) = delete;
    BoostMutex& operator=(const BoostMutex&) = delete;
    ~BoostMutex() { mutex_->~Mutex(); }

    void lock() { mutex_->lock(); }
    void unlock() { mutex_->unlock(); }

private:
    boost::interprocess::mapped_region region_;
    Mutex* mutex_;
};
#endif

// ---------------------------------------------------------------------------------------------------------
// BM_Lock_Uncontended

template <class Mutex>
void BM_Lock_Uncontended(benchmark::State& state, std::type_identity<Mutex>) {
    mproc::bench::run_guarded(state, [&] {
        Mutex mutex;
        std::int64_t counter = 0;
        for (auto _ : state) {
            std::lock_guard guard(mutex);
            ++counter;
            benchmark::DoNotOptimize(counter);
        }
        if (counter != state.iterations()) {
            throw BenchFailure("uncontended lock: counter " + std::to_string(counter) + " after " +
                               std::to_string(state.iterations()) + " iterations");
        }
        state.SetItemsProcessed(state.iterations());
    });
}

// ---------------------------------------------------------------------------------------------------------
// BM_Lock_Handoff

struct HandoffShared {
    // Guarded by the lock under test: read and written only while holding it, so relaxed accesses.
    alignas(kSeparation) std::atomic<std::uint64_t> counter;
    alignas(kSeparation) std::atomic<std::uint32_t> stop;  // set once by the benchmark process
    std::atomic<std::uint32_t> peer_running;               // set once by the peer
    std::atomic<std::uint64_t> peer_acquisitions;          // written by the peer as it leaves
};
static_assert(std::is_standard_layout_v<HandoffShared> && offsetof(HandoffShared, stop) == kSeparation,
              "the counter the lock guards must not share a line with the control words");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the words are shared between processes");

// A load and a store, not one read-modify-write: if the lock let both processes in at once, one
// increment would overwrite the other and the final count would come up short.
template <class Mutex>
void add_one_under(Mutex& mutex, std::atomic<std::uint64_t>& counter) {
    std::lock_guard guard(mutex);
    // relaxed (both): the lock orders them; acquiring it happens-after the previous holder's release.
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

template <class Mutex>
std::uint64_t read_under(Mutex& mutex, const std::atomic<std::uint64_t>& counter) {
    std::lock_guard guard(mutex);
    // relaxed: the lock orders it.
    return counter.load(std::memory_order_relaxed);
}

template <class Mutex>
void add_until_stopped(Mutex& mutex, HandoffShared& shared) {
    // release: pairs with the benchmark's acquire load; nothing is published with it but the news.
    shared.peer_running.store(1, std::memory_order_release);
    std::uint64_t acquisitions = 0;
    // relaxed: stop only asks the peer to leave; what it must see comes through the lock.
    while (shared.stop.load(std::memory_order_relaxed) == 0) {
        add_one_under(mutex, shared.counter);
        ++acquisitions;
    }
    // release: pairs with the benchmark's acquire load after join().
    shared.peer_acquisitions.store(acquisitions, std::memory_order_release);
}

template <class Mutex>
void BM_Lock_Handoff(benchmark::State& state, std::type_identity<Mutex>) {
    mproc::bench::run_guarded(state, [&] {
        Mutex mutex;
        SharedBlock<HandoffShared> shared;
        Peer peer("lock hand-off", [&] { add_until_stopped(mutex, *shared); });
        {
            Spinner spinner("the hand-off peer to start", &peer);
            // acquire: pairs with the peer's release store.
            while (shared->peer_running.load(std::memory_order_acquire) == 0) spinner.pause();
        }
        const std::uint64_t before = read_under(mutex, shared->counter);
        for (auto _ : state) add_one_under(mutex, shared->counter);
        const std::uint64_t after = read_under(mutex, shared->counter);
        // relaxed: see the peer's load.
        shared->stop.store(1, std::memory_order_relaxed);
        peer.join();
        // acquire: pairs with the peer's release store (the peer has exited, so its stores are final).
        const std::uint64_t peer_acquisitions = shared->peer_acquisitions.load(std::memory_order_acquire);
        const std::uint64_t total = read_under(mutex, shared->counter);
        const auto own_acquisitions = static_cast<std::uint64_t>(state.iterations());
        if (total != own_acquisitions + peer_acquisitions) {
            throw BenchFailure("lock hand-off: counter " + std::to_string(total) + " after " +
                               std::to_string(own_acquisitions) + " + " + std::to_string(peer_acquisitions) +
                               " increments: mutual exclusion broken");
        }
        const std::uint64_t timed_acquisitions = after - before;
        state.SetItemsProcessed(static_cast<std::int64_t>(timed_acquisitions));
        state.counters["benchmark_share"] =
            timed_acquisitions == 0 ? 0.0
                                    : static_cast<double>(own_acquisitions) / static_cast<double>(timed_acquisitions);
    });
}

// ---------------------------------------------------------------------------------------------------------
// BM_Lock_PingPong

struct PingPongShared {
    // Written only under the lock under test; read outside it by the side waiting for its turn.
    // Even: the benchmark's turn; odd: the peer's.
    alignas(kSeparation) std::atomic<std::uint64_t> turn;
};
static_assert(std::is_standard_layout_v<PingPongShared>);

// Never a turn either side waits for: tells the peer to leave.
constexpr std::uint64_t kStopTurn = UINT64_MAX;

// Waits, outside the lock, until the turn is `wanted` or kStopTurn (returned), or throws on any other value
// than `current` (the turn before it changes hands).
std::uint64_t await_turn(const PingPongShared& shared, std::uint64_t current, std::uint64_t wanted,
                         Spinner& spinner) {
    for (;;) {
        // acquire: pairs with the release half of the other side's unlock (the turn is written under the
        // lock); the turn is then taken under the lock again, which is what the benchmark measures.
        const std::uint64_t seen = shared.turn.load(std::memory_order_acquire);
        if (seen == wanted || seen == kStopTurn) return seen;
        if (seen != current) {
            throw BenchFailure("lock ping-pong: turn " + std::to_string(seen) + " while waiting for " +
                               std::to_string(wanted));
        }
        spinner.pause();
    }
}

// Takes the lock, checks that the turn is still `expected` and hands it on.
template <class Mutex>
void pass_turn(Mutex& mutex, PingPongShared& shared, std::uint64_t expected) {
    std::lock_guard guard(mutex);
    // relaxed: the lock orders it.
    const std::uint64_t seen = shared.turn.load(std::memory_order_relaxed);
    if (seen != expected) {
        throw BenchFailure("lock ping-pong: turn " + std::to_string(seen) + " under the lock, expected " +
                           std::to_string(expected));
    }
    // release: the other side's acquire load in await_turn may see it before the lock is released; the
    // lock itself still orders everything the other side does once it takes it.
    shared.turn.store(expected + 1, std::memory_order_release);
}

template <class Mutex>
void answer_turns(Mutex& mutex, PingPongShared& shared) {
    for (std::uint64_t awaited = 1;; awaited += 2) {
        Spinner spinner("the benchmark to hand over the turn");
        if (await_turn(shared, awaited - 1, awaited, spinner) == kStopTurn) return;
        pass_turn(mutex, shared, awaited);
    }
}

template <class Mutex>
void BM_Lock_PingPong(benchmark::State& state, std::type_identity<Mutex>) {
    mproc::bench::run_guarded(state, [&] {
        Mutex mutex;
        SharedBlock<PingPongShared> shared;
        Peer peer("lock ping-pong", [&] { answer_turns(mutex, *shared); });
        LatencySampler sampler(state);
        std::uint64_t mine = 0;  // the turn this side holds at the start of a round
        sampler.start();
        for (auto _ : state) {
            pass_turn(mutex, *shared, mine);
            Spinner spinner("the peer to hand the turn back", &peer);
            if (await_turn(*shared, mine + 1, mine + 2, spinner) != mine + 2)
                throw BenchFailure("lock ping-pong: the stop turn appeared while the benchmark ran");
            mine += 2;
            sampler.lap();
        }
        {
            std::lock_guard guard(mutex);
            // release: pairs with the peer's acquire load in await_turn.
            shared->turn.store(kStopTurn, std::memory_order_release);
        }
        peer.join();
        sampler.report(state);
    });
}

// ---------------------------------------------------------------------------------------------------------
// Python's multiprocessing.Lock, the same three benchmarks timed inside python3.

void BM_Lock_UncontendedPython(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const auto figures = mproc::bench::run_python_peer(
            state, kPythonLockScript, "uncontended " + std::to_string(state.max_iterations), 1);
        if (figures) mproc::bench::report_python_time(state, (*figures)[0]);
    });
}

void BM_Lock_HandoffPython(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        // Each of the two Python processes makes max_iterations acquisitions; spreading half the elapsed
        // time over max_iterations items makes items_per_second the acquisitions of both per second, as
        // the C++ entries report.
        const auto figures = mproc::bench::run_python_peer(
            state, kPythonLockScript, "handoff " + std::to_string(2 * state.max_iterations), 1);
        if (figures) mproc::bench::report_python_time(state, (*figures)[0] / 2);
    });
}

void BM_Lock_PingPongPython(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const auto figures = mproc::bench::run_python_peer(
            state, kPythonLockScript, "pingpong " + std::to_string(state.max_iterations), 4);
        if (figures) mproc::bench::report_python_round_trips(state, *figures);
    });
}

// ---------------------------------------------------------------------------------------------------------

#define MPROC_BENCH_LOCK_ENTRY(benchmark_name, peer_name, Mutex)                                  \
    BENCHMARK_CAPTURE(benchmark_name, peer_name, std::type_identity<Mutex>{})->UseRealTime()

MPROC_BENCH_LOCK_ENTRY(BM_Lock_Uncontended, mproc, mproc::Lock);
MPROC_BENCH_LOCK_ENTRY(BM_Lock_Uncontended, mproc_raw, MprocRawLock);
MPROC_BENCH_LOCK_ENTRY(BM_Lock_Uncontended, glibc_robust, GlibcRobustMutex);
#ifdef MPROC_BENCH_HAVE_BOOST
MPROC_BENCH_LOCK_ENTRY(BM_Lock_Uncontended, boost, BoostMutex);
#endif
BENCHMARK(BM_Lock_UncontendedPython)->Name("BM_Lock_Uncontended/python")->UseManualTime();

MPROC_BENCH_LOCK_ENTRY(BM_Lock_Handoff, mproc, mproc::Lock);
MPROC_BENCH_LOCK_ENTRY(BM_Lock_Handoff, glibc_robust, GlibcRobustMutex);
#ifdef MPROC_BENCH_HAVE_BOOST
MPROC_BENCH_LOCK_ENTRY(BM_Lock_Handoff, boost, BoostMutex);
#endif
BENCHMARK(BM_Lock_HandoffPython)->Name("BM_Lock_Handoff/python")->UseManualTime();

MPROC_BENCH_LOCK_ENTRY(BM_Lock_PingPong, mproc, mproc::Lock);
MPROC_BENCH_LOCK_ENTRY(BM_Lock_PingPong, glibc_robust, GlibcRobustMutex);
#ifdef MPROC_BENCH_HAVE_BOOST
MPROC_BENCH_LOCK_ENTRY(BM_Lock_PingPong, boost, BoostMutex);
#endif
BENCHMARK(BM_Lock_PingPongPython)->Name("BM_Lock_PingPong/python")->UseManualTime();
BENCHMARK(mproc::bench::measure_cache_line_ping_pong)->Name("BM_Lock_PingPong/cache_line_ceiling")->UseRealTime();
BENCHMARK(mproc::bench::measure_futex_ping_pong)->Name("BM_Lock_PingPong/futex_ceiling")->UseRealTime();

}  // namespace
