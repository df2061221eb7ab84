// src/robust_list.hpp (private) — the calling thread's kernel robust-futex list, shared with glibc.
//
// Why: when a thread dies, the kernel walks the list it registered with set_robust_list() and, for each
// entry whose futex word holds the dying thread's TID, sets FUTEX_OWNER_DIED, clears the TID and wakes one
// waiter. A thread registers one list only, and glibc already registered one for every thread (its robust
// pthread mutexes live there), so mproc links its lock nodes into *glibc's* list instead of registering
// its own (which would silently drop glibc's).
//
// Layout contract (checked at run time by this_thread_robust_list()):
// - The list's futex_offset is kRobustFutexOffset (-32): an entry's futex word is 32 bytes before its
//   node, as in glibc's pthread_mutex_t (__lock at 0, __list.__next at 32).
// - glibc's list is doubly linked through a prev word 8 bytes before each node (__list.__prev); glibc
//   writes the prev word of the entry after the one it links or unlinks, and the next word of the entry
//   before it, whatever that entry is. An mproc node therefore has a writable prev word at node - 8, and
//   link()/unlink() keep next/prev exactly as glibc keeps its own, so both can interleave freely. The
//   head's own prev word (glibc's robust_prev) sits 8 bytes before the head.
// - Links hold addresses in the owning thread's address space; they are meaningful only while that thread
//   holds the lock. The low bit of a link marks a PI futex (glibc's); it is masked before following a link
//   and kept when copying one.
//
// Ordering: only the owning thread and, at its death, the kernel read this list, and the kernel sees the
// thread's stores in program order, so a compiler barrier (atomic_signal_fence) is all that is needed to
// make a node complete before it is published, as glibc does with asm("" ::: "memory").
//
// list_op_pending: set to the node before an acquire or release starts and cleared after it ends. The
// kernel treats it as one more entry: a thread that dies between taking the word and linking the node, or
// between unlinking and releasing, is still handled. Since Linux 5.5 (ca16d5bee598, "futex: Prevent robust
// futex exit race") the kernel also wakes one waiter for a pending entry whose word is 0, and since Linux
// 6.2 (90d758896787, backported to 6.1.2) for one whose TID bits are 0 (FUTEX_WAITERS or FUTEX_OWNER_DIED
// set): a thread killed after releasing the word but before FUTEX_WAKE, or after being woken but before
// taking the word, does not strand the other waiters.
//
// fork(): the child has one thread with a new TID and glibc resets its list; the cached state here is
// reset by a pthread_atfork child handler, so the child re-reads both.
// Cost: the first use in a thread makes two system calls (get_robust_list, gettid); after that every call
// here is a few plain loads and stores. Not async-signal-safe: a signal handler must not take an mproc lock
// that the interrupted code may be taking or releasing (one list_op_pending per thread).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <linux/futex.h>

#include "mproc/kill_point.hpp"

namespace mproc::detail {

// Distance from a node to its futex word, the same for every entry of one list.
inline constexpr std::ptrdiff_t kRobustFutexOffset = -32;
// Distance from a node back to its prev word (glibc's QUEUE_PTR_ADJUST on 64-bit).
inline constexpr std::size_t kRobustPrevBeforeNode = 8;
// The kernel stops walking a list after this many entries (ROBUST_LIST_LIMIT); walks here stop there too.
inline constexpr int kRobustListWalkLimit = 2048;

// Links are read and written through memcpy: the words belong to glibc's pthread_mutex_t as often as to
// mproc's locks, so they are accessed as raw bytes rather than through either type.
inline std::uintptr_t read_robust_link(std::uintptr_t address) noexcept {
    std::uintptr_t value;
    std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
    return value;
}

inline void write_robust_link(std::uintptr_t address, std::uintptr_t value) noexcept {
    std::memcpy(reinterpret_cast<void*>(address), &value, sizeof value);
}

inline constexpr std::uintptr_t kRobustPiBit = 1;

// The kernel sees this thread's stores in program order; only the compiler must be kept from moving them.
inline void robust_list_compiler_barrier() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

class ThisThreadRobustList {
public:
    // This thread's kernel TID, as the futex word must hold it.
    std::uint32_t tid() const noexcept { return tid_; }

    // Marks node as the operation in progress / ends it. Each includes the compiler barrier that keeps the
    // store on the right side of the futex-word operation next to it.
    void set_pending(void* node) noexcept {
        head_->list_op_pending = static_cast<robust_list*>(node);
        robust_list_compiler_barrier();  // pending is visible to the kernel before the futex word changes
    }
    void clear_pending() noexcept {
        robust_list_compiler_barrier();  // the list and the futex word are final before pending is dropped
        head_->list_op_pending = nullptr;
    }

