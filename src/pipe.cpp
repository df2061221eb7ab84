// src/pipe.cpp — the shared-memory Pipe: chunked messages over RawSpscRing, holder words on robust lists.
//
// Send (the producer of the ring to the peer):
//   for each chunk: wait until a slot is free or the peer is gone (gone: BrokenPipe); write header and
//   payload into the slot (reserve), publish it (commit: the producer index, then a release store of the
//   slot's sequence word, then notify).
// Receive (the consumer of the ring to this end):
//   wait until a slot is ready or the peer is gone (gone and nothing ready: Closed, or EPROTO inside a
//   message); feed the slot to the PipeReader, release it; until the reader says complete.
// "The peer is gone" is read *before* the ring is looked at for the last time: a peer that published its
// last chunk and then closed is seen as [gone, then chunk ready], so nothing it sent is lost.
// Sleeping: key = prepare_wait(eventcount); re-test; futex_waitv({epoch == key} + {peer word == seen} for
// every live peer holder). A chunk published after prepare_wait moves the epoch (no lost wake-up: see
// eventcount.hpp); a holder's close stores 0 and wakes its word; a holder's death makes the kernel set
// FUTEX_OWNER_DIED and wake one sleeper (the word carries FUTEX_WAITERS from the start), which wakes
// every other sleeper on that word before it returns. A holder word that is no longer live when loaded
// for the sleep (it went after the re-test) is not slept on, and if none is live the sleep is skipped:
// its one wake-up may already be spent (verify/pipe, BUG_SLEEP_ON_GONE_HOLDER).
// Named pipes: end 1 of a named pipe is awaited, not gone, until its opener has taken a hold and then set
// header.end1_opened (release); a side whose peer is awaited also sleeps on that word, which the opener
// wakes, and the opener notifies both rings' eventcounts so that sleepers and wait() re-arm on its hold.
#include "mproc/pipe.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "deadline.hpp"
#include "eventcount.hpp"
#include "futex.hpp"
#include "mproc/error.hpp"
#include "mproc/kill_point.hpp"
#include "mproc/shared_memory.hpp"
#include "robust_list.hpp"

