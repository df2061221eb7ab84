/*
 * queue-eventcount.pml -- the eventcount the rings block on (src/eventcount.hpp), with the waiter's death.
 *
 * Mirrors src/eventcount.hpp:
 *   prepare_wait          E3 key = epoch (acquire), then E1 exchange(waiters, 1) (acq_rel): the order of
 *                         prepare_wait_without_barrier, modelled with EPOCH_FIRST; without it the model
 *                         keeps the first version's E1 before E3 as the seeded bug bug_key_after_flag
 *   wait_for_notification E4 FUTEX_WAIT(epoch, key), no deadline (the rings' blocking put/get)
 *   notify                N2 exchange(waiters, 0); if it was 1: N3 epoch += 1; N4 FUTEX_WAKE all
 *                         (FENCE_FREE_NOTIFY: N2 a plain load; only a 1 leads to N2' exchange, N3, N4)
 *   barrier_registered_notifiers  E2 membarrier(GLOBAL_EXPEDITED), after E1 (FENCE_FREE_NOTIFY)
 *   await_condition       test; loop { E3, E1[, E2]; test; E4; test }  (the spin phase is one more test)
 * The condition is "the notifier made at least r + 1 items" for the waiter's round r: the notifier's
 * release store that publishes (an SPSC slot's sequence word, an MPMC position or sequence), here the
 * increment of `items`, made before notify().
 * Each C++ atomic operation is one Promela step; Promela is sequentially consistent, and the orderings
 * the comments of eventcount.hpp claim (E1/N2 RMWs of one word, N3 release / E3 acquire) are what makes
 * the C++ behave like this model.  A missing ordering is a seeded bug that moves a step.
 *
 * Processes: one notifier (ROUNDS items, each followed by notify()), one waiter role that awaits each
 * item in turn.  With WAITER_DIES the waiter may be killed at any step, asleep included (the kernel
 * takes it off the wait queue; the flag it set stays set); a replacement waiter then takes over the
 * same round, as a restarted consumer would, and must not lose a wake-up to the stale flag.
 *
 * The epoch read (E3) and why it comes first
 *   src/eventcount.hpp reads the epoch before it raises the flag (prepare_wait_without_barrier: E3 acquire
 *   load, then E1 exchange), modelled by EPOCH_FIRST, which every good check and every other seeded bug
 *   define.  The first version of the code raised the flag first (E1 then E3); the model keeps that order
 *   when EPOCH_FIRST is not defined, and check bug_key_after_flag shows the wake-up it loses.  The waiter's
 *   wait for item 1 sets the flag and finds item 1 before
 *   the notifier's notify() for it runs.  The waiter's wait for item 2 does E1 (flag 1); the late
 *   notify() for item 1 now takes that flag (N2) and bumps the epoch (N3) before the waiter's E3, so
 *   the key already includes the bump; the re-test finds no item 2; N4 wakes nobody.  The notifier
 *   makes item 2; its N2 reads flag 0 and does not wake; the waiter sleeps on an epoch that no longer
 *   moves, with item 2 ready.  The eventcount.hpp argument "N3 before E3: the re-test sees the store N3
 *   was released after" is true, but that store is item 1's, not the one the waiter waits for.
 *   The code's order, E3 (acquire) before E1 (EPOCH_FIRST), is the fix.  A notify() whose N2 reads this wait's flag then
 *   bumps the epoch after the key was read, so E4 returns at once (or N4 wakes it); one whose N2 comes
 *   before E1 is read by E1, whose acquire makes the re-test see its store.
 *
 * The fence-free notify (FENCE_FREE_NOTIFY)
 *   A registered process's notify() reads the flag with a plain load and no fence, so the CPU may run
 *   that load before the release store that made the condition true is visible (store buffering: the
 *   one reordering x86 allows, and the one that matters here).  The model gives the notifier a store
 *   buffer: its store of the condition goes to `buffered`, and the drain process moves it to memory
 *   (`items`) at any later moment; the notifier's loads do not wait for it.  A locked RMW (N2' and the
 *   exchange path) drains the buffer first, as on the hardware.  The waiter's E2 is membarrier(): every
 *   registered thread executes a full barrier before it returns, modelled as draining the notifier's
 *   buffer in one step.  Without E2 (BUG_NO_WAITER_BARRIER) the buffered store is invisible to the
 *   waiter's re-test while the notifier's load already read the flag as 0: a lost wake-up.
 *
 * Properties
 *   (a) progress.ltl, pan -a -f: the notifier finishes and the waiter role receives every round -- no
 *       lost wake-up, with or without the waiter's death (weak fairness: a runnable process runs).
 *   (b) assertions: the waiter returns from a wait only when its condition holds.
 *
 * Configuration
 *   EPOCH_FIRST             the code's order E3, E1 (every good check and every seeded bug but
 *                           bug_key_after_flag use it)
 *   No safety net to switch off: the waiter's sleeps are unbounded (no re-check timer) and nothing but the
 *   notifier's notify() wakes it, so every progress check here is already "without the safety net".
 *   WAITER_DIES             the waiter may die at any step; a replacement takes over its round
 *   ROUNDS                  items made and awaited (default 2; the lost wake-up needs 2)
 *   FUTEX_SPURIOUS_WAKEUPS  futex waits may return early (see ../common/futex.pml)
 *   FENCE_FREE_NOTIFY       the registered notifier's plain-load N2 and the waiter's E2 (above)
 *
 * Seeded bugs (each must be rejected)
 *   BUG_FLAG_CHECK_BEFORE_STORE  notify() takes the flag before the store that made the condition true
 *                                (what a relaxed N2, or a plain load, allows): the waiter sets the flag
 *                                after the check, re-tests before the store and sleeps; nobody wakes it
 *                                                                                          -> (a)
 *   BUG_KEY_AFTER_TEST           the waiter reads the epoch after its re-test (E3 after the test): a
 *                                notify in between bumps the epoch, and E4 sleeps on the new value -> (a)
 *   BUG_WAKE_WITHOUT_EPOCH       notify() wakes without bumping the epoch (no N3): a waiter between E3
 *                                and E4 sleeps on an unchanged epoch after the wake             -> (a)
 *   BUG_NO_WAITER_BARRIER        (with FENCE_FREE_NOTIFY) the waiter does not issue E2: the notifier's
 *                                load passes its buffered store and both miss each other        -> (a)
 */

