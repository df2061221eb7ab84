/*
 * pool.pml -- the life of a Pool's tasks: queued in chunks, sent to a worker, resolved from the worker's
 * result frame, or -- when the worker dies at any step -- split by its progress slot and re-queued or
 * failed.
 *
 * Mirrors src/pool.cpp:
 *   PoolCore::Impl::loop             (proctype pool_thread: dispatch, results, deaths)
 *   PoolCore::Impl::send_chunk       (dispatch)
 *   PoolCore::Impl::receive          (receive_results: chunk id checked, tasks resolved)
 *   PoolCore::Impl::settle_death     (settle_death: drain the socket, read the progress slot)
 *   PoolCore::Impl::requeue_after_death
 *   run_worker                       (proctype worker: progress slot, tasks, result frame)
 *
 * Algorithm
 *   pool thread, for ever until every task is resolved:
 *     an idle live worker w and a pending chunk c:  w.chunk = c; send(w.socket, c)
 *     a result frame (id, tasks) on w.socket:        if w.chunk && id == w.chunk.id: resolve each task
 *                                                   as a value; w.chunk = none  (else: kill w)
 *     w ended (its pidfd):                          drain w.socket as above; then if w.chunk:
 *          p = w.progress;  if p.chunk == w.chunk.id and p.task is one of the chunk's tasks:
 *               the running task: attempts < RETRIES ? queue it alone (attempts + 1) : resolve WorkerDied
 *               the chunk's other tasks: queue them (attempts 0)
 *          else: queue the whole chunk again (same attempts)
 *          start a replacement on a new socket and a reset progress slot
 *   worker w: loop: c = recv(w.socket); progress.chunk = c.id;
 *          for each task t of c: progress.task = t; run t;  progress.task = past-the-end; send results
 *   A worker may die (SIGKILL) before or after any of its steps; at most MAX_DEATHS deaths in a run.
 * Not modelled: task_timeout (a death the pool causes, settled the same way, reported as TimedOut);
 * terminate/close; maxtasksperchild (a worker that leaves between chunks: no chunk to settle).
 *
 * Processes: the pool thread, W worker slots (default 2), N tasks (default 3) in one call, first queued
 * as one chunk of N (CHUNKS=2: as chunks {0,1} and {2}).
 *
 * Properties
 *   (a) safety, assertions: each task is resolved at most once (a value, or WorkerDied), and a task is
 *       resolved as WorkerDied only after RETRIES re-runs.
 *   (b) no task is lost: every run ends with every task resolved (valid end states: pan reports an
 *       invalid end state if the pool thread waits with a task unresolved and nothing left to happen).
 *   (c) no result is thrown away: when a worker is replaced, its socket holds no frame it sent that the
 *       pool has not read (assertion).
 *
 * Seeded bugs (each must be rejected)
 *   BUG_REQUEUE_RESETS_ATTEMPTS  a chunk whose worker died before starting it is queued with its re-run
 *                             count reset: a task is re-run more than RETRIES times       -> (a) assertion
 *   BUG_NO_DRAIN              a death is settled before the frames the worker sent are read: results
 *                             die with the socket                                         -> (c) assertion
 *   BUG_DROP_FINISHED         after a death, only the tasks not yet reached are re-queued: the finished
 *                             ones (whose results died with the worker) are never resolved -> (b) end-state
 */

#ifndef W
#define W 2
#endif
#ifndef N
#define N 3
#endif
#ifndef RETRIES
#define RETRIES 1
#endif
#ifndef MAX_DEATHS
#define MAX_DEATHS 2
#endif

#define NONE 255
#define PAST_END 254

#define PENDING 0
#define VALUE   1
#define DIED    2

byte state[N];
byte attempts_of[N];    /* re-runs a task has had (for property (a)) */

/* Pending chunks: a FIFO of (task mask, attempts). */
#define MAXPEND 8
byte pend_mask[MAXPEND];
byte pend_attempts[MAXPEND];
byte npend = 0;

/* Per worker slot: what the pool thread knows, and the progress slot the worker writes. */
bool busy[W];
byte cur_id[W];
byte cur_mask[W];
byte cur_attempts[W];
byte prog_chunk[W];
byte prog_task[W];
bool ended[W];          /* the worker's pidfd is readable */
byte incarnation[W];    /* which worker process runs in the slot (a new socket each time) */

/* Sockets: a frame carries the incarnation it belongs to, so a replacement never reads its predecessor's
 * frames (in C++ each incarnation has its own socketpair). */
chan to_worker[W] = [1] of { byte, byte, byte };   /* incarnation, chunk id, mask */
chan to_pool[W] = [2] of { byte, byte, byte };     /* incarnation, chunk id, mask */

byte deaths = 0;

inline push_pending(mask, attempts) {
    assert(npend < MAXPEND);
    pend_mask[npend] = mask;
    pend_attempts[npend] = attempts;
    npend++
}

inline pop_pending(mask, attempts) {
    mask = pend_mask[0];
    attempts = pend_attempts[0];
    byte k = 0;
    for (k : 1 .. MAXPEND - 1) {
        pend_mask[k - 1] = pend_mask[k];
        pend_attempts[k - 1] = pend_attempts[k]
    }
    npend--
}

inline resolve(t, as) {
    assert(state[t] == PENDING);   /* (a): once */
    state[t] = as
}

