/*
 * condition.pml -- the waiter-slot protocol of mproc::Condition, with waiter death.
 *
 * Mirrors src/condition.cpp:
 *   condition_wait         (proctype waiter): claim_slot, LockAccess::release_fully,
 *                          sleep_until_notified, LockAccess::reacquire, free_slot
 *   condition_notify       (inline notify): reclaim_dead_waiters, notify_oldest, notify_slot
 * and the kernel's handle_futex_death for a slot in a dead waiter's robust list (inline waiter_dies).
 *
 * Algorithm (slot word: 0 free | tid waiting | tid|N notified | D[|N] dead; N = FUTEX_WAITERS,
 * D = FUTEX_OWNER_DIED)
 *   wait:    [lock] word = tid; ticket = next++; [unlock]
 *            while word == tid: futex_wait(word, tid)      (a timed waiter may give up)
 *            [lock] notified = word & N; word = 0; [unlock]; return notified
 *   notify(n): [lock] for every dead slot: if N: redeliver++; word = 0
 *            mark the (n + redeliver) oldest slots with word == tid: CAS tid -> tid|N; FUTEX_WAKE 1
 *   kernel, at a waiter's death inside wait (outside the lock): word = (word & N) | D (TID cleared)
 * The lock is an ideal mutex here (verify/lock proves the robust Lock); deaths of lock holders are the
 * lock's OwnerDied story and are not injected.
 *
 * Processes: WAITERS waiters (default 2), each waiting once; waiter 0 is the victim when VICTIM is
 * defined and may die at any step between releasing the lock and re-acquiring it. One notifier.
 *
 * Checks
 *   safety (SAFETY_MODEL, timed waiters that may give up at any time, spurious futex returns): the
 *     notifier calls notify(1), then notify_all(). Assertions: (a) a notify(n) marks at most n slots,
 *     each held by a waiter that was waiting (had claimed its slot) when notify was called; (b) at the
 *     end, every mark was reported by exactly one wait() returning true (no notify is consumed by a
 *     waiter that reports a timeout, none is invented).
 *   liveness (progress.ltl): untimed waiters; the notifier calls notify(1) once all waited, and once
 *     more notify(0) after the victim died (the next operation of a real program). Property: some wait() returns
 *     true -- the notify is not lost (no lost wake-up), and a notified waiter that dies does not swallow
 *     it: it is re-delivered to the live waiter at the next operation.
 *
 * Seeded bugs (each must be rejected)
 *   BUG_SLEEP_UNCHECKED       the waiter sleeps on its earlier load, without the kernel's value check:
 *                             a notify between the load and the sleep is lost                -> liveness
 *   BUG_TIMEOUT_IGNORES_MARK  a waiter that timed out returns false without reading its mark  -> (b)
 *   BUG_NOTIFY_ONE_EXTRA      notify(n) marks n + 1 waiters                                  -> (a)
 *   BUG_NO_REDELIVER          a dead waiter's notify is dropped when its slot is reclaimed    -> liveness
 *   BUG_NOTIFY_NEWCOMER       a waiter that claims its slot after notify(1) began (the claim moved
 *                             outside the lock) can be marked by it                          -> (a)
 */

#include "../common/futex.pml"

#ifndef WAITERS
#define WAITERS 2
#endif

/* Safety: a sleeper's deadline may pass at any time.  Liveness: untimed waits. */
#ifdef SAFETY_MODEL
#define SLEEP_TIMING FUTEX_TIMED
#else
#define SLEEP_TIMING FUTEX_UNTIMED
#endif

#define N_BIT   8
#define D_BIT   16
#define TID(i)  ((i) + 1)

byte lock_owner = 0;             /* 0 free, else _pid + 1 */
byte word[WAITERS];              /* slot words */
byte ticket[WAITERS];
byte next_ticket = 0;
FUTEX_QUEUE(q0);
FUTEX_QUEUE(q1);
#if WAITERS > 2
FUTEX_QUEUE(q2);
#endif

/* Ghost state for the properties. */
byte claimed = 0;                /* slots claimed so far (waiters inside wait) */
byte marks = 0;                  /* marks made on live waiters' slots */
byte true_returns = 0;
byte finished = 0;
byte dead = 0;
bool claimed_before[WAITERS];    /* slot claimed when the current notify began */


inline lock() { atomic { lock_owner == 0 -> lock_owner = _pid + 1 } }
inline unlock() { assert(lock_owner == _pid + 1); lock_owner = 0 }

inline wake_slot(i)
{
    if
    :: i == 0 -> futex_wake(q0, 1, woken)
    :: i == 1 -> futex_wake(q1, 1, woken)
#if WAITERS > 2
    :: i == 2 -> futex_wake(q2, 1, woken)
#endif
    fi
}

