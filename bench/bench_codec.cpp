// bench/bench_codec.cpp — objects as messages (mproc/codec.hpp) between this process and a forked peer,
// beside Python's multiprocessing moving the same objects, and the codec beside the serialisers Debian
// packages:
//   BM_CodecQueueString64/<system>   the peer streams std::string of 64 characters (its sequence number in
//                                    the first 20) through a queue; this process gets and checks each
//       mproc_spsc, mproc_mpmc       mproc::Queue<std::string>
//       python                       multiprocessing.Queue of 64-character str (bench/peers/python_codec.py)
//       raw64_spsc                   mproc::Queue of a trivially copyable 64-byte struct (SPSC), the path
//                                    Queue<T> keeps for such T: the ceiling of the encoded rows above
//   BM_CodecQueueRecord/<system>     struct Record {int64, double, std::string(32), std::vector<double>(16)}:
//                                    mproc_spsc, mproc_mpmc; python: the same as a tuple, pickled by
//                                    multiprocessing.Queue
//   BM_CodecPipeRecord/<system>      the Record through a connection: mproc_pipe (shared-memory Pipe),
//                                    mproc_fd_pipe (FdConnection over pipe2, io_uring or read/write),
//                                    python (multiprocessing.Pipe send/recv, pickled)
//   BM_CodecEncodeRecord/<library>, BM_CodecDecodeRecord/<library>   the Record encoded to / decoded from
//                                    memory, no process involved: mproc (this codec), msgpack (msgpack-cxx,
//                                    MSGPACK_DEFINE), cereal (BinaryOutputArchive over a string stream);
//                                    counter encoded_bytes; when a library's headers were not found at build
//                                    time its rows are absent
//   BM_CodecHostileLength/<library>  a 9-byte message whose length field claims 2^32 - 1 elements (2^60 for
//                                    mproc, whose lengths are 64-bit), decoded in a forked child limited to
//                                    512 MiB of address space; the label says what happened (a clean
//                                    error, std::bad_alloc, a crash) and counter refused_cleanly is 1 only
//                                    for a library error thrown without a large allocation
// Every streamed item carries its sequence number, checked on receipt; a wrong one fails the run.
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "bench_support.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"

#if __has_include(<msgpack.hpp>)
#define MSGPACK_NO_BOOST 1  // msgpack-cxx's own containers only: Boost is not what is compared
#include <msgpack.hpp>
#define MPROC_BENCH_HAVE_MSGPACK 1
#endif
#if __has_include(<cereal/archives/binary.hpp>)
#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#define MPROC_BENCH_HAVE_CEREAL 1
#endif

namespace {

using mproc::bench::BenchFailure;
using mproc::bench::Peer;

const std::string kPythonCodecScript = std::string(MPROC_BENCH_PEERS_DIR) + "/python_codec.py";

struct Record {
    std::int64_t id = 0;
    double score = 0;
    std::string name;
    std::vector<double> samples;
    friend auto codec_fields(Record& self) { return std::tie(self.id, self.score, self.name, self.samples); }
#ifdef MPROC_BENCH_HAVE_MSGPACK
    MSGPACK_DEFINE(id, score, name, samples)
#endif
#ifdef MPROC_BENCH_HAVE_CEREAL
    template <class Archive>
    void serialize(Archive& archive) {
        archive(id, score, name, samples);
    }
#endif
};

// Samples with fractions, so that no serialiser can shorten them to integers (msgpack-cxx packs an integral
// double as an integer).
Record record_of(std::uint64_t sequence) {
    Record record{static_cast<std::int64_t>(sequence), static_cast<double>(sequence) * 0.5, std::string(32, 'n'), {}};
    for (int i = 0; i < 16; ++i) record.samples.push_back(static_cast<double>(sequence) + 0.1 * (i + 1));
    return record;
}

void check_record(const Record& got, std::uint64_t expected) {
    if (got.id != static_cast<std::int64_t>(expected) || got.samples.size() != 16 || got.name.size() != 32)
        throw BenchFailure("record stream: expected record " + std::to_string(expected) + ", received " +
                           std::to_string(got.id));
}

void fill_text(std::string& text, std::uint64_t sequence) {
    char digits[20];
    std::memset(digits, '0', sizeof digits);
    char scratch[20];
    const auto end = std::to_chars(scratch, scratch + sizeof scratch, sequence).ptr;
    const auto used = static_cast<std::size_t>(end - scratch);
    std::memcpy(digits + sizeof digits - used, scratch, used);
    std::memcpy(text.data(), digits, sizeof digits);
}

void check_text(const std::string& got, std::uint64_t expected) {
    std::string want(64, 'x');
    fill_text(want, expected);
    if (got != want) throw BenchFailure("string stream: expected item " + std::to_string(expected) + ", received " + got.substr(0, 20));
}

// A producer peer putting items made by make(sequence) until the queue is closed.
template <class T, class Make>
Peer start_producer(mproc::Queue<T>& queue, Make make) {
    return Peer("codec queue producer", [&queue, make] {
        for (std::uint64_t sequence = 0;; ++sequence) {
            try {
                queue.put(make(sequence));
            } catch (const mproc::Closed&) {
                return;
            }
        }
    });
}

void BM_CodecQueueString64(benchmark::State& state, mproc::QueueKind kind) {
    mproc::bench::run_guarded(state, [&] {
        mproc::Queue<std::string> queue(1024, kind, 128);
        Peer producer = start_producer(queue, [](std::uint64_t sequence) {
            std::string text(64, 'x');
            fill_text(text, sequence);
            return text;
        });
        std::uint64_t expected = 0;
        for (auto _ : state) check_text(queue.get(true, mproc::bench::kStallLimit), expected++);
        queue.close();
        producer.join();
        state.SetItemsProcessed(state.iterations());
        state.SetBytesProcessed(state.iterations() * 64);
    });
}

struct Raw64 {
    std::uint64_t sequence;
    char text[56];
};

void BM_CodecQueueRaw64(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        mproc::Queue<Raw64> queue(1024, mproc::QueueKind::spsc);
        Peer producer = start_producer(queue, [](std::uint64_t sequence) {
            Raw64 item{sequence, {}};
            std::memset(item.text, 'x', sizeof item.text);
            return item;
        });
        std::uint64_t expected = 0;
        for (auto _ : state) {
            const Raw64 item = queue.get(true, mproc::bench::kStallLimit);
            if (item.sequence != expected++) throw BenchFailure("raw stream: out of sequence");
        }
        queue.close();
        producer.join();
        state.SetItemsProcessed(state.iterations());
        state.SetBytesProcessed(state.iterations() * 64);
    });
}

