#include "robust_list.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <string>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "futex.hpp"
#include "mproc/error.hpp"

namespace mproc::detail {

thread_local constinit ThisThreadRobustList this_thread_robust_list_state [[gnu::tls_model("initial-exec")]];

namespace {

// A list head of our own for a thread the C library registered none for, with the prev word that
// link() writes 8 bytes before the head when the list is empty (glibc keeps robust_prev there).
struct OwnRobustHead {
    std::uintptr_t prev_word;
    robust_list_head head;
};

thread_local OwnRobustHead this_thread_own_head;

// Runs in the child of fork(), in its only thread: new TID, and glibc has emptied its list.
void reset_in_fork_child() noexcept { this_thread_robust_list_state.forget(); }

}  // namespace

void ThisThreadRobustList::initialise() {
    static std::once_flag atfork_registered;
    std::call_once(atfork_registered, [] {
        if (int error = ::pthread_atfork(nullptr, nullptr, reset_in_fork_child); error != 0)
            throw_system_error("robust futex list: pthread_atfork", error);
    });

    robust_list_head* head = nullptr;
    std::size_t length = 0;
    if (::syscall(SYS_get_robust_list, 0, &head, &length) != 0)
        throw_system_error("robust futex list: get_robust_list");
    if (head == nullptr) {
        OwnRobustHead& own = this_thread_own_head;
        own.prev_word = reinterpret_cast<std::uintptr_t>(&own.head);
        own.head.list.next = &own.head.list;
        own.head.futex_offset = kRobustFutexOffset;
        own.head.list_op_pending = nullptr;
        if (::syscall(SYS_set_robust_list, &own.head, sizeof own.head) != 0)
            throw_system_error("robust futex list: set_robust_list");
        head = &own.head;
        length = sizeof own.head;
    }
    if (length != sizeof(robust_list_head))
        throw StateError("robust futex list: the registered list head is " + std::to_string(length) +
                    " bytes, expected " + std::to_string(sizeof(robust_list_head)));
    if (head->futex_offset != kRobustFutexOffset)
        throw StateError("robust futex list: the C library registered futex_offset " +
                    std::to_string(head->futex_offset) + ", mproc locks need " +
                    std::to_string(kRobustFutexOffset) + " (glibc's pthread_mutex_t layout)");
    tid_ = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    head_ = head;
}

void ThisThreadRobustList::abandon_entries_in(std::uintptr_t begin, std::uintptr_t end) noexcept {
    if (head_ == nullptr) return;
    const auto inside = [&](std::uintptr_t node) {
        return node >= begin + static_cast<std::uintptr_t>(-kRobustFutexOffset) && node + sizeof(std::uintptr_t) <= end;
    };
    const auto pending = reinterpret_cast<std::uintptr_t>(head_->list_op_pending) & ~kRobustPiBit;
    if (pending != 0 && inside(pending)) clear_pending();
    const auto head_address = reinterpret_cast<std::uintptr_t>(&head_->list);
    std::uintptr_t entry = reinterpret_cast<std::uintptr_t>(head_->list.next) & ~kRobustPiBit;
    for (int walked = 0; entry != head_address && entry != 0 && walked < kRobustListWalkLimit; ++walked) {
        const std::uintptr_t next = read_robust_link(entry) & ~kRobustPiBit;
        if (inside(entry)) {
            unlink(reinterpret_cast<void*>(entry));
            auto* word_address = reinterpret_cast<std::uint32_t*>(entry + kRobustFutexOffset);
            std::atomic_ref<std::uint32_t> word(*word_address);
            // relaxed: a first look; the exchange below is the operation that matters.
            std::uint32_t seen = word.load(std::memory_order_relaxed);
            while ((seen & FUTEX_TID_MASK) == tid_) {
                // release: pairs with the next owner's acquire on taking this word, as an unlock's would, so
                // what this thread wrote under the lock is visible to whoever is told OwnerDied.
                if (word.compare_exchange_weak(seen, (seen & FUTEX_WAITERS) | FUTEX_OWNER_DIED,
                                               std::memory_order_release, std::memory_order_relaxed)) {
                    if ((seen & FUTEX_WAITERS) != 0) futex_wake(word_address, 1);
                    break;
                }
            }
        }
        entry = next;
    }
}

}  // namespace mproc::detail
