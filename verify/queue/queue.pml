/*
 * queue.pml -- RawMpmcRing (src/mpmc_ring.cpp): Vyukov's bounded MPMC ring with a robust claim word per
 * slot, its two eventcounts, and the death of a producer or a consumer at any step.
 *
 * Mirrors src/mpmc_ring.cpp (step names as in its header comment):
 *   attempt_put    A pos = enqueue position; B s = sequence; s == pos: K take_claim, V s == pos again,
 *                  M enqueue position = pos + 1 (a store: the model asserts nobody else moved it from
 *                  pos, which is why it need not be a CAS), W payload and length, D sequence = pos + 1, R
 *                  drop_claim, notify(not_empty); s < pos: an OWNER_DIED claim is taken and repaired,
 *                  a live claimer is waited for (blocking), else "no slot" once A is confirmed
 *   attempt_get    the same with A'..R'; a skipped slot is freed and stepped over
 *   take_claim     pending = slot; value = claim; TID bits set: busy; CAS value -> me | WAITERS bit
 *   drop_claim     exchange(claim, 0); pending = 0; FUTEX_WAKE all if WAITERS was set
 *   wait_for_claim the spin is one test; CAS in WAITERS; FUTEX_WAIT bounded by the 50 ms re-check
 *   repair_slot_of_dead_claimer, publish-skip / free from the sequence and the positions alone
 *   put_with, get_with (blocking, no deadline; get after close drains once), put_may_proceed,
 *   get_may_proceed, and the eventcounts of src/eventcount.hpp (as in ../queue-spsc/queue-spsc.pml)
 * and the kernel's robust-futex exit (as ../lock/lock.pml): at a thread's death, if list_op_pending
 * names a slot whose claim word holds the dead TID, the word becomes (word & WAITERS) | OWNER_DIED and
 * one sleeper is woken if WAITERS was set; a pending entry on a word with no TID wakes one sleeper
 * (Linux >= 6.2).  A killed sleeper leaves the wait queues.  One Promela step per C++ atomic operation;
 * the payload copy is one step.  Not modelled: deadlines other than the re-checks and the non-blocking
 * attempt's 1 ms wait for a claim (which may expire at once); a close that races a put (the closer waits
 * for every producer).
 *   put_many, get_many (PUT_MANY, GET_MANY): every attempt non-blocking with notify = false (finish_put,
 *                  finish_get), one notify when the call ends: after its last message, or when an attempt
 *                  finds no slot (the application then waits, as put/get would)
 *   publish_skipped_slot (WRITER_THROWS): producer THROWER's writer throws once: the slot is flagged
 *                  skipped and published (D for an empty slot), R, notify(not_empty); its message is not
 *                  put.  A cancelled reservation and a commit after close make the same stores.
 *   reserve/commit, peek/release: a held slot is the gap between M and W (M' and D') while the
 *                  application runs; the victim may die there as anywhere, so they need no other steps.
 *
 * Processes: PRODUCERS producers (default 2) put PER_PRODUCER messages each (default 2; producer p's
 * j-th message has id p * PER_PRODUCER + j + 1) into CAPACITY slots (default 2); CONSUMERS consumers
 * (default 2) get until the ring reports closed; a closer closes the ring once every producer finished
 * or died (an application joining its producers).  VICTIM names the one process (its _pid: producers
 * first, then consumers) that may be killed at any step, asleep included (its sleeps are timed, the
 * expiry a possible death).  The defaults (2 x 2 messages, 2 consumers) exceed the memory bound of
 * verify/run; the checks use two producers with one consumer and one producer with two consumers.
 *
 * Modelling choices
 *   - The death choice (may_die) reads only a local, so spin merges it into the step before for the
 *     processes that cannot die; the victim may die after every step.
 *   - The loads of put_may_proceed / get_may_proceed are one snapshot (see may_proceed below).
 *   - Claim waits are bounded by the code's 50 ms re-check (NO_CLAIM_RECHECK: only the victim's are).
 *
 * Configuration
 *   PRODUCERS, PER_PRODUCER, CONSUMERS, CAPACITY, VICTIM   the shape (above)
 *   EPOCH_FIRST, WAIT_RECHECK   the eventcount's order and its 50 ms re-check (below)
 *   NO_CLAIM_RECHECK    survivors' claim waits are unbounded
 *   NO_CLOSER_RESCUE    the closer closes only once every message was delivered or can never be
 *                       (`abandoned`) or every consumer finished: the close's wake-up rescues nobody, so
 *                       (b) also says that no wake-up for a message is lost
 *   PUT_MANY, GET_MANY, WRITER_THROWS (THROWER)   the operations above
 *   NOTIFY_BEFORE_D     the producer notifies between W and D, under the claim: not a bug here (the
 *                       check notify_before_d_claim_hint), since get_may_proceed counts a held claim
 *   - Messages are checked by id: a slot's payload is the id of the message last written into it.
 *
 * Properties
 *   (a) safety, assertions: a consumer is handed only real messages (never an unwritten or skipped
 *       slot), none twice, each producer's in the order it put them (at M', the consumption order);
 *       once the ring is closed and every consumer finished or died, every message was got, except one
 *       the victim was in the middle of putting or getting.
 *   (b) progress.ltl, pan -a -f: every survivor finishes: producers put all their messages, consumers
 *       see the ring closed; a dead claimer blocks nobody for ever.
 *
 * The eventcount: as in ../queue-spsc/queue-spsc.pml, EPOCH_FIRST and WAIT_RECHECK model the two
 * fixes src/eventcount.hpp needs; the good checks use both, the bug_key_after_flag and bug_unbounded_sleep_* checks show the first version of the code.
 *
 * Seeded bugs (each must be rejected)
 *   BUG_DRAIN_GIVES_UP            get() on a closed ring drains with a non-blocking attempt that gives up
 *                                 on a live claimer (src/mpmc_ring.cpp before this model found it): the
 *                                 consumer reports Closed with a message left behind the claim  -> safety
 *   BUG_REPAIR_PUBLISHES_MESSAGE  the repair of a dead producer's slot publishes it without the skip
 *                                 flag: a consumer is handed a slot nobody wrote              -> (a)
 *   BUG_ADVANCE_BEFORE_CLAIM      a producer advances the enqueue position (M) before it claims the
 *                                 slot (K): dying in between leaves a position taken and no claim
 *                                 to repair, and the ring stops delivering behind it          -> (a)
 *   BUG_PENDING_AFTER_CLAIM       list_op_pending is set after the claim's CAS: a death in between
 *                                 leaves the slot claimed by a dead TID the kernel never marks, and
 *                                 everyone waits on it for ever                               -> (b)
 *   BUG_NO_PUT_RECHECK            the producer does not re-read the sequence under the claim (V)
 *                                 before its plain store of the position: a producer with a stale
 *                                 snapshot moves the position back (the assertion at M)       -> (a)
 *   BUG_NO_CLAIM_RECHECK          the consumer does not re-read the sequence under the claim (V')
 *                                 before its plain store of the position: a consumer with a stale
 *                                 snapshot takes a slot twice                                 -> (a)
 *   BUG_NO_NOTIFY                 no notify(not_empty) after publishing: with the safety nets off a
 *                                 consumer sleeps for ever beside the message                 -> (b)
 *   BUG_NOTIFY_BEFORE_PUBLISH     the notify before K, so before every store get_may_proceed reads:
 *                                 the woken consumer re-tests too early and sleeps for ever   -> (b)
 *   BUG_NO_CLAIM_HINT             (with NOTIFY_BEFORE_D) the may_proceed tests ignore a held claim: the
 *                                 notify before D is then lost                                -> (b)
 *   BUG_MANY_NO_NOTIFY            put_many / get_many without their one notify                 -> (b)
 *   BUG_SKIP_WITHOUT_FLAG         publish_skipped_slot publishes without the skip flag: a consumer is
 *                                 handed a slot nobody wrote                                  -> (a)
 * The re-checks themselves: without WAIT_RECHECK a victim killed inside notify() strands the sleepers
 * (bug_unbounded_sleep_2p1c_producer_dies); with NO_CLAIM_RECHECK a claimer killed in drop_claim between
 * clearing list_op_pending and its FUTEX_WAKE strands a claim sleeper (bug_unbounded_claim_sleep_*).
 */

