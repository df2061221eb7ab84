/*
 * segment.pml -- the create/open handshake of a named shared-memory segment.
 *
 * Mirrors src/shared_memory.cpp:
 *   SharedMemory::create_object   (proctype creator)
 *   SharedMemory::open_object     (proctype opener: await_sized_file, then await_object_header_until)
 * and the publication protocol of include/mproc/object_header.hpp (place_object_header,
 * publish_object_header, abandon_object_header; src/object_header.cpp).
 *
 * Algorithm
 *   create_object(name, total):
 *       fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL)    -- EEXIST: another creator won; fail
 *       ftruncate(fd, total)                              -- the kernel zero-fills: state = UNPUBLISHED
 *       base = mmap(fd, total)
 *       write header fields (magic, sizes, ...)           -- plain stores
 *       initialise the payload                            -- plain stores; may throw:
 *           unlink(name); store(header.state, ABANDONED, release); futex_wake(header.state, INT_MAX)
 *       store(header.state, PUBLISHED, release)           -- pairs with the opener's acquire load
 *       futex_wake(header.state, INT_MAX)
 *   open_object(name, deadline):
 *       fd = shm_open(name, O_RDWR)                       -- ENOENT: not created yet; fail
 *       while fstat(fd).size < header size:
 *           if deadline passed: fail "too small"
 *           sleep a little
 *       base = mmap(fd, size)
 *       loop:
 *           s = load(header.state, acquire)
 *           if s == PUBLISHED: validate header and payload; succeed
 *           if s == ABANDONED: fail "abandoned"
 *           if deadline passed: fail "not published"
 *           futex_wait(header.state, UNPUBLISHED, deadline - now)
 *   The creator may die (stop for ever) before or after any of its steps; its payload initialiser may
 *   throw before or between the payload's writes.
 *   Not modelled: the unlink of an abandoned name (an opener that comes later fails either way, with
 *   ENOENT or "abandoned", and a creator that re-creates the name makes a new file: another instance of
 *   this model); a file size between 0 and the header size (ftruncate changes 0 to the full size at once).
 *
 * Processes: CREATORS creators racing for O_EXCL (default 2) and OPENERS openers (default 2; the
 * checks also run three).
 * Time: each opener has DEADLINE_TICKS sleeps of the fstat loop before its deadline passes, and
 * its timed futex wait may expire at any moment, which means the deadline has passed.
 *
 * Properties
 *   (a) safety, assertions: an opener that succeeds saw every header field and every payload word
 *       initialised; an opener never touches the mapping beyond the end of the file (SIGBUS); exactly
 *       one creator owns the segment.  Checked with spurious futex returns enabled.
 *   (b) liveness, termination.ltl: every opener finishes, with success or an error, whatever the
 *       creators do and wherever they die.  Checked with pan -a (no fairness needed: the deadline
 *       bounds every loop).
 *   (c) no lost wake-up: with NO_DEADLINE and NO_CREATOR_DEATH, every opener that opened the segment
 *       finishes (termination.ltl, pan -a -f: weak fairness lets the creator run while an opener
 *       re-fstats) and succeeds, or fails with "abandoned" if the initialiser threw (assertion).
 *
 * Configuration
 *   NO_DEADLINE          openers never give up (the fstat loop and the wait are unbounded)
 *   NO_CREATOR_DEATH     creators run to completion
 *   NO_INIT_FAILURE      the payload initialiser never throws
 *   FUTEX_SPURIOUS_WAKEUPS  futex waits may return early (see ../common/futex.pml)
 *
 * Seeded bugs (each must be rejected)
 *   BUG_PUBLISH_BEFORE_INIT   creator publishes after the header, before the payload   -> (a) assertion
 *   BUG_NO_SIZE_WAIT          opener maps and reads without waiting for ftruncate       -> (a) assertion
 *   BUG_CREATE_WITHOUT_EXCL   creator checks for the name, then creates without O_EXCL  -> (a) assertion
 *   BUG_WAIT_WITHOUT_TIMEOUT  opener's futex wait has no timeout: a dead creator hangs it -> (b) cycle
 *   BUG_WAIT_NO_VALUE_CHECK   opener sleeps on its earlier load, unchecked: lost wake-up -> (c) cycle
 *   BUG_WAKE_BEFORE_PUBLISH   creator wakes before storing PUBLISHED: lost wake-up       -> (c) cycle
 *   BUG_ABANDON_WITHOUT_WAKE  a failed initialisation stores ABANDONED but wakes no one  -> (c) cycle
 */

#include "../common/futex.pml"

#ifndef CREATORS
#define CREATORS 2
#endif
#ifndef OPENERS
#define OPENERS 2
#endif
#ifndef DEADLINE_TICKS
#define DEADLINE_TICKS 1
#endif

#define UNPUBLISHED 0
#define PUBLISHED   1
#define ABANDONED   2

#define OPEN_PENDING        0
#define OPEN_OK             1
#define OPEN_ENOENT         2
#define OPEN_TOO_SMALL      3
#define OPEN_NOT_PUBLISHED  4
#define OPEN_ABANDONED      5

