/*
 * queue-spsc.pml -- RawSpscRing (src/spsc_ring.cpp) with its two eventcounts, and the death of the
 * producer or the consumer at any step, after which a replacement process takes over the role.
 *
 * Mirrors src/spsc_ring.cpp:
 *   free_slots   P1 pos = producer.position; P2 repair_unpublished_slots: slots before pos that nobody
 *                published (their producer died between P5 and P6) are published as skipped; P3 cached
 *                consumer, if full: reload consumer.position, store it in the cache
 *   put          free_slots; if none: await_condition(not_full, free_slots() || closed); P4 write the
 *                slot; P5 producer.position = pos + 1; P6 the slot's sequence = pos + 1 (publish_puts);
 *                P7 notify(not_empty)
 *   put_many     (with BATCH) as put, for up to two messages at once when the ring has room for them: P4
 *                for each slot, one P5 past all of them, then P6 slot by slot, oldest first
 *                (publish_puts), so a death among the P6 leaves a published prefix and then holes
 *   ready_slots  C1 pos = consumer.position; C2 the slot's sequence: pos + 1 ready, pos + 1 and skipped:
 *                step over it (consumer.position = pos + 1, then notify(not_full)), else nothing
 *   get          ready_slots; if none: closed -> look once more, else await_condition(not_empty,
 *                closed || ready_slots()); C4 read the slot; C5 consumer.position = pos + 1; C6
 *                notify(not_full)
 *   reserve/commit  (with ZERO_COPY) reserve() is free_slots; the application writes the slot in place
 *                (P4); commit() runs free_slots again (P1..P3 with the repair), must find the reserved slot
 *                free at the producer's position, then publish_puts (P5..P7)
 *   peek/release (with ZERO_COPY) peek() is ready_slots; the application reads in place (C4); release()
 *                runs ready_slots again, must find the peeked message, then release_gets (C5, C6)
 *   close_ring   closed = 1; notify_always(not_empty); notify_always(not_full)
 * and src/eventcount.hpp (prepare_wait E1/E3, wait E4 without deadline, notify N2..N4, notify_always;
 * the spin phase of await_condition is its first test).  The cache lives in shared memory, as in the
 * ring, so a replacement inherits the dead process's cache.  One Promela step per C++ atomic operation
 * (a slot copy is one step: only its order against the positions and sequences matters).
 *
 * Processes: the producer role puts MESSAGES messages (ids 1..MESSAGES) into a ring of CAPACITY slots
 * (with BATCH, two at a time where they fit), then closes the ring; the consumer role gets until get() reports closed.  With PRODUCER_DIES or
 * CONSUMER_DIES that role's process may be killed at any step, asleep included (a victim's futex sleep
 * is timed, its expiry a possible death); a replacement process then takes over the role: a producer
 * goes on with the message after the one(s) the dead one was putting, a consumer simply calls get() again.
 * At most MAX_DEATHS deaths (default 1).
 *
 * Properties
 *   (a) safety, assertions: every get() returns a real message (never a slot not yet written), no
 *       message twice, in the order put (FIFO, across replacements too); when both roles are done,
 *       every message was got except one a dying producer was putting or a dying consumer was getting.
 *   (b) progress.ltl, pan -a -f: both roles finish -- survivors progress, no lost wake-up.
 *
 * Two faults of src/eventcount.hpp, and the fixes modelled (the good checks use both)
 *   EPOCH_FIRST   eventcount.hpp does E1 before E3 and loses a wake-up between two live processes (see
 *                 ../queue-eventcount/queue-eventcount.pml); the fix reads the epoch (E3) before E1.
 *                 Check bug_key_after_flag: with CLOSE_WHEN_DELIVERED, a blocking get() sleeps
 *                 for ever beside a published message.
 *   WAIT_RECHECK  a process killed between N2 and N4 of notify() took the flag of a sleeper and woke
 *                 nobody.  eventcount.hpp says the sleeper waits "until the next notify", but the next
 *                 notify() reads the flag 0 and does not wake either: a blocking get() (put()) with no
 *                 deadline sleeps for ever beside a published message (a free slot), and the other
 *                 side can then block for ever too.  The fix modelled: every eventcount sleep is
 *                 bounded (a periodic re-test, as the MPMC ring's claim waits do every 50 ms).
 *                 Checks bug_unbounded_sleep_producer_dies and bug_unbounded_sleep_consumer_dies.
 *
 * Configuration
 *   PRODUCER_DIES, CONSUMER_DIES, MAX_DEATHS   who may die, how many times in all
 *   CLOSE_WHEN_DELIVERED   the producer role closes only once every message was got or lost
 *   CAPACITY, MESSAGES     ring slots (default 2), messages put (default 3, so the ring fills)
 *   BATCH                  the producer puts with put_many (batches of up to two)
 *   ZERO_COPY              the producer puts with reserve/commit, the consumer gets with peek/release
 *   FUTEX_SPURIOUS_WAKEUPS futex waits may return early (see ../common/futex.pml)
 *
 * Seeded bugs (each must be rejected)
 *   BUG_PUBLISH_BEFORE_WRITE    the producer publishes the slot's sequence (P6) before writing the slot
 *                               (P4): the consumer reads a slot that does not hold the message yet -> (a)
 *   BUG_RELEASE_BEFORE_READ     the consumer stores its position (C5) before reading the slot (C4): the
 *                               producer overwrites the message before it is read              -> (a)
 *   BUG_NOTIFY_BEFORE_PUBLISH   the producer notifies (P7) before it publishes the sequence (P6): the
 *                               consumer's re-test misses the message and nothing wakes it      -> (b)
 *   BUG_NO_NOTIFY               no P7 after publishing (put and put_many): with the re-check off the
 *                               consumer sleeps for ever beside the message                      -> (b)
 *   BUG_RELEASE_NO_NOTIFY       (with ZERO_COPY) release() frees the slot without C6: the producer
 *                               sleeps for ever on a full ring once the re-check is off          -> (b)
 *   BUG_NO_REPAIR               no P2: after a producer killed between P5 and P6, the consumer waits at
 *                               the unpublished slot for ever and what follows is never got      -> (a)
 *   BUG_PUBLISH_BEFORE_POSITION P6 before P5: a producer killed between them leaves a published slot
 *                               behind the position, and its replacement overwrites it           -> (a)
 *   BUG_OVER_REPAIR             the repair also publishes as skipped the published slot before the
 *                               first hole: with BATCH, the published prefix of a dead producer's
 *                               batch is lost although the contract delivers it                  -> (a)
 *   BUG_PUBLISH_NEWEST_FIRST    (with BATCH) P6 newest slot first: a death among them leaves a hole
 *                               before a published slot, which P2 takes for a finished batch, so the
 *                               consumer waits at the hole for ever, and the producer for room -> (b)
 */

