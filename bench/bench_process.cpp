// bench/bench_process.cpp — what starting and joining a child costs:
//   BM_Process_ForkWaitFloor                     fork() + _exit(0) + waitpid(): the floor under any Process
//   BM_Process_StartJoin                         mproc::Process running an empty function, start() + join()
//   BM_Process_PosixSpawnWaitFloor               posix_spawn(/bin/true) + waitpid(): the floor under an exec
//   BM_Process_StartJoinByMethod/<start method>  mproc::Process running an empty registered entry under
//                                                fork, spawn or forkserver (the server started before timing)
//   BM_Python_ProcessStartJoin/<start method>    multiprocessing.Process with an empty target, start() + join(),
//                                                timed inside python3 by bench/peers/python_process.py
// All report time per start+join, items_per_second (start+joins per second); the two C++ ones also report
// p50_ns/p99_ns/p99.9_ns. The Python figure is manual time: the script runs once per benchmark run with
// COUNT equal to the iteration count and reports the elapsed time of its loop (interpreter start-up and the
// first, warming start excluded), which is spread evenly over the iterations.
#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>

#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/context.hpp"
#include "mproc/error.hpp"
#include "mproc/process.hpp"

#ifndef MPROC_BENCH_PEERS_DIR
#error "bench/meson.build defines MPROC_BENCH_PEERS_DIR, the directory of the peer scripts"
#endif

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::LatencySampler;

void BM_Process_ForkWaitFloor(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        LatencySampler sampler(state);
        sampler.start();
        for (auto _ : state) {
            const pid_t child = ::fork();
            if (child < 0) mproc::throw_system_error("fork/wait floor: fork");
            if (child == 0) ::_exit(0);
            int status = 0;
            while (::waitpid(child, &status, 0) < 0) {
                if (errno != EINTR) mproc::throw_system_error("fork/wait floor: waitpid");
            }
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                throw BenchFailure("fork/wait floor: child ended with wait status " + std::to_string(status));
            }
            sampler.lap();
        }
        sampler.report(state);
    });
}
BENCHMARK(BM_Process_ForkWaitFloor)->UseRealTime();

void BM_Process_StartJoin(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        LatencySampler sampler(state);
        sampler.start();
        for (auto _ : state) {
            mproc::Process child([] {});
            child.start();
            child.join();
            if (child.exitcode() != 0) {
                throw BenchFailure("mproc::Process start+join: child exit code " +
                                   std::to_string(child.exitcode().value_or(-1000)) + ", expected 0");
            }
            sampler.lap();
        }
        sampler.report(state);
    });
}
BENCHMARK(BM_Process_StartJoin)->UseRealTime();

extern "C" char** environ;

void BM_Process_PosixSpawnWaitFloor(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        LatencySampler sampler(state);
        sampler.start();
        char program[] = "/bin/true";
        char* argv[] = {program, nullptr};
        for (auto _ : state) {
            pid_t child = 0;
            if (const int failed = ::posix_spawn(&child, program, nullptr, nullptr, argv, environ))
                mproc::throw_system_error("posix_spawn/wait floor: posix_spawn /bin/true", failed);
            int status = 0;
            while (::waitpid(child, &status, 0) < 0) {
                if (errno != EINTR) mproc::throw_system_error("posix_spawn/wait floor: waitpid");
            }
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                throw BenchFailure("posix_spawn/wait floor: /bin/true ended with wait status " + std::to_string(status));
            sampler.lap();
        }
        sampler.report(state);
    });
}
BENCHMARK(BM_Process_PosixSpawnWaitFloor)->UseRealTime();

void do_nothing() {}
MPROC_ENTRY(do_nothing_entry, do_nothing);

void BM_Process_StartJoinByMethod(benchmark::State& state, const char* start_method) {
    mproc::bench::run_guarded(state, [&] {
        mproc::ProcessOptions options;
        options.context = mproc::get_context(start_method);
        {
            mproc::Process warm(options, do_nothing_entry);  // starts the fork server outside the timing
            warm.start();
            warm.join();
        }
        LatencySampler sampler(state);
        sampler.start();
        for (auto _ : state) {
            mproc::Process child(options, do_nothing_entry);
            child.start();
            child.join();
            if (child.exitcode() != 0) {
                throw BenchFailure(std::string("mproc::Process (") + start_method + ") start+join: child exit code " +
                                   std::to_string(child.exitcode().value_or(-1000)) + ", expected 0: " + child.error());
            }
            sampler.lap();
        }
        sampler.report(state);
    });
}
BENCHMARK_CAPTURE(BM_Process_StartJoinByMethod, fork, "fork")->UseRealTime();
BENCHMARK_CAPTURE(BM_Process_StartJoinByMethod, spawn, "spawn")->UseRealTime();
BENCHMARK_CAPTURE(BM_Process_StartJoinByMethod, forkserver, "forkserver")->UseRealTime();

std::string shell_quoted(const std::string& text) {
    std::string quoted = "'";
    for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

void BM_Python_ProcessStartJoin(benchmark::State& state, const char* start_method) {
    mproc::bench::run_guarded(state, [&] {
        const std::string script = std::string(MPROC_BENCH_PEERS_DIR) + "/python_process.py";
        const std::string command = "exec python3 " + shell_quoted(script) + " " +
                                    std::to_string(state.max_iterations) + " " + start_method + " 2>&1";
        FILE* output = ::popen(command.c_str(), "r");
        if (output == nullptr) mproc::throw_system_error("python_process.py: popen");
        std::string text;
        char chunk[512];
        while (const std::size_t got = std::fread(chunk, 1, sizeof chunk, output)) text.append(chunk, got);
        const int status = ::pclose(output);
        if (status == -1) mproc::throw_system_error("python_process.py: pclose");
        text.erase(text.find_last_not_of(" \n") + 1);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
            mproc::bench::skip(state, "python3 is not on PATH, so there is no Python figure: " + text);
            return;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            throw BenchFailure("python_process.py " + std::string(start_method) + " failed (wait status " +
                               std::to_string(status) + "): " + text);
        }
        std::size_t parsed = 0;
        long long elapsed_ns = -1;
        try {
            elapsed_ns = std::stoll(text, &parsed);
        } catch (const std::exception&) {
            parsed = 0;
        }
        if (parsed == 0 || elapsed_ns <= 0 || parsed != text.size()) {
            throw BenchFailure("python_process.py " + std::string(start_method) +
                               ": expected one positive number of nanoseconds, printed: " + text);
        }
        const double seconds_per_start_join =
            static_cast<double>(elapsed_ns) * 1e-9 / static_cast<double>(state.max_iterations);
        for (auto _ : state) state.SetIterationTime(seconds_per_start_join);
        state.SetItemsProcessed(state.iterations());
    });
}
BENCHMARK_CAPTURE(BM_Python_ProcessStartJoin, fork, "fork")->UseManualTime();
BENCHMARK_CAPTURE(BM_Python_ProcessStartJoin, forkserver, "forkserver")->UseManualTime();
BENCHMARK_CAPTURE(BM_Python_ProcessStartJoin, spawn, "spawn")->UseManualTime();

}  // namespace
