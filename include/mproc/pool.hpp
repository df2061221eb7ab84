// mproc/pool.hpp — Python's multiprocessing.Pool for C++: run a function over many inputs in worker
// processes — map, imap, imap_unordered, starmap, apply, apply_async, map_async — and an executor face
// (submit, shutdown, as_completed). A worker's death fails (or re-runs) exactly the task it was running;
// the pool starts a replacement and every other task goes on. Nothing a worker does can hang the caller.
//
// Defines: PoolOptions, Callbacks<R>, AsyncResult<R>, IMapIterator<R>, Pool, cpu_count(),
// active_children(), parent_process(); detail::PoolCore (src/pool.cpp), detail::BatchState.
//
// What a task is: a function pointer, or a lambda without captures (converted to one), with arguments and
// a result of any type the codec encodes (mproc/codec.hpp). Closures that capture are refused at compile
// time: a capture lives in the caller's memory, which a worker started by fork() sees only as it was at the
// fork, and a worker started by exec (the spawn start method) not at all; a function's address is the same
// in every process of the program. Arguments travel encoded, so a task sees copies of them, as in Python.
//
// Guarantees
// - Every task ends exactly once, as one of: its value; RemoteError (the task threw: the exception's
//   type name and what(), as Python's RemoteTraceback; the worker survives); WorkerDied (its worker ended
//   while running it — SIGKILL, segfault, abort, the OOM killer, _exit — with the worker's pid and
//   exit code or signal; with `retries = n` such a task is run again up to n times before it fails so);
//   TimedOut (it ran longer than `task_timeout`: its worker was SIGKILLed and replaced); Closed
//   (terminate() came first). get() throws the outcome that is not a value; map-like calls throw the first
//   failed task's, by input index, naming the index.
// - Tasks are sent in chunks (Python's default size: ceil(len / (4 × processes)) unless chunksize is given)
//   to whichever worker is idle (one chunk per worker at a time: no static partition). A worker's death
//   affects only its current chunk: the task it was running fails as above, tasks of the chunk it had not
//   reached are sent again (they never ran), and tasks of the chunk it had finished are run again (their
//   results died with the worker before the chunk's results were sent) — give chunksize 1 where running a
//   task twice is not acceptable.
// - A worker that exits on its own between chunks (maxtasksperchild reached) is replaced silently. An
//   initializer that throws makes the pool broken: every pending and later call fails with a RemoteError
//   naming the initializer; workers that keep dying before beginning a single chunk (2 × processes + 2
//   in a row: in the initializer, or killed while starting) break it too, with their last exit status. A broken pool never respawns in a loop.
// - terminate() (and the destructor, as Python's `with Pool()`) kills every worker with SIGKILL, fails
//   every unresolved task with Closed at once, reaps every worker and closes every descriptor the pool
//   opened before it returns. close() then join() lets every submitted task finish first.
// - Callbacks (callback / error_callback) run in the pool's own thread, as in Python: they must be short
//   and must not wait for results of the same pool.
// Costs: one thread in the caller's process (dispatch, results, deaths, timeouts: it sleeps in one ppoll
// over an eventfd, each worker's socket and pidfd); per chunk one frame each way over an AF_UNIX socketpair
// (FdConnection); per task the encoding of its arguments and result. Workers are forked (the fork start
// method) from the pool's thread.
// Misuse: a call after close() or terminate() throws StateError; get() on a default-constructed
// AsyncResult throws StateError; a task's argument or result type the codec cannot encode, or a capturing
// lambda, does not compile.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"

