// mproc/queue.hpp — Python's multiprocessing.Queue for C++: a bounded queue of trivially copyable T, or of
// byte messages up to a configured size, shared between processes and threads through shared memory.
//
// Defines: QueueKind, Queue<T>, ByteQueue, and detail::QueueCore (the untyped handle both are built on,
// also used by SimpleQueue and JoinableQueue).
//
// A queue is a ring (RawMpmcRing by default, RawSpscRing when QueueKind::spsc is asked for explicitly) in a
// SharedMemory segment of ObjectKind::queue — anonymous (inherited by fork()ed children), named
// (create/open, validated header) — or placed in memory the caller owns (place/attach).
//
// Python's interface: put(item, block, timeout), get(block, timeout), put_nowait, get_nowait, qsize(),
// empty(), full(), close(). As in Python's queue module, a non-blocking put on a full queue and a put whose
// timeout expires throw Full; a non-blocking get on an empty queue and a get whose timeout expires throw
// Empty. try_put()/try_get() report the same without an exception. A timeout of zero or less makes one
// attempt; timeouts are measured on CLOCK_MONOTONIC.
// close() (a difference from Python, where close() only concerns the calling process): marks the queue
// closed for every process; later puts throw Closed; gets return what is left, then throw Closed instead
// of blocking; blocked callers on both sides are woken. A put that overlaps close() may still land.
// qsize() is exact while nobody puts or gets (unlike Python's, which is approximate), and otherwise a
// value the queue had during the call; a slot whose producer was killed putting it counts until a get
// steps over it (SPSC: once the next put has published it as skipped).
//
// Guarantees, costs and participant death: those of the ring (mpmc_ring.hpp, spsc_ring.hpp). In short: no
// message is duplicated; a SIGKILL at any instruction loses at most the message the killed process was in
// the middle of putting or getting; survivors go on, and a slot claimed by a dead process is reclaimed as
// soon as the kernel reports the death (robust futex), never from a guess about a PID. An SPSC queue
// needs one producer and one consumer at a time (see spsc_ring.hpp for replacing a dead one).
// Uncontended put/get make no system call.
#pragma once

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <sys/types.h>

#include "mproc/mpmc_ring.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/spsc_ring.hpp"

namespace mproc {

enum class QueueKind : std::uint32_t {
    mpmc = 0,  // any number of producers and consumers (the default)
    spsc = 1,  // one producer and one consumer at a time: faster, chosen explicitly
};

namespace detail {

class SpillArena;  // src/queue_spill.hpp

// The untyped queue handle: one ring of fixed-size slots, an optional spill arena for messages longer than
// a slot (spill_budget bytes, 0: none), and who owns its memory.
class MPROC_API QueueCore {
public:
    static QueueCore anonymous(QueueKind kind, std::size_t capacity, std::size_t slot_size,
                               std::uint64_t spill_budget = 0);
    static QueueCore create(std::string_view name, QueueKind kind, std::size_t capacity, std::size_t slot_size,
                            mode_t mode, std::uint64_t spill_budget = 0);
    // Opens a named queue whose slots must be `slot_size` bytes (InvalidObject otherwise).
    static QueueCore open(std::string_view name, std::size_t slot_size, std::chrono::milliseconds publish_timeout);
    // The queue behind another handle's fd() (duplicated; the caller keeps its own), validated as open():
    // slots of `slot_size` bytes (0: any).
    static QueueCore from_fd(int fd, std::size_t slot_size);
    static std::size_t placed_size(QueueKind kind, std::size_t capacity, std::size_t slot_size,
                                   std::uint64_t spill_budget = 0);
    static QueueCore place(void* memory, std::size_t size, QueueKind kind, std::size_t capacity,
                           std::size_t slot_size, std::uint64_t spill_budget = 0);
    static QueueCore attach(void* memory, std::size_t size, std::size_t slot_size);

    QueueCore(QueueCore&& other) noexcept;
    QueueCore& operator=(QueueCore&& other) noexcept;
    QueueCore(const QueueCore&) = delete;
    QueueCore& operator=(const QueueCore&) = delete;
    ~QueueCore();