/* A worker may die here: the kernel marks it ended; it runs no further step. */
#define may_die  if :: deaths < MAX_DEATHS -> deaths++; ended[w] = true; goto dead :: true -> skip fi

proctype worker(byte w; byte me) {
    byte id, mask, from, t;
end_wait:
    do
    :: to_worker[w]?from, id, mask ->
        if :: from != me -> goto dead :: else -> skip fi;   /* (cannot happen: see the sockets above) */
        may_die;
        prog_chunk[w] = id;
        for (t : 0 .. N - 1) {
            if
            :: (mask & (1 << t)) != 0 ->
                prog_task[w] = t;
                may_die         /* inside task t */
            :: else -> skip
            fi
        }
        prog_task[w] = PAST_END;
        may_die;                /* finished, frame not sent */
        to_pool[w]!me, id, mask;
        may_die                 /* frame sent */
    od;
dead:
    skip
}

inline receive_results(w) {
    to_pool[w]?from, id, mask;
    if
    :: from != incarnation[w] -> skip      /* a frame of an earlier incarnation: its socket is closed */
    :: from == incarnation[w] && busy[w] && id == cur_id[w] ->
        for (t : 0 .. N - 1) {
            if :: (mask & (1 << t)) != 0 -> resolve(t, VALUE) :: else -> skip fi
        }
        busy[w] = false
    :: else -> skip                         /* in C++: the worker is killed, and settled on its death */
    fi
}

inline settle_death(w) {
#ifndef BUG_NO_DRAIN
    do
    :: nempty(to_pool[w]) -> receive_results(w)
    :: empty(to_pool[w]) -> break
    od;
#endif
    if
    :: busy[w] ->
        if
        :: prog_chunk[w] == cur_id[w] && prog_task[w] < N && (cur_mask[w] & (1 << prog_task[w])) != 0 ->
            running = prog_task[w];
            if
            :: cur_attempts[w] < RETRIES ->
                attempts_of[running]++;
                assert(attempts_of[running] <= RETRIES);   /* (a): never more re-runs than RETRIES */
                push_pending(1 << running, cur_attempts[w] + 1)
            :: else ->
                assert(attempts_of[running] == RETRIES);   /* (a): failed only after its re-runs */
                resolve(running, DIED)
            fi;
            others = cur_mask[w] & ~(1 << running);
#ifdef BUG_DROP_FINISHED
            /* only the tasks after the running one */
            for (t : 0 .. N - 1) {
                if :: t <= running -> others = others & ~(1 << t) :: else -> skip fi
            }
#endif
            if :: others != 0 -> push_pending(others, 0) :: else -> skip fi
        :: else ->
#ifdef BUG_REQUEUE_RESETS_ATTEMPTS
            push_pending(cur_mask[w], 0)
#else
            push_pending(cur_mask[w], cur_attempts[w])
#endif
        fi;
        busy[w] = false
    :: else -> skip
    fi;
    /* A replacement: a new socket (frames of the dead one are gone), a reset progress slot. */
    do
    :: nempty(to_worker[w]) -> to_worker[w]?from, id, mask
    :: empty(to_worker[w]) -> break
    od;
    do
    :: nempty(to_pool[w]) ->
        to_pool[w]?from, id, mask;
        assert(from != incarnation[w])      /* (c): a frame the dead worker sent, never read */
    :: empty(to_pool[w]) -> break
    od;
    prog_chunk[w] = 0;
    prog_task[w] = NONE;
    ended[w] = false;
    incarnation[w]++;
    run worker(w, incarnation[w])
}

/* Chunk ids need only tell a worker's current chunk from its earlier ones (the progress slot is reset
 * for each new worker): they count modulo 4 per slot, never 0 (the reset value). */
inline dispatch(w) {
    pop_pending(mask, attempts);
    busy[w] = true;
    cur_id[w] = (cur_id[w] % 3) + 1;
    cur_mask[w] = mask;
    cur_attempts[w] = attempts;
    to_worker[w]!incarnation[w], cur_id[w], mask
}

proctype pool_thread() {
    byte w, t, from, id, mask, attempts, running, others;
    do
    :: atomic {
        (state[0] != PENDING && state[1] != PENDING && state[N - 1] != PENDING) -> break
       }
    :: else ->
        if
        /* dispatch to an idle live worker (the pool thread's own steps are atomic: it is the only
         * writer of everything they touch but the progress slots, which it reads only from a dead
         * worker, and the sockets, read and written whole) */
        :: atomic { npend > 0 && !busy[0] && !ended[0] -> w = 0; dispatch(w) }
        :: atomic { npend > 0 && !busy[W - 1] && !ended[W - 1] -> w = W - 1; dispatch(w) }
        :: atomic { nempty(to_pool[0]) -> w = 0; receive_results(w) }
        :: atomic { nempty(to_pool[W - 1]) -> w = W - 1; receive_results(w) }
        :: atomic { ended[0] -> w = 0; settle_death(w) }
        :: atomic { ended[W - 1] -> w = W - 1; settle_death(w) }
        fi
    od;
    /* (b) every task resolved */
    assert(state[0] != PENDING && state[1] != PENDING && state[N - 1] != PENDING)
}

init {
    byte w;
    atomic {
        for (w : 0 .. W - 1) {
            prog_task[w] = NONE;
            run worker(w, 0)
        }
#if CHUNKS == 2
        push_pending(3, 0);
        push_pending(4, 0);
#else
        push_pending(7, 0);
#endif
        run pool_thread()
    }
}
