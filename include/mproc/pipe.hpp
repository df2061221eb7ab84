// mproc/pipe.hpp — Python's multiprocessing.Pipe() on shared memory: two Connections joined by SPSC rings of
// byte chunks in one segment (anonymous, or named in /dev/shm), with futex wake-ups and robust-futex
// liveness of each end.
//
// Defines: Pipe() (the pair of ends of an anonymous pipe), Pipe::create()/Pipe::open() (a named pipe between
// unrelated processes), PipeConnection (one end; a Connection; from_fd() re-attaches an anonymous pipe's
// end), detail::PipeControl and detail::PipeHolder (the shared layout), detail::PipeChunkHeader and
// detail::PipeReader (the decoder the receive path and fuzz/fuzz-pipe.cpp share), detail::validate_pipe_layout.
//
// Layout: an object of kind ObjectKind::pipe (object_header.hpp), whose payload is
// [PipeControl: a header line and, per end, kPipeHolders robust holder words | ring 0 | ring 1].
// Ring r (a RawSpscRing of kPipeSlotSize-byte slots) carries messages *to* end r. Each slot holds one
// chunk: a 16-byte PipeChunkHeader (payload bytes, first/last flags, the whole message's size) and up to
// kPipeChunkPayload bytes. A message longer than the ring streams through it: the sender fills the free
// slots, sleeps until the receiver frees more, and the receiver assembles the chunks as they come; it
// arrives whole. One-way pipes (duplex = false) have ring 0 only: end 0 reads, end 1 writes.
//
// Guarantees (those of Connection, connection.hpp), and:
// - End of stream: when every holder of the peer end has closed it or died, a receive returns the messages
//   already in the ring, then throws Closed; poll() says true. A send throws BrokenPipe (no signal).
// - A peer that dies in the middle of sending a message: the receiver throws SystemError(EPROTO) for that
//   partial message (Python: "got end of file during message") and the end is closed for reading.
// - Death is pushed, never guessed: a blocked sender or receiver sleeps in futex_waitv on the ring's
//   eventcount word *and* the peer's holder words; the kernel marks a dead holder's word FUTEX_OWNER_DIED
//   and wakes one sleeper, which wakes the rest. Without futex_waitv (before 5.16, or refused by a seccomp
//   filter): sleeps on the eventcount alone and re-checks the holder words every kPipeDeathPollInterval.
// - Corrupted ring contents (any bytes a hostile or broken peer can write) give SystemError(EPROTO) on
//   receive and close the end for reading, never an access outside the segment nor an allocation of more
//   than about twice the bytes actually received, whatever size a header announces (fuzz/fuzz-pipe.cpp).
//
// Holders — who keeps an end alive. An end is alive while at least one *thread* holds it: its TID is in
// one of the end's kPipeHolders robust words, linked into that thread's glibc robust list like a held
// RawLock, so the kernel marks the word FUTEX_OWNER_DIED when the thread ends (SIGKILL, exit, exec).
// - Pipe() makes the calling thread the holder of both ends.
// - adopt() makes the calling thread a holder too (another thread, or a fork()ed child, that is to be seen
//   dying must adopt the end it uses); disown() gives up the calling thread's hold and keeps the handle
//   usable. close() (and the destructor) closes the end *for the calling process*: the calling thread's
//   hold is released, and the holds of the process's other threads are revoked (the peer stops counting
//   them at once; their robust-list entries stay linked until those threads end or adopt again, and the
//   process keeps the segment mapped until then, so no list ever points into unmapped memory). The end
//   is gone once no holder is left, and stays gone (adopt() then throws StateError).
// - An end dies with its holder threads: an end held only by a worker thread is gone when that thread
//   returns, even if its process lives on.
// - fork(): the child inherits the handles but holds nothing (its thread has a new TID); the ends stay held
//   by the parent's thread until the parent closes or disowns them. The idiom: the child adopt()s the end it
//   uses before anything else, the parent closes its copy of that end only after the child has adopted it
//   (for instance once the child's first message arrived): a parent that closes it earlier closes it for the
//   child too. A child that never adopts uses the end on the parent's hold: its death is then not seen.
// - At most kPipeHolders threads hold one end at a time (StateError beyond).
//
// Named pipes (Pipe::create / Pipe::open) — one creator, one opener, the same fast path and guarantees:
// - The creator's end is end 0, the opener's end 1 (one-way: the creator reads, the opener writes). The
//   creator's thread holds end 0 before the name is published, so an opener never finds it unheld.
// - Exactly one open() succeeds per pipe: it makes its thread the holder of end 1. While end 1 is held, a
//   second open() throws SystemError(EBUSY) and changes nothing; once end 1 was opened and is gone (closed,
//   or its holders died), open() throws StateError: a named pipe joins one pair, never a third process.
//   To hand end 1 to more threads or fork()ed children, use adopt() on the opener's handle.
// - Before the opener arrives, end 1 is not gone but awaited: the creator's sends fill the ring and then
//   block, its receives and poll() wait, peer_gone() is false. They wait for the opener as long as they
//   would for a live peer (no timeout of their own); the creator can close() to give up.
// - A creator that dies (or closes) before anyone opens: open() still succeeds, the opener receives what the
//   creator sent, then Closed; its sends throw BrokenPipe. A creator killed before publishing leaves an
//   object open() rejects after publish_timeout (InvalidObject), as every named object (shared_memory.hpp).
// - The name outlives both ends, as every mproc name: unlink() it once (either end may), for instance right
//   after open() returned, when no other opener is to come. The resource tracker (resource_tracker.hpp)
//   unlinks a creator's leftover name as it does any other kind's.
// - open() validates what it maps: the object header (kind pipe, layout version), then the pipe's own
//   header (magic, version, ring count, ring offsets and sizes inside the segment) and each ring's
//   constants, slot size kPipeSlotSize; anything else is InvalidObject naming the pipe. Sizes rewritten
//   after open are never read again (the handle keeps the validated copies).
//
// Passing an end to another process by descriptor (the way a spawned child gets its end):
// - fd() is the anonymous pipe's memfd (-1 for a named pipe's ends, which meet by name, and for a closed
//   handle). PipeConnection::from_fd(fd, end) maps it in any process that has the descriptor (inherited
//   across exec, or received over SCM_RIGHTS), validates it as open() does, and makes the calling thread a
//   holder of `end` (adopt()): StateError when that end is gone, as adopt(). The giver keeps its own hold
//   until it closes its handle; as with fork(), it closes only after the receiver attached (its first
//   message arrived), or the end is gone before the receiver holds it. In a process that already holds the
//   end, from_fd maps the segment again and takes a hold of its own: the two handles close independently
//   (a hold is the word and the robust-list node of one mapping; close() of one does not release the other's).
//
// Threads: one thread may send while another receives on the same end; two concurrent senders or two
// concurrent receivers on one end are invalid (the rings are single-producer, single-consumer).
//
// Costs: send of an n-byte message: ceil(n / kPipeChunkPayload) slot copies, one release store per chunk,
// no system call unless the receiver sleeps (then one FUTEX_WAKE). Receive: the same, plus one allocation
// (recv_bytes). A sleeping side: one futex_waitv per wake-up. poll(0): a few loads. fileno(): there is no
// file descriptor: throws StateError (use mproc::wait(), wait.hpp, to wait on a PipeConnection with fds).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "mproc/connection.hpp"
#include "mproc/spsc_ring.hpp"

