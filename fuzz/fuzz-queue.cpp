// fuzz/fuzz-queue.cpp — the bytes as a program of queue operations, every result checked against a
// std::deque that models the queue.
//
// Input: byte 0 chooses the queue — bit 0 SPSC or MPMC, bit 1 Queue<std::uint64_t> or ByteQueue, bits 2..3
// the capacity (2, 4, 8 or 16); byte 1 is a ByteQueue's max_message (0..15). Then pairs of bytes (operation,
// argument) until the input ends. A typed queue lives in a heap buffer of exactly placed_size() bytes (so
// AddressSanitizer sees any access past the ring); the raw ring attached to the same bytes serves the
// zero-copy calls (reserve/commit and peek/release for SPSC; put_in_place/get_in_place and reserve/commit,
// peek/release with MpmcReservation and MpmcLease for MPMC). A ByteQueue is anonymous (its constructor is the
// only way to make one). One thread does everything, so every outcome is exact: the values and their order,
// the counts of put_many/get_many/reserve/peek, qsize(), and which of Full, Empty, Closed, ValueError or
// StateError each call reports.
// Model: `items` holds what the queue holds, oldest first; an empty optional is an MPMC slot published as
// skipped (a fill that threw, or a producer killed before publishing): it counts in qsize() and a get steps
// over it.
// Killed claimers (MPMC, operation 13): the input also kills a producer or consumer at one of the points
// where a death leaves a slot for the survivors' repair (src/mpmc_ring.cpp's steps: after K, after M, after
// D / M', D'). This single thread cannot die and carry on, so it writes what the dead thread would have
// left, exactly: the positions and sequence it had stored, and the claim word as the kernel rewrites it at
// the death (FUTEX_OWNER_DIED, TID cleared, FUTEX_WAITERS kept). The calls that follow reach
// repair_slot_of_dead_claimer, and the model says what the repair must give: a producer killed between M
// and D loses its message (the slot is stepped over), a consumer killed between M' and D' loses the one it
// was taking, one killed before M or after D loses nothing; repaired_slots() never counts more repairs than
// deaths that need one, and once the queue is drained every dead producer's slot was repaired.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <linux/futex.h>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/mpmc_ring.hpp"
#include "mproc/queue.hpp"
#include "mproc/spsc_ring.hpp"