#include "../common/futex.pml"

#ifndef ROUNDS
#define ROUNDS 2
#endif

int epoch = 0;               /* the futex word */
bit waiters = 0;             /* the sleeper flag */
FUTEX_QUEUE(sleepers);
byte items = 0;              /* the condition's data: made by the notifier before each notify() */
byte buffered = 0;           /* FENCE_FREE_NOTIFY: stores of `items` still in the notifier's store buffer */

byte rounds_received = 0;    /* rounds the waiter role saw its condition hold */
bool notifier_done = false;
byte deaths = 0;

#ifdef WAITER_DIES
#define may_die  if :: deaths == 0 -> goto died :: skip fi
#else
#define may_die  skip
#endif
#define ready    (items > round)

/* A locked RMW, or a full barrier in the notifier's thread: its store buffer reaches memory first. */
#define drain_store_buffer  items = items + buffered; buffered = 0

inline notify()
{
#ifdef FENCE_FREE_NOTIFY
    flag = waiters;                                         /* N2: a plain load, no fence */
    if
    :: flag == 1 -> atomic { drain_store_buffer; flag = waiters; waiters = 0 }   /* N2' */
    :: else -> skip
    fi;
#else
    atomic { flag = waiters; waiters = 0 };                 /* N2 */
#endif
    if
    :: flag == 1 ->
#ifndef BUG_WAKE_WITHOUT_EPOCH
        epoch++;                                            /* N3 */
#endif
        futex_wake_all(sleepers)                            /* N4 */
    :: else -> skip
    fi;
    flag = 0
}

active proctype notifier()
{
    bit flag = 0;
    byte made = 0;
    do
    :: made == ROUNDS -> break
    :: made < ROUNDS ->
#ifdef BUG_FLAG_CHECK_BEFORE_STORE
        atomic { flag = waiters; waiters = 0 };             /* N2 before the store */
        items++;
        if
        :: flag == 1 -> epoch++; futex_wake_all(sleepers)
        :: else -> skip
        fi;
        flag = 0;
#else
#ifdef FENCE_FREE_NOTIFY
        buffered++;                                         /* N1 enters the store buffer */
#else
        items++;                                            /* the release store of the condition */
#endif
        notify();
#endif
        made++
    od;
    notifier_done = true
}

active proctype waiter()
{
    byte round = 0;
    int key = 0;
    byte ret = 0;

restart:
    do
    :: round == ROUNDS -> break
    :: round < ROUNDS ->
        if
        :: ready -> skip                                    /* the spin phase found it */
        :: else ->
            may_die;
            do
            :: true ->
#if defined(EPOCH_FIRST) && !defined(BUG_KEY_AFTER_TEST)
                key = epoch;                                /* E3, moved before E1 (the fix) */
                may_die;
                waiters = 1;                                /* E1 */
                may_die;
#if defined(FENCE_FREE_NOTIFY) && !defined(BUG_NO_WAITER_BARRIER)
                atomic { drain_store_buffer };              /* E2: membarrier() */
                may_die;
#endif
                if :: ready -> break :: else -> skip fi;
#elif !defined(BUG_KEY_AFTER_TEST)
                waiters = 1;                                /* E1 */
                may_die;
                key = epoch;                                /* E3 */
                may_die;
                if :: ready -> break :: else -> skip fi;
#else
                waiters = 1;                                /* E1 */
                may_die;
                if :: ready -> break :: else -> skip fi;
                may_die;
                key = epoch;                                /* E3 after the re-test */
#endif
                may_die;
                futex_wait(epoch, key, sleepers, FUTEX_UNTIMED, ret);   /* E4 */
                ret = 0;
                may_die;
                if :: ready -> break :: else -> skip fi;
                may_die
            od
        fi;
        assert(ready);
        key = 0;
        rounds_received++;
        round++
    od;
    goto end;
died:
    /* SIGKILL: the kernel takes the sleeper off the queue; the flag stays as it was.  A replacement
     * waiter takes over the round the dead one was waiting for. */
    atomic {
        sleepers = sleepers & ~futex_self;
        deaths++;
        key = 0;
        ret = 0
    };
    goto restart;
end:
    skip
}

#ifdef FENCE_FREE_NOTIFY
/* The notifier's store buffer empties into memory by itself, at any moment (weak fairness: eventually). */
active proctype store_buffer()
{
end_drain:
    do
    :: atomic { buffered > 0 -> items++; buffered-- }
    od
}
#endif

#include "progress.ltl"