namespace mproc {

// The CPUs this process may run on (its affinity mask), as Python's os.process_cpu_count(); at least 1.
MPROC_API std::size_t cpu_count();
// The pids of this process's children that are still running (from /proc/self/task/*/children).
MPROC_API std::vector<pid_t> active_children();
// The pid of the process that started this one with mproc::Process; empty in a process not started so.
MPROC_API std::optional<pid_t> parent_process();

struct PoolOptions {
    std::size_t processes = 0;         // 0: cpu_count()
    std::size_t maxtasksperchild = 0;  // a worker leaves after this many tasks and is replaced; 0: never
    unsigned retries = 0;              // re-runs of a task whose worker died while running it
    std::optional<std::chrono::nanoseconds> task_timeout;  // a task running longer is killed: TimedOut
};

template <class R>
class AsyncResult;

namespace detail {

// Runs one task in a worker: decodes its arguments, calls the function, encodes the result (appended to
// result). Exceptions propagate to the worker loop, which reports them.
using TaskInvoker = void (*)(std::uintptr_t function, std::span<const std::byte> arguments,
                             std::vector<std::byte>& result);

// A function returning void gives std::monostate, the None marker, as Python's functions give None.
template <class R>
using ValueOf = std::conditional_t<std::is_void_v<R>, std::monostate, std::decay_t<R>>;

template <class R>
void encode_task_result(std::vector<std::byte>& out, auto&& call) {
    if constexpr (std::is_void_v<R>) {
        call();
        encode(std::monostate{}, out);
    } else {
        encode(call(), out);
    }
}

// Arguments are one tuple of the decayed parameter types (apply, starmap, submit).
template <class R, class... Args>
void invoke_with_tuple(std::uintptr_t function, std::span<const std::byte> arguments, std::vector<std::byte>& out) {
    auto* fn = reinterpret_cast<R (*)(Args...)>(function);
    auto values = decode<std::tuple<std::decay_t<Args>...>>(arguments);
    encode_task_result<R>(out, [&]() -> decltype(auto) { return std::apply(fn, std::move(values)); });
}

// One argument, encoded as itself (map, imap).
template <class R, class Arg>
void invoke_with_one(std::uintptr_t function, std::span<const std::byte> argument, std::vector<std::byte>& out) {
    auto* fn = reinterpret_cast<R (*)(Arg)>(function);
    auto value = decode<std::decay_t<Arg>>(argument);
    encode_task_result<R>(out, [&]() -> decltype(auto) { return fn(std::move(value)); });
}

template <class F>
concept TaskFunction = requires(F f) { +f; } && std::is_pointer_v<decltype(+std::declval<F>())> &&
                       std::is_function_v<std::remove_pointer_t<decltype(+std::declval<F>())>>;

template <class Signature>
struct FunctionTraits;
template <class R, class... Args>
struct FunctionTraits<R (*)(Args...)> {
    using Result = ValueOf<R>;
    using ArgumentTuple = std::tuple<std::decay_t<Args>...>;
    static constexpr std::size_t arity = sizeof...(Args);
    template <std::size_t I>
    using Argument = std::tuple_element_t<I, std::tuple<Args...>>;
    static constexpr TaskInvoker tuple_invoker = &invoke_with_tuple<R, Args...>;
    template <class Arg>
    static constexpr TaskInvoker one_invoker = &invoke_with_one<R, Arg>;
};

template <class F>
using PointerOf = decltype(+std::declval<F>());

// Types the codec writes as their raw bytes (trivially copyable, no hook): a batch of them is copied in
// one piece, and their results are read back with a copy each.
template <class T>
inline constexpr bool raw_codec = codec_detail::rule_of<std::remove_cvref_t<T>>() == codec_detail::Rule::raw;

template <class T>
T decode_value_of(std::span<const std::byte> bytes) {
    if constexpr (raw_codec<T>) {
        if (bytes.size() == sizeof(T)) {
            T value;
            std::memcpy(static_cast<void*>(&value), bytes.data(), sizeof(T));
            return value;
        }
    }
    return decode<T>(bytes);  // the general path, and a wrong size's DecodeError
}

template <class F>
constexpr void require_task_function() {
    static_assert(TaskFunction<F>,
                  "a Pool task must be a function pointer or a lambda without captures: a capture lives in "
                  "the caller's memory, which a worker does not share (see mproc/pool.hpp)");
}

enum class TaskState : std::uint8_t { pending, value, remote_error, worker_died, timed_out, closed };

struct TaskFailure {
    TaskState state;
    std::string type;  // remote_error: the exception's type name
    std::string text;  // remote_error: what(); otherwise a description
    pid_t pid = 0;     // worker_died, timed_out: the worker
    int exit_status = 0;  // worker_died: Python's exitcode (-N for signal N)
};

// What as_completed() waits on: every batch it watches bumps `resolved` when it completes.
struct CompletionNotifier {
    std::mutex mutex;
    std::condition_variable changed;
    std::size_t resolved = 0;
};

// What runs in a worker before its first task (Pool's initializer and initargs).
struct PoolInitializer {
    TaskInvoker invoker = nullptr;
    std::uintptr_t function = 0;
    std::vector<std::byte> arguments;
};

// The results of one call (apply_async, map_async, imap …): per task its state, and for a value the span
// of its encoding in the result frame it came in. Shared by the caller's handles and the pool's thread.
struct MPROC_API BatchState {
    struct Slot {
        std::uint32_t frame = 0;   // index into frames
        std::uint32_t length = 0;
        std::uint64_t offset = 0;
        TaskState state = TaskState::pending;
    };
    std::mutex mutex;
    std::condition_variable resolved_changed;
    std::vector<Slot> slots;
    std::vector<std::vector<std::byte>> frames;
    std::unordered_map<std::size_t, TaskFailure> failures;
    std::vector<std::size_t> completion_order;  // task indices in the order they resolved
    std::size_t remaining = 0;
    // Runs in the pool's thread once every task resolved (callbacks), without the mutex held.
    std::function<void(BatchState&)> on_complete;
    std::vector<std::weak_ptr<CompletionNotifier>> watchers;  // as_completed() calls waiting on this batch

