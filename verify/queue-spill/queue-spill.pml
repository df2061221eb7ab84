/*
 * queue-spill.pml -- the spill arena of a ByteQueue over an MPMC ring (src/queue_spill.hpp, the large path
 * of src/queue.cpp): blocks tagged with the ring position of the message they carry, and their
 * reclamation from the ring's state alone, with a producer or a consumer killed at any step.
 *
 * Mirrors (step names as in the C++):
 *   QueueCore::put_spilled (MPMC)   wait_for_spill_space (reclaim, then wait until enough blocks are free
 *                                   or reclaimable); reserve() slot p; SpillArena::allocate: CAS tag
 *                                   0 -> p + 1 per block; short of blocks: free them and cancel() (the slot
 *                                   is published skipped), start over; SpillArena::write, one step per
 *                                   block; the descriptor into the slot; commit() (D, R)
 *   QueueCore::get_message (MPMC)   peek() slot p (a skipped slot is stepped over); check_chain (one load
 *                                   per block: tag == p + 1); SpillArena::read (one copy step per block,
 *                                   then the re-check of every tag); release() (D', R'); SpillArena::free
 *                                   (CAS p + 1 -> 0 per block)
 *   QueueCore::reclaim_spill        per block: load the tag; RawMpmcRing::position_finished(p) (slot p's
 *                                   sequence >= p + CAPACITY, or == p + 1 with the skip flag); if not,
 *                                   repair_if_claimer_died(p) and judge again; CAS tag -> 0
 *   the kernel's robust-futex exit  a dead thread's held claim becomes OWNER_DIED (DEAD here)
 * The ring itself is verify/queue's model: here its reserve (K, V, M), commit (D, R), peek (K', V', M'),
 * release (D', R') and the repair of a dead claimer (repair_slot_of_dead_claimer) are one atomic step each,
 * and waits are blocking guards (the futex sleeps, their wake-ups and re-checks are verified there and in
 * verify/queue-eventcount); a wait for space is a guard "enough blocks free, or one reclaimable", which is
 * what the code's 50 ms re-check of wait_for_spill_space reaches.
 *
 * Processes: PRODUCERS producers put PER_PRODUCER messages each (ids 1..MESSAGES), every message NEED
 * blocks of an arena of BLOCKS (default 2 of 3: one message at a time fits, so producers must wait for
 * and reclaim space); CONSUMERS consumers get until the ring is closed and drained; a closer closes the
 * ring once every producer finished or died; a janitor, once everybody finished or died, drains what is
 * left (as a new consumer would) and reclaims.  VICTIM (a _pid: init is 0, producers 1..PRODUCERS, then
 * the consumers) may be killed after any of its steps.
 *
 * Properties (assertions; and no invalid end state: nobody waits for ever)
 *   torn:       a consumer that hands out a message read exactly its bytes (every block's content is the
 *               message's id when read), and the checks never fail without a hostile peer (a failing
 *               check would drop a message that nobody was in the middle of putting or getting)
 *   duplicate:  no message is handed out twice
 *   loss:       at the end every message published (committed) was handed out, except at most the one a
 *               killed consumer was getting (a killed producer's unpublished message is not published)
 *   leak:       at the end (after the janitor's reclaim) every block is free
 *
 * Seeded bugs (each must be rejected)
 *   BUG_FINISHED_BY_DEQUEUE  position_finished judged from the dequeue position (p < dequeue position)
 *                            instead of the slot's sequence: a consumer's blocks are reclaimed while it
 *                            copies them, and a producer rewrites them                   -> torn
 *   BUG_NO_REPAIR            reclaim does not repair a slot whose claimer the kernel reported dead: a
 *                            consumer killed holding a message keeps its blocks for good  -> leak / end state
 *   BUG_TAG_NEXT_POSITION    the producer tags its blocks with the enqueue position it expects before
 *                            reserving the slot (not under the slot's claim): a death before the reserve
 *                            leaves blocks tagged for a position another message then takes -> leak / torn
 */

#ifndef CAPACITY
#define CAPACITY 2
#endif
#ifndef PRODUCERS
#define PRODUCERS 1
#endif
#ifndef PER_PRODUCER
#define PER_PRODUCER 2
#endif
#ifndef CONSUMERS
#define CONSUMERS 2
#endif
#define BLOCKS 3                  /* the wait's guard below is written out for three */
#ifndef NEED
#define NEED 2
#endif
#ifndef VICTIM
#define VICTIM 255                /* nobody dies */
#endif