namespace mproc {

namespace detail {

struct PipeShared {
    SharedMemory segment;
    PipeControl* control = nullptr;
    std::optional<RawSpscRing> rings[2];
    std::string label;  // "anonymous pipe", "pipe '/name'": how messages name it
};

}  // namespace detail

namespace {

using detail::Deadline;
using detail::PipeControl;
using detail::PipeHolder;
using detail::PipeReader;

static_assert(static_cast<std::ptrdiff_t>(offsetof(PipeHolder, word)) -
                      static_cast<std::ptrdiff_t>(offsetof(PipeHolder, robust_next)) ==
                  detail::kRobustFutexOffset,
              "the holder layout and the robust list agree on where the futex word is");

constexpr std::uint32_t kWaiters = FUTEX_WAITERS;
constexpr std::uint32_t kOwnerDied = FUTEX_OWNER_DIED;
constexpr std::uint32_t kTidMask = FUTEX_TID_MASK;

using detail::FutexWaitv;
using detail::kFutex2Size32;

std::atomic_ref<std::uint32_t> word_of(PipeHolder& holder) noexcept { return std::atomic_ref(holder.word); }
void* node_of(PipeHolder& holder) noexcept { return &holder.robust_next; }
std::atomic_ref<std::uint32_t> revoked_of(PipeHolder& holder) noexcept { return std::atomic_ref(holder.revoked_tid); }
bool holds_live_thread(std::uint32_t word) noexcept { return (word & kTidMask) != 0; }

// A holder that keeps the end alive: a live thread whose hold was not revoked.
bool counts_as_holder(PipeHolder& holder) noexcept {
    // acquire: pairs with the release store of 0 in release_hold(), so that a peer seen gone has
    // published (P5) every chunk it sent before closing; the kernel's OWNER_DIED write after a death
    // happens after everything the dead thread did.
    const std::uint32_t tid = word_of(holder).load(std::memory_order_acquire) & kTidMask;
    // acquire: pairs with the seq_cst store in revoke_other_holds(), for the same reason.
    return tid != 0 && revoked_of(holder).load(std::memory_order_acquire) != tid;
}

bool end_alive(detail::PipeEnd& end) noexcept {
    for (PipeHolder& holder : end.holders)
        if (counts_as_holder(holder)) return true;
    return false;
}

std::atomic_ref<std::uint32_t> end1_opened_of(PipeControl& control) noexcept {
    return std::atomic_ref(control.header.end1_opened);
}

// Whether a named pipe's end 1 still awaits its opener (never for end 0, nor for an anonymous pipe).
bool awaits_opener(PipeControl& control, int end) noexcept {
    // acquire: pairs with the opener's release store in Pipe::open(), made after it took its hold: a side
    // that sees end 1 opened sees that hold too (or its release or death: then the end is rightly gone).
    return end == 1 && end1_opened_of(control).load(std::memory_order_acquire) == 0;
}

// The peer test of every blocking path: `end` was handed out and no holder of it counts any more.
bool end_gone(PipeControl& control, int end) noexcept {
    if (awaits_opener(control, end)) return false;
    return !end_alive(control.ends[end]);
}

// Whether tid names a live thread of the calling process (a holder whose list entry this process must
// keep mapped, or whose hold close() revokes).
bool thread_of_this_process(std::uint32_t tid) noexcept {
    return tid != 0 && ::syscall(SYS_tgkill, ::getpid(), static_cast<pid_t>(tid), 0) == 0;
}

// A holder woken by the kernel for a death wakes the others, since the kernel wakes only one per word.
void spread_death_wake_ups(detail::PipeEnd& end) noexcept {
    for (PipeHolder& holder : end.holders)
        // relaxed: a hint; the woken threads re-read the words with acquire.
        if ((word_of(holder).load(std::memory_order_relaxed) & kOwnerDied) != 0)
            detail::futex_wake(&holder.word, detail::kFutexWakeAll);
}

// The calling thread's hold on `end`: a word with its TID whose node is linked in its robust list. A word
// that holds this thread's TID without the node being linked was not written by this thread (a hostile or
// broken peer wrote it, perhaps before this process attached): it is no hold of ours, and unlinking its
// node would follow links the peer wrote. Walks the robust list: adopt/disown/close only, never a send.
int find_hold(detail::PipeEnd& end, detail::ThisThreadRobustList& self) noexcept {
    for (std::size_t index = 0; index < detail::kPipeHolders; ++index) {
        PipeHolder& holder = end.holders[index];
        // relaxed: only this thread writes its own TID into a word.
        if ((word_of(holder).load(std::memory_order_relaxed) & kTidMask) == self.tid() && self.contains(node_of(holder)))
            return static_cast<int>(index);
    }
    return -1;
}

// Claims a free (or dead holder's) word for the calling thread. False when every word holds a live thread.
bool claim_hold(detail::PipeEnd& end, detail::ThisThreadRobustList& self) noexcept {
    const std::uint32_t mine = self.tid() | kWaiters;
    for (PipeHolder& holder : end.holders) {
        // relaxed: the CAS below decides.
        std::uint32_t seen = word_of(holder).load(std::memory_order_relaxed);
        if (holds_live_thread(seen)) continue;
        // relaxed: a free or dead slot; a stale revocation must not hide the new holder (TID reuse).
        revoked_of(holder).store(0, std::memory_order_relaxed);
        self.set_pending(node_of(holder));
        // acq_rel: claims against another claimer; a dead holder's node is in no live list any more.
        if (word_of(holder).compare_exchange_strong(seen, mine, std::memory_order_acq_rel,
                                                    std::memory_order_relaxed)) {
            self.link(node_of(holder));
            self.clear_pending();
            return true;
        }
        self.clear_pending();
    }
    return false;
}

void release_hold(detail::PipeEnd& end, int index, detail::ThisThreadRobustList& self) noexcept {
    PipeHolder& holder = end.holders[index];
    self.set_pending(node_of(holder));
    self.unlink(node_of(holder));
    // relaxed: ordered before the word's release store below, which publishes the slot as free.
    revoked_of(holder).store(0, std::memory_order_relaxed);
    // release: pairs with the acquire in end_alive(): the peer that sees this end gone sees every chunk
    // this thread published before.
    word_of(holder).store(0, std::memory_order_release);
    self.clear_pending();
    detail::futex_wake(&holder.word, detail::kFutexWakeAll);
}

// close(): the holds of this process's other threads stop counting. Returns whether any did.
bool revoke_other_holds(detail::PipeEnd& end, std::uint32_t self_tid) noexcept {
    bool revoked = false;
    for (PipeHolder& holder : end.holders) {
        // relaxed: the TID is only compared; the store below is what the peer reads.
        const std::uint32_t tid = word_of(holder).load(std::memory_order_relaxed) & kTidMask;
        if (tid == 0 || tid == self_tid || !thread_of_this_process(tid)) continue;
        // seq_cst: ordered before notify_always()'s epoch increment, which a sleeper's key was read
        // before (acquire) its re-test of the holders: the sleeper sees the revocation or a new epoch.
        revoked_of(holder).store(tid, std::memory_order_seq_cst);
        detail::futex_wake(&holder.word, detail::kFutexWakeAll);
        revoked = true;
    }
    return revoked;
}

// Sleeps until the eventcount moves from `key`, a live peer holder word changes, or the deadline (none:
// forever). Returns false when the deadline passed.
bool sleep_on_ring_and_peer(detail::EventCountLayout& event, std::uint32_t key, PipeControl& control,
                            int peer_index, const Deadline* deadline) {
    if (deadline != nullptr && deadline->passed()) return false;
    detail::PipeEnd& peer = control.ends[peer_index];
    if (detail::futex_waitv_usable()) {
        FutexWaitv waiters[2 + detail::kPipeHolders];
        std::uint32_t count = 0;
        waiters[count++] = {key, reinterpret_cast<std::uintptr_t>(&event.epoch), kFutex2Size32, 0};
        // A named pipe's end 1 that awaits its opener has no holder yet: sleep on the word the opener sets
        // and wakes (it moves the eventcounts too), so the test below does not take it for a gone peer.
        if (awaits_opener(control, peer_index))
            waiters[count++] = {0, reinterpret_cast<std::uintptr_t>(&control.header.end1_opened), kFutex2Size32, 0};
        for (PipeHolder& holder : peer.holders) {
            // relaxed: arms the kernel's comparison only; a change makes the call return at once.
            const std::uint32_t word = word_of(holder).load(std::memory_order_relaxed);
            if (!holds_live_thread(word)) continue;  // free or dead: no wake-up will come through it
            waiters[count++] = {word, reinterpret_cast<std::uintptr_t>(&holder.word), kFutex2Size32, 0};
        }
        // Every holder went after the caller's re-test: the kernel's wake-up for a death (or the closer's)
        // may already be spent, and no word left to sleep on would bring another. Go and look instead.
        if (count == 1) return true;
        // Bounded by the eventcount's re-test period (eventcount.hpp) as every eventcount sleep is: a sender
        // killed between taking the flag and waking, or one that took its hold after these words were
        // armed, leaves no other wake-up; and without this process's waiter barrier a wake-up can be lost.
        // (Unbounded but for the deadline when a test build switches the re-test off.)
        const std::optional<std::chrono::nanoseconds> span = detail::notification_sleep_bound(deadline);
        timespec absolute{};
        if (span) absolute = Deadline::to_timespec(std::chrono::nanoseconds(Deadline::monotonic_now_ns()) + *span);
        const detail::FutexWaitvOutcome outcome = detail::futex_waitv(waiters, count, span ? &absolute : nullptr);
        if (outcome != detail::FutexWaitvOutcome::unusable) {
            spread_death_wake_ups(peer);
            return deadline == nullptr || !deadline->passed() || outcome == detail::FutexWaitvOutcome::woken;
        }
    }
    // No futex_waitv: sleep on the eventcount, and look at the holder words every kPipeDeathPollInterval
    // (kept when a test build switches the eventcount's re-test off: it is how a death is seen here).
    std::chrono::nanoseconds span = detail::kPipeDeathPollInterval;
    if (!detail::recheck_disabled()) span = std::min(span, detail::notification_recheck_period());
    if (deadline != nullptr) span = std::min(span, deadline->remaining());
    const timespec relative = Deadline::to_timespec(span);
    detail::futex_wait(&event.epoch, key, &relative);
    return deadline == nullptr || !deadline->passed();
}

// Spins (the thread's adaptive budget, adaptive_spin.hpp), then sleeps, until ready() or the peer is gone
// or the deadline. Returns ready() || gone.
template <class Ready>
bool await(detail::EventCountLayout& event, PipeControl& control, int peer_index, const Deadline* deadline,
           Ready&& ready) {
    if (detail::spin_until([&] { return ready() || end_gone(control, peer_index); })) return true;
    for (;;) {
        const std::uint32_t key = detail::prepare_wait(event);
        if (ready() || end_gone(control, peer_index)) return true;
        const bool in_time = sleep_on_ring_and_peer(event, key, control, peer_index, deadline);
        if (ready() || end_gone(control, peer_index)) return true;
        if (!in_time) return false;
    }
}

std::string bytes_text(std::uint64_t count) { return std::to_string(count) + " bytes"; }

}  // namespace

// ---- PipeReader --------------------------------------------------------------------------------------

void detail::PipeReader::start(std::span<std::byte> target, std::optional<std::size_t> maxlength) noexcept {
    target_ = target;
    maxlength_ = maxlength;
    started_ = false;
    message_size_ = 0;
    received_ = 0;
    overflow_.clear();
    error_.clear();
}

detail::PipeReader::Step detail::PipeReader::feed(std::span<const std::byte> slot) {
    if (slot.size() < sizeof(PipeChunkHeader)) {
        error_ = "a chunk of " + bytes_text(slot.size()) + " is shorter than its header";
        return Step::corrupt;
    }
    PipeChunkHeader header;
    std::memcpy(&header, slot.data(), sizeof header);  // one copy: the peer may change the slot meanwhile
    const std::size_t room = std::min(slot.size() - sizeof header, kPipeChunkPayload);
    if (header.bytes > room) {
        error_ = "a chunk claims " + bytes_text(header.bytes) + ", a slot holds " + bytes_text(room);
        return Step::corrupt;
    }
    if ((header.flags & ~(kChunkFirst | kChunkLast)) != 0) {
        error_ = "a chunk has unknown flags " + std::to_string(header.flags);
        return Step::corrupt;
    }
    const bool first = (header.flags & kChunkFirst) != 0;
    const bool last = (header.flags & kChunkLast) != 0;
    if (first == started_) {
        error_ = first ? "a new message starts inside the previous one" : "a chunk continues no message";
        return Step::corrupt;
    }
    if (first) {
        if (maxlength_ && header.message_size > *maxlength_) {
            error_ = "a message of " + bytes_text(header.message_size) + " is longer than maxlength " +
                     std::to_string(*maxlength_);
            return Step::too_long;
        }
        message_size_ = header.message_size;
    } else if (header.message_size != message_size_) {
        error_ = "a chunk names a message of " + bytes_text(header.message_size) + " inside one of " +
                 bytes_text(message_size_);
        return Step::corrupt;
    }
    const std::uint64_t left = message_size_ - received_;
    if (header.bytes > left || (last ? header.bytes != left : header.bytes == 0)) {
        error_ = "a chunk of " + bytes_text(header.bytes) + " at byte " + std::to_string(received_) +
                 (last ? " ends" : " continues") + " a message of " + bytes_text(message_size_);
        return Step::corrupt;
    }
    started_ = true;
    const std::byte* payload = slot.data() + sizeof header;
    // A message that fits the target goes there; any other (recv_bytes, or one too long for the buffer
    // of recv_bytes_into, handed over in BufferTooShort) to the owned vector, which grows with the bytes
    // that arrived, never with what the header announces.
    if (message_size_ <= target_.size()) {
        if (header.bytes != 0) std::memcpy(target_.data() + received_, payload, header.bytes);
    } else {
        overflow_.insert(overflow_.end(), payload, payload + header.bytes);
    }
    received_ += header.bytes;
    if (!last) return Step::need_more;
    started_ = false;
    return Step::complete;
}

// ---- PipeConnection ----------------------------------------------------------------------------------

PipeConnection::PipeConnection(std::shared_ptr<detail::PipeShared> shared, int end, bool readable, bool writable)
    : shared_(std::move(shared)), end_(end) {
    if (readable) in_ = &*shared_->rings[end_];
    if (writable) out_ = &*shared_->rings[1 - end_];
}

PipeConnection::PipeConnection(PipeConnection&& other) noexcept
    : shared_(std::move(other.shared_)), end_(other.end_), in_(std::exchange(other.in_, nullptr)),
      out_(std::exchange(other.out_, nullptr)) {}

PipeConnection& PipeConnection::operator=(PipeConnection&& other) noexcept {
    if (this != &other) {
        close();
        shared_ = std::move(other.shared_);
        end_ = other.end_;
        in_ = std::exchange(other.in_, nullptr);
        out_ = std::exchange(other.out_, nullptr);
    }
    return *this;
}

PipeConnection::~PipeConnection() { close(); }

std::string PipeConnection::describe() const {
    if (shared_ == nullptr) return "shared-memory pipe end " + std::to_string(end_) + " (closed)";
    return shared_->label + " end " + std::to_string(end_);
}

int PipeConnection::fd() const noexcept { return shared_ == nullptr ? -1 : shared_->segment.fd(); }

const std::string& PipeConnection::name() const noexcept {
    static const std::string none;
    return shared_ == nullptr ? none : shared_->segment.name();
}

void PipeConnection::unlink() {
    if (shared_ == nullptr) throw StateError(describe() + ": unlink: the connection is closed");
    if (shared_->segment.name().empty())
        throw StateError(describe() + ": unlink: an anonymous pipe has no name");
    shared_->segment.unlink();
}

int PipeConnection::fileno() const {
    throw StateError(describe() + ": fileno: a shared-memory connection has no file descriptor (use mproc::wait)");
}

detail::PipeEnd* PipeConnection::peer_end() const noexcept {
    return shared_ == nullptr ? nullptr : &shared_->control->ends[1 - end_];
}

void PipeConnection::require(const char* operation, bool want_read) const {
    if (shared_ == nullptr) throw StateError(describe() + ": " + operation + ": the connection is closed");
    if (want_read && in_ == nullptr)
        throw StateError(describe() + ": " + operation + ": the connection is not readable");
    if (!want_read && out_ == nullptr)
        throw StateError(describe() + ": " + operation + ": the connection is not writable");
}

void PipeConnection::adopt() {
    if (shared_ == nullptr) throw StateError(describe() + ": adopt: the connection is closed");
    detail::ThisThreadRobustList& self = detail::this_thread_robust_list();
    detail::PipeEnd& end = shared_->control->ends[end_];
    if (const int index = find_hold(end, self); index >= 0) {
        // relaxed: only this thread's own hold is looked at.
        if (revoked_of(end.holders[index]).load(std::memory_order_relaxed) != self.tid()) return;
        release_hold(end, index, self);  // revoked by a close() in this process: renew it below
    }
    if (!end_alive(end))
        throw StateError(describe() + ": adopt: the end is gone (every holder closed it or died)");
    if (!claim_hold(end, self))
        throw StateError(describe() + ": adopt: " + std::to_string(detail::kPipeHolders) +
                         " threads already hold the end");
}

namespace {

// After a hold of `end` stopped counting: wakes the peer's sleepers on both rings (they re-test the
// holders), which is how a revocation reaches them and how the fallback without futex_waitv learns at once.
void wake_peer_sleepers(detail::PipeShared& shared, int end) noexcept {
    if (shared.rings[end]) detail::notify_always(shared.rings[end]->control().not_full.event);
    if (shared.rings[1 - end]) detail::notify_always(shared.rings[1 - end]->control().not_empty.event);
}

detail::ThisThreadRobustList* robust_list_or_null() noexcept {
    try {
        return &detail::this_thread_robust_list();
    } catch (...) {
        return nullptr;  // no usable robust list in this thread: it cannot hold anything
    }
}

}  // namespace

void PipeConnection::disown() noexcept {
    if (shared_ == nullptr) return;
    detail::ThisThreadRobustList* self = robust_list_or_null();
    if (self == nullptr) return;
    detail::PipeEnd& end = shared_->control->ends[end_];
    const int index = find_hold(end, *self);
    if (index < 0) return;
    release_hold(end, index, *self);
    wake_peer_sleepers(*shared_, end_);
}

void PipeConnection::close() noexcept {
    if (shared_ == nullptr) return;
    disown();
    if (detail::ThisThreadRobustList* self = robust_list_or_null(); self != nullptr) {
        if (revoke_other_holds(shared_->control->ends[end_], self->tid())) wake_peer_sleepers(*shared_, end_);
    }
    shared_.reset();
    in_ = nullptr;
    out_ = nullptr;
}

void PipeConnection::close_for_reading() noexcept {
    in_ = nullptr;
    if (out_ == nullptr) close();
}

bool PipeConnection::peer_gone() const {
    if (shared_ == nullptr) throw StateError(describe() + ": peer_gone: the connection is closed");
    return end_gone(*shared_->control, 1 - end_);
}

bool PipeConnection::ready_to_receive() const noexcept {
    if (shared_ == nullptr || in_ == nullptr) return true;  // a receive throws at once
    if (end_gone(*shared_->control, 1 - end_)) return true;
    return in_->ready_to_get();  // read-only: wait() and poll() may run beside a receive
}

void PipeConnection::send_bytes(std::span<const std::byte> message) {
    require("send_bytes", false);
    PipeControl& control = *shared_->control;
    const int peer = 1 - end_;
    detail::RingControl& ring = out_->control();
    std::size_t sent = 0;
    bool first = true;
    do {
        RingRegion region = out_->reserve(1);
        if (region.count == 0 || end_gone(control, peer)) {
            await(ring.not_full.event, control, peer, nullptr, [&] { return (region = out_->reserve(1)).count != 0; });
            if (end_gone(control, peer))
                throw BrokenPipe(describe() + ": send_bytes: the peer end is closed or its holders died", EPIPE);
        }
        const std::size_t bytes = std::min(message.size() - sent, detail::kPipeChunkPayload);
        detail::PipeChunkHeader header{static_cast<std::uint32_t>(bytes), 0, message.size()};
        if (first) header.flags |= detail::kChunkFirst;
        if (sent + bytes == message.size()) header.flags |= detail::kChunkLast;
        std::memcpy(region.data, &header, sizeof header);
        if (bytes != 0) std::memcpy(region.data + sizeof header, message.data() + sent, bytes);
        MPROC_KILL_POINT(pipe_send, 0);  // a chunk written, not published: the receiver never sees it
        out_->commit(1);
        MPROC_KILL_POINT(pipe_send, 1);  // the chunks up to this one published, the rest never sent
        sent += bytes;
        first = false;
    } while (sent < message.size());
}

std::size_t PipeConnection::receive(const char* operation, std::span<std::byte> target,
                                    std::optional<std::size_t> maxlength, std::vector<std::byte>* whole) {
    require(operation, true);
    PipeControl& control = *shared_->control;
    const int peer = 1 - end_;
    detail::RingControl& ring = in_->control();
    PipeReader reader;
    reader.start(target, maxlength);
    for (;;) {
        // Gone is read before the ring: a peer that published and then went is seen with its chunks.
        const bool gone = end_gone(control, peer);
        RingRegion region = in_->peek(1);
        if (region.count == 0) {
            if (gone) {
                if (!reader.in_message())
                    throw Closed(describe() + ": " + operation +
                                 ": end of stream (the peer end is closed or its holders died)");
                close_for_reading();
                throw SystemError(describe() + ": " + operation + ": the peer went in the middle of a message of " +
                                      bytes_text(reader.message_size()) + " (" + bytes_text(reader.received()) +
                                      " received)",
                                  EPROTO);
            }
            await(ring.not_empty.event, control, peer, nullptr, [&] { return in_->peek(1).count != 0; });
            continue;
        }
        const std::size_t slot_bytes = std::min<std::size_t>(region.stride, detail::kPipeSlotSize);
        const PipeReader::Step step = reader.feed({region.data, slot_bytes});
        if (step == PipeReader::Step::too_long || step == PipeReader::Step::corrupt) {
            const int code = step == PipeReader::Step::too_long ? EMSGSIZE : EPROTO;
            const std::string why = reader.error();
            close_for_reading();
            throw SystemError(describe() + ": " + operation + ": " + why, code);
        }
        MPROC_KILL_POINT(pipe_recv, 0);  // a chunk read, not released: a next receiver reads it again
        in_->release(1);
        MPROC_KILL_POINT(pipe_recv, 1);  // the chunks up to this one taken, and lost with this receiver
        if (step == PipeReader::Step::need_more) continue;
        const std::size_t size = static_cast<std::size_t>(reader.message_size());
        if (whole != nullptr) {
            *whole = reader.take_message();
            return size;
        }
        if (!reader.fits_target())
            throw BufferTooShort(describe() + ": " + operation + ": a message of " + bytes_text(size) +
                                     " does not fit a buffer of " + bytes_text(target.size()),
                                 reader.take_message());
        return size;
    }
}

std::vector<std::byte> PipeConnection::recv_bytes(std::optional<std::size_t> maxlength) {
    std::vector<std::byte> message;
    receive("recv_bytes", {}, maxlength, &message);
    return message;
}

std::size_t PipeConnection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
    if (offset > buffer.size())
        throw ValueError(describe() + ": recv_bytes_into: offset " + std::to_string(offset) + " is past the buffer's " +
                         bytes_text(buffer.size()));
    return receive("recv_bytes_into", buffer.subspan(offset), std::nullopt, nullptr);
}

