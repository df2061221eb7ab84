// bench/bench_main.cpp — main() of every mproc benchmark binary: Google Benchmark's flags, plus an exit
// status that says whether every benchmark measured what it claims.
// Exit status: 1 when a benchmark called fail() (a wrong value received, a peer that failed or stalled)
// or an argument was not understood; 0 otherwise, also when a benchmark was skipped because a peer
// program (python3) is missing here.
#include <cstdio>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/context.hpp"

int main(int argc, char** argv) {
    mproc::spawn_main();  // a child of the spawn or forkserver start method runs its entry here
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (mproc::bench::any_benchmark_failed()) {
        std::fprintf(stderr, "at least one benchmark failed: see its error_message above\n");
        return 1;
    }
    return 0;
}