namespace mproc {

class SharedMemory;

namespace detail {

inline constexpr std::size_t kPipeHolders = 4;
inline constexpr std::size_t kPipeSlotSize = 2048;
inline constexpr std::size_t kPipeDefaultRingSlots = 128;  // 2 KiB and a sequence word each: about 257 KiB per direction
inline constexpr std::chrono::milliseconds kPipeDeathPollInterval{20};

// One holder word with its robust-list node (the layout RawLock uses: word 32 bytes before the node).
struct alignas(64) PipeHolder {
    std::uint32_t word;           // holder TID | FUTEX_WAITERS; 0 free; FUTEX_OWNER_DIED after its death
    std::uint32_t revoked_tid;    // == the word's TID: that hold was revoked by a close() in its process
    std::uint32_t reserved[4];    // zero
    std::uint64_t robust_prev;    // glibc's list: the prev word, at node - 8
    std::uint64_t robust_next;    // the node linked into the holder thread's robust list
    std::uint8_t padding[24];
};
static_assert(sizeof(PipeHolder) == 64 && offsetof(PipeHolder, robust_next) - offsetof(PipeHolder, word) == 32 &&
                  offsetof(PipeHolder, robust_next) - offsetof(PipeHolder, robust_prev) == 8,
              "the robust list finds the word 32 bytes before the node and the prev link 8 bytes before it");

struct alignas(128) PipeEnd {
    PipeHolder holders[kPipeHolders];
};

struct alignas(128) PipeHeaderLine {
    std::uint32_t magic;           // kPipeMagic
    std::uint32_t layout_version;  // kPipeLayoutVersion
    std::uint32_t ring_count;      // 2 (duplex) or 1
    std::uint32_t end1_opened;     // futex word: 0 while a named pipe's end 1 awaits its opener, then 1 for good
                                   // (Pipe() hands both ends out at once: 1 from the start)
    std::uint32_t reserved[2];     // zero
    std::uint64_t ring_offset[2];  // from the start of PipeControl
    std::uint64_t ring_size;       // bytes of each ring
    std::uint64_t total_size;
    std::uint8_t padding[72];
};

struct PipeControl {
    PipeHeaderLine header;
    PipeEnd ends[2];
};
static_assert(sizeof(PipeHeaderLine) == 128 && sizeof(PipeEnd) == 256 && sizeof(PipeControl) == 640 &&
                  alignof(PipeControl) == 128,
              "the rings after the control block start 128-aligned");
static_assert(std::is_standard_layout_v<PipeControl> && std::is_trivially_copyable_v<PipeControl>,
              "shared between processes: plain bytes only");

inline constexpr std::uint32_t kPipeMagic = 0x5050504d;  // "MPPP"
inline constexpr std::uint32_t kPipeLayoutVersion = 2;  // 2: end1_opened

// The head of every slot.
struct PipeChunkHeader {
    std::uint32_t bytes;          // payload bytes in this slot, <= kPipeChunkPayload
    std::uint32_t flags;          // kChunkFirst | kChunkLast
    std::uint64_t message_size;   // the whole message's size (every chunk repeats it)
};
static_assert(sizeof(PipeChunkHeader) == 16 && std::is_standard_layout_v<PipeChunkHeader>);
inline constexpr std::uint32_t kChunkFirst = 1;
inline constexpr std::uint32_t kChunkLast = 2;
inline constexpr std::size_t kPipeChunkPayload = kPipeSlotSize - sizeof(PipeChunkHeader);

// Assembles messages from chunks, checking each header against what came before. Pure: no shared memory,
// no blocking; the receive path feeds it the slots it peeks, the fuzz target arbitrary bytes.
class PipeReader {
public:
    enum class Step {
        need_more,  // the chunk was taken; the message is not complete
        complete,   // the chunk was taken and completed the message (message() / the target buffer)
        too_long,   // the first chunk announces more than maxlength: nothing taken (EMSGSIZE)
        corrupt,    // the header contradicts itself or what came before: nothing taken (EPROTO)
    };

