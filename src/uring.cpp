#include "uring.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "mproc/error.hpp"

#if defined(__SANITIZE_THREAD__)
#define MPROC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPROC_TSAN 1
#endif
#endif
#ifdef MPROC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mproc::detail {

namespace {

std::string first_line_of(const char* path) {
    std::ifstream file(path);
    std::string line;
    if (!std::getline(file, line)) return "unreadable";
    return line;
}

std::string seccomp_mode() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Seccomp:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 8));
    return "unknown";
}

// The opcodes a Connection submits. READ_FIXED/WRITE_FIXED, WRITEV, SENDMSG: 5.1; READ/SEND: 5.6.
constexpr int kRequiredOpcodes[] = {IORING_OP_READ, IORING_OP_READ_FIXED, IORING_OP_WRITEV,
                                    IORING_OP_WRITE_FIXED, IORING_OP_SEND, IORING_OP_SENDMSG};

std::string probe_kernel() {
    io_uring ring{};
    const int result = set_up_ring(4, ring, 0);
    if (result < 0) {
        const int error_number = -result;
        std::string reason = std::string("io_uring_setup failed: ") + std::strerror(error_number) +
                             " (kernel.io_uring_disabled=" + first_line_of("/proc/sys/kernel/io_uring_disabled") +
                             ", seccomp mode " + seccomp_mode() + ")";
        return reason;
    }
    std::string reason;
    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    if (probe == nullptr) {
        reason = "io_uring_register(IORING_REGISTER_PROBE) failed: kernel older than 5.6";
    } else {
        for (const int opcode : kRequiredOpcodes) {
            if (!io_uring_opcode_supported(probe, opcode)) {
                reason = "the kernel's io_uring lacks opcode " + std::to_string(opcode);
                break;
            }
        }
        io_uring_free_probe(probe);
    }
    tear_down_ring(ring);
    return reason;
}

}  // namespace

#ifdef MPROC_TSAN
namespace {
// The token of set_up_ring/tear_down_ring's happens-before edges; only its address matters.
char ring_mappings_token;
}  // namespace
#endif

int set_up_ring(unsigned entries, io_uring& ring, unsigned flags) noexcept {
    const int result = io_uring_queue_init(entries, &ring, flags);
#ifdef MPROC_TSAN
    // Pairs with the release in tear_down_ring(): every access to a ring unmapped before this one was mapped
    // happened before the accesses to this one.
    __tsan_acquire(&ring_mappings_token);
#endif
    return result;
}

void tear_down_ring(io_uring& ring) noexcept {
#ifdef MPROC_TSAN
    __tsan_release(&ring_mappings_token);  // pairs with the acquire in set_up_ring()
#endif
    io_uring_queue_exit(&ring);
}

std::string io_uring_unavailable_reason() {
    const char* disable = std::getenv("MPROC_DISABLE_IO_URING");
    if (disable != nullptr && disable[0] != '\0' && std::strcmp(disable, "0") != 0)
        return "MPROC_DISABLE_IO_URING is set";
    static std::once_flag probed;
    static std::string kernel_reason;
    std::call_once(probed, [] { kernel_reason = probe_kernel(); });
    return kernel_reason;
}

Uring::Uring(unsigned entries) : entries_(entries) {
    // SUBMIT_ALL (5.18): a failing SQE does not stop the rest of the batch from being submitted, so every
    // prepared SQE yields a CQE and completion counting stays exact. Older kernels reject the flag: retry
    // without it (they stop at a failed SQE only for errors in the SQE itself, which we never prepare).
    int result = set_up_ring(entries, ring_, IORING_SETUP_SUBMIT_ALL);
    if (result == -EINVAL) result = set_up_ring(entries, ring_, 0);
    if (result < 0) throw_system_error("connection: io_uring_queue_init(" + std::to_string(entries) + ")", -result);
}

Uring::~Uring() { tear_down_ring(ring_); }

io_uring_sqe* Uring::next_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) throw StateError("connection: io_uring submission queue full (a batch exceeded its capacity)");
    return sqe;
}

bool Uring::register_buffers(std::span<const iovec> buffers) noexcept {
    registered_ = io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size())) == 0;
    return registered_;
}

void Uring::submit_and_wait(unsigned completions) {
    for (;;) {
        const int result = io_uring_submit_and_wait(&ring_, completions);
        ++enter_calls_;
        if (result >= 0) {
            sqes_submitted_ += static_cast<unsigned>(result);
            return;
        }
        // EINTR before anything was submitted: liburing re-offers every SQE the kernel has not consumed yet,
        // so retrying neither loses nor doubles one. (A signal during the wait after a submission is not an
        // error: the kernel returns the count submitted, and peek_completion() waits for the rest.) EAGAIN/EBUSY: CQ ring overflow backlog or transient memory shortage; retrying waits.
        if (result != -EINTR && result != -EAGAIN && result != -EBUSY)
            throw_system_error("connection: io_uring_enter", -result);
    }
}

io_uring_cqe* Uring::peek_completion() {
    io_uring_cqe* completion = nullptr;
    if (io_uring_peek_cqe(&ring_, &completion) == 0) return completion;
    for (;;) {
        const int result = io_uring_wait_cqe(&ring_, &completion);
        ++enter_calls_;
        if (result == 0) return completion;
        if (result != -EINTR) throw_system_error("connection: io_uring_wait_cqe", -result);
    }
}

}  // namespace mproc::detail