bool PipeConnection::poll(std::optional<std::chrono::nanoseconds> timeout) {
    require("poll", true);
    if (ready_to_receive()) return true;
    if (timeout && timeout->count() <= 0) return false;
    std::optional<Deadline> deadline;
    if (timeout) deadline = Deadline::after(*timeout);
    return await(in_->control().not_empty.event, *shared_->control, 1 - end_, deadline ? &*deadline : nullptr,
                 [&] { return in_->ready_to_get(); });
}

namespace {

// Segments kept for the life of the process (see below), reachable from here on purpose: never freed,
// and not a leak for LeakSanitizer.
void keep_mapped_for_the_process(detail::PipeShared* shared) noexcept {
    static std::mutex guard;
    static auto* kept = new std::vector<detail::PipeShared*>();
    try {
        const std::lock_guard<std::mutex> hold(guard);
        kept->push_back(shared);
    } catch (...) {
        // Out of memory: the segment stays mapped all the same, only unreachable.
    }
}

// The last handle of a pipe in this process is gone. A thread of this process whose hold was revoked (or
// never released: a closed handle cannot reach it) still has the holder's node linked in its robust list,
// and glibc and the kernel follow that list through the segment: unmapping it now would let them write
// into, or read, whatever is mapped there next. Such a segment stays mapped for the life of the process.
void unmap_unless_still_listed(detail::PipeShared* shared) noexcept {
    if (shared->control != nullptr) {
        for (detail::PipeEnd& end : shared->control->ends)
            for (PipeHolder& holder : end.holders)
                // relaxed: only TIDs of this process matter, and their writers are this process's threads.
                if (thread_of_this_process(word_of(holder).load(std::memory_order_relaxed) & kTidMask)) {
                    keep_mapped_for_the_process(shared);
                    return;
                }
    }
    delete shared;
}

}  // namespace

