// src/pool.cpp — Pool's worker processes and the thread that feeds them (mproc/pool.hpp).
//
// The pool's thread owns every worker and is the only thread that touches them: it forks workers,
// sends each idle one the next chunk, reads result frames, notices deaths and timeouts, and resolves the
// callers' BatchStates. Callers only queue submissions (under `mutex`) and wake it through an eventfd.
//
// A chunk's life (verify/pool/ models it): pending (in `pending`) → running on worker W (W.chunk) →
// either resolved from W's result frame, or, when W ends first, split by W's progress slot: the task W was
// running fails (WorkerDied / TimedOut) or, with retries left, is queued again alone; the tasks W had not
// reached, and those it had finished but whose results died with it, are queued again. A chunk is on one
// worker or in `pending`, never both, and its tasks are resolved only from the frame of the worker it is
// on (chunk id and count checked): so each task is resolved exactly once.
#include "mproc/pool.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <deque>
#include <dirent.h>
#include <exception>
#include <thread>

#include <cxxabi.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deadline.hpp"
#include "mproc/connection.hpp"
#include "mproc/process.hpp"
#include "pool_frames.hpp"

namespace mproc {

// ---------------------------------------------------------------------------------------------------------
// Module functions.

std::size_t cpu_count() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        const int count = CPU_COUNT(&set);
        if (count > 0) return static_cast<std::size_t>(count);
    }
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? static_cast<std::size_t>(online) : 1;
}

std::vector<pid_t> active_children() {
    std::vector<pid_t> children;
    DIR* tasks = ::opendir("/proc/self/task");
    if (tasks == nullptr) return children;
    while (const dirent* entry = ::readdir(tasks)) {
        if (entry->d_name[0] == '.') continue;
        const std::string path = std::string("/proc/self/task/") + entry->d_name + "/children";
        if (std::FILE* file = std::fopen(path.c_str(), "r")) {
            long pid = 0;
            while (std::fscanf(file, "%ld", &pid) == 1) children.push_back(static_cast<pid_t>(pid));
            std::fclose(file);
        }
    }
    ::closedir(tasks);
    std::sort(children.begin(), children.end());
    children.erase(std::unique(children.begin(), children.end()), children.end());
    return children;
}

std::optional<pid_t> parent_process() {
    if (current_process().name == "MainProcess") return std::nullopt;
    return ::getppid();
}

