#!/usr/bin/env python3
"""Python's side of the BM_Queue1P1C_python and BM_Queue2P2C_python benchmarks (bench/bench_queue.cpp):
times COUNT messages through multiprocessing.Queue inside Python and prints the result on one line.
Standard library only; the 'fork' start method, as the C++ peers fork.

usage: python_queue.py stream SIZE COUNT
           A producer process puts COUNT bytes objects of SIZE bytes (SIZE a multiple of 8, at least 8) on
           a Queue of at most 1024 items; this process gets them. Each message carries its sequence number
           in its first and last 8 bytes, checked on receipt. The clock starts once the producer runs (it
           waits for a start signal) and stops when the last message is got.
           Prints: elapsed_ns
       python_queue.py two_by_two SIZE COUNT
           Two producer processes put COUNT messages between them (each about half, SIZE bytes, with a
           sequence number in the first and last 8 bytes: producer p sends the numbers of parity p) on one
           Queue of at most 1024 items; this process and a consumer process get them, each checking that every producer's
           messages reach it in order. Each producer ends with one end mark, each consumer stops at the
           first end mark it gets. The clock runs from the start signal until both consumers are done; the
           counts and sequence sums of both together must be every message exactly once.
           Prints: elapsed_ns
Exit status 1, with the reason on stderr, when a message is lost, repeated, reordered or torn.
"""
import multiprocessing
import os
import struct
import sys
import threading
import time

QUEUE_ITEMS = 1024  # as the mproc queues of small messages in bench_queue.cpp
PEERS = []  # the processes this script started, for fail() and watch()
MAIN_PID = os.getpid()  # fail() in a forked peer must not kill its siblings: their parent reports them


def fail(message):
    """Reports, kills the peers and ends the script at once. sys.exit would run multiprocessing's exit
    handler, which joins the producers: a producer blocked on a full queue would keep it waiting for ever."""
    print(f"python_queue.py: {message}", file=sys.stderr)
    if os.getpid() == MAIN_PID:
        for process in PEERS:
            try:
                process.kill()  # nothing when it was reaped already
            except (OSError, ValueError):
                pass
    os._exit(1)


def start(process):
    process.start()
    PEERS.append(process)


def watch():
    """Ends the script when a peer fails: a consumer would otherwise wait for it for ever. Looks with
    WNOWAIT, so that the child stays for join() to reap."""
    def run():
        while True:
            for process in list(PEERS):
                try:
                    info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    # Reaped already: by join(), which checks the exit code, or by multiprocessing's own
                    # clean-up in a later start(), which only caches it.
                    if process.exitcode not in (None, 0):
                        fail(f"a peer process exited with {process.exitcode}")
                    continue
                if info is None or (info.si_code == os.CLD_EXITED and info.si_status == 0):
                    continue
                if info.si_code == os.CLD_EXITED:
                    fail(f"a peer process exited with {info.si_status}")
                fail(f"a peer process was killed by signal {info.si_status}")
            time.sleep(0.2)
    threading.Thread(target=run, daemon=True).start()


def produce(queue, size, count, ready, go, first=0, step=1, end_mark=None):
    """Puts count messages carrying the sequence numbers first, first + step, ..., then end_mark if any."""
    buffer = bytearray(size)
    ready.set()
    go.wait()
    for index in range(count):
        sequence = first + step * index
        struct.pack_into("<Q", buffer, 0, sequence)
        struct.pack_into("<Q", buffer, size - 8, sequence)
        queue.put(bytes(buffer))
    if end_mark is not None:
        queue.put(end_mark)


def stream(size, count):
    if size < 8 or size % 8 != 0:
        sys.exit(f"python_queue.py stream: SIZE {size} must be a multiple of 8, at least 8")
    context = multiprocessing.get_context("fork")
    queue = context.Queue(QUEUE_ITEMS)
    ready, go = context.Event(), context.Event()
    producer = context.Process(target=produce, args=(queue, size, count, ready, go))
    start(producer)
    watch()
    ready.wait()
    began = time.monotonic_ns()
    go.set()
    for expected in range(count):
        message = queue.get()
        if len(message) != size:
            fail(f"stream: a message of {len(message)} bytes, expected {size}")
        first, = struct.unpack_from("<Q", message, 0)
        last, = struct.unpack_from("<Q", message, size - 8)
        if first != expected or last != expected:
            fail(f"stream: expected message {expected}, received {first}/{last}")
    elapsed = time.monotonic_ns() - began
    producer.join()
    if producer.exitcode != 0:
        fail(f"stream: producer exited with {producer.exitcode}")
    print(elapsed)


def consume_share(queue, size):
    """Gets until an end mark; returns (count, sequence sum) per producer, or exits on a bad message."""
    next_expected = [0, 0]  # per producer: every later message must be at least this
    counts = [0, 0]
    sums = [0, 0]
    while True:
        message = queue.get()
        if len(message) == 1:
            return counts, sums
        if len(message) != size:
            fail(f"two_by_two: a message of {len(message)} bytes, expected {size}")
        first, = struct.unpack_from("<Q", message, 0)
        last, = struct.unpack_from("<Q", message, size - 8)
        producer_id = first & 1
        if first != last or first < next_expected[producer_id]:
            fail(f"two_by_two: producer {producer_id}'s message {first}/{last} after "
                 f"{next_expected[producer_id] - 1}: torn or out of order")
        next_expected[producer_id] = first + 1
        counts[producer_id] += 1
        sums[producer_id] += first


def consumer_peer(queue, size, results):
    results.send(consume_share(queue, size))


def two_by_two(size, count):
    if size < 8 or size % 8 != 0:
        sys.exit(f"python_queue.py two_by_two: SIZE {size} must be a multiple of 8, at least 8")
    context = multiprocessing.get_context("fork")
    queue = context.Queue(QUEUE_ITEMS)
    shares = [count // 2, count - count // 2]
    ready = [context.Event(), context.Event()]
    go = context.Event()
    # Producer p puts the sequence numbers of parity p, then its end mark: one byte, shorter than any message.
    producers = [context.Process(target=produce, args=(queue, size, shares[p], ready[p], go, p, 2, bytes([p])))
                 for p in (0, 1)]
    for producer in producers:
        start(producer)
    receiving, sending = context.Pipe(duplex=False)  # made after the producers: only the consumer inherits it
    consumer = context.Process(target=consumer_peer, args=(queue, size, sending))
    start(consumer)
    sending.close()  # the consumer now holds the only sending end: its death ends recv() below
    watch()
    for event in ready:
        event.wait()
    began = time.monotonic_ns()
    go.set()
    counts, sums = consume_share(queue, size)
    peer_counts, peer_sums = receiving.recv()
    elapsed = time.monotonic_ns() - began
    for process in producers + [consumer]:
        process.join()
        if process.exitcode != 0:
            fail(f"two_by_two: a peer process exited with {process.exitcode}")
    for p in (0, 1):
        sequences = range(p, 2 * shares[p], 2)
        if counts[p] + peer_counts[p] != shares[p] or sums[p] + peer_sums[p] != sum(sequences):
            fail(f"two_by_two: producer {p} put {shares[p]} messages, the consumers got "
                 f"{counts[p] + peer_counts[p]} (sequence sum {sums[p] + peer_sums[p]}, expected "
                 f"{sum(sequences)}): lost or repeated")
    print(elapsed)


def main():
    modes = {"stream": stream, "two_by_two": two_by_two}
    if len(sys.argv) != 4 or sys.argv[1] not in modes or int(sys.argv[2]) < 1 or int(sys.argv[3]) < 1:
        sys.exit(__doc__)
    modes[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()
