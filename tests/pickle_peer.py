#!/usr/bin/env python3
"""The Python end of tests/pickle_test.cpp: multiprocessing.connection.Connection on an inherited fd.

Usage: pickle_peer.py FD MODE [PROTOCOL]
  echo PROTOCOL  send every value of CASES pickled with PROTOCOL (4, Python's default, goes through
                 Connection.send itself), receive the C++ side's re-encoded echo of each with Connection.recv,
                 and check it is the same value: same types all the way down (True is not 1, a tuple is not a
                 list, bytes is not bytearray), floats bit for bit; exit 0, or 1 naming the first mismatch.
  known          for each protocol 2, 3, 4, 5 send KNOWN in order (the C++ side checks each exactly).
  expect         receive len(EXPECTED) values that C++ built from C++ types and check each against EXPECTED.
Standard library only.
"""
import math
import pickle
import struct
import sys
from multiprocessing.connection import Connection


def pattern(size):
    """The bytes pattern_bytes(size) of tests/pickle_test.cpp."""
    period = bytes((index * 7 + size) & 0xFF for index in range(256))  # 7 is odd: the pattern repeats every 256
    return (period * (size // 256 + 1))[:size]


SHARED = [1, "shared"]
TEN_MIB = pattern(10 << 20)

CASES = [
    None, True, False,
    0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, -2**40, 2**63 - 1, -2**63, 2**63,
    2**64, -2**64, 2**200, -2**200, 3**1000,
    0.0, -0.0, 1.5, -2.25, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324,
    "", "ascii", "h\u00e9llo w\u00f6rld", "\u20ac\U0001d11e \u65e5\u672c\u8a9e", "a" * 300, "\u00e9" * 70000,
    b"", b"\x00\xff bytes", bytes(range(256)) * 2, bytearray(), bytearray(b"\x00mutable\xff"),
    [], (), {}, set(), frozenset(),
    [1, [2, [3, []]]], (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4),
    {"k": [1, 2.5, None, True, b"x", (1, "a"), {3, 4}, frozenset({"z"}), bytearray(b"ab")],
     2: {"inner": ()}, (1, 2): "tuple key", None: 0, frozenset({1}): "frozenset key", 3.5: "float key",
     b"bk": "bytes key", -2**70: "big key"},
    list(range(2500)), {str(i): i for i in range(1500)}, set(range(1200)), frozenset(range(1100)),
    [SHARED, SHARED, {"again": SHARED}, (SHARED,)],
    TEN_MIB,
]


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


CASES.append(nested(900))

# What the C++ test checks value by value (keep in step with kKnown... in tests/pickle_test.cpp).
KNOWN = [
    None, True, 2**200, -2**64, -1, float("nan"), -0.0, float("-inf"), "\u20ac\U0001d11e", b"\x00\xff",
    bytearray(b"ba"), [1, (2, 3.5)], {"a": 1, "b": [None]}, {7}, frozenset({"f"}), TEN_MIB,
]

# What the C++ test sends, built from C++ types with to_pickle (keep in step with testCppValuesArriveEqual).
EXPECTED = [
    None, True, -42, 2**64 - 1, 0.25, "\u00e9t\u00e9", b"\x01\x02", bytearray(b"ba"),
    [1, 2, 3], {"one": [1], "two": [2, 2]}, {1, 2, 3}, (7, "seven"), (1, 2.5, "three", None),
    [None, 5], 2**200, [[1, 2], [1, 2]], nested(1000 - 1),
]


def same(a, b):
    """Equal with the same types throughout; NaNs of equal bits are equal, 0.0 and -0.0 differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keys_of_b = {key: key for key in b}  # b's own key object for each key
        return all(key in keys_of_b and same(key, keys_of_b[key]) and same(value, b[key])
                   for key, value in a.items())
    if isinstance(a, (set, frozenset)):
        elements_of_b = {element: element for element in b}
        return len(a) == len(b) and all(x in elements_of_b and same(x, elements_of_b[x]) for x in a)
    return a == b


def describe(value):
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "... (%d characters)" % len(text)


def main():
    sys.setrecursionlimit(20000)
    fd = int(sys.argv[1])
    mode = sys.argv[2]
    connection = Connection(fd)
    if mode == "echo":
        protocol = int(sys.argv[3])
        for index, case in enumerate(CASES):
            if protocol == pickle.DEFAULT_PROTOCOL:
                connection.send(case)  # exactly what multiprocessing writes
            else:
                connection.send_bytes(pickle.dumps(case, protocol=protocol))
            echoed = connection.recv()
            if not same(case, echoed):
                sys.stderr.write("pickle_peer: protocol %d case %d: sent %s, echoed %s\n"
                                 % (protocol, index, describe(case), describe(echoed)))
                return 1
        return 0
    if mode == "known":
        for protocol in (2, 3, 4, 5):
            for value in KNOWN:
                connection.send_bytes(pickle.dumps(value, protocol=protocol))
        return 0
    if mode == "expect":
        for index, expected in enumerate(EXPECTED):
            received = connection.recv()
            if not same(expected, received):
                sys.stderr.write("pickle_peer: value %d: expected %s, received %s\n"
                                 % (index, describe(expected), describe(received)))
                return 1
        return 0
    sys.stderr.write("pickle_peer: unknown mode %r\n" % mode)
    return 2


if __name__ == "__main__":
    sys.exit(main())
