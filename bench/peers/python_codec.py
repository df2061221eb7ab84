#!/usr/bin/env python3
"""Python's side of the BM_Codec*_python benchmarks (bench/bench_codec.cpp): objects through
multiprocessing.Queue and multiprocessing.Pipe, which pickle them, timed inside Python; prints elapsed_ns.
Standard library only; the 'fork' start method, as the C++ peers fork.

usage: python_codec.py MODE COUNT
    str_queue     a producer process puts COUNT str of 64 characters (the sequence number in the first 20)
                  on a Queue of at most 1024 items; this process gets and checks them
    record_queue  the same with the tuple (int, float, str of 32 characters, list of 16 floats), the record
                  bench_codec.cpp sends as a struct
    record_pipe   the record through multiprocessing.Pipe(duplex=False): send() in the producer, recv() here
Exit status 1, with the reason on stderr, when a message is lost, repeated or reordered.
"""
import multiprocessing
import os
import sys
import time


def fail(message):
    print(f"python_codec.py: {message}", file=sys.stderr)
    os._exit(1)


def text_of(sequence):
    return f"{sequence:020d}" + "x" * 44


def record_of(sequence):
    return (sequence, sequence * 0.5, "n" * 32, [sequence + 0.1 * (i + 1) for i in range(16)])


def produce(put, make, count, ready, go):
    ready.set()
    go.wait()
    for sequence in range(count):
        put(make(sequence))


def run(mode, count):
    context = multiprocessing.get_context("fork")
    ready, go = context.Event(), context.Event()
    if mode == "record_pipe":
        receiver, sender = context.Pipe(duplex=False)
        put, get, make = sender.send, receiver.recv, record_of
    else:
        queue = context.Queue(1024)
        put, get = queue.put, queue.get
        make = text_of if mode == "str_queue" else record_of
    producer = context.Process(target=produce, args=(put, make, count, ready, go))
    producer.start()
    ready.wait()
    began = time.monotonic_ns()
    go.set()
    for expected in range(count):
        item = get()
        got = int(item[:20]) if mode == "str_queue" else item[0]
        if got != expected:
            fail(f"{mode}: expected item {expected}, received {got}")
    elapsed = time.monotonic_ns() - began
    producer.join()
    if producer.exitcode != 0:
        fail(f"{mode}: producer exited with {producer.exitcode}")
    print(elapsed)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("str_queue", "record_queue", "record_pipe"):
        sys.exit(__doc__)
    run(sys.argv[1], int(sys.argv[2]))