#include "../common/futex.pml"

#ifndef CAPACITY
#define CAPACITY 2
#endif
#ifndef MESSAGES
#define MESSAGES 3
#endif
#ifndef MAX_DEATHS
#define MAX_DEATHS 1
#endif

#define NOT_EMPTY 0
#define NOT_FULL  1
#define PRODUCER  0
#define CONSUMER  1
#define ALL_MESSAGES  ((1 << (MESSAGES + 1)) - 2)   /* bits 1..MESSAGES */

/* The ring (RingControl and the slots). */
byte producer_position = 0;
byte consumer_position = 0;
byte producer_cache = 0;      /* producer.cached_other: a lower bound of consumer_position */
byte slot[CAPACITY];          /* the id of the message a slot holds; 0: never written */
/* Each slot's sequence word: p + 1 once it holds the message at position p, with `skipped` set when a
 * replacement producer published it empty.  One 64-bit word in the ring, so both change in one step.
 * Initially 0: no position's p + 1, and what P2 expects before the first put (init() stores the skipped
 * form of position -1 in the last slot, the only one P2 reads then, and i + 2 in the others). */
byte seq[CAPACITY];
bit skipped[CAPACITY];
bit closed = 0;
/* The two eventcounts: not_empty (consumers sleep) and not_full (producers sleep). */
int epoch[2];
bit waiters[2];
int sleepers[2];

/* Ghost state for the properties. */
int received = 0;             /* bit m: message m was got */
int may_be_lost = 0;          /* bit m: a process died putting or getting message m */
byte last_received = 0;
byte deaths = 0;
bool producer_done = false;
bool consumer_done = false;

