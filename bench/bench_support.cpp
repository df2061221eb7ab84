// bench/bench_support.cpp — peers, shared blocks, the latency sampler and the failure ledger of the
// benchmarks (see bench_support.hpp).
#include "bench_support.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

}  // namespace

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

void UniqueFd::close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
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
          static_cast<std::size_t>(std::max<benchmark::IterationCount>(state.max_iterations, 1)), kCapacity)) {}

void LatencySampler::report(benchmark::State& state) {
    const std::size_t count = wrapped_ ? samples_.size() : next_;
    state.SetItemsProcessed(state.iterations());
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