    std::span<const std::byte> bytes_of(std::size_t task) const {
        const Slot& slot = slots[task];
        return std::span<const std::byte>(frames[slot.frame]).subspan(slot.offset, slot.length);
    }
    // Throws the failure of task `index` (the caller holds the mutex or the batch is complete).
    [[noreturn]] void throw_failure(std::size_t index, bool name_index) const;
    // Waits until the task resolved; false on timeout.
    bool wait_task(std::unique_lock<std::mutex>& lock, std::size_t task, std::optional<std::chrono::nanoseconds> timeout);
    bool wait_all(std::optional<std::chrono::nanoseconds> timeout);
};

// Tasks as the pool's thread sends them: the encoded arguments of every task back to back.
struct EncodedTasks {
    TaskInvoker invoker = nullptr;
    std::uintptr_t function = 0;
    std::vector<std::byte> bytes;
    std::vector<std::size_t> ends;  // task i's bytes are [ends[i-1], ends[i])
    std::optional<std::size_t> uniform_size;  // set by PoolCore::submit when every task has this many bytes
    void close_task() { ends.push_back(bytes.size()); }
    std::size_t count() const { return ends.size(); }
};

class MPROC_API PoolCore {
public:
    PoolCore(const PoolOptions& options, std::optional<PoolInitializer> initializer);
    ~PoolCore();
    PoolCore(const PoolCore&) = delete;
    PoolCore& operator=(const PoolCore&) = delete;

    // Queues the tasks in chunks of chunksize (0: Python's default) and returns their results' state.
    std::shared_ptr<BatchState> submit(EncodedTasks tasks, std::size_t chunksize,
                                       std::function<void(BatchState&)> on_complete);
    void close();
    void terminate();
    void join();
    std::size_t processes() const noexcept;
    // The pids of the workers running now.
    std::vector<pid_t> worker_pids() const;

private:
    struct Impl;
    friend void run_pool_thread(void* impl);
    std::unique_ptr<Impl> impl_;
};


template <class R>
std::shared_ptr<BatchState> batch_of(const AsyncResult<R>& result);
// as_completed(): the indices of batches in the order they complete (TimeoutError past the timeout).
MPROC_API std::vector<std::size_t> completion_order(const std::vector<std::shared_ptr<BatchState>>& batches,
                                          std::optional<std::chrono::nanoseconds> timeout);

}  // namespace detail

// Python's callback / error_callback of apply_async and map_async. They run in the pool's thread.
template <class R>
struct Callbacks {
    std::function<void(const R&)> callback;
    std::function<void(const Error&)> error_callback;
};

// Python's AsyncResult (and concurrent.futures.Future for submit): the result of one apply_async (R) or
// map_async (R = std::vector<T>).
template <class R>
class AsyncResult {
public:
    AsyncResult() = default;

