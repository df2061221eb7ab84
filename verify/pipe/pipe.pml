/*
 * pipe.pml -- end of stream on a shared-memory Pipe: a receiver that sleeps on the ring and on the
 * peer's robust holder word learns of the peer's close or death, and never reports end of stream
 * before it received every message the peer published.
 *
 * Mirrors src/pipe.cpp:
 *   PipeConnection::send_bytes  (proctype sender: publish = commit, P5, P6 + eventcount notify N2..N4)
 *   PipeConnection::close / release_hold  (the sender's close: holder word := 0, FUTEX_WAKE all)
 *   the kernel's handle_futex_death for a holder word in the dead sender's robust list
 *       (word := OWNER_DIED | WAITERS, wake one sleeper queued on the word)
 *   PipeConnection::receive, await, sleep_on_ring_and_peer  (proctype receiver)
 * and src/eventcount.hpp (prepare_wait E1/E3, notify N2..N4).
 *
 * Algorithm
 *   sender:   for each message: published++ (release); notify: if exchange(waiters, 0): epoch++, wake all
 *             then close (holder := FREE, wake all on the holder word), or die at any step (VICTIM)
 *   receiver: loop: gone := holder is not ALIVE; ready := published - consumed  (gone read FIRST)
 *             ready > 0 -> take one; gone -> end of stream; else
 *             E3 key := epoch; E1 waiters := 1; re-test (ready or gone -> loop);
 *             seen := holder; seen not ALIVE -> loop (it went after the re-test: the wake-up for it
 *             may be spent); else futex_waitv(epoch == key, holder == seen) -> loop
 *   futex_waitv is one queue (`sleepers`) the receiver joins for both words after comparing both in
 *   one atomic step, as the kernel does; a wake on either word takes it off.
 *
 * Properties
 *   (a) safety (assertion): at end of stream the receiver has every message published.
 *   (b) liveness (ltl ends): the receiver always finishes -- the close or the death is pushed to it.
 *       With CLOSE_WHEN_RECEIVED the sender closes only once every message was received, so the close
 *       rescues no lost message wake-up: (b) then also says each message's notify reached the receiver.
 *   The receiver's sleeps are never timed (the code's re-check period is not modelled): every check is
 *   "without the safety net".
 *
 * Seeded bugs
 *   BUG_GONE_AFTER_RING     reads "gone" after looking at the ring: a message published just before the
 *                           close is lost (assertion).
 *   BUG_SLEEP_ON_RING_ONLY  sleeps on the eventcount only: a close or death wakes nobody (acceptance).
 *   BUG_CLOSE_WITHOUT_WAKE  close stores 0 without FUTEX_WAKE (acceptance).
 *   BUG_NO_NOTIFY           send publishes without notify(): with CLOSE_WHEN_RECEIVED the receiver sleeps
 *                           beside the message for ever (acceptance).
 *   BUG_SLEEP_ON_GONE_HOLDER  sleeps although the holder word it loaded is no longer ALIVE (the C++ first
 *                           draft's bug, found by this model): a death or close between the re-test and
 *                           the load is never pushed (invalid end state / acceptance).
 */

#include "../common/futex.pml"

#ifndef MESSAGES
#define MESSAGES 2
#endif

#define FREE  0
#define ALIVE 1   /* TID | WAITERS */
#define DEAD  2   /* OWNER_DIED | WAITERS */

byte published = 0;
byte consumed = 0;
byte epoch = 0;
bool waiters = false;
byte holder = ALIVE;
FUTEX_QUEUE(sleepers);         /* queued on the epoch and on the holder word (futex_waitv) */
#ifdef BUG_SLEEP_ON_RING_ONLY
FUTEX_QUEUE(epoch_sleepers);   /* queued on the epoch only */
#endif

bool done = false;

inline notify()
{
    bool had_waiters;
    atomic { had_waiters = waiters; waiters = false };   /* N2 */
    if
    :: had_waiters ->
        epoch++;                                          /* N3 */
        futex_wake_all(sleepers);                         /* N4 */
#ifdef BUG_SLEEP_ON_RING_ONLY
        futex_wake_all(epoch_sleepers)
#endif
    :: else -> skip
    fi
}

/* The kernel at the holder thread's death: mark the word, wake one sleeper queued on it. */
inline dies()
{
    byte woken;
    atomic { holder = DEAD; futex_wake(sleepers, 1, woken) };
    goto dead
}

active proctype sender()
{
    byte sent = 0;
    do
    :: sent < MESSAGES ->
        published++;
#ifndef BUG_NO_NOTIFY
        notify();
#endif
        sent++
#ifdef VICTIM
    :: dies()
#endif
    :: sent == MESSAGES -> break
    od;
#ifdef CLOSE_WHEN_RECEIVED
    /* The close wakes the receiver whatever the eventcount lost: a sender that closes only once every
     * message was received shows that no wake-up for a message is lost without that rescue. */
    (consumed == published);
#endif
#ifdef VICTIM
    if
    :: dies()
    :: skip
    fi;
#endif
    holder = FREE;
#ifndef BUG_CLOSE_WITHOUT_WAKE
    futex_wake_all(sleepers);
#endif
dead:
    skip
}

active proctype receiver()
{
    bool gone;
    byte ready;
    byte key;
    byte seen;
    byte ret;
    do
    ::
#ifdef BUG_GONE_AFTER_RING
        ready = published - consumed;
        gone = (holder != ALIVE);
#else
        gone = (holder != ALIVE);
        ready = published - consumed;
#endif
        if
        :: ready > 0 -> consumed++
        :: ready == 0 && gone ->
            assert(consumed == published);   /* (a): nothing published is lost at end of stream */
            break
        :: ready == 0 && !gone ->
            key = epoch;                      /* E3, before E1 as in eventcount.hpp's prepare_wait */
            waiters = true;                   /* E1 */
            if
            :: published != consumed || holder != ALIVE -> skip
            :: else ->
                seen = holder;
#ifndef BUG_SLEEP_ON_GONE_HOLDER
                if
                :: seen != ALIVE -> goto retest   /* went after the re-test: no wake-up is coming */
                :: else -> skip
                fi;
#endif
#ifdef BUG_SLEEP_ON_RING_ONLY
                futex_wait(epoch, key, epoch_sleepers, FUTEX_UNTIMED, ret)
#else
                atomic {
                    if
                    :: epoch == key && holder == seen -> sleepers = sleepers | futex_self; ret = FUTEX_SLEEPING
                    :: else -> ret = FUTEX_EAGAIN
                    fi
                };
                if
                :: ret == FUTEX_SLEEPING -> futex_sleep_(sleepers, FUTEX_UNTIMED, ret)
                :: else -> skip
                fi
#endif
            fi
        fi;
retest:
        skip
    od;
    done = true
}

ltl ends { <> done }