#include "../common/futex.pml"

#ifndef CAPACITY
#define CAPACITY 2
#endif
#ifndef PRODUCERS
#define PRODUCERS 2
#endif
#ifndef PER_PRODUCER
#define PER_PRODUCER 2
#endif
#ifndef CONSUMERS
#define CONSUMERS 2
#endif
#ifndef VICTIM
#define VICTIM 255                /* nobody dies */
#endif

#define MESSAGES      (PRODUCERS * PER_PRODUCER)
#define ALL_MESSAGES  ((1 << (MESSAGES + 1)) - 2)
#define TID_MASK      7           /* thread _pid has TID _pid + 1 */
#define WAITERS       8
#define OWNER_DIED    16
#define tid_of(w)     ((w) & TID_MASK)
#define my_tid        (_pid + 1)
#define NOT_EMPTY     0
#define NOT_FULL      1

/* take_claim's results, attempt results */
#define TAKEN       0
#define TAKEN_DEAD  1
#define BUSY        2
#define DONE        0
#define NO_SLOT     1

/* The ring. */
byte enqueue_position = 0;
byte dequeue_position = 0;
byte sequence[CAPACITY];
byte claim[CAPACITY];
int claim_sleepers[CAPACITY];
bit skipped[CAPACITY];          /* length's kMpmcSlotSkipped */
byte payload[CAPACITY];         /* the message id a slot holds; 0: never written */
bit closed = 0;
int epoch[2];
bit waiters[2];
int sleepers[2];
byte pending[PRODUCERS + CONSUMERS];   /* list_op_pending: slot + 1, or 0 */