void BM_CodecQueueRecord(benchmark::State& state, mproc::QueueKind kind) {
    mproc::bench::run_guarded(state, [&] {
        mproc::Queue<Record> queue(1024, kind, 256);
        Peer producer = start_producer(queue, record_of);
        std::uint64_t expected = 0;
        for (auto _ : state) check_record(queue.get(true, mproc::bench::kStallLimit), expected++);
        queue.close();
        producer.join();
        state.SetItemsProcessed(state.iterations());
    });
}

void BM_CodecPipeRecord_mproc_pipe(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        auto ends = mproc::Pipe(false);
        mproc::PipeConnection& sender = ends.second;
        Peer producer("codec pipe producer", [&sender] {
            sender.adopt();
            try {
                for (std::uint64_t sequence = 0;; ++sequence) sender.send(record_of(sequence));
            } catch (const mproc::BrokenPipe&) {
            }
        });
        std::uint64_t expected = 0;
        for (auto _ : state) check_record(ends.first.recv<Record>(), expected++);
        ends.first.close();
        producer.join();
        state.SetItemsProcessed(state.iterations());
    });
}

void BM_CodecPipeRecord_mproc_fd_pipe(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        auto ends = mproc::fd_pipe(false);
        mproc::FdConnection& receiver = ends.first;
        mproc::FdConnection& sender = ends.second;
        Peer producer("codec fd_pipe producer", [&receiver, &sender] {
            receiver.close();  // so that the benchmark's close() is this end's last: the send then fails
            try {
                for (std::uint64_t sequence = 0;; ++sequence) sender.send(record_of(sequence));
            } catch (const mproc::BrokenPipe&) {
            }
        });
        sender.close();
        std::uint64_t expected = 0;
        for (auto _ : state) check_record(receiver.recv<Record>(), expected++);
        receiver.close();
        producer.join();
        state.SetItemsProcessed(state.iterations());
        state.SetLabel(std::string(receiver.backend()));
    });
}

void BM_CodecPython(benchmark::State& state, const char* mode) {
    mproc::bench::run_guarded(state, [&] {
        const auto figures = mproc::bench::run_python_peer(
            state, kPythonCodecScript, std::string(mode) + " " + std::to_string(state.max_iterations), 1);
        if (!figures) return;
        mproc::bench::report_python_time(state, (*figures)[0]);
    });
}

// ---- the serialisers, in memory ----

