#!/usr/bin/env python3
"""Python's side of the BM_PipeStream_python, BM_PipeRoundTrip_blocking_*/python (bench/bench_pipe.cpp) and
BM_ConnectionStream64/python (bench/bench_connection.cpp) benchmarks: multiprocessing.Pipe() (duplex, the
default: an AF_UNIX socketpair) between this process and a forked peer, with send_bytes/recv_bytes, timed
inside Python. Standard library only; the 'fork' start method, as the C++ peers fork.

usage: python_pipe.py stream SIZE COUNT
           The peer sends COUNT messages of SIZE bytes; this process receives them. The clock starts once
           the peer runs (it waits for a start signal) and stops when the last message is received.
           Prints: elapsed_ns
       python_pipe.py roundtrip SIZE COUNT
           This process sends a message of SIZE bytes, the peer answers with one of the same size; COUNT
           times, each round trip timed.
           Prints: elapsed_ns p50_ns p99_ns p99.9_ns (per round trip, nearest rank)
SIZE is at least 8. Each message carries its sequence number in its first and last 8 bytes (a round trip's
answer carries the request's number plus one), checked on receipt together with the message's length;
the C++ benchmarks stamp more words of long messages, which would cost Python far more than the copy.
Exit status 1, with the reason on stderr, when a message is lost, repeated, reordered, torn or resized.
"""
import math
import multiprocessing
import struct
import sys
import time


def stamp(buffer, sequence):
    struct.pack_into("<Q", buffer, 0, sequence)
    struct.pack_into("<Q", buffer, len(buffer) - 8, sequence)


def check(message, size, expected, what):
    if len(message) != size:
        sys.exit(f"python_pipe.py {what}: a message of {len(message)} bytes, expected {size}")
    first, = struct.unpack_from("<Q", message, 0)
    last, = struct.unpack_from("<Q", message, size - 8)
    if first != expected or last != expected:
        sys.exit(f"python_pipe.py {what}: expected message {expected}, received {first}/{last}")


def percentile(sorted_samples, fraction):
    rank = math.ceil(fraction * len(sorted_samples))
    return sorted_samples[min(max(rank, 1), len(sorted_samples)) - 1]


def produce(connection, size, count, ready, go):
    buffer = bytearray(size)
    ready.set()
    go.wait()
    for sequence in range(count):
        stamp(buffer, sequence)
        connection.send_bytes(buffer)
    connection.close()


def stream(context, size, count):
    receiver, sender = context.Pipe()
    ready, go = context.Event(), context.Event()
    peer = context.Process(target=produce, args=(sender, size, count, ready, go))
    peer.start()
    sender.close()
    ready.wait()
    began = time.monotonic_ns()
    go.set()
    for expected in range(count):
        check(receiver.recv_bytes(), size, expected, "stream")
    elapsed = time.monotonic_ns() - began
    peer.join()
    if peer.exitcode != 0:
        sys.exit(f"python_pipe.py stream: peer exited with {peer.exitcode}")
    print(elapsed)


def answer(connection, size):
    buffer = bytearray(size)
    while True:
        message = connection.recv_bytes()
        if not message:  # the empty message: stop
            return
        sequence, = struct.unpack_from("<Q", message, 0)
        check(message, size, sequence, "roundtrip peer")
        stamp(buffer, sequence + 1)
        connection.send_bytes(buffer)


def round_trip(context, size, count):
    mine, theirs = context.Pipe()
    peer = context.Process(target=answer, args=(theirs, size))
    peer.start()
    theirs.close()
    buffer = bytearray(size)
    samples = [0] * count
    began = previous = time.monotonic_ns()
    for index in range(count):
        stamp(buffer, 2 * index)
        mine.send_bytes(buffer)
        check(mine.recv_bytes(), size, 2 * index + 1, "roundtrip")
        now = time.monotonic_ns()
        samples[index] = now - previous
        previous = now
    elapsed = previous - began
    mine.send_bytes(b"")
    peer.join()
    if peer.exitcode != 0:
        sys.exit(f"python_pipe.py roundtrip: peer exited with {peer.exitcode}")
    samples.sort()
    print(elapsed, percentile(samples, 0.50), percentile(samples, 0.99), percentile(samples, 0.999))


def main():
    modes = {"stream": stream, "roundtrip": round_trip}
    if len(sys.argv) != 4 or sys.argv[1] not in modes or int(sys.argv[2]) < 8 or int(sys.argv[3]) < 1:
        sys.exit(__doc__)
    modes[sys.argv[1]](multiprocessing.get_context("fork"), int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()
