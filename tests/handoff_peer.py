#!/usr/bin/env python3
"""The Python end of tests/handoff_test.cpp: multiprocessing.reduction's send_handle/recv_handle against
FdConnection's, on one end of a socketpair the test leaves open as file descriptor 3.

Usage: handoff_peer.py MODE
  receive  recv_bytes() must be b"before"; recv_handle() gives a pipe's write end: write b"python wrote"
           through it and close it; recv_bytes() must be b"after"; answer send_bytes(b"ok")
  send     make a pipe; send_bytes(b"before"), send_handle(write end), send_bytes(b"after"); close our copy of
           the write end; read the read end to end of file and send_bytes() what was read back
Exit 0 on success; any failure raises (a traceback on stderr, exit 1). Standard library only.
"""
import os
import sys
from multiprocessing import connection as mpc
from multiprocessing import reduction


def expect(conn, wanted):
    got = conn.recv_bytes()
    if got != wanted:
        raise AssertionError("expected %r, received %r" % (wanted, got))


def main():
    mode = sys.argv[1]
    conn = mpc.Connection(3)
    if mode == "receive":
        expect(conn, b"before")
        fd = reduction.recv_handle(conn)
        os.write(fd, b"python wrote")
        os.close(fd)
        expect(conn, b"after")
        conn.send_bytes(b"ok")
    elif mode == "send":
        read_end, write_end = os.pipe()
        conn.send_bytes(b"before")
        reduction.send_handle(conn, write_end, os.getpid())
        conn.send_bytes(b"after")
        os.close(write_end)
        chunks = []
        while True:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        conn.send_bytes(b"".join(chunks))
    else:
        raise SystemExit("unknown mode " + mode)
    conn.close()


if __name__ == "__main__":
    main()