#ifdef PRODUCER_DIES
#define producer_victim  true
#else
#define producer_victim  false
#endif
#ifdef CONSUMER_DIES
#define consumer_victim  true
#else
#define consumer_victim  false
#endif
#define may_die      if :: victim && deaths < MAX_DEATHS -> goto died :: skip fi
#ifdef WAIT_RECHECK
#define sleep_timed  true     /* every eventcount sleep is bounded: a periodic re-test (the fix) */
#else
#define sleep_timed  (victim && deaths < MAX_DEATHS)
#endif

/* N2..N4 of notify(), with a death possible between the steps. */
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
    may_die;
    futex_wake_all(sleepers[e]);
    may_die
}

/* E1, E3 (or E3, E1 with EPOCH_FIRST). */
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
    futex_wait(epoch[e], key, sleepers[e], sleep_timed, ret);     /* E4, no deadline */
    ret = 0;
    may_die
}

/* P2 (repair_unpublished_slots): slots the position passed that nobody published -- a producer killed
 * between P5 and P6 -- are published as skipped, oldest first. */
inline repair_unpublished_slots()
{
    first = pos;
    do
    :: (pos - first < CAPACITY) && seq[(first + CAPACITY - 1) % CAPACITY] != first -> first--; may_die
    :: else -> break
    od;
#ifdef BUG_OVER_REPAIR
    if :: first != pos && pos - first < CAPACITY -> first-- :: else -> skip fi;   /* one published slot too */
#endif
    if
    :: first != pos ->
        do
        :: first != pos ->
            atomic { seq[first % CAPACITY] = first + 1; skipped[first % CAPACITY] = 1 };
            may_die;
            first++
        :: else -> break
        od;
        notify(NOT_EMPTY)
    :: else -> skip
    fi;
    first = 0
}

/* P1..P3: free := whether the slot at pos is free; room := how many are (meaningless when !free).  The
 * cache is refreshed when it shows fewer than `wanted` free slots (1 for put, the batch for put_many). */
inline free_slots()
{
    pos = producer_position;                                      /* P1 */
    may_die;
#ifndef BUG_NO_REPAIR
    repair_unpublished_slots();                                   /* P2 */
#endif
    other = producer_cache;                                       /* P3 */
    may_die;
    if
    :: pos - other >= CAPACITY || CAPACITY - (pos - other) < wanted ->
        other = consumer_position;                                /* P3 */
        may_die;
        producer_cache = other;
        may_die
    :: else -> skip
    fi;
    free = (pos - other < CAPACITY);
    room = CAPACITY - (pos - other);
    other = 0
}

/* C1, C2: ready := whether the slot at pos holds a message; skipped slots are stepped over first. */
inline ready_slots()
{
    pos = consumer_position;                                      /* C1 */
    may_die;
    do
    :: atomic { sequence = seq[pos % CAPACITY]; was_skipped = skipped[pos % CAPACITY] };   /* C2 */
        may_die;
        if
        :: sequence == pos + 1 && was_skipped ->
            consumer_position = pos + 1;                          /* C5 for a skipped slot */
            may_die;
            pos = pos + 1;
            stepped = true
        :: else -> break
        fi
    od;
    if
    :: stepped -> stepped = false; notify(NOT_FULL)
    :: else -> skip
    fi;
    ready = (sequence == pos + 1 && !was_skipped);
    sequence = 0; was_skipped = 0
}

