/*
 * lock.pml -- the robust futex lock protocol of mproc::Lock / mproc::RLock, with owner death.
 *
 * Mirrors src/lock.cpp:
 *   acquire_word, acquire_contended, finish_acquire   (inline acquire)
 *   release_word                                     (inline release)
 * and src/robust_list.cpp (set_pending, link, unlink, clear_pending: the flags pending[] and linked[]),
 * and the kernel's exit_robust_list / handle_futex_death (inline kernel_handles_death).
 *
 * Algorithm (word = owner | WAITERS | OWNER_DIED, owner = TID, 0 when free; sleepers = a count)
 *   acquire:  pending = node
 *             seen = word; if seen has no owner and no OWNER_DIED: CAS seen -> me | seen   fast path
 *             loop on seen:
 *               owner(seen) == 0: CAS seen -> me | (seen & WAITERS); success: OWNER_DIED in seen means
 *                                 the last owner died: report it (the caller repairs, make_consistent)
 *               owned:            sleepers++; if no WAITERS: CAS seen -> seen | WAITERS (failure: no
 *                                 sleep); futex_wait(word, seen | WAITERS); sleepers--; seen = word
 *             link; clear pending
 *   release:  pending = node; unlink
 *             fetch_and(word, WAITERS)                  free; WAITERS stays set for the kernel
 *             if sleepers > 0: futex_wake(1)
 *             clear pending
 *   kernel, at the death of thread t (atomic, as exit_robust_list runs after t stopped):
 *             for the lock if linked[t] or pending[t]:
 *               owner(word) == t: word = (word & WAITERS) | OWNER_DIED; wake 1 if WAITERS was set
 *               pending[t] and owner(word) == 0: wake 1          (Linux >= 6.2; 5.5: only if word == 0)
 *             a thread killed while asleep leaves the wait queue; its sleepers++ is never undone
 *   Not modelled: the spin before sleeping (repeated loads), timeouts of acquirers (a timed acquirer
 *   that gives up leaves at most a WAITERS bit, which a release clears), the unrecoverable state after
 *   a release without make_consistent (a plain store read by every acquirer), RLock's recursion count
 *   (owner-only), the list links themselves (tests/lock_test.cpp checks them against glibc's).
 *
 * Processes: THREADS workers (default 3), each taking and releasing the lock ROUNDS times (default 1).
 * The first VICTIMS of them (default 1) may die at every step of acquire and release, inside the
 * critical section, and while asleep in FUTEX_WAIT (modelled as a timed wait whose expiry is the death).
 *
 * Properties
 *   (a) safety, assertions: mutual exclusion -- no thread enters the critical section while another,
 *       live or dead, is inside it, unless the owner's death was reported to it and it repaired the
 *       data; an owner death is reported at most once per death.  With spurious futex returns.
 *   (b) liveness, progress.ltl: every worker that does not die finishes all its rounds (pan -a -f: weak
 *       fairness, as CAS retries need the scheduler to let the winner run).  This is "no lost wake-up"
 *       and "a crash at any step recovers": a death anywhere must not leave a survivor asleep for ever.
 *
 * Configuration
 *   KERNEL_5_5          the kernel wakes for a pending entry only when the whole word is 0 (Linux 5.5
 *                       to 6.1): a woken waiter that dies before taking an OWNER_DIED word strands the
 *                       others -- expected to fail (b); mproc documents Linux 6.2 for this case
 *   FUTEX_SPURIOUS_WAKEUPS  futex waits may return early (see ../common/futex.pml)
 *
 * Seeded bugs (each must be rejected)
 *   BUG_WAKE_BEFORE_RELEASE     release wakes, then frees the word: the woken waiter sleeps again   -> (b)
 *   BUG_NEVER_WAKE              release never wakes, even with WAITERS set                          -> (b)
 *   BUG_PENDING_AFTER_CAS       list_op_pending set only after the CAS: a death in between leaves
 *                               the word owned by a dead thread the kernel does not know about     -> (b)
 *   BUG_STALE_WAITERS_CLEAR     the usual design instead of the count: release wakes when WAITERS was
 *                               set and, when that wake found nobody, CASes WAITERS -> 0; another
 *                               owner may have taken and released the word in between, and the CAS
 *                               strips the bit from under new sleepers                             -> (b)
 *   BUG_COUNT_READ_BEFORE_RELEASE  release reads the count before freeing the word (the store-load
 *                               order reversed): a sleeper that announces itself in between sleeps on
 *                               the owned value and is never woken                                  -> (b)
 *   BUG_TAKE_DROPS_WAITERS      a thread takes the word as plain `me`, dropping WAITERS: the kernel
 *                               does not wake the sleepers when that owner dies                     -> (b)
 *   BUG_SILENT_OWNER_DEATH      an OWNER_DIED word is taken without reporting it                    -> (a)
 */

#include "../common/futex.pml"

#ifndef THREADS
#define THREADS 3
#endif
#ifndef VICTIMS
#define VICTIMS 1
#endif
#ifndef ROUNDS
#define ROUNDS 1
#endif

#define TID_MASK    7
#define WAITERS     8
#define OWNER_DIED  16
#define tid_of(w)   ((w) & TID_MASK)

int word = 0;                  /* the futex word; thread t's TID is t + 1 */
byte sleeping = 0;             /* the lock's `sleepers` count */
FUTEX_QUEUE(sleepers);
bool pending[THREADS];         /* robust_list_head.list_op_pending == this lock's node */
bool linked[THREADS];          /* this lock's node is in the thread's robust list */

