// bench/bench_event.cpp — how fast an Event wakes a process asleep in wait(), beside the futex ping-pong
// ceiling, eventfd(2) and Python's Event, in one run:
//   BM_Event_WakeLatency/mproc          mproc::Event: set() / wait() + clear()
//   BM_Event_WakeLatency/python         multiprocessing.Event, timed inside python3 by
//                                       bench/peers/python_wake.py (manual time)
//   BM_Event_WakeLatency/eventfd        two eventfds (bench_wake_latency.hpp's EventfdPair): write() of 1
//                                       wakes the other side asleep in read(), which consumes the count
//   BM_Event_WakeLatency/futex_ceiling  the futex ping-pong ceiling (bench_support.hpp)
// Wake latency is a round trip through two events, ping and pong, both clear: the benchmark sets ping
// and waits for pong, then clears it; the peer waits for ping, clears it, and sets pong
// (bench_wake_latency.hpp). Each side clears the event it waited for before it signals the other, so
// the next round's wait can only end by the next set(). Every entry reports p50_ns/p99_ns/p99.9_ns per
// round trip and items_per_second (round trips per second). Target (reported, never asserted): mproc
// within 1.2× the ceiling.
//   BM_Event_WakeFromSleep/{mproc,eventfd,futex_ceiling}
//     the same round trip with each waiter surely asleep when signalled (bench_wake_latency.hpp): the
//     two one-way wake-ups summed, beside the same protocol on two bare futex words (/futex_ceiling).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "bench_wake_latency.hpp"
#include "mproc/event.hpp"

#ifndef MPROC_BENCH_PEERS_DIR
#error "bench/meson.build defines MPROC_BENCH_PEERS_DIR, the directory of the peer scripts"
#endif

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::kWakeFromSleepMinTime;

void wait_and_consume(mproc::Event& event) {
    if (!event.wait()) throw BenchFailure("mproc::Event: wait() without timeout returned false");
    event.clear();
}

struct MprocEventPair {
    mproc::Event ping;  // anonymous: mapped before the fork, so the peer inherits both
    mproc::Event pong;

    void send() { ping.set(); }
    void await_reply() { wait_and_consume(pong); }
    void await_request() { wait_and_consume(ping); }
    void reply() { pong.set(); }
};

void BM_Event_WakeLatencyMproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        MprocEventPair pair;
        mproc::bench::measure_wake_latency(state, pair, "mproc::Event");
    });
}

void BM_Event_WakeFromSleepMproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        MprocEventPair pair;
        mproc::bench::measure_wake_from_sleep(state, pair, "mproc::Event");
    });
}

void BM_Event_WakeFromSleepCeiling(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::bench::FutexFlagPair pair;
        mproc::bench::measure_wake_from_sleep(state, pair, "bare futex");
    });
}

void BM_Event_WakeLatencyEventfd(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::bench::EventfdPair pair;
        mproc::bench::measure_wake_latency(state, pair, "eventfd");
    });
}

void BM_Event_WakeFromSleepEventfd(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::bench::EventfdPair pair;
        mproc::bench::measure_wake_from_sleep(state, pair, "eventfd");
    });
}

void BM_Event_WakeLatencyPython(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const std::optional<std::vector<std::int64_t>> figures = mproc::bench::run_python_peer(
            state, std::string(MPROC_BENCH_PEERS_DIR) + "/python_wake.py",
            "event " + std::to_string(state.max_iterations), 4);
        if (!figures) return;
        mproc::bench::report_python_round_trips(state, *figures);
    });
}

BENCHMARK(BM_Event_WakeLatencyMproc)->Name("BM_Event_WakeLatency/mproc")->UseRealTime();
BENCHMARK(BM_Event_WakeLatencyPython)->Name("BM_Event_WakeLatency/python")->UseManualTime();
BENCHMARK(BM_Event_WakeLatencyEventfd)->Name("BM_Event_WakeLatency/eventfd")->UseRealTime();
BENCHMARK(mproc::bench::measure_futex_ping_pong)->Name("BM_Event_WakeLatency/futex_ceiling")->UseRealTime();
BENCHMARK(BM_Event_WakeFromSleepMproc)
    ->Name("BM_Event_WakeFromSleep/mproc")
    ->UseManualTime()
    ->MinTime(kWakeFromSleepMinTime);
BENCHMARK(BM_Event_WakeFromSleepEventfd)
    ->Name("BM_Event_WakeFromSleep/eventfd")
    ->UseManualTime()
    ->MinTime(kWakeFromSleepMinTime);
BENCHMARK(BM_Event_WakeFromSleepCeiling)
    ->Name("BM_Event_WakeFromSleep/futex_ceiling")
    ->UseManualTime()
    ->MinTime(kWakeFromSleepMinTime);

}  // namespace
