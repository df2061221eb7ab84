// fuzz/fuzz-post-open.cpp — a valid object, opened by name, whose shared bytes a hostile participant
// rewrites while this process keeps calling it.
//
// The other targets give the bytes to a validator before anything uses them; here the object is made
// valid (create), a second handle opens it by name (open, which validates), and only then does the input
// write into the segment, between calls on the opened handle, through a separate MAP_SHARED mapping of the
// same name (as any process that can open the name could). So what is tested is the handle's promise that it
// keeps what it validated at open: every size, count or index it uses afterwards is its own copy, and every
// timed call returns by its timeout whatever the bytes hold.
//
// Input: byte 0 = the kind (SharedMemory, Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition,
// Barrier, Value, Array, SPSC queue, MPMC queue, ByteQueue, JoinableQueue, Pipe); byte 1 = its size
// parameter (capacity, parties, waiters, ...); then records of 4 bytes [op, a, b, c]:
//   op bit 7 set: a hostile write at segment offset (a | b << 8) modulo the segment size:
//     bit 6 clear: the byte c; bit 6 set, bit 5 clear: a 32-bit word (4-aligned), bit 6 and 5 set: a 64-bit
//     word (8-aligned); a word's value is kWordValues[c % 8] (c itself, 0, all ones, the TID of this
//     process's main thread — alive but never releasing anything —, a TID no thread has, ...);
//   op bit 7 clear: call number op % (the kind's call count) on the opened handle, with argument a and,
//     for a call that can block, a timeout of 1 + b % 5 milliseconds.
// Properties: no crash, no access outside the mapping (ASan), no exception other than an mproc::Error,
// and every call returns within its timeout + kSlack (a watchdog in the main thread aborts, naming the
// kind and the call, when one does not). What the handle copied at open stays as it was: SharedMemory's
// size(), a queue's capacity() (qsize() within it), an Array's size(), a Barrier's parties() (wait()'s
// index below it).
// Excluded, because the documentation excludes it (lock.hpp "Trust"): for the kinds whose lock this
// thread holds across calls (Lock, RLock, Condition), the robust-list links (bytes 24..39 of each 64-byte
// line) are never written — a process that rewrites the links of a lock another thread holds breaks that
// thread's robust list, as with a pthread mutex. And a Barrier's untimed calls (reset, abort, n_waiting)
// are not made once its internal lock's line was written: they wait for that lock as long as it takes.
// Each input runs in a thread of its own, which ends before the segments are unmapped: a lock whose word
// a hostile write took from this thread leaves its node in that thread's robust list, and the list must
// never point into unmapped memory.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mproc/array.hpp"
#include "mproc/barrier.hpp"
#include "mproc/condition.hpp"
#include "mproc/error.hpp"
#include "mproc/event.hpp"
#include "mproc/joinable_queue.hpp"
#include "mproc/lock.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/rlock.hpp"
#include "mproc/semaphore.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/value.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long past its timeout a call may take before it counts as hung: generous, because this runs under
// AddressSanitizer on a machine shared with other builds; a real hang never returns at all.
constexpr std::chrono::milliseconds kSlack{1000};

std::uint32_t main_tid = 0;
constexpr std::uint32_t kNoSuchTid = 0x3ffffff0;  // above PID_MAX_LIMIT (4194304): no thread has it

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property, const char* what) {
    if (!property) {
        std::fprintf(stderr, "fuzz-post-open: property failed: %s\n", what);
        std::abort();
    }
}

// The call running now and when it must have returned, for the main thread's watchdog.
struct Watchdog {
    std::atomic<std::int64_t> deadline_ns{0};  // 0: no call running
    std::atomic<const char*> kind{""};
    std::atomic<const char*> operation{""};
    std::atomic<bool> finished{false};
};

