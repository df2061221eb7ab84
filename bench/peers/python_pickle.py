#!/usr/bin/env python3
"""Python's side of the BM_PickleDumps1KiB / BM_PickleLoads1KiB benchmarks (bench/bench_pickle.cpp): times
Python's own pickle module (the C accelerator, protocol 4 as Connection.send uses) on the dict that
message() builds — str keys, mixed values, about 1 KiB pickled — and prints the result on one line.
Standard library only.

usage: python_pickle.py dumps COUNT   pickle.dumps(message(), 4) COUNT times; prints: elapsed_ns
       python_pickle.py loads COUNT   pickle.loads of that pickle COUNT times; prints: elapsed_ns
       python_pickle.py write PATH    writes that pickle to PATH (the C++ side decodes Python's own bytes)
Exit status 1, with the reason on stderr, when a loaded dict differs from message().
"""
import pickle
import sys
import time


def message():
    """Keep in step with message_value() in bench/bench_pickle.cpp."""
    fields = {}
    for i in range(55):
        kind = i % 6
        if kind == 0:
            value = i * 1000003
        elif kind == 1:
            value = i + 0.5
        elif kind == 2:
            value = "value string %02d" % i
        elif kind == 3:
            value = i % 4 == 3
        elif kind == 4:
            value = [i, i + 1, i + 2]
        else:
            value = None
        fields["field_%02d" % i] = value
    return fields


def main():
    mode, argument = sys.argv[1], sys.argv[2]
    value = message()
    data = pickle.dumps(value, protocol=4)
    if mode == "write":
        with open(argument, "wb") as out:
            out.write(data)
        return 0
    count = int(argument)
    if mode == "dumps":
        start = time.perf_counter_ns()
        for _ in range(count):
            pickle.dumps(value, protocol=4)
        elapsed = time.perf_counter_ns() - start
    elif mode == "loads":
        start = time.perf_counter_ns()
        for _ in range(count):
            loaded = pickle.loads(data)
        elapsed = time.perf_counter_ns() - start
        if count > 0 and loaded != value:
            sys.stderr.write("python_pickle.py: loads gave another dict\n")
            return 1
    else:
        sys.stderr.write("python_pickle.py: unknown mode %r\n" % mode)
        return 1
    print(elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