#define MESSAGES      (PRODUCERS * PER_PRODUCER)
#define DEAD          15          /* a claim word the kernel marked OWNER_DIED */
#define my_tid        (_pid + 1)
#define can_die       (_pid == VICTIM && deaths == 0)
#define may_die       if :: can_die -> goto died :: true -> skip fi
#define slot(p)       ((p) % CAPACITY)

/* The ring (abstracted: see the header). */
byte enqueue_position = 0;
byte dequeue_position = 0;
byte sequence[CAPACITY];
byte claim[CAPACITY];
bit skipped[CAPACITY];
byte descriptor_id[CAPACITY];     /* the slot's descriptor: message id, tag, blocks (a bit set) */
byte descriptor_tag[CAPACITY];
byte descriptor_blocks[CAPACITY];
bit closed = 0;

/* The arena. */
byte tag[BLOCKS];                 /* 0 free, else 1 + the position of the message */
byte content[BLOCKS];             /* the id of the message whose bytes the block holds */

/* Ghost state. */
int delivered = 0;                /* bit m: message m was handed out */
byte deaths = 0;
byte producers_finished = 0;      /* done or dead */
byte finished = 0;                /* producers and consumers done or dead */
byte consumers_finished = 0;
byte committed = 0;               /* messages published (commit) */
bool ring_ready = false;

inline init_ring()
{
    atomic {
        i = 0;
        do
        :: i < CAPACITY -> sequence[i] = i; i++
        :: else -> break
        od;
        i = 0;
        ring_ready = true
    }
}

/* RawMpmcRing::position_finished(p). */
inline position_finished(p, result)
{
#ifdef BUG_FINISHED_BY_DEQUEUE
    result = (p < dequeue_position)
#else
    result = (sequence[slot(p)] >= p + CAPACITY) || (sequence[slot(p)] == p + 1 && skipped[slot(p)])
#endif
}

/* repair_slot_of_dead_claimer, holding the dead claimer's slot (one step: verify/queue checks its inside). */
inline repair(index)
{
    if
    :: claim[index] == DEAD ->
        if
        :: sequence[index] % CAPACITY == index && enqueue_position > sequence[index] ->
            skipped[index] = 1; sequence[index] = sequence[index] + 1     /* a producer died after M */
        :: sequence[index] % CAPACITY == (index + 1) % CAPACITY && dequeue_position > sequence[index] - 1 ->
            sequence[index] = sequence[index] - 1 + CAPACITY              /* a consumer died after M' */
        :: else -> skip
        fi;
        claim[index] = 0
    :: else -> skip
    fi
}

/* Whether block k is free now or free-able by a reclaim: free, tagged for a finished position, or for a
 * position whose slot holds a dead claim (the reclaim repairs it first).  An expression, so that a wait
 * can block on it: (finished_expr is position_finished as an expression). */
#ifdef BUG_FINISHED_BY_DEQUEUE
#define finished_expr(p) ((p) < dequeue_position)
#else
#define finished_expr(p) (sequence[slot(p)] >= (p) + CAPACITY || (sequence[slot(p)] == (p) + 1 && skipped[slot(p)]))
#endif
#ifdef BUG_NO_REPAIR
#define in_sight(k) (tag[k] == 0 || finished_expr(tag[k] - 1))
#else
#define in_sight(k) (tag[k] == 0 || finished_expr(tag[k] - 1) || claim[slot(tag[k] - 1)] == DEAD)
#endif
#define as_count(c) ((c) -> 1 : 0)
/* The wait's guard, written out for the three blocks of the checks. */
#define blocks_in_sight (as_count(in_sight(0)) + as_count(in_sight(1)) + as_count(in_sight(2)))

inline free_count(result)
{
    result = 0;
    k = 0;
    do
    :: k < BLOCKS -> if :: tag[k] == 0 -> result++ :: else -> skip fi; k++
    :: else -> break
    od;
    k = 0
}