namespace detail {

// ---------------------------------------------------------------------------------------------------------
// Frames.

namespace {

template <class T>
T read_plain(std::span<const std::byte> frame, std::size_t at) {
    T value;
    std::memcpy(&value, frame.data() + at, sizeof value);
    return value;
}

template <class T>
void append_plain(std::vector<std::byte>& frame, const T& value) {
    const auto* bytes = reinterpret_cast<const std::byte*>(&value);
    frame.insert(frame.end(), bytes, bytes + sizeof value);
}

[[noreturn]] void frame_fault(std::size_t at, const std::string& expected) {
    throw DecodeError("pool result frame", at, expected);
}

}  // namespace

ResultFrameView parse_result_frame(std::span<const std::byte> frame) {
    if (frame.size() < sizeof(ResultFrameHeader)) frame_fault(frame.size(), "a 24-byte header");
    const auto header = read_plain<ResultFrameHeader>(frame, 0);
    if (header.magic != kResultFrameMagic) frame_fault(0, "the result frame magic");
    if (header.kind != static_cast<std::uint32_t>(ResultFrameKind::results) &&
        header.kind != static_cast<std::uint32_t>(ResultFrameKind::init_failed))
        frame_fault(4, "a frame kind 1 or 2, got " + std::to_string(header.kind));
    const std::size_t body = frame.size() - sizeof header;
    if ((header.flags & ~kUniform) != 0) frame_fault(20, "flags 0 or 1, got " + std::to_string(header.flags));
    ResultFrameView view{static_cast<ResultFrameKind>(header.kind), header.chunk_id, header.count, false, 0, {}, {}};
    std::size_t at = sizeof header;
    if ((header.flags & kUniform) != 0) {
        if (header.kind != static_cast<std::uint32_t>(ResultFrameKind::results)) frame_fault(20, "no uniform init_failed frame");
        if (body < 4) frame_fault(at, "a uniform frame's stride");
        const auto stride = read_plain<std::uint32_t>(frame, at);
        at += 4;
        // The count was bounded by body / 5 above; stride × count must be exactly what is left.
        if (static_cast<std::uint64_t>(stride) * header.count != frame.size() - at)
            frame_fault(at - 4, std::to_string(header.count) + " results of " + std::to_string(stride) + " bytes in the " +
                                    std::to_string(frame.size() - at) + " bytes left");
        view.uniform = true;
        view.stride = stride;
        view.uniform_results = frame.subspan(at);
        return view;
    }
    if (header.count > body / kMinResultRecord)
        frame_fault(16, "at most " + std::to_string(body / kMinResultRecord) + " records in " + std::to_string(body) +
                            " bytes, got a count of " + std::to_string(header.count));
    if (header.kind == static_cast<std::uint32_t>(ResultFrameKind::init_failed) && header.count != 1)
        frame_fault(16, "one record in an init_failed frame");
    view.outcomes.reserve(header.count);
    for (std::uint32_t i = 0; i < header.count; ++i) {
        if (frame.size() - at < kMinResultRecord) frame_fault(at, "a record's status and length");
        const auto status = std::to_integer<std::uint8_t>(frame[at]);
        const auto length = read_plain<std::uint32_t>(frame, at + 1);
        at += kMinResultRecord;
        if (length > frame.size() - at)
            frame_fault(at - 4, "a record length of at most " + std::to_string(frame.size() - at) + ", got " +
                                    std::to_string(length));
        const std::span<const std::byte> record = frame.subspan(at, length);
        TaskOutcomeView outcome{};
        if (status == static_cast<std::uint8_t>(TaskStatus::ok)) {
            if (header.kind != static_cast<std::uint32_t>(ResultFrameKind::results))
                frame_fault(at - kMinResultRecord, "an error record in an init_failed frame");
            outcome.status = TaskStatus::ok;
            outcome.result = record;
        } else if (status == static_cast<std::uint8_t>(TaskStatus::error)) {
            if (record.size() < 4) frame_fault(at, "an error record's type length");
            const auto type_length = read_plain<std::uint32_t>(record, 0);
            if (type_length > record.size() - 4)
                frame_fault(at, "an error type length of at most " + std::to_string(record.size() - 4) + ", got " +
                                    std::to_string(type_length));
            const auto* chars = reinterpret_cast<const char*>(record.data());
            outcome.status = TaskStatus::error;
            outcome.error_type = std::string_view(chars + 4, type_length);
            outcome.error_text = std::string_view(chars + 4 + type_length, record.size() - 4 - type_length);
        } else {
            frame_fault(at - kMinResultRecord, "a record status 0 or 1, got " + std::to_string(status));
        }
        view.outcomes.push_back(outcome);
        at += length;
    }
    if (at != frame.size()) frame_fault(at, "the end of the frame, " + std::to_string(frame.size() - at) + " bytes left");
    return view;
}

void append_length_prefixed(std::vector<std::byte>& frame, std::span<const std::byte> bytes) {
    append_plain(frame, static_cast<std::uint32_t>(bytes.size()));
    frame.insert(frame.end(), bytes.begin(), bytes.end());
}

void append_error_record(std::vector<std::byte>& frame, std::string_view type, std::string_view text) {
    type = type.substr(0, kMaxErrorTypeBytes);
    text = text.substr(0, kMaxErrorTextBytes);
    frame.push_back(static_cast<std::byte>(TaskStatus::error));
    append_plain(frame, static_cast<std::uint32_t>(4 + type.size() + text.size()));
    append_plain(frame, static_cast<std::uint32_t>(type.size()));
    const auto* type_bytes = reinterpret_cast<const std::byte*>(type.data());
    frame.insert(frame.end(), type_bytes, type_bytes + type.size());
    const auto* text_bytes = reinterpret_cast<const std::byte*>(text.data());
    frame.insert(frame.end(), text_bytes, text_bytes + text.size());
}

// ---------------------------------------------------------------------------------------------------------
// BatchState.

void BatchState::throw_failure(std::size_t index, bool name_index) const {
    const auto found = failures.find(index);
    const std::string where = name_index ? "task " + std::to_string(index) + ": " : std::string();
    if (found == failures.end()) throw StateError(where + "no failure recorded");
    const TaskFailure& failure = found->second;
    switch (failure.state) {
    case TaskState::remote_error:
        throw RemoteError(where + failure.type + ": " + failure.text, index, failure.type, failure.text);
    case TaskState::worker_died:
        throw WorkerDied(where + failure.text, index, failure.pid, failure.exit_status);
    case TaskState::timed_out:
        throw TimedOut(where + failure.text, index, failure.pid);
    default:
        throw Closed(where + failure.text);
    }
}

bool BatchState::wait_task(std::unique_lock<std::mutex>& lock, std::size_t task,
                           std::optional<std::chrono::nanoseconds> timeout) {
    const auto resolved = [&] { return slots[task].state != TaskState::pending; };
    if (!timeout) {
        resolved_changed.wait(lock, resolved);
        return true;
    }
    return resolved_changed.wait_for(lock, *timeout, resolved);
}

bool BatchState::wait_all(std::optional<std::chrono::nanoseconds> timeout) {
    std::unique_lock lock(mutex);
    const auto done = [&] { return remaining == 0; };
    if (!timeout) {
        resolved_changed.wait(lock, done);
        return true;
    }
    return resolved_changed.wait_for(lock, std::max(*timeout, std::chrono::nanoseconds(0)), done);
}

std::vector<std::size_t> completion_order(const std::vector<std::shared_ptr<BatchState>>& batches,
                                          std::optional<std::chrono::nanoseconds> timeout) {
    auto notifier = std::make_shared<CompletionNotifier>();
    for (const auto& batch : batches) {
        std::lock_guard lock(batch->mutex);
        batch->watchers.push_back(notifier);
    }
    const Deadline deadline = Deadline::after(timeout.value_or(std::chrono::nanoseconds::max()));
    std::vector<std::size_t> order;
    std::vector<bool> seen(batches.size(), false);
    while (order.size() < batches.size()) {
        std::size_t seen_resolutions;
        {
            std::lock_guard lock(notifier->mutex);
            seen_resolutions = notifier->resolved;
        }
        for (std::size_t i = 0; i < batches.size(); ++i) {
            if (seen[i]) continue;
            std::lock_guard lock(batches[i]->mutex);
            if (batches[i]->remaining == 0) {
                seen[i] = true;
                order.push_back(i);
            }
        }
        if (order.size() == batches.size()) break;
        std::unique_lock lock(notifier->mutex);
        const auto moved = [&] { return notifier->resolved != seen_resolutions; };
        if (!timeout) {
            notifier->changed.wait(lock, moved);
        } else if (!notifier->changed.wait_for(lock, deadline.remaining(), moved)) {
            throw TimeoutError("as_completed: " + std::to_string(batches.size() - order.size()) +
                               " results not ready within the timeout");
        }
    }
    return order;
}

// ---------------------------------------------------------------------------------------------------------
// The worker side.

namespace {

// Written by a worker before each task, read by the pool's thread (timeouts while it runs; the split of
// its chunk after it ended). One per worker slot, 128 bytes apart: each has one writer.
struct alignas(128) WorkerProgress {
    std::atomic<std::uint64_t> chunk_id;  // the chunk the worker runs (0: none yet)
    std::atomic<std::uint32_t> task;      // index within that chunk of the task it runs
    std::atomic<std::int64_t> started_ns;  // CLOCK_MONOTONIC when that task started
};
static_assert(sizeof(WorkerProgress) == 128);

std::string type_name_of(const std::type_info& type) {
    int status = 0;
    char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
    std::string result = status == 0 && name != nullptr ? name : type.name();
    std::free(name);
    return result;
}

// Appends the record of the exception being handled.
void append_current_exception(std::vector<std::byte>& frame) {
    try {
        throw;
    } catch (const std::exception& error) {
        append_error_record(frame, type_name_of(typeid(error)), error.what());
    } catch (...) {
        const std::type_info* type = abi::__cxa_current_exception_type();
        append_error_record(frame, type != nullptr ? type_name_of(*type) : "unknown",
                            "exception not derived from std::exception");
    }
}

std::vector<std::byte> result_header(ResultFrameKind kind, std::uint64_t chunk_id, std::uint32_t count) {
    std::vector<std::byte> frame;
    append_plain(frame, ResultFrameHeader{kResultFrameMagic, static_cast<std::uint32_t>(kind), chunk_id, count, 0});
    return frame;
}

// Rewrites the first `done` results, gathered back to back with `stride` bytes each after `start`, as
// records (the result frame stops being uniform at task `done`).
void convert_to_records(std::vector<std::byte>& reply, std::size_t start, std::size_t done, std::size_t stride) {
    const std::vector<std::byte> gathered(reply.begin() + static_cast<std::ptrdiff_t>(start), reply.end());
    reply.resize(start);
    for (std::size_t i = 0; i < done; ++i) {
        reply.push_back(static_cast<std::byte>(TaskStatus::ok));
        append_length_prefixed(reply, std::span(gathered).subspan(i * stride, stride));
    }
}

struct WorkerPlan {
    int fd;                              // the worker's end of its socketpair
    std::vector<int> fds_to_close;       // the pool's descriptors the fork copied
    WorkerProgress* progress;
    std::optional<PoolInitializer> initializer;
    std::size_t maxtasksperchild;
};

// The worker's whole life: initializer, then chunks until told to leave, the socket closes, or it has run
// maxtasksperchild tasks. Exit status 0 (or 3: the initializer threw and said so).
void run_worker(const WorkerPlan& plan) {
    for (const int fd : plan.fds_to_close) ::close(fd);
    FdConnection connection = FdConnection::from_fd(plan.fd);
    if (plan.initializer) {
        try {
            std::vector<std::byte> ignored;
            plan.initializer->invoker(plan.initializer->function, plan.initializer->arguments, ignored);
        } catch (...) {
            std::vector<std::byte> frame = result_header(ResultFrameKind::init_failed, 0, 1);
            append_current_exception(frame);
            try {
                connection.send_bytes(frame);
            } catch (...) {
            }
            std::fflush(nullptr);
            ::_exit(3);
        }
    }
    std::size_t tasks_run = 0;
    std::vector<std::byte> result;
    for (;;) {
        std::vector<std::byte> frame;
        try {
            frame = connection.recv_bytes();
        } catch (const Closed&) {
            return;
        }
        if (frame.size() < sizeof(TaskFrameHeader)) return;  // the parent never sends that: leave
        const auto header = read_plain<TaskFrameHeader>(frame, 0);
        if (header.magic != kTaskFrameMagic || header.kind != static_cast<std::uint32_t>(TaskFrameKind::run)) return;
        auto* invoker = reinterpret_cast<TaskInvoker>(static_cast<std::uintptr_t>(header.invoker));
        std::vector<std::byte> reply = result_header(ResultFrameKind::results, header.chunk_id, header.count);
        const std::size_t records_start = reply.size();
        const bool uniform_tasks = (header.flags & kUniform) != 0;
        std::size_t at = sizeof header;
        std::uint32_t task_stride = 0;
        if (uniform_tasks) {
            task_stride = read_plain<std::uint32_t>(frame, at);
            at += 4;
        }
        // Results are gathered back to back while every task succeeds with a result of one length (the
        // uniform form); the first that does not turns what was gathered into records.
        bool uniform_results = true;
        std::size_t result_stride = 0;
        // relaxed: the parent reads the slot after reaping this process (ordered by waitpid), or to time a
        // task, where a stale value only delays the timeout check to the next wake-up.
        plan.progress->chunk_id.store(header.chunk_id, std::memory_order_relaxed);
        for (std::uint32_t i = 0; i < header.count; ++i) {
            std::span<const std::byte> arguments;
            if (uniform_tasks) {
                arguments = std::span<const std::byte>(frame.data() + at, task_stride);
                at += task_stride;
            } else {
                const auto length = read_plain<std::uint32_t>(frame, at);
                arguments = std::span<const std::byte>(frame.data() + at + 4, length);
                at += 4 + length;
            }
            // relaxed (both): see chunk_id; started_ns is written first so that a reader that sees the new
            // task index with an old start time only times the task as older (an early timeout check
            // re-reads both on its next wake-up).
            plan.progress->started_ns.store(Deadline::monotonic_now_ns(), std::memory_order_relaxed);
            plan.progress->task.store(i, std::memory_order_release);  // pairs with the acquire in check_timeouts
            result.clear();
            bool ok = true;
            try {
                invoker(static_cast<std::uintptr_t>(header.function), arguments, result);
            } catch (...) {
                ok = false;
                if (uniform_results) convert_to_records(reply, records_start, i, result_stride);
                uniform_results = false;
                append_current_exception(reply);
            }
            if (!ok) continue;
            if (uniform_results && (i == 0 || result.size() == result_stride)) {
                result_stride = result.size();
                reply.insert(reply.end(), result.begin(), result.end());
                continue;
            }
            if (uniform_results) convert_to_records(reply, records_start, i, result_stride);
            uniform_results = false;
            reply.push_back(static_cast<std::byte>(TaskStatus::ok));
            append_length_prefixed(reply, result);
        }
        if (uniform_results) {
            // The stride goes between the header and the results.
            const auto stride = static_cast<std::uint32_t>(result_stride);
            const auto* stride_bytes = reinterpret_cast<const std::byte*>(&stride);
            reply.insert(reply.begin() + static_cast<std::ptrdiff_t>(records_start), stride_bytes, stride_bytes + 4);
            std::uint32_t flags = kUniform;
            std::memcpy(reply.data() + offsetof(ResultFrameHeader, flags), &flags, sizeof flags);
        }
        // relaxed: as above; past the last task, so that a death from here on is no task's.
        plan.progress->task.store(header.count, std::memory_order_release);
        try {
            connection.send_bytes(reply);
        } catch (const Error&) {
            return;  // the pool is gone
        }
        tasks_run += header.count;
        if (plan.maxtasksperchild != 0 && tasks_run >= plan.maxtasksperchild) return;
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// The pool's thread.

void run_pool_thread(void* impl);

// Hidden: only this file uses it (the class is exported for the header's inline code, its Impl is not).
struct __attribute__((visibility("hidden"))) PoolCore::Impl {
    enum class State { running, closing, terminating, finished };

    struct Chunk {
        std::shared_ptr<BatchState> batch;
        std::shared_ptr<const EncodedTasks> tasks;
        std::vector<std::size_t> indices;  // the batch's task indices this chunk carries
        unsigned attempts = 0;             // deaths of a worker running this chunk's (single) task so far
        std::uint64_t id = 0;
    };

    struct Worker {
        std::unique_ptr<Process> process;
        std::optional<FdConnection> connection;
        std::size_t slot = 0;
        std::optional<Chunk> chunk;
        std::size_t tasks_run = 0;
        bool timed_out = false;   // the pool killed it for task_timeout
        bool leaving = false;     // told to leave, or will leave (maxtasksperchild): no more chunks
    };

    struct Submission {
        std::shared_ptr<BatchState> batch;
        std::shared_ptr<const EncodedTasks> tasks;
        std::size_t chunksize;
    };

    PoolOptions options;
    std::optional<PoolInitializer> initializer;
    std::size_t process_count = 1;

    // Shared with callers.
    mutable std::mutex mutex;
    std::condition_variable state_changed;
    State state = State::running;
    std::deque<Submission> submissions;
    std::vector<pid_t> pids;  // the running workers' pids, for worker_pids()
    int wake_fd = -1;         // eventfd: callers → the pool's thread

    // The pool's thread's own.
    std::thread thread;
    std::vector<Worker> workers;
    std::deque<Chunk> pending;
    WorkerProgress* progress = nullptr;  // process_count slots, MAP_SHARED anonymous
    std::uint64_t next_chunk_id = 1;
    std::size_t deaths_without_progress = 0;
    std::optional<TaskFailure> broken;  // why the pool cannot run tasks any more
    std::size_t started_workers = 0;

    Impl(const PoolOptions& given, std::optional<PoolInitializer> init)
        : options(given), initializer(std::move(init)) {
        process_count = options.processes != 0 ? options.processes : cpu_count();
        wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0) throw_system_error("pool: eventfd");
        void* memory = ::mmap(nullptr, process_count * sizeof(WorkerProgress), PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) {
            const int error = errno;
            ::close(wake_fd);
            throw_system_error("pool: mmap of the progress slots", error);
        }
        progress = new (memory) WorkerProgress[process_count]();
        workers.resize(process_count);
        for (std::size_t i = 0; i < process_count; ++i) workers[i].slot = i;
        // The first workers are forked here, by the caller's thread, before the pool's thread exists: a fork
        // from the pool's thread copies whatever lock another thread holds at that instant (the fork hazard,
        // mproc/context.hpp), and the caller's thread is not allocating while it forks. clang 14's ASan
        // allocator, which fork() does not lock, hung a worker forked from the pool's thread in about one
        // run of pool_test in two. Replacements still come from the pool's thread, as in Python's Pool.
        try {
            for (Worker& worker : workers) start_worker(worker);
        } catch (...) {
            workers.clear();  // daemons: their Process handles kill and reap them
            ::munmap(progress, process_count * sizeof(WorkerProgress));
            ::close(wake_fd);
            throw;
        }
        publish_pids();
        // A plain function and a void*: the thread's state is then no instantiation over a library-internal
        // type, which the shared library would have to export (tests/export_test.sh).
        thread = std::thread(&run_pool_thread, static_cast<void*>(this));
    }

    ~Impl() {
        request(State::terminating);
        if (thread.joinable()) thread.join();
        ::munmap(progress, process_count * sizeof(WorkerProgress));
        ::close(wake_fd);
    }

    void wake() const {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t written = ::write(wake_fd, &one, sizeof one);
    }

    void request(State wanted) {
        {
            std::lock_guard lock(mutex);
            if (state == State::finished) return;
            if (wanted == State::terminating || state == State::running) state = wanted;
        }
        wake();
    }

    // --- resolving tasks (the pool's thread) --------------------------------------------------------

    static void finish_batch_if_done(BatchState& batch, std::unique_lock<std::mutex>& lock) {
        batch.resolved_changed.notify_all();
        if (batch.remaining != 0) return;
        auto watchers = std::move(batch.watchers);
        auto on_complete = std::move(batch.on_complete);
        lock.unlock();
        if (on_complete) {
            try {
                on_complete(batch);
            } catch (...) {
                // A callback that throws must not take the pool's thread down; Python logs and goes on.
            }
        }
        for (const auto& weak : watchers) {
            if (auto notifier = weak.lock()) {
                std::lock_guard notifier_lock(notifier->mutex);
                ++notifier->resolved;
                notifier->changed.notify_all();
            }
        }
    }

    static void fail_tasks(const Chunk& chunk, const std::vector<std::size_t>& indices, const TaskFailure& failure) {
        if (indices.empty()) return;
        std::unique_lock lock(chunk.batch->mutex);
        for (const std::size_t index : indices) {
            auto& slot = chunk.batch->slots[index];
            if (slot.state != TaskState::pending) continue;
            slot.state = failure.state;
            chunk.batch->failures.emplace(index, failure);
            chunk.batch->completion_order.push_back(index);
            --chunk.batch->remaining;
        }
        finish_batch_if_done(*chunk.batch, lock);
    }

    static void resolve_from_frame(const Chunk& chunk, std::vector<std::byte> frame, const ResultFrameView& view) {
        std::unique_lock lock(chunk.batch->mutex);
        BatchState& batch = *chunk.batch;
        const auto frame_index = static_cast<std::uint32_t>(batch.frames.size());
        for (std::size_t i = 0; i < chunk.indices.size(); ++i) {
            const std::size_t index = chunk.indices[i];
            auto& slot = batch.slots[index];
            if (view.ok(i)) {
                const std::span<const std::byte> result = view.result_of(i);
                slot.frame = frame_index;
                slot.offset = static_cast<std::uint64_t>(result.data() - frame.data());
                slot.length = static_cast<std::uint32_t>(result.size());
                slot.state = TaskState::value;
            } else {
                const TaskOutcomeView& outcome = view.outcomes[i];
                slot.state = TaskState::remote_error;
                batch.failures.emplace(index, TaskFailure{TaskState::remote_error, std::string(outcome.error_type),
                                                          std::string(outcome.error_text)});
            }
            batch.completion_order.push_back(index);
            --batch.remaining;
        }
        batch.frames.push_back(std::move(frame));  // the data pointer, and so every span above, is kept
        finish_batch_if_done(batch, lock);
    }

    // --- workers --------------------------------------------------------------------------------------

    void publish_pids() {
        std::vector<pid_t> running;
        for (const Worker& worker : workers)
            if (worker.process) running.push_back(worker.process->pid());
        std::lock_guard lock(mutex);
        pids = std::move(running);
    }

    void start_worker(Worker& worker) {
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) throw_system_error("pool: socketpair");
        WorkerPlan plan{pair[1], {pair[0], wake_fd}, &progress[worker.slot], initializer, options.maxtasksperchild};
        for (const Worker& other : workers)
            if (other.connection) plan.fds_to_close.push_back(other.connection->fileno());
        // relaxed (all three): the new worker is forked after these stores (fork orders them).
        progress[worker.slot].chunk_id.store(0, std::memory_order_relaxed);
        progress[worker.slot].task.store(0, std::memory_order_relaxed);
        progress[worker.slot].started_ns.store(0, std::memory_order_relaxed);
        try {
            worker.connection.emplace(FdConnection::from_fd(pair[0]));
        } catch (...) {
            ::close(pair[0]);
            ::close(pair[1]);
            throw;
        }
        ++started_workers;
        // Always forked, whatever the default start method: tasks travel as function addresses, which only a
        // forked image shares (mproc/pool.hpp).
        ProcessOptions process_options{.name = "PoolWorker-" + std::to_string(started_workers),
                                       .daemon = true,
                                       .context = Context(StartMethod::fork)};
        worker.process = std::make_unique<Process>(process_options, [plan] { run_worker(plan); });
        try {
            worker.process->start();
        } catch (...) {
            ::close(pair[1]);
            worker.process.reset();
            worker.connection.reset();
            throw;
        }
        ::close(pair[1]);
        worker.chunk.reset();
        worker.tasks_run = 0;
        worker.timed_out = false;
        worker.leaving = false;
    }

    void send_chunk(Worker& worker, Chunk chunk) {
        std::vector<std::byte> frame;
        const EncodedTasks& tasks = *chunk.tasks;
        const bool uniform = tasks.uniform_size.has_value();
        append_plain(frame, TaskFrameHeader{kTaskFrameMagic, static_cast<std::uint32_t>(TaskFrameKind::run), chunk.id,
                                            reinterpret_cast<std::uintptr_t>(tasks.invoker), tasks.function,
                                            static_cast<std::uint32_t>(chunk.indices.size()), uniform ? kUniform : 0});
        if (uniform) {
            const std::size_t stride = *tasks.uniform_size;
            append_plain(frame, static_cast<std::uint32_t>(stride));
            // A chunk's tasks are consecutive unless it was split after a death: copy runs, not tasks.
            std::size_t i = 0;
            while (i < chunk.indices.size()) {
                std::size_t run = 1;
                while (i + run < chunk.indices.size() && chunk.indices[i + run] == chunk.indices[i] + run) ++run;
                const auto* begin = tasks.bytes.data() + chunk.indices[i] * stride;
                frame.insert(frame.end(), begin, begin + run * stride);
                i += run;
            }
        } else {
            for (const std::size_t index : chunk.indices) {
                const std::size_t begin = index == 0 ? 0 : tasks.ends[index - 1];
                append_length_prefixed(frame, std::span(tasks.bytes).subspan(begin, tasks.ends[index] - begin));
            }
        }
        worker.chunk = std::move(chunk);
        try {
            worker.connection->send_bytes(frame);
        } catch (const Error&) {
            // The worker is gone or going: its death (seen on its sentinel) puts the chunk back.
            worker.process->kill();
        }
    }

    std::string describe_end(const Worker& worker, int exit_status) const {
        const std::string who = "worker " + std::to_string(worker.process->pid());
        if (exit_status < 0) {
            const char* name = ::sigabbrev_np(-exit_status);
            return who + " was killed by signal " + std::to_string(-exit_status) + (name ? " (SIG" + std::string(name) + ")" : "");
        }
        return who + " exited with status " + std::to_string(exit_status);
    }

    // The worker ended (or must end: its socket failed): reap it, settle its chunk, replace it.
    void settle_death(Worker& worker) {
        worker.process->kill();  // a worker whose socket failed but which still runs
        // Results it sent before ending are still in the socket: take them first.
        try {
            while (worker.chunk && worker.connection->poll(std::chrono::nanoseconds(0))) receive(worker);
        } catch (const Error&) {
        }
        worker.process->join();
        const int exit_status = worker.process->exitcode().value_or(-SIGKILL);
        // relaxed: the worker was reaped above; waitpid orders its stores before this. A worker that began
        // a chunk proved that workers start; one that died before (in its initializer, or killed while
        // starting) counts towards breaking the pool. A death inside a task does neither: it is that task's
        // outcome, and each such death uses up one of a task's runs, so it cannot loop.
        const bool began_a_chunk = progress[worker.slot].chunk_id.load(std::memory_order_relaxed) != 0;
        if (began_a_chunk) {
            deaths_without_progress = 0;
        } else if (!worker.leaving && !worker.timed_out && (worker.chunk || exit_status != 0)) {
            ++deaths_without_progress;
        }
        if (worker.chunk) {
            Chunk chunk = std::move(*worker.chunk);
            worker.chunk.reset();
            const WorkerProgress& slot = progress[worker.slot];
            // relaxed (both): the worker was reaped above; waitpid orders its stores before this.
            const bool started = slot.chunk_id.load(std::memory_order_relaxed) == chunk.id;
            const std::size_t running = started ? slot.task.load(std::memory_order_relaxed) : chunk.indices.size() + 1;
            requeue_after_death(worker, std::move(chunk), started ? running : std::size_t(-1), exit_status);
        }
        worker.connection.reset();
        worker.process.reset();
        if (deaths_without_progress > 2 * process_count + 2 && !broken)
            broken = TaskFailure{TaskState::worker_died, "", "pool broken: " + std::to_string(deaths_without_progress) +
                                 " workers in a row ended before beginning a chunk; the last: " +
                                 describe_end_text(exit_status), 0, exit_status};
    }

    static std::string describe_end_text(int exit_status) {
        if (exit_status < 0) return "killed by signal " + std::to_string(-exit_status);
        return "exit status " + std::to_string(exit_status);
    }

    // running: index within the chunk of the task the worker was running (size: none, past the last one;
    // -1: it never started the chunk).
    void requeue_after_death(Worker& worker, Chunk chunk, std::size_t running, int exit_status) {
        std::vector<std::size_t> again;
        if (running == std::size_t(-1) || running >= chunk.indices.size()) {
            // It never started the chunk, or had finished it: nothing ran for good, so nothing counts as
            // a re-run; the chunk keeps its count (verify/pool: BUG_REQUEUE_RESETS_ATTEMPTS).
            pending.push_front(Chunk{chunk.batch, chunk.tasks, chunk.indices, chunk.attempts, next_chunk_id++});
            return;
        } else {
            const std::size_t index = chunk.indices[running];
            for (std::size_t i = 0; i < chunk.indices.size(); ++i)
                if (i != running) again.push_back(chunk.indices[i]);
            const pid_t pid = worker.process->pid();
            if (worker.timed_out) {
                fail_tasks(chunk, {index},
                           TaskFailure{TaskState::timed_out, "", "ran longer than the pool's task_timeout; worker " +
                                                                   std::to_string(pid) + " was killed", pid, exit_status});
            } else if (chunk.attempts < options.retries) {
                pending.push_front(Chunk{chunk.batch, chunk.tasks, {index}, chunk.attempts + 1, next_chunk_id++});
            } else {
                fail_tasks(chunk, {index},
                           TaskFailure{TaskState::worker_died, "", describe_end(worker, exit_status) + " running it", pid,
                                       exit_status});
            }
        }
        if (!again.empty()) pending.push_front(Chunk{chunk.batch, chunk.tasks, std::move(again), 0, next_chunk_id++});
    }

    // Reads one result frame from the worker and resolves its chunk. A malformed frame, or one for
    // another chunk, ends the worker (its chunk is then settled as for a death).
    void receive(Worker& worker) {
        std::vector<std::byte> frame = worker.connection->recv_bytes();
        ResultFrameView view;
        try {
            view = parse_result_frame(frame);
        } catch (const DecodeError&) {
            worker.process->kill();
            return;
        }
        if (view.kind == ResultFrameKind::init_failed) {  // never uniform: one error record
            const TaskOutcomeView& error = view.outcomes.front();
            if (!broken)
                broken = TaskFailure{TaskState::remote_error, std::string(error.error_type),
                                     "the pool's initializer raised it: " + std::string(error.error_text)};
            worker.leaving = true;
            return;
        }
        if (!worker.chunk || view.chunk_id != worker.chunk->id || view.count != worker.chunk->indices.size()) {
            worker.process->kill();
            return;
        }
        Chunk chunk = std::move(*worker.chunk);
        worker.chunk.reset();
        worker.tasks_run += chunk.indices.size();
        deaths_without_progress = 0;
        if (options.maxtasksperchild != 0 && worker.tasks_run >= options.maxtasksperchild) worker.leaving = true;
        resolve_from_frame(chunk, std::move(frame), view);
    }

    // --- the loop --------------------------------------------------------------------------------------

    void take_submissions() {
        std::deque<Submission> taken;
        {
            std::lock_guard lock(mutex);
            taken.swap(submissions);
        }
        for (Submission& submission : taken) {
            const std::size_t count = submission.tasks->count();
            std::size_t chunksize = submission.chunksize;
            if (chunksize == 0) {
                // Python's default: ceil(len / (4 × processes)).
                chunksize = (count + 4 * process_count - 1) / (4 * process_count);
                if (chunksize == 0) chunksize = 1;
            }
            for (std::size_t begin = 0; begin < count; begin += chunksize) {
                Chunk chunk{submission.batch, submission.tasks, {}, 0, next_chunk_id++};
                for (std::size_t i = begin; i < std::min(count, begin + chunksize); ++i) chunk.indices.push_back(i);
                pending.push_back(std::move(chunk));
            }
        }
    }

    bool any_busy() const {
        return std::any_of(workers.begin(), workers.end(), [](const Worker& worker) { return worker.chunk.has_value(); });
    }

    void fail_everything(const TaskFailure& failure) {
        for (Chunk& chunk : pending) fail_tasks(chunk, chunk.indices, failure);
        pending.clear();
        for (Worker& worker : workers) {
            if (!worker.chunk) continue;
            fail_tasks(*worker.chunk, worker.chunk->indices, failure);
            worker.chunk.reset();
        }
    }

    // The earliest moment a running task passes task_timeout (nullopt: no timeout to watch).
    std::optional<std::int64_t> check_timeouts() {
        if (!options.task_timeout) return std::nullopt;
        const std::int64_t limit = options.task_timeout->count();
        std::optional<std::int64_t> earliest;
        const std::int64_t now = Deadline::monotonic_now_ns();
        for (Worker& worker : workers) {
            if (!worker.chunk || worker.timed_out) continue;
            const WorkerProgress& slot = progress[worker.slot];
            // acquire: pairs with the worker's release of `task`, so started_ns is that task's (or newer).
            const std::uint32_t task = slot.task.load(std::memory_order_acquire);
            // relaxed (both): see above.
            const std::int64_t started = slot.started_ns.load(std::memory_order_relaxed);
            if (slot.chunk_id.load(std::memory_order_relaxed) != worker.chunk->id || task >= worker.chunk->indices.size()) {
                // Not started yet (or finished): time it from now at the latest.
                earliest = std::min(earliest.value_or(now + limit), now + limit);
                continue;
            }
            if (now - started >= limit) {
                worker.timed_out = true;
                worker.process->kill();
            } else {
                earliest = std::min(earliest.value_or(started + limit), started + limit);
            }
        }
        return earliest;
    }

    void run() {
        try {
            loop();
        } catch (const std::exception& error) {
            // Nothing the pool does should throw here; if it does (fork refused, out of descriptors), every
            // task fails with the reason rather than hanging its caller.
            std::lock_guard lock(mutex);
            state = State::terminating;
            broken = TaskFailure{TaskState::closed, "", std::string("pool stopped: ") + error.what()};
        }
        shut_down();
    }

    void loop() {
        for (;;) {
            State now_state;
            {
                std::lock_guard lock(mutex);
                now_state = state;
            }
            if (now_state == State::terminating) return;
            take_submissions();
            if (broken) fail_everything(*broken);
            // Replace workers that ended, start missing ones.
            if (!broken) {
                bool started = false;
                for (Worker& worker : workers) {
                    if (!worker.process) {
                        start_worker(worker);
                        started = true;
                    }
                }
                if (started) publish_pids();
            }
            for (Worker& worker : workers) {
                if (pending.empty()) break;
                if (worker.process && !worker.chunk && !worker.leaving) {
                    Chunk chunk = std::move(pending.front());
                    pending.pop_front();
                    send_chunk(worker, std::move(chunk));
                }
            }
            if (now_state == State::closing && pending.empty() && !any_busy()) return;

            std::vector<pollfd> fds{{wake_fd, POLLIN, 0}};
            for (const Worker& worker : workers) {
                if (!worker.process) continue;
                fds.push_back({worker.connection->fileno(), POLLIN, 0});
                fds.push_back({worker.process->sentinel(), POLLIN, 0});
            }
            const std::optional<std::int64_t> next_timeout = check_timeouts();
            std::optional<timespec> wait_for;
            if (next_timeout)
                wait_for = Deadline::to_timespec(std::chrono::nanoseconds(*next_timeout - Deadline::monotonic_now_ns()));
            const int ready = ::ppoll(fds.data(), fds.size(), wait_for ? &*wait_for : nullptr, nullptr);
            if (ready < 0 && errno != EINTR) throw_system_error("pool: ppoll");
            std::uint64_t drained = 0;
            [[maybe_unused]] const ssize_t got = ::read(wake_fd, &drained, sizeof drained);
            std::size_t at = 1;
            for (Worker& worker : workers) {
                if (!worker.process) continue;
                const short socket_events = fds[at].revents;
                const short sentinel_events = fds[at + 1].revents;
                at += 2;
                bool ended = (sentinel_events & (POLLIN | POLLHUP | POLLERR)) != 0;
                if (!ended && (socket_events & (POLLIN | POLLHUP | POLLERR)) != 0) {
                    try {
                        receive(worker);
                    } catch (const Error&) {
                        ended = true;  // end of stream, or a frame cut by the worker's end
                    }
                }
                if (ended) {
                    settle_death(worker);
                    publish_pids();
                }
            }
            check_timeouts();
        }
    }

    void shut_down() {
        State final_state;
        {
            std::lock_guard lock(mutex);
            final_state = state;
        }
        if (final_state == State::terminating) {
            for (Worker& worker : workers)
                if (worker.process) worker.process->kill();
        } else {
            for (Worker& worker : workers) {
                if (!worker.process) continue;
                std::vector<std::byte> frame;
                append_plain(frame, TaskFrameHeader{kTaskFrameMagic, static_cast<std::uint32_t>(TaskFrameKind::exit), 0, 0,
                                                    0, 0, 0});
                try {
                    worker.connection->send_bytes(frame);
                } catch (const Error&) {
                }
            }
        }
        for (Worker& worker : workers) {
            if (!worker.process) continue;
            try {
                worker.process->join();
            } catch (const Error&) {
            }
        }
        take_submissions();
        fail_everything(broken && broken->state == TaskState::closed
                            ? *broken
                            : TaskFailure{TaskState::closed, "", "the pool was terminated before the task ran"});
        for (Worker& worker : workers) {
            worker.connection.reset();
            worker.process.reset();
        }
        {
            std::lock_guard lock(mutex);
            state = State::finished;
            pids.clear();
        }
        state_changed.notify_all();
    }
};

void run_pool_thread(void* impl) { static_cast<PoolCore::Impl*>(impl)->run(); }

PoolCore::PoolCore(const PoolOptions& options, std::optional<PoolInitializer> initializer)
    : impl_(std::make_unique<Impl>(options, std::move(initializer))) {}

PoolCore::~PoolCore() = default;

std::shared_ptr<BatchState> PoolCore::submit(EncodedTasks tasks, std::size_t chunksize,
                                             std::function<void(BatchState&)> on_complete) {
    // Every task's arguments of one length (any trivially copyable argument type): uniform frames.
    std::size_t first = tasks.count() == 0 ? 0 : tasks.ends[0];
    bool uniform = tasks.count() > 0 && first <= UINT32_MAX;
    for (std::size_t i = 1; uniform && i < tasks.count(); ++i) uniform = tasks.ends[i] - tasks.ends[i - 1] == first;
    if (uniform) tasks.uniform_size = first;
    auto batch = std::make_shared<BatchState>();
    batch->slots.resize(tasks.count());
    batch->remaining = tasks.count();
    batch->on_complete = std::move(on_complete);
    if (tasks.count() == 0) {
        // Nothing to run: complete now (callbacks run in the caller's thread then).
        std::unique_lock lock(batch->mutex);
        Impl::finish_batch_if_done(*batch, lock);
        return batch;
    }
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->state != Impl::State::running)
            throw StateError("pool: submit after close() or terminate() (Python: Pool not running)");
        impl_->submissions.push_back({batch, std::make_shared<const EncodedTasks>(std::move(tasks)), chunksize});
    }
    impl_->wake();
    return batch;
}

void PoolCore::close() { impl_->request(Impl::State::closing); }

void PoolCore::terminate() {
    impl_->request(Impl::State::terminating);
    if (impl_->thread.joinable()) impl_->thread.join();
}

void PoolCore::join() {
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->state == Impl::State::running)
            throw StateError("pool: join() before close() or terminate() (Python: Pool is still running)");
    }
    if (impl_->thread.joinable()) impl_->thread.join();
}

std::size_t PoolCore::processes() const noexcept { return impl_->process_count; }

std::vector<pid_t> PoolCore::worker_pids() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->pids;
}

}  // namespace detail
}  // namespace mproc
