/*
 * barrier.pml -- mproc::Barrier: Python's barrier state machine under the internal lock, and the
 * robust participant slots through which the kernel pushes a participant's death to the sleepers.
 *
 * Mirrors src/barrier.cpp:
 *   barrier_wait            (proctype participant)
 *   wait_for_change, sleep_on_state_and_slots (futex_waitv on `state` and every slot word), any_slot_dead
 *   reap_dead_participants, break_barrier, set_phase, release_generation, leave, try_claim_slot,
 *   lock_internal with a bound and abandon_slot (inline abandon: a timed wait() that cannot re-take the
 *   internal lock by its deadline plus the grace gives its slot up as a dead participant would)
 * and the kernel's handle_futex_death for a slot in a dead participant's robust list (inline dies).
 *
 * Algorithm
 *   wait:  [lock] reap; claim slot (word = TID|WAITERS)
 *          while phase is not (filling with count < parties): broken -> leave, BrokenBarrier;
 *                                                              else wait_for_change
 *          index = count++; entered = counted
 *          last: (the action may throw -> break) else release_generation: every counted slot
 *                entered = released; phase = draining
 *          other: until entered == released (return index) or phase broken/resetting (BrokenBarrier):
 *                 a timed participant whose deadline passed in filling breaks; else wait_for_change
 *          leave: count--, entered = 0; count == 0 in draining/resetting -> filling; free the slot
 *   wait_for_change: seen = state; [unlock]; load every slot word; unless one is dead:
 *          futex_waitv(state == seen, every slot word == the value loaded); [lock]; reap
 *   reap:  a dead slot (OWNER_DIED) is uncounted and freed, and the barrier breaks (wake all)
 *   every phase change bumps a change counter in `state` and wakes all sleepers
 *   kernel at a participant's death: its slot word (TID|WAITERS) becomes OWNER_DIED|WAITERS and one
 *          sleeper queued on that word is woken (all sleepers are queued on every slot word)
 * The internal lock is an ideal mutex here (verify/lock proves the robust Lock); a death while holding
 * it (lock_internal's repair) is not injected. With LOCK_TIMEOUTS, a participant that returns from a sleep
 * may fail to re-take the lock in time (in the code: the holder is stopped, or the word names no thread):
 * it then marks its own slot dead, wakes every sleeper and leaves (ghost: counted in `dead`, since it
 * left as a dead participant would). The action runs atomically under the lock here; the code's rule
 * that a timeout also holds while the action runs (lock released) is the filling-phase timeout below.
 *
 * Processes: PARTICIPANTS (= parties, 3) participants, ROUNDS waits each (default 1; 2 in one check).
 * With VICTIM, participant 0 may die at any step inside wait() outside the internal lock, asleep included.
 * With TIMEOUTS, every participant's deadline may pass at any time. With ABSENT, parties is one more than
 * the participants: the others wait for a party that never comes, so only the victim's death (pushed
 * by the kernel) can end their wait.
 *
 * Properties
 *   (a) safety (assertions): within a generation, arrival indices are distinct and below parties; a
 *       participant returns its index only if its generation was released, and every participant of a
 *       released generation returns its index (never BrokenBarrier); a generation is released only when
 *       all parties arrived.
 *   (b) liveness (progress.ltl): every participant that does not die leaves each of its wait() calls,
 *       released or with BrokenBarrier -- also when another participant dies inside wait() (`leaves`);
 *       with ABSENT, once the victim died every live participant leaves (`leaves_after_death`).
 *
 * Seeded bugs (each must be rejected)
 *   BUG_SLEEP_ON_STATE_ONLY  sleepers wait on `state` alone (FUTEX_WAIT), not on the slot words: the
 *                            kernel's wake at a death finds nobody                            -> (b)
 *   BUG_NO_DEATH_CHECK       the woken sleeper does not reap dead slots                         -> (b)
 *   BUG_DRAIN_BROKEN         a released participant looks at the phase before its slot's mark
 *                            (Python's race): an abort during draining makes it BrokenBarrier -> (a)
 *   BUG_NO_DRAIN             arrivals enter while the previous generation drains              -> (a)
 *   BUG_SLEEP_ON_DEAD_VALUE  the dead check before sleeping is made apart from loading the expected values
 *                            (the first version of sleep_on_state_and_slots): a death in between
 *                            arms the sleep with the dead value, after the kernel's one wake  -> (b)
 *   BUG_ABANDON_WITHOUT_MARK a participant whose re-lock timed out leaves without marking its slot: it
 *                            stays counted, and the others wait for ever                      -> (b)
 *   BUG_ABANDON_WITHOUT_WAKE it marks its slot but wakes nobody: the sleepers, queued on the old value,
 *                            are never told                                                  -> (b)
 */

#include "../common/futex.pml"