/* notify(n): under the lock. */
inline notify(n)
{
    lock();
    /* reclaim_dead_waiters */
    redeliver = 0;
    k = 0;
    do
    :: k < WAITERS ->
        if
        :: (word[k] & D_BIT) != 0 ->
#ifndef BUG_NO_REDELIVER
            if :: (word[k] & N_BIT) != 0 -> redeliver++ :: else -> skip fi;
#endif
            word[k] = 0
        :: else -> skip
        fi;
        claimed_before[k] = (word[k] != 0);
        k++
    :: else -> k = 0; break
    od;
    /* notify_oldest: (n + redeliver) times, the live un-notified slot with the oldest ticket */
    want = n + redeliver;
#ifdef BUG_NOTIFY_ONE_EXTRA
    want = want + 1;
#endif
    marked_now = 0;
    do
    :: marked_now < want ->
        best = WAITERS;
        k = 0;
        do
        :: k < WAITERS ->
            if
            :: word[k] == TID(k) && (best == WAITERS || ticket[k] < ticket[best]) -> best = k
            :: else -> skip
            fi;
            k++
        :: else -> k = 0; break
        od;
        if
        :: best == WAITERS -> break
        :: else ->
            atomic {
                if
                :: word[best] == TID(best) ->   /* CAS tid -> tid|N; fails when the kernel marked D */
                    word[best] = word[best] | N_BIT;
                    assert(claimed_before[best]);
                    marks++; marked_now++
                :: else -> skip
                fi
            };
            wake_slot(best)
        fi
    :: else -> break
    od;
    assert(marked_now <= n + redeliver);
    best = 0;
    unlock()
}

inline waiter_dies(i)
{
    /* the kernel walks the dead thread's robust list: TID matches, so mark it and wake one if N */
    atomic {
        if
        :: (word[i] & 7) == TID(i) ->
            if :: (word[i] & N_BIT) != 0 -> marks-- :: else -> skip fi;  /* a mark no live waiter holds */
            word[i] = (word[i] & N_BIT) | D_BIT
        :: else -> skip
        fi;
        dead++
    };
    goto died
}

#ifdef VICTIM
#define MAY_DIE(i)  if :: i == 0 -> waiter_dies(i) :: true -> skip fi
#else
#define MAY_DIE(i)  skip
#endif

proctype waiter(byte i)
{
    byte ret = 0;
    bool notified = false;
    bool gave_up = false;

#ifdef BUG_NOTIFY_NEWCOMER
    word[i] = TID(i);                    /* the claim made outside the lock */
    lock();
#else
    lock();
    word[i] = TID(i);
#endif
    ticket[i] = next_ticket; next_ticket++;
    claimed++;
    unlock();
    MAY_DIE(i);
    /* sleep_until_notified */
    do
    :: word[i] != TID(i) -> break
    :: else ->
        MAY_DIE(i);
#ifdef SAFETY_MODEL
        if
        :: true -> skip
        :: true -> gave_up = true; break           /* the deadline passed */
        fi;
#endif
#ifdef BUG_SLEEP_UNCHECKED
        if
        :: i == 0 -> futex_sleep_unchecked(q0, SLEEP_TIMING, ret)
        :: i == 1 -> futex_sleep_unchecked(q1, SLEEP_TIMING, ret)
#if WAITERS > 2
        :: i == 2 -> futex_sleep_unchecked(q2, SLEEP_TIMING, ret)
#endif
        fi
#else
        if
        :: i == 0 -> futex_wait(word[0], TID(0), q0, SLEEP_TIMING, ret)
        :: i == 1 -> futex_wait(word[1], TID(1), q1, SLEEP_TIMING, ret)
#if WAITERS > 2
        :: i == 2 -> futex_wait(word[2], TID(2), q2, SLEEP_TIMING, ret)
#endif
        fi
#endif
    od;
    MAY_DIE(i);
    lock();
    /* free_slot */
    notified = (word[i] & N_BIT) != 0;
#ifdef BUG_TIMEOUT_IGNORES_MARK
    if :: gave_up -> notified = false :: else -> skip fi;
#endif
    word[i] = 0;
    if :: notified -> true_returns++ :: else -> skip fi;
    finished++;
    unlock();
died:
    skip
}

proctype notifier()
{
    byte k = 0, best = 0, want = 0, marked_now = 0, redeliver = 0, woken = 0;
#ifdef SAFETY_MODEL
    notify(1);
    notify(WAITERS);                 /* notify_all */
    (finished + dead == WAITERS);
    assert(marks == true_returns)
#else
    (claimed == WAITERS);
    notify(1);
    /* A later operation on the condition, once a waiter died (the next notify of a real program). */
    (true_returns > 0 || dead > 0);
    if
    :: dead > 0 -> notify(0)
    :: else -> skip
    fi
#endif
}

init
{
    atomic {
        byte i = 0;
        do
        :: i < WAITERS -> run waiter(i); i++
        :: else -> break
        od;
        run notifier()
    }
}

#ifndef SAFETY_MODEL
#include "progress.ltl"
#endif