// A second MAP_SHARED mapping of a named segment's whole file, header included: the hostile participant.
class HostileMapping {
public:
    explicit HostileMapping(const std::string& name) {
        const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
        require(fd >= 0, "shm_open of a name just created");
        struct stat status{};
        require(::fstat(fd, &status) == 0 && status.st_size > 0, "fstat of the segment");
        size_ = static_cast<std::size_t>(status.st_size);
        void* mapping = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        require(mapping != MAP_FAILED, "mmap of the segment");
        bytes_ = static_cast<std::byte*>(mapping);
    }
    ~HostileMapping() { ::munmap(bytes_, size_); }
    HostileMapping(const HostileMapping&) = delete;
    HostileMapping& operator=(const HostileMapping&) = delete;
    std::span<std::byte> bytes() const { return {bytes_, size_}; }

private:
    std::byte* bytes_ = nullptr;
    std::size_t size_ = 0;
};

// A fresh name per object: the process id and a counter, so parallel fuzzers and replays never collide.
std::string fresh_name() {
    static std::atomic<std::uint64_t> counter{0};
    // relaxed: only uniqueness matters, no other memory is published through the counter.
    return "/mproc-fuzz-post-open-" + std::to_string(::getpid()) + "-" +
           std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

struct Record {
    std::uint8_t op, a, b, c;
};

// One kind's scenario: the handles (created, then opened by name), the bytes a hostile write may reach,
// and its calls. Built and driven in the input's thread; destroyed in the main thread after it ended.
class Scenario {
public:
    virtual ~Scenario() = default;
    virtual const char* kind() const = 0;
    virtual int call_count() const = 0;
    virtual const char* call_name(int call) const = 0;
    // Whether call `call` takes the timeout (it may block).
    virtual void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) = 0;
    // After each step: what the handle copied at open is unchanged.
    virtual void check() {}
    // The segment bytes a hostile participant writes.
    std::span<std::byte> target() const { return target_; }
    // Whether a write at this offset of target() is allowed (see the file comment for the exclusions).
    virtual bool writable(std::size_t offset) const {
        return !protect_robust_links_ || offset % 64 < 24 || offset % 64 >= 40;
    }
    virtual void note_write(std::size_t /*offset*/) {}

protected:
    void map_hostile(const std::string& name, bool protect_robust_links) {
        hostile_ = std::make_unique<HostileMapping>(name);
        target_ = hostile_->bytes();
        protect_robust_links_ = protect_robust_links;
        ::shm_unlink(name.c_str());  // the mappings outlive the name; nothing is left in /dev/shm
    }
    void set_target(std::span<std::byte> bytes) { target_ = bytes; }

private:
    std::unique_ptr<HostileMapping> hostile_;
    std::span<std::byte> target_;
    bool protect_robust_links_ = false;
};

template <std::size_t N>
const char* name_in(const std::array<const char*, N>& names, int call) {
    return names[static_cast<std::size_t>(call)];
}