namespace {

// Bytes of one ring, rounded up so that the next starts 128-aligned (a slot is its payload plus a sequence
// word, so the ring's own size need not be a multiple of 128). ValueError for a bad ring_slots.
std::size_t pipe_ring_size(std::size_t ring_slots) {
    return (RawSpscRing::required_size(ring_slots, detail::kPipeSlotSize) + RawSpscRing::kAlignment - 1) /
           RawSpscRing::kAlignment * RawSpscRing::kAlignment;
}

// Lays out an empty pipe in `payload` (128-aligned, zero-filled, sizeof(PipeControl) + rings bytes).
PipeControl* place_pipe(std::span<std::byte> payload, std::size_t ring_count, std::size_t ring_slots,
                        std::size_t ring_size, bool end1_opened) {
    auto* control = new (payload.data()) PipeControl{};
    control->header.magic = detail::kPipeMagic;
    control->header.layout_version = detail::kPipeLayoutVersion;
    control->header.ring_count = static_cast<std::uint32_t>(ring_count);
    control->header.end1_opened = end1_opened ? 1 : 0;
    control->header.ring_size = ring_size;
    control->header.total_size = payload.size();
    for (std::size_t ring = 0; ring < ring_count; ++ring) {
        const std::size_t offset = sizeof(PipeControl) + ring * ring_size;
        control->header.ring_offset[ring] = offset;
        (void)RawSpscRing::init(payload.data() + offset, ring_size, ring_slots, detail::kPipeSlotSize);
    }
    return control;
}

// The process-local handle state over a validated pipe segment: the rings attached with their constants
// checked (slot size kPipeSlotSize: the send path writes whole slots of that size).
std::shared_ptr<detail::PipeShared> map_pipe(SharedMemory segment, std::string label) {
    const std::span<std::byte> payload = segment.bytes();
    const detail::PipeLayout layout = detail::validate_pipe_layout(payload, label);
    std::shared_ptr<detail::PipeShared> shared(new detail::PipeShared{std::move(segment), nullptr, {}, std::move(label)},
                                               unmap_unless_still_listed);
    shared->control = std::launder(reinterpret_cast<PipeControl*>(payload.data()));
    for (std::uint32_t ring = 0; ring < layout.ring_count; ++ring) {
        std::optional<RawSpscRing> attached;
        try {
            attached = RawSpscRing::attach(payload.data() + layout.ring_offset[ring], layout.ring_size);
        } catch (const InvalidObject& error) {
            throw InvalidObject(shared->label + ": ring " + std::to_string(ring) + ": " + error.what());
        }
        if (attached->slot_size() != detail::kPipeSlotSize)
            throw InvalidObject(shared->label + ": ring " + std::to_string(ring) + " has slots of " +
                                bytes_text(attached->slot_size()) + ", expected " + bytes_text(detail::kPipeSlotSize));
        shared->rings[ring] = *attached;
    }
    return shared;
}

std::string named_label(const SharedMemory& segment) { return object_label(ObjectKind::pipe, segment.name()); }

}  // namespace

