#include "robust_list.hpp"

#include <cerrno>
#include <mutex>
#include <string>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

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

}  // namespace mproc::detail
