#!/usr/bin/env python3
"""Python's side of bench_pool: times multiprocessing.Pool and ProcessPoolExecutor on the work the C++
rows do and prints the elapsed nanoseconds (CLOCK_MONOTONIC) on one line. Standard library only.

usage: python_pool.py map COUNT TASKS PROCESSES        COUNT Pool.map(plus_one, range(TASKS)), default chunksize
       python_pool.py executor COUNT TASKS PROCESSES   COUNT ProcessPoolExecutor.map(plus_one, range(TASKS))
       python_pool.py apply COUNT PROCESSES            COUNT apply_async(plus_one, (i,)).get(), one after another
The pool is started, and its workers have run one task, before the clock starts.
Exit status 1, with the reason on stderr, when a result is wrong.
"""
import concurrent.futures
import multiprocessing
import sys
import time


def plus_one(x):
    return x + 1


def check(results, tasks):
    if results != list(range(1, tasks + 1)):
        sys.exit("python_pool.py: wrong results")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    context = multiprocessing.get_context("fork")
    if mode == "map" and len(sys.argv) == 5:
        count, tasks, processes = (int(value) for value in sys.argv[2:5])
        with context.Pool(processes) as pool:
            pool.map(plus_one, range(processes))
            began = time.monotonic_ns()
            for _ in range(count):
                check(pool.map(plus_one, range(tasks)), tasks)
            print(time.monotonic_ns() - began)
    elif mode == "executor" and len(sys.argv) == 5:
        count, tasks, processes = (int(value) for value in sys.argv[2:5])
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as executor:
            list(executor.map(plus_one, range(processes)))
            began = time.monotonic_ns()
            for _ in range(count):
                check(list(executor.map(plus_one, range(tasks))), tasks)
            print(time.monotonic_ns() - began)
    elif mode == "apply" and len(sys.argv) == 4:
        count, processes = int(sys.argv[2]), int(sys.argv[3])
        with context.Pool(processes) as pool:
            pool.apply(plus_one, (0,))
            began = time.monotonic_ns()
            for i in range(count):
                if pool.apply_async(plus_one, (i,)).get() != i + 1:
                    sys.exit("python_pool.py: wrong result")
            print(time.monotonic_ns() - began)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