detail::PipeLayout detail::validate_pipe_layout(std::span<const std::byte> payload, std::string_view label) {
    const std::string who(label);
    if (payload.size() < sizeof(PipeControl))
        throw InvalidObject(who + ": a payload of " + bytes_text(payload.size()) + " cannot hold the pipe's " +
                            bytes_text(sizeof(PipeControl)) + " control block");
    PipeHeaderLine header;
    std::memcpy(&header, payload.data(), sizeof header);  // one copy: a peer may rewrite the shared one
    if (header.magic != kPipeMagic)
        throw InvalidObject(who + ": pipe magic " + std::to_string(header.magic) + ", expected " +
                            std::to_string(kPipeMagic));
    if (header.layout_version != kPipeLayoutVersion)
        throw InvalidObject(who + ": pipe layout version " + std::to_string(header.layout_version) + ", expected " +
                            std::to_string(kPipeLayoutVersion));
    if (header.ring_count != 1 && header.ring_count != 2)
        throw InvalidObject(who + ": " + std::to_string(header.ring_count) + " rings, expected 1 or 2");
    if (header.ring_size == 0 || header.ring_size % RawSpscRing::kAlignment != 0 ||
        header.ring_size > (payload.size() - sizeof(PipeControl)) / header.ring_count)
        throw InvalidObject(who + ": rings of " + bytes_text(header.ring_size) + " do not fit a payload of " +
                            bytes_text(payload.size()) + " in 128-byte steps");
    const std::uint64_t total = sizeof(PipeControl) + header.ring_count * header.ring_size;  // no overflow: checked above
    if (header.total_size != total)
        throw InvalidObject(who + ": the pipe says " + bytes_text(header.total_size) + ", its rings take " +
                            bytes_text(total));
    PipeLayout layout;
    layout.ring_count = header.ring_count;
    layout.ring_size = header.ring_size;
    for (std::uint32_t ring = 0; ring < header.ring_count; ++ring) {
        const std::uint64_t expected = sizeof(PipeControl) + ring * header.ring_size;
        if (header.ring_offset[ring] != expected)
            throw InvalidObject(who + ": ring " + std::to_string(ring) + " at offset " +
                                std::to_string(header.ring_offset[ring]) + ", expected " + std::to_string(expected));
        layout.ring_offset[ring] = expected;
    }
    return layout;
}