/* The name in /dev/shm and the file behind it. */
bool name_exists = false;
bool file_sized = false;       /* ftruncate(total) done; before it the size is 0 */
byte owners = 0;               /* creators whose shm_open created the file */

/* The mapping's contents: zero until written (the kernel zero-fills on ftruncate). */
byte state = UNPUBLISHED;
FUTEX_QUEUE(state_waiters);
bool header_magic = false;
bool header_sizes = false;
bool payload_first = false;
bool payload_last = false;

byte openers_done = 0;

#ifdef NO_CREATOR_DEATH
#define creator_may_die  skip
#else
#define creator_may_die  if :: goto died :: skip fi
#endif

#ifdef NO_INIT_FAILURE
#define initialiser_may_throw  skip
#else
#define initialiser_may_throw  if :: goto initialiser_threw :: skip fi
#endif

#define creator_publish \
    state = PUBLISHED;  /* store-release: pairs with the opener's load-acquire */ \
    creator_may_die

active [CREATORS] proctype creator()
{
    creator_may_die;

    /* shm_open(O_CREAT | O_EXCL) */
#ifdef BUG_CREATE_WITHOUT_EXCL
    if
    :: name_exists -> goto lost_race    /* looked first ...                  */
    :: else -> skip
    fi;
    name_exists = true;                 /* ... then opened with O_CREAT only */
    owners++;
#else
    atomic {
        if
        :: name_exists -> goto lost_race
        :: else -> name_exists = true; owners++
        fi
    };
#endif
    assert(owners == 1);
    creator_may_die;

    file_sized = true;                  /* ftruncate(total) */
    creator_may_die;
    /* mmap has no effect another process can see */

    header_magic = true;
    creator_may_die;
    header_sizes = true;
    creator_may_die;
#ifdef BUG_PUBLISH_BEFORE_INIT
    creator_publish;
#endif
    initialiser_may_throw;
    payload_first = true;
    creator_may_die;
    initialiser_may_throw;
    payload_last = true;
    creator_may_die;

#ifdef BUG_WAKE_BEFORE_PUBLISH
    futex_wake_all(state_waiters);
    creator_may_die;
#endif
#ifndef BUG_PUBLISH_BEFORE_INIT
    creator_publish;
#endif
#ifndef BUG_WAKE_BEFORE_PUBLISH
    futex_wake_all(state_waiters);
#endif
    goto done;

initialiser_threw:                      /* unlink (not modelled), then abandon_object_header */
    state = ABANDONED;                  /* store-release: pairs with the opener's load-acquire */
    creator_may_die;
#ifndef BUG_ABANDON_WITHOUT_WAKE
    futex_wake_all(state_waiters);
#endif
    goto done;

lost_race:                              /* EEXIST: create_object fails */
    skip;
died:
    skip;
done:
    skip
}

#if defined(NO_DEADLINE) || defined(BUG_WAIT_WITHOUT_TIMEOUT)
#define opener_wait_timed  FUTEX_UNTIMED
#else
#define opener_wait_timed  FUTEX_TIMED
#endif

#define opener_may_read_mapping  assert(file_sized)    /* else the access raises SIGBUS */

active [OPENERS] proctype opener()
{
    byte result = OPEN_PENDING;
    byte observed;
    byte waited;
    bool opened = false;
#ifndef NO_DEADLINE
    byte ticks_left = DEADLINE_TICKS;
#endif

    /* shm_open(O_RDWR) */
    if
    :: name_exists -> opened = true
    :: else -> result = OPEN_ENOENT; goto finished
    fi;

#ifndef BUG_NO_SIZE_WAIT
    /* fstat until the header fits */
    do
    :: file_sized -> break
#ifdef NO_DEADLINE
    :: else -> skip                                 /* sleep, then fstat again */
#else
    :: else ->
        if
        :: ticks_left > 0 -> ticks_left--           /* sleep, then fstat again */
        :: else -> result = OPEN_TOO_SMALL; goto finished
        fi
#endif
    od;
#endif
    /* mmap has no effect another process can see */

    do
    :: opener_may_read_mapping;
       observed = state;                            /* load-acquire */
       if
       :: observed == PUBLISHED ->
           assert(header_magic && header_sizes && payload_first && payload_last);
           result = OPEN_OK;
           break
       :: observed == ABANDONED -> result = OPEN_ABANDONED; break
       :: else -> skip
       fi;
#ifndef NO_DEADLINE
       if
       :: ticks_left == 0 -> result = OPEN_NOT_PUBLISHED; break
       :: else -> skip
       fi;
#endif
#ifdef BUG_WAIT_NO_VALUE_CHECK
       futex_sleep_unchecked(state_waiters, opener_wait_timed, waited);
#else
       futex_wait(state, UNPUBLISHED, state_waiters, opener_wait_timed, waited);
#endif
#ifndef NO_DEADLINE
       if
       :: waited == FUTEX_ETIMEDOUT -> ticks_left = 0
       :: else -> skip
       fi;
#endif
       waited = FUTEX_WOKEN                         /* forget it: only the state word decides */
    od;

finished:
#if defined(NO_DEADLINE) && defined(NO_CREATOR_DEATH)
    assert(!opened || result == OPEN_OK || result == OPEN_ABANDONED);
#endif
    openers_done++
}

#include "termination.ltl"