active proctype producer()
{
    bool victim = producer_victim;
    byte next = 1;            /* the message this incarnation puts next */
    byte pos = 0;
    byte other = 0;
    byte first = 0;
    bool free = false;
    byte room = 0;
    byte wanted = 1;          /* slots asked of free_slots */
    byte reserved = 0;        /* ZERO_COPY: the position reserve() handed out */
    byte batch = 0;           /* messages of the put_many under way, 0 outside one */
    byte published = 0;       /* ghost: how many of them P6 has published */
    byte i = 0;
    bool is_closed = false;
    bit flag = 0;
    int key = 0;
    byte ret = 0;

start:
    do
    :: next > MESSAGES -> break
    :: next <= MESSAGES ->
        /* put(next), or put_many(next, next + 1) with BATCH */
#ifdef BATCH
        wanted = MESSAGES - next + 1;
        if :: wanted > 2 -> wanted = 2 :: else -> skip fi;
#endif
        is_closed = closed;
        may_die;
        assert(!is_closed);
        free_slots();
        if
        :: free -> skip
        :: else ->
            /* await_condition(not_full, free_slots() || closed) */
            do
            :: true ->
                prepare_wait(NOT_FULL);
                free_slots();
                if :: free -> break :: else -> skip fi;
                is_closed = closed; may_die;
                if :: is_closed -> break :: else -> skip fi;
                wait_for_notification(NOT_FULL);
                free_slots();
                if :: free -> break :: else -> skip fi;
                is_closed = closed; may_die;
                if :: is_closed -> break :: else -> skip fi
            od;
            key = 0;
            is_closed = closed;
            may_die;
            assert(!is_closed)
        fi;
#ifdef BATCH
        /* put_many(next, next + 1): as many as fit, at least this one (free).  (The real put_many does not
         * block: an application loops on it, which is what waiting for one free slot above models.) */
        batch = wanted;
        if :: batch > room -> batch = room :: else -> skip fi;
        i = 0;
        do
        :: i < batch -> slot[(pos + i) % CAPACITY] = next + i; may_die; i++            /* P4 */
        :: else -> break
        od;
        producer_position = pos + batch;                          /* P5, once */
        may_die;
#ifdef BUG_PUBLISH_NEWEST_FIRST
        i = batch;
        do
        :: i > 0 -> i--; atomic { seq[(pos + i) % CAPACITY] = pos + i + 1; skipped[(pos + i) % CAPACITY] = 0 }; may_die
        :: else -> break
        od;
        published = batch;
#else
        i = 0;
        do
        :: i < batch ->
            atomic { seq[(pos + i) % CAPACITY] = pos + i + 1; skipped[(pos + i) % CAPACITY] = 0; published = i + 1 };  /* P6 */
            may_die; i++
        :: else -> break
        od;
#endif
#ifndef BUG_NO_NOTIFY
        notify(NOT_EMPTY);                                        /* P7 */
#endif
        next = next + batch - 1;     /* and the ++ below */
        batch = 0; published = 0; i = 0; room = 0;
#elif defined(BUG_PUBLISH_BEFORE_WRITE)
        producer_position = pos + 1;                              /* P5 */
        may_die;
        atomic { seq[pos % CAPACITY] = pos + 1; skipped[pos % CAPACITY] = 0 };   /* P6 first */
        may_die;
        slot[pos % CAPACITY] = next;                              /* P4 */
        may_die;
        notify(NOT_EMPTY);                                        /* P7 */
#elif defined(BUG_NOTIFY_BEFORE_PUBLISH)
        slot[pos % CAPACITY] = next;                              /* P4 */
        may_die;
        producer_position = pos + 1;                              /* P5 */
        may_die;
        notify(NOT_EMPTY);                                        /* P7 first */
        atomic { seq[pos % CAPACITY] = pos + 1; skipped[pos % CAPACITY] = 0 };   /* P6 */
        may_die;
#elif defined(BUG_PUBLISH_BEFORE_POSITION)
        slot[pos % CAPACITY] = next;                              /* P4 */
        may_die;
        atomic { seq[pos % CAPACITY] = pos + 1; skipped[pos % CAPACITY] = 0 };   /* P6 first */
        may_die;
        producer_position = pos + 1;                              /* P5 */
        may_die;
        notify(NOT_EMPTY);                                        /* P7 */
#else
        slot[pos % CAPACITY] = next;                              /* P4 */
        may_die;
#ifdef ZERO_COPY
        /* reserve() handed the slot out (free_slots above) and the application wrote it in place;
         * commit() runs free_slots again (P1..P3, and the repair) and publishes at the position it finds */
        reserved = pos;
        free_slots();
        assert(free && pos == reserved);      /* nobody else moves the producer's position meanwhile */
        reserved = 0;
#endif
        producer_position = pos + 1;                              /* P5 */
        may_die;
        atomic { seq[pos % CAPACITY] = pos + 1; skipped[pos % CAPACITY] = 0 };   /* P6 */
        may_die;
#ifndef BUG_NO_NOTIFY
        notify(NOT_EMPTY);                                        /* P7 */
#endif
#endif
        pos = 0; free = false;
        next++
    od;
    /* close(), by an application that first waits for the consumer's acknowledgement of every message
     * (CLOSE_WHEN_DELIVERED), so that no lost wake-up is hidden by the wake-up of the close. */
#ifdef CLOSE_WHEN_DELIVERED
    ((received | may_be_lost) == ALL_MESSAGES);
#endif
    closed = 1;
    may_die;
    notify_always(NOT_EMPTY);
    notify_always(NOT_FULL);
    producer_done = true;
    goto end;
died:
    atomic {
        sleepers[NOT_FULL] = sleepers[NOT_FULL] & ~futex_self;
        deaths++;
        if
        :: batch > 0 ->   /* killed inside put_many: what it published is delivered, the rest may be lost */
            next = next + published;
            batch = batch - published;
            do
            :: batch > 0 -> may_be_lost = may_be_lost | (1 << next); next++; batch--
            :: else -> break
            od
        :: else ->
            if :: next <= MESSAGES -> may_be_lost = may_be_lost | (1 << next); next++ :: else -> skip fi
        fi;
        pos = 0; other = 0; first = 0; free = false; room = 0; published = 0; i = 0; is_closed = false; flag = 0;
        reserved = 0;
        key = 0; ret = 0
    };
    goto start;   /* the replacement producer */
end:
    skip
}

