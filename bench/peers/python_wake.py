#!/usr/bin/env python3
"""Python's side of BM_Semaphore_WakeLatency/python and BM_Event_WakeLatency/python: COUNT round trips
between this process and a forked peer through two multiprocessing objects, timed inside Python.
Standard library only; the 'fork' start method, as the C++ peers fork.

usage: python_wake.py semaphore COUNT
           Two multiprocessing.Semaphore(0), ping and pong: this side releases ping and acquires pong,
           the peer acquires ping and releases pong.
       python_wake.py event COUNT
           Two multiprocessing.Event, ping and pong: this side sets ping and waits for pong, then clears
           it; the peer waits for ping, clears it and sets pong.
Each round carries a number (this side writes k, the peer answers k + 1), checked on return.
Prints: elapsed_ns p50_ns p99_ns p99.9_ns (per round trip, nearest rank)
Exit status 1, with the reason on stderr, when an answer is wrong or the peer fails.
"""
import math
import multiprocessing
import sys
import time

STOP = -1


def percentile(sorted_samples, fraction):
    rank = math.ceil(fraction * len(sorted_samples))
    return sorted_samples[min(max(rank, 1), len(sorted_samples)) - 1]


class SemaphorePair:
    def __init__(self, context):
        self.ping = context.Semaphore(0)
        self.pong = context.Semaphore(0)

    def send(self):
        self.ping.release()

    def await_reply(self):
        self.pong.acquire()

    def await_request(self):
        self.ping.acquire()

    def reply(self):
        self.pong.release()


class EventPair:
    def __init__(self, context):
        self.ping = context.Event()
        self.pong = context.Event()

    def send(self):
        self.ping.set()

    def await_reply(self):
        self.pong.wait()
        self.pong.clear()

    def await_request(self):
        self.ping.wait()
        self.ping.clear()

    def reply(self):
        self.pong.set()


def answer(pair, ball):
    while True:
        pair.await_request()
        if ball.value == STOP:
            return
        ball.value += 1
        pair.reply()


def main():
    kinds = {"semaphore": SemaphorePair, "event": EventPair}
    if len(sys.argv) != 3 or sys.argv[1] not in kinds or int(sys.argv[2]) < 1:
        sys.exit(__doc__)
    count = int(sys.argv[2])
    context = multiprocessing.get_context("fork")
    pair = kinds[sys.argv[1]](context)
    # RawValue: published by the release/set and observed after the acquire/wait under test.
    ball = context.RawValue("q", 0)
    peer = context.Process(target=answer, args=(pair, ball))
    peer.start()
    samples = [0] * count
    began = previous = time.monotonic_ns()
    for round_trip in range(count):
        ball.value = 2 * round_trip
        pair.send()
        pair.await_reply()
        if ball.value != 2 * round_trip + 1:
            sys.exit(f"python_wake.py {sys.argv[1]}: answer {ball.value} to {2 * round_trip}")
        now = time.monotonic_ns()
        samples[round_trip] = now - previous
        previous = now
    elapsed = previous - began
    ball.value = STOP
    pair.send()
    peer.join()
    if peer.exitcode != 0:
        sys.exit(f"python_wake.py {sys.argv[1]}: peer exited with {peer.exitcode}")
    samples.sort()
    print(elapsed, percentile(samples, 0.50), percentile(samples, 0.99), percentile(samples, 0.999))


if __name__ == "__main__":
    main()