void BM_CodecEncodeRecord_mproc(benchmark::State& state) {
    const Record record = record_of(12345);
    std::vector<std::byte> out;
    for (auto _ : state) {
        out.clear();
        mproc::encode(record, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["encoded_bytes"] = static_cast<double>(out.size());
    state.SetItemsProcessed(state.iterations());
}

void BM_CodecDecodeRecord_mproc(benchmark::State& state) {
    const std::vector<std::byte> bytes = mproc::encode(record_of(12345));
    for (auto _ : state) {
        Record record = mproc::decode<Record>(bytes);
        benchmark::DoNotOptimize(record.samples.data());
    }
    state.counters["encoded_bytes"] = static_cast<double>(bytes.size());
    state.SetItemsProcessed(state.iterations());
}

#ifdef MPROC_BENCH_HAVE_MSGPACK
void BM_CodecEncodeRecord_msgpack(benchmark::State& state) {
    const Record record = record_of(12345);
    msgpack::sbuffer out;
    for (auto _ : state) {
        out.clear();
        msgpack::pack(out, record);
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["encoded_bytes"] = static_cast<double>(out.size());
    state.SetItemsProcessed(state.iterations());
}

void BM_CodecDecodeRecord_msgpack(benchmark::State& state) {
    msgpack::sbuffer bytes;
    msgpack::pack(bytes, record_of(12345));
    for (auto _ : state) {
        const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
        Record record = handle.get().as<Record>();
        benchmark::DoNotOptimize(record.samples.data());
    }
    state.counters["encoded_bytes"] = static_cast<double>(bytes.size());
    state.SetItemsProcessed(state.iterations());
}
#endif

#ifdef MPROC_BENCH_HAVE_CEREAL
void BM_CodecEncodeRecord_cereal(benchmark::State& state) {
    const Record record = record_of(12345);
    Record copy = record;
    std::size_t size = 0;
    for (auto _ : state) {
        std::ostringstream stream;
        {
            cereal::BinaryOutputArchive archive(stream);
            archive(copy);
        }
        const std::string bytes = std::move(stream).str();
        size = bytes.size();
        benchmark::DoNotOptimize(bytes.data());
    }
    state.counters["encoded_bytes"] = static_cast<double>(size);
    state.SetItemsProcessed(state.iterations());
}

void BM_CodecDecodeRecord_cereal(benchmark::State& state) {
    std::ostringstream stream;
    {
        cereal::BinaryOutputArchive archive(stream);
        Record record = record_of(12345);
        archive(record);
    }
    const std::string bytes = std::move(stream).str();
    for (auto _ : state) {
        std::istringstream in(bytes);
        cereal::BinaryInputArchive archive(in);
        Record record;
        archive(record);
        benchmark::DoNotOptimize(record.samples.data());
    }
    state.counters["encoded_bytes"] = static_cast<double>(bytes.size());
    state.SetItemsProcessed(state.iterations());
}
#endif

// ---- hostile lengths ----

// Runs decode() in a forked child whose address space is limited to 512 MiB; returns what happened.
template <class Decode>
std::string outcome_in_child(Decode decode) {
    int channel[2];
    if (::pipe(channel) != 0) throw BenchFailure("pipe failed");
    const pid_t child = ::fork();
    if (child < 0) throw BenchFailure("fork failed");
    if (child == 0) {
        ::close(channel[0]);
        const rlimit limit{512u << 20, 512u << 20};
        ::setrlimit(RLIMIT_AS, &limit);
        std::string outcome;
        try {
            outcome = decode();
        } catch (const std::bad_alloc&) {
            outcome = "std::bad_alloc: the length was believed";
        } catch (const std::exception& error) {
            outcome = std::string("other exception: ") + error.what();
        }
        (void)!::write(channel[1], outcome.data(), outcome.size());
        ::_exit(0);
    }
    ::close(channel[1]);
    std::string outcome;
    char buffer[512];
    for (ssize_t got; (got = ::read(channel[0], buffer, sizeof buffer)) > 0;) outcome.append(buffer, static_cast<std::size_t>(got));
    ::close(channel[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    if (outcome.empty()) outcome = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status)) : "no outcome";
    return outcome;
}

void report_hostile(benchmark::State& state, const std::string& outcome, bool clean) {
    for (auto _ : state) benchmark::DoNotOptimize(outcome.data());
    state.counters["refused_cleanly"] = clean ? 1 : 0;
    state.SetLabel(outcome.substr(0, 100));
}

void BM_CodecHostileLength_mproc(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        std::vector<std::byte> message;
        mproc::CodecWriter(message).length(std::uint64_t{1} << 60);
        const std::string outcome = outcome_in_child([&] {
            try {
                (void)mproc::decode<std::vector<std::string>>(message);
                return std::string("decoded");
            } catch (const mproc::DecodeError& error) {
                return std::string("DecodeError: ") + error.what();
            }
        });
        report_hostile(state, outcome, outcome.starts_with("DecodeError"));
    });
}

#ifdef MPROC_BENCH_HAVE_MSGPACK
void BM_CodecHostileLength_msgpack(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        // array 32 (0xdd) of 2^32 - 1 elements, then a few bytes.
        const char message[] = {'\xdd', '\xff', '\xff', '\xff', '\xff', '\xa1', 'a', '\xa1', 'b'};
        const std::string outcome = outcome_in_child([&] {
            try {
                const msgpack::object_handle handle = msgpack::unpack(message, sizeof message);
                (void)handle.get().as<std::vector<std::string>>();
                return std::string("decoded");
            } catch (const msgpack::unpack_error& error) {
                return std::string("msgpack::unpack_error: ") + error.what();
            } catch (const msgpack::type_error& error) {
                return std::string("msgpack::type_error: ") + error.what();
            }
        });
        report_hostile(state, outcome, outcome.starts_with("msgpack::"));
    });
}
#endif