/* Ghost state. */
int delivered = 0;              /* bit m: message m was handed to a consumer's reader */
int may_be_lost = 0;            /* bit m: the victim died putting or getting it */
int published = 0;              /* bit m: a producer published message m (D) */
int abandoned = 0;              /* bit m: message m can never be delivered: its producer died before
                                 * D, or its consumer died after taking it (M') */
byte consumed_upto[PRODUCERS];  /* per producer: 1 + the index of its last message taken at M' */
byte producers_finished = 0;    /* done or dead */
byte consumers_finished = 0;
byte consumers_survived = 0;    /* consumers that saw the ring closed */
bool closer_done = false;
byte deaths = 0;

/* The death choice reads only a local, so for other processes spin merges it into the step before. */
#define may_die      if :: can_die -> goto died :: true -> skip fi
#ifdef NO_CLAIM_RECHECK
#define claim_timed  can_die
#else
#define claim_timed  true
#endif
#ifdef WAIT_RECHECK
#define ec_timed     true
#else
#define ec_timed     can_die
#endif

#ifndef THROWER
#define THROWER 0                 /* WRITER_THROWS: the producer whose writer throws, once */
#endif
bool thrown = false;

bool ring_ready = false;        /* RawMpmcRing::init has run: no thread touches the ring before */

inline init_ring()
{
    atomic {
        do
        :: i < CAPACITY -> sequence[i] = i; i++
        :: else -> break
        od;
        i = 0;
        ring_ready = true
    }
}

/* --- the eventcount ------------------------------------------------------------------------------ */

inline notify(e)
{
    atomic { flag = waiters[e]; waiters[e] = 0 };                 /* N2 */
    may_die;
    if
    :: flag == 1 ->
        flag = 0;
        epoch[e]++;                                               /* N3 */
        may_die;
        futex_wake_all(sleepers[e])                               /* N4 */
    :: else -> skip
    fi;
    may_die
}

inline notify_always(e)
{
    epoch[e]++;
    futex_wake_all(sleepers[e])
}