byte inside = 0;               /* holders inside the critical section, dead ones included */
byte deaths = 0;
byte reports = 0;              /* owner deaths reported to an acquirer */
byte survivors_done = 0;

#define is_victim  (_pid < VICTIMS)
#define may_die    if :: is_victim -> goto died :: skip fi
#define sleep_timed  is_victim   /* a victim's sleep may end in its death; a survivor's never times out */

inline kernel_handles_death()
{
    atomic {
        if
        :: (linked[_pid] || pending[_pid]) && tid_of(word) == _pid + 1 ->
            if
            :: (word & WAITERS) != 0 -> word = WAITERS | OWNER_DIED; futex_wake(sleepers, 1, woken)
            :: else -> word = OWNER_DIED
            fi
#ifdef KERNEL_5_5
        :: pending[_pid] && word == 0 -> futex_wake(sleepers, 1, woken)
#else
        :: pending[_pid] && tid_of(word) == 0 -> futex_wake(sleepers, 1, woken)
#endif
        :: else -> skip
        fi;
        sleepers = sleepers & ~futex_self;   /* a killed sleeper leaves the wait queue */
        pending[_pid] = false;
        linked[_pid] = false;
        deaths++
    }
}

inline acquire()
{
    owner_died = false;
#ifndef BUG_PENDING_AFTER_CAS
    pending[_pid] = true;
    may_die;
#endif
    seen = word;
    may_die;
    atomic {
        if
#ifdef BUG_TAKE_DROPS_WAITERS
        :: (seen & ~WAITERS) == 0 && word == seen -> word = _pid + 1; taken = true
#else
        :: (seen & ~WAITERS) == 0 && word == seen -> word = (_pid + 1) | seen; taken = true
#endif
        :: else -> taken = false; seen = word
        fi
    };
    may_die;
#ifdef BUG_PENDING_AFTER_CAS
    pending[_pid] = true;
    may_die;
#endif
    do
    :: taken -> break
    :: !taken && tid_of(seen) == 0 ->
        atomic {
            if
#ifdef BUG_TAKE_DROPS_WAITERS
            :: word == seen -> word = _pid + 1; taken = true;
#else
            :: word == seen -> word = (_pid + 1) | (seen & WAITERS); taken = true;
#endif
#ifndef BUG_SILENT_OWNER_DEATH
                owner_died = (seen & OWNER_DIED) != 0
#endif
            :: else -> seen = word
            fi
        };
        may_die
    :: !taken && tid_of(seen) != 0 ->
        sleeping++;
        may_die;
        may_sleep = true;
        if
        :: (seen & WAITERS) == 0 ->
            atomic {
                if
                :: word == seen -> word = seen | WAITERS; seen = seen | WAITERS
                :: else -> may_sleep = false
                fi
            };
            may_die
        :: else -> skip
        fi;
        if
        :: may_sleep -> futex_wait(word, seen, sleepers, sleep_timed, waited); may_die
        :: else -> skip
        fi;
        sleeping--;
        may_die;
        seen = word;
        may_die
    od;
    linked[_pid] = true;     /* link(): the node is first in the list */
    may_die;
    pending[_pid] = false;
    may_die
}

inline release()
{
    pending[_pid] = true;
    may_die;
    linked[_pid] = false;    /* unlink() */
    may_die;
#ifdef BUG_WAKE_BEFORE_RELEASE
    if
    :: sleeping > 0 -> futex_wake(sleepers, 1, woken); may_die
    :: else -> skip
    fi;
#endif
#ifdef BUG_COUNT_READ_BEFORE_RELEASE
    counted = sleeping;
    may_die;
#endif
    atomic { before = word; word = word & WAITERS };
    may_die;
#if defined(BUG_STALE_WAITERS_CLEAR)
    if
    :: (before & WAITERS) != 0 ->
        futex_wake(sleepers, 1, woken);
        may_die;
        if
        :: woken == 0 -> atomic { if :: word == WAITERS -> word = 0 :: else -> skip fi }; may_die
        :: else -> skip
        fi
    :: else -> skip
    fi;
#elif defined(BUG_COUNT_READ_BEFORE_RELEASE)
    if
    :: counted > 0 -> futex_wake(sleepers, 1, woken); may_die
    :: else -> skip
    fi;
#elif !defined(BUG_NEVER_WAKE) && !defined(BUG_WAKE_BEFORE_RELEASE)
    if
    :: sleeping > 0 -> futex_wake(sleepers, 1, woken); may_die
    :: else -> skip
    fi;
#endif
    pending[_pid] = false;
    may_die
}

active [THREADS] proctype worker()
{
    int seen = 0;
    int before = 0;
    byte waited = 0;
    byte woken = 0;
    bool taken = false;
    bool owner_died = false;
    bool may_sleep = false;
    byte counted = 0;
    byte round = 0;

    do
    :: round == ROUNDS -> break
    :: round < ROUNDS ->
        acquire();
        if
        :: owner_died ->
            reports++;
            assert(reports <= deaths);   /* at most one report per death */
            inside = 0                   /* the repair; then make_consistent() */
        :: else -> skip
        fi;
        assert(inside == 0);             /* mutual exclusion, and every unrepaired death was reported */
        inside++;
        may_die;
        inside--;
        release();
        round++
    od;
    survivors_done++;
    goto end;
died:
    kernel_handles_death();
end:
    skip
}

#include "progress.ltl"
