#!/usr/bin/env python3
"""Python's side of the BM_Lock_*/python benchmarks (bench/bench_lock.cpp): times COUNT operations of
multiprocessing.Lock inside Python and prints the result on one line. Standard library only; the
'fork' start method, as the C++ peers fork.

usage: python_lock.py uncontended COUNT
           COUNT times `with lock: counter += 1` in one process.
           Prints: elapsed_ns
       python_lock.py handoff COUNT
           Two processes each run COUNT/2 times `with lock: counter.value += 1` at once on one lock
           (COUNT even). Prints: elapsed_ns (from the start signal until the later one finished)
       python_lock.py pingpong COUNT
           Strict alternation: a turn number written only under the lock; each side waits for its turn
           reading the number outside the lock (yielding the CPU every 64 reads, as the C++ side does
           every 1024 pauses), then takes the lock, checks it and advances it. COUNT round trips.
           Prints: elapsed_ns p50_ns p99_ns p99.9_ns (per round trip, nearest rank)
Exit status 1, with the reason on stderr, when a counter or turn number is not what the lock guarantees.
"""
import math
import multiprocessing
import os
import sys
import time

STOP_TURN = -1  # never a turn either side waits for: tells the peer to leave
YIELD_EVERY_POLLS = 64  # about ten microseconds of polling in CPython


def percentile(sorted_samples, fraction):
    rank = math.ceil(fraction * len(sorted_samples))
    return sorted_samples[min(max(rank, 1), len(sorted_samples)) - 1]


def uncontended(count):
    lock = multiprocessing.get_context("fork").Lock()
    counter = 0
    with lock:  # the first acquire warms what a loop of acquires does not pay again
        pass
    began = time.monotonic_ns()
    for _ in range(count):
        with lock:
            counter += 1
    elapsed = time.monotonic_ns() - began
    if counter != count:
        sys.exit(f"python_lock.py uncontended: counter {counter}, expected {count}")
    print(elapsed)


def add_under_lock(lock, counter, times, finished_at):
    for _ in range(times):
        with lock:
            counter.value += 1
    finished_at.value = time.monotonic_ns()


def add_under_lock_on_signal(lock, counter, times, finished_at, ready, go):
    ready.set()
    go.wait()
    add_under_lock(lock, counter, times, finished_at)


def handoff(count):
    if count % 2 != 0:
        sys.exit(f"python_lock.py handoff: COUNT {count} must be even")
    context = multiprocessing.get_context("fork")
    lock = context.Lock()
    # RawValue: no lock of its own; the lock under test is what keeps `+= 1` (a read and a write) whole.
    counter = context.RawValue("q", 0)
    peer_finished_at = context.RawValue("q", 0)
    own_finished_at = context.RawValue("q", 0)
    ready, go = context.Event(), context.Event()
    peer = context.Process(target=add_under_lock_on_signal,
                           args=(lock, counter, count // 2, peer_finished_at, ready, go))
    peer.start()
    ready.wait()
    began = time.monotonic_ns()
    go.set()
    add_under_lock(lock, counter, count // 2, own_finished_at)
    peer.join()
    if peer.exitcode != 0:
        sys.exit(f"python_lock.py handoff: peer exited with {peer.exitcode}")
    if counter.value != count:
        sys.exit(f"python_lock.py handoff: counter {counter.value}, expected {count}: mutual exclusion broken")
    print(max(peer_finished_at.value, own_finished_at.value) - began)


def await_turn(turn, current, wanted):
    polls = 0
    while True:
        seen = turn.value
        if seen in (wanted, STOP_TURN):
            return seen
        if seen != current:
            sys.exit(f"python_lock.py pingpong: turn {seen} while waiting for {wanted}")
        polls += 1
        if polls % YIELD_EVERY_POLLS == 0:
            # As the C++ side's Spinner does: on a busy machine the other side may need this very CPU.
            os.sched_yield()


def pass_turn(lock, turn, expected):
    with lock:
        if turn.value != expected:
            sys.exit(f"python_lock.py pingpong: turn {turn.value} under the lock, expected {expected}")
        turn.value = expected + 1


def answer_turns(lock, turn):
    awaited = 1
    while await_turn(turn, awaited - 1, awaited) != STOP_TURN:
        pass_turn(lock, turn, awaited)
        awaited += 2


def pingpong(count):
    context = multiprocessing.get_context("fork")
    lock = context.Lock()
    turn = context.RawValue("q", 0)  # even: this side's turn; odd: the peer's; written under lock only
    peer = context.Process(target=answer_turns, args=(lock, turn))
    peer.start()
    samples = [0] * count
    began = previous = time.monotonic_ns()
    for round_trip in range(count):
        mine = 2 * round_trip
        pass_turn(lock, turn, mine)
        if await_turn(turn, mine + 1, mine + 2) != mine + 2:
            sys.exit("python_lock.py pingpong: the stop turn appeared while the benchmark ran")
        now = time.monotonic_ns()
        samples[round_trip] = now - previous
        previous = now
    elapsed = previous - began
    with lock:
        turn.value = STOP_TURN
    peer.join()
    if peer.exitcode != 0:
        sys.exit(f"python_lock.py pingpong: peer exited with {peer.exitcode}")
    samples.sort()
    print(elapsed, percentile(samples, 0.50), percentile(samples, 0.99), percentile(samples, 0.999))


def main():
    modes = {"uncontended": uncontended, "handoff": handoff, "pingpong": pingpong}
    if len(sys.argv) != 3 or sys.argv[1] not in modes or int(sys.argv[2]) < 1:
        sys.exit(__doc__)
    modes[sys.argv[1]](int(sys.argv[2]))


if __name__ == "__main__":
    main()