active proctype consumer()
{
    bool victim = consumer_victim;
    byte pos = 0;
    byte sequence = 0;
    bit was_skipped = 0;
    bool stepped = false;
    bool ready = false;
    bool is_closed = false;
    byte got = 0;
    byte peeked = 0;          /* ZERO_COPY: the position peek() handed out */
    bit flag = 0;
    int key = 0;
    byte ret = 0;

start:
    do
    :: true ->
        /* get() */
        ready_slots();
        if
        :: ready -> skip
        :: else ->
            is_closed = closed;
            may_die;
            if
            :: is_closed ->
                ready_slots()                  /* a message put before close() is still delivered */
            :: else ->
                /* await_condition(not_empty, closed || ready_slots()) */
                do
                :: true ->
                    prepare_wait(NOT_EMPTY);
                    is_closed = closed; may_die;
                    ready_slots();
                    if :: ready || is_closed -> break :: else -> skip fi;
                    wait_for_notification(NOT_EMPTY);
                    is_closed = closed; may_die;
                    ready_slots();
                    if :: ready || is_closed -> break :: else -> skip fi
                od;
                key = 0
            fi;
            if
            :: !ready -> assert(is_closed); break         /* get() returns closed */
            :: else -> skip
            fi
        fi;
#ifdef BUG_RELEASE_BEFORE_READ
        consumer_position = pos + 1;                              /* C5 first */
        may_die;
        got = slot[pos % CAPACITY];                               /* C4 */
        may_die;
#else
        got = slot[pos % CAPACITY];                               /* C4 */
        may_die;
#ifdef ZERO_COPY
        /* peek() handed the slot out (ready_slots above) and the application read it in place; release()
         * runs ready_slots again (C1, C2) and frees what it finds at the consumer's position */
        peeked = pos;
        ready_slots();
        assert(ready && pos == peeked);       /* a peeked message stays ready until released */
        peeked = 0;
#endif
        consumer_position = pos + 1;                              /* C5 */
        may_die;
#endif
#ifndef BUG_RELEASE_NO_NOTIFY
        notify(NOT_FULL);                                         /* C6 */
#endif
        /* get() returns the message */
        atomic {
            assert(got != 0);                                     /* a slot that was written */
            assert((received & (1 << got)) == 0);                 /* not got twice */
            assert(got > last_received);                          /* FIFO */
            received = received | (1 << got);
            last_received = got;
            got = 0; pos = 0; ready = false; is_closed = false
        }
    od;
    consumer_done = true;
    goto end;
died:
    atomic {
        sleepers[NOT_EMPTY] = sleepers[NOT_EMPTY] & ~futex_self;
        deaths++;
        if :: got != 0 -> may_be_lost = may_be_lost | (1 << got) :: else -> skip fi;
        pos = 0; sequence = 0; was_skipped = 0; stepped = false; ready = false; is_closed = false; got = 0; flag = 0;
        peeked = 0;
        key = 0; ret = 0
    };
    goto start;   /* the replacement consumer */
end:
    skip
}

/* When both roles are done, nothing was lost but what a death allows. */
active proctype auditor()
{
    (producer_done && consumer_done);
    assert((received | may_be_lost) == ALL_MESSAGES)
}

#include "progress.ltl"
