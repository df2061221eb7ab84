/*
 * futex.pml -- the Linux futex(2) system call, modelled once for every mproc model.
 *
 * Mirrors what src/futex.hpp relies on from the kernel:
 *   FUTEX_WAIT(uaddr, expected, timeout): under the futex hash-bucket lock, compare *uaddr with
 *       expected; if they differ return EAGAIN at once, otherwise join the word's wait queue and sleep
 *       until a FUTEX_WAKE removes us (return 0), the timeout expires (ETIMEDOUT) or, if the model
 *       allows it, a signal interrupts the sleep (EINTR).
 *   FUTEX_WAKE(uaddr, n): remove up to n waiters from the word's wait queue and make them runnable;
 *       return how many were woken.  Callers may not rely on which waiters are chosen.
 *
 * Modelling choices
 *   - The wait queue of one futex word is a bit set of the waiting processes' _pid (FUTEX_QUEUE);
 *     each model declares one queue per futex word it waits on, beside the word itself.
 *   - Comparing the word and joining the queue is one atomic step: that is the kernel's guarantee that
 *     closes the window between a caller's last load and its sleep, so a wake that follows a store to
 *     the word can never be missed.  futex_sleep_unchecked() drops exactly that step, for seeded bugs.
 *   - A timeout is a nondeterministic wake-up: a timed sleeper may give up at any moment while it is
 *     still queued.  The caller decides what the expiry means (usually: its deadline has passed).
 *   - Being woken and timing out exclude each other: both need the sleeper to still be queued, as in
 *     the kernel, where a waiter already unqueued by a wake returns 0 even if its timer also fired.
 *   - Spurious returns (EINTR from a signal) are enabled by #define FUTEX_SPURIOUS_WAKEUPS; every
 *     caller must treat any return as "look again", and a safety check should enable them.  Liveness
 *     checks usually leave them off, since a signal storm can starve any loop.
 *   - Memory is sequentially consistent in Promela.  The release store that precedes a wake and the
 *     acquire load that follows a wait are assumed correct in C++; a missing ordering is modelled by a
 *     seeded bug that moves the store, not by weakening memory.
 *
 * Interface (all inline, usable from any proctype; _pid must be below FUTEX_MAX_WAITERS)
 *   FUTEX_QUEUE(name)                              declare the wait queue of one futex word
 *   futex_wait(word, expected, queue, timed, ret)  ret := FUTEX_WOKEN | FUTEX_EAGAIN |
 *                                                         FUTEX_ETIMEDOUT | FUTEX_EINTR
 *   futex_sleep_unchecked(queue, timed, ret)       a sleep without the value check (bugs only)
 *   futex_wake(queue, n, woken)                    wake up to n waiters, any of them; woken := count
 *   futex_wake_all(queue)                          wake every waiter (FUTEX_WAKE with INT_MAX)
 */

#ifndef MPROC_VERIFY_FUTEX_PML
#define MPROC_VERIFY_FUTEX_PML

#ifndef FUTEX_MAX_WAITERS
#define FUTEX_MAX_WAITERS 16
#endif

#define FUTEX_WOKEN      0
#define FUTEX_EAGAIN     1
#define FUTEX_ETIMEDOUT  2
#define FUTEX_EINTR      3
#define FUTEX_SLEEPING   4    /* internal: between joining the queue and returning */

#define FUTEX_TIMED      true
#define FUTEX_UNTIMED    false

#define FUTEX_QUEUE(name)  int name = 0
#define futex_self         (1 << _pid)
#define futex_queued(queue) ((queue & futex_self) != 0)

/* Scratch index for the wake loops; always 0 outside an atomic step, so it never splits states. */
byte futex_scan = 0;

inline futex_sleep_(queue, timed, ret)
{
    /* Asleep: runnable again only once a waker has taken us off the queue, or by giving up. */
    if
    :: !futex_queued(queue) -> ret = FUTEX_WOKEN
    :: atomic { timed && futex_queued(queue) -> queue = queue & ~futex_self; ret = FUTEX_ETIMEDOUT }
#ifdef FUTEX_SPURIOUS_WAKEUPS
    :: atomic { futex_queued(queue) -> queue = queue & ~futex_self; ret = FUTEX_EINTR }
#endif
    fi
}

inline futex_wait(word, expected, queue, timed, ret)
{
    atomic {
        assert(_pid < FUTEX_MAX_WAITERS);
        if
        :: word == expected -> queue = queue | futex_self; ret = FUTEX_SLEEPING
        :: else -> ret = FUTEX_EAGAIN
        fi
    };
    if
    :: ret == FUTEX_SLEEPING -> futex_sleep_(queue, timed, ret)
    :: else -> skip
    fi
}

inline futex_sleep_unchecked(queue, timed, ret)
{
    /* The caller decided to sleep from an earlier load; nothing re-checks the word before sleeping. */
    atomic { assert(_pid < FUTEX_MAX_WAITERS); queue = queue | futex_self };
    futex_sleep_(queue, timed, ret)
}

inline futex_wake(queue, n, woken)
{
    atomic {
        woken = 0;
        futex_scan = 0;
        do
        :: woken == n || queue == 0 -> break
        :: else ->
            /* Pick any queued waiter: skip ahead only while another one is queued further on. */
            do
            :: (queue & (1 << futex_scan)) != 0 ->
                queue = queue & ~(1 << futex_scan);
                woken++;
                break
            :: (queue >> (futex_scan + 1)) != 0 -> futex_scan++
            od;
            futex_scan = 0
        od
    }
}

inline futex_wake_all(queue)
{
    queue = 0
}

#endif /* MPROC_VERIFY_FUTEX_PML */