inline prepare_wait(e)
{
#ifdef EPOCH_FIRST
    key = epoch[e];                                               /* E3 */
    may_die;
    waiters[e] = 1;                                               /* E1 */
#else
    waiters[e] = 1;                                               /* E1 */
    may_die;
    key = epoch[e];                                               /* E3 */
#endif
    may_die
}

inline wait_for_notification(e)
{
    futex_wait(epoch[e], key, sleepers[e], ec_timed, ret);        /* E4 */
    ret = 0;
    may_die
}

/* put_may_proceed / get_may_proceed: closed, the position, its slot's sequence and claim, read as
 * one snapshot.  They only decide whether to sleep: every store that makes them true is followed by a
 * notify (D, close, a repair) or is a claim (K) whose holder's R and notify follow, so reading them
 * one by one adds no behaviour the eventcount does not already cover. */
#ifdef BUG_NO_CLAIM_HINT
#define CLAIM_HINT  false         /* the may_proceed tests ignore a held claim */
#else
#define CLAIM_HINT  true
#endif
#define may_proceed(position, wanted) \
    atomic { \
        pos = position; \
        ready = closed || sequence[pos % CAPACITY] == wanted || (CLAIM_HINT && claim[pos % CAPACITY] != 0); \
        pos = 0 \
    }

/* --- claims ---------------------------------------------------------------------------------------- */

/* K: claimed := TAKEN | TAKEN_DEAD | BUSY (seen := the word) */
inline take_claim(s)
{
#ifndef BUG_PENDING_AFTER_CLAIM
    pending[_pid] = s + 1;
    may_die;
#endif
    value = claim[s];
    may_die;
    do
    :: tid_of(value) != 0 ->
        pending[_pid] = 0;
        may_die;
        seen = value; claimed = BUSY;
        break
    :: else ->
        atomic {
            if
            :: claim[s] == value ->
                claim[s] = my_tid | (value & WAITERS);
                claimed = ((value & OWNER_DIED) != 0 -> TAKEN_DEAD : TAKEN)
            :: else -> value = claim[s]; claimed = BUSY + 1
            fi
        };
        may_die;
        if :: claimed != BUSY + 1 -> break :: else -> skip fi
    od;
#ifdef BUG_PENDING_AFTER_CLAIM
    if :: claimed != BUSY -> pending[_pid] = s + 1; may_die :: else -> skip fi;
#endif
    value = 0
}

/* R */
inline drop_claim(s)
{
    atomic { value = claim[s]; claim[s] = 0 };
    may_die;
    pending[_pid] = 0;
    may_die;
    if
    :: (value & WAITERS) != 0 -> futex_wake_all(claim_sleepers[s]); may_die
    :: else -> skip
    fi;
    value = 0
}

inline wait_for_claim(s, w)
{
    if
    :: claim[s] != w -> skip                                      /* the spin saw a change */
    :: else ->
        may_die;
        value = w;
        if
        :: (value & WAITERS) == 0 ->
            atomic {
                if
                :: claim[s] == value -> claim[s] = value | WAITERS; value = value | WAITERS
                :: else -> value = 0
                fi
            };
            may_die
        :: else -> skip
        fi;
        if
        :: value != 0 ->
            futex_wait(claim[s], value, claim_sleepers[s], claim_timed, ret);   /* the 50 ms re-check */
            ret = 0;
            may_die
        :: else -> skip
        fi
    fi;
    value = 0
}

/* repair_slot_of_dead_claimer, holding the claim of slot s; then R and the wake-ups. */
inline repair(s)
{
    sq = sequence[s];
    may_die;
    fixed = 0;
    if
    :: sq % CAPACITY == s ->
        if
        :: enqueue_position > sq ->
            may_die;
#ifndef BUG_REPAIR_PUBLISHES_MESSAGE
            skipped[s] = 1;
            may_die;
#endif
            sequence[s] = sq + 1;
            fixed = 1
        :: else -> skip
        fi
    :: sq % CAPACITY == (s + 1) % CAPACITY ->
        if
        :: dequeue_position > sq - 1 ->
            may_die;
            sequence[s] = sq - 1 + CAPACITY;
            fixed = 2
        :: else -> skip
        fi
    :: else -> skip
    fi;
    sq = 0;
    may_die;
    drop_claim(s);
    if
    :: fixed == 1 -> fixed = 0; notify(NOT_EMPTY)
    :: fixed == 2 -> fixed = 0; notify(NOT_FULL)
    :: else -> skip
    fi
}