class SharedMemoryScenario final : public Scenario {
public:
    explicit SharedMemoryScenario(std::uint8_t parameter) : size_(1 + parameter * 37u) {
        const std::string name = fresh_name();
        creator_.emplace(mproc::SharedMemory::create(name, size_));
        opened_.emplace(mproc::SharedMemory::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "SharedMemory"; }
    int call_count() const override { return 2; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds) override {
        const std::span<std::byte> bytes = opened_->bytes();
        const std::size_t at = argument * 131u % bytes.size();
        if (call == 0) bytes[at] = std::byte{argument};
        else sink_ = sink_ + static_cast<unsigned>(bytes[at]);
    }
    void check() override {
        require(opened_->size() == size_ && opened_->bytes().size() == size_, "SharedMemory size kept from open");
    }

private:
    static constexpr std::array<const char*, 2> kCalls{"write a payload byte", "read a payload byte"};
    std::size_t size_;
    std::optional<mproc::SharedMemory> creator_, opened_;
    unsigned sink_ = 0;
};

// Lock and RLock: the same calls; RLock re-enters.
template <class Handle>
class LockScenario final : public Scenario {
public:
    explicit LockScenario(const char* kind) : kind_(kind) {
        const std::string name = fresh_name();
        creator_.emplace(Handle::create(name));
        opened_.emplace(Handle::open(name));
        map_hostile(name, true);
    }
    const char* kind() const override { return kind_; }
    int call_count() const override { return 6; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t, std::chrono::nanoseconds timeout) override {
        Handle& lock = *opened_;
        try {
            switch (call) {
            case 0: (void)lock.acquire(true, timeout); break;
            case 1: (void)lock.acquire_status(timeout); break;
            case 2: (void)lock.try_lock(); break;
            case 3: lock.unlock(); break;
            case 4: lock.make_consistent(); break;
            default: (void)lock.consistency(); (void)lock.held_by_this_thread(); break;
            }
        } catch (const mproc::Error&) {
            // OwnerDied (held now), NotRecoverable, StateError: a clear answer
        }
    }

private:
    static constexpr std::array<const char*, 6> kCalls{"acquire(timeout)", "acquire_status(timeout)", "try_lock",
                                                       "unlock", "make_consistent", "consistency"};
    const char* kind_;
    std::optional<Handle> creator_, opened_;
};

template <class Handle>
class SemaphoreScenario final : public Scenario {
public:
    SemaphoreScenario(const char* kind, std::uint8_t parameter) : kind_(kind) {
        const std::string name = fresh_name();
        creator_.emplace(Handle::create(name, parameter % 4));
        opened_.emplace(Handle::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return kind_; }
    int call_count() const override { return 4; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        Handle& semaphore = *opened_;
        try {
            switch (call) {
            case 0: (void)semaphore.acquire(true, timeout); break;
            case 1: (void)semaphore.try_acquire(); break;
            case 2: semaphore.release(1 + argument % 3); break;
            default: (void)semaphore.get_value(); break;
            }
        } catch (const mproc::Error&) {
            // ValueError (a bounded semaphore released past its bound, a count past kMaxValue)
        }
    }

private:
    static constexpr std::array<const char*, 4> kCalls{"acquire(timeout)", "try_acquire", "release", "get_value"};
    const char* kind_;
    std::optional<Handle> creator_, opened_;
};

class EventScenario final : public Scenario {
public:
    EventScenario() {
        const std::string name = fresh_name();
        creator_.emplace(mproc::Event::create(name));
        opened_.emplace(mproc::Event::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "Event"; }
    int call_count() const override { return 4; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t, std::chrono::nanoseconds timeout) override {
        try {
            switch (call) {
            case 0: (void)opened_->wait(timeout); break;
            case 1: opened_->set(); break;
            case 2: opened_->clear(); break;
            default: (void)opened_->is_set(); break;
            }
        } catch (const mproc::Error&) {
        }
    }

private:
    static constexpr std::array<const char*, 4> kCalls{"wait(timeout)", "set", "clear", "is_set"};
    std::optional<mproc::Event> creator_, opened_;
};

class ConditionScenario final : public Scenario {
public:
    explicit ConditionScenario(std::uint8_t parameter) {
        const std::string name = fresh_name();
        const auto own_lock = (parameter & 1) ? mproc::ConditionLockKind::lock : mproc::ConditionLockKind::rlock;
        creator_.emplace(mproc::Condition::create(name, own_lock, 1 + (parameter >> 1) % 8));
        opened_.emplace(mproc::Condition::open(name));
        map_hostile(name, true);
    }
    const char* kind() const override { return "Condition"; }
    int call_count() const override { return 6; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        mproc::Condition& condition = *opened_;
        try {
            switch (call) {
            case 0: (void)condition.acquire(true, timeout); break;
            case 1: condition.release(); break;
            // wait and notify need the lock: called only when this thread holds it (otherwise StateError,
            // which says nothing about the shared bytes).
            case 2:
                if (condition.held_by_this_thread()) (void)condition.wait(timeout);
                break;
            case 3:
                if (condition.held_by_this_thread()) condition.notify(argument % 4);
                break;
            case 4:
                if (condition.held_by_this_thread()) condition.notify_all();
                break;
            default: condition.make_consistent(); break;
            }
        } catch (const mproc::Error&) {
        }
    }

private:
    static constexpr std::array<const char*, 6> kCalls{"acquire(timeout)", "release",    "wait(timeout)",
                                                       "notify",           "notify_all", "make_consistent"};
    std::optional<mproc::Condition> creator_, opened_;
};

class BarrierScenario final : public Scenario {
public:
    explicit BarrierScenario(std::uint8_t parameter) : parties_(1 + parameter % 4) {
        const std::string name = fresh_name();
        creator_.emplace(mproc::Barrier::create(name, parties_));
        opened_.emplace(mproc::Barrier::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "Barrier"; }
    int call_count() const override { return 5; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t, std::chrono::nanoseconds timeout) override {
        mproc::Barrier& barrier = *opened_;
        try {
            switch (call) {
            case 0: require(barrier.wait(timeout) < parties_, "Barrier wait() index below the parties"); break;
            case 1: (void)barrier.broken(); break;
            case 2:
                if (!internal_lock_written_) barrier.reset();
                break;
            case 3:
                if (!internal_lock_written_) barrier.abort();
                break;
            default:
                if (!internal_lock_written_) (void)barrier.n_waiting();
                break;
            }
        } catch (const mproc::Error&) {
            // BrokenBarrier, NotRecoverable, StateError
        }
    }
    void check() override { require(opened_->parties() == parties_, "Barrier parties kept from open"); }
    void note_write(std::size_t offset) override {
        // [ObjectHeader 128 | BarrierControl 64 | internal RawLock 64 | slots]
        if (offset >= 128 + 64 && offset < 128 + 128) internal_lock_written_ = true;
    }

private:
    static constexpr std::array<const char*, 5> kCalls{"wait(timeout)", "broken", "reset", "abort", "n_waiting"};
    std::uint32_t parties_;
    bool internal_lock_written_ = false;
    std::optional<mproc::Barrier> creator_, opened_;
};

// A locked section on a Value's or Array's own lock: taken with a timeout and released in the same call,
// so the lock is never held across a hostile write.
template <class Raw>
void locked_section(Raw& lock, std::chrono::nanoseconds timeout) {
    if (lock.acquire_status(timeout) == mproc::AcquireStatus::timed_out) return;
    if (lock.consistency() == mproc::LockConsistency::inconsistent) lock.make_consistent();
    lock.unlock();
}

class ValueScenario final : public Scenario {
public:
    ValueScenario() {
        const std::string name = fresh_name();
        creator_.emplace(mproc::Value<std::uint64_t>::create(name, 7));
        opened_.emplace(mproc::Value<std::uint64_t>::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "Value"; }
    int call_count() const override { return 4; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        try {
            switch (call) {
            case 0: sink_ += opened_->load(); break;
            case 1: opened_->store(argument); break;
            case 2: sink_ += opened_->fetch_add(argument); break;
            default: locked_section(opened_->get_lock(), timeout); break;
            }
        } catch (const mproc::Error&) {
        }
    }

private:
    static constexpr std::array<const char*, 4> kCalls{"load", "store", "fetch_add", "locked section(timeout)"};
    std::optional<mproc::Value<std::uint64_t>> creator_, opened_;
    std::uint64_t sink_ = 0;
};

class ArrayScenario final : public Scenario {
public:
    explicit ArrayScenario(std::uint8_t parameter) : count_(1 + parameter % 64) {
        const std::string name = fresh_name();
        creator_.emplace(mproc::Array<std::uint32_t>::create(name, count_));
        opened_.emplace(mproc::Array<std::uint32_t>::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "Array"; }
    int call_count() const override { return 4; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        try {
            switch (call) {
            case 0: sink_ += opened_->at(argument % (count_ + 2)); break;  // past the end: a clear error
            case 1: opened_->at(argument % count_) = argument; break;
            case 2:
                // relaxed: a counter of this test only; nothing is published through it.
                opened_->atomic_at(argument % count_).fetch_add(1, std::memory_order_relaxed);
                break;
            default: locked_section(opened_->get_lock(), timeout); break;
            }
        } catch (const mproc::Error&) {
        }
    }
    void check() override { require(opened_->size() == count_, "Array size kept from open"); }

private:
    static constexpr std::array<const char*, 4> kCalls{"at (read)", "at (write)", "atomic_at", "locked section(timeout)"};
    std::size_t count_;
    std::optional<mproc::Array<std::uint32_t>> creator_, opened_;
    std::uint64_t sink_ = 0;
};

class QueueScenario final : public Scenario {
public:
    QueueScenario(mproc::QueueKind kind, std::uint8_t parameter)
        : kind_(kind), capacity_(std::size_t{2} << (parameter % 4)) {
        const std::string name = fresh_name();
        creator_.emplace(mproc::Queue<std::uint64_t>::create(name, capacity_, kind));
        opened_.emplace(mproc::Queue<std::uint64_t>::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return kind_ == mproc::QueueKind::spsc ? "SPSC queue" : "MPMC queue"; }
    int call_count() const override { return 8; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        mproc::Queue<std::uint64_t>& queue = *opened_;
        std::array<std::uint64_t, 20> items{};
        const std::size_t count = argument % items.size();
        try {
            switch (call) {
            case 0: queue.put(argument, true, timeout); break;
            case 1: (void)queue.get(true, timeout); break;
            case 2: (void)queue.try_put(argument); break;
            case 3: (void)queue.try_get(); break;
            case 4: require(queue.put_many(std::span(items).first(count)) <= count, "put_many within the count"); break;
            case 5: require(queue.get_many(std::span(items).first(count)) <= count, "get_many within the count"); break;
            case 6:
                if (argument % 8 == 0) queue.close();
                break;
            default: require(queue.qsize() <= capacity_, "qsize() within the capacity"); break;
            }
        } catch (const mproc::Error&) {
            // Full, Empty, Closed, and the repairs' reports
        }
    }
    void check() override { require(opened_->capacity() == capacity_, "queue capacity kept from open"); }

private:
    static constexpr std::array<const char*, 8> kCalls{"put(timeout)", "get(timeout)", "try_put",  "try_get",
                                                       "put_many",     "get_many",     "close",    "qsize"};
    mproc::QueueKind kind_;
    std::size_t capacity_;
    std::optional<mproc::Queue<std::uint64_t>> creator_, opened_;
};

class ByteQueueScenario final : public Scenario {
public:
    explicit ByteQueueScenario(std::uint8_t parameter)
        : capacity_(std::size_t{2} << (parameter % 4)), max_message_(1 + (parameter >> 2) % 64) {
        const std::string name = fresh_name();
        const auto kind = (parameter & 0x80) ? mproc::QueueKind::spsc : mproc::QueueKind::mpmc;
        // A small spill arena (four blocks), so that hostile writes reach its entries as often as the ring.
        creator_.emplace(mproc::ByteQueue::create(name, max_message_, capacity_, kind, 0600, kSpillBudget));
        opened_.emplace(mproc::ByteQueue::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "ByteQueue"; }
    int call_count() const override { return 4; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        mproc::ByteQueue& queue = *opened_;
        // Mostly messages around max_message; with bit 6, longer ones through the spill arena.
        const std::size_t length = (argument & 0x40) ? std::size_t{argument} * 97 : argument % (max_message_ + 2);
        std::vector<std::byte> message(length, std::byte{argument});
        try {
            switch (call) {
            case 0: queue.put(message, true, timeout); break;
            case 1:
                require(queue.get(true, timeout).size() <= std::max<std::size_t>(queue.max_message(), kSpillBudget),
                        "a ByteQueue message within max_message or the spill budget");
                break;
            case 2:
                if (argument % 8 == 0) queue.close();
                break;
            default: require(queue.qsize() <= capacity_, "qsize() within the capacity"); break;
            }
        } catch (const mproc::Error&) {
        }
    }
    void check() override {
        // Slots hold at least a spill descriptor (32 bytes): max_message is at least 28.
        require(opened_->capacity() == capacity_ && opened_->max_message() == std::max<std::size_t>(max_message_, 28) &&
                    opened_->spill_budget() == kSpillBudget,
                "ByteQueue capacity, max_message and spill budget kept from open");
    }

private:
    static constexpr std::array<const char*, 4> kCalls{"put(timeout)", "get(timeout)", "close", "qsize"};
    static constexpr std::uint64_t kSpillBudget = 16384;
    std::size_t capacity_, max_message_;
    std::optional<mproc::ByteQueue> creator_, opened_;
};

class JoinableQueueScenario final : public Scenario {
public:
    explicit JoinableQueueScenario(std::uint8_t parameter) : capacity_(std::size_t{2} << (parameter % 4)) {
        const std::string name = fresh_name();
        const auto kind = (parameter & 0x80) ? mproc::QueueKind::spsc : mproc::QueueKind::mpmc;
        creator_.emplace(mproc::JoinableQueue<std::uint64_t>::create(name, capacity_, kind));
        opened_.emplace(mproc::JoinableQueue<std::uint64_t>::open(name));
        map_hostile(name, false);
    }
    const char* kind() const override { return "JoinableQueue"; }
    int call_count() const override { return 5; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        auto& queue = *opened_;
        try {
            switch (call) {
            case 0: queue.put(argument, true, timeout); break;
            case 1: (void)queue.get(true, timeout); break;
            case 2: queue.task_done(); break;
            case 3: (void)queue.join(timeout); break;
            default: require(queue.qsize() <= capacity_, "qsize() within the capacity"); break;
            }
        } catch (const mproc::Error&) {
            // ValueError: task_done() called more times than items were put
        }
    }
    void check() override { require(opened_->capacity() == capacity_, "JoinableQueue capacity kept from open"); }

private:
    static constexpr std::array<const char*, 5> kCalls{"put(timeout)", "get(timeout)", "task_done", "join(timeout)",
                                                       "qsize"};
    std::size_t capacity_;
    std::optional<mproc::JoinableQueue<std::uint64_t>> creator_, opened_;
};

// A named one-way Pipe: created (end 0 reads) and opened by name (end 1 writes). The hostile writes go to
// the pipe's header line (sizes and offsets validated at open, never read again) and to its one ring,
// control line and slots; not to the holder words nor to end1_opened, which say whether the writer lives
// (a live-looking writer makes an untimed receive wait, by contract). Sends are made only before the first
// hostile write and never more than the ring holds (a send into a ring that looks full waits, by contract,
// for the live reader); receives only after the writer closed (a receive inside a message waits, by
// contract, for its live writer), so every call here must return at once or by its timeout.
class PipeScenario final : public Scenario {
public:
    PipeScenario() {
        const std::string name = fresh_name();
        reader_.emplace(mproc::Pipe::create(name, false, kSlots));
        writer_.emplace(mproc::Pipe::open(name));
        map_hostile(name, false);
        const mproc::detail::RingGeometry& ring = reader_->read_ring()->geometry();
        set_target(target().subspan(mproc::kObjectHeaderSize, sizeof(mproc::detail::PipeControl) +
                                                                  sizeof(mproc::detail::RingControl) +
                                                                  ring.capacity * ring.stride));
    }
    const char* kind() const override { return "Pipe"; }
    int call_count() const override { return 4; }
    const char* call_name(int call) const override { return name_in(kCalls, call); }
    void run(int call, std::uint8_t argument, std::chrono::nanoseconds timeout) override {
        try {
            switch (call) {
            case 0:
                if (!written_ && !writer_->closed() && sent_ < kSlots) {
                    std::vector<std::byte> message(argument * 7u, std::byte{argument});
                    writer_->send_bytes(message);
                    ++sent_;
                }
                break;
            case 1: (void)reader_->poll(timeout); break;
            case 2: writer_->close(); break;
            default:
                if (writer_->closed()) {
                    std::vector<std::byte> buffer(1 + argument * 16u);
                    (void)reader_->recv_bytes_into(buffer);
                }
                break;
            }
        } catch (const mproc::Error&) {
            // Closed, BufferTooShort, SystemError(EPROTO, EMSGSIZE), StateError after those
        }
    }
    void note_write(std::size_t) override { written_ = true; }
    // Not the holder words nor end1_opened (see above). Writes after both ends closed (the writer by a call,
    // the reader after a corrupt stream) reach only the hostile mapping, which stays until the scenario ends.
    bool writable(std::size_t offset) const override {
        constexpr std::size_t kOpened = offsetof(mproc::detail::PipeHeaderLine, end1_opened);
        if (offset >= kOpened && offset < kOpened + sizeof(std::uint32_t)) return false;
        return offset < offsetof(mproc::detail::PipeControl, ends) || offset >= sizeof(mproc::detail::PipeControl);
    }

private:
    static constexpr std::size_t kSlots = 8;
    static constexpr std::array<const char*, 4> kCalls{"send_bytes", "poll(timeout)", "close writer", "recv_bytes_into"};
    std::optional<mproc::PipeConnection> reader_, writer_;
    bool written_ = false;
    std::size_t sent_ = 0;
};

constexpr int kKinds = 15;

std::unique_ptr<Scenario> make_scenario(std::uint8_t kind, std::uint8_t parameter) {
    switch (kind % kKinds) {
    case 0: return std::make_unique<SharedMemoryScenario>(parameter);
    case 1: return std::make_unique<LockScenario<mproc::Lock>>("Lock");
    case 2: return std::make_unique<LockScenario<mproc::RLock>>("RLock");
    case 3: return std::make_unique<SemaphoreScenario<mproc::Semaphore>>("Semaphore", parameter);
    case 4: return std::make_unique<SemaphoreScenario<mproc::BoundedSemaphore>>("BoundedSemaphore", parameter);
    case 5: return std::make_unique<EventScenario>();
    case 6: return std::make_unique<ConditionScenario>(parameter);
    case 7: return std::make_unique<BarrierScenario>(parameter);
    case 8: return std::make_unique<ValueScenario>();
    case 9: return std::make_unique<ArrayScenario>(parameter);
    case 10: return std::make_unique<QueueScenario>(mproc::QueueKind::spsc, parameter);
    case 11: return std::make_unique<QueueScenario>(mproc::QueueKind::mpmc, parameter);
    case 12: return std::make_unique<ByteQueueScenario>(parameter);
    case 13: return std::make_unique<JoinableQueueScenario>(parameter);
    default: return std::make_unique<PipeScenario>();
    }
}

std::uint64_t word_value(std::uint8_t selector, std::uint32_t worker_tid) {
    switch (selector % 8) {
    case 0: return selector;
    case 1: return 0;
    case 2: return ~std::uint64_t{0};
    case 3: return main_tid;                    // alive, blocked in join(): a holder that never lets go
    case 4: return main_tid | 0x80000000u;      // the same with FUTEX_WAITERS
    case 5: return kNoSuchTid;                  // a holder that never existed
    case 6: return worker_tid;                  // the caller's own TID
    default: return 0x7fffffffu;                // a count or size at its largest
    }
}

void hostile_write(Scenario& scenario, const Record& record, std::uint32_t worker_tid) {
    const std::span<std::byte> bytes = scenario.target();
    if (bytes.empty()) return;
    std::size_t width = 1;
    if (record.op & 0x40) width = (record.op & 0x20) ? 8 : 4;
    if (bytes.size() < width) return;
    std::size_t offset = (record.a | (std::size_t{record.b} << 8)) % bytes.size();
    offset = std::min(offset, bytes.size() - width) & ~(width - 1);  // aligned: the base is (page, ring line)
    for (std::size_t i = 0; i < width; ++i)
        if (!scenario.writable(offset + i)) return;
    std::uint64_t value = width == 1 ? record.c : word_value(record.c, worker_tid);
    // The write goes through an atomic_ref of the right width, as a peer's store would: a plain store
    // racing with the library's atomics would be a data race in this test, not in the library.
    // relaxed: a hostile peer orders nothing; the library must cope with any value at any time.
    if (width == 1)
        std::atomic_ref(*reinterpret_cast<std::uint8_t*>(&bytes[offset]))
            .store(static_cast<std::uint8_t>(value), std::memory_order_relaxed);
    else if (width == 4)
        std::atomic_ref(*reinterpret_cast<std::uint32_t*>(&bytes[offset]))
            .store(static_cast<std::uint32_t>(value), std::memory_order_relaxed);
    else
        std::atomic_ref(*reinterpret_cast<std::uint64_t*>(&bytes[offset])).store(value, std::memory_order_relaxed);
    scenario.note_write(offset);
}

// The input's thread: builds the scenario (kept in `out` for the main thread to destroy), then runs the
// records, each call announced to the watchdog with its deadline.
void run_input(const std::uint8_t* data, std::size_t size, std::unique_ptr<Scenario>& out, Watchdog& watchdog) {
    const auto worker_tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    out = make_scenario(data[0], data[1]);
    Scenario& scenario = *out;
    // relaxed: the watchdog reads these only for its message; the deadline's release orders them.
    watchdog.kind.store(scenario.kind(), std::memory_order_relaxed);
    scenario.check();
    for (std::size_t offset = 2; offset + 4 <= size; offset += 4) {
        const Record record{data[offset], data[offset + 1], data[offset + 2], data[offset + 3]};
        if (record.op & 0x80) {
            hostile_write(scenario, record, worker_tid);
            continue;
        }
        const int call = record.op % scenario.call_count();
        const std::chrono::milliseconds timeout{1 + record.b % 5};
        watchdog.operation.store(scenario.call_name(call), std::memory_order_relaxed);
        const auto deadline = Clock::now() + timeout + kSlack;
        // release: pairs with the watchdog's acquire, so it sees this call's name with its deadline.
        watchdog.deadline_ns.store(deadline.time_since_epoch().count(), std::memory_order_release);
        scenario.run(call, record.a, timeout);
        // relaxed: the call returned; nothing else is published.
        watchdog.deadline_ns.store(0, std::memory_order_relaxed);
        scenario.check();
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    main_tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    if (main_tid == 0) main_tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    Watchdog watchdog;
    std::unique_ptr<Scenario> scenario;
    std::thread worker([&] {
        run_input(data, size, scenario, watchdog);
        // release: pairs with the acquire below; the scenario is complete before the main thread takes it.
        watchdog.finished.store(true, std::memory_order_release);
    });
    // acquire: pairs with the worker's release stores of the deadline and of `finished`.
    while (!watchdog.finished.load(std::memory_order_acquire)) {
        std::this_thread::sleep_for(2ms);
        const std::int64_t deadline = watchdog.deadline_ns.load(std::memory_order_acquire);
        if (deadline != 0 && Clock::now().time_since_epoch().count() > deadline) {
            std::fprintf(stderr, "fuzz-post-open: %s %s did not return within its timeout + %lld ms\n",
                         watchdog.kind.load(std::memory_order_relaxed),
                         watchdog.operation.load(std::memory_order_relaxed), static_cast<long long>(kSlack.count()));
            std::abort();
        }
    }
    worker.join();
    scenario.reset();  // unmapped only now: the worker's robust list ended with the worker
    return 0;
}