#ifndef PARTICIPANTS
#define PARTICIPANTS 3
#endif
#ifdef ABSENT
#define PARTIES (PARTICIPANTS + 1)   /* one party never arrives: only a death can end the wait */
#else
#define PARTIES PARTICIPANTS
#endif
#ifndef ROUNDS
#define ROUNDS 1
#endif
#define MAX_GENERATIONS (ROUNDS + 1)

#define FILLING   0
#define ACTION    1
#define DRAINING  2
#define RESETTING 3
#define BROKEN    4

#define FREE      0
#define ALIVE     1   /* TID | WAITERS */
#define DEAD      2   /* OWNER_DIED | WAITERS */

#define NOT_COUNTED 0
#define COUNTED     1
#define RELEASED    2

byte lock_owner = 0;
byte phase = FILLING;
byte changes = 0;                 /* the change counter of `state`, modulo 4 */
byte count = 0;
byte slot[PARTICIPANTS];
byte entered[PARTICIPANTS];
FUTEX_QUEUE(sleepers);            /* queued on `state` and on every slot word (futex_waitv) */
#ifdef BUG_SLEEP_ON_STATE_ONLY
FUTEX_QUEUE(state_sleepers);      /* queued on `state` only */
#endif

/* Ghost state */
byte generation = 0;              /* generations released so far */
byte indices_used[MAX_GENERATIONS];
bool released[MAX_GENERATIONS];
byte done = 0;
byte dead = 0;
bool aborter_done = false;

#define state_value (phase + 8 * changes)

inline lock() { atomic { lock_owner == 0 -> lock_owner = _pid + 1 } }
inline unlock() { assert(lock_owner == _pid + 1); lock_owner = 0 }

inline set_phase(p)
{
    phase = p;
    changes = (changes + 1) % 4;
    futex_wake_all(sleepers);
#ifdef BUG_SLEEP_ON_STATE_ONLY
    futex_wake_all(state_sleepers)
#endif
}

inline break_barrier() { if :: phase != BROKEN -> set_phase(BROKEN) :: else -> skip fi }

inline reap()
{
#ifndef BUG_NO_DEATH_CHECK
    k = 0;
    do
    :: k < PARTICIPANTS ->
        if
        :: slot[k] == DEAD ->
            if :: entered[k] != NOT_COUNTED -> entered[k] = NOT_COUNTED; count-- :: else -> skip fi;
            slot[k] = FREE;
            someone_died = true
        :: else -> skip
        fi;
        k++
    :: else -> k = 0; break
    od;
    if :: someone_died -> someone_died = false; break_barrier() :: else -> skip fi
#else
    skip
#endif
}

#if defined(VICTIM)
#define VICTIM_SLEEP (i == 0 && in_wait)
#elif defined(LOCK_TIMEOUTS)
#define VICTIM_SLEEP (i == 0)   /* participant 0 sleeps timed: it may wake to a lock it cannot take in time */
#else
#define VICTIM_SLEEP FUTEX_UNTIMED
#endif

inline dies()
{
    atomic {
        if
        :: slot[i] == ALIVE ->
            slot[i] = DEAD;
            futex_wake(sleepers, 1, woken)     /* WAITERS was set: the kernel wakes one */
        :: else -> skip
        fi;
        dead++;
        if :: lock_owner == _pid + 1 -> lock_owner = 0 :: else -> skip fi
    };
    goto finished
}

#ifdef VICTIM
#define MAY_DIE  if :: i == 0 && in_wait -> dies() :: true -> skip fi
#else
#define MAY_DIE  skip
#endif

/* abandon_slot, then throw: the slot word becomes OWNER_DIED | WAITERS by the participant's own hand */
inline abandon()
{
    atomic {
#ifndef BUG_ABANDON_WITHOUT_MARK
        slot[i] = DEAD;
#endif
#ifndef BUG_ABANDON_WITHOUT_WAKE
        futex_wake_all(sleepers);
#endif
        dead++
    };
    goto finished
}