    // The value; throws the task's failure (RemoteError, WorkerDied, TimedOut, Closed), or
    // TimeoutError when the timeout passed first (Python's multiprocessing.TimeoutError).
    R get(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
        require();
        if (!batch_->wait_all(timeout)) throw TimeoutError("AsyncResult::get: the result is not ready within the timeout");
        return value_of(*batch_);
    }
    // Blocks until ready or the timeout; returns ready().
    bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const {
        require();
        return batch_->wait_all(timeout);
    }
    bool ready() const { return wait(std::chrono::nanoseconds(0)); }
    // Python raises ValueError before the result is ready; StateError here.
    bool successful() const {
        if (!ready()) throw StateError("AsyncResult::successful: the result is not ready");
        std::lock_guard lock(batch_->mutex);
        return batch_->failures.empty();
    }
    bool valid() const noexcept { return batch_ != nullptr; }

private:
    friend class Pool;
    template <class T>
    friend std::shared_ptr<detail::BatchState> detail::batch_of(const AsyncResult<T>& result);
    AsyncResult(std::shared_ptr<detail::BatchState> batch, bool map_like) : batch_(std::move(batch)), map_like_(map_like) {}
    void require() const {
        if (!batch_) throw StateError("AsyncResult: no result (default-constructed)");
    }
    // The value of a batch whose every task resolved.
    static R value_of_complete(const detail::BatchState& batch, bool map_like);
    R value_of(detail::BatchState& batch) const {
        std::lock_guard lock(batch.mutex);
        return value_of_complete(batch, map_like_);
    }

    std::shared_ptr<detail::BatchState> batch_;
    bool map_like_ = false;
};

template <class R>
R AsyncResult<R>::value_of_complete(const detail::BatchState& batch, bool map_like) {
    if (!batch.failures.empty()) {
        std::size_t first = batch.slots.size();
        for (const auto& [index, failure] : batch.failures) first = std::min(first, index);
        batch.throw_failure(first, map_like);
    }
    if constexpr (requires { typename R::value_type; } && !std::is_same_v<R, std::string>) {
        if (map_like) {
            R values;
            values.reserve(batch.slots.size());
            for (std::size_t i = 0; i < batch.slots.size(); ++i)
                values.push_back(detail::decode_value_of<typename R::value_type>(batch.bytes_of(i)));
            return values;
        }
    }
    return detail::decode_value_of<R>(batch.bytes_of(0));
}

// Python's IMapIterator: the results of imap (in input order) or imap_unordered (in completion order).
// next() returns the next value, throws the task's failure (the iterator then moves on, as Python's does),
// std::nullopt at the end, or throws TimeoutError when the timeout passes first.
template <class T>
class IMapIterator {
public:
    std::optional<T> next(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        std::unique_lock lock(batch_->mutex);
        if (yielded_ == batch_->slots.size()) return std::nullopt;
        std::size_t task;
        if (ordered_) {
            task = yielded_;
            if (!batch_->wait_task(lock, task, timeout)) throw TimeoutError("IMapIterator::next: timed out");
        } else {
            const auto ready = [&] { return batch_->completion_order.size() > yielded_; };
            if (!wait_for(lock, ready, timeout)) throw TimeoutError("IMapIterator::next: timed out");
            task = batch_->completion_order[yielded_];
        }
        ++yielded_;
        if (batch_->slots[task].state != detail::TaskState::value) batch_->throw_failure(task, true);
        const auto bytes = batch_->bytes_of(task);
        lock.unlock();
        return detail::decode_value_of<T>(bytes);
    }
    std::size_t size() const noexcept { return batch_->slots.size(); }

    // Range-for over the values; a failed task throws from operator++ / the first dereference.
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* owner) : owner_(owner) { advance(); }
        const T& operator*() const { return *current_; }
        iterator& operator++() {
            advance();
            return *this;
        }
        void operator++(int) { advance(); }
        bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

    private:
        void advance() { current_ = owner_->next(); }
        IMapIterator* owner_ = nullptr;
        std::optional<T> current_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

private:
    friend class Pool;
    IMapIterator(std::shared_ptr<detail::BatchState> batch, bool ordered) : batch_(std::move(batch)), ordered_(ordered) {}
    template <class Ready>
    bool wait_for(std::unique_lock<std::mutex>& lock, Ready ready, std::optional<std::chrono::nanoseconds> timeout) {
        if (!timeout) {
            batch_->resolved_changed.wait(lock, ready);
            return true;
        }
        return batch_->resolved_changed.wait_for(lock, *timeout, ready);
    }
    std::shared_ptr<detail::BatchState> batch_;
    bool ordered_;
    std::size_t yielded_ = 0;
};