PipeConnection PipeConnection::attached(std::shared_ptr<detail::PipeShared> shared, int end) {
    const bool two_rings = shared->rings[1].has_value();
    // One-way pipes: end 0 reads ring 0, end 1 writes it.
    PipeConnection connection(std::move(shared), end, end == 0 || two_rings, end == 1 || two_rings);
    try {
        connection.adopt();
    } catch (...) {
        // Not close(): it would revoke the holds this process's other threads have on the end.
        connection.shared_.reset();
        connection.in_ = nullptr;
        connection.out_ = nullptr;
        throw;
    }
    return connection;
}

PipeConnection PipeConnection::from_fd(int fd, int end, std::chrono::milliseconds publish_timeout) {
    if (end != 0 && end != 1)
        throw ValueError("pipe: from_fd: end " + std::to_string(end) + ", expected 0 or 1");
    SharedMemory segment =
        SharedMemory::attach_object(fd, ObjectKind::pipe, current_layout_version(ObjectKind::pipe), publish_timeout);
    std::string label = "pipe from fd " + std::to_string(fd);
    return attached(map_pipe(std::move(segment), std::move(label)), end);
}

std::pair<PipeConnection, PipeConnection> Pipe(bool duplex, std::size_t ring_slots) {
    const std::size_t ring_size = pipe_ring_size(ring_slots);
    const std::size_t ring_count = duplex ? 2 : 1;
    SharedMemory segment = SharedMemory::anonymous_object(
        ObjectKind::pipe, current_layout_version(ObjectKind::pipe), sizeof(PipeControl) + ring_count * ring_size,
        [&](std::span<std::byte> payload) { place_pipe(payload, ring_count, ring_slots, ring_size, true); });
    std::shared_ptr<detail::PipeShared> shared = map_pipe(std::move(segment), "anonymous pipe");
    detail::ThisThreadRobustList& self = detail::this_thread_robust_list();
    claim_hold(shared->control->ends[0], self);
    claim_hold(shared->control->ends[1], self);
    PipeConnection first(shared, 0, true, duplex);
    PipeConnection second(std::move(shared), 1, duplex, true);
    return {std::move(first), std::move(second)};
}

