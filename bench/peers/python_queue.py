#!/usr/bin/env python3
"""Python's side of the BM_Queue1P1C_python benchmarks (bench/bench_queue.cpp): times a stream of COUNT
messages through multiprocessing.Queue inside Python and prints the result on one line. Standard library
only; the 'fork' start method, as the C++ peers fork.

usage: python_queue.py stream SIZE COUNT
           A producer process puts COUNT bytes objects of SIZE bytes (SIZE a multiple of 8, at least 8) on
           a Queue of at most 1024 items; this process gets them. Each message carries its sequence number
           in its first and last 8 bytes, checked on receipt. The clock starts once the producer runs (it
           waits for a start signal) and stops when the last message is got.
           Prints: elapsed_ns
Exit status 1, with the reason on stderr, when a message is lost, repeated, reordered or torn.
"""
import multiprocessing
import struct
import sys
import time

QUEUE_ITEMS = 1024  # as the mproc queues of small messages in bench_queue.cpp


def produce(queue, size, count, ready, go):
    buffer = bytearray(size)
    ready.set()
    go.wait()
    for sequence in range(count):
        struct.pack_into("<Q", buffer, 0, sequence)
        struct.pack_into("<Q", buffer, size - 8, sequence)
        queue.put(bytes(buffer))


def stream(size, count):
    if size < 8 or size % 8 != 0:
        sys.exit(f"python_queue.py stream: SIZE {size} must be a multiple of 8, at least 8")
    context = multiprocessing.get_context("fork")
    queue = context.Queue(QUEUE_ITEMS)
    ready, go = context.Event(), context.Event()
    producer = context.Process(target=produce, args=(queue, size, count, ready, go))
    producer.start()
    ready.wait()
    began = time.monotonic_ns()
    go.set()
    for expected in range(count):
        message = queue.get()
        if len(message) != size:
            sys.exit(f"python_queue.py stream: a message of {len(message)} bytes, expected {size}")
        first, = struct.unpack_from("<Q", message, 0)
        last, = struct.unpack_from("<Q", message, size - 8)
        if first != expected or last != expected:
            sys.exit(f"python_queue.py stream: expected message {expected}, received {first}/{last}")
    elapsed = time.monotonic_ns() - began
    producer.join()
    if producer.exitcode != 0:
        sys.exit(f"python_queue.py stream: producer exited with {producer.exitcode}")
    print(elapsed)


def main():
    if len(sys.argv) != 4 or sys.argv[1] != "stream" or int(sys.argv[2]) < 1 or int(sys.argv[3]) < 1:
        sys.exit(__doc__)
    stream(int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()