    // Starts a message: it goes to `target` when it fits there (its size is known from the first chunk),
    // otherwise to an owned vector (recv_bytes's result, or the message BufferTooShort hands over).
    void start(std::span<std::byte> target, std::optional<std::size_t> maxlength) noexcept;
    // Feeds one slot's bytes (header and payload; `slot` may be shorter than a slot: corrupt).
    Step feed(std::span<const std::byte> slot);
    bool in_message() const noexcept { return started_; }
    std::uint64_t message_size() const noexcept { return message_size_; }
    std::uint64_t received() const noexcept { return received_; }
    // Whether the message went entirely into the target given to start().
    bool fits_target() const noexcept { return message_size_ <= target_.size(); }
    std::vector<std::byte> take_message() noexcept { return std::move(overflow_); }
    // Why the last feed() returned too_long or corrupt.
    const std::string& error() const noexcept { return error_; }

private:
    std::span<std::byte> target_;
    std::optional<std::size_t> maxlength_;
    bool started_ = false;
    std::uint64_t message_size_ = 0;
    std::uint64_t received_ = 0;
    std::vector<std::byte> overflow_;
    std::string error_;
};

struct PipeShared;  // the segment both ends of one pipe map in one process

// What validate_pipe_layout() found: the shape a handle keeps and uses, never re-reading the shared header.
struct PipeLayout {
    std::uint32_t ring_count = 0;
    std::uint64_t ring_offset[2] = {0, 0};
    std::uint64_t ring_size = 0;
};

// Checks a pipe payload (the bytes after the object header) before anything else reads it: room for the
// control block, magic, version, ring count, ring offsets and sizes exactly as a creator lays them out and
// inside the payload. Throws InvalidObject naming `label`. Pure: reads only inside `payload`, one copy of the
// header line. The rings' own constants are checked when they are attached. Not exported: the library's own
// open paths and fuzz/fuzz-pipe.cpp (linked statically) call it.
PipeLayout validate_pipe_layout(std::span<const std::byte> payload, std::string_view label);

}  // namespace detail

class Pipe;

class MPROC_API PipeConnection final : public Connection {
public:
    // Re-attaches `end` (0 or 1) of an anonymous pipe from its segment's descriptor (fd() of either end, in
    // this or another process), validated as Pipe::open() validates, and makes the calling thread a holder
    // of that end (adopt()). fd is duplicated; the caller keeps its own. ValueError for an end other than 0
    // or 1; SystemError(EBADF) for a bad descriptor; InvalidObject for a segment that is not a valid pipe;
    // StateError when the end is gone or kPipeHolders threads hold it.
    static PipeConnection from_fd(int fd, int end,
                                  std::chrono::milliseconds publish_timeout = std::chrono::milliseconds(2000));