PipeConnection Pipe::create(std::string_view name, bool duplex, std::size_t ring_slots, mode_t mode) {
    const std::size_t ring_size = pipe_ring_size(ring_slots);
    const std::size_t ring_count = duplex ? 2 : 1;
    detail::ThisThreadRobustList& self = detail::this_thread_robust_list();  // may throw: before the segment
    // The creator's hold on end 0 is taken inside the initialiser, before publication: an opener never finds
    // end 0 unheld, and a creator killed at any point after it leaves end 0 dead (OWNER_DIED), not awaited.
    SharedMemory segment = SharedMemory::create_object(
        name, ObjectKind::pipe, current_layout_version(ObjectKind::pipe), sizeof(PipeControl) + ring_count * ring_size,
        mode, [&](std::span<std::byte> payload) {
            PipeControl* control = place_pipe(payload, ring_count, ring_slots, ring_size, false);
            claim_hold(control->ends[0], self);  // noexcept, and the initialiser's last step
        });
    std::string label = named_label(segment);
    std::shared_ptr<detail::PipeShared> shared = map_pipe(std::move(segment), std::move(label));
    return PipeConnection(std::move(shared), 0, true, duplex);
}

PipeConnection Pipe::open(std::string_view name, std::chrono::milliseconds publish_timeout) {
    SharedMemory segment =
        SharedMemory::open_object(name, ObjectKind::pipe, current_layout_version(ObjectKind::pipe), publish_timeout);
    std::string label = named_label(segment);
    std::shared_ptr<detail::PipeShared> shared = map_pipe(std::move(segment), std::move(label));
    PipeControl& control = *shared->control;
    detail::PipeEnd& end1 = control.ends[1];
    const auto refuse = [&]() -> PipeConnection {
        if (end_alive(end1))
            throw SystemError(shared->label + ": open: end 1 is held by the pipe's opener (a named pipe joins one "
                                              "creator and one opener)",
                              EBUSY);
        throw StateError(shared->label + ": open: end 1 was opened and is gone (closed, or its holders died); "
                                         "a named pipe joins one creator and one opener");
    };
    if (!awaits_opener(control, 1)) return refuse();
    detail::ThisThreadRobustList& self = detail::this_thread_robust_list();
    // The hold first, then the flag: a side that sees end 1 opened sees it held (see awaits_opener()).
    if (!claim_hold(end1, self)) return refuse();
    std::uint32_t unopened = 0;
    // acq_rel: release publishes the hold claimed above to the creator's acquire in awaits_opener(); acquire
    // orders this opener after a rival that won.
    if (!end1_opened_of(control).compare_exchange_strong(unopened, 1, std::memory_order_acq_rel,
                                                         std::memory_order_acquire)) {
        // A rival opener won between the test above and the claim: give the hold back, refuse.
        if (const int index = find_hold(end1, self); index >= 0) release_hold(end1, index, self);
        return refuse();
    }
    detail::futex_wake(&control.header.end1_opened, detail::kFutexWakeAll);
    wake_peer_sleepers(*shared, 1);  // the creator's sleepers and wait() re-arm on the new hold
    const bool duplex = shared->rings[1].has_value();  // the validated shape, not the shared header again
    return PipeConnection(std::move(shared), 1, duplex, true);
}

}  // namespace mproc