/* QueueCore::reclaim_spill over SpillArena::reclaim: one step per load, judgement, repair and CAS. */
inline reclaim()
{
    b = 0;
    do
    :: b < BLOCKS ->
        t = tag[b];
        may_die;
        if
        :: t != 0 ->
            atomic { position_finished(t - 1, judged) };
            may_die;
#ifndef BUG_NO_REPAIR
            if
            :: !judged ->
                atomic { repair(slot(t - 1)) };
                may_die;
                atomic { position_finished(t - 1, judged) }
            :: else -> skip
            fi;
#endif
            if
            :: judged ->
                atomic { if :: tag[b] == t -> tag[b] = 0 :: else -> skip fi };
                may_die
            :: else -> skip
            fi
        :: else -> skip
        fi;
        b++
    :: else -> break
    od;
    b = 0; t = 0; judged = false
}

/* SpillArena::free (and the release of blocks a failed allocation took): CAS tag -> 0 per block. */
inline free_blocks(mask, expected)
{
    b = 0;
    do
    :: b < BLOCKS ->
        if
        :: (mask & (1 << b)) != 0 ->
            atomic { if :: tag[b] == expected -> tag[b] = 0 :: else -> skip fi };
            may_die
        :: else -> skip
        fi;
        b++
    :: else -> break
    od;
    b = 0
}

proctype producer(byte me)
{
    byte i, j = 0, k, b, t, count, got, mask, id, position, expected_tag;
    bool judged;
    (ring_ready);
    do
    :: j < PER_PRODUCER ->
        id = me * PER_PRODUCER + j + 1;
wait_for_space:
        /* wait_for_spill_space: reclaim, then wait until enough is free or something is reclaimable. */
        reclaim();
        (blocks_in_sight >= NEED);
        free_count(count);
        if
        :: count < NEED -> goto wait_for_space
        :: else -> skip
        fi;
#ifdef BUG_TAG_NEXT_POSITION
        expected_tag = enqueue_position + 1;
#endif
        /* allocate (before the reserve in the seeded bug, after it in the code) */
#ifndef BUG_TAG_NEXT_POSITION
reserve:
        if
        :: atomic { claim[slot(enqueue_position)] == DEAD -> repair(slot(enqueue_position)) }; goto reserve
        :: atomic { sequence[slot(enqueue_position)] == enqueue_position && claim[slot(enqueue_position)] == 0 ->
                    position = enqueue_position; claim[slot(position)] = my_tid; enqueue_position++ }
        fi;
        may_die;
        expected_tag = position + 1;
#endif
        got = 0; mask = 0; b = 0;
        do
        :: got < NEED && b < BLOCKS ->
            atomic { if :: tag[b] == 0 -> tag[b] = expected_tag; mask = mask | (1 << b); got++ :: else -> skip fi };
            may_die;
            b++
        :: else -> break
        od;
        b = 0;
        if
        :: got < NEED ->
            free_blocks(mask, expected_tag);
#ifndef BUG_TAG_NEXT_POSITION
            atomic { skipped[slot(position)] = 1; sequence[slot(position)] = position + 1; claim[slot(position)] = 0 };
            may_die;
#endif
            goto wait_for_space
        :: else -> skip
        fi;
#ifdef BUG_TAG_NEXT_POSITION
reserve_late:
        if
        :: atomic { claim[slot(enqueue_position)] == DEAD -> repair(slot(enqueue_position)) }; goto reserve_late
        :: atomic { sequence[slot(enqueue_position)] == enqueue_position && claim[slot(enqueue_position)] == 0 ->
                    position = enqueue_position; claim[slot(position)] = my_tid; enqueue_position++ }
        fi;
        may_die;
#endif
        /* write: one copy step per block */
        do
        :: b < BLOCKS ->
            if :: (mask & (1 << b)) != 0 -> content[b] = id; may_die :: else -> skip fi;
            b++
        :: else -> break
        od;
        b = 0;
        atomic { descriptor_id[slot(position)] = id; descriptor_tag[slot(position)] = expected_tag;
                 descriptor_blocks[slot(position)] = mask };
        may_die;
        /* commit: D, R */
        atomic { skipped[slot(position)] = 0; sequence[slot(position)] = position + 1; claim[slot(position)] = 0;
                 committed++ };
        may_die;
        j++
    :: else -> break
    od;
    atomic { producers_finished++; finished++ };
    goto end;
died:
    atomic {
        i = 0;
        do
        :: i < CAPACITY -> if :: claim[i] == my_tid -> claim[i] = DEAD :: else -> skip fi; i++
        :: else -> break
        od;
        deaths++; producers_finished++; finished++
    };
end:
    skip
}

/* One get_message: peek, check, copy, re-check, release, free. Sets got to 1 when a message was handed out,
 * to 0 after stepping over a skipped slot or repairing; drained to true when closed and empty. */