    // Python's put(block, timeout): throws Full (non-blocking and full, or timed out) or Closed.
    void put(std::span<const std::byte> message, bool block, std::optional<std::chrono::nanoseconds> timeout);
    // false when full; throws Closed.
    bool try_put(std::span<const std::byte> message);
    // Python's get(block, timeout) into out (out.size() >= slot_size()); returns the byte count put.
    // Throws Empty (non-blocking and empty, or timed out) or Closed (closed and drained).
    std::size_t get(std::span<std::byte> out, bool block, std::optional<std::chrono::nanoseconds> timeout);
    // nullopt when empty; throws Closed when closed and drained.
    std::optional<std::size_t> try_get(std::span<std::byte> out);
    // Messages of any length up to the spill budget (the records ByteQueue carries): a message of at most
    // max_inline() bytes goes into a slot after its 4-byte length, as put() would; a longer one into the
    // spill arena, its slot holding a descriptor (src/queue_spill.hpp). ValueError (naming the sizes) for a
    // message longer than max_inline() and the spill budget; Full when the budget is in use (non-blocking,
    // or still in use at the timeout); Closed. A spilled put holds its MPMC slot's claim while it copies.
    void put_message(std::span<const std::byte> message, bool block, std::optional<std::chrono::nanoseconds> timeout);
    // The next message put by put_message(). Empty, Closed as get(); InvalidObject (the message is dropped)
    // when its record or spill chain was corrupted.
    std::vector<std::byte> get_message(bool block, std::optional<std::chrono::nanoseconds> timeout);
    // The same into `out` (resized to the message; its capacity is reused, so a stream of large messages
    // allocates and faults in its buffer once).
    void get_message(std::vector<std::byte>& out, bool block, std::optional<std::chrono::nanoseconds> timeout);
    std::size_t max_inline() const;  // slot_size() - 4
    std::uint64_t spill_budget() const noexcept;  // 0 when the queue has no spill arena
    // Frees spill blocks the ring is done with (after repairing slots of claimers reported dead); returns
    // how many. put_message does this by itself when it is short of space.
    std::uint32_t reclaim_spill();

    std::size_t put_many(const void* messages, std::size_t count);
    std::size_t get_many(void* out, std::size_t count);
    // The inline fast path (SPSC queues): one attempt that neither blocks nor throws; false means "call
    // put()/get()" (full, empty, closed, an MPMC queue, a moved-from handle).
    [[gnu::always_inline]] bool put_fast(const void* message, std::size_t size) noexcept {
        return spsc_fast_.try_put(message, size);
    }
    [[gnu::always_inline]] bool get_fast(void* out, std::size_t size) noexcept {
        return spsc_fast_.try_get(out, size);
    }

    std::size_t qsize() const;
    // Whether a get would look at a published slot now (wait()'s readiness): RawSpscRing::ready_to_get(),
    // qsize() > 0 for an MPMC queue (whose gets repair what a dead producer left).
    bool ready_to_get() const;
    bool empty() const { return qsize() == 0; }
    bool full() const { return qsize() >= capacity(); }
    void close();
    bool closed() const;
    // RawMpmcRing::repaired_slots(); always 0 for an SPSC queue.
    std::uint32_t repaired_slots() const;
    std::size_t capacity() const;
    std::size_t slot_size() const;
    QueueKind kind() const;
    const std::string& label() const noexcept { return label_; }
    const std::string& name() const noexcept;
    // The memfd of an anonymous or from_fd queue; -1 for a named, placed or moved-from one.
    int fd() const noexcept;
    void unlink();
    RingControl& control() const;

    // JoinableQueue's task count (RingTaskLine): +1 before a put, -1 on task_done (ValueError below zero),
    // join() waits for zero (false on timeout).
    void add_unfinished_task();
    void remove_unfinished_task_after_failed_put();
    void task_done();
    bool join(std::optional<std::chrono::nanoseconds> timeout);

private:
    QueueCore() = default;
    void adopt(void* memory, std::size_t size, std::size_t expected_slot_size);
    void check(const char* operation) const;
    void put_spilled(std::span<const std::byte> message, bool block, std::optional<std::chrono::nanoseconds> timeout);
    bool wait_for_spill_space(std::uint32_t blocks, bool block, const void* deadline);

    std::optional<SharedMemory> segment_;
    std::optional<RawSpscRing> spsc_;  // one of the two, on segment_ or the caller's memory
    std::optional<RawMpmcRing> mpmc_;
    SpscFastPath spsc_fast_;  // on spsc_'s geometry
    std::unique_ptr<SpillArena> spill_;  // after the ring, when the queue has one
    std::string label_;
};

}  // namespace detail

template <class T>
class Queue {
    static_assert(std::is_trivially_copyable_v<T>, "a queue copies items as bytes between processes");
    static_assert(!std::is_pointer_v<T>, "a pointer means nothing in another process");

public:
    static constexpr std::size_t kDefaultCapacity = 1024;

