// bench/bench_pool.cpp — Pool against Python's multiprocessing.Pool and ProcessPoolExecutor, and against
// OpenMP threads on CPU-bound work:
//   BM_Pool_MapTrivial/<system>     map(x -> x + 1) over 10^6 inputs (the executor: 2·10^4, its default
//                                   chunksize of 1 makes 10^6 take minutes), default chunksize, 2 workers:
//                                   tasks per second, i.e. the dispatch overhead
//   BM_Pool_ApplyRoundTrip/<system> apply_async(plus_one, (i,)).get(), one after another: time per round trip
//   BM_Pool_CpuBound/<system>       a costly pure function over 2·10^4 inputs on every CPU of the affinity
//                                   mask: serial (one thread, the baseline), mproc's map, OpenMP's parallel
//                                   for (libgomp, the ceiling of the speed-up); rate ÷ serial's = speed-up
// Python rows are timed inside python3 by bench/peers/python_pool.py (one iteration: each takes seconds).
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/pool.hpp"

#ifdef MPROC_BENCH_HAVE_OPENMP
#include <omp.h>
#endif

namespace {

using mproc::bench::BenchFailure;

constexpr int kMapTasks = 1'000'000;
constexpr int kExecutorTasks = 20'000;
constexpr int kCpuTasks = 20'000;
constexpr std::size_t kMapWorkers = 2;

int plus_one(int x) { return x + 1; }

// About 20 µs of arithmetic that the compiler cannot fold: a chain of multiply-xorshift rounds.
std::uint64_t costly(std::uint64_t seed) {
    std::uint64_t value = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int round = 0; round < 6000; ++round) {
        value ^= value >> 29;
        value *= 0xbf58476d1ce4e5b9ULL;
    }
    return value;
}

std::vector<int> iota_inputs(int count) {
    std::vector<int> inputs(static_cast<std::size_t>(count));
    std::iota(inputs.begin(), inputs.end(), 0);
    return inputs;
}

void BM_Pool_MapTrivial_mproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::Pool pool(kMapWorkers);
        const std::vector<int> inputs = iota_inputs(kMapTasks);
        pool.map(plus_one, std::vector<int>{0, 1});  // workers started, as on the Python side
        for (auto _ : state) {
            const std::vector<int> results = pool.map(plus_one, inputs);
            if (results.size() != inputs.size() || results.front() != 1 || results.back() != kMapTasks)
                throw BenchFailure("Pool::map: wrong results");
        }
        state.SetItemsProcessed(state.iterations() * kMapTasks);
    });
}
BENCHMARK(BM_Pool_MapTrivial_mproc)->Name("BM_Pool_MapTrivial/mproc")->UseRealTime()->Unit(benchmark::kMillisecond);

void python_rate(benchmark::State& state, const std::string& arguments, std::int64_t tasks_per_call) {
    mproc::bench::run_guarded(state, [&] {
        const auto figures = mproc::bench::run_python_peer(
            state, std::string(MPROC_BENCH_PEERS_DIR) + "/python_pool.py", arguments, 1);
        if (!figures) return;
        const double seconds = static_cast<double>((*figures)[0]) * 1e-9;
        for (auto _ : state) state.SetIterationTime(seconds);
        state.SetItemsProcessed(state.iterations() * tasks_per_call);
    });
}

void BM_Pool_MapTrivial_python(benchmark::State& state) {
    python_rate(state, "map 1 " + std::to_string(kMapTasks) + " " + std::to_string(kMapWorkers), kMapTasks);
}
BENCHMARK(BM_Pool_MapTrivial_python)->Name("BM_Pool_MapTrivial/python_pool")->UseManualTime()->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_Pool_MapTrivial_executor(benchmark::State& state) {
    python_rate(state, "executor 1 " + std::to_string(kExecutorTasks) + " " + std::to_string(kMapWorkers),
                kExecutorTasks);
}
BENCHMARK(BM_Pool_MapTrivial_executor)->Name("BM_Pool_MapTrivial/python_executor")->UseManualTime()->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_Pool_ApplyRoundTrip_mproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::Pool pool(kMapWorkers);
        pool.apply(plus_one, 0);
        mproc::bench::LatencySampler sampler(state);
        int i = 0;
        sampler.start();
        for (auto _ : state) {
            if (pool.apply_async(plus_one, std::make_tuple(i)).get() != i + 1) throw BenchFailure("apply_async: wrong result");
            ++i;
            sampler.lap();
        }
        sampler.report(state);
    });
}
BENCHMARK(BM_Pool_ApplyRoundTrip_mproc)->Name("BM_Pool_ApplyRoundTrip/mproc")->UseRealTime();

void BM_Pool_ApplyRoundTrip_python(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const auto figures = mproc::bench::run_python_peer(
            state, std::string(MPROC_BENCH_PEERS_DIR) + "/python_pool.py",
            "apply " + std::to_string(std::max<benchmark::IterationCount>(state.max_iterations, 1)) + " " +
                std::to_string(kMapWorkers),
            1);
        if (figures) mproc::bench::report_python_time(state, (*figures)[0]);
    });
}
BENCHMARK(BM_Pool_ApplyRoundTrip_python)->Name("BM_Pool_ApplyRoundTrip/python")->UseManualTime()->Iterations(2000);

void BM_Pool_CpuBound_serial(benchmark::State& state) {
    for (auto _ : state) {
        std::uint64_t sum = 0;
        for (int i = 0; i < kCpuTasks; ++i) sum += costly(static_cast<std::uint64_t>(i));
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * kCpuTasks);
}
BENCHMARK(BM_Pool_CpuBound_serial)->Name("BM_Pool_CpuBound/serial")->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Pool_CpuBound_mproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::Pool pool;  // cpu_count() workers
        std::vector<std::uint64_t> inputs(kCpuTasks);
        std::iota(inputs.begin(), inputs.end(), 0);
        pool.map(costly, std::vector<std::uint64_t>{0, 1});
        const std::uint64_t expected = costly(kCpuTasks - 1);
        for (auto _ : state) {
            const std::vector<std::uint64_t> results = pool.map(costly, inputs);
            if (results.back() != expected) throw BenchFailure("Pool::map(costly): wrong result");
        }
        state.SetItemsProcessed(state.iterations() * kCpuTasks);
        state.counters["workers"] = static_cast<double>(pool.processes());
    });
}
BENCHMARK(BM_Pool_CpuBound_mproc)->Name("BM_Pool_CpuBound/mproc")->UseRealTime()->Unit(benchmark::kMillisecond);

#ifdef MPROC_BENCH_HAVE_OPENMP
void BM_Pool_CpuBound_openmp(benchmark::State& state) {
    const int threads = static_cast<int>(mproc::cpu_count());
    std::vector<std::uint64_t> results(kCpuTasks);
    for (auto _ : state) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64)
        for (int i = 0; i < kCpuTasks; ++i) results[static_cast<std::size_t>(i)] = costly(static_cast<std::uint64_t>(i));
        benchmark::DoNotOptimize(results.data());
    }
    state.SetItemsProcessed(state.iterations() * kCpuTasks);
    state.counters["workers"] = threads;
}
BENCHMARK(BM_Pool_CpuBound_openmp)->Name("BM_Pool_CpuBound/openmp")->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

}  // namespace