inline wait_for_change()
{
    seen = state_value;
    unlock();
    MAY_DIE;
    /* the expected values: each word loaded once; one already dead means "go and reap", not sleep */
#ifdef BUG_SLEEP_ON_DEAD_VALUE
    if
    :: slot[0] != DEAD && slot[1] != DEAD && slot[2] != DEAD ->
        s0 = slot[0]; s1 = slot[1]; s2 = slot[2];
#else
    s0 = slot[0]; s1 = slot[1]; s2 = slot[2];
    if
    :: s0 != DEAD && s1 != DEAD && s2 != DEAD ->
#endif
        MAY_DIE;
#ifdef BUG_SLEEP_ON_STATE_ONLY
        futex_wait(phase + 8 * changes, seen, state_sleepers, VICTIM_SLEEP, ret)
#else
        atomic {
            assert(_pid < FUTEX_MAX_WAITERS);
            if
            :: state_value == seen && slot[0] == s0 && slot[1] == s1 && slot[2] == s2 ->
                sleepers = sleepers | futex_self; ret = FUTEX_SLEEPING
            :: else -> ret = FUTEX_EAGAIN
            fi
        };
        if
        :: ret == FUTEX_SLEEPING -> futex_sleep_(sleepers, VICTIM_SLEEP, ret)
        :: else -> skip
        fi;
#endif
        /* the victim's "timeout" is its death while asleep (SIGKILL of a sleeping process) */
#ifdef VICTIM
        if :: ret == FUTEX_ETIMEDOUT -> dies() :: else -> skip fi
#endif
    :: else -> skip
    fi;
    MAY_DIE;
#ifdef LOCK_TIMEOUTS
    if
    :: lock()
    :: slot[i] == ALIVE -> abandon()
    fi;
#else
    lock();
#endif
    reap()
}

#ifdef TIMEOUTS
#define DEADLINE_PASSED (true)
#else
#define DEADLINE_PASSED (false)
#endif

proctype participant(byte i)
{
    byte k = 0, seen = 0, s0 = 0, s1 = 0, s2 = 0, ret = 0, woken = 0, index = 0, my_generation = 0, round = 0;
    bool someone_died = false, broken_out = false, in_wait = false;

    do
    :: round < ROUNDS ->
        broken_out = false;
        lock();
        in_wait = true;
        reap();
        slot[i] = ALIVE;
        /* entry */
        do
        :: phase == BROKEN -> broken_out = true; break
#ifdef BUG_NO_DRAIN
        :: (phase == FILLING || phase == DRAINING) && count < PARTIES -> break
        :: !((phase == FILLING || phase == DRAINING) && count < PARTIES) && phase != BROKEN -> wait_for_change()
#else
        :: phase == FILLING && count < PARTIES -> break
        :: !(phase == FILLING && count < PARTIES) && phase != BROKEN -> wait_for_change()
#endif
        od;
        if
        :: !broken_out ->
            index = count; count++;
            entered[i] = COUNTED;
            my_generation = generation;
            assert(index < PARTIES);
            assert((indices_used[my_generation] & (1 << index)) == 0);
            indices_used[my_generation] = indices_used[my_generation] | (1 << index);
            if
            :: index + 1 == PARTIES ->
                if
                :: true ->    /* the action succeeded (or there is none): release_generation */
                    assert(indices_used[my_generation] == (1 << PARTIES) - 1);
                    k = 0;
                    do
                    :: k < PARTICIPANTS ->
                        if :: entered[k] == COUNTED -> entered[k] = RELEASED :: else -> skip fi;
                        k++
                    :: else -> k = 0; break
                    od;
                    released[my_generation] = true;
                    generation++;
                    set_phase(DRAINING)
                :: true ->    /* the action threw */
                    break_barrier();
                    broken_out = true
                fi
            :: else ->
                do
#ifdef BUG_DRAIN_BROKEN
                :: phase == BROKEN || phase == RESETTING -> broken_out = true; break
                :: phase != BROKEN && phase != RESETTING && entered[i] == RELEASED -> break
#else
                :: entered[i] == RELEASED -> break
                :: entered[i] != RELEASED && (phase == BROKEN || phase == RESETTING) -> broken_out = true; break
#endif
                :: entered[i] != RELEASED && phase == FILLING && DEADLINE_PASSED ->
                    break_barrier(); broken_out = true; break
                :: entered[i] != RELEASED && phase != BROKEN && phase != RESETTING -> wait_for_change()
                od
            fi;
            /* (a): released exactly when the generation was released */
            assert(broken_out == !released[my_generation]);
        :: else -> skip
        fi;
        /* leave */
        if :: entered[i] != NOT_COUNTED -> entered[i] = NOT_COUNTED; count-- :: else -> skip fi;
        if :: count == 0 && (phase == DRAINING || phase == RESETTING) -> set_phase(FILLING) :: else -> skip fi;
        slot[i] = FREE;
        in_wait = false;
        unlock();
        round++
    :: else -> break
    od;
    done++;
finished:
    skip
}

/* abort() from outside, at any moment (ABORTER): Barrier::abort takes the lock and breaks. */
proctype aborter()
{
    byte k = 0, seen = 0, ret = 0, woken = 0;
    bool someone_died = false;
    lock();
    break_barrier();
    unlock();
    aborter_done = true
}

init
{
    atomic {
        byte n = 0;
        do
        :: n < PARTICIPANTS -> run participant(n); n++
        :: else -> break
        od;
#ifdef ABORTER
        run aborter()
#endif
    }
}

#include "progress.ltl"