/* The lag < 0 branch shared by put and get: repair a dead claimer, wait for a live one, or no slot. */
inline behind(s, own_position)
{
    claimer = claim[s];
    may_die;
    if
    :: claimer != 0 && tid_of(claimer) == 0 ->
        claimer = 0;
        take_claim(s);
        if
        :: claimed == TAKEN_DEAD -> repair(s)
        :: claimed == TAKEN -> drop_claim(s)
        :: else -> skip
        fi;
        seen = 0
    :: claimer != 0 && tid_of(claimer) != 0 && blocking ->
        wait_for_claim(s, claimer);
        claimer = 0
    :: else ->
        claimer = 0;
        if
        :: own_position == pos -> outcome = NO_SLOT; break
        :: else -> skip
        fi
    fi
}

/* --- the kernel at a thread's death ---------------------------------------------------------------- */

inline kernel_handles_death()
{
    atomic {
        if
        :: pending[_pid] != 0 ->
            slot_index = pending[_pid] - 1;
            if
            :: tid_of(claim[slot_index]) == my_tid ->
                if
                :: (claim[slot_index] & WAITERS) != 0 ->
                    claim[slot_index] = WAITERS | OWNER_DIED;
                    futex_wake(claim_sleepers[slot_index], 1, woken)
                :: else -> claim[slot_index] = OWNER_DIED
                fi
            :: tid_of(claim[slot_index]) == 0 -> futex_wake(claim_sleepers[slot_index], 1, woken)
            :: else -> skip
            fi
        :: else -> skip
        fi;
        pending[_pid] = 0;
        slot_index = 0;
        do
        :: slot_index < CAPACITY -> claim_sleepers[slot_index] = claim_sleepers[slot_index] & ~futex_self; slot_index++
        :: else -> break
        od;
        sleepers[NOT_EMPTY] = sleepers[NOT_EMPTY] & ~futex_self;
        sleepers[NOT_FULL] = sleepers[NOT_FULL] & ~futex_self;
        slot_index = 0; woken = 0;
        deaths++
    }
}

#define LOCALS \
    byte pos = 0; byte s = 0; byte sq = 0; byte value = 0; byte seen = 0; byte claimer = 0; \
    byte claimed = 0; byte outcome = 0; byte fixed = 0; byte expected = 0; bit flag = 0; \
    int key = 0; byte ret = 0; byte slot_index = 0; byte woken = 0; bool blocking = true; \
    bool ready = false; bit is_closed = 0; bool can_die = (_pid == VICTIM)

/* --- producers --------------------------------------------------------------------------------------- */