class Pool {
public:
    explicit Pool(std::size_t processes = 0) : Pool(options_with(processes)) {}
    explicit Pool(const PoolOptions& options) : core_(std::make_unique<detail::PoolCore>(options, std::nullopt)) {}
    // An initializer runs once in every worker before its first task (Python's initializer, initargs); a
    // task function's rules apply to it.
    template <class F, class... Args>
    Pool(const PoolOptions& options, F initializer, Args&&... initargs)
        : core_(std::make_unique<detail::PoolCore>(options, make_initializer(initializer, std::forward<Args>(initargs)...))) {}
    Pool(Pool&&) noexcept = default;
    Pool& operator=(Pool&&) noexcept = default;
    ~Pool() = default;  // terminate(), as Python's `with Pool()`

    // --- Python's Pool -----------------------------------------------------------------------------------
    template <class F, class... Args>
    auto apply(F fn, Args&&... args) {
        return apply_async(fn, std::forward_as_tuple(std::forward<Args>(args)...)).get();
    }
    template <class F, class Tuple = std::tuple<>>
    auto apply_async(F fn, const Tuple& args = {}, Callbacks<typename detail::FunctionTraits<detail::PointerOf<F>>::Result> callbacks = {}) {
        detail::require_task_function<F>();
        using Traits = detail::FunctionTraits<detail::PointerOf<F>>;
        using R = typename Traits::Result;
        detail::EncodedTasks tasks = tasks_for(Traits::tuple_invoker, +fn);
        encode(typename Traits::ArgumentTuple(args), tasks.bytes);
        tasks.close_task();
        return AsyncResult<R>(core_->submit(std::move(tasks), 1, completion<R>(std::move(callbacks), false)), false);
    }

    template <class F, class Inputs>
    auto map(F fn, const Inputs& inputs, std::size_t chunksize = 0) {
        return map_async(fn, inputs, chunksize).get();
    }
    template <class F, class Inputs>
    auto map_async(F fn, const Inputs& inputs, std::size_t chunksize = 0,
                   Callbacks<std::vector<typename detail::FunctionTraits<detail::PointerOf<F>>::Result>> callbacks = {}) {
        using R = typename detail::FunctionTraits<detail::PointerOf<F>>::Result;
        return AsyncResult<std::vector<R>>(core_->submit(encode_each(fn, inputs), chunksize,
                                                         completion<std::vector<R>>(std::move(callbacks), true)),
                                           true);
    }
    template <class F, class Inputs>
    auto starmap(F fn, const Inputs& inputs, std::size_t chunksize = 0) {
        return starmap_async(fn, inputs, chunksize).get();
    }
    template <class F, class Inputs>
    auto starmap_async(F fn, const Inputs& inputs, std::size_t chunksize = 0,
                       Callbacks<std::vector<typename detail::FunctionTraits<detail::PointerOf<F>>::Result>> callbacks = {}) {
        detail::require_task_function<F>();
        using Traits = detail::FunctionTraits<detail::PointerOf<F>>;
        using R = typename Traits::Result;
        detail::EncodedTasks tasks = tasks_for(Traits::tuple_invoker, +fn);
        for (const auto& input : inputs) {
            encode(typename Traits::ArgumentTuple(input), tasks.bytes);
            tasks.close_task();
        }
        return AsyncResult<std::vector<R>>(
            core_->submit(std::move(tasks), chunksize, completion<std::vector<R>>(std::move(callbacks), true)), true);
    }
    // Python's imap / imap_unordered: chunksize defaults to 1, as in Python.
    template <class F, class Inputs>
    auto imap(F fn, const Inputs& inputs, std::size_t chunksize = 1) {
        using R = typename detail::FunctionTraits<detail::PointerOf<F>>::Result;
        return IMapIterator<R>(core_->submit(encode_each(fn, inputs), chunksize, {}), true);
    }
    template <class F, class Inputs>
    auto imap_unordered(F fn, const Inputs& inputs, std::size_t chunksize = 1) {
        using R = typename detail::FunctionTraits<detail::PointerOf<F>>::Result;
        return IMapIterator<R>(core_->submit(encode_each(fn, inputs), chunksize, {}), false);
    }

    void close() { core_->close(); }
    void terminate() { core_->terminate(); }
    void join() { core_->join(); }
    std::size_t processes() const noexcept { return core_->processes(); }
    std::vector<pid_t> worker_pids() const { return core_->worker_pids(); }