    // An anonymous queue of `capacity` items (a power of two, at least 2: ValueError otherwise).
    explicit Queue(std::size_t capacity = kDefaultCapacity, QueueKind kind = QueueKind::mpmc)
        : core_(detail::QueueCore::anonymous(kind, capacity, sizeof(T))) {}
    // A named queue (ObjectKind::queue), created exclusively: SystemError(EEXIST) when the name exists.
    static Queue create(std::string_view name, std::size_t capacity = kDefaultCapacity,
                        QueueKind kind = QueueKind::mpmc, mode_t mode = 0600) {
        return Queue(detail::QueueCore::create(name, kind, capacity, sizeof(T), mode));
    }
    // An existing named queue; InvalidObject when its items are not sizeof(T) bytes or it is not a queue.
    static Queue open(std::string_view name,
                      std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout) {
        return Queue(detail::QueueCore::open(name, sizeof(T), publish_timeout));
    }
    // The queue behind another handle's fd() (duplicated; the caller keeps its own), validated as open():
    // InvalidObject when its items are not sizeof(T) bytes, it is not a queue, or fd is not a sealed memfd.
    static Queue from_fd(int fd) { return Queue(detail::QueueCore::from_fd(fd, sizeof(T))); }
    // The memfd of an anonymous (or from_fd) queue, to hand to another process; -1 for a named or placed one.
    int fd() const noexcept { return core_.fd(); }
    // In memory the caller owns and maps in every process (128-byte aligned, placed_size() bytes). The
    // handle owns nothing; the memory must outlive it.
    static std::size_t placed_size(std::size_t capacity, QueueKind kind = QueueKind::mpmc) {
        return detail::QueueCore::placed_size(kind, capacity, sizeof(T));
    }
    static Queue place(void* memory, std::size_t size, std::size_t capacity, QueueKind kind = QueueKind::mpmc) {
        return Queue(detail::QueueCore::place(memory, size, kind, capacity, sizeof(T)));
    }
    static Queue attach(void* memory, std::size_t size) {
        return Queue(detail::QueueCore::attach(memory, size, sizeof(T)));
    }

    // Each call first makes one inline attempt (SPSC queues), and takes the full path when it fails.
    // A non-blocking call with a timeout goes straight to the full path, which rejects it (ValueError).
    void put(const T& item, bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        if ((block || !timeout) && core_.put_fast(&item, sizeof(T))) return;
        core_.put(std::as_bytes(std::span(&item, 1)), block, timeout);
    }
    void put_nowait(const T& item) { put(item, false); }
    bool try_put(const T& item) {
        return core_.put_fast(&item, sizeof(T)) || core_.try_put(std::as_bytes(std::span(&item, 1)));
    }

    T get(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        std::array<std::byte, sizeof(T)> bytes;  // T need not be default-constructible
        if (!((block || !timeout) && core_.get_fast(bytes.data(), bytes.size()))) core_.get(bytes, block, timeout);
        return std::bit_cast<T>(bytes);
    }
    T get_nowait() { return get(false); }
    std::optional<T> try_get() {
        std::array<std::byte, sizeof(T)> bytes;
        if (!core_.get_fast(bytes.data(), bytes.size()) && !core_.try_get(bytes)) return std::nullopt;
        return std::bit_cast<T>(bytes);
    }

    // As many items as fit / are ready, without blocking; returns how many moved. The SPSC queue
    // publishes a batch with one index store, a sequence store per slot and one wake-up check.
    std::size_t put_many(std::span<const T> items) { return core_.put_many(items.data(), items.size()); }
    std::size_t get_many(std::span<T> items) { return core_.get_many(items.data(), items.size()); }