active [PRODUCERS] proctype producer()
{
    LOCALS;
    byte message = 0;
    byte j = 0;
#ifdef PUT_MANY
    bool in_batch = false;    /* put_many has put a message and not yet notified */
    blocking = false;         /* put_many's attempts do not wait for a live claimer */
#endif

    ring_ready;

    do
    :: j == PER_PRODUCER -> break
    :: j < PER_PRODUCER ->
        message = _pid * PER_PRODUCER + j + 1;
        do
        :: true ->
            is_closed = closed;
            may_die;
            assert(!is_closed);                  /* the closer waits for every producer */
            /* attempt_put */
            do
            :: true ->
                pos = enqueue_position;                           /* A */
                may_die;
                s = pos % CAPACITY;
                sq = sequence[s];                                 /* B */
                may_die;
                if
                :: sq == pos ->
                    sq = 0;
#ifdef BUG_NOTIFY_BEFORE_PUBLISH
                    notify(NOT_EMPTY);                            /* before K: before every store a consumer tests */
#endif
#ifdef BUG_ADVANCE_BEFORE_CLAIM
                    atomic {
                        if
                        :: enqueue_position == pos -> enqueue_position = pos + 1; expected = 1
                        :: else -> expected = 0
                        fi
                    };
                    may_die;
                    if :: expected == 0 -> goto retry_put :: else -> expected = 0 fi;
                    do
                    :: true ->
                        take_claim(s);
                        if
                        :: claimed == BUSY -> wait_for_claim(s, seen); seen = 0
                        :: claimed == TAKEN_DEAD -> repair(s); goto retry_put
                        :: else -> break
                        fi
                    od;
#else
                    take_claim(s);
                    if
                    :: claimed == BUSY ->
                        if
                        :: enqueue_position == pos && !blocking -> seen = 0; outcome = NO_SLOT; break  /* its 1 ms */
                        :: enqueue_position == pos && blocking -> may_die; wait_for_claim(s, seen)
                        :: else -> may_die
                        fi;
                        seen = 0;
                        goto retry_put
                    :: claimed == TAKEN_DEAD -> repair(s); goto retry_put
                    :: else -> skip
                    fi;
#ifndef BUG_NO_PUT_RECHECK
                    if                                            /* V */
                    :: sequence[s] != pos -> may_die; drop_claim(s); goto retry_put
                    :: else -> may_die
                    fi;
#endif
                    atomic {                                      /* M, a plain store */
                        /* under the claim, after V; so the code's tripwire before M never fires */
                        assert(enqueue_position == pos);
                        enqueue_position = pos + 1
                    };
                    may_die;
#endif
#ifdef WRITER_THROWS
                    if
                    :: _pid == THROWER && !thrown ->
                        /* the writer throws (or a reservation is cancelled, or committed after close):
                         * publish_skipped_slot; the put fails and its message is not in the ring */
                        atomic {
                            thrown = true;
                            may_be_lost = may_be_lost | (1 << message);
                            abandoned = abandoned | (1 << message)
                        };
#ifndef BUG_SKIP_WITHOUT_FLAG
                        skipped[s] = 1;                           /* length = kMpmcSlotSkipped */
                        may_die;
#endif
                        sequence[s] = pos + 1;                    /* D for an empty slot */
                        may_die;
                        drop_claim(s);
                        notify(NOT_EMPTY);
                        outcome = DONE;
                        break
                    :: else -> skip
                    fi;
#endif
                    atomic { payload[s] = message; skipped[s] = 0 };   /* W */
                    may_die;
#ifdef NOTIFY_BEFORE_D
                    notify(NOT_EMPTY);                            /* before D, under the claim */
#endif
                    atomic { sequence[s] = pos + 1; published = published | (1 << message) };   /* D */
                    may_die;
                    drop_claim(s);                                /* R */
#if !defined(BUG_NO_NOTIFY) && !defined(BUG_NOTIFY_BEFORE_PUBLISH) && !defined(NOTIFY_BEFORE_D) && !defined(PUT_MANY)
                    notify(NOT_EMPTY);                            /* finish_put(notify = true) */
#endif
                    outcome = DONE;
                    break
                :: sq < pos ->
                    sq = 0;
                    behind(s, enqueue_position)
                :: else -> sq = 0
                fi;
retry_put:
                skip
            od;
            pos = 0; s = 0;
            if
            :: outcome == DONE -> break
            :: else -> skip
            fi;
#ifdef PUT_MANY
            /* put_many returned short: its one notify for what it put, then the application waits */
            if
            :: in_batch ->
                in_batch = false;
#ifndef BUG_MANY_NO_NOTIFY
                notify(NOT_EMPTY)
#endif
            :: else -> skip
            fi;
#endif
            /* await_condition(not_full, put_may_proceed) */
            do
            :: true ->
                prepare_wait(NOT_FULL);
                may_proceed(enqueue_position, pos);
                if :: ready -> break :: else -> skip fi;
                wait_for_notification(NOT_FULL);
                may_proceed(enqueue_position, pos);
                if :: ready -> break :: else -> skip fi
            od;
            key = 0; ready = false; is_closed = 0
        od;
        message = 0;
        j++;
#ifdef PUT_MANY
        /* put_many(notify = false per slot) goes on with the next message; at the last, its one notify */
        in_batch = true;
        if
        :: j == PER_PRODUCER ->
            in_batch = false;
#ifndef BUG_MANY_NO_NOTIFY
            notify(NOT_EMPTY)
#endif
        :: else -> skip
        fi
#endif
    od;
    producers_finished++;
    goto end;
died:
    atomic {
        /* the message it was putting may be lost; the ones after it were never put */
        do
        :: j < PER_PRODUCER ->
            message = _pid * PER_PRODUCER + j + 1;
            may_be_lost = may_be_lost | (1 << message);
            /* one it published (D) is still owed to the consumers */
            if :: (published & (1 << message)) == 0 -> abandoned = abandoned | (1 << message) :: else -> skip fi;
            j++
        :: else -> break
        od;
        message = 0;
        producers_finished++;
        kernel_handles_death()
    };
end:
    skip
}

