#!/usr/bin/env python3
"""The Python end of tests/connection_test.cpp: multiprocessing.connection.Connection on an inherited fd.

Usage: python_peer.py FD MODE
  echo      receive messages and send each back unchanged, until end of stream (EOFError); exit 0.
  patterns  send one message of each size in SIZES filled with pattern(size), then receive as many messages
            and check each is pattern(size) of the same size, in order; exit 0, or 1 naming the mismatch.
  close     close the connection at once and exit 0 (the C++ side then sees end of stream).
Standard library only.
"""
import sys
from multiprocessing.connection import Connection

# 0 B, small, the 16 KiB split point of CPython's _send_bytes, above a pipe's 64 KiB, and 1 MiB.
SIZES = [0, 1, 7, 16384, 16385, 65536, 65537 + 4096, 1 << 20]


def pattern(size):
    return bytes((index * 7 + size) & 0xFF for index in range(size))


def main():
    fd = int(sys.argv[1])
    mode = sys.argv[2]
    connection = Connection(fd)
    if mode == "echo":
        while True:
            try:
                message = connection.recv_bytes()
            except EOFError:
                return 0
            connection.send_bytes(message)
    if mode == "patterns":
        for size in SIZES:
            connection.send_bytes(pattern(size))
        for size in SIZES:
            message = connection.recv_bytes()
            if message != pattern(size):
                sys.stderr.write("python_peer: expected pattern of %d bytes, got %d bytes\n" % (size, len(message)))
                return 1
        return 0
    if mode == "close":
        connection.close()
        return 0
    sys.stderr.write("python_peer: unknown mode %r\n" % mode)
    return 2


if __name__ == "__main__":
    sys.exit(main())