    std::size_t qsize() const { return core_.qsize(); }
    bool empty() const { return core_.empty(); }
    bool full() const { return core_.full(); }
    void close() { core_.close(); }
    bool closed() const { return core_.closed(); }
    // Slots repaired after their claimer died inside put/get (see mpmc_ring.hpp); 0 for SPSC.
    std::uint32_t repaired_slots() const { return core_.repaired_slots(); }
    std::size_t capacity() const { return core_.capacity(); }
    QueueKind kind() const { return core_.kind(); }
    const std::string& name() const noexcept { return core_.name(); }
    void unlink() { core_.unlink(); }
    detail::QueueCore& core() noexcept { return core_; }

private:
    explicit Queue(detail::QueueCore core) : core_(std::move(core)) {}
    detail::QueueCore core_;
};

// A queue of byte messages of any length up to a byte budget. A message of at most max_message() bytes
// (the inline limit) goes into a slot with its 4-byte length; a longer one into the queue's spill arena,
// a region of spill_budget bytes after the ring in the same segment, cut into blocks, while the slot holds
// a 32-byte descriptor of the chain (src/queue_spill.hpp has the protocol). A reader checks every length,
// index and tag before using it (InvalidObject for a corrupted record, which is then dropped).
// Limits: a message longer than both max_message() and spill_budget() is refused with ValueError naming the
// sizes; a spilled put finding the budget in use waits (blocking) or throws Full. A spill_budget of 0 makes
// a queue without an arena (messages up to max_message() only).
// Costs: a slot of max(4 + max_message, 32) bytes per message whatever its length; one extra copy per
// inline put through a per-thread buffer; a spilled message is copied into the arena and out of it (two
// memcpy of its length, in blocks of spill_block_size), plus a scan of the arena's block entries (16 bytes
// per block, about 1024 blocks) per put and per reclaim. The arena is part of the segment: its pages are
// only touched (and only cost memory) once messages use them.
// Participant death: as the ring's (mpmc_ring.hpp, spsc_ring.hpp), for spilled messages too: a process
// killed while putting or getting one loses at most that message; its blocks return to the budget once the
// ring is done with the message's position (MPMC: as soon as a producer short of space finds the slot's
// claimer reported dead by the kernel; SPSC: once the consumer passes it, or a new producer takes over);
// no reader ever sees a torn spilled message.
class MPROC_API ByteQueue {
public:
    static constexpr std::size_t kDefaultCapacity = 256;
    static constexpr std::uint64_t kDefaultSpillBudget = std::uint64_t{64} << 20;

    ByteQueue(std::size_t max_message, std::size_t capacity = kDefaultCapacity, QueueKind kind = QueueKind::mpmc,
              std::uint64_t spill_budget = kDefaultSpillBudget);
    static ByteQueue create(std::string_view name, std::size_t max_message, std::size_t capacity = kDefaultCapacity,
                            QueueKind kind = QueueKind::mpmc, mode_t mode = 0600,
                            std::uint64_t spill_budget = kDefaultSpillBudget);
    static ByteQueue open(std::string_view name,
                          std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout);
    // The queue behind another handle's fd() (duplicated; the caller keeps its own), validated as open().
    static ByteQueue from_fd(int fd);
    // The memfd of an anonymous (or from_fd) queue, to hand to another process; -1 for a named one.
    int fd() const noexcept { return core_.fd(); }

    // ValueError for a message longer than max_message() and spill_budget().
    void put(std::span<const std::byte> message, bool block = true,
             std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    void put(std::string_view message, bool block = true,
             std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        put(std::as_bytes(std::span(message.data(), message.size())), block, timeout);
    }
    void put_nowait(std::span<const std::byte> message) { put(message, false); }
    std::vector<std::byte> get(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
    std::vector<std::byte> get_nowait() { return get(false); }
    // get() into `out`, whose capacity is reused (no allocation per message once it is large enough).
    void get_into(std::vector<std::byte>& out, bool block = true,
                  std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        core_.get_message(out, block, timeout);
    }

    std::size_t max_message() const { return core_.slot_size() - kLengthBytes; }
    std::uint64_t spill_budget() const { return core_.spill_budget(); }
    std::size_t qsize() const { return core_.qsize(); }
    bool empty() const { return core_.empty(); }
    bool full() const { return core_.full(); }
    void close() { core_.close(); }
    bool closed() const { return core_.closed(); }
    std::size_t capacity() const { return core_.capacity(); }
    const std::string& name() const noexcept { return core_.name(); }
    void unlink() { core_.unlink(); }
    detail::QueueCore& core() noexcept { return core_; }

    static constexpr std::size_t kLengthBytes = 4;

private:
    explicit ByteQueue(detail::QueueCore core) : core_(std::move(core)) {}
    static detail::QueueCore checked_byte_queue(detail::QueueCore core);
    detail::QueueCore core_;
};

}  // namespace mproc

// Queue<T> for the types that travel encoded (std::string, containers, user types): after ByteQueue, which
// it is built on.
#include "mproc/encoded_queue.hpp"
