#!/usr/bin/env python3
"""A Python orchestrator that hands work to workers joining over TCP (docs/crossing-machines.md).

Usage: listener_orchestrator.py AUTHKEY_HEX
Listens on 127.0.0.1, port picked by the kernel, printed as "READY <port>"; accepts one worker, sends it the
numbers 1..10 as b"square N", checks each answer, then sends b"stop". Exit 0 when every answer was right.
"""
import sys
from multiprocessing.connection import Listener


def main():
    authkey = bytes.fromhex(sys.argv[1])
    with Listener(("127.0.0.1", 0), authkey=authkey) as listener:
        print("READY %d" % listener.address[1], flush=True)
        with listener.accept() as worker:  # runs the authkey handshake; AuthenticationError on a wrong key
            for n in range(1, 11):
                worker.send_bytes(b"square %d" % n)
                answer = int(worker.recv_bytes())
                if answer != n * n:
                    sys.stderr.write("worker said %d for square %d\n" % (answer, n))
                    return 1
            worker.send_bytes(b"stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
