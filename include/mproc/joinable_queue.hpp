// mproc/joinable_queue.hpp — Python's multiprocessing.JoinableQueue for C++: a Queue<T> that also counts
// unfinished tasks. Every put() adds one; each consumer calls task_done() once per item it got; join()
// blocks until the count is back to zero.
//
// Guarantees: task_done() called more times than items were put throws ValueError and changes nothing (as
// Python). join() returns true when the count reached zero, false when its timeout expired (nullopt: waits
// forever); it sleeps on an eventcount, so an idle join costs no CPU and task_done() makes a system call
// only while someone is joining. The count is in the queue's shared memory: any process may join.
// Participant death: the count is plain counting, not ownership: a producer killed between counting its
// put and finishing it (a window of a few instructions), or a consumer killed between get() and
// task_done(), leaves the count one too high and join() then waits for its timeout — as in Python, where a
// dead worker's task is never done. Use a timeout in join() where workers may die.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/error.hpp"
#include "mproc/queue.hpp"

namespace mproc {

template <class T>
class JoinableQueue {
public:
    static constexpr std::size_t kDefaultCapacity = Queue<T>::kDefaultCapacity;

    explicit JoinableQueue(std::size_t capacity = kDefaultCapacity, QueueKind kind = QueueKind::mpmc)
        : queue_(capacity, kind) {}
    // Items that travel encoded (not trivially copyable, see encoded_queue.hpp): slots for encodings of
    // at most max_message bytes.
    JoinableQueue(std::size_t capacity, QueueKind kind, std::size_t max_message)
        requires(!std::is_trivially_copyable_v<T>)
        : queue_(capacity, kind, max_message) {}
    static JoinableQueue create(std::string_view name, std::size_t capacity = kDefaultCapacity,
                                QueueKind kind = QueueKind::mpmc, mode_t mode = 0600) {
        return JoinableQueue(Queue<T>::create(name, capacity, kind, mode));
    }
    static JoinableQueue open(std::string_view name,
                              std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout) {
        return JoinableQueue(Queue<T>::open(name, publish_timeout));
    }
    // The queue behind another handle's fd() (duplicated; the caller keeps its own), validated as open().
    static JoinableQueue from_fd(int fd) { return JoinableQueue(Queue<T>::from_fd(fd)); }
    // The memfd of an anonymous (or from_fd) queue, to hand to another process; -1 for a named one.
    int fd() const noexcept { return queue_.fd(); }

    void put(const T& item, bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        detail::QueueCore& core = queue_.core();
        core.add_unfinished_task();
        try {
            queue_.put(item, block, timeout);
        } catch (...) {
            core.remove_unfinished_task_after_failed_put();
            throw;
        }
    }
    void put_nowait(const T& item) { put(item, false); }
    T get(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        return queue_.get(block, timeout);
    }
    T get_nowait() { return queue_.get_nowait(); }

    // One item got earlier is finished. ValueError when no task is unfinished.
    void task_done() { queue_.core().task_done(); }
    // Waits until every item put has been task_done()d; false when the timeout expired first.
    bool join(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) { return queue_.core().join(timeout); }

    std::size_t qsize() const { return queue_.qsize(); }
    bool empty() const { return queue_.empty(); }
    bool full() const { return queue_.full(); }
    void close() { queue_.close(); }
    std::size_t capacity() const { return queue_.capacity(); }
    const std::string& name() const noexcept { return queue_.name(); }
    void unlink() { queue_.unlink(); }

private:
    explicit JoinableQueue(Queue<T> queue) : queue_(std::move(queue)) {}
    Queue<T> queue_;
};

}  // namespace mproc