#ifdef MPROC_BENCH_HAVE_CEREAL
void BM_CodecHostileLength_cereal(benchmark::State& state) {
    mproc::bench::run_guarded(state, [&] {
        // cereal's size_type is 64-bit: a vector of 2^32 - 1 strings, then a byte.
        std::string message(8, '\0');
        const std::uint64_t claimed = 0xffffffffu;
        std::memcpy(message.data(), &claimed, sizeof claimed);
        message.push_back('a');
        const std::string outcome = outcome_in_child([&] {
            try {
                std::istringstream in(message);
                cereal::BinaryInputArchive archive(in);
                std::vector<std::string> value;
                archive(value);
                return std::string("decoded");
            } catch (const cereal::Exception& error) {
                return std::string("cereal::Exception: ") + error.what();
            }
        });
        report_hostile(state, outcome, outcome.starts_with("cereal::"));
    });
}
#endif

}  // namespace

BENCHMARK_CAPTURE(BM_CodecQueueString64, mproc_spsc, mproc::QueueKind::spsc)
    ->Name("BM_CodecQueueString64/mproc_spsc")->UseRealTime();
BENCHMARK_CAPTURE(BM_CodecQueueString64, mproc_mpmc, mproc::QueueKind::mpmc)
    ->Name("BM_CodecQueueString64/mproc_mpmc")->UseRealTime();
BENCHMARK(BM_CodecQueueRaw64)->Name("BM_CodecQueueString64/raw64_spsc")->UseRealTime();
BENCHMARK_CAPTURE(BM_CodecPython, str_queue, "str_queue")->Name("BM_CodecQueueString64/python")->UseManualTime();
BENCHMARK_CAPTURE(BM_CodecQueueRecord, mproc_spsc, mproc::QueueKind::spsc)
    ->Name("BM_CodecQueueRecord/mproc_spsc")->UseRealTime();
BENCHMARK_CAPTURE(BM_CodecQueueRecord, mproc_mpmc, mproc::QueueKind::mpmc)
    ->Name("BM_CodecQueueRecord/mproc_mpmc")->UseRealTime();
BENCHMARK_CAPTURE(BM_CodecPython, record_queue, "record_queue")->Name("BM_CodecQueueRecord/python")->UseManualTime();
BENCHMARK(BM_CodecPipeRecord_mproc_pipe)->Name("BM_CodecPipeRecord/mproc_pipe")->UseRealTime();
BENCHMARK(BM_CodecPipeRecord_mproc_fd_pipe)->Name("BM_CodecPipeRecord/mproc_fd_pipe")->UseRealTime();
BENCHMARK_CAPTURE(BM_CodecPython, record_pipe, "record_pipe")->Name("BM_CodecPipeRecord/python")->UseManualTime();
BENCHMARK(BM_CodecEncodeRecord_mproc)->Name("BM_CodecEncodeRecord/mproc");
BENCHMARK(BM_CodecDecodeRecord_mproc)->Name("BM_CodecDecodeRecord/mproc");
#ifdef MPROC_BENCH_HAVE_MSGPACK
BENCHMARK(BM_CodecEncodeRecord_msgpack)->Name("BM_CodecEncodeRecord/msgpack");
BENCHMARK(BM_CodecDecodeRecord_msgpack)->Name("BM_CodecDecodeRecord/msgpack");
#endif
#ifdef MPROC_BENCH_HAVE_CEREAL
BENCHMARK(BM_CodecEncodeRecord_cereal)->Name("BM_CodecEncodeRecord/cereal");
BENCHMARK(BM_CodecDecodeRecord_cereal)->Name("BM_CodecDecodeRecord/cereal");
#endif
BENCHMARK(BM_CodecHostileLength_mproc)->Name("BM_CodecHostileLength/mproc")->Iterations(1);
#ifdef MPROC_BENCH_HAVE_MSGPACK
BENCHMARK(BM_CodecHostileLength_msgpack)->Name("BM_CodecHostileLength/msgpack")->Iterations(1);
#endif
#ifdef MPROC_BENCH_HAVE_CEREAL
BENCHMARK(BM_CodecHostileLength_cereal)->Name("BM_CodecHostileLength/cereal")->Iterations(1);
#endif
