#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz-pickle.cpp into fuzz/corpus/pickle/: real pickles that this python3
writes for the values mproc::PickleValue models, with protocols 2, 3, 4 and 5 (4 through
multiprocessing's own ForkingPickler, as Connection.send does), and hostile pickles with the shapes
tests/pickle_test.cpp refuses. Run it from anywhere; it rewrites the folder. Standard library only."""
import os
import pickle
import sys
from multiprocessing.reduction import ForkingPickler

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "pickle")

SHARED = [1, "shared"]
VALUES = {
    "none": None, "true": True, "false": False,
    "small-ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63],
    "big-ints": [2**63, 2**64, -2**64, 2**200, -2**200, 3**300],
    "floats": [0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324],
    "strs": ["", "ascii", "h\u00e9llo", "\u20ac\U0001d11e \u65e5\u672c", "a" * 300],
    "bytes": [b"", b"\x00\xff", bytes(range(256))],
    "bytearrays": [bytearray(), bytearray(b"\x00mutable\xff")],
    "empties": [[], (), {}, set(), frozenset()],
    "tuples": [(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    "nested": [1, [2, [3, [4, []]]]],
    "dict-mixed": {"k": [1, 2.5, None, True, b"x", (1, "a"), {3, 4}, frozenset({"z"}), bytearray(b"ab")],
                   2: {"inner": ()}, (1, 2): "tuple key", None: 0, frozenset({1}): "fs", -2**70: "big"},
    "shared": [SHARED, SHARED, {"again": SHARED}, (SHARED,)],
    "list-1001": list(range(1001)),
    "dict-1001": {i: None for i in range(1001)},
    "set-1001": set(range(1001)),
    "message-1k": {"id": 12345, "name": "sensor-7", "values": [0.5 * i for i in range(40)],
                   "tags": ["a", "b", "c"], "ok": True, "payload": bytes(200), "none": None},
}

HOSTILE = {
    "global-os-system": b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.",
    "stack-global": b"\x80\x04\x8c\x02os\x8c\x06system\x93.",
    "build": b"N}b.",
    "newobj": b"N)\x81.",
    "binbytes8-2-60": b"\x80\x05\x8e\x00\x00\x00\x00\x00\x00\x00\x10.",
    "frame-2-60": b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x10N.",
    "long4-negative": b"\x8b\xff\xff\xff\xff.",
    "memo-missing": b"\x80\x04h\x05.",
    "recursive-list": b"\x80\x04]\x94h\x00a.",
    "recursive-dict-dup": b"}2K\x01s.",
    "deep-lists": b"]" * 1100 + b"a" * 1099 + b".",
    "deep-tuples": b"N" + b"\x85" * 1100 + b".",
    "odd-setitems": b"}(NNNu.",
    "bad-utf8": b"\x8c\x02\xc0\xaf.",
    "surrogate": b"\x8c\x03\xed\xa0\x80.",
    "codecs-beyond-latin1": b"c_codecs\nencode\n\x8c\x02\xc4\x80\x8c\x06latin1\x86R.",
    "set-reduce-shared": b"cbuiltins\nset\n\x94]\x94(K\x01K\x02e\x85\x94Rh\x00h\x02R\x86.",
    "trailing": b"N.NN.",
    "dup-long1": b"\x8a\x08\x01\x02\x03\x04\x05\x06\x07\x08" + b"2" * 30 + b"\x87" * 15 + b".",
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    for name, value in VALUES.items():
        for protocol in (2, 3, 4, 5):
            data = bytes(ForkingPickler.dumps(value)) if protocol == 4 else pickle.dumps(value, protocol=protocol)
            with open(os.path.join(OUT, "p%d-%s" % (protocol, name)), "wb") as out:
                out.write(data)
    for name, data in HOSTILE.items():
        with open(os.path.join(OUT, "hostile-" + name), "wb") as out:
            out.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