    // --- concurrent.futures face ------------------------------------------------------------------------
    template <class F, class... Args>
    auto submit(F fn, Args&&... args) {
        return apply_async(fn, std::make_tuple(std::forward<Args>(args)...));
    }
    // Python's Executor.shutdown(wait, cancel_futures): cancel_futures terminates (unresolved tasks fail
    // with Closed); otherwise close(), and join() when wait.
    void shutdown(bool wait = true, bool cancel_futures = false) {
        if (cancel_futures) {
            terminate();
        } else {
            close();
        }
        if (wait) join();
    }

private:
    static PoolOptions options_with(std::size_t processes) {
        PoolOptions options;
        options.processes = processes;
        return options;
    }
    template <class F, class Inputs>
    detail::EncodedTasks encode_each(F fn, const Inputs& inputs) {
        detail::require_task_function<F>();
        using Traits = detail::FunctionTraits<detail::PointerOf<F>>;
        static_assert(Traits::arity == 1, "map/imap call the function with one argument: use starmap for more");
        using Arg = typename Traits::template Argument<0>;
        detail::EncodedTasks tasks = tasks_for(Traits::template one_invoker<Arg>, +fn);
        using Value = std::decay_t<Arg>;
        if constexpr (detail::raw_codec<Value> && std::ranges::contiguous_range<Inputs> &&
                      std::is_same_v<std::ranges::range_value_t<Inputs>, Value>) {
            // Raw bytes back to back: one copy for the whole batch.
            const std::size_t count = std::ranges::size(inputs);
            tasks.bytes.resize(count * sizeof(Value));
            if (count != 0) std::memcpy(tasks.bytes.data(), std::ranges::data(inputs), count * sizeof(Value));
            tasks.ends.resize(count);
            for (std::size_t i = 0; i < count; ++i) tasks.ends[i] = (i + 1) * sizeof(Value);
        } else {
            for (const auto& input : inputs) {
                encode(Value(input), tasks.bytes);
                tasks.close_task();
            }
        }
        return tasks;
    }
    template <class P>
    static detail::EncodedTasks tasks_for(detail::TaskInvoker invoker, P function) {
        detail::EncodedTasks tasks;
        tasks.invoker = invoker;
        tasks.function = reinterpret_cast<std::uintptr_t>(function);
        return tasks;
    }
    template <class R>
    static std::function<void(detail::BatchState&)> completion(Callbacks<R> callbacks, bool map_like) {
        if (!callbacks.callback && !callbacks.error_callback) return {};
        return [callbacks = std::move(callbacks), map_like](detail::BatchState& batch) {
            std::optional<R> value;
            try {
                value.emplace(AsyncResult<R>::value_of_complete(batch, map_like));
            } catch (const Error& error) {
                if (callbacks.error_callback) callbacks.error_callback(error);
                return;
            }
            if (callbacks.callback) callbacks.callback(*value);
        };
    }
    template <class F, class... Args>
    static detail::PoolInitializer make_initializer(F initializer, Args&&... initargs) {
        detail::require_task_function<F>();
        using Traits = detail::FunctionTraits<detail::PointerOf<F>>;
        detail::PoolInitializer init{Traits::tuple_invoker, reinterpret_cast<std::uintptr_t>(+initializer), {}};
        encode(typename Traits::ArgumentTuple(std::forward<Args>(initargs)...), init.arguments);
        return init;
    }

    std::unique_ptr<detail::PoolCore> core_;
};

template <class R>
std::shared_ptr<detail::BatchState> detail::batch_of(const AsyncResult<R>& result) {
    result.require();
    return result.batch_;
}

// Python's concurrent.futures.as_completed: the results in the order they become ready. Returns the
// indices into `results`, each once, blocking until each is ready (TimeoutError past the timeout, which
// covers the whole iteration as in Python).
template <class R>
std::vector<std::size_t> as_completed(const std::vector<AsyncResult<R>>& results,
                                      std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    std::vector<std::shared_ptr<detail::BatchState>> batches;
    batches.reserve(results.size());
    for (const AsyncResult<R>& result : results) batches.push_back(detail::batch_of(result));
    return detail::completion_order(batches, timeout);
}

}  // namespace mproc
