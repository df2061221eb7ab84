// bench/bench_pickle.cpp — mproc's pickle encoder and decoder beside Python's own pickle module (its C
// accelerator), on the same dict: 55 str keys with mixed values (int, float, str, bool, a list of three
// ints, None), 1019 bytes as Python pickles it with protocol 4.
//   BM_PickleDumps1KiB/mproc    pickle_dumps of the PickleValue built by message_value()
//   BM_PickleDumps1KiB/python   pickle.dumps(message(), protocol=4), timed inside python3
//                               (bench/peers/python_pickle.py)
//   BM_PickleLoads1KiB/mproc    pickle_loads of the bytes Python itself wrote (python_pickle.py write),
//                               checked once to equal message_value()
//   BM_PickleLoads1KiB/python   pickle.loads of the same bytes, timed inside python3
// bytes_per_second counts the pickle's bytes; items_per_second dicts. Python is the ceiling measured in the
// same run: the rows' ratio is the speed-up over Python doing the same work in its own process.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/pickle.hpp"

namespace {

const std::string kPythonPickleScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_pickle.py";

using mproc::PickleValue;

// message() of bench/peers/python_pickle.py, key order included.
PickleValue message_value() {
    PickleValue::DictItems fields;
    for (int i = 0; i < 55; ++i) {
        char key[16];
        std::snprintf(key, sizeof key, "field_%02d", i);
        PickleValue value;
        switch (i % 6) {
            case 0: value = PickleValue::integer(std::int64_t{i} * 1000003); break;
            case 1: value = PickleValue::floating(i + 0.5); break;
            case 2: {
                char text[32];
                std::snprintf(text, sizeof text, "value string %02d", i);
                value = PickleValue::str(text);
                break;
            }
            case 3: value = PickleValue::boolean(i % 4 == 3); break;
            case 4:
                value = PickleValue::list({PickleValue::integer(i), PickleValue::integer(i + 1), PickleValue::integer(i + 2)});
                break;
            default: break;  // None
        }
        fields.emplace_back(PickleValue::str(key), value);
    }
    return PickleValue::dict(std::move(fields));
}

// The pickle Python writes for message(), read from the file the peer wrote.
std::vector<std::byte> python_pickle_bytes(benchmark::State& state) {
    char path[] = "/tmp/mproc-bench-pickle-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) throw mproc::bench::BenchFailure("mkstemp failed");
    ::close(fd);
    const auto figures = mproc::bench::run_python_peer(state, kPythonPickleScript, std::string("write ") + path, 0);
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ::unlink(path);
    if (!figures) return {};
    std::vector<std::byte> bytes(chars.size());
    for (std::size_t i = 0; i < chars.size(); ++i) bytes[i] = static_cast<std::byte>(chars[i]);
    return bytes;
}

void BM_PickleDumpsMproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const PickleValue value = message_value();
        std::size_t bytes = 0;
        for (auto _ : state) {
            const std::vector<std::byte> pickle = mproc::pickle_dumps(value);
            bytes = pickle.size();
            benchmark::DoNotOptimize(pickle.data());
        }
        if (mproc::pickle_loads(mproc::pickle_dumps(value)) != value)
            throw mproc::bench::BenchFailure("pickle_dumps: the encoding does not decode back to the dict");
        state.SetItemsProcessed(state.iterations());
        state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
    });
}
BENCHMARK(BM_PickleDumpsMproc)->Name("BM_PickleDumps1KiB/mproc");

void BM_PickleLoadsMproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        const std::vector<std::byte> pickle = python_pickle_bytes(state);
        if (pickle.empty()) return;  // no python3: skipped
        if (mproc::pickle_loads(pickle) != message_value())
            throw mproc::bench::BenchFailure("pickle_loads of Python's pickle is not the dict message_value() builds");
        for (auto _ : state) {
            PickleValue value = mproc::pickle_loads(pickle);
            benchmark::DoNotOptimize(&value);
        }
        state.SetItemsProcessed(state.iterations());
        state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(pickle.size()));
    });
}
BENCHMARK(BM_PickleLoadsMproc)->Name("BM_PickleLoads1KiB/mproc");

void python_entry(benchmark::State& state, const char* mode) {
    mproc::bench::run_guarded(state, [&] {
        const auto figures = mproc::bench::run_python_peer(
            state, kPythonPickleScript, std::string(mode) + " " + std::to_string(state.max_iterations), 1);
        if (!figures) return;
        const std::size_t pickle_bytes = python_pickle_bytes(state).size();  // Python's own pickle of the dict
        mproc::bench::report_python_time(state, (*figures)[0]);
        state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(pickle_bytes));
    });
}
void BM_PickleDumpsPython(benchmark::State& state) { python_entry(state, "dumps"); }
// A fixed count: each run is one python3 process timing its own loop, so Google Benchmark's search for an
// iteration count would start python3 again and again.
BENCHMARK(BM_PickleDumpsPython)->Name("BM_PickleDumps1KiB/python")->UseManualTime()->Iterations(20000);
void BM_PickleLoadsPython(benchmark::State& state) { python_entry(state, "loads"); }
BENCHMARK(BM_PickleLoadsPython)->Name("BM_PickleLoads1KiB/python")->UseManualTime()->Iterations(20000);

}  // namespace