    PipeConnection(PipeConnection&& other) noexcept;
    PipeConnection& operator=(PipeConnection&& other) noexcept;
    ~PipeConnection() override;  // close()

    using Connection::send_bytes;
    void send_bytes(std::span<const std::byte> message) override;
    std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt) override;
    std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0) override;
    bool poll(std::optional<std::chrono::nanoseconds> timeout = std::chrono::nanoseconds::zero()) override;
    // Gives up the calling thread's hold (see Holders above) and closes this handle; idempotent.
    void close() noexcept override;
    bool closed() const noexcept override { return shared_ == nullptr; }
    bool readable() const noexcept override { return shared_ != nullptr && in_ != nullptr; }
    bool writable() const noexcept override { return shared_ != nullptr && out_ != nullptr; }
    // Always StateError: a shared-memory end has no file descriptor (mproc::wait() waits on it).
    int fileno() const override;
    std::string_view backend() const noexcept override { return "shared memory"; }

    // The calling thread becomes a holder of this end (no-op when it is one). StateError when the handle
    // is closed, the end is gone, or kPipeHolders threads hold it.
    void adopt();
    // The calling thread stops holding this end (no-op when it does not); the handle stays usable.
    void disown() noexcept;
    // Whether the peer end is gone (every holder closed it or died).
    bool peer_gone() const;
    // 0 or 1: which end of the pipe this is.
    int end_index() const noexcept { return end_; }
    // The anonymous pipe's segment descriptor, for from_fd() in another process (close-on-exec: clear the
    // flag on a copy, or pass it over SCM_RIGHTS). -1 for a named pipe's end and for a closed handle.
    int fd() const noexcept;
    // "/name" of a named pipe; empty for an anonymous one and for a closed handle.
    const std::string& name() const noexcept;
    // Removes a named pipe's name (shm_unlink); both ends keep working. SystemError(ENOENT) when it is
    // already gone; StateError for an anonymous pipe or a closed handle.
    void unlink();

    // For mproc::wait(): the ring this end reads (nullptr when write-only or closed), and the peer end
    // whose holder words say whether it is gone (nullptr when closed).
    RawSpscRing* read_ring() const noexcept { return in_; }
    detail::PipeEnd* peer_end() const noexcept;
    // True when a receive would not block (a chunk is ready, or end of stream, or the end is closed for
    // reading after an error): poll(0) without the side effect of adopting.
    bool ready_to_receive() const noexcept;

