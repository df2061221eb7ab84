// mproc/simple_queue.hpp — Python's multiprocessing.SimpleQueue for C++: put, get, empty, close; no
// timeouts, no size queries, nothing else.
//
// A SimpleQueue<T> is a Queue<T> (MPMC ring in shared memory, see queue.hpp) with the minimal interface:
// put() blocks while the queue is full (Python's SimpleQueue is unbounded; this one holds `capacity`
// items), get() blocks while it is empty. After close(), put() throws Closed and get() returns what is
// left, then throws Closed. Guarantees, costs and participant death: those of Queue<T>.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/queue.hpp"

namespace mproc {

template <class T>
class SimpleQueue {
public:
    static constexpr std::size_t kDefaultCapacity = Queue<T>::kDefaultCapacity;

    // Anonymous: inherited by fork()ed children.
    explicit SimpleQueue(std::size_t capacity = kDefaultCapacity) : queue_(capacity) {}
    // Items that travel encoded (not trivially copyable, see encoded_queue.hpp): slots for encodings of
    // at most max_message bytes.
    SimpleQueue(std::size_t capacity, std::size_t max_message)
        requires(!std::is_trivially_copyable_v<T>)
        : queue_(capacity, QueueKind::mpmc, max_message) {}
    static SimpleQueue create(std::string_view name, std::size_t capacity = kDefaultCapacity, mode_t mode = 0600) {
        return SimpleQueue(Queue<T>::create(name, capacity, QueueKind::mpmc, mode));
    }
    static SimpleQueue open(std::string_view name,
                            std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout) {
        return SimpleQueue(Queue<T>::open(name, publish_timeout));
    }
    // The queue behind another handle's fd() (duplicated; the caller keeps its own), validated as open().
    static SimpleQueue from_fd(int fd) { return SimpleQueue(Queue<T>::from_fd(fd)); }
    // The memfd of an anonymous (or from_fd) queue, to hand to another process; -1 for a named one.
    int fd() const noexcept { return queue_.fd(); }

    void put(const T& item) { queue_.put(item); }
    T get() { return queue_.get(); }
    bool empty() const { return queue_.empty(); }
    void close() { queue_.close(); }
    const std::string& name() const noexcept { return queue_.name(); }
    void unlink() { queue_.unlink(); }

private:
    explicit SimpleQueue(Queue<T> queue) : queue_(std::move(queue)) {}
    Queue<T> queue_;
};

}  // namespace mproc
