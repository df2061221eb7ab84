#!/usr/bin/env python3
"""Python's side of BM_ListenerRoundTrip64/python_* and BM_ListenerConnect/python_* (bench/bench_listener.cpp):
multiprocessing.connection.Listener and Client with an authkey, between this process and a forked peer,
timed inside Python. Standard library only; the 'fork' start method, as the C++ peers fork.

usage: python_listener.py roundtrip FAMILY COUNT
           A Listener here, a Client in the peer, which answers each 64-byte message with the next sequence
           number; COUNT round trips, each timed.
       python_listener.py connect FAMILY COUNT
           A Listener in the peer that accepts in a loop and sends b"r" on each connection; here COUNT times
           Client() (connect and both halves of the handshake) and the b"r", each timed.
FAMILY: unix (an abstract AF_UNIX name) or tcp (127.0.0.1, a port the kernel picks).
Prints: elapsed_ns p50_ns p99_ns p99.9_ns. Exit status 1, with the reason, when a message is wrong.
"""
import math
import multiprocessing
import os
import struct
import sys
import time
from multiprocessing.connection import Client, Listener

AUTHKEY = b"bench key"
SIZE = 64


def percentile(sorted_samples, fraction):
    rank = math.ceil(fraction * len(sorted_samples))
    return sorted_samples[min(max(rank, 1), len(sorted_samples)) - 1]


def make_listener(family):
    if family == "unix":
        return Listener("\0mproc-bench-python-listener-%d" % os.getpid(), "AF_UNIX", authkey=AUTHKEY)
    return Listener(("127.0.0.1", 0), "AF_INET", authkey=AUTHKEY)


def echo(address, family):
    with Client(address, "AF_UNIX" if family == "unix" else "AF_INET", authkey=AUTHKEY) as connection:
        buffer = bytearray(SIZE)
        while True:
            message = connection.recv_bytes()
            if not message:
                return
            sequence, = struct.unpack_from("<Q", message, 0)
            struct.pack_into("<Q", buffer, 0, sequence + 1)
            connection.send_bytes(buffer)


def serve(listener):
    while True:
        with listener.accept() as connection:
            connection.send_bytes(b"r")
            try:
                if connection.recv_bytes() == b"stop":
                    return
            except EOFError:
                pass


def timed(count, one):
    samples = [0] * count
    began = previous = time.monotonic_ns()
    for index in range(count):
        one(index)
        now = time.monotonic_ns()
        samples[index] = now - previous
        previous = now
    samples.sort()
    print(previous - began, percentile(samples, 0.50), percentile(samples, 0.99), percentile(samples, 0.999))


def round_trip(context, family, count):
    listener = make_listener(family)
    peer = context.Process(target=echo, args=(listener.address, family))
    peer.start()
    connection = listener.accept()
    buffer = bytearray(SIZE)

    def one(index):
        struct.pack_into("<Q", buffer, 0, 2 * index)
        connection.send_bytes(buffer)
        reply = connection.recv_bytes()
        if len(reply) != SIZE or struct.unpack_from("<Q", reply, 0)[0] != 2 * index + 1:
            sys.exit("python_listener.py roundtrip: a wrong reply")

    timed(count, one)
    connection.send_bytes(b"")
    peer.join()
    if peer.exitcode != 0:
        sys.exit(f"python_listener.py roundtrip: peer exited with {peer.exitcode}")


def connect(context, family, count):
    listener = make_listener(family)
    address = listener.address
    peer = context.Process(target=serve, args=(listener,))
    peer.start()
    listener.close()  # the peer's copy keeps listening
    kind = "AF_UNIX" if family == "unix" else "AF_INET"

    def one(_):
        with Client(address, kind, authkey=AUTHKEY) as connection:
            if connection.recv_bytes() != b"r":
                sys.exit("python_listener.py connect: no ready byte")

    one(0)  # untimed: waits until the peer runs and listens
    timed(count, one)
    with Client(address, kind, authkey=AUTHKEY) as connection:
        connection.recv_bytes()
        connection.send_bytes(b"stop")
    peer.join()


def main():
    modes = {"roundtrip": round_trip, "connect": connect}
    if len(sys.argv) != 4 or sys.argv[1] not in modes or sys.argv[2] not in ("unix", "tcp") or int(sys.argv[3]) < 1:
        sys.exit(__doc__)
    modes[sys.argv[1]](multiprocessing.get_context("fork"), sys.argv[2], int(sys.argv[3]))


if __name__ == "__main__":
    main()