/* --- consumers --------------------------------------------------------------------------------------- */

active [CONSUMERS] proctype consumer()
{
    LOCALS;
    byte taking = 0;          /* the message this consumer advanced the position past (M') */
    bool draining = false;
#ifdef GET_MANY
    bool in_batch = false;    /* get_many has freed a slot and not yet notified */
#endif

    ring_ready;

    do
    :: true ->
        /* get_with: attempt_get(blocking), then after close one more attempt, which waits on a live claimer
         * as the call does (BUG_DRAIN_GIVES_UP: the first version's non-blocking drain) */
#ifdef GET_MANY
        blocking = false;         /* get_many's attempts do not wait for a live claimer */
#elif defined(BUG_DRAIN_GIVES_UP)
        blocking = !draining;
#else
        blocking = true;
#endif
        do
        :: true ->
            pos = dequeue_position;                               /* A' */
            may_die;
            s = pos % CAPACITY;
            sq = sequence[s];                                     /* B' */
            may_die;
            if
            :: sq == pos + 1 ->
                sq = 0;
                take_claim(s);
                if
                :: claimed == BUSY ->
                    if
                    :: dequeue_position == pos && !blocking -> seen = 0; outcome = NO_SLOT; break  /* its 1 ms */
                    :: dequeue_position == pos && blocking -> may_die; wait_for_claim(s, seen)
                    :: else -> may_die
                    fi;
                    seen = 0;
                    goto retry_get
                :: claimed == TAKEN_DEAD -> repair(s); goto retry_get
                :: else -> skip
                fi;
#ifdef BUG_NO_CLAIM_RECHECK
                atomic {                                          /* M' without V', a plain store */
                    dequeue_position = pos + 1;
                    if
                    :: skipped[s] == 0 ->
                        taking = payload[s];
                        assert(taking != 0);
                        assert(consumed_upto[(taking - 1) / PER_PRODUCER] <= (taking - 1) % PER_PRODUCER);
                        consumed_upto[(taking - 1) / PER_PRODUCER] = (taking - 1) % PER_PRODUCER + 1
                    :: else -> skip
                    fi;
                    expected = 1
                };
                may_die;
#else
                if                                                /* V' */
                :: sequence[s] != pos + 1 -> may_die; drop_claim(s); goto retry_get
                :: else -> may_die
                fi;
                atomic {                                          /* M', a plain store; the ghost order check */
                    assert(dequeue_position == pos);              /* under the claim, after V' */
                    dequeue_position = pos + 1;
                    if
                    :: skipped[s] == 0 ->
                        taking = payload[s];
                        assert(taking != 0);          /* a written slot */
                        /* per-producer FIFO, in the order of the dequeue positions */
                        assert(consumed_upto[(taking - 1) / PER_PRODUCER] <= (taking - 1) % PER_PRODUCER);
                        consumed_upto[(taking - 1) / PER_PRODUCER] = (taking - 1) % PER_PRODUCER + 1
                    :: else -> skip
                    fi
                };
                may_die;
#endif
                expected = 0;
                value = skipped[s];                               /* the length */
                may_die;
                if
                :: value == 0 ->
                    atomic {                                      /* W': handed to the reader */
                        assert(payload[s] != 0 && taking == payload[s]);
                        assert((delivered & (1 << taking)) == 0);   /* never twice */
                        delivered = delivered | (1 << taking)
                    };
                    may_die
                :: else -> skip
                fi;
                sequence[s] = pos + CAPACITY;                     /* D' */
                may_die;
                drop_claim(s);                                    /* R' (value := 0) */
#ifdef GET_MANY
                in_batch = true;                                  /* finish_get(notify = false) */
#else
                notify(NOT_FULL);                                 /* finish_get(notify = true) */
#endif
                taking = 0;
                outcome = DONE;
                break
            :: sq < pos + 1 ->
                sq = 0;
                behind(s, dequeue_position)
            :: else -> sq = 0
            fi;
retry_get:
            skip
        od;
        pos = 0; s = 0;
        if
        :: outcome == DONE -> draining = false                   /* got a message (or stepped a skip) */
        :: else ->
#ifdef GET_MANY
            /* get_many returned short: its one notify for what it freed, then the application waits */
            if
            :: in_batch ->
                in_batch = false;
#ifndef BUG_MANY_NO_NOTIFY
                notify(NOT_FULL)
#endif
            :: else -> skip
            fi;
#endif
            is_closed = closed;
            may_die;
            if
            :: is_closed && draining -> break                    /* get() reports closed */
            :: is_closed && !draining -> draining = true
            :: else ->
                /* await_condition(not_empty, get_may_proceed) */
                do
                :: true ->
                    prepare_wait(NOT_EMPTY);
                    may_proceed(dequeue_position, pos + 1);
                    if :: ready -> break :: else -> skip fi;
                    wait_for_notification(NOT_EMPTY);
                    may_proceed(dequeue_position, pos + 1);
                    if :: ready -> break :: else -> skip fi
                od;
                key = 0; ready = false
            fi;
            is_closed = 0
        fi;
        outcome = 0
    od;
    atomic { consumers_finished++; consumers_survived++ };
    goto end;
died:
    atomic {
        if :: taking != 0 -> may_be_lost = may_be_lost | (1 << taking); abandoned = abandoned | (1 << taking) :: else -> skip fi;
#if defined(GET_MANY) || defined(BUG_DRAIN_GIVES_UP)
        /* Claimed, not yet taken (K' before M'): the repair leaves the message for the next consumer, but a
         * survivor whose attempt does not wait for a live claim (get_many's; the seeded bug's drain) may
         * already have given up on it: the message this consumer was in the middle of getting may be lost,
         * as the contract allows. */
        if
        :: taking == 0 && pending[_pid] == s + 1 && tid_of(claim[s]) == my_tid && sequence[s] == pos + 1 &&
           skipped[s] == 0 -> may_be_lost = may_be_lost | (1 << payload[s])
        :: else -> skip
        fi;
#endif
        consumers_finished++;
        kernel_handles_death()
    };
end:
    skip
}

/* An application that joins its producers, then closes the ring. */
active proctype closer()
{
    byte i = 0;
    init_ring();
    (producers_finished == PRODUCERS);
#ifdef NO_CLOSER_RESCUE
    /* The close wakes every sleeper whatever the eventcounts lost: an application that closes only once
     * every message is delivered (or can never be) shows whether the consumers got them without it. */
    ((delivered | abandoned) == ALL_MESSAGES || consumers_finished == CONSUMERS);
#endif
    closed = 1;
    notify_always(NOT_EMPTY);
    notify_always(NOT_FULL);
    closer_done = true;
    (consumers_finished == CONSUMERS);
    /* with a surviving consumer, which saw the ring closed and drained */
    assert(consumers_survived == 0 || (delivered | may_be_lost) == ALL_MESSAGES)
}

#include "progress.ltl"