protected:
    std::string describe() const override;

private:
    friend std::pair<PipeConnection, PipeConnection> Pipe(bool duplex, std::size_t ring_slots);
    friend class Pipe;
    PipeConnection(std::shared_ptr<detail::PipeShared> shared, int end, bool readable, bool writable);
    // A new handle on `end` of a segment this process just mapped: the calling thread takes a hold (adopt);
    // when it cannot, the handle is dropped without close() (which would revoke this process's other holds).
    static PipeConnection attached(std::shared_ptr<detail::PipeShared> shared, int end);

    void require(const char* operation, bool want_read) const;
    std::size_t receive(const char* operation, std::span<std::byte> target, std::optional<std::size_t> maxlength,
                        std::vector<std::byte>* whole);
    void close_for_reading() noexcept;

    std::shared_ptr<detail::PipeShared> shared_;
    int end_ = 0;
    RawSpscRing* in_ = nullptr;   // ring to this end
    RawSpscRing* out_ = nullptr;  // ring to the peer
};

// Named pipes (see "Named pipes" above). `Pipe` names both this class and the function below, as `stat`
// does in C: `mproc::Pipe(...)` calls the function, `mproc::Pipe::create(...)` names the class's members.
class MPROC_API Pipe {
public:
    Pipe() = delete;

    // A new pipe named `name` (normalised as SharedMemory names are); the result is end 0, held by the
    // calling thread. SystemError(EEXIST) when the name exists; ValueError for a bad name or ring_slots;
    // mode is filtered by the umask.
    static PipeConnection create(std::string_view name, bool duplex = true,
                                 std::size_t ring_slots = detail::kPipeDefaultRingSlots, mode_t mode = 0600);
    // End 1 of the pipe named `name`, held by the calling thread; waits up to publish_timeout for the creator
    // to publish it. SystemError(ENOENT) for a missing name, InvalidObject for an object that is not a valid
    // pipe, SystemError(EBUSY) while another opener holds end 1, StateError once end 1 is gone.
    static PipeConnection open(std::string_view name,
                               std::chrono::milliseconds publish_timeout = std::chrono::milliseconds(2000));
};

// Python's multiprocessing.Pipe(duplex) on shared memory: duplex → two ends, each readable and writable;
// one-way → (read end, write end). ring_slots: slots of kPipeSlotSize bytes per direction (a power of two,
// at least 2; ValueError otherwise). The segment is anonymous: fork()ed children inherit it, and fd() with
// PipeConnection::from_fd() hands an end to any other process.
MPROC_API
std::pair<PipeConnection, PipeConnection> Pipe(bool duplex = true,
                                               std::size_t ring_slots = detail::kPipeDefaultRingSlots);

}  // namespace mproc
