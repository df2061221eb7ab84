#!/usr/bin/env python3
"""Python's side of BM_Python_ProcessStartJoin: times COUNT start+join cycles of
multiprocessing.Process with an empty target under one start method and prints the elapsed
nanoseconds (CLOCK_MONOTONIC) on one line. Standard library only.

usage: python_process.py COUNT fork|spawn|forkserver
Exit status 1, with the reason on stderr, when a child does not exit with status 0.
"""
import multiprocessing
import sys
import time


def empty_target():
    pass


def start_and_join(context):
    child = context.Process(target=empty_target)
    child.start()
    child.join()
    if child.exitcode != 0:
        sys.exit(f"python_process.py: child exited with {child.exitcode}, expected 0")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    count = int(sys.argv[1])
    context = multiprocessing.get_context(sys.argv[2])
    # The first start pays one-time costs (imports, the forkserver's own start) that a loop of starts
    # does not: keep it out of the measurement, as the C++ side keeps its set-up out.
    start_and_join(context)
    began = time.monotonic_ns()
    for _ in range(count):
        start_and_join(context)
    print(time.monotonic_ns() - began)


if __name__ == "__main__":
    main()