inline get_one(drained)
{
    got = 2;
    if
    :: atomic { claim[slot(dequeue_position)] == DEAD -> repair(slot(dequeue_position)); got = 0 }
    :: atomic { sequence[slot(dequeue_position)] == dequeue_position + 1 && claim[slot(dequeue_position)] == 0 ->
                position = dequeue_position; claim[slot(position)] = my_tid; dequeue_position++ }
    :: atomic { closed && sequence[slot(dequeue_position)] != dequeue_position + 1 &&
                claim[slot(dequeue_position)] != DEAD -> drained = true; got = 0 }
    fi;
    if
    :: got == 2 ->
        may_die;
        if
        :: skipped[slot(position)] ->
            atomic { sequence[slot(position)] = position + CAPACITY; claim[slot(position)] = 0 };
            got = 0
        :: else ->
            atomic { id = descriptor_id[slot(position)]; expected_tag = descriptor_tag[slot(position)];
                     mask = descriptor_blocks[slot(position)] };
            assert(expected_tag == position + 1);
            sound = true; whole = true;
            /* check_chain */
            b = 0;
            do
            :: b < BLOCKS ->
                if :: (mask & (1 << b)) != 0 -> sound = sound && tag[b] == expected_tag; may_die :: else -> skip fi;
                b++
            :: else -> break
            od;
            /* read: one copy step per block, then the re-check */
            b = 0;
            do
            :: b < BLOCKS ->
                if :: (mask & (1 << b)) != 0 -> whole = whole && content[b] == id; may_die :: else -> skip fi;
                b++
            :: else -> break
            od;
            b = 0;
            do
            :: b < BLOCKS ->
                if :: (mask & (1 << b)) != 0 -> sound = sound && tag[b] == expected_tag :: else -> skip fi;
                b++
            :: else -> break
            od;
            b = 0;
            may_die;
            /* release: D', R' */
            atomic { sequence[slot(position)] = position + CAPACITY; claim[slot(position)] = 0 };
            may_die;
            /* torn: the checks hold without a hostile peer, and a message handed out is whole */
            assert(sound);
            assert(whole);
            assert((delivered & (1 << id)) == 0);
            delivered = delivered | (1 << id);
            got = 1;
            free_blocks(mask, expected_tag)
        fi
    :: else -> skip
    fi
}

proctype consumer()
{
    byte i, k, b, t, got, mask, id, position, expected_tag;
    bool judged, sound, whole, drained = false;
    (ring_ready);
    do
    :: !drained -> get_one(drained)
    :: else -> break
    od;
    atomic { finished++; consumers_finished++ };
    goto end;
died:
    atomic {
        i = 0;
        do
        :: i < CAPACITY -> if :: claim[i] == my_tid -> claim[i] = DEAD :: else -> skip fi; i++
        :: else -> break
        od;
        deaths++; finished++; consumers_finished++
    };
end:
    skip
}

/* An application that joins its producers, then closes the ring. */
proctype closer()
{
    (producers_finished == PRODUCERS);
    closed = 1
}

/* A consumer started once every consumer finished or died (the replacement of a dead one): drains what is
 * left until the ring is closed and empty; then, with everybody finished or dead, reclaims and checks. */
proctype janitor()
{
    byte i, k, b, t, got, mask, id, position, expected_tag, count;
    bool judged, sound, whole, drained = false;
    (consumers_finished == CONSUMERS);
    do
    :: !drained -> get_one(drained)
    :: else -> break
    od;
    (finished == PRODUCERS + CONSUMERS);
    reclaim();
    /* leak: every block is back */
    free_count(count);
    assert(count == BLOCKS);
    /* loss: every message published was handed out, but the one a consumer killed was getting */
    i = 1; count = 0;
    do
    :: i <= MESSAGES -> if :: (delivered & (1 << i)) != 0 -> count++ :: else -> skip fi; i++
    :: else -> break
    od;
    assert(count <= committed && count + (VICTIM > PRODUCERS -> deaths : 0) >= committed);
    goto end;
died:  /* the janitor never dies (VICTIM names a producer or a consumer) */
    assert(false);
end:
    skip
}

init {
    byte i;
    init_ring();
    atomic {
        i = 0;
        do
        :: i < PRODUCERS -> run producer(i); i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < CONSUMERS -> run consumer(); i++
        :: else -> break
        od;
        run closer();
        run janitor()
    }
}