namespace {

using namespace std::chrono_literals;

// A failed property is a finding: abort so that libFuzzer (and the replay test) report the input.
void require(bool property) {
    if (!property) std::abort();
}

// Runs call and requires that it throws exactly E (nothing else, not nothing).
template <class E, class Call>
void require_throws(Call&& call) {
    bool thrown = false;
    try {
        call();
    } catch (const E&) {
        thrown = true;
    }
    require(thrown);
}

struct FillFailed {};
struct ReadFailed {};

class Program {
public:
    Program(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    bool next(std::uint8_t& operation, std::uint8_t& argument) {
        if (offset_ + 2 > size_) return false;
        operation = data_[offset_];
        argument = data_[offset_ + 1];
        offset_ += 2;
        return true;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t offset_ = 2;
};

using Message = std::vector<std::byte>;

// What the queue must hold.
struct Model {
    std::deque<std::optional<Message>> items;
    std::size_t capacity = 0;
    bool closed = false;
    std::uint64_t produced = 0;  // slots taken by puts: the producer position
    std::uint64_t consumed = 0;  // slots freed by gets: the consumer position

    std::size_t size() const { return items.size(); }
    std::size_t room() const { return capacity - items.size(); }
    void push(std::optional<Message> message) {
        items.push_back(std::move(message));
        ++produced;
    }
    // The next real message, stepping over skipped slots; nullopt when none is left.
    std::optional<Message> pop() {
        while (!items.empty()) {
            const bool skipped = !items.front().has_value();
            Message front = skipped ? Message{} : std::move(*items.front());
            items.pop_front();
            ++consumed;
            if (!skipped) return front;
        }
        return std::nullopt;
    }
    bool has_message() const {
        return std::any_of(items.begin(), items.end(), [](const auto& item) { return item.has_value(); });
    }
};

Message bytes_of(std::uint64_t value) {
    Message message(sizeof value);
    std::memcpy(message.data(), &value, sizeof value);
    return message;
}

std::uint64_t value_of(std::span<const std::byte> bytes) {
    require(bytes.size() == sizeof(std::uint64_t));
    std::uint64_t value;
    std::memcpy(&value, bytes.data(), sizeof value);
    return value;
}

// Queue<std::uint64_t>, SPSC or MPMC, with the raw ring's zero-copy calls.
class TypedScenario {
public:
    TypedScenario(mproc::QueueKind kind, std::size_t capacity)
        : kind_(kind),
          size_(mproc::Queue<std::uint64_t>::placed_size(capacity, kind)),
          memory_(static_cast<std::byte*>(::operator new(size_, kAlignment))),
          queue_(mproc::Queue<std::uint64_t>::place(memory_, size_, capacity, kind)) {
        model_.capacity = capacity;
        require(queue_.capacity() == capacity && queue_.kind() == kind);
    }
    ~TypedScenario() { ::operator delete(memory_, kAlignment); }
    TypedScenario(const TypedScenario&) = delete;
    TypedScenario& operator=(const TypedScenario&) = delete;

    void run(std::uint8_t operation, std::uint8_t argument) {
        switch (operation % 16) {
        case 0: put(argument); break;
        case 1: try_put(); break;
        case 2: get(argument); break;
        case 3: try_get(); break;
        case 4: put_many(argument % 20); break;
        case 5: get_many(argument % 20); break;
        case 6: check_sizes(); break;
        case 7:
            if (argument % 4 == 0) close();
            break;
        case 8: kind_ == mproc::QueueKind::spsc ? reserve_commit(argument) : put_in_place(argument); break;
        case 9: kind_ == mproc::QueueKind::spsc ? peek_release(argument) : get_in_place(argument); break;
        case 10: reattach(); break;
        case 11:
            if (kind_ == mproc::QueueKind::mpmc) reserve_commit_mpmc(argument);
            break;
        case 12:
            if (kind_ == mproc::QueueKind::mpmc) peek_release_mpmc();
            break;
        case 13:
            if (kind_ == mproc::QueueKind::mpmc) claimer_dies(argument);
            break;
        default: check_sizes(); break;
        }
        check_sizes();
    }

    // Drains what is left, in order: the queue must hold exactly the model's messages.
    void finish() {
        std::vector<std::uint64_t> rest(model_.capacity + 1);
        const std::size_t got = queue_.get_many(rest);
        std::size_t expected = 0;
        while (std::optional<Message> message = model_.pop()) {
            require(expected < got && rest[expected] == value_of(*message));
            ++expected;
        }
        require(got == expected && queue_.qsize() == 0);
        // Every dead producer's slot lay between the positions drained, so each was repaired on the way.
        require(queue_.repaired_slots() >= dead_producers_unpublished_);
    }

private:
    static constexpr std::align_val_t kAlignment{mproc::RawSpscRing::kAlignment};

    std::uint64_t fresh_value() { return ++counter_ * 0x9e3779b97f4a7c15ull; }

    void put(std::uint8_t argument) {
        const std::uint64_t value = fresh_value();
        // Blocking with a zero timeout makes one attempt, as non-blocking does.
        auto call = [&] { argument & 1 ? queue_.put(value, true, 0ns) : queue_.put_nowait(value); };
        if (model_.closed)
            return require_throws<mproc::Closed>(call);
        if (model_.room() == 0)
            return require_throws<mproc::Full>(call);
        call();
        model_.push(bytes_of(value));
    }

    void try_put() {
        const std::uint64_t value = fresh_value();
        if (model_.closed)
            return require_throws<mproc::Closed>([&] { queue_.try_put(value); });
        const bool expected = model_.room() != 0;
        require(queue_.try_put(value) == expected);
        if (expected) model_.push(bytes_of(value));
    }

    void get(std::uint8_t argument) {
        auto call = [&] { return argument & 1 ? queue_.get(true, 0ns) : queue_.get_nowait(); };
        if (!model_.has_message()) {
            // A skipped slot is consumed on the way to finding the queue empty.
            const bool closed = model_.closed;
            while (model_.pop()) {
            }
            if (closed)
                return require_throws<mproc::Closed>(call);
            return require_throws<mproc::Empty>(call);
        }
        require(call() == value_of(*model_.pop()));
    }

    void try_get() {
        if (!model_.has_message()) {
            const bool closed = model_.closed;
            while (model_.pop()) {
            }
            if (closed)
                return require_throws<mproc::Closed>([&] { queue_.try_get(); });
            require(!queue_.try_get());
            return;
        }
        const std::optional<std::uint64_t> got = queue_.try_get();
        require(got && *got == value_of(*model_.pop()));
    }

    void put_many(std::size_t count) {
        std::vector<std::uint64_t> values(count);
        for (auto& value : values) value = fresh_value();
        const std::size_t expected = model_.closed ? 0 : std::min(count, model_.room());
        require(queue_.put_many(values) == expected);
        for (std::size_t i = 0; i < expected; ++i) model_.push(bytes_of(values[i]));
    }

    void get_many(std::size_t count) {
        std::vector<std::uint64_t> values(count);
        const std::size_t got = queue_.get_many(values);
        std::size_t expected = 0;
        while (expected < count) {
            std::optional<Message> message = model_.pop();
            if (!message) break;
            require(expected < got && values[expected] == value_of(*message));
            ++expected;
        }
        require(got == expected);
    }

    void check_sizes() {
        require(queue_.qsize() == model_.size());
        require(queue_.empty() == (model_.size() == 0));
        require(queue_.full() == (model_.room() == 0));
        require(queue_.closed() == model_.closed);
        // A repair is counted when a survivor first claims the dead thread's slot, so between calls the
        // count is bounded by the deaths that need one (none at all without killed claimers).
        require(queue_.repaired_slots() <= dead_producers_unpublished_ + dead_consumers_unfreed_);
    }

    void close() {
        queue_.close();
        model_.closed = true;
    }

    // SPSC zero-copy put: reserve up to `want` slots (as many as are free and in a row to the end of the
    // ring), fill some, commit them; then a commit of more than is free must be refused.
    void reserve_commit(std::uint8_t argument) {
        mproc::RawSpscRing ring = mproc::RawSpscRing::attach(memory_, size_);
        const std::size_t want = argument % 8;
        const mproc::RingRegion region = ring.reserve(want);
        const std::size_t to_end = model_.capacity - (model_.produced % model_.capacity);
        const std::size_t expected = model_.closed || want == 0 ? 0 : std::min({want, model_.room(), to_end});
        require(region.count == expected);
        const std::size_t commit = expected == 0 ? 0 : (argument >> 3) % (expected + 1);
        for (std::size_t i = 0; i < commit; ++i) {
            const std::uint64_t value = fresh_value();
            std::memcpy(region.slot(i), &value, sizeof value);
            model_.push(bytes_of(value));
        }
        ring.commit(commit);
        if (argument & 0x80)
            require_throws<mproc::StateError>([&] { ring.commit(model_.room() + 1); });
    }

    // SPSC zero-copy get: peek up to `want` messages in place, check them, release some; then a release of
    // more than is ready must be refused.
    void peek_release(std::uint8_t argument) {
        mproc::RawSpscRing ring = mproc::RawSpscRing::attach(memory_, size_);
        const std::size_t want = argument % 8;
        const mproc::RingRegion region = ring.peek(want);
        const std::size_t to_end = model_.capacity - (model_.consumed % model_.capacity);
        const std::size_t expected = want == 0 ? 0 : std::min({want, model_.size(), to_end});
        require(region.count == expected);
        for (std::size_t i = 0; i < expected; ++i) require(value_of({region.slot(i), 8}) == value_of(*model_.items[i]));
        const std::size_t release = expected == 0 ? 0 : (argument >> 3) % (expected + 1);
        ring.release(release);
        for (std::size_t i = 0; i < release; ++i) model_.pop();
        if (argument & 0x80)
            require_throws<mproc::StateError>([&] { ring.release(model_.size() + 1); });
    }

    // MPMC zero-copy put: the fill writes in place; a fill that throws publishes a skipped slot; a fill
    // that claims more than a slot holds is refused (ValueError) and publishes a skipped slot too.
    void put_in_place(std::uint8_t argument) {
        mproc::RawMpmcRing ring = mproc::RawMpmcRing::attach(memory_, size_);
        const std::uint64_t value = fresh_value();
        const int behaviour = argument % 4;  // 0, 1: fill; 2: throw; 3: report too many bytes
        auto fill = [&](std::span<std::byte> slot) -> std::size_t {
            require(slot.size() == sizeof value);
            std::memcpy(slot.data(), &value, sizeof value);
            if (behaviour == 2) throw FillFailed{};
            return behaviour == 3 ? slot.size() + 1 : slot.size();
        };
        if (model_.closed) {
            require(ring.put_in_place(fill, 0ns) == mproc::RingStatus::closed);
            return;
        }
        if (model_.room() == 0) {
            require(ring.put_in_place(fill, 0ns) == mproc::RingStatus::full);
            return;
        }
        if (behaviour == 2) {
            require_throws<FillFailed>([&] { ring.put_in_place(fill, 0ns); });
            model_.push(std::nullopt);
        } else if (behaviour == 3) {
            require_throws<mproc::ValueError>([&] { ring.put_in_place(fill, 0ns); });
            model_.push(std::nullopt);
        } else {
            require(ring.put_in_place(fill, 0ns) == mproc::RingStatus::ok);
            model_.push(bytes_of(value));
        }
    }

    // MPMC zero-copy get: the read sees the message in place; a read that throws consumes it.
    void get_in_place(std::uint8_t argument) {
        mproc::RawMpmcRing ring = mproc::RawMpmcRing::attach(memory_, size_);
        const bool read_throws = argument & 1;
        std::optional<std::uint64_t> seen;
        auto read = [&](std::span<const std::byte> message) {
            seen = value_of(message);
            if (read_throws) throw ReadFailed{};
        };
        if (!model_.has_message()) {
            const bool closed = model_.closed;
            while (model_.pop()) {
            }
            require(ring.get_in_place(read, 0ns) == (closed ? mproc::RingStatus::closed : mproc::RingStatus::empty));
            require(!seen);
            return;
        }
        const std::uint64_t expected = value_of(*model_.pop());
        if (read_throws)
            require_throws<ReadFailed>([&] { ring.get_in_place(read, 0ns); });
        else
            require(ring.get_in_place(read, 0ns) == mproc::RingStatus::ok);
        require(seen && *seen == expected);
    }

    // MPMC split zero-copy put: a reservation committed, committed too long (ValueError, skipped) or
    // dropped (skipped).
    void reserve_commit_mpmc(std::uint8_t argument) {
        mproc::RawMpmcRing ring = mproc::RawMpmcRing::attach(memory_, size_);
        mproc::MpmcReservation reservation;
        const mproc::RingStatus status = ring.reserve(reservation, 0ns);
        if (model_.closed || model_.room() == 0) {
            require(status == (model_.closed ? mproc::RingStatus::closed : mproc::RingStatus::full) && !reservation);
            return;
        }
        require(status == mproc::RingStatus::ok && reservation && reservation.slot().size() == sizeof(std::uint64_t));
        const std::uint64_t value = fresh_value();
        std::memcpy(reservation.slot().data(), &value, sizeof value);
        switch (argument % 3) {
        case 0:
            reservation.commit(sizeof value);
            model_.push(bytes_of(value));
            break;
        case 1:
            require_throws<mproc::ValueError>([&] { reservation.commit(sizeof value + 1); });
            model_.push(std::nullopt);
            break;
        default:
            reservation.cancel();
            model_.push(std::nullopt);
            break;
        }
        require(!reservation);
    }

    // MPMC split zero-copy get: the lease shows the next message in place; releasing consumes it.
    void peek_release_mpmc() {
        mproc::RawMpmcRing ring = mproc::RawMpmcRing::attach(memory_, size_);
        mproc::MpmcLease lease;
        if (!model_.has_message()) {
            const bool closed = model_.closed;
            while (model_.pop()) {
            }
            require(ring.peek(lease, 0ns) == (closed ? mproc::RingStatus::closed : mproc::RingStatus::empty) && !lease);
            return;
        }
        const std::uint64_t expected = value_of(*model_.pop());
        require(ring.peek(lease, 0ns) == mproc::RingStatus::ok && lease && value_of(lease.message()) == expected);
        lease.release();
        require(!lease);
    }

    // MPMC: a producer or consumer killed inside put or get, at the point `argument` chooses. The slot it
    // worked on must be in the state that point needs (free for the producer's position, holding the
    // consumer's message, unclaimed); otherwise a real thread would first have repaired or waited, and
    // nothing is killed.
    void claimer_dies(std::uint8_t argument) {
        namespace detail = mproc::detail;
        mproc::RawMpmcRing ring = mproc::RawMpmcRing::attach(memory_, size_);
        const detail::RingGeometry& geometry = ring.geometry();
        detail::RingControl& control = ring.control();
        // relaxed (all loads and stores here): this thread is the ring's only user; the stores stand for
        // the dead thread's, which the kernel's exit path would make visible before its claim word changes.
        std::atomic_ref enqueue_position(control.producer.position);
        std::atomic_ref dequeue_position(control.consumer.position);
        const std::uint64_t enqueued = enqueue_position.load(std::memory_order_relaxed);
        const std::uint64_t dequeued = dequeue_position.load(std::memory_order_relaxed);
        require(enqueued == model_.produced && dequeued == model_.consumed);
        const bool producer_side = argument % 5 < 2 || (argument % 5 == 4 && (argument & 8));
        const std::uint64_t position = producer_side ? enqueued : dequeued;
        std::byte* slot = geometry.slot_at(position);
        auto& header = *reinterpret_cast<detail::MpmcSlotHeader*>(slot);
        std::byte* payload = slot + sizeof(detail::MpmcSlotHeader);
        std::atomic_ref sequence(header.sequence);
        std::atomic_ref claim(header.claim);
        if (claim.load(std::memory_order_relaxed) != 0) return;
        const std::uint64_t seen = sequence.load(std::memory_order_relaxed);
        // What the kernel leaves in the word of a thread that died holding it (list_op_pending covers it).
        const std::uint32_t dead_claim = FUTEX_OWNER_DIED | ((argument & 0x80) ? FUTEX_WAITERS : 0u);
        switch (argument % 5) {
        case 0:  // a producer killed after M, before D: the position moved, the payload half written
            if (model_.closed || model_.room() == 0 || seen != position) return;
            enqueue_position.store(position + 1, std::memory_order_relaxed);
            std::memset(payload, 0xa5, sizeof(std::uint64_t) / 2);
            model_.push(std::nullopt);  // lost: the repair publishes the slot skipped
            ++dead_producers_unpublished_;
            break;
        case 1: {  // a producer killed after D, before R: published, still claimed
            if (model_.closed || model_.room() == 0 || seen != position) return;
            const std::uint64_t value = fresh_value();
            enqueue_position.store(position + 1, std::memory_order_relaxed);
            std::memcpy(payload, &value, sizeof value);
            std::atomic_ref(header.length).store(sizeof value, std::memory_order_relaxed);
            sequence.store(position + 1, std::memory_order_relaxed);
            model_.push(bytes_of(value));  // delivered: the repair only drops the claim
            break;
        }
        case 2:  // a consumer killed after M', before D': it was taking the message, which is lost
            if (model_.size() == 0 || seen != position + 1) return;
            dequeue_position.store(position + 1, std::memory_order_relaxed);
            model_.items.pop_front();
            ++model_.consumed;
            ++dead_consumers_unfreed_;
            break;
        case 3:  // a consumer killed after D', before R: the slot freed for the next lap, still claimed
            if (model_.size() == 0 || seen != position + 1) return;
            dequeue_position.store(position + 1, std::memory_order_relaxed);
            sequence.store(position + model_.capacity, std::memory_order_relaxed);
            model_.items.pop_front();
            ++model_.consumed;
            break;
        default:  // a producer or consumer killed after K, before M: nothing moved, nothing is lost
            break;
        }
        claim.store(dead_claim, std::memory_order_relaxed);
    }

    // A second handle attached to the same bytes sees the same queue.
    void reattach() {
        mproc::Queue<std::uint64_t> other = mproc::Queue<std::uint64_t>::attach(memory_, size_);
        require(other.kind() == kind_ && other.capacity() == model_.capacity && other.qsize() == model_.size());
        queue_ = std::move(other);
    }

    mproc::QueueKind kind_;
    std::size_t size_;
    std::byte* memory_;
    mproc::Queue<std::uint64_t> queue_;
    Model model_;
    std::uint64_t counter_ = 0;
    std::uint32_t dead_producers_unpublished_ = 0;  // killed between M and D: each slot needs a repair
    std::uint32_t dead_consumers_unfreed_ = 0;      // killed between M' and D': each slot needs a repair
};

// ByteQueue, SPSC or MPMC, without a spill arena (budget 0): messages of 0..max_message bytes, longer ones
// refused. (Spilled messages: fuzz-queue-segment and fuzz-post-open.)
class ByteScenario {
public:
    ByteScenario(mproc::QueueKind kind, std::size_t capacity, std::size_t max_message)
        : queue_(max_message, capacity, kind, 0) {
        model_.capacity = capacity;
        require(queue_.capacity() == capacity && queue_.max_message() == max_message);
    }

    void run(std::uint8_t operation, std::uint8_t argument) {
        switch (operation % 8) {
        case 0:
        case 1: put(argument); break;
        case 2:
        case 3: get(argument); break;
        case 4:
            if (argument % 4 == 0) {
                queue_.close();
                model_.closed = true;
            }
            break;
        default: break;
        }
        require(queue_.qsize() == model_.size() && queue_.empty() == (model_.size() == 0) &&
                queue_.full() == (model_.room() == 0) && queue_.closed() == model_.closed);
    }

    void finish() {
        while (std::optional<Message> message = model_.pop()) require(queue_.get_nowait() == *message);
        if (model_.closed)
            require_throws<mproc::Closed>([&] { queue_.get_nowait(); });
        else
            require_throws<mproc::Empty>([&] { queue_.get_nowait(); });
    }

private:
    void put(std::uint8_t argument) {
        // Lengths up to two past the limit, so that the refusal of a long message is exercised too.
        const std::size_t length = argument % (queue_.max_message() + 3);
        Message message(length);
        for (std::size_t i = 0; i < length; ++i) message[i] = static_cast<std::byte>(++counter_ * 131 + i);
        auto call = [&] { argument & 0x80 ? queue_.put(message, true, 0ns) : queue_.put_nowait(message); };
        if (length > queue_.max_message())
            return require_throws<mproc::ValueError>(call);
        if (model_.closed)
            return require_throws<mproc::Closed>(call);
        if (model_.room() == 0)
            return require_throws<mproc::Full>(call);
        call();
        model_.push(std::move(message));
    }

    void get(std::uint8_t argument) {
        auto call = [&] { return argument & 1 ? queue_.get(true, 0ns) : queue_.get_nowait(); };
        if (model_.size() == 0) {
            if (model_.closed)
                return require_throws<mproc::Closed>(call);
            return require_throws<mproc::Empty>(call);
        }
        require(call() == *model_.pop());
    }

    mproc::ByteQueue queue_;
    Model model_;
    std::uint64_t counter_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const mproc::QueueKind kind = (data[0] & 1) ? mproc::QueueKind::mpmc : mproc::QueueKind::spsc;
    const std::size_t capacity = std::size_t{2} << ((data[0] >> 2) & 3);
    Program program(data, size);
    std::uint8_t operation = 0;
    std::uint8_t argument = 0;
    if ((data[0] & 2) == 0) {
        TypedScenario scenario(kind, capacity);
        while (program.next(operation, argument)) scenario.run(operation, argument);
        scenario.finish();
    } else {
        ByteScenario scenario(kind, capacity, data[1] % 16);
        while (program.next(operation, argument)) scenario.run(operation, argument);
        scenario.finish();
    }
    return 0;
}