    // Links node first in the list, in glibc's ENQUEUE_MUTEX_BOTH order.
    void link(void* node) noexcept {
        const auto node_address = reinterpret_cast<std::uintptr_t>(node);
        const auto first = reinterpret_cast<std::uintptr_t>(head_->list.next);  // may carry the PI bit
        write_robust_link((first & ~kRobustPiBit) - kRobustPrevBeforeNode, node_address);  // first->prev = node
        MPROC_KILL_POINT(robust_link, 0);  // first's prev names a node the kernel cannot reach yet
        write_robust_link(node_address, first);                                          // node->next = first
        MPROC_KILL_POINT(robust_link, 1);
        write_robust_link(node_address - kRobustPrevBeforeNode, reinterpret_cast<std::uintptr_t>(head_));
        MPROC_KILL_POINT(robust_link, 2);  // node complete, not yet reachable from the head
        robust_list_compiler_barrier();  // node complete before the kernel can reach it through the head
        head_->list.next = static_cast<robust_list*>(node);
        MPROC_KILL_POINT(robust_link, 3);  // reachable through the head (and through pending)
    }

    // Unlinks node, in glibc's DEQUEUE_MUTEX order.
    void unlink(void* node) noexcept {
        const auto node_address = reinterpret_cast<std::uintptr_t>(node);
        const std::uintptr_t next = read_robust_link(node_address);
        const std::uintptr_t prev = read_robust_link(node_address - kRobustPrevBeforeNode);
        write_robust_link((next & ~kRobustPiBit) - kRobustPrevBeforeNode, prev);  // next->prev = prev
        MPROC_KILL_POINT(robust_unlink, 0);  // the forward chain (the kernel's) still passes the node
        write_robust_link(prev & ~kRobustPiBit, next);                            // prev->next = next
        MPROC_KILL_POINT(robust_unlink, 1);  // the kernel's walk skips the node: pending covers it
        robust_list_compiler_barrier();  // unlinked before the links are cleared
        write_robust_link(node_address - kRobustPrevBeforeNode, 0);
        MPROC_KILL_POINT(robust_unlink, 2);
        write_robust_link(node_address, 0);
        MPROC_KILL_POINT(robust_unlink, 3);
    }

    // Whether node is linked in this thread's list (walks at most kRobustListWalkLimit entries; the node
    // locked last is found first).
    bool contains(const void* node) const noexcept {
        const auto wanted = reinterpret_cast<std::uintptr_t>(node);
        const auto head_address = reinterpret_cast<std::uintptr_t>(&head_->list);
        std::uintptr_t entry = reinterpret_cast<std::uintptr_t>(head_->list.next) & ~kRobustPiBit;
        for (int walked = 0; entry != head_address && entry != 0 && walked < kRobustListWalkLimit; ++walked) {
            if (entry == wanted) return true;
            entry = read_robust_link(entry) & ~kRobustPiBit;
        }
        return false;
    }

    // Before memory [begin, end) is unmapped: unlinks every entry whose node, prev word and futex word lie
    // there, and gives up each lock this thread holds among them exactly as the kernel does at the thread's
    // death (the word becomes FUTEX_OWNER_DIED with FUTEX_WAITERS kept, and one waiter is woken when that
    // bit was set), so the next owner is told OwnerDied; drops list_op_pending if it points there. Without
    // this a handle destroyed while its thread holds the lock (an exception unwinding past a held Lock)
    // leaves the list running through unmapped memory: the next link() faults, and the kernel's walk at
    // exit stops there, leaving this thread's later entries unreleased. Other threads' lists are theirs.
    void abandon_entries_in(std::uintptr_t begin, std::uintptr_t end) noexcept;

    // Called once per thread (and again in a fork child) by this_thread_robust_list().
    void initialise();
    bool initialised() const noexcept { return head_ != nullptr; }
    void forget() noexcept {
        head_ = nullptr;
        tid_ = 0;
        slot_holds_ = 0;  // a fork child holds none of its parent's slots (their claims name the parent)
    }

    // MPMC slot holds (MpmcReservation, MpmcLease) this thread has outstanding: each is covered by
    // list_op_pending alone, so while one is held the thread must not set list_op_pending for anything else.
    std::uint32_t slot_holds() const noexcept { return slot_holds_; }
    void add_slot_hold() noexcept { ++slot_holds_; }
    void remove_slot_hold() noexcept { --slot_holds_; }

private:
    robust_list_head* head_ = nullptr;
    std::uint32_t tid_ = 0;
    std::uint32_t slot_holds_ = 0;
};

// The calling thread's state. initial-exec: one %fs-relative load instead of a __tls_get_addr call on
// every lock operation; the 24 bytes come from the static TLS block (or glibc's surplus for a dlopen()ed
// libmproc). constinit: no per-access initialisation guard.
extern thread_local constinit ThisThreadRobustList this_thread_robust_list_state
    [[gnu::tls_model("initial-exec")]];

// The calling thread's list. Throws mproc::Error on first use in a thread if the registered list's
// futex_offset is not kRobustFutexOffset (a C library other than glibc), SystemError if the system
// calls fail.
inline ThisThreadRobustList& this_thread_robust_list() {
    ThisThreadRobustList& list = this_thread_robust_list_state;
    if (!list.initialised()) [[unlikely]] list.initialise();
    return list;
}

}  // namespace mproc::detail
