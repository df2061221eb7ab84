// mproc/encoded_queue.hpp — Queue<T> for a T that is not trivially copyable (std::string, containers, user
// types with a codec hook): each item travels encoded (mproc/codec.hpp) as one byte message of a ByteQueue.
// Included by queue.hpp: Queue<T> picks this specialisation by itself.
//
// Defines: the partial specialisation Queue<T> for Encodable, non-trivially-copyable T; detail::
// EncodedQueueSpec and detail::encoded_byte_queue (the one function that builds the byte queue under every
// encoded queue, whichever way it is made: anonymous, create, open).
//
// The interface is Queue<T>'s (put/get with block and timeout, put_nowait/get_nowait, try_put/try_get,
// qsize, empty, full, close, named create/open), plus max_message(): the largest encoding one slot holds.
// A longer encoding goes through the ByteQueue's spill arena (ByteQueue::kDefaultSpillBudget bytes, reclaimed
// after a participant's death: queue.hpp); one longer than the budget throws ValueError naming the sizes and
// changes nothing.
// Guarantees, costs and participant death: those of ByteQueue over the same ring (queue.hpp): a killed
// producer or consumer loses at most the one message it was putting or getting; no message is torn or
// duplicated. Every get decodes the bytes it took; bytes that do not decode as T (another T on the other
// end, or a corrupted segment) throw DecodeError and that message is consumed. Both ends must name the
// same T: the queue's header does not record it.
// Costs, beyond the ring's: put encodes into a per-thread buffer and copies it into the slot (ByteQueue
// frames it through a second per-thread buffer); get allocates the message, then what the value owns.
// try_put/try_get report a full/empty queue through an exception caught inside (a slower miss than
// Queue<T>'s raw path). No placement in caller memory, no batch calls.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <sys/types.h>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"
#include "mproc/queue.hpp"

namespace mproc {

namespace detail {

// How an encoded queue's ByteQueue is to be made.
struct EncodedQueueSpec {
    enum class How { anonymous, create, open };
    How how = How::anonymous;
    std::string_view name;                // create, open
    std::size_t capacity = 0;             // anonymous, create
    QueueKind kind = QueueKind::mpmc;     // anonymous, create
    std::size_t max_message = 0;          // anonymous, create: the longest encoding a slot holds
    mode_t mode = 0600;                   // create
    std::chrono::milliseconds publish_timeout{0};  // open

    static EncodedQueueSpec anonymous(std::size_t capacity, QueueKind kind, std::size_t max_message) {
        EncodedQueueSpec spec;
        spec.capacity = capacity;
        spec.kind = kind;
        spec.max_message = max_message;
        return spec;
    }
    static EncodedQueueSpec create(std::string_view name, std::size_t capacity, QueueKind kind,
                                   std::size_t max_message, mode_t mode) {
        EncodedQueueSpec spec = anonymous(capacity, kind, max_message);
        spec.how = How::create;
        spec.name = name;
        spec.mode = mode;
        return spec;
    }
    static EncodedQueueSpec open(std::string_view name, std::chrono::milliseconds publish_timeout) {
        EncodedQueueSpec spec;
        spec.how = How::open;
        spec.name = name;
        spec.publish_timeout = publish_timeout;
        return spec;
    }
};

// Every encoded queue's ByteQueue is made here (src/codec.cpp).
MPROC_API ByteQueue encoded_byte_queue(const EncodedQueueSpec& spec);

}  // namespace detail

template <class T>
    requires(!std::is_trivially_copyable_v<T>)
class Queue<T> {
    static_assert(Decodable<T>, "Queue<T> of a type that is not trivially copyable needs an Encodable, "
                                "Decodable T (see mproc/codec.hpp)");

public:
    static constexpr std::size_t kDefaultCapacity = 256;
    // Slots of 1 KiB: the 4-byte length ByteQueue puts before each message, and 1020 bytes of encoding.
    static constexpr std::size_t kDefaultMaxMessage = 1020;

    // An anonymous queue of `capacity` items (a power of two, at least 2: ValueError otherwise), each
    // encoding at most max_message bytes.
    explicit Queue(std::size_t capacity = kDefaultCapacity, QueueKind kind = QueueKind::mpmc,
                   std::size_t max_message = kDefaultMaxMessage)
        : bytes_(detail::encoded_byte_queue(detail::EncodedQueueSpec::anonymous(capacity, kind, max_message))),
          kind_(bytes_.core().kind()) {}
    static Queue create(std::string_view name, std::size_t capacity = kDefaultCapacity,
                        QueueKind kind = QueueKind::mpmc, mode_t mode = 0600,
                        std::size_t max_message = kDefaultMaxMessage) {
        return Queue(
            detail::encoded_byte_queue(detail::EncodedQueueSpec::create(name, capacity, kind, max_message, mode)));
    }
    // An existing named encoded queue (its max_message is the creator's).
    static Queue open(std::string_view name,
                      std::chrono::milliseconds publish_timeout = SharedMemory::kDefaultPublishTimeout) {
        return Queue(detail::encoded_byte_queue(detail::EncodedQueueSpec::open(name, publish_timeout)));
    }
    // The queue behind another handle's fd() (duplicated; the caller keeps its own), validated as open().
    static Queue from_fd(int fd) { return Queue(ByteQueue::from_fd(fd)); }
    // The memfd of an anonymous (or from_fd) queue, to hand to another process; -1 for a named one.
    int fd() const noexcept { return bytes_.fd(); }

    void put(const T& item, bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        bytes_.put(codec_detail::encode_to_scratch(item), block, timeout);
    }
    void put_nowait(const T& item) { put(item, false); }
    bool try_put(const T& item) {
        try {
            put(item, false);
            return true;
        } catch (const Full&) {
            return false;
        }
    }

    T get(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
        const std::vector<std::byte> message = bytes_.get(block, timeout);
        return decode<T>(message);
    }
    T get_nowait() { return get(false); }
    std::optional<T> try_get() {
        std::vector<std::byte> message;
        try {
            message = bytes_.get(false);
        } catch (const Empty&) {
            return std::nullopt;
        }
        return decode<T>(message);
    }

    std::size_t qsize() const { return bytes_.qsize(); }
    bool empty() const { return bytes_.empty(); }
    bool full() const { return bytes_.full(); }
    void close() { bytes_.close(); }
    bool closed() const { return bytes_.closed(); }
    std::size_t capacity() const { return bytes_.capacity(); }
    std::size_t max_message() const { return bytes_.max_message(); }
    QueueKind kind() const { return kind_; }
    const std::string& name() const noexcept { return bytes_.name(); }
    void unlink() { bytes_.unlink(); }
    detail::QueueCore& core() noexcept { return bytes_.core(); }
    ByteQueue& byte_queue() noexcept { return bytes_; }

private:
    explicit Queue(ByteQueue bytes) : bytes_(std::move(bytes)), kind_(bytes_.core().kind()) {}
    ByteQueue bytes_;
    QueueKind kind_;
};

}  // namespace mproc
